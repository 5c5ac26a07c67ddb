//! Which commands a session ran, by name, for the host's statistics.
//!
//! The host (a server exporting metrics) reads the counts with
//! [`crate::Session::drain_commands`]; this crate only counts, with the shared
//! [`portico_tally`] types. Names come from a fixed list, so a client cannot make up new
//! ones: the commands the parser knows, the UID forms as `UID FETCH` and so on, and
//! `OTHER` for anything else. A command is counted by the name it starts with, whether
//! or not the rest of it parses.

use portico_tally::NameTable;

/// The table of IMAP command names: the parser's list
/// ([`crate::parser::parse_command`]), upper-cased, then the UID forms; a test keeps the
/// two in step.
pub struct ImapNames;

impl NameTable for ImapNames {
    const NAMES: &'static [&'static str] = &[
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
}

/// An IMAP command's name as statistics know it.
pub type CommandName = portico_tally::CommandName<ImapNames>;

/// IMAP commands counted by name since the host last drained them.
pub(crate) type CommandTally = portico_tally::CommandTally<ImapNames, { CommandName::COUNT }>;

/// The prefix of the UID forms' names.
const UID: &str = "UID ";

/// The name of a whole command as the reader hands it over (tag, name, arguments), in
/// any case.
pub(crate) fn command_name(raw: &[u8]) -> CommandName {
    let (_tag, rest) = word(raw);
    let (name, rest) = word(rest);
    if name.eq_ignore_ascii_case(UID.trim_end().as_bytes()) {
        let (sub, _) = word(rest);
        return CommandName::find(|known| {
            known
                .strip_prefix(UID)
                .is_some_and(|known| known.as_bytes().eq_ignore_ascii_case(sub))
        });
    }
    // A word holds no space, so it never matches a UID form.
    CommandName::of_keyword(name)
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
            assert_eq!(command_name(raw.as_bytes()), name, "{raw:?}");
        }
        assert_eq!(CommandName::all().count(), CommandName::COUNT);
    }

    #[test]
    fn a_command_is_named_by_its_start_whatever_follows() {
        let name = |raw: &[u8]| command_name(raw).as_str();
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
}
