//! MIME indexing of the corpus messages (`tests/corpus/`), in bytes per second: the
//! parse into a summary (`portico_mime::summarize`: ENVELOPE, BODYSTRUCTURE, part
//! offsets), then everything else the store's `stage_message` computes before it
//! writes a message (line ends made CRLF, the summary and the decoded SEARCH fields
//! encoded as the store keeps them, the header lines kept for folder listings), and
//! the text the full-text indexer extracts afterwards (`portico_mime::body_text`,
//! folded by `casemap::fold`). Every delivery and APPEND pays the first two before it
//! is acknowledged, on the blocking pool, so they bound a node's delivery rate per
//! core; the third runs behind, niced, but on the same two cores. Run with
//! `cargo bench --bench mime_index`; figures go in docs/PERFORMANCE.md.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// The corpus messages (`*.eml`, by name), as delivered.
fn corpus() -> Vec<(String, Vec<u8>)> {
    portico_testkit::corpus_messages()
}

/// The CPU work of `Store::stage_message` (crates/store/src/store.rs) before the body
/// log write, through the same public functions: what a stored message's `S` and `H`
/// records hold.
fn append_index(message: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let config = bincode::config::standard();
    let parsed = portico_mime::summarize(message);
    let message = if parsed.root().has_binary() {
        Cow::Borrowed(message)
    } else {
        portico_store::normalize_line_endings(message)
    };
    let parsed = match &message {
        Cow::Borrowed(_) => parsed,
        Cow::Owned(normalized) => portico_mime::summarize(normalized),
    };
    let summary = bincode::serde::encode_to_vec(&parsed, config).expect("summary encodes");
    let mut search = bincode::serde::encode_to_vec(portico_mime::search_fields(&message), config)
        .expect("fields encode");
    search.extend_from_slice(&portico_mime::kept_header_lines(&message));
    (summary, search)
}

/// The message text the full-text indexer folds and indexes.
fn full_text(message: &[u8]) -> String {
    portico_imap::casemap::fold(&portico_mime::body_text(message))
}

/// A set of messages, benched together: bytes per second over all of them.
struct Batch<'a> {
    name: String,
    messages: Vec<&'a [u8]>,
}

impl Batch<'_> {
    fn bytes(&self) -> u64 {
        self.messages.iter().map(|m| m.len() as u64).sum()
    }
}

fn batches(corpus: &[(String, Vec<u8>)], one_by_one: bool) -> Vec<Batch<'_>> {
    let bulk: Vec<&[u8]> = corpus
        .iter()
        .filter(|(name, _)| name.contains("-bulk-"))
        .map(|(_, raw)| raw.as_slice())
        .collect();
    let mut out = vec![
        Batch {
            name: format!("corpus_{}_messages", corpus.len()),
            messages: corpus.iter().map(|(_, raw)| raw.as_slice()).collect(),
        },
        Batch {
            name: format!("bulk_{}_messages", bulk.len()),
            messages: bulk,
        },
    ];
    // The messages of particular shapes (the bulk ones are alike), each alone.
    let shaped = corpus.iter().filter(|(name, _)| !name.contains("-bulk-"));
    out.extend(
        shaped
            .filter(|(name, _)| one_by_one || name.starts_with("013-"))
            .map(|(name, raw)| Batch {
                name: name.clone(),
                messages: vec![raw.as_slice()],
            }),
    );
    out
}

fn indexing(c: &mut Criterion) {
    let corpus = corpus();
    type Work = fn(&[u8]);
    let works: [(&str, bool, Work); 3] = [
        ("mime_summarize", true, |m| {
            black_box(portico_mime::summarize(m));
        }),
        ("mime_append_index", false, |m| {
            black_box(append_index(m));
        }),
        ("mime_full_text", false, |m| {
            black_box(full_text(m));
        }),
    ];
    for (group_name, one_by_one, work) in works {
        let mut group = c.benchmark_group(group_name);
        // 21 benches in the first group: short windows keep the file near a minute.
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_millis(1500));
        for batch in batches(&corpus, one_by_one) {
            group.throughput(Throughput::Bytes(batch.bytes()));
            group.bench_function(BenchmarkId::from_parameter(&batch.name), |b| {
                b.iter(|| {
                    for message in &batch.messages {
                        work(black_box(message));
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, indexing);
criterion_main!(benches);
