//! The outgoing side of SMTP: a small SMTP client that hands queued mail to the
//! configured smarthost, and the queue runner that retries with exponential back-off and
//! bounces (RFC 3464 delivery status notification to the sender's INBOX) what cannot be
//! delivered.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use portico_cluster::RelaySettings;
use portico_store::{QueuedMessage, QueuedRecipient};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::delivery::Route;
use crate::node::NodeContext;
use crate::smtp_time::unix_now as now;

/// What the smarthost said about one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 4xx or a connection problem: try again later.
    Temporary(String),
    /// The recipient's mailbox (one of the cluster's) is over its storage limit: tried
    /// again on the relay's slower schedule (room comes when the user deletes mail, not
    /// in seconds) and bounced at the end of the queue's lifetime, as any 4xx.
    MailboxFull,
    /// 5xx: bounce now.
    Permanent(String),
}

/// A reply: its code, the text of its last line, and every line's text (EHLO's
/// extensions).
struct ReplyLine {
    code: u16,
    text: String,
    lines: Vec<String>,
}

impl ReplyLine {
    /// Whether an EHLO reply lists `extension` (RFC 5321 §4.1.1.1).
    fn offers(&self, extension: &str) -> bool {
        self.lines.iter().skip(1).any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case(extension))
        })
    }
}

async fn read_reply<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> anyhow::Result<ReplyLine> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(300), reader.read_line(&mut line))
            .await
            .context("the relay did not answer in time")??;
        if n == 0 {
            bail!("the relay closed the connection");
        }
        let line = line.trim_end();
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("malformed reply from the relay: {line:?}"))?;
        let text = line.get(4..).unwrap_or("").to_string();
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(text.clone());
        if last {
            return Ok(ReplyLine {
                code,
                text: format!("{code} {text}"),
                lines,
            });
        }
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    line: &str,
) -> anyhow::Result<ReplyLine> {
    stream.get_mut().write_all(line.as_bytes()).await?;
    stream.get_mut().write_all(b"\r\n").await?;
    stream.get_mut().flush().await?;
    read_reply(stream).await
}

/// The DATA content for the next hop (RFC 5321 §4.5.2): every line end made CRLF (a bare
/// CR or a bare LF ends a line too, as some receivers read them), a `.` added before
/// every line that starts with one, and the `.` line that ends the data. So no stored
/// byte sequence (`\r.\r\n`, `\n.\n`, ...) can end the data early at a receiver and
/// smuggle what follows as commands.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 8);
    let mut at_line_start = true;
    let mut bytes = message.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' => {
                if bytes.peek() == Some(&b'\n') {
                    bytes.next();
                }
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = false;
            }
        }
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Runs one SMTP transaction on an open stream; returns the outcome per recipient.
async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    ehlo: &ReplyLine,
    relay: &RelaySettings,
    mail_from: &str,
    recipients: &[String],
    message: &[u8],
    smtputf8: bool,
) -> anyhow::Result<Vec<Outcome>> {
    if let (Some(user), Some(password)) = (&relay.username, &relay.password) {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{password}").as_bytes());
        let reply = command(stream, &format!("AUTH PLAIN {token}")).await?;
        if reply.code != 235 {
            bail!("the relay refused our credentials: {}", reply.text);
        }
    }
    let eight_bit = message.iter().any(|&b| b >= 0x80);
    // RFC 6152 §3 / RFC 6531 §3.4: 8-bit content and UTF-8 addresses only go to a relay
    // that offers them; otherwise the message is returned, not mangled.
    if eight_bit && !ehlo.offers("8BITMIME") {
        let refusal = "554 5.6.3 The relay does not accept 8-bit messages (no 8BITMIME)";
        return Ok(vec![Outcome::Permanent(refusal.into()); recipients.len()]);
    }
    if smtputf8 && !ehlo.offers("SMTPUTF8") {
        let refusal = "553 5.6.7 The relay does not accept UTF-8 addresses (no SMTPUTF8)";
        return Ok(vec![Outcome::Permanent(refusal.into()); recipients.len()]);
    }
    let mut params = String::new();
    if eight_bit {
        params.push_str(" BODY=8BITMIME");
    }
    if smtputf8 {
        params.push_str(" SMTPUTF8");
    }
    // Quoted local parts are quoted again (smtp-proto handed them over unquoted).
    let reverse_path = portico_smtp::trace::path(mail_from, smtputf8);
    let reply = command(stream, &format!("MAIL FROM:<{reverse_path}>{params}")).await?;
    if reply.code >= 500 {
        return Ok(vec![Outcome::Permanent(reply.text); recipients.len()]);
    }
    if reply.code >= 400 {
        return Ok(vec![Outcome::Temporary(reply.text); recipients.len()]);
    }
    let mut outcomes = Vec::with_capacity(recipients.len());
    for recipient in recipients {
        let forward_path = portico_smtp::trace::path(recipient, smtputf8);
        let reply = command(stream, &format!("RCPT TO:<{forward_path}>")).await?;
        outcomes.push(match reply.code {
            200..=299 => Outcome::Delivered,
            500..=599 => Outcome::Permanent(reply.text),
            _ => Outcome::Temporary(reply.text),
        });
    }
    if !outcomes.contains(&Outcome::Delivered) {
        return Ok(outcomes);
    }
    let reply = command(stream, "DATA").await?;
    if reply.code != 354 {
        let failure = if reply.code >= 500 {
            Outcome::Permanent(reply.text)
        } else {
            Outcome::Temporary(reply.text)
        };
        return Ok(outcomes
            .into_iter()
            .map(|o| {
                if o == Outcome::Delivered {
                    failure.clone()
                } else {
                    o
                }
            })
            .collect());
    }
    stream.get_mut().write_all(&dot_stuff(message)).await?;
    stream.get_mut().flush().await?;
    let reply = read_reply(stream).await?;
    let final_outcome = match reply.code {
        200..=299 => Outcome::Delivered,
        500..=599 => Outcome::Permanent(reply.text),
        _ => Outcome::Temporary(reply.text),
    };
    Ok(outcomes
        .into_iter()
        .map(|o| {
            if o == Outcome::Delivered {
                final_outcome.clone()
            } else {
                o
            }
        })
        .collect())
}

/// Runs the transaction, then ends the session with QUIT whatever happened (RFC 5321
/// §4.1.1.10).
async fn transaction_then_quit<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    ehlo: &ReplyLine,
    relay: &RelaySettings,
    message: &QueuedMail<'_>,
) -> anyhow::Result<Vec<Outcome>> {
    let outcome = transaction(
        stream,
        ehlo,
        relay,
        message.mail_from,
        message.recipients,
        message.bytes,
        message.smtputf8,
    )
    .await;
    let _ = command(stream, "QUIT").await;
    outcome
}

/// What one relay attempt hands over.
pub struct QueuedMail<'a> {
    pub mail_from: &'a str,
    pub recipients: &'a [String],
    pub bytes: &'a [u8],
    pub smtputf8: bool,
}

fn tls_connector(relay: &RelaySettings) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = if relay.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let bundle = "/etc/ssl/certs/ca-certificates.crt";
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(bundle)
            .with_context(|| format!("reading {bundle}"))?
            .flatten()
        {
            let _ = roots.add(cert);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// For `insecure_skip_verify` (test smarthosts with self-signed certificates): checks
/// signatures, not the chain.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Hands one message to the smarthost.
pub async fn send(
    relay: &RelaySettings,
    hostname: &str,
    message: &QueuedMail<'_>,
) -> anyhow::Result<Vec<Outcome>> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(30),
        TcpStream::connect((relay.host.as_str(), relay.port)),
    )
    .await
    .context("connecting to the relay timed out")?
    .with_context(|| format!("connecting to the relay {}:{}", relay.host, relay.port))?;
    let mut plain = BufReader::new(tcp);
    let greeting = read_reply(&mut plain).await?;
    if greeting.code != 220 {
        bail!("the relay is not ready: {}", greeting.text);
    }
    let ehlo = command(&mut plain, &format!("EHLO {hostname}")).await?;
    if ehlo.code != 250 {
        let _ = command(&mut plain, "QUIT").await;
        bail!("the relay refused EHLO: {}", ehlo.text);
    }
    if !relay.starttls {
        return transaction_then_quit(&mut plain, &ehlo, relay, message).await;
    }
    let reply = command(&mut plain, "STARTTLS").await?;
    if reply.code != 220 {
        let _ = command(&mut plain, "QUIT").await;
        bail!("the relay refused STARTTLS: {}", reply.text);
    }
    let name = ServerName::try_from(relay.host.clone()).context("relay host name")?;
    let tls = tls_connector(relay)?
        .connect(name, plain.into_inner())
        .await
        .context("TLS with the relay")?;
    let mut secure = BufReader::new(tls);
    let ehlo = command(&mut secure, &format!("EHLO {hostname}")).await?;
    if ehlo.code != 250 {
        let _ = command(&mut secure, "QUIT").await;
        bail!("the relay refused EHLO after STARTTLS: {}", ehlo.text);
    }
    transaction_then_quit(&mut secure, &ehlo, relay, message).await
}

/// An RFC 3464 delivery status notification for the recipients that failed.
pub fn bounce(
    hostname: &str,
    entry: &QueuedMessage,
    failed: &[QueuedRecipient],
    original: &[u8],
) -> Vec<u8> {
    let boundary = format!("portico-dsn-{}", entry.id);
    let date = crate::smtp_time::rfc5322_now();
    let header_end = original
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(original.len(), |i| i + 2);
    let mut out = String::new();
    out.push_str(&format!(
        "Return-Path: <>\r\nMessage-ID: <dsn-{}-{}@{hostname}>\r\n",
        entry.id,
        now()
    ));
    out.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\nTo: <{}>\r\nSubject: Undelivered Mail Returned to Sender\r\nDate: {date}\r\nMIME-Version: 1.0\r\nAuto-Submitted: auto-replied\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n",
        entry.mail_from
    ));
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nYour message could not be delivered to these recipients:\r\n\r\n"
    ));
    for recipient in failed {
        out.push_str(&format!(
            "  {}: {}\r\n",
            recipient.address,
            recipient.last_error.as_deref().unwrap_or("delivery failed")
        ));
    }
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {hostname}\r\n"
    ));
    for recipient in failed {
        let diagnostic = recipient.last_error.as_deref().unwrap_or("delivery failed");
        let status = diagnostic
            .split_whitespace()
            .nth(1)
            .filter(|s| s.len() >= 5 && s.starts_with(['4', '5']) && s.contains('.'))
            .map_or("5.0.0".to_string(), |s| format!("5{}", &s[1..]));
        out.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {diagnostic}\r\n",
            recipient.address
        ));
    }
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&original[..header_end]);
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

/// What a copy refused for its mailbox's storage limit records; the bounce reports it
/// as status 5.2.2 (mailbox full).
pub const MAILBOX_FULL: &str = "452 4.2.2 Mailbox full";

/// The first retry of a copy for a mailbox on a node that could not take it; doubles up
/// to [`CLUSTER_RETRY_MAX_SECS`]. The cluster's own nodes come back within seconds or
/// minutes, and the router wakes the queue as soon as one answers again.
const CLUSTER_RETRY_INITIAL_SECS: u64 = 2;
const CLUSTER_RETRY_MAX_SECS: u64 = 60;

/// Hands `addresses` to the configured relay in one transaction; each recipient's
/// outcome, in order.
async fn relay_all(
    node: &Arc<NodeContext>,
    entry: &QueuedMessage,
    addresses: &[String],
    message: &[u8],
) -> Vec<Outcome> {
    let settings = &node.config.smtp;
    match &settings.relay {
        Some(relay) => match send(
            relay,
            &settings.hostname,
            &QueuedMail {
                mail_from: &entry.mail_from,
                recipients: addresses,
                bytes: message,
                smtputf8: entry.smtputf8,
            },
        )
        .await
        {
            Ok(outcomes) => outcomes,
            Err(e) => vec![Outcome::Temporary(format!("{e:#}")); addresses.len()],
        },
        None => {
            vec![
                Outcome::Permanent("550 5.4.4 No relay is configured for remote domains".into());
                addresses.len()
            ]
        }
    }
}

/// Retries and bounces queued mail; woken early by `wake` (new mail, `queue flush`).
pub async fn run_queue(node: Arc<NodeContext>, wake: Arc<Notify>, node_returned: Arc<Notify>) {
    let mut shutdown = node.shutdown.clone();
    let mut cluster_now = false;
    loop {
        if let Err(e) = deliver_due(&node, cluster_now).await {
            tracing::error!(error = %format!("{e:#}"), "queue run failed");
        }
        cluster_now = false;
        tokio::select! {
            _ = wake.notified() => {}
            _ = node_returned.notified() => cluster_now = true,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => break,
        }
    }
}

/// One pass over the queue: every recipient whose time has come gets a try, and with
/// `cluster_now` (a node came back) every copy for a cluster account.
pub async fn deliver_due(node: &Arc<NodeContext>, cluster_now: bool) -> anyhow::Result<()> {
    let store = node.store.clone();
    let queue = tokio::task::spawn_blocking(move || store.queue()).await??;
    let settings = &node.config.smtp;
    let now = now();
    for entry in queue {
        let (due, waiting): (Vec<_>, Vec<_>) = entry.recipients.iter().cloned().partition(|r| {
            r.next_attempt <= now
                || (cluster_now
                    && matches!(crate::delivery::route(node, &r.address), Route::Cluster(_)))
        });
        if due.is_empty() {
            continue;
        }
        let store = node.store.clone();
        let lookup = entry.clone();
        let message = tokio::task::spawn_blocking(move || store.queued_bytes(&lookup)).await??;
        // Each recipient's route is decided now: a cluster account's copy goes to its
        // mailbox's node, anything else to the relay, all relayed in one transaction.
        let mut outcomes: Vec<Option<Outcome>> = vec![None; due.len()];
        let mut in_cluster = vec![false; due.len()];
        let mut relayed = Vec::new();
        for (i, recipient) in due.iter().enumerate() {
            match crate::delivery::route(node, &recipient.address) {
                Route::Cluster(record) => {
                    in_cluster[i] = true;
                    outcomes[i] =
                        Some(crate::delivery::deliver_copy(node, &entry, &message, &record).await);
                }
                Route::NoSuchUser => {
                    outcomes[i] = Some(Outcome::Permanent("550 5.1.1 No such user here".into()));
                }
                Route::Relay => relayed.push(i),
                Route::Unknown => {
                    outcomes[i] = Some(Outcome::Temporary(
                        "this node's copy of the directory cannot be read now".into(),
                    ));
                }
            }
        }
        if !relayed.is_empty() {
            let addresses: Vec<String> = relayed.iter().map(|&i| due[i].address.clone()).collect();
            let relay_outcomes = relay_all(node, &entry, &addresses, &message).await;
            for (i, outcome) in relayed.into_iter().zip(relay_outcomes) {
                outcomes[i] = Some(outcome);
            }
        }
        let mut pending = waiting;
        let mut failed = Vec::new();
        for ((mut recipient, outcome), in_cluster) in due.into_iter().zip(outcomes).zip(in_cluster)
        {
            recipient.attempts += 1;
            let outcome = outcome.unwrap_or_else(|| Outcome::Temporary("not tried".into()));
            let mut retry = |mut recipient: QueuedRecipient, text: String, node_retry: bool| {
                recipient.last_error = Some(text);
                if now - entry.created >= settings.queue_lifetime_secs as i64 {
                    failed.push(recipient);
                    return;
                }
                let (initial, max) = if node_retry {
                    (CLUSTER_RETRY_INITIAL_SECS, CLUSTER_RETRY_MAX_SECS)
                } else {
                    (settings.retry_initial_secs, settings.retry_max_secs)
                };
                let delay = initial
                    .saturating_mul(1u64 << recipient.attempts.saturating_sub(1).min(20))
                    .min(max);
                recipient.next_attempt = now + delay as i64;
                pending.push(recipient);
            };
            match outcome {
                Outcome::Delivered if in_cluster => {}
                Outcome::Delivered => {
                    tracing::info!(queue_id = entry.id, recipient = %recipient.address, "relayed");
                }
                Outcome::Permanent(text) => {
                    recipient.last_error = Some(text);
                    failed.push(recipient);
                }
                Outcome::Temporary(text) => retry(recipient, text, in_cluster),
                // No node coming back: retried like mail for elsewhere.
                Outcome::MailboxFull => retry(recipient, MAILBOX_FULL.into(), false),
            }
        }
        if !failed.is_empty() {
            for recipient in &failed {
                tracing::warn!(queue_id = entry.id, recipient = %recipient.address,
                    error = recipient.last_error.as_deref().unwrap_or(""), "delivery failed for good");
            }
            send_bounce(node, &entry, &failed, &message).await;
        }
        let store = node.store.clone();
        let id = entry.id;
        tokio::task::spawn_blocking(move || store.update_queued(id, pending)).await??;
    }
    Ok(())
}

/// Puts a bounce in the sender's INBOX, on whatever node it is, when the sender is one
/// of the cluster's accounts; bounces are never bounced (RFC 5321 §6.1: the null
/// sender).
async fn send_bounce(
    node: &Arc<NodeContext>,
    entry: &QueuedMessage,
    failed: &[QueuedRecipient],
    original: &[u8],
) {
    if entry.mail_from.is_empty() {
        return;
    }
    let Route::Cluster(record) = crate::delivery::route(node, &entry.mail_from) else {
        tracing::warn!(queue_id = entry.id, sender = %entry.mail_from, "no mailbox in the cluster for the bounce");
        return;
    };
    let dsn = bounce(&node.config.smtp.hostname, entry, failed, original);
    // One bounce per round of failures, named by its first failed recipient.
    let first = failed.first().map_or("", |r| r.address.as_str());
    let id = format!("{}/{}/bounce/{first}", node.node_name, entry.id);
    // Past the sender's storage limit if need be: it is the only word of the failure.
    match crate::delivery::store_at_home(node, id, &record, dsn, true).await {
        Ok(_) => tracing::info!(queue_id = entry.id, "bounce delivered to the sender"),
        Err(e) => tracing::error!(queue_id = entry.id, error = ?e, "bounce not delivered"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_are_stuffed_and_data_ends_with_a_dot_line() {
        assert_eq!(
            dot_stuff(b".a\r\nb\r\n..c\r\n"),
            b"..a\r\nb\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"no final crlf"), b"no final crlf\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"."), b"..\r\n.\r\n");
    }

    #[test]
    fn bare_line_ends_become_crlf_before_stuffing() {
        // The smuggling shapes: a stored `\r.\r\n` or `\n.\n` would end the data early
        // at a receiver that takes a bare CR or LF as a line end.
        assert_eq!(
            dot_stuff(b"a\r.\r\nMAIL FROM:<x@y>\r\n"),
            b"a\r\n..\r\nMAIL FROM:<x@y>\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"a\n.\nb\n"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r\n.\rb"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r\r\n.x"), b"a\r\n\r\n..x\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\n\r.b"), b"a\r\n\r\n..b\r\n.\r\n");
    }

    /// Whatever the stored bytes, the output is CRLF lines only, no line is a lone `.`
    /// but the last, and undoing the stuffing gives the CRLF-normalized input.
    #[test]
    fn stuffed_output_has_one_terminator() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            let mut message = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let mut s = seed;
            for _ in 0..len {
                message.push([b'.', b'\r', b'\n', b'a'][(s & 3) as usize]);
                s >>= 2;
            }
            let out = dot_stuff(&message);
            assert!(out.ends_with(b".\r\n"), "{message:?}");
            let body = &out[..out.len() - 3];
            assert!(body.is_empty() || body.ends_with(b"\r\n"), "{message:?}");
            let bare_lf =
                (0..out.len()).any(|i| out[i] == b'\n' && (i == 0 || out[i - 1] != b'\r'));
            assert!(!bare_lf, "{message:?} -> {out:?}");
            let lines: Vec<&[u8]> = body
                .strip_suffix(b"\r\n")
                .map(|b| b.split(|&c| c == b'\n').collect())
                .unwrap_or_default();
            for line in lines {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                assert!(!line.contains(&b'\r'), "{message:?} -> {out:?}");
                assert_ne!(line, b".", "{message:?} -> {out:?}");
            }
        }
    }
}
