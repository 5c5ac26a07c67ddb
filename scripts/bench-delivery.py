#!/usr/bin/env python3
"""Delivery benchmark through the real server: SMTP senders on loopback, each sending
many messages on one connection to the inbound port, into one INBOX or into one INBOX
per sender. Reports deliveries per second and how many fdatasync/fsync calls the server
made per message, counted by strace (attached with --seccomp-bpf, so only those calls
are traced).

    cargo build --release && scripts/bench-delivery.py
    scripts/bench-delivery.py --binary OTHER/portico --senders 1,4,16 --messages 2000
    scripts/bench-delivery.py --fill 100000      # also: RSS after 100,000 deliveries

Every node it starts is its own, on free loopback ports in a temporary directory, and is
stopped at the end. Installs strace (Debian) if it is missing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import multiprocessing
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOMAIN = "example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server did not listen on {port}")


def config(root: Path, smtp: int, extra: str = "") -> Path:
    path = root / "cluster.toml"
    path.write_text(
        f"""cluster = "bench"
local_domains = ["{DOMAIN}"]
[[site]]
name = "s"
[[node]]
name = "n"
site = "s"
roles = ["frontend", "backend", "directory"]
data_dir = "data"
[node.listen]
smtp = "127.0.0.1:{smtp}"
[smtp]
enabled = true
hostname = "bench.example"
max_commands = 1000000
"""
        + extra
    )
    return path


def message(n: int, size: int) -> bytes:
    head = f"From: bench@remote.example\r\nTo: user@{DOMAIN}\r\nSubject: bench {n}\r\n\r\n"
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head.encode() + body


def send_all(port: int, rcpt: str, count: int, size: int, errors) -> None:
    """One sender: one connection, `count` messages. A process of its own, so that the
    senders are as concurrent as the machine allows (threads would share one GIL)."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            smtp.ehlo("bench.remote.example")
            for n in range(count):
                smtp.sendmail("bench@remote.example", [rcpt], message(n, size))
    except Exception as e:  # noqa: BLE001 - reported below
        errors.put(repr(e))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def server_pid(strace: subprocess.Popen) -> int:
    """The portico process under strace."""
    children = Path(f"/proc/{strace.pid}/task/{strace.pid}/children").read_text().split()
    return int(children[0])


def run(binary: Path, senders: int, per_sender: int, size: int, many: bool, extra: str = "") -> dict:
    root = Path(tempfile.mkdtemp(prefix="portico-bench-"))
    try:
        port = free_port()
        cfg = config(root, port, extra)
        users = [f"user{i}@{DOMAIN}" for i in range(senders if many else 1)]
        for user in users:
            subprocess.run(
                [binary, "--config", cfg, "user", "add", user, "--password-stdin"],
                input=b"bench-Password-1\n",
                check=True,
                capture_output=True,
            )
        trace = root / "strace.txt"
        strace = subprocess.Popen(
            ["strace", "-f", "--seccomp-bpf", "-c", "-o", trace,
             "-e", "trace=fdatasync,fsync", binary, "--config", cfg, "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(port, time.monotonic() + 30)
        queue = multiprocessing.Queue()
        procs = [
            multiprocessing.Process(
                target=send_all,
                args=(port, users[i % len(users)], per_sender, size, queue),
            )
            for i in range(senders)
        ]
        start = time.monotonic()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        elapsed = time.monotonic() - start
        errors = []
        while not queue.empty():
            errors.append(queue.get())
        pid = server_pid(strace)
        rss = rss_kib(pid)
        # The server, not strace: a tracer that dies first leaves its tracee unable to
        # make the traced calls.
        os.kill(pid, signal.SIGTERM)
        strace.wait(timeout=60)
        syncs = 0
        for line in trace.read_text().splitlines():
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fdatasync|fsync)$", line)
            if m:
                syncs += int(m.group(1))
        total = senders * per_sender
        return {
            "messages": total,
            "errors": len(errors),
            "per_second": total / elapsed,
            "syncs_per_message": syncs / total,
            "rss_mib": rss / 1024,
            "first_error": errors[0] if errors else "",
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=REPO / "target/release/portico")
    parser.add_argument("--senders", default="1,4,16")
    parser.add_argument("--messages", type=int, default=1600, help="per configuration")
    parser.add_argument("--size", type=int, default=4096, help="bytes per message")
    parser.add_argument("--config-extra", default="",
                        help='lines appended to the node configuration, e.g. "[store]\\ngroup_commit_delay_us = 0"')
    parser.add_argument("--fill", type=int, default=0,
                        help="also deliver this many messages (16 senders, one INBOX) and report RSS")
    args = parser.parse_args()
    if not shutil.which("strace"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "strace"], check=True)
    extra = args.config_extra.replace("\\n", "\n")
    if not args.binary.exists():
        raise SystemExit(f"{args.binary} missing: cargo build --release")
    print(f"binary {args.binary}, {args.size}-byte messages, "
          "syncs = fdatasync + fsync calls of the whole server, startup and shutdown included")
    print(f"{'target':<14}{'senders':>8}{'messages':>10}{'msgs/s':>10}{'syncs/msg':>11}{'RSS MiB':>9}")
    for many in (False, True):
        for senders in [int(s) for s in args.senders.split(",")]:
            per = max(1, args.messages // senders)
            r = run(args.binary, senders, per, args.size, many, extra)
            target = "one INBOX each" if many else "one INBOX"
            print(f"{target:<14}{senders:>8}{r['messages']:>10}{r['per_second']:>10.0f}"
                  f"{r['syncs_per_message']:>11.3f}{r['rss_mib']:>9.1f}"
                  + (f"  {r['errors']} errors: {r['first_error']}" if r["errors"] else ""))
            sys.stdout.flush()
    if args.fill:
        r = run(args.binary, 16, args.fill // 16, args.size, False, extra)
        print(f"fill: {r['messages']} deliveries at {r['per_second']:.0f}/s, "
              f"{r['syncs_per_message']:.3f} syncs/msg, server RSS after: {r['rss_mib']:.1f} MiB"
              + (f", {r['errors']} errors: {r['first_error']}" if r["errors"] else ""))


if __name__ == "__main__":
    os.setpgrp()
    main()
