//! The socket side of a client session, shared by every protocol.
//!
//! A connection task owns the TCP (or TLS) stream — it has to, because STARTTLS/STLS
//! swaps the stream for a TLS one mid-session. It reads and hands the bytes to the
//! session actor, and writes what the actor queues on its [`Outbox`]. The actor owns
//! the protocol machine and never touches the socket.
//!
//! Flow control: while the machine waits for the store, the actor answers
//! [`ReadControl::Pause`] and the task stops reading until [`Outbox::resume_reading`];
//! what the actor queues for writing is counted, so an actor can hold back work while a
//! slow client drains, and a client that stops reading altogether is cut off.
//!
//! IMAP COMPRESS swaps the stream for a [`DeflateStream`] around it (after TLS, as
//! RFC 4978 §3 orders): the actor's bytes, flow control and deadlines are the same; the
//! task flushes whenever its queue runs empty, which ends each batch with a sync flush.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{Instrument, Span};

use crate::deflate::{DeflateStream, DeflateTotals};
use crate::mailbox::SessionId;
use crate::node::NodeContext;

/// A client's stream, before or after TLS, and with COMPRESS.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// IMAP COMPRESS=DEFLATE on a plain or TLS stream.
    Deflate(Box<DeflateStream<ClientStream>>),
    /// Transient: the stream has been handed to the TLS handshake or to compression.
    Upgrading,
}

impl ClientStream {
    pub fn is_tls(&self) -> bool {
        match self {
            ClientStream::Tls(_) => true,
            ClientStream::Deflate(deflate) => deflate.get_ref().is_tls(),
            ClientStream::Plain(_) | ClientStream::Upgrading => false,
        }
    }

    fn deflate(&self) -> Option<&DeflateStream<ClientStream>> {
        match self {
            ClientStream::Deflate(deflate) => Some(deflate),
            _ => None,
        }
    }

    /// Runs the server side of a TLS handshake on a plain stream.
    pub async fn start_tls(self, acceptor: &TlsAcceptor) -> io::Result<ClientStream> {
        match self {
            ClientStream::Plain(tcp) => {
                let tls = acceptor.accept(tcp).await?;
                Ok(ClientStream::Tls(Box::new(tls)))
            }
            _ => Err(io::Error::other("TLS is already active")),
        }
    }
}

fn upgrading() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "stream is being upgraded to TLS",
    )
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ClientStream::Deflate(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ClientStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ClientStream::Deflate(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ClientStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ClientStream::Deflate(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ClientStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ClientStream::Deflate(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ClientStream::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// What a session actor asks its connection task to do.
#[derive(Debug)]
pub enum Outgoing {
    Write(Bytes),
    /// Upgrade to TLS now; everything queued before has been written.
    StartTls,
    /// IMAP COMPRESS=DEFLATE from now on, both ways; what was queued before goes out
    /// uncompressed. The bytes are what the client sent behind the command, the start
    /// of its compressed stream.
    Compress(Vec<u8>),
    /// From now on, close the connection after this long without client input.
    IdleTimeout(Duration),
    /// The session's home node took it over: from now on only carry bytes.
    Splice(Box<crate::proxy::Splice>),
    Close,
}

/// Bytes the actor may queue before a client that does not read is cut off. One item
/// may be bigger when nothing else waits (one message's huge ENVELOPE or BODY[]):
/// producers wait for the queue to drain before adding more ([`Outbox::drained`]),
/// so only a client that reads nothing lets the queue grow past this.
const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;
/// Queued bytes above which an actor holds back further output ([`Outbox::drained`]).
pub const QUEUE_HIGH_WATER: usize = 1024 * 1024;

/// The actor's end of the connection.
pub struct Outbox {
    sender: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<AtomicUsize>,
    resume: Arc<Notify>,
    cut: Arc<CutOff>,
    /// Told when a write brings the queue down to [`QUEUE_HIGH_WATER`].
    drained: Arc<Notify>,
}

/// Raised when a client has stopped reading: the task ends the connection at once,
/// even in the middle of a write, rather than after the backlog (which a client that
/// never reads would never let it reach).
#[derive(Default)]
struct CutOff {
    raised: AtomicBool,
    notify: Notify,
}

impl Outbox {
    pub fn write(&self, bytes: impl Into<Bytes>) {
        if self.cut.raised.load(Ordering::Acquire) {
            return;
        }
        let bytes = bytes.into();
        let len = bytes.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        let queued = before + len;
        if before > 0 && queued > MAX_QUEUED_BYTES {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            if !self.cut.raised.swap(true, Ordering::AcqRel) {
                tracing::warn!(queued, "client is not reading its responses; closing");
                self.cut.notify.notify_one();
            }
            return;
        }
        let _ = self.sender.send(Outgoing::Write(bytes));
    }

    pub fn send(&self, item: Outgoing) {
        let _ = self.sender.send(item);
    }

    /// Bytes queued and not yet written to the socket.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Resolves once the client has read the queue down to [`QUEUE_HIGH_WATER`], or
    /// the connection has ended: what a command produces next is made only then, so a
    /// slow reader holds a slice or two of it in memory, never all of it.
    pub fn drained(&self) -> impl std::future::Future<Output = ()> + 'static {
        let queued = self.queued.clone();
        let drained = self.drained.clone();
        let cut = self.cut.clone();
        async move {
            loop {
                let notified = drained.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if queued.load(Ordering::Acquire) <= QUEUE_HIGH_WATER
                    || cut.raised.load(Ordering::Acquire)
                {
                    return;
                }
                notified.await;
            }
        }
    }

    /// Lets the connection task read again after a [`ReadControl::Pause`].
    pub fn resume_reading(&self) {
        self.resume.notify_one();
    }
}

/// Whether the task may read more input right away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadControl {
    Continue,
    Pause,
}

/// Bytes from the client.
#[derive(Message)]
#[rtype(result = "ReadControl")]
pub struct ClientBytes(pub Bytes);

/// TLS is up after STARTTLS/STLS.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TlsEstablished;

/// The node is shutting down: say goodbye and close.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ServerShutdown;

/// The connection is gone (EOF, error, timeout); the actor logs the session's last line
/// and stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectionEnded {
    pub reason: EndReason,
    pub stats: ConnectionStats,
}

/// Where the connection task delivers what happens on the socket.
pub struct SessionPorts {
    pub bytes: Recipient<ClientBytes>,
    pub tls: Recipient<TlsEstablished>,
    pub shutdown: Recipient<ServerShutdown>,
    pub ended: Recipient<ConnectionEnded>,
}

/// The task's end of the connection, made together with the actor's [`Outbox`].
pub struct Inbox {
    receiver: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<AtomicUsize>,
    resume: Arc<Notify>,
    cut: Arc<CutOff>,
    drained: Arc<Notify>,
}

impl Inbox {
    /// Counts `len` bytes as written (or dropped) and wakes an actor waiting for the
    /// queue to drain.
    fn written(&self, len: usize) {
        let before = self.queued.fetch_sub(len, Ordering::AcqRel);
        if before.saturating_sub(len) <= QUEUE_HIGH_WATER {
            self.drained.notify_waiters();
        }
    }
}

impl Drop for Inbox {
    /// The connection is over: nothing queued will be written, and an actor waiting
    /// for the queue to drain must not wait for ever.
    fn drop(&mut self) {
        self.cut.raised.store(true, Ordering::Release);
        self.drained.notify_waiters();
    }
}

pub fn channel() -> (Outbox, Inbox) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let resume = Arc::new(Notify::new());
    let cut = Arc::new(CutOff::default());
    let drained = Arc::new(Notify::new());
    (
        Outbox {
            sender,
            queued: queued.clone(),
            resume: resume.clone(),
            cut: cut.clone(),
            drained: drained.clone(),
        },
        Inbox {
            receiver,
            queued,
            resume,
            cut,
            drained,
        },
    )
}

/// Totals reported in the session's last log line.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// What the session read and wrote (after inflating, before deflating).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// With COMPRESS: what crossed the wire, compressed.
    pub deflated: Option<DeflateTotals>,
}

/// Why a connection ended.
#[derive(Debug)]
pub enum EndReason {
    ClientClosed,
    ServerClosed,
    IdleTimeout,
    /// The session did not sign in within the unauthenticated timeout of connecting.
    SignInTimeout,
    /// A command line was begun and not finished within the idle timeout.
    LineTimeout,
    /// A write stalled past the write deadline: the client reads nothing.
    WriteTimeout,
    /// The client let more output pile up than a session may queue.
    NotReading,
    Shutdown,
    /// The node that holds the mailbox went away mid-session (proxied sessions).
    HomeLost,
    Error(io::Error),
}

impl EndReason {
    /// The client stopped reading: nothing more can be written to it, not even a
    /// goodbye.
    fn stalled(&self) -> bool {
        matches!(self, EndReason::WriteTimeout | EndReason::NotReading)
    }
}

/// Settings of one connection task.
pub struct ConnectionSettings {
    /// Time allowed without client input; also the time one command line may take
    /// from its first byte to its end, whatever trickles in between.
    pub idle_timeout: Duration,
    /// Until the session signs in (the actor's first [`Outgoing::IdleTimeout`]), the
    /// connection ends at this instant, however active the client is: a slowloris
    /// sending a byte a second keeps resetting the idle timer, not this one.
    pub sign_in_deadline: Option<tokio::time::Instant>,
    /// How long one write may wait for a client that reads nothing.
    pub write_timeout: Duration,
    pub acceptor: TlsAcceptor,
    /// Written when the idle timeout closes the connection.
    pub timeout_message: &'static [u8],
    pub shutdown: watch::Receiver<bool>,
}

/// The most handed to the stream in one write: below the allocator's mapping threshold
/// (`LARGE_ALLOCATION` in `serve.rs`), so TLS's buffers for it are reused.
const WRITE_PIECE: usize = 64 * 1024;

/// How long the server waits for a session to say goodbye at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// TLS handshakes that take longer than this are dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a goodbye line (timeout, shutdown) may wait for the client to read it.
const GOODBYE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a connection until it ends; tells the actor how it ended.
pub async fn drive(
    mut stream: ClientStream,
    ports: SessionPorts,
    mut inbox: Inbox,
    mut settings: ConnectionSettings,
) {
    let mut stats = ConnectionStats::default();
    let reason = match run(&mut stream, &ports, &mut inbox, &mut settings, &mut stats).await {
        Ran::Ended(reason) => reason,
        Ran::Handed(splice) => {
            drop(inbox);
            let timeout = settings.write_timeout;
            // The session's actor is gone; the splice logs the session's end.
            crate::proxy::splice(
                &mut stream,
                *splice,
                &mut settings.shutdown,
                timeout,
                &mut stats,
            )
            .await;
            return;
        }
    };
    // What is still queued goes now, not after a goodbye the client may never read.
    drop(inbox);
    let stalled = reason.stalled();
    // Every goodbye has been flushed by now: the totals are final.
    stats.deflated = stream.deflate().map(DeflateStream::totals);
    ports.ended.do_send(ConnectionEnded { reason, stats });
    if !stalled {
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
    }
}

/// Why the connection's next deadline would end it.
#[derive(Clone, Copy)]
enum Deadline {
    Idle,
    SignIn,
    Line,
    Shutdown,
}

impl Deadline {
    fn reason(self) -> EndReason {
        match self {
            Deadline::Idle => EndReason::IdleTimeout,
            Deadline::SignIn => EndReason::SignInTimeout,
            Deadline::Line => EndReason::LineTimeout,
            Deadline::Shutdown => EndReason::Shutdown,
        }
    }
}

/// Writes `bytes` (and flushes, when asked) unless the client stalls until `deadline`
/// or the actor cuts it off meanwhile.
async fn write_bounded(
    stream: &mut ClientStream,
    bytes: &[u8],
    flush: bool,
    deadline: tokio::time::Instant,
    cut: &CutOff,
) -> Result<(), EndReason> {
    let write = async {
        // In pieces: TLS encrypts what one write hands it into one buffer, and a buffer
        // past the allocator's mapping threshold costs fresh pages every time.
        for piece in bytes.chunks(WRITE_PIECE) {
            stream.write_all(piece).await?;
        }
        if flush {
            stream.flush().await?;
        }
        Ok::<_, io::Error>(())
    };
    tokio::select! {
        biased;
        _ = cut.notify.notified() => Err(EndReason::NotReading),
        written = tokio::time::timeout_at(deadline, write) => match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(EndReason::Error(e)),
            Err(_) => Err(EndReason::WriteTimeout),
        },
    }
}

/// How [`run`] stopped: the connection ended, or its session was handed to the
/// mailbox's home node and the connection only carries bytes from now on.
enum Ran {
    Ended(EndReason),
    Handed(Box<crate::proxy::Splice>),
}

impl From<EndReason> for Ran {
    fn from(reason: EndReason) -> Ran {
        Ran::Ended(reason)
    }
}

async fn run(
    stream: &mut ClientStream,
    ports: &SessionPorts,
    inbox: &mut Inbox,
    settings: &mut ConnectionSettings,
    stats: &mut ConnectionStats,
) -> Ran {
    let mut buf = vec![0u8; 16 * 1024];
    let mut paused = false;
    let mut shutting_down = false;
    let mut idle_deadline = tokio::time::Instant::now() + settings.idle_timeout;
    let mut shutdown_deadline = None;
    // When the first byte of a command line not yet ended came in.
    let mut line_started: Option<tokio::time::Instant> = None;
    loop {
        let (deadline, why) = next_deadline(
            settings.idle_timeout,
            settings.sign_in_deadline,
            idle_deadline,
            line_started,
            shutdown_deadline,
        );
        let release_at = stream.deflate().and_then(DeflateStream::release_at);
        tokio::select! {
            biased;
            _ = inbox.cut.notify.notified() => return EndReason::NotReading.into(),
            item = inbox.receiver.recv() => match item {
                Some(Outgoing::Write(bytes)) => {
                    let flush = inbox.receiver.is_empty();
                    let limit = write_deadline(settings, shutdown_deadline);
                    let written = write_bounded(stream, &bytes, flush, limit, &inbox.cut).await;
                    inbox.written(bytes.len());
                    if let Err(reason) = written {
                        return reason.into();
                    }
                    stats.bytes_out += bytes.len() as u64;
                }
                Some(Outgoing::StartTls) => {
                    let limit = write_deadline(settings, shutdown_deadline);
                    if let Err(reason) = write_bounded(stream, &[], true, limit, &inbox.cut).await {
                        return reason.into();
                    }
                    let plain = std::mem::replace(stream, ClientStream::Upgrading);
                    let handshake = plain.start_tls(&settings.acceptor);
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(tls)) => {
                            *stream = tls;
                            if ports.tls.send(TlsEstablished).await.is_err() {
                                return EndReason::ServerClosed.into();
                            }
                        }
                        Ok(Err(e)) => return EndReason::Error(e).into(),
                        Err(_) => return EndReason::IdleTimeout.into(),
                    }
                }
                Some(Outgoing::Compress(unread)) => {
                    // The tagged OK is the last byte in the clear: out before the switch.
                    let limit = write_deadline(settings, shutdown_deadline);
                    if let Err(reason) = write_bounded(stream, &[], true, limit, &inbox.cut).await {
                        return reason.into();
                    }
                    let inner = std::mem::replace(stream, ClientStream::Upgrading);
                    *stream = ClientStream::Deflate(Box::new(DeflateStream::new(inner, unread)));
                }
                Some(Outgoing::IdleTimeout(timeout)) => {
                    // The session signed in: from now on only idleness ends it.
                    settings.sign_in_deadline = None;
                    settings.idle_timeout = timeout;
                    idle_deadline = tokio::time::Instant::now() + timeout;
                }
                Some(Outgoing::Splice(splice)) => return Ran::Handed(splice),
                Some(Outgoing::Close) | None => {
                    let limit = tokio::time::Instant::now() + GOODBYE_WRITE_TIMEOUT;
                    let _ = write_bounded(stream, &[], true, limit, &inbox.cut).await;
                    return if shutting_down { EndReason::Shutdown } else { EndReason::ServerClosed }.into();
                }
            },
            _ = settings.shutdown.changed(), if !shutting_down => {
                shutting_down = true;
                shutdown_deadline = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                let _ = ports.shutdown.send(ServerShutdown).await;
            }
            _ = inbox.resume.notified(), if paused => {
                paused = false;
                // The time the actor kept the client waiting is not the client's.
                if line_started.is_some() {
                    line_started = Some(tokio::time::Instant::now());
                }
            }
            read = stream.read(&mut buf), if !paused && !shutting_down => match read {
                Ok(0) => return EndReason::ClientClosed.into(),
                Ok(n) => {
                    stats.bytes_in += n as u64;
                    let now = tokio::time::Instant::now();
                    idle_deadline = now + settings.idle_timeout;
                    line_started = line_start(&buf[..n], line_started, now);
                    match ports.bytes.send(ClientBytes(Bytes::copy_from_slice(&buf[..n]))).await {
                        Ok(ReadControl::Continue) => {}
                        Ok(ReadControl::Pause) => paused = true,
                        Err(_) => return EndReason::ServerClosed.into(),
                    }
                }
                // A client that drops TCP without TLS close_notify has still just left.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return EndReason::ClientClosed.into(),
                Err(e) => return EndReason::Error(e).into(),
            },
            _ = tokio::time::sleep_until(release_at.unwrap_or(deadline)), if release_at.is_some_and(|at| at < deadline) => {
                if let ClientStream::Deflate(deflate) = stream {
                    deflate.release_idle(tokio::time::Instant::now());
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if !matches!(why, Deadline::Shutdown) {
                    let limit = tokio::time::Instant::now() + GOODBYE_WRITE_TIMEOUT;
                    let _ = write_bounded(stream, settings.timeout_message, true, limit, &inbox.cut)
                        .await;
                }
                return why.reason().into();
            }
        }
    }
}

/// When the line still unfinished after `chunk` began: none if the chunk ends a line,
/// now if it ends one and starts another, else when the unfinished line began. Every
/// protocol here is CRLF-framed; literals and message data have line ends too.
fn line_start(
    chunk: &[u8],
    previous: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
) -> Option<tokio::time::Instant> {
    match chunk.iter().rposition(|&b| b == b'\n') {
        Some(end) if end + 1 == chunk.len() => None,
        Some(_) => Some(now),
        None if chunk.is_empty() => previous,
        None => previous.or(Some(now)),
    }
}

/// The earliest instant that ends the connection, and why. At shutdown only the grace
/// period counts.
fn next_deadline(
    idle_timeout: Duration,
    sign_in: Option<tokio::time::Instant>,
    idle: tokio::time::Instant,
    line_started: Option<tokio::time::Instant>,
    shutdown: Option<tokio::time::Instant>,
) -> (tokio::time::Instant, Deadline) {
    if let Some(at) = shutdown {
        return (at, Deadline::Shutdown);
    }
    let mut earliest = (idle, Deadline::Idle);
    let candidates = [
        sign_in.map(|at| (at, Deadline::SignIn)),
        line_started.map(|at| (at + idle_timeout, Deadline::Line)),
    ];
    for (at, why) in candidates.into_iter().flatten() {
        if at < earliest.0 {
            earliest = (at, why);
        }
    }
    earliest
}

/// How long the next write may take: the write timeout, but no later than the sign-in
/// deadline before sign-in (a client pipelining commands it never reads the answers to
/// is still out at that deadline) or the end of the shutdown grace period.
fn write_deadline(
    settings: &ConnectionSettings,
    shutdown: Option<tokio::time::Instant>,
) -> tokio::time::Instant {
    let limit = tokio::time::Instant::now() + settings.write_timeout;
    [settings.sign_in_deadline, shutdown]
        .into_iter()
        .flatten()
        .fold(limit, tokio::time::Instant::min)
}

/// Accepts implicit TLS on a freshly accepted connection.
pub async fn accept_implicit_tls(
    tcp: TcpStream,
    acceptor: &TlsAcceptor,
    peer: SocketAddr,
) -> Option<ClientStream> {
    let handshake = ClientStream::Plain(tcp).start_tls(acceptor);
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake)
        .instrument(tracing::debug_span!("tls", client = %peer))
        .await
    {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(client = %peer, "TLS handshake timed out");
            None
        }
    }
}

/// What a protocol tells [`serve`] about itself.
pub struct ProtocolSettings {
    pub name: &'static str,
    /// The `protocol` label its sessions and commands are counted under.
    pub counted_as: crate::metrics::Protocol,
    /// Idle time allowed before sign-in.
    pub unauthenticated_timeout: Duration,
    /// Written when the idle timeout closes the connection.
    pub timeout_message: &'static [u8],
    /// The session must sign in within `unauthenticated_timeout` of connecting, input
    /// or not (IMAP and POP3; their actors announce the sign-in with
    /// [`Outgoing::IdleTimeout`]). SMTP has no sign-in to wait for, since mail
    /// exchangers never authenticate, so only its idle and line deadlines apply.
    pub sign_in_required: bool,
}

/// What a session actor is given when it is made.
pub struct NewSession {
    pub id: SessionId,
    pub span: Span,
    pub outbox: Outbox,
    pub client: std::net::SocketAddr,
    pub tls: bool,
}

/// The handlers every session actor has.
pub trait ConnectionActor:
    Actor<Context = actix::Context<Self>>
    + Handler<ClientBytes>
    + Handler<TlsEstablished>
    + Handler<ServerShutdown>
    + Handler<ConnectionEnded>
{
}

impl<A> ConnectionActor for A where
    A: Actor<Context = actix::Context<A>>
        + Handler<ClientBytes>
        + Handler<TlsEstablished>
        + Handler<ServerShutdown>
        + Handler<ConnectionEnded>
{
}

/// A session's span: its id, protocol, client and node, and the user once signed in;
/// `via` names the node the client reached when another node proxies it here.
fn session_span(id: u64, protocol: &str, client: SocketAddr, node: &str) -> Span {
    tracing::info_span!(
        "session",
        id,
        protocol,
        client = %client,
        node = %node,
        user = tracing::field::Empty,
        via = tracing::field::Empty,
    )
}

/// Serves one client connection of any protocol: makes its span, runs implicit TLS
/// when asked, starts the session actor `make` builds, and drives the socket until the
/// connection ends.
pub async fn serve<A, F>(
    node: Arc<NodeContext>,
    tcp: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    protocol: ProtocolSettings,
    make: F,
) where
    A: ConnectionActor,
    F: FnOnce(NewSession) -> A,
{
    // Counted from accept, implicit TLS handshake included.
    let sign_in_deadline = protocol
        .sign_in_required
        .then(|| tokio::time::Instant::now() + protocol.unauthenticated_timeout);
    // Open until this function returns or is dropped, whatever ends the session.
    let _open = crate::metrics::session_opened(protocol.counted_as);
    let id = node.next_session_id();
    let span = session_span(id, protocol.name, peer, &node.node_name);
    let stream = if implicit_tls {
        match accept_implicit_tls(tcp, &node.tls, peer).await {
            Some(stream) => stream,
            None => return,
        }
    } else {
        ClientStream::Plain(tcp)
    };
    let tls = stream.is_tls();
    tracing::info!(parent: &span, tls, "connected");
    let session = SessionStart {
        id,
        span,
        client: peer,
        tls,
    };
    run_session(node, stream, session, protocol, sign_in_deadline, make).await;
}

/// Serves a session another node signed in and handed over on `stream`: its span
/// carries the session id that node logs and the node's name (`via`), while the actor
/// gets an id of this node's own.
pub async fn serve_handed_over<A, F>(
    node: Arc<NodeContext>,
    handed: crate::proxy::HandedOver,
    protocol: ProtocolSettings,
    make: F,
) where
    A: ConnectionActor,
    F: FnOnce(NewSession) -> A,
{
    let _open = crate::metrics::session_opened(protocol.counted_as);
    let open = &handed.open;
    let span = session_span(open.session, protocol.name, open.client, &node.node_name);
    span.record("user", open.user.as_str());
    span.record("via", handed.via.as_str());
    tracing::info!(parent: &span, tls = open.tls, "connected through a proxy");
    let session = SessionStart {
        id: node.next_session_id(),
        span,
        client: open.client,
        tls: open.tls,
    };
    run_session(node, handed.stream, session, protocol, None, make).await;
}

/// A [`NewSession`] before its connection is made.
struct SessionStart {
    id: SessionId,
    span: Span,
    client: SocketAddr,
    tls: bool,
}

/// Starts the session's actor and drives its connection until it ends.
async fn run_session<A, F>(
    node: Arc<NodeContext>,
    stream: ClientStream,
    session: SessionStart,
    protocol: ProtocolSettings,
    sign_in_deadline: Option<tokio::time::Instant>,
    make: F,
) where
    A: ConnectionActor,
    F: FnOnce(NewSession) -> A,
{
    let (outbox, inbox) = channel();
    let SessionStart {
        id,
        span,
        client,
        tls,
    } = session;
    let actor = make(NewSession {
        id,
        span,
        outbox,
        client,
        tls,
    })
    .start();
    let ports = SessionPorts {
        bytes: actor.clone().recipient(),
        tls: actor.clone().recipient(),
        shutdown: actor.clone().recipient(),
        ended: actor.recipient(),
    };
    let settings = ConnectionSettings {
        idle_timeout: protocol.unauthenticated_timeout,
        sign_in_deadline,
        write_timeout: Duration::from_secs(node.config.security.write_timeout_secs.max(1)),
        acceptor: node.tls.clone(),
        timeout_message: protocol.timeout_message,
        shutdown: node.shutdown.clone(),
    };
    drive(stream, ports, inbox, settings).await;
}

/// The one `info` line at the end of every session.
pub fn log_session_end(span: &Span, ended: &ConnectionEnded, commands: u64) {
    let stats = &ended.stats;
    match stats.deflated {
        None => tracing::info!(
            parent: span,
            reason = ?ended.reason,
            bytes_in = stats.bytes_in,
            bytes_out = stats.bytes_out,
            commands,
            "session ended"
        ),
        // Compressed: what the session read and wrote, and what crossed the wire.
        Some(wire) => tracing::info!(
            parent: span,
            reason = ?ended.reason,
            bytes_in = stats.bytes_in,
            bytes_out = stats.bytes_out,
            deflated_in = wire.wire_in,
            deflated_out = wire.wire_out,
            commands,
            "session ended"
        ),
    }
}

/// The flow-control state every session actor keeps beside its protocol machine.
pub struct Flow {
    pub outbox: Outbox,
    pub span: Span,
    /// A request to the host is in flight; the machine waits for its answer.
    pub awaiting: bool,
    /// The connection task was told to stop reading until the machine is free again.
    pub reader_paused: bool,
    /// The session must end (the server is shutting down, or the mailbox is being
    /// moved) while a request was in flight: the machine hears of it once the answer is
    /// in, so what was stored is also acknowledged.
    pub ending: Option<Ending>,
}

/// Why the server ends a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Shutdown,
    /// The session's mailbox is being moved to another node ([`crate::gate`]).
    MailboxMoving,
}

/// The session's mailbox is being moved: it ends, as at a shutdown.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MailboxMoving;

/// Tells the session actor of a move of its mailbox, once the gate closes on `slot`;
/// the handle cancels that when the session gives the slot back.
pub fn end_when_evicted<A>(
    slot: &crate::node::UserSlot,
    ctx: &mut actix::Context<A>,
) -> actix::SpawnHandle
where
    A: Actor<Context = actix::Context<A>> + actix::Handler<MailboxMoving>,
{
    use actix::AsyncContext;
    use actix::fut::ActorFutureExt;
    let evicted = actix::fut::wrap_future::<_, A>(slot.evicted());
    ctx.spawn(evicted.map(|(), _actor, ctx| ctx.notify(MailboxMoving)))
}

impl Flow {
    pub fn new(outbox: Outbox, span: Span) -> Self {
        Flow {
            outbox,
            span,
            awaiting: false,
            reader_paused: false,
            ending: None,
        }
    }
}

/// A session actor: a protocol machine whose actions the actor carries out. The
/// handlers every such actor needs come from [`session_handlers!`].
pub trait SessionActor: Actor<Context = actix::Context<Self>> {
    type Action;
    fn flow(&mut self) -> &mut Flow;
    /// The machine's next action, if it has one.
    fn next_action(&mut self) -> Option<Self::Action>;
    fn perform(&mut self, action: Self::Action, ctx: &mut actix::Context<Self>);
    fn client_bytes(&mut self, bytes: &[u8]);
    fn tls_established(&mut self);
    fn shutdown(&mut self, why: Ending);
    /// Commands the client sent, for the last log line.
    fn commands(&self) -> u64;
    /// Counts in the metrics the commands the machine handled since the last call.
    fn count_commands(&mut self);
}

/// Carries out the machine's actions until it waits for the host or has none left, then
/// lets the connection read again if it was paused.
pub fn drive_session<A: SessionActor>(actor: &mut A, ctx: &mut actix::Context<A>) {
    let span = actor.flow().span.clone();
    let _entered = span.entered();
    loop {
        while !actor.flow().awaiting {
            let Some(action) = actor.next_action() else {
                break;
            };
            actor.perform(action, ctx);
        }
        let flow = actor.flow();
        if flow.awaiting {
            break;
        }
        let Some(why) = flow.ending.take() else {
            break;
        };
        actor.shutdown(why);
    }
    actor.count_commands();
    let flow = actor.flow();
    if !flow.awaiting && flow.reader_paused {
        flow.reader_paused = false;
        flow.outbox.resume_reading();
    }
}

/// The connection-facing handlers of a [`SessionActor`].
macro_rules! session_handlers {
    ($actor:ty) => {
        impl actix::Handler<$crate::connection::ClientBytes> for $actor {
            type Result = actix::MessageResult<$crate::connection::ClientBytes>;

            fn handle(
                &mut self,
                msg: $crate::connection::ClientBytes,
                ctx: &mut Self::Context,
            ) -> Self::Result {
                use $crate::connection::SessionActor;
                self.client_bytes(&msg.0);
                $crate::connection::drive_session(self, ctx);
                let flow = self.flow();
                flow.reader_paused = flow.awaiting;
                actix::MessageResult(if flow.awaiting {
                    $crate::connection::ReadControl::Pause
                } else {
                    $crate::connection::ReadControl::Continue
                })
            }
        }

        impl actix::Handler<$crate::connection::TlsEstablished> for $actor {
            type Result = ();

            fn handle(&mut self, _: $crate::connection::TlsEstablished, ctx: &mut Self::Context) {
                use $crate::connection::SessionActor;
                self.flow().awaiting = false;
                self.tls_established();
                $crate::connection::drive_session(self, ctx);
            }
        }

        impl actix::Handler<$crate::connection::ServerShutdown> for $actor {
            type Result = ();

            fn handle(&mut self, _: $crate::connection::ServerShutdown, ctx: &mut Self::Context) {
                use $crate::connection::SessionActor;
                // A store request in flight is answered first: a message is either
                // stored and acknowledged, or neither.
                self.flow().ending = Some($crate::connection::Ending::Shutdown);
                $crate::connection::drive_session(self, ctx);
            }
        }

        impl actix::Handler<$crate::connection::MailboxMoving> for $actor {
            type Result = ();

            fn handle(&mut self, _: $crate::connection::MailboxMoving, ctx: &mut Self::Context) {
                use $crate::connection::SessionActor;
                let flow = self.flow();
                // A shutdown says goodbye first.
                flow.ending
                    .get_or_insert($crate::connection::Ending::MailboxMoving);
                $crate::connection::drive_session(self, ctx);
            }
        }

        impl actix::Handler<$crate::connection::ConnectionEnded> for $actor {
            type Result = ();

            fn handle(
                &mut self,
                msg: $crate::connection::ConnectionEnded,
                ctx: &mut Self::Context,
            ) {
                use $crate::connection::SessionActor;
                self.count_commands();
                let commands = self.commands();
                $crate::connection::log_session_end(&self.flow().span, &msg, commands);
                actix::ActorContext::stop(ctx);
            }
        }
    };
}
pub(crate) use session_handlers;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn a_line_starts_with_its_first_byte_and_ends_with_lf() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        // Dribbled byte by byte, the line keeps its first byte's time.
        let mut started = None;
        for (i, b) in b"a NOOP".iter().enumerate() {
            let at = t0 + Duration::from_secs(i as u64);
            started = line_start(std::slice::from_ref(b), started, at);
            assert_eq!(started, Some(t0));
        }
        assert_eq!(line_start(b"\r\n", started, t1), None);
        assert_eq!(line_start(b"a NOOP\r\nb NO", None, t1), Some(t1));
        assert_eq!(line_start(b"OP\r\n", Some(t0), t1), None);
        assert_eq!(line_start(b"", Some(t0), t1), Some(t0));
    }

    #[test]
    fn the_earliest_deadline_wins_and_shutdown_overrides() {
        let t0 = Instant::now();
        let secs = |n| t0 + Duration::from_secs(n);
        let idle = Duration::from_secs(60);
        // A byte a second keeps the idle deadline moving; sign-in and line do not.
        let (at, why) = next_deadline(idle, Some(secs(60)), secs(119), Some(secs(30)), None);
        assert_eq!(at, secs(60));
        assert!(matches!(why, Deadline::SignIn));
        // Signed in: the line begun at 30 s ends at 90 s, before the idle deadline.
        let (at, why) = next_deadline(idle, None, secs(119), Some(secs(30)), None);
        assert_eq!(at, secs(90));
        assert!(matches!(why, Deadline::Line));
        let (at, why) = next_deadline(idle, None, secs(70), None, None);
        assert_eq!(at, secs(70));
        assert!(matches!(why, Deadline::Idle));
        let (at, why) = next_deadline(idle, Some(secs(1)), secs(2), Some(t0), Some(secs(5)));
        assert_eq!(at, secs(5));
        assert!(matches!(why, Deadline::Shutdown));
    }

    #[test]
    fn past_the_output_bound_the_connection_is_cut_and_nothing_more_queued() {
        let (outbox, mut inbox) = channel();
        outbox.write(vec![0u8; 1024]);
        outbox.write(vec![0u8; MAX_QUEUED_BYTES]);
        outbox.write(vec![0u8; 1024]);
        assert!(inbox.cut.raised.load(Ordering::Acquire));
        assert_eq!(outbox.queued(), 1024);
        // Alone in the queue, one item may be bigger.
        let (big, big_inbox) = channel();
        big.write(vec![0u8; MAX_QUEUED_BYTES + 1]);
        assert!(!big_inbox.cut.raised.load(Ordering::Acquire));
        assert_eq!(big.queued(), MAX_QUEUED_BYTES + 1);
        let mut written = 0;
        while let Ok(Outgoing::Write(bytes)) = inbox.receiver.try_recv() {
            written += bytes.len();
        }
        assert_eq!(written, 1024);
    }
}
