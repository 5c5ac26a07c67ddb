//! The shared harness of the protocol crates' transcript tests.
//!
//! `portico-pop3`, `portico-smtp` and `portico-imap` each play text transcripts against
//! their session machine. What those runners have in common lives here once: finding the
//! transcript files and the test corpus, feeding a client write whole, byte by byte or
//! in seeded pseudo-random pieces (TCP may deliver it in any pieces), cutting server
//! output into lines, matching them against `S:` lines (a final `*` matches any rest) and
//! reporting failures. What is particular to a protocol (its header keys, its markers,
//! the fake host answering its actions) stays in that crate's `tests/transcripts.rs`.
//!
//! This crate is a `[dev-dependencies]` entry only, never a normal dependency: it panics
//! freely, reads the repository's test files, and knows nothing of any
//! session machine. It depends on std alone, and must never depend on a Portico crate
//! (the protocol crates depend on it, the other way round).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The repository's test material (`corpus/` messages and the like), under `tests/`.
pub const TEST_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests");

// ----- files ------------------------------------------------------------------------

/// Every `*.txt` file in `dir`, sorted by path.
#[track_caller]
pub fn transcript_files(dir: impl AsRef<Path>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("transcripts folder")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    files.sort();
    files
}

/// Every message of the repository corpus (`tests/corpus/*.eml`), sorted by name, as
/// `(file stem, bytes as on disk)`.
#[track_caller]
pub fn corpus_messages() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(TEST_DATA).join("corpus"))
        .expect("corpus folder")
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let raw = std::fs::read(&path).expect("corpus message");
            let name = path.file_stem().expect("file name").to_string_lossy();
            (name.into_owned(), raw)
        })
        .collect()
}

/// A file under the test material folder, exactly as it is on disk.
pub fn read_test_data(file: &str) -> Result<Vec<u8>, String> {
    let path = Path::new(TEST_DATA).join(file);
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `raw` with every bare LF turned into CRLF, as the store hands messages out.
pub fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 16);
    for (i, &byte) in raw.iter().enumerate() {
        if byte == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(byte);
    }
    out
}

// ----- the runner -------------------------------------------------------------------

/// Runs every transcript in `dir` (at least `at_least` of them) three times: every client
/// write whole, byte by byte, and in pseudo-random pieces seeded by the file name.
/// Panics with every failure, each named by file and [`Split`].
#[track_caller]
pub fn run_transcripts<S>(
    dir: &str,
    at_least: usize,
    load: impl Fn(&Path) -> Result<S, String>,
    run: impl Fn(&S, Split) -> Result<(), String>,
) {
    let files = transcript_files(dir);
    assert!(
        files.len() >= at_least,
        "expected at least {at_least} transcripts, found {}",
        files.len()
    );

    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let script = match load(file) {
            Ok(script) => script,
            Err(error) => {
                failures.push(format!("{name}: {error}"));
                continue;
            }
        };
        for split in [Split::Whole, Split::Bytewise, Split::Random(seed(&name))] {
            if let Err(error) = run(&script, split) {
                failures.push(format!("{name} ({split:?}): {error}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} transcripts failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

// ----- transcript lines -------------------------------------------------------------

/// A line of a transcript with one connection: the text after its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// `# text`: a header or a comment (see [`header_key`]).
    Header(&'a str),
    /// `C: text`: a client line.
    Client(&'a str),
    /// `S: text`: what the server sends.
    Server(&'a str),
}

/// Reads a transcript with one connection and hands each line to `each` with its
/// number, skipping blank lines and a bare `#`. Anything else is an error, and so is
/// every error of `each`, prefixed `line N: `.
pub fn read_script(
    path: &Path,
    mut each: impl FnMut(usize, Line<'_>) -> Result<(), String>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let at = |e: String| format!("line {line_no}: {e}");
        if raw.trim().is_empty() || raw == "#" {
            continue;
        }
        let line = if let Some(header) = raw.strip_prefix("# ") {
            Line::Header(header)
        } else if let Some(client) = strip_tag(raw, "C:") {
            Line::Client(client)
        } else if let Some(server) = strip_tag(raw, "S:") {
            Line::Server(server)
        } else {
            return Err(at(format!("not a header, C: or S: line: {raw:?}")));
        };
        each(line_no, line).map_err(at)?;
    }
    Ok(())
}

/// The header key of a `# ` line (`header` is the text after `# `) and its trimmed value:
/// `Ok(None)` for a comment, an error for a first word ending in `:` that is no key (to
/// catch typos).
pub fn header_key<'a>(
    header: &'a str,
    keys: &[&'static str],
) -> Result<Option<(&'static str, &'a str)>, String> {
    let found = keys.iter().find_map(|key| {
        header
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|value| (*key, value.trim()))
    });
    if found.is_none() {
        let first = header.split_whitespace().next().unwrap_or("");
        if first.ends_with(':') {
            return Err(format!("unknown header key {first:?}"));
        }
    }
    Ok(found)
}

/// The text after `C:` or `S:`: one space, then the line exactly; a bare tag is empty.
fn strip_tag<'a>(raw: &'a str, tag: &str) -> Option<&'a str> {
    let rest = raw.strip_prefix(tag)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix(' ')
    }
}

pub fn yes_no(value: &str) -> Result<bool, String> {
    match value {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => Err(format!("yes or no expected, got {other:?}")),
    }
}

pub fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("number expected, got {value:?}"))
}

// ----- server output ----------------------------------------------------------------

/// One thing the server does, as seen by the client.
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    Line(Vec<u8>),
    StartTls,
    Closed,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Line(bytes) => write!(f, "S: {}", String::from_utf8_lossy(bytes)),
            Event::StartTls => f.write_str("S: <starttls>"),
            Event::Closed => f.write_str("S: <closed>"),
        }
    }
}

/// What a transcript's `S:` line accepts.
#[derive(Clone)]
pub enum Expected {
    Exactly(Event),
    /// A line starting with these bytes (the line ended in `*`).
    Prefix(Vec<u8>),
}

impl Expected {
    /// An `S:` line's text: `<starttls>`, `<closed>`, a line ending in `*` (any rest), or
    /// a line exactly.
    pub fn parse(server: &str) -> Expected {
        match server {
            "<starttls>" => Expected::Exactly(Event::StartTls),
            "<closed>" => Expected::Exactly(Event::Closed),
            line => match line.strip_suffix('*') {
                Some(prefix) => Expected::Prefix(prefix.as_bytes().to_vec()),
                None => Expected::Exactly(Event::Line(line.as_bytes().to_vec())),
            },
        }
    }

    pub fn matches(&self, event: &Event) -> bool {
        match (self, event) {
            (Expected::Exactly(expected), got) => expected == got,
            (Expected::Prefix(prefix), Event::Line(line)) => line.starts_with(prefix),
            (Expected::Prefix(_), _) => false,
        }
    }
}

impl std::fmt::Debug for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Exactly(event) => event.fmt(f),
            Expected::Prefix(prefix) => write!(f, "S: {}*", String::from_utf8_lossy(prefix)),
        }
    }
}

/// Server output split into events.
#[derive(Default)]
pub struct Output {
    events: VecDeque<Event>,
    /// Written bytes not yet ended by CRLF.
    partial: Vec<u8>,
}

impl Output {
    /// Bytes the server wrote.
    pub fn write(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(at) = self.partial[start..].windows(2).position(|w| w == b"\r\n") {
            let end = start + at;
            self.events
                .push_back(Event::Line(self.partial[start..end].to_vec()));
            start = end + 2;
        }
        self.partial.drain(..start);
    }

    /// A StartTls or Closed action, which must come between lines.
    pub fn marker(&mut self, event: Event) -> Result<(), String> {
        if !self.partial.is_empty() {
            return Err(format!(
                "{event:?} in the middle of a line{}",
                partial_note(&self.partial)
            ));
        }
        self.events.push_back(event);
        Ok(())
    }

    /// Takes the next event, which must be what the `S:` line on `line_no` expects.
    pub fn expect(&mut self, line_no: usize, expected: &Expected) -> Result<(), String> {
        match self.events.pop_front() {
            Some(got) if expected.matches(&got) => Ok(()),
            Some(got) => Err(format!(
                "line {line_no}: expected\n    {expected:?}\n  got\n    {got:?}{}",
                self.rest()
            )),
            None => Err(format!(
                "line {line_no}: expected\n    {expected:?}\n  but the server sent nothing more{}",
                partial_note(&self.partial)
            )),
        }
    }

    /// At the end of a transcript: everything the server sent must have been expected.
    pub fn finish(&mut self) -> Result<(), String> {
        if let Some(got) = self.events.pop_front() {
            return Err(format!(
                "unexpected server output at the end:\n    {got:?}{}",
                self.rest()
            ));
        }
        if !self.partial.is_empty() {
            return Err(format!(
                "server output ends without CRLF{}",
                partial_note(&self.partial)
            ));
        }
        Ok(())
    }

    /// What follows, for failure messages.
    fn rest(&self) -> String {
        let mut text = String::new();
        if !self.events.is_empty() {
            text.push_str("\n  then:");
            for event in self.events.iter().take(8) {
                let _ = write!(text, "\n    {event:?}");
            }
        }
        text
    }
}

fn partial_note(partial: &[u8]) -> String {
    if partial.is_empty() {
        String::new()
    } else {
        format!(" (unterminated: {:?})", String::from_utf8_lossy(partial))
    }
}

// ----- client writes ----------------------------------------------------------------

/// How a client write reaches the session.
#[derive(Clone, Copy, Debug)]
pub enum Split {
    Whole,
    Bytewise,
    /// Pseudo-random pieces from this seed.
    Random(u64),
}

/// FNV-1a of the name, made odd (xorshift must not start from zero).
fn seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Sorted cut points inside a write of `len` bytes.
    fn cuts(&mut self, len: usize) -> Vec<usize> {
        if len < 2 {
            return Vec::new();
        }
        let count = (self.next() % 8) as usize;
        let mut cuts: Vec<usize> = (0..count)
            .map(|_| 1 + (self.next() % (len as u64 - 1)) as usize)
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        cuts
    }
}

/// Cuts one run's client writes as its [`Split`] says; random pieces continue one
/// sequence across the writes of a run.
pub struct Splitter {
    split: Split,
    rng: Rng,
}

impl Splitter {
    pub fn new(split: Split) -> Splitter {
        let rng = Rng(match split {
            Split::Random(seed) => seed,
            _ => 1,
        });
        Splitter { split, rng }
    }

    /// Hands `bytes` to `deliver` piece by piece (at least one piece, perhaps empty),
    /// stopping at the first error.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut deliver: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let cuts = match self.split {
            Split::Whole => Vec::new(),
            Split::Bytewise => (1..bytes.len()).collect(),
            Split::Random(_) => self.rng.cuts(bytes.len()),
        };
        let mut last = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            deliver(&bytes[last..cut])?;
            last = cut;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(splitter: &mut Splitter, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut pieces = Vec::new();
        splitter
            .feed(bytes, |piece| {
                pieces.push(piece.to_vec());
                Ok(())
            })
            .expect("no error");
        pieces
    }

    #[test]
    fn splits_cover_the_write_in_order() {
        let bytes = b"a1 LOGIN alice secret\r\n";
        for split in [Split::Whole, Split::Bytewise, Split::Random(seed("x.txt"))] {
            let mut splitter = Splitter::new(split);
            for _ in 0..20 {
                let got = pieces(&mut splitter, bytes);
                assert_eq!(got.concat(), bytes, "{split:?}");
                assert!(got.iter().all(|piece| !piece.is_empty()), "{split:?}");
            }
        }
        assert_eq!(pieces(&mut Splitter::new(Split::Whole), bytes).len(), 1);
        assert_eq!(
            pieces(&mut Splitter::new(Split::Bytewise), bytes).len(),
            bytes.len()
        );
        assert_eq!(pieces(&mut Splitter::new(Split::Bytewise), b""), [b""]);
    }

    #[test]
    fn output_matches_lines_markers_and_wildcards() {
        let mut out = Output::default();
        out.write(b"+OK ready\r\n+OK cap");
        out.write(b"a list\r\n");
        out.marker(Event::Closed).expect("between lines");
        out.expect(1, &Expected::parse("+OK *")).expect("prefix");
        assert!(out.expect(2, &Expected::parse("+OK capa")).is_err());
        out.expect(3, &Expected::parse("<closed>")).expect("closed");
        out.finish().expect("nothing left");
        out.write(b"-ERR");
        assert!(out.marker(Event::StartTls).is_err());
        assert!(out.finish().is_err());
    }

    #[test]
    fn script_lines_and_their_errors() {
        let path = std::env::temp_dir().join(format!("testkit-{}.txt", std::process::id()));
        std::fs::write(&path, "# a comment\n#\n\nC: a\nC:\nS: +OK *\nS:\nX: no\n").expect("write");
        let mut seen = Vec::new();
        let result = read_script(&path, |line_no, line| {
            seen.push((line_no, format!("{line:?}")));
            if line == Line::Server("") {
                Err("stop".into())
            } else {
                Ok(())
            }
        });
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(result, Err("line 7: stop".to_string()));
        assert_eq!(
            seen,
            [
                (1, "Header(\"a comment\")".to_string()),
                (4, "Client(\"a\")".to_string()),
                (5, "Client(\"\")".to_string()),
                (6, "Server(\"+OK *\")".to_string()),
                (7, "Server(\"\")".to_string()),
            ]
        );
        let path = std::env::temp_dir().join(format!("testkit-{}-bad.txt", std::process::id()));
        std::fs::write(&path, "C:a\n").expect("write");
        let result = read_script(&path, |_, _| Ok(()));
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(
            result,
            Err("line 1: not a header, C: or S: line: \"C:a\"".to_string())
        );
    }

    #[test]
    fn header_keys_comments_and_typos() {
        let keys = ["tls", "expect deleted"];
        assert_eq!(header_key("tls: yes ", &keys), Ok(Some(("tls", "yes"))));
        assert_eq!(
            header_key("expect deleted: 1 2", &keys),
            Ok(Some(("expect deleted", "1 2")))
        );
        assert_eq!(header_key("what this shows", &keys), Ok(None));
        assert!(header_key("tsl: yes", &keys).is_err());
    }
}
