//! Command framing: cuts the client's byte stream into whole commands (RFC 9051 §2.2,
//! literals §4.3, LITERAL+/LITERAL- RFC 7888, literal8 RFC 3516/6855), without
//! understanding them.
//!
//! A command is one line, or several when lines end in a literal announcement `{n}`,
//! `{n+}`, `~{n}` or `~{n+}` followed by n raw bytes. The reader hands the whole command,
//! bytes exactly as received, to [`crate::parser::parse_command`]. A synchronizing
//! literal (`{n}`) stops the reader until the session says whether it sent `+` or
//! refused ([`CommandReader::continuation_answered`]); that is a reader state, never a
//! socket read inside a command handler.
//!
//! Memory is bounded by [`ReaderLimits`]: an over-long line, literal or command is
//! reported once ([`ReadEvent::TooBig`]) and then skipped as it arrives, so the reader
//! never holds more than one line of it. Only the input the caller has pushed but not
//! yet drained through [`CommandReader::next_event`] is unbounded; that is the caller's
//! to limit (by reading the socket only when the reader is drained).
//!
//! Events depend only on the bytes, never on how they were split into `push` calls.
//!
//! ```text
//! Line ──line ends, no literal──► emit Command ──► Line (next command)
//! Line ──line ends in {n}──► emit NeedContinuation ──► AwaitAnswer
//! AwaitAnswer ──accepted──► Literal      AwaitAnswer ──refused──► drop command ──► Line
//! Line ──line ends in {n+}──► Literal ──n bytes copied──► Line (same command)
//! Line ──line over a limit──► emit TooBig ──► DiscardLine
//! Line ──announced literal over a limit──► emit TooBig ──► DiscardLiteral ({n+}) or Line ({n})
//! DiscardLine ──ends in {n+}──► DiscardLiteral ──n bytes skipped──► DiscardLine
//! DiscardLine ──ends otherwise──► Line
//! ```

use std::mem;

/// How much of one command the reader holds at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderLimits {
    /// Bytes of one line, not counting its LF (the CR counts), and, in a command with
    /// literals, of each piece between them.
    pub max_line: usize,
    /// Bytes of one literal (for APPEND: the APPENDLIMIT).
    pub max_literal: usize,
    /// Bytes of a whole command: its lines, line ends and literals.
    pub max_command: usize,
    /// Bytes of one non-synchronizing literal `{n+}`: 4096 under LITERAL- (RFC 7888
    /// §4), unbounded (beyond `max_literal`) under LITERAL+.
    pub max_non_sync_literal: u64,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            max_line: 64 * 1024,
            max_literal: 64 * 1024 * 1024,
            max_command: 64 * 1024 * 1024 + 64 * 1024,
            max_non_sync_literal: u64::MAX,
        }
    }
}

/// Which limit a [`ReadEvent::TooBig`] broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TooBigWhat {
    Line,
    Literal,
    Command,
    /// A non-synchronizing literal over [`ReaderLimits::max_non_sync_literal`].
    NonSyncLiteral,
}

/// What the reader found in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadEvent {
    /// A complete command: all its lines and literal bytes, exactly as received (CRLFs
    /// included). An empty line is a command too (`b"\r\n"`); the parser rejects it.
    Command(Vec<u8>),
    /// The command's current line ends in a synchronizing literal `{n}`: the session
    /// must answer `+ …` (or refuse) and then call
    /// [`CommandReader::continuation_answered`]; until then no event comes.
    NeedContinuation { literal_len: u64 },
    /// A raw line (line mode only), without its CRLF or LF.
    Line(Vec<u8>),
    /// A limit was exceeded. `tag` if it could be read. The reader discards the offending
    /// input by itself: for a non-synchronizing literal `{n+}` it skips exactly n bytes
    /// as they arrive, then the rest of that command's line(s); for a synchronizing one
    /// it expects nothing, since the client waits for a `+` that never comes. What
    /// follows is read normally.
    TooBig {
        tag: Option<String>,
        what: TooBigWhat,
    },
}

/// How many trailing bytes of a line are examined for a literal announcement. Applied
/// the same to lines kept and lines discarded, so both see the same announcements;
/// a `{` followed by more than ~28 digits is not recognised, and the parser rejects it.
const MARKER_WINDOW: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Reading a line of the current command; earlier lines and literals are in `cmd`.
    Line,
    /// A `{n}` was announced; waiting for [`CommandReader::continuation_answered`].
    AwaitAnswer { len: u64 },
    /// Copying literal bytes into `cmd`.
    Literal { remaining: u64 },
    /// Dropping the rest of a line of a rejected command. `tail` keeps its last bytes to
    /// see whether it announces a literal that must be skipped too.
    DiscardLine { tail: Vec<u8> },
    /// Skipping a non-synchronizing literal of a rejected command.
    DiscardLiteral { remaining: u64 },
}

/// A literal announcement at the end of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Marker {
    /// Announced size; `u64::MAX` if the digits overflow.
    len: u64,
    /// `{n}` (true) or `{n+}` (false).
    sync: bool,
}

/// Finds `{n}` / `{n+}` (with or without `~`) at the end of `line` (its content, without
/// the LF; a final CR is allowed). Only the last [`MARKER_WINDOW`] bytes are examined.
fn literal_marker(line: &[u8]) -> Option<Marker> {
    let line = &line[line.len().saturating_sub(MARKER_WINDOW)..];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let (line, sync) = match line.strip_suffix(b"+") {
        Some(rest) => (rest, false),
        None => (line, true),
    };
    let ndigits = line.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if ndigits == 0 {
        return None;
    }
    let (head, digits) = line.split_at(line.len() - ndigits);
    if head.last() != Some(&b'{') {
        return None;
    }
    let len = digits
        .iter()
        .try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .unwrap_or(u64::MAX);
    Some(Marker { len, sync })
}

/// Keeps the last [`MARKER_WINDOW`] bytes of a line being discarded.
fn push_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[bytes.len().saturating_sub(MARKER_WINDOW)..];
    tail.extend_from_slice(bytes);
    if tail.len() > MARKER_WINDOW {
        tail.drain(..tail.len() - MARKER_WINDOW);
    }
}

/// The tag at the start of `bytes`, if it is followed by a space and valid.
fn tag_of(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == b' ')?;
    let tag = &bytes[..end];
    if tag.is_empty() || !tag.iter().all(|&b| crate::parser::is_tag_char(b)) {
        return None;
    }
    // Tag chars are ASCII.
    Some(tag.iter().map(|&b| char::from(b)).collect())
}

enum Step {
    Event(ReadEvent),
    Continue,
    NeedMore,
}

/// Sans-IO command framer. Feed it with [`push`](Self::push), drain it with
/// [`next_event`](Self::next_event) until `None`.
#[derive(Debug)]
pub struct CommandReader {
    limits: ReaderLimits,
    /// Received bytes; those before `pos` are consumed.
    buf: Vec<u8>,
    pos: usize,
    /// How many bytes from `pos` are known to hold no LF (in state `Line`), so a line
    /// arriving byte by byte is scanned once, not once per byte.
    scanned: usize,
    /// The command being assembled.
    cmd: Vec<u8>,
    state: State,
    line_mode: bool,
}

impl CommandReader {
    pub fn new(limits: ReaderLimits) -> Self {
        CommandReader {
            limits,
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            cmd: Vec::new(),
            state: State::Line,
            line_mode: false,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        // Drop the consumed prefix once it is at least half the buffer, so each byte is
        // moved a bounded number of times however the input is split.
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next event, or `None` when more input (or the session's answer to
    /// [`ReadEvent::NeedContinuation`]) is needed.
    pub fn next_event(&mut self) -> Option<ReadEvent> {
        loop {
            match self.step() {
                Step::Event(event) => return Some(event),
                Step::Continue => {}
                Step::NeedMore => return None,
            }
        }
    }

    /// The session's answer to [`ReadEvent::NeedContinuation`]: `true` if it sent
    /// `+ Ready` (the literal follows), `false` if it refused with a tagged NO/BAD (the
    /// client sends no literal; the partial command is dropped and the next bytes are a
    /// new command). Ignored when no answer is awaited.
    pub fn continuation_answered(&mut self, accepted: bool) {
        if let State::AwaitAnswer { len } = self.state {
            if accepted {
                self.state = State::Literal { remaining: len };
            } else {
                self.cmd.clear();
                self.state = State::Line;
                self.scanned = 0;
            }
        }
    }

    /// Line mode: every line is a [`ReadEvent::Line`], without literal processing (for
    /// AUTHENTICATE continuation lines and IDLE's `DONE`). Takes effect at the next line;
    /// the session switches right after the command event that needs it.
    pub fn set_line_mode(&mut self, on: bool) {
        self.line_mode = on;
    }

    /// New limits for what is read from now on (the session raises them once the client
    /// has authenticated). A command or literal already under way keeps what it has.
    pub fn set_limits(&mut self, limits: ReaderLimits) {
        self.limits = limits;
    }

    /// Whether the reader is skipping a non-synchronizing literal of a refused command:
    /// right after a [`ReadEvent::TooBig`], it tells a host that will not spend reads on
    /// the client's refused bytes (before authentication) to close instead.
    pub fn skipping_literal(&self) -> bool {
        matches!(self.state, State::DiscardLiteral { .. })
    }

    /// The bytes received and not yet consumed, when no command is part-read (right
    /// after a command's event): what a proxy hands to the node that takes the session
    /// over.
    pub fn unread(&self) -> Option<&[u8]> {
        (matches!(self.state, State::Line) && self.cmd.is_empty()).then(|| &self.buf[self.pos..])
    }

    /// Takes the bytes received and not yet consumed, when no command is part-read (as
    /// [`Self::unread`]; `None` otherwise, and nothing is taken): after COMPRESS they are
    /// the start of a compressed stream (RFC 4978 §3), for the host to inflate.
    pub fn take_unread(&mut self) -> Option<Vec<u8>> {
        let unread = self.unread()?.to_vec();
        self.buf.clear();
        self.pos = 0;
        self.scanned = 0;
        Some(unread)
    }

    /// Bytes held: received but not yet consumed, plus the command being assembled.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos + self.cmd.len()
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn step(&mut self) -> Step {
        match mem::replace(&mut self.state, State::Line) {
            State::Line => self.step_line(),
            State::AwaitAnswer { len } => {
                self.state = State::AwaitAnswer { len };
                Step::NeedMore
            }
            State::Literal { remaining } => {
                let take = take_len(remaining, self.available().len());
                self.cmd
                    .extend_from_slice(&self.buf[self.pos..self.pos + take]);
                self.pos += take;
                let remaining = remaining - take as u64;
                if remaining > 0 {
                    self.state = State::Literal { remaining };
                    return Step::NeedMore;
                }
                self.scanned = 0;
                Step::Continue
            }
            State::DiscardLiteral { remaining } => {
                let take = take_len(remaining, self.available().len());
                self.pos += take;
                let remaining = remaining - take as u64;
                if remaining > 0 {
                    self.state = State::DiscardLiteral { remaining };
                    return Step::NeedMore;
                }
                self.state = State::DiscardLine { tail: Vec::new() };
                Step::Continue
            }
            State::DiscardLine { mut tail } => {
                let avail = self.available();
                match avail.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        push_tail(&mut tail, &avail[..i]);
                        self.pos += i + 1;
                        self.after_discarded_line(&tail);
                        Step::Continue
                    }
                    None => {
                        push_tail(&mut tail, avail);
                        self.pos = self.buf.len();
                        self.state = State::DiscardLine { tail };
                        Step::NeedMore
                    }
                }
            }
        }
    }

    /// State `Line`: look for the end of the current line within the limits.
    fn step_line(&mut self) -> Step {
        let avail = self.available().len();
        let line_fire = self.limits.max_line.saturating_add(1);
        let window = avail.min(line_fire);
        let from = self.scanned.min(window);
        let lf = self.buf[self.pos + from..self.pos + window]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| i + from);
        // Bytes (LF included) the current line may still add to the command.
        let room = if self.line_mode {
            usize::MAX
        } else {
            self.limits.max_command.saturating_sub(self.cmd.len())
        };
        let Some(i) = lf else {
            self.scanned = window;
            let cmd_fire = room.saturating_add(1);
            let fire = line_fire.min(cmd_fire);
            if avail < fire {
                return Step::NeedMore;
            }
            // The line breaks a limit before its end: report it, drop what we have and
            // the rest of the line as it comes.
            let what = if line_fire <= cmd_fire {
                TooBigWhat::Line
            } else {
                TooBigWhat::Command
            };
            let tag = self.tag_for(fire);
            let mut tail = Vec::new();
            push_tail(&mut tail, &self.buf[self.pos..self.pos + fire]);
            self.pos += fire;
            self.scanned = 0;
            self.cmd.clear();
            self.state = State::DiscardLine { tail };
            return Step::Event(ReadEvent::TooBig { tag, what });
        };
        self.scanned = 0;
        let line_start = self.pos;
        self.pos += i + 1;
        let content = &self.buf[line_start..line_start + i];

        if self.line_mode {
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            return Step::Event(ReadEvent::Line(content.to_vec()));
        }
        let marker = literal_marker(content);
        if i + 1 > room {
            // Same tag as if the limit had been noticed on the byte that broke it.
            let tag = match self.cmd.is_empty() {
                true => tag_of(&self.buf[line_start..line_start + room.saturating_add(1)]),
                false => tag_of(&self.cmd),
            };
            self.cmd.clear();
            self.after_marker(marker);
            return Step::Event(ReadEvent::TooBig {
                tag,
                what: TooBigWhat::Command,
            });
        }
        self.cmd.extend_from_slice(&self.buf[line_start..self.pos]);
        let Some(marker) = marker else {
            return Step::Event(ReadEvent::Command(mem::take(&mut self.cmd)));
        };
        let room = self.limits.max_command.saturating_sub(self.cmd.len()) as u64;
        let what = if marker.len > self.limits.max_literal as u64 {
            TooBigWhat::Literal
        } else if !marker.sync && marker.len > self.limits.max_non_sync_literal {
            TooBigWhat::NonSyncLiteral
        } else if marker.len > room {
            TooBigWhat::Command
        } else if marker.sync {
            self.state = State::AwaitAnswer { len: marker.len };
            return Step::Event(ReadEvent::NeedContinuation {
                literal_len: marker.len,
            });
        } else {
            self.state = State::Literal {
                remaining: marker.len,
            };
            return Step::Continue;
        };
        let tag = tag_of(&self.cmd);
        self.cmd.clear();
        self.after_marker(Some(marker));
        Step::Event(ReadEvent::TooBig { tag, what })
    }

    /// The tag of the command whose current line broke a limit at byte `fire` of the
    /// line: from the first line if it is complete, else from the same `fire` bytes
    /// whatever else has arrived, so the answer does not depend on the input's splits.
    fn tag_for(&self, fire: usize) -> Option<String> {
        if self.line_mode {
            None
        } else if self.cmd.is_empty() {
            tag_of(&self.buf[self.pos..self.pos + fire])
        } else {
            tag_of(&self.cmd)
        }
    }

    /// A discarded line has ended: if it announced a non-synchronizing literal, skip
    /// that too; after a synchronizing one the client waits for a `+` that never comes.
    fn after_discarded_line(&mut self, tail: &[u8]) {
        if self.line_mode {
            self.state = State::Line;
            self.scanned = 0;
        } else {
            self.after_marker(literal_marker(tail));
        }
    }

    fn after_marker(&mut self, marker: Option<Marker>) {
        self.state = match marker {
            Some(Marker { len, sync: false }) => State::DiscardLiteral { remaining: len },
            _ => State::Line,
        };
        self.scanned = 0;
    }
}

/// `min(remaining, available)` as a usize.
fn take_len(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(max_line: usize, max_literal: usize, max_command: usize) -> ReaderLimits {
        ReaderLimits {
            max_line,
            max_literal,
            max_command,
            max_non_sync_literal: u64::MAX,
        }
    }

    /// LITERAL- (RFC 7888 §4): a non-synchronizing literal over the limit is refused and
    /// skipped exactly, the next command read as usual; synchronizing ones are not
    /// limited by it.
    #[test]
    fn literal_minus_refuses_and_skips_a_large_non_synchronizing_literal() {
        let limits = ReaderLimits {
            max_non_sync_literal: 4,
            ..limits(100, 100, 200)
        };
        let events = run(
            limits,
            &[b"a1 LOGIN {5+}\r\nabcde x\r\na2 LOGIN {4+}\r\nabcd y\r\na3 LOGIN {5}\r\n"],
        );
        assert_eq!(
            events,
            vec![
                too_big(Some("a1"), TooBigWhat::NonSyncLiteral),
                cmd(b"a2 LOGIN {4+}\r\nabcd y\r\n"),
                ReadEvent::NeedContinuation { literal_len: 5 },
            ]
        );
    }

    /// Feeds `chunks` one by one, draining events after each and accepting every
    /// continuation request.
    fn run(limits: ReaderLimits, chunks: &[&[u8]]) -> Vec<ReadEvent> {
        let mut reader = CommandReader::new(limits);
        let mut events = Vec::new();
        for chunk in chunks {
            reader.push(chunk);
            while let Some(event) = reader.next_event() {
                if let ReadEvent::NeedContinuation { .. } = event {
                    reader.continuation_answered(true);
                }
                events.push(event);
            }
        }
        events
    }

    fn cmd(bytes: &[u8]) -> ReadEvent {
        ReadEvent::Command(bytes.to_vec())
    }

    fn too_big(tag: Option<&str>, what: TooBigWhat) -> ReadEvent {
        ReadEvent::TooBig {
            tag: tag.map(str::to_string),
            what,
        }
    }

    #[test]
    fn marker_detection() {
        assert_eq!(
            literal_marker(b"a LOGIN {5}\r"),
            Some(Marker { len: 5, sync: true })
        );
        assert_eq!(
            literal_marker(b"a LOGIN {5+}"),
            Some(Marker {
                len: 5,
                sync: false
            })
        );
        assert_eq!(
            literal_marker(b"a APPEND x UTF8 (~{0}"),
            Some(Marker { len: 0, sync: true })
        );
        assert_eq!(literal_marker(b"a LOGIN {}"), None);
        assert_eq!(literal_marker(b"a LOGIN 5}"), None);
        assert_eq!(literal_marker(b"a LOGIN {+5}"), None);
        assert_eq!(literal_marker(b"a NOOP"), None);
        assert_eq!(
            literal_marker(b"{99999999999999999999999}"),
            Some(Marker {
                len: u64::MAX,
                sync: true
            })
        );
    }

    #[test]
    fn simple_commands_and_bare_lf() {
        let events = run(
            ReaderLimits::default(),
            &[b"a1 NOOP\r\na2 CAPABILITY\nqq", b"\r\n"],
        );
        assert_eq!(
            events,
            vec![cmd(b"a1 NOOP\r\n"), cmd(b"a2 CAPABILITY\n"), cmd(b"qq\r\n")]
        );
    }

    #[test]
    fn synchronizing_literal() {
        let mut reader = CommandReader::new(ReaderLimits::default());
        reader.push(b"a1 LOGIN {5}\r\n");
        assert_eq!(
            reader.next_event(),
            Some(ReadEvent::NeedContinuation { literal_len: 5 })
        );
        assert_eq!(reader.next_event(), None);
        reader.push(b"alice {6}\r\n");
        // Still waiting for the answer: the bytes wait.
        assert_eq!(reader.next_event(), None);
        reader.continuation_answered(true);
        assert_eq!(
            reader.next_event(),
            Some(ReadEvent::NeedContinuation { literal_len: 6 })
        );
        reader.continuation_answered(true);
        assert_eq!(reader.next_event(), None);
        reader.push(b"secret\r\n");
        assert_eq!(
            reader.next_event(),
            Some(cmd(b"a1 LOGIN {5}\r\nalice {6}\r\nsecret\r\n"))
        );
        assert_eq!(reader.next_event(), None);
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn refused_continuation_drops_command() {
        let mut reader = CommandReader::new(ReaderLimits::default());
        reader.push(b"a1 APPEND INBOX {500}\r\n");
        assert_eq!(
            reader.next_event(),
            Some(ReadEvent::NeedContinuation { literal_len: 500 })
        );
        reader.continuation_answered(false);
        reader.push(b"a2 NOOP\r\n");
        assert_eq!(reader.next_event(), Some(cmd(b"a2 NOOP\r\n")));
    }

    #[test]
    fn non_synchronizing_and_zero_literals() {
        let events = run(
            ReaderLimits::default(),
            &[b"a1 LOGIN {5+}\r\nalice {0+}\r\n\r\na2 SELECT {0}\r\n\r\n"],
        );
        assert_eq!(
            events,
            vec![
                cmd(b"a1 LOGIN {5+}\r\nalice {0+}\r\n\r\n"),
                ReadEvent::NeedContinuation { literal_len: 0 },
                cmd(b"a2 SELECT {0}\r\n\r\n"),
            ]
        );
    }

    #[test]
    fn literal_bytes_are_opaque() {
        // CRLFs and braces inside a literal are data.
        let events = run(
            ReaderLimits::default(),
            &[b"a APPEND x ~{12+}\r\nab\r\n{3}\r\n\0\xff\nZ\r\n"],
        );
        assert_eq!(
            events,
            vec![cmd(b"a APPEND x ~{12+}\r\nab\r\n{3}\r\n\0\xff\nZ\r\n")]
        );
    }

    #[test]
    fn line_too_long() {
        let lim = limits(10, 100, 1000);
        let events = run(lim, &[b"a1 SELECT 0123456789\r\na2 NOOP\r\n"]);
        assert_eq!(
            events,
            vec![too_big(Some("a1"), TooBigWhat::Line), cmd(b"a2 NOOP\r\n")]
        );
        // Exactly max_line bytes (CR included) is fine.
        let events = run(lim, &[b"a1 NOOP12\r\n"]);
        assert_eq!(events, vec![cmd(b"a1 NOOP12\r\n")]);
        // No tag readable.
        let events = run(lim, &[b"aaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nb NOOP\r\n"]);
        assert_eq!(
            events,
            vec![too_big(None, TooBigWhat::Line), cmd(b"b NOOP\r\n")]
        );
    }

    #[test]
    fn too_long_line_announcing_literal_skips_it() {
        let lim = limits(10, 100, 1000);
        let events = run(
            lim,
            &[b"a1 LOGIN aaaaaaaaaaaaaaaaaa {4+}\r\nx\r\ny more {2+}\r\nzz\r\na2 NOOP\r\n"],
        );
        assert_eq!(
            events,
            vec![too_big(Some("a1"), TooBigWhat::Line), cmd(b"a2 NOOP\r\n")]
        );
        // A synchronizing one is not sent by the client: what follows is a new command.
        let events = run(lim, &[b"a1 LOGIN aaaaaaaaaaaaaaa {4}\r\na2 NOOP\r\n"]);
        assert_eq!(
            events,
            vec![too_big(Some("a1"), TooBigWhat::Line), cmd(b"a2 NOOP\r\n")]
        );
    }

    #[test]
    fn literal_too_big() {
        let lim = limits(100, 10, 1000);
        // Synchronizing: refused at once, the client sends nothing.
        let events = run(lim, &[b"a1 APPEND INBOX {11}\r\na2 NOOP\r\n"]);
        assert_eq!(
            events,
            vec![
                too_big(Some("a1"), TooBigWhat::Literal),
                cmd(b"a2 NOOP\r\n")
            ]
        );
        // Non-synchronizing: exactly 11 bytes skipped, then the rest of the command.
        let events = run(
            lim,
            &[
                b"a1 APPEND INBOX {11+}\r\nhello\r\nworld",
                b" (x) {3+}\r\nabc\r\na2 NOOP\r\n",
            ],
        );
        assert_eq!(
            events,
            vec![
                too_big(Some("a1"), TooBigWhat::Literal),
                cmd(b"a2 NOOP\r\n")
            ]
        );
        let events = run(lim, &[b"a1 LOGIN {99999999999999999999999+}\r\n"]);
        assert_eq!(events, vec![too_big(Some("a1"), TooBigWhat::Literal)]);
    }

    #[test]
    fn skipping_literal_and_raised_limits() {
        let mut reader = CommandReader::new(limits(100, 10, 1000));
        reader.push(b"a1 LOGIN {11+}\r\n");
        assert_eq!(
            reader.next_event(),
            Some(too_big(Some("a1"), TooBigWhat::Literal))
        );
        assert!(reader.skipping_literal());
        let mut reader = CommandReader::new(limits(100, 10, 1000));
        reader.push(b"a1 LOGIN {11}\r\n");
        assert_eq!(
            reader.next_event(),
            Some(too_big(Some("a1"), TooBigWhat::Literal))
        );
        assert!(!reader.skipping_literal());
        // Raised limits apply to the next announcement.
        reader.set_limits(limits(100, 100, 1000));
        reader.push(b"a2 APPEND x {11}\r\n");
        assert_eq!(
            reader.next_event(),
            Some(ReadEvent::NeedContinuation { literal_len: 11 })
        );
    }

    #[test]
    fn command_too_big() {
        let lim = limits(100, 100, 30);
        let events = run(
            lim,
            &[b"a1 LOGIN {10+}\r\n0123456789 {10+}\r\n0123456789\r\na2 NOOP\r\n"],
        );
        assert_eq!(
            events,
            vec![
                too_big(Some("a1"), TooBigWhat::Command),
                cmd(b"a2 NOOP\r\n")
            ]
        );
        // A long line breaking the command limit before the line limit.
        let lim = limits(100, 100, 20);
        let events = run(lim, &[b"a1 SELECT 0123456789012345678\r\na2 NOOP\r\n"]);
        assert_eq!(
            events,
            vec![
                too_big(Some("a1"), TooBigWhat::Command),
                cmd(b"a2 NOOP\r\n")
            ]
        );
    }

    #[test]
    fn line_mode() {
        let mut reader = CommandReader::new(limits(24, 100, 1000));
        reader.push(b"a1 AUTHENTICATE PLAIN\r\ndGVzdA==\r\n{5}\r\n0123456789012345678901234\nDONE\na2 NOOP\r\n");
        assert_eq!(reader.next_event(), Some(cmd(b"a1 AUTHENTICATE PLAIN\r\n")));
        reader.set_line_mode(true);
        assert_eq!(
            reader.next_event(),
            Some(ReadEvent::Line(b"dGVzdA==".to_vec()))
        );
        assert_eq!(reader.next_event(), Some(ReadEvent::Line(b"{5}".to_vec())));
        assert_eq!(reader.next_event(), Some(too_big(None, TooBigWhat::Line)));
        assert_eq!(reader.next_event(), Some(ReadEvent::Line(b"DONE".to_vec())));
        reader.set_line_mode(false);
        assert_eq!(reader.next_event(), Some(cmd(b"a2 NOOP\r\n")));
        assert_eq!(reader.next_event(), None);
    }

    /// A stream exercising every path, with small limits.
    const STREAM: &[u8] = b"a1 NOOP\r\n\
        a2 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n\
        a3 APPEND INBOX (\\Seen) ~{12+}\r\nab\r\n{3}\r\n\0\xff\nZ\r\n\
        a4 SELECT this-line-is-far-too-long-for-the-limit {3+}\r\nabc\r\n\
        a5 APPEND INBOX {70+}\r\n0123456789012345678901234567890123456789012345678901234567890123456789 x\r\n\
        a6 APPEND INBOX {70}\r\n\
        \n\
        a7 LOGIN {30+}\r\n012345678901234567890123456789 {30+}\r\n012345678901234567890123456789\r\n\
        a8 CHECK\n";

    fn stream_limits() -> ReaderLimits {
        limits(40, 64, 80)
    }

    #[test]
    fn stream_events() {
        let events = run(stream_limits(), &[STREAM]);
        assert_eq!(
            events,
            vec![
                cmd(b"a1 NOOP\r\n"),
                ReadEvent::NeedContinuation { literal_len: 5 },
                cmd(b"a2 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n"),
                cmd(b"a3 APPEND INBOX (\\Seen) ~{12+}\r\nab\r\n{3}\r\n\0\xff\nZ\r\n"),
                too_big(Some("a4"), TooBigWhat::Line),
                too_big(Some("a5"), TooBigWhat::Literal),
                too_big(Some("a6"), TooBigWhat::Literal),
                cmd(b"\n"),
                too_big(Some("a7"), TooBigWhat::Command),
                cmd(b"a8 CHECK\n"),
            ]
        );
    }

    #[test]
    fn every_split_point_gives_same_events() {
        let whole = run(stream_limits(), &[STREAM]);
        for at in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(at);
            assert_eq!(run(stream_limits(), &[a, b]), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(run(stream_limits(), &bytes), whole);
    }

    proptest! {
        #[test]
        fn random_splits_give_same_events(
            cuts in proptest::collection::vec(0..STREAM.len(), 0..12),
            max_line in 1usize..60,
            max_literal in 0usize..80,
            max_command in 1usize..120,
        ) {
            let lim = limits(max_line, max_literal, max_command);
            let whole = run(lim, &[STREAM]);
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for cut in cuts {
                chunks.push(&STREAM[last..cut]);
                last = cut;
            }
            chunks.push(&STREAM[last..]);
            prop_assert_eq!(run(lim, &chunks), whole);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_split_invariant(
            data in proptest::collection::vec(
                prop_oneof![
                    Just(b'\n'), Just(b'\r'), Just(b'{'), Just(b'}'), Just(b'+'),
                    Just(b' '), Just(b'~'), b'0'..=b'9', any::<u8>()
                ],
                0..200,
            ),
            cut in 0usize..200,
            max_line in 0usize..30,
            max_literal in 0usize..30,
            max_command in 0usize..60,
        ) {
            let lim = limits(max_line, max_literal, max_command);
            let whole = run(lim, &[&data]);
            let cut = cut.min(data.len());
            let (a, b) = data.split_at(cut);
            prop_assert_eq!(run(lim, &[a, b]), whole.clone());
            let bytes: Vec<&[u8]> = data.chunks(1).collect();
            prop_assert_eq!(run(lim, &bytes), whole.clone());
            // Nothing kept exceeds the limits.
            for event in whole {
                if let ReadEvent::Command(c) = event {
                    prop_assert!(c.len() <= max_command);
                }
            }
        }
    }
}
