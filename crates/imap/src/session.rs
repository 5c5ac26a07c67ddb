//! The IMAP session machine (RFC 9051 / RFC 3501 and extensions).
//!
//! ```text
//!   greeting ─► NOT AUTHENTICATED ──LOGIN/AUTHENTICATE──► AUTHENTICATED ◄──CLOSE/UNSELECT──┐
//!                 │ STARTTLS                                 │ SELECT/EXAMINE               │
//!                 ▼                                          ▼                              │
//!              (TLS, same state)                          SELECTED ─────────────────────────┘
//!   any state ──LOGOUT──► LOGOUT (BYE, close)
//!   AUTHENTICATED or SELECTED ──COMPRESS DEFLATE──► (DEFLATE both ways, same state, once)
//! ```
//!
//! Commands run one at a time, in the order received: a command that needs the host
//! (store, sign-in) emits a [`Request`] and the machine holds later input until the
//! [`Reply`] arrives. Literals, AUTHENTICATE continuations and IDLE's DONE are states of
//! the reader, never socket reads inside a command.
//!
//! This module holds the machine itself: reading, dispatch, the states, announcing a
//! selected folder's changes, and routing each reply to its command. What each command
//! does is in its family's module under [`crate::command`].

use std::collections::VecDeque;
use std::sync::Arc;

use crate::command::list::ListJob;
use crate::command::*;
use crate::fetch::RenderStyle;
use crate::names;
use crate::parser::parse_command;
use crate::reader::{CommandReader, ReadEvent, ReaderLimits, TooBigWhat};
use crate::request::*;
use crate::response::{self, Code, Condition, Data, SYSTEM_FLAGS, Status};
use crate::scan::{OrderKeys, ScanTarget, ScanWork};
use crate::tally::{self, CommandName, CommandTally};
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
    /// LITERAL+ (non-synchronizing literals of any size) rather than LITERAL- (up to
    /// 4096 octets, RFC 7888): a server advertises one of them, never both.
    pub literal_plus: bool,
    /// Product version for ID.
    pub version: String,
    /// The special-use attributes the store keeps (RFC 6154), as written on the wire:
    /// CREATE with another is `NO [USEATTR]`.
    pub special_uses: Vec<String>,
}

/// Largest non-synchronizing literal under LITERAL- (RFC 7888 §4).
pub const LITERAL_MINUS_MAX: u64 = 4096;

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
            literal_plus: true,
            version: "0.1.0".to_string(),
            special_uses: ["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"]
                .map(String::from)
                .to_vec(),
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

/// The text after a LOGIN-REFERRALS referral's response code.
pub const LOGIN_REFERRAL_TEXT: &str = "Your mailbox is on another server: sign in there";

/// Tagged BAD text (with TOOBIG) for a literal over [`PREAUTH_MAX_LITERAL`].
pub const PREAUTH_LITERAL_TOO_BIG: &str = "Literal too large before authentication";

/// Untagged BYE text after a refused non-synchronizing literal before authentication.
pub const PREAUTH_LITERAL_BYE: &str = "Refusing to read a literal that large before authentication";

/// Everything the session can be told.
/// The goodbye text (with UNAVAILABLE) of a session whose mailbox is being moved.
pub const MAILBOX_MOVING: &str = "Your mailbox is being moved to another server, please reconnect";

#[derive(Debug)]
pub enum Input<'a> {
    Bytes(&'a [u8]),
    TlsEstablished,
    Reply(RequestId, Reply),
    Event(FolderEvent),
    /// NOTIFY: a change elsewhere in the account.
    Account(AccountEvent),
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
    /// COMPRESS DEFLATE was accepted (RFC 4978): from the next write on, the host
    /// deflates all it sends (raw DEFLATE, RFC 1951, flushed at the end of each write
    /// batch) and inflates all it reads before handing it to the session. `unread` is
    /// what the client sent behind the COMPRESS command, which the session has not read:
    /// the first bytes of the client's compressed stream.
    Compress {
        unread: Vec<u8>,
    },
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
pub(crate) fn batch_size(detail: Detail) -> usize {
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
pub(crate) struct Enabled {
    pub(crate) rev2: bool,
    pub(crate) utf8: bool,
    pub(crate) condstore: bool,
    pub(crate) qresync: bool,
}

pub(crate) struct Selected {
    pub(crate) id: FolderId,
    pub(crate) read_only: bool,
    pub(crate) view: View,
    /// The keywords the client has been told of in FLAGS, in that order: a keyword
    /// new to the folder is announced before the first response that shows it.
    pub(crate) keywords: Vec<String>,
    /// UIDs a `SEARCH RETURN (SAVE)` kept for `$` (RFC 5182), ascending; an expunged one
    /// stays here and is skipped when `$` is used.
    pub(crate) saved: Vec<u32>,
    /// Live search results (RFC 5267 §4.3), which end with the selection.
    pub(crate) contexts: crate::context::Contexts,
}

/// The `FLAGS` and `PERMANENTFLAGS` lines for a folder with `keywords` in use.
pub(crate) fn write_flags(out: &mut Vec<u8>, keywords: &[String], read_only: bool) {
    Data::Flags(keywords).encode(out, false);
    let status = match read_only {
        true => Status::ok("Read-only mailbox").code(Code::PermanentFlags(None)),
        false => {
            let mut flags: Vec<String> = SYSTEM_FLAGS.split(' ').map(String::from).collect();
            flags.extend(keywords.iter().cloned());
            Status::ok("Flags permitted").code(Code::PermanentFlags(Some(flags)))
        }
    };
    status.encode(out, None);
}

/// Announces (RFC 9051 §7.3.5, RFC 3501 §7.2.6) the keywords among `flags` the client
/// has not been told of yet, adding them to `known`.
pub(crate) fn announce_new_keywords<'a>(
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

pub(crate) enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Box<Selected>),
    Logout,
}

/// A FETCH or SEARCH under way: the host runs it a slice at a time ([`crate::scan`]).
pub(crate) struct Scan {
    pub(crate) tag: String,
    pub(crate) uid: bool,
    /// Every target, ascending.
    pub(crate) targets: Vec<ScanTarget>,
    pub(crate) next: usize,
    pub(crate) detail: Detail,
    pub(crate) work: Arc<ScanWork>,
    /// Bytes of text the SEARCH keys have examined so far.
    pub(crate) examined: u64,
    pub(crate) kind: ScanKind,
}

pub(crate) enum ScanKind {
    Fetch {
        failed: bool,
        /// NOTIFY's FETCH of new messages (RFC 5465 §5.2): no command, no tagged end.
        unsolicited: bool,
    },
    Search {
        returns: Option<Vec<SearchReturn>>,
        hits: Vec<(u32, u32)>,
        max_modseq: u64,
        /// The MODSEQ of each hit.
        modseqs: Vec<u64>,
        /// SORT or THREAD values of each hit.
        order: OrderKeys,
    },
}

/// A command waiting for the host.
pub(crate) enum Running {
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
    Create {
        tag: String,
    },
    GetMetadata(crate::command::metadata::MetadataJob),
    Append {
        tag: String,
    },
    Notify {
        tag: String,
    },
    /// APPEND with CATENATE: the messages are being built, the APPEND itself follows.
    Catenate {
        tag: String,
        folder: String,
        /// Each message's flags and internal date, in order.
        options: Vec<(Vec<String>, Option<DateTime>)>,
    },
    /// GETQUOTA (`mailbox` None) or GETQUOTAROOT of `mailbox`.
    Quota {
        tag: String,
        mailbox: Option<String>,
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
    /// A live search result's messages read between commands ([`crate::context`]).
    ContextRead(crate::context::Read),
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

/// Where the reader's next line goes.
pub(crate) enum LineMode {
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
    pub(crate) config: ImapConfig,
    pub(crate) reader: CommandReader,
    pub(crate) tls: bool,
    pub(crate) state: State,
    pub(crate) enabled: Enabled,
    pub(crate) actions: VecDeque<Action>,
    pub(crate) out: Vec<u8>,
    pub(crate) running: Option<(RequestId, Running)>,
    pub(crate) next_request: RequestId,
    pub(crate) line_mode: LineMode,
    pub(crate) commands: u64,
    /// The same commands by name, until the host drains them.
    pub(crate) tally: CommandTally,
    pub(crate) bad_commands: u32,
    pub(crate) user: Option<String>,
    pub(crate) closed: bool,
    /// COMPRESS DEFLATE is on (RFC 4978): it cannot be turned off or on again.
    pub(crate) compressed: bool,
    /// Events that arrived while a SELECT/EXAMINE waited for its folder: the host may
    /// start pushing the folder's changes before its reply arrives.
    pub(crate) early_events: Vec<FolderEvent>,
    /// What NOTIFY SET asked for (RFC 5465); `None` before any, or after NOTIFY NONE.
    pub(crate) notify: Option<crate::notify::Notifications>,
    /// New messages of the selected folder whose MessageNew FETCH is still owed.
    pub(crate) notify_fetch: Vec<u32>,
}

/// The tagged NO for a host's fault: one response code for each kind. `trycreate`: the
/// folder is the target of APPEND, COPY or MOVE, which a client may create and retry.
pub(crate) fn fault_status(fault: &Fault, trycreate: bool) -> Status {
    match fault {
        Fault::NotFound if trycreate => Status::no("Mailbox does not exist").code(Code::TryCreate),
        Fault::NotFound => Status::no("Mailbox does not exist").code(Code::NonExistent),
        Fault::AlreadyExists => Status::no("Mailbox already exists").code(Code::AlreadyExists),
        Fault::NotAllowed(why) => Status::no(why.clone()).code(Code::Cannot),
        // RFC 5530 §3: an implementation limit of this server.
        Fault::Limit(why) => Status::no(why.clone()).code(Code::Limit),
        // RFC 5464 §4.3.
        Fault::TooManyAnnotations => {
            Status::no("Too many annotations on this mailbox").code(Code::MetadataTooMany)
        }
        Fault::TooBig => Status::no("Message too large").code(Code::TooBig),
        // RFC 5530 has no code for a full disk; Dovecot's choice, which clients show.
        Fault::NoSpace => {
            Status::no("Not enough disk space on the server, try again later").code(Code::OverQuota)
        }
        Fault::OverQuota => {
            Status::no("Quota exceeded: delete messages to make room").code(Code::OverQuota)
        }
        Fault::Temporary(reference) => Status::no(format!(
            "Storage temporarily unavailable, try again later (ref {reference})"
        ))
        .code(Code::Unavailable),
        Fault::Damaged(what) => {
            Status::no(format!("Damaged and unreadable: {what}")).code(Code::Corruption)
        }
        Fault::Unavailable(reference) => {
            Status::no(format!("Internal error (ref {reference})")).code(Code::ServerBug)
        }
    }
}

/// Flags a client may set with STORE or APPEND: the five system flags and keywords.
/// \Recent is the server's (RFC 3501 §2.3.2) and any other `\name` is a
/// flag-extension no standard defines yet, which a server must never generate (RFC
/// 9051 §2.3.2), so storing it would hand it to every client.
pub(crate) fn settable_flags(flags: &[String], verb: &str) -> Result<(), String> {
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
        session.untagged(
            Status::ok("Portico IMAP4rev2 server ready").code(Code::Capability(capability)),
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

    pub(crate) fn without_greeting(config: ImapConfig, tls_active: bool) -> Session {
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
            tally: CommandTally::default(),
            bad_commands: 0,
            user: None,
            closed: false,
            compressed: false,
            early_events: Vec::new(),
            notify: None,
            notify_fetch: Vec::new(),
        }
    }

    /// Before authentication a client needs literals only for a name, a password or a
    /// SASL response, so a stranger cannot make the node hold more than a few tens of
    /// KiB; [`Self::limits`] apply from the successful login on.
    pub(crate) fn preauth_limits(config: &ImapConfig) -> ReaderLimits {
        let max_line = config.max_line.min(PREAUTH_MAX_LINE);
        ReaderLimits {
            max_line,
            max_literal: PREAUTH_MAX_LITERAL,
            max_command: max_line.saturating_add(2 * PREAUTH_MAX_LITERAL),
            max_non_sync_literal: Self::max_non_sync_literal(config),
        }
    }

    pub(crate) fn limits(config: &ImapConfig) -> ReaderLimits {
        ReaderLimits {
            max_line: config.max_line,
            max_literal: config.append_limit as usize,
            max_command: config
                .max_command
                .max(config.append_limit as usize + config.max_line),
            max_non_sync_literal: Self::max_non_sync_literal(config),
        }
    }

    pub(crate) fn max_non_sync_literal(config: &ImapConfig) -> u64 {
        if config.literal_plus {
            u64::MAX
        } else {
            LITERAL_MINUS_MAX
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

    /// The commands run since the last call, by name, each with how many times; for
    /// the host's statistics. Counted as [`Session::commands`] counts them.
    pub fn drain_commands(&mut self) -> impl Iterator<Item = (CommandName, u32)> + '_ {
        self.tally.drain()
    }

    /// Whether the client is in IDLE (the host may use a longer timeout then).
    pub fn is_idling(&self) -> bool {
        matches!(self.line_mode, LineMode::Idle { .. })
    }

    /// Whether COMPRESS DEFLATE is on.
    pub fn compressed(&self) -> bool {
        self.compressed
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
            Input::Account(event) => self.on_account_event(event),
            Input::Shutdown => {
                self.untagged(Status::bye("Server shutting down"));
                self.close();
            }
            Input::MailboxMoving => {
                self.untagged(Status::bye(MAILBOX_MOVING).code(Code::Unavailable));
                self.close();
            }
            Input::LostTrack => {
                self.untagged(
                    Status::bye("Too many changes to this mailbox at once; please reconnect")
                        .code(Code::Unavailable),
                );
                self.close();
            }
        }
        self.pump();
        // NOTIFY (RFC 5465): between commands the selected folder's changes go out as
        // they come, and new messages are fetched for the client.
        if self.may_push_selected() {
            self.push_selected();
        }
        self.start_notify_fetch();
        self.read_contexts();
        self.flush();
    }

    pub(crate) fn flush(&mut self) {
        if !self.out.is_empty() {
            self.actions
                .push_back(Action::Write(std::mem::take(&mut self.out)));
        }
    }

    pub(crate) fn close(&mut self) {
        self.flush();
        self.actions.push_back(Action::Close);
        self.closed = true;
        self.state = State::Logout;
    }

    pub(crate) fn request(&mut self, running: Running, request: Request) {
        let id = self.next_request;
        self.next_request += 1;
        self.flush();
        self.actions.push_back(Action::Request(id, request));
        self.running = Some((id, running));
    }

    pub(crate) fn style(&self) -> AnnounceStyle {
        AnnounceStyle {
            recent: !self.enabled.rev2,
            modseq: self.enabled.condstore,
            vanished: self.enabled.qresync,
        }
    }

    pub(crate) fn render_style(&self) -> RenderStyle {
        RenderStyle {
            utf8: self.enabled.utf8,
            recent: !self.enabled.rev2,
        }
    }

    /// Announces queued folder changes (before a tagged response, or while idling).
    pub(crate) fn announce(&mut self, allow_expunge: bool) {
        self.announce_as(allow_expunge, true);
    }

    /// [`Self::announce`], with other sessions' flag changes held back unless `flags`
    /// (NOTIFY without FlagChange).
    pub(crate) fn announce_as(&mut self, allow_expunge: bool, flags: bool) {
        let style = self.style();
        let State::Selected(selected) = &mut self.state else {
            return;
        };
        let Selected {
            view,
            keywords,
            read_only,
            ..
        } = &mut **selected;
        if flags {
            announce_new_keywords(&mut self.out, keywords, *read_only, view.pending_flags());
        }
        let new = selected.announce_view(&mut self.out, allow_expunge, flags, style);
        if !new.is_empty() {
            self.note_new_messages(&new);
        }
    }

    /// [`Selected::announce_keywords`] for the selected folder, if any.
    pub(crate) fn announce_keywords<'a>(&mut self, flags: impl IntoIterator<Item = &'a str>) {
        if let State::Selected(selected) = &mut self.state {
            let (known, read_only) = (&mut selected.keywords, selected.read_only);
            announce_new_keywords(&mut self.out, known, read_only, flags);
        }
    }

    /// Ends the command tagged `tag` with `status`, after the changes it may announce.
    pub(crate) fn finish(&mut self, tag: &str, status: Status, allow_expunge: bool) {
        self.announce(allow_expunge);
        self.complete(tag, status);
    }

    /// Ends the command tagged `tag` with `status`, announcing nothing.
    pub(crate) fn complete(&mut self, tag: &str, status: Status) {
        status.encode(&mut self.out, Some(tag));
    }

    /// An untagged status response (`* OK [code] text`, `* BYE …`).
    pub(crate) fn untagged(&mut self, status: Status) {
        status.encode(&mut self.out, None);
    }

    pub(crate) fn data(&mut self, data: Data<'_>) {
        let utf8 = self.utf8();
        data.encode(&mut self.out, utf8);
    }

    pub(crate) fn bad(&mut self, tag: &str, text: &str) {
        self.complete(tag, Status::bad(text.to_string()));
        self.count_bad();
    }

    pub(crate) fn count_bad(&mut self) {
        self.bad_commands += 1;
        if self.bad_commands > self.config.max_bad_commands {
            self.untagged(Status::bye("Too many invalid commands"));
            self.close();
        }
    }

    /// Runs commands until one waits for the host or input runs out.
    pub(crate) fn pump(&mut self) {
        while !self.closed && self.running.is_none() {
            // Live search results catch up with what was announced before the next
            // command runs, so its answer never comes ahead of their updates.
            self.read_contexts();
            if self.running.is_some() {
                break;
            }
            let Some(event) = self.reader.next_event() else {
                break;
            };
            match event {
                ReadEvent::NeedContinuation { .. } => {
                    response::continuation(&mut self.out, "Ready for literal data");
                    self.reader.continuation_answered(true);
                }
                ReadEvent::TooBig {
                    tag,
                    what: TooBigWhat::NonSyncLiteral,
                } => {
                    // RFC 7888 §4: the reader has skipped the literal; the session goes on.
                    let text = format!(
                        "Non-synchronizing literals are limited to {LITERAL_MINUS_MAX} \
                         octets (LITERAL-): send a larger one synchronizing"
                    );
                    let status = Status::bad(text).code(Code::TooBig);
                    status.encode(&mut self.out, tag.as_deref());
                    self.count_bad();
                }
                ReadEvent::TooBig { tag, what } if !self.is_authenticated() => {
                    let text = match what {
                        TooBigWhat::Literal => PREAUTH_LITERAL_TOO_BIG.to_string(),
                        _ => format!("{what:?} exceeds the server's limit"),
                    };
                    let status = Status::bad(text).code(Code::TooBig);
                    status.encode(&mut self.out, tag.as_deref());
                    if self.reader.skipping_literal() {
                        // RFC 7888 §4: the client sends a LITERAL+ literal without
                        // waiting, and a server that refuses it cannot skip it reliably;
                        // a stranger is not worth reading megabytes for (Dovecot also
                        // disconnects).
                        self.untagged(Status::bye(PREAUTH_LITERAL_BYE));
                        self.close();
                    } else {
                        self.count_bad();
                    }
                }
                ReadEvent::TooBig { tag, what } => {
                    let text = format!("{what:?} exceeds the server's limit");
                    // A literal over the limit is a message too big to take (RFC 7889:
                    // NO [TOOBIG]); an over-long line or command could not even be read,
                    // which is a protocol error (BAD).
                    let condition = match what {
                        TooBigWhat::Literal if tag.is_some() => Condition::No,
                        _ => Condition::Bad,
                    };
                    let status = Status::new(condition, text).code(Code::TooBig);
                    status.encode(&mut self.out, tag.as_deref());
                    self.count_bad();
                }
                ReadEvent::Line(line) => self.on_line(line),
                ReadEvent::Command(raw) => {
                    self.commands += 1;
                    self.tally.count(tally::command_name(&raw));
                    match parse_command(&raw) {
                        Ok(command) => self.dispatch(command),
                        Err(error) => {
                            let tag = error.tag.clone().unwrap_or_else(|| "*".to_string());
                            let bad = error.condition == Condition::Bad;
                            self.complete(&tag, error.status());
                            if bad {
                                self.count_bad();
                            }
                        }
                    }
                }
            }
        }
    }

    pub(crate) fn on_line(&mut self, line: Vec<u8>) {
        match std::mem::replace(&mut self.line_mode, LineMode::Commands) {
            LineMode::Commands => {}
            LineMode::Idle { tag } => {
                self.reader.set_line_mode(false);
                if line.eq_ignore_ascii_case(b"DONE") {
                    self.finish(&tag, Status::ok("IDLE terminated"), true);
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

    pub(crate) fn on_event(&mut self, event: FolderEvent) {
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
        // RFC 5465 §4: while idling, NOTIFY decides what is told; between commands
        // [`Self::handle`] pushes it.
        if self.is_idling() {
            match &self.notify {
                None => self.announce(true),
                Some(notifications) => {
                    if let Some(events) = notifications.selected.clone() {
                        self.announce_as(true, events.flags);
                    }
                }
            }
        }
    }

    pub(crate) fn utf8(&self) -> bool {
        self.enabled.utf8
    }

    /// A command of the selected state turns CONDSTORE on: the first one tells the
    /// client the folder's HIGHESTMODSEQ (RFC 7162 §3.1), which SELECT did not.
    pub(crate) fn enable_condstore(&mut self) {
        if self.enabled.condstore {
            return;
        }
        self.enabled.condstore = true;
        if let Some(view) = self.selected_view() {
            let code = Code::HighestModSeq(view.highest_modseq());
            self.untagged(Status::ok("Highest").code(code));
        }
    }

    pub(crate) fn dispatch(&mut self, command: Command) {
        let tag = command.tag.0;
        let body = command.body;
        // Commands valid in any state.
        match body {
            CommandBody::Capability => {
                let capability = self.capability();
                self.data(Data::Capability(&capability));
                self.finish(&tag, Status::ok("CAPABILITY completed"), true);
                return;
            }
            CommandBody::Noop => {
                self.finish(&tag, Status::ok("NOOP completed"), true);
                return;
            }
            CommandBody::Logout => {
                self.untagged(Status::bye("Logging out"));
                self.complete(&tag, Status::ok("LOGOUT completed"));
                self.close();
                return;
            }
            CommandBody::Id { .. } => {
                // RFC 2971 §3.1; the client's fields are not needed.
                let version = self.config.version.clone();
                let fields = [
                    ("name", "Portico"),
                    ("version", version.as_str()),
                    ("vendor", "Portico"),
                ];
                self.data(Data::Id(&fields));
                self.finish(&tag, Status::ok("ID completed"), true);
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
            (_, CommandBody::Compress { mechanism }) => self.compress(tag, &mechanism),
            (_, CommandBody::Unauthenticate) => self.unauthenticate(tag),
            (_, CommandBody::Notify(set)) => self.notify(tag, set),
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
                let parents = names::parents(&to).map(str::to_string).collect();
                // RFC 9051 §6.3.6: renaming INBOX moves its messages to the new folder
                // and leaves INBOX, empty.
                let request = if from == names::INBOX {
                    Request::RenameInbox { to, parents }
                } else {
                    Request::Rename { from, to, parents }
                };
                self.request(
                    Running::Simple {
                        tag,
                        command: "RENAME",
                    },
                    request,
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
                self.data(Data::Namespace);
                self.finish(&tag, Status::ok("NAMESPACE completed"), true);
            }
            (_, CommandBody::Status { mailbox, items }) => {
                let Some(name) = self.mailbox_name(&tag, &mailbox) else {
                    return;
                };
                let recent = items.contains(&StatusItem::Recent);
                let deleted_storage = items.contains(&StatusItem::DeletedStorage);
                self.request(
                    Running::Status {
                        tag,
                        name: name.clone(),
                        items,
                    },
                    Request::Status {
                        folder: name,
                        recent,
                        deleted_storage,
                    },
                );
            }
            (_, CommandBody::Append { mailbox, messages }) => self.append(tag, &mailbox, messages),
            (_, body @ CommandBody::GetMetadata { .. }) => self.getmetadata(tag, body),
            (_, body @ CommandBody::SetMetadata { .. }) => self.setmetadata(tag, body),
            (_, CommandBody::GetQuota { root }) => self.get_quota(tag, &root),
            (_, CommandBody::GetQuotaRoot { mailbox }) => self.get_quota_root(tag, &mailbox),
            (_, CommandBody::SetQuota { .. }) => self.set_quota(tag),
            (_, CommandBody::Idle) => {
                response::continuation(&mut self.out, "idling");
                self.announce(true);
                self.reader.set_line_mode(true);
                self.line_mode = LineMode::Idle { tag };
            }
            (State::Authenticated, _) => self.bad(&tag, "No mailbox selected"),
            (State::Selected(_), body) => self.selected_command(tag, body),
            (State::Logout, _) => {}
        }
    }

    pub(crate) fn selected_command(&mut self, tag: String, body: CommandBody) {
        let State::Selected(selected) = &self.state else {
            return;
        };
        let (folder, read_only) = (selected.id, selected.read_only);
        // Commands that change the folder are refused once here in an EXAMINEd folder
        // (CLOSE there only deselects).
        let changes_folder = matches!(
            body,
            CommandBody::Store { .. }
                | CommandBody::Move { .. }
                | CommandBody::Expunge
                | CommandBody::UidExpunge { .. }
        );
        if read_only && changes_folder {
            return self.complete(
                &tag,
                Status::no("Mailbox is read-only").code(Code::ReadOnly),
            );
        }
        match body {
            CommandBody::Check => self.finish(&tag, Status::ok("CHECK completed"), true),
            CommandBody::Unselect => {
                self.actions
                    .push_back(Action::Request(0, Request::Deselect { folder }));
                self.state = State::Authenticated;
                self.complete(&tag, Status::ok("UNSELECT completed"));
            }
            CommandBody::Close | CommandBody::Expunge | CommandBody::UidExpunge { .. } => {
                self.expunge(tag, body)
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
            CommandBody::Sort { .. } => self.sort(tag, body),
            CommandBody::Thread { .. } => self.thread(tag, body),
            CommandBody::CancelUpdate { tags } => self.cancel_update(tag, tags),
            CommandBody::Store { .. } => self.store(tag, body),
            CommandBody::Copy { uid, set, mailbox } => self.copy(tag, uid, &set, &mailbox, false),
            CommandBody::Move { uid, set, mailbox } => self.copy(tag, uid, &set, &mailbox, true),
            _ => self.bad(&tag, "Command not valid in this state"),
        }
    }

    pub(crate) fn selected_view(&self) -> Option<&View> {
        match &self.state {
            State::Selected(selected) => Some(&selected.view),
            _ => None,
        }
    }

    pub(crate) fn selected_view_mut(&mut self) -> Option<&mut View> {
        match &mut self.state {
            State::Selected(selected) => Some(&mut selected.view),
            _ => None,
        }
    }

    /// The (seq, uid) pairs a set names, by UID or by sequence number.
    pub(crate) fn resolve(
        &self,
        set: &SequenceSet,
        uid: bool,
    ) -> Result<Vec<(u32, u32)>, &'static str> {
        let State::Selected(selected) = &self.state else {
            return Err("No mailbox selected");
        };
        let view = &selected.view;
        if set.is_saved() {
            // RFC 5182 §2.1: `$` names the same messages in UID and sequence commands.
            return Ok(selected
                .saved
                .iter()
                .filter_map(|&uid| view.seq_of(uid).map(|seq| (seq, uid)))
                .collect());
        }
        if uid {
            Ok(view.resolve_uids(set))
        } else {
            view.resolve_seqs(set)
        }
    }

    pub(crate) fn selected_folder(&self) -> Option<(FolderId, bool)> {
        match &self.state {
            State::Selected(selected) => Some((selected.id, selected.read_only)),
            _ => None,
        }
    }

    pub(crate) fn on_reply(&mut self, id: RequestId, reply: Reply) {
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
                    self.complete(
                        &tag,
                        Status::ok("Logged in").code(Code::Capability(capability)),
                    );
                }
                Err(failure) => {
                    let user = self.user.take().unwrap_or_default();
                    let status = match &failure {
                        LoginFailure::BadCredentials => {
                            Status::no("Authentication failed").code(Code::AuthenticationFailed)
                        }
                        LoginFailure::Disabled => {
                            Status::no("IMAP access is disabled for this account")
                                .code(Code::ContactAdmin)
                        }
                        LoginFailure::Temporary => {
                            Status::no("Authentication service unavailable, try again later")
                                .code(Code::Unavailable)
                        }
                        LoginFailure::MailboxUnavailable => Status::no(
                            "The server that holds your mailbox is unavailable, try again later",
                        )
                        .code(Code::Unavailable),
                        // RFC 5530 §3: LIMIT, an administrative limit was reached.
                        LoginFailure::TooManyConnections => {
                            Status::no("Too many connections for this user").code(Code::Limit)
                        }
                        // RFC 2221 §4.1: a tagged NO with the home server's URL, for
                        // the name the client signed in with.
                        LoginFailure::Referral { host, port } => Status::no(LOGIN_REFERRAL_TEXT)
                            .code(Code::Referral(crate::url::login_referral(
                                &user, host, *port,
                            ))),
                    };
                    self.complete(&tag, status);
                    if failure == LoginFailure::BadCredentials {
                        self.count_bad();
                    }
                }
            },
            (Running::List(job), Reply::Folders(result)) => match result {
                Ok(folders) => self.list_reply(job, folders),
                Err(fault) => self.complete(&job.tag, fault_status(&fault, false)),
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
                    self.finish(&tag, Status::ok("STATUS completed"), true);
                }
                Err(fault) => self.finish(&tag, fault_status(&fault, false), true),
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
            (Running::GetMetadata(job), Reply::Metadata(result)) => {
                self.metadata_reply(job, result)
            }
            (Running::Create { tag }, Reply::Created(result)) => match result {
                Ok(id) => {
                    let status = Status::ok("CREATE completed").code(Code::MailboxId(id.0));
                    self.finish(&tag, status, true)
                }
                Err(fault) => self.finish(&tag, fault_status(&fault, false), true),
            },
            (Running::Simple { tag, command }, Reply::Done(result)) => match result {
                Ok(()) => self.finish(&tag, Status::ok(format!("{command} completed")), true),
                Err(fault) => self.finish(&tag, fault_status(&fault, false), true),
            },
            (Running::Append { tag }, Reply::Appended(result)) => match result {
                // RFC 4315 §3: with MULTIAPPEND, the UIDs as a set, in append order.
                Ok((uidvalidity, uids)) => {
                    let code = Code::AppendUid { uidvalidity, uids };
                    self.finish(&tag, Status::ok("APPEND completed").code(code), true)
                }
                Err(fault) => self.finish(&tag, fault_status(&fault, true), true),
            },
            (
                Running::Catenate {
                    tag,
                    folder,
                    options,
                },
                Reply::Catenated(result),
            ) => self.catenated(tag, folder, options, result),
            (Running::Quota { tag, mailbox }, Reply::Quota(result)) => {
                self.quota_reply(tag, mailbox, result)
            }
            (Running::Notify { tag }, Reply::Watched(result)) => self.notified(tag, result),
            (Running::MarkSeen(scan), Reply::FlagsStored(result)) => {
                if let Ok(stored) = result {
                    self.contexts_see_flags(&stored.current, &stored.modified);
                }
                self.continue_scan(scan)
            }
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
                Err(fault) => self.finish(&scan.tag, fault_status(&fault, false), true),
            },
            (Running::Scan(scan), Reply::Scanned(result)) => self.scan_reply(scan, result),
            (Running::ContextRead(read), Reply::Scanned(result)) => {
                self.contexts_read(read, result)
            }
            (Running::ContextRead(read), _) => {
                self.contexts_read(read, Err(Fault::Unavailable("scan".into())))
            }
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
                self.complete(&tag, Status::no("Internal error").code(Code::ServerBug));
            }
        }
    }
}

pub(crate) fn running_tag(running: &Running) -> String {
    match running {
        Running::Login { tag }
        | Running::Status { tag, .. }
        | Running::Select { tag, .. }
        | Running::Simple { tag, .. }
        | Running::Create { tag }
        | Running::Append { tag }
        | Running::Catenate { tag, .. }
        | Running::Quota { tag, .. }
        | Running::Notify { tag }
        | Running::Store { tag, .. }
        | Running::Expunge { tag, .. }
        | Running::Copy { tag, .. } => tag.clone(),
        Running::List(job) => job.tag.clone(),
        Running::ContextRead(read) => read.tag.clone(),
        Running::GetMetadata(job) => job.tag.clone(),
        Running::MarkSeen(scan)
        | Running::Scan(scan)
        | Running::FetchVanished { scan, .. }
        | Running::TextIndex { scan, .. } => scan.tag.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Feeds `input` and carries out the actions, answering requests with `reply`;
    /// returns everything written. Shared by the command modules' tests.
    pub(crate) fn drive(
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
                // A host that "compresses" by copying: what the client sent behind
                // COMPRESS comes back as the first input.
                Action::Compress { unread } => {
                    out.extend(b"[compress]");
                    session.handle(Input::Bytes(&unread));
                }
                Action::Stream {
                    uid, start, len, ..
                } => out.extend(format!("[stream {uid} {start}+{len}]").into_bytes()),
                Action::Close => {}
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// The actions queued now, none carried out.
    fn actions(session: &mut Session) -> Vec<Action> {
        std::iter::from_fn(|| session.next_action()).collect()
    }

    fn write(text: &str) -> Action {
        Action::Write(text.as_bytes().to_vec())
    }

    /// Folders, each with whether it is subscribed.
    fn folders(list: &[(&str, bool)]) -> FolderList {
        FolderList {
            folders: list
                .iter()
                .map(|(name, _)| FolderInfo {
                    name: name.to_string(),
                    special_use: None,
                })
                .collect(),
            subscriptions: list
                .iter()
                .filter(|(_, subscribed)| *subscribed)
                .map(|(name, _)| name.to_string())
                .collect(),
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
    fn commands_are_counted_by_name_parsed_or_not() {
        let mut session = signed_in(ImapConfig::default());
        let names = |session: &mut Session| -> Vec<(&str, u32)> {
            session
                .drain_commands()
                .map(|(name, count)| (name.as_str(), count))
                .collect()
        };
        assert_eq!(names(&mut session), [("LOGIN", 1)]);
        let mut no_store = |_: &Request| None;
        drive(
            &mut session,
            b"b NOOP\r\nc noop\r\nd UID FETCH\r\ne XYZZY\r\n",
            &mut no_store,
        );
        assert_eq!(
            names(&mut session),
            [("NOOP", 2), ("UID FETCH", 1), ("OTHER", 1)]
        );
        // IDLE's DONE is not a command.
        drive(&mut session, b"f IDLE\r\nDONE\r\n", &mut no_store);
        assert_eq!(names(&mut session), [("IDLE", 1)]);
        assert_eq!(session.commands(), 6);
    }

    /// RFC 2221 §4.1: a referral is a tagged NO with the home server's URL for the
    /// name signed in with, by LOGIN and AUTHENTICATE alike; the session stays
    /// unauthenticated, is not charged a failure, and may sign in again.
    #[test]
    fn a_login_referral_is_a_tagged_no_with_the_home_servers_url() {
        let config = ImapConfig {
            max_bad_commands: 1,
            ..ImapConfig::default()
        };
        let mut session = Session::new(config, true);
        let mut refer = |request: &Request| match request {
            Request::Login { .. } => Some(Reply::Login(Err(LoginFailure::Referral {
                host: "imap2.example.com".into(),
                port: 993,
            }))),
            _ => None,
        };
        let greeting = drive(&mut session, b"", &mut refer);
        assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
        assert!(
            greeting.contains(" SASL-IR LOGIN-REFERRALS ENABLE "),
            "{greeting}"
        );
        let out = drive(
            &mut session,
            b"a LOGIN \"ann;x@example.com\" secret\r\n",
            &mut refer,
        );
        assert_eq!(
            out,
            "a NO [REFERRAL imap://ann%3Bx%40example.com;AUTH=*@imap2.example.com:993/] \
             Your mailbox is on another server: sign in there\r\n"
        );
        // AUTHENTICATE PLAIN (authcid bob@example.com), a home known by its address.
        let mut refer2 = |request: &Request| match request {
            Request::Login { .. } => Some(Reply::Login(Err(LoginFailure::Referral {
                host: "192.0.2.2".into(),
                port: 143,
            }))),
            _ => None,
        };
        let out = drive(
            &mut session,
            b"b AUTHENTICATE PLAIN AGJvYkBleGFtcGxlLmNvbQBzZWNyZXQ=\r\n",
            &mut refer2,
        );
        assert_eq!(
            out,
            "b NO [REFERRAL imap://bob%40example.com;AUTH=*@192.0.2.2:143/] \
             Your mailbox is on another server: sign in there\r\n"
        );
        // Not counted as bad (one more would close the session), still signed out.
        let out = drive(&mut session, b"c SELECT INBOX\r\n", &mut refer);
        assert!(out.starts_with("c BAD "), "{out}");
        let out = drive(&mut session, b"d LOGIN alice secret\r\n", &mut |_| {
            Some(Reply::Login(Ok(())))
        });
        assert!(out.starts_with("d OK [CAPABILITY "), "{out}");
    }

    #[test]
    fn list_status_comes_right_after_each_list_line() {
        let mut session = signed_in(ImapConfig::default());
        let mut reply = |request: &Request| match request {
            Request::ListFolders => Some(Reply::Folders(Ok(folders(&[
                ("INBOX", true),
                ("Sent", true),
                ("x/y", true),
            ])))),
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
            Request::ListFolders => Some(Reply::Folders(Ok(folders(&[
                ("INBOX", true),
                ("Work", false),
                ("Work/2026", true),
            ])))),
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
    fn each_fault_answers_with_its_own_code() {
        let mut session = signed_in(ImapConfig::default());
        let mut reply = |request: &Request| match request {
            Request::Create { .. } => Some(Reply::Created(Err(Fault::Limit(
                "Too many mailboxes".into(),
            )))),
            Request::SetMetadata { .. } => Some(Reply::Done(Err(Fault::TooManyAnnotations))),
            Request::Delete { .. } => Some(Reply::Done(Err(Fault::NotAllowed(
                "INBOX cannot be deleted".into(),
            )))),
            _ => None,
        };
        assert_eq!(
            drive(&mut session, b"b CREATE x\r\n", &mut reply),
            "b NO [LIMIT] Too many mailboxes\r\n"
        );
        assert_eq!(
            drive(
                &mut session,
                b"d SETMETADATA INBOX (/private/comment \"x\")\r\n",
                &mut reply
            ),
            "d NO [METADATA TOOMANY] Too many annotations on this mailbox\r\n"
        );
        assert_eq!(
            drive(&mut session, b"c DELETE INBOX\r\n", &mut reply),
            "c NO [CANNOT] INBOX cannot be deleted\r\n"
        );
    }

    #[test]
    fn compress_is_refused_and_not_offered_before_authentication() {
        let mut session = Session::new(ImapConfig::default(), true);
        let greeting = drive(&mut session, b"", &mut |_| None);
        assert!(!greeting.contains("COMPRESS"), "{greeting}");
        // RFC 4978 §3: COMPRESS belongs to the authenticated state.
        session.handle(Input::Bytes(b"a COMPRESS DEFLATE\r\n"));
        assert_eq!(
            actions(&mut session),
            [write("a BAD Command not valid before authentication\r\n")]
        );
        assert!(!session.compressed());
    }

    #[test]
    fn compress_deflate_once_signed_in_and_never_twice() {
        let mut session = Session::new(ImapConfig::default(), true);
        drive(&mut session, b"", &mut |_| None);
        let login = drive(&mut session, b"a LOGIN alice secret\r\n", &mut |_| {
            Some(Reply::Login(Ok(())))
        });
        assert!(login.contains(" COMPRESS=DEFLATE "), "{login}");
        session.handle(Input::Bytes(b"b COMPRESS LZW\r\n"));
        assert_eq!(
            actions(&mut session),
            [write(
                "b BAD Unknown compression mechanism, DEFLATE is supported\r\n"
            )]
        );
        // The OK is the last write in the clear; the switch comes right behind it.
        session.handle(Input::Bytes(b"c COMPRESS deflate\r\n"));
        assert_eq!(
            actions(&mut session),
            [
                write("c OK DEFLATE active\r\n"),
                Action::Compress { unread: vec![] }
            ]
        );
        assert!(session.compressed());
        let out = drive(
            &mut session,
            b"d COMPRESS DEFLATE\r\ne CAPABILITY\r\n",
            &mut |_| None,
        );
        assert!(
            out.starts_with("d NO [COMPRESSIONACTIVE] DEFLATE is active already\r\n* CAPABILITY "),
            "{out}"
        );
        assert!(out.contains(" COMPRESS=DEFLATE "), "{out}");
        assert!(!out.contains("[compress]"), "{out}");
    }

    #[test]
    fn bytes_behind_compress_are_handed_to_the_host_unread() {
        let mut session = signed_in(ImapConfig::default());
        // Compressed bytes (to the session, anything) and part of a line.
        let behind = b"\x4b\x54\x08\xf2\xf7\xf7\r\nc NO";
        let mut input = b"b COMPRESS DEFLATE\r\n".to_vec();
        input.extend_from_slice(behind);
        session.handle(Input::Bytes(&input));
        assert_eq!(
            actions(&mut session),
            [
                write("b OK DEFLATE active\r\n"),
                Action::Compress {
                    unread: behind.to_vec()
                }
            ]
        );
        // Nothing of them is left to the session: what the host inflates comes next.
        assert_eq!(
            drive(&mut session, b"c NOOP\r\n", &mut |_| None),
            "c OK NOOP completed\r\n"
        );
    }

    #[test]
    fn compress_behind_a_command_waiting_for_the_host_runs_after_it() {
        let mut session = signed_in(ImapConfig::default());
        session.handle(Input::Bytes(
            b"b STATUS INBOX (MESSAGES)\r\nc COMPRESS DEFLATE\r\nd NOOP\r\n",
        ));
        let Some(Action::Request(id, Request::Status { .. })) = session.next_action() else {
            panic!("STATUS asks the host first");
        };
        assert_eq!(session.next_action(), None, "COMPRESS waits its turn");
        session.handle(Input::Reply(
            id,
            Reply::Status(Ok(FolderStatus {
                messages: 2,
                ..FolderStatus::default()
            })),
        ));
        assert_eq!(
            actions(&mut session),
            [
                write(
                    "* STATUS \"INBOX\" (MESSAGES 2)\r\nb OK STATUS completed\r\n\
                     c OK DEFLATE active\r\n"
                ),
                Action::Compress {
                    unread: b"d NOOP\r\n".to_vec()
                }
            ]
        );
    }

    #[test]
    fn compress_in_the_selected_state_announces_changes_before_its_ok() {
        let mut session = signed_in(ImapConfig::default());
        let folder = FolderId(7);
        let mut reply = |request: &Request| match request {
            Request::Select { .. } => Some(Reply::Selected(Ok(SelectedFolder {
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
            }))),
            _ => None,
        };
        drive(&mut session, b"b SELECT INBOX\r\n", &mut reply);
        session.handle(Input::Event(FolderEvent::Expunged {
            folder,
            uids: vec![1],
            modseq: 5,
        }));
        assert_eq!(
            drive(
                &mut session,
                b"c COMPRESS DEFLATE\r\nd NOOP\r\n",
                &mut reply
            ),
            "* 1 EXPUNGE\r\nc OK DEFLATE active\r\n[compress]d OK NOOP completed\r\n"
        );
    }
}
