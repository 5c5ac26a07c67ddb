//! Key encoding for the single sled keyspace. See the table in the crate docs.
//! All numbers are big-endian so that prefix scans come out in numeric order.

use crate::types::{AccountId, MailboxId, Uid};

pub(crate) const COUNTER: u8 = b'C';
pub(crate) const ADDRESS: u8 = b'U';
pub(crate) const ACCOUNT: u8 = b'A';
pub(crate) const MAILBOX: u8 = b'F';
pub(crate) const MAILBOX_NAME: u8 = b'N';
pub(crate) const MESSAGE: u8 = b'M';
pub(crate) const EXPUNGED: u8 = b'X';
pub(crate) const SUMMARY: u8 = b'S';
/// Bodies kept inside sled by stores older than the body log; moved out at open.
pub(crate) const LEGACY_BODY: u8 = b'B';
pub(crate) const BODY_LOCATION: u8 = b'L';
pub(crate) const QUARANTINE: u8 = b'Z';
pub(crate) const BODY_REFS: u8 = b'R';
pub(crate) const QUEUE: u8 = b'Q';
pub(crate) const FOLDER_COUNTS: u8 = b'K';
pub(crate) const SEARCH_FIELDS: u8 = b'H';
/// Names of copies delivered by other nodes ([`crate::deliveries`]).
pub(crate) const DELIVERED: u8 = b'D';
pub(crate) const FIRST_RECENT: u8 = b'W';
pub(crate) const SUBSCRIPTION: u8 = b'P';
pub(crate) const METADATA: u8 = b'Y';

pub(crate) fn metadata_all(account: AccountId) -> Vec<u8> {
    let mut key = vec![METADATA];
    key.extend_from_slice(&account.0.to_be_bytes());
    key
}

/// A folder's annotations: its name then NUL, which no folder name holds.
pub(crate) fn metadata_of(account: AccountId, folder: &str) -> Vec<u8> {
    let mut key = metadata_all(account);
    key.extend_from_slice(folder.as_bytes());
    key.push(0);
    key
}

pub(crate) fn metadata_entry(account: AccountId, folder: &str, entry: &str) -> Vec<u8> {
    let mut key = metadata_of(account, folder);
    key.extend_from_slice(entry.as_bytes());
    key
}

pub(crate) fn subscriptions(account: AccountId) -> Vec<u8> {
    let mut key = vec![SUBSCRIPTION];
    key.extend_from_slice(&account.0.to_be_bytes());
    key
}

pub(crate) fn subscription(account: AccountId, name: &str) -> Vec<u8> {
    let mut key = subscriptions(account);
    key.extend_from_slice(name.as_bytes());
    key
}

pub(crate) fn delivered(id: &str) -> Vec<u8> {
    let mut key = vec![DELIVERED];
    key.extend_from_slice(id.as_bytes());
    key
}

pub(crate) fn queued(id: u64) -> Vec<u8> {
    let mut key = vec![QUEUE];
    key.extend_from_slice(&id.to_be_bytes());
    key
}

pub(crate) fn counter(name: &str) -> Vec<u8> {
    let mut key = vec![COUNTER];
    key.extend_from_slice(name.as_bytes());
    key
}

pub(crate) fn address(address: &str) -> Vec<u8> {
    let mut key = vec![ADDRESS];
    key.extend_from_slice(address.as_bytes());
    key
}

pub(crate) fn account(id: AccountId) -> Vec<u8> {
    let mut key = vec![ACCOUNT];
    key.extend_from_slice(&id.0.to_be_bytes());
    key
}

pub(crate) fn mailbox(id: MailboxId) -> Vec<u8> {
    let mut key = vec![MAILBOX];
    key.extend_from_slice(&id.0.to_be_bytes());
    key
}

pub(crate) fn folder_counts(id: MailboxId) -> Vec<u8> {
    let mut key = vec![FOLDER_COUNTS];
    key.extend_from_slice(&id.0.to_be_bytes());
    key
}

pub(crate) fn first_recent(id: MailboxId) -> Vec<u8> {
    let mut key = vec![FIRST_RECENT];
    key.extend_from_slice(&id.0.to_be_bytes());
    key
}

pub(crate) fn mailbox_names(account: AccountId) -> Vec<u8> {
    let mut key = vec![MAILBOX_NAME];
    key.extend_from_slice(&account.0.to_be_bytes());
    key
}

pub(crate) fn mailbox_name(account: AccountId, name: &str) -> Vec<u8> {
    let mut key = mailbox_names(account);
    key.extend_from_slice(name.as_bytes());
    key
}

pub(crate) fn messages(mailbox: MailboxId) -> Vec<u8> {
    let mut key = vec![MESSAGE];
    key.extend_from_slice(&mailbox.0.to_be_bytes());
    key
}

pub(crate) fn message(mailbox: MailboxId, uid: Uid) -> Vec<u8> {
    let mut key = messages(mailbox);
    key.extend_from_slice(&uid.0.to_be_bytes());
    key
}

pub(crate) fn summaries(mailbox: MailboxId) -> Vec<u8> {
    let mut key = vec![SUMMARY];
    key.extend_from_slice(&mailbox.0.to_be_bytes());
    key
}

pub(crate) fn summary(mailbox: MailboxId, uid: Uid) -> Vec<u8> {
    let mut key = summaries(mailbox);
    key.extend_from_slice(&uid.0.to_be_bytes());
    key
}

pub(crate) fn search_fields_all(mailbox: MailboxId) -> Vec<u8> {
    let mut key = vec![SEARCH_FIELDS];
    key.extend_from_slice(&mailbox.0.to_be_bytes());
    key
}

pub(crate) fn search_fields(mailbox: MailboxId, uid: Uid) -> Vec<u8> {
    let mut key = search_fields_all(mailbox);
    key.extend_from_slice(&uid.0.to_be_bytes());
    key
}

/// The records made at append beside a message's metadata (MIME summary, search
/// fields and kept header lines): removed, moved and copied with it.
pub(crate) fn beside_message(mailbox: MailboxId, uid: Uid) -> [Vec<u8>; 2] {
    [summary(mailbox, uid), search_fields(mailbox, uid)]
}

/// The prefixes of a folder's [`beside_message`] records.
pub(crate) fn beside_messages(mailbox: MailboxId) -> [Vec<u8>; 2] {
    [summaries(mailbox), search_fields_all(mailbox)]
}

pub(crate) fn expunged_all(mailbox: MailboxId) -> Vec<u8> {
    let mut key = vec![EXPUNGED];
    key.extend_from_slice(&mailbox.0.to_be_bytes());
    key
}

pub(crate) fn expunged(mailbox: MailboxId, uid: Uid) -> Vec<u8> {
    let mut key = expunged_all(mailbox);
    key.extend_from_slice(&uid.0.to_be_bytes());
    key
}

pub(crate) fn body_location(body: u64) -> Vec<u8> {
    let mut key = vec![BODY_LOCATION];
    key.extend_from_slice(&body.to_be_bytes());
    key
}

/// A message set aside by `fsck --repair`: mailbox id and UID, like a message key.
pub(crate) fn quarantined(mailbox: MailboxId, uid: Uid) -> Vec<u8> {
    let mut key = vec![QUARANTINE];
    key.extend_from_slice(&mailbox.0.to_be_bytes());
    key.extend_from_slice(&uid.0.to_be_bytes());
    key
}

/// The body id in a `B` (legacy chunk) or `L` key.
pub(crate) fn body_id_of_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

pub(crate) fn body_refs(body: u64) -> Vec<u8> {
    let mut key = vec![BODY_REFS];
    key.extend_from_slice(&body.to_be_bytes());
    key
}

/// The UID at the end of a message key.
pub(crate) fn uid_of_message_key(key: &[u8]) -> Option<Uid> {
    let tail: [u8; 4] = key.get(9..13)?.try_into().ok()?;
    Some(Uid(u32::from_be_bytes(tail)))
}
