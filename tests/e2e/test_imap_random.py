"""Randomized multi-session consistency against the real binary: four IMAP sessions of one
user APPEND, STORE (system flags and keywords), EXPUNGE, COPY, MOVE, FETCH and NOOP at
random on two shared folders for a few seconds, each through its own connection. A
checker keeps every session's view from what the server told it and asserts after every
response line (RFC 9051 §7, RFC 7162 §3):

- sequence numbers are valid in the session's view: EXPUNGE and FETCH name a message
  the session has, EXISTS never shrinks the view;
- a message's UID never changes, and its MODSEQ never goes back;
- every keyword in a FETCH was listed in the session's last FLAGS response;
- no command built from the session's own view is answered BAD;

and at the end every session, brought up to date with NOOP, sees its folder exactly as
a fresh SELECT does (same UIDs in order, same flags).

PORTICO_RANDOM_SEED and PORTICO_RANDOM_SESSIONS (2 to 8) run it another way. It found
that a COPY into a folder could be announced after a later APPEND there, so that a
session's view missed the copied message for good: copies are now made by the
destination folder's actor, which announces its folder's UIDs in order.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time

from conftest import Literal, RawImap
from test_imap_consistency import ALICE, ALICE_PW

FOLDERS = ["INBOX", "Shared"]
KEYWORDS = ["$K1", "$K2", "$K3", "$Label4", "Work5"]
SYSTEM = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted"]
SESSIONS = int(os.environ.get("PORTICO_RANDOM_SESSIONS", "4"))
SECONDS = 6.0
# Another seed: PORTICO_RANDOM_SEED=n (a failure names the seed it ran with).
SEED = int(os.environ.get("PORTICO_RANDOM_SEED", "20261206"))

FETCH_RE = re.compile(rb"\* (\d+) FETCH \((.*)\)$", re.S)


class View:
    """One session's idea of its selected folder, checked against each response."""

    def __init__(self, name: str):
        self.name = name
        self.uids: list[int | None] = []  # by sequence number; None: not fetched yet
        self.modseq: dict[int, int] = {}
        self.flags: dict[int, set[str]] = {}
        self.keywords: set[str] = set()

    def fail(self, why: str, line: bytes) -> None:
        raise AssertionError(f"{self.name}: {why}: {line!r}")

    def take(self, line: bytes) -> None:
        if m := re.fullmatch(rb"\* FLAGS \((.*)\)", line):
            self.keywords = {f for f in m.group(1).decode().split() if not f.startswith("\\")}
        elif m := re.fullmatch(rb"\* (\d+) EXISTS", line):
            n = int(m.group(1))
            if n < len(self.uids):
                self.fail(f"EXISTS below the {len(self.uids)} messages it has", line)
            self.uids += [None] * (n - len(self.uids))
        elif m := re.fullmatch(rb"\* (\d+) EXPUNGE", line):
            n = int(m.group(1))
            if not 1 <= n <= len(self.uids):
                self.fail(f"EXPUNGE of a message it does not have ({len(self.uids)})", line)
            uid = self.uids.pop(n - 1)
            if uid is not None:
                self.modseq.pop(uid, None)
                self.flags.pop(uid, None)
        elif m := FETCH_RE.fullmatch(line):
            self.fetched(int(m.group(1)), m.group(2), line)

    def fetched(self, seq: int, items: bytes, line: bytes) -> None:
        if not 1 <= seq <= len(self.uids):
            self.fail(f"FETCH of a message it does not have ({len(self.uids)})", line)
        uid_m = re.search(rb"\bUID (\d+)", items)
        uid = self.uids[seq - 1]
        if uid_m:
            told = int(uid_m.group(1))
            if uid is not None and told != uid:
                self.fail(f"message {seq} was UID {uid}", line)
            uid = self.uids[seq - 1] = told
        if uid is None:
            return
        if m := re.search(rb"\bMODSEQ \((\d+)\)", items):
            modseq = int(m.group(1))
            if modseq < self.modseq.get(uid, 0):
                self.fail(f"MODSEQ went back from {self.modseq[uid]}", line)
            self.modseq[uid] = modseq
        if m := re.search(rb"\bFLAGS \(([^)]*)\)", items):
            flags = {f for f in m.group(1).decode().split() if f != "\\Recent"}
            unknown = {f for f in flags if not f.startswith("\\")} - self.keywords
            if unknown:
                self.fail(f"keywords {sorted(unknown)} not announced in FLAGS", line)
            self.flags[uid] = flags


class Player(threading.Thread):
    def __init__(self, server, index: int, deadline: float):
        super().__init__(daemon=True)
        self.rng = random.Random(SEED + index)
        self.folder = FOLDERS[index % len(FOLDERS)]
        self.client = RawImap(server)
        self.view = View(f"session {index} on {self.folder}")
        self.deadline = deadline
        self.error: BaseException | None = None
        self.commands = 0

    def run_command(self, *parts) -> bytes:
        untagged, tagged = self.client.cmd(*parts)
        for line in untagged:
            self.view.take(line)
        if re.match(rb"T\d+ BAD", tagged):
            raise AssertionError(f"{self.view.name}: {parts!r} answered {tagged!r}")
        self.commands += 1
        return tagged

    def start_session(self) -> None:
        assert re.match(rb"T\d+ OK", self.client.login(ALICE, ALICE_PW))
        self.run_command("ENABLE CONDSTORE")
        self.run_command(f"SELECT {self.folder}")

    def step(self) -> None:
        rng, count = self.rng, len(self.view.uids)
        other = next(f for f in FOLDERS if f != self.folder)
        choice = rng.random()
        seq = rng.randint(1, count) if count else None
        if choice < 0.2 or seq is None:
            target = rng.choice(FOLDERS)
            flags = " ".join(rng.sample(KEYWORDS + SYSTEM[:3], rng.randint(0, 2)))
            body = f"Subject: r{rng.random()}\r\n\r\nx\r\n".encode()
            self.run_command(f"APPEND {target} ({flags}) ", Literal(body))
        elif choice < 0.55:
            op = rng.choice(["+FLAGS", "-FLAGS", "FLAGS"])
            flags = " ".join(rng.sample(KEYWORDS + SYSTEM, rng.randint(1, 3)))
            self.run_command(f"STORE {seq} {op} ({flags})")
        elif choice < 0.65:
            self.run_command("EXPUNGE")
        elif choice < 0.75:
            self.run_command(f"COPY {seq} {other}")
        elif choice < 0.82:
            self.run_command(f"MOVE {seq} {rng.choice([other, self.folder])}")
        elif choice < 0.92:
            self.run_command("FETCH 1:* (UID FLAGS)")
        else:
            self.run_command("NOOP")

    def run(self) -> None:
        try:
            self.start_session()
            while time.monotonic() < self.deadline:
                self.step()
        except BaseException as e:  # reported by the test
            self.error = e


def fresh_state(server, folder: str) -> list[tuple[int, frozenset[str]]]:
    client = RawImap(server)
    try:
        assert re.match(rb"T\d+ OK", client.login(ALICE, ALICE_PW))
        client.ok(f"EXAMINE {folder}")
        state = []
        for line in client.ok("FETCH 1:* (UID FLAGS)"):
            m = FETCH_RE.fullmatch(line)
            assert m, line
            uid = int(re.search(rb"\bUID (\d+)", m.group(2)).group(1))
            flags = re.search(rb"\bFLAGS \(([^)]*)\)", m.group(2)).group(1).decode().split()
            state.append((uid, frozenset(f for f in flags if f != "\\Recent")))
        return state
    finally:
        client.close()


def test_random_sessions_keep_consistent_views(make_imap_server):
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    setup = RawImap(server)
    assert re.match(rb"T\d+ OK", setup.login(ALICE, ALICE_PW))
    setup.ok("CREATE Shared")
    for folder in FOLDERS:
        for n in range(5):
            setup.ok(f"APPEND {folder} ", Literal(f"Subject: seed {n}\r\n\r\nx\r\n".encode()))
    setup.close()

    deadline = time.monotonic() + SECONDS
    players = [Player(server, i, deadline) for i in range(SESSIONS)]
    for player in players:
        player.start()
    for player in players:
        player.join(SECONDS + 60)
        assert not player.is_alive(), f"{player.view.name} hangs"
    errors = [p.error for p in players if p.error]
    if errors:
        raise AssertionError(f"seed {SEED}") from errors[0]
    assert sum(p.commands for p in players) > 100, [p.commands for p in players]

    # Everyone catches up, then sees what a fresh session sees.
    for player in players:
        player.run_command("NOOP")
        player.run_command("FETCH 1:* (UID FLAGS)")
        seen = [(uid, frozenset(player.view.flags[uid])) for uid in player.view.uids]
        assert seen == fresh_state(server, player.folder), (SEED, player.view.name)
        player.client.close()
