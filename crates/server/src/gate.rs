//! Who is using each mailbox on this node right now, so that a mailbox move can close
//! one: every IMAP or POP3 session and every delivery into a mailbox homed here holds a
//! [`MailboxLease`] for as long as it may write to it. Closing the gate refuses new
//! leases, tells the sessions holding one to end, and waits until the last lease is
//! given back; from then on nothing changes the mailbox until the gate opens again.
//! Mailboxes are named by address, in any spelling: the gate normalizes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::auth::normalize_address;

#[derive(Default)]
pub struct MailboxGate {
    users: Mutex<HashMap<String, Entry>>,
    /// Notified whenever a lease is given back.
    released: Notify,
}

struct Entry {
    leases: usize,
    closed: bool,
    /// Turns true when the gate closes: sessions holding a lease end.
    evict: watch::Sender<bool>,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            leases: 0,
            closed: false,
            evict: watch::channel(false).0,
        }
    }
}

/// One session's or delivery's use of a mailbox; given back when dropped.
pub struct MailboxLease {
    gate: Arc<MailboxGate>,
    user: String,
    evicted: watch::Receiver<bool>,
}

/// The mailbox is closed until this is dropped.
pub struct ClosedMailbox {
    gate: Arc<MailboxGate>,
    user: String,
}

/// A close that gave up: some lease was still held when patience ran out.
#[derive(Debug, thiserror::Error)]
#[error("{held} session(s) or deliveries still use the mailbox after {patience:?}")]
pub struct StillInUse {
    pub held: usize,
    pub patience: Duration,
}

impl MailboxGate {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A lease on `user`'s mailbox, or `None` while the mailbox is closed.
    pub fn enter(self: &Arc<Self>, user: &str) -> Option<MailboxLease> {
        let user = &normalize_address(user);
        let mut users = self.users();
        let entry = users.entry(user.to_string()).or_insert_with(Entry::new);
        if entry.closed {
            return None;
        }
        entry.leases += 1;
        Some(MailboxLease {
            gate: self.clone(),
            user: user.to_string(),
            evicted: entry.evict.subscribe(),
        })
    }

    /// Closes `user`'s mailbox: no new lease, and the sessions holding one are told to
    /// end. Returns once every lease is given back, or gives up (opening the gate
    /// again) after `patience`.
    pub async fn close(
        self: &Arc<Self>,
        user: &str,
        patience: Duration,
    ) -> Result<ClosedMailbox, StillInUse> {
        let user = &normalize_address(user);
        {
            let mut users = self.users();
            let entry = users.entry(user.to_string()).or_insert_with(Entry::new);
            entry.closed = true;
            entry.evict.send_replace(true);
        }
        let closed = ClosedMailbox {
            gate: self.clone(),
            user: user.to_string(),
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let released = self.released.notified();
            let held = self.users().get(user).map_or(0, |entry| entry.leases);
            if held == 0 {
                return Ok(closed);
            }
            // Polled as well: a release between the count and the wait is not missed.
            let wait = tokio::time::timeout(Duration::from_millis(50), released);
            if tokio::time::Instant::now() >= deadline {
                // `closed` opens the gate again as it drops.
                return Err(StillInUse { held, patience });
            }
            let _ = wait.await;
        }
    }

    /// Whether `user`'s mailbox is closed now.
    #[cfg(test)]
    fn is_closed(&self, user: &str) -> bool {
        self.users()
            .get(&normalize_address(user))
            .is_some_and(|entry| entry.closed)
    }
}

impl MailboxLease {
    /// Resolves when the gate closes on this mailbox (at once if it has already).
    pub fn evicted(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut evicted = self.evicted.clone();
        async move {
            // An error means the entry is gone: no close can come for this lease then.
            if evicted.wait_for(|closed| *closed).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for MailboxLease {
    fn drop(&mut self) {
        let mut users = self.gate.users();
        if let Some(entry) = users.get_mut(&self.user) {
            entry.leases = entry.leases.saturating_sub(1);
            if entry.leases == 0 && !entry.closed {
                users.remove(&self.user);
            }
        }
        drop(users);
        self.gate.released.notify_waiters();
    }
}

impl Drop for ClosedMailbox {
    fn drop(&mut self) {
        let mut users = self.gate.users();
        if let Some(entry) = users.get_mut(&self.user) {
            if entry.leases == 0 {
                users.remove(&self.user);
            } else {
                // A close that gave up: the leases still held stay valid.
                entry.closed = false;
                entry.evict = watch::channel(false).0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_mailbox_takes_no_lease_and_waits_for_the_last_one() {
        let gate = Arc::new(MailboxGate::default());
        let session = gate.enter("ann").expect("open");
        let evicted = session.evicted();
        let closing = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.close("ann", Duration::from_secs(5)).await })
        };
        // The session hears of the close, and nothing new gets in meanwhile.
        tokio::time::timeout(Duration::from_secs(1), evicted)
            .await
            .expect("told to end");
        assert!(gate.enter("ann").is_none());
        assert!(gate.enter("bob").is_some(), "other mailboxes stay open");
        assert!(gate.enter(" ANN ").is_none(), "in any spelling");
        assert!(!closing.is_finished());
        drop(session);
        let closed = closing.await.unwrap().expect("closed");
        assert!(gate.is_closed("ann"));
        assert!(gate.enter("ann").is_none());
        drop(closed);
        assert!(!gate.is_closed("ann"));
        let again = gate.enter("ann").expect("open again");
        // A new lease is not told of the old close.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), again.evicted())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_close_that_gives_up_opens_the_mailbox_again() {
        let gate = Arc::new(MailboxGate::default());
        let stuck = gate.enter("ann").expect("open");
        let failed = gate.close("ann", Duration::from_millis(100)).await;
        assert!(matches!(failed, Err(StillInUse { held: 1, .. })));
        assert!(!gate.is_closed("ann"));
        let other = gate.enter("ann").expect("open again");
        drop((stuck, other));
        assert!(gate.users().is_empty(), "nothing kept for unused mailboxes");
    }
}
