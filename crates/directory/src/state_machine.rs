//! The directory as Raft's state machine: account records by address in the `accounts`
//! tree, and in `directory_meta` the last applied log id, the last membership and the
//! current snapshot. Changes are flushed before `apply` returns, so a snapshot needs no
//! file of its own beyond the one kept for lagging members.

use std::io::Cursor;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError,
    StoredMembership,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Tree;

use crate::records::{AccountRecord, ChangeOutcome, DirectoryChange};
use crate::{Database, DirectoryRaft, NodeId, PeerNode, decode, encode, read_value, write_value};

const APPLIED: &[u8] = b"applied";
const MEMBERSHIP: &[u8] = b"membership";
const SNAPSHOT: &[u8] = b"snapshot";
const SNAPSHOTS_BUILT: &[u8] = b"snapshots_built";

type Membership = StoredMembership<NodeId, PeerNode>;

/// A snapshot as kept on disk: its metadata and its data.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, PeerNode>,
    data: Vec<u8>,
}

/// A snapshot's data: every account record and every removal record, encoded, by
/// address. Versioned like the records it holds.
#[derive(Serialize, Deserialize)]
enum SnapshotData {
    V1 {
        accounts: Vec<(String, Vec<u8>)>,
        removed: Vec<(String, Vec<u8>)>,
    },
}

fn read_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}

fn write_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

fn snapshot_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, &e).into()
}

/// The directory's state machine, owned by Raft once it runs.
pub struct StateMachine {
    db: Database,
    accounts: Tree,
    /// The last record of each removed account (until its address is taken again):
    /// its home node removes the mailbox when it sees it, however late.
    removed: Tree,
    meta: Tree,
}

/// Reads of the local replica: what this node's copy of the directory says now.
#[derive(Clone)]
pub struct Replica {
    accounts: Tree,
    removed: Tree,
}

/// A replica that could not be read (a disk error, or a record this version cannot
/// decode).
#[derive(Debug, thiserror::Error)]
#[error("reading the directory replica: {0}")]
pub struct ReadError(String);

/// Every record of `tree`, in key order.
fn records(tree: &Tree) -> Result<Vec<AccountRecord>, ReadError> {
    tree.iter()
        .map(|item| {
            let (_, bytes) = item.map_err(|e| ReadError(e.to_string()))?;
            decode(&bytes).map_err(|e| ReadError(e.to_string()))
        })
        .collect()
}

impl Replica {
    /// The account with this address (as stored: trimmed, lower-case).
    pub fn account(&self, address: &str) -> Result<Option<AccountRecord>, ReadError> {
        let found = self
            .accounts
            .get(address.as_bytes())
            .map_err(|e| ReadError(e.to_string()))?;
        match found {
            Some(bytes) => decode(&bytes)
                .map(Some)
                .map_err(|e| ReadError(e.to_string())),
            None => Ok(None),
        }
    }

    /// Every account, ordered by address.
    pub fn accounts(&self) -> Result<Vec<AccountRecord>, ReadError> {
        records(&self.accounts)
    }

    /// The last record of every removed account whose address was not taken again.
    pub fn removed(&self) -> Result<Vec<AccountRecord>, ReadError> {
        records(&self.removed)
    }

    /// How many accounts the replica holds.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

impl StateMachine {
    pub(crate) fn open(db: &Database) -> sled::Result<StateMachine> {
        Ok(StateMachine {
            db: db.clone(),
            accounts: db.open_tree("accounts")?,
            removed: db.open_tree("removed_accounts")?,
            meta: db.open_tree("directory_meta")?,
        })
    }

    /// A reader of this node's replica, for sign-ins, RCPT checks and routing.
    pub fn replica(&self) -> Replica {
        Replica {
            accounts: self.accounts.clone(),
            removed: self.removed.clone(),
        }
    }

    fn read_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError<NodeId>> {
        read_value(&self.meta, key, StorageIOError::read_state_machine)
    }

    fn write_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError<NodeId>> {
        write_value(&self.meta, key, value, |e| {
            StorageIOError::write_state_machine(e)
        })
    }

    async fn flush(&self) -> Result<(), StorageError<NodeId>> {
        self.db.flush().await.map_err(write_error)
    }

    fn change(&self, change: &DirectoryChange) -> Result<ChangeOutcome, StorageError<NodeId>> {
        let exists = |address: &str| self.accounts.contains_key(address.as_bytes());
        let outcome = match change {
            DirectoryChange::AddAccount(record) => {
                if exists(record.address()).map_err(write_error)? {
                    ChangeOutcome::AddressTaken
                } else {
                    self.put(record)?;
                    self.removed
                        .remove(record.address().as_bytes())
                        .map_err(write_error)?;
                    ChangeOutcome::Applied
                }
            }
            DirectoryChange::UpdateAccount(record) => {
                if exists(record.address()).map_err(write_error)? {
                    self.put(record)?;
                    ChangeOutcome::Applied
                } else {
                    ChangeOutcome::NoSuchAccount
                }
            }
            DirectoryChange::DeleteAccount { address } => {
                match self
                    .accounts
                    .remove(address.as_bytes())
                    .map_err(write_error)?
                {
                    Some(last) => {
                        self.removed
                            .insert(address.as_bytes(), last)
                            .map_err(write_error)?;
                        ChangeOutcome::Applied
                    }
                    None => ChangeOutcome::NoSuchAccount,
                }
            }
        };
        Ok(outcome)
    }

    fn put(&self, record: &AccountRecord) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(record).map_err(write_error)?;
        self.accounts
            .insert(record.address().as_bytes(), bytes)
            .map_err(write_error)?;
        Ok(())
    }

    /// What a snapshot taken now holds: the applied log id, the membership, the data.
    async fn snapshot_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<NodeId>>,
            Membership,
            Result<Vec<u8>, StorageError<NodeId>>,
        ),
        StorageError<NodeId>,
    > {
        let (applied, membership) = self.applied_state().await?;
        let data = encode(&SnapshotData::V1 {
            accounts: entries(&self.accounts)?,
            removed: entries(&self.removed)?,
        })
        .map_err(snapshot_error);
        Ok((applied, membership, data))
    }

    fn current_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError<NodeId>> {
        self.read_meta(SNAPSHOT)
    }
}

/// Every (key, value) of `tree`, keys as text.
fn entries(tree: &Tree) -> Result<Vec<(String, Vec<u8>)>, StorageError<NodeId>> {
    tree.iter()
        .map(|item| {
            let (key, value) = item.map_err(read_error)?;
            Ok((String::from_utf8_lossy(&key).into_owned(), value.to_vec()))
        })
        .collect()
}

/// Makes `tree` hold exactly `entries` (a snapshot being installed).
fn replace_contents(
    tree: &Tree,
    entries: Vec<(String, Vec<u8>)>,
) -> Result<(), StorageError<NodeId>> {
    let mut batch = sled::Batch::default();
    for item in tree.iter() {
        let (key, _) = item.map_err(snapshot_error)?;
        batch.remove(key);
    }
    for (key, value) in entries {
        batch.insert(key.as_bytes(), value);
    }
    tree.apply_batch(batch).map_err(snapshot_error)
}

/// Builds a snapshot from a copy of the state taken when the builder was made.
pub struct SnapshotBuilder {
    machine: StateMachine,
    applied: Option<LogId<NodeId>>,
    membership: Membership,
    /// The encoded [`SnapshotData`], or why it could not be read.
    data: Result<Vec<u8>, StorageError<NodeId>>,
}

impl RaftSnapshotBuilder<DirectoryRaft> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<DirectoryRaft>, StorageError<NodeId>> {
        let built: u64 = self.machine.read_meta(SNAPSHOTS_BUILT)?.unwrap_or(0) + 1;
        self.machine.write_meta(SNAPSHOTS_BUILT, &built)?;
        let snapshot_id = match self.applied {
            Some(applied) => format!("{}-{}-{built}", applied.leader_id, applied.index),
            None => format!("--{built}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: self.data.clone()?,
        };
        self.machine.write_meta(SNAPSHOT, &stored)?;
        self.machine.flush().await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<DirectoryRaft> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let applied = self.read_meta::<Option<LogId<NodeId>>>(APPLIED)?.flatten();
        let membership = self.read_meta(MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ChangeOutcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<DirectoryRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut outcomes = Vec::new();
        let mut applied = None;
        let mut membership = None;
        for entry in entries {
            applied = Some(entry.log_id);
            let outcome = match &entry.payload {
                EntryPayload::Blank => ChangeOutcome::Applied,
                EntryPayload::Normal(change) => self.change(change)?,
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    ChangeOutcome::Applied
                }
            };
            outcomes.push(outcome);
        }
        // Changes are idempotent: a crash before these marks are written applies the
        // same entries again at start, to the same result.
        if let Some(applied) = applied {
            self.write_meta(APPLIED, &Some(applied))?;
        }
        if let Some(membership) = membership {
            self.write_meta(MEMBERSHIP, &membership)?;
        }
        self.flush().await?;
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The copy is taken here, between two applies, so the snapshot is consistent.
        let (applied, membership, data) = match self.snapshot_state().await {
            Ok(state) => state,
            Err(e) => (None, Membership::default(), Err(e)),
        };
        SnapshotBuilder {
            machine: StateMachine {
                db: self.db.clone(),
                accounts: self.accounts.clone(),
                removed: self.removed.clone(),
                meta: self.meta.clone(),
            },
            applied,
            membership,
            data,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, PeerNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let SnapshotData::V1 { accounts, removed } = decode(&data).map_err(snapshot_error)?;
        replace_contents(&self.accounts, accounts)?;
        replace_contents(&self.removed, removed)?;
        self.write_meta(APPLIED, &meta.last_log_id)?;
        self.write_meta(MEMBERSHIP, &meta.last_membership)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.write_meta(SNAPSHOT, &stored)?;
        self.flush().await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<DirectoryRaft>>, StorageError<NodeId>> {
        Ok(self.current_snapshot()?.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
