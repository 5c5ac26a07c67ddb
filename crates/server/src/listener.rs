//! Client listeners: accept, admit under the connection limits, and hand each
//! connection to a worker arbiter (one per core), where its session actor lives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::node::NodeContext;
use crate::{imap, pop3, smtp};
use portico_smtp::Mode;

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// POP3 with STLS.
    Pop3,
    /// POP3 over implicit TLS.
    Pop3s,
    /// IMAP with STARTTLS.
    Imap,
    /// IMAP over implicit TLS.
    Imaps,
    /// Inbound SMTP (MX) for the local domains.
    Smtp,
    /// Message submission with STARTTLS.
    Submission,
    /// Message submission over implicit TLS.
    Submissions,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Pop3 => "pop3",
            Service::Pop3s => "pop3s",
            Service::Imap => "imap",
            Service::Imaps => "imaps",
            Service::Smtp => "smtp",
            Service::Submission => "submission",
            Service::Submissions => "submissions",
        }
    }

    /// Said to a client turned away by the connection limits.
    fn refusal(self) -> &'static [u8] {
        match self {
            Service::Pop3 => b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
            Service::Imap => b"* BYE Too many connections, try again later\r\n",
            Service::Smtp | Service::Submission => {
                b"421 4.7.0 Too many connections, try again later\r\n"
            }
            // No TLS session exists yet to carry an answer on an implicit-TLS port.
            Service::Pop3s | Service::Imaps | Service::Submissions => b"",
        }
    }
}

/// Worker arbiters, handed connections in turn.
pub struct Workers {
    arbiters: Vec<ArbiterHandle>,
    next: AtomicUsize,
}

impl Workers {
    pub fn new(arbiters: Vec<ArbiterHandle>) -> Self {
        Workers {
            arbiters,
            next: AtomicUsize::new(0),
        }
    }

    pub fn pick(&self) -> &ArbiterHandle {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        &self.arbiters[n % self.arbiters.len()]
    }
}

/// Accepts connections until the node shuts down.
pub async fn run(
    node: Arc<NodeContext>,
    listener: TcpListener,
    service: Service,
    workers: Arc<Workers>,
) {
    let mut shutdown = node.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait a little, keep serving.
                tracing::warn!(service = service.name(), error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = node.limits.admit(peer.ip()) else {
            tracing::warn!(service = service.name(), client = %peer, "connection limit reached");
            actix_rt::spawn(turn_away(tcp, service));
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let std_stream = match tcp.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand the connection to a worker");
                continue;
            }
        };
        let node = node.clone();
        workers.pick().spawn(async move {
            let _slot = slot;
            match TcpStream::from_std(std_stream) {
                Ok(tcp) => serve(node, tcp, peer, service).await,
                Err(e) => tracing::warn!(error = %e, "cannot register the connection"),
            }
        });
    }
    tracing::info!(service = service.name(), "listener stopped");
}

async fn serve(node: Arc<NodeContext>, tcp: TcpStream, peer: SocketAddr, service: Service) {
    match service {
        Service::Pop3 => pop3::serve(node, tcp, peer, false).await,
        Service::Pop3s => pop3::serve(node, tcp, peer, true).await,
        Service::Imap => imap::serve(node, tcp, peer, false).await,
        Service::Imaps => imap::serve(node, tcp, peer, true).await,
        Service::Smtp => smtp::serve(node, tcp, peer, Mode::Inbound, false).await,
        Service::Submission => smtp::serve(node, tcp, peer, Mode::Submission, false).await,
        Service::Submissions => smtp::serve(node, tcp, peer, Mode::Submission, true).await,
    }
}

async fn turn_away(mut tcp: TcpStream, service: Service) {
    let _ = tcp.write_all(service.refusal()).await;
    let _ = tcp.shutdown().await;
}
