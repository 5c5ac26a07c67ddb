//! IMAP subscriptions (RFC 9051 §6.3.7): a set of names per account, kept apart from
//! the folders because a name stays subscribed when its folder is deleted (the server
//! must not drop it on its own, §6.3.7) and can be subscribed before it exists; LIST
//! shows such a name `\NonExistent` (RFC 5258 §3.4).
//!
//! Stores from before this kept a `subscribed` flag in each folder record (version 1 of
//! [`crate::types::Mailbox`]); [`Store::split_subscriptions`] moves those flags here
//! once, at open.

use crate::error::{Result, StoreError};
use crate::keys;
use crate::record::{self, MailboxV1, encode};
use crate::store::{Store, Txn, validate_mailbox_name};
use crate::types::{AccountId, Mailbox};

/// Refusal of a SUBSCRIBE past the account's limit.
pub const TOO_MANY_SUBSCRIPTIONS: &str = "too many subscriptions";

/// Counter set once the folder records' flags have been moved to subscription keys.
const SPLIT_MARKER: &str = "subscriptions-split";

impl Store {
    /// The account's subscribed names, ordered.
    pub fn subscriptions(&self, account: AccountId) -> Result<Vec<String>> {
        let prefix = keys::subscriptions(account);
        let mut names = Vec::new();
        for key in self.db().scan_prefix(&prefix).keys() {
            let key = key?;
            let name = std::str::from_utf8(&key[prefix.len()..])
                .map_err(|_| StoreError::Corrupt("subscription name".into()))?;
            names.push(name.to_string());
        }
        Ok(names)
    }

    /// Whether `name` is subscribed.
    pub fn is_subscribed(&self, account: AccountId, name: &str) -> Result<bool> {
        Ok(self.db().contains_key(keys::subscription(account, name))?)
    }

    /// Subscribes or unsubscribes `name`, which need not name a folder. Refused with
    /// [`StoreError::LimitExceeded`] when the account would have more than `max`.
    /// Durable on return.
    pub fn set_subscription(
        &self,
        account: AccountId,
        name: &str,
        subscribed: bool,
        max: usize,
    ) -> Result<()> {
        let name = validate_mailbox_name(name)?;
        let guard = self.lock_writer();
        self.account(account)?;
        let key = keys::subscription(account, &name);
        if subscribed == self.db().contains_key(&key)? {
            return Ok(());
        }
        let mut txn = Txn::default();
        if subscribed {
            let held = self
                .db()
                .scan_prefix(keys::subscriptions(account))
                .keys()
                .take(max)
                .count();
            if held >= max {
                return Err(StoreError::LimitExceeded(TOO_MANY_SUBSCRIPTIONS));
            }
            txn.batch.insert(key, &[]);
        } else {
            txn.batch.remove(key);
        }
        self.commit(txn, guard)
    }

    /// Subscribes `name` within a batch (a folder being created).
    pub(crate) fn subscribe_in(txn: &mut Txn, account: AccountId, name: &str) {
        txn.batch.insert(keys::subscription(account, name), &[]);
    }

    /// Moves the subscription of `from` to `to` within a batch (a folder renamed).
    pub(crate) fn move_subscription_in(
        &self,
        txn: &mut Txn,
        account: AccountId,
        from: &str,
        to: &str,
    ) -> Result<()> {
        let old = keys::subscription(account, from);
        if self.db().contains_key(&old)? {
            txn.batch.remove(old);
            txn.batch.insert(keys::subscription(account, to), &[]);
        }
        Ok(())
    }

    /// Moves the `subscribed` flags of version-1 folder records to subscription keys,
    /// rewriting those records without it; once per store.
    pub(crate) fn split_subscriptions(&self) -> Result<()> {
        if self.counter_value(SPLIT_MARKER)? != 0 {
            return Ok(());
        }
        let guard = self.lock_writer();
        let mut txn = Txn::default();
        for entry in self.db().scan_prefix([keys::MAILBOX]) {
            let (key, value) = entry?;
            let (version, body) = record::split_version(&value)?;
            if version != 1 {
                continue;
            }
            let old: MailboxV1 = record::decode_layout(body)?;
            if old.subscribed {
                Self::subscribe_in(&mut txn, old.account, &old.name);
            }
            txn.batch.insert(key, encode(&Mailbox::from(old))?);
        }
        self.next_counter(&mut txn, SPLIT_MARKER, 1)?;
        self.commit(txn, guard)
    }
}
