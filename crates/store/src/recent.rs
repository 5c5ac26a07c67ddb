//! IMAP4rev1's `\Recent` (RFC 3501 §2.3.2), kept across restarts as Dovecot keeps it: a
//! message is recent until a read-write session of the folder has been told of it. Per
//! folder the store keeps the first UID still recent: 1 for a new folder, moved forward
//! by each read-write SELECT. A folder with no value (made before it was kept, and not
//! selected since) has no recent message.
//!
//! A move is applied at once and made durable by the next sync round, not waited for:
//! losing the last one in a power cut shows some messages as recent once more, which
//! is harmless. Messages a session was told of while it had the folder selected are
//! recent again after a restart until the next SELECT (the actor keeps that in memory).

use crate::error::{Result, StoreError};
use crate::keys;
use crate::store::{Store, Txn};
use crate::types::{MailboxId, Uid};

impl Store {
    /// Makes every message of a new folder `\Recent` (in its creating batch).
    pub(crate) fn all_recent(txn: &mut Txn, mailbox: MailboxId) {
        txn.batch
            .insert(keys::first_recent(mailbox), &1u32.to_be_bytes());
    }

    /// The first UID of `mailbox` still `\Recent`, if one was ever kept.
    pub fn first_recent(&self, mailbox: MailboxId) -> Result<Option<Uid>> {
        match self.db().get(keys::first_recent(mailbox))? {
            Some(bytes) => {
                let bytes: [u8; 4] = bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("first recent UID".into()))?;
                Ok(Some(Uid(u32::from_be_bytes(bytes))))
            }
            None => Ok(None),
        }
    }

    /// Moves the first recent UID of `mailbox` to `uid`, unless it is there or past it
    /// already (so writes made in any order keep the newest).
    pub fn advance_first_recent(&self, mailbox: MailboxId, uid: Uid) -> Result<()> {
        // Most SELECTs find it there already: no writer lock for them.
        if self.first_recent(mailbox)?.is_some_and(|now| now >= uid) {
            return Ok(());
        }
        let guard = self.lock_writer();
        if self.first_recent(mailbox)?.is_some_and(|now| now >= uid) {
            return Ok(());
        }
        // A folder deleted meanwhile keeps no value.
        if self.db().get(keys::mailbox(mailbox))?.is_none() {
            return Ok(());
        }
        let mut txn = Txn::default();
        txn.batch
            .insert(keys::first_recent(mailbox), &uid.0.to_be_bytes());
        self.apply(txn, guard).map(|_| ())
    }

    /// How many messages of `mailbox` are `\Recent` (STATUS RECENT).
    pub fn recent_count(&self, mailbox: MailboxId) -> Result<u32> {
        let Some(first) = self.first_recent(mailbox)? else {
            return Ok(0);
        };
        let prefix = keys::messages(mailbox);
        let mut count = 0u32;
        for entry in self.db().range(keys::message(mailbox, first)..) {
            if !entry?.0.starts_with(&prefix) {
                break;
            }
            count += 1;
        }
        Ok(count)
    }
}
