//! Durable appends to the store alone (no server, no actors): one writer against many
//! at once. Each append returns only after its round (segment fdatasync, then sled
//! flush + fdatasync of `db`), so a lone writer pays two disk syncs per message;
//! concurrent writers share rounds (group commit). Deliveries through the real server
//! are measured by `scripts/bench-delivery.py`. Run with
//! `cargo bench --bench store_append`; figures go in docs/PERFORMANCE.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portico_store::{Flags, INBOX, MailboxId, Store, StoreOptions};

fn message(size: usize) -> Vec<u8> {
    let mut out = b"Subject: bench\r\nFrom: a@example.com\r\n\r\n".to_vec();
    while out.len() < size {
        out.extend_from_slice(b"0123456789 the quick brown fox jumps over the lazy dog\r\n");
    }
    out
}

fn setup() -> (tempfile::TempDir, Arc<Store>, MailboxId) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
    let account = store
        .create_account("bench@example.com", "h")
        .expect("account");
    let inbox = store
        .mailbox_by_name(account.id, INBOX)
        .expect("lookup")
        .expect("inbox")
        .id;
    (dir, Arc::new(store), inbox)
}

fn appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_append");
    group.measurement_time(Duration::from_secs(8));
    group.sample_size(10);
    for size in [4 * 1024, 100 * 1024] {
        let body = Arc::new(message(size));
        for writers in [1usize, 8, 32] {
            group.throughput(Throughput::Elements(writers as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("{}KiB", size / 1024), format!("{writers}_writers")),
                &writers,
                |b, &writers| {
                    let (_dir, store, inbox) = setup();
                    b.iter_custom(|iters| {
                        let syncs_before = store.sync_calls();
                        let start = Instant::now();
                        for _ in 0..iters {
                            std::thread::scope(|scope| {
                                for _ in 0..writers {
                                    let (store, body) = (&store, &body);
                                    scope.spawn(move || {
                                        store
                                            .append(inbox, body, &Flags::default(), (0, 0))
                                            .expect("append")
                                    });
                                }
                            });
                        }
                        let elapsed = start.elapsed();
                        let syncs = store.sync_calls() - syncs_before;
                        eprintln!(
                            "  {writers} writers, {} KiB: {:.2} fdatasync calls per append",
                            size / 1024,
                            syncs as f64 / (iters as f64 * writers as f64)
                        );
                        elapsed
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, appends);
criterion_main!(benches);
