#!/usr/bin/env python3
"""`user move` on the four-node example cluster (scripts/cluster-up.sh), through the real
command line and servers: a mailbox of d2 with MESSAGES small messages (delivered over
SMTP) and one BIG_MB message is moved to s2, asked at s1 (which forwards it to d2).

Reported: the move's wall time around the command (process start included), its rate
in messages and MB per second, and how long the user could not sign in: a client
signs in through d1 every 50 ms during the move, and the window runs from the first
refusal to the first session that sees every message at the new home.

Usage: scripts/bench-move.py [--messages N] [--big-mb M]
The binary is $PORTICO_BIN, else target/release/portico.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import imaplib
import importlib.util
import smtplib
import ssl
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_directory", HERE / "bench-directory.py")
bench_directory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_directory)
Cluster, IPS = bench_directory.Cluster, bench_directory.IPS

USER = "mover@example.com"
PASSWORD = "pw"
SMTP_OFFSET, IMAP_OFFSET = 4, 2


def port(cluster: Cluster, offset: int) -> int:
    return int(cluster.env["PORTICO_CLUSTER_PORT_BASE"]) + offset


def fill(cluster: Cluster, count: int, connections: int = 4) -> None:
    def send(first: int) -> None:
        with smtplib.SMTP(IPS["d2"], port(cluster, SMTP_OFFSET), timeout=60) as smtp:
            for i in range(first, count, connections):
                body = f"message {i} " * 100
                smtp.sendmail("bench@remote.example", [USER],
                              f"Subject: bench {i}\r\nMessage-ID: <{i}@bench>\r\n\r\n{body}\r\n")

    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        list(pool.map(send, range(connections)))


def inbox_count(cluster: Cluster, node: str) -> int | str:
    """Messages in the INBOX through `node`, or the refusal's text."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    client = imaplib.IMAP4(IPS[node], port(cluster, IMAP_OFFSET), timeout=60)
    try:
        client.starttls(context)
        client.login(USER, PASSWORD)
        typ, data = client.status("INBOX", "(MESSAGES)")
        return int(data[0].split(b"MESSAGES ")[1].rstrip(b")")) if typ == "OK" else str(data)
    except imaplib.IMAP4.error as e:
        return str(e)
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--big-mb", type=int, default=50)
    options = parser.parse_args()
    total = options.messages + 1
    with tempfile.TemporaryDirectory(prefix="portico-bench-move-") as tmp:
        cluster = Cluster(Path(tmp))
        cluster.up()
        try:
            cluster.cli("d1", "user", "add", USER, "--password-stdin", "--home", "d2",
                        input=f"{PASSWORD}\n".encode())
            started = time.perf_counter()
            fill(cluster, options.messages)
            big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (options.big_mb * 1024)
            cluster.cli("d2", "deliver", USER, input=big)
            while inbox_count(cluster, "d1") != total:
                time.sleep(0.5)
            print(f"filled: {total} messages in {time.perf_counter() - started:.1f} s")

            refused: list[float] = []
            stop = threading.Event()

            def probe() -> None:
                while not stop.is_set():
                    answer = inbox_count(cluster, "d1")
                    if answer == total and refused:
                        break
                    if answer != total:
                        refused.append(time.perf_counter())
                    time.sleep(0.05)
                refused.append(time.perf_counter())

            prober = threading.Thread(target=probe)
            prober.start()
            started = time.perf_counter()
            report = cluster.cli("s1", "user", "move", USER, "--home", "s2").strip()
            elapsed = time.perf_counter() - started
            prober.join(120)
            stop.set()
            print(report)
            moved_mb = int(report.rsplit(", ", 1)[1].split()[0]) / 1e6
            print(f"move: {elapsed:.2f} s, {total / elapsed:.0f} messages/s, "
                  f"{moved_mb / elapsed:.1f} MB/s")
            if len(refused) > 1:
                print(f"sign-in refused for {refused[-1] - refused[0]:.2f} s "
                      f"(first refusal to the first session at the new home)")
            assert inbox_count(cluster, "s1") == total
        finally:
            cluster.down()


if __name__ == "__main__":
    main()
