//! Decoded text for SEARCH (RFC 9051 §6.4.4): header values with RFC 2047
//! encoded words decoded, body text with transfer encoding and charset
//! undone, and the Date header as a point in time.
//!
//! Unlike FETCH, SEARCH compares what a person reads, so here mail-parser's
//! decoding is exactly what is wanted. Header searches read only the header.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};

use serde::{Deserialize, Serialize};

use crate::header::{self, unfold};
use crate::summary::dismantle;

/// The values of all top-level header fields named `name` (ASCII
/// case-insensitive), RFC 2047-decoded to UTF-8, white space runs collapsed.
pub fn header_values(raw: &[u8], name: &str) -> Vec<String> {
    let head = &raw[..header::header_end(raw)];
    header::fields(head)
        .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| decode_words(&unfold(f.value)))
        .collect()
}

/// The values of every field of `header` (a message's header block), RFC 2047-decoded
/// as [`header_values`] gives them, in the header's order: what SEARCH TEXT compares
/// besides the raw header and the body. One pass, however many fields: a header of
/// 400,000 distinct fields costs what its size does.
pub fn all_header_values(header: &[u8]) -> Vec<String> {
    header::fields(header)
        .filter(|f| !f.name.is_empty())
        .map(|f| decode_words(&unfold(f.value)))
        .collect()
}

/// The header text SEARCH TEXT reads: the raw header block (lossy UTF-8) and then
/// every decoded value, a line each. What a full-text index must hold for TEXT to be
/// narrowed without losing a match, once the caller has folded its case as its exact
/// check does.
pub fn header_search_text(header: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(header).into_owned();
    for value in all_header_values(header) {
        text.push('\n');
        text.push_str(&value);
    }
    text
}

/// What SEARCH FROM, TO, CC, BCC, SUBJECT and SENT* compare, decoded once at append
/// and kept beside the message: a search over a big folder then reads a few bytes per
/// message instead of parsing its header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchFields {
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: Vec<String>,
    /// The first Date header, as [`sent_date`] gives it.
    pub sent: Option<(i64, i32)>,
}

impl SearchFields {
    /// Every value of the field `name`, as [`header_values`] gives them, when it is
    /// one of the fields kept.
    pub fn values(&self, name: &str) -> Option<&[String]> {
        let kept = [
            ("From", &self.from),
            ("To", &self.to),
            ("Cc", &self.cc),
            ("Bcc", &self.bcc),
            ("Subject", &self.subject),
        ];
        kept.into_iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, values)| values.as_slice())
    }
}

/// The [`SearchFields`] of a message.
pub fn search_fields(raw: &[u8]) -> SearchFields {
    SearchFields {
        from: header_values(raw, "From"),
        to: header_values(raw, "To"),
        cc: header_values(raw, "Cc"),
        bcc: header_values(raw, "Bcc"),
        subject: header_values(raw, "Subject"),
        sent: sent_date(raw),
    }
}

/// One unfolded header value as a person reads it: RFC 2047 encoded words decoded to
/// UTF-8, as [`header_values`] gives each value. For values kept raw elsewhere, such as
/// an [`crate::Envelope`]'s subject and display names (SORT and THREAD, RFC 5256).
pub fn decode_header_text(value: &[u8]) -> String {
    decode_words(value)
}

/// RFC 2047 decoding of one unfolded value, through mail-parser's
/// unstructured-field parser (it wants the field's line ending).
fn decode_words(value: &[u8]) -> String {
    let mut line = Vec::with_capacity(value.len() + 1);
    line.extend_from_slice(value);
    line.push(b'\n');
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        match MessageStream::new(&line).parse_unstructured() {
            HeaderValue::Text(text) => Some(text.into_owned()),
            _ => None,
        }
    }));
    match decoded {
        Ok(Some(text)) => text,
        Ok(None) => String::new(),
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    }
}

/// The text of every `text/*` part (nested messages included), transfer
/// encoding and charset decoded to UTF-8, joined by newlines.
pub fn body_text(raw: &[u8]) -> String {
    let text = catch_unwind(AssertUnwindSafe(|| {
        MessageParser::default().parse(raw).and_then(|message| {
            let text = collect_text(&message, usize::MAX);
            dismantle(message);
            text
        })
    }));
    match text {
        Ok(Some(text)) => text,
        // Unparseable: search what there is after the header.
        _ => String::from_utf8_lossy(&raw[header::header_end(raw)..]).into_owned(),
    }
}

/// The text [`body_text`] makes of a parsed message; `None` once it would pass `limit`
/// bytes (nothing more is copied then).
pub(crate) fn collect_text(message: &Message<'_>, limit: usize) -> Option<String> {
    let mut out = String::new();
    // An explicit stack: nested messages can be nested deeply.
    let mut stack: Vec<(&Message<'_>, usize)> = vec![(message, 0)];
    while let Some((message, index)) = stack.pop() {
        let Some(part) = message.parts.get(index) else {
            continue;
        };
        stack.push((message, index + 1));
        let is_text = part
            .content_type()
            .is_none_or(|ct| ct.ctype().eq_ignore_ascii_case("text"));
        match &part.body {
            PartType::Text(text) | PartType::Html(text) if is_text => {
                let separator = usize::from(!out.is_empty());
                if out.len() + separator + text.len() > limit {
                    return None;
                }
                if separator == 1 {
                    out.push('\n');
                }
                out.push_str(text);
            }
            PartType::Message(inner) => stack.push((inner, 0)),
            _ => {}
        }
    }
    Some(out)
}

/// The first Date header as (Unix seconds, zone offset in seconds east of
/// UTC), for SENTBEFORE / SENTON / SENTSINCE. `None` when absent or invalid.
pub fn sent_date(raw: &[u8]) -> Option<(i64, i32)> {
    let head = &raw[..header::header_end(raw)];
    parse_date(header::first_value(head, "Date")?)
}

/// A Date header value (folded or not) as [`sent_date`] reads it; for the raw date an
/// [`crate::Envelope`] keeps (SORT's DATE, RFC 5256 §2.2).
pub fn parse_date(value: &[u8]) -> Option<(i64, i32)> {
    let mut line = unfold(value);
    line.push(b'\n');
    let parsed = catch_unwind(AssertUnwindSafe(|| MessageStream::new(&line).parse_date())).ok()?;
    let HeaderValue::DateTime(dt) = parsed else {
        return None;
    };
    if !dt.is_valid() {
        return None;
    }
    let offset = i32::from(dt.tz_hour) * 3600 + i32::from(dt.tz_minute) * 60;
    let offset = if dt.tz_before_gmt { -offset } else { offset };
    Some((dt.to_timestamp(), offset))
}
