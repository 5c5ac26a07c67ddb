"""Sync audit: every acknowledged write is on disk before its acknowledgement leaves.

The real server runs under `strace -f` (sync_audit.strace_command) through a mixed load:
SMTP deliveries on the inbound and submission ports (DATA and BDAT, small messages and
300 KB and 2 MB ones), IMAP APPENDs, then, one at a time with nothing else running,
IMAP CREATE / APPEND / COPY / STORE / EXPUNGE / MOVE / RENAME / DELETE, a POP3 DELE and
QUIT, and `portico user add` through the running server's admin socket. Every message
carries a unique marker (`audit-<n>-<hex>`) on every line, so any write of its text shows
in the trace. sync_audit.py then checks each acknowledgement against the syscalls: every
file written for it fdatasync'ed or fsync'ed, every file or directory it created or
renamed with its directory fsynced, all before the reply was written to the socket (see
the module's docstring for the exact rules). The plain-text ports are used throughout,
since with TLS the trace would not show which reply is which.

The same run also checks that sled never writes a page to a blob file under
`store/blobs/` (it never fsyncs those), so no message body may ever go into sled.

The first tests below feed the checker handcrafted strace lines, so it is known to fail
when it should. The trace, the acks (acks.json) and the command that re-runs the
checker on them are named in any failure message.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import sync_audit
from conftest import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    Literal,
    RawClient,
    RawImap,
    RawSmtp,
    SmtpServer,
    plain_b64,
)
from sync_audit import AckSpec, Trace, audit, parse_syscalls

ALICE = "alice@example.com"
ALICE_PW = "alice-Audit-1"
BOB = "bob@example.com"
BOB_PW = "bob-Audit-2"
CAROL = "carol@example.com"
CAROL_PW = "carol-Audit-3"
HELO = "client.example.org"

SMALL = 2_000
LARGE = 300 * 1024
HUGE = 2 * 1024 * 1024

# --------------------------------------------------------------------------------------
# The checker on handcrafted traces

D = "/srv/data"


def run(text: str, acks: list[AckSpec], **kwargs) -> list[str]:
    lines = [l for l in text.strip("\n").split("\n")]
    trace = Trace(parse_syscalls(lines), D, **kwargs)
    return audit(trace, acks).lines()


SMTP_ACK = AckSpec(
    "SMTP 250 for audit-1-aa",
    "->127.0.0.1:5001]",
    b"250 2.0.0 Ok: queued as 01",
    markers=("audit-1-aa",),
)
CONN = "7<TCP:[127.0.0.1:25->127.0.0.1:5001]>"

GOOD = f"""
100 10:00:00.000001 openat(AT_FDCWD</srv>, "/srv/data/store/seg1", O_RDWR|O_CREAT|O_EXCL|O_CLOEXEC, 0666) = 9</srv/data/store/seg1>
101 10:00:00.000002 recvfrom({CONN}, "Subject: audit-1-aa\\r\\n\\r\\naudit-1-aa line 1\\r\\n.\\r\\n", 16384, 0, NULL, NULL) = 47
102 10:00:00.000003 pwrite64(9</srv/data/store/seg1>, "PRB1\\0\\0\\0\\1Subject: audit-1-aa\\r\\n\\r\\naudit-1-aa line 1\\r\\n", 45, 0 <unfinished ...>
100 10:00:00.000004 openat(AT_FDCWD</srv>, "/srv/data/store", O_RDONLY|O_CLOEXEC) = 11</srv/data/store>
102 10:00:00.000005 <... pwrite64 resumed>) = 45
103 10:00:00.000006 fdatasync(9</srv/data/store/seg1> <unfinished ...>
100 10:00:00.000007 fsync(11</srv/data/store>) = 0
103 10:00:00.000008 <... fdatasync resumed>) = 0
101 10:00:00.000009 sendto({CONN}, "250 2.0.0 Ok: queued as 01\\r\\n", 28, MSG_NOSIGNAL, NULL, 0) = 28
"""


def test_checker_passes_synced_write_and_directory():
    """Write, fdatasync of the file, fsync of its new directory entry, then the reply:
    clean (the unfinished/resumed pairs joined; the directory fsync started before the
    write ended but after the file was created, which is what the name needs)."""
    assert run(GOOD, [SMTP_ACK]) == []


def test_checker_reports_an_unsynced_write():
    text = GOOD.replace("103 10:00:00.000006 fdatasync(9</srv/data/store/seg1> <unfinished ...>\n", "")
    text = text.replace("103 10:00:00.000008 <... fdatasync resumed>) = 0\n", "")
    assert run(text, [SMTP_ACK]) == [
        "ack SMTP 250 for audit-1-aa at 10:00:00.000009: "
        "data/store/seg1 written at 10:00:00.000003 not synced"
    ]


def test_checker_sync_must_start_after_the_write_ended():
    """An fdatasync that began while the write was still running does not cover it."""
    text = GOOD.replace(
        "102 10:00:00.000005 <... pwrite64 resumed>) = 45\n"
        "103 10:00:00.000006 fdatasync(9</srv/data/store/seg1> <unfinished ...>\n",
        "103 10:00:00.000006 fdatasync(9</srv/data/store/seg1> <unfinished ...>\n"
        "102 10:00:00.000005 <... pwrite64 resumed>) = 45\n",
    )
    assert run(text, [SMTP_ACK]) == [
        "ack SMTP 250 for audit-1-aa at 10:00:00.000009: "
        "data/store/seg1 written at 10:00:00.000003 not synced"
    ]


def test_checker_sync_must_end_before_the_ack_starts():
    text = GOOD.replace(
        "103 10:00:00.000008 <... fdatasync resumed>) = 0\n"
        f"101 10:00:00.000009 sendto({CONN}, \"250 2.0.0 Ok: queued as 01\\r\\n\", 28, "
        "MSG_NOSIGNAL, NULL, 0) = 28\n",
        f"101 10:00:00.000009 sendto({CONN}, \"250 2.0.0 Ok: queued as 01\\r\\n\", 28, "
        "MSG_NOSIGNAL, NULL, 0) = 28\n"
        "103 10:00:00.000008 <... fdatasync resumed>) = 0\n",
    )
    assert run(text + "\n", [SMTP_ACK]) == [
        "ack SMTP 250 for audit-1-aa at 10:00:00.000009: "
        "data/store/seg1 written at 10:00:00.000003 not synced"
    ]


def test_checker_reports_a_new_file_whose_directory_was_not_fsynced():
    text = GOOD.replace("100 10:00:00.000007 fsync(11</srv/data/store>) = 0\n", "")
    assert run(text, [SMTP_ACK]) == [
        "ack SMTP 250 for audit-1-aa at 10:00:00.000009: "
        "data/store/seg1 created at 10:00:00.000001, directory data/store not fsynced"
    ]
    # A file that existed before the trace needs no directory fsync.
    existed = text.replace("O_RDWR|O_CREAT|O_EXCL|", "O_RDWR|O_CREAT|")
    assert run(existed, [SMTP_ACK], existing=["/srv/data/store/seg1"]) == []


def test_checker_sync_file_range_does_not_count_and_blob_files_are_caught():
    """sled's pattern: pwrite + sync_file_range, and a blob file never synced."""
    text = f"""
1 10:00:01.000000 mkdir("/srv/data/store", 0777) = 0
1 10:00:01.000001 openat(AT_FDCWD</srv>, "/srv/data/store/db", O_RDWR|O_CREAT|O_CLOEXEC, 0666) = 9</srv/data/store/db>
1 10:00:01.000002 openat(AT_FDCWD</srv>, "/srv/data", O_RDONLY|O_CLOEXEC) = 10</srv/data>
1 10:00:01.000003 fsync(10</srv/data>) = 0
1 10:00:01.000004 openat(AT_FDCWD</srv>, "/srv/data/store", O_RDONLY|O_CLOEXEC) = 10</srv/data/store>
1 10:00:01.000005 fsync(10</srv/data/store>) = 0
2 10:00:01.000006 recvfrom({CONN}, "Subject: audit-1-aa\\r\\n", 16384, 0, NULL, NULL) = 21
3 10:00:01.000007 openat(AT_FDCWD</srv>, "/srv/data/store/blobs/77", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0666) = 12</srv/data/store/blobs/77>
3 10:00:01.000008 write(12</srv/data/store/blobs/77>, "\\5\\0\\0audit-1-aa line 0001 xxx"..., 238973) = 238973
3 10:00:01.000009 close(12</srv/data/store/blobs/77>) = 0
4 10:00:01.000010 pwrite64(9</srv/data/store/db>, "\\1\\2audit-1-aa", 12, 0) = 12
4 10:00:01.000011 sync_file_range(9</srv/data/store/db>, 0, 12, SYNC_FILE_RANGE_WAIT_BEFORE|SYNC_FILE_RANGE_WRITE|SYNC_FILE_RANGE_WAIT_AFTER) = 0
2 10:00:01.000012 sendto({CONN}, "250 2.0.0 Ok: queued as 01\\r\\n", 28, MSG_NOSIGNAL, NULL, 0) = 28
"""
    assert run(text, [SMTP_ACK]) == [
        "ack SMTP 250 for audit-1-aa at 10:00:01.000012: "
        "data/store/blobs/77 written at 10:00:01.000008 not synced",
        "ack SMTP 250 for audit-1-aa at 10:00:01.000012: "
        "data/store/db written at 10:00:01.000010 not synced",
        # blobs/ itself was not made in this trace: only the blob's own entry counts
        "ack SMTP 250 for audit-1-aa at 10:00:01.000012: "
        "data/store/blobs/77 created at 10:00:01.000007, directory data/store/blobs not fsynced",
    ]
    trace = Trace(parse_syscalls(text.strip().split("\n")), D)
    assert [p for p, _ in trace.created_paths()] == [
        "/srv/data/store", "/srv/data/store/db", "/srv/data/store/blobs/77"
    ]


def test_checker_rewrites_of_durable_lines_need_no_sync_but_partial_syncs_are_caught():
    """Rule 1 is per line of the message and per file: sled writing a page again (the
    message's summary and first line, now beside another message's) after the message
    was synced, for another client's commit, is not this ack's problem; a message synced
    only in part is."""
    text = f"""
1 10:00:05.000000 openat(AT_FDCWD</srv>, "/srv/data/store/db", O_RDWR|O_CLOEXEC) = 9</srv/data/store/db>
2 10:00:05.000001 pwrite64(9</srv/data/store/db>, "Subject: audit-1-aa\\r\\naudit-1-aa line 000000 x\\r\\n", 40, 0) = 40
2 10:00:05.000002 fdatasync(9</srv/data/store/db>) = 0
3 10:00:05.000003 pwrite64(9</srv/data/store/db>, "audit-2-bb line 000000 Subject: audit-1-aa\\r\\naudit-1-aa line 000000 x", 60, 40) = 60
2 10:00:05.000004 sendto({CONN}, "250 2.0.0 Ok: queued as 01\\r\\n", 28, MSG_NOSIGNAL, NULL, 0) = 28
3 10:00:05.000005 fdatasync(9</srv/data/store/db>) = 0
"""
    assert run(text, [SMTP_ACK]) == []
    partial = text.replace(
        "audit-2-bb line 000000 Subject: audit-1-aa\\r\\naudit-1-aa line 000000 x",
        "audit-1-aa line 000001 x\\r\\naudit-1-aa line 000002 x",
    )
    assert run(partial, [SMTP_ACK]) == [
        "ack SMTP 250 for audit-1-aa at 10:00:05.000004: "
        "data/store/db written at 10:00:05.000003 not synced"
    ]


def test_checker_directories_made_during_the_trace_need_their_parent_fsynced():
    text = f"""
1 10:00:02.000000 mkdir("/srv/data/bodies", 0777) = 0
1 10:00:02.000001 openat(AT_FDCWD</srv>, "/srv/data/bodies/0001.seg", O_RDWR|O_CREAT|O_EXCL, 0644) = 9</srv/data/bodies/0001.seg>
1 10:00:02.000002 write(9</srv/data/bodies/0001.seg>, "audit-1-aa\\r\\n", 12) = 12
1 10:00:02.000003 fdatasync(9</srv/data/bodies/0001.seg>) = 0
1 10:00:02.000004 openat(AT_FDCWD</srv>, "/srv/data/bodies", O_RDONLY|O_DIRECTORY) = 10</srv/data/bodies>
1 10:00:02.000005 fsync(10</srv/data/bodies>) = 0
2 10:00:02.000006 sendto({CONN}, "250 2.0.0 Ok: queued as 01\\r\\n", 28, MSG_NOSIGNAL, NULL, 0) = 28
"""
    assert run(text, [SMTP_ACK]) == [
        "ack SMTP 250 for audit-1-aa at 10:00:02.000006: "
        "data/bodies made at 10:00:02.000000, directory data not fsynced"
    ]
    fixed = text.replace(
        "2 10:00:02.000006",
        "1 10:00:02.000005 openat(AT_FDCWD</srv>, \"/srv/data\", O_RDONLY|O_DIRECTORY) = 11</srv/data>\n"
        "1 10:00:02.000005 fsync(11</srv/data>) = 0\n"
        "2 10:00:02.000006",
    )
    assert run(fixed, [SMTP_ACK]) == []


def test_checker_follows_a_rename_into_place():
    """Write a temporary file, fsync it, rename it: the rename's directory must be
    fsynced after the rename; an fsync of the directory before the rename is not enough."""
    ack = AckSpec("admin add", "admin.sock", b"added carol@example.com",
                  start=b"carol@example.com", strict=True)
    sock = '5<UNIX-STREAM:[200->201,"/srv/data/admin.sock"]>'
    text = f"""
1 10:00:03.000000 accept4(4<UNIX-STREAM:[100,"/srv/data/admin.sock"]>, {{sa_family=AF_UNIX}}, [110 => 2], SOCK_CLOEXEC) = {sock}
1 10:00:03.000001 recvfrom({sock}, "\\0\\0\\0\\25\\0\\21carol@example.com", 8192, 0, NULL, NULL) = 25
2 10:00:03.000002 openat(AT_FDCWD</srv>, "users.tmp", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0600) = 9</srv/data/users.tmp>
2 10:00:03.000003 write(9</srv/data/users.tmp>, "carol", 5) = 5
2 10:00:03.000004 fsync(9</srv/data/users.tmp>) = 0
2 10:00:03.000005 openat(AT_FDCWD</srv>, "/srv/data", O_RDONLY|O_DIRECTORY) = 10</srv/data>
2 10:00:03.000006 fsync(10</srv/data>) = 0
2 10:00:03.000007 rename("data/users.tmp", "data/users") = 0
1 10:00:03.000008 writev({sock}, [{{iov_base="\\0\\0\\0\\31\\0\\27added carol@example.com", iov_len=29}}], 1) = 29
"""
    assert run(text, [ack], cwd="/srv") == [
        "ack admin add at 10:00:03.000008: data/users renamed at 10:00:03.000007, "
        "directory data not fsynced"
    ]
    fixed = text.replace(
        "1 10:00:03.000008", "2 10:00:03.000007 fsync(10</srv/data>) = 0\n1 10:00:03.000008"
    )
    assert run(fixed, [ack], cwd="/srv") == []


def test_checker_strict_window_and_removals():
    """A strict step (an IMAP EXPUNGE): every file written between the command and its
    OK must be synced, every name removed must have its directory fsynced; writes before
    the command do not count."""
    ack = AckSpec("IMAP B06 EXPUNGE", "->127.0.0.1:6000]", b"B06 OK",
                  start=b"B06 EXPUNGE", strict=True)
    sock = "8<TCP:[127.0.0.1:143->127.0.0.1:6000]>"
    text = f"""
1 10:00:04.000000 openat(AT_FDCWD</srv>, "/srv/data/store/db", O_RDWR|O_CLOEXEC) = 9</srv/data/store/db>
3 10:00:04.000001 pwrite64(9</srv/data/store/db>, "earlier", 7, 0) = 7
1 10:00:04.000002 read({sock}, "B06 EXPUNGE\\r\\n", 4096) = 13
3 10:00:04.000003 pwrite64(9</srv/data/store/db>, "X\\0\\0\\1", 4, 7) = 4
3 10:00:04.000004 unlink("/srv/data/store/0007.seg") = 0
1 10:00:04.000005 write({sock}, "* 1 EXPUNGE\\r\\nB06 OK EXPUNGE completed\\r\\n", 37) = 37
"""
    assert run(text, [ack]) == [
        "ack IMAP B06 EXPUNGE at 10:00:04.000005: data/store/db written at 10:00:04.000003 not synced",
        "ack IMAP B06 EXPUNGE at 10:00:04.000005: data/store/0007.seg unlinked at 10:00:04.000004, "
        "directory data/store not fsynced",
    ]
    # Writes through an O_DSYNC descriptor are synced by themselves.
    dsync = text.replace("O_RDWR|O_CLOEXEC) = 9", "O_RDWR|O_DSYNC|O_CLOEXEC) = 9")
    assert run(dsync, [ack]) == [
        "ack IMAP B06 EXPUNGE at 10:00:04.000005: data/store/0007.seg unlinked at 10:00:04.000004, "
        "directory data/store not fsynced",
    ]


def test_checker_reports_acks_it_cannot_find_or_prove():
    """A missing ack, and an ack whose marker was never written to a data file (the
    audit must never pass for lack of evidence)."""
    other = AckSpec("SMTP 250 for audit-2-bb", "->127.0.0.1:5001]",
                    b"250 2.0.0 Ok: queued as 02", markers=("audit-2-bb",))
    text = GOOD + (
        f"101 10:00:00.000010 sendto({CONN}, \"250 2.0.0 Ok: queued as 02\\r\\n\", 28, "
        "MSG_NOSIGNAL, NULL, 0) = 28\n"
    )
    missing = AckSpec("IMAP A1 APPEND", "->127.0.0.1:5002]", b"A1 OK", start=b"A1 APPEND")
    assert run(text, [SMTP_ACK, other, missing]) == [
        "ack SMTP 250 for audit-2-bb at 10:00:00.000010: no write carrying audit-2-bb to a "
        "file under the data directory before it: nothing in the trace shows it stored",
        "ack IMAP A1 APPEND: not found in the trace (reply b'A1 OK' after command "
        "b'A1 APPEND' on a socket matching '->127.0.0.1:5002]')",
    ]


def test_checker_groups_one_fault_over_many_acks_and_infers_acks():
    text = GOOD.replace("100 10:00:00.000007 fsync(11</srv/data/store>) = 0\n", "") + (
        f"101 10:00:00.000010 recvfrom({CONN}, \"Subject: audit-2-bb\\r\\n\\r\\n.\\r\\n\", "
        "16384, 0, NULL, NULL) = 27\n"
        "102 10:00:00.000011 pwrite64(9</srv/data/store/seg1>, \"audit-2-bb\", 10, 45) = 10\n"
        "103 10:00:00.000012 fdatasync(9</srv/data/store/seg1>) = 0\n"
        f"101 10:00:00.000013 sendto({CONN}, \"250 2.0.0 Ok: queued as 02\\r\\n\", 28, "
        "MSG_NOSIGNAL, NULL, 0) = 28\n"
    )
    trace = Trace(parse_syscalls(text.strip().split("\n")), D)
    inferred = sync_audit.infer_acks(trace)
    assert [(a.reply, a.markers) for a in inferred] == [
        (b"250 2.0.0 Ok: queued as 01", ("audit-1-aa",)),
        (b"250 2.0.0 Ok: queued as 02", ("audit-2-bb",)),
    ]
    assert audit(trace, inferred).lines() == [
        "ack SMTP '250 2.0.0 Ok: queued as 01' at 10:00:00.000009: data/store/seg1 created "
        "at 10:00:00.000001, directory data/store not fsynced (and 1 later acks)"
    ]


def test_parser_joins_interleaved_unfinished_calls_and_decodes_strings():
    lines = [
        '7 12:00:00.000001 write(3</x/data/f>, "a\\"b\\\\c\\0\\377\\n", 7 <unfinished ...>',
        '8 12:00:00.000002 fsync(4</x/data/g> <unfinished ...>',
        "7 12:00:00.000003 <... write resumed>) = 7",
        "8 12:00:00.000004 <... fsync resumed>) = -1 EIO (Input/output error)",
        "[pid 9] 12:00:00.000005 close(3</x/data/f>) = 0",
        "9 12:00:00.000006 +++ exited with 0 +++",
        "10 12:00:00.000007 fdatasync(5</x/data/h> <unfinished ...>",
    ]
    calls = list(parse_syscalls(lines))
    assert [(c.name, c.pid, c.entry, c.exit, c.ok) for c in calls] == [
        ("write", 7, 1, 3, True),
        ("fsync", 8, 2, 4, False),
        ("close", 9, 5, 5, True),
        ("fdatasync", 10, 7, sync_audit.INF, False),
    ]
    assert sync_audit.first_string(calls[0].args) == (b'a"b\\c\x00\xff\n', False)
    assert sync_audit.split_args(
        '31<TCP:[127.0.0.1:25->127.0.0.1:9]>, "x, y)", 4, [{iov_base="(", iov_len=1}]'
    ) == ['31<TCP:[127.0.0.1:25->127.0.0.1:9]>', '"x, y)"', "4", '[{iov_base="(", iov_len=1}]']


# --------------------------------------------------------------------------------------
# The server under strace


class StracedServer(SmtpServer):
    """An SmtpServer whose `serve` runs under strace (sync_audit.strace_command) writing
    to `trace_path`. `proc` is strace; SIGTERM and SIGKILL go to portico itself, and
    strace exits after it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trace_path = self.root / "strace.txt"
        self.child_pid: int | None = None

    def spawn(self) -> subprocess.Popen:
        if shutil.which("strace") is None:
            pytest.fail("strace is not installed (scripts/test.sh installs it)", pytrace=False)
        log = open(self.log_path, "ab")
        log.write(f"==== start #{self.starts + 1} (under strace) ====\n".encode())
        log.flush()
        argv = [str(self.binary), "--config", str(self.config), "serve"]
        try:
            proc = subprocess.Popen(
                sync_audit.strace_command(self.trace_path, argv),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()
        try:
            self.child_pid = self._wait_for_child(proc)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return proc

    def _is_ours(self, pid: int) -> bool:
        """Whether `pid` is this node's portico (strace also forks short-lived helpers,
        and a pid may be reused once ours is gone)."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return argv[:1] == [str(self.binary).encode()] and str(self.config).encode() in argv

    def _wait_for_child(self, proc: subprocess.Popen) -> int:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                pids = [int(p) for p in children.read_text().split()]
            except OSError:
                pids = []
            for pid in pids:
                if self._is_ours(pid):
                    return pid
            time.sleep(0.01)
        pytest.fail(f"strace did not start portico:\n{self.log()}", pytrace=False)

    def _signal(self, sig: int) -> None:
        if self.child_pid is not None and self._is_ours(self.child_pid):
            try:
                os.kill(self.child_pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> int:
        assert self.proc is not None, "server was never started"
        self._signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT * 2)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"portico did not exit within {STOP_TIMEOUT * 2}s of SIGTERM:\n{self.log()}",
                pytrace=False,
            )
        return code

    def kill(self) -> None:
        # portico first: once strace is gone, every syscall its seccomp filter sends to
        # the tracer fails with ENOSYS, and a portico left behind can no longer even
        # shut down on SIGTERM.
        self._signal(signal.SIGKILL)
        if self.running:
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------------------
# The load


class Load:
    """Makes messages with unique markers and records the acks to audit."""

    def __init__(self, server: StracedServer):
        self.server = server
        self.acks: list[AckSpec] = []
        self.lock = threading.Lock()
        self.n = 0
        self.salt = secrets.token_hex(3)

    def marker(self) -> str:
        with self.lock:
            self.n += 1
            return f"audit-{self.n}-{self.salt}"

    def message(self, size: int, rcpt: str) -> tuple[str, bytes]:
        """A message of about `size` bytes whose every line carries its marker (no line
        starts with a dot, so DATA needs no stuffing)."""
        marker = self.marker()
        head = (
            f"From: sender@remote.example\r\nTo: {rcpt.replace(',', ', ')}\r\n"
            f"Subject: {marker}\r\n"
            f"Message-ID: <{marker}@example.org>\r\n\r\n"
        ).encode()
        lines = []
        total = len(head)
        i = 0
        while total < size:
            line = f"{marker} line {i:06d} " + "x" * 40 + "\r\n"
            lines.append(line.encode())
            total += len(line)
            i += 1
        return marker, head + b"".join(lines)

    def record(self, ack: AckSpec) -> None:
        with self.lock:
            self.acks.append(ack)


def client_socket(sock) -> str:
    """How the server-side socket of this client connection shows in the trace."""
    return f"->127.0.0.1:{sock.getsockname()[1]}]"


def size_name(n: int) -> str:
    return f"{round(n / 1024)} KB" if n < 1024 * 1024 else f"{round(n / (1024 * 1024))} MB"


def smtp_session(load: Load, port_name: str, items: list[tuple[int, str, str]]) -> None:
    """One SMTP connection delivering `items` (size, recipients separated by commas,
    DATA | BDAT | BDAT2 for two chunks); on the submission port it authenticates first
    (login = "plaintext")."""
    server = load.server
    port = server.smtp_port if port_name == "inbound" else server.submission_port
    r = RawSmtp(port)
    try:
        assert r.greeting[0].startswith(b"220 ")
        r.ehlo(HELO)
        sender = "sender@remote.example"
        if port_name == "submission":
            assert r.cmd(f"AUTH PLAIN {plain_b64(ALICE, ALICE_PW)}").startswith(b"235 ")
            sender = ALICE
        for size, rcpts, how in items:
            marker, msg = load.message(size, rcpts)
            assert r.cmd(f"MAIL FROM:<{sender}>").startswith(b"250 "), marker
            for rcpt in rcpts.split(","):
                assert r.cmd(f"RCPT TO:<{rcpt}>").startswith(b"250 "), marker
            if how == "DATA":
                assert r.cmd("DATA").startswith(b"354 ")
                r.send(msg + b".\r\n")
            elif how == "BDAT":
                r.send(b"BDAT %d LAST\r\n%s" % (len(msg), msg))
            else:
                half = len(msg) // 2
                r.send(b"BDAT %d\r\n%s" % (half, msg[:half]))
                assert r.reply()[-1].startswith(b"250 ")
                r.send(b"BDAT %d LAST\r\n%s" % (len(msg) - half, msg[half:]))
            reply = r.reply()[-1]
            assert reply.startswith(b"250 "), (marker, reply)
            load.record(
                AckSpec(
                    f"SMTP {reply.decode()!r} for {marker} "
                    f"({size_name(size)}, {port_name} {how})",
                    client_socket(r.sock),
                    reply,
                    markers=(marker,),
                )
            )
        assert r.cmd("QUIT").startswith(b"221 ")
    finally:
        r.close()


def imap_appends(load: Load, user: str, password: str, prefix: str, sizes: list[int]) -> None:
    r = RawImap(load.server)
    try:
        assert r.cmd(f'LOGIN "{user}" "{password}"', tag=f"{prefix}000")[1].startswith(
            f"{prefix}000 OK".encode()
        )
        for i, size in enumerate(sizes, 1):
            tag = f"{prefix}{i:03d}"
            marker, msg = load.message(size, user)
            _, tagged = r.cmd("APPEND INBOX ", Literal(msg), tag=tag)
            assert tagged.startswith(f"{tag} OK".encode()), (marker, tagged)
            load.record(
                AckSpec(
                    f"IMAP {tag} APPEND of {marker} ({size_name(size)})",
                    client_socket(r.sock),
                    f"{tag} OK".encode(),
                    start=f"{tag} APPEND".encode(),
                    markers=(marker,),
                )
            )
        r.cmd("LOGOUT", tag=f"{prefix}999")
    finally:
        r.close()


def concurrent_load(load: Load) -> None:
    """Deliveries on six connections at once: group commit and interleaved writes."""
    both = f"{ALICE},{BOB}"
    jobs = [
        lambda: smtp_session(
            load,
            "inbound",
            [(SMALL, BOB, "DATA"), (LARGE, ALICE, "DATA"), (SMALL, both, "DATA"),
             (SMALL, BOB, "BDAT")],
        ),
        lambda: smtp_session(
            load, "inbound", [(HUGE, BOB, "DATA"), (SMALL, ALICE, "DATA"), (SMALL, BOB, "DATA")]
        ),
        lambda: smtp_session(
            load,
            "submission",
            [(SMALL, BOB, "DATA"), (LARGE, BOB, "BDAT"), (SMALL, ALICE, "BDAT2"),
             (SMALL, both, "DATA")],
        ),
        lambda: smtp_session(
            load, "submission", [(SMALL, ALICE, "BDAT"), (SMALL, BOB, "DATA")] * 2
        ),
        lambda: imap_appends(load, BOB, BOB_PW, "A", [SMALL, LARGE, SMALL, SMALL]),
        lambda: imap_appends(load, ALICE, ALICE_PW, "C", [HUGE, SMALL, SMALL]),
    ]
    with ThreadPoolExecutor(len(jobs)) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def strict_steps(load: Load) -> None:
    """Mutations one at a time, nothing else running: the window rule applies."""
    server = load.server
    r = RawImap(server)
    sock = client_socket(r.sock)

    def step(tag: str, command: str, *parts, markers=()) -> list[bytes]:
        untagged, tagged = r.cmd(command, *parts, tag=tag)
        assert tagged.startswith(f"{tag} OK".encode()), (command, untagged, tagged)
        name = f"IMAP {tag} {command.strip()}" + "".join(f" of {m}" for m in markers)
        load.record(
            AckSpec(
                name,
                sock,
                f"{tag} OK".encode(),
                start=f"{tag} ".encode(),
                markers=markers,
                strict=True,
            )
        )
        return untagged

    try:
        assert r.cmd(f'LOGIN "{ALICE}" "{ALICE_PW}"', tag="B00")[1].startswith(b"B00 OK")
        step("B01", "CREATE Audit")
        marker, msg = load.message(SMALL, ALICE)
        step("B02", "APPEND Audit (\\Flagged) ", Literal(msg), markers=(marker,))
        untagged, tagged = r.cmd("SELECT INBOX", tag="B03")
        assert tagged.startswith(b"B03 OK"), tagged
        exists = [int(l.split()[1]) for l in untagged if l.endswith(b" EXISTS")]
        assert exists and exists[0] >= 4, untagged
        step("B04", "COPY 1:2 Audit")
        step("B05", "STORE 1 +FLAGS (\\Deleted)")
        step("B06", "EXPUNGE")
        step("B07", "MOVE 1 Audit")
        step("B08", "RENAME Audit Audit2")
        step("B09", "DELETE Audit2")
        r.cmd("LOGOUT", tag="B99")
    finally:
        r.close()

    p = RawClient(server)
    try:
        assert p.login(BOB, BOB_PW).startswith(b"+OK"), "POP3 login"
        assert p.cmd("DELE 1").startswith(b"+OK")
        assert p.cmd("DELE 2").startswith(b"+OK")
        reply = p.cmd("QUIT")
        assert reply.startswith(b"+OK"), reply
        load.record(
            AckSpec("POP3 QUIT after DELE 1, DELE 2", client_socket(p.sock), reply,
                    start=b"QUIT", strict=True)
        )
    finally:
        p.close()

    add_user(load, CAROL, CAROL_PW)


def add_user(load: Load, address: str, password: str) -> None:
    """`portico user add` while the server runs: the CLI goes through admin.sock."""
    load.server.add_user(address, password)
    load.record(
        AckSpec(f"admin user add {address}", "admin.sock", f"added {address}".encode(),
                start=address.encode(), strict=True)
    )


# --------------------------------------------------------------------------------------
# One audited run for the module


class AuditedRun:
    def __init__(self, server: StracedServer, load: Load, report: sync_audit.Report):
        self.server = server
        self.load = load
        self.report = report
        self.data_dir = server.root / server.data_dir
        self.acks_path = server.root / "acks.json"
        self.acks_path.write_text(json.dumps([a.to_json() for a in load.acks], indent=1))

    def rerun(self) -> str:
        """The command that runs the checker again on this run's trace."""
        return (
            f"python3 {os.path.relpath(sync_audit.__file__)} {self.server.trace_path} "
            f"--data-dir {self.data_dir} --acks {self.acks_path}"
        )


@pytest.fixture(scope="module")
def audited(portico_bin, tmp_path_factory) -> AuditedRun:
    root = tmp_path_factory.mktemp("sync_audit") / "node"
    server = StracedServer(
        portico_bin, root, login="plaintext", smtp_login="plaintext"
    )
    try:
        server.start()
        load = Load(server)
        add_user(load, ALICE, ALICE_PW)
        add_user(load, BOB, BOB_PW)
        concurrent_load(load)
        strict_steps(load)
        server.stop()
    except BaseException:
        server.kill()
        raise
    trace = sync_audit.load(server.trace_path, root / server.data_dir, cwd=str(root))
    report = audit(trace, load.acks)
    return AuditedRun(server, load, report)


@pytest.fixture
def audit_run(audited, request) -> AuditedRun:
    """The module's run, with its server's log attached to a failing test's report."""
    request.node._portico_servers = [audited.server]
    return audited


MAX_LINES = 60


def test_every_acknowledged_write_is_synced_before_the_reply(audit_run):
    report = audit_run.report
    expected_acks = len(audit_run.load.acks)
    assert expected_acks >= 30, expected_acks
    lines = report.lines()
    shown = lines[:MAX_LINES]
    if len(lines) > MAX_LINES:
        shown.append(f"... {len(lines) - MAX_LINES} more")
    assert not lines, (
        f"{len(lines)} sync audit findings:\n"
        + "\n".join(shown)
        + f"\n\n{report.summary()}\nre-run: {audit_run.rerun()}"
    )
    # Not vacuous: every ack was found and its message written and synced.
    assert len(report.acks) == expected_acks


def test_no_sled_blob_files_under_load(audit_run):
    """sled writes any page over ~128 KiB to a file under store/blobs/ and never fsyncs
    it; bodies must stay out of sled, so not one may appear (in the trace or on disk)."""
    blobs = audit_run.data_dir / "store" / "blobs"
    traced = [
        f"{audit_run.report.trace.rel(path)} created at {when}"
        for path, when in audit_run.report.trace.created_paths()
        if os.path.realpath(path).startswith(os.path.realpath(blobs) + "/")
    ]
    on_disk = sorted(p.name for p in blobs.iterdir()) if blobs.is_dir() else []
    assert traced == [] and on_disk == [], (
        f"sled blob files appeared: {len(traced)} in the trace, {len(on_disk)} on disk\n"
        + "\n".join(traced[:20])
    )
