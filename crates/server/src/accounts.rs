//! Accounts as this node sees them. The replicated directory decides who exists, with
//! which password, protocols and home node; the store of the home node holds the
//! mailbox (folders and mail, under the store's own account number). A backend makes
//! the store's side of an account the first time it is needed, and removes it once
//! the directory has removed the account.

use std::sync::Arc;

use portico_directory::{AccountRecord, AccountV2, Directory, Pop3Deletes, ReadError};
use portico_store::{Account, Pop3DeleteMode, Store, StoreError};

use crate::gate::MailboxGate;

/// A password hash no password matches: the store's copy of an account is never used
/// to sign in (the directory's is).
pub const NO_PASSWORD: &str = "!";

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(transparent)]
    Directory(#[from] ReadError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("this node's copy of the directory is not filled yet")]
    NotReady,
}

/// Where an account's mailbox is.
#[derive(Debug)]
pub enum Located {
    /// On this node: the store's account with the directory's settings.
    Here(Account),
    /// On another node.
    Elsewhere { home: String },
}

pub struct Accounts {
    directory: Arc<dyn Directory>,
    store: Arc<Store>,
    me: String,
    /// Who uses each mailbox homed here; a move closes it.
    gate: Arc<MailboxGate>,
}

impl Accounts {
    pub fn new(directory: Arc<dyn Directory>, store: Arc<Store>, me: &str) -> Accounts {
        Accounts {
            directory,
            store,
            me: me.to_string(),
            gate: Arc::default(),
        }
    }

    /// Sessions and deliveries take a lease here before they use a mailbox homed here.
    pub fn gate(&self) -> &Arc<MailboxGate> {
        &self.gate
    }

    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The directory's record of `address`, or [`AccountsError::NotReady`] while this
    /// node's replica has never been filled (a new node that has not heard from the
    /// leader yet knows of no account, and must not say so).
    pub fn known_record(&self, address: &str) -> Result<Option<AccountRecord>, AccountsError> {
        if !self.directory.is_filled() {
            return Err(AccountsError::NotReady);
        }
        Ok(self.record(address)?)
    }

    /// The directory's record of `address` (trimmed, lower-cased first).
    pub fn record(&self, address: &str) -> Result<Option<AccountRecord>, ReadError> {
        self.directory
            .account(&crate::auth::normalize_address(address))
    }

    /// Where `address`'s mailbox is, or `None` for no such account. Blocking (it may
    /// make the mailbox).
    pub fn locate(&self, address: &str) -> Result<Option<Located>, AccountsError> {
        match self.known_record(address)? {
            Some(record) => Ok(Some(self.locate_record(&record)?)),
            None => Ok(None),
        }
    }

    /// Where the mailbox of the account `record` is. Blocking (it may make the
    /// mailbox).
    pub fn locate_record(&self, record: &AccountRecord) -> Result<Located, StoreError> {
        if record.home() != self.me {
            return Ok(Located::Elsewhere {
                home: record.home().to_string(),
            });
        }
        Ok(Located::Here(self.mailbox_of(&record.fields())?))
    }

    /// The account of `address` if its mailbox is on this node.
    pub fn here(&self, address: &str) -> Result<Option<Account>, AccountsError> {
        Ok(match self.locate(address)? {
            Some(Located::Here(account)) => Some(account),
            _ => None,
        })
    }

    /// The store's side of an account homed here, made if missing. A store account of
    /// the same address made for an earlier account (removed, and the address taken
    /// again before this node removed its mailbox) is removed first: the new account
    /// never sees the old one's mail.
    fn mailbox_of(&self, fields: &AccountV2) -> Result<Account, StoreError> {
        let mut stored = self.store.account_by_address(&fields.address)?;
        if let Some(old) = stored.as_ref().filter(|old| old.created != fields.created) {
            self.store.delete_account(old.id)?;
            tracing::info!(address = %fields.address, "mailbox of an earlier account of this address removed");
            stored = None;
        }
        let stored = match stored {
            Some(stored) => stored,
            None => match self.store.create_account_made_at(
                &fields.address,
                NO_PASSWORD,
                fields.created,
            ) {
                Ok(made) => {
                    tracing::info!(address = %fields.address, "mailbox made");
                    made
                }
                Err(StoreError::AlreadyExists) => self
                    .store
                    .account_by_address(&fields.address)?
                    .ok_or(StoreError::NotFound)?,
                Err(e) => return Err(e),
            },
        };
        Ok(account_with_id(stored.id, fields))
    }

    /// Removes the mailboxes of accounts the directory removed, and returns how many.
    /// (Mailboxes are made when first needed, by [`Accounts::locate`].) Blocking.
    pub fn remove_mailboxes_of_removed_accounts(&self) -> Result<usize, AccountsError> {
        let mut removed_here = 0;
        for removed in self.directory.removed()? {
            if removed.home() != self.me || self.record(removed.address())?.is_some() {
                continue;
            }
            if let Some(stored) = self.store.account_by_address(removed.address())? {
                match self.store.delete_account(stored.id) {
                    Ok(()) => {
                        tracing::info!(address = %removed.address(), "mailbox removed with its account");
                        removed_here += 1;
                    }
                    // Removed meanwhile by the other caller (`user del` and the loop
                    // that keeps the node in step both remove).
                    Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed_here)
    }

    /// The directory records of the store's accounts the directory does not know yet
    /// (a data directory written before the directory existed), homed here.
    pub fn unmigrated(&self) -> Result<Vec<AccountRecord>, AccountsError> {
        let mut records = Vec::new();
        for stored in self.store.accounts()? {
            if self.directory.account(&stored.address)?.is_some() {
                continue;
            }
            records.push(AccountRecord::new(AccountV2 {
                imap_enabled: stored.imap_enabled,
                pop3_enabled: stored.pop3_enabled,
                pop3_deletes: directory_deletes(stored.pop3_delete_mode),
                ..AccountV2::new(
                    &stored.address,
                    &stored.password_hash,
                    &self.me,
                    stored.created,
                )
            }));
        }
        Ok(records)
    }
}

/// The store's number of an account that has no mailbox on this node: stores number
/// their accounts from 1.
pub const NO_MAILBOX_HERE: portico_store::AccountId = portico_store::AccountId(0);

/// An account whose mailbox is on another node, as a session that needs no mailbox
/// (submission) holds it.
pub fn without_mailbox(fields: &AccountV2) -> Account {
    account_with_id(NO_MAILBOX_HERE, fields)
}

/// The session's view of an account: the directory's settings under the store's number.
fn account_with_id(id: portico_store::AccountId, fields: &AccountV2) -> Account {
    Account {
        id,
        address: fields.address.clone(),
        password_hash: fields.password_hash.clone(),
        pop3_enabled: fields.pop3_enabled,
        imap_enabled: fields.imap_enabled,
        pop3_delete_mode: delete_mode(fields.pop3_deletes),
        created: fields.created,
    }
}

/// The store's name for the directory's POP3 delete mode.
pub fn delete_mode(deletes: Pop3Deletes) -> Pop3DeleteMode {
    match deletes {
        Pop3Deletes::Expunge => Pop3DeleteMode::Expunge,
        Pop3Deletes::Hide => Pop3DeleteMode::Hide,
    }
}

/// The directory's name for the store's POP3 delete mode.
pub fn directory_deletes(mode: Pop3DeleteMode) -> Pop3Deletes {
    match mode {
        Pop3DeleteMode::Expunge => Pop3Deletes::Expunge,
        Pop3DeleteMode::Hide => Pop3Deletes::Hide,
    }
}

/// A directory in memory, for tests of what reads and writes it.
#[cfg(test)]
pub mod testing {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use portico_directory::{
        AccountRecord, AccountV2, ChangeOutcome, Committed, Directory, DirectoryChange, Effect,
        MemberStatus, RaftRole, ReadError, WriteFuture,
    };

    #[derive(Default)]
    pub struct MemoryDirectory {
        accounts: Mutex<BTreeMap<String, AccountRecord>>,
        removed: Mutex<BTreeMap<String, AccountRecord>>,
    }

    impl MemoryDirectory {
        /// Adds an account homed on `home` with every protocol on.
        pub fn add(&self, address: &str, password_hash: &str, home: &str) -> AccountV2 {
            let fields = AccountV2::new(address, password_hash, home, 1);
            self.apply(DirectoryChange::AddAccount(AccountRecord::new(
                fields.clone(),
            )));
            fields
        }

        pub fn apply(&self, change: DirectoryChange) -> ChangeOutcome {
            let mut accounts = self.accounts.lock().unwrap();
            let address = change.address().to_string();
            let (outcome, effect) = change.effect(accounts.get(&address));
            match effect {
                Effect::Add(record) => {
                    self.removed.lock().unwrap().remove(&address);
                    accounts.insert(address, record);
                }
                Effect::Replace(record) => {
                    accounts.insert(address, record);
                }
                Effect::Remove => {
                    if let Some(last) = accounts.remove(&address) {
                        self.removed.lock().unwrap().insert(address, last);
                    }
                }
                Effect::Nothing => {}
            }
            outcome
        }
    }

    impl Directory for MemoryDirectory {
        fn account(&self, address: &str) -> Result<Option<AccountRecord>, ReadError> {
            Ok(self.accounts.lock().unwrap().get(address).cloned())
        }

        fn accounts(&self) -> Result<Vec<AccountRecord>, ReadError> {
            Ok(self.accounts.lock().unwrap().values().cloned().collect())
        }

        fn removed(&self) -> Result<Vec<AccountRecord>, ReadError> {
            Ok(self.removed.lock().unwrap().values().cloned().collect())
        }

        fn write(&self, change: DirectoryChange) -> WriteFuture {
            let outcome = self.apply(change);
            let index = self.accounts.lock().unwrap().len() as u64;
            Box::pin(async move { Ok(Committed { outcome, index }) })
        }

        fn is_filled(&self) -> bool {
            true
        }

        fn status(&self) -> MemberStatus {
            MemberStatus {
                role: RaftRole::Leader,
                leader: Some(1),
                term: 1,
                applied: Some(self.accounts.lock().unwrap().len() as u64),
                voters: vec![1],
                learners: Vec::new(),
                matched: BTreeMap::new(),
                millis_since_quorum_ack: Some(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::MemoryDirectory;
    use super::*;
    use portico_directory::DirectoryChange;
    use portico_store::{Flags, INBOX};

    #[test]
    fn a_new_account_of_a_removed_address_never_sees_the_old_mail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &Default::default()).unwrap());
        let directory = Arc::new(MemoryDirectory::default());
        let accounts = Accounts::new(directory.clone(), store.clone(), "here");
        directory.add("ann@example.com", "h", "here");
        let Some(Located::Here(first)) = accounts.locate("ann@example.com").unwrap() else {
            panic!("ann's mailbox is here");
        };
        let inbox = store.mailbox_by_name(first.id, INBOX).unwrap().unwrap();
        store
            .append(
                inbox.id,
                b"Subject: old\r\n\r\nold\r\n",
                &Flags::default(),
                (1, 0),
            )
            .unwrap();
        // Removed and added again before this node looked: a later account.
        directory.apply(DirectoryChange::DeleteAccount {
            address: "ann@example.com".into(),
        });
        let mut again = AccountV2::new("ann@example.com", "h2", "here", 2);
        again.pop3_enabled = false;
        directory.apply(DirectoryChange::AddAccount(AccountRecord::new(again)));
        let Some(Located::Here(second)) = accounts.locate("ann@example.com").unwrap() else {
            panic!("ann's mailbox is here");
        };
        assert_ne!(second.id, first.id);
        assert!(!second.pop3_enabled);
        let inbox = store.mailbox_by_name(second.id, INBOX).unwrap().unwrap();
        assert_eq!(inbox.messages, 0);
        assert_eq!(accounts.remove_mailboxes_of_removed_accounts().unwrap(), 0);
        // Removed for good: its home removes the mailbox.
        directory.apply(DirectoryChange::DeleteAccount {
            address: "ann@example.com".into(),
        });
        assert_eq!(accounts.remove_mailboxes_of_removed_accounts().unwrap(), 1);
        assert!(
            store
                .account_by_address("ann@example.com")
                .unwrap()
                .is_none()
        );
        // Elsewhere is elsewhere.
        directory.add("bob@example.com", "h", "there");
        assert!(matches!(
            accounts.locate("bob@example.com").unwrap(),
            Some(Located::Elsewhere { home }) if home == "there"
        ));
        assert!(
            store
                .account_by_address("bob@example.com")
                .unwrap()
                .is_none()
        );
    }
}
