//! `Content-Type` and `Content-Disposition` values with their parameters.
//!
//! BODYSTRUCTURE repeats parameters as strings (RFC 9051 §7.5.2
//! body-fld-param). They are kept raw: mail-parser would decode RFC 2047 and
//! RFC 2231 values, but the client expects what the message says. The one
//! thing done to them is merging RFC 2231 §3 continuations (`name*0`,
//! `name*1`, ...) into one parameter, as Dovecot does, so that a client sees a
//! single `NAME` (or `NAME*` when the value is charset-encoded) and not
//! fragments.

use serde::{Deserialize, Serialize};

use crate::address::unquote;

/// One `attribute=value` pair; the name keeps its case as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// A parsed `type/subtype; params` (or `disposition; params`) value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Parsed {
    /// The type (Content-Type) or disposition type, lower-cased.
    pub kind: Vec<u8>,
    /// The subtype, lower-cased; `None` for Content-Disposition or when the
    /// value is malformed.
    pub subtype: Option<Vec<u8>>,
    pub params: Vec<Param>,
}

/// RFC 2045 §5.1 tspecials plus white space: what ends a token.
fn ends_token(c: u8) -> bool {
    matches!(
        c,
        b' ' | b'\t'
            | b'\r'
            | b'\n'
            | b'('
            | b')'
            | b'<'
            | b'>'
            | b'@'
            | b','
            | b';'
            | b':'
            | b'\\'
            | b'"'
            | b'/'
            | b'['
            | b']'
            | b'?'
            | b'='
    )
}

struct Cursor<'a> {
    v: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// Skips white space and comments (RFC 2045 §5.1 allows comments anywhere
    /// between tokens).
    fn skip_cfws(&mut self) {
        while let Some(&c) = self.v.get(self.i) {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'(' => {
                    let mut depth = 0usize;
                    while let Some(&c) = self.v.get(self.i) {
                        self.i += 1;
                        match c {
                            b'\\' => self.i += 1,
                            b'(' => depth += 1,
                            b')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => break,
            }
        }
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.i.min(self.v.len());
        while self.v.get(self.i).is_some_and(|&c| !ends_token(c)) {
            self.i += 1;
        }
        &self.v[start..self.i.min(self.v.len())]
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.v.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// A parameter value: a quoted string, or else everything up to the next
    /// `;` or white space. Real mail puts tspecials such as `/` and `?` in
    /// unquoted values; refusing them would lose the file name.
    fn value(&mut self) -> Vec<u8> {
        if self.v.get(self.i) == Some(&b'"') {
            let start = self.i;
            self.i += 1;
            while let Some(&c) = self.v.get(self.i) {
                self.i += 1;
                match c {
                    b'\\' => self.i += 1,
                    b'"' => break,
                    _ => {}
                }
            }
            let end = self.i.min(self.v.len());
            self.i = end;
            unquote(&self.v[start..end])
        } else {
            let start = self.i.min(self.v.len());
            while self
                .v
                .get(self.i)
                .is_some_and(|&c| !matches!(c, b';' | b' ' | b'\t' | b'\r' | b'\n'))
            {
                self.i += 1;
            }
            self.v[start..self.i.min(self.v.len())].to_vec()
        }
    }

    /// Moves past the next `;`, or to the end.
    fn skip_past_semicolon(&mut self) {
        while let Some(&c) = self.v.get(self.i) {
            self.i += 1;
            if c == b';' {
                return;
            }
        }
    }
}

/// Parses a Content-Type value (`with_subtype`) or a Content-Disposition value.
pub(crate) fn parse(value: &[u8], with_subtype: bool) -> Parsed {
    let mut c = Cursor { v: value, i: 0 };
    c.skip_cfws();
    let kind = c.token().to_ascii_lowercase();
    let mut subtype = None;
    if with_subtype {
        c.skip_cfws();
        if c.eat(b'/') {
            c.skip_cfws();
            let sub = c.token().to_ascii_lowercase();
            if !sub.is_empty() {
                subtype = Some(sub);
            }
        }
    }
    let mut params = Vec::new();
    loop {
        c.skip_past_semicolon();
        if c.i >= value.len() {
            break;
        }
        c.skip_cfws();
        let name = c.token().to_vec();
        c.skip_cfws();
        if name.is_empty() || !c.eat(b'=') {
            continue;
        }
        c.skip_cfws();
        let value = c.value();
        params.push(Param { name, value });
    }
    Parsed {
        kind,
        subtype,
        params: merge_continuations(params),
    }
}

/// `name*<n>` or `name*<n>*`: the base name, the section number and whether
/// the section is charset-encoded (RFC 2231 §3, §4).
fn section_of(name: &[u8]) -> Option<(&[u8], u32, bool)> {
    let (name, encoded) = match name.strip_suffix(b"*") {
        Some(n) => (n, true),
        None => (name, false),
    };
    let star = name.iter().rposition(|&b| b == b'*')?;
    let digits = &name[star + 1..];
    if digits.is_empty() || digits.len() > 4 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    Some((&name[..star], n, encoded))
}

/// Joins RFC 2231 continuations into one parameter, at the place of the first
/// section; everything else is left as it was.
fn merge_continuations(params: Vec<Param>) -> Vec<Param> {
    if !params.iter().any(|p| section_of(&p.name).is_some()) {
        return params;
    }
    let mut groups: Vec<Continued> = Vec::new();
    let mut out: Vec<Param> = Vec::new();
    for p in params {
        let Some((base, number, encoded)) = section_of(&p.name) else {
            out.push(p);
            continue;
        };
        let key = base.to_ascii_lowercase();
        let section = Section {
            number,
            encoded,
            value: p.value,
        };
        match groups.iter_mut().find(|g| g.key == key) {
            Some(g) => g.sections.push(section),
            None => {
                groups.push(Continued {
                    key,
                    at: out.len(),
                    sections: vec![section],
                });
                out.push(Param {
                    name: base.to_vec(),
                    value: Vec::new(),
                });
            }
        }
    }
    for mut group in groups {
        group.sections.sort_by_key(|s| s.number);
        let first_encoded = group
            .sections
            .first()
            .is_some_and(|s| s.number == 0 && s.encoded);
        let Some(param) = out.get_mut(group.at) else {
            continue;
        };
        if first_encoded {
            param.name.push(b'*');
        }
        for section in group.sections {
            param.value.extend_from_slice(&section.value);
        }
    }
    out
}

/// The sections of one continued parameter, gathered before joining.
struct Continued {
    /// Base name, lower-cased (RFC 2231 names are case-insensitive).
    key: Vec<u8>,
    /// Where the joined parameter goes in the output.
    at: usize,
    sections: Vec<Section>,
}

struct Section {
    number: u32,
    encoded: bool,
    value: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, value: &str) -> Param {
        Param {
            name: name.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn content_type_with_quoted_and_plain_params() {
        let parsed = parse(b" text/Plain; charset=\"utf-8\"; format=flowed", true);
        assert_eq!(parsed.kind, b"text");
        assert_eq!(parsed.subtype.as_deref(), Some(&b"plain"[..]));
        assert_eq!(
            parsed.params,
            vec![p("charset", "utf-8"), p("format", "flowed")]
        );
    }

    #[test]
    fn folded_params_and_comments() {
        let parsed = parse(
            b" multipart/signed; protocol=\"application/pgp-signature\";\r\n micalg=\"pgp-sha256\" (c); boundary=\"=b=\"",
            true,
        );
        assert_eq!(parsed.kind, b"multipart");
        assert_eq!(
            parsed.params,
            vec![
                p("protocol", "application/pgp-signature"),
                p("micalg", "pgp-sha256"),
                p("boundary", "=b=")
            ]
        );
    }

    #[test]
    fn rfc2231_values_stay_encoded_and_continuations_merge() {
        let parsed = parse(
            b"attachment;\r\n filename*=utf-8''r%C3%A9sum%C3%A9.zip",
            false,
        );
        assert_eq!(parsed.kind, b"attachment");
        assert_eq!(
            parsed.params,
            vec![p("filename*", "utf-8''r%C3%A9sum%C3%A9.zip")]
        );
        let parsed = parse(
            b"attachment; filename*1=\"b.txt\"; size=3; filename*0=\"a\"",
            false,
        );
        assert_eq!(parsed.params, vec![p("filename", "ab.txt"), p("size", "3")]);
        let parsed = parse(b"inline; name*0*=utf-8''%C3%A9; name*1*=%C3%A9", false);
        assert_eq!(parsed.params, vec![p("name*", "utf-8''%C3%A9%C3%A9")]);
    }

    #[test]
    fn malformed_values_do_not_fail() {
        assert_eq!(parse(b"", true), Parsed::default());
        let parsed = parse(b"text; =x; a; b=\"unterminated", true);
        assert_eq!(parsed.subtype, None);
        assert_eq!(parsed.params, vec![p("b", "unterminated")]);
        assert_eq!(parse(b"(c", true).kind, b"");
    }
}
