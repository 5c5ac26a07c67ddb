#!/usr/bin/env python3
"""Opens N authenticated IMAP IDLE sessions against a fresh Portico node on loopback,
reports the node's resident memory per idle session, then delivers one message and
measures how long each idling session takes to see `* n EXISTS`.

Usage: scripts/idle-load.py [--sessions 10000] [--bin target/release/portico]

Everything runs on 127.0.0.1 with ports picked at run time; the script raises its own
and the server's open-file limit, and stops the server when done. Not part of the test
suite: figures go in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER = "idle@example.com"
PASSWORD = "idle-pass"
# A second account whose single idling session is timed while the others idle around it.
PROBE = "probe@example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_nofile(target: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(target, soft), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def open_idle(port: int, ready: list, sessions: list, user: str = USER) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()  # greeting
    writer.write(f"a LOGIN {user} {PASSWORD}\r\nb SELECT INBOX\r\nc IDLE\r\n".encode())
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            raise RuntimeError("connection closed before IDLE")
        if line.startswith(b"a NO") or line.startswith(b"b NO"):
            raise RuntimeError(line.decode(errors="replace"))
        if line.startswith(b"+ "):
            break
    ready.append(1)
    sessions.append((reader, writer))


async def wait_exists(reader: asyncio.StreamReader, start: list, deadline: float) -> float | None:
    while True:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            return None
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except asyncio.TimeoutError:
            return None
        if not line:
            return None
        if line.endswith(b"EXISTS\r\n"):
            return time.monotonic() - start[0]


async def run(args: argparse.Namespace, port: int, server: subprocess.Popen, config: Path) -> None:
    base = rss_kib(server.pid)
    sessions: list = []
    ready: list = []
    started = time.monotonic()
    batch = 200
    for i in range(0, args.sessions, batch):
        n = min(batch, args.sessions - i)
        await asyncio.gather(*(open_idle(port, ready, sessions) for _ in range(n)))
    opened = time.monotonic() - started
    await asyncio.sleep(1.0)  # let allocations settle before reading RSS
    loaded = rss_kib(server.pid)
    per_session = (loaded - base) / max(1, len(sessions))
    print(f"sessions idling:        {len(sessions)} (opened in {opened:.1f} s)")
    print(f"server RSS before/after: {base} KiB / {loaded} KiB")
    print(f"RSS per idle session:   {per_session:.1f} KiB")

    start = [0.0]
    deadline = time.monotonic() + 30
    waiters = [asyncio.create_task(wait_exists(r, start, deadline)) for r, _ in sessions]
    message = b"Subject: push\r\nFrom: a@example.com\r\n\r\nhello\r\n"
    start[0] = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        args.bin, "--config", str(config), "deliver", USER,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )
    await proc.communicate(message)
    delivered = time.monotonic() - start[0]
    latencies = [x for x in await asyncio.gather(*waiters) if x is not None]
    print(f"deliver command took:   {delivered * 1000:.1f} ms (includes process start)")
    print(f"sessions that saw EXISTS: {len(latencies)} of {len(sessions)}")
    if latencies:
        latencies.sort()
        pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
        print(
            "EXISTS latency from deliver start (ms): "
            f"min {latencies[0] * 1000:.1f}  median {statistics.median(latencies) * 1000:.1f}  "
            f"p99 {pick(0.99) * 1000:.1f}  max {latencies[-1] * 1000:.1f}"
        )
    # Round two: one user's idling session while all the others idle too, as on a real
    # node (each user watches their own INBOX). Another session APPENDs to that INBOX;
    # latency runs from the moment the tagged OK says the message is durable (the EXISTS
    # may even arrive first, which counts as 0) and from when the APPEND was sent.
    probe: list = []
    await open_idle(port, [], probe, PROBE)
    probe_reader = probe[0][0]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(f"p LOGIN {PROBE} {PASSWORD}\r\n".encode())
    await writer.drain()
    while not (await reader.readline()).startswith(b"p "):
        pass
    from_durable, from_sent = [], []
    for i in range(args.rounds):
        sent = time.monotonic()
        writer.write(b"q%d APPEND INBOX {%d+}\r\n" % (i, len(message)) + message + b"\r\n")
        await writer.drain()
        seen = asyncio.create_task(wait_exists(probe_reader, [sent], sent + 10))
        while True:
            line = await reader.readline()
            if line.startswith(b"q%d " % i):
                durable = time.monotonic()
                break
        latency = await seen
        if latency is not None:
            from_sent.append(latency)
            from_durable.append(max(0.0, sent + latency - durable))
    for name, values in (("APPEND sent", from_sent), ("APPEND durable (tagged OK)", from_durable)):
        values.sort()
        if values:
            print(
                f"probe EXISTS latency from {name} over {len(values)} rounds (ms): "
                f"median {statistics.median(values) * 1000:.2f}  "
                f"p99 {values[min(len(values) - 1, int(0.99 * len(values)))] * 1000:.2f}  "
                f"max {values[-1] * 1000:.2f}"
            )
    writer.close()

    # Round three: fan-out, one APPEND seen by every idling session of the first user.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(f"x LOGIN {USER} {PASSWORD}\r\n".encode())
    await writer.drain()
    while not (await reader.readline()).startswith(b"x "):
        pass
    deadline = time.monotonic() + 30
    waiters = [asyncio.create_task(wait_exists(r, start, deadline)) for r, _ in sessions]
    start[0] = time.monotonic()
    writer.write(b"y APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n")
    await writer.drain()
    while True:
        line = await reader.readline()
        if line.startswith(b"y "):
            durable = time.monotonic() - start[0]
            break
    latencies = sorted(x for x in await asyncio.gather(*waiters) if x is not None)
    print(f"fan-out APPEND tagged OK after: {durable * 1000:.1f} ms")
    print(f"sessions that saw EXISTS: {len(latencies)} of {len(sessions)}")
    if latencies:
        pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
        print(
            "EXISTS latency from APPEND sent (ms): "
            f"min {latencies[0] * 1000:.1f}  median {statistics.median(latencies) * 1000:.1f}  "
            f"p99 {pick(0.99) * 1000:.1f}  max {latencies[-1] * 1000:.1f}"
        )
    writer.close()
    for _, writer in sessions:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=200, help="probe APPENDs to time")
    parser.add_argument("--bin", default=str(ROOT / "target" / "release" / "portico"))
    args = parser.parse_args()
    raise_nofile(args.sessions * 2 + 1024)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "cluster.toml"
        port = free_port()
        config.write_text(
            f"""cluster = "idle-load"
[[site]]
name = "s"
[[node]]
name = "n"
site = "s"
roles = ["frontend", "backend", "directory"]
data_dir = "data"
[node.listen]
imap = "127.0.0.1:{port}"
[security]
max_connections = {args.sessions + 100}
max_connections_per_address = {args.sessions + 100}
[imap]
enabled = true
login = "plaintext"
"""
        )
        for user in (USER, PROBE):
            subprocess.run(
                [args.bin, "--config", str(config), "user", "add", user, "--password-stdin"],
                input=PASSWORD.encode(), check=True, stdout=subprocess.DEVNULL,
            )
        log = open(Path(tmp) / "server.log", "wb")
        server = subprocess.Popen(
            [args.bin, "--config", str(config), "serve"],
            stderr=log, env={**os.environ, "RUST_LOG": "warn"},
            preexec_fn=lambda: raise_nofile(args.sessions * 2 + 1024),
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        sys.exit("server did not start")
                    time.sleep(0.05)
            asyncio.run(run(args, port, server, config))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
