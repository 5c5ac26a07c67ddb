"""The HTTPS service of a frontend: health, Thunderbird autoconfig and Outlook
Autodiscover answered from cluster.toml (internal or external settings by the
client's address), the admin API, `portico settings`, `portico reload` / SIGHUP,
configuration errors at start, and /metrics.

Every value is compared with what this module wrote into cluster.toml: distinct hosts,
ports and encryption for inside (127.0.0.2, the only address in internal_networks) and
outside (127.0.0.1). One node serves the module; a second one, with SMTP settings not
advertised and no admin token, serves the two tests about those.
"""

from __future__ import annotations

import base64
import imaplib
import json
import poplib
import re
import signal
import smtplib
import socket
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import IO_TIMEOUT, STOP_TIMEOUT, dial, find_binary, tls_context
from https_node import (
    ADMIN_TOKEN,
    AUTODISCOVER_ENCRYPTION,
    AUTODISCOVER_RESPONSE_NS,
    CLUSTER,
    DOMAIN,
    INSIDE,
    NODE,
    OUTLOOK_RESPONSE_SCHEMA,
    OUTSIDE,
    SITE,
    HttpsNode,
    autoconfig_servers,
    autodiscover_request,
    expected_autoconfig,
    setting,
    start_node,
)

ALICE = "alice@example.com"
ALICE_PW = "alice-Https-1"
WELL_KNOWN = "/.well-known/autoconfig/mail/config-v1.1.xml"
HOST_PATH = "/mail/config-v1.1.xml"
AUTODISCOVER_PATHS = ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml")
MAX_AUTODISCOVER = 8192

# Inside and outside differ in every field; one encryption of each kind on each side,
# and addresses as hosts where `portico settings` must write a comment instead of SRV.
CONNECTIONS = {
    "imap": {
        "internal": ["imap.inside.test:1143:TLS", "imap.inside.test:1993:SSL"],
        "external": ["mail.example.test:993:SSL", "mail.example.test:143:TLS"],
    },
    "pop3": {
        "internal": ["pop.inside.test:1110:none", "10.1.2.3:1995:SSL"],
        "external": ["mail.example.test:995:SSL", "192.0.2.10:110:TLS"],
    },
    "smtp": {
        "internal": ["smtp.inside.test:1587:TLS"],
        "external": ["mail.example.test:465:SSL", "mail.example.test:587:TLS"],
    },
}
QUIET_SMTP = {
    "internal": ["smtp.inside.test:1587:TLS"],
    "external": ["mail.example.test:465:SSL"],
}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    # Some tests fail IMAP logins from 127.0.0.1 on purpose; none is about the block.
    for n in start_node(find_binary(), tmp_path_factory.mktemp("https"),
                        connections=CONNECTIONS,
                        security="failed_logins_before_block = 100\n"):
        n.add_user(ALICE, ALICE_PW)
        yield n


@pytest.fixture(scope="module")
def quiet_node(tmp_path_factory):
    """`[smtp] advertise_client_settings = false` (with SMTP lines set all the same),
    IMAP and POP3 settings derived from the listeners, no admin token."""
    yield from start_node(find_binary(), tmp_path_factory.mktemp("https-quiet"),
                          connections={"smtp": QUIET_SMTP}, advertise_smtp=False,
                          admin_token=None)


@pytest.fixture(autouse=True)
def logs_on_failure(request):
    """A failed test's report carries the log of the node(s) it used."""
    request.node._portico_servers = [
        request.getfixturevalue(name)
        for name in ("node", "quiet_node")
        if name in request.fixturenames
    ]


def imap_login(node: HttpsNode, user: str = ALICE, password: str = ALICE_PW):
    client = imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=tls_context(),
                               timeout=IO_TIMEOUT)
    typ, data = client.login(user, password)
    assert typ == "OK", data
    return client


def imap_login_fails(node: HttpsNode, user: str, password: str) -> bool:
    client = imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=tls_context(),
                               timeout=IO_TIMEOUT)
    try:
        client.login(user, password)
    except imaplib.IMAP4.error:
        return True
    finally:
        client.shutdown()
    return False


# --------------------------------------------------------------------------------------
# Health


def test_healthz_and_readyz(node):
    r = node.request("GET", "/healthz")
    assert (r.status, r.headers["Content-Type"], r.body) == (
        200, "text/plain; charset=utf-8", b"ok\n")
    # Ready once the store is open and the directory has a leader; until then 503 with
    # a reason (a one-node directory elects itself at once, so this is short).
    deadline = time.monotonic() + 10
    while True:
        r = node.request("GET", "/readyz")
        if r.status == 200 or time.monotonic() > deadline:
            break
        assert r.status == 503 and r.body.strip() and r.body != b"ready\n", r
        time.sleep(0.05)
    assert (r.status, r.headers["Content-Type"], r.body) == (
        200, "text/plain; charset=utf-8", b"ready\n")


# --------------------------------------------------------------------------------------
# Thunderbird autoconfig


@pytest.mark.parametrize("side,source", [("external", OUTSIDE), ("internal", INSIDE)])
def test_autoconfig_tells_the_settings_of_the_clients_side(node, side, source):
    want = expected_autoconfig(node, side)
    other = expected_autoconfig(node, "internal" if side == "external" else "external")
    assert want != other
    bodies = []
    for path in (WELL_KNOWN, HOST_PATH):
        r = node.autoconfig(ALICE, source=source, path=path)
        assert r.status == 200, r
        assert r.headers["Content-Type"] == "application/xml; charset=utf-8"
        assert autoconfig_servers(r.body, DOMAIN) == want, path
        bodies.append(r.body)
    assert bodies[0] == bodies[1]
    # Another user of the domain, written in capitals, gets the same document.
    r = node.autoconfig("Bob.Smith@EXAMPLE.COM", source=source)
    assert r.status == 200 and r.body == bodies[0], r


@pytest.mark.parametrize("path", [WELL_KNOWN, HOST_PATH])
def test_autoconfig_refuses_what_it_cannot_answer(node, path):
    r = node.request("GET", path)
    assert (r.status, r.body) == (400, b"the emailaddress parameter is missing\n")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    for bad in ("alice", "alice@", "@example.com", "a b@example.com"):
        r = node.autoconfig(bad, path=path)
        assert (r.status, r.body) == (400, b"emailaddress is not a mail address\n"), bad
    for foreign in ("bob@elsewhere.test", "bob@sub.example.com", "bob@example.co"):
        r = node.autoconfig(foreign, path=path)
        assert (r.status, r.body) == (404, b"this server does not serve that domain\n"), foreign


def test_advertise_client_settings_false_hides_smtp(quiet_node):
    node = quiet_node
    ports = node.ports
    derived_imap = [("127.0.0.1", ports["imaps"], "SSL"), ("127.0.0.1", ports["imap"], "TLS")]
    derived_pop3 = [("127.0.0.1", ports["pop3s"], "SSL"), ("127.0.0.1", ports["pop3"], "TLS")]
    for source in (INSIDE, OUTSIDE):
        # Thunderbird refuses a file without an outgoing server, so none is sent and
        # the client goes on to its other sources.
        r = node.autoconfig(ALICE, source=source)
        assert (r.status, r.body) == (404, b"SMTP submission is not offered to clients\n")
        r = node.autodiscover(autodiscover_request(ALICE), source=source)
        assert r.status == 200, r
        got = autodiscover_protocols(r.body, ALICE)
        want = [("IMAP", *s) for s in derived_imap] + [("POP3", *s) for s in derived_pop3]
        assert got == [(t, h, p, *AUTODISCOVER_ENCRYPTION[e]) for t, h, p, e in want]
    out = node.cli_ok("settings")
    assert out == expected_settings_text(node, CLUSTER, [DOMAIN])
    assert re.search(r"^SMTP +inside +not offered +- +-$", out, re.M), out
    assert re.search(r"^SMTP +outside +not offered +- +-$", out, re.M), out
    assert "smtp.inside.test" not in out and "mail.example.test" not in out
    assert f"_submissions._tcp.{DOMAIN}. 3600 IN SRV 0 0 0 .\n" in out
    assert f"_submission._tcp.{DOMAIN}. 3600 IN SRV 0 0 0 .\n" in out


# --------------------------------------------------------------------------------------
# Outlook Autodiscover


def autodiscover_protocols(document: bytes, address: str) -> list[tuple[str, str, int, str, str]]:
    """An Autodiscover (outlook/responseschema/2006a) settings answer: checks its shape
    and every Protocol's fixed fields; returns (Type, Server, Port, SSL, Encryption)."""
    root = ET.fromstring(document)
    assert root.tag == f"{{{AUTODISCOVER_RESPONSE_NS}}}Autodiscover", root.tag
    [response] = list(root)
    assert response.tag == f"{{{OUTLOOK_RESPONSE_SCHEMA}}}Response", response.tag
    [account] = list(response)
    ns = f"{{{OUTLOOK_RESPONSE_SCHEMA}}}"
    assert account.tag == ns + "Account"
    children = list(account)
    assert [(c.tag, c.text) for c in children[:2]] == [
        (ns + "AccountType", "email"), (ns + "Action", "settings")]
    out = []
    for protocol in children[2:]:
        assert protocol.tag == ns + "Protocol"
        fields = {c.tag[len(ns):]: c.text for c in protocol}
        kind = fields["Type"]
        assert kind in ("IMAP", "POP3", "SMTP"), fields
        assert fields["LoginName"] == address
        assert (fields["SPA"], fields["AuthRequired"]) == ("off", "on"), fields
        assert fields["Encryption"] in ("SSL", "TLS", "None"), fields
        # SSL says whether the logon is protected: on unless there is no encryption.
        assert fields["SSL"] == ("off" if fields["Encryption"] == "None" else "on"), fields
        out.append((kind, fields["Server"], int(fields["Port"]), fields["SSL"],
                    fields["Encryption"]))
    return out


def expected_autodiscover(node: HttpsNode, side: str) -> list[tuple[str, str, int, str, str]]:
    out = []
    for protocol in ("imap", "pop3", "smtp"):
        for host, port, encryption in node.settings(protocol, side):
            out.append((protocol.upper(), host, port, *AUTODISCOVER_ENCRYPTION[encryption]))
    return out


@pytest.mark.parametrize("side,source", [("external", OUTSIDE), ("internal", INSIDE)])
def test_autodiscover_tells_the_settings_of_the_clients_side(node, side, source):
    want = expected_autodiscover(node, side)
    assert want != expected_autodiscover(
        node, "internal" if side == "external" else "external")
    for path in AUTODISCOVER_PATHS:
        r = node.autodiscover(autodiscover_request(ALICE), source=source, path=path)
        assert r.status == 200, (path, r)
        assert r.headers["Content-Type"] == "text/xml; charset=utf-8"
        assert autodiscover_protocols(r.body, ALICE) == want, path


def test_autodiscover_for_a_foreign_domain_is_exchanges_error_600(node):
    r = node.autodiscover(autodiscover_request("bob@elsewhere.test"))
    assert r.status == 200 and r.headers["Content-Type"] == "text/xml; charset=utf-8", r
    root = ET.fromstring(r.body)
    ns = f"{{{AUTODISCOVER_RESPONSE_NS}}}"
    assert root.tag == ns + "Autodiscover"
    [response] = list(root)
    [error] = list(response)
    assert (response.tag, error.tag) == (ns + "Response", ns + "Error")
    assert [(c.tag[len(ns):], c.text) for c in error][:2] == [
        ("ErrorCode", "600"), ("Message", "Invalid Request")]
    assert b"elsewhere" not in r.body and b"example.com" not in r.body


def padded_request(length: int) -> bytes:
    """A good request for ALICE made exactly `length` bytes long with a comment."""
    base = autodiscover_request(ALICE).encode()
    filler = length - len(base) - len(b"<!---->")
    assert filler >= 0
    body = base.replace(b"<Request>", b"<!--" + b"x" * filler + b"--><Request>", 1)
    assert len(body) == length
    return body


NS_TEXT = (
    "<Autodiscover> must be in the namespace "
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
)
BAD_AUTODISCOVER = {
    "not-xml": (b"this is not XML <Autodiscover",
                "the request body is not well-formed UTF-8 XML: "),
    "not-utf8": (autodiscover_request("al\xefce@example.com").encode("latin-1"),
                 "the request body is not well-formed UTF-8 XML: it is not UTF-8"),
    "unclosed": (autodiscover_request(ALICE).replace("</Request>", "").encode(),
                 "the request body is not well-formed UTF-8 XML: "),
    "doctype": (('<?xml version="1.0"?>\n<!DOCTYPE Autodiscover [<!ENTITY e "alice">]>\n'
                 + autodiscover_request("&e;@example.com").split("\n", 1)[1]).encode(),
                "DOCTYPE declarations are not accepted"),
    "wrong-namespace": (autodiscover_request(ALICE, namespace="urn:not-outlook").encode(),
                        NS_TEXT),
    "no-namespace": (autodiscover_request(ALICE).replace(
        ' xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/'
        '2006"', "").encode(), NS_TEXT),
    "missing-address": (autodiscover_request(ALICE).replace(
        f"<EMailAddress>{ALICE}</EMailAddress>", "").encode(),
        "the request has no <Request><EMailAddress>"),
    "bad-address": (autodiscover_request("alice").encode(),
                    "<EMailAddress> is not a valid mail address"),
    "other-schema": (autodiscover_request(
        ALICE, schema="http://schemas.microsoft.com/exchange/autodiscover/mobilesync/"
                      "responseschema/2006").encode(),
        "the only response schema offered is " + OUTLOOK_RESPONSE_SCHEMA),
    "oversized": (padded_request(MAX_AUTODISCOVER + 1),
                  f"the request body is longer than {MAX_AUTODISCOVER} bytes"),
    "far-oversized": (padded_request(60_000),
                      f"the request body is longer than {MAX_AUTODISCOVER} bytes"),
    "empty": (b"", "the request body is not well-formed UTF-8 XML: "),
}


@pytest.mark.parametrize("case", list(BAD_AUTODISCOVER))
def test_autodiscover_bad_requests_are_400_with_a_message(node, case):
    body, message = BAD_AUTODISCOVER[case]
    r = node.autodiscover(body)
    assert r.status == 400, r
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    text = r.text
    assert text.startswith("bad Autodiscover request: " + message), text
    assert text.endswith("\n") and text.count("\n") == 1, text
    if not message.endswith(": "):
        assert text == f"bad Autodiscover request: {message}\n"


def test_autodiscover_takes_a_request_of_exactly_the_limit(node):
    r = node.autodiscover(padded_request(MAX_AUTODISCOVER))
    assert r.status == 200, r
    assert autodiscover_protocols(r.body, ALICE) == expected_autodiscover(node, "external")


# --------------------------------------------------------------------------------------
# Admin API

BAD_TOKENS = [
    None,
    f"Bearer {'x' * len(ADMIN_TOKEN)}",
    f"Bearer {ADMIN_TOKEN[:-1]}",
    f"Bearer {ADMIN_TOKEN}x",
    f"Bearer {ADMIN_TOKEN.upper()}",
    "Bearer",
    f"Basic {base64.b64encode(f'admin:{ADMIN_TOKEN}'.encode()).decode()}",
    ADMIN_TOKEN,
]


def admin_calls(target: str) -> list[tuple[str, str, dict | None]]:
    """One of each call, aimed at `target` where a call names a user."""
    return [
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", {"address": "mallory@example.com", "password": "pw-M-1"}),
        ("DELETE", f"/api/v1/users/{target}", None),
        ("PUT", f"/api/v1/users/{target}/password", {"password": "stolen-Pw-1"}),
        ("PATCH", f"/api/v1/users/{target}", {"imap_enabled": False}),
        ("GET", "/api/v1/status", None),
    ]


def users_by_address(node: HttpsNode) -> dict[str, dict]:
    r = node.api("GET", "/api/v1/users")
    assert r.status == 200, r
    users = r.json()
    assert isinstance(users, list)
    return {u["address"]: u for u in users}


def summary(address: str, **changes) -> dict:
    """A user as GET /api/v1/users lists it (storage_used checked apart)."""
    return {
        "address": address, "home": NODE, "pop3_enabled": True, "imap_enabled": True,
        "pop3_delete_mode": "Expunge", "inbox_messages": 0, "storage_limit": None,
        **changes,
    }


def without_used(user: dict) -> dict:
    assert isinstance(user["storage_used"], int) and user["storage_used"] >= 0, user
    return {k: v for k, v in user.items() if k != "storage_used"}


def test_admin_api_with_the_token(node):
    carol = "carol.api@example.com"
    assert carol not in users_by_address(node)
    r = node.api("POST", "/api/v1/users", {"address": carol, "password": "carol-Pw-1"})
    assert (r.status, r.json()) == (201, {"done": f"added {carol}"})
    users = users_by_address(node)
    assert without_used(users[carol]) == summary(carol)
    assert without_used(users[ALICE])["address"] == ALICE
    imap_login(node, carol, "carol-Pw-1").logout()

    message = b"Subject: api\r\n\r\nstored for the admin API test\r\n"
    used = users[carol]["storage_used"]
    node.deliver(carol, message)
    user = users_by_address(node)[carol]
    assert without_used(user) == summary(carol, inbox_messages=1)
    assert user["storage_used"] == used + len(message), (used, user)

    r = node.api("POST", "/api/v1/users", {"address": carol, "password": "again-Pw-2"})
    assert (r.status, r.json()) == (400, {"error": f"user already exists: {carol}"})

    r = node.api("PUT", f"/api/v1/users/{carol}/password", {"password": "carol-Pw-2"})
    assert (r.status, r.json()) == (200, {"done": f"password changed for {carol}"})
    assert imap_login_fails(node, carol, "carol-Pw-1")
    imap_login(node, carol, "carol-Pw-2").logout()

    r = node.api("PATCH", f"/api/v1/users/{carol}",
                 {"imap_enabled": False, "pop3_delete_mode": "Hide", "storage_limit": 5_000_000})
    assert (r.status, r.json()) == (200, {"done": f"updated {carol}"})
    assert without_used(users_by_address(node)[carol]) == summary(
        carol, imap_enabled=False, pop3_delete_mode="Hide", storage_limit=5_000_000,
        inbox_messages=1)
    assert imap_login_fails(node, carol, "carol-Pw-2")
    r = node.api("PATCH", f"/api/v1/users/{carol}",
                 {"imap_enabled": True, "pop3_enabled": False, "storage_limit": None})
    assert (r.status, r.json()) == (200, {"done": f"updated {carol}"})
    assert without_used(users_by_address(node)[carol]) == summary(
        carol, pop3_enabled=False, pop3_delete_mode="Hide", inbox_messages=1)
    imap_login(node, carol, "carol-Pw-2").logout()

    r = node.api("DELETE", f"/api/v1/users/{carol}")
    assert (r.status, r.json()) == (200, {"done": f"deleted {carol}"})
    assert carol not in users_by_address(node)
    assert imap_login_fails(node, carol, "carol-Pw-2")

    # Unknown users are 404 for every call that names one.
    for method, path, body in admin_calls(carol):
        if carol in path:
            r = node.api(method, path, body)
            assert (r.status, r.json()) == (404, {"error": f"no such user: {carol}"}), path


def test_admin_api_status(node):
    r = node.api("GET", "/api/v1/status")
    assert r.status == 200, r
    status = r.json()
    assert status["node"] == NODE
    cluster = status["cluster"]
    assert {k: cluster[k] for k in ("cluster", "reporter", "leader", "changes_refused")} == {
        "cluster": CLUSTER, "reporter": NODE, "leader": NODE, "changes_refused": None}
    [me] = cluster["nodes"]
    assert {k: me[k] for k in ("name", "site", "roles", "raft", "health")} == {
        "name": NODE, "site": SITE, "roles": ["frontend", "backend", "directory"],
        "raft": "leader", "health": "self"}
    assert isinstance(me["applied"], int) and me["applied"] >= 1, me


BAD_BODIES = [
    ("POST", "/api/v1/users", b"{not json", None),
    ("POST", "/api/v1/users", b'{"address": "dave@example.com"}', "missing field `password`"),
    ("POST", "/api/v1/users",
     b'{"address": "dave@example.com", "password": "pw-D-1", "admin": true}', "unknown field"),
    ("POST", "/api/v1/users", b'{"address": "dave@example.com", "password": ""}',
     "the password is empty"),
    ("PUT", f"/api/v1/users/{ALICE}/password", b'{"pass": "x"}', "unknown field"),
    ("PATCH", f"/api/v1/users/{ALICE}", b'{"pop3_delete_mode": "Sometimes"}', "unknown variant"),
    ("PATCH", f"/api/v1/users/{ALICE}", b'{"storage_limit": -1}', None),
    ("PATCH", f"/api/v1/users/{ALICE}", b'{"imap_enabled": "yes"}', None),
]


def test_admin_api_bad_bodies_are_400_and_change_nothing(node):
    before = users_by_address(node)
    for method, path, raw, words in BAD_BODIES:
        r = node.api(method, path, raw=raw)
        assert r.status == 400, (raw, r)
        error = r.json()
        assert list(error) == ["error"] and error["error"], (raw, error)
        if words:
            assert words in error["error"], (raw, error)
    assert users_by_address(node) == before
    imap_login(node).logout()


@pytest.mark.parametrize("token", BAD_TOKENS, ids=lambda t: "none" if t is None else t[:12])
def test_admin_api_refuses_a_missing_or_bad_token(node, token):
    before = users_by_address(node)
    for method, path, body in admin_calls(ALICE):
        r = node.api(method, path, body, token=token)
        assert r.status == 401, (method, path, r)
        assert r.headers["WWW-Authenticate"].startswith("Bearer"), r.headers
        assert r.json() == {"error": "a valid bearer token is required"}
    assert users_by_address(node) == before
    imap_login(node).logout()


def test_admin_api_checks_the_token_before_the_body(node):
    """Without the token, a malformed body is not looked at: still 401, so nobody
    learns the API's shape from its parse errors."""
    outcomes = {}
    for method, path, _ in admin_calls(ALICE):
        if method in ("POST", "PUT", "PATCH"):
            for token in (None, "Bearer wrong"):
                r = node.api(method, path, raw=b"{not json", token=token)
                outcomes[(method, path, token)] = (r.status, r.json())
    refused = (401, {"error": "a valid bearer token is required"})
    assert outcomes == dict.fromkeys(outcomes, refused), outcomes


def test_admin_api_is_not_served_over_plain_http(node):
    before = users_by_address(node)
    for method, path, body in admin_calls(ALICE):
        data = json.dumps(body).encode() if body is not None else b""
        request = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        ).encode() + data
        sock = dial(node.ports["https"])
        answer = b""
        try:
            sock.sendall(request)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
        finally:
            sock.close()
        assert not answer.startswith(b"HTTP/"), (method, path, answer[:200])
        assert b"{" not in answer, answer[:200]
    assert users_by_address(node) == before


def test_admin_api_without_a_configured_token_does_not_exist(quiet_node):
    for token in (f"Bearer {ADMIN_TOKEN}", None):
        for method, path, body in admin_calls(ALICE):
            r = quiet_node.api(method, path, body, token=token)
            assert (r.status, r.json()) == (404, {"error": "the admin API is not enabled"}), (
                method, path)


# --------------------------------------------------------------------------------------
# portico settings


def table(rows: list[list[str]]) -> str:
    """The columns as `portico settings` aligns them: two spaces apart, the last one
    not padded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        ("".join(c.ljust(w) + "  " for c, w in zip(r[:-1], widths)) + r[-1]).rstrip() + "\n"
        for r in rows
    )


def expected_settings_text(node: HttpsNode, shown: str, domains: list[str]) -> str:
    rows = [["Protocol", "Network", "Server", "Port", "Encryption"]]
    for protocol, name in (("imap", "IMAP4"), ("pop3", "POP3"), ("smtp", "SMTP")):
        for side, word in (("internal", "inside"), ("external", "outside")):
            listed = node.settings(protocol, side)
            if not listed:
                rows.append([name, word, "not offered", "-", "-"])
            for host, port, encryption in listed:
                rows.append([name, word, host, str(port), encryption])
    text = f"Mail settings for {shown}\n\n" + table(rows) + (
        "\nUser name: the full email address. Encryption: SSL = TLS from the first byte "
        "(implicit TLS);\nTLS = STARTTLS on a plain connection; none = no encryption. "
        "Use the first server listed;\nthe others are alternatives.\n"
    )
    https = node.ports["https"]
    for domain in domains:
        text += f"\nDNS records for {domain} (RFC 6186 / RFC 8314):\n"
        services = {"imap": ("_imaps", "_imap"), "pop3": ("_pop3s", "_pop3"),
                    "smtp": ("_submissions", "_submission")}
        for protocol in ("imap", "pop3", "smtp"):
            if not node.settings(protocol, "external"):
                for service in services[protocol]:
                    text += f"{service}._tcp.{domain}. 3600 IN SRV 0 0 0 .\n"
            for priority, (host, port, encryption) in enumerate(
                    node.settings(protocol, "external")):
                service = services[protocol][0 if encryption == "SSL" else 1]
                owner = f"{service}._tcp.{domain}."
                if host[0].isdigit():
                    text += f"; {owner} cannot point at {host}: an SRV target must be a host name\n"
                else:
                    text += f"{owner} 3600 IN SRV {priority} 1 {port} {host}.\n"
        text += (
            f"\nAutoconfig and Autodiscover for {domain} (HTTPS on 127.0.0.1:{https}):\n"
            f"autoconfig.{domain}. 3600 IN A 127.0.0.1\n"
            f"autodiscover.{domain}. 3600 IN A 127.0.0.1\n"
            f"; _autodiscover._tcp.{domain}. cannot point at 127.0.0.1: an SRV target must be "
            "a host name\n"
            f"; autoconfig.{domain} is fetched on port 443 only; HTTPS listens on {https}\n"
        )
    return text


def test_portico_settings_prints_the_table_and_dns_records(node):
    out = node.cli_ok("settings")
    assert out == expected_settings_text(node, CLUSTER, [DOMAIN])
    # Spot checks that do not go through the expectation builder above.
    assert f"_imaps._tcp.{DOMAIN}. 3600 IN SRV 0 1 993 mail.example.test.\n" in out
    assert f"_imap._tcp.{DOMAIN}. 3600 IN SRV 1 1 143 mail.example.test.\n" in out
    assert (f"; _pop3._tcp.{DOMAIN}. cannot point at 192.0.2.10: an SRV target must be a "
            "host name\n") in out
    assert "IMAP4     inside   imap.inside.test   1143  TLS\n" in out
    assert "POP3      inside   pop.inside.test    1110  none\n" in out

    out = node.cli_ok("settings", "--user", ALICE)
    assert out == expected_settings_text(node, ALICE, [DOMAIN])
    out = node.cli_ok("settings", "--domain", "Other.Example.NET")
    assert out == expected_settings_text(node, "Other.Example.NET", ["other.example.net"])
    r = node.cli("settings", "--user", "not-an-address")
    assert (r.returncode, r.stdout) == (1, b"")
    assert r.stderr.decode() == 'portico: "not-an-address" is not a mail address\n'


# --------------------------------------------------------------------------------------
# portico reload and SIGHUP


def reload_summary(connections: dict) -> str:
    parts = []
    for protocol in ("imap", "pop3", "smtp"):
        sides = connections[protocol]
        parts.append(f"{protocol}: internal {' '.join(sides['internal'])}; "
                     f"external {' '.join(sides['external'])}")
    return (f"{NODE}: connection settings reloaded (" + " | ".join(parts)
            + "); TLS certificate reloaded\n")


def imap_external(node: HttpsNode) -> list[tuple]:
    r = node.autoconfig(ALICE, source=OUTSIDE)
    assert r.status == 200, r
    return [s[2:] for s in autoconfig_servers(r.body, DOMAIN) if s[1] == "imap"]


def with_imap_external(external: list[str]) -> dict:
    return {**CONNECTIONS, "imap": {**CONNECTIONS["imap"], "external": external}}


def test_reload_changes_autoconfig_at_once_and_keeps_sessions(node):
    original = [(h, p, {"SSL": "SSL", "TLS": "STARTTLS"}[e])
                for h, p, e in map(setting, CONNECTIONS["imap"]["external"])]
    assert imap_external(node) == original
    imap = imap_login(node)
    assert imap.select("INBOX")[0] == "OK"
    pop = poplib.POP3_SSL("127.0.0.1", node.ports["pop3s"], context=tls_context(),
                          timeout=IO_TIMEOUT)
    pop.user(ALICE)
    assert pop.pass_(ALICE_PW).startswith(b"+OK")
    try:
        moved = with_imap_external(["imap.moved.example.test:10993:SSL"])
        node.write_config(node.config_text(connections=moved))
        assert node.cli_ok("reload") == reload_summary(moved)
        assert imap_external(node) == [("imap.moved.example.test", 10993, "SSL")]
        # The inside is as before, and so is everything else outside.
        r = node.autoconfig(ALICE, source=INSIDE)
        assert autoconfig_servers(r.body, DOMAIN) == expected_autoconfig(node, "internal")
        assert imap.noop()[0] == "OK"
        assert pop.noop() == b"+OK"

        # SIGHUP does the same.
        hup = with_imap_external(["imap.hup.example.test:20143:TLS"])
        node.write_config(node.config_text(connections=hup))
        node.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while imap_external(node) != [("imap.hup.example.test", 20143, "STARTTLS")]:
            assert time.monotonic() < deadline, imap_external(node)
            time.sleep(0.05)
        assert imap.noop()[0] == "OK"
        assert pop.noop() == b"+OK"
        # Open sessions were left alone: they still work as a session does.
        assert imap.select("INBOX")[0] == "OK"
        assert pop.stat()[0] >= 0
    finally:
        node.write_config()
        reloaded = node.cli("reload")
    assert reloaded.returncode == 0, reloaded
    assert imap_external(node) == original
    imap.logout()
    assert pop.quit() == b"+OK Logging out"


def test_a_bad_edit_is_refused_and_the_old_settings_stay(node):
    before = node.autoconfig(ALICE).body
    good = node.config_text()
    bad = good.replace('"mail.example.test:993:SSL"', '"mail.example.test:993:STARTTLS"')
    assert bad != good
    try:
        node.write_config(bad)
        r = node.cli("reload")
        assert (r.returncode, r.stdout) == (1, b""), r
        assert 'unknown encryption "STARTTLS"' in r.stderr.decode(), r.stderr
        assert node.autoconfig(ALICE).body == before

        # Told by SIGHUP, the node itself refuses the file and says why.
        log_from = len(node.log())
        node.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            log = node.log()[log_from:]
            if "configuration not reloaded, the old one stays" in log:
                break
            assert time.monotonic() < deadline, log[-2000:]
            time.sleep(0.05)
        assert 'unknown encryption \\"STARTTLS\\"' in log or 'unknown encryption "STARTTLS"' in log
        assert node.autoconfig(ALICE).body == before

        # A file the running node can read but that no longer names it.
        node.write_config(good.replace(f'name = "{NODE}"', 'name = "someone-else"'))
        r = node.cli("reload")
        assert (r.returncode, r.stdout) == (1, b""), r
        assert f'no longer has a [[node]] named "{NODE}"' in r.stderr.decode(), r.stderr
        assert "configuration not reloaded, the old one stays" in r.stderr.decode()
        assert node.autoconfig(ALICE).body == before
    finally:
        node.write_config()
        reloaded = node.cli("reload")
    assert reloaded.returncode == 0, reloaded
    assert node.autoconfig(ALICE).body == before


# --------------------------------------------------------------------------------------
# Configuration errors at start

BAD_CONFIGS = {
    "bad-form": (
        lambda t: t.replace('"imap.inside.test:1143:TLS"', '"imap.inside.test"'),
        ['"imap.inside.test" is not host:port:SSL|TLS|none', "internal_connection"]),
    "unknown-encryption": (
        lambda t: t.replace('"mail.example.test:587:TLS"', '"mail.example.test:587:STARTTLS"'),
        ['unknown encryption "STARTTLS"', "external_connection"]),
    "bad-port": (
        lambda t: t.replace('"mail.example.test:995:SSL"', '"mail.example.test:0:SSL"'),
        ['"0" is not a port number', "external_connection"]),
    "disabled-protocol": (
        lambda t: t.replace("[pop3]\nenabled = true\n", "[pop3]\nenabled = false\n"),
        ["pop3.internal_connection / pop3.external_connection are set but pop3 is not "
         "enabled"]),
    "short-admin-token": (
        lambda t: t.replace(ADMIN_TOKEN, "too-short-token"),
        ["http.admin_token must be at least 32 characters"]),
    "short-session": (
        lambda t: t.replace("session_lifetime_secs = 900", "session_lifetime_secs = 59"),
        ["http.session_lifetime_secs must be at least 60"]),
    "bad-network": (
        lambda t: t.replace(f'internal_networks = ["{INSIDE}/32"]',
                            'internal_networks = ["10.0.0.0/33"]'),
        ["internal_networks"]),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_configuration_errors_stop_serve_with_the_message(tmp_path, case):
    edit, messages = BAD_CONFIGS[case]
    probe = HttpsNode(find_binary(), tmp_path, connections=CONNECTIONS)
    text = edit(probe.config_text())
    assert text != probe.config_text()
    probe.write_config(text)
    proc = subprocess.run(
        [str(probe.binary), "--config", str(probe.config), "serve"],
        cwd=tmp_path, capture_output=True, timeout=STOP_TIMEOUT, stdin=subprocess.DEVNULL)
    output = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 1, output
    for message in messages:
        assert message in output, output
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir()), (
        "serve started before checking its configuration")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", probe.ports["https"]), timeout=1).close()


# --------------------------------------------------------------------------------------
# Metrics


def scrape(node: HttpsNode):
    from prometheus_client.parser import text_string_to_metric_families

    r = node.request("GET", "/metrics")
    assert r.status == 200, r
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers["Content-Type"]
    types, samples = {}, {}
    for family in text_string_to_metric_families(r.text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return types, samples


def value(samples: dict, name: str, **labels) -> float:
    """A sample's value; a labelled counter not yet seen is 0."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for_metric(node: HttpsNode, name: str, target: float, **labels):
    deadline = time.monotonic() + 10
    while True:
        _, samples = scrape(node)
        now = value(samples, name, **labels)
        if now >= target or time.monotonic() > deadline:
            return samples, now
        time.sleep(0.05)


def sessions_settled(node: HttpsNode):
    """A scrape once no IMAP or SMTP session of an earlier test is still counted (they
    all ended; the server may take a moment to see the close)."""
    deadline = time.monotonic() + 10
    while True:
        types, samples = scrape(node)
        counts = [value(samples, "portico_sessions_open", protocol=p) for p in ("imap", "smtp")]
        if counts == [0, 0]:
            return types, samples
        assert time.monotonic() < deadline, counts
        time.sleep(0.05)


def test_metrics_only_to_their_networks_or_with_the_admin_token(node):
    # The default: this host, which on loopback is all of 127.0.0.0/8.
    assert node.request("GET", "/metrics", source=INSIDE).status == 200
    only_outside = node.config_text().replace(
        "[http]\n", f'[http]\nmetrics_networks = ["{OUTSIDE}"]\n')
    assert only_outside != node.config_text()
    try:
        node.write_config(only_outside)
        assert node.cli("reload").returncode == 0
        refused = node.request("GET", "/metrics", source=INSIDE)
        assert (refused.status, refused.text) == (
            403, "metrics are served to [http] metrics_networks, or with the admin token\n")
        assert "portico_" not in refused.text
        wrong = node.request("GET", "/metrics", source=INSIDE,
                             headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status == 403
        with_token = node.request("GET", "/metrics", source=INSIDE,
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert with_token.status == 200 and "portico_build_info" in with_token.text
        assert node.request("GET", "/metrics", source=OUTSIDE).status == 200
        # Health checks stay open to load balancers anywhere.
        assert node.request("GET", "/healthz", source=INSIDE).status == 200
        assert node.request("GET", "/readyz", source=INSIDE).status == 200
    finally:
        node.write_config()
        reloaded = node.cli("reload")
    assert reloaded.returncode == 0, reloaded
    assert node.request("GET", "/metrics", source=INSIDE).status == 200


def test_metrics_count_logins_commands_and_deliveries(node):
    types, before = sessions_settled(node)
    assert {
        "portico_sessions_open": "gauge",
        "portico_logins": "counter",
        "portico_commands": "counter",
        "portico_delivery_seconds": "histogram",
        "portico_queue_messages": "gauge",
        "portico_store_commit_size": "histogram",
        "portico_store_fdatasync": "counter",
        "portico_proxy_sessions_open": "gauge",
    }.items() <= types.items(), types

    imap = imap_login(node)
    assert imap.select("INBOX")[0] == "OK"
    assert imap.noop()[0] == "OK" and imap.noop()[0] == "OK"
    _, during = scrape(node)
    assert value(during, "portico_sessions_open", protocol="imap") == 1
    imap.logout()
    assert imap_login_fails(node, ALICE, "not-the-password")

    message = (b"From: sender@example.org\r\nTo: alice@example.com\r\n"
               b"Subject: metrics\r\n\r\ncounted\r\n")
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], local_hostname="client.example.org",
                      timeout=IO_TIMEOUT) as smtp:
        assert smtp.sendmail("sender@example.org", [ALICE], message) == {}

    deliveries = value(before, "portico_delivery_seconds_count")
    after, _ = wait_for_metric(node, "portico_delivery_seconds_count", deliveries + 1)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("portico_logins_total", protocol="imap", result="success") == 1
    assert delta("portico_logins_total", protocol="imap", result="failure") == 1
    assert delta("portico_logins_total", protocol="imap", result="throttled") == 0
    assert delta("portico_commands_total", protocol="imap", command="SELECT") == 1
    assert delta("portico_commands_total", protocol="imap", command="NOOP") == 2
    for command in ("EHLO", "MAIL", "RCPT", "DATA"):
        assert delta("portico_commands_total", protocol="smtp", command=command) == 1, command
    assert delta("portico_delivery_seconds_count") == 1
    assert delta("portico_delivery_seconds_sum") > 0
    assert delta("portico_store_commit_size_count") >= 1
    assert delta("portico_store_fdatasync_total") >= 1
    assert value(after, "portico_queue_messages") == 0
    # One node: nothing is proxied.
    assert all(v == 0 for (name, _), v in after.items()
               if name == "portico_proxy_sessions_open")
    # The sessions have ended: the gauges are back to nothing.
    sessions_settled(node)
