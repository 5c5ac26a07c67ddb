#!/usr/bin/env python3
"""SEARCH with many TEXT keys through the real server (issue: each TEXT key used to
decode every message again, so `NOT TEXT q1 NOT TEXT q2 …` could occupy a worker for
seconds). Delivers the first 100 messages of tests/corpus to a fresh node on loopback
and times one `SEARCH` of N `NOT TEXT` keys over them. Then two sessions run that search
at once while a third times `FETCH 1:* (FLAGS)` round trips: the searches must not stall
the node for everyone else (they run on the blocking pool, a slice at a time).

    cargo build --release && scripts/bench-search.py [BINARY] [KEYS]

BINARY defaults to target/release/portico, KEYS to 499 (under the 1,000-key limit).
"""

import imaplib
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    binary = sys.argv[1] if len(sys.argv) > 1 else str(REPO / "target/release/portico")
    keys = int(sys.argv[2]) if len(sys.argv) > 2 else 499
    root = pathlib.Path(tempfile.mkdtemp(prefix="portico-search-"))
    proc = None
    try:
        port = free_port()
        config = root / "cluster.toml"
        config.write_text(
            f'cluster = "bench"\n[[site]]\nname = "s"\n[[node]]\nname = "n"\nsite = "s"\n'
            f'roles = ["frontend", "backend", "directory"]\ndata_dir = "data"\n'
            f'[node.listen]\nimap = "127.0.0.1:{port}"\n[imap]\nenabled = true\n'
            f'login = "plaintext"\n'
        )
        cli = [binary, "--config", str(config)]
        subprocess.run(cli + ["user", "add", "a@example.com", "--password-stdin"],
                       input=b"pw-Search-1\n", check=True, capture_output=True)
        corpus = sorted((REPO / "tests/corpus").glob("*.eml"))[:100]
        for path in corpus:
            subprocess.run(cli + ["deliver", "a@example.com"], input=path.read_bytes(),
                           check=True, capture_output=True)
        proc = subprocess.Popen(cli + ["serve"], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                client = imaplib.IMAP4("127.0.0.1", port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.login("a@example.com", "pw-Search-1")
        client.select("INBOX")
        criteria = " ".join(f"NOT TEXT q{i}" for i in range(keys))
        start = time.perf_counter()
        typ, _ = client.search(None, criteria)
        elapsed = time.perf_counter() - start
        print(f"SEARCH with {keys} NOT TEXT keys over {len(corpus)} messages: "
              f"{typ} in {elapsed * 1000:.0f} ms ({binary})")

        def search_repeatedly(stop: threading.Event) -> None:
            searcher = imaplib.IMAP4("127.0.0.1", port)
            searcher.login("a@example.com", "pw-Search-1")
            searcher.select("INBOX")
            while not stop.is_set():
                searcher.search(None, criteria)
            searcher.logout()

        stop = threading.Event()
        searchers = [threading.Thread(target=search_repeatedly, args=(stop,)) for _ in range(2)]
        for t in searchers:
            t.start()
        time.sleep(0.5)
        rounds = []
        until = time.monotonic() + 10
        while time.monotonic() < until:
            start = time.perf_counter()
            client.fetch("1:*", "(FLAGS)")
            rounds.append(time.perf_counter() - start)
            time.sleep(0.05)
        stop.set()
        for t in searchers:
            t.join()
        print(f"while 2 sessions search for 10 s: {len(rounds)} FETCH 1:* (FLAGS) round trips, "
              f"median {statistics.median(rounds) * 1000:.1f} ms, "
              f"max {max(rounds) * 1000:.1f} ms")
        client.logout()
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
