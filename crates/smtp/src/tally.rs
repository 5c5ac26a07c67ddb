//! Which commands a session handled, by name, for the host's statistics.
//!
//! The host (a server exporting metrics) reads the counts with
//! [`crate::Session::drain_commands`]; this crate only counts, with the shared
//! [`portico_tally`] types. Names come from a fixed list, so a client cannot make up new
//! ones: the verbs this server knows, EXPN and HELP included, and `OTHER` for anything
//! else (the real verbs it does not implement, unknown ones, and lines too long to
//! tell).

use portico_tally::NameTable;

use crate::command::Verb;

/// The table of SMTP command names.
pub struct SmtpNames;

impl NameTable for SmtpNames {
    const NAMES: &'static [&'static str] = &[
        "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "EXPN",
        "HELP", "STARTTLS", "AUTH", "OTHER",
    ];
}

/// An SMTP command's name as statistics know it.
pub type CommandName = portico_tally::CommandName<SmtpNames>;

/// SMTP commands counted by name since the host last drained them.
pub(crate) type CommandTally = portico_tally::CommandTally<SmtpNames, { CommandName::COUNT }>;

impl Verb {
    /// The name a command line with this verb is counted under.
    pub(crate) fn command_name(self) -> CommandName {
        // `const` blocks: a name missing from the table fails the build.
        match self {
            Verb::Ehlo => const { CommandName::named("EHLO") },
            Verb::Helo => const { CommandName::named("HELO") },
            Verb::Mail => const { CommandName::named("MAIL") },
            Verb::Rcpt => const { CommandName::named("RCPT") },
            Verb::Data => const { CommandName::named("DATA") },
            Verb::Bdat => const { CommandName::named("BDAT") },
            Verb::Rset => const { CommandName::named("RSET") },
            Verb::Noop => const { CommandName::named("NOOP") },
            Verb::Quit => const { CommandName::named("QUIT") },
            Verb::Vrfy => const { CommandName::named("VRFY") },
            Verb::Expn => const { CommandName::named("EXPN") },
            Verb::Help => const { CommandName::named("HELP") },
            Verb::StartTls => const { CommandName::named("STARTTLS") },
            Verb::Auth => const { CommandName::named("AUTH") },
            Verb::NotImplemented | Verb::Unknown => CommandName::OTHER,
        }
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
                assert_eq!(Verb::of(line.as_bytes()).command_name(), name);
            }
        }
        for line in [&b""[..], b"OTHER", b"ETRN x", b"EHLOX", b"\xff"] {
            assert_eq!(Verb::of(line).command_name(), CommandName::OTHER);
        }
        assert_eq!(CommandName::COUNT, 15);
    }
}
