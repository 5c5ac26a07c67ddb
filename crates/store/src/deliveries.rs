//! Copies delivered under an id. A node that hands a message to a mailbox's home node
//! names each copy; the home node records the name in the same commit as the message,
//! so a delivery retried after a lost answer (or a crash right after the commit) finds
//! the copy already stored and stores nothing. Records are dropped after a week, far
//! longer than any sender retries.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::keys;
use crate::record::{decode, encode};
use crate::store::{Store, Txn, now_secs};
use crate::types::{MailboxId, Uid};

/// Where a named copy went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredCopy {
    pub mailbox: MailboxId,
    pub uid: Uid,
    /// Seconds since the epoch when it was stored.
    pub at: i64,
}

impl Store {
    /// The copy delivered under `id`, if one was.
    pub fn delivered(&self, id: &str) -> Result<Option<DeliveredCopy>> {
        self.read(&keys::delivered(id))
    }

    /// Forgets the names of copies stored before `before` (seconds since the epoch);
    /// returns how many.
    pub fn forget_deliveries_before(&self, before: i64) -> Result<usize> {
        let mut stale = Vec::new();
        for entry in self.db().scan_prefix([keys::DELIVERED]) {
            let (key, value) = entry?;
            let copy: DeliveredCopy = decode(&value)?;
            if copy.at < before {
                stale.push(key);
            }
        }
        if stale.is_empty() {
            return Ok(0);
        }
        let guard = self.lock_writer();
        let mut txn = Txn::default();
        for key in &stale {
            txn.batch.remove(key.clone());
        }
        self.commit(txn, guard)?;
        Ok(stale.len())
    }
}

/// The record of a named copy, written with its message.
pub(crate) fn record(mailbox: MailboxId, uid: Uid) -> Result<Vec<u8>> {
    encode(&DeliveredCopy {
        mailbox,
        uid,
        at: now_secs(),
    })
}

#[cfg(test)]
mod tests {
    use crate::{Flags, INBOX, Store, StoreOptions};

    #[test]
    fn a_named_copy_is_recorded_with_its_message_and_forgotten_when_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let account = store.create_account("ann@example.com", "!").unwrap();
        let inbox = store
            .mailbox_by_name(account.id, INBOX)
            .unwrap()
            .unwrap()
            .id;
        assert_eq!(store.delivered("s1/1/ann@example.com").unwrap(), None);
        let mut staged = store
            .stage_message(b"Subject: a\r\n\r\na\r\n", None)
            .unwrap();
        staged.deliver_as("s1/1/ann@example.com".into());
        let (appended, ticket) = store
            .append_staged(inbox, staged, &Flags::default(), (0, 0))
            .unwrap();
        store.finish_append(inbox, appended, ticket).unwrap();
        let copy = store.delivered("s1/1/ann@example.com").unwrap().unwrap();
        assert_eq!((copy.mailbox, copy.uid), (inbox, appended.uid));
        // An unnamed append records nothing.
        store
            .append(inbox, b"Subject: b\r\n\r\nb\r\n", &Flags::default(), (0, 0))
            .unwrap();
        assert_eq!(store.db().scan_prefix([crate::keys::DELIVERED]).count(), 1);
        assert_eq!(store.forget_deliveries_before(copy.at).unwrap(), 0);
        assert_eq!(store.forget_deliveries_before(copy.at + 1).unwrap(), 1);
        assert_eq!(store.delivered("s1/1/ann@example.com").unwrap(), None);
    }
}
