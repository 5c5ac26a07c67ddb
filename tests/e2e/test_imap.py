"""IMAP end to end: the real server, Python's imaplib (STARTTLS and implicit TLS) and a
raw socket client (conftest.RawImap) where the exact bytes matter. Expectations about
the corpus are computed here from the .eml files with the stdlib email package, never
taken from the server."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import email.utils
import imaplib
import itertools
import quopri
import random
import re

import pytest

from conftest import (
    IO_TIMEOUT,
    ImapServer,
    Literal,
    RawImap,
    crlf,
    load_corpus,
    plain_b64,
    tls_context,
)

ALICE = "alice@example.com"
ALICE_PW = "alice-Imap-1"
BOB = "bob@example.com"
BOB_PW = "bob-Imap-2"
READER = "reader@example.com"
SEARCHER = "searcher@example.com"
CORPUS_PW = "corpus-Imap-3"

CAPS_AFTER = (
    "LITERAL+ SASL-IR LOGIN-REFERRALS ENABLE IDLE UIDPLUS MULTIAPPEND CATENATE URL-PARTIAL MOVE NAMESPACE ID UNSELECT CONDSTORE QRESYNC CHILDREN "
    "SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES WITHIN SORT SORT=DISPLAY ESORT PARTIAL CONTEXT=SEARCH CONTEXT=SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES THREAD=REFS STATUS=SIZE METADATA NOTIFY OBJECTID SAVEDATE BINARY PREVIEW PREVIEW=FUZZY SNIPPET=FUZZY UTF8=ACCEPT I18NLEVEL=1 "
    "QUOTA QUOTA=RES-STORAGE"
)
APPENDLIMIT_DEFAULT = 50 * 1024 * 1024

GREETING_TAIL = b"] Portico IMAP4rev2 server ready"

PRIVACY = b"NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS, use STARTTLS"
AUTH_FAILED = b"NO [AUTHENTICATIONFAILED] Authentication failed"
CONTACTADMIN = b"NO [CONTACTADMIN] IMAP access is disabled for this account"

SPECIAL_LIST = [
    b'(\\HasNoChildren \\Archive) "/" "Archive"',
    b'(\\HasNoChildren \\Trash) "/" "Deleted Items"',
    b'(\\HasNoChildren \\Drafts) "/" "Drafts"',
    b'(\\HasNoChildren) "/" "INBOX"',
    b'(\\HasNoChildren \\Junk) "/" "Junk Email"',
    b'(\\HasNoChildren \\Sent) "/" "Sent"',
]
DEFAULT_NAMES = ["Archive", "Deleted Items", "Drafts", "INBOX", "Junk Email", "Sent"]

# imaplib (3.11) has no MOVE; registering it lets m.uid("MOVE", ...) through.
imaplib.Commands.setdefault("MOVE", ("SELECTED",))

MSG = b"From: a@example.com\r\nSubject: small\r\n\r\nsmall body\r\n"


def assert_created(answer) -> None:
    """CREATE's OK, with the new folder's MAILBOXID (RFC 8474 §4.1)."""
    typ, data = answer
    assert typ == "OK" and re.fullmatch(rb"\[MAILBOXID \(F\d+\)\] CREATE completed", data[0]), answer


def small(i: int) -> bytes:
    return (
        f"From: sender{i}@example.com\r\nTo: {ALICE}\r\nSubject: message {i}\r\n"
        f"Message-ID: <m{i}@example.com>\r\n\r\nBody of message {i}.\r\n"
    ).encode()


# --------------------------------------------------------------------------------------
# Helpers: response parsing, modified UTF-7, MIME sections from raw bytes


class Atom(bytes):
    """An IMAP atom (numbers, flags, attribute names) as opposed to a string."""


class Parser:
    """Parses IMAP response data (with literals inline, as RawImap returns them) into
    lists / bytes (strings and literals) / Atom / None (NIL). Raises on anything
    unbalanced, so a successful parse of a whole line proves it well formed."""

    def __init__(self, data: bytes, pos: int = 0):
        self.d = data
        self.i = pos

    def sp(self) -> None:
        while self.d[self.i : self.i + 1] == b" ":
            self.i += 1

    def value(self):
        d = self.d
        c = d[self.i : self.i + 1]
        if c == b"":
            raise ValueError(f"unexpected end of data in {d[:200]!r}")
        if c == b"(":
            self.i += 1
            out = []
            while True:
                if self.d[self.i : self.i + 1] == b")":
                    self.i += 1
                    return out
                if out:
                    if self.d[self.i : self.i + 1] != b" ":
                        # Lists of lists have no space between elements (BODYSTRUCTURE).
                        if self.d[self.i : self.i + 1] != b"(":
                            raise ValueError(f"expected SP at {self.i} in {d[:300]!r}")
                    else:
                        self.i += 1
                out.append(self.value())
        if c == b'"':
            j = self.i + 1
            buf = bytearray()
            while True:
                if j >= len(d):
                    raise ValueError(f"unterminated string in {d[:200]!r}")
                ch = d[j]
                if ch == 0x22:
                    break
                if ch == 0x5C:
                    j += 1
                    ch = d[j]
                buf.append(ch)
                j += 1
            self.i = j + 1
            return bytes(buf)
        if c == b"{" or d[self.i : self.i + 2] == b"~{":  # literal, literal8 (RFC 3516)
            m = re.match(rb"~?\{(\d+)\+?\}\r\n", d[self.i : self.i + 40])
            if not m:
                raise ValueError(f"bad literal at {self.i} in {d[:200]!r}")
            start = self.i + m.end()
            n = int(m.group(1))
            if start + n > len(d):
                raise ValueError("literal runs past the end of the response")
            self.i = start + n
            return d[start : start + n]
        j = self.i
        while j < len(d) and d[j : j + 1] not in (b" ", b"(", b")"):
            if d[j : j + 1] == b"[":
                j = d.index(b"]", j)
            j += 1
        if j == self.i:
            raise ValueError(f"empty atom at {self.i} in {d[:200]!r}")
        atom = d[self.i : j]
        self.i = j
        if atom.upper() == b"NIL":
            return None
        return Atom(atom)


FETCH_RE = re.compile(rb"\* (\d+) FETCH ")


def parse_fetch(line: bytes) -> tuple[int, dict[str, object]]:
    """`* n FETCH (...)` -> (n, {ATTR NAME (upper, section as sent): value})."""
    m = FETCH_RE.match(line)
    assert m, f"not a FETCH response: {line[:200]!r}"
    p = Parser(line, m.end())
    items = p.value()
    assert p.i == len(line), f"trailing data after FETCH: {line[p.i:p.i+100]!r}"
    assert isinstance(items, list) and len(items) % 2 == 0, line[:300]
    out = {}
    for name, value in zip(items[::2], items[1::2]):
        assert isinstance(name, Atom), (name, line[:200])
        key = name.decode()
        key = key.split("[", 1)[0].upper() + ("[" + key.split("[", 1)[1] if "[" in key else "")
        assert key not in out, f"{key} twice in {line[:300]!r}"
        out[key] = value
    return int(m.group(1)), out


def fetches(untagged: list[bytes]) -> list[tuple[int, dict]]:
    return [parse_fetch(line) for line in untagged if FETCH_RE.match(line)]


def flag_updates(untagged: list[bytes]) -> list[tuple]:
    """FETCH responses as (seq, {flags}) or (seq, {flags}, uid) when UID is present:
    flags are a set (RFC 9051 gives them no order)."""
    out = []
    for seq, items in fetches(untagged):
        flags = {bytes(f) for f in items.pop("FLAGS")}
        uid = items.pop("UID", None)
        assert not items, items
        out.append((seq, flags) if uid is None else (seq, flags, int(uid)))
    return out


R = b"\\Recent"  # IMAP4rev1 sessions: a message is \Recent in one session only


def mutf7(name: str) -> str:
    """RFC 3501 §5.1.3 modified UTF-7."""
    out, run = [], []

    def flush():
        if run:
            b64 = base64.b64encode("".join(run).encode("utf-16-be")).decode()
            out.append("&" + b64.rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def listing(m: imaplib.IMAP4, reference: str = '""', pattern: str = "*"):
    """imaplib LIST, lines sorted by name (RFC 9051 does not fix their order)."""
    typ, data = m.list(reference, pattern)
    return typ, (data if data == [None] else by_name(data))


def by_name(lines: list[bytes]) -> list[bytes]:
    return sorted(lines, key=lambda line: line.split(b' "/" ', 1)[-1])


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def seqset(numbers) -> str:
    return ",".join(str(n) for n in numbers)


def parse_uid_set(text: bytes | str) -> list[int]:
    if isinstance(text, bytes):
        text = text.decode()
    out = []
    for item in text.split(","):
        if ":" in item:
            a, b = (int(x) for x in item.split(":"))
            step = 1 if b >= a else -1
            out.extend(range(a, b + step, step))
        else:
            out.append(int(item))
    return out


def split_entity(data: bytes) -> tuple[bytes, bytes]:
    """(header with its terminating empty line, body)."""
    if data.startswith(b"\r\n"):
        return b"\r\n", data[2:]
    i = data.find(b"\r\n\r\n")
    if i < 0:
        return data, b""
    return data[: i + 4], data[i + 4 :]


def content_type(header: bytes) -> tuple[str, str | None]:
    msg = email.message_from_bytes(header, policy=email.policy.compat32)
    return msg.get_content_type(), msg.get_param("boundary")


def multipart_children(body: bytes, boundary: str) -> list[bytes]:
    """RFC 2046 §5.1.1 by hand: the CRLF before a delimiter belongs to the delimiter."""
    delim = b"--" + boundary.encode()
    starts = []
    pos = 0
    while True:
        if pos == 0 and body.startswith(delim):
            at = 0
        else:
            at = body.find(b"\r\n" + delim, pos)
            if at < 0:
                break
            at += 2
        starts.append(at)
        pos = at + len(delim)
        if body[pos : pos + 2] == b"--":
            break
    parts = []
    for k, at in enumerate(starts[:-1]):
        content_start = body.index(b"\r\n", at) + 2
        content_end = starts[k + 1] - 2
        parts.append(body[content_start:content_end])
    return parts


class Entity:
    def __init__(self, data: bytes):
        self.data = data
        self.header, self.body = split_entity(data)
        self.ctype, self.boundary = content_type(self.header)

    def children(self) -> list["Entity"]:
        if self.ctype.startswith("multipart/"):
            return [Entity(p) for p in multipart_children(self.body, self.boundary)]
        return []


def section_bytes(message: bytes, spec: str) -> bytes:
    """The bytes RFC 9051 §6.4.5 says BODY[spec] returns, located by hand."""
    parts = spec.split(".") if spec else []
    nums = []
    while parts and parts[0].isdigit():
        nums.append(int(parts.pop(0)))
    suffix = ".".join(parts)
    top = Entity(message)
    cur = top
    for depth, n in enumerate(nums):
        if cur.ctype == "message/rfc822" and depth > 0:
            cur = Entity(cur.body)
        if cur.ctype.startswith("multipart/"):
            cur = cur.children()[n - 1]
        else:
            assert n == 1, f"part {n} of a non-multipart"
    if suffix == "":
        return cur.body if nums else message
    if suffix == "MIME":
        assert nums
        return cur.header
    inner = Entity(cur.body) if nums else cur
    if suffix == "HEADER":
        return inner.header
    if suffix == "TEXT":
        return inner.body
    raise AssertionError(spec)


def header_fields(header: bytes, names: list[str], exclude: bool = False) -> bytes:
    """RFC 9051 HEADER.FIELDS / HEADER.FIELDS.NOT: the matching fields as they are (folds
    included), in message order, then the empty line."""
    fields: list[bytes] = []
    for line in header[:-4].split(b"\r\n") if header.endswith(b"\r\n\r\n") else []:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    wanted = {n.lower() for n in names}
    keep = [f for f in fields if (f.split(b":", 1)[0].strip().decode().lower() in wanted) != exclude]
    return b"".join(f + b"\r\n" for f in keep) + b"\r\n"


def decoded_part(message: bytes, part: str) -> bytes:
    """RFC 3516 BINARY[part]: the part's body with its transfer encoding undone."""
    header = section_bytes(message, part + ".MIME")
    body = section_bytes(message, part)
    cte = email.message_from_bytes(header, policy=email.policy.compat32).get(
        "Content-Transfer-Encoding", "7bit").strip().lower()
    if cte == "base64":
        return base64.b64decode(b"".join(body.split()))
    if cte == "quoted-printable":
        return quopri.decodestring(body)
    return body


# --------------------------------------------------------------------------------------
# Python-side expectations for SEARCH


def header_text(msg, name: str) -> str:
    """A header decoded (encoded words, raw UTF-8), all occurrences, lowercase."""
    values = msg.get_all(name) or []
    out = []
    for v in values:
        try:
            out.append(str(v))
        except Exception:  # noqa: BLE001
            out.append(str(email.header.make_header(email.header.decode_header(v))))
    return "\n".join(out).lower()


def body_text(msg) -> str:
    out = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            try:
                out.append(part.get_content())
            except Exception:  # noqa: BLE001
                payload = part.get_payload(decode=True) or b""
                out.append(payload.decode("utf-8", "replace"))
    return "\n".join(out).lower()


def all_header_text(msg) -> str:
    return "\n".join(f"{k}: {header_text(msg, k)}" for k in set(msg.keys())).lower()


class CorpusInfo:
    def __init__(self, name: str, data: bytes):
        self.name = name
        self.stored = crlf(data)
        self.msg = email.message_from_bytes(self.stored, policy=email.policy.default)
        self.raw_header, self.raw_body = split_entity(self.stored)
        self.sent = self._sent_date()

    def _sent_date(self) -> dt.date | None:
        value = self.msg.get("Date")
        if value is None:
            return None
        parsed = email.utils.parsedate_tz(str(value))
        if parsed is None:
            return None
        return dt.date(parsed[0], parsed[1], parsed[2])

    def header(self, name: str) -> str:
        return header_text(self.msg, name)

    def text(self) -> str:
        return all_header_text(self.msg) + "\n" + body_text(self.msg)

    def body(self) -> str:
        return body_text(self.msg)


def imap_date(d: dt.date) -> str:
    return f"{d.day}-{d.strftime('%b')}-{d.year}"


# --------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def corpus_node(portico_bin, tmp_path_factory):
    """One server for the read-mostly corpus tests: the whole corpus delivered to
    READER (never modified) and SEARCHER (flags change), in file order."""
    corpus = load_corpus()
    server = ImapServer(portico_bin, tmp_path_factory.mktemp("imap-corpus") / "srv")
    server.start()
    try:
        uids = {}
        for user in (READER, SEARCHER):
            server.add_user(user, CORPUS_PW)
            for i, (name, data) in enumerate(corpus, 1):
                uid = server.deliver(user, data)
                assert uid == i
                uids[name] = uid
        infos = [CorpusInfo(name, data) for name, data in corpus]
        yield server, infos
    finally:
        server.kill()


@pytest.fixture
def corpus_box(corpus_node, request):
    server, infos = corpus_node
    servers = getattr(request.node, "_portico_servers", None) or []
    servers.append(server)
    request.node._portico_servers = servers
    return server, infos


@pytest.fixture
def alice(imap_server):
    imap_server.add_user(ALICE, ALICE_PW)
    return imap_server


def raw_login(server: ImapServer, user=ALICE, password=ALICE_PW, implicit=True) -> RawImap:
    r = RawImap(server, implicit=implicit)
    if not implicit:
        r.starttls()
    tagged = r.login(user, password)
    assert tagged.startswith(b"T001 OK [CAPABILITY "), tagged
    return r


def select(r: RawImap, mailbox: str = "INBOX") -> list[bytes]:
    untagged, tagged = r.cmd(f"SELECT {quote(mailbox)}")
    assert tagged.endswith(b" OK [READ-WRITE] SELECT completed"), (untagged, tagged)
    return untagged


def uid_map(r: RawImap) -> list[int]:
    """UIDs by sequence number (index 0 = message 1), checking the numbering."""
    untagged, tagged = r.cmd("FETCH 1:* (UID)")
    assert tagged.endswith(b" OK FETCH completed"), tagged
    got = fetches(untagged)
    assert [seq for seq, _ in got] == list(range(1, len(got) + 1)), untagged
    return [int(items["UID"]) for _, items in got]


def fetch_bodies(r: RawImap, uids) -> dict[int, bytes]:
    untagged, tagged = r.cmd(f"UID FETCH {seqset(uids)} (UID BODY.PEEK[])")
    assert tagged.endswith(b" OK UID FETCH completed"), tagged
    return {int(i["UID"]): i["BODY[]"] for _, i in fetches(untagged)}


# --------------------------------------------------------------------------------------
# Greeting, capabilities, TLS


def caps_of(line: bytes, prefix: bytes, suffix: bytes = b"") -> set[str]:
    """The capability names in a greeting / CAPABILITY line / response code (order is
    not significant, RFC 9051 §7.2.2; each must appear once)."""
    assert line.startswith(prefix) and line.endswith(suffix), line
    names = line[len(prefix) : len(line) - len(suffix)].decode().split(" ")
    assert len(names) == len(set(names)), names
    return set(names)


def test_greeting_and_capabilities(imap_server):
    after = set(CAPS_AFTER.split()) | {f"APPENDLIMIT={APPENDLIMIT_DEFAULT}"}
    caps_plain = {"IMAP4rev1", "IMAP4rev2", "STARTTLS", "LOGINDISABLED"} | after
    caps_tls = {"IMAP4rev1", "IMAP4rev2", "AUTH=PLAIN"} | after
    caps_auth = {"IMAP4rev1", "IMAP4rev2", "COMPRESS=DEFLATE", "UNAUTHENTICATE"} | after

    r = RawImap(imap_server)
    assert caps_of(r.greeting, b"* OK [CAPABILITY ", GREETING_TAIL) == caps_plain
    untagged, tagged = r.cmd("CAPABILITY")
    assert tagged == b"T001 OK CAPABILITY completed" and len(untagged) == 1
    assert caps_of(untagged[0], b"* CAPABILITY ") == caps_plain
    r.starttls()
    untagged, tagged = r.cmd("CAPABILITY")
    assert tagged == b"T003 OK CAPABILITY completed" and len(untagged) == 1
    assert caps_of(untagged[0], b"* CAPABILITY ") == caps_tls
    imap_server.add_user(ALICE, ALICE_PW)
    assert caps_of(r.login(ALICE, ALICE_PW), b"T004 OK [CAPABILITY ", b"] Logged in") == caps_auth
    untagged, tagged = r.cmd("CAPABILITY")
    assert tagged == b"T005 OK CAPABILITY completed" and len(untagged) == 1
    assert caps_of(untagged[0], b"* CAPABILITY ") == caps_auth
    # STARTTLS and LOGIN are not valid any more.
    assert r.cmd("STARTTLS") == ([], b"T006 BAD Already authenticated")
    assert r.cmd("NAMESPACE") == ([b'* NAMESPACE (("" "/")) NIL NIL'],
                                  b"T007 OK NAMESPACE completed")
    assert r.cmd("LOGOUT") == ([b"* BYE Logging out"], b"T008 OK LOGOUT completed")
    assert r.at_eof()
    r.close()

    s = RawImap(imap_server, implicit=True)
    assert caps_of(s.greeting, b"* OK [CAPABILITY ", GREETING_TAIL) == caps_tls
    assert s.cmd("STARTTLS") == ([], b"T001 BAD TLS is already active")
    s.close()

    # imaplib over both kinds of TLS.
    m = imap_server.imap_starttls()
    assert m.login(ALICE, ALICE_PW)[0] == "OK"
    assert m.logout()[0] == "BYE"
    m = imap_server.imap_ssl()
    assert caps_of(m.welcome, b"* OK [CAPABILITY ", GREETING_TAIL) == caps_tls
    assert m.login(ALICE, ALICE_PW)[0] == "OK"
    assert m.logout()[0] == "BYE"


def test_starttls_discards_pipelined_plaintext(alice):
    """RFC 9051 §6.2.1: commands sent after STARTTLS in the same plaintext packet are
    not run (CVE-2011-0411-style injection)."""
    r = RawImap(alice)
    r.send(b"S1 STARTTLS\r\nS2 LOGIN " + ALICE.encode() + b" " + ALICE_PW.encode()
           + b"\r\nS3 CAPABILITY\r\n")
    assert r.line() == b"S1 OK Begin TLS negotiation now"
    r.sock = tls_context().wrap_socket(r.sock)
    r.buf = b""
    # Over TLS, the injected LOGIN and CAPABILITY are never answered: the next
    # response belongs to the next command, and the session is not authenticated.
    assert r.cmd("NOOP") == ([], b"T001 OK NOOP completed")
    assert r.cmd("SELECT INBOX") == ([], b"T002 BAD Command not valid before authentication")
    assert r.login(ALICE, ALICE_PW).startswith(b"T003 OK [CAPABILITY ")
    r.close()


def test_login_with_special_characters(imap_server):
    password = 'p"a\\ss wörd{3}'
    imap_server.add_user(ALICE, password)
    # Quoted string with escapes cannot carry the ö; a literal can.
    r = RawImap(imap_server, implicit=True)
    assert r.cmd('LOGIN "alice@example.com" ', Literal(password.encode()))[1].startswith(
        b"T001 OK [CAPABILITY ")
    r.close()
    # User names are case-insensitive; AUTHENTICATE PLAIN carries UTF-8 as is.
    r = RawImap(imap_server, implicit=True)
    assert r.cmd(f"AUTHENTICATE PLAIN {plain_b64(ALICE.upper(), password)}")[1].startswith(
        b"T001 OK [CAPABILITY ")
    r.close()
    ascii_pw = 'q"u\\ote d'
    imap_server.add_user(BOB, ascii_pw)
    m = imap_server.imap_ssl()  # imaplib quotes and escapes the password
    assert m.login(BOB, ascii_pw)[0] == "OK"
    m.logout()
    r = RawImap(imap_server, implicit=True)
    assert r.cmd(f'LOGIN {BOB} "q\\"u\\\\ote d"')[1].startswith(b"T001 OK [CAPABILITY ")
    r.close()


# --------------------------------------------------------------------------------------
# LIST / LSUB / CREATE / RENAME / DELETE


def test_list_special_use_folders(alice):
    m = alice.imap_login(ALICE, ALICE_PW)
    assert listing(m) == ("OK", SPECIAL_LIST)
    assert listing(m, '""', "*") == ("OK", SPECIAL_LIST)
    assert listing(m, '""', "%") == ("OK", SPECIAL_LIST)
    assert listing(m, '""', '""') == ("OK", [b'(\\Noselect) "/" ""'])
    assert listing(m, '""', "J*") == ("OK", [SPECIAL_LIST[4]])
    assert listing(m, '""', "inbox") == ("OK", [SPECIAL_LIST[3]])
    assert listing(m, '""', "nothing*") == ("OK", [None])
    assert m.lsub('""', "*") == (
        "OK", [f'() "/" {quote(n)}'.encode() for n in DEFAULT_NAMES])

    # With children: "*" lists the tree, "%" one level, and LSUB follows SUBSCRIBE.
    assert_created(m.create("Projects/2024/Q1"))
    star = [
        *SPECIAL_LIST,
        b'(\\HasChildren) "/" "Projects"',
        b'(\\HasChildren) "/" "Projects/2024"',
        b'(\\HasNoChildren) "/" "Projects/2024/Q1"',
    ]
    assert listing(m, '""', "*") == ("OK", by_name(star))
    assert listing(m, '""', "%") == ("OK", by_name(star[:7]))
    assert listing(m, '""', "Projects/%") == ("OK", [star[7]])
    assert listing(m, "Projects", "%") == ("OK", [star[7]])
    assert listing(m, '""', "%/%/%") == ("OK", [star[8]])
    assert m.subscribe('"Projects/2024/Q1"') == ("OK", [b"SUBSCRIBE completed"])
    assert m.unsubscribe('"Junk Email"') == ("OK", [b"UNSUBSCRIBE completed"])
    # CREATE subscribes what it creates (the server's choice; RFC 9051 allows it).
    subscribed = [n for n in DEFAULT_NAMES if n != "Junk Email"] + [
        "Projects", "Projects/2024", "Projects/2024/Q1"]
    typ, data = m.lsub('""', "*")
    assert (typ, by_name(data)) == (
        "OK", by_name([f'() "/" {quote(n)}'.encode() for n in subscribed]))
    assert m.unsubscribe('"Projects/2024"') == ("OK", [b"UNSUBSCRIBE completed"])
    assert m.lsub('""', "Projects*") == (
        "OK", [b'() "/" "Projects"', b'() "/" "Projects/2024/Q1"'])
    m.logout()

    # RFC 6154 / RFC 5258 forms, exact lines on the wire.
    r = raw_login(alice)
    assert r.cmd('LIST (SPECIAL-USE) "" "*"') == (
        [b"* LIST " + line for line in SPECIAL_LIST if b"INBOX" not in line],
        b"T002 OK LIST completed",
    )
    untagged, tagged = r.cmd('LIST "" "*" RETURN (SUBSCRIBED)')
    assert tagged == b"T003 OK LIST completed"
    assert untagged[4] == b'* LIST (\\HasNoChildren \\Junk) "/" "Junk Email"'
    assert untagged[3] == b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"'
    untagged, tagged = r.cmd('LIST "" "INBOX" RETURN (STATUS (MESSAGES UNSEEN))')
    assert (untagged, tagged) == (
        [b'* LIST (\\HasNoChildren) "/" "INBOX"',
         b'* STATUS "INBOX" (MESSAGES 0 UNSEEN 0)'],
        b"T004 OK LIST completed",
    )
    r.close()


def test_create_rename_delete_tree(alice):
    m = alice.imap_login(ALICE, ALICE_PW)
    assert_created(m.create("a/b/c"))
    assert m.create("a/b") == ("NO", [b"[ALREADYEXISTS] Mailbox already exists"])
    assert m.create("INBOX") == ("NO", [b"[ALREADYEXISTS] Mailbox already exists"])
    # A trailing separator is dropped (RFC 9051 §6.3.4).
    assert_created(m.create("solo/"))
    assert listing(m, '""', "solo*") == ("OK", [b'(\\HasNoChildren) "/" "solo"'])
    assert m.delete("solo") == ("OK", [b"DELETE completed"])
    # One message in each level, to see them move with the rename.
    put = {}
    for name in ("a", "a/b", "a/b/c"):
        body = f"Subject: in {name}\r\n\r\nstored in {name}\r\n".encode()
        typ, data = m.append(name, None, None, body)
        assert typ == "OK", data
        put[name] = body
    assert listing(m, '""', "a*") == ("OK", [
        b'(\\HasChildren) "/" "a"',
        b'(\\HasChildren) "/" "a/b"',
        b'(\\HasNoChildren) "/" "a/b/c"',
    ])

    # RENAME a x moves the whole subtree (RFC 9051 §6.3.6), messages included.
    assert m.rename("a", "x") == ("OK", [b"RENAME completed"])
    assert listing(m, '""', "a*") == ("OK", [None])
    assert listing(m, '""', "x*") == ("OK", [
        b'(\\HasChildren) "/" "x"',
        b'(\\HasChildren) "/" "x/b"',
        b'(\\HasNoChildren) "/" "x/b/c"',
    ])
    for old, body in put.items():
        new = "x" + old[1:]
        assert m.select(quote(new)) == ("OK", [b"1"])
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == body, (new, data)
    assert m.select("a/b/c") == ("NO", [b"[NONEXISTENT] Mailbox does not exist"])
    assert m.rename("x/b", "Sent") == ("NO", [b"[ALREADYEXISTS] Mailbox already exists"])
    assert m.rename("nope", "nope2") == ("NO", [b"[NONEXISTENT] Mailbox does not exist"])

    # DELETE of a name with inferiors: its messages go, it becomes \Noselect.
    assert m.delete("x") == ("OK", [b"DELETE completed"])
    assert listing(m, '""', "x*") == ("OK", [
        b'(\\Noselect \\HasChildren) "/" "x"',
        b'(\\HasChildren) "/" "x/b"',
        b'(\\HasNoChildren) "/" "x/b/c"',
    ])
    # A \Noselect name cannot be selected.
    assert m.select("x") == ("NO", [b"[NONEXISTENT] Mailbox does not exist"])
    assert m.status("x/b/c", "(MESSAGES)") == ("OK", [b'"x/b/c" (MESSAGES 1)'])
    # RFC 9051 §6.3.4 example: a \Noselect name with inferiors cannot be deleted;
    # once the inferiors are gone, it can.
    typ, data = m.delete("x")
    assert typ == "NO", data
    assert listing(m, '""', "x") == ("OK", [b'(\\Noselect \\HasChildren) "/" "x"'])
    assert m.delete("x/b/c") == ("OK", [b"DELETE completed"])
    assert listing(m, '""', "x*") == ("OK", [
        b'(\\Noselect \\HasChildren) "/" "x"',
        b'(\\HasNoChildren) "/" "x/b"',
    ])
    assert m.delete("x/b") == ("OK", [b"DELETE completed"])
    # The \Noselect "x" has nothing under it any more. RFC 9051's example keeps it
    # listed until deleted; this server drops such a placeholder at once. Either way
    # LIST and DELETE must agree.
    left = listing(m, '""', "x*")
    if left == ("OK", [None]):
        assert m.delete("x") == ("NO", [b"[NONEXISTENT] Mailbox does not exist"])
    else:
        assert left == ("OK", [b'(\\Noselect \\HasNoChildren) "/" "x"'])
        assert m.delete("x") == ("OK", [b"DELETE completed"])
    assert listing(m, '""', "*") == ("OK", SPECIAL_LIST)
    assert m.delete("INBOX") == ("NO", [b"[CANNOT] INBOX cannot be deleted"])
    assert listing(m, '""', "*") == ("OK", SPECIAL_LIST)
    m.logout()


def test_rename_inbox_moves_messages(alice):
    stored = [crlf(small(i)) for i in range(1, 4)]
    for data in stored:
        alice.deliver(ALICE, data)
    m = alice.imap_login(ALICE, ALICE_PW)
    assert m.select("INBOX") == ("OK", [b"3"])
    assert m.store("2", "+FLAGS", "(\\Flagged)")[0] == "OK"
    m.unselect()
    assert m.rename("INBOX", "Old/Inbox") == ("OK", [b"RENAME completed"])
    assert m.status("INBOX", "(MESSAGES UIDNEXT)")[1][0].startswith(b'"INBOX" (MESSAGES 0 ')
    assert m.status('"Old/Inbox"', "(MESSAGES)") == ("OK", [b'"Old/Inbox" (MESSAGES 3)'])
    assert listing(m, '""', "*") == ("OK", by_name(SPECIAL_LIST + [
        b'(\\HasChildren) "/" "Old"',
        b'(\\HasNoChildren) "/" "Old/Inbox"',
    ]))
    assert m.select('"Old/Inbox"') == ("OK", [b"3"])
    typ, data = m.fetch("1:3", "(FLAGS BODY.PEEK[])")
    assert typ == "OK"
    got = [d[1] for d in data if isinstance(d, tuple)]
    assert got == stored
    assert b"\\Flagged" in data[2][0] and b"\\Flagged" not in data[0][0]
    assert m.select("INBOX") == ("OK", [b"0"])
    # New mail goes to the (new, empty) INBOX.
    uid = alice.deliver(ALICE, MSG)
    assert m.noop()[0] == "OK"
    assert m.fetch("1", "(UID BODY.PEEK[])")[1][0] == (
        f"1 (UID {uid} BODY[] {{{len(MSG)}}}".encode(), MSG)
    m.logout()


# --------------------------------------------------------------------------------------
# APPEND


def test_append_to_sent_byte_exact(alice):
    body = crlf(small(7)) + b"\r\n-- \r\nsig with trailing space \r\n"
    m = alice.imap_login(ALICE, ALICE_PW)
    date = imaplib.Time2Internaldate(
        dt.datetime(2024, 3, 5, 10, 11, 12, tzinfo=dt.timezone(dt.timedelta(hours=1))))
    assert date == '"05-Mar-2024 10:11:12 +0100"'
    typ, data = m.append("Sent", "(\\Seen $Forwarded)", date, body)
    assert typ == "OK", data
    code = re.fullmatch(rb"\[APPENDUID (\d+) (\d+)\] APPEND completed", data[0])
    assert code, data
    uidvalidity, uid = int(code.group(1)), int(code.group(2))
    assert uid == 1

    typ, data = m.status("Sent", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE)")
    assert data == [
        f'"Sent" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY {uidvalidity} UNSEEN 0 SIZE {len(body)})'
        .encode()]
    assert m.select("Sent") == ("OK", [b"1"])
    typ, data = m.uid("FETCH", str(uid), "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    head = re.fullmatch(
        rb'1 \(UID 1 FLAGS \(([^)]*)\) INTERNALDATE "05-Mar-2024 10:11:12 \+0100" '
        rb"RFC822.SIZE (\d+) BODY\[\] \{(\d+)\}", data[0][0])
    assert head, data
    # The first session to see the folder gets the new message as \Recent (RFC 3501).
    assert set(head.group(1).split()) == {b"\\Seen", b"$Forwarded", R}
    assert int(head.group(2)) == int(head.group(3)) == len(body)
    assert data[0][1] == body
    # A second APPEND gets the next UID; without flags the message is unseen.
    typ, data = m.append("Sent", None, None, MSG)
    assert data == [f"[APPENDUID {uidvalidity} 2] APPEND completed".encode()]
    assert m.status("Sent", "(MESSAGES UNSEEN)") == (
        "OK", [b'"Sent" (MESSAGES 2 UNSEEN 1)'])
    # A missing folder: TRYCREATE, and nothing is created.
    assert m.append("Nowhere", None, None, MSG) == (
        "NO", [b"[TRYCREATE] Mailbox does not exist"])
    assert listing(m, '""', "Nowhere") == ("OK", [None])
    # A 3 MB message round-trips byte-exact too.
    big = b"Subject: big\r\n\r\n" + b"".join(
        b"line %07d " % i + b"x" * 80 + b"\r\n" for i in range(33000))
    typ, data = m.append("Drafts", "(\\Draft)", None, big)
    assert typ == "OK" and re.fullmatch(rb"\[APPENDUID \d+ 1\] APPEND completed", data[0]), data
    assert m.select("Drafts") == ("OK", [b"1"])
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == big
    m.logout()


# --------------------------------------------------------------------------------------
# The corpus: FETCH


def test_header_sync_reads_dates_and_sizes_of_new_messages(alice):
    """A client's header sync (FLAGS INTERNALDATE RFC822.SIZE and header fields) is
    answered from what the folder's actor keeps in memory: messages appended and
    copied while the folder is selected must show the same date and size as a fresh
    read from the store does."""
    def at(day, hour, offset):
        zone = dt.timezone(dt.timedelta(hours=offset))
        return imaplib.Time2Internaldate(dt.datetime(2024, 6, day, hour, 30, 0, tzinfo=zone))

    watcher = alice.imap_login(ALICE, ALICE_PW)
    writer = alice.imap_login(ALICE, ALICE_PW)
    assert writer.create("Old")[0] == "OK"
    # Bare LF line ends: stored (and sized) with CRLF.
    archived = b"Subject: archived\nFrom: a@example.com\n\nold\nmail\n"
    assert writer.append("Old", None, at(11, 8, -5), archived)[0] == "OK"
    # Enough messages for the FETCH to read the kept header fields as one range (the
    # path that takes the rest from the listing).
    first = crlf(small(1))
    for _ in range(70):
        assert writer.append("INBOX", None, at(12, 9, 2), first)[0] == "OK"
    # The watcher's SELECT makes the actor keep the folder's listing.
    assert watcher.select("INBOX") == ("OK", [b"70"])
    second = b"Subject: second\nFrom: b@example.com\n\n" + b"line\n" * 50
    assert writer.append("INBOX", "(\\Flagged)", at(13, 23, 9), second)[0] == "OK"
    assert writer.select("Old")[0] == "OK"
    assert writer.copy("1", "INBOX")[0] == "OK"
    assert watcher.noop()[0] == "OK"

    sync = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Subject)])"
    typ, data = watcher.uid("FETCH", "1:*", sync)
    assert typ == "OK", data
    header_sync = re.compile(
        rb'(\d+) \(UID (\d+) FLAGS \(([^)]*)\) INTERNALDATE "([^"]+)" RFC822.SIZE (\d+) '
        rb"BODY\[HEADER.FIELDS \(Subject\)\] \{\d+\}")
    seen = []
    for item in data:
        if isinstance(item, tuple):
            found = header_sync.fullmatch(item[0])
            assert found, item
            seen.append((int(found.group(2)), found.group(4), int(found.group(5)), item[1]))
    lf = lambda b: b.count(b"\n") - b.count(b"\r\n")  # noqa: E731
    assert seen == [
        (uid, at(12, 9, 2).strip('"').encode(), len(first), b"Subject: message 1\r\n\r\n")
        for uid in range(1, 71)
    ] + [
        (71, at(13, 23, 9).strip('"').encode(), len(second) + lf(second),
         b"Subject: second\r\n\r\n"),
        (72, at(11, 8, -5).strip('"').encode(), len(archived) + lf(archived),
         b"Subject: archived\r\n\r\n"),
    ], data
    # A client's incremental sync asks for the new messages only: too few for a range
    # read, each message's kept lines are read alone, and the rest is the same.
    typ, data = watcher.uid("FETCH", "71:*", sync)
    assert typ == "OK", data
    recent = [header_sync.fullmatch(item[0]) for item in data if isinstance(item, tuple)]
    assert [(int(f.group(2)), f.group(4), int(f.group(5))) for f in recent] == [
        (uid, date, size) for uid, date, size, _ in seen[70:]
    ], data
    assert [item[1] for item in data if isinstance(item, tuple)] == [
        lines for *_, lines in seen[70:]
    ], data
    # A session that reads the folder afresh sees the same, and each size is the
    # stored message's.
    reader = alice.imap_login(ALICE, ALICE_PW)
    assert reader.select("INBOX", readonly=True)[0] == "OK"
    typ, fresh = reader.uid("FETCH", "1:*", "(INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK", fresh
    stored = [(f[0], len(f[1])) for f in fresh if isinstance(f, tuple)]
    assert len(stored) == 72
    for (uid, date, size, _), (line, length) in zip(seen, stored):
        assert f'INTERNALDATE "{date.decode()}" RFC822.SIZE {size} '.encode() in line, line
        assert size == length
    for m in (watcher, writer, reader):
        m.logout()


def test_corpus_fetch_byte_exact(corpus_box):
    server, infos = corpus_box
    r = raw_login(server, READER, CORPUS_PW)
    untagged, tagged = r.cmd("EXAMINE INBOX")
    assert tagged == b"T002 OK [READ-ONLY] EXAMINE completed", tagged
    assert untagged[0] == f"* {len(infos)} EXISTS".encode()
    untagged, tagged = r.cmd(
        "FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[] ENVELOPE BODYSTRUCTURE)")
    assert tagged == b"T003 OK FETCH completed"
    got = fetches(untagged)
    assert len(got) == len(untagged) == len(infos)
    for (seq, items), info in zip(got, infos):
        where = f"{info.name} (seq {seq})"
        assert int(items["UID"]) == seq, where
        # Never selected before: \Recent at most (EXAMINE does not take it away).
        assert set(items["FLAGS"]) <= {R}, where
        assert items["BODY[]"] == info.stored, where
        assert int(items["RFC822.SIZE"]) == len(info.stored), where
        env = items["ENVELOPE"]
        assert isinstance(env, list) and len(env) == 10, (where, env)
        date = info.msg.get("Date")
        assert env[0] == (None if date is None else str(date).strip().encode()), where
        mid = info.msg.get("Message-ID")
        assert env[9] == (None if mid is None else str(mid).strip().encode()), where
        # From: mailbox and host of the first address.
        frm = email.message_from_bytes(
            info.raw_header, policy=email.policy.compat32).get("From")
        frm = str(frm) if frm is not None and info.raw_header.isascii() else None
        if frm:
            _, addr = email.utils.parseaddr(frm)
            local, _, host = addr.rpartition("@")
            assert env[2] and env[2][0][2].decode().lower() == local.lower(), (where, env[2])
            assert env[2][0][3].decode().lower() == host.lower(), (where, env[2])
        # BODYSTRUCTURE: the top-level type as Python's parser sees it.
        bs = items["BODYSTRUCTURE"]
        assert isinstance(bs, list), where
        ctype = info.msg.get_content_type()
        if isinstance(bs[0], list):
            subtype = next(x for x in bs if not isinstance(x, list))
            assert f"multipart/{subtype.decode().lower()}" == ctype, (where, bs)
        else:
            assert f"{bs[0].decode()}/{bs[1].decode()}".lower() == ctype, (where, bs[:2])
            assert int(bs[6]) == len(info.raw_body), (where, "body size")
            if bs[0].upper() == b"TEXT" and info.raw_body.endswith(b"\r\n"):
                assert int(bs[7]) == info.raw_body.count(b"\r\n"), (where, "body lines")
    # EXAMINE and BODY.PEEK never set \Seen.
    untagged, _ = r.cmd("SEARCH SEEN")
    assert untagged == [b"* SEARCH"]
    r.close()


NESTED = {
    "005-multipart-mixed-attachments.eml": [
        "HEADER", "TEXT", "1", "1.MIME", "2", "2.MIME", "3", "3.MIME", "4", "4.MIME"],
    "006-forwarded-rfc822.eml": [
        "1", "1.MIME", "2", "2.MIME", "2.HEADER", "2.TEXT", "2.1", "TEXT"],
    "007-nested-multipart.eml": [
        "1", "1.MIME", "1.1", "1.1.MIME", "1.1.1", "1.1.1.MIME", "1.1.2", "1.1.2.MIME",
        "1.2", "1.2.MIME", "2", "2.MIME", "HEADER", "TEXT"],
    "019-multipart-signed.eml": ["1", "1.MIME", "2", "2.MIME", "TEXT"],
}


def bodystructure_leaves(bs, number=""):
    """(part number, [type, subtype, params, id, desc, enc, size, ...]) for each
    non-multipart body, message/rfc822 ones and what they enclose included."""
    if isinstance(bs[0], list):
        children = itertools.takewhile(lambda c: isinstance(c, list), bs)
        for n, child in enumerate(children, 1):
            yield from bodystructure_leaves(child, f"{number}.{n}" if number else str(n))
        return
    yield number or "1", bs
    if bs[0].upper() == b"MESSAGE" and bs[1].upper() == b"RFC822":
        inner = bs[8]
        if isinstance(inner[0], list):
            yield from bodystructure_leaves(inner, number or "1")
        else:
            yield from bodystructure_leaves(inner, f"{number or '1'}.1")


@pytest.mark.parametrize("name", sorted(NESTED))
def test_corpus_part_fetches(corpus_box, name):
    server, infos = corpus_box
    seq = next(i for i, info in enumerate(infos, 1) if info.name == name)
    stored = infos[seq - 1].stored
    r = raw_login(server, READER, CORPUS_PW)
    r.ok("EXAMINE INBOX")
    specs = NESTED[name]
    untagged, tagged = r.cmd(
        f"FETCH {seq} (" + " ".join(f"BODY.PEEK[{s}]" for s in specs) + " BODYSTRUCTURE)")
    assert tagged == b"T003 OK FETCH completed"
    [(got_seq, items)] = fetches(untagged)
    assert got_seq == seq
    for spec in specs:
        assert items[f"BODY[{spec}]"] == section_bytes(stored, spec), spec
    # Partial fetch of a part: BODY[1]<5.10> is that slice, named BODY[1]<5>.
    untagged, tagged = r.cmd(f"FETCH {seq} (BODY.PEEK[1]<5.10>)")
    [(_, items)] = fetches(untagged)
    assert items == {"BODY[1]<5>": section_bytes(stored, "1")[5:15]}
    # HEADER.FIELDS (.NOT), at the top and, for 006, inside the forwarded message.
    top_header = section_bytes(stored, "HEADER")
    untagged, tagged = r.cmd(
        f"FETCH {seq} (BODY.PEEK[HEADER.FIELDS (SUBJECT from Message-ID)] "
        f"BODY.PEEK[HEADER.FIELDS.NOT (Subject Content-Type)])")
    [(_, items)] = fetches(untagged)
    assert items == {
        "BODY[HEADER.FIELDS (SUBJECT from Message-ID)]":
            header_fields(top_header, ["subject", "from", "message-id"]),
        "BODY[HEADER.FIELDS.NOT (Subject Content-Type)]":
            header_fields(top_header, ["subject", "content-type"], exclude=True),
    }, items
    if name.startswith("006"):
        untagged, _ = r.cmd(f"FETCH {seq} (BODY.PEEK[2.HEADER.FIELDS (Subject)])")
        [(_, items)] = fetches(untagged)
        assert list(items.values()) == [b"Subject: Original message\r\n\r\n"], items
    # BINARY (RFC 3516): each leaf's body decoded, and its size.
    leaves = [p for p in specs if p[0].isdigit() and not p.endswith(("MIME", "HEADER", "TEXT"))
              and not section_bytes(stored, p + ".MIME").lower().startswith(
                  (b"content-type: multipart", b"content-type: message"))]
    untagged, tagged = r.cmd(
        f"FETCH {seq} (" + " ".join(f"BINARY.PEEK[{p}] BINARY.SIZE[{p}]" for p in leaves) + ")")
    assert tagged == b"T%03d OK FETCH completed" % r.n, tagged
    [(_, items)] = fetches(untagged)
    for p in leaves:
        want = decoded_part(stored, p)
        assert items[f"BINARY[{p}]"] == want, p
        assert int(items[f"BINARY.SIZE[{p}]"]) == len(want), p
    # Leaf sizes in BODYSTRUCTURE are the octets of each part's body.
    untagged, _ = r.cmd(f"FETCH {seq} (BODYSTRUCTURE)")
    [(_, items)] = fetches(untagged)
    for part, leaf in bodystructure_leaves(items["BODYSTRUCTURE"]):
        body = section_bytes(stored, part)
        assert int(leaf[6]) == len(body), (part, leaf[:7])
        if leaf[0].upper() == b"TEXT" and body.endswith(b"\r\n"):
            assert int(leaf[7]) == body.count(b"\r\n"), (part, leaf[:8])
    r.close()


# --------------------------------------------------------------------------------------
# The corpus: SEARCH


def expect(infos, pred) -> list[int]:
    return [i for i, info in enumerate(infos, 1) if pred(info)]


def search(m: imaplib.IMAP4, *criteria) -> list[int]:
    typ, data = m.search(None, *criteria)
    assert typ == "OK", (criteria, data)
    return [int(x) for x in data[0].split()]


def test_search_corpus_headers_sizes_logic(corpus_box):
    server, infos = corpus_box
    m = server.imap_login(SEARCHER, CORPUS_PW)
    assert m.select("INBOX") == ("OK", [str(len(infos)).encode()])
    everything = list(range(1, len(infos) + 1))

    def frm(s):
        return lambda i: s in i.header("from")

    def subj(s):
        return lambda i: s in i.header("subject")

    cases = [
        (("FROM", "alice"), frm("alice")),
        (("FROM", "CAROL"), frm("carol")),
        (("FROM", '"example.org"'), frm("example.org")),
        (("SUBJECT", "budget"), subj("budget")),
        (("SUBJECT", '"[ops]"'), subj("[ops]")),
        (("SUBJECT", '"quarterly dublin"'), subj("quarterly dublin")),
        (("TO", "bob"), lambda i: "bob" in i.header("to")),
        (("CC", "dave"), lambda i: "dave" in i.header("cc")),
        (("HEADER", "Message-ID", '"<mixed-5@example.com>"'),
         lambda i: "<mixed-5@example.com>" in i.header("message-id")),
        (("LARGER", "3000"), lambda i: len(i.stored) > 3000),
        (("SMALLER", "500"), lambda i: len(i.stored) < 500),
        (("OR", "FROM", "alice", "FROM", "bob"), lambda i: frm("alice")(i) or frm("bob")(i)),
        (("NOT", "FROM", "alice"), lambda i: not frm("alice")(i)),
        (("OR", "SUBJECT", "dublin", "SUBJECT", "seattle", "NOT", "FROM", "frank"),
         lambda i: (subj("dublin")(i) or subj("seattle")(i)) and not frm("frank")(i)),
        (("FROM", "eve", "LARGER", "1500"), lambda i: frm("eve")(i) and len(i.stored) > 1500),
        (("BODY", "forecast"), lambda i: "forecast" in i.body()),
        (("TEXT", "seattle"), lambda i: "seattle" in i.text()),
        (("ALL",), lambda i: True),
        (("2:5", "NOT", "1:3"), None),
        (("(OR", "FROM", "alice", "FROM", "bob)", "LARGER", "2000"),
         lambda i: (frm("alice")(i) or frm("bob")(i)) and len(i.stored) > 2000),
        (("NOT", "(FROM", "alice", "SUBJECT", "budget)"),
         lambda i: not (frm("alice")(i) and subj("budget")(i))),
    ]
    for criteria, pred in cases:
        want = [4, 5] if pred is None else expect(infos, pred)
        assert want, criteria  # every case selects something
        assert search(m, *criteria) == want, criteria
    assert 0 < len(search(m, "FROM", "alice")) < len(infos)
    # Sequence sets: "*" is the last message, ranges may run backwards.
    assert search(m, "*") == [len(infos)]
    assert search(m, "5:2") == [2, 3, 4, 5]
    typ, data = m.uid("SEARCH", "UID", "1000:*")
    assert data == [str(len(infos)).encode()]  # 1000:* includes the highest UID

    # SENTSINCE / SENTBEFORE / SENTON use the Date header (date part as written).
    dated = [i for i in infos if i.sent]
    days = sorted({i.sent for i in dated})
    mid = days[len(days) // 2]
    for key, pred in [
        ("SENTSINCE", lambda i: i.sent is not None and i.sent >= mid),
        ("SENTBEFORE", lambda i: i.sent is not None and i.sent < mid),
        ("SENTON", lambda i: i.sent == mid),
    ]:
        assert search(m, key, imap_date(mid)) == expect(infos, pred), key

    # SINCE / BEFORE use the internal date: every message arrived today.
    today = dt.datetime.now(dt.timezone.utc).date()
    assert search(m, "SINCE", imap_date(today - dt.timedelta(days=1))) == everything
    assert search(m, "SINCE", imap_date(today + dt.timedelta(days=2))) == []
    assert search(m, "BEFORE", imap_date(today - dt.timedelta(days=1))) == []

    # Flags: mark the [dev] messages seen, then UNSEEN / SEEN / combinations.
    dev = expect(infos, subj("[dev]"))
    assert dev
    typ, _ = m.store(seqset(dev), "+FLAGS.SILENT", "(\\Seen)")
    assert typ == "OK"
    try:
        assert search(m, "SEEN") == dev
        assert search(m, "UNSEEN") == [n for n in everything if n not in dev]
        assert search(m, "UNSEEN", "FROM", "alice") == expect(
            infos, lambda i: frm("alice")(i) and not subj("[dev]")(i))
        assert search(m, "OR", "SEEN", "LARGER", "3000") == expect(
            infos, lambda i: subj("[dev]")(i) or len(i.stored) > 3000)
        typ, data = m.uid("SEARCH", "SEEN")
        assert [int(x) for x in data[0].split()] == dev  # UID n == seq n here
    finally:
        m.store(seqset(dev), "-FLAGS.SILENT", "(\\Seen)")
    assert search(m, "SEEN") == []

    m.logout()

    # ESEARCH (RFC 4731): RETURN options, the tag echoed, UID marker for UID SEARCH.
    alice_hits = expect(infos, frm("alice"))
    r = raw_login(server, SEARCHER, CORPUS_PW)
    r.ok("EXAMINE INBOX")
    for command, prefix in [("SEARCH", b'* ESEARCH (TAG "T003") '),
                            ("UID SEARCH", b'* ESEARCH (TAG "T004") UID ')]:
        untagged, tagged = r.cmd(f"{command} RETURN (MIN MAX COUNT ALL) FROM alice")
        assert tagged.endswith(b" OK " + command.encode() + b" completed"), tagged
        assert len(untagged) == 1 and untagged[0].startswith(prefix), untagged
        words = untagged[0][len(prefix):].split(b" ")
        got = dict(zip(words[::2], words[1::2]))
        assert len(words) == 8 and set(got) == {b"MIN", b"MAX", b"COUNT", b"ALL"}, untagged
        assert int(got[b"MIN"]) == alice_hits[0], untagged
        assert int(got[b"MAX"]) == alice_hits[-1], untagged
        assert int(got[b"COUNT"]) == len(alice_hits), untagged
        assert parse_uid_set(got[b"ALL"]) == alice_hits, untagged  # may use ranges
    # No match: only the tag (RFC 4731 §3.1: MIN/MAX/ALL are omitted, COUNT is 0).
    assert r.cmd("SEARCH RETURN (MIN MAX COUNT) FROM nobody-at-all") == (
        [b'* ESEARCH (TAG "T005") COUNT 0'], b"T005 OK SEARCH completed")
    r.close()


def test_search_internal_dates(alice):
    """SINCE/BEFORE/ON against INTERNALDATE set by APPEND (noon UTC, so no zone doubt)."""
    days = [dt.date(2023, 12, 31), dt.date(2024, 1, 1), dt.date(2024, 2, 29),
            dt.date(2024, 3, 1), dt.date(2025, 6, 15)]
    m = alice.imap_login(ALICE, ALICE_PW)
    assert m.create("Dated")[0] == "OK"
    for i, day in enumerate(days, 1):
        stamp = dt.datetime(day.year, day.month, day.day, 12, 0, 0, tzinfo=dt.timezone.utc)
        typ, data = m.append("Dated", None, imaplib.Time2Internaldate(stamp), small(i))
        assert typ == "OK", data
    assert m.select("Dated") == ("OK", [b"5"])
    typ, data = m.fetch("3", "(INTERNALDATE)")
    assert data == [b'3 (INTERNALDATE "29-Feb-2024 12:00:00 +0000")']
    for key, day, pred in [
        ("SINCE", dt.date(2024, 1, 1), lambda d, k: d >= k),
        ("SINCE", dt.date(2024, 3, 2), lambda d, k: d >= k),
        ("BEFORE", dt.date(2024, 3, 1), lambda d, k: d < k),
        ("BEFORE", dt.date(2023, 12, 31), lambda d, k: d < k),
        ("ON", dt.date(2024, 2, 29), lambda d, k: d == k),
        ("ON", dt.date(2024, 2, 28), lambda d, k: d == k),
    ]:
        want = [n for n, d in enumerate(days, 1) if pred(d, day)]
        assert search(m, key, imap_date(day)) == want, (key, day)
    assert search(m, "SINCE", "1-Jan-2024", "BEFORE", "1-Mar-2024") == [2, 3]
    m.logout()


UTF8_NEEDLES = ["Grüße", "café", "Reunião", "東京", "Zażółć"]


def test_search_utf8_text(corpus_box):
    server, infos = corpus_box
    m = server.imap_login(SEARCHER, CORPUS_PW)
    m.select("INBOX")
    # Header keys decode RFC 2047 words (ISO-8859-1 and UTF-8) before matching.
    for key, needle, header in [("SUBJECT", "Reunião", "subject"), ("FROM", "José", "from"),
                                ("SUBJECT", "東京", "subject"), ("FROM", "Łukasz", "from")]:
        m.literal = needle.encode("utf-8")
        typ, data = m.search("UTF-8", key)
        want = expect(infos, lambda i: needle.lower() in i.header(header))
        assert want and [int(x) for x in data[0].split()] == want, (key, needle, data)
    # Every needle is tried before asserting, so a failure shows them all.
    results = {}
    for needle in UTF8_NEEDLES:
        want = expect(infos, lambda i: needle.lower() in i.text())
        assert want, needle
        m.literal = needle.encode("utf-8")
        typ, data = m.search("UTF-8", "TEXT")
        assert typ == "OK", (needle, data)
        got = [int(x) for x in data[0].split()]
        # The same through UID SEARCH CHARSET (UID n is message n here).
        m.literal = needle.encode("utf-8")
        typ, data = m.uid("SEARCH", "CHARSET", "UTF-8", "TEXT")
        assert typ == "OK", (needle, data)
        got_uid = [int(x) for x in data[0].split()]
        results[needle] = (got, got_uid, want)
    # Lowercase needle, non-ASCII letters in it: case-insensitive match.
    m.literal = "grüße aus köln".encode()
    typ, data = m.search("UTF-8", "SUBJECT")
    want = expect(infos, lambda i: "grüße aus köln" in i.header("subject"))
    assert want and [int(x) for x in data[0].split()] == want, data
    # An unknown charset is NO [BADCHARSET], not BAD.
    typ, data = m.search("X-NO-SUCH-CHARSET", "TEXT", "x")
    assert typ == "NO" and data[0].startswith(b"[BADCHARSET"), data
    assert m.noop()[0] == "OK"
    m.logout()
    # RFC 9051 §6.4.4: TEXT matches "the header ... or body"; SUBJECT/FROM above
    # show the server decodes encoded words, so TEXT must find those words too.
    wrong = {n: r for n, r in results.items() if not r[0] == r[1] == r[2]}
    assert not wrong, f"TEXT search (got, got via UID SEARCH, expected): {wrong}"


# --------------------------------------------------------------------------------------
# STORE, COPY, MOVE, EXPUNGE


def test_store_flags_seen_from_second_session(alice):
    for i in range(1, 5):
        alice.deliver(ALICE, small(i))
    r = raw_login(alice)
    # First to select INBOX since the deliveries: all four are \Recent here.
    assert b"* 4 RECENT" in select(r)

    def store(command, want, tag_line):
        untagged, tagged = r.cmd(command)
        assert tagged == tag_line, (command, tagged)
        assert flag_updates(untagged) == want, (command, untagged)

    store("STORE 1 +FLAGS (\\Flagged $Work)", [(1, {b"\\Flagged", b"$Work", R})],
          b"T003 OK STORE completed")
    store("STORE 1:2 +FLAGS (\\Seen)",
          [(1, {b"\\Seen", b"\\Flagged", b"$Work", R}), (2, {b"\\Seen", R})],
          b"T004 OK STORE completed")
    store("STORE 1 -FLAGS ($Work)", [(1, {b"\\Seen", b"\\Flagged", R})],
          b"T005 OK STORE completed")
    # FLAGS replaces the client's flags; \Recent is not the client's to change.
    store("STORE 3 FLAGS (\\Answered \\Draft $Label1 $label2)",
          [(3, {b"\\Answered", b"\\Draft", b"$Label1", b"$label2", R})],
          b"T006 OK STORE completed")
    store("UID STORE 4 +FLAGS.SILENT (\\Deleted)", [], b"T007 OK UID STORE completed")
    store("STORE 2 FLAGS ()", [(2, {R})], b"T008 OK STORE completed")
    assert r.cmd("UID SEARCH KEYWORD $Label1") == ([b"* SEARCH 3"], b"T009 OK UID SEARCH completed")
    assert r.cmd("SEARCH UNKEYWORD $label2 UNFLAGGED") == (
        [b"* SEARCH 2 4"], b"T010 OK SEARCH completed")
    # A FETCH of BODY[...] (not PEEK) sets \Seen and says so.
    untagged, tagged = r.cmd("FETCH 4 (BODY[HEADER.FIELDS (Subject)])")
    assert tagged == b"T011 OK FETCH completed"
    [(seq, items)] = fetches(untagged)
    assert seq == 4 and set(items.pop("FLAGS")) == {b"\\Seen", b"\\Deleted", R}
    assert items == {"BODY[HEADER.FIELDS (Subject)]": b"Subject: message 4\r\n\r\n"}
    untagged, tagged = r.cmd("STORE 1 +FLAGS (\\Recent)")
    assert (untagged, tagged) == ([], b"T012 BAD \\Recent and \\* cannot be stored")

    # A second session (imaplib, over STARTTLS) sees the flags as stored, and no
    # \Recent: that belongs to the first session alone (RFC 3501 §2.3.2).
    m = alice.imap_login(ALICE, ALICE_PW, implicit=False)
    assert m.select("INBOX", readonly=True) == ("OK", [b"4"])
    typ, data = m.fetch("1:4", "(FLAGS)")
    assert typ == "OK"
    flags = {}
    for line in data:
        mm = re.fullmatch(rb"(\d+) \(FLAGS \((.*)\)\)", line)
        assert mm, line
        flags[int(mm.group(1))] = set(mm.group(2).split())
    assert flags == {
        1: {b"\\Seen", b"\\Flagged"},
        2: set(),
        3: {b"\\Answered", b"\\Draft", b"$Label1", b"$label2"},
        4: {b"\\Seen", b"\\Deleted"},
    }
    # Keywords in use are announced in FLAGS / PERMANENTFLAGS on SELECT.
    assert m.untagged_responses.get("FLAGS") == [
        b"(\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 $label2)"]
    m.logout()

    # A change made now is pushed to the first session on its next command.
    m = alice.imap_login(ALICE, ALICE_PW)
    m.select("INBOX")
    assert m.store("2", "+FLAGS", "(\\Flagged)")[0] == "OK"
    m.logout()
    untagged, tagged = r.cmd("NOOP")
    assert tagged == b"T013 OK NOOP completed"
    assert flag_updates(untagged) == [(2, {b"\\Flagged", R}, 2)]
    r.close()


def test_copy_and_move_copyuid(alice):
    stored = [crlf(small(i)) for i in range(1, 7)]
    for data in stored:
        alice.deliver(ALICE, data)
    m = alice.imap_login(ALICE, ALICE_PW)
    assert m.select("INBOX") == ("OK", [b"6"])
    _, data = m.status("Archive", "(UIDVALIDITY)")
    archive_validity = int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))

    # COPY via imaplib: tagged OK [COPYUID v src dst].
    typ, data = m.copy("2,4:5", "Archive")
    assert typ == "OK"
    code = re.fullmatch(rb"\[COPYUID (\d+) (\S+) (\S+)\] COPY completed", data[0])
    assert code, data
    assert int(code.group(1)) == archive_validity
    src, dst = parse_uid_set(code.group(2)), parse_uid_set(code.group(3))
    assert sorted(src) == [2, 4, 5] and len(dst) == 3
    assert m.copy("1", "Nowhere") == ("NO", [b"[TRYCREATE] Mailbox does not exist"])
    m.logout()

    r = raw_login(alice)
    select(r)
    assert uid_map(r) == [1, 2, 3, 4, 5, 6]
    # MOVE: untagged OK [COPYUID], EXPUNGEs, tagged OK.
    untagged, tagged = r.cmd("UID MOVE 3,6 Archive")
    assert tagged == b"T004 OK MOVE completed", (untagged, tagged)
    code = re.fullmatch(rb"\* OK \[COPYUID (\d+) (\S+) (\S+)\] .*", untagged[0])
    assert code, untagged
    assert int(code.group(1)) == archive_validity
    msrc, mdst = parse_uid_set(code.group(2)), parse_uid_set(code.group(3))
    assert sorted(msrc) == [3, 6]
    # The EXPUNGEs are consistent with the sequence numbers: applying them to the view
    # leaves exactly the messages that stayed.
    view = [1, 2, 3, 4, 5, 6]
    for line in untagged[1:]:
        mm = re.fullmatch(rb"\* (\d+) EXPUNGE", line)
        assert mm, untagged
        del view[int(mm.group(1)) - 1]
    assert view == [1, 2, 4, 5]
    assert uid_map(r) == [1, 2, 4, 5]
    assert r.cmd("MOVE 1 Nowhere") == ([], b"T006 NO [TRYCREATE] Mailbox does not exist")
    # Sequence-number MOVE of the last message.
    untagged, tagged = r.cmd("MOVE 4 Archive")
    assert tagged == b"T007 OK MOVE completed"
    assert untagged[1:] == [b"* 4 EXPUNGE"]
    mm = re.fullmatch(rb"\* OK \[COPYUID \d+ 5 (\d+)\] .*", untagged[0])
    assert mm, untagged
    msrc.append(5)
    mdst.append(int(mm.group(1)))
    assert uid_map(r) == [1, 2, 4]

    # Every COPYUID pair maps to the same bytes.
    inbox_bodies = dict(enumerate(stored, 1))
    select(r, "Archive")
    archived = fetch_bodies(r, dst + mdst)
    for s, d in list(zip(src, dst)) + list(zip(msrc, mdst)):
        assert archived[d] == inbox_bodies[s], (s, d)
    assert len(uid_map(r)) == 6
    # The copies are independent: expunging one in Archive leaves INBOX alone.
    r.ok(f"UID STORE {dst[0]} +FLAGS.SILENT (\\Deleted)")
    r.ok("EXPUNGE")
    select(r, "INBOX")
    assert fetch_bodies(r, [1, 2, 4]) == {1: stored[0], 2: stored[1], 4: stored[3]}
    r.close()


def test_expunge_and_uid_expunge(alice):
    for i in range(1, 9):
        alice.deliver(ALICE, small(i))
    r = raw_login(alice)
    select(r)
    r.ok("STORE 2,3,5,8 +FLAGS.SILENT (\\Deleted)")
    # UID EXPUNGE only removes the given UIDs among the \Deleted ones.
    untagged, tagged = r.cmd("UID EXPUNGE 3:5")
    assert tagged == b"T004 OK UID EXPUNGE completed"
    assert len(untagged) == 2, untagged
    assert apply_updates([1, 2, 3, 4, 5, 6, 7, 8], untagged, []) == [1, 2, 4, 6, 7, 8]
    assert uid_map(r) == [1, 2, 4, 6, 7, 8]
    assert r.cmd("UID EXPUNGE 1") == ([], b"T006 OK UID EXPUNGE completed")
    # Plain EXPUNGE takes the rest; each number counts the earlier ones away.
    untagged, tagged = r.cmd("EXPUNGE")
    assert tagged == b"T007 OK EXPUNGE completed"
    view = [1, 2, 4, 6, 7, 8]
    for line in untagged:
        mm = re.fullmatch(rb"\* (\d+) EXPUNGE", line)
        assert mm, untagged
        del view[int(mm.group(1)) - 1]
    assert view == [1, 4, 6, 7]
    assert uid_map(r) == [1, 4, 6, 7]
    assert r.cmd("EXPUNGE") == ([], b"T009 OK EXPUNGE completed")
    # CLOSE expunges silently; the store agrees.
    r.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert r.cmd("CLOSE") == ([], b"T011 OK CLOSE completed")
    assert r.cmd("STATUS INBOX (MESSAGES UIDNEXT)") == (
        [b'* STATUS "INBOX" (MESSAGES 3 UIDNEXT 9)'], b"T012 OK STATUS completed")
    assert r.cmd("FETCH 1 FLAGS") == ([], b"T013 BAD No mailbox selected")
    # EXAMINE is read-only: EXPUNGE is refused.
    r.ok("EXAMINE INBOX")
    assert r.cmd("EXPUNGE") == ([], b"T015 NO [READ-ONLY] Mailbox is read-only")
    r.close()
    # A fresh session sees what is left, by bytes.
    m = alice.imap_login(ALICE, ALICE_PW)
    m.select("INBOX")
    typ, data = m.fetch("1:*", "(BODY.PEEK[])")
    assert [d[1] for d in data if isinstance(d, tuple)] == [small(i) for i in (4, 6, 7)]
    m.logout()


# --------------------------------------------------------------------------------------
# Two sessions, IDLE


def apply_updates(view: list[int], untagged: list[bytes], appended: list[int]) -> list[int]:
    """Applies * n EXPUNGE and * n EXISTS to a UID view; new messages get the UIDs in
    `appended`, in order. Other lines (RECENT, FETCH) are ignored."""
    view = list(view)
    for line in untagged:
        fetch = re.fullmatch(rb"\* (\d+) FETCH \(UID (\d+) .*\)", line)
        if fetch:
            # An unsolicited FETCH names the message by the numbering of that moment.
            assert view[int(fetch.group(1)) - 1] == int(fetch.group(2)), (line, view)
            continue
        mm = re.fullmatch(rb"\* (\d+) (EXPUNGE|EXISTS)", line)
        if not mm:
            assert re.fullmatch(rb"\* \d+ RECENT", line), line
            continue
        n = int(mm.group(1))
        if mm.group(2) == b"EXPUNGE":
            assert 1 <= n <= len(view), (line, view)
            del view[n - 1]
        else:
            assert n >= len(view), (line, view)
            while len(view) < n:
                view.append(appended.pop(0))
    return view


def recent_uids(r: RawImap) -> set[int]:
    untagged, _ = r.cmd("FETCH 1:* (UID FLAGS)")
    return {uid for _, flags, uid in flag_updates(untagged) if R in flags}


def test_two_sessions_see_each_others_changes(alice):
    for i in range(1, 4):
        alice.deliver(ALICE, small(i))
    a = raw_login(alice)
    assert b"* 3 RECENT" in select(a)
    assert uid_map(a) == [1, 2, 3]
    b = raw_login(alice)

    # B appends: A's NOOP announces the new count (and, IMAP4rev1, \Recent for A,
    # the only session with INBOX selected).
    untagged, tagged = b.cmd("APPEND INBOX ", Literal(small(4)))
    assert re.fullmatch(rb"T002 OK \[APPENDUID \d+ 4\] APPEND completed", tagged), tagged
    assert a.cmd("NOOP") == ([b"* 4 EXISTS", b"* 4 RECENT"], b"T004 OK NOOP completed")
    view = [1, 2, 3, 4]
    assert uid_map(a) == view

    # B selects (nothing is \Recent for it) and expunges the 2nd: A hears `* 2 EXPUNGE`
    # at its next NOOP, not during a FETCH (RFC 9051 §7.5.1).
    untagged = select(b)
    assert untagged[:2] == [b"* 4 EXISTS", b"* 0 RECENT"], untagged
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert b.cmd("EXPUNGE") == ([b"* 2 EXPUNGE"], b"T005 OK EXPUNGE completed")
    untagged, tagged = a.cmd("FETCH 1:* (UID)")
    assert not any(b"EXPUNGE" in line for line in untagged), untagged
    untagged, tagged = a.cmd("NOOP")
    assert [x for x in untagged if not x.endswith(b" RECENT")] == [b"* 2 EXPUNGE"], untagged
    assert all(x == b"* 3 RECENT" for x in untagged if x.endswith(b" RECENT")), untagged
    view = apply_updates(view, untagged, [])
    assert view == [1, 3, 4] == uid_map(a)

    # Mixed: B expunges the 1st and last, appends two, flags one; one NOOP tells all.
    b.ok("STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    b.ok("APPEND INBOX ", Literal(small(5)))
    b.ok("APPEND INBOX ", Literal(small(6)))
    b.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    untagged, tagged = a.cmd("NOOP")
    view = apply_updates(view, untagged, [5, 6])
    assert view == [3, 5, 6] == uid_map(a), untagged
    # Two EXPUNGEs (their order is the server's; apply_updates checked them), the new
    # count, a RECENT count, and the flag change (uid 3 is still \Recent for A).
    rest = [x for x in untagged if not x.endswith(b" EXPUNGE")]
    assert len(untagged) == len(rest) + 2, untagged
    assert rest[0] == b"* 3 EXISTS" and re.fullmatch(rb"\* \d RECENT", rest[1]), untagged
    assert flag_updates(rest[2:]) == [(1, {b"\\Flagged", R}, 3)], untagged
    # RFC 3501 §2.3.2: each new message is \Recent in exactly one session, and the
    # RECENT count A was given is the number it sees flagged.
    in_a, in_b = recent_uids(a), recent_uids(b)
    assert not in_a & in_b and in_a | in_b == {3, 5, 6}, (in_a, in_b)
    assert rest[1] == b"* %d RECENT" % len(in_a)
    b.close()
    a.close()


def test_idle_pushes_new_mail(alice):
    alice.deliver(ALICE, small(1))
    r = raw_login(alice)
    assert b"* 1 RECENT" in select(r)
    r.send(b"I1 IDLE\r\n")
    assert r.line() == b"+ idling"
    uid = alice.deliver(ALICE, small(2))
    assert uid == 2
    # Read with a deadline (socket timeout), no sleeping.
    r.sock.settimeout(10)
    assert r.line() == b"* 2 EXISTS"
    # IMAP4rev1: the new message is \Recent for this session too.
    assert r.line() == b"* 2 RECENT"
    # A flag change and an expunge by another session are pushed too.
    m = alice.imap_login(ALICE, ALICE_PW)
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Deleted)")
    assert flag_updates([r.line()]) == [(1, {b"\\Deleted", R}, 1)]
    m.expunge()
    m.logout()
    assert r.line() == b"* 1 EXPUNGE"
    r.send(b"DONE\r\n")
    assert r.read_until("I1") == ([], b"I1 OK IDLE terminated")
    r.sock.settimeout(IO_TIMEOUT)
    assert uid_map(r) == [2]
    assert fetch_bodies(r, [2]) == {2: small(2)}
    # IDLE ended by something else than DONE: BAD, and the session still works.
    r.send(b"I2 IDLE\r\n")
    assert r.line() == b"+ idling"
    r.send(b"NOOP\r\n")
    assert r.read_until("I2") == ([], b"I2 BAD Expected DONE")
    assert r.cmd("NOOP")[1].endswith(b" OK NOOP completed")
    r.close()


# --------------------------------------------------------------------------------------
# Login policy


def test_login_requires_tls_on_secure_server(alice):
    r = RawImap(alice)
    assert r.cmd(f"LOGIN {ALICE} {ALICE_PW}") == ([], b"T001 " + PRIVACY)
    assert r.cmd(f"AUTHENTICATE PLAIN {plain_b64(ALICE, ALICE_PW)}") == (
        [], b"T002 " + PRIVACY)
    assert r.cmd("SELECT INBOX") == ([], b"T003 BAD Command not valid before authentication")
    # After STARTTLS the same LOGIN works.
    r.starttls()
    assert r.login(ALICE, ALICE_PW).startswith(b"T005 OK [CAPABILITY IMAP4rev1 ")
    select(r)
    r.close()
    # imaplib sees the NO as an error.
    m = alice.imap()
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        m.login(ALICE, ALICE_PW)
    m.logout()


def test_plaintext_login_type(make_imap_server):
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    server.deliver(ALICE, MSG)
    m = server.imap()
    # Without TLS: STARTTLS still offered, AUTH=PLAIN instead of LOGINDISABLED.
    assert caps_of(m.welcome, b"* OK [CAPABILITY ", GREETING_TAIL) == {
        "IMAP4rev1", "IMAP4rev2", "STARTTLS", "AUTH=PLAIN", *CAPS_AFTER.split(),
        f"APPENDLIMIT={APPENDLIMIT_DEFAULT}"}
    assert m.login(ALICE, ALICE_PW)[0] == "OK"
    assert m.select("INBOX") == ("OK", [b"1"])
    assert m.fetch("1", "(BODY.PEEK[])")[1][0][1] == MSG
    m.logout()
    r = RawImap(server)
    assert r.cmd(f"AUTHENTICATE PLAIN {plain_b64(ALICE, ALICE_PW)}")[1].startswith(
        b"T001 OK [CAPABILITY ")
    r.close()


@pytest.mark.parametrize("local", ["administrator", "Administrator"])
def test_administrator_cannot_log_in(alice, local):
    address = "administrator@example.com"
    alice.add_user(address, "admin-Pass-9")
    alice.deliver(address, MSG)
    r = RawImap(alice, implicit=True)
    assert r.login(f"{local}@example.com", "admin-Pass-9") == b"T001 " + AUTH_FAILED
    assert r.cmd(f"AUTHENTICATE PLAIN {plain_b64(address, 'admin-Pass-9')}") == (
        [], b"T002 " + AUTH_FAILED)
    # The connection is still usable for an ordinary account.
    assert r.login(ALICE, ALICE_PW).startswith(b"T003 OK [CAPABILITY ")
    r.close()


def test_imap_disabled_per_account(alice):
    alice.add_user(BOB, BOB_PW)
    assert alice.cli_ok("user", "set", ALICE, "--imap", "off") == f"updated {ALICE}\n"
    assert alice.users()[ALICE]["imap"] == "off"
    assert alice.users()[BOB]["imap"] == "on"
    r = RawImap(alice, implicit=True)
    assert r.login(ALICE, ALICE_PW) == b"T001 " + CONTACTADMIN
    # A wrong password tells nothing about the account's settings.
    assert r.login(ALICE, "wrong") == b"T002 " + AUTH_FAILED
    assert r.cmd(f"AUTHENTICATE PLAIN {plain_b64(ALICE, ALICE_PW)}") == (
        [], b"T003 " + CONTACTADMIN)
    assert r.login(BOB, BOB_PW).startswith(b"T004 OK [CAPABILITY ")
    r.close()
    assert alice.cli_ok("user", "set", ALICE, "--imap", "on") == f"updated {ALICE}\n"
    alice.imap_login(ALICE, ALICE_PW).logout()


def test_bad_password_and_authenticate_plain(alice):
    r = RawImap(alice, implicit=True)
    assert r.login(ALICE, "wrong") == b"T001 " + AUTH_FAILED
    assert r.login("nobody@example.com", ALICE_PW) == b"T002 " + AUTH_FAILED
    assert r.login(ALICE, ALICE_PW.upper()) == b"T003 " + AUTH_FAILED
    # SASL-IR: initial response on the command line.
    assert r.cmd(f"AUTHENTICATE PLAIN {plain_b64(ALICE, 'wrong')}") == (
        [], b"T004 " + AUTH_FAILED)
    # Authorization identity other than the user: refused.
    assert r.cmd(f"AUTHENTICATE PLAIN {plain_b64(ALICE, ALICE_PW, BOB)}") == (
        [], b"T005 NO [AUTHORIZATIONFAILED] Authorization identity must match")
    # Without SASL-IR: empty continuation, then the response line.
    r.send(b"X1 AUTHENTICATE PLAIN\r\n")
    assert r.line() == b"+ "
    r.send(plain_b64(ALICE, ALICE_PW, ALICE).encode() + b"\r\n")
    untagged, tagged = r.read_until("X1")
    assert untagged == [] and tagged.startswith(b"X1 OK [CAPABILITY IMAP4rev1 "), tagged
    select(r)
    r.close()
    # Cancelled exchange ("*"): BAD, and the session goes on.
    r = RawImap(alice, implicit=True)
    r.send(b"X2 AUTHENTICATE PLAIN\r\n")
    assert r.line() == b"+ "
    r.send(b"*\r\n")
    assert r.read_until("X2") == ([], b"X2 BAD Authentication cancelled")
    assert r.cmd(f"AUTHENTICATE PLAIN {plain_b64(ALICE, ALICE_PW)}")[1].startswith(
        b"T001 OK [CAPABILITY ")
    r.close()
    # imaplib's authenticate() (continuation based).
    m = alice.imap_ssl()
    typ, data = m.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{ALICE_PW}".encode())
    assert typ == "OK", data
    assert m.select("INBOX") == ("OK", [b"0"])
    m.logout()


# --------------------------------------------------------------------------------------
# Bad input, limits


def test_bad_input_keeps_session_usable(alice):
    alice.deliver(ALICE, MSG)
    r = RawImap(alice, implicit=True)

    def answer(*parts) -> tuple[list[bytes], bytes]:
        """The untagged lines and the tagged line without its tag."""
        untagged, tagged = r.cmd(*parts)
        return untagged, tagged.split(b" ", 1)[1]

    def noop_ok():
        assert answer("NOOP") == ([], b"OK NOOP completed")

    assert answer("XYZZY") == ([], b"BAD Unknown command XYZZY")
    noop_ok()
    r.send(b"\x01\x02 garbage \xff\r\n")
    assert r.line() == b"* BAD Invalid tag"
    noop_ok()
    r.send(b"\r\n")
    assert r.line() == b"* BAD Empty command line"
    noop_ok()
    # Before authentication, FETCH is in the wrong state.
    assert answer("FETCH 1 FLAGS") == ([], b"BAD Command not valid before authentication")
    noop_ok()
    # An overlong line (over the 1 MiB default without a literal), tagged and untagged.
    r.send(b"L1 NOOP " + b"x" * 1_100_000 + b"\r\n")
    assert r.line() == b"L1 BAD [TOOBIG] Line exceeds the server's limit"
    noop_ok()
    r.send(b"x" * 1_100_000 + b"\r\n")
    assert r.line() == b"* BAD [TOOBIG] Line exceeds the server's limit"
    noop_ok()
    assert r.login(ALICE, ALICE_PW).split(b" ", 2)[1:2] == [b"OK"]
    # Authenticated, nothing selected.
    assert answer("FETCH 1 FLAGS") == ([], b"BAD No mailbox selected")
    noop_ok()
    r.close()
    # A fresh connection (the server closes after 20 errors) for SELECTED state.
    r = raw_login(alice)
    select(r)
    # Invalid sequence sets, and a number past the end.
    for bad_set in ["0", "1:x", "*:", "1,,2", "-1", "4294967296", "7"]:
        untagged, status = answer(f"FETCH {bad_set} FLAGS")
        assert untagged == [] and status.startswith(b"BAD "), (bad_set, status)
        noop_ok()
    for bad in ["FETCH 1 (FLAGS", "FETCH 1 NOSUCHITEM", "STORE 1 +FLAGS", "SEARCH FROM",
                "UID", "SELECT", 'LIST ""', 'APPEND INBOX "bad date" {1+}\r\nx',
                "SEARCH NOSUCHKEY", "STORE 1 BADOP (\\Seen)", "COPY 1"]:
        untagged, status = answer(bad)
        assert untagged == [] and status.startswith(b"BAD "), (bad, status)
        noop_ok()
    # After all that, the mailbox is intact and usable.
    assert fetch_bodies(r, [1]) == {1: MSG}
    assert answer("LOGOUT") == ([b"* BYE Logging out"], b"OK LOGOUT completed")
    r.close()


def test_too_many_bad_commands_closes(alice):
    r = RawImap(alice, implicit=True)
    lines = []
    for i in range(30):
        try:
            r.send(b"T%d XYZZY\r\n" % i)
            lines.append(r.line())
        except (EOFError, OSError):
            break
        if lines[-1].startswith(b"* BYE"):
            break
    assert lines[-1] == b"* BYE Too many invalid commands", lines[-3:]
    assert r.at_eof()
    r.close()


def test_append_limit(make_imap_server):
    server = make_imap_server(imap_extra="append_limit = 2000")
    server.add_user(ALICE, ALICE_PW)
    r = raw_login(server)
    assert r.greeting.endswith(b" APPENDLIMIT=2000" + GREETING_TAIL), r.greeting
    ok_msg = b"Subject: fits\r\n\r\n" + b"y" * (2000 - 19) + b"\r\n"
    assert len(ok_msg) == 2000
    big = ok_msg + b"z"
    # Synchronizing literal: refused before the data is sent.
    assert r.cmd("APPEND INBOX ", Literal(big)) == (
        [], b"T002 NO [TOOBIG] Literal exceeds the server's limit")
    assert r.cmd("NOOP") == ([], b"T003 OK NOOP completed")
    # LITERAL+: the data follows regardless; it is read and dropped.
    assert r.cmd(b"APPEND INBOX {%d+}\r\n" % len(big) + big) == (
        [], b"T004 NO [TOOBIG] Literal exceeds the server's limit")
    assert r.cmd("NOOP") == ([], b"T005 OK NOOP completed")
    # Exactly the limit is fine.
    untagged, tagged = r.cmd("APPEND INBOX ", Literal(ok_msg))
    assert re.fullmatch(rb"T006 OK \[APPENDUID \d+ 1\] APPEND completed", tagged), tagged
    assert r.cmd("STATUS INBOX (MESSAGES)") == (
        [b'* STATUS "INBOX" (MESSAGES 1)'], b"T007 OK STATUS completed")
    select(r)
    assert fetch_bodies(r, [1]) == {1: ok_msg}
    r.close()
    # imaplib too.
    m = server.imap_login(ALICE, ALICE_PW)
    typ, data = m.append("INBOX", None, None, big)
    assert typ == "NO" and data[0].startswith(b"[TOOBIG]"), data
    assert m.noop()[0] == "OK"
    m.logout()


def test_long_uid_set(alice):
    bodies = {}
    for i in range(1, 31):
        bodies[alice.deliver(ALICE, small(i))] = crlf(small(i))
    r = raw_login(alice)
    select(r)
    r.ok("STORE 1:10 +FLAGS.SILENT (\\Deleted)")
    r.ok("EXPUNGE")
    present = sorted(bodies)[10:]
    # ~60 KB: every UID up to 12000 one by one (like getmail), in scrambled order.
    uids = list(range(1, 12001))
    random.Random(7).shuffle(uids)
    line = seqset(uids)
    assert 50_000 < len(line) < 64 * 1024 - 100
    untagged, tagged = r.cmd(f"UID FETCH {line} (UID RFC822.SIZE)")
    assert tagged == b"T005 OK UID FETCH completed", tagged
    got = fetches(untagged)
    assert [int(i["UID"]) for _, i in got] == present
    assert [seq for seq, _ in got] == list(range(1, 21))
    assert all(int(i["RFC822.SIZE"]) == len(bodies[int(i["UID"])]) for _, i in got)
    # Ranges mixed in, and the same with UID SEARCH and UID STORE.
    mixed = ",".join(f"{u}:{u + 1}" if u % 3 == 0 else str(u) for u in range(1, 9000, 2))
    assert len(mixed) > 20_000
    untagged, tagged = r.cmd(f"UID SEARCH UID {mixed}")
    assert tagged.endswith(b" OK UID SEARCH completed")
    want = sorted(u for u in present if u in set(parse_uid_set(mixed)))
    assert untagged == [b"* SEARCH " + seqset(want).replace(",", " ").encode()]
    untagged, tagged = r.cmd(f"UID STORE {mixed} +FLAGS.SILENT (\\Flagged)")
    assert tagged.endswith(b" OK UID STORE completed"), tagged
    untagged, _ = r.cmd("UID SEARCH FLAGGED")
    assert untagged == [b"* SEARCH " + seqset(want).replace(",", " ").encode()]
    r.close()


# --------------------------------------------------------------------------------------
# Internationalised names


def test_mutf7_mailbox_names(alice):
    name = "Entwürfe/日本語 & more"
    encoded = mutf7(name)
    assert encoded == "Entw&APw-rfe/&ZeVnLIqe- &- more"
    parent = mutf7("Entwürfe")
    m = alice.imap_login(ALICE, ALICE_PW)
    assert_created(m.create(quote(encoded)))
    assert listing(m, '""', "*") == ("OK", by_name(SPECIAL_LIST + [
        f'(\\HasChildren) "/" {quote(parent)}'.encode(),
        f'(\\HasNoChildren) "/" {quote(encoded)}'.encode(),
    ]))
    assert listing(m, '""', quote(parent + "/%")) == (
        "OK", [f'(\\HasNoChildren) "/" {quote(encoded)}'.encode()])
    typ, data = m.append(quote(encoded), None, None, MSG)
    assert typ == "OK", data
    assert m.select(quote(encoded)) == ("OK", [b"1"])
    assert m.fetch("1", "(BODY.PEEK[])")[1][0][1] == MSG
    assert m.status(quote(encoded), "(MESSAGES)") == (
        "OK", [f'{quote(encoded)} (MESSAGES 1)'.encode()])
    m.unselect()
    # Rename into another non-ASCII name and back.
    other = mutf7("Brouillons/été")
    assert m.rename(quote(encoded), quote(other)) == ("OK", [b"RENAME completed"])
    assert listing(m, '""', quote(mutf7("Brouillons") + "*")) == ("OK", [
        b'(\\HasChildren) "/" "Brouillons"',
        f'(\\HasNoChildren) "/" {quote(other)}'.encode(),
    ])
    assert m.rename(quote(other), quote(encoded)) == ("OK", [b"RENAME completed"])
    # Invalid modified UTF-7 is refused with NO (not BAD, at which clients give up).
    assert m.create('"bad&Jjo!"') == (
        "NO", [b"[CANNOT] Mailbox name is not valid modified UTF-7"])
    assert listing(m, '""', "bad*") == ("OK", [None])
    m.logout()
    # With UTF8=ACCEPT enabled, names go both ways as UTF-8.
    r = raw_login(alice)
    assert r.cmd("ENABLE UTF8=ACCEPT") == ([b"* ENABLED UTF8=ACCEPT"], b"T002 OK ENABLE completed")
    untagged, tagged = r.cmd('LIST "" "Entw*"')
    assert tagged == b"T003 OK LIST completed"
    assert untagged == [
        '* LIST (\\HasChildren) "/" "Entwürfe"'.encode(),
        f'* LIST (\\HasNoChildren) "/" "{name}"'.encode(),
    ]
    untagged, tagged = r.cmd(f'SELECT "{name}"'.encode())
    assert tagged == b"T004 OK [READ-WRITE] SELECT completed" and untagged[0] == b"* 1 EXISTS"
    r.close()
