//! The i;unicode-casemap comparator (RFC 5051): how SEARCH and SORT compare strings
//! (I18NLEVEL=1, RFC 5255 §4.3), and THREAD its base subjects (RFC 5256 §2.1).
//!
//! RFC 5051 §2 prepares a string one codepoint at a time: (a) replace the codepoint
//! by its titlecase, UnicodeData.txt's *simple* titlecase mapping; (b) replace the
//! result by its decomposition, applied recursively (the compatibility decomposition
//! NFKD uses). Equality, substring and order are then those of the prepared UTF-8
//! octets ([`fold`] gives them; Rust compares `str` by octets, so `==`, `<` and
//! `str::contains` on folded strings are the comparator's operations).
//!
//! - Titlecase: the standard library has only the *full* case mappings
//!   (`char::to_uppercase` applies SpecialCasing.txt: `ß` → `SS`), and no titlecase.
//!   [`titlecase`] derives the simple mapping from it: UnicodeData.txt's titlecase is
//!   its uppercase except for the Latin digraphs (`Ǆ ǅ ǆ` → `ǅ`) and the Georgian
//!   Mkhedruli letters (titlecase themselves, uppercase Mtavruli); the simple
//!   uppercase is the full one where that is one character, and where the full one is
//!   longer the character itself, except for 27 Greek letters with ypogegrammeni
//!   (`ᾀ` → `ᾈ`). This was checked against every codepoint of UnicodeData.txt 15.0.
//! - Decomposition: `unicode-normalization`'s compatibility decomposition of one
//!   character (Hangul syllables included). Like RFC 5051's steps, and Dovecot, it does
//!   not reorder combining marks as NFKD of a whole string would: only two or more
//!   marks typed in a non-canonical order (`a` U+0316 U+0301 against `a` U+0301 U+0316)
//!   compare differently for it.
//! - The decomposition comes after the titlecase and is not titlecased again: `ﬁ`
//!   prepares to `fi`, which is not `FI`, and `ǆ` to `Dz` U+030C. That is the order of
//!   RFC 5051's steps (and what Dovecot does).
//!
//! Since each character is prepared on its own, the preparation of a concatenation is
//! the concatenation of the preparations. So a folded message body holds a folded
//! needle exactly when RFC 5051's substring operation says the body holds the needle,
//! and the full-text index, which keeps the trigrams of folded text, can never rule out
//! a message that matches.
//!
//! Callers hand in `str`: undecodable octets were replaced by U+FFFD when the text was
//! decoded (as Dovecot does), so RFC 5051's fallback to i;octet for strings that are
//! not valid in their charset does not arise.
//!
//! ASCII, the usual text, takes a fast path: it is uppercased and nothing in it
//! decomposes.

use unicode_normalization::char::decompose_compatible;

/// `s` prepared by RFC 5051 §2 (the "titlecased canonicalized UTF-8" string).
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    fold_into(s, &mut out);
    out
}

/// Appends `s` prepared by RFC 5051 §2 to `out`.
pub fn fold_into(s: &str, out: &mut String) {
    let mut rest = s;
    while !rest.is_empty() {
        // A run of ASCII at once: uppercasing is its whole preparation.
        let ascii = ascii_prefix(rest.as_bytes());
        if ascii > 0 {
            let start = out.len();
            out.push_str(&rest[..ascii]);
            out[start..].make_ascii_uppercase();
            rest = &rest[ascii..];
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            decompose_compatible(titlecase(c), |d| out.push(d));
            rest = chars.as_str();
        }
    }
}

/// How many octets `bytes` starts with are ASCII, eight at a time (`<[u8]>::is_ascii`
/// tests a word at once; a byte-by-byte scan costs more than the uppercasing).
fn ascii_prefix(bytes: &[u8]) -> usize {
    let mut n = 0;
    for chunk in bytes.chunks_exact(8) {
        if !chunk.is_ascii() {
            break;
        }
        n += 8;
    }
    n + bytes[n..].iter().take_while(|b| b.is_ascii()).count()
}

/// Whether `haystack` contains `needle` under i;unicode-casemap (RFC 5051 substring).
pub fn contains(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    // Both ASCII (the usual header field): the same answer without folded copies. Not
    // otherwise: some non-ASCII characters fold to ASCII (the Kelvin sign to `K`).
    if haystack.is_ascii() && needle.is_ascii() {
        let needle = needle.as_bytes();
        return haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle));
    }
    fold(haystack).contains(&fold(needle))
}

/// Whether `folded` (already [`fold`]ed) contains `needle` (not folded).
pub fn folded_contains(folded: &str, needle: &str) -> bool {
    needle.is_empty() || folded.contains(&fold(needle))
}

/// The simple titlecase mapping of `c` (UnicodeData.txt field 14, or the simple
/// uppercase mapping where that field is empty; `c` itself where both are).
pub fn titlecase(c: char) -> char {
    match c {
        // The digraphs: DŽ Dž dž, LJ Lj lj, NJ Nj nj, DZ Dz dz have their own titlecase.
        '\u{01C4}'..='\u{01C6}' => '\u{01C5}',
        '\u{01C7}'..='\u{01C9}' => '\u{01C8}',
        '\u{01CA}'..='\u{01CC}' => '\u{01CB}',
        '\u{01F1}'..='\u{01F3}' => '\u{01F2}',
        // Georgian Mkhedruli: uppercased to Mtavruli (Unicode 11), titlecased to itself.
        '\u{10D0}'..='\u{10FA}' | '\u{10FD}'..='\u{10FF}' => c,
        _ => simple_uppercase(c),
    }
}

/// UnicodeData.txt's simple uppercase mapping (field 12), or `c`.
fn simple_uppercase(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    let mut full = c.to_uppercase();
    match (full.next(), full.next()) {
        (Some(upper), None) => upper,
        // A full mapping of several characters (SpecialCasing.txt: `ß` → `SS`, `ŉ` →
        // `ʼN`, `ﬁ` → `FI`): no simple one, except for the Greek letters with
        // ypogegrammeni, whose simple uppercase has prosgegrammeni (`ᾀ` → `ᾈ`, where
        // the full one is `ἈΙ`).
        _ => {
            let offset = match c {
                '\u{1F80}'..='\u{1F87}' | '\u{1F90}'..='\u{1F97}' | '\u{1FA0}'..='\u{1FA7}' => 8,
                '\u{1FB3}' | '\u{1FC3}' | '\u{1FF3}' => 9,
                _ => 0,
            };
            char::from_u32(c as u32 + offset).unwrap_or(c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_uppercased_and_nothing_else_changes() {
        assert_eq!(fold("Plain! text_42 [x]"), "PLAIN! TEXT_42 [X]");
        assert_eq!(fold(""), "");
        // Upper case, so `_` (0x5F) sorts after the letters, as in i;ascii-casemap.
        assert!(fold("z") < fold("_"));
        assert!(fold("a") < fold("B") && fold("b") > fold("A"));
    }

    #[test]
    fn accents_decompose_so_composed_and_decomposed_spellings_are_equal() {
        // é (U+00E9) → É (U+00C9) → E U+0301, as e U+0301 → E U+0301.
        assert_eq!(fold("\u{E9}"), "E\u{301}");
        assert_eq!(fold("e\u{301}"), "E\u{301}");
        assert_eq!(fold("caf\u{E9}"), fold("CAFE\u{301}"));
        assert_eq!(fold("c\u{F4}t\u{E9}"), "CO\u{302}TE\u{301}");
        assert_eq!(
            fold("\u{FC} \u{B3}"),
            "U\u{308} 3",
            "ü and superscript three"
        );
        // The substring operation works on the prepared form: an unaccented needle is
        // found in accented text (its base letter is there), not the other way round.
        assert!(contains("Caf\u{E9} au lait", "CAFE\u{301}"));
        assert!(contains("Caf\u{E9} au lait", "cafe"));
        assert!(!contains("Cafe au lait", "caf\u{E9}"));
        // Hangul syllables decompose to their jamo.
        assert_eq!(fold("\u{D55C}"), "\u{1112}\u{1161}\u{11AB}");
    }

    #[test]
    fn compatibility_forms_decompose_after_the_titlecase() {
        // ﬁ has no simple titlecase; its decomposition `fi` is not titlecased again.
        assert_eq!(fold("\u{FB01}"), "fi");
        assert_ne!(fold("\u{FB01}"), fold("FI"));
        assert!(!contains("fine", "\u{FB01}"));
        // Ǆ (U+01C4) → ǅ (U+01C5) → D ž → D z U+030C; the rest of the word is ASCII.
        assert_eq!(fold("\u{1C4}enan"), "Dz\u{30C}ENAN");
        assert_eq!(fold("\u{1C6}"), fold("\u{1C4}"));
        // Fullwidth and circled forms, the Kelvin and Ohm signs.
        assert_eq!(fold("\u{FF21}\u{FF42}"), "AB");
        assert_eq!(
            fold("\u{24D0}"),
            "A",
            "circled a: titlecase circled A, then A"
        );
        assert_eq!(fold("\u{212A}"), "K");
        assert!(contains("100 \u{212A}elvin", "kelvin"));
        assert_eq!(fold("\u{2126}"), fold("\u{3C9}"));
    }

    #[test]
    fn turkish_i_and_german_sharp_s_follow_the_simple_mappings() {
        // İ (U+0130) has no simple titlecase; it decomposes to I U+0307.
        assert_eq!(fold("\u{130}"), "I\u{307}");
        assert_eq!(fold("\u{130}"), fold("i\u{307}"));
        assert_ne!(fold("\u{130}"), fold("i"));
        // ı (U+0131) titlecases to I.
        assert_eq!(fold("\u{131}"), "I");
        // ß has no simple titlecase or uppercase (`SS` is the full mapping) and no
        // decomposition; ẞ (U+1E9E) lowercases to it but is a letter of its own here.
        assert_eq!(fold("Stra\u{DF}e"), "STRA\u{DF}E");
        assert_ne!(fold("\u{DF}"), fold("ss"));
        assert_ne!(fold("\u{1E9E}"), fold("\u{DF}"));
    }

    #[test]
    fn titlecase_is_the_simple_mapping() {
        assert_eq!(titlecase('a'), 'A');
        assert_eq!(titlecase('\u{3C9}'), '\u{3A9}');
        assert_eq!(titlecase('\u{44F}'), '\u{42F}');
        // Digraphs: every case form titlecases to the middle one.
        for c in ['\u{1C4}', '\u{1C5}', '\u{1C6}'] {
            assert_eq!(titlecase(c), '\u{1C5}');
        }
        for (c, t) in [
            ('\u{1C9}', '\u{1C8}'),
            ('\u{1CA}', '\u{1CB}'),
            ('\u{1F3}', '\u{1F2}'),
        ] {
            assert_eq!(titlecase(c), t);
        }
        // Georgian: Mkhedruli titlecases to itself, Mtavruli stays Mtavruli.
        assert_eq!(titlecase('\u{10D0}'), '\u{10D0}');
        assert_eq!(titlecase('\u{1C90}'), '\u{1C90}');
        // Greek with ypogegrammeni: ᾀ → ᾈ, ᾳ → ᾼ; ᾈ and ΐ have no simple mapping.
        assert_eq!(titlecase('\u{1F80}'), '\u{1F88}');
        assert_eq!(titlecase('\u{1FA7}'), '\u{1FAF}');
        assert_eq!(titlecase('\u{1FB3}'), '\u{1FBC}');
        assert_eq!(titlecase('\u{1FF3}'), '\u{1FFC}');
        assert_eq!(titlecase('\u{1F88}'), '\u{1F88}');
        assert_eq!(titlecase('\u{390}'), '\u{390}');
        // No simple mapping: ß, ŉ, ǰ, ﬁ; non-letters.
        for c in ['\u{DF}', '\u{149}', '\u{1F0}', '\u{FB01}', '1', '\u{2603}'] {
            assert_eq!(titlecase(c), c);
        }
    }

    #[test]
    fn other_scripts_fold_case() {
        assert_eq!(fold("Re: \u{FC}ber"), "RE: U\u{308}BER");
        assert_eq!(fold("\u{3A9}mega"), fold("\u{3C9}MEGA"));
        assert_eq!(
            fold("\u{41C}\u{43E}\u{441}\u{43A}\u{432}\u{430}"),
            fold("\u{43C}\u{43E}\u{441}\u{43A}\u{432}\u{430}")
        );
        // Final sigma has the simple uppercase Σ, as σ does.
        assert_eq!(fold("\u{3C2}"), fold("\u{3C3}"));
        // Unicased scripts pass through.
        assert_eq!(fold("東京"), "東京");
    }

    #[test]
    fn ascii_runs_are_found_whole() {
        for (text, n) in [
            ("", 0),
            ("abc", 3),
            ("abcdefgh", 8),
            ("abcdefghi\u{E9}", 9),
            ("\u{E9}", 0),
            ("abcdefg\u{E9}abcdefgh", 7),
        ] {
            assert_eq!(ascii_prefix(text.as_bytes()), n, "{text:?}");
        }
        let long = format!("{}\u{E9}{}", "a".repeat(37), "b".repeat(20));
        assert_eq!(
            fold(&long),
            format!("{}E\u{301}{}", "A".repeat(37), "B".repeat(20))
        );
    }

    #[test]
    fn folding_is_per_character_so_concatenations_fold_alike() {
        let parts = [
            "Gr\u{FC}\u{DF}e",
            "\u{1C4}",
            " e\u{301}\u{316}",
            "\u{FB01}x",
            "\n",
            "abc",
        ];
        let whole: String = parts.concat();
        let folded: String = parts.iter().map(|p| fold(p)).collect();
        assert_eq!(fold(&whole), folded);
        let mut appended = String::from("X");
        fold_into("b\u{E9}", &mut appended);
        assert_eq!(appended, "XBE\u{301}");
    }

    #[test]
    fn substring_matching_on_folded_text() {
        assert!(contains("Hello World", "o wor"));
        assert!(contains("anything", ""));
        assert!(!contains("Hello", "hellos"));
        assert!(folded_contains(&fold("Grüße aus Köln"), "KO\u{308}LN"));
        assert!(folded_contains(&fold("Grüße aus Köln"), "köln"));
        assert!(!folded_contains(&fold("Grüße aus Köln"), "GRUSSE"));
    }
}
