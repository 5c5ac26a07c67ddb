//! Sans-IO SMTP server session: inbound mail exchange (RFC 5321, port 25) and message
//! submission (RFC 6409, ports 587 and 465), with STARTTLS (RFC 3207), AUTH PLAIN and
//! LOGIN (RFC 4954), PIPELINING (RFC 2920), 8BITMIME (RFC 6152), SIZE (RFC 1870),
//! ENHANCEDSTATUSCODES (RFC 2034, RFC 3463), SMTPUTF8 (RFC 6531) and CHUNKING (RFC 3030).
//!
//! This crate owns the SMTP grammar and session rules and nothing else: it never touches
//! a socket, a TLS library, an async runtime, the directory or the store, and must never
//! depend on them (nor on another protocol crate). The host feeds it bytes and answers
//! ([`Input`]) and carries out the [`Action`]s it hands back: writing bytes, starting TLS,
//! checking credentials, deciding what a recipient is, and making a message durable. The
//! host alone decides what is local, what may be relayed and where mail goes; the session
//! makes sure it is asked at the right moment and that its answer reaches the client in
//! order. Command arguments, dot-unstuffing and chunk counting come from `smtp-proto`;
//! the `From:` header of a submitted message is read with `mail-parser`. [`trace`] makes
//! client-given names safe for the host's trace headers and next-hop commands.
//!
//! ```text
//!   220 greeting
//!        │
//!  ┌─────▼─────┐ EHLO/HELO ┌────────────┐  AUTH ─► Authenticate ─► 235  (submission;
//!  │ Connected ├──────────►│  Greeted   │◄───────────────────────────┘  inbound: 503)
//!  └─────▲─────┘           └─┬────────▲─┘
//!        │                   │MAIL    │ RSET / EHLO / delivered or refused
//!        │                   │ (inbound, untrusted: CheckSender ─► 250 / 550 / 451)
//!        │             ┌─────▼────────┴──┐
//!        │             │   Transaction   │ RCPT ─► CheckRecipient ─► 250 / 550 / 451
//!        │             └─┬────────────┬──┘
//!        │          DATA │ 354        │ BDAT n [LAST]
//!        │       content to <CRLF>.<CRLF>   exactly n octets, 250 per chunk
//!        │               └─────┬──────┘
//!        │       (submission: From: not the user's ─► 553, no Deliver)
//!        │           Deliver(Envelope) ─► 250 queued as <id> / 4xx / 5xx
//!        │
//!   STARTTLS ─► 220, StartTls ─► TlsEstablished: back to Connected, all forgotten
//!   QUIT ─► 221, Close     Shutdown ─► 421, Close     too many errors or junk ─► 421, Close
//! ```

mod body;
mod command;
mod reply;
mod session;
mod tally;
pub mod trace;

pub use session::{
    Action, AuthFailure, DeliveryFailure, Envelope, Input, MAX_COMMAND_LINE, Mode,
    RecipientVerdict, Secret, SenderVerdict, Session, SmtpConfig,
};
pub use tally::{CommandName, SmtpNames};
