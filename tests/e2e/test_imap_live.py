"""Live updates: IDLE pushes, QRESYNC resynchronisation, POP3 and IMAP on one mailbox,
and IMAP autologout — the real binary, raw IMAP sockets, poplib."""

from __future__ import annotations

import re
import subprocess
import time

from conftest import RawImap, Literal

ALICE = "alice@example.com"
ALICE_PW = "alice-secret"
MSG = b"Subject: live\r\nFrom: bob@example.com\r\n\r\nhello\r\n"


def expect_lines(client: RawImap, expected: list[bytes]) -> None:
    """Reads exactly `expected` from the server, nothing else, without sending anything."""
    got = [client.line() for _ in expected]
    assert got == expected


def select_inbox(client: RawImap) -> list[bytes]:
    return client.ok("SELECT INBOX")


def test_idle_pushes_deliveries_flag_changes_and_expunges(make_imap_server):
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    a = RawImap(server)
    assert re.match(rb"T\d+ OK", a.login(ALICE, ALICE_PW))
    assert select_inbox(a)[0] == b"* 0 EXISTS"
    a.send(b"I1 IDLE\r\n")
    assert a.line() == b"+ idling"

    # A delivery from the command line: A sees it without sending anything.
    server.deliver(ALICE, MSG)
    expect_lines(a, [b"* 1 EXISTS", b"* 1 RECENT"])

    # A second session's APPEND, STORE and EXPUNGE.
    b = RawImap(server)
    assert re.match(rb"T\d+ OK", b.login(ALICE, ALICE_PW))
    untagged, tagged = b.cmd("APPEND INBOX ", Literal(MSG))
    assert re.match(rb"T\d+ OK \[APPENDUID \d+ 2\] APPEND completed", tagged), tagged
    expect_lines(a, [b"* 2 EXISTS", b"* 2 RECENT"])
    select_inbox(b)
    b.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    expect_lines(a, [b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"])
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    expect_lines(a, [b"* 2 FETCH (UID 2 FLAGS (\\Deleted \\Recent))"])
    assert b.ok("EXPUNGE") == [b"* 2 EXPUNGE"]
    expect_lines(a, [b"* 2 EXPUNGE"])

    a.send(b"DONE\r\n")
    assert a.line() == b"I1 OK IDLE terminated"
    # The stored state agrees with what was pushed.
    untagged = a.ok("FETCH 1:* (UID FLAGS)")
    assert untagged == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"]


def test_commands_pipelined_after_done_run(make_imap_server):
    """Apple Mail on iOS sends DONE and its next commands in one packet."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    server.deliver(ALICE, MSG)
    a = RawImap(server)
    a.login(ALICE, ALICE_PW)
    select_inbox(a)
    a.send(b"I1 IDLE\r\n")
    assert a.line() == b"+ idling"
    a.send(b"DONE\r\nP1 NOOP\r\nP2 UID FETCH 1 (FLAGS)\r\n")
    assert a.line() == b"I1 OK IDLE terminated"
    assert a.line() == b"P1 OK NOOP completed"
    assert a.line() == b"* 1 FETCH (UID 1 FLAGS (\\Recent))"
    assert a.line() == b"P2 OK UID FETCH completed"


def test_qresync_reconnect_gets_exactly_the_changes(make_imap_server):
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    for i in range(4):
        server.deliver(ALICE, MSG.replace(b"live", b"live %d" % i))

    # The client's first visit: it caches UIDVALIDITY and HIGHESTMODSEQ.
    first = RawImap(server)
    first.login(ALICE, ALICE_PW)
    assert first.ok("ENABLE QRESYNC") == [b"* ENABLED CONDSTORE QRESYNC"]
    untagged = select_inbox(first)
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", b"\n".join(untagged)).group(1))
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"\n".join(untagged)).group(1))
    first.ok("LOGOUT")
    first.close()

    # Meanwhile another client flags one message and expunges two.
    other = RawImap(server)
    other.login(ALICE, ALICE_PW)
    select_inbox(other)
    other.ok("UID STORE 2 +FLAGS.SILENT (\\Answered)")
    other.ok("UID STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    assert other.ok("EXPUNGE") == [b"* 3 EXPUNGE", b"* 1 EXPUNGE"]
    # The session's first CONDSTORE-enabling command: HIGHESTMODSEQ first (RFC 7162 §3.1).
    highest_line, fetched = other.ok("UID FETCH 2 (MODSEQ)")
    (changed_modseq,) = re.findall(rb"MODSEQ \((\d+)\)", fetched)
    # The folder's newest change is the EXPUNGE, after the flag change.
    reported = re.fullmatch(rb"\* OK \[HIGHESTMODSEQ (\d+)\] Highest", highest_line)
    assert reported and int(reported.group(1)) > int(changed_modseq), highest_line

    # The reconnect learns exactly that.
    again = RawImap(server)
    again.login(ALICE, ALICE_PW)
    again.ok("ENABLE QRESYNC")
    untagged = again.ok(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:4))")
    resync = [line for line in untagged if b"VANISHED" in line or b"FETCH" in line]
    assert resync == [
        b"* VANISHED (EARLIER) 1,3",
        b"* 1 FETCH (UID 2 FLAGS (\\Answered) MODSEQ (" + changed_modseq + b"))",
    ]
    assert b"* 2 EXISTS" in untagged
    # Asking again with the new HIGHESTMODSEQ reports nothing.
    highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"\n".join(untagged)).group(1))
    untagged = again.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest} VANISHED)")
    assert untagged == []


def test_pop3_quit_after_dele_reaches_imap_sessions(make_imap_server):
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    for i in range(3):
        server.deliver(ALICE, MSG.replace(b"live", b"pop %d" % i))
    imap = RawImap(server)
    imap.login(ALICE, ALICE_PW)
    assert select_inbox(imap)[0] == b"* 3 EXISTS"

    pop = server.raw()
    pop.login(ALICE, ALICE_PW)
    assert pop.cmd("DELE 1") == b"+OK Message 1 deleted"
    assert pop.cmd("DELE 3") == b"+OK Message 3 deleted"
    # While the maildrop is locked, IMAP keeps working and sees nothing deleted yet.
    assert imap.ok("NOOP") == []
    assert imap.ok("FETCH 1:* (UID)") == [
        b"* 1 FETCH (UID 1)",
        b"* 2 FETCH (UID 2)",
        b"* 3 FETCH (UID 3)",
    ]
    assert pop.cmd("QUIT") == b"+OK Logging out, 2 messages deleted"
    assert imap.ok("NOOP") == [b"* 3 EXPUNGE", b"* 1 EXPUNGE"]
    assert imap.ok("FETCH 1:* (UID)") == [b"* 1 FETCH (UID 2)"]


def test_unauthenticated_sessions_are_logged_out(make_imap_server):
    server = make_imap_server(login="plaintext", imap_extra="unauthenticated_timeout_secs = 1")
    client = RawImap(server)
    assert client.greeting.startswith(b"* OK [CAPABILITY ")
    # No command at all: the server says goodbye and closes.
    assert client.line() == b"* BYE Autologout; idle for too long"
    assert client.at_eof()


def test_authenticated_timeout_below_thirty_minutes_is_refused(make_imap_server):
    server = make_imap_server(imap_extra="idle_timeout_secs = 60", start=False)
    result = subprocess.run(
        [str(server.binary), "--config", str(server.config), "serve"],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert b"imap.idle_timeout_secs must be at least 1800" in result.stderr


def test_per_user_connection_limit_spans_protocols(make_imap_server):
    server = make_imap_server(login="plaintext", start=False)
    write_config = server.write_config

    def with_user_limit() -> None:
        # start() rewrites the configuration; add the limit every time.
        write_config()
        text = server.config.read_text()
        server.config.write_text(
            text.replace("[security]\n", "[security]\nmax_connections_per_user = 2\n", 1)
        )

    server.write_config = with_user_limit
    server.start()
    server.add_user(ALICE, ALICE_PW)
    first, second, third = RawImap(server), RawImap(server), RawImap(server)
    assert re.match(rb"T\d+ OK", first.login(ALICE, ALICE_PW))
    assert re.match(rb"T\d+ OK", second.login(ALICE, ALICE_PW))
    assert third.login(ALICE, ALICE_PW) == b"T001 NO [LIMIT] Too many connections for this user"
    # POP3 counts too.
    pop = server.raw()
    assert pop.cmd(f"USER {ALICE}") == b"+OK"
    assert pop.cmd(f"PASS {ALICE_PW}") == (
        b"-ERR [SYS/TEMP] Too many connections for this user, try again later"
    )
    # A session that ends gives its place back.
    first.ok("LOGOUT")
    first.close()
    deadline = time.monotonic() + 10
    while True:
        reply = third.login(ALICE, ALICE_PW)
        if reply.split(b" ")[1] == b"OK" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert re.match(rb"T\d+ OK", reply), reply
