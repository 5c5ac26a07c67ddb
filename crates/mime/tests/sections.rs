//! BODY[section], BINARY[section] and the SEARCH helpers on corpus messages,
//! with the expected bytes written out (or given as explicit offsets into the
//! CRLF file, checked against the file by hand).

mod common;

use std::borrow::Cow;

use common::load;
use portico_mime::{
    SectionPart, UnknownCte, binary_section, body_text, header_fields, header_values, section,
    sent_date, summarize,
};

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `BODY[path.part]` as bytes; `None` when the section does not exist.
fn body(raw: &[u8], path: &[u32], part: SectionPart) -> Option<Vec<u8>> {
    let s = summarize(raw);
    section(raw, &s, path, &part).map(Cow::into_owned)
}

fn full(raw: &[u8], path: &[u32]) -> Option<Vec<u8>> {
    body(raw, path, SectionPart::Full)
}

fn mime(raw: &[u8], path: &[u32]) -> Option<Vec<u8>> {
    body(raw, path, SectionPart::Mime)
}

#[test]
fn whole_message_header_and_text() {
    let raw = load("005");
    let s = summarize(&raw);
    assert!(matches!(
        section(&raw, &s, &[], &SectionPart::Full),
        Some(Cow::Borrowed(b)) if b == &raw[..]
    ));
    assert_eq!(s.header_len(), 325);
    assert_eq!(
        body(&raw, &[], SectionPart::Header).as_deref(),
        Some(&raw[..325])
    );
    assert!(raw[..325].ends_with(b"\r\n\r\n"));
    assert_eq!(
        body(&raw, &[], SectionPart::Text).as_deref(),
        Some(&raw[325..])
    );
    // MIME needs a part number.
    assert_eq!(mime(&raw, &[]), None);
}

#[test]
fn header_fields_keep_message_order_and_case() {
    let raw = load("005");
    assert_eq!(
        body(
            &raw,
            &[],
            SectionPart::HeaderFields(names(&["Date", "subject", "FROM"]))
        )
        .as_deref(),
        Some(
            &b"From: Carol <carol@example.com>\r\nSubject: Report with attachments\r\n\
               Date: Thu, 01 Jan 2026 16:05:00 +0100\r\n\r\n"[..]
        )
    );
    assert_eq!(
        body(&raw, &[], SectionPart::HeaderFields(names(&["X-Absent"]))).as_deref(),
        Some(&b"\r\n"[..])
    );
    assert_eq!(
        body(
            &raw,
            &[],
            SectionPart::HeaderFieldsNot(names(&["Content-Type", "mime-version", "Date", "Message-ID"]))
        )
        .as_deref(),
        Some(
            &b"From: Carol <carol@example.com>\r\nTo: Alice <alice@example.com>, Bob <bob@example.com>\r\n\
               Cc: Dave <dave@example.com>\r\nSubject: Report with attachments\r\n\r\n"[..]
        )
    );
}

#[test]
fn folded_header_fields_come_back_folded() {
    let raw = load("008");
    let refs = body(
        &raw,
        &[],
        SectionPart::HeaderFields(names(&["In-Reply-To", "References"])),
    )
    .unwrap_or_default();
    let expected = concat!(
        "In-Reply-To: <prev-7@example.com>\r\n",
        "References: <ref-0@example.com> <ref-1@example.com> <ref-2@example.com>\r\n",
        " <ref-3@example.com> <ref-4@example.com> <ref-5@example.com>\r\n",
        " <ref-6@example.com> <ref-7@example.com> <ref-8@example.com>\r\n",
        " <ref-9@example.com> <ref-10@example.com> <ref-11@example.com>\r\n",
        " <ref-12@example.com> <ref-13@example.com> <ref-14@example.com>\r\n",
        " <ref-15@example.com> <ref-16@example.com> <ref-17@example.com>\r\n",
        " <ref-18@example.com> <ref-19@example.com> <ref-20@example.com>\r\n",
        " <ref-21@example.com> <ref-22@example.com> <ref-23@example.com>\r\n",
        " <ref-24@example.com>\r\n",
        "\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&refs), expected);
    // The same from the header bytes alone, as a header-only fetch does it.
    let s = summarize(&raw);
    assert_eq!(
        header_fields(
            &raw[..s.header_len()],
            &names(&["in-reply-to", "references"]),
            false
        ),
        expected.as_bytes()
    );
}

#[test]
fn m001_part_one_of_a_single_part_message_is_its_body() {
    let raw = load("001");
    assert_eq!(full(&raw, &[1]).as_deref(), Some(&raw[263..]));
    assert_eq!(
        full(&raw, &[1]).as_deref(),
        Some(&b"Hello Bob,\r\n\r\nThis is a plain text message.\r\n\r\n-- \r\nAlice\r\n"[..])
    );
    // Its MIME header is the message header.
    assert_eq!(mime(&raw, &[1]).as_deref(), Some(&raw[..263]));
    assert_eq!(full(&raw, &[2]), None);
    assert_eq!(full(&raw, &[1, 1]), None);
    assert_eq!(full(&raw, &[0]), None);
    assert_eq!(body(&raw, &[1], SectionPart::Header), None);
}

#[test]
fn m005_parts_and_their_mime_headers() {
    let raw = load("005");
    assert_eq!(
        full(&raw, &[1]).as_deref(),
        Some(&b"See the attached files.\r\n"[..])
    );
    assert_eq!(
        mime(&raw, &[1]).as_deref(),
        Some(
            &b"Content-Type: text/plain; charset=\"us-ascii\"\r\nMIME-Version: 1.0\r\n\
               Content-Transfer-Encoding: 7bit\r\n\r\n"[..]
        )
    );
    assert_eq!(full(&raw, &[2]).as_deref(), Some(&raw[678..28048]));
    assert_eq!(full(&raw, &[3]).as_deref(), Some(&raw[28255..35111]));
    assert_eq!(full(&raw, &[4]).as_deref(), Some(&raw[35344..39450]));
    assert_eq!(
        mime(&raw, &[4]).as_deref(),
        Some(
            &b"Content-Type: application/zip\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\
               Content-Disposition: attachment;\r\n filename*=utf-8''r%C3%A9sum%C3%A9%20%E5%B1%A5%E6%AD%B4%E6%9B%B8.zip\r\n\r\n"[..]
        )
    );
    assert_eq!(full(&raw, &[5]), None);
    assert_eq!(full(&raw, &[1, 1]), None);
    // HEADER and TEXT of a part exist only for message/rfc822.
    assert_eq!(body(&raw, &[1], SectionPart::Header), None);
    assert_eq!(body(&raw, &[2], SectionPart::Text), None);
    assert_eq!(
        body(
            &raw,
            &[2],
            SectionPart::HeaderFields(names(&["Content-Type"]))
        ),
        None
    );
}

#[test]
fn m005_binary_decodes_base64_attachments() {
    let raw = load("005");
    let s = summarize(&raw);
    let png = binary_section(&raw, &s, &[3])
        .and_then(Result::ok)
        .unwrap_or_default();
    assert_eq!(png.len(), 5008);
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let pdf = binary_section(&raw, &s, &[2])
        .and_then(Result::ok)
        .unwrap_or_default();
    assert_eq!(pdf.len(), 20000);
    assert_eq!(
        binary_section(&raw, &s, &[1])
            .and_then(Result::ok)
            .as_deref(),
        Some(&b"See the attached files.\r\n"[..])
    );
    assert!(binary_section(&raw, &s, &[9]).is_none());
    assert!(matches!(binary_section(&raw, &s, &[]), Some(Ok(b)) if b == raw));
}

#[test]
fn m006_encapsulated_message_sections() {
    let raw = load("006");
    let inner_header =
        b"From: eve@example.org\r\nTo: carol@example.com\r\nSubject: Original message\r\n\
        Date: Thu, 01 Jan 2026 17:42:00 +0200\r\nMessage-ID: <inner-6@example.org>\r\n\
        Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 7bit\r\n\
        MIME-Version: 1.0\r\n\r\n";
    assert_eq!(&raw[504..748], &inner_header[..]);
    assert_eq!(
        full(&raw, &[1]).as_deref(),
        Some(&b"Forwarding this.\r\n"[..])
    );
    // BODY[2] is the whole encapsulated message.
    assert_eq!(full(&raw, &[2]).as_deref(), Some(&raw[504..769]));
    assert_eq!(
        mime(&raw, &[2]).as_deref(),
        Some(&b"Content-Type: message/rfc822\r\nMIME-Version: 1.0\r\n\r\n"[..])
    );
    assert_eq!(
        body(&raw, &[2], SectionPart::Header).as_deref(),
        Some(&inner_header[..])
    );
    assert_eq!(
        body(&raw, &[2], SectionPart::Text).as_deref(),
        Some(&b"This was forwarded.\r\n"[..])
    );
    // The encapsulated message is not multipart: its part 1 is its body, and
    // that part's MIME header is the encapsulated message's header.
    assert_eq!(
        full(&raw, &[2, 1]).as_deref(),
        Some(&b"This was forwarded.\r\n"[..])
    );
    assert_eq!(mime(&raw, &[2, 1]).as_deref(), Some(&inner_header[..]));
    assert_eq!(full(&raw, &[2, 2]), None);
    assert_eq!(full(&raw, &[2, 1, 1]), None);
    assert_eq!(
        body(
            &raw,
            &[2],
            SectionPart::HeaderFields(names(&["subject", "from"]))
        )
        .as_deref(),
        Some(&b"From: eve@example.org\r\nSubject: Original message\r\n\r\n"[..])
    );
    assert_eq!(
        body(
            &raw,
            &[2],
            SectionPart::HeaderFieldsNot(names(&[
                "Content-Type",
                "Content-Transfer-Encoding",
                "MIME-Version",
                "Message-ID",
                "Date"
            ]))
        )
        .as_deref(),
        Some(
            &b"From: eve@example.org\r\nTo: carol@example.com\r\nSubject: Original message\r\n\r\n"
                [..]
        )
    );
    assert_eq!(body(&raw, &[1], SectionPart::Text), None);
}

#[test]
fn m007_nested_multipart_sections() {
    let raw = load("007");
    // 1 = multipart/related: its body, from the first delimiter line to its
    // close delimiter and the CRLF after it.
    let related = full(&raw, &[1]).unwrap_or_default();
    assert_eq!(related, &raw[405..1397]);
    assert!(related.starts_with(b"--===============3319135736123065664==\r\n"));
    assert!(related.ends_with(b"--===============3319135736123065664==--\r\n"));
    assert_eq!(
        mime(&raw, &[1]).as_deref(),
        Some(
            &b"Content-Type: multipart/related;\r\n boundary=\"===============3319135736123065664==\"\r\n\
               MIME-Version: 1.0\r\n\r\n"[..]
        )
    );
    let alternative = full(&raw, &[1, 1]).unwrap_or_default();
    assert_eq!(alternative, &raw[554..926]);
    assert!(alternative.ends_with(b"--===============1817061782508509083==--\r\n"));
    assert_eq!(
        full(&raw, &[1, 1, 1]).as_deref(),
        Some(&b"plain body\r\n"[..])
    );
    assert_eq!(
        full(&raw, &[1, 1, 2]).as_deref(),
        Some(&b"<p>html body <img src=cid:logo></p>"[..])
    );
    assert_eq!(
        mime(&raw, &[1, 1, 2]).as_deref(),
        Some(
            &b"Content-Type: text/html; charset=\"us-ascii\"\r\nMIME-Version: 1.0\r\n\
               Content-Transfer-Encoding: 7bit\r\n\r\n"[..]
        )
    );
    assert_eq!(full(&raw, &[1, 2]).as_deref(), Some(&raw[1069..1353]));
    assert_eq!(
        mime(&raw, &[1, 2]).as_deref(),
        Some(
            &b"Content-Type: image/gif\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\
               Content-ID: <logo>\r\n\r\n"[..]
        )
    );
    assert_eq!(
        full(&raw, &[2]).as_deref(),
        Some(&b"a,b,c\r\n1,2,3\r\n"[..])
    );
    assert_eq!(
        mime(&raw, &[2]).as_deref(),
        Some(
            &b"Content-Type: text/csv; charset=\"us-ascii\"\r\nMIME-Version: 1.0\r\n\
               Content-Transfer-Encoding: 7bit\r\nContent-Disposition: attachment; filename=\"data.csv\"\r\n\r\n"[..]
        )
    );
    assert_eq!(full(&raw, &[3]), None);
    assert_eq!(full(&raw, &[1, 1, 3]), None);
    assert_eq!(full(&raw, &[1, 1, 1, 1]), None);
    assert_eq!(body(&raw, &[1], SectionPart::Header), None);

    let s = summarize(&raw);
    let gif = binary_section(&raw, &s, &[1, 2])
        .and_then(Result::ok)
        .unwrap_or_default();
    assert_eq!(gif.len(), 206);
    assert!(gif.starts_with(b"GIF89a"));
    // A multipart has nothing to decode.
    assert_eq!(
        binary_section(&raw, &s, &[1, 1])
            .and_then(Result::ok)
            .as_deref(),
        Some(&raw[554..926])
    );
}

#[test]
fn m019_signed_parts_are_byte_exact() {
    let raw = load("019");
    let signed_mime = b"Content-Type: text/plain; charset=\"us-ascii\"\r\nMIME-Version: 1.0\r\n\
        Content-Transfer-Encoding: 7bit\r\n\r\n";
    assert_eq!(mime(&raw, &[1]).as_deref(), Some(&signed_mime[..]));
    assert_eq!(
        full(&raw, &[1]).as_deref(),
        Some(&b"Signed content, must stay byte-exact.  \r\n"[..])
    );
    // What the signature covers (RFC 3156 §5): MIME header plus body, as sent.
    let mut covered = mime(&raw, &[1]).unwrap_or_default();
    covered.extend(full(&raw, &[1]).unwrap_or_default());
    assert_eq!(covered, &raw[353..494]);
    assert_eq!(
        full(&raw, &[2]).as_deref(),
        Some(&b"-----BEGIN PGP SIGNATURE-----\r\nfake\r\n-----END PGP SIGNATURE-----\r\n"[..])
    );
    assert_eq!(
        mime(&raw, &[2]).as_deref(),
        Some(
            &b"Content-Type: application/pgp-signature\r\nMIME-Version: 1.0\r\n\
               Content-Transfer-Encoding: 7bit\r\n\r\n"[..]
        )
    );
}

#[test]
fn m011_headers_only_sections() {
    let raw = load("011");
    assert_eq!(
        body(&raw, &[], SectionPart::Header).as_deref(),
        Some(&raw[..])
    );
    assert_eq!(
        body(&raw, &[], SectionPart::Text).as_deref(),
        Some(&b""[..])
    );
    assert_eq!(full(&raw, &[1]).as_deref(), Some(&b""[..]));
    assert_eq!(
        body(&raw, &[], SectionPart::HeaderFields(names(&["subject"]))).as_deref(),
        Some(&b"Subject: headers only\r\n\r\n"[..])
    );
}

#[test]
fn m012_binary_base64_text() {
    let raw = load("012");
    let s = summarize(&raw);
    let text = binary_section(&raw, &s, &[1])
        .and_then(Result::ok)
        .unwrap_or_default();
    assert_eq!(text.len(), 3389);
    assert!(text.starts_with(b"magna forecast quarterly dolore eiusmod "));
    assert!(text.ends_with(b"et site ut sed budget labore incididunt\n"));
    assert!(binary_section(&raw, &s, &[2]).is_none());
}

#[test]
fn m002_binary_quoted_printable() {
    let raw = load("002");
    let s = summarize(&raw);
    let text = binary_section(&raw, &s, &[1])
        .and_then(Result::ok)
        .unwrap_or_default();
    assert_eq!(
        String::from_utf8(text).unwrap_or_default(),
        "Grüße! Ça va? Привет. 你好。\r\n".repeat(5)
    );
}

#[test]
fn binary_of_an_unknown_encoding_is_unknown_cte() {
    let raw =
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n";
    let s = summarize(raw);
    assert!(matches!(
        binary_section(raw, &s, &[1]),
        Some(Err(UnknownCte))
    ));
    // BODY[] of it is still served as is.
    assert_eq!(full(raw, &[1]).as_deref(), Some(&b"begin 644 x\r\n"[..]));
}

#[test]
fn header_values_are_rfc2047_decoded() {
    let m002 = load("002");
    assert_eq!(
        header_values(&m002, "From"),
        vec!["Zoë Ünïcödé <zoe@example.org>"]
    );
    assert_eq!(
        header_values(&m002, "to"),
        vec!["Bjørn Ås <bjorn@example.com>"]
    );
    assert_eq!(
        header_values(&m002, "SUBJECT"),
        vec!["Grüße aus Köln — 東京 📬"]
    );
    let m003 = load("003");
    assert_eq!(header_values(&m003, "Subject"), vec!["Reunião amanhã"]);
    assert_eq!(
        header_values(&m003, "From"),
        vec!["José María <jose@example.es>"]
    );
    assert_eq!(
        header_values(&load("015"), "Subject"),
        vec!["Raw UTF-8 header — naïve café"]
    );
    assert_eq!(
        header_values(&load("014"), "Subject"),
        vec!["Malformed MIME"]
    );
    assert_eq!(header_values(&load("009"), "Date"), Vec::<String>::new());
    // Unfolded.
    let subject = header_values(&load("008"), "Subject");
    assert_eq!(subject.len(), 1);
    assert!(subject[0].contains("forecast consectetur site"));
    // Top-level header only: the encapsulated message's Subject is not ours.
    assert_eq!(
        header_values(&load("006"), "Subject"),
        vec!["Fwd: Original message"]
    );
}

#[test]
fn body_text_is_decoded() {
    let m002 = body_text(&load("002"));
    assert!(m002.contains("Привет"), "{m002}");
    assert!(m002.contains("Grüße! Ça va?"), "{m002}");
    let m003 = body_text(&load("003"));
    assert!(m003.contains("Olá, tudo bem? Ação rápida."), "{m003}");
    let m012 = body_text(&load("012"));
    assert!(m012.contains("magna forecast quarterly"), "{m012}");
    // Nested messages' text counts; attachments do not.
    assert!(body_text(&load("006")).contains("This was forwarded."));
    let m005 = body_text(&load("005"));
    assert!(m005.contains("See the attached files."));
    assert!(!m005.contains("base64"));
    assert!(m005.len() < 100, "{m005}");
    let m007 = body_text(&load("007"));
    assert!(m007.contains("plain body") && m007.contains("html body") && m007.contains("1,2,3"));
}

#[test]
fn sent_date_parses_the_date_header() {
    // 09:37 -0500 is 14:37 UTC.
    assert_eq!(sent_date(&load("001")), Some((1_767_278_220, -18_000)));
    // 05:01 +0900 on the 2nd is 20:01 UTC on the 1st.
    assert_eq!(sent_date(&load("013")), Some((1_767_297_660, 32_400)));
    assert_eq!(sent_date(&load("009")), None);
    assert_eq!(sent_date(b"Date: not a date\r\n\r\n"), None);
}
