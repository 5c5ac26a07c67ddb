//! Reception of message content: DATA (RFC 5321 §4.1.1.4, dot-unstuffing per §4.5.2) and
//! BDAT chunks (RFC 3030 §2), within the size limit (RFC 1870) and in bounded memory.
//!
//! smtp-proto's receivers do the byte work: `DataReceiver` finds the `<CRLF>.<CRLF>`
//! terminator and removes the stuffed dots (only after CRLF, so a bare `\n.\r\n` is not
//! taken as the end, which is what defeats SMTP smuggling), `BdatReceiver` counts a chunk,
//! and `DummyDataReceiver` does the same while keeping nothing. Two things are added here:
//!
//! - A new `DataReceiver` behaves as if the last bytes seen were not a line end, so a dot
//!   on the first line of the content was neither unstuffed nor taken as the terminator
//!   (an empty message, `DATA` then `.`, would never end). The CRLF that ended the DATA
//!   command is the start of the first content line, so the receiver is primed with it.
//! - `DataReceiver` appends to its buffer without limit. It is fed slices small enough
//!   that the message can never grow more than two bytes past the limit; past that, the
//!   rest is read by a `DummyDataReceiver` that carries on from the same state.
//!
//! The buffer need not hold the whole message: the session hands all but its last
//! [`SPOOL_KEEP`] bytes to the host as it grows (the receiver only ever takes back the
//! CR of the final CRLF), and tells `feed` how much went before (`spooled`).

use smtp_proto::request::receiver::{BdatReceiver, DataReceiver, DummyDataReceiver};

/// Bytes a spooling session keeps at the end of its buffer: all the receiver may take
/// back.
pub(crate) const SPOOL_KEEP: usize = 2;

/// How a body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyEnd {
    /// All of it was kept.
    Complete,
    /// It went over the limit; what was kept has been dropped.
    TooBig,
}

/// DATA content up to `<CRLF>.<CRLF>`.
pub(crate) enum DataBody {
    Keeping(DataReceiver),
    Discarding(DummyDataReceiver),
}

impl DataBody {
    pub(crate) fn new() -> Self {
        let mut receiver = DataReceiver::new();
        let mut primer = Vec::with_capacity(2);
        // Cannot complete: there is no dot to end on.
        let _ = receiver.ingest(&mut b"\r\n".iter(), &mut primer);
        DataBody::Keeping(receiver)
    }

    /// Takes content from `input` into `message` (dot-unstuffed), returning how many bytes
    /// were used and, once the terminator was read, how the body ended. Bytes after the
    /// terminator are not touched. Without an end, all of `input` was used. `spooled`
    /// bytes of content came before `message` (handed to the host already); the limit
    /// counts them.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        message: &mut Vec<u8>,
        spooled: usize,
        limit: usize,
    ) -> (usize, Option<BodyEnd>) {
        let mut used = 0;
        loop {
            match self {
                DataBody::Keeping(receiver) => {
                    let rest = &input[used..];
                    if rest.is_empty() {
                        return (used, None);
                    }
                    // Unstuffing never grows the content, and only the CR before the final
                    // LF is ever taken back, so this keeps `message` within `limit + 2`.
                    let held = spooled.saturating_add(message.len());
                    let room = limit.saturating_add(2).saturating_sub(held).max(1);
                    let slice = &rest[..rest.len().min(room)];
                    let mut bytes = slice.iter();
                    let done = receiver.ingest(&mut bytes, message);
                    used += slice.len() - bytes.len();
                    let held = spooled.saturating_add(message.len());
                    if done {
                        let end = if held > limit {
                            message.clear();
                            BodyEnd::TooBig
                        } else {
                            BodyEnd::Complete
                        };
                        return (used, Some(end));
                    }
                    if held > limit.saturating_add(1) {
                        // At most one byte can still be taken back: this is over for good.
                        *self = DataBody::Discarding(DummyDataReceiver::new_data(receiver));
                        *message = Vec::new();
                    }
                }
                DataBody::Discarding(receiver) => {
                    let rest = &input[used..];
                    let mut bytes = rest.iter();
                    let done = receiver.ingest(&mut bytes);
                    used += rest.len() - bytes.len();
                    return (used, done.then_some(BodyEnd::TooBig));
                }
            }
        }
    }
}

/// One BDAT chunk, kept or (when the command was refused) read and dropped.
pub(crate) enum ChunkBody {
    Keeping(BdatReceiver),
    Discarding(DummyDataReceiver),
}

impl ChunkBody {
    /// A chunk to append to the message; the caller checked that it fits the limit.
    pub(crate) fn keep(size: usize, last: bool) -> Self {
        ChunkBody::Keeping(BdatReceiver::new(size, last))
    }

    /// A chunk whose command was refused: RFC 3030 §3 still has it sent, so it is read.
    pub(crate) fn discard(size: usize) -> Self {
        ChunkBody::Discarding(DummyDataReceiver::new_bdat(size))
    }

    /// Takes chunk bytes from `input`, returning how many were used and whether the chunk
    /// is complete (immediately so for a zero-size chunk, even with no input).
    pub(crate) fn feed(&mut self, input: &[u8], message: &mut Vec<u8>) -> (usize, bool) {
        let mut bytes = input.iter();
        let done = match self {
            ChunkBody::Keeping(receiver) => receiver.ingest(&mut bytes, message),
            ChunkBody::Discarding(receiver) => receiver.ingest(&mut bytes),
        };
        (input.len() - bytes.len(), done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the message, the end and the bytes
    /// left after the terminator.
    fn data(input: &[u8], limit: usize, step: usize) -> (Vec<u8>, Option<BodyEnd>, Vec<u8>) {
        let mut body = DataBody::new();
        let mut message = Vec::new();
        let mut at = 0;
        while at < input.len() {
            let piece = &input[at..input.len().min(at + step)];
            let (used, end) = body.feed(piece, &mut message, 0, limit);
            at += used;
            assert!(message.len() <= limit.saturating_add(2));
            if end.is_some() {
                return (message, end, input[at..].to_vec());
            }
            assert_eq!(used, piece.len());
        }
        (message, None, Vec::new())
    }

    #[test]
    fn spooling_all_but_the_last_bytes_changes_nothing() {
        // As the session does: after each piece, all but SPOOL_KEEP bytes go to the host.
        let input = b"Subject: x\r\n\r\n..one\r\n.two\r\n...\r\nend\r\n.\r\nQUIT\r\n";
        let whole = b"Subject: x\r\n\r\n.one\r\ntwo\r\n..\r\nend\r\n";
        for (limit, expected) in [(1000, Some(BodyEnd::Complete)), (20, Some(BodyEnd::TooBig))] {
            for step in [1, 2, 3, 7, 1000] {
                let mut body = DataBody::new();
                let (mut message, mut spooled) = (Vec::new(), Vec::new());
                let mut at = 0;
                let end = loop {
                    let piece = &input[at..input.len().min(at + step)];
                    let (used, end) = body.feed(piece, &mut message, spooled.len(), limit);
                    at += used;
                    if end.is_some() {
                        break end;
                    }
                    let cut = message.len().saturating_sub(SPOOL_KEEP);
                    spooled.extend(message.drain(..cut));
                };
                assert_eq!(end, expected, "{limit} {step}");
                if end == Some(BodyEnd::Complete) {
                    spooled.extend(message);
                    assert_eq!(spooled, whole, "{step}");
                }
                assert_eq!(&input[at..], b"QUIT\r\n");
            }
        }
    }

    #[test]
    fn unstuffs_and_stops_at_terminator() {
        for step in [1, 2, 3, 7, 1000] {
            let (message, end, rest) = data(
                b"Subject: x\r\n\r\n..one\r\n.two\r\n...\r\nend\r\n.\r\nQUIT\r\n",
                1000,
                step,
            );
            assert_eq!(end, Some(BodyEnd::Complete));
            assert_eq!(message, b"Subject: x\r\n\r\n.one\r\ntwo\r\n..\r\nend\r\n");
            assert_eq!(rest, b"QUIT\r\n");
        }
    }

    #[test]
    fn dot_on_the_first_line() {
        let (message, end, _) = data(b"..first\r\n.\r\n", 100, 1);
        assert_eq!(end, Some(BodyEnd::Complete));
        assert_eq!(message, b".first\r\n");
        let (message, end, rest) = data(b".\r\nNOOP\r\n", 100, 1000);
        assert_eq!(end, Some(BodyEnd::Complete));
        assert_eq!(message, b"");
        assert_eq!(rest, b"NOOP\r\n");
    }

    #[test]
    fn bare_lf_dot_is_not_the_end() {
        // SMTP smuggling: only <CRLF>.<CRLF> ends the content.
        let input = b"a\n.\r\nMAIL FROM:<x@y>\r\nb\r\n.\n\r\n.\r\n";
        let (message, end, _) = data(input, 1000, 1000);
        assert_eq!(end, Some(BodyEnd::Complete));
        assert_eq!(message, b"a\n.\r\nMAIL FROM:<x@y>\r\nb\r\n\n\r\n");
    }

    #[test]
    fn limit_is_exact() {
        // 10 bytes of content.
        let input = b"12345678\r\n.\r\n";
        let body = b"12345678\r\n";
        for step in [1, 2, 5, 100] {
            let (message, end, _) = data(input, 10, step);
            assert_eq!(
                (message.as_slice(), end),
                (&body[..], Some(BodyEnd::Complete))
            );
            let (message, end, _) = data(input, 9, step);
            assert_eq!((message.len(), end), (0, Some(BodyEnd::TooBig)), "{step}");
        }
    }

    #[test]
    fn oversized_body_is_read_to_the_end_in_bounded_memory() {
        let mut input = b"x\r\n".repeat(10_000);
        input.extend_from_slice(b".\r\nRSET\r\n");
        for step in [1, 333, 100_000] {
            let (message, end, rest) = data(&input, 50, step);
            assert_eq!(end, Some(BodyEnd::TooBig));
            assert!(message.is_empty());
            assert_eq!(rest, b"RSET\r\n");
        }
    }

    #[test]
    fn zero_limit() {
        assert_eq!(data(b".\r\n", 0, 1).1, Some(BodyEnd::Complete));
        assert_eq!(data(b"a\r\n.\r\n", 0, 1).1, Some(BodyEnd::TooBig));
    }

    #[test]
    fn chunks_keep_exact_bytes() {
        let mut message = b"ab".to_vec();
        let mut chunk = ChunkBody::keep(5, false);
        assert_eq!(chunk.feed(b"\r\n.", &mut message), (3, false));
        assert_eq!(chunk.feed(b"\r\nQUIT", &mut message), (2, true));
        assert_eq!(message, b"ab\r\n.\r\n");
        let mut chunk = ChunkBody::discard(3);
        assert_eq!(chunk.feed(b"abcdef", &mut message), (3, true));
        assert_eq!(message, b"ab\r\n.\r\n");
        assert_eq!(ChunkBody::keep(0, true).feed(b"", &mut message), (0, true));
        assert_eq!(ChunkBody::discard(0).feed(b"", &mut message), (0, true));
    }
}
