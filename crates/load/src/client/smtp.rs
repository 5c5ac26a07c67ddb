//! An SMTP (RFC 5321, AUTH PLAIN from RFC 4954, STARTTLS from RFC 3207) and LMTP
//! (RFC 2033) client: the commands of one mail transaction, nothing pipelined.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::conn::{Conn, Target, TlsMode};
use crate::error::ClientError;
use crate::wire::smtp::{Reply, decode_reply};

/// How long an unmeasured QUIT at the end may take.
const QUIET_QUIT: Duration = Duration::from_secs(2);

/// SMTP or LMTP: they differ in the greeting command and in DATA's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Smtp,
    Lmtp,
}

/// A connected session, greeted (EHLO or LHLO done).
pub struct SmtpClient {
    conn: Conn,
    dialect: Dialect,
    helo_name: String,
}

impl SmtpClient {
    /// Connects and reads the 220 greeting; [`hello`](Self::hello) comes next.
    pub async fn connect(
        target: &Arc<Target>,
        client: usize,
        dialect: Dialect,
        helo_name: &str,
    ) -> Result<SmtpClient, ClientError> {
        let conn = Conn::open(target, client).await?;
        let mut smtp = SmtpClient {
            conn,
            dialect,
            helo_name: helo_name.to_string(),
        };
        let greeting = smtp.conn.receive(decode_reply).await?;
        if greeting.code != 220 {
            return Err(refused("connect", &greeting));
        }
        Ok(smtp)
    }

    /// EHLO (LHLO for LMTP); with `--tls starttls` also STARTTLS and EHLO again.
    pub async fn hello(&mut self, tls: TlsMode) -> Result<Reply, ClientError> {
        let reply = self.greet().await?;
        if tls != TlsMode::Starttls {
            return Ok(reply);
        }
        self.exchange("STARTTLS", "STARTTLS", 220).await?;
        self.conn.start_tls().await?;
        self.greet().await
    }

    async fn greet(&mut self) -> Result<Reply, ClientError> {
        let (name, verb) = match self.dialect {
            Dialect::Smtp => ("EHLO", "EHLO"),
            Dialect::Lmtp => ("LHLO", "LHLO"),
        };
        let line = format!("{verb} {}", self.helo_name);
        self.exchange(name, &line, 250).await
    }

    /// Sends a command and wants a reply with `code`.
    pub async fn exchange(
        &mut self,
        name: &'static str,
        line: &str,
        code: u16,
    ) -> Result<Reply, ClientError> {
        self.conn.send(format!("{line}\r\n").as_bytes()).await?;
        let reply = self.conn.receive(decode_reply).await?;
        if reply.code == code {
            Ok(reply)
        } else if reply.is_positive() {
            Err(ClientError::Unexpected {
                command: name,
                text: reply.text(),
            })
        } else {
            Err(refused(name, &reply))
        }
    }

    /// AUTH PLAIN with an initial response; a 5xx is an [`ClientError::Auth`].
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        match self
            .exchange("AUTH", &format!("AUTH PLAIN {token}"), 235)
            .await
        {
            Err(ClientError::Refused { text, .. }) => Err(ClientError::Auth(text)),
            other => other.map(|_| ()),
        }
    }

    /// MAIL FROM.
    pub async fn mail_from(&mut self, sender: &str) -> Result<(), ClientError> {
        self.exchange("MAIL", &format!("MAIL FROM:<{sender}>"), 250)
            .await
            .map(|_| ())
    }

    /// RCPT TO (250 or 251 accepted).
    pub async fn rcpt_to(&mut self, recipient: &str) -> Result<(), ClientError> {
        self.conn
            .send(format!("RCPT TO:<{recipient}>\r\n").as_bytes())
            .await?;
        let reply = self.conn.receive(decode_reply).await?;
        match reply.code {
            250 | 251 => Ok(()),
            _ if reply.is_positive() => Err(ClientError::Unexpected {
                command: "RCPT",
                text: reply.text(),
            }),
            _ => Err(refused("RCPT", &reply)),
        }
    }

    /// DATA, up to the 354.
    pub async fn data(&mut self) -> Result<(), ClientError> {
        self.exchange("DATA", "DATA", 354).await.map(|_| ())
    }

    /// The dot-stuffed message with its final `.` line; the answer: one reply for SMTP,
    /// one per accepted recipient for LMTP (RFC 2033 §4.2). The first negative reply is
    /// the error, after every reply has been read.
    pub async fn message(&mut self, stuffed: &[u8], accepted: usize) -> Result<(), ClientError> {
        self.conn.send(stuffed).await?;
        let replies = match self.dialect {
            Dialect::Smtp => 1,
            Dialect::Lmtp => accepted.max(1),
        };
        let mut first_refusal = None;
        for _ in 0..replies {
            let reply = self.conn.receive(decode_reply).await?;
            if reply.code != 250 && first_refusal.is_none() {
                first_refusal = Some(if reply.is_positive() {
                    ClientError::Unexpected {
                        command: "message",
                        text: reply.text(),
                    }
                } else {
                    refused("message", &reply)
                });
            }
        }
        first_refusal.map_or(Ok(()), Err)
    }

    /// RSET (after a refused recipient or message).
    pub async fn rset(&mut self) -> Result<(), ClientError> {
        self.exchange("RSET", "RSET", 250).await.map(|_| ())
    }

    /// QUIT, then closes.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        let result = self.exchange("QUIT", "QUIT", 221).await;
        self.conn.close().await;
        result.map(|_| ())
    }

    /// QUIT without measuring, briefly.
    pub async fn quit_quietly(self) {
        let _ = tokio::time::timeout(QUIET_QUIT, self.quit()).await;
    }
}

fn refused(command: &'static str, reply: &Reply) -> ClientError {
    ClientError::Refused {
        command,
        status: reply.class(),
        text: reply.text(),
    }
}
