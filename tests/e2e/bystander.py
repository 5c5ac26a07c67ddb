"""A well-behaved second client for the hostile tests (issue 9): "a second client logged
in before the attack completes a LOGIN/SELECT/FETCH and a POP3 RETR and an SMTP
delivery normally during and after it".

A `Bystander` has its own account on a node that serves IMAP, POP3 and SMTP (an
SmtpServer or a subclass), with a few known messages, and signs in over IMAP when it is
made, before the attack, keeping that session open. Each `check(label)` is one round:

1. on the session opened before the attack: SELECT INBOX and FETCH every message's
   header, both answers exact;
2. a fresh IMAP connection (plain port, STARTTLS): LOGIN, SELECT, FETCH, exact;
3. POP3 (plain port, STLS): sign-in, STAT, RETR of the first message byte for byte as
   it was delivered, QUIT;
4. one SMTP delivery to its own address on the inbound port;
5. on the fresh IMAP session: NOOP shows one more message, and its content is the
   delivered one byte for byte (trace headers checked by test_smtp.split_trace).

Every step must end within the clients' socket timeout (a hang guard, not a timing
assertion); the time of each step is recorded, for failure messages and for the summary
`running_during` prints (shown with `pytest -s`).

`with bystander.running_during("attack"):` runs rounds in a thread while the block runs
(the attack), then re-raises the first failure and insists on at least one completed
round; call `check("after attack")` once the attack is over.

`source` is the loopback address the bystander connects from: the node listens on
127.0.0.1 only, but accepts any 127.0.0.0/8 source, so tests that refuse the attacker's
address give the bystander another one."""

from __future__ import annotations

import contextlib
import re
import threading
import time

from conftest import (
    IO_TIMEOUT,
    RawClient,
    RawImap,
    RawSmtp,
    SmtpServer,
    messages,
    stuff,
)
from test_smtp import QUEUED, RECIPIENT_OK, SENDER_OK, START_DATA, split_trace

BYSTANDER = "bystander@example.com"
BYSTANDER_PW = "bystander-Calm-1"
SENDER = "penpal@remote.example"
HELO = "mx.penpal.example"
KNOWN_MESSAGES = 3

# How long the loop waits for the round under way once the attack has ended: every step
# of a round is bounded by the socket timeout, and a round has five.
JOIN_TIMEOUT = 6 * IO_TIMEOUT

SELECT_OK = b"OK [READ-WRITE] SELECT completed"
FLAGS = b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)"
PERMANENTFLAGS = (
    b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]"
    b" Flags permitted"
)
LOGGED_IN = re.compile(rb"T\d+ OK \[CAPABILITY [^\]]*\] Logged in")
RECENT = re.compile(rb"\* \d+ RECENT")


def known_message(address: str, n: int) -> bytes:
    return (
        f"From: friend{n}@remote.example\r\nTo: {address}\r\n"
        f"Subject: known message {n}\r\nMessage-ID: <known{n}.{address}>\r\n\r\n"
        f"Body of known message {n}.\r\n.leading dot\r\n"
    ).encode()


def header_of(stored: bytes) -> bytes:
    """BODY[HEADER]: the header and the empty line after it."""
    return stored[: stored.index(b"\r\n\r\n") + 4]


class Bystander:
    """See the module docstring. Makes the account `address` (which must not exist
    yet), delivers it KNOWN_MESSAGES messages through the command line, and signs in."""

    def __init__(
        self,
        server: SmtpServer,
        address: str = BYSTANDER,
        password: str = BYSTANDER_PW,
        *,
        source: str = "127.0.0.1",
    ):
        self.server = server
        self.address = address
        self.password = password
        self.source = source
        # (uid, stored bytes) of every message in the INBOX, in UID order.
        self.stored: list[tuple[int, bytes]] = []
        server.add_user(address, password)
        for n in range(1, KNOWN_MESSAGES + 1):
            message = known_message(address, n)
            self.stored.append((server.deliver(address, message), message))
        # label -> [(step, seconds)], in the order run.
        self.timings: list[tuple[str, list[tuple[str, float]]]] = []
        self.rounds = 0
        self.uidvalidity: bytes | None = None
        self.mailbox_id = b""
        self.held = self._imap(implicit=True)
        self.held_selected = False
        self._select(self.held)
        self._fetch_headers(self.held)

    # -- one round ------------------------------------------------------------------

    def check(self, label: str) -> None:
        """One round (see the module docstring); fails with the step, the label and
        the timings so far."""
        steps: list[tuple[str, float]] = []
        self.timings.append((label, steps))
        fresh = None
        try:
            with self._step(label, steps, "held session SELECT+FETCH"):
                self._select(self.held)
                self._fetch_headers(self.held)
            with self._step(label, steps, "fresh IMAP LOGIN+SELECT+FETCH"):
                fresh = self._imap(implicit=False)
                self._select(fresh)
                self._fetch_headers(fresh)
            with self._step(label, steps, "POP3 RETR 1"):
                self._pop3_retr_first()
            with self._step(label, steps, "SMTP delivery"):
                content = self._deliver(label)
            with self._step(label, steps, "delivery visible over IMAP"):
                self._read_back(fresh, content)
                untagged, tagged = fresh.cmd("LOGOUT")
                assert untagged == [b"* BYE Logging out"], untagged
                assert tagged.endswith(b" OK LOGOUT completed"), tagged
        finally:
            if fresh is not None:
                fresh.close()
        self.rounds += 1

    @contextlib.contextmanager
    def _step(self, label: str, steps: list, name: str):
        began = time.monotonic()
        try:
            yield
        except Exception as e:
            took = time.monotonic() - began
            raise AssertionError(
                f"bystander {self.address} from {self.source}, round {label!r}: step "
                f"{name!r} failed after {took:.2f}s: {e!r}\n{self.report()}"
            ) from e
        took = time.monotonic() - began
        steps.append((name, took))
        # The hang guard: each read already has the socket timeout; a step made of
        # many reads must not add up to more.
        hung = f"bystander round {label!r}: step {name!r} took {took:.2f}s"
        assert took < IO_TIMEOUT, f"{hung}\n{self.report()}"

    def report(self, last: int = 6) -> str:
        """For failure messages: the rounds completed, the slowest time of each step,
        and the step times of the `last` rounds."""
        slowest: dict[str, float] = {}
        for _, steps in self.timings:
            for name, took in steps:
                slowest[name] = max(slowest.get(name, 0.0), took)
        lines = [
            f"bystander rounds completed: {self.rounds}; slowest steps: "
            + ", ".join(f"{name} {took:.2f}s" for name, took in slowest.items())
        ]
        for label, steps in self.timings[len(self.timings) - last :]:
            parts = ", ".join(f"{name} {took:.2f}s" for name, took in steps)
            lines.append(f"  {label}: {parts or '(no step finished)'}")
        return "\n".join(lines)

    # -- the steps ------------------------------------------------------------------

    def _imap(self, *, implicit: bool) -> RawImap:
        """A signed-in session: implicit TLS, or the plain port with STARTTLS."""
        r = RawImap(self.server, implicit=implicit, source=self.source)
        assert r.greeting.startswith(b"* OK [CAPABILITY "), r.greeting
        if not implicit:
            r.starttls()
        tagged = r.login(self.address, self.password)
        assert LOGGED_IN.fullmatch(tagged), tagged
        return r

    def _select(self, r: RawImap) -> None:
        """SELECT INBOX, every line exact but the \\Recent count (which session sees a
        new message as recent depends on who looks first; IMAP4rev2 dropped it)."""
        untagged, tagged = r.cmd("SELECT INBOX")
        assert tagged.endswith(b" " + SELECT_OK), (untagged, tagged)
        if r is self.held:
            if self.held_selected:
                closed = b"* OK [CLOSED] Previous mailbox closed"
                assert untagged[:1] == [closed], untagged
                untagged = untagged[1:]
            self.held_selected = True
        if self.uidvalidity is None:
            m = re.fullmatch(rb"\* OK \[UIDVALIDITY (\d+)\] UIDs valid", untagged[-3])
            assert m, untagged
            self.uidvalidity = m.group(1)
            m = re.fullmatch(rb"\* OK \[MAILBOXID \((F\d+)\)\] Ok", untagged[-1])
            assert m, untagged
            self.mailbox_id = m.group(1)
        assert len(untagged) == 8 and RECENT.fullmatch(untagged[1]), untagged
        expected = [
            b"* %d EXISTS" % len(self.stored),
            untagged[1],
            b"* OK [UNSEEN 1] First unseen",
            FLAGS,
            PERMANENTFLAGS,
            b"* OK [UIDVALIDITY %s] UIDs valid" % self.uidvalidity,
            b"* OK [UIDNEXT %d] Predicted next UID" % (self.stored[-1][0] + 1),
            b"* OK [MAILBOXID (%s)] Ok" % self.mailbox_id,
        ]
        assert untagged == expected, untagged

    def _fetch_headers(self, r: RawImap) -> None:
        untagged, tagged = r.cmd("FETCH 1:* (UID BODY.PEEK[HEADER])")
        assert tagged.endswith(b" OK FETCH completed"), tagged
        expected = []
        for seq, (uid, stored) in enumerate(self.stored, 1):
            header = header_of(stored)
            expected.append(
                b"* %d FETCH (UID %d BODY[HEADER] {%d}\r\n%s)"
                % (seq, uid, len(header), header)
            )
        assert untagged == expected, untagged

    def _pop3_retr_first(self) -> None:
        p = RawClient(self.server, source=self.source)
        try:
            assert p.greeting == b"+OK Portico POP3 server ready", p.greeting
            p.starttls()
            total = sum(len(stored) for _, stored in self.stored)
            count = len(self.stored)
            answer = p.login(self.address, self.password)
            assert answer == b"+OK Logged in, %s (%d octets)" % (
                messages(count).encode(),
                total,
            )
            assert p.cmd("STAT") == b"+OK %d %d" % (count, total)
            first = self.stored[0][1]
            assert p.cmd("RETR 1") == b"+OK %d octets" % len(first)
            assert p.multiline_raw() == stuff(first)
            assert p.cmd("QUIT") == b"+OK Logging out"
        finally:
            p.close()

    def _deliver(self, label: str) -> bytes:
        """One message to itself on the inbound port; returns the content sent."""
        n = len(self.stored) + 1
        content = (
            f"From: {SENDER}\r\nTo: {self.address}\r\nSubject: bystander {n}\r\n"
            f"Message-ID: <bystander{n}.{self.address}>\r\n\r\n"
            f"Sent during: {label}\r\n..stuffed leading dot\r\n"
        ).encode()
        s = RawSmtp(self.server.smtp_port, source=self.source)
        try:
            assert s.greeting == [b"220 mail.example.com ESMTP Portico"], s.greeting
            assert s.ehlo(HELO)[-1].startswith(b"250 "), "EHLO"
            assert s.cmd(f"MAIL FROM:<{SENDER}>") == SENDER_OK
            assert s.cmd(f"RCPT TO:<{self.address}>") == RECIPIENT_OK
            assert s.cmd("DATA") == START_DATA
            assert QUEUED.fullmatch(s.cmd(content + b".")), "DATA"
            assert s.cmd("QUIT") == b"221 2.0.0 Bye"
        finally:
            s.close()
        # The client stuffs a leading dot and the server takes one off.
        return content.replace(b"\r\n..", b"\r\n.")

    def _read_back(self, r: RawImap, content: bytes) -> None:
        """The delivery is in the INBOX when the 250 comes: NOOP shows it, and its
        bytes are the trace headers and what was sent."""
        count = len(self.stored) + 1
        uid = self.stored[-1][0] + 1
        untagged, tagged = r.cmd("NOOP")
        assert tagged.endswith(b" OK NOOP completed"), tagged
        assert untagged[:1] == [b"* %d EXISTS" % count], untagged
        assert all(RECENT.fullmatch(line) for line in untagged[1:]), untagged
        untagged, tagged = r.cmd(f"UID FETCH {uid} (BODY.PEEK[])")
        assert tagged.endswith(b" OK UID FETCH completed"), tagged
        prefix = b"* %d FETCH (UID %d BODY[] {" % (count, uid)
        assert len(untagged) == 1 and untagged[0].startswith(prefix), untagged
        size, stored = untagged[0][len(prefix) :].split(b"}\r\n", 1)
        assert stored.endswith(b")"), untagged
        stored = stored[:-1]
        assert int(size) == len(stored), untagged
        _, rest = split_trace(
            stored,
            mail_from=SENDER,
            rcpt=self.address,
            with_="ESMTP",
            helo=HELO,
            client=self.source,
        )
        assert rest == content, (rest, content)
        self.stored.append((uid, stored))

    # -- during an attack -------------------------------------------------------------

    @contextlib.contextmanager
    def running_during(self, attack: str, pause: float = 0.1):
        """Runs rounds in a thread while the block runs (`pause` seconds apart); on
        leaving, waits for the round under way, re-raises the first failure, and
        requires at least one completed round."""
        stop = threading.Event()
        failures: list[BaseException] = []
        completed = []

        def loop() -> None:
            try:
                while True:
                    self.check(f"during {attack} #{len(completed) + 1}")
                    completed.append(time.monotonic())
                    if stop.wait(pause):
                        return
            except BaseException as e:  # handed to the test's thread
                failures.append(e)

        thread = threading.Thread(target=loop, name=f"bystander {attack}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive(), (
            f"bystander round still running {JOIN_TIMEOUT}s after {attack!r} ended\n"
            f"{self.report()}"
        )
        if failures:
            raise failures[0]
        assert completed, f"no bystander round completed during {attack!r}"
        print(f"bystander: {len(completed)} rounds during {attack!r}")
        print(self.report(last=0))

    def close(self) -> None:
        self.held.close()
