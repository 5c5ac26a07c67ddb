//! Portico's mailbox store: accounts, folders and messages of one node, in sled.
//!
//! This crate is the only one that names `sled`, and it knows nothing of protocols,
//! sockets or actors. Every method blocks; the server calls it from a blocking pool.
//!
//! # Key layout
//!
//! One sled keyspace; the first byte says what a key holds, numbers are big-endian so
//! prefix scans come out in order. Values are bincode (serde).
//!
//! | key | value |
//! |---|---|
//! | `C` name | counter (u64): `account`, `mailbox`, `body`, `uidvalidity` |
//! | `U` address | account id |
//! | `A` account id | [`Account`] |
//! | `F` mailbox id | [`Mailbox`] (name, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, counts) |
//! | `N` account id, name | mailbox id |
//! | `M` mailbox id, UID | [`MessageMeta`] (flags, dates, size, MODSEQ, body ref) |
//! | `S` mailbox id, UID | MIME summary (ENVELOPE, BODYSTRUCTURE, part offsets), made at append |
//! | `X` mailbox id, UID | MODSEQ of the expunge (for QRESYNC) |
//! | `B` body id, chunk no. | up to [`BODY_CHUNK_SIZE`] bytes of the message |
//! | `R` body id | reference count when more than one message shares a body |
//! | `Q` queue id | [`QueuedMessage`]: outgoing mail awaiting relay (body under `B`) |
//!
//! Bodies are cut into chunks of 32 KiB because sled moves values over ~128 KiB to
//! blob files it never fsyncs.
//!
//! # Durability
//!
//! Every mutating method applies one `sled::Batch` (atomic: all or nothing after a
//! crash) and returns only after it is durable. The syscalls that make it so are, in
//! order: sled's `flush()` — `pwrite` of its log buffers to the `db` file and
//! `sync_file_range(SYNC_FILE_RANGE_WAIT_BEFORE|WRITE|WAIT_AFTER)` on them — then our
//! `fdatasync` of the `db` file, which also covers the file's size and the metadata
//! `sync_file_range` does not. The data directory itself is `fsync`ed once at open, so
//! the files sled creates survive too. Writers running at the same time share one
//! flush + `fdatasync` (group commit, see `commit.rs`).

mod commit;
mod error;
mod keys;
mod queue;
mod store;
mod types;

pub use error::{Result, StoreError};
pub use portico_mime::MessageSummary;
pub use queue::{QueuedMessage, QueuedRecipient};
pub use store::{
    BODY_CHUNK_SIZE, EXPUNGE_HISTORY, HIERARCHY_SEPARATOR, INBOX, MAX_MAILBOX_NAME_LEN, Store,
    StoreOptions, normalize_line_endings, validate_mailbox_name,
};
pub use types::*;
