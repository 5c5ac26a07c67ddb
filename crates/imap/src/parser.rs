//! The IMAP command grammar: one framed command (from [`crate::reader`]) to a typed
//! [`Command`].
//!
//! Follows RFC 9051 §9 (formal syntax) and RFC 3501 §9, plus the extensions Portico
//! serves: SASL-IR (RFC 4959), ENABLE (RFC 5161), CONDSTORE/QRESYNC (RFC 7162),
//! LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE and CREATE-SPECIAL-USE
//! (RFC 6154), ESEARCH (RFC 4731), BINARY (RFC 3516), UTF8=ACCEPT APPEND (RFC 6855),
//! LITERAL+/LITERAL- (RFC 7888), MOVE (RFC 6851), UIDPLUS's UID EXPUNGE (RFC 4315),
//! ID (RFC 2971), SORT and THREAD (RFC 5256) with DISPLAYFROM/DISPLAYTO (RFC 5957) and
//! ESORT return options (RFC 5267), and the PARTIAL return option (RFC 9394).
//!
//! Keywords are case-insensitive; lines may end in CRLF or a bare LF (and the final line
//! end may be absent). Everything the parser keeps is a slice of its input, so it never
//! allocates more than the command's size; nesting of SEARCH keys is capped so no
//! input can exhaust the stack.
//!
//! A [`ParseError`] is the response the session sends: mostly `BAD` with a short text.
//! Two are not syntax errors but a tagged `NO`: an unsupported SEARCH, SORT or THREAD
//! charset ([`BADCHARSET_MESSAGE`], with `BADCHARSET`), and a SEARCH over
//! [`MAX_SEARCH_KEYS`] ([`TOO_MANY_SEARCH_KEYS`], with `LIMIT`). Repeated FETCH items
//! collapse to one, and more than [`MAX_FETCH_ITEMS`] distinct ones are refused.

use std::collections::HashSet;

use crate::response::{Code, Condition, Status};

use crate::command::{
    AppendData, AppendMessage, CatPart, Command, CommandBody, Date, DateTime, EventGroup,
    FetchAttr, FetchItems, ListReturn, ListSelection, MailboxFilter, MetadataDepth, NotifyEvent,
    NotifySet, Partial, PartialRange, PreviewForm, QresyncParams, SearchKey, SearchReturn, Secret,
    Section, SectionText, SelectParams, SeqBound, SeqRange, SequenceSet, SortCriterion, SortKey,
    StatusItem, StoreMode, Tag, ThreadAlgorithm,
};

/// Why a command could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// The command's tag, if it could be read: answer `tag BAD …`, else `* BAD …`.
    pub tag: Option<String>,
    /// `BAD`, or `NO` for a well-formed command the server refuses.
    pub condition: Condition,
    pub code: Option<Code>,
    /// Short human text for the response (printable ASCII only).
    pub message: String,
}

impl ParseError {
    fn new(tag: Option<String>, message: String) -> ParseError {
        // RFC 9051 §6.4.4: an unknown charset is a NO, not a BAD. A SEARCH over the
        // key limit is well formed; it meets a limit (RFC 5530).
        let (condition, code) = match message.as_str() {
            BADCHARSET_MESSAGE => (Condition::No, Some(Code::BadCharset(CHARSETS.to_vec()))),
            TOO_MANY_SEARCH_KEYS => (Condition::No, Some(Code::Limit)),
            TOO_MANY_FETCH_ITEMS => (Condition::Bad, Some(Code::Limit)),
            _ => (Condition::Bad, None),
        };
        ParseError {
            tag,
            condition,
            code,
            message,
        }
    }

    /// The response to send, to be tagged with [`ParseError::tag`].
    pub fn status(&self) -> Status {
        Status {
            condition: self.condition,
            code: self.code.clone(),
            text: self.message.clone().into(),
        }
    }
}

/// The error text for a SEARCH with an unsupported CHARSET: a tagged `NO` with
/// `BADCHARSET (US-ASCII UTF-8)` (RFC 9051 §6.4.4).
pub const BADCHARSET_MESSAGE: &str = "Unsupported charset";

/// The charsets SEARCH, SORT and THREAD take, as `BADCHARSET` lists them.
pub const CHARSETS: [&str; 2] = ["US-ASCII", "UTF-8"];

/// Deepest nesting of SEARCH keys (parentheses, NOT, OR) accepted.
pub const MAX_SEARCH_DEPTH: usize = 64;

/// Most keys one SEARCH may hold, counting every key of the tree (a parenthesized list,
/// NOT and OR count as keys too). Each key costs a pass over every message, so the
/// count bounds a search's work; real clients stay far below it.
pub const MAX_SEARCH_KEYS: usize = 1000;

/// The error text for a SEARCH over [`MAX_SEARCH_KEYS`]; the session answers it with a
/// tagged `NO` (the command is well formed, it meets a limit: RFC 5530 `LIMIT`).
pub const TOO_MANY_SEARCH_KEYS: &str = "Too many search keys";

/// Most distinct items one FETCH may name. Duplicates collapse to one (keeping the
/// first), so a repeated item cannot multiply the response.
pub const MAX_FETCH_ITEMS: usize = 256;
/// NOTIFY bounds: a client names few groups, events and mailboxes (RFC 5465 §3.1
/// advises few), and each costs the server work on every change.
pub const MAX_EVENT_GROUPS: usize = 16;
pub const MAX_NOTIFY_EVENTS: usize = 16;
pub const MAX_NOTIFY_MAILBOXES: usize = 100;

/// The error text (tagged `BAD`, with `LIMIT`) for a FETCH over [`MAX_FETCH_ITEMS`].
pub const TOO_MANY_FETCH_ITEMS: &str = "Too many FETCH items";

/// RFC 9051 ATOM-CHAR: CHAR except atom-specials.
pub(crate) fn is_atom_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// RFC 9051 ASTRING-CHAR.
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// RFC 9051 tag: any ASTRING-CHAR except `+`.
pub(crate) fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// RFC 9051 list-char: ATOM-CHAR, list-wildcards, resp-specials.
pub(crate) fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

pub(crate) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

type PResult<T> = Result<T, String>;

/// Parses one command: its line(s) and literal bytes as [`crate::reader`] delivers them.
pub fn parse_command(raw: &[u8]) -> Result<Command, ParseError> {
    let mut p = Parser {
        s: raw,
        pos: 0,
        search_keys: 0,
    };
    let tag = p.tag().map_err(|message| ParseError::new(None, message))?;
    match p.command_body().and_then(|body| p.finish().map(|()| body)) {
        Ok(body) => Ok(Command {
            tag: Tag(tag),
            body,
        }),
        Err(message) => Err(ParseError::new(Some(tag), message)),
    }
}

/// A section-spec alone (RFC 9051 §9), as an IMAP URL's `;SECTION=` carries it once
/// percent-decoded (RFC 5092 §11 `enc-section`): `1.2`, `HEADER`, `1.MIME`,
/// `HEADER.FIELDS (From)`. Never empty.
pub(crate) fn parse_section_spec(spec: &[u8]) -> Result<Section, String> {
    if spec.is_empty() || spec.iter().any(|b| !(0x20..0x7f).contains(b)) {
        return Err("Invalid section".to_string());
    }
    let mut bracketed = Vec::with_capacity(spec.len() + 2);
    bracketed.push(b'[');
    bracketed.extend_from_slice(spec);
    bracketed.push(b']');
    let mut p = Parser {
        s: &bracketed,
        pos: 0,
        search_keys: 0,
    };
    let section = p.section()?;
    if p.pos != bracketed.len() {
        return Err("Invalid section".to_string());
    }
    Ok(section)
}

/// Client text for an error message: printable ASCII, at most 40 characters.
fn printable(bytes: &[u8]) -> String {
    let mut s: String = bytes
        .iter()
        .take(40)
        .map(|&b| match b {
            0x21..=0x7e => char::from(b),
            _ => '?',
        })
        .collect();
    if bytes.len() > 40 {
        s.push_str("...");
    }
    s
}

/// Atom bytes are ASCII, so this is lossless for them.
fn ascii_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?
            .checked_add(u64::from(d.wrapping_sub(b'0')))
    })
}

fn is_sasl_ir(ir: &[u8]) -> bool {
    if ir == b"=" {
        return true;
    }
    let pad = ir.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &ir[..ir.len() - pad];
    !body.is_empty()
        && pad <= 2
        && body
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Several keys in a row mean AND; one key is itself.
fn and_of(mut keys: Vec<SearchKey>) -> SearchKey {
    if keys.len() == 1
        && let Some(key) = keys.pop()
    {
        return key;
    }
    SearchKey::And(keys)
}

fn search_string(bytes: Vec<u8>) -> PResult<String> {
    String::from_utf8(bytes).map_err(|_| "Invalid UTF-8 in search string".to_string())
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// SEARCH keys parsed so far, against [`MAX_SEARCH_KEYS`].
    search_keys: usize,
}

impl<'a> Parser<'a> {
    // ---- Low-level helpers -------------------------------------------------------

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.s.get(self.pos + offset).copied()
    }

    fn at_eol(&self) -> bool {
        matches!(self.peek(), None | Some(b'\r' | b'\n'))
    }

    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, b: u8, message: &str) -> PResult<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(message.to_string())
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn atom(&mut self) -> &'a [u8] {
        self.take_while(is_atom_char)
    }

    fn missing_or_invalid(&self, what: &str) -> String {
        if self.at_eol() {
            format!("Missing {what}")
        } else {
            format!("Invalid {what}")
        }
    }

    /// The SP before an argument.
    fn sp(&mut self, what: &str) -> PResult<()> {
        if self.eat(b' ') {
            Ok(())
        } else if self.at_eol() || self.peek() == Some(b')') {
            Err(format!("Missing {what}"))
        } else {
            Err(format!("Expected SP before {what}"))
        }
    }

    /// Whether the input continues with keyword `kw` (case-insensitive) as a whole atom.
    fn peek_keyword(&self, kw: &str) -> bool {
        let end = self.pos + kw.len();
        self.s
            .get(self.pos..end)
            .is_some_and(|w| w.eq_ignore_ascii_case(kw.as_bytes()))
            && !self.s.get(end).copied().is_some_and(is_atom_char)
    }

    fn peek_nil(&self) -> bool {
        self.peek_keyword("NIL")
    }

    /// The end of the command: an optional final line end, then nothing.
    fn finish(&mut self) -> PResult<()> {
        let rest = &self.s[self.pos..];
        if rest.is_empty() || rest == b"\r\n" || rest == b"\n" {
            Ok(())
        } else {
            Err("Extra data after command".to_string())
        }
    }

    // ---- Strings and numbers -----------------------------------------------------

    fn tag(&mut self) -> PResult<String> {
        if self.at_eol() {
            return Err("Empty command line".to_string());
        }
        let token = self.take_while(|b| !matches!(b, b' ' | b'\r' | b'\n'));
        if token.is_empty() || !token.iter().all(|&b| is_tag_char(b)) {
            return Err("Invalid tag".to_string());
        }
        Ok(ascii_string(token))
    }

    /// A quoted string; the caller has seen the opening `"`.
    fn quoted(&mut self) -> PResult<Vec<u8>> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r' | b'\n') => {
                    return Err("Unterminated quoted string".to_string());
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => match self.peek_at(1) {
                    Some(c @ (b'"' | b'\\')) => {
                        out.push(c);
                        self.pos += 2;
                    }
                    _ => return Err("Invalid escape in quoted string".to_string()),
                },
                Some(0) => return Err("NUL in quoted string".to_string()),
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    /// `{n}`/`{n+}` CRLF and n bytes; with `allow8`, also `~{n}` (literal8).
    fn literal(&mut self, allow8: bool) -> PResult<Vec<u8>> {
        if self.eat(b'~') && !allow8 {
            return Err("literal8 is not allowed here".to_string());
        }
        self.expect(b'{', "Invalid literal")?;
        let digits = self.take_while(|b| b.is_ascii_digit());
        let len = parse_u64(digits).ok_or("Invalid literal size")?;
        self.eat(b'+');
        self.expect(b'}', "Invalid literal")?;
        self.eat(b'\r');
        self.expect(b'\n', "Literal size must end its line")?;
        let rest = self.s.len() - self.pos;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= rest)
            .ok_or("Truncated literal")?;
        let data = self.s[self.pos..self.pos + len].to_vec();
        self.pos += len;
        Ok(data)
    }

    fn astring(&mut self, what: &str) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(false),
            Some(b'~') if self.peek_at(1) == Some(b'{') => self.literal(false),
            _ => {
                let atom = self.take_while(is_astring_char);
                if atom.is_empty() {
                    Err(self.missing_or_invalid(what))
                } else {
                    Ok(atom.to_vec())
                }
            }
        }
    }

    fn string(&mut self, what: &str) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(false),
            Some(b'~') if self.peek_at(1) == Some(b'{') => self.literal(false),
            _ => Err(self.missing_or_invalid(what)),
        }
    }

    fn nstring(&mut self, what: &str) -> PResult<Option<Vec<u8>>> {
        if self.peek_nil() {
            self.pos += 3;
            Ok(None)
        } else {
            self.string(what).map(Some)
        }
    }

    /// RFC 9051 list-mailbox: like astring, but `%` and `*` are allowed unquoted.
    fn list_mailbox(&mut self, what: &str) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(false),
            Some(b'~') if self.peek_at(1) == Some(b'{') => self.literal(false),
            _ => {
                let atom = self.take_while(is_list_char);
                if atom.is_empty() {
                    Err(self.missing_or_invalid(what))
                } else {
                    Ok(atom.to_vec())
                }
            }
        }
    }

    fn sp_mailbox(&mut self) -> PResult<Vec<u8>> {
        self.sp("mailbox name")?;
        self.astring("mailbox name")
    }

    fn number64(&mut self, what: &str) -> PResult<u64> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return Err(self.missing_or_invalid(what));
        }
        parse_u64(digits).ok_or_else(|| format!("Invalid {what}"))
    }

    fn number32(&mut self, what: &str) -> PResult<u32> {
        let n = self.number64(what)?;
        u32::try_from(n).map_err(|_| format!("Invalid {what}"))
    }

    fn nz_number(&mut self, what: &str) -> PResult<u32> {
        match self.number32(what)? {
            0 => Err(format!("Invalid {what}")),
            n => Ok(n),
        }
    }

    fn sequence_set(&mut self) -> PResult<SequenceSet> {
        if self.peek() == Some(b'$') {
            self.pos += 1;
            return match self.peek() {
                None | Some(b' ' | b')' | b'\r' | b'\n') => Ok(SequenceSet::saved()),
                _ => Err("Invalid sequence set: $ stands alone (RFC 5182)".to_string()),
            };
        }
        let mut ranges = Vec::new();
        loop {
            let start = self.seq_number()?;
            let end = if self.eat(b':') {
                self.seq_number()?
            } else {
                start
            };
            ranges.push(SeqRange { start, end });
            if !self.eat(b',') {
                break;
            }
        }
        match self.peek() {
            None | Some(b' ' | b')' | b'\r' | b'\n') => Ok(SequenceSet(ranges)),
            _ => Err("Invalid sequence set".to_string()),
        }
    }

    fn seq_number(&mut self) -> PResult<SeqBound> {
        match self.peek() {
            Some(b'*') => {
                self.pos += 1;
                Ok(SeqBound::Star)
            }
            Some(b'$') => Err("Invalid sequence set: $ stands alone (RFC 5182)".to_string()),
            Some(b) if b.is_ascii_digit() => {
                let digits = self.take_while(|b| b.is_ascii_digit());
                match parse_u64(digits).and_then(|n| u32::try_from(n).ok()) {
                    Some(n) if n > 0 => Ok(SeqBound::Value(n)),
                    _ => Err("Invalid sequence set".to_string()),
                }
            }
            _ if self.at_eol() => Err("Missing sequence set".to_string()),
            _ => Err("Invalid sequence set".to_string()),
        }
    }

    /// A flag: `\Name` or a keyword atom. (`\*` is not a flag in commands.)
    fn flag(&mut self, what: &str) -> PResult<String> {
        let start = self.pos;
        self.eat(b'\\');
        if self.atom().is_empty() {
            return Err(self.missing_or_invalid(what));
        }
        Ok(ascii_string(&self.s[start..self.pos]))
    }

    fn flag_list(&mut self) -> PResult<Vec<String>> {
        self.expect(b'(', "Invalid flag list")?;
        let mut flags = Vec::new();
        if self.eat(b')') {
            return Ok(flags);
        }
        loop {
            flags.push(self.flag("flag")?);
            if self.eat(b')') {
                return Ok(flags);
            }
            self.sp("flag")?;
        }
    }

    fn fixed_digits(&mut self, n: usize) -> Option<u32> {
        let digits = self.s.get(self.pos..self.pos + n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.pos += n;
        parse_u64(digits).and_then(|v| u32::try_from(v).ok())
    }

    fn month(&mut self) -> Option<u32> {
        let name = self.s.get(self.pos..self.pos + 3)?;
        let index = MONTHS
            .iter()
            .position(|m| m.as_bytes().eq_ignore_ascii_case(name))?;
        self.pos += 3;
        u32::try_from(index + 1).ok()
    }

    /// `d-Mon-yyyy`, 1 or 2 digits for the day: (year, month, day), checked.
    fn date_text(&mut self) -> Option<(i64, u32, u32)> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() || digits.len() > 2 {
            return None;
        }
        let day = u32::try_from(parse_u64(digits)?).ok()?;
        if !self.eat(b'-') {
            return None;
        }
        let month = self.month()?;
        if !self.eat(b'-') {
            return None;
        }
        let year = i64::from(self.fixed_digits(4)?);
        (day >= 1 && day <= days_in_month(year, month)).then_some((year, month, day))
    }

    /// SEARCH's `date`: date-text, optionally quoted.
    fn date(&mut self) -> PResult<Date> {
        if self.at_eol() {
            return Err("Missing date".to_string());
        }
        let quoted = self.eat(b'"');
        let (year, month, day) = self.date_text().ok_or("Invalid date")?;
        if quoted && !self.eat(b'"') {
            return Err("Invalid date".to_string());
        }
        let invalid = || "Invalid date".to_string();
        Ok(Date {
            year: u16::try_from(year).map_err(|_| invalid())?,
            month: u8::try_from(month).map_err(|_| invalid())?,
            day: u8::try_from(day).map_err(|_| invalid())?,
        })
    }

    fn sp_date(&mut self) -> PResult<Date> {
        self.sp("date")?;
        self.date()
    }

    /// APPEND's date-time: `"dd-Mon-yyyy hh:mm:ss +zzzz"` (a space-padded day allowed).
    fn date_time(&mut self) -> PResult<DateTime> {
        self.date_time_inner()
            .ok_or_else(|| "Invalid date-time".to_string())
    }

    fn date_time_inner(&mut self) -> Option<DateTime> {
        if !self.eat(b'"') {
            return None;
        }
        self.eat(b' ');
        let (year, month, day) = self.date_text()?;
        let mut time = [0u32; 3];
        for (i, field) in time.iter_mut().enumerate() {
            let sep = if i == 0 { b' ' } else { b':' };
            if !self.eat(sep) {
                return None;
            }
            *field = self.fixed_digits(2)?;
        }
        let [hour, minute, second] = time;
        if !self.eat(b' ') {
            return None;
        }
        let sign = match self.peek()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.pos += 1;
        let zone_hours = self.fixed_digits(2)?;
        let zone_minutes = self.fixed_digits(2)?;
        if !self.eat(b'"') || hour > 23 || minute > 59 || second > 59 || zone_minutes > 59 {
            return None;
        }
        let offset = sign * i32::try_from(zone_hours * 3600 + zone_minutes * 60).ok()?;
        let local = days_from_civil(year, month, day) * 86_400
            + i64::from(hour * 3600 + minute * 60 + second);
        Some(DateTime {
            timestamp: local - i64::from(offset),
            offset,
        })
    }

    // ---- Commands ----------------------------------------------------------------

    fn command_body(&mut self) -> PResult<CommandBody> {
        self.sp("command name")?;
        let name = self.atom();
        if name.is_empty() || !matches!(self.peek(), None | Some(b' ' | b'\r' | b'\n')) {
            return Err(self.missing_or_invalid("command name"));
        }
        // A command added here is added to the names statistics know (`tally.rs`) too.
        Ok(match name.to_ascii_uppercase().as_slice() {
            b"CAPABILITY" => CommandBody::Capability,
            b"NOOP" => CommandBody::Noop,
            b"LOGOUT" => CommandBody::Logout,
            b"STARTTLS" => CommandBody::StartTls,
            b"NAMESPACE" => CommandBody::Namespace,
            b"IDLE" => CommandBody::Idle,
            b"CHECK" => CommandBody::Check,
            b"CLOSE" => CommandBody::Close,
            b"UNSELECT" => CommandBody::Unselect,
            b"UNAUTHENTICATE" => CommandBody::Unauthenticate,
            b"EXPUNGE" => CommandBody::Expunge,
            b"CANCELUPDATE" => self.cancel_update()?,
            b"LOGIN" => self.login()?,
            b"AUTHENTICATE" => self.authenticate()?,
            b"ENABLE" => self.enable()?,
            b"SELECT" => {
                let (mailbox, params) = self.select_args()?;
                CommandBody::Select { mailbox, params }
            }
            b"EXAMINE" => {
                let (mailbox, params) = self.select_args()?;
                CommandBody::Examine { mailbox, params }
            }
            b"CREATE" => self.create()?,
            b"DELETE" => CommandBody::Delete {
                mailbox: self.sp_mailbox()?,
            },
            b"RENAME" => {
                let from = self.sp_mailbox()?;
                self.sp("new mailbox name")?;
                let to = self.astring("new mailbox name")?;
                CommandBody::Rename { from, to }
            }
            b"SUBSCRIBE" => CommandBody::Subscribe {
                mailbox: self.sp_mailbox()?,
            },
            b"UNSUBSCRIBE" => CommandBody::Unsubscribe {
                mailbox: self.sp_mailbox()?,
            },
            b"LIST" => self.list()?,
            b"LSUB" => {
                self.sp("mailbox reference")?;
                let reference = self.astring("mailbox reference")?;
                self.sp("mailbox pattern")?;
                let pattern = self.list_mailbox("mailbox pattern")?;
                CommandBody::Lsub { reference, pattern }
            }
            b"STATUS" => {
                let mailbox = self.sp_mailbox()?;
                self.sp("status items")?;
                let items = self.status_items()?;
                CommandBody::Status { mailbox, items }
            }
            b"APPEND" => self.append()?,
            b"GETMETADATA" => self.getmetadata()?,
            b"SETMETADATA" => self.setmetadata()?,
            b"SEARCH" => self.search(false)?,
            b"SORT" => self.sort(false)?,
            b"THREAD" => self.thread(false)?,
            b"FETCH" => self.fetch(false)?,
            b"STORE" => self.store(false)?,
            b"COPY" => {
                let (set, mailbox) = self.set_and_mailbox()?;
                CommandBody::Copy {
                    uid: false,
                    set,
                    mailbox,
                }
            }
            b"MOVE" => {
                let (set, mailbox) = self.set_and_mailbox()?;
                CommandBody::Move {
                    uid: false,
                    set,
                    mailbox,
                }
            }
            b"UID" => self.uid()?,
            b"ID" => self.id()?,
            b"GETQUOTA" => {
                self.sp("quota root")?;
                CommandBody::GetQuota {
                    root: self.astring("quota root")?,
                }
            }
            b"GETQUOTAROOT" => CommandBody::GetQuotaRoot {
                mailbox: self.sp_mailbox()?,
            },
            b"SETQUOTA" => self.setquota()?,
            b"COMPRESS" => self.compress()?,
            b"NOTIFY" => self.notify()?,
            _ => return Err(format!("Unknown command {}", printable(name))),
        })
    }

    fn uid(&mut self) -> PResult<CommandBody> {
        self.sp("UID command")?;
        let name = self.atom();
        if name.is_empty() {
            return Err(self.missing_or_invalid("UID command"));
        }
        Ok(match name.to_ascii_uppercase().as_slice() {
            b"FETCH" => self.fetch(true)?,
            b"SEARCH" => self.search(true)?,
            b"SORT" => self.sort(true)?,
            b"THREAD" => self.thread(true)?,
            b"STORE" => self.store(true)?,
            b"COPY" => {
                let (set, mailbox) = self.set_and_mailbox()?;
                CommandBody::Copy {
                    uid: true,
                    set,
                    mailbox,
                }
            }
            b"MOVE" => {
                let (set, mailbox) = self.set_and_mailbox()?;
                CommandBody::Move {
                    uid: true,
                    set,
                    mailbox,
                }
            }
            b"EXPUNGE" => {
                self.sp("sequence set")?;
                CommandBody::UidExpunge {
                    set: self.sequence_set()?,
                }
            }
            _ => return Err(format!("Unknown UID command {}", printable(name))),
        })
    }

    fn login(&mut self) -> PResult<CommandBody> {
        self.sp("user name")?;
        let username = self.astring("user name")?;
        self.sp("password")?;
        let password = self.astring("password")?;
        Ok(CommandBody::Login {
            username,
            password: crate::command::Secret(password),
        })
    }

    /// RFC 9051 §6.2.2, SASL-IR (RFC 4959) initial response.
    fn authenticate(&mut self) -> PResult<CommandBody> {
        self.sp("authentication mechanism")?;
        let mechanism = self.atom();
        if mechanism.is_empty() {
            return Err(self.missing_or_invalid("authentication mechanism"));
        }
        let initial_response = if self.eat(b' ') {
            let ir = self.take_while(|b| !matches!(b, b' ' | b'\r' | b'\n'));
            if !is_sasl_ir(ir) {
                return Err("Invalid SASL initial response".to_string());
            }
            Some(Secret(ir.to_vec()))
        } else {
            None
        };
        Ok(CommandBody::Authenticate {
            mechanism: ascii_string(mechanism),
            initial_response,
        })
    }

    /// RFC 4978 §5: `COMPRESS SP algorithm`; any atom, so that an unknown mechanism is
    /// the session's to refuse.
    fn compress(&mut self) -> PResult<CommandBody> {
        self.sp("compression mechanism")?;
        let mechanism = self.atom();
        if mechanism.is_empty() {
            return Err(self.missing_or_invalid("compression mechanism"));
        }
        Ok(CommandBody::Compress {
            mechanism: ascii_string(mechanism),
        })
    }

    /// RFC 5161: `ENABLE 1*(SP capability)`.
    fn enable(&mut self) -> PResult<CommandBody> {
        let mut capabilities = Vec::new();
        loop {
            self.sp("capability")?;
            let cap = self.atom();
            if cap.is_empty() {
                return Err(self.missing_or_invalid("capability"));
            }
            capabilities.push(ascii_string(cap));
            if self.at_eol() {
                return Ok(CommandBody::Enable { capabilities });
            }
        }
    }

    /// SELECT/EXAMINE with RFC 7162 parameters.
    fn select_args(&mut self) -> PResult<(Vec<u8>, SelectParams)> {
        let mailbox = self.sp_mailbox()?;
        let mut params = SelectParams::default();
        if !self.eat(b' ') {
            return Ok((mailbox, params));
        }
        self.expect(b'(', "Invalid SELECT parameters")?;
        loop {
            let name = self.atom();
            if name.eq_ignore_ascii_case(b"CONDSTORE") {
                params.condstore = true;
            } else if name.eq_ignore_ascii_case(b"QRESYNC") {
                self.sp("QRESYNC parameters")?;
                params.qresync = Some(self.qresync()?);
            } else if name.is_empty() {
                return Err(self.missing_or_invalid("SELECT parameter"));
            } else {
                return Err(format!("Unknown SELECT parameter {}", printable(name)));
            }
            if self.eat(b')') {
                return Ok((mailbox, params));
            }
            self.sp("SELECT parameter")?;
        }
    }

    /// `(uidvalidity modseq [known-uids] [(known-seqs known-uids)])`.
    fn qresync(&mut self) -> PResult<QresyncParams> {
        const BAD: &str = "Invalid QRESYNC parameters";
        self.expect(b'(', BAD)?;
        let uidvalidity = self.nz_number("UIDVALIDITY")?;
        self.sp("mod-sequence")?;
        let modseq = self.number64("mod-sequence")?;
        let mut known_uids = None;
        let mut seq_match = None;
        if self.eat(b' ') {
            if self.peek() != Some(b'(') {
                known_uids = Some(self.sequence_set()?);
                if self.eat(b' ') {
                    seq_match = Some(self.seq_match()?);
                }
            } else {
                seq_match = Some(self.seq_match()?);
            }
        }
        self.expect(b')', BAD)?;
        Ok(QresyncParams {
            uidvalidity,
            modseq,
            known_uids,
            seq_match,
        })
    }

    fn seq_match(&mut self) -> PResult<(SequenceSet, SequenceSet)> {
        const BAD: &str = "Invalid QRESYNC sequence match data";
        self.expect(b'(', BAD)?;
        let seqs = self.sequence_set()?;
        self.sp("known UIDs")?;
        let uids = self.sequence_set()?;
        self.expect(b')', BAD)?;
        Ok((seqs, uids))
    }

    /// CREATE with RFC 6154 `(USE (\Sent …))`.
    fn create(&mut self) -> PResult<CommandBody> {
        let mailbox = self.sp_mailbox()?;
        let mut special_use = Vec::new();
        if self.eat(b' ') {
            self.expect(b'(', "Invalid CREATE parameters")?;
            loop {
                let name = self.atom();
                if name.eq_ignore_ascii_case(b"USE") {
                    self.sp("special-use attributes")?;
                    for flag in self.flag_list()? {
                        if !flag.starts_with('\\') {
                            return Err("Invalid special-use attribute".to_string());
                        }
                        special_use.push(flag);
                    }
                } else if name.is_empty() {
                    return Err(self.missing_or_invalid("CREATE parameter"));
                } else {
                    return Err(format!("Unknown CREATE parameter {}", printable(name)));
                }
                if self.eat(b')') {
                    break;
                }
                self.sp("CREATE parameter")?;
            }
        }
        Ok(CommandBody::Create {
            mailbox,
            special_use,
        })
    }

    /// Basic LIST and LIST-EXTENDED (RFC 5258, 5819, 6154).
    fn list(&mut self) -> PResult<CommandBody> {
        self.sp("mailbox reference")?;
        let mut selection = Vec::new();
        let mut extended = false;
        if self.eat(b'(') {
            extended = true;
            if !self.eat(b')') {
                loop {
                    let name = self.atom();
                    selection.push(match name.to_ascii_uppercase().as_slice() {
                        b"SUBSCRIBED" => ListSelection::Subscribed,
                        b"REMOTE" => ListSelection::Remote,
                        b"RECURSIVEMATCH" => ListSelection::RecursiveMatch,
                        b"SPECIAL-USE" => ListSelection::SpecialUse,
                        b"" => return Err(self.missing_or_invalid("LIST selection option")),
                        _ => {
                            return Err(format!(
                                "Unknown LIST selection option {}",
                                printable(name)
                            ));
                        }
                    });
                    if self.eat(b')') {
                        break;
                    }
                    self.sp("LIST selection option")?;
                }
            }
            self.sp("mailbox reference")?;
        }
        let reference = self.astring("mailbox reference")?;
        self.sp("mailbox pattern")?;
        let patterns = if self.eat(b'(') {
            extended = true;
            let mut patterns = Vec::new();
            loop {
                patterns.push(self.list_mailbox("mailbox pattern")?);
                if self.eat(b')') {
                    break patterns;
                }
                self.sp("mailbox pattern")?;
            }
        } else {
            vec![self.list_mailbox("mailbox pattern")?]
        };
        let mut returns = Vec::new();
        if self.eat(b' ') {
            if !self.peek_keyword("RETURN") {
                return Err("Invalid LIST return options".to_string());
            }
            self.pos += "RETURN".len();
            extended = true;
            self.sp("LIST return options")?;
            self.expect(b'(', "Invalid LIST return options")?;
            if !self.eat(b')') {
                loop {
                    let name = self.atom();
                    returns.push(match name.to_ascii_uppercase().as_slice() {
                        b"SUBSCRIBED" => ListReturn::Subscribed,
                        b"CHILDREN" => ListReturn::Children,
                        b"SPECIAL-USE" => ListReturn::SpecialUse,
                        b"STATUS" => {
                            self.sp("status items")?;
                            ListReturn::Status(self.status_items()?)
                        }
                        b"" => return Err(self.missing_or_invalid("LIST return option")),
                        _ => {
                            return Err(format!("Unknown LIST return option {}", printable(name)));
                        }
                    });
                    if self.eat(b')') {
                        break;
                    }
                    self.sp("LIST return option")?;
                }
            }
        }
        // RFC 5258 §3.1: RECURSIVEMATCH alone (or with REMOTE only) is a BAD.
        if selection.contains(&ListSelection::RecursiveMatch)
            && !selection
                .iter()
                .any(|s| matches!(s, ListSelection::Subscribed | ListSelection::SpecialUse))
        {
            return Err("RECURSIVEMATCH needs another selection option".to_string());
        }
        Ok(CommandBody::List {
            reference,
            patterns,
            selection,
            returns,
            extended,
        })
    }

    /// `(status-att *(SP status-att))`.
    fn status_items(&mut self) -> PResult<Vec<StatusItem>> {
        self.expect(b'(', "Invalid status items")?;
        let mut items = Vec::new();
        loop {
            let name = self.atom();
            items.push(match name.to_ascii_uppercase().as_slice() {
                b"MESSAGES" => StatusItem::Messages,
                b"RECENT" => StatusItem::Recent,
                b"UIDNEXT" => StatusItem::UidNext,
                b"UIDVALIDITY" => StatusItem::UidValidity,
                b"UNSEEN" => StatusItem::Unseen,
                b"DELETED" => StatusItem::Deleted,
                b"DELETED-STORAGE" => StatusItem::DeletedStorage,
                b"SIZE" => StatusItem::Size,
                b"HIGHESTMODSEQ" => StatusItem::HighestModSeq,
                b"MAILBOXID" => StatusItem::MailboxId,
                b"" => return Err(self.missing_or_invalid("status item")),
                _ => return Err(format!("Unknown status item {}", printable(name))),
            });
            if self.eat(b')') {
                return Ok(items);
            }
            self.sp("status item")?;
        }
    }

    /// RFC 9208 §4.1.3 `SETQUOTA SP quota-root-name SP setquota-list`, where
    /// `setquota-list = "(" [setquota-resource *(SP setquota-resource)] ")"` and
    /// `setquota-resource = resource-name SP resource-limit` (an atom and a number64).
    fn setquota(&mut self) -> PResult<CommandBody> {
        self.sp("quota root")?;
        let root = self.astring("quota root")?;
        self.sp("resource limits")?;
        self.expect(b'(', "Invalid resource limits")?;
        let mut limits = Vec::new();
        if !self.eat(b')') {
            loop {
                let name = self.atom();
                if name.is_empty() {
                    return Err(self.missing_or_invalid("resource name"));
                }
                self.sp("resource limit")?;
                let limit = self.number64("resource limit")?;
                limits.push((ascii_string(name).to_ascii_uppercase(), limit));
                if self.eat(b')') {
                    break;
                }
                self.sp("resource name")?;
            }
        }
        Ok(CommandBody::SetQuota { root, limits })
    }

    /// APPEND (RFC 9051 §6.3.12), with literal8 (RFC 3516) and `UTF8 (~{n}…)` (RFC 6855).
    fn append(&mut self) -> PResult<CommandBody> {
        let mailbox = self.sp_mailbox()?;
        let mut messages = Vec::new();
        // RFC 3502: one or more messages, each `SP [flags SP] [date SP] literal`.
        while messages.is_empty() || self.peek() == Some(b' ') {
            messages.push(self.append_item()?);
        }
        Ok(CommandBody::Append { mailbox, messages })
    }

    /// RFC 5464 §5: `GETMETADATA [SP options] SP mailbox SP entries`; the options may
    /// also follow the mailbox, as in RFC 5464 §4.2.1's examples.
    fn getmetadata(&mut self) -> PResult<CommandBody> {
        self.sp("mailbox name")?;
        let (mut max_size, mut depth) = (None, MetadataDepth::Zero);
        if self.peek() == Some(b'(') {
            self.metadata_options(&mut max_size, &mut depth)?;
            self.sp("mailbox name")?;
        }
        let mailbox = self.astring("mailbox name")?;
        self.sp("metadata entries")?;
        let rest = &self.s[self.pos..];
        let option_next = [&b"(MAXSIZE "[..], b"(DEPTH "].iter().any(|label| {
            rest.len() >= label.len() && rest[..label.len()].eq_ignore_ascii_case(label)
        });
        if option_next {
            self.metadata_options(&mut max_size, &mut depth)?;
            self.sp("metadata entries")?;
        }
        let mut entries = Vec::new();
        if self.eat(b'(') {
            loop {
                entries.push(self.metadata_entry(false)?);
                if self.eat(b')') {
                    break;
                }
                self.sp("metadata entry")?;
            }
        } else {
            // RFC 5464 §4.4.1's examples also list entries without parentheses.
            entries.push(self.metadata_entry(false)?);
            while self.eat(b' ') {
                entries.push(self.metadata_entry(false)?);
            }
        }
        Ok(CommandBody::GetMetadata {
            mailbox,
            max_size,
            depth,
            entries,
        })
    }

    /// GETMETADATA's `(MAXSIZE n DEPTH d)`.
    fn metadata_options(
        &mut self,
        max_size: &mut Option<u64>,
        depth: &mut MetadataDepth,
    ) -> PResult<()> {
        self.expect(b'(', "Invalid GETMETADATA options")?;
        loop {
            let label = self.atom().to_ascii_uppercase();
            self.sp("option value")?;
            match label.as_slice() {
                b"MAXSIZE" => *max_size = Some(self.number64("MAXSIZE")?),
                b"DEPTH" => {
                    *depth = match self.atom().to_ascii_lowercase().as_slice() {
                        b"0" => MetadataDepth::Zero,
                        b"1" => MetadataDepth::One,
                        b"infinity" => MetadataDepth::Infinity,
                        _ => return Err("DEPTH is 0, 1 or infinity".to_string()),
                    }
                }
                _ => return Err("Unknown GETMETADATA option".to_string()),
            }
            if self.eat(b')') {
                return Ok(());
            }
            self.sp("GETMETADATA option")?;
        }
    }

    /// RFC 5464 §5: `SETMETADATA SP mailbox SP "(" entry SP value *(SP entry SP value) ")"`.
    fn setmetadata(&mut self) -> PResult<CommandBody> {
        let mailbox = self.sp_mailbox()?;
        self.sp("metadata entries")?;
        self.expect(b'(', "Invalid metadata entry list")?;
        let mut entries = Vec::new();
        loop {
            let entry = self.metadata_entry(true)?;
            self.sp("metadata value")?;
            let value = if self.peek() == Some(b'~') {
                Some(self.literal(true)?)
            } else {
                self.nstring("metadata value")?
            };
            entries.push((entry, value));
            if self.eat(b')') {
                break;
            }
            self.sp("metadata entry")?;
        }
        Ok(CommandBody::SetMetadata { mailbox, entries })
    }

    /// An entry name (RFC 5464 §3.2): `/private` or `/shared`, then `/`-separated
    /// components of printable ASCII without `*` or `%`; to set one, at least one
    /// component below them. Entry names are case-insensitive: lower-cased here.
    fn metadata_entry(&mut self, to_set: bool) -> PResult<String> {
        let raw = self.astring("metadata entry")?;
        let name = String::from_utf8(raw)
            .map_err(|_| "Invalid metadata entry".to_string())?
            .to_ascii_lowercase();
        let valid = name
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'*' && b != b'%')
            && !name.contains("//")
            && !name.ends_with('/')
            && ["/private", "/shared"].iter().any(|top| {
                name.strip_prefix(top)
                    .is_some_and(|rest| rest.starts_with('/') || (rest.is_empty() && !to_set))
            });
        if valid {
            Ok(name)
        } else {
            Err("Invalid metadata entry: /private/… or /shared/…, no * or %".to_string())
        }
    }

    fn append_item(&mut self) -> PResult<AppendMessage> {
        self.sp("message literal")?;
        let mut flags = Vec::new();
        if self.peek() == Some(b'(') {
            flags = self.flag_list()?;
            self.sp("message literal")?;
        }
        let mut date = None;
        if self.peek() == Some(b'"') {
            date = Some(self.date_time()?);
            self.sp("message literal")?;
        }
        let data = match self.peek() {
            Some(b'{' | b'~') => AppendData::Literal(self.literal(true)?),
            _ => {
                let name = self.atom();
                if name.eq_ignore_ascii_case(b"UTF8") {
                    self.sp("message literal")?;
                    self.expect(b'(', "Invalid UTF8 APPEND data")?;
                    if self.peek() != Some(b'~') {
                        return Err("UTF8 APPEND data must be a literal8".to_string());
                    }
                    let message = self.literal(true)?;
                    self.expect(b')', "Invalid UTF8 APPEND data")?;
                    AppendData::Literal(message)
                } else if name.eq_ignore_ascii_case(b"CATENATE") {
                    AppendData::Catenate(self.catenate()?)
                } else if name.is_empty() {
                    return Err(self.missing_or_invalid("message literal"));
                } else {
                    return Err(format!("Unsupported APPEND data {}", printable(name)));
                }
            }
        };
        Ok(AppendMessage { flags, date, data })
    }

    /// RFC 4469 §5: `CATENATE SP "(" cat-part *(SP cat-part) ")"`, with `cat-part =
    /// "TEXT" SP literal / "URL" SP astring`. A TEXT literal may be a literal8, as
    /// Dovecot takes it: BINARY (RFC 3516) lets a whole message be one, and a part of
    /// one is no different.
    fn catenate(&mut self) -> PResult<Vec<CatPart>> {
        self.sp("CATENATE parts")?;
        self.expect(b'(', "CATENATE needs a parenthesized list of parts")?;
        if self.peek() == Some(b')') {
            return Err("Empty CATENATE list".to_string());
        }
        let mut parts = Vec::new();
        loop {
            let name = self.atom();
            let part = if name.eq_ignore_ascii_case(b"TEXT") {
                self.sp("TEXT literal")?;
                if !matches!(self.peek(), Some(b'{' | b'~')) {
                    return Err("TEXT must be followed by a literal".to_string());
                }
                CatPart::Text(self.literal(true)?)
            } else if name.eq_ignore_ascii_case(b"URL") {
                self.sp("URL")?;
                CatPart::Url(self.astring("URL")?)
            } else if name.is_empty() {
                return Err(self.missing_or_invalid("CATENATE part"));
            } else {
                return Err(format!(
                    "Unknown CATENATE part {}: TEXT or URL",
                    printable(name)
                ));
            };
            parts.push(part);
            if self.eat(b')') {
                return Ok(parts);
            }
            self.sp("CATENATE part")?;
        }
    }

    fn set_and_mailbox(&mut self) -> PResult<(SequenceSet, Vec<u8>)> {
        self.sp("sequence set")?;
        let set = self.sequence_set()?;
        let mailbox = self.sp_mailbox()?;
        Ok((set, mailbox))
    }

    /// SEARCH (RFC 9051 §6.4.4) with ESEARCH `RETURN (…)` (RFC 4731).
    fn search(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp("search criteria")?;
        let mut returns = None;
        if self.peek_keyword("RETURN") {
            self.pos += "RETURN".len();
            self.sp("search return options")?;
            returns = Some(self.search_returns()?);
            self.sp("search criteria")?;
        }
        let mut charset = None;
        if self.peek_keyword("CHARSET") {
            self.pos += "CHARSET".len();
            self.sp("charset")?;
            let name = self.astring("charset")?;
            if !(name.eq_ignore_ascii_case(b"UTF-8") || name.eq_ignore_ascii_case(b"US-ASCII")) {
                return Err(BADCHARSET_MESSAGE.to_string());
            }
            charset = Some(ascii_string(&name));
            self.sp("search criteria")?;
        }
        Ok(CommandBody::Search {
            uid,
            charset,
            returns,
            criteria: self.search_keys()?,
        })
    }

    /// One or more search keys, separated by SP: several mean AND.
    fn search_keys(&mut self) -> PResult<SearchKey> {
        // Both supported charsets are read as UTF-8 (US-ASCII is a subset).
        let mut keys = vec![self.search_key(0)?];
        while self.eat(b' ') {
            keys.push(self.search_key(0)?);
        }
        Ok(and_of(keys))
    }

    /// RFC 5256 §5 `search-criteria`: the mandatory charset, then the keys.
    fn charset_and_keys(&mut self) -> PResult<(String, SearchKey)> {
        self.sp("charset")?;
        let name = self.astring("charset")?;
        let supported =
            name.eq_ignore_ascii_case(b"UTF-8") || name.eq_ignore_ascii_case(b"US-ASCII");
        if self.at_eol() {
            // `SORT (DATE) ALL`: the charset was probably left out.
            return Err(if supported {
                "Missing search criteria".to_string()
            } else {
                "Missing charset or search criteria".to_string()
            });
        }
        if !supported {
            return Err(BADCHARSET_MESSAGE.to_string());
        }
        self.sp("search criteria")?;
        Ok((ascii_string(&name), self.search_keys()?))
    }

    /// SORT (RFC 5256 §3) with ESORT's `RETURN (…)` (RFC 5267 §3).
    fn sort(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp("sort criteria")?;
        let mut returns = None;
        if self.peek_keyword("RETURN") {
            self.pos += "RETURN".len();
            self.sp("search return options")?;
            returns = Some(self.search_returns()?);
            self.sp("sort criteria")?;
        }
        let criteria = self.sort_criteria()?;
        let (charset, search) = self.charset_and_keys()?;
        Ok(CommandBody::Sort {
            uid,
            returns,
            criteria,
            charset,
            search,
        })
    }

    /// `(sort-criterion *(SP sort-criterion))`. A key given again is dropped: it can
    /// only compare messages the first one found equal, and they stay equal. So the
    /// list is never longer than the number of keys, whatever the client sends.
    fn sort_criteria(&mut self) -> PResult<Vec<SortCriterion>> {
        if !self.eat(b'(') {
            return Err(self.missing_or_invalid("sort criteria"));
        }
        if self.peek() == Some(b')') {
            return Err("Empty sort criteria".to_string());
        }
        let mut criteria: Vec<SortCriterion> = Vec::new();
        loop {
            let mut name = self.atom();
            let reverse = name.eq_ignore_ascii_case(b"REVERSE");
            if reverse {
                self.sp("sort key after REVERSE")?;
                name = self.atom();
            }
            let key = match name.to_ascii_uppercase().as_slice() {
                b"ARRIVAL" => SortKey::Arrival,
                b"CC" => SortKey::Cc,
                b"DATE" => SortKey::Date,
                b"FROM" => SortKey::From,
                b"SIZE" => SortKey::Size,
                b"SUBJECT" => SortKey::Subject,
                b"TO" => SortKey::To,
                b"DISPLAYFROM" => SortKey::DisplayFrom,
                b"DISPLAYTO" => SortKey::DisplayTo,
                b"REVERSE" => return Err("REVERSE must be followed by a sort key".to_string()),
                b"" => return Err(self.missing_or_invalid("sort key")),
                _ => return Err(format!("Unknown sort key {}", printable(name))),
            };
            if !criteria.iter().any(|c| c.key == key) {
                criteria.push(SortCriterion { reverse, key });
            }
            if self.eat(b')') {
                return Ok(criteria);
            }
            self.sp("sort key")?;
        }
    }

    /// THREAD (RFC 5256 §3).
    fn thread(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp("threading algorithm")?;
        let name = self.atom();
        let algorithm = match name.to_ascii_uppercase().as_slice() {
            b"ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
            b"REFERENCES" => ThreadAlgorithm::References,
            b"REFS" => ThreadAlgorithm::Refs,
            b"" => return Err(self.missing_or_invalid("threading algorithm")),
            _ => {
                return Err(format!(
                    "Unsupported threading algorithm {} (ORDEREDSUBJECT, REFERENCES and REFS are)",
                    printable(name)
                ));
            }
        };
        let (charset, search) = self.charset_and_keys()?;
        Ok(CommandBody::Thread {
            uid,
            algorithm,
            charset,
            search,
        })
    }

    fn search_returns(&mut self) -> PResult<Vec<SearchReturn>> {
        self.expect(b'(', "Invalid search return options")?;
        let mut returns = Vec::new();
        if self.eat(b')') {
            return Ok(returns);
        }
        loop {
            let name = self.atom();
            returns.push(match name.to_ascii_uppercase().as_slice() {
                b"MIN" => SearchReturn::Min,
                b"MAX" => SearchReturn::Max,
                b"ALL" => SearchReturn::All,
                b"COUNT" => SearchReturn::Count,
                b"SAVE" => SearchReturn::Save,
                b"UPDATE" if self.peek() == Some(b' ') && self.peek_at(1) == Some(b'(') => {
                    return Err(
                        "UPDATE with fetch attributes (RFC 5465 §7) is not supported: \
                                use UPDATE alone"
                            .to_string(),
                    );
                }
                b"UPDATE" => SearchReturn::Update,
                b"CONTEXT" => SearchReturn::Context,
                b"PARTIAL" => {
                    self.sp("partial range")?;
                    SearchReturn::Partial(self.partial_range()?)
                }
                b"" => return Err(self.missing_or_invalid("search return option")),
                _ => {
                    return Err(format!("Unknown search return option {}", printable(name)));
                }
            });
            if self.eat(b')') {
                break;
            }
            self.sp("search return option")?;
        }
        // RFC 9394 §3.1: one PARTIAL or one ALL, not both. (Repeated ALLs were accepted
        // before PARTIAL existed and still are.)
        let partials = returns
            .iter()
            .filter(|r| matches!(r, SearchReturn::Partial(_)))
            .count();
        if partials > 1 {
            return Err("Only one PARTIAL return option is allowed".to_string());
        }
        if partials == 1 && returns.contains(&SearchReturn::All) {
            return Err("PARTIAL and ALL cannot be combined".to_string());
        }
        Ok(returns)
    }

    /// RFC 5267 §5: `CANCELUPDATE 1*(SP quoted)`, each string the tag of a search.
    fn cancel_update(&mut self) -> PResult<CommandBody> {
        const FORM: &str = "CANCELUPDATE takes the tags of searches as quoted strings";
        self.sp("search tag")?;
        let mut tags = Vec::new();
        loop {
            if self.peek() != Some(b'"') {
                return Err(FORM.to_string());
            }
            let tag = self.quoted()?;
            if tag.is_empty() || !tag.iter().all(|&b| is_tag_char(b)) {
                return Err(format!(
                    "Invalid tag \"{}\" in CANCELUPDATE",
                    printable(&tag)
                ));
            }
            tags.push(ascii_string(&tag));
            if !self.eat(b' ') {
                break;
            }
        }
        Ok(CommandBody::CancelUpdate { tags })
    }

    /// RFC 9394 partial-range: `a:b`, or `-a:-b` counted from the last result.
    fn partial_range(&mut self) -> PResult<PartialRange> {
        let from_last = self.eat(b'-');
        let a = self.nz_number("partial range")?;
        self.expect(b':', "Invalid partial range")?;
        if self.eat(b'-') != from_last {
            return Err("Invalid partial range".to_string());
        }
        let b = self.nz_number("partial range")?;
        Ok(if from_last {
            PartialRange::Last(a, b)
        } else {
            PartialRange::First(a, b)
        })
    }

    fn sp_search_string(&mut self, what: &str) -> PResult<String> {
        self.sp(what)?;
        let bytes = self.astring(what)?;
        search_string(bytes)
    }

    fn search_key(&mut self, depth: usize) -> PResult<SearchKey> {
        if depth >= MAX_SEARCH_DEPTH {
            return Err("Search criteria nested too deeply".to_string());
        }
        self.search_keys += 1;
        if self.search_keys > MAX_SEARCH_KEYS {
            return Err(TOO_MANY_SEARCH_KEYS.to_string());
        }
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let mut keys = vec![self.search_key(depth + 1)?];
                while !self.eat(b')') {
                    self.sp("search key")?;
                    keys.push(self.search_key(depth + 1)?);
                }
                return Ok(and_of(keys));
            }
            Some(b'*' | b'$' | b'0'..=b'9') => {
                return Ok(SearchKey::SequenceSet(self.sequence_set()?));
            }
            _ => {}
        }
        let name = self.atom();
        if name.is_empty() {
            return Err(self.missing_or_invalid("search key"));
        }
        Ok(match name.to_ascii_uppercase().as_slice() {
            b"ALL" => SearchKey::All,
            b"ANSWERED" => SearchKey::Answered,
            b"DELETED" => SearchKey::Deleted,
            b"DRAFT" => SearchKey::Draft,
            b"FLAGGED" => SearchKey::Flagged,
            b"NEW" => SearchKey::New,
            b"OLD" => SearchKey::Old,
            b"RECENT" => SearchKey::Recent,
            b"SEEN" => SearchKey::Seen,
            b"UNANSWERED" => SearchKey::Unanswered,
            b"UNDELETED" => SearchKey::Undeleted,
            b"UNDRAFT" => SearchKey::Undraft,
            b"UNFLAGGED" => SearchKey::Unflagged,
            b"UNSEEN" => SearchKey::Unseen,
            b"BCC" => SearchKey::Bcc(self.sp_search_string("search string")?),
            b"BODY" => SearchKey::Body(self.sp_search_string("search string")?),
            b"CC" => SearchKey::Cc(self.sp_search_string("search string")?),
            b"FROM" => SearchKey::From(self.sp_search_string("search string")?),
            b"SUBJECT" => SearchKey::Subject(self.sp_search_string("search string")?),
            b"TEXT" => SearchKey::Text(self.sp_search_string("search string")?),
            b"TO" => SearchKey::To(self.sp_search_string("search string")?),
            b"HEADER" => {
                let field = self.sp_search_string("header field name")?;
                let value = self.sp_search_string("search string")?;
                SearchKey::Header(field, value)
            }
            b"BEFORE" => SearchKey::Before(self.sp_date()?),
            b"ON" => SearchKey::On(self.sp_date()?),
            b"SINCE" => SearchKey::Since(self.sp_date()?),
            b"SENTBEFORE" => SearchKey::SentBefore(self.sp_date()?),
            b"SENTON" => SearchKey::SentOn(self.sp_date()?),
            b"SENTSINCE" => SearchKey::SentSince(self.sp_date()?),
            // RFC 8514 §4.3.
            b"SAVEDBEFORE" => SearchKey::SavedBefore(self.sp_date()?),
            b"SAVEDON" => SearchKey::SavedOn(self.sp_date()?),
            b"SAVEDSINCE" => SearchKey::SavedSince(self.sp_date()?),
            b"SAVEDATESUPPORTED" => SearchKey::SaveDateSupported,
            b"KEYWORD" => SearchKey::Keyword(self.sp_keyword()?),
            b"UNKEYWORD" => SearchKey::Unkeyword(self.sp_keyword()?),
            b"LARGER" => {
                self.sp("size")?;
                SearchKey::Larger(self.number64("size")?)
            }
            b"OLDER" => {
                self.sp("interval")?;
                SearchKey::Older(self.nz_number("interval")?)
            }
            b"YOUNGER" => {
                self.sp("interval")?;
                SearchKey::Younger(self.nz_number("interval")?)
            }
            b"SMALLER" => {
                self.sp("size")?;
                SearchKey::Smaller(self.number64("size")?)
            }
            b"MODSEQ" => {
                self.sp("mod-sequence")?;
                // RFC 7162 §3.1.5: optional entry name and type, which only matter for
                // per-flag mod-sequences (Portico keeps one per message).
                if self.peek() == Some(b'"') {
                    self.quoted()?;
                    self.sp("entry type")?;
                    let kind = self.atom();
                    if !["priv", "shared", "all"]
                        .iter()
                        .any(|k| kind.eq_ignore_ascii_case(k.as_bytes()))
                    {
                        return Err(self.missing_or_invalid("entry type"));
                    }
                    self.sp("mod-sequence")?;
                }
                SearchKey::ModSeq(self.number64("mod-sequence")?)
            }
            b"NOT" => {
                self.sp("search key")?;
                SearchKey::Not(Box::new(self.search_key(depth + 1)?))
            }
            b"OR" => {
                self.sp("search key")?;
                let a = self.search_key(depth + 1)?;
                self.sp("search key")?;
                let b = self.search_key(depth + 1)?;
                SearchKey::Or(Box::new(a), Box::new(b))
            }
            b"UID" => {
                self.sp("sequence set")?;
                SearchKey::Uid(self.sequence_set()?)
            }
            _ => return Err(format!("Unknown search key {}", printable(name))),
        })
    }

    fn sp_keyword(&mut self) -> PResult<String> {
        self.sp("keyword")?;
        let atom = self.atom();
        if atom.is_empty() {
            return Err(self.missing_or_invalid("keyword"));
        }
        Ok(ascii_string(atom))
    }

    /// FETCH (RFC 9051 §6.4.5) with RFC 7162 modifiers.
    fn fetch(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp("sequence set")?;
        let set = self.sequence_set()?;
        self.sp("fetch items")?;
        let items = if self.eat(b'(') {
            self.fetch_att_list()?
        } else if self.peek_keyword("ALL") {
            self.pos += 3;
            FetchItems::All
        } else if self.peek_keyword("FAST") {
            self.pos += 4;
            FetchItems::Fast
        } else if self.peek_keyword("FULL") {
            self.pos += 4;
            FetchItems::Full
        } else {
            FetchItems::List(vec![self.fetch_att()?])
        };
        let mut changed_since = None;
        let mut vanished = false;
        if self.eat(b' ') {
            self.expect(b'(', "Invalid FETCH modifiers")?;
            loop {
                let name = self.atom();
                match name.to_ascii_uppercase().as_slice() {
                    b"CHANGEDSINCE" if changed_since.is_none() => {
                        self.sp("mod-sequence")?;
                        changed_since = Some(self.number64("mod-sequence")?);
                    }
                    b"VANISHED" if !vanished => vanished = true,
                    b"" => return Err(self.missing_or_invalid("FETCH modifier")),
                    _ => {
                        return Err(format!(
                            "Unknown or repeated FETCH modifier {}",
                            printable(name)
                        ));
                    }
                }
                if self.eat(b')') {
                    break;
                }
                self.sp("FETCH modifier")?;
            }
            // RFC 7162 §3.2.6.
            if vanished && !uid {
                return Err("VANISHED is only allowed with UID FETCH".to_string());
            }
            if vanished && changed_since.is_none() {
                return Err("VANISHED requires CHANGEDSINCE".to_string());
            }
        }
        Ok(CommandBody::Fetch {
            uid,
            set,
            items,
            changed_since,
            vanished,
        })
    }

    /// The items of a parenthesized list, its `(` already read.
    fn fetch_att_list(&mut self) -> PResult<FetchItems> {
        // Duplicates collapse here, so `(ENVELOPE ENVELOPE …)` costs one ENVELOPE per
        // message and the list never holds more than the distinct items.
        let mut attrs = vec![self.fetch_att()?];
        let mut seen: HashSet<FetchAttr> = attrs.iter().cloned().collect();
        while !self.eat(b')') {
            self.sp("fetch item")?;
            let attr = self.fetch_att()?;
            if !seen.contains(&attr) {
                if attrs.len() == MAX_FETCH_ITEMS {
                    return Err(TOO_MANY_FETCH_ITEMS.to_string());
                }
                seen.insert(attr.clone());
                attrs.push(attr);
            }
        }
        Ok(FetchItems::List(attrs))
    }

    /// RFC 5465 §8: `NOTIFY NONE` or `NOTIFY SET [STATUS] event-group *(SP event-group)`.
    fn notify(&mut self) -> PResult<CommandBody> {
        self.sp("NONE or SET")?;
        let word = self.atom().to_ascii_uppercase();
        match word.as_slice() {
            b"NONE" => return Ok(CommandBody::Notify(None)),
            b"SET" => {}
            _ => return Err("NOTIFY takes NONE or SET".to_string()),
        }
        self.sp("event group")?;
        let mut status = false;
        if self.peek_keyword("STATUS") {
            self.pos += "STATUS".len();
            status = true;
            self.sp("event group")?;
        }
        let mut groups = vec![self.event_group()?];
        while self.eat(b' ') {
            if groups.len() == MAX_EVENT_GROUPS {
                return Err("Too many NOTIFY event groups".to_string());
            }
            groups.push(self.event_group()?);
        }
        Ok(CommandBody::Notify(Some(NotifySet { status, groups })))
    }

    fn event_group(&mut self) -> PResult<EventGroup> {
        self.expect(b'(', "Invalid NOTIFY event group")?;
        let name = self.atom().to_ascii_uppercase();
        let filter = match name.as_slice() {
            b"SELECTED" => MailboxFilter::Selected,
            b"SELECTED-DELAYED" => MailboxFilter::SelectedDelayed,
            b"INBOXES" => MailboxFilter::Inboxes,
            b"PERSONAL" => MailboxFilter::Personal,
            b"SUBSCRIBED" => MailboxFilter::Subscribed,
            b"SUBTREE" => MailboxFilter::Subtree(self.notify_mailboxes()?),
            b"MAILBOXES" => MailboxFilter::Mailboxes(self.notify_mailboxes()?),
            b"" => return Err(self.missing_or_invalid("NOTIFY mailbox filter")),
            _ => {
                return Err(format!(
                    "Unknown NOTIFY mailbox filter {}",
                    printable(&name)
                ));
            }
        };
        self.sp("NOTIFY events")?;
        let mut events = Vec::new();
        if self.peek_keyword("NONE") {
            self.pos += "NONE".len();
        } else {
            self.expect(b'(', "Invalid NOTIFY events")?;
            loop {
                let name = self.atom();
                let event = match name.to_ascii_uppercase().as_slice() {
                    b"MESSAGENEW" => {
                        let items = match self.peek() == Some(b' ') && self.peek_at(1) == Some(b'(')
                        {
                            true => {
                                self.pos += 2;
                                Some(self.fetch_att_list()?)
                            }
                            false => None,
                        };
                        NotifyEvent::MessageNew(items)
                    }
                    b"MESSAGEEXPUNGE" => NotifyEvent::MessageExpunge,
                    b"FLAGCHANGE" => NotifyEvent::FlagChange,
                    b"ANNOTATIONCHANGE" => NotifyEvent::AnnotationChange,
                    b"MAILBOXNAME" => NotifyEvent::MailboxName,
                    b"SUBSCRIPTIONCHANGE" => NotifyEvent::SubscriptionChange,
                    b"MAILBOXMETADATACHANGE" => NotifyEvent::MailboxMetadataChange,
                    b"SERVERMETADATACHANGE" => NotifyEvent::ServerMetadataChange,
                    b"" => return Err(self.missing_or_invalid("NOTIFY event")),
                    _ => NotifyEvent::Other(printable(name)),
                };
                if events.len() == MAX_NOTIFY_EVENTS {
                    return Err("Too many NOTIFY events".to_string());
                }
                events.push(event);
                if self.eat(b')') {
                    break;
                }
                self.sp("NOTIFY event")?;
            }
        }
        self.expect(b')', "Invalid NOTIFY event group")?;
        Ok(EventGroup { filter, events })
    }

    /// `SP one-or-more-mailbox`: one mailbox, or a parenthesized list of them.
    fn notify_mailboxes(&mut self) -> PResult<Vec<Vec<u8>>> {
        self.sp("mailboxes")?;
        if !self.eat(b'(') {
            return Ok(vec![self.astring("mailbox")?]);
        }
        let mut names = vec![self.astring("mailbox")?];
        while !self.eat(b')') {
            self.sp("mailbox")?;
            if names.len() == MAX_NOTIFY_MAILBOXES {
                return Err("Too many NOTIFY mailboxes".to_string());
            }
            names.push(self.astring("mailbox")?);
        }
        Ok(names)
    }

    fn fetch_att(&mut self) -> PResult<FetchAttr> {
        // `=` is in no item name, but taken so that a capability name used as one
        // (`PREVIEW=FUZZY`) is named in the error.
        let name =
            self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'='));
        if name.is_empty() {
            return Err(self.missing_or_invalid("fetch item"));
        }
        let upper = name.to_ascii_uppercase();
        let has_section = self.peek() == Some(b'[');
        let simple = match upper.as_slice() {
            b"ENVELOPE" => Some(FetchAttr::Envelope),
            b"FLAGS" => Some(FetchAttr::Flags),
            b"INTERNALDATE" => Some(FetchAttr::InternalDate),
            b"RFC822.SIZE" => Some(FetchAttr::Rfc822Size),
            b"RFC822" => Some(FetchAttr::Rfc822),
            b"RFC822.HEADER" => Some(FetchAttr::Rfc822Header),
            b"RFC822.TEXT" => Some(FetchAttr::Rfc822Text),
            b"UID" => Some(FetchAttr::Uid),
            b"BODYSTRUCTURE" => Some(FetchAttr::BodyStructure),
            b"MODSEQ" => Some(FetchAttr::ModSeq),
            b"EMAILID" => Some(FetchAttr::EmailId),
            b"THREADID" => Some(FetchAttr::ThreadId),
            b"SAVEDATE" => Some(FetchAttr::SaveDate),
            b"BODY" if !has_section => Some(FetchAttr::Body),
            _ => None,
        };
        if let Some(attr) = simple {
            if has_section {
                return Err(format!("Unexpected section after {}", printable(name)));
            }
            return Ok(attr);
        }
        match upper.as_slice() {
            b"BODY" | b"BODY.PEEK" | b"BINARY" | b"BINARY.PEEK" | b"BINARY.SIZE"
                if !has_section =>
            {
                Err(format!("Missing section after {}", printable(name)))
            }
            b"BODY" | b"BODY.PEEK" => {
                let section = self.section()?;
                let partial = self.partial()?;
                Ok(FetchAttr::BodySection {
                    peek: upper.len() > 4,
                    section,
                    partial,
                })
            }
            b"BINARY" | b"BINARY.PEEK" => {
                let part = self.section_binary()?;
                let partial = self.partial()?;
                Ok(FetchAttr::Binary {
                    peek: upper.len() > 6,
                    part,
                    partial,
                })
            }
            b"BINARY.SIZE" => Ok(FetchAttr::BinarySize {
                part: self.section_binary()?,
            }),
            b"PREVIEW" | b"SNIPPET" if has_section => {
                Err(format!("Unexpected section after {}", printable(name)))
            }
            b"PREVIEW" | b"SNIPPET" => self.preview(upper.as_slice() == b"SNIPPET"),
            _ => Err(format!("Unknown FETCH item {}", printable(name))),
        }
    }

    /// The rest of `PREVIEW [SP "(" preview-mod *(SP preview-mod) ")"]` (RFC 8970 §6),
    /// or of the drafts' `SNIPPET` and `PREVIEW (FUZZY)`, whose modifiers Dovecot
    /// accepts on both: `LAZY`, `FUZZY` and `LAZY=FUZZY`. A list that starts with a
    /// FETCH modifier (`FETCH 1 PREVIEW (CHANGEDSINCE 5)`) is left to the command.
    fn preview(&mut self, snippet: bool) -> PResult<FetchAttr> {
        let what = if snippet { "SNIPPET" } else { "PREVIEW" };
        let mut fuzzy = snippet;
        let mut ahead = Parser {
            s: self.s,
            pos: self.pos,
            search_keys: 0,
        };
        let list = ahead.eat(b' ') && ahead.eat(b'(') && {
            let first = ahead.atom().to_ascii_uppercase();
            first != b"CHANGEDSINCE" && first != b"VANISHED"
        };
        if list {
            self.pos += 2;
            loop {
                let modifier = self.atom();
                match modifier.to_ascii_uppercase().as_slice() {
                    b"LAZY" => {}
                    b"FUZZY" | b"LAZY=FUZZY" => fuzzy = true,
                    b"" => return Err(self.missing_or_invalid(&format!("{what} modifier"))),
                    _ => {
                        return Err(format!(
                            "Unknown {what} modifier {} (LAZY and FUZZY are)",
                            printable(modifier)
                        ));
                    }
                }
                if self.eat(b')') {
                    break;
                }
                self.sp(&format!("{what} modifier"))?;
            }
        }
        Ok(FetchAttr::Preview(match (snippet, fuzzy) {
            (true, _) => PreviewForm::Snippet,
            (false, true) => PreviewForm::Fuzzy,
            (false, false) => PreviewForm::Rfc8970,
        }))
    }

    /// `[` [section-spec] `]`.
    fn section(&mut self) -> PResult<Section> {
        const BAD: &str = "Invalid section";
        self.expect(b'[', BAD)?;
        let mut section = Section::default();
        if self.eat(b']') {
            return Ok(section);
        }
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            loop {
                section.part.push(self.nz_number("section part")?);
                if !self.eat(b'.') {
                    break;
                }
                if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    section.text = Some(self.section_text(true)?);
                    break;
                }
            }
        } else {
            section.text = Some(self.section_text(false)?);
        }
        self.expect(b']', BAD)?;
        Ok(section)
    }

    fn section_text(&mut self, after_part: bool) -> PResult<SectionText> {
        let name = self.take_while(|b| b.is_ascii_alphabetic() || b == b'.');
        Ok(match name.to_ascii_uppercase().as_slice() {
            b"HEADER" => SectionText::Header,
            b"TEXT" => SectionText::Text,
            b"MIME" if after_part => SectionText::Mime,
            b"HEADER.FIELDS" => {
                self.sp("header list")?;
                SectionText::HeaderFields(self.header_list()?)
            }
            b"HEADER.FIELDS.NOT" => {
                self.sp("header list")?;
                SectionText::HeaderFieldsNot(self.header_list()?)
            }
            _ => return Err("Invalid section".to_string()),
        })
    }

    fn header_list(&mut self) -> PResult<Vec<String>> {
        self.expect(b'(', "Invalid header list")?;
        let mut fields = Vec::new();
        loop {
            let field = self.astring("header field name")?;
            fields.push(
                String::from_utf8(field).map_err(|_| "Invalid header field name".to_string())?,
            );
            if self.eat(b')') {
                return Ok(fields);
            }
            self.sp("header field name")?;
        }
    }

    /// RFC 3516 section-binary: `[` [part *("." part)] `]`.
    fn section_binary(&mut self) -> PResult<Vec<u32>> {
        self.expect(b'[', "Invalid section")?;
        let mut part = Vec::new();
        if self.eat(b']') {
            return Ok(part);
        }
        loop {
            part.push(self.nz_number("section part")?);
            if !self.eat(b'.') {
                break;
            }
        }
        self.expect(b']', "Invalid section")?;
        Ok(part)
    }

    /// `<origin.count>`.
    fn partial(&mut self) -> PResult<Option<Partial>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let origin = self.number32("partial origin")?;
        self.expect(b'.', "Invalid partial range")?;
        let count = self.nz_number("partial length")?;
        self.expect(b'>', "Invalid partial range")?;
        Ok(Some(Partial { origin, count }))
    }

    /// STORE (RFC 9051 §6.4.6) with RFC 7162 UNCHANGEDSINCE.
    fn store(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp("sequence set")?;
        let set = self.sequence_set()?;
        self.sp("store item")?;
        let mut unchanged_since = None;
        if self.eat(b'(') {
            loop {
                let name = self.atom();
                match name.to_ascii_uppercase().as_slice() {
                    b"UNCHANGEDSINCE" if unchanged_since.is_none() => {
                        self.sp("mod-sequence")?;
                        unchanged_since = Some(self.number64("mod-sequence")?);
                    }
                    b"" => return Err(self.missing_or_invalid("STORE modifier")),
                    _ => {
                        return Err(format!(
                            "Unknown or repeated STORE modifier {}",
                            printable(name)
                        ));
                    }
                }
                if self.eat(b')') {
                    break;
                }
                self.sp("STORE modifier")?;
            }
            self.sp("store item")?;
        }
        let name = self.atom();
        let (mode, rest) = match name.split_first() {
            Some((b'+', rest)) => (StoreMode::Add, rest),
            Some((b'-', rest)) => (StoreMode::Remove, rest),
            _ => (StoreMode::Replace, name),
        };
        let silent = if rest.eq_ignore_ascii_case(b"FLAGS") {
            false
        } else if rest.eq_ignore_ascii_case(b"FLAGS.SILENT") {
            true
        } else if name.is_empty() {
            return Err(self.missing_or_invalid("store item"));
        } else {
            return Err(format!("Unknown STORE item {}", printable(name)));
        };
        self.sp("flags")?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut flags = vec![self.flag("flag")?];
            while self.eat(b' ') {
                flags.push(self.flag("flag")?);
            }
            flags
        };
        Ok(CommandBody::Store {
            uid,
            set,
            mode,
            silent,
            flags,
            unchanged_since,
        })
    }

    /// RFC 2971: `ID NIL` or `ID (field value …)`.
    fn id(&mut self) -> PResult<CommandBody> {
        self.sp("ID parameters")?;
        if self.peek_nil() {
            self.pos += 3;
            return Ok(CommandBody::Id { params: None });
        }
        self.expect(b'(', "Invalid ID parameters")?;
        let mut params = Vec::new();
        if !self.eat(b')') {
            loop {
                let field = self.string("ID field")?;
                self.sp("ID value")?;
                let value = self.nstring("ID value")?;
                // ID is informational: a stray 8-bit byte is not worth refusing it.
                params.push((
                    String::from_utf8_lossy(&field).into_owned(),
                    value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                ));
                if self.eat(b')') {
                    break;
                }
                self.sp("ID field")?;
            }
        }
        Ok(CommandBody::Id {
            params: Some(params),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> CommandBody {
        match parse_command(raw.as_bytes()) {
            Ok(cmd) => cmd.body,
            Err(e) => panic!("{raw:?}: {e:?}"),
        }
    }

    fn err(raw: &str) -> ParseError {
        match parse_command(raw.as_bytes()) {
            Ok(cmd) => panic!("{raw:?} parsed as {cmd:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn char_classes() {
        assert!(is_atom_char(b'a') && is_atom_char(b'[') && is_atom_char(b'+'));
        assert!(!is_atom_char(b']') && !is_atom_char(b'*') && !is_atom_char(b' '));
        assert!(is_astring_char(b']'));
        assert!(!is_tag_char(b'+') && is_tag_char(b'.'));
        assert!(is_list_char(b'%') && is_list_char(b'*'));
        assert!(!is_atom_char(0x80) && !is_atom_char(0x7f));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        for days in [-800_000i64, -1, 0, 59, 60, 365, 10_957, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2024, 2), 29);
    }

    #[test]
    fn tags() {
        assert_eq!(
            parse_command(b"A001.x NOOP\r\n").map(|c| c.tag),
            Ok(Tag("A001.x".into()))
        );
        assert_eq!(err("+a NOOP\r\n").tag, None);
        assert_eq!(err("a+ NOOP\r\n").message, "Invalid tag");
        assert_eq!(err("\r\n").message, "Empty command line");
        assert_eq!(err(" NOOP\r\n").message, "Invalid tag");
        let e = err("a1\r\n");
        assert_eq!(
            (e.tag.as_deref(), e.message.as_str()),
            (Some("a1"), "Missing command name")
        );
    }

    #[test]
    fn line_ends() {
        assert_eq!(ok("a NOOP"), CommandBody::Noop);
        assert_eq!(ok("a NOOP\n"), CommandBody::Noop);
        assert_eq!(ok("a noop\r\n"), CommandBody::Noop);
        assert_eq!(err("a NOOP \r\n").message, "Extra data after command");
        assert_eq!(
            err("a NOOP\r\nb NOOP\r\n").message,
            "Extra data after command"
        );
    }

    #[test]
    fn quoted_and_literal_strings() {
        assert_eq!(
            ok("a LOGIN \"al\\\"ice\\\\\" {3}\r\np w\r\n"),
            CommandBody::Login {
                username: b"al\"ice\\".to_vec(),
                password: crate::command::Secret(b"p w".to_vec())
            }
        );
        assert_eq!(
            err("a LOGIN \"a\\b\" x").message,
            "Invalid escape in quoted string"
        );
        assert_eq!(err("a LOGIN \"ab x").message, "Unterminated quoted string");
        assert_eq!(err("a LOGIN {10}\r\nab x").message, "Truncated literal");
        assert_eq!(err("a LOGIN {1x}\r\nab x").message, "Invalid literal");
        assert_eq!(
            err("a LOGIN {99999999999999999999999}\r\nab x").message,
            "Invalid literal size"
        );
        assert_eq!(
            err("a LOGIN ~{1}\r\na b").message,
            "literal8 is not allowed here"
        );
    }

    #[test]
    fn quota_commands() {
        assert_eq!(
            ok("a GETQUOTAROOT inbox\r\n"),
            CommandBody::GetQuotaRoot {
                mailbox: b"inbox".to_vec()
            }
        );
        assert_eq!(
            ok("a getquota \"\"\r\n"),
            CommandBody::GetQuota { root: Vec::new() }
        );
        assert_eq!(
            ok("a GETQUOTA {4}\r\nroot\r\n"),
            CommandBody::GetQuota {
                root: b"root".to_vec()
            }
        );
        assert_eq!(
            ok("a SETQUOTA \"\" (storage 512 MESSAGE 18446744073709551615)\r\n"),
            CommandBody::SetQuota {
                root: Vec::new(),
                limits: vec![("STORAGE".into(), 512), ("MESSAGE".into(), u64::MAX)],
            }
        );
        assert_eq!(
            ok("a SETQUOTA x ()\r\n"),
            CommandBody::SetQuota {
                root: b"x".to_vec(),
                limits: vec![]
            }
        );
        assert_eq!(err("a GETQUOTA\r\n").message, "Missing quota root");
        assert_eq!(err("a GETQUOTAROOT\r\n").message, "Missing mailbox name");
        assert_eq!(
            err("a SETQUOTA \"\"\r\n").message,
            "Missing resource limits"
        );
        assert_eq!(
            err("a SETQUOTA \"\" (STORAGE x)\r\n").message,
            "Invalid resource limit"
        );
        assert_eq!(
            err("a SETQUOTA \"\" (STORAGE 1\r\n").message,
            "Missing resource name"
        );
        assert_eq!(
            err("a SETQUOTA \"\" ( )\r\n").message,
            "Invalid resource name"
        );
        assert_eq!(
            ok("a STATUS INBOX (DELETED deleted-storage)\r\n"),
            CommandBody::Status {
                mailbox: b"INBOX".to_vec(),
                items: vec![StatusItem::Deleted, StatusItem::DeletedStorage],
            }
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowing() {
        let deep = format!("a SEARCH {}ALL\r\n", "NOT ".repeat(100_000));
        assert_eq!(err(&deep).message, "Search criteria nested too deeply");
        let deep = format!(
            "a SEARCH {}ALL{}\r\n",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert_eq!(err(&deep).message, "Search criteria nested too deeply");
        let ok_depth = format!("a SEARCH {}ALL\r\n", "NOT ".repeat(MAX_SEARCH_DEPTH - 1));
        assert!(parse_command(ok_depth.as_bytes()).is_ok());
    }

    #[test]
    fn search_keys_are_counted_across_the_tree() {
        // `NOT TEXT qN` is two keys.
        let keys = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| format!("NOT TEXT q{i}")).collect();
            format!("a SEARCH {}\r\n", list.join(" "))
        };
        assert!(parse_command(keys(MAX_SEARCH_KEYS / 2).as_bytes()).is_ok());
        assert_eq!(
            err(&keys(MAX_SEARCH_KEYS / 2 + 1)).message,
            TOO_MANY_SEARCH_KEYS
        );
        assert_eq!(err(&keys(3000)).message, TOO_MANY_SEARCH_KEYS);
        // Keys inside parentheses and OR count too.
        let nested = format!(
            "a SEARCH ({})\r\n",
            vec!["OR SEEN DRAFT"; MAX_SEARCH_KEYS / 3 + 1].join(" ")
        );
        assert_eq!(err(&nested).message, TOO_MANY_SEARCH_KEYS);
    }

    #[test]
    fn fetch_items_collapse_and_are_capped() {
        let repeated = format!("a FETCH 1:* ({})\r\n", vec!["ENVELOPE"; 5000].join(" "));
        let items = |raw: &str| match ok(raw) {
            CommandBody::Fetch { items, .. } => items,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            items(&repeated),
            FetchItems::List(vec![FetchAttr::Envelope])
        );
        // First-seen order; sections are equal only if identical.
        assert_eq!(
            items(
                "a FETCH 1 (FLAGS BODY[]<0.10> UID FLAGS BODY[]<0.10> BODY[]<0.11> BODY.PEEK[])\r\n"
            ),
            FetchItems::List(vec![
                FetchAttr::Flags,
                FetchAttr::BodySection {
                    peek: false,
                    section: Section::default(),
                    partial: Some(Partial {
                        origin: 0,
                        count: 10
                    }),
                },
                FetchAttr::Uid,
                FetchAttr::BodySection {
                    peek: false,
                    section: Section::default(),
                    partial: Some(Partial {
                        origin: 0,
                        count: 11
                    }),
                },
                FetchAttr::BodySection {
                    peek: true,
                    section: Section::default(),
                    partial: None,
                },
            ])
        );
        let distinct = |n: usize| {
            let list: Vec<String> = (1..=n).map(|i| format!("BODY[{i}]")).collect();
            format!("a FETCH 1 ({})\r\n", list.join(" "))
        };
        assert!(parse_command(distinct(MAX_FETCH_ITEMS).as_bytes()).is_ok());
        assert_eq!(
            err(&distinct(MAX_FETCH_ITEMS + 1)).message,
            TOO_MANY_FETCH_ITEMS
        );
    }

    /// Token soup: commands built from IMAP-ish pieces, so the fuzzing reaches deep
    /// into the grammar. Nothing panics, and whatever parses re-encodes to itself.
    fn token() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let words = [
            "a1",
            "UID",
            "FETCH",
            "SEARCH",
            "STORE",
            "COPY",
            "MOVE",
            "SELECT",
            "EXAMINE",
            "LIST",
            "LSUB",
            "STATUS",
            "APPEND",
            "CREATE",
            "LOGIN",
            "AUTHENTICATE",
            "ENABLE",
            "ID",
            "NIL",
            "RETURN",
            "CHARSET",
            "UTF-8",
            "KOI8-R",
            "ALL",
            "FULL",
            "FAST",
            "NOT",
            "OR",
            "SINCE",
            "1-Feb-1994",
            "\"29-Feb-2023\"",
            "HEADER",
            "BODY",
            "BODY.PEEK",
            "BINARY",
            "BINARY.SIZE",
            "[",
            "]",
            "[HEADER.FIELDS",
            "(From",
            "To)",
            "[1.2.MIME]",
            "<0.10>",
            "+FLAGS.SILENT",
            "-FLAGS",
            "FLAGS",
            "\\Seen",
            "$Junk",
            "(",
            ")",
            "*",
            "%",
            "1",
            "0",
            "1:*",
            "3,5:7",
            "$",
            "4294967296",
            "18446744073709551616",
            "CHANGEDSINCE",
            "VANISHED",
            "UNCHANGEDSINCE",
            "QRESYNC",
            "CONDSTORE",
            "USE",
            "SUBSCRIBED",
            "RECURSIVEMATCH",
            "CHILDREN",
            "MESSAGES",
            "MODSEQ",
            "UTF8",
            "\"17-Jul-1996 02:44:25 -0700\"",
            "\"q\\\"s\"",
            "{3}\r\nabc",
            "{0+}\r\n",
            "~{2}\r\n\0x",
            "{9}\r\n",
            "\"",
            "\r\n",
            "=",
            "dGVzdA==",
            "INBOX",
            "~",
            "SORT",
            "THREAD",
            "(REVERSE",
            "REVERSE",
            "DATE",
            "DATE)",
            "(SUBJECT)",
            "DISPLAYFROM",
            "ARRIVAL)",
            "REFERENCES",
            "ORDEREDSUBJECT",
            "PARTIAL",
            "1:100",
            "-1:-100",
            "(PARTIAL",
            "US-ASCII",
        ];
        prop_oneof![
            8 => proptest::sample::select(words.to_vec()).prop_map(|w| w.as_bytes().to_vec()),
            1 => proptest::collection::vec(any::<u8>(), 1..4),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        #[test]
        fn token_soup_never_panics_and_round_trips(
            tokens in proptest::collection::vec(token(), 1..14),
            seps in proptest::collection::vec(0u8..4, 14),
        ) {
            let mut raw = b"t ".to_vec();
            for (i, t) in tokens.iter().enumerate() {
                if i > 0 {
                    raw.extend_from_slice(match seps[i] { 0 => b"", _ => b" " });
                }
                raw.extend_from_slice(t);
            }
            raw.extend_from_slice(b"\r\n");
            if let Ok(cmd) = parse_command(&raw) {
                proptest::prop_assert_eq!(parse_command(&cmd.encode()), Ok(cmd));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_command(&raw);
        }
    }

    fn date(day: u8, month: u8, year: u16) -> Date {
        Date { year, month, day }
    }

    fn by(key: SortKey) -> SortCriterion {
        SortCriterion {
            reverse: false,
            key,
        }
    }

    fn reverse(key: SortKey) -> SortCriterion {
        SortCriterion { reverse: true, key }
    }

    #[test]
    fn sort_rfc_examples() {
        assert_eq!(
            ok("A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994\r\n"),
            CommandBody::Sort {
                uid: false,
                returns: None,
                criteria: vec![by(SortKey::Subject)],
                charset: "UTF-8".into(),
                search: SearchKey::Since(date(1, 2, 1994)),
            }
        );
        assert_eq!(
            ok("A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n"),
            CommandBody::Sort {
                uid: false,
                returns: None,
                criteria: vec![by(SortKey::Subject), reverse(SortKey::Date)],
                charset: "UTF-8".into(),
                search: SearchKey::All,
            }
        );
        assert_eq!(
            ok("A284 SORT (SUBJECT) US-ASCII TEXT \"not in mailbox\"\r\n"),
            CommandBody::Sort {
                uid: false,
                returns: None,
                criteria: vec![by(SortKey::Subject)],
                charset: "US-ASCII".into(),
                search: SearchKey::Text("not in mailbox".into()),
            }
        );
        // RFC 5267 §3.3.
        assert_eq!(
            ok("E01 UID SORT RETURN () (REVERSE DATE) UTF-8 UNDELETED UNKEYWORD $Junk\r\n"),
            CommandBody::Sort {
                uid: true,
                returns: Some(vec![]),
                criteria: vec![reverse(SortKey::Date)],
                charset: "UTF-8".into(),
                search: SearchKey::And(vec![
                    SearchKey::Undeleted,
                    SearchKey::Unkeyword("$Junk".into())
                ]),
            }
        );
    }

    #[test]
    fn sort_keys_returns_and_repeats() {
        assert_eq!(
            ok("a uid sort return (min MAX count partial -1:-100) \
                (arrival cc date from size subject to displayfrom reverse displayto) \
                \"utf-8\" (SEEN FLAGGED)\r\n"),
            CommandBody::Sort {
                uid: true,
                returns: Some(vec![
                    SearchReturn::Min,
                    SearchReturn::Max,
                    SearchReturn::Count,
                    SearchReturn::Partial(PartialRange::Last(1, 100)),
                ]),
                criteria: vec![
                    by(SortKey::Arrival),
                    by(SortKey::Cc),
                    by(SortKey::Date),
                    by(SortKey::From),
                    by(SortKey::Size),
                    by(SortKey::Subject),
                    by(SortKey::To),
                    by(SortKey::DisplayFrom),
                    reverse(SortKey::DisplayTo),
                ],
                charset: "utf-8".into(),
                search: SearchKey::And(vec![SearchKey::Seen, SearchKey::Flagged]),
            }
        );
        // A key given again is dropped, REVERSE or not.
        let CommandBody::Sort { criteria, .. } =
            ok("a SORT (DATE REVERSE SIZE REVERSE DATE SIZE DATE) UTF-8 ALL\r\n")
        else {
            panic!("not a SORT");
        };
        assert_eq!(criteria, vec![by(SortKey::Date), reverse(SortKey::Size)]);
        assert_eq!(ok("a UID SORT (SIZE) UTF-8 ALL\r\n").name(), "UID SORT");
        assert_eq!(ok("a SORT (SIZE) UTF-8 ALL\r\n").name(), "SORT");
    }

    #[test]
    fn sort_errors() {
        let message = |raw: &str| err(raw).message;
        assert_eq!(message("a SORT\r\n"), "Missing sort criteria");
        assert_eq!(
            message("a SORT DATE UTF-8 ALL\r\n"),
            "Invalid sort criteria"
        );
        assert_eq!(message("a SORT () UTF-8 ALL\r\n"), "Empty sort criteria");
        assert_eq!(
            message("a SORT (DATE FOO) UTF-8 ALL\r\n"),
            "Unknown sort key FOO"
        );
        assert_eq!(
            message("a SORT (DATE UTF-8 ALL\r\n"),
            "Unknown sort key UTF-8"
        );
        assert_eq!(message("a SORT (DATE \r\n"), "Missing sort key");
        assert_eq!(
            message("a SORT (REVERSE) UTF-8 ALL\r\n"),
            "Missing sort key after REVERSE"
        );
        assert_eq!(
            message("a SORT (REVERSE REVERSE DATE) UTF-8 ALL\r\n"),
            "REVERSE must be followed by a sort key"
        );
        assert_eq!(message("a SORT (DATE)\r\n"), "Missing charset");
        assert_eq!(
            message("a SORT (DATE) ALL\r\n"),
            "Missing charset or search criteria"
        );
        assert_eq!(
            message("a SORT (DATE) UTF-8\r\n"),
            "Missing search criteria"
        );
        assert_eq!(
            message("a SORT (DATE)UTF-8 ALL\r\n"),
            "Expected SP before charset"
        );
        assert_eq!(message("a SORT (DATE) KOI8-R ALL\r\n"), BADCHARSET_MESSAGE);
        assert_eq!(
            message("a SORT (DATE) UTF-8 ALL FOO\r\n"),
            "Unknown search key FOO"
        );
        assert_eq!(
            message("a SORT RETURN (DATE) UTF-8 ALL\r\n"),
            "Unknown search return option DATE"
        );
        assert_eq!(
            message("a SORT RETURN (COUNT) UTF-8 ALL\r\n"),
            "Invalid sort criteria"
        );
        assert_eq!(message("a UID SORT\r\n"), "Missing sort criteria");
    }

    #[test]
    fn context_return_options_and_cancelupdate() {
        // RFC 5267 §4.3.1 and §4.3.5 examples.
        assert_eq!(
            ok("B01 UID SEARCH RETURN (UPDATE) FLAGGED\r\n"),
            CommandBody::Search {
                uid: true,
                charset: None,
                returns: Some(vec![SearchReturn::Update]),
                criteria: SearchKey::Flagged,
            }
        );
        match ok("B02 UID SORT RETURN (UPDATE COUNT CONTEXT) (DATE) UTF-8 KEYWORD $Junk\r\n") {
            CommandBody::Sort { returns, .. } => assert_eq!(
                returns,
                Some(vec![
                    SearchReturn::Update,
                    SearchReturn::Count,
                    SearchReturn::Context
                ])
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ok("B03 CANCELUPDATE \"B01\"\r\n"),
            CommandBody::CancelUpdate {
                tags: vec!["B01".into()]
            }
        );
        assert_eq!(
            ok("B04 cancelupdate \"B01\" \"x.2\"\r\n"),
            CommandBody::CancelUpdate {
                tags: vec!["B01".into(), "x.2".into()]
            }
        );
        let message = |raw: &str| err(raw).message;
        assert_eq!(
            message("a SEARCH RETURN (UPDATE (FLAGS)) SEEN\r\n"),
            "UPDATE with fetch attributes (RFC 5465 §7) is not supported: use UPDATE alone"
        );
        assert_eq!(
            message("a SEARCH RETURN (UPDATE PARTIAL 1:5 ALL) SEEN\r\n"),
            "PARTIAL and ALL cannot be combined"
        );
        assert_eq!(message("a CANCELUPDATE\r\n"), "Missing search tag");
        for bad in ["B01", "\"B01\" ", "\"B01\" B02", "(\"B01\")"] {
            assert_eq!(
                message(&format!("a CANCELUPDATE {bad}\r\n")),
                "CANCELUPDATE takes the tags of searches as quoted strings",
                "{bad}"
            );
        }
        assert_eq!(
            message("a CANCELUPDATE \"\"\r\n"),
            "Invalid tag \"\" in CANCELUPDATE"
        );
        assert_eq!(
            message("a CANCELUPDATE \"a+b\"\r\n"),
            "Invalid tag \"a+b\" in CANCELUPDATE"
        );
        assert_eq!(
            message("a CANCELUPDATE \"B01\r\n"),
            "Unterminated quoted string"
        );
    }

    #[test]
    fn partial_return_option() {
        let returns = |raw: &str| match ok(raw) {
            CommandBody::Search { returns, .. } | CommandBody::Sort { returns, .. } => returns,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            returns("A01 UID SEARCH RETURN (PARTIAL -1:-100) UNDELETED UNKEYWORD $Junk\r\n"),
            Some(vec![SearchReturn::Partial(PartialRange::Last(1, 100))])
        );
        // Kept as written: the response echoes it.
        assert_eq!(
            returns("a SORT RETURN (COUNT PARTIAL 500:400) (DATE) UTF-8 ALL\r\n"),
            Some(vec![
                SearchReturn::Count,
                SearchReturn::Partial(PartialRange::First(500, 400))
            ])
        );
        // As before PARTIAL: a repeated ALL is let through.
        assert_eq!(
            returns("a SEARCH RETURN (ALL ALL) SEEN\r\n"),
            Some(vec![SearchReturn::All, SearchReturn::All])
        );
        let message = |raw: &str| err(raw).message;
        assert_eq!(
            message("a SEARCH RETURN (PARTIAL 1:5 ALL) SEEN\r\n"),
            "PARTIAL and ALL cannot be combined"
        );
        assert_eq!(
            message("a SORT RETURN (ALL PARTIAL 1:5) (DATE) UTF-8 SEEN\r\n"),
            "PARTIAL and ALL cannot be combined"
        );
        assert_eq!(
            message("a SEARCH RETURN (PARTIAL 1:5 PARTIAL 6:9) SEEN\r\n"),
            "Only one PARTIAL return option is allowed"
        );
        for bad in ["1:-5", "-1:5", "0:5", "1:0", "*:5", "1", "1:", "-1:-"] {
            let raw = format!("a SEARCH RETURN (PARTIAL {bad}) SEEN\r\n");
            assert_eq!(message(&raw), "Invalid partial range", "{bad}");
        }
        assert_eq!(
            message("a SEARCH RETURN (PARTIAL) SEEN\r\n"),
            "Missing partial range"
        );
        assert_eq!(
            message("a SEARCH RETURN (PARTIAL 4294967296:1) SEEN\r\n"),
            "Invalid partial range"
        );
    }

    #[test]
    fn thread_commands_and_errors() {
        assert_eq!(
            ok("A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000\r\n"),
            CommandBody::Thread {
                uid: false,
                algorithm: ThreadAlgorithm::OrderedSubject,
                charset: "UTF-8".into(),
                search: SearchKey::Since(date(5, 3, 2000)),
            }
        );
        let thread = ok("A285 uid thread references us-ascii TEXT \"gewp\" UNSEEN\r\n");
        assert_eq!(thread.name(), "UID THREAD");
        assert_eq!(
            thread,
            CommandBody::Thread {
                uid: true,
                algorithm: ThreadAlgorithm::References,
                charset: "us-ascii".into(),
                search: SearchKey::And(vec![SearchKey::Text("gewp".into()), SearchKey::Unseen]),
            }
        );
        assert_eq!(
            ok("a3 Thread Refs UTF-8 SEEN\r\n"),
            CommandBody::Thread {
                uid: false,
                algorithm: ThreadAlgorithm::Refs,
                charset: "UTF-8".into(),
                search: SearchKey::Seen,
            }
        );
        let message = |raw: &str| err(raw).message;
        assert_eq!(message("a THREAD\r\n"), "Missing threading algorithm");
        assert_eq!(
            message("a THREAD REFERENCES2 UTF-8 ALL\r\n"),
            "Unsupported threading algorithm REFERENCES2 (ORDEREDSUBJECT, REFERENCES and REFS are)"
        );
        assert_eq!(
            message("a THREAD (REFERENCES) UTF-8 ALL\r\n"),
            "Invalid threading algorithm"
        );
        assert_eq!(message("a THREAD REFERENCES\r\n"), "Missing charset");
        assert_eq!(
            message("a THREAD REFERENCES ALL\r\n"),
            "Missing charset or search criteria"
        );
        assert_eq!(
            message("a UID THREAD REFERENCES UTF-8\r\n"),
            "Missing search criteria"
        );
        assert_eq!(
            message("a THREAD REFERENCES ISO-8859-1 ALL\r\n"),
            BADCHARSET_MESSAGE
        );
    }

    #[test]
    fn printable_truncates() {
        assert_eq!(printable(b"FOO\x01"), "FOO?");
        assert_eq!(printable(&[b'X'; 50]), format!("{}...", "X".repeat(40)));
    }
}
