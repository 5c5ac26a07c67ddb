//! The [`Store`]: every operation on accounts, folders and messages.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::commit::GroupCommit;
use crate::error::{Result, StoreError};
use crate::keys;
use crate::types::*;
use portico_mime::MessageSummary;

/// Bodies are cut into values of at most this size, well below sled's blob threshold
/// (values over ~128 KiB go to blob files that sled never fsyncs).
pub const BODY_CHUNK_SIZE: usize = 32 * 1024;
/// Separator between the levels of a folder name.
pub const HIERARCHY_SEPARATOR: char = '/';
/// Longest folder name accepted, in bytes.
pub const MAX_MAILBOX_NAME_LEN: usize = 1024;
/// Expunged UIDs remembered per folder for QRESYNC before the oldest half is forgotten.
pub const EXPUNGE_HISTORY: u32 = 10_000;
/// The one folder every account has and cannot lose.
pub const INBOX: &str = "INBOX";

/// Tuning of the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// sled's page cache, in bytes (its default of 1 GB is far more than a node needs).
    pub cache_capacity: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity: 64 * 1024 * 1024,
        }
    }
}

/// A node's mailbox database. Cheap to share behind an `Arc`; every method blocks on
/// disk I/O, so async callers run it on a blocking pool.
pub struct Store {
    db: sled::Db,
    db_file: File,
    path: PathBuf,
    /// Serialises read-modify-write sequences (counters, UIDNEXT, refcounts). Held only
    /// while a batch is built and applied, never across the sync.
    writer: Mutex<()>,
    commit: GroupCommit,
}

/// A batch being built under the writer lock, with the counters and body reference
/// counts it has already changed (the database does not show them until it is applied).
#[derive(Default)]
pub(crate) struct Txn {
    pub(crate) batch: sled::Batch,
    counters: HashMap<&'static str, u64>,
    refs: HashMap<u64, u32>,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Stores lines ending in a bare LF with CRLF, as IMAP and POP3 clients expect; every
/// other byte is kept as delivered.
pub fn normalize_line_endings(bytes: &[u8]) -> Cow<'_, [u8]> {
    let bare_lf = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'));
    if !bare_lf {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    Cow::Owned(out)
}

/// Checks a folder name and returns its canonical form (`INBOX` in upper case).
pub fn validate_mailbox_name(name: &str) -> Result<Cow<'_, str>> {
    if name.is_empty() {
        return Err(StoreError::InvalidName("empty folder name"));
    }
    if name.len() > MAX_MAILBOX_NAME_LEN {
        return Err(StoreError::InvalidName("folder name too long"));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::InvalidName("control character in folder name"));
    }
    if name.split(HIERARCHY_SEPARATOR).any(str::is_empty) {
        return Err(StoreError::InvalidName("empty level in folder name"));
    }
    if name.eq_ignore_ascii_case(INBOX) {
        return Ok(Cow::Borrowed(INBOX));
    }
    Ok(Cow::Borrowed(name))
}

impl Store {
    /// Opens (or creates) the database in `dir`. Fails with [`StoreError::Locked`] when
    /// another process has it open.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(dir)?;
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity)
            // We sync explicitly on every acknowledged write (group commit); sled's own
            // timer would only add fsyncs.
            .flush_every_ms(None);
        // A store this process just closed may hold its lock a moment longer while
        // sled's background threads let go; another process's lock stays.
        let mut attempts = 0;
        let db = loop {
            match config.open().map_err(StoreError::from) {
                Err(StoreError::Locked) if attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => break other?,
            }
        };
        let db_file = File::open(dir.join("db"))?;
        // The files sled just created must survive a power cut too.
        File::open(dir)?.sync_all()?;
        Ok(Store {
            db,
            db_file,
            path: dir.to_path_buf(),
            writer: Mutex::new(()),
            commit: GroupCommit::new(),
        })
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a batch atomically and returns once it is durable.
    pub(crate) fn commit(&self, txn: Txn, guard: MutexGuard<'_, ()>) -> Result<()> {
        self.db.apply_batch(txn.batch)?;
        let ticket = self.commit.ticket();
        drop(guard);
        self.commit.wait_durable(ticket, &self.db, &self.db_file)
    }

    /// How many flush + `fdatasync` rounds the store has done since it was opened; with
    /// concurrent writers this grows slower than the number of writes (group commit).
    pub fn syncs(&self) -> u64 {
        self.commit.syncs()
    }

    /// Makes everything written so far durable (used at shutdown).
    pub fn sync(&self) -> Result<()> {
        let ticket = self.commit.ticket();
        self.commit.wait_durable(ticket, &self.db, &self.db_file)
    }

    pub(crate) fn read<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.db.get(key)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn next_counter(
        &self,
        txn: &mut Txn,
        name: &'static str,
        floor: u64,
    ) -> Result<u64> {
        let key = keys::counter(name);
        let last = match txn.counters.get(name) {
            Some(last) => *last,
            None => match self.db.get(&key)? {
                Some(bytes) => u64::from_be_bytes(
                    bytes
                        .as_ref()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt(format!("counter {name}")))?,
                ),
                None => 0,
            },
        };
        let next = (last + 1).max(floor);
        txn.counters.insert(name, next);
        txn.batch.insert(key, &next.to_be_bytes());
        Ok(next)
    }

    // ----- accounts -----

    /// Creates an account with INBOX and the default special-use folders.
    pub fn create_account(&self, address: &str, password_hash: &str) -> Result<Account> {
        let address = address.trim().to_ascii_lowercase();
        if address.is_empty() || address.len() > 320 || address.chars().any(char::is_control) {
            return Err(StoreError::InvalidName("invalid address"));
        }
        let guard = self.lock_writer();
        if self.db.get(keys::address(&address))?.is_some() {
            return Err(StoreError::AlreadyExists);
        }
        let mut txn = Txn::default();
        let id = AccountId(self.next_counter(&mut txn, "account", 1)?);
        let account = Account {
            id,
            address: address.clone(),
            password_hash: password_hash.to_string(),
            pop3_enabled: true,
            imap_enabled: true,
            pop3_delete_mode: Pop3DeleteMode::Expunge,
            created: now_secs(),
        };
        txn.batch
            .insert(keys::address(&address), &id.0.to_be_bytes());
        txn.batch.insert(keys::account(id), encode(&account)?);
        let mut folders: Vec<(&str, Option<SpecialUse>)> = vec![(INBOX, None)];
        folders.extend(
            DEFAULT_FOLDERS
                .iter()
                .map(|(name, usage)| (*name, Some(*usage))),
        );
        for (name, special_use) in folders {
            let mailbox = self.new_mailbox_record(&mut txn, id, name, special_use)?;
            txn.batch
                .insert(keys::mailbox_name(id, name), &mailbox.id.0.to_be_bytes());
            txn.batch
                .insert(keys::mailbox(mailbox.id), encode(&mailbox)?);
        }
        self.commit(txn, guard)?;
        Ok(account)
    }

    /// Builds a new folder record with fresh ids. UIDVALIDITY follows the clock where it
    /// can, so a folder recreated after a database restore still gets a new value.
    fn new_mailbox_record(
        &self,
        txn: &mut Txn,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<Mailbox> {
        let id = MailboxId(self.next_counter(txn, "mailbox", 1)?);
        let uidvalidity = self.next_counter(txn, "uidvalidity", now_secs().max(1) as u64)?;
        Ok(Mailbox {
            id,
            account,
            name: name.to_string(),
            uidvalidity: Uidvalidity(u32::try_from(uidvalidity).unwrap_or(u32::MAX)),
            uidnext: Uid(1),
            highest_modseq: ModSeq(1),
            special_use,
            subscribed: true,
            messages: 0,
            size: 0,
            expunged_kept: 0,
            vanished_floor: ModSeq(0),
        })
    }

    pub fn account_by_address(&self, address: &str) -> Result<Option<Account>> {
        let address = address.trim().to_ascii_lowercase();
        match self.db.get(keys::address(&address))? {
            Some(id) => {
                let id: [u8; 8] = id
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("address index".into()))?;
                self.account(AccountId(u64::from_be_bytes(id))).map(Some)
            }
            None => Ok(None),
        }
    }

    pub fn account(&self, id: AccountId) -> Result<Account> {
        self.read(&keys::account(id))?.ok_or(StoreError::NotFound)
    }

    /// Every account, in creation order.
    pub fn accounts(&self) -> Result<Vec<Account>> {
        self.db
            .scan_prefix([keys::ACCOUNT])
            .map(|entry| decode(&entry?.1))
            .collect()
    }

    /// Replaces an account's settings and password hash (its address cannot change).
    pub fn update_account(&self, account: &Account) -> Result<()> {
        let guard = self.lock_writer();
        let current = self.account(account.id)?;
        if current.address != account.address {
            return Err(StoreError::NotAllowed("an account's address cannot change"));
        }
        let mut txn = Txn::default();
        txn.batch
            .insert(keys::account(account.id), encode(account)?);
        self.commit(txn, guard)
    }

    /// Deletes an account with every folder and message it has.
    pub fn delete_account(&self, id: AccountId) -> Result<()> {
        let guard = self.lock_writer();
        let account = self.account(id)?;
        let mut txn = Txn::default();
        for mailbox in self.mailboxes(id)? {
            self.remove_mailbox_contents(&mut txn, mailbox.id)?;
            txn.batch.remove(keys::mailbox(mailbox.id));
            txn.batch.remove(keys::mailbox_name(id, &mailbox.name));
        }
        txn.batch.remove(keys::address(&account.address));
        txn.batch.remove(keys::account(id));
        self.commit(txn, guard)
    }

    // ----- folders -----

    /// The account's folders, ordered by name.
    pub fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>> {
        let mut out = Vec::new();
        for entry in self.db.scan_prefix(keys::mailbox_names(account)) {
            let (_, id) = entry?;
            let id: [u8; 8] = id
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("mailbox index".into()))?;
            out.push(self.mailbox(MailboxId(u64::from_be_bytes(id)))?);
        }
        Ok(out)
    }

    pub fn mailbox(&self, id: MailboxId) -> Result<Mailbox> {
        self.read(&keys::mailbox(id))?.ok_or(StoreError::NotFound)
    }

    pub fn mailbox_by_name(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
        let name = validate_mailbox_name(name)?;
        match self.db.get(keys::mailbox_name(account, &name))? {
            Some(id) => {
                let id: [u8; 8] = id
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("mailbox index".into()))?;
                self.mailbox(MailboxId(u64::from_be_bytes(id))).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Creates a folder. A recreated name gets a new UIDVALIDITY (RFC 9051 §2.3.1.1).
    pub fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<Mailbox> {
        let name = validate_mailbox_name(name)?;
        let guard = self.lock_writer();
        self.account(account)?;
        if self.db.get(keys::mailbox_name(account, &name))?.is_some() {
            return Err(StoreError::AlreadyExists);
        }
        let mut txn = Txn::default();
        let mailbox = self.new_mailbox_record(&mut txn, account, &name, special_use)?;
        txn.batch.insert(
            keys::mailbox_name(account, &name),
            &mailbox.id.0.to_be_bytes(),
        );
        txn.batch
            .insert(keys::mailbox(mailbox.id), encode(&mailbox)?);
        self.commit(txn, guard)?;
        Ok(mailbox)
    }

    /// Deletes one folder and its messages (not its children: that is the protocol's
    /// decision). INBOX cannot be deleted.
    pub fn delete_mailbox(&self, id: MailboxId) -> Result<()> {
        let guard = self.lock_writer();
        let mailbox = self.mailbox(id)?;
        if mailbox.name == INBOX {
            return Err(StoreError::NotAllowed("INBOX cannot be deleted"));
        }
        let mut txn = Txn::default();
        self.remove_mailbox_contents(&mut txn, id)?;
        txn.batch.remove(keys::mailbox(id));
        txn.batch
            .remove(keys::mailbox_name(mailbox.account, &mailbox.name));
        self.commit(txn, guard)
    }

    /// Renames a folder and every folder below it, in one transaction.
    pub fn rename_mailbox(&self, id: MailboxId, new_name: &str) -> Result<Mailbox> {
        let new_name = validate_mailbox_name(new_name)?;
        let guard = self.lock_writer();
        let mailbox = self.mailbox(id)?;
        if mailbox.name == INBOX || new_name == INBOX {
            return Err(StoreError::NotAllowed("INBOX cannot be renamed this way"));
        }
        let prefix = format!("{}{HIERARCHY_SEPARATOR}", mailbox.name);
        let mut moves = Vec::new();
        for folder in self.mailboxes(mailbox.account)? {
            if folder.id == id {
                moves.push((folder, new_name.to_string()));
            } else if let Some(rest) = folder.name.strip_prefix(&prefix) {
                let renamed = format!("{new_name}{HIERARCHY_SEPARATOR}{rest}");
                validate_mailbox_name(&renamed)?;
                moves.push((folder, renamed));
            }
        }
        let mut txn = Txn::default();
        for (_, target) in &moves {
            if self
                .db
                .get(keys::mailbox_name(mailbox.account, target))?
                .is_some()
            {
                return Err(StoreError::AlreadyExists);
            }
        }
        for (folder, _) in &moves {
            txn.batch
                .remove(keys::mailbox_name(folder.account, &folder.name));
        }
        let mut renamed_self = None;
        for (mut folder, target) in moves {
            folder.name = target;
            txn.batch.insert(
                keys::mailbox_name(folder.account, &folder.name),
                &folder.id.0.to_be_bytes(),
            );
            txn.batch.insert(keys::mailbox(folder.id), encode(&folder)?);
            if folder.id == id {
                renamed_self = Some(folder);
            }
        }
        self.commit(txn, guard)?;
        renamed_self.ok_or(StoreError::NotFound)
    }

    pub fn set_subscribed(&self, id: MailboxId, subscribed: bool) -> Result<()> {
        let guard = self.lock_writer();
        let mut mailbox = self.mailbox(id)?;
        mailbox.subscribed = subscribed;
        let mut txn = Txn::default();
        txn.batch.insert(keys::mailbox(id), encode(&mailbox)?);
        self.commit(txn, guard)
    }

    /// Queues removal of every message of a folder (with their bodies when no other
    /// message shares them) and of its expunge history.
    fn remove_mailbox_contents(&self, txn: &mut Txn, id: MailboxId) -> Result<()> {
        for entry in self.db.scan_prefix(keys::messages(id)) {
            let (key, value) = entry?;
            let meta: MessageMeta = decode(&value)?;
            self.release_body(txn, meta.body)?;
            txn.batch.remove(key);
        }
        for entry in self.db.scan_prefix(keys::expunged_all(id)) {
            txn.batch.remove(entry?.0);
        }
        for entry in self.db.scan_prefix(keys::summaries(id)) {
            txn.batch.remove(entry?.0);
        }
        Ok(())
    }

    /// Drops one reference to a body; deletes its chunks with the last one.
    pub(crate) fn release_body(&self, txn: &mut Txn, body: BodyRef) -> Result<()> {
        let count = match txn.refs.get(&body.id) {
            Some(count) => *count,
            None => self.body_refs(body.id)?,
        };
        let remaining = count.saturating_sub(1);
        txn.refs.insert(body.id, remaining);
        if remaining == 0 {
            for index in 0..body.chunks {
                txn.batch.remove(keys::body_chunk(body.id, index));
            }
            txn.batch.remove(keys::body_refs(body.id));
        } else {
            txn.batch
                .insert(keys::body_refs(body.id), &remaining.to_be_bytes());
        }
        Ok(())
    }

    fn body_refs(&self, body: u64) -> Result<u32> {
        match self.db.get(keys::body_refs(body))? {
            Some(bytes) => {
                Ok(u32::from_be_bytes(bytes.as_ref().try_into().map_err(
                    |_| StoreError::Corrupt("body refcount".into()),
                )?))
            }
            None => Ok(1),
        }
    }

    // ----- messages -----

    /// Appends a message; returns once it is durable. Bare LF line ends become CRLF.
    pub fn append(
        &self,
        mailbox: MailboxId,
        message: &[u8],
        flags: &Flags,
        internal_date: (i64, i32),
    ) -> Result<Appended> {
        let message = normalize_line_endings(message);
        // Parsed once here, outside the writer lock, so FETCH never parses again.
        let summary = encode(&portico_mime::summarize(&message))?;
        let guard = self.lock_writer();
        let mut folder = self.mailbox(mailbox)?;
        let mut txn = Txn::default();
        let body = self.write_body(&mut txn, &message)?;
        let (body_id, chunks) = (body.id, body.chunks);
        let uid = folder.uidnext;
        let modseq = ModSeq(folder.highest_modseq.0 + 1);
        let meta = MessageMeta {
            uid,
            flags: flags.clone(),
            internal_date: internal_date.0,
            internal_date_offset: internal_date.1,
            size: message.len() as u64,
            modseq,
            body: BodyRef {
                id: body_id,
                chunks,
            },
        };
        folder.uidnext = Uid(uid
            .0
            .checked_add(1)
            .ok_or(StoreError::NotAllowed("the folder has used up its UIDs"))?);
        folder.highest_modseq = modseq;
        folder.messages += 1;
        folder.size += meta.size;
        txn.batch
            .insert(keys::message(mailbox, uid), encode(&meta)?);
        txn.batch.insert(keys::summary(mailbox, uid), summary);
        txn.batch.insert(keys::mailbox(mailbox), encode(&folder)?);
        self.commit(txn, guard)?;
        Ok(Appended {
            uid,
            uidvalidity: folder.uidvalidity,
            modseq,
            size: meta.size,
        })
    }

    /// Metadata of every message in a folder, in UID order.
    pub fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageMeta>> {
        self.db
            .scan_prefix(keys::messages(mailbox))
            .map(|entry| decode(&entry?.1))
            .collect()
    }

    pub fn message(&self, mailbox: MailboxId, uid: Uid) -> Result<MessageMeta> {
        self.read(&keys::message(mailbox, uid))?
            .ok_or(StoreError::NotFound)
    }

    /// The stored bytes of a message.
    pub fn message_bytes(&self, mailbox: MailboxId, uid: Uid) -> Result<Vec<u8>> {
        let meta = self.message(mailbox, uid)?;
        self.read_body(meta.body, meta.size)
    }

    /// Queues a body's chunks in a transaction; returns where they are.
    pub(crate) fn write_body(&self, txn: &mut Txn, bytes: &[u8]) -> Result<BodyRef> {
        let id = self.next_counter(txn, "body", 1)?;
        let mut chunks = 0u32;
        for chunk in bytes.chunks(BODY_CHUNK_SIZE) {
            txn.batch.insert(keys::body_chunk(id, chunks), chunk);
            chunks += 1;
        }
        Ok(BodyRef { id, chunks })
    }

    pub(crate) fn read_body(&self, body: BodyRef, size: u64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(size as usize);
        for index in 0..body.chunks {
            let chunk = self
                .db
                .get(keys::body_chunk(body.id, index))?
                .ok_or_else(|| StoreError::Corrupt(format!("missing body chunk {index}")))?;
            out.extend_from_slice(&chunk);
        }
        if out.len() as u64 != size {
            return Err(StoreError::Corrupt("body size mismatch".into()));
        }
        Ok(out)
    }

    /// The MIME summary made when the message was stored.
    pub fn message_summary(&self, mailbox: MailboxId, uid: Uid) -> Result<MessageSummary> {
        match self.read(&keys::summary(mailbox, uid))? {
            Some(summary) => Ok(summary),
            // A message stored before summaries existed: make one now.
            None => Ok(portico_mime::summarize(&self.message_bytes(mailbox, uid)?)),
        }
    }

    /// The message's header block (up to and including the blank line), reading only
    /// the body chunks it spans: header-only FETCHes never read whole messages.
    pub fn message_header(&self, mailbox: MailboxId, uid: Uid) -> Result<Vec<u8>> {
        let meta = self.message(mailbox, uid)?;
        let header_len = self
            .message_summary(mailbox, uid)?
            .header_len()
            .min(meta.size as usize);
        let mut out = Vec::with_capacity(header_len);
        let mut index = 0;
        while out.len() < header_len && index < meta.body.chunks {
            let chunk = self
                .db
                .get(keys::body_chunk(meta.body.id, index))?
                .ok_or_else(|| StoreError::Corrupt(format!("missing body chunk {index}")))?;
            out.extend_from_slice(&chunk);
            index += 1;
        }
        out.truncate(header_len);
        Ok(out)
    }

    /// Changes flags of the listed messages in one transaction; UIDs that no longer
    /// exist are skipped. Returns the messages whose flags actually changed.
    pub fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
    ) -> Result<Vec<FlagsChanged>> {
        let guard = self.lock_writer();
        let mut folder = self.mailbox(mailbox)?;
        let mut txn = Txn::default();
        let mut changed = Vec::new();
        for &uid in uids {
            let Some(mut meta) = self.read::<MessageMeta>(&keys::message(mailbox, uid))? else {
                continue;
            };
            let before = meta.flags.clone();
            match op {
                FlagOp::Add => flags.names().for_each(|name| meta.flags.insert(name)),
                FlagOp::Remove => flags.names().for_each(|name| meta.flags.remove(name)),
                FlagOp::Replace => meta.flags = flags.clone(),
            }
            if meta.flags == before {
                continue;
            }
            folder.highest_modseq = ModSeq(folder.highest_modseq.0 + 1);
            meta.modseq = folder.highest_modseq;
            txn.batch
                .insert(keys::message(mailbox, uid), encode(&meta)?);
            changed.push(FlagsChanged {
                uid,
                flags: meta.flags,
                modseq: meta.modseq,
            });
        }
        if changed.is_empty() {
            return Ok(changed);
        }
        txn.batch.insert(keys::mailbox(mailbox), encode(&folder)?);
        self.commit(txn, guard)?;
        Ok(changed)
    }

    /// Removes the listed messages in one transaction, remembering each expunged UID
    /// with its MODSEQ. Returns the UIDs actually removed, ascending.
    pub fn expunge(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Uid>> {
        let guard = self.lock_writer();
        let mut folder = self.mailbox(mailbox)?;
        let mut txn = Txn::default();
        let removed = self.expunge_into(&mut txn, &mut folder, uids)?;
        if removed.is_empty() {
            return Ok(removed);
        }
        txn.batch.insert(keys::mailbox(mailbox), encode(&folder)?);
        self.commit(txn, guard)?;
        Ok(removed)
    }

    fn expunge_into(&self, txn: &mut Txn, folder: &mut Mailbox, uids: &[Uid]) -> Result<Vec<Uid>> {
        let mut removed = Vec::new();
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        for uid in sorted {
            let Some(meta) = self.read::<MessageMeta>(&keys::message(folder.id, uid))? else {
                continue;
            };
            folder.highest_modseq = ModSeq(folder.highest_modseq.0 + 1);
            self.release_body(txn, meta.body)?;
            txn.batch.remove(keys::message(folder.id, uid));
            txn.batch.remove(keys::summary(folder.id, uid));
            txn.batch.insert(
                keys::expunged(folder.id, uid),
                &folder.highest_modseq.0.to_be_bytes(),
            );
            folder.messages = folder.messages.saturating_sub(1);
            folder.size = folder.size.saturating_sub(meta.size);
            removed.push(uid);
        }
        folder.expunged_kept = folder.expunged_kept.saturating_add(removed.len() as u32);
        if folder.expunged_kept > EXPUNGE_HISTORY {
            self.forget_old_expunges(txn, folder)?;
        }
        Ok(removed)
    }

    /// Drops the oldest half of a folder's expunge history (lowest UIDs first) and raises
    /// its vanished floor past what was dropped.
    fn forget_old_expunges(&self, txn: &mut Txn, folder: &mut Mailbox) -> Result<()> {
        let mut forgotten = 0;
        for entry in self.db.scan_prefix(keys::expunged_all(folder.id)) {
            if forgotten >= EXPUNGE_HISTORY / 2 {
                break;
            }
            let (key, value) = entry?;
            let modseq: [u8; 8] = value
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("expunged modseq".into()))?;
            folder.vanished_floor = folder
                .vanished_floor
                .max(ModSeq(u64::from_be_bytes(modseq)));
            txn.batch.remove(key);
            forgotten += 1;
        }
        folder.expunged_kept = folder.expunged_kept.saturating_sub(forgotten);
        Ok(())
    }

    /// Copies messages into another folder in one transaction; the copies share the
    /// originals' bodies. UIDs that no longer exist are skipped.
    pub fn copy(&self, from: MailboxId, uids: &[Uid], to: MailboxId) -> Result<Copied> {
        let guard = self.lock_writer();
        let mut dest = self.mailbox(to)?;
        let mut txn = Txn::default();
        let pairs = self.copy_into(&mut txn, from, uids, &mut dest)?;
        if !pairs.is_empty() {
            txn.batch.insert(keys::mailbox(to), encode(&dest)?);
            self.commit(txn, guard)?;
        }
        Ok(Copied {
            uidvalidity: dest.uidvalidity,
            pairs,
        })
    }

    /// Moves messages (RFC 6851): copies and expunge of the originals in one
    /// transaction, so a crash leaves them in exactly one of the two folders.
    pub fn move_messages(&self, from: MailboxId, uids: &[Uid], to: MailboxId) -> Result<Copied> {
        if from == to {
            return Err(StoreError::NotAllowed(
                "source and destination are the same folder",
            ));
        }
        let guard = self.lock_writer();
        let mut source = self.mailbox(from)?;
        let mut dest = self.mailbox(to)?;
        let mut txn = Txn::default();
        let pairs = self.copy_into(&mut txn, from, uids, &mut dest)?;
        if !pairs.is_empty() {
            let moved: Vec<Uid> = pairs.iter().map(|(src, _)| *src).collect();
            self.expunge_into(&mut txn, &mut source, &moved)?;
            txn.batch.insert(keys::mailbox(to), encode(&dest)?);
            txn.batch.insert(keys::mailbox(from), encode(&source)?);
            self.commit(txn, guard)?;
        }
        Ok(Copied {
            uidvalidity: dest.uidvalidity,
            pairs,
        })
    }

    fn copy_into(
        &self,
        txn: &mut Txn,
        from: MailboxId,
        uids: &[Uid],
        dest: &mut Mailbox,
    ) -> Result<Vec<(Uid, Uid)>> {
        let mut pairs = Vec::new();
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        for uid in sorted {
            let Some(mut meta) = self.read::<MessageMeta>(&keys::message(from, uid))? else {
                continue;
            };
            let refs = match txn.refs.get(&meta.body.id) {
                Some(count) => *count,
                None => self.body_refs(meta.body.id)?,
            };
            txn.refs.insert(meta.body.id, refs + 1);
            txn.batch
                .insert(keys::body_refs(meta.body.id), &(refs + 1).to_be_bytes());
            let new_uid = dest.uidnext;
            dest.uidnext = Uid(new_uid
                .0
                .checked_add(1)
                .ok_or(StoreError::NotAllowed("the folder has used up its UIDs"))?);
            dest.highest_modseq = ModSeq(dest.highest_modseq.0 + 1);
            dest.messages += 1;
            dest.size += meta.size;
            if let Some(summary) = self.db.get(keys::summary(from, uid))? {
                txn.batch.insert(keys::summary(dest.id, new_uid), summary);
            }
            meta.uid = new_uid;
            meta.modseq = dest.highest_modseq;
            txn.batch
                .insert(keys::message(dest.id, new_uid), encode(&meta)?);
            pairs.push((uid, new_uid));
        }
        Ok(pairs)
    }

    /// UIDs expunged from a folder after `since`, with the MODSEQ of their removal; `None`
    /// when `since` is older than the history kept (the caller must then assume any UID
    /// it knows of that is not in the folder is gone).
    pub fn expunged_since(
        &self,
        mailbox: MailboxId,
        since: ModSeq,
    ) -> Result<Option<Vec<(Uid, ModSeq)>>> {
        if since < self.mailbox(mailbox)?.vanished_floor {
            return Ok(None);
        }
        let mut out = Vec::new();
        for entry in self.db.scan_prefix(keys::expunged_all(mailbox)) {
            let (key, value) = entry?;
            let uid = keys::uid_of_message_key(&key)
                .ok_or_else(|| StoreError::Corrupt("expunged key".into()))?;
            let modseq: [u8; 8] = value
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("expunged modseq".into()))?;
            let modseq = ModSeq(u64::from_be_bytes(modseq));
            if modseq > since {
                out.push((uid, modseq));
            }
        }
        Ok(Some(out))
    }
}
