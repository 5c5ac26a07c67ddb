"""CATENATE (RFC 4469) end to end: the real server builds messages from TEXT literals
and IMAP URLs (RFC 5092) of stored messages and parts; each is fetched back and
compared byte for byte with the concatenation computed here from the corpus file (its
parts cut out at their MIME boundaries, never taken from the server), also after a
restart. A MULTIAPPEND with one bad URL stores nothing."""

from __future__ import annotations

import re

from conftest import CORPUS_DIR, Literal, RawImap, crlf

ALICE = "alice@example.com"
ALICE_PW = "alice-Catenate-1"
BOB = "bob@example.com"
BOB_PW = "bob-Catenate-2"

APPEND_LIMIT = 60_000
REPORT = crlf((CORPUS_DIR / "005-multipart-mixed-attachments.eml").read_bytes())

HEAD = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.com>\r\n"
    b"Subject: The report, forwarded without downloading it\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="cat-boundary"\r\n'
    b"\r\n"
    b"--cat-boundary\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"The report is attached.\r\n"
    b"--cat-boundary\r\n"
)
TAIL = b"\r\n--cat-boundary--\r\n"


def server_with_report(make_imap_server):
    """A server with alice's INBOX holding the report (UID 1) and bob signed up too;
    returns (server, INBOX's UIDVALIDITY)."""
    server = make_imap_server(login="plaintext", imap_extra=f"append_limit = {APPEND_LIMIT}")
    server.add_user(ALICE, ALICE_PW)
    server.add_user(BOB, BOB_PW)
    bob = session(server, BOB, BOB_PW)
    bob.ok("APPEND INBOX ", Literal(b"Subject: bob's\r\n\r\nprivate\r\n"))
    bob.close()
    a = session(server)
    _, tagged = a.cmd("APPEND INBOX ", Literal(REPORT))
    appended = re.search(rb"OK \[APPENDUID (\d+) 1\]", tagged)
    assert appended, tagged
    a.close()
    return server, int(appended.group(1))


def session(server, user: str = ALICE, password: str = ALICE_PW) -> RawImap:
    client = RawImap(server)
    assert re.match(rb"T\d+ OK", client.login(user, password))
    return client


def mime_parts(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(MIME header with its blank line, body) of each part of a multipart message, cut
    at its boundary as RFC 2046 §5.1.1 delimits parts: the CRLF before a boundary line
    belongs to the boundary."""
    header, body = raw.split(b"\r\n\r\n", 1)
    boundary = re.search(rb'boundary="([^"]+)"', header).group(1)
    chunks = (b"\r\n" + body).split(b"\r\n--" + boundary)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        part = chunk[chunk.index(b"\r\n") + 2 :]
        mime, content = part.split(b"\r\n\r\n", 1)
        parts.append((mime + b"\r\n\r\n", content))
    return parts


def fetched_body(lines: list[bytes]) -> bytes:
    """The BODY[] literal of the one FETCH response among `lines`."""
    (line,) = [line for line in lines if b" FETCH (" in line]
    found = re.search(rb"BODY\[\] ~?\{(\d+)\}\r\n", line)
    assert found, line[:200]
    start = found.end()
    body = line[start : start + int(found.group(1))]
    assert line[start + len(body) :] == b")", line[-100:]
    return body


def flags_of(client: RawImap, folder: str, uid: int) -> bytes:
    client.ok(f'EXAMINE "{folder}"')
    (line,) = client.ok(f"UID FETCH {uid} (FLAGS)")
    return re.search(rb"FLAGS \(([^)]*)\)", line).group(1)


def test_a_message_from_text_and_a_stored_part_is_exact_and_survives_a_restart(
    make_imap_server,
):
    server, inbox_v = server_with_report(make_imap_server)
    attachment_mime, attachment = mime_parts(REPORT)[1]
    assert attachment_mime.startswith(b"Content-Type: application/pdf\r\n")
    a = session(server)
    (caps,) = a.ok("CAPABILITY")
    assert b" MULTIAPPEND CATENATE URL-PARTIAL MOVE " in caps, caps
    # RFC 4469 §3: a URL with the mailbox, in the authenticated state.
    untagged, tagged = a.cmd(
        "APPEND Drafts (\\Seen $Forwarded) CATENATE (TEXT ",
        Literal(HEAD),
        f' URL "/INBOX;UIDVALIDITY={inbox_v}/;UID=1/;SECTION=2.MIME"'
        ' URL "/INBOX/;UID=1/;SECTION=2" TEXT ',
        Literal(TAIL),
        ")",
    )
    assert untagged == [] and re.search(rb"OK \[APPENDUID \d+ 1\] APPEND completed$", tagged), tagged
    expected = HEAD + attachment_mime + attachment + TAIL
    a.ok("EXAMINE Drafts")
    fetched = a.ok("UID FETCH 1 (FLAGS BODY.PEEK[])")
    assert fetched_body(fetched) == expected
    assert b"FLAGS (\\Seen $Forwarded \\Recent)" in fetched[0]
    # RFC 4469 §3: reading a part through a URL does not set \Seen.
    assert b"\\Seen" not in flags_of(a, "INBOX", 1)
    a.close()

    server.restart()
    a = session(server)
    a.ok("EXAMINE Drafts")
    assert fetched_body(a.ok("UID FETCH 1 BODY.PEEK[]")) == expected
    # After the restart, in the selected state: `;UID=1` is relative to the selected
    # mailbox; the parts come with LITERAL+ (RFC 7888), and URL-PARTIAL cuts a window
    # of the attachment (RFC 5092 §6).
    a.ok("SELECT INBOX")
    a.send(
        b"T900 APPEND Drafts CATENATE (TEXT {%d+}\r\n%s URL ;UID=1/;SECTION=2/;PARTIAL=100.50"
        b" URL \";uid=1/;section=1\" TEXT {%d+}\r\n%s)\r\n" % (len(HEAD), HEAD, len(TAIL), TAIL)
    )
    untagged, tagged = a.read_until("T900")
    assert re.search(rb"OK \[APPENDUID \d+ 2\] APPEND completed$", tagged), (untagged, tagged)
    first_text = mime_parts(REPORT)[0][1]
    a.ok("EXAMINE Drafts")
    assert fetched_body(a.ok("UID FETCH 2 BODY.PEEK[]")) == (
        HEAD + attachment[100:150] + first_text + TAIL
    )
    a.close()


def test_binary_octets_come_through_unchanged(make_imap_server):
    """RFC 4469 §3 copies octets without conversion: the NULs of a binary part (RFC
    3516, appended as a literal8) and of a literal8 TEXT part land as they were."""
    server, _ = server_with_report(make_imap_server)
    blob = bytes(range(256)) * 4
    binary = (
        b"Subject: binary\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + blob + b"\r\n--b--\r\n"
    )
    a = session(server)
    a.send(b"T901 APPEND Sent ~{%d+}\r\n%s\r\n" % (len(binary), binary))
    _, tagged = a.read_until("T901")
    assert b"OK [APPENDUID" in tagged, tagged
    head = (
        b"Subject: rebuilt\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="c"\r\n\r\n'
        b"--c\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01"
    )
    tail = b"\xff\x00\r\n--c--\r\n"
    a.send(
        b"T902 APPEND Sent CATENATE (TEXT ~{%d+}\r\n%s URL /Sent/;UID=1/;SECTION=1"
        b" TEXT ~{%d+}\r\n%s)\r\n" % (len(head), head, len(tail), tail)
    )
    _, tagged = a.read_until("T902")
    assert re.search(rb"OK \[APPENDUID \d+ 2\]", tagged), tagged
    a.ok("EXAMINE Sent")
    (line,) = a.ok("UID FETCH 2 BODY.PEEK[]")
    assert b"BODY[] ~{" in line, line[:100]
    assert fetched_body([line]) == head + blob + tail
    a.close()


def test_a_bad_url_or_too_much_stores_nothing(make_imap_server):
    server, inbox_v = server_with_report(make_imap_server)
    a = session(server)
    # MULTIAPPEND (RFC 3502): the second message's URL names no message, so the first,
    # which is fine, is not stored either; the first URL at fault is named (RFC 4469
    # §4.1).
    untagged, tagged = a.cmd(
        "APPEND Sent CATENATE (TEXT ",
        Literal(b"Subject: one\r\n\r\n"),
        " URL /INBOX/;UID=1/;SECTION=1) (\\Seen) CATENATE (URL /INBOX/;UID=1/;SECTION=1"
        ' URL "/INBOX/;UID=9" URL "/INBOX/;UID=1/;SECTION=7")',
    )
    assert tagged.endswith(b" NO [BADURL /INBOX/;UID=9] No message with that UID"), tagged
    refusals = [
        # Stale: the UIDVALIDITY is not INBOX's.
        (
            f"/INBOX;UIDVALIDITY={inbox_v + 1}/;UID=1",
            b"UIDVALIDITY does not match: the mailbox was recreated",
        ),
        ("/INBOX/;UID=1/;SECTION=9", b"No such section in that message"),
        ("/Archive/;UID=1", b"No message with that UID"),
        ("/Nowhere/;UID=1", b"Mailbox does not exist"),
        # Bob's mailbox can only be named by an absolute URL, which is out of scope.
        (
            "imap://bob@127.0.0.1/INBOX/;UID=1",
            b"Only URLs relative to this session are supported (RFC 4469), "
            b"without scheme or server",
        ),
        ("/INBOX/;UID=1/;PARTIAL=x", b"Invalid URL: partial range"),
    ]
    for url, why in refusals:
        _, tagged = a.cmd(f'APPEND Sent CATENATE (URL "{url}")')
        assert tagged.endswith(b" NO [BADURL %s] %s" % (url.encode(), why)), tagged
    # RFC 4469 §4.2: two copies of the report pass APPENDLIMIT; a TEXT literal over it
    # is refused before it is sent.
    _, tagged = a.cmd("APPEND Sent CATENATE (URL /INBOX/;UID=1 URL /INBOX/;UID=1)")
    assert tagged.endswith(b" NO [TOOBIG] Message exceeds APPENDLIMIT"), tagged
    _, tagged = a.cmd("APPEND Sent CATENATE (TEXT ", Literal(b"x" * (APPEND_LIMIT + 1)), ")")
    assert tagged.endswith(b" NO [TOOBIG] Literal exceeds the server's limit"), tagged
    _, tagged = a.cmd("APPEND Sent CATENATE ()")
    assert tagged.endswith(b" BAD Empty CATENATE list"), tagged
    assert a.ok("STATUS Sent (MESSAGES)") == [b'* STATUS "Sent" (MESSAGES 0)']
    assert a.ok("NOOP") == []
    a.close()
