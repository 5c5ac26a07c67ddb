//! Keeping the store healthy: compaction of the body log and `fsck`.
//!
//! Compaction rewrites the live records of mostly-dead sealed segments into the active
//! segment and deletes a segment only once the metadata pointing at the new places is
//! durable, so a crash at any step leaves every body readable (at worst a copy twice,
//! one of them garbage). `fsck` reads every record and index entry, reports what is
//! damaged, and with `repair` sets damaged messages aside (quarantine) so the rest of
//! the folder serves normally, and fixes folder counters.

use std::collections::{HashMap, HashSet};

use crate::bodylog::{BodyLocation, MARKER_ID};
use crate::error::{Result, StoreError};
use crate::keys;
use crate::record::{decode, encode};
use crate::store::{Store, Txn, message_name};
use crate::types::*;

/// What one compaction pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactionReport {
    pub segments_removed: usize,
    pub records_moved: usize,
    pub bytes_reclaimed: u64,
}

/// The points of a compaction where a crash test can stop the process.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionStep {
    /// Live records copied into the active segment, not yet durable.
    Copied,
    /// The copies are durable; the metadata still points at the old places.
    CopiesDurable,
    /// The metadata points at the copies, not yet durable.
    MetadataApplied,
    /// The metadata change is durable; the old segment still exists.
    MetadataDurable,
    /// The old segment is deleted.
    SegmentRemoved,
}

/// What `fsck` found (and, with repair, did).
#[derive(Debug, Default, Clone)]
pub struct FsckReport {
    pub accounts: u64,
    pub folders: u64,
    pub messages: u64,
    pub queued: u64,
    pub bodies_checked: u64,
    /// One line per damaged message or queue entry, naming it.
    pub damaged: Vec<String>,
    /// Index entries that disagree with what they index.
    pub index_errors: Vec<String>,
    /// Body records nothing points at any more (reclaimed by compaction).
    pub unreferenced_bodies: u64,
    /// Body records with ids the metadata never handed out: appends in flight at a
    /// crash, or changes the metadata database lost (a damaged `db`).
    pub bodies_beyond_metadata: u64,
    /// Repair: damaged messages set aside.
    pub quarantined: u64,
    /// Repair: folders whose counters were corrected.
    pub folders_fixed: u64,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.index_errors.is_empty() && self.bodies_beyond_metadata == 0
    }
}

/// A sealed segment is compacted when its live records take less than this share.
const COMPACT_BELOW_LIVE_PERCENT: u64 = 50;

impl Store {
    /// Every body location, by segment.
    fn bodies_by_segment(&self) -> Result<HashMap<u64, Vec<(u64, BodyLocation)>>> {
        let mut out: HashMap<u64, Vec<(u64, BodyLocation)>> = HashMap::new();
        for entry in self.db().scan_prefix([keys::BODY_LOCATION]) {
            let (key, value) = entry?;
            let id = keys::body_id_of_key(&key)
                .ok_or_else(|| StoreError::Corrupt("body location key".into()))?;
            let location: BodyLocation = decode(&value)?;
            out.entry(location.segment)
                .or_default()
                .push((id, location));
        }
        Ok(out)
    }

    /// One compaction pass over the sealed segments.
    pub fn compact(&self) -> Result<CompactionReport> {
        self.compact_with(&mut |_| {})
    }

    /// [`Store::compact`] calling `step` at each point a crash could happen.
    #[doc(hidden)]
    pub fn compact_with(&self, step: &mut dyn FnMut(CompactionStep)) -> Result<CompactionReport> {
        let mut report = CompactionReport::default();
        let active = self.bodies.active_segment();
        // Pins first, then the scan: a record is linked before its pin drops, so a
        // segment without pins shows every record it holds in the scan that follows.
        let candidates: Vec<(u64, u64)> = self
            .bodies
            .segments()?
            .into_iter()
            .filter(|(id, _)| *id < active && !self.bodies.is_pinned(*id))
            .collect();
        if candidates.is_empty() {
            return Ok(report);
        }
        let mut by_segment = self.bodies_by_segment()?;
        for (segment, file_len) in candidates {
            let live = by_segment.remove(&segment).unwrap_or_default();
            let live_bytes: u64 = live.iter().map(|(_, l)| l.record_len()).sum();
            if live_bytes * 100 >= file_len * COMPACT_BELOW_LIVE_PERCENT && !live.is_empty() {
                continue;
            }
            let mut moved = Vec::new();
            let mut kept_damaged = false;
            let mut pins = Vec::new();
            for (id, old) in live {
                let bytes = match self.bodies.read(id, old) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        tracing::warn!(body = id, error = %e, "compaction: leaving a damaged body where it is");
                        kept_damaged = true;
                        continue;
                    }
                };
                let written = self.bodies.write(id, &bytes)?;
                moved.push((id, old, written.location));
                pins.push(written.pin);
            }
            step(CompactionStep::Copied);
            self.bodies.sync()?;
            step(CompactionStep::CopiesDurable);
            if !moved.is_empty() {
                let guard = self.lock_writer();
                let mut txn = Txn::default();
                for (id, old, new) in &moved {
                    // Released meanwhile (the last message using it was expunged): the
                    // copy is garbage, the location stays gone.
                    if self.body_location(BodyRef {
                        id: *id,
                        legacy_chunks: 0,
                    })? == Some(*old)
                    {
                        txn.batch.insert(keys::body_location(*id), encode(new)?);
                    }
                }
                let ticket = self.apply(txn, guard)?;
                step(CompactionStep::MetadataApplied);
                self.wait_committed(ticket)?;
                step(CompactionStep::MetadataDurable);
            }
            drop(pins);
            report.records_moved += moved.len();
            if kept_damaged {
                continue;
            }
            self.bodies.remove_segment(segment)?;
            step(CompactionStep::SegmentRemoved);
            report.segments_removed += 1;
            report.bytes_reclaimed += file_len.saturating_sub(live_bytes);
        }
        if report.segments_removed > 0 {
            tracing::info!(
                segments = report.segments_removed,
                records = report.records_moved,
                bytes = report.bytes_reclaimed,
                "body log compacted"
            );
        }
        Ok(report)
    }

    /// Checks every account, folder, message, queue entry and body record; with
    /// `repair`, sets damaged messages aside and corrects folder counters.
    pub fn fsck(&self, repair: bool) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let mut referenced: HashSet<u64> = HashSet::new();
        for account in self.db().scan_prefix([keys::ACCOUNT]) {
            let (key, value) = account?;
            report.accounts += 1;
            match decode::<Account>(&value) {
                Ok(account) => {
                    if self.account_by_address(&account.address)?.map(|a| a.id) != Some(account.id)
                    {
                        report
                            .index_errors
                            .push(format!("account {}: address index", account.address));
                    }
                    for mailbox in self.mailboxes(account.id)? {
                        self.fsck_folder(&account, mailbox, repair, &mut report, &mut referenced)?;
                    }
                }
                Err(e) => report
                    .index_errors
                    .push(format!("account record {key:?}: {e}")),
            }
        }
        for entry in self.queue()? {
            report.queued += 1;
            report.bodies_checked += 1;
            referenced.insert(entry.body_id());
            if let Err(e) = self.queued_bytes(&entry) {
                report.damaged.push(e.to_string());
            }
        }
        for entry in self.db().scan_prefix([keys::QUARANTINE]) {
            let meta: MessageMeta = decode(&entry?.1)?;
            referenced.insert(meta.body.id);
        }
        for (_, bodies) in self.bodies_by_segment()? {
            report.unreferenced_bodies += bodies
                .iter()
                .filter(|(id, _)| !referenced.contains(id))
                .count() as u64;
        }
        let known = self.committed_changes()?;
        if let Some(marker) = self.log_marker.filter(|m| *m > known) {
            report.index_errors.push(format!(
                "the metadata database is missing acknowledged changes: the body log shows \
                 change {marker} was durable, the database knows only {known}"
            ));
        }
        let last_id = self.last_body_id()?;
        for (segment, _) in self.bodies.segments()? {
            report.bodies_beyond_metadata += self
                .bodies
                .scan_segment(segment)?
                .iter()
                .filter(|(_, id, _)| *id > last_id && *id != MARKER_ID)
                .count() as u64;
        }
        Ok(report)
    }

    fn fsck_folder(
        &self,
        account: &Account,
        mut folder: Mailbox,
        repair: bool,
        report: &mut FsckReport,
        referenced: &mut HashSet<u64>,
    ) -> Result<()> {
        report.folders += 1;
        let place = format!("{} folder '{}'", account.address, folder.name);
        let (mut count, mut size, mut top_uid, mut top_modseq) = (0u32, 0u64, 0u32, 0u64);
        let mut counts = FolderCounts::default();
        let mut damaged = Vec::new();
        for entry in self.db().scan_prefix(keys::messages(folder.id)) {
            let (key, value) = entry?;
            let uid = keys::uid_of_message_key(&key)
                .ok_or_else(|| StoreError::Corrupt("message key".into()))?;
            report.messages += 1;
            let meta: MessageMeta = match decode(&value) {
                Ok(meta) => meta,
                Err(e) => {
                    report
                        .index_errors
                        .push(format!("{place}: UID {}: record: {e}", uid.0));
                    continue;
                }
            };
            referenced.insert(meta.body.id);
            report.bodies_checked += 1;
            let problem = match self.message_bytes(folder.id, uid) {
                Ok(_) => match self.db().get(keys::summary(folder.id, uid))? {
                    Some(bytes) if decode::<portico_mime::MessageSummary>(&bytes).is_err() => {
                        Some("MIME summary does not decode".to_string())
                    }
                    _ => None,
                },
                Err(StoreError::Damaged(why)) => Some(why),
                Err(e) => return Err(e),
            };
            match problem {
                Some(why) => {
                    report
                        .damaged
                        .push(format!("{place}: UID {}: {why}", uid.0));
                    top_modseq = top_modseq.max(meta.modseq.0);
                    damaged.push(meta);
                }
                None => {
                    count += 1;
                    size += meta.size;
                    top_modseq = top_modseq.max(meta.modseq.0);
                    let one = FolderCounts::of(&meta.flags);
                    counts.unseen += one.unseen;
                    counts.deleted += one.deleted;
                }
            }
            top_uid = top_uid.max(uid.0);
        }
        let kept: Option<FolderCounts> = self.read(&keys::folder_counts(folder.id))?;
        let counts_wrong = kept.is_some_and(|kept| kept != counts);
        if !repair {
            let expected = (folder.messages, folder.size);
            if damaged.is_empty() && expected != (count, size) {
                report.index_errors.push(format!(
                    "{place}: counters say {} messages / {} bytes, found {count} / {size}",
                    expected.0, expected.1
                ));
            }
            if let (true, Some(kept)) = (damaged.is_empty() && counts_wrong, kept) {
                report.index_errors.push(format!(
                    "{place}: counters say {} unseen / {} deleted, found {} / {}",
                    kept.unseen, kept.deleted, counts.unseen, counts.deleted
                ));
            }
            return Ok(());
        }
        let guard = self.lock_writer();
        let mut txn = Txn::default();
        for meta in &damaged {
            folder.highest_modseq = ModSeq(folder.highest_modseq.0.max(top_modseq) + 1);
            txn.batch
                .insert(keys::quarantined(folder.id, meta.uid), encode(meta)?);
            txn.batch.remove(keys::message(folder.id, meta.uid));
            for key in keys::beside_message(folder.id, meta.uid) {
                txn.batch.remove(key);
            }
            txn.batch.insert(
                keys::expunged(folder.id, meta.uid),
                &folder.highest_modseq.0.to_be_bytes(),
            );
            tracing::warn!(what = %message_name(folder.id, meta.uid), "fsck: quarantined");
            report.quarantined += 1;
        }
        let fixed = folder.messages != count
            || folder.size != size
            || counts_wrong
            || folder.uidnext.0 <= top_uid
            || folder.highest_modseq.0 < top_modseq;
        if fixed || !damaged.is_empty() {
            folder.messages = count;
            folder.size = size;
            txn.batch
                .insert(keys::folder_counts(folder.id), encode(&counts)?);
            folder.uidnext = Uid(folder.uidnext.0.max(top_uid.saturating_add(1)));
            folder.highest_modseq = ModSeq(folder.highest_modseq.0.max(top_modseq));
            txn.batch.insert(keys::mailbox(folder.id), encode(&folder)?);
            self.commit(txn, guard)?;
            if fixed {
                report.folders_fixed += 1;
            }
        }
        Ok(())
    }
}
