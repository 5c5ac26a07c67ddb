//! Durable appends to the store alone (no server, no actors), opened with the options
//! the server uses (`node::store_options` of the embedded configuration: 16 MiB sled
//! cache, 3 ms group-commit delay). Each append returns only after its sync round
//! (body log segment fdatasync, then sled flush + fdatasync of `db`), so a lone writer
//! pays two disk syncs per message; concurrent writers share rounds (group commit).
//! Measured three ways: one `Store::append` alone; N threads each calling
//! `Store::append` at once (deliveries on the blocking pool); and N messages staged,
//! linked in one batch and waited for once (`stage_message`, `append_staged_limited`,
//! `wait_committed`: what the mailbox actor does with the deliveries queued for a
//! folder). Every delivery and APPEND is acknowledged only after this, so it bounds a
//! node's delivery rate; `scripts/bench-delivery.py` measures the same through the
//! real server. The fdatasync calls per append are printed after each bench. Run with
//! `cargo bench --bench store_append`; figures go in docs/PERFORMANCE.md.

use std::cell::Cell;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portico_cluster::ClusterConfig;
use portico_store::{AppendRequest, Flags, INBOX, MailboxId, Store};

fn message(size: usize) -> Vec<u8> {
    let mut out = b"Subject: bench\r\nFrom: a@example.com\r\n\r\n".to_vec();
    while out.len() < size {
        out.extend_from_slice(b"0123456789 the quick brown fox jumps over the lazy dog\r\n");
    }
    out
}

/// A fresh store in a temporary directory, opened as a node opens it, and its INBOX.
fn setup() -> (tempfile::TempDir, Store, MailboxId) {
    let config = ClusterConfig::embedded().expect("embedded configuration");
    let options = portico_server::node::store_options(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), &options).expect("open");
    let account = store
        .create_account("bench@example.com", "h")
        .expect("account");
    let inbox = store
        .mailbox_by_name(account.id, INBOX)
        .expect("lookup")
        .expect("inbox")
        .id;
    (dir, store, inbox)
}

/// Counts fdatasync calls over the rounds a bench runs, for one line after it.
#[derive(Default)]
struct SyncTally {
    syncs: Cell<u64>,
    appends: Cell<u64>,
}

impl SyncTally {
    fn add(&self, syncs: u64, appends: u64) {
        self.syncs.set(self.syncs.get() + syncs);
        self.appends.set(self.appends.get() + appends);
    }

    fn report(&self, what: &str) {
        let appends = self.appends.get();
        if appends == 0 {
            // Filtered out.
            return;
        }
        eprintln!(
            "  {what}: {:.2} fdatasync calls per append ({} appends)",
            self.syncs.get() as f64 / appends as f64,
            appends
        );
    }
}

/// Writer threads kept for a bench: each round, every one appends one message and the
/// round ends when all have returned. Kept, not spawned per round, so that thread
/// start-up is not measured.
struct Writers {
    start: Barrier,
    done: Barrier,
    stop: AtomicBool,
}

impl Writers {
    fn new(writers: usize) -> Writers {
        Writers {
            start: Barrier::new(writers + 1),
            done: Barrier::new(writers + 1),
            stop: AtomicBool::new(false),
        }
    }

    fn work(&self, store: &Store, inbox: MailboxId, body: &[u8]) {
        loop {
            self.start.wait();
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            store
                .append(inbox, body, &Flags::default(), (0, 0))
                .expect("append");
            self.done.wait();
        }
    }

    fn round(&self) {
        self.start.wait();
        self.done.wait();
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.start.wait();
    }
}

fn appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_append");
    // Eight benches of 3.5 s, plus opening and removing stores of up to 2 GB: about a
    // minute for the file.
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(10);
    for size in [4 * 1024, 100 * 1024] {
        let body = message(size);
        let kib = format!("{}KiB", size / 1024);

        // One writer: stage, apply, wait for its own round.
        let (_dir, store, inbox) = setup();
        let tally = SyncTally::default();
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("alone", &kib), |b| {
            b.iter_custom(|iters| {
                let syncs = store.sync_calls();
                let start = Instant::now();
                for _ in 0..iters {
                    store
                        .append(inbox, &body, &Flags::default(), (0, 0))
                        .expect("append");
                }
                let elapsed = start.elapsed();
                tally.add(store.sync_calls() - syncs, iters);
                elapsed
            })
        });
        tally.report(&format!("alone, {kib}"));

        // N writers at once, each its own append: rounds form by group commit.
        for writers in [8usize, 32] {
            let (_dir, store, inbox) = setup();
            let tally = SyncTally::default();
            let pool = Writers::new(writers);
            std::thread::scope(|scope| {
                for _ in 0..writers {
                    scope.spawn(|| pool.work(&store, inbox, &body));
                }
                group.throughput(Throughput::Elements(writers as u64));
                group.bench_function(
                    BenchmarkId::new(format!("{writers}_concurrent"), &kib),
                    |b| {
                        b.iter_custom(|iters| {
                            let syncs = store.sync_calls();
                            let start = Instant::now();
                            for _ in 0..iters {
                                pool.round();
                            }
                            let elapsed = start.elapsed();
                            tally.add(store.sync_calls() - syncs, iters * writers as u64);
                            elapsed
                        })
                    },
                );
                pool.stop();
            });
            tally.report(&format!("{writers} concurrent, {kib}"));
        }

        // N messages staged, linked in one batch, one wait: one round for all.
        let batch = 32usize;
        let (_dir, store, inbox) = setup();
        let tally = SyncTally::default();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new(format!("{batch}_batched"), &kib), |b| {
            b.iter_custom(|iters| {
                let syncs = store.sync_calls();
                let start = Instant::now();
                for _ in 0..iters {
                    let requests = (0..batch)
                        .map(|_| AppendRequest {
                            staged: store.stage_message(&body, None).expect("stage"),
                            flags: Flags::default(),
                            internal_date: (0, 0),
                            storage_limit: None,
                        })
                        .collect();
                    let (appended, ticket) = store
                        .append_staged_limited(inbox, requests)
                        .expect("append batch");
                    assert!(appended.iter().all(Result::is_ok));
                    store.wait_committed(ticket).expect("durable");
                }
                let elapsed = start.elapsed();
                tally.add(store.sync_calls() - syncs, iters * batch as u64);
                elapsed
            })
        });
        tally.report(&format!("{batch} batched, {kib}"));
    }
    group.finish();
}

criterion_group!(benches, appends);
criterion_main!(benches);
