//! Corpus messages 020–119 (the short single-part "bulk" messages): ENVELOPE
//! and BODYSTRUCTURE (extensible, 7-bit client) against the values written
//! down in `bulk_expected.txt`.
//!
//! That file is produced by `check_bulk_expected.py` beside it, which works
//! them out from each message's raw bytes on its own (RFC 9051 §7.5.2 and §9;
//! the conventions are listed in its docstring) without looking at this
//! crate; a sample of its lines was checked by hand against the raw files.
//! `python3 crates/mime/tests/check_bulk_expected.py --check` verifies the
//! file still matches that computation.
//!
//! File format, one value per line:
//!
//! ```text
//! NNN ENVELOPE <envelope>
//! NNN BODYSTRUCTURE <bodystructure>
//! ```

mod common;

use std::collections::BTreeMap;

use common::{check_syntax, load};
use portico_mime::summarize;

const FIRST: u32 = 20;
const LAST: u32 = 119;

/// Message number → (ENVELOPE, BODYSTRUCTURE), exactly as written in the file.
fn expected() -> BTreeMap<u32, (Option<String>, Option<String>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bulk_expected.txt");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out: BTreeMap<u32, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut lines = 0;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let mut it = line.splitn(3, ' ');
        let (Some(num), Some(kind), Some(value)) = (it.next(), it.next(), it.next()) else {
            panic!("{path}:{lineno}: not `NNN KIND value`: {line:?}");
        };
        assert!(
            num.len() == 3 && num.bytes().all(|b| b.is_ascii_digit()),
            "{path}:{lineno}: bad message number {num:?}"
        );
        let n: u32 = num.parse().expect("three digits");
        let entry = out.entry(n).or_default();
        let slot = match kind {
            "ENVELOPE" => &mut entry.0,
            "BODYSTRUCTURE" => &mut entry.1,
            _ => panic!("{path}:{lineno}: unknown kind {kind:?}"),
        };
        assert!(slot.is_none(), "{path}:{lineno}: second {num} {kind}");
        *slot = Some(value.to_owned());
        lines += 1;
    }
    assert_eq!(lines, 200, "{path}: expected 100 messages x 2 lines");
    out
}

#[test]
fn file_has_every_bulk_message_twice() {
    let exp = expected();
    let numbers: Vec<u32> = exp.keys().copied().collect();
    assert_eq!(
        numbers,
        (FIRST..=LAST).collect::<Vec<_>>(),
        "message numbers"
    );
    for (n, (env, bs)) in &exp {
        assert!(env.is_some(), "{n:03}: no ENVELOPE line");
        assert!(bs.is_some(), "{n:03}: no BODYSTRUCTURE line");
    }
}

#[test]
fn bulk_envelope_and_bodystructure() {
    let exp = expected();
    assert_eq!(exp.len(), 100, "expected 100 messages");
    let mut failures = Vec::new();
    for (n, (env, bs)) in &exp {
        let prefix = format!("{n:03}");
        let raw = load(&prefix);
        let s = summarize(&raw);
        let checks = [
            ("ENVELOPE", env, s.envelope(false)),
            ("BODYSTRUCTURE", bs, s.bodystructure(true, false)),
        ];
        for (kind, want, got) in checks {
            let Some(want) = want else {
                failures.push(format!("{prefix} {kind}: missing from the file"));
                continue;
            };
            if got != want.as_bytes() {
                failures.push(format!(
                    "{prefix} {kind}\n  expected: {want}\n  actual:   {}",
                    String::from_utf8_lossy(&got)
                ));
            }
        }
        if let Err(e) = check_syntax(&s) {
            failures.push(format!("{prefix} syntax: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatch(es):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
