//! Shared by the integration tests: the corpus, and a small IMAP syntax
//! checker for what `envelope()` and `bodystructure()` produce (RFC 9051 §9).

#![allow(dead_code)]

use std::path::PathBuf;

use portico_mime::{Content, MessageSummary, Part};

pub fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus"))
}

/// Bare LF to CRLF, as the store does before a message is kept.
pub fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The corpus message whose file name starts with `prefix` (e.g. "005").
pub fn load(prefix: &str) -> Vec<u8> {
    let entry = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .filter_map(Result::ok)
        .find(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(prefix) && name.ends_with(".eml")
        })
        .unwrap_or_else(|| panic!("no corpus file {prefix}*"));
    to_crlf(&std::fs::read(entry.path()).expect("read corpus file"))
}

/// Every `.eml` in the corpus, sorted by name, CRLF-normalised.
pub fn all() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, to_crlf(&std::fs::read(&p).expect("read corpus file")))
        })
        .collect()
}

/// An IMAP value as it appears in ENVELOPE / BODYSTRUCTURE.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Nil,
    Num(u64),
    Str(Vec<u8>),
    List(Vec<V>),
}

/// Parses exactly one value covering all of `input`. Spacing is checked
/// strictly: one SP between items, none inside the parentheses' edges, and
/// none between a `)` and the `(` that follows it (lists of bodies and of
/// addresses are written that way). With `utf8` false a quoted string must be
/// 7-bit.
pub fn parse(input: &[u8], utf8: bool) -> Result<V, String> {
    let mut p = Parser {
        s: input,
        i: 0,
        utf8,
    };
    let v = p.value()?;
    if p.i != input.len() {
        return Err(format!("trailing bytes at {}", p.i));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    utf8: bool,
}

impl Parser<'_> {
    fn value(&mut self) -> Result<V, String> {
        match self.s.get(self.i) {
            Some(b'(') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    match self.s.get(self.i) {
                        Some(b')') if !items.is_empty() => {
                            self.i += 1;
                            return Ok(V::List(items));
                        }
                        Some(b')') => return Err(format!("empty list at {}", self.i)),
                        None => return Err("unclosed list".into()),
                        _ => {}
                    }
                    if !items.is_empty() {
                        let prev_list = self.s.get(self.i.wrapping_sub(1)) == Some(&b')');
                        if self.s.get(self.i) == Some(&b' ') {
                            self.i += 1;
                        } else if !(prev_list && self.s.get(self.i) == Some(&b'(')) {
                            return Err(format!("missing space at {}", self.i));
                        }
                    }
                    items.push(self.value()?);
                }
            }
            Some(b'"') => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    match self.s.get(self.i) {
                        None => return Err("unclosed quoted string".into()),
                        Some(b'"') => {
                            self.i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            match self.s.get(self.i + 1) {
                                Some(&c @ (b'"' | b'\\')) => out.push(c),
                                _ => return Err(format!("bad escape at {}", self.i)),
                            }
                            self.i += 2;
                        }
                        Some(&c) => {
                            if matches!(c, b'\r' | b'\n' | 0) {
                                return Err(format!("CR/LF/NUL in quoted at {}", self.i));
                            }
                            if c >= 0x80 && !self.utf8 {
                                return Err(format!("8-bit in quoted at {}", self.i));
                            }
                            out.push(c);
                            self.i += 1;
                        }
                    }
                }
                if self.utf8 && std::str::from_utf8(&out).is_err() {
                    return Err("invalid UTF-8 in quoted".into());
                }
                Ok(V::Str(out))
            }
            Some(b'{') => {
                let close = self.s[self.i..]
                    .iter()
                    .position(|&b| b == b'}')
                    .ok_or("unclosed literal length")?;
                let digits = &self.s[self.i + 1..self.i + close];
                let n: usize = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .ok_or("bad literal length")?;
                self.i += close + 1;
                if self.s.get(self.i..self.i + 2) != Some(b"\r\n") {
                    return Err("literal without CRLF".into());
                }
                self.i += 2;
                let bytes = self.s.get(self.i..self.i + n).ok_or("short literal")?;
                if bytes.contains(&0) {
                    return Err("NUL in literal".into());
                }
                self.i += n;
                Ok(V::Str(bytes.to_vec()))
            }
            Some(b'N') if self.s[self.i..].starts_with(b"NIL") => {
                self.i += 3;
                Ok(V::Nil)
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
                let n = std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .ok_or("bad number")?;
                Ok(V::Num(n))
            }
            other => Err(format!("unexpected {other:?} at {}", self.i)),
        }
    }
}

fn nstring(v: &V) -> Result<(), String> {
    match v {
        V::Nil | V::Str(_) => Ok(()),
        _ => Err(format!("not an nstring: {v:?}")),
    }
}

fn string(v: &V) -> Result<&[u8], String> {
    match v {
        V::Str(s) => Ok(s),
        _ => Err(format!("not a string: {v:?}")),
    }
}

/// RFC 9051 §9 `envelope`, group markers balanced.
pub fn check_envelope(v: &V) -> Result<(), String> {
    let V::List(items) = v else {
        return Err("envelope is not a list".into());
    };
    if items.len() != 10 {
        return Err(format!("envelope has {} items", items.len()));
    }
    nstring(&items[0])?;
    nstring(&items[1])?;
    for list in &items[2..8] {
        match list {
            V::Nil => {}
            V::List(addresses) => {
                let mut in_group = false;
                for a in addresses {
                    let V::List(f) = a else {
                        return Err(format!("address is not a list: {a:?}"));
                    };
                    if f.len() != 4 {
                        return Err(format!("address has {} fields", f.len()));
                    }
                    for x in f {
                        nstring(x)?;
                    }
                    match (&f[0], &f[1], &f[2], &f[3]) {
                        (V::Nil, V::Nil, V::Str(_), V::Nil) => {
                            if in_group {
                                return Err("nested group".into());
                            }
                            in_group = true;
                        }
                        (V::Nil, V::Nil, V::Nil, V::Nil) => {
                            if !in_group {
                                return Err("group end without start".into());
                            }
                            in_group = false;
                        }
                        (_, _, V::Str(_), V::Str(_)) => {}
                        _ => return Err(format!("bad address {f:?}")),
                    }
                }
                if in_group {
                    return Err("unterminated group".into());
                }
            }
            _ => return Err(format!("address list is {list:?}")),
        }
    }
    nstring(&items[8])?;
    nstring(&items[9])?;
    Ok(())
}

fn params(v: &V) -> Result<(), String> {
    match v {
        V::Nil => Ok(()),
        V::List(items) if items.len() % 2 == 0 => {
            items.iter().try_for_each(|x| string(x).map(|_| ()))
        }
        _ => Err(format!("bad body-fld-param {v:?}")),
    }
}

fn extension_tail(items: &[V]) -> Result<(), String> {
    // body-fld-dsp SP body-fld-lang SP body-fld-loc
    let [dsp, lang, loc] = items else {
        return Err(format!("extension tail has {} items", items.len()));
    };
    match dsp {
        V::Nil => {}
        V::List(d) if d.len() == 2 => {
            string(&d[0])?;
            params(&d[1])?;
        }
        _ => return Err(format!("bad body-fld-dsp {dsp:?}")),
    }
    match lang {
        V::Nil | V::Str(_) => {}
        V::List(l) => l.iter().try_for_each(|x| string(x).map(|_| ()))?,
        _ => return Err(format!("bad body-fld-lang {lang:?}")),
    }
    nstring(loc)
}

/// RFC 9051 §9 `body`; with `ext` the extension data must be there (we
/// always send all of it), without it must not.
pub fn check_body(v: &V, ext: bool) -> Result<(), String> {
    let V::List(items) = v else {
        return Err("body is not a list".into());
    };
    if matches!(items.first(), Some(V::List(_))) {
        let n = items.iter().take_while(|x| matches!(x, V::List(_))).count();
        for child in &items[..n] {
            check_body(child, ext)?;
        }
        string(items.get(n).ok_or("multipart without subtype")?)?;
        let rest = &items[n + 1..];
        if ext {
            let (p, tail) = rest.split_first().ok_or("no body-ext-mpart")?;
            params(p)?;
            extension_tail(tail)
        } else if rest.is_empty() {
            Ok(())
        } else {
            Err("extension data in BODY".into())
        }
    } else {
        if items.len() < 7 {
            return Err(format!("body-type-1part with {} items", items.len()));
        }
        let t = string(&items[0])?.to_ascii_uppercase();
        let st = string(&items[1])?.to_ascii_uppercase();
        params(&items[2])?;
        nstring(&items[3])?;
        nstring(&items[4])?;
        string(&items[5])?;
        if !matches!(items[6], V::Num(_)) {
            return Err("size is not a number".into());
        }
        let mut rest = &items[7..];
        if t == b"TEXT" {
            if !matches!(rest.first(), Some(V::Num(_))) {
                return Err("text without lines".into());
            }
            rest = &rest[1..];
        } else if t == b"MESSAGE" && (st == b"RFC822" || st == b"GLOBAL") {
            if rest.len() < 3 {
                return Err("message without envelope/body/lines".into());
            }
            check_envelope(&rest[0])?;
            check_body(&rest[1], ext)?;
            if !matches!(rest[2], V::Num(_)) {
                return Err("message without lines".into());
            }
            rest = &rest[3..];
        } else if t == b"MULTIPART" {
            return Err("a leaf typed MULTIPART".into());
        }
        if ext {
            let (md5, tail) = rest.split_first().ok_or("no body-ext-1part")?;
            nstring(md5)?;
            extension_tail(tail)
        } else if rest.is_empty() {
            Ok(())
        } else {
            Err("extension data in BODY".into())
        }
    }
}

/// Checks ENVELOPE and both BODY and BODYSTRUCTURE in both string modes.
pub fn check_syntax(s: &MessageSummary) -> Result<(), String> {
    for utf8 in [false, true] {
        check_envelope(&parse(&s.envelope(utf8), utf8)?)?;
        for ext in [false, true] {
            check_body(&parse(&s.bodystructure(ext, utf8), utf8)?, ext)?;
        }
    }
    Ok(())
}

/// Every section path the summary's tree has (RFC 9051 §6.4.5 numbering),
/// with the part it names.
pub fn paths(s: &MessageSummary) -> Vec<(Vec<u32>, Part)> {
    let mut out = Vec::new();
    numbered(s.root(), &mut Vec::new(), &mut out);
    out
}

/// The parts numbered inside `scope` (a message's root or a multipart).
fn numbered(scope: &Part, prefix: &mut Vec<u32>, out: &mut Vec<(Vec<u32>, Part)>) {
    let children: Vec<&Part> = match &scope.content {
        Content::Multipart(children) => children.iter().collect(),
        _ => vec![scope],
    };
    for (i, child) in children.into_iter().enumerate() {
        prefix.push(i as u32 + 1);
        out.push((prefix.clone(), child.clone()));
        match &child.content {
            Content::Multipart(_) if !std::ptr::eq(child, scope) => numbered(child, prefix, out),
            Content::Message { message, .. } => numbered(&message.root, prefix, out),
            _ => {}
        }
        prefix.pop();
    }
}
