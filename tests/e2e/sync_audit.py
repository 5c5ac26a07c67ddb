"""Sync audit: reads an `strace -f -yy` trace of `portico serve` and checks that every
acknowledged write was durable on disk before its acknowledgement left for the client.

The trace must come from (see `strace_command`):

    strace -f -qq -tt -yy -s <large> -e trace=<TRACED_SYSCALLS> -o TRACE portico ... serve

`-yy` makes strace print the path (or the socket's addresses) next to every file
descriptor, so paths need no fd bookkeeping; `-s` must be large enough to show a message
marker in every write that carries message text (the e2e test puts the marker on every
line of every message, so any write of two lines or more carries one).

Ordering is by line number in the trace, never by timestamp: strace prints a syscall
when it stops the thread at the syscall's exit (a syscall interrupted by another thread's
output is split into `<unfinished ...>` / `<... resumed>` lines, its entry and its exit).
So "sync S finished before ack A started" is `S.exit_line < A.entry_line`, and "S started
after write W finished" is `S.entry_line > W.exit_line`; both are real-time facts.

The causal model, for one acknowledgement (`AckSpec`) found on its client socket:

1. Content. A write "carries" a piece of a message when it shows the message's marker
   (the test's messages have it on every line, followed by " line NNNNNN"; a marker
   without a line number, as in the Subject or a stored summary, is a piece of its own).
   For every regular file under the data directory, every piece written there before
   the ack must have a copy in that file that is synced before the ack: an
   fsync/fdatasync of the file (or a sync/syncfs) that started after that write ended
   and ended before the ack started. sync_file_range does not count; writes through an
   O_SYNC/O_DSYNC descriptor, or pwritev2 with RWF_SYNC/RWF_DSYNC, are synced by
   themselves. So a later rewrite of pieces that are durable already (sled writing a
   page that holds the message's summary again, for another client's commit) needs no
   sync of its own, while a message stored only partly synced is reported. A file
   unlinked before the ack needs nothing. An ack with markers but no such write at all
   is reported too: the trace cannot prove anything durable for it (bodies compressed
   or encrypted, written through mmap or io_uring, or a too small `-s`).
2. Names. If such a file got its current name during the trace (created with O_CREAT,
   or the target of a rename or link), its directory must be fsynced after that and
   before the ack; and so on up the tree for every directory made (mkdir) or renamed
   during the trace, up to and including the data directory as a parent (the data
   directory's own parent is the operator's, not checked).
3. Strict window (`AckSpec.start` and `strict`): between the end of the read that brought
   the command and the ack, every file under the data directory written must be synced
   after its last write in the window, and every name created, renamed or removed there
   must have its directory fsynced, all before the ack. This rule cannot tell the
   command's writes from those of other clients or background work, so the test runs
   the steps it marks strict one at a time, with no other load.

Also reported, independently of acks: shared writable mmaps of data files and io_uring
instances (their writes are invisible to strace).

Run as a script on a saved trace (the e2e test writes `acks.json` beside it):

    python3 tests/e2e/sync_audit.py TRACE --data-dir DIR --acks ACKS.json
    python3 tests/e2e/sync_audit.py TRACE --data-dir DIR          # acks inferred

Without --acks, acks are inferred from the trace: SMTP `250 ... queued as` replies and
tagged IMAP `OK`s of APPEND, with the markers read on that connection since the previous
one (content and name rules only, no strict windows).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

# Syscalls the trace needs. Everything that writes, syncs, names or removes a file; the
# socket calls that carry commands and replies; fd duplication and closing (O_SYNC
# bookkeeping); clone/fork (which threads share an fd table); mmap and io_uring_setup
# (writes strace cannot see).
TRACED_SYSCALLS = (
    "open,openat,openat2,creat,close,dup,dup2,dup3,fcntl,"
    "read,readv,recvfrom,recvmsg,write,writev,pwrite64,pwritev,pwritev2,"
    "sendto,sendmsg,sendfile,splice,copy_file_range,accept,accept4,"
    "fsync,fdatasync,syncfs,sync,sync_file_range,ftruncate,fallocate,"
    "rename,renameat,renameat2,link,linkat,unlink,unlinkat,mkdir,mkdirat,rmdir,"
    "mmap,msync,chdir,fchdir,clone,clone3,fork,vfork,io_uring_setup"
)

# Large enough for any single write the store makes to show its first marker: a sled
# segment is 512 KiB, a body-log record is written whole, and markers repeat every line.
STRING_LIMIT = 1 << 20

DEFAULT_MARKER_RE = r"audit-[0-9]+-[0-9a-z]+"
# A marker may be followed by " line NNNNNN": the e2e test numbers every line of a
# message, so a write shows which pieces (lines) of which message it carries.
PIECE_SUFFIX_RE = r"(?: line ([0-9]{6}))?"

INF = float("inf")


# Directories under the data directory that hold only rebuildable caches.
CACHE_DIRS = ("fulltext",)


def strace_command(trace_path: str | os.PathLike, argv: list[str]) -> list[str]:
    """`argv` wrapped in the strace invocation this module understands."""
    return [
        "strace",
        "-f",
        "--seccomp-bpf",  # stop only on traced syscalls: several times faster
        "-qq",
        "-tt",
        "-yy",
        "-s",
        str(STRING_LIMIT),
        "-e",
        f"trace={TRACED_SYSCALLS}",
        "-e",
        "signal=none",
        "-o",
        str(trace_path),
        *argv,
    ]


# --------------------------------------------------------------------------------------
# Lines -> syscalls (unfinished/resumed joined)

LINE_RE = re.compile(
    r"^(?:\[pid\s+(?P<pid1>\d+)\]\s+|(?P<pid2>\d+)\s+)?"
    r"(?P<time>\d\d:\d\d:\d\d(?:\.\d+)?\s+)?(?P<body>.*)$",
    re.S,
)
RESUMED_RE = re.compile(r"^<\.\.\. (?P<name>\w+) resumed>\s?(?P<rest>.*)$", re.S)
CALL_RE = re.compile(r"^(?P<name>\w+)\((?P<rest>.*)$", re.S)
UNFINISHED = " <unfinished ...>"


@dataclass
class Syscall:
    name: str
    pid: int
    entry: int  # line number (1-based) of the entry
    exit: int  # line number of the exit; INF if the trace ends first
    time: str  # timestamp of the entry line
    exit_time: str
    args: str  # between the parentheses
    ret: str  # after " = ", e.g. "3</path>", "-1 ENOENT (No such file or directory)"

    @property
    def ok(self) -> bool:
        return bool(self.ret) and not self.ret.startswith(("-1", "?"))

    @property
    def retval(self) -> int | None:
        m = re.match(r"-?\d+|0x[0-9a-f]+", self.ret)
        if not m:
            return None
        return int(m.group(0), 0)


def _split_call(text: str) -> tuple[str, str] | None:
    """`args) = ret` -> (args, ret); the last ") = " is the real one, since strings in the
    arguments come before it and the return value part never holds one."""
    idx = text.rfind(") = ")
    if idx < 0:
        if text.endswith(") = ?") or text.rstrip().endswith("= ?"):
            return text[: text.rfind(")")], "?"
        return None
    return text[:idx], text[idx + 4 :].strip()


def parse_syscalls(lines: Iterable[str]) -> Iterator[Syscall]:
    """Joins `<unfinished ...>` / `<... resumed>` pairs per pid; yields each syscall when
    it ends (or at the end of the trace, with exit INF, for those that never did)."""
    pending: dict[int, tuple[int, str, str, str]] = {}
    lineno = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\n")
        m = LINE_RE.match(line)
        if not m:
            continue
        pid = int(m.group("pid1") or m.group("pid2") or 0)
        time = (m.group("time") or "").strip()
        body = m.group("body")
        if body.startswith(("---", "+++")) or not body:
            continue
        r = RESUMED_RE.match(body)
        if r:
            start = pending.pop(pid, None)
            if start is None or start[1] != r.group("name"):
                continue  # resumed without its start (trace began mid-call)
            entry, name, head, entry_time = start
            text = head + r.group("rest")
            if text.endswith(UNFINISHED):  # resumed, then interrupted again
                pending[pid] = (entry, name, text[: -len(UNFINISHED)], entry_time)
                continue
            split = _split_call(text)
            if split:
                yield Syscall(name, pid, entry, lineno, entry_time, time, *split)
            continue
        c = CALL_RE.match(body)
        if not c:
            continue
        name = c.group("name")
        rest = c.group("rest")
        if rest.endswith(UNFINISHED):
            pending[pid] = (lineno, name, rest[: -len(UNFINISHED)], time)
            continue
        split = _split_call(rest)
        if split:
            yield Syscall(name, pid, lineno, lineno, time, time, *split)
    for pid, (entry, name, head, entry_time) in pending.items():
        yield Syscall(name, pid, entry, INF, entry_time, "", head, "?")


# --------------------------------------------------------------------------------------
# Argument decoding

# An fd as -yy prints it: 9</path>, 31<TCP:[1.2.3.4:5->6.7.8.9:10]>,
# 30<UNIX-STREAM:[46761,"/x/admin.sock"]>, 4<anon_inode:[eventfd]>, AT_FDCWD</cwd>.
FD_TOKEN = r"(?P<fd>-?\d+|AT_FDCWD)(?:<(?P<desc>[\w-]+:\[[^\]]*\]|[^>]*)>)?"
FD_RE = re.compile(FD_TOKEN)
STRING_RE = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"(\.\.\.)?', re.S)
FD_DESC_RE = re.compile(r"<(?:[\w-]+:\[[^\]]*\]|[^>]*)>")
ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)", re.S)
SIMPLE_ESCAPES = {
    "n": b"\n", "r": b"\r", "t": b"\t", "v": b"\v", "f": b"\f",
    "a": b"\a", "b": b"\b", "e": b"\x1b", '"': b'"', "\\": b"\\", "'": b"'", "?": b"?",
}


def unescape(s: str) -> bytes:
    """The bytes of a string as strace quotes it (C escapes, octal and \\x hex)."""
    if "\\" not in s:
        return s.encode("latin-1", "replace")
    out = bytearray()
    pos = 0
    for m in ESCAPE_RE.finditer(s):
        out += s[pos : m.start()].encode("latin-1", "replace")
        e = m.group(1)
        if e[0] == "x" and len(e) == 3:
            out.append(int(e[1:], 16))
        elif e[0] in "01234567":
            out.append(int(e, 8) & 0xFF)
        else:
            out += SIMPLE_ESCAPES.get(e, e.encode("latin-1", "replace"))
        pos = m.end()
    out += s[pos:].encode("latin-1", "replace")
    return bytes(out)


def fd_args(args: str) -> list[tuple[str, str | None]]:
    """The fd tokens at the top level of an argument list, in order: [(fd, desc)]."""
    out = []
    for part in split_args(args):
        m = FD_RE.fullmatch(part.strip())
        if m:
            out.append((m.group("fd"), m.group("desc")))
        else:
            out.append(("", None))
    return out


def split_args(args: str) -> list[str]:
    """Top-level comma-separated arguments (strings and brackets respected)."""
    parts, depth, start, pos, n = [], 0, 0, 0, len(args)
    while pos < n:
        ch = args[pos]
        if ch == '"':
            m = STRING_RE.match(args, pos)
            pos = m.end() if m else pos + 1
            continue
        if ch == "<":
            # an fd's -yy description may hold brackets, quotes and '>' (in "->")
            m = FD_DESC_RE.match(args, pos)
            pos = m.end() if m else pos + 1
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(args[start:pos])
            start = pos + 1
        pos += 1
    parts.append(args[start:])
    return [p.strip() for p in parts]


def raw_string_arg(args: str) -> tuple[str, bool] | None:
    """The first quoted argument after the first (the fd, whose -yy description may hold
    a quoted path), as strace printed it, and whether it was cut at -s."""
    for part in split_args(args)[1:]:
        m = STRING_RE.fullmatch(part)
        if m:
            return m.group(1), bool(m.group(2))
    return None


def first_string(args: str) -> tuple[bytes, bool] | None:
    raw = raw_string_arg(args)
    return None if raw is None else (unescape(raw[0]), raw[1])


IOV_RE = re.compile(r'iov_base="([^"\\]*(?:\\.[^"\\]*)*)"(\.\.\.)?', re.S)


def iov_strings(args: str) -> tuple[bytes, bool]:
    data, truncated = b"", False
    for m in IOV_RE.finditer(args):
        data += unescape(m.group(1))
        truncated = truncated or bool(m.group(2))
    return data, truncated


def quoted_path(arg: str) -> str | None:
    m = STRING_RE.fullmatch(arg.strip())
    return unescape(m.group(1)).decode("utf-8", "replace") if m else None


def is_socket_desc(desc: str | None) -> bool:
    return bool(desc) and bool(re.match(r"(TCP|TCPv6|UDP|UDPv6|UNIX|UNIX-STREAM|UNIX-DGRAM|"
                                        r"UNIX-SEQPACKET|NETLINK|socket)\b", desc))


# --------------------------------------------------------------------------------------
# The trace as events


@dataclass(eq=False)
class FileObj:
    """One file (inode), followed through renames."""

    id: int
    path: str
    namings: list["Naming"] = field(default_factory=list)
    removed_at: float = INF  # exit line of the unlink/rename that dropped its last name


@dataclass(eq=False)
class Write:
    obj: FileObj
    path: str
    call: Syscall
    pieces: frozenset[tuple[str, str]]  # (marker, line number or "") it carries
    synced: bool  # O_SYNC/O_DSYNC descriptor or RWF_(D)SYNC

    @property
    def markers(self) -> frozenset[str]:
        return frozenset(m for m, _ in self.pieces)


@dataclass
class Naming:
    path: str
    kind: str  # created, renamed, linked, made (a directory)
    call: Syscall


@dataclass
class Removal:
    path: str
    kind: str  # unlinked, removed (a directory), renamed away
    call: Syscall


@dataclass
class Chunk:
    call: Syscall
    data: bytes


@dataclass
class Conn:
    desc: str
    reads: list[Chunk] = field(default_factory=list)
    writes: list[Chunk] = field(default_factory=list)


@dataclass
class AckSpec:
    """One acknowledgement to audit.

    `socket`: a substring of the server-side socket's -yy description, e.g.
    "->127.0.0.1:50123]" (the client's port) or "admin.sock". `reply`: bytes of the
    acknowledgement as written to that socket. `start`: bytes of the command as read from
    it; the ack is the first write carrying `reply` after that read. `markers`: the
    message markers whose writes must be synced (rule 1 and 2). `strict`: also apply the
    window rule (3) from the end of the `start` read to the ack."""

    name: str
    socket: str
    reply: bytes
    start: bytes | None = None
    markers: tuple[str, ...] = ()
    strict: bool = False

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "socket": self.socket,
            "reply": self.reply.decode("latin-1"),
            "start": None if self.start is None else self.start.decode("latin-1"),
            "markers": list(self.markers),
            "strict": self.strict,
        }

    @classmethod
    def from_json(cls, d: dict) -> "AckSpec":
        return cls(
            name=d["name"],
            socket=d["socket"],
            reply=d["reply"].encode("latin-1"),
            start=None if d.get("start") is None else d["start"].encode("latin-1"),
            markers=tuple(d.get("markers", ())),
            strict=bool(d.get("strict", False)),
        )


SYNC_FLAGS = ("O_SYNC", "O_DSYNC")
WRITE_CALLS = {"write", "pwrite64", "writev", "pwritev", "pwritev2"}
READ_CALLS = {"read", "readv", "recvfrom", "recvmsg"}
SEND_CALLS = {"write", "writev", "sendto", "sendmsg"}


class Trace:
    """Everything the rules need, built in one pass over the syscalls."""

    def __init__(
        self,
        syscalls: Iterable[Syscall],
        data_dir: str,
        *,
        existing: Iterable[str] = (),
        cwd: str | None = None,
        marker_re: str = DEFAULT_MARKER_RE,
    ):
        self.data_dirs = {os.path.normpath(data_dir)}
        real = os.path.realpath(data_dir)
        self.data_dirs.add(real)
        self.data_dir = os.path.normpath(data_dir)
        self.cwd = cwd
        self.marker_re = re.compile(marker_re)
        self.piece_re = re.compile(f"({marker_re}){PIECE_SUFFIX_RE}")
        self.objs: dict[str, FileObj] = {}  # name -> file, for names that exist now
        self.dirs: set[str] = set()  # directories known to exist
        self.next_id = 0
        self._all_objs: list[FileObj] = []
        for p in existing:
            p = os.path.normpath(p)
            if p.endswith("/"):
                self.dirs.add(p.rstrip("/"))
            else:
                self._obj(p)
        self.writes: list[Write] = []
        self.writes_by_obj: dict[int, list[Write]] = {}
        self.writes_by_marker: dict[str, list[Write]] = {}
        self.file_syncs: dict[int, list[Syscall]] = {}  # fsync/fdatasync per file
        self.path_syncs: dict[str, list[Syscall]] = {}  # per path (directories)
        self.global_syncs: list[Syscall] = []  # sync, syncfs
        self.namings: list[tuple[FileObj | None, Naming]] = []  # None: a directory
        self.dir_namings: dict[str, list[Naming]] = {}
        self.removals: list[Removal] = []
        self.conns: list[Conn] = []
        self.open_conns: dict[str, Conn] = {}
        self.unauditable: list[str] = []
        self.fd_tables: dict[int, int] = {}  # tid -> table id
        self.fd_flags: dict[tuple[int, int], frozenset[str]] = {}
        # fd -> (path, flags) of its last open by anyone: for a thread whose fd table is
        # unknown (its clone is not in the trace)
        self.last_open: dict[int, tuple[str, frozenset[str]]] = {}
        self.counts: dict[str, int] = {}
        for call in syscalls:
            self.counts[call.name] = self.counts.get(call.name, 0) + 1
            self._feed(call)
        self._finish()

    def _finish(self) -> None:
        """Syscalls arrive in the order they ended; the queries want them in the order
        they began."""
        def by_entry(xs: list) -> None:
            xs.sort(key=lambda x: x.call.entry if hasattr(x, "call") else x.entry)

        for xs in (self.writes, self.global_syncs, *self.writes_by_obj.values(),
                   *self.writes_by_marker.values(), *self.file_syncs.values(),
                   *self.path_syncs.values(), *self.dir_namings.values(), self.removals):
            by_entry(xs)
        self.namings.sort(key=lambda on: on[1].call.entry)
        for obj in {id(o): o for o in self._all_objs}.values():
            by_entry(obj.namings)
        for conn in self.conns:
            by_entry(conn.reads)
            by_entry(conn.writes)

    # -- paths ------------------------------------------------------------------------

    def under_data(self, path: str | None) -> bool:
        if not path or not path.startswith("/"):
            return False
        for d in self.data_dirs:
            if path == d or path.startswith(d + "/"):
                # The full-text index is a cache, rebuilt from the store when lost (its
                # marks keep answers exact): nothing in it needs a sync before an ack.
                return not any(path == f"{d}/{c}" or path.startswith(f"{d}/{c}/")
                               for c in CACHE_DIRS)
        return False

    def _data_root_of(self, path: str) -> str:
        for d in self.data_dirs:
            if path == d or path.startswith(d + "/"):
                return d
        return self.data_dir

    def rel(self, path: str) -> str:
        """How a path is shown: relative to the data directory's parent."""
        root = self._data_root_of(path)
        base = os.path.dirname(root)
        return os.path.relpath(path, base) if self.under_data(path) else path

    def _resolve(self, dirfd: tuple[str, str | None] | None, name: str) -> str:
        if name.startswith("/"):
            return os.path.normpath(name)
        base = None
        if dirfd and dirfd[1] and dirfd[1].startswith("/"):
            base = dirfd[1]
        if base is None:
            base = self.cwd or "/"
        return os.path.normpath(os.path.join(base, name))

    def _note_cwd(self, args: str) -> None:
        m = re.search(r"AT_FDCWD<([^>]*)>", args)
        if m and m.group(1).startswith("/"):
            self.cwd = m.group(1)

    def _obj(self, path: str) -> FileObj:
        obj = self.objs.get(path)
        if obj is None:
            obj = self._new_obj(path)
            self.objs[path] = obj
        return obj

    def _new_obj(self, path: str) -> FileObj:
        self.next_id += 1
        obj = FileObj(self.next_id, path)
        self._all_objs.append(obj)
        return obj

    def _table(self, tid: int) -> int:
        return self.fd_tables.setdefault(tid, tid)

    # -- one syscall ------------------------------------------------------------------

    def _feed(self, c: Syscall) -> None:
        handler = getattr(self, "_on_" + c.name, None)
        if handler is not None:
            handler(c)

    def _on_clone(self, c: Syscall) -> None:
        child = c.retval
        if not c.ok or not child:
            return
        if "CLONE_FILES" in c.args or "CLONE_THREAD" in c.args:
            self.fd_tables[child] = self._table(c.pid)
        else:
            parent = self._table(c.pid)
            self.fd_tables[child] = child
            for (table, fd), flags in list(self.fd_flags.items()):
                if table == parent:
                    self.fd_flags[(child, fd)] = flags

    _on_clone3 = _on_clone
    _on_fork = _on_clone
    _on_vfork = _on_clone

    def _on_chdir(self, c: Syscall) -> None:
        path = quoted_path(split_args(c.args)[0])
        if c.ok and path:
            self.cwd = self._resolve(None, path)

    def _on_fchdir(self, c: Syscall) -> None:
        fds = fd_args(c.args)
        if c.ok and fds and fds[0][1] and fds[0][1].startswith("/"):
            self.cwd = fds[0][1]

    def _open(self, c: Syscall, dirfd, name: str | None, flags: str) -> None:
        self._note_cwd(c.args)
        if not c.ok:
            return
        m = FD_RE.match(c.ret)
        fd = int(m.group("fd")) if m else None
        path = m.group("desc") if m else None
        if not path or not path.startswith("/"):
            path = self._resolve(dirfd, name or "")
        path = os.path.normpath(path)
        if fd is not None:
            sync = frozenset(f for f in SYNC_FLAGS if re.search(rf"\b{f}\b", flags))
            self.fd_flags[(self._table(c.pid), fd)] = sync
            self.last_open[fd] = (path, sync)
        if "O_DIRECTORY" in flags or path in self.dirs:
            return
        if "O_TMPFILE" in flags:
            return
        if "O_CREAT" in flags and (path not in self.objs or "O_EXCL" in flags):
            if path in self.objs and "O_EXCL" in flags:
                del self.objs[path]
            obj = self._obj(path)
            naming = Naming(path, "created", c)
            obj.namings.append(naming)
            if self.under_data(path):
                self.namings.append((obj, naming))
        else:
            self._obj(path)

    def _on_openat(self, c: Syscall) -> None:
        a = split_args(c.args)
        dirfd = fd_args(a[0])[0] if a else None
        self._open(c, dirfd, quoted_path(a[1]) if len(a) > 1 else None, a[2] if len(a) > 2 else "")

    def _on_openat2(self, c: Syscall) -> None:
        a = split_args(c.args)
        dirfd = fd_args(a[0])[0] if a else None
        flags = a[2] if len(a) > 2 else ""
        self._open(c, dirfd, quoted_path(a[1]) if len(a) > 1 else None, flags)

    def _on_open(self, c: Syscall) -> None:
        a = split_args(c.args)
        self._open(c, None, quoted_path(a[0]) if a else None, a[1] if len(a) > 1 else "")

    def _on_creat(self, c: Syscall) -> None:
        a = split_args(c.args)
        self._open(c, None, quoted_path(a[0]) if a else None, "O_CREAT|O_WRONLY|O_TRUNC")

    def _on_close(self, c: Syscall) -> None:
        fds = fd_args(c.args)
        if fds and fds[0][0].lstrip("-").isdigit():
            self.fd_flags.pop((self._table(c.pid), int(fds[0][0])), None)

    def _dup(self, c: Syscall, old: str) -> None:
        new = c.retval
        if not c.ok or new is None or not old.lstrip("-").isdigit():
            return
        table = self._table(c.pid)
        self.fd_flags[(table, new)] = self.fd_flags.get((table, int(old)), frozenset())

    def _on_dup(self, c: Syscall) -> None:
        fds = fd_args(c.args)
        if fds:
            self._dup(c, fds[0][0])

    _on_dup2 = _on_dup
    _on_dup3 = _on_dup

    def _on_fcntl(self, c: Syscall) -> None:
        if "F_DUPFD" in c.args:
            self._on_dup(c)

    # writes to files; data on sockets

    def _data(self, c: Syscall) -> tuple[bytes, bool]:
        if c.name in ("writev", "pwritev", "pwritev2", "readv", "sendmsg", "recvmsg"):
            return iov_strings(c.args)
        s = first_string(c.args)
        return s if s else (b"", False)

    def _file_write(self, c: Syscall, fd: str, desc: str | None, raw: str | None) -> None:
        if not c.ok or not self.under_data(desc):
            return
        assert desc is not None
        if desc.endswith(" (deleted)"):
            return
        path = os.path.normpath(desc)
        obj = self._obj(path)
        pieces: frozenset[tuple[str, str]] = frozenset()
        if raw:
            pieces = frozenset((m.group(1), m.group(2) or "") for m in self.piece_re.finditer(raw))
        flags: frozenset[str] = frozenset()
        if fd.lstrip("-").isdigit():
            key = (self._table(c.pid), int(fd))
            if key in self.fd_flags:
                flags = self.fd_flags[key]
            elif self.last_open.get(int(fd), ("", None))[0] == path:
                flags = self.last_open[int(fd)][1]
        synced = bool(flags) or (c.name == "pwritev2" and re.search(r"RWF_D?SYNC", c.args))
        w = Write(obj, path, c, pieces, bool(synced))
        self.writes.append(w)
        self.writes_by_obj.setdefault(obj.id, []).append(w)
        for marker in w.markers:
            self.writes_by_marker.setdefault(marker, []).append(w)

    def _socket_io(self, c: Syscall, desc: str, reading: bool) -> None:
        n = c.retval
        if not c.ok or not n or n <= 0:
            return
        data, _ = self._data(c)
        data = data[:n]
        conn = self.open_conns.get(desc)
        if conn is None:
            conn = Conn(desc)
            self.conns.append(conn)
            self.open_conns[desc] = conn
        (conn.reads if reading else conn.writes).append(Chunk(c, data))

    def _on_write(self, c: Syscall) -> None:
        fds = fd_args(c.args)
        if not fds:
            return
        fd, desc = fds[0]
        if is_socket_desc(desc):
            if c.name in SEND_CALLS:
                self._socket_io(c, desc, reading=False)
            return
        if c.name in WRITE_CALLS and self.under_data(desc):
            # Markers are letters, digits and '-', which strace prints as they are: search
            # the quoted text itself rather than decode megabytes of it.
            if c.name in ("writev", "pwritev", "pwritev2"):
                raw = " ".join(m.group(1) for m in IOV_RE.finditer(c.args))
            else:
                found = raw_string_arg(c.args)
                raw = found[0] if found else ""
            self._file_write(c, fd, desc, raw)

    _on_pwrite64 = _on_write
    _on_writev = _on_write
    _on_pwritev = _on_write
    _on_pwritev2 = _on_write
    _on_sendto = _on_write
    _on_sendmsg = _on_write

    def _on_read(self, c: Syscall) -> None:
        fds = fd_args(c.args)
        if fds and is_socket_desc(fds[0][1]):
            self._socket_io(c, fds[0][1], reading=True)

    _on_readv = _on_read
    _on_recvfrom = _on_read
    _on_recvmsg = _on_read

    def _on_ftruncate(self, c: Syscall) -> None:
        fds = fd_args(c.args)
        if fds:
            self._file_write(c, fds[0][0], fds[0][1], None)

    _on_fallocate = _on_ftruncate

    def _on_copy_file_range(self, c: Syscall) -> None:
        fds = fd_args(c.args)
        if len(fds) > 2:
            self._file_write(c, fds[2][0], fds[2][1], None)

    def _on_splice(self, c: Syscall) -> None:
        fds = fd_args(c.args)
        if len(fds) > 2:
            self._file_write(c, fds[2][0], fds[2][1], None)

    def _on_sendfile(self, c: Syscall) -> None:
        fds = fd_args(c.args)
        if fds and not is_socket_desc(fds[0][1]):
            self._file_write(c, fds[0][0], fds[0][1], None)

    def _on_accept4(self, c: Syscall) -> None:
        m = FD_RE.match(c.ret)
        if c.ok and m and m.group("desc"):
            conn = Conn(m.group("desc"))
            self.conns.append(conn)
            self.open_conns[conn.desc] = conn

    _on_accept = _on_accept4

    # syncs

    def _on_fsync(self, c: Syscall) -> None:
        fds = fd_args(c.args)
        if not c.ok or not fds or not fds[0][1]:
            return
        path = fds[0][1]
        if path.endswith(" (deleted)") or not path.startswith("/"):
            return
        path = os.path.normpath(path)
        self.path_syncs.setdefault(path, []).append(c)
        obj = self.objs.get(path)
        if obj is not None:
            self.file_syncs.setdefault(obj.id, []).append(c)

    _on_fdatasync = _on_fsync

    def _on_sync(self, c: Syscall) -> None:
        if c.ok:
            self.global_syncs.append(c)

    _on_syncfs = _on_sync

    def _on_mmap(self, c: Syscall) -> None:
        a = split_args(c.args)
        if len(a) < 5 or "MAP_SHARED" not in a[3] or "PROT_WRITE" not in a[2]:
            return
        fd = fd_args(a[4])[0]
        if self.under_data(fd[1]):
            self.unauditable.append(
                f"{self.rel(fd[1])} mapped shared and writable at {c.time}: "
                "writes through the mapping are invisible to strace"
            )

    def _on_io_uring_setup(self, c: Syscall) -> None:
        if c.ok:
            self.unauditable.append(
                f"io_uring set up at {c.time}: its writes and syncs are invisible to strace"
            )

    # names

    def _name(self, path: str, obj: FileObj | None, kind: str, c: Syscall) -> None:
        naming = Naming(path, kind, c)
        if obj is not None:
            obj.namings.append(naming)
        else:
            self.dir_namings.setdefault(path, []).append(naming)
        if self.under_data(path):
            self.namings.append((obj, naming))

    def _remove(self, path: str, kind: str, c: Syscall) -> None:
        if self.under_data(path):
            self.removals.append(Removal(path, kind, c))

    def _at_path(self, a: list[str], i: int) -> str | None:
        """Path argument i of an *at syscall (dirfd at i, name at i+1)."""
        if len(a) <= i + 1:
            return None
        name = quoted_path(a[i + 1])
        if name is None:
            return None
        return self._resolve(fd_args(a[i])[0], name)

    def _mkdir(self, c: Syscall, path: str | None) -> None:
        if c.ok and path:
            self.dirs.add(path)
            self._name(path, None, "made", c)

    def _on_mkdir(self, c: Syscall) -> None:
        a = split_args(c.args)
        p = quoted_path(a[0]) if a else None
        self._mkdir(c, self._resolve(None, p) if p else None)

    def _on_mkdirat(self, c: Syscall) -> None:
        self._note_cwd(c.args)
        self._mkdir(c, self._at_path(split_args(c.args), 0))

    def _unlink(self, c: Syscall, path: str | None, is_dir: bool) -> None:
        if not c.ok or not path:
            return
        if is_dir or path in self.dirs:
            self.dirs.discard(path)
            self._remove(path, "removed", c)
            return
        obj = self.objs.pop(path, None)
        if obj is not None and not any(o is obj for o in self.objs.values()):  # its last name
            obj.removed_at = c.exit
        self._remove(path, "unlinked", c)

    def _on_unlink(self, c: Syscall) -> None:
        a = split_args(c.args)
        p = quoted_path(a[0]) if a else None
        self._unlink(c, self._resolve(None, p) if p else None, False)

    def _on_rmdir(self, c: Syscall) -> None:
        a = split_args(c.args)
        p = quoted_path(a[0]) if a else None
        self._unlink(c, self._resolve(None, p) if p else None, True)

    def _on_unlinkat(self, c: Syscall) -> None:
        self._note_cwd(c.args)
        a = split_args(c.args)
        self._unlink(c, self._at_path(a, 0), len(a) > 2 and "AT_REMOVEDIR" in a[2])

    def _rename(self, c: Syscall, old: str | None, new: str | None, flags: str) -> None:
        if not c.ok or not old or not new:
            return
        exchange = "RENAME_EXCHANGE" in flags
        if old in self.dirs or any(p.startswith(old + "/") for p in self.objs):
            self._rename_dir(c, old, new, exchange)
            return
        obj = self.objs.pop(old, None) or self._new_obj(old)
        other = self.objs.pop(new, None)
        if other is not None:
            if exchange:
                self.objs[old] = other
                other.path = old
                self._name(old, other, "renamed", c)
            else:
                other.removed_at = c.exit
        obj.path = new
        self.objs[new] = obj
        self._name(new, obj, "renamed", c)
        if os.path.dirname(old) != os.path.dirname(new) and not exchange:
            self._remove(old, "renamed away", c)

    def _rename_dir(self, c: Syscall, old: str, new: str, exchange: bool) -> None:
        def move(p: str, a: str, b: str) -> str:
            return b + p[len(a) :]

        moved = {p: o for p, o in self.objs.items() if p == old or p.startswith(old + "/")}
        swapped = (
            {p: o for p, o in self.objs.items() if p == new or p.startswith(new + "/")}
            if exchange
            else {}
        )
        for p in list(moved) + list(swapped):
            self.objs.pop(p, None)
        for p, o in moved.items():
            o.path = move(p, old, new)
            self.objs[o.path] = o
        for p, o in swapped.items():
            o.path = move(p, new, old)
            self.objs[o.path] = o
        dirs_moved = {d for d in self.dirs if d == old or d.startswith(old + "/")}
        self.dirs -= dirs_moved
        self.dirs |= {move(d, old, new) for d in dirs_moved}
        self.dirs.add(new)
        self._name(new, None, "renamed", c)
        if exchange:
            self._name(old, None, "renamed", c)
        elif os.path.dirname(old) != os.path.dirname(new):
            self._remove(old, "renamed away", c)

    def _on_rename(self, c: Syscall) -> None:
        a = split_args(c.args)
        old = quoted_path(a[0]) if a else None
        new = quoted_path(a[1]) if len(a) > 1 else None
        self._rename(
            c, old and self._resolve(None, old), new and self._resolve(None, new), ""
        )

    def _on_renameat(self, c: Syscall) -> None:
        self._note_cwd(c.args)
        a = split_args(c.args)
        self._rename(c, self._at_path(a, 0), self._at_path(a, 2), a[4] if len(a) > 4 else "")

    _on_renameat2 = _on_renameat

    def _on_link(self, c: Syscall) -> None:
        a = split_args(c.args)
        old = quoted_path(a[0]) if a else None
        new = quoted_path(a[1]) if len(a) > 1 else None
        self._link(c, old and self._resolve(None, old), new and self._resolve(None, new))

    def _on_linkat(self, c: Syscall) -> None:
        self._note_cwd(c.args)
        a = split_args(c.args)
        old = self._at_path(a, 0)
        if len(a) > 4 and "AT_EMPTY_PATH" in a[4]:
            old = fd_args(a[0])[0][1]  # an O_TMPFILE descriptor given a name
        self._link(c, old, self._at_path(a, 2))

    def _link(self, c: Syscall, old: str | None, new: str | None) -> None:
        if not c.ok or not new:
            return
        obj = (self.objs.get(old) if old else None) or self._new_obj(new)
        self.objs[new] = obj
        self._name(new, obj, "linked", c)

    # -- queries ----------------------------------------------------------------------

    def synced_between(self, syncs: list[Syscall], after: float, before: float) -> bool:
        """Some sync in `syncs` started after line `after` and ended before `before`."""
        entries = [s.entry for s in syncs]
        i = bisect.bisect_right(entries, after)
        for s in syncs[i:]:
            if s.entry >= before:
                break
            if s.exit < before:
                return True
        return self._global_between(after, before)

    def _global_between(self, after: float, before: float) -> bool:
        return any(after < s.entry and s.exit < before for s in self.global_syncs)

    def file_synced(self, obj: FileObj, after: float, before: float) -> bool:
        return self.synced_between(self.file_syncs.get(obj.id, []), after, before)

    def dir_synced(self, path: str, after: float, before: float) -> bool:
        return self.synced_between(self.path_syncs.get(path, []), after, before)

    def created_paths(self) -> list[tuple[str, str]]:
        """(path, time) of every name made under the data directory during the trace."""
        return [(n.path, n.call.time) for _, n in self.namings]


# --------------------------------------------------------------------------------------
# The rules


@dataclass
class Finding:
    kind: str  # unsynced, dir, no-write, missing-ack, unauditable
    ack: str
    ack_time: str
    subject: str  # the file (or directory) at fault
    detail: str  # what is wrong with it
    repeats: int = 0

    def __str__(self) -> str:
        if self.kind == "unauditable":
            text = f"unauditable: {self.detail}"
        elif self.kind == "missing-ack":
            text = f"ack {self.ack}: {self.detail}"
        else:
            text = f"ack {self.ack} at {self.ack_time}: {self.detail}"
        if self.repeats:
            text += f" (and {self.repeats} later acks)"
        return text


@dataclass
class FoundAck:
    spec: AckSpec
    conn: Conn
    entry: int  # line of the write that carries the reply's first byte
    time: str
    window_start: float | None  # exit line of the read that carried `start`


@dataclass
class Report:
    findings: list[Finding]
    acks: list[FoundAck]
    trace: Trace

    @property
    def ok(self) -> bool:
        return not self.findings

    def lines(self) -> list[str]:
        return [str(f) for f in self.findings]

    def summary(self) -> str:
        t = self.trace
        marked = sum(1 for w in t.writes if w.markers)
        syncs = sum(len(v) for v in t.file_syncs.values())
        return (
            f"{len(self.acks)} acks audited; {len(t.writes)} writes to data files "
            f"({marked} carrying markers), {syncs} file syncs, "
            f"{sum(len(v) for v in t.path_syncs.values())} fsync/fdatasync calls in all, "
            f"{len(t.namings)} names made, {len(t.removals)} removed, "
            f"{len(t.conns)} connections"
        )


def _stream(chunks: list[Chunk]) -> tuple[bytes, list[int]]:
    offsets, pos = [], 0
    for ch in chunks:
        offsets.append(pos)
        pos += len(ch.data)
    return b"".join(ch.data for ch in chunks), offsets


def _chunk_at(offsets: list[int], pos: int) -> int:
    return bisect.bisect_right(offsets, pos) - 1


def find_ack(trace: Trace, spec: AckSpec) -> FoundAck | None:
    for conn in trace.conns:
        if spec.socket not in conn.desc:
            continue
        window_start = None
        after_line = -1.0
        if spec.start is not None:
            data, offsets = _stream(conn.reads)
            at = data.find(spec.start)
            if at < 0:
                continue
            chunk = conn.reads[_chunk_at(offsets, at + len(spec.start) - 1)]
            window_start = chunk.call.exit
            after_line = chunk.call.exit
        data, offsets = _stream(conn.writes)
        first = next(
            (i for i, ch in enumerate(conn.writes) if ch.call.entry > after_line), None
        )
        if first is None:
            continue
        at = data.find(spec.reply, offsets[first])
        if at < 0:
            continue
        chunk = conn.writes[_chunk_at(offsets, at)]
        return FoundAck(spec, conn, chunk.call.entry, chunk.call.time, window_start)
    return None


def _name_findings(
    trace: Trace, ack: FoundAck, obj: FileObj | None, path: str, seen: set
) -> list[tuple[str, str, str]]:
    """Rule 2 for a file (`obj`, last written as `path`) or a directory (`path`): its
    name as it stood at the ack must have had its directory fsynced after it was made,
    and so up the tree. Returns (subject, kind, text) per directory at fault."""
    out = []
    a = ack.entry
    if obj is not None:
        before = [n for n in obj.namings if n.call.entry < a]
        if before:
            path = before[-1].path
    else:
        before = [n for n in trace.dir_namings.get(path, []) if n.call.entry < a]
    if before:
        n = before[-1]
        parent = os.path.dirname(n.path)
        if trace.under_data(parent) and not trace.dir_synced(parent, n.call.exit, a):
            out.append(
                (
                    n.path,
                    "dir",
                    f"{trace.rel(n.path)} {n.kind} at {n.call.time}, "
                    f"directory {trace.rel(parent)} not fsynced",
                )
            )
    parent = os.path.dirname(path)
    root = trace._data_root_of(path)
    if trace.under_data(parent) and parent != root and parent not in seen:
        seen.add(parent)
        out += _name_findings(trace, ack, None, parent, seen)
    return out


def audit(trace: Trace, acks: Iterable[AckSpec]) -> Report:
    findings: list[Finding] = []
    found_acks = []
    for spec in acks:
        found = find_ack(trace, spec)
        if found is None:
            what = f"reply {spec.reply!r}"
            if spec.start is not None:
                what += f" after command {spec.start!r}"
            findings.append(
                Finding(
                    "missing-ack",
                    spec.name,
                    "",
                    "",
                    f"not found in the trace ({what} on a socket matching {spec.socket!r})",
                )
            )
            continue
        found_acks.append(found)
        findings += _check_ack(trace, found)
    for text in trace.unauditable:
        findings.append(Finding("unauditable", "", "", "", text))
    return Report(_group(findings), found_acks, trace)


def _check_ack(trace: Trace, found: FoundAck) -> list[Finding]:
    spec = found.spec
    a = found.entry
    out: list[Finding] = []

    def add(kind: str, subject: str, detail: str) -> None:
        out.append(Finding(kind, spec.name, found.time, subject, detail))

    unsynced: dict[int, Write] = {}  # file -> the write to report
    named: dict[int, Write] = {}  # file -> its last write in scope (for its name)

    def durable(w: Write) -> bool:
        return w.synced or trace.file_synced(w.obj, w.call.exit, a)

    # Rule 1: per file, every piece of the message written there before the ack has a
    # copy in that file that was synced before the ack. (A later rewrite of pieces that
    # are durable already, such as sled rewriting a page that holds the message's
    # summary for another client's commit, needs no sync of its own; a piece that was
    # only ever written unsynced does.)
    per_file: dict[int, list[Write]] = {}
    markers = set(spec.markers)
    for marker in spec.markers:
        ws = [w for w in trace.writes_by_marker.get(marker, []) if w.call.entry < a]
        if not ws:
            add(
                "no-write",
                marker,
                f"no write carrying {marker} to a file under the data directory before "
                "it: nothing in the trace shows it stored",
            )
        for w in ws:
            if w.obj.removed_at >= a:  # a file gone before the ack needs nothing
                per_file.setdefault(w.obj.id, [])
                if w not in per_file[w.obj.id]:
                    per_file[w.obj.id].append(w)
    for obj_id, ws in per_file.items():
        ws.sort(key=lambda w: w.call.entry)
        written: set = set()
        safe: set = set()
        for w in ws:
            pieces = {p for p in w.pieces if p[0] in markers}
            written |= pieces
            if durable(w):
                safe |= pieces
        missing = written - safe
        if missing:
            unsynced[obj_id] = [w for w in ws if w.pieces & missing][-1]
        named[obj_id] = ws[-1]
    # Rule 3: the last write to each file in the window.
    window = spec.strict and found.window_start is not None
    if window:
        s = found.window_start
        last: dict[int, Write] = {}
        for w in trace.writes:
            if s < w.call.entry < a and w.obj.removed_at >= a:
                last[w.obj.id] = w
        for obj_id, w in last.items():
            if not durable(w):
                prev = unsynced.get(obj_id)
                if prev is None or prev.call.entry < w.call.entry:
                    unsynced[obj_id] = w
            prev = named.get(obj_id)
            if prev is None or prev.call.entry < w.call.entry:
                named[obj_id] = w
    for w in sorted(unsynced.values(), key=lambda w: w.call.entry):
        add("unsynced", w.path, f"{trace.rel(w.path)} written at {w.call.time} not synced")
    # Rule 2: names of the files written, and the directories above them.
    seen_dirs: set[str] = set()
    for w in sorted(named.values(), key=lambda w: w.call.entry):
        for subject, kind, detail in _name_findings(trace, found, w.obj, w.path, seen_dirs):
            add(kind, subject, detail)
    if window:
        s = found.window_start
        for obj, n in trace.namings:
            if not s < n.call.entry < a:
                continue
            if obj is not None and (obj.removed_at < a or obj.id in named):
                continue  # gone, or checked above with its writes
            for subject, kind, detail in _name_findings(trace, found, obj, n.path, seen_dirs):
                add(kind, subject, detail)
        for r in trace.removals:
            if s < r.call.entry < a:
                parent = os.path.dirname(r.path)
                if not trace.dir_synced(parent, r.call.exit, a):
                    add(
                        "dir",
                        r.path,
                        f"{trace.rel(r.path)} {r.kind} at {r.call.time}, "
                        f"directory {trace.rel(parent)} not fsynced",
                    )
    return out


def _group(findings: list[Finding]) -> list[Finding]:
    """One line per (kind, file, problem): the first ack it hurt, and how many more."""
    out: list[Finding] = []
    index: dict[tuple, Finding] = {}
    for f in findings:
        if f.kind in ("unsynced", "dir"):
            key = (f.kind, f.detail)
            first = index.get(key)
            if first is not None:
                first.repeats += 1
                continue
            index[key] = f
        out.append(f)
    return out


# --------------------------------------------------------------------------------------
# Acks inferred from the trace (script use without --acks)

QUEUED_RE = re.compile(rb"2\d\d [0-9.]+ [^\r\n]*queued as [^\r\n]+")
IMAP_APPEND_RE = re.compile(rb"(?m)^([!#-'*-Z^-z|~]+) (?:UID )?APPEND ", re.I)


def infer_acks(trace: Trace) -> list[AckSpec]:
    """SMTP `2xx ... queued as` replies and tagged OKs of IMAP APPENDs, each with the
    markers read on its connection since the previous such reply (or since the APPEND
    command): content and name rules only, no strict windows."""
    specs = []
    for conn in trace.conns:
        events = [(ch.call.entry, "r", ch) for ch in conn.reads]
        events += [(ch.call.entry, "w", ch) for ch in conn.writes]
        events.sort(key=lambda e: e[0])
        since_ack: list[bytes] = []  # read since the last ack (markers may straddle reads)
        appends: dict[bytes, list[bytes]] = {}  # IMAP tag -> read since its APPEND

        def markers_in(chunks: list[bytes]) -> tuple[str, ...]:
            text = b"".join(chunks).decode("latin-1")
            return tuple(sorted(set(trace.marker_re.findall(text))))

        for _, kind, ch in events:
            if kind == "r":
                since_ack.append(ch.data)
                for chunks in appends.values():
                    chunks.append(ch.data)
                for m in IMAP_APPEND_RE.finditer(ch.data):
                    appends[m.group(1)] = [ch.data[m.start() :]]
                continue
            for m in QUEUED_RE.finditer(ch.data):
                reply = m.group(0)
                specs.append(
                    AckSpec(f"SMTP {reply.decode('latin-1')!r}", conn.desc, reply,
                            markers=markers_in(since_ack))
                )
                since_ack = []
            for tag in list(appends):
                if re.search(rb"(?m)^" + re.escape(tag) + rb" OK", ch.data):
                    specs.append(
                        AckSpec(f"IMAP {tag.decode('latin-1')} APPEND", conn.desc,
                                tag + b" OK", start=tag + b" ",
                                markers=markers_in(appends.pop(tag)))
                    )
                    since_ack = []
    return specs


# --------------------------------------------------------------------------------------
# Entry points


def load(
    trace_path: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    existing: Iterable[str] = (),
    cwd: str | None = None,
    marker_re: str = DEFAULT_MARKER_RE,
) -> Trace:
    with open(trace_path, encoding="latin-1") as f:
        return Trace(
            parse_syscalls(f), str(data_dir), existing=existing, cwd=cwd, marker_re=marker_re
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trace")
    p.add_argument("--data-dir", required=True, help="the node's data directory")
    p.add_argument("--acks", help="JSON list of acks (as the e2e test writes them)")
    p.add_argument("--existing", help="file listing paths that existed when the trace began")
    p.add_argument("--cwd", help="the server's working directory (for relative paths)")
    p.add_argument("--marker-re", default=DEFAULT_MARKER_RE)
    args = p.parse_args(argv)
    existing = []
    if args.existing:
        existing = [l for l in Path(args.existing).read_text().splitlines() if l]
    trace = load(
        args.trace, args.data_dir, existing=existing, cwd=args.cwd, marker_re=args.marker_re
    )
    if args.acks:
        specs = [AckSpec.from_json(d) for d in json.loads(Path(args.acks).read_text())]
    else:
        specs = infer_acks(trace)
    report = audit(trace, specs)
    for line in report.lines():
        print(line)
    print(report.summary(), file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
