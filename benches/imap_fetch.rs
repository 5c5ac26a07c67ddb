//! FETCH response encoding (`portico_imap::fetch::render`) over the messages of the
//! repository corpus (`tests/corpus/`): ENVELOPE and BODYSTRUCTURE, rendered from each
//! message's MIME summary, and BODY[] of the message read whole. A client opening a
//! folder asks for the ENVELOPE and BODYSTRUCTURE of thousands of messages at once, so
//! their rendering (and the decoding of the stored summary it starts from) is what a
//! folder listing costs the server's CPU once the store has read the records; BODY[]
//! is a copy into the response and should run at memory speed. The FETCH items come
//! from parsing a real command and [`fetch::detail`] decides what each message holds,
//! as the session does. Run with `cargo bench --bench imap_fetch`; figures go in
//! docs/PERFORMANCE.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portico_imap::command::{CommandBody, DateTime, FetchAttr};
use portico_imap::fetch::{self, RenderStyle};
use portico_imap::parser::parse_command;
use portico_imap::request::{Detail, MessageData};
use portico_imap::session::STREAM_ABOVE;
use portico_mime::MessageSummary;

/// The corpus messages (`*.eml`, by name) as the store keeps them: bare LFs made CRLF.
fn corpus() -> Vec<(String, Vec<u8>)> {
    portico_testkit::corpus_messages()
        .into_iter()
        .map(|(name, raw)| {
            let stored = portico_store::normalize_line_endings(&raw).into_owned();
            (name, stored)
        })
        .collect()
}

/// The item list of a FETCH command, macros expanded, as the session renders it.
fn fetch_attrs(command: &str) -> Vec<FetchAttr> {
    match parse_command(command.as_bytes())
        .expect("FETCH parses")
        .body
    {
        CommandBody::Fetch { items, .. } => fetch::expand(&items),
        other => panic!("not a FETCH: {other:?}"),
    }
}

/// A message as the host hands it to the renderer for `detail`: the summary from
/// Summary up, the whole message only with Full.
fn message_data(uid: u32, raw: &[u8], detail: Detail) -> MessageData {
    MessageData {
        uid,
        flags: vec!["\\Seen".into(), "$Forwarded".into()],
        internal_date: DateTime {
            timestamp: 1_767_225_600,
            offset: 3600,
        },
        save_date: None,
        size: raw.len() as u64,
        modseq: 42,
        email_id: u64::from(uid),
        summary: (detail >= Detail::Summary).then(|| portico_mime::summarize(raw)),
        fields: None,
        raw: (detail == Detail::Full).then(|| raw.to_vec()),
        raw_in_store: false,
    }
}

/// Renders `* n FETCH (…)` for every message into one buffer, as a scan slice does.
fn render_all(messages: &[MessageData], attrs: &[FetchAttr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * 1024);
    for (seq, message) in (1u32..).zip(messages) {
        fetch::render(&mut out, seq, message, attrs, RenderStyle::default(), false)
            .expect("renders");
    }
    out
}

fn envelope_and_bodystructure(c: &mut Criterion) {
    let corpus = corpus();
    let mut group = c.benchmark_group("imap_fetch");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));

    let commands = [
        (
            "envelope_bodystructure",
            "a FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE)",
        ),
        ("envelope", "a FETCH 1:* (UID FLAGS ENVELOPE)"),
        ("bodystructure", "a FETCH 1:* (UID FLAGS BODYSTRUCTURE)"),
    ];
    for (name, command) in commands {
        let attrs = fetch_attrs(command);
        let detail = fetch::detail(&attrs);
        assert_eq!(detail, Detail::Summary, "{command} needs only the summary");
        let messages: Vec<MessageData> = (1u32..)
            .zip(&corpus)
            .map(|(uid, (_, raw))| message_data(uid, raw, detail))
            .collect();
        group.throughput(Throughput::Elements(messages.len() as u64));
        group.bench_function(
            BenchmarkId::new(name, format!("corpus_{}_messages", messages.len())),
            |b| b.iter(|| render_all(black_box(&messages), &attrs)),
        );
    }

    // One message at a time, for the shapes that cost the most to describe.
    let attrs = fetch_attrs("a FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE)");
    for wanted in [
        "001-plain-ascii",
        "005-multipart-mixed-attachments",
        "007-nested-multipart",
        "008-long-folded-headers",
    ] {
        let (_, raw) = corpus
            .iter()
            .find(|(name, _)| name == wanted)
            .expect("corpus message");
        let messages = [message_data(1, raw, Detail::Summary)];
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("envelope_bodystructure", wanted), |b| {
            b.iter(|| render_all(black_box(&messages), &attrs))
        });
    }

    // The store keeps each summary as bincode (standard configuration, behind a
    // two-byte version marker) and decodes it for every FETCH of these items.
    let stored: Vec<Vec<u8>> = corpus
        .iter()
        .map(|(_, raw)| {
            bincode::serde::encode_to_vec(portico_mime::summarize(raw), bincode::config::standard())
                .expect("summary encodes")
        })
        .collect();
    group.throughput(Throughput::Elements(stored.len() as u64));
    group.bench_function(
        BenchmarkId::new(
            "summary_decode",
            format!("corpus_{}_messages", stored.len()),
        ),
        |b| {
            b.iter(|| {
                for bytes in &stored {
                    let decoded: (MessageSummary, usize) = bincode::serde::decode_from_slice(
                        black_box(bytes),
                        bincode::config::standard(),
                    )
                    .expect("summary decodes");
                    black_box(decoded);
                }
            })
        },
    );
    group.finish();
}

fn body(c: &mut Criterion) {
    let corpus = corpus();
    let attrs = fetch_attrs("a FETCH 1:* (UID BODY.PEEK[])");
    let detail = fetch::detail(&attrs);
    assert_eq!(detail, Detail::Full);
    let mut group = c.benchmark_group("imap_fetch_body");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));

    // Messages up to STREAM_ABOVE are read whole and copied into the response; bigger
    // ones are streamed from the store by the host, not rendered.
    let (small, big): (Vec<_>, Vec<_>) = corpus
        .iter()
        .partition(|(_, raw)| raw.len() as u64 <= STREAM_ABOVE);
    let messages: Vec<MessageData> = (1u32..)
        .zip(&small)
        .map(|(uid, (_, raw))| message_data(uid, raw, detail))
        .collect();
    let bytes: u64 = messages.iter().map(|m| m.size).sum();
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function(
        BenchmarkId::new("body_peek", format!("corpus_{}_messages", messages.len())),
        |b| b.iter(|| render_all(black_box(&messages), &attrs)),
    );
    // The biggest message read whole, for the copy's speed on a large literal.
    for (name, raw) in big {
        let messages = [message_data(1, raw, detail)];
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(BenchmarkId::new("body_peek", name), |b| {
            b.iter(|| render_all(black_box(&messages), &attrs))
        });
    }
    group.finish();
}

criterion_group!(benches, envelope_and_bodystructure, body);
criterion_main!(benches);
