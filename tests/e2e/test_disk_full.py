"""A full disk end to end: the real server with its data directory on a small tmpfs,
filled by SMTP deliveries until the store's free-space floor refuses new mail, then
filled to the last byte by a plain file, then freed again, all without a restart.

What must hold (see `Store::check_free_space` and the wire mappings of
`StoreError::NoSpace`):

- below the floor new mail is refused as a temporary failure, with the exact replies
  `452 4.3.1 …` (SMTP, after the final dot) and `NO [OVERQUOTA] …` (IMAP APPEND);
- a refused message is never announced (no EXISTS in another session), and UIDs given
  later are greater than every UID ever seen;
- reading and deleting keep working below the floor (POP3 LIST/RETR/DELE+QUIT); with
  the disk at 0 bytes free, deliveries still answer 452 and reads still work;
- with the disk at 0 bytes free, flag changes and expunges (which need room in the
  metadata database, below any floor) answer OK or a clear NO, never hang, and a
  change answered NO is not visible (second test);
- once space is free again, every kind of write succeeds without a restart and reads
  back byte-exact, and SIGTERM still ends the server with status 0.

Needs root (mount); skipped otherwise. Every client socket has a timeout, so a hang
fails the test instead of stalling it."""

from __future__ import annotations

import errno
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import (
    Literal,
    RawImap,
    RawSmtp,
    SmtpServer,
    crlf,
    server_factory,
    wire_lines,
)

TMPFS_MB = 48
BALLAST_MB = 12  # written before the fill, deleted at the end: the space freed then
FLOOR_MB = 8  # min_free_mb; min_free_percent = 100 makes this the smaller of the two
MIB = 1024 * 1024
MESSAGE_SIZE = 1_000_000
MAX_FILL = 60  # deliveries before the floor must have been reached
CALL_TIMEOUT = 10.0  # every client call; a server that hangs fails here

STORE_EXTRA = f"""
[store]
min_free_mb = {FLOOR_MB}
min_free_percent = 100
compact_interval_secs = 0
segment_mb = 4
"""

ALICE = "alice@example.com"
ALICE_PW = "alice-Full-1"
SENDER = "sender@remote.example"

SENDER_OK = b"250 2.1.0 Sender OK"
RECIPIENT_OK = b"250 2.1.5 Recipient OK"
START_DATA = b"354 Start mail input; end with <CRLF>.<CRLF>"
QUEUED = re.compile(rb"250 2\.0\.0 Ok: queued as [0-9A-F]{12}")
NO_SPACE_SMTP = b"452 4.3.1 Insufficient system storage, try again later"
NO_SPACE_IMAP = b"NO [OVERQUOTA] Not enough disk space on the server, try again later"
APPENDUID = re.compile(rb"OK \[APPENDUID (\d+) (\d+)\] APPEND completed")
# What a write may answer while the disk is at 0 bytes: done, or refused for space or
# as a temporary storage failure; never an internal error, never silence.
CLEAR_NO = re.compile(
    rb"NO \[OVERQUOTA\] Not enough disk space on the server, try again later"
    rb"|NO \[UNAVAILABLE\] Storage temporarily unavailable, try again later \(ref [0-9a-f]+\)"
)


class FullDiskServer(SmtpServer):
    """An SmtpServer whose configuration carries the [store] section above; its data
    directory is an absolute path on the tmpfs (the config and log stay outside)."""

    def write_config(self) -> None:
        super().write_config()
        self.config.write_text(self.config.read_text() + STORE_EXTRA)


@pytest.fixture
def tmpfs(tmp_path, request):
    """A fresh TMPFS_MB tmpfs, unmounted at teardown, after every server of the test is
    killed (the server fixture depends on this one, so it kills them first anyway)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(mnt)],
            capture_output=True,
            timeout=30,
        )
    except OSError as e:
        pytest.skip(f"cannot run mount: {e}")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        for server in getattr(request.node, "_portico_servers", []):
            server.kill()
        r = subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


@pytest.fixture
def make_full_server(portico_bin, tmp_path, request, tmpfs):
    # Depends on tmpfs so that its teardown (kill) runs before the unmount.
    yield from server_factory(FullDiskServer, portico_bin, tmp_path, request, "full")


# --------------------------------------------------------------------------------------
# Helpers


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill_file(path: Path, limit: int | None = None) -> int:
    """Writes zeros to `path` until ENOSPC (or `limit` bytes); returns bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written = 0
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1):
            block = bytes(chunk)
            while limit is None or written + chunk <= limit:
                try:
                    n = os.write(fd, block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                written += n
                if n < chunk:
                    break
        os.fsync(fd)
    finally:
        os.close(fd)
    return written


def message(marker: str, size: int = MESSAGE_SIZE) -> bytes:
    """A plain-text message of about `size` bytes carrying `marker` in its Subject and
    on every body line (no line starts with a dot, so SMTP needs no stuffing)."""
    head = (
        f"From: {SENDER}\r\nTo: {ALICE}\r\nSubject: {marker}\r\n"
        f"Message-ID: <{marker}@example.com>\r\n\r\n"
    ).encode()
    out = [head]
    total = len(head)
    n = 0
    while total < size:
        line = f"{marker} line {n:06d} ".encode() + b"x" * 40 + b"\r\n"
        out.append(line)
        total += len(line)
        n += 1
    return b"".join(out)


def answer(what: str, call):
    """Runs one client call; a timeout means the server hung."""
    try:
        return call()
    except TimeoutError:
        pytest.fail(f"{what}: no answer within {CALL_TIMEOUT}s (server hangs)", pytrace=False)


def smtp_session(server: FullDiskServer) -> RawSmtp:
    s = answer("SMTP greeting", lambda: RawSmtp(server.smtp_port, timeout=CALL_TIMEOUT))
    lines = answer("EHLO", lambda: s.ehlo())
    assert lines[0].startswith(b"250-"), lines
    return s


def smtp_send(s: RawSmtp, data: bytes) -> bytes:
    """One transaction on an open session; returns the reply to the final dot."""
    assert answer("MAIL", lambda: s.cmd(f"MAIL FROM:<{SENDER}>")) == SENDER_OK
    assert answer("RCPT", lambda: s.cmd(f"RCPT TO:<{ALICE}>")) == RECIPIENT_OK
    assert answer("DATA", lambda: s.cmd("DATA")) == START_DATA
    assert not any(line.startswith(b".") for line in data.split(b"\r\n"))
    s.send(data + b".\r\n")
    return answer("end of DATA", lambda: s.reply()[-1])


def imap_session(server: FullDiskServer) -> RawImap:
    r = answer("IMAP greeting", lambda: RawImap(server, implicit=True, timeout=CALL_TIMEOUT))
    tagged = answer("LOGIN", lambda: r.login(ALICE, ALICE_PW))
    assert re.fullmatch(rb"T\d+ OK \[CAPABILITY [^\]]*\] .*", tagged), tagged
    return r


def status_of(tagged: bytes) -> bytes:
    """A tagged line without its tag."""
    return tagged.split(b" ", 1)[1]


def imap(r: RawImap, *parts) -> tuple[list[bytes], bytes]:
    untagged, tagged = answer(f"IMAP {parts[0]!r}", lambda: r.cmd(*parts))
    return untagged, status_of(tagged)


def select_inbox(r: RawImap) -> list[bytes]:
    untagged, tagged = imap(r, "SELECT INBOX")
    assert tagged == b"OK [READ-WRITE] SELECT completed", (untagged, tagged)
    return untagged


def uids(r: RawImap) -> list[int]:
    """UID SEARCH ALL (other untagged lines, such as pushed EXPUNGEs, are left out)."""
    untagged, tagged = imap(r, "UID SEARCH ALL")
    assert tagged == b"OK UID SEARCH completed", tagged
    found = [line for line in untagged if line.startswith(b"* SEARCH")]
    assert len(found) == 1, untagged
    return [int(x) for x in found[0].split()[2:]]


def fetch_body(r: RawImap, uid: int) -> bytes:
    untagged, tagged = imap(r, f"UID FETCH {uid} (UID BODY.PEEK[])")
    assert tagged == b"OK UID FETCH completed", (uid, tagged)
    found = [line for line in untagged if b"BODY[]" in line]
    assert len(found) == 1, (uid, [u[:200] for u in untagged])
    m = re.match(rb"\* \d+ FETCH \(UID (\d+) BODY\[\] \{(\d+)\}\r\n", found[0])
    assert m and int(m.group(1)) == uid, found[0][:200]
    body = found[0][m.end() : m.end() + int(m.group(2))]
    assert found[0][m.end() + len(body) :] == b")", found[0][-200:]
    return body


def delivered(stored: bytes, sent: bytes) -> bool:
    """Whether `stored` is `sent` as SMTP delivery stores it: Return-Path and a
    Received header in front, the message itself byte for byte after them."""
    if not stored.endswith(sent):
        return False
    trace = stored[: len(stored) - len(sent)]
    return re.fullmatch(
        rb"Return-Path: <" + re.escape(SENDER.encode()) + rb">\r\n"
        rb"Received: from client\.example\.org \(\[127\.0\.0\.1\]\)\r\n"
        rb"\tby [^\r\n]+ \(Portico\) with ESMTP\r\n\tid [0-9A-F]{12}\r\n"
        rb"\tfor <" + re.escape(ALICE.encode()) + rb">;\r\n\t[^\r\n]+\r\n",
        trace,
    ) is not None


def start_idle(r: RawImap) -> None:
    r.send(b"I1 IDLE\r\n")
    assert answer("IDLE", r.line) == b"+ idling"


def stop_idle(r: RawImap) -> list[bytes]:
    """DONE; returns what the server pushed during the IDLE."""
    r.send(b"DONE\r\n")
    untagged, tagged = answer("DONE", lambda: r.read_until("I1"))
    assert tagged == b"I1 OK IDLE terminated", tagged
    return untagged


def exists_lines(untagged: list[bytes]) -> list[bytes]:
    return [line for line in untagged if re.fullmatch(rb"\* \d+ EXISTS", line)]


def flags_of(r: RawImap, uid: int) -> set[bytes]:
    """The flags of one message as a session sees them (\\Recent left out)."""
    untagged, tagged = imap(r, f"UID FETCH {uid} (UID FLAGS)")
    assert tagged == b"OK UID FETCH completed", tagged
    for line in untagged:
        m = re.fullmatch(rb"\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\)\)", line)
        if m and int(m.group(1)) == uid:
            return set(m.group(2).split()) - {b"\\Recent"}
    raise AssertionError(f"no FLAGS for UID {uid} in {untagged}")


# --------------------------------------------------------------------------------------


def test_floor_refuses_new_mail_and_space_comes_back(make_full_server, tmpfs):
    ballast = tmpfs / "ballast"
    filler = tmpfs / "filler"
    assert fill_file(ballast, BALLAST_MB * MIB) == BALLAST_MB * MIB
    server = make_full_server(data_dir=str(tmpfs / "data"))
    server.add_user(ALICE, ALICE_PW)

    watcher = imap_session(server)
    assert select_inbox(watcher)[0] == b"* 0 EXISTS"
    seen_uids: set[int] = set()

    # ---- 1. Deliveries until the floor refuses one.
    sent: dict[str, bytes] = {}
    smtp = smtp_session(server)
    refused = None
    for n in range(MAX_FILL):
        marker = f"fill-{n:03d}"
        data = message(marker)
        free_before = free_bytes(tmpfs)
        reply = smtp_send(smtp, data)
        if reply == NO_SPACE_SMTP:
            refused = free_before
            break
        assert QUEUED.fullmatch(reply), (marker, reply, free_before)
        sent[marker] = data
    assert refused is not None, f"{MAX_FILL} deliveries of {MESSAGE_SIZE} bytes and no 452"
    # Refused at the floor, not long before it.
    assert FLOOR_MB * MIB - 3 * MIB < refused < FLOOR_MB * MIB, refused
    assert len(sent) >= 5, list(sent)

    untagged, tagged = imap(watcher, "NOOP")
    assert tagged == b"OK NOOP completed"
    assert exists_lines(untagged) == [b"* %d EXISTS" % len(sent)], untagged
    reader = imap_session(server)
    select_inbox(reader)
    current = uids(reader)
    assert len(current) == len(sent)
    seen_uids.update(current)
    uid_of = dict(zip(sent, current))  # delivered one at a time, so in order
    for marker in (f"fill-{len(sent) - 1:03d}", "fill-000"):
        assert delivered(fetch_body(reader, uid_of[marker]), sent[marker]), marker

    # ---- Below the floor: new mail is refused, and never announced.
    start_idle(watcher)
    # Another transaction on the same session, and a small message, are refused too;
    # the session goes on.
    assert smtp_send(smtp, message("refused-big")) == NO_SPACE_SMTP
    assert smtp_send(smtp, message("refused-small", 300)) == NO_SPACE_SMTP
    assert answer("NOOP", lambda: smtp.cmd("NOOP")) == b"250 2.0.0 Ok"
    for size in (MESSAGE_SIZE, 300):
        untagged, tagged = imap(
            reader, "APPEND INBOX ", Literal(message(f"append-{size}", size))
        )
        assert tagged == NO_SPACE_IMAP, (size, untagged, tagged)
        assert exists_lines(untagged) == [], untagged

    # Reading and deleting still work: POP3 lists, retrieves, and DELE + QUIT removes.
    pop = answer("POP3 login", lambda: server.login(ALICE, ALICE_PW))
    pop.sock.settimeout(CALL_TIMEOUT)
    count, _ = answer("STAT", pop.stat)
    assert count == len(sent)
    resp, listing, _ = answer("LIST", pop.list)
    assert resp.startswith(b"+OK") and len(listing) == count
    stored_first = fetch_body(reader, uid_of["fill-000"])
    assert listing[0] == b"1 %d" % len(stored_first)
    resp, lines, _ = answer("RETR", lambda: pop.retr(1))
    assert resp.startswith(b"+OK") and lines == wire_lines(stored_first)
    assert answer("DELE", lambda: pop.dele(1)) == b"+OK Message 1 deleted"
    assert answer("QUIT", pop.quit) == b"+OK Logging out, 1 message deleted"

    # The deletion is announced; nothing refused is.
    assert stop_idle(watcher) == [b"* 1 EXPUNGE"]
    del sent["fill-000"]
    assert uids(watcher) == [uid_of[m] for m in sent]

    # ---- 2. The disk at 0 bytes: a plain file takes every byte left. New mail still
    # gets 452 and NO (quickly: every call has a timeout), reading still works. Nothing
    # here writes metadata: whether a flag change fits in the metadata database's last
    # page is luck, so those are the next test's.
    fill_file(filler)
    assert free_bytes(tmpfs) < 4096, free_bytes(tmpfs)
    start_idle(watcher)
    assert smtp_send(smtp, message("at-zero", 300)) == NO_SPACE_SMTP
    assert smtp_send(smtp, message("at-zero-big")) == NO_SPACE_SMTP
    untagged, tagged = imap(reader, "APPEND INBOX ", Literal(message("at-zero-append", 300)))
    assert tagged == NO_SPACE_IMAP, (untagged, tagged)
    marker = next(iter(sent))
    assert delivered(fetch_body(reader, uid_of[marker]), sent[marker])
    pop = answer("POP3 login", lambda: server.login(ALICE, ALICE_PW))
    pop.sock.settimeout(CALL_TIMEOUT)
    resp, lines, _ = answer("RETR", lambda: pop.retr(1))
    assert lines == wire_lines(fetch_body(reader, uid_of[marker]))
    assert answer("QUIT", pop.quit) == b"+OK Logging out"
    assert stop_idle(watcher) == []

    # ---- 3. Space comes back (the filler and the ballast go; expunged bodies free
    # nothing on disk while compaction is off). No restart.
    filler.unlink()
    ballast.unlink()
    assert free_bytes(tmpfs) > FLOOR_MB * MIB + 4 * MIB
    victim = uid_of[marker]
    untagged, tagged = imap(reader, f"UID STORE {victim} +FLAGS.SILENT (\\Deleted)")
    assert tagged == b"OK UID STORE completed", tagged
    untagged, tagged = imap(reader, f"UID EXPUNGE {victim}")
    assert tagged == b"OK UID EXPUNGE completed", tagged
    del sent[marker]

    start_idle(watcher)
    again = message("after-free")
    assert QUEUED.fullmatch(smtp_send(smtp, again))
    appended = message("after-free-append", 200_000)
    untagged, tagged = imap(reader, "APPEND INBOX ", Literal(appended))
    m = APPENDUID.fullmatch(tagged)
    assert m, (untagged, tagged)
    append_uid = int(m.group(2))
    current = uids(reader)
    new = sorted(set(current) - seen_uids)
    assert len(new) == 2 and new[1] == append_uid, (new, append_uid)
    # UIDs go on above everything ever seen: the refusals took none that shows up.
    assert new[0] > max(seen_uids), (new, max(seen_uids))
    assert delivered(fetch_body(reader, new[0]), again)
    assert fetch_body(reader, append_uid) == crlf(appended)
    # The watcher hears of the expunge, then of the new messages (one EXISTS each, or
    # one for both), and of nothing else.
    pushed = []
    final = b"* %d EXISTS" % len(current)
    while final not in pushed:
        pushed.append(answer("IDLE push", watcher.line))
    pushed += stop_idle(watcher)
    told = [x for x in pushed if not re.fullmatch(rb"\* \d+ RECENT", x)]
    assert told in (
        [b"* 1 EXPUNGE", b"* %d EXISTS" % (len(current) - 1), final],
        [b"* 1 EXPUNGE", final],
    ), pushed
    # Every older message still reads back whole.
    assert current == [uid_of[m] for m in sent] + new
    for marker, data in sent.items():
        assert delivered(fetch_body(reader, uid_of[marker]), data), marker

    # ---- 4. SIGTERM: exit 0 within the deadline, with a session still idling.
    smtp.close()
    reader.close()
    start_idle(watcher)
    server.stop()
    watcher.close()


def test_metadata_writes_at_zero_bytes_and_recovery_without_restart(make_full_server, tmpfs):
    """With the disk at 0 bytes the floor no longer protects the metadata database:
    flag changes and expunges need room there too. Each must answer OK or a clear NO;
    a change answered NO must not be visible; once space is back, every kind of write
    works again without a restart, and SIGTERM still exits 0.

    Problems are collected, so that one run reports all of them."""
    filler = tmpfs / "filler"
    server = make_full_server(data_dir=str(tmpfs / "data"))
    server.add_user(ALICE, ALICE_PW)
    smtp = smtp_session(server)
    sent = {}
    for n in range(4):
        sent[n + 1] = message(f"zero-{n}", 100_000)
        assert QUEUED.fullmatch(smtp_send(smtp, sent[n + 1]))
    reader = imap_session(server)
    select_inbox(reader)
    watcher = imap_session(server)
    select_inbox(watcher)
    assert uids(reader) == [1, 2, 3, 4]
    problems: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    fill_file(filler)
    assert free_bytes(tmpfs) < 4096, free_bytes(tmpfs)
    assert smtp_send(smtp, message("at-zero", 300)) == NO_SPACE_SMTP

    # Flag changes until the metadata database runs out of room (or 300 of them).
    acked: set[bytes] = set()
    refused_store = None
    for i in range(300):
        untagged, tagged = imap(reader, f"UID STORE 1 FLAGS ($kw{i})")
        assert tagged == b"OK UID STORE completed" or CLEAR_NO.fullmatch(tagged), (i, tagged)
        if tagged.startswith(b"NO"):
            refused_store = (i, tagged)
            break
        acked = {b"$kw%d" % i}
    # An expunge, answered one way or the other.
    _, stored = imap(reader, "UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert stored == b"OK UID STORE completed" or CLEAR_NO.fullmatch(stored), stored
    _, expunged = imap(reader, "UID EXPUNGE 2")
    assert expunged == b"OK UID EXPUNGE completed" or CLEAR_NO.fullmatch(expunged), expunged
    expunge_acked = stored.startswith(b"OK") and expunged.startswith(b"OK")
    # What was refused is not what sessions see.
    for name, r in (("the session that stored", reader), ("another session", watcher)):
        imap(r, "NOOP")
        seen = flags_of(r, 1)
        expect(
            seen == acked,
            f"at 0 bytes, {name} sees flags {sorted(seen)} on UID 1; the last STORE "
            f"answered OK set {sorted(acked)} (refused: {refused_store})",
        )
        listed = uids(r)
        expect(
            (2 not in listed) == expunge_acked,
            f"at 0 bytes, {name} lists UIDs {listed} after STORE \\Deleted {stored!r} "
            f"and UID EXPUNGE 2 {expunged!r}",
        )

    # ---- Space is back: every write works again, without a restart.
    filler.unlink()
    assert free_bytes(tmpfs) > FLOOR_MB * MIB + 4 * MIB
    _, tagged = imap(reader, "UID STORE 1 FLAGS ($after)")
    expect(tagged == b"OK UID STORE completed", f"STORE after space came back: {tagged!r}")
    store_ok = tagged.startswith(b"OK")
    _, tagged = imap(reader, "UID STORE 3 +FLAGS.SILENT (\\Deleted)")
    _, tagged2 = imap(reader, "UID EXPUNGE 3")
    expect(
        (tagged, tagged2) == (b"OK UID STORE completed", b"OK UID EXPUNGE completed"),
        f"STORE \\Deleted + UID EXPUNGE after space came back: {tagged!r}, {tagged2!r}",
    )
    expunged_3 = tagged.startswith(b"OK") and tagged2.startswith(b"OK")
    reply = smtp_send(smtp, message("after-zero"))
    expect(QUEUED.fullmatch(reply) is not None, f"SMTP after space came back: {reply!r}")
    appended = message("after-zero-append", 50_000)
    _, tagged = imap(reader, "APPEND INBOX ", Literal(appended))
    m = APPENDUID.fullmatch(tagged)
    expect(m is not None, f"APPEND after space came back: {tagged!r}")
    if m:
        expect(fetch_body(reader, int(m.group(2))) == crlf(appended), "APPENDed bytes differ")

    smtp.close()
    reader.close()
    watcher.close()
    code = server.terminate()
    expect(code == 0, f"after SIGTERM the server exited with {code}")

    # What was acknowledged survives a restart.
    server.start()
    r = imap_session(server)
    select_inbox(r)
    if store_ok:
        got = flags_of(r, 1)
        expect(got == {b"$after"}, f"after a restart UID 1 has flags {sorted(got)}")
    listed = uids(r)
    expect(
        (3 not in listed) == expunged_3 and (2 not in listed) == expunge_acked,
        f"after a restart the INBOX lists {listed}",
    )
    for uid in (1, 4):
        assert delivered(fetch_body(r, uid), sent[uid]), uid
    r.close()
    assert not problems, "\n".join(problems)
