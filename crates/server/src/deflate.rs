//! IMAP COMPRESS=DEFLATE (RFC 4978) on a client's stream: raw DEFLATE (RFC 1951, no
//! zlib header) in both directions, beneath the protocol and above TCP or TLS (RFC 4978
//! §3: first TLS, then COMPRESS).
//!
//! Writing: bytes are deflated into a buffer that goes to the stream as it fills; a
//! flush ends the batch with a sync flush (an empty stored block), so the client can
//! inflate everything written so far at once (RFC 4978 §4). The connection task
//! flushes whenever its queue runs empty, so no response waits for the next one. At
//! most about [`OUTPUT_HIGH_WATER`] of deflated bytes wait here: past that a write
//! waits for the stream, and a client that reads slowly holds the writer back as it
//! would without compression.
//!
//! Level: responses and text are deflated at [`LEVEL`]; once [`SAMPLE`] bytes in a row
//! shrink to less than half (attachments in base64, images), the stream goes on at
//! [`BULK_LEVEL`], which is five times faster and saves as much on such data, until a
//! batch ends that is small (a command's answer) or compressed well. A change of level
//! is a sync flush and a fresh deflater, as after an idle release.
//!
//! Reading: one read inflates at most what the caller's buffer holds, however far the
//! client's bytes expand, so a few compressed bytes cannot make the node hold
//! megabytes; the reader limits apply to the inflated bytes as to plain ones. A corrupt
//! stream is an [`io::ErrorKind::InvalidData`] error, which ends the connection.
//!
//! Memory (miniz_oxide): the inflater keeps the client's 32 KiB window and its tables,
//! about 43 KiB, for the session's life, since the client may refer back to anything
//! it sent in the last 32 KiB. The deflater takes about 320 KiB (window, hash chains,
//! code and output buffers); it is dropped once nothing has been written for
//! [`COMPRESSOR_IDLE`], so an idling session holds only the inflater. The next write
//! starts a fresh deflater: its blocks follow the last sync flush and never refer back
//! past it, which any inflater takes as it is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Deflate level for what compresses well. On the test corpus (figures in
/// docs/PERFORMANCE.md) level 6 saves 71% of text messages and 87% of a header
/// listing, against 62% and 83% at level 1.
const LEVEL: u32 = 6;
/// Deflate level for what does not: miniz_oxide's fast path, which saves the same 24%
/// of a base64 attachment as level 6 at a fifth of the CPU.
const BULK_LEVEL: u32 = 1;
/// Bytes deflated between decisions on the level.
const SAMPLE: u64 = 256 * 1024;
/// A batch smaller than this (the answer to a command), or one that shrank to half or
/// less, ends a run at [`BULK_LEVEL`].
const SMALL_BATCH: u64 = 16 * 1024;
/// A deflater that wrote nothing for this long is dropped (see the module docs).
pub const COMPRESSOR_IDLE: Duration = Duration::from_secs(10);
/// Deflated bytes held before a write waits for the stream to take them.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// The most one write deflates, and the most handed to the stream in one write (TLS
/// encrypts what one write gives it into one buffer: see `WRITE_PIECE` in connection.rs).
const PIECE: usize = 64 * 1024;
/// Compressed bytes read from the stream at once.
const INPUT_BUF: usize = 8 * 1024;

/// Bytes that crossed the wire, compressed, for the session's last log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeflateTotals {
    pub wire_in: u64,
    pub wire_out: u64,
}

/// A stream whose both directions are raw DEFLATE.
pub struct DeflateStream<S> {
    inner: S,
    inflater: Decompress,
    /// Compressed bytes read, from `input_pos` on not yet inflated.
    input: Vec<u8>,
    input_pos: usize,
    /// The last inflate filled the caller's buffer: the inflater may hold more.
    inflater_full: bool,
    /// The client closed the connection or ended its DEFLATE stream.
    input_ended: bool,
    deflater: Option<Compress>,
    /// The level of `deflater`, or of the next one.
    level: u32,
    /// Bytes deflated since the last decision on the level, and what they became.
    sample_in: u64,
    sample_out: u64,
    /// Bytes deflated since the last flush, and what they became.
    batch_in: u64,
    batch_out: u64,
    /// Deflated bytes, from `output_pos` on not yet written to `inner`.
    output: Vec<u8>,
    output_pos: usize,
    /// Bytes were deflated since the last sync flush.
    unflushed: bool,
    last_write: Instant,
    totals: DeflateTotals,
}

impl<S> DeflateStream<S> {
    /// Compression on `inner` from now on; `unread` is what the client sent behind
    /// COMPRESS before the switch: the first bytes of its compressed stream.
    pub fn new(inner: S, unread: Vec<u8>) -> Self {
        let totals = DeflateTotals {
            wire_in: unread.len() as u64,
            wire_out: 0,
        };
        DeflateStream {
            inner,
            inflater: Decompress::new(false),
            input: unread,
            input_pos: 0,
            inflater_full: false,
            input_ended: false,
            deflater: None,
            level: LEVEL,
            sample_in: 0,
            sample_out: 0,
            batch_in: 0,
            batch_out: 0,
            output: Vec::new(),
            output_pos: 0,
            unflushed: false,
            last_write: Instant::now(),
            totals,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn totals(&self) -> DeflateTotals {
        self.totals
    }

    /// When the deflater may be dropped: [`COMPRESSOR_IDLE`] after the last write, if
    /// one is held and everything it made has been flushed and written.
    pub fn release_at(&self) -> Option<Instant> {
        let idle =
            self.deflater.is_some() && !self.unflushed && self.output_pos == self.output.len();
        idle.then(|| self.last_write + COMPRESSOR_IDLE)
    }

    /// Drops the deflater and the buffers an idle session does not need, if it has
    /// been idle long enough at `now` (see [`Self::release_at`]).
    pub fn release_idle(&mut self, now: Instant) {
        if self.release_at().is_some_and(|at| at <= now) {
            self.deflater = None;
            self.set_level(LEVEL);
            self.output = Vec::new();
            self.output_pos = 0;
            if self.input_pos == self.input.len() {
                self.input = Vec::new();
                self.input_pos = 0;
            }
        }
    }

    /// The level of the next deflater; the counts start again.
    fn set_level(&mut self, level: u32) {
        self.level = level;
        self.sample_in = 0;
        self.sample_out = 0;
    }

    /// At the end of a sample: [`BULK_LEVEL`] from now on if it shrank to less than
    /// half, [`LEVEL`] if it did not. The current deflater ends with a sync flush.
    fn choose_level(&mut self) -> io::Result<()> {
        if self.sample_in < SAMPLE {
            return Ok(());
        }
        let level = match 2 * self.sample_out > self.sample_in {
            true => BULK_LEVEL,
            false => LEVEL,
        };
        if level != self.level && self.deflater.is_some() {
            self.deflate(&[], FlushCompress::Sync)?;
            self.deflater = None;
        }
        self.set_level(level);
        Ok(())
    }

    /// Deflates all of `input` into `output`, with `flush`.
    fn deflate(&mut self, input: &[u8], flush: FlushCompress) -> io::Result<()> {
        let level = self.level;
        let deflater = self
            .deflater
            .get_or_insert_with(|| Compress::new(Compression::new(level), false));
        let (in_before, out_before) = (deflater.total_in(), deflater.total_out());
        let mut consumed = 0;
        loop {
            // compress_vec writes into spare capacity only: make room for about what
            // the input could become.
            let want = (input.len() - consumed).clamp(1024, PIECE) + 64;
            if self.output.capacity() - self.output.len() < want {
                self.output.reserve(want);
            }
            let before = deflater.total_in();
            deflater
                .compress_vec(&input[consumed..], &mut self.output, flush)
                .map_err(io::Error::other)?;
            consumed += (deflater.total_in() - before) as usize;
            // Done once the input is in and the deflater had room to spare, so it holds
            // back nothing the flush asked for.
            if consumed == input.len() && self.output.len() < self.output.capacity() {
                let produced = deflater.total_out() - out_before;
                self.sample_in += deflater.total_in() - in_before;
                self.sample_out += produced;
                self.batch_out += produced;
                return Ok(());
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> DeflateStream<S> {
    /// Writes the deflated bytes held to the stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.output_pos < self.output.len() {
            let end = self.output.len().min(self.output_pos + PIECE);
            let piece = &self.output[self.output_pos..end];
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, piece))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.output_pos += n;
            self.totals.wire_out += n as u64;
        }
        self.output.clear();
        self.output_pos = 0;
        // A large batch leaves a large buffer; the next ones are mostly small.
        if self.output.capacity() > 2 * PIECE {
            self.output.shrink_to(PIECE);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeflateStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.input_ended {
                return Poll::Ready(Ok(()));
            }
            let pending = this.input_pos < this.input.len();
            if pending || this.inflater_full {
                let out = buf.initialize_unfilled();
                let room = out.len();
                let (before_in, before_out) = (this.inflater.total_in(), this.inflater.total_out());
                let status = this
                    .inflater
                    .decompress(&this.input[this.input_pos..], out, FlushDecompress::None)
                    .map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("corrupt DEFLATE stream from the client (RFC 4978): {e}"),
                        )
                    })?;
                let consumed = (this.inflater.total_in() - before_in) as usize;
                let produced = (this.inflater.total_out() - before_out) as usize;
                this.input_pos += consumed;
                this.inflater_full = produced == room;
                buf.advance(produced);
                if status == Status::StreamEnd {
                    // The client ended its stream: nothing after it can be read.
                    this.input_ended = true;
                }
                if produced > 0 || this.input_ended {
                    return Poll::Ready(Ok(()));
                }
                if pending && consumed == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "DEFLATE stream from the client makes no progress",
                    )));
                }
                if this.input_pos < this.input.len() {
                    continue;
                }
            }
            // Everything read is inflated: read more.
            this.input.resize(INPUT_BUF, 0);
            this.input_pos = 0;
            let mut read = ReadBuf::new(&mut this.input);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut read);
            let n = read.filled().len();
            this.input.truncate(n);
            ready!(polled)?;
            if n == 0 {
                this.input_ended = true;
                return Poll::Ready(Ok(()));
            }
            this.totals.wire_in += n as u64;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeflateStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.output.len() - this.output_pos >= OUTPUT_HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        let take = buf.len().min(PIECE);
        if take > 0 {
            this.deflate(&buf[..take], FlushCompress::None)?;
            this.unflushed = true;
            this.batch_in += take as u64;
            this.choose_level()?;
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unflushed {
            this.deflate(&[], FlushCompress::Sync)?;
            this.unflushed = false;
            this.last_write = Instant::now();
            let bulk = this.batch_in >= SMALL_BATCH && 2 * this.batch_out > this.batch_in;
            if this.level == BULK_LEVEL && !bulk {
                this.deflater = None;
                this.set_level(LEVEL);
            }
            this.batch_in = 0;
            this.batch_out = 0;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    /// The client's side: raw DEFLATE with sync flushes, as RFC 4978 clients send.
    struct Client {
        deflater: Compress,
        inflater: Decompress,
    }

    impl Client {
        fn new() -> Client {
            Client {
                deflater: Compress::new(Compression::default(), false),
                inflater: Decompress::new(false),
            }
        }

        fn deflate(&mut self, data: &[u8]) -> Vec<u8> {
            let mut out = Vec::with_capacity(data.len() + 1024);
            self.deflater
                .compress_vec(data, &mut out, FlushCompress::Sync)
                .unwrap();
            assert!(out.len() < out.capacity());
            out
        }

        fn inflate(&mut self, data: &[u8]) -> Vec<u8> {
            let mut out = Vec::with_capacity(data.len() * 20 + 1024);
            let mut pos = 0;
            loop {
                let before = self.inflater.total_in();
                self.inflater
                    .decompress_vec(&data[pos..], &mut out, FlushDecompress::Sync)
                    .unwrap();
                pos += (self.inflater.total_in() - before) as usize;
                if pos == data.len() && out.len() < out.capacity() {
                    return out;
                }
                out.reserve(out.capacity());
            }
        }
    }

    /// All the bytes that arrive at `peer` now (what the server wrote and flushed).
    async fn arrived(peer: &mut DuplexStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(20), peer.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("* {i} FETCH (FLAGS (\\Seen) UID {})\r\n", i * 7))
            .collect::<String>()
            .into_bytes()
    }

    #[tokio::test]
    async fn each_flush_can_be_inflated_at_once() {
        let (near, mut far) = duplex(1 << 20);
        let mut server = DeflateStream::new(near, Vec::new());
        let mut client = Client::new();
        for batch in [text(1), text(300), b"a OK done\r\n".to_vec()] {
            server.write_all(&batch).await.unwrap();
            server.flush().await.unwrap();
            let wire = arrived(&mut far).await;
            assert!(wire.ends_with(&[0, 0, 0xff, 0xff]), "sync flush at the end");
            assert_eq!(client.inflate(&wire), batch);
        }
        let totals = server.totals();
        assert!(totals.wire_out > 0 && totals.wire_out < text(300).len() as u64 / 4);
    }

    #[tokio::test]
    async fn the_bytes_behind_compress_are_inflated_first() {
        let (near, mut far) = duplex(1 << 16);
        let mut client = Client::new();
        let first = client.deflate(b"b SELECT INBOX\r\n");
        let (unread, rest) = first.split_at(first.len() / 2);
        let mut server = DeflateStream::new(near, unread.to_vec());
        far.write_all(rest).await.unwrap();
        far.write_all(&client.deflate(b"c NOOP\r\n")).await.unwrap();
        drop(far);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"b SELECT INBOX\r\nc NOOP\r\n");
    }

    #[tokio::test]
    async fn a_small_bomb_inflates_a_buffer_at_a_time() {
        let (near, mut far) = duplex(1 << 16);
        let mut client = Client::new();
        let bomb = client.deflate(&vec![b'a'; 8 << 20]);
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        let mut server = DeflateStream::new(near, Vec::new());
        let writer = tokio::spawn(async move {
            far.write_all(&bomb).await.unwrap();
            far
        });
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0;
        while total < 8 << 20 {
            let n = server.read(&mut buf).await.unwrap();
            assert!(n > 0 && n <= buf.len());
            total += n;
        }
        assert_eq!(total, 8 << 20);
        // Nothing but the input buffer and the inflater's window is held.
        assert!(server.input.capacity() <= 64 * 1024);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_corrupt_stream_is_an_error_not_a_panic() {
        let (near, mut far) = duplex(1 << 16);
        let mut server = DeflateStream::new(near, Vec::new());
        // BTYPE 11 is reserved (RFC 1951 §3.2.3).
        far.write_all(b"\x07garbage").await.unwrap();
        let error = server.read(&mut [0u8; 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error.to_string().contains("corrupt DEFLATE stream"),
            "{error}"
        );
        // Plain text where DEFLATE is expected (a client that did not compress): raw
        // DEFLATE has no check, so it may read as a few bytes of nonsense (which the
        // session refuses as commands) or fail; either way nothing is taken as sent.
        let (near, mut far) = duplex(1 << 16);
        let mut server = DeflateStream::new(near, b"c NOOP\r\n".to_vec());
        far.write_all(b"d LOGOUT\r\n").await.unwrap();
        drop(far);
        let mut got = Vec::new();
        match server.read_to_end(&mut got).await {
            Ok(_) => assert!(!got.windows(4).any(|w| w == b"NOOP" || w == b"LOGO")),
            Err(error) => assert_eq!(error.kind(), io::ErrorKind::InvalidData),
        }
    }

    #[tokio::test]
    async fn the_clients_final_block_ends_its_input() {
        let (near, mut far) = duplex(1 << 16);
        let mut deflater = Compress::new(Compression::default(), false);
        let mut wire = Vec::with_capacity(1024);
        deflater
            .compress_vec(b"z LOGOUT\r\n", &mut wire, FlushCompress::Finish)
            .unwrap();
        wire.extend_from_slice(b"trailing bytes are never read");
        far.write_all(&wire).await.unwrap();
        let mut server = DeflateStream::new(near, Vec::new());
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"z LOGOUT\r\n");
    }

    #[tokio::test]
    async fn an_idle_deflater_is_dropped_and_the_stream_goes_on() {
        let (near, mut far) = duplex(1 << 20);
        let mut server = DeflateStream::new(near, Vec::new());
        let mut client = Client::new();
        assert_eq!(server.release_at(), None, "nothing to release yet");
        server.write_all(&text(100)).await.unwrap();
        assert_eq!(server.release_at(), None, "not flushed");
        server.flush().await.unwrap();
        assert_eq!(client.inflate(&arrived(&mut far).await), text(100));
        let at = server.release_at().expect("idle from now");
        server.release_idle(at - Duration::from_millis(1));
        assert!(server.deflater.is_some(), "too early");
        server.release_idle(at);
        assert!(server.deflater.is_none());
        assert_eq!(server.output.capacity(), 0);
        assert_eq!(server.release_at(), None);
        // A fresh deflater continues the same stream for the client.
        server.write_all(b"* 101 EXISTS\r\n").await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(
            client.inflate(&arrived(&mut far).await),
            b"* 101 EXISTS\r\n"
        );
    }

    #[tokio::test]
    async fn poorly_compressible_data_goes_at_the_fast_level_until_a_small_answer() {
        let (near, mut far) = duplex(4 << 20);
        let mut server = DeflateStream::new(near, Vec::new());
        let mut client = Client::new();
        let mut state = 0x2545_f491_u32;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                        [(state % 64) as usize]
                })
                .collect()
        };
        // Text stays at the default level however much of it comes.
        round_trip(&mut server, &mut far, &mut client, &text(20_000)).await;
        assert_eq!(server.level, LEVEL);
        // Base64-like data, streamed a 64 KiB batch at a time: the fast level after a
        // sample, and it stays so across batches.
        for _ in 0..8 {
            round_trip(&mut server, &mut far, &mut client, &random(64 * 1024)).await;
        }
        assert_eq!(server.level, BULK_LEVEL);
        // The command's tagged answer: back to the default level for the next one.
        round_trip(
            &mut server,
            &mut far,
            &mut client,
            b"a OK FETCH completed\r\n",
        )
        .await;
        assert_eq!(server.level, LEVEL);
        assert!(server.deflater.is_none());
        round_trip(&mut server, &mut far, &mut client, &text(10)).await;
        // The tail of an attachment with the answer in one batch keeps the fast level;
        // a batch that compresses well ends it.
        for _ in 0..5 {
            round_trip(&mut server, &mut far, &mut client, &random(64 * 1024)).await;
        }
        assert_eq!(server.level, BULK_LEVEL);
        let mut tail = random(20 * 1024);
        tail.extend_from_slice(b")\r\nb OK FETCH completed\r\n");
        round_trip(&mut server, &mut far, &mut client, &tail).await;
        assert_eq!(server.level, BULK_LEVEL);
        round_trip(&mut server, &mut far, &mut client, &text(1000)).await;
        assert_eq!(server.level, LEVEL);
    }

    /// One batch written and flushed, and the client inflates it whole.
    async fn round_trip(
        server: &mut DeflateStream<DuplexStream>,
        far: &mut DuplexStream,
        client: &mut Client,
        batch: &[u8],
    ) {
        server.write_all(batch).await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(client.inflate(&arrived(far).await), batch);
    }

    #[tokio::test]
    async fn a_large_write_goes_out_as_the_reader_takes_it() {
        let (near, mut far) = duplex(16 * 1024);
        let mut server = DeflateStream::new(near, Vec::new());
        // Incompressible: about as many bytes on the wire as written.
        let mut state = 0x9e37_79b9_u32;
        let data: Vec<u8> = (0..4 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let expected = data.clone();
        let reader = tokio::spawn(async move {
            let mut client = Client::new();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = far.read(&mut buf).await.unwrap();
                if n == 0 {
                    return got;
                }
                got.extend(client.inflate(&buf[..n]));
            }
        });
        for piece in data.chunks(64 * 1024) {
            server.write_all(piece).await.unwrap();
            // Held back to about the high-water mark, not the whole message.
            assert!(server.output.len() - server.output_pos <= OUTPUT_HIGH_WATER + 2 * PIECE);
        }
        server.shutdown().await.unwrap();
        drop(server);
        assert_eq!(reader.await.unwrap(), expected);
    }
}
