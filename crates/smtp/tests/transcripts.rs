//! Transcript tests: every `tests/transcripts/*.txt` is an SMTP conversation played
//! against the session machine with an in-memory host, no sockets.
//!
//! Each file runs three times: every client write whole, byte by byte (the host answering
//! between bytes), and in pseudo-random pieces. All three must match the transcript,
//! because TCP may deliver a write in any pieces.
//!
//! # Format
//!
//! Header lines start with `# ` and a known key followed by `:`; any other `# ` line is a
//! comment (a first word ending in `:` that is no known key is an error, to catch typos).
//! Blank lines are ignored.
//!
//! ```text
//! # mode: submission              submission | inbound (default submission)
//! # tls: no                       implicit TLS at connect: yes | no (default no)
//! # starttls: yes                 a certificate is configured: yes | no (default yes)
//! # login: secure                 secure | plaintext (plaintext_auth_without_tls)
//! # hostname: mail.example.com    also max-size, max-recipients, max-errors,
//! #                               max-commands: N; vrfy, sender-match: yes | no
//! # user: NAME PASSWORD           an account
//! # auth: unavailable             every credential check fails temporarily
//! # local: ADDRESS...             local mailboxes (RecipientVerdict::Local)
//! # domain: DOMAIN...             local domains: other addresses there are UnknownUser;
//!                                 addresses elsewhere are Remote in submission and
//!                                 RelayDenied inbound
//! # temporary: ADDRESS...         recipient checks that fail temporarily
//! # delivery: ok                  ok | temporary | too-big | permanent TEXT; queue ids
//!                                 are Q1, Q2, ...
//! # expect delivered: <FROM> -> <RCPT>[,<RCPT>...] CONTENT [CHECK...]
//!                                 the next message delivered; CONTENT is
//!                                 file=PATH (exact bytes of a file under the tests
//!                                 folder), len=N, or text=ESCAPED (\r \n \t \\);
//!                                 CHECKs: auth=NAME|none tls=yes|no 8bit=yes|no
//!                                 utf8=yes|no helo=NAME
//! ```
//!
//! Without any `expect delivered` line, nothing may be delivered. Then the conversation:
//!
//! ```text
//! C: line                  a client line, CRLF appended; consecutive C: lines are one write
//! C: <stuffed PATH>        the file as DATA content: dot-stuffed, without the final "."
//! C: <bdat PATH>           "BDAT n" and the file's n bytes; <bdat-last PATH> with LAST
//! C: <bytes ESCAPED>       exact bytes, no CRLF appended
//! C: <filler N>            N bytes of content lines ("xxx…" CRLF)
//! C: <repeat N ESCAPED>    the text N times, no CRLF appended
//! C: <shutdown>            not a write: the host tells the session to shut down
//! S: line                  one server line, exactly; a final `*` matches any rest
//! S: <starttls>            the server asked for the handshake (answered TlsEstablished
//!                          once the whole write has been delivered)
//! S: <closed>              the server closed the session
//! ```
//!
//! A bare `S:` or `C:` is an empty line. Everything the server sends must be expected:
//! output left over at the end fails the transcript.

use std::collections::HashSet;
use std::path::Path;

use portico_smtp::{
    Action, AuthFailure, DeliveryFailure, Envelope, Input, Mode, RecipientVerdict, Session,
    SmtpConfig,
};
use portico_testkit::{
    Event, Expected, Line, Output, Split, Splitter, header_key, number, read_script,
    read_test_data, yes_no,
};

const TRANSCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transcripts");

#[test]
fn transcripts() {
    portico_testkit::run_transcripts(TRANSCRIPTS, 20, Script::load, Script::run);
}

// ----- the script -------------------------------------------------------------------

enum Step {
    /// One client write, and the transcript line it starts on.
    Write(usize, Vec<u8>),
    /// What the server must have sent next.
    Expect(usize, Expected),
    /// The host shuts the session down.
    Shutdown,
}

#[derive(Clone, Copy)]
enum DeliveryOutcome {
    Ok,
    Temporary,
    TooBig,
}

/// One `expect delivered` line.
struct ExpectedDelivery {
    line_no: usize,
    from: String,
    recipients: Vec<String>,
    content: Content,
    auth: Option<Option<String>>,
    tls: Option<bool>,
    body_8bit: Option<bool>,
    smtputf8: Option<bool>,
    helo: Option<String>,
}

enum Content {
    Exact(Vec<u8>, String),
    Length(usize),
}

struct Setup {
    tls: bool,
    config: SmtpConfig,
    accounts: Vec<(String, String)>,
    auth_unavailable: bool,
    local: HashSet<String>,
    domains: HashSet<String>,
    temporary: HashSet<String>,
    delivery: DeliveryOutcome,
    permanent_text: String,
    expected: Vec<ExpectedDelivery>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            tls: false,
            config: SmtpConfig {
                hostname: "mail.example.com".into(),
                ..SmtpConfig::default()
            },
            accounts: Vec::new(),
            auth_unavailable: false,
            local: HashSet::new(),
            domains: HashSet::new(),
            temporary: HashSet::new(),
            delivery: DeliveryOutcome::Ok,
            permanent_text: String::new(),
            expected: Vec::new(),
        }
    }
}

struct Script {
    setup: Setup,
    steps: Vec<Step>,
}

const KEYS: [&str; 19] = [
    "mode",
    "tls",
    "starttls",
    "login",
    "hostname",
    "max-size",
    "max-recipients",
    "max-errors",
    "max-commands",
    "vrfy",
    "sender-match",
    "from-match",
    "user",
    "auth",
    "local",
    "domain",
    "temporary",
    "delivery",
    "expect delivered",
];

impl Script {
    fn load(path: &Path) -> Result<Script, String> {
        let mut setup = Setup::default();
        let mut steps: Vec<Step> = Vec::new();
        read_script(path, |line_no, line| {
            match line {
                Line::Header(header) => setup.directive(header, line_no)?,
                Line::Client("<shutdown>") => steps.push(Step::Shutdown),
                Line::Client(client) => {
                    let bytes = client_bytes(client)?;
                    match steps.last_mut() {
                        Some(Step::Write(_, write)) => write.extend_from_slice(&bytes),
                        _ => steps.push(Step::Write(line_no, bytes)),
                    }
                }
                Line::Server(server) => steps.push(Step::Expect(line_no, Expected::parse(server))),
            }
            Ok(())
        })?;
        Ok(Script { setup, steps })
    }

    fn run(&self, split: Split) -> Result<(), String> {
        let mut session = Session::new(self.setup.config.clone(), self.setup.tls);
        let mut host = Host {
            setup: &self.setup,
            tls_owed: false,
            delivered: Vec::new(),
            spool: Vec::new(),
        };
        let mut out = Output::default();
        let mut splitter = Splitter::new(split);
        host.settle(&mut session, &mut out, true)?;
        for step in &self.steps {
            match step {
                Step::Write(line_no, bytes) => splitter
                    .feed(bytes, |piece| {
                        session.handle(Input::Bytes(piece));
                        host.settle(&mut session, &mut out, false)
                    })
                    .and_then(|()| host.settle(&mut session, &mut out, true))
                    .map_err(|e| format!("line {line_no}: {e}"))?,
                Step::Shutdown => {
                    session.handle(Input::Shutdown);
                    host.settle(&mut session, &mut out, true)?;
                }
                Step::Expect(line_no, expected) => out.expect(*line_no, expected)?,
            }
        }
        out.finish()?;
        self.check_deliveries(&host.delivered)
    }

    fn check_deliveries(&self, delivered: &[Envelope]) -> Result<(), String> {
        if delivered.len() != self.setup.expected.len() {
            return Err(format!(
                "{} messages delivered, {} expected: {delivered:?}",
                delivered.len(),
                self.setup.expected.len()
            ));
        }
        for (got, want) in delivered.iter().zip(&self.setup.expected) {
            let at = |e: String| format!("expect delivered on line {}: {e}", want.line_no);
            if got.mail_from != want.from {
                return Err(at(format!(
                    "sender {:?}, expected {:?}",
                    got.mail_from, want.from
                )));
            }
            if got.recipients != want.recipients {
                return Err(at(format!(
                    "recipients {:?}, expected {:?}",
                    got.recipients, want.recipients
                )));
            }
            match &want.content {
                Content::Length(len) if got.message.len() != *len => {
                    return Err(at(format!("{} bytes, expected {len}", got.message.len())));
                }
                Content::Exact(bytes, what) if &got.message != bytes => {
                    return Err(at(format!(
                        "content differs from {what}: got {:?}",
                        String::from_utf8_lossy(&got.message)
                    )));
                }
                _ => {}
            }
            if let Some(auth) = &want.auth
                && &got.authenticated_as != auth
            {
                return Err(at(format!("authenticated_as {:?}", got.authenticated_as)));
            }
            for (name, want, got) in [
                ("tls", want.tls, got.tls),
                ("8bit", want.body_8bit, got.body_8bit),
                ("utf8", want.smtputf8, got.smtputf8),
            ] {
                if want.is_some_and(|want| want != got) {
                    return Err(at(format!("{name} is {got}")));
                }
            }
            if let Some(helo) = &want.helo
                && &got.helo != helo
            {
                return Err(at(format!("helo {:?}", got.helo)));
            }
        }
        Ok(())
    }
}

impl Setup {
    fn directive(&mut self, header: &str, line_no: usize) -> Result<(), String> {
        let Some((key, value)) = header_key(header, &KEYS)? else {
            return Ok(()); // a comment
        };
        let words = || value.split_whitespace().map(str::to_ascii_lowercase);
        match key {
            "mode" => {
                self.config.mode = match value {
                    "submission" => Mode::Submission,
                    "inbound" => Mode::Inbound,
                    other => return Err(format!("mode: {other:?}")),
                }
            }
            "tls" => self.tls = yes_no(value)?,
            "starttls" => self.config.tls_available = yes_no(value)?,
            "login" => {
                self.config.plaintext_auth_without_tls = match value {
                    "plaintext" => true,
                    "secure" => false,
                    other => return Err(format!("login: {other:?}")),
                }
            }
            "hostname" => self.config.hostname = value.to_string(),
            "max-size" => self.config.max_message_size = number(value)?,
            "max-recipients" => self.config.max_recipients = number(value)?,
            "max-errors" => self.config.max_errors = number(value)?,
            "max-commands" => self.config.max_commands = number(value)?,
            "vrfy" => self.config.vrfy_enabled = yes_no(value)?,
            "sender-match" => self.config.sender_must_match_login = yes_no(value)?,
            "from-match" => self.config.from_must_match_login = yes_no(value)?,
            "user" => {
                let (name, password) = value
                    .split_once(' ')
                    .ok_or("user: NAME PASSWORD expected")?;
                self.accounts.push((name.to_string(), password.to_string()));
            }
            "auth" if value == "unavailable" => self.auth_unavailable = true,
            "local" => self.local.extend(words()),
            "domain" => self.domains.extend(words()),
            "temporary" => self.temporary.extend(words()),
            "delivery" => {
                let (kind, text) = value.split_once(' ').unwrap_or((value, ""));
                self.delivery = match kind {
                    "ok" => DeliveryOutcome::Ok,
                    "temporary" => DeliveryOutcome::Temporary,
                    "too-big" => DeliveryOutcome::TooBig,
                    "permanent" => {
                        self.permanent_text = text.to_string();
                        return Ok(());
                    }
                    other => return Err(format!("delivery: {other:?}")),
                }
            }
            "expect delivered" => self.expected.push(expected_delivery(value, line_no)?),
            _ => return Err(format!("{key}: unknown value {value:?}")),
        }
        Ok(())
    }
}

/// `<FROM> -> <RCPT>,<RCPT> CONTENT [CHECK...]`
fn expected_delivery(value: &str, line_no: usize) -> Result<ExpectedDelivery, String> {
    let mut words = value.split_whitespace();
    let path = |word: Option<&str>| {
        word.and_then(|w| w.strip_prefix('<'))
            .and_then(|w| w.strip_suffix('>'))
            .map(str::to_string)
            .ok_or_else(|| format!("expect delivered: <path> expected in {value:?}"))
    };
    let from = path(words.next())?;
    if words.next() != Some("->") {
        return Err("expect delivered: `->` expected".into());
    }
    let recipients = words
        .next()
        .ok_or("expect delivered: recipients expected")?
        .split(',')
        .map(|rcpt| path(Some(rcpt)))
        .collect::<Result<Vec<_>, _>>()?;
    let content = match words.next().and_then(|w| w.split_once('=')) {
        Some(("file", file)) => Content::Exact(read_test_data(file)?, file.to_string()),
        Some(("len", len)) => Content::Length(number(len)?),
        Some(("text", text)) => Content::Exact(unescape(text), format!("text={text}")),
        _ => return Err("expect delivered: file=, len= or text= expected".into()),
    };
    let mut expected = ExpectedDelivery {
        line_no,
        from,
        recipients,
        content,
        auth: None,
        tls: None,
        body_8bit: None,
        smtputf8: None,
        helo: None,
    };
    for check in words {
        match check.split_once('=') {
            Some(("auth", "none")) => expected.auth = Some(None),
            Some(("auth", name)) => expected.auth = Some(Some(name.to_string())),
            Some(("tls", v)) => expected.tls = Some(yes_no(v)?),
            Some(("8bit", v)) => expected.body_8bit = Some(yes_no(v)?),
            Some(("utf8", v)) => expected.smtputf8 = Some(yes_no(v)?),
            Some(("helo", v)) => expected.helo = Some(v.to_string()),
            _ => return Err(format!("expect delivered: unknown check {check:?}")),
        }
    }
    Ok(expected)
}

fn client_bytes(client: &str) -> Result<Vec<u8>, String> {
    let Some(marker) = client.strip_prefix('<').and_then(|s| s.strip_suffix('>')) else {
        let mut bytes = client.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        return Ok(bytes);
    };
    let (kind, arg) = marker.split_once(' ').unwrap_or((marker, ""));
    match kind {
        "stuffed" => Ok(dot_stuff(&read_test_data(arg)?)),
        "bdat" | "bdat-last" => {
            let content = read_test_data(arg)?;
            let last = if kind == "bdat-last" { " LAST" } else { "" };
            let mut bytes = format!("BDAT {}{last}\r\n", content.len()).into_bytes();
            bytes.extend_from_slice(&content);
            Ok(bytes)
        }
        "bytes" => Ok(unescape(arg)),
        "filler" => Ok(filler(number(arg)?)),
        "repeat" => {
            let (count, text) = arg.split_once(' ').ok_or("<repeat N TEXT> expected")?;
            Ok(unescape(text).repeat(number(count)?))
        }
        _ => Err(format!("unknown marker <{marker}>")),
    }
}

/// RFC 5321 §4.5.2, done by the test independently of the crate: a "." at the start of
/// a line (after CRLF, or at the very start) gets another in front. The content must end
/// with CRLF so that the terminator can follow.
fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 16);
    for (i, &byte) in content.iter().enumerate() {
        let line_start = i == 0 || (i >= 2 && &content[i - 2..i] == b"\r\n");
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
    }
    out
}

/// `n` bytes of 78-character lines of `x` with CRLF; the last line is shorter.
fn filler(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let room = n - out.len();
        if room <= 2 {
            out.extend(std::iter::repeat_n(b'x', room));
        } else {
            let line = (room - 2).min(78);
            out.extend(std::iter::repeat_n(b'x', line));
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('s') => out.push(b' '),
            Some(other) => out.push(other as u8),
            None => out.push(b'\\'),
        }
    }
    out
}

// ----- running ----------------------------------------------------------------------

/// The host as the transcript's header describes it.
struct Host<'a> {
    setup: &'a Setup,
    /// StartTls was asked for and not yet answered.
    tls_owed: bool,
    delivered: Vec<Envelope>,
    /// Content the session spooled for the message under way.
    spool: Vec<u8>,
}

impl Host<'_> {
    /// Carries out every action and answers it, until the session wants nothing more.
    /// The handshake completes only when `tls_now`: bytes the client pipelined behind
    /// STARTTLS reach the server before TLS is up.
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
                    Action::CheckRecipient { address, .. } => {
                        replies.push(Input::RecipientChecked(self.verdict(&address)))
                    }
                    // The transcripts run without `check_sender`.
                    Action::CheckSender { .. } => {
                        return Err("a sender check nobody configured".into());
                    }
                    Action::Spool { first, bytes } => {
                        if first {
                            self.spool.clear();
                        }
                        self.spool.extend(bytes);
                    }
                    Action::Deliver(mut envelope) => {
                        let spooled = std::mem::take(&mut self.spool);
                        if envelope.spooled > 0 {
                            if envelope.spooled != spooled.len() {
                                return Err("spooled content and count differ".into());
                            }
                            envelope.message = [spooled, envelope.message].concat();
                        }
                        if envelope.authenticated_as.as_deref() != session.authenticated_user() {
                            return Err("envelope and session disagree on the login".into());
                        }
                        self.delivered.push(envelope);
                        replies.push(Input::Delivered(match self.setup.delivery {
                            _ if !self.setup.permanent_text.is_empty() => Err(
                                DeliveryFailure::Permanent(self.setup.permanent_text.clone()),
                            ),
                            DeliveryOutcome::Ok => Ok(format!("Q{}", self.delivered.len())),
                            DeliveryOutcome::Temporary => Err(DeliveryFailure::Temporary),
                            DeliveryOutcome::TooBig => Err(DeliveryFailure::TooBig),
                        }));
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
            .any(|(name, secret)| name == username && secret == password);
        if known {
            Ok(())
        } else {
            Err(AuthFailure::BadCredentials)
        }
    }

    /// What the server crate decides, from the header's lists.
    fn verdict(&self, address: &str) -> RecipientVerdict {
        let address = address.to_ascii_lowercase();
        if self.setup.temporary.contains(&address) {
            return RecipientVerdict::Temporary;
        }
        if self.setup.local.contains(&address) {
            return RecipientVerdict::Local;
        }
        let Some((_, domain)) = address.rsplit_once('@') else {
            return RecipientVerdict::UnknownUser;
        };
        if self.setup.domains.contains(domain) {
            RecipientVerdict::UnknownUser
        } else if self.setup.config.mode == Mode::Submission {
            RecipientVerdict::Remote
        } else {
            RecipientVerdict::RelayDenied
        }
    }
}
