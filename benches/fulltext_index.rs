//! The full-text index's writer on the corpus (`tests/corpus/`), in bytes of text per
//! second: each message's folded body, header and SEARCH header values handed to
//! `TextIndex::add`, cut into character trigrams and added to tantivy's in-memory
//! postings, then one commit (segment written and synced). The indexer thread runs
//! this behind every delivery and APPEND, niced, on the same cores as the sessions.
//! Run with `cargo bench --bench fulltext_index`; figures go in docs/PERFORMANCE.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portico_fts::{IndexedText, MessageText, TextIndex};

/// tantivy's smallest writer budget.
const WRITER_MEMORY: usize = 15_000_000;

/// The corpus messages' texts as the indexer makes them (its own function, from the
/// header, the header values SEARCH compares and the body text).
fn texts() -> Vec<MessageText> {
    portico_testkit::corpus_messages()
        .into_iter()
        .map(|(_, raw)| {
            let header = &raw[..portico_mime::header_end(&raw)];
            portico_server::fulltext::message_text(
                header,
                &portico_mime::search_fields(header),
                &portico_mime::body_text(&raw),
            )
        })
        .collect()
}

fn indexing(c: &mut Criterion) {
    let texts = texts();
    let bytes: usize = texts
        .iter()
        .map(|t| t.body.len() + t.header.len() + t.fields.iter().map(String::len).sum::<usize>())
        .sum();
    let mut group = c.benchmark_group("fulltext_index");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(
        format!("corpus_{}_messages_add_and_commit", texts.len()),
        |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("temporary directory");
                    let index = TextIndex::open(dir.path(), WRITER_MEMORY).expect("index");
                    let messages: Vec<IndexedText> = texts
                        .iter()
                        .enumerate()
                        .map(|(uid, text)| IndexedText {
                            uid: uid as u32 + 1,
                            text: Some(MessageText {
                                body: text.body.clone(),
                                header: text.header.clone(),
                                fields: text.fields.clone(),
                            }),
                        })
                        .collect();
                    (dir, index, messages)
                },
                |(dir, index, messages)| {
                    index.add(1, messages).expect("add");
                    index.commit().expect("commit");
                    black_box(&index);
                    drop(index);
                    dir
                },
                criterion::BatchSize::PerIteration,
            );
        },
    );
    group.finish();
}

criterion_group!(benches, indexing);
criterion_main!(benches);
