//! FETCH responses (RFC 9051 §7.5.2, RFC 3516 BINARY, RFC 7162 MODSEQ, RFC 8970
//! PREVIEW): which detail a request needs from the store, and how each data item is
//! written.

use std::borrow::Cow;
use std::io::Write;

use portico_mime::SectionPart;

use crate::command::{FetchAttr, FetchItems, Partial, PreviewForm, Section, SectionText};
use crate::request::{Detail, MessageData};
use crate::response;

/// The item list with the macros expanded (RFC 9051 §6.4.5).
pub fn expand(items: &FetchItems) -> Vec<FetchAttr> {
    use FetchAttr::*;
    match items {
        FetchItems::All => vec![Flags, InternalDate, Rfc822Size, Envelope],
        FetchItems::Fast => vec![Flags, InternalDate, Rfc822Size],
        FetchItems::Full => vec![Flags, InternalDate, Rfc822Size, Envelope, Body],
        FetchItems::List(list) => list.clone(),
    }
}

/// The least the store must read for these items. Header-only sections of the whole
/// message need only the header block, never the body (nor the MIME summary).
pub fn detail(attrs: &[FetchAttr]) -> Detail {
    attrs
        .iter()
        .map(|attr| match attr {
            FetchAttr::Flags
            | FetchAttr::Uid
            | FetchAttr::InternalDate
            | FetchAttr::Rfc822Size
            | FetchAttr::ModSeq
            | FetchAttr::EmailId
            | FetchAttr::ThreadId
            | FetchAttr::SaveDate => Detail::Meta,
            FetchAttr::Envelope | FetchAttr::Body | FetchAttr::BodyStructure => Detail::Summary,
            FetchAttr::Rfc822Header => Detail::HeaderText,
            FetchAttr::BodySection { section, .. } if section.part.is_empty() => {
                match &section.text {
                    Some(SectionText::HeaderFields(names))
                        if portico_mime::kept_header_covers(names) =>
                    {
                        Detail::KeptHeader
                    }
                    Some(SectionText::Header)
                    | Some(SectionText::HeaderFields(_))
                    | Some(SectionText::HeaderFieldsNot(_)) => Detail::HeaderText,
                    _ => Detail::Full,
                }
            }
            // The summary finds the text part, which is read from the message.
            FetchAttr::Preview(_) => Detail::Full,
            _ => Detail::Full,
        })
        .fold(Detail::Meta, Detail::join)
}

/// Whether the store may keep a big message while these items are rendered: every item
/// that needs the whole message is a slice of it (BODY[], BODY[TEXT], RFC822,
/// RFC822.TEXT, a part's BODY[n], BODY[n.TEXT], BODY[n.MIME] or BODY[n.HEADER], partial
/// or not), whose literal is a range of the stored bytes for the host to stream.
/// BINARY and a part's HEADER.FIELDS need the message read.
pub fn streamable(attrs: &[FetchAttr]) -> bool {
    attrs.iter().all(|attr| {
        detail(std::slice::from_ref(attr)) < Detail::Full
            || match attr {
                FetchAttr::Rfc822 | FetchAttr::Rfc822Text => true,
                FetchAttr::BodySection { section, .. } => is_stored_slice(section),
                _ => false,
            }
    })
}

/// Whether the section is a slice of the stored message: all are but the header-field
/// picks.
fn is_stored_slice(section: &Section) -> bool {
    !matches!(
        section.text,
        Some(SectionText::HeaderFields(_) | SectionText::HeaderFieldsNot(_))
    )
}

/// A literal whose bytes stay in the store: `len` bytes of message `uid` from `start`,
/// to be written at offset `at` of the rendered output (after its `{len}` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredLiteral {
    pub at: usize,
    pub uid: u32,
    pub start: u64,
    pub len: u64,
}

/// Whether fetching these items sets \Seen (RFC 9051 §6.4.5: BODY[...] and RFC822,
/// RFC822.TEXT and BINARY[...] without .PEEK).
pub fn sets_seen(attrs: &[FetchAttr]) -> bool {
    attrs.iter().any(|attr| match attr {
        FetchAttr::BodySection { peek, .. } | FetchAttr::Binary { peek, .. } => !peek,
        FetchAttr::Rfc822 | FetchAttr::Rfc822Text => true,
        _ => false,
    })
}

/// How the client wants text rendered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderStyle {
    /// UTF-8 allowed in quoted strings (IMAP4rev2 / UTF8=ACCEPT).
    pub utf8: bool,
    /// \Recent is reported (IMAP4rev1).
    pub recent: bool,
}

/// An item the message could not give (BINARY of an unknown encoding).
#[derive(Debug, PartialEq, Eq)]
pub enum RenderError {
    UnknownCte,
}

/// Writes `BODY[<section>]` as the response names it: once per message and item, so
/// straight into the response, without building strings.
fn write_section_name(out: &mut Vec<u8>, section: &Section) {
    out.extend_from_slice(b"BODY[");
    for (i, part) in section.part.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        let _ = write!(out, "{part}");
    }
    let names = |out: &mut Vec<u8>, keyword: &[u8], names: &[String]| {
        out.extend_from_slice(keyword);
        out.extend_from_slice(b" (");
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(name.as_bytes());
        }
        out.push(b')');
    };
    if let Some(text) = &section.text {
        if !section.part.is_empty() {
            out.push(b'.');
        }
        match text {
            SectionText::Header => out.extend_from_slice(b"HEADER"),
            SectionText::Text => out.extend_from_slice(b"TEXT"),
            SectionText::Mime => out.extend_from_slice(b"MIME"),
            SectionText::HeaderFields(list) => names(out, b"HEADER.FIELDS", list),
            SectionText::HeaderFieldsNot(list) => names(out, b"HEADER.FIELDS.NOT", list),
        }
    }
    out.push(b']');
}

/// The MIME crate's name for a section's text specifier.
pub(crate) fn mime_part(text: &Option<SectionText>) -> SectionPart {
    match text {
        None => SectionPart::Full,
        Some(SectionText::Header) => SectionPart::Header,
        Some(SectionText::HeaderFields(names)) => SectionPart::HeaderFields(names.clone()),
        Some(SectionText::HeaderFieldsNot(names)) => SectionPart::HeaderFieldsNot(names.clone()),
        Some(SectionText::Text) => SectionPart::Text,
        Some(SectionText::Mime) => SectionPart::Mime,
    }
}

fn partial_slice(bytes: &[u8], partial: Option<Partial>) -> &[u8] {
    match partial {
        None => bytes,
        Some(Partial { origin, count }) => {
            let start = (origin as usize).min(bytes.len());
            let end = start.saturating_add(count as usize).min(bytes.len());
            &bytes[start..end]
        }
    }
}

fn literal(out: &mut Vec<u8>, bytes: &[u8], binary: bool) {
    out.reserve(bytes.len() + 16);
    if binary && bytes.contains(&0) {
        out.push(b'~');
    }
    let _ = write!(out, "{{{}}}\r\n", bytes.len());
    out.extend_from_slice(bytes);
}

/// The bytes of a BODY[section] from what the store gave.
fn body_section<'a>(message: &'a MessageData, section: &Section) -> Cow<'a, [u8]> {
    let raw = message.raw.as_deref().unwrap_or_default();
    let Some(summary) = &message.summary else {
        // Read with Detail::HeaderText: `raw` is the header block; with
        // Detail::KeptHeader, the kept lines of it, enough for the fields asked.
        return match &section.text {
            Some(SectionText::HeaderFields(names)) if section.part.is_empty() => {
                Cow::Owned(portico_mime::header_fields(raw, names, false))
            }
            Some(SectionText::HeaderFieldsNot(names)) if section.part.is_empty() => {
                Cow::Owned(portico_mime::header_fields(raw, names, true))
            }
            _ => Cow::Borrowed(raw),
        };
    };
    if section.part.is_empty() && section.text.is_none() {
        return Cow::Borrowed(raw);
    }
    portico_mime::section(raw, summary, &section.part, &mime_part(&section.text))
        .unwrap_or(Cow::Borrowed(b""))
}

/// Writes `* seq FETCH (...)` for one message read whole.
pub fn render(
    out: &mut Vec<u8>,
    seq: u32,
    message: &MessageData,
    attrs: &[FetchAttr],
    style: RenderStyle,
    recent: bool,
) -> Result<(), RenderError> {
    render_streaming(out, &mut Vec::new(), seq, message, attrs, style, recent)
}

/// The bytes `range` (start, length) of the message names, with `partial` applied.
fn partial_range(range: (u64, u64), partial: Option<Partial>) -> (u64, u64) {
    match partial {
        None => range,
        Some(Partial { origin, count }) => {
            let skip = u64::from(origin).min(range.1);
            (range.0 + skip, u64::from(count).min(range.1 - skip))
        }
    }
}

/// A literal of a message left in the store: announced, and listed for the host to
/// stream.
fn stored_literal(
    items: &mut Vec<u8>,
    streamed: &mut Vec<StoredLiteral>,
    message: &MessageData,
    range: (u64, u64),
) {
    let _ = write!(items, "{{{}}}\r\n", range.1);
    streamed.push(StoredLiteral {
        at: items.len(),
        uid: message.uid,
        start: range.0,
        len: range.1,
    });
}

/// [`render`] for a message that may be left in the store ([`MessageData::raw_in_store`],
/// with `raw` its header block): the literals of the message and of its text are
/// announced and listed in `streamed`, offsets into `out`.
pub fn render_streaming(
    out: &mut Vec<u8>,
    streamed: &mut Vec<StoredLiteral>,
    seq: u32,
    message: &MessageData,
    attrs: &[FetchAttr],
    style: RenderStyle,
    recent: bool,
) -> Result<(), RenderError> {
    let first_streamed = streamed.len();
    let header_len = message.summary.as_ref().map_or(message.size, |summary| {
        (summary.header_len() as u64).min(message.size)
    });
    let whole = (0, message.size);
    let text = (header_len, message.size - header_len);
    let mut items: Vec<u8> = Vec::with_capacity(256);
    // Computed once however many forms of it the client asks for.
    let mut preview_text: Option<String> = None;
    for attr in attrs {
        if !items.is_empty() {
            items.push(b' ');
        }
        let raw = message.raw.as_deref().unwrap_or_default();
        match attr {
            FetchAttr::Uid => {
                let _ = write!(items, "UID {}", message.uid);
            }
            FetchAttr::Flags => {
                items.extend_from_slice(b"FLAGS ");
                if style.recent && recent {
                    let mut flags = message.flags.clone();
                    flags.push("\\Recent".into());
                    response::flag_list(&mut items, &flags);
                } else {
                    response::flag_list(&mut items, &message.flags);
                }
            }
            FetchAttr::InternalDate => {
                items.extend_from_slice(b"INTERNALDATE ");
                response::date_time(&mut items, message.internal_date);
            }
            FetchAttr::Rfc822Size => {
                let _ = write!(items, "RFC822.SIZE {}", message.size);
            }
            FetchAttr::ModSeq => {
                let _ = write!(items, "MODSEQ ({})", message.modseq);
            }
            FetchAttr::EmailId => {
                let _ = write!(items, "EMAILID (M{})", message.email_id);
            }
            FetchAttr::ThreadId => items.extend_from_slice(b"THREADID NIL"),
            // RFC 8514 §4.2: NIL when the save date is not known.
            FetchAttr::SaveDate => match message.save_date {
                Some(date) => {
                    items.extend_from_slice(b"SAVEDATE ");
                    response::date_time(&mut items, date);
                }
                None => items.extend_from_slice(b"SAVEDATE NIL"),
            },
            FetchAttr::Envelope => {
                items.extend_from_slice(b"ENVELOPE ");
                match &message.summary {
                    Some(summary) => items.extend_from_slice(&summary.envelope(style.utf8)),
                    None => items.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"),
                }
            }
            FetchAttr::BodyStructure | FetchAttr::Body => {
                let extensible = matches!(attr, FetchAttr::BodyStructure);
                items.extend_from_slice(if extensible {
                    b"BODYSTRUCTURE "
                } else {
                    b"BODY "
                });
                match &message.summary {
                    Some(summary) => {
                        items.extend_from_slice(&summary.bodystructure(extensible, style.utf8))
                    }
                    None => items.extend_from_slice(
                        b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)",
                    ),
                }
            }
            FetchAttr::Rfc822 => {
                items.extend_from_slice(b"RFC822 ");
                if message.raw_in_store {
                    stored_literal(&mut items, streamed, message, whole);
                } else {
                    literal(&mut items, raw, false);
                }
            }
            FetchAttr::Rfc822Header => {
                items.extend_from_slice(b"RFC822.HEADER ");
                let header = body_section(
                    message,
                    &Section {
                        part: vec![],
                        text: Some(SectionText::Header),
                    },
                );
                literal(&mut items, &header, false);
            }
            FetchAttr::Rfc822Text if message.raw_in_store => {
                items.extend_from_slice(b"RFC822.TEXT ");
                stored_literal(&mut items, streamed, message, text);
            }
            FetchAttr::Rfc822Text => {
                items.extend_from_slice(b"RFC822.TEXT ");
                let text = body_section(
                    message,
                    &Section {
                        part: vec![],
                        text: Some(SectionText::Text),
                    },
                );
                literal(&mut items, &text, false);
            }
            FetchAttr::BodySection {
                section, partial, ..
            } if message.raw_in_store && is_stored_slice(section) => {
                write_section_name(&mut items, section);
                if let Some(partial) = partial {
                    let _ = write!(items, "<{}>", partial.origin);
                }
                items.push(b' ');
                let range = match (&section.text, &message.summary) {
                    _ if section.part.is_empty() && section.text.is_none() => whole,
                    (Some(SectionText::Text), _) if section.part.is_empty() => text,
                    (_, Some(summary)) => {
                        let part = mime_part(&section.text);
                        portico_mime::section_range(summary, &section.part, &part)
                            .map_or((0, 0), |(start, end)| {
                                (start as u64, end.saturating_sub(start) as u64)
                            })
                    }
                    (_, None) => (0, 0),
                };
                if range.1 == 0 {
                    literal(&mut items, b"", false);
                } else {
                    stored_literal(
                        &mut items,
                        streamed,
                        message,
                        partial_range(range, *partial),
                    );
                }
            }
            FetchAttr::BodySection {
                section, partial, ..
            } => {
                let bytes = body_section(message, section);
                write_section_name(&mut items, section);
                if let Some(partial) = partial {
                    let _ = write!(items, "<{}>", partial.origin);
                }
                items.push(b' ');
                // A section holding NUL (a binary part, RFC 3516) can only be a literal8.
                literal(&mut items, partial_slice(&bytes, *partial), true);
            }
            FetchAttr::Binary { part, partial, .. } => {
                let decoded = binary(message, part)?;
                let spec: Vec<String> = part.iter().map(u32::to_string).collect();
                let _ = write!(items, "BINARY[{}]", spec.join("."));
                if let Some(partial) = partial {
                    let _ = write!(items, "<{}>", partial.origin);
                }
                items.push(b' ');
                literal(&mut items, partial_slice(&decoded, *partial), true);
            }
            // RFC 8970 §3.1: always computed, so never NIL (not even for LAZY); a
            // message without text to show has an empty preview. The text is UTF-8,
            // which a client that has not enabled it gets as a literal.
            FetchAttr::Preview(form) => {
                let text = preview_text.get_or_insert_with(|| preview(message));
                let (name, fuzzy) = match form {
                    PreviewForm::Rfc8970 => ("PREVIEW ", false),
                    PreviewForm::Fuzzy => ("PREVIEW ", true),
                    PreviewForm::Snippet => ("SNIPPET ", true),
                };
                items.extend_from_slice(name.as_bytes());
                if fuzzy {
                    items.extend_from_slice(b"(FUZZY ");
                }
                response::string(&mut items, text.as_bytes(), style.utf8);
                if fuzzy {
                    items.push(b')');
                }
            }
            FetchAttr::BinarySize { part } => {
                let decoded = binary(message, part)?;
                let spec: Vec<String> = part.iter().map(u32::to_string).collect();
                items.extend_from_slice(
                    format!("BINARY.SIZE[{}] {}", spec.join("."), decoded.len()).as_bytes(),
                );
            }
        }
    }
    out.reserve(items.len() + 24);
    response::fetch_start(out, seq);
    for literal in &mut streamed[first_streamed..] {
        literal.at += out.len();
    }
    out.extend_from_slice(&items);
    out.extend_from_slice(b")\r\n");
    Ok(())
}

/// The preview of a message read whole ([`detail`] asks for it); one the host gave
/// without its MIME summary gets one made here.
fn preview(message: &MessageData) -> String {
    let raw = message.raw.as_deref().unwrap_or_default();
    match &message.summary {
        Some(summary) => portico_mime::preview(raw, summary),
        None => portico_mime::preview(raw, &portico_mime::summarize(raw)),
    }
}

fn binary<'a>(message: &'a MessageData, part: &[u32]) -> Result<Cow<'a, [u8]>, RenderError> {
    let raw = message.raw.as_deref().unwrap_or_default();
    if part.is_empty() {
        return Ok(Cow::Borrowed(raw));
    }
    let Some(summary) = &message.summary else {
        return Ok(Cow::Borrowed(b""));
    };
    match portico_mime::binary_section(raw, summary, part) {
        Some(Ok(bytes)) => Ok(Cow::Owned(bytes)),
        Some(Err(_)) => Err(RenderError::UnknownCte),
        None => Ok(Cow::Borrowed(b"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::DateTime;

    #[test]
    fn section_names_are_written_as_clients_asked_for_them() {
        let cases: [(Vec<u32>, Option<SectionText>, &str); 7] = [
            (vec![], None, "BODY[]"),
            (vec![1, 2], None, "BODY[1.2]"),
            (vec![], Some(SectionText::Header), "BODY[HEADER]"),
            (vec![3], Some(SectionText::Mime), "BODY[3.MIME]"),
            (vec![1], Some(SectionText::Text), "BODY[1.TEXT]"),
            (
                vec![],
                Some(SectionText::HeaderFields(vec![
                    "FROM".into(),
                    "Subject".into(),
                ])),
                "BODY[HEADER.FIELDS (FROM Subject)]",
            ),
            (
                vec![2, 1],
                Some(SectionText::HeaderFieldsNot(vec!["X-Spam".into()])),
                "BODY[2.1.HEADER.FIELDS.NOT (X-Spam)]",
            ),
        ];
        for (part, text, expected) in cases {
            let mut out = b"* ".to_vec();
            write_section_name(&mut out, &Section { part, text });
            assert_eq!(String::from_utf8_lossy(&out[2..]), expected);
        }
    }

    fn message(raw: &[u8]) -> MessageData {
        MessageData {
            uid: 7,
            email_id: 0,
            flags: vec!["\\Seen".into()],
            internal_date: DateTime {
                timestamp: 0,
                offset: 0,
            },
            save_date: None,
            size: raw.len() as u64,
            modseq: 3,
            summary: Some(portico_mime::summarize(raw)),
            raw: Some(raw.to_vec()),
            fields: None,
            raw_in_store: false,
        }
    }

    #[test]
    fn header_only_sections_need_only_the_header() {
        let attrs = vec![
            FetchAttr::Uid,
            FetchAttr::BodySection {
                peek: true,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::HeaderFields(vec![
                        "From".into(),
                        "Subject".into(),
                    ])),
                },
                partial: None,
            },
        ];
        // Fields clients list folders by: the lines kept at append are enough.
        assert_eq!(detail(&attrs), Detail::KeptHeader);
        // With an item that needs the MIME summary: both.
        let with_envelope = [attrs.clone(), vec![FetchAttr::Envelope]].concat();
        assert_eq!(detail(&with_envelope), Detail::Header);
        assert!(!sets_seen(&attrs));
        // A field that is not kept needs the header block.
        let received = FetchAttr::BodySection {
            peek: true,
            section: Section {
                part: vec![],
                text: Some(SectionText::HeaderFields(vec!["Received".into()])),
            },
            partial: None,
        };
        assert_eq!(
            detail(&[attrs.clone(), vec![received.clone()]].concat()),
            Detail::HeaderText
        );
        assert_eq!(detail(&[received, FetchAttr::Envelope]), Detail::Header);
        assert_eq!(detail(&[FetchAttr::Flags, FetchAttr::Uid]), Detail::Meta);
        assert_eq!(detail(&[FetchAttr::Envelope]), Detail::Summary);
        assert_eq!(detail(&[FetchAttr::Rfc822]), Detail::Full);
        assert!(sets_seen(&[FetchAttr::Rfc822Text]));
    }

    #[test]
    fn body_sections_render_with_partial_origin() {
        let raw = b"Subject: hi\r\nFrom: a@b.c\r\n\r\nhello world\r\n";
        let mut out = Vec::new();
        let attrs = vec![
            FetchAttr::Uid,
            FetchAttr::BodySection {
                peek: false,
                section: Section {
                    part: vec![],
                    text: None,
                },
                partial: Some(Partial {
                    origin: 0,
                    count: 7,
                }),
            },
            FetchAttr::BodySection {
                peek: true,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::Text),
                },
                partial: None,
            },
        ];
        render(
            &mut out,
            1,
            &message(raw),
            &attrs,
            RenderStyle::default(),
            false,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* 1 FETCH (UID 7 BODY[]<0> {7}\r\nSubject BODY[TEXT] {13}\r\nhello world\r\n)\r\n"
        );
    }

    /// RFC 8514 §4.2: SAVEDATE is a date-time in the zone the host gives, or NIL when
    /// the save date is not known; it needs the metadata alone.
    #[test]
    fn savedate_renders_the_date_or_nil() {
        let attrs = [FetchAttr::Uid, FetchAttr::SaveDate, FetchAttr::InternalDate];
        assert_eq!(detail(&attrs), Detail::Meta);
        let known = MessageData {
            // 2015-01-01 17:50:53 UTC, shown at +0100.
            save_date: Some(DateTime {
                timestamp: 1_420_134_653,
                offset: 3600,
            }),
            ..message(b"Subject: s\r\n\r\nx\r\n")
        };
        let render_one = |m: &MessageData| {
            let mut out = Vec::new();
            render(&mut out, 998, m, &attrs, RenderStyle::default(), false).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            render_one(&known),
            "* 998 FETCH (UID 7 SAVEDATE \"01-Jan-2015 18:50:53 +0100\" \
             INTERNALDATE \"01-Jan-1970 00:00:00 +0000\")\r\n"
        );
        let unknown = MessageData {
            save_date: None,
            ..known
        };
        assert_eq!(
            render_one(&unknown),
            "* 998 FETCH (UID 7 SAVEDATE NIL INTERNALDATE \"01-Jan-1970 00:00:00 +0000\")\r\n"
        );
    }

    /// RFC 8970 §3: PREVIEW reads the message, does not set \Seen and is a string,
    /// quoted with UTF-8 only for a client that enabled it; the drafts' forms carry
    /// the algorithm; a message with no text to show previews as "".
    #[test]
    fn previews_render_in_every_form() {
        let attrs = [
            FetchAttr::Preview(PreviewForm::Rfc8970),
            FetchAttr::Preview(PreviewForm::Fuzzy),
            FetchAttr::Preview(PreviewForm::Snippet),
        ];
        assert_eq!(detail(&attrs[..1]), Detail::Full);
        assert!(!sets_seen(&attrs));
        assert!(!streamable(&attrs));
        let raw = "Subject: s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
            Hej \"Åsa\",\r\n\r\nvi ses.\r\n> old\r\n";
        let render_one = |m: &MessageData, attrs: &[FetchAttr], utf8: bool| {
            let mut out = Vec::new();
            let style = RenderStyle {
                utf8,
                recent: false,
            };
            render(&mut out, 4, m, attrs, style, false).unwrap();
            String::from_utf8(out).unwrap()
        };
        let m = message(raw.as_bytes());
        assert_eq!(
            render_one(&m, &attrs, true),
            "* 4 FETCH (PREVIEW \"Hej \\\"Åsa\\\", vi ses.\" \
             PREVIEW (FUZZY \"Hej \\\"Åsa\\\", vi ses.\") \
             SNIPPET (FUZZY \"Hej \\\"Åsa\\\", vi ses.\"))\r\n"
        );
        assert_eq!(
            render_one(&m, &attrs[..1], false),
            "* 4 FETCH (PREVIEW {19}\r\nHej \"Åsa\", vi ses.)\r\n"
        );
        // Without the summary the host usually gives, the same preview.
        let bare = MessageData {
            summary: None,
            ..message(raw.as_bytes())
        };
        assert_eq!(
            render_one(&bare, &attrs[..1], true),
            render_one(&m, &attrs[..1], true)
        );
        let empty = message(b"Subject: s\r\nContent-Type: image/png\r\n\r\niVBORw0K\r\n");
        assert_eq!(
            render_one(&empty, &[FetchAttr::Uid, attrs[2].clone()], false),
            "* 4 FETCH (UID 7 SNIPPET (FUZZY \"\"))\r\n"
        );
    }

    /// A big message left in the store renders its parts as ranges of the stored bytes;
    /// filled in, they are exactly what rendering the message read whole gives.
    #[test]
    fn streamed_parts_match_parts_read_whole() {
        let raw: &[u8] = b"Subject: outer\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n\
            --o\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n\
            --o\r\nContent-Type: message/rfc822\r\n\r\n\
            Subject: inner\r\n\r\ninner body\r\n\
            --o--\r\n";
        let whole = message(raw);
        let mut stored = message(raw);
        stored.raw_in_store = true;
        stored.raw = Some(raw[..whole.summary.as_ref().unwrap().header_len()].to_vec());
        let section = |part: Vec<u32>, text: Option<SectionText>| FetchAttr::BodySection {
            peek: true,
            section: Section { part, text },
            partial: None,
        };
        let attrs = vec![
            section(vec![1], None),
            section(vec![2], Some(SectionText::Mime)),
            section(vec![2], Some(SectionText::Header)),
            section(vec![2], Some(SectionText::Text)),
            section(vec![2, 1], None),
            section(vec![9], None),
            section(vec![], Some(SectionText::Text)),
            FetchAttr::BodySection {
                peek: true,
                section: Section {
                    part: vec![1],
                    text: None,
                },
                partial: Some(Partial {
                    origin: 6,
                    count: 100,
                }),
            },
        ];
        assert!(streamable(&attrs));
        let style = RenderStyle::default();
        let mut expected = Vec::new();
        render(&mut expected, 1, &whole, &attrs, style, false).unwrap();
        let (mut out, mut streamed) = (Vec::new(), Vec::new());
        render_streaming(&mut out, &mut streamed, 1, &stored, &attrs, style, false).unwrap();
        assert_eq!(
            streamed.len(),
            7,
            "every non-empty section is left in the store"
        );
        for literal in streamed.iter().rev() {
            let (start, len) = (literal.start as usize, literal.len as usize);
            out.splice(
                literal.at..literal.at,
                raw[start..start + len].iter().copied(),
            );
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        let fields = section(
            vec![2],
            Some(SectionText::HeaderFields(vec!["Subject".into()])),
        );
        assert!(!streamable(&[fields]));
    }
}
