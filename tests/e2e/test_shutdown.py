"""SIGTERM under load: a message is either stored and acknowledged, or neither.

Several SMTP senders and IMAP APPEND sessions write as fast as they can; the server is
told to stop in the middle. Every message whose final dot (or APPEND literal) got a
250 / tagged OK must be there after a restart, byte for byte; every message that got
421 / BYE or no answer must not be there (the client will send it again, and a stored
copy would be a duplicate)."""

from __future__ import annotations

import re
import socket
import threading
import time

from conftest import IO_TIMEOUT, RawSmtp, tls_context

BOB = "bob@example.com"
BOB_PW = "bob-Shutdown-1"
QUEUED = re.compile(rb"250 2\.0\.0 Ok: queued as [0-9A-F]{12}")


def body(marker: str) -> bytes:
    return (
        f"Subject: {marker}\r\nMessage-ID: <{marker}@shutdown.test>\r\n\r\n".encode()
        + f"{marker} body line\r\n".encode() * 40
    )


class Ledger:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: set[str] = set()
        self.refused: set[str] = set()
        self.errors: list[str] = []

    def record(self, marker: str, acked: bool) -> None:
        with self.lock:
            (self.acked if acked else self.refused).add(marker)


def smtp_sender(port: int, name: str, ledger: Ledger, stop: threading.Event) -> None:
    try:
        client = RawSmtp(port)
        client.ehlo()
    except (OSError, EOFError):
        return
    n = 0
    try:
        while not stop.is_set():
            n += 1
            marker = f"shutdown-{name}-{n}"
            if client.cmd("MAIL FROM:<sender@remote.example>") != b"250 2.1.0 Sender OK":
                return
            if client.cmd(f"RCPT TO:<{BOB}>") != b"250 2.1.5 Recipient OK":
                return
            if not client.cmd("DATA").startswith(b"354"):
                return
            client.send(body(marker) + b".\r\n")
            try:
                reply = client.reply()[-1]
            except (EOFError, OSError):
                ledger.record(marker, False)
                return
            if QUEUED.fullmatch(reply):
                ledger.record(marker, True)
                continue
            if reply != b"421 4.3.2 Service shutting down":
                ledger.errors.append(f"{marker}: unexpected reply {reply!r}")
            ledger.record(marker, False)
            return
    except (EOFError, OSError):
        return
    finally:
        client.close()


class RawImap:
    def __init__(self, port: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.sock = tls_context().wrap_socket(sock)
        self.buf = b""
        self.line()

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def tagged(self, tag: str) -> bytes:
        while True:
            line = self.line()
            if line.startswith(tag.encode() + b" "):
                return line


def imap_appender(port: int, name: str, ledger: Ledger, stop: threading.Event) -> None:
    try:
        client = RawImap(port)
        client.sock.sendall(f"l LOGIN {BOB} {BOB_PW}\r\n".encode())
        if not client.tagged("l").startswith(b"l OK"):
            ledger.errors.append(f"{name}: login failed")
            return
    except (OSError, EOFError):
        return
    n = 0
    try:
        while not stop.is_set():
            n += 1
            marker = f"shutdown-{name}-{n}"
            data = body(marker)
            client.sock.sendall(f"a{n} APPEND INBOX {{{len(data)}}}\r\n".encode())
            first = client.line()
            if not first.startswith(b"+"):
                return  # BYE before the literal was asked for: nothing sent
            client.sock.sendall(data + b"\r\n")
            try:
                reply = client.tagged(f"a{n}")
            except (EOFError, OSError):
                ledger.record(marker, False)
                return
            ledger.record(marker, reply.startswith(f"a{n} OK".encode()))
    except (EOFError, OSError):
        return
    finally:
        client.sock.close()


def stored_markers(server) -> dict[str, bytes]:
    m = server.imap_login(BOB, BOB_PW)
    try:
        typ, _ = m.select("INBOX", readonly=True)
        assert typ == "OK"
        typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK", data
        out: dict[str, bytes] = {}
        for item in data:
            if isinstance(item, tuple):
                raw = item[1]
                found = re.search(rb"Subject: (shutdown-[\w-]+)\r\n", raw)
                assert found, raw[:200]
                marker = found.group(1).decode()
                assert marker not in out, f"{marker} stored twice"
                out[marker] = raw
        return out
    finally:
        m.logout()


def test_sigterm_under_load_stores_exactly_what_was_acknowledged(make_smtp_server):
    server = make_smtp_server()
    server.add_user(BOB, BOB_PW)
    ledger = Ledger()
    stop = threading.Event()
    threads = [
        threading.Thread(target=smtp_sender, args=(server.smtp_port, f"s{i}", ledger, stop))
        for i in range(4)
    ] + [
        threading.Thread(target=imap_appender, args=(server.imaps_port, f"i{i}", ledger, stop))
        for i in range(3)
    ]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.stop()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not ledger.errors, ledger.errors
    assert len(ledger.acked) >= 20, f"too little load: {len(ledger.acked)} acknowledged"
    server.start()
    stored = stored_markers(server)
    lost = sorted(ledger.acked - stored.keys())
    unacknowledged = sorted(stored.keys() - ledger.acked)
    assert not lost, f"acknowledged but not stored: {lost}"
    assert not unacknowledged, (
        f"stored without an acknowledgement (refused: {sorted(ledger.refused & stored.keys())}):"
        f" {unacknowledged}"
    )
    for marker, raw in stored.items():
        assert raw.endswith(body(marker)), marker
