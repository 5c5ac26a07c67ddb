//! Client-given names made safe to write into trace headers (`Received:`, `Return-Path:`,
//! RFC 5321 §4.4) and into the commands of the next hop.
//!
//! What a client says in EHLO and MAIL FROM ends up in the stored message and in another
//! server's session; a control character, a line break or an unbalanced `<`/`>` there
//! would forge header fields, confuse the terminal of whoever reads the message, or end
//! the path early (`<a>b@evil.example>`). So these functions keep only what the grammar
//! allows and replace every other character by `?`, and bound the length. smtp-proto
//! hands back the local part of `"a>b"@evil.example` unquoted; [`path`] quotes it again
//! (RFC 5321 §4.1.2 `Quoted-string`), so the path means what the client sent.

/// What replaces a character the grammar does not allow.
const REPLACEMENT: char = '?';

/// RFC 5321 §4.5.3.1.2: the longest domain.
const MAX_DOMAIN: usize = 255;

/// The longest local part kept. RFC 5321 §4.5.3.1.1 says 64, but longer ones exist in
/// the wild and the command line is bounded anyway; this only bounds what is written.
const MAX_LOCAL_PART: usize = 256;

/// An EHLO/HELO name for the `from` clause of a `Received:` header: RFC 5321 §4.1.2
/// `Domain` or `address-literal` characters only (letters, digits, `-`, `.`, `[`, `]`,
/// `:`), anything else `?`, at most 255 characters. `(`, `)` and `;` are not kept either:
/// they would end the clause or start the date early.
pub fn helo_name(helo: &str) -> String {
    let clean: String = helo
        .chars()
        .take(MAX_DOMAIN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '[' | ']' | ':') {
                c
            } else {
                REPLACEMENT
            }
        })
        .collect();
    if clean.is_empty() {
        REPLACEMENT.to_string()
    } else {
        clean
    }
}

/// An address as the inside of an RFC 5321 `Path` (`<` and `>` not included): the local
/// part as a dot-string when it is one, quoted otherwise, with `"` and `\` escaped; the
/// domain with domain characters only. Characters outside printable ASCII become `?`,
/// unless `utf8` (the message came with SMTPUTF8, RFC 6531 §3.3, whose headers may carry
/// UTF-8 per RFC 6532), where non-ASCII letters and digits are kept. `""` (the null
/// sender) stays empty.
pub fn path(address: &str, utf8: bool) -> String {
    if address.is_empty() {
        return String::new();
    }
    let (local, domain) = match address.rsplit_once('@') {
        Some((local, domain)) => (local, Some(domain)),
        None => (address, None),
    };
    let local: String = local
        .chars()
        .take(MAX_LOCAL_PART)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' || (utf8 && !c.is_ascii() && c.is_alphanumeric()) {
                c
            } else {
                REPLACEMENT
            }
        })
        .collect();
    let mut out = if is_dot_string(&local) {
        local
    } else {
        let mut quoted = String::with_capacity(local.len() + 2);
        quoted.push('"');
        for c in local.chars() {
            if matches!(c, '"' | '\\') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    };
    if let Some(domain) = domain {
        out.push('@');
        out.extend(domain.chars().take(MAX_DOMAIN).map(|c| {
            if c.is_ascii_alphanumeric()
                || matches!(c, '-' | '.' | '[' | ']' | ':')
                || (utf8 && !c.is_ascii() && c.is_alphanumeric())
            {
                c
            } else {
                REPLACEMENT
            }
        }));
    }
    out
}

/// RFC 5321 §4.1.2 `Dot-string`: atoms of `atext` (RFC 5322 §3.2.3; non-ASCII letters too,
/// RFC 6531 §3.3) joined by single dots.
fn is_dot_string(local: &str) -> bool {
    !local.is_empty()
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || "!#$%&'*+-/=?^_`{|}~".contains(c)
                        || (!c.is_ascii() && c.is_alphanumeric())
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_keeps_domain_characters_only() {
        assert_eq!(helo_name("mx.example.net"), "mx.example.net");
        assert_eq!(helo_name("[IPv6:2001:db8::1]"), "[IPv6:2001:db8::1]");
        assert_eq!(helo_name("evil\0x\x1b[31m"), "evil?x?[31m");
        assert_eq!(helo_name("a\r\nX-Injected: 1"), "a??X-Injected:?1");
        assert_eq!(helo_name("a(b);c"), "a?b??c");
        assert_eq!(helo_name("zoë"), "zo?");
        assert_eq!(helo_name(""), "?");
        assert_eq!(helo_name(&"x".repeat(1000)).len(), 255);
    }

    #[test]
    fn quoted_local_parts_stay_quoted() {
        assert_eq!(path("alice@example.com", false), "alice@example.com");
        assert_eq!(path("a.b+tag@example.com", false), "a.b+tag@example.com");
        assert_eq!(path("a>b@evil.example", false), "\"a>b\"@evil.example");
        assert_eq!(path("a b@x.example", false), "\"a b\"@x.example");
        assert_eq!(
            path("a\"b\\c@x.example", false),
            "\"a\\\"b\\\\c\"@x.example"
        );
        assert_eq!(path("a..b@x.example", false), "\"a..b\"@x.example");
        assert_eq!(path(".a@x.example", false), "\".a\"@x.example");
        assert_eq!(path("a@b@x.example", false), "\"a@b\"@x.example");
        assert_eq!(path("", false), "");
        assert_eq!(path("postmaster", false), "postmaster");
    }

    #[test]
    fn paths_carry_no_control_characters() {
        assert_eq!(path("a\r\nb@x.example", false), "a??b@x.example");
        assert_eq!(path("a@x.example>\r\nX: y", false), "a@x.example???X:?y");
        assert_eq!(path("a\0@x\x1b.example", false), "a?@x?.example");
    }

    #[test]
    fn utf8_only_with_smtputf8() {
        assert_eq!(path("zoë@exämple.com", true), "zoë@exämple.com");
        assert_eq!(path("zoë@exämple.com", false), "zo?@ex?mple.com");
        assert_eq!(path("zo\u{202e}@x.example", true), "zo?@x.example");
    }

    #[test]
    fn lengths_are_bounded() {
        let long = format!("{}@{}", "l".repeat(5000), "d".repeat(5000));
        let out = path(&long, false);
        assert_eq!(out.len(), MAX_LOCAL_PART + 1 + MAX_DOMAIN);
        let out = path(&format!("{}@x", "\"".repeat(5000)), false);
        assert!(out.len() <= 2 * MAX_LOCAL_PART + 2 + 2);
        assert!(out.starts_with('"') && out.ends_with("\"@x"));
    }
}
