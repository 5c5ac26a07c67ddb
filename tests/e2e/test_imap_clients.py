"""IMAP with curl as the client: an independent implementation of implicit TLS,
STARTTLS, LOGIN / AUTHENTICATE PLAIN, LIST, SELECT + UID FETCH BODY[], SEARCH and
APPEND (upload)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import crlf

ALICE = "alice@example.com"
ALICE_PW = "alice-Curl-4"

MESSAGES = [
    "001-plain-ascii.eml",
    "005-multipart-mixed-attachments.eml",
    "010-empty-body-no-subject.eml",
    "011-headers-only.eml",
    "013-large-attachment.eml",
    "014-malformed-unclosed-boundary.eml",
    "015-raw-utf8-headers.eml",
    "017-dot-stuffing.eml",
    "018-bare-lf-body.eml",
    "019-multipart-signed.eml",
]

LIST_OUTPUT = (
    b'* LIST (\\HasNoChildren \\Archive) "/" "Archive"\r\n'
    b'* LIST (\\HasNoChildren \\Trash) "/" "Deleted Items"\r\n'
    b'* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"\r\n'
    b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
    b'* LIST (\\HasNoChildren \\Junk) "/" "Junk Email"\r\n'
    b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"\r\n'
)

# curl exit codes (man curl): 64 requested TLS level failed, 67 login denied,
# 78 remote file not found.
USE_SSL_FAILED = 64
LOGIN_DENIED = 67
NOT_FOUND = 78


@pytest.fixture(scope="module")
def curl():
    path = shutil.which("curl")
    if path is None:
        pytest.fail("curl is not installed", pytrace=False)
    return path


@pytest.fixture
def mailbox(imap_server, corpus):
    """A running server with Alice holding MESSAGES; returns (server, [stored bytes])."""
    table = dict(corpus)
    missing = [n for n in MESSAGES if n not in table]
    assert not missing, f"corpus lacks {missing}"
    imap_server.add_user(ALICE, ALICE_PW)
    stored = []
    for i, name in enumerate(MESSAGES, 1):
        assert imap_server.deliver(ALICE, table[name]) == i
        stored.append(crlf(table[name]))
    return imap_server, stored


def run_curl(curl, url, *args, user=f"{ALICE}:{ALICE_PW}", input=None):
    cmd = [curl, "-s", "--max-time", "30", *args]
    if user is not None:
        cmd += ["-u", user]
    return subprocess.run(cmd + [url], capture_output=True, timeout=60, input=input)


def imaps(server, path=""):
    return f"imaps://127.0.0.1:{server.imaps_port}/{path}"


def imap(server, path=""):
    return f"imap://127.0.0.1:{server.imap_port}/{path}"


def test_curl_imaps_list(curl, mailbox):
    server, _ = mailbox
    r = run_curl(curl, imaps(server), "-k")
    assert (r.returncode, r.stdout) == (0, LIST_OUTPUT), r.stderr
    # Without -k curl must refuse the self-signed certificate (60).
    r = run_curl(curl, imaps(server))
    assert r.returncode == 60 and r.stdout == b""


def test_curl_imaps_fetch_every_message_byte_exact(curl, mailbox):
    server, stored = mailbox
    for uid, data in enumerate(stored, 1):
        r = run_curl(curl, imaps(server, f"INBOX;UID={uid}"), "-k")
        assert r.returncode == 0, (uid, r.stderr)
        assert r.stdout == data, f"UID {uid} ({MESSAGES[uid - 1]}) differs"
    # A section of a MIME message, and a UID that does not exist.
    r = run_curl(curl, imaps(server, "INBOX;UID=2;SECTION=1"), "-k")
    assert (r.returncode, r.stdout) == (0, b"See the attached files.\r\n")
    r = run_curl(curl, imaps(server, "INBOX;UID=99"), "-k")
    assert (r.returncode, r.stdout) == (NOT_FOUND, b"")


def test_curl_search_and_examine(curl, mailbox):
    server, _ = mailbox
    r = run_curl(curl, imaps(server, "INBOX?ALL"), "-k")
    assert (r.returncode, r.stdout) == (0, b"* SEARCH 1 2 3 4 5 6 7 8 9 10\r\n")
    r = run_curl(curl, imaps(server, "INBOX?SUBJECT%20signed"), "-k")
    assert (r.returncode, r.stdout) == (0, b"* SEARCH 10\r\n")
    r = run_curl(curl, imaps(server, "INBOX?LARGER%20100000"), "-k")
    assert (r.returncode, r.stdout) == (0, b"* SEARCH 5\r\n")
    # A custom command on the selected INBOX (curl SELECTs it first).
    r = run_curl(curl, imaps(server, "INBOX"), "-k", "-X", "UID FETCH 3:4 (UID RFC822.SIZE)")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        f"* 3 FETCH (UID 3 RFC822.SIZE {len(mailbox[1][2])})\r\n"
        f"* 4 FETCH (UID 4 RFC822.SIZE {len(mailbox[1][3])})\r\n"
    ).encode()


def test_curl_starttls(curl, mailbox):
    server, stored = mailbox
    r = run_curl(curl, imap(server), "-k", "--ssl-reqd")
    assert (r.returncode, r.stdout) == (0, LIST_OUTPUT), r.stderr
    r = run_curl(curl, imap(server, "INBOX;UID=10"), "-k", "--ssl-reqd")
    assert (r.returncode, r.stdout) == (0, stored[9])
    # curl signs in with AUTHENTICATE PLAIN and an initial response (SASL-IR), after
    # STARTTLS and a fresh CAPABILITY.
    r = run_curl(curl, imap(server, "INBOX;UID=1"), "-k", "--ssl-reqd", "-v")
    assert (r.returncode, r.stdout) == (0, stored[0]), r.stderr
    sent = [line for line in r.stderr.splitlines() if line.startswith(b"> ")]
    assert sent[:4] == [b"> A001 CAPABILITY", b"> A002 STARTTLS", b"> A003 CAPABILITY",
                        b"> A004 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLUN1cmwtNA=="]
    assert sent[4:] == [b"> A005 SELECT INBOX", b"> A006 UID FETCH 1 BODY[]"]
    # SASL LOGIN is not offered: curl has nothing to sign in with.
    r = run_curl(curl, imap(server), "-k", "--ssl-reqd", "--login-options", "AUTH=LOGIN")
    assert (r.returncode, r.stdout) == (LOGIN_DENIED, b"")


def test_curl_plaintext_refused_on_secure_server(curl, mailbox):
    server, _ = mailbox
    # No TLS: the server says LOGINDISABLED and offers no mechanism, so curl gives up
    # without sending the password.
    r = run_curl(curl, imap(server), "-v")
    assert r.returncode == LOGIN_DENIED and r.stdout == b"", r.stderr
    assert b"LOGINDISABLED" in r.stderr
    assert ALICE_PW.encode() not in r.stderr
    assert b"> A002 LOGIN" not in r.stderr and b"AUTHENTICATE" not in r.stderr
    # Bad password over TLS.
    r = run_curl(curl, imaps(server), "-k", user=f"{ALICE}:wrong")
    assert (r.returncode, r.stdout) == (LOGIN_DENIED, b"")


def test_curl_plaintext_login_type(curl, make_imap_server, corpus):
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    data = dict(corpus)["001-plain-ascii.eml"]
    server.deliver(ALICE, data)
    r = run_curl(curl, imap(server, "INBOX;UID=1"))
    assert (r.returncode, r.stdout) == (0, crlf(data)), r.stderr


def test_curl_append_upload(curl, mailbox, tmp_path):
    server, _ = mailbox
    message = (
        b"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\n"
        b"Subject: uploaded with curl\r\n\r\nline one\r\n.\r\nline three\r\n"
    )
    path = tmp_path / "upload.eml"
    path.write_bytes(message)
    r = run_curl(curl, imaps(server, "Sent"), "-k", "-T", str(path))
    assert (r.returncode, r.stdout) == (0, b""), r.stderr
    r = run_curl(curl, imaps(server, "Sent;UID=1"), "-k")
    assert (r.returncode, r.stdout) == (0, message)
    # Read back with imaplib too: one message, unseen until fetched with curl
    # (curl's FETCH BODY[] sets \Seen).
    m = server.imap_login(ALICE, ALICE_PW)
    assert m.select("Sent") == ("OK", [b"1"])
    typ, data = m.fetch("1", "(FLAGS BODY.PEEK[])")
    assert data[0] == (b"1 (FLAGS (\\Seen) BODY[] {%d}" % len(message), message)
    m.logout()
    # Upload to a missing folder fails and creates nothing.
    r = run_curl(curl, imaps(server, "Nowhere"), "-k", "-T", str(path))
    assert r.returncode != 0
    r = run_curl(curl, imaps(server), "-k")
    assert r.stdout == LIST_OUTPUT
