//! The outgoing mail queue: messages accepted for recipients elsewhere, kept durably
//! until a relay takes them, they bounce, or an administrator deletes them.
//!
//! An entry goes in with one batch once its body is durable in the body log, so an SMTP `250` can follow an enqueue
//! and a crash afterwards loses nothing; the relay replays the queue at start.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::keys;
use crate::record::{decode, encode};
use crate::store::{Store, Txn, now_secs};
use crate::types::BodyRef;

/// One recipient still to be delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRecipient {
    pub address: String,
    pub attempts: u32,
    /// Seconds since the epoch of the next try.
    pub next_attempt: i64,
    /// What the last try got (for `queue list` and bounces).
    pub last_error: Option<String>,
}

/// A queued message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub id: u64,
    /// Seconds since the epoch when it was accepted.
    pub created: i64,
    /// The envelope sender; empty for a bounce (never bounced again).
    pub mail_from: String,
    pub recipients: Vec<QueuedRecipient>,
    pub size: u64,
    /// Accepted with SMTPUTF8 (RFC 6531): the relay must offer it too.
    pub smtputf8: bool,
    body: BodyRef,
}

impl QueuedMessage {
    pub(crate) fn body_id(&self) -> u64 {
        self.body.id
    }
}

impl Store {
    /// Queues a message for `recipients`; durable when it returns.
    pub fn enqueue(
        &self,
        mail_from: &str,
        recipients: &[String],
        message: &[u8],
        smtputf8: bool,
    ) -> Result<QueuedMessage> {
        if recipients.is_empty() {
            return Err(StoreError::NotAllowed("a queued message needs a recipient"));
        }
        let durable = self.write_body(message)?;
        let guard = self.lock_writer();
        let mut txn = Txn::default();
        let id = self.next_counter(&mut txn, "queue", 1)?;
        let body = self.link_body(&mut txn, &durable)?;
        let now = now_secs();
        let entry = QueuedMessage {
            id,
            created: now,
            mail_from: mail_from.to_string(),
            recipients: recipients
                .iter()
                .map(|address| QueuedRecipient {
                    address: address.clone(),
                    attempts: 0,
                    next_attempt: now,
                    last_error: None,
                })
                .collect(),
            size: message.len() as u64,
            smtputf8,
            body,
        };
        txn.batch.insert(keys::queued(id), encode(&entry)?);
        // Counted under the writer lock, before anyone can see the entry (and remove
        // it); a batch that is refused was never applied.
        self.queued_messages.fetch_add(1, Ordering::Relaxed);
        let ticket = self.apply(txn, guard).inspect_err(|_| {
            self.queued_messages.fetch_sub(1, Ordering::Relaxed);
        })?;
        self.wait_committed(ticket)?;
        Ok(entry)
    }

    /// How many messages the queue holds, read from the database (at open).
    pub(crate) fn count_queued(&self) -> Result<u64> {
        let mut count = 0;
        for entry in self.db().scan_prefix([keys::QUEUE]).keys() {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    /// Every queued message, oldest first.
    pub fn queue(&self) -> Result<Vec<QueuedMessage>> {
        self.db()
            .scan_prefix([keys::QUEUE])
            .map(|entry| decode(&entry?.1))
            .collect()
    }

    pub fn queued(&self, id: u64) -> Result<QueuedMessage> {
        self.read(&keys::queued(id))?.ok_or(StoreError::NotFound)
    }

    pub fn queued_bytes(&self, entry: &QueuedMessage) -> Result<Vec<u8>> {
        self.read_body_prefix(entry.body, entry.size, u64::MAX, &|| {
            format!("queued message {}", entry.id)
        })
    }

    /// Records the outcome of a delivery round: the recipients still pending (with their
    /// attempt counts); with none left, the entry and its body are removed.
    pub fn update_queued(&self, id: u64, pending: Vec<QueuedRecipient>) -> Result<()> {
        let guard = self.lock_writer();
        let mut entry = self.queued(id)?;
        let mut txn = Txn::default();
        let removed = pending.is_empty();
        if removed {
            self.release_body(&mut txn, entry.body)?;
            txn.batch.remove(keys::queued(id));
        } else {
            entry.recipients = pending;
            txn.batch.insert(keys::queued(id), encode(&entry)?);
        }
        // Counted under the writer lock, as in `enqueue`: the entry was counted before
        // anyone could read it.
        if removed {
            self.queued_messages.fetch_sub(1, Ordering::Relaxed);
        }
        let applied = self.apply(txn, guard);
        if removed && applied.is_err() {
            self.queued_messages.fetch_add(1, Ordering::Relaxed);
        }
        self.wait_committed(applied?)
    }

    /// Removes a queued message (administrator's `queue delete`).
    pub fn delete_queued(&self, id: u64) -> Result<()> {
        self.update_queued(id, Vec::new())
    }

    /// Makes every pending recipient due now (`queue flush`).
    pub fn flush_queue(&self) -> Result<usize> {
        let mut count = 0;
        for entry in self.queue()? {
            let pending = entry
                .recipients
                .into_iter()
                .map(|mut recipient| {
                    recipient.next_attempt = 0;
                    recipient
                })
                .collect();
            // Delivered or deleted since the listing: nothing left to flush.
            match self.update_queued(entry.id, pending) {
                Ok(()) => count += 1,
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(count)
    }
}
