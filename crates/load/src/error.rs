//! What can go wrong in a simulated client, and the kind each error is counted under.

use crate::wire::WireError;

/// One failed exchange.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("no answer within the timeout")]
    Timeout,
    #[error("I/O: {0}")]
    Io(std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    /// The server refused the credentials.
    #[error("login refused: {0}")]
    Auth(String),
    /// A negative answer to a command: IMAP NO/BAD, POP3 -ERR, SMTP 4xx/5xx.
    #[error("{command} answered {status}: {text}")]
    Refused {
        command: &'static str,
        /// `NO`, `BAD`, `-ERR`, `4xx` or `5xx`.
        status: &'static str,
        text: String,
    },
    #[error("malformed answer: {0}")]
    Malformed(WireError),
    /// An answer that parses but is not what the protocol allows here.
    #[error("unexpected answer to {command}: {text}")]
    Unexpected { command: &'static str, text: String },
}

impl ClientError {
    /// The key the error is counted under in the report: `connect`, `tls`, `timeout`,
    /// `io` (a reset or the server closing the connection too), `auth`,
    /// `protocol NO SELECT` (status and command), `protocol malformed`.
    pub fn kind(&self) -> String {
        match self {
            ClientError::Connect(_) => "connect".into(),
            ClientError::Tls(_) => "tls".into(),
            ClientError::Timeout => "timeout".into(),
            ClientError::Io(_) | ClientError::Closed => "io".into(),
            ClientError::Auth(_) => "auth".into(),
            ClientError::Refused {
                command, status, ..
            } => format!("protocol {status} {command}"),
            ClientError::Malformed(_) => "protocol malformed".into(),
            ClientError::Unexpected { command, .. } => format!("protocol unexpected {command}"),
        }
    }

    /// Whether the connection can go on after this error (a refused command leaves the
    /// session as it was; anything else ends it).
    pub fn session_survives(&self) -> bool {
        matches!(self, ClientError::Refused { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let refused = ClientError::Refused {
            command: "SELECT",
            status: "NO",
            text: "no such mailbox".into(),
        };
        assert_eq!(refused.kind(), "protocol NO SELECT");
        assert!(refused.session_survives());
        assert_eq!(ClientError::Closed.kind(), "io");
        assert!(!ClientError::Timeout.session_survives());
    }
}
