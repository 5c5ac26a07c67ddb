//! Mailbox actors: one per open folder, the single writer of that folder.
//!
//! Every change to a folder (deliveries, IMAP APPEND, flags, expunges, copies and moves
//! into it, POP3 deletions) goes through its actor, which applies it durably through the
//! store, tells every session watching the folder ([`FolderChanged`]), and only then
//! answers. The actor also owns the POP3 maildrop lock and IMAP4rev1's \Recent. Actors
//! are found or started through the node's [`MailboxRegistry`] and stopped by it when
//! idle.
//!
//! Appends are pipelined so that many deliveries into one folder share each sync
//! (group commit inside a folder):
//!
//! ```text
//! AppendMessage ─► stage (blocking pool, concurrent): index, body written to the body log
//!               ─► link (in order, nothing else handled meanwhile): every append staged
//!                  by then gets its UID in one batch, metadata applied, queued as pending
//!               ─► wait (the linking thread, concurrent): bodies and metadata durable,
//!                  one shared sync
//!               ─► announce + acknowledge every pending append now durable, in UID order
//! ```
//!
//! A delivery stages its copy itself, in the blocking task that finds the folder, and
//! sends [`AppendStaged`], which joins the link queue at once: each trip through the
//! blocking pool costs two thread switches and waits for a free core.
//!
//! A pending append is invisible to sessions (snapshots leave it out) until it is
//! durable; one whose sync fails is answered with the error and taken back out of the
//! store, its UID never reused.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::Bytes;
use portico_store::{
    AccountId, AppendRequest, Appended, CommitTicket, Copied, ExpectedAppend, FlagOp, Flags,
    FlagsChanged, Mailbox, MailboxId, MessageMeta, ModSeq, POP3_DELETED_KEYWORD, Pop3DeleteMode,
    Store, StoreError, SystemFlag, Uid, Uidvalidity,
};
use tokio::sync::oneshot;

use crate::account_events::{AccountChange, AccountEvents};

/// Identifies one client session on this node (also the id in its log span).
pub type SessionId = u64;

/// Why a request to a mailbox actor did not get an answer from the store.
#[derive(Clone, Debug, thiserror::Error)]
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
    subscribers: AtomicUsize,
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
    /// The folder's account (`None` if its record was unreadable at start).
    account: Option<AccountId>,
    store: Arc<Store>,
    pop3_lock: Option<SessionId>,
    status: Arc<ActorStatus>,
    registry: Weak<MailboxRegistry>,
    /// Sessions that have the folder selected (or are idling on it).
    subscribers: HashMap<SessionId, Subscriber>,
    /// UIDs from here on are \Recent for the next session that selects the folder
    /// read-write (RFC 3501 §2.3.2); `None`: none is. Read from the store
    /// ([`Store::first_recent`]) when the actor starts; the session that takes \Recent
    /// at SELECT writes it there.
    recent_from: Option<Uid>,
    /// Appends applied but not yet durable, in UID order.
    pending: VecDeque<PendingAppend>,
    /// Appends whose bodies are durable, waiting for their UIDs.
    link_queue: Vec<StagedAppend>,
    /// A [`LinkStaged`] is on its way.
    link_scheduled: bool,
    /// Every message sessions may see, from the first SELECT on, kept in step with each
    /// change this actor announces: a later SELECT reads nothing from the store.
    listing: Option<Listing>,
    /// What SELECT reports of `listing`, made by the first SELECT after a change and
    /// shared by the ones after it: a warm SELECT of 100,000 messages walks none.
    overview: Option<Arc<ListingOverview>>,
}

/// What a SELECT reports of a listing besides the messages' count.
#[derive(Debug, Default)]
pub struct ListingOverview {
    /// Every message's UID, ascending: the session's view starts as this (shared).
    pub uids: Arc<Vec<u32>>,
    /// Sequence number of the first message without \Seen.
    pub first_unseen: Option<u32>,
    /// Keywords in use, in the order first met.
    pub keywords: Vec<String>,
}

impl ListingOverview {
    fn of(listing: &[ListedMessage]) -> ListingOverview {
        let mut keywords: Vec<String> = Vec::new();
        let mut first_unseen = None;
        let uids = listing
            .iter()
            .enumerate()
            .map(|(i, ListedMessage { uid, flags, .. })| {
                for name in flags.keywords() {
                    if !keywords.iter().any(|k| k == name) {
                        keywords.push(name.to_string());
                    }
                }
                if first_unseen.is_none() && !flags.has(SystemFlag::Seen) {
                    first_unseen = Some(i as u32 + 1);
                }
                uid.0
            })
            .collect();
        ListingOverview {
            uids: Arc::new(uids),
            first_unseen,
            keywords,
        }
    }
}

/// Every visible message, ascending UID.
pub type Listing = Arc<Vec<ListedMessage>>;

/// What the mailbox actor keeps in memory of a message: what changes (flags, MODSEQ)
/// and what a mail client's header sync asks of every message besides its header
/// fields (`UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ...)`), which then reads no
/// metadata from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMessage {
    pub uid: Uid,
    pub flags: Flags,
    pub modseq: ModSeq,
    pub size: u64,
    /// Unix seconds and the zone's offset in seconds east of UTC.
    pub internal_date: (i64, i32),
}

impl ListedMessage {
    fn of(meta: MessageMeta) -> ListedMessage {
        ListedMessage {
            uid: meta.uid,
            flags: meta.flags,
            modseq: meta.modseq,
            size: meta.size,
            internal_date: (meta.internal_date, meta.internal_date_offset),
        }
    }
}

/// An append waiting for its metadata to become durable.
struct PendingAppend {
    ticket: CommitTicket,
    appended: Appended,
    flags: Flags,
    internal_date: (i64, i32),
    origin: Option<SessionId>,
    reply: oneshot::Sender<Result<Appended, MailboxFault>>,
}

/// A session watching the folder.
struct Subscriber {
    recipient: Recipient<FolderChanged>,
    /// EXAMINE sessions never take \Recent away from others.
    read_only: bool,
}

/// A change to a folder, pushed to the sessions watching it after it is durable.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct FolderChanged {
    pub mailbox: MailboxId,
    /// The session that made the change, which reports it in its own response.
    pub origin: Option<SessionId>,
    pub change: FolderChange,
}

/// One change, however many messages it touches, is one message to each watcher: a
/// STORE over 100,000 messages must not flood (and overflow) the sessions' queues.
#[derive(Clone, Debug)]
pub enum FolderChange {
    Appended {
        /// (uid, flags, modseq), ascending UIDs.
        messages: Arc<Vec<(Uid, Flags, ModSeq)>>,
        /// \Recent for the receiving session.
        recent: bool,
    },
    FlagsChanged {
        changes: Arc<Vec<FlagsChanged>>,
    },
    Expunged {
        uids: Arc<Vec<Uid>>,
        modseq: ModSeq,
    },
    /// The session fell too far behind and must resynchronise (it is disconnected).
    Overflow,
}

impl MailboxActor {
    /// Tells the account's NOTIFY listeners of a change here.
    fn publish(&self, origin: Option<SessionId>, messages: bool) {
        if let (Some(registry), Some(account)) = (self.registry.upgrade(), self.account) {
            registry.accounts.publish(
                account,
                origin,
                AccountChange::Messages {
                    mailbox: self.id,
                    messages,
                },
            );
        }
    }

    /// Tells the registry's watcher that the folder gained or lost messages.
    fn messages_came_or_went(&self) {
        if let Some(registry) = self.registry.upgrade()
            && let Some(watcher) = registry.watcher.get()
        {
            watcher(self.id);
        }
    }

    /// Tells everyone that messages were expunged.
    fn announce_expunged(&mut self, origin: Option<SessionId>, uids: Vec<Uid>, modseq: ModSeq) {
        self.overview = None;
        if let Some(listing) = &mut self.listing {
            let gone: std::collections::HashSet<Uid> = uids.iter().copied().collect();
            Arc::make_mut(listing).retain(|m| !gone.contains(&m.uid));
        }
        self.messages_came_or_went();
        self.publish(origin, true);
        let uids = Arc::new(uids);
        self.broadcast(origin, |_| FolderChange::Expunged {
            uids: uids.clone(),
            modseq,
        });
    }

    /// Tells every subscriber about a change; one whose queue is full is dropped and
    /// told so, rather than letting server memory grow.
    fn broadcast(&mut self, origin: Option<SessionId>, change: impl Fn(SessionId) -> FolderChange) {
        let mailbox = self.id;
        let mut lost = Vec::new();
        for (session, subscriber) in &self.subscribers {
            let msg = FolderChanged {
                mailbox,
                origin,
                change: change(*session),
            };
            if subscriber.recipient.try_send(msg).is_err() {
                lost.push(*session);
            }
        }
        for session in lost {
            if let Some(subscriber) = self.subscribers.remove(&session) {
                subscriber.recipient.do_send(FolderChanged {
                    mailbox,
                    origin: None,
                    change: FolderChange::Overflow,
                });
            }
        }
        self.status
            .subscribers
            .store(self.subscribers.len(), Ordering::Relaxed);
    }

    fn broadcast_flags(&mut self, origin: Option<SessionId>, changed: Vec<FlagsChanged>) {
        if changed.is_empty() {
            return;
        }
        self.overview = None;
        if let Some(listing) = &mut self.listing {
            let listing = Arc::make_mut(listing);
            for change in &changed {
                if let Ok(i) = listing.binary_search_by_key(&change.uid, |m| m.uid)
                    && listing[i].modseq <= change.modseq
                {
                    listing[i].flags = change.flags.clone();
                    listing[i].modseq = change.modseq;
                }
            }
        }
        self.publish(origin, false);
        let changes = Arc::new(changed);
        self.broadcast(origin, |_| FolderChange::FlagsChanged {
            changes: changes.clone(),
        });
    }

    /// Announces new messages; the first read-write watcher sees them as \Recent.
    fn broadcast_appended(&mut self, origin: Option<SessionId>, messages: &[ListedMessage]) {
        let first = self
            .subscribers
            .iter()
            .filter(|(_, subscriber)| !subscriber.read_only)
            .map(|(session, _)| *session)
            .min();
        for ListedMessage { uid, .. } in messages {
            match first {
                // Seen as \Recent by that session; nobody else will.
                Some(_) => {
                    self.recent_from = Some(Uid(uid.0 + 1).max(self.recent_from.unwrap_or(Uid(0))));
                }
                // Nobody watching: \Recent for whoever selects the folder next.
                None => {
                    self.recent_from.get_or_insert(*uid);
                }
            }
        }
        if messages.is_empty() {
            return;
        }
        self.overview = None;
        if let Some(listing) = &mut self.listing {
            let listing = Arc::make_mut(listing);
            for message in messages {
                match listing.binary_search_by_key(&message.uid, |m| m.uid) {
                    // Already there (the listing was read after the store had it).
                    Ok(_) => {}
                    Err(i) => listing.insert(i, message.clone()),
                }
            }
        }
        self.messages_came_or_went();
        self.publish(origin, true);
        let messages = Arc::new(
            messages
                .iter()
                .map(|m| (m.uid, m.flags.clone(), m.modseq))
                .collect::<Vec<_>>(),
        );
        self.broadcast(origin, |session| FolderChange::Appended {
            messages: messages.clone(),
            recent: Some(session) == first,
        });
    }
}

impl MailboxActor {
    /// Announces and acknowledges, in UID order, every pending append that is durable
    /// now. Called before any other change is announced, so sessions see changes in the
    /// order they were made.
    fn settle_durable(&mut self) {
        let committed = self.store.committed();
        while self
            .pending
            .front()
            .is_some_and(|pending| pending.ticket <= committed)
        {
            let Some(done) = self.pending.pop_front() else {
                break;
            };
            let appended = done.appended;
            let listed = ListedMessage {
                uid: appended.uid,
                flags: done.flags,
                modseq: appended.modseq,
                size: appended.size,
                internal_date: done.internal_date,
            };
            self.broadcast_appended(done.origin, &[listed]);
            let _ = done.reply.send(Ok(appended));
        }
    }

    /// Appends whose sync failed (one batch shares a ticket): answered with the error
    /// and taken back out, unless a later sync already made them durable and they were
    /// acknowledged.
    fn fail_pending(&mut self, ticket: CommitTicket, error: MailboxFault, ctx: &mut Context<Self>) {
        let (failed, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.ticket == ticket);
        self.pending = kept;
        let mut uids = Vec::with_capacity(failed.len());
        for append in failed {
            uids.push(append.appended.uid);
            let _ = append.reply.send(Err(error.clone()));
        }
        if uids.is_empty() {
            return;
        }
        let (store, id) = (self.store.clone(), self.id);
        ctx.spawn(
            blocking(move || {
                for uid in uids {
                    store.revoke_append(id, uid);
                }
                Ok(())
            })
            .into_actor(self)
            .map(|_, _, _| ()),
        );
    }

    /// What a new watcher may see of the folder: pending appends are left out (it hears
    /// of them when they are durable, like everyone else). `size` stays the store's.
    fn visible(&self, mut mailbox: Mailbox, listing: &[ListedMessage]) -> Mailbox {
        if let Some(first) = self.pending.front() {
            mailbox.uidnext = first.appended.uid;
            mailbox.highest_modseq = ModSeq(first.appended.modseq.0.saturating_sub(1));
        }
        mailbox.messages = u32::try_from(listing.len()).unwrap_or(u32::MAX);
        mailbox
    }

    /// After a flag change that failed: it is applied in parts ([`Store::store_flags`])
    /// and some may have landed, so the listing is read from the store again.
    fn forget_listing(&mut self) {
        self.listing = None;
        self.overview = None;
    }

    /// Leaves out of `messages` (read from the store) the appends still pending.
    fn hide_pending(&self, messages: &mut Vec<MessageMeta>) {
        if let Some(first) = self.pending.front() {
            messages.retain(|m| m.uid < first.appended.uid);
        }
    }

    /// The listing of messages read from the store: pending appends left out.
    fn listing_of(&self, mut messages: Vec<MessageMeta>) -> Listing {
        self.hide_pending(&mut messages);
        // A fresh vector: collected in place, the listing would keep the metadata's
        // allocation, twice its own size (10 MiB on 100,000 messages).
        let mut listing = Vec::with_capacity(messages.len());
        listing.extend(messages.into_iter().map(ListedMessage::of));
        Arc::new(listing)
    }
}

impl Actor for MailboxActor {
    type Context = Context<Self>;

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        // Never drop an append whose client waits for its answer.
        if self.pending.is_empty() && self.link_queue.is_empty() {
            Running::Stop
        } else {
            Running::Continue
        }
    }
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
    /// Announced to the store when the message was received (group commit).
    pub expected: Option<ExpectedAppend>,
    pub options: AppendOptions,
}

/// Everything about an append but its bytes: what it is linked with, and who is told.
#[derive(Clone, Debug)]
pub struct AppendOptions {
    pub flags: Flags,
    pub internal_date: (i64, i32),
    pub origin: Option<SessionId>,
    /// The name another node gave this copy: recorded with it, so that the same copy
    /// delivered again is recognised ([`portico_store::Store::delivered`]).
    pub delivery_id: Option<String>,
    /// The account's storage limit (bytes), checked as the message is linked: past it
    /// the append is refused with [`StoreError::OverQuota`] and nothing is kept.
    pub storage_limit: Option<u64>,
}

impl Handler<AppendMessage> for MailboxActor {
    type Result = ResponseFuture<Result<Appended, MailboxFault>>;

    fn handle(&mut self, msg: AppendMessage, ctx: &mut Self::Context) -> Self::Result {
        self.status.touch();
        let (reply, answer) = oneshot::channel();
        let store = self.store.clone();
        let message = msg.message.clone();
        let msg_expected = msg.expected.clone();
        ctx.spawn(
            blocking(move || store.stage_message(&message, msg_expected.as_ref()))
                .into_actor(self)
                .map(move |staged, actor, ctx| match staged {
                    Ok(staged) => {
                        actor.queue_link(StagedAppend::new(staged, msg.options, reply), ctx)
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }),
        );
        Box::pin(async move { answer.await.unwrap_or(Err(MailboxFault::Unavailable)) })
    }
}

/// An append whose sender staged the message already ([`Store::stage_message`], on the
/// blocking pool in the task that found the folder, as a delivery does): it joins the
/// link queue at once instead of taking another trip through the blocking pool.
#[derive(Message, Clone)]
#[rtype(result = "Result<Appended, MailboxFault>")]
pub struct AppendStaged {
    /// Taken by the handler; shared so that [`MailboxRegistry::send`] can hand it to a
    /// new actor when the folder's actor stopped meanwhile.
    staged: Arc<Mutex<Option<portico_store::StagedMessage>>>,
    options: AppendOptions,
}

impl AppendStaged {
    pub fn new(staged: portico_store::StagedMessage, options: AppendOptions) -> Self {
        AppendStaged {
            staged: Arc::new(Mutex::new(Some(staged))),
            options,
        }
    }
}

impl Handler<AppendStaged> for MailboxActor {
    type Result = ResponseFuture<Result<Appended, MailboxFault>>;

    fn handle(&mut self, msg: AppendStaged, ctx: &mut Self::Context) -> Self::Result {
        self.status.touch();
        let (reply, answer) = oneshot::channel();
        let staged = msg
            .staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match staged {
            Some(staged) => self.queue_link(StagedAppend::new(staged, msg.options, reply), ctx),
            // Handed to an actor before: never linked twice.
            None => {
                let _ = reply.send(Err(MailboxFault::Unavailable));
            }
        }
        Box::pin(async move { answer.await.unwrap_or(Err(MailboxFault::Unavailable)) })
    }
}

/// Appends several messages, all or none (IMAP MULTIAPPEND, RFC 3502): staged together,
/// then queued at once, so that one link batch (one atomic store change) takes them all.
#[derive(Message, Clone)]
#[rtype(result = "Result<Vec<Appended>, MailboxFault>")]
pub struct AppendMany {
    pub appends: Vec<AppendMessage>,
}

impl Handler<AppendMany> for MailboxActor {
    type Result = ResponseFuture<Result<Vec<Appended>, MailboxFault>>;

    fn handle(&mut self, msg: AppendMany, ctx: &mut Self::Context) -> Self::Result {
        self.status.touch();
        let store = self.store.clone();
        let bodies: Vec<_> = msg
            .appends
            .iter()
            .map(|a| (a.message.clone(), a.expected.clone()))
            .collect();
        let (replies, answers): (Vec<_>, Vec<_>) =
            msg.appends.iter().map(|_| oneshot::channel()).unzip();
        ctx.spawn(
            blocking(move || {
                bodies
                    .iter()
                    .map(|(message, expected)| store.stage_message(message, expected.as_ref()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .into_actor(self)
            .map(move |staged, actor, ctx| match staged {
                Ok(staged) => {
                    for ((staged, msg), reply) in staged.into_iter().zip(msg.appends).zip(replies) {
                        actor.queue_link(StagedAppend::new(staged, msg.options, reply), ctx);
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }),
        );
        Box::pin(async move {
            let mut appended = Vec::with_capacity(answers.len());
            for answer in answers {
                appended.push(answer.await.unwrap_or(Err(MailboxFault::Unavailable))?);
            }
            Ok(appended)
        })
    }
}

/// Links every staged append waiting in the actor's queue (sent to itself, so that all
/// stagings finished by then join one batch).
#[derive(Message)]
#[rtype(result = "()")]
struct LinkStaged;

/// A staged append waiting for its UID.
struct StagedAppend {
    staged: portico_store::StagedMessage,
    options: AppendOptions,
    reply: oneshot::Sender<Result<Appended, MailboxFault>>,
}

impl StagedAppend {
    fn new(
        mut staged: portico_store::StagedMessage,
        options: AppendOptions,
        reply: oneshot::Sender<Result<Appended, MailboxFault>>,
    ) -> Self {
        if let Some(id) = options.delivery_id.clone() {
            staged.deliver_as(id);
        }
        StagedAppend {
            staged,
            options,
            reply,
        }
    }
}

impl MailboxActor {
    fn queue_link(&mut self, append: StagedAppend, ctx: &mut Context<Self>) {
        self.link_queue.push(append);
        if !self.link_scheduled {
            self.link_scheduled = true;
            ctx.notify(LinkStaged);
        }
    }
}

impl Handler<LinkStaged> for MailboxActor {
    type Result = ();

    /// Allocates the UIDs and applies the metadata of every queued append in one batch,
    /// handling nothing else meanwhile (so a snapshot never sees a message that is not
    /// yet pending); then waits for durability without blocking the actor.
    fn handle(&mut self, _: LinkStaged, ctx: &mut Self::Context) {
        self.link_scheduled = false;
        let queued = std::mem::take(&mut self.link_queue);
        if queued.is_empty() {
            return;
        }
        let mut batch = Vec::with_capacity(queued.len());
        let mut waiting = Vec::with_capacity(queued.len());
        for append in queued {
            batch.push(AppendRequest {
                staged: append.staged,
                flags: append.options.flags.clone(),
                internal_date: append.options.internal_date,
                storage_limit: append.options.storage_limit,
            });
            waiting.push((
                append.options.flags,
                append.options.internal_date,
                append.options.origin,
                append.reply,
            ));
        }
        let (store, id) = (self.store.clone(), self.id);
        // One trip through the blocking pool: the thread that links then waits for the
        // sync, while the actor goes on as soon as the batch is linked.
        let (linked_tx, linked_rx) = oneshot::channel();
        let durable = tokio::task::spawn_blocking(move || {
            let linked = store.append_staged_limited(id, batch);
            let ticket = linked.as_ref().ok().map(|(_, ticket)| *ticket);
            let _ = linked_tx.send(linked);
            ticket.map(|ticket| store.wait_committed(ticket))
        });
        ctx.wait(
            async move {
                linked_rx
                    .await
                    .map_err(|_| MailboxFault::Unavailable)?
                    .map_err(MailboxFault::from)
            }
            .into_actor(self)
            .map(move |linked, actor, ctx| {
                let (appended, ticket) = match linked {
                    Ok(linked) => linked,
                    Err(e) => {
                        for (_, _, _, reply) in waiting {
                            let _ = reply.send(Err(e.clone()));
                        }
                        return;
                    }
                };
                for (appended, (flags, internal_date, origin, reply)) in
                    appended.into_iter().zip(waiting)
                {
                    let appended = match appended {
                        Ok(appended) => appended,
                        // Refused alone (over its limit); nothing of it was applied.
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                            continue;
                        }
                    };
                    actor.pending.push_back(PendingAppend {
                        ticket,
                        appended,
                        flags,
                        internal_date,
                        origin,
                        reply,
                    });
                }
                // Awaited from here, so that the appends are pending before their
                // sync's outcome is handled.
                let durable = async move {
                    match durable.await {
                        Ok(Some(outcome)) => outcome.map_err(MailboxFault::from),
                        Ok(None) | Err(_) => Err(MailboxFault::Unavailable),
                    }
                };
                ctx.spawn(durable.into_actor(actor).map(
                    move |durable, actor, ctx| match durable {
                        Ok(()) => actor.settle_durable(),
                        Err(e) => actor.fail_pending(ticket, e, ctx),
                    },
                ));
            }),
        );
    }
}

/// The folder as a session sees it at SELECT.
#[derive(Debug)]
pub struct FolderSnapshot {
    pub mailbox: Mailbox,
    pub messages: Listing,
    pub overview: Arc<ListingOverview>,
    /// \Recent UIDs for this session.
    pub recent: Vec<Uid>,
}

/// Starts pushing the folder's changes to a session (IMAP SELECT/EXAMINE).
#[derive(Message, Clone)]
#[rtype(result = "Result<FolderSnapshot, MailboxFault>")]
pub struct SubscribeSession {
    pub session: SessionId,
    pub recipient: Recipient<FolderChanged>,
    pub read_only: bool,
}

impl Handler<SubscribeSession> for MailboxActor {
    type Result = AtomicResponse<Self, Result<FolderSnapshot, MailboxFault>>;

    fn handle(&mut self, msg: SubscribeSession, _: &mut Self::Context) -> Self::Result {
        self.status.touch();
        self.settle_durable();
        self.subscribers.insert(
            msg.session,
            Subscriber {
                recipient: msg.recipient,
                read_only: msg.read_only,
            },
        );
        self.status
            .subscribers
            .store(self.subscribers.len(), Ordering::Relaxed);
        let (store, id) = (self.store.clone(), self.id);
        // With the listing in memory only the folder's record is read, a sled lookup of a
        // hot key done here; the first SELECT reads every message's on the blocking pool.
        type Read = Result<(Mailbox, Option<Vec<MessageMeta>>), MailboxFault>;
        let read: Pin<Box<dyn Future<Output = Read>>> = match self.listing.is_some() {
            true => {
                let record = store.mailbox(id).map_err(MailboxFault::from);
                Box::pin(std::future::ready(record.map(|mailbox| (mailbox, None))))
            }
            false => Box::pin(blocking(move || {
                let messages = store.messages(id)?;
                Ok((store.mailbox(id)?, Some(messages)))
            })),
        };
        AtomicResponse::new(Box::pin(read.into_actor(self).map(
            move |result, actor, _| {
                let (mailbox, messages) = match result {
                    Ok(read) => read,
                    Err(e) => {
                        actor.subscribers.remove(&msg.session);
                        return Err(e);
                    }
                };
                if let Some(messages) = messages {
                    actor.listing = Some(actor.listing_of(messages));
                    actor.overview = None;
                }
                let messages = actor.listing.clone().unwrap_or_default();
                let overview = actor
                    .overview
                    .get_or_insert_with(|| Arc::new(ListingOverview::of(&messages)))
                    .clone();
                let mailbox = actor.visible(mailbox, &messages);
                let from = *actor.recent_from.get_or_insert(mailbox.uidnext);
                let recent = messages[messages.partition_point(|m| m.uid < from)..]
                    .iter()
                    .map(|m| m.uid)
                    .collect();
                if !msg.read_only {
                    actor.recent_from = Some(mailbox.uidnext);
                }
                Ok(FolderSnapshot {
                    mailbox,
                    messages,
                    overview,
                    recent,
                })
            },
        )))
    }
}

/// The folder's listing as of now (every change made so far announced), if the actor
/// has one: FETCH FLAGS and SEARCH on flags read it instead of the store.
#[derive(Message, Clone)]
#[rtype(result = "Option<Listing>")]
pub struct GetListing;

impl Handler<GetListing> for MailboxActor {
    type Result = Option<Listing>;

    fn handle(&mut self, _: GetListing, _: &mut Self::Context) -> Self::Result {
        self.status.touch();
        self.settle_durable();
        self.listing.clone()
    }
}

/// Stops pushing changes to a session (UNSELECT, CLOSE, another SELECT, disconnect).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct UnsubscribeSession {
    pub session: SessionId,
}

impl Handler<UnsubscribeSession> for MailboxActor {
    type Result = ();

    fn handle(&mut self, msg: UnsubscribeSession, _: &mut Self::Context) {
        self.status.touch();
        self.subscribers.remove(&msg.session);
        self.status
            .subscribers
            .store(self.subscribers.len(), Ordering::Relaxed);
    }
}

/// What a STORE did: the flags now of every message asked for that exists, and those
/// left alone because they changed after UNCHANGEDSINCE (RFC 7162 §3.1.3).
#[derive(Debug, Default)]
pub struct FlagsOutcome {
    pub current: Vec<(Uid, Flags, ModSeq)>,
    pub modified: Vec<Uid>,
}

/// IMAP STORE.
#[derive(Message, Clone)]
#[rtype(result = "Result<FlagsOutcome, MailboxFault>")]
pub struct StoreFlags {
    pub origin: Option<SessionId>,
    pub uids: Vec<Uid>,
    pub op: FlagOp,
    pub flags: Flags,
    pub unchanged_since: Option<ModSeq>,
}

impl Handler<StoreFlags> for MailboxActor {
    type Result = AtomicResponse<Self, Result<FlagsOutcome, MailboxFault>>;

    fn handle(&mut self, msg: StoreFlags, _: &mut Self::Context) -> Self::Result {
        self.status.touch();
        let (store, id) = (self.store.clone(), self.id);
        let origin = msg.origin;
        let listing = self.listing.clone();
        AtomicResponse::new(Box::pin(
            blocking(move || {
                // Each message's flags and MODSEQ now: from the listing when the actor
                // has one (while this handler runs it is the store's, for every message
                // a session can name), else from the store.
                let now_of = |uid: Uid| -> Result<Option<(Flags, ModSeq)>, StoreError> {
                    match &listing {
                        Some(listing) => Ok(listing
                            .binary_search_by_key(&uid, |m| m.uid)
                            .ok()
                            .map(|at| (listing[at].flags.clone(), listing[at].modseq))),
                        None => match store.message(id, uid) {
                            Ok(meta) => Ok(Some((meta.flags, meta.modseq))),
                            Err(StoreError::NotFound) => Ok(None),
                            Err(e) => Err(e),
                        },
                    }
                };
                let mut outcome = FlagsOutcome::default();
                let mut targets = Vec::new();
                let mut now = HashMap::new();
                for uid in &msg.uids {
                    let Some((flags, modseq)) = now_of(*uid)? else {
                        continue;
                    };
                    if msg.unchanged_since.is_some_and(|since| modseq > since) {
                        outcome.modified.push(*uid);
                    } else {
                        targets.push(*uid);
                    }
                    now.insert(*uid, (flags, modseq));
                }
                drop(listing);
                let changed = store.store_flags(id, &targets, msg.op, &msg.flags)?;
                for change in &changed {
                    if let Some(entry) = now.get_mut(&change.uid) {
                        *entry = (change.flags.clone(), change.modseq);
                    }
                }
                for uid in &msg.uids {
                    if let Some((flags, modseq)) = now.get(uid) {
                        outcome.current.push((*uid, flags.clone(), *modseq));
                    }
                }
                Ok((outcome, changed))
            })
            .into_actor(self)
            .map(move |result, actor, _| {
                let (outcome, changed) = match result {
                    Ok(done) => done,
                    Err(e) => {
                        actor.forget_listing();
                        return Err(e);
                    }
                };
                actor.settle_durable();
                actor.broadcast_flags(origin, changed);
                Ok(outcome)
            }),
        ))
    }
}

/// IMAP EXPUNGE / UID EXPUNGE / CLOSE: removes those of `uids` (all, when None) that
/// carry \Deleted.
#[derive(Message, Clone)]
#[rtype(result = "Result<Vec<Uid>, MailboxFault>")]
pub struct ExpungeDeleted {
    pub origin: Option<SessionId>,
    pub uids: Option<Vec<Uid>>,
}

impl Handler<ExpungeDeleted> for MailboxActor {
    type Result = AtomicResponse<Self, Result<Vec<Uid>, MailboxFault>>;

    fn handle(&mut self, msg: ExpungeDeleted, _: &mut Self::Context) -> Self::Result {
        self.status.touch();
        let (store, id) = (self.store.clone(), self.id);
        let origin = msg.origin;
        AtomicResponse::new(Box::pin(
            blocking(move || {
                let wanted: Option<std::collections::HashSet<Uid>> =
                    msg.uids.map(|uids| uids.into_iter().collect());
                let doomed: Vec<Uid> = store
                    .messages(id)?
                    .into_iter()
                    .filter(|m| m.flags.has(SystemFlag::Deleted))
                    .filter(|m| wanted.as_ref().is_none_or(|w| w.contains(&m.uid)))
                    .map(|m| m.uid)
                    .collect();
                let removed = store.expunge(id, &doomed)?;
                let modseq = store.mailbox(id)?.highest_modseq;
                Ok((removed, modseq))
            })
            .into_actor(self)
            .map(move |result, actor, _| {
                let (removed, modseq) = result?;
                actor.settle_durable();
                if !removed.is_empty() {
                    actor.announce_expunged(origin, removed.clone(), modseq);
                }
                Ok(removed)
            }),
        ))
    }
}

/// IMAP COPY / MOVE from `source` into this folder, handled by this folder's actor: it
/// is the writer that hands out this folder's UIDs, so the copies are announced in UID
/// order with its own appends (a copy made by the source's actor could be announced
/// after a later append, and a session would see UIDs out of order). Sessions watching
/// this folder are told before the answer. For a MOVE the answer carries the expunges
/// for the source's actor ([`MailboxRegistry::copy`] hands them on before the client
/// hears OK). An actor never waits on another: two copies in opposite directions
/// cannot deadlock.
#[derive(Message, Clone)]
#[rtype(result = "Result<(Copied, Option<AnnounceExpunged>), MailboxFault>")]
pub struct CopyMessages {
    pub origin: Option<SessionId>,
    pub uids: Vec<Uid>,
    pub source: MailboxId,
    pub moving: bool,
    /// The account's storage limit (bytes) for a COPY; a MOVE (within the account)
    /// adds nothing to its usage and takes none.
    pub storage_limit: Option<u64>,
}

/// Messages another folder's actor moved out of this folder (MOVE).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct AnnounceExpunged {
    pub origin: Option<SessionId>,
    pub uids: Vec<Uid>,
    pub modseq: ModSeq,
}

impl Handler<AnnounceExpunged> for MailboxActor {
    type Result = ();

    fn handle(&mut self, msg: AnnounceExpunged, _: &mut Self::Context) {
        self.status.touch();
        self.announce_expunged(msg.origin, msg.uids, msg.modseq);
    }
}

impl Handler<CopyMessages> for MailboxActor {
    type Result = AtomicResponse<Self, Result<(Copied, Option<AnnounceExpunged>), MailboxFault>>;

    fn handle(&mut self, msg: CopyMessages, _: &mut Self::Context) -> Self::Result {
        self.status.touch();
        let (store, id) = (self.store.clone(), self.id);
        let (origin, source, moving) = (msg.origin, msg.source, msg.moving);
        AtomicResponse::new(Box::pin(
            blocking(move || {
                let copied = if moving {
                    store.move_messages(source, &msg.uids, id)?
                } else {
                    store.copy_limited(source, &msg.uids, id, msg.storage_limit)?
                };
                let mut added = Vec::new();
                for (_, new_uid) in &copied.pairs {
                    added.push(ListedMessage::of(store.message(id, *new_uid)?));
                }
                let modseq = store.mailbox(source)?.highest_modseq;
                Ok((copied, added, modseq))
            })
            .into_actor(self)
            .map(move |result, actor, _| {
                let (copied, added, modseq) = result?;
                // Appends linked before the copy have lower UIDs and are durable now:
                // they are announced first.
                actor.settle_durable();
                let gone: Vec<Uid> = copied.pairs.iter().map(|(src, _)| *src).collect();
                let mut expunged = None;
                if moving && !gone.is_empty() {
                    if source == id {
                        actor.announce_expunged(origin, gone, modseq);
                    } else {
                        expunged = Some(AnnounceExpunged {
                            origin,
                            uids: gone,
                            modseq,
                        });
                    }
                }
                if !added.is_empty() {
                    actor.broadcast_appended(origin, &added);
                }
                Ok((copied, expunged))
            }),
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
        self.settle_durable();
        if self.pop3_lock.is_some_and(|holder| holder != msg.session) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(MailboxFault::Locked))));
        }
        self.pop3_lock = Some(msg.session);
        self.status.pop3_locked.store(true, Ordering::Relaxed);
        let (store, id) = (self.store.clone(), self.id);
        AtomicResponse::new(Box::pin(
            blocking(move || Ok((store.mailbox(id)?, store.messages(id)?)))
                .into_actor(self)
                .map(move |result, actor, _| match result {
                    Ok((mailbox, mut messages)) => {
                        actor.hide_pending(&mut messages);
                        Ok(MaildropSnapshot {
                            uidvalidity: mailbox.uidvalidity,
                            messages,
                        })
                    }
                    Err(e) => {
                        if actor.pop3_lock == Some(msg.session) {
                            actor.release_pop3_lock();
                        }
                        Err(e)
                    }
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
        let session = msg.session;
        AtomicResponse::new(Box::pin(
            blocking(move || {
                if msg.uids.is_empty() {
                    return Ok(None);
                }
                Ok(Some(match msg.mode {
                    Pop3DeleteMode::Expunge => {
                        let removed = store.expunge(id, &msg.uids)?;
                        (removed, Vec::new(), store.mailbox(id)?.highest_modseq)
                    }
                    Pop3DeleteMode::Hide => {
                        let hidden = Flags::from_names([POP3_DELETED_KEYWORD]);
                        let changed = store.store_flags(id, &msg.uids, FlagOp::Add, &hidden)?;
                        (Vec::new(), changed, store.mailbox(id)?.highest_modseq)
                    }
                }))
            })
            .into_actor(self)
            .map(move |result, actor, _| {
                actor.settle_durable();
                // RFC 1939 §6: the session is over once UPDATE is done; the lock goes back
                // before the client is told, so it can reconnect right away.
                if actor.pop3_lock == Some(session) {
                    actor.release_pop3_lock();
                }
                let result = result.inspect_err(|_| actor.forget_listing());
                if let Some((removed, changed, modseq)) = result? {
                    if !removed.is_empty() {
                        actor.announce_expunged(None, removed, modseq);
                    }
                    actor.broadcast_flags(None, changed);
                }
                Ok(())
            }),
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
    me: Weak<MailboxRegistry>,
    actors: Mutex<HashMap<MailboxId, RunningMailbox>>,
    /// Told of every folder that gained or lost messages (the full-text indexer).
    watcher: OnceLock<FolderWatcher>,
    /// NOTIFY's listeners: every folder's changes are published there too.
    pub accounts: AccountEvents,
}

/// Called with a folder's id when messages arrive in it or leave it.
pub type FolderWatcher = Arc<dyn Fn(MailboxId) + Send + Sync>;

/// An actor unused this long, without a POP3 lock, is stopped.
const IDLE_ACTOR_SECS: u64 = 300;

impl MailboxRegistry {
    /// Mailbox actors run on `arbiter`; their store work runs on its blocking pool.
    pub fn new(store: Arc<Store>, arbiter: ArbiterHandle) -> Arc<Self> {
        Arc::new_cyclic(|me| MailboxRegistry {
            store,
            arbiter,
            me: me.clone(),
            actors: Mutex::new(HashMap::new()),
            watcher: OnceLock::new(),
            accounts: AccountEvents::default(),
        })
    }

    /// Sets who is told of folders that gained or lost messages (once).
    pub fn watch_folders(&self, watcher: FolderWatcher) {
        let _ = self.watcher.set(watcher);
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
        // Where \Recent starts, as the last actor of this folder left it.
        let recent_from = store.first_recent(id).unwrap_or_else(|e| {
            tracing::warn!(mailbox = id.0, error = %e, "where \\Recent starts is unreadable");
            None
        });
        // Whose folder it is, for NOTIFY's listeners; a folder never changes account.
        let account = store.mailbox(id).ok().map(|mailbox| mailbox.account);
        let actor_status = status.clone();
        let registry = self.me.clone();
        let addr = MailboxActor::start_in_arbiter(&self.arbiter, move |ctx| {
            // Room for bursts of writes; a full mailbox makes senders wait, not fail.
            ctx.set_mailbox_capacity(1024);
            MailboxActor {
                id,
                account,
                store,
                pop3_lock: None,
                status: actor_status,
                registry,
                subscribers: HashMap::new(),
                recent_from,
                pending: VecDeque::new(),
                link_queue: Vec::new(),
                link_scheduled: false,
                listing: None,
                overview: None,
            }
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

    /// Delivers a copy staged by the caller (or the error staging it met) into the INBOX
    /// `inbox`: flagged nothing, dated `internal_date`, recorded as `delivery_id`.
    pub async fn deliver_staged(
        &self,
        inbox: MailboxId,
        staged: Result<portico_store::StagedMessage, StoreError>,
        internal_date: i64,
        delivery_id: Option<String>,
        storage_limit: Option<u64>,
    ) -> Result<Appended, MailboxFault> {
        let options = AppendOptions {
            flags: Flags::default(),
            internal_date: (internal_date, 0),
            origin: None,
            delivery_id,
            storage_limit,
        };
        self.send(inbox, AppendStaged::new(staged?, options))
            .await?
    }

    /// COPY or MOVE through the destination folder's actor; returns once the sessions
    /// watching either folder have been told.
    pub async fn copy(&self, copy: CopyMessages, into: MailboxId) -> Result<Copied, MailboxFault> {
        let source = copy.source;
        let (copied, expunged) = self.send(into, copy).await??;
        if let Some(expunged) = expunged {
            self.send(source, expunged).await?;
        }
        Ok(copied)
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
                && status.subscribers.load(Ordering::Relaxed) == 0
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
