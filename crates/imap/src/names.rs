//! Mailbox names on the wire: modified UTF-7 for IMAP4rev1 clients, UTF-8 once a
//! client has enabled IMAP4rev2 or UTF8=ACCEPT (RFC 9051 §5.1, RFC 6855), `INBOX`
//! without case, and LIST's `*` / `%` patterns.

use crate::mutf7;

/// Hierarchy separator of every Portico namespace.
pub const SEPARATOR: char = '/';

/// The one folder every account has, named without case (RFC 9051 §5.1).
pub const INBOX: &str = "INBOX";

/// Decodes a client's mailbox name to UTF-8 and spells `INBOX` the one way.
pub fn decode(raw: &[u8], utf8: bool) -> Result<String, &'static str> {
    let name = if utf8 {
        match std::str::from_utf8(raw) {
            Ok(name) => name.to_string(),
            Err(_) => return Err("Mailbox name is not valid UTF-8"),
        }
    } else {
        mutf7::decode(raw).map_err(|_| "Mailbox name is not valid modified UTF-7")?
    };
    Ok(normalize_inbox(&name))
}

/// `inbox` and `Inbox/Sub` become `INBOX` and `INBOX/Sub`.
pub fn normalize_inbox(name: &str) -> String {
    if name.len() >= 5 && name.is_char_boundary(5) {
        let (head, rest) = name.split_at(5);
        if head.eq_ignore_ascii_case(INBOX) && (rest.is_empty() || rest.starts_with(SEPARATOR)) {
            return format!("{INBOX}{rest}");
        }
    }
    name.to_string()
}

/// A name as the client should see it.
pub fn encode(name: &str, utf8: bool) -> Vec<u8> {
    if utf8 {
        name.as_bytes().to_vec()
    } else {
        mutf7::encode(name).into_bytes()
    }
}

/// RFC 9051 §6.3.9: `*` matches anything, `%` anything but the separator.
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern = normalize_inbox(pattern);
    wildcard(pattern.as_bytes(), name.as_bytes())
}

fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative matcher with backtracking on the last wildcard; `%` may not cross '/'.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(b'%') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) if !(pattern[sp] == b'%' && name[sn] == SEPARATOR as u8) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                _ => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*' || c == b'%')
}

/// LIST and LSUB's reference and pattern as one pattern (RFC 9051 §6.3.9 leaves the
/// joining to the server): `Work` and `%` give `Work/%`, as `Work/` and `%` do.
pub fn join_reference(reference: &str, pattern: &str) -> String {
    if pattern.starts_with(SEPARATOR) || reference.is_empty() {
        pattern.to_string()
    } else if reference.ends_with(SEPARATOR) {
        format!("{reference}{pattern}")
    } else {
        format!("{reference}{SEPARATOR}{pattern}")
    }
}

/// The parent levels of a name: `a/b/c` → `a`, `a/b`. CREATE and RENAME make the
/// missing ones (RFC 9051 §6.3.4).
pub fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(SEPARATOR).map(move |(i, _)| &name[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("*", "a/b/c"));
        assert!(matches("%", "INBOX"));
        assert!(!matches("%", "a/b"));
        assert!(matches("a/%", "a/b"));
        assert!(!matches("a/%", "a/b/c"));
        assert!(matches("a/*", "a/b/c"));
        assert!(matches("inbox", "INBOX"));
        assert!(matches("Inbox/%", "INBOX/x"));
        assert!(matches("S%t", "Sent"));
        assert!(!matches("S%t", "Se/nt"));
        assert!(matches("*Items", "Deleted Items"));
        assert!(!matches("Sent", "Sent Items"));
        assert!(matches("%/%", "a/b"));
    }

    #[test]
    fn inbox_is_case_insensitive_only_as_a_whole_level() {
        assert_eq!(normalize_inbox("inBox"), "INBOX");
        assert_eq!(normalize_inbox("inbox/Sub"), "INBOX/Sub");
        assert_eq!(normalize_inbox("inboxes"), "inboxes");
    }

    #[test]
    fn references_join_with_one_separator() {
        assert_eq!(join_reference("", "%"), "%");
        assert_eq!(join_reference("Work", "%"), "Work/%");
        assert_eq!(join_reference("Work/", "%"), "Work/%");
        assert_eq!(join_reference("Work", "/x"), "/x");
    }

    #[test]
    fn parent_levels() {
        assert_eq!(parents("a/b/c").collect::<Vec<_>>(), vec!["a", "a/b"]);
        assert_eq!(parents("a").count(), 0);
    }
}
