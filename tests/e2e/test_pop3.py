"""POP3 end to end: the real server, Python's poplib (STLS and implicit TLS) and raw
sockets where the exact bytes matter."""

from __future__ import annotations

import os
import poplib
import re
import socket
import subprocess
import sys
import time

import pytest

from conftest import (
    messages,
    AUTH_FAILED,
    IN_USE,
    PLAINTEXT_REFUSED,
    POP3_DISABLED,
    SHUTTING_DOWN,
    crlf,
    plain_b64,
    stuff,
    tls_context,
    top_bytes,
    wire_lines,
)

ALICE = "alice@example.com"
ALICE_PW = "alice-Secret-1"
BOB = "bob@example.com"
BOB_PW = "bob-Secret-2"

UNKNOWN = b"-ERR Unknown command"
WRONG_STATE = b"-ERR Command not valid in this state"
LINE_TOO_LONG = b"-ERR Line too long"
TOO_MANY_BAD = b"-ERR Too many bad commands, closing connection"
TLS_ACTIVE = b"-ERR Command not permitted when TLS active"

CAPA_COMMON = [
    b"TOP",
    b"UIDL",
    b"RESP-CODES",
    b"AUTH-RESP-CODE",
    b"PIPELINING",
    b"EXPIRE NEVER",
    b"LOGIN-DELAY 0",
    b"IMPLEMENTATION Portico",
]

UIDL_RE = re.compile(rb"[0-9A-F]{16}")

MSG = b"Subject: x\r\n\r\ny\r\n"
ONE = f"+OK Logged in, 1 message ({len(MSG)} octets)".encode()

# A few small corpus messages with the tricky cases in them.
SMALL = [
    "001-plain-ascii.eml",
    "010-empty-body-no-subject.eml",
    "011-headers-only.eml",
    "014-malformed-unclosed-boundary.eml",
    "017-dot-stuffing.eml",
    "018-bare-lf-body.eml",
]


def by_name(corpus, names):
    table = dict(corpus)
    missing = [n for n in names if n not in table]
    assert not missing, f"corpus lacks {missing}"
    return [(n, table[n]) for n in names]


def fill(server, user, messages):
    """Delivers `messages` ([(name, bytes)]) and returns [(uid, stored bytes)]."""
    return [(server.deliver(user, data), crlf(data)) for _, data in messages]


def uidl_map(p) -> dict[int, bytes]:
    resp, lines, _ = p.uidl()
    assert resp == b"+OK"
    out = {}
    for line in lines:
        num, uid = line.split(b" ")
        assert UIDL_RE.fullmatch(uid), uid
        out[int(num)] = uid
    return out


def expect_error(fn, *args) -> bytes:
    with pytest.raises(poplib.error_proto) as info:
        fn(*args)
    return info.value.args[0]


def check_session(p, stored):
    """The maildrop holds exactly `stored` ([(uid, bytes)]) in this order."""
    total = sum(len(m) for _, m in stored)
    assert p.stat() == (len(stored), total)
    resp, lines, _ = p.list()
    assert resp == f"+OK {messages(len(stored))} ({total} octets)".encode()
    assert lines == [f"{i} {len(m)}".encode() for i, (_, m) in enumerate(stored, 1)]
    uids = uidl_map(p)
    assert sorted(uids) == list(range(1, len(stored) + 1))
    assert [int(uids[i][:8], 16) for i in sorted(uids)] == [u for u, _ in stored]
    for i, (_, m) in enumerate(stored, 1):
        resp, lines, _ = p.retr(i)
        assert resp == f"+OK {len(m)} octets".encode()
        assert lines == wire_lines(m)
    return uids


# --------------------------------------------------------------------------------------
# The corpus, byte for byte


def test_corpus_round_trip(server, corpus):
    server.add_user(ALICE, ALICE_PW)
    stored = []
    for i, (name, data) in enumerate(corpus, 1):
        uid = server.deliver(ALICE, data)
        assert uid == i, f"{name} got UID {uid}"
        stored.append((name, crlf(data)))
    n = len(stored)
    total = sum(len(m) for _, m in stored)
    assert server.users()[ALICE]["inbox"] == str(n)

    first_uidl = None
    for implicit in (False, True):
        p = server.pop3_ssl() if implicit else server.pop3_stls()
        assert p.user(ALICE) == b"+OK"
        assert p.pass_(ALICE_PW) == f"+OK Logged in, {messages(n)} ({total} octets)".encode()
        assert p.stat() == (n, total)

        resp, lines, _ = p.list()
        assert resp == f"+OK {messages(n)} ({total} octets)".encode()
        assert lines == [f"{i} {len(m)}".encode() for i, (_, m) in enumerate(stored, 1)]

        uids = uidl_map(p)
        assert sorted(uids) == list(range(1, n + 1))
        assert len(set(uids.values())) == n
        # UID (8 hex digits) then UIDVALIDITY (8 hex digits), the same for the mailbox.
        assert [int(uids[i][:8], 16) for i in range(1, n + 1)] == list(range(1, n + 1))
        assert len({u[8:] for u in uids.values()}) == 1
        if first_uidl is None:
            first_uidl = uids
        else:
            assert uids == first_uidl, "UIDL changed between sessions"

        for i, (name, m) in enumerate(stored, 1):
            assert p.list(i) == f"+OK {i} {len(m)}".encode()
            assert p.uidl(i) == f"+OK {i} ".encode() + uids[i]
            resp, lines, octets = p.retr(i)
            assert resp == f"+OK {len(m)} octets".encode(), name
            got = b"\r\n".join(lines) + b"\r\n"
            # The server ends a message that does not end with CRLF with one before the
            # terminating dot (RFC 1939 §3); LIST and "+OK n octets" give the stored size.
            want = m if m.endswith(b"\r\n") else m + b"\r\n"
            assert got == want, f"RETR {i} ({name}) differs from the delivered message"
        assert p.quit() == b"+OK Logging out"

    # The exact wire form: byte-stuffing and the terminator, for every message.
    r = server.raw(implicit=True)
    assert r.login(ALICE, ALICE_PW).startswith(b"+OK Logged in")
    for i, (name, m) in enumerate(stored, 1):
        assert r.cmd(f"RETR {i}") == f"+OK {len(m)} octets".encode()
        assert r.multiline_raw() == stuff(m), f"wire form of RETR {i} ({name})"
    assert r.cmd("QUIT") == b"+OK Logging out"
    r.close()
    assert server.users()[ALICE]["inbox"] == str(n)


def test_dot_stuffing_and_bare_lf_on_the_wire(server, corpus):
    server.add_user(ALICE, ALICE_PW)
    (_, dots), (_, bare) = by_name(corpus, ["017-dot-stuffing.eml", "018-bare-lf-body.eml"])
    assert b"\r\n.\r\n" in dots and b"\n" in bare.replace(b"\r\n", b"")
    server.deliver(ALICE, dots)
    server.deliver(ALICE, bare)
    r = server.raw(implicit=True)
    assert r.login(ALICE, ALICE_PW) == (
        f"+OK Logged in, 2 messages ({len(dots) + len(crlf(bare))} octets)".encode()
    )
    assert r.cmd("RETR 1") == f"+OK {len(dots)} octets".encode()
    body = r.multiline_raw()
    assert b"\r\n..leading dot\r\n...two dots\r\n..\r\nFrom the start" in body
    assert body == stuff(dots)
    assert r.cmd("RETR 2") == f"+OK {len(crlf(bare))} octets".encode()
    body = r.multiline_raw()
    assert b"\n" not in body.replace(b"\r\n", b"")
    assert body == crlf(bare) + b".\r\n"
    assert r.cmd("TOP 1 3") == b"+OK"
    assert r.multiline_raw() == stuff(top_bytes(dots, 3))
    assert r.cmd("QUIT") == b"+OK Logging out"


@pytest.mark.parametrize("implicit", [False, True], ids=["stls", "pop3s"])
def test_top(server, corpus, implicit):
    server.add_user(ALICE, ALICE_PW)
    messages = by_name(
        corpus, SMALL + ["008-long-folded-headers.eml", "005-multipart-mixed-attachments.eml"]
    )
    stored = fill(server, ALICE, messages)
    p = server.login(ALICE, ALICE_PW, implicit=implicit)
    for i, (_, m) in enumerate(stored, 1):
        for n in (0, 1, 3, 10_000):
            resp, lines, _ = p.top(i, n)
            assert resp == b"+OK"
            assert lines == wire_lines(top_bytes(m, n)), f"TOP {i} {n}"
    # Spot checks of the helper's idea of TOP against hand-written expectations.
    dots = stored[SMALL.index("017-dot-stuffing.eml")][1]
    resp, lines, _ = p.top(SMALL.index("017-dot-stuffing.eml") + 1, 2)
    assert lines[-3:] == [b"", b".leading dot", b"..two dots"]
    assert lines[:-3] == dots.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    headers_only = stored[SMALL.index("011-headers-only.eml")][1]
    resp, lines, _ = p.top(SMALL.index("011-headers-only.eml") + 1, 0)
    assert lines == headers_only[:-2].split(b"\r\n")
    # TOP does not mark anything as read or deleted.
    assert p.stat() == (len(stored), sum(len(m) for _, m in stored))
    assert p.quit() == b"+OK Logging out"


# --------------------------------------------------------------------------------------
# Deleting


def test_empty_maildrop_and_deleting_everything(server):
    server.add_user(ALICE, ALICE_PW)
    r = server.raw(implicit=True)
    assert r.login(ALICE, ALICE_PW) == b"+OK Logged in, 0 messages (0 octets)"
    assert r.cmd("STAT") == b"+OK 0 0"
    assert r.cmd("LIST") == b"+OK 0 messages (0 octets)"
    assert r.multiline_raw() == b".\r\n"
    assert r.cmd("UIDL") == b"+OK"
    assert r.multiline_raw() == b".\r\n"
    assert r.cmd("RETR 1") == b"-ERR No such message"
    assert r.cmd("QUIT") == b"+OK Logging out"

    for i in range(3):
        server.deliver(ALICE, MSG)
    p = server.login(ALICE, ALICE_PW)
    for i in (1, 2, 3):
        assert p.dele(i) == f"+OK Message {i} deleted".encode()
    assert p.stat() == (0, 0)
    assert p.list()[1] == []
    assert p.quit() == b"+OK Logging out, 3 messages deleted"
    assert server.users()[ALICE]["inbox"] == "0"
    p = server.login(ALICE, ALICE_PW)
    assert p.stat() == (0, 0)
    p.quit()


def test_dele_quit_removes(server, corpus):
    server.add_user(ALICE, ALICE_PW)
    stored = fill(server, ALICE, by_name(corpus, SMALL[:5]))
    p = server.login(ALICE, ALICE_PW)
    before = check_session(p, stored)
    assert p.dele(2) == b"+OK Message 2 deleted"
    assert p.dele(4) == b"+OK Message 4 deleted"
    assert expect_error(p.dele, 2) == b"-ERR Message 2 already deleted"
    assert expect_error(p.retr, 4) == b"-ERR Message 4 already deleted"
    assert expect_error(p.list, 2) == b"-ERR Message 2 already deleted"
    left = [stored[0], stored[2], stored[4]]
    assert p.stat() == (3, sum(len(m) for _, m in left))
    resp, lines, _ = p.list()
    assert lines == [f"{i} {len(stored[i - 1][1])}".encode() for i in (1, 3, 5)]
    _, lines, _ = p.uidl()
    assert lines == [f"{i} ".encode() + before[i] for i in (1, 3, 5)]
    assert p.quit() == b"+OK Logging out, 2 messages deleted"

    assert server.users()[ALICE]["inbox"] == "3"
    p = server.login(ALICE, ALICE_PW)
    after = check_session(p, left)
    assert list(after.values()) == [before[1], before[3], before[5]]
    assert p.quit() == b"+OK Logging out"


def test_dele_then_dropped_connection_removes_nothing(server, corpus):
    server.add_user(ALICE, ALICE_PW)
    stored = fill(server, ALICE, by_name(corpus, SMALL[:4]))
    for implicit in (False, True):
        p = server.login(ALICE, ALICE_PW, implicit=implicit)
        before = uidl_map(p)
        assert p.dele(1) == b"+OK Message 1 deleted"
        assert p.dele(3) == b"+OK Message 3 deleted"
        assert p.stat()[0] == 2
        p.close()  # no QUIT: the UPDATE state is never entered

        p = server.login(ALICE, ALICE_PW)
        assert check_session(p, stored) == before
        assert p.quit() == b"+OK Logging out"
    assert server.users()[ALICE]["inbox"] == "4"


def test_rset_unmarks(server, corpus):
    server.add_user(ALICE, ALICE_PW)
    stored = fill(server, ALICE, by_name(corpus, SMALL[:4]))
    p = server.login(ALICE, ALICE_PW)
    before = uidl_map(p)
    assert p.dele(1) == b"+OK Message 1 deleted"
    assert p.dele(3) == b"+OK Message 3 deleted"
    assert p.stat() == (2, len(stored[1][1]) + len(stored[3][1]))
    assert p.rset() == b"+OK"
    check_session(p, stored)
    assert p.dele(2) == b"+OK Message 2 deleted"
    assert p.rset() == b"+OK"
    assert p.quit() == b"+OK Logging out"
    p = server.login(ALICE, ALICE_PW)
    assert check_session(p, stored) == before
    p.quit()


def test_delivery_during_a_session_waits_for_the_next_one(server):
    """RFC 1939: message numbers and sizes are fixed for the session; a message that
    arrives meanwhile shows up in the next session, and survives this one's QUIT."""
    server.add_user(ALICE, ALICE_PW)
    first = [f"Subject: {i}\r\n\r\nold {i}\r\n".encode() for i in range(3)]
    for m in first:
        server.deliver(ALICE, m)
    p = server.login(ALICE, ALICE_PW)
    before = uidl_map(p)
    late = b"Subject: late\r\n\r\narrived during the session\r\n"
    assert server.deliver(ALICE, late) == 4
    assert server.users()[ALICE]["inbox"] == "4"
    assert p.stat() == (3, sum(map(len, first)))
    assert uidl_map(p) == before
    assert expect_error(p.retr, 4) == b"-ERR No such message"
    assert p.dele(3) == b"+OK Message 3 deleted"
    assert p.quit() == b"+OK Logging out, 1 message deleted"

    assert server.users()[ALICE]["inbox"] == "3"
    p = server.login(ALICE, ALICE_PW)
    after = check_session(p, [(1, first[0]), (2, first[1]), (4, late)])
    assert after[1] == before[1] and after[2] == before[2]
    p.quit()


def test_client_vanishing_during_a_large_retr(server, corpus):
    server.add_user(ALICE, ALICE_PW)
    (_, big), = by_name(corpus, ["013-large-attachment.eml"])
    assert len(big) > 1_000_000
    server.deliver(ALICE, big)
    server.deliver(ALICE, MSG)
    for implicit in (False, True):
        r = server.raw(implicit=implicit)
        if not implicit:
            r.starttls()
        resp = r.login(ALICE, ALICE_PW)
        # Whether the previous round's QUIT ran depends on how much of the RETRs the
        # kernel buffered before the client vanished.
        assert resp.startswith(b"+OK Logged in, "), resp
        if not resp.startswith(b"+OK Logged in, 1 message"):
            assert resp.startswith(b"+OK Logged in, 2 messages")
            assert r.cmd("DELE 2") == b"+OK Message 2 deleted"
        r.send(b"RETR 1\r\nRETR 1\r\nQUIT\r\n")
        assert r.line() == f"+OK {len(crlf(big))} octets".encode()
        r.close()  # mid-message, before QUIT's answer was read
    # The server lives on, the lock is back, and the QUIT after the vanished reads
    # either ran completely or not at all: no half state.
    p = server.login(ALICE, ALICE_PW)
    count = p.stat()[0]
    assert count in (1, 2)
    resp, lines, _ = p.retr(1)
    assert resp == f"+OK {len(crlf(big))} octets".encode()
    assert b"\r\n".join(lines) + b"\r\n" == crlf(big)
    p.quit()


def test_slow_reader_gets_everything_in_order(server, corpus):
    """Pipelined RETRs of a large message while the client reads nothing for a while:
    the server must hold back (not drop, not reorder) what the client has not read."""
    server.add_user(ALICE, ALICE_PW)
    (_, big), = by_name(corpus, ["013-large-attachment.eml"])
    stored = crlf(big)
    server.deliver(ALICE, big)
    server.deliver(ALICE, MSG)
    r = server.raw(implicit=True)
    assert r.login(ALICE, ALICE_PW).startswith(b"+OK Logged in, 2 messages")
    r.send(b"RETR 1\r\nRETR 2\r\nRETR 1\r\nUIDL 2\r\nRETR 1\r\nNOOP\r\n")
    time.sleep(0.5)
    for n in (1, 2, 1):
        m = stored if n == 1 else MSG
        assert r.line() == f"+OK {len(m)} octets".encode()
        assert r.multiline_raw() == stuff(m)
    assert re.fullmatch(rb"\+OK 2 00000002[0-9A-F]{8}", r.line())
    assert r.line() == f"+OK {len(stored)} octets".encode()
    assert r.multiline_raw() == stuff(stored)
    assert r.line() == b"+OK"
    assert r.cmd("QUIT") == b"+OK Logging out"


def test_concurrent_sessions_of_many_users(server):
    import threading

    users = [f"user{i}@example.com" for i in range(12)]
    for u in users:
        server.add_user(u, f"pw-{u}")
        for j in range(4):
            server.deliver(u, f"To: {u}\r\nSubject: {j}\r\n\r\nbody {u} {j}\r\n".encode())
    errors: list[BaseException] = []

    def client(u: str) -> None:
        try:
            p = server.login(u, f"pw-{u}", implicit=u.endswith(("1@example.com",)))
            assert p.stat()[0] == 4
            for j in range(1, 5):
                lines = p.retr(j)[1]
                assert lines == [f"To: {u}".encode(), f"Subject: {j - 1}".encode(), b"",
                                 f"body {u} {j - 1}".encode()]
            assert p.dele(1) == b"+OK Message 1 deleted"
            assert p.dele(3) == b"+OK Message 3 deleted"
            assert p.quit() == b"+OK Logging out, 2 messages deleted"
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    listing = server.users()
    for u in users:
        assert listing[u]["inbox"] == "2"
        p = server.login(u, f"pw-{u}")
        assert [p.retr(i)[1][-1] for i in (1, 2)] == [f"body {u} 1".encode(),
                                                     f"body {u} 3".encode()]
        p.quit()


# --------------------------------------------------------------------------------------
# Locking


def test_second_session_gets_in_use(server):
    server.add_user(ALICE, ALICE_PW)
    server.deliver(ALICE, MSG)
    p1 = server.login(ALICE, ALICE_PW)
    assert p1.dele(1) == b"+OK Message 1 deleted"

    for implicit in (False, True):
        p2 = server.pop3_ssl() if implicit else server.pop3_stls()
        assert p2.user(ALICE) == b"+OK"
        assert expect_error(p2.pass_, ALICE_PW) == IN_USE
        # Back in AUTHORIZATION: no maildrop commands.
        assert expect_error(p2.stat) == WRONG_STATE
        assert p2.quit() == b"+OK Bye"

    r = server.raw(implicit=True)
    assert r.cmd(f"AUTH PLAIN {plain_b64(ALICE, ALICE_PW)}") == IN_USE
    r.close()

    # The first session is untouched by the attempts.
    assert p1.stat() == (0, 0)
    assert p1.rset() == b"+OK"
    assert p1.stat()[0] == 1
    assert p1.quit() == b"+OK Logging out"

    # A new session gets in once the first one has quit (strictly "at once" is checked
    # by test_quit_reply_means_the_maildrop_is_free).
    p3 = server.login(ALICE, ALICE_PW)
    assert p3.stat() == (1, len(MSG))
    # Another user is not locked out by Alice's session.
    server.add_user(BOB, BOB_PW)
    p4 = server.login(BOB, BOB_PW)
    assert p4.stat() == (0, 0)
    p4.quit()
    p3.quit()


def test_quit_reply_means_the_maildrop_is_free(make_server):
    """Once a session got `+OK Logging out`, it is over (RFC 1939 §6): a client that
    reconnects at once, as pollers and "check mail" buttons do, must not be told
    [IN-USE]. This runs the tightest legitimate sequence (the next connection is open
    and has sent USER before QUIT; PASS goes out the moment the QUIT reply is read) many
    times, with CPU hogs beside it so that a window between the reply and the lock
    release, if any, shows up."""
    server = make_server(login="plaintext")  # no TLS: many iterations, cheaply
    server.add_user(ALICE, ALICE_PW)
    server.deliver(ALICE, MSG)
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    in_use = 0
    rounds = 0
    try:
        current = server.raw()
        assert current.login(ALICE, ALICE_PW) == ONE
        deadline = time.monotonic() + 5.0
        while rounds < 300 and time.monotonic() < deadline:
            rounds += 1
            following = server.raw()
            assert following.cmd(f"USER {ALICE}") == b"+OK"
            assert current.cmd("QUIT") == b"+OK Logging out"
            resp = following.cmd(f"PASS {ALICE_PW}")
            current.close()
            if resp == IN_USE:
                in_use += 1
                resp = following.login(ALICE, ALICE_PW)  # retries until released
            assert resp == ONE
            current = following
        assert current.cmd("QUIT") == b"+OK Logging out"
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()
    assert in_use == 0, (
        f"{in_use} of {rounds} logins sent right after the previous session's "
        f"'+OK Logging out' were answered {IN_USE!r}"
    )


def test_account_changes_apply_to_a_cached_login(server):
    """A successful password check is cached (auth_cache_secs); turning POP3 off or
    deleting the account must still take effect at once."""
    server.add_user(ALICE, ALICE_PW)
    server.add_user(BOB, BOB_PW)
    server.deliver(ALICE, MSG)
    server.login(ALICE, ALICE_PW).quit()
    server.login(BOB, BOB_PW).quit()

    server.cli_ok("user", "set", ALICE, "--pop3", "off")
    p = server.pop3_stls()
    assert p.user(ALICE) == b"+OK"
    assert expect_error(p.pass_, ALICE_PW) == POP3_DISABLED
    p.quit()
    server.cli_ok("user", "set", ALICE, "--pop3", "on")
    p = server.login(ALICE, ALICE_PW)
    assert p.stat() == (1, len(MSG))
    p.quit()

    assert server.cli_ok("user", "del", BOB) == f"deleted {BOB}\n"
    for implicit in (False, True):
        p = server.pop3_ssl() if implicit else server.pop3_stls()
        assert p.user(BOB) == b"+OK"
        assert expect_error(p.pass_, BOB_PW) == AUTH_FAILED
        p.quit()


# --------------------------------------------------------------------------------------
# Login policy


def test_plaintext_login_refused_without_tls(server):
    server.add_user(ALICE, ALICE_PW)
    server.deliver(ALICE, MSG)
    p = server.pop3()
    assert p.getwelcome() == b"+OK Portico POP3 server ready"
    assert expect_error(p.user, ALICE) == PLAINTEXT_REFUSED
    assert expect_error(p.pass_, ALICE_PW) == PLAINTEXT_REFUSED
    p.quit()

    r = server.raw()
    assert r.greeting == b"+OK Portico POP3 server ready"
    assert r.cmd(f"AUTH PLAIN {plain_b64(ALICE, ALICE_PW)}") == PLAINTEXT_REFUSED
    assert r.cmd("AUTH PLAIN") == PLAINTEXT_REFUSED
    assert r.cmd(f"USER {ALICE}") == PLAINTEXT_REFUSED
    assert r.cmd(f"PASS {ALICE_PW}") == PLAINTEXT_REFUSED
    assert r.cmd("STAT") == WRONG_STATE
    # The same connection can still upgrade and sign in.
    r.starttls()
    assert r.login(ALICE, ALICE_PW) == ONE
    assert r.cmd("STAT") == f"+OK 1 {len(MSG)}".encode()
    assert r.cmd("QUIT") == b"+OK Logging out"


def test_plaintext_login_allowed_when_configured(make_server):
    server = make_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    server.deliver(ALICE, MSG)
    p = server.pop3()
    caps = p.capa()
    assert "USER" in caps and caps["SASL"] == ["PLAIN"] and "STLS" in caps
    assert p.user(ALICE) == b"+OK"
    assert p.pass_(ALICE_PW) == ONE
    assert p.retr(1)[1] == [b"Subject: x", b"", b"y"]
    assert p.quit() == b"+OK Logging out"

    r = server.raw()
    assert r.auth_plain(ALICE, ALICE_PW) == ONE
    assert r.cmd("QUIT") == b"+OK Logging out"
    # Wrong passwords still fail, and STLS is still offered and works.
    r = server.raw()
    assert r.login(ALICE, "wrong") == AUTH_FAILED
    r.starttls()
    assert r.login(ALICE, ALICE_PW).startswith(b"+OK Logged in")
    r.close()


def capa_lines(r) -> list[bytes]:
    assert r.cmd("CAPA") == b"+OK Capability list follows"
    body = r.multiline_raw()
    assert body.endswith(b"\r\n.\r\n")
    return body[: -len(b"\r\n.\r\n")].split(b"\r\n")


def test_capa_before_and_after_tls(server):
    server.add_user(ALICE, ALICE_PW)
    r = server.raw()
    assert capa_lines(r) == CAPA_COMMON + [b"STLS"]
    r.starttls()
    assert capa_lines(r) == CAPA_COMMON + [b"USER", b"SASL PLAIN"]
    assert r.cmd("STLS") == TLS_ACTIVE
    assert r.login(ALICE, ALICE_PW).startswith(b"+OK Logged in")
    assert capa_lines(r) == CAPA_COMMON
    r.close()

    r = server.raw(implicit=True)
    assert r.greeting == b"+OK Portico POP3 server ready"
    assert capa_lines(r) == CAPA_COMMON + [b"USER", b"SASL PLAIN"]
    assert r.cmd("STLS") == TLS_ACTIVE
    r.close()

    # poplib's view of the same.
    p = server.pop3()
    before = p.capa()
    assert "STLS" in before and "USER" not in before and "SASL" not in before
    p.stls(tls_context())
    after = p.capa()
    assert "STLS" not in after and "USER" in after and after["SASL"] == ["PLAIN"]
    p.quit()


def test_auth_plain_after_tls(server):
    server.add_user(ALICE, ALICE_PW)
    server.deliver(ALICE, MSG)
    ok = ONE

    # Initial response, after STLS.
    r = server.raw()
    r.starttls()
    assert r.auth_plain(ALICE, ALICE_PW) == ok
    assert r.cmd("UIDL 1").startswith(b"+OK 1 ")
    assert r.cmd("QUIT") == b"+OK Logging out"

    # Continuation, on the implicit-TLS port; authzid equal to the user is fine.
    r = server.raw(implicit=True)
    assert r.cmd("AUTH PLAIN") == b"+ "
    resp = r.cmd(plain_b64(ALICE, ALICE_PW, authzid=ALICE))
    while resp == IN_USE:  # see Server.login
        time.sleep(0.02)
        assert r.cmd("AUTH PLAIN") == b"+ "
        resp = r.cmd(plain_b64(ALICE, ALICE_PW, authzid=ALICE))
    assert resp == ok
    assert r.cmd("QUIT") == b"+OK Logging out"

    r = server.raw(implicit=True)
    assert r.cmd(f"AUTH PLAIN {plain_b64(ALICE, 'wrong')}") == AUTH_FAILED
    assert r.cmd(f"AUTH PLAIN {plain_b64(ALICE, ALICE_PW, authzid=BOB)}") == (
        b"-ERR [AUTH] Authorization identity must match"
    )
    assert r.cmd("AUTH PLAIN !!!") == b"-ERR [AUTH] Invalid SASL PLAIN response"
    assert r.cmd("AUTH PLAIN") == b"+ "
    assert r.cmd("*") == b"-ERR Authentication cancelled"
    assert r.cmd("AUTH CRAM-MD5") == b"-ERR Unsupported authentication mechanism"
    assert r.auth_plain(ALICE, ALICE_PW) == ok
    r.close()


def test_bad_credentials(server):
    server.add_user(ALICE, ALICE_PW)
    for user, password in [
        (ALICE, "wrong"),
        (ALICE, ALICE_PW.upper()),
        ("nobody@example.com", ALICE_PW),
    ]:
        p = server.pop3_stls()
        assert p.user(user) == b"+OK"
        assert expect_error(p.pass_, password) == AUTH_FAILED
        assert p.quit() == b"+OK Bye"
    server.login(ALICE, ALICE_PW).quit()


@pytest.mark.parametrize("local", ["administrator", "anonymous", "guest"])
def test_denied_login_names(server, local):
    address = f"{local}@example.com"
    password = "denied-Pass-9"
    server.add_user(address, password)
    server.deliver(address, MSG)
    assert server.users()[address]["pop3"] == "on"
    for user in (address, address.upper(), address.capitalize()):
        p = server.pop3_stls()
        assert p.user(user) == b"+OK"
        assert expect_error(p.pass_, password) == AUTH_FAILED
        p.quit()
    r = server.raw(implicit=True)
    assert r.cmd(f"AUTH PLAIN {plain_b64(address, password)}") == AUTH_FAILED
    assert r.cmd("AUTH PLAIN") == b"+ "
    assert r.cmd(plain_b64(address, password)) == AUTH_FAILED
    r.close()
    # An ordinary account on the same server still signs in.
    server.add_user(ALICE, ALICE_PW)
    server.login(ALICE, ALICE_PW).quit()


def test_pop3_disabled_per_account(server):
    server.add_user(ALICE, ALICE_PW)
    server.add_user(BOB, BOB_PW)
    server.deliver(ALICE, MSG)
    assert server.cli_ok("user", "set", ALICE, "--pop3", "off") == f"updated {ALICE}\n"
    assert server.users()[ALICE]["pop3"] == "off"
    assert server.users()[BOB]["pop3"] == "on"

    p = server.pop3_stls()
    assert p.user(ALICE) == b"+OK"
    assert expect_error(p.pass_, ALICE_PW) == POP3_DISABLED
    # A wrong password says nothing about the account's settings.
    assert p.user(ALICE) == b"+OK"
    assert expect_error(p.pass_, "wrong") == AUTH_FAILED
    p.quit()
    r = server.raw(implicit=True)
    assert r.cmd(f"AUTH PLAIN {plain_b64(ALICE, ALICE_PW)}") == POP3_DISABLED
    r.close()
    server.login(BOB, BOB_PW).quit()

    assert server.cli_ok("user", "set", ALICE, "--pop3", "on") == f"updated {ALICE}\n"
    p = server.login(ALICE, ALICE_PW)
    assert p.stat() == (1, len(MSG))
    p.quit()


def test_hide_mode_keeps_messages_in_the_mailbox(server, corpus):
    server.add_user(ALICE, ALICE_PW)
    stored = fill(server, ALICE, by_name(corpus, SMALL[:3]))
    out = server.cli_ok("user", "set", ALICE, "--pop3-delete-mode", "hide")
    assert out == f"updated {ALICE}\n"
    assert server.users()[ALICE] == {
        "pop3": "on",
        "imap": "on",
        "pop3-delete-mode": "hide",
        "inbox": "3",
        "home": "n",
        "quota": "none",
        "used": str(sum(len(data) for _, data in stored)),
    }
    p = server.login(ALICE, ALICE_PW)
    before = uidl_map(p)
    assert p.dele(2) == b"+OK Message 2 deleted"
    assert p.quit() == b"+OK Logging out, 1 message deleted"

    assert server.users()[ALICE]["inbox"] == "3"
    p = server.login(ALICE, ALICE_PW)
    after = check_session(p, [stored[0], stored[2]])
    assert list(after.values()) == [before[1], before[3]]
    p.quit()

    # Still hidden after a restart, still in the mailbox.
    server.restart()
    assert server.users()[ALICE]["inbox"] == "3"
    p = server.login(ALICE, ALICE_PW)
    assert list(check_session(p, [stored[0], stored[2]]).values()) == [before[1], before[3]]
    p.quit()

    # Back to expunge: deletions remove for real.
    server.cli_ok("user", "set", ALICE, "--pop3-delete-mode", "expunge")
    p = server.login(ALICE, ALICE_PW)
    assert p.dele(1) == b"+OK Message 1 deleted"
    assert p.quit() == b"+OK Logging out, 1 message deleted"
    assert server.users()[ALICE]["inbox"] == "2"
    p = server.login(ALICE, ALICE_PW)
    assert list(check_session(p, [stored[2]]).values()) == [before[3]]
    p.quit()


# --------------------------------------------------------------------------------------
# UIDL stability


def test_uidl_stable_across_sessions_and_restarts_and_never_reused(server, corpus):
    server.add_user(ALICE, ALICE_PW)
    stored = fill(server, ALICE, by_name(corpus, SMALL[:4]))
    assert [u for u, _ in stored] == [1, 2, 3, 4]
    p = server.login(ALICE, ALICE_PW)
    first = check_session(p, stored)
    p.quit()
    p = server.login(ALICE, ALICE_PW, implicit=True)
    assert uidl_map(p) == first
    p.quit()

    server.restart()
    p = server.login(ALICE, ALICE_PW)
    assert check_session(p, stored) == first
    # Delete the newest message (its UID is the one a careless store would hand out
    # again) and another one.
    assert p.dele(4) == b"+OK Message 4 deleted"
    assert p.dele(2) == b"+OK Message 2 deleted"
    assert p.quit() == b"+OK Logging out, 2 messages deleted"
    seen = set(first.values())

    uid = server.deliver(ALICE, b"Subject: after delete\r\n\r\nnew\r\n")
    assert uid == 5
    p = server.login(ALICE, ALICE_PW)
    now = uidl_map(p)
    assert now[1] == first[1] and now[2] == first[3]
    assert now[3] not in seen
    assert now[3][8:] == first[1][8:]  # same UIDVALIDITY
    seen.add(now[3])
    p.quit()

    # Across a restart too, with everything deleted.
    server.restart()
    p = server.login(ALICE, ALICE_PW)
    assert uidl_map(p) == now
    for i in (1, 2, 3):
        p.dele(i)
    assert p.quit() == b"+OK Logging out, 3 messages deleted"
    server.restart()
    uid = server.deliver(ALICE, b"Subject: after restart\r\n\r\nnew\r\n")
    assert uid == 6
    p = server.login(ALICE, ALICE_PW)
    last = uidl_map(p)
    assert list(last) == [1]
    assert last[1] not in seen
    assert int(last[1][:8], 16) == 6
    p.quit()


# --------------------------------------------------------------------------------------
# Bad input, byte by byte


def test_unknown_and_non_utf8_commands(server):
    server.add_user(ALICE, ALICE_PW)
    server.deliver(ALICE, MSG)
    r = server.raw()
    for bad in [b"FROB", b"", b"APOP alice 0123", b" STAT", b"\xff\xfe\x80",
                b"NO\xc3\xa9OP", b"STAT\x00", b"\x00\x01\x02"]:
        assert r.cmd(bad) == UNKNOWN, bad
        assert capa_lines(r)[-1] == b"STLS"
    r.starttls()
    assert r.cmd(b"USER \xff\xfe@example.com") == b"-ERR Invalid user name"
    assert r.cmd(b"PASS \xc3\x28") == b"-ERR USER first"
    assert r.cmd(f"USER {ALICE}") == b"+OK"
    assert r.cmd(b"PASS \xc3\x28") == AUTH_FAILED
    assert r.login(ALICE, ALICE_PW).startswith(b"+OK Logged in")
    for bad in [b"\xff\xfe\x80", b"RETR \xff", b"LIST 1\x00", b"TOP \xc3\xa9 1"]:
        assert r.cmd(bad).startswith(b"-ERR"), bad
        assert r.cmd("NOOP") == b"+OK"
    assert r.cmd(b"\xff") == UNKNOWN
    assert r.cmd("STAT") == f"+OK 1 {len(MSG)}".encode()
    assert r.cmd("QUIT") == b"+OK Logging out"
    assert r.at_eof()


def test_overlong_line(server):
    server.add_user(ALICE, ALICE_PW)
    server.deliver(ALICE, MSG)
    r = server.raw()
    r.send(b"A" * 3000 + b"\r\n")
    assert r.line() == LINE_TOO_LONG
    assert capa_lines(r)[-1] == b"STLS"
    r.send(b"USER " + b"a" * 2995 + b"\r\n")
    assert r.line() == LINE_TOO_LONG
    # Sent in pieces, with the next command right behind it.
    r.send(b"X" * 1500)
    r.send(b"Y" * 1500 + b"\r\nCAPA\r\n")
    assert r.line() == LINE_TOO_LONG
    assert r.line() == b"+OK Capability list follows"
    r.multiline_raw()
    r.starttls()
    r.send(b"P" * 3000 + b"\r\n")
    assert r.line() == LINE_TOO_LONG
    assert r.login(ALICE, ALICE_PW).startswith(b"+OK Logged in")
    r.send(b"RETR " + b"1" * 2995 + b"\r\n")
    assert r.line() == LINE_TOO_LONG
    assert r.cmd("RETR 1") == f"+OK {len(MSG)} octets".encode()
    assert r.multiline_raw() == MSG + b".\r\n"
    assert r.cmd("QUIT") == b"+OK Logging out"


def test_garbage_message_numbers(server):
    server.add_user(ALICE, ALICE_PW)
    msgs = [f"Subject: {i}\r\n\r\nbody {i}\r\n".encode() for i in range(3)]
    for m in msgs:
        server.deliver(ALICE, m)
    size = len(msgs[0])
    stat = f"+OK 3 {3 * size}".encode()
    cases = [
        ("LIST 0", "-ERR No such message"),
        ("LIST 4", "-ERR No such message"),
        ("LIST 99999999999999999999999999", "-ERR No such message"),
        ("LIST abc", "-ERR Invalid message number"),
        ("LIST -1", "-ERR Invalid message number"),
        ("LIST +1", "-ERR Invalid message number"),
        ("LIST 1x", "-ERR Invalid message number"),
        ("LIST 0x1", "-ERR Invalid message number"),
        ("LIST 1 2", "-ERR Too many arguments"),
        ("UIDL 4", "-ERR No such message"),
        ("UIDL one", "-ERR Invalid message number"),
        ("RETR", "-ERR Missing message number"),
        ("RETR 0", "-ERR No such message"),
        ("RETR 4", "-ERR No such message"),
        ("RETR 1.0", "-ERR Invalid message number"),
        ("DELE", "-ERR Missing message number"),
        ("DELE 4", "-ERR No such message"),
        ("DELE -3", "-ERR Invalid message number"),
        ("TOP", "-ERR Missing message number"),
        ("TOP 1", "-ERR Missing line count"),
        ("TOP 9 1", "-ERR No such message"),
        ("TOP 1 -1", "-ERR Invalid line count"),
        ("TOP 1 x", "-ERR Invalid line count"),
    ]
    # Up to 8 mistakes per connection, well under max_bad_commands (20).
    for start in range(0, len(cases), 8):
        r = server.raw(implicit=True)
        assert r.login(ALICE, ALICE_PW) == (
            f"+OK Logged in, 3 messages ({3 * size} octets)".encode()
        )
        for command, answer in cases[start : start + 8]:
            assert r.cmd(command) == answer.encode(), command
            assert r.cmd("STAT") == stat
        assert r.cmd("LIST 2") == f"+OK 2 {size}".encode()
        assert r.cmd("RETR 3") == f"+OK {size} octets".encode()
        assert r.multiline_raw() == msgs[2] + b".\r\n"
        assert r.cmd("QUIT") == b"+OK Logging out"
        r.close()
    # None of it deleted anything.
    assert server.users()[ALICE]["inbox"] == "3"


def test_wrong_state_commands(server):
    server.add_user(ALICE, ALICE_PW)
    server.deliver(ALICE, MSG)
    r = server.raw()
    r.starttls()
    for command in ["STAT", "LIST", "LIST 1", "UIDL", "RETR 1", "DELE 1", "TOP 1 0",
                    "NOOP", "RSET"]:
        assert r.cmd(command) == WRONG_STATE, command
        assert capa_lines(r)[-1] == b"SASL PLAIN"
    assert r.cmd(f"PASS {ALICE_PW}") == b"-ERR USER first"
    assert r.login(ALICE, ALICE_PW) == ONE
    for command in [f"USER {ALICE}", f"PASS {ALICE_PW}", "STLS",
                    f"AUTH PLAIN {plain_b64(ALICE, ALICE_PW)}"]:
        assert r.cmd(command) == WRONG_STATE, command
        assert r.cmd("STAT") == f"+OK 1 {len(MSG)}".encode()
    assert r.cmd("QUIT") == b"+OK Logging out"


def test_too_many_bad_commands_closes(server):
    r = server.raw()
    for _ in range(20):
        assert r.cmd("BOGUS") == UNKNOWN
    assert r.cmd("CAPA") == b"+OK Capability list follows"
    r.multiline_raw()
    r.send(b"BOGUS\r\n")
    assert r.line() == UNKNOWN
    assert r.line() == TOO_MANY_BAD
    assert r.at_eof()
    # The server is fine and takes new connections.
    r = server.raw()
    assert r.cmd("QUIT") == b"+OK Bye"


def test_failed_logins_count_as_bad_commands(make_server):
    """21 failures on one connection: the 21st ends the session. The address block
    (after 10 failures by default; test_hostile_connections.py) is turned off here so
    that the count reaches max_bad_commands."""
    server = make_server(start=False)
    write_config = server.write_config

    def without_address_block() -> None:
        write_config()
        text = server.config.read_text()
        server.config.write_text(
            text.replace("[security]\n", "[security]\nfailed_logins_before_block = 0\n", 1)
        )

    server.write_config = without_address_block
    server.start()
    server.add_user(ALICE, ALICE_PW)
    r = server.raw(implicit=True)
    for _ in range(20):
        assert r.login(ALICE, "wrong") == AUTH_FAILED
    assert r.cmd(f"USER {ALICE}") == b"+OK"
    r.send(b"PASS wrong\r\n")
    assert r.line() == AUTH_FAILED
    assert r.line() == TOO_MANY_BAD
    assert r.at_eof()
    server.login(ALICE, ALICE_PW).quit()


# --------------------------------------------------------------------------------------
# Pipelining (RFC 2449 §6.6)


def test_pipelined_commands_answered_in_order(server):
    server.add_user(ALICE, ALICE_PW)
    msgs = [f"Subject: {i}\r\n\r\n.dot {i}\r\n".encode() for i in range(3)]
    for m in msgs:
        server.deliver(ALICE, m)
    r = server.raw(implicit=True)
    r.send(
        f"USER {ALICE}\r\nPASS {ALICE_PW}\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\n"
        "TOP 2 0\r\nNOOP\r\nXYZZY\r\nDELE 1\r\nLIST 1\r\nSTAT\r\nRSET\r\nSTAT\r\n"
        "RETR 3\r\nQUIT\r\n".encode()
    )
    size = len(msgs[0])
    assert r.line() == b"+OK"
    assert r.line() == f"+OK Logged in, 3 messages ({3 * size} octets)".encode()
    assert r.line() == f"+OK 3 {3 * size}".encode()
    assert r.line() == f"+OK 3 messages ({3 * size} octets)".encode()
    assert r.multiline_raw() == f"1 {size}\r\n2 {size}\r\n3 {size}\r\n.\r\n".encode()
    assert re.fullmatch(rb"\+OK 2 00000002[0-9A-F]{8}", r.line())
    assert r.line() == f"+OK {size} octets".encode()
    assert r.multiline_raw() == b"Subject: 0\r\n\r\n..dot 0\r\n.\r\n"
    assert r.line() == b"+OK"
    assert r.multiline_raw() == b"Subject: 1\r\n\r\n.\r\n"
    assert r.line() == b"+OK"
    assert r.line() == UNKNOWN
    assert r.line() == b"+OK Message 1 deleted"
    assert r.line() == b"-ERR Message 1 already deleted"
    assert r.line() == f"+OK 2 {2 * size}".encode()
    assert r.line() == b"+OK"
    assert r.line() == f"+OK 3 {3 * size}".encode()
    assert r.line() == f"+OK {size} octets".encode()
    assert r.multiline_raw() == b"Subject: 2\r\n\r\n..dot 2\r\n.\r\n"
    assert r.line() == b"+OK Logging out"
    assert r.at_eof()
    assert server.users()[ALICE]["inbox"] == "3"


def test_pipelined_input_after_stls_is_discarded(server):
    """Commands sent in the clear behind STLS must not run inside the TLS session
    (RFC 2595 §4 / CVE-2011-0411 style injection)."""
    server.add_user(ALICE, ALICE_PW)
    r = server.raw()
    r.send(f"STLS\r\nUSER {ALICE}\r\nNOOP\r\n".encode())
    assert r.line() == b"+OK Begin TLS negotiation"
    r.sock = tls_context().wrap_socket(r.sock)
    assert r.buf == b""
    # Were USER injected, this PASS would log in.
    assert r.cmd(f"PASS {ALICE_PW}") == b"-ERR USER first"
    assert r.login(ALICE, ALICE_PW).startswith(b"+OK Logged in")
    r.close()


def test_many_pipelined_retr(server):
    server.add_user(ALICE, ALICE_PW)
    msgs = [f"Subject: m{i}\r\n\r\n{'x' * (i * 37)}\r\n".encode() for i in range(40)]
    for m in msgs:
        server.deliver(ALICE, m)
    r = server.raw(implicit=True)
    assert r.login(ALICE, ALICE_PW).startswith(b"+OK Logged in, 40 messages")
    r.send(b"".join(f"RETR {i}\r\nUIDL {i}\r\n".encode() for i in range(1, 41)))
    for i, m in enumerate(msgs, 1):
        assert r.line() == f"+OK {len(m)} octets".encode()
        assert r.multiline_raw() == m + b".\r\n"
        line = r.line()
        assert line.startswith(f"+OK {i} ".encode()) and int(line.split()[2][:8], 16) == i
    assert r.cmd("QUIT") == b"+OK Logging out"


# --------------------------------------------------------------------------------------
# Shutdown


def test_sigterm_with_open_sessions(server, corpus):
    server.add_user(ALICE, ALICE_PW)
    server.add_user(BOB, BOB_PW)
    stored = fill(server, ALICE, by_name(corpus, SMALL[:3]))
    p = server.login(ALICE, ALICE_PW)
    before = uidl_map(p)
    p.quit()

    busy = server.raw(implicit=True)
    assert busy.login(ALICE, ALICE_PW) == (
        f"+OK Logged in, 3 messages ({sum(len(m) for _, m in stored)} octets)".encode()
    )
    assert busy.cmd("DELE 1") == b"+OK Message 1 deleted"
    assert busy.cmd("DELE 3") == b"+OK Message 3 deleted"
    idle = server.raw()  # AUTHORIZATION, no TLS
    stls = server.raw()
    stls.starttls()
    assert stls.cmd(f"USER {BOB}") == b"+OK"

    assert server.terminate() == 0, server.log()
    for client in (busy, idle, stls):
        assert client.line() == SHUTTING_DOWN
        assert client.at_eof()

    server.start()
    assert server.users()[ALICE]["inbox"] == "3"
    p = server.login(ALICE, ALICE_PW)
    assert check_session(p, stored) == before
    p.quit()


def test_sigterm_idle_server_exits_zero(server):
    server.stop()
    assert not server.running
    # Nothing listens any more.
    for port in (server.pop3_port, server.pop3s_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
