//! IMAP server responses (RFC 9051 §7, RFC 3501 §7): one response is a line that may
//! carry literals (`{N}` at the end of a line, then exactly N bytes, then the line goes
//! on). The decoder hands back the line's text with each literal's content set aside,
//! which is all a load client needs: the tag and status of tagged responses, `UID n`
//! and `n EXISTS` in untagged ones, mailbox names in LIST.

use super::{Decoded, MAX_LINE, WireError, excerpt, find_newline, trim_cr};

/// Largest literal accepted (a message body, with room to spare).
pub const MAX_LITERAL: u64 = 512 * 1024 * 1024;

/// Status of a tagged (or untagged status) response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        }
    }
}

/// What kind of response a line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `* ...`
    Untagged,
    /// `+ ...`: the server waits for a literal or for IDLE's DONE.
    Continuation,
    /// `tag OK|NO|BAD ...`
    Tagged { tag: String, status: Status },
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub kind: Kind,
    /// The response without its final CRLF and without the literals' contents (their
    /// `{N}` markers stay, with the CRLF after them removed).
    pub text: Vec<u8>,
    /// The literals' contents, in order.
    pub literals: Vec<Vec<u8>>,
}

impl Response {
    /// The response's text as readable text (for error messages).
    pub fn message(&self) -> String {
        excerpt(&self.text)
    }

    /// `n` of an untagged `* n EXISTS`.
    pub fn exists(&self) -> Option<u32> {
        if self.kind != Kind::Untagged {
            return None;
        }
        let mut words = self.text.split(|&b| b == b' ');
        let (_star, number, keyword) = (words.next()?, words.next()?, words.next()?);
        if !keyword.eq_ignore_ascii_case(b"EXISTS") {
            return None;
        }
        std::str::from_utf8(number).ok()?.parse().ok()
    }

    /// The UID in an untagged FETCH response (`* 3 FETCH (UID 7 FLAGS ...)`), read from
    /// the text only, so a literal cannot fake one.
    pub fn fetch_uid(&self) -> Option<u32> {
        if self.kind != Kind::Untagged {
            return None;
        }
        let mut words = self.text.split(|&b| b == b' ');
        let (_star, _number, keyword) = (words.next()?, words.next()?, words.next()?);
        if !keyword.eq_ignore_ascii_case(b"FETCH") {
            return None;
        }
        // Attribute names and values alternate; only text outside literals is looked at.
        let rest = &self.text[self.text.iter().position(|&b| b == b'(')? + 1..];
        let mut previous: &[u8] = b"";
        for word in rest.split(|&b| b == b' ' || b == b'(' || b == b')') {
            if previous.eq_ignore_ascii_case(b"UID") {
                return std::str::from_utf8(word).ok()?.parse().ok();
            }
            previous = word;
        }
        None
    }

    /// The mailbox of an untagged LIST response, with its attributes; None for other
    /// responses or a name that is not plain text.
    pub fn list_mailbox(&self) -> Option<ListedMailbox> {
        if self.kind != Kind::Untagged {
            return None;
        }
        let text = self.text.strip_prefix(b"* ")?;
        let keyword_end = text.iter().position(|&b| b == b' ')?;
        if !text[..keyword_end].eq_ignore_ascii_case(b"LIST") {
            return None;
        }
        let rest = &text[keyword_end + 1..];
        let rest = rest.strip_prefix(b"(")?;
        let close = rest.iter().position(|&b| b == b')')?;
        let attributes: Vec<String> = rest[..close]
            .split(|&b| b == b' ')
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let rest = rest[close + 1..].strip_prefix(b" ")?;
        // The delimiter (a quoted character or NIL), then the name.
        let mut literal_index = 0;
        let (_, rest) = astring(rest, &self.literals, &mut literal_index, true)?;
        let rest = rest.strip_prefix(b" ")?;
        let (name, _) = astring(rest, &self.literals, &mut literal_index, false)?;
        let name = String::from_utf8(name).ok()?;
        Some(ListedMailbox { name, attributes })
    }
}

/// A mailbox named by a LIST response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMailbox {
    pub name: String,
    /// `\HasNoChildren`, `\Noselect`, `\Sent` ...
    pub attributes: Vec<String>,
}

impl ListedMailbox {
    /// Whether the mailbox can be selected.
    pub fn selectable(&self) -> bool {
        !self.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        })
    }
}

/// Reads an astring, a quoted string or NIL (when `nil_ok`) at the start of `input`:
/// its value and the input after it. A literal's value comes from `literals`.
fn astring<'a>(
    input: &'a [u8],
    literals: &[Vec<u8>],
    literal_index: &mut usize,
    nil_ok: bool,
) -> Option<(Vec<u8>, &'a [u8])> {
    match input.first()? {
        b'"' => {
            let mut value = Vec::new();
            let mut i = 1;
            while i < input.len() {
                match input[i] {
                    b'\\' => {
                        value.push(*input.get(i + 1)?);
                        i += 2;
                    }
                    b'"' => return Some((value, &input[i + 1..])),
                    byte => {
                        value.push(byte);
                        i += 1;
                    }
                }
            }
            None
        }
        b'{' => {
            let close = input.iter().position(|&b| b == b'}')?;
            let value = literals.get(*literal_index)?.clone();
            *literal_index += 1;
            Some((value, &input[close + 1..]))
        }
        _ => {
            let end = input.iter().position(|&b| b == b' ').unwrap_or(input.len());
            let word = &input[..end];
            if nil_ok && word.eq_ignore_ascii_case(b"NIL") {
                return Some((Vec::new(), &input[end..]));
            }
            Some((word.to_vec(), &input[end..]))
        }
    }
}

/// The size of a literal announced at the end of `line` (`{12}` or `{12+}`).
fn literal_size(line: &[u8]) -> Result<Option<u64>, WireError> {
    let Some(inner) = line.strip_suffix(b"}") else {
        return Ok(None);
    };
    let Some(open) = inner.iter().rposition(|&b| b == b'{') else {
        return Ok(None);
    };
    let digits = inner[open + 1..]
        .strip_suffix(b"+")
        .unwrap_or(&inner[open + 1..]);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    let size: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| WireError::Malformed {
            what: "literal size",
            line: excerpt(line),
        })?;
    if size > MAX_LITERAL {
        return Err(WireError::LiteralTooLarge {
            size,
            limit: MAX_LITERAL,
        });
    }
    Ok(Some(size))
}

/// Decodes one response from the start of `buf`.
pub fn decode_response(buf: &[u8]) -> Result<Decoded<Response>, WireError> {
    let mut text = Vec::new();
    let mut literals = Vec::new();
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
        if newline - pos > MAX_LINE {
            return Err(WireError::LineTooLong { limit: MAX_LINE });
        }
        let line = trim_cr(&buf[pos..newline]);
        text.extend_from_slice(line);
        pos = newline + 1;
        match literal_size(line)? {
            Some(size) => {
                let size = usize::try_from(size).map_err(|_| WireError::LiteralTooLarge {
                    size,
                    limit: MAX_LITERAL,
                })?;
                let end = pos + size;
                if buf.len() < end {
                    // The rest of the line after the literal needs at least its CRLF.
                    return Ok(Decoded::Incomplete { needed: end + 1 });
                }
                literals.push(buf[pos..end].to_vec());
                pos = end;
            }
            None => break,
        }
    }
    let kind = classify(&text)?;
    Ok(Decoded::Complete(
        Response {
            kind,
            text,
            literals,
        },
        pos,
    ))
}

fn classify(text: &[u8]) -> Result<Kind, WireError> {
    if text.starts_with(b"* ") || text == b"*" {
        return Ok(Kind::Untagged);
    }
    if text.starts_with(b"+") {
        return Ok(Kind::Continuation);
    }
    let malformed = || WireError::Malformed {
        what: "IMAP response",
        line: excerpt(text),
    };
    let mut words = text.splitn(3, |&b| b == b' ');
    let tag = words
        .next()
        .filter(|t| !t.is_empty())
        .ok_or_else(malformed)?;
    let status = words.next().ok_or_else(malformed)?;
    let status = if status.eq_ignore_ascii_case(b"OK") {
        Status::Ok
    } else if status.eq_ignore_ascii_case(b"NO") {
        Status::No
    } else if status.eq_ignore_ascii_case(b"BAD") {
        Status::Bad
    } else {
        return Err(malformed());
    };
    let tag = String::from_utf8(tag.to_vec()).map_err(|_| malformed())?;
    Ok(Kind::Tagged { tag, status })
}

/// `value` as an IMAP quoted string; None if it cannot be one (CR, LF or NUL in it).
pub fn quoted(value: &str) -> Option<String> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return None;
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::feed_in_pieces;

    fn decode_all(input: &[u8], piece: usize) -> Vec<Response> {
        feed_in_pieces(input, piece, decode_response)
    }

    const FETCH_SESSION: &[u8] = b"* 2 EXISTS\r\n\
* 1 FETCH (UID 7 RFC822.SIZE 12 BODY[] {12}\r\nSubject: x\r\n)\r\n\
* 2 FETCH (FLAGS (\\Seen) BODY[HEADER.FIELDS (FROM)] {9}\r\nFrom: a\r\n UID 9)\r\n\
a3 OK FETCH done\r\n";

    #[test]
    fn responses_with_literals_in_every_split() {
        for piece in [1, 2, 3, 5, 7, 13, 64, FETCH_SESSION.len()] {
            let responses = decode_all(FETCH_SESSION, piece);
            assert_eq!(responses.len(), 4, "piece {piece}");
            assert_eq!(responses[0].exists(), Some(2));
            assert_eq!(responses[1].literals, vec![b"Subject: x\r\n".to_vec()]);
            assert_eq!(responses[1].fetch_uid(), Some(7));
            assert_eq!(
                responses[1].text,
                b"* 1 FETCH (UID 7 RFC822.SIZE 12 BODY[] {12})"
            );
            assert_eq!(responses[2].fetch_uid(), Some(9));
            assert_eq!(
                responses[3].kind,
                Kind::Tagged {
                    tag: "a3".into(),
                    status: Status::Ok
                }
            );
        }
    }

    #[test]
    fn incomplete_literal_asks_for_its_whole_size() {
        let input = b"* 1 FETCH (BODY[] {100}\r\nabc";
        let Decoded::Incomplete { needed } = decode_response(input).unwrap() else {
            panic!("complete?");
        };
        assert_eq!(needed, 25 + 100 + 1);
    }

    #[test]
    fn a_literal_may_hold_crlf_and_braces() {
        let input = b"* 1 FETCH (BODY[] {7}\r\n{3}\r\n\r\n)\r\n";
        let Decoded::Complete(r, used) = decode_response(input).unwrap() else {
            panic!("incomplete");
        };
        assert_eq!(used, input.len());
        assert_eq!(r.literals, vec![b"{3}\r\n\r\n".to_vec()]);
    }

    #[test]
    fn uid_inside_a_literal_is_not_taken() {
        let input = b"* 1 FETCH (BODY[] {7}\r\nUID 99 )\r\n";
        let Decoded::Complete(r, _) = decode_response(input).unwrap() else {
            panic!("incomplete");
        };
        assert_eq!(r.fetch_uid(), None);
    }

    #[test]
    fn tagged_no_bad_and_continuations() {
        let input = b"+ idling\r\nt1 NO [TRYCREATE] no such mailbox\r\nt2 bad what\r\n+\r\n";
        let r = decode_all(input, 4);
        assert_eq!(r[0].kind, Kind::Continuation);
        assert_eq!(
            r[1].kind,
            Kind::Tagged {
                tag: "t1".into(),
                status: Status::No
            }
        );
        assert_eq!(
            r[2].kind,
            Kind::Tagged {
                tag: "t2".into(),
                status: Status::Bad
            }
        );
        assert_eq!(r[3].kind, Kind::Continuation);
    }

    #[test]
    fn garbage_status_is_malformed() {
        assert!(matches!(
            decode_response(b"t1 MAYBE\r\n"),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            decode_response(b"\r\n"),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn huge_literal_is_refused() {
        assert!(matches!(
            decode_response(b"* 1 FETCH (BODY[] {99999999999}\r\n"),
            Err(WireError::LiteralTooLarge { .. })
        ));
    }

    #[test]
    fn list_names_quoted_atom_and_literal() {
        let input = b"* LIST (\\HasNoChildren) \"/\" INBOX\r\n\
* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n\
* LIST (\\Noselect) \"/\" {6}\r\nPublic\r\n\
* LIST () NIL \"a\\\"b\"\r\n";
        let r = decode_all(input, 3);
        let names: Vec<ListedMailbox> = r.iter().map(|r| r.list_mailbox().unwrap()).collect();
        assert_eq!(names[0].name, "INBOX");
        assert!(names[0].selectable());
        assert_eq!(names[1].name, "Sent Items");
        assert_eq!(names[1].attributes, vec!["\\HasNoChildren", "\\Sent"]);
        assert_eq!(names[2].name, "Public");
        assert!(!names[2].selectable());
        assert_eq!(names[3].name, "a\"b");
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted("Sent Items").unwrap(), "\"Sent Items\"");
        assert_eq!(quoted("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
        assert_eq!(quoted("a\r\nb"), None);
    }
}
