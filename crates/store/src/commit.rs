//! Group commit: many writers, one sync round.
//!
//! A writer makes its change (a sled batch applied, a body record written), takes a
//! ticket, and waits until a sync that began after its ticket has finished. Whoever
//! finds no sync running starts one for every ticket issued so far; the others sleep
//! until a round ends and wake up durable. A leader gathering writers sleeps on a
//! condition variable of its own: a ticket taken meanwhile wakes only the leader, not
//! every writer waiting for the round. The store uses one for sled and one for the
//! body log.
//!
//! Writers that are on their way (a delivery received, its message being indexed)
//! announce themselves with [`GroupCommit::arrive`]. A round's leader waits, up to a
//! bounded delay, for the writers announced when it starts to take their tickets, and
//! for as many tickets as the last round covered (under steady concurrency the same
//! clients come back), so that concurrent deliveries share one sync instead of each
//! catching the next: PostgreSQL's `commit_delay`/`commit_siblings`, driven by writers
//! in flight and the last group's size rather than a fixed sleep. A lone writer never
//! waits; when concurrency drops, one round waits out the delay and the next does not.
//!
//! A ticket carries the number of writes it stands for (one batch may link several
//! appends), so that an observer ([`GroupCommit::observe`], the server's metrics) learns
//! how many writes each round made durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Told, after each successful round, how many writes it made durable. Runs on the
/// thread that ran the round, while the others still wait for it: it must be quick.
pub type CommitObserver = Box<dyn Fn(u64) + Send + Sync>;

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
    /// Writes behind the tickets issued and not yet in a round.
    unsynced_writes: u64,
}

impl SyncState {
    /// An announced writer took its ticket or withdrew its announcement.
    fn depart(&mut self) {
        self.arriving = self.arriving.saturating_sub(1);
        self.departed += 1;
    }
}

pub(crate) struct GroupCommit {
    state: Mutex<SyncState>,
    /// Signalled when a round ends: the writers waiting for it.
    round_over: Condvar,
    /// Signalled when a ticket is taken or an announcement withdrawn while a leader
    /// gathers: that leader alone.
    gathered: Condvar,
    /// Longest a leader waits for announced writers.
    gather: Duration,
    /// Sync rounds done since open (for benchmarks and the metrics page).
    syncs: AtomicU64,
    observer: OnceLock<CommitObserver>,
}

/// A writer on its way to a ticket; dropping it without one withdraws the announcement.
pub(crate) struct Arrival {
    commit: Option<Arc<GroupCommit>>,
}

impl Arrival {
    /// Takes the ticket for a change that has been made.
    pub(crate) fn ticket(self) -> u64 {
        self.ticket_covering(1)
    }

    /// Takes the ticket for a change of `writes` writes (one batch of several appends).
    pub(crate) fn ticket_covering(mut self, writes: u64) -> u64 {
        match self.commit.take() {
            Some(commit) => commit.issue(true, writes),
            None => 0,
        }
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        if let Some(commit) = self.commit.take() {
            let mut state = commit.lock();
            state.depart();
            commit.wake_gatherer(&state);
        }
    }
}

impl GroupCommit {
    pub(crate) fn new(gather: Duration) -> Arc<Self> {
        Arc::new(GroupCommit {
            state: Mutex::new(SyncState::default()),
            round_over: Condvar::new(),
            gathered: Condvar::new(),
            gather,
            syncs: AtomicU64::new(0),
            observer: OnceLock::new(),
        })
    }

    /// Sets the observer of every successful round from now on; there is one at most,
    /// and this returns false when one was set before.
    pub(crate) fn observe(&self, observer: CommitObserver) -> bool {
        self.observer.set(observer).is_ok()
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
        self.issue(false, 1)
    }

    /// A ticket for no write of its own: it is durable once every change made before
    /// it is.
    pub(crate) fn barrier(&self) -> u64 {
        self.issue(false, 0)
    }

    fn issue(&self, arrived: bool, writes: u64) -> u64 {
        let mut state = self.lock();
        state.issued += 1;
        state.unsynced_writes += writes;
        if arrived {
            state.depart();
        }
        self.wake_gatherer(&state);
        state.issued
    }

    /// Wakes the leader gathering a round, if one is: what it waits for has changed.
    fn wake_gatherer(&self, state: &SyncState) {
        if state.gathering {
            self.gathered.notify_one();
        }
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
                    .round_over
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
                    .gathered
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            state.gathering = false;
            let target = state.issued;
            let writes = std::mem::take(&mut state.unsynced_writes);
            drop(state);
            // INVARIANT: this branch runs at most once per call: after it either the
            // ticket is synced and the loop returns, or the error is returned.
            let outcome = match sync.take() {
                Some(sync) => sync(),
                None => Ok(()),
            };
            if outcome.is_ok()
                && let Some(observer) = self.observer.get()
            {
                observer(writes);
            }
            state = self.lock();
            state.running = false;
            if outcome.is_err() {
                // Not durable: the next round covers them.
                state.unsynced_writes += writes;
            }
            if outcome.is_ok() {
                state.last_round = target.saturating_sub(state.synced);
                state.synced = state.synced.max(target);
                self.syncs.fetch_add(1, Ordering::Relaxed);
            }
            self.round_over.notify_all();
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
    fn the_observer_learns_the_writes_each_round_made_durable() {
        let commit = GroupCommit::new(Duration::ZERO);
        let rounds = Arc::new(Mutex::new(Vec::new()));
        let seen = rounds.clone();
        let observer = move |writes| seen.lock().unwrap().push(writes);
        assert!(commit.observe(Box::new(observer)));
        assert!(!commit.observe(Box::new(|_| {})), "one observer at most");
        commit.ticket();
        let batch = commit.arrive().ticket_covering(3);
        commit
            .wait_durable(batch, || -> Result<(), ()> { Ok(()) })
            .unwrap();
        // A failed round covers nothing; the next one takes its writes.
        let one = commit.ticket();
        assert!(commit.wait_durable(one, || Err(())).is_err());
        let barrier = commit.barrier();
        commit
            .wait_durable(barrier, || -> Result<(), ()> { Ok(()) })
            .unwrap();
        let barrier = commit.barrier();
        commit
            .wait_durable(barrier, || -> Result<(), ()> { Ok(()) })
            .unwrap();
        assert_eq!(*rounds.lock().unwrap(), [4, 1, 0]);
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
