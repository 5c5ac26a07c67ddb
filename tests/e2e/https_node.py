"""A portico node with its HTTPS service on, for the tests of autoconfig, Autodiscover,
the settings page, the admin API and metrics (test_https.py, test_https_clients.py,
test_settings_browser.py).

One node has every listener (POP3, IMAP and SMTP, each plain and implicit TLS, and
HTTPS) on free loopback ports, `internal_networks = ["127.0.0.2/32"]` so that a client
connecting from 127.0.0.2 is "inside" and one from 127.0.0.1 "outside", and explicit
`internal_connection` / `external_connection` lists per protocol, kept here as the
`host:port:SSL|TLS|none` strings written into cluster.toml so tests compare the server's
answers with exactly what the file says.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import (
    IO_TIMEOUT,
    Server,
    free_port,
    tls_context,
    wait_for_ports,
)

INSIDE = "127.0.0.2"
OUTSIDE = "127.0.0.1"
DOMAIN = "example.com"
ADMIN_TOKEN = "test-admin-token-0123456789-abcdefghij"
NODE = "front-1"
SITE = "site-a"
CLUSTER = "https-test"
SESSION_LIFETIME_SECS = 900
LISTENERS = ("pop3", "pop3s", "imap", "imaps", "smtp", "submission", "submissions", "https")
PROTOCOLS = ("imap", "pop3", "smtp")

SOCKET_TYPE = {"SSL": "SSL", "TLS": "STARTTLS", "none": "plain"}
AUTODISCOVER_ENCRYPTION = {"SSL": ("on", "SSL"), "TLS": ("on", "TLS"), "none": ("off", "None")}

AUTODISCOVER_REQUEST_NS = (
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
)
AUTODISCOVER_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_RESPONSE_SCHEMA = (
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)


def setting(text: str) -> tuple[str, int, str]:
    """`host:port:ENC` -> (host, port, ENC) as cluster.toml means it."""
    host, port, encryption = text.rsplit(":", 2)
    assert encryption in SOCKET_TYPE, text
    return host, int(port), encryption


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


class Reply:
    """An HTTP answer: status, headers (case-insensitive `get`, `get_all`) and body."""

    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        assert self.headers.get("Content-Type", "").startswith("application/json"), (
            self.status, self.headers.get("Content-Type"), self.body[:300])
        return json.loads(self.body)

    def cookies(self) -> dict[str, str]:
        """Set-Cookie lines by cookie name (the whole line)."""
        out = {}
        for line in self.headers.get_all("Set-Cookie") or []:
            out[line.split("=", 1)[0]] = line
        return out

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:400]!r})"


class HttpsNode(Server):
    """One frontend+backend+directory node in `root`. `connections` maps a protocol to
    {"internal": [...], "external": [...]} (each a list of `host:port:ENC`), or is a
    function of the port map returning that; a protocol left out gets no lines (its
    settings are derived from the listeners). Ports are picked once: these nodes are
    started once per module."""

    def __init__(
        self,
        binary: Path,
        root: Path,
        *,
        connections=None,
        advertise_smtp: bool = True,
        admin_token: str | None = ADMIN_TOKEN,
        security: str = "",
        smtp_extra: str = "",
    ):
        # Not Server.__init__: the ports are picked once, below, and kept across starts.
        self.binary = binary
        self.env: dict[str, str] = {}
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "cluster.toml"
        self.log_path = root / "portico.log"
        self.data_dir = root / "data"
        self.starts = 0
        ports: dict[str, int] = {}
        while len(ports) < len(LISTENERS):
            port = free_port()
            if port not in ports.values():
                ports[LISTENERS[len(ports)]] = port
        self.ports = ports
        if callable(connections):
            connections = connections(ports)
        self.connections: dict[str, dict[str, list[str]]] = connections or {}
        self.advertise_smtp = advertise_smtp
        self.admin_token = admin_token
        self.security = security
        self.smtp_extra = smtp_extra
        self.proc: subprocess.Popen | None = None
        self.write_config()

    # -- configuration ------------------------------------------------------------------

    def config_text(self, connections=None, advertise_smtp=None) -> str:
        connections = self.connections if connections is None else connections
        advertise = self.advertise_smtp if advertise_smtp is None else advertise_smtp
        listen = "".join(f'{name} = "127.0.0.1:{port}"\n' for name, port in self.ports.items())

        def lines(protocol: str) -> str:
            sides = connections.get(protocol, {})
            return "".join(
                f"{side}_connection = {toml_list(sides[side])}\n"
                for side in ("internal", "external")
                if side in sides
            )

        http = "[http]\n" + (
            f'admin_token = "{self.admin_token}"\n' if self.admin_token else ""
        ) + f"session_lifetime_secs = {SESSION_LIFETIME_SECS}\n"
        return (
            f'cluster = "{CLUSTER}"\n'
            f'local_domains = ["{DOMAIN}"]\n'
            f'internal_networks = ["{INSIDE}/32"]\n\n'
            f'[[site]]\nname = "{SITE}"\n\n'
            f'[[node]]\nname = "{NODE}"\nsite = "{SITE}"\n'
            'roles = ["frontend", "backend", "directory"]\ndata_dir = "data"\n\n'
            f"[node.listen]\n{listen}\n"
            "[security]\nfailed_login_delay_ms = 10\nmax_failed_login_delay_ms = 50\n"
            f"{self.security}\n"
            f"[imap]\nenabled = true\n{lines('imap')}\n"
            f"[pop3]\nenabled = true\n{lines('pop3')}\n"
            '[smtp]\nenabled = true\nhostname = "mx.example.com"\n'
            f"advertise_client_settings = {str(advertise).lower()}\n"
            f"{self.smtp_extra}{lines('smtp')}\n"
            f"{http}"
        )

    def write_config(self, text: str | None = None) -> None:
        self.config.write_text(self.config_text() if text is None else text)

    def settings(self, protocol: str, side: str) -> list[tuple[str, int, str]]:
        """What cluster.toml says clients on `side` are told for `protocol`."""
        if protocol == "smtp" and not self.advertise_smtp:
            return []
        configured = self.connections.get(protocol, {})
        if not configured.get("internal") and not configured.get("external"):
            # Unset: the listeners, implicit TLS first.
            implicit, starttls = {"imap": ("imaps", "imap"), "pop3": ("pop3s", "pop3"),
                                  "smtp": ("submissions", "submission")}[protocol]
            return [("127.0.0.1", self.ports[implicit], "SSL"),
                    ("127.0.0.1", self.ports[starttls], "TLS")]
        return [setting(s) for s in configured[side]]

    # -- process ------------------------------------------------------------------------

    def start(self) -> "HttpsNode":
        self.proc = self.spawn()
        self.starts += 1
        wait_for_ports(self, set(self.ports.values()), "client")
        return self

    def signal(self, sig: int) -> None:
        assert self.running, "server is not running"
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.running:
            super().stop()

    # -- HTTPS --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['https']}"

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None, source: str | None = None) -> Reply:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.ports["https"], timeout=IO_TIMEOUT, context=tls_context(),
            source_address=(source, 0) if source else None,
        )
        try:
            if isinstance(body, str):
                body = body.encode("utf-8")
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

    def api(self, method: str, path: str, body=None, *, token: str | None = "good",
            raw: bytes | None = None) -> Reply:
        """An admin API call: `body` is sent as JSON (or `raw` as is); `token` "good"
        is the configured one, None sends no Authorization header, anything else is
        sent as the bearer token."""
        headers = {}
        if token == "good":
            headers["Authorization"] = f"Bearer {self.admin_token}"
        elif token is not None:
            headers["Authorization"] = token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        return self.request(method, path, body=data, headers=headers)

    def autoconfig(self, address: str, *, source: str = OUTSIDE,
                   path: str = "/.well-known/autoconfig/mail/config-v1.1.xml") -> Reply:
        from urllib.parse import quote
        return self.request("GET", f"{path}?emailaddress={quote(address)}", source=source)

    def autodiscover(self, body: bytes | str, *, source: str = OUTSIDE,
                     path: str = "/autodiscover/autodiscover.xml") -> Reply:
        return self.request("POST", path, body=body,
                            headers={"Content-Type": "text/xml; charset=utf-8"}, source=source)


def start_node(portico_bin: Path, root: Path, **options):
    """A started HttpsNode (generator for a fixture: stops it afterwards)."""
    node = HttpsNode(portico_bin, root, **options)
    try:
        node.start()
        yield node
    finally:
        node.stop()


# --------------------------------------------------------------------------------------
# Reading the answers as a client would


def autoconfig_servers(document: bytes, domain: str) -> list[tuple[str, str, str, int, str]]:
    """Checks an autoconfig document against Thunderbird's rules for clientConfig 1.1
    (readFromXML) and returns its servers in order as (element, type, hostname, port,
    socketType)."""
    root = ET.fromstring(document)
    assert root.tag == "clientConfig" and root.attrib == {"version": "1.1"}, (
        root.tag, root.attrib)
    providers = list(root)
    assert [p.tag for p in providers] == ["emailProvider"], document
    provider = providers[0]
    assert provider.attrib == {"id": domain}
    heads = [(c.tag, c.text) for c in provider if c.tag not in ("incomingServer",
                                                                  "outgoingServer")]
    assert heads == [("domain", domain), ("displayName", domain),
                     ("displayShortName", domain.split(".")[0])], heads
    servers = []
    for element in provider:
        if element.tag not in ("incomingServer", "outgoingServer"):
            continue
        assert [c.tag for c in element] == [
            "hostname", "port", "socketType", "username", "authentication"], (
            element.tag, [c.tag for c in element])
        kind = element.attrib["type"]
        assert kind in (("imap", "pop3") if element.tag == "incomingServer" else ("smtp",))
        fields = {c.tag: c.text for c in element}
        assert fields["socketType"] in ("SSL", "STARTTLS", "plain"), fields
        assert fields["username"] == "%EMAILADDRESS%"
        assert fields["authentication"] == "password-cleartext"
        assert re.fullmatch(r"[1-9]\d{0,4}", fields["port"]) and int(fields["port"]) < 65536
        assert fields["hostname"]
        servers.append((element.tag, kind, fields["hostname"], int(fields["port"]),
                        fields["socketType"]))
    # Thunderbird refuses a file without an incoming or an outgoing server; incoming
    # servers come before outgoing ones.
    tags = [s[0] for s in servers]
    assert "incomingServer" in tags and "outgoingServer" in tags, servers
    assert tags == sorted(tags), servers
    return servers


def expected_autoconfig(node: HttpsNode, side: str) -> list[tuple[str, str, str, int, str]]:
    out = []
    for protocol, element in (("imap", "incomingServer"), ("pop3", "incomingServer"),
                              ("smtp", "outgoingServer")):
        for host, port, encryption in node.settings(protocol, side):
            out.append((element, protocol, host, port, SOCKET_TYPE[encryption]))
    return out


def autodiscover_request(address: str, schema: str = OUTLOOK_RESPONSE_SCHEMA,
                         namespace: str = AUTODISCOVER_REQUEST_NS) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<Autodiscover xmlns="{namespace}">\n'
        "  <Request>\n"
        f"    <EMailAddress>{address}</EMailAddress>\n"
        f"    <AcceptableResponseSchema>{schema}</AcceptableResponseSchema>\n"
        "  </Request>\n"
        "</Autodiscover>\n"
    )
