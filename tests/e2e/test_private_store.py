"""The store is private to the account the server runs as (issue: the local user
`nobody` could read password hashes and mail from a world-readable data directory):
everything under the data directory is created without group/other permissions, and
what was loosened while the server was stopped is tightened again at start, with a
warning in the log."""

from __future__ import annotations

import os
import stat
from pathlib import Path

ALICE = "alice@example.com"
ALICE_PW = "alice-Private-1"


def loose_paths(root: Path) -> list[str]:
    out = []
    for path in [root, *root.rglob("*")]:
        try:
            if path.is_symlink():
                continue
            mode = stat.S_IMODE(path.lstat().st_mode)
        except FileNotFoundError:
            # Gone while we looked (the running server's temporary files).
            continue
        if mode & 0o077:
            out.append(f"{path.relative_to(root.parent)} {mode:o}")
    return out


def test_data_directory_is_private_and_tightened_at_start(make_server):
    server = make_server(start=False)
    # Even under a permissive umask, nothing the server makes is open to others.
    old = os.umask(0o022)
    try:
        server.add_user(ALICE, ALICE_PW)
        server.start()
        server.deliver(ALICE, b"Subject: private\r\n\r\nsecret\r\n")
        server.add_user("bob@example.com", "bob-Private-2")
    finally:
        os.umask(old)
    data = server.root / server.data_dir
    assert (data / "store" / "db").exists()
    assert list((data / "store" / "bodies").glob("*.seg"))
    assert loose_paths(data) == []
    server.stop()

    # Loosened while stopped: made private again at start, and the log says which.
    os.chmod(data, 0o755)
    os.chmod(data / "store", 0o755)
    os.chmod(data / "store" / "db", 0o644)
    server.start()
    assert loose_paths(data) == []
    log = server.log()
    for path in (data, data / "store", data / "store" / "db"):
        assert f"path={path} (" in log or f'path="{path} (' in log, (path, log[-3000:])
    assert "was open to other users: made private to this one" in log
    server.stop()
