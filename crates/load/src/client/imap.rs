//! An IMAP4rev1/rev2 client: just the commands the scenarios send.

use std::sync::Arc;
use std::time::Duration;

use crate::conn::{Conn, Target, TlsMode};
use crate::error::ClientError;
use crate::wire::imap::{Kind, Response, Status, decode_response, quoted};

/// How long an unmeasured LOGOUT at the end may take.
const QUIET_LOGOUT: Duration = Duration::from_secs(2);

/// A connected IMAP session.
pub struct ImapClient {
    conn: Conn,
    next_tag: u32,
    /// Messages in the selected mailbox, as the last EXISTS/EXPUNGE responses tell.
    pub exists: u32,
    /// Whether the selected mailbox was opened read-write (SELECT, not EXAMINE).
    pub writable: bool,
    /// Set once LOGOUT has been answered (or the connection is known dead).
    logged_out: bool,
}

impl ImapClient {
    /// Connects, reads the greeting and, with `--tls starttls`, upgrades.
    pub async fn connect(target: &Arc<Target>, client: usize) -> Result<ImapClient, ClientError> {
        let conn = Conn::open(target, client).await?;
        let mut imap = ImapClient {
            conn,
            next_tag: 1,
            exists: 0,
            writable: false,
            logged_out: false,
        };
        let greeting = imap.conn.receive(decode_response).await?;
        let upper = greeting.text.to_ascii_uppercase();
        if greeting.kind != Kind::Untagged
            || !(upper.starts_with(b"* OK") || upper.starts_with(b"* PREAUTH"))
        {
            return Err(ClientError::Refused {
                command: "connect",
                status: "BYE",
                text: greeting.message(),
            });
        }
        if target.tls == TlsMode::Starttls {
            imap.command("STARTTLS", "STARTTLS").await?;
            imap.conn.start_tls().await?;
        }
        Ok(imap)
    }

    fn tag(&mut self) -> String {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    /// Sends `tag line` and reads to its tagged answer: the untagged responses before it
    /// on OK, a [`ClientError::Refused`] named `name` on NO/BAD.
    pub async fn command(
        &mut self,
        name: &'static str,
        line: &str,
    ) -> Result<Vec<Response>, ClientError> {
        let tag = self.tag();
        self.conn
            .send(format!("{tag} {line}\r\n").as_bytes())
            .await?;
        self.finish(name, &tag).await
    }

    /// Reads responses up to the tagged answer to `tag`.
    async fn finish(
        &mut self,
        name: &'static str,
        tag: &str,
    ) -> Result<Vec<Response>, ClientError> {
        let mut untagged = Vec::new();
        loop {
            let response = self.conn.receive(decode_response).await?;
            match &response.kind {
                Kind::Untagged => {
                    self.track(&response);
                    untagged.push(response);
                }
                Kind::Continuation => {
                    return Err(ClientError::Unexpected {
                        command: name,
                        text: response.message(),
                    });
                }
                Kind::Tagged { tag: got, status } => {
                    if got != tag {
                        return Err(ClientError::Unexpected {
                            command: name,
                            text: response.message(),
                        });
                    }
                    return match status {
                        Status::Ok => Ok(untagged),
                        Status::No | Status::Bad => Err(ClientError::Refused {
                            command: name,
                            status: status.as_str(),
                            text: response.message(),
                        }),
                    };
                }
            }
        }
    }

    /// Follows the selected mailbox's size and notices a BYE.
    fn track(&mut self, response: &Response) {
        if let Some(exists) = response.exists() {
            self.exists = exists;
        } else if is_expunge(&response.text) {
            self.exists = self.exists.saturating_sub(1);
        } else if response.text.len() >= 5 && response.text[..5].eq_ignore_ascii_case(b"* BYE") {
            self.logged_out = true;
        }
    }

    /// LOGIN; a NO is an [`ClientError::Auth`].
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let (Some(user), Some(password)) = (quoted(user), quoted(password)) else {
            return Err(ClientError::Auth("user or password holds CR or LF".into()));
        };
        match self
            .command("LOGIN", &format!("LOGIN {user} {password}"))
            .await
        {
            Ok(_) => Ok(()),
            Err(ClientError::Refused { text, .. }) => Err(ClientError::Auth(text)),
            Err(e) => Err(e),
        }
    }

    /// SELECT (or EXAMINE when `read_only`) a mailbox; the number of messages in it.
    pub async fn select(&mut self, mailbox: &str, read_only: bool) -> Result<u32, ClientError> {
        let (name, verb) = if read_only {
            ("EXAMINE", "EXAMINE")
        } else {
            ("SELECT", "SELECT")
        };
        let mailbox = quoted(mailbox).ok_or_else(|| ClientError::Unexpected {
            command: name,
            text: "mailbox name with CR or LF".into(),
        })?;
        self.exists = 0;
        self.writable = false;
        self.command(name, &format!("{verb} {mailbox}")).await?;
        self.writable = !read_only;
        Ok(self.exists)
    }

    /// APPEND `message` to `mailbox` with a synchronizing literal (every server takes
    /// it; the `+` round trip is part of what is measured).
    pub async fn append(
        &mut self,
        mailbox: &str,
        flags: &str,
        message: &[u8],
    ) -> Result<(), ClientError> {
        let mailbox = quoted(mailbox).ok_or_else(|| ClientError::Unexpected {
            command: "APPEND",
            text: "mailbox name with CR or LF".into(),
        })?;
        let tag = self.tag();
        self.conn
            .send(format!("{tag} APPEND {mailbox} ({flags}) {{{}}}\r\n", message.len()).as_bytes())
            .await?;
        loop {
            let response = self.conn.receive(decode_response).await?;
            match &response.kind {
                Kind::Continuation => break,
                Kind::Untagged => self.track(&response),
                Kind::Tagged { status, .. } => {
                    return Err(ClientError::Refused {
                        command: "APPEND",
                        status: status.as_str(),
                        text: response.message(),
                    });
                }
            }
        }
        let mut literal = Vec::with_capacity(message.len() + 2);
        literal.extend_from_slice(message);
        literal.extend_from_slice(b"\r\n");
        self.conn.send(&literal).await?;
        self.finish("APPEND", &tag).await.map(|_| ())
    }

    /// Starts IDLE (RFC 2177): returns once the server's `+` came, with the tag to end
    /// it with.
    pub async fn idle(&mut self) -> Result<String, ClientError> {
        let tag = self.tag();
        self.conn.send(format!("{tag} IDLE\r\n").as_bytes()).await?;
        loop {
            let response = self.conn.receive(decode_response).await?;
            match &response.kind {
                Kind::Continuation => return Ok(tag),
                Kind::Untagged => self.track(&response),
                Kind::Tagged { status, .. } => {
                    return Err(ClientError::Refused {
                        command: "IDLE",
                        status: status.as_str(),
                        text: response.message(),
                    });
                }
            }
        }
    }

    /// The next response while idling, however long it takes (cancel-safe: for a
    /// `select!` with the end of the run). A tagged answer means the server ended IDLE.
    pub async fn idle_event(&mut self) -> Result<Response, ClientError> {
        let response = self.conn.receive_untimed(decode_response).await?;
        if response.kind == Kind::Untagged {
            self.track(&response);
        }
        Ok(response)
    }

    /// Ends IDLE with DONE and reads its tagged answer.
    pub async fn done(&mut self, tag: &str) -> Result<(), ClientError> {
        self.conn.send(b"DONE\r\n").await?;
        self.finish("DONE", tag).await.map(|_| ())
    }

    /// LOGOUT (the server closes the connection after its answer).
    pub async fn logout(&mut self) -> Result<(), ClientError> {
        let result = self.command("LOGOUT", "LOGOUT").await;
        self.logged_out = true;
        result.map(|_| ())
    }

    /// Ends the session without measuring: LOGOUT if not done yet (briefly), then
    /// close. For the end of a run or after a refused command.
    pub async fn quit_quietly(mut self) {
        if !self.logged_out {
            let _ = tokio::time::timeout(QUIET_LOGOUT, self.logout()).await;
        }
        self.conn.close().await;
    }
}

/// Whether an untagged response is `* n EXPUNGE`.
fn is_expunge(text: &[u8]) -> bool {
    let mut words = text.split(|&b| b == b' ');
    matches!(
        (words.next(), words.next(), words.next()),
        (Some(b"*"), Some(number), Some(keyword))
            if number.iter().all(u8::is_ascii_digit) && keyword.eq_ignore_ascii_case(b"EXPUNGE")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expunge_lines() {
        assert!(is_expunge(b"* 3 EXPUNGE"));
        assert!(!is_expunge(b"* 3 EXISTS"));
        assert!(!is_expunge(b"* OK EXPUNGE"));
    }
}
