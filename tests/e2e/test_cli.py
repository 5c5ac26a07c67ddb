"""The `portico` command line: account management and delivery, both through a running
server (admin socket) and straight on the store of a stopped one."""

from __future__ import annotations

import poplib
import re
import socket
import subprocess
import time

import pytest

from conftest import AUTH_FAILED, IN_USE, LOCK_RETRY_SECS, STOP_TIMEOUT, crlf

ALICE = "alice@example.com"
BOB = "bob@example.com"
NOBODY = "zed@example.com"


def line(address, pop3="on", imap="on", mode="expunge", inbox=0, home="n", quota="none") -> str:
    """A `user list` line as `list_lines` gives it (the bytes used are a number)."""
    return (
        f"{address}\tpop3={pop3}\timap={imap}\tpop3-delete-mode={mode}\tinbox={inbox}"
        f"\thome={home}\tquota={quota}\tused=N"
    )


def list_lines(server) -> list[str]:
    """`user list`, each line's `used=` number (bytes, checked to be one) made `N`."""
    out = server.cli_ok("user", "list")
    assert out == "" or out.endswith("\n")
    lines = []
    for text in out.splitlines():
        m = re.fullmatch(r"(.*\tused=)(\d+)", text)
        assert m, text
        lines.append(m.group(1) + "N")
    return lines


def expect_failure(server, *args, input=b"", message):
    r = server.cli(*args, input=input)
    assert (r.returncode, r.stdout, r.stderr.decode()) == (1, b"", f"portico: {message}\n"), (
        args
    )


def pop3_password_ok(server, user, password) -> bool:
    """Whether `password` opens `user`'s maildrop (over STLS); any other answer than
    the authentication failure fails the test. [IN-USE] right after an earlier session
    quit is waited out (see Server.login)."""
    deadline = time.monotonic() + LOCK_RETRY_SECS
    while True:
        p = server.pop3_stls()
        assert p.user(user) == b"+OK"
        try:
            resp = p.pass_(password)
        except poplib.error_proto as e:
            p.quit()
            if e.args[0] == IN_USE and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            assert e.args[0] == AUTH_FAILED
            return False
        assert resp.startswith(b"+OK Logged in, ")
        assert p.quit() == b"+OK Logging out"
        return True


@pytest.fixture(params=["running", "stopped"])
def node(request, make_server):
    """A server, running or never started (the CLI then opens the store itself)."""
    return make_server(start=request.param == "running")


def test_user_lifecycle(node):
    assert list_lines(node) == []
    node.add_user(ALICE, "pw-one")
    assert list_lines(node) == [line(ALICE)]
    node.add_user(BOB, "pw-two")
    assert sorted(list_lines(node)) == [line(ALICE), line(BOB)]

    # Addresses are kept lower-case.
    out = node.cli_ok("user", "add", "Carol@Example.COM", "--password-stdin", input=b"pw\n")
    assert out == "added carol@example.com\n"
    assert line("carol@example.com") in list_lines(node)
    expect_failure(node, "user", "add", "carol@example.com", "--password-stdin",
                   input=b"pw\n", message="user already exists: carol@example.com")
    assert node.cli_ok("user", "del", "CAROL@example.com") == "deleted carol@example.com\n"

    expect_failure(node, "user", "add", ALICE, "--password-stdin", input=b"other\n",
                   message=f"user already exists: {ALICE}")

    assert node.cli_ok("user", "set", ALICE, "--pop3", "off") == f"updated {ALICE}\n"
    assert line(ALICE, pop3="off") in list_lines(node)
    assert node.cli_ok("user", "set", ALICE, "--imap", "off") == f"updated {ALICE}\n"
    assert line(ALICE, pop3="off", imap="off") in list_lines(node)
    assert node.cli_ok("user", "set", ALICE, "--pop3-delete-mode", "hide") == (
        f"updated {ALICE}\n"
    )
    assert line(ALICE, pop3="off", imap="off", mode="hide") in list_lines(node)
    out = node.cli_ok("user", "set", ALICE, "--pop3", "on", "--imap", "on",
                      "--pop3-delete-mode", "expunge")
    assert out == f"updated {ALICE}\n"
    assert sorted(list_lines(node)) == [line(ALICE), line(BOB)]

    out = node.cli_ok("user", "passwd", ALICE, "--password-stdin", input=b"pw-three\n")
    assert out == f"password changed for {ALICE}\n"

    assert node.deliver(BOB, b"Subject: hi\r\n\r\nhello\r\n") == 1
    assert sorted(list_lines(node)) == [line(ALICE), line(BOB, inbox=1)]
    assert node.cli_ok("user", "del", BOB) == f"deleted {BOB}\n"
    assert list_lines(node) == [line(ALICE)]
    # A new account under the old name starts empty.
    node.add_user(BOB, "pw-four")
    assert sorted(list_lines(node)) == [line(ALICE), line(BOB)]


def test_errors(node):
    node.add_user(ALICE, "pw")
    missing = f"no such user: {NOBODY}"
    expect_failure(node, "user", "del", NOBODY, message=missing)
    expect_failure(node, "user", "passwd", NOBODY, "--password-stdin", input=b"x\n",
                   message=missing)
    expect_failure(node, "user", "set", NOBODY, "--pop3", "off", message=missing)
    expect_failure(node, "deliver", NOBODY, input=b"Subject: x\r\n\r\ny\r\n",
                   message=missing)
    expect_failure(node, "deliver", ALICE, input=b"",
                   message="no message on standard input")
    expect_failure(node, "user", "add", BOB, "--password-stdin", input=b"",
                   message="the password is empty")
    expect_failure(node, "user", "add", BOB, "--password-stdin", input=b"\n",
                   message="the password is empty")
    # Nothing of that changed anything.
    assert list_lines(node) == [line(ALICE)]
    # Usage errors are not runtime errors.
    r = node.cli("user", "set", ALICE, "--pop3", "maybe")
    assert r.returncode == 2 and r.stdout == b""
    assert b"invalid value 'maybe'" in r.stderr


def test_state_carries_between_running_and_stopped(make_server):
    server = make_server(start=False)
    server.add_user(ALICE, "alice-pw")
    assert server.deliver(ALICE, b"Subject: 1\r\n\r\nstopped\n") == 1  # bare LF
    server.cli_ok("user", "set", ALICE, "--pop3-delete-mode", "hide")

    server.start()
    assert list_lines(server) == [line(ALICE, mode="hide", inbox=1)]
    server.add_user(BOB, "bob-pw")
    assert server.deliver(ALICE, b"Subject: 2\r\n\r\nrunning\r\n") == 2
    p = server.login(ALICE, "alice-pw")
    first = crlf(b"Subject: 1\r\n\r\nstopped\n")
    assert first == b"Subject: 1\r\n\r\nstopped\r\n"
    assert p.retr(1)[:2] == (f"+OK {len(first)} octets".encode(),
                             [b"Subject: 1", b"", b"stopped"])
    assert p.retr(2)[1] == [b"Subject: 2", b"", b"running"]
    p.quit()

    server.stop()
    assert sorted(list_lines(server)) == [
        line(ALICE, mode="hide", inbox=2),
        line(BOB),
    ]
    assert server.deliver(ALICE, b"Subject: 3\r\n\r\nstopped again\r\n") == 3
    server.cli_ok("user", "del", BOB)

    server.start()
    assert list_lines(server) == [line(ALICE, mode="hide", inbox=3)]
    p = server.login(ALICE, "alice-pw")
    assert p.stat()[0] == 3
    assert p.retr(3)[1] == [b"Subject: 3", b"", b"stopped again"]
    p.quit()
    assert not pop3_password_ok(server, BOB, "bob-pw")


def test_deliver_is_byte_exact_running_and_stopped(make_server, corpus):
    table = dict(corpus)
    names = ["017-dot-stuffing.eml", "018-bare-lf-body.eml", "019-multipart-signed.eml",
             "014-malformed-unclosed-boundary.eml"]
    server = make_server(start=False)
    server.add_user(ALICE, "alice-pw")
    uids = [server.deliver(ALICE, table[n]) for n in names[:2]]
    server.start()
    uids += [server.deliver(ALICE, table[n]) for n in names[2:]]
    assert uids == [1, 2, 3, 4]
    assert list_lines(server) == [line(ALICE, inbox=4)]
    r = server.raw(implicit=True)
    assert r.login(ALICE, "alice-pw").startswith(b"+OK Logged in, 4 messages")
    for i, name in enumerate(names, 1):
        m = crlf(table[name])
        assert r.cmd(f"LIST {i}") == f"+OK {i} {len(m)}".encode()
        assert r.cmd(f"RETR {i}") == f"+OK {len(m)} octets".encode()
        body = r.multiline_raw()
        unstuffed = b"".join(
            ln[1:] if ln.startswith(b".") else ln
            for ln in body[:-3].splitlines(keepends=True)
        )
        assert unstuffed == (m if m.endswith(b"\r\n") else m + b"\r\n"), name
    assert r.cmd("QUIT") == b"+OK Logging out"


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_passwd_then_login_with_the_new_password(make_server, running):
    server = make_server()
    server.add_user(ALICE, "old-Password-1")
    server.deliver(ALICE, b"Subject: x\r\n\r\ny\r\n")
    # A successful login (also fills the server's auth cache).
    assert pop3_password_ok(server, ALICE, "old-Password-1")
    if not running:
        server.stop()
    out = server.cli_ok("user", "passwd", ALICE, "--password-stdin",
                        input=b"new Password 2\nsecond line is ignored\n")
    assert out == f"password changed for {ALICE}\n"
    if not running:
        server.start()
    assert pop3_password_ok(server, ALICE, "new Password 2")
    assert not pop3_password_ok(server, ALICE, "old-Password-1")
    assert not pop3_password_ok(server, ALICE, "second line is ignored")
    r = server.raw(implicit=True)
    assert r.auth_plain(ALICE, "new Password 2") == b"+OK Logged in, 1 message (17 octets)"
    r.close()


def test_data_directory_is_locked_by_a_running_server(make_server):
    first = make_server(name="node")
    first.add_user(ALICE, "alice-pw")
    # Same directory and data_dir, other ports.
    second = make_server(name="node", config_name="second.toml", start=False)
    assert second.config.parent == first.config.parent
    assert {second.pop3_port, second.pop3s_port}.isdisjoint(
        {first.pop3_port, first.pop3s_port}
    )
    proc = second.spawn()
    try:
        code = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("a second `portico serve` on a locked data directory kept running")
    assert code != 0
    assert "in use by another portico process" in second.log()
    for port in (second.pop3_port, second.pop3s_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

    # The first server is unharmed; the CLI still reaches it through its socket.
    assert first.running
    assert pop3_password_ok(first, ALICE, "alice-pw")
    assert first.deliver(ALICE, b"Subject: x\r\n\r\ny\r\n") == 1
    assert list_lines(second) == [line(ALICE, inbox=1)]

    # Once the first has stopped, the second may take the directory over.
    first.stop()
    second.start()
    assert list_lines(second) == [line(ALICE, inbox=1)]
    assert pop3_password_ok(second, ALICE, "alice-pw")
    second.stop()


def test_recovery_after_sigkill(make_server):
    """A crash (SIGKILL) leaves a stale admin socket and lock behind: the CLI must fall
    back to the store, and a new server must start; acknowledged changes survive."""
    server = make_server()
    server.add_user(ALICE, "alice-pw")
    for i in range(3):
        server.deliver(ALICE, f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
    p = server.login(ALICE, "alice-pw")
    assert p.dele(2) == b"+OK Message 2 deleted"
    assert p.quit() == b"+OK Logging out, 1 message deleted"
    server.kill()
    assert not server.running

    assert list_lines(server) == [line(ALICE, inbox=2)]
    assert server.deliver(ALICE, b"Subject: 3\r\n\r\nbody 3\r\n") == 4
    server.start()
    assert list_lines(server) == [line(ALICE, inbox=3)]
    p = server.login(ALICE, "alice-pw")
    assert [p.retr(i)[1][-1] for i in (1, 2, 3)] == [b"body 0", b"body 2", b"body 3"]
    p.quit()


def test_unknown_node_name(make_server):
    server = make_server(start=False)
    r = server.cli("--node", "nosuch", "user", "list")
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.startswith(b"portico: ") and b"nosuch" in r.stderr
    # The configured node by name works.
    assert server.cli_ok("--node", "n", "user", "list") == ""
