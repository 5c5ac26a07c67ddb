//! Content-Transfer-Encoding decoders for BINARY[] (RFC 3516).
//!
//! mail-parser's own decoders give up on bad input (`None`); a FETCH must
//! still answer, so these are lenient: base64 skips what is not in its
//! alphabet, quoted-printable keeps a malformed `=` as it is (RFC 2045 §6.7
//! note (2) recommends exactly that).

/// Decodes base64 (RFC 2045 §6.8), ignoring characters outside the alphabet
/// and treating `=` as the end of a group.
pub(crate) fn base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                // Padding: whatever partial byte is left is discarded, and a
                // new group may follow (concatenated base64 bodies exist).
                acc = 0;
                bits = 0;
                continue;
            }
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Decodes quoted-printable (RFC 2045 §6.7). Line breaks stay as they are;
/// white space at the end of a line is transport padding and goes (rule 3).
pub(crate) fn quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for line in input.split_inclusive(|&b| b == b'\n') {
        let (content, ending): (&[u8], &[u8]) = if let Some(c) = line.strip_suffix(b"\r\n") {
            (c, b"\r\n")
        } else if let Some(c) = line.strip_suffix(b"\n") {
            (c, b"\n")
        } else {
            (line, b"")
        };
        let end = content
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |i| i + 1);
        let content = &content[..end];
        let (content, soft_break) = match content.strip_suffix(b"=") {
            Some(c) => (c, true),
            None => (content, false),
        };
        let mut i = 0;
        while i < content.len() {
            let c = content[i];
            if c == b'='
                && let (Some(h), Some(l)) = (
                    content.get(i + 1).and_then(|&h| hex(h)),
                    content.get(i + 2).and_then(|&l| hex(l)),
                )
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            out.push(c);
            i += 1;
        }
        if !soft_break {
            out.extend_from_slice(ending);
        }
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        // Lower case is not canonical but is seen in the wild.
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_ignores_line_breaks_and_junk() {
        assert_eq!(base64(b"SGVs\r\nbG8=\r\n"), b"Hello");
        assert_eq!(base64(b"SGVsbG8"), b"Hello");
        assert_eq!(base64(b"!!!not base64!!!"), base64(b"notbase64"));
        assert_eq!(base64(b"YQ==Yg=="), b"ab");
        assert_eq!(base64(b""), b"");
    }

    #[test]
    fn quoted_printable_soft_breaks_and_padding() {
        assert_eq!(
            quoted_printable(b"Gr=C3=BC=\r\n=C3=9Fe  \r\nx"),
            "Grüße\r\nx".as_bytes()
        );
        assert_eq!(quoted_printable(b"a=  \r\nb"), b"ab");
        assert_eq!(quoted_printable(b"=3d=3D=ZZ=4"), b"===ZZ=4");
        assert_eq!(quoted_printable(b"end="), b"end");
    }
}
