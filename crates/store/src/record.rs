//! How the store's serde records are written to sled: bincode behind a version marker.
//!
//! bincode is not self-describing: a struct with a field added cannot read the bytes of
//! the struct without it. So every record is written as
//!
//! ```text
//! 0xFF  version  bincode (standard configuration)...
//! ```
//!
//! and a release that changes a record's layout raises that type's [`Record::VERSION`]
//! and reads the older layouts in [`Record::from_older`]. A record of a version newer
//! than this release knows is refused with [`StoreError::NewerRecord`] (a downgrade),
//! never decoded as garbage.
//!
//! Records written before the marker (every data directory of earlier releases) have
//! none and are read as version 1, the layout they have, with no migration pass: they
//! are rewritten with the marker whenever they next change. Telling the two apart by
//! the first byte is sound because no unmarked record can begin with 0xFF: every record
//! type here begins with a varint (an id, a UID, a count, or the length of a list),
//! and bincode's standard varint starts with 0..=250 (the value) or 251..=254 (a wider
//! integer follows), never 255. A record type whose first field is a raw `u8` or a byte
//! array could begin with 0xFF and would need another scheme;
//! `no_unmarked_record_begins_with_the_marker` checks the types listed here.
//!
//! Keys, counters, the address and name indexes and other raw big-endian values are not
//! records and carry no marker.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bodylog::BodyLocation;
use crate::error::{Result, StoreError};
use crate::queue::QueuedMessage;
use crate::types::{
    Account, AccountId, BodyRef, Flags, FolderCounts, Mailbox, MailboxId, MessageMeta, ModSeq,
    SpecialUse, Uid, Uidvalidity,
};
use portico_mime::{MessageSummary, SearchFields};

/// First byte of every record written with a version; no unmarked record begins with it.
const RECORD_MARKER: u8 = 0xFF;

/// The version of a record written without a marker (before records carried one).
const UNMARKED_VERSION: u8 = 1;

/// A value the store keeps in sled. Only types listed here can be written, so each has
/// a version; a type's layout includes those of the types it is made of, so changing
/// any of them (in this crate or in `portico_mime`) means a new version here.
pub(crate) trait Record: Serialize + DeserializeOwned {
    /// The layout written now.
    const VERSION: u8 = 1;

    /// Reads the bincode of an older layout, `version` in `1..Self::VERSION` (with
    /// [`decode_layout`] into the old struct, then converted).
    fn from_older(version: u8, bytes: &[u8]) -> Result<Self> {
        let _ = bytes;
        Err(StoreError::Corrupt(format!(
            "{} record of version {version}, which this release cannot read",
            record_name::<Self>()
        )))
    }
}

impl Record for Account {}
impl Record for Mailbox {
    /// 2: the `subscribed` flag left the folder record for subscription keys (see
    /// `subscriptions.rs`, which moves the flags of version-1 records at open).
    const VERSION: u8 = 2;

    fn from_older(version: u8, bytes: &[u8]) -> Result<Self> {
        match version {
            1 => decode_layout::<MailboxV1>(bytes).map(Mailbox::from),
            _ => Err(StoreError::Corrupt(format!(
                "Mailbox record of version {version}, which this release cannot read"
            ))),
        }
    }
}

/// A folder record as version 1 had it: with its subscription.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct MailboxV1 {
    pub id: MailboxId,
    pub account: AccountId,
    pub name: String,
    pub uidvalidity: Uidvalidity,
    pub uidnext: Uid,
    pub highest_modseq: ModSeq,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
    pub messages: u32,
    pub size: u64,
    pub expunged_kept: u32,
    pub vanished_floor: ModSeq,
}

impl From<MailboxV1> for Mailbox {
    fn from(old: MailboxV1) -> Mailbox {
        Mailbox {
            id: old.id,
            account: old.account,
            name: old.name,
            uidvalidity: old.uidvalidity,
            uidnext: old.uidnext,
            highest_modseq: old.highest_modseq,
            special_use: old.special_use,
            messages: old.messages,
            size: old.size,
            expunged_kept: old.expunged_kept,
            vanished_floor: old.vanished_floor,
        }
    }
}
impl Record for FolderCounts {}
impl Record for MessageMeta {
    /// 2: the save date (RFC 8514). Version-1 messages were saved before it was kept:
    /// theirs is unknown (`None`), not made up from the internal date, which a client
    /// may have set to any time.
    const VERSION: u8 = 2;

    fn from_older(version: u8, bytes: &[u8]) -> Result<Self> {
        match version {
            1 => decode_layout::<MessageMetaV1>(bytes).map(MessageMeta::from),
            _ => Err(StoreError::Corrupt(format!(
                "MessageMeta record of version {version}, which this release cannot read"
            ))),
        }
    }
}

/// A message record as version 1 had it: without the save date.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct MessageMetaV1 {
    pub uid: Uid,
    pub flags: Flags,
    pub internal_date: i64,
    pub internal_date_offset: i32,
    pub size: u64,
    pub modseq: ModSeq,
    pub body: BodyRef,
}

impl From<MessageMetaV1> for MessageMeta {
    fn from(old: MessageMetaV1) -> MessageMeta {
        MessageMeta {
            uid: old.uid,
            flags: old.flags,
            internal_date: old.internal_date,
            internal_date_offset: old.internal_date_offset,
            size: old.size,
            modseq: old.modseq,
            body: old.body,
            save_date: None,
        }
    }
}
impl Record for BodyLocation {}
impl Record for QueuedMessage {}
impl Record for crate::deliveries::DeliveredCopy {}
impl Record for MessageSummary {}
/// Inside the `H` record, after its length (see `search_record` in `store.rs`).
impl Record for SearchFields {}

/// A record's bytes: the marker, its type's version, then the bincode.
pub(crate) fn encode<T: Record>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![RECORD_MARKER, T::VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(out)
}

/// The version a record was written with, and its bincode.
pub(crate) fn split_version(bytes: &[u8]) -> Result<(u8, &[u8])> {
    match bytes {
        [RECORD_MARKER, version, body @ ..] => Ok((*version, body)),
        [RECORD_MARKER] => Err(StoreError::Corrupt(
            "record ends after its version marker".into(),
        )),
        unmarked => Ok((UNMARKED_VERSION, unmarked)),
    }
}

/// Reads a record of any version this release knows, marked or not.
pub(crate) fn decode<T: Record>(bytes: &[u8]) -> Result<T> {
    let (version, body) = split_version(bytes).map_err(|_| {
        StoreError::Corrupt(format!(
            "{} record ends after its version marker",
            record_name::<T>()
        ))
    })?;
    match version {
        0 => Err(StoreError::Corrupt(format!(
            "{} record of version 0",
            record_name::<T>()
        ))),
        v if v == T::VERSION => decode_layout(body),
        v if v > T::VERSION => Err(StoreError::NewerRecord {
            record: record_name::<T>(),
            version: v,
        }),
        v => T::from_older(v, body),
    }
}

/// Decodes bare bincode (no marker) as `U`: for [`Record::from_older`], with `U` the
/// struct as that version had it.
pub(crate) fn decode_layout<U: DeserializeOwned>(bytes: &[u8]) -> Result<U> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The type's own name, for errors (`Account`, not its module path).
fn record_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::path::Path;

    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;
    use crate::keys;
    use crate::store::{INBOX, Store, StoreOptions};
    use crate::types::*;

    /// What releases before the marker wrote.
    fn unmarked<T: Serialize>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
    }

    fn open(dir: &Path) -> Store {
        Store::open(dir, &StoreOptions::default()).unwrap()
    }

    fn account(id: u64) -> Account {
        Account {
            id: AccountId(id),
            address: "a@example.com".into(),
            password_hash: "$argon2id$x".into(),
            pop3_enabled: false,
            imap_enabled: true,
            pop3_delete_mode: Pop3DeleteMode::Hide,
            created: -5,
        }
    }

    fn mailbox(id: u64) -> Mailbox {
        Mailbox {
            id: MailboxId(id),
            account: AccountId(3),
            name: "Archive/2024".into(),
            uidvalidity: Uidvalidity(1_700_000_000),
            uidnext: Uid(42),
            highest_modseq: ModSeq(99),
            special_use: Some(SpecialUse::Archive),
            messages: 41,
            size: 123_456,
            expunged_kept: 2,
            vanished_floor: ModSeq(7),
        }
    }

    /// A folder record as version 1 wrote it.
    fn v1_of(m: Mailbox, subscribed: bool) -> MailboxV1 {
        MailboxV1 {
            id: m.id,
            account: m.account,
            name: m.name,
            uidvalidity: m.uidvalidity,
            uidnext: m.uidnext,
            highest_modseq: m.highest_modseq,
            special_use: m.special_use,
            subscribed,
            messages: m.messages,
            size: m.size,
            expunged_kept: m.expunged_kept,
            vanished_floor: m.vanished_floor,
        }
    }

    /// What releases before the marker wrote for [`mailbox`]: version 1, subscribed.
    fn unmarked_mailbox(id: u64) -> Vec<u8> {
        unmarked(&v1_of(mailbox(id), true))
    }

    fn check_unmarked_mailbox(id: u64) {
        let old = unmarked_mailbox(id);
        assert_ne!(old.first(), Some(&RECORD_MARKER));
        assert_eq!(decode::<Mailbox>(&old).unwrap(), mailbox(id));
    }

    fn counts(unseen: u32) -> FolderCounts {
        FolderCounts { unseen, deleted: 1 }
    }

    fn meta(uid: u32) -> MessageMeta {
        MessageMeta {
            uid: Uid(uid),
            flags: Flags::from_names(["\\Seen", "\\Deleted", "$Label1"]),
            internal_date: 1_700_000_000,
            internal_date_offset: -3600,
            size: 512,
            modseq: ModSeq(12),
            body: BodyRef {
                id: 9,
                legacy_chunks: 0,
            },
            save_date: Some(1_700_000_100),
        }
    }

    /// A message record as version 1 wrote it: without the save date.
    fn meta_v1_of(m: MessageMeta) -> MessageMetaV1 {
        MessageMetaV1 {
            uid: m.uid,
            flags: m.flags,
            internal_date: m.internal_date,
            internal_date_offset: m.internal_date_offset,
            size: m.size,
            modseq: m.modseq,
            body: m.body,
        }
    }

    /// What releases before the marker wrote for [`meta`] reads as it, without a save
    /// date.
    fn check_unmarked_meta(uid: u32) {
        let old = unmarked(&meta_v1_of(meta(uid)));
        assert_ne!(old.first(), Some(&RECORD_MARKER));
        let read = decode::<MessageMeta>(&old).unwrap();
        assert_eq!(
            read,
            MessageMeta {
                save_date: None,
                ..meta(uid)
            }
        );
    }

    fn location(segment: u64) -> BodyLocation {
        BodyLocation {
            segment,
            offset: 4096,
            len: 512,
        }
    }

    fn search_fields(from: usize) -> SearchFields {
        SearchFields {
            from: vec!["Alice <a@example.com>".into(); from],
            subject: vec!["Hello".into()],
            sent: Some((1_700_000_000, 3600)),
            ..SearchFields::default()
        }
    }

    fn message_of_len(len: usize) -> Vec<u8> {
        let mut message = b"Subject: x\r\n\r\n".to_vec();
        message.resize(len.max(message.len()), b'a');
        message
    }

    /// A queue entry as the store makes it (its body reference is private).
    fn queued() -> QueuedMessage {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .enqueue(
                "a@example.com",
                &["b@example.org".into()],
                b"Subject: q\r\n\r\nq\r\n",
                false,
            )
            .unwrap()
    }

    fn check_unmarked<T: Record + PartialEq + Debug>(value: &T) {
        let old = unmarked(value);
        assert_ne!(old.first(), Some(&RECORD_MARKER), "{value:?}");
        assert_eq!(&decode::<T>(&old).unwrap(), value);
    }

    fn check_round_trip<T: Record + PartialEq + Debug>(value: &T) {
        let bytes = encode(value).unwrap();
        assert_eq!(bytes[..2], [RECORD_MARKER, T::VERSION]);
        assert_eq!(bytes[2..], unmarked(value));
        assert_eq!(&decode::<T>(&bytes).unwrap(), value);
    }

    #[test]
    fn unmarked_records_of_every_type_decode() {
        check_unmarked(&account(1));
        check_unmarked_mailbox(2);
        check_unmarked(&counts(3));
        check_unmarked_meta(4);
        check_unmarked(&location(5));
        check_unmarked(&queued());
        check_unmarked(&portico_mime::summarize(
            b"From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n",
        ));
        check_unmarked(&search_fields(1));
    }

    #[test]
    fn records_of_every_type_round_trip_behind_the_marker() {
        check_round_trip(&account(1));
        check_round_trip(&mailbox(2));
        check_round_trip(&counts(3));
        check_round_trip(&meta(4));
        check_round_trip(&location(5));
        check_round_trip(&queued());
        check_round_trip(&portico_mime::summarize(
            b"From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n",
        ));
        check_round_trip(&search_fields(1));
    }

    /// The first field of each record type at the values where a varint changes shape:
    /// its first byte is never the marker.
    #[test]
    fn no_unmarked_record_begins_with_the_marker() {
        let edges: [u64; 10] = [
            0,
            250,
            251,
            254,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        let mut queued = queued();
        for &n in &edges {
            let small = u32::try_from(n).unwrap_or(u32::MAX);
            check_unmarked(&account(n));
            check_unmarked_mailbox(n);
            check_unmarked(&counts(small));
            check_unmarked_meta(small);
            check_unmarked(&location(n));
            queued.id = n;
            check_unmarked(&queued);
        }
        for len in [0, 250, 251, 255, 256, 65_536] {
            check_unmarked(&search_fields(len));
            check_unmarked(&portico_mime::summarize(&message_of_len(len)));
        }
    }

    proptest! {
        #[test]
        fn any_first_field_round_trips_and_never_looks_marked(id: u64, uid: u32) {
            check_unmarked(&account(id));
            check_unmarked_meta(uid);
            check_round_trip(&mailbox(id));
            check_round_trip(&counts(uid));
        }
    }

    /// The previous release wrote message records as version 1, marked: they read
    /// with no save date (unknown), and version 2 keeps one, or its absence.
    #[test]
    fn message_records_of_version_1_read_without_a_save_date() {
        let mut marked_v1 = vec![RECORD_MARKER, 1];
        marked_v1.extend(unmarked(&meta_v1_of(meta(7))));
        let read = decode::<MessageMeta>(&marked_v1).unwrap();
        assert_eq!(read.save_date, None);
        assert_eq!(
            read,
            MessageMeta {
                save_date: None,
                ..meta(7)
            }
        );
        assert_eq!(MessageMeta::VERSION, 2);
        let unknown = MessageMeta {
            save_date: None,
            ..meta(8)
        };
        for value in [meta(8), unknown] {
            let bytes = encode(&value).unwrap();
            assert_eq!(bytes[..2], [RECORD_MARKER, 2]);
            assert_eq!(decode::<MessageMeta>(&bytes).unwrap(), value);
        }
        // A version-1 record cut short is damaged, not read as something else.
        assert!(matches!(
            decode::<MessageMeta>(&marked_v1[..marked_v1.len() - 1]),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_record_from_a_newer_release_is_refused() {
        let mut bytes = encode(&account(1)).unwrap();
        bytes[1] = 2;
        assert!(matches!(
            decode::<Account>(&bytes),
            Err(StoreError::NewerRecord {
                record: "Account",
                version: 2
            })
        ));
        bytes[1] = 0xFF;
        let error = decode::<Account>(&bytes).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Account record written by a newer version of Portico (v255)"
        );
        bytes[1] = 0;
        assert!(matches!(
            decode::<Account>(&bytes),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode::<Account>(&[RECORD_MARKER]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode::<MessageMeta>(&[RECORD_MARKER, 1, 0xFF]),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// What a later release does to add a field: version 2, and version 1 (marked or
    /// not) read through the old struct.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct NoteV1 {
        id: u64,
        text: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        id: u64,
        text: String,
        pinned: bool,
    }

    impl Record for Note {
        const VERSION: u8 = 2;

        fn from_older(version: u8, bytes: &[u8]) -> Result<Self> {
            match version {
                1 => {
                    let old: NoteV1 = decode_layout(bytes)?;
                    Ok(Note {
                        id: old.id,
                        text: old.text,
                        pinned: false,
                    })
                }
                _ => Err(StoreError::Corrupt(format!("Note v{version}"))),
            }
        }
    }

    #[test]
    fn a_new_version_reads_the_older_ones() {
        let old = NoteV1 {
            id: 7,
            text: "hi".into(),
        };
        let upgraded = Note {
            id: 7,
            text: "hi".into(),
            pinned: false,
        };
        let mut marked_v1 = vec![RECORD_MARKER, 1];
        marked_v1.extend(unmarked(&old));
        assert_eq!(decode::<Note>(&marked_v1).unwrap(), upgraded);
        assert_eq!(decode::<Note>(&unmarked(&old)).unwrap(), upgraded);
        let new = Note {
            pinned: true,
            ..upgraded
        };
        let bytes = encode(&new).unwrap();
        assert_eq!(bytes[..2], [RECORD_MARKER, 2]);
        assert_eq!(decode::<Note>(&bytes).unwrap(), new);
    }

    /// Rewrites every record of the database the way releases before the marker wrote
    /// them; returns how many.
    fn unmark_all(store: &Store) -> usize {
        let record_kinds = [
            keys::ACCOUNT,
            keys::MAILBOX,
            keys::FOLDER_COUNTS,
            keys::SUMMARY,
            keys::BODY_LOCATION,
            keys::QUEUE,
        ];
        let mut rewritten = 0;
        for entry in store.db().iter() {
            let (key, value) = entry.unwrap();
            let old = if key[0] == keys::MAILBOX {
                // Version 1, with the subscription inside.
                assert_eq!(value[..2], [RECORD_MARKER, 2], "{key:?}");
                let folder: Mailbox = decode(&value).unwrap();
                let subscribed = store.is_subscribed(folder.account, &folder.name).unwrap();
                unmarked(&v1_of(folder, subscribed))
            } else if [keys::MESSAGE, keys::QUARANTINE].contains(&key[0]) {
                // Version 1, without the save date.
                assert_eq!(value[..2], [RECORD_MARKER, 2], "{key:?}");
                unmarked(&meta_v1_of(decode(&value).unwrap()))
            } else if record_kinds.contains(&key[0]) {
                assert_eq!(value[..2], [RECORD_MARKER, 1], "{key:?}");
                value[2..].to_vec()
            } else if key[0] == keys::SEARCH_FIELDS {
                // Length (u32 LE), the fields record, the kept header lines.
                let len = u32::from_le_bytes(value[..4].try_into().unwrap()) as usize;
                let fields = &value[4..4 + len];
                assert_eq!(fields[..2], [RECORD_MARKER, 1]);
                let mut old = ((len - 2) as u32).to_le_bytes().to_vec();
                old.extend_from_slice(&fields[2..]);
                old.extend_from_slice(&value[4 + len..]);
                old
            } else {
                continue;
            };
            store.db().insert(key, old).unwrap();
            rewritten += 1;
        }
        for key in store.db().scan_prefix([keys::SUBSCRIPTION]).keys() {
            store.db().remove(key.unwrap()).unwrap();
        }
        store
            .db()
            .remove(keys::counter("subscriptions-split"))
            .unwrap();
        store.sync().unwrap();
        rewritten
    }

    /// A store whose every record is unmarked (as an older release left it) opens and
    /// reads, takes changes, and still reads after a restart.
    #[test]
    fn a_store_of_unmarked_records_reads_and_takes_changes() {
        let dir = tempfile::tempdir().unwrap();
        let message = b"From: a@example.com\r\nSubject: old\r\n\r\nold body\r\n";
        let (account, inbox, uid, subscriptions) = {
            let store = open(dir.path());
            let account = store.create_account("old@example.com", "h").unwrap();
            let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
            let uid = store
                .append(inbox.id, message, &Flags::default(), (0, 0))
                .unwrap()
                .uid;
            store
                .enqueue("old@example.com", &["x@example.org".into()], message, false)
                .unwrap();
            let unsubscribed = store.mailboxes(account.id).unwrap()[1].name.clone();
            store
                .set_subscription(account.id, &unsubscribed, false, usize::MAX)
                .unwrap();
            let subscriptions = store.subscriptions(account.id).unwrap();
            assert_eq!(subscriptions.len(), 5);
            // Account, 6 folders, their counts... at least one record of each kind.
            assert!(unmark_all(&store) >= 12);
            assert!(store.subscriptions(account.id).unwrap().is_empty());
            (account, inbox, uid, subscriptions)
        };
        let check = |store: &Store, flagged: bool| {
            assert_eq!(
                store.account_by_address("old@example.com").unwrap(),
                Some(account.clone())
            );
            assert_eq!(store.mailboxes(account.id).unwrap().len(), 6);
            // Moved out of the folder records at the first open.
            assert_eq!(store.subscriptions(account.id).unwrap(), subscriptions);
            let meta = store.message(inbox.id, uid).unwrap();
            assert_eq!(meta.flags.has(SystemFlag::Flagged), flagged);
            // Saved before save dates were kept, and a flag change does not make one.
            assert_eq!(meta.save_date, None);
            assert_eq!(store.message_bytes(inbox.id, uid).unwrap(), message);
            assert_eq!(
                store.message_summary(inbox.id, uid).unwrap().size(),
                message.len()
            );
            let fields = store.search_fields(inbox.id, uid).unwrap().unwrap();
            assert_eq!(fields.subject, ["old"]);
            assert_eq!(store.queue().unwrap().len(), 1);
            let counts = store.folder_counts(inbox.id).unwrap();
            assert_eq!(counts.unseen, 1);
            assert!(store.fsck(false).unwrap().is_clean());
        };
        {
            let store = open(dir.path());
            check(&store, false);
            store
                .store_flags(
                    inbox.id,
                    &[uid],
                    FlagOp::Add,
                    &Flags::from_names(["\\Flagged"]),
                )
                .unwrap();
            check(&store, true);
        }
        let store = open(dir.path());
        check(&store, true);
        // The changed message is written anew, with the marker, in today's layout.
        let raw = store
            .db()
            .get(keys::message(inbox.id, uid))
            .unwrap()
            .unwrap();
        assert_eq!(raw[..2], [RECORD_MARKER, MessageMeta::VERSION]);
    }

    #[test]
    fn a_store_reopens_with_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let message = b"Subject: new\r\n\r\nnew body\r\n";
        let (account, inbox, uid) = {
            let store = open(dir.path());
            let account = store.create_account("new@example.com", "h").unwrap();
            let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
            let appended = store
                .append(inbox.id, message, &Flags::from_names(["\\Seen"]), (5, 60))
                .unwrap();
            (account, inbox, appended.uid)
        };
        let store = open(dir.path());
        assert_eq!(store.account(account.id).unwrap(), account);
        let meta = store.message(inbox.id, uid).unwrap();
        assert!(meta.flags.has(SystemFlag::Seen));
        assert_eq!((meta.internal_date, meta.internal_date_offset), (5, 60));
        assert_eq!(store.message_bytes(inbox.id, uid).unwrap(), message);
        let raw = store.db().get(keys::account(account.id)).unwrap().unwrap();
        assert_eq!(raw[..2], [RECORD_MARKER, Account::VERSION]);
    }

    /// The data directory of the last release before the marker
    /// (`tests/fixtures/single-node-data-v0.tar.gz`, see its README).
    #[test]
    fn the_previous_release_data_directory_opens_and_reads() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/single-node-data-v0.tar.gz");
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(&fixture)
            .arg("-C")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "tar -xzf {}", fixture.display());
        let path = dir.path().join("data/store");
        let mut alice_uids = Vec::new();
        {
            let store = open(&path);
            // Written before the marker: nothing in it has one.
            for entry in store.db().scan_prefix([keys::ACCOUNT]) {
                assert_ne!(entry.unwrap().1[0], RECORD_MARKER);
            }
            let alice = store
                .account_by_address("alice@example.com")
                .unwrap()
                .unwrap();
            let bob = store
                .account_by_address("bob@example.com")
                .unwrap()
                .unwrap();
            assert!(alice.pop3_enabled && alice.imap_enabled);
            assert_eq!(alice.pop3_delete_mode, Pop3DeleteMode::Expunge);
            assert!(!bob.pop3_enabled);
            assert_eq!(bob.pop3_delete_mode, Pop3DeleteMode::Hide);
            assert_eq!(store.accounts().unwrap(), [alice.clone(), bob.clone()]);
            let inbox = store.mailbox_by_name(alice.id, INBOX).unwrap().unwrap();
            assert_eq!(inbox.messages, 2);
            let messages = store.messages(inbox.id).unwrap();
            assert_eq!(messages.len(), 2);
            for (meta, subject) in messages.iter().zip(["before the directory", "second"]) {
                let bytes = store.message_bytes(inbox.id, meta.uid).unwrap();
                assert_eq!(bytes.len() as u64, meta.size);
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    text.contains(&format!("Subject: {subject}")),
                    "{subject}: {text}"
                );
                store.message_summary(inbox.id, meta.uid).unwrap();
                // Saved before save dates were kept: unknown.
                assert_eq!(meta.save_date, None);
                alice_uids.push(meta.uid);
            }
            assert!(store.fsck(false).unwrap().is_clean());
            store
                .store_flags(
                    inbox.id,
                    &alice_uids[..1],
                    FlagOp::Add,
                    &Flags::from_names(["\\Flagged"]),
                )
                .unwrap();
        }
        let store = open(&path);
        let alice = store
            .account_by_address("alice@example.com")
            .unwrap()
            .unwrap();
        assert!(
            store
                .account_by_address("bob@example.com")
                .unwrap()
                .is_some()
        );
        let inbox = store.mailbox_by_name(alice.id, INBOX).unwrap().unwrap();
        assert!(
            store
                .subscriptions(alice.id)
                .unwrap()
                .contains(&INBOX.to_string())
        );
        let messages = store.messages(inbox.id).unwrap();
        let flagged: Vec<bool> = messages
            .iter()
            .map(|meta| meta.flags.has(SystemFlag::Flagged))
            .collect();
        assert_eq!(flagged, [true, false]);
        for meta in &messages {
            assert_eq!(
                store.message_bytes(inbox.id, meta.uid).unwrap().len() as u64,
                meta.size
            );
            // The flag change kept it unknown.
            assert_eq!(meta.save_date, None);
        }
        // The flagged message and its folder are marked now, the other one is not.
        let raw = |uid: Uid| {
            store
                .db()
                .get(keys::message(inbox.id, uid))
                .unwrap()
                .unwrap()
        };
        assert_eq!(
            raw(alice_uids[0])[..2],
            [RECORD_MARKER, MessageMeta::VERSION]
        );
        assert_ne!(raw(alice_uids[1])[0], RECORD_MARKER);
        let folder = store.db().get(keys::mailbox(inbox.id)).unwrap().unwrap();
        assert_eq!(folder[0], RECORD_MARKER);
        // A copy of an old message is saved now, into its new folder; the original
        // stays unknown.
        let archive = store.create_mailbox(alice.id, "Copies", None).unwrap();
        let before = crate::store::now_secs();
        let copied = store.copy(inbox.id, &alice_uids[1..], archive.id).unwrap();
        let after = crate::store::now_secs();
        let copy = store.message(archive.id, copied.pairs[0].1).unwrap();
        let saved = copy.save_date.unwrap();
        assert!(
            before <= saved && saved <= after,
            "{before} {saved} {after}"
        );
        assert_eq!(
            store.message(inbox.id, alice_uids[1]).unwrap().save_date,
            None
        );
        assert!(store.fsck(false).unwrap().is_clean());
    }
}
