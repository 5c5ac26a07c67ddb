"""Fixtures and helpers for the end-to-end tests: they start the real `portico` binary
on free loopback ports in a temporary directory and talk to it over POP3 (poplib, raw
sockets and curl) and through its command line.

The binary is taken from $PORTICO_BIN (scripts/test.sh sets it), else from
<repo>/target/debug/portico. The corpus is tests/corpus in the repository.
"""

from __future__ import annotations

import base64
import os
import poplib
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORPUS_DIR = Path(__file__).resolve().parents[1] / "corpus"

START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0
IO_TIMEOUT = 15.0
LOCK_RETRY_SECS = 5.0
LOG_TAIL_LINES = 200

SHUTTING_DOWN = b"-ERR [SYS/TEMP] Server shutting down"
AUTH_FAILED = b"-ERR [AUTH] Authentication failed"
PLAINTEXT_REFUSED = (
    b"-ERR [SYS/PERM] Plaintext authentication disallowed without TLS, use STLS"
)
POP3_DISABLED = b"-ERR [SYS/PERM] POP3 access is disabled for this account"
IN_USE = b"-ERR [IN-USE] Mailbox is locked by another POP3 session"


# --------------------------------------------------------------------------------------
# Plumbing


def free_port() -> int:
    """A loopback port that was free a moment ago (bind to port 0, then close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dial(port: int, source: str | None = None, timeout: float = IO_TIMEOUT):
    """A connection to 127.0.0.1:`port`, from the loopback address `source` if given
    (the server listens on 127.0.0.1 only, but any 127.0.0.0/8 address can reach it, so
    "another client address" is a real one)."""
    return socket.create_connection(
        ("127.0.0.1", port),
        timeout=timeout,
        source_address=(source, 0) if source else None,
    )


def tls_context() -> ssl.SSLContext:
    """Client context for the server's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def crlf(data: bytes) -> bytes:
    """What the store keeps of a delivered message: every bare LF made CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def wire_lines(stored: bytes) -> list[bytes]:
    """The lines poplib returns for a RETR of `stored`: the server ends the message with
    CRLF when it does not already, and poplib drops the line ends and the stuffing."""
    if not stored.endswith(b"\r\n"):
        stored += b"\r\n"
    return stored[:-2].split(b"\r\n")


def top_bytes(stored: bytes, n: int) -> bytes:
    """RFC 1939 §7: the header, the empty line after it, then `n` body lines (a message
    without an empty line is all header)."""
    sep = stored.find(b"\r\n\r\n")
    if sep < 0:
        return stored
    pos = sep + 4
    for _ in range(n):
        lf = stored.find(b"\n", pos)
        if lf < 0:
            return stored
        pos = lf + 1
    return stored[:pos]


def stuff(stored: bytes) -> bytes:
    """RFC 1939 §3 multi-line body as it must appear on the wire, terminator included."""
    out = b"".join(
        (b"." + line if line.startswith(b".") else line)
        for line in stored.splitlines(keepends=True)
    )
    if stored and not stored.endswith(b"\r\n"):
        out += b"\r\n"
    return out + b".\r\n"


def messages(n: int) -> str:
    """How the server counts messages: "1 message", "3 messages"."""
    return "1 message" if n == 1 else f"{n} messages"


def plain_b64(user: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(
        f"{authzid}\0{user}\0{password}".encode("utf-8")
    ).decode("ascii")


def load_corpus() -> list[tuple[str, bytes]]:
    if not CORPUS_DIR.is_dir():
        pytest.fail(f"message corpus not found at {CORPUS_DIR}", pytrace=False)
    files = sorted(CORPUS_DIR.glob("*.eml"))
    if len(files) < 40:
        pytest.fail(
            f"message corpus at {CORPUS_DIR} has only {len(files)} .eml files",
            pytrace=False,
        )
    return [(f.name, f.read_bytes()) for f in files]


def find_binary() -> Path:
    env = os.environ.get("PORTICO_BIN")
    path = Path(env) if env else REPO / "target" / "debug" / "portico"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"portico binary not found at {path} "
            "(build it with `cargo build --bins` and set PORTICO_BIN)",
            pytrace=False,
        )
    return path.resolve()


# --------------------------------------------------------------------------------------
# The server under test


CONFIG_TEMPLATE = """\
cluster = "test"

[[site]]
name = "s"

[[node]]
name = "n"
site = "s"
roles = ["frontend", "backend", "directory"]
data_dir = "{data_dir}"

[node.listen]
pop3 = "127.0.0.1:{pop3}"
pop3s = "127.0.0.1:{pop3s}"

[security]
failed_login_delay_ms = 10
max_failed_login_delay_ms = 100

[pop3]
enabled = true
login = "{login}"
"""



def closed_by_server(client, timeout: float, *, strict: bool) -> bool:
    """Reads `client.sock` (into `client.buf`) until the server closes it: True then
    (with `strict`, only if nothing arrived first), False if it stays open `timeout`
    seconds. A reset, or a TLS close without close_notify, counts as closed."""
    client.sock.settimeout(timeout)
    try:
        while True:
            chunk = client.sock.recv(65536)
            if not chunk:
                return client.buf == b"" or not strict
            client.buf += chunk
    except TimeoutError:
        return False
    except OSError:
        return client.buf == b"" or not strict
    finally:
        client.sock.settimeout(IO_TIMEOUT)


class RssSampler(threading.Thread):
    """The largest RSS (KiB) of a server while it runs: `start()`, then `stop()` returns
    the peak."""

    def __init__(self, server: "Server"):
        super().__init__(daemon=True)
        self.server = server
        self.peak = server.rss_kib()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.server.rss_kib())
            time.sleep(0.02)

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


class Server:
    """One portico node in its own directory. `start()` picks fresh free ports each time
    and rewrites the configuration, so a restart never races the old sockets. `env`
    adds variables to the server process's environment."""

    def __init__(
        self,
        binary: Path,
        root: Path,
        *,
        login: str = "secure",
        data_dir: str = "data",
        config_name: str = "portico.toml",
        env: dict[str, str] | None = None,
    ):
        self.binary = binary
        self.env = env or {}
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.login_type = login
        self.data_dir = data_dir
        self.config = root / config_name
        self.log_path = root / (config_name + ".log")
        self.proc: subprocess.Popen | None = None
        self.pop3_port = 0
        self.pop3s_port = 0
        self.starts = 0
        self.write_config()

    # -- configuration and process ----------------------------------------------------

    def write_config(self) -> None:
        self.pop3_port = free_port()
        self.pop3s_port = free_port()
        while self.pop3s_port == self.pop3_port:
            self.pop3s_port = free_port()
        self.config.write_text(
            CONFIG_TEMPLATE.format(
                data_dir=self.data_dir,
                pop3=self.pop3_port,
                pop3s=self.pop3s_port,
                login=self.login_type,
            )
        )

    def spawn(self) -> subprocess.Popen:
        """Runs `serve` without waiting for it to be ready."""
        log = open(self.log_path, "ab")
        log.write(f"==== start #{self.starts + 1} ====\n".encode())
        log.flush()
        try:
            return subprocess.Popen(
                [str(self.binary), "--config", str(self.config), "serve"],
                cwd=self.root,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()

    def start(self) -> "Server":
        assert not self.running, "server already running"
        self.write_config()
        self.proc = self.spawn()
        self.starts += 1
        wait_for_ports(self, {self.pop3_port, self.pop3s_port}, "POP3")
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> int:
        """SIGTERM and wait; returns the exit code (fails the test on a hang)."""
        assert self.proc is not None, "server was never started"
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(
                f"portico did not exit within {STOP_TIMEOUT}s of SIGTERM:\n{self.log()}",
                pytrace=False,
            )
        return code

    def stop(self) -> None:
        code = self.terminate()
        assert code == 0, f"portico exited with {code} after SIGTERM:\n{self.log()}"

    def restart(self) -> "Server":
        self.stop()
        return self.start()

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
            self.proc.wait()

    def rss_kib(self) -> int:
        """The server process's resident set (VmRSS), in KiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.M)
        assert m, status
        return int(m.group(1))

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    # -- command line -------------------------------------------------------------------

    def cli(self, *args: str, input: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.binary), "--config", str(self.config), *args],
            cwd=self.root,
            input=input,
            capture_output=True,
            timeout=CLI_TIMEOUT,
        )

    def cli_ok(self, *args: str, input: bytes = b"") -> str:
        r = self.cli(*args, input=input)
        assert r.returncode == 0, (
            f"portico {' '.join(args)} exited with {r.returncode}: "
            f"stdout={r.stdout!r} stderr={r.stderr!r}"
        )
        return r.stdout.decode()

    def add_user(self, address: str, password: str) -> None:
        out = self.cli_ok(
            "user", "add", address, "--password-stdin", input=password.encode() + b"\n"
        )
        assert out == f"added {address}\n"

    def deliver(self, address: str, message: bytes) -> int:
        """Delivers and returns the UID the server reports."""
        out = self.cli_ok("deliver", address, input=message)
        m = re.fullmatch(rf"delivered to {re.escape(address)} as UID (\d+)\n", out)
        assert m, f"unexpected deliver output {out!r}"
        return int(m.group(1))

    def users(self) -> dict[str, dict[str, str]]:
        """`user list` parsed: address -> {pop3, imap, pop3-delete-mode, inbox, home,
        quota, used}."""
        result = {}
        for line in self.cli_ok("user", "list").splitlines():
            address, *fields = line.split("\t")
            result[address] = dict(f.split("=", 1) for f in fields)
        return result

    # -- POP3 clients ---------------------------------------------------------------------

    def pop3(self) -> poplib.POP3:
        return poplib.POP3("127.0.0.1", self.pop3_port, timeout=IO_TIMEOUT)

    def pop3_stls(self) -> poplib.POP3:
        p = self.pop3()
        assert p.stls(tls_context()) == b"+OK Begin TLS negotiation"
        return p

    def pop3_ssl(self) -> poplib.POP3_SSL:
        return poplib.POP3_SSL(
            "127.0.0.1", self.pop3s_port, timeout=IO_TIMEOUT, context=tls_context()
        )

    def login(self, user: str, password: str, *, implicit: bool = False) -> poplib.POP3:
        """A session in TRANSACTION state, over STLS (or the implicit-TLS port).

        Right after a session of the same user said `+OK Logging out` the server may
        still hold the maildrop lock for a moment (a server race, pinned down by
        test_quit_reply_means_the_maildrop_is_free); everywhere else a login is retried
        on [IN-USE] for up to LOCK_RETRY_SECS so that one race does not make every test
        flaky."""
        deadline = time.monotonic() + LOCK_RETRY_SECS
        while True:
            p = self.pop3_ssl() if implicit else self.pop3_stls()
            assert p.user(user) == b"+OK"
            try:
                resp = p.pass_(password)
            except poplib.error_proto as e:
                p.close()
                if e.args[0] == IN_USE and time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                raise
            assert resp.startswith(b"+OK Logged in, "), resp
            return p

    def raw(self, *, implicit: bool = False, source: str | None = None) -> "RawClient":
        return RawClient(self, implicit=implicit, source=source)


class RawClient:
    """A byte-level POP3 client (plain, or implicit TLS) for what poplib hides."""

    def __init__(
        self, server: Server, *, implicit: bool = False, source: str | None = None
    ):
        port = server.pop3s_port if implicit else server.pop3_port
        sock = dial(port, source)
        if implicit:
            sock = tls_context().wrap_socket(sock)
        self.sock = sock
        self.buf = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def line(self) -> bytes:
        """One response line, without CRLF; fails on a bare LF or EOF."""
        while b"\r\n" not in self.buf:
            assert b"\n" not in self.buf, f"bare LF in response {self.buf!r}"
            if not self._fill():
                raise EOFError(f"connection closed; pending {self.buf!r}")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def multiline_raw(self) -> bytes:
        """The rest of a multi-line response, exactly as sent, through `.CRLF`."""
        while True:
            if self.buf.startswith(b".\r\n"):
                end = 3
                break
            idx = self.buf.find(b"\r\n.\r\n")
            if idx >= 0:
                end = idx + 5
                break
            if not self._fill():
                raise EOFError(f"connection closed in multi-line response {self.buf!r}")
        data, self.buf = self.buf[:end], self.buf[end:]
        return data

    def cmd(self, command: bytes | str) -> bytes:
        if isinstance(command, str):
            command = command.encode()
        self.send(command + b"\r\n")
        return self.line()

    def starttls(self) -> None:
        assert self.cmd("STLS") == b"+OK Begin TLS negotiation"
        assert self.buf == b""
        self.sock = tls_context().wrap_socket(self.sock)

    def login(self, user: str, password: str, *, retry_in_use: bool = True) -> bytes:
        """USER/PASS; returns the answer to PASS (see Server.login on [IN-USE])."""
        deadline = time.monotonic() + LOCK_RETRY_SECS
        while True:
            assert self.cmd(f"USER {user}") == b"+OK"
            resp = self.cmd(f"PASS {password}")
            if resp != IN_USE or not retry_in_use or time.monotonic() > deadline:
                return resp
            time.sleep(0.02)

    def auth_plain(self, user: str, password: str, *, authzid: str = "") -> bytes:
        """AUTH PLAIN with an initial response; returns the answer (retried like login)."""
        deadline = time.monotonic() + LOCK_RETRY_SECS
        while True:
            resp = self.cmd(f"AUTH PLAIN {plain_b64(user, password, authzid)}")
            if resp != IN_USE or time.monotonic() > deadline:
                return resp
            time.sleep(0.02)

    def at_eof(self, timeout: float = IO_TIMEOUT) -> bool:
        """Whether the server closes the connection (nothing else arrives first)."""
        return closed_by_server(self, timeout, strict=True)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def portico_bin() -> Path:
    return find_binary()


@pytest.fixture(scope="session")
def corpus() -> list[tuple[str, bytes]]:
    return load_corpus()


def server_factory(cls, portico_bin, tmp_path, request, default_name: str):
    """A `make(**options)` that builds `cls` servers in `tmp_path/name`, starts them
    unless `start=False`, and remembers them so that teardown kills them and a failed
    test's report carries their logs. Yields the factory; kills on exit."""
    servers: list[Server] = getattr(request.node, "_portico_servers", None) or []
    request.node._portico_servers = servers

    def make(*, start: bool = True, name: str = default_name, **options):
        server = cls(portico_bin, tmp_path / name, **options)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.kill()


@pytest.fixture
def make_server(portico_bin, tmp_path, request):
    """Factory: make_server(login="secure", start=True, name="srv", data_dir="data",
    config_name=...) -> Server. Every server is killed at teardown; their logs are
    attached to the report of a failed test."""
    yield from server_factory(Server, portico_bin, tmp_path, request, "srv")


@pytest.fixture
def server(make_server) -> Server:
    """A running node with login = "secure"."""
    return make_server()


@pytest.fixture(autouse=True)
def cluster_logs_on_failure(request):
    """In a module whose tests use a `cluster` fixture (several nodes of
    scripts/cluster-up.sh), a failed test's report carries every node's log."""
    if "cluster" not in request.fixturenames:
        return
    logs = getattr(request.node, "_portico_servers", None) or []
    logs.extend(request.getfixturevalue("cluster").node_logs())
    request.node._portico_servers = logs


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in getattr(item, "_portico_servers", []):
            lines = server.log().splitlines()
            if len(lines) > LOG_TAIL_LINES:
                omitted = len(lines) - LOG_TAIL_LINES
                lines = [f"... {omitted} lines omitted, full log in {server.log_path}"] + (
                    lines[-LOG_TAIL_LINES:]
                )
            report.sections.append(
                (f"portico log ({server.config})", "\n".join(lines) or "(empty)")
            )


# --------------------------------------------------------------------------------------
# IMAP (test_imap.py, test_imap_clients.py): the same node with the IMAP listeners on

import imaplib  # noqa: E402

IMAP_CONFIG_EXTRA = """
[imap]
enabled = true
login = "{imap_login}"
{imap_extra}"""


class ImapServer(Server):
    """A Server whose configuration also enables IMAP (plain with STARTTLS, and implicit
    TLS) on fresh loopback ports; `imap_extra` is appended to the [imap] section
    (e.g. 'append_limit = 2000'). POP3 stays on as in Server."""

    def __init__(self, binary: Path, root: Path, *, imap_extra: str = "", **kwargs):
        self.imap_port = 0
        self.imaps_port = 0
        self.imap_extra = imap_extra
        super().__init__(binary, root, **kwargs)

    def write_config(self) -> None:
        super().write_config()
        taken = {self.pop3_port, self.pop3s_port}
        ports = []
        while len(ports) < 2:
            port = free_port()
            if port not in taken:
                taken.add(port)
                ports.append(port)
        self.imap_port, self.imaps_port = ports
        text = self.config.read_text()
        listen = (
            f'pop3s = "127.0.0.1:{self.pop3s_port}"\n'
            f'imap = "127.0.0.1:{self.imap_port}"\n'
            f'imaps = "127.0.0.1:{self.imaps_port}"\n'
        )
        text = text.replace(f'pop3s = "127.0.0.1:{self.pop3s_port}"\n', listen, 1)
        text += IMAP_CONFIG_EXTRA.format(
            imap_login=self.login_type,
            imap_extra=(self.imap_extra + "\n") if self.imap_extra else "",
        )
        self.config.write_text(text)

    def start(self) -> "ImapServer":
        super().start()
        wait_for_ports(self, {self.imap_port, self.imaps_port}, "IMAP")
        return self

    # -- IMAP clients -------------------------------------------------------------------

    def imap(self) -> imaplib.IMAP4:
        """Plain connection on the IMAP port (no TLS yet)."""
        return imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=IO_TIMEOUT)

    def imap_starttls(self) -> imaplib.IMAP4:
        m = self.imap()
        typ, data = m.starttls(tls_context())
        assert typ == "OK", (typ, data)
        return m

    def imap_ssl(self) -> imaplib.IMAP4_SSL:
        return imaplib.IMAP4_SSL(
            "127.0.0.1", self.imaps_port, ssl_context=tls_context(), timeout=IO_TIMEOUT
        )

    def imap_login(
        self, user: str, password: str, *, implicit: bool = True
    ) -> imaplib.IMAP4:
        """An authenticated session over implicit TLS (or STARTTLS)."""
        m = self.imap_ssl() if implicit else self.imap_starttls()
        typ, data = m.login(user, password)
        assert typ == "OK", (typ, data)
        return m


@pytest.fixture
def make_imap_server(portico_bin, tmp_path, request):
    """Factory like make_server, for ImapServer: make_imap_server(login="secure",
    imap_extra="", start=True, name="imap", ...)."""
    yield from server_factory(ImapServer, portico_bin, tmp_path, request, "imap")


@pytest.fixture
def imap_server(make_imap_server) -> ImapServer:
    """A running node with IMAP on, login = "secure"."""
    return make_imap_server()


LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}$")


class RawImap:
    """A byte-level IMAP client: `cmd` sends one tagged command (literals given as bytes
    items are sent as synchronizing literals, after the server's `+`) and returns the
    untagged/continuation lines and the tagged line. Each response line is returned
    without its CRLF, with any literals it carries inline (`{n}\\r\\n` + the n bytes)."""

    def __init__(
        self,
        server: "ImapServer",
        *,
        implicit: bool = False,
        timeout=IO_TIMEOUT,
        source: str | None = None,
    ):
        port = server.imaps_port if implicit else server.imap_port
        sock = dial(port, source, timeout)
        if implicit:
            sock = tls_context().wrap_socket(sock)
        self.sock = sock
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv(self, pending: list[bytes]) -> bytes:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError(f"connection closed; pending {b''.join(pending)[:300]!r}")
        return chunk

    def _raw_line(self) -> bytes:
        # Chunks are collected and joined once, and only the new bytes are searched:
        # a response line of tens of megabytes (a BODYSTRUCTURE of 100,000 parts) then
        # costs linear time here, not quadratic.
        chunks = [self.buf]
        seen = self.buf
        while b"\r\n" not in seen:
            assert b"\n" not in seen, f"bare LF in response {seen[:300]!r}"
            chunk = self._recv(chunks)
            seen = chunks[-1][-1:] + chunk
            chunks.append(chunk)
        line, self.buf = b"".join(chunks).split(b"\r\n", 1)
        return line

    def _take(self, n: int) -> bytes:
        chunks = [self.buf]
        have = len(self.buf)
        while have < n:
            chunk = self._recv(chunks)
            chunks.append(chunk)
            have += len(chunk)
        data = b"".join(chunks)
        data, self.buf = data[:n], data[n:]
        return data

    def line(self) -> bytes:
        """One response, literals included."""
        out = self._raw_line()
        while True:
            m = LITERAL_AT_END.search(out)
            if not m:
                return out
            out += b"\r\n" + self._take(int(m.group(1)))
            out += self._raw_line()

    def next_tag(self) -> str:
        self.n += 1
        return f"T{self.n:03d}"

    def cmd(self, *parts, tag: str | None = None) -> tuple[list[bytes], bytes]:
        """Sends `tag parts...` (str/bytes joined as given; a `Literal` item is sent as a
        synchronizing literal) and reads to the tagged response."""
        tag = tag or self.next_tag()
        pending = tag.encode() + b" "
        for part in parts:
            if isinstance(part, Literal):
                self.send(pending + b"{%d}\r\n" % len(part.data))
                cont = self.line()
                if not cont.startswith(b"+"):
                    # Refused literal: that line is the tagged answer.
                    return [], cont
                pending = part.data
            else:
                if isinstance(part, str):
                    part = part.encode()
                pending += part
        self.send(pending + b"\r\n")
        return self.read_until(tag)

    def read_until(self, tag: str) -> tuple[list[bytes], bytes]:
        untagged = []
        prefix = tag.encode() + b" "
        while True:
            line = self.line()
            if line.startswith(prefix):
                return untagged, line
            untagged.append(line)

    def ok(self, *parts) -> list[bytes]:
        untagged, tagged = self.cmd(*parts)
        assert re.match(rb"T\d+ OK", tagged), (parts, untagged, tagged)
        return untagged

    def starttls(self) -> None:
        untagged, tagged = self.cmd("STARTTLS")
        assert untagged == [] and tagged.endswith(b" OK Begin TLS negotiation now"), tagged
        assert self.buf == b""
        self.sock = tls_context().wrap_socket(self.sock)

    def login(self, user: str, password: str) -> bytes:
        return self.cmd(f'LOGIN "{user}" "{password}"')[1]

    def at_eof(self, timeout: float = IO_TIMEOUT) -> bool:
        return closed_by_server(self, timeout, strict=False)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Literal:
    """A synchronizing literal inside RawImap.cmd."""

    def __init__(self, data: bytes):
        self.data = data


# --------------------------------------------------------------------------------------
# SMTP (test_smtp.py): the IMAP node with the SMTP listeners (inbound, submission with
# STARTTLS, implicit-TLS submission) and local_domains = ["example.com"]

import smtplib  # noqa: E402

SMTP_HOSTNAME = "mail.example.com"

SMTP_CONFIG_EXTRA = """
[smtp]
enabled = true
hostname = "{hostname}"
login = "{smtp_login}"
retry_initial_secs = 1
retry_max_secs = 2
{trusted_networks}{from_check}{smtp_extra}"""

# The tests' clients all connect from loopback and many send as local users on the
# inbound port, which only a trusted network may do; and the corpus submitted as alice
# carries other people's From: headers, which the From: check refuses. So SmtpServer
# trusts loopback and turns the From: check off unless told otherwise;
# test_hostile_smtp.py starts servers with the defaults (nobody trusted, From: checked)
# by passing trusted_networks=None, from_must_match_login=None.
SMTP_TRUSTED_LOOPBACK = '["127.0.0.0/8"]'

SMTP_RELAY_EXTRA = """
[smtp.relay]
host = "127.0.0.1"
port = {port}
starttls = false
"""


def wait_for_ports(server: Server, ports: set[int], what: str) -> None:
    """Waits until every port accepts connections (fails if the server exits)."""
    deadline = time.monotonic() + START_TIMEOUT
    pending = set(ports)
    while pending:
        if server.proc.poll() is not None:
            pytest.fail(
                f"portico serve exited during startup:\n{server.log()}", pytrace=False
            )
        for port in list(pending):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                pending.discard(port)
            except OSError:
                pass
        if pending:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"portico did not accept {what} connections on {sorted(pending)}:\n"
                    f"{server.log()}",
                    pytrace=False,
                )
            time.sleep(0.01)


class SmtpServer(ImapServer):
    """An ImapServer that also serves SMTP: `smtp` (inbound, port-25 style),
    `submission` (587 style, STARTTLS) and `submissions` (465 style, implicit TLS), all on
    fresh loopback ports, with local_domains = ["example.com"]. `smtp_login` is the
    [smtp] login type; `smtp_extra` lines go into [smtp] (e.g. 'max_message_size =
    2000'); with `relay_port`, [smtp.relay] points at 127.0.0.1:relay_port (no TLS).
    `trusted_networks` is the [smtp] list as TOML (loopback unless told otherwise) and
    `from_must_match_login` the From: check (off unless told otherwise); None leaves
    the server's default (nobody trusted; From: checked)."""

    def __init__(
        self,
        binary: Path,
        root: Path,
        *,
        smtp_login: str = "secure",
        smtp_extra: str = "",
        relay_port: int | None = None,
        trusted_networks: str | None = SMTP_TRUSTED_LOOPBACK,
        from_must_match_login: bool | None = False,
        **kwargs,
    ):
        self.trusted_networks = trusted_networks
        self.from_must_match_login = from_must_match_login
        self.smtp_port = 0
        self.submission_port = 0
        self.submissions_port = 0
        self.smtp_login_type = smtp_login
        self.smtp_extra = smtp_extra
        self.relay_port = relay_port
        super().__init__(binary, root, **kwargs)

    def write_config(self) -> None:
        super().write_config()
        taken = {self.pop3_port, self.pop3s_port, self.imap_port, self.imaps_port}
        if self.relay_port:
            taken.add(self.relay_port)
        ports = []
        while len(ports) < 3:
            port = free_port()
            if port not in taken:
                taken.add(port)
                ports.append(port)
        self.smtp_port, self.submission_port, self.submissions_port = ports
        text = self.config.read_text()
        anchor = f'imaps = "127.0.0.1:{self.imaps_port}"\n'
        listen = anchor + (
            f'smtp = "127.0.0.1:{self.smtp_port}"\n'
            f'submission = "127.0.0.1:{self.submission_port}"\n'
            f'submissions = "127.0.0.1:{self.submissions_port}"\n'
        )
        assert anchor in text
        text = text.replace(anchor, listen, 1)
        first_section = text.index("\n[")
        text = (
            text[:first_section]
            + '\nlocal_domains = ["example.com"]\n'
            + text[first_section:]
        )
        text += SMTP_CONFIG_EXTRA.format(
            hostname=SMTP_HOSTNAME,
            smtp_login=self.smtp_login_type,
            trusted_networks=(
                f"trusted_networks = {self.trusted_networks}\n"
                if self.trusted_networks is not None
                else ""
            ),
            from_check=(
                f"from_must_match_login = {str(self.from_must_match_login).lower()}\n"
                if self.from_must_match_login is not None
                else ""
            ),
            smtp_extra=(self.smtp_extra + "\n") if self.smtp_extra else "",
        )
        if self.relay_port:
            text += SMTP_RELAY_EXTRA.format(port=self.relay_port)
        self.config.write_text(text)

    def start(self) -> "SmtpServer":
        super().start()
        wait_for_ports(
            self, {self.smtp_port, self.submission_port, self.submissions_port}, "SMTP"
        )
        return self

    # -- SMTP clients -------------------------------------------------------------------

    def smtp(self, port: int | None = None) -> smtplib.SMTP:
        """smtplib on a plain port (the submission port unless told otherwise)."""
        return smtplib.SMTP(
            "127.0.0.1",
            port or self.submission_port,
            local_hostname="client.example.org",
            timeout=IO_TIMEOUT,
        )

    def smtp_starttls(self) -> smtplib.SMTP:
        s = self.smtp()
        code, text = s.starttls(context=tls_context())
        assert (code, text) == (220, b"2.0.0 Ready to start TLS")
        return s

    def smtp_ssl(self) -> smtplib.SMTP_SSL:
        return smtplib.SMTP_SSL(
            "127.0.0.1",
            self.submissions_port,
            local_hostname="client.example.org",
            timeout=IO_TIMEOUT,
            context=tls_context(),
        )

    def smtp_login(self, user: str, password: str, *, implicit: bool = False):
        """An authenticated submission session (STARTTLS, or the implicit-TLS port)."""
        s = self.smtp_ssl() if implicit else self.smtp_starttls()
        code, text = s.login(user, password)
        assert (code, text) == (235, b"2.7.0 Authentication successful")
        return s

    def raw_smtp(
        self,
        port: int | None = None,
        *,
        implicit: bool = False,
        source: str | None = None,
    ) -> "RawSmtp":
        return RawSmtp(
            port or (self.submissions_port if implicit else self.submission_port),
            implicit=implicit,
            source=source,
        )

    def queue(self) -> list[dict]:
        """`queue list` parsed: [{id, from, size, queued, recipients: [{to, attempts,
        last_error}]}], checking the line format on the way."""
        entries: list[dict] = []
        for line in self.cli_ok("queue", "list").splitlines():
            m = re.fullmatch(r"(\d+)\tfrom=<([^>]*)>\tsize=(\d+)\tqueued=(.+)", line)
            if m:
                entries.append(
                    {
                        "id": int(m.group(1)),
                        "from": m.group(2),
                        "size": int(m.group(3)),
                        "queued": m.group(4),
                        "recipients": [],
                    }
                )
                continue
            m = re.fullmatch(r"\tto=<([^>]*)>\tattempts=(\d+)\tlast_error=(.*)", line)
            assert m and entries, f"unexpected queue list line {line!r}"
            entries[-1]["recipients"].append(
                {"to": m.group(1), "attempts": int(m.group(2)), "last_error": m.group(3)}
            )
        return entries


class RawSmtp:
    """A byte-level SMTP client: `reply()` reads one (multi-line) reply and returns its
    lines without CRLF."""

    def __init__(
        self,
        port: int,
        *,
        implicit: bool = False,
        timeout=IO_TIMEOUT,
        source: str | None = None,
    ):
        sock = dial(port, source, timeout)
        if implicit:
            sock = tls_context().wrap_socket(sock)
        self.sock = sock
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; pending {self.buf!r}")
        self.buf += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            assert b"\n" not in self.buf, f"bare LF in reply {self.buf!r}"
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> list[bytes]:
        """One reply: lines `ddd-...` up to the `ddd ...` one, all with the same code."""
        lines = [self.line()]
        while re.match(rb"\d{3}-", lines[-1]):
            lines.append(self.line())
        code = lines[0][:3]
        assert all(re.match(rb"\d{3}[ -]", l) and l[:3] == code for l in lines), lines
        return lines

    def cmd(self, command: bytes | str) -> bytes:
        """Sends one command line; returns the last line of its reply (all of a
        single-line reply)."""
        if isinstance(command, str):
            command = command.encode()
        self.send(command + b"\r\n")
        return self.reply()[-1]

    def ehlo(self, name: str = "client.example.org") -> list[bytes]:
        self.send(f"EHLO {name}\r\n")
        return self.reply()

    def starttls(self) -> None:
        assert self.cmd("STARTTLS") == b"220 2.0.0 Ready to start TLS"
        assert self.buf == b""
        self.sock = tls_context().wrap_socket(self.sock)

    def auth_plain(self, user: str, password: str) -> bytes:
        return self.cmd(f"AUTH PLAIN {plain_b64(user, password)}")

    def at_eof(self, timeout: float = IO_TIMEOUT) -> bool:
        return closed_by_server(self, timeout, strict=True)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def make_smtp_server(portico_bin, tmp_path, request):
    """Factory like make_imap_server, for SmtpServer: make_smtp_server(smtp_login=
    "secure", smtp_extra="", relay_port=None, login="secure", start=True, name="smtp",
    ...)."""
    yield from server_factory(SmtpServer, portico_bin, tmp_path, request, "smtp")
