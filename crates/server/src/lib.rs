//! Portico's node: actors, listeners, TLS, the admin socket and the command line.
//!
//! This crate is the thin layer that connects the pure protocol machines
//! (`portico-pop3`, …) to sockets, the store and each other. Protocol rules do not
//! live here; if a change here needs to know a protocol's grammar, it belongs in that
//! protocol's crate.
//!
//! ```text
//! listener ──► worker arbiter ──► connection task (socket, TLS) ◄──► session actor
//!                                                                      │  │
//!                                       authenticator ◄────────────────┘  ▼
//!                                                         mailbox actor (one per open
//!                                                         folder) ──► store (blocking pool)
//! ```

pub mod account_events;
pub mod accounts;
pub mod admin;
pub mod allocator;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod connection;
pub mod deflate;
pub mod delivery;
pub mod fulltext;
pub mod gate;
pub mod http;
pub mod imap;
pub mod internode;
pub mod listener;
pub mod live_config;
mod logging;
pub mod mailbox;
pub mod mailbox_move;
pub mod metrics;
pub mod node;
pub mod pki;
pub mod pop3;
mod private;
pub mod proxy;
pub mod quota;
pub mod relay;
pub mod router;
pub mod serve;
pub mod smtp;
mod smtp_time;
pub mod spool;
pub mod tls;
