//! Prometheus metrics: the one place that names every metric, installs the process's
//! recorder, and renders the scrape page (served from the HTTP side).
//!
//! The protocol machines and the store never name the metrics facade
//! (`scripts/check-layers.sh`): the machines count their commands by name
//! (`drain_commands`), the store keeps [`StoreStats`](portico_store::StoreStats) and
//! tells an observer of each group-commit round, and this module publishes both. Every
//! series is registered when the recorder is installed, each label from a fixed list
//! (protocols, results, command names; never a user, an address or anything else a
//! client sends), so a scrape shows zeros rather than missing series, and counting is an
//! atomic add on a handle made once: no lookup and no allocation per event. Before
//! [`install`] nothing is counted.
//!
//! | metric | type | labels | counted in |
//! |---|---|---|---|
//! | `portico_sessions_open` | gauge | `protocol`: pop3, imap, smtp, submission | `connection.rs`: from the start of a client connection's session (implicit TLS handshake included) to its end, whatever ends it. A proxied session counts on the node the client reached (for its whole life, and in `portico_proxy_sessions_open` once handed over) and on the home node that serves it |
//! | `portico_proxy_sessions_open` | gauge | `protocol`: imap, pop3 | `proxy.rs`: while this node carries a signed-in session to the mailbox's home node |
//! | `portico_logins_total` | counter | `protocol`: pop3, imap, submission; `result`: success, failure, throttled, disabled, unavailable, referral | `node.rs` (the authenticator's answer), and where a session on another node is referred (IMAP `LOGIN-REFERRALS`) or handed over (`proxy.rs`) |
//! | `portico_commands_total` | counter | `protocol`; `command`: the protocol crate's `CommandName` list, `OTHER` for the rest | each session actor, after every turn of its machine |
//! | `portico_delivery_seconds` | histogram | — | from a message accepted for a mailbox on this node to its copy stored: from SMTP's end of data (`smtp.rs`), from `portico deliver`'s request (`admin.rs`), and for a copy from the queue or another node from when this node took it (`delivery.rs`; its time in the queue is not included) |
//! | `portico_queue_messages` | gauge | — | the store's outgoing queue, read at each scrape |
//! | `portico_store_commit_size` | histogram | — | writes (appends and other changes) each group-commit round of the store made durable |
//! | `portico_store_fdatasync_total` | counter | — | `fdatasync`/`fsync` calls of the store's sync rounds, read at each scrape |
//! | `portico_build_info` | gauge | `version` | 1 |

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use ::metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use portico_internode::SessionProtocol;
use portico_store::Store;

use crate::auth::LoginError;

pub const SESSIONS_OPEN: &str = "portico_sessions_open";
pub const PROXY_SESSIONS_OPEN: &str = "portico_proxy_sessions_open";
pub const LOGINS: &str = "portico_logins_total";
pub const COMMANDS: &str = "portico_commands_total";
pub const DELIVERY_SECONDS: &str = "portico_delivery_seconds";
pub const QUEUE_MESSAGES: &str = "portico_queue_messages";
pub const STORE_COMMIT_SIZE: &str = "portico_store_commit_size";
pub const STORE_FDATASYNC: &str = "portico_store_fdatasync_total";
pub const BUILD_INFO: &str = "portico_build_info";

/// Label names.
pub const PROTOCOL: &str = "protocol";
pub const RESULT: &str = "result";
pub const COMMAND: &str = "command";
pub const VERSION: &str = "version";

/// Upper bounds of the delivery time buckets, in seconds: a lone delivery takes a
/// sync round (milliseconds); seconds mean a slow disk or a queue.
const DELIVERY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds of the writes-per-round buckets: group commit pays off above 1.
const COMMIT_SIZE_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// How often histogram samples are folded into their buckets when nobody scrapes, so
/// that they never pile up.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// How many values the `protocol` label has.
const PROTOCOLS: usize = 5;

/// The `protocol` label of client sessions, commands and logins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pop3 = 0,
    Imap = 1,
    /// Inbound SMTP (MX).
    Smtp = 2,
    /// Message submission, where SMTP AUTH is offered.
    Submission = 3,
    /// The HTTPS settings page: sign-ins only (no sessions or commands are counted).
    Web = 4,
}

impl Protocol {
    const ALL: [Protocol; PROTOCOLS] = [
        Protocol::Pop3,
        Protocol::Imap,
        Protocol::Smtp,
        Protocol::Submission,
        Protocol::Web,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
            Protocol::Smtp => "smtp",
            Protocol::Submission => "submission",
            Protocol::Web => "web",
        }
    }

    /// The names its sessions count commands under, in the protocol crate's order.
    fn command_names(self) -> Vec<&'static str> {
        match self {
            Protocol::Pop3 => portico_pop3::CommandName::all()
                .map(portico_pop3::CommandName::as_str)
                .collect(),
            Protocol::Imap => portico_imap::CommandName::all()
                .map(portico_imap::CommandName::as_str)
                .collect(),
            Protocol::Smtp | Protocol::Submission => portico_smtp::CommandName::all()
                .map(portico_smtp::CommandName::as_str)
                .collect(),
            Protocol::Web => Vec::new(),
        }
    }
}

impl From<crate::auth::Protocol> for Protocol {
    /// The authenticator's SMTP is submission: inbound SMTP offers no AUTH.
    fn from(protocol: crate::auth::Protocol) -> Protocol {
        match protocol {
            crate::auth::Protocol::Pop3 => Protocol::Pop3,
            crate::auth::Protocol::Imap => Protocol::Imap,
            crate::auth::Protocol::Smtp => Protocol::Submission,
            crate::auth::Protocol::Web => Protocol::Web,
        }
    }
}

impl From<SessionProtocol> for Protocol {
    fn from(protocol: SessionProtocol) -> Protocol {
        match protocol {
            SessionProtocol::Imap => Protocol::Imap,
            SessionProtocol::Pop3 => Protocol::Pop3,
        }
    }
}

/// How a sign-in ended, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginResult {
    /// Signed in, here or at the mailbox's home node (proxied).
    Success = 0,
    /// Unknown user, wrong password, denied name.
    Failure = 1,
    /// Refused by a limit: too many recent failures from the client's address (no
    /// password checked), or too many sessions of the user.
    Throttled = 2,
    /// Right password, but the protocol is off for the account.
    Disabled = 3,
    /// Right password, but the mailbox could not be opened or reached (store,
    /// directory, a move under way, the home node down).
    Unavailable = 4,
    /// Right password, and the client was sent to the mailbox's home node (IMAP
    /// LOGIN-REFERRALS).
    Referral = 5,
}

impl LoginResult {
    const ALL: [LoginResult; 6] = [
        LoginResult::Success,
        LoginResult::Failure,
        LoginResult::Throttled,
        LoginResult::Disabled,
        LoginResult::Unavailable,
        LoginResult::Referral,
    ];

    pub fn label(self) -> &'static str {
        match self {
            LoginResult::Success => "success",
            LoginResult::Failure => "failure",
            LoginResult::Throttled => "throttled",
            LoginResult::Disabled => "disabled",
            LoginResult::Unavailable => "unavailable",
            LoginResult::Referral => "referral",
        }
    }
}

impl From<LoginError> for LoginResult {
    fn from(error: LoginError) -> LoginResult {
        match error {
            LoginError::BadCredentials => LoginResult::Failure,
            LoginError::ProtocolDisabled => LoginResult::Disabled,
            LoginError::Unavailable => LoginResult::Unavailable,
            LoginError::TooManyConnections | LoginError::Throttled => LoginResult::Throttled,
        }
    }
}

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("another metrics recorder is installed in this process")]
    OtherRecorder,
    #[error("histogram buckets: {0}")]
    Buckets(#[from] BuildError),
    #[error("cannot start the metrics upkeep thread: {0}")]
    Upkeep(#[from] std::io::Error),
}

/// Every series, registered once.
struct Instruments {
    /// By [`Protocol`].
    sessions_open: [Gauge; PROTOCOLS],
    /// By [`Protocol`]; only IMAP and POP3 sessions are proxied.
    proxy_sessions_open: [Gauge; PROTOCOLS],
    /// By [`Protocol`], then [`LoginResult`]; inbound SMTP has none (no-op handles).
    logins: [[Counter; 6]; PROTOCOLS],
    /// By [`Protocol`], then the index of the protocol crate's `CommandName`.
    commands: [Vec<Counter>; PROTOCOLS],
    delivery_seconds: Histogram,
    store_commit_size: Histogram,
    queue_messages: Gauge,
    store_fdatasync: Counter,
}

struct Installed {
    handle: PrometheusHandle,
    instruments: Instruments,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();
/// Held while installing, so two first calls do not both try.
static INSTALLING: Mutex<()> = Mutex::new(());
/// The store the scrape reads its totals from ([`watch_store`]).
static STORE: Mutex<Weak<Store>> = Mutex::new(Weak::new());

fn instruments() -> Option<&'static Instruments> {
    INSTALLED.get().map(|installed| &installed.instruments)
}

/// Installs the process's recorder, describes and registers every metric, and starts
/// the upkeep thread; the next calls return the same handle. Call it before the
/// listeners start: what happens before it is not counted.
pub fn install() -> Result<PrometheusHandle, InstallError> {
    if let Some(installed) = INSTALLED.get() {
        return Ok(installed.handle.clone());
    }
    let _installing = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(installed) = INSTALLED.get() {
        return Ok(installed.handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(DELIVERY_SECONDS.into()), &DELIVERY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(STORE_COMMIT_SIZE.into()),
            &COMMIT_SIZE_BUCKETS,
        )?
        .build_recorder();
    let handle = recorder.handle();
    // Started first: should it fail, nothing is installed and a later call may try
    // again. (Should installing fail instead, it tends an unused recorder.)
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        })?;
    ::metrics::set_global_recorder(recorder).map_err(|_| InstallError::OtherRecorder)?;
    describe();
    let instruments = register();
    ::metrics::gauge!(BUILD_INFO, VERSION => env!("CARGO_PKG_VERSION")).set(1.0);
    let installed = INSTALLED.get_or_init(|| Installed {
        handle,
        instruments,
    });
    Ok(installed.handle.clone())
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        SESSIONS_OPEN,
        Unit::Count,
        "Client sessions open on this node, from their start (TLS handshake included) to their end"
    );
    describe_gauge!(
        PROXY_SESSIONS_OPEN,
        Unit::Count,
        "Signed-in sessions this node carries to the node that holds their mailbox"
    );
    describe_counter!(
        LOGINS,
        Unit::Count,
        "Sign-ins (LOGIN, AUTHENTICATE, PASS, AUTH) by how they ended"
    );
    describe_counter!(
        COMMANDS,
        Unit::Count,
        "Commands clients sent, by name (OTHER: not a command of the protocol)"
    );
    describe_histogram!(
        DELIVERY_SECONDS,
        Unit::Seconds,
        "Seconds from a message accepted for a mailbox on this node to its copy stored"
    );
    describe_gauge!(
        QUEUE_MESSAGES,
        Unit::Count,
        "Messages in the outgoing queue, waiting for the relay, a node or a retry"
    );
    describe_histogram!(
        STORE_COMMIT_SIZE,
        Unit::Count,
        "Writes (appends and other changes) made durable by one group-commit round"
    );
    describe_counter!(
        STORE_FDATASYNC,
        Unit::Count,
        "fdatasync and fsync calls of the store's sync rounds"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version label names the build");
}

fn register() -> Instruments {
    let gauges = |name: &'static str| {
        Protocol::ALL.map(|protocol| match protocol {
            Protocol::Web => Gauge::noop(),
            _ => ::metrics::gauge!(name, PROTOCOL => protocol.label()),
        })
    };
    let proxied = |protocol: Protocol| match protocol {
        Protocol::Imap | Protocol::Pop3 => {
            ::metrics::gauge!(PROXY_SESSIONS_OPEN, PROTOCOL => protocol.label())
        }
        Protocol::Smtp | Protocol::Submission | Protocol::Web => Gauge::noop(),
    };
    let logins = |protocol: Protocol| {
        LoginResult::ALL.map(|result| match protocol {
            Protocol::Smtp => Counter::noop(),
            _ => ::metrics::counter!(
                LOGINS,
                PROTOCOL => protocol.label(),
                RESULT => result.label()
            ),
        })
    };
    let commands = |protocol: Protocol| {
        protocol
            .command_names()
            .into_iter()
            .map(|command| {
                ::metrics::counter!(COMMANDS, PROTOCOL => protocol.label(), COMMAND => command)
            })
            .collect()
    };
    Instruments {
        sessions_open: gauges(SESSIONS_OPEN),
        proxy_sessions_open: Protocol::ALL.map(proxied),
        logins: Protocol::ALL.map(logins),
        commands: Protocol::ALL.map(commands),
        delivery_seconds: ::metrics::histogram!(DELIVERY_SECONDS),
        store_commit_size: ::metrics::histogram!(STORE_COMMIT_SIZE),
        queue_messages: ::metrics::gauge!(QUEUE_MESSAGES),
        store_fdatasync: ::metrics::counter!(STORE_FDATASYNC),
    }
}

/// The scrape page in Prometheus's text format, with the store's totals read now.
pub fn render(handle: &PrometheusHandle) -> String {
    let store = STORE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .upgrade();
    if let (Some(store), Some(instruments)) = (store, instruments()) {
        let stats = store.stats();
        instruments.store_fdatasync.absolute(stats.sync_calls);
        instruments.queue_messages.set(stats.queued_messages as f64);
    }
    handle.render()
}

/// Publishes `store`: its group-commit rounds from now on, its totals at each scrape.
/// A node has one store; the last one watched is the one the scrape reads.
pub fn watch_store(store: &Arc<Store>) {
    store.observe_commits(|writes| {
        if let Some(instruments) = instruments() {
            instruments.store_commit_size.record(writes as f64);
        }
    });
    *STORE.lock().unwrap_or_else(PoisonError::into_inner) = Arc::downgrade(store);
}

/// A session counted in an open-sessions gauge until it is dropped, however the
/// session ends (an error, a panic, a future dropped mid-way).
#[must_use = "the session counts as open only while this is kept"]
pub struct CountedSession(Option<&'static Gauge>);

impl CountedSession {
    fn open(gauge: Option<&'static Gauge>) -> CountedSession {
        if let Some(gauge) = gauge {
            gauge.increment(1.0);
        }
        CountedSession(gauge)
    }
}

impl Drop for CountedSession {
    fn drop(&mut self) {
        if let Some(gauge) = self.0 {
            gauge.decrement(1.0);
        }
    }
}

/// Counts a client session in `portico_sessions_open` for as long as the result lives.
pub fn session_opened(protocol: Protocol) -> CountedSession {
    CountedSession::open(instruments().map(|i| &i.sessions_open[protocol as usize]))
}

/// Counts a session proxied to its home node in `portico_proxy_sessions_open` for as
/// long as the result lives.
pub fn proxy_session_opened(protocol: SessionProtocol) -> CountedSession {
    let protocol = Protocol::from(protocol);
    CountedSession::open(instruments().map(|i| &i.proxy_sessions_open[protocol as usize]))
}

pub fn count_login(protocol: Protocol, result: LoginResult) {
    if let Some(instruments) = instruments() {
        instruments.logins[protocol as usize][result as usize].increment(1);
    }
}

/// Counts commands a session's machine handled: `(index of the name in the protocol
/// crate's CommandName::all(), how many times)`, as its `drain_commands` gives them.
pub fn count_commands(protocol: Protocol, dispatched: impl IntoIterator<Item = (usize, u32)>) {
    let Some(instruments) = instruments() else {
        return;
    };
    let counters = &instruments.commands[protocol as usize];
    for (index, times) in dispatched {
        if let Some(counter) = counters.get(index) {
            counter.increment(u64::from(times));
        }
    }
}

/// Records a copy stored in a mailbox here, accepted at `accepted`.
pub fn observe_delivery(accepted: Instant) {
    if let Some(instruments) = instruments() {
        instruments.delivery_seconds.record(accepted.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the series `name{labels}` (`labels` as rendered, `""` for none).
    fn sample(page: &str, name: &str, labels: &str) -> Option<f64> {
        let series = match labels {
            "" => format!("{name} "),
            labels => format!("{name}{{{labels}}} "),
        };
        page.lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .and_then(|value| value.parse().ok())
    }

    fn is_metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// The label pairs of a sample's `{…}` (values without escapes: ours have none).
    fn labels(inner: &str) -> Option<Vec<(&str, &str)>> {
        if inner.is_empty() {
            return Some(Vec::new());
        }
        inner
            .split(',')
            .map(|pair| {
                let (key, value) = pair.split_once('=')?;
                let value = value.strip_prefix('"')?.strip_suffix('"')?;
                (is_metric_name(key) && !value.contains(['"', '\\', '\n'])).then_some((key, value))
            })
            .collect()
    }

    /// A sample line: its name, labels and value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// Checks the page line by line against the text exposition format (comments,
    /// samples, blank lines; every sample's metric typed before it).
    fn parse(page: &str) -> Vec<Sample> {
        let mut typed: Vec<(String, String)> = Vec::new();
        let mut samples = Vec::new();
        for line in page.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(help) = line.strip_prefix("# HELP ") {
                let (name, text) = help.split_once(' ').unwrap_or((help, ""));
                assert!(is_metric_name(name) && !text.is_empty(), "{line}");
                continue;
            }
            if let Some(kind) = line.strip_prefix("# TYPE ") {
                let (name, kind) = kind.split_once(' ').expect(line);
                assert!(is_metric_name(name), "{line}");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                typed.push((name.to_string(), kind.to_string()));
                continue;
            }
            assert!(!line.starts_with('#'), "{line}");
            let (series, value) = line.rsplit_once(' ').expect(line);
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                value => value.parse().expect(line),
            };
            let (name, pairs) = match series.split_once('{') {
                Some((name, rest)) => (name, labels(rest.strip_suffix('}').expect(line))),
                None => (series, Some(Vec::new())),
            };
            let pairs = pairs.expect(line);
            assert!(is_metric_name(name), "{line}");
            let (family, kind) = typed.last().expect(line);
            let histogram_part = ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(family));
            assert!(
                name == family || (kind == "histogram" && histogram_part),
                "{line} is not of {family}"
            );
            let pairs = pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            samples.push((name.to_string(), pairs, value));
        }
        samples
    }

    #[test]
    fn install_is_idempotent_and_the_page_describes_every_metric_in_text_format() {
        let first = install().unwrap();
        let second = install().unwrap();
        let page = render(&second);
        assert_eq!(
            sample(
                &page,
                BUILD_INFO,
                &format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))
            ),
            Some(1.0),
            "{page}"
        );
        for (name, kind) in [
            (SESSIONS_OPEN, "gauge"),
            (PROXY_SESSIONS_OPEN, "gauge"),
            (LOGINS, "counter"),
            (COMMANDS, "counter"),
            (DELIVERY_SECONDS, "histogram"),
            (QUEUE_MESSAGES, "gauge"),
            (STORE_COMMIT_SIZE, "histogram"),
            (STORE_FDATASYNC, "counter"),
            (BUILD_INFO, "gauge"),
        ] {
            assert!(
                page.contains(&format!("\n# HELP {name} "))
                    || page.starts_with(&format!("# HELP {name} ")),
                "{name}: {page}"
            );
            assert!(
                page.contains(&format!("# TYPE {name} {kind}\n")),
                "{name}: {page}"
            );
        }
        // Every series exists from the start, its labels from the fixed lists only.
        let samples = parse(&render(&first));
        let pop3_commands = samples
            .iter()
            .filter(|(name, labels, _)| {
                name == COMMANDS && labels.contains(&(PROTOCOL.into(), "pop3".into()))
            })
            .count();
        assert_eq!(pop3_commands, portico_pop3::CommandName::COUNT);
        for (name, labels, _) in &samples {
            for (key, value) in labels {
                let allowed: Vec<&str> = match key.as_str() {
                    PROTOCOL => Protocol::ALL.iter().map(|p| p.label()).collect(),
                    RESULT => LoginResult::ALL.iter().map(|r| r.label()).collect(),
                    COMMAND => Protocol::ALL
                        .iter()
                        .flat_map(|p| p.command_names())
                        .collect(),
                    VERSION => vec![env!("CARGO_PKG_VERSION")],
                    "le" => continue,
                    other => panic!("{name}: unexpected label {other}"),
                };
                assert!(allowed.contains(&value.as_str()), "{name}: {key}={value}");
            }
        }
    }

    #[test]
    fn sessions_logins_and_commands_are_counted_under_their_labels() {
        let handle = install().unwrap();
        let open =
            |page: &str, name, protocol| sample(page, name, &format!("protocol=\"{protocol}\""));
        let session = session_opened(Protocol::Submission);
        let proxied = proxy_session_opened(SessionProtocol::Pop3);
        let page = render(&handle);
        assert_eq!(
            open(&page, SESSIONS_OPEN, "submission"),
            Some(1.0),
            "{page}"
        );
        assert_eq!(
            open(&page, PROXY_SESSIONS_OPEN, "pop3"),
            Some(1.0),
            "{page}"
        );
        drop((session, proxied));
        let page = render(&handle);
        assert_eq!(open(&page, SESSIONS_OPEN, "submission"), Some(0.0));
        assert_eq!(open(&page, PROXY_SESSIONS_OPEN, "pop3"), Some(0.0));

        count_login(Protocol::Imap, LoginResult::Referral);
        count_login(Protocol::Imap, LoginResult::Referral);
        count_login(
            crate::auth::Protocol::Smtp.into(),
            LoginError::Throttled.into(),
        );
        let page = render(&handle);
        let logins = |protocol, result| {
            sample(
                &page,
                LOGINS,
                &format!("protocol=\"{protocol}\",result=\"{result}\""),
            )
        };
        assert_eq!(logins("imap", "referral"), Some(2.0), "{page}");
        assert_eq!(logins("submission", "throttled"), Some(1.0), "{page}");
        assert_eq!(logins("imap", "success"), Some(0.0), "{page}");
        assert_eq!(logins("smtp", "success"), None, "inbound SMTP has no AUTH");

        // A real machine's commands, as its actor counts them.
        let mut pop3 = portico_pop3::Session::new(portico_pop3::Pop3Config::default(), false);
        pop3.handle(portico_pop3::Input::Bytes(
            b"CAPA\r\nnoop\r\nXTND XMIT\r\nCAPA\r\n",
        ));
        let dispatched = pop3.drain_commands().map(|(name, n)| (name.index(), n));
        count_commands(Protocol::Pop3, dispatched);
        let mut smtp = portico_smtp::Session::new(submission_config(), false);
        smtp.handle(portico_smtp::Input::Bytes(
            b"EHLO client.example\r\nHELP\r\n",
        ));
        let dispatched = smtp.drain_commands().map(|(name, n)| (name.index(), n));
        count_commands(Protocol::Submission, dispatched);
        let page = render(&handle);
        let commands = |protocol, command| {
            sample(
                &page,
                COMMANDS,
                &format!("protocol=\"{protocol}\",command=\"{command}\""),
            )
        };
        assert_eq!(commands("pop3", "CAPA"), Some(2.0), "{page}");
        assert_eq!(commands("pop3", "NOOP"), Some(1.0), "{page}");
        assert_eq!(commands("pop3", "OTHER"), Some(1.0), "{page}");
        assert_eq!(commands("pop3", "XTND"), None);
        assert_eq!(commands("submission", "EHLO"), Some(1.0), "{page}");
        assert_eq!(commands("submission", "HELP"), Some(1.0), "{page}");
        assert_eq!(commands("smtp", "EHLO"), Some(0.0), "{page}");
        assert_eq!(commands("imap", "UID FETCH"), Some(0.0), "{page}");
    }

    fn submission_config() -> portico_smtp::SmtpConfig {
        portico_smtp::SmtpConfig {
            mode: portico_smtp::Mode::Submission,
            ..portico_smtp::SmtpConfig::default()
        }
    }

    #[test]
    fn the_store_and_deliveries_are_published_at_each_scrape() {
        let handle = install().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &Default::default()).unwrap());
        watch_store(&store);
        let recipients = ["x@remote.example".to_string()];
        let queued = store
            .enqueue(
                "a@example.com",
                &recipients,
                b"Subject: x\r\n\r\nx\r\n",
                false,
            )
            .unwrap();
        observe_delivery(Instant::now() - Duration::from_millis(20));
        let page = render(&handle);
        assert_eq!(sample(&page, QUEUE_MESSAGES, ""), Some(1.0), "{page}");
        let synced = sample(&page, STORE_FDATASYNC, "").unwrap_or_default();
        assert!(
            synced >= store.stats().sync_calls as f64 && synced > 0.0,
            "{page}"
        );
        let rounds = sample(&page, &format!("{STORE_COMMIT_SIZE}_count"), "");
        assert!(rounds.is_some_and(|n| n >= 1.0), "{page}");
        assert!(sample(&page, &format!("{STORE_COMMIT_SIZE}_bucket"), "le=\"1\"").is_some());
        // The delivery took 20 ms: within the 25 ms bucket.
        let bucket = |le| {
            sample(
                &page,
                &format!("{DELIVERY_SECONDS}_bucket"),
                &format!("le=\"{le}\""),
            )
        };
        assert!(bucket("0.025").unwrap_or_default() >= 1.0, "{page}");
        assert!(bucket("+Inf").unwrap_or_default() >= bucket("0.025").unwrap_or_default());
        parse(&page);

        store.delete_queued(queued.id).unwrap();
        let page = render(&handle);
        assert_eq!(sample(&page, QUEUE_MESSAGES, ""), Some(0.0), "{page}");
    }
}
