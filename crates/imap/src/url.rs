//! IMAP URLs (RFC 5092) as CATENATE takes them (RFC 4469 §3): a message, or a part or
//! byte range of one, in a mailbox of the signed-in user.
//!
//! RFC 4469 §3 covers only URLs relative to the session: no scheme and no server, the
//! base being `imap://user@server/` (or `imap://user@server/mailbox` once a mailbox is
//! selected); an absolute URL, or one authorized by URLAUTH (RFC 4467), is outside it
//! and refused, as Dovecot refuses it. What is accepted:
//!
//! ```text
//! /INBOX;UIDVALIDITY=7/;UID=20/;SECTION=1.2/;PARTIAL=0.1024    absolute path
//! INBOX/;UID=20                                                the same, relative
//! ;UID=20/;SECTION=1.MIME                                      the selected mailbox
//! ```
//!
//! Parameter names are case-insensitive (RFC 5092 §11: "Strings are not case
//! sensitive"); the mailbox is UTF-8, percent-encoded (RFC 5092 §8), whatever the
//! session's own mailbox encoding; the section is a percent-encoded section-spec
//! (RFC 9051 §9) and the partial range `offset[.length]` (RFC 5092 §6). Dot segments
//! (`.`, `..`) in the mailbox path are resolved as RFC 3986 §5.2.4 says; a
//! `;UIDVALIDITY=` makes its segment a name, never a dot segment (RFC 5092 §9.1).
//!
//! RFC 5092 §7.2 forbids relative-path references while its §9.1 and RFC 4469 §3 use
//! `;UID=20` for a message of the selected mailbox; Portico follows the latter, which
//! is what CATENATE clients send (and Dovecot accepts).
//!
//! The other way, [`login_referral`] writes the server URL a LOGIN-REFERRALS referral
//! names (RFC 2221 §4.1).

use crate::command::Section;

/// Longest URL read: far beyond any real one (a mailbox name of the store's 1,024
/// octets percent-encoded, and a section), and short enough to echo in `[BADURL …]`.
pub const MAX_URL_LEN: usize = 8 * 1024;

/// A message or a part of one, as a URL names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessagePartUrl {
    /// The mailbox, decoded (`INBOX` spelled the one way); `None` for the selected one.
    pub mailbox: Option<String>,
    /// The mailbox's UIDVALIDITY when the URL was made: a different one makes the URL
    /// stale (RFC 5092 §5).
    pub uidvalidity: Option<u32>,
    pub uid: u32,
    /// The whole message when empty, as `BODY.PEEK[]`.
    pub section: Section,
    pub partial: Option<UrlPartial>,
}

/// `;PARTIAL=offset[.length]` (RFC 5092 §6): octets of the section from `offset`, to its
/// end without a length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlPartial {
    pub offset: u32,
    pub length: Option<u32>,
}

impl UrlPartial {
    /// The window of `len` octets this range keeps, as (start, length): empty when it
    /// starts beyond them, as a partial FETCH's (RFC 9051 §6.4.5).
    pub fn window(self, len: u64) -> (u64, u64) {
        let start = u64::from(self.offset).min(len);
        let rest = len - start;
        let length = self.length.map_or(rest, |l| u64::from(l).min(rest));
        (start, length)
    }
}

/// Why a URL names nothing CATENATE can take; the text follows `[BADURL …]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("URL too long")]
    TooLong,
    #[error(
        "Only URLs relative to this session are supported (RFC 4469), without scheme or server"
    )]
    Absolute,
    #[error("URLAUTH-authorized URLs are not supported")]
    UrlAuth,
    #[error("URL names a search, not a message")]
    Search,
    #[error("URL names no message: ;UID= is missing")]
    NoUid,
    #[error("URL names no mailbox")]
    NoMailbox,
    #[error("Invalid URL: {0}")]
    Syntax(&'static str),
}

/// Parses a URL of a CATENATE part.
pub fn parse(url: &[u8]) -> Result<MessagePartUrl, UrlError> {
    if url.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    if contains_ignore_case(url, b";URLAUTH=") || contains_ignore_case(url, b";EXPIRE=") {
        return Err(UrlError::UrlAuth);
    }
    // RFC 3986 §4.2: a colon before the first `/` is a scheme; `//` starts a server.
    let first_segment = url.split(|&b| b == b'/').next().unwrap_or_default();
    if first_segment.contains(&b':') || url.starts_with(b"//") {
        return Err(UrlError::Absolute);
    }
    for &b in url {
        match b {
            b'?' => return Err(UrlError::Search),
            b'#' => return Err(UrlError::Syntax("fragment")),
            _ if is_url_char(b) => {}
            _ => return Err(UrlError::Syntax("character not allowed in a URL")),
        }
    }
    // Only ASCII is left, and `;` separates the parameters: neither a mailbox nor a
    // value may hold one unencoded (RFC 5092 `achar`).
    let text = std::str::from_utf8(url).map_err(|_| UrlError::Syntax("not ASCII"))?;
    let mut tokens = text.split(';');
    let path = tokens.next().unwrap_or_default();
    let mut params = Vec::new();
    for token in tokens {
        let (name, value) = token
            .split_once('=')
            .ok_or(UrlError::Syntax("parameter without a value"))?;
        params.push((Param::named(name)?, value));
    }
    // Each parameter but UIDVALIDITY follows a `/`, which ends the text before it (the
    // path, or the value of the parameter before); `;UID=…` may also start the URL.
    let mut path = path;
    let mut values: Vec<(Param, &str)> = Vec::with_capacity(params.len());
    for (i, &(param, value)) in params.iter().enumerate() {
        let before = match values.last() {
            Some(&(last, _)) if param <= last => {
                return Err(UrlError::Syntax("parameters out of order"));
            }
            Some(&(_, previous)) => previous,
            None => path,
        };
        let stripped = before.strip_suffix('/');
        let starts_url = i == 0 && path.is_empty();
        match (param, stripped) {
            (Param::Uidvalidity, None) => {}
            (_, Some(rest)) if param != Param::Uidvalidity => match values.last_mut() {
                Some(previous) => previous.1 = rest,
                None => path = rest,
            },
            _ if starts_url => {}
            _ => return Err(UrlError::Syntax("misplaced /")),
        }
        values.push((param, value));
    }
    let mut parsed = MessagePartUrl {
        mailbox: None,
        uidvalidity: None,
        uid: 0,
        section: Section::default(),
        partial: None,
    };
    for (param, value) in values {
        match param {
            Param::Uidvalidity => {
                parsed.uidvalidity = Some(nz_number(value).ok_or(UrlError::Syntax("UIDVALIDITY"))?)
            }
            Param::Uid => parsed.uid = nz_number(value).ok_or(UrlError::Syntax("UID"))?,
            Param::Section => {
                let spec = percent_decode(value)?;
                parsed.section = crate::parser::parse_section_spec(&spec)
                    .map_err(|_| UrlError::Syntax("section"))?;
            }
            Param::Partial => parsed.partial = Some(partial(value)?),
        }
    }
    if parsed.uid == 0 {
        return Err(UrlError::NoUid);
    }
    // `;UID=…` alone is the selected mailbox's message; anything before it is a path,
    // relative to the base's root (`imap://user@server/`) when it has no leading `/`.
    if path.is_empty() && !url.starts_with(b"/") {
        if parsed.uidvalidity.is_some() {
            return Err(UrlError::NoMailbox);
        }
        return Ok(parsed);
    }
    let protect_last = parsed.uidvalidity.is_some();
    let segments = remove_dot_segments(path.strip_prefix('/').unwrap_or(path), protect_last);
    if segments.is_empty() || segments.iter().all(|s| s.is_empty()) {
        return Err(UrlError::NoMailbox);
    }
    let encoded = segments.join("/");
    let name = String::from_utf8(percent_decode(&encoded)?)
        .map_err(|_| UrlError::Syntax("mailbox name is not UTF-8"))?;
    parsed.mailbox = Some(crate::names::normalize_inbox(&name));
    Ok(parsed)
}

/// The parameters CATENATE reads, in the order RFC 5092 §11 writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Param {
    Uidvalidity,
    Uid,
    Section,
    Partial,
}

impl Param {
    fn named(name: &str) -> Result<Param, UrlError> {
        Ok(match name.to_ascii_uppercase().as_str() {
            "UIDVALIDITY" => Param::Uidvalidity,
            "UID" => Param::Uid,
            "SECTION" => Param::Section,
            "PARTIAL" => Param::Partial,
            _ => return Err(UrlError::Syntax("unknown parameter")),
        })
    }
}

/// RFC 5092 `bchar`, `;` and `%`: unreserved, sub-delims, `:`, `@`, `/`.
fn is_url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'&'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b';'
                | b'%'
        )
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// IMAP nz-number (RFC 9051 §9): no leading zero, 1 to 4294967295.
fn nz_number(value: &str) -> Option<u32> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// IMAP number: 0 to 4294967295.
fn number(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// RFC 5092 `partial-range = number ["." nz-number]`.
fn partial(value: &str) -> Result<UrlPartial, UrlError> {
    const BAD: UrlError = UrlError::Syntax("partial range");
    let (offset, length) = match value.split_once('.') {
        Some((offset, length)) => (offset, Some(nz_number(length).ok_or(BAD)?)),
        None => (value, None),
    };
    Ok(UrlPartial {
        offset: number(offset).ok_or(BAD)?,
        length,
    })
}

/// `%HH` escapes to their octets; everything else as it is.
fn percent_decode(text: &str) -> Result<Vec<u8>, UrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(UrlError::Syntax("bad % escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on a path below the root: `.` segments go, `..` takes the one
/// before it with it. With `protect_last`, the last segment carries `;UIDVALIDITY=` in
/// the URL and is a name whatever it says.
fn remove_dot_segments(path: &str, protect_last: bool) -> Vec<&str> {
    let all: Vec<&str> = path.split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(all.len());
    for (i, segment) in all.iter().enumerate() {
        let last = i + 1 == all.len();
        match *segment {
            "." | ".." if protect_last && last => out.push(segment),
            "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(segment),
        }
    }
    out
}

/// The URL as `[BADURL …]` shows it (RFC 4469 §5 `url-resp-text`, without the quotes
/// of its Appendix A: erratum 4046): octets a response code cannot carry (`]`, space,
/// controls, 8-bit) percent-encoded, and a URL over [`MAX_URL_LEN`] cut short.
pub fn response_text(url: &[u8]) -> String {
    let mut out = String::with_capacity(url.len().min(MAX_URL_LEN));
    let cut = url.len() > MAX_URL_LEN;
    for &b in &url[..url.len().min(if cut { 64 } else { MAX_URL_LEN })] {
        if (0x21..0x7f).contains(&b) && b != b']' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if cut {
        out.push_str("...");
    }
    out
}

/// The URL of a home server referral (RFC 2221 §4.1): `imap://USER;AUTH=*@HOST:PORT/`,
/// RFC 5092's `imapserver` with `iuserinfo` = `enc-user ";AUTH=*"` (any mechanism the
/// client likes). The user is UTF-8, percent-encoded but for RFC 5092's `achar`
/// (unreserved characters, `!$'()*+,` and `&=~`), so `@`, `;`, `:`, `/`, `%` and
/// spaces are encoded; an IPv6 host is bracketed (RFC 3986 IP-literal), though the
/// server refers to none, as its `]` would end RFC 9051's generic response code early;
/// the port is always written.
pub fn login_referral(user: &str, host: &str, port: u16) -> String {
    let mut out = String::from("imap://");
    for &b in user.as_bytes() {
        let achar = b.is_ascii_alphanumeric() || b"-._~!$'()*+,&=".contains(&b);
        if achar {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(";AUTH=*@");
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        out.push_str(&format!("[{host}]"));
    } else {
        out.push_str(host);
    }
    out.push_str(&format!(":{port}/"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::SectionText;
    use proptest::prelude::*;

    fn url(
        mailbox: Option<&str>,
        uidvalidity: Option<u32>,
        uid: u32,
        part: &[u32],
        text: Option<SectionText>,
        partial: Option<(u32, Option<u32>)>,
    ) -> MessagePartUrl {
        MessagePartUrl {
            mailbox: mailbox.map(str::to_string),
            uidvalidity,
            uid,
            section: Section {
                part: part.to_vec(),
                text,
            },
            partial: partial.map(|(offset, length)| UrlPartial { offset, length }),
        }
    }

    #[test]
    fn login_referral_urls_percent_encode_the_user() {
        assert_eq!(
            login_referral("alice@example.com", "imap2.example.com", 993),
            "imap://alice%40example.com;AUTH=*@imap2.example.com:993/"
        );
        // Delimiters of the URL and of its user part, `%` itself, spaces, controls and
        // UTF-8 are encoded; the rest of `achar` is not.
        assert_eq!(
            login_referral("a;b:c/d?e#f[g]h%i j\"k\\l\u{1}", "h", 143),
            "imap://a%3Bb%3Ac%2Fd%3Fe%23f%5Bg%5Dh%25i%20j%22k%5Cl%01;AUTH=*@h:143/"
        );
        assert_eq!(
            login_referral("Jos\u{e9}.O'Neil+tag-1_~!$()*,&=", "192.0.2.7", 1143),
            "imap://Jos%C3%A9.O'Neil+tag-1_~!$()*,&=;AUTH=*@192.0.2.7:1143/"
        );
        assert_eq!(
            login_referral("u", "2001:db8::7", 993),
            "imap://u;AUTH=*@[2001:db8::7]:993/"
        );
        // What the user part holds reads back as the name signed in with.
        let url = login_referral("we ird@ex;am:ple", "h", 1);
        let user = url
            .strip_prefix("imap://")
            .and_then(|rest| rest.split_once(";AUTH=*@"))
            .map(|(user, _)| user)
            .unwrap_or_default();
        assert_eq!(percent_decode(user).unwrap(), b"we ird@ex;am:ple");
    }

    #[test]
    fn rfc_4469_examples() {
        assert_eq!(
            parse(b"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER"),
            Ok(url(
                Some("Drafts"),
                Some(385_759_045),
                20,
                &[],
                Some(SectionText::Header),
                None
            ))
        );
        assert_eq!(
            parse(b"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME"),
            Ok(url(
                Some("Drafts"),
                Some(385_759_045),
                20,
                &[1],
                Some(SectionText::Mime),
                None
            ))
        );
        assert_eq!(
            parse(b"/Drafts;UIDVALIDITY=385759045/;UID=20/;Section=2"),
            Ok(url(Some("Drafts"), Some(385_759_045), 20, &[2], None, None))
        );
        assert_eq!(
            parse(b"/INBOX;UIDVALIDITY=785799047/;UID=113330/;section=1.5.9"),
            Ok(url(
                Some("INBOX"),
                Some(785_799_047),
                113_330,
                &[1, 5, 9],
                None,
                None
            ))
        );
        assert_eq!(
            parse(b"/Drafts;UIDVALIDITY=385759045/;UID=30"),
            Ok(url(Some("Drafts"), Some(385_759_045), 30, &[], None, None))
        );
    }

    #[test]
    fn relative_forms_sections_and_partials() {
        assert_eq!(parse(b";UID=20"), Ok(url(None, None, 20, &[], None, None)));
        assert_eq!(
            parse(b";uid=20/;SECTION=1.2/;Partial=10.5"),
            Ok(url(None, None, 20, &[1, 2], None, Some((10, Some(5)))))
        );
        assert_eq!(
            parse(b"inbox/;UID=3/;PARTIAL=0"),
            Ok(url(Some("INBOX"), None, 3, &[], None, Some((0, None))))
        );
        assert_eq!(
            parse(b"/Work/2026/;UID=3/;SECTION=TEXT"),
            Ok(url(
                Some("Work/2026"),
                None,
                3,
                &[],
                Some(SectionText::Text),
                None
            ))
        );
        // RFC 5092 §8: UTF-8, percent-encoded; `%20` and `%2F` are octets of the name.
        assert_eq!(
            parse(b"/Caf%C3%A9%20bar;UIDVALIDITY=9/;UID=1"),
            Ok(url(Some("Café bar"), Some(9), 1, &[], None, None))
        );
        assert_eq!(
            parse(b"/INBOX/;UID=4/;SECTION=HEADER.FIELDS%20(From%20Subject)"),
            Ok(url(
                Some("INBOX"),
                None,
                4,
                &[],
                Some(SectionText::HeaderFields(vec![
                    "From".into(),
                    "Subject".into()
                ])),
                None
            ))
        );
        // RFC 3986 dot segments; RFC 5092 §9.1: `..;UIDVALIDITY=` is a name.
        assert_eq!(
            parse(b"/a/../Sent/./;UID=5"),
            Ok(url(Some("Sent"), None, 5, &[], None, None))
        );
        assert_eq!(
            parse(b"..;UIDVALIDITY=385759045/;UID=20"),
            Ok(url(Some(".."), Some(385_759_045), 20, &[], None, None))
        );
    }

    #[test]
    fn what_is_refused_and_why() {
        let cases: &[(&[u8], UrlError)] = &[
            (b"imap://alice@localhost/INBOX/;UID=1", UrlError::Absolute),
            (b"//localhost/INBOX/;UID=1", UrlError::Absolute),
            (b"http://example.com/", UrlError::Absolute),
            (
                b"imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:91354a473744909de610943775f92038",
                UrlError::UrlAuth,
            ),
            (b"/INBOX?SUBJECT%20x", UrlError::Search),
            (b"/INBOX", UrlError::NoUid),
            (b"/INBOX/;SECTION=1", UrlError::NoUid),
            (b";SECTION=1", UrlError::NoUid),
            (b"", UrlError::NoUid),
            (b"/;UID=1", UrlError::NoMailbox),
            (b"/INBOX/../;UID=1", UrlError::NoMailbox),
            (b";UIDVALIDITY=5/;UID=1", UrlError::NoMailbox),
            (b"/INBOX/;UID=0", UrlError::Syntax("UID")),
            (b"/INBOX/;UID=07", UrlError::Syntax("UID")),
            (b"/INBOX/;UID=4294967296", UrlError::Syntax("UID")),
            (b"/INBOX/;UID=2/", UrlError::Syntax("UID")),
            (b"/INBOX;UID=2", UrlError::Syntax("misplaced /")),
            (b"/INBOX/;UIDVALIDITY=3/;UID=2", UrlError::Syntax("misplaced /")),
            (b"/INBOX/;UID=2;SECTION=1", UrlError::Syntax("misplaced /")),
            (b"/INBOX/;SECTION=1/;UID=2", UrlError::Syntax("parameters out of order")),
            (b"/INBOX/;UID=2/;UID=3", UrlError::Syntax("parameters out of order")),
            (b"/INBOX/;UID=2/;SECTION=1..2", UrlError::Syntax("section")),
            (b"/INBOX/;UID=2/;SECTION=", UrlError::Syntax("section")),
            (b"/INBOX/;UID=2/;SECTION=1.MIMEX", UrlError::Syntax("section")),
            (b"/INBOX/;UID=2/;PARTIAL=1.0", UrlError::Syntax("partial range")),
            (b"/INBOX/;UID=2/;PARTIAL=x", UrlError::Syntax("partial range")),
            (b"/INBOX/;UID=2/;FOO=1", UrlError::Syntax("unknown parameter")),
            (b"/INBOX/;UID", UrlError::Syntax("parameter without a value")),
            (b"/IN BOX/;UID=1", UrlError::Syntax("character not allowed in a URL")),
            (b"/INBOX/;UID=1]", UrlError::Syntax("character not allowed in a URL")),
            (b"/INBOX/;UID=1#x", UrlError::Syntax("fragment")),
            (b"/IN%4/;UID=1", UrlError::Syntax("bad % escape")),
            (b"/IN%FF/;UID=1", UrlError::Syntax("mailbox name is not UTF-8")),
        ];
        for (input, error) in cases {
            assert_eq!(
                parse(input),
                Err(*error),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let long = format!("/INBOX/;UID=1/;SECTION=1{}", ".1".repeat(MAX_URL_LEN));
        assert_eq!(parse(long.as_bytes()), Err(UrlError::TooLong));
    }

    #[test]
    fn partial_windows() {
        let p = |offset, length| UrlPartial { offset, length };
        assert_eq!(p(0, None).window(10), (0, 10));
        assert_eq!(p(3, Some(4)).window(10), (3, 4));
        assert_eq!(p(8, Some(4)).window(10), (8, 2));
        assert_eq!(p(12, Some(4)).window(10), (10, 0));
        assert_eq!(p(12, None).window(10), (10, 0));
    }

    #[test]
    fn response_text_is_a_valid_url_resp_text() {
        assert_eq!(response_text(b"/INBOX/;UID=1"), "/INBOX/;UID=1");
        assert_eq!(response_text(b"a b]\r\n\0\xff"), "a%20b%5D%0D%0A%00%FF");
        let long = vec![b'x'; MAX_URL_LEN + 1];
        assert_eq!(response_text(&long), format!("{}...", "x".repeat(64)));
    }

    proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(
            prop_oneof![
                Just(b'/'), Just(b';'), Just(b'='), Just(b'.'), Just(b'%'),
                b'0'..=b'9', b'A'..=b'Z', any::<u8>()
            ],
            0..80,
        )) {
            if let Ok(url) = parse(&input) {
                prop_assert!(url.uid > 0);
                prop_assert!(url.mailbox.as_deref().is_none_or(|name| !name.is_empty()));
            }
            let shown = response_text(&input);
            prop_assert!(shown.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b']'));
        }

        #[test]
        fn written_urls_read_back(
            mailbox in "[A-Za-z][A-Za-z0-9 é/]{0,12}[A-Za-z]",
            uidvalidity in proptest::option::of(1u32..),
            uid in 1u32..,
            part in proptest::collection::vec(1u32..20, 0..3),
            partial in proptest::option::of((0u32.., proptest::option::of(1u32..))),
        ) {
            let mut text = String::from("/");
            for b in mailbox.bytes() {
                if b.is_ascii_alphanumeric() || b == b'/' {
                    text.push(char::from(b));
                } else {
                    text.push_str(&format!("%{b:02X}"));
                }
            }
            if let Some(v) = uidvalidity {
                text.push_str(&format!(";UIDVALIDITY={v}"));
            }
            text.push_str(&format!("/;UID={uid}"));
            if !part.is_empty() {
                let spec: Vec<String> = part.iter().map(u32::to_string).collect();
                text.push_str(&format!("/;SECTION={}", spec.join(".")));
            }
            if let Some((offset, length)) = partial {
                text.push_str(&format!("/;PARTIAL={offset}"));
                if let Some(length) = length {
                    text.push_str(&format!(".{length}"));
                }
            }
            let expected = url(
                Some(&crate::names::normalize_inbox(&mailbox)),
                uidvalidity,
                uid,
                &part,
                None,
                partial,
            );
            prop_assert_eq!(parse(text.as_bytes()), Ok(expected));
        }
    }
}
