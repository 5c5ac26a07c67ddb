//! IMAP command parsing (`portico_imap::parser::parse_command`) of the commands real
//! clients send most, each framed as the reader hands it over (lines and literal bytes
//! together). Every command a session runs goes through the parser first, on the thread
//! that serves sessions, so its cost per byte bounds how many commands a node takes in;
//! a long UID set (a client's SEARCH result sent back) and an APPEND literal are the
//! biggest inputs it sees. Run with `cargo bench --bench imap_parse`; figures go in
//! docs/PERFORMANCE.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portico_imap::parser::parse_command;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");

/// Thunderbird's folder listing with the MIME items a client with a preview pane adds.
const UID_FETCH: &str = "a1 UID FETCH 1:* (UID RFC822.SIZE FLAGS INTERNALDATE MODSEQ \
    ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date \
    Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type \
    Reply-To)] BODY.PEEK[1]<0.2048> BINARY.SIZE[1] PREVIEW) (CHANGEDSINCE 12345)\r\n";

/// A search bar's query with nested keys, a date range and a quoted string.
const SEARCH: &str = "a2 UID SEARCH RETURN (MIN MAX COUNT) CHARSET UTF-8 \
    OR (FROM \"alice@example.com\" SUBJECT \"quarterly report\") \
    (NOT (OR SEEN (FLAGGED DELETED))) SINCE 1-Jan-2024 BEFORE 1-Jan-2026 \
    OR TO bob (HEADER X-Mailer \"Apple Mail\" LARGER 10000) \
    UNKEYWORD $Junk NOT (OR (BODY \"unsubscribe\") (TEXT \"newsletter\"))\r\n";

/// Flags set on a selection, with CONDSTORE's guard (RFC 7162).
const STORE: &str = "a4 UID STORE 1:500,502,510:600,604,700:* (UNCHANGEDSINCE 320162338) \
    +FLAGS.SILENT (\\Seen \\Answered $Forwarded $MDNSent)\r\n";

/// `UID FETCH` of 2,000 scattered UIDs, as a client sends back a SEARCH result:
/// every other UID, with a range every tenth.
fn long_uid_set() -> Vec<u8> {
    let mut set = String::new();
    let mut uid = 1u32;
    for i in 0..2000 {
        if !set.is_empty() {
            set.push(',');
        }
        if i % 10 == 9 {
            set.push_str(&format!("{uid}:{}", uid + 5));
            uid += 7;
        } else {
            set.push_str(&uid.to_string());
            uid += 2;
        }
    }
    format!("a5 UID FETCH {set} (UID FLAGS)\r\n").into_bytes()
}

/// `APPEND` of a corpus message with flags and a date, as one framed command.
fn append(file: &str) -> Vec<u8> {
    let message = std::fs::read(format!("{CORPUS}/{file}")).expect("corpus message");
    let mut command = format!(
        "a3 APPEND Sent (\\Seen $Forwarded) \"17-Jul-1996 02:44:25 -0700\" {{{}}}\r\n",
        message.len()
    )
    .into_bytes();
    command.extend_from_slice(&message);
    command.extend_from_slice(b"\r\n");
    command
}

fn parsing(c: &mut Criterion) {
    let commands: Vec<(&str, Vec<u8>)> = vec![
        ("uid_fetch_many_items", UID_FETCH.as_bytes().to_vec()),
        ("search_nested", SEARCH.as_bytes().to_vec()),
        ("store_flags", STORE.as_bytes().to_vec()),
        ("uid_fetch_2000_uid_set", long_uid_set()),
        ("append_literal_2KB", append("021-bulk-021.eml")),
        (
            "append_literal_39KB",
            append("005-multipart-mixed-attachments.eml"),
        ),
    ];
    let mut group = c.benchmark_group("imap_parse");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for (name, command) in &commands {
        // A bench of a command the parser refuses would measure the error path.
        if let Err(e) = parse_command(command) {
            panic!("{name} does not parse: {e:?}");
        }
        group.throughput(Throughput::Bytes(command.len() as u64));
        group.bench_with_input(
            BenchmarkId::new(*name, format!("{}B", command.len())),
            command,
            |b, command| b.iter(|| parse_command(black_box(command))),
        );
    }
    group.finish();
}

criterion_group!(benches, parsing);
criterion_main!(benches);
