//! The node's place in the cluster: its member of the directory's Raft group, the
//! links to the other nodes, and the background work that keeps the directory and this
//! node's store in step: the leader adds every configured node that is not a voter as
//! a learner (a full replica), a data directory from before the directory has its
//! accounts migrated into it, and a backend removes the mailboxes of accounts the
//! directory removed.
//!
//! The embedded default is a group of one: no certificates, no listener, no peers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use portico_cluster::{ClusterConfig, Role};
use portico_directory::{
    AccountRecord, AccountV2, ChangeOutcome, Directory, DirectoryChange, DirectoryNode, NoPeers,
    NodeId, PeerNode, RaftRole, StoppedReplica, UNCERTAIN, WriteError, node_id,
};
use portico_internode::{Answer, Call, LinkTransport, WriteRefused};
use rustls::ServerConfig;

use crate::accounts::{Accounts, NO_PASSWORD};
use crate::internode::TlsDialer;
use crate::pki::{self, NodeIdentity};

/// How long an account change may take, forwarding and waiting for an election
/// included.
const WRITE_PATIENCE: Duration = Duration::from_secs(8);
/// How long a forwarded change may take to reach this node's replica after the
/// leader committed it.
const APPLY_WAIT: Duration = Duration::from_secs(5);
/// Pause between two tries of a change while no leader is known.
const LEADER_POLL: Duration = Duration::from_millis(100);
/// How often the background work looks at the directory.
const STEP_EVERY: Duration = Duration::from_millis(500);
/// A leader that has heard from no majority for this long cannot take changes.
const QUORUM_SILENCE_MS: u64 = 3_000;
/// The marker, in the data directory, that this node's store accounts are in the
/// directory (or that there were none).
const MIGRATED_MARKER: &str = "directory-migrated";

/// The directory's database inside a data directory.
pub fn directory_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("directory")
}

/// Every node of the configuration as the Raft group names it.
pub fn members(config: &ClusterConfig) -> BTreeMap<NodeId, PeerNode> {
    peers(config, |_| true)
}

/// The voters: the nodes with the directory role.
fn voters(config: &ClusterConfig) -> BTreeMap<NodeId, PeerNode> {
    peers(config, |node| node.has_role(Role::Directory))
}

/// The nodes `wanted` keeps, by Raft id.
fn peers(
    config: &ClusterConfig,
    wanted: impl Fn(&portico_cluster::NodeConfig) -> bool,
) -> BTreeMap<NodeId, PeerNode> {
    config
        .nodes
        .iter()
        .filter(|node| wanted(node))
        .map(|node| {
            let address = node.internode.map(|a| a.to_string()).unwrap_or_default();
            (
                node_id(&node.name),
                PeerNode {
                    name: node.name.clone(),
                    address,
                },
            )
        })
        .collect()
}

pub type Links = LinkTransport<TlsDialer>;

/// This node's member of the directory, and its links to the other nodes.
pub struct ClusterNode {
    config: Arc<ClusterConfig>,
    me: String,
    directory: Arc<dyn Directory>,
    /// The running member; `None` for the replica of a stopped node.
    member: Option<DirectoryNode>,
    /// Forwarded changes to the leader; `None` in a group of one.
    links: Option<Arc<Links>>,
    /// How this node dials the others (for links of their own, such as the router's).
    dialer: Option<(rustls::ClientConfig, std::net::IpAddr)>,
    names: HashMap<NodeId, String>,
}

/// What a running node needs besides its [`ClusterNode`] to take the other nodes'
/// calls.
pub struct InternodeListener {
    pub address: SocketAddr,
    pub tls: ServerConfig,
}

impl ClusterNode {
    /// Starts this node's directory member. With several nodes it reads the node's
    /// certificate from the cluster's pki directory and returns what the internode
    /// listener needs.
    pub fn start(
        config: Arc<ClusterConfig>,
        me: &str,
        data_dir: &Path,
    ) -> anyhow::Result<(ClusterNode, Option<InternodeListener>)> {
        let dir = directory_dir(data_dir);
        if !config.is_multi_node() {
            let member = DirectoryNode::start(
                &dir,
                &config.cluster,
                node_id(me),
                voters(&config),
                Arc::new(NoPeers),
            )
            .context("starting the directory")?;
            return Ok((ClusterNode::with_member(config, me, member, None), None));
        }
        let node = config
            .find_node(me)
            .with_context(|| format!("no node named {me:?}"))?;
        let Some(address) = node.internode else {
            anyhow::bail!("node {me:?} has no internode address");
        };
        let pki_dir = config.pki_dir();
        let identity = NodeIdentity::load(&pki_dir, me).with_context(|| {
            format!(
                "loading node {me:?}'s internode certificate from {} (make them with `portico cluster init`)",
                pki_dir.display()
            )
        })?;
        let client = pki::internode_client_config(&identity)?;
        let tls = pki::internode_server_config(&identity)?;
        let raft_links = LinkTransport::new(me, TlsDialer::new(client.clone(), address.ip()));
        let links = Arc::new(LinkTransport::new(
            me,
            TlsDialer::new(client.clone(), address.ip()),
        ));
        let member = DirectoryNode::start(
            &dir,
            &config.cluster,
            node_id(me),
            voters(&config),
            Arc::new(raft_links),
        )
        .context("starting the directory")?;
        let mut node = ClusterNode::with_member(config, me, member, Some(links));
        node.dialer = Some((client, address.ip()));
        Ok((node, Some(InternodeListener { address, tls })))
    }

    /// The directory of a node that is not running, for the command line: a group of
    /// one starts its member (and can take changes); a node of a larger cluster only
    /// reads its replica.
    pub fn open_stopped(
        config: Arc<ClusterConfig>,
        me: &str,
        data_dir: &Path,
    ) -> anyhow::Result<ClusterNode> {
        if !config.is_multi_node() {
            return Ok(ClusterNode::start(config, me, data_dir)?.0);
        }
        let dir = directory_dir(data_dir);
        let replica = StoppedReplica::open(&dir)
            .with_context(|| format!("opening the directory in {}", dir.display()))?;
        Ok(ClusterNode {
            names: names(&config),
            config,
            me: me.to_string(),
            directory: Arc::new(replica),
            member: None,
            links: None,
            dialer: None,
        })
    }

    fn with_member(
        config: Arc<ClusterConfig>,
        me: &str,
        member: DirectoryNode,
        links: Option<Arc<Links>>,
    ) -> ClusterNode {
        ClusterNode {
            names: names(&config),
            config,
            me: me.to_string(),
            directory: Arc::new(member.clone()),
            member: Some(member),
            links,
            dialer: None,
        }
    }

    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    pub fn member(&self) -> Option<&DirectoryNode> {
        self.member.as_ref()
    }

    /// New links of their own to the other nodes (`None` in a group of one): calls on
    /// them do not wait behind forwarded changes.
    pub fn new_links(&self) -> Option<Links> {
        Some(LinkTransport::new(&self.me, self.new_dialer()?))
    }

    /// How this node dials the others (`None` in a group of one).
    pub fn new_dialer(&self) -> Option<TlsDialer> {
        let (client, local) = self.dialer.clone()?;
        Some(TlsDialer::new(client, local))
    }

    pub fn config(&self) -> &Arc<ClusterConfig> {
        &self.config
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// The name of the node with Raft id `id`.
    pub fn name_of(&self, id: NodeId) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// Waits (up to `timeout`) until some member leads the group.
    pub async fn wait_for_leader(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.directory.status().leader.is_some() {
                return true;
            }
            if Instant::now() >= deadline || self.member.is_none() {
                return false;
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    /// Why this node cannot serve accounts yet (`/readyz`), or `None` when it can: its
    /// directory member runs, knows a leader, and its replica has applied the log.
    pub fn not_ready(&self) -> Option<String> {
        if self.member.is_none() {
            return Some("the directory member is not running".into());
        }
        let status = self.directory.status();
        if status.leader.is_none() {
            return Some("the account directory has no leader yet".into());
        }
        if status.applied.is_none() {
            return Some("the account directory's replica here has not caught up yet".into());
        }
        None
    }

    /// Whether this node can have account changes committed now, and if not, why.
    /// `leader_quorum_ack_ms`: when another node leads, how long since a majority last
    /// answered it, as its last health check said; `None` when it is not reachable.
    pub fn changes_refused(&self, leader_quorum_ack_ms: Option<Option<u64>>) -> Option<String> {
        let status = self.directory.status();
        if self.member.is_none() {
            return Some("this node is not running".into());
        }
        let Some(leader) = status.leader else {
            return Some("directory has no quorum: no leader is elected".into());
        };
        let name = self.name_of(leader).unwrap_or("?");
        let silent = if status.role == RaftRole::Leader {
            status.millis_since_quorum_ack
        } else {
            match leader_quorum_ack_ms {
                Some(silent) => silent,
                None => {
                    return Some(format!(
                        "the directory's leader {name} is unreachable from here"
                    ));
                }
            }
        };
        let silent = silent.unwrap_or(u64::MAX);
        if self.config.is_multi_node() && silent > QUORUM_SILENCE_MS {
            return Some(format!(
                "directory has no quorum: no majority of the voters has answered the leader {name} for {} s",
                silent / 1000
            ));
        }
        None
    }

    /// Commits `change`: on this node if it leads, else forwarded to the leader, and
    /// returns once this node's replica has it too (so that what the caller does next
    /// here sees it). Waits for an election in progress; fails with the cause when no
    /// majority confirms.
    pub async fn write(&self, change: DirectoryChange) -> Result<ChangeOutcome, String> {
        let Some(member) = &self.member else {
            return Err(WriteError::NotRunning.to_string());
        };
        let deadline = Instant::now() + WRITE_PATIENCE;
        loop {
            let leader = match member.write(change.clone()).await {
                Ok(committed) => return Ok(committed.outcome),
                Err(WriteError::NotLeader { leader }) => leader,
                Err(e) => return Err(e.to_string()),
            };
            if let (Some(leader), Some(links)) = (&leader, &self.links) {
                match links
                    .call_peer(leader, Call::DirectoryWrite(change.clone()))
                    .await
                {
                    Ok(Answer::DirectoryWrite(Ok(committed))) => {
                        if !member.wait_applied(committed.index, APPLY_WAIT).await {
                            tracing::warn!(
                                index = committed.index,
                                "a committed directory change is not applied here yet"
                            );
                        }
                        return Ok(committed.outcome);
                    }
                    Ok(Answer::DirectoryWrite(Err(WriteRefused::Failed(e)))) => return Err(e),
                    // Leadership moved on: ask again whoever leads now.
                    Ok(Answer::DirectoryWrite(Err(WriteRefused::NotLeader))) => {}
                    Ok(Answer::Failed(e)) => {
                        return Err(format!("the leader {} failed: {e}", leader.name));
                    }
                    Ok(_) => {
                        return Err(format!("the leader {} answered another call", leader.name));
                    }
                    // Never sent: the leader may be gone; try again until the deadline.
                    Err(e) if e.not_sent() && Instant::now() < deadline => {}
                    Err(e) if e.not_sent() => {
                        return Err(format!(
                            "directory has no quorum: the leader {} cannot be reached ({e})",
                            leader.name
                        ));
                    }
                    Err(e) => {
                        return Err(format!(
                            "directory has no quorum: the leader {} did not confirm the change ({e}){UNCERTAIN}",
                            leader.name
                        ));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(
                    "directory has no quorum: no leader was elected in time (are most directory nodes down?)"
                        .into(),
                );
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    /// The node an account should live on: `node` if given (a backend), else the
    /// backend with the fewest accounts in `site`, else in this node's own site, else
    /// anywhere.
    pub fn place_account(&self, site: Option<&str>, node: Option<&str>) -> Result<String, String> {
        if let Some(name) = node {
            return match self.config.find_node(name) {
                Some(found) if found.has_role(Role::Backend) => Ok(found.name.clone()),
                Some(_) => Err(format!(
                    "node {name:?} is not a backend: it holds no mailboxes"
                )),
                None => Err(format!("no node named {name:?}")),
            };
        }
        let chosen_site = site.is_some();
        let site = match site {
            Some(site) => {
                if !self.config.sites.iter().any(|s| s.name == site) {
                    return Err(format!("no site named {site:?}"));
                }
                site.to_string()
            }
            None => self
                .config
                .find_node(&self.me)
                .map(|n| n.site.clone())
                .unwrap_or_default(),
        };
        let backends = |in_site: bool| -> Vec<&str> {
            self.config
                .nodes
                .iter()
                .filter(|n| n.has_role(Role::Backend) && (!in_site || n.site == site))
                .map(|n| n.name.as_str())
                .collect()
        };
        let mut candidates = backends(true);
        if candidates.is_empty() {
            if chosen_site {
                return Err(format!("site {site:?} has no backend"));
            }
            candidates = backends(false);
        }
        match candidates.as_slice() {
            [] => Err("no node is a backend".into()),
            // One choice: no need to count every account.
            [only] => Ok(only.to_string()),
            several => {
                let mut counts: HashMap<&str, usize> = HashMap::new();
                let accounts = self.directory.accounts().map_err(|e| e.to_string())?;
                for record in &accounts {
                    *counts.entry(record.home()).or_default() += 1;
                }
                Ok(several
                    .iter()
                    .min_by_key(|name| counts.get(**name).copied().unwrap_or(0))
                    .map_or_else(String::new, |name| name.to_string()))
            }
        }
    }

    /// Adds `address` with home `home`.
    pub async fn add_account(
        &self,
        address: &str,
        password_hash: &str,
        home: &str,
    ) -> Result<ChangeOutcome, String> {
        let record = AccountRecord::new(AccountV2::new(
            address,
            password_hash,
            home,
            crate::smtp_time::unix_now(),
        ));
        self.write(DirectoryChange::AddAccount(record)).await
    }

    /// What a leader does now and then: every configured node that is not a voter
    /// joins as a learner, and the postmaster account exists.
    async fn lead(&self) {
        let Some(member) = &self.member else { return };
        if member.status().role != RaftRole::Leader {
            return;
        }
        member.ensure_members(&members(&self.config)).await;
        if let Err(e) = self.ensure_postmaster().await {
            tracing::warn!(error = %e, "could not make the postmaster account");
        }
    }

    /// RFC 5321 §4.5.1: mail to `postmaster` must be accepted, so the first local
    /// domain's postmaster account exists from the first start. It has no password
    /// (nobody can sign in) until an administrator gives it one.
    pub async fn ensure_postmaster(&self) -> Result<(), String> {
        let Some(domain) = self.config.local_domains.first() else {
            return Ok(());
        };
        let address = format!("postmaster@{domain}");
        if self
            .directory
            .account(&address)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Ok(());
        }
        let home = self.place_account(None, None)?;
        if self.add_account(&address, NO_PASSWORD, &home).await? == ChangeOutcome::Applied {
            tracing::info!(
                %address, %home,
                "made the postmaster account; give it a password with `portico user passwd` to read its mail"
            );
        }
        Ok(())
    }

    /// Puts the store's accounts the directory does not know into it, once (a data
    /// directory from before the directory). An account the directory has only as the
    /// placeholder made before (a postmaster with no password) takes its place.
    pub async fn migrate(&self, accounts: &Arc<Accounts>, data_dir: &Path) -> Result<(), String> {
        let marker = data_dir.join(MIGRATED_MARKER);
        if marker.exists() {
            return Ok(());
        }
        let lookup = accounts.clone();
        let records = tokio::task::spawn_blocking(move || lookup.unmigrated())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading the accounts to migrate: {e}"))?;
        for record in records {
            let address = record.address().to_string();
            let outcome = self
                .write(DirectoryChange::AddAccount(record.clone()))
                .await?;
            if outcome == ChangeOutcome::Applied {
                tracing::info!(%address, "account migrated into the directory");
                continue;
            }
            let placeholder = self
                .directory
                .account(&address)
                .map_err(|e| e.to_string())?
                .is_some_and(|taken| taken.fields().password_hash == NO_PASSWORD);
            if placeholder {
                self.write(DirectoryChange::UpdateAccount(record)).await?;
                tracing::info!(%address, "account migrated into the directory over its placeholder");
            } else {
                tracing::warn!(%address, "account already in the directory; its mailbox here is kept");
            }
        }
        tokio::task::spawn_blocking(move || write_marker(&marker))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("writing the migration marker: {e}"))
    }

    /// Runs the background work until the task is dropped.
    pub async fn keep_in_step(self: Arc<Self>, accounts: Arc<Accounts>, data_dir: PathBuf) {
        let backend = self
            .config
            .find_node(&self.me)
            .is_some_and(|n| n.has_role(Role::Backend));
        let mut migrated = !backend;
        // The applied index the last removal pass saw; passes run when it moves.
        let mut swept_at = None;
        let mut tick = tokio::time::interval(STEP_EVERY);
        loop {
            tick.tick().await;
            self.lead().await;
            if !migrated {
                match self.migrate(&accounts, &data_dir).await {
                    Ok(()) => migrated = true,
                    Err(e) => {
                        tracing::info!(error = %e, "account migration waits for the directory");
                        continue;
                    }
                }
            }
            if !backend {
                continue;
            }
            let applied = self.directory.status().applied;
            if swept_at == Some(applied) {
                continue;
            }
            let work = accounts.clone();
            let sweep =
                tokio::task::spawn_blocking(move || work.remove_mailboxes_of_removed_accounts());
            match sweep.await {
                Ok(Ok(_)) => swept_at = Some(applied),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "removing the mailboxes of removed accounts")
                }
                Err(_) => {}
            }
        }
    }

    /// Stops the directory member (blocking: call it off async threads).
    pub fn stop(&self) {
        if let Some(member) = &self.member {
            member.stop();
        }
    }
}

fn names(config: &ClusterConfig) -> HashMap<NodeId, String> {
    config
        .nodes
        .iter()
        .map(|node| (node_id(&node.name), node.name.clone()))
        .collect()
}

/// Writes the migration marker durably.
fn write_marker(path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    file.sync_all()?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
