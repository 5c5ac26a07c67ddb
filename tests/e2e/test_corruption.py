"""Damaged storage end to end: the real server, its store damaged on disk while it is
stopped, then restarted and read over IMAP and POP3, and checked with `portico fsck`.

- A flipped byte in a body record (found by scanning the segment files, record format
  at the top of crates/store/src/bodylog.rs): that message alone answers
  `NO [CORRUPTION]` (IMAP) and `-ERR [SYS/TEMP]` (POP3); fsck names it, `--repair`
  sets it aside, and after that the folder serves without it.
- A torn tail of the newest segment (cut inside its last record): the server cuts it
  back at start and says so in its log, takes the message whose body was cut out again
  (only an unacknowledged one can be there), and the earlier messages serve byte-exact.
- Garbage in the metadata database (sled's `db` and `conf` files): the server starts or
  exits non-zero with an error message, never panics and never hangs; what it serves is
  the delivered bytes or a NO, never other bytes.

Every expectation is computed here from what was delivered and from the bytes on disk."""

from __future__ import annotations

import os
import poplib
import random
import re
import shutil
import socket
import time
from pathlib import Path

import pytest

from conftest import (
    START_TIMEOUT,
    ImapServer,
    RawImap,
    crlf,
    load_corpus,
    server_factory,
    wire_lines,
)

READER = "reader@example.com"
READER_PW = "reader-Corrupt-1"
CALL_TIMEOUT = 10.0

STORE_EXTRA = """
[store]
segment_mb = 1
compact_interval_secs = 0
"""

MAGIC = b"PRB1"
HEADER_LEN = 24
BLOCK = 64 * 1024

DAMAGED = re.compile(
    rb"NO \[CORRUPTION\] Damaged and unreadable: message UID (\d+) in folder #(\d+): (.+)"
)
POP3_DAMAGED = b"-ERR [SYS/TEMP] Message could not be read"
TORN_TAIL_LOG = "body log: cutting the newest segment's torn tail"
UNDURABLE_LOG = "taking out messages whose bodies never became durable"


class StoreServer(ImapServer):
    """An ImapServer (POP3 too) with small body log segments, so that a few messages
    fill several of them, and no compaction moving records while the test reads them."""

    def write_config(self) -> None:
        super().write_config()
        self.config.write_text(self.config.read_text() + STORE_EXTRA)

    @property
    def store_dir(self) -> Path:
        return self.root / self.data_dir / "store"

    def segments(self) -> list[Path]:
        return sorted((self.store_dir / "bodies").glob("*.seg"))

    def log_of_start(self) -> str:
        """The log of the latest start only."""
        return self.log().rsplit(f"==== start #{self.starts} ====\n", 1)[-1]


@pytest.fixture
def make_store_server(portico_bin, tmp_path, request):
    yield from server_factory(StoreServer, portico_bin, tmp_path, request, "store")


# --------------------------------------------------------------------------------------
# The body log, read the way crates/store/src/bodylog.rs writes it


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_answer():
    # RFC 3720 B.4: 32 bytes of zeros.
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"123456789") == 0xE3069283


class Record:
    def __init__(self, segment: Path, offset: int, body_id: int, length: int):
        self.segment = segment
        self.offset = offset
        self.body_id = body_id
        self.length = length

    @property
    def payload_start(self) -> int:
        return self.offset + HEADER_LEN + 4 * -(-self.length // BLOCK)

    @property
    def end(self) -> int:
        return self.payload_start + self.length

    def where(self) -> str:
        """How the server names the record in its errors."""
        return f"{self.segment.name}:{self.offset}"

    def payload(self) -> bytes:
        with open(self.segment, "rb") as f:
            f.seek(self.payload_start)
            return f.read(self.length)


def parse_header(data: bytes, at: int) -> tuple[int, int] | None:
    """(body id, payload length) of a valid header at `at`, else None."""
    head = data[at : at + HEADER_LEN]
    if len(head) < HEADER_LEN or head[:4] != MAGIC:
        return None
    if crc32c(head[:16]) != int.from_bytes(head[16:20], "little"):
        return None
    return int.from_bytes(head[8:16], "little"), int.from_bytes(head[4:8], "little")


def scan(segment: Path) -> list[Record]:
    """Every whole record in a segment, skipping what does not parse."""
    data = segment.read_bytes()
    out = []
    at = 0
    while at + HEADER_LEN <= len(data):
        header = parse_header(data, at)
        if header is None:
            at = data.find(MAGIC, at + 1)
            if at < 0:
                break
            continue
        record = Record(segment, at, *header)
        if record.end > len(data):
            break
        out.append(record)
        at = record.end
    return out


def record_with(server: StoreServer, marker: bytes) -> Record:
    found = [
        r for seg in server.segments() for r in scan(seg) if marker in r.payload()
    ]
    assert len(found) == 1, (marker, [(r.where(), r.length) for r in found])
    return found[0]


# --------------------------------------------------------------------------------------
# Clients


def answer(what: str, call):
    try:
        return call()
    except (TimeoutError, socket.timeout):
        pytest.fail(f"{what}: no answer within {CALL_TIMEOUT}s (server hangs)", pytrace=False)


def imap_login(server: StoreServer) -> RawImap:
    r = answer("IMAP greeting", lambda: RawImap(server, implicit=True, timeout=CALL_TIMEOUT))
    tagged = answer("LOGIN", lambda: r.login(READER, READER_PW))
    assert re.fullmatch(rb"T\d+ OK \[CAPABILITY [^\]]*\] .*", tagged), tagged
    return r


def imap(r: RawImap, *parts) -> tuple[list[bytes], bytes]:
    """One command; the tagged line without its tag."""
    untagged, tagged = answer(f"IMAP {parts[0]!r}", lambda: r.cmd(*parts))
    return untagged, tagged.split(b" ", 1)[1]


def select_inbox(r: RawImap) -> tuple[int, int]:
    """SELECT INBOX: (EXISTS, UIDNEXT)."""
    untagged, tagged = imap(r, "SELECT INBOX")
    assert tagged == b"OK [READ-WRITE] SELECT completed", (untagged, tagged)
    exists = next(int(x.split()[1]) for x in untagged if x.endswith(b" EXISTS"))
    uidnext = next(
        int(m.group(1))
        for x in untagged
        if (m := re.match(rb"\* OK \[UIDNEXT (\d+)\]", x))
    )
    return exists, uidnext


FETCH_BODY = re.compile(rb"\* (\d+) FETCH \(UID (\d+) (BODY\[[A-Z]*\]) \{(\d+)\}\r\n")


def bodies(untagged: list[bytes], section: bytes = b"BODY[]") -> dict[int, bytes]:
    """UID -> bytes of `* n FETCH (UID u BODY[...] {len}...)` lines (other lines, such as
    unsolicited FLAGS updates, are left out)."""
    out = {}
    for line in untagged:
        m = FETCH_BODY.match(line)
        if not m:
            assert b"BODY[" not in line, line[:200]
            continue
        assert m.group(3) == section, line[:200]
        data = line[m.end() : m.end() + int(m.group(4))]
        assert line[m.end() + len(data) :] == b")", line[-100:]
        out[int(m.group(2))] = data
    return out


def uid_set(uids) -> str:
    return ",".join(str(u) for u in sorted(uids))


def fetch_all(r: RawImap, uids) -> dict[int, bytes]:
    untagged, tagged = imap(r, f"UID FETCH {uid_set(uids)} (UID BODY.PEEK[])")
    assert tagged == b"OK UID FETCH completed", tagged
    return bodies(untagged)


def pop3_login(server: StoreServer) -> poplib.POP3:
    p = answer("POP3 login", lambda: server.login(READER, READER_PW))
    p.sock.settimeout(CALL_TIMEOUT)
    return p


def fsck(server: StoreServer, *args: str) -> tuple[int, list[str], str]:
    r = server.cli("fsck", *args)
    stderr = r.stderr.decode(errors="replace")
    assert "panicked at" not in stderr, stderr
    return r.returncode, r.stdout.decode().splitlines(), stderr


# --------------------------------------------------------------------------------------
# Messages


def victim(marker: str, size: int = 200_000) -> bytes:
    """A message spanning several 64 KiB blocks, `marker` on every body line."""
    head = (
        f"From: sender@example.org\r\nTo: {READER}\r\nSubject: {marker}\r\n"
        f"Message-ID: <{marker}@example.org>\r\n\r\n"
    ).encode()
    lines = [head]
    total, n = len(head), 0
    while total < size:
        lines.append(f"{marker} {n:06d} ".encode() + b"y" * 50 + b"\r\n")
        total += len(lines[-1])
        n += 1
    return b"".join(lines)


def deliver_all(server: StoreServer, messages: list[bytes]) -> dict[int, bytes]:
    """Delivers in order through the command line; UID -> stored bytes."""
    stored = {}
    for i, data in enumerate(messages, 1):
        assert server.deliver(READER, data) == i
        stored[i] = crlf(data)
    return stored


def check_pop3(server: StoreServer, stored: dict[int, bytes], damaged: set[int]) -> None:
    """POP3 lists every message, retrieves the undamaged ones byte-exact and refuses
    the damaged ones with the temporary error; the session goes on after that."""
    p = pop3_login(server)
    uids = sorted(stored)
    count, _ = answer("STAT", p.stat)
    assert count == len(uids)
    _, listing, _ = answer("LIST", p.list)
    assert listing == [b"%d %d" % (n, len(stored[u])) for n, u in enumerate(uids, 1)]
    for n, uid in enumerate(uids, 1):
        if uid in damaged:
            with pytest.raises(poplib.error_proto) as e:
                answer("RETR", lambda: p.retr(n))
            assert e.value.args[0] == POP3_DAMAGED, (uid, e.value.args)
        else:
            resp, lines, _ = answer("RETR", lambda: p.retr(n))
            assert resp.startswith(b"+OK") and lines == wire_lines(stored[uid]), uid
    assert answer("NOOP", p.noop) == b"+OK"
    assert answer("QUIT", p.quit) == b"+OK Logging out"


# --------------------------------------------------------------------------------------
# (a) A flipped byte


def test_flipped_byte_in_a_sealed_segment(make_store_server):
    server = make_store_server()
    server.add_user(READER, READER_PW)
    corpus = [data for _, data in load_corpus()]
    marker = "VICTIM-7f3a9c"
    # The victim among the first messages, so that later ones seal its segment.
    messages = corpus[:12] + [victim(marker)] + corpus[12:]
    stored = deliver_all(server, messages)
    bad_uid = 13
    server.stop()

    record = record_with(server, marker.encode())
    assert record.segment != server.segments()[-1], "the victim's segment is not sealed"
    assert record.payload() == stored[bad_uid]
    # Flip one byte in the second 64 KiB block of its payload.
    flip = BLOCK + 1234
    with open(record.segment, "r+b") as f:
        f.seek(record.payload_start + flip)
        byte = f.read(1)
        f.seek(record.payload_start + flip)
        f.write(bytes([byte[0] ^ 0xFF]))
    why = f"checksum mismatch in block 1 in record at {record.where()}".encode()

    server.start()
    r = imap_login(server)
    exists, uidnext = select_inbox(r)
    assert (exists, uidnext) == (len(stored), len(stored) + 1)
    untagged, tagged = imap(r, f"UID FETCH {bad_uid} BODY[]")
    m = DAMAGED.fullmatch(tagged)
    assert m and int(m.group(1)) == bad_uid and m.group(3) == why, tagged
    assert untagged == [], untagged
    folder = int(m.group(2))
    # The header lies in the first block, which is intact: it still reads.
    untagged, tagged = imap(r, f"UID FETCH {bad_uid} (UID BODY.PEEK[HEADER])")
    assert tagged == b"OK UID FETCH completed", tagged
    header = stored[bad_uid][: stored[bad_uid].index(b"\r\n\r\n") + 4]
    assert bodies(untagged, b"BODY[HEADER]") == {bad_uid: header}
    # Every other message reads back exactly.
    good = set(stored) - {bad_uid}
    got = fetch_all(r, good)
    assert got.keys() == good
    for uid in good:
        assert got[uid] == stored[uid], uid
    # A FETCH that includes the damaged one answers (no hang) with the same code.
    _, tagged = imap(r, "UID FETCH 1:* (UID BODY.PEEK[])")
    m = DAMAGED.fullmatch(tagged)
    assert m and int(m.group(1)) == bad_uid, tagged
    assert imap(r, "NOOP")[1] == b"OK NOOP completed"
    r.close()
    check_pop3(server, stored, {bad_uid})
    server.stop()

    # fsck names it; --repair sets it aside; then the store is clean.
    n = len(stored)
    code, out, err = fsck(server)
    assert code == 1, (out, err)
    assert out == [
        f"checked 1 accounts, 6 folders, {n} messages, 0 queued, {n} bodies",
        f"damaged: {READER} folder 'INBOX': UID {bad_uid}: message UID {bad_uid} in "
        f"folder #{folder}: {why.decode()}",
        "damaged: 1, index errors: 0, unreferenced bodies: 0, quarantined: 0, "
        "folders fixed: 0",
    ], (out, err)
    code, out, err = fsck(server, "--repair")
    assert code == 1, (out, err)
    assert out[-1].startswith("damaged: 1, index errors: 0, "), out
    assert "quarantined: 1," in out[-1], out
    code, out, err = fsck(server)
    assert code == 0, (out, err)
    assert out == [
        f"checked 1 accounts, 6 folders, {n - 1} messages, 0 queued, {n - 1} bodies",
        "damaged: 0, index errors: 0, unreferenced bodies: 0, quarantined: 0, "
        "folders fixed: 0",
    ], (out, err)

    # Clients see it expunged; its UID is not handed out again; the rest is intact.
    server.start()
    r = imap_login(server)
    assert select_inbox(r) == (n - 1, n + 1)
    untagged, tagged = imap(r, f"UID FETCH {bad_uid} (UID BODY.PEEK[])")
    assert (untagged, tagged) == ([], b"OK UID FETCH completed")
    del stored[bad_uid]
    got = fetch_all(r, stored)
    assert got == stored
    r.close()
    check_pop3(server, stored, set())
    assert server.deliver(READER, b"Subject: after\r\n\r\nafter repair\r\n") == n + 1
    server.stop()


# --------------------------------------------------------------------------------------
# (b) A torn tail


def test_torn_tail_of_the_newest_segment(make_store_server):
    """A power cut can only tear what was never acknowledged (acknowledgements wait for
    the segment's fdatasync), so a message whose body lies in the torn tail is one whose
    metadata reached the disk early: at start the tail is cut back and that message
    taken out again (its UID never handed out twice). Simulated by cutting the last
    delivered message's record at four places, each on a fresh copy of the store."""
    server = make_store_server()
    server.add_user(READER, READER_PW)
    corpus = [data for _, data in load_corpus()]
    marker = "TAIL-41c0de"
    # The corpus, then one more message: the last body record of the newest segment.
    stored = deliver_all(server, corpus + [victim(marker, 150_000)])
    tail_uid = len(stored)
    server.stop()

    record = record_with(server, marker.encode())
    newest = server.segments()[-1]
    assert record.segment == newest
    bodies_after = [r for r in scan(newest) if r.offset > record.offset]
    # Only commit markers (id 2^64-1) may follow it.
    assert all(r.body_id == 2**64 - 1 for r in bodies_after), bodies_after
    pristine = server.root / "pristine"
    shutil.copytree(server.store_dir, pristine)
    rng = random.Random(os.environ.get("PORTICO_CORRUPTION_SEED", "torn-tail"))
    cuts = [
        ("in the header", rng.randrange(record.offset + 1, record.offset + HEADER_LEN)),
        ("in the crc table", rng.randrange(record.offset + HEADER_LEN, record.payload_start)),
        ("in the payload", rng.randrange(record.payload_start, record.payload_start + BLOCK)),
        ("in the last block", rng.randrange(record.end - 1000, record.end)),
    ]
    good = set(stored) - {tail_uid}
    for what, cut in cuts:
        shutil.rmtree(server.store_dir)
        shutil.copytree(pristine, server.store_dir)
        newest.write_bytes(newest.read_bytes()[:cut])
        server.start()
        log = server.log_of_start()
        assert TORN_TAIL_LOG in log, (what, cut, log[-2000:])
        assert UNDURABLE_LOG in log, (what, cut, log[-2000:])
        assert "panicked at" not in log
        # Cut back to the end of the record before it.
        assert newest.stat().st_size == record.offset, (what, cut)
        r = imap_login(server)
        # One message fewer; UIDNEXT stays past the taken-out one.
        assert select_inbox(r) == (len(stored) - 1, len(stored) + 1), (what, cut)
        untagged, tagged = imap(r, f"UID FETCH {tail_uid} BODY[]")
        assert (untagged, tagged) == ([], b"OK UID FETCH completed"), (what, tagged)
        assert fetch_all(r, good) == {uid: stored[uid] for uid in good}, (what, cut)
        r.close()
        server.stop()
        code, out, err = fsck(server)
        assert code == 0, (what, out, err)

    # A new message after the last cut gets a UID of its own and reads back as itself.
    server.start()
    new = b"Subject: over the cut\r\n\r\nwritten where the torn record was\r\n"
    new_uid = server.deliver(READER, new)
    assert new_uid == tail_uid + 1
    del stored[tail_uid]
    stored[new_uid] = new
    r = imap_login(server)
    assert select_inbox(r) == (len(stored), new_uid + 1)
    assert fetch_all(r, [new_uid]) == {new_uid: new}
    r.close()
    check_pop3(server, stored, set())
    server.stop()


# --------------------------------------------------------------------------------------
# (c) Garbage in the metadata database


def wait_started(server: StoreServer) -> int | None:
    """Starts the server on the current data directory; returns None once it accepts
    IMAP connections, or its exit status if it exits first. Fails on a hang."""
    server.write_config()
    server.proc = server.spawn()
    server.starts += 1
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        code = server.proc.poll()
        if code is not None:
            return code
        try:
            socket.create_connection(("127.0.0.1", server.imaps_port), timeout=0.5).close()
            return None
        except OSError:
            time.sleep(0.02)
    server.kill()
    pytest.fail(
        f"portico neither served nor exited within {START_TIMEOUT}s:\n"
        f"{server.log_of_start()[-3000:]}",
        pytrace=False,
    )


def uidvalidity_of(untagged: list[bytes]) -> int:
    for line in untagged:
        m = re.match(rb"\* OK \[UIDVALIDITY (\d+)\]", line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no UIDVALIDITY in {untagged}")


def served_or_refused(
    server: StoreServer, stored: dict[int, bytes], uidvalidity: int, uidnext: int
) -> tuple[str, list[str]]:
    """Against a server that started on damaged metadata: every answer comes, and a
    message is either its delivered bytes or a NO, never other bytes. Returns what it
    saw (for the report) and the problems found:

    - a UID handed out again under the same UIDVALIDITY (RFC 9051 §2.3.1.1): a client
      that saw UID n would show its cached message for the new one;
    - acknowledged messages gone without a word (checked by the caller with fsck)."""
    problems = []
    r = answer("IMAP greeting", lambda: RawImap(server, implicit=True, timeout=CALL_TIMEOUT))
    tagged = answer("LOGIN", lambda: r.login(READER, READER_PW)).split(b" ", 1)[1]
    if not tagged.startswith(b"OK"):
        # The account record may be what was hit: a clear refusal, not a hang.
        assert tagged.startswith(b"NO "), tagged
        r.close()
        return f"login {tagged.decode()!r}", problems
    untagged, tagged = imap(r, "SELECT INBOX")
    if not tagged.startswith(b"OK"):
        assert tagged.startswith(b"NO "), tagged
        r.close()
        return f"select {tagged.decode()!r}", problems
    seen = []
    for uid in sorted(stored):
        untagged, tagged = imap(r, f"UID FETCH {uid} (UID BODY.PEEK[])")
        if tagged == b"OK UID FETCH completed":
            got = bodies(untagged)
            assert got in ({}, {uid: stored[uid]}), (uid, {k: v[:200] for k, v in got.items()})
            seen.append("ok" if got else "gone")
        else:
            assert tagged.startswith(b"NO "), (uid, tagged)
            seen.append(tagged[:40].decode(errors="replace"))
    r.close()
    # A new message must not take a UID a client may have seen.
    result = server.cli("deliver", READER, input=b"Subject: new\r\n\r\nafter the damage\r\n")
    m = re.fullmatch(rf"delivered to {re.escape(READER)} as UID (\d+)\n", result.stdout.decode())
    if m:
        r = imap_login(server)
        untagged, tagged = imap(r, "EXAMINE INBOX")
        assert tagged == b"OK [READ-ONLY] EXAMINE completed", tagged
        now = uidvalidity_of(untagged)
        r.close()
        new_uid = int(m.group(1))
        if now == uidvalidity and new_uid < uidnext:
            problems.append(
                f"a new message got UID {new_uid} under the same UIDVALIDITY {now}, "
                f"where UIDs up to {uidnext - 1} had been handed out"
            )
        seen.append(f"new message UID {new_uid}")
    else:
        assert b"panicked at" not in result.stderr, result.stderr
        seen.append(f"deliver refused: {result.stderr.decode(errors='replace').strip()}")
    return f"served {seen}", problems


def damage_variants(store_dir: Path, rng: random.Random) -> list[tuple[str, callable]]:
    db = store_dir / "db"
    conf = store_dir / "conf"
    size = db.stat().st_size

    def overwrite(path: Path, at: int, n: int):
        def apply():
            with open(path, "r+b") as f:
                f.seek(at)
                f.write(rng.randbytes(n))
        return apply

    variants = [
        (f"db: 64 random bytes at {at}", overwrite(db, at, 64))
        for at in (size // 4, size // 2, rng.randrange(size // 8, size - 64))
    ]
    variants.append((f"db: 4096 random bytes at {size // 3}", overwrite(db, size // 3, 4096)))
    variants.append(("db: 512 random bytes at 0", overwrite(db, 0, 512)))
    assert conf.exists(), sorted(p.name for p in store_dir.iterdir())
    variants.append(("conf removed", conf.unlink))
    variants.append(("conf garbled", overwrite(conf, 0, max(8, conf.stat().st_size // 2))))
    return variants


def test_garbage_in_the_metadata_database(make_store_server):
    """Each damage on a fresh copy of the same store. Asserted at once: no panic, no
    hang, exit non-zero with a `portico: …` line when it does not start, and no other
    bytes under a UID when it does. Collected and asserted at the end (so that one run
    reports every variant): no UID handed out twice under one UIDVALIDITY, SIGTERM exits
    0, and acknowledged messages that are gone are at least reported by fsck."""
    server = make_store_server()
    server.add_user(READER, READER_PW)
    corpus = [data for _, data in load_corpus()]
    stored = deliver_all(server, corpus[:10])
    r = imap_login(server)
    untagged, _ = imap(r, "EXAMINE INBOX")
    uidvalidity = uidvalidity_of(untagged)
    r.close()
    server.stop()
    pristine = server.root / "pristine"
    shutil.copytree(server.store_dir, pristine)
    seed = os.environ.get("PORTICO_CORRUPTION_SEED", "sled-garbage")
    rng = random.Random(seed)
    outcomes = [f"(PORTICO_CORRUPTION_SEED={seed})"]
    problems = []
    for what, damage in damage_variants(server.store_dir, rng):
        shutil.rmtree(server.store_dir)
        shutil.copytree(pristine, server.store_dir)
        damage()
        code = wait_started(server)
        if code is not None:
            log = server.log_of_start()
            assert "panicked at" not in log, (what, log[-3000:])
            assert code != 0, (what, log[-3000:])
            # The binary's edge prints one `portico: <error>` line.
            last = log.strip().splitlines()[-1]
            assert re.fullmatch(r"portico: opening the store: .+", last), (what, log[-3000:])
            outcomes.append(f"{what}: exit {code}: {last}")
            gone = False
        else:
            seen, found = served_or_refused(server, stored, uidvalidity, len(stored) + 1)
            problems += [f"{what}: {p}" for p in found]
            code = server.terminate()
            log = server.log_of_start()
            assert "panicked at" not in log, (what, log[-3000:])
            if code != 0:
                problems.append(f"{what}: exit {code} after SIGTERM")
            outcomes.append(f"{what}: started, {seen}, exit {code} after SIGTERM")
            gone = "gone" in seen or seen.startswith("login")
        # fsck on the same store: a verdict or an error, no panic, no hang.
        code, out, err = fsck(server)
        assert code in (0, 1), (what, code, out, err)
        outcomes.append(f"{what}: fsck exit {code}: {(out or [err.strip()])[-1]}")
        if gone and code == 0:
            problems.append(
                f"{what}: acknowledged messages are gone and fsck calls the store clean"
            )
    print("\n".join(outcomes))
    assert not problems, "\n".join(problems + ["", "what happened:"] + outcomes)
