//! Group commit: many writers, one sync round.
//!
//! A writer makes its change (a sled batch applied, a body record written), takes a
//! ticket, and waits until a sync that began after its ticket has finished. Whoever
//! finds no sync running starts one for every ticket issued so far; the others sleep on
//! the condition variable and wake up durable. Under load this turns N fsyncs into one
//! per round trip of the disk. The store uses one for sled and one for the body log.

use std::sync::{Condvar, Mutex, PoisonError};

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

    /// Takes a ticket for a change that has already been made.
    pub(crate) fn ticket(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.issued += 1;
        state.issued
    }

    /// Sync rounds done so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .syncs
    }

    /// Highest ticket known durable.
    pub(crate) fn synced(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .synced
    }

    /// Returns once the change behind `ticket` is durable, running `sync` itself when no
    /// other thread is.
    pub(crate) fn wait_durable<E>(
        &self,
        ticket: u64,
        sync: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        let mut sync = Some(sync);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if state.synced >= ticket {
                return Ok(());
            }
            if !state.running {
                state.running = true;
                let target = state.issued;
                drop(state);
                // INVARIANT: this branch runs at most once per call: after it either the
                // ticket is synced and the loop returns, or the error is returned.
                let outcome = match sync.take() {
                    Some(sync) => sync(),
                    None => Ok(()),
                };
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
