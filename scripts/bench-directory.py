#!/usr/bin/env python3
"""Directory benchmarks on the four-node example cluster (scripts/cluster-up.sh), through
the real command line and servers:

  write latency   `user set` run on a follower: forwarded to the leader, committed by a
                  majority of the three voters, answered. Measured around the whole
                  command, so it includes starting the `portico` process; `stats` (a
                  local request with no directory work) is measured the same way as the
                  baseline.
  election        kill -9 of the leader until another node's `cluster status` names a
                  new leader (polled every 20 ms).
  catch-up        the learner s2 stopped, ACCOUNTS accounts added, s2 started: from its
                  start until its replica lists every account.

Usage: scripts/bench-directory.py [--writes N] [--elections N] [--accounts N]
The binary is $PORTICO_BIN, else target/release/portico.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import random
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("PORTICO_BIN", REPO / "target/release/portico"))
NODES = ["d1", "d2", "s1", "s2"]
IPS = {"d1": "127.0.0.11", "d2": "127.0.0.12", "s1": "127.0.0.13", "s2": "127.0.0.14"}


def free_base() -> int:
    while True:
        base = random.randrange(20000, 40000, 10)
        try:
            for ip in IPS.values():
                for port in range(base, base + 8):
                    with socket.socket() as s:
                        s.bind((ip, port))
            return base
        except OSError:
            continue


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.config = root / "cluster.toml"
        self.env = dict(os.environ, PORTICO_BIN=str(BIN),
                        PORTICO_CLUSTER_PORT_BASE=str(free_base()))

    def up(self) -> None:
        subprocess.run([REPO / "scripts/cluster-up.sh", self.root], env=self.env,
                       check=True, stdout=subprocess.DEVNULL)

    def down(self, node: str | None = None, kill: bool = False) -> None:
        args = [REPO / "scripts/cluster-down.sh"] + (["--kill"] if kill else [])
        args += [self.root] + ([node] if node else [])
        subprocess.run(args, env=self.env, check=True, stdout=subprocess.DEVNULL)

    def cli(self, node: str, *args: str, input: bytes = b"") -> str:
        r = subprocess.run([BIN, "--config", self.config, "--node", node, *args],
                           input=input, capture_output=True, check=True)
        return r.stdout.decode()

    def leader(self, node: str) -> str | None:
        try:
            first = self.cli(node, "cluster", "status").splitlines()[0]
        except subprocess.CalledProcessError:
            return None
        name = first.removeprefix("leader: ")
        return None if name == "none" else name


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--elections", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=10000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="portico-bench-dir-") as tmp:
        cluster = Cluster(Path(tmp))
        cluster.up()
        try:
            leader = cluster.leader("d1")
            follower = next(n for n in ("s1", "d2", "d1") if n != leader)
            cluster.cli(follower, "user", "add", "bench@example.com", "--password-stdin",
                        "--home", "d1", input=b"pw\n")
            writes = [timed(lambda: cluster.cli(follower, "user", "set", "bench@example.com",
                                                "--imap", "on"))
                      for _ in range(options.writes)]
            local = [timed(lambda: cluster.cli(follower, "stats")) for _ in range(options.writes)]
            print(f"write from follower {follower} (leader {leader}), {options.writes} writes: "
                  f"median {statistics.median(writes):.1f} ms, p99 {percentile(writes, 0.99):.1f} ms; "
                  f"local request baseline median {statistics.median(local):.1f} ms")

            for _ in range(options.elections):
                old = cluster.leader("d1") or cluster.leader("s1")
                witness = next(n for n in ("d1", "s1", "d2") if n != old)
                cluster.down(old, kill=True)
                killed = time.perf_counter()
                while (new := cluster.leader(witness)) in (None, old):
                    time.sleep(0.02)
                elapsed = (time.perf_counter() - killed) * 1000
                print(f"election after kill -9 of {old}: {new} leads after {elapsed:.0f} ms")
                cluster.up()

            cluster.down("s2")
            # A few at once: each command hashes its password (argon2) before asking.
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                list(pool.map(
                    lambda i: cluster.cli(follower, "user", "add", f"catch{i}@example.com",
                                          "--password-stdin", "--home", "d1", input=b"pw\n"),
                    range(options.accounts)))
            expected = len(cluster.cli("d1", "user", "list").splitlines())
            started = time.perf_counter()
            cluster.up()
            while True:
                try:
                    if len(cluster.cli("s2", "user", "list").splitlines()) == expected:
                        break
                except subprocess.CalledProcessError:
                    pass
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            print(f"learner s2, {options.accounts} accounts behind: caught up "
                  f"{elapsed:.2f} s after its start (process start included)")
        finally:
            cluster.down()


if __name__ == "__main__":
    main()
