//! SEARCH evaluation (RFC 9051 §6.4.4): which messages match a key, and how much of
//! each message the store must read to decide.
//!
//! The string keys (BODY, TEXT, HEADER, FROM, SUBJECT, …) are substring matches under
//! i;unicode-casemap (RFC 5051), the comparator I18NLEVEL=1 names (RFC 5255 §4.3):
//! [`crate::casemap`]. The full-text index keeps the trigrams of text folded the same
//! way, so its "cannot match" is never wrong.

use crate::casemap::{self, contains};
use crate::command::{Date, SearchKey, SeqBound, SequenceSet};
use crate::request::{Detail, MessageData, TextCandidates, TextKey, TextQuery};

/// Needles of one SEARCH looked up in the full-text index; the rest are read in full
/// (or from their header fields).
const MAX_TEXT_QUERIES: usize = 32;

/// Whether `key` reads nothing of a message but its UID, flags, MODSEQ and the header
/// fields kept at append ([`MessageData::fields`]).
pub fn reads_only_listed(key: &SearchKey) -> bool {
    use SearchKey::*;
    match key {
        And(keys) => keys.iter().all(reads_only_listed),
        Or(a, b) => reads_only_listed(a) && reads_only_listed(b),
        Not(k) => reads_only_listed(k),
        All | Answered | Deleted | Draft | Flagged | Seen | Unanswered | Undeleted | Undraft
        | Unflagged | Unseen | Keyword(_) | Unkeyword(_) | Recent | New | Old | ModSeq(_)
        | SequenceSet(_) | Uid(_) | SaveDateSupported => true,
        other => detail(other) == Detail::Fields,
    }
}

/// The least detail needed to evaluate `key`.
pub fn detail(key: &SearchKey) -> Detail {
    use SearchKey::*;
    match key {
        And(keys) => keys.iter().map(detail).fold(Detail::Meta, Detail::join),
        Or(a, b) => detail(a).join(detail(b)),
        Not(k) => detail(k),
        Bcc(_) | Cc(_) | From(_) | To(_) | Subject(_) | SentBefore(_) | SentOn(_)
        | SentSince(_) => Detail::Fields,
        Header(name, _) if portico_mime::SearchFields::default().values(name).is_some() => {
            Detail::Fields
        }
        Header(..) => Detail::HeaderText,
        Body(_) | Text(_) => Detail::Full,
        _ => Detail::Meta,
    }
}

/// What the full-text index said of a search's needles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextHints(Vec<(TextQuery, TextCandidates)>);

impl TextHints {
    pub fn new(answers: Vec<(TextQuery, TextCandidates)>) -> Self {
        TextHints(answers)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the index rules out that `key` matches message `uid`.
    fn excludes(&self, key: &SearchKey, uid: u32) -> bool {
        // Asked for every key of every message: nothing to look up is the common case.
        if self.0.is_empty() {
            return false;
        }
        let Some((text_key, needle)) = indexed_needle(key) else {
            return false;
        };
        self.0.iter().any(|(query, candidates)| {
            query.key == text_key && query.needle == needle && candidates.excludes(uid)
        })
    }
}

/// Where the full-text index would look for `key`'s needle, and the needle, for the
/// keys it can narrow: BODY, TEXT, and the substring keys on header fields it indexes
/// on their own (the same decoded values [`header_matches`] compares).
fn indexed_needle(key: &SearchKey) -> Option<(TextKey, &str)> {
    let field = |name: &str| {
        [
            ("From", TextKey::From),
            ("To", TextKey::To),
            ("Cc", TextKey::Cc),
            ("Bcc", TextKey::Bcc),
            ("Subject", TextKey::Subject),
        ]
        .into_iter()
        .find(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, key)| key)
    };
    match key {
        SearchKey::Body(needle) => Some((TextKey::Body, needle)),
        SearchKey::Text(needle) => Some((TextKey::Text, needle)),
        SearchKey::From(needle) => Some((TextKey::From, needle)),
        SearchKey::To(needle) => Some((TextKey::To, needle)),
        SearchKey::Cc(needle) => Some((TextKey::Cc, needle)),
        SearchKey::Bcc(needle) => Some((TextKey::Bcc, needle)),
        SearchKey::Subject(needle) => Some((TextKey::Subject, needle)),
        SearchKey::Header(name, needle) => field(name).map(|key| (key, needle.as_str())),
        _ => None,
    }
}

/// The needles of `key` worth asking the index about (three characters or more: the
/// index keeps trigrams), each once.
pub fn text_queries(key: &SearchKey) -> Vec<TextQuery> {
    fn walk(key: &SearchKey, out: &mut Vec<TextQuery>) {
        let query = match key {
            SearchKey::And(keys) => return keys.iter().for_each(|k| walk(k, out)),
            SearchKey::Or(a, b) => {
                walk(a, out);
                return walk(b, out);
            }
            SearchKey::Not(k) => return walk(k, out),
            other => match indexed_needle(other) {
                Some((key, needle)) => TextQuery {
                    key,
                    needle: needle.to_string(),
                },
                None => return,
            },
        };
        if crate::casemap::fold(&query.needle).chars().count() >= 3
            && out.len() < MAX_TEXT_QUERIES
            && !out.contains(&query)
        {
            out.push(query);
        }
    }
    let mut out = Vec::new();
    walk(key, &mut out);
    out
}

/// What `key` is for message `uid` from the index's answers alone: `Some(false)` when
/// it cannot match whatever else the message holds, `None` when the message must be read.
pub fn prejudge(key: &SearchKey, uid: u32, hints: &TextHints) -> Option<bool> {
    use SearchKey::*;
    match key {
        All | SaveDateSupported => Some(true),
        And(keys) => {
            let mut all = Some(true);
            for key in keys {
                match prejudge(key, uid, hints) {
                    Some(false) => return Some(false),
                    Some(true) => {}
                    None => all = None,
                }
            }
            all
        }
        Or(a, b) => match (prejudge(a, uid, hints), prejudge(b, uid, hints)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Not(k) => prejudge(k, uid, hints).map(|v| !v),
        other if hints.excludes(other, uid) => Some(false),
        _ => None,
    }
}

/// The least detail needed to evaluate `key` on message `uid`: keys the index rules
/// out need none.
pub fn detail_for(key: &SearchKey, uid: u32, hints: &TextHints) -> Detail {
    use SearchKey::*;
    match key {
        And(keys) => keys
            .iter()
            .map(|k| detail_for(k, uid, hints))
            .fold(Detail::Meta, Detail::join),
        Or(a, b) => detail_for(a, uid, hints).join(detail_for(b, uid, hints)),
        Not(k) => detail_for(k, uid, hints),
        other if hints.excludes(other, uid) => Detail::Meta,
        other => detail(other),
    }
}

/// What a key may refer to besides the message itself.
pub struct Context<'a> {
    pub seq: u32,
    /// Highest sequence number and UID in the session's view (for `*`).
    pub max_seq: u32,
    pub max_uid: u32,
    pub recent: bool,
    pub message: &'a MessageData,
    /// The message's text, decoded and folded once for every BODY and TEXT key of
    /// the search (a search with many such keys would otherwise decode the message once
    /// per key).
    pub text: TextCache,
    /// What the full-text index ruled out.
    pub hints: &'a TextHints,
    /// The time the search runs at (Unix seconds), for OLDER and YOUNGER.
    pub now: i64,
}

/// Lazily decoded, folded ([`casemap::fold`]) text of one message, and how much text
/// the keys read.
#[derive(Default)]
pub struct TextCache {
    body: std::cell::OnceCell<String>,
    header: std::cell::OnceCell<String>,
    examined: std::cell::Cell<u64>,
}

impl TextCache {
    fn body(&self, message: &MessageData) -> &str {
        let body = self.body.get_or_init(|| {
            casemap::fold(&portico_mime::body_text(
                message.raw.as_deref().unwrap_or_default(),
            ))
        });
        self.count(body.len());
        body
    }

    fn header(&self, header: &[u8]) -> &str {
        let header = self
            .header
            .get_or_init(|| casemap::fold(&String::from_utf8_lossy(header)));
        self.count(header.len());
        header
    }

    fn count(&self, bytes: usize) {
        self.examined.set(self.examined.get() + bytes as u64);
    }

    /// Bytes of text the keys evaluated so far have examined (each key its own).
    pub fn examined(&self) -> u64 {
        self.examined.get()
    }
}

fn in_set(set: &SequenceSet, value: u32, max: u32) -> bool {
    set.0.iter().any(|range| {
        let bound = |b: SeqBound| match b {
            SeqBound::Value(v) => v,
            SeqBound::Star => max,
        };
        let (a, b) = (bound(range.start), bound(range.end));
        (a.min(b)..=a.max(b)).contains(&value)
    })
}

fn has_flag(message: &MessageData, flag: &str) -> bool {
    message.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

fn day_of(timestamp: i64, offset: i32) -> Date {
    let (year, month, day) =
        crate::parser::civil_from_days((timestamp + offset as i64).div_euclid(86_400));
    Date {
        year: year.clamp(0, u16::MAX as i64) as u16,
        month: month as u8,
        day: day as u8,
    }
}

fn header_matches(ctx: &Context<'_>, name: &str, needle: &str) -> bool {
    let matches = |value: &String| {
        contains(value, needle)
            || (is_address_field(name) && contains(&without_comments(value), needle))
    };
    if let Some(values) = ctx.message.fields.as_ref().and_then(|f| f.values(name)) {
        return values.iter().any(matches);
    }
    let raw = ctx.message.raw.as_deref().unwrap_or_default();
    ctx.text.count(header_block(ctx.message).len());
    let values = portico_mime::header_values(raw, name);
    // HEADER name "" matches every message that has the field (RFC 9051 §6.4.4).
    !values.is_empty() && values.iter().any(matches)
}

pub fn is_address_field(name: &str) -> bool {
    ["From", "To", "Cc", "Bcc"]
        .iter()
        .any(|field| field.eq_ignore_ascii_case(name))
}

/// An address field's value without its comments (RFC 5322 §3.2.2, nested, outside
/// quoted strings) and without the space they leave around `@` and `.` inside an
/// address: `<user (c)@ (c) example.org>` is `<user@example.org>`, as a client
/// searching FROM user@example.org means it.
pub fn without_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    // Folding white space left around the address's separators goes.
    let mut tight = String::with_capacity(out.len());
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            let mut next = chars.peek().copied();
            while next.is_some_and(char::is_whitespace) {
                chars.next();
                next = chars.peek().copied();
            }
            let around = |c: Option<char>| matches!(c, Some('@' | '.' | '>'));
            if around(next) || around(tight.chars().last()) || tight.ends_with('<') {
                continue;
            }
        }
        tight.push(c);
    }
    tight
}

fn sent_day(message: &MessageData) -> Option<Date> {
    if let Some(fields) = &message.fields {
        return fields.sent.map(|(ts, offset)| day_of(ts, offset));
    }
    let raw = message.raw.as_deref().unwrap_or_default();
    portico_mime::sent_date(raw).map(|(ts, offset)| day_of(ts, offset))
}

/// The raw header block of a message read with [`Detail::HeaderText`] or more.
fn header_block(message: &MessageData) -> &[u8] {
    let raw = message.raw.as_deref().unwrap_or_default();
    let end = message
        .summary
        .as_ref()
        .map_or(raw.len(), |summary| summary.header_len().min(raw.len()));
    &raw[..end]
}

/// Whether the message in `ctx` matches `key`.
pub fn matches(key: &SearchKey, ctx: &Context<'_>) -> bool {
    use SearchKey::*;
    let message = ctx.message;
    let internal = || {
        day_of(
            message.internal_date.timestamp,
            message.internal_date.offset,
        )
    };
    // RFC 8514 §4.3: where the save date is not known, the internal date stands in
    // for it (as the RFC has it for a folder whose storage keeps none).
    let saved = || match message.save_date {
        Some(date) => day_of(date.timestamp, date.offset),
        None => internal(),
    };
    match key {
        All => true,
        And(keys) => keys.iter().all(|k| matches(k, ctx)),
        Or(a, b) => matches(a, ctx) || matches(b, ctx),
        Not(k) => !matches(k, ctx),
        // Ruled out by the full-text index (and perhaps not read for it).
        other if ctx.hints.excludes(other, message.uid) => false,
        Answered => has_flag(message, "\\Answered"),
        Deleted => has_flag(message, "\\Deleted"),
        Draft => has_flag(message, "\\Draft"),
        Flagged => has_flag(message, "\\Flagged"),
        Seen => has_flag(message, "\\Seen"),
        Unanswered => !has_flag(message, "\\Answered"),
        Undeleted => !has_flag(message, "\\Deleted"),
        Undraft => !has_flag(message, "\\Draft"),
        Unflagged => !has_flag(message, "\\Flagged"),
        Unseen => !has_flag(message, "\\Seen"),
        Keyword(k) => has_flag(message, k),
        Unkeyword(k) => !has_flag(message, k),
        Recent => ctx.recent,
        New => ctx.recent && !has_flag(message, "\\Seen"),
        Old => !ctx.recent,
        Larger(n) => message.size > *n,
        Older(n) => message.internal_date.timestamp <= ctx.now - i64::from(*n),
        Younger(n) => message.internal_date.timestamp >= ctx.now - i64::from(*n),
        Smaller(n) => message.size < *n,
        ModSeq(n) => message.modseq >= *n,
        Before(date) => internal() < *date,
        On(date) => internal() == *date,
        Since(date) => internal() >= *date,
        SentBefore(date) => sent_day(message).is_some_and(|d| d < *date),
        SentOn(date) => sent_day(message).is_some_and(|d| d == *date),
        SentSince(date) => sent_day(message).is_some_and(|d| d >= *date),
        SavedBefore(date) => saved() < *date,
        SavedOn(date) => saved() == *date,
        SavedSince(date) => saved() >= *date,
        // Every folder keeps save dates (messages from before they were kept answer
        // SAVEDATE NIL, and the SAVED* keys use their internal date).
        SaveDateSupported => true,
        SequenceSet(set) => in_set(set, ctx.seq, ctx.max_seq),
        Uid(set) => in_set(set, message.uid, ctx.max_uid),
        Bcc(s) => header_matches(ctx, "Bcc", s),
        Cc(s) => header_matches(ctx, "Cc", s),
        From(s) => header_matches(ctx, "From", s),
        To(s) => header_matches(ctx, "To", s),
        Subject(s) => header_matches(ctx, "Subject", s),
        Header(name, s) => header_matches(ctx, name, s),
        Body(s) => casemap::folded_contains(ctx.text.body(message), s),
        Text(s) => {
            let header = header_block(message);
            casemap::folded_contains(ctx.text.header(header), s)
                || decoded_header_contains(ctx, header, s)
                || casemap::folded_contains(ctx.text.body(message), s)
        }
    }
}

/// TEXT looks at header values as the user reads them: RFC 2047 encoded words decoded.
fn decoded_header_contains(ctx: &Context<'_>, header: &[u8], needle: &str) -> bool {
    ctx.text.count(header.len());
    portico_mime::all_header_values(header)
        .iter()
        .any(|value| contains(value, needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{DateTime, SeqRange};

    fn message(raw: &[u8], flags: &[&str]) -> MessageData {
        MessageData {
            uid: 10,
            email_id: 0,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            // 2026-01-01 09:37:00 -0500
            internal_date: DateTime {
                timestamp: 1_767_278_220,
                offset: -5 * 3600,
            },
            save_date: None,
            size: raw.len() as u64,
            modseq: 4,
            summary: Some(portico_mime::summarize(raw)),
            raw: Some(raw.to_vec()),
            fields: None,
            raw_in_store: false,
        }
    }

    /// Issue 9: `NOT TEXT q1 NOT TEXT q2 …` decoded every message once per key. The text
    /// is now decoded once per message and shared by every key of the search.
    #[test]
    fn many_text_keys_share_one_decoding() {
        use SearchKey::*;
        let m = message(
            b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nHello B\xc3\xb6b\r\n",
            &[],
        );
        let ctx = Context {
            seq: 1,
            max_seq: 1,
            max_uid: 10,
            recent: false,
            message: &m,
            text: TextCache::default(),
            hints: &TextHints::default(),
            now: 0,
        };
        let mut keys: Vec<SearchKey> = (0..3000)
            .map(|i| Not(Box::new(Text(format!("q{i}")))))
            .collect();
        keys.push(Body("BÖB".into()));
        keys.push(Text("hello".into()));
        assert!(matches(&And(keys), &ctx));
        assert_eq!(
            ctx.text.body.get().map(String::as_str),
            Some("HELLO BO\u{308}B\r\n")
        );
        assert!(ctx.text.header.get().is_some());
    }

    fn check(key: SearchKey, message: &MessageData) -> bool {
        matches(
            &key,
            &Context {
                seq: 2,
                max_seq: 3,
                max_uid: 12,
                recent: false,
                message,
                text: TextCache::default(),
                hints: &TextHints::default(),
                now: 1_000_000,
            },
        )
    }

    /// RFC 8514 §4.3: SAVEDBEFORE, SAVEDON and SAVEDSINCE compare the save date's day
    /// in its own zone; where it is not known, the internal date's; SAVEDATESUPPORTED
    /// matches every message. None of them needs more than the metadata, and only
    /// SAVEDATESUPPORTED can do with the listing (it reads nothing).
    #[test]
    fn saved_keys_compare_the_save_date_or_else_the_internal_date() {
        use SearchKey::*;
        let day = |day, month, year| Date { year, month, day };
        let unknown = message(b"Subject: s\r\n\r\nx\r\n", &[]);
        // Internal date 2026-01-01 (-0500); saved 2026-02-05 23:30 -0800, which is
        // 2026-02-06 in UTC: the day is taken in the save date's own zone.
        let known = MessageData {
            save_date: Some(DateTime {
                timestamp: 1_770_363_000,
                offset: -8 * 3600,
            }),
            ..unknown.clone()
        };
        let cases = [
            (SavedOn(day(5, 2, 2026)), true, false),
            (SavedOn(day(6, 2, 2026)), false, false),
            (SavedOn(day(1, 1, 2026)), false, true),
            (SavedSince(day(5, 2, 2026)), true, false),
            (SavedSince(day(6, 2, 2026)), false, false),
            (SavedSince(day(1, 1, 2026)), true, true),
            (SavedSince(day(2, 1, 2026)), true, false),
            (SavedBefore(day(6, 2, 2026)), true, true),
            (SavedBefore(day(5, 2, 2026)), false, true),
            (SavedBefore(day(2, 1, 2026)), false, true),
            (SavedBefore(day(1, 1, 2026)), false, false),
            (SaveDateSupported, true, true),
            (Not(Box::new(SaveDateSupported)), false, false),
        ];
        for (key, on_known, on_unknown) in cases {
            assert_eq!(check(key.clone(), &known), on_known, "{key:?} saved");
            assert_eq!(
                check(key.clone(), &unknown),
                on_unknown,
                "{key:?} not saved"
            );
        }
        // The internal date keys are unchanged by a save date.
        assert!(check(On(day(1, 1, 2026)), &known));
        for key in [
            SavedBefore(day(1, 1, 2026)),
            SavedOn(day(1, 1, 2026)),
            SavedSince(day(1, 1, 2026)),
        ] {
            assert_eq!(detail(&key), Detail::Meta);
            assert!(!reads_only_listed(&key), "{key:?}");
        }
        assert_eq!(detail(&SaveDateSupported), Detail::Meta);
        assert!(reads_only_listed(&And(vec![SaveDateSupported, Unseen])));
        assert_eq!(
            prejudge(&SaveDateSupported, 10, &TextHints::default()),
            Some(true)
        );
    }

    /// I18NLEVEL=1 (RFC 5255 §4.3): every string key compares by i;unicode-casemap, so
    /// case, composed or decomposed accents and compatibility forms do not matter,
    /// whichever side has them; header fields kept at append, header fields read from
    /// the message and the body all agree.
    #[test]
    fn string_keys_use_unicode_casemap() {
        use SearchKey::*;
        // Subject "Café Ǆemal", From "José", body "crème ﬁne Ⅻ" with è decomposed.
        let raw = "Subject: =?utf-8?q?Caf=C3=A9_=C7=84emal?=\r\nFrom: =?utf-8?q?Jos=C3=A9?= <jose@example.org>\r\nX-Note: Sto\u{308}rung\r\n\r\ncre\u{300}me \u{FB01}ne \u{216B}\r\n";
        let m = message(raw.as_bytes(), &[]);
        let kept = MessageData {
            fields: Some(portico_mime::search_fields(raw.as_bytes())),
            ..m.clone()
        };
        let cases = [
            (Subject("CAFE\u{301}".into()), true),
            (Subject("café".into()), true),
            // A needle without the accent matches only where the mark would follow
            // the needle's end: É is E U+0301 when prepared, ö is o U+0308.
            (Subject("cafe".into()), true),
            (Subject("\u{1C6}EMAL".into()), true),
            (Subject("dzemal".into()), false),
            (From("JOSÉ".into()), true),
            (From("jose\u{301} <".into()), true),
            (Header("x-note".into(), "STÖRUNG".into()), true),
            (Header("x-note".into(), "storung".into()), false),
            (Header("x-note".into(), "STO".into()), true),
            (Body("CRÈME".into()), true),
            (Body("crème".into()), true),
            (Body("\u{FB01}ne".into()), true),
            // ﬁ prepares to a lower-case `fi` (RFC 5051 decomposes after titlecasing),
            // Ⅻ to `XII`.
            (Body("fine".into()), false),
            (Body("xii".into()), true),
            (Body("\u{216B}".into()), true),
            (Text("café".into()), true),
            (Text("josé".into()), true),
            (Text("CRE\u{300}ME".into()), true),
            (Text("crema".into()), false),
        ];
        for (key, expected) in cases {
            assert_eq!(check(key.clone(), &m), expected, "{key:?}");
            assert_eq!(
                check(key.clone(), &kept),
                expected,
                "{key:?} on kept fields"
            );
        }
    }

    #[test]
    fn keys_match_as_rfc_9051_says() {
        let raw = b"From: Alice <alice@example.com>\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nDate: Thu, 01 Jan 2026 09:37:00 -0500\r\n\r\nHello B\xc3\xb6b\r\n";
        let m = message(raw, &["\\Seen", "$Work"]);
        use SearchKey::*;
        assert!(check(From("ALICE".into()), &m));
        // Comments inside an address do not hide it (RFC 5322 §3.2.2).
        let commented = message(
            b"From: <user-from (comment)@ (comment) domain.org>\r\nTo: \"a (not a comment)\" <b@c.d>\r\n\r\nx\r\n",
            &[],
        );
        assert!(check(From("user-from@domain.org".into()), &commented));
        assert!(!check(From("user-from@other.org".into()), &commented));
        assert!(check(To("a (not a comment)".into()), &commented));
        assert_eq!(
            without_comments("Ann (the (nested) one) <ann . x (c) @ example . org>"),
            "Ann <ann.x@example.org>"
        );
        assert!(check(Subject("grüße".into()), &m));
        assert!(check(Body("böb".into()), &m));
        assert!(check(Text("alice@".into()), &m));
        assert!(
            check(Text("Grüße".into()), &m),
            "TEXT decodes encoded words in headers"
        );
        assert!(!check(Body("alice".into()), &m));
        assert!(check(Seen, &m) && !check(Unseen, &m) && check(Keyword("$work".into()), &m));
        assert!(check(
            On(Date {
                year: 2026,
                month: 1,
                day: 1
            }),
            &m
        ));
        assert!(check(
            SentSince(Date {
                year: 2026,
                month: 1,
                day: 1
            }),
            &m
        ));
        assert!(!check(
            Before(Date {
                year: 2026,
                month: 1,
                day: 1
            }),
            &m
        ));
        assert!(check(Larger(10), &m) && !check(Smaller(10), &m));
        assert!(!check(Or(Box::new(Deleted), Box::new(Flagged)), &m));
        assert!(check(Not(Box::new(Deleted)), &m));
        let star = crate::command::SequenceSet(vec![SeqRange {
            start: SeqBound::Value(2),
            end: SeqBound::Star,
        }]);
        assert!(check(SearchKey::SequenceSet(star), &m));
        let ten = crate::command::SequenceSet(vec![SeqRange {
            start: SeqBound::Value(10),
            end: SeqBound::Value(10),
        }]);
        assert!(check(Uid(ten), &m));
        assert!(check(Header("subject".into(), "".into()), &m));
        assert!(!check(Header("x-missing".into(), "".into()), &m));
        assert_eq!(detail(&And(vec![Seen, Body("x".into())])), Detail::Full);
        assert_eq!(
            detail(&Or(Box::new(Seen), Box::new(From("x".into())))),
            Detail::Fields
        );
        assert_eq!(
            detail(&Header("SUBJECT".into(), "x".into())),
            Detail::Fields
        );
        assert_eq!(
            detail(&Header("X-Mailer".into(), "x".into())),
            Detail::HeaderText
        );
        // The fields kept at append answer as the header does.
        let raw = m.raw.clone().unwrap_or_default();
        let with_fields = MessageData {
            fields: Some(portico_mime::search_fields(&raw)),
            raw: None,
            ..m.clone()
        };
        for key in [
            From("alice".into()),
            From("nobody".into()),
            Subject("".into()),
            Header("subject".into(), "".into()),
            SentOn(crate::command::Date {
                year: 2024,
                month: 1,
                day: 2,
            }),
        ] {
            assert_eq!(
                check(key.clone(), &with_fields),
                check(key.clone(), &m),
                "{key:?}"
            );
        }
    }
}
