//! The IMAP session machine (RFC 9051 / RFC 3501 and extensions).
//!
//! ```text
//!   greeting ─► NOT AUTHENTICATED ──LOGIN/AUTHENTICATE──► AUTHENTICATED ◄──CLOSE/UNSELECT──┐
//!                 │ STARTTLS                                 │ SELECT/EXAMINE               │
//!                 ▼                                          ▼                              │
//!              (TLS, same state)                          SELECTED ─────────────────────────┘
//!   any state ──LOGOUT──► LOGOUT (BYE, close)
//! ```
//!
//! Commands run one at a time, in the order received: a command that needs the host
//! (store, sign-in) emits a [`Request`] and the machine holds later input until the
//! [`Reply`] arrives. Literals, AUTHENTICATE continuations and IDLE's DONE are states of
//! the reader, never socket reads inside a command.

use std::collections::VecDeque;
use std::sync::Arc;

use portico_sasl::SaslError;

use crate::command::*;
use crate::fetch::{self, RenderStyle};
use crate::names;
use crate::parser::parse_command;
use crate::reader::{CommandReader, ReadEvent, ReaderLimits, TooBigWhat};
use crate::request::*;
use crate::response;
use crate::scan::{ScanJob, ScanOutcome, ScanOutput, ScanTarget, ScanWork};
use crate::search::{self, TextHints};
use crate::view::{AnnounceStyle, View};

/// What the session needs to know of the node's IMAP settings.
#[derive(Clone, Debug)]
pub struct ImapConfig {
    /// Login type `plaintext`: LOGIN and AUTHENTICATE allowed without TLS.
    pub plaintext_login_without_tls: bool,
    /// STARTTLS can be offered on this connection.
    pub tls_available: bool,
    pub max_line: usize,
    /// Largest message APPEND accepts (APPENDLIMIT, RFC 7889).
    pub append_limit: u64,
    /// Largest command with its literals (very long UID sets fit well below it).
    pub max_command: usize,
    /// Client errors tolerated before the session is closed.
    pub max_bad_commands: u32,
    /// Bytes of text one SEARCH may examine (each key counts what it reads).
    pub search_work_limit: u64,
    /// The host answers [`Request::TextIndex`]: SEARCH asks it which messages may hold
    /// its BODY/TEXT needles before reading any.
    pub text_index: bool,
    /// Product version for ID.
    pub version: String,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            plaintext_login_without_tls: false,
            tls_available: true,
            max_line: 64 * 1024,
            append_limit: 50 * 1024 * 1024,
            max_command: 1024 * 1024,
            max_bad_commands: 20,
            search_work_limit: DEFAULT_SEARCH_WORK_LIMIT,
            text_index: false,
            version: "0.1.0".to_string(),
        }
    }
}

/// [`ImapConfig::search_work_limit`] by default: 16 GiB, a TEXT search of a folder of
/// several gigabytes with room to spare, while 1,000 TEXT keys over a big folder stop.
pub const DEFAULT_SEARCH_WORK_LIMIT: u64 = 16 * 1024 * 1024 * 1024;

/// Largest literal accepted before authentication: plenty for a user name, a password
/// or an AUTHENTICATE response (Dovecot and Cyrus keep theirs as small).
pub const PREAUTH_MAX_LITERAL: usize = 8 * 1024;

/// Longest line accepted before authentication (or the configured `max_line`, if
/// smaller): LOGIN with quoted strings, AUTHENTICATE with its initial response or a
/// base64 response line, ID, all fit with room to spare.
pub const PREAUTH_MAX_LINE: usize = 16 * 1024;

/// Tagged BAD text for a literal over [`PREAUTH_MAX_LITERAL`].
pub const PREAUTH_LITERAL_TOO_BIG: &str = "[TOOBIG] Literal too large before authentication";

/// Untagged BYE after a refused non-synchronizing literal before authentication.
pub const PREAUTH_LITERAL_BYE: &str =
    "* BYE Refusing to read a literal that large before authentication\r\n";

/// Everything the session can be told.
/// The goodbye of a session whose mailbox is being moved.
pub const MAILBOX_MOVING: &[u8] =
    b"* BYE [UNAVAILABLE] Your mailbox is being moved to another server, please reconnect\r\n";

#[derive(Debug)]
pub enum Input<'a> {
    Bytes(&'a [u8]),
    TlsEstablished,
    Reply(RequestId, Reply),
    Event(FolderEvent),
    /// The node is shutting down.
    Shutdown,
    /// The user's mailbox is being moved to another server: the session ends, and the
    /// client's next connection reaches the mailbox where it is then.
    MailboxMoving,
    /// The host could not keep up with the selected folder's changes for this session:
    /// the client must reconnect to see the folder as it is.
    LostTrack,
}

/// Everything the session asks of its host, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Write(Vec<u8>),
    StartTls,
    Request(RequestId, Request),
    /// Write `len` bytes of message `uid` of `folder` from `start`, as stored: the
    /// content of a literal the output before announced. Needs no answer; the actions
    /// after it follow it on the wire.
    Stream {
        folder: FolderId,
        uid: u32,
        start: u64,
        len: u64,
    },
    Close,
}

/// FETCH leaves messages bigger than this in the store and streams their literals.
pub const STREAM_ABOVE: u64 = 1024 * 1024;

/// Messages per store round trip, by how much of each is read.
fn batch_size(detail: Detail) -> usize {
    match detail {
        Detail::Meta => 5000,
        Detail::Fields => 5000,
        Detail::KeptHeader => 2000,
        Detail::Summary => 1000,
        Detail::HeaderText | Detail::Header => 500,
        Detail::Full => 50,
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Enabled {
    rev2: bool,
    utf8: bool,
    condstore: bool,
    qresync: bool,
}

struct Selected {
    id: FolderId,
    read_only: bool,
    view: View,
    /// The keywords the client has been told of in FLAGS, in that order: a keyword
    /// new to the folder is announced before the first response that shows it.
    keywords: Vec<String>,
}

/// The `FLAGS` and `PERMANENTFLAGS` lines for a folder with `keywords` in use.
fn write_flags(out: &mut Vec<u8>, keywords: &[String], read_only: bool) {
    let mut flags = SYSTEM_FLAGS.to_string();
    for keyword in keywords {
        flags.push(' ');
        flags.push_str(keyword);
    }
    out.extend_from_slice(format!("* FLAGS ({flags})\r\n").as_bytes());
    if read_only {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
    } else {
        out.extend_from_slice(
            format!("* OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted\r\n").as_bytes(),
        );
    }
}

/// Announces (RFC 9051 §7.3.5, RFC 3501 §7.2.6) the keywords among `flags` the client
/// has not been told of yet, adding them to `known`.
fn announce_new_keywords<'a>(
    out: &mut Vec<u8>,
    known: &mut Vec<String>,
    read_only: bool,
    flags: impl IntoIterator<Item = &'a str>,
) {
    let mut new = false;
    for flag in flags {
        if flag.starts_with('\\') || known.iter().any(|k| k.eq_ignore_ascii_case(flag)) {
            continue;
        }
        known.push(flag.to_string());
        new = true;
    }
    if new {
        write_flags(out, known, read_only);
    }
}

enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Box<Selected>),
    Logout,
}

/// A FETCH or SEARCH under way: the host runs it a slice at a time ([`crate::scan`]).
struct Scan {
    tag: String,
    uid: bool,
    /// Every target, ascending.
    targets: Vec<ScanTarget>,
    next: usize,
    detail: Detail,
    work: Arc<ScanWork>,
    /// Bytes of text the SEARCH keys have examined so far.
    examined: u64,
    kind: ScanKind,
}

enum ScanKind {
    Fetch {
        failed: bool,
    },
    Search {
        returns: Option<Vec<SearchReturn>>,
        hits: Vec<(u32, u32)>,
        max_modseq: u64,
        /// The MODSEQ of each hit.
        modseqs: Vec<u64>,
    },
}

/// A command waiting for the host.
enum Running {
    Login {
        tag: String,
    },
    List(ListJob),
    Status {
        tag: String,
        name: String,
        items: Vec<StatusItem>,
    },
    Select {
        tag: String,
        name: String,
        read_only: bool,
        condstore: bool,
        qresync: Option<QresyncParams>,
    },
    Simple {
        tag: String,
        command: &'static str,
    },
    Append {
        tag: String,
    },
    /// FETCH that sets \Seen: the flag change goes first.
    MarkSeen(Scan),
    /// SEARCH with BODY/TEXT keys: the full-text index's answer goes first.
    TextIndex {
        scan: Scan,
        queries: Vec<TextQuery>,
    },
    /// UID FETCH … (CHANGEDSINCE n VANISHED): the expunged UIDs go first.
    FetchVanished {
        scan: Scan,
        set: SequenceSet,
        sets_seen: bool,
    },
    Scan(Scan),
    Store {
        tag: String,
        uid: bool,
        silent: bool,
        unchanged_since: Option<u64>,
    },
    Expunge {
        tag: String,
        closing: bool,
        uid: bool,
    },
    Copy {
        tag: String,
        moving: bool,
        uid: bool,
    },
}

struct ListJob {
    tag: String,
    command: &'static str,
    patterns: Vec<String>,
    subscribed_only: bool,
    special_use_only: bool,
    recursive_match: bool,
    return_subscribed: bool,
    return_special_use: bool,
    status: Option<Vec<StatusItem>>,
    /// LIST lines not yet written, each with the folder whose STATUS must follow it
    /// (LIST-STATUS, RFC 5819 §2: a mailbox's STATUS comes right after its LIST).
    pending: VecDeque<(Vec<u8>, Option<String>)>,
    /// The folder whose STATUS was asked for last.
    awaiting_status: Option<String>,
}

/// Where the reader's next line goes.
enum LineMode {
    Commands,
    /// AUTHENTICATE PLAIN waiting for the client's response line.
    SaslResponse {
        tag: String,
    },
    /// IDLE until DONE.
    Idle {
        tag: String,
    },
}

/// A session whose credentials were verified while its LOGIN or AUTHENTICATE still
/// waits for its reply: what a proxying node hands to the mailbox's home node, which
/// resumes the session there ([`Session::resume_signed_in`]) and sends that reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOff {
    /// The tag of the sign-in command.
    pub tag: String,
    /// The client's protocol errors so far.
    pub bad_commands: u32,
    /// What the client sent after the sign-in command.
    pub unread: Vec<u8>,
}

/// The session machine.
pub struct Session {
    config: ImapConfig,
    reader: CommandReader,
    tls: bool,
    state: State,
    enabled: Enabled,
    actions: VecDeque<Action>,
    out: Vec<u8>,
    running: Option<(RequestId, Running)>,
    next_request: RequestId,
    line_mode: LineMode,
    commands: u64,
    bad_commands: u32,
    user: Option<String>,
    closed: bool,
    /// Events that arrived while a SELECT/EXAMINE waited for its folder: the host may
    /// start pushing the folder's changes before its reply arrives.
    early_events: Vec<FolderEvent>,
}

fn tagged(out: &mut Vec<u8>, tag: &str, status: &str, text: &str) {
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.as_bytes());
    out.push(b' ');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn fault_text(fault: &Fault, trycreate: bool) -> String {
    match fault {
        Fault::NotFound if trycreate => "[TRYCREATE] Mailbox does not exist".into(),
        Fault::NotFound => "[NONEXISTENT] Mailbox does not exist".into(),
        Fault::AlreadyExists => "[ALREADYEXISTS] Mailbox already exists".into(),
        // The host may name a more precise code itself (`[USEATTR] …`).
        Fault::NotAllowed(why) if why.starts_with('[') => why.clone(),
        Fault::NotAllowed(why) => format!("[CANNOT] {why}"),
        Fault::TooBig => "[TOOBIG] Message too large".into(),
        // RFC 5530 has no code for a full disk; Dovecot's choice, which clients show.
        Fault::NoSpace => "[OVERQUOTA] Not enough disk space on the server, try again later".into(),
        Fault::Temporary(reference) => {
            format!(
                "[UNAVAILABLE] Storage temporarily unavailable, try again later (ref {reference})"
            )
        }
        Fault::Damaged(what) => format!("[CORRUPTION] Damaged and unreadable: {what}"),
        Fault::Unavailable(reference) => format!("[SERVERBUG] Internal error (ref {reference})"),
    }
}

const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// Flags a client may set with STORE or APPEND: the five system flags and keywords.
/// \Recent is the server's (RFC 3501 §2.3.2) and any other `\name` is a
/// flag-extension no standard defines yet, which a server must never generate (RFC
/// 9051 §2.3.2), so storing it would hand it to every client.
fn settable_flags(flags: &[String], verb: &str) -> Result<(), String> {
    for flag in flags {
        if flag.eq_ignore_ascii_case("\\Recent") || flag == "\\*" {
            return Err(format!("\\Recent and \\* cannot be {verb}"));
        }
        if flag.starts_with('\\')
            && !SYSTEM_FLAGS
                .split(' ')
                .any(|system| system.eq_ignore_ascii_case(flag))
        {
            return Err(format!("Flag {flag} cannot be {verb}"));
        }
    }
    Ok(())
}

impl Session {
    pub fn new(config: ImapConfig, tls_active: bool) -> Session {
        let mut session = Session::without_greeting(config, tls_active);
        let capability = session.capability();
        session.out.extend_from_slice(
            format!("* OK [CAPABILITY {capability}] Portico IMAP4rev2 server ready\r\n").as_bytes(),
        );
        session.flush();
        session
    }

    /// The session another node signed in: the LOGIN or AUTHENTICATE of `hand_off`
    /// waits for its reply under the returned request id, and the client's later bytes
    /// wait behind it, exactly as in the session that took the credentials.
    pub fn resume_signed_in(
        config: ImapConfig,
        tls_active: bool,
        username: &str,
        hand_off: HandOff,
    ) -> (Session, RequestId) {
        let mut session = Session::without_greeting(config, tls_active);
        session.user = Some(username.to_string());
        session.bad_commands = hand_off.bad_commands;
        session.reader.push(&hand_off.unread);
        let id = session.next_request;
        session.next_request += 1;
        session.running = Some((id, Running::Login { tag: hand_off.tag }));
        (session, id)
    }

    /// The hand-off of a session whose LOGIN or AUTHENTICATE waits for the host's
    /// reply; `None` at any other time.
    pub fn hand_off(&self) -> Option<HandOff> {
        let Some((_, Running::Login { tag })) = &self.running else {
            return None;
        };
        Some(HandOff {
            tag: tag.clone(),
            bad_commands: self.bad_commands,
            unread: self.reader.unread()?.to_vec(),
        })
    }

    fn without_greeting(config: ImapConfig, tls_active: bool) -> Session {
        let reader = CommandReader::new(Self::preauth_limits(&config));
        Session {
            config,
            reader,
            tls: tls_active,
            state: State::NotAuthenticated,
            enabled: Enabled::default(),
            actions: VecDeque::new(),
            out: Vec::new(),
            running: None,
            next_request: 1,
            line_mode: LineMode::Commands,
            commands: 0,
            bad_commands: 0,
            user: None,
            closed: false,
            early_events: Vec::new(),
        }
    }

    /// Before authentication a client needs literals only for a name, a password or a
    /// SASL response, so a stranger cannot make the node hold more than a few tens of
    /// KiB; [`Self::limits`] apply from the successful login on.
    fn preauth_limits(config: &ImapConfig) -> ReaderLimits {
        let max_line = config.max_line.min(PREAUTH_MAX_LINE);
        ReaderLimits {
            max_line,
            max_literal: PREAUTH_MAX_LITERAL,
            max_command: max_line.saturating_add(2 * PREAUTH_MAX_LITERAL),
        }
    }

    fn limits(config: &ImapConfig) -> ReaderLimits {
        ReaderLimits {
            max_line: config.max_line,
            max_literal: config.append_limit as usize,
            max_command: config
                .max_command
                .max(config.append_limit as usize + config.max_line),
        }
    }

    pub fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn username(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// Whether the client is in IDLE (the host may use a longer timeout then).
    pub fn is_idling(&self) -> bool {
        matches!(self.line_mode, LineMode::Idle { .. })
    }

    /// Whether the connection is encrypted (implicit TLS, or STARTTLS completed).
    pub fn tls_active(&self) -> bool {
        self.tls
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated | State::Selected(_))
    }

    pub fn handle(&mut self, input: Input<'_>) {
        if self.closed {
            return;
        }
        match input {
            Input::Bytes(bytes) => self.reader.push(bytes),
            Input::TlsEstablished => {
                self.tls = true;
                self.running = None;
            }
            Input::Reply(id, reply) => self.on_reply(id, reply),
            Input::Event(event) => self.on_event(event),
            Input::Shutdown => {
                self.out
                    .extend_from_slice(b"* BYE Server shutting down\r\n");
                self.close();
            }
            Input::MailboxMoving => {
                self.out.extend_from_slice(MAILBOX_MOVING);
                self.close();
            }
            Input::LostTrack => {
                self.out.extend_from_slice(
                    b"* BYE [UNAVAILABLE] Too many changes to this mailbox at once; please reconnect\r\n",
                );
                self.close();
            }
        }
        self.pump();
        self.flush();
    }

    fn flush(&mut self) {
        if !self.out.is_empty() {
            self.actions
                .push_back(Action::Write(std::mem::take(&mut self.out)));
        }
    }

    fn close(&mut self) {
        self.flush();
        self.actions.push_back(Action::Close);
        self.closed = true;
        self.state = State::Logout;
    }

    fn request(&mut self, running: Running, request: Request) {
        let id = self.next_request;
        self.next_request += 1;
        self.flush();
        self.actions.push_back(Action::Request(id, request));
        self.running = Some((id, running));
    }

    fn style(&self) -> AnnounceStyle {
        AnnounceStyle {
            recent: !self.enabled.rev2,
            modseq: self.enabled.condstore,
            vanished: self.enabled.qresync,
        }
    }

    fn render_style(&self) -> RenderStyle {
        RenderStyle {
            utf8: self.enabled.utf8,
            recent: !self.enabled.rev2,
        }
    }

    /// Announces queued folder changes (before a tagged response, or while idling).
    fn announce(&mut self, allow_expunge: bool) {
        let style = self.style();
        if let State::Selected(selected) = &mut self.state {
            let Selected {
                view,
                keywords,
                read_only,
                ..
            } = &mut **selected;
            announce_new_keywords(&mut self.out, keywords, *read_only, view.pending_flags());
            view.announce(&mut self.out, allow_expunge, style);
        }
    }

    /// [`Selected::announce_keywords`] for the selected folder, if any.
    fn announce_keywords<'a>(&mut self, flags: impl IntoIterator<Item = &'a str>) {
        if let State::Selected(selected) = &mut self.state {
            let (known, read_only) = (&mut selected.keywords, selected.read_only);
            announce_new_keywords(&mut self.out, known, read_only, flags);
        }
    }

    fn finish(&mut self, tag: &str, status: &str, text: &str, allow_expunge: bool) {
        self.announce(allow_expunge);
        tagged(&mut self.out, tag, status, text);
    }

    fn bad(&mut self, tag: &str, text: &str) {
        tagged(&mut self.out, tag, "BAD", text);
        self.count_bad();
    }

    fn count_bad(&mut self) {
        self.bad_commands += 1;
        if self.bad_commands > self.config.max_bad_commands {
            self.out
                .extend_from_slice(b"* BYE Too many invalid commands\r\n");
            self.close();
        }
    }

    /// Runs commands until one waits for the host or input runs out.
    fn pump(&mut self) {
        while !self.closed && self.running.is_none() {
            let Some(event) = self.reader.next_event() else {
                break;
            };
            match event {
                ReadEvent::NeedContinuation { .. } => {
                    self.out.extend_from_slice(b"+ Ready for literal data\r\n");
                    self.reader.continuation_answered(true);
                }
                ReadEvent::TooBig { tag, what } if !self.is_authenticated() => {
                    let text = match what {
                        TooBigWhat::Literal => PREAUTH_LITERAL_TOO_BIG.to_string(),
                        _ => format!("[TOOBIG] {what:?} exceeds the server's limit"),
                    };
                    tagged(&mut self.out, tag.as_deref().unwrap_or("*"), "BAD", &text);
                    if self.reader.skipping_literal() {
                        // RFC 7888 §4: the client sends a LITERAL+ literal without
                        // waiting, and a server that refuses it cannot skip it reliably;
                        // a stranger is not worth reading megabytes for (Dovecot also
                        // disconnects).
                        self.out.extend_from_slice(PREAUTH_LITERAL_BYE.as_bytes());
                        self.close();
                    } else {
                        self.count_bad();
                    }
                }
                ReadEvent::TooBig { tag, what } => {
                    let text = format!("[TOOBIG] {what:?} exceeds the server's limit");
                    // A literal over the limit is a message too big to take (RFC 7889:
                    // NO [TOOBIG]); an over-long line or command could not even be read,
                    // which is a protocol error (BAD).
                    let status = match what {
                        TooBigWhat::Literal if tag.is_some() => "NO",
                        _ => "BAD",
                    };
                    tagged(&mut self.out, tag.as_deref().unwrap_or("*"), status, &text);
                    self.count_bad();
                }
                ReadEvent::Line(line) => self.on_line(line),
                ReadEvent::Command(raw) => {
                    self.commands += 1;
                    match parse_command(&raw) {
                        Ok(command) => self.dispatch(command),
                        // RFC 9051 §6.4.4: an unknown charset is a NO, not a BAD.
                        // A SEARCH over the key limit is well formed; it meets a limit.
                        Err(error)
                            if error.message.starts_with("[BADCHARSET")
                                || error.message == crate::parser::TOO_MANY_SEARCH_KEYS =>
                        {
                            let tag = error.tag.unwrap_or_else(|| "*".to_string());
                            tagged(&mut self.out, &tag, "NO", &error.message);
                        }
                        Err(error) => {
                            let tag = error.tag.unwrap_or_else(|| "*".to_string());
                            self.bad(&tag, &error.message);
                        }
                    }
                }
            }
        }
    }

    fn on_line(&mut self, line: Vec<u8>) {
        match std::mem::replace(&mut self.line_mode, LineMode::Commands) {
            LineMode::Commands => {}
            LineMode::Idle { tag } => {
                self.reader.set_line_mode(false);
                if line.eq_ignore_ascii_case(b"DONE") {
                    self.finish(&tag, "OK", "IDLE terminated", true);
                } else {
                    self.bad(&tag, "Expected DONE");
                }
            }
            LineMode::SaslResponse { tag } => {
                self.reader.set_line_mode(false);
                if line == b"*" {
                    self.bad(&tag, "Authentication cancelled");
                } else {
                    self.sasl_plain(tag, &line);
                }
            }
        }
    }

    fn on_event(&mut self, event: FolderEvent) {
        if matches!(self.running, Some((_, Running::Select { .. }))) {
            self.early_events.push(event);
            return;
        }
        let State::Selected(selected) = &mut self.state else {
            return;
        };
        let folder = match &event {
            FolderEvent::Appended { folder, .. }
            | FolderEvent::FlagsChanged { folder, .. }
            | FolderEvent::Expunged { folder, .. } => *folder,
        };
        if folder != selected.id {
            return;
        }
        selected.view.queue(event);
        if self.is_idling() {
            self.announce(true);
        }
    }

    fn capability(&self) -> String {
        let mut caps = vec!["IMAP4rev1", "IMAP4rev2"];
        if !self.is_authenticated() {
            if !self.tls && self.config.tls_available {
                caps.push("STARTTLS");
            }
            if self.tls || self.config.plaintext_login_without_tls {
                caps.push("AUTH=PLAIN");
            } else {
                caps.push("LOGINDISABLED");
            }
        }
        caps.extend([
            "LITERAL+",
            "SASL-IR",
            "ENABLE",
            "IDLE",
            "UIDPLUS",
            "MOVE",
            "NAMESPACE",
            "ID",
            "UNSELECT",
            "CONDSTORE",
            "QRESYNC",
            "CHILDREN",
            "SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "ESEARCH",
            "STATUS=SIZE",
            "BINARY",
            "UTF8=ACCEPT",
        ]);
        let mut text = caps.join(" ");
        text.push_str(&format!(" APPENDLIMIT={}", self.config.append_limit));
        text
    }

    fn utf8(&self) -> bool {
        self.enabled.utf8
    }

    /// A command of the selected state turns CONDSTORE on: the first one tells the
    /// client the folder's HIGHESTMODSEQ (RFC 7162 §3.1), which SELECT did not.
    fn enable_condstore(&mut self) {
        if self.enabled.condstore {
            return;
        }
        self.enabled.condstore = true;
        if let Some(view) = self.selected_view() {
            let line = format!("* OK [HIGHESTMODSEQ {}] Highest\r\n", view.highest_modseq());
            self.out.extend_from_slice(line.as_bytes());
        }
    }

    /// The mailbox a command names, or its answer: a name that does not decode names
    /// no mailbox, and a mailbox cannot be made under it. That is `NO`, not `BAD`: the
    /// command is well formed, and many clients give up on a session at a `BAD`.
    fn mailbox_name(&mut self, tag: &str, raw: &[u8]) -> Option<String> {
        self.named(tag, raw, "[NONEXISTENT]")
    }

    /// [`Self::mailbox_name`] for a name to be made (CREATE, RENAME's new name).
    fn new_mailbox_name(&mut self, tag: &str, raw: &[u8]) -> Option<String> {
        self.named(tag, raw, "[CANNOT]")
    }

    fn named(&mut self, tag: &str, raw: &[u8], code: &str) -> Option<String> {
        match names::decode(raw, self.utf8()) {
            Ok(name) => Some(name),
            Err(why) => {
                tagged(&mut self.out, tag, "NO", &format!("{code} {why}"));
                None
            }
        }
    }

    fn dispatch(&mut self, command: Command) {
        let tag = command.tag.0;
        let body = command.body;
        // Commands valid in any state.
        match body {
            CommandBody::Capability => {
                let capability = self.capability();
                self.out
                    .extend_from_slice(format!("* CAPABILITY {capability}\r\n").as_bytes());
                self.finish(&tag, "OK", "CAPABILITY completed", true);
                return;
            }
            CommandBody::Noop => {
                self.finish(&tag, "OK", "NOOP completed", true);
                return;
            }
            CommandBody::Logout => {
                self.out.extend_from_slice(b"* BYE Logging out\r\n");
                tagged(&mut self.out, &tag, "OK", "LOGOUT completed");
                self.close();
                return;
            }
            CommandBody::Id { .. } => {
                // RFC 2971 §3.1; the client's fields are not needed.
                self.out.extend_from_slice(
                    format!(
                        "* ID (\"name\" \"Portico\" \"version\" \"{}\" \"vendor\" \"Portico\")\r\n",
                        self.config.version
                    )
                    .as_bytes(),
                );
                self.finish(&tag, "OK", "ID completed", true);
                return;
            }
            _ => {}
        }
        match (&self.state, body) {
            (State::NotAuthenticated, CommandBody::StartTls) => self.starttls(tag),
            (State::NotAuthenticated, CommandBody::Login { username, password }) => {
                self.login(tag, username, password.0)
            }
            (
                State::NotAuthenticated,
                CommandBody::Authenticate {
                    mechanism,
                    initial_response,
                },
            ) => self.authenticate(tag, &mechanism, initial_response.map(|ir| ir.0)),
            (State::NotAuthenticated, _) => {
                self.bad(&tag, "Command not valid before authentication")
            }
            (
                _,
                CommandBody::StartTls
                | CommandBody::Login { .. }
                | CommandBody::Authenticate { .. },
            ) => self.bad(&tag, "Already authenticated"),
            (State::Authenticated, CommandBody::Enable { capabilities }) => {
                self.enable(tag, capabilities)
            }
            (State::Selected(_), CommandBody::Enable { .. }) => {
                self.bad(&tag, "ENABLE is valid only before SELECT")
            }
            (_, CommandBody::Select { mailbox, params }) => {
                self.select(tag, &mailbox, false, params)
            }
            (_, CommandBody::Examine { mailbox, params }) => {
                self.select(tag, &mailbox, true, params)
            }
            (
                _,
                CommandBody::Create {
                    mailbox,
                    special_use,
                },
            ) => self.create(tag, &mailbox, special_use),
            (_, CommandBody::Delete { mailbox }) => {
                if let Some(folder) = self.mailbox_name(&tag, &mailbox) {
                    self.request(
                        Running::Simple {
                            tag,
                            command: "DELETE",
                        },
                        Request::Delete { folder },
                    );
                }
            }
            (_, CommandBody::Rename { from, to }) => {
                let Some(from) = self.mailbox_name(&tag, &from) else {
                    return;
                };
                let Some(to) = self.new_mailbox_name(&tag, &to) else {
                    return;
                };
                self.request(
                    Running::Simple {
                        tag,
                        command: "RENAME",
                    },
                    Request::Rename { from, to },
                );
            }
            (_, CommandBody::Subscribe { mailbox }) => self.subscribe(tag, &mailbox, true),
            (_, CommandBody::Unsubscribe { mailbox }) => self.subscribe(tag, &mailbox, false),
            (
                _,
                CommandBody::List {
                    reference,
                    patterns,
                    selection,
                    returns,
                    extended,
                },
            ) => self.list(tag, &reference, &patterns, &selection, &returns, extended),
            (_, CommandBody::Lsub { reference, pattern }) => self.lsub(tag, &reference, &pattern),
            (_, CommandBody::Namespace) => {
                self.out
                    .extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
                self.finish(&tag, "OK", "NAMESPACE completed", true);
            }
            (_, CommandBody::Status { mailbox, items }) => {
                let Some(name) = self.mailbox_name(&tag, &mailbox) else {
                    return;
                };
                let recent = items.contains(&StatusItem::Recent);
                self.request(
                    Running::Status {
                        tag,
                        name: name.clone(),
                        items,
                    },
                    Request::Status {
                        folder: name,
                        recent,
                    },
                );
            }
            (
                _,
                CommandBody::Append {
                    mailbox,
                    flags,
                    date,
                    message,
                },
            ) => self.append(tag, &mailbox, flags, date, message),
            (_, CommandBody::Idle) => {
                self.out.extend_from_slice(b"+ idling\r\n");
                self.announce(true);
                self.reader.set_line_mode(true);
                self.line_mode = LineMode::Idle { tag };
            }
            (State::Authenticated, _) => self.bad(&tag, "No mailbox selected"),
            (State::Selected(_), body) => self.selected_command(tag, body),
            (State::Logout, _) => {}
        }
    }

    fn starttls(&mut self, tag: String) {
        if self.tls {
            return self.bad(&tag, "TLS is already active");
        }
        if !self.config.tls_available {
            return self.bad(&tag, "STARTTLS is not available");
        }
        tagged(&mut self.out, &tag, "OK", "Begin TLS negotiation now");
        // RFC 9051 §6.2.1: anything pipelined after STARTTLS is discarded, not executed.
        self.reader = CommandReader::new(Self::preauth_limits(&self.config));
        let id = self.next_request;
        self.next_request += 1;
        self.flush();
        self.actions.push_back(Action::StartTls);
        self.running = Some((
            id,
            Running::Simple {
                tag,
                command: "STARTTLS",
            },
        ));
    }

    fn plaintext_allowed(&self) -> bool {
        self.tls || self.config.plaintext_login_without_tls
    }

    fn login(&mut self, tag: String, username: Vec<u8>, password: Vec<u8>) {
        if !self.plaintext_allowed() {
            tagged(
                &mut self.out,
                &tag,
                "NO",
                "[PRIVACYREQUIRED] Plaintext authentication disallowed without TLS, use STARTTLS",
            );
            return self.count_bad();
        }
        self.start_login(tag, username, password);
    }

    fn start_login(&mut self, tag: String, username: Vec<u8>, password: Vec<u8>) {
        let (Ok(username), Ok(password)) =
            (String::from_utf8(username), String::from_utf8(password))
        else {
            tagged(
                &mut self.out,
                &tag,
                "NO",
                "[AUTHENTICATIONFAILED] Authentication failed",
            );
            return self.count_bad();
        };
        self.user = Some(username.clone());
        self.request(
            Running::Login { tag },
            Request::Login {
                username,
                password: Password(password),
            },
        );
    }

    fn authenticate(&mut self, tag: String, mechanism: &str, initial: Option<Vec<u8>>) {
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            tagged(
                &mut self.out,
                &tag,
                "NO",
                "[CANNOT] Unsupported authentication mechanism",
            );
            return self.count_bad();
        }
        if !self.plaintext_allowed() {
            tagged(
                &mut self.out,
                &tag,
                "NO",
                "[PRIVACYREQUIRED] Plaintext authentication disallowed without TLS, use STARTTLS",
            );
            return self.count_bad();
        }
        match initial {
            Some(response) => self.sasl_plain(tag, &response),
            None => {
                self.out.extend_from_slice(b"+ \r\n");
                self.reader.set_line_mode(true);
                self.line_mode = LineMode::SaslResponse { tag };
            }
        }
    }

    /// RFC 4616 PLAIN: authzid NUL authcid NUL passwd, base64.
    fn sasl_plain(&mut self, tag: String, response: &[u8]) {
        // Well-formed base64 that is not `authzid NUL authcid NUL passwd` is a failed
        // authentication (NO), not a protocol error: RFC 9051 §6.2.2 keeps BAD for
        // cancellation and invalid base64.
        match portico_sasl::decode_plain(response) {
            Ok(credentials) => self.start_login(
                tag,
                credentials.authcid.into_bytes(),
                credentials.password.expose().as_bytes().to_vec(),
            ),
            Err(SaslError::NotBase64) => self.bad(&tag, "Invalid base64 in SASL response"),
            Err(SaslError::Malformed) => {
                tagged(
                    &mut self.out,
                    &tag,
                    "NO",
                    "[AUTHENTICATIONFAILED] Invalid SASL PLAIN response",
                );
                self.count_bad();
            }
            Err(SaslError::AuthzidMismatch) => {
                tagged(
                    &mut self.out,
                    &tag,
                    "NO",
                    "[AUTHORIZATIONFAILED] Authorization identity must match",
                );
                self.count_bad();
            }
        }
    }

    fn enable(&mut self, tag: String, capabilities: Vec<String>) {
        let mut enabled = Vec::new();
        for capability in capabilities {
            let upper = capability.to_ascii_uppercase();
            match upper.as_str() {
                "IMAP4REV2" if !self.enabled.rev2 => {
                    self.enabled.rev2 = true;
                    self.enabled.utf8 = true;
                    enabled.push("IMAP4rev2");
                }
                "UTF8=ACCEPT" if !self.enabled.utf8 || !enabled.contains(&"UTF8=ACCEPT") => {
                    self.enabled.utf8 = true;
                    enabled.push("UTF8=ACCEPT");
                }
                "CONDSTORE" if !self.enabled.condstore => {
                    self.enabled.condstore = true;
                    enabled.push("CONDSTORE");
                }
                // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                "QRESYNC" if !self.enabled.qresync => {
                    self.enabled.qresync = true;
                    if !self.enabled.condstore {
                        self.enabled.condstore = true;
                        enabled.push("CONDSTORE");
                    }
                    enabled.push("QRESYNC");
                }
                _ => {}
            }
        }
        self.out.extend_from_slice(b"* ENABLED");
        for name in enabled {
            self.out.push(b' ');
            self.out.extend_from_slice(name.as_bytes());
        }
        self.out.extend_from_slice(b"\r\n");
        self.finish(&tag, "OK", "ENABLE completed", true);
    }

    fn select(&mut self, tag: String, raw: &[u8], read_only: bool, params: SelectParams) {
        let Some(name) = self.mailbox_name(&tag, raw) else {
            return;
        };
        if params.qresync.is_some() && !self.enabled.qresync {
            // RFC 7162 §3.2.5: QRESYNC parameters need ENABLE QRESYNC first.
            return self.bad(&tag, "QRESYNC is not enabled");
        }
        // RFC 9051 §6.3.2: a failed SELECT leaves no mailbox selected.
        if let State::Selected(selected) = &self.state {
            let folder = selected.id;
            self.actions
                .push_back(Action::Request(0, Request::Deselect { folder }));
            self.state = State::Authenticated;
            // RFC 7162 §3.2.11: tell the client the old mailbox is closed.
            self.out
                .extend_from_slice(b"* OK [CLOSED] Previous mailbox closed\r\n");
        }
        self.request(
            Running::Select {
                tag,
                name: name.clone(),
                read_only,
                condstore: params.condstore,
                qresync: params.qresync.clone(),
            },
            Request::Select {
                folder: name,
                read_only,
                vanished_since: params.qresync.as_ref().map(|q| q.modseq),
            },
        );
    }

    fn create(&mut self, tag: String, raw: &[u8], special_use: Vec<String>) {
        let Some(folder) = self.new_mailbox_name(&tag, raw) else {
            return;
        };
        let folder = folder.trim_end_matches(names::SEPARATOR).to_string();
        if special_use.len() > 1 {
            tagged(
                &mut self.out,
                &tag,
                "NO",
                "[USEATTR] Only one special-use attribute per mailbox",
            );
            return;
        }
        self.request(
            Running::Simple {
                tag,
                command: "CREATE",
            },
            Request::Create {
                folder,
                special_use: special_use.into_iter().next(),
            },
        );
    }

    fn subscribe(&mut self, tag: String, raw: &[u8], subscribed: bool) {
        let Some(folder) = self.mailbox_name(&tag, raw) else {
            return;
        };
        let command = if subscribed {
            "SUBSCRIBE"
        } else {
            "UNSUBSCRIBE"
        };
        self.request(
            Running::Simple { tag, command },
            Request::Subscribe { folder, subscribed },
        );
    }

    fn list(
        &mut self,
        tag: String,
        reference: &[u8],
        patterns: &[Vec<u8>],
        selection: &[ListSelection],
        returns: &[ListReturn],
        extended: bool,
    ) {
        let utf8 = self.utf8();
        let Ok(reference) = names::decode(reference, utf8) else {
            return self.bad(&tag, "Invalid reference name");
        };
        // A pattern that does not decode matches no mailbox (RFC 9051 §6.3.9: LIST
        // answers OK with what matches).
        let decoded: Vec<String> = patterns
            .iter()
            .filter_map(|pattern| names::decode(pattern, utf8).ok())
            .collect();
        if decoded.is_empty() && !patterns.is_empty() {
            return self.finish(&tag, "OK", "LIST completed", true);
        }
        // RFC 9051 §6.3.9: LIST "" "" asks for the hierarchy delimiter.
        if !extended && decoded.len() == 1 && decoded[0].is_empty() {
            self.out
                .extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
            return self.finish(&tag, "OK", "LIST completed", true);
        }
        let patterns = decoded
            .into_iter()
            .map(|pattern| names::join_reference(&reference, &pattern))
            .collect();
        let mut status = None;
        let mut return_subscribed = false;
        let mut return_special_use = false;
        for option in returns {
            match option {
                ListReturn::Subscribed => return_subscribed = true,
                ListReturn::SpecialUse => return_special_use = true,
                ListReturn::Children => {}
                ListReturn::Status(items) => status = Some(items.clone()),
            }
        }
        let subscribed_only = selection.contains(&ListSelection::Subscribed);
        let job = ListJob {
            tag,
            command: "LIST",
            patterns,
            subscribed_only,
            special_use_only: selection.contains(&ListSelection::SpecialUse),
            recursive_match: selection.contains(&ListSelection::RecursiveMatch),
            return_subscribed: return_subscribed || subscribed_only,
            return_special_use,
            status,
            pending: VecDeque::new(),
            awaiting_status: None,
        };
        self.request(Running::List(job), Request::ListFolders);
    }

    fn lsub(&mut self, tag: String, reference: &[u8], pattern: &[u8]) {
        let utf8 = self.utf8();
        let Ok(reference) = names::decode(reference, utf8) else {
            return self.bad(&tag, "Invalid reference name");
        };
        let Ok(pattern) = names::decode(pattern, utf8) else {
            // Matches no mailbox.
            return self.finish(&tag, "OK", "LSUB completed", true);
        };
        let job = ListJob {
            tag,
            command: "LSUB",
            patterns: vec![names::join_reference(&reference, &pattern)],
            subscribed_only: true,
            special_use_only: false,
            recursive_match: false,
            return_subscribed: false,
            return_special_use: false,
            status: None,
            pending: VecDeque::new(),
            awaiting_status: None,
        };
        self.request(Running::List(job), Request::ListFolders);
    }

    fn append(
        &mut self,
        tag: String,
        raw: &[u8],
        flags: Vec<String>,
        date: Option<DateTime>,
        message: Vec<u8>,
    ) {
        let Some(folder) = self.mailbox_name(&tag, raw) else {
            return;
        };
        if message.len() as u64 > self.config.append_limit {
            tagged(
                &mut self.out,
                &tag,
                "NO",
                "[TOOBIG] Message exceeds APPENDLIMIT",
            );
            return;
        }
        if let Err(why) = settable_flags(&flags, "set") {
            return self.bad(&tag, &why);
        }
        self.request(
            Running::Append { tag },
            Request::Append {
                folder,
                flags,
                date,
                message,
            },
        );
    }

    fn selected_command(&mut self, tag: String, body: CommandBody) {
        let State::Selected(selected) = &self.state else {
            return;
        };
        let (folder, read_only) = (selected.id, selected.read_only);
        match body {
            CommandBody::Check => self.finish(&tag, "OK", "CHECK completed", true),
            CommandBody::Unselect => {
                self.actions
                    .push_back(Action::Request(0, Request::Deselect { folder }));
                self.state = State::Authenticated;
                tagged(&mut self.out, &tag, "OK", "UNSELECT completed");
            }
            CommandBody::Close => {
                if read_only {
                    self.actions
                        .push_back(Action::Request(0, Request::Deselect { folder }));
                    self.state = State::Authenticated;
                    tagged(&mut self.out, &tag, "OK", "CLOSE completed");
                } else {
                    self.request(
                        Running::Expunge {
                            tag,
                            closing: true,
                            uid: false,
                        },
                        Request::Expunge { folder, uids: None },
                    );
                }
            }
            CommandBody::Expunge | CommandBody::UidExpunge { .. } if read_only => {
                tagged(
                    &mut self.out,
                    &tag,
                    "NO",
                    "[READ-ONLY] Mailbox is read-only",
                );
            }
            CommandBody::Expunge => self.request(
                Running::Expunge {
                    tag,
                    closing: false,
                    uid: false,
                },
                Request::Expunge { folder, uids: None },
            ),
            CommandBody::UidExpunge { set } => {
                self.announce(true);
                let uids = self.resolve(&set, true).unwrap_or_default();
                let uids = uids.into_iter().map(|(_, uid)| uid).collect();
                self.request(
                    Running::Expunge {
                        tag,
                        closing: false,
                        uid: true,
                    },
                    Request::Expunge {
                        folder,
                        uids: Some(uids),
                    },
                );
            }
            CommandBody::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            } => self.fetch(tag, uid, &set, &items, changed_since, vanished),
            CommandBody::Search {
                uid,
                charset,
                returns,
                criteria,
            } => self.search(tag, uid, charset, returns, criteria),
            CommandBody::Store {
                uid,
                set,
                mode,
                silent,
                flags,
                unchanged_since,
            } => {
                if read_only {
                    tagged(
                        &mut self.out,
                        &tag,
                        "NO",
                        "[READ-ONLY] Mailbox is read-only",
                    );
                    return;
                }
                if let Err(why) = settable_flags(&flags, "stored") {
                    return self.bad(&tag, &why);
                }
                if uid {
                    self.announce(true);
                }
                let targets = match self.resolve(&set, uid) {
                    Ok(targets) => targets,
                    Err(why) => return self.bad(&tag, why),
                };
                let uids: Vec<u32> = targets.iter().map(|(_, uid)| *uid).collect();
                if unchanged_since.is_some() {
                    // RFC 7162 §3.1: a CONDSTORE-enabling command.
                    self.enable_condstore();
                }
                if uids.is_empty() {
                    let command = if uid { "UID STORE" } else { "STORE" };
                    return self.finish(&tag, "OK", &format!("{command} completed"), uid);
                }
                self.request(
                    Running::Store {
                        tag,
                        uid,
                        silent,
                        unchanged_since,
                    },
                    Request::StoreFlags {
                        folder,
                        uids,
                        mode,
                        flags,
                        unchanged_since,
                    },
                );
            }
            CommandBody::Copy { uid, set, mailbox } => self.copy(tag, uid, &set, &mailbox, false),
            CommandBody::Move { uid, set, mailbox } => {
                if read_only {
                    tagged(
                        &mut self.out,
                        &tag,
                        "NO",
                        "[READ-ONLY] Mailbox is read-only",
                    );
                    return;
                }
                self.copy(tag, uid, &set, &mailbox, true)
            }
            _ => self.bad(&tag, "Command not valid in this state"),
        }
    }

    fn selected_view(&self) -> Option<&View> {
        match &self.state {
            State::Selected(selected) => Some(&selected.view),
            _ => None,
        }
    }

    fn selected_view_mut(&mut self) -> Option<&mut View> {
        match &mut self.state {
            State::Selected(selected) => Some(&mut selected.view),
            _ => None,
        }
    }

    /// The (seq, uid) pairs a set names, by UID or by sequence number.
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<(u32, u32)>, &'static str> {
        let Some(view) = self.selected_view() else {
            return Err("No mailbox selected");
        };
        if uid {
            Ok(view.resolve_uids(set))
        } else {
            view.resolve_seqs(set)
        }
    }

    fn selected_folder(&self) -> Option<(FolderId, bool)> {
        match &self.state {
            State::Selected(selected) => Some((selected.id, selected.read_only)),
            _ => None,
        }
    }

    fn copy(&mut self, tag: String, uid: bool, set: &SequenceSet, raw: &[u8], moving: bool) {
        let Some(destination) = self.mailbox_name(&tag, raw) else {
            return;
        };
        let Some((folder, _)) = self.selected_folder() else {
            return;
        };
        if uid {
            self.announce(true);
        }
        let targets = match self.resolve(set, uid) {
            Ok(targets) => targets,
            Err(why) => return self.bad(&tag, why),
        };
        let command = if moving { "MOVE" } else { "COPY" };
        if targets.is_empty() {
            return self.finish(
                &tag,
                "OK",
                &format!("{command} completed, nothing to do"),
                uid,
            );
        }
        let uids = targets.into_iter().map(|(_, uid)| uid).collect();
        self.request(
            Running::Copy { tag, moving, uid },
            Request::Copy {
                folder,
                uids,
                destination,
                moving,
            },
        );
    }

    fn fetch(
        &mut self,
        tag: String,
        uid: bool,
        set: &SequenceSet,
        items: &FetchItems,
        changed_since: Option<u64>,
        vanished: bool,
    ) {
        if vanished && !self.enabled.qresync {
            return self.bad(&tag, "VANISHED needs ENABLE QRESYNC");
        }
        if uid {
            // New messages a UID command names become visible first (RFC 9051 §7.5.1
            // allows EXPUNGE and EXISTS here), so UIDs the client learnt elsewhere work.
            self.announce(true);
        }
        let targets = match self.resolve(set, uid) {
            Ok(targets) => targets,
            Err(why) => return self.bad(&tag, why),
        };
        let mut attrs = fetch::expand(items);
        if uid && !attrs.contains(&FetchAttr::Uid) {
            attrs.insert(0, FetchAttr::Uid);
        }
        // RFC 7162 §3.1: CHANGEDSINCE and MODSEQ turn CONDSTORE on; from then on every
        // FETCH with FLAGS carries MODSEQ too.
        if changed_since.is_some() || attrs.contains(&FetchAttr::ModSeq) {
            self.enable_condstore();
        }
        let with_modseq = changed_since.is_some()
            || (self.enabled.condstore && attrs.contains(&FetchAttr::Flags));
        if with_modseq && !attrs.contains(&FetchAttr::ModSeq) {
            attrs.push(FetchAttr::ModSeq);
        }
        let Some((folder, read_only)) = self.selected_folder() else {
            return;
        };
        let sets_seen = fetch::sets_seen(&attrs) && !read_only;
        if sets_seen && !attrs.contains(&FetchAttr::Flags) {
            attrs.push(FetchAttr::Flags);
        }
        let style = self.render_style();
        let Some(view) = self.selected_view() else {
            return;
        };
        let targets = targets
            .into_iter()
            .map(|(seq, uid)| ScanTarget {
                seq,
                uid,
                recent: view.is_recent(uid),
            })
            .collect();
        let scan = Scan {
            tag,
            uid,
            detail: fetch::detail(&attrs),
            targets,
            next: 0,
            work: Arc::new(ScanWork::Fetch {
                attrs,
                changed_since,
                style,
            }),
            examined: 0,
            kind: ScanKind::Fetch { failed: false },
        };
        if let (true, Some(since)) = (vanished, changed_since) {
            self.request(
                Running::FetchVanished {
                    scan,
                    set: set.clone(),
                    sets_seen,
                },
                Request::Vanished { folder, since },
            );
        } else {
            self.start_fetch(scan, sets_seen);
        }
    }

    /// Runs a FETCH scan, after marking its messages \Seen when it must.
    fn start_fetch(&mut self, scan: Scan, sets_seen: bool) {
        let Some((folder, _)) = self.selected_folder() else {
            return;
        };
        if sets_seen && !scan.targets.is_empty() {
            let uids = scan.targets.iter().map(|target| target.uid).collect();
            self.request(
                Running::MarkSeen(scan),
                Request::StoreFlags {
                    folder,
                    uids,
                    mode: StoreMode::Add,
                    flags: vec!["\\Seen".to_string()],
                    unchanged_since: None,
                },
            );
        } else {
            self.continue_scan(scan);
        }
    }

    /// `* VANISHED (EARLIER)` for the UIDs of `set` expunged since the client's MODSEQ
    /// (RFC 7162 §3.2.6); with too short a history, every UID of the set not present.
    fn write_vanished_earlier(&mut self, set: &SequenceSet, vanished: Option<Vec<u32>>) {
        let Some(view) = self.selected_view() else {
            return;
        };
        let max = view.max_uid().unwrap_or(0);
        let in_set = |uid: u32| {
            set.0.iter().any(|range| {
                let bound = |b: SeqBound| match b {
                    SeqBound::Value(v) => v,
                    SeqBound::Star => max.max(uid),
                };
                let (a, b) = (bound(range.start), bound(range.end));
                (a.min(b)..=a.max(b)).contains(&uid)
            })
        };
        let mut uids: Vec<u32> = match vanished {
            Some(uids) => uids.into_iter().filter(|&uid| in_set(uid)).collect(),
            None => (1..=max)
                .filter(|&uid| view.seq_of(uid).is_none() && in_set(uid))
                .collect(),
        };
        uids.sort_unstable();
        uids.dedup();
        if !uids.is_empty() {
            self.out.extend_from_slice(
                format!("* VANISHED (EARLIER) {}\r\n", response::sequence_set(&uids)).as_bytes(),
            );
        }
    }

    fn search(
        &mut self,
        tag: String,
        uid: bool,
        charset: Option<String>,
        returns: Option<Vec<SearchReturn>>,
        criteria: SearchKey,
    ) {
        // RFC 9394 PARTIAL parses but is not served (nor advertised) yet.
        if let Some(returns) = &returns
            && returns
                .iter()
                .any(|r| matches!(r, SearchReturn::Partial(_)))
        {
            return self.bad(&tag, "SEARCH RETURN (PARTIAL) is not supported yet");
        }
        if let Some(charset) = charset
            && !charset.eq_ignore_ascii_case("UTF-8")
            && !charset.eq_ignore_ascii_case("US-ASCII")
        {
            tagged(
                &mut self.out,
                &tag,
                "NO",
                "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset",
            );
            return;
        }
        if uid {
            self.announce(true);
        }
        if mentions_modseq(&criteria) {
            // RFC 7162 §3.1: SEARCH MODSEQ enables CONDSTORE.
            self.enable_condstore();
        }
        let Some(view) = self.selected_view() else {
            return;
        };
        let (max_seq, max_uid) = (view.exists(), view.max_uid().unwrap_or(0));
        let targets = view
            .uids()
            .iter()
            .enumerate()
            .map(|(i, &uid)| ScanTarget {
                seq: i as u32 + 1,
                uid,
                recent: view.is_recent(uid),
            })
            .collect();
        // IMAP4rev2 sessions always get ESEARCH (RFC 9051 §7.3.4).
        let returns = match returns {
            None if self.enabled.rev2 => Some(vec![SearchReturn::All]),
            other => other,
        };
        let queries = match self.config.text_index {
            true => search::text_queries(&criteria),
            false => Vec::new(),
        };
        let scan = Scan {
            tag,
            uid,
            detail: search::detail(&criteria),
            targets,
            next: 0,
            work: Arc::new(ScanWork::Search {
                key: criteria,
                max_seq,
                max_uid,
                hints: TextHints::default(),
            }),
            examined: 0,
            kind: ScanKind::Search {
                returns,
                hits: Vec::new(),
                max_modseq: 0,
                modseqs: Vec::new(),
            },
        };
        if !queries.is_empty()
            && let Some((folder, _)) = self.selected_folder()
        {
            let request = Request::TextIndex {
                folder,
                queries: queries.clone(),
            };
            self.request(Running::TextIndex { scan, queries }, request);
            return;
        }
        self.continue_scan(scan);
    }

    /// Takes the full-text index's answers into a SEARCH: messages they rule out are
    /// not read at all, and the BODY/TEXT keys they rule out need no text.
    fn narrow_search(
        &mut self,
        mut scan: Scan,
        queries: Vec<TextQuery>,
        answers: Vec<Option<TextCandidates>>,
    ) {
        let hints = TextHints::new(
            queries
                .into_iter()
                .zip(answers)
                .filter_map(|(query, answer)| Some((query, answer?)))
                .collect(),
        );
        if let ScanWork::Search {
            key,
            max_seq,
            max_uid,
            ..
        } = &*scan.work
            && !hints.is_empty()
        {
            scan.targets
                .retain(|target| search::prejudge(key, target.uid, &hints) != Some(false));
            scan.work = Arc::new(ScanWork::Search {
                key: key.clone(),
                max_seq: *max_seq,
                max_uid: *max_uid,
                hints,
            });
        }
        self.continue_scan(scan);
    }

    /// Asks for the next batch of a scan, or finishes it.
    fn continue_scan(&mut self, scan: Scan) {
        let Some((folder, _)) = self.selected_folder() else {
            return;
        };
        if scan.next < scan.targets.len() {
            let end = (scan.next + batch_size(scan.detail)).min(scan.targets.len());
            let stream_above = match &*scan.work {
                ScanWork::Fetch { attrs, .. } if fetch::streamable(attrs) => Some(STREAM_ABOVE),
                _ => None,
            };
            let job = ScanJob {
                targets: scan.targets[scan.next..end].to_vec(),
                detail: scan.detail,
                work: scan.work.clone(),
                budget: self.config.search_work_limit.saturating_sub(scan.examined),
                stream_above,
            };
            self.request(Running::Scan(scan), Request::Scan { folder, job });
            return;
        }
        match scan.kind {
            ScanKind::Fetch { failed, .. } => {
                if failed {
                    self.finish(
                        &scan.tag,
                        "NO",
                        "[UNKNOWN-CTE] Cannot decode part",
                        scan.uid,
                    );
                } else {
                    let command = if scan.uid { "UID FETCH" } else { "FETCH" };
                    self.finish(&scan.tag, "OK", &format!("{command} completed"), scan.uid);
                }
            }
            ScanKind::Search {
                returns,
                hits,
                max_modseq,
                modseqs,
            } => {
                let asked_modseq = match &*scan.work {
                    ScanWork::Search { key, .. } => mentions_modseq(key),
                    ScanWork::Fetch { .. } => false,
                };
                let max_modseq = if asked_modseq { max_modseq } else { 0 };
                let numbers: Vec<u32> = hits
                    .iter()
                    .map(|&(seq, uid)| if scan.uid { uid } else { seq })
                    .collect();
                match returns {
                    None => {
                        self.out.extend_from_slice(b"* SEARCH");
                        for n in &numbers {
                            self.out.extend_from_slice(format!(" {n}").as_bytes());
                        }
                        if max_modseq > 0 && !numbers.is_empty() {
                            self.out
                                .extend_from_slice(format!(" (MODSEQ {max_modseq})").as_bytes());
                        }
                        self.out.extend_from_slice(b"\r\n");
                    }
                    Some(returns) => {
                        let returns = if returns.is_empty() {
                            vec![SearchReturn::All]
                        } else {
                            returns
                        };
                        let mut line = format!("* ESEARCH (TAG \"{}\")", scan.tag);
                        if scan.uid {
                            line.push_str(" UID");
                        }
                        if !numbers.is_empty() {
                            for option in &returns {
                                match option {
                                    SearchReturn::Min => {
                                        line.push_str(&format!(" MIN {}", numbers[0]))
                                    }
                                    SearchReturn::Max => line
                                        .push_str(&format!(" MAX {}", numbers[numbers.len() - 1])),
                                    SearchReturn::All => line.push_str(&format!(
                                        " ALL {}",
                                        response::sequence_set(&numbers)
                                    )),
                                    SearchReturn::Count
                                    | SearchReturn::Save
                                    | SearchReturn::Partial(_) => {}
                                }
                            }
                        }
                        if returns.contains(&SearchReturn::Count) {
                            line.push_str(&format!(" COUNT {}", numbers.len()));
                        }
                        // RFC 7162 §3.1.5, RFC 4731 §3.2: the highest MODSEQ of the
                        // messages returned: of every match with ALL or COUNT, else of
                        // the MIN and MAX ones alone.
                        let every = returns
                            .iter()
                            .any(|r| matches!(r, SearchReturn::All | SearchReturn::Count));
                        let returned = if every || modseqs.is_empty() {
                            max_modseq
                        } else {
                            let mut returned = 0;
                            if returns.contains(&SearchReturn::Min) {
                                returned = modseqs[0];
                            }
                            if returns.contains(&SearchReturn::Max) {
                                returned = returned.max(modseqs[modseqs.len() - 1]);
                            }
                            returned
                        };
                        if max_modseq > 0 && returned > 0 && !numbers.is_empty() {
                            line.push_str(&format!(" MODSEQ {returned}"));
                        }
                        line.push_str("\r\n");
                        self.out.extend_from_slice(line.as_bytes());
                    }
                }
                let command = if scan.uid { "UID SEARCH" } else { "SEARCH" };
                self.finish(&scan.tag, "OK", &format!("{command} completed"), scan.uid);
            }
        }
    }

    fn on_reply(&mut self, id: RequestId, reply: Reply) {
        let Some((expected, running)) = self.running.take() else {
            return;
        };
        if expected != id {
            self.running = Some((expected, running));
            return;
        }
        match (running, reply) {
            (Running::Login { tag }, Reply::Login(result)) => match result {
                Ok(()) => {
                    self.state = State::Authenticated;
                    self.reader.set_limits(Self::limits(&self.config));
                    let capability = self.capability();
                    tagged(
                        &mut self.out,
                        &tag,
                        "OK",
                        &format!("[CAPABILITY {capability}] Logged in"),
                    );
                }
                Err(failure) => {
                    self.user = None;
                    let text = match failure {
                        LoginFailure::BadCredentials => {
                            "[AUTHENTICATIONFAILED] Authentication failed"
                        }
                        LoginFailure::Disabled => {
                            "[CONTACTADMIN] IMAP access is disabled for this account"
                        }
                        LoginFailure::Temporary => {
                            "[UNAVAILABLE] Authentication service unavailable, try again later"
                        }
                        LoginFailure::MailboxUnavailable => {
                            "[UNAVAILABLE] The server that holds your mailbox is unavailable, try again later"
                        }
                        // RFC 5530 §3: LIMIT, an administrative limit was reached.
                        LoginFailure::TooManyConnections => {
                            "[LIMIT] Too many connections for this user"
                        }
                    };
                    tagged(&mut self.out, &tag, "NO", text);
                    if failure == LoginFailure::BadCredentials {
                        self.count_bad();
                    }
                }
            },
            (Running::List(job), Reply::Folders(result)) => match result {
                Ok(folders) => self.list_reply(job, folders),
                Err(fault) => tagged(&mut self.out, &job.tag, "NO", &fault_text(&fault, false)),
            },
            (Running::List(mut job), Reply::Status(result)) => {
                // A folder that vanished since the LIST gets no STATUS (RFC 5819 §2).
                if let (Some(name), Some(items), Ok(status)) =
                    (job.awaiting_status.take(), job.status.clone(), result)
                {
                    self.status_line(&name, &items, &status);
                }
                self.next_list_status(job);
            }
            (Running::Status { tag, name, items }, Reply::Status(result)) => match result {
                Ok(status) => {
                    self.status_line(&name, &items, &status);
                    self.finish(&tag, "OK", "STATUS completed", true);
                }
                Err(fault) => self.finish(&tag, "NO", &fault_text(&fault, false), true),
            },
            (
                Running::Select {
                    tag,
                    name,
                    read_only,
                    condstore,
                    qresync,
                },
                Reply::Selected(result),
            ) => self.select_reply(tag, name, read_only, condstore, qresync, result),
            (Running::Simple { tag, command }, Reply::Done(result)) => match result {
                Ok(()) => self.finish(&tag, "OK", &format!("{command} completed"), true),
                Err(fault) => self.finish(&tag, "NO", &fault_text(&fault, false), true),
            },
            (Running::Append { tag }, Reply::Appended(result)) => match result {
                Ok((uidvalidity, uid)) => self.finish(
                    &tag,
                    "OK",
                    &format!("[APPENDUID {uidvalidity} {uid}] APPEND completed"),
                    true,
                ),
                Err(fault) => self.finish(&tag, "NO", &fault_text(&fault, true), true),
            },
            (Running::MarkSeen(scan), Reply::FlagsStored(_)) => self.continue_scan(scan),
            (
                Running::FetchVanished {
                    scan,
                    set,
                    sets_seen,
                },
                Reply::Vanished(result),
            ) => match result {
                Ok(vanished) => {
                    self.write_vanished_earlier(&set, vanished);
                    self.start_fetch(scan, sets_seen);
                }
                Err(fault) => self.finish(&scan.tag, "NO", &fault_text(&fault, false), true),
            },
            (Running::Scan(scan), Reply::Scanned(result)) => self.scan_reply(scan, result),
            (Running::TextIndex { scan, queries }, Reply::TextIndex(answers)) => {
                self.narrow_search(scan, queries, answers)
            }
            (
                Running::Store {
                    tag,
                    uid,
                    silent,
                    unchanged_since,
                },
                Reply::FlagsStored(result),
            ) => self.store_reply(tag, uid, silent, unchanged_since, result),
            (Running::Expunge { tag, closing, uid }, Reply::Expunged(result)) => {
                self.expunge_reply(tag, closing, uid, result)
            }
            (Running::Copy { tag, moving, uid }, Reply::Copied(result)) => {
                self.copy_reply(tag, moving, uid, result)
            }
            (running, _) => {
                // A reply of the wrong kind is the host's bug; fail the command, keep going.
                let tag = running_tag(&running);
                tagged(&mut self.out, &tag, "NO", "[SERVERBUG] Internal error");
            }
        }
    }

    fn status_line(&mut self, name: &str, items: &[StatusItem], status: &FolderStatus) {
        let mut line = b"* STATUS ".to_vec();
        response::string(&mut line, &names::encode(name, self.utf8()), self.utf8());
        line.extend_from_slice(b" (");
        let mut parts = Vec::new();
        for item in items {
            parts.push(match item {
                StatusItem::Messages => format!("MESSAGES {}", status.messages),
                StatusItem::Recent => format!("RECENT {}", status.recent),
                StatusItem::UidNext => format!("UIDNEXT {}", status.uidnext),
                StatusItem::UidValidity => format!("UIDVALIDITY {}", status.uidvalidity),
                StatusItem::Unseen => format!("UNSEEN {}", status.unseen),
                StatusItem::Deleted => format!("DELETED {}", status.deleted),
                StatusItem::Size => format!("SIZE {}", status.size),
                StatusItem::HighestModSeq => format!("HIGHESTMODSEQ {}", status.highest_modseq),
            });
        }
        line.extend_from_slice(parts.join(" ").as_bytes());
        line.extend_from_slice(b")\r\n");
        self.out.extend_from_slice(&line);
    }

    fn list_reply(&mut self, mut job: ListJob, folders: Vec<FolderInfo>) {
        use std::collections::{BTreeMap, BTreeSet};
        let existing: BTreeMap<&str, &FolderInfo> =
            folders.iter().map(|f| (f.name.as_str(), f)).collect();
        let mut with_children = BTreeSet::new();
        let mut subscribed_children = BTreeSet::new();
        for folder in &folders {
            for parent in names::parents(&folder.name) {
                with_children.insert(parent.to_string());
                if folder.subscribed {
                    subscribed_children.insert(parent.to_string());
                }
            }
        }
        // Candidates: every folder, plus parents that exist only as levels (\Noselect /
        // \NonExistent, RFC 9051 §6.3.9).
        let mut candidates: BTreeSet<String> = folders.iter().map(|f| f.name.clone()).collect();
        candidates.extend(with_children.iter().cloned());
        let utf8 = self.utf8();
        let lsub = job.command == "LSUB";
        for name in candidates {
            if !job.patterns.iter().any(|p| names::matches(p, &name)) {
                continue;
            }
            let folder = existing.get(name.as_str());
            let mut attributes: Vec<&str> = Vec::new();
            let selectable = folder.is_some();
            let subscribed = folder.is_some_and(|f| f.subscribed);
            if job.subscribed_only && !subscribed {
                // RFC 3501 §6.3.9: with `%` last, LSUB names the level above a subscribed
                // folder that `%` does not reach, flagged \Noselect.
                let lsub_level = lsub
                    && subscribed_children.contains(&name)
                    && job
                        .patterns
                        .iter()
                        .any(|p| p.ends_with('%') && names::matches(p, &name));
                let child_matches = job.recursive_match && subscribed_children.contains(&name);
                if !child_matches && !lsub_level {
                    continue;
                }
            }
            let special_use = folder.and_then(|f| f.special_use);
            if job.special_use_only && special_use.is_none() {
                continue;
            }
            if !selectable || lsub && !subscribed {
                attributes.push(if lsub || !job.subscribed_only && !job.recursive_match {
                    "\\Noselect"
                } else {
                    "\\NonExistent"
                });
            }
            if !lsub {
                attributes.push(if with_children.contains(&name) {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            if job.return_subscribed && subscribed {
                attributes.push("\\Subscribed");
            }
            if let Some(usage) = special_use
                && (!lsub || job.return_special_use)
            {
                attributes.push(usage);
            }
            let mut line = format!("* {} (", job.command).into_bytes();
            line.extend_from_slice(attributes.join(" ").as_bytes());
            line.extend_from_slice(b") \"/\" ");
            response::string(&mut line, &names::encode(&name, utf8), utf8);
            if job.recursive_match && job.subscribed_only && !subscribed {
                line.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            line.extend_from_slice(b"\r\n");
            let status = (job.status.is_some() && selectable).then_some(name);
            job.pending.push_back((line, status));
        }
        self.next_list_status(job);
    }

    /// Writes the LIST lines, each listed selectable folder's STATUS right after its
    /// LIST line when LIST-STATUS asked for it, then the tagged OK.
    fn next_list_status(&mut self, mut job: ListJob) {
        while let Some((line, status)) = job.pending.pop_front() {
            self.out.extend_from_slice(&line);
            if let Some(name) = status {
                job.awaiting_status = Some(name.clone());
                let recent = job
                    .status
                    .as_ref()
                    .is_some_and(|items| items.contains(&StatusItem::Recent));
                let request = Request::Status {
                    folder: name,
                    recent,
                };
                return self.request(Running::List(job), request);
            }
        }
        let text = format!("{} completed", job.command);
        self.finish(&job.tag, "OK", &text, true);
    }

    fn select_reply(
        &mut self,
        tag: String,
        name: String,
        read_only: bool,
        condstore: bool,
        qresync: Option<QresyncParams>,
        result: Result<SelectedFolder, Fault>,
    ) {
        let mut folder = match result {
            Ok(folder) => folder,
            Err(fault) => {
                self.early_events.clear();
                return tagged(&mut self.out, &tag, "NO", &fault_text(&fault, false));
            }
        };
        if condstore {
            self.enabled.condstore = true;
        }
        let first_unseen = folder.first_unseen;
        let view = View::new(std::mem::take(&mut folder.uids), folder.recent.clone())
            .since(folder.highest_modseq);
        let out = &mut self.out;
        out.extend_from_slice(format!("* {} EXISTS\r\n", view.exists()).as_bytes());
        if !self.enabled.rev2 {
            out.extend_from_slice(format!("* {} RECENT\r\n", view.recent_count()).as_bytes());
            if let Some(unseen) = first_unseen {
                out.extend_from_slice(
                    format!("* OK [UNSEEN {unseen}] First unseen\r\n").as_bytes(),
                );
            }
        }
        write_flags(out, &folder.keywords, read_only);
        out.extend_from_slice(
            format!("* OK [UIDVALIDITY {}] UIDs valid\r\n", folder.uidvalidity).as_bytes(),
        );
        out.extend_from_slice(
            format!("* OK [UIDNEXT {}] Predicted next UID\r\n", folder.uidnext).as_bytes(),
        );
        if self.enabled.condstore {
            out.extend_from_slice(
                format!("* OK [HIGHESTMODSEQ {}] Highest\r\n", folder.highest_modseq).as_bytes(),
            );
        }
        if let Some(qresync) = qresync.filter(|q| q.uidvalidity == folder.uidvalidity) {
            qresync_catch_up(out, &folder, &view, &qresync);
        }
        if self.enabled.rev2 {
            // RFC 9051 §6.3.2: the LIST response names the mailbox as it is spelt here.
            let mut line = b"* LIST () \"/\" ".to_vec();
            response::string(&mut line, &names::encode(&name, true), true);
            line.extend_from_slice(b"\r\n");
            out.extend_from_slice(&line);
        }
        let (code, command) = if read_only {
            ("READ-ONLY", "EXAMINE")
        } else {
            ("READ-WRITE", "SELECT")
        };
        tagged(out, &tag, "OK", &format!("[{code}] {command} completed"));
        let mut selected = Selected {
            id: folder.id,
            read_only,
            view,
            keywords: std::mem::take(&mut folder.keywords),
        };
        // Changes the snapshot already holds are harmless to replay: appends at or
        // below its highest UID are ignored, expunges of missing UIDs skipped.
        for event in std::mem::take(&mut self.early_events) {
            let for_this = match &event {
                FolderEvent::Appended { folder, .. }
                | FolderEvent::FlagsChanged { folder, .. }
                | FolderEvent::Expunged { folder, .. } => *folder == selected.id,
            };
            if for_this {
                selected.view.queue(event);
            }
        }
        self.state = State::Selected(Box::new(selected));
    }

    fn scan_reply(&mut self, mut scan: Scan, result: Result<ScanOutcome, Fault>) {
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(fault) => {
                return self.finish(&scan.tag, "NO", &fault_text(&fault, false), scan.uid);
            }
        };
        scan.next += outcome.processed.max(1);
        scan.examined = scan.examined.saturating_add(outcome.examined);
        if outcome.over_budget {
            let command = if scan.uid { "UID SEARCH" } else { "SEARCH" };
            let text = format!("[LIMIT] {command} would read too much text; narrow it down");
            return self.finish(&scan.tag, "NO", &text, scan.uid);
        }
        match (outcome.output, &mut scan.kind) {
            (
                ScanOutput::Rendered {
                    bytes,
                    unknown_cte,
                    streamed,
                    keywords,
                    shown,
                },
                ScanKind::Fetch { failed },
            ) => {
                *failed |= unknown_cte;
                self.announce_keywords(keywords.iter().map(String::as_str));
                if let Some(view) = self.selected_view_mut() {
                    for (uid, modseq) in shown {
                        view.shown(uid, modseq);
                    }
                }
                let Some((folder, _)) = self.selected_folder() else {
                    return;
                };
                // What the store keeps goes out between the rendered pieces around it.
                let mut from = 0;
                for literal in streamed {
                    self.out.extend_from_slice(&bytes[from..literal.at]);
                    self.flush();
                    self.actions.push_back(Action::Stream {
                        folder,
                        uid: literal.uid,
                        start: literal.start,
                        len: literal.len,
                    });
                    from = literal.at;
                }
                self.out.extend_from_slice(&bytes[from..]);
            }
            (
                ScanOutput::Hits {
                    hits,
                    max_modseq,
                    modseqs,
                },
                ScanKind::Search {
                    hits: all,
                    max_modseq: highest,
                    modseqs: all_modseqs,
                    ..
                },
            ) => {
                all.extend(hits);
                all_modseqs.extend(modseqs);
                *highest = (*highest).max(max_modseq);
            }
            // The host answered a job with another kind's output.
            _ => {
                let text = fault_text(&Fault::Unavailable("scan".into()), false);
                return self.finish(&scan.tag, "NO", &text, scan.uid);
            }
        }
        self.continue_scan(scan);
    }

    fn store_reply(
        &mut self,
        tag: String,
        uid: bool,
        silent: bool,
        unchanged_since: Option<u64>,
        result: Result<FlagsStored, Fault>,
    ) {
        let stored = match result {
            Ok(stored) => stored,
            Err(fault) => return self.finish(&tag, "NO", &fault_text(&fault, false), uid),
        };
        let recent_style = !self.enabled.rev2;
        let with_modseq = self.enabled.condstore || unchanged_since.is_some();
        // A keyword this STORE brought into the folder is announced before its FETCH.
        self.announce_keywords(
            stored
                .current
                .iter()
                .flat_map(|(_, flags, _)| flags.iter().map(String::as_str)),
        );
        if let Some(view) = self.selected_view_mut() {
            for (message_uid, _, modseq) in &stored.current {
                if !stored.modified.contains(message_uid) {
                    view.shown(*message_uid, *modseq);
                }
            }
        }
        let Some(view) = self.selected_view() else {
            return;
        };
        let mut out = Vec::new();
        // RFC 7162 §3.1.3: messages refused by UNCHANGEDSINCE get no FETCH; with .SILENT
        // a conditional STORE still reports the new MODSEQ of what it changed.
        let report_modseq_only = silent && unchanged_since.is_some();
        if !silent || report_modseq_only {
            for (message_uid, flags, modseq) in &stored.current {
                if stored.modified.contains(message_uid) {
                    continue;
                }
                let Some(seq) = view.seq_of(*message_uid) else {
                    continue;
                };
                out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
                if uid {
                    out.extend_from_slice(format!("UID {message_uid} ").as_bytes());
                }
                if report_modseq_only {
                    out.extend_from_slice(format!("MODSEQ ({modseq}))\r\n").as_bytes());
                    continue;
                }
                out.extend_from_slice(b"FLAGS ");
                let mut flags = flags.clone();
                if recent_style && view.is_recent(*message_uid) {
                    flags.push("\\Recent".into());
                }
                response::flag_list(&mut out, &flags);
                if with_modseq {
                    out.extend_from_slice(format!(" MODSEQ ({modseq})").as_bytes());
                }
                out.extend_from_slice(b")\r\n");
            }
        }
        let modified: Vec<u32> = if uid {
            stored.modified.clone()
        } else {
            stored
                .modified
                .iter()
                .filter_map(|u| view.seq_of(*u))
                .collect()
        };
        self.out.extend_from_slice(&out);
        let command = if uid { "UID STORE" } else { "STORE" };
        if modified.is_empty() {
            self.finish(&tag, "OK", &format!("{command} completed"), uid);
        } else {
            let text = format!(
                "[MODIFIED {}] Conditional {command} failed",
                response::sequence_set(&modified)
            );
            self.finish(&tag, "OK", &text, uid);
        }
    }

    fn expunge_reply(
        &mut self,
        tag: String,
        closing: bool,
        uid: bool,
        result: Result<Vec<u32>, Fault>,
    ) {
        let removed = match result {
            Ok(removed) => removed,
            Err(fault) => return self.finish(&tag, "NO", &fault_text(&fault, false), true),
        };
        if closing {
            // CLOSE expunges silently (RFC 9051 §6.4.1).
            if let State::Selected(selected) = &self.state {
                let folder = selected.id;
                self.actions
                    .push_back(Action::Request(0, Request::Deselect { folder }));
            }
            self.state = State::Authenticated;
            return tagged(&mut self.out, &tag, "OK", "CLOSE completed");
        }
        let vanished = self.enabled.qresync;
        if let State::Selected(selected) = &mut self.state {
            selected.view.expunge_now(&mut self.out, &removed, vanished);
        }
        let command = if uid { "UID EXPUNGE" } else { "EXPUNGE" };
        self.finish(&tag, "OK", &format!("{command} completed"), true);
    }

    fn copy_reply(&mut self, tag: String, moving: bool, uid: bool, result: Result<Copied, Fault>) {
        let copied = match result {
            Ok(copied) => copied,
            Err(fault) => return self.finish(&tag, "NO", &fault_text(&fault, true), uid),
        };
        let command = if moving { "MOVE" } else { "COPY" };
        let sources: Vec<u32> = copied.pairs.iter().map(|(src, _)| *src).collect();
        let targets: Vec<u32> = copied.pairs.iter().map(|(_, dst)| *dst).collect();
        let code = if copied.pairs.is_empty() {
            String::new()
        } else {
            format!(
                "[COPYUID {} {} {}] ",
                copied.uidvalidity,
                response::sequence_set(&sources),
                response::sequence_set(&targets)
            )
        };
        if moving {
            // RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
            if !code.is_empty() {
                self.out
                    .extend_from_slice(format!("* OK {code}Moved\r\n").as_bytes());
            }
            let vanished = self.enabled.qresync;
            if let State::Selected(selected) = &mut self.state {
                selected.view.expunge_now(&mut self.out, &sources, vanished);
            }
            self.finish(&tag, "OK", &format!("{command} completed"), true);
        } else {
            self.finish(&tag, "OK", &format!("{code}{command} completed"), uid);
        }
    }
}

fn mentions_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq(_) => true,
        SearchKey::And(keys) => keys.iter().any(mentions_modseq),
        SearchKey::Or(a, b) => mentions_modseq(a) || mentions_modseq(b),
        SearchKey::Not(k) => mentions_modseq(k),
        _ => false,
    }
}

/// RFC 7162 §3.2.5.1: what changed since the client's cached MODSEQ: one
/// `VANISHED (EARLIER)` line, then a FETCH for every message changed after it.
fn qresync_catch_up(
    out: &mut Vec<u8>,
    folder: &SelectedFolder,
    view: &View,
    qresync: &QresyncParams,
) {
    let known = |uid: u32| {
        qresync.known_uids.as_ref().is_none_or(|set| {
            set.0.iter().any(|range| {
                let bound = |b: SeqBound| match b {
                    SeqBound::Value(v) => v,
                    SeqBound::Star => u32::MAX,
                };
                let (a, b) = (bound(range.start), bound(range.end));
                (a.min(b)..=a.max(b)).contains(&uid)
            })
        })
    };
    let mut vanished: Vec<u32> = match &folder.vanished {
        Some(uids) => uids.iter().copied().filter(|&uid| known(uid)).collect(),
        // History too short: every UID the client may know that is not here is gone.
        None => (1..folder.uidnext)
            .filter(|&uid| view.seq_of(uid).is_none() && known(uid))
            .collect(),
    };
    vanished.sort_unstable();
    vanished.dedup();
    if !vanished.is_empty() {
        out.extend_from_slice(
            format!(
                "* VANISHED (EARLIER) {}\r\n",
                response::sequence_set(&vanished)
            )
            .as_bytes(),
        );
    }
    for message in &folder.changed {
        let Some(seq) = view.seq_of(message.uid) else {
            continue;
        };
        if message.modseq > qresync.modseq {
            out.extend_from_slice(format!("* {seq} FETCH (UID {} FLAGS ", message.uid).as_bytes());
            response::flag_list(out, &message.flags);
            out.extend_from_slice(format!(" MODSEQ ({}))\r\n", message.modseq).as_bytes());
        }
    }
}

fn running_tag(running: &Running) -> String {
    match running {
        Running::Login { tag }
        | Running::Status { tag, .. }
        | Running::Select { tag, .. }
        | Running::Simple { tag, .. }
        | Running::Append { tag }
        | Running::Store { tag, .. }
        | Running::Expunge { tag, .. }
        | Running::Copy { tag, .. } => tag.clone(),
        Running::List(job) => job.tag.clone(),
        Running::MarkSeen(scan)
        | Running::Scan(scan)
        | Running::FetchVanished { scan, .. }
        | Running::TextIndex { scan, .. } => scan.tag.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` and carries out the actions, answering requests with `reply`;
    /// returns everything written.
    fn drive(
        session: &mut Session,
        input: &[u8],
        reply: &mut dyn FnMut(&Request) -> Option<Reply>,
    ) -> String {
        session.handle(Input::Bytes(input));
        let mut out = Vec::new();
        while let Some(action) = session.next_action() {
            match action {
                Action::Write(bytes) => out.extend(bytes),
                Action::Request(id, request) => {
                    if let Some(answer) = reply(&request) {
                        session.handle(Input::Reply(id, answer));
                    }
                }
                Action::StartTls => session.handle(Input::TlsEstablished),
                Action::Stream {
                    uid, start, len, ..
                } => out.extend(format!("[stream {uid} {start}+{len}]").into_bytes()),
                Action::Close => {}
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn folder(name: &str, subscribed: bool) -> FolderInfo {
        FolderInfo {
            name: name.to_string(),
            special_use: None,
            subscribed,
        }
    }

    /// A session on a TLS connection, signed in, greeting and login answer read.
    fn signed_in(config: ImapConfig) -> Session {
        let mut session = Session::new(config, true);
        drive(&mut session, b"a LOGIN alice secret\r\n", &mut |_| {
            Some(Reply::Login(Ok(())))
        });
        session
    }

    #[test]
    fn list_status_comes_right_after_each_list_line() {
        let mut session = signed_in(ImapConfig::default());
        let mut reply = |request: &Request| match request {
            Request::ListFolders => Some(Reply::Folders(Ok(vec![
                folder("INBOX", true),
                folder("Sent", true),
                folder("x/y", true),
            ]))),
            Request::Status { folder, .. } => Some(Reply::Status(Ok(FolderStatus {
                messages: folder.len() as u32,
                ..FolderStatus::default()
            }))),
            _ => None,
        };
        let out = drive(
            &mut session,
            b"b LIST \"\" % RETURN (STATUS (MESSAGES))\r\n",
            &mut reply,
        );
        // RFC 5819 §2: each STATUS follows its own LIST line; none for \Noselect.
        assert_eq!(
            out,
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n\
             * STATUS \"INBOX\" (MESSAGES 5)\r\n\
             * LIST (\\HasNoChildren) \"/\" \"Sent\"\r\n\
             * STATUS \"Sent\" (MESSAGES 4)\r\n\
             * LIST (\\Noselect \\HasChildren) \"/\" \"x\"\r\n\
             b OK LIST completed\r\n"
        );
    }

    #[test]
    fn lsub_percent_names_the_level_above_a_subscribed_folder() {
        let mut session = signed_in(ImapConfig::default());
        let mut reply = |request: &Request| match request {
            Request::ListFolders => Some(Reply::Folders(Ok(vec![
                folder("INBOX", true),
                folder("Work", false),
                folder("Work/2026", true),
            ]))),
            _ => None,
        };
        // RFC 3501 §6.3.9: Work is not subscribed, yet `%` must return it, \Noselect.
        assert_eq!(
            drive(&mut session, b"b LSUB \"\" %\r\n", &mut reply),
            "* LSUB () \"/\" \"INBOX\"\r\n\
             * LSUB (\\Noselect) \"/\" \"Work\"\r\n\
             b OK LSUB completed\r\n"
        );
        // The reference joins the pattern as LIST's does.
        assert_eq!(
            drive(&mut session, b"c LSUB Work %\r\n", &mut reply),
            "* LSUB () \"/\" \"Work/2026\"\r\nc OK LSUB completed\r\n"
        );
    }

    #[test]
    fn an_overlong_line_is_bad_and_an_overlong_literal_is_no() {
        let config = ImapConfig {
            max_line: 30,
            append_limit: 10,
            ..ImapConfig::default()
        };
        let mut session = signed_in(config);
        let out = drive(
            &mut session,
            b"b LIST \"\" \"a pattern much too long for it\"\r\nc APPEND INBOX {11}\r\n",
            &mut |_| None,
        );
        assert_eq!(
            out,
            "b BAD [TOOBIG] Line exceeds the server's limit\r\n\
             c NO [TOOBIG] Literal exceeds the server's limit\r\n"
        );
    }

    #[test]
    fn literals_before_authentication_are_tiny() {
        let mut session = Session::new(ImapConfig::default(), true);
        drive(&mut session, b"", &mut |_| None);
        // Synchronizing: BAD instead of `+`, nothing read, the session goes on.
        let out = drive(&mut session, b"a LOGIN {52428800}\r\n", &mut |_| None);
        assert_eq!(
            out,
            "a BAD [TOOBIG] Literal too large before authentication\r\n"
        );
        assert!(!session.is_closed());
        assert_eq!(session.reader.buffered(), 0);
        // Up to the limit is fine.
        let out = drive(
            &mut session,
            format!("b LOGIN {{{PREAUTH_MAX_LITERAL}}}\r\n").as_bytes(),
            &mut |_| None,
        );
        assert_eq!(out, "+ Ready for literal data\r\n");
        let mut session = Session::new(ImapConfig::default(), true);
        drive(&mut session, b"", &mut |_| None);
        // Non-synchronizing: BAD, BYE and close, without reading the literal.
        let out = drive(
            &mut session,
            b"a LOGIN {52428800+}\r\nxxxxxxxx",
            &mut |_| None,
        );
        assert_eq!(
            out,
            "a BAD [TOOBIG] Literal too large before authentication\r\n\
             * BYE Refusing to read a literal that large before authentication\r\n"
        );
        assert!(session.is_closed());
        // Lines are short before login too.
        let mut session = Session::new(ImapConfig::default(), true);
        drive(&mut session, b"", &mut |_| None);
        let long = format!("c LOGIN alice {}\r\n", "x".repeat(PREAUTH_MAX_LINE));
        assert_eq!(
            drive(&mut session, long.as_bytes(), &mut |_| None),
            "c BAD [TOOBIG] Line exceeds the server's limit\r\n"
        );
        // After login the configured limits apply.
        let mut session = signed_in(ImapConfig::default());
        let long = format!("d SELECT {}\r\n", "x".repeat(PREAUTH_MAX_LINE));
        assert!(
            drive(&mut session, long.as_bytes(), &mut |_| None).is_empty(),
            "waits for the store"
        );
        let mut session = signed_in(ImapConfig::default());
        let out = drive(&mut session, b"b APPEND INBOX {52428800}\r\n", &mut |_| {
            None
        });
        assert_eq!(out, "+ Ready for literal data\r\n");
    }

    #[test]
    fn only_system_flags_and_keywords_can_be_set() {
        let mut session = signed_in(ImapConfig::default());
        let mut reply = |request: &Request| match request {
            Request::Select { .. } => Some(Reply::Selected(Ok(SelectedFolder {
                id: FolderId(1),
                uidvalidity: 1,
                uidnext: 2,
                highest_modseq: 1,
                uids: Arc::new(vec![1]),
                first_unseen: Some(1),
                changed: vec![],
                recent: vec![],
                keywords: vec![],
                vanished: None,
            }))),
            Request::StoreFlags { flags, .. } => Some(Reply::FlagsStored(Ok(FlagsStored {
                current: vec![(1, flags.clone(), 2)],
                modified: vec![],
            }))),
            _ => None,
        };
        drive(&mut session, b"b SELECT INBOX\r\n", &mut reply);
        // RFC 9051 §2.3.2: a server never generates flag-extensions.
        assert_eq!(
            drive(&mut session, b"c STORE 1 +FLAGS (\\Bogus)\r\n", &mut reply),
            "c BAD Flag \\Bogus cannot be stored\r\n"
        );
        assert_eq!(
            drive(&mut session, b"d STORE 1 +FLAGS (\\Recent)\r\n", &mut reply),
            "d BAD \\Recent and \\* cannot be stored\r\n"
        );
        assert_eq!(
            drive(
                &mut session,
                b"e STORE 1 +FLAGS (\\seen $Work)\r\n",
                &mut reply
            ),
            concat!(
                // A new keyword is announced before the response that shows it.
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n",
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] ",
                "Flags permitted\r\n",
                "* 1 FETCH (FLAGS (\\seen $Work))\r\ne OK STORE completed\r\n"
            )
        );
        assert_eq!(
            drive(&mut session, b"f UID STORE 9 +FLAGS (x)\r\n", &mut reply),
            "f OK UID STORE completed\r\n"
        );
        assert_eq!(
            drive(
                &mut session,
                b"g APPEND INBOX (\\Bogus) {1+}\r\nx\r\n",
                &mut reply
            ),
            "g BAD Flag \\Bogus cannot be set\r\n"
        );
    }

    #[test]
    fn a_plain_response_that_is_valid_base64_but_no_plain_message_fails_authentication() {
        let mut session = Session::new(ImapConfig::default(), true);
        drive(&mut session, b"", &mut |_| None);
        // "=" is an empty response: no NULs, so no PLAIN message (RFC 4616 §2).
        assert_eq!(
            drive(&mut session, b"a AUTHENTICATE PLAIN =\r\n", &mut |_| None),
            "a NO [AUTHENTICATIONFAILED] Invalid SASL PLAIN response\r\n"
        );
        // Invalid base64 stays a BAD (RFC 9051 §6.2.2).
        assert_eq!(
            drive(&mut session, b"b AUTHENTICATE PLAIN\r\n!!\r\n", &mut |_| {
                None
            }),
            "+ \r\nb BAD Invalid base64 in SASL response\r\n"
        );
    }

    #[test]
    fn changes_pushed_before_the_select_reply_are_not_lost() {
        let mut session = signed_in(ImapConfig::default());
        session.handle(Input::Bytes(b"b SELECT INBOX\r\n"));
        let id = loop {
            match session.next_action() {
                Some(Action::Request(id, Request::Select { .. })) => break id,
                Some(_) => continue,
                None => panic!("no SELECT request"),
            }
        };
        let folder = FolderId(7);
        // UID 2 is in the snapshot too; UID 3 came after it was taken.
        for uid in [2, 3] {
            session.handle(Input::Event(FolderEvent::Appended {
                folder,
                uid,
                flags: vec![],
                modseq: 5,
                recent: false,
            }));
        }
        session.handle(Input::Event(FolderEvent::Expunged {
            folder: FolderId(8),
            uids: vec![1],
            modseq: 6,
        }));
        session.handle(Input::Reply(
            id,
            Reply::Selected(Ok(SelectedFolder {
                id: folder,
                uidvalidity: 1,
                uidnext: 3,
                highest_modseq: 4,
                uids: Arc::new(vec![1, 2]),
                first_unseen: None,
                changed: vec![],
                recent: vec![],
                keywords: vec![],
                vanished: None,
            })),
        ));
        while session.next_action().is_some() {}
        assert_eq!(
            drive(&mut session, b"c NOOP\r\n", &mut |_| None),
            "* 3 EXISTS\r\n* 0 RECENT\r\nc OK NOOP completed\r\n"
        );
    }

    #[test]
    fn a_response_code_the_host_names_is_kept() {
        let mut session = signed_in(ImapConfig::default());
        let mut reply = |request: &Request| match request {
            Request::Create { .. } => Some(Reply::Done(Err(Fault::NotAllowed(
                "[USEATTR] Unsupported special-use attribute".into(),
            )))),
            Request::Delete { .. } => Some(Reply::Done(Err(Fault::NotAllowed(
                "INBOX cannot be deleted".into(),
            )))),
            _ => None,
        };
        assert_eq!(
            drive(
                &mut session,
                b"b CREATE x (USE (\\Important))\r\n",
                &mut reply
            ),
            "b NO [USEATTR] Unsupported special-use attribute\r\n"
        );
        assert_eq!(
            drive(&mut session, b"c DELETE INBOX\r\n", &mut reply),
            "c NO [CANNOT] INBOX cannot be deleted\r\n"
        );
    }
}
