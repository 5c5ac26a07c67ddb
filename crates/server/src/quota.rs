//! Storage limits (quotas): the size syntax of `portico user set --quota`, and the one
//! rule every path that adds mail applies.
//!
//! An account's limit lives in the directory ([`portico_directory::AccountV2`]), so
//! every node knows it; its usage is the sum of its folders' sizes, known only on the
//! mailbox's home node, which is where the limit is enforced (exactly, under the
//! store's writer lock: [`portico_store::Store::append_staged_limited`]). Checks made
//! elsewhere (SMTP RCPT on a frontend, an IMAP APPEND before its message is staged)
//! only refuse early what the home would refuse.

use std::fmt;

/// Binary units, as mail administrators write limits: `750K`, `500M`, `2G`.
const UNITS: [(char, u32); 4] = [('K', 10), ('M', 20), ('G', 30), ('T', 40)];

/// A limit as `user set --quota` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaArg(pub Option<u64>);

/// Why a `--quota` value was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error(
        "{0:?} is not a size: a number of bytes, optionally followed by K, M, G or T (powers of 1024), or `none`"
    )]
    Malformed(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses `500M`, `2G`, `750K`, `12345` (bytes), `none` or `unlimited` (no limit). Units
/// are powers of 1024, in either case.
pub fn parse_quota(text: &str) -> Result<QuotaArg, SizeError> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("none") || trimmed.eq_ignore_ascii_case("unlimited") {
        return Ok(QuotaArg(None));
    }
    let malformed = || SizeError::Malformed(text.to_string());
    let (digits, shift) = match trimmed.chars().last() {
        Some(last) if last.is_ascii_alphabetic() => {
            let unit = last.to_ascii_uppercase();
            let (_, shift) = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .ok_or_else(malformed)?;
            (&trimmed[..trimmed.len() - 1], *shift)
        }
        _ => (trimmed, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| SizeError::TooLarge(text.to_string()))?;
    let bytes = number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::TooLarge(text.to_string()))?;
    Ok(QuotaArg(Some(bytes)))
}

/// A limit as `user list` shows it: in the largest unit that states it exactly (`500M`,
/// `1536K`, `1000`), or `none`.
pub struct ShowLimit(pub Option<u64>);

impl fmt::Display for ShowLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(bytes) = self.0 else {
            return f.write_str("none");
        };
        for (name, shift) in UNITS.iter().rev() {
            let unit = 1u64 << shift;
            if bytes != 0 && bytes % unit == 0 {
                return write!(f, "{}{name}", bytes / unit);
            }
        }
        write!(f, "{bytes}")
    }
}

/// Whether `size` more bytes fit an account using `used` under `limit`. A `size` of 0
/// (not known yet: RCPT without SIZE) asks whether the account is below its limit at
/// all, so an account at or over it refuses even the smallest message.
pub fn fits(used: u64, size: u64, limit: Option<u64>) -> bool {
    match limit {
        None => true,
        Some(limit) => used
            .checked_add(size.max(1))
            .is_some_and(|total| total <= limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units_either_case() {
        let bytes = |text: &str| parse_quota(text).map(|q| q.0);
        assert_eq!(bytes("500M"), Ok(Some(500 << 20)));
        assert_eq!(bytes("2G"), Ok(Some(2 << 30)));
        assert_eq!(bytes("750k"), Ok(Some(750 << 10)));
        assert_eq!(bytes("1t"), Ok(Some(1 << 40)));
        assert_eq!(bytes("12345"), Ok(Some(12345)));
        assert_eq!(bytes(" 0 "), Ok(Some(0)));
        assert_eq!(bytes("none"), Ok(None));
        assert_eq!(bytes("Unlimited"), Ok(None));
        for bad in ["", "M", "5X", "-1", "1.5G", "5 M", "5MB", "0x10", "+5"] {
            assert_eq!(
                bytes(bad),
                Err(SizeError::Malformed(bad.to_string())),
                "{bad:?}"
            );
        }
        assert_eq!(
            bytes("99999999999999999999"),
            Err(SizeError::TooLarge("99999999999999999999".into()))
        );
        assert_eq!(
            bytes("17179869184G"),
            Err(SizeError::TooLarge("17179869184G".into()))
        );
    }

    #[test]
    fn limits_show_in_the_largest_exact_unit_and_parse_back() {
        for (bytes, shown) in [
            (Some(500 << 20), "500M"),
            (Some(2 << 30), "2G"),
            (Some(1536 << 10), "1536K"),
            (Some(1000), "1000"),
            (Some(0), "0"),
            (Some(3 << 40), "3T"),
            (None, "none"),
        ] {
            assert_eq!(ShowLimit(bytes).to_string(), shown);
            assert_eq!(parse_quota(shown), Ok(QuotaArg(bytes)));
        }
    }

    #[test]
    fn a_message_fits_up_to_the_limit_exactly() {
        assert!(fits(u64::MAX, u64::MAX, None));
        assert!(fits(90, 10, Some(100)));
        assert!(!fits(90, 11, Some(100)));
        // Size unknown: refused only at or over the limit.
        assert!(fits(99, 0, Some(100)));
        assert!(!fits(100, 0, Some(100)));
        assert!(!fits(150, 0, Some(100)));
        assert!(!fits(0, 0, Some(0)));
        assert!(!fits(u64::MAX - 1, 5, Some(u64::MAX)));
    }
}
