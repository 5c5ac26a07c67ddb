//! Body texts of messages just appended, kept briefly for the full-text indexer.
//!
//! An append parses the message once for its MIME summary; the same parse gives the
//! decoded text the indexer would otherwise get by reading the message back and
//! parsing it again (a second full decode of every part). The texts wait here, by
//! body id, until the indexer takes them. They are bounded in bytes and in number: a
//! text pushed out, or never kept, only costs the indexer its own parse.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// Texts kept at most (each take leaves its id in the queue until it is pushed out).
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
struct Kept {
    by_body: HashMap<u64, String>,
    /// Body ids in the order kept; an id whose text was taken stays until pushed out.
    order: VecDeque<u64>,
    bytes: usize,
}

pub(crate) struct RecentTexts {
    /// Bytes of text kept at most; 0 keeps none.
    budget: usize,
    kept: Mutex<Kept>,
}

impl RecentTexts {
    pub(crate) fn new(budget: usize) -> RecentTexts {
        RecentTexts {
            budget,
            kept: Mutex::new(Kept::default()),
        }
    }

    /// Whether texts are kept at all (an index is fed from them).
    pub(crate) fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// The longest text kept: an eighth of the budget.
    pub(crate) fn max_text(&self) -> usize {
        self.budget / 8
    }

    /// Keeps the text of body `id`, pushing out the oldest beyond the bounds. A text
    /// longer than [`RecentTexts::max_text`] is not kept.
    pub(crate) fn keep(&self, id: u64, text: String) {
        if !self.enabled() || text.len() > self.max_text() {
            return;
        }
        let mut kept = self.lock();
        kept.bytes += text.len();
        if let Some(old) = kept.by_body.insert(id, text) {
            kept.bytes -= old.len();
        }
        kept.order.push_back(id);
        while kept.bytes > self.budget || kept.order.len() > MAX_ENTRIES {
            let Some(oldest) = kept.order.pop_front() else {
                break;
            };
            if let Some(text) = kept.by_body.remove(&oldest) {
                kept.bytes -= text.len();
            }
        }
    }

    /// Takes the text of body `id`, if it is still kept.
    pub(crate) fn take(&self, id: u64) -> Option<String> {
        let mut kept = self.lock();
        let text = kept.by_body.remove(&id)?;
        kept.bytes -= text.len();
        Some(text)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_once_and_bounded_in_bytes_and_number() {
        let texts = RecentTexts::new(800);
        texts.keep(1, "a".repeat(100));
        texts.keep(2, "b".repeat(100));
        assert_eq!(texts.take(1).as_deref(), Some("a".repeat(100).as_str()));
        assert_eq!(texts.take(1), None);
        // Over an eighth of the budget: not kept.
        texts.keep(3, "c".repeat(101));
        assert_eq!(texts.take(3), None);
        // Eight more of 100 bytes push out the oldest still kept (2).
        for id in 10..18 {
            texts.keep(id, "d".repeat(100));
        }
        assert_eq!(texts.take(2), None);
        assert_eq!(texts.take(10).map(|t| t.len()), Some(100));
        assert!(texts.lock().bytes <= 800);
        // Taken texts leave their ids queued, but the queue is bounded too.
        for id in 100..100 + 2 * MAX_ENTRIES as u64 {
            texts.keep(id, String::new());
            texts.take(id);
        }
        // ... which pushed out the texts kept before them.
        assert!(texts.lock().order.len() <= MAX_ENTRIES);
        assert_eq!(texts.lock().bytes, 0);
        assert_eq!(texts.take(11), None);
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let texts = RecentTexts::new(0);
        assert!(!texts.enabled());
        texts.keep(1, "x".into());
        assert_eq!(texts.take(1), None);
    }
}
