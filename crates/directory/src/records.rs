//! What the directory holds and the changes its Raft log carries. Both are enums with a
//! version in their variant, so a later field is a new variant and records written by
//! an older version stay readable. A new variant goes at the end: bincode numbers the
//! variants, and the log keeps changes written by earlier releases.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// One account as the directory keeps it, keyed by its address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountRecord {
    V1(AccountV1),
    /// 2: the storage limit.
    V2(AccountV2),
}

impl AccountRecord {
    /// A record in the newest layout.
    pub fn new(fields: AccountV2) -> AccountRecord {
        AccountRecord::V2(fields)
    }

    pub fn address(&self) -> &str {
        match self {
            AccountRecord::V1(account) => &account.address,
            AccountRecord::V2(account) => &account.address,
        }
    }

    /// The record's fields in the newest layout (older versions are converted here).
    pub fn fields(&self) -> Cow<'_, AccountV2> {
        match self {
            AccountRecord::V1(account) => Cow::Owned(AccountV2::from(account.clone())),
            AccountRecord::V2(account) => Cow::Borrowed(account),
        }
    }

    pub fn home(&self) -> &str {
        match self {
            AccountRecord::V1(account) => &account.home,
            AccountRecord::V2(account) => &account.home,
        }
    }

    /// The most bytes the account's mail may take, all folders together; `None`: no
    /// limit.
    pub fn storage_limit(&self) -> Option<u64> {
        match self {
            AccountRecord::V1(_) => None,
            AccountRecord::V2(account) => account.storage_limit,
        }
    }
}

/// An account as version 1 kept it (before storage limits).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountV1 {
    pub address: String,
    pub password_hash: String,
    pub home: String,
    pub move_epoch: u64,
    pub imap_enabled: bool,
    pub pop3_enabled: bool,
    pub pop3_deletes: Pop3Deletes,
    pub created: i64,
}

/// An account's fields, newest layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountV2 {
    /// Full address, lower-case: the login name.
    pub address: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// The node that holds the mailbox.
    pub home: String,
    /// Bumped by every mailbox move: a backend serves the account only at the epoch its
    /// replica names, so two nodes never serve one mailbox.
    pub move_epoch: u64,
    pub imap_enabled: bool,
    pub pop3_enabled: bool,
    pub pop3_deletes: Pop3Deletes,
    /// Seconds since the Unix epoch.
    pub created: i64,
    /// The most bytes the account's messages may take, all folders together (the sum
    /// of their sizes, `\Deleted` ones included until expunged); `None`: no limit. Every
    /// path that adds mail checks it on the mailbox's home node.
    pub storage_limit: Option<u64>,
}

impl AccountV2 {
    /// A new account: every protocol on, POP3 deletes remove, never moved, no limit.
    pub fn new(address: &str, password_hash: &str, home: &str, created: i64) -> AccountV2 {
        AccountV2 {
            address: address.to_string(),
            password_hash: password_hash.to_string(),
            home: home.to_string(),
            move_epoch: 0,
            imap_enabled: true,
            pop3_enabled: true,
            pop3_deletes: Pop3Deletes::Expunge,
            created,
            storage_limit: None,
        }
    }
}

impl From<AccountV1> for AccountV2 {
    fn from(old: AccountV1) -> AccountV2 {
        AccountV2 {
            address: old.address,
            password_hash: old.password_hash,
            home: old.home,
            move_epoch: old.move_epoch,
            imap_enabled: old.imap_enabled,
            pop3_enabled: old.pop3_enabled,
            pop3_deletes: old.pop3_deletes,
            created: old.created,
            storage_limit: None,
        }
    }
}

/// What POP3 DELE does to a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pop3Deletes {
    /// Removes it.
    #[default]
    Expunge,
    /// Hides it from POP3 and keeps it for IMAP.
    Hide,
}

/// A change to the directory, as the Raft log carries it. Each is checked against the
/// state it is applied to, so two nodes adding one address at once get one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirectoryChange {
    /// Adds an account whose address is not taken.
    AddAccount(AccountRecord),
    /// Replaces the whole record of an existing account (a migrated account over the
    /// placeholder made before it arrived). Changes of one setting use the variants
    /// below, so that two made at once do not undo each other.
    UpdateAccount(AccountRecord),
    DeleteAccount {
        address: String,
    },
    /// Changes an account's password hash, and nothing else.
    SetPassword {
        address: String,
        password_hash: String,
    },
    /// Changes the protocols an account may use and its POP3 delete mode; `None`
    /// leaves a setting as it is.
    SetAccess {
        address: String,
        imap_enabled: Option<bool>,
        pop3_enabled: Option<bool>,
        pop3_deletes: Option<Pop3Deletes>,
    },
    /// Points an account at another node (bumping its move epoch), mail not copied.
    Rehome {
        address: String,
        home: String,
    },
    /// Moves an account's mailbox from `from` to `to` (bumping its move epoch), only if
    /// its record still names `from` at `move_epoch`: the mailbox was copied from there,
    /// and a change made meanwhile must not be undone.
    Move {
        address: String,
        from: String,
        move_epoch: u64,
        to: String,
    },
    /// Sets an account's storage limit in bytes (`None`: no limit), and nothing else.
    SetStorageLimit {
        address: String,
        limit: Option<u64>,
    },
}

/// What a change does to the record kept under its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A new account: kept, and any removal record of its address dropped.
    Add(AccountRecord),
    /// The account's record becomes this one.
    Replace(AccountRecord),
    /// The account goes; its last record is kept as the removal record.
    Remove,
    /// Nothing changes.
    Nothing,
}

impl DirectoryChange {
    /// The address whose record the change is about.
    pub fn address(&self) -> &str {
        match self {
            DirectoryChange::AddAccount(record) | DirectoryChange::UpdateAccount(record) => {
                record.address()
            }
            DirectoryChange::DeleteAccount { address }
            | DirectoryChange::SetPassword { address, .. }
            | DirectoryChange::SetAccess { address, .. }
            | DirectoryChange::Rehome { address, .. }
            | DirectoryChange::Move { address, .. }
            | DirectoryChange::SetStorageLimit { address, .. } => address,
        }
    }

    /// What the change does given the current record of its address: the one rule
    /// every replica applies.
    pub fn effect(&self, current: Option<&AccountRecord>) -> (ChangeOutcome, Effect) {
        // A changed record is written in the newest layout.
        let changed = |edit: &dyn Fn(&mut AccountV2)| match current {
            Some(record) => {
                let mut fields = record.fields().into_owned();
                edit(&mut fields);
                (
                    ChangeOutcome::Applied,
                    Effect::Replace(AccountRecord::new(fields)),
                )
            }
            None => (ChangeOutcome::NoSuchAccount, Effect::Nothing),
        };
        match self {
            DirectoryChange::AddAccount(record) => match current {
                Some(_) => (ChangeOutcome::AddressTaken, Effect::Nothing),
                None => (ChangeOutcome::Applied, Effect::Add(record.clone())),
            },
            DirectoryChange::UpdateAccount(record) => changed(&|fields| {
                *fields = record.fields().into_owned();
            }),
            DirectoryChange::SetPassword { password_hash, .. } => changed(&|fields| {
                fields.password_hash = password_hash.clone();
            }),
            DirectoryChange::SetAccess {
                imap_enabled,
                pop3_enabled,
                pop3_deletes,
                ..
            } => changed(&|fields| {
                fields.imap_enabled = imap_enabled.unwrap_or(fields.imap_enabled);
                fields.pop3_enabled = pop3_enabled.unwrap_or(fields.pop3_enabled);
                fields.pop3_deletes = pop3_deletes.unwrap_or(fields.pop3_deletes);
            }),
            DirectoryChange::SetStorageLimit { limit, .. } => changed(&|fields| {
                fields.storage_limit = *limit;
            }),
            DirectoryChange::Rehome { home, .. } => changed(&|fields| {
                fields.home = home.clone();
                fields.move_epoch += 1;
            }),
            DirectoryChange::Move {
                from,
                move_epoch,
                to,
                ..
            } => match current {
                Some(record)
                    if record.home() != from || record.fields().move_epoch != *move_epoch =>
                {
                    (ChangeOutcome::Stale, Effect::Nothing)
                }
                _ => changed(&|fields| {
                    fields.home = to.clone();
                    fields.move_epoch += 1;
                }),
            },
            DirectoryChange::DeleteAccount { .. } => match current {
                Some(_) => (ChangeOutcome::Applied, Effect::Remove),
                None => (ChangeOutcome::NoSuchAccount, Effect::Nothing),
            },
        }
    }
}

/// What applying a [`DirectoryChange`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeOutcome {
    Applied,
    AddressTaken,
    NoSuchAccount,
    /// The record is not the one the change was made for (a move from a home or epoch
    /// it no longer has).
    Stale,
}
