"""Storage limits end to end: `portico user set --quota`, IMAP QUOTA (RFC 9208) read
with imaplib, and every way mail comes in refused past the limit: APPEND and COPY
(`NO [OVERQUOTA]`), SMTP submission (`452 4.2.2`, at RCPT and after DATA, for the full
recipient only), `portico deliver`; and mail let in again once the limit is raised or
room is made by an EXPUNGE, a queued copy included.

Every expectation is computed here from what was sent, never taken from the server."""

from __future__ import annotations

import imaplib
import re
import smtplib
import time

import pytest

from conftest import Literal, RawImap, SmtpServer

ALICE = "alice@example.com"
ALICE_PW = "alice-Quota-1"
BOB = "bob@example.com"
BOB_PW = "bob-Quota-2"
CAROL = "carol@example.com"
CAROL_PW = "carol-Quota-3"

OVERQUOTA = re.compile(rb"^\[OVERQUOTA\] ")
FULL = (452, b"4.2.2 Mailbox full")
DEADLINE = 15.0


def message(n: int, size: int) -> bytes:
    """A message of exactly `size` octets (CRLF line ends: stored as sent)."""
    head = f"From: {BOB}\r\nTo: {ALICE}\r\nSubject: filler {n}\r\n\r\n".encode()
    body_len = size - len(head) - 2
    assert body_len > 0
    return head + b"x" * body_len + b"\r\n"


def used(server: SmtpServer, address: str) -> int:
    return int(server.users()[address]["used"])


def quota_root(m: imaplib.IMAP4, mailbox: str = "INBOX") -> tuple[list, list]:
    """GETQUOTAROOT's QUOTAROOT and QUOTA data, as imaplib returns them."""
    typ, (roots, quotas) = m.getquotaroot(mailbox)
    assert typ == "OK", (typ, roots, quotas)
    return roots, quotas


def storage(used_octets: int, limit_octets: int) -> bytes:
    """RFC 9208 STORAGE in KiB: usage rounded up, limit down."""
    return b'"" (STORAGE %d %d)' % (-(-used_octets // 1024), limit_octets // 1024)


def inbox_count(m: imaplib.IMAP4) -> int:
    typ, data = m.status("INBOX", "(MESSAGES)")
    assert typ == "OK", data
    return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))


def wait_until(what: str, done) -> None:
    deadline = time.monotonic() + DEADLINE
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def server(make_smtp_server) -> SmtpServer:
    server = make_smtp_server()
    for address, password in ((ALICE, ALICE_PW), (BOB, BOB_PW), (CAROL, CAROL_PW)):
        server.add_user(address, password)
    return server


def test_quota_is_set_listed_and_checked(server):
    assert server.cli_ok("user", "set", ALICE, "--quota", "64K") == f"updated {ALICE}\n"
    assert server.users()[ALICE]["quota"] == "64K"
    assert server.users()[ALICE]["used"] == "0"
    # Other settings change alone, the limit stays; and the other way round.
    server.cli_ok("user", "set", ALICE, "--pop3", "off")
    server.cli_ok("user", "set", ALICE, "--quota", "2g", "--imap", "off")
    fields = server.users()[ALICE]
    assert (fields["quota"], fields["pop3"], fields["imap"]) == ("2G", "off", "off")
    server.cli_ok("user", "set", ALICE, "--quota", "1536k", "--imap", "on")
    assert server.users()[ALICE]["quota"] == "1536K"
    server.cli_ok("user", "set", ALICE, "--quota", "12345")
    assert server.users()[ALICE]["quota"] == "12345"
    server.cli_ok("user", "set", ALICE, "--quota", "unlimited")
    assert server.users()[ALICE]["quota"] == "none"
    for bad in ("5X", "1.5G", "5MB", ""):
        r = server.cli("user", "set", ALICE, "--quota", bad)
        assert r.returncode == 2 and b"is not a size" in r.stderr, (bad, r)
    r = server.cli("user", "set", "nobody@example.com", "--quota", "1M")
    assert (r.returncode, r.stderr) == (1, b"portico: no such user: nobody@example.com\n")


def test_mail_stops_at_the_limit_and_comes_in_again(server):
    limit = 20 * 1024
    server.cli_ok("user", "set", ALICE, "--quota", "20K")
    m = server.imap_login(ALICE, ALICE_PW)
    typ, caps = m.capability()
    assert {b"QUOTA", b"QUOTA=RES-STORAGE"} <= set(caps[0].split())
    assert b"QUOTASET" not in caps[0].split()
    assert quota_root(m) == ([b'"INBOX" ""'], [storage(0, limit)])
    typ, data = m.getquota('""')
    assert (typ, data) == ("OK", [storage(0, limit)])

    # APPEND until the limit refuses one; what went in is all that is counted.
    appended = 0
    while True:
        typ, data = m.append("INBOX", None, None, message(appended, 3000))
        if typ == "NO":
            assert OVERQUOTA.match(data[0]), data
            break
        assert typ == "OK", data
        appended += 1
        assert appended < 10
    assert appended == limit // 3000
    total = appended * 3000
    assert used(server, ALICE) == total
    assert quota_root(m) == ([b'"INBOX" ""'], [storage(total, limit)])
    # A COPY would pass it too: refused, nothing copied.
    m.select("INBOX")
    typ, data = m.copy("1", "Archive")
    assert typ == "NO" and OVERQUOTA.match(data[0]), data
    assert used(server, ALICE) == total
    # SETQUOTA is the administrator's.
    typ, data = m._simple_command("SETQUOTA", '""', "(STORAGE 99999)")
    assert (typ, data) == ("NO", [b"[NOPERM] Storage limits are set by the administrator"])

    # SMTP: smtplib declares SIZE; a recipient it does not fit is refused at RCPT with
    # 452 4.2.2, the other one gets the message.
    big = message(100, limit - total + 1)
    s = server.smtp_login(BOB, BOB_PW)
    refused = s.sendmail(BOB, [ALICE, CAROL], big)
    assert refused == {ALICE: FULL}
    with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
        s.sendmail(BOB, [ALICE], big)
    assert raised.value.recipients == {ALICE: FULL}
    # Without SIZE, RCPT takes it (alice is below her limit); after DATA a message no
    # recipient can take is refused, nothing kept.
    assert s.mail(BOB) == (250, b"2.1.0 Sender OK")
    assert s.rcpt(ALICE) == (250, b"2.1.5 Recipient OK")
    assert s.data(big) == FULL
    assert used(server, ALICE) == total
    # With a recipient that can take it, it is accepted; alice's copy waits in the queue.
    assert s.mail(BOB) == (250, b"2.1.0 Sender OK")
    assert s.rcpt(ALICE) == (250, b"2.1.5 Recipient OK")
    assert s.rcpt(CAROL) == (250, b"2.1.5 Recipient OK")
    code, _ = s.data(big)
    assert code == 250
    s.quit()
    c = server.imap_login(CAROL, CAROL_PW)
    assert inbox_count(c) == 2
    c.logout()
    wait_until(
        "alice's copy retried and refused",
        lambda: any(
            r["to"] == ALICE and r["last_error"] == "452 4.2.2 Mailbox full"
            for entry in server.queue()
            for r in entry["recipients"]
        ),
    )
    assert inbox_count(m) == appended
    # `portico deliver` is refused too.
    r = server.cli("deliver", ALICE, input=message(101, 5000))
    assert (r.returncode, r.stderr.decode()) == (
        1,
        f"portico: the mailbox of {ALICE} is full: the message would pass its storage "
        "limit\n",
    )

    # A higher limit lets mail in again: the queued copy first, then APPENDs.
    server.cli_ok("user", "set", ALICE, "--quota", "64K")
    wait_until("the queued copy delivered", lambda: server.queue() == [])
    assert inbox_count(m) == appended + 1
    typ, data = m.append("INBOX", None, None, message(102, 3000))
    assert typ == "OK", data
    queued_size = used(server, ALICE) - total - 3000
    assert queued_size > len(big)  # with its Return-Path and Received fields

    # An EXPUNGE makes room: at the limit again, an APPEND is refused until the \Deleted
    # messages (counted until then, shown by STATUS DELETED-STORAGE) are expunged.
    now = used(server, ALICE)
    server.cli_ok("user", "set", ALICE, "--quota", str(now))
    typ, data = m.append("INBOX", None, None, message(103, 1000))
    assert typ == "NO" and OVERQUOTA.match(data[0]), data
    m.select("INBOX")
    m.store("1:2", "+FLAGS", "(\\Deleted)")
    assert used(server, ALICE) == now
    typ, data = m.status("INBOX", "(DELETED DELETED-STORAGE)")
    assert data == [b'"INBOX" (DELETED 2 DELETED-STORAGE 6000)'], data
    typ, data = m.append("INBOX", None, None, message(103, 1000))
    assert typ == "NO", data
    m.expunge()
    assert used(server, ALICE) == now - 6000
    typ, data = m.append("INBOX", None, None, message(103, 1000))
    assert typ == "OK", data
    # A MOVE adds nothing: it goes even at the limit.
    server.cli_ok("user", "set", ALICE, "--quota", str(used(server, ALICE)))
    typ, data = m.uid("MOVE", "1:*", "Archive")
    assert typ == "OK", data
    assert quota_root(m, "Archive")[0] == [b'"Archive" ""']
    # No limit: the root stays, with no QUOTA response.
    server.cli_ok("user", "set", ALICE, "--quota", "none")
    assert quota_root(m) == ([b'"INBOX" ""'], [None])
    m.logout()


def test_a_multiappend_past_the_limit_stores_none_of_it(server):
    """MULTIAPPEND (RFC 3502) is all or none against the limit too: three messages
    that fit one by one but not together are refused whole with NO [OVERQUOTA]; the
    same three within the limit are stored together."""
    server.cli_ok("user", "set", ALICE, "--quota", "8K")
    r = RawImap(server, implicit=True)
    assert re.match(rb"T\d+ OK", r.login(ALICE, ALICE_PW))
    parts = [message(n, 3000) for n in range(3)]
    untagged, tagged = r.cmd(
        "APPEND INBOX ", Literal(parts[0]), " ", Literal(parts[1]), " ", Literal(parts[2])
    )
    assert OVERQUOTA.match(tagged.split(b" NO ", 1)[1]), tagged
    assert used(server, ALICE) == 0
    server.cli_ok("user", "set", ALICE, "--quota", "10K")
    untagged, tagged = r.cmd(
        "APPEND INBOX ", Literal(parts[0]), " ", Literal(parts[1]), " ", Literal(parts[2])
    )
    assert re.search(rb" OK \[APPENDUID \d+ 1:3\] ", tagged), tagged
    assert used(server, ALICE) == 9000
    r.close()
