//! An SMTP (RFC 5321, AUTH PLAIN from RFC 4954, STARTTLS from RFC 3207) and LMTP
//! (RFC 2033) client: the commands of one mail transaction one at a time, or MAIL, RCPT
//! and DATA sent as one group (RFC 2920 PIPELINING) when asked and offered.

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

    /// MAIL FROM, a RCPT TO per recipient and DATA in one write (RFC 2920 §3.1: DATA
    /// ends a group), then their replies in order. A refused MAIL or recipient is in
    /// [`Envelope::refusals`]; the message may follow only when `data_accepted`.
    pub async fn envelope(
        &mut self,
        sender: &str,
        recipients: &[String],
    ) -> Result<Envelope, ClientError> {
        let mut group = format!("MAIL FROM:<{sender}>\r\n");
        for recipient in recipients {
            group.push_str(&format!("RCPT TO:<{recipient}>\r\n"));
        }
        group.push_str("DATA\r\n");
        self.conn.send(group.as_bytes()).await?;
        let mut envelope = Envelope {
            accepted: 0,
            refusals: Vec::new(),
            data_accepted: false,
        };
        let mail = self.conn.receive(decode_reply).await?;
        if mail.code != 250 {
            envelope.refusals.push(refused("MAIL", &mail));
        }
        for _ in recipients {
            let reply = self.conn.receive(decode_reply).await?;
            match reply.code {
                250 | 251 => envelope.accepted += 1,
                _ => envelope.refusals.push(refused("RCPT", &reply)),
            }
        }
        let data = self.conn.receive(decode_reply).await?;
        match data.code {
            354 if envelope.accepted > 0 => envelope.data_accepted = true,
            // A server that takes DATA with no recipient gets an empty message, which
            // it must refuse.
            354 => {
                self.conn.send(b".\r\n").await?;
                self.conn.receive(decode_reply).await?;
            }
            // Refused because the envelope was: already counted.
            _ if !envelope.refusals.is_empty() => {}
            _ => envelope.refusals.push(refused("DATA", &data)),
        }
        Ok(envelope)
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

/// The answers to a pipelined MAIL, RCPT… and DATA group.
pub struct Envelope {
    /// Recipients taken (250 or 251).
    pub accepted: usize,
    /// The refused MAIL, RCPT or DATA, in order.
    pub refusals: Vec<ClientError>,
    /// DATA's 354 came: the message goes next.
    pub data_accepted: bool,
}

fn refused(command: &'static str, reply: &Reply) -> ClientError {
    ClientError::Refused {
        command,
        status: reply.class(),
        text: reply.text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// A server that reads the EHLO and one pipelined group of `commands` lines, then
    /// answers the group with `replies` in one write.
    async fn scripted(
        commands: usize,
        replies: &'static str,
    ) -> (Arc<Target>, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            write.write_all(b"220 test\r\n").await.unwrap();
            let ehlo = lines.next_line().await.unwrap().unwrap();
            write
                .write_all(b"250-test\r\n250 PIPELINING\r\n")
                .await
                .unwrap();
            let mut seen = vec![ehlo];
            for _ in 0..commands {
                seen.push(lines.next_line().await.unwrap().unwrap());
            }
            write.write_all(replies.as_bytes()).await.unwrap();
            seen
        });
        let target = Target {
            address,
            tls: TlsMode::None,
            tls_config: crate::tls::client_config(None).unwrap(),
            server_name: "localhost".try_into().unwrap(),
            sources: Vec::new(),
            timeout: Duration::from_secs(10),
        };
        (Arc::new(target), server)
    }

    fn recipients() -> Vec<String> {
        vec!["a@example.com".into(), "b@example.com".into()]
    }

    #[tokio::test]
    async fn a_pipelined_group_counts_each_reply_in_order() {
        let (target, server) = scripted(4, "250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n").await;
        let mut smtp = SmtpClient::connect(&target, 0, Dialect::Smtp, "me")
            .await
            .unwrap();
        let hello = smtp.hello(TlsMode::None).await.unwrap();
        assert!(hello.has_extension("PIPELINING"));
        let envelope = smtp.envelope("s@example.com", &recipients()).await.unwrap();
        assert_eq!(envelope.accepted, 1);
        assert!(envelope.data_accepted);
        assert_eq!(envelope.refusals.len(), 1);
        assert!(matches!(
            envelope.refusals[0],
            ClientError::Refused {
                command: "RCPT",
                ..
            }
        ));
        assert_eq!(
            server.await.unwrap(),
            [
                "EHLO me",
                "MAIL FROM:<s@example.com>",
                "RCPT TO:<a@example.com>",
                "RCPT TO:<b@example.com>",
                "DATA"
            ]
        );
    }

    #[tokio::test]
    async fn no_recipient_taken_means_no_message() {
        let (target, server) = scripted(
            4,
            "250 ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n",
        )
        .await;
        let mut smtp = SmtpClient::connect(&target, 0, Dialect::Smtp, "me")
            .await
            .unwrap();
        smtp.hello(TlsMode::None).await.unwrap();
        let envelope = smtp.envelope("s@example.com", &recipients()).await.unwrap();
        assert_eq!(envelope.accepted, 0);
        assert!(!envelope.data_accepted);
        // DATA's refusal follows from the recipients': not counted again.
        assert_eq!(envelope.refusals.len(), 2);
        server.await.unwrap();
    }
}
