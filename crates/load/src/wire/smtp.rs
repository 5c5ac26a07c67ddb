//! SMTP (RFC 5321 §4.2) and LMTP (RFC 2033) replies: lines `250-text` continue a reply,
//! `250 text` (or a bare `250`) ends it; every line of one reply carries the same code.

use super::{Decoded, MAX_LINE, WireError, excerpt, find_newline, trim_cr};

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, after the code and its separator.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// The class of a reply as errors are counted: `4xx` or `5xx` (`ok` for 2xx/3xx,
    /// `other` for anything else).
    pub fn class(&self) -> &'static str {
        match self.code / 100 {
            4 => "4xx",
            5 => "5xx",
            2 | 3 => "ok",
            _ => "other",
        }
    }

    /// All lines joined, for error messages.
    pub fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
    }

    /// Whether an EHLO/LHLO reply lists this extension keyword.
    pub fn has_extension(&self, keyword: &str) -> bool {
        self.lines.iter().skip(1).any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
        })
    }
}

/// Most lines one reply may have (a server sending more is broken).
const MAX_REPLY_LINES: usize = 1000;

/// Decodes one reply from the start of `buf`.
pub fn decode_reply(buf: &[u8]) -> Result<Decoded<Reply>, WireError> {
    let mut lines = Vec::new();
    let mut code = None;
    let mut pos = 0;
    loop {
        let Some(newline) = find_newline(buf, pos) else {
            if buf.len() - pos > MAX_LINE {
                return Err(WireError::LineTooLong { limit: MAX_LINE });
            }
            return Ok(Decoded::Incomplete {
                needed: buf.len() + 1,
            });
        };
        let line = trim_cr(&buf[pos..newline]);
        pos = newline + 1;
        let malformed = || WireError::Malformed {
            what: "SMTP reply",
            line: excerpt(line),
        };
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(malformed());
        }
        let line_code: u16 = std::str::from_utf8(&line[..3])
            .ok()
            .and_then(|c| c.parse().ok())
            .ok_or_else(malformed)?;
        if *code.get_or_insert(line_code) != line_code {
            return Err(malformed());
        }
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Err(malformed()),
        };
        let text = line.get(4..).unwrap_or_default();
        lines.push(String::from_utf8_lossy(text).into_owned());
        if last {
            return Ok(Decoded::Complete(
                Reply {
                    code: line_code,
                    lines,
                },
                pos,
            ));
        }
        if lines.len() > MAX_REPLY_LINES {
            return Err(malformed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::feed_in_pieces;

    const EHLO: &[u8] = b"250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 AUTH PLAIN LOGIN\r\n354 go ahead\r\n221\r\n";

    #[test]
    fn multiline_replies_in_every_split() {
        for piece in [1, 2, 5, 11, EHLO.len()] {
            let replies = feed_in_pieces(EHLO, piece, decode_reply);
            assert_eq!(replies.len(), 3, "piece {piece}");
            assert_eq!(replies[0].code, 250);
            assert_eq!(replies[0].lines.len(), 4);
            assert!(replies[0].has_extension("auth"));
            assert!(replies[0].has_extension("SIZE"));
            assert!(!replies[0].has_extension("mail.example.com"));
            assert_eq!(replies[1].code, 354);
            assert_eq!(replies[2].lines, vec![String::new()]);
        }
    }

    #[test]
    fn mixed_codes_and_garbage_are_malformed() {
        assert!(decode_reply(b"250-a\r\n251 b\r\n").is_err());
        assert!(decode_reply(b"hello\r\n").is_err());
        assert!(decode_reply(b"250x\r\n").is_err());
    }

    #[test]
    fn classes() {
        let reply = |code| Reply {
            code,
            lines: vec![],
        };
        assert_eq!(reply(550).class(), "5xx");
        assert_eq!(reply(452).class(), "4xx");
        assert!(reply(354).is_positive());
        assert!(!reply(421).is_positive());
    }
}
