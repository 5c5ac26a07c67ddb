//! `user move`: a mailbox goes from one backend to another with everything a client
//! holds of it (folders, UIDVALIDITY, UIDs, flags, dates, bytes), and nothing is lost
//! or served twice on the way.
//!
//! The old home runs the move (a node asked elsewhere forwards it there):
//! 1. it closes the mailbox ([`crate::gate`]): new sessions and deliveries are refused
//!    for a moment (deliveries are queued and retried), the sessions using it are told
//!    to end, and the move waits for the last one;
//! 2. it streams the mailbox to the new home on a link of its own
//!    ([`ImportPiece`]s), subscriptions and annotations after the folders; the new home stores it under the old numbers and makes it
//!    durable before it answers the last piece, but serves none of it yet;
//! 3. it switches the directory with a [`DirectoryChange::Move`] made for the home and
//!    move epoch it copied from (a change made meanwhile makes it fail, not undo that
//!    change), and waits until its own replica names the new home;
//! 4. it answers, then deletes its copy and opens the gate, behind which its replica
//!    now sends everyone to the new home.
//!
//! A move that fails before the switch leaves the mailbox where it was and open again;
//! the new home drops what it received when the link ends without `Finish`, and any
//! earlier copy when the next import begins.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_directory::{ChangeOutcome, DirectoryChange};
use portico_internode::{
    Answer, Call, ImportPiece, ImportedAnnotation, ImportedFolder, ImportedMessage, Link,
    LinkError, MoveReport, MoveRequest,
};
use portico_store::{
    Account, AccountId, CommitTicket, Flags, FolderImport, MailboxId, MessageImport, ModSeq,
    SpecialUse, Store, StoreError, Uid, Uidvalidity,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::accounts::NO_PASSWORD;
use crate::cluster::ClusterNode;
use crate::node::NodeContext;
use crate::proxy::Proxy;

/// How long a move waits for the mailbox's sessions and deliveries to finish.
const CLOSE_PATIENCE: Duration = Duration::from_secs(30);
/// A piece of the mailbox carries up to this many bytes of messages…
const PIECE_BYTES: usize = 8 * 1024 * 1024;
/// …or this many messages.
const PIECE_MESSAGES: usize = 1000;
/// How long the new home may take to store one piece.
const PIECE_DEADLINE: Duration = Duration::from_secs(300);
/// How long a node asked to move a mailbox homed elsewhere waits for the home to do it.
const FORWARDED_DEADLINE: Duration = Duration::from_secs(6 * 3600);
/// How long the old home waits for its replica to name the new home.
const SWITCH_PATIENCE: Duration = Duration::from_secs(60);

fn store_error(e: impl std::fmt::Display) -> String {
    format!("store: {e}")
}

/// Moves the mailbox of `address`, homed on this node, to `to`.
pub async fn move_here(
    node: &Arc<NodeContext>,
    cluster: &ClusterNode,
    address: &str,
    to: &str,
) -> Result<MoveReport, String> {
    let me = node.node_name.as_str();
    let record = node
        .accounts
        .known_record(address)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no such user: {address}"))?;
    if record.home() == to {
        return Err(format!("the mailbox of {address} is on {to} already"));
    }
    if record.home() != me {
        return Err(format!(
            "the mailbox of {address} is on {}, not on {me}",
            record.home()
        ));
    }
    let proxy = node
        .proxy
        .clone()
        .ok_or_else(|| format!("{me} cannot reach other nodes"))?;
    let address = record.address().to_string();
    let move_epoch = record.fields().move_epoch;
    let started = Instant::now();
    let closed = node
        .accounts
        .gate()
        .close(&address, CLOSE_PATIENCE)
        .await
        .map_err(|e| format!("the mailbox of {address} stays on {me}: {e}"))?;
    tracing::info!(user = %address, %to, "mailbox closed for a move");
    let report = copy_to(node, &proxy, &address, record.fields().created, to)
        .await
        .map_err(|e| format!("the mailbox of {address} stays on {me}: {e}"))?;
    let change = DirectoryChange::Move {
        address: address.clone(),
        from: me.to_string(),
        move_epoch,
        to: to.to_string(),
    };
    let switched = match cluster.write(change).await {
        Ok(ChangeOutcome::Applied) => Ok(()),
        Ok(ChangeOutcome::Stale) => Err(format!(
            "the account of {address} changed during the move; it stays on {me}"
        )),
        Ok(other) => Err(format!("the directory refused the move: {other:?}")),
        Err(e) => Err(e),
    };
    let applied = moved_in_replica(node, &address, to, move_epoch).await;
    if let Err(why) = switched {
        if !applied {
            return Err(format!("the mailbox of {address} stays on {me}: {why}"));
        }
        tracing::warn!(user = %address, error = %why, "the switch was reported failed but the directory took it");
    }
    // The new home serves the mailbox now. The old copy goes in the background (a
    // big mailbox takes a while), behind the closed gate; if this node's replica has
    // not taken the switch yet, it must not serve or make the mailbox again before it
    // does, so the gate stays closed until then.
    let (node, address_now, to_now) = (node.clone(), address.clone(), to.to_string());
    tokio::spawn(async move {
        if !applied {
            while !moved_in_replica(&node, &address_now, &to_now, move_epoch).await {}
        }
        remove_old_copy(&node, &address_now).await;
        drop(closed);
    });
    tracing::info!(
        user = %address, %to, folders = report.folders, messages = report.messages,
        bytes = report.bytes, millis = started.elapsed().as_millis() as u64, "mailbox moved"
    );
    Ok(report)
}

/// Whether this node's replica names `to` the home of `address` past `move_epoch`,
/// waiting up to [`SWITCH_PATIENCE`] for it.
async fn moved_in_replica(node: &NodeContext, address: &str, to: &str, move_epoch: u64) -> bool {
    let deadline = Instant::now() + SWITCH_PATIENCE;
    loop {
        if let Ok(Some(record)) = node.accounts.record(address)
            && record.home() == to
            && record.fields().move_epoch > move_epoch
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn remove_old_copy(node: &Arc<NodeContext>, address: &str) {
    let (store, lookup) = (node.store.clone(), address.to_string());
    let removed = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        if let Some(account) = store.account_by_address(&lookup)? {
            store.delete_account(account.id)?;
        }
        Ok(())
    })
    .await;
    match removed {
        Ok(Ok(())) => tracing::info!(user = %address, "mailbox moved away; old copy removed"),
        Ok(Err(e)) => {
            tracing::error!(user = %address, error = %e, "mailbox moved away; the old copy could not be removed")
        }
        Err(e) => {
            tracing::error!(user = %address, error = %e, "removing a moved mailbox's old copy")
        }
    }
}

/// Sends the closed mailbox of `address` to `to`; returns once `to` has it durably.
async fn copy_to(
    node: &Arc<NodeContext>,
    proxy: &Proxy,
    address: &str,
    created: i64,
    to: &str,
) -> Result<MoveReport, String> {
    let mut link = proxy.dial(to).await.map_err(|e| e.to_string())?;
    let begin = ImportPiece::Begin {
        address: address.to_string(),
        created,
    };
    send_piece(&mut link, to, begin).await?;
    let store = node.store.clone();
    let lookup = address.to_string();
    let folders = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        let account = store.account_by_address(&lookup)?;
        match account {
            Some(account) => store
                .mailboxes(account.id)?
                .into_iter()
                .map(|folder| Ok((store.folder_import(&folder)?, folder)))
                .collect(),
            None => Ok(Vec::new()),
        }
    })
    .await
    .map_err(store_error)?
    .map_err(store_error)?;
    let mut report = MoveReport {
        from: node.node_name.clone(),
        to: to.to_string(),
        folders: 0,
        messages: 0,
        bytes: 0,
    };
    for (sent, folder) in folders {
        send_piece(&mut link, to, ImportPiece::Folder(folder_piece(&sent))).await?;
        report.folders += 1;
        let store = node.store.clone();
        let metas = tokio::task::spawn_blocking(move || store.messages(folder.id))
            .await
            .map_err(store_error)?
            .map_err(store_error)?;
        let mut metas = metas.into_iter().peekable();
        while let Some(first) = metas.peek() {
            if first.size as usize > PIECE_BYTES {
                let Some(meta) = metas.next() else { break };
                let store = node.store.clone();
                let id = folder.id;
                let read = tokio::task::spawn_blocking(move || {
                    store.bytes_of(id, &meta).map(|bytes| (meta, bytes))
                });
                let (meta, mut bytes) = read.await.map_err(store_error)?.map_err(store_error)?;
                report.messages += 1;
                report.bytes += bytes.len() as u64;
                // All but the last piece's worth goes ahead as heads.
                let tail = bytes.split_off(bytes.len().saturating_sub(PIECE_BYTES));
                for head in bytes.chunks(PIECE_BYTES) {
                    send_piece(&mut link, to, ImportPiece::Head(head.to_vec())).await?;
                }
                let last = message_piece(&meta, tail);
                send_piece(&mut link, to, ImportPiece::Messages(vec![last])).await?;
                continue;
            }
            let store = node.store.clone();
            let mut batch: Vec<_> = Vec::new();
            let mut size = 0usize;
            while let Some(meta) = metas.peek() {
                if !batch.is_empty()
                    && (batch.len() >= PIECE_MESSAGES
                        || size + meta.size as usize > PIECE_BYTES
                        || meta.size as usize > PIECE_BYTES)
                {
                    break;
                }
                size += meta.size as usize;
                batch.extend(metas.next());
            }
            let id = folder.id;
            let messages = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
                batch
                    .iter()
                    .map(|meta| Ok(message_piece(meta, store.bytes_of(id, meta)?)))
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await
            .map_err(store_error)?
            .map_err(store_error)?;
            report.messages += messages.len() as u64;
            report.bytes += messages.iter().map(|m| m.bytes.len() as u64).sum::<u64>();
            send_piece(&mut link, to, ImportPiece::Messages(messages)).await?;
        }
    }
    send_extras(node, &mut link, address, to).await?;
    let finish = ImportPiece::Finish {
        folders: report.folders,
        messages: report.messages,
        bytes: report.bytes,
    };
    send_piece(&mut link, to, finish).await?;
    Ok(report)
}

/// Sends the account's subscriptions and annotations ([`ImportPiece::Extras`]), in
/// pieces of at most about [`PIECE_BYTES`].
async fn send_extras<S: AsyncRead + AsyncWrite + Unpin>(
    node: &Arc<NodeContext>,
    link: &mut Link<S>,
    address: &str,
    to: &str,
) -> Result<(), String> {
    let store = node.store.clone();
    let lookup = address.to_string();
    let (subscriptions, annotations) = tokio::task::spawn_blocking(move || {
        let Some(account) = store.account_by_address(&lookup)? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut annotations = Vec::new();
        let names = std::iter::once(String::new())
            .chain(store.mailboxes(account.id)?.into_iter().map(|f| f.name));
        for folder in names {
            for (entry, value) in store.metadata(account.id, &folder)? {
                annotations.push(ImportedAnnotation {
                    folder: folder.clone(),
                    entry,
                    value,
                });
            }
        }
        Ok::<_, StoreError>((store.subscriptions(account.id)?, annotations))
    })
    .await
    .map_err(store_error)?
    .map_err(store_error)?;
    for piece in extras_pieces(subscriptions, annotations) {
        send_piece(link, to, piece).await?;
    }
    Ok(())
}

/// Subscriptions and annotations cut into [`ImportPiece::Extras`] of about
/// [`PIECE_BYTES`] at most (an annotation is never split); none when there are none.
fn extras_pieces(
    subscriptions: Vec<String>,
    annotations: Vec<ImportedAnnotation>,
) -> Vec<ImportPiece> {
    let mut pieces = Vec::new();
    let mut size: usize = subscriptions.iter().map(String::len).sum();
    let mut current = (subscriptions, Vec::new());
    for annotation in annotations {
        let len = annotation.folder.len() + annotation.entry.len() + annotation.value.len();
        if size + len > PIECE_BYTES && !(current.0.is_empty() && current.1.is_empty()) {
            let (subscriptions, annotations) = std::mem::take(&mut current);
            pieces.push(ImportPiece::Extras {
                subscriptions,
                annotations,
            });
            size = 0;
        }
        size += len;
        current.1.push(annotation);
    }
    if !(current.0.is_empty() && current.1.is_empty()) {
        let (subscriptions, annotations) = current;
        pieces.push(ImportPiece::Extras {
            subscriptions,
            annotations,
        });
    }
    pieces
}

async fn send_piece<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Link<S>,
    to: &str,
    piece: ImportPiece,
) -> Result<(), String> {
    match link.call_within(Call::Import(piece), PIECE_DEADLINE).await {
        Ok(Answer::Imported(Ok(()))) => Ok(()),
        Ok(Answer::Imported(Err(why))) => Err(format!("{to} did not take it: {why}")),
        Ok(other) => Err(format!("{to} answered {other:?}")),
        Err(e) => Err(format!("{to}: {e}")),
    }
}

fn folder_piece(folder: &FolderImport) -> ImportedFolder {
    ImportedFolder {
        name: folder.name.clone(),
        uidvalidity: folder.uidvalidity.0,
        uidnext: folder.uidnext.0,
        highest_modseq: folder.highest_modseq.0,
        special_use: folder.special_use.map(|s| s.attribute().to_string()),
        subscribed: folder.subscribed,
    }
}

fn message_piece(meta: &portico_store::MessageMeta, bytes: Vec<u8>) -> ImportedMessage {
    let kept = MessageImport::of(meta);
    ImportedMessage {
        uid: kept.uid.0,
        flags: kept.flags.names().map(str::to_string).collect(),
        internal_date: kept.internal_date.0,
        internal_date_offset: kept.internal_date.1,
        modseq: kept.modseq.0,
        save_date: kept.save_date,
        bytes,
    }
}

/// Asks `home`, which holds the mailbox, to move it (a `user move` issued here).
pub async fn ask_home(
    proxy: &Proxy,
    home: &str,
    request: MoveRequest,
) -> Result<MoveReport, String> {
    let mut link = proxy.dial(home).await.map_err(|e| e.to_string())?;
    match link
        .call_within(Call::MoveMailbox(request), FORWARDED_DEADLINE)
        .await
    {
        Ok(Answer::Moved(answer)) => answer,
        Ok(other) => Err(format!("{home} answered {other:?}")),
        Err(e) => Err(format!("{home}: {e}")),
    }
}

/// The new home's side: takes the pieces that follow `Begin` on `link` until `Finish`
/// (answering each), or drops what it received when the link ends or a piece fails.
pub async fn serve_import<S: AsyncRead + AsyncWrite + Unpin>(
    node: &Arc<NodeContext>,
    link: &mut Link<S>,
    address: String,
    created: i64,
) -> Result<(), LinkError> {
    let began = begin_import(node, &address, created).await;
    let account = match began {
        Ok(account) => account,
        Err(why) => {
            tracing::warn!(user = %address, from = %link.peer(), error = %why, "mailbox import refused");
            return link.answer(Answer::Imported(Err(why))).await;
        }
    };
    tracing::info!(user = %address, from = %link.peer(), "mailbox import begun");
    let mut import = Import {
        node: node.clone(),
        account: account.id,
        folder: None,
        folders: 0,
        messages: 0,
        bytes: 0,
        last: None,
        head: Vec::new(),
        finished: false,
    };
    link.answer(Answer::Imported(Ok(()))).await?;
    while let Some(call) = link.next_call().await? {
        let (answer, done) = match call {
            Call::Import(ImportPiece::Folder(folder)) => (import.folder(folder).await, false),
            Call::Import(ImportPiece::Messages(messages)) => {
                (import.messages(messages).await, false)
            }
            Call::Import(ImportPiece::Head(bytes)) => (import.head(bytes), false),
            Call::Import(ImportPiece::Extras {
                subscriptions,
                annotations,
            }) => (import.extras(subscriptions, annotations).await, false),
            Call::Import(ImportPiece::Finish {
                folders,
                messages,
                bytes,
            }) => (import.finish(folders, messages, bytes).await, true),
            other => (
                Err(format!("{} is not part of an import", call_name(&other))),
                true,
            ),
        };
        let failed = answer.is_err();
        if let Err(why) = &answer {
            tracing::warn!(user = %address, error = %why, "mailbox import failed");
        }
        link.answer(Answer::Imported(answer)).await?;
        if failed || done {
            break;
        }
    }
    if import.finished {
        tracing::info!(
            user = %address, folders = import.folders, messages = import.messages,
            bytes = import.bytes, "mailbox imported; served once the directory names this node"
        );
    }
    Ok(())
}

fn call_name(call: &Call) -> &'static str {
    match call {
        Call::Raft(_) => "a Raft call",
        Call::DirectoryWrite(_) => "a directory change",
        Call::Health => "a health check",
        Call::Open(_) => "a session",
        Call::Deliver(_) => "a delivery",
        Call::Usage { .. } => "a usage question",
        Call::MoveMailbox(_) => "a move",
        Call::Import(_) => "a second Begin",
        Call::Reload => "a reload",
    }
}

/// Makes an empty account for an incoming mailbox, replacing any earlier copy here:
/// refused when this node's replica says the mailbox is here already.
async fn begin_import(
    node: &Arc<NodeContext>,
    address: &str,
    created: i64,
) -> Result<Account, String> {
    let record = node
        .accounts
        .known_record(address)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no such user: {address}"))?;
    if record.home() == node.node_name {
        return Err(format!(
            "the mailbox of {address} is on {} already",
            node.node_name
        ));
    }
    let (store, address) = (node.store.clone(), record.address().to_string());
    tokio::task::spawn_blocking(move || -> Result<Account, StoreError> {
        if let Some(earlier) = store.account_by_address(&address)? {
            store.delete_account(earlier.id)?;
            tracing::info!(user = %address, "earlier copy of an incoming mailbox removed");
        }
        store.import_account(&address, NO_PASSWORD, created)
    })
    .await
    .map_err(store_error)?
    .map_err(store_error)
}

/// Annotations to set on one folder, as [`Store::set_metadata`] takes them.
type AnnotationChanges = Vec<(String, Option<Vec<u8>>)>;

/// An import in progress on the new home. Dropped unfinished, it removes what it made.
struct Import {
    node: Arc<NodeContext>,
    account: AccountId,
    /// The folder messages go to now.
    folder: Option<MailboxId>,
    folders: u32,
    messages: u64,
    bytes: u64,
    /// The newest change, waited for at `Finish`.
    last: Option<CommitTicket>,
    /// The first bytes of the next message, sent ahead ([`ImportPiece::Head`]).
    head: Vec<u8>,
    finished: bool,
}

impl Import {
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.node.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(store_error)?
            .map_err(store_error)
    }

    async fn folder(&mut self, folder: ImportedFolder) -> Result<(), String> {
        let special_use = match folder.special_use.as_deref() {
            Some(attribute) => Some(
                SpecialUse::from_attribute(attribute)
                    .ok_or_else(|| format!("unknown special use {attribute:?}"))?,
            ),
            None => None,
        };
        let import = FolderImport {
            name: folder.name,
            uidvalidity: Uidvalidity(folder.uidvalidity),
            uidnext: Uid(folder.uidnext),
            highest_modseq: ModSeq(folder.highest_modseq),
            special_use,
            subscribed: folder.subscribed,
        };
        let account = self.account;
        let made = self
            .blocking(move |store| store.import_folder(account, &import))
            .await?;
        self.folder = Some(made.id);
        self.folders += 1;
        Ok(())
    }

    fn head(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        if (self.head.len() + bytes.len()) as u64 > portico_store::MAX_BODY_LEN {
            return Err("a message larger than the store takes".into());
        }
        self.head.extend_from_slice(&bytes);
        Ok(())
    }

    async fn messages(&mut self, mut messages: Vec<ImportedMessage>) -> Result<(), String> {
        let folder = self.folder.ok_or("messages before any folder")?;
        if !self.head.is_empty() {
            let first = messages
                .first_mut()
                .ok_or("a message head with no message")?;
            let mut whole = std::mem::take(&mut self.head);
            whole.extend_from_slice(&first.bytes);
            first.bytes = whole;
        }
        let count = messages.len() as u64;
        let bytes: u64 = messages.iter().map(|m| m.bytes.len() as u64).sum();
        let ticket = self
            .blocking(move |store| {
                let mut staged = Vec::with_capacity(messages.len());
                for message in messages {
                    let import = MessageImport {
                        uid: Uid(message.uid),
                        flags: Flags::from_names(message.flags.iter().map(String::as_str)),
                        internal_date: (message.internal_date, message.internal_date_offset),
                        modseq: ModSeq(message.modseq),
                        save_date: message.save_date,
                    };
                    staged.push((store.stage_message(&message.bytes, None)?, import));
                }
                store.import_messages(folder, staged)
            })
            .await?;
        self.last = Some(ticket);
        self.messages += count;
        self.bytes += bytes;
        Ok(())
    }

    /// Subscriptions and annotations, each made durable before the answer. An
    /// annotation of a folder the import has not made is left out, with a warning.
    async fn extras(
        &mut self,
        subscriptions: Vec<String>,
        annotations: Vec<ImportedAnnotation>,
    ) -> Result<(), String> {
        let account = self.account;
        self.blocking(move |store| {
            for name in &subscriptions {
                store.set_subscription(account, name, true, usize::MAX)?;
            }
            let mut by_folder: BTreeMap<String, AnnotationChanges> = BTreeMap::new();
            for annotation in annotations {
                by_folder
                    .entry(annotation.folder)
                    .or_default()
                    .push((annotation.entry, Some(annotation.value)));
            }
            for (folder, changes) in by_folder {
                match store.set_metadata(account, &folder, &changes, usize::MAX) {
                    Err(StoreError::NotFound) => {
                        tracing::warn!(folder = %folder, "annotations of a folder the move did not bring left out");
                    }
                    other => other?,
                }
            }
            Ok(())
        })
        .await
    }

    async fn finish(&mut self, folders: u32, messages: u64, bytes: u64) -> Result<(), String> {
        if !self.head.is_empty() {
            return Err("a message head with no message".into());
        }
        if (folders, messages, bytes) != (self.folders, self.messages, self.bytes) {
            return Err(format!(
                "sent {folders} folders, {messages} messages, {bytes} bytes; received {}, {}, {}",
                self.folders, self.messages, self.bytes
            ));
        }
        if let Some(ticket) = self.last {
            self.blocking(move |store| store.wait_committed(ticket))
                .await?;
        }
        if let Some(full_text) = &self.node.full_text {
            let account = self.account;
            for folder in self.blocking(move |store| store.mailboxes(account)).await? {
                full_text.touched(folder.id);
            }
        }
        self.finished = true;
        Ok(())
    }
}

impl Drop for Import {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (store, account) = (self.node.store.clone(), self.account);
        tokio::task::spawn_blocking(move || match store.delete_account(account) {
            Ok(()) => tracing::info!(account = account.0, "unfinished mailbox import removed"),
            Err(e) => {
                tracing::error!(account = account.0, error = %e, "could not remove an unfinished mailbox import")
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotation(folder: &str, len: usize) -> ImportedAnnotation {
        ImportedAnnotation {
            folder: folder.into(),
            entry: "/private/comment".into(),
            value: vec![b'x'; len],
        }
    }

    fn sizes(pieces: &[ImportPiece]) -> Vec<(usize, usize)> {
        pieces
            .iter()
            .map(|piece| match piece {
                ImportPiece::Extras {
                    subscriptions,
                    annotations,
                } => (subscriptions.len(), annotations.len()),
                other => panic!("not extras: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn extras_are_cut_into_bounded_pieces_and_never_lost() {
        assert!(extras_pieces(Vec::new(), Vec::new()).is_empty());
        let subscriptions = vec!["INBOX".to_string(), "Lists/Later".to_string()];
        assert_eq!(
            sizes(&extras_pieces(subscriptions.clone(), Vec::new())),
            [(2, 0)]
        );
        // Three annotations of a third of a piece and one bigger than a piece: the
        // big one travels alone, nothing is dropped.
        let third = PIECE_BYTES / 3;
        let annotations = vec![
            annotation("", third),
            annotation("A", third),
            annotation("B", third),
            annotation("C", PIECE_BYTES + 1),
        ];
        assert_eq!(
            sizes(&extras_pieces(subscriptions, annotations)),
            [(2, 2), (0, 1), (0, 1)]
        );
    }
}
