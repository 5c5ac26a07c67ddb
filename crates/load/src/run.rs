//! Runs the clients: one tokio task each, started together (or over --ramp-up), until
//! --duration has passed, --ops operations were taken, Ctrl-C, or every client is done.
//! Shows the live rate while it runs and gathers every client's measurements at the end.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::conn::Target;
use crate::error::ClientError;
use crate::rng::Rng;
use crate::settings::{Account, Settings};
use crate::stats::Stats;

/// What all clients share to know when to stop and to show live numbers.
#[derive(Debug, Default)]
pub struct Control {
    /// Cancelled when the run ends (time is up, the budget is spent, Ctrl-C).
    pub stop: CancellationToken,
    ops_limit: Option<u64>,
    ops_taken: AtomicU64,
    /// Successful exchanges so far (for the progress bar).
    pub ops_done: AtomicU64,
    pub errors: AtomicU64,
    /// IMAP sessions currently idling (imap-idle).
    pub idle_sessions: AtomicUsize,
}

impl Control {
    pub fn new(ops_limit: Option<u64>) -> Control {
        Control {
            ops_limit,
            ..Control::default()
        }
    }

    /// Takes one operation from the budget; false when the run is over.
    pub fn take_op(&self) -> bool {
        if self.stop.is_cancelled() {
            return false;
        }
        if let Some(limit) = self.ops_limit
            && self.ops_taken.fetch_add(1, Ordering::Relaxed) >= limit
        {
            self.stop.cancel();
            return false;
        }
        true
    }

    pub fn stopped(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// Why a session ended early.
#[derive(Debug)]
pub enum Stop {
    /// The run is over.
    Done,
    /// An error that ends the connection.
    Failed(ClientError),
}

impl From<ClientError> for Stop {
    fn from(error: ClientError) -> Stop {
        Stop::Failed(error)
    }
}

/// How many sets of histograms the clients share (client i fills set i mod this). One
/// set per client would cost ~190 KiB per command kind each (HDR, 3 digits up to an
/// hour), 75 GiB for 100,000 idle sessions; a few dozen keep the locks uncontended.
const STATS_SHARDS: usize = 64;

/// One simulated client: its number, its random choices, where it records.
pub struct Client {
    /// 0-based.
    pub index: usize,
    pub settings: Arc<Settings>,
    pub target: Arc<Target>,
    pub control: Arc<Control>,
    pub rng: Rng,
    /// The histograms this client fills, shared with the clients of the same index modulo
    /// STATS_SHARDS.
    stats: Arc<Mutex<Stats>>,
}

impl Client {
    pub fn account(&self) -> Account {
        self.settings.account(self.index).clone()
    }

    /// Starts a measured exchange: takes an operation from the budget, or ends the
    /// session when the run is over.
    pub fn begin(&self) -> Result<Instant, Stop> {
        if self.control.take_op() {
            Ok(Instant::now())
        } else {
            Err(Stop::Done)
        }
    }

    /// Records a successful exchange started at `started`.
    pub fn record(&self, command: &'static str, started: Instant) {
        lock(&self.stats).record(command, started.elapsed());
        self.control.ops_done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self, error: &ClientError) {
        lock(&self.stats).error(error);
        self.control.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.control.stopped()
    }

    /// Sleeps `duration`, or less if the run ends meanwhile.
    pub async fn pause(&self, duration: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = self.control.stop.cancelled() => {}
        }
    }

    /// Deals with the end of one session: false when the run is over for this client.
    /// An error is counted, then the client pauses (--error-pause) before the next
    /// session.
    pub async fn carry_on(&mut self, ended: Result<(), Stop>) -> bool {
        match ended {
            Ok(()) => !self.stopped(),
            Err(Stop::Done) => false,
            Err(Stop::Failed(error)) => {
                self.error(&error);
                self.pause(self.settings.common.error_pause).await;
                !self.stopped()
            }
        }
    }
}

fn lock(stats: &Mutex<Stats>) -> MutexGuard<'_, Stats> {
    // A client that panicked leaves its numbers as they were: still worth reporting.
    stats
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Memory of the server process around the idle sessions (imap-idle with --pid).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// Sessions idling when the second reading was taken.
    pub idle_sessions: usize,
}

impl Memory {
    pub fn kib_per_session(&self) -> Option<f64> {
        (self.idle_sessions > 0).then(|| {
            (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.idle_sessions as f64
        })
    }
}

/// What a run produced.
pub struct Outcome {
    pub stats: Stats,
    /// From the first client's start to the end of the run (before the sessions'
    /// unmeasured goodbyes).
    pub elapsed: Duration,
    pub memory: Option<Memory>,
    /// Clients still running long after the end, stopped by force.
    pub abandoned: usize,
}

/// Runs every client of the scenario and gathers the results.
pub async fn run(settings: Arc<Settings>, target: Arc<Target>) -> anyhow::Result<Outcome> {
    let control = Arc::new(Control::new(settings.common.ops));
    let memory_pid = match &settings.scenario {
        crate::cli::Scenario::ImapIdle(args) => args.pid.map(|pid| (pid, args.settle)),
        _ => None,
    };
    let rss_before = match memory_pid {
        Some((pid, _)) => Some(read_rss_kib(pid)?),
        None => None,
    };

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let shards: Vec<Arc<Mutex<Stats>>> = (0..settings.clients.clamp(1, STATS_SHARDS))
        .map(|_| Arc::default())
        .collect();
    for index in 0..settings.clients {
        let stats = shards[index % shards.len()].clone();
        let mut client = Client {
            index,
            settings: settings.clone(),
            target: target.clone(),
            control: control.clone(),
            rng: Rng::new(settings.seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            stats,
        };
        let delay = settings
            .common
            .ramp_up
            .mul_f64(index as f64 / settings.clients as f64);
        tasks.spawn(async move {
            if !delay.is_zero() {
                client.pause(delay).await;
            }
            crate::scenario::run_client(&mut client).await;
        });
    }

    let progress = progress_bar(&settings);
    let ticker = {
        let progress = progress.clone();
        let control = control.clone();
        let duration = settings.common.duration;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(250));
            // (when, ops) of the last ticks: the rate shown is that of the last second.
            let mut window = std::collections::VecDeque::from([(Instant::now(), 0u64)]);
            loop {
                interval.tick().await;
                let elapsed = started.elapsed();
                let ops = control.ops_done.load(Ordering::Relaxed);
                let now = Instant::now();
                window.push_back((now, ops));
                while window.len() > 5 {
                    window.pop_front();
                }
                let rate = window.front().map_or(0.0, |&(then, then_ops)| {
                    (ops - then_ops) as f64 / now.duration_since(then).as_secs_f64().max(0.001)
                });
                progress.set_position(elapsed.min(duration).as_millis() as u64);
                progress.set_message(format!(
                    "{ops} ops, {rate:.0}/s, {} errors",
                    control.errors.load(Ordering::Relaxed)
                ));
            }
        })
    };
    let memory_watch = memory_pid.map(|(pid, settle)| {
        let control = control.clone();
        let clients = settings.clients;
        tokio::spawn(async move { rss_when_idle(pid, settle, clients, &control).await })
    });

    // The end: time is up, the budget is spent, Ctrl-C, or every client finished.
    let deadline = tokio::time::sleep(settings.common.duration);
    tokio::pin!(deadline);
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut interrupt_armed = true;
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = control.stop.cancelled() => break,
            signal = &mut interrupt, if interrupt_armed => match signal {
                Ok(()) => break,
                // No signal handler: the run goes on to its deadline.
                Err(_) => interrupt_armed = false,
            },
            joined = tasks.join_next() => if joined.is_none() { break },
        }
    }
    control.stop.cancel();
    let elapsed = started.elapsed();
    ticker.abort();
    progress.finish_and_clear();

    let memory = match (memory_watch, rss_before) {
        (Some(watch), Some(before)) => match watch.await {
            Ok(Ok((after, idle))) => Some(Memory {
                rss_before_kib: before,
                rss_after_kib: after,
                idle_sessions: idle,
            }),
            Ok(Err(e)) => {
                eprintln!("portico-load: no memory reading after the sessions: {e:#}");
                None
            }
            Err(e) => {
                eprintln!("portico-load: the memory reading failed: {e}");
                None
            }
        },
        _ => None,
    };

    // Every exchange has its own timeout, so the goodbyes end soon; a client stuck
    // beyond this is stopped by force and counted.
    let grace = settings.common.timeout + Duration::from_secs(5);
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    let abandoned = tasks.len();
    tasks.abort_all();

    let mut stats = Stats::default();
    for shard in &shards {
        stats.merge(&lock(shard));
    }
    Ok(Outcome {
        stats,
        elapsed,
        memory,
        abandoned,
    })
}

fn progress_bar(settings: &Settings) -> ProgressBar {
    if settings.common.quiet || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(settings.common.duration.as_millis() as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {elapsed_precise} [{wide_bar}] {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Waits until every session idles (or the run ends), lets the server settle, and
/// reads its memory: (VmRSS in KiB, sessions idling then).
async fn rss_when_idle(
    pid: u32,
    settle: Duration,
    clients: usize,
    control: &Control,
) -> anyhow::Result<(u64, usize)> {
    while control.idle_sessions.load(Ordering::Relaxed) < clients && !control.stopped() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !control.stopped() {
        tokio::select! {
            _ = tokio::time::sleep(settle) => {}
            _ = control.stop.cancelled() => {}
        }
    }
    let idle = control.idle_sessions.load(Ordering::Relaxed);
    Ok((read_rss_kib(pid)?, idle))
}

/// VmRSS of a process, in KiB, from /proc/PID/status.
pub fn read_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {path} (--pid {pid}): {e}"))?;
    parse_vm_rss(&status).ok_or_else(|| anyhow::anyhow!("no VmRSS line in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_line() {
        let status = "Name:\tportico\nVmPeak:\t  1000 kB\nVmRSS:\t   52344 kB\nThreads: 9\n";
        assert_eq!(parse_vm_rss(status), Some(52344));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(read_rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn budget_stops_the_run() {
        let control = Control::new(Some(2));
        assert!(control.take_op());
        assert!(control.take_op());
        assert!(!control.take_op());
        assert!(control.stopped());
    }

    #[test]
    fn memory_per_session() {
        let memory = Memory {
            rss_before_kib: 1000,
            rss_after_kib: 3000,
            idle_sessions: 100,
        };
        assert_eq!(memory.kib_per_session(), Some(20.0));
    }
}
