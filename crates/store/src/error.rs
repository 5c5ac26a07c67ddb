//! The store's closed set of errors; each protocol maps them to the wire in one place.

use std::io;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
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
    /// Another process holds the database (a running server, usually).
    #[error("the data directory is in use by another process")]
    Locked,
    /// The disk or the database engine failed.
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl From<sled::Error> for StoreError {
    fn from(err: sled::Error) -> Self {
        match err {
            sled::Error::Io(e) if e.to_string().contains("could not acquire lock") => {
                StoreError::Locked
            }
            sled::Error::Io(e) => StoreError::Io(e),
            sled::Error::Corruption { at, .. } => {
                StoreError::Corrupt(format!("sled corruption at {at:?}"))
            }
            other => StoreError::Io(io::Error::other(other.to_string())),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
