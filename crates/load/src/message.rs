//! The messages the scenarios send: a corpus of real messages (by default the
//! repository's `tests/corpus`), each sent as its own bytes with only its `From:` and
//! `To:` header fields rewritten to the simulated account, line ends made CRLF, and
//! for SMTP/LMTP dot-stuffed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

/// The corpus folder of the repository this tool was built from.
pub const DEFAULT_CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus");

/// Messages read once at start and shared by every client.
#[derive(Debug)]
pub struct Corpus {
    /// Each message with CRLF line ends.
    pub messages: Vec<Arc<[u8]>>,
    /// Words of the messages' subjects (for `SEARCH SUBJECT`).
    pub subject_words: Vec<String>,
}

impl Corpus {
    /// Every `*.eml` file in `dir` (sorted by name); at least one must be there.
    pub fn load(dir: &Path) -> anyhow::Result<Corpus> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading the corpus folder {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "eml") && p.is_file())
            .collect();
        paths.sort();
        let mut messages = Vec::with_capacity(paths.len());
        let mut subject_words = Vec::new();
        for path in &paths {
            let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            if raw.is_empty() {
                continue;
            }
            subject_words.extend(subject_words_of(&raw));
            messages.push(Arc::from(crlf(&raw)));
        }
        if messages.is_empty() {
            bail!("no *.eml message in the corpus folder {}", dir.display());
        }
        subject_words.sort();
        subject_words.dedup();
        if subject_words.is_empty() {
            subject_words.push("test".to_string());
        }
        Ok(Corpus {
            messages,
            subject_words,
        })
    }
}

/// `raw` with every bare LF turned into CRLF.
pub fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for (i, &byte) in raw.iter().enumerate() {
        if byte == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(byte);
    }
    out
}

/// The length of the header section of a CRLF message, including the empty line that
/// ends it (the whole message when it has no body).
fn header_len(message: &[u8]) -> usize {
    if message.starts_with(b"\r\n") {
        return 2;
    }
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 4)
}

/// `message` (CRLF) with its `From:` and `To:` fields (continuation lines included)
/// replaced by `From: <from>` and `To: <to, ...>`, put where the first of each was, or
/// at the top when the message had none. Every other byte stays as it was.
pub fn rewrite_addresses(message: &[u8], from: &str, to: &[&str]) -> Vec<u8> {
    let header_end = header_len(message);
    let (header, body) = message.split_at(header_end);
    let from_field = format!("From: <{from}>\r\n");
    let to_field = format!(
        "To: {}\r\n",
        to.iter()
            .map(|a| format!("<{a}>"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut out = Vec::with_capacity(message.len() + 64);
    let (mut wrote_from, mut wrote_to) = (false, false);
    let mut skipping = false;
    let mut rest = Vec::new();
    for line in header.split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if continuation && skipping {
            continue;
        }
        skipping = false;
        let name = line
            .iter()
            .position(|&b| b == b':')
            .map(|colon| line[..colon].trim_ascii());
        match name {
            Some(name) if !continuation && name.eq_ignore_ascii_case(b"From") => {
                skipping = true;
                if !wrote_from {
                    rest.extend_from_slice(from_field.as_bytes());
                    wrote_from = true;
                }
            }
            Some(name) if !continuation && name.eq_ignore_ascii_case(b"To") => {
                skipping = true;
                if !wrote_to {
                    rest.extend_from_slice(to_field.as_bytes());
                    wrote_to = true;
                }
            }
            _ => rest.extend_from_slice(line),
        }
    }
    if !wrote_from {
        out.extend_from_slice(from_field.as_bytes());
    }
    if !wrote_to {
        out.extend_from_slice(to_field.as_bytes());
    }
    out.extend_from_slice(&rest);
    if header_end == message.len() && !message.ends_with(b"\r\n\r\n") {
        // A message of header fields only: end the header section.
        if !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(body);
    out
}

/// `message` (CRLF) as SMTP DATA content: a `.` added before every line starting with
/// one, a final CRLF if missing, and the `.` line that ends DATA.
pub fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Words of four letters or more in a message's first `Subject:` line.
fn subject_words_of(raw: &[u8]) -> Vec<String> {
    let header = &raw[..header_len(raw).min(raw.len())];
    for line in header.split(|&b| b == b'\n') {
        let Some(value) = line
            .get(..8)
            .filter(|name| name.eq_ignore_ascii_case(b"Subject:"))
            .map(|_| &line[8..])
        else {
            continue;
        };
        return String::from_utf8_lossy(value)
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| w.len() >= 4)
            .map(|w| w.to_ascii_lowercase())
            .collect();
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_from_and_to_with_continuations() {
        let message = b"Received: x\r\nFrom: Someone\r\n <a@b>\r\nSubject: s\r\nTO: c@d,\r\n\te@f\r\nCc: g@h\r\n\r\nFrom: body line\r\n";
        let out = rewrite_addresses(message, "user1@example.com", &["user2@example.com"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: x\r\nFrom: <user1@example.com>\r\nSubject: s\r\nTo: <user2@example.com>\r\nCc: g@h\r\n\r\nFrom: body line\r\n"
        );
    }

    #[test]
    fn adds_missing_fields_on_top() {
        let out = rewrite_addresses(b"Subject: s\r\n\r\nbody\r\n", "a@x", &["b@x", "c@x"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "From: <a@x>\r\nTo: <b@x>, <c@x>\r\nSubject: s\r\n\r\nbody\r\n"
        );
        let out = rewrite_addresses(b"Subject: s\r\n", "a@x", &["b@x"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "From: <a@x>\r\nTo: <b@x>\r\nSubject: s\r\n\r\n"
        );
    }

    #[test]
    fn duplicate_fields_are_dropped() {
        let out = rewrite_addresses(b"From: a\r\nFrom: b\r\n\r\n", "x@y", &["z@y"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "To: <z@y>\r\nFrom: <x@y>\r\n\r\n"
        );
    }

    #[test]
    fn stuffing_and_crlf() {
        assert_eq!(crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(
            dot_stuffed(b".a\r\nb\r\n..\r\n"),
            b"..a\r\nb\r\n...\r\n.\r\n"
        );
        assert_eq!(dot_stuffed(b"no end"), b"no end\r\n.\r\n");
    }

    #[test]
    fn subject_words() {
        assert_eq!(
            subject_words_of(b"From: a\r\nSubject: Re: Quarterly report, v2\r\n\r\n"),
            vec!["quarterly", "report"]
        );
    }

    #[test]
    fn repository_corpus_loads() {
        let corpus = Corpus::load(Path::new(DEFAULT_CORPUS)).unwrap();
        assert!(corpus.messages.len() >= 100);
        assert!(corpus.messages.iter().all(|m| !m.is_empty()));
    }
}
