//! Drives the SMTP session machine (inbound or submission, as the fuzzer chose) with
//! arbitrary client bytes in arbitrary pieces, answering every host request the way a
//! real node could. Checks what must always hold: no panic, every write is whole
//! CRLF-terminated reply lines with a 3-digit code, nothing is written after Close, and
//! a delivered message has a sender, at least one recipient and no more bytes than
//! the configured size.
//!
//! Run with `scripts/fuzz.sh smtp SECONDS` (or `cargo fuzz run session` here).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_smtp::{
    Action, AuthFailure, Input, Mode, RecipientVerdict, SenderVerdict, Session, SmtpConfig,
};

const MAX_SIZE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let config = SmtpConfig {
        hostname: "mail.example.com".into(),
        mode: if control & 1 == 0 {
            Mode::Inbound
        } else {
            Mode::Submission
        },
        max_message_size: MAX_SIZE,
        max_errors: 5,
        max_commands: 20,
        // Small, so that content is spooled and reassembled often.
        spool_threshold: 64,
        ..SmtpConfig::default()
    };
    let mut session = Session::new(config, control & 2 == 0);
    let mut closed = false;
    let mut step = 0usize;
    let mut spooled = 0usize;
    for piece in input.chunks(usize::from(control >> 2).max(1)) {
        session.handle(Input::Bytes(piece));
        while let Some(action) = session.next_action() {
            step += 1;
            let reply = match action {
                Action::Write(bytes) => {
                    assert!(!closed, "write after close");
                    for line in bytes.split_inclusive(|&b| b == b'\n') {
                        assert!(line.ends_with(b"\r\n"), "unterminated reply {bytes:?}");
                        assert!(line.len() >= 5 && line[..3].iter().all(u8::is_ascii_digit));
                    }
                    None
                }
                Action::Close => {
                    closed = true;
                    None
                }
                Action::StartTls => Some(Input::TlsEstablished),
                Action::Authenticate { username, .. } => {
                    Some(Input::AuthResult(if username.len() % 2 == 0 {
                        Ok(())
                    } else {
                        Err(AuthFailure::BadCredentials)
                    }))
                }
                Action::CheckRecipient { address } => {
                    Some(Input::RecipientChecked(match address.len() % 5 {
                        0 => RecipientVerdict::Remote,
                        1 => RecipientVerdict::UnknownUser,
                        2 => RecipientVerdict::Temporary,
                        _ => RecipientVerdict::Local,
                    }))
                }
                Action::CheckSender { address } => {
                    Some(Input::SenderChecked(if address.len() % 3 == 0 {
                        SenderVerdict::LocalNeedsAuth
                    } else {
                        SenderVerdict::Accepted
                    }))
                }
                Action::Spool { first, bytes } => {
                    if first {
                        spooled = 0;
                    }
                    spooled += bytes.len();
                    assert!(spooled <= MAX_SIZE + 2);
                    None
                }
                Action::Deliver(envelope) => {
                    assert!(!envelope.recipients.is_empty());
                    // Spooled by a transaction that was abandoned, if not this one's.
                    let kept = std::mem::take(&mut spooled);
                    assert!(envelope.spooled == 0 || envelope.spooled == kept);
                    assert!(envelope.spooled + envelope.message.len() <= MAX_SIZE + 2);
                    Some(Input::Delivered(Ok(format!("Q{step}"))))
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
