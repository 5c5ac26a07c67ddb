//! Which commands a session ran, by name, for the host's statistics.
//!
//! The host (a server exporting metrics) reads the counts with
//! [`crate::Session::drain_commands`]; this crate only counts. Names come from a fixed
//! list, so a client cannot make up new ones: the commands the parser knows, the UID
//! forms as `UID FETCH` and so on, and `OTHER` for anything else. A command is counted
//! by the name it starts with, whether or not the rest of it parses.

/// Every name, upper-cased, in index order; `OTHER` last. The parser's list
/// ([`crate::parser::parse_command`]); a test keeps the two in step.
const NAMES: [&str; 50] = [
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "STARTTLS",
    "AUTHENTICATE",
    "LOGIN",
    "ENABLE",
    "ID",
    "COMPRESS",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "NAMESPACE",
    "STATUS",
    "APPEND",
    "IDLE",
    "NOTIFY",
    "GETMETADATA",
    "SETMETADATA",
    "GETQUOTA",
    "GETQUOTAROOT",
    "SETQUOTA",
    "UNAUTHENTICATE",
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "EXPUNGE",
    "SEARCH",
    "SORT",
    "THREAD",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "CANCELUPDATE",
    "UID FETCH",
    "UID SEARCH",
    "UID SORT",
    "UID THREAD",
    "UID STORE",
    "UID COPY",
    "UID MOVE",
    "UID EXPUNGE",
    "OTHER",
];

/// The prefix of the UID forms' names.
const UID: &str = "UID ";

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

    /// The name: the command upper-cased, or `OTHER`.
    pub fn as_str(self) -> &'static str {
        NAMES[usize::from(self.0)]
    }

    /// Its place in [`CommandName::all`], below [`CommandName::COUNT`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The name of a whole command as the reader hands it over (tag, name, arguments),
    /// in any case.
    pub(crate) fn of_command(raw: &[u8]) -> CommandName {
        let (_tag, rest) = word(raw);
        let (name, rest) = word(rest);
        if name.eq_ignore_ascii_case(UID.trim_end().as_bytes()) {
            let (sub, _) = word(rest);
            return lookup(|known| {
                known
                    .strip_prefix(UID)
                    .is_some_and(|known| known.as_bytes().eq_ignore_ascii_case(sub))
            });
        }
        lookup(|known| !known.starts_with(UID) && known.as_bytes().eq_ignore_ascii_case(name))
    }
}

/// The first word of `bytes` and what follows the space after it; a word ends at a
/// space or a line end.
fn word(bytes: &[u8]) -> (&[u8], &[u8]) {
    let end = bytes
        .iter()
        .position(|b| matches!(b, b' ' | b'\r' | b'\n'))
        .unwrap_or(bytes.len());
    let rest = match bytes.get(end) {
        Some(b' ') => &bytes[end + 1..],
        _ => &[],
    };
    (&bytes[..end], rest)
}

/// The first name (`OTHER` aside) that `matches`, else `OTHER`.
fn lookup(matches: impl Fn(&str) -> bool) -> CommandName {
    NAMES[..NAMES.len() - 1]
        .iter()
        .position(|known| matches(known))
        .map_or(CommandName::OTHER, |i| CommandName(i as u8))
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
    use crate::parser::parse_command;

    #[test]
    fn every_name_is_a_command_the_parser_knows() {
        for name in CommandName::all() {
            let raw = format!("a {}\r\n", name.as_str().to_ascii_lowercase());
            let error = parse_command(raw.as_bytes())
                .err()
                .map(|e| format!("{e:?}"));
            let unknown = error.as_deref().is_some_and(|e| e.contains("Unknown"));
            assert_eq!(unknown, name == CommandName::OTHER, "{raw:?}: {error:?}");
            assert_eq!(CommandName::of_command(raw.as_bytes()), name, "{raw:?}");
        }
        assert_eq!(CommandName::all().count(), CommandName::COUNT);
    }

    #[test]
    fn a_command_is_named_by_its_start_whatever_follows() {
        let name = |raw: &[u8]| CommandName::of_command(raw).as_str();
        assert_eq!(name(b"a1 FETCH 1:* (FLAGS)\r\n"), "FETCH");
        assert_eq!(name(b"a1 uid fetch 1:* FLAGS\r\n"), "UID FETCH");
        assert_eq!(name(b"a1 UID EXPUNGE\r\n"), "UID EXPUNGE");
        assert_eq!(name(b"a1 APPEND INBOX {3}\r\nabc\r\n"), "APPEND");
        assert_eq!(name(b"a1 FETCH garbage"), "FETCH");
        assert_eq!(name(b"a1 UID CAPABILITY\r\n"), "OTHER");
        assert_eq!(name(b"a1 UID\r\n"), "OTHER");
        assert_eq!(name(b"a1 XYZZY\r\n"), "OTHER");
        assert_eq!(name(b"a1 FETCHES 1\r\n"), "OTHER");
        assert_eq!(name(b"a1\r\n"), "OTHER");
        assert_eq!(name(b""), "OTHER");
        assert_eq!(name(b"a1 OTHER\r\n"), "OTHER");
    }

    #[test]
    fn a_drained_tally_starts_again_from_zero() {
        let mut tally = CommandTally::default();
        assert_eq!(tally.drain().count(), 0);
        tally.count(CommandName::of_command(b"a NOOP\r\n"));
        tally.count(CommandName::of_command(b"b noop\r\n"));
        tally.count(CommandName::OTHER);
        let drained: Vec<_> = tally.drain().map(|(n, c)| (n.as_str(), c)).collect();
        assert_eq!(drained, [("NOOP", 2), ("OTHER", 1)]);
        assert_eq!(tally.drain().count(), 0);
    }
}
