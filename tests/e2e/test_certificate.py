"""The node's TLS certificate as clients see it: the self-made one is for the node's
names, valid 397 days, with serverAuth (Apple Mail and iOS refuse others even once
trusted); an old-style one is replaced; an administrator's certificate is read again on
SIGHUP without dropping open sessions, and never replaced by the renewal."""

from __future__ import annotations

import datetime as dt
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import IO_TIMEOUT, SMTP_HOSTNAME, tls_context

ALICE = "alice@example.com"
ALICE_PW = "alice-Cert-1"

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "openssl"], capture_output=True).returncode != 0,
    reason="openssl is needed to read certificates",
)


def openssl(*args: str, input: bytes | None = None) -> str:
    return subprocess.run(
        ["openssl", *args], input=input, capture_output=True, check=True
    ).stdout.decode()


def peer_der(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        with tls_context().wrap_socket(sock) as tls:
            return tls.getpeercert(binary_form=True)


def file_der(cert: Path) -> bytes:
    return subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout


def make_cert(directory: Path, subject: str, days: int = 30) -> tuple[Path, Path]:
    key, cert = directory / "own-key.pem", directory / "own-cert.pem"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
        "-out", str(cert), "-days", str(days), "-subj", f"/CN={subject}",
    )
    return cert, key


def tls_dir(server) -> Path:
    return server.root / server.data_dir / "tls"


def test_self_made_certificate_is_one_clients_accept(make_smtp_server):
    server = make_smtp_server()
    cert = tls_dir(server) / "cert.pem"
    text = openssl("x509", "-in", str(cert), "-noout", "-text")
    assert f"Subject: CN = {SMTP_HOSTNAME}" in text, text
    assert "TLS Web Server Authentication" in text, text
    san = text.split("X509v3 Subject Alternative Name:")[1].splitlines()[1]
    assert f"DNS:{SMTP_HOSTNAME}" in san and "DNS:localhost" in san, san
    assert "IP Address:127.0.0.1" in san, san
    dates = openssl("x509", "-in", str(cert), "-noout", "-startdate", "-enddate")
    parsed = {
        k: dt.datetime.strptime(v.strip(), "%b %d %H:%M:%S %Y %Z")
        for k, v in (line.split("=", 1) for line in dates.splitlines())
    }
    days = (parsed["notAfter"] - dt.datetime.utcnow()).days
    assert 395 <= days <= 397, parsed
    assert (parsed["notAfter"] - parsed["notBefore"]).days <= 398
    # What a client gets is that certificate.
    assert peer_der(server.imaps_port) == file_der(cert)


def test_old_style_self_made_certificate_is_replaced(make_smtp_server):
    server = make_smtp_server(start=False)
    directory = tls_dir(server)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = make_cert(directory, "rcgen self signed cert", days=3650)
    cert.rename(directory / "cert.pem")
    key.rename(directory / "key.pem")
    server.start()
    text = openssl("x509", "-in", str(directory / "cert.pem"), "-noout", "-subject")
    assert text.strip() == f"subject=CN = {SMTP_HOSTNAME}", text


def test_sighup_reloads_an_administrators_certificate_without_dropping_sessions(
    make_smtp_server,
):
    server = make_smtp_server()
    server.add_user(ALICE, ALICE_PW)
    directory = tls_dir(server)
    before = peer_der(server.imaps_port)
    session = server.imap_login(ALICE, ALICE_PW)
    assert session.select("INBOX")[0] == "OK"

    cert, key = make_cert(directory, "reloaded.example")
    key.replace(directory / "key.pem")
    cert.replace(directory / "cert.pem")
    server.proc.send_signal(signal.SIGHUP)
    expected = file_der(directory / "cert.pem")
    deadline = time.monotonic() + 10
    while peer_der(server.imaps_port) != expected:
        assert time.monotonic() < deadline, "the new certificate was not served"
        time.sleep(0.05)
    assert expected != before
    # The session opened before keeps working.
    assert session.noop()[0] == "OK"
    assert session.select("INBOX")[0] == "OK"
    session.logout()
    assert "SIGHUP: client settings and TLS certificate reloaded" in server.log()

    # A restart keeps the administrator's certificate (the renewal never touches it).
    server.restart()
    assert peer_der(server.imaps_port) == expected

    # A broken file on SIGHUP: the old certificate stays, the log says why.
    (directory / "cert.pem").write_text("not a certificate\n")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "TLS certificate not reloaded" not in server.log():
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    assert peer_der(server.imaps_port) == expected
