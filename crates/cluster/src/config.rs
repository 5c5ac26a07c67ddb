//! `cluster.toml`: the schema, its defaults and its checks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::client_settings::{ConnectionSetting, default_internal_networks};
use crate::network::Network;

/// The configuration used when `portico` is given none: one node with every role, data
/// in `./data`, a self-signed certificate, unprivileged loopback ports, every protocol
/// on. The ports are the ones the README lists.
pub const EMBEDDED_DEFAULT: &str = r#"
cluster = "portico"
local_domains = []

[[site]]
name = "local"

[[node]]
name = "local"
site = "local"
roles = ["frontend", "backend", "directory"]
data_dir = "./data"

[node.listen]
pop3 = "127.0.0.1:1110"
pop3s = "127.0.0.1:1995"
imap = "127.0.0.1:1143"
imaps = "127.0.0.1:1993"
smtp = "127.0.0.1:1025"
submission = "127.0.0.1:1587"
submissions = "127.0.0.1:1465"
https = "127.0.0.1:8443"

[pop3]
enabled = true

[imap]
enabled = true

[smtp]
enabled = true
"#;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Parse(#[from] toml::de::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole cluster, as written in `cluster.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Name of the cluster (shown in greetings and logs).
    pub cluster: String,
    /// Domains whose mail is delivered locally. Empty: every account's domain is local.
    #[serde(default)]
    pub local_domains: Vec<String>,
    /// Directory of the cluster CA and the nodes' internode certificates (`portico
    /// cluster init` writes them); relative to this file's directory.
    #[serde(default = "default_pki")]
    pub pki: PathBuf,
    #[serde(default, rename = "site")]
    pub sites: Vec<SiteConfig>,
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeConfig>,
    /// Clients connecting from these networks (CIDR) get the internal connection
    /// settings; everyone else the external ones. Default: loopback and private ranges.
    #[serde(default = "default_internal_networks")]
    pub internal_networks: Vec<Network>,
    #[serde(default)]
    pub tls: TlsSettings,
    #[serde(default)]
    pub security: SecuritySettings,
    #[serde(default)]
    pub pop3: Pop3Settings,
    #[serde(default)]
    pub imap: ImapSettings,
    #[serde(default)]
    pub smtp: SmtpSettings,
    #[serde(default)]
    pub http: HttpSettings,
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub search: SearchSettings,
    /// Directory the relative paths in this file are relative to (the file's own
    /// directory; the working directory for the embedded default).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub name: String,
}

fn default_pki() -> PathBuf {
    PathBuf::from("pki")
}

/// What a node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Listens for clients.
    Frontend,
    /// Holds mailboxes.
    Backend,
    /// A voter of the account directory's Raft group: an odd number of nodes (3 or 5
    /// in a real cluster, spread across sites), one in a single-node cluster.
    Directory,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    pub site: String,
    pub roles: Vec<Role>,
    /// Where this node keeps its database, certificate and admin socket.
    pub data_dir: PathBuf,
    /// Where the node listens for the other nodes, and the address its own connections
    /// to them leave from (so that one node can be cut off by a rule on addresses).
    /// Required when the cluster has more than one node.
    #[serde(default)]
    pub internode: Option<SocketAddr>,
    #[serde(default)]
    pub listen: ListenConfig,
    /// The host name (or address) clients reach this node's listeners by, where that is
    /// not the listener's own address (a listener on `0.0.0.0`, or behind NAT): what an
    /// IMAP LOGIN-REFERRALS referral names (`[imap] login_referrals`). The listener's
    /// port is kept.
    #[serde(default)]
    pub client_host: Option<String>,
}

impl NodeConfig {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Where clients reach this node's IMAP listener: the implicit-TLS one (`imaps`)
    /// or the STARTTLS one (`imap`). The host is `client_host`, else the listener's
    /// address when it is a specific one.
    pub fn imap_client_endpoint(
        &self,
        implicit_tls: bool,
    ) -> Result<ClientEndpoint, NoClientEndpoint> {
        let (key, listener) = if implicit_tls {
            ("imaps", self.listen.imaps)
        } else {
            ("imap", self.listen.imap)
        };
        let Some(address) = listener else {
            return Err(NoClientEndpoint::NoListener { key });
        };
        let host = match &self.client_host {
            Some(host) => host.clone(),
            None if address.ip().is_unspecified() => {
                return Err(NoClientEndpoint::Unspecified { key, address });
            }
            None => address.ip().to_string(),
        };
        Ok(ClientEndpoint {
            host,
            port: address.port(),
        })
    }
}

/// A host and port clients connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEndpoint {
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

/// Why clients' way to a node's listener is not known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoClientEndpoint {
    #[error("it has no listen.{key}")]
    NoListener { key: &'static str },
    #[error(
        "its listen.{key} = {address} is no address a client can use, and it has no client_host"
    )]
    Unspecified {
        key: &'static str,
        address: SocketAddr,
    },
}

/// Client listener addresses of a node; a missing one is not served.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// POP3 with STLS (RFC 1939 / 2595), the 110-style port.
    pub pop3: Option<SocketAddr>,
    /// POP3 over implicit TLS (RFC 8314), the 995-style port.
    pub pop3s: Option<SocketAddr>,
    /// IMAP with STARTTLS (RFC 9051), the 143-style port.
    pub imap: Option<SocketAddr>,
    /// IMAP over implicit TLS (RFC 8314), the 993-style port.
    pub imaps: Option<SocketAddr>,
    /// Inbound SMTP for the local domains (MX), the 25-style port.
    pub smtp: Option<SocketAddr>,
    /// Message submission with STARTTLS (RFC 6409), the 587-style port.
    pub submission: Option<SocketAddr>,
    /// Message submission over implicit TLS (RFC 8314), the 465-style port.
    pub submissions: Option<SocketAddr>,
    /// HTTPS: client autoconfig and Autodiscover, the settings page, the admin API,
    /// health checks and metrics (`[http]`).
    pub https: Option<SocketAddr>,
}

impl ListenConfig {
    /// Every address listened on, with its key in `[node.listen]`.
    pub fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        [
            ("pop3", self.pop3),
            ("pop3s", self.pop3s),
            ("imap", self.imap),
            ("imaps", self.imaps),
            ("smtp", self.smtp),
            ("submission", self.submission),
            ("submissions", self.submissions),
            ("https", self.https),
        ]
        .into_iter()
        .filter_map(|(key, address)| Some((key, address?)))
        .collect()
    }
}

/// TLS material for client listeners.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain; relative paths are under the node's data directory.
    pub cert: PathBuf,
    /// PEM private key; relative paths are under the node's data directory.
    pub key: PathBuf,
    /// Make a self-signed certificate on first start when both files are missing.
    pub self_signed: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cert: PathBuf::from("tls/cert.pem"),
            key: PathBuf::from("tls/key.pem"),
            self_signed: true,
        }
    }
}

/// How plaintext credentials are treated (Exchange's LoginType).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginType {
    /// Credentials only after TLS (implicit or STLS/STARTTLS).
    #[default]
    Secure,
    /// Credentials accepted on unencrypted connections too.
    Plaintext,
}

/// Sign-in and connection policy shared by every protocol.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// Local parts that may never sign in to a mailbox (compared without case).
    pub denied_login_names: Vec<String>,
    /// Open client connections per node.
    pub max_connections: usize,
    /// Open client connections per client address.
    pub max_connections_per_address: usize,
    /// Signed-in sessions per user, across POP3, IMAP and submission.
    pub max_connections_per_user: usize,
    /// Failed logins from one address or for one user before answers are slowed down.
    pub failed_logins_before_delay: u32,
    /// Delay before the answer to the first failed login past that point, in
    /// milliseconds; it doubles with each further failure, so that many parallel
    /// connections do not multiply an attacker's guesses.
    pub failed_login_delay_ms: u64,
    /// The most that doubling delay grows to, in milliseconds.
    pub max_failed_login_delay_ms: u64,
    /// Failed logins from one client address within `failed_login_window_secs` after
    /// which that address is refused on every protocol (IMAP `NO [UNAVAILABLE]`, POP3
    /// `-ERR [SYS/TEMP]`, SMTP `421 4.7.0`) without any password being checked. Checks
    /// still running count too, so parallel connections cannot overshoot it. 0 turns
    /// the refusal off.
    pub failed_logins_before_block: u32,
    /// How long failed logins are remembered, in seconds: the window of the counts
    /// above, and so how long a refused address waits after its last failure.
    pub failed_login_window_secs: u64,
    /// How long a write to a client may stall (the client reads nothing) before the
    /// connection is cut and what was queued for it freed, in seconds.
    pub write_timeout_secs: u64,
    /// How long a successful password check is remembered, so polling clients do not
    /// pay for argon2 every minute. 0 turns the cache off.
    pub auth_cache_secs: u64,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            denied_login_names: vec![
                "anonymous".to_string(),
                "guest".to_string(),
                "administrator".to_string(),
            ],
            max_connections: 20_000,
            max_connections_per_address: 200,
            max_connections_per_user: 50,
            failed_logins_before_delay: 3,
            failed_login_delay_ms: 2000,
            max_failed_login_delay_ms: 30_000,
            failed_logins_before_block: 10,
            failed_login_window_secs: 15 * 60,
            write_timeout_secs: 60,
            auth_cache_secs: 300,
        }
    }
}

/// The mailbox store of each node (metadata in sled, bodies in the body log).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Page cache of the metadata database, MiB.
    pub cache_mb: u64,
    /// A body log segment is sealed at this size, MiB.
    pub segment_mb: u64,
    /// New mail is refused (SMTP 452 4.3.1, IMAP NO [OVERQUOTA]) while free disk space
    /// is below the smaller of these two, so the disk never fills under the database.
    pub min_free_mb: u64,
    pub min_free_percent: f64,
    /// Seconds between compaction passes over the body log (0: never).
    pub compact_interval_secs: u64,
    /// Longest a sync waits, in microseconds, for deliveries already on their way to
    /// join it (only when there are some), so concurrent deliveries share one sync.
    /// 500 by default: on a disk whose sync takes a millisecond or more, writers that
    /// come during a sync make the next group anyway, and every microsecond waited here
    /// is added to a STORE's or an APPEND's answer.
    pub group_commit_delay_us: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            cache_mb: 16,
            segment_mb: 32,
            min_free_mb: 256,
            min_free_percent: 1.0,
            compact_interval_secs: 300,
            group_commit_delay_us: 500,
        }
    }
}

/// SEARCH: the full-text index each node keeps of its messages.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSettings {
    /// Keep a full-text index so SEARCH BODY/TEXT reads only the messages that may
    /// match (answers are the same without it, only slower).
    pub full_text_index: bool,
    /// Memory the indexer fills before it writes a segment, MiB (at least 15).
    pub index_memory_mb: u64,
    /// Messages bigger than this, KiB, are not read for the index: SEARCH BODY/TEXT
    /// reads them every time. Indexing holds a few times this in memory at once.
    pub index_max_message_kb: u64,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            full_text_index: true,
            index_memory_mb: 32,
            index_max_message_kb: 4096,
        }
    }
}

/// POP3 service settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Settings {
    /// Off until the configuration turns it on.
    pub enabled: bool,
    pub login: LoginType,
    /// Idle time before a signed-in session is closed (RFC 1939 §3: at least 10 minutes).
    pub idle_timeout_secs: u64,
    /// Idle time before a session that has not signed in is closed.
    pub unauthenticated_timeout_secs: u64,
    /// Longest command line, CRLF included.
    pub max_line_length: usize,
    /// Client errors tolerated before the connection is closed.
    pub max_bad_commands: u32,
    /// What clients inside `internal_networks` are told to connect to, as
    /// `host:port:SSL|TLS|none` (SSL: implicit TLS; TLS: STARTTLS). Empty: the
    /// frontends' listeners.
    pub internal_connection: Vec<ConnectionSetting>,
    /// What other clients are told to connect to. Empty: the frontends' listeners.
    pub external_connection: Vec<ConnectionSetting>,
}

impl Default for Pop3Settings {
    fn default() -> Self {
        Pop3Settings {
            enabled: false,
            login: LoginType::Secure,
            idle_timeout_secs: 600,
            unauthenticated_timeout_secs: 60,
            max_line_length: 2048,
            max_bad_commands: 20,
            internal_connection: Vec::new(),
            external_connection: Vec::new(),
        }
    }
}

/// IMAP service settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapSettings {
    /// Off until the configuration turns it on.
    pub enabled: bool,
    pub login: LoginType,
    /// Idle time before a signed-in session is closed (RFC 9051 §5.4: at least 30 min).
    pub idle_timeout_secs: u64,
    /// Idle time before a session that has not signed in is closed.
    pub unauthenticated_timeout_secs: u64,
    /// Longest command line without its literals.
    pub max_line_length: usize,
    /// Longest command with its literals apart from APPEND's message (long UID sets).
    pub max_command_size: usize,
    /// Largest message APPEND accepts, advertised as APPENDLIMIT (RFC 7889).
    pub append_limit: u64,
    /// Client errors tolerated before the connection is closed.
    pub max_bad_commands: u32,
    /// Most folders one account may have (INBOX included). CREATE and RENAME beyond it
    /// are refused with `NO [LIMIT]`, so one user cannot fill the store with folders
    /// and make every LIST huge.
    pub max_folders: usize,
    /// Most levels a folder name may have (`a/b/c` has three). CREATE and RENAME
    /// (counting the children a rename moves) beyond it are refused with `NO [LIMIT]`.
    pub max_folder_depth: usize,
    /// Text one SEARCH may examine, in MiB, each key counting what it reads (a message
    /// searched by 10 TEXT keys counts ten times). Past it: `NO [LIMIT]`.
    pub max_search_work_mb: u64,
    /// Non-synchronizing literals of any size (LITERAL+), or only up to 4096 octets
    /// (LITERAL-, RFC 7888): with `false` a client must wait for `+` before sending a
    /// big message, so one the server refuses is never sent at all.
    pub literal_plus: bool,
    /// A client signed in at a node that does not hold its mailbox is told to sign in
    /// at the mailbox's node (`NO [REFERRAL imap://…]`, RFC 2221) instead of being
    /// proxied there, where that node's client address is known.
    pub login_referrals: bool,
    /// What clients inside `internal_networks` are told to connect to, as
    /// `host:port:SSL|TLS|none` (SSL: implicit TLS; TLS: STARTTLS). Empty: the
    /// frontends' listeners.
    pub internal_connection: Vec<ConnectionSetting>,
    /// What other clients are told to connect to. Empty: the frontends' listeners.
    pub external_connection: Vec<ConnectionSetting>,
}

impl Default for ImapSettings {
    fn default() -> Self {
        ImapSettings {
            enabled: false,
            login: LoginType::Secure,
            idle_timeout_secs: 1860,
            unauthenticated_timeout_secs: 60,
            max_line_length: 1024 * 1024,
            max_command_size: 1024 * 1024,
            append_limit: 50 * 1024 * 1024,
            max_bad_commands: 20,
            max_folders: 1000,
            max_folder_depth: 16,
            max_search_work_mb: 16 * 1024,
            literal_plus: true,
            login_referrals: false,
            internal_connection: Vec::new(),
            external_connection: Vec::new(),
        }
    }
}

/// SMTP service settings: inbound (MX), submission, the queue and its relay.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    /// Off until the configuration turns it on.
    pub enabled: bool,
    /// Name in the greeting, EHLO reply and Received headers.
    pub hostname: String,
    /// Login type for submission: AUTH only after STARTTLS (secure) or also without.
    pub login: LoginType,
    /// Largest message accepted (advertised as SIZE).
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// Client errors before the connection is closed.
    pub max_errors: u32,
    /// Junk commands per connection before it is closed with `421`: NOOP, RSET, VRFY,
    /// EXPN, HELP, a repeated EHLO/HELO, unknown commands and commands refused with a
    /// syntax or sequence error. Mail (MAIL, RCPT, DATA, BDAT), AUTH, STARTTLS and QUIT do
    /// not count, so any number of messages may be sent on one connection.
    pub max_commands: u32,
    /// Idle time allowed between commands (RFC 5321 §4.5.3.2: at least 5 minutes).
    pub command_timeout_secs: u64,
    /// Submission: MAIL FROM must be the authenticated user's own address.
    pub sender_must_match_login: bool,
    /// Submission: every address in the message's `From:` header must be the
    /// authenticated user's own address (compared without regard to case), or the
    /// message is refused after DATA with `553 5.7.1`, so that a user cannot pose as
    /// another (`From: "CEO" <ceo@example.com>`). A message without `From:` passes: it
    /// poses as nobody.
    pub from_must_match_login: bool,
    /// Inbound: MAIL FROM naming a local domain without authentication is refused with
    /// `550 5.7.1` (mail from our own users comes through submission), unless the client
    /// is in `trusted_networks`.
    pub reject_unauthenticated_local_senders: bool,
    /// Client networks (CIDR, `192.0.2.0/24`, `2001:db8::/32`, or one address) whose
    /// inbound mail may claim a local sender without authentication: an internal relay
    /// or an application server. Empty by default: nobody is trusted.
    pub trusted_networks: Vec<Network>,
    /// VRFY answers (off: 252, as RFC 5321 §3.5.3 allows).
    pub vrfy_enabled: bool,
    /// How long a message may wait in the queue before it bounces.
    pub queue_lifetime_secs: u64,
    /// First retry delay; doubles on every failure up to `retry_max_secs`.
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
    /// Where mail for other domains goes. Without one, such mail bounces.
    pub relay: Option<RelaySettings>,
    /// Content of messages being received that sessions hand to disk (all but their
    /// first 256 KiB), in MiB, all sessions together. Past it a message is refused with
    /// `452 4.3.1` and the client retries later.
    pub spool_limit_mb: u64,
    /// Hand the submission settings to clients (autoconfig, Autodiscover, the settings
    /// page), as Exchange's `AdvertiseClientSettings`.
    pub advertise_client_settings: bool,
    /// What submission clients inside `internal_networks` are told to connect to, as
    /// `host:port:SSL|TLS|none` (SSL: implicit TLS; TLS: STARTTLS). Empty: the
    /// frontends' listeners.
    pub internal_connection: Vec<ConnectionSetting>,
    /// What other clients are told to connect to. Empty: the frontends' listeners.
    pub external_connection: Vec<ConnectionSetting>,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            enabled: false,
            hostname: "localhost".to_string(),
            login: LoginType::Secure,
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            max_commands: 1000,
            command_timeout_secs: 300,
            sender_must_match_login: true,
            from_must_match_login: true,
            reject_unauthenticated_local_senders: true,
            trusted_networks: Vec::new(),
            vrfy_enabled: false,
            queue_lifetime_secs: 5 * 24 * 3600,
            retry_initial_secs: 60,
            retry_max_secs: 3600,
            relay: None,
            spool_limit_mb: 4096,
            advertise_client_settings: true,
            internal_connection: Vec::new(),
            external_connection: Vec::new(),
        }
    }
}

/// The HTTPS service of frontends (`[node.listen] https`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Bearer token of the admin API (`Authorization: Bearer …`), at least 32
    /// characters. Unset: the admin API answers 404.
    pub admin_token: Option<String>,
    /// How long a sign-in to the settings page lasts.
    pub session_lifetime_secs: u64,
    /// Largest request body taken (an Autodiscover request, a form, an API call).
    pub max_body_bytes: usize,
    /// Client networks (CIDR or one address) that may read `/metrics`; a request
    /// from elsewhere needs the admin API's bearer token. Default: this host only
    /// (`127.0.0.0/8`, `::1`), so that the counters are not public on an Internet-facing
    /// frontend.
    pub metrics_networks: Vec<Network>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            admin_token: None,
            session_lifetime_secs: 1800,
            max_body_bytes: 64 * 1024,
            metrics_networks: ["127.0.0.0/8", "::1"]
                .into_iter()
                .filter_map(Network::parse)
                .collect(),
        }
    }
}

/// The smarthost that takes mail for other domains.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    pub host: String,
    pub port: u16,
    /// Require STARTTLS with the smarthost.
    #[serde(default)]
    pub starttls: bool,
    /// Accept the smarthost's certificate without checking it (test setups only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

impl ClusterConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        ClusterConfig::parse(&text, base_dir)
    }

    /// The embedded default, relative to the working directory.
    pub fn embedded() -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::parse(EMBEDDED_DEFAULT, PathBuf::from("."))
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str, base_dir: PathBuf) -> Result<ClusterConfig, ConfigError> {
        let mut config: ClusterConfig = toml::from_str(text)?;
        config.base_dir = base_dir;
        config.local_domains = config
            .local_domains
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .collect();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.nodes.is_empty() {
            return invalid("no [[node]] is defined".into());
        }
        self.validate_topology()?;
        if self.pop3.idle_timeout_secs < 600 {
            return invalid("pop3.idle_timeout_secs must be at least 600 (RFC 1939 §3)".into());
        }
        if self.imap.idle_timeout_secs < 1800 {
            return invalid("imap.idle_timeout_secs must be at least 1800 (RFC 9051 §5.4)".into());
        }
        if self.imap.max_line_length < 1024
            || self.imap.max_command_size < self.imap.max_line_length
        {
            return invalid(
                "imap.max_line_length must be at least 1024 and imap.max_command_size at least as large"
                    .into(),
            );
        }
        if self.smtp.command_timeout_secs < 300 {
            return invalid(
                "smtp.command_timeout_secs must be at least 300 (RFC 5321 §4.5.3.2)".into(),
            );
        }
        if self.smtp.retry_initial_secs == 0
            || self.smtp.retry_max_secs < self.smtp.retry_initial_secs
        {
            return invalid(
                "smtp.retry_initial_secs must be positive and at most retry_max_secs".into(),
            );
        }
        if self.pop3.max_line_length < 512 {
            return invalid("pop3.max_line_length must be at least 512".into());
        }
        self.validate_connection_settings()
            .map_err(ConfigError::Invalid)?;
        if self
            .http
            .admin_token
            .as_ref()
            .is_some_and(|token| token.trim().len() < 32)
        {
            return invalid("http.admin_token must be at least 32 characters".into());
        }
        if self.http.session_lifetime_secs < 60 {
            return invalid("http.session_lifetime_secs must be at least 60".into());
        }
        Ok(())
    }

    /// Sites, nodes, roles and addresses: each error names the entry at fault.
    fn validate_topology(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let several = self.nodes.len() > 1;
        // Every address some node binds, with who binds it, to find the same one twice.
        let mut bound: Vec<(SocketAddr, String)> = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if self.nodes[..i].iter().any(|other| other.name == node.name) {
                return invalid(format!("node name {:?} is used twice", node.name));
            }
            if !self.sites.iter().any(|site| site.name == node.site) {
                return invalid(format!(
                    "node {:?} names site {:?}, which no [[site]] defines",
                    node.name, node.site
                ));
            }
            if node.roles.is_empty() {
                return invalid(format!("node {:?} has no roles", node.name));
            }
            if node.data_dir.as_os_str().is_empty() {
                return invalid(format!("node {:?} has an empty data_dir", node.name));
            }
            if let Some(host) = &node.client_host
                && !is_host(host)
            {
                return invalid(format!(
                    "node {:?} has client_host = {host:?}, which is neither a host name nor an IP address",
                    node.name
                ));
            }
            let mut addresses = node
                .listen
                .addresses()
                .into_iter()
                .map(|(key, address)| (format!("listen.{key}"), address))
                .collect::<Vec<_>>();
            match node.internode {
                Some(address) => addresses.push(("internode".to_string(), address)),
                None if several => {
                    return invalid(format!(
                        "node {:?} has no internode address (every node of a cluster of several needs one)",
                        node.name
                    ));
                }
                None => {}
            }
            for (key, address) in addresses {
                let what = format!("node {:?} {key}", node.name);
                if let Some((_, first)) = bound.iter().find(|(a, _)| *a == address) {
                    return invalid(format!("{what} = {address} is also {first}"));
                }
                bound.push((address, what));
            }
        }
        for (i, site) in self.sites.iter().enumerate() {
            if self.sites[..i].iter().any(|other| other.name == site.name) {
                return invalid(format!("site name {:?} is used twice", site.name));
            }
            if !self.nodes.iter().any(|node| node.site == site.name) {
                return invalid(format!("site {:?} has no nodes", site.name));
            }
        }
        let voters = self
            .nodes
            .iter()
            .filter(|node| node.roles.contains(&Role::Directory))
            .count();
        if !self
            .nodes
            .iter()
            .any(|node| node.roles.contains(&Role::Backend))
        {
            return invalid("no node has the backend role: mailboxes need one".into());
        }
        if voters == 0 || voters % 2 == 0 {
            return invalid(format!(
                "the directory role needs an odd number of nodes (1, 3 or 5), found {voters}"
            ));
        }
        Ok(())
    }

    /// The node called `name`; with `None`, the only node of a one-node cluster.
    pub fn node(&self, name: Option<&str>) -> Result<&NodeConfig, ConfigError> {
        match name {
            Some(name) => self
                .nodes
                .iter()
                .find(|node| node.name == name)
                .ok_or_else(|| ConfigError::Invalid(format!("no node named {name:?}"))),
            None if self.nodes.len() == 1 => Ok(&self.nodes[0]),
            None => Err(ConfigError::Invalid(
                "this cluster has several nodes: say which one with --node".into(),
            )),
        }
    }

    /// The directory of the cluster's certificates, resolved like a data directory.
    pub fn pki_dir(&self) -> PathBuf {
        self.base_dir.join(&self.pki)
    }

    /// Whether this configuration has more than one node (and so needs the internode
    /// link).
    pub fn is_multi_node(&self) -> bool {
        self.nodes.len() > 1
    }

    /// The node called `name`, if there is one.
    pub fn find_node(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|node| node.name == name)
    }

    /// A node's data directory, resolved against the configuration's directory.
    pub fn data_dir(&self, node: &NodeConfig) -> PathBuf {
        self.base_dir.join(&node.data_dir)
    }

    /// Whether mail for `domain` is delivered locally.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.local_domains.is_empty()
            || self
                .local_domains
                .iter()
                .any(|local| local.eq_ignore_ascii_case(domain))
    }

    /// Whether an address's local part may never sign in to a mailbox.
    pub fn is_denied_login(&self, address: &str) -> bool {
        let local = address.split('@').next().unwrap_or(address);
        self.security
            .denied_login_names
            .iter()
            .any(|denied| denied.eq_ignore_ascii_case(local))
    }
}

/// A DNS name (letters, digits and hyphens in dot-separated labels of at most 63
/// octets, 253 in all) or an IP address: what may stand as the host of a URL.
fn is_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_for_this_host_unless_configured() {
        let readers = HttpSettings::default().metrics_networks;
        let reads = |ip: &str| readers.iter().any(|n| n.contains(ip.parse().unwrap()));
        assert!(reads("127.0.0.1") && reads("127.0.0.2") && reads("::1"));
        assert!(!reads("192.0.2.1") && !reads("2001:db8::1"));
    }

    #[test]
    fn embedded_default_is_one_node_with_every_role_and_pop3_on() {
        let config = ClusterConfig::embedded().unwrap();
        let node = config.node(None).unwrap();
        assert_eq!(
            node.roles,
            vec![Role::Frontend, Role::Backend, Role::Directory]
        );
        assert_eq!(node.listen.pop3.unwrap().port(), 1110);
        assert_eq!(node.listen.pop3s.unwrap().port(), 1995);
        assert!(config.pop3.enabled);
        assert!(config.imap.enabled);
        assert_eq!(node.listen.imap.unwrap().port(), 1143);
        assert_eq!(node.listen.imaps.unwrap().port(), 1993);
        assert_eq!(config.pop3.login, LoginType::Secure);
        assert_eq!(config.data_dir(node), PathBuf::from("./data"));
        assert!(config.is_local_domain("anything.example"));
    }

    #[test]
    fn the_example_cluster_toml_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster.toml");
        let config = ClusterConfig::load(&path).unwrap();
        assert!(config.pop3.enabled);
        let names: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["d1", "d2", "s1", "s2"]);
        assert!(config.is_multi_node());
        assert_eq!(config.pki_dir(), path.parent().unwrap().join("pki"));
        let s2 = config.node(Some("s2")).unwrap();
        assert_eq!(s2.roles, vec![Role::Backend]);
        assert_eq!(s2.internode, Some("127.0.0.14:7000".parse().unwrap()));
    }

    #[test]
    fn the_single_node_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/single-node.toml");
        let config = ClusterConfig::load(&path).unwrap();
        let node = config.node(None).unwrap();
        assert_eq!(
            node.roles,
            vec![Role::Frontend, Role::Backend, Role::Directory]
        );
        assert!(!config.is_multi_node());
    }

    #[test]
    fn a_cluster_without_a_backend_is_refused() {
        let text = "cluster = \"c\"\n[[site]]\nname = \"s\"\n[[node]]\nname = \"n\"\nsite = \"s\"\nroles = [\"frontend\", \"directory\"]\ndata_dir = \"d\"\n";
        let error = ClusterConfig::parse(text, PathBuf::from(".")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration: no node has the backend role: mailboxes need one"
        );
    }

    #[test]
    fn protocols_are_off_unless_turned_on() {
        let config = ClusterConfig::parse(
            "cluster = \"c\"\n[[site]]\nname = \"s\"\n[[node]]\nname = \"n\"\nsite = \"s\"\nroles = [\"frontend\", \"backend\", \"directory\"]\ndata_dir = \"d\"\n",
            PathBuf::from("/etc/portico"),
        )
        .unwrap();
        assert!(!config.pop3.enabled);
        assert!(!config.imap.enabled);
        let node = config.node(Some("n")).unwrap();
        assert_eq!(config.data_dir(node), PathBuf::from("/etc/portico/d"));
    }

    #[test]
    fn bad_configurations_are_refused_with_a_reason() {
        let base = "cluster = \"c\"\n[[site]]\nname = \"s\"\n";
        let cases = [
            ("", "no [[node]]"),
            (
                "[[node]]\nname = \"n\"\nsite = \"x\"\nroles = [\"directory\"]\ndata_dir = \"d\"\n",
                "which no [[site]] defines",
            ),
            (
                "[[node]]\nname = \"n\"\nsite = \"s\"\nroles = [\"backend\"]\ndata_dir = \"d\"\n",
                "needs an odd number of nodes (1, 3 or 5), found 0",
            ),
            (
                "[[node]]\nname = \"n\"\nsite = \"s\"\nroles = [\"backend\", \"directory\"]\ndata_dir = \"d\"\n[pop3]\nidle_timeout_secs = 5\n",
                "at least 600",
            ),
            ("bogus = 1\n", "unknown field"),
        ];
        for (extra, expected) in cases {
            let err = ClusterConfig::parse(&format!("{base}{extra}"), PathBuf::from("."))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{extra:?}: {err}");
        }
    }

    /// A two-site cluster of four nodes, as `cluster.toml`'s example lays it out.
    const FOUR_NODES: &str = r#"
cluster = "c"
[[site]]
name = "dublin"
[[site]]
name = "seattle"
[[node]]
name = "d1"
site = "dublin"
roles = ["frontend", "backend", "directory"]
data_dir = "d1"
internode = "127.0.0.11:7000"
listen.imap = "127.0.0.11:1143"
[[node]]
name = "d2"
site = "dublin"
roles = ["backend", "directory"]
data_dir = "d2"
internode = "127.0.0.12:7000"
[[node]]
name = "s1"
site = "seattle"
roles = ["frontend", "directory"]
data_dir = "s1"
internode = "127.0.0.13:7000"
listen.imap = "127.0.0.13:1143"
[[node]]
name = "s2"
site = "seattle"
roles = ["backend"]
data_dir = "s2"
internode = "127.0.0.14:7000"
"#;

    #[test]
    fn a_cluster_of_several_sites_and_nodes_is_accepted() {
        let config = ClusterConfig::parse(FOUR_NODES, PathBuf::from(".")).unwrap();
        assert_eq!(config.nodes.len(), 4);
        let s1 = config.node(Some("s1")).unwrap();
        assert_eq!(s1.internode, Some("127.0.0.13:7000".parse().unwrap()));
        assert!(config.node(None).is_err());
        let err = config.node(Some("x9")).unwrap_err().to_string();
        assert!(err.contains("no node named \"x9\""), "{err}");
    }

    #[test]
    fn bad_cluster_layouts_name_the_entry_at_fault() {
        let cases = [
            // A site nobody is in.
            (
                FOUR_NODES.replace(
                    "name = \"seattle\"",
                    "name = \"seattle\"\n[[site]]\nname = \"paris\"",
                ),
                "site \"paris\" has no nodes",
            ),
            // Two nodes with one name, one internode address, one client port.
            (
                FOUR_NODES.replace("name = \"d2\"", "name = \"d1\""),
                "node name \"d1\" is used twice",
            ),
            (
                FOUR_NODES.replace("127.0.0.12:7000", "127.0.0.11:7000"),
                "node \"d2\" internode = 127.0.0.11:7000 is also node \"d1\" internode",
            ),
            (
                FOUR_NODES.replace(
                    "listen.imap = \"127.0.0.13:1143\"",
                    "listen.imap = \"127.0.0.11:1143\"",
                ),
                "node \"s1\" listen.imap = 127.0.0.11:1143 is also node \"d1\" listen.imap",
            ),
            // No internode address in a cluster of several.
            (
                FOUR_NODES.replace("internode = \"127.0.0.14:7000\"\n", ""),
                "node \"s2\" has no internode address",
            ),
            // An even number of directory voters, and none.
            (
                FOUR_NODES.replace(
                    "roles = [\"backend\"]",
                    "roles = [\"backend\", \"directory\"]",
                ),
                "an odd number of nodes (1, 3 or 5), found 4",
            ),
            (FOUR_NODES.replace(", \"directory\"]", "]"), "found 0"),
            // A node without a data directory.
            (
                FOUR_NODES.replace("data_dir = \"s2\"\n", ""),
                "missing field `data_dir`",
            ),
            (
                FOUR_NODES.replace("data_dir = \"s2\"", "data_dir = \"\""),
                "node \"s2\" has an empty data_dir",
            ),
        ];
        for (text, expected) in cases {
            let err = ClusterConfig::parse(&text, PathBuf::from("."))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "expected {expected:?} in: {err}");
        }
    }

    /// LOGIN-REFERRALS: a node's IMAP listener as clients reach it, of the kind the
    /// client used; `client_host` where the listener's address is none a client can use.
    #[test]
    fn imap_client_endpoints_for_referrals() {
        let text = FOUR_NODES
            .replace(
                "listen.imap = \"127.0.0.11:1143\"",
                "listen.imap = \"127.0.0.11:1143\"\nlisten.imaps = \"[::1]:1993\"",
            )
            .replace(
                "listen.imap = \"127.0.0.13:1143\"",
                "listen.imap = \"0.0.0.0:143\"\nlisten.imaps = \"0.0.0.0:993\"\nclient_host = \"imap-s1.example.com\"",
            )
            .replace(
                "internode = \"127.0.0.12:7000\"",
                "internode = \"127.0.0.12:7000\"\nlisten.imaps = \"0.0.0.0:994\"",
            );
        let config = ClusterConfig::parse(
            &format!("{text}[imap]\nlogin_referrals = true\n"),
            PathBuf::from("."),
        )
        .unwrap();
        assert!(config.imap.login_referrals);
        let endpoint = |node: &str, implicit: bool| {
            config
                .find_node(node)
                .unwrap()
                .imap_client_endpoint(implicit)
        };
        let at = |host: &str, port| {
            Ok(ClientEndpoint {
                host: host.into(),
                port,
            })
        };
        assert_eq!(endpoint("d1", false), at("127.0.0.11", 1143));
        assert_eq!(endpoint("d1", true), at("::1", 1993));
        assert_eq!(endpoint("s1", false), at("imap-s1.example.com", 143));
        assert_eq!(endpoint("s1", true), at("imap-s1.example.com", 993));
        assert_eq!(
            endpoint("d2", false),
            Err(NoClientEndpoint::NoListener { key: "imap" })
        );
        let unspecified = endpoint("d2", true).unwrap_err();
        assert_eq!(
            unspecified.to_string(),
            "its listen.imaps = 0.0.0.0:994 is no address a client can use, and it has no client_host"
        );
        assert_eq!(
            endpoint("s2", true),
            Err(NoClientEndpoint::NoListener { key: "imaps" })
        );
        // Off unless turned on.
        let config = ClusterConfig::parse(FOUR_NODES, PathBuf::from(".")).unwrap();
        assert!(!config.imap.login_referrals);
    }

    #[test]
    fn client_host_must_be_a_host_name_or_an_address() {
        for good in [
            "mail.example.com",
            "mail.example.com.",
            "imap-2",
            "192.0.2.7",
            "2001:db8::1",
            "x",
        ] {
            let text = FOUR_NODES.replace(
                "data_dir = \"s2\"",
                &format!("data_dir = \"s2\"\nclient_host = {good:?}"),
            );
            let config = ClusterConfig::parse(&text, PathBuf::from("."));
            assert!(config.is_ok(), "{good}: {:?}", config.err());
        }
        let long_label = "a".repeat(64);
        for bad in [
            "",
            "mail example.com",
            "user@host",
            "-mail.example.com",
            "mail..example.com",
            "[2001:db8::1]",
            "host:143",
            long_label.as_str(),
            "ex\u{e4}mple.com",
        ] {
            let text = FOUR_NODES.replace(
                "data_dir = \"s2\"",
                &format!("data_dir = \"s2\"\nclient_host = {bad:?}"),
            );
            let err = ClusterConfig::parse(&text, PathBuf::from("."))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("node \"s2\" has client_host = {bad:?}, which is neither a host name nor an IP address")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn denied_login_names_match_the_local_part_without_case() {
        let config = ClusterConfig::embedded().unwrap();
        assert!(config.is_denied_login("Administrator@example.com"));
        assert!(config.is_denied_login("anonymous"));
        assert!(!config.is_denied_login("alice@example.com"));
    }
}
