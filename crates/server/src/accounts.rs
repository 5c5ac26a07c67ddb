//! Accounts as this node sees them. The replicated directory decides who exists, with
//! which password, protocols and home node; the store of the home node holds the
//! mailbox (folders and mail, under the store's own account number). A backend makes
//! the store's side of an account the first time it is needed, and removes it once
//! the directory has removed the account.

use std::sync::Arc;

use portico_directory::{AccountRecord, AccountV1, Directory, Pop3Deletes, ReadError};
use portico_store::{Account, Pop3DeleteMode, Store, StoreError};

/// A password hash no password matches: the store's copy of an account is never used
/// to sign in (the directory's is).
const NO_PASSWORD: &str = "!";

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(transparent)]
    Directory(#[from] ReadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where an account's mailbox is.
#[derive(Debug)]
pub enum Located {
    /// On this node: the store's account with the directory's settings.
    Here(Account),
    /// On another node.
    Elsewhere { home: String },
}

/// What [`Accounts::reconcile`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub mailboxes_made: usize,
    pub mailboxes_removed: usize,
}

pub struct Accounts {
    directory: Arc<dyn Directory>,
    store: Arc<Store>,
    me: String,
}

impl Accounts {
    pub fn new(directory: Arc<dyn Directory>, store: Arc<Store>, me: &str) -> Accounts {
        Accounts {
            directory,
            store,
            me: me.to_string(),
        }
    }

    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The directory's record of `address` (trimmed, lower-cased first).
    pub fn record(&self, address: &str) -> Result<Option<AccountRecord>, ReadError> {
        self.directory
            .account(&crate::auth::normalize_address(address))
    }

    /// Where `address`'s mailbox is, or `None` for no such account. Blocking (it may
    /// make the mailbox).
    pub fn locate(&self, address: &str) -> Result<Option<Located>, AccountsError> {
        let Some(record) = self.record(address)? else {
            return Ok(None);
        };
        if record.home() != self.me {
            return Ok(Some(Located::Elsewhere {
                home: record.home().to_string(),
            }));
        }
        Ok(Some(Located::Here(self.mailbox_of(record.fields())?)))
    }

    /// The account of `address` if its mailbox is on this node.
    pub fn here(&self, address: &str) -> Result<Option<Account>, AccountsError> {
        Ok(match self.locate(address)? {
            Some(Located::Here(account)) => Some(account),
            _ => None,
        })
    }

    /// The store's side of an account homed here, made if missing.
    fn mailbox_of(&self, fields: &AccountV1) -> Result<Account, StoreError> {
        let stored = match self.store.account_by_address(&fields.address)? {
            Some(stored) => stored,
            None => match self.store.create_account(&fields.address, NO_PASSWORD) {
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

    /// Brings the store in step with the directory: a mailbox for every account homed
    /// here, none for an account the directory removed. Blocking.
    pub fn reconcile(&self) -> Result<Reconciled, AccountsError> {
        let mut done = Reconciled::default();
        for record in self.directory.accounts()? {
            if record.home() == self.me
                && self.store.account_by_address(record.address())?.is_none()
            {
                self.mailbox_of(record.fields())?;
                done.mailboxes_made += 1;
            }
        }
        for removed in self.directory.removed()? {
            if removed.home() != self.me || self.record(removed.address())?.is_some() {
                continue;
            }
            if let Some(stored) = self.store.account_by_address(removed.address())? {
                self.store.delete_account(stored.id)?;
                tracing::info!(address = %removed.address(), "mailbox removed with its account");
                done.mailboxes_removed += 1;
            }
        }
        Ok(done)
    }

    /// The directory records of the store's accounts the directory does not know yet
    /// (a data directory written before the directory existed), homed here.
    pub fn unmigrated(&self) -> Result<Vec<AccountRecord>, AccountsError> {
        let mut records = Vec::new();
        for stored in self.store.accounts()? {
            if self.directory.account(&stored.address)?.is_some() {
                continue;
            }
            records.push(AccountRecord::V1(AccountV1 {
                imap_enabled: stored.imap_enabled,
                pop3_enabled: stored.pop3_enabled,
                pop3_deletes: directory_deletes(stored.pop3_delete_mode),
                ..AccountV1::new(
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
pub fn without_mailbox(fields: &AccountV1) -> Account {
    account_with_id(NO_MAILBOX_HERE, fields)
}

/// The session's view of an account: the directory's settings under the store's number.
fn account_with_id(id: portico_store::AccountId, fields: &AccountV1) -> Account {
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
        AccountRecord, AccountV1, ChangeOutcome, Directory, DirectoryChange, MemberStatus,
        RaftRole, ReadError, WriteFuture,
    };

    #[derive(Default)]
    pub struct MemoryDirectory {
        accounts: Mutex<BTreeMap<String, AccountRecord>>,
        removed: Mutex<BTreeMap<String, AccountRecord>>,
    }

    impl MemoryDirectory {
        /// Adds an account homed on `home` with every protocol on.
        pub fn add(&self, address: &str, password_hash: &str, home: &str) -> AccountV1 {
            let fields = AccountV1::new(address, password_hash, home, 1);
            self.apply(DirectoryChange::AddAccount(AccountRecord::V1(
                fields.clone(),
            )));
            fields
        }

        pub fn apply(&self, change: DirectoryChange) -> ChangeOutcome {
            let mut accounts = self.accounts.lock().unwrap();
            match change {
                DirectoryChange::AddAccount(record) => {
                    if accounts.contains_key(record.address()) {
                        return ChangeOutcome::AddressTaken;
                    }
                    self.removed.lock().unwrap().remove(record.address());
                    accounts.insert(record.address().to_string(), record);
                }
                DirectoryChange::UpdateAccount(record) => {
                    if !accounts.contains_key(record.address()) {
                        return ChangeOutcome::NoSuchAccount;
                    }
                    accounts.insert(record.address().to_string(), record);
                }
                DirectoryChange::DeleteAccount { address } => match accounts.remove(&address) {
                    Some(last) => {
                        self.removed.lock().unwrap().insert(address, last);
                    }
                    None => return ChangeOutcome::NoSuchAccount,
                },
            }
            ChangeOutcome::Applied
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
            Box::pin(async move { Ok(outcome) })
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
