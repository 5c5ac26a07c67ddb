//! Sans-IO decoders for what servers send: IMAP responses (with literals), POP3 status
//! lines and multi-line answers, SMTP/LMTP replies.
//!
//! They exist apart from the sockets so that every way TCP can cut a response (a literal
//! split across reads, a reply arriving byte by byte) is tested by feeding bytes, with no
//! server. Each decoder looks at the bytes received so far and either returns one
//! complete item with the number of bytes it used, or says how many bytes it needs
//! before it is worth asking again (so a 2 MB literal is not re-scanned on every read).

pub mod imap;
pub mod pop3;
pub mod smtp;

/// What a decoder made of the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    /// One item, and how many bytes of the input it took.
    Complete(T, usize),
    /// Not yet complete: call again once the input holds at least this many bytes.
    Incomplete { needed: usize },
}

/// Input no decoder can make sense of: the connection is unusable after it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("literal of {size} bytes is larger than {limit}")]
    LiteralTooLarge { size: u64, limit: u64 },
    #[error("malformed {what}: {line:?}")]
    Malformed { what: &'static str, line: String },
}

/// Longest response line accepted (IMAP FETCH lines of big folders are long; the
/// literals are not counted).
pub const MAX_LINE: usize = 4 * 1024 * 1024;

/// The position of the next `\n` in `buf` at or after `from`.
pub(crate) fn find_newline(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i)
}

/// `line` without its trailing `\r` (servers end lines with CRLF; a bare LF is
/// tolerated).
pub(crate) fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A line for an error message: lossy UTF-8, cut to a readable length.
pub(crate) fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(200)]);
    text.into_owned()
}

/// Splits a byte string into random-ish pieces for the decoder tests: every `split`
/// (TCP may deliver a response in any pieces).
#[cfg(test)]
pub(crate) fn feed_in_pieces<T>(
    input: &[u8],
    piece: usize,
    mut decode: impl FnMut(&[u8]) -> Result<Decoded<T>, WireError>,
) -> Vec<T> {
    let mut items = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut offset = 0;
    let mut needed = 0;
    loop {
        while buf.len() >= needed.max(1) && !buf.is_empty() {
            match decode(&buf).expect("decodes") {
                Decoded::Complete(item, used) => {
                    items.push(item);
                    buf.drain(..used);
                    needed = 0;
                }
                Decoded::Incomplete { needed: n } => {
                    assert!(n > buf.len(), "needed {n} must exceed {}", buf.len());
                    needed = n;
                    break;
                }
            }
        }
        if offset == input.len() {
            assert!(
                buf.is_empty(),
                "left over: {:?}",
                String::from_utf8_lossy(&buf)
            );
            return items;
        }
        let end = (offset + piece).min(input.len());
        buf.extend_from_slice(&input[offset..end]);
        offset = end;
    }
}
