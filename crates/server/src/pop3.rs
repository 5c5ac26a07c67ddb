//! The POP3 session actor: wires a [`portico_pop3::Session`] to its connection, the
//! authenticator, the store and the INBOX's mailbox actor.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use portico_cluster::LoginType;
use portico_directory::AccountRecord;
use portico_internode::{LoginHandOff, SessionProtocol};
use portico_pop3::{
    Action, AuthFailure, HandOff, Input, MaildropEntry, MaildropError, Pop3Config, Session,
};
use portico_store::{Account, INBOX, MailboxId, POP3_DELETED_KEYWORD, Store, StoreError, Uid};
use tokio::net::TcpStream;

use crate::auth::{LoginError, Protocol};
use crate::connection::{self, Ending, Flow, Outgoing, ProtocolSettings, SessionActor};
use crate::mailbox::{
    AcquirePop3Lock, CommitPop3Deletes, MailboxFault, ReleasePop3Lock, SessionId,
};
use crate::node::{NodeContext, SignIn, UserSlot};
use crate::proxy::{self, HandedOver, OpenRequest};

/// POP3 UIDL value (RFC 1939 §7): UID and UIDVALIDITY of the INBOX message, as Dovecot
/// writes it, so it is stable for the message's life and never reused.
pub fn unique_id(uid: Uid, uidvalidity: portico_store::Uidvalidity) -> String {
    format!("{:08X}{:08X}", uid.0, uidvalidity.0)
}

/// What one read of a message RETR sends takes from the store: a few checksummed
/// blocks. The first piece is checked before `+OK` goes out, so damage in it is a clean
/// `-ERR`; damage further on can only end the connection.
const RETR_PIECE: u64 = 256 * 1024;

pub struct Pop3Connection {
    id: SessionId,
    node: Arc<NodeContext>,
    machine: Session,
    flow: Flow,
    client: SocketAddr,
    account: Option<Account>,
    /// The INBOX whose maildrop lock this session holds.
    locked: Option<MailboxId>,
    /// This session's place under the per-user connection limit.
    user_slot: Option<UserSlot>,
}

impl Actor for Pop3Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(slot) = &self.user_slot {
            connection::end_when_evicted(slot, ctx);
        }
        connection::drive_session(self, ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(mailbox) = self.locked.take() {
            self.node
                .mailboxes
                .notify(mailbox, ReleasePop3Lock { session: self.id });
        }
    }
}

impl SessionActor for Pop3Connection {
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
            Action::Close => {
                self.flow.outbox.send(Outgoing::Close);
            }
            Action::Authenticate { username, password } => {
                self.flow.awaiting = true;
                let node = self.node.clone();
                let ip = self.client.ip();
                let login = async move {
                    node.sign_in(&username, password.expose(), ip, Protocol::Pop3)
                        .await
                };
                ctx.spawn(login.into_actor(self).map(|result, actor, ctx| {
                    let answer = match result {
                        Ok(SignIn::Here(account, slot)) => {
                            actor.flow.span.record("user", account.address.as_str());
                            tracing::info!(parent: &actor.flow.span, "signed in");
                            actor.account = Some(account);
                            connection::end_when_evicted(&slot, ctx);
                            actor.user_slot = Some(slot);
                            Ok(())
                        }
                        Ok(SignIn::Elsewhere(record)) => return actor.hand_to_home(record, ctx),
                        Err(LoginError::TooManyConnections) => Err(AuthFailure::TooManyConnections),
                        Err(LoginError::BadCredentials) => {
                            tracing::info!(parent: &actor.flow.span, "failed sign-in");
                            Err(AuthFailure::BadCredentials)
                        }
                        Err(LoginError::ProtocolDisabled) => Err(AuthFailure::Disabled),
                        Err(LoginError::Unavailable | LoginError::Throttled) => {
                            Err(AuthFailure::Temporary)
                        }
                    };
                    actor.answer(Input::AuthResult(answer), ctx);
                }));
            }
            Action::OpenMaildrop => self.open_maildrop(ctx),
            Action::FetchMessage {
                uid,
                in_pieces: true,
                ..
            } => {
                self.flow.awaiting = true;
                let Some(mailbox) = self.locked else {
                    let piece = Err(MaildropError::Unavailable);
                    self.answer_later(Input::MessagePiece { piece, more: false }, ctx);
                    return;
                };
                self.send_piece(mailbox, Uid(uid), 0, ctx);
            }
            Action::FetchMessage { uid, top_lines, .. } => {
                self.flow.awaiting = true;
                let Some(mailbox) = self.locked else {
                    self.answer_later(Input::MessageFetched(Err(MaildropError::Unavailable)), ctx);
                    return;
                };
                let store = self.node.store.clone();
                // The next message is read once the client has taken in the last.
                let drained = self.flow.outbox.drained();
                let fetch = async move {
                    drained.await;
                    tokio::task::spawn_blocking(move || match top_lines {
                        Some(lines) => top_prefix(&store, mailbox, Uid(uid), lines),
                        None => store.message_bytes(mailbox, Uid(uid)),
                    })
                    .await
                };
                ctx.spawn(fetch.into_actor(self).map(|result, actor, ctx| {
                    let answer = match result {
                        Ok(Ok(bytes)) => Ok(bytes),
                        Ok(Err(e)) => {
                            tracing::error!(parent: &actor.flow.span, error = %e, "message read failed");
                            Err(MaildropError::Unavailable)
                        }
                        Err(_) => Err(MaildropError::Unavailable),
                    };
                    actor.answer(Input::MessageFetched(answer), ctx);
                }));
            }
            Action::CommitDeletes { uids } => {
                self.flow.awaiting = true;
                let (Some(mailbox), Some(account)) = (self.locked, self.account.as_ref()) else {
                    self.answer_later(
                        Input::DeletesCommitted(Err(MaildropError::Unavailable)),
                        ctx,
                    );
                    return;
                };
                let node = self.node.clone();
                let commit = CommitPop3Deletes {
                    session: self.id,
                    uids: uids.into_iter().map(Uid).collect(),
                    mode: account.pop3_delete_mode,
                };
                let count = commit.uids.len();
                let send = async move { node.mailboxes.send(mailbox, commit).await };
                ctx.spawn(send.into_actor(self).map(move |result, actor, ctx| {
                    let answer = match result {
                        Ok(Ok(())) => {
                            // The mailbox actor released the lock with the commit.
                            actor.locked = None;
                            tracing::info!(parent: &actor.flow.span, count, "POP3 session updated");
                            Ok(())
                        }
                        Ok(Err(e)) | Err(e) => {
                            tracing::error!(parent: &actor.flow.span, error = %e, "POP3 deletions failed");
                            Err(MaildropError::Unavailable)
                        }
                    };
                    actor.answer(Input::DeletesCommitted(answer), ctx);
                }));
            }
        }
    }

    fn client_bytes(&mut self, bytes: &[u8]) {
        tracing::trace!(parent: &self.flow.span, bytes = bytes.len(), "client input");
        self.machine.handle(Input::Bytes(bytes));
    }

    fn tls_established(&mut self) {
        tracing::debug!(parent: &self.flow.span, "STLS done");
        self.machine.handle(Input::TlsEstablished);
    }

    fn shutdown(&mut self, why: Ending) {
        self.machine.handle(match why {
            Ending::Shutdown => Input::Shutdown,
            Ending::MailboxMoving => Input::MailboxMoving,
        });
    }

    fn commands(&self) -> u64 {
        self.machine.commands()
    }

    fn count_commands(&mut self) {
        let dispatched = self.machine.drain_commands();
        let dispatched = dispatched.map(|(name, times)| (name.index(), times));
        crate::metrics::count_commands(crate::metrics::Protocol::Pop3, dispatched);
    }
}

/// The start of a message holding everything TOP sends for `lines` body lines, read a
/// piece at a time: `TOP n 0` on a 50 MB message reads its first 256 KiB, not all of it.
fn top_prefix(
    store: &Store,
    mailbox: MailboxId,
    uid: Uid,
    lines: usize,
) -> Result<Vec<u8>, StoreError> {
    let size = store.message(mailbox, uid)?.size;
    let mut prefix = Vec::new();
    while (prefix.len() as u64) < size {
        let piece = store.message_range(mailbox, uid, prefix.len() as u64, RETR_PIECE)?;
        if piece.is_empty() {
            break;
        }
        prefix.extend_from_slice(&piece);
        if portico_pop3::top_is_within(&prefix, lines) {
            break;
        }
    }
    Ok(prefix)
}

impl Pop3Connection {
    /// Feeds an answer to the machine and carries on.
    fn answer(&mut self, input: Input<'_>, ctx: &mut Context<Self>) {
        self.flow.awaiting = false;
        self.machine.handle(input);
        connection::drive_session(self, ctx);
    }

    /// Reads the piece of a message RETR sends from `at` once the client has taken in
    /// what came before, hands it to the machine, and goes on with the next: a 50 MB
    /// message goes out 256 KiB at a time, never whole in memory.
    fn send_piece(&mut self, mailbox: MailboxId, uid: Uid, at: u64, ctx: &mut Context<Self>) {
        self.flow.awaiting = true;
        let store = self.node.store.clone();
        let drained = self.flow.outbox.drained();
        let read = async move {
            drained.await;
            tokio::task::spawn_blocking(move || {
                let size = store.message(mailbox, uid)?.size;
                let piece = store.message_range(mailbox, uid, at, RETR_PIECE)?;
                Ok::<_, StoreError>((piece, size))
            })
            .await
        };
        ctx.spawn(read.into_actor(self).map(move |result, actor, ctx| {
            let (piece, next) = match result {
                Ok(Ok((piece, size))) => {
                    let next = at + piece.len() as u64;
                    // An empty piece short of the end would never finish: stop there.
                    (Ok(piece), (next > at && next < size).then_some(next))
                }
                Ok(Err(e)) => {
                    tracing::error!(parent: &actor.flow.span, error = %e, "message read failed");
                    (Err(MaildropError::Unavailable), None)
                }
                Err(_) => (Err(MaildropError::Unavailable), None),
            };
            actor.answer(
                Input::MessagePiece {
                    piece,
                    more: next.is_some(),
                },
                ctx,
            );
            if let Some(next) = next {
                actor.send_piece(mailbox, uid, next, ctx);
            }
        }));
    }

    /// Like [`Self::answer`], from inside [`Self::perform`] (the drive loop is running).
    fn answer_later(&mut self, input: Input<'static>, ctx: &mut Context<Self>) {
        ctx.run_later(Duration::ZERO, move |actor, ctx| actor.answer(input, ctx));
    }

    fn open_maildrop(&mut self, ctx: &mut Context<Self>) {
        self.flow.awaiting = true;
        let Some(account) = self.account.clone() else {
            self.answer_later(Input::MaildropOpened(Err(MaildropError::Unavailable)), ctx);
            return;
        };
        let node = self.node.clone();
        let session = self.id;
        let open = async move {
            let store = node.store.clone();
            let inbox =
                tokio::task::spawn_blocking(move || store.mailbox_by_name(account.id, INBOX))
                    .await
                    .map_err(|_| MailboxFault::Unavailable)??
                    .ok_or(MailboxFault::Unavailable)?;
            let snapshot = node
                .mailboxes
                .send(inbox.id, AcquirePop3Lock { session })
                .await??;
            Ok::<_, MailboxFault>((inbox.id, snapshot))
        };
        ctx.spawn(open.into_actor(self).map(|result, actor, ctx| {
            let answer = match result {
                Ok((mailbox, snapshot)) => {
                    actor.locked = Some(mailbox);
                    let entries = snapshot
                        .messages
                        .iter()
                        .filter(|meta| !meta.flags.contains(POP3_DELETED_KEYWORD))
                        .map(|meta| MaildropEntry {
                            uid: meta.uid.0,
                            size: meta.size,
                            unique_id: unique_id(meta.uid, snapshot.uidvalidity),
                        })
                        .collect();
                    actor.flow.outbox.send(Outgoing::IdleTimeout(Duration::from_secs(
                        actor.node.config.pop3.idle_timeout_secs,
                    )));
                    Ok(entries)
                }
                Err(MailboxFault::Locked) => Err(MaildropError::InUse),
                Err(e) => {
                    tracing::error!(parent: &actor.flow.span, error = %e, "opening the maildrop failed");
                    Err(MaildropError::Unavailable)
                }
            };
            actor.answer(Input::MaildropOpened(answer), ctx);
        }));
    }
}

connection::session_handlers!(Pop3Connection);

fn protocol_settings(node: &NodeContext) -> ProtocolSettings {
    ProtocolSettings {
        name: "pop3",
        counted_as: crate::metrics::Protocol::Pop3,
        unauthenticated_timeout: Duration::from_secs(node.config.pop3.unauthenticated_timeout_secs),
        timeout_message: b"-ERR [SYS/TEMP] Autologout; idle for too long\r\n",
        sign_in_required: true,
    }
}

fn machine_config(node: &NodeContext) -> Pop3Config {
    let settings = &node.config.pop3;
    Pop3Config {
        implementation: "Portico".to_string(),
        plaintext_login_without_tls: settings.login == LoginType::Plaintext,
        tls_available: true,
        max_line_len: settings.max_line_length,
        max_bad_commands: settings.max_bad_commands,
    }
}

impl Pop3Connection {
    fn new(node: Arc<NodeContext>, machine: Session, new: connection::NewSession) -> Self {
        Pop3Connection {
            id: new.id,
            node,
            machine,
            flow: Flow::new(new.outbox, new.span),
            client: new.client,
            account: None,
            locked: None,
            user_slot: None,
        }
    }

    /// The mailbox is on another node: hands the session there, answering PASS or
    /// AUTH only if that fails.
    fn hand_to_home(&mut self, record: AccountRecord, ctx: &mut Context<Self>) {
        let (Some(proxy), Some(hand_off)) = (self.node.proxy.clone(), self.machine.hand_off())
        else {
            tracing::error!(parent: &self.flow.span, home = %record.home(), "cannot proxy this session");
            crate::metrics::count_login(
                crate::metrics::Protocol::Pop3,
                crate::metrics::LoginResult::Unavailable,
            );
            return self.answer(Input::AuthResult(Err(AuthFailure::MailboxUnavailable)), ctx);
        };
        let request = OpenRequest {
            protocol: SessionProtocol::Pop3,
            client: self.client,
            session: self.id,
            tls: self.machine.tls_active(),
            login: LoginHandOff::Pop3 {
                username: hand_off.username,
                bad_commands: hand_off.bad_commands,
            },
            pending: hand_off.unread,
        };
        let node = self.node.clone();
        proxy::hand_to_home(
            self,
            ctx,
            proxy,
            node,
            record,
            request,
            |actor, too_many, ctx| {
                let failure = if too_many {
                    AuthFailure::TooManyConnections
                } else {
                    AuthFailure::MailboxUnavailable
                };
                actor.answer(Input::AuthResult(Err(failure)), ctx);
            },
        );
    }
}

/// Serves one POP3 connection (plain with STLS, or implicit TLS) until it ends.
pub async fn serve(node: Arc<NodeContext>, tcp: TcpStream, peer: SocketAddr, implicit_tls: bool) {
    let protocol = protocol_settings(&node);
    let config = machine_config(&node);
    let session_node = node.clone();
    connection::serve(node, tcp, peer, implicit_tls, protocol, move |new| {
        let machine = Session::new(config, new.tls);
        Pop3Connection::new(session_node, machine, new)
    })
    .await;
}

/// Serves a POP3 session another node signed in and handed over.
pub async fn serve_handed_over(
    node: Arc<NodeContext>,
    mut handed: HandedOver,
    account: Account,
    slot: UserSlot,
) {
    let LoginHandOff::Pop3 {
        username,
        bad_commands,
    } = handed.open.login.clone()
    else {
        tracing::error!("a POP3 session handed over with another protocol's sign-in");
        return;
    };
    let hand_off = HandOff {
        username,
        bad_commands,
        unread: std::mem::take(&mut handed.open.pending),
    };
    let protocol = protocol_settings(&node);
    let config = machine_config(&node);
    let session_node = node.clone();
    connection::serve_handed_over(node, handed, protocol, move |new| {
        let machine = Session::resume_signed_in(config, new.tls, hand_off);
        let mut actor = Pop3Connection::new(session_node, machine, new);
        actor.account = Some(account);
        actor.user_slot = Some(slot);
        actor
    })
    .await;
}
