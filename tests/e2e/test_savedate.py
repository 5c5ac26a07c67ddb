"""SAVEDATE (RFC 8514) against the real binary, with Python's imaplib: the save date is
the server's clock when a message entered its folder (APPEND, delivery, COPY, MOVE),
whatever INTERNALDATE the client gave; a flag change keeps it; the SAVED* search keys
compare it; it survives a restart; and messages stored by the previous release, whose
save date is unknown, answer SAVEDATE NIL and are searched by their internal date
(RFC 8514 §4.3).

"Later" is made without sleeping blindly: the test waits until the clock's second has
moved past a save date it read (at most a second), so the next save is later.
"""

from __future__ import annotations

import imaplib
import re
import time
from datetime import datetime

import pytest

from test_migration import ALICE as OLD_ALICE
from test_migration import ALICE_PW as OLD_ALICE_PW
from test_migration import unpack_fixture

ALICE = "alice@example.com"
ALICE_PW = "alice-Save-1"

OLD_DATE = '"01-Jan-2015 18:50:53 +0100"'
OLD_DAY = "01-Jan-2015"
# The date-time of an IMAP FETCH response (RFC 9051 date-time).
DATE_TIME = "%d-%b-%Y %H:%M:%S %z"
SAVEDATE = re.compile(rb'SAVEDATE (NIL|"([^"]+)")')


def login(server) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(ALICE, ALICE_PW)
    return client


def save_dates(client: imaplib.IMAP4, uids: str) -> dict[int, datetime | None]:
    """{UID: save date, None for NIL} of the selected folder's messages `uids`."""
    typ, data = client.uid("FETCH", uids, "(UID SAVEDATE)")
    assert typ == "OK", data
    dates = {}
    for line in data:
        uid = int(re.search(rb"UID (\d+)", line).group(1))
        value = SAVEDATE.search(line)
        assert value, line
        dates[uid] = (
            None if value.group(1) == b"NIL"
            else datetime.strptime(value.group(2).decode(), DATE_TIME)
        )
    return dates


def uid_search(client: imaplib.IMAP4, *criteria: str) -> list[int]:
    typ, data = client.uid("SEARCH", *criteria)
    assert typ == "OK", data
    return [int(n) for n in data[0].split()]


def day(when: datetime) -> str:
    """`when`'s day as SEARCH writes a date, in the zone it is given in."""
    return when.strftime("%d-%b-%Y")


def wait_past(when: datetime) -> None:
    """Returns once the clock's whole second is past `when`'s (at most about 1 s)."""
    deadline = time.monotonic() + 5
    while int(time.time()) <= int(when.timestamp()):
        assert time.monotonic() < deadline, "the clock does not move"
        time.sleep(0.05)


def in_run(when: datetime, started: float) -> None:
    """`when` is the server's clock during the test, shown in UTC."""
    assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0, when
    assert int(started) <= when.timestamp() <= time.time(), (when, started)


def test_save_dates_follow_each_save_and_survive_a_restart(make_imap_server):
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    started = time.time()
    client = login(server)
    assert "SAVEDATE" in client.capabilities
    # An APPEND with an INTERNALDATE long ago, and a delivery.
    assert client.append("INBOX", r"(\Seen)", OLD_DATE, b"Subject: old\r\n\r\nold\r\n")[0] == "OK"
    delivered = server.deliver(ALICE, b"Subject: new\r\n\r\nnew\r\n")
    assert delivered == 2
    client.select("INBOX")
    typ, data = client.uid("FETCH", "1", "(INTERNALDATE)")
    assert data == [b'1 (UID 1 INTERNALDATE "01-Jan-2015 18:50:53 +0100")'], data
    saved = save_dates(client, "1:*")
    assert set(saved) == {1, 2}
    for when in saved.values():
        in_run(when, started)
    appended = saved[1]

    # A flag change a second later keeps the save date.
    wait_past(appended)
    assert client.uid("STORE", "1", "+FLAGS", r"(\Flagged)")[0] == "OK"
    assert save_dates(client, "1")[1] == appended

    # A COPY saves the copy now, later than the original; the original keeps its date.
    assert client.uid("COPY", "1", "Archive")[0] == "OK"
    assert save_dates(client, "1")[1] == appended
    client.select("Archive")
    copied = save_dates(client, "1")[1]
    in_run(copied, started)
    assert copied > appended, (copied, appended)
    typ, data = client.uid("FETCH", "1", "(FLAGS INTERNALDATE)")
    assert b'INTERNALDATE "01-Jan-2015 18:50:53 +0100"' in data[0], data

    # A MOVE saves again, later still.
    wait_past(copied)
    typ, data = client.uid("MOVE", "1", "Drafts")
    assert typ == "OK", data
    client.select("Drafts")
    moved = save_dates(client, "1")[1]
    in_run(moved, started)
    assert moved > copied, (moved, copied)

    # SEARCH on the save date, not on the internal date (RFC 8514 §4.3).
    client.select("INBOX")
    today = day(appended)
    assert uid_search(client, "SAVEDON", today) == [1, 2]
    assert uid_search(client, "SAVEDSINCE", today) == [1, 2]
    assert uid_search(client, "SAVEDBEFORE", today) == []
    assert uid_search(client, "SAVEDON", OLD_DAY) == []
    assert uid_search(client, "ON", OLD_DAY) == [1]
    assert uid_search(client, "SAVEDSINCE", OLD_DAY, "UNSEEN") == [2]
    assert uid_search(client, "SAVEDATESUPPORTED") == [1, 2]
    assert uid_search(client, "NOT", "SAVEDATESUPPORTED") == []
    # A malformed date is the client's error (BAD), and the session goes on.
    with pytest.raises(imaplib.IMAP4.error, match="BAD.*Invalid date"):
        client.uid("SEARCH", "SAVEDON", "30-Feb-2026")
    assert uid_search(client, "SAVEDON", today) == [1, 2]
    client.logout()

    server.restart()
    client = login(server)
    client.select("INBOX")
    assert save_dates(client, "1:*") == saved
    assert uid_search(client, "SAVEDON", today) == [1, 2]
    client.select("Drafts")
    assert save_dates(client, "1") == {1: moved}
    assert uid_search(client, "SAVEDSINCE", day(moved)) == [1]
    client.logout()


def test_messages_of_the_previous_release_have_no_save_date(make_imap_server):
    """The fixture's messages were stored before save dates were kept: SAVEDATE NIL
    (RFC 8514 §4.2), searched by their internal date instead (§4.3), still NIL after a
    flag change; a copy of one is saved now."""
    server = make_imap_server(login="plaintext", start=False)
    unpack_fixture(server)
    server.start()
    started = time.time()
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(OLD_ALICE, OLD_ALICE_PW)
    client.select("INBOX")
    assert save_dates(client, "1:*") == {1: None, 2: None}
    typ, data = client.uid("FETCH", "1:*", "(INTERNALDATE)")
    internal = [
        datetime.strptime(re.search(rb'INTERNALDATE "([^"]+)"', line).group(1).decode(), DATE_TIME)
        for line in data
    ]
    first = day(internal[0])
    assert uid_search(client, "SAVEDON", first) == uid_search(client, "ON", first)
    assert uid_search(client, "SAVEDON", first) != []
    assert uid_search(client, "SAVEDBEFORE", first) == uid_search(client, "BEFORE", first)
    assert uid_search(client, "SAVEDSINCE", first) == uid_search(client, "SINCE", first)
    assert uid_search(client, "SAVEDATESUPPORTED") == [1, 2]
    assert client.uid("STORE", "1", "+FLAGS", r"(\Flagged)")[0] == "OK"
    assert save_dates(client, "1") == {1: None}
    assert client.create("Copies")[0] == "OK"
    assert client.uid("COPY", "2", "Copies")[0] == "OK"
    client.select("Copies")
    copy = save_dates(client, "1")[1]
    in_run(copy, started)
    client.logout()
