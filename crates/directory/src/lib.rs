//! The account directory's replication: who exists, their password hash, home node and
//! move epoch, enabled protocols and POP3 delete mode, the same on every node.
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
    CallFuture, DirectoryNode, NoPeers, PeerTransport, RaftAnswer, RaftCall, StartError, WriteError,
};
pub use records::{AccountRecord, AccountV1, ChangeOutcome, DirectoryChange, Pop3Deletes};
pub use state_machine::{Replica, StateMachine};

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
}

/// Opens (or creates) the directory database in `dir`: Raft's log store and the state
/// machine, sharing it.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachine), DirectoryError> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES)
        .open()?;
    Ok((LogStore::open(&db)?, StateMachine::open(&db)?))
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
