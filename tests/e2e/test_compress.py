"""IMAP COMPRESS=DEFLATE (RFC 4978) through the real server, with a client that speaks
it as Thunderbird and K-9 Mail do (imaplib has no COMPRESS): after the tagged OK to
COMPRESS DEFLATE it deflates each command (raw DEFLATE, sync-flushed) and inflates all
it reads. A session over plain TCP and over implicit TLS signs in, compresses, reads a
message of several MB (streamed from the store) byte for byte, sees a delivery in IDLE
and logs out; a corrupt stream from the client ends only its own session; at shutdown
the goodbye is compressed too; a session proxied through a frontend to the mailbox's
home node is compressed end to end, down to the frontend's goodbye when the home is
lost. One test measures the compression of a
FETCH of the corpus and the server's CPU for it, and prints the figures (run with -s);
nothing is asserted on time.
"""

from __future__ import annotations

import base64
import random
import re
import socket
import time
import zlib
from pathlib import Path

import pytest

from conftest import IO_TIMEOUT, LITERAL_AT_END, crlf, find_binary, tls_context
from test_cluster import IP, PASSWORD, Cluster, pick_port_base

ALICE = "alice@example.com"
ALICE_PW = "alice-Deflate-1"
IMAPS_OFFSET = 3  # scripts/cluster-up.sh: pop3, pop3s, imap, imaps, ...
HOME_LOST = (
    b"* BYE [UNAVAILABLE] The server that holds your mailbox is unavailable, "
    b"please reconnect later"
)


def big_message(size: int) -> bytes:
    """About `size` bytes: a text part and a base64 attachment of random bytes, so the
    message is partly compressible, as mail is."""
    rng = random.Random(4978)
    words = [b"quarterly", b"report", b"meeting", b"mailbox", b"forecast", b"dublin"]
    text = b"".join(
        b" ".join(rng.choice(words) for _ in range(12)) + b"\r\n" for _ in range(size // 200)
    )
    attachment = base64.encodebytes(rng.randbytes(size // 2)).replace(b"\n", b"\r\n")
    return (
        b"From: big@remote.example\r\nTo: alice@example.com\r\nSubject: big\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n" + text +
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"--b--\r\n"
    )


class DeflateImap:
    """A byte-level IMAP client with COMPRESS=DEFLATE. Counts the bytes it read off the
    wire and after inflating."""

    def __init__(self, host: str, port: int, *, tls: bool):
        sock = socket.create_connection((host, port), timeout=IO_TIMEOUT)
        self.sock = tls_context().wrap_socket(sock) if tls else sock
        self.buf = bytearray()
        self.n = 0
        self.deflater = None
        self.inflater = None
        self.wire_in = 0
        self.plain_in = 0
        self.greeting = self.line()

    # -- the wire -------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.deflater is not None:
            data = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError(f"connection closed; pending {bytes(self.buf[:300])!r}")
        self.wire_in += len(chunk)
        if self.inflater is not None:
            chunk = self.inflater.decompress(chunk)
        self.plain_in += len(chunk)
        self.buf += chunk

    def _raw_line(self) -> bytes:
        start = 0
        while (end := self.buf.find(b"\r\n", start)) < 0:
            start = max(0, len(self.buf) - 1)
            self._fill()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def line(self) -> bytes:
        """One response line, literals inline (`{n}` CRLF and the n bytes)."""
        out = self._raw_line()
        while m := LITERAL_AT_END.search(out):
            out += b"\r\n" + self._take(int(m.group(1))) + self._raw_line()
        return out

    def at_eof(self) -> bool:
        """Reads until the server closes: True if nothing came before the end."""
        try:
            while True:
                self._fill()
                if self.buf:
                    return False
        except EOFError:
            return not self.buf
        except OSError:
            return not self.buf

    # -- commands -------------------------------------------------------------------

    def cmd(self, text: str) -> tuple[list[bytes], bytes]:
        self.n += 1
        tag = f"c{self.n}"
        self.send(f"{tag} {text}\r\n".encode())
        untagged = []
        while not (line := self.line()).startswith(tag.encode() + b" "):
            untagged.append(line)
        return untagged, line

    def ok(self, text: str) -> list[bytes]:
        untagged, tagged = self.cmd(text)
        assert re.fullmatch(rb"c\d+ OK .*", tagged), (text, untagged, tagged)
        return untagged

    def compress(self) -> None:
        untagged, tagged = self.cmd("COMPRESS DEFLATE")
        assert (untagged, tagged) == ([], f"c{self.n} OK DEFLATE active".encode())
        # RFC 4978 §3: everything after the OK's CRLF is compressed, both ways.
        self.deflater = zlib.compressobj(wbits=-15)
        self.inflater = zlib.decompressobj(wbits=-15)
        behind, self.buf = bytes(self.buf), bytearray()
        self.buf += self.inflater.decompress(behind)

    def fetch_bodies(self, uids: str) -> list[bytes]:
        """The BODY[] of each message, in order."""
        untagged = self.ok(f"UID FETCH {uids} BODY.PEEK[]")
        bodies = []
        for line in untagged:
            m = re.match(rb"\* \d+ FETCH \(UID \d+ BODY\[\] \{(\d+)\}\r\n", line)
            assert m, line[:200]
            bodies.append(line[m.end() : m.end() + int(m.group(1))])
        return bodies

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's threads so far, to the nanosecond (schedstat; the
    tick-counted utime of /proc/PID/stat is too coarse for a FETCH)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that just ended
    return total / 1e9


@pytest.fixture
def node(make_imap_server):
    """A node that allows LOGIN without TLS (for the session over plain TCP)."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    return server


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_compressed_session_fetches_idles_and_logs_out(node, tls):
    message = big_message(6 << 20)
    node.deliver(ALICE, message)
    c = DeflateImap("127.0.0.1", node.imaps_port if tls else node.imap_port, tls=tls)
    try:
        assert b"COMPRESS" not in c.greeting
        _, tagged = c.cmd(f'LOGIN "{ALICE}" "{ALICE_PW}"')
        assert b" COMPRESS=DEFLATE " in tagged, tagged
        c.compress()
        assert c.cmd("COMPRESS DEFLATE")[1].startswith(b"c3 NO [COMPRESSIONACTIVE] ")
        untagged = c.ok("SELECT INBOX")
        assert b"* 1 EXISTS" in untagged, untagged
        # Over STREAM_ABOVE (1 MiB): the literal is streamed from the store.
        wire_before, plain_before = c.wire_in, c.plain_in
        assert c.fetch_bodies("1") == [crlf(message)]
        wire, plain = c.wire_in - wire_before, c.plain_in - plain_before
        assert plain > len(message) and wire < plain * 0.9, (wire, plain)
        # IDLE: a delivery is pushed at once, compressed.
        c.send(b"c9 IDLE\r\n")
        assert c.line() == b"+ idling"
        node.deliver(ALICE, b"Subject: while idling\r\n\r\nhello\r\n")
        assert c.line() == b"* 2 EXISTS"
        assert c.line() == b"* 2 RECENT"
        c.send(b"DONE\r\n")
        assert c.line() == b"c9 OK IDLE terminated"
        c.n = 9
        assert c.fetch_bodies("2") == [b"Subject: while idling\r\n\r\nhello\r\n"]
        untagged, tagged = c.cmd("LOGOUT")
        assert (untagged, tagged) == ([b"* BYE Logging out"], b"c11 OK LOGOUT completed")
        assert c.at_eof()
    finally:
        c.close()
    # The session's last line counts both sides of the compression.
    deadline = time.monotonic() + 5
    while "deflated_out=" not in node.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    ended = [line for line in node.log().splitlines() if "deflated_out=" in line]
    assert len(ended) == 1 and "reason=ServerClosed" in ended[0], ended


def test_a_corrupt_stream_ends_only_that_session(node):
    c = DeflateImap("127.0.0.1", node.imap_port, tls=False)
    other = DeflateImap("127.0.0.1", node.imaps_port, tls=True)
    try:
        c.ok(f'LOGIN "{ALICE}" "{ALICE_PW}"')
        c.compress()
        # A block of the reserved type 11 (RFC 1951 §3.2.3).
        c.sock.sendall(b"\x07not deflate")
        assert c.at_eof()
        other.ok(f'LOGIN "{ALICE}" "{ALICE_PW}"')
        other.compress()
        other.ok("NOOP")
    finally:
        c.close()
        other.close()
    deadline = time.monotonic() + 5
    while "corrupt DEFLATE stream" not in node.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "corrupt DEFLATE stream from the client" in node.log()
    assert "panicked" not in node.log()


def test_shutdown_says_goodbye_compressed(node):
    """At SIGTERM an idling compressed session gets its BYE deflated like the rest."""
    c = DeflateImap("127.0.0.1", node.imaps_port, tls=True)
    try:
        c.ok(f'LOGIN "{ALICE}" "{ALICE_PW}"')
        c.compress()
        c.ok("SELECT INBOX")
        c.send(b"c9 IDLE\r\n")
        assert c.line() == b"+ idling"
        assert node.terminate() == 0
        assert c.line() == b"* BYE Server shutting down"
        assert c.at_eof()
    finally:
        c.close()


ROUNDS = 5
# The corpus's one message with a large base64 attachment (013-large-attachment.eml).
BIG_UID = 13


def test_compression_of_a_corpus_fetch(node, corpus):
    """Figures, not assertions on them: FETCH of every corpus message, ROUNDS times,
    uncompressed (after a first session that warms the caches) and compressed, with the
    bytes on the wire and the server's CPU for each."""
    for uid, (name, message) in enumerate(corpus, start=1):
        node.deliver(ALICE, message)
        assert (uid == BIG_UID) == name.startswith("013-"), name
    pid = node.proc.pid
    figures = {}
    for compressed in (False, False, True):
        c = DeflateImap("127.0.0.1", node.imaps_port, tls=True)
        try:
            c.ok(f'LOGIN "{ALICE}" "{ALICE_PW}"')
            if compressed:
                c.compress()
            c.ok("EXAMINE INBOX")
            # Header listing, as a client fills its message list on opening a folder.
            wire, plain = c.wire_in, c.plain_in
            c.ok("UID FETCH 1:* (FLAGS RFC822.SIZE BODY.PEEK[HEADER])")
            figures[("headers", compressed)] = (c.wire_in - wire, c.plain_in - plain)
            # The messages without the one large base64 attachment.
            wire, plain = c.wire_in, c.plain_in
            c.fetch_bodies(f"1:{BIG_UID - 1},{BIG_UID + 1}:*")
            figures[("text", compressed)] = (c.wire_in - wire, c.plain_in - plain)
            wire, plain, cpu = c.wire_in, c.plain_in, cpu_seconds(pid)
            for _ in range(ROUNDS):
                bodies = c.fetch_bodies("1:*")
                assert bodies == [crlf(m) for _, m in corpus]
            figures[compressed] = (
                (c.wire_in - wire) // ROUNDS,
                (c.plain_in - plain) // ROUNDS,
                (cpu_seconds(pid) - cpu) / ROUNDS,
            )
            c.ok("LOGOUT")
        finally:
            c.close()
    plain_wire, plain_bytes, plain_cpu = figures[False]
    deflated_wire, deflated_bytes, deflated_cpu = figures[True]
    assert plain_bytes == deflated_bytes and deflated_wire < plain_wire
    headers_plain, _ = figures[("headers", False)]
    headers_wire, _ = figures[("headers", True)]
    text_plain, _ = figures[("text", False)]
    text_wire, _ = figures[("text", True)]
    print(
        f"\nFETCH 1:* BODY.PEEK[] of {len(corpus)} corpus messages, "
        f"{plain_bytes} bytes of responses:\n"
        f"  uncompressed: {plain_wire} bytes on the wire, server CPU {plain_cpu:.3f} s\n"
        f"  COMPRESS=DEFLATE: {deflated_wire} bytes on the wire "
        f"({deflated_wire / plain_bytes:.3f} of the plain bytes), "
        f"server CPU {deflated_cpu:.3f} s\n"
        f"  header listing: {headers_plain} -> {headers_wire} bytes "
        f"({headers_wire / headers_plain:.3f})\n"
        f"  all but the base64 attachment: {text_plain} -> {text_wire} bytes "
        f"({text_wire / text_plain:.3f})"
    )


# --------------------------------------------------------------------------------------
# A proxied session: the client reaches d1, its mailbox lives on s2 (the other site)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(find_binary(), tmp_path_factory.mktemp("compress"), pick_port_base())
    try:
        c.up()
        yield c
    finally:
        c.down()


def test_a_proxied_session_is_compressed_end_to_end(cluster):
    user = "deflate-s2@example.com"
    cluster.add_user_ok("d1", user, "s2")
    cluster.wait_for_same_records(["d1", "s2"], 10)
    message = big_message(3 << 20)
    cluster.cli_ok("d1", "deliver", user, input=message)
    c = DeflateImap(IP["d1"], cluster.base + IMAPS_OFFSET, tls=True)
    try:
        c.ok(f"LOGIN {user} {PASSWORD}")
        c.compress()
        c.ok("SELECT INBOX")
        wire_before, plain_before = c.wire_in, c.plain_in
        assert c.fetch_bodies("1") == [crlf(message)]
        wire, plain = c.wire_in - wire_before, c.plain_in - plain_before
        assert wire < plain * 0.9, (wire, plain)
        c.send(b"c9 IDLE\r\n")
        assert c.line() == b"+ idling"
        cluster.cli_ok("s1", "deliver", user, input=b"Subject: idle\r\n\r\nhi\r\n")
        assert c.line() == b"* 2 EXISTS"
        assert c.line() == b"* 2 RECENT"
        # The home is lost: the frontend's goodbye still reads, inflated.
        cluster.kill("s2")
        c.sock.settimeout(15)
        assert c.line() == HOME_LOST
        assert c.at_eof()
    finally:
        c.close()
