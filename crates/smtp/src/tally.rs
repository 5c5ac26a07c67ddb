//! Which commands a session handled, by name, for the host's statistics.
//!
//! The host (a server exporting metrics) reads the counts with
//! [`crate::Session::drain_commands`]; this crate only counts. Names come from a fixed
//! list, so a client cannot make up new ones: the verbs this server knows, EXPN and
//! HELP included, and `OTHER` for anything else (the real verbs it does not implement,
//! unknown ones, and lines too long to tell).

use crate::command::Verb;

/// Every name, upper-cased, in index order; `OTHER` last.
const NAMES: [&str; 15] = [
    "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "EXPN", "HELP",
    "STARTTLS", "AUTH", "OTHER",
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

    /// The name: the verb upper-cased, or `OTHER`.
    pub fn as_str(self) -> &'static str {
        NAMES[usize::from(self.0)]
    }

    /// Its place in [`CommandName::all`], below [`CommandName::COUNT`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The name of a command line's verb.
    pub(crate) fn of_verb(verb: Verb) -> CommandName {
        let index = match verb {
            Verb::Ehlo => 0,
            Verb::Helo => 1,
            Verb::Mail => 2,
            Verb::Rcpt => 3,
            Verb::Data => 4,
            Verb::Bdat => 5,
            Verb::Rset => 6,
            Verb::Noop => 7,
            Verb::Quit => 8,
            Verb::Vrfy => 9,
            Verb::Expn => 10,
            Verb::Help => 11,
            Verb::StartTls => 12,
            Verb::Auth => 13,
            Verb::NotImplemented | Verb::Unknown => return CommandName::OTHER,
        };
        CommandName(index)
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
    fn each_verb_has_its_own_name_and_the_rest_is_other() {
        for name in CommandName::all() {
            if name != CommandName::OTHER {
                let line = format!("{} x", name.as_str().to_ascii_lowercase());
                assert_eq!(CommandName::of_verb(Verb::of(line.as_bytes())), name);
            }
        }
        for line in [&b""[..], b"OTHER", b"ETRN x", b"EHLOX", b"\xff"] {
            assert_eq!(CommandName::of_verb(Verb::of(line)), CommandName::OTHER);
        }
        assert_eq!(CommandName::all().count(), CommandName::COUNT);
        assert_eq!(CommandName::OTHER.as_str(), "OTHER");
    }

    #[test]
    fn a_drained_tally_starts_again_from_zero() {
        let mut tally = CommandTally::default();
        assert_eq!(tally.drain().count(), 0);
        tally.count(CommandName::of_verb(Verb::Noop));
        tally.count(CommandName::of_verb(Verb::Noop));
        tally.count(CommandName::OTHER);
        let drained: Vec<_> = tally.drain().map(|(n, c)| (n.as_str(), c)).collect();
        assert_eq!(drained, [("NOOP", 2), ("OTHER", 1)]);
        assert_eq!(tally.drain().count(), 0);
    }
}
