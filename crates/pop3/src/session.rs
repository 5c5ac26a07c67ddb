//! The POP3 session machine: the AUTHORIZATION, TRANSACTION and UPDATE states of
//! RFC 1939 §3, with CAPA (RFC 2449), STLS (RFC 2595 §4), AUTH PLAIN (RFC 5034, RFC 4616)
//! and the response codes of RFC 2449 §8 and RFC 3206.
//!
//! How it runs: bytes go through a [`LineReader`], and lines are handled strictly one at a
//! time. A command that needs the caller (a credential check, the maildrop, a message, the
//! final deletion, the TLS handshake) queues its [`Action`] and parks the machine in
//! [`Awaiting`]; later lines stay queued until the matching [`Input`] arrives. That is all
//! RFC 2449 PIPELINING asks: replies in command order, whatever the caller's latency.
//! STLS is the exception: whatever the client sent behind it is thrown away, since it was
//! sent in the clear and could have been injected by anyone on the path.
//!
//! Errors come in the three tiers of STYLE.md: a client's mistake gets `-ERR` and counts
//! toward `max_bad_commands`; a store or directory failure gets `-ERR [SYS/TEMP]` (or
//! `[IN-USE]`) and is not the client's fault; and the caller closes the connection on I/O
//! or TLS failures, which this machine never sees.

use std::collections::VecDeque;

use crate::command::{Command, CommandLine};
use crate::line::{Line, LineReader};
use crate::multiline::{Stuffing, push_stuffed, top_len};
use crate::tally::{CommandName, CommandTally};
pub use portico_sasl::Secret;
use portico_sasl::{SaslError, decode_plain};

/// What the session needs to know of the node's POP3 settings.
#[derive(Clone, Debug)]
pub struct Pop3Config {
    /// Value of CAPA `IMPLEMENTATION`, also shown in the greeting.
    pub implementation: String,
    /// Login type `plaintext`: USER/PASS and AUTH PLAIN are allowed without TLS.
    pub plaintext_login_without_tls: bool,
    /// Whether STLS can be offered (the node has a certificate and this is not TLS already).
    pub tls_available: bool,
    /// Longest command line accepted, CRLF included.
    pub max_line_len: usize,
    /// Client errors tolerated before the session is closed.
    pub max_bad_commands: u32,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            implementation: "Portico".to_string(),
            plaintext_login_without_tls: false,
            tls_available: true,
            max_line_len: 2048,
            max_bad_commands: 20,
        }
    }
}

/// Why a credential check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Unknown user, wrong password, or an account that may never sign in.
    BadCredentials,
    /// Right password, but POP3 is turned off for this account.
    Disabled,
    /// The server could not check right now.
    Temporary,
    /// The node that holds the mailbox cannot be reached now.
    MailboxUnavailable,
    /// The user already has as many sessions as the server allows.
    TooManyConnections,
}

/// Why the maildrop could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaildropError {
    /// Another POP3 session holds the maildrop lock (RFC 2449 `IN-USE`).
    InUse,
    /// The store failed or the message is gone.
    Unavailable,
}

/// One message of the maildrop as listed at login; the listing is fixed for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaildropEntry {
    pub uid: u32,
    /// Exact octets RETR sends (before byte-stuffing).
    pub size: u64,
    /// The UIDL value: stable forever for this message, never reused.
    pub unique_id: String,
}

/// Everything the session can be told.
#[derive(Debug)]
pub enum Input<'a> {
    Bytes(&'a [u8]),
    TlsEstablished,
    AuthResult(Result<(), AuthFailure>),
    MaildropOpened(Result<Vec<MaildropEntry>, MaildropError>),
    MessageFetched(Result<Vec<u8>, MaildropError>),
    /// A piece of the message [`Action::FetchMessage`] asked for with `in_pieces`, the
    /// next in order; `more`: others follow. Instead of one [`Input::MessageFetched`], so
    /// that a host can send a big message as the client reads it. A failure after the
    /// first piece ends the connection: the response cannot be finished.
    MessagePiece {
        piece: Result<Vec<u8>, MaildropError>,
        more: bool,
    },
    DeletesCommitted(Result<(), MaildropError>),
    Shutdown,
    /// The user's maildrop is being moved to another server: the session ends without
    /// committing deletions, as at a shutdown.
    MailboxMoving,
}

/// Everything the session asks its caller to do, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Write(Vec<u8>),
    StartTls,
    Authenticate {
        username: String,
        password: Secret,
    },
    OpenMaildrop,
    /// Read message `uid` and answer [`Input::MessageFetched`], or, when `in_pieces`
    /// (RETR: the whole message goes out), as many [`Input::MessagePiece`]s as the host
    /// likes.
    FetchMessage {
        uid: u32,
        in_pieces: bool,
        /// TOP: only the header and this many body lines are sent, so the host may
        /// answer with a prefix that holds them ([`crate::top_is_within`]).
        top_lines: Option<usize>,
    },
    CommitDeletes {
        uids: Vec<u32>,
    },
    Close,
}

/// The session machine.
pub struct Session {
    /// The node's settings, `implementation` cleaned of control characters because it is
    /// echoed into the greeting and CAPA.
    config: Pop3Config,
    /// Whether the connection is encrypted (implicit TLS, or STLS completed).
    tls_active: bool,
    state: State,
    /// The caller's reply this machine is waiting for; no line is handled meanwhile.
    awaiting: Option<Awaiting>,
    reader: LineReader,
    /// Actions not yet taken by the caller, oldest first.
    actions: VecDeque<Action>,
    /// Set once the credentials were accepted; cleared again if the maildrop cannot be
    /// opened. The caller reads it to know whose maildrop [`Action::OpenMaildrop`] means.
    username: Option<String>,
    /// Client mistakes so far, failed logins included.
    bad_commands: u32,
    /// Command lines handled, for the end-of-session log line.
    commands: u64,
    /// The same lines by command name, until the host drains them.
    tally: CommandTally,
    /// What the client sent while its credentials were being checked, kept raw while
    /// the reader holds nothing and within the reader's queue budget: a proxy hands it
    /// on to the mailbox's home node ([`Session::hand_off`]).
    held: Vec<u8>,
}

/// A session whose credentials were verified while PASS or AUTH still waits for its
/// reply: what a proxying node hands to the mailbox's home node, which resumes the
/// session there ([`Session::resume_signed_in`]) and sends that reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOff {
    pub username: String,
    /// The client's mistakes so far, failed logins included.
    pub bad_commands: u32,
    /// What the client sent after the sign-in command.
    pub unread: Vec<u8>,
}

/// RFC 1939 §3 session states. UPDATE has no variant: it is the [`Awaiting::Commit`] wait
/// at the end of TRANSACTION, followed by [`State::Closed`].
enum State {
    Authorization(Authorization),
    Transaction(Maildrop),
    Closed,
}

/// What exists only before login.
#[derive(Default)]
struct Authorization {
    /// Name given by USER, waiting for PASS (RFC 1939 §7).
    user: Option<String>,
    /// `AUTH PLAIN` came without an initial response and `+ ` was sent: the next line is
    /// the client's SASL response, not a command (RFC 5034 §4).
    sasl_continuation: bool,
}

/// The maildrop as listed at login: message number k is `entries[k - 1]` for the whole
/// session (RFC 1939 §5), however the store changes meanwhile.
struct Maildrop {
    entries: Vec<MaildropEntry>,
    /// Marked by DELE, parallel to `entries`.
    deleted: Vec<bool>,
}

/// The reply the caller owes for the last request-carrying action.
enum Awaiting {
    /// [`Action::StartTls`]: waiting for [`Input::TlsEstablished`].
    Tls,
    /// [`Action::Authenticate`] for this user.
    Auth { username: String },
    /// [`Action::OpenMaildrop`].
    Maildrop,
    /// [`Action::FetchMessage`] for RETR (`top_lines` none) or TOP.
    Message {
        index: usize,
        top_lines: Option<usize>,
    },
    /// RETR's response is under way: more [`Input::MessagePiece`]s follow.
    Pieces { stuffing: Stuffing },
    /// [`Action::CommitDeletes`] of this many messages.
    Commit { count: usize },
}

// The wire vocabulary in one place, so texts stay consistent and reviewable.
const OK: &str = "+OK";
const UNKNOWN_COMMAND: &str = "-ERR Unknown command";
const WRONG_STATE: &str = "-ERR Command not valid in this state";
const LINE_TOO_LONG: &str = "-ERR Line too long";
const TOO_MANY_BAD: &str = "-ERR Too many bad commands, closing connection";
const PIPELINE_OVERFLOW: &str = "-ERR Too much pipelined input, closing connection";
const SHUTTING_DOWN: &str = "-ERR [SYS/TEMP] Server shutting down";
/// The goodbye of a session whose maildrop is being moved.
pub const MAILBOX_MOVING: &str =
    "-ERR [SYS/TEMP] Your mailbox is being moved to another server, please reconnect";
const TOO_MANY_ARGS: &str = "-ERR Too many arguments";
const PLAINTEXT_DISALLOWED: &str =
    "-ERR [SYS/PERM] Plaintext authentication disallowed without TLS, use STLS";
const TLS_ACTIVE: &str = "-ERR Command not permitted when TLS active";
const STLS_UNAVAILABLE: &str = "-ERR STLS not available";
const BEGIN_TLS: &str = "+OK Begin TLS negotiation";
const MISSING_USER: &str = "-ERR Missing user name";
const INVALID_USER: &str = "-ERR Invalid user name";
const USER_FIRST: &str = "-ERR USER first";
const MISSING_PASSWORD: &str = "-ERR Missing password";
const AUTH_MECHANISMS: &str = "+OK\r\nPLAIN\r\n.";
const SASL_CONTINUE: &str = "+ ";
const SASL_CANCELLED: &str = "-ERR Authentication cancelled";
const SASL_INVALID: &str = "-ERR [AUTH] Invalid SASL PLAIN response";
const SASL_AUTHZID: &str = "-ERR [AUTH] Authorization identity must match";
const SASL_UNSUPPORTED: &str = "-ERR Unsupported authentication mechanism";
const AUTH_FAILED: &str = "-ERR [AUTH] Authentication failed";
const AUTH_DISABLED: &str = "-ERR [SYS/PERM] POP3 access is disabled for this account";
const AUTH_TEMPORARY: &str = "-ERR [SYS/TEMP] Authentication service unavailable, try again later";
const MAILBOX_SERVER_UNAVAILABLE: &str =
    "-ERR [SYS/TEMP] The server that holds your mailbox is unavailable, try again later";
const MAILDROP_IN_USE: &str = "-ERR [IN-USE] Mailbox is locked by another POP3 session";
const MAILDROP_UNAVAILABLE: &str = "-ERR [SYS/TEMP] Mailbox unavailable, try again later";
const MISSING_MESSAGE: &str = "-ERR Missing message number";
const INVALID_MESSAGE: &str = "-ERR Invalid message number";
const NO_SUCH_MESSAGE: &str = "-ERR No such message";
const MISSING_LINES: &str = "-ERR Missing line count";
const INVALID_LINES: &str = "-ERR Invalid line count";
const FETCH_FAILED: &str = "-ERR [SYS/TEMP] Message could not be read";
const BYE: &str = "+OK Bye";
const TOO_MANY_CONNECTIONS: &str =
    "-ERR [SYS/TEMP] Too many connections for this user, try again later";
const LOGGING_OUT: &str = "+OK Logging out";

/// "1 message", "2 messages".
fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}
const COMMIT_FAILED: &str = "-ERR [SYS/TEMP] Some deleted messages were not removed";

impl Session {
    /// A session on a fresh connection; the greeting is already queued.
    pub fn new(mut config: Pop3Config, tls_active: bool) -> Session {
        config.implementation = config
            .implementation
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        let mut session = Session {
            reader: LineReader::new(config.max_line_len),
            config,
            tls_active,
            state: State::Authorization(Authorization::default()),
            awaiting: None,
            actions: VecDeque::new(),
            username: None,
            bad_commands: 0,
            commands: 0,
            tally: CommandTally::default(),
            held: Vec::new(),
        };
        // RFC 1939 §4: the greeting opens the AUTHORIZATION state. No APOP timestamp,
        // since APOP is not offered.
        let greeting = format!("+OK {} POP3 server ready", session.config.implementation);
        session.reply(&greeting);
        session
    }

    /// The session another node signed in: it opens the maildrop ([`Action::OpenMaildrop`]
    /// is its first action) and answers PASS or AUTH, then handles what the client sent
    /// behind it, exactly as the session that took the credentials would have.
    pub fn resume_signed_in(config: Pop3Config, tls_active: bool, hand_off: HandOff) -> Session {
        let mut session = Session::new(config, tls_active);
        session.actions.clear();
        session.username = Some(hand_off.username);
        session.bad_commands = hand_off.bad_commands;
        session.request(Action::OpenMaildrop, Awaiting::Maildrop);
        session.feed(&hand_off.unread);
        session
    }

    /// The hand-off of a session whose credentials are being checked; `None` at any
    /// other time, and when input behind the sign-in was dropped (a line over the
    /// limit or a pipeline over budget queued in the reader): no bytes stand for it.
    pub fn hand_off(&self) -> Option<HandOff> {
        let Some(Awaiting::Auth { username }) = &self.awaiting else {
            return None;
        };
        // Lines still queued come first: a sign-in read from the queue (after a
        // maildrop that could not be opened, or a failed check) leaves the rest there.
        let mut unread = self.reader.pending()?;
        unread.extend_from_slice(&self.held);
        Some(HandOff {
            username: username.clone(),
            bad_commands: self.bad_commands,
            unread,
        })
    }

    /// Feeds the session bytes from the client or the caller's answer to an action.
    /// Answers that match no outstanding action are ignored, as is everything after close.
    pub fn handle(&mut self, input: Input<'_>) {
        if self.is_closed() {
            return;
        }
        match input {
            Input::Bytes(bytes) => self.feed(bytes),
            Input::Shutdown | Input::MailboxMoving => {
                // Never CommitDeletes here: RFC 1939 §6 deletes only on the client's QUIT.
                self.reply(if matches!(input, Input::Shutdown) {
                    SHUTTING_DOWN
                } else {
                    MAILBOX_MOVING
                });
                self.close();
            }
            Input::TlsEstablished => match self.awaiting.take() {
                Some(Awaiting::Tls) => self.on_tls_established(),
                other => self.awaiting = other,
            },
            Input::AuthResult(result) => match self.awaiting.take() {
                Some(Awaiting::Auth { username }) => {
                    self.on_auth_result(username, result);
                    // Queued as if it had gone to the reader on arrival, as input does
                    // during any other wait: the queue's budget applies to it alike.
                    let held = std::mem::take(&mut self.held);
                    if !self.is_closed() {
                        self.queue(&held);
                    }
                }
                other => self.awaiting = other,
            },
            Input::MaildropOpened(result) => match self.awaiting.take() {
                Some(Awaiting::Maildrop) => self.on_maildrop_opened(result),
                other => self.awaiting = other,
            },
            Input::MessageFetched(result) => match self.awaiting.take() {
                Some(Awaiting::Message { index, top_lines }) => {
                    self.on_message_fetched(index, top_lines, result)
                }
                other => self.awaiting = other,
            },
            Input::MessagePiece { piece, more } => match self.awaiting.take() {
                Some(Awaiting::Message {
                    index,
                    top_lines: None,
                }) => match piece {
                    Ok(piece) => {
                        let mut out =
                            format!("+OK {} octets\r\n", self.listed_size(index, 0)).into_bytes();
                        self.on_piece(&mut out, Stuffing::default(), &piece, more);
                    }
                    Err(_) => self.reply(FETCH_FAILED),
                },
                Some(Awaiting::Pieces { stuffing }) => match piece {
                    Ok(piece) => self.on_piece(&mut Vec::new(), stuffing, &piece, more),
                    Err(_) => self.close(),
                },
                other => self.awaiting = other,
            },
            Input::DeletesCommitted(result) => match self.awaiting.take() {
                Some(Awaiting::Commit { count }) => self.on_deletes_committed(count, result),
                other => self.awaiting = other,
            },
        }
        // The answer may have unblocked lines the client pipelined meanwhile.
        self.pump();
    }

    /// The oldest action not yet taken.
    pub fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether the connection is encrypted (implicit TLS, or STLS completed).
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// The authenticated user, once the credentials were accepted.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Whether [`Action::Close`] was issued; all input is ignored from then on.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Command lines handled so far (SASL responses are not commands).
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// The commands handled since the last call, by name, each with how many times;
    /// for the host's statistics. Counted as [`Session::commands`] counts them.
    pub fn drain_commands(&mut self) -> impl Iterator<Item = (CommandName, u32)> + '_ {
        self.tally.drain()
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // RFC 2595 §4 and CVE-2011-0411: bytes behind STLS were sent before the
            // handshake, in the clear, and must not be executed inside the TLS session.
            if self.is_closed() || matches!(self.awaiting, Some(Awaiting::Tls)) {
                return;
            }
            if matches!(self.awaiting, Some(Awaiting::Auth { .. })) {
                return self.hold(bytes);
            }
            let used = self.reader.push(bytes);
            bytes = &bytes[used..];
            self.pump();
        }
    }

    /// Input that arrives while the credentials are checked: kept raw for a hand-off
    /// while the reader holds nothing and it fits the reader's queue budget; otherwise
    /// queued in the reader with what was held before it.
    fn hold(&mut self, bytes: &[u8]) {
        if self.reader.is_empty()
            && self.held.len().saturating_add(bytes.len()) <= self.reader.queue_budget()
        {
            self.held.extend_from_slice(bytes);
            return;
        }
        let held = std::mem::take(&mut self.held);
        self.queue(&held);
        self.queue(bytes);
    }

    /// Gives the reader all of `bytes` without handling a line.
    fn queue(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            bytes = &bytes[self.reader.push(bytes)..];
        }
    }

    /// Handles queued lines until one needs the caller or none is left.
    fn pump(&mut self) {
        while self.awaiting.is_none() && !self.is_closed() {
            match self.reader.next_line() {
                Some(Line::Text(line)) => self.on_line(&line),
                Some(Line::TooLong) => self.on_line_too_long(),
                None => {
                    if self.reader.overflowed() {
                        // Every command kept has been answered; what came after was lost,
                        // so the conversation cannot go on in step.
                        self.reply(PIPELINE_OVERFLOW);
                        self.close();
                    }
                    return;
                }
            }
        }
    }

    fn on_line_too_long(&mut self) {
        match &mut self.state {
            // The overlong line was the SASL response; the exchange is over.
            State::Authorization(auth) if auth.sasl_continuation => {
                auth.sasl_continuation = false;
            }
            _ => {
                self.commands += 1;
                self.tally.count(CommandName::OTHER);
            }
        }
        self.client_error(LINE_TOO_LONG);
    }

    fn on_line(&mut self, line: &[u8]) {
        if let State::Authorization(auth) = &mut self.state
            && auth.sasl_continuation
        {
            auth.sasl_continuation = false;
            self.on_sasl_response(line.trim_ascii(), true);
            return;
        }
        self.commands += 1;
        let line = CommandLine::parse(line);
        self.tally.count(CommandName::of_keyword(line.keyword));
        let in_transaction = matches!(self.state, State::Transaction(_));
        match (line.command, in_transaction) {
            (Command::Capa, _) => self.cmd_capa(),
            (Command::Quit, false) => self.cmd_quit_authorization(),
            (Command::Quit, true) => self.cmd_quit_transaction(),
            (Command::Stls, false) => self.cmd_stls(),
            (Command::User, false) => self.cmd_user(&line),
            (Command::Pass, false) => self.cmd_pass(&line),
            (Command::Auth, false) => self.cmd_auth(&line),
            (Command::Stat, true) => self.cmd_stat(),
            (Command::List, true) => self.cmd_list(&line),
            (Command::Uidl, true) => self.cmd_uidl(&line),
            (Command::Retr, true) => self.cmd_retr(&line),
            (Command::Top, true) => self.cmd_top(&line),
            (Command::Dele, true) => self.cmd_dele(&line),
            (Command::Noop, true) => self.cmd_noop(),
            (Command::Rset, true) => self.cmd_rset(),
            (Command::Unknown, _) => self.client_error(UNKNOWN_COMMAND),
            _ => self.client_error(WRONG_STATE),
        }
    }

    // ----- both states -------------------------------------------------------------

    /// RFC 2449 §5 CAPA; the capabilities of §6, listed as they apply right now: USER
    /// and SASL only while a login is possible without exposing the password (RFC 2595
    /// §4 and RFC 5034 §4 both say not to advertise what would be refused).
    fn cmd_capa(&mut self) {
        let mut out = String::from("+OK Capability list follows\r\n");
        out.push_str("TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
        out.push_str("EXPIRE NEVER\r\nLOGIN-DELAY 0\r\n");
        out.push_str("IMPLEMENTATION ");
        out.push_str(&self.config.implementation);
        out.push_str("\r\n");
        if matches!(self.state, State::Authorization(_)) {
            if self.plaintext_login_allowed() {
                out.push_str("USER\r\nSASL PLAIN\r\n");
            }
            if self.config.tls_available && !self.tls_active {
                out.push_str("STLS\r\n");
            }
        }
        out.push_str(".\r\n");
        self.write(out.into_bytes());
    }

    // ----- AUTHORIZATION -----------------------------------------------------------

    /// RFC 1939 §4 QUIT in AUTHORIZATION: nothing to update.
    fn cmd_quit_authorization(&mut self) {
        self.reply(BYE);
        self.close();
    }

    /// RFC 2595 §4 STLS.
    fn cmd_stls(&mut self) {
        if self.tls_active {
            return self.client_error(TLS_ACTIVE);
        }
        if !self.config.tls_available {
            return self.client_error(STLS_UNAVAILABLE);
        }
        self.reply(BEGIN_TLS);
        // Lines already received behind STLS are as untrusted as the ones still to come.
        self.reader.clear();
        self.request(Action::StartTls, Awaiting::Tls);
    }

    /// RFC 1939 §7 USER.
    fn cmd_user(&mut self, line: &CommandLine<'_>) {
        if !self.plaintext_login_allowed() {
            return self.client_error(PLAINTEXT_DISALLOWED);
        }
        let name = match line.args().as_slice() {
            [] => return self.client_error(MISSING_USER),
            [name] => std::str::from_utf8(name).ok().map(str::to_string),
            _ => None,
        };
        let Some(name) = name else {
            return self.client_error(INVALID_USER);
        };
        if let State::Authorization(auth) = &mut self.state {
            auth.user = Some(name);
        }
        self.reply(OK);
    }

    /// RFC 1939 §7 PASS. The password is the rest of the line, spaces included, because
    /// passwords may contain spaces (RFC 1939 §7 notes this).
    fn cmd_pass(&mut self, line: &CommandLine<'_>) {
        if !self.plaintext_login_allowed() {
            return self.client_error(PLAINTEXT_DISALLOWED);
        }
        let State::Authorization(auth) = &mut self.state else {
            return;
        };
        if auth.user.is_none() {
            return self.client_error(USER_FIRST);
        }
        if line.rest.is_empty() {
            return self.client_error(MISSING_PASSWORD);
        }
        let Some(username) = auth.user.take() else {
            return;
        };
        match std::str::from_utf8(line.rest) {
            Ok(password) => {
                let password = Secret::new(password.to_string());
                self.authenticate(username, password);
            }
            // No stored password is anything but UTF-8, so this cannot be right; treat it
            // like any wrong password rather than telling the client why.
            Err(_) => self.client_error(AUTH_FAILED),
        }
    }

    /// RFC 5034 §4 AUTH, with PLAIN (RFC 4616) the only mechanism. `AUTH` alone lists
    /// the mechanisms, as the pre-standard form many clients still probe with.
    fn cmd_auth(&mut self, line: &CommandLine<'_>) {
        if !self.plaintext_login_allowed() {
            return self.client_error(PLAINTEXT_DISALLOWED);
        }
        match line.args().as_slice() {
            [] => self.reply(AUTH_MECHANISMS),
            [mechanism, ..] if !mechanism.eq_ignore_ascii_case(b"PLAIN") => {
                self.client_error(SASL_UNSUPPORTED)
            }
            [_] => {
                if let State::Authorization(auth) = &mut self.state {
                    auth.sasl_continuation = true;
                }
                self.reply(SASL_CONTINUE);
            }
            [_, initial_response] => self.on_sasl_response(initial_response, false),
            _ => self.client_error(SASL_INVALID),
        }
    }

    /// The client's PLAIN message, as initial response or after `+ `. Only a
    /// continuation line can be `*`, the cancel of RFC 5034 §4.
    fn on_sasl_response(&mut self, response: &[u8], continuation: bool) {
        if continuation && response == b"*" {
            return self.client_error(SASL_CANCELLED);
        }
        match decode_plain(response) {
            Ok(credentials) => self.authenticate(credentials.authcid, credentials.password),
            Err(SaslError::NotBase64 | SaslError::Malformed) => self.client_error(SASL_INVALID),
            Err(SaslError::AuthzidMismatch) => self.client_error(SASL_AUTHZID),
        }
    }

    fn authenticate(&mut self, username: String, password: Secret) {
        self.request(
            Action::Authenticate {
                username: username.clone(),
                password,
            },
            Awaiting::Auth { username },
        );
    }

    fn on_tls_established(&mut self) {
        self.tls_active = true;
        // RFC 2595 §4: the client must forget what it learnt before TLS, and the server
        // anything the client said; a USER given in the clear does not carry over.
        self.reader.clear();
        if let State::Authorization(auth) = &mut self.state {
            *auth = Authorization::default();
        }
    }

    /// RFC 3206 §4-5: `[AUTH]` for the client's credentials, `[SYS/*]` for the server's
    /// side, so clients know whether to ask the user for a new password.
    fn on_auth_result(&mut self, username: String, result: Result<(), AuthFailure>) {
        if let State::Authorization(auth) = &mut self.state {
            auth.user = None;
        }
        match result {
            Ok(()) => {
                self.username = Some(username);
                self.request(Action::OpenMaildrop, Awaiting::Maildrop);
            }
            Err(AuthFailure::BadCredentials) => self.client_error(AUTH_FAILED),
            Err(AuthFailure::Disabled) => self.client_error(AUTH_DISABLED),
            Err(AuthFailure::Temporary) => self.reply(AUTH_TEMPORARY),
            Err(AuthFailure::MailboxUnavailable) => self.reply(MAILBOX_SERVER_UNAVAILABLE),
            Err(AuthFailure::TooManyConnections) => self.reply(TOO_MANY_CONNECTIONS),
        }
    }

    /// RFC 1939 §4: the maildrop is locked and listed before TRANSACTION; RFC 2449 §8.1.2
    /// `[IN-USE]` when another session holds it.
    fn on_maildrop_opened(&mut self, result: Result<Vec<MaildropEntry>, MaildropError>) {
        match result {
            Ok(entries) => {
                let maildrop = Maildrop {
                    deleted: vec![false; entries.len()],
                    entries,
                };
                let (count, octets) = maildrop.totals();
                self.state = State::Transaction(maildrop);
                self.reply(&format!(
                    "+OK Logged in, {} ({octets} octets)",
                    plural(count, "message")
                ));
            }
            Err(error) => {
                self.username = None;
                self.state = State::Authorization(Authorization::default());
                self.reply(match error {
                    MaildropError::InUse => MAILDROP_IN_USE,
                    MaildropError::Unavailable => MAILDROP_UNAVAILABLE,
                });
            }
        }
    }

    // ----- TRANSACTION -------------------------------------------------------------

    /// RFC 1939 §5 STAT: marked messages are not counted.
    fn cmd_stat(&mut self) {
        let Some(maildrop) = self.maildrop() else {
            return;
        };
        let (count, octets) = maildrop.totals();
        self.reply(&format!("+OK {count} {octets}"));
    }

    /// RFC 1939 §5 LIST.
    fn cmd_list(&mut self, line: &CommandLine<'_>) {
        let Some(maildrop) = self.maildrop() else {
            return;
        };
        let (count, octets) = maildrop.totals();
        let first = format!("+OK {} ({octets} octets)", plural(count, "message"));
        self.listing(line, first, |entry| entry.size.to_string());
    }

    /// RFC 1939 §7 UIDL.
    fn cmd_uidl(&mut self, line: &CommandLine<'_>) {
        self.listing(line, "+OK".to_string(), |entry| entry.unique_id.clone());
    }

    /// LIST and UIDL: one message (`+OK n value`) or all live ones (`first`, then
    /// `n value` lines, then `.`).
    fn listing(
        &mut self,
        line: &CommandLine<'_>,
        first: String,
        value: impl Fn(&MaildropEntry) -> String,
    ) {
        let Some(maildrop) = self.maildrop() else {
            return;
        };
        let result = match line.args().as_slice() {
            [] => {
                let mut out = format!("{first}\r\n");
                for (number, entry) in maildrop.live() {
                    out.push_str(&format!("{number} {}\r\n", value(entry)));
                }
                out.push_str(".\r\n");
                Ok(out)
            }
            [arg] => maildrop
                .resolve(arg)
                .map(|(index, entry)| format!("+OK {} {}\r\n", index + 1, value(entry))),
            _ => Err(TOO_MANY_ARGS.to_string()),
        };
        self.finish(result);
    }

    /// RFC 1939 §5 RETR.
    fn cmd_retr(&mut self, line: &CommandLine<'_>) {
        let Some(maildrop) = self.maildrop() else {
            return;
        };
        let result = match line.args().as_slice() {
            [] => Err(MISSING_MESSAGE.to_string()),
            [arg] => maildrop
                .resolve(arg)
                .map(|(index, entry)| (index, entry.uid)),
            _ => Err(TOO_MANY_ARGS.to_string()),
        };
        match result {
            Ok((index, uid)) => self.request(
                Action::FetchMessage {
                    uid,
                    in_pieces: true,
                    top_lines: None,
                },
                Awaiting::Message {
                    index,
                    top_lines: None,
                },
            ),
            Err(text) => self.client_error(&text),
        }
    }

    /// RFC 1939 §7 TOP.
    fn cmd_top(&mut self, line: &CommandLine<'_>) {
        let Some(maildrop) = self.maildrop() else {
            return;
        };
        let result = match line.args().as_slice() {
            [] => Err(MISSING_MESSAGE.to_string()),
            [arg] => maildrop.resolve(arg).and(Err(MISSING_LINES.to_string())),
            [arg, lines] => maildrop.resolve(arg).and_then(|(index, entry)| {
                // A count beyond usize saturates: "the whole body" is what it asks for.
                parse_decimal(lines)
                    .map(|lines| (index, entry.uid, lines))
                    .ok_or_else(|| INVALID_LINES.to_string())
            }),
            _ => Err(TOO_MANY_ARGS.to_string()),
        };
        match result {
            Ok((index, uid, lines)) => self.request(
                Action::FetchMessage {
                    uid,
                    in_pieces: false,
                    top_lines: Some(lines),
                },
                Awaiting::Message {
                    index,
                    top_lines: Some(lines),
                },
            ),
            Err(text) => self.client_error(&text),
        }
    }

    /// The size LIST gave message `index` (RETR's `+OK` says it), else `fallback`.
    fn listed_size(&self, index: usize, fallback: u64) -> u64 {
        self.maildrop()
            .and_then(|maildrop| maildrop.entries.get(index))
            .map_or(fallback, |entry| entry.size)
    }

    /// Writes one piece of RETR's response after `out`; with the last, the end.
    fn on_piece(&mut self, out: &mut Vec<u8>, mut stuffing: Stuffing, piece: &[u8], more: bool) {
        stuffing.push(out, piece);
        if more {
            self.awaiting = Some(Awaiting::Pieces { stuffing });
        } else {
            stuffing.finish(out);
            out.extend_from_slice(b".\r\n");
        }
        self.write(std::mem::take(out));
    }

    fn on_message_fetched(
        &mut self,
        index: usize,
        top_lines: Option<usize>,
        result: Result<Vec<u8>, MaildropError>,
    ) {
        let Ok(message) = result else {
            return self.reply(FETCH_FAILED);
        };
        let mut out = match top_lines {
            None => {
                // The listed size, so RETR agrees with LIST (the entry documents it as
                // the exact octets RETR sends).
                let size = self.listed_size(index, message.len() as u64);
                let mut out = format!("+OK {size} octets\r\n").into_bytes();
                push_stuffed(&mut out, &message);
                out
            }
            Some(lines) => {
                let mut out = b"+OK\r\n".to_vec();
                push_stuffed(&mut out, &message[..top_len(&message, lines)]);
                out
            }
        };
        out.extend_from_slice(b".\r\n");
        self.write(out);
    }

    /// RFC 1939 §5 DELE: only a mark; nothing is removed before QUIT.
    fn cmd_dele(&mut self, line: &CommandLine<'_>) {
        let Some(maildrop) = self.maildrop_mut() else {
            return;
        };
        let result = match line.args().as_slice() {
            [] => Err(MISSING_MESSAGE.to_string()),
            [arg] => maildrop.resolve(arg).map(|(index, _)| index),
            _ => Err(TOO_MANY_ARGS.to_string()),
        };
        match result {
            Ok(index) => {
                if let Some(mark) = maildrop.deleted.get_mut(index) {
                    *mark = true;
                }
                self.reply(&format!("+OK Message {} deleted", index + 1));
            }
            Err(text) => self.client_error(&text),
        }
    }

    /// RFC 1939 §5 NOOP.
    fn cmd_noop(&mut self) {
        self.reply(OK);
    }

    /// RFC 1939 §5 RSET.
    fn cmd_rset(&mut self) {
        if let Some(maildrop) = self.maildrop_mut() {
            maildrop.deleted.fill(false);
        }
        self.reply(OK);
    }

    /// RFC 1939 §6 QUIT from TRANSACTION: the UPDATE state. `+OK` only once the store has
    /// removed the marked messages, because clients take that `+OK` as proof they are gone
    /// (DESIGN.md: an acknowledged write is durable).
    fn cmd_quit_transaction(&mut self) {
        let Some(maildrop) = self.maildrop() else {
            return;
        };
        let uids: Vec<u32> = maildrop
            .entries
            .iter()
            .zip(&maildrop.deleted)
            .filter(|(_, deleted)| **deleted)
            .map(|(entry, _)| entry.uid)
            .collect();
        // Always through the host, even with nothing to delete: the UPDATE state is where
        // the maildrop lock is given back, and the client may reconnect as soon as it
        // reads the answer to QUIT.
        let count = uids.len();
        self.request(Action::CommitDeletes { uids }, Awaiting::Commit { count });
    }

    fn on_deletes_committed(&mut self, count: usize, result: Result<(), MaildropError>) {
        match result {
            Ok(()) if count == 0 => self.reply(LOGGING_OUT),
            Ok(()) => self.reply(&format!(
                "{LOGGING_OUT}, {}",
                plural(count, "message") + " deleted"
            )),
            // RFC 1939 §6: -ERR when some deletion failed; the session ends either way.
            Err(_) => self.reply(COMMIT_FAILED),
        }
        self.close();
    }

    // ----- plumbing ----------------------------------------------------------------

    fn plaintext_login_allowed(&self) -> bool {
        self.tls_active || self.config.plaintext_login_without_tls
    }

    fn maildrop(&self) -> Option<&Maildrop> {
        match &self.state {
            State::Transaction(maildrop) => Some(maildrop),
            _ => None,
        }
    }

    fn maildrop_mut(&mut self) -> Option<&mut Maildrop> {
        match &mut self.state {
            State::Transaction(maildrop) => Some(maildrop),
            _ => None,
        }
    }

    fn finish(&mut self, result: Result<String, String>) {
        match result {
            Ok(text) => self.write(text.into_bytes()),
            Err(text) => self.client_error(&text),
        }
    }

    fn request(&mut self, action: Action, awaiting: Awaiting) {
        self.actions.push_back(action);
        self.awaiting = Some(awaiting);
    }

    /// A reply to a client mistake. Past `max_bad_commands` the session ends, which
    /// also bounds password guessing on one connection.
    fn client_error(&mut self, text: &str) {
        self.reply(text);
        self.bad_commands = self.bad_commands.saturating_add(1);
        if self.bad_commands > self.config.max_bad_commands {
            self.reply(TOO_MANY_BAD);
            self.close();
        }
    }

    fn reply(&mut self, text: &str) {
        let mut bytes = Vec::with_capacity(text.len() + 2);
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(bytes);
    }

    /// Queues bytes, joining them to a write still queued so that a pipelined burst of
    /// replies goes out in one write.
    fn write(&mut self, bytes: Vec<u8>) {
        if let Some(Action::Write(queued)) = self.actions.back_mut() {
            queued.extend_from_slice(&bytes);
        } else {
            self.actions.push_back(Action::Write(bytes));
        }
    }

    fn close(&mut self) {
        self.actions.push_back(Action::Close);
        self.state = State::Closed;
        self.awaiting = None;
        self.reader.clear();
        self.held = Vec::new();
    }
}

impl Maildrop {
    /// Count and octets of the messages not marked deleted.
    fn totals(&self) -> (usize, u64) {
        self.live().fold((0, 0), |(count, octets), (_, entry)| {
            (count + 1, octets + entry.size)
        })
    }

    /// Message numbers and entries not marked deleted, in order.
    fn live(&self) -> impl Iterator<Item = (usize, &MaildropEntry)> {
        self.entries
            .iter()
            .zip(&self.deleted)
            .enumerate()
            .filter(|(_, (_, deleted))| !**deleted)
            .map(|(index, (entry, _))| (index + 1, entry))
    }

    /// The message a client's message-number argument names (RFC 1939 §5: 1-based, and
    /// a marked message may not be named). The error is the reply text.
    fn resolve(&self, arg: &[u8]) -> Result<(usize, &MaildropEntry), String> {
        let number = parse_decimal(arg).ok_or_else(|| INVALID_MESSAGE.to_string())?;
        let index = number
            .checked_sub(1)
            .ok_or_else(|| NO_SUCH_MESSAGE.to_string())?;
        let entry = self
            .entries
            .get(index)
            .ok_or_else(|| NO_SUCH_MESSAGE.to_string())?;
        if self.deleted.get(index).copied().unwrap_or(false) {
            return Err(format!("-ERR Message {number} already deleted"));
        }
        Ok((index, entry))
    }
}

/// A non-negative decimal number (digits only, no sign); too large saturates, which is
/// out of range for a message number and "everything" for a line count.
fn parse_decimal(arg: &[u8]) -> Option<usize> {
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(arg.iter().fold(0usize, |n, &digit| {
        n.saturating_mul(10)
            .saturating_add(usize::from(digit - b'0'))
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // ----- harness -----------------------------------------------------------------

    fn secure() -> Pop3Config {
        Pop3Config::default()
    }

    fn plaintext() -> Pop3Config {
        Pop3Config {
            plaintext_login_without_tls: true,
            ..Pop3Config::default()
        }
    }

    /// Renders queued actions: writes verbatim, everything else as a `[marker]` line.
    fn drain(s: &mut Session) -> String {
        let mut out = String::new();
        while let Some(action) = s.next_action() {
            match action {
                Action::Write(bytes) => out.push_str(&String::from_utf8_lossy(&bytes)),
                Action::StartTls => out.push_str("[starttls]\n"),
                Action::Authenticate { username, password } => {
                    out.push_str(&format!("[auth {username}:{}]\n", password.expose()))
                }
                Action::OpenMaildrop => out.push_str("[open]\n"),
                Action::FetchMessage { uid, .. } => out.push_str(&format!("[fetch {uid}]\n")),
                Action::CommitDeletes { uids } => out.push_str(&format!("[commit {uids:?}]\n")),
                Action::Close => out.push_str("[close]\n"),
            }
        }
        out
    }

    fn start(config: Pop3Config, tls: bool) -> Session {
        let mut s = Session::new(config, tls);
        assert_eq!(drain(&mut s), "+OK Portico POP3 server ready\r\n");
        s
    }

    fn send(s: &mut Session, text: &str) -> String {
        send_bytes(s, text.as_bytes())
    }

    fn send_bytes(s: &mut Session, bytes: &[u8]) -> String {
        s.handle(Input::Bytes(bytes));
        drain(s)
    }

    fn answer(s: &mut Session, input: Input<'_>) -> String {
        s.handle(input);
        drain(s)
    }

    pub(crate) const MSG1: &[u8] = b"Subject: one\r\n\r\nbody one\r\n";
    pub(crate) const MSG2: &[u8] = b"Subject: two\r\n\r\n.dot line\r\nsecond\r\n..\r\n";
    pub(crate) const MSG3: &[u8] = b"X: 3\r\nY: 3\r\n\r\na\r\nb\r\nc\r\nd\r\n";

    pub(crate) fn fixture() -> Vec<(u32, &'static [u8])> {
        vec![(10, MSG1), (20, MSG2), (30, MSG3)]
    }

    pub(crate) fn entries() -> Vec<MaildropEntry> {
        fixture()
            .into_iter()
            .map(|(uid, body)| MaildropEntry {
                uid,
                size: body.len() as u64,
                unique_id: format!("uid-{uid}"),
            })
            .collect()
    }

    /// A session in TRANSACTION over the fixture, with TLS active.
    fn logged_in(config: Pop3Config) -> Session {
        let mut s = start(config, true);
        assert_eq!(send(&mut s, "USER alice\r\n"), "+OK\r\n");
        assert_eq!(send(&mut s, "PASS secret\r\n"), "[auth alice:secret]\n");
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "[open]\n");
        assert_eq!(
            answer(&mut s, Input::MaildropOpened(Ok(entries()))),
            "+OK Logged in, 3 messages (91 octets)\r\n"
        );
        s
    }

    /// Answers every request the way a healthy backend would (password `secret`, the
    /// fixture maildrop), except StartTls when `tls_now` is false: a real client's bytes
    /// behind STLS arrive before the handshake completes.
    fn settle(s: &mut Session, out: &mut String, tls_now: bool, tls_owed: &mut bool) {
        loop {
            let mut replies = Vec::new();
            while let Some(action) = s.next_action() {
                match action {
                    Action::Write(bytes) => out.push_str(&String::from_utf8_lossy(&bytes)),
                    Action::StartTls => {
                        out.push_str("[starttls]\n");
                        *tls_owed = true;
                    }
                    Action::Authenticate { password, .. } => {
                        replies.push(Input::AuthResult(if password.expose() == "secret" {
                            Ok(())
                        } else {
                            Err(AuthFailure::BadCredentials)
                        }))
                    }
                    Action::OpenMaildrop => replies.push(Input::MaildropOpened(Ok(entries()))),
                    Action::FetchMessage { uid, .. } => {
                        let body = fixture().into_iter().find(|(u, _)| *u == uid);
                        replies.push(Input::MessageFetched(
                            body.map(|(_, b)| b.to_vec())
                                .ok_or(MaildropError::Unavailable),
                        ))
                    }
                    Action::CommitDeletes { uids } => {
                        out.push_str(&format!("[commit {uids:?}]\n"));
                        replies.push(Input::DeletesCommitted(Ok(())))
                    }
                    Action::Close => out.push_str("[close]\n"),
                }
            }
            if tls_now && *tls_owed {
                *tls_owed = false;
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

    /// Plays client writes, each cut into pieces by `split`; the backend answers after
    /// every piece when `eager`, else only at the end of each write.
    fn play(
        config: Pop3Config,
        tls: bool,
        writes: &[&[u8]],
        split: &mut dyn FnMut(&[u8]) -> Vec<usize>,
        eager: bool,
    ) -> String {
        let mut s = Session::new(config, tls);
        let mut out = String::new();
        let mut tls_owed = false;
        settle(&mut s, &mut out, true, &mut tls_owed);
        for write in writes {
            let mut last = 0;
            let mut cuts = split(write);
            cuts.push(write.len());
            for cut in cuts {
                s.handle(Input::Bytes(&write[last..cut]));
                last = cut;
                if eager {
                    settle(&mut s, &mut out, false, &mut tls_owed);
                }
            }
            settle(&mut s, &mut out, true, &mut tls_owed);
        }
        out
    }

    /// Deterministic xorshift, so failures reproduce without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    // ----- greeting and CAPA -------------------------------------------------------

    #[test]
    fn greeting_names_the_implementation_without_control_characters() {
        let mut s = Session::new(
            Pop3Config {
                implementation: "Acme\r\nMail".into(),
                ..Pop3Config::default()
            },
            false,
        );
        assert_eq!(drain(&mut s), "+OK AcmeMail POP3 server ready\r\n");
        assert!(send(&mut s, "CAPA\r\n").contains("IMPLEMENTATION AcmeMail\r\n"));
    }

    const CAPA_COMMON: &str = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n\
        AUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\nLOGIN-DELAY 0\r\nIMPLEMENTATION Portico\r\n";

    #[test]
    fn capa_without_tls_offers_only_stls() {
        let mut s = start(secure(), false);
        assert_eq!(
            send(&mut s, "CAPA\r\n"),
            format!("{CAPA_COMMON}STLS\r\n.\r\n")
        );
    }

    #[test]
    fn capa_with_plaintext_login_offers_everything() {
        let mut s = start(plaintext(), false);
        assert_eq!(
            send(&mut s, "capa\r\n"),
            format!("{CAPA_COMMON}USER\r\nSASL PLAIN\r\nSTLS\r\n.\r\n")
        );
    }

    #[test]
    fn capa_under_tls_offers_login_but_not_stls() {
        let mut s = start(secure(), true);
        assert_eq!(
            send(&mut s, "CAPA\r\n"),
            format!("{CAPA_COMMON}USER\r\nSASL PLAIN\r\n.\r\n")
        );
    }

    #[test]
    fn capa_without_certificate_omits_stls() {
        let config = Pop3Config {
            tls_available: false,
            ..Pop3Config::default()
        };
        let mut s = start(config, false);
        assert_eq!(send(&mut s, "CAPA\r\n"), format!("{CAPA_COMMON}.\r\n"));
    }

    #[test]
    fn capa_in_transaction_lists_no_login_capabilities() {
        let mut s = logged_in(plaintext());
        assert_eq!(send(&mut s, "CAPA\r\n"), format!("{CAPA_COMMON}.\r\n"));
    }

    // ----- STLS --------------------------------------------------------------------

    #[test]
    fn stls_then_capa_shows_login() {
        let mut s = start(secure(), false);
        assert_eq!(
            send(&mut s, "STLS\r\n"),
            "+OK Begin TLS negotiation\r\n[starttls]\n"
        );
        assert_eq!(answer(&mut s, Input::TlsEstablished), "");
        assert_eq!(
            send(&mut s, "CAPA\r\n"),
            format!("{CAPA_COMMON}USER\r\nSASL PLAIN\r\n.\r\n")
        );
        assert_eq!(
            send(&mut s, "STLS\r\n"),
            "-ERR Command not permitted when TLS active\r\n"
        );
    }

    #[test]
    fn stls_refused_when_unavailable() {
        let config = Pop3Config {
            tls_available: false,
            ..Pop3Config::default()
        };
        let mut s = start(config, false);
        assert_eq!(send(&mut s, "STLS\r\n"), "-ERR STLS not available\r\n");
    }

    #[test]
    fn stls_discards_pipelined_and_early_bytes() {
        let mut s = start(plaintext(), false);
        assert_eq!(
            send(&mut s, "STLS\r\nUSER mallory\r\nPASS x\r\n"),
            "+OK Begin TLS negotiation\r\n[starttls]\n"
        );
        // Still before the handshake: dropped too, including a partial line.
        assert_eq!(send(&mut s, "CAPA\r\nUSE"), "");
        assert_eq!(answer(&mut s, Input::TlsEstablished), "");
        assert_eq!(send(&mut s, "PASS x\r\n"), "-ERR USER first\r\n");
        assert_eq!(send(&mut s, "R bob\r\n"), "-ERR Unknown command\r\n");
    }

    #[test]
    fn stls_forgets_user_given_in_the_clear() {
        let mut s = start(plaintext(), false);
        assert_eq!(send(&mut s, "USER alice\r\n"), "+OK\r\n");
        send(&mut s, "STLS\r\n");
        answer(&mut s, Input::TlsEstablished);
        assert_eq!(send(&mut s, "PASS secret\r\n"), "-ERR USER first\r\n");
    }

    #[test]
    fn stls_sends_no_second_greeting() {
        let mut s = start(secure(), false);
        send(&mut s, "STLS\r\n");
        assert_eq!(answer(&mut s, Input::TlsEstablished), "");
        assert_eq!(s.next_action(), None);
    }

    // ----- USER / PASS -------------------------------------------------------------

    const DISALLOWED: &str =
        "-ERR [SYS/PERM] Plaintext authentication disallowed without TLS, use STLS\r\n";

    #[test]
    fn plaintext_login_refused_without_tls() {
        let mut s = start(secure(), false);
        assert_eq!(send(&mut s, "USER alice\r\n"), DISALLOWED);
        assert_eq!(send(&mut s, "PASS secret\r\n"), DISALLOWED);
        assert_eq!(send(&mut s, "AUTH\r\n"), DISALLOWED);
        assert_eq!(
            send(&mut s, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
            DISALLOWED
        );
    }

    #[test]
    fn plaintext_login_allowed_by_config() {
        let mut s = start(plaintext(), false);
        assert_eq!(send(&mut s, "USER alice\r\n"), "+OK\r\n");
        assert_eq!(send(&mut s, "PASS secret\r\n"), "[auth alice:secret]\n");
    }

    #[test]
    fn user_pass_login() {
        let mut s = start(secure(), true);
        assert_eq!(s.username(), None);
        assert_eq!(send(&mut s, "user alice@example.com\r\n"), "+OK\r\n");
        assert_eq!(
            send(&mut s, "pass  two words \r\n"),
            "[auth alice@example.com: two words ]\n"
        );
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "[open]\n");
        assert_eq!(s.username(), Some("alice@example.com"));
        assert_eq!(
            answer(&mut s, Input::MaildropOpened(Ok(Vec::new()))),
            "+OK Logged in, 0 messages (0 octets)\r\n"
        );
        assert_eq!(send(&mut s, "STAT\r\n"), "+OK 0 0\r\n");
    }

    #[test]
    fn user_argument_errors() {
        let mut s = start(secure(), true);
        assert_eq!(send(&mut s, "USER\r\n"), "-ERR Missing user name\r\n");
        assert_eq!(send(&mut s, "USER a b\r\n"), "-ERR Invalid user name\r\n");
        assert_eq!(
            send_bytes(&mut s, b"USER \xff\r\n"),
            "-ERR Invalid user name\r\n"
        );
    }

    #[test]
    fn pass_errors() {
        let mut s = start(secure(), true);
        assert_eq!(send(&mut s, "PASS secret\r\n"), "-ERR USER first\r\n");
        send(&mut s, "USER alice\r\n");
        assert_eq!(send(&mut s, "PASS\r\n"), "-ERR Missing password\r\n");
        // The USER survives a PASS without password.
        assert_eq!(
            send_bytes(&mut s, b"PASS \xff\r\n"),
            "-ERR [AUTH] Authentication failed\r\n"
        );
        assert_eq!(send(&mut s, "PASS secret\r\n"), "-ERR USER first\r\n");
    }

    #[test]
    fn bad_password_forgets_user() {
        let mut s = start(secure(), true);
        send(&mut s, "USER alice\r\n");
        send(&mut s, "PASS wrong\r\n");
        assert_eq!(
            answer(&mut s, Input::AuthResult(Err(AuthFailure::BadCredentials))),
            "-ERR [AUTH] Authentication failed\r\n"
        );
        assert_eq!(s.username(), None);
        assert_eq!(send(&mut s, "PASS secret\r\n"), "-ERR USER first\r\n");
        assert_eq!(
            send(&mut s, "STAT\r\n"),
            "-ERR Command not valid in this state\r\n"
        );
    }

    #[test]
    fn disabled_and_temporary_failures() {
        let mut s = start(secure(), true);
        send(&mut s, "USER alice\r\nPASS secret\r\n");
        assert_eq!(
            answer(&mut s, Input::AuthResult(Err(AuthFailure::Disabled))),
            "-ERR [SYS/PERM] POP3 access is disabled for this account\r\n"
        );
        send(&mut s, "USER alice\r\nPASS secret\r\n");
        assert_eq!(
            answer(&mut s, Input::AuthResult(Err(AuthFailure::Temporary))),
            "-ERR [SYS/TEMP] Authentication service unavailable, try again later\r\n"
        );
        send(&mut s, "USER alice\r\nPASS secret\r\n");
        assert_eq!(
            answer(
                &mut s,
                Input::AuthResult(Err(AuthFailure::TooManyConnections))
            ),
            "-ERR [SYS/TEMP] Too many connections for this user, try again later\r\n"
        );
        assert_eq!(
            s.bad_commands, 1,
            "a server-side failure is not the client's"
        );
    }

    // ----- AUTH PLAIN --------------------------------------------------------------

    // "\0alice\0secret" and variants.
    const PLAIN_ALICE: &str = "AGFsaWNlAHNlY3JldA==";
    const PLAIN_AUTHZ_SAME: &str = "YWxpY2UAYWxpY2UAc2VjcmV0";
    const PLAIN_AUTHZ_BOB: &str = "Ym9iAGFsaWNlAHNlY3JldA==";
    const PLAIN_TWO_PARTS: &str = "YWxpY2UAc2VjcmV0";

    #[test]
    fn auth_lists_mechanisms() {
        let mut s = start(secure(), true);
        assert_eq!(send(&mut s, "AUTH\r\n"), "+OK\r\nPLAIN\r\n.\r\n");
    }

    #[test]
    fn auth_plain_with_initial_response() {
        let mut s = start(secure(), true);
        assert_eq!(
            send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE}\r\n")),
            "[auth alice:secret]\n"
        );
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "[open]\n");
    }

    #[test]
    fn auth_plain_with_continuation() {
        let mut s = start(secure(), true);
        assert_eq!(send(&mut s, "auth plain\r\n"), "+ \r\n");
        assert_eq!(
            send(&mut s, &format!("{PLAIN_AUTHZ_SAME}\r\n")),
            "[auth alice:secret]\n"
        );
        assert_eq!(s.commands(), 1, "the SASL response is not a command");
    }

    #[test]
    fn auth_plain_cancel() {
        let mut s = start(secure(), true);
        send(&mut s, "AUTH PLAIN\r\n");
        assert_eq!(send(&mut s, "*\r\n"), "-ERR Authentication cancelled\r\n");
        // Back to commands.
        assert_eq!(
            send(&mut s, "NOOP\r\n"),
            "-ERR Command not valid in this state\r\n"
        );
    }

    #[test]
    fn auth_plain_malformed_responses() {
        let mut s = start(secure(), true);
        let invalid = "-ERR [AUTH] Invalid SASL PLAIN response\r\n";
        assert_eq!(send(&mut s, "AUTH PLAIN =\r\n"), invalid);
        assert_eq!(send(&mut s, "AUTH PLAIN !!!!\r\n"), invalid);
        assert_eq!(send(&mut s, "AUTH PLAIN *\r\n"), invalid);
        assert_eq!(
            send(&mut s, &format!("AUTH PLAIN {PLAIN_TWO_PARTS}\r\n")),
            invalid
        );
        assert_eq!(
            send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE} x\r\n")),
            invalid
        );
        send(&mut s, "AUTH PLAIN\r\n");
        assert_eq!(send(&mut s, "\r\n"), invalid);
        send(&mut s, "AUTH PLAIN\r\n");
        assert_eq!(send_bytes(&mut s, b"\xff\xfe\r\n"), invalid);
    }

    #[test]
    fn auth_plain_authzid_must_match() {
        let mut s = start(secure(), true);
        assert_eq!(
            send(&mut s, &format!("AUTH PLAIN {PLAIN_AUTHZ_BOB}\r\n")),
            "-ERR [AUTH] Authorization identity must match\r\n"
        );
    }

    #[test]
    fn auth_unsupported_mechanism() {
        let mut s = start(secure(), true);
        assert_eq!(
            send(&mut s, "AUTH CRAM-MD5\r\n"),
            "-ERR Unsupported authentication mechanism\r\n"
        );
        assert_eq!(
            send(&mut s, "AUTH LOGIN dXNlcg==\r\n"),
            "-ERR Unsupported authentication mechanism\r\n"
        );
    }

    #[test]
    fn auth_continuation_too_long_ends_exchange() {
        let config = Pop3Config {
            max_line_len: 16,
            ..Pop3Config::default()
        };
        let mut s = start(config, true);
        send(&mut s, "AUTH PLAIN\r\n");
        assert_eq!(
            send(&mut s, &format!("{PLAIN_ALICE}\r\n")),
            "-ERR Line too long\r\n"
        );
        assert_eq!(send(&mut s, "QUIT\r\n"), "+OK Bye\r\n[close]\n");
    }

    // ----- maildrop ----------------------------------------------------------------

    #[test]
    fn maildrop_in_use_returns_to_authorization() {
        let mut s = start(secure(), true);
        send(&mut s, "USER alice\r\nPASS secret\r\n");
        answer(&mut s, Input::AuthResult(Ok(())));
        assert_eq!(
            answer(&mut s, Input::MaildropOpened(Err(MaildropError::InUse))),
            "-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n"
        );
        assert_eq!(s.username(), None);
        assert_eq!(
            send(&mut s, "STAT\r\n"),
            "-ERR Command not valid in this state\r\n"
        );
        assert_eq!(send(&mut s, "USER alice\r\n"), "+OK\r\n");
        assert_eq!(s.bad_commands, 1);
    }

    #[test]
    fn maildrop_unavailable() {
        let mut s = start(secure(), true);
        send(&mut s, "USER alice\r\nPASS secret\r\n");
        answer(&mut s, Input::AuthResult(Ok(())));
        assert_eq!(
            answer(
                &mut s,
                Input::MaildropOpened(Err(MaildropError::Unavailable))
            ),
            "-ERR [SYS/TEMP] Mailbox unavailable, try again later\r\n"
        );
        assert_eq!(send(&mut s, "QUIT\r\n"), "+OK Bye\r\n[close]\n");
    }

    // ----- TRANSACTION -------------------------------------------------------------

    #[test]
    fn stat_list_uidl() {
        let mut s = logged_in(secure());
        assert_eq!(send(&mut s, "STAT\r\n"), "+OK 3 91\r\n");
        assert_eq!(
            send(&mut s, "LIST\r\n"),
            "+OK 3 messages (91 octets)\r\n1 26\r\n2 39\r\n3 26\r\n.\r\n"
        );
        assert_eq!(send(&mut s, "LIST 2\r\n"), "+OK 2 39\r\n");
        assert_eq!(
            send(&mut s, "UIDL\r\n"),
            "+OK\r\n1 uid-10\r\n2 uid-20\r\n3 uid-30\r\n.\r\n"
        );
        assert_eq!(send(&mut s, "uidl 3\r\n"), "+OK 3 uid-30\r\n");
    }

    #[test]
    fn deleted_messages_leave_listings() {
        let mut s = logged_in(secure());
        assert_eq!(send(&mut s, "DELE 2\r\n"), "+OK Message 2 deleted\r\n");
        assert_eq!(send(&mut s, "STAT\r\n"), "+OK 2 52\r\n");
        assert_eq!(
            send(&mut s, "LIST\r\n"),
            "+OK 2 messages (52 octets)\r\n1 26\r\n3 26\r\n.\r\n"
        );
        assert_eq!(
            send(&mut s, "UIDL\r\n"),
            "+OK\r\n1 uid-10\r\n3 uid-30\r\n.\r\n"
        );
        assert_eq!(
            send(&mut s, "LIST 2\r\n"),
            "-ERR Message 2 already deleted\r\n"
        );
        assert_eq!(
            send(&mut s, "UIDL 2\r\n"),
            "-ERR Message 2 already deleted\r\n"
        );
        assert_eq!(
            send(&mut s, "RETR 2\r\n"),
            "-ERR Message 2 already deleted\r\n"
        );
        assert_eq!(
            send(&mut s, "TOP 2 0\r\n"),
            "-ERR Message 2 already deleted\r\n"
        );
        assert_eq!(
            send(&mut s, "DELE 2\r\n"),
            "-ERR Message 2 already deleted\r\n"
        );
        assert_eq!(send(&mut s, "RSET\r\n"), "+OK\r\n");
        assert_eq!(send(&mut s, "STAT\r\n"), "+OK 3 91\r\n");
    }

    #[test]
    fn bad_message_numbers() {
        let mut s = logged_in(secure());
        for (line, reply) in [
            ("LIST 0", "-ERR No such message"),
            ("LIST 4", "-ERR No such message"),
            ("LIST 99999999999999999999999999", "-ERR No such message"),
            ("LIST abc", "-ERR Invalid message number"),
            ("LIST -1", "-ERR Invalid message number"),
            ("LIST +1", "-ERR Invalid message number"),
            ("LIST 1x", "-ERR Invalid message number"),
            ("LIST 1 2", "-ERR Too many arguments"),
            ("RETR", "-ERR Missing message number"),
            ("DELE", "-ERR Missing message number"),
            ("TOP", "-ERR Missing message number"),
            ("TOP 1", "-ERR Missing line count"),
            ("TOP 9 1", "-ERR No such message"),
            ("TOP 1 -1", "-ERR Invalid line count"),
            ("TOP 1 x", "-ERR Invalid line count"),
            ("TOP 1 2 3", "-ERR Too many arguments"),
            ("RETR 1 2", "-ERR Too many arguments"),
        ] {
            assert_eq!(
                send(&mut s, &format!("{line}\r\n")),
                format!("{reply}\r\n"),
                "{line}"
            );
        }
        assert_eq!(
            send_bytes(&mut s, b"RETR \xff\r\n"),
            "-ERR Invalid message number\r\n"
        );
        assert_eq!(send(&mut s, "LIST 01\r\n"), "+OK 1 26\r\n");
    }

    #[test]
    fn retr_byte_stuffs() {
        let mut s = logged_in(secure());
        assert_eq!(send(&mut s, "RETR 2\r\n"), "[fetch 20]\n");
        assert_eq!(
            answer(&mut s, Input::MessageFetched(Ok(MSG2.to_vec()))),
            "+OK 39 octets\r\nSubject: two\r\n\r\n..dot line\r\nsecond\r\n...\r\n.\r\n"
        );
    }

    #[test]
    fn retr_terminates_an_unterminated_message() {
        let mut s = logged_in(secure());
        send(&mut s, "RETR 1\r\n");
        assert_eq!(
            answer(
                &mut s,
                Input::MessageFetched(Ok(b"A: b\r\n\r\n.x".to_vec()))
            ),
            "+OK 26 octets\r\nA: b\r\n\r\n..x\r\n.\r\n"
        );
        send(&mut s, "RETR 1\r\n");
        assert_eq!(
            answer(&mut s, Input::MessageFetched(Ok(Vec::new()))),
            "+OK 26 octets\r\n.\r\n"
        );
    }

    #[test]
    fn retr_keeps_binary_bytes() {
        let mut s = logged_in(secure());
        send(&mut s, "RETR 1\r\n");
        let body = b"A: \xe9\xff\0\r\n\r\n\x80.\r\n".to_vec();
        s.handle(Input::MessageFetched(Ok(body.clone())));
        let Some(Action::Write(bytes)) = s.next_action() else {
            panic!("expected a write");
        };
        assert_eq!(bytes, [&b"+OK 26 octets\r\n"[..], &body, b".\r\n"].concat());
    }

    #[test]
    fn retr_failure() {
        let mut s = logged_in(secure());
        send(&mut s, "RETR 3\r\n");
        assert_eq!(
            answer(
                &mut s,
                Input::MessageFetched(Err(MaildropError::Unavailable))
            ),
            "-ERR [SYS/TEMP] Message could not be read\r\n"
        );
        assert_eq!(s.bad_commands, 0);
        assert_eq!(send(&mut s, "NOOP\r\n"), "+OK\r\n");
    }

    #[test]
    fn top_sends_header_and_lines() {
        let mut s = logged_in(secure());
        for (lines, expect) in [
            ("0", "X: 3\r\nY: 3\r\n\r\n"),
            ("3", "X: 3\r\nY: 3\r\n\r\na\r\nb\r\nc\r\n"),
            ("99", "X: 3\r\nY: 3\r\n\r\na\r\nb\r\nc\r\nd\r\n"),
            (
                "99999999999999999999999",
                "X: 3\r\nY: 3\r\n\r\na\r\nb\r\nc\r\nd\r\n",
            ),
        ] {
            assert_eq!(send(&mut s, &format!("TOP 3 {lines}\r\n")), "[fetch 30]\n");
            assert_eq!(
                answer(&mut s, Input::MessageFetched(Ok(MSG3.to_vec()))),
                format!("+OK\r\n{expect}.\r\n")
            );
        }
        send(&mut s, "TOP 2 1\r\n");
        assert_eq!(
            answer(&mut s, Input::MessageFetched(Ok(MSG2.to_vec()))),
            "+OK\r\nSubject: two\r\n\r\n..dot line\r\n.\r\n"
        );
    }

    #[test]
    fn quit_commits_marked_messages_in_number_order() {
        let mut s = logged_in(secure());
        send(&mut s, "DELE 3\r\nDELE 1\r\n");
        assert_eq!(send(&mut s, "QUIT\r\n"), "[commit [10, 30]]\n");
        assert!(!s.is_closed());
        assert_eq!(
            answer(&mut s, Input::DeletesCommitted(Ok(()))),
            "+OK Logging out, 2 messages deleted\r\n[close]\n"
        );
        assert!(s.is_closed());
    }

    #[test]
    fn quit_reports_failed_commit() {
        let mut s = logged_in(secure());
        send(&mut s, "DELE 2\r\n");
        assert_eq!(send(&mut s, "QUIT\r\n"), "[commit [20]]\n");
        assert_eq!(
            answer(
                &mut s,
                Input::DeletesCommitted(Err(MaildropError::Unavailable))
            ),
            "-ERR [SYS/TEMP] Some deleted messages were not removed\r\n[close]\n"
        );
    }

    #[test]
    fn quit_without_marks_commits_nothing_and_ends() {
        let mut s = logged_in(secure());
        send(&mut s, "DELE 2\r\nRSET\r\n");
        assert_eq!(send(&mut s, "QUIT\r\n"), "[commit []]\n");
        s.handle(Input::DeletesCommitted(Ok(())));
        assert_eq!(drain(&mut s), "+OK Logging out\r\n[close]\n");
    }

    #[test]
    fn quit_in_authorization() {
        let mut s = start(secure(), false);
        assert_eq!(send(&mut s, "QUIT\r\n"), "+OK Bye\r\n[close]\n");
    }

    #[test]
    fn wrong_state_commands() {
        let mut s = start(secure(), false);
        for cmd in [
            "STAT", "LIST", "UIDL 1", "RETR 1", "TOP 1 1", "DELE 1", "NOOP", "RSET",
        ] {
            assert_eq!(
                send(&mut s, &format!("{cmd}\r\n")),
                "-ERR Command not valid in this state\r\n",
                "{cmd}"
            );
        }
        let mut s = logged_in(secure());
        for cmd in ["USER bob", "PASS x", "AUTH", "AUTH PLAIN", "STLS"] {
            assert_eq!(
                send(&mut s, &format!("{cmd}\r\n")),
                "-ERR Command not valid in this state\r\n",
                "{cmd}"
            );
        }
    }

    #[test]
    fn unknown_and_empty_commands() {
        let mut s = start(secure(), false);
        assert_eq!(
            send(&mut s, "APOP alice abc\r\n"),
            "-ERR Unknown command\r\n"
        );
        assert_eq!(send(&mut s, "\r\n"), "-ERR Unknown command\r\n");
        assert_eq!(send(&mut s, " \r\n"), "-ERR Unknown command\r\n");
        assert_eq!(
            send_bytes(&mut s, b"\xff\xfe\x00\r\n"),
            "-ERR Unknown command\r\n"
        );
        assert_eq!(s.commands(), 4);
    }

    #[test]
    fn commands_are_counted_by_name_and_unknown_ones_as_other() {
        let mut s = start(plaintext(), false);
        let names = |s: &mut Session| -> Vec<(&str, u32)> {
            s.drain_commands().map(|(n, c)| (n.as_str(), c)).collect()
        };
        assert!(names(&mut s).is_empty());
        send(&mut s, "capa\r\nUSER alice\r\nPASS x\r\n");
        assert_eq!(names(&mut s), [("USER", 1), ("PASS", 1), ("CAPA", 1)]);
        answer(&mut s, Input::AuthResult(Err(AuthFailure::BadCredentials)));
        // The SASL response after `AUTH PLAIN` is not a command.
        send(&mut s, "AUTH PLAIN\r\nAGFsaWNlAHg=\r\n");
        answer(&mut s, Input::AuthResult(Err(AuthFailure::BadCredentials)));
        send(&mut s, "APOP alice abc\r\nUTF8\r\nXTND XMIT\r\n\r\n");
        send(&mut s, &format!("{}\r\n", "X".repeat(3000)));
        assert_eq!(
            names(&mut s),
            [("AUTH", 1), ("APOP", 1), ("UTF8", 1), ("OTHER", 3)]
        );
        assert_eq!(s.commands(), 9);
        assert!(names(&mut s).is_empty());
    }

    // ----- bad-command limit, shutdown, close --------------------------------------

    #[test]
    fn too_many_bad_commands_closes() {
        let config = Pop3Config {
            max_bad_commands: 2,
            ..Pop3Config::default()
        };
        let mut s = start(config, false);
        assert_eq!(
            send(&mut s, "X\r\nY\r\nZ\r\nNOOP\r\n"),
            "-ERR Unknown command\r\n-ERR Unknown command\r\n-ERR Unknown command\r\n\
             -ERR Too many bad commands, closing connection\r\n[close]\n"
        );
        assert!(s.is_closed());
        assert_eq!(s.commands(), 3);
    }

    #[test]
    fn failed_logins_count_as_bad_commands() {
        let config = Pop3Config {
            max_bad_commands: 1,
            ..Pop3Config::default()
        };
        let mut s = start(config, true);
        send(&mut s, "USER a\r\nPASS b\r\n");
        answer(&mut s, Input::AuthResult(Err(AuthFailure::BadCredentials)));
        send(&mut s, "USER a\r\nPASS b\r\n");
        assert_eq!(
            answer(&mut s, Input::AuthResult(Err(AuthFailure::BadCredentials))),
            "-ERR [AUTH] Authentication failed\r\n\
             -ERR Too many bad commands, closing connection\r\n[close]\n"
        );
    }

    #[test]
    fn shutdown_never_commits() {
        let mut s = logged_in(secure());
        send(&mut s, "DELE 1\r\n");
        assert_eq!(
            answer(&mut s, Input::Shutdown),
            "-ERR [SYS/TEMP] Server shutting down\r\n[close]\n"
        );
        assert_eq!(send(&mut s, "QUIT\r\n"), "");
    }

    #[test]
    fn shutdown_before_login() {
        let mut s = start(secure(), false);
        send(&mut s, "USER");
        assert_eq!(
            answer(&mut s, Input::Shutdown),
            "-ERR [SYS/TEMP] Server shutting down\r\n[close]\n"
        );
    }

    #[test]
    fn closed_session_ignores_everything() {
        let mut s = start(secure(), true);
        send(&mut s, "USER a\r\nPASS b\r\n");
        answer(&mut s, Input::Shutdown);
        for input in [
            Input::Bytes(b"QUIT\r\n"),
            Input::AuthResult(Ok(())),
            Input::MaildropOpened(Ok(entries())),
            Input::TlsEstablished,
            Input::Shutdown,
        ] {
            assert_eq!(answer(&mut s, input), "");
        }
    }

    #[test]
    fn unexpected_answers_are_ignored() {
        let mut s = start(secure(), true);
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "");
        assert_eq!(answer(&mut s, Input::MaildropOpened(Ok(entries()))), "");
        assert_eq!(answer(&mut s, Input::TlsEstablished), "");
        assert_eq!(
            send(&mut s, "STAT\r\n"),
            "-ERR Command not valid in this state\r\n"
        );
        send(&mut s, "USER a\r\nPASS b\r\n");
        // The wrong answer leaves the right one still expected.
        assert_eq!(answer(&mut s, Input::MessageFetched(Ok(Vec::new()))), "");
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "[open]\n");
    }

    // ----- lines -------------------------------------------------------------------

    #[test]
    fn bare_lf_is_accepted() {
        let mut s = start(secure(), true);
        assert_eq!(
            send(&mut s, "USER alice\nPASS secret\n"),
            "+OK\r\n[auth alice:secret]\n"
        );
    }

    #[test]
    fn long_line_is_rejected_once_and_skipped() {
        let config = Pop3Config {
            max_line_len: 16,
            ..Pop3Config::default()
        };
        let mut s = start(config, true);
        // Exactly 16 octets with CRLF fits.
        assert_eq!(send(&mut s, "USER abcdefghi\r\n"), "+OK\r\n");
        assert_eq!(send(&mut s, "USER abcdefghijk"), "-ERR Line too long\r\n");
        assert_eq!(send(&mut s, &"x".repeat(100_000)), "");
        assert_eq!(
            send(&mut s, "yyy\r\nNOOP\r\n"),
            "-ERR Command not valid in this state\r\n"
        );
        assert_eq!(s.commands(), 3);
    }

    #[test]
    fn long_line_byte_by_byte() {
        let config = Pop3Config {
            max_line_len: 8,
            ..Pop3Config::default()
        };
        let mut s = start(config, false);
        let mut out = String::new();
        for b in b"CAPA CAPA CAPA\r\nQUIT\r\n" {
            out.push_str(&send_bytes(&mut s, &[*b]));
        }
        assert_eq!(out, "-ERR Line too long\r\n+OK Bye\r\n[close]\n");
    }

    // ----- pipelining --------------------------------------------------------------

    #[test]
    fn pipelined_commands_wait_for_answers() {
        let mut s = logged_in(secure());
        assert_eq!(
            send(&mut s, "RETR 1\r\nDELE 1\r\nRETR 3\r\nSTAT\r\n"),
            "[fetch 10]\n"
        );
        assert_eq!(send(&mut s, "QUIT\r\n"), "");
        assert_eq!(
            answer(&mut s, Input::MessageFetched(Ok(MSG1.to_vec()))),
            "+OK 26 octets\r\nSubject: one\r\n\r\nbody one\r\n.\r\n+OK Message 1 deleted\r\n[fetch 30]\n"
        );
        assert_eq!(
            answer(&mut s, Input::MessageFetched(Ok(MSG3.to_vec()))),
            format!(
                "+OK 26 octets\r\n{}.\r\n+OK 2 65\r\n[commit [10]]\n",
                String::from_utf8_lossy(MSG3)
            )
        );
    }

    #[test]
    fn pipelined_login_runs_in_order() {
        let mut s = start(secure(), true);
        assert_eq!(
            send(&mut s, "USER alice\r\nPASS secret\r\nSTAT\r\n"),
            "+OK\r\n[auth alice:secret]\n"
        );
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "[open]\n");
        assert_eq!(
            answer(&mut s, Input::MaildropOpened(Ok(entries()))),
            "+OK Logged in, 3 messages (91 octets)\r\n+OK 3 91\r\n"
        );
    }

    #[test]
    fn replies_to_a_burst_are_one_write() {
        let mut s = logged_in(secure());
        s.handle(Input::Bytes(b"NOOP\r\nNOOP\r\nSTAT\r\n"));
        assert_eq!(
            s.next_action(),
            Some(Action::Write(b"+OK\r\n+OK\r\n+OK 3 91\r\n".to_vec()))
        );
        assert_eq!(s.next_action(), None);
    }

    #[test]
    fn pipeline_flood_is_bounded() {
        let mut s = logged_in(secure());
        assert_eq!(send(&mut s, "RETR 1\r\n"), "[fetch 10]\n");
        let flood = b"NOOP\r\n".repeat(200_000);
        assert_eq!(send_bytes(&mut s, &flood), "");
        let out = answer(&mut s, Input::MessageFetched(Ok(MSG1.to_vec())));
        let noops = out.matches("+OK\r\n").count();
        assert!(noops > 1000 && noops < 200_000, "{noops}");
        assert!(out.ends_with("-ERR Too much pipelined input, closing connection\r\n[close]\n"));
    }

    // ----- splits and robustness ---------------------------------------------------

    /// A session touching most paths; each element is one client write.
    fn scenario() -> Vec<&'static [u8]> {
        vec![
            b"CAPA\r\nUSER early\r\n",
            b"STLS\r\nUSER mallory\r\nPASS x\r\nCAP",
            b"CAPA\r\nPASS secret\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN =\r\n",
            b"AUTH PLAIN\r\nAGFsaWNlAHdyb25n\r\nUSER alice\nPASS secret\r\nSTAT\r\nLIST\r\n",
            b"UIDL\r\nRETR 2\r\nTOP 3 2\r\nDELE 1\r\nLIST 1\r\nRETR 9\r\nXYZZY\r\n\r\n",
            b"LIST 2\r\nDELE 3\r\nTOP 1 0\r\nUIDL 2\r\nRSET\r\nDELE 2\r\nNOOP\r\nQUIT\r\nNOOP\r\n",
        ]
    }

    fn scenario_config() -> Pop3Config {
        Pop3Config {
            max_line_len: 64,
            ..Pop3Config::default()
        }
    }

    #[test]
    fn scenario_output_is_as_expected() {
        let out = play(
            scenario_config(),
            false,
            &scenario(),
            &mut |_| Vec::new(),
            false,
        );
        assert!(out.starts_with("+OK Portico POP3 server ready\r\n"));
        assert!(out.contains("+OK Begin TLS negotiation\r\n[starttls]\n+OK Capability"));
        assert!(!out.contains("mallory"));
        assert!(out.contains("-ERR [AUTH] Authentication failed\r\n"));
        assert!(out.contains("+OK Logged in, 3 messages (91 octets)\r\n+OK 3 91\r\n"));
        assert!(out.ends_with(
            "+OK\r\n+OK Message 2 deleted\r\n+OK\r\n[commit [20]]\n\
             +OK Logging out, 1 message deleted\r\n[close]\n"
        ));
    }

    #[test]
    fn byte_by_byte_equals_whole_writes() {
        let whole = play(
            scenario_config(),
            false,
            &scenario(),
            &mut |_| Vec::new(),
            false,
        );
        let bytewise = play(
            scenario_config(),
            false,
            &scenario(),
            &mut |w| (1..w.len()).collect(),
            true,
        );
        assert_eq!(whole, bytewise);
    }

    #[test]
    fn every_single_split_point_gives_the_same_output() {
        let writes = scenario();
        let whole = play(
            scenario_config(),
            false,
            &writes,
            &mut |_| Vec::new(),
            false,
        );
        for (target, write) in writes.iter().enumerate() {
            for at in 1..write.len() {
                let mut index = 0;
                let out = play(
                    scenario_config(),
                    false,
                    &writes,
                    &mut |_| {
                        index += 1;
                        if index - 1 == target {
                            vec![at]
                        } else {
                            Vec::new()
                        }
                    },
                    true,
                );
                assert_eq!(out, whole, "write {target} split at {at}");
            }
        }
    }

    #[test]
    fn random_splits_give_the_same_output() {
        let writes = scenario();
        let whole = play(
            scenario_config(),
            false,
            &writes,
            &mut |_| Vec::new(),
            false,
        );
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let eager = round % 2 == 0;
            let out = play(
                scenario_config(),
                false,
                &writes,
                &mut |w| {
                    let mut cuts: Vec<usize> =
                        (0..rng.below(6)).map(|_| rng.below(w.len())).collect();
                    cuts.sort_unstable();
                    cuts
                },
                eager,
            );
            assert_eq!(out, whole, "round {round}");
        }
    }

    #[test]
    fn random_input_never_panics() {
        const WORDS: [&[u8]; 24] = [
            b"USER a", b"PASS b", b"AUTH", b"PLAIN", b"STLS", b"CAPA", b"QUIT", b"STAT", b"LIST",
            b"RETR", b"DELE", b"NOOP", b"RSET", b"TOP", b"UIDL", b" ", b"1", b"0", b"\r\n", b"\n",
            b"\r", b"*", b"=", b"\xff",
        ];
        let mut rng = Rng(42);
        for _ in 0..500 {
            let config = Pop3Config {
                plaintext_login_without_tls: rng.below(2) == 0,
                tls_available: rng.below(2) == 0,
                max_line_len: rng.below(40),
                max_bad_commands: rng.below(30) as u32,
                ..Pop3Config::default()
            };
            let mut s = Session::new(config, rng.below(2) == 0);
            let mut closed_seen = false;
            for _ in 0..rng.below(60) {
                let mut bytes = Vec::new();
                for _ in 0..rng.below(8) {
                    if rng.below(5) == 0 {
                        bytes.push(rng.next() as u8);
                    } else {
                        bytes.extend_from_slice(WORDS[rng.below(WORDS.len())]);
                    }
                }
                s.handle(Input::Bytes(&bytes));
                let reply = match rng.below(8) {
                    0 => Input::TlsEstablished,
                    1 => Input::AuthResult(Ok(())),
                    2 => Input::AuthResult(Err(AuthFailure::BadCredentials)),
                    3 => Input::MaildropOpened(Ok(entries())),
                    4 => Input::MessageFetched(Ok(MSG2.to_vec())),
                    5 => Input::DeletesCommitted(Ok(())),
                    6 => Input::MaildropOpened(Err(MaildropError::InUse)),
                    _ => Input::Bytes(b""),
                };
                s.handle(reply);
                while let Some(action) = s.next_action() {
                    assert!(!closed_seen, "action after Close: {action:?}");
                    if let Action::Write(bytes) = &action {
                        assert!(bytes.ends_with(b"\r\n"));
                    }
                    closed_seen |= action == Action::Close;
                }
            }
            assert_eq!(closed_seen, s.is_closed());
        }
    }
}
