//! Portico's mailbox store: accounts, folders and messages of one node, in sled.
//!
//! This crate is the only one that names `sled`, and it knows nothing of protocols,
//! sockets or actors. Every method blocks; the server calls it from a blocking pool.
//!
//! # Key layout
//!
//! One sled keyspace; the first byte says what a key holds, numbers are big-endian so
//! prefix scans come out in order. Values are records, bincode (serde) behind a
//! version marker so that a later release can change a layout and still read the
//! older ones (see `record.rs`), except counters, ids, reference counts and MODSEQs,
//! which are big-endian numbers.
//!
//! | key | value |
//! |---|---|
//! | `C` name | counter (u64): `account`, `mailbox`, `body`, `uidvalidity` |
//! | `U` address | account id |
//! | `A` account id | [`Account`] |
//! | `F` mailbox id | [`Mailbox`] (name, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, counts) |
//! | `K` mailbox id | [`FolderCounts`]: unseen and `\Deleted` messages (STATUS without a scan; folders from before it get theirs at their next change) |
//! | `N` account id, name | mailbox id |
//! | `M` mailbox id, UID | [`MessageMeta`] (flags, internal date, save date, size, MODSEQ, body ref); the save date (RFC 8514) is the store's clock when the message entered this folder, set by append and copy (so COPY and MOVE too), unknown in messages from before it was kept (record version 1) |
//! | `S` mailbox id, UID | MIME summary (ENVELOPE, BODYSTRUCTURE, part offsets), made at append |
//! | `H` mailbox id, UID | [`SearchFields`]: decoded From/To/Cc/Bcc/Subject and Date for SEARCH, then the raw lines of the header fields clients list folders by (`portico_mime::KEPT_HEADER_FIELDS`); made at append (messages from before it have none) |
//! | `X` mailbox id, UID | MODSEQ of the expunge (for QRESYNC) |
//! | `L` body id | [`BodyLocation`]: segment, offset and length in the body log |
//! | `R` body id | reference count when more than one message shares a body |
//! | `Q` queue id | [`QueuedMessage`]: outgoing mail awaiting relay |
//! | `Z` mailbox id, UID | [`MessageMeta`] of a damaged message set aside by fsck |
//! | `W` mailbox id | first UID still `\Recent` (u32), see `recent.rs` |
//! | `P` account id, name | (empty): the name is subscribed, see `subscriptions.rs` |
//! | `Y` account id, folder name, NUL, entry | an IMAP METADATA value (folder "" is the server), see `metadata.rs` |
//!
//! Message bodies never go into sled: sled writes any page over ~128 KiB to a blob file
//! it never fsyncs. They live in the body log (`bodies/`, see `bodylog.rs`), one
//! checksummed record each; `B` keys (bodies in 32 KiB chunks, from before the body
//! log) are moved there at open.
//!
//! # Durability
//!
//! Every mutating method applies one `sled::Batch` (atomic: all or nothing after a
//! crash) and returns only after a sync round has made it durable. A round, run by one
//! writer for every change applied so far (group commit, see `commit.rs`), is: a
//! commit marker into the body log when a segment is dirty (see below), `fdatasync` of
//! every body log segment written since the last round (and `fsync` of `bodies/` when a
//! segment was created), then sled's `flush()` — `pwrite` of its log buffers and
//! `sync_file_range`, not durable by itself — and our `fdatasync` of the `db` file. So
//! metadata is never made durable on purpose before the bodies it points at; if sled
//! writes a full buffer early and the power fails before the round, the message points
//! past the body log's recovered end at the next open and is taken out again (it was
//! never acknowledged). Appends are split ([`Store::stage_message`],
//! [`Store::append_staged_many`], [`Store::wait_committed`]) so that a folder's single
//! writer allocates UIDs in order without waiting for the disk in between, and
//! deliveries announce themselves when received ([`Store::expect_append`]) so that a
//! round waits briefly for those in flight.
//!
//! Every metadata change is numbered (the `commits` counter, in the same batch), and
//! each round's marker records the newest number already durable. A `db` that loses
//! changes (sled reads a damaged log as ending early) is then caught at open: the store
//! refuses to start rather than hand out UIDs clients have seen; `fsck` reports it.
//!
//! Disk full: new mail is refused below a free-space floor, any change below a small
//! reserve, so sled (which keeps a write error until it is reopened) never meets a full
//! disk, and the store works again as soon as space is freed.

mod bodylog;
mod commit;
mod deliveries;
mod error;
mod import;
mod keys;
mod maintenance;
mod metadata;
mod queue;
mod recent;
mod record;
mod store;
mod subscriptions;
mod texts;
mod types;

pub use bodylog::{BodyLocation, MAX_BODY_LEN};
pub use deliveries::DeliveredCopy;
pub use error::{Result, StoreError};
pub use import::{FolderImport, MessageImport};
pub use maintenance::{CompactionReport, FsckReport};
pub use metadata::TOO_MANY_METADATA;
pub use portico_mime::{MessageSummary, SearchFields};
pub use queue::{QueuedMessage, QueuedRecipient};
pub use store::{
    AppendRequest, CommitTicket, EXPUNGE_HISTORY, ExpectedAppend, HIERARCHY_SEPARATOR, INBOX,
    MAX_MAILBOX_NAME_LEN, StagedMessage, Store, StoreOptions, StoreStats, normalize_line_endings,
    validate_mailbox_name,
};
pub use subscriptions::TOO_MANY_SUBSCRIPTIONS;
pub use types::*;
