"""IMAP behaviours an independent conformance suite checks, against the real binary over
raw sockets: MOVE into the selected folder itself (RFC 6851), mailbox names that are not
modified UTF-7 (NO, never BAD), keywords announced before first use (RFC 9051 §7.3.5),
HIGHESTMODSEQ when CONDSTORE is turned on by a command (RFC 7162 §3.1), and address
searches that look through RFC 5322 comments."""

from __future__ import annotations

import re

import pytest

from conftest import Literal
from test_imap_consistency import ALICE, ALICE_PW, session


def test_a_move_into_the_selected_folder_itself(make_imap_server):
    """RFC 6851: `MOVE 1 INBOX` with INBOX selected answers OK with COPYUID; the old
    message is expunged and the copy is there, with a new UID and the same bytes; a
    second session sees the expunge and the new message."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    message = b"Subject: twice\r\n\r\nsame bytes\r\n"
    a = session(server)
    a.ok("APPEND INBOX (\\Flagged) ", Literal(message))
    a.ok("APPEND INBOX ", Literal(b"Subject: other\r\n\r\nother\r\n"))
    untagged = a.ok("SELECT INBOX")
    validity = next(re.search(rb"UIDVALIDITY (\d+)", line).group(1)
                    for line in untagged if b"UIDVALIDITY" in line)
    b = session(server, "INBOX")
    untagged, tagged = a.cmd("MOVE 1 INBOX")
    assert tagged.endswith(b" OK MOVE completed"), tagged
    assert untagged[:2] == [
        b"* OK [COPYUID " + validity + b" 1 3] Moved",
        b"* 1 EXPUNGE",
    ], untagged
    # The copy is announced with the MOVE's response or at the next command.
    untagged += a.ok("NOOP")
    assert untagged[2:] == [b"* 2 EXISTS", b"* 2 RECENT"], untagged
    untagged = a.ok("UID FETCH 1:* (FLAGS BODY.PEEK[])")
    assert untagged == [
        b"* 1 FETCH (UID 2 FLAGS (\\Recent) BODY[] {25}\r\nSubject: other\r\n\r\nother\r\n)",
        b"* 2 FETCH (UID 3 FLAGS (\\Flagged \\Recent) BODY[] {30}\r\n"
        b"Subject: twice\r\n\r\nsame bytes\r\n)",
    ], untagged
    untagged = b.ok("NOOP")
    assert untagged[:2] == [b"* 1 EXPUNGE", b"* 2 EXISTS"], untagged
    a.close()
    b.close()


def test_names_that_are_not_modified_utf7_are_no_not_bad(make_imap_server):
    """A name with a bare `&` names no mailbox: SELECT, EXAMINE, STATUS, DELETE, APPEND
    answer NO [NONEXISTENT], CREATE NO [CANNOT], LIST and LSUB match nothing — never BAD,
    and the session goes on."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    a = session(server)
    why = b"Mailbox name is not valid modified UTF-7"
    for command, code in (
        ('SELECT "Tea & Co"', b"[NONEXISTENT]"),
        ('EXAMINE "x&y"', b"[NONEXISTENT]"),
        ('STATUS "x&y" (MESSAGES)', b"[NONEXISTENT]"),
        ('DELETE "x&y"', b"[NONEXISTENT]"),
        ('CREATE "x&y"', b"[CANNOT]"),
    ):
        untagged, tagged = a.cmd(command)
        assert (untagged, tagged.split(b" ", 1)[1]) == ([], b"NO " + code + b" " + why), command
    assert a.cmd('LIST "" "Tea & *"')[0] == []
    assert a.cmd('LSUB "" "x&y*"')[0] == []
    untagged, tagged = a.cmd('APPEND "x&y" ', Literal(b"Subject: x\r\n\r\nx\r\n"))
    assert tagged.split(b" ", 1)[1] == b"NO [NONEXISTENT] " + why, tagged
    a.ok("NOOP")
    a.close()


def test_a_new_keyword_is_announced_before_any_response_shows_it(make_imap_server):
    """Session B sets $Label5 on a message; session A, with the folder selected, gets
    FLAGS and PERMANENTFLAGS listing it before the FETCH that shows it; a new SELECT
    lists it at once."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    a = session(server)
    a.ok("APPEND INBOX ", Literal(b"Subject: k\r\n\r\nk\r\n"))
    a.ok("SELECT INBOX")
    b = session(server, "INBOX")
    b.ok("STORE 1 +FLAGS.SILENT ($Label5)")
    system = "\\Answered \\Flagged \\Deleted \\Seen \\Draft"
    assert a.ok("NOOP") == [
        f"* FLAGS ({system} $Label5)".encode(),
        f"* OK [PERMANENTFLAGS ({system} $Label5 \\*)] Flags permitted".encode(),
        b"* 1 FETCH (UID 1 FLAGS ($Label5 \\Recent))",
    ]
    assert a.ok("FETCH 1 (FLAGS)") == [b"* 1 FETCH (FLAGS ($Label5 \\Recent))"]
    c = session(server)
    assert f"* FLAGS ({system} $Label5)".encode() in c.ok("EXAMINE INBOX")
    for client in (a, b, c):
        client.close()


def test_condstore_turned_on_by_fetch_tells_highestmodseq(make_imap_server):
    """The first FETCH with MODSEQ in a session that never enabled CONDSTORE answers
    `* OK [HIGHESTMODSEQ n]` first, n being the folder's newest change; the next FETCH
    does not repeat it."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    a = session(server)
    for n in range(2):
        a.ok("APPEND INBOX ", Literal(b"Subject: m\r\n\r\nm\r\n"))
    a.ok("SELECT INBOX")
    a.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
    untagged = a.ok("FETCH 1:* (MODSEQ)")
    modseqs = [int(m) for line in untagged[1:] for m in re.findall(rb"MODSEQ \((\d+)\)", line)]
    assert untagged[0] == f"* OK [HIGHESTMODSEQ {max(modseqs)}] Highest".encode(), untagged
    assert len(modseqs) == 2
    assert not any(b"HIGHESTMODSEQ" in line for line in a.ok("FETCH 1 (MODSEQ)"))
    a.close()


def test_address_searches_see_through_comments(make_imap_server):
    """`From: <user-from (comment)@ (comment) domain.org>` is found by SEARCH FROM
    user-from@domain.org (and not by another domain); the same for TO."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    a = session(server)
    a.ok("APPEND INBOX ", Literal(
        b"From: <user-from (comment)@ (comment) domain.org>\r\n"
        b"To: Ann (work) <ann (x) @ example . org>\r\nSubject: c\r\n\r\nc\r\n"))
    a.ok("APPEND INBOX ", Literal(b"From: other@domain.org\r\nSubject: d\r\n\r\nd\r\n"))
    a.ok("SELECT INBOX")
    assert a.ok("SEARCH FROM user-from@domain.org") == [b"* SEARCH 1"]
    assert a.ok("SEARCH FROM user-from@other.org") == [b"* SEARCH"]
    assert a.ok("SEARCH TO ann@example.org") == [b"* SEARCH 1"]
    assert a.ok("SEARCH FROM domain.org") == [b"* SEARCH 1 2"]
    a.close()


def test_a_binary_part_appended_as_literal8_is_kept_byte_exact(make_imap_server):
    """RFC 3516: a message appended with `~{n}` whose part is Content-Transfer-Encoding
    binary, with NUL, CR, LF and 8-bit bytes, is stored exactly (no CR added before its
    LF); BINARY.SIZE[1] is its 7 bytes, BINARY[1] and BODY[1] return them as literal8,
    and BODY[] gives back the very bytes appended."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    content = b"\x00\x01\n\xff\r\x80A"
    message = (
        b"MIME-Version: 1.0\r\nSubject: binary\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + content + b"\r\n--b--\r\n"
    )
    a = session(server)
    a.send(f"T900 APPEND INBOX ~{{{len(message)}}}\r\n".encode())
    assert a.line().startswith(b"+")
    a.send(message + b"\r\n")
    untagged, tagged = a.read_until("T900")
    assert tagged.startswith(b"T900 OK [APPENDUID "), (untagged, tagged)
    a.ok("SELECT INBOX")
    assert a.ok("FETCH 1 (BINARY.SIZE[1] RFC822.SIZE)") == [
        f"* 1 FETCH (BINARY.SIZE[1] 7 RFC822.SIZE {len(message)})".encode()
    ]
    assert a.ok("FETCH 1 (BINARY.PEEK[1])") == [b"* 1 FETCH (BINARY[1] ~{7}\r\n" + content + b")"]
    assert a.ok("FETCH 1 (BODY.PEEK[1])") == [b"* 1 FETCH (BODY[1] ~{7}\r\n" + content + b")"]
    whole = a.ok("FETCH 1 (BODY.PEEK[])")
    assert whole == [f"* 1 FETCH (BODY[] ~{{{len(message)}}}\r\n".encode() + message + b")"]
    a.close()


def test_recent_is_kept_across_restarts_and_counted_by_status(make_imap_server):
    """RFC 3501 §2.3.2: mail delivered while nobody has the folder open is \\Recent for
    the first read-write session, also after a restart, and STATUS RECENT counts it;
    once that session has seen it, it is recent for nobody, restart or not."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    a = session(server)
    a.ok("SELECT INBOX")
    a.close()
    for n in range(2):
        server.deliver(ALICE, f"Subject: r{n}\r\n\r\nr\r\n".encode())
    server.restart()
    a = session(server)
    assert a.ok("STATUS INBOX (MESSAGES RECENT)") == [b'* STATUS "INBOX" (MESSAGES 2 RECENT 2)']
    assert b"* 2 RECENT" in a.ok("EXAMINE INBOX"), "EXAMINE takes \\Recent from nobody"
    assert b"* 2 RECENT" in a.ok("SELECT INBOX")
    assert a.ok("FETCH 1:* (FLAGS)") == [
        b"* 1 FETCH (FLAGS (\\Recent))",
        b"* 2 FETCH (FLAGS (\\Recent))",
    ]
    a.close()
    server.restart()
    b = session(server)
    assert b.ok("STATUS INBOX (RECENT)") == [b'* STATUS "INBOX" (RECENT 0)']
    assert b"* 0 RECENT" in b.ok("SELECT INBOX")
    b.close()


def test_subscriptions_are_names_that_outlive_their_folders(make_imap_server):
    """RFC 9051 §6.3.7, RFC 5258 §3.4/§3.5: a subscribed folder that is deleted stays
    subscribed and is listed \\NonExistent; a name can be subscribed before it exists;
    LSUB `%` shows the unsubscribed parent \\Noselect; RECURSIVEMATCH gives CHILDINFO;
    RENAME carries the subscription; all of it survives a restart."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    a = session(server)
    for name in ("Sent", "Drafts", '"Deleted Items"', '"Junk Email"', "Archive"):
        a.ok(f"UNSUBSCRIBE {name}")
    a.ok("CREATE Fruit/Banana")
    a.ok("CREATE Fruit/Peach")
    a.ok("UNSUBSCRIBE Fruit")
    a.ok("DELETE Fruit/Peach")
    a.ok("SUBSCRIBE Later/Soon")
    a.ok("CREATE Vegetable")
    a.ok("RENAME Vegetable Greens")
    server.restart()
    a = session(server)
    assert a.ok('LIST (SUBSCRIBED) "" "*"') == [
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Fruit/Banana"',
        b'* LIST (\\NonExistent \\Subscribed) "/" "Fruit/Peach"',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Greens"',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"',
        b'* LIST (\\NonExistent \\Subscribed) "/" "Later/Soon"',
    ]
    assert a.ok('LSUB "" "%"') == [
        b'* LSUB (\\Noselect) "/" "Fruit"',
        b'* LSUB () "/" "Greens"',
        b'* LSUB () "/" "INBOX"',
        b'* LSUB (\\Noselect) "/" "Later"',
    ]
    assert a.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"') == [
        b'* LIST (\\HasChildren) "/" "Fruit" ("CHILDINFO" ("SUBSCRIBED"))',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Greens"',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"',
        b'* LIST (\\NonExistent) "/" "Later" ("CHILDINFO" ("SUBSCRIBED"))',
    ]
    # A plain LIST lists no name that is not a folder, and marks what is subscribed.
    assert a.ok('LIST "" "F*" RETURN (CHILDREN SUBSCRIBED)') == [
        b'* LIST (\\HasChildren) "/" "Fruit"',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Fruit/Banana"',
    ]
    # Making the folder again finds it subscribed; unsubscribing a name that is not a
    # folder works; a name that cannot be one is refused.
    a.ok("CREATE Later/Soon")
    a.ok("UNSUBSCRIBE Fruit/Peach")
    untagged, tagged = a.cmd('SUBSCRIBE "a//b"')
    assert untagged == [] and tagged.split(b" ")[1] == b"NO", tagged
    assert a.ok('LIST (SUBSCRIBED) "" "*"') == [
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Fruit/Banana"',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Greens"',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"',
        b'* LIST (\\HasChildren \\Subscribed) "/" "Later"',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Later/Soon"',
    ]
    a.close()


def test_literal_minus_when_configured(make_imap_server):
    """`[imap] literal_plus = false`: LITERAL- is advertised instead of LITERAL+ (RFC
    7888 §5: never both); imaplib (synchronizing literals) appends a 10 KB message; a
    non-synchronizing literal of 4096 octets is taken, one of 4097 refused with BAD
    [TOOBIG] and skipped, and the session goes on with nothing stored from it."""
    import imaplib

    server = make_imap_server(login="plaintext", imap_extra="literal_plus = false")
    server.add_user(ALICE, ALICE_PW)
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    assert "LITERAL-" in client.capabilities and "LITERAL+" not in client.capabilities
    client.login(ALICE, ALICE_PW)
    big = b"Subject: big\r\n\r\n" + b"y" * 10_000 + b"\r\n"
    assert client.append("INBOX", None, None, big)[0] == "OK"
    client.logout()

    a = session(server)
    ok = b"Subject: s\r\n\r\n".ljust(4096, b"z")
    a.send(b"L1 APPEND INBOX {4096+}\r\n" + ok + b"\r\n")
    assert a.line().startswith(b"L1 OK [APPENDUID ")
    a.send(b"L2 APPEND INBOX {4097+}\r\n" + ok + b"z\r\nL3 NOOP\r\n")
    assert a.line() == (
        b"L2 BAD [TOOBIG] Non-synchronizing literals are limited to 4096 octets "
        b"(LITERAL-): send a larger one synchronizing"
    )
    assert a.line() == b"L3 OK NOOP completed"
    assert a.ok("STATUS INBOX (MESSAGES SIZE)") == [
        f'* STATUS "INBOX" (MESSAGES 2 SIZE {len(big) + 4096})'.encode()
    ]
    a.close()


def _sort_thread_messages():
    """Five messages whose sent dates, arrival dates, senders and threads all differ."""
    return [
        ("05-Jan-2026 10:00:00 +0000", "Zed <zed@x.org>", "Re: Lunch", "Fri, 2 Jan 2026 09:00:00 +0000",
         "Message-ID: <b@x>\r\nIn-Reply-To: <a@x>", "Yes."),
        ("04-Jan-2026 10:00:00 +0000", "Amy <amy@x.org>", "Lunch", "Thu, 1 Jan 2026 09:00:00 +0000",
         "Message-ID: <a@x>", "Lunch at noon?"),
        ("03-Jan-2026 10:00:00 +0000", "Xavier <bob@x.org>", "[fwd: Budget] (fwd)",
         "Sat, 3 Jan 2026 09:00:00 +0000", "Message-ID: <c@x>", "See below."),
        ("02-Jan-2026 10:00:00 +0000", "Carl <carl@x.org>", "Re: Re: lunch", "Sun, 4 Jan 2026 09:00:00 +0000",
         "Message-ID: <d@x>\r\nReferences: <a@x> <b@x>", "Me too."),
        ("01-Jan-2026 10:00:00 +0000", "amy@x.org", "Budget", "Tue, 30 Dec 2025 09:00:00 +0000",
         "Message-ID: <e@x>", "Numbers."),
    ]


def test_sort_and_thread_with_imaplib(make_imap_server):
    """RFC 5256/5957/5267 through Python's imaplib (`sort`, `thread`, `uid`): the same
    answers as the sort-thread transcript, from the real server and store."""
    import imaplib

    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    for capability in ("SORT", "SORT=DISPLAY", "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"):
        assert capability in client.capabilities, capability
    client.login(ALICE, ALICE_PW)
    for date, sender, subject, sent, ids, body in _sort_thread_messages():
        message = f"From: {sender}\r\nSubject: {subject}\r\nDate: {sent}\r\n{ids}\r\n\r\n{body}\r\n"
        assert client.append("INBOX", None, f'"{date}"', message.encode())[0] == "OK"
    client.select("INBOX")
    assert client.sort("(SUBJECT)", "UTF-8", "ALL") == ("OK", [b"3 5 1 2 4"])
    assert client.sort("(SUBJECT REVERSE DATE)", "UTF-8", "ALL") == ("OK", [b"3 5 4 1 2"])
    assert client.sort("(ARRIVAL)", "US-ASCII", "ALL") == ("OK", [b"5 4 3 2 1"])
    assert client.sort("(FROM)", "UTF-8", "ALL") == ("OK", [b"2 5 3 4 1"])
    assert client.sort("(DISPLAYFROM)", "UTF-8", "ALL") == ("OK", [b"2 5 4 3 1"])
    assert client.sort("(DATE)", "UTF-8", "SUBJECT", "lunch") == ("OK", [b"2 1 4"])
    assert client.sort("(DATE)", "UTF-8", "SUBJECT", "nothing") == ("OK", [b""])
    assert client.uid("SORT", "(REVERSE ARRIVAL)", "UTF-8", "ALL") == ("OK", [b"1 2 3 4 5"])
    assert client.thread("ORDEREDSUBJECT", "UTF-8", "ALL") == ("OK", [b"(5 3)(2 (1)(4))"])
    assert client.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"(5 3)(2 1 4)"])
    assert client.uid("THREAD", "REFERENCES", "UTF-8", "NOT FROM zed") == ("OK", [b"(5 3)(2 4)"])
    client.logout()
    a = session(server, "INBOX")
    (line,) = a.ok("UID SORT RETURN (MIN MAX ALL COUNT) (DATE) UTF-8 ALL")
    assert re.fullmatch(rb'\* ESEARCH \(TAG "[^"]+"\) UID MIN 5 MAX 4 ALL 5,2,1,3:4 COUNT 5', line), line
    a.close()


def test_i18nlevel_1_search_and_sort_with_imaplib(make_imap_server):
    """I18NLEVEL=1 (RFC 5255 §4.3) through imaplib: SEARCH and SORT compare by
    i;unicode-casemap (RFC 5051), so composed and decomposed accents, case and
    compatibility forms (ﬁ, ℃) match as the RFC's preparation says; the same messages
    as the search-sort-i18n transcript, on the real server and store."""
    import imaplib
    import unicodedata

    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    assert "I18NLEVEL=1" in client.capabilities, client.capabilities
    caps = client.capabilities
    assert caps.index("I18NLEVEL=1") == caps.index("UTF8=ACCEPT") + 1, caps
    client.login(ALICE, ALICE_PW)
    nfd = unicodedata.normalize
    messages = [
        ("=?utf-8?q?Caf=C3=A9_cr=C3=A8me?=", "=?utf-8?q?Jos=C3=A9?= <jose@x.org>",
         nfd("NFD", "Crème brûlée") + ", decomposed."),
        (nfd("NFD", "CAFÉ"), '"JOSÉ" <j@x.org>', "Plain 20 \u2103."),
        ("cafe", "ann@x.org", "A \ufb01ne day."),
        ("\u01c4emal", "ann@x.org", "Dz."),
        ("éclair", "ann@x.org", "Pastry."),
        ("Über", "ann@x.org", "Over."),
        ("zebra", "ann@x.org", "Stripes."),
        ("café", "ann@x.org", "Equal to CAFÉ."),
    ]
    for subject, sender, body in messages:
        raw = (f"From: {sender}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
               f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()
        assert client.append("INBOX", None, None, raw)[0] == "OK"
    client.select("INBOX")

    def search(key: str, needle: str) -> bytes:
        client.literal = needle.encode()
        typ, data = client.search("UTF-8", key)
        assert typ == "OK", (key, needle, data)
        return data[0]

    assert search("SUBJECT", "café") == b"1 2 8"
    assert search("SUBJECT", nfd("NFD", "CAFÉ")) == b"1 2 8"
    assert search("SUBJECT", "cafe") == b"1 2 3 8"
    assert search("FROM", "josé") == b"1 2"
    assert search("FROM", nfd("NFD", "JOSÉ")) == b"1 2"
    assert search("BODY", "CRÈME BRÛLÉE") == b"1"
    assert search("TEXT", "brûlée") == b"1"
    # ℃ decomposes to °C; ﬁ to a lower-case fi, which FINE does not match.
    assert search("BODY", "20 °c") == b"2"
    assert search("BODY", "\ufb01ne") == b"3"
    assert search("BODY", "fine") == b""
    assert search("SUBJECT", "\u01c6EMAL") == b"4"
    assert client.sort("(SUBJECT)", "UTF-8", "ALL") == ("OK", [b"3 2 8 1 4 5 6 7"])
    assert client.sort("(REVERSE SUBJECT)", "UTF-8", "ALL") == ("OK", [b"7 6 5 4 1 2 8 3"])
    client.logout()


def test_sort_agrees_with_a_reference_on_random_messages(make_imap_server):
    """200 messages with random subjects (some with Re:/Fwd:), sent and arrival dates,
    senders and sizes: SORT by each key and by a few combinations equals a sort done
    here from what was appended (RFC 5256 §2: ties by sequence number)."""
    import email.utils
    import imaplib
    import random
    import time

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(ALICE, ALICE_PW)
    words = ["alpha", "Beta", "gamma", "delta", "Epsilon"]
    senders = ["ann", "Bob", "carl", "dora", "eve"]
    messages = []
    for n in range(200):
        base = rng.choice(words)
        subject = rng.choice(["", "Re: ", "Fwd: ", "RE: re: "]) + base
        sent = rng.randrange(1_700_000_000, 1_700_900_000)
        arrival = rng.randrange(1_700_000_000, 1_700_900_000)
        sender = rng.choice(senders)
        body = "x" * rng.randrange(0, 300)
        raw = (f"From: {sender}@example.org\r\nSubject: {subject}\r\n"
               f"Date: {email.utils.formatdate(sent)}\r\n\r\n{body}\r\n").encode()
        date = imaplib.Time2Internaldate(time.localtime(arrival))
        assert client.append("INBOX", None, date, raw)[0] == "OK"
        messages.append({"seq": n + 1, "subject": base.lower(), "sent": sent, "arrival": arrival,
                         "from": sender.lower(), "size": len(raw)})
    client.select("INBOX")

    def expect(*keys):
        def key(m):
            out = []
            for k in keys:
                reverse = k.startswith("-")
                value = m[k.lstrip("-")]
                out.append(-value if reverse and isinstance(value, int) else value)
            return out
        ordered = sorted(messages, key=lambda m: (key(m), m["seq"]))
        return " ".join(str(m["seq"]) for m in ordered).encode()

    for criteria, keys in (
        ("(DATE)", ("sent",)),
        ("(ARRIVAL)", ("arrival",)),
        ("(SIZE)", ("size",)),
        ("(SUBJECT DATE)", ("subject", "sent")),
        ("(FROM REVERSE SIZE)", ("from", "-size")),
        ("(SUBJECT REVERSE ARRIVAL)", ("subject", "-arrival")),
    ):
        assert client.sort(criteria, "UTF-8", "ALL") == ("OK", [expect(*keys)]), (criteria, seed)
    client.logout()


def test_within_and_create_special_use_with_imaplib(make_imap_server):
    """WITHIN (RFC 5032) against the server's clock, and CREATE-SPECIAL-USE (RFC 6154
    §3) through imaplib."""
    import imaplib
    import time

    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    assert {"WITHIN", "CREATE-SPECIAL-USE"} <= set(client.capabilities)
    client.login(ALICE, ALICE_PW)
    now = time.time()
    for age in (60, 3 * 86400, 40 * 86400):
        date = imaplib.Time2Internaldate(now - age)
        assert client.append("INBOX", None, date, b"Subject: w\r\n\r\nw\r\n")[0] == "OK"
    client.select("INBOX", readonly=True)
    assert client.search(None, "YOUNGER", "3600") == ("OK", [b"1"])
    assert client.search(None, "OLDER", "86400") == ("OK", [b"2 3"])
    assert client.search(None, "OLDER", "86400", "YOUNGER", str(30 * 86400)) == ("OK", [b"2"])
    try:
        client.search(None, "OLDER", "0")
        raise AssertionError("OLDER 0 accepted")
    except imaplib.IMAP4.error as e:
        assert "SEARCH command error: BAD" in str(e), e
    assert client._simple_command("CREATE", "Outbox", "(USE (\\Sent))")[0] == "OK"
    typ, data = client._simple_command("CREATE", "Twice", "(USE (\\Sent \\Drafts))")
    assert typ == "NO" and b"[USEATTR]" in data[0], data
    assert client.list('""', "Outbox") == ("OK", [b'(\\HasNoChildren \\Sent) "/" "Outbox"'])
    client.logout()


def test_searchres_with_imaplib(make_imap_server):
    """SEARCHRES (RFC 5182) through imaplib: SEARCH RETURN (SAVE) answers only OK, and
    `$` then names the saved messages in FETCH, UID STORE, COPY and UID SEARCH; the
    copies land in the other folder; a new SELECT forgets the result."""
    import imaplib

    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    assert "SEARCHRES" in client.capabilities
    client.login(ALICE, ALICE_PW)
    for n in range(1, 7):
        flags = "(\\Flagged)" if n % 2 else None
        assert client.append("INBOX", flags, None, f"Subject: m{n}\r\n\r\n{n}\r\n".encode())[0] == "OK"
    client.select("INBOX")
    typ, data = client.search(None, "RETURN", "(SAVE)", "FLAGGED")
    assert (typ, client.untagged_responses.get("ESEARCH")) == ("OK", None), data
    typ, data = client.fetch("$", "(UID)")
    assert (typ, data) == ("OK", [b"1 (UID 1)", b"3 (UID 3)", b"5 (UID 5)"])
    assert client.uid("STORE", "$", "+FLAGS.SILENT", "(\\Seen)")[0] == "OK"
    assert client.uid("SEARCH", "UID", "$", "SEEN") == ("OK", [b"1 3 5"])
    assert client.copy("$", "Archive")[0] == "OK"
    client.select("Archive", readonly=True)
    assert client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][::2] == [
        (b"1 (BODY[HEADER.FIELDS (SUBJECT)] {15}", b"Subject: m1\r\n\r\n"),
        (b"2 (BODY[HEADER.FIELDS (SUBJECT)] {15}", b"Subject: m3\r\n\r\n"),
        (b"3 (BODY[HEADER.FIELDS (SUBJECT)] {15}", b"Subject: m5\r\n\r\n"),
    ]
    assert client.fetch("$", "(UID)") == ("OK", [None])
    client.logout()


def test_partial_pages_through_a_folder_with_imaplib(make_imap_server):
    """PARTIAL (RFC 9394) through imaplib: a client pages backwards through 230
    messages, 50 at a time, with `UID SEARCH RETURN (PARTIAL -a:-b SAVE)` and then
    `UID FETCH $`; the pages are disjoint, newest first, and together every message
    once. A window past the end is NIL and `$` then empty; SORT pages in sort order."""
    import imaplib

    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    assert "PARTIAL" in client.capabilities
    client.login(ALICE, ALICE_PW)
    total = 230
    for n in range(1, total + 1):
        assert client.append("INBOX", None, None, f"Subject: m{n}\r\n\r\n{'x' * n}\r\n".encode())[0] == "OK"
    client.select("INBOX")
    seen: list[int] = []
    for first in range(1, total + 1, 50):
        window = f"-{first}:-{first + 49}"
        typ, _ = client.uid("SEARCH", "RETURN", f"(PARTIAL {window} SAVE)", "ALL")
        [esearch] = client.untagged_responses.pop("ESEARCH")
        low, high = max(1, total - first - 48), total - first + 1
        assert typ == "OK" and esearch.endswith(f" UID PARTIAL ({window} {low}:{high})".encode()), esearch
        typ, data = client.uid("FETCH", "$", "(UID)")
        uids = [int(re.search(rb"UID (\d+)", item).group(1)) for item in data]
        assert typ == "OK" and uids == list(range(low, high + 1)), (window, data)
        seen = uids + seen
    assert seen == list(range(1, total + 1))
    typ, _ = client.uid("SEARCH", "RETURN", "(PARTIAL 300:400 SAVE)", "ALL")
    [esearch] = client.untagged_responses.pop("ESEARCH")
    assert typ == "OK" and esearch.endswith(b" UID PARTIAL (300:400 NIL)"), esearch
    assert client.uid("FETCH", "$", "(UID)") == ("OK", [None])
    # Bigger bodies sort later: the largest three by REVERSE SIZE are the newest three.
    typ, _ = client.uid("SORT", "RETURN", "(PARTIAL 1:3)", "(REVERSE SIZE)", "UTF-8", "ALL")
    [esearch] = client.untagged_responses.pop("ESEARCH")
    assert typ == "OK" and esearch.endswith(f" UID PARTIAL (1:3 {total},{total - 1},{total - 2})".encode()), esearch
    with pytest.raises(imaplib.IMAP4.error, match="PARTIAL and ALL cannot be combined"):
        client.search(None, "RETURN", "(PARTIAL 1:5 ALL)", "ALL")
    client.logout()


def test_multiappend_is_all_or_nothing(make_imap_server):
    """MULTIAPPEND (RFC 3502) over the wire: three messages with their own flags and
    dates land together (APPENDUID with the set, one EXISTS for a watching session,
    exact bytes); a bad flag or a message over APPENDLIMIT in the middle stores none."""
    server = make_imap_server(login="plaintext", imap_extra="append_limit = 4096")
    server.add_user(ALICE, ALICE_PW)
    a = session(server)
    assert "MULTIAPPEND" in a.ok("CAPABILITY")[0].decode()
    watcher = session(server, "Drafts")
    messages = [f"Subject: part {n}\r\n\r\n{'body ' * n}\r\n".encode() for n in range(1, 4)]
    untagged, tagged = a.cmd(
        "APPEND Drafts (\\Seen) ", Literal(messages[0]),
        ' (\\Flagged) "17-Jul-1996 02:44:25 -0700" ', Literal(messages[1]),
        " ", Literal(messages[2]),
    )
    assert untagged == [] and re.search(rb"OK \[APPENDUID \d+ 1:3\] APPEND completed$", tagged), tagged
    assert watcher.ok("NOOP")[:1] == [b"* 3 EXISTS"]
    fetched = a.ok("EXAMINE Drafts") and a.ok("FETCH 1:3 (FLAGS INTERNALDATE BODY.PEEK[])")
    assert [line.split(b" BODY[] ")[1] for line in fetched] == [
        b"{%d}\r\n%s)" % (len(m), m) for m in messages
    ]
    assert b"FLAGS (\\Seen) " in fetched[0] and b"FLAGS (\\Flagged) " in fetched[1]
    assert b'INTERNALDATE "17-Jul-1996 02:44:25 -0700"' in fetched[1]
    for middle, answer in (
        (b" (\\Recent) ", b"BAD"),
        (b" (\\Seen) ", b"NO"),
    ):
        big = b"Subject: big\r\n\r\n" + b"x" * 5000 if answer == b"NO" else b"Subject: ok\r\n\r\nok\r\n"
        untagged, tagged = a.cmd("APPEND Drafts ", Literal(messages[0]), middle.decode(), Literal(big))
        assert tagged.split(b" ")[1] == answer, tagged
    assert a.ok("STATUS Drafts (MESSAGES)") == [b'* STATUS "Drafts" (MESSAGES 3)']
    a.close()
    watcher.close()


def test_objectid_with_imaplib(make_imap_server):
    """OBJECTID (RFC 8474) through imaplib: CREATE answers MAILBOXID, which STATUS and
    SELECT repeat, RENAME keeps, and a restart keeps; a folder made again gets a new
    one; EMAILID is the same for a message and its copy and different for another
    message with other bytes; THREADID is NIL."""
    import imaplib

    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    assert "OBJECTID" in client.capabilities
    client.login(ALICE, ALICE_PW)
    typ, data = client.create("Projects")
    made = re.fullmatch(rb"\[MAILBOXID \((F[\w-]+)\)\] CREATE completed", data[0])
    assert typ == "OK" and made, data
    mailbox_id = made.group(1)
    assert client.rename("Projects", "Work")[0] == "OK"
    assert client.status("Work", "(MAILBOXID)") == ("OK", [b'"Work" (MAILBOXID (%s))' % mailbox_id])
    for n in (1, 2):
        assert client.append("INBOX", None, None, f"Subject: {n}\r\n\r\n{n}\r\n".encode())[0] == "OK"
    client.select("INBOX")
    typ, data = client.fetch("1:2", "(EMAILID THREADID)")
    ids = [re.search(rb"EMAILID \((M[\w-]+)\) THREADID NIL", line).group(1) for line in data]
    assert typ == "OK" and ids[0] != ids[1], data
    assert client.copy("1", "Work")[0] == "OK"
    client.logout()
    server.restart()
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(ALICE, ALICE_PW)
    typ, _ = client.select("Work")
    assert client.untagged_responses.get("OK", [])[-1] == b"[MAILBOXID (%s)] Ok" % mailbox_id
    assert client.fetch("1", "(EMAILID)") == ("OK", [b"1 (EMAILID (%s))" % ids[0]])
    client.delete("Work")
    typ, data = client.create("Work")
    assert typ == "OK" and mailbox_id not in data[0], data
    client.logout()


def test_metadata_is_kept_across_restarts(make_imap_server):
    """METADATA (RFC 5464) against the real store: annotations set on INBOX, on a
    folder and on the server come back after a restart, follow a RENAME, and go with a
    DELETE; the limits answer with their response codes and change nothing."""
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    a = session(server)
    assert " METADATA " in a.ok("CAPABILITY")[0].decode()
    a.ok("CREATE Work")
    a.ok('SETMETADATA INBOX (/private/comment "inbox note" /shared/comment "shared")')
    a.ok("SETMETADATA Work (/private/vendor/portico/colour ", Literal(b"blue\r\ngreen"), ")")
    a.ok('SETMETADATA "" (/private/vendor/portico/theme "dark")')
    untagged, tagged = a.cmd(f'SETMETADATA Work (/private/comment "{"x" * 16385}")')
    assert tagged.endswith(b"NO [METADATA MAXSIZE 16384] Annotation too large"), tagged
    a.close()
    server.restart()
    a = session(server)
    assert a.ok("GETMETADATA INBOX (/private/comment /shared/comment)") == [
        b'* METADATA "INBOX" (/private/comment "inbox note" /shared/comment "shared")'
    ]
    assert a.ok("GETMETADATA Work (DEPTH infinity) /private") == [
        b'* METADATA "Work" (/private/vendor/portico/colour {11}\r\nblue\r\ngreen)'
    ]
    assert a.ok('GETMETADATA "" (DEPTH 1) /shared') == [
        b'* METADATA "" (/shared/admin "mailto:postmaster@localhost")'
    ]
    a.ok("RENAME Work Jobs")
    assert a.ok("GETMETADATA Jobs (DEPTH infinity) /private")[0].startswith(
        b'* METADATA "Jobs" (/private/vendor/portico/colour {11}'
    )
    a.ok("DELETE Jobs")
    a.ok("CREATE Jobs")
    assert a.ok("GETMETADATA Jobs (DEPTH infinity) /private") == [
        b'* METADATA "Jobs" (/private NIL)'
    ]
    a.close()
