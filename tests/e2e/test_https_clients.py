"""Real mail clients set up from the autoconfig answer alone: the test reads
config-v1.1.xml as Thunderbird would, writes an mbsync (isync) configuration for each
IMAP server and a fetchmail rc for each POP3 server it lists (host, port, and implicit
TLS or STARTTLS from socketType; the certificate checked against the node's own
tls/cert.pem), and submits over each SMTP server it lists. The messages delivered must
arrive byte for byte, apart from the CRLF -> LF the clients make when they store.

The node's internal settings point at its real listeners, so a client inside
(127.0.0.2) is told servers it can use; the external ones name hosts that do not exist
and must not be what the clients get.
"""

from __future__ import annotations

import hashlib
import imaplib
import os
import shutil
import smtplib
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import IO_TIMEOUT, crlf, find_binary, load_corpus
from https_node import (
    DOMAIN,
    INSIDE,
    HttpsNode,
    autoconfig_servers,
    expected_autoconfig,
    start_node,
)

PASSWORD = "client-Pw-7"
CLIENT_TIMEOUT = 60
MESSAGES = [
    "001-plain-ascii.eml",
    "005-multipart-mixed-attachments.eml",
    "010-empty-body-no-subject.eml",
    "013-large-attachment.eml",
    "015-raw-utf8-headers.eml",
    "017-dot-stuffing.eml",
    "018-bare-lf-body.eml",
]


def connections(ports: dict[str, int]) -> dict:
    return {
        "imap": {
            "internal": [f"127.0.0.1:{ports['imaps']}:SSL", f"localhost:{ports['imap']}:TLS"],
            "external": ["mail.example.test:993:SSL"],
        },
        "pop3": {
            "internal": [f"localhost:{ports['pop3']}:TLS", f"127.0.0.1:{ports['pop3s']}:SSL"],
            "external": ["mail.example.test:995:SSL"],
        },
        "smtp": {
            "internal": [f"127.0.0.1:{ports['submissions']}:SSL",
                         f"localhost:{ports['submission']}:TLS"],
            "external": ["mail.example.test:465:SSL"],
        },
    }


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    yield from start_node(find_binary(), tmp_path_factory.mktemp("https-clients"),
                          connections=connections)


@pytest.fixture(autouse=True)
def logs_on_failure(request):
    if "node" in request.fixturenames:
        request.node._portico_servers = [request.getfixturevalue("node")]


@pytest.fixture(scope="module")
def servers(node) -> list[tuple[str, str, str, int, str]]:
    """The servers autoconfig tells a client inside the network, as it parsed them."""
    r = node.autoconfig(f"someone@{DOMAIN}", source=INSIDE)
    assert r.status == 200, r
    parsed = autoconfig_servers(r.body, DOMAIN)
    assert parsed == expected_autoconfig(node, "internal")
    return parsed


@pytest.fixture(scope="module")
def messages() -> list[tuple[str, bytes]]:
    table = dict(load_corpus())
    missing = [n for n in MESSAGES if n not in table]
    assert not missing, f"corpus lacks {missing}"
    return [(n, table[n]) for n in MESSAGES]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (scripts/test.sh installs it)", pytrace=False)
    return path


def of_type(servers, kind: str) -> list[tuple[str, int, str]]:
    return [(host, port, socket_type) for _, t, host, port, socket_type in servers if t == kind]


def mailbox_with(node: HttpsNode, address: str, messages) -> list[bytes]:
    """A new account holding `messages`; returns them as the client must store them
    (what the server keeps, CRLF made LF)."""
    node.add_user(address, PASSWORD)
    stored = []
    for i, (_, data) in enumerate(messages, 1):
        assert node.deliver(address, data) == i
        stored.append(crlf(data).replace(b"\r\n", b"\n"))
    return stored


def cert_file(node: HttpsNode) -> Path:
    path = node.data_dir / "tls" / "cert.pem"
    assert path.is_file(), path
    return path


def md5_fingerprint(pem: Path) -> str:
    """The certificate's MD5 fingerprint as fetchmail's sslfingerprint takes it."""
    der = ssl.PEM_cert_to_DER_cert(pem.read_text())
    digest = hashlib.md5(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def without_tuid(message: bytes) -> bytes:
    """mbsync marks each message it stores with one `X-TUID:` line at the end of the
    header (to find it again after an interrupted run); the rest is the message."""
    head, sep, body = message.partition(b"\n\n")
    lines = head.split(b"\n")
    tuids = [ln for ln in lines if ln.startswith(b"X-TUID: ")]
    assert len(tuids) <= 1 and (not tuids or lines[-1] == tuids[0]), head[-300:]
    return b"\n".join(lines[:-1] if tuids else lines) + sep + body


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=CLIENT_TIMEOUT,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def test_autoconfig_points_inside_clients_at_the_listeners(node, servers):
    ports = node.ports
    assert [(t, h, p, s) for _, t, h, p, s in servers] == [
        ("imap", "127.0.0.1", ports["imaps"], "SSL"),
        ("imap", "localhost", ports["imap"], "STARTTLS"),
        ("pop3", "localhost", ports["pop3"], "STARTTLS"),
        ("pop3", "127.0.0.1", ports["pop3s"], "SSL"),
        ("smtp", "127.0.0.1", ports["submissions"], "SSL"),
        ("smtp", "localhost", ports["submission"], "STARTTLS"),
    ]
    outside = node.autoconfig(f"someone@{DOMAIN}")
    assert autoconfig_servers(outside.body, DOMAIN) == expected_autoconfig(node, "external")


MBSYNC_SSL_TYPE = {"SSL": "IMAPS", "STARTTLS": "STARTTLS"}


@pytest.mark.parametrize("index", [0, 1], ids=["imap-SSL", "imap-STARTTLS"])
def test_mbsync_set_up_from_autoconfig_copies_every_message(node, servers, messages,
                                                            tmp_path, index):
    host, port, socket_type = of_type(servers, "imap")[index]
    address = f"mbsync{index}@{DOMAIN}"
    want = mailbox_with(node, address, messages)
    maildir = tmp_path / "Mail"
    maildir.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount portico\nHost {host}\nPort {port}\nUser {address}\nPass {PASSWORD}\n"
        f"SSLType {MBSYNC_SSL_TYPE[socket_type]}\nSystemCertificates no\n"
        f"CertificateFile {cert_file(node)}\nAuthMechs LOGIN\n\n"
        "IMAPStore remote\nAccount portico\n\n"
        f"MaildirStore local\nPath {maildir}/\nInbox {maildir}/INBOX\nSubFolders Verbatim\n\n"
        "Channel inbox\nFar :remote:\nNear :local:\nPatterns INBOX\nSync Pull\n"
        "Create Near\nSyncState *\n"
    )
    r = run([tool("mbsync"), "-c", str(rc), "-a"], tmp_path)
    assert r.returncode == 0, (r.stdout.decode(), r.stderr.decode())
    files = sorted((maildir / "INBOX").glob("*/*"))
    assert all(f.parent.name in ("new", "cur") for f in files), files
    got = [without_tuid(f.read_bytes()) for f in files]
    assert sorted(got) == sorted(want), [len(g) for g in got]
    # A second run finds nothing new and keeps what it has.
    r = run([tool("mbsync"), "-c", str(rc), "-a"], tmp_path)
    assert r.returncode == 0, (r.stdout.decode(), r.stderr.decode())
    again = [without_tuid(f.read_bytes()) for f in (maildir / "INBOX").glob("*/*")]
    assert sorted(again) == sorted(want)


@pytest.mark.parametrize("index", [0, 1], ids=["pop3-STARTTLS", "pop3-SSL"])
def test_fetchmail_set_up_from_autoconfig_downloads_every_message(node, servers, messages,
                                                                  tmp_path, index):
    host, port, socket_type = of_type(servers, "pop3")[index]
    address = f"fetchmail{index}@{DOMAIN}"
    want = mailbox_with(node, address, messages)
    out = tmp_path / "delivered"
    out.mkdir()
    mda = tmp_path / "mda.sh"
    mda.write_text(f'#!/bin/sh\nexec cat > "$(mktemp "{out}/msg.XXXXXXXX")"\n')
    mda.chmod(0o755)
    # With `ssl`, TLS from the first byte; without it, an explicit sslproto makes
    # fetchmail insist on STLS.
    tls = "ssl" if socket_type == "SSL" else "sslproto 'TLS1.2+'"
    if host[0].isdigit():
        # fetchmail matches host names only, never an address in the certificate:
        # pin the node's certificate by its fingerprint instead.
        check = f'no sslcertck sslfingerprint "{md5_fingerprint(cert_file(node))}"'
    else:
        check = f'sslcertck sslcertfile "{cert_file(node)}"'
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "set no bouncemail\nset no syslog\nset invisible\n"
        f"poll {host} with proto POP3 port {port} uidl\n"
        f'  user "{address}" there with password "{PASSWORD}" is "me" here\n'
        f"  {tls} {check}\n"
        f'  fetchall nokeep stripcr no rewrite mda "{mda}"\n'
    )
    rc.chmod(0o600)
    home = tmp_path / "fetchmail-home"
    home.mkdir()
    r = run([tool("fetchmail"), "-f", str(rc), "-v", "--nodetach"], tmp_path,
            env={"FETCHMAILHOME": str(home), "HOME": str(home)})
    log = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 0, log
    got = [f.read_bytes() for f in sorted(out.iterdir())]
    assert sorted(got) == sorted(want), ([len(g) for g in got], log[-3000:])
    if socket_type == "STARTTLS":
        assert "STLS" in log, log[-3000:]
    # fetchmail deleted what it downloaded (DELE + QUIT), so the maildrop is empty.
    listed = node.cli_ok("user", "list")
    line = next(ln for ln in listed.splitlines() if ln.startswith(address + "\t"))
    assert "\tinbox=0\t" in line, line
    r = run([tool("fetchmail"), "-f", str(rc), "--nodetach"], tmp_path,
            env={"FETCHMAILHOME": str(home), "HOME": str(home)})
    assert r.returncode == 1, (r.stdout + r.stderr).decode()  # 1: no mail
    assert len(list(out.iterdir())) == len(want)


@pytest.mark.parametrize("index", [0, 1], ids=["smtp-SSL", "smtp-STARTTLS"])
def test_smtp_set_up_from_autoconfig_submits(node, servers, tmp_path, index):
    host, port, socket_type = of_type(servers, "smtp")[index]
    address = f"sender{index}@{DOMAIN}"
    node.add_user(address, PASSWORD)
    # Verified as a client that was given the node's certificate would.
    context = ssl.create_default_context(cafile=str(cert_file(node)))
    message = (f"From: {address}\r\nTo: {address}\r\nSubject: via {socket_type}\r\n\r\n"
               "submitted over the server autoconfig named\r\n").encode()
    if socket_type == "SSL":
        smtp = smtplib.SMTP_SSL(host, port, context=context, timeout=IO_TIMEOUT,
                                local_hostname="client.example.org")
    else:
        smtp = smtplib.SMTP(host, port, timeout=IO_TIMEOUT, local_hostname="client.example.org")
        assert smtp.starttls(context=context)[0] == 220
    with smtp:
        smtp.login(address, PASSWORD)
        assert smtp.sendmail(address, [address], message) == {}
    # Delivered into the sender's own INBOX; read it back over IMAP.
    imap_host, imap_port, _ = of_type(servers, "imap")[0]
    deadline = time.monotonic() + 10
    with imaplib.IMAP4_SSL(imap_host, imap_port, ssl_context=context,
                           timeout=IO_TIMEOUT) as imap:
        imap.login(address, PASSWORD)
        while True:
            typ, data = imap.select("INBOX")
            if data[0] != b"0" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert (typ, data) == ("OK", [b"1"]), data
        typ, data = imap.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK"
        stored = data[0][1]
    # The server may put trace fields on top; the message itself is unchanged.
    assert stored.endswith(message), stored
