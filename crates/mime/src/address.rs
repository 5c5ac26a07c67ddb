//! Address lists split into the four parts an IMAP ENVELOPE wants.
//!
//! RFC 9051 §7.5.2 gives each address as `(name adl mailbox host)` and
//! expects the strings in their raw form: encoded words stay encoded and the
//! client decodes them. mail-parser's address parser decodes names as it goes,
//! so this is a small RFC 5322 §3.4 parser of its own that keeps bytes as
//! they were. It is lenient the way real mail needs: whatever it is given it
//! returns something, never an error.

use serde::{Deserialize, Serialize};

/// One member of an ENVELOPE address list (RFC 9051 §7.5.2).
///
/// Group syntax is flattened as the RFC says: a group start is
/// `(NIL NIL "groupname" NIL)`, a group end is `(NIL NIL NIL NIL)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Address {
    /// The display name (phrase), unquoted but not RFC 2047-decoded.
    pub name: Option<Vec<u8>>,
    /// The obsolete source route (`@a,@b`), if any.
    pub adl: Option<Vec<u8>>,
    /// The local part; for a group start, the group name.
    pub mailbox: Option<Vec<u8>>,
    /// The domain; `None` only for the group markers.
    pub host: Option<Vec<u8>>,
}

/// Stands in for a local part that is missing, so that `host` is never NIL
/// for a real address (a NIL host means group syntax). Dovecot uses the same.
pub(crate) const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";
/// Stands in for a missing domain, for the same reason.
pub(crate) const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";

impl Address {
    fn group_start(name: Vec<u8>) -> Address {
        Address {
            mailbox: Some(name),
            ..Address::default()
        }
    }

    fn group_end() -> Address {
        Address::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Atom,
    /// A quoted string; the range includes the quotes.
    Quoted,
    /// A comment; the range is what is inside the outer parentheses.
    Comment,
    /// A domain literal; the range includes the brackets.
    Literal,
    Special(u8),
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// Splits an unfolded address-list value into RFC 5322 §3.2 lexical tokens.
fn tokenize(v: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let c = v[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'"' => {
                let start = i;
                i += 1;
                while i < v.len() && v[i] != b'"' {
                    i += if v[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(v.len());
                tokens.push(Token {
                    kind: Kind::Quoted,
                    start,
                    end: i,
                });
            }
            b'(' => {
                // Comments nest (RFC 5322 §3.2.2).
                let start = i + 1;
                let mut depth = 0usize;
                let mut end = v.len();
                while i < v.len() {
                    match v[i] {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                end = i;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                tokens.push(Token {
                    kind: Kind::Comment,
                    start: start.min(end),
                    end,
                });
                i = (i + 1).min(v.len());
            }
            b'[' => {
                let start = i;
                while i < v.len() && v[i] != b']' {
                    i += 1;
                }
                i = (i + 1).min(v.len());
                tokens.push(Token {
                    kind: Kind::Literal,
                    start,
                    end: i,
                });
            }
            b'<' | b'>' | b':' | b';' | b'@' | b',' => {
                tokens.push(Token {
                    kind: Kind::Special(c),
                    start: i,
                    end: i + 1,
                });
                i += 1;
            }
            // A stray closer has nothing to close; drop it.
            b')' | b']' => i += 1,
            _ => {
                let start = i;
                while i < v.len() && !is_delimiter(v[i]) {
                    i += 1;
                }
                tokens.push(Token {
                    kind: Kind::Atom,
                    start,
                    end: i,
                });
            }
        }
    }
    tokens
}

fn is_delimiter(c: u8) -> bool {
    matches!(
        c,
        b' ' | b'\t'
            | b'\r'
            | b'\n'
            | b'"'
            | b'('
            | b')'
            | b'['
            | b']'
            | b'<'
            | b'>'
            | b':'
            | b';'
            | b'@'
            | b','
    )
}

/// Parses an address-list or mailbox-list header value (already unfolded)
/// into ENVELOPE addresses, group syntax included (RFC 5322 §3.4).
pub(crate) fn parse_list(v: &[u8]) -> Vec<Address> {
    let tokens = tokenize(v);
    let mut out = Vec::new();
    let mut item: Vec<Token> = Vec::new();
    let mut in_angle = false;
    let mut in_group = false;
    for t in tokens {
        match t.kind {
            Kind::Special(b'<') => {
                in_angle = true;
                item.push(t);
            }
            Kind::Special(b'>') => {
                in_angle = false;
                item.push(t);
            }
            Kind::Special(b',') if !in_angle => {
                push_item(v, &item, &mut out);
                item.clear();
            }
            Kind::Special(b':') if !in_angle && !in_group => {
                out.push(Address::group_start(phrase(v, &item)));
                item.clear();
                in_group = true;
            }
            Kind::Special(b';') if !in_angle && in_group => {
                push_item(v, &item, &mut out);
                item.clear();
                out.push(Address::group_end());
                in_group = false;
            }
            _ => item.push(t),
        }
    }
    push_item(v, &item, &mut out);
    if in_group {
        // An unterminated group still ends, or the client's nesting breaks.
        out.push(Address::group_end());
    }
    out
}

/// One mailbox (name-addr or addr-spec, RFC 5322 §3.4), if the tokens hold one.
fn push_item(v: &[u8], item: &[Token], out: &mut Vec<Address>) {
    if item.iter().all(|t| t.kind == Kind::Comment) {
        return;
    }
    let (name, route, spec) = match item.iter().position(|t| t.kind == Kind::Special(b'<')) {
        Some(open) => {
            let inner = &item[open + 1..];
            let close = inner
                .iter()
                .position(|t| t.kind == Kind::Special(b'>'))
                .unwrap_or(inner.len());
            let inner = &inner[..close];
            // obs-route (RFC 5322 §4.4): "@a,@b:" before the addr-spec.
            let (route, spec) = match inner.iter().position(|t| t.kind == Kind::Special(b':')) {
                Some(colon)
                    if inner
                        .iter()
                        .find(|t| t.kind != Kind::Comment)
                        .is_some_and(|t| t.kind == Kind::Special(b'@')) =>
                {
                    (span(v, &inner[..colon]), &inner[colon + 1..])
                }
                _ => (None, inner),
            };
            let name = Some(phrase(v, &item[..open])).filter(|n| !n.is_empty());
            (name, route, spec)
        }
        None => (comment_name(v, item), None, item),
    };
    let (local, domain) = match spec.iter().position(|t| t.kind == Kind::Special(b'@')) {
        Some(at) => (span(v, &spec[..at]), span(v, &spec[at + 1..])),
        None => (span(v, spec), None),
    };
    if local.is_none() && domain.is_none() && name.is_none() {
        return;
    }
    out.push(Address {
        name,
        adl: route,
        mailbox: Some(local.unwrap_or_else(|| MISSING_MAILBOX.to_vec())),
        host: Some(domain.unwrap_or_else(|| MISSING_DOMAIN.to_vec())),
    });
}

/// The raw bytes from the first to the last non-comment token, or `None`
/// when there is none.
fn span(v: &[u8], tokens: &[Token]) -> Option<Vec<u8>> {
    let mut real = tokens.iter().filter(|t| t.kind != Kind::Comment);
    let first = real.next()?;
    let last = real.next_back().unwrap_or(first);
    let bytes = v.get(first.start..last.end)?;
    Some(bytes.to_vec()).filter(|b| !b.is_empty())
}

/// A display name: its words joined by single spaces, quoted strings
/// unquoted (RFC 5322 §3.2.4). Encoded words are left for the client.
fn phrase(v: &[u8], tokens: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        let word = match t.kind {
            Kind::Atom | Kind::Literal => v.get(t.start..t.end).unwrap_or_default().to_vec(),
            Kind::Quoted => unquote(v.get(t.start..t.end).unwrap_or_default()),
            Kind::Special(c) if c != b'<' && c != b'>' => vec![c],
            _ => continue,
        };
        if !out.is_empty() && !word.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(&word);
    }
    out
}

/// `bob@example.com (Bob Smith)`: the comment is the only name there is, and
/// clients show it, as they would with Dovecot and c-client.
fn comment_name(v: &[u8], tokens: &[Token]) -> Option<Vec<u8>> {
    let t = tokens.iter().rev().find(|t| t.kind == Kind::Comment)?;
    let text = crate::header::trim(v.get(t.start..t.end)?);
    Some(text.to_vec()).filter(|n| !n.is_empty())
}

/// The content of a quoted string with its quoted-pairs resolved.
pub(crate) fn unquote(q: &[u8]) -> Vec<u8> {
    let inner = q.strip_prefix(b"\"").unwrap_or(q);
    let inner = inner.strip_suffix(b"\"").unwrap_or(inner);
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if escaped || b != b'\\' {
            out.push(b);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: Option<&str>, mailbox: &str, host: &str) -> Address {
        Address {
            name: name.map(|n| n.as_bytes().to_vec()),
            adl: None,
            mailbox: Some(mailbox.as_bytes().to_vec()),
            host: Some(host.as_bytes().to_vec()),
        }
    }

    #[test]
    fn name_addr_and_addr_spec() {
        assert_eq!(
            parse_list(b"Alice Example <alice@example.com>, bob@example.com"),
            vec![
                a(Some("Alice Example"), "alice", "example.com"),
                a(None, "bob", "example.com")
            ]
        );
    }

    #[test]
    fn quoted_names_are_unquoted_and_commas_inside_them_kept() {
        assert_eq!(
            parse_list(br#""Doe, John \"JD\"" <john@x.org>"#),
            vec![a(Some(r#"Doe, John "JD""#), "john", "x.org")]
        );
    }

    #[test]
    fn encoded_words_stay_raw() {
        assert_eq!(
            parse_list(b"=?utf-8?q?Bj=C3=B8rn_=C3=85s?= <bjorn@example.com>"),
            vec![a(
                Some("=?utf-8?q?Bj=C3=B8rn_=C3=85s?="),
                "bjorn",
                "example.com"
            )]
        );
    }

    #[test]
    fn groups_are_flattened_with_markers() {
        assert_eq!(
            parse_list(b"undisclosed-recipients:;"),
            vec![
                Address::group_start(b"undisclosed-recipients".to_vec()),
                Address::group_end()
            ]
        );
        assert_eq!(
            parse_list(b"Team: a@x, B <b@y>; c@z"),
            vec![
                Address::group_start(b"Team".to_vec()),
                a(None, "a", "x"),
                a(Some("B"), "b", "y"),
                Address::group_end(),
                a(None, "c", "z"),
            ]
        );
    }

    #[test]
    fn comments_routes_and_missing_parts() {
        assert_eq!(
            parse_list(b"bob@example.com (Bob Smith)"),
            vec![a(Some("Bob Smith"), "bob", "example.com")]
        );
        let routed = parse_list(b"<@relay.org,@b.org:joe@c.org>");
        assert_eq!(routed[0].adl.as_deref(), Some(&b"@relay.org,@b.org"[..]));
        assert_eq!(routed[0].mailbox.as_deref(), Some(&b"joe"[..]));
        assert_eq!(parse_list(b"joe"), vec![a(None, "joe", "MISSING_DOMAIN")]);
        assert_eq!(parse_list(b"\"j d\"@x"), vec![a(None, "\"j d\"", "x")]);
        assert_eq!(parse_list(b" , ,"), vec![]);
        assert_eq!(parse_list(b"a@[1.2.3.4]"), vec![a(None, "a", "[1.2.3.4]")]);
    }

    #[test]
    fn raw_utf8_is_kept() {
        let list = parse_list("Łukasz <łukasz@przykład.pl>".as_bytes());
        assert_eq!(list, vec![a(Some("Łukasz"), "łukasz", "przykład.pl")]);
    }
}
