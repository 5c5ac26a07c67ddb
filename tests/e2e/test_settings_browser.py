"""The "Settings for POP or IMAP access" page in a real browser: headless Chromium driven
by selenium signs in, reads every server name, port and encryption cell and compares
them with cluster.toml, takes the screenshot kept in docs/settings-page.png, and signs
out. What a browser would not do (forged and altered cookies, a cross-site POST without
the CSRF token, a burst of wrong passwords from one address) is sent with http.client,
each from a loopback address of its own so the per-address sign-in throttle of one
test does not reach another.
"""

from __future__ import annotations

import base64
import os
import re
import struct
import time

import pytest

from conftest import REPO, find_binary
from https_node import (
    DOMAIN,
    NODE,
    SESSION_LIFETIME_SECS,
    SITE,
    HttpsNode,
    Reply,
    start_node,
)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} is not installed (scripts/test.sh installs "
                "the chromium and chromium-driver packages)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ALICE = "alice@example.com"
ALICE_PW = "alice-Page-1"
BOB = "bob@example.com"
BOB_PW = "bob-Page-2"
SCREENSHOT = REPO / "docs" / "settings-page.png"
SESSION = "__Host-portico-session"
PRE_SESSION = "__Host-portico-pre-session"
WRONG = "The address or the password is not right."
BLOCK_AFTER = 4

CONNECTIONS = {
    "imap": {
        "internal": ["imap.inside.test:143:TLS"],
        "external": ["mail.example.test:993:SSL", "mail.example.test:143:TLS"],
    },
    "pop3": {
        "internal": ["pop.inside.test:110:none", "10.1.2.3:995:SSL"],
        "external": ["mail.example.test:995:SSL"],
    },
    "smtp": {
        "internal": ["smtp.inside.test:587:TLS"],
        "external": ["mail.example.test:465:SSL", "mail.example.test:587:TLS"],
    },
}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    for n in start_node(find_binary(), tmp_path_factory.mktemp("settings-page"),
                        connections=CONNECTIONS,
                        security=f"failed_logins_before_block = {BLOCK_AFTER}\n"):
        n.add_user(ALICE, ALICE_PW)
        n.add_user(BOB, BOB_PW)
        n.cli_ok("user", "set", BOB, "--pop3", "off")
        yield n


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    # Selenium is given both paths, so its driver manager never runs.
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = Options()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--ignore-certificate-errors", "--window-size=1000,1700",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser, node):
    """The browser with no cookies of the node's."""
    browser.get(node.base_url + "/healthz")
    browser.delete_all_cookies()
    return browser


@pytest.fixture(autouse=True)
def logs_on_failure(request):
    if "node" in request.fixturenames:
        request.node._portico_servers = [request.getfixturevalue("node")]


# --------------------------------------------------------------------------------------
# Helpers


def wait_for(browser, what, timeout=15):
    return WebDriverWait(browser, timeout).until(lambda b: what(b))


def sign_in(browser, node: HttpsNode, address: str, password: str) -> None:
    browser.get(node.base_url + "/")
    wait_for(browser, lambda b: b.find_elements(By.NAME, "password"))
    assert browser.current_url == node.base_url + "/settings"
    assert browser.find_element(By.NAME, "csrf").get_attribute("type") == "hidden"
    assert browser.get_cookie(PRE_SESSION) is not None
    browser.find_element(By.NAME, "address").send_keys(address)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "account-address")
             or b.find_elements(By.ID, "sign-in-error"))


def cell(browser, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


class WebClient:
    """A cookie-keeping client of the settings page over http.client, from `source`."""

    def __init__(self, node: HttpsNode, source: str = "127.0.0.1"):
        self.node = node
        self.source = source
        self.cookies: dict[str, str] = {}

    def _send(self, method: str, path: str, body: str | None = None,
              headers: dict | None = None) -> Reply:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        r = self.node.request(method, path, body=body, headers=headers, source=self.source)
        for name, line in r.cookies().items():
            value = line.split("=", 1)[1].split(";", 1)[0]
            if "max-age=0" in line.lower().replace(" ", "") or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return r

    def get(self, path: str = "/settings") -> Reply:
        return self._send("GET", path)

    def post(self, path: str, fields: dict[str, str]) -> Reply:
        from urllib.parse import urlencode
        return self._send("POST", path, body=urlencode(fields),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})

    def sign_in(self, address: str, password: str, csrf: str | None = "form") -> Reply:
        fields = {"address": address, "password": password}
        if csrf == "form":
            fields["csrf"] = csrf_of(self.get())
        elif csrf is not None:
            fields["csrf"] = csrf
        return self.post("/settings/sign-in", fields)


def csrf_of(reply: Reply) -> str:
    m = re.search(r'<input type="hidden" name="csrf" value="([^"]+)"', reply.text)
    assert m, reply.text[:2000]
    return m.group(1)


def is_sign_in_form(reply: Reply) -> bool:
    return 'name="password"' in reply.text and 'id="account-address"' not in reply.text


def is_settings_of(reply: Reply, address: str) -> bool:
    return (reply.status == 200
            and f'<strong id="account-address">{address}</strong>' in reply.text
            and 'name="password"' not in reply.text)


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# --------------------------------------------------------------------------------------
# In the browser


def test_sign_in_shows_what_cluster_toml_says(page, node, tmp_path):
    sign_in(page, node, ALICE, ALICE_PW)
    assert page.current_url == node.base_url + "/settings"
    assert cell(page, "account-address") == ALICE
    for protocol in ("pop3", "imap", "smtp"):
        for side in ("internal", "external"):
            want = node.settings(protocol, side)
            assert want, (protocol, side)
            for i, (host, port, encryption) in enumerate(want):
                prefix = f"{protocol}-{side}-{i}"
                assert (cell(page, f"{prefix}-host"), cell(page, f"{prefix}-port"),
                        cell(page, f"{prefix}-encryption")) == (host, str(port), encryption)
            assert not page.find_elements(By.ID, f"{protocol}-{side}-{len(want)}-host")
            assert not page.find_elements(By.ID, f"{protocol}-{side}-none")
    for protocol in ("pop3", "imap", "smtp"):
        enabled = page.find_element(By.ID, f"{protocol}-enabled")
        assert (enabled.get_attribute("data-value"), enabled.text) == ("yes", "Yes"), protocol
    assert (cell(page, "home-node"), cell(page, "home-site")) == (NODE, SITE)

    session = page.get_cookie(SESSION)
    assert session is not None
    assert (session["secure"], session["httpOnly"], session["sameSite"], session["path"]) == (
        True, True, "Strict", "/")
    assert abs(session["expiry"] - (time.time() + SESSION_LIFETIME_SECS)) < 60, session
    assert page.get_cookie(PRE_SESSION) is None

    # The whole page, not only the window: Chromium's own full-page capture.
    size = page.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = base64.b64decode(page.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                 "scale": 1},
    })["data"])
    assert shot.startswith(b"\x89PNG\r\n\x1a\n") and len(shot) > 10_000
    (tmp_path / "settings-page.png").write_bytes(shot)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(shot)


def test_an_account_without_pop3_sees_no(page, node):
    sign_in(page, node, BOB, BOB_PW)
    assert cell(page, "account-address") == BOB
    values = {p: page.find_element(By.ID, f"{p}-enabled").get_attribute("data-value")
              for p in ("pop3", "imap", "smtp")}
    assert values == {"pop3": "no", "imap": "yes", "smtp": "yes"}
    caption = page.find_element(By.CSS_SELECTOR, "#pop3-settings caption").text
    assert caption == "POP3 settings (your account cannot use POP3)"
    # The settings are shown all the same.
    assert cell(page, "pop3-external-0-host") == "mail.example.test"


def test_sign_out_revokes_the_session(page, node):
    sign_in(page, node, ALICE, ALICE_PW)
    cookie = page.get_cookie(SESSION)["value"]
    copied = WebClient(node)
    copied.cookies[SESSION] = cookie
    assert is_settings_of(copied.get(), ALICE)

    page.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
    wait_for(page, lambda b: b.find_elements(By.NAME, "password"))
    assert page.current_url == node.base_url + "/settings"
    assert not page.find_elements(By.ID, "account-address")
    assert page.get_cookie(SESSION) is None

    # The old cookie, kept elsewhere, no longer opens the page.
    copied.cookies = {SESSION: cookie}
    r = copied.get()
    assert r.status == 200 and is_sign_in_form(r), r
    # And the browser signs in again as before.
    sign_in(page, node, ALICE, ALICE_PW)
    assert cell(page, "account-address") == ALICE


def test_wrong_password_shows_the_error(page, node):
    sign_in(page, node, ALICE, "not-the-password")
    assert cell(page, "sign-in-error") == WRONG
    assert page.find_element(By.NAME, "address").get_attribute("value") == ALICE
    assert page.get_cookie(SESSION) is None
    assert not page.find_elements(By.ID, "account-address")


# --------------------------------------------------------------------------------------
# Without the browser


def test_pages_carry_the_security_headers(node):
    client = WebClient(node, source="127.0.0.7")
    r = client.get("/")
    assert (r.status, r.headers["Location"]) == (303, "/settings")
    form = client.get()
    signed = client.sign_in(ALICE, ALICE_PW)
    assert signed.status == 303
    page = client.get()
    assert is_settings_of(page, ALICE)
    for reply in (form, page):
        csp = reply.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, csp
        assert "script-src" not in csp and "'unsafe-inline'" not in csp, csp
        assert reply.headers["Cache-Control"] == "no-store"
        assert reply.headers["X-Frame-Options"] == "DENY"
        assert reply.headers["Content-Type"] == "text/html; charset=utf-8"


def test_session_cookie_attributes(node):
    client = WebClient(node, source="127.0.0.7")
    form = client.get()
    pre = form.cookies()[PRE_SESSION]
    parts = {p.strip().lower() for p in pre.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= parts, pre
    r = client.sign_in(ALICE, ALICE_PW)
    assert (r.status, r.headers["Location"]) == (303, "/settings"), r
    line = r.cookies()[SESSION]
    parts = {p.strip().lower() for p in line.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/",
            f"max-age={SESSION_LIFETIME_SECS}"} <= parts, line
    assert "domain=" not in line.lower()  # a __Host- cookie has none
    assert PRE_SESSION not in client.cookies


def test_forged_and_altered_cookies_are_refused(node):
    client = WebClient(node, source="127.0.0.8")
    assert client.sign_in(ALICE, ALICE_PW).status == 303
    genuine = client.cookies[SESSION]
    assert is_settings_of(client.get(), ALICE)
    payload, tag = genuine.split(".")
    raw = b64d(payload)
    # Version byte, 16-byte session id, expiry (u64, big-endian), address.
    assert raw[0] == 1 and raw[25:] == ALICE.encode()
    expiry = struct.unpack(">Q", raw[17:25])[0]
    assert abs(expiry - (time.time() + SESSION_LIFETIME_SECS)) < 60

    def with_expiry(seconds: int) -> str:
        return b64e(raw[:17] + struct.pack(">Q", seconds) + raw[25:]) + "." + tag

    forged = {
        "random": b64e(os.urandom(40)) + "." + b64e(os.urandom(32)),
        "expired": with_expiry(int(time.time()) - 60),
        "extended": with_expiry(int(time.time()) + 10 * 365 * 86400),
        "other-address": b64e(raw[:25] + BOB.encode()) + "." + tag,
        "truncated-tag": payload + "." + tag[:-4],
        "no-tag": payload,
        "tag-of-nothing": "." + tag,
        "garbage": "%%%not-base64%%%",
    }
    for name, value in forged.items():
        probe = WebClient(node, source="127.0.0.8")
        probe.cookies[SESSION] = value
        r = probe.get()
        assert r.status == 200 and is_sign_in_form(r), (name, r)
        assert ALICE not in r.text and BOB not in r.text, name
    # The genuine one still works.
    probe = WebClient(node, source="127.0.0.8")
    probe.cookies[SESSION] = genuine
    assert is_settings_of(probe.get(), ALICE)


def test_sign_in_without_the_forms_csrf_token_is_refused(node):
    victim = WebClient(node, source="127.0.0.9")
    other = WebClient(node, source="127.0.0.9")
    csrf = csrf_of(victim.get())
    foreign_csrf = csrf_of(other.get())
    outcomes = {}
    for name, how in {
        "missing": dict(csrf=None),
        "empty": dict(csrf=""),
        "forged": dict(csrf=b64e(os.urandom(32))),
        "another-browsers": dict(csrf=foreign_csrf),
    }.items():
        r = victim.sign_in(ALICE, ALICE_PW, **how)
        outcomes[name] = (r.status, SESSION in r.cookies())
    # A form posted from another site comes without the SameSite=Strict cookies.
    cross = WebClient(node, source="127.0.0.9")
    r = cross.post("/settings/sign-in", {"address": ALICE, "password": ALICE_PW, "csrf": csrf})
    outcomes["no-pre-session-cookie"] = (r.status, SESSION in r.cookies())
    assert outcomes == dict.fromkeys(outcomes, (403, False)), outcomes
    assert SESSION not in victim.cookies

    # The same browser with its own token signs in.
    r = victim.sign_in(ALICE, ALICE_PW, csrf=csrf)
    assert r.status == 303 and SESSION in victim.cookies, r
    assert is_settings_of(victim.get(), ALICE)


def test_sign_out_without_the_pages_csrf_token_is_refused(node):
    victim = WebClient(node, source="127.0.0.9")
    sign_in_csrf = csrf_of(victim.get())
    assert victim.sign_in(ALICE, ALICE_PW, csrf=sign_in_csrf).status == 303
    page = victim.get()
    assert is_settings_of(page, ALICE)
    session_csrf = csrf_of(page)
    outcomes = {}
    for name, fields in {
        "missing": {},
        "empty": {"csrf": ""},
        "forged": {"csrf": b64e(os.urandom(32))},
        "sign-in-forms": {"csrf": sign_in_csrf},
    }.items():
        r = victim.post("/settings/sign-out", fields)
        outcomes[name] = (r.status, is_settings_of(victim.get(), ALICE))
    assert outcomes == dict.fromkeys(outcomes, (403, True)), outcomes
    r = victim.post("/settings/sign-out", {"csrf": session_csrf})
    assert (r.status, r.headers["Location"]) == (303, "/settings")
    assert is_sign_in_form(victim.get())


def test_refused_names_are_answered_like_wrong_passwords(node):
    client = WebClient(node, source="127.0.0.10")
    for local in ("anonymous", "guest", "administrator"):
        address = f"{local}@{DOMAIN}"
        password = f"{local}-Pw-1"
        node.add_user(address, password)
        r = client.sign_in(address, password)
        assert r.status == 401, (address, r)
        assert WRONG in r.text and is_sign_in_form(r)
        assert SESSION not in client.cookies


def test_too_many_failures_from_an_address_are_429(node):
    user = f"throttled@{DOMAIN}"
    node.add_user(user, "throttled-Pw-1")
    attacker = WebClient(node, source="127.0.0.11")
    statuses = [attacker.sign_in(user, f"guess-{i}").status for i in range(BLOCK_AFTER)]
    assert statuses == [401] * BLOCK_AFTER
    r = attacker.sign_in(user, "guess-last")
    assert r.status == 429, r
    assert "Too many failed sign-ins from your address. Try again later." in r.text
    # Even the right password, from there.
    r = attacker.sign_in(user, "throttled-Pw-1")
    assert r.status == 429 and SESSION not in attacker.cookies, r
    # Another address is not affected.
    elsewhere = WebClient(node, source="127.0.0.12")
    assert elsewhere.sign_in(user, "throttled-Pw-1").status == 303
    assert is_settings_of(elsewhere.get(), user)
