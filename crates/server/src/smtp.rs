//! The SMTP session actor: wires a [`portico_smtp::Session`] to its connection, the
//! authenticator, the account directory (recipient checks), local delivery through the
//! mailbox actors, and the outgoing queue.
//!
//! Storage limits: RCPT refuses (`452 4.2.2`) a recipient whose mailbox is at or over
//! its limit, or which the message's declared SIZE would take past it, asking the
//! mailbox's home node when it is elsewhere. After DATA each copy is checked again
//! (exactly, by the home): a message no recipient could take is refused with `452
//! 4.2.2` and nothing kept; otherwise it is accepted, and the copies of full mailboxes
//! wait in the queue, retried until they fit or bounced at the end of its lifetime.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use portico_cluster::LoginType;
use portico_directory::AccountRecord;
use portico_smtp::{
    Action, AuthFailure, DeliveryFailure, Envelope, Input, Mode, RecipientVerdict, SenderVerdict,
    Session, SmtpConfig, trace,
};
use portico_store::{INBOX, MailboxId, StoreError};
use tokio::net::TcpStream;

use crate::accounts::{AccountsError, Located};
use crate::auth::{LoginError, Protocol};
use crate::connection::{self, Flow, Outgoing, ProtocolSettings, SessionActor};
use crate::delivery::Room;
use crate::gate::MailboxLease;
use crate::mailbox::MailboxFault;
use crate::node::{NodeContext, SignIn, UserSlot};
use crate::spool::{SPOOL_THRESHOLD, SpoolError, SpoolFile};

pub struct SmtpConnection {
    node: Arc<NodeContext>,
    machine: Session,
    flow: Flow,
    client: SocketAddr,
    mode: Mode,
    authenticated: Option<String>,
    /// This session's place under the per-user connection limit.
    user_slot: Option<UserSlot>,
    /// Content of the message being received beyond what the machine keeps; away
    /// (in the blocking pool) while it is written or read.
    spool: Option<SpoolFile>,
}

impl Actor for SmtpConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        connection::drive_session(self, ctx);
    }
}

fn domain_of(address: &str) -> Option<&str> {
    address
        .rsplit_once('@')
        .map(|(_, domain)| domain)
        .filter(|d| !d.is_empty())
}

/// Where mail for one recipient goes.
enum Destination {
    /// An account here: its address (`postmaster` spelt out) and record, its INBOX, and
    /// the delivery's use of the mailbox.
    Local {
        address: String,
        record: AccountRecord,
        inbox: MailboxId,
        lease: MailboxLease,
    },
    /// A local domain, but no such account.
    UnknownLocal,
    /// Somewhere else.
    Remote,
    /// An account of this cluster whose mailbox is on another node (its address,
    /// `postmaster` spelt out, and that node), with its record unless it is being moved
    /// (then queued here, and not read).
    Elsewhere {
        address: String,
        home: String,
        record: Option<AccountRecord>,
    },
}

/// Decides a recipient's destination. The account is looked up first, so the common
/// case (one of ours) costs one read of the directory's replica; only an unknown
/// address in a cluster with no configured local domains scans the accounts for its
/// domain.
fn destination(node: &NodeContext, address: &str) -> Result<Destination, AccountsError> {
    let address = canonical_recipient(node, address)?;
    let Some(domain) = domain_of(&address) else {
        return Ok(Destination::UnknownLocal);
    };
    let configured = !node.config.local_domains.is_empty();
    if configured && !node.config.is_local_domain(domain) {
        return Ok(Destination::Remote);
    }
    // Taken before the lookup: a move either waits for this delivery, or is over and
    // the lookup sees it.
    let Some(lease) = node.accounts.gate().enter(&address) else {
        // Being moved: queued, and delivered at its new home.
        let home = node.node_name.clone();
        return Ok(Destination::Elsewhere {
            address,
            home,
            record: None,
        });
    };
    if let Some(record) = node.accounts.known_record(&address)? {
        match node.accounts.locate_record(&record)? {
            Located::Here(account) => {
                if let Some(inbox) = node.store.mailbox_by_name(account.id, INBOX)? {
                    return Ok(Destination::Local {
                        address,
                        record,
                        inbox: inbox.id,
                        lease,
                    });
                }
            }
            Located::Elsewhere { home } => {
                return Ok(Destination::Elsewhere {
                    address,
                    home,
                    record: Some(record),
                });
            }
        }
    }
    Ok(if configured || domain_has_accounts(node, domain)? {
        Destination::UnknownLocal
    } else {
        Destination::Remote
    })
}

/// Whether some account's address is in `domain`.
fn domain_has_accounts(node: &NodeContext, domain: &str) -> Result<bool, AccountsError> {
    Ok(node
        .accounts
        .directory()
        .accounts()?
        .iter()
        .any(|record| domain_of(record.address()).is_some_and(|d| d.eq_ignore_ascii_case(domain))))
}

/// Whether `domain` is one of ours: a configured local domain, or, with none configured,
/// the domain of some account (as [`destination`] decides).
pub(crate) fn domain_is_local(node: &NodeContext, domain: &str) -> Result<bool, AccountsError> {
    if !node.config.local_domains.is_empty() {
        return Ok(node.config.is_local_domain(domain));
    }
    domain_has_accounts(node, domain)
}

/// RCPT TO: a local user (with the account's record, for its storage limit), a remote
/// address this client may relay to, or neither. Only an authenticated submission
/// client may send elsewhere: never an open relay.
fn recipient_verdict(
    node: &NodeContext,
    mode: Mode,
    authenticated: bool,
    address: &str,
) -> Result<(RecipientVerdict, Option<AccountRecord>), AccountsError> {
    Ok(match destination(node, address)? {
        Destination::Local { record, .. } => (RecipientVerdict::Local, Some(record)),
        // Queued, then handed to the mailbox's node ([`crate::delivery`]).
        Destination::Elsewhere { record, .. } => (RecipientVerdict::Local, record),
        Destination::UnknownLocal => (RecipientVerdict::UnknownUser, None),
        Destination::Remote if matches!(mode, Mode::Submission) && authenticated => {
            (RecipientVerdict::Remote, None)
        }
        Destination::Remote => (RecipientVerdict::RelayDenied, None),
    })
}

/// RCPT TO's verdict, with a local recipient refused when its mailbox has no room for
/// `size` bytes (0: when it is at or over its limit). A home that cannot be asked does
/// not refuse: the copy is checked again when it is delivered.
async fn check_recipient(
    node: Arc<NodeContext>,
    mode: Mode,
    authenticated: bool,
    address: String,
    size: u64,
) -> RecipientVerdict {
    let lookup = node.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        recipient_verdict(&lookup, mode, authenticated, &address)
    })
    .await;
    match verdict {
        Ok(Ok((RecipientVerdict::Local, Some(record)))) => {
            match crate::delivery::room_for(&node, &record, size).await {
                Room::Full => RecipientVerdict::MailboxFull,
                Room::Fits | Room::Unknown => RecipientVerdict::Local,
            }
        }
        Ok(Ok((verdict, _))) => verdict,
        _ => RecipientVerdict::Temporary,
    }
}

/// RFC 5321 §4.5.1: the bare `postmaster` names this server's postmaster; it must be
/// accepted. It is the postmaster of the first local domain, or of any domain an
/// account lives in.
fn canonical_recipient(node: &NodeContext, address: &str) -> Result<String, AccountsError> {
    if !address.eq_ignore_ascii_case("postmaster") {
        return Ok(address.to_string());
    }
    if let Some(domain) = node.config.local_domains.first() {
        return Ok(format!("postmaster@{domain}"));
    }
    Ok(node
        .accounts
        .directory()
        .accounts()?
        .into_iter()
        .map(|record| record.address().to_string())
        .find(|a| {
            a.split('@')
                .next()
                .is_some_and(|local| local.eq_ignore_ascii_case("postmaster"))
        })
        .unwrap_or_else(|| address.to_string()))
}

fn queue_id() -> String {
    let mut bytes = [0u8; 6];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// RFC 5321 §4.4 trace header; `with` per RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA).
fn received_header(
    node: &NodeContext,
    envelope: &Envelope,
    ip: IpAddr,
    id: &str,
    recipient: Option<&str>,
) -> String {
    let with = match (
        envelope.esmtp,
        envelope.tls,
        envelope.authenticated_as.is_some(),
    ) {
        (false, _, _) => "SMTP",
        (true, true, true) => "ESMTPSA",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, false, false) => "ESMTP",
    };
    // Client-given names never reach the header as given: printable ASCII of their own
    // grammar only, bounded (a NUL or an escape sequence in EHLO would be stored).
    let helo = trace::helo_name(&envelope.helo);
    let for_clause = recipient
        .map(|r| format!("\r\n\tfor <{}>", trace::path(r, envelope.smtputf8)))
        .unwrap_or_default();
    format!(
        "Received: from {helo} ([{ip}])\r\n\tby {} (Portico) with {with}\r\n\tid {id}{for_clause};\r\n\t{}\r\n",
        trace::helo_name(&node.config.smtp.hostname),
        crate::smtp_time::rfc5322_now()
    )
}

/// RFC 5321 §4.4 `Return-Path:` of a local copy: the reverse-path, quoted as it was sent.
fn return_path_header(envelope: &Envelope) -> String {
    return_path_line(&envelope.mail_from, envelope.smtputf8)
}

/// The `Return-Path:` line final delivery puts on top of a message (RFC 5321 §4.4).
pub fn return_path_line(mail_from: &str, smtputf8: bool) -> String {
    format!("Return-Path: <{}>\r\n", trace::path(mail_from, smtputf8))
}

/// Makes a message durable for every recipient: local ones in their INBOX (through the
/// folder's mailbox actor, so IDLE sessions see it), remote ones in the queue. Only then
/// may the client be told 250.
/// Puts a message's spooled content back in front of the rest and delivers it; hands
/// the spool file back for the session's next message. `accepted`: when the session
/// had the whole message, the start of its delivery time.
async fn deliver_spooled(
    node: Arc<NodeContext>,
    mut envelope: Envelope,
    spool: Option<SpoolFile>,
    ip: IpAddr,
    accepted: Instant,
) -> (Option<SpoolFile>, Result<String, DeliveryFailure>) {
    let mut spool = match spool {
        // The common case, a message kept whole in memory: no trip to the disk.
        Some(spool) if envelope.spooled == 0 && spool.is_empty() => {
            return (Some(spool), deliver(node, envelope, ip, accepted).await);
        }
        None if envelope.spooled == 0 => {
            return (None, deliver(node, envelope, ip, accepted).await);
        }
        None => {
            tracing::error!("the spooled content of a message is gone");
            return (None, Err(DeliveryFailure::Temporary));
        }
        Some(spool) => spool,
    };
    let expected = envelope.spooled;
    let tail = std::mem::take(&mut envelope.message);
    let read = tokio::task::spawn_blocking(move || {
        let content = if expected > 0 {
            Some(spool.take(expected, tail.len()))
        } else {
            // What an abandoned transaction spooled goes now, not with the session.
            spool.reset();
            None
        };
        (spool, content, tail)
    })
    .await;
    let Ok((spool, content, tail)) = read else {
        return (None, Err(DeliveryFailure::Temporary));
    };
    envelope.message = match content {
        None => tail,
        Some(Ok(mut content)) => {
            content.extend_from_slice(&tail);
            content
        }
        Some(Err(SpoolError::NoSpace)) => return (Some(spool), Err(DeliveryFailure::NoSpace)),
        Some(Err(SpoolError::Io)) => return (Some(spool), Err(DeliveryFailure::Temporary)),
    };
    envelope.spooled = 0;
    (Some(spool), deliver(node, envelope, ip, accepted).await)
}

async fn deliver(
    node: Arc<NodeContext>,
    envelope: Envelope,
    ip: IpAddr,
    accepted: Instant,
) -> Result<String, DeliveryFailure> {
    let id = queue_id();
    // Announced now, before the lookups: deliveries in flight join one sync round.
    let mut expected: Vec<_> = envelope
        .recipients
        .iter()
        .map(|_| node.store.expect_append())
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let lookup_node = node.clone();
    let queue_id = id.clone();
    // Each local copy is staged (indexed, its body written) in the task that finds its
    // folder, so that the folder's actor only links it.
    let split = tokio::task::spawn_blocking(move || -> Result<_, AccountsError> {
        let node = lookup_node;
        let mut local = Vec::new();
        let mut remote = Vec::new();
        // Accounts homed elsewhere with a storage limit, to ask their homes about.
        let mut limited = Vec::new();
        for recipient in &envelope.recipients {
            match destination(&node, recipient)? {
                Destination::Local {
                    address,
                    record,
                    inbox,
                    lease,
                } => {
                    let mut message = return_path_header(&envelope).into_bytes();
                    message.extend_from_slice(
                        received_header(&node, &envelope, ip, &queue_id, Some(&address))
                            .as_bytes(),
                    );
                    message.extend_from_slice(&envelope.message);
                    let staged = node
                        .store
                        .stage_message(&message, expected.pop().as_ref());
                    local.push((address, inbox, record.storage_limit(), lease, staged));
                }
                // Queued, and handed to the mailbox's node from the queue.
                Destination::Elsewhere {
                    address,
                    home,
                    record,
                } => {
                    tracing::debug!(recipient = %address, %home, "recipient's mailbox is on another node");
                    if let Some(record) = record.filter(|r| r.storage_limit().is_some()) {
                        limited.push((address.clone(), record));
                    }
                    remote.push(address);
                }
                // An account deleted since RCPT goes the way of any unknown address.
                Destination::UnknownLocal | Destination::Remote => remote.push(recipient.clone()),
            }
        }
        // Announcements for recipients elsewhere are withdrawn: no sync waits for them.
        drop(expected);
        Ok((local, remote, limited, envelope))
    })
    .await
    .map_err(|_| DeliveryFailure::Temporary)?
    .map_err(|_| DeliveryFailure::Temporary)?;
    // The leases are held until the copies are stored.
    let (local, mut remote, limited, envelope) = split;
    // Every local copy at once: deliveries into different folders, and into the same
    // one, share their syncs.
    let deliveries = local
        .into_iter()
        .map(|(recipient, inbox, storage_limit, lease, staged)| {
            let node = node.clone();
            async move {
                let stored = node
                    .mailboxes
                    .deliver_staged(inbox, staged, now, None, storage_limit)
                    .await;
                drop(lease);
                if stored.is_ok() {
                    crate::metrics::observe_delivery(accepted);
                }
                (recipient, stored)
            }
        });
    let deliveries: Vec<_> = deliveries.collect();
    // What the copies for other nodes will weigh there (the queue adds a Received
    // field, their home a Return-Path), checked against their limits meanwhile.
    let queued_size = (return_path_header(&envelope).len()
        + received_header(&node, &envelope, ip, &id, None).len()
        + envelope.message.len()) as u64;
    let rooms = limited.iter().map(|(address, record)| {
        let node = node.clone();
        async move {
            let room = crate::delivery::room_for(&node, record, queued_size).await;
            (address, room)
        }
    });
    let (outcomes, rooms) = futures::future::join(
        futures::future::join_all(deliveries),
        futures::future::join_all(rooms),
    )
    .await;
    let mut failure = None;
    let mut delivered = 0;
    // Recipients whose mailbox cannot take the message now.
    let mut full: Vec<String> = rooms
        .into_iter()
        .filter(|(_, room)| *room == Room::Full)
        .map(|(address, _)| address.clone())
        .collect();
    for (recipient, outcome) in outcomes {
        match outcome {
            Ok(appended) => {
                delivered += 1;
                tracing::info!(queue_id = %id, recipient = %recipient, uid = appended.uid.0, "delivered");
            }
            Err(MailboxFault::Store(StoreError::OverQuota)) => {
                tracing::info!(queue_id = %id, recipient = %recipient, "mailbox full");
                full.push(recipient.clone());
            }
            Err(e) => {
                // Queued for another try: the recipients delivered already must not get
                // a second copy when the client sends the message again.
                tracing::error!(queue_id = %id, recipient = %recipient, error = %e, "local delivery failed; queued");
                failure = Some(delivery_failure(&e));
                remote.push(recipient.clone());
            }
        }
    }
    let others = remote
        .iter()
        .filter(|address| !full.contains(address))
        .count();
    if !full.is_empty() && delivered == 0 && others == 0 {
        // No recipient can take it: refused, nothing kept, the client tries again later.
        tracing::info!(queue_id = %id, recipients = full.len(), "refused: every mailbox full");
        return Err(DeliveryFailure::MailboxFull);
    }
    // Accepted for the others: the full mailboxes' copies wait in the queue, retried
    // until they fit (or bounced), as SMTP has no way to refuse one recipient now.
    for address in full {
        if !remote.contains(&address) {
            tracing::info!(queue_id = %id, recipient = %address, "mailbox full; queued");
            remote.push(address);
        }
    }
    if !remote.is_empty() {
        let mut message = received_header(&node, &envelope, ip, &id, None).into_bytes();
        message.extend_from_slice(&envelope.message);
        let store = node.store.clone();
        let from = envelope.mail_from.clone();
        let smtputf8 = envelope.smtputf8;
        let queued =
            tokio::task::spawn_blocking(move || store.enqueue(&from, &remote, &message, smtputf8))
                .await
                .map_err(|_| DeliveryFailure::Temporary)?
                .map_err(|e| {
                    tracing::error!(queue_id = %id, error = %e, "queueing failed");
                    failure.unwrap_or_else(|| delivery_failure(&MailboxFault::Store(e)))
                })?;
        tracing::info!(queue_id = %id, queued = queued.id, recipients = queued.recipients.len(), "queued");
        node.queue_wake.notify_one();
    }
    Ok(id)
}

/// What the client is told when the store could not take a message.
fn delivery_failure(error: &MailboxFault) -> DeliveryFailure {
    match error {
        MailboxFault::Store(StoreError::NoSpace) => DeliveryFailure::NoSpace,
        _ => DeliveryFailure::Temporary,
    }
}

impl SmtpConnection {
    fn answer(&mut self, input: Input<'_>, ctx: &mut Context<Self>) {
        self.flow.awaiting = false;
        self.machine.handle(input);
        connection::drive_session(self, ctx);
    }
}

impl SessionActor for SmtpConnection {
    type Action = Action;

    fn flow(&mut self) -> &mut Flow {
        &mut self.flow
    }

    fn next_action(&mut self) -> Option<Action> {
        self.machine.next_action()
    }

    fn perform(&mut self, action: Action, ctx: &mut Context<Self>) {
        match action {
            Action::Write(bytes) => self.flow.outbox.write(bytes),
            Action::StartTls => {
                self.flow.awaiting = true;
                self.flow.outbox.send(Outgoing::StartTls);
            }
            Action::Close => self.flow.outbox.send(Outgoing::Close),
            Action::Authenticate { username, password } => {
                self.flow.awaiting = true;
                let node = self.node.clone();
                let ip = self.client.ip();
                let login = async move {
                    node.sign_in(&username, password.expose(), ip, Protocol::Smtp)
                        .await
                };
                ctx.spawn(login.into_actor(self).map(|result, actor, ctx| {
                    let answer = match result {
                        Ok(SignIn::Here(account, slot)) => {
                            actor.flow.span.record("user", account.address.as_str());
                            tracing::info!(parent: &actor.flow.span, "authenticated");
                            actor.authenticated = Some(account.address);
                            actor.user_slot = Some(slot);
                            Ok(())
                        }
                        // Submission signs in wherever the mailbox is.
                        Ok(SignIn::Elsewhere(_)) => {
                            crate::metrics::count_login(
                                crate::metrics::Protocol::Submission,
                                crate::metrics::LoginResult::Unavailable,
                            );
                            Err(AuthFailure::Temporary)
                        }
                        Err(LoginError::BadCredentials | LoginError::ProtocolDisabled) => {
                            tracing::info!(parent: &actor.flow.span, "failed authentication");
                            Err(AuthFailure::BadCredentials)
                        }
                        Err(LoginError::Unavailable | LoginError::TooManyConnections) => {
                            Err(AuthFailure::Temporary)
                        }
                        Err(LoginError::Throttled) => Err(AuthFailure::Refused),
                    };
                    actor.answer(Input::AuthResult(answer), ctx);
                }));
            }
            Action::CheckRecipient { address, size } => {
                self.flow.awaiting = true;
                let node = self.node.clone();
                let (mode, authenticated) = (self.mode, self.authenticated.is_some());
                let check = check_recipient(node, mode, authenticated, address, size);
                ctx.spawn(check.into_actor(self).map(|verdict, actor, ctx| {
                    actor.answer(Input::RecipientChecked(verdict), ctx);
                }));
            }
            Action::CheckSender { address } => {
                self.flow.awaiting = true;
                let node = self.node.clone();
                let check = tokio::task::spawn_blocking(move || {
                    let Some(domain) = domain_of(&address) else {
                        return Ok(false);
                    };
                    domain_is_local(&node, domain)
                });
                ctx.spawn(check.into_actor(self).map(|result, actor, ctx| {
                    let verdict = match result {
                        Ok(Ok(false)) => SenderVerdict::Accepted,
                        Ok(Ok(true)) => {
                            tracing::info!(parent: &actor.flow.span, "unauthenticated local sender refused");
                            SenderVerdict::LocalNeedsAuth
                        }
                        _ => SenderVerdict::Temporary,
                    };
                    actor.answer(Input::SenderChecked(verdict), ctx);
                }));
            }
            Action::Spool { first, bytes } => {
                // Reading pauses until the chunk is on disk: a client cannot outrun it.
                self.flow.awaiting = true;
                let area = self.node.spool.clone();
                let mut spool = self
                    .spool
                    .take()
                    .unwrap_or_else(|| SpoolFile::new(area.clone()));
                let write = tokio::task::spawn_blocking(move || {
                    if first {
                        spool.reset();
                    }
                    spool.append(&bytes);
                    spool
                });
                ctx.spawn(write.into_actor(self).map(move |result, actor, ctx| {
                    actor.spool = Some(result.unwrap_or_else(|_| SpoolFile::failed(area)));
                    actor.flow.awaiting = false;
                    connection::drive_session(actor, ctx);
                }));
            }
            Action::Deliver(envelope) => {
                self.flow.awaiting = true;
                let spool = self.spool.take();
                let accepted = Instant::now();
                let delivery = deliver_spooled(
                    self.node.clone(),
                    envelope,
                    spool,
                    self.client.ip(),
                    accepted,
                );
                ctx.spawn(
                    delivery
                        .into_actor(self)
                        .map(|(spool, result), actor, ctx| {
                            actor.spool = spool;
                            actor.answer(Input::Delivered(result), ctx);
                        }),
                );
            }
        }
    }

    fn client_bytes(&mut self, bytes: &[u8]) {
        self.machine.handle(Input::Bytes(bytes));
    }

    fn tls_established(&mut self) {
        self.machine.handle(Input::TlsEstablished);
    }

    fn shutdown(&mut self, _: connection::Ending) {
        self.machine.handle(Input::Shutdown);
    }

    fn commands(&self) -> u64 {
        self.machine.commands()
    }

    fn count_commands(&mut self) {
        let dispatched = self.machine.drain_commands();
        let dispatched = dispatched.map(|(name, times)| (name.index(), times));
        crate::metrics::count_commands(counted_as(self.mode), dispatched);
    }
}

/// The `protocol` label of a mode's sessions in the metrics.
fn counted_as(mode: Mode) -> crate::metrics::Protocol {
    match mode {
        Mode::Inbound => crate::metrics::Protocol::Smtp,
        Mode::Submission => crate::metrics::Protocol::Submission,
    }
}

connection::session_handlers!(SmtpConnection);

/// Serves one SMTP connection: inbound (`Mode::Inbound`) or submission, plain with
/// STARTTLS or implicit TLS.
pub async fn serve(
    node: Arc<NodeContext>,
    tcp: TcpStream,
    peer: SocketAddr,
    mode: Mode,
    implicit_tls: bool,
) {
    let settings = &node.config.smtp;
    let timeout = Duration::from_secs(settings.command_timeout_secs);
    let protocol = ProtocolSettings {
        name: match mode {
            Mode::Inbound => "smtp",
            Mode::Submission => "submission",
        },
        counted_as: counted_as(mode),
        unauthenticated_timeout: timeout,
        timeout_message: b"421 4.4.2 Timeout, closing connection\r\n",
        sign_in_required: false,
    };
    let config = SmtpConfig {
        spool_threshold: SPOOL_THRESHOLD,
        hostname: settings.hostname.clone(),
        mode,
        max_message_size: settings.max_message_size,
        max_recipients: settings.max_recipients,
        max_errors: settings.max_errors,
        max_commands: settings.max_commands,
        plaintext_auth_without_tls: settings.login == LoginType::Plaintext,
        tls_available: true,
        vrfy_enabled: settings.vrfy_enabled,
        sender_must_match_login: settings.sender_must_match_login,
        from_must_match_login: settings.from_must_match_login,
        check_sender: mode == Mode::Inbound
            && settings.reject_unauthenticated_local_senders
            && !settings
                .trusted_networks
                .iter()
                .any(|network| network.contains(peer.ip())),
    };
    let session_node = node.clone();
    connection::serve(node, tcp, peer, implicit_tls, protocol, move |new| {
        SmtpConnection {
            node: session_node,
            machine: Session::new(config, new.tls),
            flow: Flow::new(new.outbox, new.span),
            client: new.client,
            mode,
            authenticated: None,
            user_slot: None,
            spool: None,
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_path_keeps_quotes_and_drops_controls() {
        let mut envelope = Envelope {
            helo: "h".into(),
            esmtp: true,
            authenticated_as: None,
            mail_from: "a>b@evil.example".into(),
            recipients: vec![],
            body_8bit: false,
            smtputf8: false,
            message: vec![],
            spooled: 0,
            tls: false,
        };
        assert_eq!(
            return_path_header(&envelope),
            "Return-Path: <\"a>b\"@evil.example>\r\n"
        );
        envelope.mail_from = "x\r\nBcc: y@z@evil.example".into();
        assert_eq!(
            return_path_header(&envelope),
            "Return-Path: <\"x??Bcc: y@z\"@evil.example>\r\n"
        );
        envelope.mail_from = String::new();
        assert_eq!(return_path_header(&envelope), "Return-Path: <>\r\n");
    }
}
