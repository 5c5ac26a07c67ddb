//! The [`Store`]: every operation on accounts, folders and messages.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::bodylog::{BodyLocation, BodyLog, Recovery, SegmentPin};
use crate::commit::{Arrival, CommitObserver, GroupCommit};
use crate::error::{Result, StoreError};
use crate::keys;
use crate::record::{Record, decode, encode};
use crate::texts::RecentTexts;
use crate::types::*;
use portico_mime::MessageSummary;

/// Separator between the levels of a folder name.
pub const HIERARCHY_SEPARATOR: char = '/';
/// Longest folder name accepted, in bytes.
pub const MAX_MAILBOX_NAME_LEN: usize = 1024;
/// Expunged UIDs remembered per folder for QRESYNC before the oldest half is forgotten.
pub const EXPUNGE_HISTORY: u32 = 10_000;
/// The one folder every account has and cannot lose.
pub const INBOX: &str = "INBOX";
/// [`StoreError::LimitExceeded`] texts.
const TOO_MANY_FOLDERS: &str = "Too many folders";
const FOLDERS_TOO_DEEP: &str = "Folder hierarchy too deep";

/// Levels of a folder name: `a/b/c` has three.
fn folder_depth(name: &str) -> usize {
    name.split(HIERARCHY_SEPARATOR).count()
}

/// Tuning of the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// sled's page cache, in bytes (its default of 1 GB is far more than a node needs).
    pub cache_capacity: u64,
    /// A body log segment is sealed once it reaches this size.
    pub segment_size: u64,
    /// New mail is refused while the file system has less free space than the smaller
    /// of these two (as Postfix's `queue_minfree`), so the disk never fills up under the
    /// metadata database: flags, expunges and deletions still work.
    pub min_free_bytes: u64,
    pub min_free_percent: f64,
    /// How long a sync round waits for writers already on their way to join it (only
    /// when there are some): concurrent deliveries then share one sync.
    pub group_commit_delay: std::time::Duration,
    /// Refuse to open a metadata database that is missing changes the body log shows
    /// were durable (off only for `fsck`, which reports it).
    pub verify_against_body_log: bool,
    /// Bytes of appended messages' decoded text kept for the full-text indexer
    /// ([`Store::take_body_text`]); 0 (no index) keeps none.
    pub body_text_budget: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity: 16 * 1024 * 1024,
            segment_size: 32 * 1024 * 1024,
            min_free_bytes: 256 * 1024 * 1024,
            min_free_percent: 1.0,
            group_commit_delay: std::time::Duration::from_micros(500),
            verify_against_body_log: true,
            body_text_budget: 0,
        }
    }
}

/// Free space below which even metadata changes (flags, expunges) are refused; the
/// free-space floor, when smaller.
const METADATA_RESERVE: u64 = 4 * 1024 * 1024;

/// Messages whose flags one batch of [`Store::store_flags`] changes. A STORE over a
/// 100,000-message folder in one sled batch held ~150 MiB of superseded tree nodes
/// until the batch ended; IMAP promises nothing across the messages of a STORE (a
/// client told nothing after a crash sends it again), so it is applied in parts, and
/// the reply still waits until all of them are durable.
const FLAGS_PER_BATCH: usize = 5_000;

/// What [`Store::header_block`] reads first: one checksummed block of the body log.
const HEADER_PROBE: u64 = crate::bodylog::BLOCK;

/// Where the body log lives inside the store directory.
pub(crate) const BODIES_DIR: &str = "bodies";

/// A message whose body is written to the body log, ready to be appended (durable
/// together with its metadata).
pub struct StagedMessage {
    pub(crate) body: DurableBody,
    pub(crate) summary: Vec<u8>,
    /// [`search_record`]: the decoded fields and the kept header lines.
    pub(crate) search_fields: Vec<u8>,
    /// Announced to the metadata commit, which waits briefly for it to join a round.
    pub(crate) arrival: Arrival,
    /// The name another node gave this copy ([`crate::deliveries`]).
    pub(crate) delivery: Option<String>,
}

impl StagedMessage {
    /// Records the copy under `id` in the commit that stores it.
    pub fn deliver_as(&mut self, id: String) {
        self.delivery = Some(id);
    }
}

/// A body in the body log not yet linked from the metadata (durable once written by
/// `write_body`; for a staged append, once the commit that links it is).
pub(crate) struct DurableBody {
    pub(crate) id: u64,
    pub(crate) location: BodyLocation,
    /// Keeps compaction off the segment until the metadata points at the record.
    _pin: SegmentPin,
}

/// One message of [`Store::append_staged_limited`].
pub struct AppendRequest {
    pub staged: StagedMessage,
    pub flags: Flags,
    pub internal_date: (i64, i32),
    /// The account's storage limit in bytes: the message is refused
    /// ([`StoreError::OverQuota`]) if it would take the account's usage past it.
    pub storage_limit: Option<u64>,
}

/// An append announced early (when an SMTP message or an APPEND literal has been
/// received), so that a sync round starting meanwhile waits for it briefly and commits
/// it together with the others in flight. Cheap to clone; the first staging uses it,
/// and dropping every clone unused withdraws the announcement.
#[derive(Clone)]
pub struct ExpectedAppend(Arc<Mutex<Option<Arrival>>>);

impl ExpectedAppend {
    fn take(&self) -> Option<Arrival> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Identifies a committed metadata change; durable once [`Store::committed`] reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CommitTicket(u64);

/// A node's mailbox database. Cheap to share behind an `Arc`; every method blocks on
/// disk I/O, so async callers run it on a blocking pool.
pub struct Store {
    db: sled::Db,
    db_file: File,
    path: PathBuf,
    pub(crate) bodies: BodyLog,
    /// Next body id to hand out; the persisted `body` counter follows it in every batch
    /// that uses an id, so ids of committed bodies are never handed out again.
    body_ids: AtomicU64,
    /// The newest metadata change applied (its number, persisted as the `commits`
    /// counter in the same batch), and the newest known durable.
    applied_seq: AtomicU64,
    durable_seq: AtomicU64,
    /// The newest commit marker found in the body log at open.
    pub(crate) log_marker: Option<u64>,
    /// Decoded texts of messages just appended, for the full-text indexer.
    recent_texts: RecentTexts,
    options: StoreOptions,
    /// Serialises read-modify-write sequences (counters, UIDNEXT, refcounts). Held only
    /// while a batch is built and applied, never across the sync.
    writer: Mutex<()>,
    commit: Arc<GroupCommit>,
    /// Messages in the outgoing queue: counted at open, then kept by the writes that
    /// add and remove them (under the writer lock).
    pub(crate) queued_messages: AtomicU64,
}

/// What a store has done since it opened, and what waits in it now; for the server's
/// metrics, which read it whenever they are asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Group-commit rounds of the metadata database ([`Store::syncs`]).
    pub commit_rounds: u64,
    /// `fdatasync`/`fsync` calls of the sync rounds ([`Store::sync_calls`]).
    pub sync_calls: u64,
    /// Messages in the outgoing queue, not yet relayed, delivered or bounced.
    pub queued_messages: u64,
}

/// A batch being built under the writer lock, with the counters and body reference
/// counts it has already changed (the database does not show them until it is applied).
#[derive(Default)]
pub(crate) struct Txn {
    pub(crate) batch: sled::Batch,
    counters: HashMap<&'static str, u64>,
    refs: HashMap<u64, u32>,
    /// Per folder: unseen and \Deleted messages the batch adds (+) and takes (-).
    counts: HashMap<MailboxId, (i64, i64)>,
}

impl Txn {
    /// Counts a message with `flags` into (`sign` 1) or out of (-1) a folder's
    /// [`FolderCounts`]; every write or removal of a message's metadata goes with one.
    pub(crate) fn count_message(&mut self, mailbox: MailboxId, flags: &Flags, sign: i64) {
        let one = FolderCounts::of(flags);
        let delta = self.counts.entry(mailbox).or_default();
        delta.0 += sign * i64::from(one.unseen);
        delta.1 += sign * i64::from(one.deleted);
    }
}

/// A message's `H` record: the length of its [`portico_mime::SearchFields`] (u32, little
/// endian), the fields (a record, see `record.rs`), then the lines of its
/// [`portico_mime::KEPT_HEADER_FIELDS`] as delivered. One record, not two: with a
/// second record per message, SEARCH on header fields of a freshly filled
/// 100,000-message folder was measured slower (sled caches pages, not records).
fn search_record(message: &[u8]) -> Result<Vec<u8>> {
    let fields = encode(&portico_mime::search_fields(message))?;
    let kept = portico_mime::kept_header_lines(message);
    let len = u32::try_from(fields.len())
        .map_err(|_| StoreError::Corrupt("search fields over 4 GiB".into()))?;
    let mut record = Vec::with_capacity(4 + fields.len() + kept.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&fields);
    record.extend_from_slice(&kept);
    Ok(record)
}

/// The two parts of an `H` record ([`search_record`]): the encoded fields, the kept
/// header lines.
fn search_record_parts(record: &[u8]) -> Result<(&[u8], &[u8])> {
    let damaged = || StoreError::Corrupt("search fields record".into());
    let len = record.get(..4).ok_or_else(damaged)?;
    let len = u32::from_le_bytes(len.try_into().map_err(|_| damaged())?) as usize;
    let end = len
        .checked_add(4)
        .filter(|&end| end <= record.len())
        .ok_or_else(damaged)?;
    Ok((&record[4..end], &record[end..]))
}

fn kept_lines_of(record: &[u8]) -> Result<&[u8]> {
    search_record_parts(record).map(|(_, kept)| kept)
}

fn search_fields_of(record: &[u8]) -> Result<portico_mime::SearchFields> {
    decode(search_record_parts(record)?.0)
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
    /// another process has it open, and with [`StoreError::Corrupt`] (never a panic)
    /// when the metadata database cannot be read.
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
            // sled panics on some kinds of damage instead of returning an error.
            let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()))
                .map_err(|_| {
                    StoreError::Corrupt(format!(
                        "the metadata database in {} is damaged and cannot be opened",
                        dir.display()
                    ))
                })?
                .map_err(StoreError::from);
            match opened {
                Err(StoreError::Locked) if attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => break other?,
            }
        };
        let db_file = File::open(dir.join("db"))?;
        let (bodies, recovery) = BodyLog::open(
            &dir.join(BODIES_DIR),
            options.segment_size,
            options.group_commit_delay,
        )?;
        // The files sled just created, and the store directory itself, must survive a
        // power cut too.
        File::open(dir)?.sync_all()?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)?.sync_all()?;
        }
        let store = Store {
            db,
            db_file,
            path: dir.to_path_buf(),
            bodies,
            body_ids: AtomicU64::new(0),
            applied_seq: AtomicU64::new(0),
            durable_seq: AtomicU64::new(0),
            log_marker: recovery.marker,
            recent_texts: RecentTexts::new(options.body_text_budget),
            options: options.clone(),
            writer: Mutex::new(()),
            commit: GroupCommit::new(options.group_commit_delay),
            queued_messages: AtomicU64::new(0),
        };
        let commits = store.counter_value("commits")?;
        if let Some(marker) = recovery.marker.filter(|m| *m > commits)
            && options.verify_against_body_log
        {
            return Err(StoreError::Corrupt(format!(
                "the metadata database in {} has lost acknowledged changes: the body log \
                 shows change {marker} was durable, the database knows only {commits}; \
                 restore it from a backup (`portico fsck` reports what is missing)",
                dir.display()
            )));
        }
        store.applied_seq.store(commits, Ordering::Relaxed);
        store.durable_seq.store(commits, Ordering::Relaxed);
        // Before anything new is written past the recovered end.
        store.drop_undurable_appends(&recovery)?;
        store.migrate_legacy_bodies()?;
        store.split_subscriptions()?;
        let next = store.counter_value("body")? + 1;
        store.body_ids.store(next, Ordering::Relaxed);
        let queued = store.count_queued()?;
        store.queued_messages.store(queued, Ordering::Relaxed);
        Ok(store)
    }

    /// Moves bodies that older stores kept inside sled (`B` chunk keys) into the body
    /// log, one body per durable batch.
    fn migrate_legacy_bodies(&self) -> Result<()> {
        loop {
            let Some(first) = self.db.scan_prefix([keys::LEGACY_BODY]).next() else {
                return Ok(());
            };
            let (key, _) = first?;
            let id = keys::body_id_of_key(&key)
                .ok_or_else(|| StoreError::Corrupt("legacy body key".into()))?;
            let mut prefix = vec![keys::LEGACY_BODY];
            prefix.extend_from_slice(&id.to_be_bytes());
            let mut bytes = Vec::new();
            let mut txn = Txn::default();
            for entry in self.db.scan_prefix(&prefix) {
                let (key, chunk) = entry?;
                bytes.extend_from_slice(&chunk);
                txn.batch.remove(key);
            }
            let written = self.bodies.write(id, &bytes)?;
            self.bodies.wait_durable(written.ticket)?;
            txn.batch
                .insert(keys::body_location(id), encode(&written.location)?);
            let guard = self.lock_writer();
            self.commit(txn, guard)?;
        }
    }

    /// An append's metadata can reach the disk before its body's segment is synced (sled
    /// writes a full buffer whenever it likes); after a power cut such a message points
    /// past the recovered end of the body log. It was never acknowledged (that waits for
    /// the segment sync), so it is taken out again, its UID staying used.
    fn drop_undurable_appends(&self, recovery: &Recovery) -> Result<()> {
        let mut lost = HashSet::new();
        for entry in self.db.scan_prefix([keys::BODY_LOCATION]) {
            let (key, value) = entry?;
            let location: BodyLocation = decode(&value)?;
            let beyond = location.segment > recovery.newest_segment
                || (location.segment == recovery.newest_segment
                    && location.offset + location.record_len() > recovery.end);
            if beyond && let Some(id) = keys::body_id_of_key(&key) {
                lost.insert(id);
            }
        }
        if lost.is_empty() {
            return Ok(());
        }
        let mut victims: HashMap<MailboxId, Vec<Uid>> = HashMap::new();
        for entry in self.db.scan_prefix([keys::MESSAGE]) {
            let (key, value) = entry?;
            let meta: MessageMeta = decode(&value)?;
            if lost.contains(&meta.body.id)
                && let (Some(mailbox), Some(uid)) = (
                    key.get(1..9)
                        .and_then(|b| b.try_into().ok())
                        .map(|b| MailboxId(u64::from_be_bytes(b))),
                    keys::uid_of_message_key(&key),
                )
            {
                victims.entry(mailbox).or_default().push(uid);
            }
        }
        for (mailbox, uids) in victims {
            tracing::warn!(
                mailbox = mailbox.0,
                count = uids.len(),
                "taking out messages whose bodies never became durable (not acknowledged)"
            );
            self.expunge(mailbox, &uids)?;
        }
        Ok(())
    }

    /// The number of the newest change the metadata database has.
    pub(crate) fn committed_changes(&self) -> Result<u64> {
        self.counter_value("commits")
    }

    /// The highest body id any committed change has used.
    pub(crate) fn last_body_id(&self) -> Result<u64> {
        self.counter_value("body")
    }

    pub(crate) fn counter_value(&self, name: &str) -> Result<u64> {
        match self.db.get(keys::counter(name))? {
            Some(bytes) => {
                Ok(u64::from_be_bytes(bytes.as_ref().try_into().map_err(
                    |_| StoreError::Corrupt(format!("counter {name}")),
                )?))
            }
            None => Ok(0),
        }
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
        let ticket = self.apply(txn, guard)?;
        self.wait_committed(ticket)
    }

    /// Applies a batch atomically (visible at once, durable later: see
    /// [`Store::wait_committed`]).
    pub(crate) fn apply(&self, txn: Txn, guard: MutexGuard<'_, ()>) -> Result<CommitTicket> {
        self.check_metadata_reserve()?;
        self.apply_within_reserve(txn, guard)
    }

    /// [`Store::apply`] for the later parts of a change whose caller checked the
    /// metadata reserve before the first: a change split in parts does not stop halfway
    /// for want of space.
    fn apply_within_reserve(
        &self,
        mut txn: Txn,
        guard: MutexGuard<'_, ()>,
    ) -> Result<CommitTicket> {
        self.number_change(&mut txn)?;
        self.fold_counts(&mut txn)?;
        self.db.apply_batch(txn.batch)?;
        let ticket = CommitTicket(self.commit.ticket());
        drop(guard);
        Ok(ticket)
    }

    /// [`Store::apply`] for writers that announced themselves: one ticket covers the
    /// batch, and their announcements are withdrawn as it is taken.
    pub(crate) fn apply_arrived(
        &self,
        txn: Txn,
        guard: MutexGuard<'_, ()>,
        mut arrivals: Vec<Arrival>,
    ) -> Result<CommitTicket> {
        let mut txn = txn;
        self.check_metadata_reserve()?;
        self.number_change(&mut txn)?;
        self.fold_counts(&mut txn)?;
        self.db.apply_batch(txn.batch)?;
        let writes = arrivals.len() as u64;
        let ticket = match arrivals.pop() {
            Some(last) => last.ticket_covering(writes),
            None => self.commit.ticket(),
        };
        drop(arrivals);
        drop(guard);
        Ok(CommitTicket(ticket))
    }

    /// Gives a batch the next change number (under the writer lock).
    fn number_change(&self, txn: &mut Txn) -> Result<()> {
        let seq = self.next_counter(txn, "commits", 1)?;
        self.applied_seq.fetch_max(seq, Ordering::Relaxed);
        Ok(())
    }

    /// Returns once the change behind `ticket` (and every one before it) is durable:
    /// sled's `flush` (which writes its log and calls `sync_file_range`, not durable
    /// against a power cut), then `fdatasync` of its `db` file.
    pub fn wait_committed(&self, ticket: CommitTicket) -> Result<()> {
        self.commit.wait_durable(ticket.0, || -> Result<()> {
            // Everything applied by now is in this round.
            let seq = self.applied_seq.load(Ordering::Relaxed);
            // The body log records which changes the database has made durable, so a
            // database that later loses them (damage) is caught at open.
            self.bodies
                .mark_if_dirty(self.durable_seq.load(Ordering::Relaxed))?;
            // Bodies first: metadata is never made durable on purpose before what it
            // points at (see `drop_undurable_appends` for sled writing early).
            self.bodies.sync()?;
            self.db.flush()?;
            self.db_file.sync_data()?;
            self.durable_seq.fetch_max(seq, Ordering::Relaxed);
            Ok(())
        })
    }

    /// The newest change known durable: every ticket up to it is.
    pub fn committed(&self) -> CommitTicket {
        CommitTicket(self.commit.synced())
    }

    /// How many flush + `fdatasync` rounds of the metadata database the store has done
    /// since it was opened; with concurrent writers this grows slower than the number
    /// of writes (group commit).
    pub fn syncs(&self) -> u64 {
        self.commit.syncs()
    }

    /// How many `fdatasync` rounds of the body log the store has done since it opened.
    pub fn body_syncs(&self) -> u64 {
        self.bodies.syncs()
    }

    /// Every `fdatasync`/`fsync` call the store has made since it opened during its
    /// sync rounds (the `db` file, body log segments and directory), for benchmarks:
    /// cheaper to read than an strace of the server, and equal to it (checked by
    /// `scripts/bench-delivery.py --strace`).
    pub fn sync_calls(&self) -> u64 {
        self.syncs() + self.bodies.sync_calls()
    }

    /// Sets the observer told, after each group-commit round of the metadata database,
    /// how many writes (appends and other changes) it made durable: the server's
    /// metrics. One per store; false when one was set before (it stays).
    pub fn observe_commits(&self, observer: impl Fn(u64) + Send + Sync + 'static) -> bool {
        let observer: CommitObserver = Box::new(observer);
        self.commit.observe(observer)
    }

    /// The store's counters now.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commit_rounds: self.syncs(),
            sync_calls: self.sync_calls(),
            queued_messages: self.queued_messages.load(Ordering::Relaxed),
        }
    }

    /// Makes everything written so far durable (used at shutdown).
    pub fn sync(&self) -> Result<()> {
        self.bodies.sync()?;
        self.wait_committed(CommitTicket(self.commit.barrier()))
    }

    /// The free-space floor in bytes, and the space free now.
    fn floor_and_free(&self) -> Option<(u64, u64)> {
        let (free, total) = free_space(&self.path)?;
        let floor = self
            .options
            .min_free_bytes
            .min((total as f64 * self.options.min_free_percent / 100.0) as u64);
        Some((floor, free))
    }

    /// Refuses new mail when free space is below the configured floor.
    pub(crate) fn check_free_space(&self) -> Result<()> {
        match self.floor_and_free() {
            Some((floor, free)) if free < floor => Err(StoreError::NoSpace),
            _ => Ok(()),
        }
    }

    /// Refuses any metadata change when the disk is all but full (something else filled
    /// it past the floor). sled keeps a failed write's error until the database is
    /// reopened, so it must never be the one to find the disk full: refused here, every
    /// change works again as soon as space is freed.
    fn check_metadata_reserve(&self) -> Result<()> {
        match self.floor_and_free() {
            Some((floor, free)) if free < floor.min(METADATA_RESERVE) => Err(StoreError::NoSpace),
            _ => Ok(()),
        }
    }

    pub(crate) fn read<T: Record>(&self, key: &[u8]) -> Result<Option<T>> {
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
        self.create_account_made_at(address, password_hash, now_secs())
    }

    /// [`Store::create_account`] with the account's creation time given: a node that
    /// holds the mailbox of an account of the replicated directory takes the
    /// directory's, which tells this account from an earlier one of the same address.
    pub fn create_account_made_at(
        &self,
        address: &str,
        password_hash: &str,
        created: i64,
    ) -> Result<Account> {
        let mut folders: Vec<(&str, Option<SpecialUse>)> = vec![(INBOX, None)];
        folders.extend(
            DEFAULT_FOLDERS
                .iter()
                .map(|(name, usage)| (*name, Some(*usage))),
        );
        self.new_account(address, password_hash, created, &folders)
    }

    /// An account with `folders` (fresh ones), unless the address has one.
    pub(crate) fn new_account(
        &self,
        address: &str,
        password_hash: &str,
        created: i64,
        folders: &[(&str, Option<SpecialUse>)],
    ) -> Result<Account> {
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
            created,
        };
        txn.batch
            .insert(keys::address(&address), &id.0.to_be_bytes());
        txn.batch.insert(keys::account(id), encode(&account)?);
        for &(name, special_use) in folders {
            let mailbox = self.new_mailbox_record(&mut txn, id, name, special_use)?;
            txn.batch
                .insert(keys::mailbox_name(id, name), &mailbox.id.0.to_be_bytes());
            txn.batch
                .insert(keys::mailbox(mailbox.id), encode(&mailbox)?);
            Self::all_recent(&mut txn, mailbox.id);
        }
        self.commit(txn, guard)?;
        Ok(account)
    }

    /// Builds a new folder record with fresh ids, and subscribes its name. UIDVALIDITY
    /// follows the clock where it can, so a folder recreated after a database restore
    /// still gets a new value.
    fn new_mailbox_record(
        &self,
        txn: &mut Txn,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<Mailbox> {
        let id = MailboxId(self.next_counter(txn, "mailbox", 1)?);
        let uidvalidity = self.next_counter(txn, "uidvalidity", now_secs().max(1) as u64)?;
        Self::subscribe_in(txn, account, name);
        Ok(Mailbox {
            id,
            account,
            name: name.to_string(),
            uidvalidity: Uidvalidity(u32::try_from(uidvalidity).unwrap_or(u32::MAX)),
            uidnext: Uid(1),
            highest_modseq: ModSeq(1),
            special_use,
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
        self.remove_prefix_in(&mut txn, keys::subscriptions(id))?;
        self.remove_prefix_in(&mut txn, keys::metadata_all(id))?;
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
        self.create_mailbox_limited(account, name, special_use, usize::MAX, usize::MAX)
    }

    /// [`Self::create_mailbox`] on a user's behalf: refused with
    /// [`StoreError::LimitExceeded`] when the account has `max_folders` folders already
    /// or the name has more than `max_depth` levels. The count is taken under the writer
    /// lock, so concurrent creations cannot pass the limit together.
    pub fn create_mailbox_limited(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
        max_folders: usize,
        max_depth: usize,
    ) -> Result<Mailbox> {
        let name = validate_mailbox_name(name)?;
        if folder_depth(&name) > max_depth {
            return Err(StoreError::LimitExceeded(FOLDERS_TOO_DEEP));
        }
        let guard = self.lock_writer();
        self.account(account)?;
        if self.db.get(keys::mailbox_name(account, &name))?.is_some() {
            return Err(StoreError::AlreadyExists);
        }
        if max_folders != usize::MAX && self.folder_count(account)? >= max_folders {
            return Err(StoreError::LimitExceeded(TOO_MANY_FOLDERS));
        }
        let mut txn = Txn::default();
        let mailbox = self.new_mailbox_record(&mut txn, account, &name, special_use)?;
        txn.batch.insert(
            keys::mailbox_name(account, &name),
            &mailbox.id.0.to_be_bytes(),
        );
        txn.batch
            .insert(keys::mailbox(mailbox.id), encode(&mailbox)?);
        Self::all_recent(&mut txn, mailbox.id);
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
        // Its annotations go with it (RFC 5464 §4.1); its subscription stays.
        self.remove_prefix_in(&mut txn, keys::metadata_of(mailbox.account, &mailbox.name))?;
        txn.batch.remove(keys::mailbox(id));
        txn.batch
            .remove(keys::mailbox_name(mailbox.account, &mailbox.name));
        self.commit(txn, guard)
    }

    /// Refuses with [`StoreError::LimitExceeded`] an operation that would give the
    /// account `new_folders` more folders than `max_folders` allows, or a folder `depth`
    /// levels deep beyond `max_depth`: for a caller that creates several folders (a name
    /// and its missing parents) and must refuse before creating any. The creating calls
    /// check again under the writer lock.
    pub fn check_folder_limits(
        &self,
        account: AccountId,
        new_folders: usize,
        depth: usize,
        max_folders: usize,
        max_depth: usize,
    ) -> Result<()> {
        if depth > max_depth {
            return Err(StoreError::LimitExceeded(FOLDERS_TOO_DEEP));
        }
        if new_folders > 0 && self.folder_count(account)?.saturating_add(new_folders) > max_folders
        {
            return Err(StoreError::LimitExceeded(TOO_MANY_FOLDERS));
        }
        Ok(())
    }

    /// How many folders the account has (INBOX included), without reading them.
    pub fn folder_count(&self, account: AccountId) -> Result<usize> {
        let mut count = 0;
        for entry in self.db.scan_prefix(keys::mailbox_names(account)).keys() {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    /// Renames a folder and every folder below it, in one transaction.
    pub fn rename_mailbox(&self, id: MailboxId, new_name: &str) -> Result<Mailbox> {
        self.rename_mailbox_limited(id, new_name, usize::MAX)
    }

    /// [`Self::rename_mailbox`] on a user's behalf: refused with
    /// [`StoreError::LimitExceeded`] when the folder or any folder moved with it would
    /// have more than `max_depth` levels.
    pub fn rename_mailbox_limited(
        &self,
        id: MailboxId,
        new_name: &str,
        max_depth: usize,
    ) -> Result<Mailbox> {
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
        if moves
            .iter()
            .any(|(_, target)| folder_depth(target) > max_depth)
        {
            return Err(StoreError::LimitExceeded(FOLDERS_TOO_DEEP));
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
            // The subscriptions go with the folders, as Dovecot moves them.
            self.move_subscription_in(&mut txn, folder.account, &folder.name, &target)?;
            self.move_metadata_in(&mut txn, folder.account, &folder.name, &target)?;
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

    /// Queues removal of every message of a folder (with their bodies when no other
    /// message shares them) and of its expunge history.
    fn remove_mailbox_contents(&self, txn: &mut Txn, id: MailboxId) -> Result<()> {
        for entry in self.db.scan_prefix(keys::messages(id)) {
            let (key, value) = entry?;
            let meta: MessageMeta = decode(&value)?;
            self.release_body(txn, meta.body)?;
            txn.batch.remove(key);
        }
        self.remove_prefix_in(txn, keys::expunged_all(id))?;
        for prefix in keys::beside_messages(id) {
            self.remove_prefix_in(txn, prefix)?;
        }
        txn.batch.remove(keys::folder_counts(id));
        txn.batch.remove(keys::first_recent(id));
        Ok(())
    }

    /// Queues removal of every key that starts with `prefix`.
    pub(crate) fn remove_prefix_in(&self, txn: &mut Txn, prefix: impl AsRef<[u8]>) -> Result<()> {
        for key in self.db.scan_prefix(prefix).keys() {
            txn.batch.remove(key?);
        }
        Ok(())
    }

    /// Drops one reference to a body; forgets its location with the last one (the
    /// record becomes garbage for compaction).
    pub(crate) fn release_body(&self, txn: &mut Txn, body: BodyRef) -> Result<()> {
        let count = match txn.refs.get(&body.id) {
            Some(count) => *count,
            None => self.body_refs(body.id)?,
        };
        let remaining = count.saturating_sub(1);
        txn.refs.insert(body.id, remaining);
        if remaining == 0 {
            txn.batch.remove(keys::body_location(body.id));
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
        self.append_limited(mailbox, message, flags, internal_date, None)
    }

    /// [`Store::append`] into an account with a storage limit (bytes): refused with
    /// [`StoreError::OverQuota`], nothing kept, if the message would pass it.
    pub fn append_limited(
        &self,
        mailbox: MailboxId,
        message: &[u8],
        flags: &Flags,
        internal_date: (i64, i32),
        storage_limit: Option<u64>,
    ) -> Result<Appended> {
        if let Some(limit) = storage_limit {
            // Refused before the body is written, when it plainly cannot fit.
            let account = self.mailbox(mailbox)?.account;
            self.check_room(account, message.len() as u64, limit)?;
        }
        let staged = self.stage_message(message, None)?;
        let request = AppendRequest {
            staged,
            flags: flags.clone(),
            internal_date,
            storage_limit,
        };
        let (mut appended, ticket) = self.append_staged_limited(mailbox, vec![request])?;
        let appended = appended
            .pop()
            .ok_or_else(|| StoreError::Corrupt("an append without a result".into()))??;
        self.finish_append(mailbox, appended, ticket)
    }

    /// The bytes the account's messages take: the sum of its folders' sizes
    /// (`\Deleted` messages included until expunged; a copy counts as often as it is
    /// kept, whether or not it shares its body). One read per folder.
    pub fn account_usage(&self, account: AccountId) -> Result<u64> {
        Ok(self
            .mailboxes(account)?
            .iter()
            .fold(0u64, |sum, folder| sum.saturating_add(folder.size)))
    }

    /// Refuses with [`StoreError::OverQuota`] `size` more bytes for an account under
    /// `limit`: an early check, without the writer lock (the appends and copies that
    /// add mail check again under it).
    pub fn check_room(&self, account: AccountId, size: u64, limit: u64) -> Result<()> {
        let used = self.account_usage(account)?;
        if used.saturating_add(size) > limit {
            return Err(StoreError::OverQuota);
        }
        Ok(())
    }

    /// The bytes an EXPUNGE of the folder would free: the sizes of its `\Deleted`
    /// messages (RFC 9208 STATUS DELETED-STORAGE). Reads the messages' metadata only
    /// when some are `\Deleted`.
    pub fn deleted_size(&self, mailbox: MailboxId) -> Result<u64> {
        if self.folder_counts(mailbox)?.deleted == 0 {
            return Ok(0);
        }
        Ok(self
            .messages(mailbox)?
            .iter()
            .filter(|meta| meta.flags.has(SystemFlag::Deleted))
            .fold(0u64, |sum, meta| sum.saturating_add(meta.size)))
    }

    /// Announces an append that is on its way (see [`ExpectedAppend`]).
    pub fn expect_append(&self) -> ExpectedAppend {
        ExpectedAppend(Arc::new(Mutex::new(Some(self.commit.arrive()))))
    }

    /// The first half of an append, with no lock held: the message is indexed and its
    /// body written to the body log. Bare LF line ends become CRLF.
    pub fn stage_message(
        &self,
        message: &[u8],
        expected: Option<&ExpectedAppend>,
    ) -> Result<StagedMessage> {
        // Announced before the work (if not earlier), so a sync round starting
        // meanwhile waits for it.
        let arrival = expected
            .and_then(ExpectedAppend::take)
            .unwrap_or_else(|| self.commit.arrive());
        // Parsed once here, outside the writer lock, so FETCH never parses again (twice
        // for a message with bare LFs, which become CRLF — except in a message with a
        // binary part (RFC 3516), whose bytes are kept exactly).
        // With an index to feed, the same parse gives the message's decoded text.
        let summarize = |raw: &[u8]| match self.recent_texts.enabled() {
            true => portico_mime::summarize_with_body_text(raw, self.recent_texts.max_text()),
            false => (portico_mime::summarize(raw), None),
        };
        let (parsed, text) = summarize(message);
        let message = if parsed.root().has_binary() {
            Cow::Borrowed(message)
        } else {
            normalize_line_endings(message)
        };
        let (parsed, text) = match &message {
            Cow::Borrowed(_) => (parsed, text),
            Cow::Owned(normalized) => summarize(normalized),
        };
        let summary = encode(&parsed)?;
        let search_fields = search_record(&message)?;
        self.check_free_space()?;
        let id = self.body_ids.fetch_add(1, Ordering::Relaxed);
        // Not waited for: the metadata commit that links it syncs the segment first, so
        // one round covers both.
        let written = self.bodies.write(id, &message)?;
        if let Some(text) = text {
            self.recent_texts.keep(id, text);
        }
        let body = DurableBody {
            id,
            location: written.location,
            _pin: written.pin,
        };
        Ok(StagedMessage {
            body,
            summary,
            search_fields,
            arrival,
            delivery: None,
        })
    }

    /// The second half: allocates the UID and applies the metadata. The message is
    /// visible at once and durable once [`Store::wait_committed`] returns for the
    /// ticket; concurrent appends share that sync, and UIDs go in the order of these
    /// calls.
    pub fn append_staged(
        &self,
        mailbox: MailboxId,
        staged: StagedMessage,
        flags: &Flags,
        internal_date: (i64, i32),
    ) -> Result<(Appended, CommitTicket)> {
        let (mut appended, ticket) =
            self.append_staged_many(mailbox, vec![(staged, flags.clone(), internal_date)])?;
        let appended = appended
            .pop()
            .ok_or_else(|| StoreError::Corrupt("an append without a result".into()))?;
        Ok((appended, ticket))
    }

    /// [`Store::append_staged`] for several messages into one folder: one batch, one
    /// ticket, UIDs in the order given. All or nothing.
    pub fn append_staged_many(
        &self,
        mailbox: MailboxId,
        messages: Vec<(StagedMessage, Flags, (i64, i32))>,
    ) -> Result<(Vec<Appended>, CommitTicket)> {
        let requests = messages
            .into_iter()
            .map(|(staged, flags, internal_date)| AppendRequest {
                staged,
                flags,
                internal_date,
                storage_limit: None,
            })
            .collect();
        let (appended, ticket) = self.append_staged_limited(mailbox, requests)?;
        Ok((appended.into_iter().collect::<Result<_>>()?, ticket))
    }

    /// [`Store::append_staged_many`] with each message's storage limit checked under the
    /// writer lock, against the account's usage with the messages before it in the
    /// batch: a message that would pass its limit is refused alone
    /// ([`StoreError::OverQuota`], its body left to compaction), the others are linked.
    /// One result per message, in order; the ticket covers those linked.
    pub fn append_staged_limited(
        &self,
        mailbox: MailboxId,
        messages: Vec<AppendRequest>,
    ) -> Result<(Vec<Result<Appended>>, CommitTicket)> {
        let guard = self.lock_writer();
        let mut folder = self.mailbox(mailbox)?;
        // Under the lock, so appends and copies into the account's other folders cannot
        // pass the limit together with these.
        let mut used = match messages.iter().any(|m| m.storage_limit.is_some()) {
            true => self.account_usage(folder.account)?,
            false => 0,
        };
        let mut txn = Txn::default();
        // RFC 8514 §3: the time the messages are saved into the folder, here where it
        // happens for every way mail comes in (APPEND, delivery, `deliver`).
        let saved = now_secs();
        let mut appended = Vec::with_capacity(messages.len());
        let mut arrivals = Vec::with_capacity(messages.len());
        // Pins stay until the batch is applied: compaction must see the records linked.
        let mut bodies = Vec::with_capacity(messages.len());
        for request in messages {
            let AppendRequest {
                staged,
                flags,
                internal_date,
                storage_limit,
            } = request;
            let size = staged.body.location.len;
            if storage_limit.is_some_and(|limit| used.saturating_add(size) > limit) {
                // Its body stays unlinked, garbage for compaction; its announcement to
                // the sync round is withdrawn as it is dropped.
                self.cover_body_id(&mut txn, staged.body.id)?;
                appended.push(Err(StoreError::OverQuota));
                continue;
            }
            used = used.saturating_add(size);
            let body = self.link_body(&mut txn, &staged.body)?;
            let uid = folder.uidnext;
            let modseq = ModSeq(folder.highest_modseq.0 + 1);
            let meta = MessageMeta {
                uid,
                flags,
                internal_date: internal_date.0,
                internal_date_offset: internal_date.1,
                size: staged.body.location.len,
                modseq,
                body,
                save_date: Some(saved),
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
            txn.count_message(mailbox, &meta.flags, 1);
            txn.batch
                .insert(keys::summary(mailbox, uid), staged.summary);
            txn.batch
                .insert(keys::search_fields(mailbox, uid), staged.search_fields);
            if let Some(id) = &staged.delivery {
                txn.batch.insert(
                    keys::delivered(id),
                    crate::deliveries::record(mailbox, uid)?,
                );
            }
            appended.push(Ok(Appended {
                uid,
                uidvalidity: folder.uidvalidity,
                modseq,
                size: meta.size,
            }));
            arrivals.push(staged.arrival);
            bodies.push(staged.body);
        }
        if bodies.is_empty() {
            // Nothing linked: the body counter alone, which nobody waits for (and whose
            // failure only leaves fsck a body to report).
            if !appended.is_empty()
                && let Err(e) = self.apply(txn, guard)
            {
                tracing::warn!(mailbox = mailbox.0, error = %e, "refused appends' body ids not recorded");
            }
            return Ok((appended, self.committed()));
        }
        txn.batch.insert(keys::mailbox(mailbox), encode(&folder)?);
        let ticket = self.apply_arrived(txn, guard, arrivals)?;
        drop(bodies);
        Ok((appended, ticket))
    }

    /// Waits for an append to become durable; when that fails, takes the message back
    /// out (its UID stays used, never handed out again) so that what the client was told
    /// failed does not appear later.
    pub fn finish_append(
        &self,
        mailbox: MailboxId,
        appended: Appended,
        ticket: CommitTicket,
    ) -> Result<Appended> {
        match self.wait_committed(ticket) {
            Ok(()) => Ok(appended),
            Err(e) => {
                self.revoke_append(mailbox, appended.uid);
                Err(e)
            }
        }
    }

    /// Removes a message whose append could not be made durable. Best effort: the
    /// removal becomes durable with the next successful sync.
    pub fn revoke_append(&self, mailbox: MailboxId, uid: Uid) {
        let guard = self.lock_writer();
        let revoked = (|| -> Result<()> {
            let mut folder = self.mailbox(mailbox)?;
            let mut txn = Txn::default();
            if self.expunge_into(&mut txn, &mut folder, &[uid])?.is_empty() {
                return Ok(());
            }
            txn.batch.insert(keys::mailbox(mailbox), encode(&folder)?);
            self.apply(txn, guard).map(|_| ())
        })();
        if let Err(e) = revoked {
            tracing::error!(mailbox = mailbox.0, uid = uid.0, error = %e, "could not take back a failed append");
        }
    }

    /// Writes the batch's changes to folder counts; under the writer lock, so what the
    /// database holds is current.
    fn fold_counts(&self, txn: &mut Txn) -> Result<()> {
        for (mailbox, (unseen, deleted)) in std::mem::take(&mut txn.counts) {
            if unseen == 0 && deleted == 0 {
                continue;
            }
            let now = self.folder_counts(mailbox)?;
            let add = |count: u32, delta: i64| {
                (i64::from(count) + delta).clamp(0, u32::MAX.into()) as u32
            };
            let counts = FolderCounts {
                unseen: add(now.unseen, unseen),
                deleted: add(now.deleted, deleted),
            };
            txn.batch
                .insert(keys::folder_counts(mailbox), encode(&counts)?);
        }
        Ok(())
    }

    /// Unseen and \Deleted messages of a folder. Kept with every change; a folder
    /// that has not changed since before they were kept is counted now.
    pub fn folder_counts(&self, mailbox: MailboxId) -> Result<FolderCounts> {
        if let Some(counts) = self.read(&keys::folder_counts(mailbox))? {
            return Ok(counts);
        }
        self.count_folder(mailbox)
    }

    /// Counts a folder's unseen and \Deleted messages from their metadata.
    pub(crate) fn count_folder(&self, mailbox: MailboxId) -> Result<FolderCounts> {
        let mut counts = FolderCounts::default();
        for meta in self.messages(mailbox)? {
            let one = FolderCounts::of(&meta.flags);
            counts.unseen += one.unseen;
            counts.deleted += one.deleted;
        }
        Ok(counts)
    }

    /// Metadata of every message in a folder, in UID order.
    pub fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageMeta>> {
        self.db
            .scan_prefix(keys::messages(mailbox))
            .map(|entry| decode(&entry?.1))
            .collect()
    }

    /// Metadata of the messages of a folder with UIDs in `first..=last`, in UID order:
    /// one range read, cheaper than a lookup per message for a run of UIDs.
    pub fn messages_between(
        &self,
        mailbox: MailboxId,
        first: Uid,
        last: Uid,
    ) -> Result<Vec<MessageMeta>> {
        self.db
            .range(keys::message(mailbox, first)..=keys::message(mailbox, last))
            .map(|entry| decode(&entry?.1))
            .collect()
    }

    /// [`Store::search_fields`] of the messages with UIDs in `first..=last`.
    pub fn search_fields_between(
        &self,
        mailbox: MailboxId,
        first: Uid,
        last: Uid,
    ) -> Result<Vec<(Uid, portico_mime::SearchFields)>> {
        self.search_records_between(mailbox, first, last, search_fields_of)
    }

    /// What `read` makes of the `H` records of UIDs `first..=last`, with their UIDs.
    fn search_records_between<T>(
        &self,
        mailbox: MailboxId,
        first: Uid,
        last: Uid,
        read: impl Fn(&[u8]) -> Result<T>,
    ) -> Result<Vec<(Uid, T)>> {
        self.db
            .range(keys::search_fields(mailbox, first)..=keys::search_fields(mailbox, last))
            .map(|entry| {
                let (key, value) = entry?;
                let uid = keys::uid_of_message_key(&key)
                    .ok_or_else(|| StoreError::Corrupt("search fields key".into()))?;
                Ok((uid, read(&value)?))
            })
            .collect()
    }

    /// Metadata of at most `limit` messages of a folder from UID `from` on, in UID order.
    pub fn messages_from(
        &self,
        mailbox: MailboxId,
        from: Uid,
        limit: usize,
    ) -> Result<Vec<MessageMeta>> {
        let prefix = keys::messages(mailbox);
        self.db
            .range(keys::message(mailbox, from)..)
            .take_while(|entry| {
                entry
                    .as_ref()
                    .map_or(true, |(key, _)| key.starts_with(&prefix))
            })
            .take(limit)
            .map(|entry| decode(&entry?.1))
            .collect()
    }

    pub fn message(&self, mailbox: MailboxId, uid: Uid) -> Result<MessageMeta> {
        self.read(&keys::message(mailbox, uid))?
            .ok_or(StoreError::NotFound)
    }

    /// The stored bytes of a message, checked against their checksums.
    pub fn message_bytes(&self, mailbox: MailboxId, uid: Uid) -> Result<Vec<u8>> {
        self.bytes_of(mailbox, &self.message(mailbox, uid)?)
    }

    /// [`Store::message_bytes`] for a message whose metadata the caller has read.
    pub fn bytes_of(&self, mailbox: MailboxId, meta: &MessageMeta) -> Result<Vec<u8>> {
        self.read_body_prefix(meta.body, meta.size, u64::MAX, &|| {
            message_name(mailbox, meta.uid)
        })
    }

    /// Writes a body to the body log and waits until it is durable; returns its id and
    /// location, for a batch to point at. Refused below the free-space floor.
    pub(crate) fn write_body(&self, bytes: &[u8]) -> Result<DurableBody> {
        self.check_free_space()?;
        let id = self.body_ids.fetch_add(1, Ordering::Relaxed);
        let written = self.bodies.write(id, bytes)?;
        self.bodies.wait_durable(written.ticket)?;
        Ok(DurableBody {
            id,
            location: written.location,
            _pin: written.pin,
        })
    }

    /// Records a durable body in a batch: its location, and the body counter past it.
    pub(crate) fn link_body(&self, txn: &mut Txn, body: &DurableBody) -> Result<BodyRef> {
        let (id, location) = (body.id, &body.location);
        self.cover_body_id(txn, id)?;
        txn.batch.insert(keys::body_location(id), encode(location)?);
        Ok(BodyRef {
            id,
            legacy_chunks: 0,
        })
    }

    /// Raises the persisted `body` counter to `id` in the batch: the body log's record
    /// of that id is then known to the metadata (live if linked, garbage for compaction
    /// if not), never taken for one written after the last commit.
    fn cover_body_id(&self, txn: &mut Txn, id: u64) -> Result<()> {
        let persisted = match txn.counters.get("body") {
            Some(last) => *last,
            None => self.counter_value("body")?,
        };
        let last = persisted.max(id);
        txn.counters.insert("body", last);
        txn.batch.insert(keys::counter("body"), &last.to_be_bytes());
        Ok(())
    }

    pub(crate) fn body_location(&self, body: BodyRef) -> Result<Option<BodyLocation>> {
        self.read(&keys::body_location(body.id))
    }

    /// Reads the first `want` bytes of a body (all of it with `u64::MAX`); `what` names
    /// the message in the error when the bytes are damaged or missing.
    pub(crate) fn read_body_prefix(
        &self,
        body: BodyRef,
        size: u64,
        want: u64,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<u8>> {
        self.read_body_range(body, size, 0, want, what)
    }

    /// Reads `len` bytes of a body from `start`, as [`Store::read_body_prefix`].
    fn read_body_range(
        &self,
        body: BodyRef,
        size: u64,
        start: u64,
        len: u64,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<u8>> {
        let Some(location) = self.body_location(body)? else {
            if size == 0 {
                return Ok(Vec::new());
            }
            return Err(StoreError::Damaged(format!("{}: body is missing", what())));
        };
        if location.len != size {
            return Err(StoreError::Damaged(format!(
                "{}: stored size {} differs from the index's {size}",
                what(),
                location.len
            )));
        }
        self.bodies
            .read_range(body.id, location, start, len)
            .map_err(|e| match StoreError::from(e) {
                StoreError::Damaged(why) => StoreError::Damaged(format!("{}: {why}", what())),
                other => other,
            })
    }

    /// `len` bytes of a message's stored bytes from `start` (clamped to the message),
    /// checked against their checksums: a big message is sent a piece at a time.
    pub fn message_range(
        &self,
        mailbox: MailboxId,
        uid: Uid,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        let meta = self.message(mailbox, uid)?;
        self.read_body_range(meta.body, meta.size, start, len, &|| {
            message_name(mailbox, uid)
        })
    }

    /// The lines of the header fields clients list folders by
    /// ([`portico_mime::KEPT_HEADER_FIELDS`]), kept at append; `None` for messages
    /// stored before they were kept.
    pub fn kept_header(&self, mailbox: MailboxId, uid: Uid) -> Result<Option<Vec<u8>>> {
        match self.db.get(keys::search_fields(mailbox, uid))? {
            Some(record) => Ok(Some(kept_lines_of(&record)?.to_vec())),
            None => Ok(None),
        }
    }

    /// [`Store::kept_header`] of the messages with UIDs in `first..=last`.
    pub fn kept_headers_between(
        &self,
        mailbox: MailboxId,
        first: Uid,
        last: Uid,
    ) -> Result<Vec<(Uid, Vec<u8>)>> {
        self.search_records_between(mailbox, first, last, |record| {
            kept_lines_of(record).map(<[u8]>::to_vec)
        })
    }

    /// The decoded header fields SEARCH compares, kept at append; `None` for messages
    /// stored before they were kept.
    pub fn search_fields(
        &self,
        mailbox: MailboxId,
        uid: Uid,
    ) -> Result<Option<portico_mime::SearchFields>> {
        match self.db.get(keys::search_fields(mailbox, uid))? {
            Some(record) => search_fields_of(&record).map(Some),
            None => Ok(None),
        }
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
    /// the blocks it spans: header-only FETCHes never read whole messages.
    pub fn message_header(&self, mailbox: MailboxId, uid: Uid) -> Result<Vec<u8>> {
        let meta = self.message(mailbox, uid)?;
        self.header_of(mailbox, &meta, &self.message_summary(mailbox, uid)?)
    }

    /// The decoded body text ([`portico_mime::body_text`]) of stored body `id`, made
    /// when it was appended, if it is still kept: each is given out once (the
    /// full-text indexer), and one not kept is for the caller to make.
    pub fn take_body_text(&self, id: u64) -> Option<String> {
        self.recent_texts.take(id)
    }

    /// The message's header block without its MIME summary: the first block of the
    /// body (which its checksum makes the least a read can verify) usually holds it;
    /// a longer header is measured by the summary.
    pub fn header_block(&self, mailbox: MailboxId, meta: &MessageMeta) -> Result<Vec<u8>> {
        let mut first = self.read_body_prefix(meta.body, meta.size, HEADER_PROBE, &|| {
            message_name(mailbox, meta.uid)
        })?;
        let end = portico_mime::header_end(&first);
        if end < first.len() || first.len() as u64 == meta.size {
            first.truncate(end);
            return Ok(first);
        }
        self.header_of(mailbox, meta, &self.message_summary(mailbox, meta.uid)?)
    }

    /// [`Store::message_header`] for a message whose metadata and summary the caller
    /// has read (a SEARCH over a big folder reads each once, not twice).
    pub fn header_of(
        &self,
        mailbox: MailboxId,
        meta: &MessageMeta,
        summary: &MessageSummary,
    ) -> Result<Vec<u8>> {
        self.read_body_prefix(meta.body, meta.size, summary.header_len() as u64, &|| {
            message_name(mailbox, meta.uid)
        })
    }

    /// Changes flags of the listed messages, [`FLAGS_PER_BATCH`] to a transaction, and
    /// returns once all are durable; UIDs that no longer exist are skipped. Returns the
    /// messages whose flags actually changed.
    pub fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
    ) -> Result<Vec<FlagsChanged>> {
        self.check_metadata_reserve()?;
        let mut changed = Vec::new();
        let mut last = None;
        for chunk in uids.chunks(FLAGS_PER_BATCH) {
            if let Some(ticket) = self.store_flags_batch(mailbox, chunk, op, flags, &mut changed)? {
                last = Some(ticket);
            }
        }
        if let Some(ticket) = last {
            self.wait_committed(ticket)?;
        }
        Ok(changed)
    }

    /// One batch of [`Store::store_flags`], applied (not waited for); adds what it
    /// changed to `changed`.
    fn store_flags_batch(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        changed: &mut Vec<FlagsChanged>,
    ) -> Result<Option<CommitTicket>> {
        let guard = self.lock_writer();
        let mut folder = self.mailbox(mailbox)?;
        let mut txn = Txn::default();
        let before_batch = changed.len();
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
            txn.count_message(mailbox, &before, -1);
            txn.count_message(mailbox, &meta.flags, 1);
            changed.push(FlagsChanged {
                uid,
                flags: meta.flags,
                modseq: meta.modseq,
            });
        }
        if changed.len() == before_batch {
            return Ok(None);
        }
        txn.batch.insert(keys::mailbox(mailbox), encode(&folder)?);
        Ok(Some(self.apply_within_reserve(txn, guard)?))
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
            txn.count_message(folder.id, &meta.flags, -1);
            for key in keys::beside_message(folder.id, uid) {
                txn.batch.remove(key);
            }
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
        self.copy_limited(from, uids, to, None)
    }

    /// [`Store::copy`] into an account with a storage limit (bytes): refused with
    /// [`StoreError::OverQuota`], nothing copied, when the copies would take the
    /// account's usage past it (checked under the writer lock).
    pub fn copy_limited(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
        storage_limit: Option<u64>,
    ) -> Result<Copied> {
        let guard = self.lock_writer();
        let mut dest = self.mailbox(to)?;
        let mut txn = Txn::default();
        let before = dest.size;
        let pairs = self.copy_into(&mut txn, from, uids, &mut dest)?;
        if let Some(limit) = storage_limit {
            let added = dest.size.saturating_sub(before);
            if self.account_usage(dest.account)?.saturating_add(added) > limit {
                return Err(StoreError::OverQuota);
            }
        }
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
    /// transaction, so a crash leaves them in exactly one of the two folders. Takes no
    /// storage limit: within one account a move adds nothing to its usage.
    pub fn move_messages(&self, from: MailboxId, uids: &[Uid], to: MailboxId) -> Result<Copied> {
        let guard = self.lock_writer();
        if from == to {
            // RFC 6851 allows it: each message gets a new UID at the end of the folder.
            let mut folder = self.mailbox(from)?;
            let mut txn = Txn::default();
            let pairs = self.copy_into(&mut txn, from, uids, &mut folder)?;
            if !pairs.is_empty() {
                let moved: Vec<Uid> = pairs.iter().map(|(src, _)| *src).collect();
                self.expunge_into(&mut txn, &mut folder, &moved)?;
                txn.batch.insert(keys::mailbox(from), encode(&folder)?);
                self.commit(txn, guard)?;
            }
            return Ok(Copied {
                uidvalidity: folder.uidvalidity,
                pairs,
            });
        }
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
        // RFC 8514 §3: a copy (or a moved message) is saved into its new folder now;
        // only the internal date comes along.
        let saved = now_secs();
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
            let copies = keys::beside_message(from, uid)
                .into_iter()
                .zip(keys::beside_message(dest.id, new_uid));
            for (source, copy) in copies {
                if let Some(record) = self.db.get(source)? {
                    txn.batch.insert(copy, record);
                }
            }
            meta.uid = new_uid;
            meta.modseq = dest.highest_modseq;
            meta.save_date = Some(saved);
            txn.batch
                .insert(keys::message(dest.id, new_uid), encode(&meta)?);
            txn.count_message(dest.id, &meta.flags, 1);
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

/// How a message is named in errors and logs.
pub(crate) fn message_name(mailbox: MailboxId, uid: Uid) -> String {
    format!("message UID {} in folder #{}", uid.0, mailbox.0)
}

/// (available bytes, total bytes) of the file system holding `path`.
fn free_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a writable statvfs.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as u64;
    Some((stat.f_bavail as u64 * block, stat.f_blocks as u64 * block))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8514 §3: the save date is the store's time when a message enters a folder:
    /// append, delivery (`append_staged_many`), COPY and MOVE (both ways: to another
    /// folder and within one) each set it for the copy they make; a flag change, an
    /// expunge of others and a reopen keep it.
    #[test]
    fn every_way_into_a_folder_sets_the_save_date_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let account = store.create_account("s@example.com", "h").unwrap();
        let folder = |name: &str| store.mailbox_by_name(account.id, name).unwrap().unwrap().id;
        let (inbox, archive) = (folder(INBOX), folder("Archive"));
        let in_window = |saved: Option<i64>, before: i64| {
            let saved = saved.expect("a save date");
            assert!(before <= saved && saved <= now_secs(), "{before} {saved}");
            saved
        };
        // An internal date long ago: the save date is not taken from it.
        let before = now_secs();
        let appended = store
            .append(
                inbox,
                b"Subject: a\r\n\r\na\r\n",
                &Flags::default(),
                (1_000, 3600),
            )
            .unwrap();
        let meta = store.message(inbox, appended.uid).unwrap();
        assert_eq!(
            (meta.internal_date, meta.internal_date_offset),
            (1_000, 3600)
        );
        in_window(meta.save_date, before);
        let staged = store
            .stage_message(b"Subject: d\r\n\r\nd\r\n", None)
            .unwrap();
        let (delivered, ticket) = store
            .append_staged_many(inbox, vec![(staged, Flags::default(), (2_000, 0))])
            .unwrap();
        store.wait_committed(ticket).unwrap();
        in_window(
            store.message(inbox, delivered[0].uid).unwrap().save_date,
            before,
        );

        // Saved "long ago", as a message kept since then would be.
        let mut old = store.message(inbox, appended.uid).unwrap();
        old.save_date = Some(5_000);
        store
            .db()
            .insert(keys::message(inbox, old.uid), encode(&old).unwrap())
            .unwrap();
        store
            .store_flags(
                inbox,
                &[old.uid],
                FlagOp::Add,
                &Flags::from_names(["\\Seen"]),
            )
            .unwrap();
        let flagged = store.message(inbox, old.uid).unwrap();
        assert!(flagged.flags.has(SystemFlag::Seen));
        assert_eq!(flagged.save_date, Some(5_000));

        let before = now_secs();
        let copied = store.copy(inbox, &[old.uid], archive).unwrap();
        let copy = store.message(archive, copied.pairs[0].1).unwrap();
        assert_eq!(
            (copy.internal_date, copy.internal_date_offset),
            (1_000, 3600)
        );
        in_window(copy.save_date, before);
        assert_eq!(
            store.message(inbox, old.uid).unwrap().save_date,
            Some(5_000)
        );

        // Moved back within one folder and into another: each a new save.
        store
            .db()
            .insert(
                keys::message(archive, copy.uid),
                encode(&MessageMeta {
                    save_date: Some(6_000),
                    ..copy.clone()
                })
                .unwrap(),
            )
            .unwrap();
        let before = now_secs();
        let within = store.move_messages(archive, &[copy.uid], archive).unwrap();
        let moved = store.message(archive, within.pairs[0].1).unwrap();
        in_window(moved.save_date, before);
        let back = store.move_messages(archive, &[moved.uid], inbox).unwrap();
        let moved_back = store.message(inbox, back.pairs[0].1).unwrap();
        in_window(moved_back.save_date, before);
        assert_eq!(moved_back.internal_date, 1_000);

        // Expunging another message leaves it, and so does a reopen.
        store.expunge(inbox, &[delivered[0].uid]).unwrap();
        let kept = store.message(inbox, old.uid).unwrap().save_date;
        drop(store);
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        assert_eq!(store.message(inbox, old.uid).unwrap().save_date, kept);
        assert_eq!(kept, Some(5_000));
        assert_eq!(
            store.message(inbox, moved_back.uid).unwrap().save_date,
            moved_back.save_date
        );
    }

    /// Counts a folder has from before they were kept are counted when asked; wrong
    /// ones are reported by fsck and set right by its repair.
    #[test]
    fn folder_counts_missing_or_wrong_are_counted_reported_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let account = store.create_account("k@example.com", "h").unwrap();
        let inbox = store
            .mailbox_by_name(account.id, INBOX)
            .unwrap()
            .unwrap()
            .id;
        for flags in [&["\\Seen"][..], &[], &["\\Deleted"]] {
            store
                .append(
                    inbox,
                    b"Subject: k\r\n\r\nk\r\n",
                    &Flags::from_names(flags.iter().copied()),
                    (0, 0),
                )
                .unwrap();
        }
        let right = FolderCounts {
            unseen: 2,
            deleted: 1,
        };
        assert_eq!(store.folder_counts(inbox).unwrap(), right);
        // As a store from before: no counts kept.
        store.db().remove(keys::folder_counts(inbox)).unwrap();
        assert_eq!(store.folder_counts(inbox).unwrap(), right);
        assert!(store.fsck(false).unwrap().is_clean());
        let wrong = FolderCounts {
            unseen: 99,
            deleted: 0,
        };
        store
            .db()
            .insert(keys::folder_counts(inbox), encode(&wrong).unwrap())
            .unwrap();
        let report = store.fsck(false).unwrap();
        assert_eq!(
            report.index_errors,
            vec!["k@example.com folder 'INBOX': counters say 99 unseen / 0 deleted, found 2 / 1"]
        );
        let repaired = store.fsck(true).unwrap();
        assert_eq!(repaired.folders_fixed, 1);
        assert_eq!(store.folder_counts(inbox).unwrap(), right);
        assert!(store.fsck(false).unwrap().is_clean());
    }

    /// A store from before the body log kept bodies in sled as 32 KiB `B` chunks: they
    /// move to the body log at open, byte for byte.
    #[test]
    fn legacy_chunked_bodies_move_into_the_body_log() {
        let dir = tempfile::tempdir().unwrap();
        let message: Vec<u8> = (0..100_000u32)
            .flat_map(|n| format!("line {n}\r\n").into_bytes())
            .collect();
        let (inbox, uid, body) = {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            let account = store.create_account("l@example.com", "h").unwrap();
            let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
            let appended = store
                .append(inbox.id, &message, &Flags::default(), (0, 0))
                .unwrap();
            let body = store.message(inbox.id, appended.uid).unwrap().body;
            // Rewrite it the old way: chunks in sled, no location.
            let mut batch = sled::Batch::default();
            batch.remove(keys::body_location(body.id));
            for (index, chunk) in message.chunks(32 * 1024).enumerate() {
                let mut key = vec![keys::LEGACY_BODY];
                key.extend_from_slice(&body.id.to_be_bytes());
                key.extend_from_slice(&(index as u32).to_be_bytes());
                batch.insert(key, chunk);
            }
            store.db.apply_batch(batch).unwrap();
            store.sync().unwrap();
            (inbox.id, appended.uid, body)
        };
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        assert!(store.db.scan_prefix([keys::LEGACY_BODY]).next().is_none());
        assert!(store.body_location(body).unwrap().is_some());
        assert_eq!(store.message_bytes(inbox, uid).unwrap(), message);
        assert!(store.fsck(false).unwrap().is_clean());
    }

    #[test]
    fn folder_limits_refuse_without_changing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let account = store.create_account("l@example.com", "h").unwrap();
        let start = store.folder_count(account.id).unwrap();
        let max = start + 2;
        store
            .create_mailbox_limited(account.id, "a", None, max, 3)
            .unwrap();
        let ab = store
            .create_mailbox_limited(account.id, "a/b", None, max, 3)
            .unwrap();
        // An existing name is still ALREADYEXISTS at the limit.
        assert!(matches!(
            store.create_mailbox_limited(account.id, "a", None, max, 3),
            Err(StoreError::AlreadyExists)
        ));
        assert!(matches!(
            store.create_mailbox_limited(account.id, "c", None, max, 3),
            Err(StoreError::LimitExceeded(TOO_MANY_FOLDERS))
        ));
        assert!(matches!(
            store.create_mailbox_limited(account.id, "a/b/c/d", None, usize::MAX, 3),
            Err(StoreError::LimitExceeded(FOLDERS_TOO_DEEP))
        ));
        // A rename counts the levels of the children it moves: a/b -> x/y/z would put
        // nothing deeper than 3, but a -> x/y/z moves a/b to x/y/z/b.
        let a = store.mailbox_by_name(account.id, "a").unwrap().unwrap();
        assert!(matches!(
            store.rename_mailbox_limited(a.id, "x/y/z", 3),
            Err(StoreError::LimitExceeded(FOLDERS_TOO_DEEP))
        ));
        store.rename_mailbox_limited(ab.id, "a/z", 3).unwrap();
        assert_eq!(store.folder_count(account.id).unwrap(), max);
        assert!(
            store
                .mailbox_by_name(account.id, "x/y/z")
                .unwrap()
                .is_none()
        );
    }
}
