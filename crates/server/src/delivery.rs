//! Mail for the cluster's own mailboxes, from the outgoing queue: each copy goes to the
//! node its recipient's mailbox lives on — through the mailbox actor here, or with an
//! internode `Deliver` call that returns once the copy is durable there. Every copy
//! carries an id made of this node, the queue entry and the recipient; the home node
//! records it with the message ([`portico_store::Store::delivered`]), so a copy sent
//! again after a lost answer is stored once. The home node also enforces the account's
//! storage limit: a copy that would pass it is refused as [`DeliverRefused::MailboxFull`]
//! and stays queued, retried like any temporary failure.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use portico_directory::AccountRecord;
use portico_internode::{DeliverRefused, Delivery};
use portico_store::{INBOX, QueuedMessage, StoreError};

use crate::mailbox::MailboxFault;
use crate::node::NodeContext;
use crate::relay::Outcome;

/// Ids of copies being stored on this node right now: a copy sent again while the first
/// try is still being stored waits for the next round instead of racing it.
static IN_FLIGHT: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

/// A claim on an id in [`IN_FLIGHT`], given back when dropped.
struct Claim(String);

impl Claim {
    fn take(id: &str) -> Option<Claim> {
        let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(PoisonError::into_inner);
        in_flight
            .insert(id.to_string())
            .then(|| Claim(id.to_string()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        IN_FLIGHT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

fn temporary(error: impl std::fmt::Display) -> DeliverRefused {
    DeliverRefused::Temporary(error.to_string())
}

/// Stores one copy in the INBOX of an account homed on this node, unless the copy with
/// this id is already there; returns its UID. Refuses a recipient this node's replica
/// places elsewhere, one it does not know, and a copy that would take the account past
/// its storage limit (unless the delivery says to ignore it).
pub async fn deliver_here(
    node: &Arc<NodeContext>,
    delivery: Delivery,
) -> Result<u32, DeliverRefused> {
    let accepted = std::time::Instant::now();
    // Taken before the record is read: a move either waits for this delivery, or is
    // over and its record read below.
    let gate_key = crate::auth::normalize_address(&delivery.recipient);
    let Some(_lease) = node.accounts.gate().enter(&gate_key) else {
        return Err(DeliverRefused::Temporary(
            "the mailbox is being moved to another node".into(),
        ));
    };
    let record = node
        .accounts
        .known_record(&delivery.recipient)
        .map_err(temporary)?
        .ok_or(DeliverRefused::NoSuchUser)?;
    if record.home() != node.node_name {
        return Err(DeliverRefused::NotHome {
            home: Some(record.home().to_string()),
        });
    }
    let Some(_claim) = Claim::take(&delivery.id) else {
        return Err(DeliverRefused::Temporary(
            "the same copy is being stored".into(),
        ));
    };
    let storage_limit = match delivery.ignore_limit {
        true => None,
        false => record.storage_limit(),
    };
    let (lookup, id, address) = (
        node.clone(),
        delivery.id.clone(),
        record.address().to_string(),
    );
    let expected = node.store.expect_append();
    let message = delivery.message;
    // The copy is staged (indexed, its body written) in the task that finds its folder,
    // so that the folder's actor only links it.
    let found = tokio::task::spawn_blocking(move || -> Result<_, DeliverRefused> {
        if let Some(copy) = lookup.store.delivered(&id).map_err(temporary)? {
            return Ok(Err(copy.uid.0));
        }
        let account = lookup
            .accounts
            .here(&address)
            .map_err(temporary)?
            .ok_or(DeliverRefused::NoSuchUser)?;
        let inbox = lookup
            .store
            .mailbox_by_name(account.id, INBOX)
            .map_err(temporary)?
            .ok_or_else(|| temporary("the account has no INBOX"))?;
        let staged = lookup.store.stage_message(&message, Some(&expected));
        Ok(Ok((inbox.id, staged)))
    })
    .await
    .map_err(temporary)??;
    let (inbox, staged) = match found {
        Ok(found) => found,
        Err(uid) => {
            tracing::info!(delivery = %delivery.id, recipient = %delivery.recipient, uid, "copy already stored");
            return Ok(uid);
        }
    };
    let stored = node
        .mailboxes
        .deliver_staged(
            inbox,
            staged,
            delivery.internal_date,
            Some(delivery.id.clone()),
            storage_limit,
        )
        .await;
    match stored {
        Ok(appended) => {
            crate::metrics::observe_delivery(accepted);
            tracing::info!(delivery = %delivery.id, recipient = %delivery.recipient, uid = appended.uid.0, "delivered");
            Ok(appended.uid.0)
        }
        Err(MailboxFault::Store(StoreError::OverQuota)) => {
            tracing::info!(delivery = %delivery.id, recipient = %delivery.recipient, "mailbox full; not delivered");
            Err(DeliverRefused::MailboxFull)
        }
        Err(e) => {
            tracing::error!(delivery = %delivery.id, recipient = %delivery.recipient, error = %e, "delivery failed");
            Err(temporary(e))
        }
    }
}

/// The bytes the mailbox of an account homed here takes (RCPT on another node asks,
/// [`portico_internode::Call::Usage`]).
pub async fn usage_here(node: &Arc<NodeContext>, address: &str) -> Result<u64, DeliverRefused> {
    let record = node
        .accounts
        .known_record(address)
        .map_err(temporary)?
        .ok_or(DeliverRefused::NoSuchUser)?;
    if record.home() != node.node_name {
        return Err(DeliverRefused::NotHome {
            home: Some(record.home().to_string()),
        });
    }
    let (lookup, address) = (node.clone(), record.address().to_string());
    tokio::task::spawn_blocking(move || {
        let account = lookup
            .accounts
            .here(&address)
            .map_err(temporary)?
            .ok_or(DeliverRefused::NoSuchUser)?;
        lookup.store.account_usage(account.id).map_err(temporary)
    })
    .await
    .map_err(temporary)?
}

/// Whether an account's mailbox can take `size` more bytes (0: whether it is below its
/// limit at all), as far as can be told now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    Fits,
    Full,
    /// The home did not answer: the delivery itself will tell.
    Unknown,
}

/// [`Room`] for the account of `record`: its usage read here when the mailbox is here,
/// asked of its home otherwise (an internode call, made only for accounts with a limit).
pub async fn room_for(node: &Arc<NodeContext>, record: &AccountRecord, size: u64) -> Room {
    let Some(limit) = record.storage_limit() else {
        return Room::Fits;
    };
    let used = if record.home() == node.node_name {
        usage_here(node, record.address()).await
    } else {
        match node.proxy.clone() {
            Some(proxy) => proxy
                .usage(record.home(), record.address())
                .await
                .unwrap_or_else(|e| Err(temporary(e))),
            None => return Room::Unknown,
        }
    };
    match used {
        Ok(used) if crate::quota::fits(used, size, Some(limit)) => Room::Fits,
        Ok(_) => Room::Full,
        Err(_) => Room::Unknown,
    }
}

/// Where a queued recipient goes.
pub enum Route {
    /// One of the cluster's accounts.
    Cluster(AccountRecord),
    /// An address in a local domain that no account has.
    NoSuchUser,
    /// Elsewhere: the relay.
    Relay,
    /// Not known now (the replica cannot be read, or is not filled yet): try again
    /// later, never bounce or relay on that.
    Unknown,
}

/// Decides a queued recipient's route by this node's replica, at the time of the try:
/// a mailbox moved since the message was queued is followed. A local domain is decided
/// as RCPT decides it ([`crate::smtp::domain_is_local`]).
pub fn route(node: &NodeContext, address: &str) -> Route {
    match node.accounts.known_record(address) {
        Ok(Some(record)) => Route::Cluster(record),
        Err(_) => Route::Unknown,
        Ok(None) => {
            let domain = address.rsplit_once('@').map_or("", |(_, domain)| domain);
            match crate::smtp::domain_is_local(node, domain) {
                Ok(true) => Route::NoSuchUser,
                Ok(false) => Route::Relay,
                Err(_) => Route::Unknown,
            }
        }
    }
}

/// Delivers one queued copy to a cluster account, wherever its mailbox is.
pub async fn deliver_copy(
    node: &Arc<NodeContext>,
    entry: &QueuedMessage,
    message: &[u8],
    record: &AccountRecord,
) -> Outcome {
    let mut bytes = crate::smtp::return_path_line(&entry.mail_from, entry.smtputf8).into_bytes();
    bytes.extend_from_slice(message);
    let id = format!("{}/{}/{}", node.node_name, entry.id, record.address());
    match store_at_home(node, id, record, bytes, false).await {
        Ok(_) => Outcome::Delivered,
        Err(DeliverRefused::MailboxFull) => Outcome::MailboxFull,
        Err(DeliverRefused::NoSuchUser) => {
            Outcome::Permanent("550 5.1.1 No such user here".to_string())
        }
        Err(DeliverRefused::NotHome { home: now }) => Outcome::Temporary(format!(
            "node {} says the mailbox is on {}",
            record.home(),
            now.as_deref().unwrap_or("no node")
        )),
        Err(DeliverRefused::Temporary(text)) => {
            Outcome::Temporary(format!("node {}: {text}", record.home()))
        }
    }
}

/// Stores `message` as the copy named `id` in the INBOX of `record`'s account: here, or
/// on its home node with an internode `Deliver`. Returns its UID there. With
/// `ignore_limit` (a bounce to the account) it goes in even past the storage limit.
pub async fn store_at_home(
    node: &Arc<NodeContext>,
    id: String,
    record: &AccountRecord,
    message: Vec<u8>,
    ignore_limit: bool,
) -> Result<u32, DeliverRefused> {
    let delivery = Delivery {
        id,
        recipient: record.address().to_string(),
        move_epoch: record.fields().move_epoch,
        internal_date: crate::smtp_time::unix_now(),
        message,
        ignore_limit,
    };
    let home = record.home();
    if home == node.node_name {
        return deliver_here(node, delivery).await;
    }
    let Some(proxy) = node.proxy.clone() else {
        return Err(temporary(format!(
            "node {home} cannot be reached from here"
        )));
    };
    proxy
        .deliver(home, delivery)
        .await
        .unwrap_or_else(|e| Err(temporary(e)))
}
