//! Administration: account management and local delivery, whether or not a server is
//! running on the data directory.
//!
//! A running node listens on `admin.sock` in its data directory (mode 0600, so only its
//! owner can use it); the CLI sends one [`AdminRequest`] per connection, as a
//! length-delimited bincode frame, and gets one [`AdminResponse`]. With no server
//! running, the CLI opens the store itself and runs the same [`execute_local`].
//! Passwords never cross the socket: the CLI hashes them first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use portico_store::{Flags, INBOX, Pop3DeleteMode, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use actix::Addr;
use portico_directory::{ChangeOutcome, DirectoryChange};
use portico_internode::{DeliverRefused, Delivery};

use crate::accounts::{Accounts, Located, delete_mode, directory_deletes};
use crate::auth::normalize_address;
use crate::cluster::ClusterNode;
use crate::mailbox::{AppendMessage, AppendOptions, MailboxFault, MailboxRegistry};
use crate::router::{PeerReport, PeerState, SiteRouter};
use crate::smtp_time::unix_now as now;

/// The socket's file name inside the data directory.
pub const SOCKET_NAME: &str = "admin.sock";
/// Largest frame: a message for `deliver` plus a little.
const MAX_FRAME: usize = 128 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub enum AdminRequest {
    AddUser {
        address: String,
        password_hash: String,
        /// Place the mailbox on a backend of this site (the one with the fewest
        /// accounts).
        site: Option<String>,
        /// Place the mailbox on this backend.
        node: Option<String>,
    },
    SetPassword {
        address: String,
        password_hash: String,
    },
    DeleteUser {
        address: String,
    },
    ListUsers,
    SetUser {
        address: String,
        pop3_enabled: Option<bool>,
        imap_enabled: Option<bool>,
        pop3_delete_mode: Option<Pop3DeleteMode>,
        /// The storage limit in bytes; `Some(None)` removes it.
        storage_limit: Option<Option<u64>>,
    },
    Deliver {
        address: String,
        message: Vec<u8>,
    },
    /// Moves an account's mailbox, with all its mail, to another backend.
    MoveUser {
        address: String,
        /// The backend of this site with the fewest accounts.
        site: Option<String>,
        /// This backend.
        node: Option<String>,
    },
    /// Points an account at another backend without copying its mail.
    RehomeUser {
        address: String,
        home: String,
    },
    QueueList,
    QueueFlush,
    QueueDelete {
        id: u64,
    },
    /// Counters of the running node (for benchmarks and monitoring).
    Stats,
    /// Every node with its Raft role, replica and health, as this node sees them.
    ClusterStatus,
    /// Re-read the configuration's client settings and the TLS certificate, here and
    /// on every other node.
    Reload,
}

/// One queued message as `queue list` shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueSummary {
    pub id: u64,
    pub created: i64,
    pub mail_from: String,
    pub size: u64,
    /// (address, attempts, last error)
    pub recipients: Vec<(String, u32, Option<String>)>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserSummary {
    pub address: String,
    /// The node that holds the mailbox.
    pub home: String,
    pub pop3_enabled: bool,
    pub imap_enabled: bool,
    pub pop3_delete_mode: Pop3DeleteMode,
    /// Messages in INBOX, when the mailbox is on this node.
    pub inbox_messages: Option<u32>,
    /// The most bytes its mail may take; `None`: no limit.
    pub storage_limit: Option<u64>,
    /// Bytes its mail takes (all folders), when the mailbox is on this node.
    pub storage_used: Option<u64>,
}

/// One node in `cluster status`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeReport {
    pub name: String,
    pub site: String,
    pub roles: Vec<String>,
    /// leader, follower, learner, candidate, or `-` when unknown.
    pub raft: String,
    pub applied: Option<u64>,
    /// How many changes it is behind the leader.
    pub lag: Option<u64>,
    /// `self`, `ok`, `suspect`, `down` or `unknown`, as seen from the reporting node.
    pub health: String,
    /// The last health check's round trip, in milliseconds.
    pub round_trip_ms: Option<u64>,
}

/// `cluster status`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterReport {
    pub cluster: String,
    pub reporter: String,
    pub leader: Option<String>,
    /// Why account changes would fail here now; `None`: they would be taken.
    pub changes_refused: Option<String>,
    pub nodes: Vec<NodeReport>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum AdminResponse {
    Done(String),
    Users(Vec<UserSummary>),
    Queue(Vec<QueueSummary>),
    Status(ClusterReport),
    Failed(String),
}

fn unknown_user(address: &str) -> AdminResponse {
    AdminResponse::Failed(format!("no such user: {address}"))
}

fn mailbox_full(address: &str) -> AdminResponse {
    AdminResponse::Failed(format!(
        "the mailbox of {address} is full: the message would pass its storage limit"
    ))
}

fn store_failure(e: StoreError) -> AdminResponse {
    match e {
        StoreError::NotAllowed(why) | StoreError::InvalidName(why) => {
            AdminResponse::Failed(why.to_string())
        }
        other => AdminResponse::Failed(format!("store error: {other}")),
    }
}

/// What admin requests are run with: the store, this node's place in the cluster and,
/// inside a running server, its actors.
pub struct AdminContext {
    pub store: Arc<Store>,
    pub cluster: Arc<ClusterNode>,
    pub accounts: Arc<Accounts>,
    /// `None` when the command line runs the request itself (no server running).
    pub running: Option<RunningNode>,
}

/// The parts of a running server admin requests use.
pub struct RunningNode {
    pub mailboxes: Arc<MailboxRegistry>,
    pub queue_wake: Arc<tokio::sync::Notify>,
    pub router: Addr<SiteRouter>,
    /// How mail for mailboxes on other nodes reaches them.
    pub proxy: Option<Arc<crate::proxy::Proxy>>,
    /// What the node's sessions share (a mailbox move closes one of its mailboxes).
    pub node: Arc<crate::node::NodeContext>,
    /// The configuration `reload` re-reads.
    pub live: Arc<crate::live_config::LiveConfig>,
    /// The certificate `reload` re-reads.
    pub certificates: Arc<crate::tls::CertStore>,
}

/// Whether a request reads or changes accounts (and so needs the directory).
pub fn needs_directory(request: &AdminRequest) -> bool {
    matches!(
        request,
        AdminRequest::AddUser { .. }
            | AdminRequest::SetPassword { .. }
            | AdminRequest::DeleteUser { .. }
            | AdminRequest::ListUsers
            | AdminRequest::SetUser { .. }
            | AdminRequest::RehomeUser { .. }
            | AdminRequest::MoveUser { .. }
            | AdminRequest::Deliver { .. }
            | AdminRequest::ClusterStatus
    )
}

/// Runs a request: account changes through the directory, deliveries through the
/// folder's mailbox actor when a server runs (so sessions watching it hear of them),
/// the rest on the store.
pub async fn execute(context: &AdminContext, request: AdminRequest) -> AdminResponse {
    match request {
        AdminRequest::AddUser {
            address,
            password_hash,
            site,
            node,
        } => add_user(context, &address, &password_hash, site, node).await,
        AdminRequest::SetPassword {
            address,
            password_hash,
        } => {
            let address = normalize_address(&address);
            let done = format!("password changed for {address}");
            let change = DirectoryChange::SetPassword {
                address: address.clone(),
                password_hash,
            };
            change_user(context, &address, done, change).await
        }
        AdminRequest::SetUser {
            address,
            pop3_enabled,
            imap_enabled,
            pop3_delete_mode,
            storage_limit,
        } => {
            let address = normalize_address(&address);
            let done = format!("updated {address}");
            let access = pop3_enabled.is_some() || imap_enabled.is_some();
            let mut changes = Vec::new();
            // With nothing asked, the (empty) access change still tells an unknown user.
            if access || pop3_delete_mode.is_some() || storage_limit.is_none() {
                changes.push(DirectoryChange::SetAccess {
                    address: address.clone(),
                    imap_enabled,
                    pop3_enabled,
                    pop3_deletes: pop3_delete_mode.map(directory_deletes),
                });
            }
            if let Some(limit) = storage_limit {
                changes.push(DirectoryChange::SetStorageLimit {
                    address: address.clone(),
                    limit,
                });
            }
            for change in changes {
                let answer = change_user(context, &address, done.clone(), change).await;
                if answer != AdminResponse::Done(done.clone()) {
                    return answer;
                }
            }
            AdminResponse::Done(done)
        }
        AdminRequest::RehomeUser { address, home } => {
            let address = normalize_address(&address);
            let home = match context.cluster.place_account(None, Some(&home)) {
                Ok(home) => home,
                Err(why) => return AdminResponse::Failed(why),
            };
            let done = format!("{address} now has its mailbox on {home} (mail not copied)");
            let change = DirectoryChange::Rehome {
                address: address.clone(),
                home,
            };
            change_user(context, &address, done, change).await
        }
        AdminRequest::MoveUser {
            address,
            site,
            node,
        } => move_user(context, &address, site, node).await,
        AdminRequest::DeleteUser { address } => delete_user(context, &address).await,
        AdminRequest::ListUsers => {
            let accounts = context.accounts.clone();
            let store = context.store.clone();
            blocking(move || list_users(&accounts, &store)).await
        }
        AdminRequest::Deliver { address, message } => deliver(context, address, message).await,
        AdminRequest::ClusterStatus => match &context.running {
            Some(running) => {
                AdminResponse::Status(cluster_status(&context.cluster, &running.router).await)
            }
            None => AdminResponse::Failed(
                "this node is not running: `cluster status` asks the running node".into(),
            ),
        },
        AdminRequest::Reload => match &context.running {
            Some(running) => reload_everywhere(running).await,
            None => AdminResponse::Failed(
                "this node is not running: `reload` tells the running node".into(),
            ),
        },
        AdminRequest::QueueFlush => {
            let store = context.store.clone();
            let response = blocking(move || execute_store(&store, AdminRequest::QueueFlush)).await;
            if let Some(running) = &context.running {
                running.queue_wake.notify_one();
            }
            response
        }
        other => {
            let store = context.store.clone();
            blocking(move || execute_store(&store, other)).await
        }
    }
}

/// Re-reads the client settings and the certificate (`portico reload`, SIGHUP): both or
/// neither's failure is reported; what loaded is in use at once.
pub async fn reload(running: &RunningNode) -> AdminResponse {
    let live = running.live.clone();
    let certificates = running.certificates.clone();
    blocking(move || {
        let settings = live.reload();
        let certificate = certificates.reload();
        match (settings, certificate) {
            (Ok(said), Ok(())) => {
                tracing::info!(%said, "reloaded");
                AdminResponse::Done(format!("{said}; TLS certificate reloaded"))
            }
            (settings, certificate) => {
                let mut failed = Vec::new();
                if let Err(e) = settings {
                    failed.push(format!(
                        "configuration not reloaded, the old one stays: {e:#}"
                    ));
                }
                if let Err(e) = certificate {
                    failed.push(format!(
                        "TLS certificate not reloaded, the old one stays: {e:#}"
                    ));
                }
                tracing::error!(failed = %failed.join("; "), "reload");
                AdminResponse::Failed(failed.join("; "))
            }
        }
    })
    .await
}

/// `portico reload`: this node, then every other node of the cluster, each re-reading
/// its own copy of the configuration. One line per node; failed if any failed.
async fn reload_everywhere(running: &RunningNode) -> AdminResponse {
    let me = running.node.node_name.clone();
    let mut lines = Vec::new();
    let mut failed = false;
    match reload(running).await {
        AdminResponse::Done(said) => lines.push(format!("{me}: {said}")),
        other => {
            failed = true;
            lines.push(format!("{me}: {}", response_text(other)));
        }
    }
    if let Some(proxy) = &running.proxy {
        let mut peers: Vec<&str> = proxy.peer_names().collect();
        peers.sort_unstable();
        for peer in peers {
            match proxy.reload(peer).await {
                Ok(Ok(said)) => lines.push(format!("{peer}: {said}")),
                Ok(Err(why)) => {
                    failed = true;
                    lines.push(format!("{peer}: {why}"));
                }
                Err(e) => {
                    failed = true;
                    lines.push(format!("{peer}: not reached, reload it there: {e}"));
                }
            }
        }
    }
    let text = lines.join("\n");
    if failed {
        AdminResponse::Failed(text)
    } else {
        AdminResponse::Done(text)
    }
}

fn response_text(response: AdminResponse) -> String {
    match response {
        AdminResponse::Done(text) | AdminResponse::Failed(text) => text,
        other => format!("{other:?}"),
    }
}

/// Runs `work` on the blocking pool.
async fn blocking(work: impl FnOnce() -> AdminResponse + Send + 'static) -> AdminResponse {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| AdminResponse::Failed("internal error".into()))
}

/// An address as an account is kept under, or why it cannot be one.
fn account_address(raw: &str) -> Result<String, AdminResponse> {
    let address = normalize_address(raw);
    if address.is_empty() || address.len() > 320 || address.chars().any(char::is_control) {
        return Err(AdminResponse::Failed(format!("invalid address: {raw:?}")));
    }
    Ok(address)
}

async fn add_user(
    context: &AdminContext,
    address: &str,
    password_hash: &str,
    site: Option<String>,
    node: Option<String>,
) -> AdminResponse {
    let address = match account_address(address) {
        Ok(address) => address,
        Err(failed) => return failed,
    };
    let cluster = &context.cluster;
    let home = match cluster.place_account(site.as_deref(), node.as_deref()) {
        Ok(home) => home,
        Err(e) => return AdminResponse::Failed(e),
    };
    match cluster.add_account(&address, password_hash, &home).await {
        Ok(ChangeOutcome::Applied) => {}
        Ok(_) => return AdminResponse::Failed(format!("user already exists: {address}")),
        Err(e) => return AdminResponse::Failed(e),
    }
    if home == cluster.me() {
        // The mailbox now, so that mail delivered right after finds it.
        let accounts = context.accounts.clone();
        let made = address.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || accounts.locate(&made)).await {
            return AdminResponse::Failed(format!("added {address}, but its mailbox: {e}"));
        }
    }
    if cluster.config().is_multi_node() {
        AdminResponse::Done(format!("added {address} on {home}"))
    } else {
        AdminResponse::Done(format!("added {address}"))
    }
}

/// Commits a change to one account's settings.
async fn change_user(
    context: &AdminContext,
    address: &str,
    done: String,
    change: DirectoryChange,
) -> AdminResponse {
    match context.cluster.write(change).await {
        Ok(ChangeOutcome::Applied) => AdminResponse::Done(done),
        Ok(_) => unknown_user(address),
        Err(e) => AdminResponse::Failed(e),
    }
}

/// Moves a mailbox: run by its home, here or asked over the internode link.
async fn move_user(
    context: &AdminContext,
    address: &str,
    site: Option<String>,
    node: Option<String>,
) -> AdminResponse {
    let Some(running) = &context.running else {
        return AdminResponse::Failed(
            "this node is not running: `user move` asks the running node".into(),
        );
    };
    let address = normalize_address(address);
    let record = match context.accounts.known_record(&address) {
        Ok(Some(record)) => record,
        Ok(None) => return unknown_user(&address),
        Err(e) => return AdminResponse::Failed(e.to_string()),
    };
    let to = match context
        .cluster
        .place_account(site.as_deref(), node.as_deref())
    {
        Ok(to) => to,
        Err(why) => return AdminResponse::Failed(why),
    };
    let home = record.home();
    let moved = if home == to {
        Err(format!("the mailbox of {address} is on {to} already"))
    } else if home == context.cluster.me() {
        crate::mailbox_move::move_here(&running.node, &context.cluster, &address, &to).await
    } else if let Some(proxy) = &running.proxy {
        let request = portico_internode::MoveRequest {
            address: address.clone(),
            to,
        };
        crate::mailbox_move::ask_home(proxy, home, request).await
    } else {
        Err(format!("node {home} cannot be reached from here"))
    };
    match moved {
        Ok(report) => AdminResponse::Done(format!(
            "moved {address} from {} to {}: {} folders, {} messages, {} bytes",
            report.from, report.to, report.folders, report.messages, report.bytes
        )),
        Err(why) => AdminResponse::Failed(why),
    }
}

async fn delete_user(context: &AdminContext, address: &str) -> AdminResponse {
    let address = normalize_address(address);
    let removal = DirectoryChange::DeleteAccount {
        address: address.clone(),
    };
    match context.cluster.write(removal).await {
        Ok(ChangeOutcome::Applied) => {}
        Ok(_) => return unknown_user(&address),
        Err(e) => return AdminResponse::Failed(e),
    }
    // The mailbox goes now if it is here; its home node removes it otherwise.
    let accounts = context.accounts.clone();
    match tokio::task::spawn_blocking(move || accounts.remove_mailboxes_of_removed_accounts()).await
    {
        Ok(Ok(_)) => AdminResponse::Done(format!("deleted {address}")),
        Ok(Err(e)) => AdminResponse::Failed(format!("deleted {address}, but its mailbox: {e}")),
        Err(_) => AdminResponse::Failed("internal error".into()),
    }
}

fn list_users(accounts: &Accounts, store: &Store) -> AdminResponse {
    let records = match accounts.directory().accounts() {
        Ok(records) => records,
        Err(e) => return AdminResponse::Failed(e.to_string()),
    };
    let mut users = Vec::new();
    for record in records {
        let fields = record.fields();
        let (inbox_messages, storage_used) = if fields.home == accounts.me() {
            match store.account_by_address(&fields.address) {
                Ok(Some(account)) => {
                    let inbox = match store.mailbox_by_name(account.id, INBOX) {
                        Ok(inbox) => inbox.map_or(0, |inbox| inbox.messages),
                        Err(e) => return store_failure(e),
                    };
                    match store.account_usage(account.id) {
                        Ok(used) => (Some(inbox), Some(used)),
                        Err(e) => return store_failure(e),
                    }
                }
                Ok(None) => (Some(0), Some(0)),
                Err(e) => return store_failure(e),
            }
        } else {
            (None, None)
        };
        users.push(UserSummary {
            address: fields.address.clone(),
            home: fields.home.clone(),
            pop3_enabled: fields.pop3_enabled,
            imap_enabled: fields.imap_enabled,
            pop3_delete_mode: delete_mode(fields.pop3_deletes),
            inbox_messages,
            storage_limit: fields.storage_limit,
            storage_used,
        });
    }
    AdminResponse::Users(users)
}

async fn deliver(context: &AdminContext, address: String, message: Vec<u8>) -> AdminResponse {
    let accepted = std::time::Instant::now();
    if message.is_empty() {
        return AdminResponse::Failed("the message is empty".into());
    }
    // Taken before the lookup: a move cannot slip in between.
    let Some(_lease) = context.accounts.gate().enter(&normalize_address(&address)) else {
        return AdminResponse::Failed(format!(
            "the mailbox of {address} is being moved to another node; try again in a moment"
        ));
    };
    let accounts = context.accounts.clone();
    let store = context.store.clone();
    let lookup = address.clone();
    // The INBOX and the account's storage limit, or the answer saying why there is none
    // here.
    let inbox = tokio::task::spawn_blocking(move || {
        let record = match accounts.known_record(&lookup) {
            Ok(Some(record)) => record,
            Ok(None) => return Err(unknown_user(&lookup)),
            Err(e) => return Err(AdminResponse::Failed(e.to_string())),
        };
        match accounts.locate_record(&record) {
            Ok(Located::Here(account)) => match store.mailbox_by_name(account.id, INBOX) {
                Ok(Some(inbox)) => Ok(Ok((inbox.id, record.storage_limit()))),
                Ok(None) => Err(store_failure(StoreError::NotFound)),
                Err(e) => Err(store_failure(e)),
            },
            Ok(Located::Elsewhere { home }) => Ok(Err(home)),
            Err(e) => Err(store_failure(e)),
        }
    })
    .await;
    let (inbox, storage_limit) = match inbox {
        Ok(Ok(Ok(inbox))) => inbox,
        Ok(Ok(Err(home))) => return deliver_at_home(context, &address, &home, message).await,
        Ok(Err(answer)) => return answer,
        Err(_) => return AdminResponse::Failed("internal error".into()),
    };
    let Some(running) = &context.running else {
        let store = context.store.clone();
        return blocking(move || {
            let flags = Flags::default();
            match store.append_limited(inbox, &message, &flags, (now(), 0), storage_limit) {
                Ok(appended) => {
                    crate::metrics::observe_delivery(accepted);
                    AdminResponse::Done(format!("delivered to {address} as UID {}", appended.uid.0))
                }
                Err(StoreError::OverQuota) => mailbox_full(&address),
                Err(e) => store_failure(e),
            }
        })
        .await;
    };
    let append = AppendMessage {
        message: Bytes::from(message),
        expected: None,
        options: AppendOptions {
            flags: Flags::default(),
            internal_date: (now(), 0),
            origin: None,
            delivery_id: None,
            storage_limit,
        },
    };
    match running.mailboxes.send(inbox, append).await {
        Ok(Ok(appended)) => {
            crate::metrics::observe_delivery(accepted);
            AdminResponse::Done(format!("delivered to {address} as UID {}", appended.uid.0))
        }
        Ok(Err(MailboxFault::Store(StoreError::OverQuota))) => mailbox_full(&address),
        Ok(Err(MailboxFault::Store(e))) => store_failure(e),
        Ok(Err(e)) | Err(e) => AdminResponse::Failed(format!("delivery failed: {e}")),
    }
}

/// `deliver` for a mailbox on another node: sent there with an internode `Deliver`.
async fn deliver_at_home(
    context: &AdminContext,
    address: &str,
    home: &str,
    message: Vec<u8>,
) -> AdminResponse {
    let Some(proxy) = context.running.as_ref().and_then(|r| r.proxy.clone()) else {
        return AdminResponse::Failed(format!(
            "the mailbox of {address} is on node {home}, and this node is not running to reach it"
        ));
    };
    let address = normalize_address(address);
    let mut nonce = [0u8; 8];
    let _ = getrandom::fill(&mut nonce);
    let delivery = Delivery {
        id: format!(
            "{}/deliver/{}-{:016x}",
            context.cluster.me(),
            now(),
            u64::from_le_bytes(nonce)
        ),
        recipient: address.clone(),
        move_epoch: 0,
        internal_date: now(),
        message,
        ignore_limit: false,
    };
    match proxy.deliver(home, delivery).await {
        Ok(Ok(uid)) => AdminResponse::Done(format!(
            "delivered to {address} as UID {uid} on node {home}"
        )),
        Ok(Err(DeliverRefused::NoSuchUser)) => unknown_user(&address),
        Ok(Err(DeliverRefused::MailboxFull)) => mailbox_full(&address),
        Ok(Err(refused)) => {
            AdminResponse::Failed(format!("node {home} did not take the message: {refused:?}"))
        }
        Err(e) => AdminResponse::Failed(format!("delivery failed: {e}")),
    }
}

/// `cluster status` as this node sees the cluster.
async fn cluster_status(cluster: &ClusterNode, router: &Addr<SiteRouter>) -> ClusterReport {
    let peers = router.send(PeerReport).await.unwrap_or_default();
    let me = cluster.directory().status();
    let leader = me
        .leader
        .and_then(|id| cluster.name_of(id))
        .map(str::to_string);
    let leader_applied = match &leader {
        Some(name) if name == cluster.me() => me.applied,
        Some(name) => peers
            .iter()
            .find(|peer| &peer.name == name)
            .and_then(|peer| peer.health.as_ref())
            .and_then(|health| health.applied),
        None => None,
    };
    // What the leader said of its quorum in its last health check, if it is reachable.
    let leader_quorum_ack_ms = leader.as_ref().and_then(|name| {
        peers
            .iter()
            .find(|peer| &peer.name == name && peer.state.reachable())
            .and_then(|peer| peer.health.as_ref())
            .map(|health| health.quorum_ack_ms)
    });
    let mut nodes = Vec::new();
    for node in &cluster.config().nodes {
        let roles = node
            .roles
            .iter()
            .map(|role| format!("{role:?}").to_ascii_lowercase())
            .collect();
        let (raft, applied, health, round_trip_ms) = if node.name == cluster.me() {
            (
                me.role.name().to_string(),
                me.applied,
                "self".to_string(),
                None,
            )
        } else {
            match peers.iter().find(|peer| peer.name == node.name) {
                Some(peer) => {
                    let fresh = peer.state == PeerState::Up;
                    let seen = peer.health.as_ref().filter(|_| fresh);
                    (
                        seen.map_or("-".into(), |h| h.role.name().to_string()),
                        seen.and_then(|h| h.applied),
                        peer.state.name().to_string(),
                        peer.round_trip
                            .filter(|_| fresh)
                            .map(|rtt| rtt.as_millis() as u64),
                    )
                }
                None => ("-".into(), None, "unknown".into(), None),
            }
        };
        let lag = match (leader_applied, applied) {
            (Some(leader), Some(applied)) => Some(leader.saturating_sub(applied)),
            _ => None,
        };
        nodes.push(NodeReport {
            name: node.name.clone(),
            site: node.site.clone(),
            roles,
            raft,
            applied,
            lag,
            health,
            round_trip_ms,
        });
    }
    ClusterReport {
        cluster: cluster.config().cluster.clone(),
        reporter: cluster.me().to_string(),
        changes_refused: cluster.changes_refused(leader_quorum_ack_ms),
        leader,
        nodes,
    }
}

/// Runs a request that needs only the store (queue, counters, and `deliver` of the
/// command line with no server running).
pub fn execute_store(store: &Store, request: AdminRequest) -> AdminResponse {
    let result = match request {
        AdminRequest::Stats => Ok(AdminResponse::Done(format!(
            "store_sync_calls {}\nmetadata_sync_rounds {}\nbody_sync_rounds {}",
            store.sync_calls(),
            store.syncs(),
            store.body_syncs()
        ))),
        AdminRequest::QueueList => store.queue().map(|queue| {
            AdminResponse::Queue(
                queue
                    .into_iter()
                    .map(|entry| QueueSummary {
                        id: entry.id,
                        created: entry.created,
                        mail_from: entry.mail_from,
                        size: entry.size,
                        recipients: entry
                            .recipients
                            .into_iter()
                            .map(|r| (r.address, r.attempts, r.last_error))
                            .collect(),
                    })
                    .collect(),
            )
        }),
        AdminRequest::QueueFlush => store.flush_queue().map(|count| {
            let noun = if count == 1 { "message" } else { "messages" };
            AdminResponse::Done(format!("{count} queued {noun} due now"))
        }),
        AdminRequest::QueueDelete { id } => match store.delete_queued(id) {
            Ok(()) => Ok(AdminResponse::Done(format!("deleted queued message {id}"))),
            Err(StoreError::NotFound) => {
                Ok(AdminResponse::Failed(format!("no queued message {id}")))
            }
            Err(e) => Err(e),
        },
        other => Ok(AdminResponse::Failed(format!(
            "{} needs the account directory",
            request_name(&other)
        ))),
    };
    result.unwrap_or_else(store_failure)
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

fn encode<T: Serialize>(value: &T) -> anyhow::Result<Bytes> {
    Ok(bincode::serde::encode_to_vec(value, bincode::config::standard())?.into())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    Ok(bincode::serde::decode_from_slice(bytes, bincode::config::standard())?.0)
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Binds the admin socket (replacing a stale one left by a crash: the store's lock
/// already proved no other server runs here).
pub fn bind(data_dir: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

/// Serves admin requests until the listener is dropped.
pub async fn serve(listener: UnixListener, context: Arc<AdminContext>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                continue;
            }
        };
        let context = context.clone();
        actix_rt::spawn(async move {
            let mut framed = Framed::new(stream, codec());
            let Some(Ok(frame)) = framed.next().await else {
                return;
            };
            let response = match decode::<AdminRequest>(&frame) {
                Ok(request) => {
                    tracing::info!(request = request_name(&request), "admin request");
                    execute(&context, request).await
                }
                Err(e) => AdminResponse::Failed(format!("malformed admin request: {e}")),
            };
            if let Ok(bytes) = encode(&response) {
                let _ = framed.send(bytes).await;
            }
        });
    }
}

fn request_name(request: &AdminRequest) -> &'static str {
    match request {
        AdminRequest::AddUser { .. } => "user add",
        AdminRequest::SetPassword { .. } => "user passwd",
        AdminRequest::DeleteUser { .. } => "user del",
        AdminRequest::ListUsers => "user list",
        AdminRequest::SetUser { .. } => "user set",
        AdminRequest::RehomeUser { .. } => "user rehome",
        AdminRequest::MoveUser { .. } => "user move",
        AdminRequest::Deliver { .. } => "deliver",
        AdminRequest::QueueList => "queue list",
        AdminRequest::QueueFlush => "queue flush",
        AdminRequest::QueueDelete { .. } => "queue delete",
        AdminRequest::Stats => "stats",
        AdminRequest::ClusterStatus => "cluster status",
        AdminRequest::Reload => "reload",
    }
}

/// Sends a request to the server running on `data_dir`; `Ok(None)` when none answers.
pub async fn send_to_server(
    data_dir: &Path,
    request: &AdminRequest,
) -> anyhow::Result<Option<AdminResponse>> {
    let path = socket_path(data_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(_) => return Ok(None),
    };
    let mut framed = Framed::new(stream, codec());
    framed
        .send(encode(request)?)
        .await
        .context("sending to the server's admin socket")?;
    let frame = framed
        .next()
        .await
        .context("the server closed the admin socket without answering")?
        .context("reading the server's answer")?;
    Ok(Some(decode(&frame)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_cluster::ClusterConfig;

    fn add(address: &str, node: Option<&str>) -> AdminRequest {
        AdminRequest::AddUser {
            address: address.into(),
            password_hash: "h".into(),
            site: None,
            node: node.map(str::to_string),
        }
    }

    #[actix_rt::test]
    async fn accounts_are_managed_through_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(ClusterConfig::embedded().unwrap());
        let me = config.node(None).unwrap().name.clone();
        let store = Arc::new(Store::open(&dir.path().join("store"), &Default::default()).unwrap());
        let (cluster, listener) = ClusterNode::start(config, &me, dir.path()).unwrap();
        assert!(
            listener.is_none(),
            "a group of one listens for no other node"
        );
        let cluster = Arc::new(cluster);
        assert!(
            cluster
                .wait_for_leader(std::time::Duration::from_secs(10))
                .await
        );
        let accounts = Arc::new(Accounts::new(
            cluster.directory().clone(),
            store.clone(),
            &me,
        ));
        let context = AdminContext {
            store: store.clone(),
            cluster: cluster.clone(),
            accounts,
            running: None,
        };
        let run = |request| execute(&context, request);
        assert_eq!(
            run(add("Alice@Example.com", None)).await,
            AdminResponse::Done("added alice@example.com".into())
        );
        assert_eq!(
            run(add("alice@example.com", None)).await,
            AdminResponse::Failed("user already exists: alice@example.com".into())
        );
        assert_eq!(
            run(add("bob@example.com", Some("elsewhere"))).await,
            AdminResponse::Failed("no node named \"elsewhere\"".into())
        );
        assert_eq!(
            run(add("bad\u{7}@example.com", None)).await,
            AdminResponse::Failed("invalid address: \"bad\\u{7}@example.com\"".into())
        );
        // The mailbox is made with the account, on its home (this node).
        assert!(
            store
                .account_by_address("alice@example.com")
                .unwrap()
                .is_some()
        );
        let deliver = |address: &str, message: &[u8]| AdminRequest::Deliver {
            address: address.into(),
            message: message.to_vec(),
        };
        assert_eq!(
            run(deliver(
                "alice@example.com",
                b"Subject: hi\r\n\r\nhello\r\n"
            ))
            .await,
            AdminResponse::Done("delivered to alice@example.com as UID 1".into())
        );
        assert_eq!(
            run(deliver("nobody@example.com", b"x")).await,
            AdminResponse::Failed("no such user: nobody@example.com".into())
        );
        assert_eq!(
            run(deliver("alice@example.com", b"")).await,
            AdminResponse::Failed("the message is empty".into())
        );
        let set = AdminRequest::SetUser {
            address: "alice@example.com".into(),
            pop3_enabled: Some(false),
            imap_enabled: None,
            pop3_delete_mode: Some(Pop3DeleteMode::Hide),
            storage_limit: None,
        };
        assert_eq!(
            run(set).await,
            AdminResponse::Done("updated alice@example.com".into())
        );
        let limit = |address: &str, storage_limit| AdminRequest::SetUser {
            address: address.into(),
            pop3_enabled: None,
            imap_enabled: None,
            pop3_delete_mode: None,
            storage_limit: Some(storage_limit),
        };
        assert_eq!(
            run(limit("Alice@example.com", Some(500 << 20))).await,
            AdminResponse::Done("updated alice@example.com".into())
        );
        assert_eq!(
            run(limit("nobody@example.com", None)).await,
            AdminResponse::Failed("no such user: nobody@example.com".into())
        );
        assert_eq!(
            run(AdminRequest::ListUsers).await,
            AdminResponse::Users(vec![UserSummary {
                address: "alice@example.com".into(),
                home: me.clone(),
                pop3_enabled: false,
                imap_enabled: true,
                pop3_delete_mode: Pop3DeleteMode::Hide,
                inbox_messages: Some(1),
                storage_limit: Some(500 << 20),
                storage_used: Some(22),
            }])
        );
        let delete = || AdminRequest::DeleteUser {
            address: "alice@example.com".into(),
        };
        assert_eq!(
            run(delete()).await,
            AdminResponse::Done("deleted alice@example.com".into())
        );
        assert!(
            store
                .account_by_address("alice@example.com")
                .unwrap()
                .is_none()
        );
        assert_eq!(
            run(delete()).await,
            AdminResponse::Failed("no such user: alice@example.com".into())
        );
        assert_eq!(
            run(AdminRequest::ClusterStatus).await,
            AdminResponse::Failed(
                "this node is not running: `cluster status` asks the running node".into()
            )
        );
        let stopping = cluster.clone();
        tokio::task::spawn_blocking(move || stopping.stop())
            .await
            .unwrap();
    }
}
