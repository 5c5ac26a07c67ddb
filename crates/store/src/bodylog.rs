//! The body log: message bodies in append-only segment files beside sled.
//!
//! sled keeps only small metadata; a body lives here as one record, and sled points at
//! it with a [`BodyLocation`]. Bodies never go into sled because sled writes any page
//! over ~128 KiB to a blob file it never fsyncs.
//!
//! # Record format
//!
//! ```text
//! "PRB1" | payload length u32 | body id u64 | header crc32c u32 | 0u32     24 bytes
//! crc32c of each 64 KiB block of the payload, u32 each                   4 × blocks
//! payload
//! ```
//!
//! All numbers little-endian. The header crc covers the 16 bytes before it, so a
//! header found while scanning can be trusted; the block crcs let a partial read (a
//! header-only FETCH) check exactly the blocks it reads.
//!
//! # Durability
//!
//! Writers reserve space at the end of the active segment under a short lock and write
//! their record outside it. [`BodyLog::wait_durable`] then makes every record written
//! so far durable with one `fdatasync` per dirty segment (group commit: concurrent
//! writers share it), plus an `fsync` of the `bodies/` directory when a segment was
//! created since the last round. Only after that does the store commit the sled
//! metadata that points at the records, so metadata never points at bytes that could
//! vanish in a power cut.
//!
//! # Recovery
//!
//! At open the newest segment is read through: a torn tail (a record whose header or
//! payload ends past the end of the file, or nothing parseable up to it) is cut back to
//! the end of the last whole record. Only unacknowledged data can be there: every
//! acknowledged record was synced. Regions that do not parse in the middle of a segment
//! are garbage from failed writes; they are skipped, and compaction reclaims them.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::commit::{Arrival, GroupCommit};

const MAGIC: &[u8; 4] = b"PRB1";
pub(crate) const HEADER_LEN: u64 = 24;
/// Payload bytes covered by one crc.
pub(crate) const BLOCK: u64 = 64 * 1024;
/// Largest payload a record can hold (the length field is a u32).
pub const MAX_BODY_LEN: u64 = u32::MAX as u64;
/// The body id of a commit marker: a record whose payload is the number of the newest
/// metadata change known durable when it was written (see `Store::wait_committed`).
pub const MARKER_ID: u64 = u64::MAX;

/// Where one body record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BodyLocation {
    pub segment: u64,
    /// Offset of the record's header in the segment.
    pub offset: u64,
    /// Payload length.
    pub len: u64,
}

impl BodyLocation {
    /// Bytes the whole record takes in its segment.
    pub fn record_len(&self) -> u64 {
        record_len(self.len)
    }
}

fn blocks(len: u64) -> u64 {
    len.div_ceil(BLOCK)
}

fn record_len(len: u64) -> u64 {
    HEADER_LEN + 4 * blocks(len) + len
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The record is not what the metadata says, or its checksum fails.
    #[error("body record damaged: {0}")]
    Damaged(String),
}

/// A segment being appended to.
struct ActiveSegment {
    id: u64,
    file: Arc<File>,
    /// Where the next record goes.
    end: u64,
}

struct LogState {
    active: ActiveSegment,
    /// Segments written since the last sync round.
    dirty: BTreeMap<u64, Arc<File>>,
    /// A segment was created since the last directory fsync.
    dir_dirty: bool,
    /// A write to the active segment failed: start a new one before the next write.
    poisoned: bool,
}

/// Records written but not yet pointed at by the metadata, per segment: compaction
/// leaves such segments alone.
type PinTable = Arc<Mutex<HashMap<u64, usize>>>;

/// Keeps a segment from being compacted while a record in it waits to be linked.
pub struct SegmentPin {
    table: PinTable,
    segment: u64,
}

impl Drop for SegmentPin {
    fn drop(&mut self) {
        let mut pins = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = pins.get_mut(&self.segment) {
            *count -= 1;
            if *count == 0 {
                pins.remove(&self.segment);
            }
        }
    }
}

/// A record just written: where it is, the ticket to wait on, and its pin.
pub struct WrittenBody {
    pub location: BodyLocation,
    pub ticket: u64,
    pub pin: SegmentPin,
}

/// The append-only body log of one store.
pub struct BodyLog {
    dir: PathBuf,
    segment_size: u64,
    pins: PinTable,
    state: Mutex<LogState>,
    /// Read handles of every segment, the active one included.
    readers: Mutex<HashMap<u64, Arc<File>>>,
    commit: Arc<GroupCommit>,
    /// fdatasync/fsync calls made (segments and the directory).
    sync_calls: std::sync::atomic::AtomicU64,
}

/// What recovery found at open.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    /// Bytes cut off the newest segment's torn tail.
    pub truncated: u64,
    /// The newest segment and where its last whole record ends: anything the metadata
    /// places at or beyond this point never became durable.
    pub newest_segment: u64,
    pub end: u64,
    /// The highest commit marker in the newest segment (or the one before it).
    pub marker: Option<u64>,
}

pub(crate) fn segment_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

fn segment_id(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
}

fn header(id: u64, len: u64) -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[..4].copy_from_slice(MAGIC);
    out[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    out[8..16].copy_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c(&out[..16]);
    out[16..20].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a header: (body id, payload length), or None when it is not a valid one.
fn parse_header(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() < HEADER_LEN as usize || &bytes[..4] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    if crc32c::crc32c(&bytes[..16]) != crc {
        return None;
    }
    let len = u64::from(u32::from_le_bytes(bytes[4..8].try_into().ok()?));
    let id = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    Some((id, len))
}

/// Builds a whole record.
/// A record's header and crc table: what precedes the payload, which is written from
/// the caller's buffer as it is (a 50 MB message is not copied once more).
fn record_prefix(id: u64, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u64;
    let mut out = Vec::with_capacity((HEADER_LEN + 4 * blocks(len)) as usize);
    out.extend_from_slice(&header(id, len));
    for block in payload.chunks(BLOCK as usize) {
        out.extend_from_slice(&crc32c::crc32c(block).to_le_bytes());
    }
    out
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BodyLog {
    /// Opens (or creates) the log in `dir`, recovering the newest segment's tail.
    /// A sync round's leader waits up to `gather` for writers announced with
    /// [`BodyLog::arrive`] (see `commit.rs`).
    pub fn open(
        dir: &Path,
        segment_size: u64,
        gather: std::time::Duration,
    ) -> io::Result<(BodyLog, Recovery)> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir)?;
        if created && let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(id) = entry.file_name().to_str().and_then(segment_id) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut readers = HashMap::new();
        let mut recovery = Recovery::default();
        let (active, dir_dirty) = match ids.last() {
            Some(&newest) => {
                let file = Arc::new(
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(dir.join(segment_name(newest)))?,
                );
                let end = recover_tail(&file, &mut recovery)?;
                recovery.newest_segment = newest;
                recovery.end = end;
                recovery.marker = newest_marker(&file)?;
                if recovery.marker.is_none()
                    && let Some(&previous) = ids.iter().rev().nth(1)
                {
                    recovery.marker =
                        newest_marker(&File::open(dir.join(segment_name(previous)))?)?;
                }
                (
                    ActiveSegment {
                        id: newest,
                        file,
                        end,
                    },
                    false,
                )
            }
            None => {
                recovery.newest_segment = 1;
                (create_segment(dir, 1)?, true)
            }
        };
        for &id in &ids {
            if id != active.id {
                readers.insert(id, Arc::new(File::open(dir.join(segment_name(id)))?));
            }
        }
        readers.insert(active.id, active.file.clone());
        let log = BodyLog {
            dir: dir.to_path_buf(),
            segment_size: segment_size.max(HEADER_LEN + 4),
            state: Mutex::new(LogState {
                active,
                dirty: BTreeMap::new(),
                dir_dirty,
                poisoned: false,
            }),
            readers: Mutex::new(readers),
            commit: GroupCommit::new(gather),
            sync_calls: std::sync::atomic::AtomicU64::new(0),
            pins: PinTable::default(),
        };
        if dir_dirty {
            sync_dir(&log.dir)?;
            log.lock_state().dir_dirty = false;
        }
        Ok((log, recovery))
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reader(&self, segment: u64) -> Result<Arc<File>, BodyError> {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = readers.get(&segment) {
            return Ok(file.clone());
        }
        match File::open(self.dir.join(segment_name(segment))) {
            Ok(file) => {
                let file = Arc::new(file);
                readers.insert(segment, file.clone());
                Ok(file)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BodyError::Damaged(format!(
                "segment {} is missing",
                segment_name(segment)
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Announces a writer that will call [`BodyLog::write`] soon.
    pub(crate) fn arrive(&self) -> Arrival {
        self.commit.arrive()
    }

    /// Writes a record (not yet durable: see [`BodyLog::wait_durable`]); its segment
    /// stays pinned until the returned pin is dropped.
    pub fn write(&self, id: u64, payload: &[u8]) -> io::Result<WrittenBody> {
        self.write_arrived(id, payload, self.arrive())
    }

    /// [`BodyLog::write`] for a writer that announced itself earlier.
    pub(crate) fn write_arrived(
        &self,
        id: u64,
        payload: &[u8],
        arrival: Arrival,
    ) -> io::Result<WrittenBody> {
        if payload.len() as u64 > MAX_BODY_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "body larger than a record can hold",
            ));
        }
        let prefix = record_prefix(id, payload);
        let (file, location) = {
            let mut state = self.lock_state();
            let len = record_len(payload.len() as u64);
            if state.poisoned
                || (state.active.end > 0 && state.active.end + len > self.segment_size)
            {
                let next = create_segment(&self.dir, state.active.id + 1)?;
                self.readers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(next.id, next.file.clone());
                state.active = next;
                state.dir_dirty = true;
                state.poisoned = false;
            }
            let location = BodyLocation {
                segment: state.active.id,
                offset: state.active.end,
                len: payload.len() as u64,
            };
            state.active.end += len;
            let file = state.active.file.clone();
            *self
                .pins
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(location.segment)
                .or_default() += 1;
            (file, location)
        };
        let pin = SegmentPin {
            table: self.pins.clone(),
            segment: location.segment,
        };
        let written = file
            .write_all_at(&prefix, location.offset)
            .and_then(|()| file.write_all_at(payload, location.offset + prefix.len() as u64));
        if let Err(e) = written {
            // The reserved space is garbage now; later records go to a fresh segment so
            // the failed range is never mistaken for a tail to recover.
            self.lock_state().poisoned = true;
            return Err(e);
        }
        // Marked dirty only now that the bytes are written, and before the ticket: a
        // round that takes the dirty set after this point syncs them, and a round that
        // took it before has a target below our ticket.
        self.lock_state().dirty.insert(location.segment, file);
        Ok(WrittenBody {
            location,
            ticket: arrival.ticket(),
            pin,
        })
    }

    /// Writes a commit marker when a sync round is due anyway (a segment is dirty), so
    /// markers never cost a sync of their own.
    pub(crate) fn mark_if_dirty(&self, seq: u64) -> io::Result<()> {
        if self.lock_state().dirty.is_empty() {
            return Ok(());
        }
        self.write(MARKER_ID, &seq.to_le_bytes()).map(|_| ())
    }

    /// Whether a record in `segment` is written but not yet linked.
    pub fn is_pinned(&self, segment: u64) -> bool {
        self.pins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&segment)
    }

    /// Returns once every record written up to `ticket` is durable.
    pub fn wait_durable(&self, ticket: u64) -> io::Result<()> {
        self.commit.wait_durable(ticket, || self.sync_round())
    }

    /// Makes every record written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        let ticket = self.commit.barrier();
        self.wait_durable(ticket)
    }

    /// One group-commit round: fdatasync every dirty segment, then the directory when
    /// a segment was created. A failed fdatasync poisons the active segment: the kernel
    /// may have dropped the unsynced pages, so nothing more is written after them.
    fn sync_round(&self) -> io::Result<()> {
        let (dirty, dir_dirty) = {
            let mut state = self.lock_state();
            let dirty = std::mem::take(&mut state.dirty);
            let dir_dirty = std::mem::replace(&mut state.dir_dirty, false);
            (dirty, dir_dirty)
        };
        let outcome = (|| {
            for file in dirty.values() {
                self.count_sync();
                file.sync_data()?;
            }
            if dir_dirty {
                self.count_sync();
                sync_dir(&self.dir)?;
            }
            Ok(())
        })();
        if outcome.is_err() {
            let mut state = self.lock_state();
            state.poisoned = true;
            state.dir_dirty |= dir_dirty;
        }
        outcome
    }

    /// Sync rounds done since open.
    pub fn syncs(&self) -> u64 {
        self.commit.syncs()
    }

    fn count_sync(&self) {
        self.sync_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// fdatasync/fsync calls made since open.
    pub fn sync_calls(&self) -> u64 {
        self.sync_calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads a whole payload, checking every block.
    pub fn read(&self, id: u64, location: BodyLocation) -> Result<Vec<u8>, BodyError> {
        self.read_prefix(id, location, location.len)
    }

    /// Reads the first `want` bytes of a body, checked against their checksums.
    pub fn read_prefix(
        &self,
        id: u64,
        location: BodyLocation,
        want: u64,
    ) -> Result<Vec<u8>, BodyError> {
        self.read_range(id, location, 0, want)
    }

    /// Reads `len` bytes of a body from `start` (clamped to the body), checking the
    /// checksummed blocks they span and no others: a client streaming a 50 MB message
    /// reads it a few blocks at a time.
    pub fn read_range(
        &self,
        id: u64,
        location: BodyLocation,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, BodyError> {
        let start = start.min(location.len);
        let len = len.min(location.len - start);
        let file = self.reader(location.segment)?;
        let nblocks = blocks(location.len);
        let table_len = 4 * nblocks;
        let damaged = |what: &str| {
            BodyError::Damaged(format!(
                "{what} in record at {}:{}",
                segment_name(location.segment),
                location.offset
            ))
        };
        let read_at = |buf: &mut [u8], at: u64| {
            file.read_exact_at(buf, at).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => BodyError::Damaged(format!(
                    "record at {}:{} is cut short",
                    segment_name(location.segment),
                    location.offset
                )),
                _ => BodyError::Io(e),
            })
        };
        // The blocks the range spans (the first one even for an empty range, so that a
        // read always checks something of the record).
        let first = (start / BLOCK).min(nblocks.saturating_sub(1));
        let last = if len == 0 {
            first
        } else {
            (start + len - 1) / BLOCK
        };
        let from = (first * BLOCK).min(location.len);
        let to = ((last + 1) * BLOCK).min(location.len);
        let mut buf;
        let payload_start;
        if first == 0 {
            // Header, the crc table and the blocks wanted, in one read.
            buf = vec![0u8; (HEADER_LEN + table_len + to) as usize];
            read_at(&mut buf, location.offset)?;
            payload_start = (HEADER_LEN + table_len) as usize;
        } else {
            buf = vec![0u8; (HEADER_LEN + table_len) as usize];
            read_at(&mut buf, location.offset)?;
            payload_start = buf.len();
            buf.resize(payload_start + (to - from) as usize, 0);
            read_at(
                &mut buf[payload_start..],
                location.offset + HEADER_LEN + table_len + from,
            )?;
        }
        match parse_header(&buf) {
            Some((found_id, found_len)) if found_id == id && found_len == location.len => {}
            Some(_) => return Err(damaged("another body's header")),
            None => return Err(damaged("bad header")),
        }
        let table = &buf[HEADER_LEN as usize..(HEADER_LEN + table_len) as usize];
        for (index, block) in buf[payload_start..].chunks(BLOCK as usize).enumerate() {
            let number = first as usize + index;
            let at = number * 4;
            let expected = u32::from_le_bytes(
                table[at..at + 4]
                    .try_into()
                    .map_err(|_| damaged("bad crc table"))?,
            );
            if crc32c::crc32c(block) != expected {
                return Err(damaged(&format!("checksum mismatch in block {number}")));
            }
        }
        // Moved down in place rather than copied out: no second buffer as big.
        buf.drain(..payload_start + (start - from) as usize);
        buf.truncate(len as usize);
        Ok(buf)
    }

    /// Every segment id with its file length, oldest first.
    pub fn segments(&self) -> io::Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Some(id) = entry.file_name().to_str().and_then(segment_id) {
                out.push((id, entry.metadata()?.len()));
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The segment new records go to.
    pub fn active_segment(&self) -> u64 {
        self.lock_state().active.id
    }

    /// Deletes a sealed segment whose records nothing points at any more, and makes the
    /// deletion durable.
    pub fn remove_segment(&self, segment: u64) -> io::Result<()> {
        if segment == self.active_segment() {
            return Err(io::Error::other("the active segment cannot be removed"));
        }
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&segment);
        match std::fs::remove_file(self.dir.join(segment_name(segment))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        sync_dir(&self.dir)
    }

    /// Every record that parses in a segment: (offset, body id, payload length); regions
    /// that do not parse are skipped.
    pub fn scan_segment(&self, segment: u64) -> Result<Vec<(u64, u64, u64)>, BodyError> {
        let file = self.reader(segment)?;
        Ok(scan(&file)?.records)
    }
}

fn create_segment(dir: &Path, id: u64) -> io::Result<ActiveSegment> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.join(segment_name(id)))?;
    Ok(ActiveSegment {
        id,
        file: Arc::new(file),
        end: 0,
    })
}

struct Scan {
    /// (offset, id, len) of each record whose header parses and whose payload fits.
    records: Vec<(u64, u64, u64)>,
    /// End of the last record that fits in the file.
    end_of_last: u64,
    file_len: u64,
}

/// Walks a segment record by record; where a header does not parse, looks for the next
/// one that does.
fn scan(file: &File) -> io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let mut records = Vec::new();
    let mut at = 0u64;
    let mut end_of_last = 0u64;
    let mut head = [0u8; HEADER_LEN as usize];
    while at + HEADER_LEN <= file_len {
        file.read_exact_at(&mut head, at)?;
        match parse_header(&head) {
            Some((id, len)) if at + record_len(len) <= file_len => {
                records.push((at, id, len));
                at += record_len(len);
                end_of_last = at;
            }
            // A header whose record runs past the end: a torn write.
            Some(_) => break,
            None => match find_next_header(file, at + 1, file_len)? {
                Some(next) => at = next,
                None => break,
            },
        }
    }
    Ok(Scan {
        records,
        end_of_last,
        file_len,
    })
}

/// The offset of the next valid header at or after `from`.
fn find_next_header(file: &File, from: u64, file_len: u64) -> io::Result<Option<u64>> {
    const WINDOW: u64 = 1 << 20;
    let mut start = from;
    while start + HEADER_LEN <= file_len {
        let len = (WINDOW + HEADER_LEN).min(file_len - start);
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, start)?;
        for i in 0..buf.len().saturating_sub(HEADER_LEN as usize - 1) {
            if buf[i..].starts_with(MAGIC) && parse_header(&buf[i..]).is_some() {
                return Ok(Some(start + i as u64));
            }
        }
        start += WINDOW;
    }
    Ok(None)
}

/// Cuts the newest segment back to its last whole record, checking that record's
/// payload too (a power cut can leave a header written and its payload not).
fn recover_tail(file: &File, recovery: &mut Recovery) -> io::Result<u64> {
    let scan = scan(file)?;
    let mut end = scan.end_of_last;
    if let Some(&(offset, _, len)) = scan.records.last() {
        let mut record = vec![0u8; record_len(len) as usize];
        file.read_exact_at(&mut record, offset)?;
        if !payload_intact(&record, len) {
            end = offset;
        }
    }
    if end < scan.file_len {
        recovery.truncated = scan.file_len - end;
        tracing::warn!(
            bytes = recovery.truncated,
            "body log: cutting the newest segment's torn tail"
        );
        file.set_len(end)?;
        file.sync_all()?;
    }
    Ok(end)
}

/// The highest commit marker in a segment.
fn newest_marker(file: &File) -> io::Result<Option<u64>> {
    let mut newest = None;
    for (offset, id, len) in scan(file)?.records {
        if id != MARKER_ID || len != 8 {
            continue;
        }
        let mut record = vec![0u8; record_len(len) as usize];
        file.read_exact_at(&mut record, offset)?;
        if payload_intact(&record, len) {
            let at = record.len() - 8;
            let seq = u64::from_le_bytes(record[at..].try_into().unwrap_or([0; 8]));
            newest = newest.max(Some(seq));
        }
    }
    Ok(newest)
}

fn payload_intact(record: &[u8], len: u64) -> bool {
    let table_len = (4 * blocks(len)) as usize;
    let Some(table) = record.get(HEADER_LEN as usize..HEADER_LEN as usize + table_len) else {
        return false;
    };
    let payload = &record[HEADER_LEN as usize + table_len..];
    payload
        .chunks(BLOCK as usize)
        .zip(table.chunks(4))
        .all(|(block, crc)| {
            <[u8; 4]>::try_from(crc).map(u32::from_le_bytes).ok() == Some(crc32c::crc32c(block))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, size: u64) -> BodyLog {
        BodyLog::open(dir, size, std::time::Duration::ZERO)
            .unwrap()
            .0
    }

    #[test]
    fn records_round_trip_and_roll_over() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 200_000);
        let mut written = Vec::new();
        for n in 0..20u64 {
            let payload: Vec<u8> = (0..(n * 20_000 + 1)).map(|i| (i % 251) as u8).collect();
            let record = log.write(n, &payload).unwrap();
            log.wait_durable(record.ticket).unwrap();
            written.push((n, record.location, payload));
        }
        assert!(log.active_segment() > 1, "segments roll over");
        for (id, location, payload) in &written {
            assert_eq!(&log.read(*id, *location).unwrap(), payload);
            let prefix = log.read_prefix(*id, *location, 70_000).unwrap();
            assert_eq!(prefix, payload[..payload.len().min(70_000)]);
        }
        drop(log);
        let (log, recovery) =
            BodyLog::open(dir.path(), 200_000, std::time::Duration::ZERO).unwrap();
        assert_eq!(recovery.truncated, 0);
        for (id, location, payload) in &written {
            assert_eq!(&log.read(*id, *location).unwrap(), payload);
        }
    }

    #[test]
    fn flipped_byte_is_caught_per_block() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 1 << 30);
        let payload = vec![7u8; 200_000];
        let location = log.write(9, &payload).unwrap().location;
        log.sync().unwrap();
        // Damage the last block only.
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join(segment_name(location.segment)))
            .unwrap();
        let at = location.offset + location.record_len() - 10;
        file.write_all_at(&[8], at).unwrap();
        assert!(matches!(
            log.read(9, location),
            Err(BodyError::Damaged(text)) if text.contains("block 3")
        ));
        // The first block still reads.
        assert_eq!(log.read_prefix(9, location, 1000).unwrap(), vec![7u8; 1000]);
        // Another body's id is refused.
        assert!(matches!(
            log.read_prefix(10, location, 10),
            Err(BodyError::Damaged(_))
        ));
    }

    #[test]
    fn torn_tail_is_cut_back_to_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 1 << 30);
        let first = log.write(1, b"first body").unwrap().location;
        let second = log.write(2, &vec![b'x'; 100_000]).unwrap().location;
        log.sync().unwrap();
        drop(log);
        let path = dir.path().join(segment_name(1));
        let whole = first.record_len() + second.record_len();
        for cut in [whole - 1, whole - 50_000, first.record_len() + 10] {
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(cut).unwrap();
            let (log, recovery) =
                BodyLog::open(dir.path(), 1 << 30, std::time::Duration::ZERO).unwrap();
            assert_eq!(recovery.truncated, cut - first.record_len(), "cut at {cut}");
            assert_eq!(log.read(1, first).unwrap(), b"first body");
            assert!(log.read(2, second).is_err());
            // New records go after the first one again.
            let again = log.write(3, b"third").unwrap().location;
            assert_eq!(again.offset, first.record_len());
            log.sync().unwrap();
            drop(log);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(first.record_len())
                .unwrap();
        }
    }

    #[test]
    fn zeroed_tail_and_garbage_in_the_middle() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 1 << 30);
        let a = log.write(1, b"aaaa").unwrap().location;
        let b = log.write(2, b"bbbb").unwrap().location;
        let c = log.write(3, b"cccc").unwrap().location;
        log.sync().unwrap();
        drop(log);
        let path = dir.path().join(segment_name(1));
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        // Garbage over b's header; zeros after c, as a power cut can leave.
        file.write_all_at(&[0xff; 8], b.offset).unwrap();
        let end = c.offset + c.record_len();
        file.write_all_at(&[0u8; 4096], end).unwrap();
        let (log, recovery) =
            BodyLog::open(dir.path(), 1 << 30, std::time::Duration::ZERO).unwrap();
        assert_eq!(recovery.truncated, 4096);
        assert_eq!(log.read(1, a).unwrap(), b"aaaa");
        assert!(log.read(2, b).is_err());
        assert_eq!(log.read(3, c).unwrap(), b"cccc");
        let found: Vec<u64> = log.scan_segment(1).unwrap().iter().map(|r| r.1).collect();
        assert_eq!(found, vec![1, 3]);
    }

    #[test]
    fn missing_segment_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 1 << 30);
        let location = BodyLocation {
            segment: 99,
            offset: 0,
            len: 3,
        };
        assert!(matches!(
            log.read(1, location),
            Err(BodyError::Damaged(text)) if text.contains("missing")
        ));
    }
}
