//! Character trigrams: the index's terms, cut the same way from texts and needles.
//!
//! The index records only which documents hold a trigram (`IndexRecordOption::Basic`),
//! so the tokenizer hands tantivy each distinct trigram of a text once: a repeat
//! cost tantivy a hash-table lookup for nothing, most of the trigrams of a message
//! (and most of its indexing time) being repeats.

use rustc_hash::FxHashSet;
use tantivy::tokenizer::{Token, TokenStream};

/// Three characters of 21 bits.
const KEY_MASK: u64 = (1 << 63) - 1;

/// Each distinct trigram of a text once, in the order of first occurrence.
pub(crate) struct DistinctTrigrams<'a> {
    text: &'a str,
    spans: std::vec::IntoIter<(usize, usize)>,
    token: Token,
}

impl<'a> DistinctTrigrams<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut seen = FxHashSet::default();
        seen.reserve(text.len().min(1 << 14));
        let mut distinct = Vec::new();
        // The last three characters (21 bits each), where they started, how many so far.
        let mut key = 0u64;
        let mut starts = [0usize; 3];
        let mut n = 0;
        for (start, c) in text.char_indices() {
            if n >= 3 && seen.insert(key) {
                distinct.push((starts[n % 3], start));
            }
            key = (key << 21 | u64::from(c)) & KEY_MASK;
            starts[n % 3] = start;
            n += 1;
        }
        if n >= 3 && seen.insert(key) {
            distinct.push((starts[n % 3], text.len()));
        }
        DistinctTrigrams {
            text,
            spans: distinct.into_iter(),
            token: Token::default(),
        }
    }
}

impl<'a> DistinctTrigrams<'a> {
    /// The distinct trigrams themselves (a needle's, for a query).
    pub(crate) fn slices(self) -> impl Iterator<Item = &'a str> {
        let text = self.text;
        self.spans.map(move |(from, to)| &text[from..to])
    }
}

impl TokenStream for DistinctTrigrams<'_> {
    fn advance(&mut self) -> bool {
        let Some((from, to)) = self.spans.next() else {
            return false;
        };
        self.token.offset_from = from;
        self.token.offset_to = to;
        self.token.position = self.token.position.wrapping_add(1);
        self.token.text.clear();
        self.token.text.push_str(&self.text[from..to]);
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::tokenizer::{NgramTokenizer, Tokenizer};

    fn distinct(text: &str) -> Vec<String> {
        let mut stream = DistinctTrigrams::new(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    /// Tantivy's own trigrams of `text`, repeats dropped after their first.
    fn tantivy_distinct(text: &str) -> Vec<String> {
        let mut tokenizer = NgramTokenizer::all_ngrams(3, 3).expect("tokenizer");
        let mut stream = tokenizer.token_stream(text);
        let mut out: Vec<String> = Vec::new();
        while stream.advance() {
            let gram = stream.token().text.clone();
            if !out.contains(&gram) {
                out.push(gram);
            }
        }
        out
    }

    #[test]
    fn the_same_trigrams_as_tantivys_without_repeats() {
        for text in [
            "",
            "a",
            "ab",
            "abc",
            "aaaa",
            "abcabcabc",
            "grüße aus köln, grüße",
            "日本語のテキスト日本語",
            "emoji 😀😀😀 and more 😀",
            "line one\r\nline two\r\nline one\r\n",
        ] {
            assert_eq!(distinct(text), tantivy_distinct(text), "{text:?}");
        }
    }

    #[test]
    fn repeats_are_dropped_and_spans_are_byte_offsets() {
        assert_eq!(distinct("aaaaaa"), ["aaa"]);
        let text = "xé!xé!";
        let mut stream = DistinctTrigrams::new(text);
        let mut spans = Vec::new();
        while stream.advance() {
            let token = stream.token();
            assert_eq!(&text[token.offset_from..token.offset_to], token.text);
            spans.push((token.offset_from, token.offset_to, token.position));
        }
        assert_eq!(spans, [(0, 4, 0), (1, 5, 1), (3, 7, 2)]);
    }
}
