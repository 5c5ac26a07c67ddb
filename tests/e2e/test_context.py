"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4) against the real binary over raw
sockets: one session keeps live SEARCH and SORT results while a second session (and
local delivery) appends, changes flags and expunges. The exact ADDTO and REMOVEFROM
lines during IDLE, then a randomized run whose checker applies every update to a model
of each live result, as a client would, and compares it with a fresh SEARCH or SORT of
the same criteria after every step."""

from __future__ import annotations

import random
import re

from conftest import Literal, RawImap

ALICE = "alice@example.com"
ALICE_PW = "alice-secret"


def signed_in(server, rev2: bool = False, folder: str | None = None) -> RawImap:
    client = RawImap(server)
    assert re.match(rb"T\d+ OK", client.login(ALICE, ALICE_PW))
    if rev2:
        client.ok("ENABLE IMAP4rev2")
    if folder:
        client.ok(f'SELECT "{folder}"')
    return client


def message(subject: str, size: int = 0) -> bytes:
    return f"Subject: {subject}\r\n\r\n".encode() + b"x" * size + b"\r\n"


def expand(sequence_set: str) -> list[int]:
    """A sequence set in the order written; a range ascends (RFC 5267 §3.2)."""
    out: list[int] = []
    for part in sequence_set.split(","):
        if ":" in part:
            a, b = (int(n) for n in part.split(":"))
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


ESEARCH = re.compile(rb'\* ESEARCH \(TAG "([^"]+)"\)( UID)?(.*)')


def esearch_items(rest: str) -> list[tuple[str, str]]:
    """(name, value) items of an ESEARCH line after its correlator; a parenthesized
    value is returned without its parentheses."""
    items = []
    tokens = re.findall(r"\([^)]*\)|\S+", rest)
    for name, value in zip(tokens[::2], tokens[1::2]):
        items.append((name, value.strip("()")))
    return items


class LiveResult:
    """A client's copy of one live result: the first answer, then every ADDTO and
    REMOVEFROM applied in order (RFC 5267 §4.3.2-4.3.4), and for sequence numbers every
    EXPUNGE too."""

    def __init__(self, tag: str, uid: bool, ordered: bool):
        self.tag, self.uid, self.ordered = tag, uid, ordered
        self.items: list[int] = []
        # ADDTO and REMOVEFROM runs applied, by context position 0 or not.
        self.applied = {"ADDTO": 0, "REMOVEFROM": 0}

    def line(self, line: bytes) -> None:
        m = ESEARCH.fullmatch(line)
        if m and m.group(1).decode() == self.tag:
            assert bool(m.group(2)) == self.uid, line
            for name, value in esearch_items(m.group(3).decode()):
                pairs = value.split()
                if name == "ALL":
                    self.items = expand(value)
                elif name in ("ADDTO", "REMOVEFROM"):
                    for position, numbers in zip(pairs[::2], pairs[1::2]):
                        self.apply(name, int(position), expand(numbers))
            return
        m = re.fullmatch(rb"\* (\d+) EXPUNGE", line)
        if m and not self.uid:
            gone = int(m.group(1))
            # REMOVEFROM came first, while the number was still valid (§4.3.4).
            assert gone not in self.items, (self.tag, gone, self.items)
            self.items = [n - 1 if n > gone else n for n in self.items]

    def apply(self, name: str, position: int, numbers: list[int]) -> None:
        self.applied[name] += 1
        if position == 0:
            assert not self.ordered, (self.tag, name)
            if name == "ADDTO":
                assert not set(numbers) & set(self.items), (self.tag, numbers, self.items)
                self.items = sorted(self.items + numbers)
            else:
                assert set(numbers) <= set(self.items), (self.tag, numbers, self.items)
                self.items = [n for n in self.items if n not in numbers]
            return
        at = position - 1
        if name == "ADDTO":
            assert at <= len(self.items), (self.tag, position, self.items)
            self.items[at:at] = numbers
        else:
            assert self.items[at : at + len(numbers)] == numbers, (self.tag, position, numbers, self.items)
            del self.items[at : at + len(numbers)]


class Watcher:
    """Session A with its live results: every line it reads goes through each model."""

    def __init__(self, client: RawImap):
        self.client = client
        self.live: dict[str, tuple[LiveResult, str]] = {}

    def feed(self, lines: list[bytes]) -> None:
        for line in lines:
            for model, _ in self.live.values():
                model.line(line)

    def cmd(self, command: str, tag: str | None = None) -> list[bytes]:
        untagged, tagged = self.client.cmd(command, tag=tag)
        assert re.match(rb"\S+ OK", tagged), (command, untagged, tagged)
        self.feed(untagged)
        return untagged

    def open(self, tag: str, command: str, criteria: str) -> None:
        uid = command.startswith("UID ")
        self.live[tag] = (LiveResult(tag, uid, "SORT" in command), criteria)
        untagged = self.cmd(command, tag=tag)
        assert not any(b"NOUPDATE" in line for line in untagged), untagged
        if " ALL" not in untagged[-1].decode():
            # Asked for no full answer (MIN, COUNT, a PARTIAL window): nothing changed
            # since, so the result starts as a fresh search says.
            self.live[tag][0].items = self.fresh(criteria)

    def fresh(self, criteria: str) -> list[int]:
        """A fresh SEARCH or SORT of the same criteria (plain responses)."""
        untagged, tagged = self.client.cmd(criteria)
        assert re.match(rb"\S+ OK", tagged), (criteria, untagged, tagged)
        self.feed([line for line in untagged if not line.startswith((b"* SEARCH", b"* SORT"))])
        answer = [line for line in untagged if line.startswith((b"* SEARCH", b"* SORT"))]
        assert len(answer) == 1, (criteria, untagged)
        return [int(n) for n in answer[0].split()[2:]]

    def check(self, step) -> None:
        for tag, (model, criteria) in self.live.items():
            expected = self.fresh(criteria)
            if model.ordered:
                assert model.items == expected, (step, tag, criteria, model.items, expected)
            else:
                assert sorted(model.items) == expected, (step, tag, criteria, model.items, expected)


def test_live_results_follow_another_session_during_idle(make_imap_server):
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    b = signed_in(server)
    b.ok("APPEND INBOX ", Literal(message("c")))
    b.ok("APPEND INBOX (\\Seen) ", Literal(message("a")))
    b.ok("APPEND INBOX ", Literal(message("b")))
    b.ok("SELECT INBOX")
    a = signed_in(server, rev2=True, folder="INBOX")
    assert a.cmd("UID SEARCH RETURN (UPDATE) UNSEEN", tag="s1") == (
        [b'* ESEARCH (TAG "s1") UID ALL 1,3'],
        b"s1 OK UID SEARCH completed",
    )
    assert a.cmd("SORT RETURN (UPDATE COUNT) (SUBJECT) UTF-8 UNSEEN", tag="s2") == (
        [b'* ESEARCH (TAG "s2") COUNT 2'],
        b"s2 OK SORT completed",
    )
    a.send(b"i1 IDLE\r\n")
    assert a.line() == b"+ idling"
    # A new message: ADDTO after its EXISTS; the SORT's where "bb" goes (b bb c).
    b.ok("APPEND INBOX ", Literal(message("bb")))
    assert [a.line() for _ in range(3)] == [
        b"* 4 EXISTS",
        b'* ESEARCH (TAG "s1") UID ADDTO (0 4)',
        b'* ESEARCH (TAG "s2") ADDTO (2 4)',
    ]
    # Local delivery too; "aa" goes first.
    assert server.deliver(ALICE, message("aa")) == 5
    assert [a.line() for _ in range(3)] == [
        b"* 5 EXISTS",
        b'* ESEARCH (TAG "s1") UID ADDTO (0 5)',
        b'* ESEARCH (TAG "s2") ADDTO (1 5)',
    ]
    b.ok("STORE 3 +FLAGS (\\Seen)")
    assert [a.line() for _ in range(3)] == [
        b"* 3 FETCH (UID 3 FLAGS (\\Seen))",
        b'* ESEARCH (TAG "s1") UID REMOVEFROM (0 3)',
        b'* ESEARCH (TAG "s2") REMOVEFROM (2 3)',
    ]
    # REMOVEFROM before the EXPUNGE, while sequence number 1 still means message 1.
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert a.line() == b"* 1 FETCH (UID 1 FLAGS (\\Deleted))"
    b.ok("EXPUNGE")
    assert [a.line() for _ in range(3)] == [
        b'* ESEARCH (TAG "s1") UID REMOVEFROM (0 1)',
        b'* ESEARCH (TAG "s2") REMOVEFROM (3 1)',
        b"* 1 EXPUNGE",
    ]
    a.send(b"DONE\r\n")
    assert a.line() == b"i1 OK IDLE terminated"
    assert a.cmd("SORT (SUBJECT) UTF-8 UNSEEN", tag="s3") == (
        [b"* SORT 4 3"],
        b"s3 OK SORT completed",
    )
    # CANCELUPDATE: no more updates for s1; s2 goes on.
    assert a.cmd('CANCELUPDATE "s1"', tag="c1") == ([], b"c1 OK CANCELUPDATE completed")
    assert a.cmd('CANCELUPDATE "s1"', tag="c2") == (
        [],
        b'c2 BAD No live search has tag "s1"; nothing cancelled',
    )
    b.ok("STORE 1 -FLAGS (\\Seen)")
    assert a.cmd("NOOP", tag="n1") == (
        [b"* 1 FETCH (UID 2 FLAGS ())"],
        b"n1 OK NOOP completed",
    )
    assert a.cmd("NOOP", tag="n2") == (
        [b'* ESEARCH (TAG "s2") ADDTO (1 1)'],
        b"n2 OK NOOP completed",
    )
    a.close()
    b.close()


SUBJECTS = ["alpha", "beta", "gamma", "delta"]
FLAGS = ["\\Seen", "\\Flagged", "\\Deleted", "$Work"]

# (tag, live command, the same criteria as a plain command)
CONTEXTS = [
    ("u1", "UID SEARCH RETURN (UPDATE) UNSEEN", "UID SEARCH UNSEEN"),
    ("u2", "SEARCH RETURN (UPDATE COUNT) FLAGGED NOT DELETED", "SEARCH FLAGGED NOT DELETED"),
    (
        "u3",
        'UID SORT RETURN (UPDATE MIN) (SUBJECT REVERSE SIZE) UTF-8 OR KEYWORD $Work SUBJECT "a"',
        'UID SORT (SUBJECT REVERSE SIZE) UTF-8 OR KEYWORD $Work SUBJECT "a"',
    ),
    ("u4", "UID SEARCH RETURN (UPDATE PARTIAL 1:2) LARGER 60 UNSEEN", "UID SEARCH LARGER 60 UNSEEN"),
    ("u5", "SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 UNDELETED", "SORT (REVERSE SUBJECT) UTF-8 UNDELETED"),
]


def test_randomized_live_results_equal_a_fresh_search(make_imap_server):
    """Random appends, flag changes (from the other session and this one) and expunges;
    after each, every live result as the client keeps it equals a fresh SEARCH or SORT."""
    rng = random.Random(5267)
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    b = signed_in(server)
    for _ in range(6):
        b.ok("APPEND INBOX ", Literal(message(rng.choice(SUBJECTS), rng.randrange(120))))
    b.ok("SELECT INBOX")
    a = Watcher(signed_in(server, folder="INBOX"))
    for tag, command, criteria in CONTEXTS:
        a.open(tag, command, criteria)
    a.check("start")
    count = 6
    for step in range(200):
        action = rng.choice(["append", "append", "store", "store", "store", "own-store", "expunge"])
        if action == "append":
            flags = " ".join(f for f in FLAGS if rng.random() < 0.3)
            prefix = f"APPEND INBOX ({flags}) " if flags else "APPEND INBOX "
            b.ok(prefix, Literal(message(rng.choice(SUBJECTS), rng.randrange(120))))
            count += 1
            b.ok("NOOP")
        elif action in ("store", "own-store") and count:
            who = b if action == "store" else a.client
            n = rng.randrange(1, count + 1)
            m = min(count, n + rng.randrange(3))
            change = rng.choice(["+FLAGS", "-FLAGS"])
            flags = " ".join(rng.sample(FLAGS, rng.randrange(1, 3)))
            if who is b:
                b.ok(f"STORE {n}:{m} {change} ({flags})")
            else:
                a.cmd(f"STORE {n}:{m} {change} ({flags})")
        elif action == "expunge":
            untagged = b.ok("EXPUNGE")
            count -= sum(1 for line in untagged if line.endswith(b" EXPUNGE"))
        # A's next command sees every change B was told was done (and reports the
        # updates before its own answer).
        a.cmd("NOOP")
        a.check((step, action))
    # The run exercised both kinds of update on every result.
    for tag, (model, _) in a.live.items():
        assert model.applied["ADDTO"] >= 10 and model.applied["REMOVEFROM"] >= 10, (tag, model.applied)
    a.client.close()
    b.close()
