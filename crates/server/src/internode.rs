//! This node's end of the internode link: TCP from the node's own internode address
//! (so a rule on addresses can cut one node off), mutual TLS with the cluster's
//! certificates ([`crate::pki`]), then `portico_internode`'s handshake and frames. The
//! accepting side takes the caller's name from its certificate, and refuses, logging
//! the caller's address and why, a certificate from another CA or a node claiming a
//! name its certificate does not prove.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use portico_directory::{DirectoryNode, PeerNode, WriteError};
use portico_internode::{
    Answer, AnswerFuture, Call, CallHandler, Connector, DeliverRefused, Health, ImportPiece, Link,
    LinkError, OpenRefused, WriteRefused,
};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::listener::Workers;
use crate::node::NodeContext;
use crate::pki;
use crate::proxy::ProxiedStream;

/// Dials other nodes: from `local`, over mutual TLS, checking that the peer's
/// certificate is the node dialled.
pub struct TlsDialer {
    tls: TlsConnector,
    local: IpAddr,
}

impl TlsDialer {
    pub fn new(config: ClientConfig, local: IpAddr) -> TlsDialer {
        TlsDialer {
            tls: TlsConnector::from(Arc::new(config)),
            local,
        }
    }
}

impl Connector for TlsDialer {
    type Stream = tokio_rustls::client::TlsStream<ReadAhead<TcpStream>>;

    fn connect(
        &self,
        peer: &PeerNode,
    ) -> Pin<Box<dyn Future<Output = io::Result<Self::Stream>> + Send>> {
        let (tls, local, peer) = (self.tls.clone(), self.local, peer.clone());
        Box::pin(async move {
            let address: SocketAddr = peer.address.parse().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "node {:?} has internode address {:?}: {e}",
                        peer.name, peer.address
                    ),
                )
            })?;
            let socket = match address {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            socket.bind(SocketAddr::new(local, 0))?;
            let tcp = socket.connect(address).await?;
            tcp.set_nodelay(true)?;
            crate::proxy::keep_alive(&tcp);
            let name = pki::peer_server_name(&peer.name).map_err(io::Error::other)?;
            tls.connect(name, ReadAhead::new(tcp)).await
        })
    }
}

/// TLS reads the socket 4 KiB at a time: a stream of 16 KiB records (a proxied FETCH)
/// would cost four system calls each. This reads up to [`READ_AHEAD`] at once and
/// serves TLS from that; the buffer is given back whenever it is drained, so an idle
/// link holds none.
pub struct ReadAhead<S> {
    inner: S,
    buf: Vec<u8>,
    pos: usize,
}

/// The most [`ReadAhead`] reads in one system call.
const READ_AHEAD: usize = 64 * 1024;

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> ReadAhead<S> {
        ReadAhead {
            inner,
            buf: Vec::new(),
            pos: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.buf.len() {
            // Asked for as much as would be read ahead: no need to copy.
            if out.remaining() >= READ_AHEAD {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            let mut buf = vec![0u8; READ_AHEAD];
            let mut ahead = ReadBuf::new(&mut buf);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut ahead))?;
            let filled = ahead.filled().len();
            buf.truncate(filled);
            this.buf = buf;
            this.pos = 0;
        }
        let n = out.remaining().min(this.buf.len() - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        if this.pos == this.buf.len() {
            this.buf = Vec::new();
            this.pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Why an incoming internode connection was not taken.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("TLS: {0}")]
    Tls(io::Error),
    #[error(transparent)]
    Certificate(#[from] pki::PeerRefused),
    #[error(transparent)]
    Handshake(#[from] LinkError),
}

/// Takes one incoming connection through TLS and the handshake.
pub async fn accept(
    tcp: TcpStream,
    tls: &TlsAcceptor,
    me: &str,
) -> Result<Link<tokio_rustls::server::TlsStream<TcpStream>>, Refused> {
    let stream = tls.accept(tcp).await.map_err(Refused::Tls)?;
    let certified = pki::peer_node_name(stream.get_ref().1.peer_certificates().unwrap_or(&[]))?;
    Ok(Link::accept(stream, me, &certified).await?)
}

/// Serves the other nodes' calls on `listener`, each connection on a worker arbiter
/// (where a session handed over on it runs), until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    me: String,
    calls: Arc<NodeCalls>,
    workers: Arc<Workers>,
) {
    let tls = TlsAcceptor::from(Arc::new(config));
    loop {
        let (tcp, address) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "internode accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        crate::proxy::keep_alive(&tcp);
        let std_stream = match tcp.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand an internode connection to a worker");
                continue;
            }
        };
        let (tls, me, calls) = (tls.clone(), me.clone(), calls.clone());
        workers.pick().spawn(async move {
            let tcp = match TcpStream::from_std(std_stream) {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register an internode connection");
                    return;
                }
            };
            let link = match accept(tcp, &tls, &me).await {
                Ok(link) => link,
                Err(e) => {
                    tracing::warn!(peer = %address, error = %e, "internode connection refused");
                    return;
                }
            };
            let peer = link.peer().to_string();
            tracing::debug!(peer = %address, node = %peer, "internode connection open");
            if let Err(e) = calls.serve(link).await {
                tracing::info!(peer = %address, node = %peer, error = %e, "internode connection ended");
            }
        });
    }
}

/// Everything a node answers the others: its directory member's calls, and, once the
/// node runs, sessions handed over and mail for its mailboxes.
pub struct NodeCalls {
    pub directory: DirectoryCalls,
    /// For the directory changes a mailbox move makes.
    pub cluster: Option<Arc<crate::cluster::ClusterNode>>,
    /// Set once the node's sessions and mailboxes are up; until then sessions and
    /// mail are refused as unavailable.
    pub node: OnceLock<Arc<NodeContext>>,
    /// Set once the admin side is up: what a [`Call::Reload`] reloads.
    pub admin: OnceLock<Arc<crate::admin::AdminContext>>,
}

impl NodeCalls {
    /// Answers calls on `link` until the peer closes it or hands a session over on it.
    async fn serve(&self, mut link: Link<ProxiedStream>) -> Result<(), LinkError> {
        while let Some(call) = link.next_call().await? {
            let answer = match call {
                Call::Open(open) => {
                    let Some(node) = self.node.get().cloned() else {
                        let refused = OpenRefused::Unavailable("the node is starting".into());
                        link.answer(Answer::Opened(Err(refused))).await?;
                        continue;
                    };
                    crate::proxy::serve_opened(node, link, open).await;
                    return Ok(());
                }
                Call::Import(ImportPiece::Begin { address, created }) => match self.node.get() {
                    Some(node) => {
                        crate::mailbox_move::serve_import(node, &mut link, address, created)
                            .await?;
                        continue;
                    }
                    None => Answer::Imported(Err("the node is starting".into())),
                },
                Call::MoveMailbox(request) => match (self.node.get(), &self.cluster) {
                    (Some(node), Some(cluster)) => Answer::Moved(
                        crate::mailbox_move::move_here(
                            node,
                            cluster,
                            &request.address,
                            &request.to,
                        )
                        .await,
                    ),
                    _ => Answer::Moved(Err("the node is starting".into())),
                },
                Call::Deliver(delivery) => match self.node.get() {
                    Some(node) => {
                        Answer::Delivered(crate::delivery::deliver_here(node, delivery).await)
                    }
                    None => Answer::Delivered(Err(DeliverRefused::Temporary(
                        "the node is starting".into(),
                    ))),
                },
                Call::Reload => match self.admin.get().and_then(|admin| admin.running.as_ref()) {
                    Some(running) => Answer::Reloaded(match crate::admin::reload(running).await {
                        crate::admin::AdminResponse::Done(said) => Ok(said),
                        crate::admin::AdminResponse::Failed(why) => Err(why),
                        other => Err(format!("unexpected answer {other:?}")),
                    }),
                    None => Answer::Reloaded(Err("the node is starting".into())),
                },
                Call::Usage { address } => match self.node.get() {
                    Some(node) => Answer::Usage(crate::delivery::usage_here(node, &address).await),
                    None => Answer::Usage(Err(DeliverRefused::Temporary(
                        "the node is starting".into(),
                    ))),
                },
                other => self.directory.handle(link.peer(), other).await,
            };
            link.answer(answer).await?;
        }
        Ok(())
    }
}

/// Serves the calls a node answers for its directory member: Raft's calls, changes
/// forwarded to the leader, and health checks.
pub struct DirectoryCalls {
    pub node: String,
    pub directory: DirectoryNode,
}

impl CallHandler for DirectoryCalls {
    fn handle(&self, _from: &str, call: Call) -> AnswerFuture {
        let (node, directory) = (self.node.clone(), self.directory.clone());
        Box::pin(async move {
            match call {
                Call::Raft(call) => Answer::Raft(directory.answer(call).await),
                Call::DirectoryWrite(change) => {
                    Answer::DirectoryWrite(directory.write(change).await.map_err(|e| match e {
                        WriteError::NotLeader { .. } => WriteRefused::NotLeader,
                        other => WriteRefused::Failed(other.to_string()),
                    }))
                }
                Call::Open(_)
                | Call::Deliver(_)
                | Call::Usage { .. }
                | Call::MoveMailbox(_)
                | Call::Import(_)
                | Call::Reload => {
                    Answer::Failed("sessions and mail are not served on this link".into())
                }
                Call::Health => {
                    let status = directory.status();
                    Answer::Health(Health {
                        node,
                        leader: status.leader,
                        applied: status.applied,
                        role: status.role,
                        quorum_ack_ms: status.millis_since_quorum_ack,
                    })
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
