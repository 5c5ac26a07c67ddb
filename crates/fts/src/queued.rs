//! A bound on the message text waiting in tantivy's document queue.
//!
//! Tantivy's n-gram tokenizer cuts a document's text on the indexing thread, so each
//! document carries its whole text to that thread, through a queue that holds up to
//! 10,000 documents: a burst of big messages would wait there whole. The tokenizer
//! registered for the trigram fields ([`CountingTrigrams`]) tells [`QueuedText`] when it
//! reaches a text, and [`TextIndex::add`](crate::TextIndex::add) waits while more than
//! the bound is queued. The wait is bounded in time too, so that a document tantivy
//! drops untokenized (a rollback, a failed indexing thread) cannot stop indexing.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tantivy::tokenizer::Tokenizer;

use crate::trigrams::DistinctTrigrams;

/// Text bytes queued before `add` waits: enough to keep the indexing thread busy.
pub(crate) const MAX_QUEUED_TEXT: usize = 4 << 20;
/// Longest `add` waits for the queue to drain before it queues anyway.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// Bytes of text handed to tantivy and not yet reached by its tokenizer.
#[derive(Default)]
pub(crate) struct QueuedText {
    bytes: Mutex<usize>,
    drained: Condvar,
}

impl QueuedText {
    /// Counts `len` bytes as queued, first waiting while the queue is over `limit`
    /// (a text longer than the limit goes alone once the queue is empty).
    pub(crate) fn enqueue(&self, len: usize, limit: usize) {
        let deadline = Instant::now() + MAX_WAIT;
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        while *bytes > 0 && bytes.saturating_add(len) > limit {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            bytes = self
                .drained
                .wait_timeout(bytes, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *bytes = bytes.saturating_add(len);
    }

    /// The tokenizer has reached `len` bytes of queued text.
    pub(crate) fn dequeue(&self, len: usize) {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        *bytes = bytes.saturating_sub(len);
        self.drained.notify_all();
    }

    /// Tantivy dropped its queue (rollback): nothing is waiting there any more.
    pub(crate) fn clear(&self) {
        *self.bytes.lock().unwrap_or_else(PoisonError::into_inner) = 0;
        self.drained.notify_all();
    }

    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        *self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every distinct character trigram of a text ([`DistinctTrigrams`]), counting the
/// text out of the queue as it starts.
#[derive(Clone)]
pub(crate) struct CountingTrigrams {
    queued: Arc<QueuedText>,
}

impl CountingTrigrams {
    pub(crate) fn new(queued: Arc<QueuedText>) -> Self {
        CountingTrigrams { queued }
    }
}

impl Tokenizer for CountingTrigrams {
    type TokenStream<'a> = DistinctTrigrams<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        self.queued.dequeue(text.len());
        DistinctTrigrams::new(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::tokenizer::TokenStream;

    #[test]
    fn enqueue_waits_for_the_tokenizer_then_goes_on() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let queued = Arc::new(QueuedText::default());
        queued.enqueue(3_000, 4_000);
        let queued_second = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (queued, queued_second) = (queued.clone(), queued_second.clone());
            std::thread::spawn(move || {
                queued.enqueue(2_000, 4_000);
                queued_second.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !queued_second.load(Ordering::SeqCst),
            "the second text waits"
        );
        assert_eq!(queued.queued(), 3_000);
        let mut tokenizer = CountingTrigrams::new(queued.clone());
        let text = "x".repeat(3_000);
        let mut stream = tokenizer.token_stream(&text);
        let mut trigrams = 0;
        while stream.advance() {
            trigrams += 1;
        }
        assert_eq!(trigrams, 1, "each distinct trigram once");
        waiter.join().expect("waiter");
        assert!(queued_second.load(Ordering::SeqCst));
        assert_eq!(queued.queued(), 2_000);
    }

    #[test]
    fn a_text_over_the_limit_goes_alone_and_clear_frees_waiters() {
        let queued = QueuedText::default();
        queued.enqueue(10_000, 4_000);
        assert_eq!(queued.queued(), 10_000);
        queued.clear();
        queued.enqueue(1, 4_000);
        assert_eq!(queued.queued(), 1);
    }
}
