//! Records the store keeps, and the RFC-named newtypes they are made of.

use serde::{Deserialize, Serialize};

/// Internal number of an account; never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountId(pub u64);

/// Internal number of a folder; never reused, so a recreated folder is a new folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MailboxId(pub u64);

/// IMAP unique identifier of a message within one folder (RFC 9051 §2.3.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Uid(pub u32);

/// IMAP UIDVALIDITY of a folder: changes only when the folder is recreated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Uidvalidity(pub u32);

/// CONDSTORE modification sequence (RFC 7162).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModSeq(pub u64);

/// What POP3 DELE + QUIT does to a message for this account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pop3DeleteMode {
    /// Remove the message (the default, as every POP3 client expects).
    #[default]
    Expunge,
    /// Keep it for IMAP, flagged with [`POP3_DELETED_KEYWORD`], and hide it from POP3.
    Hide,
}

/// Keyword set on messages POP3 deleted in [`Pop3DeleteMode::Hide`].
pub const POP3_DELETED_KEYWORD: &str = "$POP3Deleted";

/// A user's account: who they are, how they sign in, what they may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    /// Full address, lower-case: the login name.
    pub address: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    pub pop3_enabled: bool,
    pub imap_enabled: bool,
    pub pop3_delete_mode: Pop3DeleteMode,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

/// RFC 6154 special-use attribute of a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    /// Every use the store keeps.
    pub const ALL: [SpecialUse; 5] = [
        SpecialUse::Sent,
        SpecialUse::Drafts,
        SpecialUse::Trash,
        SpecialUse::Junk,
        SpecialUse::Archive,
    ];

    /// The use an attribute names (`\\Sent`, any case).
    pub fn from_attribute(attribute: &str) -> Option<SpecialUse> {
        SpecialUse::ALL
            .into_iter()
            .find(|usage| usage.attribute().eq_ignore_ascii_case(attribute))
    }

    /// The attribute as written on the wire.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }
}

/// Folders every new account gets besides INBOX, named as Exchange names them.
pub const DEFAULT_FOLDERS: [(&str, SpecialUse); 5] = [
    ("Sent", SpecialUse::Sent),
    ("Drafts", SpecialUse::Drafts),
    ("Deleted Items", SpecialUse::Trash),
    ("Junk Email", SpecialUse::Junk),
    ("Archive", SpecialUse::Archive),
];

/// A folder and its IMAP counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub id: MailboxId,
    pub account: AccountId,
    /// Full name, levels separated by [`crate::HIERARCHY_SEPARATOR`].
    pub name: String,
    pub uidvalidity: Uidvalidity,
    /// The UID the next message will get; only ever grows.
    pub uidnext: Uid,
    pub highest_modseq: ModSeq,
    pub special_use: Option<SpecialUse>,
    /// Number of messages and their total size, kept so STATUS and POP3 STAT need no scan.
    pub messages: u32,
    pub size: u64,
    /// Expunged UIDs remembered for QRESYNC, and the MODSEQ at or below which some
    /// expunges have been forgotten to keep that history bounded.
    pub expunged_kept: u32,
    pub vanished_floor: ModSeq,
}

/// Messages of a folder without `\Seen` and with `\Deleted`, kept up to date with every
/// change so STATUS UNSEEN/DELETED need no scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderCounts {
    pub unseen: u32,
    pub deleted: u32,
}

impl FolderCounts {
    /// What one message with `flags` adds.
    pub fn of(flags: &Flags) -> FolderCounts {
        FolderCounts {
            unseen: u32::from(!flags.has(SystemFlag::Seen)),
            deleted: u32::from(flags.has(SystemFlag::Deleted)),
        }
    }
}

/// The five system flags of RFC 9051 §2.3.2, as bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SystemFlag {
    Seen = 1,
    Answered = 2,
    Flagged = 4,
    Deleted = 8,
    Draft = 16,
}

impl SystemFlag {
    pub const ALL: [SystemFlag; 5] = [
        SystemFlag::Seen,
        SystemFlag::Answered,
        SystemFlag::Flagged,
        SystemFlag::Deleted,
        SystemFlag::Draft,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SystemFlag::Seen => "\\Seen",
            SystemFlag::Answered => "\\Answered",
            SystemFlag::Flagged => "\\Flagged",
            SystemFlag::Deleted => "\\Deleted",
            SystemFlag::Draft => "\\Draft",
        }
    }

    pub fn from_name(name: &str) -> Option<SystemFlag> {
        SystemFlag::ALL
            .into_iter()
            .find(|flag| flag.name().eq_ignore_ascii_case(name))
    }
}

/// A message's flags: system flags as bits, keywords by name (compared without case).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    system: u8,
    keywords: Vec<String>,
}

impl Flags {
    /// Flags from their wire names; system flags are recognised without case.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Flags {
        let mut flags = Flags::default();
        for name in names {
            flags.insert(name);
        }
        flags
    }

    pub fn contains(&self, name: &str) -> bool {
        match SystemFlag::from_name(name) {
            Some(flag) => self.system & flag as u8 != 0,
            None => self.keywords.iter().any(|k| k.eq_ignore_ascii_case(name)),
        }
    }

    pub fn has(&self, flag: SystemFlag) -> bool {
        self.system & flag as u8 != 0
    }

    pub fn insert(&mut self, name: &str) {
        match SystemFlag::from_name(name) {
            Some(flag) => self.system |= flag as u8,
            None if !self.contains(name) => self.keywords.push(name.to_string()),
            None => {}
        }
    }

    pub fn remove(&mut self, name: &str) {
        match SystemFlag::from_name(name) {
            Some(flag) => self.system &= !(flag as u8),
            None => self.keywords.retain(|k| !k.eq_ignore_ascii_case(name)),
        }
    }

    /// Wire names, system flags first in RFC order, then keywords as first set.
    /// The keywords alone (flags without a backslash).
    pub fn keywords(&self) -> impl Iterator<Item = &str> {
        self.keywords.iter().map(String::as_str)
    }

    pub fn names<'a>(&'a self) -> impl Iterator<Item = &'a str> + 'a {
        SystemFlag::ALL
            .into_iter()
            .filter(|flag| self.has(*flag))
            .map(|flag| -> &'a str { flag.name() })
            .chain(self.keywords.iter().map(String::as_str))
    }

    pub fn is_empty(&self) -> bool {
        self.system == 0 && self.keywords.is_empty()
    }
}

/// How a flag update combines with the flags a message has (IMAP STORE's three forms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
}

/// Which body a message has; the body log location is kept under the id (several
/// messages can share one body after COPY).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyRef {
    pub id: u64,
    /// How many in-database chunks the body had in stores older than the body log;
    /// kept for the record layout, never read.
    pub legacy_chunks: u32,
}

/// Everything about a message except its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    pub uid: Uid,
    pub flags: Flags,
    /// Seconds since the Unix epoch, with the sender's zone offset in seconds.
    pub internal_date: i64,
    pub internal_date_offset: i32,
    /// Exact octets of the stored message.
    pub size: u64,
    pub modseq: ModSeq,
    pub body: BodyRef,
    /// When the message was saved into this folder (RFC 8514 save date), in seconds
    /// since the Unix epoch by the store's clock: set by every append, delivery, COPY
    /// and MOVE for the copy it makes, kept by flag changes and by a mailbox move to
    /// another node. `None` for messages stored by releases before it was kept, whose
    /// save date is not known (IMAP answers `SAVEDATE NIL` for them).
    pub save_date: Option<i64>,
}

/// What an append hands back to the caller (IMAP APPENDUID needs both numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub uid: Uid,
    pub uidvalidity: Uidvalidity,
    pub modseq: ModSeq,
    pub size: u64,
}

/// What a copy or move made: the destination's UIDVALIDITY and (source, new) UID pairs
/// in ascending source order (IMAP COPYUID needs both).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copied {
    pub uidvalidity: Uidvalidity,
    pub pairs: Vec<(Uid, Uid)>,
}

/// A flag change that was applied, for pushing to other sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagsChanged {
    pub uid: Uid,
    pub flags: Flags,
    pub modseq: ModSeq,
}
