"""`portico user move` on the four-node example cluster (scripts/cluster-up.sh): a
mailbox moves from one backend (d1, d2, s2) to another, asked for on any node, and its
user cannot tell, except that open sessions are ended with a line that says why:

- every folder arrives with its name, UIDVALIDITY, UIDNEXT and subscription, every
  message with its UID, flags, INTERNALDATE, SAVEDATE, size and bytes, and POP3 UIDL is
  unchanged, whichever node a client comes through, and the old home removes its copy;
- an open IMAP session gets `* BYE [UNAVAILABLE] ...`, an open POP3 session
  `-ERR [SYS/TEMP] ...`, also through a proxy, and a POP3 DELE not committed by QUIT is
  not applied;
- mail sent while the mailbox moves is accepted, and arrives exactly once;
- a move that cannot be done is refused with its reason, and touches nothing.

The module starts its own cluster once; every test adds users of its own and leaves
the others' alone.
"""

from __future__ import annotations

import base64
import hashlib
import imaplib
import poplib
import random
import re
import smtplib
import socket
import threading
import time
from collections import Counter
from typing import NamedTuple

import pytest

from conftest import IN_USE, IO_TIMEOUT, crlf, find_binary, load_corpus, tls_context
from test_cluster import NODES, IP, PASSWORD, Cluster, pick_port_base, wait_for
from test_cluster_sessions import (
    IMAPS,
    POP3S,
    SMTP,
    address,
    deliver,
    imap,
    inbox_messages,
    pop3,
    port,
)

MOVED = re.compile(
    r"moved (\S+) from (\w+) to (\w+): (\d+) folders, (\d+) messages, (\d+) bytes\n"
)
MOVING_IMAP = (
    b"* BYE [UNAVAILABLE] Your mailbox is being moved to another server, "
    b"please reconnect\r\n"
)
MOVING_POP3 = (
    b"-ERR [SYS/TEMP] Your mailbox is being moved to another server, please reconnect\r\n"
)
OLD_COPY_REMOVED = "mailbox moved away; old copy removed"
SENDER = "sender@remote.example"

# What test 1 appends: a flag list (or none) and an INTERNALDATE, in turn.
FLAG_LISTS = [
    r"(\Seen)",
    r"(\Flagged $Label1)",
    r"(\Answered \Seen)",
    None,
    r"($Label1 \Draft)",
    r"(\Seen \Flagged \Answered $Label1)",
]
DATES = [
    '"05-Mar-2024 10:11:12 +0100"',
    '"29-Feb-2024 23:59:59 -0800"',
    '"01-Jan-2020 00:00:00 +0000"',
    '"17-Jul-2025 08:30:05 +0530"',
]
# "Entwürfe" in modified UTF-7, as a client without UTF8=ACCEPT names it.
ENTWUERFE = "Entw&APw-rfe"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The example cluster for the whole module, stopped at teardown whatever
    happened."""
    moving = Cluster(find_binary(), tmp_path_factory.mktemp("move"), pick_port_base())
    try:
        moving.up()
        yield moving
    finally:
        moving.down()


# --------------------------------------------------------------------------------------
# Helpers


def new_user(cluster: Cluster, tag: str, home: str) -> str:
    """An account homed on `home`, added at d1; every node lists it on return."""
    user = address(tag, home)
    cluster.add_user_ok("d1", user, home)
    wait_for_home(cluster, user, home)
    return user


def move(cluster: Cluster, node: str, user: str, home: str):
    return cluster.cli(node, "user", "move", user, "--home", home)


def wait_for_home(cluster: Cluster, user: str, home: str) -> None:
    """Polls until every node's replica names `home` as the home of `user`."""

    def probe():
        homes = {n: cluster.records(n).get(user, (None,) * 4)[3] for n in NODES}
        probe.last = homes
        return homes if set(homes.values()) == {home} else None

    wait_for(probe, 10, f"every node names {home} as the home of {user}")


def wait_for_old_copy_removed(cluster: Cluster, node: str, offset: int) -> None:
    def probe():
        text = cluster.log_since(node, offset)
        probe.last = text[-3000:]
        return True if OLD_COPY_REMOVED in text else None

    wait_for(probe, 10, f"{node} logs `{OLD_COPY_REMOVED}`")


def quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


LISTED = re.compile(rb'\(([^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?:"((?:[^"\\]|\\.)*)"|(\S+))')


def folder_name(line: bytes) -> str:
    """The name (as sent: modified UTF-7) of a LIST or LSUB line."""
    m = LISTED.fullmatch(line)
    assert m, f"unexpected LIST line {line!r}"
    if m.group(3) is not None:
        return m.group(3).decode()
    return re.sub(rb"\\(.)", rb"\1", m.group(2)).decode()


def listing(client: imaplib.IMAP4, command: str) -> list[bytes]:
    """The lines of `LIST "" *` or `LSUB "" *`, sorted."""
    typ, data = getattr(client, command)('""', "*")
    assert typ == "OK", (command, data)
    lines = [line for line in data if line is not None]
    assert all(isinstance(line, bytes) for line in lines), (command, data)
    return sorted(lines)


class Stored(NamedTuple):
    """One message as UID FETCH shows it (flags sorted, without the session's
    \\Recent; the body by its SHA-256)."""

    uid: int
    flags: tuple[str, ...]
    internaldate: str
    # RFC 8514: a move keeps it (the message stays in the same folder to the client).
    savedate: str
    size: int
    sha256: str


def fetched(data: list) -> list[Stored]:
    """The answer of UID FETCH 1:* (FLAGS INTERNALDATE SAVEDATE RFC822.SIZE BODY.PEEK[]), as
    imaplib returns it: each message a (head, body) pair, then the rest of its line."""
    out = []
    items = iter(data)
    for item in items:
        assert isinstance(item, tuple), f"a FETCH response without its body: {item!r}"
        head, body = item
        rest = next(items, b"")
        assert isinstance(rest, bytes), rest
        meta = head + b" " + rest

        def field(pattern: bytes) -> bytes:
            m = re.search(pattern, meta)
            assert m, (pattern, meta)
            return m.group(1)

        size = int(field(rb"\bRFC822\.SIZE (\d+)"))
        assert size == len(body), meta
        flags = field(rb"\bFLAGS \(([^)]*)\)").decode().split()
        out.append(
            Stored(
                uid=int(field(rb"\bUID (\d+)")),
                flags=tuple(sorted(f for f in flags if f != "\\Recent")),
                internaldate=field(rb'\bINTERNALDATE "([^"]+)"').decode(),
                savedate=field(rb'\bSAVEDATE ("[^"]+"|NIL)').decode(),
                size=size,
                sha256=hashlib.sha256(body).hexdigest(),
            )
        )
    return sorted(out)


def folder_contents(client: imaplib.IMAP4, name: str) -> dict:
    """STATUS (UIDVALIDITY UIDNEXT MESSAGES) of a folder and every message in it."""
    typ, data = client.status(quoted(name), "(UIDVALIDITY UIDNEXT MESSAGES)")
    assert typ == "OK", (name, data)
    status = {
        k.decode(): int(v)
        for k, v in re.findall(rb"\b(UIDVALIDITY|UIDNEXT|MESSAGES) (\d+)", data[0])
    }
    assert set(status) == {"UIDVALIDITY", "UIDNEXT", "MESSAGES"}, (name, data)
    typ, data = client.select(quoted(name), readonly=True)
    assert (typ, data) == ("OK", [str(status["MESSAGES"]).encode()]), (name, data)
    messages = []
    if status["MESSAGES"]:
        typ, data = client.uid(
            "FETCH", "1:*", "(FLAGS INTERNALDATE SAVEDATE RFC822.SIZE BODY.PEEK[])"
        )
        assert typ == "OK", (name, typ)
        messages = fetched(data)
    assert len(messages) == status["MESSAGES"], (name, status, messages)
    return {"status": status, "messages": messages}


def pop3_listing(cluster: Cluster, node: str, user: str) -> dict:
    """POP3 UIDL and LIST of the user's INBOX through `node` (retried while a session
    that just ended may still hold the maildrop)."""

    def probe():
        client = pop3(cluster, node)
        assert client.user(user) == b"+OK"
        try:
            client.pass_(PASSWORD)
        except poplib.error_proto as e:
            client.close()
            if e.args[0] != IN_USE:
                raise
            probe.last = e.args[0]
            return None
        try:
            return {"uidl": client.uidl()[1], "list": client.list()[1]}
        finally:
            client.quit()

    return wait_for(probe, 5, f"a POP3 session of {user} through {node}", 0.05)


# imaplib knows no METADATA commands (RFC 5464); both are valid once signed in.
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))


def annotations(client: imaplib.IMAP4, folder: str) -> list:
    """GETMETADATA of every entry of `folder` ("" for the server's)."""
    typ, data = client._simple_command(
        "GETMETADATA", "(DEPTH infinity)", quoted(folder), "(/private /shared)"
    )
    assert typ == "OK", (folder, data)
    return client.untagged_responses.pop("METADATA", [])


def snapshot(cluster: Cluster, node: str, user: str) -> dict:
    """Everything a client of `user` can see through `node`: the LIST and LSUB lines,
    each folder's STATUS, messages and annotations, the server annotations, and POP3
    UIDL and LIST."""
    client = imap(cluster, node)
    try:
        assert client.login(user, PASSWORD)[0] == "OK"
        listed = listing(client, "list")
        subscribed = listing(client, "lsub")
        folders = {folder_name(line): folder_contents(client, folder_name(line))
                   for line in listed}
        annotated = {name: annotations(client, name) for name in ["", *folders]}
    finally:
        client.logout()
    assert len(folders) == len(listed), listed
    return {
        "list": listed,
        "lsub": subscribed,
        "folders": folders,
        "annotations": annotated,
        "pop3": pop3_listing(cluster, node, user),
    }


def totals(snap: dict) -> tuple[int, int, int]:
    """(folders, messages, bytes) of a snapshot, as `user move` reports them."""
    stored = [m for f in snap["folders"].values() for m in f["messages"]]
    return len(snap["folders"]), len(stored), sum(m.size for m in stored)


def moved_line(user: str, old: str, new: str, snap: dict) -> str:
    folders, messages, size = totals(snap)
    return (
        f"moved {user} from {old} to {new}: {folders} folders, {messages} messages, "
        f"{size} bytes\n"
    )


def large_message(tag: str) -> bytes:
    """About 12 MB (more than one 8 MiB piece of a move): random bytes in base64, CRLF
    line ends."""
    body = base64.encodebytes(random.Random(tag).randbytes(9_000_000))
    head = (
        f"From: {SENDER}\r\nSubject: large {tag}\r\nMessage-ID: <large-{tag}@test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return head.encode() + body.replace(b"\n", b"\r\n")


def connect(cluster: Cluster, node: str, offset: int):
    """An implicit-TLS connection to `node` (IMAPS or POP3S) and a reader on it."""
    raw = socket.create_connection((IP[node], port(cluster, offset)), timeout=IO_TIMEOUT)
    tls = tls_context().wrap_socket(raw)
    return tls, tls.makefile("rb")


def read_to_eof(tls, reader, what: str) -> bytes:
    """Everything the server still sends until it closes the connection (a reset or a
    TLS close without close_notify counts as closed); fails the test if it is still
    open after IO_TIMEOUT seconds."""
    tls.settimeout(IO_TIMEOUT)
    out = b""
    try:
        while chunk := reader.read1(65536):
            out += chunk
    except TimeoutError:
        pytest.fail(f"{what}: still open after {IO_TIMEOUT} s, got {out!r}", pytrace=False)
    except OSError:
        pass
    return out


def smtp_message(user: str, message_id: str, text: str) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {user}\r\nSubject: {text}\r\n"
        f"Message-ID: <{message_id}>\r\n\r\n{text}\r\n"
    ).encode()


def inbox_count(cluster: Cluster, node: str, user: str) -> int:
    client = imap(cluster, node)
    try:
        client.login(user, PASSWORD)
        typ, data = client.status("INBOX", "(MESSAGES)")
        assert typ == "OK", data
        return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
    finally:
        client.logout()


def inbox_message_ids(cluster: Cluster, node: str, user: str) -> list[str]:
    """The Message-ID of every message in the INBOX, in order (`-` where none)."""
    ids = []
    for header in inbox_messages(cluster, node, user, "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"):
        m = re.search(rb"<([^>]+)>", header)
        ids.append(m.group(1).decode() if m else "-")
    return ids


class Sender(threading.Thread):
    """Sends numbered messages to `user` over SMTP through `node`, one connection, one
    after the other, until `finish()`; keeps each accepted message's Message-ID with
    when its transaction started and ended, and stops at the first refusal or error."""

    def __init__(self, cluster: Cluster, node: str, user: str, tag: str):
        super().__init__(daemon=True)
        self.cluster, self.node, self.user, self.tag = cluster, node, user, tag
        self.done = threading.Event()
        self.accepted: list[tuple[str, float, float]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            with smtplib.SMTP(
                IP[self.node], port(self.cluster, SMTP), timeout=IO_TIMEOUT
            ) as smtp:
                for i in range(1, 1_000_000):
                    if self.done.is_set():
                        break
                    message_id = f"{self.tag}-during-{i}@test"
                    started = time.monotonic()
                    refused = smtp.sendmail(
                        SENDER, [self.user], smtp_message(self.user, message_id, f"during {i}")
                    )
                    assert refused == {}, refused
                    self.accepted.append((message_id, started, time.monotonic()))
        except Exception as e:  # any refusal fails the test
            self.errors.append(f"after {len(self.accepted)} accepted: {e!r}")

    def finish(self) -> None:
        self.done.set()
        self.join(IO_TIMEOUT * 2)
        assert not self.is_alive(), "the SMTP sender did not stop"


# --------------------------------------------------------------------------------------


def test_a_moved_mailbox_keeps_every_folder_uid_flag_and_byte(cluster):
    """A user of d2 fills its mailbox through d1 (proxied): folders `Projects`,
    `Projects/2026` (unsubscribed) and `Entwürfe` (in modified UTF-7, its one message
    expunged, so empty with UIDNEXT 2); corpus messages with flags (system flags and
    $Label1) and INTERNALDATEs of their own in INBOX (one expunged: a gap in the UIDs),
    Sent and the new folders, one left \\Deleted without EXPUNGE, and a 12 MB message
    (sent in two pieces). `user move --home s2` asked at s1 reports the folders,
    messages and bytes IMAP shows; every node's replica names s2, d2 logs that its old copy is removed, and
    through every node the client sees exactly what it saw before: LIST, LSUB,
    UIDVALIDITY, UIDNEXT, UIDs, flags, INTERNALDATEs, SAVEDATEs, sizes, bytes, POP3
    UIDL. Moved back to d2 (asked at s2), the same again."""
    user = new_user(cluster, "keep", "d2")
    corpus = [crlf(message) for _, message in load_corpus()[:12]]
    large = large_message(user)
    client = imap(cluster, "d1")
    try:
        assert client.login(user, PASSWORD)[0] == "OK"
        for name in ("Projects", "Projects/2026", ENTWUERFE):
            assert client.create(quoted(name))[0] == "OK", name
        assert client.unsubscribe(quoted("Projects/2026"))[0] == "OK"
        # A subscription that names no folder, and annotations, travel too.
        assert client.subscribe(quoted("Lists/Later"))[0] == "OK"
        for folder, entry, value in (
            ("", "/private/vendor/portico/test", "server note"),
            ("Projects", "/private/comment", "keep this"),
            ("INBOX", "/shared/comment", "shared words"),
        ):
            typ, data = client._simple_command("SETMETADATA", quoted(folder), f"({entry} {quoted(value)})")
            assert typ == "OK", (folder, data)
        plan = [("INBOX", m) for m in corpus[:6]]
        plan += [("Projects", m) for m in corpus[6:9]]
        plan += [("Projects/2026", m) for m in corpus[9:12]]
        plan += [("Sent", corpus[0]), (ENTWUERFE, corpus[1])]
        for i, (folder, message) in enumerate(plan):
            typ, data = client.append(
                quoted(folder), FLAG_LISTS[i % len(FLAG_LISTS)], DATES[i % len(DATES)],
                message,
            )
            assert typ == "OK", (folder, i, data)
        typ, data = client.append(quoted("Projects"), r"(\Flagged)", DATES[0], large)
        assert typ == "OK", data
        # Marked, not expunged: the flag must travel.
        assert client.select(quoted("Projects/2026"))[0] == "OK"
        assert client.uid("STORE", "2", "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
        # Expunged: an empty folder whose UIDNEXT is 2, and a gap in INBOX's UIDs.
        for folder, uid in ((ENTWUERFE, "1"), ("INBOX", "3")):
            assert client.select(quoted(folder))[0] == "OK"
            assert client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
            assert client.expunge()[0] == "OK"
    finally:
        client.logout()

    before = snapshot(cluster, "d1", user)
    folders = before["folders"]
    assert {"INBOX", "Sent", "Projects", "Projects/2026", ENTWUERFE} <= set(folders)
    assert [m.uid for m in folders["INBOX"]["messages"]] == [1, 2, 4, 5, 6]
    assert folders["INBOX"]["status"]["UIDNEXT"] == 7
    assert folders[ENTWUERFE]["status"]["MESSAGES"] == 0
    assert folders[ENTWUERFE]["status"]["UIDNEXT"] == 2
    assert "\\Deleted" in folders["Projects/2026"]["messages"][1].flags
    assert any("$Label1" in m.flags for m in folders["INBOX"]["messages"])
    assert hashlib.sha256(large).hexdigest() in {m.sha256 for m in folders["Projects"]["messages"]}
    subscribed = {folder_name(line) for line in before["lsub"]}
    assert "Projects" in subscribed and "Projects/2026" not in subscribed, before["lsub"]
    assert "Lists/Later" in subscribed, before["lsub"]
    assert b"keep this" in b"".join(before["annotations"]["Projects"]), before["annotations"]
    assert b"server note" in b"".join(before["annotations"][""]), before["annotations"]
    assert len(before["pop3"]["uidl"]) == 5
    assert totals(before)[1] == 13

    for old, new, asked in (("d2", "s2", "s1"), ("s2", "d2", "s2")):
        sizes = cluster.log_sizes()
        out = cluster.cli_ok(asked, "user", "move", user, "--home", new)
        assert MOVED.fullmatch(out), out
        assert out == moved_line(user, old, new, before)
        wait_for_home(cluster, user, new)
        wait_for_old_copy_removed(cluster, old, sizes[old])
        assert cluster.users(new)[user]["inbox"] == "5"
        for node in NODES:
            assert snapshot(cluster, node, user) == before, (old, new, node)


def test_open_sessions_are_ended_and_uncommitted_pop3_deletes_are_kept(cluster):
    """A user of d1 with 3 messages has an IMAP session idling at d1 itself, one
    SELECTed through s1 (proxied) and a POP3 session through d2 (proxied) that has
    marked message 1 with DELE but not sent QUIT. `user move --home s2` asked at d1:
    each IMAP client gets exactly `* BYE [UNAVAILABLE] Your mailbox is being moved to
    another server, please reconnect`, the POP3 client `-ERR [SYS/TEMP] ...`, then the
    connection closes. On s2 (and through d1) the mailbox is as before: 3 messages,
    the DELE not applied."""
    user = new_user(cluster, "open", "d1")
    for i in range(3):
        deliver(cluster, "s1", user, f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
    before = snapshot(cluster, "d1", user)
    assert len(before["folders"]["INBOX"]["messages"]) == 3
    octets = sum(m.size for m in before["folders"]["INBOX"]["messages"])

    sessions = []
    try:
        for node, idle in (("d1", True), ("s1", False)):
            tls, reader = connect(cluster, node, IMAPS)
            sessions.append((f"IMAP through {node}", tls, reader, MOVING_IMAP))
            assert reader.readline().startswith(b"* OK "), node
            tls.sendall(f"a LOGIN {user} {PASSWORD}\r\nb SELECT INBOX\r\n".encode())
            lines = [reader.readline()]
            while not lines[-1].startswith(b"b "):
                lines.append(reader.readline())
            assert any(line.startswith(b"a OK ") for line in lines), lines
            assert lines[-1].startswith(b"b OK [READ-WRITE]"), lines
            if idle:
                tls.sendall(b"c IDLE\r\n")
                assert reader.readline().startswith(b"+ "), node
        tls, reader = connect(cluster, "d2", POP3S)
        sessions.append(("POP3 through d2", tls, reader, MOVING_POP3))
        assert reader.readline().startswith(b"+OK")

        def logged_in():
            # The snapshot's POP3 session may still hold the maildrop for a moment.
            tls.sendall(f"USER {user}\r\n".encode())
            assert reader.readline() == b"+OK\r\n"
            tls.sendall(f"PASS {PASSWORD}\r\n".encode())
            logged_in.last = reader.readline()
            return None if logged_in.last == IN_USE + b"\r\n" else logged_in.last

        answer = wait_for(logged_in, 5, f"a POP3 session of {user} through d2", 0.05)
        assert answer == f"+OK Logged in, 3 messages ({octets} octets)\r\n".encode()
        tls.sendall(b"DELE 1\r\n")
        assert reader.readline() == b"+OK Message 1 deleted\r\n"

        sizes = cluster.log_sizes()
        out = cluster.cli_ok("d1", "user", "move", user, "--home", "s2")
        assert out == moved_line(user, "d1", "s2", before)
        for what, tls, reader, line in sessions:
            assert read_to_eof(tls, reader, what) == line, what
    finally:
        for _, tls, reader, _ in sessions:
            reader.close()
            tls.close()

    wait_for_home(cluster, user, "s2")
    wait_for_old_copy_removed(cluster, "d1", sizes["d1"])
    assert cluster.users("s2")[user]["inbox"] == "3"
    for node in ("s2", "d1"):
        assert snapshot(cluster, node, user) == before, node


def test_mail_sent_during_a_move_arrives_exactly_once(cluster):
    """A user of s2 with 300 messages (one SMTP connection at s2). A client keeps
    sending numbered messages to it over SMTP through d1 while `user move --home d1`
    runs (asked at d2), and a moment after: every message is accepted (250), and once
    no node's queue holds mail for the user, the INBOX at d1 has each of the 300 and of
    the accepted ones exactly once, and nothing else."""
    user = new_user(cluster, "during", "s2")
    tag = user.split("@")[0]
    early = [f"{tag}-early-{i}@test" for i in range(300)]
    with smtplib.SMTP(IP["s2"], port(cluster, SMTP), timeout=IO_TIMEOUT) as smtp:
        for i, message_id in enumerate(early):
            refused = smtp.sendmail(SENDER, [user], smtp_message(user, message_id, f"early {i}"))
            assert refused == {}, (i, refused)

    def filled():
        filled.last = inbox_count(cluster, "s2", user)
        return True if filled.last == len(early) else None

    wait_for(filled, 30, f"{len(early)} messages for {user} at s2")
    before = snapshot(cluster, "s2", user)
    folders, messages, size = totals(before)

    sender = Sender(cluster, "d1", user, tag)
    sender.start()
    try:
        wait_for(
            lambda: True if len(sender.accepted) >= 5 or sender.errors else None,
            15, "the sender gets going",
        )
        move_started = time.monotonic()
        r = move(cluster, "d2", user, "d1")
        move_ended = time.monotonic()
        sent_by_then = len(sender.accepted)
        wait_for(
            lambda: True if len(sender.accepted) >= sent_by_then + 5 or sender.errors else None,
            15, "the sender goes on after the move",
        )
    finally:
        sender.finish()
    assert sender.errors == [], sender.errors
    assert (r.returncode, r.stderr) == (0, b""), r
    out = r.stdout.decode()
    m = MOVED.fullmatch(out)
    assert m and m.group(1, 2, 3, 4) == (user, "s2", "d1", str(folders)), out
    assert messages <= int(m.group(5)) <= messages + len(sender.accepted), out
    assert int(m.group(6)) >= size, out
    overlapping = [
        mid for mid, started, ended in sender.accepted
        if started < move_ended and ended > move_started
    ]
    assert overlapping, "no message was sent while the move ran"
    wait_for_home(cluster, user, "d1")

    expected = Counter(early + [mid for mid, _, _ in sender.accepted])

    def all_delivered():
        queued = {n: cluster.cli_ok(n, "queue", "list") for n in NODES}
        waiting = [n for n, text in queued.items() if f"\tto=<{user}>\t" in text]
        ids = inbox_message_ids(cluster, "d1", user)
        all_delivered.last = f"{len(ids)} of {len(expected)} in the INBOX; queued: {queued}"
        return ids if not waiting and len(ids) >= len(expected) else None

    ids = wait_for(all_delivered, 60, f"all {len(expected)} messages for {user} at d1", 0.5)
    got = Counter(ids)
    missing = sorted((expected - got).elements())
    extra = sorted((got - expected).elements())
    assert (missing, extra) == ([], []), f"missing {missing}, extra {extra}"


def test_refused_moves_say_why_and_touch_nothing(cluster):
    """`user move` of an unknown user, to the node that holds the mailbox already, to
    s1 (no backend) and to a node that does not exist, each asked on another node:
    exit 1, nothing on stdout, the reason on stderr; the user stays on d2 on every
    node, nothing is removed, and its mail is served as before."""
    user = new_user(cluster, "refused", "d2")
    ghost = address("refused-ghost", "d2")
    for i in range(2):
        deliver(cluster, "d1", user, f"Subject: stay {i}\r\n\r\nstay {i}\r\n".encode())
    mail = inbox_messages(cluster, "d2", user)
    assert len(mail) == 2
    sizes = cluster.log_sizes()
    for asked, who, home, error in (
        ("s1", ghost, "s2", f"portico: no such user: {ghost}\n"),
        ("d1", user, "d2", f"portico: the mailbox of {user} is on d2 already\n"),
        ("s2", user, "s1", 'portico: node "s1" is not a backend: it holds no mailboxes\n'),
        ("d2", user, "nowhere", 'portico: no node named "nowhere"\n'),
    ):
        r = move(cluster, asked, who, home)
        assert (r.returncode, r.stdout, r.stderr.decode()) == (1, b"", error), (asked, home)
        records = cluster.wait_for_same_records(NODES, 10)
        assert records[user][3] == "d2" and ghost not in records, (asked, home)
        assert cluster.users("d2")[user]["inbox"] == "2", (asked, home)
        assert inbox_messages(cluster, asked, user) == mail, (asked, home)
    for node in NODES:
        assert OLD_COPY_REMOVED not in cluster.log_since(node, sizes[node]), node
