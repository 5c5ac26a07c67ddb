"""A data directory of the single-node release (before the replicated account
directory) opened by today's binary: its accounts move into the directory once, with
their settings and mail, and the `directory-migrated` marker says it is done.

The fixture, tests/fixtures/single-node-data-v0.tar.gz (see tests/fixtures/README.md),
holds `data/store/...`: alice@example.com (password alice-pw, two messages in INBOX)
and bob@example.com (password bob-pw, POP3 off, POP3 delete mode hide). conftest's
servers use `data` under their root as data directory, so the archive is unpacked into
the root.
"""

from __future__ import annotations

import imaplib
import poplib
import tarfile
from pathlib import Path

from conftest import AUTH_FAILED, POP3_DISABLED

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "single-node-data-v0.tar.gz"
MARKER = "directory-migrated"

ALICE = "alice@example.com"
ALICE_PW = "alice-pw"
BOB = "bob@example.com"
BOB_PW = "bob-pw"

# `user list` of the migrated node (conftest's node is named `n`, and its configuration
# names no local domain, so no postmaster account is made).
ALICE_LINE = (
    f"{ALICE}\tpop3=on\timap=on\tpop3-delete-mode=expunge\tinbox=2\thome=n\tquota=none\tused=221"
)
BOB_LINE = (
    f"{BOB}\tpop3=off\timap=on\tpop3-delete-mode=hide\tinbox=0\thome=n\tquota=none\tused=0"
)
MIGRATED_LIST = f"{ALICE_LINE}\n{BOB_LINE}\n"

SUBJECTS = [b"before the directory", b"second"]


def unpack_fixture(server) -> Path:
    """Unpacks the old release's data directory as `server`'s (not yet started) data
    directory; returns it."""
    data_dir = server.root / server.data_dir
    assert not data_dir.exists(), f"{data_dir} exists before the fixture is unpacked"
    with tarfile.open(FIXTURE) as archive:
        names = archive.getnames()
        assert "data/store/db" in names, names
        archive.extractall(server.root, filter="data")
    assert (data_dir / "store").is_dir()
    assert not (data_dir / MARKER).exists()
    return data_dir


def subjects(server, user: str, password: str) -> list[bytes]:
    """The Subject of every INBOX message, in order, over IMAP (implicit TLS)."""
    m = server.imap_login(user, password)
    try:
        typ, data = m.select("INBOX", readonly=True)
        assert (typ, data) == ("OK", [b"2"]), (typ, data)
        typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", (typ, data)
        found = []
        for item in data:
            if item == b")":
                continue
            assert isinstance(item, tuple), data
            prefix, header = item
            found.append((prefix, header))
        assert [p for p, _ in found] == [
            b"%d (BODY[HEADER.FIELDS (SUBJECT)] {%d}" % (n, len(h))
            for n, (_, h) in enumerate(found, start=1)
        ], found
        assert [h for _, h in found] == [b"Subject: " + s + b"\r\n\r\n" for s in SUBJECTS]
        return [h[len(b"Subject: "):-4] for _, h in found]
    finally:
        m.logout()


def assert_imap_refused(server, user: str, password: str) -> None:
    """IMAP LOGIN over implicit TLS fails as a bad login."""
    m = server.imap_ssl()
    try:
        try:
            m.login(user, password)
            raise AssertionError(f"{user} signed in over IMAP")
        except imaplib.IMAP4.error as e:
            assert e.args[0] == b"[AUTHENTICATIONFAILED] Authentication failed"
    finally:
        m.logout()


def assert_pop3_refused(server, user: str, password: str, answer: bytes) -> None:
    """USER/PASS over implicit TLS is refused with exactly `answer`."""
    p = server.pop3_ssl()
    try:
        assert p.user(user) == b"+OK"
        try:
            p.pass_(password)
            raise AssertionError(f"{user} signed in over POP3")
        except poplib.error_proto as e:
            assert e.args[0] == answer
    finally:
        p.close()


def check_accounts(server) -> None:
    """Everything the fixture holds, as the running server answers for it."""
    assert server.cli_ok("user", "list") == MIGRATED_LIST

    assert subjects(server, ALICE, ALICE_PW) == SUBJECTS
    # The old passwords still work, and only they.
    assert_imap_refused(server, ALICE, "not-alice-pw")

    # bob: POP3 off (refused as disabled, after the right password), IMAP on.
    assert_pop3_refused(server, BOB, BOB_PW, POP3_DISABLED)
    m = server.imap_login(BOB, BOB_PW)
    try:
        typ, data = m.select("INBOX", readonly=True)
        assert (typ, data) == ("OK", [b"0"]), (typ, data)
    finally:
        m.logout()

    # alice's POP3 is on: her two messages are there.
    p = server.login(ALICE, ALICE_PW, implicit=True)
    try:
        count, size = p.stat()
        assert count == 2 and size > 0, (count, size)
    finally:
        assert p.quit() == b"+OK Logging out"


def test_single_node_data_is_migrated_once(make_imap_server):
    """Start on the old data directory: the accounts are listed with their settings and
    mail, and sign in as before; a restart migrates nothing again (the marker stays and
    the list is the same); the command line on the stopped node's data directory gives
    the same list; `user del` of a migrated account lasts across a restart."""
    server = make_imap_server(start=False)
    data_dir = unpack_fixture(server)

    server.start()
    assert (data_dir / MARKER).is_file(), "no migration marker after the first start"
    check_accounts(server)

    marker_stat = (data_dir / MARKER).stat()
    server.restart()
    assert (data_dir / MARKER).stat().st_mtime_ns == marker_stat.st_mtime_ns
    check_accounts(server)
    assert "account migrated into the directory" in server.log()
    assert server.log().count("account migrated into the directory") == 2, server.log()
    assert "account already in the directory" not in server.log()

    # The command line with no server running reads the data directory itself.
    server.stop()
    assert server.cli_ok("user", "list") == MIGRATED_LIST

    server.start()
    assert server.cli_ok("user", "del", BOB) == f"deleted {BOB}\n"
    assert server.cli_ok("user", "list") == f"{ALICE_LINE}\n"
    server.restart()
    assert server.cli_ok("user", "list") == f"{ALICE_LINE}\n"
    assert_imap_refused(server, BOB, BOB_PW)
    assert_pop3_refused(server, BOB, BOB_PW, AUTH_FAILED)
    assert subjects(server, ALICE, ALICE_PW) == SUBJECTS
    server.stop()
    assert server.cli_ok("user", "list") == f"{ALICE_LINE}\n"


def test_command_line_migrates_a_stopped_node(make_imap_server):
    """The command line run first, on the old data directory with no server: it
    migrates (and marks it), lists the same accounts; a server started after takes them
    as they are, without migrating again."""
    server = make_imap_server(start=False)
    data_dir = unpack_fixture(server)

    assert server.cli_ok("user", "list") == MIGRATED_LIST
    assert (data_dir / MARKER).is_file()
    assert server.cli_ok("user", "list") == MIGRATED_LIST

    server.start()
    check_accounts(server)
    assert "account migrated into the directory" not in server.log()
