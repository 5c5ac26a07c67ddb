//! The IMAP commands a client can send, as typed values (RFC 9051 §6, RFC 3501 §6, and
//! the extensions Portico serves). The parser builds these; the session acts on them.
//!
//! Strings a client sends as astring/string (mailbox names, LOGIN credentials) are kept
//! as raw bytes: decoding a mailbox name depends on whether the session has enabled
//! UTF-8 (IMAP4rev2 / UTF8=ACCEPT) or uses modified UTF-7, which only the session knows.
//!
//! The submodules carry each command family out on the [`crate::Session`]: the session
//! reads, dispatches and answers; what a command does is in its family's module.

use std::fmt;

pub(crate) mod append;
pub(crate) mod auth;
pub(crate) mod context;
pub(crate) mod copy;
pub(crate) mod expunge;
pub(crate) mod fetch;
pub(crate) mod list;
pub(crate) mod mailbox;
pub(crate) mod metadata;
pub(crate) mod notify;
pub(crate) mod quota;
pub(crate) mod scan;
pub(crate) mod search;
pub(crate) mod sort;
pub(crate) mod store;

/// A command tag, echoed in the tagged response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag(pub String);

/// One end of a sequence range: a number or `*` (the largest in use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqBound {
    Value(u32),
    Star,
}

/// `a`, `a:b` (in either order; `b:a` means the same), `*`, `a:*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRange {
    pub start: SeqBound,
    pub end: SeqBound,
}

/// RFC 9051 §9 sequence-set: message numbers or UIDs, by context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceSet(pub Vec<SeqRange>);

/// GETMETADATA's DEPTH option (RFC 5464 §4.2.2): which entries below a named one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataDepth {
    Zero,
    One,
    Infinity,
}

/// One message of an APPEND, with its flags and internal date: what the host appends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendItem {
    pub flags: Vec<String>,
    pub date: Option<DateTime>,
    pub message: Vec<u8>,
}

/// One message of an APPEND command as the client wrote it (RFC 4466 `append-message`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<String>,
    pub date: Option<DateTime>,
    pub data: AppendData,
}

/// What an APPEND message is made of (RFC 4466 `append-data`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendData {
    /// The message itself: a literal, a literal8 (RFC 3516) or `UTF8 (~{n})` (RFC 6855).
    Literal(Vec<u8>),
    /// RFC 4469 CATENATE: the parts to join, in order; never empty.
    Catenate(Vec<CatPart>),
}

/// One part of a CATENATE list (RFC 4469 §5 `cat-part`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatPart {
    /// `TEXT literal` (a literal8 too): octets taken as they are.
    Text(Vec<u8>),
    /// `URL astring`: an IMAP URL (RFC 5092) naming a message or a part of one, kept as
    /// sent; [`crate::url`] reads it, since its meaning depends on the session.
    Url(Vec<u8>),
}

impl SequenceSet {
    /// `$` (SEARCHRES, RFC 5182): the result a SEARCH saved. Written as no ranges, which
    /// no set a client writes can be.
    pub fn saved() -> SequenceSet {
        SequenceSet(Vec::new())
    }

    pub fn is_saved(&self) -> bool {
        self.0.is_empty()
    }
}

/// A credential, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A calendar date as SEARCH uses it (RFC 9051 §9 `date`), no time or zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// APPEND's date-time: seconds since the Unix epoch (UTC) and the zone offset in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub timestamp: i64,
    pub offset: i32,
}

/// STATUS data items (RFC 9051 §6.3.11, RFC 8438 SIZE, RFC 7162 HIGHESTMODSEQ, RFC 9208
/// DELETED-STORAGE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    /// The octets an EXPUNGE would free (RFC 9208 §4.3, required with
    /// QUOTA=RES-STORAGE).
    DeletedStorage,
    Size,
    HighestModSeq,
    /// RFC 8474 OBJECTID.
    MailboxId,
}

/// LIST-EXTENDED selection options (RFC 5258 §3.1, RFC 6154 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListSelection {
    Subscribed,
    Remote,
    RecursiveMatch,
    SpecialUse,
}

/// LIST-EXTENDED return options (RFC 5258 §3.2, RFC 5819, RFC 6154).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListReturn {
    Subscribed,
    Children,
    SpecialUse,
    Status(Vec<StatusItem>),
}

/// SEARCH keys (RFC 9051 §6.4.4, RFC 7162 MODSEQ). Several keys in a row mean AND.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchKey {
    All,
    And(Vec<SearchKey>),
    Answered,
    Bcc(String),
    Before(Date),
    Body(String),
    Cc(String),
    Deleted,
    Draft,
    Flagged,
    From(String),
    Header(String, String),
    Keyword(String),
    Larger(u64),
    /// RFC 5032 WITHIN: INTERNALDATE at least this many seconds ago.
    Older(u32),
    /// RFC 5032 WITHIN: INTERNALDATE at most this many seconds ago.
    Younger(u32),
    /// RFC 7162 §3.1.5: MODSEQ [entry-name entry-type] n; only the number matters here.
    ModSeq(u64),
    New,
    Not(Box<SearchKey>),
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    Recent,
    /// RFC 8514 §4.3: BEFORE, ON and SINCE on the save date (the internal date for a
    /// message whose save date is not known).
    SavedBefore(Date),
    SavedOn(Date),
    SavedSince(Date),
    /// RFC 8514 §4.3: every message, since every folder keeps save dates.
    SaveDateSupported,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    SequenceSet(SequenceSet),
    Since(Date),
    Smaller(u64),
    Subject(String),
    Text(String),
    To(String),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
}

/// ESEARCH return options (RFC 4731, RFC 9051 §6.4.4), also those of an extended SORT
/// (ESORT, RFC 5267 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
    /// RFC 5267 §4.4, RFC 9394 §3.1: a window of the results.
    Partial(PartialRange),
    /// RFC 5267 §4.3: keep the result live while the folder is selected, with ADDTO
    /// and REMOVEFROM as it changes.
    Update,
    /// RFC 5267 §4.2: the client will use these criteria again; only a hint.
    Context,
}

/// RFC 9394 partial-range: which results of a SEARCH or SORT to return, counted from 1.
/// Kept as the client wrote it, since the response echoes it; `500:400` means the same
/// as `400:500`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartialRange {
    /// `a:b`: counted from the first result.
    First(u32, u32),
    /// `-a:-b`: counted from the last result (`-1` is the last).
    Last(u32, u32),
}

impl PartialRange {
    /// The positions this range selects in a list of `len` results, in the list's
    /// order; empty when the whole range lies beyond the list (the response then says
    /// `NIL`).
    pub fn window(self, len: usize) -> std::ops::Range<usize> {
        let (a, b, from_last) = match self {
            PartialRange::First(a, b) => (a, b, false),
            PartialRange::Last(a, b) => (a, b, true),
        };
        // A u32 fits a usize on every target Portico builds for; the parser never
        // gives 0, and a 0 made in code counts as 1.
        let low = (a.min(b) as usize).max(1);
        let high = a.max(b) as usize;
        if from_last {
            len.saturating_sub(high)..len.saturating_sub(low - 1)
        } else {
            (low - 1).min(len)..high.min(len)
        }
    }
}

/// As written on the wire, in a command and in the ESEARCH response that echoes it.
impl fmt::Display for PartialRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartialRange::First(a, b) => write!(f, "{a}:{b}"),
            PartialRange::Last(a, b) => write!(f, "-{a}:-{b}"),
        }
    }
}

/// RFC 5465 §3.1 `NOTIFY SET [STATUS] event-group…`, as the client wrote it; the
/// session checks the rules between groups and events ([`crate::notify`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifySet {
    /// `STATUS`: a STATUS response for every watched mailbox before the tagged OK.
    pub status: bool,
    pub groups: Vec<EventGroup>,
}

/// One `(filter-mailboxes events)`; no events means `NONE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventGroup {
    pub filter: MailboxFilter,
    pub events: Vec<NotifyEvent>,
}

/// RFC 5465 §6: which mailboxes a group is about. Names are as sent (modified UTF-7,
/// or UTF-8 once enabled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxFilter {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<Vec<u8>>),
    Mailboxes(Vec<Vec<u8>>),
}

/// RFC 5465 §5 event names; others are kept to be refused with `[BADEVENT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyEvent {
    /// With the FETCH items to send for each new message of the selected mailbox.
    MessageNew(Option<FetchItems>),
    MessageExpunge,
    FlagChange,
    AnnotationChange,
    MailboxName,
    SubscriptionChange,
    MailboxMetadataChange,
    ServerMetadataChange,
    Other(String),
}

/// RFC 5256 §3 sort-key, with RFC 5957's DISPLAYFROM and DISPLAYTO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// One sort-criterion: a key, ascending unless `reverse`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

/// RFC 5256 §3 thread-alg: the algorithms Portico implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
    /// draft-ietf-morg-inthread §4, as Dovecot implements it: REFERENCES without the
    /// subject steps, threads in the order of their latest messages.
    Refs,
}

/// The text part of a section-spec (RFC 9051 §6.4.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SectionText {
    Header,
    /// Field names as the client wrote them.
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

/// `BODY[1.2.HEADER]`: part numbers then an optional text specifier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

/// `<origin.count>` of a partial fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Partial {
    pub origin: u32,
    pub count: u32,
}

/// One FETCH data item (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FetchAttr {
    Envelope,
    Flags,
    InternalDate,
    Rfc822Size,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    Uid,
    /// `BODY` without a section: the non-extensible BODYSTRUCTURE.
    Body,
    BodyStructure,
    ModSeq,
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<Partial>,
    },
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<Partial>,
    },
    BinarySize {
        part: Vec<u32>,
    },
    /// RFC 8474 OBJECTID: the message's content id, the same for its copies.
    EmailId,
    /// RFC 8474 OBJECTID: the thread id; `NIL`, since threads are not kept.
    ThreadId,
    /// RFC 8514: when the message was saved into its folder; `NIL` when not known.
    SaveDate,
    /// RFC 8970 PREVIEW, or the draft forms Dovecot still answers. The `LAZY` modifier
    /// (§3.2) lets the server answer `NIL` rather than compute a preview; Portico
    /// always computes it, so `LAZY` changes nothing and is not kept.
    Preview(PreviewForm),
}

/// How a preview is asked for, which decides how it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PreviewForm {
    /// `PREVIEW` (RFC 8970 §3): `PREVIEW "text"`.
    Rfc8970,
    /// `PREVIEW (FUZZY)` (draft-ietf-extra-imap-fetch-preview before RFC 8970,
    /// capability `PREVIEW=FUZZY`): `PREVIEW (FUZZY "text")`.
    Fuzzy,
    /// `SNIPPET (FUZZY)` (draft-ietf-extra-imap-fetch-snippet, capability
    /// `SNIPPET=FUZZY`): `SNIPPET (FUZZY "text")`.
    Snippet,
}

/// The FETCH item list, with the three macros kept as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchItems {
    /// FLAGS INTERNALDATE RFC822.SIZE ENVELOPE
    All,
    /// FLAGS INTERNALDATE RFC822.SIZE
    Fast,
    /// FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY
    Full,
    List(Vec<FetchAttr>),
}

/// STORE's three forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Add,
    Remove,
    Replace,
}

/// SELECT/EXAMINE (QRESYNC ...) parameters (RFC 7162 §3.2.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QresyncParams {
    pub uidvalidity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
    /// (known sequence numbers, the UIDs they had)
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// What SELECT/EXAMINE ask for beyond the mailbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelectParams {
    pub condstore: bool,
    pub qresync: Option<QresyncParams>,
}

/// A command with its tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub tag: Tag,
    pub body: CommandBody,
}

/// Every command Portico understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    StartTls,
    Login {
        username: Vec<u8>,
        password: Secret,
    },
    /// `initial_response` is the SASL-IR argument as sent (base64 text, `=` for empty);
    /// it carries credentials, so it is a [`Secret`].
    Authenticate {
        mechanism: String,
        initial_response: Option<Secret>,
    },
    Enable {
        capabilities: Vec<String>,
    },
    Select {
        mailbox: Vec<u8>,
        params: SelectParams,
    },
    Examine {
        mailbox: Vec<u8>,
        params: SelectParams,
    },
    Create {
        mailbox: Vec<u8>,
        /// RFC 6154 CREATE-SPECIAL-USE `(USE (\Sent))`.
        special_use: Vec<String>,
    },
    Delete {
        mailbox: Vec<u8>,
    },
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Subscribe {
        mailbox: Vec<u8>,
    },
    Unsubscribe {
        mailbox: Vec<u8>,
    },
    List {
        reference: Vec<u8>,
        /// One pattern, or several in the LIST-EXTENDED `(p1 p2)` form.
        patterns: Vec<Vec<u8>>,
        selection: Vec<ListSelection>,
        returns: Vec<ListReturn>,
        /// The client used LIST-EXTENDED syntax (selection or return options given),
        /// which changes what the response may contain.
        extended: bool,
    },
    Lsub {
        reference: Vec<u8>,
        pattern: Vec<u8>,
    },
    Namespace,
    Status {
        mailbox: Vec<u8>,
        items: Vec<StatusItem>,
    },
    /// RFC 5464: annotations of a mailbox, or of the server (empty name). Entry names
    /// are valid and lower-case.
    GetMetadata {
        mailbox: Vec<u8>,
        max_size: Option<u64>,
        depth: MetadataDepth,
        entries: Vec<String>,
    },
    /// RFC 5464: entries set (`Some`) or removed (`None`), all or none.
    SetMetadata {
        mailbox: Vec<u8>,
        entries: Vec<(String, Option<Vec<u8>>)>,
    },
    /// One message, or several (MULTIAPPEND, RFC 3502), all appended or none; each
    /// given whole or put together by CATENATE (RFC 4469).
    Append {
        mailbox: Vec<u8>,
        messages: Vec<AppendMessage>,
    },
    Idle,
    Check,
    Close,
    Unselect,
    /// RFC 8437: back to the not-authenticated state on the same connection.
    Unauthenticate,
    /// RFC 5267 §4.3.5: stop the live results of the searches with these tags.
    CancelUpdate {
        tags: Vec<String>,
    },
    Expunge,
    UidExpunge {
        set: SequenceSet,
    },
    Search {
        uid: bool,
        charset: Option<String>,
        /// None: plain SEARCH response; Some (possibly empty = ALL): ESEARCH.
        returns: Option<Vec<SearchReturn>>,
        criteria: SearchKey,
    },
    /// RFC 5256 §3 SORT, with ESORT's return options (RFC 5267 §3).
    Sort {
        uid: bool,
        /// None: plain SORT response; Some (possibly empty = ALL): ESEARCH.
        returns: Option<Vec<SearchReturn>>,
        /// Never empty; each key at most once (a repeated key cannot change the order).
        criteria: Vec<SortCriterion>,
        /// Mandatory for SORT, unlike SEARCH; only UTF-8 and US-ASCII are accepted.
        charset: String,
        search: SearchKey,
    },
    /// RFC 5256 §3 THREAD.
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        /// As for [`CommandBody::Sort`].
        charset: String,
        search: SearchKey,
    },
    Fetch {
        uid: bool,
        set: SequenceSet,
        items: FetchItems,
        /// RFC 7162 CHANGEDSINCE modifier.
        changed_since: Option<u64>,
        /// RFC 7162 VANISHED modifier (UID FETCH only).
        vanished: bool,
    },
    Store {
        uid: bool,
        set: SequenceSet,
        mode: StoreMode,
        silent: bool,
        flags: Vec<String>,
        /// RFC 7162 UNCHANGEDSINCE modifier.
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: Vec<u8>,
    },
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: Vec<u8>,
    },
    /// RFC 2971: NIL or a list of field/value pairs.
    Id {
        params: Option<Vec<(String, Option<String>)>>,
    },
    /// RFC 9208 §4.1.1: a quota root's usage and limits.
    GetQuota {
        root: Vec<u8>,
    },
    /// RFC 9208 §4.1.2: a mailbox's quota roots, each with its usage and limits.
    GetQuotaRoot {
        mailbox: Vec<u8>,
    },
    /// RFC 9208 §4.1.3: (resource name upper-cased, limit) pairs; only parsed, to be
    /// refused (limits are the administrator's).
    SetQuota {
        root: Vec<u8>,
        limits: Vec<(String, u64)>,
    },
    /// RFC 5465: `NOTIFY SET …` (`Some`) or `NOTIFY NONE` (`None`).
    Notify(Option<NotifySet>),
    /// RFC 4978: the mechanism as sent (only `DEFLATE` is defined).
    Compress {
        mechanism: String,
    },
}

impl CommandBody {
    /// The command's name as written on the wire, for logs and error texts.
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::Capability => "CAPABILITY",
            CommandBody::Noop => "NOOP",
            CommandBody::Logout => "LOGOUT",
            CommandBody::StartTls => "STARTTLS",
            CommandBody::Login { .. } => "LOGIN",
            CommandBody::Authenticate { .. } => "AUTHENTICATE",
            CommandBody::Enable { .. } => "ENABLE",
            CommandBody::Select { .. } => "SELECT",
            CommandBody::Examine { .. } => "EXAMINE",
            CommandBody::Create { .. } => "CREATE",
            CommandBody::Delete { .. } => "DELETE",
            CommandBody::Rename { .. } => "RENAME",
            CommandBody::Subscribe { .. } => "SUBSCRIBE",
            CommandBody::Unsubscribe { .. } => "UNSUBSCRIBE",
            CommandBody::List { .. } => "LIST",
            CommandBody::Lsub { .. } => "LSUB",
            CommandBody::Namespace => "NAMESPACE",
            CommandBody::Status { .. } => "STATUS",
            CommandBody::Append { .. } => "APPEND",
            CommandBody::GetMetadata { .. } => "GETMETADATA",
            CommandBody::SetMetadata { .. } => "SETMETADATA",
            CommandBody::Idle => "IDLE",
            CommandBody::Check => "CHECK",
            CommandBody::Close => "CLOSE",
            CommandBody::Unselect => "UNSELECT",
            CommandBody::Unauthenticate => "UNAUTHENTICATE",
            CommandBody::CancelUpdate { .. } => "CANCELUPDATE",
            CommandBody::Expunge => "EXPUNGE",
            CommandBody::UidExpunge { .. } => "UID EXPUNGE",
            CommandBody::Search { uid: false, .. } => "SEARCH",
            CommandBody::Search { uid: true, .. } => "UID SEARCH",
            CommandBody::Sort { uid: false, .. } => "SORT",
            CommandBody::Sort { uid: true, .. } => "UID SORT",
            CommandBody::Thread { uid: false, .. } => "THREAD",
            CommandBody::Thread { uid: true, .. } => "UID THREAD",
            CommandBody::Fetch { uid: false, .. } => "FETCH",
            CommandBody::Fetch { uid: true, .. } => "UID FETCH",
            CommandBody::Store { uid: false, .. } => "STORE",
            CommandBody::Store { uid: true, .. } => "UID STORE",
            CommandBody::Copy { uid: false, .. } => "COPY",
            CommandBody::Copy { uid: true, .. } => "UID COPY",
            CommandBody::Move { uid: false, .. } => "MOVE",
            CommandBody::Move { uid: true, .. } => "UID MOVE",
            CommandBody::Id { .. } => "ID",
            CommandBody::GetQuota { .. } => "GETQUOTA",
            CommandBody::GetQuotaRoot { .. } => "GETQUOTAROOT",
            CommandBody::SetQuota { .. } => "SETQUOTA",
            CommandBody::Compress { .. } => "COMPRESS",
            CommandBody::Notify(_) => "NOTIFY",
        }
    }
}
