#!/usr/bin/env python3
"""Delivery benchmark through the real server: SMTP senders on loopback, each sending
many messages on one connection to the inbound port (PIPELINING: MAIL, RCPT and DATA in
one write), into one INBOX or into one INBOX per sender. Reports deliveries per second
and how many fdatasync/fsync calls the server made per message.

The sync count comes from the server's own counters (`portico stats`, read before and
after the load). `--strace` runs the server under `strace -f -c` instead and counts the
calls from the syscalls: the two agree, but the tracer slows every sync down several
times (and so changes how deliveries group), so figures are taken without it.

    cargo build --release && scripts/bench-delivery.py
    scripts/bench-delivery.py --binary OTHER/portico --senders 1,4,16 --messages 4000
    scripts/bench-delivery.py --fill 100000      # also: RSS after 100,000 deliveries

The senders are asyncio connections in one Python process. Every node it starts is its
own, on free loopback ports in a temporary directory, and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
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


def config(root: Path, smtp: int, extra: str) -> Path:
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
    return head.encode() + body + b".\r\n"


async def reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return line


async def sender(port: int, rcpt: str, count: int, size: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reply(reader)
    writer.write(b"EHLO bench.remote.example\r\n")
    await reply(reader)
    envelope = f"MAIL FROM:<bench@remote.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode()
    for n in range(count):
        writer.write(envelope)
        for expected in (b"250", b"250", b"354"):
            line = await reply(reader)
            if not line.startswith(expected):
                raise RuntimeError(f"{line!r} where {expected!r} was expected")
        writer.write(message(n, size))
        line = await reply(reader)
        if not line.startswith(b"250"):
            raise RuntimeError(f"message refused: {line!r}")
    writer.write(b"QUIT\r\n")
    await reply(reader)
    writer.close()


async def load(port: int, users: list[str], senders: int, per: int, size: int) -> list:
    return await asyncio.gather(
        *(sender(port, users[i % len(users)], per, size) for i in range(senders)),
        return_exceptions=True,
    )


def stats(binary: Path, cfg: Path) -> dict[str, int]:
    """The node's counters; empty for a build that has no `stats` (compare those with
    --strace)."""
    out = subprocess.run([binary, "--config", cfg, "stats"], capture_output=True, text=True)
    if out.returncode != 0:
        return {}
    return {k: int(v) for k, v in (line.split() for line in out.stdout.splitlines())}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(binary: Path, senders: int, per: int, size: int, many: bool, extra: str,
        use_strace: bool) -> dict:
    root = Path(tempfile.mkdtemp(prefix="portico-bench-"))
    try:
        port = free_port()
        cfg = config(root, port, extra)
        users = [f"user{i}@{DOMAIN}" for i in range(senders if many else 1)]
        for user in users:
            subprocess.run(
                [binary, "--config", cfg, "user", "add", user, "--password-stdin"],
                input=b"bench-Password-1\n", check=True, capture_output=True,
            )
        trace = root / "strace.txt"
        command = [binary, "--config", cfg, "serve"]
        if use_strace:
            command = ["strace", "-f", "--seccomp-bpf", "-c", "-o", trace,
                       "-e", "trace=fdatasync,fsync", *command]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, time.monotonic() + 30)
        pid = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0]) \
            if use_strace else proc.pid
        before = stats(binary, cfg)
        cpu_before = sum(int(x) for x in Path(f"/proc/{pid}/stat").read_text().split()[13:15])
        start = time.monotonic()
        results = asyncio.run(load(port, users, senders, per, size))
        elapsed = time.monotonic() - start
        cpu = sum(int(x) for x in Path(f"/proc/{pid}/stat").read_text().split()[13:15]) - cpu_before
        after = stats(binary, cfg)
        rss = rss_kib(pid)
        # The server, not strace: a tracer that dies first leaves its tracee unable to
        # make the traced calls.
        os.kill(pid, signal.SIGTERM)
        proc.wait(timeout=60)
        errors = [repr(r) for r in results if isinstance(r, BaseException)]
        total = senders * per
        traced = None
        if use_strace:
            traced = 0
            for line in trace.read_text().splitlines():
                m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fdatasync|fsync)$", line)
                if m:
                    traced += int(m.group(1))
        return {
            "messages": total,
            "errors": errors,
            "per_second": total / elapsed,
            "syncs_per_message": (after["store_sync_calls"] - before["store_sync_calls"]) / total
            if before else float("nan"),
            "traced_per_message": traced / total if traced is not None else None,
            "cpu_ms_per_message": cpu * 10 / total,
            "rss_mib": rss / 1024,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=REPO / "target/release/portico")
    parser.add_argument("--senders", default="1,4,16")
    parser.add_argument("--messages", type=int, default=4000, help="per configuration")
    parser.add_argument("--size", type=int, default=4096, help="bytes per message")
    parser.add_argument("--config-extra", default="",
                        help='lines appended to the node configuration, e.g. "[store]\\ngroup_commit_delay_us = 0"')
    parser.add_argument("--strace", action="store_true",
                        help="also count the calls with strace (slows the server down)")
    parser.add_argument("--fill", type=int, default=0,
                        help="also deliver this many messages (16 senders, one INBOX) and report RSS")
    args = parser.parse_args()
    extra = args.config_extra.replace("\\n", "\n")
    if args.strace and not shutil.which("strace"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "strace"], check=True)
    if not args.binary.exists():
        raise SystemExit(f"{args.binary} missing: cargo build --release")
    print(f"binary {args.binary}, {args.size}-byte messages; syncs = fdatasync/fsync calls "
          "of the store" + (", and as counted by strace" if args.strace else ""))
    print(f"{'target':<15}{'senders':>8}{'messages':>10}{'msgs/s':>9}{'syncs/msg':>11}"
          + (f"{'strace':>8}" if args.strace else "") + f"{'CPU ms/msg':>11}{'RSS MiB':>9}")
    for many in (False, True):
        for senders in [int(s) for s in args.senders.split(",")]:
            per = max(1, args.messages // senders)
            r = run(args.binary, senders, per, args.size, many, extra, args.strace)
            target = "one INBOX each" if many else "one INBOX"
            print(f"{target:<15}{senders:>8}{r['messages']:>10}{r['per_second']:>9.0f}"
                  f"{r['syncs_per_message']:>11.3f}"
                  + (f"{r['traced_per_message']:>8.3f}" if args.strace else "")
                  + f"{r['cpu_ms_per_message']:>11.3f}{r['rss_mib']:>9.1f}"
                  + (f"  {len(r['errors'])} errors: {r['errors'][0]}" if r["errors"] else ""),
                  flush=True)
    if args.fill:
        r = run(args.binary, 16, args.fill // 16, args.size, False, extra, False)
        print(f"fill: {r['messages']} deliveries at {r['per_second']:.0f}/s, "
              f"{r['syncs_per_message']:.3f} syncs/msg, server RSS after: {r['rss_mib']:.1f} MiB"
              + (f", {len(r['errors'])} errors: {r['errors'][0]}" if r["errors"] else ""))


if __name__ == "__main__":
    main()
