//! A running member of the directory's Raft group. openraft runs on a tokio runtime of
//! its own, on a thread of its own: blocking work on a shared runtime delays heartbeats
//! and costs leadership. Callers on any runtime use the cloneable [`DirectoryNode`].
//!
//! A group of one (the embedded default) initialises itself on first start and needs
//! no network. Members of a larger group reach each other through the internode link;
//! until a node has one, calls to peers fail as unreachable.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Config, Raft, ServerState, SnapshotPolicy};

use crate::records::{ChangeOutcome, DirectoryChange};
use crate::{DirectoryRaft, NodeId, PeerNode, Replica};

/// Log entries between two snapshots (after which the log before the snapshot is
/// purged, keeping [`LOGS_KEPT`] for members slightly behind).
const SNAPSHOT_EVERY: u64 = 5_000;
const LOGS_KEPT: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] crate::DirectoryError),
    #[error("directory: Raft settings: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("directory: starting Raft: {0}")]
    Raft(String),
    #[error("directory: its runtime thread: {0}")]
    Thread(#[from] io::Error),
}

/// Why an account change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("this node is not the directory's leader (the leader is {leader:?})")]
    NotLeader { leader: Option<PeerNode> },
    #[error("directory has no quorum: {0}")]
    NoQuorum(String),
    #[error("directory is stopped")]
    Stopped,
}

/// The handle on this node's Raft member and its replica.
#[derive(Clone)]
pub struct DirectoryNode {
    raft: Raft<DirectoryRaft>,
    replica: Replica,
    stop: Arc<tokio::sync::Notify>,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl DirectoryNode {
    /// Opens the directory database in `dir` and starts this node's member. When the
    /// group is new and `me` is its only voter, it initialises it.
    pub fn start(
        dir: &Path,
        cluster_name: &str,
        me: NodeId,
        voters: BTreeMap<NodeId, PeerNode>,
    ) -> Result<DirectoryNode, StartError> {
        let (log_store, state_machine) = crate::open(dir)?;
        let replica = state_machine.replica();
        let config = Config {
            cluster_name: cluster_name.to_string(),
            heartbeat_interval: 250,
            election_timeout_min: 1_000,
            election_timeout_max: 2_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
            max_in_snapshot_log_to_keep: LOGS_KEPT,
            ..Config::default()
        }
        .validate()?;
        let stop = Arc::new(tokio::sync::Notify::new());
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("directory-raft".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started_tx.send(Err(StartError::Thread(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started =
                        Raft::new(me, Arc::new(config), PeerLinks, log_store, state_machine)
                            .await
                            .map_err(|e| StartError::Raft(e.to_string()));
                    let raft = match started {
                        Ok(raft) => raft,
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                            return;
                        }
                    };
                    if let Err(e) = initialize_alone(&raft, me, voters).await {
                        let _ = started_tx.send(Err(StartError::Raft(e)));
                        return;
                    }
                    let _ = started_tx.send(Ok(raft.clone()));
                    stopped.notified().await;
                    let _ = raft.shutdown().await;
                });
            })?;
        let raft = started_rx
            .recv()
            .map_err(|_| StartError::Raft("the runtime thread ended".into()))??;
        Ok(DirectoryNode {
            raft,
            replica,
            stop,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    /// This node's copy of the directory.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Waits until this node leads the group, or `timeout` passes.
    pub async fn wait_leader(&self, timeout: Duration) -> bool {
        self.raft
            .wait(Some(timeout))
            .state(ServerState::Leader, "directory leader")
            .await
            .is_ok()
    }

    /// Commits `change` and returns what applying it did. Only the leader takes changes.
    pub async fn write(&self, change: DirectoryChange) -> Result<ChangeOutcome, WriteError> {
        match self.raft.client_write(change).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(WriteError::NotLeader {
                    leader: forward.leader_node,
                })
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(WriteError::NoQuorum(e.to_string()))
            }
            Err(RaftError::Fatal(_)) => Err(WriteError::Stopped),
        }
    }

    /// Stops the member and waits for its thread (what it committed is on disk). Blocks:
    /// call it off async threads.
    pub fn stop(&self) {
        self.stop.notify_one();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// A new group whose only voter is this node starts itself; a restarted one is left
/// as its log says.
async fn initialize_alone(
    raft: &Raft<DirectoryRaft>,
    me: NodeId,
    voters: BTreeMap<NodeId, PeerNode>,
) -> Result<(), String> {
    if voters.len() != 1 || !voters.contains_key(&me) {
        return Ok(());
    }
    if !raft.is_initialized().await.map_err(|e| e.to_string())? {
        raft.initialize(voters).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Connections to the other members. Until the internode link carries Raft's calls,
/// every peer is unreachable; a group of one never calls.
struct PeerLinks;

struct PeerLink;

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, PeerNode, E> {
    let cause = io::Error::new(
        io::ErrorKind::NotConnected,
        "no internode link to this directory member",
    );
    RPCError::Unreachable(Unreachable::new(&cause))
}

impl RaftNetworkFactory<DirectoryRaft> for PeerLinks {
    type Network = PeerLink;

    async fn new_client(&mut self, _target: NodeId, _node: &PeerNode) -> PeerLink {
        PeerLink
    }
}

impl RaftNetwork<DirectoryRaft> for PeerLink {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<DirectoryRaft>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<DirectoryRaft>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, PeerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        Err(unreachable())
    }
}
