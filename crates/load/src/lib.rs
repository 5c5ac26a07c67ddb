//! `portico-load`: a load generator for mail servers. It drives N concurrent simulated
//! mail clients (one tokio task each) against any IMAP, POP3, SMTP or LMTP server —
//! Portico or another, such as Dovecot — for `--duration` or `--ops` operations,
//! whichever ends first, and reports latency percentiles per command and errors by
//! kind.
//!
//! It owns its protocol clients (small line-based code in [`wire`] and [`client`]) and
//! must never depend on Portico's server crates: it measures servers from the outside,
//! the same way for every server.
//!
//! # Usage
//!
//! ```text
//! portico-load <SCENARIO> [OPTIONS]
//!
//! portico-load imap-sync   --port 1143 --clients 20 --password secret --duration 30s
//! portico-load imap-idle   --port 1993 --tls implicit --sessions 2000 --pid "$(pidof portico)" --password secret
//! portico-load imap-mix    --port 1143 --clients 50 --accounts 10 --password secret --think 200ms
//! portico-load pop3-drain  --port 1110 --clients 10 --password secret
//! portico-load smtp-submit --port 1587 --clients 8 --per-connection 20 --password secret --to 'user%d@example.com' --recipients 100
//! portico-load smtp-inbound --port 1025 --clients 8 --ops 5000 --to 'user%d@example.com' --recipients 100
//! portico-load lmtp        --port 24 --clients 4 --rcpts 3
//! portico-load login-storm --protocol pop3 --port 1110 --clients 50 --password secret --json storm.json
//! ```
//!
//! Scenarios (what each client does exactly is in the [`scenario`] modules):
//!
//! - `imap-idle`: LOGIN, SELECT INBOX, IDLE, hold until the end. `--sessions N`;
//!   `--pid PID` reads the server's VmRSS (`/proc/PID/status`) before the sessions
//!   open and once all are idle (plus `--settle`, 1 s), and reports KiB per session.
//! - `imap-sync`: a mail client's sync, repeated: LOGIN, LIST, SELECT INBOX,
//!   UID FETCH 1:* of flags, date, size and header fields, `--bodies` random
//!   BODY.PEEK[], one UID STORE +FLAGS (\Seen) of `--mark-seen` messages, APPEND to
//!   `--append-to` (Sent), LOGOUT.
//! - `imap-mix`: one login per client, then a weighted random mix (FETCH, NOOP, STORE,
//!   STATUS, SELECT/EXAMINE, SEARCH UNSEEN/SUBJECT, APPEND, short IDLE) until the end.
//! - `pop3-drain`: USER, PASS, UIDL, RETR all, DELE all (not with `--keep`), QUIT;
//!   each client needs its own account. The tool only reads: **fill the mailboxes
//!   beforehand** (smtp-inbound, lmtp, or the server's own delivery).
//! - `smtp-submit`: AUTH PLAIN on submission, `--per-connection` messages per
//!   connection, from the corpus (`--corpus`, default the repository's `tests/corpus`),
//!   each its own bytes with From/To rewritten to the account and the recipients
//!   (`--to PATTERN --recipients N --rcpts K`).
//! - `smtp-inbound`: the same on a port-25-style listener, no AUTH, from `--mail-from`.
//! - `lmtp`: the same over LMTP (LHLO; one reply per accepted recipient, RFC 2033).
//! - `login-storm`: connect, log in, log out as fast as possible,
//!   `--protocol imap|pop3|smtp`.
//!
//! Connection: `--host` (default 127.0.0.1) `--port` (default: the standard port)
//! `--tls none|starttls|implicit` (default starttls; none for smtp-inbound and lmtp).
//! Any server certificate is accepted unless `--ca FILE` gives the roots to check it
//! against. Targets and `--source` addresses must be loopback unless `--allow-remote`.
//!
//! Accounts: `--user 'user%d@example.com'` with `%d` from 1 to `--accounts N` (default:
//! one per client); client i uses account ((i-1) mod N)+1; `--password` (or
//! `PORTICO_LOAD_PASSWORD`). Or `--accounts-file FILE` with `address password` lines.
//!
//! # What is measured
//!
//! An *operation* is one measured exchange: a connection (TCP, TLS and greeting; for
//! IMAP and POP3 with STARTTLS also the upgrade; for SMTP the upgrade is part of
//! `EHLO`) or one command with its whole answer. `--ops N` bounds their number. Each
//! kind has its HDR histogram (µs, 3 significant digits) of successful exchanges;
//! failures are counted instead, by kind: `connect`, `tls`, `timeout`, `io` (reset or
//! closed), `auth`, `protocol <status> <command>` (e.g. `protocol NO SELECT`,
//! `protocol -ERR RETR`, `protocol 5xx RCPT`), `protocol malformed`,
//! `protocol unexpected <command>`. A refused command leaves the session going; any
//! other error ends the connection, and the client reconnects after `--error-pause`.
//! The polite goodbyes at the end of the run (DONE, LOGOUT, QUIT) are not measured.
//!
//! The exit status is 1 if any error occurred (unless `--tolerate-errors`), 2 if the
//! run could not start, 0 otherwise.
//!
//! # JSON report (`--json FILE`)
//!
//! ```json
//! {
//!   "scenario": "imap-idle",
//!   "target": "127.0.0.1:1143",
//!   "tls": "starttls",
//!   "clients": 100,
//!   "duration_secs": 10.0,
//!   "ops": 400,
//!   "ops_per_sec": 40.0,
//!   "errors": { "timeout": 1, "protocol NO SELECT": 2 },
//!   "commands": {
//!     "LOGIN": { "count": 100, "ops_per_sec": 10.0, "p50_ms": 2.1, "p90_ms": 3.5, "p99_ms": 9.8, "max_ms": 12.0 }
//!   },
//!   "rss_before_kib": 52344,
//!   "rss_after_kib": 61000,
//!   "kib_per_session": 86.56,
//!   "idle_sessions": 100,
//!   "abandoned_clients": 0
//! }
//! ```
//!
//! `errors` holds only the kinds that occurred; `duration_secs` runs from the start to
//! the end of the run; `ops_per_sec` divides by it. `rss_*`, `kib_per_session` and
//! `idle_sessions` appear only for `imap-idle --pid`. `abandoned_clients` counts
//! clients still busy long after the end (each exchange has `--timeout`), stopped by
//! force; they count as errors for the exit status.

pub mod cli;
pub mod client;
pub mod conn;
pub mod error;
pub mod message;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod settings;
pub mod stats;
pub mod tls;
pub mod wire;

use std::process::ExitCode;

use clap::Parser;

/// Parses the command line, runs the scenario, prints the table (and writes the JSON).
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("portico-load: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portico-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    let (settings, target) = settings::resolve(cli).await?;
    let outcome = run::run(settings.clone(), target.clone()).await?;
    let report = report::Report::new(
        settings.scenario.name(),
        target.address.to_string(),
        target.tls,
        settings.clients,
        &outcome,
    );
    print!("{}", report.table());
    if let Some(path) = &settings.common.json {
        report.write_json(path)?;
    }
    let failed = report.error_count() > 0 && !settings.common.tolerate_errors;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
