"""Several IMAP sessions on one mailbox, against the real binary over raw sockets: a
change acknowledged to one session is visible at the very next command of every other
session watching the folder it changed (RFC 9051 §7.5.1 lets the server announce it
then, and clients count on it: mbsync and the independent suite send NOOP or FETCH right
after another connection's OK). Also MOVE into the selected folder itself (RFC 6851)
and mailbox names that are not modified UTF-7 (NO, never BAD)."""

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


def test_a_move_into_the_selected_folder_itself(make_imap_server):
    """RFC 6851: `MOVE 1 INBOX` with INBOX selected answers OK with COPYUID; the old
    message is expunged and the copy is there, with a new UID and the same bytes; a
    second session sees the expunge and the new message."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    message = b"Subject: twice\r\n\r\nsame bytes\r\n"
    a = session(server)
    a.ok("APPEND INBOX (\\Flagged) ", Literal(message))
    a.ok("APPEND INBOX ", Literal(b"Subject: other\r\n\r\nother\r\n"))
    untagged = a.ok("SELECT INBOX")
    validity = next(re.search(rb"UIDVALIDITY (\d+)", line).group(1)
                    for line in untagged if b"UIDVALIDITY" in line)
    b = session(server, "INBOX")
    untagged, tagged = a.cmd("MOVE 1 INBOX")
    assert tagged.endswith(b" OK MOVE completed"), tagged
    assert untagged[:2] == [
        b"* OK [COPYUID " + validity + b" 1 3] Moved",
        b"* 1 EXPUNGE",
    ], untagged
    # The copy is announced with the MOVE's response or at the next command.
    untagged += a.ok("NOOP")
    assert untagged[2:] == [b"* 2 EXISTS", b"* 2 RECENT"], untagged
    untagged = a.ok("UID FETCH 1:* (FLAGS BODY.PEEK[])")
    assert untagged == [
        b"* 1 FETCH (UID 2 FLAGS (\\Recent) BODY[] {25}\r\nSubject: other\r\n\r\nother\r\n)",
        b"* 2 FETCH (UID 3 FLAGS (\\Flagged \\Recent) BODY[] {30}\r\n"
        b"Subject: twice\r\n\r\nsame bytes\r\n)",
    ], untagged
    untagged = b.ok("NOOP")
    assert untagged[:2] == [b"* 1 EXPUNGE", b"* 2 EXISTS"], untagged
    a.close()
    b.close()


def test_names_that_are_not_modified_utf7_are_no_not_bad(make_imap_server):
    """A name with a bare `&` names no mailbox: SELECT, EXAMINE, STATUS, DELETE, APPEND
    answer NO [NONEXISTENT], CREATE NO [CANNOT], LIST and LSUB match nothing — never BAD,
    and the session goes on."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    a = session(server)
    why = b"Mailbox name is not valid modified UTF-7"
    for command, code in (
        ('SELECT "Tea & Co"', b"[NONEXISTENT]"),
        ('EXAMINE "x&y"', b"[NONEXISTENT]"),
        ('STATUS "x&y" (MESSAGES)', b"[NONEXISTENT]"),
        ('DELETE "x&y"', b"[NONEXISTENT]"),
        ('CREATE "x&y"', b"[CANNOT]"),
    ):
        untagged, tagged = a.cmd(command)
        assert (untagged, tagged.split(b" ", 1)[1]) == ([], b"NO " + code + b" " + why), command
    assert a.cmd('LIST "" "Tea & *"')[0] == []
    assert a.cmd('LSUB "" "x&y*"')[0] == []
    untagged, tagged = a.cmd('APPEND "x&y" ', Literal(b"Subject: x\r\n\r\nx\r\n"))
    assert tagged.split(b" ", 1)[1] == b"NO [NONEXISTENT] " + why, tagged
    a.ok("NOOP")
    a.close()
