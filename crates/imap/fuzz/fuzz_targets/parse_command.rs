//! Feeds arbitrary bytes through the command reader (in the split the fuzzer chose) and
//! every framed command through the parser; re-encodes what parses and checks that the
//! encoding parses back to the same command.
//!
//! Run with `cargo fuzz run parse_command` from `crates/imap`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_imap::parser::parse_command;
use portico_imap::reader::{CommandReader, ReadEvent, ReaderLimits};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the split point and whether continuations are accepted.
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let mut reader = CommandReader::new(ReaderLimits {
        max_line: 4096,
        max_literal: 4096,
        max_command: 16 * 1024,
        // Every other input under LITERAL- (RFC 7888), the rest under LITERAL+.
        max_non_sync_literal: if control & 2 == 0 { 4096 } else { u64::MAX },
    });
    let cut = usize::from(control) % (input.len() + 1);
    let accept = control & 1 == 0;
    for chunk in [&input[..cut], &input[cut..]] {
        reader.push(chunk);
        while let Some(event) = reader.next_event() {
            match event {
                ReadEvent::NeedContinuation { .. } => reader.continuation_answered(accept),
                ReadEvent::Command(raw) => {
                    assert!(raw.len() <= 16 * 1024);
                    if let Ok(cmd) = parse_command(&raw) {
                        let wire = cmd.encode();
                        assert_eq!(parse_command(&wire).as_ref(), Ok(&cmd));
                    }
                }
                ReadEvent::Line(_) | ReadEvent::TooBig { .. } => {}
            }
        }
    }
    // Also the parser alone, on the raw input.
    let _ = parse_command(input);
});
