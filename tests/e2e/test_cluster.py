"""The four-node example cluster (cluster.toml: sites dublin and seattle, nodes d1, d2,
s1, s2 on 127.0.0.11 to .14) started for real with scripts/cluster-up.sh: the account
directory's leader, replication of account changes, crashes of directory voters,
network partitions (nftables), and internode certificate refusals.

One cluster serves the whole module, and the tests run in file order on it: each says
what it expects the earlier ones to have left (each finds the current leader itself,
so any voter may lead when it starts). The cluster is stopped at module teardown,
whatever happened, and any nftables table or impostor process of a test goes with it.

Voters of the directory: d1, d2, s1 (s2 is a learner). Mailboxes live on the backends
d1, d2 and s2; an IMAP LOGIN at any other node is proxied to the home node (sessions
across the cluster are tested in test_cluster_sessions.py).
"""

from __future__ import annotations

import imaplib
import itertools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import IO_TIMEOUT, REPO, find_binary, tls_context

NODES = ["d1", "d2", "s1", "s2"]
IP = {"d1": "127.0.0.11", "d2": "127.0.0.12", "s1": "127.0.0.13", "s2": "127.0.0.14"}
SITE = {"d1": "dublin", "d2": "dublin", "s1": "seattle", "s2": "seattle"}
ROLES = {
    "d1": "frontend,backend,directory",
    "d2": "backend,directory",
    "s1": "frontend,directory",
    "s2": "backend",
}
VOTERS = ["d1", "d2", "s1"]
BACKENDS = ["d1", "d2", "s2"]

# PORTICO_CLUSTER_PORT_BASE offsets (scripts/cluster-up.sh): pop3, pop3s, imap, imaps,
# smtp, submission, submissions, internode.
PORTS_PER_NODE = 8
IMAPS_OFFSET = 3

UP_TIMEOUT = 90.0
CLI_TIMEOUT = 30.0
STATUS_HEADER = "node\tsite\troles\traft\tapplied\tlag\thealth"
ACCEPTED = "account changes: accepted"
NO_QUORUM = "directory has no quorum"
LOGGED_IN = re.compile(rb"\[CAPABILITY [^\]]+\] Logged in")
REFUSED = "internode connection refused"

PASSWORD = "cluster-pw"
NFT_TABLE = f"portico_test_{os.getpid()}"


# --------------------------------------------------------------------------------------
# Plumbing


def wait_for(probe, timeout: float, what: str, interval: float = 0.1):
    """Calls `probe()` until it returns something other than None (returned) or
    `timeout` seconds pass (the test fails, showing what the last call saw: a probe
    that is not done yet returns None and keeps its last observation in
    `probe.last`, if it sets one)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            last = getattr(probe, "last", None)
            pytest.fail(
                f"not within {timeout} s: {what}; last seen:\n{last}", pytrace=False
            )
        time.sleep(interval)


def ports_free(ips: list[str], base: int, count: int) -> bool:
    """Whether ports base..base+count-1 can be bound on every address of `ips`."""
    held = []
    try:
        for ip in ips:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(s)
                s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        for s in held:
            s.close()


def pick_port_base() -> int:
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 40000 - PORTS_PER_NODE)
        if ports_free(list(IP.values()), base, PORTS_PER_NODE):
            return base
    pytest.fail("no free port range of 8 on 127.0.0.11-14 in 20000-40000", pytrace=False)


def free_ports(ip: str, count: int) -> list[int]:
    """`count` distinct ports that were free on `ip` a moment ago."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind((ip, 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


@dataclass
class Status:
    """`cluster status` of one node, parsed (and its layout checked)."""

    text: str
    leader: str | None
    changes: str
    rows: dict[str, dict[str, str]]

    @staticmethod
    def parse(text: str) -> "Status":
        lines = text.split("\n")
        assert lines[-1] == "", f"cluster status does not end with a newline:\n{text}"
        lines = lines[:-1]
        assert len(lines) == 3 + len(NODES), text
        m = re.fullmatch(r"leader: (\S+)", lines[0])
        assert m, text
        assert lines[1] == ACCEPTED or re.fullmatch(
            r"account changes: refused \(.+\)", lines[1]
        ), text
        assert lines[2] == STATUS_HEADER, text
        rows = {}
        for line in lines[3:]:
            fields = line.split("\t")
            assert len(fields) == 7, text
            name, site, roles, raft, applied, lag, health = fields
            assert (site, roles) == (SITE[name], ROLES[name]), text
            assert raft in {"leader", "follower", "learner", "candidate", "-"}, text
            assert re.fullmatch(r"\d+|-", applied) and re.fullmatch(r"\d+|-", lag), text
            assert re.fullmatch(
                r"self|ok \(\d+ ms\)|suspect|down|unknown", health
            ), text
            rows[name] = {"raft": raft, "applied": applied, "lag": lag, "health": health}
        assert list(rows) == NODES, text
        leader = None if m.group(1) == "none" else m.group(1)
        assert leader is None or leader in NODES, text
        return Status(text, leader, lines[1], rows)


class NodeLog:
    """What conftest's failure report reads of a server (`log()`, `config`,
    `log_path`), for one cluster node or impostor."""

    def __init__(self, config: Path, node: str, log_path: Path):
        # Only shown in the report's section title.
        self.config = f"{config} --node {node}"
        self.log_path = log_path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"


class Cluster:
    """The cluster of scripts/cluster-up.sh in `root`, and the commands the tests run
    on its nodes."""

    def __init__(self, binary: Path, root: Path, base: int):
        self.binary = binary
        self.root = root
        self.base = base
        self.config = root / "cluster.toml"
        self.impostors: list[subprocess.Popen] = []

    # -- processes --------------------------------------------------------------------

    def script(self, name: str, *args: str, base: bool = False):
        env = {
            **os.environ,
            "PORTICO_BIN": str(self.binary),
            "PORTICO_CLUSTER_WAIT_SECS": "45",
        }
        for inherited in ("PORTICO_CLUSTER_PORT_BASE", "PORTICO_CLUSTER_TEMPLATE",
                          "PORTICO_CLUSTER_NO_STATUS", "PORTICO_CLUSTER_STOP_SECS"):
            env.pop(inherited, None)
        if base:
            env["PORTICO_CLUSTER_PORT_BASE"] = str(self.base)
        return subprocess.run(
            [str(REPO / "scripts" / name), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=UP_TIMEOUT,
        )

    def up(self) -> None:
        """Starts every node that is not running, and waits until all are ready and d1
        names a leader."""
        r = self.script("cluster-up.sh", str(self.root), base=not self.config.exists())
        assert r.returncode == 0, (
            f"cluster-up.sh exited with {r.returncode}:\n{r.stdout.decode()}\n"
            f"{r.stderr.decode()}"
        )

    def kill(self, node: str) -> None:
        r = self.script("cluster-down.sh", "--kill", str(self.root), node)
        out = r.stdout.decode()
        assert r.returncode == 0 and re.fullmatch(
            rf"{node}: killed \(pid \d+\)\n", out
        ), (r.returncode, out, r.stderr.decode())

    def down(self) -> subprocess.CompletedProcess:
        return self.script("cluster-down.sh", str(self.root))

    # -- command line -----------------------------------------------------------------

    def cli(self, node: str, *args: str, input: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.binary), "--config", str(self.config), "--node", node, *args],
            input=input,
            capture_output=True,
            timeout=CLI_TIMEOUT,
        )

    def cli_ok(self, node: str, *args: str, input: bytes = b"") -> str:
        r = self.cli(node, *args, input=input)
        assert r.returncode == 0 and r.stderr == b"", (
            f"portico --node {node} {' '.join(args)} exited with {r.returncode}: "
            f"stdout={r.stdout!r} stderr={r.stderr!r}"
        )
        return r.stdout.decode()

    def status(self, node: str) -> Status:
        return Status.parse(self.cli_ok(node, "cluster", "status"))

    def add_user(self, node: str, address: str, home: str | None = None):
        args = ["user", "add", address, "--password-stdin"]
        if home:
            args += ["--home", home]
        return self.cli(node, *args, input=PASSWORD.encode() + b"\n")

    def add_user_ok(self, node: str, address: str, home: str) -> None:
        r = self.add_user(node, address, home)
        assert (r.returncode, r.stdout, r.stderr) == (
            0,
            f"added {address} on {home}\n".encode(),
            b"",
        ), (node, address, r)

    def users(self, node: str) -> dict[str, dict[str, str]]:
        """`user list` on `node`: address -> {pop3, imap, pop3-delete-mode, inbox,
        home}, with the layout checked: sorted by address, and `inbox` a number exactly
        for the accounts homed on `node`."""
        out = self.cli_ok(node, "user", "list")
        result = {}
        for line in out.splitlines():
            m = re.fullmatch(
                r"([^\t]+)\tpop3=(on|off)\timap=(on|off)\tpop3-delete-mode=(expunge|hide)"
                r"\tinbox=(\d+|-)\thome=(\S+)\tquota=(none|\d+[KMGT]?)\tused=(\d+|-)",
                line,
            )
            assert m, f"unexpected user list line on {node}: {line!r}"
            address, pop3, imap, mode, inbox, home, quota, used = m.groups()
            assert home in BACKENDS, line
            assert (inbox == "-") == (home != node), f"{node}: {line!r}"
            assert (used == "-") == (home != node), f"{node}: {line!r}"
            result[address] = {
                "pop3": pop3,
                "imap": imap,
                "pop3-delete-mode": mode,
                "inbox": inbox,
                "home": home,
                "quota": quota,
                "used": used,
            }
        assert list(result) == sorted(result), out
        assert out == "" or out.endswith("\n"), out
        return result

    def records(self, node: str) -> dict[str, tuple]:
        """The directory as `node`'s `user list` shows it: everything but the INBOX
        count and the bytes used, which only the home node knows."""
        return {
            address: (f["pop3"], f["imap"], f["pop3-delete-mode"], f["home"], f["quota"])
            for address, f in self.users(node).items()
        }

    # -- clients and logs -------------------------------------------------------------

    def imap_login(self, node: str, user: str, password: str = PASSWORD):
        """LOGIN over implicit TLS at `node`: ("OK", text) or ("NO", text) of the
        tagged answer (imaplib raises NO as an error carrying the bytes of its text,
        and BAD as one carrying a str)."""
        m = imaplib.IMAP4_SSL(
            IP[node],
            self.base + IMAPS_OFFSET,
            ssl_context=tls_context(),
            timeout=IO_TIMEOUT,
        )
        try:
            try:
                typ, data = m.login(user, password)
            except imaplib.IMAP4.error as e:
                text = e.args[0]
                return ("NO", text) if isinstance(text, bytes) else ("BAD", text)
            return typ, data[-1]
        finally:
            m.logout()

    def add_one_user_per_backend(self, node: str, prefix: str) -> None:
        """Through `node`, one account homed on each backend; every node lists them,
        and each signs in at its home."""
        for home in BACKENDS:
            self.add_user_ok(node, user(prefix, home), home)
        self.wait_for_same_records(NODES, 5)
        for home in BACKENDS:
            self.assert_login(home, user(prefix, home))

    def assert_login(self, node: str, user: str) -> None:
        typ, text = self.imap_login(node, user)
        assert typ == "OK" and LOGGED_IN.fullmatch(text), (node, user, typ, text)

    def log_path(self, node: str) -> Path:
        return self.root / "logs" / f"{node}.log"

    def log_sizes(self) -> dict[str, int]:
        return {n: self.log_path(n).stat().st_size for n in NODES}

    def log_since(self, node: str, offset: int) -> str:
        with open(self.log_path(node), "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def node_logs(self) -> list[NodeLog]:
        return [NodeLog(self.config, n, self.log_path(n)) for n in NODES]

    # -- what the nodes agree on ------------------------------------------------------

    def agreed_leader(self, nodes: list[str], probe_last=None) -> str | None:
        """The leader every one of `nodes` names, if they agree on one."""
        statuses = {n: self.status(n) for n in nodes}
        if probe_last is not None:
            probe_last.last = "\n".join(f"== {n}\n{s.text}" for n, s in statuses.items())
        leaders = {s.leader for s in statuses.values()}
        if len(leaders) == 1 and None not in leaders:
            return leaders.pop()
        return None

    def wait_for_leader(
        self, nodes: list[str], timeout: float, not_: str | None = None
    ) -> str:
        def probe():
            leader = self.agreed_leader(nodes, probe)
            return leader if leader is not None and leader != not_ else None

        what = f"{nodes} agree on a leader" + (f" other than {not_}" if not_ else "")
        return wait_for(probe, timeout, what)

    def wait_for_same_records(self, nodes: list[str], timeout: float) -> dict:
        """Polls until every one of `nodes` lists the same accounts; returns them."""

        def probe():
            seen = {n: self.records(n) for n in nodes}
            probe.last = "\n".join(f"== {n}: {r}" for n, r in seen.items())
            first = seen[nodes[0]]
            return first if all(r == first for r in seen.values()) else None

        return wait_for(probe, timeout, f"{nodes} list the same accounts")


class LoginProbe(threading.Thread):
    """Signs in over and over, at each (node, user) of `targets`, until stopped; keeps
    every attempt that did not end in `Logged in`."""

    def __init__(self, cluster: Cluster, targets: list[tuple[str, str]]):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.targets = targets
        self.done = threading.Event()
        self.successes = {target: 0 for target in targets}
        self.failures: list[tuple[float, str, str, object]] = []
        self.started_at = time.monotonic()

    def run(self) -> None:
        while not self.done.is_set():
            for node, user in self.targets:
                try:
                    typ, text = self.cluster.imap_login(node, user)
                    ok = typ == "OK" and bool(LOGGED_IN.fullmatch(text))
                    outcome = (typ, text)
                except Exception as e:  # a refused or reset connection fails too
                    ok, outcome = False, repr(e)
                if ok:
                    self.successes[(node, user)] += 1
                else:
                    self.failures.append(
                        (round(time.monotonic() - self.started_at, 3), node, user, outcome)
                    )
            self.done.wait(0.02)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=IO_TIMEOUT * 2)
        assert not self.is_alive(), "the login probe did not stop"

    def check(self) -> None:
        """Asserts that every attempt signed in, and that every target was tried."""
        assert not self.is_alive(), "check() before stop()"
        assert self.failures == [], f"logins failed: {self.failures}"
        assert all(n > 0 for n in self.successes.values()), self.successes


def add_until_accepted(
    cluster: Cluster, node: str, address: str, home: str, timeout: float
) -> float:
    """Runs `user add` on `node` until it succeeds; returns when it did (monotonic).
    While the directory has no leader it fails with `directory has no quorum`; anything
    else fails the test. An attempt that timed out may have committed all the same:
    then the next one finds the account, which counts as success."""
    deadline = time.monotonic() + timeout
    errors = []
    while True:
        r = cluster.add_user(node, address, home)
        if r.returncode == 0:
            assert (r.stdout, r.stderr) == (f"added {address} on {home}\n".encode(), b""), r
            return time.monotonic()
        err = r.stderr.decode()
        errors.append(err)
        assert r.returncode == 1 and r.stdout == b"", r
        if err == f"portico: user already exists: {address}\n" and any(
            "in time" in e for e in errors[:-1]
        ):
            return time.monotonic()
        assert err.startswith(f"portico: {NO_QUORUM}: "), errors
        if time.monotonic() >= deadline:
            pytest.fail(f"user add on {node} still failing after {timeout} s: {errors}")
        time.sleep(0.2)


def wait_until_settled(cluster: Cluster, timeout: float) -> str:
    """Polls until every node names the same leader and takes account changes, sees
    every peer `ok` (health checks back off while a peer fails, up to 16 s apart), the
    voters as leader/follower and s2 as learner, and every replica at the same applied
    index (lag 0). Returns the leader."""

    def settled():
        statuses = {n: cluster.status(n) for n in NODES}
        settled.last = "\n".join(f"== {n}\n{s.text}" for n, s in statuses.items())
        leaders = {s.leader for s in statuses.values()}
        if len(leaders) != 1 or None in leaders:
            return None
        leader = leaders.pop()
        applied = {s.rows[n]["applied"] for n, s in statuses.items()}
        if len(applied) != 1 or "-" in applied:
            return None
        for asker, s in statuses.items():
            if s.changes != ACCEPTED:
                return None
            for n, row in s.rows.items():
                raft = "leader" if n == leader else "follower" if n in VOTERS else "learner"
                health_ok = (
                    row["health"] == "self"
                    if n == asker
                    else re.fullmatch(r"ok \(\d+ ms\)", row["health"])
                )
                if not health_ok or (row["raft"], row["applied"], row["lag"]) != (
                    raft,
                    *applied,
                    "0",
                ):
                    return None
        return leader

    return wait_for(settled, timeout, "every node agrees and sees every peer ok", 0.25)


def assert_no_quorum(r: subprocess.CompletedProcess, node: str) -> None:
    err = r.stderr.decode()
    assert r.returncode == 1 and r.stdout == b"", (node, r)
    assert err.startswith(f"portico: {NO_QUORUM}") and err.endswith("\n"), (node, err)


# --------------------------------------------------------------------------------------
# nftables partitions


def nft(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nft", *args], input=(input or "").encode(), capture_output=True, timeout=30
    )


def nft_table_exists() -> bool:
    return nft("list", "table", "ip", NFT_TABLE).returncode == 0


def heal() -> None:
    """Removes this test run's table, if there is one."""
    if nft_table_exists():
        r = nft("delete", "table", "ip", NFT_TABLE)
        assert r.returncode == 0, r.stderr.decode()
    assert not nft_table_exists()


@contextmanager
def cut_off(node: str, from_nodes: list[str] | None = None):
    """Drops every packet between `node`'s address and the other nodes' addresses (or
    only those of `from_nodes`), both ways, in a table of this run's own; client traffic
    (from 127.0.0.1) and other tables are untouched. Removed on leaving the block."""
    x = IP[node]
    others = ", ".join(IP[n] for n in (from_nodes or NODES) if n != node)
    rules = f"""
table ip {NFT_TABLE} {{
    chain output {{
        type filter hook output priority 0; policy accept;
        ip saddr {x} ip daddr {{ {others} }} drop
        ip saddr {{ {others} }} ip daddr {x} drop
    }}
}}
"""
    assert not nft_table_exists(), f"table {NFT_TABLE} is left from before"
    r = nft("-f", "-", input=rules)
    assert r.returncode == 0, r.stderr.decode()
    try:
        yield
    finally:
        heal()


def nft_unusable() -> str | None:
    """Why partitions cannot be made here, or None."""
    if shutil.which("nft") is None:
        return "nft (nftables) is not installed"
    if os.geteuid() != 0:
        return "nftables rules need root"
    probe = f"portico_probe_{os.getpid()}"
    r = nft("add", "table", "ip", probe)
    if r.returncode != 0:
        return f"nft cannot add a table here: {r.stderr.decode().strip()}"
    nft("delete", "table", "ip", probe)
    return None


# --------------------------------------------------------------------------------------
# The cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The cluster of scripts/cluster-up.sh in a fresh directory, on a port base free on
    127.0.0.11-14. At teardown, whatever happened: this run's nftables table and any
    impostor go, and cluster-down.sh stops every node."""
    binary = find_binary()
    root = tmp_path_factory.mktemp("cluster")
    c = Cluster(binary, root, pick_port_base())
    try:
        c.up()
        yield c
    finally:
        failures = []
        if shutil.which("nft") and os.geteuid() == 0:
            try:
                heal()
            except AssertionError as e:
                failures.append(f"nft: {e}")
        for proc in c.impostors:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        r = c.down()
        if r.returncode != 0:
            failures.append(f"cluster-down.sh: {r.stdout.decode()}{r.stderr.decode()}")
        left = [n for n in NODES if (root / "pids" / f"{n}.pid").exists()]
        if left:
            failures.append(f"pid files left: {left}")
        assert not failures, failures




def user(tag: str, home: str) -> str:
    return f"{tag}-{home}@example.com"


# --------------------------------------------------------------------------------------
# a. A fresh cluster


def test_every_node_names_the_same_leader_and_sees_healthy_peers(cluster):
    """Right after cluster-up.sh (first test: nothing else has happened): once health
    checks have run, every node names the same leader, takes account changes, sees
    every peer `ok`, the voters' Raft roles as leader/follower and s2 as learner, and
    every replica at the same applied index (lag 0)."""

    leader = wait_until_settled(cluster, 15)
    assert leader in VOTERS


# --------------------------------------------------------------------------------------
# b. Account changes from any node


def test_user_added_on_a_follower_reaches_every_node_within_a_second(cluster):
    """After test a (a settled cluster): `user add --home d1` on a voter that follows
    (s1 unless s1 leads) returns once committed, and within one second every node lists
    the account (INBOX count on d1, `-` elsewhere); it signs in at d1 only. An account
    homed on s2 signs in at s2 and gets NO [UNAVAILABLE] at d1. A second add of the same
    address is refused."""
    leader = cluster.agreed_leader(NODES)
    assert leader is not None
    follower = "s1" if leader != "s1" else "d2"

    address = user("b", "d1")
    cluster.add_user_ok(follower, address, "d1")
    returned = time.monotonic()
    pending = set(NODES)
    expected = {
        n: {
            "pop3": "on",
            "imap": "on",
            "pop3-delete-mode": "expunge",
            "inbox": "0" if n == "d1" else "-",
            "home": "d1",
            "quota": "none",
            "used": "0" if n == "d1" else "-",
        }
        for n in NODES
    }
    while pending:
        for n in sorted(pending):
            if address in (users := cluster.users(n)):
                assert users[address] == expected[n], (n, users[address])
                pending.discard(n)
        elapsed = time.monotonic() - returned
        assert elapsed < 1.0, (
            f"not listed on {sorted(pending)} {elapsed:.3f} s after user add"
        )
        if pending:
            time.sleep(0.05)

    cluster.assert_login("d1", address)
    cluster.assert_login("d2", address)
    assert cluster.imap_login("d1", address, "wrong") == (
        "NO",
        b"[AUTHENTICATIONFAILED] Authentication failed",
    )

    far = user("b", "s2")
    cluster.add_user_ok(follower, far, "s2")
    cluster.wait_for_same_records(NODES, 5)
    cluster.assert_login("s2", far)
    cluster.assert_login("d1", far)

    again = cluster.add_user(leader, address, "d2")
    assert (again.returncode, again.stdout, again.stderr) == (
        1,
        b"",
        f"portico: user already exists: {address}\n".encode(),
    )
    assert cluster.users("d1")[address]["home"] == "d1"


def test_a_new_mailbox_goes_to_the_emptiest_backend_of_the_site_asked(cluster):
    """`user add` places the mailbox: --site S on the backend of S with the fewest
    accounts, no flag on one of the asking node's own site, --home N on N; a site or a
    node that cannot hold mailboxes is refused with its reason."""

    placed = itertools.count()

    def place(node: str, *flags: str):
        address = f"p{next(placed)}-{node}@example.com"
        r = cluster.cli(node, "user", "add", address, "--password-stdin", *flags,
                        input=PASSWORD.encode() + b"\n")
        return address, r

    def emptiest(backends: list[str]) -> str:
        cluster.wait_for_same_records(NODES, 5)
        homes = [fields["home"] for fields in cluster.users("d1").values()]
        return min(backends, key=lambda b: (homes.count(b), backends.index(b)))

    # seattle has one backend: s2, asked by --site or by a seattle node.
    for node, flags in (("d1", ("--site", "seattle")), ("s1", ())):
        address, r = place(node, *flags)
        assert (r.returncode, r.stderr) == (0, b""), r
        assert r.stdout == f"added {address} on s2\n".encode()
    # dublin has two: each new one goes to the emptier (ties to the first listed).
    for node, flags in (("s1", ("--site", "dublin")), ("d2", ()), ("d1", ())):
        expected = emptiest(["d1", "d2"])
        address, r = place(node, *flags)
        assert r.stdout == f"added {address} on {expected}\n".encode(), (node, r)
    cluster.wait_for_same_records(NODES, 5)
    for flags, error in (
        (("--site", "mars"), 'portico: no site named "mars"\n'),
        (("--home", "s1"), 'portico: node "s1" is not a backend: it holds no mailboxes\n'),
        (("--home", "x9"), 'portico: no node named "x9"\n'),
    ):
        _, r = place("d1", *flags)
        assert (r.returncode, r.stdout, r.stderr.decode()) == (1, b"", error), flags


# --------------------------------------------------------------------------------------
# c. Voters crash


def test_leader_crash_then_quorum_loss_then_restart(cluster):
    """After test b (all four nodes up, some leader): accounts homed on d1, d2 and s2
    are made. kill -9 the leader: logins keep working on the surviving home nodes the
    whole time, the survivors elect another leader, and `user add` works again within
    10 s of the kill. kill -9 a second voter: logins still work, `user add` fails with
    `directory has no quorum` (on the last voter and on a learner). Both restarted:
    they catch up (the account added after the first kill is on every node), every
    node names the same leader, and their accounts sign in at home again. Leaves all
    four nodes running."""
    first = cluster.wait_for_leader(NODES, 10)
    cluster.add_one_user_per_backend(first, "c")

    survivors = [n for n in NODES if n != first]
    probe = LoginProbe(cluster, [(h, user("c", h)) for h in BACKENDS if h != first])
    probe.start()
    try:
        killed_at = time.monotonic()
        cluster.kill(first)
        second = cluster.wait_for_leader(survivors, 10, not_=first)
        assert second in VOTERS and second != first
        # s2 is no voter: its change is forwarded to whichever node leads.
        home = "d2" if first != "d2" else "d1"
        after_kill = user("c-after-kill", home)
        accepted = add_until_accepted(cluster, "s2", after_kill, home, 10)
        took = accepted - killed_at
        assert took < 10, f"user add worked again only {took:.1f} s after the kill"
    finally:
        probe.stop()
    probe.check()

    # The other voter goes too: the leader is left alone.
    other_voter = next(n for n in VOTERS if n not in (first, second))
    remaining = [n for n in survivors if n != other_voter]
    probe = LoginProbe(
        cluster, [(h, user("c", h)) for h in BACKENDS if h not in (first, other_voter)]
    )
    probe.start()
    try:
        cluster.kill(other_voter)
        # In parallel: each waits for the change to be confirmed, and is refused.
        with ThreadPoolExecutor(len(remaining)) as pool:
            attempts = {
                n: pool.submit(cluster.add_user, n, user(f"c-no-quorum-{n}", "s2"), "s2")
                for n in remaining
            }
        for n, attempt in attempts.items():
            assert_no_quorum(attempt.result(), n)
        refused = cluster.status(second)
        assert refused.changes.startswith(
            f"account changes: refused ({NO_QUORUM}"
        ), refused.text
    finally:
        probe.stop()
    probe.check()

    cluster.up()
    records = cluster.wait_for_same_records(NODES, 10)
    assert records[after_kill] == ("on", "on", "expunge", home, "none")
    for h in BACKENDS:
        assert records[user("c", h)] == ("on", "on", "expunge", h, "none")
    cluster.wait_for_leader(NODES, 10)
    for h in BACKENDS:
        cluster.assert_login(h, user("c", h))
    cluster.assert_login(home, after_kill)


# --------------------------------------------------------------------------------------
# d. Partitions


@pytest.fixture
def partitions():
    why = nft_unusable()
    if why:
        pytest.skip(f"network partitions need nftables as root: {why}")
    try:
        yield
    finally:
        heal()


def test_partitions(cluster, partitions):
    """After test c (all four nodes up): the leader cut off from the other nodes' addresses:
    the others elect another leader and take a `user add`; on the cut-off leader
    `user add` fails with `directory has no quorum` (and that account never appears);
    logins keep working on every backend, the cut-off one included. Healed: the old
    leader follows, and every node lists the same accounts. Then a follower cut off
    misses two accounts added meanwhile and has them once healed."""
    cluster.up()
    leader = cluster.wait_for_leader(NODES, 10)
    cluster.add_one_user_per_backend(leader, "d")

    majority = [n for n in NODES if n != leader]
    probe = LoginProbe(cluster, [(h, user("d", h)) for h in BACKENDS])
    probe.start()
    try:
        with cut_off(leader):
            new_leader = cluster.wait_for_leader(majority, 15, not_=leader)
            # A voter of the majority that does not lead forwards the change.
            via = next(n for n in majority if n in VOTERS and n != new_leader)
            majority_user = user("d-majority", "s2")
            add_until_accepted(cluster, via, majority_user, "s2", 10)

            isolated_user = user("d-isolated", "d1")
            assert_no_quorum(cluster.add_user(leader, isolated_user, "d1"), leader)
            isolated = cluster.status(leader)
            assert isolated.changes.startswith(
                f"account changes: refused ({NO_QUORUM}"
            ), isolated.text
            assert majority_user not in cluster.users(leader)
            for h in BACKENDS:
                cluster.assert_login(h, user("d", h))
    finally:
        probe.stop()
    probe.check()

    def old_leader_follows():
        s = cluster.status(leader)
        old_leader_follows.last = s.text
        return s.leader if s.rows[leader]["raft"] == "follower" and s.leader else None

    wait_for(old_leader_follows, 15, f"{leader} follows again")
    healed_leader = cluster.wait_for_leader(NODES, 10, not_=leader)
    records = cluster.wait_for_same_records(NODES, 10)
    assert records[majority_user] == ("on", "on", "expunge", "s2", "none")
    assert isolated_user not in records, "a change its leader could not commit was applied"

    # A follower cut off.
    follower = next(n for n in VOTERS if n != healed_leader)
    late = {user("d-late1", "d2"): "d2", user("d-late2", "s2"): "s2"}
    with cut_off(follower):
        for address, home in late.items():
            add_until_accepted(cluster, healed_leader, address, home, 10)
        ahead = cluster.records(healed_leader)
        for address, home in late.items():
            assert ahead[address] == ("on", "on", "expunge", home, "none")
        behind = cluster.records(follower)
        assert not any(address in behind for address in late), behind

    def caught_up():
        behind = cluster.records(follower)
        caught_up.last = f"{healed_leader}: {ahead}\n{follower}: {behind}"
        return behind if behind == ahead else None

    wait_for(caught_up, 10, f"{follower} catches up")
    cluster.wait_for_same_records(NODES, 10)
    # Health checks of a peer that failed back off (up to 16 s): within 20 s of the
    # heal every node sees every other ok again.
    wait_until_settled(cluster, 20)


# --------------------------------------------------------------------------------------
# e. Certificates


def impostor_config(cluster: Cluster, root: Path, pki: Path, ip: str) -> Path:
    """A copy of the cluster's configuration in `root` whose node d2 lives on `ip`
    (internode and listeners on free ports there), with data under `root` and
    certificates from `pki`."""
    text = cluster.config.read_text()
    text, n = re.subn(r'(?m)^pki = "[^"]*"', f'pki = "{pki}"', text)
    assert n == 1
    text, n = re.subn(
        r'(?m)^data_dir = "[^"]*/data/([a-z0-9]+)"', rf'data_dir = "{root}/data/\1"', text
    )
    assert n == len(NODES)
    ports = iter(free_ports(ip, PORTS_PER_NODE))
    text, n = re.subn(r'"127\.0\.0\.12:\d+"', lambda _: f'"{ip}:{next(ports)}"', text)
    assert n == PORTS_PER_NODE
    config = root / "cluster.toml"
    config.write_text(text)
    parsed = tomllib.loads(text)
    d2 = next(node for node in parsed["node"] if node["name"] == "d2")
    assert d2["internode"].startswith(f"{ip}:")
    assert all(a.startswith(f"{ip}:") for a in d2["listen"].values())
    assert d2["data_dir"] == f"{root}/data/d2"
    return config


def run_impostor(
    cluster: Cluster, request, root: Path, pki: Path, ip: str, reason: str
) -> list[str]:
    """Runs `portico serve --node d2` from `ip` with the certificates in `pki` until a
    real node logs a refused internode connection from `ip`; stops it. Every refusal
    logged meanwhile must give a reason matching the regex `reason` (each impostor has
    an address of its own, so no line of another one is taken for its). Returns the
    lines."""
    config = impostor_config(cluster, root, pki, ip)
    sizes = cluster.log_sizes()
    log_path = root / "impostor.log"
    impostor_log = NodeLog(config, f"d2 (impostor on {ip})", log_path)
    request.node._portico_servers.append(impostor_log)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(cluster.binary), "--config", str(config), "--node", "d2", "serve"],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    cluster.impostors.append(proc)
    try:

        def refusals():
            assert proc.poll() is None, (
                f"the impostor exited with {proc.returncode}:\n{log_path.read_text()}"
            )
            lines = [
                line
                for n in NODES
                for line in cluster.log_since(n, sizes[n]).splitlines()
                if REFUSED in line and f"peer={ip}:" in line
            ]
            refusals.last = lines
            return lines or None

        lines = wait_for(refusals, 20, f"a node logs `{REFUSED}` from {ip}", 0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for line in lines:
        assert re.search(rf"{REFUSED} peer={re.escape(ip)}:\d+ error={reason}$", line), (
            line
        )
    return lines


def test_nodes_refuse_foreign_and_misnamed_certificates(cluster, request, tmp_path):
    """After test d (all four nodes up, health settled): a process claiming to be d2
    from an address of its own is refused by the real nodes, which log its address and
    why: (1) from 127.0.0.15 with the certificates of another CA: the TLS handshake
    fails (the impostor, trusting only its own CA, aborts it); (1b) from 127.0.0.16
    trusting the cluster's CA but presenting the other CA's certificate: the accepting
    node's own check refuses it; (2) from 127.0.0.17 with the cluster's CA but s1's
    certificate and key under d2's name: the name it claims is not the one its
    certificate proves. No impostor ever gets a working link, and the real cluster is
    unharmed: the same leader, every peer ok, every replica in step."""
    cluster.up()
    leader = wait_until_settled(cluster, 20)
    real = cluster.root / "pki"
    impostor_ips = ["127.0.0.15", "127.0.0.16", "127.0.0.17"]

    # (1) Another CA.
    other = tmp_path / "other-ca"
    other.mkdir()
    other_pki = other / "pki"
    init_config = other / "init.toml"
    shutil.copy(cluster.config, init_config)
    r = subprocess.run(
        [str(cluster.binary), "--config", str(init_config), "cluster", "init"]
        + ["--out", str(other_pki)],
        capture_output=True,
        timeout=CLI_TIMEOUT,
    )
    assert r.returncode == 0, r
    assert (other_pki / "ca.pem").read_bytes() != (real / "ca.pem").read_bytes()
    run_impostor(cluster, request, other, other_pki, impostor_ips[0], "TLS: .+")

    # (1b) The cluster's CA trusted, so the impostor gets as far as presenting its
    # certificate of the other CA.
    foreign = tmp_path / "foreign-cert"
    pki = foreign / "pki"
    pki.mkdir(parents=True, mode=0o700)
    shutil.copy2(real / "ca.pem", pki / "ca.pem")
    shutil.copy2(other_pki / "d2.pem", pki / "d2.pem")
    shutil.copy2(other_pki / "d2-key.pem", pki / "d2-key.pem")
    run_impostor(
        cluster, request, foreign, pki, impostor_ips[1],
        r"TLS: invalid peer certificate: \w+",
    )

    # (2) The cluster's CA, but s1's certificate presented as d2's.
    misnamed = tmp_path / "misnamed"
    pki = misnamed / "pki"
    pki.mkdir(parents=True, mode=0o700)
    shutil.copy2(real / "ca.pem", pki / "ca.pem")
    shutil.copy2(real / "s1.pem", pki / "d2.pem")
    shutil.copy2(real / "s1-key.pem", pki / "d2-key.pem")
    run_impostor(
        cluster, request, misnamed, pki, impostor_ips[2],
        'peer claims to be node "d2" but its certificate names "s1"',
    )

    for n in NODES:
        for line in cluster.log_path(n).read_text(errors="replace").splitlines():
            if any(f"peer={ip}:" in line for ip in impostor_ips):
                assert REFUSED in line, f"{n} took a connection from an impostor: {line}"
    assert wait_until_settled(cluster, 10) == leader
