"""POP3 with curl as the client: a second, independent implementation of STLS, implicit
TLS, SASL PLAIN, LIST and RETR."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import crlf

ALICE = "alice@example.com"
ALICE_PW = "alice-Curl-3"

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

# curl exit codes (man curl): 8 weird server reply, 60 peer certificate cannot be
# authenticated, 64 requested TLS level failed, 67 login denied.
LOGIN_DENIED = 67


@pytest.fixture(scope="session")
def curl():
    path = shutil.which("curl")
    if path is None:
        pytest.fail("curl is not installed", pytrace=False)
    return path


@pytest.fixture
def mailbox(server, corpus):
    """A running server with Alice holding MESSAGES; returns (server, [stored bytes])."""
    table = dict(corpus)
    missing = [n for n in MESSAGES if n not in table]
    assert not missing, f"corpus lacks {missing}"
    server.add_user(ALICE, ALICE_PW)
    stored = []
    for i, name in enumerate(MESSAGES, 1):
        assert server.deliver(ALICE, table[name]) == i
        stored.append(crlf(table[name]))
    return server, stored


def run_curl(curl, url, *args, user=f"{ALICE}:{ALICE_PW}"):
    cmd = [curl, "-s", "--max-time", "30", *args]
    if user is not None:
        cmd += ["-u", user]
    return subprocess.run(cmd + [url], capture_output=True, timeout=60)


def as_retrieved(stored: bytes) -> bytes:
    """What a client gets: the message, ended with CRLF when it was not (RFC 1939 §3)."""
    return stored if stored.endswith(b"\r\n") else stored + b"\r\n"


def listing(stored) -> bytes:
    return b"".join(f"{i} {len(m)}\r\n".encode() for i, m in enumerate(stored, 1))


def urls(server, scheme):
    if scheme == "pop3":  # STLS
        return f"pop3://127.0.0.1:{server.pop3_port}", ["--ssl-reqd", "-k"]
    return f"pop3s://127.0.0.1:{server.pop3s_port}", ["-k"]


@pytest.mark.parametrize("scheme", ["pop3", "pop3s"])
def test_curl_list(curl, mailbox, scheme):
    server, stored = mailbox
    base, tls = urls(server, scheme)
    r = run_curl(curl, base + "/", *tls)
    assert r.returncode == 0, r.stderr
    assert r.stdout == listing(stored)
    # The same with the SASL initial response in the AUTH command.
    r = run_curl(curl, base + "/", *tls, "--sasl-ir")
    assert r.returncode == 0, r.stderr
    assert r.stdout == listing(stored)


@pytest.mark.parametrize("scheme", ["pop3", "pop3s"])
def test_curl_retr_every_message(curl, mailbox, scheme):
    server, stored = mailbox
    base, tls = urls(server, scheme)
    for i, m in enumerate(stored, 1):
        r = run_curl(curl, f"{base}/{i}", *tls)
        assert r.returncode == 0, (MESSAGES[i - 1], r.stderr)
        assert r.stdout == as_retrieved(m), f"RETR {i} ({MESSAGES[i - 1]}) via curl"
    # Reading does not delete.
    assert server.users()[ALICE]["inbox"] == str(len(stored))


def test_curl_uidl_top_and_dele(curl, mailbox):
    server, stored = mailbox
    base, tls = urls(server, "pop3s")
    r = run_curl(curl, base + "/", *tls, "-X", "UIDL")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split(b"\r\n")
    assert lines[-1] == b""
    uidl = dict(line.split(b" ") for line in lines[:-1])
    assert list(uidl) == [str(i).encode() for i in range(1, len(stored) + 1)]
    assert all(int(u[:8], 16) == i for i, u in enumerate(uidl.values(), 1))

    r = run_curl(curl, base + "/", *tls, "-X", "TOP 8 2")
    assert r.returncode == 0, r.stderr
    dots = stored[MESSAGES.index("017-dot-stuffing.eml")]
    head = dots.split(b"\r\n\r\n", 1)[0]
    assert r.stdout == head + b"\r\n\r\n.leading dot\r\n..two dots\r\n"

    r = run_curl(curl, base + "/", *tls, "-X", "DELE 2", "-I")
    assert r.returncode == 0, r.stderr
    r = run_curl(curl, base + "/", *tls)
    assert r.returncode == 0, r.stderr
    left = stored[:1] + stored[2:]
    assert r.stdout == listing(left)
    assert server.users()[ALICE]["inbox"] == str(len(left))
    r = run_curl(curl, base + "/", *tls, "-X", "UIDL")
    assert r.stdout == b"".join(
        f"{i} ".encode() + u + b"\r\n"
        for i, u in enumerate([v for k, v in uidl.items() if k != b"2"], 1)
    )


def test_curl_without_tls_is_refused_by_secure_login(curl, mailbox):
    server, _ = mailbox
    base = f"pop3://127.0.0.1:{server.pop3_port}"
    for path in ("/", "/1"):
        r = run_curl(curl, base + path)
        assert r.returncode == LOGIN_DENIED, (r.returncode, r.stderr)
        assert r.stdout == b""


def test_curl_failures(curl, mailbox):
    server, stored = mailbox
    base, tls = urls(server, "pop3")
    # The certificate is self-signed: without -k curl must refuse it, which shows the
    # session really is under TLS.
    r = run_curl(curl, base + "/", "--ssl-reqd")
    assert r.returncode == 60, (r.returncode, r.stderr)
    r = run_curl(curl, base + "/", *tls, user=f"{ALICE}:wrong")
    assert r.returncode == LOGIN_DENIED, (r.returncode, r.stderr)
    assert r.stdout == b""
    r = run_curl(curl, base + "/", *tls, user="administrator@example.com:x")
    assert r.returncode == LOGIN_DENIED, (r.returncode, r.stderr)
    r = run_curl(curl, f"{base}/{len(stored) + 1}", *tls)
    assert r.returncode == 8, (r.returncode, r.stderr)
    assert r.stdout == b""
    # Nothing of that touched the mailbox.
    r = run_curl(curl, base + "/", *tls)
    assert r.returncode == 0 and r.stdout == listing(stored)


def test_curl_plaintext_login_when_configured(curl, make_server):
    server = make_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    msg = b"Subject: clear\r\n\r\n.hello\r\n"
    server.deliver(ALICE, msg)
    base = f"pop3://127.0.0.1:{server.pop3_port}"
    r = run_curl(curl, base + "/")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"1 {len(msg)}\r\n".encode()
    r = run_curl(curl, base + "/1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == msg
