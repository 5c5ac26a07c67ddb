//! POP3 RETR through the session machine (`portico_pop3::Session`): a signed-in session
//! answers `RETR 1` for a 100 KB and a 5 MB message, fed as the server feeds it (pieces
//! of 256 KiB, `Input::MessagePiece`), and hands back the byte-stuffed response; the
//! bench takes every `Action::Write` as a host would. POP3 clients download whole
//! mailboxes this way, so the stuffing pass is on the path of every byte a POP3 user
//! reads; it should cost far less than the TLS encryption after it. The same RETR
//! answered with the message whole (`Input::MessageFetched`, as TOP is answered) is
//! measured beside it. Each piece is copied into a fresh `Vec`, as the store's range
//! read hands it over. Run with `cargo bench --bench pop3_retr`; figures go in docs/PERFORMANCE.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portico_pop3::{Action, Input, MaildropEntry, Pop3Config, Session};

/// What the server reads from the store per `Input::MessagePiece`
/// (`RETR_PIECE` in crates/server/src/pop3.rs).
const PIECE: usize = 256 * 1024;

/// A text message of about `size` bytes: 72-character lines, one in sixteen starting
/// with a dot (quoted text, signatures, `...`) so stuffing has work to do.
fn message(size: usize) -> Vec<u8> {
    let mut out = b"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\n\
        Subject: quarterly figures\r\nDate: Fri, 02 Jan 2026 16:20:00 -0500\r\n\
        Message-ID: <bench@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        .to_vec();
    let mut line = 0u64;
    while out.len() < size {
        if line.is_multiple_of(16) {
            out.push(b'.');
        }
        out.extend_from_slice(
            b"lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiu\r\n",
        );
        line += 1;
    }
    out
}

/// Takes the session's actions: the bytes written, and the one action the caller must
/// answer if any.
fn drain(session: &mut Session, written: &mut usize) -> Option<Action> {
    let mut pending = None;
    while let Some(action) = session.next_action() {
        match action {
            Action::Write(bytes) => *written += black_box(bytes).len(),
            other => pending = Some(other),
        }
    }
    pending
}

/// A session in the TRANSACTION state with `message` as message 1 of the maildrop.
fn signed_in(message: &[u8]) -> Session {
    let config = Pop3Config {
        plaintext_login_without_tls: true,
        tls_available: false,
        ..Pop3Config::default()
    };
    let mut session = Session::new(config, false);
    let mut written = 0;
    session.handle(Input::Bytes(b"USER bench\r\nPASS secret\r\n"));
    assert!(matches!(
        drain(&mut session, &mut written),
        Some(Action::Authenticate { .. })
    ));
    session.handle(Input::AuthResult(Ok(())));
    assert_eq!(
        drain(&mut session, &mut written),
        Some(Action::OpenMaildrop)
    );
    session.handle(Input::MaildropOpened(Ok(vec![MaildropEntry {
        uid: 1,
        size: message.len() as u64,
        unique_id: "bench-1".into(),
    }])));
    assert_eq!(drain(&mut session, &mut written), None);
    session
}

/// One `RETR 1`, the message fed in pieces; the bytes the session wrote.
fn retr_in_pieces(session: &mut Session, message: &[u8]) -> usize {
    let mut written = 0;
    session.handle(Input::Bytes(b"RETR 1\r\n"));
    let Some(Action::FetchMessage {
        in_pieces: true, ..
    }) = drain(session, &mut written)
    else {
        panic!("RETR did not ask for the message in pieces");
    };
    let mut pieces = message.chunks(PIECE).peekable();
    while let Some(piece) = pieces.next() {
        session.handle(Input::MessagePiece {
            piece: Ok(piece.to_vec()),
            more: pieces.peek().is_some(),
        });
        assert_eq!(drain(session, &mut written), None);
    }
    written
}

/// One `RETR 1` answered with the whole message at once; the bytes written.
fn retr_whole(session: &mut Session, message: &[u8]) -> usize {
    let mut written = 0;
    session.handle(Input::Bytes(b"RETR 1\r\n"));
    let Some(Action::FetchMessage { .. }) = drain(session, &mut written) else {
        panic!("RETR did not ask for the message");
    };
    session.handle(Input::MessageFetched(Ok(message.to_vec())));
    assert_eq!(drain(session, &mut written), None);
    written
}

fn retr(c: &mut Criterion) {
    let mut group = c.benchmark_group("pop3_retr");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (name, size) in [("100KB", 100 * 1000), ("5MB", 5 * 1000 * 1000)] {
        let body = message(size);
        let mut session = signed_in(&body);
        // The body with a dot added to each dotted line, between the status line and
        // the terminating ".\r\n".
        let sent = retr_in_pieces(&mut session, &body);
        let dotted = body
            .split(|&b| b == b'\n')
            .filter(|line| line.first() == Some(&b'.'))
            .count();
        assert_eq!(
            sent,
            format!("+OK {} octets\r\n", body.len()).len() + body.len() + dotted + 3
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(BenchmarkId::new("pieces_256KiB", name), |b| {
            b.iter(|| retr_in_pieces(&mut session, black_box(&body)))
        });
        assert_eq!(retr_whole(&mut session, &body), sent);
        group.bench_function(BenchmarkId::new("whole", name), |b| {
            b.iter(|| retr_whole(&mut session, black_box(&body)))
        });
    }
    group.finish();
}

criterion_group!(benches, retr);
criterion_main!(benches);
