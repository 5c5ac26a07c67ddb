#!/usr/bin/env python3
"""Independent expected ENVELOPE / BODYSTRUCTURE for the bulk corpus (020-119).

Python 3.11, standard library only.  It does not look at the Rust code or its
output: for each corpus file 020-119 it works from the raw bytes, with the
`email` package used only to parse header fields and addresses, and writes

    NNN ENVELOPE <value>
    NNN BODYSTRUCTURE <value>

to bulk_expected.txt next to this script (the values are what an IMAP4rev2
server sends to a client that has not enabled UTF8=ACCEPT, BODYSTRUCTURE in
its extensible form).  With --check it compares the file with its own
computation instead and exits 1 on any difference.

    python3 crates/mime/tests/check_bulk_expected.py           # write
    python3 crates/mime/tests/check_bulk_expected.py --check   # verify

What it follows (RFC 9051 §7.5.2 and the §9 grammar):

  envelope  = "(" env-date SP env-subject SP env-from SP env-sender SP
              env-reply-to SP env-to SP env-cc SP env-bcc SP
              env-in-reply-to SP env-message-id ")"
  address   = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"
  body-type-text = media-text SP body-fields SP body-fld-lines
  body-fields    = body-fld-param SP body-fld-id SP body-fld-desc SP
                   body-fld-enc SP body-fld-octets
  body-ext-1part = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang
                   [SP body-fld-loc *(SP body-extension)]]]

and these conventions (the ones crates/mime/tests/expected.rs pins for
001-019):

  * header values raw: RFC 2047 encoded words are not decoded; a folded field
    is unfolded (RFC 5322 §2.2.3: CRLF before WSP removed) and trimmed;
  * an absent field is NIL; Sender and Reply-To, when absent or empty, repeat
    From (RFC 9051 §7.5.2);
  * an address is (name NIL mailbox host), the display name unquoted, NIL
    when there is none;
  * a string is quoted ("\\" and "\"" escaped) when it is 7-bit, has no CR,
    LF or NUL and is at most 1000 octets; otherwise a literal {n}CRLF...;
  * type, subtype, parameter names, disposition type and encoding are
    upper-cased, parameter values kept as written; a TEXT part without a
    charset gets ("CHARSET" "us-ascii") (RFC 2046 §4.1.2); no
    Content-Transfer-Encoding means "7BIT" (RFC 2045 §6.1); no Content-Type
    means text/plain; charset=us-ascii (RFC 2045 §5.2);
  * body-fld-octets: octets after the blank line that ends the header, to
    the end of the message; body-fld-lines: the CRLFs in that range;
  * extension data: MD5, disposition, language, location, each NIL when the
    corresponding header (Content-MD5, Content-Disposition,
    Content-Language, Content-Location) is absent.

The bulk messages are single-part; the script refuses anything else
(multipart or message/*) rather than guess.
"""

from __future__ import annotations

import email.utils
import re
import sys
from email import policy
from email.message import Message
from email.parser import BytesParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent.parent.parent / "tests" / "corpus"
OUTPUT = HERE / "bulk_expected.txt"
FIRST, LAST = 20, 119
MAX_QUOTED = 1000


# ---------------------------------------------------------------- IMAP syntax

def imap_string(value: bytes) -> bytes:
    """RFC 9051 §9 string: quoted if it can be, else a literal (utf8=false)."""
    quotable = (
        len(value) <= MAX_QUOTED
        and all(b < 0x80 for b in value)
        and not any(b in (0x0D, 0x0A, 0x00) for b in value)
    )
    if quotable:
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    value = value.replace(b"\x00", b"")
    return b"{%d}\r\n" % len(value) + value


def nstring(value: bytes | None) -> bytes:
    return b"NIL" if value is None else imap_string(value)


def upper(value: bytes) -> bytes:
    return imap_string(value.upper())


def params_list(params: list[tuple[bytes, bytes]]) -> bytes:
    """body-fld-param: ("NAME" "value" ...) or NIL."""
    if not params:
        return b"NIL"
    return b"(" + b" ".join(upper(n) + b" " + imap_string(v) for n, v in params) + b")"


# ------------------------------------------------------------- raw message

def to_crlf(raw: bytes) -> bytes:
    """Bare LF to CRLF, as the store does before keeping a message."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)


def split_header_body(raw: bytes) -> tuple[bytes, bytes]:
    """Header up to and including the blank line; body after it (RFC 5322 §2.1)."""
    if raw.startswith(b"\r\n"):
        return b"\r\n", raw[2:]
    i = raw.find(b"\r\n\r\n")
    if i < 0:
        return raw, b""
    return raw[: i + 4], raw[i + 4 :]


def as_bytes(s: str) -> bytes:
    # BytesParser decodes as ASCII with surrogateescape; this restores the
    # original octets, 8-bit ones included.
    return s.encode("utf-8", "surrogateescape")


def field(msg: Message, name: str) -> bytes | None:
    """First occurrence of a header field, unfolded and trimmed, or None."""
    # raw_items(): the stored values, not compat32's Header objects (which
    # it makes for 8-bit text).
    value = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    if value is None:
        return None
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", value)
    return as_bytes(unfolded.strip(" \t\r\n"))


# ---------------------------------------------------------------- envelope

def addresses(msg: Message, name: str) -> list[tuple[bytes | None, bytes | None, bytes | None]]:
    value = field(msg, name)
    if value is None or value == b"":
        return []
    text = value.decode("utf-8", "surrogateescape")
    if ":" in text and ";" in text:
        raise ValueError(f"{name}: group syntax not handled by this script: {text!r}")
    out = []
    for display, addr in email.utils.getaddresses([text]):
        if not addr:
            raise ValueError(f"{name}: could not parse {text!r}")
        mailbox, at, host = addr.rpartition("@")
        if not at:
            mailbox, host = addr, None
        out.append(
            (
                as_bytes(display) if display else None,
                as_bytes(mailbox) if mailbox else None,
                as_bytes(host) if host else None,
            )
        )
    return out


def address_list(addrs) -> bytes:
    if not addrs:
        return b"NIL"
    return (
        b"("
        + b"".join(
            b"(" + nstring(n) + b" NIL " + nstring(m) + b" " + nstring(h) + b")"
            for n, m, h in addrs
        )
        + b")"
    )


def envelope(msg: Message) -> bytes:
    frm = addresses(msg, "From")
    sender = addresses(msg, "Sender") or frm
    reply_to = addresses(msg, "Reply-To") or frm
    items = [
        nstring(field(msg, "Date")),
        nstring(field(msg, "Subject")),
        address_list(frm),
        address_list(sender),
        address_list(reply_to),
        address_list(addresses(msg, "To")),
        address_list(addresses(msg, "Cc")),
        address_list(addresses(msg, "Bcc")),
        nstring(field(msg, "In-Reply-To")),
        nstring(field(msg, "Message-ID")),
    ]
    return b"(" + b" ".join(items) + b")"


# ----------------------------------------------------------- bodystructure

def header_params(msg: Message, name: str) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """(value, [(param, value)]) of a structured MIME field, or None."""
    if msg.get(name) is None:
        return None
    parsed = msg.get_params(header=name, unquote=True)
    if not parsed:
        raise ValueError(f"{name}: unparseable")
    (value, _), *rest = parsed
    return as_bytes(value.strip()), [(as_bytes(k), as_bytes(v)) for k, v in rest]


def bodystructure(msg: Message, body: bytes) -> bytes:
    ctype = header_params(msg, "Content-Type")
    if ctype is None:
        mtype, subtype, params = b"text", b"plain", [(b"charset", b"us-ascii")]
    else:
        full, params = ctype
        mtype, slash, subtype = full.partition(b"/")
        if not slash or not mtype or not subtype:
            raise ValueError(f"Content-Type {full!r}: not type/subtype")
    if mtype.lower() in (b"multipart", b"message"):
        raise ValueError(f"{mtype!r}: only single parts are handled here")
    if mtype.lower() == b"text" and not any(n.lower() == b"charset" for n, _ in params):
        params = params + [(b"charset", b"us-ascii")]

    enc = field(msg, "Content-Transfer-Encoding") or b"7bit"
    items = [
        upper(mtype),
        upper(subtype),
        params_list(params),
        nstring(field(msg, "Content-ID")),
        nstring(field(msg, "Content-Description")),
        upper(enc),
        b"%d" % len(body),
    ]
    if mtype.lower() == b"text":
        items.append(b"%d" % body.count(b"\r\n"))

    # body-ext-1part
    items.append(nstring(field(msg, "Content-MD5")))
    disp = header_params(msg, "Content-Disposition")
    if disp is None:
        items.append(b"NIL")
    else:
        kind, dparams = disp
        items.append(b"(" + upper(kind) + b" " + params_list(dparams) + b")")
    lang = field(msg, "Content-Language")
    if lang is None:
        items.append(b"NIL")
    else:
        tags = [t.strip() for t in lang.split(b",") if t.strip()]
        items.append(b"(" + b" ".join(imap_string(t) for t in tags) + b")" if tags else b"NIL")
    items.append(nstring(field(msg, "Content-Location")))
    return b"(" + b" ".join(items) + b")"


# --------------------------------------------------------------------- main

def corpus_file(n: int) -> Path:
    matches = sorted(CORPUS.glob(f"{n:03d}*.eml"))
    if len(matches) != 1:
        raise FileNotFoundError(f"{n:03d}: {len(matches)} corpus files match")
    return matches[0]


def compute(n: int) -> tuple[bytes, bytes]:
    raw = to_crlf(corpus_file(n).read_bytes())
    header, body = split_header_body(raw)
    msg = BytesParser(policy=policy.compat32).parsebytes(header, headersonly=True)
    if msg.defects:
        raise ValueError(f"{n:03d}: header defects {msg.defects}")
    # The email package's own idea of the body must agree with the split.
    full = BytesParser(policy=policy.compat32).parsebytes(raw)
    if not full.is_multipart():
        payload = full.get_payload(decode=False)
        if body.isascii():
            same = as_bytes(payload) == body
        else:
            # compat32 hands back 8-bit payloads decoded with their charset.
            charset = full.get_content_charset("ascii")
            same = payload.encode(charset, "surrogateescape") == body
        if not same:
            raise ValueError(f"{n:03d}: email package body differs from raw split")
    return envelope(msg), bodystructure(msg, body)


def render() -> bytes:
    lines = []
    for n in range(FIRST, LAST + 1):
        env, bs = compute(n)
        for kind, value in (("ENVELOPE", env), ("BODYSTRUCTURE", bs)):
            if b"\r" in value or b"\n" in value:
                raise ValueError(f"{n:03d} {kind}: holds a literal; the line format cannot")
            lines.append(b"%03d %s %s\n" % (n, kind.encode(), value))
    return b"".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if argv[1:] == ["--check"]:
        current = OUTPUT.read_bytes() if OUTPUT.exists() else b""
        if current == text:
            print(f"{OUTPUT.name}: matches ({len(text.splitlines())} lines)")
            return 0
        have = current.splitlines()
        want = text.splitlines()
        for i in range(max(len(have), len(want))):
            a = have[i] if i < len(have) else b"<missing>"
            b = want[i] if i < len(want) else b"<missing>"
            if a != b:
                print(f"line {i + 1}:\n  file:     {a.decode(errors='replace')}\n"
                      f"  computed: {b.decode(errors='replace')}")
        return 1
    if argv[1:]:
        print(__doc__)
        return 2
    OUTPUT.write_bytes(text)
    print(f"wrote {OUTPUT} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
