//! What the session asks of its host (store work, sign-in) and what it is told back.
//!
//! The session never touches the store: it names folders by their decoded UTF-8 name
//! or by the [`FolderId`] its host gave it at SELECT, and messages by UID.

use std::sync::Arc;

use portico_mime::MessageSummary;

pub use crate::catenate::{CatenateJob, CatenateOutcome};
use crate::command::{AppendItem, DateTime, StoreMode};
pub use crate::scan::{ScanJob, ScanOutcome};

/// Identifies one outstanding request; replies carry it back.
pub type RequestId = u64;

/// A SEARCH needle to look up in the full-text index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TextQuery {
    pub key: TextKey,
    pub needle: String,
}

/// Where a needle is looked for: the SEARCH keys the full-text index can narrow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextKey {
    /// The decoded body text.
    Body,
    /// Header or body text.
    Text,
    /// The decoded values of one of the header fields SEARCH has keys for.
    From,
    To,
    Cc,
    Bcc,
    Subject,
}

/// What the full-text index knows of one needle in one folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextCandidates {
    /// Messages with a smaller UID were indexed; the index knows nothing of the rest.
    pub indexed_below: u32,
    /// Indexed messages that may contain the needle, ascending; the others cannot.
    pub uids: Vec<u32>,
}

impl TextCandidates {
    /// Whether the message with `uid` cannot contain the needle.
    pub fn excludes(&self, uid: u32) -> bool {
        uid < self.indexed_below && self.uids.binary_search(&uid).is_err()
    }
}

/// The host's handle on a selected folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FolderId(pub u64);

/// A credential on its way to the check; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How much of each message a FETCH or SEARCH needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Detail {
    /// UID, flags, dates, size, MODSEQ.
    Meta,
    /// Plus the decoded header fields SEARCH compares ([`MessageData::fields`]); a host
    /// that has none for a message gives its header block instead.
    Fields,
    /// Plus the header lines kept at append for listing folders (`raw` holds them: a
    /// header block of only [`portico_mime::KEPT_HEADER_FIELDS`]); a host that has none
    /// for a message gives its whole header block instead. Only FETCH of
    /// `HEADER.FIELDS` naming kept fields asks for it.
    KeptHeader,
    /// Plus the raw header block, without the MIME summary (SEARCH on header fields:
    /// the cheapest way to a big folder's headers).
    HeaderText,
    /// Plus the MIME summary (ENVELOPE, BODYSTRUCTURE).
    Summary,
    /// Plus the raw header block (never the body).
    Header,
    /// Plus the whole raw message.
    Full,
}

impl Detail {
    /// What two needs together ask for: header fields or the header block, with the
    /// MIME summary, make [`Detail::Header`], which has both (a summary comes without
    /// the decoded fields); otherwise the larger.
    pub fn join(self, other: Detail) -> Detail {
        match (self, other) {
            (Detail::Fields | Detail::KeptHeader | Detail::HeaderText, Detail::Summary)
            | (Detail::Summary, Detail::Fields | Detail::KeptHeader | Detail::HeaderText) => {
                Detail::Header
            }
            _ => self.max(other),
        }
    }
}

/// One request to the host.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Login {
        username: String,
        password: Password,
    },
    /// Every folder of the signed-in user.
    ListFolders,
    Status {
        folder: String,
        /// Whether RECENT was asked for: counting it reads every recent message's key,
        /// so a STATUS without it does not pay for it.
        recent: bool,
        /// Whether DELETED-STORAGE was asked for (it reads the \Deleted messages'
        /// sizes).
        deleted_storage: bool,
    },
    /// The signed-in account's storage usage and limit (RFC 9208 GETQUOTA and
    /// GETQUOTAROOT, whose `folder` must exist).
    Quota {
        folder: Option<String>,
    },
    /// Open a folder and start receiving its [`FolderEvent`]s.
    /// `vanished_since`: QRESYNC's cached MODSEQ; the reply then says which UIDs were
    /// expunged after it.
    Select {
        folder: String,
        read_only: bool,
        vanished_since: Option<u64>,
    },
    /// UIDs expunged after `since` (UID FETCH … VANISHED, RFC 7162 §3.2.6).
    Vanished {
        folder: FolderId,
        since: u64,
    },
    /// Stop receiving events of the folder selected before.
    Deselect {
        folder: FolderId,
    },
    /// NOTIFY (RFC 5465): whether the host tells the session of changes anywhere in the
    /// account ([`AccountEvent`]); with `statuses`, every folder's STATUS now
    /// ([`Reply::Watched`]), else the reply is an empty list.
    Notify {
        watch: bool,
        statuses: bool,
    },
    /// The session signed out with UNAUTHENTICATE (RFC 8437): forget the account and
    /// give back its place under the per-user limit. Nothing is answered.
    SignOut,
    /// CREATE: `parents`, the superior levels, are made where missing (RFC 9051
    /// §6.3.4); `special_use` is one of [`crate::ImapConfig::special_uses`], as there.
    Create {
        folder: String,
        special_use: Option<String>,
        parents: Vec<String>,
    },
    Delete {
        folder: String,
    },
    /// RENAME of a folder other than INBOX: it and every folder below it take the new
    /// name; `parents` are the new name's superior levels, made where missing (RFC 9051
    /// §6.3.5).
    Rename {
        from: String,
        to: String,
        parents: Vec<String>,
    },
    /// RENAME INBOX (RFC 9051 §6.3.6): a new folder `to` takes INBOX's messages; INBOX
    /// stays, empty.
    RenameInbox {
        to: String,
        parents: Vec<String>,
    },
    Subscribe {
        folder: String,
        subscribed: bool,
    },
    /// Every annotation of a folder, or of the server (`""`), by entry name; the host
    /// adds the ones it computes (`/shared/admin`).
    GetMetadata {
        folder: String,
    },
    /// Annotations set or removed, all or none ([`Reply::Done`]).
    SetMetadata {
        folder: String,
        changes: Vec<(String, Option<Vec<u8>>)>,
    },
    /// One message or several (MULTIAPPEND): all appended, or none.
    Append {
        folder: String,
        messages: Vec<AppendItem>,
    },
    /// CATENATE (RFC 4469): build an APPEND's messages from text and stored parts, by
    /// running `job` over the signed-in user's mailboxes ([`Reply::Catenated`]).
    Catenate {
        job: CatenateJob,
    },
    /// Which messages may contain each needle, from the node's full-text index, so a
    /// SEARCH with BODY or TEXT keys reads only those. Answered in the same order; a
    /// `None` (or any failure) means the index cannot tell and every message is read.
    TextIndex {
        folder: FolderId,
        queries: Vec<TextQuery>,
    },
    /// One slice of a FETCH or SEARCH: run `job` over the folder's messages.
    Scan {
        folder: FolderId,
        job: ScanJob,
    },
    /// Change flags; the reply lists the current flags of every message of `uids`
    /// that still exists, and those refused by UNCHANGEDSINCE.
    StoreFlags {
        folder: FolderId,
        uids: Vec<u32>,
        mode: StoreMode,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    },
    /// Remove those of `uids` that have `\Deleted` (all `\Deleted` ones when None).
    Expunge {
        folder: FolderId,
        uids: Option<Vec<u32>>,
    },
    Copy {
        folder: FolderId,
        uids: Vec<u32>,
        destination: String,
        moving: bool,
    },
}

/// Why the host could not do what was asked; each maps to one IMAP response code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No such folder (NO [NONEXISTENT], or [TRYCREATE] for APPEND/COPY/MOVE targets).
    NotFound,
    AlreadyExists,
    /// Refused by a rule (deleting INBOX, invalid name); the text says which.
    NotAllowed(String),
    /// Over a limit of this server (RFC 5530 LIMIT); the text says which.
    Limit(String),
    /// A mailbox may hold no more annotations (RFC 5464 §4.3 METADATA TOOMANY).
    TooManyAnnotations,
    TooBig,
    /// The server's disk is full (or below its free-space floor): try again later.
    NoSpace,
    /// The account's storage limit would be passed (RFC 9208: NO [OVERQUOTA]).
    OverQuota,
    /// A disk or I/O failure that may clear by itself; the text is a log reference.
    Temporary(String),
    /// A message's stored bytes are damaged; the text names the message.
    Damaged(String),
    /// The store failed; the text is a reference the log also has.
    Unavailable(String),
}

/// Why a sign-in failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginFailure {
    BadCredentials,
    /// Right password, IMAP off for this account.
    Disabled,
    Temporary,
    /// The node that holds the mailbox cannot be reached now.
    MailboxUnavailable,
    /// The user already has as many sessions as the server allows.
    TooManyConnections,
    /// Right password, but the mailbox is served at another server, which the client
    /// is to sign in at (a LOGIN-REFERRALS home server referral, RFC 2221 §4.1).
    Referral {
        /// A DNS name or IP address (IPv6 without brackets).
        host: String,
        port: u16,
    },
}

/// A folder as LIST sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderInfo {
    pub name: String,
    /// `\Sent`, `\Drafts`, … (RFC 6154).
    pub special_use: Option<&'static str>,
}

/// What LIST and LSUB read: the account's folders and its subscribed names, which
/// need not be folders (RFC 9051 §6.3.7, RFC 5258 §3.4 `\NonExistent`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderList {
    pub folders: Vec<FolderInfo>,
    pub subscriptions: Vec<String>,
}

/// STATUS figures of a folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderStatus {
    pub messages: u32,
    pub recent: u32,
    pub uidnext: u32,
    pub uidvalidity: u32,
    pub unseen: u32,
    pub deleted: u32,
    /// Octets of the \Deleted messages (only when asked for).
    pub deleted_storage: u64,
    pub size: u64,
    pub highest_modseq: u64,
    /// MAILBOXID (RFC 8474): the folder's id, kept across RENAME.
    pub mailbox_id: u64,
}

/// The account's storage, in octets: what its messages take in all its folders, and
/// its limit (`None`: none). The session reports them in units of 1024 octets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaUsage {
    pub used: u64,
    pub limit: Option<u64>,
}

/// One message as of SELECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewEntry {
    pub uid: u32,
    pub flags: Vec<String>,
    pub modseq: u64,
}

/// A freshly selected folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectedFolder {
    pub id: FolderId,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    /// Every message's UID, ascending; shared with the host and other sessions until
    /// this one's view changes.
    pub uids: Arc<Vec<u32>>,
    /// Sequence number of the first message without \Seen (`[UNSEEN n]`).
    pub first_unseen: Option<u32>,
    /// With `vanished_since` (QRESYNC): the messages changed after it, ascending UID.
    pub changed: Vec<ViewEntry>,
    /// UIDs that are \Recent for this session (IMAP4rev1).
    pub recent: Vec<u32>,
    /// Keywords in use in the folder, for the FLAGS response.
    pub keywords: Vec<String>,
    /// With `vanished_since`: UIDs expunged after it, or `None` when the host's history
    /// does not reach back that far (every UID not in the folder then counts as gone).
    pub vanished: Option<Vec<u32>>,
}

/// A message as FETCH and SEARCH need it.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageData {
    pub uid: u32,
    pub flags: Vec<String>,
    pub internal_date: DateTime,
    /// RFC 8514 save date: when the message entered this folder; `None` when the host
    /// does not know it (a message stored before save dates were kept).
    pub save_date: Option<DateTime>,
    pub size: u64,
    pub modseq: u64,
    /// EMAILID (RFC 8474): the id of the message's stored content, which its copies
    /// share.
    pub email_id: u64,
    /// With [`Detail::Summary`] and above.
    pub summary: Option<MessageSummary>,
    /// With [`Detail::Fields`], when the host keeps them.
    pub fields: Option<portico_mime::SearchFields>,
    /// The header block with [`Detail::HeaderText`] and [`Detail::Header`], the whole
    /// message with [`Detail::Full`].
    pub raw: Option<Vec<u8>>,
    /// A big message left in the store (`raw` is `None`; the summary is there): FETCH
    /// announces its literals and the host streams them ([`crate::Action::Stream`]).
    pub raw_in_store: bool,
}

/// Result of a STORE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlagsStored {
    /// (uid, flags now, modseq) for every message of the request that exists.
    pub current: Vec<(u32, Vec<String>, u64)>,
    /// UIDs not changed because of UNCHANGEDSINCE (RFC 7162 MODIFIED).
    pub modified: Vec<u32>,
}

/// Result of a COPY or MOVE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copied {
    pub uidvalidity: u32,
    /// (source uid, destination uid), ascending source uid.
    pub pairs: Vec<(u32, u32)>,
}

/// The host's answer to a request.
#[derive(Debug)]
pub enum Reply {
    Login(Result<(), LoginFailure>),
    Folders(Result<FolderList, Fault>),
    Status(Result<FolderStatus, Fault>),
    Selected(Result<SelectedFolder, Fault>),
    Done(Result<(), Fault>),
    /// GETMETADATA's answer: entry names and values, ordered by name.
    Metadata(Result<Vec<(String, Vec<u8>)>, Fault>),
    /// CREATE's answer: the new folder's id (MAILBOXID, RFC 8474 §4.1).
    Created(Result<FolderId, Fault>),
    /// UIDVALIDITY and the new UIDs, in the order of the APPEND's messages.
    Appended(Result<(u32, Vec<u32>), Fault>),
    Catenated(Result<CatenateOutcome, Fault>),
    Scanned(Result<ScanOutcome, Fault>),
    TextIndex(Vec<Option<TextCandidates>>),
    FlagsStored(Result<FlagsStored, Fault>),
    Expunged(Result<Vec<u32>, Fault>),
    Copied(Result<Copied, Fault>),
    /// Answer to [`Request::Vanished`]; `None` as in [`SelectedFolder::vanished`].
    Vanished(Result<Option<Vec<u32>>, Fault>),
    Quota(Result<QuotaUsage, Fault>),
    Watched(Result<Vec<WatchedFolder>, Fault>),
}

/// A folder and its STATUS, for NOTIFY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedFolder {
    pub folder: FolderId,
    pub name: String,
    pub subscribed: bool,
    pub status: FolderStatus,
}

/// A change anywhere in the account, for a session that asked with NOTIFY (RFC 5465
/// §5); the session picks what its NOTIFY SET wants. Changes the session made itself
/// are not told (§5: the client knows them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountEvent {
    /// A folder's messages came or went (`messages`) or only their flags changed.
    Status {
        watched: WatchedFolder,
        messages: bool,
    },
    Created {
        name: String,
        subscribed: bool,
        special_use: Option<String>,
    },
    Deleted {
        name: String,
    },
    Renamed {
        from: String,
        to: String,
        subscribed: bool,
    },
    Subscription {
        name: String,
        subscribed: bool,
        exists: bool,
    },
    /// Annotations changed: of a folder, or the server's (`None`).
    Metadata {
        folder: Option<String>,
        entries: Vec<String>,
    },
    /// The host could not keep up: notifications are off (§5.8).
    Overflow,
}

/// A change to the selected folder made by someone else (another session, a delivery).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FolderEvent {
    Appended {
        folder: FolderId,
        uid: u32,
        flags: Vec<String>,
        modseq: u64,
        /// \Recent for this session (IMAP4rev1: at most one session sees it so).
        recent: bool,
    },
    FlagsChanged {
        folder: FolderId,
        uid: u32,
        flags: Vec<String>,
        modseq: u64,
    },
    Expunged {
        folder: FolderId,
        uids: Vec<u32>,
        modseq: u64,
    },
}
