//! The node's full-text index kept in step with its store, and SEARCH's questions to it.
//!
//! One thread indexes. Told that a folder gained or lost messages (the mailbox actors
//! call [`FullText::touched`]), it indexes the folder's new messages in UID order behind
//! the folder's mark and deletes the documents of expunged ones, committing in batches.
//! At start, and every [`SWEEP_EVERY`], it looks at every folder, so changes it was not
//! told of (made by the CLI, or lost with an uncommitted batch) are caught up.
//!
//! Sessions never wait for it: SEARCH reads in full every message at or above a
//! folder's mark, so answers are exact at every moment and the index only saves reading.
//! The text indexed is exactly what SEARCH compares (`portico_imap::search`): the
//! decoded body text, for TEXT the header block with its decoded values, and for FROM,
//! TO, CC, BCC and SUBJECT the decoded values kept at append; folded, as are the
//! needles asked about, by SEARCH's comparator (i;unicode-casemap,
//! `portico_imap::casemap`), so the index never rules out a message SEARCH would match.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use portico_fts::{
    FolderMark, HeaderField, IndexError, IndexedText, MessageText, TextField, TextIndex,
};
use portico_imap::casemap;
use portico_imap::request::{TextCandidates, TextKey, TextQuery};
use portico_store::{MailboxId, MessageMeta, ModSeq, Store, StoreError, Uid};

/// Messages read from the store at a time.
const BATCH: usize = 500;
/// Documents after which a long catch-up commits (and its progress survives a crash).
const COMMIT_EVERY: u64 = 20_000;
/// After a round, changes are left to gather this long (a busy folder gets one commit
/// per round, not one per delivery).
const SETTLE: Duration = Duration::from_millis(500);
/// After a round of at least [`BUSY_ROUND`] documents, they gather this long instead:
/// under a stream of deliveries fewer, bigger segments mean fewer commits and fewer
/// merges (a quarter of the node's CPU went to the index at 500 ms), while SEARCH stays
/// exact by reading what is not indexed yet.
const SETTLE_BUSY: Duration = Duration::from_secs(2);
const BUSY_ROUND: u64 = 256;
/// Every folder is looked at this often, besides at start.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Where a node keeps its index.
pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("fulltext")
}

#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("reading the store for the full-text index: {0}")]
    Store(#[from] StoreError),
}

/// What a catch-up did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IndexReport {
    pub folders: usize,
    pub messages: u64,
    /// Messages whose text could not be read: SEARCH reads them every time.
    pub unread: u64,
    pub removed: u64,
}

/// The index and the indexer's to-do list.
pub struct FullText {
    index: TextIndex,
    /// Bigger messages are not read for the index (SEARCH reads them each time): what
    /// indexing holds in memory at once stays a few times this.
    max_message: u64,
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    folders: BTreeSet<MailboxId>,
    sweep: bool,
    stop: bool,
    /// The indexer waits for work, and a change must wake it. During its pause after a
    /// round it is not woken: under a stream of deliveries that was a thread switch
    /// per message, for nothing.
    waiting_for_work: bool,
}

impl FullText {
    /// Opens (or creates) the index in `dir`, for the server: on a thread of the
    /// indexer's lowered priority, so that the threads tantivy starts with its writer
    /// (indexing, merging) get it too. Opened on the main thread, they kept the
    /// sessions' priority while the indexer thread alone gave way.
    pub fn open_in_background(
        dir: &Path,
        writer_memory: usize,
        max_message: u64,
    ) -> Result<Arc<FullText>, IndexError> {
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("fulltext-open".into())
            .spawn(move || {
                lower_this_threads_priority();
                FullText::open(&dir, writer_memory, max_message)
            })?
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("opening the index panicked").into()))
    }

    /// Opens (or creates) the index in `dir`.
    pub fn open(
        dir: &Path,
        writer_memory: usize,
        max_message: u64,
    ) -> Result<Arc<FullText>, IndexError> {
        Ok(Arc::new(FullText {
            index: TextIndex::open(dir, writer_memory)?,
            max_message,
            pending: Mutex::new(Pending {
                sweep: true,
                ..Pending::default()
            }),
            wake: Condvar::new(),
        }))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A folder gained or lost messages.
    pub fn touched(&self, folder: MailboxId) {
        let mut pending = self.pending();
        pending.folders.insert(folder);
        if pending.waiting_for_work {
            self.wake.notify_one();
        }
    }

    /// Asks the indexer thread to commit what it has and return.
    pub fn stop(&self) {
        self.pending().stop = true;
        self.wake.notify_one();
    }

    fn stopping(&self) -> bool {
        self.pending().stop
    }

    /// The index's answer to each query about `folder`; `None` where it cannot narrow
    /// the messages down (or failed: SEARCH then reads them all).
    pub fn candidates(
        &self,
        folder: MailboxId,
        queries: &[TextQuery],
    ) -> Vec<Option<TextCandidates>> {
        queries
            .iter()
            .map(|query| {
                let field = match query.key {
                    TextKey::Body => TextField::Body,
                    TextKey::Text => TextField::Text,
                    TextKey::From => TextField::Field(HeaderField::From),
                    TextKey::To => TextField::Field(HeaderField::To),
                    TextKey::Cc => TextField::Field(HeaderField::Cc),
                    TextKey::Bcc => TextField::Field(HeaderField::Bcc),
                    TextKey::Subject => TextField::Field(HeaderField::Subject),
                };
                // Folded as the indexed text was (and as SEARCH's exact check folds).
                let needle = casemap::fold(&query.needle);
                match self.index.candidates(folder.0, field, &needle) {
                    Ok(found) => {
                        // Sizes only: the needle is the user's business.
                        tracing::debug!(
                            folder = folder.0,
                            key = ?query.key,
                            candidates = found.as_ref().map(|c| c.uids.len()),
                            indexed_below = found.as_ref().map(|c| c.indexed_below),
                            "full-text index answered"
                        );
                        found.map(|c| TextCandidates {
                            indexed_below: c.indexed_below,
                            uids: c.uids,
                        })
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "full-text index query failed; reading every message");
                        None
                    }
                }
            })
            .collect()
    }

    /// The indexer thread: rounds of catching up until [`FullText::stop`].
    pub fn run(&self, store: &Store) {
        lower_this_threads_priority();
        let mut marks = match self.index.marks() {
            Ok(marks) => marks,
            Err(e) => {
                tracing::error!(error = %e, "full-text index unreadable; SEARCH reads every message");
                return;
            }
        };
        let mut last_sweep = Instant::now();
        // Rounds that failed in a row: each waits twice as long before the next.
        let mut failures: u32 = 0;
        loop {
            let (folders, sweep) = {
                let (mut pending, told) = self.wait_for(last_sweep + SWEEP_EVERY, true, |p| {
                    !p.folders.is_empty() || p.sweep || p.stop
                });
                if !told {
                    pending.sweep = true;
                }
                if pending.stop {
                    return;
                }
                (
                    std::mem::take(&mut pending.folders),
                    std::mem::take(&mut pending.sweep),
                )
            };
            let started = Instant::now();
            let round = match sweep {
                true => {
                    last_sweep = Instant::now();
                    self.sweep(store, &mut marks)
                }
                false => self.catch_up_folders(store, &mut marks, folders.into_iter()),
            };
            if round.is_ok() {
                failures = 0;
            }
            let busy = round
                .as_ref()
                .is_ok_and(|report| report.messages + report.removed >= BUSY_ROUND);
            match round {
                Ok(report) if report.messages + report.removed > 0 => tracing::info!(
                    folders = report.folders,
                    messages = report.messages,
                    unread = report.unread,
                    removed = report.removed,
                    ms = started.elapsed().as_millis() as u64,
                    "full-text index updated"
                ),
                Ok(_) => {}
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(
                        error = %e,
                        retry_in_secs = retry_after(failures).as_secs(),
                        "full-text indexing failed; will retry"
                    );
                    let _ = self.index.rollback();
                    marks = self.index.marks().unwrap_or_default();
                    self.pending().sweep = true;
                }
            }
            // Changes gather for a moment (after a failure, longer); a stop does not wait.
            let pause = match failures {
                0 if busy => SETTLE_BUSY,
                0 => SETTLE,
                n => retry_after(n),
            };
            drop(self.wait_for(Instant::now() + pause, false, |p| p.stop));
        }
    }

    /// Waits until `ready` holds of the to-do list or `deadline` passes; gives back the
    /// list, and whether `ready` held. With `for_work`, a changed folder wakes the wait
    /// (a stop always does).
    fn wait_for(
        &self,
        deadline: Instant,
        for_work: bool,
        ready: impl Fn(&Pending) -> bool,
    ) -> (std::sync::MutexGuard<'_, Pending>, bool) {
        let mut pending = self.pending();
        pending.waiting_for_work = for_work;
        let mut held = true;
        while !ready(&pending) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                held = false;
                break;
            }
            pending = self
                .wake
                .wait_timeout(pending, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        pending.waiting_for_work = false;
        (pending, held)
    }

    /// Catches every folder of the store up, and forgets folders that are gone.
    pub fn sweep(
        &self,
        store: &Store,
        marks: &mut HashMap<u64, FolderMark>,
    ) -> Result<IndexReport, IndexerError> {
        let mut folders = Vec::new();
        for account in store.accounts()? {
            folders.extend(store.mailboxes(account.id)?.into_iter().map(|m| m.id));
        }
        let known: BTreeSet<MailboxId> = folders.iter().copied().collect();
        let gone: Vec<MailboxId> = marks
            .keys()
            .map(|&id| MailboxId(id))
            .filter(|id| !known.contains(id))
            .collect();
        self.catch_up_folders(store, marks, folders.into_iter().chain(gone))
    }

    /// Catches `folders` up and commits.
    fn catch_up_folders(
        &self,
        store: &Store,
        marks: &mut HashMap<u64, FolderMark>,
        folders: impl Iterator<Item = MailboxId>,
    ) -> Result<IndexReport, IndexerError> {
        let mut report = IndexReport::default();
        let mut uncommitted = 0;
        for folder in folders {
            if self.stopping() {
                break;
            }
            report.folders += 1;
            self.catch_up(store, marks, folder, &mut report, &mut uncommitted)?;
        }
        if uncommitted > 0 {
            self.commit(store)?;
        }
        Ok(report)
    }

    /// Brings one folder's documents in line with the store. The new mark is set in the
    /// same commit as the documents it covers.
    fn catch_up(
        &self,
        store: &Store,
        marks: &mut HashMap<u64, FolderMark>,
        folder: MailboxId,
        report: &mut IndexReport,
        uncommitted: &mut u64,
    ) -> Result<(), IndexerError> {
        let mailbox = match store.mailbox(folder) {
            Ok(mailbox) => mailbox,
            Err(StoreError::NotFound) => {
                if marks.remove(&folder.0).is_some() {
                    self.index.forget_folder(folder.0);
                    *uncommitted += 1;
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let old = marks.get(&folder.0).copied().unwrap_or_default();
        let mut mark = old;
        if mark.next_uid > mailbox.uidnext.0 {
            // The store lost messages the index had seen (a crash before they were
            // durable): their UIDs will be given again, to other messages.
            self.index.forget_folder(folder.0);
            mark = FolderMark::default();
            *uncommitted += 1;
        }
        if mailbox.highest_modseq.0 > mark.expunge_modseq {
            if let Some(expunged) = store.expunged_since(folder, ModSeq(mark.expunge_modseq))? {
                let uids: Vec<u32> = expunged
                    .iter()
                    .map(|(uid, _)| uid.0)
                    .filter(|&uid| uid < mark.next_uid)
                    .collect();
                self.index.remove(folder.0, &uids)?;
                report.removed += uids.len() as u64;
                *uncommitted += uids.len() as u64;
            }
            mark.expunge_modseq = mailbox.highest_modseq.0;
        }
        loop {
            let metas = store.messages_from(folder, Uid(mark.next_uid), BATCH)?;
            if metas.is_empty() {
                break;
            }
            // One message at a time: only one message's text is in memory, and a stop
            // is heeded between two messages, however big the batch's.
            for meta in &metas {
                if self.stopping() {
                    break;
                }
                let text = match meta.size <= self.max_message {
                    true => search_text(store, folder, meta),
                    false => None,
                };
                report.unread += u64::from(text.is_none());
                let message = IndexedText {
                    uid: meta.uid.0,
                    text,
                };
                self.index.add(folder.0, vec![message])?;
                mark.next_uid = meta.uid.0.saturating_add(1);
                report.messages += 1;
                *uncommitted += 1;
            }
            if *uncommitted >= COMMIT_EVERY || self.stopping() {
                self.index.set_mark(folder.0, mark)?;
                self.commit(store)?;
                *uncommitted = 0;
                marks.insert(folder.0, mark);
                if self.stopping() {
                    return Ok(());
                }
            }
        }
        if mark != old || !marks.contains_key(&folder.0) {
            self.index.set_mark(folder.0, mark)?;
            *uncommitted += 1;
            marks.insert(folder.0, mark);
        }
        Ok(())
    }

    /// Commits what was indexed, once the store has made durable every message it
    /// covers: the index never runs ahead of the store, so a crash that takes back the
    /// newest appends (and gives their UIDs again) cannot leave their documents
    /// standing for other messages.
    fn commit(&self, store: &Store) -> Result<(), IndexerError> {
        store.sync()?;
        Ok(self.index.commit()?)
    }

    /// The index's marks, for a catch-up run outside the indexer thread.
    pub fn marks(&self) -> Result<HashMap<u64, FolderMark>, IndexError> {
        self.index.marks()
    }

    pub fn documents(&self) -> u64 {
        self.index.documents()
    }
}

/// How long the indexer waits after `failures` failed rounds in a row: 2 s, 4 s, …, at
/// most [`SWEEP_EVERY`] (a disk that keeps failing is not hammered, nor the log filled).
fn retry_after(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(10)).min(SWEEP_EVERY)
}

/// Indexing gives way to deliveries and sessions when the CPU is busy: it only saves
/// work later, and SEARCH is exact without it. Threads this one starts inherit the
/// value. Not `SCHED_IDLE`: a thread that can be kept off the CPU for long must not
/// hold what sessions wait for (the folder queue's lock, the store's text cache, an
/// allocator arena) when it is preempted.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read and set this thread's scheduling value.
    unsafe {
        let thread = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, 10);
    }
}

/// The text SEARCH BODY, TEXT and the header keys compare, folded by i;unicode-casemap
/// as SEARCH folds it ([`casemap::fold`]); `None` when the message cannot be read
/// (SEARCH then reads it every time, and reports the failure itself). The raw message
/// is dropped before the body text is folded.
fn search_text(store: &Store, folder: MailboxId, meta: &MessageMeta) -> Option<MessageText> {
    let summary = store.message_summary(folder, meta.uid).ok()?;
    // A message just appended left its decoded text from its append's parse: then
    // only its header is read back.
    let (raw, body) = match store.take_body_text(meta.body.id) {
        Some(body) => (store.header_of(folder, meta, &summary).ok()?, Some(body)),
        None => (store.bytes_of(folder, meta).ok()?, None),
    };
    let header = &raw[..summary.header_len().min(raw.len())];
    // What SEARCH FROM, SUBJECT, … compare: the values kept at append, or for a message
    // stored before they were kept, the same values taken from its header.
    let kept = match store.search_fields(folder, meta.uid).ok()? {
        Some(kept) => kept,
        None => portico_mime::search_fields(header),
    };
    let body = body.unwrap_or_else(|| portico_mime::body_text(&raw));
    Some(message_text(header, &kept, &body))
}

/// What the index holds of a message, from its header block, the header values SEARCH
/// compares (`kept`) and its decoded body text.
pub fn message_text(header: &[u8], kept: &portico_mime::SearchFields, body: &str) -> MessageText {
    let fields = HeaderField::ALL.map(|field| {
        let values = kept.values(field.name()).unwrap_or_default();
        // Each value folded alone, as the exact check does, and an address field's also
        // without its comments, which the exact check looks through.
        let mut folded: Vec<String> = values.iter().map(|v| casemap::fold(v)).collect();
        if portico_imap::search::is_address_field(field.name()) {
            folded.extend(
                values
                    .iter()
                    .map(|v| casemap::fold(&portico_imap::search::without_comments(v))),
            );
        }
        folded.join("\n")
    });
    MessageText {
        body: casemap::fold(body),
        header: casemap::fold(&portico_mime::header_search_text(header)),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_rounds_back_off_to_the_sweep_interval() {
        let waits: Vec<u64> = (1..=11).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(retry_after(u32::MAX), SWEEP_EVERY);
    }
}
