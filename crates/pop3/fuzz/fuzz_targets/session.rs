//! Drives the POP3 session machine with arbitrary client bytes, cut where the fuzzer
//! chose, answering every host request the way a real node could (credentials right or
//! wrong, a small maildrop, fetches that fail now and then). Checks what must always
//! hold: no panic, every write is whole CRLF-terminated lines, nothing is written after
//! Close, and deletions are only committed for messages of the maildrop.
//!
//! Run with `scripts/fuzz.sh pop3 SECONDS` (or `cargo fuzz run session` here).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_pop3::{Action, AuthFailure, Input, MaildropEntry, MaildropError, Pop3Config, Session};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let config = Pop3Config {
        plaintext_login_without_tls: control & 1 == 0,
        max_bad_commands: 5,
        ..Pop3Config::default()
    };
    let mut session = Session::new(config, control & 2 == 0);
    let maildrop: Vec<MaildropEntry> = (1..=3)
        .map(|uid| MaildropEntry {
            uid,
            size: 10 * u64::from(uid),
            unique_id: format!("uid{uid}"),
        })
        .collect();
    let mut closed = false;
    let mut step = 0usize;
    let pieces = input.chunks(usize::from(control >> 2).max(1));
    for piece in pieces {
        session.handle(Input::Bytes(piece));
        while let Some(action) = session.next_action() {
            step += 1;
            let reply = match action {
                Action::Write(bytes) => {
                    assert!(!closed, "write after close");
                    assert!(bytes.ends_with(b"\r\n"), "unterminated write {bytes:?}");
                    None
                }
                Action::Close => {
                    closed = true;
                    None
                }
                Action::StartTls => Some(Input::TlsEstablished),
                Action::Authenticate { username, .. } => Some(Input::AuthResult(
                    if username.len() % 2 == 0 {
                        Ok(())
                    } else {
                        Err(AuthFailure::BadCredentials)
                    },
                )),
                Action::OpenMaildrop => Some(Input::MaildropOpened(Ok(maildrop.clone()))),
                Action::FetchMessage { uid, in_pieces } => {
                    assert!(maildrop.iter().any(|m| m.uid == uid), "fetch of {uid}");
                    let body = vec![b'.'; (10 * uid) as usize];
                    if in_pieces {
                        // Three pieces, the second failing now and then.
                        let (a, rest) = body.split_at(body.len() / 3);
                        let (b, c) = rest.split_at(rest.len() / 2);
                        session.handle(Input::MessagePiece { piece: Ok(a.to_vec()), more: true });
                        let b = if step % 5 == 0 { Err(MaildropError::Unavailable) } else { Ok(b.to_vec()) };
                        session.handle(Input::MessagePiece { piece: b, more: true });
                        Some(Input::MessagePiece { piece: Ok(c.to_vec()), more: false })
                    } else {
                        Some(Input::MessageFetched(if step % 7 == 0 {
                            Err(MaildropError::Unavailable)
                        } else {
                            Ok(body)
                        }))
                    }
                }
                Action::CommitDeletes { uids } => {
                    assert!(uids.iter().all(|u| maildrop.iter().any(|m| m.uid == *u)));
                    Some(Input::DeletesCommitted(Ok(())))
                }
            };
            if let Some(reply) = reply {
                session.handle(reply);
            }
        }
    }
    session.handle(Input::Shutdown);
    while session.next_action().is_some() {}
});
