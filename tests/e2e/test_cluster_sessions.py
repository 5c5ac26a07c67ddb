"""Sessions and mail across the four-node example cluster (scripts/cluster-up.sh): a
client may reach any node; its IMAP or POP3 session is proxied to the node that holds
the mailbox (d1, d2 or s2), in its own site or the other, and mail submitted anywhere
reaches each recipient's home exactly once, also when that home was down.

One cluster serves the module; the tests run in file order on it. Each test makes its
own users (a tag per test), so none depends on another's mail.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import shutil
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from conftest import IO_TIMEOUT, crlf, find_binary, load_corpus, tls_context, wire_lines
from test_cluster import (
    BACKENDS,
    IP,
    NODES,
    PASSWORD,
    Cluster,
    cut_off,
    nft_unusable,
    pick_port_base,
    wait_for,
)

# Offsets from the port base (scripts/cluster-up.sh).
POP3, POP3S, IMAP, IMAPS, SMTP, SUBMISSION = 0, 1, 2, 3, 4, 5
# Nodes that take client connections in the example (every node listens).
ENTRY = NODES
LOGGED_IN = re.compile(rb"\[CAPABILITY [^\]]+\] Logged in")
HOME_LOST_IMAP = (
    b"* BYE [UNAVAILABLE] The server that holds your mailbox is unavailable, "
    b"please reconnect later\r\n"
)
HOME_DOWN_IMAP = (
    b"[UNAVAILABLE] The server that holds your mailbox is unavailable, try again later"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(find_binary(), tmp_path_factory.mktemp("sessions"), pick_port_base())
    try:
        c.up()
        yield c
    finally:
        c.down()


def port(cluster: Cluster, offset: int) -> int:
    return cluster.base + offset


def address(tag: str, home: str) -> str:
    return f"{tag}-{home}@example.com"


def add_users(cluster: Cluster, tag: str) -> dict[str, str]:
    """One account per backend, added at d1; every replica has them on return."""
    users = {}
    for home in BACKENDS:
        users[home] = address(tag, home)
        cluster.add_user_ok("d1", users[home], home)
    cluster.wait_for_same_records(NODES, 10)
    return users


def imap(cluster: Cluster, node: str, implicit: bool = False) -> imaplib.IMAP4:
    if implicit:
        return imaplib.IMAP4_SSL(
            IP[node], port(cluster, IMAPS), ssl_context=tls_context(), timeout=IO_TIMEOUT
        )
    client = imaplib.IMAP4(IP[node], port(cluster, IMAP), timeout=IO_TIMEOUT)
    client.starttls(tls_context())
    return client


def pop3(cluster: Cluster, node: str, implicit: bool = False) -> poplib.POP3:
    if implicit:
        return poplib.POP3_SSL(
            IP[node], port(cluster, POP3S), context=tls_context(), timeout=IO_TIMEOUT
        )
    client = poplib.POP3(IP[node], port(cluster, POP3), timeout=IO_TIMEOUT)
    client.stls(tls_context())
    return client


def inbox_messages(
    cluster: Cluster, node: str, user: str, item: str = "BODY.PEEK[]"
) -> list[bytes]:
    """`item` (the whole message by default) of every message in the INBOX, in order."""
    client = imap(cluster, node)
    try:
        client.login(user, PASSWORD)
        typ, data = client.select("INBOX", readonly=True)
        assert typ == "OK", data
        if int(data[0]) == 0:
            return []
        typ, data = client.fetch("1:*", f"({item})")
        assert typ == "OK", data
        return [part[1] for part in data if isinstance(part, tuple)]
    finally:
        client.logout()


def deliver(cluster: Cluster, node: str, user: str, message: bytes) -> str:
    return cluster.cli_ok(node, "deliver", user, input=message)


def raw_session(cluster: Cluster, node: str, script: bytes) -> bytes:
    """Everything an IMAPS server sends for `script` written at once, until it closes."""
    raw = socket.create_connection((IP[node], port(cluster, IMAPS)), timeout=IO_TIMEOUT)
    with tls_context().wrap_socket(raw) as tls:
        greeting = tls.recv(4096)
        assert greeting.startswith(b"* OK "), greeting
        tls.sendall(script)
        out = b""
        while chunk := tls.recv(65536):
            out += chunk
        return out


class BusyClient(threading.Thread):
    """A client that keeps running NOOP and FETCH 1 through `node` until `finish()`,
    counting its rounds and keeping any error."""

    def __init__(self, cluster: Cluster, user: str, node: str):
        super().__init__()
        self.cluster, self.user, self.node = cluster, user, node
        self.stop = threading.Event()
        self.rounds = 0
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            client = imap(self.cluster, self.node)
            client.login(self.user, PASSWORD)
            client.select("INBOX")
            while not self.stop.is_set():
                assert client.noop()[0] == "OK"
                typ, data = client.fetch("1", "(BODY.PEEK[])")
                assert typ == "OK" and data[0][1].endswith(b"x\r\n"), data
                self.rounds += 1
                time.sleep(0.02)
            client.logout()
        except Exception as e:  # any error fails the test
            self.errors.append(f"{self.user} via {self.node}: {e!r}")

    def finish(self) -> None:
        self.stop.set()
        self.join(30)


def wait_for_count(cluster: Cluster, node: str, user: str, count: int, timeout: float):
    def probe():
        try:
            found = inbox_messages(cluster, node, user)
        except imaplib.IMAP4.error as e:  # the home not back yet
            probe.last = [repr(e)]
            return None
        probe.last = [len(found)]
        return found if len(found) == count else None

    return wait_for(probe, timeout, f"{count} message(s) for {user} through {node}")


# --------------------------------------------------------------------------------------


def test_every_user_reads_the_same_mailbox_through_every_node(cluster):
    """Users homed on d1, d2 and s2, each given the same corpus messages with `portico
    deliver` run on a node that is not their home (routed to it): through every node,
    over IMAP STARTTLS, IMAPS, POP3 STLS and POP3S, each reads its messages byte for
    byte; curl reads them too."""
    corpus = load_corpus()[:6]
    users = add_users(cluster, "read")
    for home, user in users.items():
        via = next(n for n in NODES if n != home)
        for i, (name, message) in enumerate(corpus, start=1):
            out = deliver(cluster, via, user, message)
            assert out == f"delivered to {user} as UID {i} on node {home}\n", (name, out)
    expected = [crlf(message) for _, message in corpus]
    for home, user in users.items():
        for node in ENTRY:
            for implicit in (False, True):
                client = imap(cluster, node, implicit)
                try:
                    typ, data = client.login(user, PASSWORD)
                    assert typ == "OK" and LOGGED_IN.fullmatch(data[0]), (node, data)
                    typ, data = client.select("INBOX", readonly=True)
                    assert (typ, data) == ("OK", [str(len(expected)).encode()]), (node, data)
                    typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
                    got = [part[1] for part in data if isinstance(part, tuple)]
                    assert got == expected, (home, node, implicit)
                finally:
                    client.logout()
                client = pop3(cluster, node, implicit)
                try:
                    client.user(user)
                    octets = sum(len(m) for m in expected)
                    assert client.pass_(PASSWORD) == (
                        f"+OK Logged in, {len(expected)} messages ({octets} octets)".encode()
                    ), (home, node)
                    for i, stored in enumerate(expected, start=1):
                        assert client.retr(i)[1] == wire_lines(stored), (home, node, i)
                finally:
                    client.quit()
    if not shutil.which("curl"):
        pytest.fail("curl is not installed", pytrace=False)
    for home, user in users.items():
        for node in ("d1", "s1"):
            for url in (
                f"imaps://{IP[node]}:{port(cluster, IMAPS)}/INBOX;UID=2",
                f"pop3s://{IP[node]}:{port(cluster, POP3S)}/2",
            ):
                r = subprocess.run(
                    ["curl", "-sS", "--insecure", "--max-time", "20", "--user",
                     f"{user}:{PASSWORD}", url],
                    capture_output=True,
                    timeout=30,
                )
                assert r.returncode == 0, (url, r.stderr)
                body = r.stdout if url.startswith("imaps") else r.stdout.replace(b"\r\n..", b"\r\n.")
                assert body.rstrip(b"\r\n") == expected[1].rstrip(b"\r\n"), (home, node, url)


def test_a_proxied_session_answers_byte_for_byte_as_the_home_and_pipelining_works(cluster):
    """One script of pipelined commands, LOGIN first, written at once: through d1 and s1
    the user homed on s2 gets exactly the bytes s2 itself sends, every response once and
    in order; POP3 the same."""
    users = add_users(cluster, "pipe")
    user = users["s2"]
    for i in range(3):
        deliver(cluster, "s2", user, f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
    script = (
        f"a LOGIN {user} {PASSWORD}\r\nb EXAMINE INBOX\r\nc FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n"
        "d UID SEARCH ALL\r\ne LOGOUT\r\n"
    ).encode()
    direct = raw_session(cluster, "s2", script)
    tags = [line.split(b" ")[0] for line in direct.split(b"\r\n") if line[:1] in b"abcde" and line]
    assert tags == [b"a", b"b", b"c", b"d", b"e"], direct
    assert b"* 3 EXISTS" in direct and b"* SEARCH 1 2 3" in direct, direct
    for node in ("d1", "s1", "d2"):
        assert raw_session(cluster, node, script) == direct, node

    def pop3_raw(node: str) -> bytes:
        raw = socket.create_connection((IP[node], port(cluster, POP3S)), timeout=IO_TIMEOUT)
        with tls_context().wrap_socket(raw) as tls:
            assert tls.recv(4096).startswith(b"+OK ")
            tls.sendall(f"USER {user}\r\nPASS {PASSWORD}\r\nSTAT\r\nUIDL\r\nTOP 2 0\r\nQUIT\r\n".encode())
            out = b""
            while chunk := tls.recv(65536):
                out += chunk
            return out

    direct = pop3_raw("s2")
    assert direct.startswith(b"+OK\r\n+OK Logged in, 3 messages"), direct
    for node in ("d1", "s1"):
        assert pop3_raw(node) == direct, node


def test_cross_site_idle_sees_mail_submitted_at_the_other_site(cluster):
    """The user homed on s2 idles through d1 (dublin); a message sent over SMTP at s1
    (seattle) arrives as `* 1 EXISTS` through the proxy."""
    users = add_users(cluster, "idle")
    user = users["s2"]
    raw = socket.create_connection((IP["d1"], port(cluster, IMAPS)), timeout=IO_TIMEOUT)
    with tls_context().wrap_socket(raw) as tls:
        reader = tls.makefile("rb")
        assert reader.readline().startswith(b"* OK ")
        tls.sendall(f"a LOGIN {user} {PASSWORD}\r\nb SELECT INBOX\r\nc IDLE\r\n".encode())
        lines = []
        while not lines or not lines[-1].startswith(b"+ "):
            lines.append(reader.readline())
        assert any(line.startswith(b"b OK [READ-WRITE]") for line in lines), lines
        with smtplib.SMTP(IP["s1"], port(cluster, SMTP), timeout=IO_TIMEOUT) as smtp:
            smtp.sendmail("far@remote.example", [user], b"Subject: idle\r\n\r\nhello\r\n")
        sent = time.monotonic()
        tls.settimeout(15)
        pushed = reader.readline()
        assert pushed == b"* 1 EXISTS\r\n", pushed
        assert time.monotonic() - sent < 10
        tls.sendall(b"DONE\r\nd LOGOUT\r\n")
        rest = b"".join(iter(reader.readline, b""))
        assert b"c OK IDLE terminated" in rest and b"d OK" in rest, rest


def test_one_message_for_three_homes_arrives_once_each_even_with_one_home_down(cluster):
    """One message to users homed on d1, d2 and s2, submitted at s1 while s2 is killed:
    d1's and d2's copies arrive at once; s2's waits in s1's queue and arrives once s2 is
    back, exactly once; nobody gets a second copy."""
    users = add_users(cluster, "three")
    cluster.kill("s2")
    try:
        with smtplib.SMTP(IP["s1"], port(cluster, SMTP), timeout=IO_TIMEOUT) as smtp:
            refused = smtp.sendmail(
                "sender@remote.example",
                list(users.values()),
                b"Subject: to three\r\nMessage-ID: <three@test>\r\n\r\nonce each\r\n",
            )
            assert refused == {}
        for home in ("d1", "d2"):
            [got] = wait_for_count(cluster, "d1", users[home], 1, 10)
            assert b"Message-ID: <three@test>" in got and got.endswith(b"once each\r\n")
        client = imap(cluster, "d1")
        try:
            typ, data = client.login(users["s2"], PASSWORD)
        except imaplib.IMAP4.error as e:
            typ, data = "NO", [str(e).encode()]
        finally:
            client.shutdown()
        assert typ == "NO" and HOME_DOWN_IMAP in data[0], data
    finally:
        cluster.up()
    [got] = wait_for_count(cluster, "s1", users["s2"], 1, 60)
    assert b"Message-ID: <three@test>" in got
    time.sleep(3)
    for home, user in users.items():
        for node in ENTRY:
            assert len(wait_for_count(cluster, node, user, 1, 15)) == 1, (home, node)


def test_a_storage_limit_holds_for_mail_from_any_node(cluster):
    """A limit set at d1 reaches every replica; the home (s2) enforces it for mail from
    other nodes: `deliver` at d1 and SMTP at s1, whose RCPT asks s2 for the usage and
    refuses only that recipient (452 4.2.2); a proxied IMAP session sees the limit."""
    users = add_users(cluster, "quota")
    full = users["s2"]
    cluster.cli_ok("d1", "user", "set", full, "--quota", "2K")
    records = cluster.wait_for_same_records(NODES, 10)
    assert records[full][4] == "2K"
    filler = b"Subject: filler\r\n\r\n" + b"x" * 1500 + b"\r\n"
    deliver(cluster, "d1", full, filler)
    r = cluster.cli("d1", "deliver", full, input=filler)
    assert (r.returncode, r.stderr.decode()) == (
        1,
        f"portico: the mailbox of {full} is full: the message would pass its storage "
        "limit\n",
    )
    with smtplib.SMTP(IP["s1"], port(cluster, SMTP), timeout=IO_TIMEOUT) as smtp:
        refused = smtp.sendmail("sender@remote.example", [full, users["d2"]], filler)
    assert refused == {full: (452, b"4.2.2 Mailbox full")}
    assert len(wait_for_count(cluster, "d1", users["d2"], 1, 10)) == 1
    client = imap(cluster, "d1")
    try:
        client.login(full, PASSWORD)
        typ, data = client.getquotaroot("INBOX")
        assert (typ, data) == ("OK", [[b'"INBOX" ""'], [b'"" (STORAGE 2 2)']])
    finally:
        client.logout()
    assert len(inbox_messages(cluster, "s1", full)) == 1


def test_losing_a_home_ends_only_its_proxied_sessions(cluster):
    """Sessions of the user homed on s2 open through d1 and s1; clients of d1's and
    d2's users keep running NOOP and FETCH throughout. s2 is killed: its sessions get
    `* BYE [UNAVAILABLE]` and are closed, a new login for it is refused at once while s2
    is down, and the other clients see no error. s2 then comes back."""
    users = add_users(cluster, "lost")
    for user in users.values():
        deliver(cluster, "d1", user, b"Subject: x\r\n\r\nx\r\n")
    busy = [BusyClient(cluster, users["d1"], "s1"), BusyClient(cluster, users["d2"], "d1")]
    for client in busy:
        client.start()
    doomed = []
    try:
        for node in ("d1", "s1"):
            raw = socket.create_connection((IP[node], port(cluster, IMAPS)), timeout=IO_TIMEOUT)
            tls = tls_context().wrap_socket(raw)
            reader = tls.makefile("rb")
            assert reader.readline().startswith(b"* OK ")
            tls.sendall(f"a LOGIN {users['s2']} {PASSWORD}\r\nb SELECT INBOX\r\n".encode())
            while not reader.readline().startswith(b"b OK"):
                pass
            doomed.append((node, tls, reader))
        before = [client.rounds for client in busy]
        cluster.kill("s2")
        killed = time.monotonic()
        for node, tls, reader in doomed:
            tls.settimeout(15)
            assert reader.readline() == HOME_LOST_IMAP, node
            assert reader.readline() == b"", node
        assert time.monotonic() - killed < 10
        started = time.monotonic()
        client = imap(cluster, "d1")
        try:
            with pytest.raises(imaplib.IMAP4.error, match=re.escape(HOME_DOWN_IMAP.decode())):
                client.login(users["s2"], PASSWORD)
        finally:
            client.shutdown()
        assert time.monotonic() - started < 2
        time.sleep(1)
    finally:
        for client in busy:
            client.finish()
        for _, tls, _ in doomed:
            tls.close()
        cluster.up()
    for client, rounds in zip(busy, before):
        assert client.errors == [] and client.rounds > rounds, (client.errors, rounds)
    # Once their health checks reach s2 again, every node proxies to it again.
    for node in ENTRY:
        wait_for_count(cluster, node, users["s2"], 1, 15)


def fill_user_limit(cluster: Cluster, user: str, sessions: list[imaplib.IMAP4]) -> None:
    """Signs `user` in 50 times (the example's max_connections_per_user), alternately
    through d1 and s1, adding each session to `sessions` for the caller to log out."""
    for i in range(50):
        client = imap(cluster, "d1" if i % 2 else "s1", implicit=True)
        sessions.append(client)
        assert client.login(user, PASSWORD)[0] == "OK", i


def test_the_per_user_limit_holds_across_nodes(cluster):
    """The user homed on s2 may hold 50 sessions in all (the example's
    max_connections_per_user), counted at s2 wherever the clients connect: 25 through d1
    and 25 through s1 fill it, and a 51st through d2 gets `NO [LIMIT]`."""
    user = add_users(cluster, "limit")["s2"]
    sessions = []
    try:
        fill_user_limit(cluster, user, sessions)
        extra = imap(cluster, "d2", implicit=True)
        try:
            with pytest.raises(imaplib.IMAP4.error, match=re.escape("[LIMIT] Too many connections for this user")):
                extra.login(user, PASSWORD)
        finally:
            extra.shutdown()
    finally:
        for client in sessions:
            client.logout()


def unauthenticate(client: imaplib.IMAP4) -> bytes:
    """UNAUTHENTICATE (RFC 8437), after which imaplib lets the client sign in again."""
    imaplib.Commands.setdefault("UNAUTHENTICATE", ("AUTH", "SELECTED"))
    typ, data = client._simple_command("UNAUTHENTICATE")
    assert typ == "OK", data
    client.state = "NONAUTH"
    return data[-1]


def test_unauthenticate_hands_the_connection_to_the_next_users_home(cluster):
    """One connection through d1 signs in as the user homed on s2, signs out with
    UNAUTHENTICATE and signs in as the users homed on d2 and then d1: each time the
    mailbox is the one of who signed in last (the connection is carried on to the new
    home), and a session signed out holds no place under the per-user limit."""
    users = add_users(cluster, "unauth")
    for home, user in users.items():
        deliver(cluster, "d1", user, f"Subject: for {home}\r\n\r\n{home}\r\n".encode())
    client = imap(cluster, "d1", implicit=True)
    try:
        for home in ("s2", "d2", "d1"):
            assert client.login(users[home], PASSWORD)[0] == "OK", home
            typ, data = client.select("INBOX", readonly=True)
            assert (typ, data) == ("OK", [b"1"]), home
            typ, data = client.fetch("1", "(BODY.PEEK[TEXT])")
            assert typ == "OK" and data[0][1] == f"{home}\r\n".encode(), (home, data)
            text = unauthenticate(client)
            assert text.endswith(b"] Signed out, authenticate again"), text
            assert b" AUTH=PLAIN " in text and b"UNAUTHENTICATE" not in text, text
            client.state = "AUTH"  # let imaplib send it: the server must refuse it
            with pytest.raises(imaplib.IMAP4.error, match="BAD.*Command not valid before authentication"):
                client.list()
            client.state = "NONAUTH"
    finally:
        client.logout()

    # 50 sessions fill the s2 user's places; one signing out frees one for another.
    user = users["s2"]
    sessions = []
    try:
        fill_user_limit(cluster, user, sessions)
        extra = imap(cluster, "d2", implicit=True)
        sessions.append(extra)
        with pytest.raises(imaplib.IMAP4.error, match=re.escape("[LIMIT] Too many connections")):
            extra.login(user, PASSWORD)
        unauthenticate(sessions[0])
        assert extra.login(user, PASSWORD)[0] == "OK"
    finally:
        for session in sessions:
            session.logout()


def test_notify_through_a_proxy_tells_of_mail_delivered_at_another_node(cluster):
    """NOTIFY (RFC 5465) on a session proxied from d1 to the home s2: mail for the user
    delivered at d2 (stored at s2) reaches the listener as an unsolicited STATUS, and a
    folder another session makes through s1 as an unsolicited LIST."""
    user = add_users(cluster, "notify")["s2"]
    raw = socket.create_connection((IP["d1"], port(cluster, IMAPS)), timeout=IO_TIMEOUT)
    with tls_context().wrap_socket(raw) as tls:
        reader = tls.makefile("rb")
        assert reader.readline().startswith(b"* OK ")
        tls.sendall(
            f"a LOGIN {user} {PASSWORD}\r\n"
            "b NOTIFY SET (inboxes (MessageNew MessageExpunge)) (personal (MailboxName))\r\n".encode()
        )
        assert LOGGED_IN.search(reader.readline())
        assert reader.readline() == b"b OK NOTIFY completed\r\n"
        deliver(cluster, "d2", user, b"Subject: pushed\r\n\r\nacross sites\r\n")
        line = reader.readline()
        assert re.fullmatch(
            rb'\* STATUS "INBOX" \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)\r\n', line
        ), line
        other = imap(cluster, "s1", implicit=True)
        try:
            assert other.login(user, PASSWORD)[0] == "OK"
            assert other.create("Pushed")[0] == "OK"
        finally:
            other.logout()
        assert reader.readline() == b'* LIST (\\Subscribed) "/" "Pushed"\r\n'
        tls.sendall(b"c LOGOUT\r\n")
        assert reader.readline().startswith(b"* BYE")


def test_a_rehomed_user_is_served_by_the_new_home_only(cluster):
    """`user rehome` points a user of d2 at s2 (mail not copied): through every node,
    d2 included, its sessions land on s2's (empty) mailbox, and new mail goes there."""
    users = add_users(cluster, "fence")
    user = users["d2"]
    deliver(cluster, "d1", user, b"Subject: old\r\n\r\nold home\r\n")
    assert len(inbox_messages(cluster, "s1", user)) == 1
    out = cluster.cli_ok("s1", "user", "rehome", user, "--home", "s2")
    assert out == f"{user} now has its mailbox on s2 (mail not copied)\n"
    records = cluster.wait_for_same_records(NODES, 10)
    assert records[user][3] == "s2"
    for node in NODES:
        assert inbox_messages(cluster, node, user) == [], node
    deliver(cluster, "d2", user, b"Subject: new\r\n\r\nnew home\r\n")
    for node in NODES:
        [got] = inbox_messages(cluster, node, user)
        assert got.endswith(b"new home\r\n"), node
    r = cluster.cli("d1", "user", "rehome", user, "--home", "s1")
    assert (r.returncode, r.stderr) == (
        1,
        b'portico: node "s1" is not a backend: it holds no mailboxes\n',
    ), r


def test_losing_a_frontend_ends_only_its_own_connections(cluster):
    """s1 (a frontend) is killed while it carries an IMAP session and a POP3 session
    with a DELE not yet committed; sessions through d1 (to d2 and s2) keep working. Only
    s1's clients lose their connections, and the message marked for deletion is still
    there: nothing is lost."""
    users = add_users(cluster, "front")
    for user in users.values():
        deliver(cluster, "d1", user, b"Subject: x\r\n\r\nx\r\n")
    busy = [BusyClient(cluster, users["d2"], "d1"), BusyClient(cluster, users["s2"], "d1")]
    for client in busy:
        client.start()
    try:
        through_s1 = imap(cluster, "s1", implicit=True)
        through_s1.login(users["s2"], PASSWORD)
        through_s1.select("INBOX")
        popped = pop3(cluster, "s1", implicit=True)
        popped.user(users["d2"])
        popped.pass_(PASSWORD)
        assert popped.dele(1) == b"+OK Message 1 deleted"
        time.sleep(0.2)
        before = [client.rounds for client in busy]
        cluster.kill("s1")
        with pytest.raises((imaplib.IMAP4.abort, OSError)):
            through_s1.noop()
        with pytest.raises((poplib.error_proto, OSError)):
            popped.noop()
        time.sleep(1)
    finally:
        for client in busy:
            client.finish()
        cluster.up()
    for client, rounds in zip(busy, before):
        assert client.errors == [] and client.rounds > rounds, (client.errors, rounds)
    client = pop3(cluster, "d1")
    try:
        client.user(users["d2"])
        assert client.pass_(PASSWORD).startswith(b"+OK Logged in, 1 message ")
    finally:
        client.quit()


def test_a_bounce_reaches_a_sender_homed_on_another_node(cluster):
    """The user homed on s2 submits at s1 to a remote domain; the example has no relay,
    so s1 bounces it, and the bounce lands in the sender's INBOX on s2."""
    sender = add_users(cluster, "bounce")["s2"]
    with smtplib.SMTP(IP["s1"], port(cluster, SUBMISSION), timeout=IO_TIMEOUT) as smtp:
        smtp.starttls(context=tls_context())
        smtp.login(sender, PASSWORD)
        smtp.sendmail(sender, ["someone@remote.example"], b"Subject: away\r\n\r\nhi\r\n")
    [dsn] = wait_for_count(cluster, "d1", sender, 1, 20)
    assert b"Content-Type: multipart/report; report-type=delivery-status" in dsn, dsn
    assert b"Final-Recipient: rfc822; someone@remote.example" in dsn, dsn


def test_a_frontend_with_a_stale_replica_is_refused_by_the_old_home(cluster):
    """s1 cut off from d1 and d2 (it still reaches s2), so its replica stops: a user
    homed on s2 is rehomed to d2 meanwhile. Through s1, which still names s2, the login
    is refused (s2's replica says d2: it serves no session of that user), never served
    from the old mailbox; once healed, s1 catches up and hands the session to d2."""
    why = nft_unusable()
    if why:
        pytest.skip(f"a partition needs nftables as root: {why}")
    user = add_users(cluster, "stale")["s2"]
    deliver(cluster, "d1", user, b"Subject: old\r\n\r\nold home\r\n")
    with cut_off("s1", ["d1", "d2"]):

        def rehomed():
            r = cluster.cli("d1", "user", "rehome", user, "--home", "d2")
            rehomed.last = [r.returncode, r.stdout, r.stderr]
            return r if r.returncode == 0 else None

        wait_for(rehomed, 20, f"{user} rehomed to d2 while s1 is cut off")
        wait_for(
            lambda: True if cluster.users("s2")[user]["home"] == "d2" else None,
            10,
            "s2's replica names d2",
        )
        assert cluster.users("s1")[user]["home"] == "s2"
        deliver(cluster, "d1", user, b"Subject: new\r\n\r\nnew home\r\n")
        client = imap(cluster, "s1")
        try:
            with pytest.raises(imaplib.IMAP4.error, match=re.escape(HOME_DOWN_IMAP.decode())):
                client.login(user, PASSWORD)
        finally:
            client.shutdown()
    assert "refused a proxied session" in (cluster.root / "logs" / "s2.log").read_text()
    wait_for(
        lambda: True if cluster.users("s1")[user]["home"] == "d2" else None,
        20,
        "s1's replica names d2 once healed",
    )
    [got] = wait_for_count(cluster, "s1", user, 1, 15)
    assert got.endswith(b"new home\r\n")
