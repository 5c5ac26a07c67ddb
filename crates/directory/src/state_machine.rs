//! The directory as Raft's state machine: account records by address in the `accounts`
//! tree, and in `directory_meta` the last applied log id, the last membership and the
//! current snapshot. Changes are flushed before `apply` returns, so a snapshot needs no
//! file of its own beyond the one kept for lagging members.

use std::io::{self, Cursor};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError,
    StoredMembership,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Tree;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};

use crate::records::{AccountRecord, ChangeOutcome, DirectoryChange, Effect};
use crate::{Database, DirectoryRaft, NodeId, PeerNode, decode, encode, read_value, write_value};

const APPLIED: &[u8] = b"applied";
const MEMBERSHIP: &[u8] = b"membership";
const SNAPSHOT: &[u8] = b"snapshot";
const SNAPSHOTS_BUILT: &[u8] = b"snapshots_built";
/// The current snapshot's file is this followed by its id.
const SNAPSHOT_FILE_PREFIX: &str = "snapshot-";

type Membership = StoredMembership<NodeId, PeerNode>;
type Meta = SnapshotMeta<NodeId, PeerNode>;

/// The current snapshot: its metadata here, its data in a file of its own beside the
/// database (sled keeps a value this big in a file of its own that it never syncs).
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, PeerNode>,
    file: String,
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

    /// Applies one log entry in one transaction with the marks that say so: a crash
    /// leaves it either wholly applied, or not at all (and applied again at start).
    fn apply_entry(
        &self,
        log_id: LogId<NodeId>,
        change: Option<&DirectoryChange>,
        membership: Option<&Membership>,
    ) -> Result<ChangeOutcome, StorageError<NodeId>> {
        let applied = encode(&Some(log_id)).map_err(write_error)?;
        let membership = membership
            .map(|m| encode(m).map_err(write_error))
            .transpose()?;
        let trees = (&self.accounts, &self.removed, &self.meta);
        trees
            .transaction(|(accounts, removed, meta)| {
                let outcome = match change {
                    Some(change) => apply_change(accounts, removed, change)?,
                    None => ChangeOutcome::Applied,
                };
                meta.insert(APPLIED, applied.clone())?;
                if let Some(membership) = &membership {
                    meta.insert(MEMBERSHIP, membership.clone())?;
                }
                Ok(outcome)
            })
            .map_err(|e: TransactionError<String>| write_error(io::Error::other(format!("{e:?}"))))
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

    /// The current snapshot with its data.
    fn current_snapshot(&self) -> Result<Option<(Meta, Vec<u8>)>, StorageError<NodeId>> {
        let Some(stored) = self.read_meta::<StoredSnapshot>(SNAPSHOT)? else {
            return Ok(None);
        };
        let data = self.db.read_file(&stored.file).map_err(read_error)?;
        Ok(Some((stored.meta, data)))
    }

    /// Keeps `data` as the current snapshot: the file durable first, then the record
    /// naming it; the file of the one before is removed after.
    async fn keep_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, PeerNode>,
        data: &[u8],
    ) -> Result<(), StorageError<NodeId>> {
        let id: String = meta
            .snapshot_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let file = format!("{SNAPSHOT_FILE_PREFIX}{id}");
        self.db
            .write_file(&file, data)
            .await
            .map_err(snapshot_error)?;
        self.write_meta(
            SNAPSHOT,
            &StoredSnapshot {
                meta: meta.clone(),
                file: file.clone(),
            },
        )?;
        self.flush().await?;
        self.db.remove_files_except(SNAPSHOT_FILE_PREFIX, &file);
        Ok(())
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

/// The keys of `tree`.
fn keys(tree: &Tree) -> Result<Vec<sled::IVec>, StorageError<NodeId>> {
    tree.iter()
        .keys()
        .collect::<Result<_, _>>()
        .map_err(snapshot_error)
}

/// Applies one change to the account trees, inside a transaction.
fn apply_change(
    accounts: &TransactionalTree,
    removed: &TransactionalTree,
    change: &DirectoryChange,
) -> Result<ChangeOutcome, ConflictableTransactionError<String>> {
    let abort = |e: &dyn std::fmt::Display| ConflictableTransactionError::Abort(e.to_string());
    let key = change.address().as_bytes();
    let stored = accounts.get(key)?;
    let current: Option<AccountRecord> = match &stored {
        Some(bytes) => Some(decode(bytes).map_err(|e| abort(&e))?),
        None => None,
    };
    let (outcome, effect) = change.effect(current.as_ref());
    match effect {
        Effect::Add(record) => {
            accounts.insert(key, encode(&record).map_err(|e| abort(&e))?)?;
            removed.remove(key)?;
        }
        Effect::Replace(record) => {
            accounts.insert(key, encode(&record).map_err(|e| abort(&e))?)?;
        }
        Effect::Remove => {
            accounts.remove(key)?;
            if let Some(last) = stored {
                removed.insert(key, last)?;
            }
        }
        Effect::Nothing => {}
    }
    Ok(outcome)
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
        let data = self.data.clone()?;
        self.machine.keep_snapshot(&meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
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
        for entry in entries {
            let outcome = match &entry.payload {
                EntryPayload::Blank => self.apply_entry(entry.log_id, None, None)?,
                EntryPayload::Normal(change) => {
                    self.apply_entry(entry.log_id, Some(change), None)?
                }
                EntryPayload::Membership(m) => {
                    let membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    self.apply_entry(entry.log_id, None, Some(&membership))?
                }
            };
            outcomes.push(outcome);
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
        let (old_accounts, old_removed) = (keys(&self.accounts)?, keys(&self.removed)?);
        let applied = encode(&meta.last_log_id).map_err(snapshot_error)?;
        let membership = encode(&meta.last_membership).map_err(snapshot_error)?;
        // The whole state at once: a crash leaves the old one or the new one.
        (&self.accounts, &self.removed, &self.meta)
            .transaction(|(accounts_tree, removed_tree, meta_tree)| {
                for (tree, old, new) in [
                    (accounts_tree, &old_accounts, &accounts),
                    (removed_tree, &old_removed, &removed),
                ] {
                    for key in old {
                        tree.remove(key)?;
                    }
                    for (key, value) in new {
                        tree.insert(key.as_bytes(), value.as_slice())?;
                    }
                }
                meta_tree.insert(APPLIED, applied.clone())?;
                meta_tree.insert(MEMBERSHIP, membership.clone())?;
                Ok::<_, ConflictableTransactionError<String>>(())
            })
            .map_err(|e: TransactionError<String>| {
                snapshot_error(io::Error::other(format!("{e:?}")))
            })?;
        self.keep_snapshot(meta, &data).await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<DirectoryRaft>>, StorageError<NodeId>> {
        Ok(self.current_snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
