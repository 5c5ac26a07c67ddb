//! The internode link: how the nodes of a cluster call each other. A connection starts
//! with a handshake (the caller's `Hello` names the protocol version and the node it
//! is; the callee answers `Welcome` or `Refused` with the reason), then carries calls
//! and their answers, one at a time, as length-delimited bincode [`Frame`]s.
//!
//! The link is written over any byte stream: the node wraps each connection in mutual
//! TLS first and hands over the name the peer's certificate proves, which the handshake
//! compares with the name the peer claims. Raft's calls between directory members go
//! over it ([`LinkTransport`]), as do forwarded directory writes, health checks and
//! mail delivered to a mailbox's home node. A proxied client session takes a
//! connection of its own: after its [`Call::Open`] is answered [`Answer::Opened`], the
//! connection carries the client's raw bytes both ways ([`Link::into_stream`]). A new
//! variant bumps [`PROTOCOL_VERSION`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use portico_directory::{
    CallFuture, Committed, DirectoryChange, PeerNode, PeerTransport, RaftAnswer, RaftCall, RaftRole,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The version of the frames below; both ends must speak the same.
pub const PROTOCOL_VERSION: u32 = 6;
/// The largest frame either end accepts (a Raft snapshot chunk, a batch of entries).
const MAX_FRAME: usize = 64 * 1024 * 1024;
/// How long a call waits for its answer before the connection is given up.
const CALL_DEADLINE: Duration = Duration::from_secs(5);

/// Everything that crosses a connection.
#[derive(Debug, Serialize, Deserialize)]
pub enum Frame {
    Hello { version: u32, node: String },
    Welcome { node: String },
    Refused { reason: String },
    Call(Call),
    Answer(Answer),
}

/// What one node asks of another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Call {
    /// A Raft call between directory members.
    Raft(RaftCall),
    /// A directory change forwarded to the leader.
    DirectoryWrite(DirectoryChange),
    Health,
    /// Take over a signed-in client session; the connection carries its bytes from the
    /// answer on.
    Open(OpenSession),
    /// Store one copy of a message in a mailbox homed on the node called.
    Deliver(Delivery),
    /// The bytes an account homed on the node called takes (its storage usage, known
    /// only there): SMTP RCPT elsewhere checks it against the account's limit.
    Usage {
        address: String,
    },
    /// Move a mailbox homed on the node called to another node (`user move` issued
    /// elsewhere): the home runs the move and answers when it is over.
    MoveMailbox(MoveRequest),
    /// A piece of a mailbox brought to the node called by its old home; the pieces
    /// after [`ImportPiece::Begin`] follow on the same connection.
    Import(ImportPiece),
    /// Re-read the configuration's client settings and the TLS certificate (`portico
    /// reload` on another node). Added in protocol version 6.
    Reload,
}

/// `user move` as the mailbox's home hears it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MoveRequest {
    pub address: String,
    /// The node the mailbox goes to.
    pub to: String,
}

/// What a finished move did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveReport {
    pub from: String,
    pub to: String,
    pub folders: u32,
    pub messages: u64,
    pub bytes: u64,
}

/// A mailbox crossing from its old home to its new one, in order: `Begin`, then each
/// folder followed by its messages, then `Finish`. Each piece is answered
/// [`Answer::Imported`]; the new home makes everything durable before it answers
/// `Finish`, and serves none of it until the directory names it the home.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ImportPiece {
    /// Replaces any earlier copy of the account's mailbox on the node called.
    Begin {
        address: String,
        /// The directory's creation time of the account (tells it from an earlier
        /// account of the same address).
        created: i64,
    },
    Folder(ImportedFolder),
    /// Messages of the last folder, in ascending UID order.
    Messages(Vec<ImportedMessage>),
    /// The first bytes of a message too large for one piece: they go before the bytes
    /// of the first message of the next `Messages`.
    Head(Vec<u8>),
    /// After the folders: subscribed names (a subscription outlives its folder, and
    /// can name none) and annotations (RFC 5464), in pieces of bounded size. Added in
    /// protocol version 5.
    Extras {
        subscriptions: Vec<String>,
        annotations: Vec<ImportedAnnotation>,
    },
    /// The totals sent, checked against what was stored.
    Finish {
        folders: u32,
        messages: u64,
        bytes: u64,
    },
}

/// A folder with the numbers clients hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedFolder {
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    /// The RFC 6154 attribute (`\Sent`, …).
    pub special_use: Option<String>,
    pub subscribed: bool,
}

/// One annotation of a folder, or of the account's server entries (`folder` empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedAnnotation {
    pub folder: String,
    pub entry: String,
    pub value: Vec<u8>,
}

/// A message with its UID, flags, dates and exact bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedMessage {
    pub uid: u32,
    pub flags: Vec<String>,
    pub internal_date: i64,
    pub internal_date_offset: i32,
    pub modseq: u64,
    /// RFC 8514 save date (Unix seconds), which a move keeps; `None` when the old
    /// home does not know it either. Added in protocol version 5.
    pub save_date: Option<i64>,
    pub bytes: Vec<u8>,
}

/// The protocol of a proxied session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionProtocol {
    Imap,
    Pop3,
}

/// A client session the calling node signed in and hands to the mailbox's home node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpenSession {
    pub protocol: SessionProtocol,
    /// The account's address, as the directory keys it.
    pub user: String,
    /// The account's move epoch in the caller's replica: the home node serves the
    /// session only if its own replica agrees.
    pub move_epoch: u64,
    /// The client's address, for the home node's logs and limits.
    pub client: std::net::SocketAddr,
    /// The session id the caller logs, logged by the home node too.
    pub session: u64,
    /// Whether the client's connection is encrypted.
    pub tls: bool,
    /// Proxy hops so far, this one included; a node never proxies a session it was
    /// handed ([`MAX_HOPS`]).
    pub hops: u8,
    /// What the protocol machine needs to answer the sign-in command itself.
    pub login: LoginHandOff,
    /// What the client sent after its sign-in command, not yet read.
    pub pending: Vec<u8>,
}

/// The most proxy hops a session may take.
pub const MAX_HOPS: u8 = 1;

/// The sign-in command whose reply the home node owes the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginHandOff {
    /// IMAP LOGIN or AUTHENTICATE: the tag to answer, and the client's mistakes so far.
    Imap { tag: String, bad_commands: u32 },
    /// POP3 PASS or AUTH: the name the client signed in with, and its mistakes so far.
    Pop3 { username: String, bad_commands: u32 },
}

/// Why a node did not take a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpenRefused {
    /// By this node's replica, the mailbox is not here (or at another move epoch).
    NotHome {
        home: Option<String>,
        move_epoch: Option<u64>,
    },
    /// The user has as many sessions as a user may.
    TooManyConnections,
    /// The session came through a proxy already.
    TooManyHops,
    /// Anything else, for the caller's log.
    Unavailable(String),
}

/// One copy of a message for one account homed on the node called.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Delivery {
    /// Names this copy for good: a second delivery with the same id stores nothing and
    /// answers like the first.
    pub id: String,
    pub recipient: String,
    pub move_epoch: u64,
    /// Seconds since the Unix epoch.
    pub internal_date: i64,
    pub message: Vec<u8>,
    /// Stored even past the account's storage limit: a delivery status notification
    /// about the account's own mail, which would otherwise be lost.
    pub ignore_limit: bool,
}

/// Why a copy was not stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliverRefused {
    /// By this node's replica, the mailbox is not here.
    NotHome { home: Option<String> },
    /// No such account: the copy can never be delivered.
    NoSuchUser,
    /// Try again later (a full disk, a store fault).
    Temporary(String),
    /// The copy would take the account past its storage limit: try again later, once
    /// the user has made room (SMTP `452 4.2.2`).
    MailboxFull,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    Raft(RaftAnswer),
    DirectoryWrite(Result<Committed, WriteRefused>),
    Health(Health),
    Opened(Result<(), OpenRefused>),
    /// The copy is durable on the home node, under this UID of the recipient's INBOX.
    Delivered(Result<u32, DeliverRefused>),
    /// The account's usage in bytes (`NotHome`, `NoSuchUser` and `Temporary` as for a
    /// delivery).
    Usage(Result<u64, DeliverRefused>),
    Moved(Result<MoveReport, String>),
    /// The piece was taken (for `Finish`: everything is durable).
    Imported(Result<(), String>),
    /// What the node now tells clients, or why its configuration or certificate was
    /// not reloaded.
    Reloaded(Result<String, String>),
    /// The call could not be served (the reason is for the caller's log).
    Failed(String),
}

/// Why a forwarded directory change was not committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteRefused {
    /// The node called does not lead (any more): ask the leader it names.
    NotLeader,
    /// Anything else, said for the administrator.
    Failed(String),
}

/// What a node says of itself to a health check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub node: String,
    /// The directory member it believes leads, by Raft id.
    pub leader: Option<u64>,
    /// The last directory change applied to its replica.
    pub applied: Option<u64>,
    /// Its place in the directory's Raft group.
    pub role: RaftRole,
    /// When it leads: how long since a majority of the voters last answered it.
    pub quorum_ack_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("internode connection: {0}")]
    Io(#[from] io::Error),
    #[error("internode frame: {0}")]
    Frame(String),
    #[error("peer speaks internode protocol version {theirs}, this node {PROTOCOL_VERSION}")]
    Version { theirs: u32 },
    #[error("peer claims to be node {claimed:?} but its certificate names {certified:?}")]
    NameMismatch { claimed: String, certified: String },
    #[error("expected node {expected:?}, reached {reached:?}")]
    WrongPeer { expected: String, reached: String },
    #[error("refused by the peer: {0}")]
    Refused(String),
    #[error("the peer closed the connection")]
    Closed,
    #[error("no answer in time")]
    Timeout,
    /// No connection could be opened: the call was not sent.
    #[error("cannot connect: {0}")]
    NotConnected(Box<LinkError>),
}

impl LinkError {
    /// Whether the call surely did not reach the peer (and may be sent again as is).
    pub fn not_sent(&self) -> bool {
        matches!(self, LinkError::NotConnected(_))
    }
}

/// A connection after its handshake.
pub struct Link<S> {
    frames: Framed<S, LengthDelimitedCodec>,
    peer: String,
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
    /// The caller's side of the handshake: this node is `me`, and expects `peer`.
    pub async fn open(stream: S, me: &str, peer: &str) -> Result<Link<S>, LinkError> {
        let mut link = Link {
            frames: Framed::new(stream, codec()),
            peer: peer.to_string(),
        };
        link.send(&Frame::Hello {
            version: PROTOCOL_VERSION,
            node: me.to_string(),
        })
        .await?;
        match link.receive().await? {
            Frame::Welcome { node } if node == peer => Ok(link),
            Frame::Welcome { node } => Err(LinkError::WrongPeer {
                expected: peer.to_string(),
                reached: node,
            }),
            Frame::Refused { reason } => Err(LinkError::Refused(reason)),
            other => Err(LinkError::Frame(format!("{other:?} instead of a welcome"))),
        }
    }

    /// The callee's side: checks the caller's version, and its name against
    /// `certified` (the name its certificate proves), then welcomes it as `me`.
    pub async fn accept(stream: S, me: &str, certified: &str) -> Result<Link<S>, LinkError> {
        let mut link = Link {
            frames: Framed::new(stream, codec()),
            peer: String::new(),
        };
        let Frame::Hello { version, node } = link.receive().await? else {
            return Err(LinkError::Frame(
                "a connection did not start with hello".into(),
            ));
        };
        let refusal = if version != PROTOCOL_VERSION {
            Some(LinkError::Version { theirs: version })
        } else if node != certified {
            Some(LinkError::NameMismatch {
                claimed: node.clone(),
                certified: certified.to_string(),
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            let reason = refusal.to_string();
            let _ = link.send(&Frame::Refused { reason }).await;
            return Err(refusal);
        }
        link.send(&Frame::Welcome {
            node: me.to_string(),
        })
        .await?;
        link.peer = node;
        Ok(link)
    }

    /// The node at the other end.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    async fn send(&mut self, frame: &Frame) -> Result<(), LinkError> {
        let bytes = bincode::serde::encode_to_vec(frame, bincode::config::standard())
            .map_err(|e| LinkError::Frame(e.to_string()))?;
        self.frames.send(Bytes::from(bytes)).await?;
        Ok(())
    }

    async fn receive(&mut self) -> Result<Frame, LinkError> {
        let bytes = self.frames.next().await.ok_or(LinkError::Closed)??;
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
            .map(|(frame, _)| frame)
            .map_err(|e| LinkError::Frame(e.to_string()))
    }

    /// Sends a call and waits for its answer.
    pub async fn call(&mut self, call: Call) -> Result<Answer, LinkError> {
        self.call_within(call, CALL_DEADLINE).await
    }

    /// [`Link::call`] for a call that may take longer than most (a piece of a mailbox,
    /// a whole move).
    pub async fn call_within(
        &mut self,
        call: Call,
        deadline: Duration,
    ) -> Result<Answer, LinkError> {
        let exchange = async {
            self.send(&Frame::Call(call)).await?;
            match self.receive().await? {
                Frame::Answer(answer) => Ok(answer),
                other => Err(LinkError::Frame(format!("{other:?} instead of an answer"))),
            }
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| LinkError::Timeout)?
    }

    /// Answers the peer's calls with `handler` until it closes the connection.
    pub async fn serve(mut self, handler: &dyn CallHandler) -> Result<(), LinkError> {
        while let Some(call) = self.next_call().await? {
            let answer = handler.handle(&self.peer, call).await;
            self.answer(answer).await?;
        }
        Ok(())
    }

    /// The peer's next call; `None` once it has closed the connection.
    pub async fn next_call(&mut self) -> Result<Option<Call>, LinkError> {
        match self.receive().await {
            Ok(Frame::Call(call)) => Ok(Some(call)),
            Ok(other) => Err(LinkError::Frame(format!("{other:?} instead of a call"))),
            Err(LinkError::Closed) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Answers the call [`Self::next_call`] returned.
    pub async fn answer(&mut self, answer: Answer) -> Result<(), LinkError> {
        self.send(&Frame::Answer(answer)).await
    }

    /// Asks the peer to take a session over (the caller's side of [`Call::Open`]). Once
    /// it has, the link becomes the session's byte stream: the bytes the peer sent
    /// right behind its answer come back too, to be written to the client first.
    pub async fn open_session(
        mut self,
        open: OpenSession,
    ) -> Result<Result<(S, BytesMut), OpenRefused>, LinkError> {
        match self.call(Call::Open(open)).await? {
            Answer::Opened(Ok(())) => Ok(Ok(self.into_stream())),
            Answer::Opened(Err(refused)) => Ok(Err(refused)),
            other => Err(LinkError::Frame(format!("{other:?} answered an open"))),
        }
    }

    /// The connection under the frames, with what was read past the last frame.
    pub fn into_stream(self) -> (S, BytesMut) {
        let parts = self.frames.into_parts();
        (parts.io, parts.read_buf)
    }
}

/// A future of a [`CallHandler`].
pub type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// What serves the calls of the other nodes.
pub trait CallHandler: Send + Sync {
    fn handle(&self, from: &str, call: Call) -> AnswerFuture;
}

/// Makes connections to other nodes (TCP from this node's internode address, then
/// mutual TLS, in the node; plain TCP in tests).
pub trait Connector: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn connect(
        &self,
        peer: &PeerNode,
    ) -> Pin<Box<dyn Future<Output = io::Result<Self::Stream>> + Send>>;
}

type SharedLink<S> = Arc<tokio::sync::Mutex<Option<Link<S>>>>;

/// Raft's calls to the other directory members over the link: one connection per peer,
/// opened when first needed and again after a failure, one call at a time on it.
pub struct LinkTransport<C: Connector> {
    me: String,
    connector: Arc<C>,
    links: std::sync::Mutex<HashMap<String, SharedLink<C::Stream>>>,
}

impl<C: Connector> LinkTransport<C> {
    pub fn new(me: &str, connector: C) -> LinkTransport<C> {
        LinkTransport {
            me: me.to_string(),
            connector: Arc::new(connector),
            links: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn link_to(&self, peer: &str) -> SharedLink<C::Stream> {
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(peer.to_string())
            .or_default()
            .clone()
    }

    /// Calls `peer`, connecting first when there is no open link. The exchange runs
    /// in a task of its own that keeps the link until the answer is read or the
    /// deadline passes: a caller that stops waiting (Raft gives up on a heartbeat after
    /// its interval) cannot leave an answer in flight for the next call to take as its
    /// own. Needs a tokio runtime.
    pub fn call_peer(
        &self,
        peer: &PeerNode,
        call: Call,
    ) -> Pin<Box<dyn Future<Output = Result<Answer, LinkError>> + Send>> {
        let slot = self.link_to(&peer.name);
        let (connector, me, peer) = (self.connector.clone(), self.me.clone(), peer.clone());
        let exchange = tokio::spawn(async move {
            let mut slot = slot.lock().await;
            if slot.is_none() {
                // Bounded like a call: a peer that never answers a connection attempt
                // must not hold every later call to it for the system's TCP timeout.
                let opening = async {
                    let stream = connector.connect(&peer).await?;
                    Link::open(stream, &me, &peer.name).await
                };
                let opened = tokio::time::timeout(CALL_DEADLINE, opening)
                    .await
                    .map_err(|_| LinkError::Timeout)
                    .and_then(|opened| opened)
                    .map_err(|e| LinkError::NotConnected(Box::new(e)))?;
                *slot = Some(opened);
            }
            let Some(link) = slot.as_mut() else {
                return Err(LinkError::Closed);
            };
            let answer = link.call(call).await;
            if answer.is_err() {
                // Whatever state the connection is in, the next call starts afresh.
                *slot = None;
            }
            answer
        });
        Box::pin(async move {
            exchange
                .await
                .unwrap_or_else(|e| Err(LinkError::Io(io::Error::other(e))))
        })
    }
}

impl<C: Connector> PeerTransport for LinkTransport<C> {
    fn call(&self, target: &PeerNode, call: RaftCall) -> CallFuture {
        let answer = self.call_peer(target, Call::Raft(call));
        Box::pin(async move {
            match answer.await {
                Ok(Answer::Raft(answer)) => Ok(answer),
                Ok(Answer::Failed(reason)) => Err(io::Error::other(reason)),
                Ok(other) => Err(io::Error::other(format!("{other:?} answered a Raft call"))),
                Err(LinkError::Io(e)) => Err(e),
                Err(e) => Err(io::Error::other(e.to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests;
