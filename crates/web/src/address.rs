//! Checks on the mail addresses and domains that arrive in a query string or a
//! request body, before any of them is written into a document or looked up.
//!
//! The rules are deliberately narrower than RFC 5322: a dot-atom local part (UTF-8
//! allowed, RFC 6532) and a DNS host name as the domain. Quoted local parts and
//! address literals (`user@[192.0.2.1]`) are refused; no mail client asks for
//! settings with them, and every character they would add is one more to escape.

/// Longest address accepted (RFC 5321 §4.5.3.1.3: a path is at most 256 octets,
/// including the angle brackets).
pub const MAX_ADDRESS_LEN: usize = 254;
/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;
/// Longest domain name, without the trailing dot (RFC 1035 §2.3.4).
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest label of a domain name (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// The domain of a mail address (`example.com` for `alice@example.com`), or `None`
/// when `address` is not one: empty parts, more than one `@`, spaces or control
/// characters, a quoted local part, an address literal, or a domain that is not a
/// host name. The domain is returned as written; compare it case-insensitively.
pub fn domain_of(address: &str) -> Option<&str> {
    if address.len() > MAX_ADDRESS_LEN {
        return None;
    }
    let (local, domain) = address.split_once('@')?;
    (is_valid_local_part(local) && is_valid_domain(domain)).then_some(domain)
}

/// Whether `address` is a mail address [`domain_of`] accepts.
pub fn is_valid_address(address: &str) -> bool {
    domain_of(address).is_some()
}

/// Whether `domain` is a DNS host name: ASCII letters, digits and `-` in labels of 1 to
/// 63 characters that neither start nor end with `-`, at most 253 characters, no
/// trailing dot, and a last label that is not all digits (so `192.0.2.1` is not taken
/// for a domain). Internationalised names must arrive in their `xn--` form.
pub fn is_valid_domain(domain: &str) -> bool {
    if domain.is_empty() || domain.len() > MAX_DOMAIN_LEN {
        return false;
    }
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    let top_is_name = domain
        .rsplit('.')
        .next()
        .is_some_and(|top| !top.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && top_is_name
}

/// A dot-atom (RFC 5322 §3.2.3) of `atext`, with any non-ASCII character allowed as
/// RFC 6532 does.
fn is_valid_local_part(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= MAX_LOCAL_PART_LEN
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c == '.' || is_atext(c))
}

/// RFC 5322 `atext`, extended by RFC 6532 to every non-ASCII character except
/// controls and the Unicode line and paragraph separators.
fn is_atext(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
    } else {
        !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_give_their_domain() {
        assert_eq!(domain_of("alice@example.com"), Some("example.com"));
        assert_eq!(
            domain_of("Alice.Smith@Mail.Example.COM"),
            Some("Mail.Example.COM")
        );
        assert_eq!(
            domain_of("a+tag@sub-1.example.org"),
            Some("sub-1.example.org")
        );
        assert_eq!(domain_of("o'brien@localhost"), Some("localhost"));
        assert_eq!(
            domain_of("jörg@xn--bcher-kva.example"),
            Some("xn--bcher-kva.example")
        );
        assert!(is_valid_address("{weird}~!#$%&*=?^_`|/@example.com"));
    }

    #[test]
    fn junk_is_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_label = format!("a@{}.com", "b".repeat(64));
        let long_address = format!("{}@{}.com", "a".repeat(60), ["abcdefghi"; 20].join("."));
        for junk in [
            "",
            "@",
            "alice",
            "alice@",
            "@example.com",
            "alice@@example.com",
            "alice@bob@example.com",
            "alice smith@example.com",
            "\"alice\"@example.com",
            "alice@[192.0.2.1]",
            "alice@192.0.2.1",
            "alice@example.com.",
            "alice@.example.com",
            "alice@example..com",
            "alice@-example.com",
            "alice@example-.com",
            "alice@exa_mple.com",
            "alice@exam ple.com",
            "alice@bücher.example",
            ".alice@example.com",
            "alice.@example.com",
            "al..ice@example.com",
            "al<ice@example.com",
            "alice\n@example.com",
            "alice@example.com\r\nBcc: x",
            "ali\u{0}ce@example.com",
            "a\u{2028}b@example.com",
            "<alice@example.com>",
            long_local.as_str(),
            long_label.as_str(),
            long_address.as_str(),
        ] {
            assert_eq!(domain_of(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn domains_are_host_names() {
        assert!(is_valid_domain("example.com"));
        assert!(is_valid_domain("a.b-c.d9"));
        assert!(is_valid_domain("localhost"));
        assert!(!is_valid_domain(""));
        assert!(!is_valid_domain("1.2.3.4"));
        assert!(!is_valid_domain("example.com."));
        assert!(!is_valid_domain(&"a".repeat(254)));
        assert!(is_valid_domain(&["a".repeat(63), "b".repeat(63)].join(".")));
    }
}
