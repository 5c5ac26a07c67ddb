"""The IMAP transcripts (crates/imap/tests/transcripts/*.txt), which transcripts.rs runs
against the session machine and an in-memory fake host, run against the real binary
over loopback: one test per file, each on a fresh server with the fake host's accounts
(alice/secret and bob/hunter2, carol/carol with IMAP off, each with the folders
`user add` makes) and its settings (transcript.py says how the directives map to the
configuration and what the runner normalizes).

The runner waits a moment for stray output before every client write (QUIET_SECS),
which is idle time; so the transcripts run side by side, WORKERS at a time, each on
its own server, when the first test asks for its result. A difference is a failure,
or, for a transcript in KNOWN_DIFFERENCES, an expected one (strict: the entry must go
once the server and the fake host agree).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

import transcript
from conftest import ImapServer

# {stem: reason}: transcripts the real server does not get through as the fake host
# does, the reason quoting the first line that differs (expected, then got); each is a
# bug in the server or in the fake host. Marked xfail(strict=True).
KNOWN_DIFFERENCES: dict[str, str] = {}

# {stem: reason}: transcripts whose answers hold only at the fake host's fixed clock
# (05-Feb-2026 12:00:00 +0000), beyond what the runner can normalize, while the real
# server reads the machine's. Skipped: neither side is wrong.
CLOCK_DEPENDENT: dict[str, str] = {
    "within": "SEARCH OLDER/YOUNGER (RFC 5032) compare INTERNALDATE with the time of "
    "the search, to the second; the expected answers hold at the fake host's "
    "05-Feb-2026 12:00:00 +0000 only",
    "savedate-clock": "SAVEDATE (RFC 8514) as time passes: `! clock` moves the fake "
    "host's clock between saves (06-Feb, 07-Feb-2026) and the SAVED* answers tell those "
    "days apart; the real server's clock cannot be set (savedate.txt, which runs, holds "
    "at any clock)",
}

# Transcripts running at once. Most of a run is QUIET_SECS waits, so this many servers
# still leave the two cores of a small machine half idle.
WORKERS = 10


class TranscriptServer(ImapServer):
    """An ImapServer without the address block on failed sign-ins, which the fake host
    does not have (failed_logins_before_block = 0 turns it off)."""

    def write_config(self) -> None:
        super().write_config()
        text = self.config.read_text()
        assert "\n[security]\n" in text
        text = text.replace(
            "\n[security]\n", "\n[security]\nfailed_logins_before_block = 0\n", 1
        )
        self.config.write_text(text)

    def start(self) -> "TranscriptServer":
        # Several servers start at once here, each on ports that were free a moment
        # before it binds them, so one may lose a port to another's: it starts again on
        # new ones (start writes the configuration anew).
        for attempt in range(3):
            try:
                super().start()
                return self
            except pytest.fail.Exception:
                if attempt == 2 or "Address already in use" not in self.log():
                    raise


@dataclass
class Outcome:
    failure: str | None = None
    skip: str | None = None
    servers: list = field(default_factory=list)


def run_one(name: str, binary, root) -> Outcome:
    try:
        t = transcript.load(name)
    except ValueError as e:
        return Outcome(failure=f"{name}.txt: {e}")
    settings = t.imap_settings()
    server = TranscriptServer(
        binary,
        root / name,
        login="plaintext" if t.login_plaintext else "secure",
        imap_extra="\n".join(f"{key} = {value}" for key, value in settings.items()),
    )
    outcome = Outcome(servers=[server])
    if t.directives:
        # A setting the server's configuration does not have, or a value it does not
        # take: the transcript cannot run here.
        check = server.cli("user", "list")
        error = check.stderr.decode(errors="replace").strip()
        for key, (_, line) in t.directives.items():
            if check.returncode != 0 and key in error:
                outcome.skip = f"`{line}` cannot be configured on the real server: {error}"
                return outcome
    deliverer = None
    try:
        server.start()
        for user, password, imap in transcript.ACCOUNTS:
            server.add_user(user, password)
            if not imap:
                server.cli_ok("user", "set", user, "--imap", "off")
        deliverer = transcript.Deliverer(
            server, {user: password for user, password, _ in transcript.ACCOUNTS}
        )
        transcript.run(t, server, deliverer)
    except transcript.Mismatch as e:
        outcome.failure = f"{name}.txt {e}"
    finally:
        if deliverer:
            deliverer.close()
        server.kill()
    return outcome


def _expected_length(name: str) -> int:
    try:
        return transcript.load(name).client_writes()
    except ValueError:
        return 0


@pytest.fixture(scope="module")
def outcomes(request, portico_bin, tmp_path_factory):
    """{name: Future[Outcome]} for every transcript test selected in this session,
    started together, the longest first."""
    wanted = [
        item.callspec.params["name"]
        for item in request.session.items
        if item.module is request.module
        and hasattr(item, "callspec")
        and not item.get_closest_marker("skip")
    ]
    wanted.sort(key=_expected_length, reverse=True)
    root = tmp_path_factory.mktemp("transcripts")
    pool = ThreadPoolExecutor(WORKERS)
    futures = {name: pool.submit(run_one, name, portico_bin, root) for name in wanted}
    yield futures
    pool.shutdown(cancel_futures=True)


def _param(name: str):
    marks = []
    if name in KNOWN_DIFFERENCES:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_DIFFERENCES[name]))
    if name in CLOCK_DEPENDENT:
        marks.append(pytest.mark.skip(reason=CLOCK_DEPENDENT[name]))
    return pytest.param(name, id=name, marks=marks)


def test_the_lists_name_transcripts():
    assert set(KNOWN_DIFFERENCES) | set(CLOCK_DEPENDENT) <= set(transcript.names())


@pytest.mark.parametrize("name", [_param(name) for name in transcript.names()])
def test_transcript(name, outcomes, request):
    outcome = outcomes[name].result()
    request.node._portico_servers = outcome.servers
    if outcome.skip:
        pytest.skip(outcome.skip)
    if outcome.failure:
        pytest.fail(outcome.failure, pytrace=False)
