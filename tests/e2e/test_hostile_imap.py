"""Hostile IMAP input (issue 9): the real server under attacks a stranger or one user
can mount, each answered with the exact refusal, within a memory bound a fixed server
meets with a wide margin, while a client logged in before the attack goes on working
(the attacked account's own session here, and a bystander.Bystander with IMAP, POP3 and
SMTP rounds during and after every attack; the nodes serve SMTP for it).

Sizes are measured (VmRSS of the server process), never timed."""

from __future__ import annotations

import re

from bystander import Bystander
from conftest import Literal, RawImap

ALICE = "alice@example.com"
ALICE_PW = "alice-Hostile-1"

PREAUTH_BAD = b"a BAD [TOOBIG] Literal too large before authentication"
PREAUTH_BYE = b"* BYE Refusing to read a literal that large before authentication"
TOO_MANY_FOLDERS = b"NO [LIMIT] Too many folders"
TOO_DEEP = b"NO [LIMIT] Folder hierarchy too deep"
MIB = 1024 * 1024


def message(i: int) -> bytes:
    return (
        f"From: sender{i}@example.com\r\nTo: {ALICE}\r\nSubject: message {i}\r\n"
        f"Message-ID: <h{i}@example.com>\r\n\r\nBody of message {i}.\r\n"
    ).encode()


def rss_bytes(server) -> int:
    return server.rss_kib() * 1024


def logged_in(server, user: str = ALICE, password: str = ALICE_PW) -> RawImap:
    r = RawImap(server, implicit=True)
    tagged = r.login(user, password)
    assert tagged.startswith(b"T001 OK [CAPABILITY "), tagged
    return r


def select_and_fetch(r: RawImap, count: int) -> None:
    """The well-behaved client's round: SELECT, then FETCH of every message."""
    untagged, tagged = r.cmd("SELECT INBOX")
    assert tagged.endswith(b" OK [READ-WRITE] SELECT completed"), (untagged, tagged)
    assert f"* {count} EXISTS".encode() in untagged, untagged
    untagged, tagged = r.cmd("FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert tagged.endswith(b" OK FETCH completed"), tagged
    assert len(untagged) == count, untagged
    for i, line in enumerate(untagged, 1):
        assert f"Subject: message {i}".encode() in line, line


def names(r: RawImap) -> list[bytes]:
    untagged, tagged = r.cmd('LIST "" "*"')
    assert tagged.endswith(b" OK LIST completed"), tagged
    return sorted(line.split(b' "/" ', 1)[1].strip(b'"') for line in untagged)


def test_preauth_literals_are_tiny_and_memory_stays_flat(make_smtp_server):
    server = make_smtp_server()
    server.add_user(ALICE, ALICE_PW)
    for i in range(1, 4):
        server.deliver(ALICE, message(i))
    victim = logged_in(server)
    select_and_fetch(victim, 3)
    bystander = Bystander(server)
    before = rss_bytes(server)

    attackers = []
    with bystander.running_during("pre-auth literal flood"):
        for _ in range(10):
            a = RawImap(server)
            a.send(b"a LOGIN {52428800}\r\n")
            # BAD instead of `+ Ready`: nothing of the literal is awaited or kept.
            assert a.line() == PREAUTH_BAD
            attackers.append(a)
        # They push 10 MiB each anyway (no line ends), 100 MiB in all, which a server
        # that kept them would hold: read and dropped as they come.
        junk = b"x" * MIB
        for _ in range(10):
            for a in attackers:
                a.send(junk)
        for a in attackers:
            # The over-long junk line is answered once; the session goes on.
            assert a.line() == b"* BAD [TOOBIG] Line exceeds the server's limit"
        select_and_fetch(victim, 3)
        grown = rss_bytes(server) - before
        assert grown < 50 * MIB, f"RSS grew by {grown / MIB:.1f} MiB"

        # LITERAL+ over the limit: BAD, BYE and the connection closed, nothing read.
        plus = RawImap(server)
        plus.send(b"a LOGIN {52428800+}\r\n")
        assert plus.line() == PREAUTH_BAD
        assert plus.line() == PREAUTH_BYE
        assert plus.at_eof()
        plus.close()
    bystander.check("after pre-auth literal flood")

    # A small literal before login is fine, and after login APPEND takes big ones.
    ok = RawImap(server, implicit=True)
    untagged, tagged = ok.cmd(
        "LOGIN ", Literal(ALICE.encode()), " ", Literal(ALICE_PW.encode())
    )
    assert tagged.startswith(b"T001 OK [CAPABILITY "), tagged
    big = b"Subject: big\r\n\r\n" + b"y" * (100 * 1024) + b"\r\n"
    untagged, tagged = ok.cmd("APPEND Sent ", Literal(big))
    assert b" OK [APPENDUID " in tagged, tagged

    select_and_fetch(victim, 3)
    for a in attackers + [ok, victim]:
        a.close()


def test_duplicate_fetch_items_collapse_and_counts_are_capped(make_smtp_server):
    server = make_smtp_server()
    server.add_user(ALICE, ALICE_PW)
    for i in range(1, 4):
        server.deliver(ALICE, message(i))
    r = logged_in(server)
    select_and_fetch(r, 3)
    bystander = Bystander(server)
    with bystander.running_during("amplifying FETCH and SEARCH"):
        items = " ".join(["ENVELOPE"] * 5000)
        before = rss_bytes(server)
        untagged, tagged = r.cmd(f"FETCH 1:* ({items})")
        assert tagged.endswith(b" OK FETCH completed"), tagged
        assert len(untagged) == 3, untagged
        for i, line in enumerate(untagged, 1):
            assert line.startswith(f"* {i} FETCH (ENVELOPE (".encode()), line
            assert line.count(b"ENVELOPE") == 1, line
            assert f'"message {i}"'.encode() in line, line
        # One envelope per message: a few hundred bytes each, not 5000 of them.
        assert sum(len(line) for line in untagged) < 3 * 1024, untagged
        assert rss_bytes(server) - before < 50 * MIB

        # Repeats keep the first-seen order; an identical section collapses, another
        # partial range does not.
        untagged, tagged = r.cmd(
            "FETCH 1 (UID FLAGS UID BODY.PEEK[]<0.4> BODY.PEEK[]<0.4> BODY.PEEK[]<0.5>)"
        )
        assert tagged.endswith(b" OK FETCH completed"), tagged
        assert untagged == [
            b"* 1 FETCH (UID 1 FLAGS (\\Recent) BODY[]<0> {4}\r\nFrom"
            b" BODY[]<0> {5}\r\nFrom:)"
        ], untagged

        # More than 256 distinct items are refused.
        sections = " ".join(f"BODY.PEEK[{n}]" for n in range(1, 258))
        untagged, tagged = r.cmd(f"FETCH 1 ({sections})")
        assert (untagged, tagged) == ([], b"T006 BAD [LIMIT] Too many FETCH items")

        # SEARCH with more than 1,000 keys (NOT TEXT q is two) is refused without
        # running.
        keys = " ".join(f"NOT TEXT q{n}" for n in range(3000))
        untagged, tagged = r.cmd(f"SEARCH {keys}")
        assert (untagged, tagged) == ([], b"T007 NO [LIMIT] Too many search keys")
        keys = " ".join(f"NOT TEXT q{n}" for n in range(500))
        untagged, tagged = r.cmd(f"SEARCH {keys}")
        assert (untagged, tagged) == ([b"* SEARCH 1 2 3"], b"T008 OK SEARCH completed")
    bystander.check("after amplifying FETCH and SEARCH")
    select_and_fetch(r, 3)
    r.close()


def test_folder_count_and_depth_limits(make_smtp_server):
    server = make_smtp_server(imap_extra="max_folders = 20\nmax_folder_depth = 4")
    server.add_user(ALICE, ALICE_PW)
    r = logged_in(server)
    # The limits are per account: the bystander's own six folders do not count.
    bystander = Bystander(server)
    with bystander.running_during("folder flood"):
        start = names(r)
        assert len(start) == 6, start

        # Too deep: refused before any parent is created.
        untagged, tagged = r.cmd('CREATE "p/q/r/s/t"')
        assert (untagged, tagged) == ([], b"T003 " + TOO_DEEP)
        assert names(r) == start
        assert re.fullmatch(rb"T005 OK \[MAILBOXID \(F\d+\)\] CREATE completed", r.cmd('CREATE "p/q/r/s"')[1])
        # A rename counts the levels of the children it moves: p/q/r/s would become
        # z/y/x/r/s.
        untagged, tagged = r.cmd('RENAME "p/q" "z/y/x"')
        assert (untagged, tagged) == ([], b"T006 " + TOO_DEEP)
        after_p = sorted(start + [b"p", b"p/q", b"p/q/r", b"p/q/r/s"])
        assert names(r) == after_p
        assert r.cmd('RENAME "p/q" "z/y"')[1] == b"T008 OK RENAME completed"

        # 6 + 4 + 1 (z) = 11 folders; nine more reach 20.
        for n in range(1, 10):
            assert r.cmd(f"CREATE f{n}")[1].endswith(b"] CREATE completed")
        full = names(r)
        assert len(full) == 20, full
        untagged, tagged = r.cmd("CREATE f10")
        assert (untagged, tagged) == ([], b"T019 " + TOO_MANY_FOLDERS)
        # A name whose missing parent would pass the limit creates nothing.
        untagged, tagged = r.cmd('CREATE "n/m"')
        assert (untagged, tagged) == ([], b"T020 " + TOO_MANY_FOLDERS)
        untagged, tagged = r.cmd('RENAME f9 "g/h"')
        assert (untagged, tagged) == ([], b"T021 " + TOO_MANY_FOLDERS)
        assert names(r) == full
        # An existing name is still ALREADYEXISTS; a rename in place is no new folder.
        assert (
            r.cmd("CREATE f1")[1] == b"T023 NO [ALREADYEXISTS] Mailbox already exists"
        )
        assert r.cmd("RENAME f9 f10")[1] == b"T024 OK RENAME completed"
        # Deleting one makes room again.
        assert r.cmd("DELETE f1")[1] == b"T025 OK DELETE completed"
        assert re.fullmatch(rb"T026 OK \[MAILBOXID \(F\d+\)\] CREATE completed", r.cmd("CREATE f11")[1])
        assert len(names(r)) == 20
    bystander.check("after folder flood")
    r.close()
