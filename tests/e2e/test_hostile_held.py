"""Hostile input that already held (issue 9), kept holding: one test per attack class,
each asserting the server's exact refusal, that the stored mail is byte for byte what
it was (or what the attack was allowed to add), and that a bystander.Bystander signed
in before the attack goes through its IMAP, POP3 and SMTP rounds during and after it.
Where the attack is about memory, the server's peak RSS growth (VmRSS, sampled) gets a
bound a sound server meets with a wide margin; nothing is timed but the bystander's
hang guard.

Every test starts its own node (a quarter of a second; no test's refused address,
connection count or memory leaks into another) with the server's default [smtp]
policies: nobody trusted, From: checked. alice and bob have two known messages each.

Exact answers here were read from the server and checked against the RFCs before they
were pinned; a case where the server is wrong is marked xfail(strict=True) with the
reason, asserting what it should do."""

from __future__ import annotations

import re
import socket

import pytest

from bystander import Bystander
from conftest import (
    Literal,
    RawImap,
    RssSampler,
    SmtpServer,
    crlf,
    dial,
    plain_b64,
    tls_context,
)
from test_hostile_imap import logged_in
from test_hostile_smtp import REMOTE, inbound_delivery_works, untrusted
from test_smtp import (
    ALICE,
    ALICE_PW,
    BOB,
    BOB_PW,
    BYE,
    CAROL,
    NO_VALID_RECIPIENTS,
    QUEUED,
    RECIPIENT_OK,
    RELAY_DENIED,
    SENDER_OK,
    START_DATA,
    UNKNOWN_USER,
    imap_messages,
    poll,
    split_trace,
)

LITERAL_TOO_BIG = b"NO [TOOBIG] Literal exceeds the server's limit"
LINE_TOO_BIG = b"BAD [TOOBIG] Line exceeds the server's limit"
NONEXISTENT = b"NO [NONEXISTENT] Mailbox does not exist"
TEN_MB = 10 * 1000 * 1000


def node(make_smtp_server, **options) -> SmtpServer:
    """A node with the default policies, alice and bob, two known messages each."""
    server = untrusted(make_smtp_server, **options)
    for user in (ALICE, BOB):
        for n in (1, 2):
            server.deliver(
                user,
                f"From: friend@remote.example\r\nTo: {user}\r\nSubject: known {n}\r\n"
                f"\r\nKnown message {n} of {user}.\r\n".encode(),
            )
    return server


def mib(kib: int) -> float:
    """RssSampler and Server.rss_kib count KiB."""
    return kib / 1024


def mailboxes(server: SmtpServer) -> dict[str, list[bytes]]:
    """alice's and bob's INBOX, every message's bytes in UID order."""
    return {
        ALICE: imap_messages(server, ALICE, ALICE_PW),
        BOB: imap_messages(server, BOB, BOB_PW),
    }


def ask(r: RawImap, *parts) -> tuple[list[bytes], bytes]:
    """RawImap.cmd with the tag taken off the tagged answer."""
    untagged, tagged = r.cmd(*parts)
    return untagged, tagged.split(b" ", 1)[1]


def read_tagged(r: RawImap, tag: bytes) -> bytes:
    """Reads raw bytes up to and including the tagged answer `tag ...\\r\\n` (for
    responses of tens of megabytes, kept as one bytes object)."""
    chunks = [r.buf]
    # The response starts a line: the command was sent after the last one was read.
    tail = b"\r\n" + r.buf
    r.buf = b""
    pattern = re.compile(rb"\r\n" + re.escape(tag) + rb" [^\r\n]*\r\n\Z")
    while not pattern.search(tail):
        chunk = r.sock.recv(1 << 20)
        if not chunk:
            raise EOFError(f"connection closed; last bytes {tail[-300:]!r}")
        chunks.append(chunk)
        tail = (tail + chunk)[-400:]
    return b"".join(chunks)


def stored_inbound(stored: bytes, rcpt: str) -> bytes:
    """The content of a message a stranger delivered with inbound_delivery_works,
    trace headers checked and taken off."""
    _, rest = split_trace(
        stored, mail_from=REMOTE, rcpt=rcpt, with_="ESMTP", helo="mx.remote.example"
    )
    return rest


# --------------------------------------------------------------------------------------
# IMAP literals, nesting, long lines


def test_huge_literal_announcements_after_login(make_smtp_server):
    """After login, `{5000000000}` (or any literal over APPENDLIMIT, in APPEND or any
    other command) is refused at once with NO [TOOBIG] (RFC 7889) and nothing of it is
    awaited: the next line is a command. A non-synchronizing `{52428801+}` is refused
    the same way and its bytes, command-like lines included, are skipped exactly, without
    being kept: the command after them is answered, nothing of them ran or was stored,
    and the server's memory stays flat."""
    server = node(make_smtp_server)
    before = mailboxes(server)
    r = logged_in(server, ALICE, ALICE_PW)
    bystander = Bystander(server)
    sampler = RssSampler(server)
    base = server.rss_kib()
    sampler.start()
    with bystander.running_during("huge literal announcements"):
        for command in (
            b"APPEND INBOX {5000000000}",
            b"APPEND INBOX (\\Seen) {99999999999999999999}",
            b"APPEND Sent {52428801}",
            b"SEARCH TEXT {5000000000}",
            b"RENAME Sent {5000000000}",
        ):
            r.send(b"h1 " + command + b"\r\n")
            assert r.line() == b"h1 " + LITERAL_TOO_BIG, command
            assert ask(r, "NOOP") == ([], b"OK NOOP completed"), command

        r.send(b"h2 APPEND INBOX {52428801+}\r\n")
        assert r.line() == b"h2 " + LITERAL_TOO_BIG
        junk = b"h3 LOGOUT\r\nh4 DELETE INBOX\r\nh5 APPEND INBOX {4+}\r\nevil\r\n"
        chunk = junk * (1024 * 1024 // len(junk))
        left = 52428801
        while left:
            piece = chunk[:left]
            r.send(piece)
            left -= len(piece)
        # The literal ends the command's line; the next command is answered first.
        r.send(b"\r\nh6 NOOP\r\n")
        assert r.line() == b"h6 OK NOOP completed"
        assert ask(r, "SELECT INBOX")[1] == b"OK [READ-WRITE] SELECT completed"
    grown = mib(sampler.stop() - base)
    bystander.check("after huge literal announcements")
    print(f"RSS peak growth {grown:.0f} MiB")
    # Measured: nothing. Kept, the skipped literal alone would be 50 MiB.
    assert grown < 24, f"RSS grew by {grown:.0f} MiB"
    assert mailboxes(server) == before
    untagged, tagged = ask(r, 'LIST "" "*"')
    assert len(untagged) == 6 and tagged == b"OK LIST completed", untagged


def test_400k_nested_parentheses(make_smtp_server):
    """400,000 nested parentheses (an 800 kB line, under the 1 MiB command limit) in
    every place IMAP takes a parenthesized list are refused with a BAD naming the
    problem, without a stack overflow; before login the line is already over the 16 KiB
    limit. Nothing is stored; the session goes on. A message whose From: and To: are
    400,000 nested comments is delivered and its ENVELOPE still names the addresses."""
    server = node(make_smtp_server)
    before = mailboxes(server)
    r = logged_in(server, ALICE, ALICE_PW)
    assert ask(r, "SELECT INBOX")[1] == b"OK [READ-WRITE] SELECT completed"
    n = 400_000
    nest = b"(" * n
    shut = b")" * n
    refused = [
        (b"FETCH 1 " + nest + shut, b"BAD Invalid fetch item"),
        (b"FETCH 1 " + nest, b"BAD Invalid fetch item"),
        (b"SEARCH " + nest + b"ALL" + shut, b"BAD Search criteria nested too deeply"),
        (b"SEARCH " + nest, b"BAD Search criteria nested too deeply"),
        (
            b"SEARCH " + b"NOT " * 200_000 + b"ALL",
            b"BAD Search criteria nested too deeply",
        ),
        (b"STORE 1 FLAGS " + nest + shut, b"BAD Invalid flag"),
        (b"STATUS INBOX " + nest + b"MESSAGES" + shut, b"BAD Invalid status item"),
        (b"LIST " + nest + shut + b' "" "*"', b"BAD Invalid LIST selection option"),
        (b"SELECT INBOX " + nest + shut, b"BAD Invalid SELECT parameter"),
        (b"ID " + nest + shut, b"BAD Invalid ID field"),
    ]
    bystander = Bystander(server)
    sampler = RssSampler(server)
    base = server.rss_kib()
    sampler.start()
    with bystander.running_during("400k nested parentheses"):
        for command, answer in refused:
            assert ask(r, command) == ([], answer), command[:40]
        # APPEND's flag list, with the message as a literal after it.
        message = b"Subject: planted\r\n\r\nx\r\n"
        assert ask(r, b"APPEND INBOX " + nest + shut + b" ", Literal(message)) == (
            [],
            b"BAD Invalid flag",
        )
        # Before login: over the line limit, refused before any parsing.
        stranger = RawImap(server)
        stranger.send(b"p1 LOGIN " + nest + b"\r\n")
        assert stranger.line() == b"p1 " + LINE_TOO_BIG
        assert ask(stranger, "NOOP") == ([], b"OK NOOP completed")
        stranger.close()
        assert ask(r, "NOOP") == ([], b"OK NOOP completed")

        # The same nesting in header comments (RFC 5322 §3.2.2 comments nest).
        nested = (
            b"From: " + nest + shut + b" a@remote.example\r\n"
            b"To: " + nest + b"x" + shut + b" <b@remote.example>\r\n"
            b"Subject: parens\r\n\r\nbody\r\n"
        )
        inbound_delivery_works(server, ALICE, nested)
        untagged, tagged = ask(r, "NOOP")
        assert untagged[:1] == [b"* 3 EXISTS"] and tagged == b"OK NOOP completed"
        untagged, tagged = ask(r, "FETCH 3 (ENVELOPE)")
    grown = mib(sampler.stop() - base)
    bystander.check("after 400k nested parentheses")
    print(f"RSS peak growth {grown:.0f} MiB")
    # Measured: about 14 MiB (the 800 kB lines, the message and its summary).
    assert grown < 64, f"RSS grew by {grown:.0f} MiB"
    assert tagged == b"OK FETCH completed"
    assert len(untagged) == 1, [line[:200] for line in untagged]
    # The comments may become display names (as literals); the addresses must be
    # there, exactly.
    envelope = untagged[0]
    assert envelope.startswith(b'* 3 FETCH (ENVELOPE (NIL "parens" (('), envelope[:80]
    mailbox = rb'\((?:NIL|\{\d+\}\r\n[()x]*) NIL "%s" "remote\.example"\)'
    assert re.search(
        rb"\(%s\) \(%s\) \(%s\) \(%s\) NIL NIL NIL NIL\)\)\Z"
        % (mailbox % b"a", mailbox % b"a", mailbox % b"a", mailbox % b"b"),
        envelope,
    ), envelope[-200:]
    after = mailboxes(server)
    assert after[BOB] == before[BOB]
    assert after[ALICE][:2] == before[ALICE] and len(after[ALICE]) == 3
    assert stored_inbound(after[ALICE][2], ALICE) == nested


def test_ten_megabyte_lines_without_crlf(make_smtp_server):
    """A 10 MB line with no line end, on every protocol, before and after sign-in: the
    server answers once the line passes its limit (IMAP `BAD [TOOBIG]` with the tag when
    one was readable, POP3 `-ERR Line too long`, SMTP `500 5.5.6 Line too long`), drops
    the rest as it comes without keeping it, and reads the next line as a command. Inside
    SMTP DATA a 10 MB line is message text (within max_message_size): stored byte for
    byte, not cut."""
    server = node(make_smtp_server)
    before = mailboxes(server)
    line = b"x" * TEN_MB
    bystander = Bystander(server)
    sampler = RssSampler(server)
    base = server.rss_kib()
    sampler.start()
    with bystander.running_during("10 MB lines"):
        # IMAP before login: no tag in the first 16 KiB, so `*`; then with one.
        r = RawImap(server)
        r.send(line)
        assert r.line() == b"* " + LINE_TOO_BIG
        r.send(b"\r\nl1 LOGIN " + line + b"\r\nl2 NOOP\r\n")
        assert r.line() == b"l1 " + LINE_TOO_BIG
        assert r.line() == b"l2 OK NOOP completed"
        r.close()
        # IMAP after login.
        r = logged_in(server, ALICE, ALICE_PW)
        r.send(b"l3 SELECT " + line + b"\r\nl4 NOOP\r\n")
        assert r.line() == b"l3 " + LINE_TOO_BIG
        assert r.line() == b"l4 OK NOOP completed"
        r.close()
        # POP3 before and after login.
        p = server.raw()
        p.send(line)
        assert p.line() == b"-ERR Line too long"
        p.send(b"\r\nCAPA\r\n")
        assert p.line() == b"+OK Capability list follows"
        assert p.multiline_raw().endswith(b"\r\nSTLS\r\n.\r\n")
        p.starttls()
        assert p.login(ALICE, ALICE_PW).startswith(b"+OK Logged in, 2 messages")
        p.send(b"RETR " + line + b"\r\nSTAT\r\n")
        assert p.line() == b"-ERR Line too long"
        assert re.fullmatch(rb"\+OK 2 \d+", p.line())
        assert p.cmd("QUIT") == b"+OK Logging out"
        p.close()
        # SMTP: a command line.
        s = server.raw_smtp(server.smtp_port)
        s.ehlo("mx.remote.example")
        s.send(b"MAIL FROM:<" + line + b">\r\nNOOP\r\n")
        assert s.reply() == [b"500 5.5.6 Line too long"]
        assert s.reply() == [b"250 2.0.0 Ok"]
        assert s.cmd("QUIT") == BYE
        s.close()
        lines_grown = mib(sampler.peak - base)
        # SMTP: a line of message text.
        content = b"Subject: one long line\r\n\r\n" + line + b"\r\nend\r\n"
        inbound_delivery_works(server, BOB, content)
    grown = mib(sampler.stop() - base)
    bystander.check("after 10 MB lines")
    # The lines are dropped as they come (measured: 2 MiB; kept, they would be 60 MB);
    # the DATA is held (up to max_message_size, a documented gap) and stored (measured:
    # about 20 MiB in all).
    print(
        f"RSS peak growth {lines_grown:.0f} MiB for the lines, {grown:.0f} MiB in all"
    )
    assert lines_grown < 24, f"lines: RSS grew by {lines_grown:.0f} MiB"
    assert grown < 96, f"with DATA: RSS grew by {grown:.0f} MiB"
    after = mailboxes(server)
    assert after[ALICE] == before[ALICE]
    assert after[BOB][:2] == before[BOB] and len(after[BOB]) == 3
    assert stored_inbound(after[BOB][2], BOB) == content


# --------------------------------------------------------------------------------------
# Messages built to be expensive


def nested_multipart(depth: int) -> bytes:
    """`depth` multipart/mixed levels (boundary b0 at the top, bK at level K), each the
    only part of the one above, around one text/plain part."""
    out = [
        b"From: bomb@remote.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    ]
    for k in range(1, depth):
        out.append(
            b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n'
            % (k - 1, k)
        )
    last = depth - 1
    out.append(
        b"--b%d\r\nContent-Type: text/plain\r\n\r\ncore\r\n--b%d--\r\n" % (last, last)
    )
    out.extend(b"--b%d--\r\n" % k for k in range(depth - 2, -1, -1))
    return b"".join(out)


def wide_multipart(parts: int) -> bytes:
    head = (
        b"From: bomb@remote.example\r\nSubject: wide\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="w"\r\n\r\n'
    )
    body = b"".join(
        b"--w\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(parts)
    )
    return head + body + b"--w--\r\n"


TEXT_LEAF = (
    b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" %d %d NIL NIL NIL NIL)'
)
MIXED_TAIL = b' "MIXED" ("BOUNDARY" "%s") NIL NIL NIL)'
# The summary follows multipart nesting 64 levels down (crates/mime MAX_DEPTH); the part
# found there is described as text, whatever its Content-Type says.
MAX_DEPTH = 64


def deep_bodystructure(message: bytes) -> bytes:
    """BODYSTRUCTURE of nested_multipart(depth > MAX_DEPTH + 1), per RFC 9051 §7.5.2:
    levels 0..63 as multiparts, level 64 as one text/plain leaf whose body runs from
    after its header to the CRLF before its parent's close delimiter."""
    header = b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % MAX_DEPTH
    start = message.index(header) + len(header)
    end = message.index(b"\r\n--b%d--" % (MAX_DEPTH - 1))
    body = message[start:end]
    leaf = TEXT_LEAF % (len(body), body.count(b"\n"))
    tails = b"".join(MIXED_TAIL % b"b%d" % k for k in range(MAX_DEPTH - 1, -1, -1))
    return b"(" * MAX_DEPTH + leaf + tails


def wide_bodystructure(parts: int) -> bytes:
    leaves = b"".join(TEXT_LEAF % (len(b"part %d" % i), 0) for i in range(parts))
    return b"(" + leaves + MIXED_TAIL % b"w"


def test_mime_bomb_bodystructure(make_smtp_server):
    """A stranger sends a multipart nested 5,000 levels deep and one with 20,000 parts.
    Both are delivered and stored byte for byte; BODYSTRUCTURE describes them exactly
    (the deep one down to the summary's 64 levels, where the rest is one text part),
    without a stack overflow and within a memory bound."""
    server = node(make_smtp_server)
    before = mailboxes(server)
    deep = nested_multipart(5000)
    wide = wide_multipart(20_000)
    r = logged_in(server, ALICE, ALICE_PW)
    bystander = Bystander(server)
    sampler = RssSampler(server)
    base = server.rss_kib()
    sampler.start()
    with bystander.running_during("MIME bombs"):
        inbound_delivery_works(server, ALICE, deep)
        inbound_delivery_works(server, ALICE, wide)
        assert ask(r, "SELECT INBOX")[1] == b"OK [READ-WRITE] SELECT completed"
        r.send(b"m1 FETCH 3:4 (BODYSTRUCTURE)\r\n")
        response = read_tagged(r, b"m1")
        # And again, now that anything cached is warm.
        r.send(b"m2 FETCH 4 (BODYSTRUCTURE)\r\n")
        again = read_tagged(r, b"m2")
    grown = mib(sampler.stop() - base)
    bystander.check("after MIME bombs")
    expected_deep = deep_bodystructure(deep)
    expected_wide = wide_bodystructure(20_000)
    assert response == (
        b"* 3 FETCH (BODYSTRUCTURE " + expected_deep + b")\r\n"
        b"* 4 FETCH (BODYSTRUCTURE " + expected_wide + b")\r\n"
        b"m1 OK FETCH completed\r\n"
    ), (response[:300], response[-300:])
    expected_again = b"* 4 FETCH (BODYSTRUCTURE " + expected_wide + b")\r\n"
    assert again == expected_again + b"m2 OK FETCH completed\r\n"
    # Measured: about 50 MiB for the pair (the wide one's BODYSTRUCTURE is 1.5 MB).
    print(f"RSS peak growth {grown:.0f} MiB")
    assert grown < 160, f"RSS grew by {grown:.0f} MiB"
    after = mailboxes(server)
    assert after[BOB] == before[BOB]
    assert after[ALICE][:2] == before[ALICE] and len(after[ALICE]) == 4
    assert stored_inbound(after[ALICE][2], ALICE) == deep
    assert stored_inbound(after[ALICE][3], ALICE) == wide


def many_addresses(n: int) -> bytes:
    """A To: of `n` addresses, folded one per line (RFC 5322 line lengths)."""
    return b",\r\n ".join(b"u%d@x.example" % i for i in range(n))


def test_a_million_addresses_in_to(make_smtp_server):
    """A stranger sends a message whose To: holds 1,000,000 addresses (19 MB, under the
    50 MiB limit). It is stored byte for byte, and ENVELOPE lists every address, in
    order, exactly (a 30 MB response), within a memory bound."""
    server = node(make_smtp_server)
    before = mailboxes(server)
    n = 1_000_000
    content = (
        b"From: a@remote.example\r\nTo: " + many_addresses(n) + b"\r\n"
        b"Subject: many\r\n\r\nbody\r\n"
    )
    bystander = Bystander(server)
    sampler = RssSampler(server)
    base = server.rss_kib()
    sampler.start()
    with bystander.running_during("a million addresses"):
        inbound_delivery_works(server, BOB, content)
        r = logged_in(server, BOB, BOB_PW)
        assert ask(r, "SELECT INBOX")[1] == b"OK [READ-WRITE] SELECT completed"
        r.send(b"e1 FETCH 3 (ENVELOPE)\r\n")
        response = read_tagged(r, b"e1")
        r.close()
    grown = mib(sampler.stop() - base)
    bystander.check("after a million addresses")
    sender = b'((NIL NIL "a" "remote.example"))'
    to = b"".join(b'(NIL NIL "u%d" "x.example")' % i for i in range(n))
    expected = (
        b'* 3 FETCH (ENVELOPE (NIL "many" %s %s %s (%s) NIL NIL NIL NIL))\r\n'
        b"e1 OK FETCH completed\r\n" % (sender, sender, sender, to)
    )
    assert response == expected, (response[:200], response[-200:])
    # Measured: 310 to 370 MiB at the peak for a 19 MB message (the parsed addresses,
    # the 30 MB response); twice that is the bound.
    print(f"RSS peak growth {grown:.0f} MiB")
    assert grown < 768, f"RSS grew by {grown:.0f} MiB"
    after = mailboxes(server)
    assert after[ALICE] == before[ALICE]
    assert after[BOB][:2] == before[BOB] and len(after[BOB]) == 3
    assert stored_inbound(after[BOB][2], BOB) == content


def test_an_envelope_over_the_output_bound_is_answered(make_smtp_server):
    """2,100,000 empty groups (`g:;`, 4 bytes each) in To: make an 8.4 MB message whose
    ENVELOPE is 71 MB. The recipient's client reads as fast as it can; it must get an
    answer (the ENVELOPE, or a tagged NO with a response code) and keep its session,
    not be disconnected in silence (as it was when one response over the 64 MiB
    output bound counted as a client not reading; FETCH 1:16 BODY.PEEK[] of 16 × 5 MB
    messages did the same)."""
    server = node(make_smtp_server)
    n = 2_100_000
    content = (
        b"From: a@remote.example\r\nTo: " + b",".join([b"g:;"] * n) + b"\r\n"
        b"Subject: groups\r\n\r\nbody\r\n"
    )
    bystander = Bystander(server)
    with bystander.running_during("an envelope over the output bound"):
        inbound_delivery_works(server, BOB, content)
        r = logged_in(server, BOB, BOB_PW)
        assert ask(r, "SELECT INBOX")[1] == b"OK [READ-WRITE] SELECT completed"
        r.send(b"g1 FETCH 3 (ENVELOPE)\r\n")
        try:
            response = read_tagged(r, b"g1")
        except (EOFError, ConnectionError) as e:
            pytest.fail(f"disconnected without an answer: {e!r}")
        tagged = response[response.rindex(b"g1 ") :]
        if tagged != b"g1 OK FETCH completed\r\n":
            assert re.fullmatch(rb"g1 NO \[[A-Z]+\] [^\r\n]+\r\n", tagged), tagged
        else:
            groups = b'(NIL NIL "g" NIL)(NIL NIL NIL NIL)' * n
            head = response[:200]
            assert head.startswith(b'* 3 FETCH (ENVELOPE (NIL "groups" '), head
            assert b" (" + groups + b") NIL NIL NIL NIL))\r\n" in response
        assert ask(r, "NOOP") == ([], b"OK NOOP completed")
        r.close()
    bystander.check("after an envelope over the output bound")


# --------------------------------------------------------------------------------------
# SMTP


RELAY_TRICKS = [
    # Another domain, plainly and with a trailing root dot; a root dot after a local
    # domain is not taken as local either (refused like any other domain: safe).
    ("<carol@remote.example>", RELAY_DENIED),
    ("<carol@remote.example.>", RELAY_DENIED),
    ("<alice@example.com.>", RELAY_DENIED),
    # Source routes (RFC 5321 §4.1.1.3) through us to elsewhere.
    ("<@example.com:carol@remote.example>", RELAY_DENIED),
    ("<@example.com,@relay.example:carol@remote.example>", RELAY_DENIED),
    # The percent hack and bang paths: a local part that names no account.
    ("<carol%remote.example@example.com>", UNKNOWN_USER),
    ("<bob%example.com@example.com>", UNKNOWN_USER),
    ("<carol!remote.example@example.com>", UNKNOWN_USER),
    ("<remote.example!carol@example.com>", UNKNOWN_USER),
    # Quoted local parts with an @.
    ('<"carol@remote.example"@example.com>', UNKNOWN_USER),
    # Not addresses here: no domain, two @, address literals (not even our own).
    ("<carol%remote.example>", b"501 5.1.3 Invalid recipient address"),
    ("<remote.example!carol>", b"501 5.1.3 Invalid recipient address"),
    ('<"alice@example.com">', b"501 5.1.3 Invalid recipient address"),
    ("<carol@remote.example@example.com>", b"501 5.1.3 Invalid recipient address"),
    ("<carol@[192.0.2.1]>", b"501 5.1.3 Invalid recipient address"),
    ("<alice@[127.0.0.1]>", b"501 5.1.3 Invalid recipient address"),
    ("carol@remote.example", b"501 5.5.4 Syntax: RCPT TO:<forward-path> [parameters]"),
]


def test_open_relay_tricks_on_the_inbound_port(make_smtp_server):
    """Unauthenticated, on the inbound port: every way of naming a non-local domain is
    refused with its exact 5xx and enhanced code, DATA then finds no recipient, nothing
    is queued and no mailbox changes. On submission, MAIL needs AUTH first. (A source
    route to a local address is no relay: RFC 5321 §3.6.1 lets the route be ignored.)"""
    server = node(make_smtp_server)
    before = mailboxes(server)
    bystander = Bystander(server)
    with bystander.running_during("open relay tricks"):
        for address, expected in RELAY_TRICKS:
            s = server.raw_smtp(server.smtp_port)
            try:
                s.ehlo("mx.remote.example")
                assert s.cmd("MAIL FROM:<spammer@remote.example>") == SENDER_OK
                assert s.cmd(f"RCPT TO:{address}") == expected, address
                assert s.cmd("DATA") == NO_VALID_RECIPIENTS, address
                assert s.cmd("QUIT") == BYE
            finally:
                s.close()
        s = server.raw_smtp()
        try:
            s.ehlo()
            assert s.cmd(f"MAIL FROM:<{ALICE}>") == b"530 5.7.0 Authentication required"
            assert s.cmd(f"RCPT TO:<{CAROL}>") == b"503 5.5.1 Need MAIL command first"
        finally:
            s.close()
        # The route is dropped and the mail is alice's.
        s = server.raw_smtp(server.smtp_port)
        try:
            s.ehlo("mx.remote.example")
            assert s.cmd(f"MAIL FROM:<{REMOTE}>") == SENDER_OK
            assert s.cmd(f"RCPT TO:<@relay.example:{ALICE}>") == RECIPIENT_OK
            assert s.cmd("DATA") == START_DATA
            assert QUEUED.fullmatch(s.cmd(b"Subject: routed\r\n\r\nx\r\n."))
        finally:
            s.close()
    bystander.check("after open relay tricks")
    assert server.queue() == []
    after = mailboxes(server)
    assert after[BOB] == before[BOB]
    assert after[ALICE][:2] == before[ALICE] and len(after[ALICE]) == 3
    _, rest = split_trace(
        after[ALICE][2],
        mail_from=REMOTE,
        rcpt=ALICE,
        with_="ESMTP",
        helo="mx.remote.example",
    )
    assert rest == b"Subject: routed\r\n\r\nx\r\n"


SMUGGLING_TERMINATORS = [
    b"\n.\n",
    b"\r.\r\n",
    b"\n.\r\n",
    b"\r\n.\r",
    b"\r\n.\n",
    b"\r.\r",
]


def as_stored(sent: bytes) -> bytes:
    """What the server keeps of DATA content `sent` (without the final CRLF.CRLF):
    RFC 5321 §4.5.2 transparency on CRLF lines only (a line starting with a dot loses
    it), then every bare LF made CRLF as on every delivery path (a bare CR stays)."""
    lines = sent.split(b"\r\n")
    return crlf(
        b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    )


def test_smtp_smuggling_terminators_do_not_end_data(make_smtp_server):
    """`\\n.\\n`, `\\r.\\r\\n`, `\\n.\\r\\n` and the like inside DATA do not end the
    message (only CRLF.CRLF does), so the MAIL/RCPT/DATA hidden behind them are text:
    one 250 per transaction, one message stored per transaction with exactly the bytes
    as_stored() computes, and the smuggled recipient (bob) gets nothing."""
    server = node(make_smtp_server)
    before = mailboxes(server)
    sent = []
    bystander = Bystander(server)
    with bystander.running_during("SMTP smuggling"):
        for term in SMUGGLING_TERMINATORS:
            content = (
                b"Subject: smuggle\r\n\r\nbefore"
                + term
                + b"MAIL FROM:<ceo@example.com>\r\n"
                b"RCPT TO:<bob@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"
            )
            s = server.raw_smtp(server.smtp_port)
            try:
                s.ehlo("mx.remote.example")
                assert s.cmd(f"MAIL FROM:<{REMOTE}>") == SENDER_OK
                assert s.cmd(f"RCPT TO:<{ALICE}>") == RECIPIENT_OK
                assert s.cmd("DATA") == START_DATA
                s.send(content + b".\r\nQUIT\r\n")
                assert QUEUED.fullmatch(s.line()), term
                # Nothing else was taken as a command: the QUIT is next.
                assert s.reply() == [BYE], term
                assert s.at_eof()
            finally:
                s.close()
            sent.append(content)
    bystander.check("after SMTP smuggling")
    assert server.queue() == []
    after = mailboxes(server)
    assert after[BOB] == before[BOB]
    assert after[ALICE][:2] == before[ALICE]
    stored = [stored_inbound(m, ALICE) for m in after[ALICE][2:]]
    assert stored == [as_stored(content) for content in sent]
    # Pinned: the first and third keep a line that is a lone dot; every path out of the
    # store (POP3, the relay) stuffs it again.
    lone_dot = [i for i, m in enumerate(stored) if b"\r\n.\r\n" in m]
    assert lone_dot == [0, 2]


def test_starttls_command_injection(make_smtp_server):
    """Commands pipelined in the clear behind STARTTLS / STLS (CVE-2011-0411 style) are
    discarded, not run after the handshake: the server answers the STARTTLS alone, and
    after TLS the session is where a fresh one would be. SMTP (inbound and submission),
    IMAP and POP3; nothing is delivered or signed in."""
    server = node(make_smtp_server)
    before = mailboxes(server)
    bystander = Bystander(server)
    with bystander.running_during("STARTTLS injection"):
        # SMTP inbound: a whole transaction behind STARTTLS.
        s = server.raw_smtp(server.smtp_port)
        s.ehlo("mx.remote.example")
        s.send(
            f"STARTTLS\r\nEHLO evil\r\nMAIL FROM:<{REMOTE}>\r\nRCPT TO:<{BOB}>\r\n"
            "DATA\r\nSubject: injected\r\n\r\nx\r\n.\r\n"
        )
        assert s.reply() == [b"220 2.0.0 Ready to start TLS"]
        assert s.buf == b""
        s.sock = tls_context().wrap_socket(s.sock)
        assert s.cmd("NOOP") == b"250 2.0.0 Ok"
        assert s.cmd(f"MAIL FROM:<{REMOTE}>") == b"503 5.5.1 Send EHLO or HELO first"
        assert s.cmd("QUIT") == BYE
        s.close()
        # Submission: AUTH behind STARTTLS.
        s = server.raw_smtp()
        s.ehlo()
        s.send(f"STARTTLS\r\nEHLO x\r\nAUTH PLAIN {plain_b64(ALICE, ALICE_PW)}\r\n")
        assert s.reply() == [b"220 2.0.0 Ready to start TLS"]
        assert s.buf == b""
        s.sock = tls_context().wrap_socket(s.sock)
        s.ehlo()
        assert s.cmd(f"MAIL FROM:<{ALICE}>") == b"530 5.7.0 Authentication required"
        s.close()
        # IMAP: LOGIN and SELECT behind STARTTLS.
        r = RawImap(server)
        r.send(
            f'i1 STARTTLS\r\ni2 LOGIN "{ALICE}" "{ALICE_PW}"\r\ni3 SELECT INBOX\r\n'.encode()
        )
        assert r.line() == b"i1 OK Begin TLS negotiation now"
        assert r.buf == b""
        r.sock = tls_context().wrap_socket(r.sock)
        assert ask(r, "SELECT INBOX") == (
            [],
            b"BAD Command not valid before authentication",
        )
        r.close()
        # POP3: USER/PASS behind STLS.
        p = server.raw()
        p.send(f"STLS\r\nUSER {ALICE}\r\nPASS {ALICE_PW}\r\nSTAT\r\n".encode())
        assert p.line() == b"+OK Begin TLS negotiation"
        assert p.buf == b""
        p.sock = tls_context().wrap_socket(p.sock)
        assert p.cmd("STAT") == b"-ERR Command not valid in this state"
        assert p.cmd("PASS x") == b"-ERR USER first"
        p.close()
    bystander.check("after STARTTLS injection")
    assert server.queue() == []
    assert mailboxes(server) == before


def test_sasl_authzid_impersonation(make_smtp_server):
    """AUTHENTICATE/AUTH PLAIN with alice's own credentials and another authorization
    identity (bob, postmaster, or alice's name spelled differently) is refused on every
    protocol, and the session stays unauthenticated; with the wrong password the answer
    is the same (no password oracle). alice's own name as authzid signs in as alice."""
    server = node(make_smtp_server)
    before = mailboxes(server)
    imap_refused = b"NO [AUTHORIZATIONFAILED] Authorization identity must match"
    identities = [BOB, BOB.upper(), "postmaster@example.com", "bob", ALICE.upper()]
    bystander = Bystander(server)
    with bystander.running_during("SASL authzid impersonation"):
        for authzid in identities:
            for password in (ALICE_PW, "wrong"):
                token = plain_b64(ALICE, password, authzid)
                r = RawImap(server, implicit=True)
                assert ask(r, f"AUTHENTICATE PLAIN {token}") == ([], imap_refused)
                assert ask(r, "SELECT INBOX") == (
                    [],
                    b"BAD Command not valid before authentication",
                )
                r.close()
                p = server.raw(implicit=True)
                answer = p.auth_plain(ALICE, password, authzid=authzid)
                assert answer == b"-ERR [AUTH] Authorization identity must match"
                assert p.cmd("STAT") == b"-ERR Command not valid in this state"
                p.close()
                s = server.raw_smtp(implicit=True)
                s.ehlo()
                answer = s.cmd(f"AUTH PLAIN {token}")
                assert answer == b"535 5.7.8 Authentication credentials invalid"
                answer = s.cmd(f"MAIL FROM:<{BOB}>")
                assert answer == b"530 5.7.0 Authentication required"
                s.close()
        # The challenge form too.
        r = RawImap(server, implicit=True)
        r.send(b"a1 AUTHENTICATE PLAIN\r\n")
        assert r.line() == b"+ "
        r.send(plain_b64(ALICE, ALICE_PW, BOB).encode() + b"\r\n")
        assert r.line() == b"a1 " + imap_refused
        # Her own name is no impersonation.
        untagged, tagged = ask(
            r, f"AUTHENTICATE PLAIN {plain_b64(ALICE, ALICE_PW, ALICE)}"
        )
        assert re.fullmatch(rb"OK \[CAPABILITY [^\]]*\] Logged in", tagged), tagged
        untagged, tagged = ask(r, "SELECT INBOX")
        assert b"* 2 EXISTS" in untagged, untagged
        r.close()
    bystander.check("after SASL authzid impersonation")
    assert mailboxes(server) == before


CROSS_USER_NAMES = [
    '"../bob@example.com/INBOX"',
    '"../bob@example.com"',
    '"../../bob@example.com/INBOX"',
    '"INBOX/../../bob@example.com/INBOX"',
    '"bob@example.com/INBOX"',
    '"#shared/bob@example.com/INBOX"',
    '"#shared"',
    '"#public/INBOX"',
    '"#users/bob@example.com/INBOX"',
    '"Other Users/bob@example.com/INBOX"',
    '"~bob/INBOX"',
    '"~bob@example.com/INBOX"',
    '"~bob"',
    '"user/bob"',
    '"user.bob"',
    '".."',
]


def test_cross_user_folder_names(make_smtp_server):
    """alice names bob's mailbox every way a server might map names to other users or
    paths: SELECT, EXAMINE and STATUS say NONEXISTENT (a leading `/`: CANNOT), LIST
    finds nothing, COPY and MOVE say TRYCREATE. The one namespace is alice's own
    (NAMESPACE: personal only); folder names are labels, not paths, so CREATE makes
    alice a folder of that name and APPEND fills it. bob's mailbox and folders stay
    exactly as they were, and nothing of his shows through."""
    server = node(make_smtp_server)
    before = mailboxes(server)
    r = logged_in(server, ALICE, ALICE_PW)
    b = logged_in(server, BOB, BOB_PW)
    bob_folders = ask(b, 'LIST "" "*"')
    planted = b"Subject: planted\r\n\r\nfor bob?\r\n"
    bystander = Bystander(server)
    with bystander.running_during("cross-user folder names"):
        assert ask(r, "NAMESPACE") == (
            [b'* NAMESPACE (("" "/")) NIL NIL'],
            b"OK NAMESPACE completed",
        )
        for name in CROSS_USER_NAMES + ['"/bob@example.com/INBOX"']:
            missing = NONEXISTENT
            if name.startswith('"/'):
                missing = b"NO [CANNOT] empty level in folder name"
            assert ask(r, f"SELECT {name}") == ([], missing), name
            assert ask(r, f"EXAMINE {name}") == ([], missing), name
            assert ask(r, f"STATUS {name} (MESSAGES)") == ([], missing), name
            assert ask(r, f'LIST "" {name}') == ([], b"OK LIST completed"), name
            assert ask(r, f'LIST {name} "*"') == ([], b"OK LIST completed"), name
        assert ask(r, "SELECT INBOX")[1] == b"OK [READ-WRITE] SELECT completed"
        trycreate = b"NO [TRYCREATE] Mailbox does not exist"
        for name in CROSS_USER_NAMES[:3] + ['"~bob/INBOX"']:
            assert ask(r, f"COPY 1 {name}") == ([], trycreate), name
            assert ask(r, f"MOVE 1 {name}") == ([], trycreate), name
        # Labels in alice's own tree.
        for name in ('"../bob@example.com/INBOX"', '"~bob/INBOX"', '"#shared/x"'):
            untagged, tagged = ask(r, f"CREATE {name}")
            assert untagged == [] and re.fullmatch(rb"OK \[MAILBOXID \(F\d+\)\] CREATE completed", tagged), name
            untagged, tagged = ask(r, f"APPEND {name} ", Literal(planted))
            appended = re.fullmatch(rb"OK \[APPENDUID \d+ 1\] APPEND completed", tagged)
            assert appended, tagged
            untagged, tagged = ask(r, f"STATUS {name} (MESSAGES)")
            assert untagged == [b"* STATUS %s (MESSAGES 1)" % name.encode()], untagged
        assert ask(r, "UID FETCH 1:* (UID)")[1] == b"OK UID FETCH completed"
        untagged, _ = ask(r, 'LIST "" "*"')
        assert b'* LIST (\\HasChildren) "/" "../bob@example.com"' in untagged, untagged
    bystander.check("after cross-user folder names")
    assert ask(b, 'LIST "" "*"') == bob_folders
    untagged, tagged = ask(b, 'STATUS "../bob@example.com/INBOX" (MESSAGES)')
    assert (untagged, tagged) == ([], NONEXISTENT)
    r.close()
    b.close()
    assert mailboxes(server) == before


def test_230_connections_from_one_address(make_smtp_server):
    """max_connections_per_address (200 by default) across every service: of 230 IMAP
    connections from one address the first 200 are greeted and the other 30 get `* BYE
    Too many connections, try again later` and are closed; meanwhile that address gets
    the same refusal in POP3 and SMTP words (an implicit-TLS port just closes: no TLS
    yet to say it in). Another address is served normally, the refusals are logged,
    memory stays flat, and once the connections close the address is served again.
    (The node-wide max_connections, 20,000 by default, is not reached here.)"""
    server = node(make_smtp_server)
    before = mailboxes(server)
    # The bystander is another client, so another address: from 127.0.0.1 it would be
    # refused with the attacker, as the limit intends.
    bystander = Bystander(server, source="127.0.0.2")
    sampler = RssSampler(server)
    base = server.rss_kib()
    sampler.start()
    too_many = b"Too many connections, try again later\r\n"
    conns: list[socket.socket] = []
    with bystander.running_during("230 connections from one address"):
        for _ in range(230):
            conns.append(dial(server.imap_port))
        refused = []
        for i, sock in enumerate(conns):
            first = sock.recv(4096)
            if not first.startswith(b"* OK [CAPABILITY "):
                assert first == b"* BYE " + too_many, (i, first)
                assert sock.recv(4096) == b"", i
                refused.append(i)
        assert refused == list(range(200, 230))
        for port, refusal in (
            (server.pop3_port, b"-ERR [SYS/TEMP] " + too_many),
            (server.smtp_port, b"421 4.7.0 " + too_many),
            (server.submission_port, b"421 4.7.0 " + too_many),
            (server.imaps_port, b""),
        ):
            with dial(port) as sock:
                assert sock.recv(4096) == refusal, port
                assert sock.recv(4096) == b"", port
        # The greeted ones are served.
        conns[0].sendall(b"c1 NOOP\r\n")
        assert conns[0].recv(4096) == b"c1 OK NOOP completed\r\n"
        for sock in conns:
            sock.close()
    grown = mib(sampler.stop() - base)
    print(f"RSS peak growth {grown:.0f} MiB")
    # Measured: 4 MiB for 200 idle sessions.
    assert grown < 32, f"RSS grew by {grown:.0f} MiB"
    limit_lines = re.findall(
        r"WARN portico_server::listener: connection limit reached "
        r'service="(\w+)" client=127\.0\.0\.1:\d+',
        server.log(),
    )
    assert sorted(set(limit_lines)) == ["imap", "imaps", "pop3", "smtp", "submission"]
    assert len(limit_lines) == 34, limit_lines

    def served_again() -> bool:
        with dial(server.imap_port) as sock:
            return sock.recv(4096).startswith(b"* OK [CAPABILITY ")

    poll("the address to be served again", served_again, timeout=10)
    bystander.check("after 230 connections from one address")
    assert mailboxes(server) == before
