//! The SMTP session machine: RFC 5321 with the extensions of the EHLO reply, for inbound
//! mail and for submission (RFC 6409).
//!
//! How it runs: client bytes are read in one of four ways, by [`Reading`]: command lines,
//! SASL responses (after a `334`), DATA content up to `<CRLF>.<CRLF>`, or a BDAT chunk of
//! a counted size. A command that needs the host (credential check, recipient check,
//! delivery, the TLS handshake) queues its [`Action`] and parks the machine in
//! [`Awaiting`]; later bytes stay unread in `pending` until the matching [`Input`]
//! arrives. That is all RFC 2920 PIPELINING asks: replies in command order, whatever the
//! host's latency. STARTTLS is the exception: whatever the client sent behind it is thrown
//! away (RFC 3207 §6; the plaintext command injection of CVE-2011-0411).
//!
//! Memory is bounded: a command line by [`MAX_COMMAND_LINE`], DATA and BDAT content by
//! `max_message_size` (beyond it the content is read and dropped), and input waiting
//! behind a host request by `max_message_size` plus 64 KiB, enough for a whole pipelined
//! BDAT message. Past that the input is dropped and the session ends with `421` once
//! everything kept has been answered. A host that stops reading the socket while it owes
//! the session an answer (as the server crate does) never gets near that bound.
//!
//! smtp-proto's `RequestReceiver` is not used to split the stream into commands, for
//! three reasons: its line limit is fixed at 4096; after an overlong line it resumes
//! parsing in the middle of that line, so the line's tail would run as a command (the
//! very injection `skipping_line` prevents here); and it cannot keep input unread while
//! the host owes an answer, nor stop at STARTTLS. Complete lines are handed to its
//! `Request::parse` instead.
//!
//! Errors come in the three tiers of STYLE.md: a client's mistake is a [`ClientError`]
//! (`5xx`, counted toward `max_errors`); the host's answer is a small closed enum
//! ([`AuthFailure`], [`RecipientVerdict`], [`DeliveryFailure`]) mapped to the wire in one
//! place each; and I/O or TLS failures are the host's to handle by closing.
//!
//! Commands are counted twice: every command line, for the host's end-of-session log
//! ([`Session::commands`]), and junk commands alone, for `max_commands`. Junk is what
//! moves no mail (NOOP, RSET, VRFY, EXPN, HELP, EHLO/HELO once the client has
//! introduced itself, unknown commands, and any command refused with a syntax or sequence
//! error), as Postfix counts it, so that a client may send any number of messages on one
//! connection while one that only idles or probes is still cut off.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;

pub use portico_sasl::Secret;

use smtp_proto::Request;

use crate::body::{ChunkBody, DataBody};
use crate::command::Verb;
use crate::reply::{self, ClientError};
use crate::tally::{CommandName, CommandTally};

mod auth;
mod commands;
mod mail;
#[cfg(test)]
mod testing;

/// Longest command line accepted, CRLF included. RFC 5321 §4.5.3.1.4 sets 512 octets
/// as the minimum a server must accept; AUTH with an initial response and MAIL with
/// several parameters need more, so four times that, as Postfix and Exim allow.
pub const MAX_COMMAND_LINE: usize = 2048;

/// Pipelined input kept while the host owes an answer, on top of one message's worth.
const PIPELINE_SLACK: usize = 64 * 1024;

/// What the session needs to know of the node's SMTP settings.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// The server's name, in the greeting and the EHLO reply (control characters are
    /// removed).
    pub hostname: String,
    pub mode: Mode,
    /// SIZE advertised in EHLO (RFC 1870) and enforced on `SIZE=` and on the content.
    pub max_message_size: usize,
    /// Accepted recipients per message; more get `452 4.5.3` (RFC 5321 §4.5.3.1.10).
    pub max_recipients: usize,
    /// Client errors tolerated; the one past this count ends the session with `421`.
    pub max_errors: u32,
    /// Junk commands per connection; the one past this count ends the session with
    /// `421`. Junk is NOOP, RSET, VRFY, EXPN, HELP, an EHLO or HELO after the one that
    /// introduced the client (STARTTLS asks for a new one, which is not junk), a line too
    /// long or with an unknown verb, and any command refused with a syntax or sequence
    /// error (`500`-`504`, `555`). MAIL, RCPT, DATA, BDAT, AUTH, STARTTLS and QUIT that
    /// succeed, or are refused for what they ask (an unknown recipient, say), never count,
    /// so the number of messages on one connection is not limited. The name is kept for
    /// the configuration files that already set it.
    pub max_commands: u32,
    /// Login type `plaintext`: AUTH is offered and accepted without TLS (submission).
    pub plaintext_auth_without_tls: bool,
    /// STARTTLS can be offered: a certificate exists and the connection is not TLS yet.
    pub tls_available: bool,
    /// VRFY asks the host about local addresses; off, it answers `252` (RFC 5321 §3.5.3).
    pub vrfy_enabled: bool,
    /// Submission: MAIL FROM must be the authenticated address (ASCII case-insensitive);
    /// the null sender `<>` is refused too.
    pub sender_must_match_login: bool,
    /// Submission: every address of the message's `From:` header fields must be the
    /// authenticated address (as `sender_must_match_login` compares them), or the message
    /// is refused after its content with `553 5.7.1` (RFC 6409 §8 lets an MSA enforce
    /// this). A message without `From:` impersonates nobody and passes (RFC 6409 §8.1
    /// lets the MSA complete it); a `From:` field whose addresses cannot be read fails.
    pub from_must_match_login: bool,
    /// Inbound: ask the host about every non-null MAIL FROM ([`Action::CheckSender`])
    /// before accepting it. The host sets this when it refuses unauthenticated mail
    /// claiming one of its own domains from this client (it is not in a trusted
    /// network); the host alone knows what is local.
    pub check_sender: bool,
    /// Content a transaction keeps in memory; beyond it, all but the last bytes go to
    /// the host ([`Action::Spool`]), and the first this many stay for header checks.
    pub spool_threshold: usize,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: "localhost".to_string(),
            mode: Mode::Submission,
            max_message_size: 25 * 1024 * 1024,
            // RFC 5321 §4.5.3.1.8: at least 100.
            max_recipients: 100,
            max_errors: 20,
            max_commands: 10_000,
            plaintext_auth_without_tls: false,
            tls_available: true,
            vrfy_enabled: false,
            sender_must_match_login: true,
            from_must_match_login: true,
            check_sender: false,
            spool_threshold: 256 * 1024,
        }
    }
}

/// Which service the listener offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Message submission (RFC 6409, ports 587 and 465): AUTH required before MAIL.
    Submission,
    /// Mail exchange (RFC 5321, port 25): no AUTH; the host decides what is local.
    Inbound,
}

/// Why a credential check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Unknown user, wrong password, or an account that may not submit.
    BadCredentials,
    /// The check could not be made right now.
    Temporary,
    /// The client's address is refused for a while after too many failed logins:
    /// `421` and close.
    Refused,
}

/// The host's decision about one recipient (RCPT TO, or VRFY when enabled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipientVerdict {
    /// A mailbox of this cluster.
    Local,
    /// Elsewhere, and this client may send there (authenticated submission).
    Remote,
    /// A local domain, but no such mailbox.
    UnknownUser,
    /// Elsewhere, and this client may not relay (never an open relay).
    RelayDenied,
    /// A mailbox of this cluster at or over its storage limit, or one the message's
    /// declared SIZE would take past it: `452 4.2.2`, the client may try again later
    /// and send the message to its other recipients now (RFC 5321 §3.3).
    MailboxFull,
    /// The directory could not answer now.
    Temporary,
}

/// The host's decision about an unauthenticated inbound sender ([`Action::CheckSender`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderVerdict {
    /// Not one of the host's domains (or the host lets it through).
    Accepted,
    /// One of the host's own domains, from a client that did not authenticate and is not
    /// trusted: `550 5.7.1`.
    LocalNeedsAuth,
    /// The directory could not answer now: `451 4.3.0`.
    Temporary,
}

/// Why a message was not accepted after its content was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryFailure {
    /// Nothing was made durable; the client should retry later.
    Temporary,
    /// The server's disk is full (or below its free-space floor); retry later.
    NoSpace,
    /// Over a limit the host enforces (a quota, a recipient's own limit).
    TooBig,
    /// Every recipient's mailbox is too full to take the message (storage limits):
    /// `452 4.2.2`, nothing was kept.
    MailboxFull,
    /// Refused for good; the text goes to the client (sanitized).
    Permanent(String),
}

/// Everything the session can be told.
#[derive(Debug)]
pub enum Input<'a> {
    /// Bytes from the client, in any pieces.
    Bytes(&'a [u8]),
    /// The handshake asked for by [`Action::StartTls`] completed.
    TlsEstablished,
    /// The answer to [`Action::Authenticate`].
    AuthResult(Result<(), AuthFailure>),
    /// The answer to [`Action::CheckRecipient`].
    RecipientChecked(RecipientVerdict),
    /// The answer to [`Action::CheckSender`].
    SenderChecked(SenderVerdict),
    /// The answer to [`Action::Deliver`]: the queue id once the message is durable.
    Delivered(Result<String, DeliveryFailure>),
    /// The server is stopping: `421` and close, whatever the session was doing.
    Shutdown,
}

/// Everything the session asks its host to do, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Write(Vec<u8>),
    /// Start the TLS handshake on the connection, then answer [`Input::TlsEstablished`].
    StartTls,
    /// Check these credentials, then answer [`Input::AuthResult`].
    Authenticate {
        username: String,
        password: Secret,
    },
    /// Decide local / remote / unknown / relay-denied / full, then answer
    /// [`Input::RecipientChecked`]. `postmaster` (RFC 5321 §4.1.1.3) comes without domain.
    CheckRecipient {
        address: String,
        /// The message's size as MAIL's `SIZE=` declared it (RFC 1870), 0 when it did
        /// not (or for VRFY): a mailbox it would not fit refuses it now.
        size: u64,
    },
    /// Decide whether this unauthenticated MAIL FROM may claim its domain (only with
    /// `check_sender`), then answer [`Input::SenderChecked`].
    CheckSender {
        address: String,
    },
    /// Content of the message being received, to keep until its [`Action::Deliver`]
    /// (or to drop when the next transaction starts). Handed over as it grows past
    /// [`SmtpConfig::spool_threshold`], so a session holds little of a big message in
    /// memory; needs no answer. `first`: the transaction's first, so whatever an
    /// earlier transaction spooled is dropped.
    Spool {
        first: bool,
        bytes: Vec<u8>,
    },
    /// Make the message durable for every recipient, then answer [`Input::Delivered`].
    Deliver(Envelope),
    /// Close the connection; the session ignores all input from now on.
    Close,
}

/// A message as received, for the host to make durable.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The EHLO/HELO name, as given.
    pub helo: String,
    /// The client said EHLO (ESMTP), not HELO: the Received `with` clause tells.
    pub esmtp: bool,
    /// Who authenticated (submission).
    pub authenticated_as: Option<String>,
    /// The reverse-path; `""` for the null sender `<>`.
    pub mail_from: String,
    /// Accepted recipients, in order, without duplicates.
    pub recipients: Vec<String>,
    /// `BODY=8BITMIME` on MAIL (RFC 6152).
    pub body_8bit: bool,
    /// `SMTPUTF8` on MAIL (RFC 6531).
    pub smtputf8: bool,
    /// The content: dot-unstuffed DATA or the concatenated BDAT chunks, exactly as
    /// received, line ends included — after the `spooled` bytes of it already handed
    /// over in [`Action::Spool`]s.
    pub message: Vec<u8>,
    /// Bytes of the content handed over before `message`; 0 when none was, and then
    /// whatever an abandoned transaction spooled is to be dropped.
    pub spooled: usize,
    /// Whether the connection was encrypted.
    pub tls: bool,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("helo", &self.helo)
            .field("authenticated_as", &self.authenticated_as)
            .field("mail_from", &self.mail_from)
            .field("recipients", &self.recipients)
            .field("body_8bit", &self.body_8bit)
            .field("smtputf8", &self.smtputf8)
            .field("message_len", &self.message.len())
            .field("spooled", &self.spooled)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The session machine.
pub struct Session {
    /// The node's settings, `hostname` cleaned of control characters.
    config: SmtpConfig,
    /// Whether the connection is encrypted (implicit TLS, or STARTTLS completed).
    tls_active: bool,
    /// The EHLO/HELO name; `None` before the client introduced itself (and again after
    /// STARTTLS, RFC 3207 §4.2).
    helo: Option<String>,
    /// The introduction was EHLO rather than HELO.
    esmtp: bool,
    /// The user whose credentials were accepted (submission).
    authenticated: Option<String>,
    /// From an accepted MAIL until the message is handed over, RSET, or a new EHLO.
    transaction: Option<Transaction>,
    /// How the next client bytes are to be read.
    reading: Reading,
    /// The host's answer this machine waits for; no input is read meanwhile.
    awaiting: Option<Awaiting>,
    /// Client bytes received but not yet read: pipelined input behind a host request, or
    /// the start of a line.
    pending: Vec<u8>,
    /// The most `pending` may hold.
    pending_budget: usize,
    /// The current command line went over [`MAX_COMMAND_LINE`]; skip to its LF.
    skipping_line: bool,
    /// Input was dropped because `pending` was full.
    overflowed: bool,
    /// Actions not yet taken by the host, oldest first.
    actions: VecDeque<Action>,
    /// Client mistakes so far.
    errors: u32,
    /// Command lines handled, for the end-of-session log line.
    commands: u64,
    /// The same lines by command name, until the host drains them.
    tally: CommandTally,
    /// Junk commands since the last delivered message, for `max_commands`.
    junk_commands: u32,
    /// The command being answered was already counted as junk, so an error in its reply
    /// does not count it twice.
    junk_counted: bool,
    closed: bool,
}

/// RFC 5321 §3.3: what one MAIL … DATA/BDAT LAST exchange has gathered.
#[derive(Default)]
struct Transaction {
    mail_from: String,
    body_8bit: bool,
    smtputf8: bool,
    recipients: Vec<String>,
    /// Content so far, after the `spooled` bytes handed to the host (BDAT chunks
    /// accumulate here; DATA fills it at once).
    message: Vec<u8>,
    spooled: usize,
    /// The first bytes of the content, kept for the header checks once the rest is
    /// spooled.
    head: Vec<u8>,
    /// A BDAT chunk was accepted: RCPT and DATA may no longer follow (RFC 3030 §3).
    chunking: bool,
    /// MAIL's `SIZE=` (RFC 1870), 0 when not given.
    declared_size: u64,
}

impl Transaction {
    /// Content holding the whole header section, for the header checks: `None` when
    /// the header runs past what was kept of a spooled message (a check must then
    /// fail, not pass on a truncated header).
    fn header_bytes(&self) -> Option<&[u8]> {
        if self.spooled == 0 {
            return Some(&self.message);
        }
        let head = self.head.as_slice();
        let ended = head.starts_with(b"\r\n")
            || head.starts_with(b"\n")
            || head.windows(3).any(|w| w == b"\n\r\n")
            || head.windows(2).any(|w| w == b"\n\n");
        ended.then_some(head)
    }
}

/// How client bytes are read next.
enum Reading {
    Command,
    /// A `334` was sent: the next line answers it (RFC 4954 §4).
    Sasl(SaslStep),
    /// After `354`, up to `<CRLF>.<CRLF>`.
    Data(DataBody),
    /// After `BDAT size [LAST]`: exactly `size` bytes (RFC 3030 §2). `refusal` is the
    /// reply when the command was refused; the chunk is read and dropped all the same.
    Chunk {
        body: ChunkBody,
        size: usize,
        last: bool,
        refusal: Option<ClientError>,
    },
}

/// Which challenge the client is answering.
enum SaslStep {
    /// PLAIN without an initial response: the whole PLAIN message.
    Plain,
    /// LOGIN: the user name.
    LoginUsername,
    /// LOGIN: the password for this user.
    LoginPassword { username: String },
}

/// The host's answer owed for the last request-carrying action.
enum Awaiting {
    Tls,
    Auth {
        username: String,
    },
    Recipient {
        address: String,
    },
    /// [`Action::CheckRecipient`] on behalf of VRFY.
    Verify {
        address: String,
    },
    /// [`Action::CheckSender`]: the transaction MAIL would open, once the host agrees.
    Sender {
        transaction: Transaction,
    },
    Delivery,
}

impl Session {
    /// A session on a fresh connection; the greeting is already queued.
    pub fn new(mut config: SmtpConfig, tls_active: bool) -> Session {
        config.hostname = reply::sanitize(&config.hostname, 255).replace(' ', "");
        let pending_budget = config.max_message_size.saturating_add(PIPELINE_SLACK);
        let mut session = Session {
            config,
            tls_active,
            helo: None,
            esmtp: false,
            authenticated: None,
            transaction: None,
            reading: Reading::Command,
            awaiting: None,
            pending: Vec::new(),
            pending_budget,
            skipping_line: false,
            overflowed: false,
            actions: VecDeque::new(),
            errors: 0,
            commands: 0,
            tally: CommandTally::default(),
            junk_commands: 0,
            junk_counted: false,
            closed: false,
        };
        // RFC 5321 §4.2: the greeting; "ESMTP" tells the client EHLO is welcome.
        let greeting = format!("220 {} ESMTP Portico", session.config.hostname);
        session.reply(&greeting);
        session
    }

    /// Feeds the session client bytes or the host's answer to an action. Answers that
    /// match no outstanding action are ignored, as is everything after close.
    pub fn handle(&mut self, input: Input<'_>) {
        if self.closed {
            return;
        }
        match input {
            Input::Bytes(bytes) => return self.feed(bytes),
            Input::Shutdown => {
                self.reply(reply::SHUTTING_DOWN);
                self.close();
            }
            Input::TlsEstablished => match self.awaiting.take() {
                Some(Awaiting::Tls) => self.on_tls_established(),
                other => self.awaiting = other,
            },
            Input::AuthResult(result) => match self.awaiting.take() {
                Some(Awaiting::Auth { username }) => self.on_auth_result(username, result),
                other => self.awaiting = other,
            },
            Input::RecipientChecked(verdict) => match self.awaiting.take() {
                Some(Awaiting::Recipient { address }) => {
                    self.on_recipient_checked(address, verdict)
                }
                Some(Awaiting::Verify { address }) => self.on_verified(address, verdict),
                other => self.awaiting = other,
            },
            Input::SenderChecked(verdict) => match self.awaiting.take() {
                Some(Awaiting::Sender { transaction }) => {
                    self.on_sender_checked(transaction, verdict)
                }
                other => self.awaiting = other,
            },
            Input::Delivered(result) => match self.awaiting.take() {
                Some(Awaiting::Delivery) => {
                    // As Postfix: each delivered message starts the junk count afresh, so
                    // a client that sends RSET before every message (a cached
                    // connection) is never cut off.
                    if result.is_ok() {
                        self.junk_commands = 0;
                    }
                    self.on_delivered(result)
                }
                other => self.awaiting = other,
            },
        }
        // The answer may have unblocked input the client pipelined meanwhile.
        self.pump();
    }

    /// The oldest action not yet taken.
    pub fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Command lines handled so far, junk or not (SASL responses and message content are
    /// not commands; a line refused for `max_commands` is not handled).
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// The commands handled since the last call, by name, each with how many times;
    /// for the host's statistics. Counted as [`Session::commands`] counts them.
    pub fn drain_commands(&mut self) -> impl Iterator<Item = (CommandName, u32)> + '_ {
        self.tally.drain()
    }

    /// Whether [`Action::Close`] was issued; all input is ignored from then on.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The user whose credentials were accepted, if any.
    pub fn authenticated_user(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    // ----- reading input -------------------------------------------------------------

    /// Whether client bytes are thrown away unread: after close, and between STARTTLS and
    /// the end of the handshake (anything sent then was sent in the clear).
    fn discards_input(&self) -> bool {
        self.closed || matches!(self.awaiting, Some(Awaiting::Tls))
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.discards_input() {
            return;
        }
        if self.pending.is_empty() && self.awaiting.is_none() {
            // The common case reads straight from the caller's buffer.
            let used = self.run(bytes);
            self.keep(&bytes[used..]);
        } else {
            self.keep(bytes);
        }
        self.pump();
    }

    /// Keeps unread bytes for later, within the budget.
    fn keep(&mut self, rest: &[u8]) {
        if rest.is_empty() || self.overflowed || self.discards_input() {
            return;
        }
        if self.pending.len().saturating_add(rest.len()) > self.pending_budget {
            self.overflowed = true;
            return;
        }
        self.pending.extend_from_slice(rest);
    }

    /// Reads kept input as far as it goes; ends the session once input had to be dropped
    /// and everything kept before the loss has been answered.
    fn pump(&mut self) {
        if self.awaiting.is_some() || self.closed {
            return;
        }
        if !self.pending.is_empty() {
            let mut pending = std::mem::take(&mut self.pending);
            let used = self.run(&pending);
            if self.discards_input() {
                return;
            }
            pending.drain(..used);
            self.pending = pending;
        }
        if self.overflowed && self.awaiting.is_none() && !self.closed {
            self.reply(reply::PIPELINE_OVERFLOW);
            self.close();
        }
    }

    /// Reads `input` until it runs out, a host answer is needed, or the session closes;
    /// returns how many bytes were used. What is left is an incomplete line or the input
    /// behind a host request.
    fn run(&mut self, input: &[u8]) -> usize {
        let mut used = 0;
        while self.awaiting.is_none() && !self.closed {
            let rest = &input[used..];
            match &mut self.reading {
                Reading::Command | Reading::Sasl(_) => {
                    let lf = rest.iter().position(|&b| b == b'\n');
                    if self.skipping_line {
                        match lf {
                            Some(lf) => {
                                used += lf + 1;
                                self.skipping_line = false;
                                continue;
                            }
                            None => return input.len(),
                        }
                    }
                    match lf {
                        Some(lf) if lf < MAX_COMMAND_LINE => {
                            used += lf + 1;
                            self.on_line(&rest[..=lf]);
                        }
                        Some(lf) => {
                            used += lf + 1;
                            self.on_line_too_long();
                        }
                        // The line, once it has its LF, cannot fit any more.
                        None if rest.len() >= MAX_COMMAND_LINE => {
                            used = input.len();
                            self.skipping_line = true;
                            self.on_line_too_long();
                        }
                        None => break,
                    }
                }
                Reading::Data(body) => {
                    let mut orphan = Transaction::default();
                    let tx = self.transaction.as_mut().unwrap_or(&mut orphan);
                    let limit = self.config.max_message_size;
                    let (n, end) = body.feed(rest, &mut tx.message, tx.spooled, limit);
                    used += n;
                    let Some(end) = end else {
                        self.spool_overflow();
                        break;
                    };
                    self.reading = Reading::Command;
                    self.on_data_end(end);
                }
                Reading::Chunk { body, .. } => {
                    let mut orphan = Transaction::default();
                    let tx = self.transaction.as_mut().unwrap_or(&mut orphan);
                    let (n, done) = body.feed(rest, &mut tx.message);
                    used += n;
                    self.spool_overflow();
                    if !done {
                        break;
                    }
                    if let Reading::Chunk {
                        size,
                        last,
                        refusal,
                        ..
                    } = std::mem::replace(&mut self.reading, Reading::Command)
                    {
                        self.on_chunk_end(size, last, refusal);
                    }
                }
            }
        }
        used
    }

    /// Hands the content of the transaction past the threshold to the host, all but
    /// the bytes DATA's receiver may still take back, keeping the first bytes for the
    /// header checks. BDAT chunks accumulate across commands, so a chunk's end spools
    /// too.
    fn spool_overflow(&mut self) {
        let threshold = self.config.spool_threshold;
        let Some(tx) = self.transaction.as_mut() else {
            return;
        };
        if tx.message.len() < threshold.saturating_add(crate::body::SPOOL_KEEP) {
            return;
        }
        if tx.spooled == 0 {
            tx.head = tx.message[..threshold.min(tx.message.len())].to_vec();
        }
        let cut = tx.message.len() - crate::body::SPOOL_KEEP;
        let first = tx.spooled == 0;
        let bytes: Vec<u8> = tx.message.drain(..cut).collect();
        tx.spooled += bytes.len();
        self.actions.push_back(Action::Spool { first, bytes });
    }

    /// A complete line (LF included, within the limit): a SASL response or a command.
    fn on_line(&mut self, line: &[u8]) {
        match std::mem::replace(&mut self.reading, Reading::Command) {
            Reading::Sasl(step) => self.on_sasl_response(step, line),
            _ => self.on_command(line),
        }
    }

    /// RFC 5321 §4.5.3.1.4: `500` for a line over the limit; an AUTH exchange it was
    /// meant to continue is over. Outside AUTH the line was a command, and junk: its verb
    /// cannot be trusted.
    fn on_line_too_long(&mut self) {
        let in_sasl = matches!(
            std::mem::replace(&mut self.reading, Reading::Command),
            Reading::Sasl(_)
        );
        if !in_sasl && !self.start_command(CommandName::OTHER, true) {
            return;
        }
        self.client_error(ClientError::LineTooLong);
    }

    /// Starts a command line: counts it under `name`, and counts it as junk when
    /// `junk` says it is junk by its verb. Past `max_commands` the session ends instead
    /// and this returns false.
    fn start_command(&mut self, name: CommandName, junk: bool) -> bool {
        self.junk_counted = false;
        if junk && !self.count_junk() {
            return false;
        }
        self.commands = self.commands.saturating_add(1);
        self.tally.count(name);
        true
    }

    /// Counts the command being answered as junk, once; the one past `max_commands` ends
    /// the session with `421`, and this returns false.
    fn count_junk(&mut self) -> bool {
        if self.junk_counted {
            return true;
        }
        if self.junk_commands >= self.config.max_commands {
            self.reply(reply::TOO_MANY_COMMANDS);
            self.close();
            return false;
        }
        self.junk_commands += 1;
        self.junk_counted = true;
        true
    }

    /// Junk by its verb alone, known before the command runs (so a junk command past
    /// the limit never runs; VRFY never reaches the host). The first EHLO or HELO, and
    /// the one RFC 3207 §4.2 asks for after STARTTLS, find `helo` empty.
    fn is_junk_verb(&self, verb: Verb) -> bool {
        match verb {
            Verb::Noop
            | Verb::Rset
            | Verb::Vrfy
            | Verb::Expn
            | Verb::Help
            | Verb::NotImplemented
            | Verb::Unknown => true,
            Verb::Ehlo | Verb::Helo => self.helo.is_some(),
            Verb::StartTls
            | Verb::Auth
            | Verb::Mail
            | Verb::Rcpt
            | Verb::Data
            | Verb::Bdat
            | Verb::Quit => false,
        }
    }

    fn on_command(&mut self, line: &[u8]) {
        let verb = Verb::of(line);
        if !self.start_command(verb.command_name(), self.is_junk_verb(verb)) {
            return;
        }
        match verb {
            Verb::Ehlo => self.cmd_ehlo(line),
            Verb::Helo => self.cmd_helo(line),
            Verb::StartTls => self.cmd_starttls(line),
            Verb::Auth => self.cmd_auth(line),
            Verb::Mail => self.cmd_mail(line),
            Verb::Rcpt => self.cmd_rcpt(line),
            Verb::Data => self.cmd_data(line),
            Verb::Bdat => self.cmd_bdat(line),
            Verb::Rset => self.cmd_rset(line),
            Verb::Noop => self.cmd_noop(line),
            Verb::Quit => self.cmd_quit(line),
            Verb::Vrfy => self.cmd_vrfy(line),
            Verb::Help => self.reply(reply::HELP),
            // RFC 5321 §3.5.3: EXPN may be disabled; there are no mailing lists to expand.
            Verb::Expn | Verb::NotImplemented => self.client_error(ClientError::NotImplemented),
            Verb::Unknown => self.client_error(ClientError::UnknownCommand),
        }
    }

    /// Parses a command line with smtp-proto; a parse error is answered here.
    fn parse<'l>(&mut self, line: &'l [u8]) -> Option<Request<Cow<'l, str>>> {
        match Request::parse(&mut line.iter()) {
            Ok(request) => Some(request),
            Err(error) => {
                self.client_error(parse_error(error));
                None
            }
        }
    }

    // ----- plumbing ------------------------------------------------------------------

    /// RFC 5321 §4.1.1.5: forgets the mail transaction (not the EHLO name or the login).
    fn reset_transaction(&mut self) {
        self.transaction = None;
    }

    fn request(&mut self, action: Action, awaiting: Awaiting) {
        self.actions.push_back(action);
        self.awaiting = Some(awaiting);
    }

    /// A reply to a client mistake. Past `max_errors` the session ends, which also
    /// bounds password guessing and address harvesting on one connection. A syntax or
    /// sequence error makes the command junk; if that is the junk command past
    /// `max_commands`, the session ends after this reply.
    fn client_error(&mut self, error: ClientError) {
        self.reply(&error.reply());
        self.errors = self.errors.saturating_add(1);
        if self.errors > self.config.max_errors {
            self.reply(reply::TOO_MANY_ERRORS);
            self.close();
            return;
        }
        if error.makes_junk() {
            self.count_junk();
        }
    }

    fn reply(&mut self, text: &str) {
        let mut bytes = Vec::with_capacity(text.len() + 2);
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(bytes);
    }

    /// Queues bytes, joining them to a write still queued so that the replies to a
    /// pipelined group go out in one write (RFC 2920 §3.2).
    fn write(&mut self, bytes: Vec<u8>) {
        if let Some(Action::Write(queued)) = self.actions.back_mut() {
            queued.extend_from_slice(&bytes);
        } else {
            self.actions.push_back(Action::Write(bytes));
        }
    }

    fn close(&mut self) {
        self.actions.push_back(Action::Close);
        self.closed = true;
        self.awaiting = None;
        self.reading = Reading::Command;
        self.transaction = None;
        self.pending = Vec::new();
    }
}

/// smtp-proto's parse errors as replies.
fn parse_error(error: smtp_proto::Error) -> ClientError {
    use smtp_proto::Error;
    match error {
        Error::UnknownCommand => ClientError::UnknownCommand,
        Error::InvalidSenderAddress => ClientError::InvalidSender,
        Error::InvalidRecipientAddress => ClientError::InvalidRecipient,
        Error::SyntaxError { syntax } => ClientError::Syntax(syntax),
        Error::InvalidParameter { param } => ClientError::InvalidParameter(param),
        Error::UnsupportedParameter { param } => {
            ClientError::UnsupportedParameter(reply::sanitize(&param, 64))
        }
        // A complete line never needs more data, and the others are response errors;
        // should smtp-proto say so anyway, the line did not make sense.
        Error::NeedsMoreData { .. } | Error::ResponseTooLong | Error::InvalidResponse { .. } => {
            ClientError::Syntax("command not understood")
        }
    }
}

/// Strips the line end from a line as read (LF, with its CR if any).
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    /// A conversation touching every reading mode, for the split tests.
    const SUBMISSION_WRITES: &[&[u8]] = &[
        b"EHLO client.example.org\r\n",
        b"STARTTLS\r\nNOOP\r\n",
        b"EHLO client.example.org\r\n",
        b"AUTH LOGIN\r\n",
        b"YWxpY2VAZXhhbXBsZS5jb20=\r\n",
        b"c2VjcmV0\r\n",
        b"MAIL FROM:<alice@example.com> BODY=8BITMIME\r\nRCPT TO:<bob@example.com>\r\n\
          RCPT TO:<nobody@example.com>\r\nRCPT TO:<carol@remote.example>\r\nDATA\r\n",
        b"Subject: one\r\n\r\n..stuffed\r\n.\r\nMAIL FROM:<alice@example.com>\r\n\
          RCPT TO:<bob@example.com>\r\nBDAT 7\r\nline\r\n\rBDAT 3 LAST\r\nend\
          NOOP\r\nHELP\r\nVRFY x\r\nFOO\r\nRSET\r\n",
        b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n",
        b".\r\nQUIT\r\n",
    ];

    fn whole(_: &[u8]) -> Vec<usize> {
        Vec::new()
    }

    fn expected_submission() -> (String, Vec<Envelope>) {
        play(submission(), false, SUBMISSION_WRITES, &mut whole, false)
    }

    #[test]
    fn full_conversation() {
        let (out, delivered) = expected_submission();
        let start = format!("{}\r\n", reply::START_DATA);
        let expected = [
            "220 mail.example.com ESMTP Portico\r\n",
            "250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n",
            "250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 STARTTLS\r\n",
            "220 2.0.0 Ready to start TLS\r\n[starttls]\n",
            "250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n",
            "250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n",
            "250 AUTH PLAIN LOGIN\r\n",
            "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n",
            "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n",
            "550 5.1.1 Mailbox unavailable\r\n250 2.1.5 Recipient OK\r\n",
            &start,
            "[deliver 26]\n250 2.0.0 Ok: queued as Q1\r\n",
            "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n250 2.0.0 7 octets received\r\n",
            "[deliver 10]\n250 2.0.0 Ok: queued as Q2\r\n",
            "250 2.0.0 Ok\r\n",
            reply::HELP,
            "\r\n",
            reply::CANNOT_VRFY,
            "\r\n500 5.5.1 Unknown command\r\n250 2.0.0 Ok\r\n",
            "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n",
            &start,
            "[deliver 0]\n250 2.0.0 Ok: queued as Q3\r\n221 2.0.0 Bye\r\n[close]\n",
        ]
        .concat();
        assert_eq!(out, expected);
        assert_eq!(delivered.len(), 3);
        assert_eq!(delivered[0].message, b"Subject: one\r\n\r\n.stuffed\r\n");
        assert_eq!(
            delivered[0].recipients,
            ["bob@example.com", "carol@remote.example"]
        );
        assert!(delivered[0].body_8bit && delivered[0].tls);
        assert_eq!(delivered[1].message, b"line\r\n\rend");
        assert!(!delivered[1].body_8bit);
        assert_eq!(delivered[2].message, b"");
    }

    #[test]
    fn byte_by_byte_gives_the_same_output() {
        let expected = expected_submission();
        for eager in [false, true] {
            let mut bytewise = |write: &[u8]| (1..write.len()).collect::<Vec<_>>();
            let got = play(submission(), false, SUBMISSION_WRITES, &mut bytewise, eager);
            assert_eq!(got.0, expected.0, "eager: {eager}");
            assert_eq!(got.1, expected.1, "eager: {eager}");
        }
    }

    #[test]
    fn random_splits_give_the_same_output() {
        let expected = expected_submission();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let mut random = |write: &[u8]| {
                let mut cuts: Vec<usize> = (0..rng.below(6))
                    .map(|_| 1 + rng.below(write.len().saturating_sub(1)))
                    .filter(|&cut| cut < write.len())
                    .collect();
                cuts.sort_unstable();
                cuts.dedup();
                cuts
            };
            let got = play(
                submission(),
                false,
                SUBMISSION_WRITES,
                &mut random,
                round % 2 == 0,
            );
            assert_eq!(got.0, expected.0, "round {round}");
            assert_eq!(got.1, expected.1, "round {round}");
        }
    }

    #[test]
    fn bare_lf_ends_command_lines() {
        let mut s = start(inbound(), false);
        assert_eq!(
            send(&mut s, "NOOP\nRSET\n"),
            "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
        );
    }

    #[test]
    fn command_line_limit_counts_the_crlf() {
        let mut s = start(inbound(), false);
        let fits = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE - 7));
        assert_eq!(fits.len(), MAX_COMMAND_LINE);
        assert_eq!(send(&mut s, &fits), "250 2.0.0 Ok\r\n");
        let over = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE - 6));
        assert_eq!(send(&mut s, &over), "500 5.5.6 Line too long\r\n");
    }

    #[test]
    fn overlong_line_is_refused_once_and_its_tail_never_runs() {
        let mut s = start(inbound(), false);
        // Reported as soon as it cannot fit, before its end arrives.
        let head = format!("NOOP {}", "x".repeat(MAX_COMMAND_LINE));
        assert_eq!(send(&mut s, &head), "500 5.5.6 Line too long\r\n");
        assert_eq!(send(&mut s, &"y".repeat(100_000)), "");
        assert_eq!(send(&mut s, " QUIT\r\nNOOP\r\n"), "250 2.0.0 Ok\r\n");
        assert!(s.pending.is_empty());
        assert_eq!(s.commands(), 2);
    }

    #[test]
    fn commands_are_counted_by_verb_and_the_rest_as_other() {
        let mut s = start(inbound(), false);
        let names = |s: &mut Session| -> Vec<(&str, u32)> {
            s.drain_commands().map(|(n, c)| (n.as_str(), c)).collect()
        };
        assert!(names(&mut s).is_empty());
        send(
            &mut s,
            "ehlo client.example.org\r\nNOOP\r\nnoop\r\nETRN x\r\nXYZZY\r\n",
        );
        let over = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE));
        send(&mut s, &over);
        assert_eq!(names(&mut s), [("EHLO", 1), ("NOOP", 2), ("OTHER", 3)]);
        send(&mut s, "QUIT\r\n");
        assert_eq!(names(&mut s), [("QUIT", 1)]);
        assert_eq!(s.commands(), 7);
    }

    #[test]
    fn too_many_errors_closes_after_the_one_past_the_limit() {
        let config = SmtpConfig {
            max_errors: 2,
            ..inbound()
        };
        let mut s = start(config, false);
        assert_eq!(
            send(&mut s, "FOO\r\nBAR\r\nNOOP\r\nBAZ\r\nNOOP\r\n"),
            "500 5.5.1 Unknown command\r\n500 5.5.1 Unknown command\r\n250 2.0.0 Ok\r\n\
             500 5.5.1 Unknown command\r\n421 4.7.0 Too many errors, closing connection\r\n\
             [close]\n"
        );
        assert!(s.is_closed());
    }

    const TOO_MANY: &str = "421 4.7.0 Too many commands, closing connection\r\n[close]\n";

    #[test]
    fn too_many_commands_counts_junk_only() {
        let config = SmtpConfig {
            max_commands: 2,
            ..inbound()
        };
        let mut s = start(config, false);
        assert!(send(&mut s, "EHLO client\r\n").starts_with("250-mail.example.com\r\n"));
        for _ in 0..3 {
            send(
                &mut s,
                "MAIL FROM:<a@remote.example>\r\nRCPT TO:<x@example.com>\r\nDATA\r\n",
            );
            assert_eq!(
                answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local)),
                format!("250 2.1.5 Recipient OK\r\n{}\r\n", reply::START_DATA)
            );
            send(&mut s, "hi\r\n.\r\n");
            assert_eq!(
                answer(&mut s, Input::Delivered(Ok("Q".into()))),
                "250 2.0.0 Ok: queued as Q\r\n"
            );
        }
        send(
            &mut s,
            "MAIL FROM:<a@remote.example>\r\nRCPT TO:<x@example.com>\r\n",
        );
        answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local));
        assert_eq!(
            send(&mut s, "BDAT 2 LAST\r\nhi"),
            "[deliver <a@remote.example> -> x@example.com 2]\n"
        );
        answer(&mut s, Input::Delivered(Ok("Q".into())));
        // Two junk commands are allowed, the third ends the session unanswered.
        assert_eq!(
            send(&mut s, "NOOP\r\nRSET\r\nEHLO client\r\nQUIT\r\n"),
            format!("250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n{TOO_MANY}")
        );
        assert!(s.is_closed());
        // EHLO, 3 × (MAIL, RCPT, DATA), MAIL, RCPT, BDAT, NOOP, RSET; not the refused EHLO.
        assert_eq!(s.commands(), 1 + 9 + 3 + 2);
    }

    #[test]
    fn fifteen_hundred_messages_on_one_connection() {
        const CONTENT: &str = "Subject: list\r\n\r\nissue\r\n";
        let config = SmtpConfig {
            max_commands: 1000,
            ..inbound()
        };
        let mut s = start(config, false);
        assert!(send(&mut s, "EHLO lists.remote.example\r\n").starts_with("250-"));
        for n in 1..=1500 {
            // A cached connection's client resets before every message (Postfix does).
            let write = format!(
                "RSET\r\nMAIL FROM:<list@remote.example>\r\nRCPT TO:<x@example.com>\r\n\
                 DATA\r\n{CONTENT}.\r\n"
            );
            assert_eq!(
                send(&mut s, &write),
                "250 2.0.0 Ok\r\n250 2.1.0 Sender OK\r\n[check x@example.com]\n",
                "message {n}"
            );
            assert_eq!(
                answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local)),
                format!(
                    "250 2.1.5 Recipient OK\r\n{}\r\n\
                     [deliver <list@remote.example> -> x@example.com {}]\n",
                    reply::START_DATA,
                    CONTENT.len()
                ),
                "message {n}"
            );
            assert_eq!(
                answer(&mut s, Input::Delivered(Ok(format!("Q{n}")))),
                format!("250 2.0.0 Ok: queued as Q{n}\r\n"),
                "message {n}"
            );
        }
        assert_eq!(send(&mut s, "QUIT\r\n"), "221 2.0.0 Bye\r\n[close]\n");
        assert_eq!(s.commands(), 1 + 1500 * 4 + 1);
    }

    #[test]
    fn the_noop_past_the_limit_closes() {
        let config = SmtpConfig {
            max_commands: 1000,
            ..inbound()
        };
        let mut s = start(config, false);
        assert_eq!(
            send(&mut s, &"NOOP\r\n".repeat(1001)),
            format!("{}{TOO_MANY}", "250 2.0.0 Ok\r\n".repeat(1000))
        );
        assert!(s.is_closed());
        assert_eq!(s.commands(), 1000);
    }

    /// With no junk allowed at all: what ends the session, and what does not.
    fn no_junk_allowed(mode: Mode, tls: bool) -> Session {
        let config = SmtpConfig {
            mode,
            max_commands: 0,
            ..submission()
        };
        let mut s = start(config, tls);
        assert!(send(&mut s, "EHLO client\r\n").starts_with("250-"));
        s
    }

    #[test]
    fn junk_by_its_verb_never_runs() {
        let too_long = format!("NOOP {}", "x".repeat(MAX_COMMAND_LINE));
        for line in [
            "NOOP",
            "RSET",
            "VRFY alice@example.com",
            "EXPN staff",
            "HELP",
            "EHLO client",
            "HELO client",
            "ETRN example.com",
            "XYZZY",
            "",
            &too_long,
        ] {
            let mut s = no_junk_allowed(Mode::Inbound, false);
            assert_eq!(send(&mut s, &format!("{line}\r\n")), TOO_MANY, "{line:.20}");
        }
    }

    #[test]
    fn syntax_and_sequence_errors_are_junk() {
        for (write, refusal) in [
            (
                "MAIL FROM:<a@b.example> SIZE=abc\r\n",
                "501 5.5.4 Invalid SIZE parameter",
            ),
            ("MAIL FROM:a@b.example\r\n", "501 5.5.4 Syntax: *"),
            (
                "MAIL FROM:<a@b.example> FOO=1\r\n",
                "555 5.5.4 Unsupported parameter FOO=1",
            ),
            (
                "RCPT TO:<x@example.com>\r\n",
                "503 5.5.1 Need MAIL command first",
            ),
            ("DATA\r\n", "503 5.5.1 Need MAIL command first"),
            ("BDAT 2 LAST\r\nhi", "503 5.5.1 Need MAIL command first"),
            ("BDAT x\r\n", "501 5.5.4 *"),
            ("STARTTLS\r\n", "503 5.5.1 TLS already active"),
            ("AUTH PLAIN\r\n", "503 5.5.1 Authentication not available"),
        ] {
            let mut s = no_junk_allowed(Mode::Inbound, true);
            let out = send(&mut s, write);
            let (reply, rest) = out.split_once("\r\n").unwrap_or((&out, ""));
            match refusal.strip_suffix('*') {
                Some(start) => assert!(reply.starts_with(start), "{write:?}: {out:?}"),
                None => assert_eq!(reply, refusal, "{write:?}"),
            }
            assert_eq!(rest, TOO_MANY, "{write:?}");
        }
        // Within the AUTH exchange too.
        let mut s = no_junk_allowed(Mode::Submission, true);
        send(&mut s, "AUTH PLAIN\r\n");
        assert_eq!(
            send(&mut s, "not base64!\r\n"),
            format!("501 5.5.2 Invalid base64 data\r\n{TOO_MANY}")
        );
    }

    #[test]
    fn a_junk_command_with_an_error_counts_once() {
        let config = SmtpConfig {
            max_commands: 2,
            ..inbound()
        };
        let mut s = start(config, false);
        assert_eq!(
            send(&mut s, "FOO\r\nVRFY\r\nNOOP\r\n"),
            format!("500 5.5.1 Unknown command\r\n501 5.5.4 Syntax: VRFY string\r\n{TOO_MANY}")
        );
    }

    #[test]
    fn mail_and_its_refusals_are_no_junk() {
        let mut s = no_junk_allowed(Mode::Submission, false);
        assert_eq!(
            send(&mut s, "STARTTLS\r\n"),
            "220 2.0.0 Ready to start TLS\r\n[starttls]\n"
        );
        answer(&mut s, Input::TlsEstablished);
        // RFC 3207 §4.2: the EHLO after STARTTLS is the first again.
        login(&mut s);
        assert_eq!(
            send(&mut s, "MAIL FROM:<mallory@example.com>\r\n"),
            "553 5.7.1 Sender address not owned by authenticated user\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL FROM:<alice@example.com> SIZE=5000\r\n"),
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
        );
        assert_eq!(
            send(
                &mut s,
                "MAIL FROM:<alice@example.com>\r\nRCPT TO:<nobody@example.com>\r\n"
            ),
            "250 2.1.0 Sender OK\r\n[check nobody@example.com]\n"
        );
        assert_eq!(
            answer(
                &mut s,
                Input::RecipientChecked(RecipientVerdict::UnknownUser)
            ),
            "550 5.1.1 Mailbox unavailable\r\n"
        );
        assert_eq!(
            send(&mut s, "DATA\r\n"),
            "554 5.5.1 No valid recipients\r\n"
        );
        send(&mut s, "RCPT TO:<bob@example.com>\r\n");
        answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local));
        assert_eq!(
            send(&mut s, "DATA\r\nhi\r\n.\r\n"),
            format!(
                "{}\r\n[deliver <alice@example.com> -> bob@example.com 4]\n",
                reply::START_DATA
            )
        );
        assert_eq!(
            answer(&mut s, Input::Delivered(Err(DeliveryFailure::Temporary))),
            format!("{}\r\n", reply::DELIVERY_TEMPORARY)
        );
        assert_eq!(send(&mut s, "QUIT\r\n"), "221 2.0.0 Bye\r\n[close]\n");
    }

    #[test]
    fn input_waits_behind_a_host_request() {
        let mut s = start(inbound(), false);
        send(&mut s, "EHLO client\r\n");
        assert_eq!(
            send(
                &mut s,
                "MAIL FROM:<a@remote.example>\r\nRCPT TO:<x@example.com>\r\nNOOP\r\nNO"
            ),
            "250 2.1.0 Sender OK\r\n[check x@example.com]\n"
        );
        assert_eq!(send(&mut s, "OP\r\n"), "");
        // An answer nobody asked for is ignored.
        assert_eq!(answer(&mut s, Input::Delivered(Ok("Q".into()))), "");
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "");
        assert_eq!(
            answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local)),
            "250 2.1.5 Recipient OK\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
        );
    }

    #[test]
    fn commands_pipelined_after_the_content_wait_for_the_delivery() {
        let mut s = start(inbound(), false);
        send(
            &mut s,
            "EHLO client\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<x@example.com>\r\n",
        );
        answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local));
        send(&mut s, "DATA\r\n");
        assert_eq!(
            send(&mut s, "body\r\n.\r\nQUIT\r\n"),
            "[deliver <a@remote.example> -> x@example.com 6]\n"
        );
        assert_eq!(
            answer(&mut s, Input::Delivered(Ok("ABC".into()))),
            "250 2.0.0 Ok: queued as ABC\r\n221 2.0.0 Bye\r\n[close]\n"
        );
    }

    #[test]
    fn a_whole_bdat_message_may_wait_behind_recipient_checks() {
        let mut s = start(inbound(), false);
        let message = "x".repeat(1000);
        let write = format!(
            "EHLO client\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<x@example.com>\r\n\
             BDAT 1000 LAST\r\n{message}QUIT\r\n"
        );
        assert!(send(&mut s, &write).ends_with("[check x@example.com]\n"));
        assert_eq!(
            answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local)),
            "250 2.1.5 Recipient OK\r\n[deliver <a@remote.example> -> x@example.com 1000]\n"
        );
        assert_eq!(
            answer(&mut s, Input::Delivered(Ok("Q1".into()))),
            "250 2.0.0 Ok: queued as Q1\r\n221 2.0.0 Bye\r\n[close]\n"
        );
    }

    #[test]
    fn pipelined_input_beyond_the_budget_ends_the_session() {
        let config = SmtpConfig {
            max_commands: u32::MAX,
            ..inbound()
        };
        let mut s = start(config, false);
        send(
            &mut s,
            "EHLO client\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<x@example.com>\r\n",
        );
        let flood = "NOOP\r\n".repeat(2000);
        for _ in 0..20 {
            assert_eq!(send(&mut s, &flood), "");
            assert!(s.pending.len() <= s.pending_budget);
        }
        let out = answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local));
        assert!(out.starts_with("250 2.1.5 Recipient OK\r\n250 2.0.0 Ok\r\n"));
        assert!(out.ends_with(
            "250 2.0.0 Ok\r\n421 4.7.0 Too much pipelined input, closing connection\r\n[close]\n"
        ));
        assert!(s.is_closed());
    }

    #[test]
    fn shutdown_while_the_host_is_busy() {
        let mut s = start(inbound(), false);
        send(
            &mut s,
            "EHLO client\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<x@example.com>\r\n",
        );
        assert_eq!(
            answer(&mut s, Input::Shutdown),
            "421 4.3.2 Service shutting down\r\n[close]\n"
        );
        assert_eq!(
            answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local)),
            ""
        );
    }

    #[test]
    fn envelope_debug_does_not_print_the_message() {
        let envelope = Envelope {
            helo: "h".into(),
            esmtp: true,
            authenticated_as: None,
            mail_from: String::new(),
            recipients: vec!["a@b".into()],
            body_8bit: false,
            smtputf8: false,
            message: b"secret body".to_vec(),
            spooled: 0,
            tls: false,
        };
        let printed = format!("{envelope:?}");
        assert!(printed.contains("message_len: 11"));
        assert!(!printed.contains("secret body"));
    }

    mod properties {
        use super::super::testing::*;
        use super::super::*;
        use proptest::prelude::*;

        /// Fragments that drive the machine through its states, mixed with noise.
        fn fragment() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                Just(b"EHLO c\r\n".to_vec()),
                Just(b"HELO c\r\n".to_vec()),
                Just(b"STARTTLS\r\n".to_vec()),
                Just(b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA==\r\n".to_vec()),
                Just(b"AUTH LOGIN\r\n".to_vec()),
                Just(b"AUTH PLAIN\r\n".to_vec()),
                Just(b"*\r\n".to_vec()),
                Just(b"MAIL FROM:<alice@example.com>\r\n".to_vec()),
                Just(b"MAIL FROM:<> SIZE=999999\r\n".to_vec()),
                Just(b"RCPT TO:<bob@example.com>\r\n".to_vec()),
                Just(b"RCPT TO:<nobody@example.com>\r\n".to_vec()),
                Just(b"RCPT TO:<x@remote.example>\r\n".to_vec()),
                Just(b"DATA\r\n".to_vec()),
                Just(b".\r\n".to_vec()),
                Just(b"\r\n.\r\n".to_vec()),
                Just(b"BDAT 5\r\n".to_vec()),
                Just(b"BDAT 3 LAST\r\n".to_vec()),
                Just(b"RSET\r\n".to_vec()),
                Just(b"NOOP\r\n".to_vec()),
                Just(b"VRFY a@b\r\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..64),
                proptest::collection::vec(
                    prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'A')],
                    0..16
                ),
            ]
        }

        fn conversation() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(fragment(), 0..40).prop_map(|parts| parts.concat())
        }

        fn config(inbound_mode: bool, vrfy: bool) -> SmtpConfig {
            SmtpConfig {
                mode: if inbound_mode {
                    Mode::Inbound
                } else {
                    Mode::Submission
                },
                vrfy_enabled: vrfy,
                max_message_size: 64,
                max_errors: 1000,
                plaintext_auth_without_tls: true,
                ..submission()
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]

            /// Never panics, and however the input is cut, the output is the same.
            #[test]
            fn splits_do_not_matter(
                input in conversation(),
                cuts in proptest::collection::vec(any::<usize>(), 0..12),
                inbound_mode in any::<bool>(),
                vrfy in any::<bool>(),
                eager in any::<bool>(),
            ) {
                let writes: &[&[u8]] = &[&input];
                let expected = play(config(inbound_mode, vrfy), false, writes, &mut |_: &[u8]| Vec::new(), false);
                let mut split = |write: &[u8]| {
                    let mut points: Vec<usize> = cuts
                        .iter()
                        .filter(|_| write.len() > 1)
                        .map(|cut| 1 + cut % (write.len() - 1))
                        .collect();
                    points.sort_unstable();
                    points.dedup();
                    points
                };
                let got = play(config(inbound_mode, vrfy), false, writes, &mut split, eager);
                prop_assert_eq!(got.0, expected.0);
                prop_assert_eq!(got.1, expected.1);
            }

            /// Arbitrary bytes: no panic, every reply a well-formed line, memory bounded.
            #[test]
            fn arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..4096), inbound_mode in any::<bool>()) {
                let mut s = Session::new(config(inbound_mode, false), false);
                let mut host = Host::new();
                let mut out = String::new();
                for chunk in input.chunks(97) {
                    s.handle(Input::Bytes(chunk));
                    host.settle(&mut s, &mut out, true);
                    prop_assert!(s.pending.len() <= s.pending_budget);
                    if let Some(tx) = &s.transaction {
                        prop_assert!(tx.message.len() <= s.config.max_message_size + 2);
                    }
                }
                // Every reply line starts with a code, whatever markers sit between.
                for piece in out.split_terminator("\r\n") {
                    let mut line = piece;
                    while line.starts_with('[') {
                        match line.find("]\n") {
                            Some(end) => line = &line[end + 2..],
                            None => break,
                        }
                    }
                    if line.is_empty() {
                        continue;
                    }
                    let bytes = line.as_bytes();
                    prop_assert!(
                        bytes.len() >= 4
                            && bytes[..3].iter().all(u8::is_ascii_digit)
                            && matches!(bytes[3], b' ' | b'-')
                            && !line.contains(['\r', '\n']),
                        "{:?}",
                        line
                    );
                }
            }
        }
    }
}
