//! Message previews (RFC 8970 PREVIEW): a short plain-text extract of what a reader
//! sees first when the message is opened.
//!
//! RFC 8970 §3.1 leaves the algorithm to the server and fixes the result: plain text,
//! UTF-8, not transfer-encoded, at most 256 characters (200 recommended), an empty
//! string when there is no text to show. Here, as Dovecot does it:
//!
//! - The text comes from the first body part a client would display, found in the
//!   MIME summary (JMAP's textBody rules, RFC 8621 §4.1.4, which mail-parser follows
//!   too): inline `text/plain` or `text/html`, not an attachment; of a
//!   `multipart/alternative` the plain version first, of a `multipart/related` its
//!   root; attached messages are not opened. When a part gives no text, the next one
//!   is tried.
//! - Only that part is decoded (transfer encoding, then charset), and only its first
//!   [`PART_WINDOW`] octets: a preview never costs more than that however big the
//!   message, and an attachment is never decoded at all.
//! - HTML becomes text ([`html_to_text`]): tags, comments, `<head>`, `<script>` and
//!   `<style>` dropped, entities decoded, block elements line breaks, and
//!   `<blockquote>` quoted lines.
//! - Quoted lines (`>` in the first column, RFC 3676 §4.5) and the signature after a
//!   `-- ` line (RFC 3676 §4.3) are left out; if the part holds nothing but quotes,
//!   the quoted text is the preview, marked with a leading `>`.
//! - White space runs, line breaks included, become one space; control characters
//!   go, and so do words made only of invisible characters (the zero-width padding
//!   marketing mail puts after its teaser). The result is cut at [`PREVIEW_CHARS`]
//!   characters, never inside one.
//!
//! Like the rest of the crate it takes bytes and returns text: no I/O, no panics.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::html::add_html_token;

use crate::decode;
use crate::params::Param;
use crate::summary::{Content, MessageSummary, Part};

/// The longest preview, in characters (Unicode scalar values). RFC 8970 §3.1: SHOULD
/// be at most 200, MUST NOT be more than 256.
pub const PREVIEW_CHARS: usize = 200;

/// How much of a part's body is read for its preview. Enough for any reasonable
/// amount of quoted text or HTML markup before the first words of the message; the
/// rest of a long part cannot change the first 200 characters.
const PART_WINDOW: usize = 256 * 1024;

/// The preview of a message ([`PREVIEW_CHARS`] characters at most, possibly empty).
pub fn preview(raw: &[u8], summary: &MessageSummary) -> String {
    for part in body_parts(summary.root()) {
        let Some(text) = part_text(raw, part) else {
            continue;
        };
        let text = if part.media_subtype == b"html" {
            html_to_text(&text)
        } else {
            text
        };
        let preview = preview_of_text(&text, PREVIEW_CHARS);
        if !preview.is_empty() {
            return preview;
        }
    }
    String::new()
}

/// The parts a client would display as the message body, in the order the preview
/// tries them.
fn body_parts(root: &Part) -> Vec<&Part> {
    let mut found = Vec::new();
    // (part, its index among its siblings); an explicit stack, in reverse, so the
    // walk is in document order and cannot recurse however deep the nesting.
    let mut stack: Vec<(&Part, usize)> = vec![(root, 0)];
    while let Some((part, index)) = stack.pop() {
        match &part.content {
            Content::Multipart(children) => {
                let mut order: Vec<(&Part, usize)> = match part.media_subtype.as_slice() {
                    // RFC 2387: the root (first) part is what is shown.
                    b"related" => children.iter().take(1).map(|c| (c, 0)).collect(),
                    _ => children.iter().enumerate().map(|(i, c)| (c, i)).collect(),
                };
                if part.media_subtype == b"alternative" {
                    // The plain version first: the same content, no markup to strip.
                    order.sort_by_key(|(c, _)| !is_plain(c));
                }
                stack.extend(order.into_iter().rev());
            }
            // An attached message is an attachment (RFC 8621 §4.1.4).
            Content::Message { .. } | Content::Basic => {}
            Content::Text { .. } => {
                let displayed = part.media_type == b"text"
                    && matches!(part.media_subtype.as_slice(), b"plain" | b"html")
                    && !is_attachment(part, index);
                if displayed {
                    found.push(part);
                }
            }
        }
    }
    found
}

fn is_plain(part: &Part) -> bool {
    part.media_type == b"text" && part.media_subtype == b"plain"
}

/// RFC 8621 §4.1.4: a part is an attachment when its disposition says so, or when it
/// has a file name and is not the first of its siblings.
fn is_attachment(part: &Part, index: usize) -> bool {
    let disposition = part.disposition.as_ref();
    if disposition.is_some_and(|d| d.kind == b"attachment") {
        return true;
    }
    let named = |params: &[Param], name: &[u8]| {
        params.iter().any(|p| {
            let base = p.name.strip_suffix(b"*").unwrap_or(&p.name);
            base.eq_ignore_ascii_case(name)
        })
    };
    let has_name =
        named(&part.params, b"name") || disposition.is_some_and(|d| named(&d.params, b"filename"));
    index > 0 && has_name
}

/// The decoded text of a text part's first [`PART_WINDOW`] octets. `None` when its
/// transfer encoding is unknown.
fn part_text(raw: &[u8], part: &Part) -> Option<String> {
    let body = raw.get(part.body_start..part.body_end)?;
    let cut = body.len() > PART_WINDOW;
    let body = if cut {
        // At a line end, so no encoded unit is split (base64 and quoted-printable
        // lines are short).
        let window = &body[..PART_WINDOW];
        let end = window
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(PART_WINDOW, |i| i + 1);
        &body[..end]
    } else {
        body
    };
    let decoded = match part.encoding.as_deref() {
        None | Some(b"7bit" | b"8bit" | b"binary") => body.to_vec(),
        Some(b"base64") => decode::base64(body),
        Some(b"quoted-printable") => decode::quoted_printable(body),
        Some(_) => return None,
    };
    let charset = part
        .params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(b"charset"))
        .map(|p| p.value.as_slice());
    let mut text = to_utf8(&decoded, charset);
    if cut {
        // The window may end inside a character (or a multi-byte sequence of a legacy
        // charset): drop the last word, which the preview would hardly reach anyway.
        let keep = text.trim_end().rfind(char::is_whitespace).unwrap_or(0);
        text.truncate(keep);
    }
    Some(text)
}

/// Text in `charset` as UTF-8; malformed input and unknown charsets decode with
/// replacement characters. 8-bit text said to be US-ASCII (as every part without a
/// charset is, RFC 2046 §4.1.2) is mislabelled: read as UTF-8 when it is that, else
/// as mail-parser reads such text (Windows-1252).
fn to_utf8(bytes: &[u8], charset: Option<&[u8]>) -> String {
    let ascii_label = charset
        .is_none_or(|c| c.eq_ignore_ascii_case(b"us-ascii") || c.eq_ignore_ascii_case(b"ascii"));
    if ascii_label && let Ok(text) = std::str::from_utf8(bytes) {
        return text.to_string();
    }
    let decoder = charset.and_then(|c| {
        // Third-party code fed untrusted bytes (see `summarize`).
        catch_unwind(AssertUnwindSafe(|| charset_decoder(c)))
            .ok()
            .flatten()
    });
    decoder
        .and_then(|decode| catch_unwind(AssertUnwindSafe(|| decode(bytes))).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

/// Characters a reader cannot see: a word of nothing else is padding, not text.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
    )
}

/// Words of one kind of line (quoted or not), white space collapsed, up to a limit.
#[derive(Default)]
struct Words {
    text: String,
    chars: usize,
}

impl Words {
    /// Appends a word (after a space if something came before), cut at `limit`.
    fn push(&mut self, word: &str, limit: usize) {
        if word.chars().all(is_invisible) || self.chars >= limit {
            return;
        }
        if self.chars > 0 {
            if self.chars + 1 >= limit {
                // A space would be the last character.
                self.chars = limit;
                return;
            }
            self.text.push(' ');
            self.chars += 1;
        }
        for c in word.chars() {
            if self.chars == limit {
                break;
            }
            self.text.push(c);
            self.chars += 1;
        }
    }

    fn full(&self, limit: usize) -> bool {
        self.chars >= limit
    }

    /// Every white-space-separated word of `line`, control characters dropped.
    fn push_line(&mut self, line: &str, limit: usize) {
        for word in line.split(|c: char| c.is_whitespace()) {
            if word.is_empty() {
                continue;
            }
            if word.chars().any(char::is_control) {
                let clean: String = word.chars().filter(|c| !c.is_control()).collect();
                self.push(&clean, limit);
            } else {
                self.push(word, limit);
            }
            if self.full(limit) {
                return;
            }
        }
    }
}

/// The preview of plain text (lines separated by LF or CRLF): its words outside
/// quoted lines and the signature, or failing those the quoted words after a `>`.
/// At most `limit` characters, never ending in white space.
pub(crate) fn preview_of_text(text: &str, limit: usize) -> String {
    let mut own = Words::default();
    let mut quoted = Words::default();
    // The `>` the quoted fallback starts with counts.
    let quoted_limit = limit.saturating_sub(1);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "-- " {
            break;
        }
        match line.strip_prefix('>') {
            Some(rest) if !quoted.full(quoted_limit) => {
                let rest = rest.trim_start_matches(|c: char| c == '>' || c.is_whitespace());
                quoted.push_line(rest, quoted_limit);
            }
            Some(_) => {}
            None => {
                own.push_line(line, limit);
                if own.full(limit) {
                    break;
                }
            }
        }
    }
    if own.chars > 0 {
        own.text
    } else if quoted.chars > 0 {
        format!(">{}", quoted.text)
    } else {
        String::new()
    }
}

/// Elements whose content is not shown; skipped to their end tag.
const HIDDEN: [&str; 4] = ["script", "style", "title", "template"];

/// Elements that end a line where they start and where they end.
const BLOCKS: [&str; 36] = [
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "caption",
    "center",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "html",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tr",
];

/// Text written line by line, `>` before every line inside a `<blockquote>`.
struct HtmlText {
    out: String,
    quote_level: usize,
    /// Nothing but white space written on the current line yet.
    line_start: bool,
    /// White space seen since the last character written.
    space: bool,
}

impl HtmlText {
    fn char(&mut self, c: char) {
        if c.is_whitespace() {
            self.space = true;
            return;
        }
        if self.line_start {
            if self.quote_level > 0 {
                self.out.push('>');
            }
            self.line_start = false;
        } else if self.space {
            self.out.push(' ');
        }
        self.space = false;
        self.out.push(c);
    }

    fn str(&mut self, s: &str) {
        s.chars().for_each(|c| self.char(c));
    }

    fn newline(&mut self) {
        if !self.line_start {
            self.out.push('\n');
        }
        self.line_start = true;
        self.space = false;
    }
}

/// Text of an HTML document as a reader sees it, for [`preview_of_text`]: markup,
/// comments, `<head>`, `<script>`, `<style>` and `<title>` dropped; entities decoded;
/// a line break at `<br>` and at every block element; the lines of a `<blockquote>`
/// begin with `>`; source line breaks are plain white space. Malformed markup is read
/// the way browsers mostly do, never failing.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut text = HtmlText {
        out: String::with_capacity(html.len().min(64 * 1024)),
        quote_level: 0,
        line_start: true,
        space: false,
    };
    let bytes = html.as_bytes();
    let mut in_head = false;
    let mut i = 0;
    while i < bytes.len() {
        // Only ASCII delimiters are matched, so every index below is a char boundary.
        match bytes[i] {
            b'<' => {
                let rest = &html[i + 1..];
                if let Some(comment) = rest.strip_prefix("!--") {
                    i = comment
                        .find("-->")
                        .map_or(bytes.len(), |end| html.len() - comment.len() + end + 3);
                } else if let Some(cdata) = rest.strip_prefix("![CDATA[") {
                    let end = cdata.find("]]>").unwrap_or(cdata.len());
                    if !in_head {
                        text.str(&cdata[..end]);
                    }
                    i = (html.len() - cdata.len() + end + 3).min(bytes.len());
                } else if rest.starts_with(['!', '?']) {
                    i = tag_end(bytes, i + 1);
                } else if let Some((name, closing)) = tag_name(rest) {
                    let end = tag_end(bytes, i + 1);
                    let self_closing = end >= 2 && bytes[end - 2] == b'/';
                    i = end;
                    if !closing && !self_closing && HIDDEN.contains(&name.as_str()) {
                        i = skip_element(html, i, &name);
                        continue;
                    }
                    match name.as_str() {
                        "head" => in_head = !closing,
                        "body" => in_head = false,
                        "br" => text.newline(),
                        "td" | "th" => text.space = true,
                        "blockquote" => {
                            text.newline();
                            text.quote_level = if closing {
                                text.quote_level.saturating_sub(1)
                            } else {
                                text.quote_level + 1
                            };
                        }
                        block if BLOCKS.contains(&block) => text.newline(),
                        _ => {}
                    }
                } else {
                    // A `<` that opens no tag is text.
                    if !in_head {
                        text.char('<');
                    }
                    i += 1;
                }
            }
            b'&' => {
                let (decoded, next) = entity(html, i);
                if !in_head {
                    text.str(&decoded);
                }
                i = next;
            }
            _ => {
                let c = html[i..].chars().next().unwrap_or(' ');
                if !in_head {
                    text.char(c);
                }
                i += c.len_utf8().max(1);
            }
        }
    }
    text.out
}

/// The lower-cased name of the tag `rest` starts with (after its `<`), and whether it
/// is an end tag. `None` when `rest` does not start a tag.
fn tag_name(rest: &str) -> Option<(String, bool)> {
    let (rest, closing) = match rest.strip_prefix('/') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let name: String = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b':')
        .map(|b| b.to_ascii_lowercase() as char)
        .collect();
    Some((name, closing))
}

/// Just past the `>` closing the tag that starts at `start`; attribute values in
/// quotes may hold `>`. The end of the input when there is none.
fn tag_end(bytes: &[u8], start: usize) -> usize {
    let mut quote: Option<u8> = None;
    let mut i = start;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return i + 1,
            None => {}
        }
        i += 1;
    }
    bytes.len()
}

/// Just past the end tag of the `name` element whose content starts at `from` (its
/// text is raw: no tags inside count), or the end of the input.
fn skip_element(html: &str, from: usize, name: &str) -> usize {
    let bytes = html.as_bytes();
    let mut i = from;
    while let Some(offset) = bytes[i..].iter().position(|&b| b == b'<') {
        let at = i + offset;
        let after = &bytes[at + 1..];
        if after.first() == Some(&b'/')
            && after.len() > name.len()
            && after[1..=name.len()].eq_ignore_ascii_case(name.as_bytes())
            && !after
                .get(name.len() + 1)
                .is_some_and(|b| b.is_ascii_alphanumeric())
        {
            return tag_end(bytes, at + 1);
        }
        i = at + 1;
    }
    bytes.len()
}

/// The character reference at `at` (its `&`) decoded, and where the text goes on. An
/// `&` that starts no reference is itself.
fn entity(html: &str, at: usize) -> (String, usize) {
    let rest = &html.as_bytes()[at + 1..];
    let len = rest
        .iter()
        .take(32)
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'#')
        .count();
    if len == 0 || rest.get(len) != Some(&b';') {
        return ("&".to_string(), at + 1);
    }
    let token = &html.as_bytes()[at..at + len + 2];
    let mut decoded = String::new();
    // `token` is ASCII, as the function wants (it assumes UTF-8); a name it does not
    // know comes back as written.
    let ok = catch_unwind(AssertUnwindSafe(|| {
        add_html_token(&mut decoded, token, false);
    }));
    if ok.is_err() {
        decoded = String::from_utf8_lossy(token).into_owned();
    }
    (decoded, at + len + 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summarize;

    fn of(raw: &str) -> String {
        let raw = raw.replace('\n', "\r\n");
        preview(raw.as_bytes(), &summarize(raw.as_bytes()))
    }

    #[test]
    fn plain_text_collapses_white_space_and_skips_quotes() {
        assert_eq!(
            of("Subject: x\n\n  Hello   there,\n\n\thow are\n you?\n"),
            "Hello there, how are you?"
        );
        assert_eq!(of("Subject: x\n\nline1\n>quote2\nline2\n"), "line1 line2");
        // Only `>` in the first column quotes (a space-stuffed one does not).
        assert_eq!(
            of("Subject: x\n\nline1\n>quote2\n> quote3\n > line4\n\n  \t\nline5\n"),
            "line1 > line4 line5"
        );
        // All quoted: the quote is the preview, marked.
        assert_eq!(of("Subject: x\n\n>quote1\n>> quote2\n"), ">quote1 quote2");
        assert_eq!(
            of("Subject: x\n\n>q1\n>q2\nbottom\nposter\n"),
            "bottom poster"
        );
        // The signature is not the message.
        assert_eq!(
            of("Subject: x\n\nThanks!\n-- \nJane Doe\nACME Corp\n"),
            "Thanks!"
        );
        // `--` without the space is text.
        assert_eq!(of("Subject: x\n\na\n--\nb\n"), "a -- b");
    }

    #[test]
    fn nothing_to_show_is_an_empty_preview() {
        assert_eq!(of("Subject: x\n\n"), "");
        assert_eq!(of("Subject: x\n\n   \n\t\n"), "");
        assert_eq!(
            of("Subject: x\nContent-Type: application/pdf\n\n%PDF-1.4\n"),
            ""
        );
        // An attached message is not opened.
        assert_eq!(
            of("Subject: x\nContent-Type: message/rfc822\n\nSubject: in\n\ninner text\n"),
            ""
        );
        // Only padding.
        assert_eq!(
            of("Subject: x\nContent-Type: text/html\n\n<p>&zwnj;&nbsp;&#8203; &#847;</p>\n"),
            ""
        );
    }

    #[test]
    fn transfer_encodings_and_charsets_are_undone() {
        assert_eq!(
            of("Subject: x\nContent-Type: text/plain; charset=utf-8\n\
                Content-Transfer-Encoding: quoted-printable\n\n\
                hyv=C3=A4=C3=A4 p=C3=A4iv=C3=A4=C3=A4 soft=\n break\n"),
            "hyvää päivää soft break"
        );
        assert_eq!(
            of("Subject: x\nContent-Type: text/plain; charset=\"UTF-8\"\n\
                Content-Transfer-Encoding: base64\n\n\
                R3LDvMOfZSBhdXMgS8O2bG4=\n"),
            "Grüße aus Köln"
        );
        let latin1 = b"Subject: x\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
            Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xe9 cr\xe8me\r\n";
        assert_eq!(preview(latin1, &summarize(latin1)), "Café crème");
        // No charset: UTF-8 if it is that, else Windows-1252.
        let unlabelled = "Subject: x\r\n\r\nna\u{ef}ve caf\u{e9}\r\n";
        assert_eq!(
            preview(unlabelled.as_bytes(), &summarize(unlabelled.as_bytes())),
            "na\u{ef}ve caf\u{e9}"
        );
        let cp1252 = b"Subject: x\r\n\r\n\x93quoted\x94 caf\xe9\r\n";
        assert_eq!(
            preview(cp1252, &summarize(cp1252)),
            "\u{201c}quoted\u{201d} caf\u{e9}"
        );
        // An encoding nobody knows gives nothing rather than garbage.
        assert_eq!(
            of("Subject: x\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 f\n"),
            ""
        );
    }

    #[test]
    fn the_part_a_client_shows_is_chosen() {
        // Alternative: the plain version, whatever the order.
        let alternative = "Subject: x\nContent-Type: multipart/alternative; boundary=b\n\n\
            --b\nContent-Type: text/html\n\n<p>HTML <b>version</b></p>\n\
            --b\nContent-Type: text/plain\n\nPlain version\n--b--\n";
        assert_eq!(of(alternative), "Plain version");
        // HTML only, inside related with an image.
        let related = "Subject: x\nContent-Type: multipart/related; boundary=r\n\n\
            --r\nContent-Type: text/html\n\n<html><head><title>T</title>\
            <style>p {color: red}</style></head><body><p>Hi,</p><p>How&nbsp;is it \
            going? &amp; you&#x21;</p></body></html>\n\
            --r\nContent-Type: text/plain\n\nnot the root\n--r--\n";
        assert_eq!(of(related), "Hi, How is it going? & you!");
        // Mixed: an attachment first is skipped; an empty first text gives way.
        let mixed = "Subject: x\nContent-Type: multipart/mixed; boundary=m\n\n\
            --m\nContent-Type: text/plain\nContent-Disposition: attachment; filename=a.txt\n\n\
            attached\n\
            --m\nContent-Type: text/plain\n\n\n\
            --m\nContent-Type: text/plain; name=notes.txt\n\nnamed later part\n\
            --m\nContent-Type: text/plain\n\nthe body\n--m--\n";
        assert_eq!(of(mixed), "the body");
    }

    #[test]
    fn html_becomes_lines_of_text() {
        assert_eq!(
            html_to_text("<div>Hi,<br>line<!-- c -> --> two</div><script>x<y</script>end"),
            "Hi,\nline two\nend"
        );
        assert_eq!(
            html_to_text("a<blockquote>q1<p>q2</p></blockquote>b"),
            "a\n>q1\n>q2\nb"
        );
        assert_eq!(
            html_to_text("<a href='x>y'>link</a> 1 < 2 &unknown; &amp &lt;tag&gt;"),
            "link 1 < 2 &unknown; &amp <tag>"
        );
        assert_eq!(html_to_text("<STYLE type=x>b{}</Style >ok"), "ok");
        assert_eq!(html_to_text("<td>a</td><td>b</td>"), "a b");
        assert_eq!(html_to_text("<p>unclosed <b"), "unclosed");
        assert_eq!(html_to_text("<![CDATA[raw <b>]]>x"), "raw <b>x");
        // Quoted text of HTML replies is left out like `>` lines.
        let reply = "Content-Type: text/html\n\n<div>Sure.</div><div class=gmail_quote>\
            On Mon, Ann wrote:<blockquote>Lunch?</blockquote></div>\n";
        assert_eq!(of(reply), "Sure. On Mon, Ann wrote:");
    }

    #[test]
    fn previews_are_cut_at_200_characters_never_inside_one() {
        let body = "ä".repeat(150) + " " + &"€".repeat(150);
        let text = of(&format!(
            "Subject: x\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
        ));
        assert_eq!(text.chars().count(), PREVIEW_CHARS);
        assert_eq!(text, "ä".repeat(150) + " " + &"€".repeat(49));
        // No trailing space when the cut falls on one.
        let words = "abcd ".repeat(100);
        let cut = preview_of_text(&words, 10);
        assert_eq!(cut, "abcd abcd");
        assert_eq!(preview_of_text("ab cd", 3), "ab");
        assert_eq!(preview_of_text(">quoted long text", 7), ">quoted");
        // Control characters go; words of invisible characters go; emoji sequences
        // joined by ZWJ stay.
        assert_eq!(
            preview_of_text(
                "a\u{0}b \u{200c}\u{a0}\u{200b} c\u{7}\n\u{1F469}\u{200D}\u{1F4BB}",
                50
            ),
            "ab c \u{1F469}\u{200D}\u{1F4BB}"
        );
    }

    #[test]
    fn long_parts_are_read_only_in_part() {
        // Quoted text longer than the window: the preview falls back to it, whole
        // words only.
        let quoted = "> quoted words here\n".repeat(PART_WINDOW / 20 + 100);
        let text = of(&format!("Subject: x\n\n{quoted}the end\n"));
        assert!(text.starts_with(">quoted words here quoted"), "{text}");
        assert!(!text.contains("the end"));
    }

    #[test]
    fn any_bytes_give_a_bounded_utf8_preview() {
        use proptest::prelude::*;
        let config = ProptestConfig {
            cases: 256,
            ..ProptestConfig::default()
        };
        proptest!(config, |(body in proptest::collection::vec(any::<u8>(), 0..2000),
                            html in any::<bool>())| {
            let mut raw = if html {
                b"Subject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n".to_vec()
            } else {
                b"Subject: x\r\n\r\n".to_vec()
            };
            raw.extend_from_slice(&body);
            let text = preview(&raw, &summarize(&raw));
            prop_assert!(text.chars().count() <= PREVIEW_CHARS);
            prop_assert!(!text.contains(['\r', '\n', '\0']));
            prop_assert_eq!(text.trim(), text.as_str());
        });
    }
}
