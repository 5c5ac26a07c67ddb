"""PREVIEW (RFC 8970) with Dovecot's draft forms (PREVIEW=FUZZY, SNIPPET=FUZZY), and
THREAD=REFS, against the real binary with Python's imaplib.

PREVIEW: every corpus message appended, its preview fetched in each form: at most 200
characters of valid UTF-8 on one line, the expected text for the kinds of message the
corpus has, 8-bit text as a literal until the client enables UTF-8 and quoted after,
LAZY the same (Portico always computes), no flag changed, bad modifiers refused.

THREAD=REFS: the corpus and a few dozen seeded-random replies to it (chains, lost
parents, replies that come before their parents, duplicate Message-IDs, loops, replies
known by subject alone, shared dates) threaded by the server, and the same messages
threaded here by a separate implementation of the algorithm (draft-ietf-morg-inthread
§4 as Dovecot implements it: RFC 5256 REFERENCES steps 1-3 and 6, no subject merging,
threads ordered by their most recent message), for THREAD and UID THREAD with several
search criteria.
"""

from __future__ import annotations

import email.utils
import imaplib
import random
import re

ALICE = "alice@example.com"
ALICE_PW = "alice-Preview-1"

# Midnight, 1 Jan 2026 UTC: internal dates are given from here.
EPOCH = 1_767_225_600


def login(server) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(ALICE, ALICE_PW)
    return client


def append(client: imaplib.IMAP4, raw: bytes, when: int) -> None:
    typ, data = client.append("INBOX", None, imaplib.Time2Internaldate(when), raw)
    assert typ == "OK", data


# ---- PREVIEW --------------------------------------------------------------------------

ITEM = re.compile(rb'(PREVIEW|SNIPPET) (\(FUZZY )?(?:"((?:[^"\\]|\\.)*)"|\{(\d+)\}$)')


def previews(data: list) -> dict[int, list[tuple[str, bool]]]:
    """imaplib FETCH data parsed: {sequence number: [(item text, sent as a literal)]},
    the items in order, each named as answered (`PREVIEW`, `PREVIEW (FUZZY)`, ...)."""
    found: dict[int, list[tuple[str, bool]]] = {}
    pieces: list[bytes | tuple[bytes, bytes]] = [d for d in data if d != b")"]
    seq = None
    for piece in pieces:
        head, literal = piece if isinstance(piece, tuple) else (piece, None)
        number = re.match(rb"(\d+) \(", head)
        if number:
            seq = int(number.group(1))
        rest = head
        while True:
            m = ITEM.search(rest)
            if not m:
                break
            name = m.group(1).decode() + (" (FUZZY)" if m.group(2) else "")
            if m.group(4) is not None:
                assert literal is not None and len(literal) == int(m.group(4)), piece
                text, as_literal = literal.decode("utf-8"), True
            else:
                quoted = re.sub(rb"\\(.)", rb"\1", m.group(3))
                text, as_literal = quoted.decode("utf-8"), False
            found.setdefault(seq, []).append((f"{name} {text}", as_literal))
            rest = rest[m.end():]
    return found


def only(found: dict[int, list[tuple[str, bool]]], name: str) -> dict[int, str]:
    """{seq: text} of the items named `name` (each message has one)."""
    out = {}
    for seq, items in found.items():
        texts = [t[len(name) + 1:] for t, _ in items if t.startswith(name + " ")]
        assert len(texts) == 1, (seq, items)
        out[seq] = texts[0]
    return out


# What a reader sees first, for the kinds of message the corpus has (file prefix).
EXPECTED = {
    "001": "Hello Bob, This is a plain text message.",
    "002": " ".join(["Grüße! Ça va? Привет. 你好。"] * 5),
    "003": "Olá, tudo bem? Ação rápida.",
    "005": "See the attached files.",
    "006": "Forwarding this.",
    "007": "plain body",
    "010": "",
    "011": "",
    "013": "Big file attached.",
    "015": "Zażółć gęślą jaźń.",
    "016": "You are invited.",
    "018": "line one line two line three",
    "019": "Signed content, must stay byte-exact.",
}


def test_preview_of_every_corpus_message(make_imap_server, corpus):
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    client = login(server)
    typ, caps = client.capability()
    assert typ == "OK"
    words = caps[0].split()
    # Right after BINARY, as Dovecot lists them; THREAD=REFS after THREAD=REFERENCES.
    at = words.index(b"BINARY")
    assert words[at:at + 4] == [b"BINARY", b"PREVIEW", b"PREVIEW=FUZZY", b"SNIPPET=FUZZY"]
    at = words.index(b"THREAD=REFERENCES")
    assert words[at + 1] == b"THREAD=REFS"
    for i, (_, raw) in enumerate(corpus):
        append(client, raw, EPOCH + 3600 * i)
    typ, data = client.select("INBOX")
    assert typ == "OK" and int(data[0]) == len(corpus)
    seq_of = {name[:3]: i + 1 for i, (name, _) in enumerate(corpus)}

    typ, data = client.fetch("1:*", "(PREVIEW)")
    assert typ == "OK", data
    found = previews(data)
    assert sorted(found) == list(range(1, len(corpus) + 1))
    texts = only(found, "PREVIEW")
    for seq, text in texts.items():
        assert len(text) <= 200, (seq, text)
        assert text == text.strip() and "  " not in text, (seq, text)
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text), (seq, text)
        # RFC 3501 quoted strings are 7-bit: 8-bit text came as a literal.
        assert found[seq][0][1] == (not text.isascii()), (seq, found[seq])
    for prefix, text in EXPECTED.items():
        assert texts[seq_of[prefix]] == text, prefix
    # Long text is cut at 200 characters (RFC 8970 §3.1: at most 256).
    assert len(texts[seq_of["020"]]) == 200

    # LAZY may answer NIL when a preview is costly; Portico always computes it.
    typ, data = client.fetch("1:*", "(PREVIEW (LAZY))")
    assert typ == "OK", data
    assert only(previews(data), "PREVIEW") == texts
    # The drafts' forms, as Dovecot 2.3 answers them, with the same text.
    seq = seq_of["001"]
    typ, data = client.fetch(str(seq), "(PREVIEW (FUZZY) SNIPPET (LAZY=FUZZY) PREVIEW)")
    assert typ == "OK", data
    assert [t for t, _ in previews(data)[seq]] == [
        f"PREVIEW (FUZZY) {EXPECTED['001']}",
        f"SNIPPET (FUZZY) {EXPECTED['001']}",
        f"PREVIEW {EXPECTED['001']}",
    ]
    # Fetching previews set no flag.
    typ, data = client.fetch("1:*", "(FLAGS)")
    assert typ == "OK"
    assert all(b"\\Seen" not in line for line in data), data
    for bad in ["(PREVIEW (EAGER))", "(SNIPPET (LAZY SHORT))", "(PREVIEW ())", "PREVIEW=FUZZY"]:
        try:
            client.fetch("1", bad)
        except imaplib.IMAP4.error as error:
            assert "BAD" in str(error), error
        else:
            raise AssertionError(f"FETCH 1 {bad} was accepted")
    client.logout()

    # With UTF-8 enabled the previews are quoted strings of UTF-8.
    client = login(server)
    typ, data = client.enable("UTF8=ACCEPT")
    assert typ == "OK", data
    client.select("INBOX", readonly=True)
    seqs = [seq_of[p] for p in ("002", "003", "015")]
    typ, data = client.fetch(",".join(map(str, seqs)), "(SNIPPET PREVIEW)")
    assert typ == "OK", data
    found = previews(data)
    for seq in seqs:
        text = texts[seq]
        assert found[seq] == [(f"SNIPPET (FUZZY) {text}", False), (f"PREVIEW {text}", False)]
    client.logout()


# ---- THREAD=REFS, computed here ---------------------------------------------------------


def header_fields(raw: bytes) -> dict[str, str]:
    """The first value of each header field, unfolded, by lower-cased name."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0].decode("utf-8", "replace")
    fields: list[list[str]] = []
    for line in re.split(r"\r?\n", head):
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += " " + line.strip()
        elif ":" in line:
            name, value = line.split(":", 1)
            fields.append([name.strip().lower(), value.strip()])
    first: dict[str, str] = {}
    for name, value in fields:
        first.setdefault(name, value)
    return first


def message_ids(value: str | None) -> list[str]:
    """The `<left@right>` ids in a header value, white space removed."""
    ids = []
    for m in re.finditer(r"<([^<>]*)>", value or ""):
        ident = re.sub(r"\s+", "", m.group(1))
        left, at, right = ident.partition("@")
        if at and left and right:
            ids.append(ident)
    return ids


class Msg:
    def __init__(self, seq: int, uid: int, raw: bytes, arrival: int):
        fields = header_fields(raw)
        self.seq, self.uid = seq, uid
        ids = message_ids(fields.get("message-id"))
        self.id = ids[0] if ids else None
        refs = message_ids(fields.get("references"))
        if not refs:
            refs = message_ids(fields.get("in-reply-to"))[:1]
        self.refs = refs
        parsed = email.utils.parsedate_tz(fields["date"]) if "date" in fields else None
        self.sent = email.utils.mktime_tz(parsed) if parsed else arrival


class Node:
    def __init__(self, msg: Msg | None):
        self.msg = msg
        self.parent: Node | None = None
        self.children: list[Node] = []


def refs_threads(msgs: list[Msg], number) -> str:
    """The THREAD REFS response data (no `THREAD` word) for `msgs`, numbered by
    `number(msg)`."""
    by_id: dict[str, Node] = {}
    nodes: list[Node] = []

    def node(msg: Msg | None) -> Node:
        n = Node(msg)
        nodes.append(n)
        return n

    def for_id(ident: str) -> Node:
        if ident not in by_id:
            by_id[ident] = node(None)
        return by_id[ident]

    def is_ancestor(a: Node, of: Node) -> bool:
        while of is not None:
            if of is a:
                return True
            of = of.parent
        return False

    def link(parent: Node, child: Node) -> None:
        child.parent = parent
        parent.children.append(child)

    # RFC 5256 step 1, messages in mailbox order.
    for msg in sorted(msgs, key=lambda m: m.seq):
        if msg.id is not None and msg.id in by_id and by_id[msg.id].msg is None:
            own = by_id[msg.id]
            own.msg = msg
        elif msg.id is not None and msg.id not in by_id:
            own = by_id[msg.id] = node(msg)
        else:
            own = node(msg)  # no id, or one another message has
        chain = [for_id(r) for r in msg.refs]
        for parent, child in zip(chain, chain[1:]):
            if child.parent is None and not is_ancestor(child, parent):
                link(parent, child)
        if own.parent is not None:
            own.parent.children.remove(own)
            own.parent = None
        if chain and not is_ancestor(own, chain[-1]):
            link(chain[-1], own)

    # Steps 2 and 3: dummies give way to their children, except at the top.
    def kept(n: Node) -> list[Node]:
        out = []
        for c in n.children:
            if c.msg is not None:
                c.children = kept(c)
                out.append(c)
            else:
                out.extend(kept(c))
        return out

    roots = []
    for r in [n for n in nodes if n.parent is None]:
        r.children = kept(r)
        if r.msg is not None or r.children:
            roots.append(r)

    # Step 6: siblings by sent date, then mailbox order.
    def sort(n: Node) -> None:
        n.children.sort(key=lambda c: (c.msg.sent, c.msg.seq))
        for c in n.children:
            sort(c)

    def members(n: Node) -> list[Msg]:
        found = [n.msg] if n.msg else []
        for c in n.children:
            found.extend(members(c))
        return found

    # REFS: threads by their latest message; among equals a dummy's first, then the
    # thread whose first message comes first.
    def key(r: Node):
        everyone = members(r)
        return (
            max(m.sent for m in everyone),
            r.msg.seq if r.msg else 0,
            min(m.seq for m in everyone),
        )

    for r in roots:
        sort(r)
    roots.sort(key=key)

    def write(n: Node) -> str:
        text = str(number(n.msg))
        if len(n.children) == 1:
            text += " " + write(n.children[0])
        elif n.children:
            text += " " + "".join(f"({write(c)})" for c in n.children)
        return text

    out = ""
    for r in roots:
        heads = [r] if r.msg else r.children
        if len(heads) == 1:
            out += f"({write(heads[0])})"
        else:
            out += "(" + "".join(f"({write(h)})" for h in heads) + ")"
    return out


def test_refs_threading_rules_here():
    """The implementation above on the draft's and Dovecot's cases, so a disagreement
    with the server is the server's."""

    def msg(seq, sent, ident, refs=(), irt=None):
        m = Msg.__new__(Msg)
        m.seq, m.uid, m.id, m.sent = seq, seq + 10, ident, sent
        m.refs = list(refs) or ([irt] if irt else [])
        return m

    by_seq = lambda m: m.seq  # noqa: E731
    assert refs_threads([
        msg(1, 10, "a@x"), msg(2, 20, "b@x"), msg(3, 30, "c@x"),
        msg(4, 100, "d@x", ["a@x"]), msg(5, 15, "e@x", irt="a@x"),
    ], by_seq) == "(2)(3)(1 (5)(4))"
    # Lost parents: dummies at the top, a lone child shown as itself but sorted first.
    assert refs_threads([
        msg(1, 50, "1@x"), msg(2, 10, "2@x", ["gone@x"]), msg(3, 50, "3@x", ["2@x"]),
        msg(4, 50, "4@x", ["lost@x"]), msg(5, 40, "5@x"), msg(6, 50, "6@x", ["5@x"]),
        msg(7, 60, "7@x", ["gone2@x"]), msg(8, 55, "8@x", ["gone2@x"]),
    ], lambda m: m.uid) == "(12 13)(14)(11)(15 16)((18)(17))"
    # Loops are not closed; a repeated Message-ID is the first message's.
    assert refs_threads([
        msg(1, 10, "a@x", ["b@x"]), msg(2, 20, "b@x", ["a@x"]),
        msg(3, 5, "a@x"), msg(4, 30, "z@x", ["a@x"]),
    ], by_seq) == "(3)(2 1 4)"


SUBJECTS = ["Plan", "Re: Plan", "Lunch", "Re: Lunch", "Budget", "Fwd: Budget"]


def replies(rng: random.Random, corpus_ids: list[str], count: int) -> list[bytes]:
    """`count` messages answering the corpus and each other in every way a mailbox
    sees, in shuffled order."""
    known = list(corpus_ids)
    chains: dict[str, list[str]] = {i: [] for i in corpus_ids}
    dates = [EPOCH + 86_400 * 20 + 3600 * rng.randrange(12) for _ in range(6)]
    out = []
    for i in range(count):
        ident = f"reply-{i}@portico.test"
        kind = rng.randrange(10)
        parent = rng.choice(known)
        refs = chains.get(parent, []) + [parent]
        headers = [f"From: r{i}@portico.test", f"Subject: {rng.choice(SUBJECTS)}"]
        if kind == 0:
            headers.append(f"In-Reply-To: <{parent}>")  # no References
        elif kind == 1:
            refs = [f"lost-{rng.randrange(5)}@nowhere"] + refs[-1:]  # truncated chain
            headers.append("References: " + " ".join(f"<{r}>" for r in refs))
        elif kind == 2:
            refs = []  # a reply known by its subject alone
        elif kind == 3 and i > 3:
            ident = f"reply-{rng.randrange(i)}@portico.test"  # a duplicate Message-ID
            headers.append("References: " + " ".join(f"<{r}>" for r in refs))
        elif kind == 4:
            refs = [f"reply-{i + 1 + rng.randrange(3)}@portico.test"]  # one still to come
            headers.append(f"References: <{refs[0]}>")
        else:
            headers.append("References: " + " ".join(f"<{r}>" for r in refs))
        headers.append(f"Message-ID: <{ident}>")
        if rng.randrange(4):
            headers.append("Date: " + email.utils.formatdate(rng.choice(dates)))
        chains[ident] = refs
        known.append(ident)
        out.append(("\r\n".join(headers) + f"\r\n\r\nReply {i}.\r\n").encode())
    rng.shuffle(out)
    return out


def test_thread_refs_matches_an_independent_computation(make_imap_server, corpus):
    server = make_imap_server(login="plaintext")
    server.add_user(ALICE, ALICE_PW)
    client = login(server)
    # Two messages stored and expunged first, so UIDs are not sequence numbers.
    for _ in range(2):
        append(client, b"Subject: gone\r\n\r\nx\r\n", EPOCH)
    client.select("INBOX")
    client.store("1:2", "+FLAGS", "(\\Deleted)")
    client.expunge()

    rng = random.Random(8970)
    corpus_ids = [
        i for _, raw in corpus for i in message_ids(header_fields(raw).get("message-id"))[:1]
    ]
    stored = [raw for _, raw in corpus] + replies(rng, corpus_ids, 80)
    msgs = []
    for seq, raw in enumerate(stored, start=1):
        arrival = EPOCH + 7200 * seq
        append(client, raw, arrival)
        msgs.append(Msg(seq, seq + 2, raw, arrival))
    client.select("INBOX")
    flagged = sorted(rng.sample(range(1, len(stored) + 1), 60))
    typ, _ = client.store(",".join(map(str, flagged)), "+FLAGS", "(\\Flagged)")
    assert typ == "OK"

    def thread(uid: bool, criteria: str) -> str:
        if uid:
            typ, data = client.uid("THREAD", "REFS", "UTF-8", criteria)
        else:
            typ, data = client.thread("REFS", "UTF-8", criteria)
        assert typ == "OK", data
        return (data[0] or b"").decode()

    seq, uid = (lambda m: m.seq), (lambda m: m.uid)
    everything = thread(False, "ALL")
    # The replies made threads under lost parents and messages with several replies.
    assert "((" in everything and ")(" in everything.split(" (", 1)[1], everything
    assert everything == refs_threads(msgs, seq)
    assert thread(True, "ALL") == refs_threads(msgs, uid)
    assert thread(False, "FLAGGED") == refs_threads([m for m in msgs if m.seq in flagged], seq)
    assert thread(True, "UID 40:150") == refs_threads(
        [m for m in msgs if 40 <= m.uid <= 150], uid
    )
    assert thread(True, "NOT FLAGGED") == refs_threads(
        [m for m in msgs if m.seq not in flagged], uid
    )
    # REFERENCES gathers by subject as well; REFS never does.
    typ, data = client.thread("REFERENCES", "UTF-8", "ALL")
    assert typ == "OK" and data[0].decode() != thread(False, "ALL")
    client.logout()
