//! Small pieces of IMAP response syntax (RFC 9051 §9): strings, flag lists, dates and
//! sequence sets as the server writes them.

use crate::command::DateTime;
pub use crate::parser::{MONTHS, civil_from_days};

/// Writes `bytes` as an IMAP string: quoted when it can be, a literal otherwise
/// (CR, LF, NUL, long values, or 8-bit text for a client that has not enabled UTF-8).
pub fn string(out: &mut Vec<u8>, bytes: &[u8], utf8: bool) {
    let quotable = bytes.len() <= 1000
        && bytes
            .iter()
            .all(|&b| b != b'\r' && b != b'\n' && b != 0 && (utf8 || b < 0x80))
        && (!utf8 || std::str::from_utf8(bytes).is_ok());
    if quotable {
        out.push(b'"');
        for &b in bytes {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
        out.extend_from_slice(bytes);
    }
}

/// `NIL` or a string.
pub fn nstring(out: &mut Vec<u8>, bytes: Option<&[u8]>, utf8: bool) {
    match bytes {
        Some(bytes) => string(out, bytes, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// `(\Seen $Work)`.
pub fn flag_list<S: AsRef<str>>(out: &mut Vec<u8>, flags: &[S]) {
    out.push(b'(');
    for (i, flag) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(flag.as_ref().as_bytes());
    }
    out.push(b')');
}

/// INTERNALDATE as `"17-Jul-1996 02:44:25 -0700"`, in the zone it was given in.
pub fn date_time(out: &mut Vec<u8>, date: DateTime) {
    let local = date.timestamp + date.offset as i64;
    let (year, month, day) = civil_from_days(local.div_euclid(86_400));
    let secs = local.rem_euclid(86_400);
    let sign = if date.offset < 0 { '-' } else { '+' };
    let offset = date.offset.unsigned_abs();
    out.extend_from_slice(
        format!(
            "\"{day:02}-{}-{year:04} {:02}:{:02}:{:02} {sign}{:02}{:02}\"",
            MONTHS[(month - 1) as usize],
            secs / 3600,
            secs % 3600 / 60,
            secs % 60,
            offset / 3600,
            offset % 3600 / 60
        )
        .as_bytes(),
    );
}

/// `1:3,7,9:10` from ascending numbers.
pub fn sequence_set(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = numbers[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literal() {
        let mut out = Vec::new();
        string(&mut out, b"a \"b\" \\c", false);
        assert_eq!(out, b"\"a \\\"b\\\" \\\\c\"");
        out.clear();
        string(&mut out, b"line\r\nbreak", false);
        assert_eq!(out, b"{11}\r\nline\r\nbreak");
        out.clear();
        string(&mut out, "Grüße".as_bytes(), false);
        assert_eq!(out, "{7}\r\nGrüße".as_bytes());
        out.clear();
        string(&mut out, "Grüße".as_bytes(), true);
        assert_eq!(out, "\"Grüße\"".as_bytes());
    }

    #[test]
    fn dates_render_in_their_own_zone() {
        let mut out = Vec::new();
        // 1996-07-17 09:44:25 UTC = 02:44:25 -0700
        date_time(
            &mut out,
            DateTime {
                timestamp: 837_596_665,
                offset: -7 * 3600,
            },
        );
        assert_eq!(out, b"\"17-Jul-1996 02:44:25 -0700\"");
    }

    #[test]
    fn sequence_sets_compress_runs() {
        assert_eq!(sequence_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(sequence_set(&[]), "");
        assert_eq!(sequence_set(&[5]), "5");
    }
}
