//! A running member of the directory's Raft group. openraft runs on a tokio runtime of
//! its own, on a thread of its own: blocking work on a shared runtime delays heartbeats
//! and costs leadership. Callers on any runtime use the cloneable [`DirectoryNode`].
//!
//! A group of one (the embedded default) initialises itself on first start and needs
//! no network ([`NoPeers`]). Members of a larger group reach each other through a
//! [`PeerTransport`] (the internode link), carrying [`RaftCall`]s and [`RaftAnswer`]s.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
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
/// Said of a change that timed out: Raft may still commit it.
pub const UNCERTAIN: &str = " (the change takes effect later if the voters it reached form a majority again: check with `user list` before repeating it)";

/// A committed change: what applying it did, and where it is in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub outcome: ChangeOutcome,
    pub index: u64,
}

/// How long a change waits for a majority of the voters.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

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
    #[error(
        "this node's directory member stopped working ({0}); the node needs a restart, its log says why"
    )]
    Failed(String),
    #[error("the directory refused the change: {0}")]
    Refused(String),
    #[error(
        "this node is not running, and account changes need a running member of the directory: start the node (portico serve) and run the command again"
    )]
    NotRunning,
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
    /// Opens the directory database in `dir` and starts this node's member, reaching
    /// the others through `transport`. A new group is initialised by its voter with the
    /// smallest id; the others wait to hear from it.
    pub fn start(
        dir: &Path,
        cluster_name: &str,
        me: NodeId,
        voters: BTreeMap<NodeId, PeerNode>,
        transport: Arc<dyn PeerTransport>,
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
                    let started = Raft::new(
                        me,
                        Arc::new(config),
                        PeerLinks { transport },
                        log_store,
                        state_machine,
                    )
                    .await
                    .map_err(|e| StartError::Raft(e.to_string()));
                    let raft = match started {
                        Ok(raft) => raft,
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                            return;
                        }
                    };
                    if let Err(e) = initialize_new_group(&raft, me, voters).await {
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

    /// Answers a call from another member.
    pub async fn answer(&self, call: RaftCall) -> RaftAnswer {
        match call {
            RaftCall::AppendEntries(rpc) => {
                RaftAnswer::AppendEntries(self.raft.append_entries(rpc).await)
            }
            RaftCall::Vote(rpc) => RaftAnswer::Vote(self.raft.vote(rpc).await),
            RaftCall::InstallSnapshot(rpc) => {
                RaftAnswer::InstallSnapshot(self.raft.install_snapshot(rpc).await)
            }
        }
    }

    /// The member this node believes leads the group, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The index of the last change applied to this node's replica.
    pub fn applied_index(&self) -> Option<u64> {
        self.raft.metrics().borrow().last_applied.map(|id| id.index)
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

    /// Commits `change` and returns what applying it did. Only the leader takes changes;
    /// a leader that cannot reach a quorum gives up after [`WRITE_DEADLINE`] (the change
    /// may still be applied later, if it reached the others).
    pub async fn write(&self, change: DirectoryChange) -> Result<Committed, WriteError> {
        let committed = tokio::time::timeout(WRITE_DEADLINE, self.raft.client_write(change));
        match committed.await {
            Ok(Ok(response)) => Ok(Committed {
                outcome: response.data,
                index: response.log_id.index,
            }),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
                Err(WriteError::NotLeader {
                    leader: forward.leader_node,
                })
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(WriteError::Refused(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(e))) => Err(WriteError::Failed(e.to_string())),
            Err(_) => Err(WriteError::NoQuorum(format!(
                "no majority of the voters confirmed the change within {} s{UNCERTAIN}",
                WRITE_DEADLINE.as_secs()
            ))),
        }
    }

    /// Waits (up to `timeout`) until this node's replica has applied the change at
    /// `index`; whether it has.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "directory change applied here")
            .await
            .is_ok()
    }

    /// What this member knows of the group now.
    pub fn status(&self) -> MemberStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        MemberStatus {
            role: match metrics.state {
                ServerState::Leader => RaftRole::Leader,
                ServerState::Follower => RaftRole::Follower,
                ServerState::Learner => RaftRole::Learner,
                ServerState::Candidate => RaftRole::Candidate,
                ServerState::Shutdown => RaftRole::Stopped,
            },
            leader: metrics.current_leader,
            term: metrics.current_term,
            applied: metrics.last_applied.map(|id| id.index),
            voters,
            learners,
            matched: metrics
                .replication
                .map(|replication| {
                    replication
                        .into_iter()
                        .map(|(id, matched)| (id, matched.map(|log| log.index)))
                        .collect()
                })
                .unwrap_or_default(),
            millis_since_quorum_ack: metrics.millis_since_quorum_ack,
        }
    }

    /// On the leader, adds every node of `members` the group does not know yet as a
    /// learner (a full replica with no vote). Elsewhere it does nothing: the leader
    /// does it.
    pub async fn ensure_members(&self, members: &BTreeMap<NodeId, PeerNode>) {
        if self.raft.metrics().borrow().state != ServerState::Leader {
            return;
        }
        let known: Vec<NodeId> = {
            let metrics = self.raft.metrics().borrow().clone();
            metrics
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect()
        };
        for (id, node) in members {
            if known.contains(id) {
                continue;
            }
            let added = tokio::time::timeout(
                WRITE_DEADLINE,
                self.raft.add_learner(*id, node.clone(), false),
            )
            .await;
            if !matches!(added, Ok(Ok(_))) {
                // Tried again on the next round; a leader that lost its quorum cannot.
                return;
            }
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

/// A member's place in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRole {
    Leader,
    Follower,
    /// A full replica with no vote.
    Learner,
    /// Standing for election.
    Candidate,
    Stopped,
}

impl RaftRole {
    pub fn name(self) -> &'static str {
        match self {
            RaftRole::Leader => "leader",
            RaftRole::Follower => "follower",
            RaftRole::Learner => "learner",
            RaftRole::Candidate => "candidate",
            RaftRole::Stopped => "stopped",
        }
    }
}

/// What a member knows of the group, for `cluster status` and health checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub role: RaftRole,
    /// The member it believes leads.
    pub leader: Option<NodeId>,
    pub term: u64,
    /// The last change applied to its replica.
    pub applied: Option<u64>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// On the leader: the last log index each member is known to hold.
    pub matched: BTreeMap<NodeId, Option<u64>>,
    /// On the leader: how long since a majority last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
}

/// A new group is initialised by the voter with the smallest id; a group that has
/// started once is left as its log says.
async fn initialize_new_group(
    raft: &Raft<DirectoryRaft>,
    me: NodeId,
    voters: BTreeMap<NodeId, PeerNode>,
) -> Result<(), String> {
    if voters.keys().next() != Some(&me) {
        return Ok(());
    }
    if !raft.is_initialized().await.map_err(|e| e.to_string())? {
        raft.initialize(voters).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A Raft call from one member to another, as the internode link carries it.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftCall {
    AppendEntries(AppendEntriesRequest<DirectoryRaft>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<DirectoryRaft>),
}

/// The called member's answer to a [`RaftCall`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftAnswer {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
}

/// A future of a [`PeerTransport`] call.
pub type CallFuture = Pin<Box<dyn Future<Output = io::Result<RaftAnswer>> + Send>>;

/// How one member reaches another: sends a call, waits for the answer. The internode
/// link implements it; an error means the peer could not be reached.
pub trait PeerTransport: Send + Sync + 'static {
    fn call(&self, target: &PeerNode, call: RaftCall) -> CallFuture;
}

/// The transport of a node with no peers (a group of one): every call fails.
pub struct NoPeers;

impl PeerTransport for NoPeers {
    fn call(&self, _target: &PeerNode, _call: RaftCall) -> CallFuture {
        Box::pin(async {
            Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no internode link to this directory member",
            ))
        })
    }
}

/// openraft's view of the transport: one client per target member.
struct PeerLinks {
    transport: Arc<dyn PeerTransport>,
}

struct PeerLink {
    target: NodeId,
    node: PeerNode,
    transport: Arc<dyn PeerTransport>,
}

impl PeerLink {
    async fn call<E: std::error::Error>(
        &self,
        call: RaftCall,
    ) -> Result<RaftAnswer, RPCError<NodeId, PeerNode, E>> {
        self.transport
            .call(&self.node, call)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    fn remote<T, E: std::error::Error>(
        &self,
        answer: Result<T, E>,
    ) -> Result<T, RPCError<NodeId, PeerNode, E>> {
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

fn mismatched<E: std::error::Error>() -> RPCError<NodeId, PeerNode, E> {
    let cause = io::Error::new(
        io::ErrorKind::InvalidData,
        "a directory member answered another call",
    );
    RPCError::Network(NetworkError::new(&cause))
}

impl RaftNetworkFactory<DirectoryRaft> for PeerLinks {
    type Network = PeerLink;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> PeerLink {
        PeerLink {
            target,
            node: node.clone(),
            transport: self.transport.clone(),
        }
    }
}

impl RaftNetwork<DirectoryRaft> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<DirectoryRaft>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        match self.call(RaftCall::AppendEntries(rpc)).await? {
            RaftAnswer::AppendEntries(answer) => self.remote(answer),
            _ => Err(mismatched()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<DirectoryRaft>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, PeerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(RaftCall::InstallSnapshot(rpc)).await? {
            RaftAnswer::InstallSnapshot(answer) => self.remote(answer),
            _ => Err(mismatched()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        match self.call(RaftCall::Vote(rpc)).await? {
            RaftAnswer::Vote(answer) => self.remote(answer),
            _ => Err(mismatched()),
        }
    }
}
