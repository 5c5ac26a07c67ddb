"""SEARCH BODY, TEXT and the header keys through the full-text index: the same answers
as a full scan.

Two servers hold the same mail: one keeps the full-text index (the default), the other
has it turned off and reads every message. Many random substrings of the corpus's
decoded text, in random case, must give the same UIDs from both; needles in charsets
other than UTF-8 and in quoted-printable and base64 parts must give what Python's own
decoding says. The index must also follow new and expunged messages, and
`portico reindex` must rebuild it.
"""

from __future__ import annotations

import base64
import email
import email.policy
import quopri
import random
import re
import time
import unicodedata
from pathlib import Path

import pytest

from conftest import ImapServer, load_corpus
from test_imap import body_text

USER = "fts@example.com"
PW = "pw-Fulltext-1"


def charset_message(n: int, subject: str, charset: str, cte: str, text: str) -> bytes:
    payload = text.encode(charset)
    if cte == "base64":
        body = base64.encodebytes(payload)
    elif cte == "quoted-printable":
        body = quopri.encodestring(payload)
    else:
        body = payload
    head = (
        f"From: sender{n}@example.net\r\nTo: {USER}\r\nSubject: {subject}\r\n"
        f"Message-ID: <fts{n}@example.net>\r\nDate: Sun, 6 Dec 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: text/plain; charset="{charset}"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    ).encode()
    return head + body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# Non-ASCII words in charsets other than UTF-8, quoted-printable and base64.
CHARSET_MESSAGES = [
    ("koi8-r", "base64", "Привет из Москвы, отчёт за квартал готов."),
    ("iso-8859-2", "quoted-printable", "Zażółć gęślą jaźń w Łodzi, środa."),
    ("windows-1252", "quoted-printable", "Café crème – naïve résumé “quoted” façade."),
    ("iso-8859-1", "8bit", "Grüße aus München, schöne Straße."),
    ("shift_jis", "base64", "東京で会議があります。品川駅の近く。"),
    ("utf-8", "base64", "Ελληνικά κείμενα και ΚΕΦΑΛΑΙΑ γράμματα."),
    ("iso-8859-7", "quoted-printable", "Καλημέρα από την Αθήνα."),
    # Decomposed accents, a digraph, a ligature and a roman numeral (I18NLEVEL=1).
    ("utf-8", "8bit", unicodedata.normalize("NFD", "Décomposé \u01c4emal \ufb01nal \u216b.")),
]
CHARSET_NEEDLES = ["москвы", "ОТЧЁТ", "gęślą", "ŁODZI", "crème", "NAÏVE", "résumé",
                   "straße", "MÜNCHEN", "東京", "品川駅", "κεφαλαια", "Αθήνα", "καλημέρα"]


def decoded_headers(data: bytes) -> str:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    return "\n".join(f"{k}: {v}" for k, v in msg.items())


def decoded_body(data: bytes) -> str:
    """The text of every text/* part, decoded and lower-cased, as test_imap expects it."""
    return body_text(email.message_from_bytes(data, policy=email.policy.default))


class NoIndexServer(ImapServer):
    def write_config(self) -> None:
        super().write_config()
        self.config.write_text(self.config.read_text() + "\n[search]\nfull_text_index = false\n")


def indexed_messages(server: ImapServer) -> int:
    return sum(int(n) for n in re.findall(r"full-text index updated.*?messages=(\d+)", server.log()))


def wait_indexed(server: ImapServer, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while indexed_messages(server) < count:
        assert time.monotonic() < deadline, f"index never caught up:\n{server.log()[-3000:]}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def pair(portico_bin, tmp_path_factory):
    """(indexed server, unindexed server, [(uid, raw message)]) with the same mail."""
    corpus = [data for _, data in load_corpus()]
    extra = [charset_message(i, f"charset test {i}", *spec) for i, spec in enumerate(CHARSET_MESSAGES)]
    mail = corpus + extra
    root = tmp_path_factory.mktemp("fulltext")
    indexed = ImapServer(portico_bin, root / "indexed",
                         env={"RUST_LOG": "info,portico_server::fulltext=debug"})
    plain = NoIndexServer(portico_bin, root / "plain")
    try:
        for server in (indexed, plain):
            server.start()
            server.add_user(USER, PW)
            for i, data in enumerate(mail, 1):
                assert server.deliver(USER, data) == i
        wait_indexed(indexed, len(mail))
        yield indexed, plain, list(enumerate(mail, 1))
    finally:
        indexed.kill()
        plain.kill()


def uid_search(m, key: str, needle: str) -> list[int]:
    m.literal = needle.encode("utf-8")
    typ, data = m.uid("SEARCH", "CHARSET", "UTF-8", key)
    assert typ == "OK", (key, needle, data)
    return [int(x) for x in data[0].split()]


def random_needles(texts: list[str], count: int, rng: random.Random) -> list[str]:
    needles = []
    while len(needles) < count:
        text = rng.choice(texts)
        if len(text) < 3:
            continue
        length = rng.choice([3, 4, 5, 7, 10, 16])
        start = rng.randrange(0, max(1, len(text) - length))
        needle = text[start:start + length]
        if not needle.strip() or "\r" in needle or "\n" in needle or '"' in needle:
            continue
        case = rng.randrange(3)
        needles.append(needle.upper() if case == 0 else needle.lower() if case == 1 else needle)
    return needles


def selected_pair(indexed: ImapServer, plain: ImapServer):
    """A session on each server with INBOX selected."""
    a = indexed.imap_login(USER, PW)
    b = plain.imap_login(USER, PW)
    a.select("INBOX")
    b.select("INBOX")
    return a, b


def compare_searches(a, b, searches: list[tuple[str, str]]) -> tuple[dict, int]:
    """Runs each (key, needle) on both sessions: the searches whose UIDs differ, as
    {(key, needle): (got, want)}, and how many found something on `b`."""
    differ = {}
    found_some = 0
    for key, needle in searches:
        got, want = uid_search(a, key, needle), uid_search(b, key, needle)
        found_some += bool(want)
        if got != want:
            differ[(key, needle)] = (got, want)
    return differ, found_some


def test_indexed_search_answers_as_a_full_scan(pair):
    indexed, plain, mail = pair
    rng = random.Random(20261206)
    bodies = [decoded_body(data) for _, data in mail]
    heads = [data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace") for _, data in mail]
    body_needles = random_needles(bodies, 90, rng)
    text_needles = random_needles(heads, 35, rng) + random_needles(bodies, 15, rng)
    # Needles found nowhere, and short ones the index cannot narrow.
    missing = ["zqxjkvw", "Ünïcödé-nowhere", "no such phrase at all", "ab", "é"]
    a, b = selected_pair(indexed, plain)
    differ, found_some = compare_searches(
        a, b, [("BODY", n) for n in body_needles + missing] + [("TEXT", n) for n in text_needles + missing])
    assert not differ, f"indexed vs full scan (got, want): {differ}"
    assert found_some > 110
    # Combined keys: the index narrows under AND, OR and NOT alike.
    for criteria in (["OR", "BODY", "forecast", "BODY", "invoice"],
                     ["NOT", "BODY", "the"], ["BODY", "the", "NOT", "TEXT", "report"],
                     ["SEEN", "BODY", "meeting"], ["OR", "BODY", "zqxjkvw", "ALL"]):
        assert a.uid("SEARCH", *criteria) == b.uid("SEARCH", *criteria), criteria
    a.logout()
    b.logout()
    # The index was asked and narrowed things down: some answers had fewer candidates
    # than the folder has messages.
    answers = re.findall(r"full-text index answered.*?candidates=(\d+)", indexed.log())
    assert answers and min(int(n) for n in answers) < len(mail) // 2, answers[:20]


def test_indexed_header_keys_answer_as_a_full_scan(pair):
    """FROM, TO, CC, SUBJECT (and HEADER on those fields) are narrowed by the index's
    per-field trigrams; the answers stay the full scan's."""
    indexed, plain, mail = pair
    rng = random.Random(6203)
    fields = {"SUBJECT": "Subject", "FROM": "From", "TO": "To", "CC": "Cc"}
    values = {key: [] for key in fields}
    for _, data in mail:
        msg = email.message_from_bytes(data, policy=email.policy.default)
        for key, name in fields.items():
            values[key] += [str(v) for v in msg.get_all(name, [])]
    a, b = selected_pair(indexed, plain)
    searches = []
    for key, texts in values.items():
        assert texts, key
        # A field's own values, another field's (mostly absent here), and no match.
        other = values["FROM" if key != "FROM" else "SUBJECT"]
        needles = random_needles(texts, 25, rng) + random_needles(other, 6, rng)
        searches += [(key, needle) for needle in needles + ["zqxjkvw", "ab"]]
    differ, found_some = compare_searches(a, b, searches)
    for needle in random_needles(values["SUBJECT"], 10, rng):
        criteria = ("HEADER", "Subject")
        got = uid_search(a, " ".join(criteria), needle)
        assert got == uid_search(b, " ".join(criteria), needle), needle
    assert not differ, f"indexed vs full scan (got, want): {differ}"
    assert found_some > 75
    for criteria in (["OR", "SUBJECT", "meeting", "FROM", "example"],
                     ["NOT", "SUBJECT", "re:"], ["SUBJECT", "the", "BODY", "the"],
                     ["UNSEEN", "FROM", "@"]):
        assert a.uid("SEARCH", *criteria) == b.uid("SEARCH", *criteria), criteria
    a.logout()
    b.logout()
    answers = re.findall(r"full-text index answered.*?key=Subject candidates=(\d+)",
                         indexed.log())
    assert answers and min(int(n) for n in answers) < len(mail) // 2, answers[:20]


def test_search_decodes_charsets_and_transfer_encodings(pair):
    indexed, plain, mail = pair
    expected_body = {uid: decoded_body(data).lower() for uid, data in mail}
    expected_text = {uid: (decoded_headers(data) + "\n" + decoded_body(data)).lower()
                     for uid, data in mail}
    for server in (indexed, plain):
        m = server.imap_login(USER, PW)
        m.select("INBOX", readonly=True)
        for needle in CHARSET_NEEDLES:
            want = [uid for uid, text in expected_body.items() if needle.lower() in text]
            assert want, needle
            assert uid_search(m, "BODY", needle) == want, (server.root, needle)
            want = [uid for uid, text in expected_text.items() if needle.lower() in text]
            assert uid_search(m, "TEXT", needle) == want, (server.root, needle)
        m.logout()


def test_unicode_casemap_needles_through_the_index(pair):
    """I18NLEVEL=1 (RFC 5255): needles composed or decomposed, in either case, find the
    same messages (i;unicode-casemap, RFC 5051), with the index as without it: the index
    folds text and needles as SEARCH does, so it never rules out a real match."""
    indexed, plain, mail = pair

    def nfd(text: str) -> str:
        return unicodedata.normalize("NFD", text)

    extra = ["décomposé", "DÉCOMPOSÉ", "\u01c6EMAL", "\u01c5emal", "\ufb01nal", "\ufb01nal xii"]
    searches = []
    for needle in CHARSET_NEEDLES + extra:
        # TEXT reads what BODY reads and the header: once per needle is enough for it.
        searches.append(("TEXT", needle))
        for form in dict.fromkeys([needle, nfd(needle), needle.upper(), nfd(needle.upper())]):
            searches.append(("BODY", form))
    a, b = selected_pair(indexed, plain)
    differ, _ = compare_searches(a, b, searches)
    assert not differ, f"indexed vs full scan (got, want): {differ}"
    # The decomposed message is found by every spelling; `final` is not `ﬁnal`.
    (decomposed,) = [uid for uid, data in mail if b"\xef\xac\x81nal" in data]
    for needle in extra:
        assert uid_search(a, "BODY", needle) == [decomposed], needle
    assert decomposed not in uid_search(a, "BODY", "final")
    # Every other needle: its decomposed form finds what it finds, as does upper case
    # where that is a simple mapping (not `ß` → `SS`).
    for needle in CHARSET_NEEDLES:
        want = uid_search(a, "BODY", needle)
        assert want, needle
        forms = [nfd(needle)] + ([needle.upper()] if "ß" not in needle else [])
        for form in forms:
            assert uid_search(a, "BODY", form) == want, (needle, form)
    a.logout()
    b.logout()


def thread_nice_values(pid: int) -> dict[str, set[int]]:
    """Each thread name of process `pid` (trailing digits dropped) and the nice values
    its threads run at, from /proc."""
    threads: dict[str, set[int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        # Fields after the name start at the state (field 3); nice is field 19.
        nice = int(stat[stat.rindex(")") + 2 :].split()[16])
        threads.setdefault(re.sub(r"\d+$", "", name), set()).add(nice)
    return threads


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_the_index_threads_give_way_to_sessions(pair):
    """The indexer and the threads tantivy starts for it (indexing, merging) run at
    nice 10, so indexing gives way when the CPU is busy; the threads that serve
    sessions and make mail durable keep nice 0. tantivy's threads inherit the value of
    the thread that opens the index."""
    indexed, _, _ = pair
    threads = thread_nice_values(indexed.proc.pid)
    for name in ("fulltext", "merge_thread_", "segment_updater"):
        assert threads.get(name) == {10}, (name, threads)
    for name, values in threads.items():
        if name.startswith("thrd-tantivy"):
            assert values == {10}, (name, threads)
    for name in ("sled-io-", "actix-rt|system"):
        assert threads.get(name) == {0}, (name, threads)


def test_index_follows_new_and_expunged_messages_and_reindex_rebuilds_it(pair):
    indexed, _, mail = pair
    m = indexed.imap_login(USER, PW)
    m.select("INBOX")
    new = charset_message(90, "fresh", "utf-8", "quoted-printable", "Brand-new zyxwvu message.")
    before = indexed_messages(indexed)
    uid = indexed.deliver(USER, new)
    # Found at once, before the indexer has seen it (read in full above the mark)...
    assert uid_search(m, "BODY", "ZYXWVU") == [uid]
    wait_indexed(indexed, before + 1)
    # ...and after, from the index.
    assert uid_search(m, "BODY", "zyxwvu") == [uid]
    assert uid_search(m, "TEXT", "fresh") == [uid]
    typ, _ = m.uid("STORE", str(uid), "+FLAGS", r"(\Deleted)")
    assert typ == "OK"
    assert m.expunge()[0] == "OK"
    assert uid_search(m, "BODY", "zyxwvu") == []
    m.logout()

    # reindex needs the server stopped.
    r = indexed.cli("reindex")
    assert r.returncode != 0 and b"stop it first" in r.stderr, r
    indexed.stop()
    out = indexed.cli_ok("reindex")
    assert re.match(rf"indexed {len(mail)} messages in \d+ folders in [\d.]+ s \(0 unreadable", out), out
    indexed.start()
    m = indexed.imap_login(USER, PW)
    m.select("INBOX", readonly=True)
    for needle in CHARSET_NEEDLES[:4] + ["zyxwvu"]:
        want = [u for u, data in mail if needle.lower() in decoded_body(data).lower()]
        assert uid_search(m, "BODY", needle) == want, needle
    m.logout()
