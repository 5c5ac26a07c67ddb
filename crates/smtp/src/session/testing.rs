//! Shared harness for the session's unit tests.

use std::cell::RefCell;

use super::*;

thread_local! {
    static LAST_ENVELOPE: RefCell<Option<Envelope>> = const { RefCell::new(None) };
    static SPOOLED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Puts the spooled content back in front of the envelope's message, as a host does.
pub(crate) fn assemble(envelope: &mut Envelope, mut spooled: Vec<u8>) {
    if envelope.spooled == 0 {
        // What an abandoned transaction spooled.
        return;
    }
    assert_eq!(
        spooled.len(),
        envelope.spooled,
        "spooled content and count differ"
    );
    spooled.extend_from_slice(&envelope.message);
    envelope.message = spooled;
    envelope.spooled = 0;
}

/// Keeps spooled content as a host does: a transaction's first chunk starts afresh.
fn keep_spooled(spool: &mut Vec<u8>, first: bool, bytes: Vec<u8>) {
    if first {
        spool.clear();
    }
    spool.extend(bytes);
}

pub(crate) fn submission() -> SmtpConfig {
    SmtpConfig {
        hostname: "mail.example.com".into(),
        mode: Mode::Submission,
        max_message_size: 1000,
        ..SmtpConfig::default()
    }
}

pub(crate) fn inbound() -> SmtpConfig {
    SmtpConfig {
        mode: Mode::Inbound,
        ..submission()
    }
}

/// Renders queued actions: writes verbatim, everything else as a `[marker]` line. The
/// last envelope delivered is kept for [`last_envelope`].
pub(crate) fn drain(s: &mut Session) -> String {
    let mut out = String::new();
    while let Some(action) = s.next_action() {
        out.push_str(&render(action));
    }
    out
}

pub(crate) fn render(action: Action) -> String {
    match action {
        Action::Write(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Action::StartTls => "[starttls]\n".to_string(),
        Action::Authenticate { username, password } => {
            format!("[auth {username}:{}]\n", password.expose())
        }
        Action::CheckRecipient { address, .. } => format!("[check {address}]\n"),
        Action::CheckSender { address } => format!("[sender {address}]\n"),
        Action::Spool { first, bytes } => {
            SPOOLED.with(|spooled| keep_spooled(&mut spooled.borrow_mut(), first, bytes));
            String::new()
        }
        Action::Deliver(mut envelope) => {
            assemble(
                &mut envelope,
                SPOOLED.with(|s| std::mem::take(&mut *s.borrow_mut())),
            );
            let text = format!(
                "[deliver <{}> -> {} {}]\n",
                envelope.mail_from,
                envelope.recipients.join(","),
                envelope.message.len()
            );
            LAST_ENVELOPE.with(|last| *last.borrow_mut() = Some(envelope));
            text
        }
        Action::Close => "[close]\n".to_string(),
    }
}

pub(crate) fn last_envelope() -> Envelope {
    LAST_ENVELOPE
        .with(|last| last.borrow_mut().take())
        .expect("an envelope was delivered")
}

pub(crate) fn start(config: SmtpConfig, tls: bool) -> Session {
    let mut s = Session::new(config, tls);
    let greeting = drain(&mut s);
    assert!(greeting.starts_with("220 "), "{greeting}");
    s
}

pub(crate) fn send(s: &mut Session, text: &str) -> String {
    send_bytes(s, text.as_bytes())
}

pub(crate) fn send_bytes(s: &mut Session, bytes: &[u8]) -> String {
    s.handle(Input::Bytes(bytes));
    drain(s)
}

pub(crate) fn answer(s: &mut Session, input: Input<'_>) -> String {
    s.handle(input);
    drain(s)
}

/// EHLO as `client.example.org`, then AUTH PLAIN as alice@example.com, accepted.
pub(crate) fn login(s: &mut Session) {
    let ehlo = send(s, "EHLO client.example.org\r\n");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert_eq!(
        send(s, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA==\r\n"),
        "[auth alice@example.com:secret]\n"
    );
    assert_eq!(
        answer(s, Input::AuthResult(Ok(()))),
        "235 2.7.0 Authentication successful\r\n"
    );
}

/// A host that answers every request at once: password `secret`, recipients at
/// example.com local but `nobody@`, elsewhere remote in submission and refused inbound,
/// deliveries queued as Q1, Q2, ... TLS completes only when `tls_now`, because a real
/// client's bytes behind STARTTLS reach the server before the handshake does.
pub(crate) struct Host {
    pub(crate) tls_owed: bool,
    pub(crate) delivered: Vec<Envelope>,
    spool: Vec<u8>,
}

impl Host {
    pub(crate) fn new() -> Self {
        Host {
            tls_owed: false,
            delivered: Vec::new(),
            spool: Vec::new(),
        }
    }

    pub(crate) fn settle(&mut self, s: &mut Session, out: &mut String, tls_now: bool) {
        loop {
            let mut replies = Vec::new();
            while let Some(action) = s.next_action() {
                match action {
                    Action::Write(bytes) => out.push_str(&String::from_utf8_lossy(&bytes)),
                    Action::StartTls => {
                        out.push_str("[starttls]\n");
                        self.tls_owed = true;
                    }
                    Action::Authenticate { password, .. } => {
                        replies.push(Input::AuthResult(if password.expose() == "secret" {
                            Ok(())
                        } else {
                            Err(AuthFailure::BadCredentials)
                        }))
                    }
                    Action::CheckRecipient { address, .. } => {
                        let verdict = if address.starts_with("nobody@") {
                            RecipientVerdict::UnknownUser
                        } else if address.starts_with("full@") {
                            RecipientVerdict::MailboxFull
                        } else if address.ends_with("@example.com") {
                            RecipientVerdict::Local
                        } else if s.config.mode == Mode::Submission {
                            RecipientVerdict::Remote
                        } else {
                            RecipientVerdict::RelayDenied
                        };
                        replies.push(Input::RecipientChecked(verdict));
                    }
                    Action::CheckSender { address } => replies.push(Input::SenderChecked(
                        if address.to_ascii_lowercase().ends_with("@example.com") {
                            SenderVerdict::LocalNeedsAuth
                        } else {
                            SenderVerdict::Accepted
                        },
                    )),
                    Action::Spool { first, bytes } => keep_spooled(&mut self.spool, first, bytes),
                    Action::Deliver(mut envelope) => {
                        assemble(&mut envelope, std::mem::take(&mut self.spool));
                        out.push_str(&format!("[deliver {}]\n", envelope.message.len()));
                        self.delivered.push(envelope);
                        let id = format!("Q{}", self.delivered.len());
                        replies.push(Input::Delivered(Ok(id)));
                    }
                    Action::Close => out.push_str("[close]\n"),
                }
            }
            if tls_now && self.tls_owed {
                self.tls_owed = false;
                replies.push(Input::TlsEstablished);
            }
            if replies.is_empty() {
                return;
            }
            for reply in replies {
                s.handle(reply);
            }
        }
    }
}

/// Deterministic xorshift, so failures reproduce without a dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Plays client writes, each cut into pieces by `split`; the host answers after every
/// piece when `eager`, else only at the end of each write. Returns the transcript and the
/// messages delivered.
pub(crate) fn play(
    config: SmtpConfig,
    tls: bool,
    writes: &[&[u8]],
    split: &mut dyn FnMut(&[u8]) -> Vec<usize>,
    eager: bool,
) -> (String, Vec<Envelope>) {
    let mut s = Session::new(config, tls);
    let mut host = Host::new();
    let mut out = String::new();
    host.settle(&mut s, &mut out, true);
    for write in writes {
        let mut last = 0;
        let mut cuts = split(write);
        cuts.push(write.len());
        for cut in cuts {
            s.handle(Input::Bytes(&write[last..cut]));
            last = cut;
            if eager {
                host.settle(&mut s, &mut out, false);
            }
        }
        host.settle(&mut s, &mut out, true);
    }
    (out, host.delivered)
}
