//! Group commit: many writers, one sync round.
//!
//! A writer makes its change (a sled batch applied, a body record written), takes a
//! ticket, and waits until a sync that began after its ticket has finished. Whoever
//! finds no sync running starts one for every ticket issued so far; the others sleep on
//! the condition variable and wake up durable. The store uses one for sled and one for
//! the body log.
//!
//! Writers that are on their way (a delivery received, its message being indexed)
//! announce themselves with [`GroupCommit::arrive`]. A round's leader waits, up to a
//! bounded delay, for the writers announced when it starts to take their tickets, and
//! for as many tickets as the last round covered (under steady concurrency the same
//! clients come back), so that concurrent deliveries share one sync instead of each
//! catching the next: PostgreSQL's `commit_delay`/`commit_siblings`, driven by writers
//! in flight and the last group's size rather than a fixed sleep. A lone writer never
//! waits; when concurrency drops, one round waits out the delay and the next does not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Default)]
struct SyncState {
    /// Highest ticket handed out; every write up to it is applied in memory.
    issued: u64,
    /// Highest ticket known durable.
    synced: u64,
    /// A sync round (its gathering included) is under way on some thread.
    running: bool,
    /// Writers announced but without a ticket yet.
    arriving: usize,
    /// Announcements ended so far (a ticket taken or withdrawn), ever.
    departed: u64,
    /// Tickets the last round covered: under steady concurrency the next round can
    /// expect as many.
    last_round: u64,
    /// A leader is waiting for tickets: every new one must wake it.
    gathering: bool,
}

pub(crate) struct GroupCommit {
    state: Mutex<SyncState>,
    wake: Condvar,
    /// Longest a leader waits for announced writers.
    gather: Duration,
    /// Sync rounds done since open (for benchmarks and the metrics page).
    syncs: AtomicU64,
}

/// A writer on its way to a ticket; dropping it without one withdraws the announcement.
pub(crate) struct Arrival {
    commit: Option<Arc<GroupCommit>>,
}

impl Arrival {
    /// Takes the ticket for a change that has been made.
    pub(crate) fn ticket(mut self) -> u64 {
        match self.commit.take() {
            Some(commit) => commit.issue(true),
            None => 0,
        }
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        if let Some(commit) = self.commit.take() {
            let mut state = commit.lock();
            state.arriving = state.arriving.saturating_sub(1);
            state.departed += 1;
            commit.wake.notify_all();
        }
    }
}

impl GroupCommit {
    pub(crate) fn new(gather: Duration) -> Arc<Self> {
        Arc::new(GroupCommit {
            state: Mutex::new(SyncState::default()),
            wake: Condvar::new(),
            gather,
            syncs: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Announces a writer that will take a ticket soon.
    pub(crate) fn arrive(self: &Arc<Self>) -> Arrival {
        self.lock().arriving += 1;
        Arrival {
            commit: Some(self.clone()),
        }
    }

    /// Takes a ticket for a change that has already been made (by a writer that did not
    /// announce itself).
    pub(crate) fn ticket(&self) -> u64 {
        self.issue(false)
    }

    fn issue(&self, arrived: bool) -> u64 {
        let mut state = self.lock();
        state.issued += 1;
        if arrived {
            state.arriving = state.arriving.saturating_sub(1);
            state.departed += 1;
        }
        if state.gathering {
            self.wake.notify_all();
        }
        state.issued
    }

    /// Sync rounds done so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Highest ticket known durable.
    pub(crate) fn synced(&self) -> u64 {
        self.lock().synced
    }

    /// Returns once the change behind `ticket` is durable, running `sync` itself when no
    /// other thread is.
    pub(crate) fn wait_durable<E>(
        &self,
        ticket: u64,
        sync: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        let mut sync = Some(sync);
        let mut state = self.lock();
        loop {
            if state.synced >= ticket {
                return Ok(());
            }
            if state.running {
                state = self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.running = true;
            // Waits for the writers on their way now, not for those announced later
            // (they make the next round), so a steady stream never stalls a round.
            let deadline = Instant::now() + self.gather;
            let (expected, since) = (state.arriving as u64, state.departed);
            let group = state.last_round;
            state.gathering = true;
            while state.departed - since < expected || state.issued - state.synced < group {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                state = self
                    .wake
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            state.gathering = false;
            let target = state.issued;
            drop(state);
            // INVARIANT: this branch runs at most once per call: after it either the
            // ticket is synced and the loop returns, or the error is returned.
            let outcome = match sync.take() {
                Some(sync) => sync(),
                None => Ok(()),
            };
            state = self.lock();
            state.running = false;
            if outcome.is_ok() {
                state.last_round = target.saturating_sub(state.synced);
                state.synced = state.synced.max(target);
                self.syncs.fetch_add(1, Ordering::Relaxed);
            }
            self.wake.notify_all();
            outcome?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::thread::JoinHandle;

    /// A thread waiting for `ticket`, counting the sync rounds it runs.
    fn lead(
        commit: &Arc<GroupCommit>,
        ticket: u64,
    ) -> (JoinHandle<Result<(), ()>>, Arc<AtomicUsize>) {
        let rounds = Arc::new(AtomicUsize::new(0));
        let (commit, counted) = (commit.clone(), rounds.clone());
        let leader = std::thread::spawn(move || {
            commit.wait_durable(ticket, || -> Result<(), ()> {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        });
        (leader, rounds)
    }

    #[test]
    fn a_leader_waits_for_announced_writers_and_syncs_them_together() {
        let commit = GroupCommit::new(Duration::from_secs(5));
        let late = commit.arrive();
        let first = commit.ticket();
        let (leader, rounds) = lead(&commit, first);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(rounds.load(Ordering::SeqCst), 0, "the leader gathers");
        let second = late.ticket();
        leader.join().unwrap().unwrap();
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        // The late writer's change was covered by the same round.
        commit
            .wait_durable(second, || -> Result<(), ()> { panic!("a second round") })
            .unwrap();
    }

    #[test]
    fn a_leader_expects_as_many_tickets_as_the_last_round_covered() {
        let commit = GroupCommit::new(Duration::from_secs(5));
        let tickets: Vec<u64> = (0..3).map(|_| commit.ticket()).collect();
        commit
            .wait_durable(tickets[2], || -> Result<(), ()> { Ok(()) })
            .unwrap();
        let first = commit.ticket();
        let (leader, rounds) = lead(&commit, first);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(rounds.load(Ordering::SeqCst), 0, "waiting for two more");
        commit.ticket();
        let last = commit.ticket();
        leader.join().unwrap().unwrap();
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        commit
            .wait_durable(last, || -> Result<(), ()> { panic!("a second round") })
            .unwrap();
    }

    #[test]
    fn a_withdrawn_announcement_and_a_lone_writer_never_wait() {
        let commit = GroupCommit::new(Duration::from_secs(60));
        drop(commit.arrive());
        let ticket = commit.ticket();
        let started = Instant::now();
        commit
            .wait_durable(ticket, || -> Result<(), ()> { Ok(()) })
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(commit.syncs(), 1);
    }
}
