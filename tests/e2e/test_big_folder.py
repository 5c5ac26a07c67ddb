"""Big folders and big commands (issue 10), through the real server: a STORE or EXPUNGE
over every message of a 10,000-message INBOX completes for the issuing session while
another session watching the folder stays connected and ends up where a fresh SELECT
is; a 100 MB INBOX is fetched whole by imaplib and by a client that reads slowly, byte
for byte, with the server's memory measured. (The 100,000-message figures are taken by
scripts/bench-bigfolder.py; here the folder is big enough that one notice per message
overflowed the watchers' queues.)"""

from __future__ import annotations

import base64
import re
import time

import pytest

from bulk import deliver_many
from conftest import RawImap, SmtpServer
from test_hostile_imap import MIB, rss_bytes

MANY = "many@example.com"
HUGE = "huge@example.com"
DOTS = "dots@example.com"
PARTS = "parts@example.com"
PASSWORD = "big-Folder-1"
COUNT = 10_000
HUGE_COUNT = 34
HUGE_SIZE = 3 * MIB


def small(i: int) -> bytes:
    return (
        f"From: s{i}@remote.example\r\nTo: {MANY}\r\nSubject: small {i}\r\n\r\n"
        f"body {i}\r\n"
    ).encode()


def dotted(_: int) -> bytes:
    """4 MB of lines of one to 700 dots: POP3 must stuff every one of them, wherever
    the server's pieces of the message begin and end."""
    lines = b"".join(b"." * (n % 700 + 1) + b"\r\n" for n in range(11_000))
    return b"From: d@remote.example\r\nSubject: dots\r\n\r\n" + lines


ATTACHMENT = bytes(range(256)) * (6 * MIB // 256)  # 6 MiB, every byte value


def multipart(_: int) -> bytes:
    """A 10 MB message of three parts: text, a base64 attachment, a forwarded message."""
    encoded = base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n")
    return (
        b"From: p@remote.example\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\npreamble\r\n"
        b"--b0\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n"
        b"--b0\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded +
        b"--b0\r\nContent-Type: message/rfc822\r\n\r\n"
        b"Subject: inner\r\nFrom: i@remote.example\r\n\r\ninner text\r\n"
        b"--b0--\r\n"
    )


def huge(i: int) -> bytes:
    head = f"From: s{i}@remote.example\r\nTo: {HUGE}\r\nSubject: huge {i}\r\n\r\n".encode()
    line = f"{i:04d} 0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"
    return head + line.encode() * (HUGE_SIZE // len(line))


@pytest.fixture(scope="module")
def node(portico_bin, tmp_path_factory):
    server = SmtpServer(portico_bin, tmp_path_factory.mktemp("big-folder") / "srv")
    server.start()
    try:
        for user in (MANY, HUGE, DOTS, PARTS):
            server.add_user(user, PASSWORD)
        deliver_many(server.smtp_port, DOTS, 1, dotted, connections=1)
        deliver_many(server.smtp_port, PARTS, 1, multipart, connections=1)
        deliver_many(server.smtp_port, MANY, COUNT, small)
        deliver_many(server.smtp_port, HUGE, HUGE_COUNT, huge, connections=4)
        yield server
    finally:
        server.kill()


def session(server) -> RawImap:
    r = RawImap(server, implicit=True, timeout=300)
    assert r.login(MANY, PASSWORD).startswith(b"T001 OK ")
    return r


def flags_by_uid(untagged: list[bytes]) -> dict[int, bytes]:
    """UID -> flags, without \\Recent (which only the first session to select sees)."""
    out = {}
    for line in untagged:
        m = re.fullmatch(rb"\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\)\)", line)
        assert m, line
        out[int(m.group(1))] = b" ".join(f for f in m.group(2).split() if f != b"\\Recent")
    return out


def state(r: RawImap) -> dict[int, bytes]:
    untagged, tagged = r.cmd("UID FETCH 1:* (FLAGS)")
    assert tagged.endswith(b" OK UID FETCH completed"), tagged
    return flags_by_uid(untagged)


def fresh_state(server) -> dict[int, bytes]:
    r = session(server)
    r.ok("EXAMINE INBOX")
    try:
        return state(r)
    finally:
        r.close()


def status(server) -> bytes:
    """STATUS from a session that never selected the folder (counts kept by the store)."""
    r = session(server)
    try:
        untagged, tagged = r.cmd("STATUS INBOX (MESSAGES UNSEEN DELETED)")
        assert tagged.endswith(b" OK STATUS completed"), tagged
        assert len(untagged) == 1, untagged
        return untagged[0]
    finally:
        r.close()


SMALL_FIELDS = re.compile(
    rb"\* \d+ FETCH \(UID (\d+) BODY\[HEADER\.FIELDS \(([^)]*)\)\] \{(\d+)\}\r\n(.*)\)", re.S)


def test_header_fields_of_thousands_of_messages_come_out_exactly(node):
    """The fields clients list folders by come from the lines kept at append, read for
    thousands of messages at once; a field not kept makes the server read each header.
    Both give each message's lines exactly, in the header's order."""
    r = session(node)
    r.ok("EXAMINE INBOX")
    for names in ("(Subject FROM to)", "(Subject FROM to X-Not-Kept)"):
        untagged, tagged = r.cmd(f"UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS {names}])")
        assert tagged.endswith(b" OK UID FETCH completed"), tagged
        assert len(untagged) == COUNT
        seen = set()
        for line in untagged:
            m = SMALL_FIELDS.fullmatch(line)
            assert m, line
            assert m.group(2).decode() == names[1:-1]
            lines = m.group(4)
            assert int(m.group(3)) == len(lines)
            i = int(re.search(rb"Subject: small (\d+)\r\n", lines).group(1))
            assert lines == (f"From: s{i}@remote.example\r\nTo: {MANY}\r\n"
                             f"Subject: small {i}\r\n\r\n").encode(), lines
            seen.add(i)
        assert seen == set(range(COUNT))
    r.close()


def test_store_and_expunge_over_every_message_keep_everyone_connected(node):
    assert status(node) == b"* STATUS \"INBOX\" (MESSAGES %d UNSEEN %d DELETED 0)" % (COUNT, COUNT)
    watcher = session(node)
    untagged = watcher.ok("SELECT INBOX")
    assert f"* {COUNT} EXISTS".encode() in untagged
    issuer = session(node)
    issuer.ok("SELECT INBOX")

    untagged, tagged = issuer.cmd("STORE 1:* +FLAGS (\\Seen)")
    assert tagged == b"T003 OK STORE completed", tagged
    assert len(untagged) == COUNT
    assert all(line.endswith(b" FETCH (FLAGS (\\Seen))") for line in untagged), untagged[:3]

    # The watcher hears of every change at its next command, and is not cut off.
    untagged, tagged = watcher.cmd("NOOP")
    assert tagged == b"T003 OK NOOP completed", tagged
    assert len(untagged) == COUNT, untagged[:3]
    assert state(watcher) == fresh_state(node)
    assert set(state(watcher).values()) == {b"\\Seen"}
    assert status(node) == b"* STATUS \"INBOX\" (MESSAGES %d UNSEEN 0 DELETED 0)" % COUNT

    # A block from the middle first: the rest keep their order and their numbers close
    # up, for the issuer and for the watcher.
    untagged, tagged = issuer.cmd("STORE 2001:6000 +FLAGS.SILENT (\\Deleted)")
    assert (untagged, tagged) == ([], b"T004 OK STORE completed")
    before = state(issuer)
    untagged, tagged = issuer.cmd("EXPUNGE")
    assert tagged == b"T006 OK EXPUNGE completed", tagged
    assert untagged == [b"* %d EXPUNGE" % n for n in range(6000, 2000, -1)]
    kept = dict(list(before.items())[:2000] + list(before.items())[6000:])
    assert state(issuer) == kept
    untagged, tagged = watcher.cmd("NOOP")
    assert untagged == [b"* %d EXPUNGE" % n for n in range(6000, 2000, -1)]
    assert state(watcher) == fresh_state(node) == kept
    left = COUNT - 4000

    untagged, tagged = issuer.cmd("STORE 1:* +FLAGS.SILENT (\\Deleted)")
    assert (untagged, tagged) == ([], b"T008 OK STORE completed")
    assert status(node) == b"* STATUS \"INBOX\" (MESSAGES %d UNSEEN 0 DELETED %d)" % (left, left)
    untagged, tagged = issuer.cmd("EXPUNGE")
    assert tagged == b"T009 OK EXPUNGE completed", tagged
    # Highest first, so no number shifts under the client.
    assert untagged == [b"* %d EXPUNGE" % n for n in range(left, 0, -1)]

    untagged, tagged = watcher.cmd("NOOP")
    assert tagged.endswith(b" OK NOOP completed"), tagged
    expunges = [line for line in untagged if line.endswith(b" EXPUNGE")]
    assert len(expunges) == left
    assert state(watcher) == fresh_state(node) == {}
    assert status(node) == b"* STATUS \"INBOX\" (MESSAGES 0 UNSEEN 0 DELETED 0)"
    for r in (watcher, issuer):
        assert r.cmd("LOGOUT")[1].endswith(b" OK LOGOUT completed")
        r.close()


def from_subject(message: bytes) -> bytes:
    """A stored message from its Subject on: the server puts Return-Path and Received
    first."""
    return b"Subject: huge" + message.split(b"\r\nSubject: huge", 1)[1]


def expected_huge() -> list[bytes]:
    return sorted(from_subject(b"\r\n" + huge(i)) for i in range(HUGE_COUNT))


def test_a_100_mb_inbox_fetched_whole_by_imaplib(node):
    """Three times over, byte-exact each time: what the server holds meanwhile does not
    grow with what it has sent (before, the first attempt ended the session)."""
    before = rss_bytes(node)
    m = node.imap_login(HUGE, PASSWORD)
    typ, data = m.select("INBOX", readonly=True)
    assert (typ, data) == ("OK", [str(HUGE_COUNT).encode()])
    growth = []
    for _ in range(3):
        typ, data = m.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        bodies = [item[1] for item in data if isinstance(item, tuple)]
        assert sorted(from_subject(b) for b in bodies) == expected_huge()
        growth.append(rss_bytes(node) - before)
    m.logout()
    print(f"RSS growth after each of 3 imaplib fetches of {HUGE_COUNT * HUGE_SIZE / MIB:.0f} "
          f"MiB: {[round(g / MIB, 1) for g in growth]} MiB")
    assert max(growth) < 40 * MIB, growth


def test_a_100_mb_inbox_fetched_by_a_slow_reader(node):
    """About 4 MB/s: the server waits for the client instead of queueing 100 MB or
    giving up on it."""
    r = RawImap(node, implicit=True, timeout=120)
    assert r.login(HUGE, PASSWORD).startswith(b"T001 OK ")
    r.ok("EXAMINE INBOX")
    before = rss_bytes(node)
    r.send(b"F UID FETCH 1:* (BODY.PEEK[])\r\n")
    end = b"\r\nF OK UID FETCH completed\r\n"
    chunks, tail, received, peak = [], b"", 0, 0
    started = time.monotonic()
    while not tail.endswith(end):
        chunk = r.sock.recv(256 * 1024)
        assert chunk, "connection closed"
        chunks.append(chunk)
        tail = (tail + chunk)[-len(end):]
        received += len(chunk)
        time.sleep(max(0.0, received / (4 * MIB) - (time.monotonic() - started)))
        if len(chunks) % 32 == 0:
            peak = max(peak, rss_bytes(node) - before)
    r.buf = b"".join(chunks)
    untagged, tagged = r.read_until("F")
    assert tagged == b"F OK UID FETCH completed"
    assert len(untagged) == HUGE_COUNT
    # Each line ends with the FETCH's closing parenthesis.
    assert sorted(from_subject(line[:-1]) for line in untagged) == expected_huge()
    print(f"RSS growth while a client read {received / MIB:.0f} MiB at ~4 MB/s: peak "
          f"{peak / MIB:.1f} MiB")
    assert peak < 40 * MIB, f"RSS grew by {peak / MIB:.1f} MiB"
    r.close()


def test_sections_of_a_big_message_come_out_exactly(node):
    """Messages over 1 MiB stay in the store while FETCH writes them: the message, its
    text and partial ranges are streamed from the body log a few blocks at a time,
    next to items the server renders (header fields, size); a part still works too."""
    m = node.imap_login(HUGE, PASSWORD)
    typ, _ = m.select("INBOX", readonly=True)
    assert typ == "OK"
    typ, data = m.uid("FETCH", "1", "(BODY.PEEK[])")
    assert typ == "OK"
    stored = data[0][1]
    assert len(stored) > HUGE_SIZE
    header_end = stored.index(b"\r\n\r\n") + 4
    items = (
        "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT] "
        "BODY.PEEK[]<1000000.2000000> RFC822.TEXT BODY.PEEK[1]<0.100> "
        "BODY.PEEK[]<99999999.10>)"
    )
    typ, data = m.uid("FETCH", "1", items)
    assert typ == "OK", data
    # imaplib gives each literal with the text before it.
    texts = [part[0] for part in data if isinstance(part, tuple)]
    literals = [part[1] for part in data if isinstance(part, tuple)]
    subject = re.search(rb"\r\n(Subject: huge \d+)\r\n", stored[:header_end]).group(1)
    assert literals[0] == subject + b"\r\n\r\n"
    assert literals[1] == stored[header_end:]
    assert literals[2] == stored[1_000_000:3_000_000]
    assert literals[3] == stored[header_end:]
    assert literals[4] == stored[header_end : header_end + 100]
    assert literals[5] == b""
    assert texts[0].startswith(b"1 (UID 1 RFC822.SIZE %d " % len(stored)), texts[0]
    assert texts[2].endswith(b"BODY[]<1000000> {2000000}"), texts[2]
    m.logout()


def test_pop3_retr_of_a_big_message_comes_in_pieces_stuffed_exactly(node):
    """RETR sends a 4 MB message 256 KiB at a time as the client reads, byte-stuffing
    lines of dots across the pieces' edges, and says the size LIST gave."""
    m = node.imap_login(DOTS, PASSWORD)
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK"
    stored = data[0][1]
    m.logout()
    assert len(stored) > 3 * MIB
    before = rss_bytes(node)
    p = node.login(DOTS, PASSWORD)
    try:
        assert p.list()[1] == [b"1 %d" % len(stored)]
        response, lines, octets = p.retr(1)
        grown = rss_bytes(node) - before
        assert response == b"+OK %d octets" % len(stored)
        # poplib removed the stuffing and the line ends: put them back.
        assert b"\r\n".join(lines) + b"\r\n" == stored
    finally:
        p.quit()
    print(f"RSS growth over a 4 MB RETR: {grown / MIB:.1f} MiB")
    assert grown < 16 * MIB, f"RSS grew by {grown / MIB:.1f} MiB"


def test_parts_of_a_big_message_are_streamed_exactly(node):
    """A part of a message over 1 MiB is a range of the stored bytes, streamed like the
    message itself: BODY[n], BODY[n.MIME], BODY[n.HEADER]/[n.TEXT] of a forwarded
    message, partial ranges and a part that does not exist; BINARY still decodes."""
    m = node.imap_login(PARTS, PASSWORD)
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK"
    stored = data[0][1]
    sent = multipart(0)
    assert stored.endswith(sent[sent.index(b"Subject: parts"):])
    b64_start = stored.index(b"base64\r\n\r\n") + len(b"base64\r\n\r\n")
    b64_end = stored.index(b"--b0\r\nContent-Type: message/rfc822") - 2
    mime2 = stored[stored.index(b"Content-Type: application/octet-stream"):b64_start]
    inner_start = stored.index(b"Subject: inner")
    inner_text = stored.index(b"inner text")
    expected = {
        "BODY[1]": b"see the attachment",
        "BODY[2]": stored[b64_start:b64_end],
        "BODY[2.MIME]": mime2,
        "BODY[2]<1000000>": stored[b64_start + 1_000_000:b64_start + 1_500_000],
        "BODY[3.HEADER]": stored[inner_start:inner_text],
        "BODY[3.TEXT]": b"inner text",
        "BODY[4]": b"",
    }
    before = rss_bytes(node)
    typ, data = m.fetch(
        "1", "(BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[2]<1000000.500000> "
             "BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[4])")
    grown = rss_bytes(node) - before
    assert typ == "OK", data
    texts = [part[0] for part in data if isinstance(part, tuple)]
    literals = [part[1] for part in data if isinstance(part, tuple)]
    names = list(expected)
    assert len(literals) == len(names), texts
    for name, text, literal in zip(names, texts, literals):
        assert text.endswith(f"{name} {{{len(expected[name])}}}".encode()), (name, text)
        assert literal == expected[name], name
    typ, data = m.fetch("1", "(BINARY.PEEK[2])")
    assert typ == "OK"
    assert data[0][1] == ATTACHMENT
    m.logout()
    print(f"RSS growth over FETCH of a 10 MB message's parts: {grown / MIB:.1f} MiB")


def test_pop3_top_of_a_big_message_reads_only_its_start(node):
    """TOP of a 4 MB message sends the header and the lines asked for, stuffed; the
    server reads pieces of the message only until it has them."""
    m = node.imap_login(DOTS, PASSWORD)
    m.select("INBOX", readonly=True)
    stored = m.fetch("1", "(BODY.PEEK[])")[1][0][1]
    m.logout()
    header, body = stored.split(b"\r\n\r\n", 1)
    p = node.login(DOTS, PASSWORD)
    try:
        for lines in (0, 5, 3000):
            response, got, _ = p.top(1, lines)
            assert response == b"+OK"
            want = header.split(b"\r\n") + [b""] + body.split(b"\r\n")[:lines]
            # poplib removed the stuffing and the line ends.
            assert got == want, lines
    finally:
        p.quit()
