//! Corpus messages 001–019 with their ENVELOPE and BODYSTRUCTURE written out
//! by hand from each file's content and RFC 9051 §7.5.2 / §9.
//!
//! How the numbers were checked: a body part's size is the octets from the
//! byte after its header's blank line to the byte before the CRLF that
//! precedes the next boundary (RFC 2046 §5.1.1 gives that CRLF to the
//! boundary); its line count is the number of line endings in that range.
//! Offsets quoted in comments are into the CRLF file.

mod common;

use common::{check_syntax, load, parse};
use portico_mime::summarize;

/// Asserts ENVELOPE and BODYSTRUCTURE (7-bit client) and BODY.
fn expect(prefix: &str, envelope: &str, bodystructure: &str, body: &str) {
    let raw = load(prefix);
    let s = summarize(&raw);
    assert_eq!(
        String::from_utf8_lossy(&s.envelope(false)),
        envelope,
        "{prefix} ENVELOPE"
    );
    assert_eq!(
        String::from_utf8_lossy(&s.bodystructure(true, false)),
        bodystructure,
        "{prefix} BODYSTRUCTURE"
    );
    assert_eq!(
        String::from_utf8_lossy(&s.bodystructure(false, false)),
        body,
        "{prefix} BODY"
    );
    check_syntax(&s).unwrap_or_else(|e| panic!("{prefix}: {e}"));
}

#[test]
fn m001_plain_ascii() {
    // Body: raw[263..322], 59 octets, 6 CRLFs. Sender and Reply-To absent,
    // so both repeat From.
    expect(
        "001",
        concat!(
            r#"("Thu, 01 Jan 2026 09:37:00 -0500" "Plain ASCII message" "#,
            r#"(("Alice Example" NIL "alice" "example.com")) "#,
            r#"(("Alice Example" NIL "alice" "example.com")) "#,
            r#"(("Alice Example" NIL "alice" "example.com")) "#,
            r#"((NIL NIL "bob" "example.com")) NIL NIL NIL "<plain-1@example.com>")"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 59 6 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 59 6)"#,
    );
}

#[test]
fn m002_utf8_qp() {
    // Encoded words stay encoded in the envelope. Body raw[367..862]: 495
    // octets of quoted-printable, 10 lines.
    expect(
        "002",
        concat!(
            r#"("Thu, 01 Jan 2026 11:14:00 +0200" "=?utf-8?b?R3LDvMOfZSBhdXMgS8O2bG4g4oCUIOadseS6rCDwn5Os?=" "#,
            r#"(("=?utf-8?b?Wm/DqyDDnG7Dr2PDtmTDqQ==?=" NIL "zoe" "example.org")) "#,
            r#"(("=?utf-8?b?Wm/DqyDDnG7Dr2PDtmTDqQ==?=" NIL "zoe" "example.org")) "#,
            r#"(("=?utf-8?b?Wm/DqyDDnG7Dr2PDtmTDqQ==?=" NIL "zoe" "example.org")) "#,
            r#"(("=?utf-8?q?Bj=C3=B8rn_=C3=85s?=" NIL "bjorn" "example.com")) "#,
            r#"NIL NIL NIL "<utf8-2@example.org>")"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 495 10 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 495 10)"#,
    );
}

#[test]
fn m003_latin1_8bit() {
    // charset value keeps its case as written; body raw[301..330], 29 octets.
    expect(
        "003",
        concat!(
            r#"("Thu, 01 Jan 2026 12:51:00 -0800" "=?ISO-8859-1?B?UmV1bmnjbyBhbWFuaOM=?=" "#,
            r#"(("=?ISO-8859-1?Q?Jos=E9_Mar=EDa?=" NIL "jose" "example.es")) "#,
            r#"(("=?ISO-8859-1?Q?Jos=E9_Mar=EDa?=" NIL "jose" "example.es")) "#,
            r#"(("=?ISO-8859-1?Q?Jos=E9_Mar=EDa?=" NIL "jose" "example.es")) "#,
            r#"((NIL NIL "team" "example.com")) NIL NIL NIL "<latin1-3@example.es>")"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "ISO-8859-1") NIL NIL "8BIT" 29 1 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "ISO-8859-1") NIL NIL "8BIT" 29 1)"#,
    );
}

#[test]
fn m004_multipart_alternative() {
    // Part 1 body raw[407..1213] (806 octets, 11 lines), part 2 raw[1353..2129]
    // (776, 10). The multipart's boundary is its one parameter.
    expect(
        "004",
        concat!(
            r#"("Thu, 01 Jan 2026 14:28:00 +0000" "Newsletter: alternative parts" "#,
            r#"((NIL NIL "news" "example.net")) ((NIL NIL "news" "example.net")) "#,
            r#"((NIL NIL "news" "example.net")) ((NIL NIL "alice" "example.com")) "#,
            r#"NIL NIL NIL "<alt-4@example.net>")"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "BASE64" 806 11 NIL NIL NIL NIL)"#,
            r#"("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "BASE64" 776 10 NIL NIL NIL NIL) "#,
            r#""ALTERNATIVE" ("BOUNDARY" "===============2687298184682988347==") NIL NIL NIL)"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "BASE64" 806 11)"#,
            r#"("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "BASE64" 776 10) "ALTERNATIVE")"#
        ),
    );
}

#[test]
fn m005_multipart_mixed_attachments() {
    // Parts: text raw[465..490] (25, 1 line); pdf raw[678..28048] (27370);
    // png raw[28255..35111] (6856) with a Content-ID; zip raw[35344..39450]
    // (4106) whose RFC 2231 file name stays encoded, as FILENAME*.
    expect(
        "005",
        concat!(
            r#"("Thu, 01 Jan 2026 16:05:00 +0100" "Report with attachments" "#,
            r#"(("Carol" NIL "carol" "example.com")) (("Carol" NIL "carol" "example.com")) "#,
            r#"(("Carol" NIL "carol" "example.com")) "#,
            r#"(("Alice" NIL "alice" "example.com")("Bob" NIL "bob" "example.com")) "#,
            r#"(("Dave" NIL "dave" "example.com")) NIL NIL "<mixed-5@example.com>")"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 25 1 NIL NIL NIL NIL)"#,
            r#"("APPLICATION" "PDF" NIL NIL NIL "BASE64" 27370 NIL "#,
            r#"("ATTACHMENT" ("FILENAME" "report Q3.pdf")) NIL NIL)"#,
            r#"("IMAGE" "PNG" NIL "<chart@example.com>" NIL "BASE64" 6856 NIL "#,
            r#"("INLINE" ("FILENAME" "chart.png")) NIL NIL)"#,
            r#"("APPLICATION" "ZIP" NIL NIL NIL "BASE64" 4106 NIL "#,
            r#"("ATTACHMENT" ("FILENAME*" "utf-8''r%C3%A9sum%C3%A9%20%E5%B1%A5%E6%AD%B4%E6%9B%B8.zip")) NIL NIL) "#,
            r#""MIXED" ("BOUNDARY" "===============6569807239314844069==") NIL NIL NIL)"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 25 1)"#,
            r#"("APPLICATION" "PDF" NIL NIL NIL "BASE64" 27370)"#,
            r#"("IMAGE" "PNG" NIL "<chart@example.com>" NIL "BASE64" 6856)"#,
            r#"("APPLICATION" "ZIP" NIL NIL NIL "BASE64" 4106) "MIXED")"#
        ),
    );
}

#[test]
fn m006_forwarded_rfc822() {
    // Part 2 is message/rfc822: body raw[504..769] (265 octets, 10 lines),
    // followed by the encapsulated message's envelope and structure; its
    // text body is raw[748..769] (21, 1).
    expect(
        "006",
        concat!(
            r#"("Thu, 01 Jan 2026 19:19:00 +0200" "Fwd: Original message" "#,
            r#"((NIL NIL "carol" "example.com")) ((NIL NIL "carol" "example.com")) "#,
            r#"((NIL NIL "carol" "example.com")) ((NIL NIL "alice" "example.com")) "#,
            r#"NIL NIL NIL "<fwd-6@example.com>")"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 18 1 NIL NIL NIL NIL)"#,
            r#"("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 265 "#,
            r#"("Thu, 01 Jan 2026 17:42:00 +0200" "Original message" "#,
            r#"((NIL NIL "eve" "example.org")) ((NIL NIL "eve" "example.org")) "#,
            r#"((NIL NIL "eve" "example.org")) ((NIL NIL "carol" "example.com")) "#,
            r#"NIL NIL NIL "<inner-6@example.org>") "#,
            r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 21 1 NIL NIL NIL NIL) 10 "#,
            r#"NIL NIL NIL NIL) "#,
            r#""MIXED" ("BOUNDARY" "===============6732599363784679701==") NIL NIL NIL)"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 18 1)"#,
            r#"("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 265 "#,
            r#"("Thu, 01 Jan 2026 17:42:00 +0200" "Original message" "#,
            r#"((NIL NIL "eve" "example.org")) ((NIL NIL "eve" "example.org")) "#,
            r#"((NIL NIL "eve" "example.org")) ((NIL NIL "carol" "example.com")) "#,
            r#"NIL NIL NIL "<inner-6@example.org>") "#,
            r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 21 1) 10) "MIXED")"#
        ),
    );
}

#[test]
fn m007_nested_multipart() {
    // mixed( related( alternative(plain, html), gif ), csv ).
    // plain raw[694..706] (12, 1); html raw[847..882] (35 octets, and 0
    // lines: its only line ends at the CRLF that belongs to the boundary);
    // gif raw[1069..1353] (284); csv raw[1591..1605] (14, 2).
    expect(
        "007",
        concat!(
            r#"("Thu, 01 Jan 2026 20:56:00 +0000" "Nested multipart structure" "#,
            r#"((NIL NIL "deep" "example.com")) ((NIL NIL "deep" "example.com")) "#,
            r#"((NIL NIL "deep" "example.com")) ((NIL NIL "alice" "example.com")) "#,
            r#"NIL NIL NIL "<nested-7@example.com>")"#
        ),
        concat!(
            r#"(((("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 12 1 NIL NIL NIL NIL)"#,
            r#"("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 35 0 NIL NIL NIL NIL) "#,
            r#""ALTERNATIVE" ("BOUNDARY" "===============1817061782508509083==") NIL NIL NIL)"#,
            r#"("IMAGE" "GIF" NIL "<logo>" NIL "BASE64" 284 NIL NIL NIL NIL) "#,
            r#""RELATED" ("BOUNDARY" "===============3319135736123065664==") NIL NIL NIL)"#,
            r#"("TEXT" "CSV" ("CHARSET" "us-ascii") NIL NIL "7BIT" 14 2 NIL "#,
            r#"("ATTACHMENT" ("FILENAME" "data.csv")) NIL NIL) "#,
            r#""MIXED" ("BOUNDARY" "===============8548300567321531363==") NIL NIL NIL)"#
        ),
        concat!(
            r#"(((("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 12 1)"#,
            r#"("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 35 0) "ALTERNATIVE")"#,
            r#"("IMAGE" "GIF" NIL "<logo>" NIL "BASE64" 284) "RELATED")"#,
            r#"("TEXT" "CSV" ("CHARSET" "us-ascii") NIL NIL "7BIT" 14 2) "MIXED")"#
        ),
    );
}

#[test]
fn m008_long_folded_headers() {
    // Folded Subject and To are unfolded (RFC 5322 §2.2.3) so they stay
    // quoted strings; In-Reply-To is present. Body raw[3094..5191] (2097, 27).
    expect(
        "008",
        concat!(
            r#"("Thu, 01 Jan 2026 22:33:00 -0800" "#,
            r#""Re: sed elit aliqua consectetur et tempor dolor sit forecast consectetur site "#,
            r#"labore lorem dolor magna meeting sed eiusmod sit aliqua dublin adipiscing elit "#,
            r#"adipiscing labore sit budget amet aliqua eiusmod" "#,
            r#"((NIL NIL "list" "example.com")) ((NIL NIL "list" "example.com")) "#,
            r#"((NIL NIL "list" "example.com")) ("#,
            "(\"User 0\" NIL \"user0\" \"example.com\")(\"User 1\" NIL \"user1\" \"example.com\")(\"User 2\" NIL \"user2\" \"example.com\")(\"User 3\" NIL \"user3\" \"example.com\")",
            "(\"User 4\" NIL \"user4\" \"example.com\")(\"User 5\" NIL \"user5\" \"example.com\")(\"User 6\" NIL \"user6\" \"example.com\")(\"User 7\" NIL \"user7\" \"example.com\")",
            "(\"User 8\" NIL \"user8\" \"example.com\")(\"User 9\" NIL \"user9\" \"example.com\")(\"User 10\" NIL \"user10\" \"example.com\")(\"User 11\" NIL \"user11\" \"example.com\")",
            "(\"User 12\" NIL \"user12\" \"example.com\")(\"User 13\" NIL \"user13\" \"example.com\")(\"User 14\" NIL \"user14\" \"example.com\")(\"User 15\" NIL \"user15\" \"example.com\")",
            "(\"User 16\" NIL \"user16\" \"example.com\")(\"User 17\" NIL \"user17\" \"example.com\")(\"User 18\" NIL \"user18\" \"example.com\")(\"User 19\" NIL \"user19\" \"example.com\")",
            "(\"User 20\" NIL \"user20\" \"example.com\")(\"User 21\" NIL \"user21\" \"example.com\")(\"User 22\" NIL \"user22\" \"example.com\")(\"User 23\" NIL \"user23\" \"example.com\")",
            "(\"User 24\" NIL \"user24\" \"example.com\")(\"User 25\" NIL \"user25\" \"example.com\")(\"User 26\" NIL \"user26\" \"example.com\")(\"User 27\" NIL \"user27\" \"example.com\")",
            "(\"User 28\" NIL \"user28\" \"example.com\")(\"User 29\" NIL \"user29\" \"example.com\")(\"User 30\" NIL \"user30\" \"example.com\")(\"User 31\" NIL \"user31\" \"example.com\")",
            "(\"User 32\" NIL \"user32\" \"example.com\")(\"User 33\" NIL \"user33\" \"example.com\")(\"User 34\" NIL \"user34\" \"example.com\")(\"User 35\" NIL \"user35\" \"example.com\")",
            "(\"User 36\" NIL \"user36\" \"example.com\")(\"User 37\" NIL \"user37\" \"example.com\")(\"User 38\" NIL \"user38\" \"example.com\")(\"User 39\" NIL \"user39\" \"example.com\")",
            r#") NIL NIL "<prev-7@example.com>" "<long-8@example.com>")"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 2097 27 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 2097 27)"#,
    );
}

#[test]
fn m009_group_no_date() {
    // No Date: NIL. `undisclosed-recipients:;` is a group start and end. No
    // Content-Type: text/plain; charset=us-ascii (RFC 2045 §5.2).
    expect(
        "009",
        concat!(
            r#"(NIL "Group syntax and no date" "#,
            r#"((NIL NIL "undisclosed" "example.com")) ((NIL NIL "undisclosed" "example.com")) "#,
            r#"((NIL NIL "undisclosed" "example.com")) "#,
            r#"((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) "#,
            r#"NIL NIL NIL "<group-9@example.com>")"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 22 1 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 22 1)"#,
    );
}

#[test]
fn m010_empty_body_no_subject() {
    // No Subject, no Message-ID; the blank line is the last thing: 0 octets.
    expect(
        "010",
        concat!(
            r#"("Fri, 02 Jan 2026 00:10:00 -0800" NIL "#,
            r#"((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) "#,
            r#"((NIL NIL "a" "example.com")) ((NIL NIL "b" "example.com")) NIL NIL NIL NIL)"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0)"#,
    );
}

#[test]
fn m011_headers_only() {
    // No blank line at all: the whole message is header, the body empty.
    expect(
        "011",
        concat!(
            r#"("Fri, 02 Jan 2026 01:47:00 -0500" "headers only" "#,
            r#"((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) "#,
            r#"((NIL NIL "a" "example.com")) ((NIL NIL "b" "example.com")) NIL NIL NIL NIL)"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0)"#,
    );
}

#[test]
fn m012_base64_text() {
    // Body raw[240..4880]: 4640 octets of base64 in 60 lines.
    expect(
        "012",
        concat!(
            r#"("Fri, 02 Jan 2026 03:24:00 +0000" "Base64 text" "#,
            r#"((NIL NIL "b64" "example.com")) ((NIL NIL "b64" "example.com")) "#,
            r#"((NIL NIL "b64" "example.com")) ((NIL NIL "alice" "example.com")) "#,
            r#"NIL NIL NIL "<b64-12@example.com>")"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "BASE64" 4640 60 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "BASE64" 4640 60)"#,
    );
}

#[test]
fn m013_large_attachment() {
    // text raw[389..409] (20, 1); octet-stream raw[600..2053232] (2052632).
    expect(
        "013",
        concat!(
            r#"("Fri, 02 Jan 2026 05:01:00 +0900" "Large attachment" "#,
            r#"((NIL NIL "big" "example.com")) ((NIL NIL "big" "example.com")) "#,
            r#"((NIL NIL "big" "example.com")) ((NIL NIL "alice" "example.com")) "#,
            r#"NIL NIL NIL "<large-13@example.com>")"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 20 1 NIL NIL NIL NIL)"#,
            r#"("APPLICATION" "OCTET-STREAM" NIL NIL NIL "BASE64" 2052632 NIL "#,
            r#"("ATTACHMENT" ("FILENAME" "big.bin")) NIL NIL) "#,
            r#""MIXED" ("BOUNDARY" "===============5774620840685595633==") NIL NIL NIL)"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 20 1)"#,
            r#"("APPLICATION" "OCTET-STREAM" NIL NIL NIL "BASE64" 2052632) "MIXED")"#
        ),
    );
}

#[test]
fn m014_malformed_unclosed_boundary() {
    // Lower-case `from:`/`subject:` and upper-case `TO:` still count. The
    // first part declares base64 over junk: shown as declared, BASE64. The
    // second part runs to the end of the message (no close delimiter):
    // raw[313..328] "<p>unterminated", no line ending, 0 lines. Both parts
    // lack a charset, so the RFC 2046 §4.1.2 default is stated.
    expect(
        "014",
        concat!(
            r#"("Fri, 02 Jan 2026 06:38:00 +0000" "Malformed MIME" "#,
            r#"((NIL NIL "broken" "example.com")) ((NIL NIL "broken" "example.com")) "#,
            r#"((NIL NIL "broken" "example.com")) ((NIL NIL "alice" "example.com")) "#,
            r#"NIL NIL NIL NIL)"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "BASE64" 16 0 NIL NIL NIL NIL)"#,
            r#"("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 15 0 NIL NIL NIL NIL) "#,
            r#""MIXED" ("BOUNDARY" "XYZ") NIL NIL NIL)"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "BASE64" 16 0)"#,
            r#"("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 15 0) "MIXED")"#
        ),
    );
}

#[test]
fn m015_raw_utf8_headers() {
    // 8-bit header text: literals for a client without UTF8=ACCEPT, quoted
    // strings for one with it. Body raw[279..308] (29, 1).
    let raw = load("015");
    let s = summarize(&raw);
    let literal = concat!(
        "(\"Fri, 02 Jan 2026 08:15:00 -0800\" {33}\r\nRaw UTF-8 header — naïve café ",
        "(({7}\r\nŁukasz NIL {7}\r\nłukasz {12}\r\nprzykład.pl)) ",
        "(({7}\r\nŁukasz NIL {7}\r\nłukasz {12}\r\nprzykład.pl)) ",
        "(({7}\r\nŁukasz NIL {7}\r\nłukasz {12}\r\nprzykład.pl)) ",
        "((NIL NIL {6}\r\n用户 {13}\r\n例子.中国)) NIL NIL NIL \"<utf8raw-15@example.pl>\")"
    );
    assert_eq!(String::from_utf8_lossy(&s.envelope(false)), literal);
    let quoted = concat!(
        "(\"Fri, 02 Jan 2026 08:15:00 -0800\" \"Raw UTF-8 header — naïve café\" ",
        "((\"Łukasz\" NIL \"łukasz\" \"przykład.pl\")) ",
        "((\"Łukasz\" NIL \"łukasz\" \"przykład.pl\")) ",
        "((\"Łukasz\" NIL \"łukasz\" \"przykład.pl\")) ",
        "((NIL NIL \"用户\" \"例子.中国\")) NIL NIL NIL \"<utf8raw-15@example.pl>\")"
    );
    assert_eq!(String::from_utf8_lossy(&s.envelope(true)), quoted);
    let bs = r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT" 29 1 NIL NIL NIL NIL)"#;
    assert_eq!(String::from_utf8_lossy(&s.bodystructure(true, false)), bs);
    assert_eq!(String::from_utf8_lossy(&s.bodystructure(true, true)), bs);
    check_syntax(&s).unwrap_or_else(|e| panic!("015: {e}"));
    // The literal lengths are octets, not characters.
    assert!(parse(&s.envelope(false), false).is_ok());
}

#[test]
fn m016_calendar_invite() {
    // text/calendar keeps its method parameter; raw[593..902] (309, 13).
    expect(
        "016",
        concat!(
            r#"("Fri, 02 Jan 2026 09:52:00 -0800" "Invitation: Quarterly review" "#,
            r#"((NIL NIL "carol" "example.com")) ((NIL NIL "carol" "example.com")) "#,
            r#"((NIL NIL "carol" "example.com")) ((NIL NIL "alice" "example.com")) "#,
            r#"NIL NIL NIL "<invite-16@example.com>")"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 18 1 NIL NIL NIL NIL)"#,
            r#"("TEXT" "CALENDAR" ("CHARSET" "us-ascii" "METHOD" "REQUEST") NIL NIL "7BIT" 309 13 "#,
            r#"NIL NIL NIL NIL) "#,
            r#""ALTERNATIVE" ("BOUNDARY" "===============8251809519376580512==") NIL NIL NIL)"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 18 1)"#,
            r#"("TEXT" "CALENDAR" ("CHARSET" "us-ascii" "METHOD" "REQUEST") NIL NIL "7BIT" 309 13) "#,
            r#""ALTERNATIVE")"#
        ),
    );
}

#[test]
fn m017_dot_stuffing() {
    // Stored unstuffed: raw[111..185] (74 octets, 6 lines), dots and all.
    expect(
        "017",
        concat!(
            r#"("Fri, 02 Jan 2026 11:29:00 +0000" "Dot stuffing" "#,
            r#"((NIL NIL "dots" "example.com")) ((NIL NIL "dots" "example.com")) "#,
            r#"((NIL NIL "dots" "example.com")) ((NIL NIL "alice" "example.com")) NIL NIL NIL NIL)"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 74 6 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 74 6)"#,
    );
}

#[test]
fn m018_bare_lf_body() {
    // After the store's LF→CRLF conversion the body is
    // "line one\r\nline two\r\nline three\r\n": 32 octets, 3 lines.
    expect(
        "018",
        concat!(
            r#"("Fri, 02 Jan 2026 13:06:00 +0200" "Bare LF inside" "#,
            r#"((NIL NIL "lf" "example.com")) ((NIL NIL "lf" "example.com")) "#,
            r#"((NIL NIL "lf" "example.com")) ((NIL NIL "alice" "example.com")) NIL NIL NIL NIL)"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 32 3 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 32 3)"#,
    );
}

#[test]
fn m018_unconverted_bare_lf_does_not_break_anything() {
    let raw = std::fs::read(common::corpus_dir().join("018-bare-lf-body.eml")).expect("read");
    let s = summarize(&raw);
    // "line one\nline two\r\nline three\n": 30 octets, 3 line endings.
    assert_eq!(
        String::from_utf8_lossy(&s.bodystructure(false, false)),
        r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 30 3)"#
    );
}

#[test]
fn m019_multipart_signed() {
    // protocol, micalg, boundary in the order written. Signed part
    // raw[453..494] (41, 1, trailing spaces included); signature
    // raw[631..697] (66, no lines counted: not text).
    expect(
        "019",
        concat!(
            r#"("Fri, 02 Jan 2026 14:43:00 +0000" "Signed message" "#,
            r#"((NIL NIL "signer" "example.com")) ((NIL NIL "signer" "example.com")) "#,
            r#"((NIL NIL "signer" "example.com")) ((NIL NIL "alice" "example.com")) "#,
            r#"NIL NIL NIL "<signed-19@example.com>")"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 41 1 NIL NIL NIL NIL)"#,
            r#"("APPLICATION" "PGP-SIGNATURE" NIL NIL NIL "7BIT" 66 NIL NIL NIL NIL) "#,
            r#""SIGNED" ("PROTOCOL" "application/pgp-signature" "MICALG" "pgp-sha256" "#,
            r#""BOUNDARY" "===============5442245047631702150==") NIL NIL NIL)"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 41 1)"#,
            r#"("APPLICATION" "PGP-SIGNATURE" NIL NIL NIL "7BIT" 66) "SIGNED")"#
        ),
    );
}
