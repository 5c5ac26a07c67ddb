//! Sans-IO POP3 server session (RFC 1939, CAPA RFC 2449, STLS RFC 2595, AUTH RFC 5034,
//! response codes RFC 3206).
//!
//! This crate owns the POP3 grammar and session rules and nothing else: it never touches
//! a socket, a TLS library, an async runtime or the store. The caller feeds it bytes and
//! replies ([`Input`]) and carries out the [`Action`]s it hands back: writing bytes,
//! starting TLS, checking credentials, opening the maildrop, fetching a message,
//! committing deletions.
//!
//! ```text
//!            greeting
//!               │
//!        ┌──────▼────────┐  STLS   ┌──────────┐
//!        │ AUTHORIZATION ├────────►│ StartTls │──TlsEstablished──┐
//!        │ USER/PASS/AUTH│◄────────┴──────────┘                  │
//!        └──────┬────────┘◄─────────────────────────────────────┘
//!   Authenticate ok + OpenMaildrop ok
//!        ┌──────▼────────┐
//!        │  TRANSACTION  │ STAT LIST RETR TOP DELE RSET UIDL NOOP
//!        └──────┬────────┘
//!             QUIT ──► UPDATE (CommitDeletes) ──► +OK, Close
//! ```
//!
//! The AUTHORIZATION part ([`Session`] before login) is separable from the TRANSACTION
//! part: once [`Action::Authenticate`] succeeds, the caller decides where the maildrop
//! lives, which is what lets a frontend hand the rest of the session to another node.

mod command;
mod line;
mod multiline;
mod session;
mod tally;

pub use multiline::top_is_within;
pub use session::{
    Action, AuthFailure, HandOff, Input, MaildropEntry, MaildropError, Pop3Config, Secret, Session,
};
pub use tally::{CommandName, Pop3Names};

#[cfg(test)]
mod handoff_tests;
