//! Splits the client's byte stream into command lines (RFC 1939 §3: CRLF-terminated,
//! bare LF tolerated) with bounded memory.
//!
//! The reader owns two limits. A single line may not exceed the configured length; the
//! overflow is reported once, in stream order, as [`Line::TooLong`] and the rest of that
//! line is thrown away rather than buffered. And lines that pile up while the session waits
//! for its caller (pipelining, RFC 2449 §6.6) may not exceed a total budget; past it the
//! reader drops everything and says so through [`LineReader::overflowed`], so a client that
//! writes without ever reading cannot grow server memory.

use std::collections::VecDeque;

/// One unit of client input, in the order the client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A complete line without its CRLF (or bare LF).
    Text(Vec<u8>),
    /// A line longer than the limit; its bytes are not kept.
    TooLong,
}

/// Bytes a queued line is charged on top of its length, so that a flood of empty lines
/// is bounded too (each costs a `Vec` header in the queue).
const PER_LINE_OVERHEAD: usize = 32;

/// Smallest budget for queued pipelined input, whatever the line limit; large enough for a
/// client that pipelines a few thousand RETR/DELE commands in one go.
const MIN_QUEUE_BUDGET: usize = 64 * 1024;

pub(crate) struct LineReader {
    /// Longest line accepted, terminator included.
    max_line_len: usize,
    /// Total bytes (plus per-line overhead) that may wait in `ready`.
    queue_budget: usize,
    /// Bytes of the line being received, before its LF.
    partial: Vec<u8>,
    /// The current line already went over the limit; skip to its LF.
    discarding: bool,
    /// Lines received but not yet taken by the session.
    ready: VecDeque<Line>,
    /// What `ready` is charged against `queue_budget`.
    queued_cost: usize,
    /// The budget was exceeded; all later input is dropped.
    overflowed: bool,
}

impl LineReader {
    pub(crate) fn new(max_line_len: usize) -> Self {
        LineReader {
            max_line_len,
            queue_budget: max_line_len.saturating_mul(32).max(MIN_QUEUE_BUDGET),
            partial: Vec::new(),
            discarding: false,
            ready: VecDeque::new(),
            queued_cost: 0,
            overflowed: false,
        }
    }

    /// Consumes `bytes` up to and including the first line end (or all of them when there
    /// is none) and returns how many were consumed. Stopping after each line lets the
    /// session act on a line (STLS above all) before it looks at the bytes behind it.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> usize {
        if self.overflowed {
            return bytes.len();
        }
        match bytes.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                self.extend_partial(&bytes[..lf]);
                self.finish_line();
                lf + 1
            }
            None => {
                self.extend_partial(bytes);
                bytes.len()
            }
        }
    }

    /// The oldest line not yet taken.
    pub(crate) fn next_line(&mut self) -> Option<Line> {
        let line = self.ready.pop_front()?;
        self.queued_cost = self.queued_cost.saturating_sub(cost(&line));
        Some(line)
    }

    /// Whether input was dropped because too much was queued.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Whether nothing was received that was not taken, and nothing dropped.
    pub(crate) fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.partial.is_empty() && !self.discarding && !self.overflowed
    }

    /// What queued lines may cost in all.
    pub(crate) fn queue_budget(&self) -> usize {
        self.queue_budget
    }

    /// What was received and not yet taken, as bytes a reader with the same limit reads
    /// back into the same lines (a proxy hands them to the node that takes the session
    /// over): each line ends in CRLF, or in a bare LF where CRLF would not fit the
    /// limit, so none comes out longer than it came in. `None` once input was dropped
    /// (a line over the limit, or the budget exceeded): no bytes would read back the
    /// same.
    pub(crate) fn pending(&self) -> Option<Vec<u8>> {
        if self.overflowed || self.discarding {
            return None;
        }
        let mut bytes = Vec::new();
        for line in &self.ready {
            let Line::Text(text) = line else {
                return None;
            };
            bytes.extend_from_slice(text);
            // A line that kept a CR came with CRLF, so CRLF fits.
            if text.last() == Some(&b'\r') || text.len() + 2 <= self.max_line_len {
                bytes.extend_from_slice(b"\r\n");
            } else {
                bytes.push(b'\n');
            }
        }
        bytes.extend_from_slice(&self.partial);
        Some(bytes)
    }

    /// Forgets everything received so far, complete lines and partial line alike.
    pub(crate) fn clear(&mut self) {
        self.partial = Vec::new();
        self.discarding = false;
        self.ready.clear();
        self.queued_cost = 0;
        self.overflowed = false;
    }

    fn extend_partial(&mut self, chunk: &[u8]) {
        if self.discarding || chunk.is_empty() {
            return;
        }
        // The line still needs at least its LF, so it is already too long once the bytes
        // so far plus one exceed the limit; deciding now keeps `partial` bounded.
        let needed = self
            .partial
            .len()
            .saturating_add(chunk.len())
            .saturating_add(1);
        if needed > self.max_line_len {
            self.partial = Vec::new();
            self.discarding = true;
            self.enqueue(Line::TooLong);
        } else {
            self.partial.extend_from_slice(chunk);
        }
    }

    fn finish_line(&mut self) {
        if self.discarding {
            self.discarding = false;
            return;
        }
        if self.partial.len() + 1 > self.max_line_len {
            // Only reachable with a limit of zero: even an empty line is too long.
            self.enqueue(Line::TooLong);
            return;
        }
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.enqueue(Line::Text(line));
    }

    fn enqueue(&mut self, line: Line) {
        let line_cost = cost(&line);
        if self.queued_cost.saturating_add(line_cost) > self.queue_budget {
            self.overflowed = true;
            self.partial = Vec::new();
            return;
        }
        self.queued_cost += line_cost;
        self.ready.push_back(line);
    }
}

fn cost(line: &Line) -> usize {
    match line {
        Line::Text(bytes) => bytes.len() + PER_LINE_OVERHEAD,
        Line::TooLong => PER_LINE_OVERHEAD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(reader: &mut LineReader, mut bytes: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let used = reader.push(bytes);
            bytes = &bytes[used..];
            while let Some(line) = reader.next_line() {
                out.push(line);
            }
        }
        out
    }

    fn text(s: &str) -> Line {
        Line::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn crlf_and_bare_lf_both_end_a_line() {
        let mut r = LineReader::new(100);
        let lines = feed_all(&mut r, b"STAT\r\nLIST\nNOOP\r\n");
        assert_eq!(lines, vec![text("STAT"), text("LIST"), text("NOOP")]);
    }

    #[test]
    fn push_stops_after_each_line() {
        let mut r = LineReader::new(100);
        assert_eq!(r.push(b"AB\r\nCD\r\n"), 4);
        assert_eq!(r.next_line(), Some(text("AB")));
        assert_eq!(r.next_line(), None);
    }

    #[test]
    fn lone_cr_inside_a_line_is_kept() {
        let mut r = LineReader::new(100);
        assert_eq!(feed_all(&mut r, b"A\rB\r\n"), vec![text("A\rB")]);
    }

    #[test]
    fn limit_counts_the_crlf() {
        // "ABC\r\n" is 5 octets.
        let mut r = LineReader::new(5);
        assert_eq!(feed_all(&mut r, b"ABC\r\n"), vec![text("ABC")]);
        let mut r = LineReader::new(4);
        assert_eq!(
            feed_all(&mut r, b"ABC\r\nX\r\n"),
            vec![Line::TooLong, text("X")]
        );
        // A bare LF line of 4 octets fits a limit of 4.
        let mut r = LineReader::new(4);
        assert_eq!(feed_all(&mut r, b"ABC\n"), vec![text("ABC")]);
    }

    #[test]
    fn too_long_is_reported_once_before_the_line_ends() {
        let mut r = LineReader::new(8);
        let mut lines = feed_all(&mut r, b"0123456789");
        assert_eq!(lines, vec![Line::TooLong]);
        lines = feed_all(&mut r, &[b'x'; 10_000]);
        assert!(lines.is_empty());
        assert!(r.partial.is_empty());
        lines = feed_all(&mut r, b"tail\r\nNEXT\r\n");
        assert_eq!(lines, vec![text("NEXT")]);
    }

    #[test]
    fn zero_limit_rejects_everything_without_panicking() {
        let mut r = LineReader::new(0);
        assert_eq!(feed_all(&mut r, b"\n\r\nA\n"), vec![Line::TooLong; 3]);
    }

    #[test]
    fn pending_reads_back_into_the_same_lines() {
        let mut r = LineReader::new(8);
        for chunk in [&b"AB\r\nCD\nE\r\r\n\r\n"[..], b"1234567\n", b"FG\r"] {
            let mut chunk = chunk;
            while !chunk.is_empty() {
                chunk = &chunk[r.push(chunk)..];
            }
        }
        let pending = r.pending().unwrap();
        assert_eq!(pending, b"AB\r\nCD\r\nE\r\r\n\r\n1234567\nFG\r");
        let mut copy = LineReader::new(8);
        let mut lines = feed_all(&mut copy, &pending);
        lines.extend(feed_all(&mut copy, b"\n"));
        assert_eq!(
            lines,
            vec![
                text("AB"),
                text("CD"),
                text("E\r"),
                text(""),
                text("1234567"),
                text("FG")
            ]
        );
        // Nothing stands for dropped input.
        assert_eq!(feed_all(&mut r, b"\n"), lines);
        feed_all(&mut r, b"0123456789");
        assert_eq!(r.pending(), None);
        let mut r = LineReader::new(8);
        r.push(b"0123456789\n");
        assert_eq!(r.pending(), None);
    }

    #[test]
    fn queue_is_bounded() {
        let mut r = LineReader::new(16);
        let mut bytes = b"NOOP\r\n".repeat(100_000);
        while !bytes.is_empty() {
            let used = r.push(&bytes);
            bytes.drain(..used);
        }
        assert!(r.overflowed());
        assert!(r.queued_cost <= r.queue_budget);
        let mut taken = 0;
        while r.next_line().is_some() {
            taken += 1;
        }
        assert!(
            taken > 1000,
            "a sane pipeline depth must still fit, got {taken}"
        );
        r.clear();
        assert!(!r.overflowed());
    }
}
