//! The IMAP session actor: wires a [`portico_imap::Session`] to its connection, the
//! authenticator, the store and the mailbox actors of the folders it selects.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use portico_cluster::{ClientEndpoint, LoginType};
use portico_directory::AccountRecord;
use portico_imap::catenate::{PartSource, UrlMailbox};
use portico_imap::command::{DateTime, StoreMode};
use portico_imap::request::{
    AccountEvent, CatenateJob, Copied as ImapCopied, Detail, Fault, FlagsStored, FolderEvent,
    FolderId, FolderInfo, FolderList, FolderStatus, LoginFailure, MessageData, QuotaUsage, Reply,
    Request, RequestId, ScanJob, SelectedFolder, ViewEntry, WatchedFolder,
};
use portico_imap::{Action, HandOff, ImapConfig, Input, Session};
use portico_internode::{LoginHandOff, SessionProtocol};
use portico_store::{
    Account, FlagOp, Flags, HIERARCHY_SEPARATOR, INBOX, Mailbox, MailboxId, MessageMeta,
    SpecialUse, Store, StoreError, Uid, validate_mailbox_name,
};
use tokio::net::TcpStream;

use crate::account_events::{AccountChange, AccountChanged, AccountEvents, Owed};
use crate::auth::{LoginError, Protocol};
use crate::connection::{self, Ending, Flow, Outgoing, ProtocolSettings, SessionActor};
use crate::mailbox::{
    AppendMany, AppendMessage, AppendOptions, CopyMessages, ExpungeDeleted, FolderChange,
    FolderChanged, GetListing, Listing, MailboxFault, SessionId, StoreFlags, SubscribeSession,
    UnsubscribeSession,
};
use crate::node::{NodeContext, SignIn, UserSlot};
use crate::proxy::{self, HandedOver, OpenRequest};
use crate::smtp_time::unix_now as now;

pub struct ImapConnection {
    id: SessionId,
    node: Arc<NodeContext>,
    machine: Session,
    flow: Flow,
    client: SocketAddr,
    account: Option<Account>,
    /// The folder whose changes this session receives.
    selected: Option<MailboxId>,
    /// A SELECT is subscribing; its folder's changes may arrive before its reply, and the
    /// session machine holds them until the folder is open.
    selecting: bool,
    /// This session's place under the per-user connection limit.
    user_slot: Option<UserSlot>,
    /// What ends the session when its mailbox moves away.
    eviction: Option<SpawnHandle>,
    /// NOTIFY: the account's changes reach this session ([`AccountEvents`]).
    listening: bool,
    /// NOTIFY: the folders whose STATUS is owed, gathered by [`AccountEvents`]; told
    /// together a moment after the first change, so a burst of deliveries is one STATUS.
    owed_status: Option<Owed>,
    /// A session handed over by another node: the LOGIN or AUTHENTICATE request the
    /// machine waits for, answered once the actor runs.
    handed_login: Option<RequestId>,
    /// Whether the client connected to this node's implicit-TLS port (else the STARTTLS
    /// one): a login referral points at the same kind of port. `None` for a session
    /// another node handed over, whose client's port is not known here.
    implicit_tls: Option<bool>,
}

impl Actor for ImapConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        if let Some(slot) = &self.user_slot {
            self.eviction = Some(connection::end_when_evicted(slot, ctx));
        }
        if let Some(id) = self.handed_login.take() {
            self.flow
                .outbox
                .send(Outgoing::IdleTimeout(Duration::from_secs(
                    self.node.config.imap.idle_timeout_secs,
                )));
            self.answer(id, Reply::Login(Ok(())), ctx);
        }
        connection::drive_session(self, ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.stop_listening();
        if let Some(mailbox) = self.selected.take() {
            self.node
                .mailboxes
                .notify(mailbox, UnsubscribeSession { session: self.id });
        }
    }
}

/// Maps a store failure to the IMAP session's closed set, logging internal ones with a
/// reference the client also sees.
fn fault(span: &tracing::Span, error: MailboxFault) -> Fault {
    match error {
        MailboxFault::Store(StoreError::NotFound) => Fault::NotFound,
        MailboxFault::Store(StoreError::AlreadyExists) => Fault::AlreadyExists,
        MailboxFault::Store(StoreError::InvalidName(why) | StoreError::NotAllowed(why)) => {
            Fault::NotAllowed(why.to_string())
        }
        MailboxFault::Store(StoreError::OverQuota) => Fault::OverQuota,
        // RFC 5530 §3: LIMIT, an implementation limit of this server.
        MailboxFault::Store(StoreError::LimitExceeded(why)) => Fault::Limit(why.to_string()),
        MailboxFault::Store(StoreError::NoSpace) => {
            tracing::warn!(parent: span, "store refused a write: not enough disk space");
            Fault::NoSpace
        }
        MailboxFault::Store(StoreError::Damaged(what)) => {
            tracing::error!(parent: span, what = %what, "damaged message");
            Fault::Damaged(what)
        }
        MailboxFault::Store(error @ StoreError::Io(_)) => {
            let reference = format!("{:08x}", rand_reference());
            tracing::error!(parent: span, error = %error, reference, "storage I/O failure");
            Fault::Temporary(reference)
        }
        other => {
            let reference = format!("{:08x}", rand_reference());
            tracing::error!(parent: span, error = %other, reference, "store failure");
            Fault::Unavailable(reference)
        }
    }
}

fn rand_reference() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

fn flag_names(flags: &Flags) -> Vec<String> {
    flags.names().map(str::to_string).collect()
}

/// A message as a scan needs it; with `stream_above`, a whole message bigger than that
/// stays in the store (its header is read, its literals are streamed).
fn message_data(
    store: &Store,
    mailbox: MailboxId,
    meta: MessageMeta,
    detail: Detail,
    stream_above: Option<u64>,
) -> Result<MessageData, StoreError> {
    let summary = if detail >= Detail::Summary {
        Some(store.message_summary(mailbox, meta.uid)?)
    } else {
        None
    };
    let raw_in_store = detail == Detail::Full && stream_above.is_some_and(|t| meta.size > t);
    let fields = match detail {
        Detail::Fields => store.search_fields(mailbox, meta.uid)?,
        _ => None,
    };
    let raw = match (detail, &summary) {
        // Stored before the fields were kept: the header block instead.
        (Detail::Fields, _) if fields.is_none() => Some(store.header_block(mailbox, &meta)?),
        (Detail::KeptHeader, _) => match store.kept_header(mailbox, meta.uid)? {
            Some(lines) => Some(lines),
            None => Some(store.header_block(mailbox, &meta)?),
        },
        (Detail::HeaderText, _) => Some(store.header_block(mailbox, &meta)?),
        (Detail::Header, Some(summary)) => Some(store.header_of(mailbox, &meta, summary)?),
        (Detail::Full, Some(summary)) if raw_in_store => {
            Some(store.header_of(mailbox, &meta, summary)?)
        }
        (Detail::Full, _) => Some(store.bytes_of(mailbox, &meta)?),
        _ => None,
    };
    Ok(MessageData {
        summary,
        fields,
        raw,
        raw_in_store,
        ..meta_data(&meta)
    })
}

/// A message's metadata alone, as a scan needs it.
fn meta_data(meta: &MessageMeta) -> MessageData {
    MessageData {
        internal_date: DateTime {
            timestamp: meta.internal_date,
            offset: meta.internal_date_offset,
        },
        // The store's clock, shown in UTC as the INTERNALDATE of an APPEND without a
        // date is.
        save_date: meta.save_date.map(|timestamp| DateTime {
            timestamp,
            offset: 0,
        }),
        size: meta.size,
        // A copy shares its original's stored body, so it shares this id too.
        email_id: meta.body.id,
        ..flags_only(meta.uid, &meta.flags, meta.modseq)
    }
}

/// A message of the mailbox actor's listing, for a scan that reads only what the
/// listing has ([`ScanJob::reads_only_listed`]): the other fields are left empty.
/// `None` when it is gone.
fn listed_message(listing: &Listing, uid: u32) -> Option<MessageData> {
    let at = listing.binary_search_by_key(&uid, |m| m.uid.0).ok()?;
    let listed = &listing[at];
    Some(MessageData {
        internal_date: DateTime {
            timestamp: listed.internal_date.0,
            offset: listed.internal_date.1,
        },
        size: listed.size,
        ..flags_only(listed.uid, &listed.flags, listed.modseq)
    })
}

/// A message with its UID, flags and MODSEQ, nothing else.
fn flags_only(uid: Uid, flags: &Flags, modseq: portico_store::ModSeq) -> MessageData {
    MessageData {
        uid: uid.0,
        flags: flag_names(flags),
        internal_date: DateTime {
            timestamp: 0,
            offset: 0,
        },
        save_date: None,
        size: 0,
        modseq: modseq.0,
        email_id: 0,
        summary: None,
        fields: None,
        raw: None,
        raw_in_store: false,
    }
}

/// A slice's metadata (and search fields) read at once, when the slice needs no more:
/// from the mailbox actor's listing when the job reads only what it has, otherwise with
/// one range read when the UIDs are dense enough for that to pay (a lookup per message
/// costs the store about twice as much as stepping through a range).
struct SliceRead {
    metas: SliceMetas,
    /// Taken out as the messages are asked for (each once, in order).
    fields: Vec<(Uid, Option<portico_store::SearchFields>)>,
    /// With [`Detail::KeptHeader`]: the kept header lines, taken out likewise.
    kept: Vec<(Uid, Option<Vec<u8>>)>,
}

enum SliceMetas {
    Listed(Listing),
    Read(Vec<MessageMeta>),
}

impl SliceRead {
    fn new(
        store: &Store,
        mailbox: MailboxId,
        job: &ScanJob,
        listing: Option<Listing>,
    ) -> Result<Option<Self>, StoreError> {
        let (Some(first), Some(last)) = (job.targets.first(), job.targets.last()) else {
            return Ok(None);
        };
        let span = u64::from(last.uid.saturating_sub(first.uid)) + 1;
        let dense = job.targets.len() >= 64 && span <= 2 * job.targets.len() as u64;
        let (first, last) = (Uid(first.uid), Uid(last.uid));
        let metas = match listing {
            Some(listing) if job.detail <= Detail::KeptHeader => SliceMetas::Listed(listing),
            _ if dense => SliceMetas::Read(store.messages_between(mailbox, first, last)?),
            _ => return Ok(None),
        };
        let fields = match job.detail {
            Detail::Fields if !dense => Vec::new(),
            Detail::Fields => store
                .search_fields_between(mailbox, first, last)?
                .into_iter()
                .map(|(uid, fields)| (uid, Some(fields)))
                .collect(),
            _ => Vec::new(),
        };
        let kept = match job.detail {
            Detail::KeptHeader if dense => store
                .kept_headers_between(mailbox, first, last)?
                .into_iter()
                .map(|(uid, lines)| (uid, Some(lines)))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Some(SliceRead {
            metas,
            fields,
            kept,
        }))
    }

    /// The message as `detail` asks, reading from the store what the range did not
    /// give (its header, its text); `None` when the slice has no metadata for it (the
    /// caller reads it itself).
    fn read(
        &mut self,
        store: &Store,
        mailbox: MailboxId,
        uid: u32,
        detail: Detail,
        stream_above: Option<u64>,
    ) -> Option<Result<Option<MessageData>, StoreError>> {
        if let Some(message) = self.message(uid, detail) {
            return Some(Ok(message));
        }
        let metas = match &self.metas {
            // Too few messages for one range read of their kept lines: each one's alone,
            // its metadata from the listing.
            SliceMetas::Listed(listing) if detail == Detail::KeptHeader => {
                let listed = listed_message(listing, uid)?;
                return match store.kept_header(mailbox, Uid(uid)) {
                    Ok(Some(lines)) => Some(Ok(Some(MessageData {
                        raw: Some(lines),
                        ..listed
                    }))),
                    // Stored before lines were kept: the caller reads its header.
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                };
            }
            SliceMetas::Listed(_) => return None,
            SliceMetas::Read(metas) => metas,
        };
        let at = metas.binary_search_by_key(&uid, |m| m.uid.0).ok()?;
        Some(present(message_data(
            store,
            mailbox,
            metas[at].clone(),
            detail,
            stream_above,
        )))
    }

    /// The message as `detail` asks: `Some(None)` when it is gone, `None` when the
    /// range did not read enough of it.
    fn message(&mut self, uid: u32, detail: Detail) -> Option<Option<MessageData>> {
        let found = match &self.metas {
            SliceMetas::Listed(listing) => listed_message(listing, uid),
            SliceMetas::Read(metas) => metas
                .binary_search_by_key(&uid, |m| m.uid.0)
                .ok()
                .map(|at| meta_data(&metas[at])),
        };
        let Some(message) = found else {
            return Some(None);
        };
        match detail {
            Detail::Meta => Some(Some(message)),
            Detail::Fields => Some(Some(MessageData {
                fields: Some(take_read(&mut self.fields, uid)?),
                ..message
            })),
            Detail::KeptHeader => Some(Some(MessageData {
                raw: Some(take_read(&mut self.kept, uid)?),
                ..message
            })),
            _ => None,
        }
    }
}

/// Message `uid`'s record of a range read, taken out (each is asked for once).
fn take_read<T>(records: &mut [(Uid, Option<T>)], uid: u32) -> Option<T> {
    let at = records.binary_search_by_key(&Uid(uid), |r| r.0).ok()?;
    records[at].1.take()
}

/// What one read of a streamed literal takes from the store: one checksummed block
/// (with the record's header and checksum table, still under the allocator's mapping
/// threshold, `LARGE_ALLOCATION` in `serve.rs`), so the buffer is reused rather than
/// mapped anew: a 256 KiB piece cost twice the bytes sent in fresh pages.
const STREAM_CHUNK: u64 = 64 * 1024;

/// A message as a scan needs it, or `None` if it is gone (expunged meanwhile).
fn read_message(
    store: &Store,
    mailbox: MailboxId,
    uid: Uid,
    detail: Detail,
    stream_above: Option<u64>,
) -> Result<Option<MessageData>, StoreError> {
    present(
        store
            .message(mailbox, uid)
            .and_then(|meta| message_data(store, mailbox, meta, detail, stream_above)),
    )
}

/// A read message, or `None` when it is gone (expunged meanwhile).
fn present(found: Result<MessageData, StoreError>) -> Result<Option<MessageData>, StoreError> {
    match found {
        Ok(data) => Ok(Some(data)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Looks a folder up by name for the signed-in account.
fn folder_by_name(
    store: &Store,
    account: &Account,
    name: &str,
) -> Result<portico_store::Mailbox, MailboxFault> {
    store
        .mailbox_by_name(account.id, name)?
        .ok_or(MailboxFault::Store(StoreError::NotFound))
}

/// The store as a CATENATE job reads it (RFC 4469): the signed-in account's folders
/// only, so a URL can never reach another user's mail.
struct AccountParts<'a> {
    store: &'a Store,
    account: &'a Account,
    /// Folders looked up so far (`None`: no such folder).
    found: Vec<(UrlMailbox, Option<portico_store::Mailbox>)>,
}

impl AccountParts<'_> {
    fn mailbox(
        &mut self,
        named: &UrlMailbox,
    ) -> Result<Option<&portico_store::Mailbox>, StoreError> {
        let at = match self.found.iter().position(|(m, _)| m == named) {
            Some(at) => at,
            None => {
                let found = match named {
                    UrlMailbox::Named(name) => {
                        match self.store.mailbox_by_name(self.account.id, name) {
                            // A name the store refuses names no folder.
                            Err(StoreError::InvalidName(_)) => None,
                            other => other?,
                        }
                    }
                    UrlMailbox::Selected(folder) => match self.store.mailbox(MailboxId(folder.0)) {
                        Ok(mailbox) if mailbox.account == self.account.id => Some(mailbox),
                        // Deleted under the session.
                        Ok(_) | Err(StoreError::NotFound) => None,
                        Err(e) => return Err(e),
                    },
                };
                self.found.push((named.clone(), found));
                self.found.len() - 1
            }
        };
        Ok(self.found[at].1.as_ref())
    }

    fn mailbox_id(&mut self, named: &UrlMailbox) -> Result<Option<MailboxId>, StoreError> {
        Ok(self.mailbox(named)?.map(|m| m.id))
    }
}

impl PartSource for AccountParts<'_> {
    type Error = StoreError;

    fn uidvalidity(&mut self, mailbox: &UrlMailbox) -> Result<Option<u32>, StoreError> {
        Ok(self.mailbox(mailbox)?.map(|m| m.uidvalidity.0))
    }

    fn summary(
        &mut self,
        mailbox: &UrlMailbox,
        uid: u32,
    ) -> Result<Option<portico_mime::MessageSummary>, StoreError> {
        let Some(id) = self.mailbox_id(mailbox)? else {
            return Ok(None);
        };
        // The message's record first: a summary alone does not make a message.
        match self.store.message(id, Uid(uid)) {
            Ok(_) => {}
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        }
        match self.store.message_summary(id, Uid(uid)) {
            Ok(summary) => Ok(Some(summary)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read(
        &mut self,
        mailbox: &UrlMailbox,
        uid: u32,
        start: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(id) = self.mailbox_id(mailbox)? else {
            return Ok(None);
        };
        match self.store.message_range(id, Uid(uid), start, len) {
            Ok(bytes) if bytes.len() as u64 == len => Ok(Some(bytes)),
            // The summary promised more than is stored.
            Ok(_) => Err(StoreError::Damaged(format!(
                "message UID {uid} in folder #{}",
                id.0
            ))),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Annotations one folder (or the server) may carry (RFC 5464 §4.1 asks for at least
/// 10); the session limits each value to 16 KiB.
const MAX_METADATA_ENTRIES: usize = 50;

/// The signed-in account's storage limit as the directory has it now (an administrator
/// may change it while the session runs). Blocking: a read of the local replica.
fn storage_limit(node: &NodeContext, account: &Account) -> Result<Option<u64>, MailboxFault> {
    match node.accounts.record(&account.address) {
        Ok(record) => Ok(record.and_then(|record| record.storage_limit())),
        Err(e) => {
            tracing::error!(error = %e, "the directory replica cannot be read");
            Err(MailboxFault::Unavailable)
        }
    }
}

/// The `[imap]` limits on an account's folders (`max_folders`, `max_folder_depth`).
#[derive(Clone, Copy, Debug)]
struct FolderLimits {
    max_folders: usize,
    max_depth: usize,
}

impl FolderLimits {
    fn of(node: &NodeContext) -> FolderLimits {
        FolderLimits {
            max_folders: node.config.imap.max_folders,
            max_depth: node.config.imap.max_folder_depth,
        }
    }
}

/// Refuses (`NO [LIMIT]`) a CREATE or RENAME to `name` that would pass the account's
/// folder limits: `levels_below` is how many levels the deepest folder moved along adds
/// below `name` (0 for CREATE), `extra` how many folders are made besides the missing
/// parents (1 for CREATE or a rename of INBOX, else 0). Checked before anything is
/// created, so a refused command leaves nothing behind; the store checks each creation
/// again under its lock.
fn check_folder_limits(
    store: &Store,
    account: &Account,
    name: &str,
    levels_below: usize,
    extra: usize,
    limits: FolderLimits,
) -> Result<(), StoreError> {
    let mut missing = extra;
    let mut depth = 1 + levels_below;
    for parent in portico_imap::names::parents(name) {
        depth += 1;
        if store.mailbox_by_name(account.id, parent)?.is_none() {
            missing += 1;
        }
    }
    store.check_folder_limits(
        account.id,
        missing,
        depth,
        limits.max_folders,
        limits.max_depth,
    )
}

/// Makes those of `parents` (the superior levels the session names) that are missing;
/// returns the names made.
fn create_parents(
    store: &Store,
    account: &Account,
    parents: &[String],
    limits: FolderLimits,
) -> Result<Vec<String>, StoreError> {
    let mut made = Vec::new();
    for parent in parents {
        if store.mailbox_by_name(account.id, parent)?.is_none() {
            match store.create_mailbox_limited(
                account.id,
                parent,
                None,
                limits.max_folders,
                limits.max_depth,
            ) {
                Ok(_) => made.push(parent.clone()),
                Err(StoreError::AlreadyExists) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(made)
}

/// Tells the account's NOTIFY listeners (all but `origin`) of folders made.
fn publish_created(
    events: &AccountEvents,
    store: &Store,
    account: &Account,
    origin: SessionId,
    names: &[String],
) {
    for name in names {
        let made = store.mailbox_by_name(account.id, name).ok().flatten();
        events.publish(
            account.id,
            Some(origin),
            AccountChange::Told(AccountEvent::Created {
                name: name.clone(),
                subscribed: store.is_subscribed(account.id, name).unwrap_or(false),
                special_use: made
                    .and_then(|m| m.special_use)
                    .map(|usage| usage.attribute().to_string()),
            }),
        );
    }
}

/// UIDs expunged from a folder after `since` (QRESYNC), or `None` when the store's
/// bounded history does not reach back that far.
fn vanished_since(
    store: &Store,
    mailbox: MailboxId,
    since: u64,
) -> Result<Option<Vec<u32>>, MailboxFault> {
    Ok(store
        .expunged_since(mailbox, portico_store::ModSeq(since))?
        .map(|uids| uids.into_iter().map(|(uid, _)| uid.0).collect()))
}

fn status_of(
    store: &Store,
    account: &Account,
    name: &str,
    recent: bool,
    deleted_storage: bool,
) -> Result<FolderStatus, MailboxFault> {
    let mailbox = folder_by_name(store, account, name)?;
    folder_status(store, &mailbox, recent, deleted_storage)
}

fn folder_status(
    store: &Store,
    mailbox: &Mailbox,
    recent: bool,
    deleted_storage: bool,
) -> Result<FolderStatus, MailboxFault> {
    let mut status = FolderStatus {
        messages: mailbox.messages,
        recent: 0,
        uidnext: mailbox.uidnext.0,
        uidvalidity: mailbox.uidvalidity.0,
        size: mailbox.size,
        highest_modseq: mailbox.highest_modseq.0,
        mailbox_id: mailbox.id.0,
        ..FolderStatus::default()
    };
    let counts = store.folder_counts(mailbox.id)?;
    status.unseen = counts.unseen;
    status.deleted = counts.deleted;
    if recent {
        status.recent = store.recent_count(mailbox.id)?;
    }
    if deleted_storage {
        status.deleted_storage = store.deleted_size(mailbox.id)?;
    }
    Ok(status)
}

/// RFC 9208 GETQUOTA / GETQUOTAROOT: the account's usage and its limit now, with
/// `folder` checked to exist.
fn quota_of(
    node: &NodeContext,
    account: &Account,
    folder: Option<&str>,
) -> Result<QuotaUsage, MailboxFault> {
    if let Some(name) = folder {
        folder_by_name(&node.store, account, name)?;
    }
    Ok(QuotaUsage {
        used: node.store.account_usage(account.id)?,
        limit: storage_limit(node, account)?,
    })
}

impl SessionActor for ImapConnection {
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
            Action::Compress { unread } => {
                tracing::debug!(parent: &self.flow.span, "COMPRESS DEFLATE on");
                self.flow.outbox.send(Outgoing::Compress(unread));
            }
            Action::Close => self.flow.outbox.send(Outgoing::Close),
            Action::Request(id, request) => self.execute(id, request, ctx),
            Action::Stream {
                folder,
                uid,
                start,
                len,
            } => self.stream(MailboxId(folder.0), Uid(uid), start, start + len, ctx),
        }
    }

    fn client_bytes(&mut self, bytes: &[u8]) {
        tracing::trace!(parent: &self.flow.span, bytes = bytes.len(), "client input");
        self.machine.handle(Input::Bytes(bytes));
    }

    fn tls_established(&mut self) {
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
        crate::metrics::count_commands(crate::metrics::Protocol::Imap, dispatched);
    }
}

impl ImapConnection {
    fn signed_in(&mut self, account: Account, slot: UserSlot, ctx: &mut Context<Self>) {
        self.flow.span.record("user", account.address.as_str());
        tracing::info!(parent: &self.flow.span, "signed in");
        self.eviction = Some(connection::end_when_evicted(&slot, ctx));
        self.account = Some(account);
        self.user_slot = Some(slot);
        self.flow
            .outbox
            .send(Outgoing::IdleTimeout(Duration::from_secs(
                self.node.config.imap.idle_timeout_secs,
            )));
    }

    /// UNAUTHENTICATE: the account and its place under the per-user limit go; the
    /// connection waits for a sign-in again, as long as a new one would.
    fn signed_out(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(parent: &self.flow.span, "signed out; the connection stays");
        self.stop_listening();
        if let Some(eviction) = self.eviction.take() {
            ctx.cancel_future(eviction);
        }
        self.account = None;
        self.user_slot = None;
        self.flow.span.record("user", "");
        self.flow
            .outbox
            .send(Outgoing::IdleTimeout(Duration::from_secs(
                self.node.config.imap.unauthenticated_timeout_secs,
            )));
    }

    /// The mailbox is on another node: refers the client there (`[imap]
    /// login_referrals`), or hands the session there, answering the LOGIN or
    /// AUTHENTICATE (request `id`) only if that fails.
    fn hand_to_home(&mut self, id: RequestId, record: AccountRecord, ctx: &mut Context<Self>) {
        if self.node.config.imap.login_referrals {
            match self.referral_to(record.home()) {
                Ok(endpoint) => {
                    tracing::info!(
                        parent: &self.flow.span,
                        home = %record.home(),
                        host = %endpoint.host,
                        port = endpoint.port,
                        "signed in; referred to the mailbox's node"
                    );
                    crate::metrics::count_login(
                        crate::metrics::Protocol::Imap,
                        crate::metrics::LoginResult::Referral,
                    );
                    let failure = LoginFailure::Referral {
                        host: endpoint.host,
                        port: endpoint.port,
                    };
                    return self.answer(id, Reply::Login(Err(failure)), ctx);
                }
                Err(why) => {
                    tracing::warn!(
                        parent: &self.flow.span,
                        home = %record.home(),
                        "login_referrals is on, but no referral can name the mailbox's node: {why}; proxying instead"
                    );
                }
            }
        }
        let (Some(proxy), Some(hand_off)) = (self.node.proxy.clone(), self.machine.hand_off())
        else {
            tracing::error!(parent: &self.flow.span, home = %record.home(), "cannot proxy this session");
            crate::metrics::count_login(
                crate::metrics::Protocol::Imap,
                crate::metrics::LoginResult::Unavailable,
            );
            return self.answer(id, Reply::Login(Err(LoginFailure::MailboxUnavailable)), ctx);
        };
        let request = OpenRequest {
            protocol: SessionProtocol::Imap,
            client: self.client,
            session: self.id,
            tls: self.machine.tls_active(),
            login: LoginHandOff::Imap {
                tag: hand_off.tag,
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
            move |actor, too_many, ctx| {
                let failure = if too_many {
                    LoginFailure::TooManyConnections
                } else {
                    LoginFailure::MailboxUnavailable
                };
                actor.answer(id, Reply::Login(Err(failure)), ctx);
            },
        );
    }

    /// Where a client that came in on this connection's kind of port reaches `home`'s
    /// IMAP listener, or why a referral cannot say.
    fn referral_to(&self, home: &str) -> Result<ClientEndpoint, String> {
        let implicit_tls = self
            .implicit_tls
            .ok_or("this session was handed over by another node, which the client reached")?;
        let node = self
            .node
            .config
            .find_node(home)
            .ok_or_else(|| format!("node {home:?} is not in this node's configuration"))?;
        let endpoint = node
            .imap_client_endpoint(implicit_tls)
            .map_err(|why| format!("node {home:?}: {why}"))?;
        // RFC 9051's generic response code ends at the first `]`, which an IPv6
        // literal's brackets would put inside the URL.
        if endpoint.host.contains(':') {
            return Err(format!(
                "node {home:?}'s address {} is IPv6, which a REFERRAL response code cannot carry; give the node a client_host",
                endpoint.host
            ));
        }
        Ok(endpoint)
    }

    /// RENAME (`from`), or RENAME INBOX (`from` None), as the session decided: the
    /// missing `parents` made, then the folder renamed with those below it, or INBOX's
    /// messages moved to a new folder through INBOX's actor.
    fn rename(
        &mut self,
        id: RequestId,
        from: Option<String>,
        to: String,
        parents: Vec<String>,
        ctx: &mut Context<Self>,
    ) {
        let node = self.node.clone();
        let session = self.id;
        let Some(account) = self.account.clone() else {
            return;
        };
        let limits = FolderLimits::of(&node);
        let registry = node.mailboxes.clone();
        let resolve = async move {
            let store = node.store.clone();
            let prepared = tokio::task::spawn_blocking(move || {
                let mailbox = folder_by_name(&store, &account, from.as_deref().unwrap_or(INBOX))?;
                validate_mailbox_name(&to)?;
                if store.mailbox_by_name(account.id, &to)?.is_some() {
                    return Err(StoreError::AlreadyExists.into());
                }
                // The children a rename moves count for the depth; INBOX's stay.
                let (levels_below, extra) = if from.is_none() {
                    (0, 1)
                } else {
                    let prefix = format!("{}{HIERARCHY_SEPARATOR}", mailbox.name);
                    let deepest = store
                        .mailboxes(account.id)?
                        .iter()
                        .filter_map(|f| f.name.strip_prefix(&prefix))
                        .map(|rest| rest.split(HIERARCHY_SEPARATOR).count())
                        .max()
                        .unwrap_or(0);
                    (deepest, 0)
                };
                check_folder_limits(&store, &account, &to, levels_below, extra, limits)?;
                let made = create_parents(&store, &account, &parents, limits)?;
                publish_created(&registry.accounts, &store, &account, session, &made);
                if from.is_some() {
                    // The folder and every folder below it, with their new names.
                    let prefix = format!("{}{HIERARCHY_SEPARATOR}", mailbox.name);
                    let moved: Vec<(String, String)> = store
                        .mailboxes(account.id)?
                        .into_iter()
                        .filter_map(|f| {
                            let rest = match f.name.strip_prefix(&prefix) {
                                Some(rest) => format!("{HIERARCHY_SEPARATOR}{rest}"),
                                None if f.name == mailbox.name => String::new(),
                                None => return None,
                            };
                            Some((f.name, format!("{to}{rest}")))
                        })
                        .collect();
                    store.rename_mailbox_limited(mailbox.id, &to, limits.max_depth)?;
                    for (from, to) in moved {
                        let subscribed = store.is_subscribed(account.id, &to).unwrap_or(false);
                        registry.accounts.publish(
                            account.id,
                            Some(session),
                            AccountChange::Told(AccountEvent::Renamed {
                                from,
                                to,
                                subscribed,
                            }),
                        );
                    }
                    return Ok(None);
                }
                // INBOX: its messages move to the new folder.
                let target = store.create_mailbox_limited(
                    account.id,
                    &to,
                    None,
                    limits.max_folders,
                    limits.max_depth,
                )?;
                publish_created(
                    &registry.accounts,
                    &store,
                    &account,
                    session,
                    std::slice::from_ref(&to),
                );
                let uids: Vec<Uid> = store.messages(mailbox.id)?.iter().map(|m| m.uid).collect();
                Ok::<_, MailboxFault>(Some((mailbox.id, target.id, uids)))
            })
            .await
            .map_err(|_| MailboxFault::Unavailable)??;
            if let Some((inbox, target, uids)) = prepared {
                // Through INBOX's actor, so every session watching INBOX
                // (this one included) hears of the EXPUNGEs.
                // A move within the account adds nothing: no limit to check.
                let moving = CopyMessages {
                    origin: None,
                    uids,
                    source: inbox,
                    moving: true,
                    storage_limit: None,
                };
                node.mailboxes.copy(moving, target).await?;
            }
            Ok(())
        };
        self.via_actor(id, ctx, resolve, Reply::Done)
    }

    fn answer(&mut self, id: RequestId, reply: Reply, ctx: &mut Context<Self>) {
        self.flow.awaiting = false;
        self.machine.handle(Input::Reply(id, reply));
        connection::drive_session(self, ctx);
    }

    /// Runs blocking store work for a request and feeds the reply back.
    fn blocking<T, F, M>(&mut self, id: RequestId, ctx: &mut Context<Self>, work: F, map: M)
    where
        T: Send + 'static,
        F: FnOnce(&Store, &Account) -> Result<T, MailboxFault> + Send + 'static,
        M: FnOnce(Result<T, Fault>) -> Reply + 'static,
    {
        let Some(account) = self.account.clone() else {
            let reply = map(Err(Fault::NotAllowed("not signed in".into())));
            ctx.run_later(Duration::ZERO, move |actor, ctx| {
                actor.answer(id, reply, ctx)
            });
            return;
        };
        self.flow.awaiting = true;
        let store = self.node.store.clone();
        let task = tokio::task::spawn_blocking(move || work(&store, &account));
        ctx.spawn(task.into_actor(self).map(move |result, actor, ctx| {
            let result = match result {
                Ok(inner) => inner.map_err(|e| fault(&actor.flow.span, e)),
                Err(_) => Err(fault(&actor.flow.span, MailboxFault::Unavailable)),
            };
            actor.answer(id, map(result), ctx);
        }));
    }

    /// Sends a message to a folder's mailbox actor and feeds the reply back.
    fn via_actor<T, M, F>(&mut self, id: RequestId, ctx: &mut Context<Self>, resolve: F, map: M)
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, MailboxFault>> + 'static,
        M: FnOnce(Result<T, Fault>) -> Reply + 'static,
    {
        self.flow.awaiting = true;
        ctx.spawn(resolve.into_actor(self).map(move |result, actor, ctx| {
            let result = result.map_err(|e| fault(&actor.flow.span, e));
            // Through the mailbox, behind what is queued there: a mailbox actor
            // announces a change (this session's APPEND's EXISTS, its EXPUNGE) before it
            // answers, so the announcement is handled, and written, before the tagged
            // completion. Handled here at once, the answer could overtake it.
            ctx.address().do_send(Answered {
                id,
                reply: map(result),
            });
        }));
    }

    /// Runs one slice of a FETCH or SEARCH on the blocking pool, once the client has
    /// read what came before and (for heavy work) a permit is free: the session's
    /// thread stays free for everyone else, and the output waits for the client, not
    /// in RAM.
    fn scan(&mut self, id: RequestId, mailbox: MailboxId, job: ScanJob, ctx: &mut Context<Self>) {
        let drained = self.flow.outbox.drained();
        let permits = self.node.heavy_work.clone();
        let store = self.node.store.clone();
        let mailboxes = self.node.mailboxes.clone();
        let work = async move {
            drained.await;
            // Flags alone: the mailbox actor's listing has them, current and in memory.
            let listing = match job.reads_only_listed() {
                true => mailboxes.send(mailbox, GetListing).await.ok().flatten(),
                false => None,
            };
            let permit = match job.heavy() {
                true => Some(
                    permits
                        .acquire_owned()
                        .await
                        .map_err(|_| MailboxFault::Unavailable)?,
                ),
                false => None,
            };
            let slice = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let stream_above = job.stream_above;
                let mut read = SliceRead::new(&store, mailbox, &job, listing)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                job.run(now, |uid, detail| {
                    let sliced = read
                        .as_mut()
                        .and_then(|r| r.read(&store, mailbox, uid, detail, stream_above));
                    match sliced {
                        Some(message) => message,
                        None => read_message(&store, mailbox, Uid(uid), detail, stream_above),
                    }
                })
            });
            Ok(slice.await.map_err(|_| MailboxFault::Unavailable)??)
        };
        self.via_actor(id, ctx, work, Reply::Scanned)
    }

    /// Builds CATENATE messages on the blocking pool, once a heavy-work permit is free:
    /// it may read many megabytes of stored parts.
    fn catenate(&mut self, id: RequestId, job: CatenateJob, ctx: &mut Context<Self>) {
        let Some(account) = self.account.clone() else {
            let reply = Reply::Catenated(Err(Fault::NotAllowed("not signed in".into())));
            ctx.run_later(Duration::ZERO, move |actor, ctx| {
                actor.answer(id, reply, ctx)
            });
            return;
        };
        let permits = self.node.heavy_work.clone();
        let store = self.node.store.clone();
        let work = async move {
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|_| MailboxFault::Unavailable)?;
            let built = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let mut parts = AccountParts {
                    store: &store,
                    account: &account,
                    found: Vec::new(),
                };
                job.run(&mut parts)
            });
            Ok(built.await.map_err(|_| MailboxFault::Unavailable)??)
        };
        self.via_actor(id, ctx, work, Reply::Catenated)
    }

    /// Writes `start..end` of a stored message, a chunk at a time, each read once the
    /// client has taken in what came before; the machine's next actions wait for the
    /// end. A message that cannot be read now (expunged and compacted, damaged) ends
    /// the connection: the literal announced cannot be finished.
    fn stream(
        &mut self,
        mailbox: MailboxId,
        uid: Uid,
        start: u64,
        end: u64,
        ctx: &mut Context<Self>,
    ) {
        if start >= end {
            return;
        }
        self.flow.awaiting = true;
        let len = (end - start).min(STREAM_CHUNK);
        let drained = self.flow.outbox.drained();
        let store = self.node.store.clone();
        let read = async move {
            drained.await;
            tokio::task::spawn_blocking(move || store.message_range(mailbox, uid, start, len)).await
        };
        ctx.spawn(read.into_actor(self).map(move |result, actor, ctx| {
            match result {
                Ok(Ok(bytes)) if bytes.len() as u64 == len => {
                    actor.flow.outbox.write(bytes);
                    if start + len < end {
                        actor.stream(mailbox, uid, start + len, end, ctx);
                    } else {
                        actor.flow.awaiting = false;
                        connection::drive_session(actor, ctx);
                    }
                }
                Ok(Ok(bytes)) => {
                    tracing::error!(parent: &actor.flow.span, uid = uid.0, got = bytes.len(), wanted = len, "message shorter than announced; closing");
                    actor.flow.outbox.send(Outgoing::Close);
                }
                Ok(Err(e)) => {
                    tracing::error!(parent: &actor.flow.span, uid = uid.0, error = %e, "message unreadable while streaming; closing");
                    actor.flow.outbox.send(Outgoing::Close);
                }
                Err(_) => actor.flow.outbox.send(Outgoing::Close),
            }
        }));
    }

    fn execute(&mut self, id: RequestId, request: Request, ctx: &mut Context<Self>) {
        let node = self.node.clone();
        let session = self.id;
        match request {
            Request::Login { username, password } => {
                self.flow.awaiting = true;
                let ip = self.client.ip();
                let login = async move {
                    node.sign_in(&username, &password.0, ip, Protocol::Imap)
                        .await
                };
                ctx.spawn(login.into_actor(self).map(move |result, actor, ctx| {
                    let reply = match result {
                        Ok(SignIn::Here(account, slot)) => {
                            actor.signed_in(account, slot, ctx);
                            Ok(())
                        }
                        Ok(SignIn::Elsewhere(record)) => {
                            return actor.hand_to_home(id, record, ctx);
                        }
                        Err(LoginError::BadCredentials) => {
                            tracing::info!(parent: &actor.flow.span, "failed sign-in");
                            Err(LoginFailure::BadCredentials)
                        }
                        Err(LoginError::ProtocolDisabled) => Err(LoginFailure::Disabled),
                        Err(LoginError::Unavailable | LoginError::Throttled) => {
                            Err(LoginFailure::Temporary)
                        }
                        Err(LoginError::TooManyConnections) => {
                            Err(LoginFailure::TooManyConnections)
                        }
                    };
                    actor.answer(id, Reply::Login(reply), ctx);
                }));
            }
            Request::ListFolders => self.blocking(
                id,
                ctx,
                |store, account| {
                    let folders = store
                        .mailboxes(account.id)?
                        .into_iter()
                        .map(|m| FolderInfo {
                            name: m.name,
                            special_use: m.special_use.map(SpecialUse::attribute),
                        })
                        .collect();
                    Ok(FolderList {
                        folders,
                        subscriptions: store.subscriptions(account.id)?,
                    })
                },
                Reply::Folders,
            ),
            Request::Status {
                folder,
                recent,
                deleted_storage,
            } => self.blocking(
                id,
                ctx,
                move |store, account| status_of(store, account, &folder, recent, deleted_storage),
                Reply::Status,
            ),
            Request::Notify { watch, statuses } => self.notify(id, watch, statuses, ctx),
            Request::Quota { folder } => {
                let node = self.node.clone();
                self.blocking(
                    id,
                    ctx,
                    move |_, account| quota_of(&node, account, folder.as_deref()),
                    Reply::Quota,
                )
            }
            Request::Select {
                folder,
                read_only,
                vanished_since,
            } => self.select(id, folder, read_only, vanished_since, ctx),
            Request::Vanished { folder, since } => self.blocking(
                id,
                ctx,
                move |store, _| vanished_since(store, MailboxId(folder.0), since),
                Reply::Vanished,
            ),
            Request::Deselect { .. } => {
                if let Some(mailbox) = self.selected.take() {
                    node.mailboxes
                        .notify(mailbox, UnsubscribeSession { session });
                }
            }
            Request::SignOut => self.signed_out(ctx),
            Request::Create {
                folder,
                special_use,
                parents,
            } => {
                // The session offers only the uses the store keeps.
                let usage = special_use.as_deref().and_then(SpecialUse::from_attribute);
                let limits = FolderLimits::of(&node);
                let registry = node.mailboxes.clone();
                self.blocking(
                    id,
                    ctx,
                    move |store, account| {
                        validate_mailbox_name(&folder)?;
                        if store.mailbox_by_name(account.id, &folder)?.is_some() {
                            return Err(StoreError::AlreadyExists.into());
                        }
                        check_folder_limits(store, account, &folder, 0, 1, limits)?;
                        let mut made_names = create_parents(store, account, &parents, limits)?;
                        let made = store.create_mailbox_limited(
                            account.id,
                            &folder,
                            usage,
                            limits.max_folders,
                            limits.max_depth,
                        )?;
                        made_names.push(folder);
                        publish_created(&registry.accounts, store, account, session, &made_names);
                        Ok(FolderId(made.id.0))
                    },
                    Reply::Created,
                )
            }
            Request::Delete { folder } => {
                let registry = node.mailboxes.clone();
                self.blocking(
                    id,
                    ctx,
                    move |store, account| {
                        let mailbox = folder_by_name(store, account, &folder)?;
                        store.delete_mailbox(mailbox.id)?;
                        registry.accounts.publish(
                            account.id,
                            Some(session),
                            AccountChange::Told(AccountEvent::Deleted { name: mailbox.name }),
                        );
                        Ok(())
                    },
                    Reply::Done,
                )
            }
            Request::Rename { from, to, parents } => self.rename(id, Some(from), to, parents, ctx),
            Request::RenameInbox { to, parents } => self.rename(id, None, to, parents, ctx),
            Request::GetMetadata { folder } => {
                // RFC 5464 §3.2.1.1: how to reach the administrator, read-only.
                let admin = format!("mailto:postmaster@{}", node.config.smtp.hostname);
                self.blocking(
                    id,
                    ctx,
                    move |store, account| {
                        if !folder.is_empty() {
                            folder_by_name(store, account, &folder)?;
                        }
                        let mut entries = store.metadata(account.id, &folder)?;
                        if folder.is_empty() {
                            entries.push(("/shared/admin".to_string(), admin.into_bytes()));
                            entries.sort();
                        }
                        Ok(entries)
                    },
                    Reply::Metadata,
                )
            }
            Request::SetMetadata { folder, changes } => {
                let registry = node.mailboxes.clone();
                self.blocking(
                    id,
                    ctx,
                    move |store, account| match store.set_metadata(
                        account.id,
                        &folder,
                        &changes,
                        MAX_METADATA_ENTRIES,
                    ) {
                        Err(StoreError::LimitExceeded(_)) => Ok(false),
                        other => {
                            other.map_err(MailboxFault::from)?;
                            registry.accounts.publish(
                                account.id,
                                Some(session),
                                AccountChange::Told(AccountEvent::Metadata {
                                    folder: (!folder.is_empty()).then(|| folder.clone()),
                                    entries: changes
                                        .iter()
                                        .map(|(entry, _)| entry.clone())
                                        .collect(),
                                }),
                            );
                            Ok(true)
                        }
                    },
                    |result| {
                        Reply::Done(result.and_then(|fits| match fits {
                            true => Ok(()),
                            // RFC 5464 §4.3.
                            false => Err(Fault::TooManyAnnotations),
                        }))
                    },
                )
            }
            // Any name can be subscribed, a folder or not (RFC 9051 §6.3.7 lets the
            // server check; Dovecot does not, and a subscription outlives its folder).
            Request::Subscribe { folder, subscribed } => {
                let limits = FolderLimits::of(&self.node);
                let registry = node.mailboxes.clone();
                self.blocking(
                    id,
                    ctx,
                    move |store, account| {
                        store.set_subscription(
                            account.id,
                            &folder,
                            subscribed,
                            limits.max_folders,
                        )?;
                        registry.accounts.publish(
                            account.id,
                            Some(session),
                            AccountChange::Told(AccountEvent::Subscription {
                                exists: store.mailbox_by_name(account.id, &folder)?.is_some(),
                                name: folder,
                                subscribed,
                            }),
                        );
                        Ok(())
                    },
                    Reply::Done,
                )
            }
            Request::Append { folder, messages } => {
                let Some(account) = self.account.clone() else {
                    return;
                };
                let mut appends: Vec<AppendMessage> = messages
                    .into_iter()
                    .map(|item| AppendMessage {
                        message: Bytes::from(item.message),
                        expected: Some(node.store.expect_append()),
                        options: AppendOptions {
                            flags: Flags::from_names(item.flags.iter().map(String::as_str)),
                            internal_date: item
                                .date
                                .map_or((now(), 0), |d| (d.timestamp, d.offset)),
                            origin: Some(session),
                            delivery_id: None,
                            storage_limit: None,
                        },
                    })
                    .collect();
                let resolve = async move {
                    let lookup = node.clone();
                    let size: u64 = appends.iter().map(|a| a.message.len() as u64).sum();
                    let (mailbox, storage_limit) = tokio::task::spawn_blocking(move || {
                        let mailbox = folder_by_name(&lookup.store, &account, &folder)?;
                        let limit = storage_limit(&lookup, &account)?;
                        // Plainly too big: refused before its body is written. The
                        // mailbox actor checks exactly as it links the message.
                        if let Some(limit) = limit {
                            lookup.store.check_room(account.id, size, limit)?;
                        }
                        Ok::<_, MailboxFault>((mailbox, limit))
                    })
                    .await
                    .map_err(|_| MailboxFault::Unavailable)??;
                    let appended = if appends.len() == 1 {
                        let mut append = appends.remove(0);
                        append.options.storage_limit = storage_limit;
                        vec![node.mailboxes.send(mailbox.id, append).await??]
                    } else {
                        // MULTIAPPEND is all or none: the whole was checked above, and
                        // the link (which refuses appends one by one) checks none of it
                        // again. Deliveries in that same instant may pass the limit a
                        // little.
                        let many = AppendMany { appends };
                        node.mailboxes.send(mailbox.id, many).await??
                    };
                    let uidvalidity = appended.first().map_or(0, |a| a.uidvalidity.0);
                    Ok((uidvalidity, appended.iter().map(|a| a.uid.0).collect()))
                };
                self.via_actor(id, ctx, resolve, Reply::Appended)
            }
            Request::Catenate { job } => self.catenate(id, job, ctx),
            Request::Scan { folder, job } => self.scan(id, MailboxId(folder.0), job, ctx),
            Request::TextIndex { folder, queries } => {
                let full_text = self.node.full_text.clone();
                let resolve = async move {
                    let Some(full_text) = full_text else {
                        return Ok(vec![None; queries.len()]);
                    };
                    tokio::task::spawn_blocking(move || {
                        full_text.candidates(MailboxId(folder.0), &queries)
                    })
                    .await
                    .map_err(|_| MailboxFault::Unavailable)
                };
                self.via_actor(id, ctx, resolve, |answers| {
                    Reply::TextIndex(answers.unwrap_or_default())
                })
            }
            Request::StoreFlags {
                folder,
                uids,
                mode,
                flags,
                unchanged_since,
            } => {
                let op = match mode {
                    StoreMode::Add => FlagOp::Add,
                    StoreMode::Remove => FlagOp::Remove,
                    StoreMode::Replace => FlagOp::Replace,
                };
                let msg = StoreFlags {
                    origin: Some(session),
                    uids: uids.into_iter().map(Uid).collect(),
                    op,
                    flags: Flags::from_names(flags.iter().map(String::as_str)),
                    unchanged_since: unchanged_since.map(portico_store::ModSeq),
                };
                let resolve = async move {
                    let outcome = node.mailboxes.send(MailboxId(folder.0), msg).await??;
                    Ok(FlagsStored {
                        current: outcome
                            .current
                            .into_iter()
                            .map(|(uid, flags, modseq)| (uid.0, flag_names(&flags), modseq.0))
                            .collect(),
                        modified: outcome.modified.into_iter().map(|uid| uid.0).collect(),
                    })
                };
                self.via_actor(id, ctx, resolve, Reply::FlagsStored)
            }
            Request::Expunge { folder, uids } => {
                let msg = ExpungeDeleted {
                    origin: Some(session),
                    uids: uids.map(|uids| uids.into_iter().map(Uid).collect()),
                };
                let resolve = async move {
                    let removed = node.mailboxes.send(MailboxId(folder.0), msg).await??;
                    Ok(removed.into_iter().map(|uid| uid.0).collect())
                };
                self.via_actor(id, ctx, resolve, Reply::Expunged)
            }
            Request::Copy {
                folder,
                uids,
                destination,
                moving,
            } => {
                let Some(account) = self.account.clone() else {
                    return;
                };
                let resolve = async move {
                    let lookup = node.clone();
                    let (target, storage_limit) = tokio::task::spawn_blocking(move || {
                        let target = folder_by_name(&lookup.store, &account, &destination)?;
                        // RFC 6851 MOVE within the account adds nothing to its usage.
                        let limit = match moving {
                            true => None,
                            false => storage_limit(&lookup, &account)?,
                        };
                        Ok::<_, MailboxFault>((target, limit))
                    })
                    .await
                    .map_err(|_| MailboxFault::Unavailable)??;
                    let msg = CopyMessages {
                        origin: Some(session),
                        uids: uids.into_iter().map(Uid).collect(),
                        source: MailboxId(folder.0),
                        moving,
                        storage_limit,
                    };
                    let copied = node.mailboxes.copy(msg, target.id).await?;
                    Ok(ImapCopied {
                        uidvalidity: copied.uidvalidity.0,
                        pairs: copied.pairs.into_iter().map(|(a, b)| (a.0, b.0)).collect(),
                    })
                };
                self.via_actor(id, ctx, resolve, Reply::Copied)
            }
        }
    }

    fn select(
        &mut self,
        id: RequestId,
        folder: String,
        read_only: bool,
        vanished_since_modseq: Option<u64>,
        ctx: &mut Context<Self>,
    ) {
        let Some(account) = self.account.clone() else {
            return;
        };
        let node = self.node.clone();
        let session = self.id;
        let recipient = ctx.address().recipient::<FolderChanged>();
        if let Some(previous) = self.selected.take() {
            node.mailboxes
                .notify(previous, UnsubscribeSession { session });
        }
        self.selecting = true;
        self.flow.awaiting = true;
        let resolve = async move {
            // Two sled lookups of hot keys: no hop to the blocking pool for them.
            let mailbox = folder_by_name(&node.store, &account, &folder)?;
            let snapshot = node
                .mailboxes
                .send(
                    mailbox.id,
                    SubscribeSession {
                        session,
                        recipient,
                        read_only,
                    },
                )
                .await??;
            if !read_only {
                // This session has taken \Recent up to here: kept before it answers, so a
                // restart does not hand the same messages out as recent again.
                let (store, id, uidnext) =
                    (node.store.clone(), mailbox.id, snapshot.mailbox.uidnext);
                tokio::task::spawn_blocking(move || store.advance_first_recent(id, uidnext))
                    .await
                    .map_err(|_| MailboxFault::Unavailable)??;
            }
            let vanished = match vanished_since_modseq {
                Some(since) => {
                    let store = node.store.clone();
                    let id = mailbox.id;
                    tokio::task::spawn_blocking(move || vanished_since(&store, id, since))
                        .await
                        .map_err(|_| MailboxFault::Unavailable)??
                }
                None => None,
            };
            Ok((snapshot, vanished))
        };
        ctx.spawn(resolve.into_actor(self).map(move |result, actor, ctx| {
            actor.selecting = false;
            let reply = match result {
                Ok((snapshot, vanished)) => {
                    actor.selected = Some(snapshot.mailbox.id);
                    let overview = &snapshot.overview;
                    // QRESYNC: the messages changed since the client's MODSEQ.
                    let changed = match vanished_since_modseq {
                        Some(since) => snapshot
                            .messages
                            .iter()
                            .filter(|m| m.modseq.0 > since)
                            .map(|m| ViewEntry {
                                uid: m.uid.0,
                                flags: flag_names(&m.flags),
                                modseq: m.modseq.0,
                            })
                            .collect(),
                        None => Vec::new(),
                    };
                    Ok(SelectedFolder {
                        id: FolderId(snapshot.mailbox.id.0),
                        uidvalidity: snapshot.mailbox.uidvalidity.0,
                        uidnext: snapshot.mailbox.uidnext.0,
                        highest_modseq: snapshot.mailbox.highest_modseq.0,
                        uids: overview.uids.clone(),
                        first_unseen: overview.first_unseen,
                        changed,
                        recent: snapshot.recent.into_iter().map(|uid| uid.0).collect(),
                        keywords: overview.keywords.clone(),
                        vanished,
                    })
                }
                Err(e) => Err(fault(&actor.flow.span, e)),
            };
            actor.answer(id, Reply::Selected(reply), ctx);
        }));
    }
}

connection::session_handlers!(ImapConnection);

/// How long a STATUS owed to a NOTIFY session waits for more changes to the same
/// folders: a burst of deliveries is told once.
const STATUS_BATCH: Duration = Duration::from_millis(30);

impl ImapConnection {
    /// NOTIFY SET or NONE: starts or stops hearing of the account's changes, and with
    /// `statuses` reads every folder's STATUS.
    fn notify(&mut self, id: RequestId, watch: bool, statuses: bool, ctx: &mut Context<Self>) {
        match (watch, &self.account) {
            (true, Some(account)) => {
                let owed = self.node.mailboxes.accounts.listen(
                    account.id,
                    self.id,
                    ctx.address().recipient(),
                );
                owed.lock().unwrap_or_else(PoisonError::into_inner).clear();
                self.owed_status = Some(owed);
                self.listening = true;
            }
            _ => self.stop_listening(),
        }
        if !statuses {
            // NOTIFY NONE is answered by nobody (request 0).
            if id != 0 {
                self.flow.awaiting = true;
                ctx.run_later(Duration::ZERO, move |actor, ctx| {
                    actor.answer(id, Reply::Watched(Ok(Vec::new())), ctx)
                });
            }
            return;
        }
        self.blocking(
            id,
            ctx,
            |store, account| {
                store
                    .mailboxes(account.id)?
                    .iter()
                    .map(|mailbox| watched(store, account, mailbox))
                    .collect()
            },
            Reply::Watched,
        );
    }

    fn stop_listening(&mut self) {
        if self.listening
            && let Some(account) = &self.account
        {
            self.node.mailboxes.accounts.stop(account.id, self.id);
        }
        self.listening = false;
        self.owed_status = None;
    }

    /// Reads the owed STATUSes and hands them to the session machine.
    fn tell_owed_status(&mut self, ctx: &mut Context<Self>) {
        let Some(owed) = &self.owed_status else {
            return;
        };
        let mut owed = std::mem::take(&mut *owed.lock().unwrap_or_else(PoisonError::into_inner));
        // The selected folder's changes come from its mailbox actor.
        if let Some(selected) = self.selected {
            owed.remove(&selected);
        }
        let Some(account) = self.account.clone() else {
            return;
        };
        let store = self.node.store.clone();
        let read = tokio::task::spawn_blocking(move || {
            owed.into_iter()
                .filter_map(|(id, messages)| {
                    // A folder deleted meanwhile, or another account's, is left out.
                    let mailbox = store.mailbox(id).ok()?;
                    (mailbox.account == account.id).then_some(())?;
                    Some((watched(&store, &account, &mailbox).ok()?, messages))
                })
                .collect::<Vec<_>>()
        });
        ctx.spawn(read.into_actor(self).map(|read, actor, ctx| {
            let Ok(statuses) = read else {
                return;
            };
            if !actor.listening {
                return;
            }
            for (watched, messages) in statuses {
                actor
                    .machine
                    .handle(Input::Account(AccountEvent::Status { watched, messages }));
            }
            connection::drive_session(actor, ctx);
        }));
    }
}

/// A folder as NOTIFY reports it: its name, whether it is subscribed, its STATUS.
fn watched(
    store: &Store,
    account: &Account,
    mailbox: &Mailbox,
) -> Result<WatchedFolder, MailboxFault> {
    Ok(WatchedFolder {
        folder: FolderId(mailbox.id.0),
        name: mailbox.name.clone(),
        subscribed: store.is_subscribed(account.id, &mailbox.name)?,
        status: folder_status(store, mailbox, false, false)?,
    })
}

impl Handler<AccountChanged> for ImapConnection {
    type Result = ();

    fn handle(&mut self, msg: AccountChanged, ctx: &mut Self::Context) {
        if !self.listening || msg.origin == Some(self.id) {
            return;
        }
        let event = match msg.change {
            AccountChange::StatusOwed => {
                ctx.run_later(STATUS_BATCH, |actor, ctx| actor.tell_owed_status(ctx));
                return;
            }
            // Only published, never sent.
            AccountChange::Messages { .. } => return,
            AccountChange::Told(AccountEvent::Overflow) => {
                tracing::warn!(parent: &self.flow.span, "NOTIFY session fell behind its account's changes");
                self.stop_listening();
                AccountEvent::Overflow
            }
            AccountChange::Told(event) => event,
        };
        self.machine.handle(Input::Account(event));
        connection::drive_session(self, ctx);
    }
}

/// A request's answer, handed to the session in the order of the actor's mailbox (see
/// [`ImapConnection::via_actor`]).
struct Answered {
    id: RequestId,
    reply: Reply,
}

impl Message for Answered {
    type Result = ();
}

impl Handler<Answered> for ImapConnection {
    type Result = ();

    fn handle(&mut self, msg: Answered, ctx: &mut Self::Context) {
        self.answer(msg.id, msg.reply, ctx);
    }
}

impl Handler<FolderChanged> for ImapConnection {
    type Result = ();

    fn handle(&mut self, msg: FolderChanged, ctx: &mut Self::Context) {
        if !self.selecting && Some(msg.mailbox) != self.selected {
            return;
        }
        let folder = FolderId(msg.mailbox.0);
        let own = msg.origin == Some(self.id);
        match msg.change {
            FolderChange::Appended { messages, recent } => {
                for (uid, flags, modseq) in messages.iter() {
                    self.machine.handle(Input::Event(FolderEvent::Appended {
                        folder,
                        uid: uid.0,
                        flags: flag_names(flags),
                        modseq: modseq.0,
                        recent,
                    }));
                }
            }
            // This session reports its own flag changes in its responses. Its own
            // expunges come through (the view skips what it reported already): their
            // MODSEQ is the folder's newest.
            FolderChange::FlagsChanged { .. } if own => return,
            FolderChange::FlagsChanged { changes } => {
                for change in changes.iter() {
                    self.machine.handle(Input::Event(FolderEvent::FlagsChanged {
                        folder,
                        uid: change.uid.0,
                        flags: flag_names(&change.flags),
                        modseq: change.modseq.0,
                    }));
                }
            }
            FolderChange::Expunged { uids, modseq } => {
                self.machine.handle(Input::Event(FolderEvent::Expunged {
                    folder,
                    uids: uids.iter().map(|uid| uid.0).collect(),
                    modseq: modseq.0,
                }));
            }
            FolderChange::Overflow => {
                tracing::warn!(parent: &self.flow.span, "session fell behind its folder's changes");
                self.machine.handle(Input::LostTrack);
                self.selected = None;
            }
        }
        connection::drive_session(self, ctx);
    }
}

fn protocol_settings(node: &NodeContext) -> ProtocolSettings {
    ProtocolSettings {
        name: "imap",
        counted_as: crate::metrics::Protocol::Imap,
        unauthenticated_timeout: Duration::from_secs(node.config.imap.unauthenticated_timeout_secs),
        timeout_message: b"* BYE Autologout; idle for too long\r\n",
        sign_in_required: true,
    }
}

fn machine_config(node: &NodeContext) -> ImapConfig {
    let settings = &node.config.imap;
    ImapConfig {
        plaintext_login_without_tls: settings.login == LoginType::Plaintext,
        tls_available: true,
        max_line: settings.max_line_length,
        append_limit: settings.append_limit,
        max_command: settings.max_command_size,
        max_bad_commands: settings.max_bad_commands,
        search_work_limit: settings.max_search_work_mb.saturating_mul(1024 * 1024),
        text_index: node.full_text.is_some(),
        literal_plus: settings.literal_plus,
        version: env!("CARGO_PKG_VERSION").to_string(),
        special_uses: SpecialUse::ALL
            .iter()
            .map(|usage| usage.attribute().to_string())
            .collect(),
    }
}

impl ImapConnection {
    fn new(node: Arc<NodeContext>, machine: Session, new: connection::NewSession) -> Self {
        ImapConnection {
            id: new.id,
            node,
            machine,
            flow: Flow::new(new.outbox, new.span),
            client: new.client,
            account: None,
            selected: None,
            selecting: false,
            user_slot: None,
            eviction: None,
            listening: false,
            owed_status: None,
            handed_login: None,
            implicit_tls: None,
        }
    }
}

/// Serves one IMAP connection (plain with STARTTLS, or implicit TLS) until it ends.
pub async fn serve(node: Arc<NodeContext>, tcp: TcpStream, peer: SocketAddr, implicit_tls: bool) {
    let protocol = protocol_settings(&node);
    let config = machine_config(&node);
    let session_node = node.clone();
    connection::serve(node, tcp, peer, implicit_tls, protocol, move |new| {
        let machine = Session::new(config, new.tls);
        let mut actor = ImapConnection::new(session_node, machine, new);
        actor.implicit_tls = Some(implicit_tls);
        actor
    })
    .await;
}

/// Serves an IMAP session another node signed in and handed over.
pub async fn serve_handed_over(
    node: Arc<NodeContext>,
    mut handed: HandedOver,
    account: Account,
    slot: UserSlot,
) {
    let LoginHandOff::Imap { tag, bad_commands } = handed.open.login.clone() else {
        tracing::error!("an IMAP session handed over with another protocol's sign-in");
        return;
    };
    let hand_off = HandOff {
        tag,
        bad_commands,
        unread: std::mem::take(&mut handed.open.pending),
    };
    let protocol = protocol_settings(&node);
    let config = machine_config(&node);
    let session_node = node.clone();
    connection::serve_handed_over(node, handed, protocol, move |new| {
        let (machine, login) =
            Session::resume_signed_in(config, new.tls, &account.address, hand_off);
        let mut actor = ImapConnection::new(session_node, machine, new);
        actor.account = Some(account);
        actor.user_slot = Some(slot);
        actor.handed_login = Some(login);
        actor
    })
    .await;
}
