//! The server's responses as values, and the one encoder that writes them (RFC 9051 §7
//! and the extensions' additions). Commands build a [`Status`] (a tagged completion or
//! an untagged OK/NO/BAD/BYE, with a typed [`Code`]) or a [`Data`] (untagged data) and
//! the session encodes it; no other module writes response syntax. The one exception
//! is FETCH's message items, which [`crate::fetch`] writes as it reads each message,
//! since bodies are streamed from the store rather than copied into a value.
//!
//! Below the types are the small pieces of syntax (strings, flag lists, dates, sequence
//! sets) the encoder is made of.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use crate::command::{DateTime, PartialRange, StatusItem};
pub use crate::parser::{MONTHS, civil_from_days};

/// The condition of a status response (RFC 9051 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    Ok,
    No,
    Bad,
    Bye,
    PreAuth,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Condition::Ok => "OK",
            Condition::No => "NO",
            Condition::Bad => "BAD",
            Condition::Bye => "BYE",
            Condition::PreAuth => "PREAUTH",
        }
    }
}

/// A response code, the bracketed part of a status response: RFC 9051 §7.1, RFC 5530
/// and each extension's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    AlreadyExists,
    /// RFC 4315 UIDPLUS: the UIDVALIDITY and the new messages' UIDs.
    AppendUid {
        uidvalidity: u32,
        uids: Vec<u32>,
    },
    AuthenticationFailed,
    AuthorizationFailed,
    /// RFC 5465 §5.1: the events the server supports, for an unsupported one.
    BadEvent(Vec<&'static str>),
    BadCharset(Vec<&'static str>),
    /// RFC 4469 §6: the URL CATENATE could not use.
    BadUrl(String),
    Cannot,
    /// The capability list, space-separated.
    Capability(String),
    Closed,
    CompressionActive,
    ContactAdmin,
    /// RFC 4315 UIDPLUS: the source UIDs and the copies' UIDs, in the same order.
    CopyUid {
        uidvalidity: u32,
        source: Vec<u32>,
        copies: Vec<u32>,
    },
    Corruption,
    HighestModSeq(u64),
    Limit,
    /// RFC 8474 OBJECTID: the folder's id, written `F<id>`.
    MailboxId(u64),
    /// RFC 5464 §4.2.1 and §4.3: `METADATA LONGENTRIES n`, `MAXSIZE n`, `TOOMANY`.
    MetadataLongEntries(u64),
    MetadataMaxSize(u64),
    MetadataTooMany,
    /// RFC 7162 §3.1.3: the messages a conditional STORE left alone.
    Modified(Vec<u32>),
    NonExistent,
    NoPerm,
    NotificationOverflow,
    /// RFC 5267 §4.3.1: the live result tagged so gets no more updates.
    NoUpdate(String),
    OverQuota,
    /// `None` is the empty list of a read-only folder; `Some` lists the flags and
    /// ends with `\*` (new keywords may be made).
    PermanentFlags(Option<Vec<String>>),
    PrivacyRequired,
    ReadOnly,
    ReadWrite,
    /// RFC 2221 LOGIN-REFERRALS: the IMAP URL of the server to use instead.
    Referral(String),
    ServerBug,
    TooBig,
    TryCreate,
    UidNext(u32),
    UidValidity(u32),
    Unavailable,
    UnknownCte,
    Unseen(u32),
    UseAttr,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Code::AlreadyExists => "ALREADYEXISTS",
            Code::AuthenticationFailed => "AUTHENTICATIONFAILED",
            Code::AuthorizationFailed => "AUTHORIZATIONFAILED",
            Code::Cannot => "CANNOT",
            Code::Closed => "CLOSED",
            Code::CompressionActive => "COMPRESSIONACTIVE",
            Code::ContactAdmin => "CONTACTADMIN",
            Code::Corruption => "CORRUPTION",
            Code::Limit => "LIMIT",
            Code::MetadataTooMany => "METADATA TOOMANY",
            Code::NonExistent => "NONEXISTENT",
            Code::NoPerm => "NOPERM",
            Code::NotificationOverflow => "NOTIFICATIONOVERFLOW",
            Code::OverQuota => "OVERQUOTA",
            Code::PrivacyRequired => "PRIVACYREQUIRED",
            Code::ReadOnly => "READ-ONLY",
            Code::ReadWrite => "READ-WRITE",
            Code::ServerBug => "SERVERBUG",
            Code::TooBig => "TOOBIG",
            Code::TryCreate => "TRYCREATE",
            Code::Unavailable => "UNAVAILABLE",
            Code::UnknownCte => "UNKNOWN-CTE",
            Code::UseAttr => "USEATTR",
            Code::AppendUid { uidvalidity, uids } => {
                return write!(f, "APPENDUID {uidvalidity} {}", sequence_set(uids));
            }
            Code::BadEvent(events) => return write!(f, "BADEVENT ({})", events.join(" ")),
            Code::BadCharset(charsets) => return write!(f, "BADCHARSET ({})", charsets.join(" ")),
            Code::BadUrl(url) => return write!(f, "BADURL {url}"),
            Code::Capability(capability) => return write!(f, "CAPABILITY {capability}"),
            Code::CopyUid {
                uidvalidity,
                source,
                copies,
            } => {
                return write!(
                    f,
                    "COPYUID {uidvalidity} {} {}",
                    sequence_set(source),
                    sequence_set(copies)
                );
            }
            Code::HighestModSeq(modseq) => return write!(f, "HIGHESTMODSEQ {modseq}"),
            Code::MailboxId(id) => return write!(f, "MAILBOXID (F{id})"),
            Code::MetadataLongEntries(n) => return write!(f, "METADATA LONGENTRIES {n}"),
            Code::MetadataMaxSize(n) => return write!(f, "METADATA MAXSIZE {n}"),
            Code::Modified(uids) => return write!(f, "MODIFIED {}", sequence_set(uids)),
            Code::NoUpdate(tag) => return write!(f, "NOUPDATE \"{tag}\""),
            Code::PermanentFlags(None) => "PERMANENTFLAGS ()",
            Code::PermanentFlags(Some(flags)) => {
                f.write_str("PERMANENTFLAGS (")?;
                for flag in flags {
                    write!(f, "{flag} ")?;
                }
                return f.write_str("\\*)");
            }
            Code::Referral(url) => return write!(f, "REFERRAL {url}"),
            Code::UidNext(uid) => return write!(f, "UIDNEXT {uid}"),
            Code::UidValidity(value) => return write!(f, "UIDVALIDITY {value}"),
            Code::Unseen(seq) => return write!(f, "UNSEEN {seq}"),
        };
        f.write_str(name)
    }
}

/// A status response: `tag OK [code] text` ending a command, or `* OK …`, `* BYE …`
/// telling the client something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub condition: Condition,
    pub code: Option<Code>,
    /// Human text; CR and LF in it are written as spaces, so it cannot end the line.
    pub text: Cow<'static, str>,
}

impl Status {
    pub fn new(condition: Condition, text: impl Into<Cow<'static, str>>) -> Status {
        Status {
            condition,
            code: None,
            text: text.into(),
        }
    }

    pub fn ok(text: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Condition::Ok, text)
    }

    pub fn no(text: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Condition::No, text)
    }

    pub fn bad(text: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Condition::Bad, text)
    }

    pub fn bye(text: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Condition::Bye, text)
    }

    /// The same status with `code`.
    pub fn code(self, code: Code) -> Status {
        Status {
            code: Some(code),
            ..self
        }
    }

    /// Writes the line, tagged with `tag` or untagged (`*`) for `None`.
    pub fn encode(&self, out: &mut Vec<u8>, tag: Option<&str>) {
        out.extend_from_slice(tag.unwrap_or("*").as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.condition.as_str().as_bytes());
        out.push(b' ');
        if let Some(code) = &self.code {
            let _ = write!(Utf8Out(out), "[{code}] ");
        }
        out.extend(
            self.text
                .bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }

    /// [`Status::encode`] into a new buffer.
    pub fn to_bytes(&self, tag: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out, tag);
        out
    }
}

/// An item of an ESEARCH response (RFC 4731, RFC 5267, RFC 9394, RFC 7162), over
/// sequence numbers or UIDs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ESearchItem<'a> {
    Min(u32),
    Max(u32),
    /// In the results' order: ranges only where numbers ascend (RFC 5267 §3.2).
    All(&'a [u32]),
    Count(usize),
    /// The range as the client asked for it and the numbers in its window (`NIL` when
    /// none).
    Partial(PartialRange, &'a [u32]),
    /// RFC 5267 §4.3: runs of a live result's changes, each a context position and
    /// the numbers there.
    RemoveFrom(&'a [(usize, Vec<u32>)]),
    AddTo(&'a [(usize, Vec<u32>)]),
    ModSeq(u64),
}

/// A piece of a THREAD response (RFC 5256 §4), in wire order; the encoder puts the
/// spaces in. A thread is `Open`, its members' numbers, and its branches each as a
/// nested `Open … Close`, then `Close`. Flat, so deep threads need no recursion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadToken {
    Open,
    Close,
    Number(u32),
}

/// A LIST or LSUB line (RFC 9051 §7.3.1, RFC 5258 §3.5, RFC 5465 §5.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry<'a> {
    /// `LIST`, or `LSUB` for the IMAP4rev1 command.
    pub lsub: bool,
    pub attributes: &'a [&'a str],
    /// The decoded name; the encoder writes it as the client reads names.
    pub name: &'a str,
    /// `("CHILDINFO" ("SUBSCRIBED"))` (RFC 5258 §3.5).
    pub subscribed_child: bool,
    /// `("OLDNAME" (old))` after a rename (RFC 5465 §5.4).
    pub old_name: Option<&'a str>,
}

/// Untagged data (RFC 9051 §7.2–§7.5 and the extensions'). Built by commands,
/// written by [`Data::encode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data<'a> {
    Capability(&'a str),
    Enabled(&'a [&'a str]),
    Exists(u32),
    Recent(u32),
    Expunge(u32),
    /// RFC 7162 §3.2.10: expunged UIDs; EARLIER for those of before the command.
    Vanished {
        earlier: bool,
        uids: &'a [u32],
    },
    /// The folder's flags: the system flags, then `keywords`.
    Flags(&'a [String]),
    /// A FETCH telling a message's flags or mod-sequence: `* seq FETCH (UID u FLAGS
    /// (…) MODSEQ (m))`, each item only when given.
    FlagFetch {
        seq: u32,
        uid: Option<u32>,
        flags: Option<&'a [String]>,
        modseq: Option<u64>,
    },
    /// `* SEARCH` (and `* SORT`, the same shape), with `(MODSEQ n)` when given.
    Search {
        sort: bool,
        numbers: &'a [u32],
        modseq: Option<u64>,
    },
    ESearch {
        tag: &'a str,
        uid: bool,
        items: &'a [ESearchItem<'a>],
    },
    Thread(&'a [ThreadToken]),
    List(ListEntry<'a>),
    Status {
        mailbox: &'a str,
        items: &'a [(StatusItem, u64)],
    },
    /// One personal namespace with `/` as hierarchy separator, and no other.
    Namespace,
    Id(&'a [(&'a str, &'a str)]),
    /// RFC 9208: a quota root's storage use and limit, in KiB.
    Quota {
        root: &'a str,
        used_kib: u64,
        limit_kib: u64,
    },
    QuotaRoot {
        mailbox: &'a str,
        roots: &'a [&'a str],
    },
    /// RFC 5464 §4.4.1: entries and their values (`NIL` for none).
    Metadata {
        mailbox: &'a str,
        entries: &'a [(&'a str, Option<&'a [u8]>)],
    },
    /// RFC 5464 §4.4.2: the names of entries that changed.
    MetadataChanged {
        mailbox: &'a str,
        entries: &'a [String],
    },
}

impl Data<'_> {
    /// Writes the line. `utf8`: the client has enabled UTF8=ACCEPT, so names and
    /// strings may be UTF-8.
    pub fn encode(&self, out: &mut Vec<u8>, utf8: bool) {
        let mut text = Utf8Out(out);
        let _ = match self {
            Data::Capability(capability) => write!(text, "* CAPABILITY {capability}"),
            Data::Enabled(names) => {
                let _ = text.write_str("* ENABLED");
                names.iter().try_for_each(|name| write!(text, " {name}"))
            }
            Data::Exists(n) => write!(text, "* {n} EXISTS"),
            Data::Recent(n) => write!(text, "* {n} RECENT"),
            Data::Expunge(seq) => write!(text, "* {seq} EXPUNGE"),
            Data::Vanished { earlier, uids } => {
                let earlier = if *earlier { "(EARLIER) " } else { "" };
                write!(text, "* VANISHED {earlier}{}", sequence_set(uids))
            }
            Data::Flags(keywords) => {
                let _ = write!(text, "* FLAGS ({SYSTEM_FLAGS}");
                let _ = keywords.iter().try_for_each(|k| write!(text, " {k}"));
                text.write_str(")")
            }
            Data::FlagFetch {
                seq,
                uid,
                flags,
                modseq,
            } => {
                // Written straight out: one of these goes out per message a STORE or
                // another session changed, so no per-line allocation.
                fetch_start(text.0, *seq);
                let mut gap = "";
                if let Some(uid) = uid {
                    let _ = write!(text, "UID {uid}");
                    gap = " ";
                }
                if let Some(flags) = flags {
                    let _ = write!(text, "{gap}FLAGS ");
                    flag_list(text.0, flags);
                    gap = " ";
                }
                if let Some(modseq) = modseq {
                    let _ = write!(text, "{gap}MODSEQ ({modseq})");
                }
                text.write_str(")")
            }
            Data::Search {
                sort,
                numbers,
                modseq,
            } => {
                let _ = text.write_str(if *sort { "* SORT" } else { "* SEARCH" });
                let _ = numbers.iter().try_for_each(|n| write!(text, " {n}"));
                match modseq {
                    Some(modseq) => write!(text, " (MODSEQ {modseq})"),
                    None => Ok(()),
                }
            }
            Data::ESearch { tag, uid, items } => {
                let _ = write!(text, "* ESEARCH (TAG \"{tag}\")");
                if *uid {
                    let _ = text.write_str(" UID");
                }
                items
                    .iter()
                    .try_for_each(|item| esearch_item(&mut text, item))
            }
            Data::Thread(tokens) => {
                let _ = text.write_str("* THREAD");
                let mut after_number = false;
                let mut first = true;
                for token in *tokens {
                    let _ = match token {
                        ThreadToken::Open if first => text.write_str(" ("),
                        ThreadToken::Open if after_number => text.write_str(" ("),
                        ThreadToken::Open => text.write_str("("),
                        ThreadToken::Close => text.write_str(")"),
                        ThreadToken::Number(n) if after_number => write!(text, " {n}"),
                        ThreadToken::Number(n) => write!(text, "{n}"),
                    };
                    after_number = matches!(token, ThreadToken::Number(_));
                    first = false;
                }
                Ok(())
            }
            Data::List(entry) => {
                let command = if entry.lsub { "LSUB" } else { "LIST" };
                let _ = write!(text, "* {command} ");
                flag_list(text.0, entry.attributes);
                let _ = text.write_str(" \"/\" ");
                mailbox(text.0, entry.name, utf8);
                if entry.subscribed_child {
                    text.0
                        .extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
                }
                if let Some(old) = entry.old_name {
                    text.0.extend_from_slice(b" (\"OLDNAME\" (");
                    mailbox(text.0, old, utf8);
                    text.0.extend_from_slice(b"))");
                }
                Ok(())
            }
            Data::Status {
                mailbox: name,
                items,
            } => {
                let _ = text.write_str("* STATUS ");
                mailbox(text.0, name, utf8);
                let _ = text.write_str(" (");
                for (i, (item, value)) in items.iter().enumerate() {
                    let _ = text.write_str(if i > 0 { " " } else { "" });
                    let _ = match item {
                        StatusItem::MailboxId => write!(text, "MAILBOXID (F{value})"),
                        item => write!(text, "{} {value}", status_item_name(*item)),
                    };
                }
                text.write_str(")")
            }
            Data::Namespace => text.write_str("* NAMESPACE ((\"\" \"/\")) NIL NIL"),
            Data::Id(fields) => {
                let _ = text.write_str("* ID (");
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        text.0.push(b' ');
                    }
                    string(text.0, name.as_bytes(), utf8);
                    text.0.push(b' ');
                    string(text.0, value.as_bytes(), utf8);
                }
                text.write_str(")")
            }
            Data::Quota {
                root,
                used_kib,
                limit_kib,
            } => {
                let _ = text.write_str("* QUOTA ");
                string(text.0, root.as_bytes(), utf8);
                write!(text, " (STORAGE {used_kib} {limit_kib})")
            }
            Data::QuotaRoot {
                mailbox: name,
                roots,
            } => {
                let roots = roots.iter().map(|root| root.as_bytes());
                mailbox_and_strings(text.0, "* QUOTAROOT ", name, roots, utf8);
                Ok(())
            }
            Data::Metadata {
                mailbox: name,
                entries,
            } => {
                let _ = text.write_str("* METADATA ");
                mailbox(text.0, name, utf8);
                let _ = text.write_str(" (");
                for (i, (entry, value)) in entries.iter().enumerate() {
                    let _ = write!(text, "{}{entry} ", if i > 0 { " " } else { "" });
                    match value {
                        // RFC 5464 §5: a value with NUL is a literal8.
                        Some(v) if v.contains(&0) => {
                            let _ = write!(text, "~{{{}}}\r\n", v.len());
                            text.0.extend_from_slice(v);
                        }
                        Some(v) => string(text.0, v, utf8),
                        None => text.0.extend_from_slice(b"NIL"),
                    }
                }
                text.write_str(")")
            }
            Data::MetadataChanged {
                mailbox: name,
                entries,
            } => {
                let entries = entries.iter().map(|entry| entry.as_bytes());
                mailbox_and_strings(text.0, "* METADATA ", name, entries, utf8);
                Ok(())
            }
        };
        out.extend_from_slice(b"\r\n");
    }

    /// [`Data::encode`] into a new buffer.
    pub fn to_bytes(&self, utf8: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out, utf8);
        out
    }
}

/// `* seq FETCH (`: the start of a FETCH response, whose message items
/// [`crate::fetch`] writes, then `)` and CRLF.
pub fn fetch_start(out: &mut Vec<u8>, seq: u32) {
    let _ = write!(Utf8Out(out), "* {seq} FETCH (");
}

/// A continuation request (`+ text`, RFC 9051 §7.5): send the literal, or the next
/// line of an exchange. SASL challenges are `text` too, in base64 (may be empty).
pub fn continuation(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// The five system flags a client may set (RFC 9051 §2.3.2).
pub const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

fn status_item_name(item: StatusItem) -> &'static str {
    match item {
        StatusItem::Messages => "MESSAGES",
        StatusItem::Recent => "RECENT",
        StatusItem::UidNext => "UIDNEXT",
        StatusItem::UidValidity => "UIDVALIDITY",
        StatusItem::Unseen => "UNSEEN",
        StatusItem::Deleted => "DELETED",
        StatusItem::DeletedStorage => "DELETED-STORAGE",
        StatusItem::Size => "SIZE",
        StatusItem::HighestModSeq => "HIGHESTMODSEQ",
        StatusItem::MailboxId => "MAILBOXID",
    }
}

fn esearch_item(text: &mut Utf8Out<'_>, item: &ESearchItem<'_>) -> fmt::Result {
    let runs = |text: &mut Utf8Out<'_>, name: &str, runs: &[(usize, Vec<u32>)]| {
        let _ = write!(text, " {name} (");
        for (i, (position, numbers)) in runs.iter().enumerate() {
            let gap = if i > 0 { " " } else { "" };
            let _ = write!(text, "{gap}{position} {}", sequence_set(numbers));
        }
        text.write_str(")")
    };
    match item {
        ESearchItem::Min(n) => write!(text, " MIN {n}"),
        ESearchItem::Max(n) => write!(text, " MAX {n}"),
        ESearchItem::All(numbers) => write!(text, " ALL {}", sequence_set(numbers)),
        ESearchItem::Count(n) => write!(text, " COUNT {n}"),
        ESearchItem::Partial(range, []) => write!(text, " PARTIAL ({range} NIL)"),
        ESearchItem::Partial(range, numbers) => {
            write!(text, " PARTIAL ({range} {})", sequence_set(numbers))
        }
        ESearchItem::RemoveFrom(removed) => runs(text, "REMOVEFROM", removed),
        ESearchItem::AddTo(added) => runs(text, "ADDTO", added),
        ESearchItem::ModSeq(modseq) => write!(text, " MODSEQ {modseq}"),
    }
}

/// A mailbox name as the client reads names: modified UTF-7 unless it has enabled
/// UTF-8 (RFC 9051 §5.1.3, RFC 6855 §3).
fn mailbox(out: &mut Vec<u8>, name: &str, utf8: bool) {
    string(out, &crate::names::encode(name, utf8), utf8);
}

/// `{start}mailbox string string…`: QUOTAROOT's roots, METADATA's changed entries.
fn mailbox_and_strings<'s>(
    out: &mut Vec<u8>,
    start: &str,
    name: &str,
    strings: impl Iterator<Item = &'s [u8]>,
    utf8: bool,
) {
    out.extend_from_slice(start.as_bytes());
    mailbox(out, name, utf8);
    for value in strings {
        out.push(b' ');
        string(out, value, utf8);
    }
}

/// `fmt::Write` onto the response buffer, for the parts that are text.
struct Utf8Out<'a>(&'a mut Vec<u8>);

impl fmt::Write for Utf8Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Writes `bytes` as an IMAP string: quoted when it can be, a literal otherwise
/// (CR, LF, NUL, long values, or 8-bit text for a client that has not enabled UTF-8).
pub fn string(out: &mut Vec<u8>, bytes: &[u8], utf8: bool) {
    let quotable = bytes.len() <= 1000
        && bytes
            .iter()
            .all(|&b| b != b'\r' && b != b'\n' && b != 0 && (utf8 || b < 0x80))
        && (!utf8 || std::str::from_utf8(bytes).is_ok());
    if quotable {
        out.push(b'"');
        for &b in bytes {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
        out.extend_from_slice(bytes);
    }
}

/// `NIL` or a string.
pub fn nstring(out: &mut Vec<u8>, bytes: Option<&[u8]>, utf8: bool) {
    match bytes {
        Some(bytes) => string(out, bytes, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// `(\Seen $Work)`.
pub fn flag_list<S: AsRef<str>>(out: &mut Vec<u8>, flags: &[S]) {
    out.push(b'(');
    for (i, flag) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(flag.as_ref().as_bytes());
    }
    out.push(b')');
}

/// INTERNALDATE as `"17-Jul-1996 02:44:25 -0700"`, in the zone it was given in.
pub fn date_time(out: &mut Vec<u8>, date: DateTime) {
    let local = date.timestamp + date.offset as i64;
    let (year, month, day) = civil_from_days(local.div_euclid(86_400));
    let secs = local.rem_euclid(86_400);
    let sign = if date.offset < 0 { '-' } else { '+' };
    let offset = date.offset.unsigned_abs();
    let (hours, minutes) = (offset / 3600, offset % 3600 / 60);
    // Written digit by digit: a FETCH of INTERNALDATE for 10,000 messages formats it
    // 10,000 times. Out-of-range fields (never from a real clock) take the slow path.
    if (0..=9999).contains(&year) && hours < 100 {
        let two = |out: &mut Vec<u8>, n: u64| {
            out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8])
        };
        out.push(b'"');
        two(out, u64::from(day));
        out.push(b'-');
        out.extend_from_slice(MONTHS[(month - 1) as usize].as_bytes());
        out.push(b'-');
        let year = year as u64;
        two(out, year / 100);
        two(out, year % 100);
        out.push(b' ');
        two(out, (secs / 3600) as u64);
        out.push(b':');
        two(out, (secs % 3600 / 60) as u64);
        out.push(b':');
        two(out, (secs % 60) as u64);
        out.push(b' ');
        out.push(sign as u8);
        two(out, u64::from(hours));
        two(out, u64::from(minutes));
        out.push(b'"');
        return;
    }
    out.extend_from_slice(
        format!(
            "\"{day:02}-{}-{year:04} {:02}:{:02}:{:02} {sign}{hours:02}{minutes:02}\"",
            MONTHS[(month - 1) as usize],
            secs / 3600,
            secs % 3600 / 60,
            secs % 60,
        )
        .as_bytes(),
    );
}

/// `1:3,7,9:10` from ascending numbers.
pub fn sequence_set(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = numbers[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_time_is_written_as_format_would() {
        let reference = |date: DateTime| {
            let local = date.timestamp + date.offset as i64;
            let (year, month, day) = civil_from_days(local.div_euclid(86_400));
            let secs = local.rem_euclid(86_400);
            let sign = if date.offset < 0 { '-' } else { '+' };
            let offset = date.offset.unsigned_abs();
            format!(
                "\"{day:02}-{}-{year:04} {:02}:{:02}:{:02} {sign}{:02}{:02}\"",
                MONTHS[(month - 1) as usize],
                secs / 3600,
                secs % 3600 / 60,
                secs % 60,
                offset / 3600,
                offset % 3600 / 60
            )
        };
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut dates = vec![
            DateTime {
                timestamp: 0,
                offset: 0,
            },
            DateTime {
                timestamp: -1,
                offset: -3600,
            },
            DateTime {
                timestamp: 253_402_300_799,
                offset: 0,
            },
            DateTime {
                timestamp: 253_402_300_799,
                offset: 3600,
            },
            DateTime {
                timestamp: -62_167_219_200,
                offset: -60,
            },
            DateTime {
                timestamp: 1_700_000_000,
                offset: 400_000,
            },
        ];
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let timestamp = (seed % 6_000_000_000) as i64 - 1_000_000_000;
            let offset = ((seed >> 40) % 100_000) as i32 - 50_000;
            dates.push(DateTime { timestamp, offset });
        }
        for date in dates {
            let mut out = Vec::new();
            date_time(&mut out, date);
            assert_eq!(String::from_utf8(out).unwrap(), reference(date), "{date:?}");
        }
    }

    fn status(status: Status, tag: Option<&str>) -> String {
        String::from_utf8(status.to_bytes(tag)).unwrap()
    }

    fn data(data: Data<'_>, utf8: bool) -> String {
        String::from_utf8(data.to_bytes(utf8)).unwrap()
    }

    #[test]
    fn status_lines_carry_their_code() {
        assert_eq!(
            status(Status::ok("NOOP completed"), Some("a1")),
            "a1 OK NOOP completed\r\n"
        );
        assert_eq!(
            status(
                Status::no("Mailbox does not exist").code(Code::TryCreate),
                Some("b")
            ),
            "b NO [TRYCREATE] Mailbox does not exist\r\n"
        );
        assert_eq!(
            status(Status::bye("Logging out"), None),
            "* BYE Logging out\r\n"
        );
        // Text cannot end the line early.
        assert_eq!(
            status(Status::bad("a\r\n* OK forged"), Some("c")),
            "c BAD a  * OK forged\r\n"
        );
        let flags = vec!["\\Seen".to_string(), "$Work".to_string()];
        let cases = [
            (
                Code::AppendUid {
                    uidvalidity: 38505,
                    uids: vec![3955, 3956, 3957, 9],
                },
                "APPENDUID 38505 3955:3957,9",
            ),
            (
                Code::CopyUid {
                    uidvalidity: 7,
                    source: vec![1, 2],
                    copies: vec![10, 11],
                },
                "COPYUID 7 1:2 10:11",
            ),
            (Code::PermanentFlags(None), "PERMANENTFLAGS ()"),
            (
                Code::PermanentFlags(Some(flags)),
                "PERMANENTFLAGS (\\Seen $Work \\*)",
            ),
            (
                Code::BadCharset(vec!["US-ASCII", "UTF-8"]),
                "BADCHARSET (US-ASCII UTF-8)",
            ),
            (
                Code::BadEvent(vec!["MessageNew", "FlagChange"]),
                "BADEVENT (MessageNew FlagChange)",
            ),
            (Code::BadUrl("/INBOX/;UID=9".into()), "BADURL /INBOX/;UID=9"),
            (Code::MailboxId(42), "MAILBOXID (F42)"),
            (Code::MetadataLongEntries(2000), "METADATA LONGENTRIES 2000"),
            (Code::MetadataMaxSize(65536), "METADATA MAXSIZE 65536"),
            (Code::MetadataTooMany, "METADATA TOOMANY"),
            (Code::Modified(vec![7, 9]), "MODIFIED 7,9"),
            (Code::NoUpdate("B01".into()), "NOUPDATE \"B01\""),
            (
                Code::Referral("imap://bob@d2.example.org/".into()),
                "REFERRAL imap://bob@d2.example.org/",
            ),
            (Code::ReadOnly, "READ-ONLY"),
            (Code::UnknownCte, "UNKNOWN-CTE"),
            (
                Code::HighestModSeq(715194045007),
                "HIGHESTMODSEQ 715194045007",
            ),
            (Code::UidNext(4392), "UIDNEXT 4392"),
            (Code::UidValidity(3857529045), "UIDVALIDITY 3857529045"),
            (Code::Unseen(12), "UNSEEN 12"),
            (
                Code::Capability("IMAP4rev2 IDLE".into()),
                "CAPABILITY IMAP4rev2 IDLE",
            ),
        ];
        for (code, text) in cases {
            assert_eq!(code.to_string(), text);
        }
    }

    #[test]
    fn data_lines_follow_the_grammar() {
        let keywords = vec!["$Work".to_string()];
        assert_eq!(
            data(Data::Flags(&keywords), false),
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n"
        );
        assert_eq!(data(Data::Exists(23), false), "* 23 EXISTS\r\n");
        assert_eq!(data(Data::Expunge(3), false), "* 3 EXPUNGE\r\n");
        assert_eq!(
            data(
                Data::Vanished {
                    earlier: true,
                    uids: &[41, 42, 43, 50]
                },
                false
            ),
            "* VANISHED (EARLIER) 41:43,50\r\n"
        );
        assert_eq!(
            data(Data::Enabled(&["CONDSTORE", "QRESYNC"]), false),
            "* ENABLED CONDSTORE QRESYNC\r\n"
        );
        assert_eq!(data(Data::Enabled(&[]), false), "* ENABLED\r\n");
        let seen = vec!["\\Seen".to_string()];
        let fetch = Data::FlagFetch {
            seq: 4,
            uid: Some(9),
            flags: Some(&seen),
            modseq: Some(12),
        };
        assert_eq!(
            data(fetch, false),
            "* 4 FETCH (UID 9 FLAGS (\\Seen) MODSEQ (12))\r\n"
        );
        let fetch = Data::FlagFetch {
            seq: 4,
            uid: None,
            flags: None,
            modseq: Some(12),
        };
        assert_eq!(data(fetch, false), "* 4 FETCH (MODSEQ (12))\r\n");
        let search = Data::Search {
            sort: false,
            numbers: &[2, 84, 882],
            modseq: Some(917162500),
        };
        assert_eq!(
            data(search, false),
            "* SEARCH 2 84 882 (MODSEQ 917162500)\r\n"
        );
        assert_eq!(
            data(
                Data::Search {
                    sort: true,
                    numbers: &[],
                    modseq: None
                },
                false
            ),
            "* SORT\r\n"
        );
        let runs = [(0, vec![4, 5]), (3, vec![9])];
        let items = [
            ESearchItem::Min(2),
            ESearchItem::All(&[2, 3, 4, 10]),
            ESearchItem::Partial(PartialRange::Last(1, 3), &[]),
            ESearchItem::AddTo(&runs),
            ESearchItem::ModSeq(5),
        ];
        assert_eq!(
            data(
                Data::ESearch {
                    tag: "E1",
                    uid: true,
                    items: &items
                },
                false
            ),
            "* ESEARCH (TAG \"E1\") UID MIN 2 ALL 2:4,10 PARTIAL (-1:-3 NIL) ADDTO (0 4:5 3 9) MODSEQ 5\r\n"
        );
        use ThreadToken::{Close, Number, Open};
        let tokens = [
            Open,
            Number(2),
            Close,
            Open,
            Number(3),
            Number(6),
            Open,
            Number(4),
            Number(23),
            Close,
            Open,
            Number(44),
            Close,
            Close,
            Open,
            Open,
            Number(1),
            Close,
            Open,
            Number(5),
            Close,
            Close,
        ];
        assert_eq!(
            data(Data::Thread(&tokens), false),
            "* THREAD (2)(3 6 (4 23)(44))((1)(5))\r\n"
        );
        let list = ListEntry {
            lsub: false,
            attributes: &["\\HasNoChildren", "\\Sent"],
            name: "Gesendete Objekte/Café",
            subscribed_child: true,
            old_name: Some("Sent"),
        };
        assert_eq!(
            data(Data::List(list.clone()), false),
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Gesendete Objekte/Caf&AOk-\" (\"CHILDINFO\" (\"SUBSCRIBED\")) (\"OLDNAME\" (\"Sent\"))\r\n"
        );
        assert!(data(Data::List(list), true).contains("\"Gesendete Objekte/Café\""));
        let items = [
            (StatusItem::Messages, 231),
            (StatusItem::MailboxId, 7),
            (StatusItem::DeletedStorage, 0),
        ];
        assert_eq!(
            data(
                Data::Status {
                    mailbox: "INBOX",
                    items: &items
                },
                false
            ),
            "* STATUS \"INBOX\" (MESSAGES 231 MAILBOXID (F7) DELETED-STORAGE 0)\r\n"
        );
        assert_eq!(
            data(Data::Namespace, false),
            "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
        );
        assert_eq!(
            data(Data::Id(&[("name", "Portico")]), false),
            "* ID (\"name\" \"Portico\")\r\n"
        );
        assert_eq!(
            data(
                Data::Quota {
                    root: "",
                    used_kib: 10,
                    limit_kib: 512
                },
                false
            ),
            "* QUOTA \"\" (STORAGE 10 512)\r\n"
        );
        assert_eq!(
            data(
                Data::QuotaRoot {
                    mailbox: "INBOX",
                    roots: &[""]
                },
                false
            ),
            "* QUOTAROOT \"INBOX\" \"\"\r\n"
        );
        let entries: [(&str, Option<&[u8]>); 3] = [
            ("/private/comment", Some(b"My comment")),
            ("/shared/x", Some(b"a\0b")),
            ("/private/y", None),
        ];
        assert_eq!(
            data(
                Data::Metadata {
                    mailbox: "INBOX",
                    entries: &entries
                },
                false
            ),
            "* METADATA \"INBOX\" (/private/comment \"My comment\" /shared/x ~{3}\r\na\0b /private/y NIL)\r\n"
        );
        let changed = vec!["/shared/comment".to_string()];
        assert_eq!(
            data(
                Data::MetadataChanged {
                    mailbox: "",
                    entries: &changed
                },
                false
            ),
            "* METADATA \"\" \"/shared/comment\"\r\n"
        );
        let mut out = Vec::new();
        continuation(&mut out, "");
        continuation(&mut out, "Ready for literal data");
        assert_eq!(out, b"+ \r\n+ Ready for literal data\r\n");
    }

    #[test]
    fn strings_are_quoted_or_literal() {
        let mut out = Vec::new();
        string(&mut out, b"a \"b\" \\c", false);
        assert_eq!(out, b"\"a \\\"b\\\" \\\\c\"");
        out.clear();
        string(&mut out, b"line\r\nbreak", false);
        assert_eq!(out, b"{11}\r\nline\r\nbreak");
        out.clear();
        string(&mut out, "Grüße".as_bytes(), false);
        assert_eq!(out, "{7}\r\nGrüße".as_bytes());
        out.clear();
        string(&mut out, "Grüße".as_bytes(), true);
        assert_eq!(out, "\"Grüße\"".as_bytes());
    }

    #[test]
    fn dates_render_in_their_own_zone() {
        let mut out = Vec::new();
        // 1996-07-17 09:44:25 UTC = 02:44:25 -0700
        date_time(
            &mut out,
            DateTime {
                timestamp: 837_596_665,
                offset: -7 * 3600,
            },
        );
        assert_eq!(out, b"\"17-Jul-1996 02:44:25 -0700\"");
    }

    #[test]
    fn sequence_sets_compress_runs() {
        assert_eq!(sequence_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(sequence_set(&[]), "");
        assert_eq!(sequence_set(&[5]), "5");
    }
}
