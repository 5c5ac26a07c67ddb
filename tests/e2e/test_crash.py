"""Crash safety end to end: a mixed concurrent load on the real server (SMTP senders on
the inbound and submission ports, IMAP APPEND, IMAP STORE \\Deleted + EXPUNGE, POP3
DELE + QUIT), a SIGKILL at a random moment, a restart on the same data directory, and
a check of everything the clients were told against what the store now holds; ten
rounds on one data directory.

The clients keep a ledger. Every message carries a unique marker (its Message-ID and
Subject) and known bytes; an operation counts as acknowledged only once the server said
so: SMTP 250 after DATA, APPEND tagged OK with APPENDUID, EXPUNGE tagged OK (for the
UIDs it reported), POP3 +OK to QUIT after DELE. An operation whose connection died
before its acknowledgement is in doubt: it may or may not have happened. In-doubt
messages are never sent again, so a marker may appear at most once per folder.

After each restart, `check_round` (a plain function, tested on fabricated failures at
the bottom of this file) compares the ledger with what IMAP (EXAMINE, UID FETCH 1:*
(UID BODY.PEEK[] FLAGS)) and POP3 (UIDL, RETR) show:

- every acknowledged message is present, byte for byte (SMTP adds its Return-Path and
  Received lines in front; their queue id is the one the 250 named), and so is every
  in-doubt message a previous check saw, unless a deletion of it was attempted since;
- every acknowledged deletion is gone, and a message a check found absent never comes
  back;
- no marker appears twice in a folder, nothing appears that was never sent (to that
  folder), \\Deleted is only on messages someone flagged;
- a UID never changes its message and never names another message later (per folder
  and UIDVALIDITY, across all rounds), UIDVALIDITY stays, UIDNEXT never goes down and
  stays above every UID an APPENDUID handed out; the same for POP3 UIDLs;
- IMAP and POP3 agree on which messages a maildrop holds.

A SIGKILL leaves the kernel's page cache alone: whatever the store wrote survives even
unsynced, so this test does not stand in for a power cut. What it catches is an
acknowledgement given before the write, and recovery bugs: a half-written record or
segment that replays wrongly, metadata without its body or a body without its metadata,
UID counters that go back.

PORTICO_CRASH_SEED=<n> replays the random choices of a failed run (the thread timing
is not replayable); the seed is in every failure message."""

from __future__ import annotations

import dataclasses
import os
import random
import re
import smtplib
import threading
import time
import traceback
from collections import defaultdict

from conftest import IO_TIMEOUT, Literal, RawClient, RawImap, SmtpServer

ROUNDS = 10
LOAD_SECS = (1.5, 3.5)  # the kill comes at a uniformly random moment in this range
JOIN_TIMEOUT = IO_TIMEOUT + 5.0

PASSWORD = "crash-Test-1"
HELO = "client.example.org"
HUB = "hub@example.com"  # one INBOX that several senders deliver to; also expunged
AMY = "amy@example.com"  # submission (AUTH) sender, and an inbound recipient
BEN = "ben@example.com"  # a recipient of AMY's mail
POP = "pop@example.com"  # its INBOX is emptied by POP3 DELE + QUIT
IVY = "ivy@example.com"  # IMAP APPEND into CRASH_FOLDER, which is also expunged
USERS = (HUB, AMY, BEN, POP, IVY)
CRASH_FOLDER = "Crash"

INBOUND_A = "alpha@remote.example"
INBOUND_B = "beta@remote.example"

Box = tuple[str, str]  # (user, folder)
BOXES: tuple[Box, ...] = (
    (HUB, "INBOX"),
    (AMY, "INBOX"),
    (BEN, "INBOX"),
    (POP, "INBOX"),
    (IVY, CRASH_FOLDER),
)
EXPUNGED_BOXES: tuple[Box, ...] = ((HUB, "INBOX"), (IVY, CRASH_FOLDER))
POP3_BOXES: tuple[Box, ...] = ((POP, "INBOX"),)

MARKER_DOMAIN = "crash.portico.test"
MARKER_RE = re.compile(rb"^Message-ID: <([^>@]+)@crash\.portico\.test>\r$", re.M | re.I)
QUEUED_RE = re.compile(rb"2\.0\.0 Ok: queued as ([0-9A-F]{12})")
APPENDUID_RE = re.compile(rb"T\d+ OK \[APPENDUID (\d+) (\d+)\]")
# What the server writes in front of a locally delivered message (see test_smtp.py).
TRACE_RE = re.compile(
    rb"Return-Path: <([^>]*)>\r\n"
    rb"Received: from [^\r\n]+ \(\[127\.0\.0\.1\]\)\r\n"
    rb"\tby [^\r\n]+ \(Portico\) with E?SMTPS?A?\r\n"
    rb"\tid ([0-9A-F]{12})\r\n"
    rb"\tfor <([^>]+)>;\r\n"
    rb"\t[^\r\n]+\r\n"
)

# Deletion states, per (box, marker), in the order they may advance.
FLAGGED = "flagged"  # STORE +FLAGS \Deleted sent: the message must still be there
IN_DOUBT = "in doubt"  # EXPUNGE or QUIT sent, no acknowledgement: either way is fine
DELETED = "deleted"  # acknowledged: the message must be gone
DELETION_ORDER = {FLAGGED: 0, IN_DOUBT: 1, DELETED: 2}


# --------------------------------------------------------------------------------------
# The ledger: what the clients sent and were told


@dataclasses.dataclass
class Sent:
    """One message a client tried to store."""

    marker: str
    data: bytes  # exactly what the client sent (CRLF line ends, ends with CRLF)
    via: str  # "smtp" or "append"
    boxes: tuple[Box, ...]  # where it goes: the accepted recipients' INBOXes, or a folder
    round: int
    mail_from: str = ""
    acked: bool = False
    queue_id: str | None = None  # from SMTP's 250
    appenduid: tuple[int, int] | None = None  # (UIDVALIDITY, UID) from APPEND's OK


@dataclasses.dataclass
class Deletion:
    state: str  # FLAGGED, IN_DOUBT or DELETED
    round: int  # when it last advanced
    how: str


class Ledger:
    """Thread-safe record of attempts and acknowledgements. An attempt is written before
    its first byte goes out, an acknowledgement after the server's answer came in."""

    def __init__(self, seed: int):
        self.seed = seed
        self.lock = threading.Lock()
        self.sent: dict[str, Sent] = {}
        self.deletions: dict[tuple[Box, str], Deletion] = {}
        self.counts: dict[str, int] = defaultdict(int)
        self._next = 0

    def new_marker(self) -> str:
        with self.lock:
            self._next += 1
            return f"crash.{self.seed}.{self._next}"

    def attempt(self, sent: Sent) -> None:
        with self.lock:
            assert sent.marker not in self.sent, f"marker {sent.marker} used twice"
            self.sent[sent.marker] = sent
            self.counts[f"{sent.via} attempted"] += 1

    def ack(self, marker: str, **fields) -> None:
        with self.lock:
            sent = self.sent[marker]
            sent.acked = True
            for name, value in fields.items():
                setattr(sent, name, value)
            self.counts[f"{sent.via} acknowledged"] += 1

    def _advance(self, box: Box, marker: str, state: str, round_no: int, how: str) -> None:
        old = self.deletions.get((box, marker))
        if old is None or DELETION_ORDER[state] > DELETION_ORDER[old.state]:
            self.deletions[(box, marker)] = Deletion(state, round_no, how)

    def flagging(self, box: Box, markers, round_no: int) -> None:
        with self.lock:
            for marker in markers:
                self._advance(box, marker, FLAGGED, round_no, "STORE +FLAGS \\Deleted")

    def expunging(self, box: Box, round_no: int) -> None:
        """An EXPUNGE is about to go out: whatever was flagged in `box` may go."""
        with self.lock:
            for (b, marker), d in list(self.deletions.items()):
                if b == box and d.state == FLAGGED:
                    self._advance(box, marker, IN_DOUBT, round_no, "IMAP EXPUNGE")

    def deleting(self, box: Box, markers, round_no: int, how: str) -> None:
        with self.lock:
            for marker in markers:
                self._advance(box, marker, IN_DOUBT, round_no, how)

    def deleted(self, box: Box, markers, round_no: int, how: str) -> None:
        with self.lock:
            for marker in markers:
                self._advance(box, marker, DELETED, round_no, how)
                self.counts[f"{how} acknowledged"] += 1


# --------------------------------------------------------------------------------------
# What a check sees, what earlier checks saw, and the checker


@dataclasses.dataclass
class Observed:
    uid: object  # IMAP UID (int) or POP3 UIDL (str)
    data: bytes
    flags: frozenset = frozenset()


@dataclasses.dataclass
class Observation:
    box: Box
    via: str  # "imap" or "pop3"
    uidvalidity: int | None
    uidnext: int | None
    messages: list[Observed]


@dataclasses.dataclass
class History:
    """What earlier checks saw; `check_round` reads and extends it."""

    uidvalidity: dict = dataclasses.field(default_factory=dict)  # (box, via) -> int
    uidnext: dict = dataclasses.field(default_factory=dict)  # (box, via) -> (int, round)
    # (box, via, uidvalidity, uid) -> (marker, round first seen)
    uid_marker: dict = dataclasses.field(default_factory=dict)
    marker_uid: dict = dataclasses.field(default_factory=dict)  # (box, via, marker) -> (uid, round)
    present: dict = dataclasses.field(default_factory=dict)  # (box, via, marker) -> (bool, round)


def marker_of(data: bytes) -> str | None:
    end = data.find(b"\r\n\r\n")
    m = MARKER_RE.search(data, 0, end + 2 if end >= 0 else len(data))
    return m.group(1).decode() if m else None


def first_difference(want: bytes, got: bytes) -> str:
    i = next((k for k, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
    return (
        f"{len(got)} bytes instead of {len(want)}, first difference at byte {i}: "
        f"sent {want[max(0, i - 20):i + 30]!r}, stored {got[max(0, i - 20):i + 30]!r}"
    )


def byte_problem(sent: Sent, box: Box, data: bytes) -> str | None:
    """Whether `data` (as stored in `box`) is not what `sent` must have become."""
    if sent.via == "append":
        return None if data == sent.data else "bytes differ: " + first_difference(sent.data, data)
    trace = TRACE_RE.match(data)
    if not trace:
        return f"no Return-Path/Received trace of the expected form in front: {data[:300]!r}"
    rest = data[trace.end():]
    if rest != sent.data:
        return "bytes after the trace differ: " + first_difference(sent.data, rest)
    return_path, queue_id, rcpt = (g.decode() for g in trace.groups())
    if return_path != sent.mail_from:
        return f"Return-Path <{return_path}>, but MAIL FROM was <{sent.mail_from}>"
    if rcpt.lower() != box[0]:
        return f"Received ... for <{rcpt}> in the INBOX of {box[0]}"
    if sent.queue_id is not None and queue_id != sent.queue_id:
        return f"Received id {queue_id}, but the 250 said queued as {sent.queue_id}"
    return None


def check_round(
    ledger: Ledger, history: History, observations: list[Observation], round_no: int
) -> list[str]:
    """Everything wrong with `observations` (made after the restart that followed round
    `round_no`'s kill, with no load running) given the ledger and what earlier rounds'
    checks saw, one line each; records this round's view in `history`."""
    problems: list[str] = []
    sent_all = ledger.sent
    deletions = ledger.deletions

    for obs in observations:
        user, folder = obs.box
        where = f"{user} {folder} ({obs.via})"

        def report(what: str, marker: str | None = None, uid=None) -> None:
            parts = [f"round {round_no}", f"seed {ledger.seed}", where]
            if uid is not None:
                parts.append(f"{'UID' if obs.via == 'imap' else 'UIDL'} {uid}")
            if marker is not None:
                parts.append(f"marker {marker}")
            problems.append(": ".join(parts) + ": " + what)

        key = (obs.box, obs.via)
        if obs.uidvalidity is not None:
            first = history.uidvalidity.setdefault(key, obs.uidvalidity)
            if first != obs.uidvalidity:
                report(f"UIDVALIDITY changed from {first} to {obs.uidvalidity}")
        if obs.uidnext is not None:
            before = history.uidnext.get(key)
            if before is not None and obs.uidnext < before[0]:
                report(f"UIDNEXT went down to {obs.uidnext} from {before[0]} (round {before[1]})")
            if before is None or obs.uidnext > before[0]:
                history.uidnext[key] = (obs.uidnext, round_no)
            for sent in sent_all.values():
                if (
                    sent.appenduid
                    and obs.box in sent.boxes
                    and sent.appenduid[0] == obs.uidvalidity
                    and sent.appenduid[1] >= obs.uidnext
                ):
                    report(
                        f"UIDNEXT {obs.uidnext}, but APPENDUID handed out UID "
                        f"{sent.appenduid[1]} in round {sent.round}: it would be used again",
                        sent.marker,
                    )

        by_marker: dict[str, list[Observed]] = defaultdict(list)
        for msg in obs.messages:
            marker = marker_of(msg.data)
            if marker is None:
                report(f"a message without a marker, never sent: {msg.data[:200]!r}", uid=msg.uid)
                continue
            by_marker[marker].append(msg)
            sent = sent_all.get(marker)
            if sent is None:
                report("never sent, yet present", marker, msg.uid)
                continue
            if obs.box not in sent.boxes:
                report(f"never sent to this folder (only to {sent.boxes})", marker, msg.uid)
                continue
            problem = byte_problem(sent, obs.box, msg.data)
            if problem:
                report(problem, marker, msg.uid)
            if obs.uidnext is not None and msg.uid >= obs.uidnext:
                report(f"UID not below UIDNEXT {obs.uidnext}", marker, msg.uid)
            if "\\Deleted" in msg.flags and (obs.box, marker) not in deletions:
                report("\\Deleted is set, but no client ever set it", marker, msg.uid)
            uid_key = (obs.box, obs.via, obs.uidvalidity, msg.uid)
            held, since = history.uid_marker.setdefault(uid_key, (marker, round_no))
            if held != marker:
                report(
                    f"UID reused: it held marker {held} (seen in round {since}), now another",
                    marker,
                    msg.uid,
                )

        for marker, msgs in by_marker.items():
            if len(msgs) > 1:
                uids = ", ".join(str(m.uid) for m in msgs)
                report(f"appears {len(msgs)} times (UIDs {uids})", marker)
                continue
            [msg] = msgs
            sent = sent_all.get(marker)
            if sent is None or obs.box not in sent.boxes:
                continue
            if (
                sent.appenduid
                and sent.appenduid[0] == obs.uidvalidity
                and sent.appenduid[1] != msg.uid
            ):
                report(f"APPENDUID said UID {sent.appenduid[1]}", marker, msg.uid)
            had, since = history.marker_uid.setdefault(
                (obs.box, obs.via, marker), (msg.uid, round_no)
            )
            if had != msg.uid:
                report(f"the message moved: it had UID {had} in round {since}", marker, msg.uid)

        for sent in sent_all.values():
            if obs.box not in sent.boxes:
                continue
            here = sent.marker in by_marker
            deletion = deletions.get((obs.box, sent.marker))
            presence_key = (obs.box, obs.via, sent.marker)
            before = history.present.get(presence_key)
            if deletion is not None and deletion.state == DELETED:
                if here:
                    report(
                        f"deleted ({deletion.how} acknowledged in round {deletion.round}), "
                        "yet present",
                        sent.marker,
                    )
            elif deletion is None or deletion.state == FLAGGED:
                if not here and sent.acked:
                    report(
                        f"lost: {sent.via} acknowledged in round {sent.round}, not present",
                        sent.marker,
                    )
                elif not here and before is not None and before[0]:
                    report(
                        f"lost: in doubt in round {sent.round}, present after round "
                        f"{before[1]}, gone now",
                        sent.marker,
                    )
            if here and before is not None and not before[0]:
                report(f"absent after round {before[1]}, present again", sent.marker)
            history.present[presence_key] = (here, round_no)

    markers_by_box: dict[Box, dict[str, set[str]]] = defaultdict(dict)
    for obs in observations:
        markers_by_box[obs.box][obs.via] = {marker_of(m.data) for m in obs.messages}
    for (user, folder), views in markers_by_box.items():
        if len(views) > 1 and len({frozenset(v) for v in views.values()}) > 1:
            names = sorted(views)
            a, b = views[names[0]], views[names[1]]
            problems.append(
                f"round {round_no}: seed {ledger.seed}: {user} {folder}: {names[0]} and "
                f"{names[1]} disagree: only in {names[0]}: {sorted(a - b, key=str)}; "
                f"only in {names[1]}: {sorted(b - a, key=str)}"
            )
    return problems


# --------------------------------------------------------------------------------------
# IMAP response parsing (just enough for FETCH)


class Atom(bytes):
    pass


def _value(d: bytes, i: int):
    c = d[i:i + 1]
    if c == b"(":
        out, i = [], i + 1
        while True:
            while d[i:i + 1] == b" ":
                i += 1
            if d[i:i + 1] == b")":
                return out, i + 1
            if i >= len(d):
                raise ValueError(f"unbalanced list in {d[:200]!r}")
            value, i = _value(d, i)
            out.append(value)
    if c == b'"':
        m = re.compile(rb'"((?:[^"\\]|\\.)*)"').match(d, i)
        if not m:
            raise ValueError(f"bad quoted string in {d[:200]!r}")
        return re.sub(rb"\\(.)", rb"\1", m.group(1)), m.end()
    if c == b"{":
        m = re.compile(rb"\{(\d+)\}\r\n").match(d, i)
        if not m:
            raise ValueError(f"bad literal in {d[:200]!r}")
        end = m.end() + int(m.group(1))
        if end > len(d):
            raise ValueError("literal runs past the end of the response")
        return d[m.end():end], end
    j = i
    while j < len(d) and d[j:j + 1] not in (b" ", b"(", b")"):
        if d[j:j + 1] == b"[":
            j = d.index(b"]", j)
        j += 1
    if j == i:
        raise ValueError(f"empty atom at {i} in {d[:200]!r}")
    return Atom(d[i:j]), j


FETCH_RE = re.compile(rb"\* (\d+) FETCH ")


def parse_fetch(line: bytes) -> tuple[int, dict]:
    """`* n FETCH (...)` -> (n, {NAME (upper-case, section as sent): value})."""
    m = FETCH_RE.match(line)
    assert m, f"not a FETCH response: {line[:200]!r}"
    items, end = _value(line, m.end())
    assert end == len(line) and len(items) % 2 == 0, f"bad FETCH response {line[:300]!r}"
    return int(m.group(1)), {
        bytes(name).decode().upper(): value for name, value in zip(items[::2], items[1::2])
    }


def imap_login(server: SmtpServer, user: str) -> RawImap:
    r = RawImap(server)
    tagged = r.login(user, PASSWORD)
    assert re.match(rb"T\d+ OK", tagged), tagged
    return r


def quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def observe_imap(server: SmtpServer, box: Box) -> Observation:
    user, folder = box
    r = imap_login(server, user)
    try:
        untagged, tagged = r.cmd(f"EXAMINE {quote(folder)}")
        assert re.match(rb"T\d+ OK", tagged), (box, untagged, tagged)
        text = b"\n".join(untagged)
        uidvalidity = int(re.search(rb"\[UIDVALIDITY (\d+)\]", text).group(1))
        uidnext = int(re.search(rb"\[UIDNEXT (\d+)\]", text).group(1))
        exists = int(re.search(rb"^\* (\d+) EXISTS$", text, re.M).group(1))
        messages = []
        if exists:
            untagged, tagged = r.cmd("UID FETCH 1:* (UID BODY.PEEK[] FLAGS)")
            assert re.match(rb"T\d+ OK", tagged), (box, tagged)
            for line in untagged:
                if not FETCH_RE.match(line):
                    continue
                _, items = parse_fetch(line)
                messages.append(
                    Observed(
                        int(items["UID"]),
                        items["BODY[]"],
                        frozenset(bytes(f).decode() for f in items["FLAGS"]),
                    )
                )
            assert len(messages) == exists, (box, exists, len(messages))
        r.cmd("LOGOUT")
        return Observation(box, "imap", uidvalidity, uidnext, messages)
    finally:
        r.close()


def unstuff(wire: bytes) -> bytes:
    assert wire.endswith(b".\r\n"), wire[-50:]
    lines = wire[:-3].split(b"\r\n")
    assert lines[-1] == b""
    return b"".join(
        (line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines[:-1]
    )


def pop3_login(server: SmtpServer, user: str) -> RawClient:
    r = RawClient(server)
    resp = r.login(user, PASSWORD)
    assert resp.startswith(b"+OK"), resp
    return r


def pop3_uidl(r: RawClient) -> list[tuple[int, str]]:
    resp = r.cmd("UIDL")
    assert resp.startswith(b"+OK"), resp
    out = []
    for line in r.multiline_raw()[:-3].split(b"\r\n")[:-1]:
        n, uidl = line.split(b" ", 1)
        out.append((int(n), uidl.decode()))
    return out


def observe_pop3(server: SmtpServer, box: Box) -> Observation:
    user, folder = box
    assert folder == "INBOX"
    r = pop3_login(server, user)
    try:
        messages = []
        for n, uidl in pop3_uidl(r):
            status = r.cmd(f"RETR {n}")
            size = re.fullmatch(rb"\+OK (\d+) octets", status)
            assert size, status
            data = unstuff(r.multiline_raw())
            assert int(size.group(1)) == len(data), (n, uidl, size.group(1), len(data))
            messages.append(Observed(uidl, data))
        assert r.cmd("QUIT").startswith(b"+OK")
        return Observation(box, "pop3", None, None, messages)
    finally:
        r.close()


def observe(server: SmtpServer) -> list[Observation]:
    return [observe_imap(server, box) for box in BOXES] + [
        observe_pop3(server, box) for box in POP3_BOXES
    ]


# --------------------------------------------------------------------------------------
# The load


class LoadError(Exception):
    """The server answered something a healthy server would not."""


class Round:
    """What the load threads of one round share."""

    def __init__(self, server: SmtpServer, ledger: Ledger, round_no: int):
        self.server = server
        self.ledger = ledger
        self.round = round_no
        self.killing = threading.Event()  # set just before the SIGKILL
        self.problems: list[str] = []
        self.lock = threading.Lock()

    def run(self, name: str, session) -> None:
        """Runs `session(self, rng)` (one connection's worth of work) until the kill.
        An error before the kill is a problem; after it, the expected end."""
        rng = random.Random(f"{self.ledger.seed}/{self.round}/{name}")
        while not self.killing.is_set():
            try:
                session(self, rng)
            except Exception:
                if not self.killing.is_set():
                    with self.lock:
                        self.problems.append(
                            f"round {self.round}: seed {self.ledger.seed}: {name} failed "
                            f"while the server was up:\n{traceback.format_exc()}"
                        )
                return


_filler_rng = random.Random(0)
FILLER = "".join(_filler_rng.choice("abcdefghij .=-") for _ in range(1 << 16))


def make_message(marker: str, rng: random.Random, mail_from: str, to: list[str]) -> bytes:
    """A CRLF message with `marker` as Message-ID and Subject: mostly small, now and
    then a large one (over a body chunk, or several), with dot-led lines."""
    size = rng.choice([200, 900, 3000, 3000, 12000, 40000, 150000])
    size = rng.randint(size // 2, size)
    head = (
        f"From: <{mail_from}>\r\nTo: {', '.join(f'<{t}>' for t in to)}\r\n"
        f"Subject: {marker}\r\nMessage-ID: <{marker}@{MARKER_DOMAIN}>\r\n"
        "Date: Thu, 01 Feb 2024 10:00:00 +0000\r\n\r\n"
    ).encode()
    lines, total, n = [], 0, 0
    while total < size:
        n += 1
        start = rng.randrange(len(FILLER) - 70)
        fill = FILLER[start:start + rng.randint(0, 70)]
        line = f"{'.' if n % 7 == 0 else ''}{marker} line {n} {fill}\r\n".encode()
        lines.append(line)
        total += len(line)
    return head + b"".join(lines)


def smtp_session(port_attr: str, mail_from: str, rcpt_pool: list[str], auth: str | None):
    def session(ctx: Round, rng: random.Random) -> None:
        s = smtplib.SMTP(
            "127.0.0.1",
            getattr(ctx.server, port_attr),
            local_hostname=HELO,
            timeout=IO_TIMEOUT,
        )
        try:
            code, text = s.ehlo()
            if code != 250:
                raise LoadError(f"EHLO answered {code} {text!r}")
            if auth:
                s.login(auth, PASSWORD)
            for _ in range(rng.randint(1, 5)):
                if ctx.killing.is_set():
                    return
                rcpts = rng.sample(rcpt_pool, rng.randint(1, len(rcpt_pool)))
                code, text = s.mail(mail_from)
                if code != 250:
                    raise LoadError(f"MAIL FROM answered {code} {text!r}")
                for rcpt in rcpts:
                    code, text = s.rcpt(rcpt)
                    if code != 250:
                        raise LoadError(f"RCPT TO:<{rcpt}> answered {code} {text!r}")
                marker = ctx.ledger.new_marker()
                data = make_message(marker, rng, mail_from, rcpts)
                ctx.ledger.attempt(
                    Sent(
                        marker,
                        data,
                        "smtp",
                        tuple((rcpt, "INBOX") for rcpt in rcpts),
                        ctx.round,
                        mail_from=mail_from,
                    )
                )
                code, text = s.data(data)
                queued = QUEUED_RE.fullmatch(text)
                if code != 250 or not queued:
                    raise LoadError(f"DATA of {marker} answered {code} {text!r}")
                ctx.ledger.ack(marker, queue_id=queued.group(1).decode())
            s.quit()
        finally:
            s.close()

    return session


def append_session(ctx: Round, rng: random.Random) -> None:
    box = (IVY, CRASH_FOLDER)
    r = imap_login(ctx.server, IVY)
    try:
        for _ in range(rng.randint(1, 6)):
            if ctx.killing.is_set():
                return
            marker = ctx.ledger.new_marker()
            data = make_message(marker, rng, IVY, [IVY])
            ctx.ledger.attempt(Sent(marker, data, "append", (box,), ctx.round))
            _, tagged = r.cmd(f"APPEND {quote(CRASH_FOLDER)} ", Literal(data))
            m = APPENDUID_RE.match(tagged)
            if not m:
                raise LoadError(f"APPEND of {marker} answered {tagged!r}")
            ctx.ledger.ack(marker, appenduid=(int(m.group(1)), int(m.group(2))))
        r.cmd("LOGOUT")
    finally:
        r.close()


def apply_untagged(view: list, untagged: list[bytes]) -> list:
    """Applies `* n EXISTS` (new messages, UID unknown: None) and `* n EXPUNGE` to a
    session's UID-by-sequence-number view; returns the UIDs expunged (None where the
    session did not know it)."""
    gone = []
    for line in untagged:
        m = re.fullmatch(rb"\* (\d+) (EXISTS|EXPUNGE)", line)
        if not m:
            continue
        n = int(m.group(1))
        if m.group(2) == b"EXISTS":
            view.extend([None] * (n - len(view)))
        else:
            if not 1 <= n <= len(view):
                raise LoadError(f"{line!r} with {len(view)} messages in view")
            gone.append(view.pop(n - 1))
    return gone


def expunge_session(ctx: Round, rng: random.Random) -> None:
    """SELECT a folder, then a few times: learn UIDs and markers, flag one to eight
    known messages \\Deleted, EXPUNGE; the UIDs the EXPUNGE reports are the deletions
    its tagged OK acknowledges."""
    box = rng.choice(EXPUNGED_BOXES)
    user, folder = box
    r = imap_login(ctx.server, user)
    try:
        untagged, tagged = r.cmd(f"SELECT {quote(folder)}")
        if not re.match(rb"T\d+ OK", tagged):
            raise LoadError(f"SELECT {folder} answered {tagged!r}")
        view: list = []
        apply_untagged(view, untagged)
        for _ in range(rng.randint(1, 4)):
            if ctx.killing.wait(rng.uniform(0.0, 0.1)):  # pacing, so the folders fill up
                return
            untagged, tagged = r.cmd("NOOP")
            if apply_untagged(view, untagged):
                raise LoadError(f"an expunge by someone else in {box}: {untagged!r}")
            if len(view) < 4:
                continue
            untagged, tagged = r.cmd(
                "UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
            )
            if not re.match(rb"T\d+ OK", tagged):
                raise LoadError(f"UID FETCH answered {tagged!r}")
            marker_by_uid = {}
            for line in untagged:
                if FETCH_RE.match(line):
                    seq, items = parse_fetch(line)
                    uid = int(items["UID"])
                    header = next(v for k, v in items.items() if k.startswith("BODY["))
                    marker_by_uid[uid] = marker_of(header + b"\r\n")
                    view.extend([None] * (seq - len(view)))
                    view[seq - 1] = uid
            apply_untagged(view, untagged)
            known = [uid for uid in view if uid is not None and marker_by_uid.get(uid)]
            targets = rng.sample(known, min(len(known), rng.randint(1, 8)))
            if not targets:
                continue
            ctx.ledger.flagging(box, [marker_by_uid[u] for u in targets], ctx.round)
            uid_set = ",".join(map(str, targets))
            untagged, tagged = r.cmd(f"UID STORE {uid_set} +FLAGS.SILENT (\\Deleted)")
            if not re.match(rb"T\d+ OK", tagged):
                raise LoadError(f"UID STORE {uid_set} answered {tagged!r}")
            apply_untagged(view, untagged)
            ctx.ledger.expunging(box, ctx.round)
            untagged, tagged = r.cmd("EXPUNGE")
            if not re.match(rb"T\d+ OK", tagged):
                raise LoadError(f"EXPUNGE answered {tagged!r}")
            gone = apply_untagged(view, untagged)
            unknown = [u for u in gone if u is None or not marker_by_uid.get(u)]
            if unknown or not set(targets) <= set(gone):
                raise LoadError(
                    f"EXPUNGE in {box} after flagging UIDs {targets} expunged {gone}"
                )
            ctx.ledger.deleted(box, [marker_by_uid[u] for u in gone], ctx.round, "IMAP EXPUNGE")
        r.cmd("LOGOUT")
    finally:
        r.close()


def pop3_session(ctx: Round, rng: random.Random) -> None:
    """Log in, DELE up to six messages (marker by TOP n 0), QUIT; now and then drop
    the connection instead of QUIT, which must delete nothing (RFC 1939 §6)."""
    box = (POP, "INBOX")
    if ctx.killing.wait(rng.uniform(0.0, 0.3)):  # pacing, so the maildrop fills up
        return
    r = pop3_login(ctx.server, POP)
    try:
        listing = pop3_uidl(r)
        chosen = rng.sample(listing, min(len(listing), rng.randint(0, 6)))
        markers = []
        for n, uidl in chosen:
            resp = r.cmd(f"TOP {n} 0")
            if not resp.startswith(b"+OK"):
                raise LoadError(f"TOP {n} 0 answered {resp!r}")
            marker = marker_of(unstuff(r.multiline_raw()))
            if marker is None:
                raise LoadError(f"message {n} (UIDL {uidl}) has no marker")
            resp = r.cmd(f"DELE {n}")
            if resp != f"+OK Message {n} deleted".encode():
                raise LoadError(f"DELE {n} answered {resp!r}")
            markers.append(marker)
        if markers and rng.random() < 0.2:
            return  # dropped without QUIT: the finally closes the socket
        ctx.ledger.deleting(box, markers, ctx.round, "POP3 QUIT")
        resp = r.cmd("QUIT")
        if not resp.startswith(b"+OK"):
            raise LoadError(f"QUIT answered {resp!r}")
        ctx.ledger.deleted(box, markers, ctx.round, "POP3 QUIT")
    finally:
        r.close()


WORKERS = {
    # Two inbound (port 25 style) senders into one INBOX, one of them also to others.
    "inbound-alpha": smtp_session("smtp_port", INBOUND_A, [HUB], None),
    "inbound-beta": smtp_session("smtp_port", INBOUND_B, [HUB, AMY, POP], None),
    # Submission with AUTH, to several INBOXes.
    "submission-amy": smtp_session("submission_port", AMY, [HUB, BEN, POP], AMY),
    # Two sessions appending to one folder at the same time (group commit in a folder).
    "append-ivy-1": append_session,
    "append-ivy-2": append_session,
    "expunge": expunge_session,
    "pop3-dele": pop3_session,
}


# --------------------------------------------------------------------------------------
# The test


def summarize(problems: list[str], examples: int = 3) -> str:
    """The problems grouped by kind (numbers and markers masked), a few of each kind in
    full, so that one lost write does not hide behind a thousand lines of its effects."""
    kinds: dict[str, list[str]] = defaultdict(list)
    for problem in problems:
        kinds[re.sub(r"\b(?:crash\.\d+\.\d+|\d+)\b", "#", problem)].append(problem)
    out = [f"{len(problems)} problems of {len(kinds)} kinds:"]
    for kind, found in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        out.append(f"{len(found)} x {kind}")
        out.extend(f"    {p}" for p in found[:examples])
    return "\n".join(out)


def round_summary(
    ledger: Ledger,
    history: History,
    observations: list[Observation],
    round_no: int,
    load_secs: float,
    check_secs: float,
) -> str:
    """One line for the log: how the round's in-doubt operations came out, and what the
    folders hold."""
    doubt = [s for s in ledger.sent.values() if s.round == round_no and not s.acked]
    kept = sum(
        1
        for s in doubt
        if any(history.present.get((box, "imap", s.marker), (False,))[0] for box in s.boxes)
    )
    pending = [
        d.how for d in ledger.deletions.values() if d.round == round_no and d.state == IN_DOUBT
    ]
    sizes = ", ".join(
        f"{o.box[0].split('@')[0]}/{o.box[1]}={len(o.messages)}"
        for o in observations
        if o.via == "imap"
    )
    return (
        f"round {round_no}: killed after {load_secs:.2f}s; {len(doubt)} messages in doubt "
        f"({kept} kept), {len(pending)} deletions in doubt {sorted(set(pending))}; "
        f"check {check_secs:.2f}s; {sizes}"
    )


def test_acknowledged_changes_survive_sigkill_under_load(make_smtp_server):
    seed = int(os.environ.get("PORTICO_CRASH_SEED") or random.randrange(1, 10**6))
    print(f"PORTICO_CRASH_SEED={seed}")
    rng = random.Random(seed)
    server = make_smtp_server(login="plaintext", smtp_login="plaintext")
    for user in USERS:
        server.add_user(user, PASSWORD)
    r = imap_login(server, IVY)
    assert re.match(rb"T\d+ OK", r.cmd(f"CREATE {quote(CRASH_FOLDER)}")[1])
    r.close()

    ledger = Ledger(seed)
    history = History()
    started = time.monotonic()
    for round_no in range(1, ROUNDS + 1):
        ctx = Round(server, ledger, round_no)
        threads = [
            threading.Thread(target=ctx.run, args=(name, session), name=name, daemon=True)
            for name, session in WORKERS.items()
        ]
        for t in threads:
            t.start()
        # The random moment of the crash (not a wait for readiness).
        load_secs = rng.uniform(*LOAD_SECS)
        time.sleep(load_secs)
        ctx.killing.set()
        server.kill()
        for t in threads:
            t.join(JOIN_TIMEOUT)
        hung = [t.name for t in threads if t.is_alive()]
        assert not hung, f"seed {seed}: round {round_no}: load threads hang after the kill: {hung}"
        assert not ctx.problems, "\n".join(ctx.problems)

        server.start()
        check_started = time.monotonic()
        observations = observe(server)
        problems = check_round(ledger, history, observations, round_no)
        assert not problems, summarize(problems)
        print(round_summary(ledger, history, observations, round_no, load_secs,
                            time.monotonic() - check_started))

    elapsed = time.monotonic() - started
    counts = dict(sorted(ledger.counts.items()))
    in_doubt = sum(1 for s in ledger.sent.values() if not s.acked)
    print(f"seed {seed}: {ROUNDS} rounds in {elapsed:.1f}s: {counts}; {in_doubt} in doubt")
    # The load must really have run, or the checks above prove nothing.
    for what in (
        "smtp acknowledged",
        "append acknowledged",
        "IMAP EXPUNGE acknowledged",
        "POP3 QUIT acknowledged",
    ):
        assert counts.get(what, 0) >= ROUNDS, f"seed {seed}: too little load: {counts}"


# --------------------------------------------------------------------------------------
# The checker catches what it is there to catch


def fabricated() -> tuple[Ledger, History]:
    """A ledger of three acknowledged messages in IVY's folder (UIDs 1-3) and one SMTP
    message to HUB, and a history in which round 1 saw all of them."""
    ledger = Ledger(seed=7)
    box = (IVY, CRASH_FOLDER)
    for uid in (1, 2, 3):
        marker = f"crash.7.{uid}"
        ledger.attempt(Sent(marker, make_message(marker, random.Random(uid), IVY, [IVY]),
                            "append", (box,), 1))
        ledger.ack(marker, appenduid=(100, uid))
    history = History()
    assert check_round(ledger, history, [imap_view(ledger, {1: "crash.7.1", 2: "crash.7.2",
                                                            3: "crash.7.3"})], 1) == []
    return ledger, history


def imap_view(ledger: Ledger, uids: dict[int, str], uidnext: int = 4) -> Observation:
    box = (IVY, CRASH_FOLDER)
    return Observation(
        box, "imap", 100, uidnext,
        [Observed(uid, ledger.sent[m].data if m in ledger.sent else
                  make_message(m, random.Random(0), IVY, [IVY])) for uid, m in uids.items()],
    )


def only(problems: list[str], *needles: str) -> None:
    assert len(problems) == 1, problems
    for needle in needles:
        assert needle in problems[0], (needle, problems[0])


def test_checker_reports_a_lost_message():
    ledger, history = fabricated()
    only(check_round(ledger, history, [imap_view(ledger, {1: "crash.7.1", 3: "crash.7.3"})], 2),
         "round 2", "seed 7", f"{IVY} {CRASH_FOLDER}", "crash.7.2", "lost")


def test_checker_reports_a_duplicate():
    ledger, history = fabricated()
    view = imap_view(ledger, {1: "crash.7.1", 2: "crash.7.2", 3: "crash.7.3"}, uidnext=5)
    view.messages.append(Observed(4, ledger.sent["crash.7.2"].data))
    only(check_round(ledger, history, [view], 2), "crash.7.2", "appears 2 times (UIDs 2, 4)")


def test_checker_reports_a_reused_uid():
    ledger, history = fabricated()
    box = (IVY, CRASH_FOLDER)
    # UID 3 was deleted (acknowledged); a later message must not get UID 3 again.
    ledger.deleted(box, ["crash.7.3"], 2, "IMAP EXPUNGE")
    ledger.attempt(Sent("crash.7.4", make_message("crash.7.4", random.Random(4), IVY, [IVY]),
                        "append", (box,), 2))
    problems = check_round(
        ledger, history, [imap_view(ledger, {1: "crash.7.1", 2: "crash.7.2", 3: "crash.7.4"})], 2
    )
    only(problems, "UID 3", "crash.7.4", "UID reused", "crash.7.3")


def test_checker_reports_more_kinds_of_damage():
    ledger, history = fabricated()
    box = (IVY, CRASH_FOLDER)
    ledger.deleted(box, ["crash.7.1"], 2, "IMAP EXPUNGE")
    damaged = bytearray(ledger.sent["crash.7.2"].data)
    damaged[-5] ^= 0x20
    view = imap_view(ledger, {1: "crash.7.1", 3: "crash.7.3", 5: "crash.7.99"}, uidnext=3)
    view.messages.insert(1, Observed(2, bytes(damaged)))
    problems = check_round(ledger, history, [view], 2)
    text = "\n".join(problems)
    for needle in (
        "crash.7.1: deleted (IMAP EXPUNGE acknowledged in round 2), yet present",
        "crash.7.2: bytes differ",
        "crash.7.99: never sent",
        "UIDNEXT went down to 3 from 4",
        "APPENDUID handed out UID 3",
    ):
        assert needle in text, (needle, problems)
    # A message once seen, then missing, then back; and an SMTP trace that is off.
    ledger, history = fabricated()
    assert check_round(ledger, history, [imap_view(ledger, {1: "crash.7.1"})], 2)
    problems = check_round(ledger, history, [imap_view(ledger, {1: "crash.7.1", 2: "crash.7.2",
                                                                3: "crash.7.3"})], 3)
    assert sum("absent after round 2, present again" in p for p in problems) == 2, problems
    sent = Sent("crash.7.50", b"Message-ID: <crash.7.50@crash.portico.test>\r\n\r\nx\r\n",
                "smtp", ((HUB, "INBOX"),), 1, mail_from=INBOUND_A, queue_id="0123456789AB")
    trace = (f"Return-Path: <{INBOUND_A}>\r\nReceived: from {HELO} ([127.0.0.1])\r\n"
             f"\tby mail.example.com (Portico) with ESMTP\r\n\tid 0123456789AB\r\n"
             f"\tfor <{HUB}>;\r\n\tThu, 01 Feb 2024 10:00:00 +0000\r\n").encode()
    assert byte_problem(sent, (HUB, "INBOX"), trace + sent.data) is None
    assert "queued as 0123456789AB" in byte_problem(
        sent, (HUB, "INBOX"), trace.replace(b"0123456789AB", b"0123456789AC") + sent.data)
    assert "in the INBOX of" in byte_problem(sent, (AMY, "INBOX"), trace + sent.data)
    assert "bytes after the trace differ" in byte_problem(
        sent, (HUB, "INBOX"), trace + sent.data[:-1])
