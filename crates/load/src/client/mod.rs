//! Minimal protocol clients over [`Conn`](crate::conn::Conn): each method is one
//! exchange (a command and its whole answer), the unit the scenarios time.

pub mod imap;
pub mod pop3;
pub mod smtp;
