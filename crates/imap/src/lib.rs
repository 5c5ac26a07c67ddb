//! Sans-IO IMAP4rev2 / IMAP4rev1 server session (in progress: the session modules are
//! added once the grammar compiles).

pub mod command;
pub mod encode;
pub mod mutf7;
pub mod parser;
pub mod reader;
