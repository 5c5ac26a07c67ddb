//! Command-line grammar (RFC 1939 §3): a case-insensitive keyword, then arguments
//! separated by spaces.

/// The keywords this server knows. APOP is deliberately absent: it needs a stored
/// plaintext password and MD5, and CAPA does not advertise it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    User,
    Pass,
    Auth,
    Stls,
    Capa,
    Quit,
    Stat,
    List,
    Retr,
    Dele,
    Noop,
    Rset,
    Top,
    Uidl,
    /// Anything else, including an empty line or a keyword that is not ASCII.
    Unknown,
}

const KEYWORDS: [(&[u8], Command); 14] = [
    (b"USER", Command::User),
    (b"PASS", Command::Pass),
    (b"AUTH", Command::Auth),
    (b"STLS", Command::Stls),
    (b"CAPA", Command::Capa),
    (b"QUIT", Command::Quit),
    (b"STAT", Command::Stat),
    (b"LIST", Command::List),
    (b"RETR", Command::Retr),
    (b"DELE", Command::Dele),
    (b"NOOP", Command::Noop),
    (b"RSET", Command::Rset),
    (b"TOP", Command::Top),
    (b"UIDL", Command::Uidl),
];

impl Command {
    fn from_keyword(keyword: &[u8]) -> Command {
        KEYWORDS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(keyword))
            .map_or(Command::Unknown, |&(_, command)| command)
    }
}

/// A command line taken apart.
pub(crate) struct CommandLine<'a> {
    pub(crate) command: Command,
    /// The keyword as sent, for statistics ([`crate::tally`]).
    pub(crate) keyword: &'a [u8],
    /// Everything after the single space that follows the keyword, untouched: PASS takes
    /// its password from here, spaces included.
    pub(crate) rest: &'a [u8],
}

impl<'a> CommandLine<'a> {
    pub(crate) fn parse(line: &'a [u8]) -> CommandLine<'a> {
        let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
            Some(space) => (&line[..space], &line[space + 1..]),
            None => (line, &b""[..]),
        };
        CommandLine {
            command: Command::from_keyword(keyword),
            keyword,
            rest,
        }
    }

    /// The space-separated arguments; runs of spaces count as one separator.
    pub(crate) fn args(&self) -> Vec<&'a [u8]> {
        self.rest
            .split(|&b| b == b' ')
            .filter(|arg| !arg.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(CommandLine::parse(b"stat").command, Command::Stat);
        assert_eq!(CommandLine::parse(b"StLs").command, Command::Stls);
        assert_eq!(CommandLine::parse(b"top 1 2").command, Command::Top);
        assert_eq!(CommandLine::parse(b"uidl").command, Command::Uidl);
    }

    #[test]
    fn unknown_keywords() {
        for line in [
            b"" as &[u8],
            b" STAT",
            b"STATS",
            b"TOPS 1 1",
            b"TO",
            b"APOP a b",
            b"\xff\xfe\xfd\xfc",
            b"ST\0T",
        ] {
            assert_eq!(
                CommandLine::parse(line).command,
                Command::Unknown,
                "{line:?}"
            );
        }
    }

    #[test]
    fn rest_keeps_spaces() {
        let line = CommandLine::parse(b"PASS  two  spaces ");
        assert_eq!(line.command, Command::Pass);
        assert_eq!(line.rest, b" two  spaces ");
    }

    #[test]
    fn args_skip_repeated_spaces() {
        let line = CommandLine::parse(b"TOP  1   10 ");
        assert_eq!(line.args(), vec![&b"1"[..], b"10"]);
        assert!(CommandLine::parse(b"STAT").args().is_empty());
    }
}
