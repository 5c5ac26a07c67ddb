//! The command line: one subcommand per scenario, connection, account, run and report
//! options shared by all (accepted before or after the scenario name).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::conn::TlsMode;
use crate::message::DEFAULT_CORPUS;

#[derive(Parser, Debug)]
#[command(
    name = "portico-load",
    version,
    about = "Load generator: concurrent simulated IMAP, POP3, SMTP and LMTP clients against a mail server",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    subcommand_value_name = "SCENARIO",
    subcommand_help_heading = "Scenarios"
)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
    #[command(flatten)]
    pub common: Common,
}

const LONG_ABOUT: &str = "\
Load generator: N concurrent simulated mail clients (one task each) against any IMAP, \
POP3, SMTP or LMTP server (Portico, Dovecot, ...), for --duration or --ops, whichever \
ends first. It reports, per command, the count, rate and latency percentiles, and the \
errors by kind. Only loopback targets unless --allow-remote.

The accounts must exist, and for pop3-drain, imap-sync and imap-mix their mailboxes \
should hold mail beforehand (the tool only reads them; fill them with smtp-inbound, \
lmtp or the server's own delivery command).";

const AFTER_HELP: &str = "\
Examples (Portico's default listeners on loopback):
  portico-load imap-sync --port 1143 --clients 20 --accounts 20 --password secret --duration 30s
  portico-load imap-idle --port 1993 --tls implicit --sessions 2000 --pid $(pidof portico) --password secret
  portico-load smtp-inbound --port 1025 --clients 8 --ops 5000 --to 'user%d@example.com' --recipients 100
  portico-load login-storm --protocol pop3 --port 1110 --clients 50 --password secret --json storm.json

Exit status: 0 when no error occurred (or --tolerate-errors), 1 when one did, 2 when the \
run could not start.";

/// What the simulated clients do.
#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// LOGIN, SELECT INBOX, IDLE, and hold until the end (memory per idle session
    /// with --pid).
    ImapIdle(IdleArgs),
    /// A mail client's sync, again and again: LOGIN, LIST, SELECT INBOX, UID FETCH of
    /// every message's flags and headers, a few bodies, UID STORE \Seen on some, APPEND
    /// to Sent, LOGOUT.
    ImapSync(SyncArgs),
    /// One LOGIN per client, then a weighted random mix of commands like a busy office
    /// (NOOP, SELECT/EXAMINE, FETCH, SEARCH, STORE, APPEND, short IDLEs, STATUS).
    ImapMix(MixArgs),
    /// USER/PASS, UIDL, RETR every message, DELE every message, QUIT; again and again.
    /// Each client needs its own account (--accounts at least --clients); the
    /// mailboxes must be filled beforehand.
    Pop3Drain(DrainArgs),
    /// AUTH PLAIN on the submission port, then messages from the corpus (From/To
    /// rewritten) to the recipients, --per-connection on each connection.
    SmtpSubmit(SendArgs),
    /// Inbound SMTP (port 25 style, no AUTH) from --mail-from to local recipients.
    SmtpInbound(InboundArgs),
    /// LMTP (RFC 2033): LHLO, then messages like smtp-inbound, one reply per recipient.
    Lmtp(InboundArgs),
    /// Connect, log in, log out, as fast as possible.
    LoginStorm(StormArgs),
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::ImapIdle(_) => "imap-idle",
            Scenario::ImapSync(_) => "imap-sync",
            Scenario::ImapMix(_) => "imap-mix",
            Scenario::Pop3Drain(_) => "pop3-drain",
            Scenario::SmtpSubmit(_) => "smtp-submit",
            Scenario::SmtpInbound(_) => "smtp-inbound",
            Scenario::Lmtp(_) => "lmtp",
            Scenario::LoginStorm(_) => "login-storm",
        }
    }

    /// The protocol spoken, which decides the default port.
    pub fn protocol(&self) -> Protocol {
        match self {
            Scenario::ImapIdle(_) | Scenario::ImapSync(_) | Scenario::ImapMix(_) => Protocol::Imap,
            Scenario::Pop3Drain(_) => Protocol::Pop3,
            Scenario::SmtpSubmit(_) => Protocol::Smtp,
            Scenario::SmtpInbound(_) => Protocol::SmtpInbound,
            Scenario::Lmtp(_) => Protocol::Lmtp,
            Scenario::LoginStorm(args) => match args.protocol {
                StormProtocol::Imap => Protocol::Imap,
                StormProtocol::Pop3 => Protocol::Pop3,
                StormProtocol::Smtp => Protocol::Smtp,
            },
        }
    }

    /// Whether the clients log in (and so need passwords).
    pub fn logs_in(&self) -> bool {
        !matches!(self, Scenario::SmtpInbound(_) | Scenario::Lmtp(_))
    }
}

/// Protocols and their well-known ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
    /// Submission.
    Smtp,
    SmtpInbound,
    Lmtp,
}

impl Protocol {
    /// The standard port for this protocol and TLS mode.
    pub fn default_port(self, tls: TlsMode) -> u16 {
        let implicit = tls == TlsMode::Implicit;
        match self {
            Protocol::Imap if implicit => 993,
            Protocol::Imap => 143,
            Protocol::Pop3 if implicit => 995,
            Protocol::Pop3 => 110,
            Protocol::Smtp if implicit => 465,
            Protocol::Smtp => 587,
            Protocol::SmtpInbound if implicit => 465,
            Protocol::SmtpInbound => 25,
            Protocol::Lmtp => 24,
        }
    }

    /// STARTTLS where logins happen, plain text for server-to-server delivery.
    pub fn default_tls(self) -> TlsMode {
        match self {
            Protocol::Imap | Protocol::Pop3 | Protocol::Smtp => TlsMode::Starttls,
            Protocol::SmtpInbound | Protocol::Lmtp => TlsMode::None,
        }
    }
}

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Server host name or address.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port [default: the protocol's standard port for the TLS mode: IMAP
    /// 143/993, POP3 110/995, submission 587/465, inbound SMTP 25, LMTP 24].
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// none, starttls (STARTTLS/STLS before logging in) or implicit [default:
    /// starttls; none for smtp-inbound and lmtp].
    #[arg(long, global = true, value_enum)]
    pub tls: Option<TlsMode>,
    /// Accept only a server certificate chaining to these PEM roots (default: accept
    /// any certificate, still checking the handshake signature).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Name sent in TLS SNI and checked against the certificate with --ca [default:
    /// --host].
    #[arg(long, global = true, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Allow a target (and --source) that is not a loopback address.
    #[arg(long, global = true)]
    pub allow_remote: bool,
    /// Local address(es) to connect from, client i from the ((i-1) mod n)+1-th
    /// (comma-separated or repeated), e.g. 127.0.0.2,127.0.0.3 to stay under a
    /// server's per-address connection limit.
    #[arg(long, global = true, value_delimiter = ',', value_name = "ADDR")]
    pub source: Vec<IpAddr>,
    /// Concurrent simulated clients.
    #[arg(long, global = true, default_value_t = 10)]
    pub clients: usize,
    /// How long to run (e.g. 30s, 500ms, 2m).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many operations (measured exchanges) in all, if earlier than
    /// --duration.
    #[arg(long, global = true)]
    pub ops: Option<u64>,
    /// Start the clients evenly over this time instead of all at once.
    #[arg(long, global = true, default_value = "0s", value_parser = parse_duration)]
    pub ramp_up: Duration,
    /// Longest wait for any single answer, connection or TLS handshake.
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Pause of a client after an error that ended its connection, before it
    /// reconnects.
    #[arg(long, global = true, default_value = "500ms", value_parser = parse_duration)]
    pub error_pause: Duration,
    /// Account address pattern: %d is replaced by 1..=--accounts.
    #[arg(long, global = true, default_value = "user%d@example.com")]
    pub user: String,
    /// Number of accounts; client i uses account ((i-1) mod N)+1 [default: --clients].
    #[arg(long, global = true)]
    pub accounts: Option<usize>,
    /// The accounts' password.
    #[arg(
        long,
        global = true,
        env = "PORTICO_LOAD_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// File of accounts, one `address password` a line (# comments), instead of
    /// --user/--accounts/--password.
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "accounts")]
    pub accounts_file: Option<PathBuf>,
    /// Folder of *.eml messages to APPEND and send.
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_CORPUS)]
    pub corpus: PathBuf,
    /// Also write the results as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No progress bar (it is also hidden when standard output is not a terminal).
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Exit with status 0 even if errors occurred.
    #[arg(long, global = true)]
    pub tolerate_errors: bool,
    /// Seed of the random choices (default: from the clock).
    #[arg(long, global = true)]
    pub seed: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    /// Idle sessions to open (the same as --clients).
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Server process whose resident memory (VmRSS) is read before the sessions open
    /// and once they all idle, to report memory per session.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Wait after the last session went idle before reading the memory.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    /// Message bodies fetched (BODY.PEEK[]) per sync, at random.
    #[arg(long, default_value_t = 3)]
    pub bodies: usize,
    /// Messages marked \Seen (one UID STORE) per sync, at random.
    #[arg(long, default_value_t = 2)]
    pub mark_seen: usize,
    /// Folder each sync APPENDs a message to (it must exist).
    #[arg(long, default_value = "Sent")]
    pub append_to: String,
}

#[derive(Args, Debug, Clone)]
pub struct MixArgs {
    /// Folder APPENDs go to (it must exist).
    #[arg(long, default_value = "Sent")]
    pub append_to: String,
    /// Longest of the short IDLEs (each lasts 100 ms up to this, at random).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub max_idle: Duration,
    /// Pause between two commands of a client (0: none, full speed).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub think: Duration,
    /// Weight of IDLE in the mix (of 80 with the default 3; 0: no IDLE).
    #[arg(long, default_value_t = 3)]
    pub idle_weight: usize,
}

#[derive(Args, Debug, Clone)]
pub struct DrainArgs {
    /// RETR without DELE, so every session downloads everything again.
    #[arg(long)]
    pub keep: bool,
}

/// Who messages go to and how many per connection.
#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    /// Recipient pattern (%d replaced by 1..=--recipients) [default: the accounts].
    #[arg(long, value_name = "PATTERN")]
    pub to: Option<String>,
    /// Highest %d of --to [default: the number of accounts].
    #[arg(long)]
    pub recipients: Option<usize>,
    /// Recipients per message (distinct, at random).
    #[arg(long, default_value_t = 1)]
    pub rcpts: usize,
    /// Messages sent on each connection before QUIT.
    #[arg(long, default_value_t = 10)]
    pub per_connection: usize,
    /// Name the client gives in EHLO/LHLO.
    #[arg(long, default_value = "load.example.net")]
    pub helo: String,
    /// Send MAIL, RCPT and DATA as one group when the server offers PIPELINING
    /// (RFC 2920), as Outlook and MTAs do; without it, one command per round trip.
    #[arg(long)]
    pub pipelining: bool,
}

#[derive(Args, Debug, Clone)]
pub struct InboundArgs {
    #[command(flatten)]
    pub send: SendArgs,
    /// Envelope sender (and From: header) of inbound messages; a local domain's
    /// address would need authentication on most servers.
    #[arg(long, default_value = "loadgen@example.net")]
    pub mail_from: String,
}

#[derive(Args, Debug, Clone)]
pub struct StormArgs {
    /// Which login: IMAP LOGIN, POP3 USER/PASS, or SMTP AUTH PLAIN on submission.
    #[arg(long, value_enum, default_value = "imap")]
    pub protocol: StormProtocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StormProtocol {
    Imap,
    Pop3,
    Smtp,
}

/// `30s`, `500ms`, `2m`, `1h`, or a plain number of seconds (fractions allowed).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 30s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_go_before_or_after_the_scenario() {
        let cli = Cli::try_parse_from([
            "portico-load",
            "--clients",
            "4",
            "imap-idle",
            "--sessions",
            "7",
            "--port",
            "1143",
        ])
        .unwrap();
        assert_eq!(cli.common.clients, 4);
        assert_eq!(cli.common.port, Some(1143));
        assert!(matches!(
            cli.scenario,
            Scenario::ImapIdle(IdleArgs {
                sessions: Some(7),
                ..
            })
        ));
    }
}
