#!/usr/bin/env python3
"""A 100,000-message INBOX through the real server: fills it over inbound SMTP (BDAT,
eight connections), then times what a heavy user's client does, each on a second
session (warm), and reads the server's RSS.

    cargo build --release && scripts/bench-bigfolder.py [BINARY] [COUNT]
    scripts/bench-bigfolder.py --imap PORT [COUNT]

BINARY defaults to target/release/portico, COUNT to 100000. Prints one line a step.
With --imap, runs only the steps, against an IMAP server already listening on
127.0.0.1:PORT whose user big@example.com (password pw-Bigfolder-1) has COUNT messages
made by `message()` in its INBOX: how Dovecot was measured beside Portico (its maildir
filled with those files, plaintext login allowed).
"""

from __future__ import annotations

import imaplib
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
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
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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
    """The same commands read by a bare socket client: imaplib spends more time
    parsing 100,000 responses than the server takes to send them."""
    sock = socket.create_connection(("127.0.0.1", port))
    reader = sock.makefile("rb")
    reader.readline()

    def command(tag: str, text: str) -> float:
        sock.sendall(f"{tag} {text}\r\n".encode())
        start = time.perf_counter()
        while True:
            line = reader.readline()
            if line.startswith(tag.encode() + b" "):
                assert line.startswith(tag.encode() + b" OK"), line
                return time.perf_counter() - start

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
        times = [command(f"c{i}", text) * 1000 for i in range(3)]
        print(f"raw client {when}, {label}: " + ", ".join(f"{t:.1f}" for t in times) + " ms")
    sock.close()


def main() -> None:
    if sys.argv[1:2] == ["--imap"]:
        count = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
        steps(int(sys.argv[2]), count, None)
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

        steps(imap, count, proc.pid)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def steps(imap: int, count: int, pid: int | None) -> None:
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
    if pid:
        print(f"server RSS {rss_mib(pid):.0f} MiB")
    c.logout()
    raw_timings(imap, "after STORE", count)


if __name__ == "__main__":
    main()
