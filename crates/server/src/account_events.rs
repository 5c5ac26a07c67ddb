//! Changes anywhere in an account, for the IMAP sessions that asked with NOTIFY
//! (RFC 5465).
//!
//! A session with a folder selected hears of that folder's changes from its mailbox
//! actor ([`crate::mailbox::FolderChanged`]). NOTIFY also wants the other folders'
//! message counts, and folders made, deleted, renamed, subscribed and annotated. Every
//! session of an account runs on the account's home node, so one table per node is
//! enough: mailbox actors and the commands that change names publish here, and each
//! listening session gets what concerns its account. Nothing is published for an
//! account nobody listens to, and with no listener at all on the node a publish costs
//! one atomic load.
//!
//! Message changes are the many ones (a burst of deliveries, a STORE over a folder):
//! they are gathered per listener into the folders whose STATUS it owes ([`Owed`]), and
//! the session is woken once until it takes them, so a burst never fills its queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix::prelude::*;
use portico_imap::request::AccountEvent;
use portico_store::{AccountId, MailboxId};

use crate::mailbox::SessionId;

/// One change in an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountChange {
    /// Messages came or went (`messages`), or only flags changed, in a folder: added to
    /// each listener's [`Owed`]; the session reads the folder's STATUS when it tells it.
    Messages { mailbox: MailboxId, messages: bool },
    /// To a listener: its [`Owed`] was empty and has folders now.
    StatusOwed,
    /// Anything else, as the IMAP session takes it; [`AccountEvent::Overflow`] when the
    /// session's queue was full: it missed changes and hears no more (§5.8).
    Told(AccountEvent),
}

/// A change pushed to a listening session.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct AccountChanged {
    /// The session whose command made the change; it is not told (§5).
    pub origin: Option<SessionId>,
    pub change: AccountChange,
}

/// The folders whose STATUS a listening session owes its client, and whether their
/// messages changed (else only flags). The session takes them all at once.
pub type Owed = Arc<Mutex<HashMap<MailboxId, bool>>>;

struct Listener {
    session: SessionId,
    recipient: Recipient<AccountChanged>,
    owed: Owed,
}

/// Who listens to which account on this node.
#[derive(Default)]
pub struct AccountEvents {
    listeners: Mutex<HashMap<AccountId, Vec<Listener>>>,
    /// Listeners in all, so a publish with none anywhere takes no lock.
    count: AtomicUsize,
}

impl AccountEvents {
    /// `session` hears of `account`'s changes from now on (once, however often asked);
    /// returns where its owed STATUSes gather.
    pub fn listen(
        &self,
        account: AccountId,
        session: SessionId,
        recipient: Recipient<AccountChanged>,
    ) -> Owed {
        let mut listeners = self.lock();
        let list = listeners.entry(account).or_default();
        if let Some(listener) = list.iter().find(|l| l.session == session) {
            return listener.owed.clone();
        }
        let owed = Owed::default();
        list.push(Listener {
            session,
            recipient,
            owed: owed.clone(),
        });
        self.count.fetch_add(1, Ordering::Relaxed);
        owed
    }

    /// `session` hears no more.
    pub fn stop(&self, account: AccountId, session: SessionId) {
        let mut listeners = self.lock();
        if let Some(list) = listeners.get_mut(&account) {
            let before = list.len();
            list.retain(|l| l.session != session);
            self.count.fetch_sub(before - list.len(), Ordering::Relaxed);
            if list.is_empty() {
                listeners.remove(&account);
            }
        }
    }

    /// Tells every listener of `account` but `origin`. One whose queue is full is
    /// dropped and told so, rather than letting server memory grow.
    pub fn publish(&self, account: AccountId, origin: Option<SessionId>, change: AccountChange) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut listeners = self.lock();
        let Some(list) = listeners.get_mut(&account) else {
            return;
        };
        let before = list.len();
        list.retain(|listener| {
            if Some(listener.session) == origin {
                return true;
            }
            let message = match &change {
                AccountChange::Messages { mailbox, messages } => {
                    let mut owed = listener.owed.lock().unwrap_or_else(PoisonError::into_inner);
                    let woken = !owed.is_empty();
                    *owed.entry(*mailbox).or_default() |= *messages;
                    if woken {
                        return true;
                    }
                    AccountChanged {
                        origin,
                        change: AccountChange::StatusOwed,
                    }
                }
                other => AccountChanged {
                    origin,
                    change: other.clone(),
                },
            };
            let sent = listener.recipient.try_send(message);
            if sent.is_err() {
                listener.recipient.do_send(AccountChanged {
                    origin: None,
                    change: AccountChange::Told(AccountEvent::Overflow),
                });
            }
            sent.is_ok()
        });
        self.count.fetch_sub(before - list.len(), Ordering::Relaxed);
        if list.is_empty() {
            listeners.remove(&account);
        }
    }

    /// Whether anyone listens to `account` (tests and logs).
    pub fn has_listeners(&self, account: AccountId) -> bool {
        self.lock().contains_key(&account)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, Vec<Listener>>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A session stand-in that keeps what it hears; its queue holds two.
    struct Sink {
        heard: Arc<Mutex<Vec<AccountChange>>>,
    }

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Handler<AccountChanged> for Sink {
        type Result = ();

        fn handle(&mut self, msg: AccountChanged, _: &mut Self::Context) {
            self.heard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(msg.change);
        }
    }

    fn sink() -> (Recipient<AccountChanged>, Arc<Mutex<Vec<AccountChange>>>) {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let for_actor = heard.clone();
        let addr = Sink::create(move |ctx| {
            ctx.set_mailbox_capacity(2);
            Sink { heard: for_actor }
        });
        (addr.recipient(), heard)
    }

    fn deleted(name: &str) -> AccountChange {
        AccountChange::Told(AccountEvent::Deleted { name: name.into() })
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[actix_rt::test]
    async fn listeners_hear_their_account_but_not_their_own_changes() {
        let events = AccountEvents::default();
        let (alice, heard_alice) = sink();
        let (bob, heard_bob) = sink();
        let owed = events.listen(AccountId(1), 10, alice.clone());
        assert!(Arc::ptr_eq(&owed, &events.listen(AccountId(1), 10, alice)));
        events.listen(AccountId(2), 20, bob);
        events.publish(AccountId(1), Some(99), deleted("a"));
        events.publish(AccountId(1), Some(10), deleted("mine"));
        events.publish(AccountId(3), None, deleted("nobody's"));
        settle().await;
        assert_eq!(*heard_alice.lock().unwrap(), vec![deleted("a")]);
        assert!(heard_bob.lock().unwrap().is_empty());
        events.stop(AccountId(2), 20);
        assert!(!events.has_listeners(AccountId(2)));
        assert_eq!(events.count.load(Ordering::Relaxed), 1);
    }

    #[actix_rt::test]
    async fn a_listener_that_falls_behind_is_told_and_dropped() {
        let events = AccountEvents::default();
        let (alice, heard) = sink();
        events.listen(AccountId(1), 10, alice);
        // Published without yielding: the actor reads none before its queue is full.
        for i in 0..10 {
            events.publish(AccountId(1), None, deleted(&i.to_string()));
        }
        assert!(!events.has_listeners(AccountId(1)));
        assert_eq!(events.count.load(Ordering::Relaxed), 0);
        settle().await;
        let heard = heard.lock().unwrap().clone();
        assert_eq!(
            heard.last(),
            Some(&AccountChange::Told(AccountEvent::Overflow)),
            "{heard:?}"
        );
        assert!(heard.len() < 10, "{heard:?}");
    }

    #[actix_rt::test]
    async fn a_burst_of_message_changes_wakes_a_listener_once() {
        let events = AccountEvents::default();
        let (alice, heard) = sink();
        let owed = events.listen(AccountId(1), 10, alice);
        // Far more than the queue holds, without yielding: one wake-up, nothing lost.
        for i in 0..1000u64 {
            let change = AccountChange::Messages {
                mailbox: MailboxId(i % 3),
                messages: i % 3 != 2,
            };
            events.publish(AccountId(1), None, change);
        }
        assert!(events.has_listeners(AccountId(1)));
        settle().await;
        assert_eq!(*heard.lock().unwrap(), vec![AccountChange::StatusOwed]);
        let taken = std::mem::take(&mut *owed.lock().unwrap());
        let expected = HashMap::from([
            (MailboxId(0), true),
            (MailboxId(1), true),
            (MailboxId(2), false),
        ]);
        assert_eq!(taken, expected);
        // Taken: the next change wakes it again.
        events.publish(
            AccountId(1),
            None,
            AccountChange::Messages {
                mailbox: MailboxId(7),
                messages: true,
            },
        );
        settle().await;
        assert_eq!(heard.lock().unwrap().len(), 2);
    }
}
