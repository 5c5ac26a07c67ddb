//! What every session on a node shares: configuration, store, authenticator, mailbox
//! registry, TLS, connection limits and the shutdown signal.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use portico_cluster::ClusterConfig;
use portico_directory::AccountRecord;
use portico_store::{Account, Store};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::accounts::Accounts;
use crate::auth::{Authenticator, LoginError, Protocol, SignedIn};
use crate::fulltext::FullText;
use crate::gate::MailboxLease;
use crate::mailbox::{MailboxRegistry, SessionId};
use crate::metrics::LoginResult;
use crate::spool::SpoolArea;

/// Where a node's database lives inside its data directory.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
}

/// The store's tuning from the `[store]` section.
pub fn store_options(config: &ClusterConfig) -> portico_store::StoreOptions {
    const MIB: u64 = 1024 * 1024;
    let settings = &config.store;
    portico_store::StoreOptions {
        cache_capacity: settings.cache_mb.saturating_mul(MIB),
        segment_size: settings.segment_mb.max(1).saturating_mul(MIB),
        min_free_bytes: settings.min_free_mb.saturating_mul(MIB),
        min_free_percent: settings.min_free_percent,
        group_commit_delay: std::time::Duration::from_micros(settings.group_commit_delay_us),
        verify_against_body_log: true,
        // Enough for the texts of a few hundred messages between two indexing rounds.
        body_text_budget: match config.search.full_text_index {
            true => 4 * MIB as usize,
            false => 0,
        },
    }
}

pub struct NodeContext {
    pub config: Arc<ClusterConfig>,
    pub node_name: String,
    pub store: Arc<Store>,
    /// Who exists and where their mailbox is (the directory's replica and the store).
    pub accounts: Arc<Accounts>,
    pub auth: Authenticator,
    pub mailboxes: Arc<MailboxRegistry>,
    pub tls: TlsAcceptor,
    /// Turns true once when the node starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    pub limits: Arc<ConnectionLimits>,
    /// Wakes the outgoing queue runner (new mail queued, `queue flush`).
    pub queue_wake: Arc<tokio::sync::Notify>,
    /// CPU-heavy session work (FETCH rendering, SEARCH) runs on the blocking pool
    /// holding one of these, one per core: however many users search at once, the
    /// threads serving sessions keep their share of the CPU, and slices queue in order.
    pub heavy_work: Arc<tokio::sync::Semaphore>,
    /// Where SMTP sessions keep the content of messages they are receiving.
    pub spool: Arc<SpoolArea>,
    /// The full-text index SEARCH asks first, unless turned off or unusable.
    pub full_text: Option<Arc<FullText>>,
    /// How sessions and mail reach the other nodes; `None` in a group of one.
    pub proxy: Option<Arc<crate::proxy::Proxy>>,
    next_session: AtomicU64,
}

/// What a node is made of, built at start.
pub struct NodeParts {
    pub config: Arc<ClusterConfig>,
    pub node_name: String,
    pub store: Arc<Store>,
    pub accounts: Arc<Accounts>,
    pub auth: Authenticator,
    pub mailboxes: Arc<MailboxRegistry>,
    pub tls: TlsAcceptor,
    pub shutdown: watch::Receiver<bool>,
    pub spool: Arc<SpoolArea>,
    pub full_text: Option<Arc<FullText>>,
    pub proxy: Option<Arc<crate::proxy::Proxy>>,
    pub queue_wake: Arc<tokio::sync::Notify>,
}

impl NodeContext {
    pub fn new(parts: NodeParts) -> Self {
        let NodeParts {
            config,
            node_name,
            store,
            accounts,
            auth,
            mailboxes,
            tls,
            shutdown,
            spool,
            full_text,
            proxy,
            queue_wake,
        } = parts;
        crate::metrics::watch_store(&store);
        let limits = Arc::new(
            ConnectionLimits::new(
                config.security.max_connections,
                config.security.max_connections_per_address,
            )
            .with_per_user(config.security.max_connections_per_user),
        );
        NodeContext {
            config,
            node_name,
            store,
            accounts,
            auth,
            mailboxes,
            tls,
            shutdown,
            limits,
            queue_wake,
            heavy_work: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, usize::from),
            )),
            spool,
            full_text,
            proxy,
            next_session: AtomicU64::new(1),
        }
    }

    /// Checks a sign-in and, for a mailbox on this node, takes the session's place
    /// under the per-user limit; the slot must be kept for as long as the session
    /// lasts. A mailbox elsewhere is counted where the session is served, its home
    /// node. The user name goes to the authenticator as typed: it normalizes it once
    /// for lookup and throttling, and refuses an address with too many recent failures
    /// ([`LoginError::Throttled`]). Counted in the metrics, except a mailbox elsewhere:
    /// its caller counts how that ends (referred, handed over, or not reached).
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
        protocol: Protocol,
    ) -> Result<SignIn, LoginError> {
        let signed_in = self
            .check_sign_in(username, password, client, protocol)
            .await;
        let result = match &signed_in {
            Ok(SignIn::Here(..)) => Some(LoginResult::Success),
            Ok(SignIn::Elsewhere(_)) => None,
            Err(error) => Some(LoginResult::from(*error)),
        };
        if let Some(result) = result {
            crate::metrics::count_login(protocol.into(), result);
        }
        signed_in
    }

    async fn check_sign_in(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
        protocol: Protocol,
    ) -> Result<SignIn, LoginError> {
        let account = match self
            .auth
            .login(username, password, client, protocol)
            .await?
        {
            SignedIn::Here(account) => account,
            SignedIn::Elsewhere(record) => return Ok(SignIn::Elsewhere(record)),
        };
        let Some(slot) = self.limits.admit_user(&account.address) else {
            tracing::warn!(user = %account.address, "per-user connection limit reached");
            return Err(LoginError::TooManyConnections);
        };
        // Submission never opens the mailbox; the others hold it open.
        if protocol == Protocol::Smtp {
            return Ok(SignIn::Here(account, slot));
        }
        let Some(lease) = self.accounts.gate().enter(&account.address) else {
            tracing::info!(user = %account.address, "sign-in refused: the mailbox is being moved");
            return Err(LoginError::Unavailable);
        };
        // A move that ended between the password check and the lease: the client's
        // next try goes to the new home.
        match self.accounts.record(&account.address) {
            Ok(Some(record)) if record.home() == self.node_name => {
                Ok(SignIn::Here(account, slot.holding(lease)))
            }
            _ => Err(LoginError::Unavailable),
        }
    }

    pub fn next_session_id(&self) -> SessionId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }
}

/// Where a signed-in session is served.
pub enum SignIn {
    /// Here, holding its place under the per-user limit.
    Here(Account, UserSlot),
    /// On the mailbox's home node, which the session is proxied to.
    Elsewhere(AccountRecord),
}

/// Open client connections, per node and per client address, and signed-in sessions
/// per user.
pub struct ConnectionLimits {
    max_total: usize,
    max_per_address: usize,
    max_per_user: usize,
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    per_user: Mutex<HashMap<String, usize>>,
}

/// One signed-in session of a user; gives its place back when dropped.
pub struct UserSlot {
    limits: Arc<ConnectionLimits>,
    user: String,
    /// The session's use of the mailbox, when it opens one.
    lease: Option<MailboxLease>,
}

impl UserSlot {
    /// The slot of a session that uses the mailbox `lease` is on.
    pub fn holding(mut self, lease: MailboxLease) -> UserSlot {
        self.lease = Some(lease);
        self
    }

    /// Resolves when the session must end because its mailbox is being moved (never,
    /// for a session that holds no mailbox).
    pub fn evicted(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let evicted = self.lease.as_ref().map(MailboxLease::evicted);
        async move {
            match evicted {
                Some(evicted) => evicted.await,
                None => std::future::pending().await,
            }
        }
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut per_user = self
            .limits
            .per_user
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_user.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                per_user.remove(&self.user);
            }
        }
    }
}

/// One admitted connection; gives its place back when dropped.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    address: IpAddr,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        ConnectionLimits {
            max_total,
            max_per_address,
            max_per_user: usize::MAX,
            total: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            per_user: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_per_user(mut self, max_per_user: usize) -> Self {
        self.max_per_user = max_per_user;
        self
    }

    /// Admits one more signed-in session for `user`, or says no at the limit.
    pub fn admit_user(self: &Arc<Self>, user: &str) -> Option<UserSlot> {
        let mut per_user = self.per_user.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_user.entry(user.to_string()).or_insert(0);
        if *count >= self.max_per_user {
            if *count == 0 {
                per_user.remove(user);
            }
            return None;
        }
        *count += 1;
        Some(UserSlot {
            limits: self.clone(),
            user: user.to_string(),
            lease: None,
        })
    }

    /// Admits a connection from `address`, or says no when a limit is reached.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Option<ConnectionSlot> {
        let mut per_address = self
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = per_address.entry(address).or_insert(0);
        if *count >= self.max_per_address || self.total.load(Ordering::Acquire) >= self.max_total {
            if *count == 0 {
                per_address.remove(&address);
            }
            return None;
        }
        *count += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        Some(ConnectionSlot {
            limits: self.clone(),
            address,
        })
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_address = self
            .limits
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                per_address.remove(&self.address);
            }
        }
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_address_and_in_total_and_free_on_drop() {
        let limits = Arc::new(ConnectionLimits::new(3, 2));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = limits.admit(a).unwrap();
        let _second = limits.admit(a).unwrap();
        assert!(limits.admit(a).is_none(), "per-address limit");
        let _third = limits.admit(b).unwrap();
        assert!(limits.admit(b).is_none(), "node limit");
        drop(first);
        assert_eq!(limits.open(), 2);
        assert!(limits.admit(a).is_some());
    }

    #[test]
    fn users_have_their_own_limit_freed_on_drop() {
        let limits = Arc::new(ConnectionLimits::new(10, 10).with_per_user(2));
        let one = limits.admit_user("alice@example.com").unwrap();
        let _two = limits.admit_user("alice@example.com").unwrap();
        assert!(limits.admit_user("alice@example.com").is_none());
        assert!(limits.admit_user("bob@example.com").is_some());
        drop(one);
        assert!(limits.admit_user("alice@example.com").is_some());
    }
}
