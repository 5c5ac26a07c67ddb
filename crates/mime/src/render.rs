//! ENVELOPE and BODYSTRUCTURE in IMAP syntax (RFC 9051 §7.5.2 and §9).
//!
//! Rendering is separate from the summary so that the stored form does not
//! depend on what a client enabled: the same summary serves a UTF8=ACCEPT
//! client (8-bit text in quoted strings) and one that gets literals.

use crate::address::Address;
use crate::params::Param;
use crate::summary::{Content, Disposition, Envelope, MessageSummary, Part};
use crate::wire::{nstring, string, upper};

/// The body a multipart with no parts at all is given: body-type-mpart needs
/// at least one (RFC 9051 §9 `1*body`).
const EMPTY_BODY: &[u8] = b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0";

impl MessageSummary {
    /// RFC 9051 §7.5.2 ENVELOPE:
    /// `(date subject from sender reply-to to cc bcc in-reply-to message-id)`.
    ///
    /// `utf8` says the client enabled UTF8=ACCEPT or IMAP4rev2, so 8-bit
    /// UTF-8 may go in quoted strings; otherwise 8-bit text goes as literals.
    pub fn envelope(&self, utf8: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        render_envelope(&mut out, &self.envelope, utf8);
        out
    }

    /// RFC 9051 §7.5.2 BODYSTRUCTURE (`extensible`, with extension data) or
    /// BODY (without).
    pub fn bodystructure(&self, extensible: bool, utf8: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        render_part(&mut out, &self.root, extensible, utf8);
        out
    }
}

fn render_envelope(out: &mut Vec<u8>, env: &Envelope, utf8: bool) {
    // "If the Sender or Reply-To lines are absent in the [RFC-5322] header,
    // or are present but empty, the server sets the corresponding member of
    // the envelope to be the same value as the from member" (§7.5.2).
    let or_from = |list: &'_ [Address]| -> Vec<Address> {
        if list.is_empty() {
            env.from.clone()
        } else {
            list.to_vec()
        }
    };
    out.push(b'(');
    nstring(out, env.date.as_deref(), utf8);
    out.push(b' ');
    nstring(out, env.subject.as_deref(), utf8);
    for list in [
        &env.from[..],
        &or_from(&env.sender),
        &or_from(&env.reply_to),
        &env.to,
        &env.cc,
        &env.bcc,
    ] {
        out.push(b' ');
        render_addresses(out, list, utf8);
    }
    out.push(b' ');
    nstring(out, env.in_reply_to.as_deref(), utf8);
    out.push(b' ');
    nstring(out, env.message_id.as_deref(), utf8);
    out.push(b')');
}

fn render_addresses(out: &mut Vec<u8>, list: &[Address], utf8: bool) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        nstring(out, a.name.as_deref(), utf8);
        out.push(b' ');
        nstring(out, a.adl.as_deref(), utf8);
        out.push(b' ');
        nstring(out, a.mailbox.as_deref(), utf8);
        out.push(b' ');
        nstring(out, a.host.as_deref(), utf8);
        out.push(b')');
    }
    out.push(b')');
}

fn render_part(out: &mut Vec<u8>, part: &Part, extensible: bool, utf8: bool) {
    out.push(b'(');
    if let Content::Multipart(children) = &part.content {
        // body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
        if children.is_empty() {
            out.extend_from_slice(EMPTY_BODY);
            if extensible {
                out.extend_from_slice(b" NIL NIL NIL NIL");
            }
            out.push(b')');
        }
        for child in children {
            render_part(out, child, extensible, utf8);
        }
        out.push(b' ');
        upper(out, &part.media_subtype, utf8);
        if extensible {
            // body-ext-mpart = body-fld-param [SP body-fld-dsp SP
            // body-fld-lang SP body-fld-loc]
            out.push(b' ');
            render_params(out, &part.params, utf8);
            render_extension_tail(out, part, utf8);
        }
    } else {
        // body-fields = body-fld-param SP body-fld-id SP body-fld-desc SP
        // body-fld-enc SP body-fld-octets
        upper(out, &part.media_type, utf8);
        out.push(b' ');
        upper(out, &part.media_subtype, utf8);
        out.push(b' ');
        render_params(out, &part.params, utf8);
        out.push(b' ');
        nstring(out, part.id.as_deref(), utf8);
        out.push(b' ');
        nstring(out, part.description.as_deref(), utf8);
        out.push(b' ');
        upper(out, part.encoding.as_deref().unwrap_or(b"7bit"), utf8);
        out.push(b' ');
        out.extend_from_slice(
            (part.body_end - part.body_start.min(part.body_end))
                .to_string()
                .as_bytes(),
        );
        match &part.content {
            Content::Text { lines } => {
                out.push(b' ');
                out.extend_from_slice(lines.to_string().as_bytes());
            }
            Content::Message { lines, message } => {
                // body-type-msg adds envelope SP body SP body-fld-lines.
                out.push(b' ');
                render_envelope(out, &message.envelope, utf8);
                out.push(b' ');
                render_part(out, &message.root, extensible, utf8);
                out.push(b' ');
                out.extend_from_slice(lines.to_string().as_bytes());
            }
            Content::Basic | Content::Multipart(_) => {}
        }
        if extensible {
            // body-ext-1part = body-fld-md5 [SP body-fld-dsp SP body-fld-lang
            // SP body-fld-loc]
            out.push(b' ');
            nstring(out, part.md5.as_deref(), utf8);
            render_extension_tail(out, part, utf8);
        }
    }
    out.push(b')');
}

/// ` body-fld-dsp SP body-fld-lang SP body-fld-loc`, shared by both kinds of
/// extension data.
fn render_extension_tail(out: &mut Vec<u8>, part: &Part, utf8: bool) {
    out.push(b' ');
    match &part.disposition {
        None => out.extend_from_slice(b"NIL"),
        Some(Disposition { kind, params }) => {
            out.push(b'(');
            upper(out, kind, utf8);
            out.push(b' ');
            render_params(out, params, utf8);
            out.push(b')');
        }
    }
    out.push(b' ');
    if part.language.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        for (i, tag) in part.language.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            string(out, tag, utf8);
        }
        out.push(b')');
    }
    out.push(b' ');
    nstring(out, part.location.as_deref(), utf8);
}

/// body-fld-param: `("NAME" "value" ...)` or NIL.
fn render_params(out: &mut Vec<u8>, params: &[Param], utf8: bool) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        upper(out, &p.name, utf8);
        out.push(b' ');
        string(out, &p.value, utf8);
    }
    out.push(b')');
}
