//! Which commands a session handled, by name, for the host's statistics.
//!
//! The host (a server exporting metrics) reads the counts with
//! [`crate::Session::drain_commands`]; this crate only counts. Names come from a fixed
//! list, so a client cannot make up new ones: the keywords of RFC 1939, 2449, 2595,
//! 5034 and 6856, including APOP and UTF8, which this server does not implement but a
//! client may well try, and `OTHER` for anything else.

/// Every name, upper-cased, in index order; `OTHER` last.
const NAMES: [&str; 17] = [
    "USER", "PASS", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "QUIT", "TOP", "UIDL", "CAPA",
    "STLS", "AUTH", "APOP", "UTF8", "OTHER",
];

/// A command's name as statistics know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandName(u8);

impl CommandName {
    /// How many names there are.
    pub const COUNT: usize = NAMES.len();
    /// Anything not in the list, and a line too long to tell.
    pub const OTHER: CommandName = CommandName(NAMES.len() as u8 - 1);

    /// Every name, in index order.
    pub fn all() -> impl Iterator<Item = CommandName> {
        (0..NAMES.len() as u8).map(CommandName)
    }

    /// The name: the keyword upper-cased, or `OTHER`.
    pub fn as_str(self) -> &'static str {
        NAMES[usize::from(self.0)]
    }

    /// Its place in [`CommandName::all`], below [`CommandName::COUNT`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The name of a command line's keyword, in any case.
    pub(crate) fn of_keyword(keyword: &[u8]) -> CommandName {
        NAMES[..NAMES.len() - 1]
            .iter()
            .position(|name| name.as_bytes().eq_ignore_ascii_case(keyword))
            .map_or(CommandName::OTHER, |i| CommandName(i as u8))
    }
}

/// Commands counted by name since the host last drained them.
pub(crate) struct CommandTally {
    counts: [u32; CommandName::COUNT],
    /// Some count is not zero: draining an idle session's tally skips the scan.
    pending: bool,
}

impl Default for CommandTally {
    fn default() -> Self {
        CommandTally {
            counts: [0; CommandName::COUNT],
            pending: false,
        }
    }
}

impl CommandTally {
    pub(crate) fn count(&mut self, name: CommandName) {
        let count = &mut self.counts[name.index()];
        *count = count.saturating_add(1);
        self.pending = true;
    }

    /// Each name counted since the last call, with its count; the counts start again
    /// from zero.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (CommandName, u32)> + '_ {
        let counts: &mut [u32] = match std::mem::take(&mut self.pending) {
            true => &mut self.counts,
            false => &mut [],
        };
        counts.iter_mut().enumerate().filter_map(|(i, count)| {
            let n = std::mem::take(count);
            (n > 0).then_some((CommandName(i as u8), n))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_matched_in_any_case_and_the_rest_is_other() {
        for name in CommandName::all() {
            if name != CommandName::OTHER {
                let lower = name.as_str().to_ascii_lowercase();
                assert_eq!(CommandName::of_keyword(lower.as_bytes()), name);
            }
        }
        for keyword in [&b""[..], b"OTHER", b"STATS", b"TO", b"\xff"] {
            assert_eq!(CommandName::of_keyword(keyword), CommandName::OTHER);
        }
        assert_eq!(CommandName::all().count(), CommandName::COUNT);
        assert_eq!(CommandName::OTHER.as_str(), "OTHER");
    }

    #[test]
    fn a_drained_tally_starts_again_from_zero() {
        let mut tally = CommandTally::default();
        assert_eq!(tally.drain().count(), 0);
        tally.count(CommandName::of_keyword(b"NOOP"));
        tally.count(CommandName::of_keyword(b"noop"));
        tally.count(CommandName::OTHER);
        let drained: Vec<_> = tally.drain().map(|(n, c)| (n.as_str(), c)).collect();
        assert_eq!(drained, [("NOOP", 2), ("OTHER", 1)]);
        assert_eq!(tally.drain().count(), 0);
    }
}
