//! Modified UTF-7 mailbox names (RFC 3501 §5.1.3), used by IMAP4rev1 clients that have
//! not enabled UTF-8.
//!
//! Printable US-ASCII except `&` stands for itself; `&` is written `&-`; every other run
//! of characters is UTF-16BE in a base64 variant (`,` instead of `/`, no padding)
//! between `&` and `-`.
//!
//! [`decode`] is strict and accepts only what [`encode`] produces: a name has exactly one
//! spelling, so two spellings can never name two different mailboxes (Dovecot checks
//! the same by re-encoding). For every `s`, `decode(encode(s).as_bytes()) == Ok(s)`, and
//! whenever `decode(b)` succeeds, `encode(&decode(b)?) == b`.

/// Why a name is not valid modified UTF-7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Mutf7Error {
    /// A byte outside printable US-ASCII (0x20..=0x7e) appeared outside a shift.
    #[error("byte 0x{byte:02x} at offset {at} is not printable US-ASCII")]
    InvalidByte { byte: u8, at: usize },
    /// `&` without a closing `-`.
    #[error("'&' at offset {at} starts a shift that never ends with '-'")]
    Unterminated { at: usize },
    /// A character outside the modified base64 alphabet, or a shift whose length or
    /// trailing bits cannot come from whole UTF-16 units.
    #[error("invalid modified base64 in the shift at offset {at}")]
    BadBase64 { at: usize },
    /// The shift decodes to an unpaired UTF-16 surrogate.
    #[error("invalid UTF-16 in the shift at offset {at}")]
    BadUtf16 { at: usize },
    /// A printable US-ASCII character (including `&`) was base64-encoded.
    #[error("the shift at offset {at} encodes printable US-ASCII")]
    EncodedAscii { at: usize },
    /// A shift directly follows another one; the encoder would have merged them.
    #[error("the shift at offset {at} directly follows another shift")]
    AdjacentShifts { at: usize },
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Characters that stand for themselves.
fn is_direct(c: char) -> bool {
    matches!(c, ' '..='~') && c != '&'
}

/// Encodes a mailbox name in modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) || c == '&' {
            flush_shift(&mut out, &mut run);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush_shift(&mut out, &mut run);
    out
}

/// Writes `&<base64 of run>-` and empties `run`; nothing if `run` is empty.
fn flush_shift(out: &mut String, run: &mut Vec<u16>) {
    if run.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for unit in run.drain(..) {
        acc = (acc << 16) | u32::from(unit);
        bits += 16;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 0x3f) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 0x3f) as usize]));
    }
    out.push('-');
}

fn base64_value(b: u8) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes a modified UTF-7 mailbox name, rejecting every non-canonical spelling.
pub fn decode(bytes: &[u8]) -> Result<String, Mutf7Error> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    // True right after a base64 shift, where another shift would be non-canonical.
    let mut after_shift = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'&' => {
                let at = i;
                let body_start = i + 1;
                let Some(len) = bytes[body_start..].iter().position(|&c| c == b'-') else {
                    return Err(Mutf7Error::Unterminated { at });
                };
                let body = &bytes[body_start..body_start + len];
                i = body_start + len + 1;
                if body.is_empty() {
                    out.push('&');
                    after_shift = false;
                    continue;
                }
                if after_shift {
                    return Err(Mutf7Error::AdjacentShifts { at });
                }
                decode_shift(body, at, &mut out)?;
                after_shift = true;
            }
            0x20..=0x7e => {
                out.push(char::from(b));
                after_shift = false;
                i += 1;
            }
            _ => return Err(Mutf7Error::InvalidByte { byte: b, at: i }),
        }
    }
    Ok(out)
}

/// Decodes the base64 between `&` and `-` (non-empty) and appends its characters.
fn decode_shift(body: &[u8], at: usize, out: &mut String) -> Result<(), Mutf7Error> {
    let mut units: Vec<u16> = Vec::with_capacity(body.len() * 6 / 16);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in body {
        let v = base64_value(c).ok_or(Mutf7Error::BadBase64 { at })?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 16 {
            bits -= 16;
            units.push(((acc >> bits) & 0xffff) as u16);
            acc &= (1 << bits) - 1;
        }
    }
    // What is left must be the zero padding of the last unit: fewer than 6 bits, all 0.
    if bits >= 6 || acc != 0 {
        return Err(Mutf7Error::BadBase64 { at });
    }
    for c in char::decode_utf16(units) {
        let c = c.map_err(|_| Mutf7Error::BadUtf16 { at })?;
        if is_direct(c) || c == '&' {
            return Err(Mutf7Error::EncodedAscii { at });
        }
        out.push(c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ascii_and_ampersand() {
        assert_eq!(encode("INBOX"), "INBOX");
        assert_eq!(encode("&"), "&-");
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(decode(b"&-").as_deref(), Ok("&"));
        assert_eq!(decode(b"Tom &- Jerry").as_deref(), Ok("Tom & Jerry"));
        assert_eq!(decode(b"").as_deref(), Ok(""));
    }

    #[test]
    fn rfc3501_example() {
        let name = "~peter/mail/台北/日本語";
        let wire = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        assert_eq!(encode(name), wire);
        assert_eq!(decode(wire.as_bytes()).as_deref(), Ok(name));
    }

    #[test]
    fn common_names() {
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("Gelöschte Elemente"), "Gel&APY-schte Elemente");
        assert_eq!(encode("Отправленные"), "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-");
        assert_eq!(decode(b"Entw&APw-rfe").as_deref(), Ok("Entwürfe"));
    }

    #[test]
    fn emoji_surrogate_pairs() {
        for name in ["📬", "a📬b", "Mail 😀🎉 & stuff", "𝄞"] {
            let wire = encode(name);
            assert!(wire.is_ascii());
            assert_eq!(decode(wire.as_bytes()).as_deref(), Ok(name));
        }
        assert_eq!(encode("📬"), "&2D3c7A-");
    }

    #[test]
    fn rejects_bad_input() {
        // 8-bit and control bytes.
        assert!(matches!(
            decode("Entwürfe".as_bytes()),
            Err(Mutf7Error::InvalidByte { at: 4, .. })
        ));
        assert!(matches!(
            decode(b"a\tb"),
            Err(Mutf7Error::InvalidByte { .. })
        ));
        // Unterminated shift, lone '&'.
        assert_eq!(decode(b"&U,BTFw"), Err(Mutf7Error::Unterminated { at: 0 }));
        assert_eq!(decode(b"a&"), Err(Mutf7Error::Unterminated { at: 1 }));
        // Characters outside the modified alphabet (standard '/' and '=' padding).
        assert!(matches!(
            decode(b"&U/BTFw-"),
            Err(Mutf7Error::BadBase64 { .. })
        ));
        assert!(matches!(
            decode(b"&APw=-"),
            Err(Mutf7Error::BadBase64 { .. })
        ));
        assert!(matches!(decode(b"&A-"), Err(Mutf7Error::BadBase64 { .. })));
        // Non-zero trailing bits ("APx" instead of "APw").
        assert!(matches!(
            decode(b"&APx-"),
            Err(Mutf7Error::BadBase64 { .. })
        ));
        // Lone surrogate.
        assert!(matches!(decode(b"&2D0-"), Err(Mutf7Error::BadUtf16 { .. })));
        // Encoded printable ASCII: "a" and "&".
        assert!(matches!(
            decode(b"&AGE-"),
            Err(Mutf7Error::EncodedAscii { .. })
        ));
        assert!(matches!(
            decode(b"&ACY-"),
            Err(Mutf7Error::EncodedAscii { .. })
        ));
        // Two shifts in a row must be one.
        assert!(matches!(
            decode(b"&APw-&APw-"),
            Err(Mutf7Error::AdjacentShifts { at: 5 })
        ));
        assert_eq!(decode(b"&APwA,A-").as_deref(), Ok("üü"));
        // But "&-" between shifts is fine.
        assert_eq!(decode(b"&APw-&-&APw-").as_deref(), Ok("ü&ü"));
    }

    proptest! {
        #[test]
        fn round_trip(name in any::<String>()) {
            let wire = encode(&name);
            prop_assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode(wire.as_bytes()), Ok(name));
        }

        #[test]
        fn decode_accepts_only_canonical(wire in "[A-Za-z0-9&+,/ -]{0,24}") {
            if let Ok(name) = decode(wire.as_bytes()) {
                prop_assert_eq!(encode(&name), wire);
            }
        }
    }
}
