//! One client connection: TCP, optionally TLS (from the start or after STARTTLS), a
//! read buffer fed to the `wire` decoders, and a timeout on every exchange.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::ClientError;
use crate::wire::{Decoded, WireError};

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text throughout.
    None,
    /// Plain text, then STARTTLS / STLS before logging in.
    Starttls,
    /// TLS from the first byte (ports 993, 995, 465).
    Implicit,
}

/// Where and how every client connects.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: SocketAddr,
    pub tls: TlsMode,
    pub tls_config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
    /// Local addresses to connect from, one per client in turn (more than one loopback
    /// address lets a test pass a server's per-address connection limit).
    pub sources: Vec<IpAddr>,
    /// Longest wait for any answer or write.
    pub timeout: Duration,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS swaps one for the other.
    Swapping,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Swapping => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Swapping => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            Stream::Swapping => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Swapping => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

/// An open connection.
pub struct Conn {
    stream: Stream,
    /// Bytes received; those before `start` are decoded already.
    buf: Vec<u8>,
    /// Where the undecoded bytes begin: a response of many lines is decoded a line at a
    /// time, and moving the rest down after each line costs quadratic copying.
    start: usize,
    target: Arc<Target>,
}

impl Conn {
    /// Connects (from the client's source address, if any) and, for implicit TLS, does
    /// the handshake.
    pub async fn open(target: &Arc<Target>, client: usize) -> Result<Conn, ClientError> {
        let connect = async {
            let socket = match target.address {
                SocketAddr::V4(_) => TcpSocket::new_v4(),
                SocketAddr::V6(_) => TcpSocket::new_v6(),
            }
            .map_err(ClientError::Connect)?;
            if !target.sources.is_empty() {
                let source = target.sources[client % target.sources.len()];
                socket
                    .bind(SocketAddr::new(source, 0))
                    .map_err(ClientError::Connect)?;
            }
            let stream = socket
                .connect(target.address)
                .await
                .map_err(ClientError::Connect)?;
            // Commands are small and each waits for its answer: no Nagle delay.
            stream.set_nodelay(true).map_err(ClientError::Connect)?;
            Ok::<_, ClientError>(stream)
        };
        let stream = tokio::time::timeout(target.timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout)??;
        let mut conn = Conn {
            stream: Stream::Plain(stream),
            buf: Vec::with_capacity(8192),
            start: 0,
            target: target.clone(),
        };
        if target.tls == TlsMode::Implicit {
            conn.handshake().await?;
        }
        Ok(conn)
    }

    /// Turns the plain connection into TLS (after the server said yes to STARTTLS).
    /// Bytes already received past that answer would be plaintext injected before the
    /// handshake: refused.
    pub async fn start_tls(&mut self) -> Result<(), ClientError> {
        if self.buf.len() > self.start {
            return Err(ClientError::Tls(
                "the server sent data after its STARTTLS answer".into(),
            ));
        }
        self.handshake().await
    }

    async fn handshake(&mut self) -> Result<(), ClientError> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Swapping) else {
            return Err(ClientError::Tls("TLS is already on".into()));
        };
        let connector = TlsConnector::from(self.target.tls_config.clone());
        let handshake = connector.connect(self.target.server_name.clone(), tcp);
        let tls = tokio::time::timeout(self.target.timeout, handshake)
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Writes all of `data` and flushes it.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), ClientError> {
        let write = async {
            self.stream.write_all(data).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(self.target.timeout, write)
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(ClientError::Io)
    }

    /// Reads until `decode` returns one item, within the timeout.
    pub async fn receive<T>(
        &mut self,
        decode: impl FnMut(&[u8]) -> Result<Decoded<T>, WireError>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(self.target.timeout, self.receive_untimed(decode))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Reads until `decode` returns one item, however long it takes. Cancel-safe
    /// (received bytes stay in the buffer) as long as `decode` keeps no state, so it can
    /// sit in a `select!` while a session idles.
    pub async fn receive_untimed<T>(
        &mut self,
        mut decode: impl FnMut(&[u8]) -> Result<Decoded<T>, WireError>,
    ) -> Result<T, ClientError> {
        let mut needed = 0;
        loop {
            let pending = self.buf.len() - self.start;
            if pending > 0 && pending >= needed {
                match decode(&self.buf[self.start..]).map_err(ClientError::Malformed)? {
                    Decoded::Complete(item, used) => {
                        self.start += used;
                        if self.start == self.buf.len() {
                            self.buf.clear();
                            self.start = 0;
                        }
                        return Ok(item);
                    }
                    Decoded::Incomplete { needed: more } => needed = more,
                }
            }
            // Before reading more, the decoded bytes make room (once per read, not once
            // per item).
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf
                .reserve(needed.saturating_sub(self.buf.len()).clamp(8192, 1 << 20));
            let read = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(ClientError::Io)?;
            if read == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// Closes the connection politely (TLS close_notify, then FIN), briefly.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }
}
