"""The IMAP transcript files of crates/imap/tests/transcripts, run against a real server
over loopback sockets. The format and its rules are those of
crates/imap/tests/transcripts.rs (read its module docs); this is the same runner with
sockets in place of the in-memory fake host:

- `N C:` lines are written to connection N's socket, consecutive ones as one write
  (CRLF after each); `$name` is replaced by its captured value.
- `N S:` lines are matched, exactly, against the next line connection N receives
  (lines are cut at CRLF, literals included, as there); a final `*` matches the rest of
  the line and `$name` captures a token the first time and must match it later.
- Server output must be expected completely. The fake host answers at once; a real
  server answers when it does, so before each `C:` write the runner waits until
  QUIET_SECS have passed since its last action (a write or a delivery on any
  connection), and anything connection N received meanwhile that no `S:` line took is
  a failure, as it is at the end of the file (after the same wait).
- `N closed`: connection N reaches end of file with nothing received before it.
- Connections start with implicit TLS (the `imaps` listener), or in the clear on the
  `imap` listener with `! plain` / `! plain N`; after the tagged OK to a STARTTLS the
  runner does the TLS handshake before reading on.
- Settings: `! login-plaintext` is `[imap] login = "plaintext"`; `! max-line N`,
  `! append-limit N`, `! max-bad N` and `! literal-minus` set the [imap] keys of
  NUMBER_DIRECTIVES and FLAG_DIRECTIVES; everything else is as ImapConfig::default()
  (DEFAULT_IMAP_SETTINGS). The caller skips a transcript whose setting the server's
  configuration refuses.
- `! quota USER N|none` is `portico user set USER --quota N|none`, where it stands.
- `! clock "date-time"` sets the fake host's clock; a real server's cannot be set, so a
  transcript with it fails here (test_transcripts.py skips those, CLOCK_DEPENDENT).
- `TAG COMPRESS DEFLATE`: after its tagged OK the runner inflates what it reads and
  deflates what it writes (raw DEFLATE, a sync flush ending each write), so the lines
  stay what each side means. Lines written behind it in the same write are deflated
  too, as the start of the client's compressed stream, which is what the server takes
  them for (RFC 4978 §3).
- `! message USER FOLDER PREFIX (flags) "date"` is an APPEND of the corpus file (bare
  LF made CRLF, as the fake host and the store keep it) with those flags and date,
  from a session of its own signed in as USER, which never selects a folder.

Normalizations, each for something a real server picks differently from the fake
host and nothing else:

- UIDVALIDITY: the fake host numbers folders from 1001 in creation order; the real
  store from its clock. A literal number right after `UIDVALIDITY `, `COPYUID ` or
  `APPENDUID ` in an `S:` line names a folder: it matches the first number the server
  sends there, and from then on only that one, and no other literal may match that
  same number (one fake value to one real value, both ways). `C:` lines pass a
  UIDVALIDITY back only through a `$name` captured from the server.
- The clock: the fake host dates every message that comes without a date
  05-Feb-2026 12:00:00 +0000. `! message` lines without a date are appended with that
  date, so they are stored as there; for an APPEND of the transcript itself without a
  date, `INTERNALDATE "05-Feb-2026 12:00:00 +0000"` in an `S:` line matches that text
  or any date-time within the run (the real server's clock at the APPEND); so does
  `SAVEDATE "05-Feb-2026 12:00:00 +0000"` (RFC 8514: the fake host saves every message
  at that time, the real server at its clock's).
"""

from __future__ import annotations

import re
import socket
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import RawImap, crlf, tls_context

TRANSCRIPTS_DIR = (
    Path(__file__).resolve().parents[2] / "crates" / "imap" / "tests" / "transcripts"
)
CORPUS_DIR = Path(__file__).resolve().parents[1] / "corpus"

# transcripts.rs `Host::new`: (user, password, IMAP allowed).
ACCOUNTS = (("alice", "secret", True), ("bob", "hunter2", True), ("carol", "carol", False))

# transcripts.rs `Host::now`: the internal date of everything appended without one.
FAKE_HOST_NOW = "05-Feb-2026 12:00:00 +0000"

# [imap] keys for ImapConfig::default(), which transcripts.rs runs with, as TOML values:
# the server's own default line limit is 1 MiB, the session machine's 64 KiB; the
# others are written for clarity (and are the server's defaults too).
DEFAULT_IMAP_SETTINGS = {
    "max_line_length": "65536",
    "append_limit": "52428800",
    "max_bad_commands": "20",
}
# `! directive N` -> [imap] key = N.
NUMBER_DIRECTIVES = {
    "max-line": "max_line_length",
    "append-limit": "append_limit",
    "max-bad": "max_bad_commands",
}
# `! directive` -> [imap] key = value.
FLAG_DIRECTIVES = {"literal-minus": ("literal_plus", "false")}

# Before each C: write (and at the end): how long after the runner's last action the
# server may still send something, for it to be caught as unexpected.
QUIET_SECS = 0.3
# How long an expected line, a greeting or an end of file may take to come.
EXPECT_SECS = 5.0


class Mismatch(AssertionError):
    """The server did not say what the transcript expects."""


# ---- Transcripts ------------------------------------------------------------------------


@dataclass
class Step:
    line: int
    kind: str  # "C", "S", "closed", "message", "quota" or "clock"
    conn: int = 0
    text: str = ""
    args: tuple[str, str, str, str] = ("", "", "", "")


@dataclass
class Transcript:
    name: str
    steps: list[Step] = field(default_factory=list)
    # Connections that start without TLS; None: every one.
    plain: set[int] | None = None
    login_plaintext: bool = False
    # [imap] keys the directives set: {key: (TOML value, directive line)}.
    directives: dict[str, tuple[str, str]] = field(default_factory=dict)

    def imap_settings(self) -> dict[str, str]:
        settings = dict(DEFAULT_IMAP_SETTINGS)
        settings.update({key: value for key, (value, _) in self.directives.items()})
        return settings

    def client_writes(self) -> int:
        """How many C: writes it makes (a measure of how long it runs)."""
        writes, previous = 0, None
        for step in self.steps:
            if step.kind == "C" and previous != ("C", step.conn):
                writes += 1
            previous = (step.kind, step.conn)
        return writes


def names() -> list[str]:
    return sorted(p.stem for p in TRANSCRIPTS_DIR.glob("*.txt"))


def load(name: str) -> Transcript:
    return parse(name, (TRANSCRIPTS_DIR / f"{name}.txt").read_text(encoding="utf-8"))


def parse(name: str, text: str) -> Transcript:
    """transcripts.rs `parse_transcript`."""
    t = Transcript(name)
    plain_all = False
    plain: set[int] = set()
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if not lines[0].startswith("# "):
        raise ValueError(f"{name}: the first line must be a `# ` comment")
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("! "):
            directive = line[2:]
            words = directive.split()
            if words[0] == "plain" and len(words) == 1:
                plain_all = True
            elif words[0] == "plain":
                plain.update(int(w) for w in words[1:])
            elif words[0] == "login-plaintext":
                t.login_plaintext = True
            elif words[0] in NUMBER_DIRECTIVES and len(words) == 2 and words[1].isdigit():
                t.directives[NUMBER_DIRECTIVES[words[0]]] = (words[1], line)
            elif words[0] in FLAG_DIRECTIVES and len(words) == 1:
                key, value = FLAG_DIRECTIVES[words[0]]
                t.directives[key] = (value, line)
            elif words[0] == "message":
                t.steps.append(Step(number, "message", args=_message_args(directive)))
            elif words[0] == "quota" and len(words) == 3:
                t.steps.append(Step(number, "quota", args=(words[1], words[2])))
            elif words[0] == "clock" and len(words) > 1:
                t.steps.append(Step(number, "clock", text=directive[len("clock"):].strip()))
            else:
                raise ValueError(f"{name} line {number}: unknown directive {directive!r}")
            continue
        conn, _, rest = line.partition(" ")
        if not conn.isdigit():
            raise ValueError(f"{name} line {number}: cannot read {line!r}")
        if rest.startswith("C:"):
            t.steps.append(Step(number, "C", int(conn), rest[2:].removeprefix(" ")))
        elif rest.startswith("S:"):
            t.steps.append(Step(number, "S", int(conn), rest[2:].removeprefix(" ")))
        elif rest == "closed":
            t.steps.append(Step(number, "closed", int(conn)))
        else:
            raise ValueError(f"{name} line {number}: cannot read {line!r}")
    t.plain = None if plain_all else plain
    return t


def _message_args(directive: str) -> tuple[str, str, str, str]:
    """`message account folder prefix [rest]`; the folder may be quoted."""
    account, _, rest = directive[len("message"):].strip().partition(" ")
    rest = rest.lstrip()
    if rest.startswith('"'):
        folder, _, rest = rest[1:].partition('"')
    else:
        folder, _, rest = rest.partition(" ")
    prefix, _, rest = rest.lstrip().partition(" ")
    return account, folder, prefix, rest.strip()


def corpus_message(prefix: str) -> bytes:
    """transcripts.rs `corpus_message`: the one corpus file named PREFIX…, as on disk."""
    matches = sorted(p for p in CORPUS_DIR.iterdir() if p.name.startswith(prefix))
    if len(matches) != 1:
        raise ValueError(f"corpus prefix {prefix!r} names {matches}")
    return matches[0].read_bytes()


# ---- Matching -----------------------------------------------------------------------------

_LOWER = b"abcdefghijklmnopqrstuvwxyz"
_NAME = _LOWER + b"0123456789_"
_DIGITS = re.compile(rb"\d+")
_UIDVALIDITY_AT = re.compile(rb"(?:UIDVALIDITY|COPYUID|APPENDUID) (\d+)")
# The items whose date-time is the fake host's clock when it says FAKE_HOST_NOW.
_CLOCK_ITEMS = (b"INTERNALDATE", b"SAVEDATE")
_DATE_TIME_LEN = len(FAKE_HOST_NOW)
_LITERAL = re.compile(rb"\{(\d+)\}\r\n")


def _variable_end(s: bytes, i: int) -> int | None:
    """`$name`: a lower-case letter, then letters, digits and `_`."""
    if s[i : i + 1] != b"$" or i + 1 >= len(s) or s[i + 1] not in _LOWER:
        return None
    end = i + 2
    while end < len(s) and s[end] in _NAME:
        end += 1
    return end


def substitute(line: str, variables: dict[str, bytes]) -> bytes:
    s = line.encode()
    out = bytearray()
    i = 0
    while i < len(s):
        end = _variable_end(s, i)
        if end is None:
            out.append(s[i])
            i += 1
            continue
        name = s[i + 1 : end].decode()
        if name not in variables:
            raise Mismatch(f"variable ${name} is not set yet")
        out += variables[name]
        i = end
    return bytes(out)


def _clock_item_at(pattern: bytes, i: int) -> bytes | None:
    """The _CLOCK_ITEMS item at `i` when FAKE_HOST_NOW is its value there."""
    for item in _CLOCK_ITEMS:
        if pattern.startswith(item + b' "' + FAKE_HOST_NOW.encode() + b'"', i):
            return item
    return None


def _tokens(pattern: bytes) -> list[tuple[str, bytes]]:
    """A pattern (without its final `*`) as ("lit", bytes), ("var", name),
    ("uidvalidity", digits) and ("clock", b"") pieces."""
    tokens: list[tuple[str, bytes]] = []
    literal = bytearray()
    i = 0
    while i < len(pattern):
        end = _variable_end(pattern, i)
        at_word = i == 0 or pattern[i - 1 : i] in b" [("
        m = _UIDVALIDITY_AT.match(pattern, i) if at_word else None
        if end is not None:
            tokens.append(("lit", bytes(literal)))
            tokens.append(("var", pattern[i + 1 : end]))
            literal.clear()
            i = end
        elif m:
            literal += pattern[i : m.start(1)]
            tokens.append(("lit", bytes(literal)))
            tokens.append(("uidvalidity", m.group(1)))
            literal.clear()
            i = m.end()
        elif at_word and (item := _clock_item_at(pattern, i)):
            literal += item + b' "'
            tokens.append(("lit", bytes(literal)))
            tokens.append(("clock", b""))
            literal.clear()
            literal += b'"'
            i += len(item) + len(b' ""') + _DATE_TIME_LEN
        else:
            literal.append(pattern[i])
            i += 1
    tokens.append(("lit", bytes(literal)))
    return [t for t in tokens if t != ("lit", b"")]


class Matcher:
    """transcripts.rs `line_matches`, with the normalizations of the module docs."""

    def __init__(self) -> None:
        self.variables: dict[str, bytes] = {}
        # The transcript's literal UIDVALIDITY -> the server's, for the same folder.
        self.real_uidvalidity: dict[bytes, bytes] = {}
        self.started = datetime.now(timezone.utc)

    def describe_uidvalidity(self) -> str:
        if not self.real_uidvalidity:
            return ""
        pairs = ", ".join(
            f"{fake.decode()} = {real.decode()}"
            for fake, real in sorted(self.real_uidvalidity.items())
        )
        return f"\n  (UIDVALIDITY so far, transcript = server: {pairs})"

    def _clock_ok(self, text: bytes) -> bool:
        if text == FAKE_HOST_NOW.encode():
            return True
        try:
            when = datetime.strptime(text.decode().strip(), "%d-%b-%Y %H:%M:%S %z")
        except ValueError:
            return False
        slack = timedelta(seconds=2)
        return self.started - slack <= when <= datetime.now(timezone.utc) + slack

    def matches(self, pattern: str, line: bytes) -> bool:
        p = pattern.encode()
        wildcard = len(p) > 1 and p.endswith(b"*")
        if wildcard:
            p = p[:-1]
        bound: list[tuple[str, bytes]] = []
        pairs: dict[bytes, bytes] = {}
        j = 0
        for kind, value in _tokens(p):
            if kind == "lit":
                if not line.startswith(value, j):
                    return False
                j += len(value)
            elif kind == "var":
                name = value.decode()
                if name in self.variables:
                    got = self.variables[name]
                else:
                    n = 0
                    while j + n < len(line) and line[j + n] not in b" )]":
                        n += 1
                    got = line[j : j + n]
                    bound.append((name, got))
                if not line.startswith(got, j):
                    return False
                j += len(got)
            elif kind == "uidvalidity":
                m = _DIGITS.match(line, j)
                if not m:
                    return False
                real = m.group()
                known = {**self.real_uidvalidity, **pairs}
                if value in known:
                    if known[value] != real:
                        return False
                else:
                    taken = {r: f for f, r in known.items()}
                    if taken.get(real, value) != value:
                        return False
                    pairs[value] = real
                j = m.end()
            else:  # clock
                if not self._clock_ok(line[j : j + _DATE_TIME_LEN]):
                    return False
                j += _DATE_TIME_LEN
        if not wildcard and j != len(line):
            return False
        self.variables.update(bound)
        self.real_uidvalidity.update(pairs)
        return True


def check_syntax(out: bytes) -> str | None:
    """transcripts.rs `check_syntax`: the output cut into responses, with literals,
    quoted strings and parentheses of data responses checked; the first fault, if any."""

    def show(at: int) -> str:
        return repr(out[at : at + 80])

    i = 0
    while i < len(out):
        start = i
        eol = out.find(b"\r\n", i)
        if eol < 0:
            return f"output ends without CRLF: {show(start)}"
        line = out[i:eol]
        if line.startswith(b"* "):
            word = line[2:].split(b" ", 1)[0]
            status = word in (b"OK", b"NO", b"BAD", b"BYE", b"PREAUTH")
        else:
            status = True
        if status:
            if any(b in line for b in (b"\r", b"\n", b"\0")):
                return f"control byte in status response {show(start)}"
            i = eol + 2
            continue
        depth = 0
        while True:
            if i >= len(out):
                return f"response cut short: {show(start)}"
            b = out[i : i + 1]
            if b == b'"':
                i += 1
                while True:
                    c = out[i : i + 1]
                    if c in (b"", b"\r", b"\n"):
                        return f"unterminated quoted string: {show(start)}"
                    if c == b"\\":
                        i += 2
                    elif c == b'"':
                        break
                    else:
                        i += 1
                i += 1
            elif b == b"{":
                m = _LITERAL.match(out, i)
                if not m:
                    i += 1
                    continue
                i = m.end() + int(m.group(1))
                if i > len(out):
                    return f"literal longer than the output: {show(start)}"
            elif b == b"(":
                depth += 1
                i += 1
            elif b == b")":
                depth -= 1
                if depth < 0:
                    return f"unbalanced ')': {show(start)}"
                i += 1
            elif b == b"\r":
                if out[i + 1 : i + 2] != b"\n":
                    return f"bare CR: {show(start)}"
                if depth != 0:
                    return f"unbalanced '(': {show(start)}"
                i += 2
                break
            elif b in (b"\n", b"\0"):
                return f"bare LF or NUL: {show(start)}"
            else:
                i += 1
    return None


# ---- Connections ----------------------------------------------------------------------------


class Connection:
    """One numbered client connection: what it received, cut into lines at CRLF."""

    def __init__(self, number: int, port: int, tls: bool):
        self.number = number
        self.sock: socket.socket = socket.create_connection(
            ("127.0.0.1", port), timeout=EXPECT_SECS
        )
        if tls:
            self.sock = tls_context().wrap_socket(self.sock)
        self.buf = b""
        self.lines: deque[bytes] = deque()
        self.received = bytearray()
        self.eof = False
        self.eof_reason = ""
        # Tags of STARTTLS commands sent and not yet answered.
        self.starttls_tags: set[bytes] = set()
        # COMPRESS DEFLATE: the tag sent and not yet answered, and each direction's
        # stream once compression is on.
        self.compress_tags: set[bytes] = set()
        self.deflater = None
        self.inflater = None

    def _read(self, timeout: float) -> bool:
        """Reads once, waiting up to `timeout`: False if nothing came in that time."""
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            return False
        except OSError as e:  # a reset, or a TLS close without close_notify
            chunk = b""
            self.eof_reason = f" ({e})"
        if not chunk:
            self.eof = True
            return True
        self._take(chunk)
        return True

    def _take(self, chunk: bytes) -> None:
        if self.inflater is not None:
            try:
                chunk = self.inflater.decompress(chunk)
            except zlib.error as e:
                self.eof = True
                self.eof_reason = f" (corrupt DEFLATE stream from the server: {e})"
                return
        self.received += chunk
        self.buf += chunk
        self._cut_lines()

    def _cut_lines(self) -> None:
        while b"\r\n" in self.buf:
            line, self.buf = self.buf.split(b"\r\n", 1)
            self.lines.append(line)
            tag, _, rest = line.partition(b" ")
            if tag in self.starttls_tags:
                self.starttls_tags.discard(tag)
                if rest.startswith(b"OK"):
                    self._start_tls()
            if tag in self.compress_tags:
                self.compress_tags.discard(tag)
                if rest.startswith(b"OK"):
                    self._start_compression()
                    return

    def _start_tls(self) -> None:
        """RFC 9051 §6.2.1: the handshake begins right after the tagged OK; nothing may
        come in the clear after it (if something did, it stays as unexpected lines)."""
        if self.buf:
            self.lines.extend(self.buf.split(b"\r\n"))
            self.buf = b""
        self.sock.settimeout(EXPECT_SECS)
        try:
            self.sock = tls_context().wrap_socket(self.sock)
        except OSError as e:
            self.eof = True
            self.eof_reason = f" (TLS handshake after STARTTLS failed: {e})"

    def _start_compression(self) -> None:
        """RFC 4978 §3: both ways compressed right after the tagged OK's CRLF; what
        came behind it in the same read is already compressed."""
        if self.deflater is None:
            self.deflater = zlib.compressobj(wbits=-15)
        self.inflater = zlib.decompressobj(wbits=-15)
        behind, self.buf = self.buf, b""
        if behind:
            del self.received[len(self.received) - len(behind) :]
            self._take(behind)

    def deflate(self, data: bytes) -> bytes:
        """`data` as the client sends it: deflated and flushed once compression is on."""
        if self.deflater is None or not data:
            return data
        return self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)

    def next_line(self, timeout: float = EXPECT_SECS) -> bytes | None:
        deadline = time.monotonic() + timeout
        while not self.lines and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                break
        return self.lines.popleft() if self.lines else None

    def drain_until(self, deadline: float) -> None:
        """Takes in everything that arrives before `deadline`."""
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                self._read(0.001)
                return
            self._read(left)

    def wait_eof(self, timeout: float = EXPECT_SECS) -> None:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())

    def send(self, data: bytes) -> None:
        self.sock.settimeout(EXPECT_SECS)
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _show(lines) -> str:
    return "".join(f"\n      {line.decode(errors='replace')}" for line in lines)


# ---- Running ----------------------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Deliverer:
    """`! message`: an APPEND from a session of the account's own, one per account,
    signed in over implicit TLS and never selecting a folder."""

    def __init__(self, server, passwords: dict[str, str]):
        self.server = server
        self.passwords = passwords
        self.sessions: dict[str, RawImap] = {}

    def deliver(self, account: str, folder: str, prefix: str, rest: str) -> None:
        if account not in self.sessions:
            client = RawImap(self.server, implicit=True)
            answer = client.login(account, self.passwords[account])
            if not re.match(rb"T\d+ OK", answer):
                raise RuntimeError(f"! message: {account} cannot sign in: {answer!r}")
            self.sessions[account] = client
        raw = crlf(corpus_message(prefix))
        if '"' not in rest:
            rest = f'{rest} "{FAKE_HOST_NOW}"'.lstrip()
        command = f"APPEND {_quote(folder)} {rest} {{{len(raw)}+}}\r\n".encode()
        untagged, tagged = self.sessions[account].cmd(command + raw)
        if not re.match(rb"T\d+ OK \[APPENDUID ", tagged):
            raise RuntimeError(
                f"! message {account} {folder} {prefix}: {untagged!r} {tagged!r}"
            )

    def close(self) -> None:
        for client in self.sessions.values():
            client.close()


def run(transcript: Transcript, server, deliverer: Deliverer) -> None:
    """Runs `transcript` against `server` (an ImapServer with the transcript's accounts
    and settings); raises Mismatch at the first difference."""
    conns: dict[int, Connection] = {}
    matcher = Matcher()
    last_action = time.monotonic()

    def opened(number: int, keep_greeting: bool) -> Connection:
        nonlocal last_action
        if number in conns:
            return conns[number]
        plain = transcript.plain is None or number in transcript.plain
        port = server.imap_port if plain else server.imaps_port
        conn = conns[number] = Connection(number, port, tls=not plain)
        last_action = time.monotonic()
        if not keep_greeting and conn.next_line() is None:
            raise Mismatch(f"connection {number}: no greeting{conn.eof_reason}")
        return conn

    try:
        steps = transcript.steps
        k = 0
        while k < len(steps):
            step = steps[k]
            where = f"line {step.line}: connection {step.conn}"
            if step.kind == "message":
                deliverer.deliver(*step.args)
                last_action = time.monotonic()
                k += 1
            elif step.kind == "quota":
                account, limit = step.args
                server.cli_ok("user", "set", account, "--quota", limit)
                last_action = time.monotonic()
                k += 1
            elif step.kind == "clock":
                # The fake host's clock; the server reads the machine's.
                raise Mismatch(
                    f"line {step.line}: `! clock {step.text}` cannot set the real server's clock"
                )
            elif step.kind == "C":
                conn = opened(step.conn, keep_greeting=False)
                conn.drain_until(last_action + QUIET_SECS)
                if conn.lines:
                    raise Mismatch(f"{where} has unexpected output:{_show(conn.lines)}")
                if conn.eof:
                    raise Mismatch(f"{where} is closed{conn.eof_reason}")
                data = b""
                while k < len(steps) and (steps[k].kind, steps[k].conn) == ("C", step.conn):
                    try:
                        line = substitute(steps[k].text, matcher.variables)
                    except Mismatch as e:
                        raise Mismatch(f"line {steps[k].line}: {e}") from None
                    words = line.split(b" ")
                    if len(words) == 2 and words[1].upper() == b"STARTTLS":
                        conn.starttls_tags.add(words[0])
                    data += conn.deflate(line + b"\r\n")
                    k += 1
                    if (
                        len(words) == 3
                        and [w.upper() for w in words[1:]] == [b"COMPRESS", b"DEFLATE"]
                        and conn.inflater is None
                    ):
                        conn.compress_tags.add(words[0])
                        more = k < len(steps) and (steps[k].kind, steps[k].conn) == (
                            "C",
                            step.conn,
                        )
                        if more:
                            # Pipelined behind it: the start of the compressed stream.
                            conn.deflater = zlib.compressobj(wbits=-15)
                try:
                    conn.send(data)
                except OSError as e:
                    raise Mismatch(f"{where}: write failed: {e}") from None
                last_action = time.monotonic()
            elif step.kind == "S":
                conn = opened(step.conn, keep_greeting=True)
                line = conn.next_line()
                if line is None:
                    why = f" (closed{conn.eof_reason})" if conn.eof else ""
                    raise Mismatch(f"{where} expected {step.text!r}, got nothing{why}")
                if not matcher.matches(step.text, line):
                    conn.drain_until(time.monotonic() + QUIET_SECS)
                    raise Mismatch(
                        f"{where}\n  expected {step.text}\n"
                        f"  got      {line.decode(errors='replace')}{_show(conn.lines)}"
                        f"{matcher.describe_uidvalidity()}"
                    )
                k += 1
            else:  # closed
                conn = opened(step.conn, keep_greeting=True)
                conn.wait_eof()
                if not conn.eof or conn.lines:
                    raise Mismatch(
                        f"{where} is not closed, or has output:{_show(conn.lines)}"
                    )
                k += 1
        deadline = last_action + QUIET_SECS
        for number, conn in sorted(conns.items()):
            conn.drain_until(deadline)
            if conn.lines:
                raise Mismatch(
                    f"end: connection {number} has unexpected output:{_show(conn.lines)}"
                )
            fault = check_syntax(bytes(conn.received))
            if fault:
                raise Mismatch(f"connection {number}: {fault}")
    finally:
        for conn in conns.values():
            conn.close()
