//! Which commands a session handled, by name, for the host's statistics.
//!
//! The host (a server exporting metrics) reads the counts with
//! [`crate::Session::drain_commands`]; this crate only counts, with the shared
//! [`portico_tally`] types. Names come from a fixed list, so a client cannot make up new
//! ones: the keywords of RFC 1939, 2449, 2595, 5034 and 6856, including APOP and UTF8,
//! which this server does not implement but a client may well try, and `OTHER` for
//! anything else.

use portico_tally::NameTable;

/// The table of POP3 command names.
pub struct Pop3Names;

impl NameTable for Pop3Names {
    const NAMES: &'static [&'static str] = &[
        "USER", "PASS", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "QUIT", "TOP", "UIDL",
        "CAPA", "STLS", "AUTH", "APOP", "UTF8", "OTHER",
    ];
}

/// A POP3 command's name as statistics know it.
pub type CommandName = portico_tally::CommandName<Pop3Names>;

/// POP3 commands counted by name since the host last drained them.
pub(crate) type CommandTally = portico_tally::CommandTally<Pop3Names, { CommandName::COUNT }>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_whole_words_and_the_rest_is_other() {
        assert_eq!(CommandName::COUNT, 17);
        assert_eq!(CommandName::of_keyword(b"apop").as_str(), "APOP");
        assert_eq!(CommandName::of_keyword(b"Utf8").as_str(), "UTF8");
        for keyword in [&b""[..], b"OTHER", b"STATS", b"TO", b"\xff"] {
            assert_eq!(CommandName::of_keyword(keyword), CommandName::OTHER);
        }
    }
}
