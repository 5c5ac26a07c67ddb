//! A POP3 client (RFC 1939, STLS from RFC 2595): USER/PASS, UIDL, RETR, DELE, QUIT.

use std::sync::Arc;
use std::time::Duration;

use crate::conn::{Conn, Target, TlsMode};
use crate::error::ClientError;
use crate::wire::pop3::{MultilineDecoder, StatusLine, decode_status, uidl_entries};

/// How long an unmeasured QUIT at the end may take.
const QUIET_QUIT: Duration = Duration::from_secs(2);

/// A connected POP3 session.
pub struct Pop3Client {
    conn: Conn,
}

impl Pop3Client {
    /// Connects, reads the greeting and, with `--tls starttls`, sends STLS.
    pub async fn connect(target: &Arc<Target>, client: usize) -> Result<Pop3Client, ClientError> {
        let conn = Conn::open(target, client).await?;
        let mut pop3 = Pop3Client { conn };
        let greeting = pop3.conn.receive(decode_status).await?;
        if !greeting.ok {
            return Err(refused("connect", greeting));
        }
        if target.tls == TlsMode::Starttls {
            pop3.simple("STLS", "STLS").await?;
            pop3.conn.start_tls().await?;
        }
        Ok(pop3)
    }

    /// A single-line command; `-ERR` is refused under `name`.
    pub async fn simple(&mut self, name: &'static str, line: &str) -> Result<String, ClientError> {
        self.conn.send(format!("{line}\r\n").as_bytes()).await?;
        let status = self.conn.receive(decode_status).await?;
        if status.ok {
            Ok(status.text)
        } else {
            Err(refused(name, status))
        }
    }

    /// A multi-line command: its body, unstuffed.
    pub async fn multiline(
        &mut self,
        name: &'static str,
        line: &str,
    ) -> Result<Vec<u8>, ClientError> {
        self.simple(name, line).await?;
        let mut decoder = MultilineDecoder::new();
        self.conn.receive(|buf| decoder.decode(buf)).await
    }

    /// USER; a `-ERR` is an [`ClientError::Auth`].
    pub async fn user(&mut self, user: &str) -> Result<(), ClientError> {
        self.credential("USER", user).await
    }

    /// PASS; a `-ERR` is an [`ClientError::Auth`].
    pub async fn pass(&mut self, password: &str) -> Result<(), ClientError> {
        self.credential("PASS", password).await
    }

    async fn credential(&mut self, name: &'static str, value: &str) -> Result<(), ClientError> {
        if value.contains(['\r', '\n']) {
            return Err(ClientError::Auth(format!("{name} argument holds CR or LF")));
        }
        match self.simple(name, &format!("{name} {value}")).await {
            Ok(_) => Ok(()),
            Err(ClientError::Refused { text, .. }) => Err(ClientError::Auth(text)),
            Err(e) => Err(e),
        }
    }

    /// UIDL: (message number, unique id) of every message.
    pub async fn uidl(&mut self) -> Result<Vec<(u32, String)>, ClientError> {
        let body = self.multiline("UIDL", "UIDL").await?;
        Ok(uidl_entries(&body))
    }

    /// QUIT (the server commits DELEs now), then closes.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        let result = self.simple("QUIT", "QUIT").await;
        self.conn.close().await;
        result.map(|_| ())
    }

    /// QUIT without measuring, briefly.
    pub async fn quit_quietly(self) {
        let _ = tokio::time::timeout(QUIET_QUIT, self.quit()).await;
    }
}

fn refused(command: &'static str, status: StatusLine) -> ClientError {
    ClientError::Refused {
        command,
        status: "-ERR",
        text: status.text,
    }
}
