#!/usr/bin/env python3
"""IMAP session proxy benchmarks on the four-node example cluster (scripts/cluster-up.sh):
every client connects to d1 (frontend and backend, site dublin), as three users whose
mailboxes live on d1 ("direct"), on d2 ("same-site proxy": d1 hands the session to d2)
and on s2 ("cross-site proxy": to s2, in seattle). On loopback the two proxied paths
differ only in the node they reach.

  LOGIN       round trip of the LOGIN command alone (from its write to its tagged OK),
              on a connection already greeted and in TLS: over STARTTLS (port imap)
              and over implicit TLS (imaps). A new connection for every login, LOGOUT
              after it. The password check is the cached one (security.auth_cache_secs):
              every user signs in once before the timed logins.
  NOOP        round trip of NOOP on one signed-in session per path (IMAPS).
  IDLE        push latency, as scripts/idle-load.py measures it: per path a user (one
              of its own, with an INBOX of small messages only) idles (IMAPS, LOGIN,
              SELECT INBOX, IDLE) on a session connected to d1, while a second session
              of the same user, connected directly to the user's home node (d1, d2, s2),
              APPENDs a small message IDLE_APPENDS times, one at a time, each waiting
              for the idler's `* n EXISTS` (read on a thread of its own, so that both
              sessions are read at once). Per APPEND: milliseconds from its write to
              the EXISTS ("from sent"), and from its tagged OK (the message durable)
              to the EXISTS ("from OK"; an EXISTS that arrives before the OK counts as
              0, as in idle-load.py, and the number of those is shown); the APPEND's
              own round trip too. The target: < 10 ms median from the durable write to
              the client, through the proxy as directly.
  FETCH       `FETCH 1:* BODY.PEEK[]` of MESSAGES messages of MESSAGE_MB MiB each
              (APPENDed through d1 first, the APPEND rate shown too), over IMAPS; MB/s
              (10^6 bytes) of message bytes, of the median and of the best of ROUNDS
              fetches, proxied / direct, and the CPU time d1, the home node and this
              client used per GB (on a small machine all three share the CPUs).
  memory      (run first, before big messages pass through the nodes' allocators)
              RSS (VmRSS) of d1 and of s2 before and after opening SESSIONS idle
              sessions (IMAPS, LOGIN, SELECT INBOX, IDLE) through d1 for users homed on
              s2, per session on each node and in total. First the same number of direct
              sessions (users homed on d1) are opened and held, as the baseline of d1.
              Sessions are spread over several users (the per-user limit,
              security.max_connections_per_user, default 50) and several client
              addresses 127.0.1.x / 127.0.2.x (security.max_connections_per_address,
              default 200), so the example's configuration is used as it is.

Usage: scripts/bench-proxy.py [--logins N] [--noops N] [--idle-appends N] [--messages N]
                              [--message-mb M] [--rounds R] [--sessions K] [--plain]
                              [--dir DIR]
Paths and sessions run in turn (path 1, 2, 3, 1, 2, 3, ...) so that noise from the rest
of the machine spreads over all of them. Before measuring, the script waits until every
node's replica of the directory lists the new users: a learner (s2) refuses sessions
handed to it until its copy is filled (NO [UNAVAILABLE] to the client).
The binary is $PORTICO_BIN, else target/release/portico. The cluster gets free ports
(PORTICO_CLUSTER_PORT_BASE) in DIR/cluster, DIR a temporary directory (or the one given,
kept afterwards), and is always stopped at the end; warnings and errors of the nodes'
logs are summed up. --plain also measures LOGIN and NOOP on plain connections (no
TLS between client and d1; the internode link is mutual TLS all the same), with
imap.login = "plaintext" in a copy of cluster.toml: as Dovecot is measured below.

    scripts/bench-proxy.py --external direct=127.0.0.1:10143:bench:pw \\
                           --external proxy=127.0.0.1:10144:bench:pw

measures only LOGIN and NOOP, on plain (unencrypted) IMAP servers given as
LABEL=HOST:PORT:USER:PASSWORD, the first one being the baseline the others are compared
to; no cluster is started (scripts/bench-dovecot-proxy.sh uses this for Dovecot).
The exit status is 0 when every step worked, 1 when one failed.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import math
import os
import queue
import random
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("PORTICO_BIN", REPO / "target/release/portico"))
NODES = ["d1", "d2", "s1", "s2"]
IPS = {"d1": "127.0.0.11", "d2": "127.0.0.12", "s1": "127.0.0.13", "s2": "127.0.0.14"}
# Port offsets of scripts/cluster-up.sh's PORTICO_CLUSTER_PORT_BASE.
IMAP_OFFSET, IMAPS_OFFSET = 2, 3
PATHS = [("direct", "d1"), ("same-site proxy", "d2"), ("cross-site proxy", "s2")]
PASSWORD = "bench-proxy-pw"
# Idle sessions per user and per client address, under the example's limits (50, 200).
SESSIONS_PER_USER = 40
SESSIONS_PER_ADDRESS = 100
# IDLE push: untimed APPENDs per path first, and how long an EXISTS may take before the
# push counts as lost (a failure).
IDLE_WARMUP = 10
IDLE_WAIT_SECS = 5.0

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE


class Failure(Exception):
    pass


class Imap:
    """A minimal IMAP client on a raw socket: little work of its own between the
    server's bytes and the clock."""

    def __init__(self, host: str, port: int, mode: str, source: str | None = None,
                 timeout: float = 60):
        sock = socket.create_connection((host, port), timeout,
                                        source_address=(source, 0) if source else None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if mode == "imaps":
            sock = TLS.wrap_socket(sock)
        self.sock = sock
        self.buf = bytearray()
        self.scratch = bytearray()  # for literals, made on first use
        self.tags = 0
        greeting = self.readline()
        if not greeting.startswith(b"* OK"):
            raise Failure(f"{host}:{port}: greeting {greeting!r}")
        if mode == "starttls":
            self.command("STARTTLS")
            if self.buf:
                raise Failure("bytes after the STARTTLS answer")
            self.sock = TLS.wrap_socket(self.sock)
        elif mode not in ("plain", "imaps"):
            raise ValueError(mode)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def fill(self) -> None:
        data = self.sock.recv(256 * 1024)
        if not data:
            raise Failure("connection closed by the server")
        self.buf += data

    def readline(self) -> bytes:
        start = 0
        while True:
            end = self.buf.find(b"\r\n", start)
            if end >= 0:
                line = bytes(self.buf[:end + 2])
                del self.buf[:end + 2]
                return line
            start = max(0, len(self.buf) - 1)
            self.fill()

    def read_literal(self, size: int, keep: bool) -> bytes | None:
        """Reads `size` bytes; keeps them only when asked (FETCH timing copies nothing)."""
        kept = bytearray() if keep else None
        take = min(size, len(self.buf))
        if keep:
            kept += self.buf[:take]
        del self.buf[:take]
        left = size - take
        if left and not self.scratch:
            self.scratch = bytearray(1 << 20)
        view = memoryview(self.scratch)
        while left:
            n = self.sock.recv_into(view, min(left, len(self.scratch)))
            if not n:
                raise Failure("connection closed in a literal")
            if keep:
                kept += view[:n]
            left -= n
        return bytes(kept) if keep else None

    def next_tag(self) -> bytes:
        self.tags += 1
        return b"a%d" % self.tags

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, tag: bytes, keep: bool = False) -> tuple[bytes, list, list]:
        """Reads up to the tagged line: (tagged line, untagged lines, literals). Literal
        sizes are listed; their bytes too when `keep`."""
        lines, literals = [], []
        while True:
            line = self.readline()
            while (m := re.search(rb"\{(\d+)\+?\}\r\n$", line)):
                size = int(m.group(1))
                data = self.read_literal(size, keep)
                literals.append(data if keep else size)
                line = line[:m.start()] + self.readline()
            if line.startswith(tag + b" "):
                return line, lines, literals
            lines.append(line)

    def command(self, text: str, ok: bool = True, keep: bool = False):
        tag = self.next_tag()
        self.send(tag + b" " + text.encode() + b"\r\n")
        tagged, lines, literals = self.response(tag, keep)
        if ok and not tagged.startswith(tag + b" OK"):
            raise Failure(f"{text.split()[0]}: {tagged.decode(errors='replace').strip()}")
        return tagged, lines, literals

    def timed(self, text: str) -> float:
        """Milliseconds from the command's write to its tagged OK."""
        tag = self.next_tag()
        line = tag + b" " + text.encode() + b"\r\n"
        started = time.perf_counter()
        self.send(line)
        tagged, _, _ = self.response(tag)
        elapsed = (time.perf_counter() - started) * 1000
        if not tagged.startswith(tag + b" OK"):
            raise Failure(f"{text.split()[0]}: {tagged.decode(errors='replace').strip()}")
        return elapsed

    def login_command(self, user: str, password: str) -> str:
        return f'LOGIN "{user}" "{password}"'

    def logout(self) -> None:
        try:
            self.command("LOGOUT")
        finally:
            self.close()

    def append(self, message: bytes) -> None:
        tag = self.next_tag()
        self.send(tag + b" APPEND INBOX {%d}\r\n" % len(message))
        line = self.readline()
        if not line.startswith(b"+"):
            raise Failure(f"APPEND: {line!r}")
        self.send(message + b"\r\n")
        tagged, _, _ = self.response(tag)
        if not tagged.startswith(tag + b" OK"):
            raise Failure(f"APPEND: {tagged!r}")


@dataclass
class Target:
    label: str
    host: str
    port: int
    mode: str
    user: str
    password: str

    def connect(self, source: str | None = None) -> Imap:
        return Imap(self.host, self.port, self.mode, source)

    def session(self, source: str | None = None) -> Imap:
        imap = self.connect(source)
        try:
            imap.command(imap.login_command(self.user, self.password))
        except BaseException:
            imap.close()
            raise
        return imap


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def bench_logins(targets: list[Target], n: int) -> dict[str, list[float]]:
    """n logins per target, taken in turn so that noise spreads over all of them."""
    times = {t.label: [] for t in targets}
    for t in targets:  # each user signs in once before: the password check is cached
        t.session().logout()
    for _ in range(n):
        for t in targets:
            imap = t.connect()
            try:
                times[t.label].append(imap.timed(imap.login_command(t.user, t.password)))
            finally:
                imap.logout()
    return times


def bench_noops(targets: list[Target], n: int) -> dict[str, list[float]]:
    times = {t.label: [] for t in targets}
    sessions = [t.session() for t in targets]
    try:
        for imap in sessions:
            for _ in range(50):
                imap.timed("NOOP")
        block = 100
        for done in range(0, n, block):
            for t, imap in zip(targets, sessions):
                times[t.label] += [imap.timed("NOOP") for _ in range(min(block, n - done))]
    finally:
        for imap in sessions:
            imap.logout()
    return times


def latency_table(title: str, rows: list[tuple[str, str, list[float]]],
                  column: str = "transport") -> None:
    """rows: (path, transport, times); the first row of a transport is its baseline.
    `column` names the second column (what sets the rows of one baseline apart)."""
    print(title)
    print(f"  {'path':<24} {column:<9} {'n':>5} {'median ms':>10} {'p99 ms':>8} "
          f"{'added ms':>9}")
    base: dict[str, float] = {}
    for path, transport, times in rows:
        median = statistics.median(times)
        added = "-"
        if transport in base:
            added = f"{median - base[transport]:+.3f}"
        else:
            base[transport] = median
        print(f"  {path:<24} {transport:<9} {len(times):>5} {median:>10.3f} "
              f"{percentile(times, 0.99):>8.3f} {added:>9}")
    print()


def make_message(i: int, size: int) -> bytes:
    head = (f"From: bench@example.com\r\nTo: bench@example.com\r\n"
            f"Subject: proxy bench {i}\r\nMessage-ID: <proxy-bench-{i}@example.com>\r\n"
            f"Date: Sun, 6 Dec 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: application/octet-stream\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode()
    raw = random.Random(i).randbytes((size - len(head)) * 3 // 4)
    body = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    body = body[:size - len(head)]
    body = body[:body.rfind(b"\r\n") + 2]
    return head + body


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise Failure(f"no VmRSS for pid {pid}")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_secs(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def minor_faults(pid: int) -> int:
    """Minor page faults of a process so far: memory it touched for the first time."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def own_cpu_secs() -> float:
    times = os.times()
    return times.user + times.system


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
    def __init__(self, root: Path, template: Path | None = None):
        self.root = root
        self.config = root / "cluster.toml"
        self.base = free_base()
        self.env = dict(os.environ, PORTICO_BIN=str(BIN),
                        PORTICO_CLUSTER_PORT_BASE=str(self.base))
        if template:
            self.env["PORTICO_CLUSTER_TEMPLATE"] = str(template)

    def up(self) -> None:
        subprocess.run([REPO / "scripts/cluster-up.sh", self.root], env=self.env,
                       check=True, stdout=subprocess.DEVNULL)

    def down(self) -> None:
        subprocess.run([REPO / "scripts/cluster-down.sh", self.root], env=self.env,
                       check=False, stdout=subprocess.DEVNULL)

    def cli(self, node: str, *args: str, input: bytes = b"") -> str:
        r = subprocess.run([BIN, "--config", self.config, "--node", node, *args],
                           input=input, capture_output=True)
        if r.returncode:
            raise Failure(f"portico {' '.join(args)}: {r.stderr.decode().strip()}")
        return r.stdout.decode()

    def add_users(self, users: list[tuple[str, str]]) -> None:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda u: self.cli("d1", "user", "add", u[0], "--home", u[1],
                                             "--password-stdin",
                                             input=PASSWORD.encode() + b"\n"), users))

    def wait_replicas(self, users: int, limit: float = 60) -> float:
        """Waits until every node's replica of the directory lists `users` accounts
        (a learner such as s2 refuses sessions until its copy is filled); the seconds
        waited."""
        started = time.perf_counter()
        for node in NODES:
            while True:
                try:
                    if len(self.cli(node, "user", "list").splitlines()) >= users:
                        break
                except Failure:
                    pass
                if time.perf_counter() - started > limit:
                    raise Failure(f"{node}'s directory replica lacks accounts after {limit:.0f} s")
                time.sleep(0.1)
        return time.perf_counter() - started

    def pid(self, node: str) -> int:
        return int((self.root / "pids" / f"{node}.pid").read_text())

    def port(self, mode: str) -> int:
        return self.base + (IMAPS_OFFSET if mode == "imaps" else IMAP_OFFSET)

    def target(self, label: str, home: str, mode: str, user: str | None = None) -> Target:
        return Target(label, IPS["d1"], self.port(mode), mode,
                      user or f"proxy-{home}@example.com", PASSWORD)

    def log_summary(self) -> list[str]:
        """The nodes' WARN and ERROR lines (and panics), alike ones counted together."""
        out = []
        for node in NODES:
            path = self.root / "logs" / f"{node}.log"
            if not path.exists():
                continue
            kinds: Counter[str] = Counter()
            first: dict[str, str] = {}
            for line in path.read_text(errors="replace").splitlines():
                if not re.search(r"\b(WARN|ERROR)\b|panicked", line):
                    continue
                key = re.sub(r"^\S+Z\s+", "", line)
                key = re.sub(r"\d+", "N", key)
                kinds[key] += 1
                first.setdefault(key, line)
            for key, count in kinds.most_common():
                out.append(f"  {node}: {count} x {first[key][:300]}")
        return out


def open_idle(target: Target, source: str) -> Imap:
    imap = target.session(source)
    try:
        imap.command("SELECT INBOX")
        imap.send(imap.next_tag() + b" IDLE\r\n")
        line = imap.readline()
        if not line.startswith(b"+"):
            raise Failure(f"IDLE: {line!r}")
    except BaseException:
        imap.close()
        raise
    return imap


def open_many(targets: list[Target], network: str) -> list[Imap]:
    """One idle session per target, from client addresses network.1, network.2, ..."""
    sources = [f"{network}.{1 + i // SESSIONS_PER_ADDRESS}" for i in range(len(targets))]
    sessions, errors = [], []
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(open_idle, t, s) for t, s in zip(targets, sources)]
        for f in futures:
            try:
                sessions.append(f.result())
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(e)
    if errors:
        for imap in sessions:
            imap.close()
        kinds = Counter(str(e) for e in errors)
        raise Failure(f"{len(errors)} of {len(targets)} idle sessions failed: "
                      + "; ".join(f"{n} x {k}" for k, n in kinds.most_common(5)))
    return sessions


class IdleWatcher(threading.Thread):
    """Reads an idling session on a thread of its own and notes when each `* n EXISTS`
    arrives (time.perf_counter()), so that the APPENDing session is read meanwhile.
    Only this thread reads the session (an SSL socket is not to be used from two threads
    at once): stop() ends it, then the session is the caller's again."""

    def __init__(self, imap: Imap):
        super().__init__(daemon=True)
        self.imap = imap
        self.seen: queue.Queue = queue.Queue()
        self.halt = threading.Event()

    def run(self) -> None:
        self.imap.sock.settimeout(0.1)  # to look at `halt` now and then
        try:
            while not self.halt.is_set():
                try:
                    line = self.imap.readline()
                except socket.timeout:
                    continue
                now = time.perf_counter()
                if (m := re.fullmatch(rb"\* (\d+) EXISTS\r\n", line)):
                    self.seen.put((now, int(m.group(1))))
        except Exception as e:  # noqa: BLE001 - handed to the waiting thread
            self.seen.put((None, e))

    def wait(self, count: int, timeout: float) -> float | None:
        """When `* n EXISTS` with n >= count arrived (maybe already), or None after
        `timeout` seconds."""
        deadline = time.perf_counter() + timeout
        while True:
            try:
                at, n = self.seen.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                return None
            if at is None:
                raise Failure(f"idling session: {n}")
            if n >= count:
                return at

    def stop(self) -> None:
        self.halt.set()
        self.join(5)
        self.imap.sock.settimeout(60)


def bench_idle(cluster: Cluster, appends: int) -> tuple[list, list[str]]:
    """IDLE push latency per path (see the module's help): rows for latency_table, and
    notes to print under it."""
    sessions: list[tuple[str, str, Imap, IdleWatcher, bytes, Imap]] = []
    times = {label: {"APPEND": [], "from sent": [], "from OK": []} for label, _ in PATHS}
    signed = {label: [] for label, _ in PATHS}  # EXISTS minus tagged OK, not clamped
    count = {}
    started = time.perf_counter()
    try:
        for label, home in PATHS:
            user = f"push-{home}@example.com"
            idler = cluster.target(label, home, "imaps", user).session()
            try:
                _, lines, _ = idler.command("SELECT INBOX")
                exists = [int(m.group(1)) for line in lines
                          if (m := re.fullmatch(rb"\* (\d+) EXISTS\r\n", line))]
                if not exists:
                    raise Failure(f"SELECT INBOX ({label}): no EXISTS")
                count[label] = exists[-1]
                idle_tag = idler.next_tag()
                idler.send(idle_tag + b" IDLE\r\n")
                line = idler.readline()
                if not line.startswith(b"+ "):
                    raise Failure(f"IDLE ({label}): {line!r}")
                # The writer signs in directly on the user's home node.
                writer = Target(label, IPS[home], cluster.port("imaps"), "imaps", user,
                                PASSWORD).session()
            except BaseException:
                idler.close()
                raise
            watcher = IdleWatcher(idler)
            watcher.start()
            sessions.append((label, home, idler, watcher, idle_tag, writer))
        for i in range(-IDLE_WARMUP, appends):
            for label, home, idler, watcher, _, writer in sessions:
                message = (f"From: push@example.com\r\nTo: push-{home}@example.com\r\n"
                           f"Subject: idle push {i}\r\n\r\nhello\r\n").encode()
                tag = writer.next_tag()
                data = tag + b" APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n"
                sent = time.perf_counter()
                writer.send(data)
                tagged, _, _ = writer.response(tag)
                durable = time.perf_counter()
                if not tagged.startswith(tag + b" OK"):
                    raise Failure(f"APPEND ({label}): {tagged!r}")
                count[label] += 1
                seen = watcher.wait(count[label], IDLE_WAIT_SECS)
                if seen is None:
                    raise Failure(f"IDLE ({label} ({home})): no `* {count[label]} EXISTS` "
                                  f"within {IDLE_WAIT_SECS:g} s of the APPEND's tagged OK")
                if i < 0:
                    continue
                times[label]["APPEND"].append((durable - sent) * 1000)
                times[label]["from sent"].append((seen - sent) * 1000)
                times[label]["from OK"].append(max(0.0, seen - durable) * 1000)
                signed[label].append((seen - durable) * 1000)
    finally:
        for label, _, idler, watcher, idle_tag, writer in sessions:
            watcher.stop()
            for imap, last in ((idler, b"DONE\r\n"), (writer, b"")):
                try:
                    if last:
                        imap.send(last)
                        imap.response(idle_tag)
                    imap.logout()
                except (Failure, OSError):
                    imap.close()
    elapsed = time.perf_counter() - started
    rows = [(f"{label} ({home})", measure, times[label][measure])
            for measure in ("from OK", "from sent", "APPEND") for label, home in PATHS]
    medians = {label: statistics.median(times[label]["from OK"]) for label, _ in PATHS}
    missed = [f"{label} ({medians[label]:.2f} ms)" for label, _ in PATHS
              if medians[label] >= 10]
    notes = [
        "  EXISTS before the APPEND's tagged OK (counted as 0 in from OK), and the median "
        "of EXISTS minus OK not clamped: "
        + ", ".join(f"{label} {sum(x < 0 for x in signed[label])} of {appends} "
                    f"({statistics.median(signed[label]):+.3f} ms)" for label, _ in PATHS),
        "  target < 10 ms median from the durable write (from OK): "
        + ("met on every path" if not missed else "NOT met: " + ", ".join(missed)),
        f"  {len(PATHS)} x ({IDLE_WARMUP} untimed + {appends}) APPENDs in {elapsed:.1f} s",
    ]
    return rows, notes


def settled_rss(cluster: Cluster, nodes: list[str]) -> dict[str, int]:
    time.sleep(2)
    return {n: rss_kib(cluster.pid(n)) for n in nodes}


def run_cluster(options) -> None:
    if not BIN.is_file():
        raise Failure(f"no binary at {BIN} (cargo build --release, or set PORTICO_BIN)")
    if options.dir:
        work = Path(options.dir).resolve()
        work.mkdir(parents=True, exist_ok=True)
        tmp = None
    else:
        tmp = tempfile.TemporaryDirectory(prefix="portico-bench-proxy-")
        work = Path(tmp.name)
    root = work / "cluster"
    template = None
    if options.plain:
        text = (REPO / "cluster.toml").read_text()
        changed = re.sub(r'(\n\[imap\]\n[^\[]*?\nlogin = )"secure"', r'\1"plaintext"', text)
        if changed == text:
            raise Failure('no `login = "secure"` in [imap] of cluster.toml to change')
        template = work / "template.toml"
        template.write_text(changed)
    cluster = Cluster(root, template)
    idle: list[Imap] = []
    try:
        cluster.up()
        per_user = SESSIONS_PER_USER
        users_needed = math.ceil(options.sessions / per_user)
        users = [(f"proxy-{home}@example.com", home) for _, home in PATHS]
        users += [(f"push-{home}@example.com", home) for _, home in PATHS]
        users += [(f"idle-{home}-{i}@example.com", home)
                  for home in ("d1", "s2") for i in range(users_needed)]
        cluster.add_users(users)
        waited = cluster.wait_replicas(len(users))
        print(f"cluster: {root} (port base {cluster.base}), binary {BIN}")
        print(f"clients connect to d1 ({IPS['d1']}); {len(users)} users added, on every "
              f"node's directory replica {waited:.1f} s later\n")

        # Memory first, while no big message has passed through the nodes' allocators.
        targets = {home: [cluster.target("idle", home, "imaps", f"idle-{home}-{i % users_needed}@example.com")
                          for i in range(options.sessions)] for home in ("d1", "s2")}
        for home in ("d1", "s2"):  # the first sign-in of each user checks argon2
            for i in range(users_needed):
                targets[home][i].session().logout()
        before = settled_rss(cluster, ["d1", "s2"])
        started = time.perf_counter()
        idle += open_many(targets["d1"], "127.0.1")
        direct_secs = time.perf_counter() - started
        direct = settled_rss(cluster, ["d1", "s2"])
        started = time.perf_counter()
        idle += open_many(targets["s2"], "127.0.2")
        proxied_secs = time.perf_counter() - started
        after = settled_rss(cluster, ["d1", "s2"])
        k = options.sessions
        print(f"Memory of idle IMAP sessions (IMAPS, SELECT INBOX, IDLE), {k} sessions each; "
              f"RSS (VmRSS) in KiB")
        print(f"  {'sessions':<44} {'node':<5} {'before':>8} {'after':>8} {'KiB/session':>12}")
        print(f"  {f'direct, users on d1 (opened in {direct_secs:.1f} s)':<44} {'d1':<5} "
              f"{before['d1']:>8} {direct['d1']:>8} {(direct['d1'] - before['d1']) / k:>12.1f}")
        print(f"  {f'proxied d1 -> s2 (opened in {proxied_secs:.1f} s)':<44} {'d1':<5} "
              f"{direct['d1']:>8} {after['d1']:>8} {(after['d1'] - direct['d1']) / k:>12.1f}")
        print(f"  {'':<44} {'s2':<5} "
              f"{direct['s2']:>8} {after['s2']:>8} {(after['s2'] - direct['s2']) / k:>12.1f}")
        total = (after["d1"] - direct["d1"] + after["s2"] - direct["s2"]) / k
        print(f"  {'':<44} {'both':<5} {'':>8} {'':>8} {total:>12.1f}")
        print()
        for imap in idle:
            imap.close()
        idle = []

        rows = []
        modes = [("starttls", "STARTTLS"), ("imaps", "IMAPS")]
        if options.plain:
            modes.append(("plain", "plain"))
        for mode, transport in modes:
            targets_ = [cluster.target(f"{label} ({home})", home, mode) for label, home in PATHS]
            times = bench_logins(targets_, options.logins)
            rows += [(t.label, transport, times[t.label]) for t in targets_]
        latency_table("IMAP LOGIN round trip through d1 (the LOGIN command alone, on a "
                      "new connection already in TLS but for plain; password check cached)",
                      rows)

        rows = []
        for mode, transport in modes[1:]:
            targets_ = [cluster.target(f"{label} ({home})", home, mode) for label, home in PATHS]
            times = bench_noops(targets_, options.noops)
            rows += [(t.label, transport, times[t.label]) for t in targets_]
        latency_table("IMAP NOOP round trip through d1 (one signed-in session per path)", rows)

        if options.idle_appends > 0:
            rows, notes = bench_idle(cluster, options.idle_appends)
            latency_table("IMAP IDLE push latency through d1, IMAPS: ms to the idling session's "
                          "`* n EXISTS` from the APPEND's tagged OK (durable; an EXISTS "
                          "before it counts as 0) and from the APPEND's write, the APPEND "
                          "(LITERAL+) sent by a second session of the user connected "
                          "directly to its home node; APPEND: that command's round trip",
                          rows, column="measure")
            for line in notes:
                print(line)
            print()

        size = int(options.message_mb * 1024 * 1024)
        messages = [make_message(i, size) for i in range(options.messages)]
        total_bytes = sum(len(m) for m in messages)
        appended = {}
        for label, home in PATHS:
            imap = cluster.target(label, home, "imaps").session()
            started = time.perf_counter()
            for m in messages:
                imap.append(m)
            appended[label] = time.perf_counter() - started
            imap.logout()
        fetched: dict[str, list[float]] = {label: [] for label, _ in PATHS}
        # CPU seconds used during the fetches: d1, the home (when not d1), this client.
        cpu: dict[str, list[float]] = {label: [0.0, 0.0, 0.0] for label, _ in PATHS}
        faults: dict[str, list[int]] = {label: [0, 0] for label, _ in PATHS}
        pids = {node: cluster.pid(node) for node in NODES}
        for _ in range(options.rounds):
            for label, home in PATHS:
                imap = cluster.target(label, home, "imaps").session()
                imap.command("EXAMINE INBOX")
                tag = imap.next_tag()
                cpu_before = [cpu_secs(pids["d1"]), cpu_secs(pids[home]), own_cpu_secs()]
                faults_before = [minor_faults(pids["d1"]), minor_faults(pids[home])]
                started = time.perf_counter()
                imap.send(tag + b" FETCH 1:* BODY.PEEK[]\r\n")
                tagged, _, sizes = imap.response(tag)
                fetched[label].append(time.perf_counter() - started)
                cpu_after = [cpu_secs(pids["d1"]), cpu_secs(pids[home]), own_cpu_secs()]
                faults_after = [minor_faults(pids["d1"]), minor_faults(pids[home])]
                for i in range(3):
                    cpu[label][i] += cpu_after[i] - cpu_before[i]
                for i in range(2):
                    faults[label][i] += faults_after[i] - faults_before[i]
                if not tagged.startswith(tag + b" OK"):
                    raise Failure(f"FETCH ({label}): {tagged!r}")
                if sizes != [len(m) for m in messages]:
                    raise Failure(f"FETCH ({label}): literal sizes {sizes[:5]}... "
                                  f"differ from the messages appended")
                imap.logout()
        for label, home in PATHS:  # the bytes, first and last message, untimed
            imap = cluster.target(label, home, "imaps").session()
            imap.command("EXAMINE INBOX")
            for seq in {1, len(messages)}:
                _, _, literals = imap.command(f"FETCH {seq} BODY.PEEK[]", keep=True)
                if literals != [messages[seq - 1]]:
                    raise Failure(f"FETCH ({label}): message {seq} differs from the one "
                                  f"appended")
            imap.logout()
        mb = total_bytes / 1e6
        print(f"IMAP FETCH 1:* BODY.PEEK[] through d1, IMAPS: {len(messages)} messages of "
              f"{options.message_mb:g} MiB ({mb:.1f} MB), {options.rounds} fetches per path "
              f"taken in turn (APPEND: once, through d1 too); CPU: user+system time of "
              f"d1, of the home node and of this client over all fetches; faulted: MB "
              f"of memory d1 and the home touched anew (minor page faults x 4 KiB)")
        print(f"  {'':<24} {'----- median fetch -----':>26} {'--- best fetch ---':>19}")
        print(f"  {'path':<24} {'s':>6} {'MB/s':>7} {'of direct':>11} {'MB/s':>7} "
              f"{'of direct':>11} {'APPEND MB/s':>12}   CPU s per GB: d1 / home / client, "
              f"busy; faulted MB per GB: d1 / home")
        direct_rate = direct_best = None
        for label, home in PATHS:
            secs = statistics.median(fetched[label])
            rate = mb / secs
            best = mb / min(fetched[label])
            direct_rate = direct_rate or rate
            direct_best = direct_best or best
            gb = mb * options.rounds / 1000
            d1_cpu, home_cpu, client_cpu = (c / gb for c in cpu[label])
            page = os.sysconf("SC_PAGE_SIZE") / 1e6
            d1_faulted, home_faulted = (f"{f * page / gb:.0f}" for f in faults[label])
            if home == "d1":
                home_cpu, used = 0.0, cpu[label][0] + cpu[label][2]
                home_faulted = "-"
            else:
                used = sum(cpu[label])
            busy = 100 * used / (sum(fetched[label]) * (os.cpu_count() or 1))
            print(f"  {f'{label} ({home})':<24} {secs:>6.3f} {rate:>7.1f} "
                  f"{100 * rate / direct_rate:>10.1f}% {best:>7.1f} "
                  f"{100 * best / direct_best:>10.1f}% {mb / appended[label]:>12.1f}   "
                  f"{d1_cpu:>5.2f} / {home_cpu:>4.2f} / {client_cpu:>4.2f}, "
                  f"{busy:3.0f}% of {os.cpu_count()} CPUs; {d1_faulted} / {home_faulted}")
        print()
    finally:
        for imap in idle:
            imap.close()
        cluster.down()
        summary = cluster.log_summary()
        print("Node logs: " + ("no WARN or ERROR lines" if not summary
                               else "WARN/ERROR lines (alike ones counted together):"))
        for line in summary:
            print(line)
        if tmp:
            tmp.cleanup()
        else:
            print(f"kept {work}")


def run_external(options) -> None:
    targets = []
    for spec in options.external:
        label, _, rest = spec.partition("=")
        try:
            host, port, user, password = rest.split(":", 3)
            targets.append(Target(label, host, int(port), "plain", user, password))
        except ValueError:
            raise Failure(f"--external {spec}: not LABEL=HOST:PORT:USER:PASSWORD") from None
    times = bench_logins(targets, options.logins)
    latency_table("IMAP LOGIN round trip (the LOGIN command alone, on a new plain connection)",
                  [(t.label, "plain", times[t.label]) for t in targets])
    times = bench_noops(targets, options.noops)
    latency_table("IMAP NOOP round trip (one signed-in session per target)",
                  [(t.label, "plain", times[t.label]) for t in targets])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=200, help="logins per path and transport")
    parser.add_argument("--noops", type=int, default=2000, help="NOOPs per path")
    parser.add_argument("--idle-appends", type=int, default=200,
                        help="APPENDs per path whose IDLE push is timed")
    parser.add_argument("--messages", type=int, default=20, help="messages per user to FETCH")
    parser.add_argument("--message-mb", type=float, default=5, help="size of each, MiB")
    parser.add_argument("--rounds", type=int, default=5, help="FETCHes per path")
    parser.add_argument("--sessions", type=int, default=500, help="idle sessions, each kind")
    parser.add_argument("--plain", action="store_true",
                        help='also LOGIN and NOOP without TLS (imap.login = "plaintext" '
                             "in the cluster's configuration), as Dovecot is measured")
    parser.add_argument("--dir", help="directory to use and keep, the cluster in DIR/cluster "
                        "(default: a temporary one, removed)")
    parser.add_argument("--external", action="append", metavar="LABEL=HOST:PORT:USER:PASS",
                        help="plain IMAP server to measure instead (LOGIN and NOOP only); "
                             "repeat, the first is the baseline")
    options = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} CPUs, {cpu}; load average before: "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}\n")
    started = time.perf_counter()
    try:
        if options.external:
            run_external(options)
        else:
            run_cluster(options)
    except (Failure, OSError, subprocess.CalledProcessError) as e:
        print(f"bench-proxy: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"total time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
