//! Portico's cluster model: what `cluster.toml` says, checked and resolved for one node.
//!
//! The same file is installed on every node; a process is told which node it is. This
//! crate knows nothing of sockets, actors or the store: it turns TOML into typed
//! settings and refuses configurations that cannot work, with a message that names the
//! offending key.

mod client_settings;
mod config;
mod network;

pub use client_settings::{
    ClientProtocol, ConnectionSetting, DEFAULT_INTERNAL_NETWORKS, Encryption,
};
pub use config::{
    ClientEndpoint, ClusterConfig, ConfigError, EMBEDDED_DEFAULT, HttpSettings, ImapSettings,
    ListenConfig, LoginType, NoClientEndpoint, NodeConfig, Pop3Settings, RelaySettings, Role,
    SecuritySettings, SiteConfig, SmtpSettings, TlsSettings,
};
pub use network::Network;
