//! POP3 answers (RFC 1939 §3): a status line (`+OK ...` / `-ERR ...`), and after
//! `+OK` to a multi-line command (UIDL, LIST, RETR, TOP, CAPA) lines up to a line of a
//! single `.`, with a leading `.` removed from every line that had one added
//! (dot-stuffing).

use super::{Decoded, MAX_LINE, WireError, excerpt, find_newline, trim_cr};

/// A status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub ok: bool,
    /// The text after `+OK` / `-ERR`.
    pub text: String,
}

/// Decodes a status line from the start of `buf`.
pub fn decode_status(buf: &[u8]) -> Result<Decoded<StatusLine>, WireError> {
    let Some(newline) = find_newline(buf, 0) else {
        if buf.len() > MAX_LINE {
            return Err(WireError::LineTooLong { limit: MAX_LINE });
        }
        return Ok(Decoded::Incomplete {
            needed: buf.len() + 1,
        });
    };
    let line = trim_cr(&buf[..newline]);
    let (ok, rest) = if let Some(rest) = line.strip_prefix(b"+OK") {
        (true, rest)
    } else if let Some(rest) = line.strip_prefix(b"-ERR") {
        (false, rest)
    } else {
        return Err(WireError::Malformed {
            what: "POP3 status line",
            line: excerpt(line),
        });
    };
    if !(rest.is_empty() || rest.starts_with(b" ")) {
        return Err(WireError::Malformed {
            what: "POP3 status line",
            line: excerpt(line),
        });
    }
    let text = String::from_utf8_lossy(rest.strip_prefix(b" ").unwrap_or(rest)).into_owned();
    Ok(Decoded::Complete(StatusLine { ok, text }, newline + 1))
}

/// The body of a multi-line answer, read incrementally: the lines already taken stay
/// in the decoder, so a 2 MB RETR is scanned once, however it arrives.
#[derive(Debug, Default)]
pub struct MultilineDecoder {
    /// Bytes of the input already turned into `body`.
    scanned: usize,
    /// Lines so far, unstuffed, each ending in CRLF.
    body: Vec<u8>,
}

impl MultilineDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Continues with `buf` (the same input as before, with more bytes at its end).
    /// Complete: the unstuffed body (without the final `.` line) and the bytes used.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Decoded<Vec<u8>>, WireError> {
        loop {
            let Some(newline) = find_newline(buf, self.scanned) else {
                if buf.len() - self.scanned > MAX_LINE {
                    return Err(WireError::LineTooLong { limit: MAX_LINE });
                }
                return Ok(Decoded::Incomplete {
                    needed: buf.len() + 1,
                });
            };
            let line = trim_cr(&buf[self.scanned..newline]);
            self.scanned = newline + 1;
            if line == b"." {
                let used = self.scanned;
                self.scanned = 0;
                return Ok(Decoded::Complete(std::mem::take(&mut self.body), used));
            }
            let line = line.strip_prefix(b".").unwrap_or(line);
            self.body.extend_from_slice(line);
            self.body.extend_from_slice(b"\r\n");
        }
    }
}

/// The lines of a UIDL answer as (message number, unique id); lines that are not
/// `number id` are skipped.
pub fn uidl_entries(body: &[u8]) -> Vec<(u32, String)> {
    body.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(trim_cr(line)).ok()?;
            let mut words = line.split_whitespace();
            let number = words.next()?.parse().ok()?;
            let uid = words.next()?.to_string();
            Some((number, uid))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::feed_in_pieces;

    #[test]
    fn status_lines() {
        let r = feed_in_pieces(
            b"+OK ready\r\n-ERR [IN-USE] locked\r\n+OK\r\n",
            2,
            decode_status,
        );
        assert_eq!(
            r,
            vec![
                StatusLine {
                    ok: true,
                    text: "ready".into()
                },
                StatusLine {
                    ok: false,
                    text: "[IN-USE] locked".into()
                },
                StatusLine {
                    ok: true,
                    text: String::new()
                },
            ]
        );
        assert!(decode_status(b"+OKAY\r\n").is_err());
        assert!(decode_status(b"220 smtp\r\n").is_err());
    }

    const RETR: &[u8] = b"Subject: dots\r\n\r\n..leading dot\r\n..\r\n...\r\nend\r\n.\r\n";

    #[test]
    fn multiline_unstuffs_in_every_split() {
        for piece in [1, 2, 3, 4, 7, RETR.len()] {
            let mut decoder = MultilineDecoder::new();
            let bodies = feed_in_pieces(RETR, piece, |buf| decoder.decode(buf));
            assert_eq!(
                bodies,
                vec![b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..\r\nend\r\n".to_vec()],
                "piece {piece}"
            );
        }
    }

    #[test]
    fn empty_multiline_and_next_answer_left_alone() {
        let mut decoder = MultilineDecoder::new();
        let input = b".\r\n+OK next\r\n";
        assert_eq!(
            decoder.decode(input).unwrap(),
            Decoded::Complete(Vec::new(), 3)
        );
    }

    #[test]
    fn uidl_lines() {
        assert_eq!(
            uidl_entries(b"1 abc\r\n2 def\r\nnonsense\r\n"),
            vec![(1, "abc".to_string()), (2, "def".to_string())]
        );
    }
}
