//! Sessions across the cluster. A node that signs in a client whose mailbox lives on
//! another node (the mailbox's home) hands the session over: it dials the home over
//! mutual TLS, sends `Open` with what the client sent behind its sign-in command, and
//! from the answer on only carries bytes between the client and the home
//! ([`splice`]). The home resumes the protocol machine signed in and answers the
//! sign-in command itself ([`serve_opened`]), so the client cannot tell it was
//! proxied. The home refuses a session its own replica does not place there (the
//! fence: a stale replica can never make two nodes serve one mailbox) and counts the
//! per-user limit, since every session of a user lands there.
//!
//! IMAP COMPRESS comes after the sign-in, so the home carries it out like any other
//! command: it deflates what it sends and inflates what it reads on its end of the
//! link, and the compressed bytes cross the frontend unchanged, so they are compressed
//! on both hops. The frontend never parses the session; the one thing it writes
//! itself, the goodbye when the home is lost, it wraps in a DEFLATE stored block when
//! the home's last bytes ended in a sync flush ([`goodbye_after`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::BytesMut;
use portico_directory::{AccountRecord, PeerNode};
use portico_internode::{
    Answer, Call, Connector, DeliverRefused, Delivery, Link, LinkError, LoginHandOff, MAX_HOPS,
    OpenRefused, OpenSession, SessionProtocol,
};
use portico_store::Account;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::Span;

use crate::cluster::Links;
use crate::connection::{ClientStream, ConnectionStats, EndReason, Outgoing, SessionActor};
use crate::internode::TlsDialer;
use crate::metrics::LoginResult;
use crate::node::{ConnectionSlot, NodeContext, UserSlot};
use crate::router::{PeerFailed, PeerUsable, SiteRouter};

/// The connection to a home node that carries a proxied session.
pub type HomeStream = tokio_rustls::client::TlsStream<crate::internode::ReadAhead<TcpStream>>;
/// The home node's end of it.
pub type ProxiedStream = tokio_rustls::server::TlsStream<TcpStream>;

/// How long reaching a home node and having it take the session may take.
const OPEN_DEADLINE: Duration = Duration::from_secs(5);
/// A home node that refused a session because its replica places the mailbox
/// elsewhere is asked again after this long, once this node's replica has had time to
/// catch up.
const REFRESH_PAUSE: Duration = Duration::from_millis(200);
/// Sessions cut off by a lost home node are told so at random within this long, so
/// that their clients do not all reconnect at once.
const GOODBYE_SPREAD: Duration = Duration::from_secs(3);
/// Spare session links kept per node and worker thread.
const SPARES: usize = 2;
/// A spare older than this is closed rather than used: the fewer links a restarted
/// peer leaves dangling, the better.
const SPARE_MAX_AGE: Duration = Duration::from_secs(60);

/// How this node reaches the other nodes for sessions.
pub struct Proxy {
    me: String,
    dialer: TlsDialer,
    peers: HashMap<String, PeerNode>,
    router: Addr<SiteRouter>,
    /// Links of their own for mail ([`Proxy::deliver`]): a delivery never waits behind
    /// Raft or a health check, nor they behind a big message.
    mail: Links,
    /// Links opened ahead of need for sessions ([`Proxy::refill`]).
    spares: Mutex<Spares>,
    /// Where a refill is under way.
    refilling: Mutex<HashSet<SpareKey>>,
}

/// A session the home node has taken: the connection to it, and what the home sent
/// right behind its answer (to go to the client first).
pub struct ProxiedLink {
    pub stream: HomeStream,
    pub early: BytesMut,
    pub home: String,
}

/// A session's part of [`OpenSession`], the same whatever node is its home.
pub struct OpenRequest {
    pub protocol: SessionProtocol,
    pub client: SocketAddr,
    pub session: u64,
    pub tls: bool,
    pub login: LoginHandOff,
    pub pending: Vec<u8>,
}

impl OpenRequest {
    fn for_record(&self, record: &AccountRecord) -> OpenSession {
        OpenSession {
            protocol: self.protocol,
            user: record.address().to_string(),
            move_epoch: record.fields().move_epoch,
            client: self.client,
            session: self.session,
            tls: self.tls,
            hops: 1,
            login: self.login.clone(),
            pending: self.pending.clone(),
        }
    }
}

/// Why a session could not be handed to its home.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("node {0} is down")]
    Down(String),
    #[error("no node named {0} in the cluster")]
    UnknownNode(String),
    #[error("node {node}: {error}")]
    Link { node: String, error: LinkError },
    #[error("node {node} did not answer in time")]
    Timeout { node: String },
    #[error("node {node} refused the session: {refused:?}")]
    Refused { node: String, refused: OpenRefused },
}

impl ProxyError {
    /// The user has too many sessions at the home node.
    pub fn too_many_connections(&self) -> bool {
        matches!(
            self,
            ProxyError::Refused {
                refused: OpenRefused::TooManyConnections,
                ..
            }
        )
    }
}

/// Keeps an internode connection checked while it carries nothing (an idle session):
/// a peer that vanished without closing is noticed within about a minute.
pub fn keep_alive(tcp: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot turn on TCP keepalive");
    }
}

impl Proxy {
    pub fn new(
        me: &str,
        dialer: TlsDialer,
        mail: Links,
        peers: impl IntoIterator<Item = PeerNode>,
        router: Addr<SiteRouter>,
    ) -> Proxy {
        Proxy {
            me: me.to_string(),
            dialer,
            mail,
            spares: Mutex::default(),
            refilling: Mutex::default(),
            peers: peers
                .into_iter()
                .map(|peer| (peer.name.clone(), peer))
                .collect(),
            router,
        }
    }

    /// Tells the site router that `node` failed a call: it counts as down until a
    /// health check reaches it again, and sessions for it are refused at once.
    pub fn report_failed(&self, node: &str) {
        self.router.do_send(PeerFailed(node.to_string()));
    }

    /// `node`, unless the site router has it down.
    async fn usable(&self, node: &str) -> Result<&PeerNode, ProxyError> {
        if !self
            .router
            .send(PeerUsable(node.to_string()))
            .await
            .unwrap_or(true)
        {
            return Err(ProxyError::Down(node.to_string()));
        }
        self.peers
            .get(node)
            .ok_or_else(|| ProxyError::UnknownNode(node.to_string()))
    }

    /// Hands one copy to `node` on the mail links. A call that fails on a link opened
    /// earlier (the peer restarted since) is sent once more on a new one: the copy's
    /// id makes a repeat harmless.
    pub async fn deliver(
        &self,
        node: &str,
        delivery: Delivery,
    ) -> Result<Result<u32, DeliverRefused>, ProxyError> {
        let peer = self.usable(node).await?;
        let mut answer = self
            .mail
            .call_peer(peer, Call::Deliver(delivery.clone()))
            .await;
        if answer.as_ref().is_err_and(|error| !error.not_sent()) {
            answer = self.mail.call_peer(peer, Call::Deliver(delivery)).await;
        }
        match answer {
            Ok(Answer::Delivered(answer)) => Ok(answer),
            Ok(other) => Err(ProxyError::Link {
                node: node.to_string(),
                error: LinkError::Frame(format!("{other:?} answered a delivery")),
            }),
            Err(error) => {
                self.report_failed(node);
                Err(ProxyError::Link {
                    node: node.to_string(),
                    error,
                })
            }
        }
    }

    /// The bytes an account homed on `node` takes, asked on the mail links (SMTP RCPT
    /// checks a storage limit with it).
    pub async fn usage(
        &self,
        node: &str,
        address: &str,
    ) -> Result<Result<u64, DeliverRefused>, ProxyError> {
        let peer = self.usable(node).await?;
        let call = Call::Usage {
            address: address.to_string(),
        };
        match self.mail.call_peer(peer, call).await {
            Ok(Answer::Usage(answer)) => Ok(answer),
            Ok(other) => Err(ProxyError::Link {
                node: node.to_string(),
                error: LinkError::Frame(format!("{other:?} answered a usage question")),
            }),
            Err(error) => {
                self.report_failed(node);
                Err(ProxyError::Link {
                    node: node.to_string(),
                    error,
                })
            }
        }
    }

    /// Asks `node` to re-read its client settings and certificate (`portico reload`).
    pub async fn reload(&self, node: &str) -> Result<Result<String, String>, ProxyError> {
        let peer = self.usable(node).await?;
        match self.mail.call_peer(peer, Call::Reload).await {
            Ok(Answer::Reloaded(answer)) => Ok(answer),
            Ok(other) => Err(ProxyError::Link {
                node: node.to_string(),
                error: LinkError::Frame(format!("{other:?} answered a reload")),
            }),
            Err(error) => {
                self.report_failed(node);
                Err(ProxyError::Link {
                    node: node.to_string(),
                    error,
                })
            }
        }
    }

    /// The other nodes of the cluster, by name.
    pub fn peer_names(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    /// A link of its own to `node` for one session, unless the site router has the
    /// node down.
    pub async fn dial(&self, node: &str) -> Result<Link<HomeStream>, ProxyError> {
        let peer = self.usable(node).await?;
        let opening = async {
            let stream = self.dialer.connect(peer).await?;
            Link::open(stream, &self.me, node).await
        };
        match tokio::time::timeout(OPEN_DEADLINE, opening).await {
            Ok(Ok(link)) => Ok(link),
            Ok(Err(error)) => {
                self.report_failed(node);
                Err(ProxyError::Link {
                    node: node.to_string(),
                    error,
                })
            }
            Err(_) => {
                self.report_failed(node);
                Err(ProxyError::Timeout {
                    node: node.to_string(),
                })
            }
        }
    }

    /// Hands a signed-in session to the home `record` names. A home whose replica
    /// places the mailbox elsewhere refuses; then this node reads its own replica
    /// again and tries the home it names now, once.
    pub async fn open_at_home(
        self: &Arc<Self>,
        node: &NodeContext,
        record: AccountRecord,
        request: &OpenRequest,
    ) -> Result<ProxiedLink, ProxyError> {
        let mut record = record;
        let mut refreshed = false;
        let mut spares_failed = false;
        loop {
            let home = record.home().to_string();
            let spare = if spares_failed {
                None
            } else {
                self.take_spare(&home)
            };
            let from_spares = spare.is_some();
            let link = match spare {
                Some(link) => link,
                None => self.dial(&home).await?,
            };
            self.refill(&home);
            let opened = tokio::time::timeout(
                OPEN_DEADLINE,
                link.open_session(request.for_record(&record)),
            )
            .await;
            match opened {
                Ok(Ok(Ok((stream, early)))) => {
                    return Ok(ProxiedLink {
                        stream,
                        early,
                        home,
                    });
                }
                Ok(Ok(Err(OpenRefused::NotHome { .. }))) if !refreshed => {
                    refreshed = true;
                    tokio::time::sleep(REFRESH_PAUSE).await;
                    match node.accounts.known_record(record.address()) {
                        Ok(Some(now)) if now.home() != node.node_name => record = now,
                        _ => {
                            return Err(ProxyError::Refused {
                                node: home,
                                refused: OpenRefused::NotHome {
                                    home: None,
                                    move_epoch: None,
                                },
                            });
                        }
                    }
                }
                Ok(Ok(Err(refused))) => {
                    return Err(ProxyError::Refused {
                        node: home,
                        refused,
                    });
                }
                // A spare the peer dropped meanwhile (it restarted): a new link then.
                Ok(Err(_)) if from_spares => {
                    spares_failed = true;
                    self.forget_spares(&home);
                }
                Ok(Err(error)) => {
                    self.report_failed(&home);
                    return Err(ProxyError::Link { node: home, error });
                }
                Err(_) => {
                    self.report_failed(&home);
                    return Err(ProxyError::Timeout { node: home });
                }
            }
        }
    }

    /// A spare link to `node` made on this thread's runtime (a link's socket belongs to
    /// the runtime that made it), not older than [`SPARE_MAX_AGE`].
    fn take_spare(&self, node: &str) -> Option<Link<HomeStream>> {
        let mut spares = self.spares.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = spares.get_mut(&spare_key(node))?;
        while let Some((made, link)) = kept.pop_front() {
            if made.elapsed() < SPARE_MAX_AGE {
                return Some(link);
            }
        }
        None
    }

    fn forget_spares(&self, node: &str) {
        let mut spares = self.spares.lock().unwrap_or_else(PoisonError::into_inner);
        spares.remove(&spare_key(node));
    }

    /// Opens links to `node` in the background until this thread keeps [`SPARES`] of
    /// them, so that the next sign-ins find one ready (no TCP and TLS handshakes to
    /// wait for).
    fn refill(self: &Arc<Self>, node: &str) {
        let key = spare_key(node);
        let mut refilling = self
            .refilling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !refilling.insert(key.clone()) {
            return;
        }
        drop(refilling);
        let proxy = self.clone();
        actix_rt::spawn(async move {
            loop {
                let kept = {
                    let mut spares = proxy.spares.lock().unwrap_or_else(PoisonError::into_inner);
                    let kept = spares.entry(key.clone()).or_default();
                    kept.retain(|(made, _)| made.elapsed() < SPARE_MAX_AGE);
                    kept.len()
                };
                if kept >= SPARES {
                    break;
                }
                let Ok(link) = proxy.dial(&key.0).await else {
                    break;
                };
                let mut spares = proxy.spares.lock().unwrap_or_else(PoisonError::into_inner);
                spares
                    .entry(key.clone())
                    .or_default()
                    .push_back((Instant::now(), link));
            }
            proxy
                .refilling
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
    }
}

/// Spare links are kept per node and per thread.
type SpareKey = (String, std::thread::ThreadId);
/// Spare links with when each was made, oldest first.
type Spares = HashMap<SpareKey, VecDeque<(Instant, Link<HomeStream>)>>;

fn spare_key(node: &str) -> SpareKey {
    (node.to_string(), std::thread::current().id())
}

impl Proxy {
    /// Hands a signed-in session to its home ([`Proxy::open_at_home`]) and makes what
    /// the session's actor then gives its connection task; a failure is logged under
    /// the session's `span`.
    pub async fn take_over(
        self: Arc<Self>,
        node: Arc<NodeContext>,
        record: AccountRecord,
        request: OpenRequest,
        span: Span,
    ) -> Result<Box<Splice>, ProxyError> {
        match self.open_at_home(&node, record, &request).await {
            Ok(link) => {
                tracing::info!(parent: &span, home = %link.home, "signed in; proxied to the mailbox's node");
                Ok(Box::new(Splice {
                    link,
                    protocol: request.protocol,
                    proxy: self,
                    span,
                }))
            }
            Err(e) => {
                tracing::warn!(parent: &span, error = %e, "cannot hand the session to the mailbox's node");
                Err(e)
            }
        }
    }
}

/// Hands an actor's signed-in session to its home ([`Proxy::take_over`]): once the home
/// has it, the actor's connection only carries bytes and the actor stops; otherwise
/// `refused` answers the sign-in command (told whether the user has too many sessions
/// at the home).
pub fn hand_to_home<A, R>(
    actor: &mut A,
    ctx: &mut actix::Context<A>,
    proxy: Arc<Proxy>,
    node: Arc<NodeContext>,
    record: AccountRecord,
    request: OpenRequest,
    refused: R,
) where
    A: SessionActor,
    R: FnOnce(&mut A, bool, &mut actix::Context<A>) + 'static,
{
    let flow = actor.flow();
    flow.span.record("user", record.address());
    let span = flow.span.clone();
    let counted_as = crate::metrics::Protocol::from(request.protocol);
    let opening = proxy.take_over(node, record, request, span);
    ctx.spawn(
        opening
            .into_actor(actor)
            .map(move |opened, actor, ctx| match opened {
                Ok(splice) => {
                    crate::metrics::count_login(counted_as, LoginResult::Success);
                    actor.flow().outbox.send(Outgoing::Splice(splice));
                    ctx.stop();
                }
                Err(e) => {
                    let too_many = e.too_many_connections();
                    let result = if too_many {
                        LoginResult::Throttled
                    } else {
                        LoginResult::Unavailable
                    };
                    crate::metrics::count_login(counted_as, result);
                    refused(actor, too_many, ctx)
                }
            }),
    );
}

/// What a session actor hands its connection task once the home has taken the session.
pub struct Splice {
    pub link: ProxiedLink,
    pub protocol: SessionProtocol,
    pub proxy: Arc<Proxy>,
    /// The session's span, for its last log line (the actor is gone by then).
    pub span: Span,
}

impl std::fmt::Debug for Splice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Splice")
            .field("home", &self.link.home)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// How one direction of a spliced session stopped.
enum Carried {
    /// The sender closed its side cleanly.
    Ended,
    ReadFailed(io::Error),
    WriteFailed(io::Error),
    /// The receiver read nothing for the write timeout.
    WriteStalled,
}

/// Smallest and largest read buffer of [`carry`]: an idle session holds the smallest;
/// a stream of data grows it.
const CARRY_MIN: usize = 2 * 1024;
const CARRY_MAX: usize = 64 * 1024;

/// The last bytes carried one way.
type Tail = [u8; 4];

fn keep_tail(tail: &mut Tail, bytes: &[u8]) {
    let n = bytes.len().min(tail.len());
    tail.rotate_left(n);
    let keep = tail.len() - n;
    tail[keep..].copy_from_slice(&bytes[bytes.len() - n..]);
}

/// Copies `from` to `to` until either fails or `from` ends, counting the bytes and
/// keeping the last ones in `tail`. The buffer doubles while reads fill it and shrinks
/// back after a short read.
async fn carry<R, W>(
    from: &mut R,
    to: &mut W,
    count: &mut u64,
    tail: &mut Tail,
    write_timeout: Duration,
) -> Carried
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CARRY_MIN];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => return Carried::Ended,
            Ok(n) => n,
            Err(e) => return Carried::ReadFailed(e),
        };
        let write = async {
            to.write_all(&buf[..n]).await?;
            to.flush().await
        };
        match tokio::time::timeout(write_timeout, write).await {
            Ok(Ok(())) => {
                *count += n as u64;
                keep_tail(tail, &buf[..n]);
            }
            Ok(Err(e)) => return Carried::WriteFailed(e),
            Err(_) => return Carried::WriteStalled,
        }
        if n == buf.len() && buf.len() < CARRY_MAX {
            buf = vec![0u8; buf.len() * 2];
        } else if n < CARRY_MIN && buf.len() > CARRY_MIN {
            buf = vec![0u8; CARRY_MIN];
        }
    }
}

/// Said to a client whose home node was lost mid-session.
fn goodbye(protocol: SessionProtocol) -> &'static [u8] {
    match protocol {
        SessionProtocol::Imap => {
            b"* BYE [UNAVAILABLE] The server that holds your mailbox is unavailable, please reconnect later\r\n"
        }
        SessionProtocol::Pop3 => {
            b"-ERR [SYS/TEMP] The server that holds your mailbox is unavailable, try again later\r\n"
        }
    }
}

/// How a DEFLATE sync flush ends (RFC 1951 §3.2.4: an empty stored block, after which
/// the stream is byte-aligned): what a home with IMAP COMPRESS on ends every batch with.
const SYNC_FLUSH_END: Tail = [0x00, 0x00, 0xff, 0xff];

/// The goodbye for a client whose home was lost, after `tail`: in a DEFLATE stored
/// block when the home's last bytes ended a sync flush (the client inflates all it
/// reads), else as it is.
fn goodbye_after(protocol: SessionProtocol, tail: &Tail) -> Vec<u8> {
    let text = goodbye(protocol);
    if protocol != SessionProtocol::Imap || *tail != SYNC_FLUSH_END {
        return text.to_vec();
    }
    // BFINAL 0, BTYPE 00, padding; then LEN and its complement, little-endian.
    let len = text.len() as u16;
    let mut block = vec![0x00];
    block.extend_from_slice(&len.to_le_bytes());
    block.extend_from_slice(&(!len).to_le_bytes());
    block.extend_from_slice(text);
    block
}

/// A random pause within [`GOODBYE_SPREAD`].
fn spread() -> Duration {
    let mut bytes = [0u8; 8];
    let random = getrandom::fill(&mut bytes).map_or(0, |()| u64::from_le_bytes(bytes));
    let spread = GOODBYE_SPREAD.as_millis() as u64;
    Duration::from_millis(random % spread.max(1))
}

/// Carries a proxied session's bytes between the client and its home until either
/// side ends it. A home that goes away without closing the session (a crash, a lost
/// network) is reported to the site router, and the client is told so after a random
/// pause within [`GOODBYE_SPREAD`].
pub async fn splice(
    client: &mut ClientStream,
    splice: Splice,
    shutdown: &mut watch::Receiver<bool>,
    write_timeout: Duration,
    stats: &mut ConnectionStats,
) -> EndReason {
    let Splice {
        link,
        protocol,
        proxy,
        span,
    } = splice;
    let _proxied = crate::metrics::proxy_session_opened(protocol);
    let ProxiedLink {
        stream,
        early,
        home,
    } = link;
    let reason = carry_both(
        client,
        stream,
        early,
        protocol,
        shutdown,
        write_timeout,
        stats,
    )
    .await;
    if matches!(reason, EndReason::HomeLost) {
        tracing::warn!(parent: &span, %home, "the mailbox's node was lost mid-session");
        proxy.report_failed(&home);
    }
    tracing::info!(
        parent: &span,
        reason = ?reason,
        bytes_in = stats.bytes_in,
        bytes_out = stats.bytes_out,
        %home,
        "session ended"
    );
    reason
}

async fn carry_both(
    client: &mut ClientStream,
    home: HomeStream,
    early: BytesMut,
    protocol: SessionProtocol,
    shutdown: &mut watch::Receiver<bool>,
    write_timeout: Duration,
    stats: &mut ConnectionStats,
) -> EndReason {
    if !early.is_empty() {
        let write = async {
            client.write_all(&early).await?;
            client.flush().await
        };
        match tokio::time::timeout(write_timeout, write).await {
            Ok(Ok(())) => stats.bytes_out += early.len() as u64,
            Ok(Err(e)) => return EndReason::Error(e),
            Err(_) => return EndReason::WriteTimeout,
        }
    }
    let mut tail = Tail::default();
    keep_tail(&mut tail, &early);
    // Not held for the session's life.
    drop(early);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut home_read, mut home_write) = tokio::io::split(home);
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let mut client_tail = Tail::default();
    enum Side {
        Home(Carried),
        Client(Carried),
        Shutdown,
    }
    let side = tokio::select! {
        carried = carry(&mut home_read, &mut client_write, &mut bytes_out, &mut tail, write_timeout) => Side::Home(carried),
        carried = carry(&mut client_read, &mut home_write, &mut bytes_in, &mut client_tail, write_timeout) => Side::Client(carried),
        _ = shutdown.changed() => Side::Shutdown,
    };
    stats.bytes_in += bytes_in;
    stats.bytes_out += bytes_out;
    let lost = match side {
        Side::Home(Carried::Ended) => {
            let _ = tokio::time::timeout(Duration::from_secs(2), client_write.shutdown()).await;
            return EndReason::ServerClosed;
        }
        Side::Home(Carried::ReadFailed(_)) => true,
        Side::Home(Carried::WriteFailed(e)) => return EndReason::Error(e),
        Side::Home(Carried::WriteStalled) => return EndReason::WriteTimeout,
        Side::Client(Carried::Ended) => {
            let _ = tokio::time::timeout(Duration::from_secs(2), home_write.shutdown()).await;
            return EndReason::ClientClosed;
        }
        Side::Client(Carried::ReadFailed(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return EndReason::ClientClosed;
        }
        Side::Client(Carried::ReadFailed(e)) => return EndReason::Error(e),
        Side::Client(Carried::WriteFailed(_) | Carried::WriteStalled) => true,
        Side::Shutdown => return EndReason::Shutdown,
    };
    if lost {
        drop((home_read, home_write));
        tokio::select! {
            _ = tokio::time::sleep(spread()) => {}
            _ = shutdown.changed() => {}
        }
        let goodbye = goodbye_after(protocol, &tail);
        let write = async {
            client_write.write_all(&goodbye).await?;
            client_write.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
    }
    EndReason::HomeLost
}

/// Whether this node (`me`) may serve `open`, by its own replica's `record` of the
/// user: only where the record places the mailbox here, at the move epoch the proxy
/// saw, and only one hop from the client.
pub fn fence(
    record: Option<AccountRecord>,
    me: &str,
    open: &OpenSession,
) -> Result<AccountRecord, OpenRefused> {
    if open.hops > MAX_HOPS {
        return Err(OpenRefused::TooManyHops);
    }
    match record {
        Some(record) if record.home() == me && record.fields().move_epoch == open.move_epoch => {
            Ok(record)
        }
        other => Err(OpenRefused::NotHome {
            home: other.as_ref().map(|r| r.home().to_string()),
            move_epoch: other.map(|r| r.fields().move_epoch),
        }),
    }
}

/// A session the home node took: its account, and its places under the limits.
pub struct Admitted {
    pub account: Account,
    pub user_slot: UserSlot,
    pub connection_slot: ConnectionSlot,
}

/// The home node's checks before it takes a session: the fence (its replica places
/// the mailbox here, at the move epoch the caller saw), the hop count, and the limits.
pub async fn admit(node: &Arc<NodeContext>, open: &OpenSession) -> Result<Admitted, OpenRefused> {
    // Taken before the fence reads the record: a move either waits for this session,
    // or is over and the fence sees it.
    let lease = node
        .accounts
        .gate()
        .enter(&crate::auth::normalize_address(&open.user))
        .ok_or_else(|| {
            OpenRefused::Unavailable("the mailbox is being moved to another node".into())
        })?;
    let record = node
        .accounts
        .known_record(&open.user)
        .map_err(|e| OpenRefused::Unavailable(e.to_string()))?;
    let record = fence(record, &node.node_name, open)?;
    let accounts = node.accounts.clone();
    let address = record.address().to_string();
    let account = tokio::task::spawn_blocking(move || accounts.here(&address))
        .await
        .map_err(|e| OpenRefused::Unavailable(e.to_string()))?
        .map_err(|e| OpenRefused::Unavailable(e.to_string()))?
        .ok_or_else(|| OpenRefused::Unavailable("the mailbox cannot be opened".into()))?;
    let connection_slot = node
        .limits
        .admit(open.client.ip())
        .ok_or(OpenRefused::TooManyConnections)?;
    let user_slot = node
        .limits
        .admit_user(&account.address)
        .ok_or(OpenRefused::TooManyConnections)?;
    let user_slot = user_slot.holding(lease);
    Ok(Admitted {
        account,
        user_slot,
        connection_slot,
    })
}

/// Takes a session another node hands over with `open`: checks it ([`admit`]),
/// answers, and runs it on this connection until it ends.
pub async fn serve_opened(
    node: Arc<NodeContext>,
    mut link: Link<ProxiedStream>,
    open: OpenSession,
) {
    let via = link.peer().to_string();
    let admitted = match admit(&node, &open).await {
        Ok(admitted) => admitted,
        Err(refused) => {
            tracing::info!(user = %open.user, %via, session = open.session, ?refused, "refused a proxied session");
            let _ = link.answer(Answer::Opened(Err(refused))).await;
            return;
        }
    };
    if link.answer(Answer::Opened(Ok(()))).await.is_err() {
        return;
    }
    let (stream, leftover) = link.into_stream();
    let mut open = open;
    open.pending.extend_from_slice(&leftover);
    let handed = HandedOver {
        stream: ClientStream::Tls(Box::new(stream)),
        via,
        open,
    };
    let Admitted {
        account,
        user_slot,
        connection_slot,
    } = admitted;
    let _connection_slot = connection_slot;
    match handed.open.protocol {
        SessionProtocol::Imap => {
            crate::imap::serve_handed_over(node, handed, account, user_slot).await
        }
        SessionProtocol::Pop3 => {
            crate::pop3::serve_handed_over(node, handed, account, user_slot).await
        }
    }
}

/// A session another node signed in, on its connection from that node.
pub struct HandedOver {
    pub stream: ClientStream,
    /// The node the client reached.
    pub via: String,
    pub open: OpenSession,
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_directory::AccountV2;

    fn open(move_epoch: u64, hops: u8) -> OpenSession {
        OpenSession {
            protocol: SessionProtocol::Imap,
            user: "ann@example.com".into(),
            move_epoch,
            client: "127.0.0.1:40000".parse().expect("address"),
            session: 7,
            tls: true,
            hops,
            login: LoginHandOff::Imap {
                tag: "a".into(),
                bad_commands: 0,
            },
            pending: Vec::new(),
        }
    }

    fn record(home: &str, move_epoch: u64) -> AccountRecord {
        let mut fields = AccountV2::new("ann@example.com", "!", home, 0);
        fields.move_epoch = move_epoch;
        AccountRecord::new(fields)
    }

    #[test]
    fn the_goodbye_after_a_lost_home_fits_a_compressed_session() {
        use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
        let mut tail = Tail::default();
        keep_tail(&mut tail, b"* OK [CAPABILITY IMAP4rev2] Logged in\r\n");
        keep_tail(&mut tail, b"a");
        assert_eq!(&tail, b"n\r\na");
        let bye = goodbye(SessionProtocol::Imap);
        // In the clear: the goodbye as it is.
        keep_tail(&mut tail, b"a OK DEFLATE active\r\n");
        assert_eq!(goodbye_after(SessionProtocol::Imap, &tail), bye);
        // Compressed: the home's last batch ended in a sync flush, the goodbye follows
        // it as a stored block, and the client inflates both.
        let mut home = Compress::new(Compression::default(), false);
        let mut wire = Vec::with_capacity(4096);
        home.compress_vec(b"* 2 EXISTS\r\n", &mut wire, FlushCompress::Sync)
            .unwrap();
        keep_tail(&mut tail, &wire);
        let block = goodbye_after(SessionProtocol::Imap, &tail);
        assert_ne!(block, bye);
        wire.extend_from_slice(&block);
        let mut client = Decompress::new(false);
        let mut text = Vec::with_capacity(4096);
        client
            .decompress_vec(&wire, &mut text, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(text, [&b"* 2 EXISTS\r\n"[..], bye].concat());
        // POP3 has no compression.
        assert_eq!(
            goodbye_after(SessionProtocol::Pop3, &tail),
            goodbye(SessionProtocol::Pop3)
        );
    }

    #[test]
    fn only_the_home_at_the_epoch_the_proxy_saw_serves_a_session() {
        assert_eq!(
            fence(Some(record("s2", 3)), "s2", &open(3, 1)),
            Ok(record("s2", 3))
        );
        // Moved away: the old home refuses, naming the new one.
        assert_eq!(
            fence(Some(record("d2", 4)), "s2", &open(3, 1)),
            Err(OpenRefused::NotHome {
                home: Some("d2".into()),
                move_epoch: Some(4)
            })
        );
        // Moved away and back since the proxy looked: not at the epoch it saw.
        assert_eq!(
            fence(Some(record("s2", 5)), "s2", &open(3, 1)),
            Err(OpenRefused::NotHome {
                home: Some("s2".into()),
                move_epoch: Some(5)
            })
        );
        assert_eq!(
            fence(None, "s2", &open(3, 1)),
            Err(OpenRefused::NotHome {
                home: None,
                move_epoch: None
            })
        );
        // A second hop is never taken, even to the right home.
        assert_eq!(
            fence(Some(record("s2", 3)), "s2", &open(3, 2)),
            Err(OpenRefused::TooManyHops)
        );
    }
}
