"""Several IMAP sessions on one mailbox, against the real binary over raw sockets: a
change acknowledged to one session is visible at the very next command of every other
session watching the folder it changed (RFC 9051 §7.5.1 lets the server announce it
then, and clients count on it: mbsync and the independent suite send NOOP or FETCH right
after another connection's OK)."""

from __future__ import annotations

import re

from conftest import Literal, RawImap

ALICE = "alice@example.com"
ALICE_PW = "alice-secret"
ROUNDS = 200


def session(server, folder: str | None = None) -> RawImap:
    client = RawImap(server)
    assert re.match(rb"T\d+ OK", client.login(ALICE, ALICE_PW))
    if folder:
        client.ok(f'SELECT "{folder}"')
    return client


def exists(untagged: list[bytes]) -> int | None:
    counts = [int(m.group(1)) for line in untagged if (m := re.fullmatch(rb"\* (\d+) EXISTS", line))]
    return counts[-1] if counts else None


def test_copies_moves_and_appends_are_seen_at_the_next_command(make_imap_server):
    """Session A copies (and moves, and appends) into `dst`; session B, which has `dst`
    selected, sends NOOP the moment A's OK arrives, then FETCHes the new message by its
    sequence number. Every round: B's NOOP reports the new EXISTS, and the FETCH works."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    a = session(server)
    a.ok('CREATE "dst"')
    a.ok("APPEND INBOX ", Literal(b"Subject: source\r\n\r\nsource\r\n"))
    a.ok("SELECT INBOX")
    b = session(server, "dst")
    count = 0
    for round in range(ROUNDS):
        kind = ("COPY", "MOVE", "APPEND")[round % 3]
        if kind == "COPY":
            a.ok('COPY 1 "dst"')
        elif kind == "MOVE":
            a.ok("APPEND INBOX ", Literal(b"Subject: moved\r\n\r\nmoved\r\n"))
            untagged = a.ok("NOOP")
            moved = exists(untagged) or 2
            untagged = a.ok(f'MOVE {moved} "dst"')
            assert any(line.startswith(b"* OK [COPYUID ") for line in untagged), untagged
        else:
            a.ok('APPEND "dst" ', Literal(b"Subject: appended\r\n\r\nappended\r\n"))
        count += 1
        untagged = b.ok("NOOP")
        assert exists(untagged) == count, (round, kind, untagged)
        untagged = b.ok(f"FETCH {count} (UID)")
        assert len(untagged) == 1 and untagged[0].startswith(f"* {count} FETCH (UID ".encode()), (
            round, kind, untagged)
    a.close()
    b.close()
