//! The summary computed once per message at append, and how it is built.
//!
//! mail-parser finds the part tree and each part's byte offsets; everything
//! IMAP shows about a part (types, parameters, encodings, envelope strings) is
//! then read from the raw header bytes at those offsets, because IMAP wants
//! the text as delivered and mail-parser decodes it.
//!
//! Where mail-parser's tree cannot be described in BODYSTRUCTURE's grammar
//! (RFC 9051 §7.5.2), the part is described as the nearest thing that can:
//!
//! - a `multipart/*` whose boundary never appears is a leaf to the parser, so
//!   it is shown as `text/plain` (RFC 2046 §5.1.1 leaves it without parts; a
//!   leaf typed MULTIPART would break clients that expect nested bodies);
//! - a `message/rfc822` whose content is empty or has no header gets an
//!   all-NIL envelope and a `text/plain` body, so the grammar's envelope and
//!   body are there;
//! - a `message/rfc822` with a base64 or quoted-printable encoding (forbidden
//!   by RFC 2046 §5.2.1, legal for `message/global` by RFC 6532 §3.5) cannot be
//!   addressed by byte offsets inside, so it is shown as
//!   `application/octet-stream`; the client can still fetch and decode it.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::{Encoding, Message, MessageParser, PartType};
use serde::{Deserialize, Serialize};

use crate::address::{self, Address};
use crate::header::{self, unfold};
use crate::params::{self, Param};

/// Parts nested deeper than this are described as opaque leaves. Real mail
/// stays within a handful of levels; the limit bounds the recursion in
/// building, rendering and deserializing a summary.
const MAX_DEPTH: usize = 64;

/// What IMAP needs to know about a message without reading it again:
/// ENVELOPE, BODYSTRUCTURE and where every part's header and body are.
///
/// Computed once at append ([`summarize`]) and stored beside the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageSummary {
    pub(crate) size: usize,
    pub(crate) envelope: Envelope,
    pub(crate) root: Part,
}

/// The ENVELOPE fields of a message (RFC 9051 §7.5.2), raw: unfolded and
/// trimmed, nothing decoded. `None` means the header field is absent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Envelope {
    pub date: Option<Vec<u8>>,
    pub subject: Option<Vec<u8>>,
    pub from: Vec<Address>,
    /// As in the message; the Sender/Reply-To default to From happens when
    /// rendering, so it is not stored twice.
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<Vec<u8>>,
    pub message_id: Option<Vec<u8>>,
}

/// One body part: where it is, and the fields BODYSTRUCTURE shows for it.
///
/// Offsets are into the raw message. The body runs from `body_start` to
/// `body_end`, without the CRLF that precedes the next boundary, which RFC
/// 2046 §5.1.1 assigns to the boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Start of this part's MIME header (for the top level, of the message).
    pub header_start: usize,
    /// Start of the body, just past the blank line ending the header.
    pub body_start: usize,
    pub body_end: usize,
    /// Lower-cased media type, `text` for `text/plain`.
    pub media_type: Vec<u8>,
    /// Lower-cased media subtype.
    pub media_subtype: Vec<u8>,
    pub params: Vec<Param>,
    /// Content-ID (RFC 2045 §7).
    pub id: Option<Vec<u8>>,
    /// Content-Description (RFC 2045 §8).
    pub description: Option<Vec<u8>>,
    /// Content-Transfer-Encoding mechanism, lower-cased; `None` means the
    /// RFC 2045 §6.1 default, 7bit.
    pub encoding: Option<Vec<u8>>,
    /// Content-MD5 (RFC 1864).
    pub md5: Option<Vec<u8>>,
    /// Content-Disposition (RFC 2183).
    pub disposition: Option<Disposition>,
    /// Content-Language tags (RFC 3282).
    pub language: Vec<Vec<u8>>,
    /// Content-Location (RFC 2557).
    pub location: Option<Vec<u8>>,
    pub content: Content,
}

/// A Content-Disposition: its type, lower-cased, and parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disposition {
    pub kind: Vec<u8>,
    pub params: Vec<Param>,
}

/// What is inside a part, as far as BODYSTRUCTURE cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// Any leaf that is not text (body-type-basic).
    Basic,
    /// A `text/*` leaf, with its body's line count (body-type-text).
    Text { lines: usize },
    /// An encapsulated message (body-type-msg), with the line count of the
    /// whole encapsulated message.
    Message {
        lines: usize,
        message: Box<Encapsulated>,
    },
    /// A multipart (body-type-mpart). Never empty when built by [`summarize`]
    /// unless the parser found no part at all.
    Multipart(Vec<Part>),
}

/// The message inside a `message/rfc822` part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encapsulated {
    pub envelope: Envelope,
    /// Its root part; `header_start..body_start` is the encapsulated
    /// message's header.
    pub root: Part,
}

impl Part {
    /// Whether this part or one inside it is sent with `Content-Transfer-Encoding:
    /// binary` (RFC 3516): its bytes are not lines, and must be kept exactly.
    pub fn has_binary(&self) -> bool {
        if self
            .encoding
            .as_deref()
            .is_some_and(|encoding| encoding.eq_ignore_ascii_case(b"binary"))
        {
            return true;
        }
        match &self.content {
            Content::Message { message, .. } => message.root.has_binary(),
            Content::Multipart(parts) => parts.iter().any(Part::has_binary),
            Content::Basic | Content::Text { .. } => false,
        }
    }
}

impl MessageSummary {
    /// The ENVELOPE fields, for SORT and THREAD as well as FETCH.
    pub fn envelope_fields(&self) -> &Envelope {
        &self.envelope
    }

    /// The root of the part tree.
    pub fn root(&self) -> &Part {
        &self.root
    }

    /// Offset of the body: the length of the top-level header, blank line
    /// included. `BODY[HEADER]` is `raw[..header_len()]`, `BODY[TEXT]` the rest.
    pub fn header_len(&self) -> usize {
        self.root.body_start
    }

    /// Size of the whole message in octets (RFC822.SIZE).
    pub fn size(&self) -> usize {
        self.size
    }
}

/// Computes the summary of a message. Never panics, whatever the bytes.
///
/// Messages should have CRLF line endings, as the store keeps them; bare LF
/// is tolerated and counted as a line ending.
pub fn summarize(raw: &[u8]) -> MessageSummary {
    summarize_parsed(raw, None).0
}

/// [`summarize`] and [`crate::body_text`] from one parse, for a message on its way
/// into the store and then the full-text index. The text is `None` where
/// [`crate::body_text`] would not parse the message either (it then falls back on the
/// raw bytes after the header), and where it would be longer than `max_text` bytes (a
/// big message's text is not copied only to be dropped).
pub fn summarize_with_body_text(raw: &[u8], max_text: usize) -> (MessageSummary, Option<String>) {
    summarize_parsed(raw, Some(max_text))
}

fn summarize_parsed(raw: &[u8], max_text: Option<usize>) -> (MessageSummary, Option<String>) {
    // mail-parser's offsets are u32: beyond that they would wrap.
    let parsed = if u32::try_from(raw.len()).is_ok() {
        // mail-parser is third-party code fed untrusted bytes; a panic in it
        // (it has debug assertions and `unreachable!`s) must cost this one
        // message its MIME structure, not the store task that appends it.
        catch_unwind(AssertUnwindSafe(|| from_parser(raw, max_text)))
            .ok()
            .flatten()
    } else {
        None
    };
    parsed.unwrap_or_else(|| (without_parser(raw), None))
}

fn from_parser(raw: &[u8], max_text: Option<usize>) -> Option<(MessageSummary, Option<String>)> {
    let message = MessageParser::default().parse(raw)?;
    let root = build(raw, &message, 0, Frame::root(raw.len()), false, 0);
    let text = max_text.and_then(|limit| crate::search::collect_text(&message, limit));
    dismantle(message);
    let summary = MessageSummary {
        size: raw.len(),
        envelope: Envelope::parse(
            raw.get(root.header_start..root.body_start)
                .unwrap_or_default(),
        ),
        root,
    };
    Some((summary, text))
}

/// The summary of a message the parser could not read: one part, described
/// from its header alone.
fn without_parser(raw: &[u8]) -> MessageSummary {
    let body_start = header::header_end(raw);
    let header = raw.get(..body_start).unwrap_or_default();
    let mut root = Part::from_header(header, false, 0, body_start, raw.len());
    root.finish_leaf(raw);
    MessageSummary {
        size: raw.len(),
        envelope: Envelope::parse(header),
        root,
    }
}

/// Drops a parsed message without recursion. Dropping nested
/// `PartType::Message` values recursively overflows the stack for a message
/// of some ten thousand nested message/rfc822 parts (a 500 kB message), and a
/// stack overflow aborts the whole process.
pub(crate) fn dismantle(message: Message<'_>) {
    let mut stack = vec![message];
    while let Some(mut message) = stack.pop() {
        for part in &mut message.parts {
            if matches!(part.body, PartType::Message(_))
                && let PartType::Message(inner) =
                    std::mem::replace(&mut part.body, PartType::Multipart(Vec::new()))
            {
                stack.push(inner);
            }
        }
    }
}

/// Where a part may lie: inside its parent's body, or exactly on the body of
/// the message/rfc822 part that encapsulates it.
#[derive(Clone, Copy)]
struct Frame {
    start: usize,
    end: usize,
    /// The part fills the frame exactly (root of a message).
    exact: bool,
}

impl Frame {
    fn root(len: usize) -> Frame {
        Frame {
            start: 0,
            end: len,
            exact: true,
        }
    }
}

fn build(
    raw: &[u8],
    message: &Message<'_>,
    index: usize,
    frame: Frame,
    parent_is_digest: bool,
    depth: usize,
) -> Part {
    let Some(mp) = message.parts.get(index) else {
        let mut part = Part::from_header(b"", false, frame.start, frame.start, frame.end);
        part.finish_leaf(raw);
        return part;
    };
    // The parser's offsets, forced into the frame so that every slice taken
    // later is in bounds and nested parts stay inside their parents.
    let clamp = |v: u32, lo: usize| (v as usize).clamp(lo, frame.end.max(lo));
    let header_start = if frame.exact {
        frame.start
    } else {
        clamp(mp.offset_header, frame.start)
    };
    let body_start = clamp(mp.offset_body, header_start);
    let body_end = if frame.exact {
        frame.end.max(body_start)
    } else {
        clamp(mp.offset_end, body_start)
    };
    let header = raw.get(header_start..body_start).unwrap_or_default();
    let mut part = Part::from_header(header, parent_is_digest, header_start, body_start, body_end);
    match &mp.body {
        PartType::Multipart(children) if depth < MAX_DEPTH => {
            if part.media_type != b"multipart" {
                part.media_type = b"multipart".to_vec();
                part.media_subtype = b"mixed".to_vec();
            }
            let is_digest = part.media_subtype == b"digest";
            let inner = Frame {
                start: body_start,
                end: body_end,
                exact: false,
            };
            let parts = children
                .iter()
                .map(|&c| c as usize)
                // Children come after their parent; anything else would be a
                // cycle.
                .filter(|&c| c > index)
                .map(|c| build(raw, message, c, inner, is_digest, depth + 1))
                .collect();
            part.content = Content::Multipart(parts);
        }
        PartType::Message(inner) if mp.encoding == Encoding::None && depth < MAX_DEPTH => {
            let frame = Frame {
                start: body_start,
                end: body_end,
                exact: true,
            };
            let root = build(raw, inner, 0, frame, false, depth + 1);
            let envelope = Envelope::parse(
                raw.get(root.header_start..root.body_start)
                    .unwrap_or_default(),
            );
            if part.media_type != b"message" {
                part.media_type = b"message".to_vec();
                part.media_subtype = b"rfc822".to_vec();
            }
            part.content = Content::Message {
                lines: count_lines(raw.get(body_start..body_end).unwrap_or_default()),
                message: Box::new(Encapsulated { envelope, root }),
            };
        }
        _ => part.finish_leaf(raw),
    }
    part
}

fn count_lines(body: &[u8]) -> usize {
    body.iter().filter(|&&b| b == b'\n').count()
}

fn default_charset() -> Vec<Param> {
    vec![Param {
        name: b"charset".to_vec(),
        value: b"us-ascii".to_vec(),
    }]
}

impl Part {
    /// A part described by its MIME header fields, with `Content::Basic` until
    /// the caller knows what is inside.
    fn from_header(
        header: &[u8],
        parent_is_digest: bool,
        header_start: usize,
        body_start: usize,
        body_end: usize,
    ) -> Part {
        let mut part = Part {
            header_start,
            body_start,
            body_end,
            media_type: Vec::new(),
            media_subtype: Vec::new(),
            params: Vec::new(),
            id: None,
            description: None,
            encoding: None,
            md5: None,
            disposition: None,
            language: Vec::new(),
            location: None,
            content: Content::Basic,
        };
        let mut content_type = None;
        // The last occurrence wins, as in mail-parser, so that the type shown
        // is the one the parser split the part by.
        for field in header::fields(header) {
            let name = field.name.to_ascii_lowercase();
            let nonempty = || Some(unfold(field.value)).filter(|v| !v.is_empty());
            match name.as_slice() {
                b"content-type" => content_type = Some(params::parse(field.value, true)),
                b"content-transfer-encoding" => {
                    let value = unfold(field.value);
                    let token: Vec<u8> = value
                        .iter()
                        .take_while(|&&b| !matches!(b, b' ' | b'\t' | b'(' | b';'))
                        .map(u8::to_ascii_lowercase)
                        .collect();
                    part.encoding = Some(token).filter(|t| !t.is_empty());
                }
                b"content-id" => part.id = nonempty(),
                b"content-description" => part.description = nonempty(),
                b"content-md5" => part.md5 = nonempty(),
                b"content-location" => part.location = nonempty(),
                b"content-language" => {
                    part.language = unfold(field.value)
                        .split(|&b| b == b',')
                        .map(|t| header::trim(t).to_vec())
                        .filter(|t| !t.is_empty())
                        .collect();
                }
                b"content-disposition" => {
                    let parsed = params::parse(field.value, false);
                    part.disposition = Some(Disposition {
                        kind: parsed.kind,
                        params: parsed.params,
                    })
                    .filter(|d| !d.kind.is_empty());
                }
                _ => {}
            }
        }
        match content_type {
            Some(ct) if !ct.kind.is_empty() && ct.subtype.is_some() => {
                part.media_type = ct.kind;
                part.media_subtype = ct.subtype.unwrap_or_default();
                part.params = ct.params;
            }
            // RFC 2046 §5.1.5: in a digest the default is message/rfc822;
            // elsewhere RFC 2045 §5.2's text/plain, also for a Content-Type
            // that cannot be parsed.
            _ if parent_is_digest => {
                part.media_type = b"message".to_vec();
                part.media_subtype = b"rfc822".to_vec();
            }
            _ => {
                part.media_type = b"text".to_vec();
                part.media_subtype = b"plain".to_vec();
            }
        }
        if part.media_type == b"text"
            && !part
                .params
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case(b"charset"))
        {
            // RFC 2046 §4.1.2: no charset means US-ASCII; saying so spares
            // the client the guess.
            part.params.extend(default_charset());
        }
        part
    }

    /// Sets `content` for a part the parser did not open.
    fn finish_leaf(&mut self, raw: &[u8]) {
        let body = raw.get(self.body_start..self.body_end).unwrap_or_default();
        match self.media_type.as_slice() {
            b"multipart" => {
                self.media_type = b"text".to_vec();
                self.media_subtype = b"plain".to_vec();
                self.params = default_charset();
                self.content = Content::Text {
                    lines: count_lines(body),
                };
            }
            b"message" if matches!(self.media_subtype.as_slice(), b"rfc822" | b"global") => {
                if !matches!(
                    self.encoding.as_deref(),
                    None | Some(b"7bit" | b"8bit" | b"binary")
                ) {
                    self.media_type = b"application".to_vec();
                    self.media_subtype = b"octet-stream".to_vec();
                    self.content = Content::Basic;
                    return;
                }
                let mut root =
                    Part::from_header(b"", false, self.body_start, self.body_start, self.body_end);
                root.content = Content::Text {
                    lines: count_lines(body),
                };
                self.content = Content::Message {
                    lines: count_lines(body),
                    message: Box::new(Encapsulated {
                        envelope: Envelope::default(),
                        root,
                    }),
                };
            }
            b"text" => {
                self.content = Content::Text {
                    lines: count_lines(body),
                }
            }
            _ => self.content = Content::Basic,
        }
    }
}

impl Envelope {
    /// The envelope of the header `header` (RFC 9051 §7.5.2). The first
    /// occurrence of each field counts.
    pub(crate) fn parse(header: &[u8]) -> Envelope {
        let mut env = Envelope::default();
        let mut seen = [false; 10];
        for field in header::fields(header) {
            let name = field.name.to_ascii_lowercase();
            let slot = match name.as_slice() {
                b"date" => 0,
                b"subject" => 1,
                b"from" => 2,
                b"sender" => 3,
                b"reply-to" => 4,
                b"to" => 5,
                b"cc" => 6,
                b"bcc" => 7,
                b"in-reply-to" => 8,
                b"message-id" => 9,
                _ => continue,
            };
            if std::mem::replace(&mut seen[slot], true) {
                continue;
            }
            let value = unfold(field.value);
            match slot {
                0 => env.date = Some(value),
                1 => env.subject = Some(value),
                2 => env.from = address::parse_list(&value),
                3 => env.sender = address::parse_list(&value),
                4 => env.reply_to = address::parse_list(&value),
                5 => env.to = address::parse_list(&value),
                6 => env.cc = address::parse_list(&value),
                7 => env.bcc = address::parse_list(&value),
                8 => env.in_reply_to = Some(value),
                _ => env.message_id = Some(value),
            }
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_content_type_is_text_plain_us_ascii() {
        let s = summarize(b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(s.root.media_type, b"text");
        assert_eq!(s.root.params, default_charset());
        assert_eq!(s.root.content, Content::Text { lines: 1 });
        assert_eq!(s.header_len(), 14);
    }

    #[test]
    fn multipart_without_boundary_is_text() {
        let s = summarize(b"Content-Type: multipart/mixed\r\n\r\nno parts\r\n");
        assert_eq!(s.root.media_type, b"text");
        assert_eq!(s.root.media_subtype, b"plain");
    }

    #[test]
    fn base64_message_rfc822_is_opaque() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0KDQp5DQo=\r\n--b--\r\n";
        let s = summarize(raw);
        let Content::Multipart(parts) = &s.root.content else {
            panic!("not multipart: {s:?}");
        };
        assert_eq!(parts[0].media_type, b"application");
        assert_eq!(parts[0].content, Content::Basic);
    }

    #[test]
    fn empty_message_rfc822_gets_an_empty_envelope() {
        let raw = b"Content-Type: message/rfc822\r\n\r\n";
        let s = summarize(raw);
        let Content::Message { message, .. } = &s.root.content else {
            panic!("not a message: {s:?}");
        };
        assert_eq!(message.envelope, Envelope::default());
    }

    #[test]
    fn digest_parts_default_to_message() {
        let raw = b"Content-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\nSubject: inner\r\n\r\nx\r\n--b--\r\n";
        let s = summarize(raw);
        let Content::Multipart(parts) = &s.root.content else {
            panic!("not multipart: {s:?}");
        };
        assert_eq!(parts[0].media_type, b"message");
        let Content::Message { message, .. } = &parts[0].content else {
            panic!("not a message: {parts:?}");
        };
        assert_eq!(message.envelope.subject.as_deref(), Some(&b"inner"[..]));
    }

    #[test]
    fn deep_nesting_neither_overflows_nor_grows_unbounded() {
        let mut raw = Vec::new();
        for _ in 0..20_000 {
            raw.extend_from_slice(b"Subject: x\r\nContent-Type: message/rfc822\r\n\r\n");
        }
        raw.extend_from_slice(b"Subject: end\r\n\r\nbody\r\n");
        let s = summarize(&raw);
        let mut depth = 0;
        let mut part = &s.root;
        while let Content::Message { message, .. } = &part.content {
            part = &message.root;
            depth += 1;
        }
        assert!(depth <= MAX_DEPTH + 1, "{depth}");
    }

    #[test]
    fn empty_input() {
        let s = summarize(b"");
        assert_eq!(s.size(), 0);
        assert_eq!(s.header_len(), 0);
    }
}
