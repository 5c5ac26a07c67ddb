//! Header fields split out of raw bytes, byte for byte.
//!
//! IMAP serves header lines exactly as they were delivered (RFC 9051 §6.4.5:
//! `HEADER.FIELDS` returns the lines themselves, folding included), so this
//! splitter hands back slices of the original bytes rather than parsed values.
//! It is also what keeps header-only fetches cheap: it reads nothing past the
//! blank line that ends a header.

/// One header field: its name, its value and the lines it occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    /// The field name with surrounding white space removed; empty for a
    /// malformed line that has no colon.
    pub name: &'a [u8],
    /// Everything after the colon, folding included, without the final line
    /// ending.
    pub value: &'a [u8],
    /// The whole field as delivered: every line, each with its line ending.
    pub raw: &'a [u8],
}

/// Iterates over the fields of a header, stopping at the blank line that ends
/// it (RFC 5322 §2.1) or at the end of the bytes.
pub(crate) fn fields(header: &[u8]) -> Fields<'_> {
    Fields { header, pos: 0 }
}

pub(crate) struct Fields<'a> {
    header: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let start = self.pos;
        let first_end = line_end(self.header, start)?;
        let first = &self.header[start..first_end];
        if is_blank(first) {
            // Stay on the blank line: the header is over for good.
            return None;
        }
        let mut end = first_end;
        // RFC 5322 §2.2.3: a line that starts with white space continues the
        // field before it.
        while let Some(&next) = self.header.get(end) {
            if next != b' ' && next != b'\t' {
                break;
            }
            match line_end(self.header, end) {
                Some(e) => end = e,
                None => break,
            }
        }
        self.pos = end;
        let raw = &self.header[start..end];
        let body = strip_line_ending(raw);
        let (name, value) = match first.iter().position(|&b| b == b':') {
            Some(colon) => (trim(&first[..colon]), &body[(colon + 1).min(body.len())..]),
            None => (&b""[..], body),
        };
        Some(Field { name, value, raw })
    }
}

/// The offset just past the blank line that ends the header at the start of
/// `raw`, or `raw.len()` when there is no blank line (a message that is all
/// header).
pub fn header_end(raw: &[u8]) -> usize {
    let mut pos = 0;
    while let Some(end) = line_end(raw, pos) {
        if is_blank(&raw[pos..end]) {
            return end;
        }
        pos = end;
    }
    raw.len()
}

/// The offset just past the line that starts at `pos` (its `\n` included), or
/// `None` when `pos` is at the end.
fn line_end(bytes: &[u8], pos: usize) -> Option<usize> {
    if pos >= bytes.len() {
        return None;
    }
    Some(
        bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| pos + i + 1),
    )
}

fn is_blank(line: &[u8]) -> bool {
    matches!(line, b"\r\n" | b"\n" | b"\r")
}

/// `line` without its final CRLF or LF.
pub(crate) fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Unfolds a field value (RFC 5322 §2.2.3: remove each CRLF that is followed
/// by white space) and trims it. A CR or LF that is not part of a fold stays,
/// so a value that really holds one is rendered as a literal.
pub(crate) fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let fold_len = match &value[i..] {
            [b'\r', b'\n', b' ' | b'\t', ..] => 2,
            [b'\n', b' ' | b'\t', ..] => 1,
            _ => 0,
        };
        if fold_len > 0 {
            i += fold_len;
            continue;
        }
        out.push(value[i]);
        i += 1;
    }
    trim(&out).to_vec()
}

/// The value of the first field named `name` (ASCII case-insensitive).
pub(crate) fn first_value<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    fields(header)
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| f.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_folded_fields_and_stops_at_the_blank_line() {
        let raw = b"To: a@b,\r\n c@d\r\nSubject: hi\r\nbad line\r\n\r\nBody: no\r\n";
        let all: Vec<_> = fields(raw).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].name, b"To");
        assert_eq!(all[0].value, b" a@b,\r\n c@d");
        assert_eq!(all[0].raw, b"To: a@b,\r\n c@d\r\n");
        assert_eq!(all[1].name, b"Subject");
        assert_eq!(all[2].name, b"");
        assert_eq!(all[2].value, b"bad line");
        assert_eq!(header_end(raw), 41);
        assert_eq!(&raw[header_end(raw)..], b"Body: no\r\n");
    }

    #[test]
    fn header_without_blank_line_is_the_whole_message() {
        let raw = b"From: a@b\r\nSubject: x";
        assert_eq!(header_end(raw), raw.len());
        let all: Vec<_> = fields(raw).collect();
        assert_eq!(all[1].raw, b"Subject: x");
        assert_eq!(all[1].value, b" x");
    }

    #[test]
    fn bare_lf_is_a_line_ending_too() {
        let raw = b"A: 1\n b\nC: 2\n\nbody";
        assert_eq!(header_end(raw), 14);
        assert_eq!(fields(raw).count(), 2);
        assert_eq!(
            unfold(fields(raw).next().map(|f| f.value).unwrap_or_default()),
            b"1 b"
        );
    }

    #[test]
    fn unfold_removes_folds_only() {
        assert_eq!(unfold(b"  a\r\n b\r\n\tc  "), b"a b\tc");
        assert_eq!(unfold(b"a\rb"), b"a\rb");
        assert_eq!(first_value(b"x: 1\r\nX: 2\r\n", "X"), Some(&b" 1"[..]));
    }
}
