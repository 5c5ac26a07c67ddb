//! Group commit: many writers, one `flush` + `fdatasync`.
//!
//! A writer applies its batch to sled, takes a ticket, and waits until a sync that began
//! after its ticket has finished. Whoever finds no sync running starts one for every
//! ticket issued so far; the others sleep on the condition variable and wake up durable.
//! Under load this turns N fsyncs into one per round trip of the disk.

use std::fs::File;
use std::sync::{Condvar, Mutex, PoisonError};

use crate::error::Result;

#[derive(Default)]
struct SyncState {
    /// Highest ticket handed out; every write up to it is applied in memory.
    issued: u64,
    /// Highest ticket known durable.
    synced: u64,
    /// A sync is running on some thread.
    running: bool,
    /// Syncs done since open (for benchmarks and the metrics page).
    syncs: u64,
}

pub(crate) struct GroupCommit {
    state: Mutex<SyncState>,
    wake: Condvar,
}

impl GroupCommit {
    pub(crate) fn new() -> Self {
        GroupCommit {
            state: Mutex::new(SyncState::default()),
            wake: Condvar::new(),
        }
    }

    /// Takes a ticket for a write that has already been applied to sled.
    pub(crate) fn ticket(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.issued += 1;
        state.issued
    }

    /// Flush + fdatasync rounds done so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .syncs
    }

    /// Returns once the write behind `ticket` is durable.
    pub(crate) fn wait_durable(&self, ticket: u64, db: &sled::Db, db_file: &File) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if state.synced >= ticket {
                return Ok(());
            }
            if !state.running {
                state.running = true;
                let target = state.issued;
                drop(state);
                let outcome = sync_now(db, db_file);
                state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.running = false;
                if outcome.is_ok() {
                    state.synced = state.synced.max(target);
                    state.syncs += 1;
                }
                self.wake.notify_all();
                outcome?;
            } else {
                state = self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

/// sled's `flush` writes its log buffers and calls `sync_file_range`, which is not
/// durable against a power cut; `fdatasync` on the same file finishes the job.
fn sync_now(db: &sled::Db, db_file: &File) -> Result<()> {
    db.flush()?;
    db_file.sync_data()?;
    Ok(())
}
