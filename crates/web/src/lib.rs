//! Portico's HTTPS service without the sockets: everything a mail client or a user's
//! browser is told over HTTP, written as plain functions from values to text.
//!
//! - [`autoconfig`]: Thunderbird's `config-v1.1.xml`.
//! - [`autodiscover`]: Microsoft Autodiscover POX (Outlook's `autodiscover.xml`).
//! - [`page`]: the "Settings for POP or IMAP access" page and its sign-in form.
//! - [`token`]: signed, expiring session tokens and the CSRF tokens bound to them.
//! - [`dns`]: the SRV and host records an administrator publishes, and a plain-text
//!   settings table for `portico settings`.
//!
//! Every answer is built from a [`ClientSettings`], which comes from
//! [`portico_cluster::ClusterConfig::connection_settings`], so autoconfig, Autodiscover,
//! the page and the CLI never disagree.
//!
//! This crate must never depend on actix, actix-web, tokio, rustls, sled, the server or
//! the store (`scripts/check-layers.sh` fails the suite if it does): the server crate
//! routes requests here and writes the answers back. Keeping HTTP out makes every
//! document testable by parsing it, with no listener.

pub mod address;
pub mod autoconfig;
pub mod autodiscover;
pub mod dns;
pub mod page;
mod settings;
pub mod token;
mod xml;

pub use portico_cluster::{ClientProtocol, ConnectionSetting, Encryption};
pub use settings::ClientSettings;
