"""LOGIN-REFERRALS (RFC 2221) on a small cluster started for real with
scripts/cluster-up.sh: three nodes on 127.0.0.11, .12 and .14, with `[imap]
login_referrals = true`. d1 (frontend, backend, directory) refers a client whose
mailbox is on d2 to d2's own IMAP listener of the kind the client used (implicit TLS or
STARTTLS), where the client signs in directly; s2 has no implicit-TLS listener, so an
implicit-TLS client of s2's is proxied as without referrals, and d1's log says why.

The setting is read at start (there is no reload), so this module runs a cluster of its
own rather than the four-node one of test_cluster_sessions.py.
"""

from __future__ import annotations

import base64
import imaplib
import re
from pathlib import Path

import pytest

from conftest import IO_TIMEOUT, find_binary, tls_context
from test_cluster import IP, PASSWORD, Cluster, pick_port_base, wait_for

NODES = ["d1", "d2", "s2"]
# Offsets from the port base, as scripts/cluster-up.sh lays them out.
POP3, POP3S, IMAP, IMAPS, SMTP, SUBMISSION, SUBMISSIONS, INTERNODE = range(8)
LOGGED_IN = re.compile(rb"\[CAPABILITY [^\]]+\] Logged in")
REFERRAL_TEXT = b"Your mailbox is on another server: sign in there"


def node_config(name: str, roles: str, base: int, root: Path, imaps: bool = True) -> str:
    ip = IP[name]
    listeners = {"pop3": POP3, "pop3s": POP3S, "imap": IMAP, "smtp": SMTP,
                 "submission": SUBMISSION, "submissions": SUBMISSIONS}
    if imaps:
        listeners["imaps"] = IMAPS
    listen = "".join(f'{key} = "{ip}:{base + offset}"\n' for key, offset in listeners.items())
    return (f'[[node]]\nname = "{name}"\nsite = "dublin"\nroles = [{roles}]\n'
            f'data_dir = "{root / "data" / name}"\ninternode = "{ip}:{base + INTERNODE}"\n'
            f"[node.listen]\n{listen}\n")


def write_config(root: Path, base: int) -> None:
    """cluster-up.sh keeps a DIR/cluster.toml that exists: this one, absolute paths and
    ports already set."""
    root.mkdir(parents=True, exist_ok=True)
    text = (
        f'cluster = "referrals"\nlocal_domains = ["example.com"]\npki = "{root / "pki"}"\n'
        '[[site]]\nname = "dublin"\n'
        + node_config("d1", '"frontend", "backend", "directory"', base, root)
        + node_config("d2", '"backend"', base, root)
        + node_config("s2", '"backend"', base, root, imaps=False)
        + '[tls]\ncert = "tls/cert.pem"\nkey = "tls/key.pem"\nself_signed = true\n'
        "[imap]\nenabled = true\nlogin_referrals = true\n"
        "[pop3]\nenabled = true\n[smtp]\nenabled = true\n"
    )
    (root / "cluster.toml").write_text(text)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("referrals")
    c = Cluster(find_binary(), root, pick_port_base())
    write_config(root, c.base)
    try:
        c.up()
        for home in NODES:
            c.add_user_ok("d1", f"ref-{home}@example.com", home)
        c.wait_for_same_records(NODES, 10)
        yield c
    finally:
        c.down()


def connect(host: str, port: int, implicit: bool) -> imaplib.IMAP4:
    if implicit:
        return imaplib.IMAP4_SSL(host, port, ssl_context=tls_context(), timeout=IO_TIMEOUT)
    client = imaplib.IMAP4(host, port, timeout=IO_TIMEOUT)
    client.starttls(tls_context())
    return client


def at(cluster: Cluster, node: str, implicit: bool) -> imaplib.IMAP4:
    return connect(IP[node], cluster.base + (IMAPS if implicit else IMAP), implicit)


def login(client: imaplib.IMAP4, user: str, password: str = PASSWORD) -> tuple[str, bytes]:
    """The tagged answer to LOGIN: ("OK", text) or ("NO", text)."""
    try:
        typ, data = client.login(user, password)
        return typ, data[-1]
    except imaplib.IMAP4.error as e:
        text = e.args[0]
        assert isinstance(text, bytes), text  # BAD comes as str
        return "NO", text


def referral(cluster: Cluster, home: str, user: str, implicit: bool) -> bytes:
    enc = user.replace("@", "%40")
    port = cluster.base + (IMAPS if implicit else IMAP)
    return b"[REFERRAL imap://%s;AUTH=*@%s:%d/] %s" % (
        enc.encode(), IP[home].encode(), port, REFERRAL_TEXT)


def follow(cluster: Cluster, text: bytes, user: str) -> None:
    """Signs in at the server a referral names, with the port's own kind of TLS, and
    opens the INBOX there."""
    m = re.fullmatch(rb"\[REFERRAL imap://([^;]+);AUTH=\*@([\d.]+):(\d+)/\] .*", text)
    assert m, text
    assert m.group(1).decode().replace("%40", "@") == user
    host, port = m.group(2).decode(), int(m.group(3))
    assert port - cluster.base in (IMAP, IMAPS), port
    client = connect(host, port, implicit=port - cluster.base == IMAPS)
    try:
        typ, text = login(client, user)
        assert typ == "OK" and LOGGED_IN.fullmatch(text), (host, port, typ, text)
        assert client.select("INBOX")[0] == "OK"
    finally:
        client.logout()


def test_referrals_point_at_the_homes_listener_of_the_clients_kind(cluster):
    user = "ref-d2@example.com"
    for implicit in (True, False):
        client = at(cluster, "d1", implicit)
        try:
            caps = client.capabilities
            assert caps.index("LOGIN-REFERRALS") == caps.index("SASL-IR") + 1, caps
            typ, text = login(client, user)
            assert (typ, text) == ("NO", referral(cluster, "d2", user, implicit)), implicit
            # The session is still there, signed out.
            typ, data = client.noop()
            assert typ == "OK", data
        finally:
            client.logout()
        follow(cluster, text, user)


def test_authenticate_is_referred_and_a_bad_password_is_not(cluster):
    user = "ref-d2@example.com"
    client = at(cluster, "d1", implicit=True)
    try:
        response = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        typ, data = client._simple_command("AUTHENTICATE", "PLAIN", response)
        assert (typ, data[-1]) == ("NO", referral(cluster, "d2", user, True)), data
        # Where the mailbox is stays unsaid to who has not proven the password.
        typ, text = login(client, user, "wrong-password")
        assert (typ, text) == ("NO", b"[AUTHENTICATIONFAILED] Authentication failed")
    finally:
        client.logout()


def test_a_mailbox_on_the_node_reached_is_served_there(cluster):
    for implicit in (True, False):
        client = at(cluster, "d1", implicit)
        try:
            typ, text = login(client, "ref-d1@example.com")
            assert typ == "OK" and LOGGED_IN.fullmatch(text), (typ, text)
        finally:
            client.logout()


def test_without_a_listener_to_name_the_session_is_proxied(cluster):
    """s2 has no implicit-TLS listener: the implicit-TLS client is proxied (and d1 logs
    why); the STARTTLS client is referred to s2's STARTTLS port."""
    user = "ref-s2@example.com"
    log_from = cluster.log_path("d1").stat().st_size
    client = at(cluster, "d1", implicit=True)
    try:
        typ, text = login(client, user)
        assert typ == "OK" and LOGGED_IN.fullmatch(text), (typ, text)
        assert client.select("INBOX")[0] == "OK"
    finally:
        client.logout()
    why = ('login_referrals is on, but no referral can name the mailbox\'s node: '
           'node "s2": it has no listen.imaps; proxying instead')

    def logged():
        log = cluster.log_since("d1", log_from)
        logged.last = log[-2000:]
        return True if why in log else None

    wait_for(logged, 5, "d1 logs why it proxied")
    client = at(cluster, "d1", implicit=False)
    try:
        typ, text = login(client, user)
        assert (typ, text) == ("NO", referral(cluster, "s2", user, False))
    finally:
        client.logout()
    follow(cluster, text, user)


def test_reload_reaches_every_node(cluster):
    """`portico reload` asked of one node has every node re-read its own copy of the
    configuration (here all share one file) and says what each now tells clients. A
    node's own refusal of a bad file is in test_https.py."""
    original = cluster.config.read_text()
    imap = "[imap]\nenabled = true\n"
    assert imap in original
    moved = original.replace(imap, imap + 'external_connection = ["mail.example.com:993:SSL"]\n')
    try:
        cluster.config.write_text(moved)
        lines = cluster.cli_ok("d2", "reload").splitlines()
        assert [line.split(":", 1)[0] for line in lines] == ["d2", "d1", "s2"], lines
        for line in lines:
            assert re.search(r"imap: internal \S+:\d+:SSL \S+:\d+:TLS; "
                             r"external mail\.example\.com:993:SSL \|", line), line
            assert line.endswith("; TLS certificate reloaded"), line

        # The command line reads the file too, and refuses it before asking any node.
        cluster.config.write_text(moved.replace(":993:SSL", ":993:STARTTLS"))
        refused = cluster.cli("d1", "reload")
        assert refused.returncode == 1, refused
        assert 'unknown encryption "STARTTLS"' in refused.stderr.decode(), refused
        assert refused.stdout == b"", refused
    finally:
        cluster.config.write_text(original)
    lines = cluster.cli_ok("d1", "reload").splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["d1", "d2", "s2"], lines
    assert all("external 127.0.0.11:" in line for line in lines), lines
