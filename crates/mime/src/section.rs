//! `BODY[section]` and `BINARY[section]` from the raw message and its summary.
//!
//! Nothing here parses the message again: a part is found by walking the
//! summary's tree and cut out of the raw bytes by its offsets. Header-field
//! sections read only the header, so a client listing 10,000 messages by
//! `BODY.PEEK[HEADER.FIELDS (From Subject Date)]` costs a header scan each.

use std::borrow::Cow;

use crate::decode;
use crate::header;
use crate::summary::{Content, MessageSummary, Part};

/// What part of a message a FETCH asks for (RFC 9051 §6.4.5 section-spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionPart {
    /// The part number alone (or nothing: the whole message).
    Full,
    Header,
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

/// The part cannot be decoded for BINARY[] because its
/// Content-Transfer-Encoding is unknown; IMAP answers `NO [UNKNOWN-CTE]`
/// (RFC 3516 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown Content-Transfer-Encoding")]
pub struct UnknownCte;

/// The bytes of `BODY[<path>.<part>]`; `path` holds the part numbers, empty
/// for the message itself. `None` when the section does not exist (the caller
/// then sends an empty string, RFC 9051 §6.4.5).
///
/// Part numbering (RFC 9051 §6.4.5): a non-multipart message has only part 1,
/// its body; for a message/rfc822 part, `n.HEADER` and `n.TEXT` are the
/// encapsulated message's header and text, and `n.1` its first part.
/// `HEADER.FIELDS` returns the matching lines as delivered, folding kept,
/// then the blank line; `MIME` is the part's own header, blank line included.
///
/// For the top-level `HEADER` and `HEADER.FIELDS`, `raw` may be just the first
/// [`MessageSummary::header_len`] bytes: nothing past them is read.
pub fn section<'a>(
    raw: &'a [u8],
    summary: &MessageSummary,
    path: &[u32],
    part: &SectionPart,
) -> Option<Cow<'a, [u8]>> {
    if path.is_empty() && *part == SectionPart::Full {
        return Some(Cow::Borrowed(raw));
    }
    if let SectionPart::HeaderFields(names) | SectionPart::HeaderFieldsNot(names) = part {
        let (start, end) = section_range(summary, path, &SectionPart::Header)?;
        let head = raw.get(start..end)?;
        let exclude = matches!(part, SectionPart::HeaderFieldsNot(_));
        return Some(Cow::Owned(header_fields(head, names, exclude)));
    }
    let (start, end) = section_range(summary, path, part)?;
    raw.get(start..end).map(Cow::Borrowed)
}

/// Where in the raw message `BODY[<path>.<part>]` lies, as `start..end`: a section
/// that is a slice of the message (everything but `HEADER.FIELDS`, which picks lines:
/// `None` for it), so that the host can stream a part of a big message from the store
/// without reading the rest. `None` when the section does not exist.
pub fn section_range(
    summary: &MessageSummary,
    path: &[u32],
    part: &SectionPart,
) -> Option<(usize, usize)> {
    let target = if path.is_empty() {
        None
    } else {
        Some(resolve(summary.root(), path)?)
    };
    // The message whose header/text HEADER, TEXT and HEADER.FIELDS mean.
    let message_root = || match target {
        None => Some(summary.root()),
        Some(p) => match &p.content {
            Content::Message { message, .. } => Some(&message.root),
            _ => None,
        },
    };
    match part {
        SectionPart::Full => match target {
            None => Some((0, summary.size())),
            Some(p) => Some((p.body_start, p.body_end)),
        },
        SectionPart::Mime => target.map(|p| (p.header_start, p.body_start)),
        SectionPart::Header => message_root().map(|root| (root.header_start, root.body_start)),
        SectionPart::Text => message_root().map(|root| (root.body_start, root.body_end)),
        SectionPart::HeaderFields(_) | SectionPart::HeaderFieldsNot(_) => None,
    }
}

/// `HEADER.FIELDS (names)` (or `.NOT` when `exclude`) of a header: the
/// matching fields exactly as delivered, then CRLF (RFC 9051 §6.4.5). Takes
/// only the header bytes, so a caller can fetch just `summary.header_len()`
/// bytes from storage.
pub fn header_fields(header: &[u8], names: &[String], exclude: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 2);
    for field in header::fields(header) {
        let named = names
            .iter()
            .any(|n| !field.name.is_empty() && field.name.eq_ignore_ascii_case(n.as_bytes()));
        if named != exclude {
            out.extend_from_slice(field.raw);
            if !field.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The header fields mail clients list folders by (Thunderbird's, Apple Mail's, mutt's,
/// K-9's `HEADER.FIELDS` lists), whose lines [`kept_header_lines`] keeps at append: a
/// `HEADER.FIELDS` naming only these is answered from a few hundred bytes per message,
/// without the rest of the header (Received, DKIM, ARC) or the body log.
pub const KEPT_HEADER_FIELDS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "content-type",
    "content-description",
    "content-transfer-encoding",
    "mime-version",
    "priority",
    "x-priority",
    "importance",
    "newsgroups",
    "followup-to",
    "mail-followup-to",
    "mail-reply-to",
    "list-id",
    "list-post",
    "list-unsubscribe",
    "lines",
    "x-label",
    "x-original-to",
    "delivered-to",
    "disposition-notification-to",
    "return-receipt-to",
    "x-mailing-list",
    "x-uniform-type-identifier",
    "x-universally-unique-identifier",
];

/// Whether `HEADER.FIELDS (names)` can be answered from [`kept_header_lines`].
pub fn kept_header_covers(names: &[String]) -> bool {
    names.iter().all(|name| {
        KEPT_HEADER_FIELDS
            .iter()
            .any(|kept| kept.eq_ignore_ascii_case(name))
    })
}

/// The lines of the [`KEPT_HEADER_FIELDS`] in a message's header, as delivered and in
/// order, then the blank line: itself a header block, so `HEADER.FIELDS` of kept names
/// cut from it equals the same cut from the whole header.
pub fn kept_header_lines(raw: &[u8]) -> Vec<u8> {
    let names: Vec<String> = KEPT_HEADER_FIELDS.iter().map(|n| n.to_string()).collect();
    header_fields(&raw[..header::header_end(raw)], &names, false)
}

/// RFC 3516 `BINARY[path]`: the part's body with its Content-Transfer-Encoding
/// undone. `None` when the part does not exist.
pub fn binary_section(
    raw: &[u8],
    summary: &MessageSummary,
    path: &[u32],
) -> Option<Result<Vec<u8>, UnknownCte>> {
    if path.is_empty() {
        return Some(Ok(raw.to_vec()));
    }
    let part = resolve(summary.root(), path)?;
    let body = raw.get(part.body_start..part.body_end)?;
    if matches!(
        part.content,
        Content::Multipart(_) | Content::Message { .. }
    ) {
        // RFC 2045 §6.4: composite types are never encoded beyond 8bit or
        // binary, so there is nothing to undo.
        return Some(Ok(body.to_vec()));
    }
    Some(match part.encoding.as_deref() {
        None | Some(b"7bit" | b"8bit" | b"binary") => Ok(body.to_vec()),
        Some(b"base64") => Ok(decode::base64(body)),
        Some(b"quoted-printable") => Ok(decode::quoted_printable(body)),
        Some(_) => Err(UnknownCte),
    })
}

/// Finds the part a non-empty section path names.
fn resolve<'s>(root: &'s Part, path: &[u32]) -> Option<&'s Part> {
    let mut current = root;
    for (i, &n) in path.iter().enumerate() {
        let index = usize::try_from(n).ok()?.checked_sub(1)?;
        // The part whose numbering `n` continues: the top-level message at
        // first; then a multipart's own parts, or the message inside a
        // message/rfc822 part.
        let scope = if i == 0 {
            current
        } else {
            match &current.content {
                Content::Multipart(_) => current,
                Content::Message { message, .. } => &message.root,
                Content::Basic | Content::Text { .. } => return None,
            }
        };
        current = match &scope.content {
            Content::Multipart(children) => children.get(index)?,
            // A non-multipart message has one part, its body.
            _ if index == 0 => scope,
            _ => return None,
        };
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summarize;

    fn get(raw: &[u8], path: &[u32], part: SectionPart) -> Option<Vec<u8>> {
        section(raw, &summarize(raw), path, &part).map(Cow::into_owned)
    }

    const FORWARDED_MULTIPART: &[u8] = b"Content-Type: multipart/mixed; boundary=o\r\n\r\n\
        --o\r\nContent-Type: text/plain\r\n\r\nfirst\r\n\
        --o\r\nContent-Type: message/rfc822\r\n\r\n\
        Subject: inner\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n\
        --i\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
        --i\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n\
        --i--\r\n\
        --o--\r\n";

    #[test]
    fn parts_of_a_multipart_inside_message_rfc822() {
        let raw = FORWARDED_MULTIPART;
        assert_eq!(
            get(raw, &[2, 1], SectionPart::Full).as_deref(),
            Some(&b"plain"[..])
        );
        assert_eq!(
            get(raw, &[2, 2], SectionPart::Full).as_deref(),
            Some(&b"<b>html</b>"[..])
        );
        assert_eq!(
            get(raw, &[2, 2], SectionPart::Mime).as_deref(),
            Some(&b"Content-Type: text/html\r\n\r\n"[..])
        );
        assert_eq!(
            get(raw, &[2], SectionPart::Header).as_deref(),
            Some(&b"Subject: inner\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n"[..])
        );
        let text = get(raw, &[2], SectionPart::Text).unwrap_or_default();
        // The CRLF before "--o--" belongs to the outer delimiter (RFC 2046 §5.1.1).
        assert!(
            text.starts_with(b"--i\r\n") && text.ends_with(b"--i--"),
            "{text:?}"
        );
        assert_eq!(get(raw, &[2, 1], SectionPart::Header), None);
        assert_eq!(get(raw, &[2, 3], SectionPart::Full), None);
        assert_eq!(
            get(raw, &[1], SectionPart::Full).as_deref(),
            Some(&b"first"[..])
        );
    }

    #[test]
    fn a_message_that_is_itself_message_rfc822() {
        let raw = b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nbody\r\n";
        assert_eq!(
            get(raw, &[1], SectionPart::Full).as_deref(),
            Some(&b"Subject: in\r\n\r\nbody\r\n"[..])
        );
        assert_eq!(
            get(raw, &[1], SectionPart::Header).as_deref(),
            Some(&b"Subject: in\r\n\r\n"[..])
        );
        assert_eq!(
            get(raw, &[1, 1], SectionPart::Full).as_deref(),
            Some(&b"body\r\n"[..])
        );
        assert_eq!(
            get(raw, &[], SectionPart::Text),
            get(raw, &[1], SectionPart::Full)
        );
    }

    #[test]
    fn header_fields_from_the_header_alone() {
        let raw = b"Subject: a\r\nFrom: b@c\r\nX: 1\r\n\r\nbody";
        let s = summarize(raw);
        let head = &raw[..s.header_len()];
        assert_eq!(
            section(
                head,
                &s,
                &[],
                &SectionPart::HeaderFields(vec!["x".into(), "FROM".into()])
            )
            .as_deref(),
            Some(&b"From: b@c\r\nX: 1\r\n\r\n"[..])
        );
        assert_eq!(
            header_fields(b"Subject: no line end", &["subject".into()], false),
            b"Subject: no line end\r\n\r\n"
        );
    }

    #[test]
    fn kept_lines_answer_header_fields_as_the_whole_header_does() {
        let raw = b"Received: from a by b\r\n\tfor c\r\nFrom: A <a@b.c>\r\n\
            DKIM-Signature: v=1; a=rsa\r\n b=xyz\r\nSubject: folded\r\n line\r\n\
            Date: Sun, 6 Dec 2026 10:00:00 +0000\r\nX-Spam: yes\r\n\r\nbody\r\nFrom: not a header\r\n";
        let kept = kept_header_lines(raw);
        assert_eq!(
            kept,
            b"From: A <a@b.c>\r\nSubject: folded\r\n line\r\nDate: Sun, 6 Dec 2026 10:00:00 +0000\r\n\r\n"
        );
        let names: Vec<String> = ["subject", "FROM", "date", "to"].map(String::from).into();
        assert!(kept_header_covers(&names));
        let whole = &raw[..header::header_end(raw)];
        assert_eq!(
            header_fields(&kept, &names, false),
            header_fields(whole, &names, false)
        );
        assert!(!kept_header_covers(&["Received".to_string()]));
        // A message that is all header, and one with no header.
        assert_eq!(kept_header_lines(b"Subject: x"), b"Subject: x\r\n\r\n");
        assert_eq!(kept_header_lines(b"\r\nbody"), b"\r\n");
    }
}
