//! Feeds arbitrary bytes to the CATENATE URL reader (RFC 5092 as RFC 4469 takes it): it
//! never panics, a URL it accepts names a message (a UID, a mailbox unless relative to
//! the selected one), and what `[BADURL …]` would show is a valid url-resp-text.
//!
//! Run with `cargo fuzz run parse_url` from `crates/imap`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_imap::url::{parse, response_text};

fuzz_target!(|data: &[u8]| {
    if let Ok(url) = parse(data) {
        assert!(url.uid > 0);
        assert!(url.mailbox.as_deref().is_none_or(|name| !name.is_empty()));
    }
    let shown = response_text(data);
    assert!(shown.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b']'));
});
