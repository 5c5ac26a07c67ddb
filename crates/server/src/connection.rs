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

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

use crate::mailbox::SessionId;
use crate::node::NodeContext;

/// A client's stream, before or after TLS.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Transient: the plain stream has been handed to the TLS handshake.
    Upgrading,
}

impl ClientStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
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
            ClientStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ClientStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
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
    /// From now on, close the connection after this long without client input.
    IdleTimeout(Duration),
    Close,
}

/// Bytes the actor may queue before a client that does not read is cut off.
const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;
/// Queued bytes above which an actor should hold back further fetches.
pub const QUEUE_HIGH_WATER: usize = 1024 * 1024;

/// The actor's end of the connection.
pub struct Outbox {
    sender: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<AtomicUsize>,
    resume: Arc<Notify>,
}

impl Outbox {
    pub fn write(&self, bytes: impl Into<Bytes>) {
        let bytes = bytes.into();
        let queued = self.queued.fetch_add(bytes.len(), Ordering::AcqRel) + bytes.len();
        if queued > MAX_QUEUED_BYTES {
            tracing::warn!(queued, "client is not reading its responses; closing");
            let _ = self.sender.send(Outgoing::Close);
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
}

pub fn channel() -> (Outbox, Inbox) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let resume = Arc::new(Notify::new());
    (
        Outbox {
            sender,
            queued: queued.clone(),
            resume: resume.clone(),
        },
        Inbox {
            receiver,
            queued,
            resume,
        },
    )
}

/// Totals reported in the session's last log line.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Why a connection ended.
#[derive(Debug)]
pub enum EndReason {
    ClientClosed,
    ServerClosed,
    IdleTimeout,
    Shutdown,
    Error(io::Error),
}

/// Settings of one connection task.
pub struct ConnectionSettings {
    pub idle_timeout: Duration,
    pub acceptor: TlsAcceptor,
    /// Written when the idle timeout closes the connection.
    pub timeout_message: &'static [u8],
    pub shutdown: watch::Receiver<bool>,
}

/// How long the server waits for a session to say goodbye at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// TLS handshakes that take longer than this are dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a connection until it ends; tells the actor how it ended.
pub async fn drive(
    mut stream: ClientStream,
    ports: SessionPorts,
    mut inbox: Inbox,
    mut settings: ConnectionSettings,
) {
    let mut stats = ConnectionStats::default();
    let reason = run(&mut stream, &ports, &mut inbox, &mut settings, &mut stats).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
    ports.ended.do_send(ConnectionEnded { reason, stats });
}

async fn run(
    stream: &mut ClientStream,
    ports: &SessionPorts,
    inbox: &mut Inbox,
    settings: &mut ConnectionSettings,
    stats: &mut ConnectionStats,
) -> EndReason {
    let mut buf = vec![0u8; 16 * 1024];
    let mut paused = false;
    let mut shutting_down = false;
    let mut deadline = tokio::time::Instant::now() + settings.idle_timeout;
    loop {
        tokio::select! {
            biased;
            item = inbox.receiver.recv() => match item {
                Some(Outgoing::Write(bytes)) => {
                    let written = stream.write_all(&bytes).await;
                    inbox.queued.fetch_sub(bytes.len(), Ordering::AcqRel);
                    if let Err(e) = written {
                        return EndReason::Error(e);
                    }
                    stats.bytes_out += bytes.len() as u64;
                    if inbox.receiver.is_empty()
                        && let Err(e) = stream.flush().await
                    {
                        return EndReason::Error(e);
                    }
                }
                Some(Outgoing::StartTls) => {
                    if let Err(e) = stream.flush().await {
                        return EndReason::Error(e);
                    }
                    let plain = std::mem::replace(stream, ClientStream::Upgrading);
                    let handshake = plain.start_tls(&settings.acceptor);
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(tls)) => {
                            *stream = tls;
                            if ports.tls.send(TlsEstablished).await.is_err() {
                                return EndReason::ServerClosed;
                            }
                        }
                        Ok(Err(e)) => return EndReason::Error(e),
                        Err(_) => return EndReason::IdleTimeout,
                    }
                }
                Some(Outgoing::IdleTimeout(timeout)) => {
                    settings.idle_timeout = timeout;
                    deadline = tokio::time::Instant::now() + timeout;
                }
                Some(Outgoing::Close) | None => {
                    let _ = stream.flush().await;
                    return if shutting_down { EndReason::Shutdown } else { EndReason::ServerClosed };
                }
            },
            _ = settings.shutdown.changed(), if !shutting_down => {
                shutting_down = true;
                deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
                let _ = ports.shutdown.send(ServerShutdown).await;
            }
            _ = inbox.resume.notified(), if paused => {
                paused = false;
            }
            read = stream.read(&mut buf), if !paused && !shutting_down => match read {
                Ok(0) => return EndReason::ClientClosed,
                Ok(n) => {
                    stats.bytes_in += n as u64;
                    deadline = tokio::time::Instant::now() + settings.idle_timeout;
                    match ports.bytes.send(ClientBytes(Bytes::copy_from_slice(&buf[..n]))).await {
                        Ok(ReadControl::Continue) => {}
                        Ok(ReadControl::Pause) => paused = true,
                        Err(_) => return EndReason::ServerClosed,
                    }
                }
                // A client that drops TCP without TLS close_notify has still just left.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return EndReason::ClientClosed,
                Err(e) => return EndReason::Error(e),
            },
            _ = tokio::time::sleep_until(deadline) => {
                if shutting_down {
                    return EndReason::Shutdown;
                }
                let _ = stream.write_all(settings.timeout_message).await;
                let _ = stream.flush().await;
                return EndReason::IdleTimeout;
            }
        }
    }
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
    /// Idle time allowed before sign-in.
    pub unauthenticated_timeout: Duration,
    /// Written when the idle timeout closes the connection.
    pub timeout_message: &'static [u8],
}

/// What a session actor is given when it is made.
pub struct NewSession {
    pub id: SessionId,
    pub span: Span,
    pub outbox: Outbox,
    pub client: std::net::SocketAddr,
    pub tls: bool,
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
    A: Actor<Context = actix::Context<A>>
        + Handler<ClientBytes>
        + Handler<TlsEstablished>
        + Handler<ServerShutdown>
        + Handler<ConnectionEnded>,
    F: FnOnce(NewSession) -> A,
{
    let id = node.next_session_id();
    let span = tracing::info_span!(
        "session",
        id,
        protocol = protocol.name,
        client = %peer,
        node = %node.node_name,
        user = tracing::field::Empty,
    );
    let stream = if implicit_tls {
        match accept_implicit_tls(tcp, &node.tls, peer).await {
            Some(stream) => stream,
            None => return,
        }
    } else {
        ClientStream::Plain(tcp)
    };
    let (outbox, inbox) = channel();
    tracing::info!(parent: &span, tls = stream.is_tls(), "connected");
    let actor = make(NewSession {
        id,
        span,
        outbox,
        client: peer,
        tls: stream.is_tls(),
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
        acceptor: node.tls.clone(),
        timeout_message: protocol.timeout_message,
        shutdown: node.shutdown.clone(),
    };
    drive(stream, ports, inbox, settings).await;
}

/// The one `info` line at the end of every session.
pub fn log_session_end(span: &Span, ended: &ConnectionEnded, commands: u64) {
    tracing::info!(
        parent: span,
        reason = ?ended.reason,
        bytes_in = ended.stats.bytes_in,
        bytes_out = ended.stats.bytes_out,
        commands,
        "session ended"
    );
}

/// The flow-control state every session actor keeps beside its protocol machine.
pub struct Flow {
    pub outbox: Outbox,
    pub span: Span,
    /// A request to the host is in flight; the machine waits for its answer.
    pub awaiting: bool,
    /// The connection task was told to stop reading until the machine is free again.
    pub reader_paused: bool,
    /// The server is shutting down while a request was in flight: the machine hears of
    /// it once the answer is in, so what was stored is also acknowledged.
    pub shutdown_pending: bool,
}

impl Flow {
    pub fn new(outbox: Outbox, span: Span) -> Self {
        Flow {
            outbox,
            span,
            awaiting: false,
            reader_paused: false,
            shutdown_pending: false,
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
    fn shutdown(&mut self);
    /// Commands the client sent, for the last log line.
    fn commands(&self) -> u64;
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
        if flow.awaiting || !flow.shutdown_pending {
            break;
        }
        flow.shutdown_pending = false;
        actor.shutdown();
    }
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
                self.flow().shutdown_pending = true;
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
                let commands = self.commands();
                $crate::connection::log_session_end(&self.flow().span, &msg, commands);
                actix::ActorContext::stop(ctx);
            }
        }
    };
}
pub(crate) use session_handlers;
