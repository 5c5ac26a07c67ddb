//! Sans-IO IMAP4rev2 / IMAP4rev1 server session (RFC 9051, RFC 3501) with the
//! extensions Portico advertises.
//!
//! This crate owns the IMAP grammar and session rules: it never touches a socket, TLS,
//! an async runtime or the store. The host feeds it bytes, replies and folder events
//! ([`session::Input`]) and carries out the [`session::Action`]s it returns. It must
//! never depend on the server crate, actix or sled.
//!
//! Layers: [`reader`] frames commands (lines and literals), [`parser`] turns them into
//! [`command`] values, [`session`] reads and dispatches them and the modules under
//! [`command`] carry each family out against the host through [`request`];
//! [`fetch`], [`search`], [`esearch`], [`context`], [`sort`], [`thread`], [`casemap`],
//! [`listing`], [`notify`], [`view`], [`names`], [`url`] and [`response`] hold the rules
//! they apply. [`scan`] is
//! the FETCH/SEARCH work the host runs off the session's thread, [`catenate`] the
//! building of CATENATE messages from stored parts.

pub mod casemap;
pub mod catenate;
pub mod command;
pub mod context;
pub mod encode;
pub mod esearch;
pub mod fetch;
pub mod listing;
pub mod mutf7;
pub mod names;
pub mod notify;
pub mod parser;
pub mod reader;
pub mod request;
pub mod response;
pub mod scan;
pub mod search;
pub mod session;
pub mod sort;
mod tally;
pub mod thread;
pub mod url;
pub mod view;

pub use session::{Action, HandOff, ImapConfig, Input, Session};
pub use tally::{CommandName, ImapNames};

#[cfg(test)]
mod handoff_tests;
