//! Any bytes in, no panic out: truncated and mutated corpus messages and
//! random bytes through every entry point, with the output still well-formed
//! IMAP.

mod common;

use std::sync::OnceLock;

use common::{check_syntax, paths};
use portico_mime::{
    PREVIEW_CHARS, SectionPart, binary_section, body_text, header_values, preview, section,
    sent_date, summarize, summarize_with_body_text,
};
use proptest::prelude::*;

/// Runs everything on `raw` and checks what must hold for any input.
fn exercise(raw: &[u8]) {
    let s = summarize(raw);
    assert_eq!(s.size(), raw.len());
    // One parse for both: the same summary, and the same text SEARCH and the index
    // would make of the message on their own.
    let (with_text, text) = summarize_with_body_text(raw, usize::MAX);
    assert_eq!(with_text, s);
    if let Some(text) = text {
        assert_eq!(text, body_text(raw));
    }
    if let Err(e) = check_syntax(&s) {
        panic!(
            "{e}\ninput: {:?}\nBODYSTRUCTURE: {}",
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(&s.bodystructure(true, false))
        );
    }
    assert_eq!(
        section(raw, &s, &[], &SectionPart::Full).as_deref(),
        Some(raw)
    );
    let kinds = [
        SectionPart::Full,
        SectionPart::Header,
        SectionPart::Text,
        SectionPart::Mime,
        SectionPart::HeaderFields(vec!["subject".into(), "content-type".into()]),
        SectionPart::HeaderFieldsNot(vec!["from".into()]),
    ];
    let mut all_paths: Vec<Vec<u32>> = paths(&s).into_iter().map(|(p, _)| p).collect();
    all_paths.extend([
        vec![],
        vec![0],
        vec![1, 1, 1, 1],
        vec![u32::MAX],
        vec![2, 1],
    ]);
    for path in &all_paths {
        for kind in &kinds {
            let _ = section(raw, &s, path, kind);
        }
        let _ = binary_section(raw, &s, path);
    }
    // A summary used with other bytes (a caller's mistake) must not panic.
    for kind in &kinds {
        let _ = section(b"x", &s, &[1], kind);
    }
    let _ = header_values(raw, "subject");
    let _ = sent_date(raw);
    let _ = body_text(raw);
    // RFC 8970 §3.1: at most 256 characters (we keep to 200), one line of text.
    let text = preview(raw, &s);
    assert!(text.chars().count() <= PREVIEW_CHARS, "{text:?}");
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert_eq!(text.trim(), text, "{text:?}");
}

/// Inputs the fuzzer found that panic inside mail-parser (a `debug_assert!` on a
/// multipart it lost track of): `summarize` catches that and falls back to its own
/// reading, so the message keeps its bytes and a usable summary.
#[test]
fn fuzz_regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz-regressions") {
        let raw = std::fs::read(entry.expect("entry").path()).expect("read");
        let summary = portico_mime::summarize(&raw);
        assert_eq!(summary.size(), raw.len());
        assert!(summary.root().body_end <= raw.len());
        exercise(&raw);
        seen += 1;
    }
    assert!(seen >= 1);
}

#[test]
fn truncated_corpus_messages() {
    for (name, raw) in common::all() {
        // Up to 300 prefixes of each message; 25 of the 2 MB one.
        let cuts = if raw.len() > 100_000 { 25 } else { 300 };
        let step = (raw.len() / cuts).max(1);
        for cut in (0..raw.len()).step_by(step) {
            let piece = &raw[..cut];
            let result = std::panic::catch_unwind(|| exercise(piece));
            assert!(result.is_ok(), "{name} cut at {cut}");
        }
    }
}

#[test]
fn deep_and_wide_structures() {
    let mut nested = Vec::new();
    for i in 0..300 {
        nested.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    nested.extend_from_slice(b"Content-Type: text/plain\r\n\r\nleaf\r\n");
    exercise(&nested);

    let mut digest = b"Content-Type: multipart/digest; boundary=d\r\n\r\n".to_vec();
    for _ in 0..200 {
        digest.extend_from_slice(b"--d\r\n\r\nSubject: m\r\n\r\nbody\r\n");
    }
    digest.extend_from_slice(b"--d--\r\n");
    exercise(&digest);

    let mut rfc822 = Vec::new();
    for _ in 0..5000 {
        rfc822.extend_from_slice(b"Subject: x\r\nContent-Type: message/rfc822\r\n\r\n");
    }
    exercise(&rfc822);
}

#[test]
fn odd_but_seen_messages() {
    for raw in [
        &b""[..],
        b"\r\n",
        b"\r\n\r\n",
        b"\n",
        b":",
        b"From:",
        b"From: \"unterminated\r\n\r\n",
        b"From: (((\r\n\r\n",
        b"To: a:b:c;;;,,<<>>@@\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x\r\n--x--\r\n",
        b"Content-Type: message/rfc822\r\n\r\n\r\n",
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0KDQp5DQo=\r\n",
        b"Content-Type: text/plain; charset*0*=x; charset*1=y; charset*9999=z\r\n\r\n",
        b"Subject: \0nul\r\n\r\n",
        b"Subject: =?utf-8?q?broken\r\n\r\n",
        b"Date: Mon, 99 Foo 9999 99:99:99 +9999\r\n\r\n",
        b"\xff\xfe\x00\x01: \xff\r\n\r\n\xff",
    ] {
        exercise(raw);
    }
}

/// Tokens that steer a MIME parser into its less travelled paths.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"--".to_vec()),
        Just(b"--b".to_vec()),
        Just(b"--b--".to_vec()),
        Just(b"Content-Type: multipart/mixed; boundary=b\r\n".to_vec()),
        Just(b"Content-Type: message/rfc822\r\n".to_vec()),
        Just(b"Content-Type: multipart/digest; boundary=b\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
        Just(b"From: \"a\" <b@c>, (x) d@e, g: h@i;\r\n".to_vec()),
        Just(b"=?utf-8?b?".to_vec()),
        Just(b"=\r\n".to_vec()),
        Just(b":".to_vec()),
        Just(b" ".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ]
}

fn corpus_sample() -> &'static [Vec<u8>] {
    static SAMPLE: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        common::all()
            .into_iter()
            .filter(|(_, raw)| raw.len() < 50_000)
            .map(|(_, raw)| raw)
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&raw);
    }

    #[test]
    fn random_token_soup(parts in proptest::collection::vec(fragment(), 0..60)) {
        exercise(&parts.concat());
    }

    #[test]
    fn mutated_corpus_messages(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), fragment(), 0usize..16), 1..8),
    ) {
        let sample = corpus_sample();
        let mut raw = sample[which.index(sample.len())].clone();
        for (at, insert, remove) in edits {
            let pos = at.index(raw.len() + 1);
            let end = (pos + remove).min(raw.len());
            raw.splice(pos..end, insert);
        }
        exercise(&raw);
    }
}
