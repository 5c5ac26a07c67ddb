//! The store's closed set of errors; each protocol maps them to the wire in one place.

use std::io;
use std::sync::Arc;

use crate::bodylog::BodyError;

/// Everything a store operation can fail with. Cloneable, so one failure can answer
/// every request of a batch.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The account, folder or message does not exist.
    #[error("not found")]
    NotFound,
    /// An account or folder of that name exists already.
    #[error("already exists")]
    AlreadyExists,
    /// A folder name or address the store refuses (empty, too long, control characters).
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    /// The operation is not allowed on this object (deleting INBOX, for example).
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// The operation would pass a configured per-account limit (folders, hierarchy
    /// depth); the text says which. Permanent until the user removes something.
    #[error("limit exceeded: {0}")]
    LimitExceeded(&'static str),
    /// The message (or messages) would take the account past its storage limit. Clears
    /// when the user removes mail or an administrator raises the limit; the text-free
    /// variant, so each protocol words it (`NO [OVERQUOTA]`, `452 4.2.2`).
    #[error("the account's storage limit would be exceeded")]
    OverQuota,
    /// Another process holds the database (a running server, usually).
    #[error("the data directory is in use by another process")]
    Locked,
    /// The disk is full, or below the configured free-space floor: a temporary failure
    /// that clears once space is freed, without a restart.
    #[error("not enough disk space")]
    NoSpace,
    /// The disk or the database engine failed (temporary as far as the client knows).
    #[error("storage I/O error: {0}")]
    Io(Arc<io::Error>),
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A record written by a newer release than this one (after a downgrade): its
    /// version says what layout it has, and this release does not know it.
    #[error("{record} record written by a newer version of Portico (v{version})")]
    NewerRecord { record: &'static str, version: u8 },
    /// A message's stored bytes fail their checksum or are missing; the text names it.
    #[error("damaged message: {0}")]
    Damaged(String),
}

fn is_no_space(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || err.kind() == io::ErrorKind::StorageFull
}

impl From<io::Error> for StoreError {
    fn from(err: io::Error) -> Self {
        if is_no_space(&err) {
            StoreError::NoSpace
        } else {
            StoreError::Io(Arc::new(err))
        }
    }
}

impl From<BodyError> for StoreError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::Io(e) => e.into(),
            BodyError::Damaged(what) => StoreError::Damaged(what),
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(err: sled::Error) -> Self {
        match err {
            sled::Error::Io(e) if e.to_string().contains("could not acquire lock") => {
                StoreError::Locked
            }
            sled::Error::Io(e) => e.into(),
            sled::Error::Corruption { at, .. } => {
                StoreError::Corrupt(format!("sled corruption at {at:?}"))
            }
            // What sled says of a settings file (`conf`) it cannot read.
            sled::Error::Unsupported(why) => StoreError::Corrupt(format!(
                "the metadata database's settings are damaged or from another version: {why}"
            )),
            other => StoreError::Io(Arc::new(io::Error::other(other.to_string()))),
        }
    }
}

impl StoreError {
    /// A failure that may clear by itself (disk full, I/O error): the client should try
    /// again later, and an SMTP client must get a 4xx.
    pub fn is_temporary(&self) -> bool {
        matches!(self, StoreError::NoSpace | StoreError::Io(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
