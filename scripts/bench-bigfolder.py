#!/usr/bin/env python3
"""A 100,000-message INBOX through the real server: fills it over inbound SMTP (BDAT,
eight connections), then times what a heavy user's client does, each on a second
session (warm), and reads the server's RSS.

    cargo build --release && scripts/bench-bigfolder.py [BINARY] [COUNT]
    scripts/bench-bigfolder.py --imap PORT [COUNT] [PROCESS,...]

BINARY defaults to target/release/portico, COUNT to 100000. Prints one line a step,
then runs the stress phase: 50 clients at once for 60 s, each in a loop of what a
mail client does to the big folder (SELECT, FETCH of flags, envelopes and header
fields of a random page, SEARCH on a header field and in the text, STORE of flags,
APPEND, IDLE, NOOP), every answer checked, the server's RSS sampled meanwhile.
With --imap, runs the steps and the stress phase against an IMAP server already
listening on 127.0.0.1:PORT whose user big@example.com (password pw-Bigfolder-1) has
COUNT messages made by `message()` in its INBOX, summing the RSS of the processes named
(for Dovecot: dovecot,imap,imap-login,auth,config,anvil,log): how Dovecot was measured
beside Portico (its maildir filled with those files, plaintext login allowed).
"""

from __future__ import annotations

import imaplib
import pathlib
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests/e2e"))

from bulk import deliver_many  # noqa: E402

USER = "big@example.com"
PASSWORD = "pw-Bigfolder-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def message(i: int) -> bytes:
    return (
        f"From: sender{i % 500}@remote.example\r\nTo: {USER}\r\n"
        f"Subject: report {i} on topic {i % 97}\r\nDate: Sun, 6 Dec 2026 10:00:00 +0000\r\n"
        f"Message-ID: <b{i}@remote.example>\r\n\r\n"
        f"Hello, this is message number {i}. The weather code is w{i % 1013}.\r\n"
        + "Filler text of an ordinary mail body, line after line.\r\n" * 20
    ).encode()


def rss_mib(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:  # the process ended meanwhile
        pass
    return 0.0


def rss_of_names(names: list[str]) -> float:
    """The summed RSS of every process whose command name is one of `names`."""
    total = 0.0
    for status in pathlib.Path("/proc").glob("[0-9]*/comm"):
        try:
            if status.read_text().strip() in names:
                total += rss_mib(int(status.parent.name))
        except OSError:
            pass
    return total


STRESS_CLIENTS = 50
STRESS_SECONDS = 60


def stress_client(port: int, count: int, seed: int, deadline: float, done: list) -> None:
    """One client's loop; every command must answer OK."""
    rng = random.Random(seed)
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(USER, PASSWORD)
    typ, data = c.select("INBOX")
    assert typ == "OK", data
    exists = int(data[0])
    n = 0
    while time.monotonic() < deadline:
        first = rng.randrange(1, max(2, exists - 100))
        page = f"{first}:{first + 99}"
        action = rng.randrange(10)
        if action == 0:
            typ, data = c.select("INBOX")
            exists = int(data[0])
        elif action == 1:
            typ, data = c.fetch(page, "(UID FLAGS)")
        elif action == 2:
            typ, data = c.fetch(page, "(UID RFC822.SIZE FLAGS ENVELOPE)")
        elif action == 3:
            typ, data = c.fetch(page, "(UID BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE "
                                      "MESSAGE-ID REFERENCES CONTENT-TYPE)])")
        elif action == 4:
            typ, data = c.search(None, "SUBJECT", f'"topic {rng.randrange(97)}"')
        elif action == 5:
            typ, data = c.search(None, "BODY", f"w{rng.randrange(1013)}.")
        elif action == 6:
            typ, data = c.store(page, rng.choice(["+FLAGS", "-FLAGS"]), "(\\Flagged)")
        elif action == 7:
            typ, data = c.append("INBOX", None, None, message(count + seed * 100_000 + n))
        elif action == 8:
            typ, data = c.fetch(str(rng.randrange(1, exists + 1)), "(BODY.PEEK[])")
        else:
            typ, data = c.noop()
        assert typ == "OK", (action, data)
        n += 1
    c.logout()
    done.append(n)


def stress(port: int, count: int, rss) -> None:
    """STRESS_CLIENTS clients at once for STRESS_SECONDS; prints commands answered and
    the peak RSS `rss()` gave while they ran."""
    deadline = time.monotonic() + STRESS_SECONDS
    done: list[int] = []
    errors: list[Exception] = []

    def run(seed: int) -> None:
        try:
            stress_client(port, count, seed, deadline, done)
        except Exception as e:  # reported below, with the others
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(STRESS_CLIENTS)]
    before = rss()
    for t in threads:
        t.start()
    peak = before
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss())
        time.sleep(0.2)
    print(f"stress: {STRESS_CLIENTS} clients, {STRESS_SECONDS} s, {sum(done)} commands "
          f"answered OK, {len(errors)} clients failed; server RSS {before:.0f} MiB before, "
          f"peak {peak:.0f} MiB, {rss():.0f} MiB after")
    for e in errors[:3]:
        print(f"  failure: {e!r}")


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_indexed(log: pathlib.Path, count: int, start: float) -> None:
    """Waits until the server's log shows every message in the full-text index."""
    while True:
        done = sum(int(n) for n in re.findall(
            r"full-text index updated.*?messages=(\d+)", log.read_text(errors="replace")))
        if done >= count:
            print(f"full-text index caught up {time.perf_counter() - start:.1f} s after the "
                  f"fill began; index size {du_mib(log.parent / 'data' / 'fulltext'):.0f} MiB")
            return
        time.sleep(0.5)


def du_mib(path: pathlib.Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def timed(label: str, action) -> None:
    start = time.perf_counter()
    typ, data = action()
    elapsed = time.perf_counter() - start
    assert typ == "OK", (label, typ, data)
    print(f"{label}: {elapsed * 1000:.1f} ms")


def raw_timings(port: int, when: str, count: int) -> None:
    """The same commands read by a bare socket client that only looks for the tagged
    line in what it receives: imaplib spends more time parsing 100,000 responses than
    the server takes to send them, and even reading line by line costs Python a few
    milliseconds per 1,000 messages."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.recv(65536)

    def command(tag: str, text: str) -> float:
        sock.sendall(f"{tag} {text}\r\n".encode())
        start = time.perf_counter()
        received = bytearray(b"\r\n")  # so that a reply alone is found too
        end = f"\r\n{tag} ".encode()
        while True:
            chunk = sock.recv(1 << 20)
            assert chunk, "connection closed"
            received += chunk
            at = received.rfind(end, max(0, len(received) - len(chunk) - len(end)))
            if at >= 0 and received.endswith(b"\r\n"):
                elapsed = time.perf_counter() - start
                assert received[at + len(end):].startswith(b"OK"), received[at:]
                return elapsed

    command("a", f"LOGIN {USER} {PASSWORD}")
    command("b", "SELECT INBOX")
    for label, text in [
        ("UID FETCH 1:* (FLAGS)", "UID FETCH 1:* (FLAGS)"),
        ("SEARCH SUBJECT", 'SEARCH SUBJECT "topic 42"'),
        ("SEARCH BODY", "SEARCH BODY w1000."),
        ("FETCH 1,000 messages' FROM/SUBJECT/DATE",
         f"FETCH {count - 999}:{count} (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"),
        ("SELECT", "SELECT INBOX"),
    ]:
        times = [command(f"c{i}", text) * 1000 for i in range(5)]
        print(f"raw client {when}, {label}: " + ", ".join(f"{t:.1f}" for t in times) + " ms")
    sock.close()


def main() -> None:
    if sys.argv[1:2] == ["--imap"]:
        count = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
        names = sys.argv[4].split(",") if len(sys.argv) > 4 else []
        steps(int(sys.argv[2]), count, lambda: rss_of_names(names))
        stress(int(sys.argv[2]), count, lambda: rss_of_names(names))
        return
    binary = sys.argv[1] if len(sys.argv) > 1 else str(REPO / "target/release/portico")
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    root = pathlib.Path(tempfile.mkdtemp(prefix="portico-bigfolder-"))
    proc = None
    try:
        imap, smtp = free_port(), free_port()
        config = root / "cluster.toml"
        config.write_text(
            'cluster = "bench"\nlocal_domains = ["example.com"]\n'
            '[[site]]\nname = "s"\n[[node]]\nname = "n"\nsite = "s"\n'
            'roles = ["frontend", "backend", "directory"]\ndata_dir = "data"\n'
            f'[node.listen]\nimap = "127.0.0.1:{imap}"\nsmtp = "127.0.0.1:{smtp}"\n'
            '[imap]\nenabled = true\nlogin = "plaintext"\n'
            '[smtp]\nenabled = true\ntrusted_networks = ["127.0.0.0/8"]\n'
        )
        cli = [binary, "--config", str(config)]
        subprocess.run(cli + ["user", "add", USER, "--password-stdin"],
                       input=PASSWORD.encode() + b"\n", check=True, capture_output=True)
        log = root / "server.log"
        proc = subprocess.Popen(cli + ["serve"], stderr=open(log, "wb"))
        wait_port(imap)
        wait_port(smtp)
        start = time.perf_counter()
        deliver_many(smtp, USER, count, message, connections=16)
        fill = time.perf_counter() - start
        print(f"filled {count} messages in {fill:.1f} s ({count / fill:.0f} msgs/s); "
              f"server RSS {rss_mib(proc.pid):.0f} MiB")
        wait_indexed(log, count, start)

        steps(imap, count, lambda: rss_mib(proc.pid))
        stress(imap, count, lambda: rss_mib(proc.pid))
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def steps(imap: int, count: int, rss) -> None:
    """The timed steps, on a second session after a first has warmed the folder."""
    warm = imaplib.IMAP4("127.0.0.1", imap)
    warm.login(USER, PASSWORD)
    warm.select("INBOX")
    warm.uid("FETCH", "1:*", "(FLAGS)")
    warm.logout()

    c = imaplib.IMAP4("127.0.0.1", imap)
    c.login(USER, PASSWORD)
    timed("STATUS INBOX (MESSAGES UNSEEN)",
          lambda: c.status("INBOX", "(MESSAGES UNSEEN)"))
    timed("SELECT INBOX", lambda: c.select("INBOX"))
    timed("UID FETCH 1:* (FLAGS)", lambda: c.uid("FETCH", "1:*", "(FLAGS)"))
    timed("FETCH 1,000 messages' FROM/SUBJECT/DATE",
          lambda: c.fetch(f"{count - 999}:{count}",
                          "(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"))
    timed("SEARCH SUBJECT", lambda: c.search(None, "SUBJECT", '"topic 42"'))
    timed("SEARCH BODY", lambda: c.search(None, "BODY", "w1000."))
    raw_timings(imap, "before STORE", count)
    timed("STORE 1:* +FLAGS (\\Seen)",
          lambda: c.store("1:*", "+FLAGS.SILENT", "(\\Seen)"))
    timed("STATUS INBOX (MESSAGES UNSEEN) again",
          lambda: c.status("INBOX", "(MESSAGES UNSEEN)"))
    print(f"server RSS {rss():.0f} MiB")
    c.logout()
    raw_timings(imap, "after STORE", count)


if __name__ == "__main__":
    main()
