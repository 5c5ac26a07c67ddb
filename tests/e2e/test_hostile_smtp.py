"""Hostile input on SMTP (issue 9, items 10-12): what a client says in EHLO and MAIL FROM
reaches the stored trace headers only as printable ASCII and with its quoting intact;
a submission user cannot pose as someone else in From:; an unauthenticated inbound
client cannot claim a local sender unless it is in a trusted network (none by default);
a bare `postmaster` is a recipient; and whatever line ends a stored message has, the
relay hands the smarthost CRLF lines, dot-stuffed, with one terminator.

Servers here start with the default trusted_networks (empty) unless a test says
otherwise. After every attack a well-behaved client still delivers normally, and a
bystander.Bystander signed in before it goes through its IMAP, POP3 and SMTP rounds
during and after it (not in the tests of ordinary, accepted cases or of configuration).
Exact replies are asserted; expectations are computed here from what was sent."""

from __future__ import annotations

import re

import pytest

from bystander import Bystander
from conftest import SMTP_HOSTNAME, SmtpServer
from test_smtp import (
    ALICE,
    ALICE_PW,
    AUTH_OK,
    BOB,
    BOB_PW,
    CAROL,
    HELO,
    OK,
    QUEUED,
    RECIPIENT_OK,
    SENDER_OK,
    START_DATA,
    SmtpSink,
    imap_messages,
    inbox_count,
    poll,
    queue_empty,
    split_trace,
    with_users,
)

FROM_NOT_OWNED = b"553 5.7.1 From header address not owned by authenticated user"
LOCAL_SENDER = b"550 5.7.1 Authentication required to send as a local sender"
REMOTE = "sender@remote.example"


def untrusted(make_smtp_server, **options) -> SmtpServer:
    """A server with alice and bob and the default [smtp] policies: nobody trusted,
    From: checked."""
    return with_users(
        make_smtp_server(trusted_networks=None, from_must_match_login=None, **options)
    )


def inbound_delivery_works(
    server: SmtpServer,
    rcpt: str = BOB,
    content: bytes = b"Subject: fine\r\n\r\nstill here\r\n",
) -> str:
    """An inbound client (from REMOTE, EHLO mx.remote.example) delivers `content` (CRLF
    lines, none starting with a dot); returns its queue id."""
    r = server.raw_smtp(server.smtp_port)
    try:
        r.ehlo("mx.remote.example")
        assert r.cmd(f"MAIL FROM:<{REMOTE}>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{rcpt}>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        m = QUEUED.fullmatch(r.cmd(content + b"."))
        assert m
        assert r.cmd("QUIT") == b"221 2.0.0 Bye"
        return m.group(1).decode()
    finally:
        r.close()


def header_block(stored: bytes) -> bytes:
    return stored.split(b"\r\n\r\n", 1)[0]


# --------------------------------------------------------------------------------------
# Item 10: trace headers


@pytest.mark.parametrize(
    "helo, shown",
    [
        (b"evil\x00x\x1b[31m", "evil?x?[31m"),
        (b"a\x7fb;(c)", "a?b??c?"),
        ("zo\u00eb.example".encode(), "zo?.example"),
        (b"[127.0.0.1]", "[127.0.0.1]"),
    ],
)
def test_trace_headers_carry_printable_ascii_only(make_smtp_server, helo, shown):
    """EHLO bytes outside a domain's characters become `?` in Received (bounded to 255);
    a quoted local part stays quoted in Return-Path: `<"a>b"@evil.example>`, not
    `<a>b@evil.example>`. The header section is printable ASCII, CRLF and tab only."""
    server = untrusted(make_smtp_server)
    bystander = Bystander(server)
    with bystander.running_during("hostile EHLO name"):
        r = server.raw_smtp(server.smtp_port)
        try:
            r.send(b"EHLO " + helo + b"\r\n")
            assert r.reply()[0] == f"250-{SMTP_HOSTNAME}".encode()
            assert r.cmd('MAIL FROM:<"a>b"@evil.example>') == SENDER_OK
            assert r.cmd(f"RCPT TO:<{ALICE}>") == RECIPIENT_OK
            assert r.cmd("DATA") == START_DATA
            assert QUEUED.fullmatch(r.cmd(b"Subject: trace\r\n\r\nbody\r\n."))
        finally:
            r.close()
    bystander.check("after hostile EHLO name")
    [stored] = imap_messages(server, ALICE, ALICE_PW)
    _, rest = split_trace(
        stored, mail_from='"a>b"@evil.example', rcpt=ALICE, with_="ESMTP", helo=shown
    )
    assert rest == b"Subject: trace\r\n\r\nbody\r\n"
    headers = header_block(stored)
    assert re.fullmatch(rb"(?:[\x20-\x7e]|\r\n\t?)*", headers), headers[:400]
    inbound_delivery_works(server)


def test_return_path_of_the_null_sender_and_plain_addresses(make_smtp_server):
    """The ordinary cases are unchanged: `<>` and a dot-atom local part as sent."""
    server = untrusted(make_smtp_server)
    r = server.raw_smtp(server.smtp_port)
    try:
        r.ehlo("mx.remote.example")
        for sender in ("", "first.last+tag@remote.example"):
            assert r.cmd(f"MAIL FROM:<{sender}>") == SENDER_OK
            assert r.cmd(f"RCPT TO:<{ALICE}>") == RECIPIENT_OK
            assert r.cmd("DATA") == START_DATA
            assert QUEUED.fullmatch(r.cmd(b"Subject: x\r\n\r\ny\r\n."))
    finally:
        r.close()
    first, second = imap_messages(server, ALICE, ALICE_PW)
    split_trace(first, mail_from="", rcpt=ALICE, with_="ESMTP", helo="mx.remote.example")
    split_trace(
        second,
        mail_from="first.last+tag@remote.example",
        rcpt=ALICE,
        with_="ESMTP",
        helo="mx.remote.example",
    )


# --------------------------------------------------------------------------------------
# Item 11: sender checks


def submit_raw(server: SmtpServer, message: bytes) -> bytes:
    """Alice submits `message` to bob over STARTTLS; returns the reply to the content."""
    r = server.raw_smtp()
    try:
        r.ehlo(HELO)
        r.starttls()
        r.ehlo(HELO)
        assert r.auth_plain(ALICE, ALICE_PW) == b"235 2.7.0 Authentication successful"
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        return r.cmd(message + b".")
    finally:
        r.close()


@pytest.mark.parametrize(
    "from_lines",
    [
        b'From: "CEO" <ceo@example.com>\r\n',
        b"From: alice@example.com, ceo@example.com\r\n",
        b"From: alice@example.com\r\nFrom: ceo@example.com\r\n",
        b'From: "alice@example.com" <bob@example.com>\r\n',
        b"From: undisclosed-recipients:;\r\n",
    ],
)
def test_submission_from_header_must_be_the_login(make_smtp_server, from_lines):
    """bob's `From: "CEO" <ceo@example.com>` case: refused after DATA with 553 5.7.1,
    nothing delivered; the session and the server go on."""
    server = untrusted(make_smtp_server)
    message = from_lines + b"Subject: wire the money\r\n\r\nnow\r\n"
    bystander = Bystander(server)
    with bystander.running_during("forged From:"):
        assert submit_raw(server, message) == FROM_NOT_OWNED
    bystander.check("after forged From:")
    assert inbox_count(server, BOB) == 0
    own = b"From: Alice <Alice@EXAMPLE.com>\r\nSubject: mine\r\n\r\nok\r\n"
    assert QUEUED.fullmatch(submit_raw(server, own))
    [stored] = imap_messages(server, BOB, BOB_PW)
    _, rest = split_trace(stored, mail_from=ALICE, rcpt=BOB)
    assert rest == own


def test_submission_without_from_passes(make_smtp_server):
    """Documented choice: a message without From: poses as nobody and is accepted."""
    server = untrusted(make_smtp_server)
    message = b"Subject: no from\r\n\r\nFrom: ceo@example.com in the body is no header\r\n"
    assert QUEUED.fullmatch(submit_raw(server, message))
    assert inbox_count(server, BOB) == 1


def test_from_check_can_be_turned_off(make_smtp_server):
    server = untrusted(make_smtp_server, smtp_extra="from_must_match_login = false")
    message = b'From: "CEO" <ceo@example.com>\r\n\r\nx\r\n'
    assert QUEUED.fullmatch(submit_raw(server, message))


def test_inbound_local_sender_needs_authentication(make_smtp_server):
    """`MAIL FROM:<alice@example.com>` on the inbound port from an untrusted client:
    550 5.7.1, in any case of the domain; a remote sender and `<>` are fine; the refusal
    does not end the session."""
    server = untrusted(make_smtp_server)
    bystander = Bystander(server)
    with bystander.running_during("forged local sender"):
        r = server.raw_smtp(server.smtp_port)
        try:
            r.ehlo("mx.remote.example")
            assert r.cmd(f"MAIL FROM:<{ALICE}>") == LOCAL_SENDER
            assert r.cmd("MAIL FROM:<nobody@EXAMPLE.COM>") == LOCAL_SENDER
            assert r.cmd(f"RCPT TO:<{BOB}>") == b"503 5.5.1 Need MAIL command first"
            assert r.cmd("MAIL FROM:<>") == SENDER_OK
            assert r.cmd("RSET") == OK
            assert r.cmd(f"MAIL FROM:<{REMOTE}>") == SENDER_OK
            assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
            assert r.cmd("DATA") == START_DATA
            assert QUEUED.fullmatch(r.cmd(b"Subject: ok\r\n\r\nx\r\n."))
        finally:
            r.close()
    bystander.check("after forged local sender")
    assert inbox_count(server, BOB) == 1


@pytest.mark.parametrize("networks", ['["127.0.0.0/8"]', '["10.0.0.0/8", "127.0.0.1"]'])
def test_trusted_network_may_send_as_local(make_smtp_server, networks):
    server = with_users(make_smtp_server(trusted_networks=networks))
    r = server.raw_smtp(server.smtp_port)
    try:
        r.ehlo("app.internal")
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
    finally:
        r.close()


def test_untrusted_network_and_policy_off(make_smtp_server):
    """A trusted network that is not the client's trusts nothing; the policy off lets
    local senders through again."""
    server = with_users(make_smtp_server(trusted_networks='["10.0.0.0/8", "::1"]'))
    bystander = Bystander(server)
    with bystander.running_during("local sender from an untrusted network"):
        r = server.raw_smtp(server.smtp_port)
        try:
            r.ehlo("mx.remote.example")
            assert r.cmd(f"MAIL FROM:<{ALICE}>") == LOCAL_SENDER
        finally:
            r.close()
    bystander.check("after local sender from an untrusted network")
    bystander.close()
    server.stop()
    off = untrusted(
        make_smtp_server,
        name="off",
        smtp_extra="reject_unauthenticated_local_senders = false",
    )
    r = off.raw_smtp(off.smtp_port)
    try:
        r.ehlo("mx.remote.example")
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == SENDER_OK
    finally:
        r.close()


def test_submission_is_not_affected_by_the_inbound_sender_policy(make_smtp_server):
    """An authenticated user sends as itself through submission, untrusted or not."""
    server = untrusted(make_smtp_server)
    message = b"From: alice@example.com\r\nSubject: x\r\n\r\ny\r\n"
    assert QUEUED.fullmatch(submit_raw(server, message))


def test_bare_postmaster_is_accepted(make_smtp_server):
    """RFC 5321 §4.5.1: `RCPT TO:<postmaster>` without a domain, in any case, from an
    untrusted inbound client, reaches the local postmaster."""
    server = untrusted(make_smtp_server)
    # The node made the account itself, and nobody can sign in to it yet.
    assert inbox_count(server, "postmaster@example.com") == 0
    r = server.raw_smtp(server.smtp_port)
    try:
        r.ehlo("mx.remote.example")
        assert r.cmd(f"MAIL FROM:<{REMOTE}>") == SENDER_OK
        assert r.cmd("RCPT TO:<postmaster>") == RECIPIENT_OK
        assert r.cmd("RCPT TO:<PostMaster>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        assert QUEUED.fullmatch(r.cmd(b"Subject: abuse report\r\n\r\nx\r\n."))
    finally:
        r.close()
    assert inbox_count(server, "postmaster@example.com") == 1


# --------------------------------------------------------------------------------------
# Item 12: relay dot-stuffing


class RecordingSink(SmtpSink):
    """SmtpSink that also keeps every byte each connection sent it (`raw`, one bytes
    object per finished connection)."""

    def __init__(self, *args, **kwargs):
        self.raw: list[bytes] = []
        super().__init__(*args, **kwargs)

    def _session(self, rfile, wfile, commands):
        seen: list[bytes] = []

        class Recorder:
            def readline(self, *args):
                line = rfile.readline(*args)
                seen.append(line)
                return line

        try:
            super()._session(Recorder(), wfile, commands)
        finally:
            with self.lock:
                self.raw.append(b"".join(seen))


def wire_form(content: bytes) -> bytes:
    """RFC 5321 §4.5.2 as the relay must do it: every CR, LF or CRLF a CRLF line end,
    a dot doubled at the start of every line, then the terminating dot line."""
    lines = re.split(rb"\r\n|\r|\n", content)
    if lines[-1] == b"":
        lines.pop()
    out = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)
    return out + b".\r\n"


def test_relay_stuffs_dots_on_crlf_normalized_lines(make_smtp_server):
    """A stored message with `\\r.\\r\\n`, `\\n.\\n` and `\\r\\n.\\r` inside reaches the
    smarthost as CRLF lines with every leading dot doubled: exactly one terminator, so
    the `MAIL FROM` lines after them stay message text at the next hop."""
    sink = RecordingSink()
    try:
        server = untrusted(make_smtp_server, relay_port=sink.port)
        content = (
            b"From: alice@example.com\r\nSubject: smuggle\r\n\r\n"
            b"one\r.\r\nMAIL FROM:<ceo@example.com>\r\n"
            b"two\n.\nRCPT TO:<victim@remote.example>\r\n"
            b"three\r\n.\rDATA\r\n"
            b".leading dot\r\n"  # these two CRLF-led dots are stuffed by the client
            b"bare cr at end\r"
        )
        bystander = Bystander(server)
        with bystander.running_during("smuggling toward the smarthost"):
            r = server.raw_smtp()
            try:
                r.ehlo(HELO)
                r.starttls()
                r.ehlo(HELO)
                assert r.auth_plain(ALICE, ALICE_PW) == AUTH_OK
                assert r.cmd(f"MAIL FROM:<{ALICE}>") == SENDER_OK
                assert r.cmd(f"RCPT TO:<{CAROL}>") == RECIPIENT_OK
                assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
                assert r.cmd("DATA") == START_DATA
                # The client stuffs the CRLF-led dots (RFC 5321 §4.5.2); the server
                # unstuffs.
                sent = content.replace(b"\r\n.", b"\r\n..")
                queued = QUEUED.fullmatch(r.cmd(sent + b"\r\n."))
                assert queued
            finally:
                r.close()
            poll("the relayed message", lambda: len(sink.received()) >= 1)
            poll("an empty queue", lambda: queue_empty(server))
            poll("the relay session to end", lambda: len(sink.raw) >= 1)
        bystander.check("after smuggling toward the smarthost")
        [message] = sink.received()
        assert message["rcpts"] == [CAROL]
        raw = sink.raw[0]
        start = raw.index(b"DATA\r\n") + len(b"DATA\r\n")
        data = raw[start:]
        assert data.endswith(b".\r\nQUIT\r\n"), data[-80:]
        data = data[: -len(b"QUIT\r\n")]
        queue_id, rest = split_trace(data, mail_from=ALICE, rcpt=None, return_path=False)
        assert queue_id == queued.group(1).decode()
        # What the server took: the content and the CRLF before the final dot. (IMAP
        # would show bob's copy with bare LFs made CRLF, so it is not read back here.)
        stored = content + b"\r\n"
        assert rest == wire_form(stored)
        assert rest.count(b"\r\n.\r\n") == 1 and rest.endswith(b"\r\n.\r\n")
        assert b"\r\n..\r\nMAIL FROM:<ceo@example.com>\r\n" in rest
        assert b"\r\n..\r\nRCPT TO:<victim@remote.example>\r\n" in rest
        assert b"\r\n..\r\nDATA\r\n" in rest
        assert b"\r\n..leading dot\r\n" in rest
        assert not re.search(rb"\r(?!\n)|(?<!\r)\n", rest)
        assert inbound_delivery_works(server)
    finally:
        sink.close()


def test_a_mistyped_trusted_network_stops_the_node(make_smtp_server):
    """Checked when the configuration is read: not silently trusting nobody later."""
    server = make_smtp_server(start=False, trusted_networks='["10.0.0.0/33"]')
    for args in (["user", "list"], ["serve"]):
        result = server.cli(*args)
        assert result.returncode != 0, args
        assert b'"10.0.0.0/33" is not an address or a CIDR network' in result.stderr, (
            result.stderr
        )
