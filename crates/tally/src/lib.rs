//! Counting a session's commands by name, from a fixed table, for the host's statistics.
//!
//! Each protocol crate (POP3, IMAP, SMTP) counts the commands its sessions handle, and
//! the host (the server, which exports metrics) drains the counts after each turn of a
//! machine. Names come from a fixed table per protocol, with `OTHER` last for anything
//! else, so a client cannot make up new ones and the host can register every counter up
//! front. The protocol crates may not depend on one another, so what does not depend on
//! the table lives here: the name type ([`CommandName`]) and the counts
//! ([`CommandTally`]). Each protocol keeps only its table ([`NameTable`]) and how it
//! finds a command's name.
//!
//! This crate is pure: it depends on nothing, and counting allocates nothing.

use std::fmt;
use std::marker::PhantomData;

/// A protocol's fixed table of command names, declared on a marker type.
///
/// ```
/// use portico_tally::{CommandName, CommandTally, NameTable};
///
/// pub struct Pop3Names;
/// impl NameTable for Pop3Names {
///     const NAMES: &'static [&'static str] = &["USER", "PASS", "OTHER"];
/// }
/// pub type Pop3Command = CommandName<Pop3Names>;
/// let mut tally = CommandTally::<Pop3Names, { Pop3Command::COUNT }>::new();
/// tally.count(Pop3Command::of_keyword(b"user"));
/// assert_eq!(tally.drain().next(), Some((Pop3Command::named("USER"), 1)));
/// ```
///
/// A table without `OTHER` last does not build:
///
/// ```compile_fail
/// use portico_tally::{CommandName, NameTable};
///
/// struct Broken;
/// impl NameTable for Broken {
///     const NAMES: &'static [&'static str] = &["USER", "PASS"];
/// }
/// let _ = CommandName::<Broken>::OTHER;
/// ```
pub trait NameTable {
    /// Every name, upper-cased, in index order; `OTHER` last. At most 256 names, the
    /// last of them `OTHER`: a table that breaks this fails the build where it is used.
    const NAMES: &'static [&'static str];
}

/// A command's name as statistics know it: an entry of the table `T`.
pub struct CommandName<T: NameTable> {
    /// Below [`CommandName::COUNT`], so within `T::NAMES`.
    index: u8,
    table: PhantomData<fn() -> T>,
}

impl<T: NameTable> CommandName<T> {
    /// How many names there are. Evaluating it checks the table, at compile time.
    pub const COUNT: usize = {
        let names = T::NAMES;
        assert!(
            !names.is_empty() && names.len() <= 1 << u8::BITS,
            "a name table holds 1 to 256 names"
        );
        assert!(
            same(names[names.len() - 1], "OTHER"),
            "a name table ends in OTHER"
        );
        names.len()
    };

    /// Anything not in the table, and a line too long to tell.
    pub const OTHER: Self = Self::at(Self::COUNT - 1);

    /// Every name, in index order.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..Self::COUNT).map(Self::at)
    }

    /// The name: upper-cased as in the table, or `OTHER`.
    pub fn as_str(self) -> &'static str {
        T::NAMES[usize::from(self.index)]
    }

    /// Its place in [`CommandName::all`], below [`CommandName::COUNT`].
    pub fn index(self) -> usize {
        usize::from(self.index)
    }

    /// The name of a command's keyword, in any case; `OTHER` if the table lacks it.
    pub fn of_keyword(keyword: &[u8]) -> Self {
        Self::find(|name| name.as_bytes().eq_ignore_ascii_case(keyword))
    }

    /// The first name (`OTHER` aside) for which `matches` holds, else `OTHER`.
    pub fn find(matches: impl Fn(&str) -> bool) -> Self {
        T::NAMES[..Self::COUNT - 1]
            .iter()
            .position(|name| matches(name))
            .map_or(Self::OTHER, Self::at)
    }

    /// The entry spelled exactly `name`, for a name the protocol knows when it is
    /// built: inside a `const { }` block a name the table lacks fails the build.
    ///
    /// # Panics
    ///
    /// When the table has no entry `name` (at compile time, in a `const` block).
    pub const fn named(name: &str) -> Self {
        let mut i = 0;
        while i < Self::COUNT {
            if same(T::NAMES[i], name) {
                return Self::at(i);
            }
            i += 1;
        }
        panic!("no such name in the table")
    }

    /// The entry at `index`, which the caller keeps below [`CommandName::COUNT`] (at
    /// most 256, so it fits a `u8`).
    const fn at(index: usize) -> Self {
        CommandName {
            index: index as u8,
            table: PhantomData,
        }
    }
}

/// `a == b`, in a `const` context.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// By hand rather than derived: a derive would ask the same of the marker type `T`.
impl<T: NameTable> Clone for CommandName<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: NameTable> Copy for CommandName<T> {}

impl<T: NameTable> PartialEq for CommandName<T> {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}

impl<T: NameTable> Eq for CommandName<T> {}

impl<T: NameTable> fmt::Debug for CommandName<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CommandName").field(&self.as_str()).finish()
    }
}

/// Commands counted by name since the host last drained them. `N` is the table's
/// length, [`CommandName::COUNT`] (a stable type cannot compute it from `T`); another
/// `N` fails the build.
pub struct CommandTally<T: NameTable, const N: usize> {
    counts: [u32; N],
    /// Some count is not zero: draining an idle session's tally skips the scan.
    pending: bool,
    table: PhantomData<fn() -> T>,
}

impl<T: NameTable, const N: usize> Default for CommandTally<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: NameTable, const N: usize> CommandTally<T, N> {
    /// A tally with every count at zero.
    pub const fn new() -> Self {
        const {
            assert!(
                N == CommandName::<T>::COUNT,
                "a tally has one count per name"
            )
        };
        CommandTally {
            counts: [0; N],
            pending: false,
            table: PhantomData,
        }
    }

    /// Counts one command named `name`; a count that reaches `u32::MAX` stays there.
    pub fn count(&mut self, name: CommandName<T>) {
        let count = &mut self.counts[name.index()];
        *count = count.saturating_add(1);
        self.pending = true;
    }

    /// Each name counted since the last call, with its count; the counts start again
    /// from zero.
    pub fn drain(&mut self) -> impl Iterator<Item = (CommandName<T>, u32)> + '_ {
        let counts: &mut [u32] = match std::mem::take(&mut self.pending) {
            true => &mut self.counts,
            false => &mut [],
        };
        counts.iter_mut().enumerate().filter_map(|(i, count)| {
            let n = std::mem::take(count);
            (n > 0).then_some((CommandName::at(i), n))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Colours;

    impl NameTable for Colours {
        const NAMES: &'static [&'static str] = &["RED", "GREEN", "DARK RED", "OTHER"];
    }

    type Colour = CommandName<Colours>;
    type ColourTally = CommandTally<Colours, { Colour::COUNT }>;

    #[test]
    fn names_are_matched_in_any_case_and_the_rest_is_other() {
        for name in Colour::all() {
            if name != Colour::OTHER {
                let lower = name.as_str().to_ascii_lowercase();
                assert_eq!(Colour::of_keyword(lower.as_bytes()), name);
            }
        }
        for keyword in [&b""[..], b"OTHER", b"other", b"RE", b"REDS", b"\xff"] {
            assert_eq!(Colour::of_keyword(keyword), Colour::OTHER, "{keyword:?}");
        }
        assert_eq!(Colour::OTHER.as_str(), "OTHER");
    }

    #[test]
    fn names_are_indexed_in_table_order() {
        let names: Vec<_> = Colour::all().map(|n| (n.index(), n.as_str())).collect();
        assert_eq!(
            names,
            [(0, "RED"), (1, "GREEN"), (2, "DARK RED"), (3, "OTHER")]
        );
        assert_eq!(Colour::COUNT, 4);
        assert_eq!(Colour::OTHER.index(), 3);
    }

    #[test]
    fn find_takes_the_first_match_and_never_other() {
        assert_eq!(Colour::find(|n| n.ends_with("RED")).as_str(), "RED");
        assert_eq!(
            Colour::find(|n| n.starts_with("DARK ")).as_str(),
            "DARK RED"
        );
        assert_eq!(Colour::find(|n| n == "OTHER"), Colour::OTHER);
        assert_eq!(Colour::find(|_| false), Colour::OTHER);
    }

    #[test]
    fn named_is_the_exact_entry_and_works_in_const() {
        const GREEN: Colour = Colour::named("GREEN");
        assert_eq!(GREEN.as_str(), "GREEN");
        assert_eq!(Colour::named("OTHER"), Colour::OTHER);
        assert_eq!(format!("{GREEN:?}"), r#"CommandName("GREEN")"#);
    }

    #[test]
    #[should_panic(expected = "no such name")]
    fn named_refuses_a_name_the_table_lacks() {
        let _ = Colour::named("green");
    }

    #[test]
    fn a_drained_tally_starts_again_from_zero() {
        let mut tally = ColourTally::default();
        assert_eq!(tally.drain().count(), 0);
        tally.count(Colour::of_keyword(b"GREEN"));
        tally.count(Colour::of_keyword(b"green"));
        tally.count(Colour::OTHER);
        let drained: Vec<_> = tally.drain().map(|(n, c)| (n.as_str(), c)).collect();
        assert_eq!(drained, [("GREEN", 2), ("OTHER", 1)]);
        assert_eq!(tally.drain().count(), 0);
    }

    #[test]
    fn a_count_saturates() {
        let mut tally = ColourTally::new();
        tally.counts[0] = u32::MAX - 1;
        tally.pending = true;
        tally.count(Colour::named("RED"));
        tally.count(Colour::named("RED"));
        assert_eq!(
            tally.drain().collect::<Vec<_>>(),
            [(Colour::named("RED"), u32::MAX)]
        );
    }
}
