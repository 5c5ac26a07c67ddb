//! Every corpus message: summarized without panic, ENVELOPE and BODYSTRUCTURE
//! well-formed, sections consistent with the raw bytes, and the summary
//! surviving the store's serialization.

mod common;

use common::{all, check_syntax, paths};
use portico_mime::{
    Content, MessageSummary, PREVIEW_CHARS, Part, SectionPart, binary_section, body_text,
    header_values, preview, section, sent_date, summarize, summarize_with_body_text,
};

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

fn round_trip(s: &MessageSummary) -> (usize, MessageSummary) {
    let bytes = bincode::serde::encode_to_vec(s, bincode_config()).expect("encode");
    let (back, used) =
        bincode::serde::decode_from_slice::<MessageSummary, _>(&bytes, bincode_config())
            .expect("decode");
    assert_eq!(used, bytes.len());
    (bytes.len(), back)
}

/// Offsets nest: a part lies inside its parent's body, its header before its
/// body.
fn check_offsets(part: &Part, lo: usize, hi: usize) -> Result<(), String> {
    if !(lo <= part.header_start
        && part.header_start <= part.body_start
        && part.body_start <= part.body_end
        && part.body_end <= hi)
    {
        return Err(format!(
            "part {}..{}..{} outside {lo}..{hi}",
            part.header_start, part.body_start, part.body_end
        ));
    }
    match &part.content {
        Content::Multipart(children) => {
            let mut prev = part.body_start;
            for c in children {
                check_offsets(c, prev, part.body_end)?;
                prev = c.body_end;
            }
            Ok(())
        }
        Content::Message { message, .. } => {
            if message.root.header_start != part.body_start
                || message.root.body_end != part.body_end
            {
                return Err("encapsulated message does not fill its part".into());
            }
            check_offsets(&message.root, part.body_start, part.body_end)
        }
        _ => Ok(()),
    }
}

#[test]
fn the_corpus_is_all_there() {
    // The README promises 119 messages.
    assert_eq!(all().len(), 119);
}

#[test]
fn every_message_summarizes_to_well_formed_imap() {
    for (name, raw) in all() {
        let s = summarize(&raw);
        assert_eq!(s.size(), raw.len(), "{name}");
        check_syntax(&s).unwrap_or_else(|e| {
            panic!(
                "{name}: {e}\n{}\n{}",
                String::from_utf8_lossy(&s.envelope(false)),
                String::from_utf8_lossy(&s.bodystructure(true, false))
            )
        });
        check_offsets(s.root(), 0, raw.len()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.root().header_start, 0, "{name}");
        assert_eq!(s.root().body_end, raw.len(), "{name}");
    }
}

#[test]
fn every_message_full_section_is_the_raw_message() {
    for (name, raw) in all() {
        let s = summarize(&raw);
        let whole = section(&raw, &s, &[], &SectionPart::Full);
        assert_eq!(whole.as_deref(), Some(&raw[..]), "{name}");
        let header = section(&raw, &s, &[], &SectionPart::Header).unwrap_or_default();
        let text = section(&raw, &s, &[], &SectionPart::Text).unwrap_or_default();
        assert_eq!(
            [&header[..], &text[..]].concat(),
            raw,
            "{name}: HEADER + TEXT"
        );
    }
}

#[test]
fn every_part_of_every_message_can_be_fetched() {
    for (name, raw) in all() {
        let s = summarize(&raw);
        let parts = paths(&s);
        assert!(!parts.is_empty(), "{name}");
        for (path, part) in parts {
            let body = section(&raw, &s, &path, &SectionPart::Full);
            assert_eq!(
                body.as_deref(),
                Some(&raw[part.body_start..part.body_end]),
                "{name} {path:?}"
            );
            let mime = section(&raw, &s, &path, &SectionPart::Mime).unwrap_or_default();
            assert_eq!(
                &mime[..],
                &raw[part.header_start..part.body_start],
                "{name} {path:?}"
            );
            if matches!(part.content, Content::Message { .. }) {
                let header = section(&raw, &s, &path, &SectionPart::Header).unwrap_or_default();
                let text = section(&raw, &s, &path, &SectionPart::Text).unwrap_or_default();
                assert_eq!(
                    [&header[..], &text[..]].concat(),
                    &raw[part.body_start..part.body_end],
                    "{name} {path:?}"
                );
            }
            let known_cte = matches!(
                part.encoding.as_deref(),
                None | Some(b"7bit" | b"8bit" | b"binary" | b"base64" | b"quoted-printable")
            );
            let binary = binary_section(&raw, &s, &path);
            assert_eq!(
                binary.as_ref().map(Result::is_ok),
                Some(known_cte),
                "{name} {path:?}"
            );
        }
    }
}

#[test]
fn every_summary_survives_bincode() {
    for (name, raw) in all() {
        let s = summarize(&raw);
        let (len, back) = round_trip(&s);
        assert_eq!(back, s, "{name}");
        assert_eq!(
            back.bodystructure(true, true),
            s.bodystructure(true, true),
            "{name}"
        );
        // A summary is small next to its message, whatever the message size.
        assert!(len < 4096, "{name}: {len} bytes");
    }
}

#[test]
fn serialized_summary_sizes() {
    let m001 = summarize(&common::load("001"));
    let m005 = summarize(&common::load("005"));
    let (a, _) = round_trip(&m001);
    let (b, _) = round_trip(&m005);
    println!("bincode summary: 001 = {a} bytes, 005 = {b} bytes");
    assert!(a < 512 && b < 1024, "{a} {b}");
}

#[test]
fn search_helpers_accept_every_message() {
    for (name, raw) in all() {
        let subjects = header_values(&raw, "subject");
        assert!(subjects.len() <= 1, "{name}");
        let _ = sent_date(&raw);
        let _ = body_text(&raw);
    }
}

/// RFC 8970 previews of the corpus: every one short, one line, no stray white space;
/// and what a reader would see first for the kinds of message the corpus has.
#[test]
fn every_message_has_a_preview_a_reader_would_expect() {
    let mut empty = Vec::new();
    for (name, raw) in all() {
        let text = preview(&raw, &summarize(&raw));
        assert!(text.chars().count() <= PREVIEW_CHARS, "{name}: {text:?}");
        assert!(!text.chars().any(char::is_control), "{name}: {text:?}");
        assert_eq!(text.trim(), text, "{name}");
        assert!(!text.contains("  "), "{name}: {text:?}");
        if text.is_empty() {
            empty.push(name[..3].to_string());
        }
    }
    // No body (010, 011) or nothing but an undecodable text part (014's first part is
    // junk base64, its second has no end).
    assert_eq!(empty, ["010", "011"]);
    let of = |prefix: &str| {
        let raw = common::load(prefix);
        preview(&raw, &summarize(&raw))
    };
    // The signature after `-- ` is left out.
    assert_eq!(of("001"), "Hello Bob, This is a plain text message.");
    // ISO-8859-1, 8bit.
    assert_eq!(of("003"), "Olá, tudo bem? Ação rápida.");
    // Quoted-printable UTF-8, its soft line breaks inside characters undone.
    assert_eq!(of("002"), ["Grüße! Ça va? Привет. 你好。"; 5].join(" "));
    // Long text is cut at 200 characters.
    assert_eq!(of("020").chars().count(), PREVIEW_CHARS);
    // Alternative: the plain part (base64).
    assert!(
        of("004").starts_with("Text version tempor do dolor"),
        "{}",
        of("004")
    );
    // The text before the attachments.
    assert_eq!(of("005"), "See the attached files.");
    assert_eq!(of("006"), "Forwarding this.");
    assert_eq!(of("007"), "plain body");
    assert!(of("012").starts_with("magna forecast quarterly dolore"));
    assert_eq!(of("013"), "Big file attached.");
    assert_eq!(of("015"), "Zażółć gęślą jaźń.");
    // The calendar alternative is not text a reader sees.
    assert_eq!(of("016"), "You are invited.");
    assert_eq!(of("018"), "line one line two line three");
    assert_eq!(of("019"), "Signed content, must stay byte-exact.");
}

/// The text handed from an append's parse to the full-text index is what the index
/// would make of the stored message itself, for every corpus message.
#[test]
fn summary_and_body_text_from_one_parse() {
    for (name, raw) in all() {
        let (summary, text) = summarize_with_body_text(&raw, usize::MAX);
        assert_eq!(summary, summarize(&raw), "{name}");
        let expected = body_text(&raw);
        assert_eq!(text.as_deref(), Some(expected.as_str()), "{name}");
        // A text longer than asked for is not made; the summary is made all the same.
        let (at_limit, exact) = summarize_with_body_text(&raw, expected.len());
        assert_eq!(exact.as_deref(), Some(expected.as_str()), "{name}");
        assert_eq!(at_limit, summary, "{name}");
        if !expected.is_empty() {
            let (short, none) = summarize_with_body_text(&raw, expected.len() - 1);
            assert_eq!(none, None, "{name}");
            assert_eq!(short, summary, "{name}");
        }
    }
}
