"""NOTIFY (RFC 5465) end to end with imaplib: a client that asked is told, with no
command of its own in progress, of mail submitted over SMTP to a folder it does not
have selected (STATUS), of the selected folder's new messages with the FETCH it named,
and of folders made and deleted by another client (LIST); while idling (§4) the same
events and no others; a session with the account's changes on hears none of another
account's. The transcript crates/imap/tests/transcripts/notify.txt covers every event
and rule line by line; this drives it the way a client does."""

from __future__ import annotations

import imaplib
import re
import socket
import time

from conftest import IO_TIMEOUT

ALICE = "alice@example.com"
ALICE_PW = "alice-Notify-1"
BOB = "bob@example.com"
BOB_PW = "bob-Notify-2"
QUIET = 1.5


def untagged(client: imaplib.IMAP4, count: int) -> list[bytes]:
    """The next `count` lines the server sends on its own (literals joined in)."""
    lines = []
    client.sock.settimeout(IO_TIMEOUT)
    for _ in range(count):
        line = client.readline()
        assert line, "connection closed"
        while (m := re.search(rb"\{(\d+)\}\r\n$", line)):
            line += client.read(int(m.group(1))) + client.readline()
        lines.append(line.rstrip(b"\r\n"))
    return lines


def pending(client: imaplib.IMAP4) -> bytes:
    """What the server has sent that imaplib has not handed out yet: its read buffer
    and the socket's, read without waiting."""
    client.sock.setblocking(False)
    try:
        return client.file.peek(1 << 16)
    finally:
        client.sock.settimeout(IO_TIMEOUT)


def nothing_more(client: imaplib.IMAP4) -> None:
    """Nothing is sent within QUIET seconds (nor waiting in imaplib's buffer)."""
    time.sleep(QUIET)
    data = pending(client)
    assert not data, f"unexpected: {data!r}"


def command(client: imaplib.IMAP4, line: str) -> tuple[list[bytes], bytes]:
    """Sends one command; returns the untagged lines before its tagged answer, and the
    answer without its tag."""
    tag = client._new_tag().decode()
    client.send(f"{tag} {line}\r\n".encode())
    lines = []
    while not (answer := client.readline().rstrip(b"\r\n")).startswith(f"{tag} ".encode()):
        lines.append(answer)
    return lines, answer[len(tag) + 1 :]


def submit(server, sender: str, password: str, to: str, subject: str) -> None:
    with server.smtp_login(sender, password) as smtp:
        smtp.sendmail(sender, [to], f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())


def test_notify_tells_other_folders_the_selected_one_and_names_as_they_change(make_smtp_server):
    server = make_smtp_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    server.add_user(BOB, BOB_PW)
    listener, other, bob = server.imap(), server.imap(), server.imap()
    listener.login(ALICE, ALICE_PW)
    assert "NOTIFY" in listener.capabilities
    other.login(ALICE, ALICE_PW)
    bob.login(BOB, BOB_PW)

    # STATUS at once for INBOX; then mail submitted over SMTP is told unasked.
    lines, answer = command(
        listener, "NOTIFY SET STATUS (inboxes (MessageNew MessageExpunge)) (personal (MailboxName))"
    )
    assert answer == b"OK NOTIFY completed"
    assert len(lines) == 1 and re.fullmatch(
        rb'\* STATUS "INBOX" \(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \d+ UNSEEN 0\)', lines[0]
    ), lines
    submit(server, BOB, BOB_PW, ALICE, "first")
    [line] = untagged(listener, 1)
    assert re.fullmatch(rb'\* STATUS "INBOX" \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)', line), line
    # Bob's account is not Alice's: nothing of his is told.
    assert bob.create("BobsFolder")[0] == "OK"
    submit(server, ALICE, ALICE_PW, BOB, "for bob")
    nothing_more(listener)
    # Another session of Alice's makes a folder (and its parent) and deletes one.
    assert other.create("Projects/2026")[0] == "OK"
    assert untagged(listener, 2) == [
        b'* LIST (\\Subscribed) "/" "Projects"',
        b'* LIST (\\Subscribed) "/" "Projects/2026"',
    ]
    assert other.delete("Projects/2026")[0] == "OK"
    assert untagged(listener, 1) == [b'* LIST (\\NonExistent) "/" "Projects/2026"']

    # SELECTED with a FETCH of new messages, while idling (§4): the new message's
    # EXISTS and FETCH come; another folder's change, no longer asked for, does not.
    _, answer = command(
        listener,
        "NOTIFY SET (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) MessageExpunge))",
    )
    assert answer == b"OK NOTIFY completed"
    assert listener.select("INBOX")[0] == "OK"
    tag = listener._new_tag().decode()
    listener.send(f"{tag} IDLE\r\n".encode())
    assert listener.readline().startswith(b"+ ")
    assert other.append("Archive", None, None, b"Subject: archived\r\n\r\nold\r\n")[0] == "OK"
    submit(server, BOB, BOB_PW, ALICE, "second")
    header = b"Subject: second\r\n\r\n"
    assert untagged(listener, 3) == [
        b"* 2 EXISTS",
        b"* 2 RECENT",
        b"* 2 FETCH (UID 2 BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\n%s)" % (len(header), header),
    ]
    nothing_more(listener)
    listener.send(b"DONE\r\n")
    assert listener.readline().rstrip(b"\r\n") == f"{tag} OK IDLE terminated".encode()

    # NOTIFY NONE: the next delivery waits for a command's answer.
    assert command(listener, "NOTIFY NONE") == ([], b"OK NOTIFY completed")
    submit(server, BOB, BOB_PW, ALICE, "third")
    nothing_more(listener)
    listener.untagged_responses.clear()
    typ, data = listener.noop()
    assert typ == "OK" and listener.untagged_responses.get("EXISTS") == [b"3"], data
    for client in (listener, other, bob):
        client.logout()


# --------------------------------------------------------------------------------------
# Randomized: another session changes three folders at random; the listener's picture,
# built only from what NOTIFY pushes (and what its own NOOPs bring), must equal the
# folders as they are.

STATUS_LINE = re.compile(
    rb'\* STATUS "([^"]+)" \(MESSAGES (\d+) UIDNEXT (\d+) UIDVALIDITY (\d+) UNSEEN (\d+)\)'
)
FETCH_LINE = re.compile(rb"\* (\d+) FETCH \((.*)\)")
FLAG_CHOICES = ["\\Seen", "\\Flagged", "\\Answered", "$Work", "$Later"]


class SelectedModel:
    """The selected folder as a client keeps it from EXISTS, EXPUNGE and FETCH."""

    def __init__(self) -> None:
        self.uids: list[int | None] = []
        self.flags: dict[int, set[str]] = {}

    def take(self, line: bytes) -> None:
        if m := re.fullmatch(rb"\* (\d+) EXISTS", line):
            count = int(m.group(1))
            assert count >= len(self.uids), (line, self.uids)
            self.uids += [None] * (count - len(self.uids))
        elif m := re.fullmatch(rb"\* (\d+) EXPUNGE", line):
            seq = int(m.group(1))
            assert 1 <= seq <= len(self.uids), (line, self.uids)
            uid = self.uids.pop(seq - 1)
            self.flags.pop(uid, None)
        elif m := FETCH_LINE.fullmatch(line):
            seq, items = int(m.group(1)), m.group(2)
            uid = int(re.search(rb"UID (\d+)", items).group(1))
            assert 1 <= seq <= len(self.uids), (line, self.uids)
            assert self.uids[seq - 1] in (None, uid), (line, self.uids)
            self.uids[seq - 1] = uid
            flags = re.search(rb"FLAGS \(([^)]*)\)", items)
            if flags:
                self.flags[uid] = set(flags.group(1).decode().split()) - {"\\Recent"}


def drain(client, quiet: float = 1.0) -> list[bytes]:
    """Every response the server pushed until it has been quiet for `quiet` seconds."""
    client.sock.settimeout(quiet)
    try:
        while True:
            chunk = client.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            client.buf += chunk
    except socket.timeout:
        pass
    finally:
        client.sock.settimeout(IO_TIMEOUT)
    lines = []
    while b"\r\n" in client.buf:
        lines.append(client.line())
    return lines


def test_notify_pushes_add_up_to_the_folders_as_they_are(make_imap_server):
    import random

    from conftest import Literal, RawImap

    rng = random.Random(5465)
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    listener, actor = RawImap(server), RawImap(server)
    for client in (listener, actor):
        assert re.match(rb"T\d+ OK", client.login(ALICE, ALICE_PW))
    for folder in ("Other1", "Other2"):
        actor.ok(f"CREATE {folder}")
    listener.ok(
        "NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange)) "
        "(personal (MessageNew MessageExpunge FlagChange))"
    )
    selected = SelectedModel()
    for line in listener.ok("SELECT INBOX"):
        selected.take(line)
    statuses: dict[str, tuple[int, ...]] = {}

    def take(lines: list[bytes]) -> None:
        for line in lines:
            if m := STATUS_LINE.fullmatch(line):
                statuses[m.group(1).decode()] = tuple(int(g) for g in m.groups()[1:])
            else:
                selected.take(line)

    uids: dict[str, list[int]] = {"INBOX": [], "Other1": [], "Other2": []}
    for step in range(160):
        folder = rng.choice(list(uids))
        op = rng.random()
        if op < 0.45 or not uids[folder]:
            flags = " ".join(rng.sample(FLAG_CHOICES, rng.randint(0, 2)))
            actor.ok(f"APPEND {folder} ({flags}) ", Literal(f"Subject: {step}\r\n\r\n{step}\r\n".encode()))
        actor.ok(f"SELECT {folder}")
        [search] = [line for line in actor.ok("UID SEARCH ALL") if line.startswith(b"* SEARCH")]
        found = [int(n) for n in search[len(b"* SEARCH"):].split()]
        uids[folder] = found
        if op >= 0.45 and found:
            uid = rng.choice(found)
            if op < 0.8:
                sign = rng.choice("+-")
                actor.ok(f"UID STORE {uid} {sign}FLAGS.SILENT ({rng.choice(FLAG_CHOICES)})")
            elif op < 0.9:
                actor.ok(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
                actor.ok(f"UID EXPUNGE {uid}")
            else:
                target = rng.choice([f for f in uids if f != folder])
                actor.ok(f"UID MOVE {uid} {target}")
        actor.ok("UNSELECT")
        if step % 40 == 39:
            # The listener's own command in the middle of the pushes.
            take(listener.ok("NOOP"))

    take(drain(listener))
    # What the listener was told equals the folders now.
    for folder in ("Other1", "Other2"):
        line = listener.ok(f"STATUS {folder} (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
        assert len(line) == 1 and STATUS_LINE.fullmatch(line[0]), line
        assert statuses.get(folder) == tuple(int(g) for g in STATUS_LINE.fullmatch(line[0]).groups()[1:]), folder
    fetched = listener.ok("UID FETCH 1:* (FLAGS)")
    truth = {}
    for line in fetched:
        m = FETCH_LINE.fullmatch(line)
        assert m, line
        items = m.group(2)
        truth[int(re.search(rb"UID (\d+)", items).group(1))] = set(
            re.search(rb"FLAGS \(([^)]*)\)", items).group(1).decode().split()
        ) - {"\\Recent"}
    assert selected.uids == sorted(truth), (selected.uids, sorted(truth))
    assert selected.flags == truth
    assert "INBOX" not in statuses


def test_a_burst_of_deliveries_is_told_without_overflow(make_smtp_server):
    """Eight SMTP clients deliver 40 messages each to INBOX at once while a session
    watches it with NOTIFY: the changes reach it gathered (one STATUS per pause, not one
    per message), its queue never overflows, and the last STATUS counts all 320."""
    import threading

    server = make_smtp_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    server.add_user(BOB, BOB_PW)
    listener = server.imap()
    listener.login(ALICE, ALICE_PW)
    assert command(listener, "NOTIFY SET (inboxes (MessageNew MessageExpunge))") == (
        [], b"OK NOTIFY completed"
    )
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            with server.smtp_login(BOB, BOB_PW) as smtp:
                for i in range(40):
                    smtp.sendmail(BOB, [ALICE], f"Subject: burst {n}.{i}\r\n\r\nx\r\n".encode())
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    lines = []
    while not lines or not lines[-1].startswith(b'* STATUS "INBOX" (MESSAGES 320 '):
        lines += untagged(listener, 1)
        assert b"NOTIFICATIONOVERFLOW" not in lines[-1], lines[-1]
        assert re.fullmatch(rb'\* STATUS "INBOX" \(MESSAGES \d+ UIDNEXT \d+ UIDVALIDITY \d+ UNSEEN \d+\)', lines[-1]), lines[-1]
    assert len(lines) < 320, len(lines)
    # A STATUS read while the last deliveries were being told may count them already;
    # their own STATUS then says the same again, and nothing else may come.
    time.sleep(QUIET)
    rest = pending(listener)
    assert all(line == lines[-1] for line in rest.splitlines()), rest
    listener.logout()
