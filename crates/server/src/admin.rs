//! Administration: account management and local delivery, whether or not a server is
//! running on the data directory.
//!
//! A running node listens on `admin.sock` in its data directory (mode 0600, so only its
//! owner can use it); the CLI sends one [`AdminRequest`] per connection, as a
//! length-delimited bincode frame, and gets one [`AdminResponse`]. With no server
//! running, the CLI opens the store itself and runs the same [`execute_local`].
//! Passwords never cross the socket: the CLI hashes them first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use portico_store::{Flags, INBOX, Pop3DeleteMode, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::mailbox::{AppendMessage, MailboxFault, MailboxRegistry};

/// The socket's file name inside the data directory.
pub const SOCKET_NAME: &str = "admin.sock";
/// Largest frame: a message for `deliver` plus a little.
const MAX_FRAME: usize = 128 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub enum AdminRequest {
    AddUser {
        address: String,
        password_hash: String,
    },
    SetPassword {
        address: String,
        password_hash: String,
    },
    DeleteUser {
        address: String,
    },
    ListUsers,
    SetUser {
        address: String,
        pop3_enabled: Option<bool>,
        imap_enabled: Option<bool>,
        pop3_delete_mode: Option<Pop3DeleteMode>,
    },
    Deliver {
        address: String,
        message: Vec<u8>,
    },
    QueueList,
    QueueFlush,
    QueueDelete {
        id: u64,
    },
    /// Counters of the running node (for benchmarks and monitoring).
    Stats,
}

/// One queued message as `queue list` shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueSummary {
    pub id: u64,
    pub created: i64,
    pub mail_from: String,
    pub size: u64,
    /// (address, attempts, last error)
    pub recipients: Vec<(String, u32, Option<String>)>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserSummary {
    pub address: String,
    pub pop3_enabled: bool,
    pub imap_enabled: bool,
    pub pop3_delete_mode: Pop3DeleteMode,
    pub inbox_messages: u32,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum AdminResponse {
    Done(String),
    Users(Vec<UserSummary>),
    Queue(Vec<QueueSummary>),
    Failed(String),
}

fn unknown_user(address: &str) -> AdminResponse {
    AdminResponse::Failed(format!("no such user: {address}"))
}

fn store_failure(e: StoreError) -> AdminResponse {
    match e {
        StoreError::NotAllowed(why) | StoreError::InvalidName(why) => {
            AdminResponse::Failed(why.to_string())
        }
        other => AdminResponse::Failed(format!("store error: {other}")),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Runs a request against a store this process has open.
pub fn execute_local(store: &Store, request: AdminRequest) -> AdminResponse {
    match try_execute_local(store, request) {
        Ok(response) => response,
        Err(e) => store_failure(e),
    }
}

fn try_execute_local(store: &Store, request: AdminRequest) -> Result<AdminResponse, StoreError> {
    Ok(match request {
        AdminRequest::AddUser {
            address,
            password_hash,
        } => match store.create_account(&address, &password_hash) {
            Ok(account) => AdminResponse::Done(format!("added {}", account.address)),
            Err(StoreError::AlreadyExists) => {
                AdminResponse::Failed(format!("user already exists: {address}"))
            }
            Err(StoreError::InvalidName(why)) => {
                AdminResponse::Failed(format!("{why}: {address:?}"))
            }
            Err(e) => return Err(e),
        },
        AdminRequest::SetPassword {
            address,
            password_hash,
        } => match store.account_by_address(&address)? {
            Some(mut account) => {
                account.password_hash = password_hash;
                store.update_account(&account)?;
                AdminResponse::Done(format!("password changed for {}", account.address))
            }
            None => unknown_user(&address),
        },
        AdminRequest::DeleteUser { address } => match store.account_by_address(&address)? {
            Some(account) => {
                store.delete_account(account.id)?;
                AdminResponse::Done(format!("deleted {}", account.address))
            }
            None => unknown_user(&address),
        },
        AdminRequest::ListUsers => {
            let mut users = Vec::new();
            for account in store.accounts()? {
                let inbox_messages = store
                    .mailbox_by_name(account.id, INBOX)?
                    .map_or(0, |inbox| inbox.messages);
                users.push(UserSummary {
                    address: account.address,
                    pop3_enabled: account.pop3_enabled,
                    imap_enabled: account.imap_enabled,
                    pop3_delete_mode: account.pop3_delete_mode,
                    inbox_messages,
                });
            }
            users.sort_by(|a, b| a.address.cmp(&b.address));
            AdminResponse::Users(users)
        }
        AdminRequest::SetUser {
            address,
            pop3_enabled,
            imap_enabled,
            pop3_delete_mode,
        } => match store.account_by_address(&address)? {
            Some(mut account) => {
                if let Some(on) = pop3_enabled {
                    account.pop3_enabled = on;
                }
                if let Some(on) = imap_enabled {
                    account.imap_enabled = on;
                }
                if let Some(mode) = pop3_delete_mode {
                    account.pop3_delete_mode = mode;
                }
                store.update_account(&account)?;
                AdminResponse::Done(format!("updated {}", account.address))
            }
            None => unknown_user(&address),
        },
        AdminRequest::Stats => AdminResponse::Done(format!(
            "store_sync_calls {}\nmetadata_sync_rounds {}\nbody_sync_rounds {}",
            store.sync_calls(),
            store.syncs(),
            store.body_syncs()
        )),
        AdminRequest::QueueList => AdminResponse::Queue(
            store
                .queue()?
                .into_iter()
                .map(|entry| QueueSummary {
                    id: entry.id,
                    created: entry.created,
                    mail_from: entry.mail_from,
                    size: entry.size,
                    recipients: entry
                        .recipients
                        .into_iter()
                        .map(|r| (r.address, r.attempts, r.last_error))
                        .collect(),
                })
                .collect(),
        ),
        AdminRequest::QueueFlush => {
            let count = store.flush_queue()?;
            let noun = if count == 1 { "message" } else { "messages" };
            AdminResponse::Done(format!("{count} queued {noun} due now"))
        }
        AdminRequest::QueueDelete { id } => match store.delete_queued(id) {
            Ok(()) => AdminResponse::Done(format!("deleted queued message {id}")),
            Err(StoreError::NotFound) => AdminResponse::Failed(format!("no queued message {id}")),
            Err(e) => return Err(e),
        },
        AdminRequest::Deliver { address, message } => {
            let Some(inbox) = deliverable_inbox(store, &address, &message)? else {
                return Ok(unknown_user(&address));
            };
            let appended = store.append(inbox, &message, &Flags::default(), (now(), 0))?;
            AdminResponse::Done(format!("delivered to {address} as UID {}", appended.uid.0))
        }
    })
}

/// The INBOX a `deliver` goes to, or `None` for an unknown user.
fn deliverable_inbox(
    store: &Store,
    address: &str,
    message: &[u8],
) -> Result<Option<portico_store::MailboxId>, StoreError> {
    if message.is_empty() {
        return Err(StoreError::NotAllowed("the message is empty"));
    }
    let Some(account) = store.account_by_address(address)? else {
        return Ok(None);
    };
    Ok(store
        .mailbox_by_name(account.id, INBOX)?
        .map(|inbox| inbox.id))
}

/// Runs a request inside the server: deliveries go through the folder's mailbox actor
/// (so sessions watching it hear of them), everything else straight to the store.
async fn execute_in_server(
    store: Arc<Store>,
    mailboxes: Arc<MailboxRegistry>,
    queue_wake: Arc<tokio::sync::Notify>,
    request: AdminRequest,
) -> AdminResponse {
    match request {
        AdminRequest::QueueFlush => {
            let response = tokio::task::spawn_blocking(move || {
                execute_local(&store, AdminRequest::QueueFlush)
            })
            .await
            .unwrap_or_else(|_| AdminResponse::Failed("internal error".into()));
            queue_wake.notify_one();
            response
        }
        AdminRequest::Deliver { address, message } => {
            let lookup_store = store.clone();
            let lookup_address = address.clone();
            let message = Bytes::from(message);
            let lookup_message = message.clone();
            let inbox = tokio::task::spawn_blocking(move || {
                deliverable_inbox(&lookup_store, &lookup_address, &lookup_message)
            })
            .await;
            let inbox = match inbox {
                Ok(Ok(Some(inbox))) => inbox,
                Ok(Ok(None)) => return unknown_user(&address),
                Ok(Err(e)) => return store_failure(e),
                Err(_) => return AdminResponse::Failed("internal error".into()),
            };
            let append = AppendMessage {
                message,
                flags: Flags::default(),
                internal_date: (now(), 0),
                origin: None,
                expected: None,
            };
            match mailboxes.send(inbox, append).await {
                Ok(Ok(appended)) => {
                    AdminResponse::Done(format!("delivered to {address} as UID {}", appended.uid.0))
                }
                Ok(Err(MailboxFault::Store(e))) => store_failure(e),
                Ok(Err(e)) | Err(e) => AdminResponse::Failed(format!("delivery failed: {e}")),
            }
        }
        other => tokio::task::spawn_blocking(move || execute_local(&store, other))
            .await
            .unwrap_or_else(|_| AdminResponse::Failed("internal error".into())),
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

fn encode<T: Serialize>(value: &T) -> anyhow::Result<Bytes> {
    Ok(bincode::serde::encode_to_vec(value, bincode::config::standard())?.into())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    Ok(bincode::serde::decode_from_slice(bytes, bincode::config::standard())?.0)
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Binds the admin socket (replacing a stale one left by a crash: the store's lock
/// already proved no other server runs here).
pub fn bind(data_dir: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

/// Serves admin requests until the listener is dropped.
pub async fn serve(
    listener: UnixListener,
    store: Arc<Store>,
    mailboxes: Arc<MailboxRegistry>,
    queue_wake: Arc<tokio::sync::Notify>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                continue;
            }
        };
        let (store, mailboxes, queue_wake) = (store.clone(), mailboxes.clone(), queue_wake.clone());
        actix_rt::spawn(async move {
            let mut framed = Framed::new(stream, codec());
            let Some(Ok(frame)) = framed.next().await else {
                return;
            };
            let response = match decode::<AdminRequest>(&frame) {
                Ok(request) => {
                    tracing::info!(request = request_name(&request), "admin request");
                    execute_in_server(store, mailboxes, queue_wake, request).await
                }
                Err(e) => AdminResponse::Failed(format!("malformed admin request: {e}")),
            };
            if let Ok(bytes) = encode(&response) {
                let _ = framed.send(bytes).await;
            }
        });
    }
}

fn request_name(request: &AdminRequest) -> &'static str {
    match request {
        AdminRequest::AddUser { .. } => "user add",
        AdminRequest::SetPassword { .. } => "user passwd",
        AdminRequest::DeleteUser { .. } => "user del",
        AdminRequest::ListUsers => "user list",
        AdminRequest::SetUser { .. } => "user set",
        AdminRequest::Deliver { .. } => "deliver",
        AdminRequest::QueueList => "queue list",
        AdminRequest::QueueFlush => "queue flush",
        AdminRequest::QueueDelete { .. } => "queue delete",
        AdminRequest::Stats => "stats",
    }
}

/// Sends a request to the server running on `data_dir`; `Ok(None)` when none answers.
pub async fn send_to_server(
    data_dir: &Path,
    request: &AdminRequest,
) -> anyhow::Result<Option<AdminResponse>> {
    let path = socket_path(data_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(_) => return Ok(None),
    };
    let mut framed = Framed::new(stream, codec());
    framed
        .send(encode(request)?)
        .await
        .context("sending to the server's admin socket")?;
    let frame = framed
        .next()
        .await
        .context("the server closed the admin socket without answering")?
        .context("reading the server's answer")?;
    Ok(Some(decode(&frame)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_requests_manage_users_and_deliver() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Default::default()).unwrap();
        let add = |address: &str| {
            execute_local(
                &store,
                AdminRequest::AddUser {
                    address: address.into(),
                    password_hash: "h".into(),
                },
            )
        };
        assert_eq!(
            add("alice@example.com"),
            AdminResponse::Done("added alice@example.com".into())
        );
        assert_eq!(
            add("alice@example.com"),
            AdminResponse::Failed("user already exists: alice@example.com".into())
        );
        let deliver = |address: &str, message: &[u8]| {
            execute_local(
                &store,
                AdminRequest::Deliver {
                    address: address.into(),
                    message: message.to_vec(),
                },
            )
        };
        assert_eq!(
            deliver("alice@example.com", b"Subject: hi\r\n\r\nhello\r\n"),
            AdminResponse::Done("delivered to alice@example.com as UID 1".into())
        );
        assert_eq!(
            deliver("nobody@example.com", b"x"),
            AdminResponse::Failed("no such user: nobody@example.com".into())
        );
        assert!(matches!(
            deliver("alice@example.com", b""),
            AdminResponse::Failed(_)
        ));
        let set = execute_local(
            &store,
            AdminRequest::SetUser {
                address: "alice@example.com".into(),
                pop3_enabled: Some(false),
                imap_enabled: None,
                pop3_delete_mode: Some(Pop3DeleteMode::Hide),
            },
        );
        assert_eq!(set, AdminResponse::Done("updated alice@example.com".into()));
        let AdminResponse::Users(users) = execute_local(&store, AdminRequest::ListUsers) else {
            panic!("expected a user list");
        };
        assert_eq!(
            users,
            vec![UserSummary {
                address: "alice@example.com".into(),
                pop3_enabled: false,
                imap_enabled: true,
                pop3_delete_mode: Pop3DeleteMode::Hide,
                inbox_messages: 1,
            }]
        );
        assert_eq!(
            execute_local(
                &store,
                AdminRequest::DeleteUser {
                    address: "alice@example.com".into()
                }
            ),
            AdminResponse::Done("deleted alice@example.com".into())
        );
        assert_eq!(
            execute_local(
                &store,
                AdminRequest::DeleteUser {
                    address: "alice@example.com".into()
                }
            ),
            AdminResponse::Failed("no such user: alice@example.com".into())
        );
    }
}
