//! Mailbox actors: one per open folder, the single writer of that folder.
//!
//! Every change to a folder (delivery, POP3 deletions; IMAP's appends, flags and
//! expunges later) goes through its actor, which applies it durably through the store
//! and only then answers. The actor also owns the POP3 maildrop lock. Actors are found
//! or started through the node's [`MailboxRegistry`] and stopped by it when idle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::Bytes;
use portico_store::{
    Appended, FlagOp, Flags, MailboxId, MessageMeta, POP3_DELETED_KEYWORD, Pop3DeleteMode, Store,
    StoreError, Uid, Uidvalidity,
};

/// Identifies one client session on this node (also the id in its log span).
pub type SessionId = u64;

/// Why a request to a mailbox actor did not get an answer from the store.
#[derive(Debug, thiserror::Error)]
pub enum MailboxFault {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another POP3 session holds the maildrop lock.
    #[error("the maildrop is locked by another session")]
    Locked,
    /// The actor is gone (node shutting down) or a blocking task failed.
    #[error("mailbox actor unavailable")]
    Unavailable,
}

/// What the registry can see of an actor without messaging it.
#[derive(Default)]
struct ActorStatus {
    pop3_locked: AtomicBool,
    last_used: AtomicU64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ActorStatus {
    fn touch(&self) {
        self.last_used.store(now_secs(), Ordering::Relaxed);
    }
}

/// The writer of one folder.
pub struct MailboxActor {
    id: MailboxId,
    store: Arc<Store>,
    pop3_lock: Option<SessionId>,
    status: Arc<ActorStatus>,
}

impl Actor for MailboxActor {
    type Context = Context<Self>;
}

/// Runs store work off the actor's thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, MailboxFault> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| MailboxFault::Unavailable)?
        .map_err(MailboxFault::from)
}

/// Appends a message (delivery, and later IMAP APPEND / COPY targets).
#[derive(Message, Clone)]
#[rtype(result = "Result<Appended, MailboxFault>")]
pub struct AppendMessage {
    pub message: Bytes,
    pub flags: Flags,
    pub internal_date: (i64, i32),
}

impl Handler<AppendMessage> for MailboxActor {
    type Result = AtomicResponse<Self, Result<Appended, MailboxFault>>;

    fn handle(&mut self, msg: AppendMessage, _: &mut Self::Context) -> Self::Result {
        self.status.touch();
        let (store, id) = (self.store.clone(), self.id);
        AtomicResponse::new(Box::pin(
            blocking(move || store.append(id, &msg.message, &msg.flags, msg.internal_date))
                .into_actor(self),
        ))
    }
}

/// The folder as a POP3 session sees it for its whole life.
#[derive(Debug)]
pub struct MaildropSnapshot {
    pub uidvalidity: Uidvalidity,
    pub messages: Vec<MessageMeta>,
}

/// Takes the POP3 maildrop lock (RFC 1939 §8) and lists the folder.
#[derive(Message, Clone)]
#[rtype(result = "Result<MaildropSnapshot, MailboxFault>")]
pub struct AcquirePop3Lock {
    pub session: SessionId,
}

impl Handler<AcquirePop3Lock> for MailboxActor {
    type Result = AtomicResponse<Self, Result<MaildropSnapshot, MailboxFault>>;

    fn handle(&mut self, msg: AcquirePop3Lock, _: &mut Self::Context) -> Self::Result {
        self.status.touch();
        if self.pop3_lock.is_some_and(|holder| holder != msg.session) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(MailboxFault::Locked))));
        }
        self.pop3_lock = Some(msg.session);
        self.status.pop3_locked.store(true, Ordering::Relaxed);
        let (store, id) = (self.store.clone(), self.id);
        AtomicResponse::new(Box::pin(
            blocking(move || {
                let mailbox = store.mailbox(id)?;
                Ok(MaildropSnapshot {
                    uidvalidity: mailbox.uidvalidity,
                    messages: store.messages(id)?,
                })
            })
            .into_actor(self)
            .map(move |result, actor, _| {
                if result.is_err() && actor.pop3_lock == Some(msg.session) {
                    actor.release_pop3_lock();
                }
                result
            }),
        ))
    }
}

impl MailboxActor {
    fn release_pop3_lock(&mut self) {
        self.pop3_lock = None;
        self.status.pop3_locked.store(false, Ordering::Relaxed);
    }
}

/// Gives the maildrop lock back (session ended, however it ended).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct ReleasePop3Lock {
    pub session: SessionId,
}

impl Handler<ReleasePop3Lock> for MailboxActor {
    type Result = ();

    fn handle(&mut self, msg: ReleasePop3Lock, _: &mut Self::Context) {
        self.status.touch();
        if self.pop3_lock == Some(msg.session) {
            self.release_pop3_lock();
        }
    }
}

/// POP3's UPDATE state (RFC 1939 §6): remove, or hide, what the session deleted, in one
/// durable transaction. Only the lock holder may do it.
#[derive(Message, Clone)]
#[rtype(result = "Result<(), MailboxFault>")]
pub struct CommitPop3Deletes {
    pub session: SessionId,
    pub uids: Vec<Uid>,
    pub mode: Pop3DeleteMode,
}

impl Handler<CommitPop3Deletes> for MailboxActor {
    type Result = AtomicResponse<Self, Result<(), MailboxFault>>;

    fn handle(&mut self, msg: CommitPop3Deletes, _: &mut Self::Context) -> Self::Result {
        self.status.touch();
        if self.pop3_lock != Some(msg.session) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(MailboxFault::Locked))));
        }
        let (store, id) = (self.store.clone(), self.id);
        AtomicResponse::new(Box::pin(
            blocking(move || match msg.mode {
                Pop3DeleteMode::Expunge => store.expunge(id, &msg.uids).map(drop),
                Pop3DeleteMode::Hide => {
                    let hidden = Flags::from_names([POP3_DELETED_KEYWORD]);
                    store
                        .store_flags(id, &msg.uids, FlagOp::Add, &hidden)
                        .map(drop)
                }
            })
            .into_actor(self),
        ))
    }
}

/// Sent by the registry to an actor it has forgotten.
#[derive(Message)]
#[rtype(result = "()")]
struct StopMailbox;

impl Handler<StopMailbox> for MailboxActor {
    type Result = ();

    fn handle(&mut self, _: StopMailbox, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// A started mailbox actor and what the registry can see of it.
type RunningMailbox = (Addr<MailboxActor>, Arc<ActorStatus>);

/// Finds or starts the actor of a folder; stops actors nobody has used for a while.
pub struct MailboxRegistry {
    store: Arc<Store>,
    arbiter: ArbiterHandle,
    actors: Mutex<HashMap<MailboxId, RunningMailbox>>,
}

/// An actor unused this long, without a POP3 lock, is stopped.
const IDLE_ACTOR_SECS: u64 = 300;

impl MailboxRegistry {
    /// Mailbox actors run on `arbiter`; their store work runs on its blocking pool.
    pub fn new(store: Arc<Store>, arbiter: ArbiterHandle) -> Arc<Self> {
        Arc::new(MailboxRegistry {
            store,
            arbiter,
            actors: Mutex::new(HashMap::new()),
        })
    }

    fn actor(&self, id: MailboxId) -> Addr<MailboxActor> {
        let mut actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((addr, status)) = actors.get(&id)
            && addr.connected()
        {
            status.touch();
            return addr.clone();
        }
        let status = Arc::new(ActorStatus::default());
        status.touch();
        let store = self.store.clone();
        let actor_status = status.clone();
        let addr = MailboxActor::start_in_arbiter(&self.arbiter, move |_| MailboxActor {
            id,
            store,
            pop3_lock: None,
            status: actor_status,
        });
        actors.insert(id, (addr.clone(), status));
        addr
    }

    /// Sends a message to a folder's actor, starting it if needed; one retry covers an
    /// actor that was being stopped just as the message went out.
    pub async fn send<M>(&self, id: MailboxId, msg: M) -> Result<M::Result, MailboxFault>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        MailboxActor: Handler<M>,
    {
        match self.actor(id).send(msg.clone()).await {
            Ok(result) => Ok(result),
            Err(_) => self
                .actor(id)
                .send(msg)
                .await
                .map_err(|_| MailboxFault::Unavailable),
        }
    }

    /// Fire-and-forget variant for messages whose answer nobody waits for.
    pub fn notify<M>(&self, id: MailboxId, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        MailboxActor: Handler<M>,
    {
        self.actor(id).do_send(msg);
    }

    /// Forgets and stops idle actors; called periodically.
    pub fn reap_idle(&self) {
        let now = now_secs();
        let mut actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        actors.retain(|_, (addr, status)| {
            let idle = !status.pop3_locked.load(Ordering::Relaxed)
                && now.saturating_sub(status.last_used.load(Ordering::Relaxed)) > IDLE_ACTOR_SECS;
            if idle || !addr.connected() {
                addr.do_send(StopMailbox);
                false
            } else {
                true
            }
        });
    }

    /// Starts the periodic reaper on the current arbiter.
    pub fn start_reaper(self: &Arc<Self>) {
        let registry = Arc::downgrade(self);
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                match registry.upgrade() {
                    Some(registry) => registry.reap_idle(),
                    None => break,
                }
            }
        });
    }

    /// Number of live mailbox actors (for logs and tests).
    pub fn len(&self) -> usize {
        self.actors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
