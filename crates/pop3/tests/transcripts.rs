//! Transcript tests: every `tests/transcripts/*.txt` is a POP3 conversation played against
//! the session machine with an in-memory backend, no sockets.
//!
//! Each file runs three times: every client write whole, byte by byte (the backend
//! answering between bytes), and in pseudo-random pieces. All three must match the
//! transcript, because TCP may deliver a write in any pieces.
//!
//! # Format
//!
//! Header lines start with `# ` and a known key followed by `:`; any other `# ` line is
//! a comment (a first word ending in `:` that is no known key is an error, to catch
//! typos). Blank lines are ignored.
//!
//! ```text
//! # tls: no                       implicit TLS at connect: yes | no (default no)
//! # stls: yes                     a certificate is configured: yes | no (default yes)
//! # login: secure                 secure | plaintext (plaintext_login_without_tls)
//! # implementation: Portico       also max-line-len: N, max-bad-commands: N
//! # user: NAME PASSWORD           an account; the password is the rest of the line
//! # disabled: NAME                right password, but POP3 is off for NAME
//! # auth: unavailable             every credential check fails temporarily
//! # maildrop: in-use              in-use | unavailable (default: opens)
//! # message: [uid=N] [uidl=X] corpus/FILE
//!                                 next message of the maildrop; the path is relative to
//!                                 the tests folder; uid defaults to the message number,
//!                                 uidl to the file's stem
//! # fetch-fails: UID...           FetchMessage of these uids fails
//! # commit: fails                 CommitDeletes fails
//! # expect deleted: UID...        the uids CommitDeletes must name (default: no commit)
//! ```
//!
//! Then the conversation:
//!
//! ```text
//! C: line                  a client line, CRLF appended; consecutive C: lines are one write
//! S: line                  one server line, exactly (without its CRLF)
//! S: <message corpus/F>    F's lines as RETR sends them: CRLF, dot-stuffed, no final "."
//! S: <top N corpus/F>      the same for TOP F N
//! S: <starttls>            the server asked for the handshake (answered TlsEstablished
//!                          once the whole write has been delivered)
//! S: <closed>              the server closed the session
//! ```
//!
//! A bare `S:` or `C:` is an empty line. Everything the server sends must be expected:
//! output left over at the end fails the transcript. The backend, like the real store,
//! hands out messages with bare LFs turned into CRLF, and sizes count those bytes.

use std::collections::HashSet;
use std::path::Path;

use portico_pop3::{Action, AuthFailure, Input, MaildropEntry, MaildropError, Pop3Config, Session};
use portico_testkit::{
    Event, Expected, Line, Output, Split, Splitter, crlf, header_key, number, read_script,
    read_test_data, yes_no,
};

const TRANSCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transcripts");

#[test]
fn transcripts() {
    portico_testkit::run_transcripts(TRANSCRIPTS, 15, Script::load, Script::run);
}

// ----- the script -------------------------------------------------------------------

enum Step {
    /// One client write, and the transcript line it starts on.
    Write(usize, Vec<u8>),
    /// What the server must have sent next.
    Expect(usize, Vec<Expected>),
}

struct Message {
    uid: u32,
    uidl: String,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Setup {
    tls: bool,
    config: Pop3Config,
    accounts: Vec<(String, String)>,
    disabled: HashSet<String>,
    auth_unavailable: bool,
    maildrop_error: Option<MaildropError>,
    messages: Vec<Message>,
    fetch_fails: HashSet<u32>,
    commit_fails: bool,
    expect_deleted: Option<Vec<u32>>,
}

struct Script {
    setup: Setup,
    steps: Vec<Step>,
}

const KEYS: [&str; 14] = [
    "tls",
    "stls",
    "login",
    "implementation",
    "max-line-len",
    "max-bad-commands",
    "user",
    "disabled",
    "auth",
    "maildrop",
    "message",
    "fetch-fails",
    "commit",
    "expect deleted",
];

impl Script {
    fn load(path: &Path) -> Result<Script, String> {
        let mut setup = Setup::default();
        let mut steps: Vec<Step> = Vec::new();
        read_script(path, |line_no, line| {
            match line {
                Line::Header(header) => setup.directive(header)?,
                Line::Client(client) => {
                    let mut bytes = client.as_bytes().to_vec();
                    bytes.extend_from_slice(b"\r\n");
                    match steps.last_mut() {
                        Some(Step::Write(_, write)) => write.extend_from_slice(&bytes),
                        _ => steps.push(Step::Write(line_no, bytes)),
                    }
                }
                Line::Server(server) => steps.push(Step::Expect(line_no, expand(server)?)),
            }
            Ok(())
        })?;
        Ok(Script { setup, steps })
    }

    fn run(&self, split: Split) -> Result<(), String> {
        let mut session = Session::new(self.setup.config.clone(), self.setup.tls);
        let mut backend = Backend {
            setup: &self.setup,
            tls_owed: false,
            committed: None,
        };
        let mut out = Output::default();
        let mut splitter = Splitter::new(split);
        backend.settle(&mut session, &mut out, true)?;
        for step in &self.steps {
            match step {
                Step::Write(line_no, bytes) => splitter
                    .feed(bytes, |piece| {
                        session.handle(Input::Bytes(piece));
                        backend.settle(&mut session, &mut out, false)
                    })
                    .and_then(|()| backend.settle(&mut session, &mut out, true))
                    .map_err(|e| format!("line {line_no}: {e}"))?,
                Step::Expect(line_no, events) => {
                    for expected in events {
                        out.expect(*line_no, expected)?;
                    }
                }
            }
        }
        out.finish()?;
        // QUIT always passes through UPDATE; committing nothing is what "no expect
        // deleted line" means.
        let committed = backend.committed.clone().filter(|uids| !uids.is_empty());
        if committed != self.setup.expect_deleted {
            return Err(format!(
                "CommitDeletes: expected {:?}, got {:?}",
                self.setup.expect_deleted, backend.committed
            ));
        }
        Ok(())
    }
}

impl Setup {
    fn directive(&mut self, header: &str) -> Result<(), String> {
        let Some((key, value)) = header_key(header, &KEYS)? else {
            return Ok(()); // a comment
        };
        match key {
            "tls" => self.tls = yes_no(value)?,
            "stls" => self.config.tls_available = yes_no(value)?,
            "login" => {
                self.config.plaintext_login_without_tls = match value {
                    "plaintext" => true,
                    "secure" => false,
                    other => return Err(format!("login: {other:?}")),
                }
            }
            "implementation" => self.config.implementation = value.to_string(),
            "max-line-len" => self.config.max_line_len = number(value)?,
            "max-bad-commands" => self.config.max_bad_commands = number(value)?,
            "user" => {
                let (name, password) = value
                    .split_once(' ')
                    .ok_or("user: NAME PASSWORD expected")?;
                self.accounts.push((name.to_string(), password.to_string()));
            }
            "disabled" => {
                self.disabled.insert(value.to_string());
            }
            "auth" if value == "unavailable" => self.auth_unavailable = true,
            "maildrop" => {
                self.maildrop_error = Some(match value {
                    "in-use" => MaildropError::InUse,
                    "unavailable" => MaildropError::Unavailable,
                    other => return Err(format!("maildrop: {other:?}")),
                })
            }
            "message" => {
                let mut uid = self.messages.len() as u32 + 1;
                let mut uidl = None;
                let mut file = None;
                for word in value.split_whitespace() {
                    if let Some(n) = word.strip_prefix("uid=") {
                        uid = number(n)?;
                    } else if let Some(u) = word.strip_prefix("uidl=") {
                        uidl = Some(u.to_string());
                    } else {
                        file = Some(word);
                    }
                }
                let file = file.ok_or("message: file expected")?;
                let uidl = uidl.unwrap_or_else(|| {
                    Path::new(file)
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
                self.messages.push(Message {
                    uid,
                    uidl,
                    bytes: load_message(file)?,
                });
            }
            "fetch-fails" => {
                for word in value.split_whitespace() {
                    self.fetch_fails.insert(number(word)?);
                }
            }
            "commit" if value == "fails" => self.commit_fails = true,
            "expect deleted" => {
                self.expect_deleted = Some(
                    value
                        .split_whitespace()
                        .map(number)
                        .collect::<Result<_, _>>()?,
                )
            }
            _ => return Err(format!("{key}: unknown value {value:?}")),
        }
        Ok(())
    }
}

/// What an `S:` line expects: its line exactly (no `*` wildcard here), or a marker's events.
fn expand(server: &str) -> Result<Vec<Expected>, String> {
    let Some(marker) = server.strip_prefix('<').and_then(|s| s.strip_suffix('>')) else {
        return Ok(vec![Expected::Exactly(Event::Line(
            server.as_bytes().to_vec(),
        ))]);
    };
    let words: Vec<&str> = marker.split_whitespace().collect();
    match words.as_slice() {
        ["starttls"] => Ok(vec![Expected::Exactly(Event::StartTls)]),
        ["closed"] => Ok(vec![Expected::Exactly(Event::Closed)]),
        ["message", file] => Ok(stuffed_lines(&load_message(file)?, None)),
        ["top", n, file] => Ok(stuffed_lines(&load_message(file)?, Some(number(n)?))),
        _ => Err(format!("unknown marker <{marker}>")),
    }
}

/// Expected RETR/TOP lines, computed line by line independently of the crate's code.
fn stuffed_lines(message: &[u8], top: Option<usize>) -> Vec<Expected> {
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut rest = message;
    while let Some(at) = rest.windows(2).position(|w| w == b"\r\n") {
        lines.push(&rest[..at]);
        rest = &rest[at + 2..];
    }
    if !rest.is_empty() {
        lines.push(rest);
    }
    if let Some(n) = top {
        let header_end = lines
            .iter()
            .position(|line| line.is_empty())
            .map_or(lines.len(), |i| i + 1);
        lines.truncate(header_end.saturating_add(n).min(lines.len()));
    }
    lines
        .into_iter()
        .map(|line| {
            let mut out = Vec::new();
            if line.starts_with(b".") {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            Expected::Exactly(Event::Line(out))
        })
        .collect()
}

/// A corpus file as the store would hand it out: bare LFs become CRLF.
fn load_message(file: &str) -> Result<Vec<u8>, String> {
    Ok(crlf(&read_test_data(file)?))
}

// ----- running ----------------------------------------------------------------------

/// The caller and store as the transcript's header describes them.
struct Backend<'a> {
    setup: &'a Setup,
    /// StartTls was asked for and not yet answered.
    tls_owed: bool,
    committed: Option<Vec<u32>>,
}

impl Backend<'_> {
    /// Carries out every action and answers it, until the session wants nothing more.
    /// The handshake completes only when `tls_now`: bytes the client pipelined behind
    /// STLS reach the server before TLS is up.
    fn settle(
        &mut self,
        session: &mut Session,
        out: &mut Output,
        tls_now: bool,
    ) -> Result<(), String> {
        loop {
            let mut replies = Vec::new();
            while let Some(action) = session.next_action() {
                match action {
                    Action::Write(bytes) => out.write(&bytes),
                    Action::StartTls => {
                        out.marker(Event::StartTls)?;
                        self.tls_owed = true;
                    }
                    Action::Close => out.marker(Event::Closed)?,
                    Action::Authenticate { username, password } => {
                        replies.push(Input::AuthResult(self.check(&username, password.expose())))
                    }
                    Action::OpenMaildrop => {
                        if session.username().is_none() {
                            return Err("OpenMaildrop without an authenticated user".into());
                        }
                        replies.push(Input::MaildropOpened(match self.setup.maildrop_error {
                            Some(error) => Err(error),
                            None => Ok(self.entries()),
                        }))
                    }
                    Action::FetchMessage {
                        uid,
                        in_pieces,
                        top_lines,
                    } => {
                        let message = self.setup.messages.iter().find(|m| m.uid == uid);
                        let fetched = match message {
                            Some(m) if !self.setup.fetch_fails.contains(&uid) => {
                                Ok(top_prefix(&m.bytes, top_lines))
                            }
                            _ => Err(MaildropError::Unavailable),
                        };
                        match fetched {
                            // In pieces of 5 bytes, so that stuffing meets every boundary.
                            Ok(bytes) if in_pieces => {
                                let pieces: Vec<&[u8]> = bytes.chunks(5).collect();
                                let last = pieces.len().saturating_sub(1);
                                if pieces.is_empty() {
                                    replies.push(Input::MessagePiece {
                                        piece: Ok(Vec::new()),
                                        more: false,
                                    });
                                }
                                for (i, piece) in pieces.into_iter().enumerate() {
                                    replies.push(Input::MessagePiece {
                                        piece: Ok(piece.to_vec()),
                                        more: i < last,
                                    });
                                }
                            }
                            Err(e) if in_pieces => replies.push(Input::MessagePiece {
                                piece: Err(e),
                                more: false,
                            }),
                            fetched => replies.push(Input::MessageFetched(fetched)),
                        }
                    }
                    Action::CommitDeletes { uids } => {
                        if self.committed.is_some() {
                            return Err("CommitDeletes issued twice".into());
                        }
                        self.committed = Some(uids);
                        replies.push(Input::DeletesCommitted(if self.setup.commit_fails {
                            Err(MaildropError::Unavailable)
                        } else {
                            Ok(())
                        }))
                    }
                }
            }
            if tls_now && self.tls_owed {
                self.tls_owed = false;
                replies.push(Input::TlsEstablished);
            }
            if replies.is_empty() {
                return Ok(());
            }
            for reply in replies {
                session.handle(reply);
            }
        }
    }

    fn check(&self, username: &str, password: &str) -> Result<(), AuthFailure> {
        if self.setup.auth_unavailable {
            return Err(AuthFailure::Temporary);
        }
        let known = self
            .setup
            .accounts
            .iter()
            .any(|(name, pw)| name == username && pw == password);
        match (known, self.setup.disabled.contains(username)) {
            (false, _) => Err(AuthFailure::BadCredentials),
            (true, true) => Err(AuthFailure::Disabled),
            (true, false) => Ok(()),
        }
    }

    fn entries(&self) -> Vec<MaildropEntry> {
        self.setup
            .messages
            .iter()
            .map(|m| MaildropEntry {
                uid: m.uid,
                size: m.bytes.len() as u64,
                unique_id: m.uidl.clone(),
            })
            .collect()
    }
}

/// What the server gives TOP: the message read 5 bytes at a time until the prefix holds
/// what TOP sends (the whole message for RETR).
fn top_prefix(bytes: &[u8], top_lines: Option<usize>) -> Vec<u8> {
    let Some(lines) = top_lines else {
        return bytes.to_vec();
    };
    let mut end = 0;
    while end < bytes.len() {
        end = (end + 5).min(bytes.len());
        if portico_pop3::top_is_within(&bytes[..end], lines) {
            break;
        }
    }
    bytes[..end].to_vec()
}
