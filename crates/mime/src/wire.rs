//! IMAP string syntax for the values inside ENVELOPE and BODYSTRUCTURE.
//!
//! Header text is whatever senders wrote, so each string picks the form that
//! can carry it (RFC 9051 §4.3): a quoted string when it can, a literal
//! otherwise.

/// Longer strings go as literals: a quoted string that long is legal, but
/// some clients have fixed-size buffers for them, and literals are what large
/// values look like everywhere else in IMAP.
const MAX_QUOTED: usize = 1000;

/// Appends `NIL` or the string.
pub(crate) fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    match s {
        None => out.extend_from_slice(b"NIL"),
        Some(s) => string(out, s, utf8),
    }
}

/// Appends `s` as a quoted string if RFC 9051 §9 `quoted` can hold it, else
/// as a literal.
///
/// `quoted` excludes CR, LF and NUL; 8-bit text only fits when the client has
/// enabled UTF8=ACCEPT / IMAP4rev2 (RFC 9051 §6.3.1; RFC 6855 §3) and the
/// bytes are valid UTF-8.
pub(crate) fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let quotable = s.len() <= MAX_QUOTED
        && !s.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
        && (s.is_ascii() || (utf8 && std::str::from_utf8(s).is_ok()));
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        // A literal may not hold NUL either (RFC 9051 §9 CHAR8); a NUL in a
        // header is damage, and dropping it is the least surprising repair.
        let len = s.iter().filter(|&&b| b != 0).count();
        out.push(b'{');
        out.extend_from_slice(len.to_string().as_bytes());
        out.extend_from_slice(b"}\r\n");
        out.extend(s.iter().copied().filter(|&b| b != 0));
    }
}

/// Appends a string upper-cased (types, subtypes, parameter names, encodings:
/// RFC 9051 §7.5.2 shows them so, and clients compare them that way).
pub(crate) fn upper(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    string(out, &s.to_ascii_uppercase(), utf8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(s: &[u8], utf8: bool) -> Vec<u8> {
        let mut out = Vec::new();
        string(&mut out, s, utf8);
        out
    }

    #[test]
    fn quoted_when_possible() {
        assert_eq!(render(b"a \"b\" \\c", false), br#""a \"b\" \\c""#);
        assert_eq!(render(b"", false), b"\"\"");
    }

    #[test]
    fn literal_for_line_breaks_8bit_and_length() {
        assert_eq!(render(b"a\r\nb", true), b"{4}\r\na\r\nb");
        assert_eq!(render("é".as_bytes(), false), "{2}\r\né".as_bytes());
        assert_eq!(render("é".as_bytes(), true), "\"é\"".as_bytes());
        assert_eq!(render(b"\xe9", true), b"{1}\r\n\xe9");
        assert_eq!(render(b"a\0b", false), b"{2}\r\nab");
        let long = vec![b'x'; 1001];
        assert!(render(&long, true).starts_with(b"{1001}\r\n"));
    }
}
