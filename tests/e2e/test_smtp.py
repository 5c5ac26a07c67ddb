"""SMTP end to end: the real server on its three SMTP ports (inbound, submission with
STARTTLS, implicit-TLS submission), driven by smtplib, curl and a raw socket client
(conftest.RawSmtp); what was accepted is read back over IMAP and POP3, and mail for other
domains goes to a small SMTP sink written here (SmtpSink) standing in for the smarthost.

Every expectation is computed here from what was sent, never taken from the server."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import re
import socketserver
import subprocess
import threading
import time

import pytest

from conftest import (
    CORPUS_DIR,
    SMTP_HOSTNAME,
    SmtpServer,
    crlf,
    free_port,
    plain_b64,
    stuff,
    tls_context,
)

ALICE = "alice@example.com"
ALICE_PW = "alice-Smtp-1"
BOB = "bob@example.com"
BOB_PW = "bob-Smtp-2"
CAROL = "carol@remote.example"
HELO = "client.example.org"

GREETING = [f"220 {SMTP_HOSTNAME} ESMTP Portico".encode()]
EHLO_BASE = [
    f"250-{SMTP_HOSTNAME}".encode(),
    b"250-PIPELINING",
    b"250-SIZE 52428800",
    b"250-8BITMIME",
    b"250-SMTPUTF8",
    b"250-ENHANCEDSTATUSCODES",
]
EHLO_PLAIN_SECURE = EHLO_BASE + [b"250-CHUNKING", b"250 STARTTLS"]
EHLO_TLS_SUBMISSION = EHLO_BASE + [b"250-CHUNKING", b"250 AUTH PLAIN LOGIN"]
EHLO_PLAINTEXT_LOGIN = EHLO_BASE + [
    b"250-CHUNKING",
    b"250-STARTTLS",
    b"250 AUTH PLAIN LOGIN",
]
EHLO_INBOUND_TLS = EHLO_BASE + [b"250 CHUNKING"]

SENDER_OK = b"250 2.1.0 Sender OK"
RECIPIENT_OK = b"250 2.1.5 Recipient OK"
START_DATA = b"354 Start mail input; end with <CRLF>.<CRLF>"
OK = b"250 2.0.0 Ok"
BYE = b"221 2.0.0 Bye"
AUTH_OK = b"235 2.7.0 Authentication successful"
QUEUED = re.compile(rb"250 2\.0\.0 Ok: queued as ([0-9A-F]{12})")
UNKNOWN_USER = b"550 5.1.1 Mailbox unavailable"
RELAY_DENIED = b"550 5.7.1 Relaying denied"
AUTH_REQUIRED = b"530 5.7.0 Authentication required"
ENCRYPTION_REQUIRED = (
    b"538 5.7.11 Encryption required for requested authentication mechanism"
)
NOT_OWNED = b"553 5.7.1 Sender address not owned by authenticated user"
BAD_CREDENTIALS = b"535 5.7.8 Authentication credentials invalid"
DECLARED_TOO_BIG = b"552 5.3.4 Message size exceeds fixed maximum message size"
TOO_BIG = b"552 5.3.4 Message too big"
NO_VALID_RECIPIENTS = b"554 5.5.1 No valid recipients"
UNKNOWN_COMMAND = b"500 5.5.1 Unknown command"
TOO_MANY_ERRORS = b"421 4.7.0 Too many errors, closing connection"

DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
DATE = rf"{DAY}, \d\d {MONTH} \d{{4}} \d\d:\d\d:\d\d \+0000"

POLL_TIMEOUT = 20.0


def received_re(
    helo: str, with_: str, rcpt: str | None, client: str = "127.0.0.1"
) -> re.Pattern:
    """The Received header the server writes (RFC 5321 §4.4, `with` per RFC 3848); the
    `for` clause only on local delivery; `client` the address the client connected
    from. Groups: id, date."""
    for_clause = rf"\r\n\tfor <{re.escape(rcpt)}>" if rcpt else ""
    return re.compile(
        (
            rf"Received: from {re.escape(helo)} \(\[{re.escape(client)}\]\)\r\n"
            rf"\tby {re.escape(SMTP_HOSTNAME)} \(Portico\) with {with_}\r\n"
            rf"\tid ([0-9A-F]{{12}}){for_clause};\r\n"
            rf"\t({DATE})\r\n"
        ).encode()
    )


def split_trace(
    stored: bytes,
    *,
    mail_from: str,
    rcpt: str | None,
    with_: str = "ESMTPSA",
    helo: str = HELO,
    return_path: bool = True,
    client: str = "127.0.0.1",
) -> tuple[str, bytes]:
    """Checks and removes exactly the trace headers the server prepends (Return-Path on
    local delivery, then Received, naming the `client` address); returns the Received
    id and the rest."""
    if return_path:
        prefix = f"Return-Path: <{mail_from}>\r\n".encode()
        assert stored.startswith(prefix), stored[:300]
        stored = stored[len(prefix) :]
    m = received_re(helo, with_, rcpt, client).match(stored)
    assert m, f"no Received header of the expected form at {stored[:400]!r}"
    when = email.utils.parsedate_to_datetime(m.group(2).decode())
    now = dt.datetime.now(dt.timezone.utc)
    assert abs((now - when).total_seconds()) < 600, m.group(2)
    return m.group(1).decode(), stored[m.end() :]


def as_sent(message: bytes) -> bytes:
    """What a client that ends the content with CRLF.CRLF transfers (smtplib and curl
    add the CRLF a message lacks; RFC 5321 §4.1.1.4: it belongs to the content)."""
    return message if message.endswith(b"\r\n") else message + b"\r\n"


def corpus_messages() -> list[tuple[str, bytes]]:
    if not CORPUS_DIR.is_dir():
        pytest.fail(f"message corpus not found at {CORPUS_DIR}", pytrace=False)
    files = sorted(CORPUS_DIR.glob("*.eml"))
    assert len(files) >= 100, f"only {len(files)} .eml files in {CORPUS_DIR}"
    return [(f.name, crlf(f.read_bytes())) for f in files]


def poll(what: str, check, timeout: float = POLL_TIMEOUT, interval: float = 0.05):
    """Calls `check` until it returns something truthy; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def imap_messages(server: SmtpServer, user: str, password: str) -> list[bytes]:
    """Every INBOX message of `user`, in UID order, by UID FETCH BODY.PEEK[]."""
    m = server.imap_login(user, password)
    try:
        typ, data = m.select("INBOX", readonly=True)
        assert typ == "OK", data
        count = int(data[0])
        if count == 0:
            return []
        typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK", data
        bodies = [item[1] for item in data if isinstance(item, tuple)]
        assert len(bodies) == count
        return bodies
    finally:
        m.logout()


def pop3_messages(server: SmtpServer, user: str, password: str) -> list[bytes]:
    """Every message over POP3 RETR, checked on the wire byte for byte against its own
    unstuffed form (see test_pop3 for the POP3 side itself)."""
    r = server.raw()
    try:
        r.starttls()
        assert r.login(user, password).startswith(b"+OK Logged in")
        stat = r.cmd("STAT")
        m = re.fullmatch(rb"\+OK (\d+) \d+", stat)
        assert m, stat
        out = []
        for i in range(1, int(m.group(1)) + 1):
            status = r.cmd(f"RETR {i}")
            size = re.fullmatch(rb"\+OK (\d+) octets", status)
            assert size, status
            wire = r.multiline_raw()
            body = unstuff_pop3(wire)
            assert wire == stuff(body)
            assert int(size.group(1)) == len(body)
            out.append(body)
        assert r.cmd("QUIT").startswith(b"+OK")
        return out
    finally:
        r.close()


def unstuff_pop3(wire: bytes) -> bytes:
    assert wire.endswith(b".\r\n")
    lines = wire[:-3].split(b"\r\n")
    assert lines[-1] == b""
    return b"".join(
        (line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines[:-1]
    )


def inbox_count(server: SmtpServer, user: str) -> int:
    return int(server.users()[user]["inbox"])


def parse(message: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(message, policy=email.policy.default)


# --------------------------------------------------------------------------------------
# A smarthost for the relay tests


class SmtpSink:
    """A minimal SMTP server on 127.0.0.1 that records every transaction. `rcpt_reply`
    is its answer to RCPT (bytes, or a function of the address), `extensions` what its
    EHLO offers. Messages are dicts: helo, mail (the whole MAIL command line), rcpts (the
    accepted addresses), data (unstuffed content, the final CRLF included). `sessions`
    holds the command lines of every finished connection. `port` may name a port to
    listen on (one where a sink was down)."""

    def __init__(
        self,
        port: int = 0,
        *,
        rcpt_reply=b"250 2.1.5 Ok",
        extensions: tuple[str, ...] = ("8BITMIME", "SMTPUTF8", "PIPELINING"),
    ):
        self.rcpt_reply = rcpt_reply
        self.extensions = extensions
        self.messages: list[dict] = []
        self.sessions: list[list[bytes]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                commands: list[bytes] = []
                try:
                    sink._session(self.rfile, self.wfile, commands)
                finally:
                    with sink.lock:
                        sink.sessions.append(commands)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def _session(self, rfile, wfile, commands: list[bytes]) -> None:
        def say(line: bytes) -> None:
            wfile.write(line + b"\r\n")
            wfile.flush()

        say(b"220 sink.example ESMTP")
        helo, mail, rcpts = "", b"", []
        while True:
            line = rfile.readline(4096)
            if not line:
                return
            commands.append(line)
            verb = line[:4].upper()
            if verb == b"EHLO":
                helo = line[5:].strip().decode()
                lines = ["sink.example", *self.extensions]
                say(
                    "\r\n".join(
                        ("250 " if i == len(lines) - 1 else "250-") + text
                        for i, text in enumerate(lines)
                    ).encode()
                )
            elif verb == b"MAIL":
                mail, rcpts = line.rstrip(b"\r\n"), []
                say(b"250 2.1.0 Ok")
            elif verb == b"RCPT":
                address = re.match(rb"RCPT TO:<([^>]*)>", line, re.I).group(1).decode()
                reply = self.rcpt_reply
                if callable(reply):
                    reply = reply(address)
                if reply.startswith(b"2"):
                    rcpts.append(address)
                say(reply)
            elif verb == b"DATA":
                say(b"354 go ahead")
                data = b""
                while True:
                    part = rfile.readline()
                    if not part:
                        return
                    if part == b".\r\n":
                        break
                    data += part[1:] if part.startswith(b".") else part
                with self.lock:
                    self.messages.append(
                        {"helo": helo, "mail": mail, "rcpts": rcpts, "data": data}
                    )
                say(b"250 2.0.0 Ok: stored")
            elif verb == b"RSET":
                mail, rcpts = b"", []
                say(b"250 2.0.0 Ok")
            elif verb == b"QUIT":
                say(b"221 2.0.0 Bye")
                return
            else:
                say(b"500 5.5.1 What?")

    def received(self) -> list[dict]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sinks():
    """Factory for SmtpSink; every sink is closed at teardown."""
    made: list[SmtpSink] = []

    def make(port: int = 0, **kwargs) -> SmtpSink:
        sink = SmtpSink(port, **kwargs)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


# --------------------------------------------------------------------------------------
# Servers


def with_users(server: SmtpServer) -> SmtpServer:
    server.add_user(ALICE, ALICE_PW)
    server.add_user(BOB, BOB_PW)
    return server


@pytest.fixture
def smtp_server(make_smtp_server) -> SmtpServer:
    """Login type secure, no relay; alice and bob exist."""
    return with_users(make_smtp_server())


def submit(
    server: SmtpServer, message: bytes, rcpts: list[str], *, mail_options=()
) -> str:
    """Sends one message as alice over STARTTLS with smtplib's low-level commands,
    checking every reply; returns the queue id."""
    s = server.smtp_login(ALICE, ALICE_PW)
    try:
        assert s.mail(ALICE, list(mail_options)) == (250, SENDER_OK[4:])
        for rcpt in rcpts:
            assert s.rcpt(rcpt) == (250, RECIPIENT_OK[4:])
        code, text = s.data(message)
        m = QUEUED.fullmatch(b"%d %s" % (code, text))
        assert m, (code, text)
        assert s.quit() == (221, BYE[4:])
        return m.group(1).decode()
    finally:
        s.close()


# --------------------------------------------------------------------------------------
# Submission with clients


def test_corpus_submitted_over_starttls_reads_back_over_imap_and_pop3(smtp_server):
    """Every corpus message (bare LF made CRLF, as any SMTP client sends it) goes through
    smtplib (STARTTLS, AUTH) to bob; over IMAP and POP3 each is the Return-Path and
    Received headers followed by exactly the bytes sent."""
    corpus = corpus_messages()
    s = smtp_server.smtp()
    assert s.ehlo(HELO) == (250, b"\n".join(l[4:] for l in EHLO_PLAIN_SECURE))
    assert s.starttls(context=tls_context()) == (220, b"2.0.0 Ready to start TLS")
    assert s.ehlo(HELO) == (250, b"\n".join(l[4:] for l in EHLO_TLS_SUBMISSION))
    assert s.login(ALICE, ALICE_PW) == (235, AUTH_OK[4:])
    ids = []
    for name, message in corpus:
        eight_bit = any(b >= 0x80 for b in message)
        options = ["BODY=8BITMIME"] if eight_bit else []
        options.append(f"SIZE={len(message)}")
        assert s.mail(ALICE, options) == (250, SENDER_OK[4:]), name
        assert s.rcpt(BOB) == (250, RECIPIENT_OK[4:]), name
        code, text = s.data(message)
        m = QUEUED.fullmatch(b"%d %s" % (code, text))
        assert m, (name, code, text)
        ids.append(m.group(1).decode())
    assert s.quit() == (221, BYE[4:])
    assert len(set(ids)) == len(ids), "queue ids repeat"
    assert inbox_count(smtp_server, BOB) == len(corpus)
    assert inbox_count(smtp_server, ALICE) == 0

    for protocol, stored in (
        ("IMAP", imap_messages(smtp_server, BOB, BOB_PW)),
        ("POP3", pop3_messages(smtp_server, BOB, BOB_PW)),
    ):
        assert len(stored) == len(corpus), protocol
        for (name, message), got, queue_id in zip(corpus, stored, ids):
            got_id, rest = split_trace(got, mail_from=ALICE, rcpt=BOB)
            assert got_id == queue_id, (protocol, name)
            assert rest == as_sent(message), f"{protocol}: {name} differs from what was sent"


def test_implicit_tls_submission(smtp_server):
    """The 465-style port: TLS from the first byte, AUTH offered at once, no STARTTLS."""
    message = crlf((CORPUS_DIR / "001-plain-ascii.eml").read_bytes())
    s = smtp_server.smtp_ssl()
    try:
        assert s.ehlo(HELO) == (250, b"\n".join(l[4:] for l in EHLO_TLS_SUBMISSION))
        assert s.docmd("STARTTLS") == (503, b"5.5.1 TLS already active")
        assert s.login(ALICE, ALICE_PW) == (235, AUTH_OK[4:])
        assert s.sendmail(ALICE, [BOB, ALICE], message) == {}
        assert s.quit() == (221, BYE[4:])
    finally:
        s.close()
    for user, password in ((BOB, BOB_PW), (ALICE, ALICE_PW)):
        [got] = imap_messages(smtp_server, user, password)
        _, rest = split_trace(got, mail_from=ALICE, rcpt=user)
        assert rest == as_sent(message)


def test_auth_login_and_plain_challenge_on_implicit_tls(smtp_server):
    """AUTH LOGIN's two challenges and AUTH PLAIN after an empty challenge (RFC 4954)."""
    r = smtp_server.raw_smtp(implicit=True)
    try:
        assert r.greeting == GREETING
        assert r.ehlo() == EHLO_TLS_SUBMISSION
        assert r.cmd("AUTH LOGIN") == b"334 VXNlcm5hbWU6"
        assert r.cmd("YWxpY2VAZXhhbXBsZS5jb20=") == b"334 UGFzc3dvcmQ6"
        assert r.cmd("d3Jvbmc=") == BAD_CREDENTIALS  # "wrong"
        # RFC 4616: an authorization identity other than the user's own is refused.
        assert r.cmd(f"AUTH PLAIN {plain_b64(ALICE, ALICE_PW, authzid=BOB)}") == (
            BAD_CREDENTIALS
        )
        assert r.cmd("AUTH PLAIN !!!") == b"501 5.5.2 Invalid base64 data"
        assert r.cmd("AUTH LOGIN") == b"334 VXNlcm5hbWU6"
        assert r.cmd("*") == b"501 5.0.0 Authentication cancelled"
        assert r.cmd("AUTH PLAIN") == b"334 "
        assert r.cmd(plain_b64(ALICE, ALICE_PW)) == AUTH_OK
        assert r.cmd("AUTH PLAIN " + plain_b64(ALICE, ALICE_PW)) == (
            b"503 5.5.1 Already authenticated"
        )
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        assert QUEUED.fullmatch(r.cmd(b"Subject: login\r\n\r\nbody\r\n."))
        assert r.cmd("QUIT") == BYE
        assert r.at_eof()
    finally:
        r.close()
    [got] = imap_messages(smtp_server, BOB, BOB_PW)
    _, rest = split_trace(got, mail_from=ALICE, rcpt=BOB)
    assert rest == b"Subject: login\r\n\r\nbody\r\n"


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_curl_submission(smtp_server, tmp_path, scheme):
    """curl: smtp:// with --ssl-reqd (STARTTLS) on the submission port, smtps:// on the
    implicit-TLS one; the EHLO name is the URL path."""
    message = crlf((CORPUS_DIR / "017-dot-stuffing.eml").read_bytes())
    path = tmp_path / "message.eml"
    path.write_bytes(message)
    port = (
        smtp_server.submission_port if scheme == "smtp" else smtp_server.submissions_port
    )
    args = ["/usr/bin/curl", "-s", "-S", f"{scheme}://127.0.0.1:{port}/{HELO}"]
    if scheme == "smtp":
        args.append("--ssl-reqd")
    args += [
        "-k",
        "--mail-from",
        ALICE,
        "--mail-rcpt",
        BOB,
        "--upload-file",
        str(path),
        "-u",
        f"{ALICE}:{ALICE_PW}",
    ]
    result = subprocess.run(args, capture_output=True, timeout=60)
    assert result.returncode == 0, result
    [got] = imap_messages(smtp_server, BOB, BOB_PW)
    _, rest = split_trace(got, mail_from=ALICE, rcpt=BOB)
    assert rest == message


def test_curl_without_tls_cannot_log_in(smtp_server, tmp_path):
    """curl without --ssl-reqd on a secure server: AUTH is not offered, so no login."""
    path = tmp_path / "m.eml"
    path.write_bytes(b"Subject: x\r\n\r\nx\r\n")
    result = subprocess.run(
        [
            "/usr/bin/curl",
            "-s",
            f"smtp://127.0.0.1:{smtp_server.submission_port}/{HELO}",
            "--mail-from",
            ALICE,
            "--mail-rcpt",
            BOB,
            "--upload-file",
            str(path),
            "-u",
            f"{ALICE}:{ALICE_PW}",
        ],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert inbox_count(smtp_server, BOB) == 0


# --------------------------------------------------------------------------------------
# Raw protocol: pipelining, chunking, STARTTLS


def test_pipelined_transaction_on_plaintext_login(make_smtp_server):
    """login = "plaintext": AUTH before TLS, then MAIL, RCPT, RCPT, DATA in one write
    (RFC 2920), the answers in order, then the dot-stuffed content and QUIT in one
    write."""
    server = with_users(make_smtp_server(smtp_login="plaintext"))
    body = (
        b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: pipelined\r\n\r\n"
        b".leading dot\r\n..two dots\r\n.\r\n\r\nlast line\r\n"
    )
    r = server.raw_smtp()
    try:
        assert r.ehlo() == EHLO_PLAINTEXT_LOGIN
        assert r.auth_plain(ALICE, ALICE_PW) == AUTH_OK
        r.send(
            f"MAIL FROM:<{ALICE}> SIZE={len(body)}\r\nRCPT TO:<{BOB}>\r\n"
            f"RCPT TO:<nobody@example.com>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n"
        )
        assert r.reply() == [SENDER_OK]
        assert r.reply() == [RECIPIENT_OK]
        assert r.reply() == [UNKNOWN_USER]
        assert r.reply() == [RECIPIENT_OK]
        assert r.reply() == [START_DATA]
        wire = b"".join(
            (b"." + line if line.startswith(b".") else line)
            for line in body.splitlines(keepends=True)
        )
        r.send(wire + b".\r\nNOOP\r\nQUIT\r\n")
        m = QUEUED.fullmatch(r.line())
        assert m
        assert r.reply() == [OK]
        assert r.reply() == [BYE]
        assert r.at_eof()
    finally:
        r.close()
    for user, password in ((BOB, BOB_PW), (ALICE, ALICE_PW)):
        [got] = imap_messages(server, user, password)
        queue_id, rest = split_trace(got, mail_from=ALICE, rcpt=user, with_="ESMTPA")
        assert queue_id == m.group(1).decode()
        assert rest == body


def test_whole_transaction_in_one_write(make_smtp_server):
    """Everything from EHLO to QUIT in a single write, the content included (a client
    not waiting for 354): the replies come in order and the message is stored once."""
    server = with_users(make_smtp_server(smtp_login="plaintext"))
    body = b"Subject: one write\r\n\r\n.\r\n..\r\nend\r\n"
    r = server.raw_smtp()
    try:
        r.send(
            f"EHLO {HELO}\r\nAUTH PLAIN {plain_b64(ALICE, ALICE_PW)}\r\n"
            f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n".encode()
            + b"Subject: one write\r\n\r\n..\r\n...\r\nend\r\n.\r\n"
            + b"RSET\r\nQUIT\r\n"
        )
        assert r.reply() == EHLO_PLAINTEXT_LOGIN
        assert r.reply() == [AUTH_OK]
        assert r.reply() == [SENDER_OK]
        assert r.reply() == [RECIPIENT_OK]
        assert r.reply() == [START_DATA]
        assert QUEUED.fullmatch(r.line())
        assert r.reply() == [OK]
        assert r.reply() == [BYE]
        assert r.at_eof()
    finally:
        r.close()
    [got] = imap_messages(server, BOB, BOB_PW)
    _, rest = split_trace(got, mail_from=ALICE, rcpt=BOB, with_="ESMTPA")
    assert rest == body


def test_bdat_chunks(smtp_server):
    """CHUNKING (RFC 3030): chunks are taken byte for byte (no dot handling, a bare CR
    kept), pipelined behind MAIL and RCPT."""
    chunks = [b"Subject: bdat\r\n\r\n.not stuffed\r\n", b"bare\rCR and\nLF\r\n.\r\n", b"end"]
    r = smtp_server.raw_smtp(implicit=True)
    try:
        r.ehlo()
        assert r.auth_plain(ALICE, ALICE_PW) == AUTH_OK
        write = f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\n".encode()
        write += b"BDAT %d\r\n%s" % (len(chunks[0]), chunks[0])
        write += b"BDAT %d\r\n%s" % (len(chunks[1]), chunks[1])
        write += b"BDAT %d LAST\r\n%s" % (len(chunks[2]), chunks[2])
        r.send(write)
        assert r.reply() == [SENDER_OK]
        assert r.reply() == [RECIPIENT_OK]
        assert r.reply() == [b"250 2.0.0 %d octets received" % len(chunks[0])]
        assert r.reply() == [b"250 2.0.0 %d octets received" % len(chunks[1])]
        assert QUEUED.fullmatch(r.line())
        # RFC 3030 §3: DATA after BDAT in the same transaction is refused.
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        r.send(b"BDAT 1\r\nx")
        assert r.reply() == [b"250 2.0.0 1 octets received"]
        assert r.cmd("DATA") == b"503 5.5.1 DATA not allowed after BDAT, use BDAT LAST"
        assert r.cmd("RSET") == OK
        assert r.cmd("QUIT") == BYE
    finally:
        r.close()
    [got] = imap_messages(smtp_server, BOB, BOB_PW)
    _, rest = split_trace(got, mail_from=ALICE, rcpt=BOB)
    # The store keeps a bare LF as CRLF (like every delivery path); all else as sent.
    assert rest == crlf(b"".join(chunks))


def test_starttls_discards_pipelined_plaintext(smtp_server):
    """RFC 3207 §6 (CVE-2011-0411): commands sent behind STARTTLS in the clear are never
    answered or run; after the handshake the client starts over with EHLO (the EHLO
    name is forgotten) and only then may AUTH."""
    r = smtp_server.raw_smtp()
    try:
        assert r.ehlo() == EHLO_PLAIN_SECURE
        r.send(f"STARTTLS\r\nEHLO evil\r\nAUTH PLAIN {plain_b64(ALICE, ALICE_PW)}\r\n")
        assert r.reply() == [b"220 2.0.0 Ready to start TLS"]
        assert r.buf == b""
        r.sock = tls_context().wrap_socket(r.sock)
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == b"503 5.5.1 Send EHLO or HELO first"
        assert r.cmd("NOOP") == OK
        assert r.ehlo() == EHLO_TLS_SUBMISSION
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == AUTH_REQUIRED
        assert r.cmd("STARTTLS") == b"503 5.5.1 TLS already active"
        assert r.auth_plain(ALICE, ALICE_PW) == AUTH_OK
    finally:
        r.close()


def test_data_end_needs_crlf_dot_crlf(make_smtp_server):
    """SMTP smuggling: `<LF>.<LF>` and `<LF>.<CRLF>` do not end the content, so the
    commands hidden behind them are content, not a second message."""
    server = with_users(make_smtp_server())
    body = (
        b"Subject: smuggle\r\n\r\nbefore\n.\nMAIL FROM:<evil@remote.example>\n"
        b"RCPT TO:<alice@example.com>\nDATA\nsmuggled\n.\r\nafter\r\n"
    )
    r = server.raw_smtp(server.smtp_port)
    try:
        r.ehlo()
        assert r.cmd("MAIL FROM:<sender@remote.example>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        r.send(body + b".\r\n")
        assert QUEUED.fullmatch(r.line())
        assert r.cmd("QUIT") == BYE
    finally:
        r.close()
    assert inbox_count(server, ALICE) == 0
    [got] = imap_messages(server, BOB, BOB_PW)
    _, rest = split_trace(got, mail_from="sender@remote.example", rcpt=BOB, with_="ESMTP")
    # One message, all of it content (the store keeps each bare LF as CRLF).
    assert rest == crlf(body)


# --------------------------------------------------------------------------------------
# Inbound (port 25 style)


def test_inbound_delivers_local_mail_without_auth(smtp_server):
    """Inbound: no AUTH offered or accepted; a local user gets the message (plain ESMTP,
    then again over STARTTLS: ESMTPS); the null sender is accepted."""
    port = smtp_server.smtp_port
    r = smtp_server.raw_smtp(port)
    try:
        assert r.greeting == GREETING
        assert r.ehlo("mx.remote.example") == EHLO_BASE + [b"250-CHUNKING", b"250 STARTTLS"]
        assert r.cmd("AUTH PLAIN " + plain_b64(ALICE, ALICE_PW)) == (
            b"503 5.5.1 Authentication not available"
        )
        assert r.cmd("MAIL FROM:<sender@remote.example>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        assert QUEUED.fullmatch(r.cmd(b"Subject: inbound 1\r\n\r\nhello\r\n."))
        r.starttls()
        assert r.ehlo("mx.remote.example") == EHLO_INBOUND_TLS
        assert r.cmd("MAIL FROM:<>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB.upper()}>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        assert QUEUED.fullmatch(r.cmd(b"Subject: inbound 2\r\n\r\nbounce\r\n."))
        assert r.cmd("QUIT") == BYE
    finally:
        r.close()
    first, second = imap_messages(smtp_server, BOB, BOB_PW)
    _, rest = split_trace(
        first,
        mail_from="sender@remote.example",
        rcpt=BOB,
        with_="ESMTP",
        helo="mx.remote.example",
    )
    assert rest == b"Subject: inbound 1\r\n\r\nhello\r\n"
    _, rest = split_trace(
        second, mail_from="", rcpt=BOB.upper(), with_="ESMTPS", helo="mx.remote.example"
    )
    assert rest == b"Subject: inbound 2\r\n\r\nbounce\r\n"
    assert smtp_server.queue() == []


RELAY_ATTEMPTS = [
    ("<carol@remote.example>", RELAY_DENIED),
    ("<CAROL@REMOTE.EXAMPLE>", RELAY_DENIED),
    ("<bob@sub.example.com>", RELAY_DENIED),
    ("<bob@example.com.evil.example>", RELAY_DENIED),
    ("<@example.com:carol@remote.example>", RELAY_DENIED),
    ("<@example.com,@relay.example:carol@remote.example>", RELAY_DENIED),
    ("<carol%remote.example@example.com>", UNKNOWN_USER),
    ('<"carol@remote.example"@example.com>', UNKNOWN_USER),
    ("<carol!remote.example@example.com>", UNKNOWN_USER),
    ("<remote.example!carol@example.com>", UNKNOWN_USER),
]


def test_inbound_is_never_an_open_relay(smtp_server):
    """Inbound, unauthenticated: every way of naming another domain is refused with a
    5xx, nothing is queued and nobody local gets anything."""
    odd = [("<carol@remote.example@example.com>", None), ("<carol@[192.0.2.1]>", None)]
    for address, expected in RELAY_ATTEMPTS + odd:
        r = smtp_server.raw_smtp(smtp_server.smtp_port)
        try:
            r.ehlo("mx.remote.example")
            assert r.cmd("MAIL FROM:<spammer@remote.example>") == SENDER_OK
            reply = r.cmd(f"RCPT TO:{address}")
            if expected is None:
                assert re.fullmatch(rb"5\d\d 5\.\d\.\d+ .*", reply), (address, reply)
            else:
                assert reply == expected, address
            assert r.cmd("DATA") == NO_VALID_RECIPIENTS
            assert r.cmd("QUIT") == BYE
        finally:
            r.close()
    # Submission without AUTH relays nothing either.
    r = smtp_server.raw_smtp()
    try:
        r.ehlo()
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == AUTH_REQUIRED
        assert r.cmd(f"RCPT TO:<{CAROL}>") == b"503 5.5.1 Need MAIL command first"
    finally:
        r.close()
    assert smtp_server.queue() == []
    assert inbox_count(smtp_server, ALICE) == 0
    assert inbox_count(smtp_server, BOB) == 0


def test_unknown_local_recipients(smtp_server):
    """550 5.1.1 for unknown local users on both services; DATA with no valid recipient
    is 554; a valid one next to unknown ones still gets the message."""
    for port in (smtp_server.smtp_port, smtp_server.submissions_port):
        implicit = port == smtp_server.submissions_port
        r = smtp_server.raw_smtp(port, implicit=implicit)
        try:
            r.ehlo()
            sender = "sender@remote.example"
            if implicit:
                assert r.auth_plain(ALICE, ALICE_PW) == AUTH_OK
                sender = ALICE
            assert r.cmd(f"MAIL FROM:<{sender}>") == SENDER_OK
            assert r.cmd("RCPT TO:<nobody@example.com>") == UNKNOWN_USER
            assert r.cmd("RCPT TO:<nobody@EXAMPLE.com>") == UNKNOWN_USER
            assert r.cmd("DATA") == NO_VALID_RECIPIENTS
            assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
            assert r.cmd("DATA") == START_DATA
            assert QUEUED.fullmatch(r.cmd(b"Subject: known\r\n\r\nx\r\n."))
            assert r.cmd("QUIT") == BYE
        finally:
            r.close()
    assert inbox_count(smtp_server, BOB) == 2
    assert smtp_server.queue() == []


def test_postmaster_without_domain_is_accepted(smtp_server):
    """RFC 5321 §4.5.1: `RCPT TO:<Postmaster>` (no domain) MUST be supported; here it
    reaches the postmaster of the local domain, whose account the node made itself."""
    assert inbox_count(smtp_server, "postmaster@example.com") == 0
    r = smtp_server.raw_smtp(smtp_server.smtp_port)
    try:
        r.ehlo("mx.remote.example")
        assert r.cmd("MAIL FROM:<sender@remote.example>") == SENDER_OK
        assert r.cmd("RCPT TO:<postmaster@example.com>") == RECIPIENT_OK
        assert r.cmd("RSET") == OK
        assert r.cmd("MAIL FROM:<sender@remote.example>") == SENDER_OK
        assert r.cmd("RCPT TO:<Postmaster>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        assert QUEUED.fullmatch(r.cmd(b"Subject: hello postmaster\r\n\r\nx\r\n."))
        assert r.cmd("QUIT") == BYE
    finally:
        r.close()
    assert inbox_count(smtp_server, "postmaster@example.com") == 1


# --------------------------------------------------------------------------------------
# Limits and refusals


def test_size_limit(make_smtp_server):
    """SIZE (RFC 1870): the advertised limit, SIZE= above it refused at MAIL, a message
    above it refused after its content (DATA and BDAT); exactly the limit passes."""
    limit = 2000
    server = with_users(make_smtp_server(smtp_extra=f"max_message_size = {limit}"))
    exact = b"Subject: fits\r\n\r\n" + b"x" * (limit - 19) + b"\r\n"
    assert len(exact) == limit
    over = exact[:-2] + b"y\r\n"
    r = server.raw_smtp(implicit=True)
    try:
        ehlo = r.ehlo()
        assert ehlo[2] == b"250-SIZE %d" % limit
        assert r.auth_plain(ALICE, ALICE_PW) == AUTH_OK
        assert r.cmd(f"MAIL FROM:<{ALICE}> SIZE={limit + 1}") == DECLARED_TOO_BIG
        assert r.cmd(f"MAIL FROM:<{ALICE}> SIZE={limit}") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        r.send(b".." + over[1:] if over.startswith(b".") else over)
        assert r.cmd(".") == TOO_BIG
        # The transaction is over; the session is not.
        assert r.cmd(f"RCPT TO:<{BOB}>") == b"503 5.5.1 Need MAIL command first"
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        r.send(b"BDAT %d LAST\r\n%s" % (len(over), over))
        assert r.reply() == [TOO_BIG]
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        r.send(exact)
        assert QUEUED.fullmatch(r.cmd("."))
        assert r.cmd("QUIT") == BYE
    finally:
        r.close()
    [got] = imap_messages(server, BOB, BOB_PW)
    _, rest = split_trace(got, mail_from=ALICE, rcpt=BOB)
    assert rest == exact
    # Inbound has the same limit.
    r = server.raw_smtp(server.smtp_port)
    try:
        assert r.ehlo()[2] == b"250-SIZE %d" % limit
        assert r.cmd(f"MAIL FROM:<x@remote.example> SIZE={10**9}") == DECLARED_TOO_BIG
    finally:
        r.close()


def test_max_recipients(make_smtp_server):
    """Past max_recipients: 452 4.5.3 (RFC 5321 §4.5.3.1.10); a repeated recipient is
    not counted twice; the message goes to the accepted ones once each."""
    server = with_users(make_smtp_server(smtp_extra="max_recipients = 2"))
    server.add_user("carl@example.com", "carl-Smtp-4")
    r = server.raw_smtp(implicit=True)
    try:
        r.ehlo()
        assert r.auth_plain(ALICE, ALICE_PW) == AUTH_OK
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        assert r.cmd(f"RCPT TO:<{ALICE}>") == RECIPIENT_OK
        assert r.cmd("RCPT TO:<carl@example.com>") == b"452 4.5.3 Too many recipients"
        assert r.cmd("DATA") == START_DATA
        assert QUEUED.fullmatch(r.cmd(b"Subject: two\r\n\r\nx\r\n."))
    finally:
        r.close()
    assert inbox_count(server, BOB) == 1
    assert inbox_count(server, ALICE) == 1
    assert inbox_count(server, "carl@example.com") == 0


def test_submission_refusals(smtp_server):
    """AUTH before TLS 538, MAIL before AUTH 530, a wrong password 535, another sender
    than the login 553 (the null sender too), AUTH inside a transaction 503."""
    r = smtp_server.raw_smtp()
    try:
        assert r.greeting == GREETING
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == b"503 5.5.1 Send EHLO or HELO first"
        assert r.ehlo() == EHLO_PLAIN_SECURE
        assert r.cmd("AUTH PLAIN " + plain_b64(ALICE, ALICE_PW)) == ENCRYPTION_REQUIRED
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == AUTH_REQUIRED
        r.starttls()
        assert r.ehlo() == EHLO_TLS_SUBMISSION
        assert r.cmd(f"MAIL FROM:<{ALICE}>") == AUTH_REQUIRED
        assert r.auth_plain(ALICE, "wrong") == BAD_CREDENTIALS
        assert r.cmd("AUTH CRAM-MD5") == b"504 5.5.4 Unrecognized authentication type"
        assert r.auth_plain(ALICE, ALICE_PW) == AUTH_OK
        assert r.cmd(f"MAIL FROM:<{BOB}>") == NOT_OWNED
        assert r.cmd("MAIL FROM:<>") == NOT_OWNED
        assert r.cmd("MAIL FROM:<Alice@Example.COM>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        assert QUEUED.fullmatch(r.cmd(b"Subject: case\r\n\r\nx\r\n."))
        assert r.cmd("QUIT") == BYE
    finally:
        r.close()
    [got] = imap_messages(smtp_server, BOB, BOB_PW)
    _, rest = split_trace(got, mail_from="Alice@Example.COM", rcpt=BOB)
    assert rest == b"Subject: case\r\n\r\nx\r\n"


def test_bad_commands_until_the_error_limit(smtp_server):
    """Client mistakes get 5xx with an enhanced status code and the session goes on; the
    one past max_errors (default 10) gets its reply, then 421 and the connection
    closes."""
    mistakes = [
        ("XYZZY", UNKNOWN_COMMAND),
        ("EXPN staff", b"502 5.5.1 Command not implemented"),
        ("EHLO", b"501 5.5.4 Syntax: EHLO domain"),
        ("MAIL FROM:<sender@remote.example>", b"503 5.5.1 Send EHLO or HELO first"),
        ("HELO mx.remote.example", b"250 " + SMTP_HOSTNAME.encode()),
        ("RCPT TO:<bob@example.com>", b"503 5.5.1 Need MAIL command first"),
        ("MAIL FROM:sender@remote.example", None),
        ("MAIL FROM:<sender@remote.example> FOO=BAR", b"555 5.5.4 Unsupported parameter FOO=BAR"),
        ("MAIL FROM:<sender@remote.example>", SENDER_OK),
        ("MAIL FROM:<sender@remote.example>", b"503 5.5.1 Sender already specified"),
        ("RCPT TO:<>", b"501 5.1.3 Invalid recipient address"),
        ("NOOP", OK),
        ("NOOP " + "x" * 3000, b"500 5.5.6 Line too long"),
        ("VRFY bob", b"252 2.5.0 Cannot VRFY user, but will accept message"),
    ]
    r = smtp_server.raw_smtp(smtp_server.smtp_port)
    errors = 0
    try:
        for command, expected in mistakes:
            reply = r.cmd(command)
            if expected is None:
                assert re.fullmatch(rb"501 5\.\d\.\d+ .+", reply), (command, reply)
            else:
                assert reply == expected, command
            if reply[:1] in (b"4", b"5"):
                errors += 1
        assert errors == 10
        # Still open at the limit.
        assert r.cmd("NOOP") == OK
        assert r.cmd("FOO") == UNKNOWN_COMMAND
        assert r.reply() == [TOO_MANY_ERRORS]
        assert r.at_eof()
    finally:
        r.close()


def test_helo_session_is_traced_as_smtp(smtp_server):
    """RFC 5321 §4.4 and the IANA mail transmission types (RFC 3848): a message received
    after HELO, not EHLO, came WITH "SMTP", not "ESMTP"."""
    r = smtp_server.raw_smtp(smtp_server.smtp_port)
    try:
        assert r.cmd("HELO mx.remote.example") == f"250 {SMTP_HOSTNAME}".encode()
        assert r.cmd("MAIL FROM:<sender@remote.example>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        assert QUEUED.fullmatch(r.cmd(b"Subject: helo\r\n\r\nx\r\n."))
    finally:
        r.close()
    [got] = imap_messages(smtp_server, BOB, BOB_PW)
    _, rest = split_trace(
        got,
        mail_from="sender@remote.example",
        rcpt=BOB,
        with_="SMTP",
        helo="mx.remote.example",
    )
    assert rest == b"Subject: helo\r\n\r\nx\r\n"


def test_command_limit(make_smtp_server):
    """max_commands counts junk commands only: many more messages than the limit pass
    on one connection (each with an RSET before it, as a cached connection's client
    sends), and past the limit of junk since the last message the session ends with
    421."""
    server = make_smtp_server(smtp_extra="max_commands = 4")
    server.add_user(BOB, BOB_PW)
    r = server.raw_smtp(server.smtp_port)
    try:
        assert r.ehlo()[-1] == b"250 STARTTLS"
        for n in range(12):
            assert r.cmd("RSET") == OK
            assert r.cmd("MAIL FROM:<list@remote.example>") == SENDER_OK
            assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
            assert r.cmd("DATA") == START_DATA
            assert QUEUED.fullmatch(r.cmd(f"Subject: list {n}\r\n\r\nx\r\n.".encode()))
        for _ in range(4):
            assert r.cmd("NOOP") == OK
        assert r.cmd("NOOP") == b"421 4.7.0 Too many commands, closing connection"
        assert r.at_eof()
    finally:
        r.close()


def test_shutdown_says_421(smtp_server):
    """SIGTERM: open SMTP sessions get 421 4.3.2 and are closed; the server exits 0; a
    message accepted before is kept."""
    r = smtp_server.raw_smtp(smtp_server.smtp_port)
    idle = smtp_server.raw_smtp(implicit=True)
    try:
        r.ehlo()
        assert r.cmd("MAIL FROM:<sender@remote.example>") == SENDER_OK
        assert r.cmd(f"RCPT TO:<{BOB}>") == RECIPIENT_OK
        assert r.cmd("DATA") == START_DATA
        assert QUEUED.fullmatch(r.cmd(b"Subject: kept\r\n\r\nx\r\n."))
        assert r.cmd("MAIL FROM:<sender@remote.example>") == SENDER_OK
        smtp_server.stop()
        assert r.reply() == [b"421 4.3.2 Service shutting down"]
        assert r.at_eof()
        assert idle.reply() == [b"421 4.3.2 Service shutting down"]
        assert idle.at_eof()
    finally:
        r.close()
        idle.close()
    smtp_server.start()
    [got] = imap_messages(smtp_server, BOB, BOB_PW)
    _, rest = split_trace(
        got, mail_from="sender@remote.example", rcpt=BOB, with_="ESMTP"
    )
    assert rest == b"Subject: kept\r\n\r\nx\r\n"


# --------------------------------------------------------------------------------------
# Remote recipients: queue, relay, bounces


def queue_empty(server: SmtpServer):
    return server.queue() == []


def bounce_parts(message: bytes) -> dict:
    """The parts of an RFC 3464 bounce (RFC 6522 multipart/report), split by hand along
    the boundary so that their bytes can be checked, and its fields checked for form."""
    msg = parse(message)
    header = message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    for line in (
        f"From: Mail Delivery System <MAILER-DAEMON@{SMTP_HOSTNAME}>",
        f"To: <{ALICE}>",
        "Subject: Undelivered Mail Returned to Sender",
        "MIME-Version: 1.0",
        "Auto-Submitted: auto-replied",
    ):
        assert line.encode() in header, (line, header)
    assert re.fullmatch(DATE, msg["Date"]), msg["Date"]
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    boundary = msg.get_param("boundary").encode()
    body = message.split(b"\r\n\r\n", 1)[1]
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n"), body[-200:]
    pieces = body[: -(len(boundary) + 8)].split(b"\r\n--" + boundary + b"\r\n")
    assert pieces[0].startswith(b"--" + boundary + b"\r\n")
    pieces[0] = pieces[0][len(boundary) + 4 :]
    parts = []
    for piece in pieces:
        head, _, content = piece.partition(b"\r\n\r\n")
        parts.append((head, content))
    assert [head for head, _ in parts] == [
        b"Content-Type: text/plain; charset=us-ascii",
        b"Content-Type: message/delivery-status",
        b"Content-Type: text/rfc822-headers",
    ]
    blocks = parts[1][1].split(b"\r\n\r\n")
    assert blocks[0] == f"Reporting-MTA: dns; {SMTP_HOSTNAME}".encode()
    recipients = []
    for block in blocks[1:]:
        lines = block.rstrip(b"\r\n").decode().split("\r\n")
        recipients.append(dict(line.split(": ", 1) for line in lines))
    return {
        "msg": msg,
        "text": parts[0][1].decode(),
        "recipients": recipients,
        "headers": parts[2][1],
    }


def test_relay_delivers_to_the_smarthost(make_smtp_server, sinks):
    """Mail for a remote domain is queued and handed to [smtp.relay]: the sink gets the
    envelope and exactly the sent bytes behind one Received header; the local recipient
    of the same message gets it in the INBOX; the queue is empty afterwards."""
    sink = sinks()
    server = with_users(make_smtp_server(relay_port=sink.port))
    dots = crlf((CORPUS_DIR / "017-dot-stuffing.eml").read_bytes())
    latin = crlf((CORPUS_DIR / "003-latin1-8bit.eml").read_bytes())
    first = submit(server, dots, [CAROL, BOB, "dave@other.example"])
    poll("the first relayed message", lambda: len(sink.received()) >= 1)
    second = submit(server, latin, [CAROL], mail_options=["BODY=8BITMIME"])
    poll("the second relayed message", lambda: len(sink.received()) >= 2)
    poll("an empty queue", lambda: queue_empty(server))
    one, two = sink.received()
    assert one["helo"] == SMTP_HOSTNAME
    assert one["mail"] == f"MAIL FROM:<{ALICE}>".encode()
    assert one["rcpts"] == [CAROL, "dave@other.example"]
    queue_id, rest = split_trace(one["data"], mail_from=ALICE, rcpt=None, return_path=False)
    assert queue_id == first
    assert rest == dots
    assert two["mail"] == f"MAIL FROM:<{ALICE}> BODY=8BITMIME".encode()
    assert two["rcpts"] == [CAROL]
    queue_id, rest = split_trace(two["data"], mail_from=ALICE, rcpt=None, return_path=False)
    assert queue_id == second
    assert rest == latin
    [local] = imap_messages(server, BOB, BOB_PW)
    _, rest = split_trace(local, mail_from=ALICE, rcpt=BOB)
    assert rest == dots
    assert inbox_count(server, ALICE) == 0
    assert len(sink.received()) == 2


def test_relay_keeps_smtputf8(make_smtp_server, sinks):
    """RFC 6531 §3.4: a transaction with a non-ASCII address must be relayed with the
    SMTPUTF8 parameter (the sink offers it)."""
    sink = sinks()
    server = with_users(make_smtp_server(relay_port=sink.port))
    message = "Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\ncafé\r\n".encode()
    s = server.smtp_login(ALICE, ALICE_PW)
    try:
        assert s.mail(ALICE, ["SMTPUTF8", "BODY=8BITMIME"]) == (250, SENDER_OK[4:])
        assert s.rcpt("josé@remote.example") == (250, RECIPIENT_OK[4:])
        code, text = s.data(message)
        assert QUEUED.fullmatch(b"%d %s" % (code, text))
    finally:
        s.close()
    poll("the relayed message", lambda: sink.received())
    [got] = sink.received()
    assert got["rcpts"] == ["josé@remote.example"]
    assert b" SMTPUTF8" in got["mail"], got["mail"]


def test_relay_never_sends_8bit_to_a_smarthost_without_8bitmime(make_smtp_server, sinks):
    """RFC 6152 §3: 8-bit content may only go to a server that offers 8BITMIME. A
    smarthost offering nothing gets neither BODY=8BITMIME nor 8-bit bytes: the message is
    converted, or it bounces to the sender."""
    sink = sinks(extensions=())
    server = with_users(make_smtp_server(relay_port=sink.port))
    latin = crlf((CORPUS_DIR / "003-latin1-8bit.eml").read_bytes())
    submit(server, latin, [CAROL], mail_options=["BODY=8BITMIME"])
    poll(
        "a relayed message or a bounce",
        lambda: sink.received() or inbox_count(server, ALICE) == 1,
    )
    for got in sink.received():
        assert b"BODY=8BITMIME" not in got["mail"], got["mail"]
        assert all(b < 0x80 for b in got["data"]), "8-bit data sent without 8BITMIME"


def test_relay_down_then_flush(make_smtp_server, sinks):
    """Smarthost down: the message stays queued with attempts and the connection error;
    once the smarthost is up on that port, `queue flush` delivers it at once."""
    port = free_port()
    server = with_users(make_smtp_server(relay_port=port))
    message = b"Subject: later\r\n\r\nqueued while the relay is down\r\n"
    before = time.time()
    submit(server, message, [CAROL])

    def attempted():
        entries = server.queue()
        return entries if entries and entries[0]["recipients"][0]["attempts"] >= 1 else None

    [entry] = poll("a failed attempt", attempted)
    assert entry["from"] == ALICE
    # The size counts the Received header too.
    assert entry["size"] > len(message)
    queued = email.utils.parsedate_to_datetime(entry["queued"]).timestamp()
    assert before - 2 <= queued <= time.time() + 1
    [rcpt] = entry["recipients"]
    assert rcpt["to"] == CAROL
    assert rcpt["attempts"] >= 1
    assert f"127.0.0.1:{port}" in rcpt["last_error"], rcpt
    assert inbox_count(server, ALICE) == 0

    sink = sinks(port)
    assert server.cli_ok("queue", "flush") == "1 queued message due now\n"
    poll("the relayed message", lambda: sink.received(), timeout=3.0)
    poll("an empty queue", lambda: queue_empty(server), timeout=3.0)
    [got] = sink.received()
    assert got["rcpts"] == [CAROL]
    _, rest = split_trace(got["data"], mail_from=ALICE, rcpt=None, return_path=False)
    assert rest == message
    assert len(got["data"]) == entry["size"]
    assert inbox_count(server, ALICE) == 0


def test_relay_rejects_recipient_bounces(make_smtp_server, sinks):
    """A 550 from the smarthost: an RFC 3464 bounce in the sender's INBOX at once, and
    nothing left in the queue."""
    sink = sinks(rcpt_reply=b"550 5.1.1 No such user here")
    server = with_users(make_smtp_server(relay_port=sink.port))
    message = (
        b"From: alice@example.com\r\nTo: carol@remote.example\r\n"
        b"Subject: to carol\r\nMessage-ID: <m1@example.com>\r\n\r\nhello carol\r\n"
    )
    submit(server, message, [CAROL])
    poll("the bounce", lambda: inbox_count(server, ALICE) == 1)
    poll("an empty queue", lambda: queue_empty(server))
    assert sink.received() == []
    [dsn] = imap_messages(server, ALICE, ALICE_PW)
    parts = bounce_parts(dsn)
    [rcpt] = parts["recipients"]
    assert rcpt["Final-Recipient"] == f"rfc822; {CAROL}"
    assert rcpt["Action"] == "failed"
    assert rcpt["Status"] == "5.1.1"
    assert rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user here"
    assert CAROL in parts["text"] and "550 5.1.1 No such user here" in parts["text"]
    # The returned headers are the message's as queued: Received first.
    headers = parts["headers"]
    _, rest = split_trace(headers, mail_from=ALICE, rcpt=None, return_path=False)
    assert rest == message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    assert inbox_count(server, BOB) == 0


def test_relay_temporary_failure_stays_queued(make_smtp_server, sinks):
    """A 451 on RCPT is a temporary failure: the message stays queued with the
    smarthost's reply as last_error, and no bounce; once the smarthost takes it,
    `queue flush` delivers it."""
    sink = sinks(rcpt_reply=b"451 4.3.0 Try again later")
    server = with_users(make_smtp_server(relay_port=sink.port))
    message = b"Subject: t\r\n\r\nx\r\n"
    submit(server, message, [CAROL])

    def attempted():
        entries = server.queue()
        return entries if entries and entries[0]["recipients"][0]["attempts"] >= 1 else None

    [entry] = poll("a failed attempt", attempted)
    assert entry["recipients"][0]["last_error"] == "451 4.3.0 Try again later"
    assert sink.received() == []
    assert inbox_count(server, ALICE) == 0
    sink.rcpt_reply = b"250 2.1.5 Ok"
    assert server.cli_ok("queue", "flush") == "1 queued message due now\n"
    poll("the relayed message", lambda: sink.received())
    poll("an empty queue", lambda: queue_empty(server))
    [got] = sink.received()
    _, rest = split_trace(got["data"], mail_from=ALICE, rcpt=None, return_path=False)
    assert rest == message
    assert inbox_count(server, ALICE) == 0


def test_relay_mixed_outcomes(make_smtp_server, sinks):
    """One message, three remote recipients: the smarthost takes one, refuses one for
    good and one for now. The first is delivered, the second bounces (alone in the
    report), the third stays queued."""
    replies = {
        CAROL: b"250 2.1.5 Ok",
        "dave@other.example": b"550 5.1.1 Unknown dave",
        "erin@other.example": b"452 4.2.2 Mailbox full",
    }
    sink = sinks(rcpt_reply=lambda address: replies[address])
    server = with_users(make_smtp_server(relay_port=sink.port))
    message = b"Subject: three\r\n\r\nto three\r\n"
    submit(server, message, list(replies))
    poll("the relayed message", lambda: sink.received())
    poll("the bounce", lambda: inbox_count(server, ALICE) == 1)

    def retried_later():
        entries = server.queue()
        return entries if entries and entries[0]["recipients"][0]["attempts"] >= 1 else None

    [entry] = poll("erin still queued", retried_later)
    assert [r["to"] for r in entry["recipients"]] == ["erin@other.example"]
    assert entry["recipients"][0]["last_error"] == "452 4.2.2 Mailbox full"
    [got] = sink.received()
    assert got["rcpts"] == [CAROL]
    _, rest = split_trace(got["data"], mail_from=ALICE, rcpt=None, return_path=False)
    assert rest == message
    [dsn] = imap_messages(server, ALICE, ALICE_PW)
    [rcpt] = bounce_parts(dsn)["recipients"]
    assert rcpt["Final-Recipient"] == "rfc822; dave@other.example"
    assert rcpt["Status"] == "5.1.1"
    assert rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 Unknown dave"


def test_relay_session_ends_with_quit(make_smtp_server, sinks):
    """RFC 5321 §4.1.1.10: the client MUST NOT close the channel before sending QUIT;
    that holds for a relay session in which every recipient was refused too."""
    sink = sinks(rcpt_reply=b"550 5.1.1 No such user here")
    server = with_users(make_smtp_server(relay_port=sink.port))
    submit(server, b"Subject: q\r\n\r\nx\r\n", [CAROL])
    poll("the bounce", lambda: inbox_count(server, ALICE) == 1)
    [commands] = poll("the relay session to end", lambda: sink.sessions)
    assert commands[:3] == [
        f"EHLO {SMTP_HOSTNAME}\r\n".encode(),
        f"MAIL FROM:<{ALICE}>\r\n".encode(),
        f"RCPT TO:<{CAROL}>\r\n".encode(),
    ]
    assert commands[-1] == b"QUIT\r\n", commands


def test_queue_lifetime_expiry_bounces(make_smtp_server):
    """Smarthost down past queue_lifetime_secs: the message bounces with the last error
    and leaves the queue."""
    port = free_port()
    server = with_users(
        make_smtp_server(relay_port=port, smtp_extra="queue_lifetime_secs = 1")
    )
    message = b"Subject: expires\r\nMessage-ID: <exp@example.com>\r\n\r\nx\r\n"
    submit(server, message, [CAROL])
    poll("the bounce", lambda: inbox_count(server, ALICE) == 1, timeout=15)
    poll("an empty queue", lambda: queue_empty(server))
    [dsn] = imap_messages(server, ALICE, ALICE_PW)
    parts = bounce_parts(dsn)
    [rcpt] = parts["recipients"]
    assert rcpt["Final-Recipient"] == f"rfc822; {CAROL}"
    assert rcpt["Action"] == "failed"
    assert re.fullmatch(r"5\.\d{1,3}\.\d{1,3}", rcpt["Status"]), rcpt
    assert f"127.0.0.1:{port}" in rcpt["Diagnostic-Code"], rcpt
    assert b"Message-ID: <exp@example.com>\r\n" in parts["headers"]


def test_no_relay_configured_bounces_at_once(smtp_server):
    """Without [smtp.relay], authenticated mail for another domain is accepted and
    bounced straight away; the local recipient of the same message still gets it."""
    message = b"Subject: nowhere\r\n\r\nno relay\r\n"
    submit(smtp_server, message, [CAROL, BOB])
    poll("the bounce", lambda: inbox_count(smtp_server, ALICE) == 1)
    poll("an empty queue", lambda: queue_empty(smtp_server))
    [dsn] = imap_messages(smtp_server, ALICE, ALICE_PW)
    parts = bounce_parts(dsn)
    [rcpt] = parts["recipients"]
    assert rcpt["Final-Recipient"] == f"rfc822; {CAROL}"
    assert rcpt["Status"] == "5.4.4"
    assert rcpt["Diagnostic-Code"] == (
        "smtp; 550 5.4.4 No relay is configured for remote domains"
    )
    [local] = imap_messages(smtp_server, BOB, BOB_PW)
    _, rest = split_trace(local, mail_from=ALICE, rcpt=BOB)
    assert rest == message


def test_queue_delete(make_smtp_server):
    """`queue delete ID` removes a queued message without a bounce; a second delete
    fails."""
    port = free_port()
    server = with_users(make_smtp_server(relay_port=port))
    submit(server, b"Subject: one\r\n\r\n1\r\n", [CAROL])
    submit(server, b"Subject: two\r\n\r\n2\r\n", ["dave@other.example"])
    entries = poll("two queued messages", lambda: len(server.queue()) == 2 and server.queue())
    first, second = entries
    assert [e["recipients"][0]["to"] for e in entries] == [CAROL, "dave@other.example"]
    assert first["id"] < second["id"]
    out = server.cli_ok("queue", "delete", str(first["id"]))
    assert out == f"deleted queued message {first['id']}\n"
    assert [e["id"] for e in server.queue()] == [second["id"]]
    again = server.cli("queue", "delete", str(first["id"]))
    assert again.returncode != 0
    assert f"no queued message {first['id']}".encode() in again.stderr
    assert inbox_count(server, ALICE) == 0
    # The queue is durable: after a restart the other message is still there.
    server.restart()
    [entry] = server.queue()
    assert entry["id"] == second["id"]
    assert entry["recipients"][0]["to"] == "dave@other.example"
