//! The account directory's replication: who exists, their password hash, home node and
//! move epoch, enabled protocols, POP3 delete mode and storage limit, the same on every
//! node.
//!
//! Replication is openraft's (an embedded Raft library), never a protocol of ours. This
//! crate gives it durable storage in a small sled database of the directory's own
//! (`data_dir/directory`): the Raft log and vote ([`LogStore`]) and the directory itself
//! as the state machine ([`StateMachine`]), whose account records any node reads from
//! its local replica ([`Replica`]). It is the one place that names openraft's storage
//! types, so an openraft upgrade touches this crate.

// openraft's storage traits return its `StorageError` by value; our helpers pass it on.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::Path;

use serde::{Deserialize, Serialize};

mod log_store;
mod node;
mod records;
mod state_machine;

pub use log_store::LogStore;
pub use node::{
    CallFuture, Committed, DirectoryNode, MemberStatus, NoPeers, PeerTransport, RaftAnswer,
    RaftCall, RaftRole, StartError, UNCERTAIN, WriteError,
};
pub use records::{
    AccountRecord, AccountV1, AccountV2, ChangeOutcome, DirectoryChange, Effect, Pop3Deletes,
};
pub use state_machine::{ReadError, Replica, StateMachine};

/// What the rest of the server asks of the directory: reads of this node's replica,
/// changes (committed by a majority of the voters), and where the group stands. The
/// running member ([`DirectoryNode`]) implements it; nothing outside this crate names
/// openraft.
pub trait Directory: Send + Sync + 'static {
    /// The account with this address, as this node's replica has it.
    fn account(&self, address: &str) -> Result<Option<AccountRecord>, ReadError>;
    /// Every account of this node's replica, ordered by address.
    fn accounts(&self) -> Result<Vec<AccountRecord>, ReadError>;
    /// The last record of every removed account whose address was not taken again.
    fn removed(&self) -> Result<Vec<AccountRecord>, ReadError>;
    /// Commits `change` if this node leads the group.
    fn write(&self, change: DirectoryChange) -> WriteFuture;
    /// Whether this node's replica has applied anything yet (a node that never heard
    /// from a leader knows of no account, and must not say so). Cheap: asked on every
    /// sign-in.
    fn is_filled(&self) -> bool;
    fn status(&self) -> MemberStatus;
}

/// A future of [`Directory::write`].
pub type WriteFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Committed, WriteError>> + Send>>;

impl Directory for DirectoryNode {
    fn account(&self, address: &str) -> Result<Option<AccountRecord>, ReadError> {
        self.replica().account(address)
    }

    fn accounts(&self) -> Result<Vec<AccountRecord>, ReadError> {
        self.replica().accounts()
    }

    fn removed(&self) -> Result<Vec<AccountRecord>, ReadError> {
        self.replica().removed()
    }

    fn write(&self, change: DirectoryChange) -> WriteFuture {
        let node = self.clone();
        Box::pin(async move { DirectoryNode::write(&node, change).await })
    }

    fn is_filled(&self) -> bool {
        self.applied_index().is_some()
    }

    fn status(&self) -> MemberStatus {
        DirectoryNode::status(self)
    }
}

/// The replica of a node that is not running, read from its database: it reads, and
/// refuses every change (only a running member takes part in the group).
pub struct StoppedReplica {
    replica: Replica,
}

impl StoppedReplica {
    /// Opens the directory database in `dir` (fails while the node runs: it holds it).
    pub fn open(dir: &Path) -> Result<StoppedReplica, DirectoryError> {
        if !dir.exists() {
            return Err(DirectoryError::NeverStarted(dir.to_path_buf()));
        }
        let (_, state_machine) = open(dir)?;
        Ok(StoppedReplica {
            replica: state_machine.replica(),
        })
    }
}

impl Directory for StoppedReplica {
    fn account(&self, address: &str) -> Result<Option<AccountRecord>, ReadError> {
        self.replica.account(address)
    }

    fn accounts(&self) -> Result<Vec<AccountRecord>, ReadError> {
        self.replica.accounts()
    }

    fn removed(&self) -> Result<Vec<AccountRecord>, ReadError> {
        self.replica.removed()
    }

    fn write(&self, _change: DirectoryChange) -> WriteFuture {
        Box::pin(async { Err(WriteError::NotRunning) })
    }

    fn is_filled(&self) -> bool {
        true
    }

    fn status(&self) -> MemberStatus {
        MemberStatus {
            role: RaftRole::Stopped,
            leader: None,
            term: 0,
            applied: None,
            voters: Vec::new(),
            learners: Vec::new(),
            matched: Default::default(),
            millis_since_quorum_ack: None,
        }
    }
}

/// A node's id in the Raft group.
pub type NodeId = u64;

/// The Raft id of the node called `name` in cluster.toml: a hash of the name (FNV-1a),
/// so it stays the same whatever order the file lists the nodes in.
pub fn node_id(name: &str) -> NodeId {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    name.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// What the Raft group knows of a member: its name in cluster.toml and its internode
/// address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub name: String,
    pub address: String,
}

openraft::declare_raft_types!(
    /// openraft's types for the directory.
    pub DirectoryRaft:
        D = DirectoryChange,
        R = ChangeOutcome,
        NodeId = NodeId,
        Node = PeerNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The directory database's page cache: the directory is small, and the mailbox store
/// needs the memory more.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory database: {0}")]
    Db(#[from] sled::Error),
    #[error("directory database: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "{} holds no directory yet: start the node once (portico serve) so it joins the cluster",
        .0.display()
    )]
    NeverStarted(std::path::PathBuf),
}

/// Opens (or creates) the directory database in `dir`: Raft's log store and the state
/// machine, sharing it.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachine), DirectoryError> {
    let db = Database::open(dir)?;
    Ok((LogStore::open(&db)?, StateMachine::open(&db)?))
}

/// The directory's sled database and its `db` file. sled's background flusher is off
/// and its own flush ends with `sync_file_range`, which survives a crash of the process
/// but not a power cut: [`Database::flush`] adds an `fdatasync` of the file. Everything
/// Raft must keep is flushed so before Raft is told.
#[derive(Clone)]
pub(crate) struct Database {
    db: sled::Db,
    file: std::sync::Arc<std::fs::File>,
    dir: std::path::PathBuf,
}

impl Database {
    fn open(dir: &Path) -> Result<Database, DirectoryError> {
        std::fs::create_dir_all(dir)?;
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(None);
        // A database this process just closed may hold its lock a moment longer while
        // sled's background threads let go (as the store allows for); another
        // process's lock stays and is reported.
        let mut attempts = 0;
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if attempts < 40 && e.to_string().contains("could not acquire lock") =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => break other?,
            }
        };
        let file = std::fs::File::open(dir.join("db"))?;
        // The files sled made, and the directory itself, must survive a power cut too.
        std::fs::File::open(dir)?.sync_all()?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(Database {
            db,
            file: std::sync::Arc::new(file),
            dir: dir.to_path_buf(),
        })
    }

    /// Writes `data` as the file `name` beside the database, durably: a temporary file
    /// synced, renamed into place, the directory synced.
    pub(crate) async fn write_file(&self, name: &str, data: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let (dir, name, data) = (self.dir.clone(), name.to_string(), data.to_vec());
        tokio::task::spawn_blocking(move || {
            let temporary = dir.join(format!("{name}.tmp"));
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&data)?;
            file.sync_data()?;
            std::fs::rename(&temporary, dir.join(&name))?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// The file `name` beside the database.
    pub(crate) fn read_file(&self, name: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.dir.join(name))
    }

    /// Removes the files beside the database whose name starts with `prefix`, except
    /// `keep` (older snapshots). Best effort: a file left is removed next time.
    pub(crate) fn remove_files_except(&self, prefix: &str, keep: &str) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(prefix) && name != keep {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    pub(crate) fn open_tree(&self, name: &str) -> sled::Result<sled::Tree> {
        self.db.open_tree(name)
    }

    /// Makes everything written so far durable.
    pub(crate) async fn flush(&self) -> std::io::Result<()> {
        self.db.flush_async().await.map_err(std::io::Error::other)?;
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(std::io::Error::other)?
    }
}

/// bincode with the settings every record of this crate uses.
fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map(|(value, _)| value)
}

/// What a storage failure is reported to openraft as (reading logs, writing the state
/// machine, …).
pub(crate) type FailureKind = fn(openraft::AnyError) -> openraft::StorageIOError<NodeId>;

/// The bincode value under `key` in `tree`.
pub(crate) fn read_value<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
    kind: FailureKind,
) -> Result<Option<T>, openraft::StorageError<NodeId>> {
    let fail = |e: &dyn std::error::Error| -> openraft::StorageError<NodeId> {
        kind(openraft::AnyError::error(e)).into()
    };
    match tree.get(key).map_err(|e| fail(&e))? {
        Some(bytes) => decode(&bytes).map(Some).map_err(|e| fail(&e)),
        None => Ok(None),
    }
}

/// Writes `value` under `key` in `tree`, bincode-encoded.
pub(crate) fn write_value<T: Serialize>(
    tree: &sled::Tree,
    key: &[u8],
    value: &T,
    kind: FailureKind,
) -> Result<(), openraft::StorageError<NodeId>> {
    let fail = |e: &dyn std::error::Error| -> openraft::StorageError<NodeId> {
        kind(openraft::AnyError::error(e)).into()
    };
    let bytes = encode(value).map_err(|e| fail(&e))?;
    tree.insert(key, bytes).map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests;
