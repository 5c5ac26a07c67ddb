//! Raft's log and vote in two trees of the directory database: `raft_log` (entries by
//! big-endian index, so sled's order is the log's) and `raft_meta` (vote, committed and
//! last purged log ids). Entries and votes are flushed to disk before openraft is told
//! they are stored.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Tree;

use crate::{Database, DirectoryRaft, NodeId, decode, encode, read_value, write_value};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// Raft's log store; cheap to clone (the log reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    db: Database,
    log: Tree,
    meta: Tree,
}

fn read_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

fn write_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    pub(crate) fn open(db: &Database) -> sled::Result<LogStore> {
        Ok(LogStore {
            db: db.clone(),
            log: db.open_tree("raft_log")?,
            meta: db.open_tree("raft_meta")?,
        })
    }

    fn read_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError<NodeId>> {
        read_value(&self.meta, key, StorageIOError::read_logs)
    }

    fn write_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError<NodeId>> {
        write_value(&self.meta, key, value, StorageIOError::write_logs)
    }

    async fn flush(&self) -> io::Result<()> {
        self.db.flush().await
    }

    /// Removes the entries with an index in `range`.
    fn remove_entries(&self, from: u64, to: Bound<u64>) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        let range = match to {
            Bound::Included(to) => self.log.range(index_key(from)..=index_key(to)),
            _ => self.log.range(index_key(from)..),
        };
        for item in range {
            let (key, _) = item.map_err(write_error)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(write_error)
    }
}

impl RaftLogReader<DirectoryRaft> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<DirectoryRaft>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => match i.checked_add(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        for item in self.log.range(index_key(start)..) {
            let (key, value) = item.map_err(read_error)?;
            let index = u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| read_error(io::Error::other("a Raft log key is not 8 bytes")))?,
            );
            if !range.contains(&index) {
                break;
            }
            entries.push(decode(&value).map_err(read_error)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<DirectoryRaft> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<DirectoryRaft>, StorageError<NodeId>> {
        let last_purged: Option<LogId<NodeId>> = self.read_meta(LAST_PURGED)?;
        let last = match self.log.last().map_err(read_error)? {
            Some((_, value)) => {
                let entry: Entry<DirectoryRaft> = decode(&value).map_err(read_error)?;
                Some(entry.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(VOTE, vote)?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.write_meta(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .read_meta::<Option<LogId<NodeId>>>(COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<DirectoryRaft>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<DirectoryRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = encode(&entry).map_err(write_error)?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        self.log.apply_batch(batch).map_err(write_error)?;
        callback.log_io_completed(self.flush().await);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove_entries(log_id.index, Bound::Unbounded)?;
        self.flush().await.map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // The mark first: a crash between the two leaves entries below it, never a hole.
        self.write_meta(LAST_PURGED, &log_id)?;
        self.remove_entries(0, Bound::Included(log_id.index))?;
        self.flush().await.map_err(write_error)
    }
}
