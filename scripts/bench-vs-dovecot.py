#!/usr/bin/env python3
"""The parts of scripts/bench-vs-dovecot.sh that are easier in Python: password hashes
for Dovecot's passwd-file, the SMTP sink Dovecot's submission service relays to, filling
Dovecot's mailboxes over its LMTP socket, warm-up logins, reading a process tree's
memory, the imap-idle memory measurement, and the side-by-side summary.

Run by the shell script (`python3 scripts/bench-vs-dovecot.py SUBCOMMAND ...`); only
the Python standard library (plus libargon2 through ctypes for `--dovecot-scheme
argon2id`) is used, so nothing needs installing.
"""

import argparse
import asyncio
import base64
import ctypes
import ctypes.util
import hashlib
import imaplib
import json
import os
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

# `portico user add` hashes with the argon2 crate's Argon2::default(): argon2id v19,
# 19 MiB, 2 passes, 1 lane, 16-byte salt, 32-byte hash.
PORTICO_ARGON2 = {"t_cost": 2, "m_cost_kib": 19456, "lanes": 1, "salt": 16, "hash": 32}


def free_ports(count):
    """`count` distinct TCP ports free on 127.0.0.1 (all held open while choosing)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# ---------------------------------------------------------------- password hashes


def ssha256(password):
    """Dovecot's {SSHA256}: base64(sha256(password + salt) + salt)."""
    salt = os.urandom(8)
    digest = hashlib.sha256(password.encode() + salt).digest()
    return "{SSHA256}" + base64.b64encode(digest + salt).decode()


def argon2id(password):
    """Dovecot's {ARGON2ID} with exactly the parameters Portico hashes with."""
    name = ctypes.util.find_library("argon2") or "libargon2.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        sys.exit(f"libargon2 is needed for --dovecot-scheme argon2id (apt-get install libargon2-1): {e}")
    encoded = ctypes.create_string_buffer(256)
    salt = os.urandom(PORTICO_ARGON2["salt"])
    pw = password.encode()
    rc = lib.argon2id_hash_encoded(
        ctypes.c_uint32(PORTICO_ARGON2["t_cost"]),
        ctypes.c_uint32(PORTICO_ARGON2["m_cost_kib"]),
        ctypes.c_uint32(PORTICO_ARGON2["lanes"]),
        pw,
        ctypes.c_size_t(len(pw)),
        salt,
        ctypes.c_size_t(len(salt)),
        ctypes.c_size_t(PORTICO_ARGON2["hash"]),
        encoded,
        ctypes.c_size_t(len(encoded)),
    )
    if rc != 0:
        sys.exit(f"argon2id_hash_encoded failed: {rc}")
    return "{ARGON2ID}" + encoded.value.decode()


def cmd_passwd(args):
    """Writes a Dovecot passwd-file: one `address:{SCHEME}hash` line per account."""
    make = {"ssha256": ssha256, "argon2id": argon2id}[args.scheme]
    password = os.environ["BENCH_PASSWORD"]
    lines = [f"{address}:{make(password)}\n" for address in accounts(args.user, args.accounts)]
    tmp = Path(args.out + ".tmp")
    tmp.write_text("".join(lines))
    tmp.chmod(0o644)
    tmp.replace(args.out)


def accounts(pattern, count):
    return [pattern.replace("%d", str(i)) for i in range(1, count + 1)]


# ---------------------------------------------------------------- SMTP sink


class Sink:
    """An SMTP server that accepts every message and throws it away: the relay behind
    Dovecot's submission service. It speaks just enough ESMTP for Dovecot's SMTP client
    (EHLO with PIPELINING, 8BITMIME, SIZE; no CHUNKING, no STARTTLS)."""

    EHLO = (
        b"250-sink.bench.invalid\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
        b"250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n"
    )

    def __init__(self):
        self.messages = 0
        self.bytes = 0
        self.connections = 0

    async def session(self, reader, writer):
        self.connections += 1
        try:
            writer.write(b"220 sink.bench.invalid ESMTP\r\n")
            while True:
                line = await reader.readline()
                if not line:
                    break
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(self.EHLO)
                elif verb == b"DATA":
                    writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    await writer.drain()
                    size = await self.read_data(reader)
                    self.messages += 1
                    self.bytes += size
                    writer.write(b"250 2.0.0 Ok: discarded\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    break
                elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    writer.write(b"250 2.0.0 Ok\r\n")
                else:
                    writer.write(b"502 5.5.2 Not implemented\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def read_data(reader):
        """Reads up to the end-of-data line; returns the size read."""
        data = bytearray()
        while True:
            data += await reader.readuntil(b".\r\n")
            # A lone "." line: at the very start, or right after a CRLF.
            if len(data) == 3 or data[-5:-3] == b"\r\n":
                return len(data)


def cmd_sink(args):
    sink = Sink()

    async def main():
        server = await asyncio.start_server(
            sink.session, "127.0.0.1", args.port, limit=128 * 1024 * 1024
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()
        print(
            f"sink: {sink.messages} messages ({sink.bytes} bytes) on "
            f"{sink.connections} connections, discarded",
            flush=True,
        )

    asyncio.run(main())


# ---------------------------------------------------------------- filling and warm-up


def corpus_messages(corpus):
    paths = sorted(Path(corpus).glob("*.eml"))
    if not paths:
        sys.exit(f"no *.eml in {corpus}")
    return [p.read_bytes() for p in paths]


def cmd_lmtp_fill(args):
    """Delivers every corpus message to each account over Dovecot's LMTP socket, one
    transaction (one recipient) per message, as `portico deliver` does one at a time."""
    messages = corpus_messages(args.corpus)
    with smtplib.LMTP(args.socket) as lmtp:
        for address in args.addresses:
            for message in messages:
                lmtp.sendmail("fill@bench.invalid", [address], message)


def cmd_warm(args):
    """Logs every account in once over IMAP (STARTTLS) and selects its INBOX, so both
    servers start a measured run with their password caches, processes and indexes warm."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    password = os.environ["BENCH_PASSWORD"]
    for address in args.addresses:
        imap = imaplib.IMAP4("127.0.0.1", args.port, timeout=30)
        try:
            imap.starttls(context)
            imap.login(address, password)
            imap.select("INBOX")
            imap.logout()
        finally:
            try:
                imap.shutdown()
            except OSError:
                pass


# ---------------------------------------------------------------- memory


def children_map():
    children = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the ppid follows the last ")".
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def status_kib(path, field):
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory(pid):
    """RSS and PSS (KiB) summed over `pid` and all its descendants."""
    children = children_map()
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    rss = pss = 0
    for p in tree:
        rss += status_kib(f"/proc/{p}/status", "VmRSS")
        pss += status_kib(f"/proc/{p}/smaps_rollup", "Pss")
    return {"rss_kib": rss, "pss_kib": pss, "processes": len(tree)}


def established(port):
    """Established TCP connections whose local end is 127.0.0.1:port (or [::]:port)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def cmd_idle_run(args):
    """Runs the load command, measuring the server's process tree before the sessions
    open and again once `--sessions` connections are established and `--settle` has
    passed (the clients are then in IDLE), while the load tool still holds them."""
    before = tree_memory(args.pid)
    load = subprocess.Popen(args.command)
    after = None
    reached_at = None
    peak = 0
    while load.poll() is None:
        now = established(args.port)
        peak = max(peak, now)
        if reached_at is None and now >= args.sessions:
            reached_at = time.monotonic()
        if reached_at is not None and time.monotonic() - reached_at >= args.settle:
            after = tree_memory(args.pid)
            after["established"] = established(args.port)
            break
        time.sleep(0.1)
    code = load.wait()
    result = {"before": before, "after": after, "sessions": args.sessions, "peak_established": peak}
    if after is not None:
        sessions = max(after["established"], 1)
        result["pss_kib_per_session"] = round((after["pss_kib"] - before["pss_kib"]) / sessions, 1)
        result["rss_kib_per_session"] = round((after["rss_kib"] - before["rss_kib"]) / sessions, 1)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(code)


def cmd_wait_banner(args):
    """Waits until 127.0.0.1:port greets with `--expect`, or fails after `--timeout`."""
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", args.port), timeout=2) as s:
                if s.recv(1024).startswith(args.expect.encode()):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"nothing greets with {args.expect!r} on 127.0.0.1:{args.port}")
        time.sleep(0.1)


def tree_cpu_seconds(pid):
    """CPU time (user + system) used so far by `pid`, its live descendants, and the
    descendants they have already reaped (Dovecot's master reaps each finished
    session process, whose time then shows in the master's cutime and cstime)."""
    children = children_map()
    todo, ticks = [pid], 0
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime, stime, cutime, cstime are fields 14-17 of stat(5); fields[0] is 3.
        ticks += sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def cmd_busy(args):
    """How busy the machine is over `--seconds`, and which processes outside the tree of
    `--exclude` (this benchmark) used 5% of a core or more meanwhile."""

    def machine():
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]

    def per_process():
        ticks = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(f"/proc/{entry.name}/stat").read_text()
                except OSError:
                    continue
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                ticks[int(entry.name)] = (name, int(fields[11]) + int(fields[12]), int(fields[16]))
        return ticks

    ours = set()
    children, todo = children_map(), [args.exclude]
    while todo:
        p = todo.pop()
        ours.add(p)
        todo.extend(children.get(p, []))
    total0, idle0 = machine()
    procs0 = per_process()
    time.sleep(args.seconds)
    total1, idle1 = machine()
    procs1 = per_process()
    hz = os.sysconf("SC_CLK_TCK")
    others = []
    for pid, (name, ticks, nice) in procs1.items():
        if pid in ours or pid not in procs0:
            continue
        share = 100 * (ticks - procs0[pid][1]) / hz / args.seconds
        if share >= 5:
            others.append((share, f"{name} ({share:.0f}% of a core, nice {nice})"))
    busy = 100 * (1 - (idle1 - idle0) / max(total1 - total0, 1))
    listed = ", ".join(text for _, text in sorted(others, reverse=True)) or "none"
    print(f"{busy:.0f}% busy over {args.seconds:g} s; other processes: {listed}")


def cmd_settle(args):
    """Waits until the tree of `--pid` has at most `--processes` processes."""
    deadline = time.monotonic() + args.timeout
    while tree_memory(args.pid)["processes"] > args.processes:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.5)


def cmd_quiet(args):
    """Waits until the tree of `--pid` uses under `--percent` of one core over a second
    (work left by the last refill or run, such as indexing, done): exits 1 after
    `--timeout` seconds."""
    deadline = time.monotonic() + args.timeout
    before = tree_cpu_seconds(args.pid)
    while True:
        time.sleep(1)
        after = tree_cpu_seconds(args.pid)
        if 100 * (after - before) < args.percent:
            return
        if time.monotonic() > deadline:
            sys.exit(1)
        before = after


def cmd_cpu(args):
    print(f"{tree_cpu_seconds(args.pid):.2f}")


def cmd_treemem(args):
    print(json.dumps(tree_memory(args.pid)))


# ---------------------------------------------------------------- summary

# (scenario, figure, how to read it from one run, True when higher is better)
def command(name, field):
    return lambda run: ((run.get("load") or {}).get("commands") or {}).get(name, {}).get(field)


def memory(field):
    return lambda run: (run.get("memory") or {}).get(field)


def whole(field):
    return lambda run: (run.get("load") or {}).get(field)


def cpu_per(count):
    """Server CPU milliseconds per unit of work, `count` reading how many units a run did."""

    def read(run):
        done = count(run)
        if run.get("cpu_seconds") is None or not done:
            return None
        return run["cpu_seconds"] * 1000 / done

    return read


def count_of(name):
    return command(name, "count")


MIX_FIGURES = [
    ("commands/s", whole("ops_per_sec"), True),
    ("server CPU ms per command", cpu_per(whole("ops")), False),
    ("FETCH envelope p50 ms", command("FETCH envelope", "p50_ms"), False),
    ("SEARCH SUBJECT p50 ms", command("SEARCH SUBJECT", "p50_ms"), False),
    ("STORE p50 ms", command("STORE", "p50_ms"), False),
    ("APPEND p50 ms", command("APPEND", "p50_ms"), False),
]

FIGURES = {
    "smtp-submit": [
        ("messages/s", command("message", "ops_per_sec"), True),
        ("server CPU ms per message", cpu_per(count_of("message")), False),
        ("message p50 ms", command("message", "p50_ms"), False),
        ("message p99 ms", command("message", "p99_ms"), False),
        ("AUTH p50 ms", command("AUTH", "p50_ms"), False),
    ],
    "pop3-drain": [
        ("messages drained/s", command("RETR", "ops_per_sec"), True),
        ("server CPU ms per message", cpu_per(count_of("RETR")), False),
        ("RETR p50 ms", command("RETR", "p50_ms"), False),
        ("DELE p50 ms", command("DELE", "p50_ms"), False),
        ("QUIT max ms (commit of 119 DELE)", command("QUIT", "max_ms"), False),
    ],
    "pop3-keep": [
        ("RETR/s", command("RETR", "ops_per_sec"), True),
        ("server CPU ms per message", cpu_per(count_of("RETR")), False),
        ("sessions/s", command("QUIT", "ops_per_sec"), True),
        ("RETR p50 ms", command("RETR", "p50_ms"), False),
        ("UIDL p50 ms", command("UIDL", "p50_ms"), False),
    ],
    "imap-sync": [
        ("syncs/s", command("LOGOUT", "ops_per_sec"), True),
        ("server CPU ms per sync", cpu_per(count_of("LOGOUT")), False),
        ("SELECT p50 ms", command("SELECT", "p50_ms"), False),
        ("UID FETCH headers p50 ms", command("UID FETCH headers", "p50_ms"), False),
        ("UID FETCH body p50 ms", command("UID FETCH body", "p50_ms"), False),
        ("UID STORE p50 ms", command("UID STORE", "p50_ms"), False),
        ("APPEND p50 ms", command("APPEND", "p50_ms"), False),
    ],
    "imap-mix": MIX_FIGURES,
    "imap-mix-busy": MIX_FIGURES,
    "login-storm-imap": [
        ("logins/s", command("LOGIN", "ops_per_sec"), True),
        ("server CPU ms per login", cpu_per(count_of("LOGIN")), False),
        ("connect+STARTTLS p50 ms", command("connect", "p50_ms"), False),
        ("LOGIN p50 ms", command("LOGIN", "p50_ms"), False),
        ("LOGIN p99 ms", command("LOGIN", "p99_ms"), False),
    ],
    "login-one-imap": [
        ("logins/s", command("LOGIN", "ops_per_sec"), True),
        ("server CPU ms per login", cpu_per(count_of("LOGIN")), False),
        ("connect+STARTTLS p50 ms", command("connect", "p50_ms"), False),
        ("LOGIN p50 ms", command("LOGIN", "p50_ms"), False),
        ("LOGOUT p50 ms", command("LOGOUT", "p50_ms"), False),
    ],
    "login-storm-pop3": [
        ("logins/s", command("PASS", "ops_per_sec"), True),
        ("server CPU ms per login", cpu_per(count_of("PASS")), False),
        ("connect+STLS p50 ms", command("connect", "p50_ms"), False),
        ("PASS p50 ms", command("PASS", "p50_ms"), False),
        ("PASS p99 ms", command("PASS", "p99_ms"), False),
    ],
    "imap-idle": [
        ("KiB per idle session (PSS)", memory("pss_kib_per_session"), False),
        ("KiB per idle session (RSS sum)", memory("rss_kib_per_session"), False),
        ("LOGIN p50 ms", command("LOGIN", "p50_ms"), False),
        ("SELECT p50 ms", command("SELECT", "p50_ms"), False),
    ],
}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def verdict(portico, dovecot, higher_is_better):
    """Portico/Dovecot, and how much better or worse Portico does."""
    if portico is None or dovecot is None or portico == 0 or dovecot == 0:
        return None, "n/a"
    ratio = portico / dovecot
    factor = ratio if higher_is_better else 1 / ratio
    if 0.95 <= factor <= 1.05:
        return ratio, "same"
    return ratio, f"{factor:.2f}x better" if factor > 1 else f"{1 / factor:.2f}x worse"


def number(value):
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def load_runs(results):
    """{scenario: {server: [run, ...]}} from the run files the shell script wrote."""
    runs = {}
    for path in sorted(Path(results).glob("*.load.json")):
        scenario, server, number_ = path.name[: -len(".load.json")].split("__")
        run = {"load": json.loads(path.read_text()), "run": int(number_)}
        mem = path.with_name(path.name.replace(".load.json", ".mem.json"))
        if mem.exists():
            run["memory"] = json.loads(mem.read_text())
        cpu = path.with_name(path.name.replace(".load.json", ".cpu"))
        if cpu.exists():
            before, after = (float(x) for x in cpu.read_text().split())
            run["cpu_seconds"] = after - before
        runs.setdefault(scenario, {}).setdefault(server, []).append(run)
    return runs


def cmd_summary(args):
    meta = {
        "command": args.command_line,
        "scenarios": args.scenarios.split(),
        "notes": [line for line in Path(args.notes).read_text().splitlines() if line.strip()],
    }
    runs = load_runs(args.results)
    rows, details = [], []
    for scenario in meta["scenarios"]:
        by_server = runs.get(scenario, {})
        errors = {
            server: sum(sum((r["load"].get("errors") or {}).values()) for r in by_server.get(server, []))
            for server in ("portico", "dovecot")
        }
        for label, read, higher in FIGURES[scenario]:
            values = {s: [read(r) for r in by_server.get(s, [])] for s in ("portico", "dovecot")}
            p, d = median(values["portico"]), median(values["dovecot"])
            ratio, word = verdict(p, d, higher)
            rows.append(
                {
                    "scenario": scenario,
                    "figure": label,
                    "higher_is_better": higher,
                    "portico": p,
                    "dovecot": d,
                    "portico_runs": values["portico"],
                    "dovecot_runs": values["dovecot"],
                    "ratio": None if ratio is None else round(ratio, 3),
                    "portico_is": word,
                    "errors": errors,
                }
            )
        # Every command of the scenario, side by side: where the time goes.
        names = set()
        for server_runs in by_server.values():
            for r in server_runs:
                names.update((r["load"].get("commands") or {}).keys())
        for name in sorted(names):
            entry = {"scenario": scenario, "command": name}
            for server in ("portico", "dovecot"):
                for field in ("ops_per_sec", "p50_ms", "p99_ms"):
                    entry[f"{server}_{field}"] = median(
                        [command(name, field)(r) for r in by_server.get(server, [])]
                    )
            entry["p50_ratio"] = (
                round(entry["portico_p50_ms"] / entry["dovecot_p50_ms"], 2)
                if entry["portico_p50_ms"] and entry["dovecot_p50_ms"]
                else None
            )
            details.append(entry)

    Path(args.json).write_text(json.dumps({"meta": meta, "figures": rows, "commands": details}, indent=2) + "\n")

    header = ("scenario", "figure", "Portico", "Dovecot", "P/D", "Portico is", "errors P/D")
    table = [header]
    for row in rows:
        table.append(
            (
                row["scenario"],
                row["figure"] + (" ↑" if row["higher_is_better"] else " ↓"),
                number(row["portico"]),
                number(row["dovecot"]),
                "-" if row["ratio"] is None else f"{row['ratio']:.2f}",
                row["portico_is"],
                f"{row['errors']['portico']}/{row['errors']['dovecot']}",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        print("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))

    md = [f"Command: `{meta['command']}`", ""]
    md += [f"- {line}" for line in meta["notes"]]
    md += ["", "| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * 5]
    md += ["| " + " | ".join(r) + " |" for r in table[1:]]
    md += [
        "",
        "↑ higher is better, ↓ lower is better; each figure is the median of the runs; "
        "P/D = Portico / Dovecot; errors: all runs together.",
        "",
        "Every command, medians (ops/s, p50 and p99 in ms):",
        "",
        "| scenario | command | Portico ops/s | Dovecot ops/s | Portico p50 | Dovecot p50 | Portico p99 | Dovecot p99 | p50 P/D |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in details:
        md.append(
            f"| {d['scenario']} | {d['command']} | {number(d['portico_ops_per_sec'])} | "
            f"{number(d['dovecot_ops_per_sec'])} | {number(d['portico_p50_ms'])} | "
            f"{number(d['dovecot_p50_ms'])} | {number(d['portico_p99_ms'])} | "
            f"{number(d['dovecot_p99_ms'])} | {number(d['p50_ratio'])} |"
        )
    Path(args.markdown).write_text("\n".join(md) + "\n")


# ---------------------------------------------------------------- command line


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("free-ports")
    p.add_argument("count", type=int)
    p.set_defaults(run=lambda a: print(" ".join(map(str, free_ports(a.count)))))

    p = sub.add_parser("passwd", help="Dovecot passwd-file (password in $BENCH_PASSWORD)")
    p.add_argument("--scheme", choices=["ssha256", "argon2id"], required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--accounts", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_passwd)

    p = sub.add_parser("sink", help="SMTP server that discards every message")
    p.add_argument("--port", type=int, required=True)
    p.set_defaults(run=cmd_sink)

    p = sub.add_parser("lmtp-fill")
    p.add_argument("--socket", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("addresses", nargs="+")
    p.set_defaults(run=cmd_lmtp_fill)

    p = sub.add_parser("warm", help="IMAP login + SELECT INBOX per account ($BENCH_PASSWORD)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("addresses", nargs="+")
    p.set_defaults(run=cmd_warm)

    p = sub.add_parser("wait-banner")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--expect", default="* OK")
    p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(run=cmd_wait_banner)

    p = sub.add_parser("busy", help="how busy the machine is, and with what")
    p.add_argument("--exclude", type=int, required=True, help="root of the tree not to list")
    p.add_argument("--seconds", type=float, default=2.0)
    p.set_defaults(run=cmd_busy)

    p = sub.add_parser("settle", help="wait for a process tree to shrink")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--processes", type=int, required=True)
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(run=cmd_settle)

    p = sub.add_parser("quiet", help="wait until a process tree is (nearly) idle")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--percent", type=float, default=3.0)
    p.add_argument("--timeout", type=float, default=120.0)
    p.set_defaults(run=cmd_quiet)
    p = sub.add_parser("cpu", help="CPU seconds used by a process tree so far")
    p.add_argument("pid", type=int)
    p.set_defaults(run=cmd_cpu)

    p = sub.add_parser("treemem")
    p.add_argument("pid", type=int)
    p.set_defaults(run=cmd_treemem)

    p = sub.add_parser("idle-run")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--out", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(run=cmd_idle_run)

    p = sub.add_parser("summary")
    p.add_argument("--results", required=True)
    p.add_argument("--command-line", required=True, help="the benchmark's command line")
    p.add_argument("--scenarios", required=True, help="space-separated, in order")
    p.add_argument("--notes", required=True, help="file of lines: machine, versions, settings")
    p.add_argument("--json", required=True)
    p.add_argument("--markdown", required=True)
    p.set_defaults(run=cmd_summary)

    args = parser.parse_args()
    if getattr(args, "command", None) and args.command[0] == "--":
        args.command = args.command[1:]
    args.run(args)


if __name__ == "__main__":
    main()
