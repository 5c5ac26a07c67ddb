//! What the clients measure: a latency histogram per command kind (HDR, microseconds,
//! 3 significant digits) and error counts per kind. The clients fill a few shared
//! sets (`run::STATS_SHARDS`), merged at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::error::ClientError;

/// Highest latency a histogram tells apart: an hour, in microseconds (slower answers
/// are counted as an hour).
const MAX_MICROS: u64 = 3_600_000_000;

/// A client's (or, merged, the run's) measurements.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// In the order the commands were first seen, which is the order a session runs.
    commands: Vec<(&'static str, Histogram<u64>)>,
    errors: BTreeMap<String, u64>,
    /// The first message of each error kind, to show what went wrong.
    examples: BTreeMap<String, String>,
}

fn new_histogram() -> Histogram<u64> {
    // INVARIANT: the bounds are constants that satisfy new_with_bounds' conditions
    // (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

impl Stats {
    /// Records one successful exchange of `command`.
    pub fn record(&mut self, command: &'static str, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.histogram(command).saturating_record(micros);
    }

    fn histogram(&mut self, command: &'static str) -> &mut Histogram<u64> {
        let index = match self.commands.iter().position(|(name, _)| *name == command) {
            Some(index) => index,
            None => {
                self.commands.push((command, new_histogram()));
                self.commands.len() - 1
            }
        };
        &mut self.commands[index].1
    }

    pub fn error(&mut self, error: &ClientError) {
        let kind = error.kind();
        self.examples
            .entry(kind.clone())
            .or_insert_with(|| error.to_string());
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Adds another client's measurements.
    pub fn merge(&mut self, other: &Stats) {
        for (name, histogram) in &other.commands {
            let mine = self.histogram(name);
            if mine.add(histogram).is_err() {
                // Same bounds on both sides, so this does not happen; if it did, the
                // values are copied one by one (saturating) rather than lost.
                for value in histogram.iter_recorded() {
                    mine.saturating_record_n(value.value_iterated_to(), value.count_at_value());
                }
            }
        }
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
        for (kind, example) in &other.examples {
            self.examples
                .entry(kind.clone())
                .or_insert_with(|| example.clone());
        }
    }

    pub fn commands(&self) -> &[(&'static str, Histogram<u64>)] {
        &self.commands
    }

    pub fn errors(&self) -> &BTreeMap<String, u64> {
        &self.errors
    }

    pub fn examples(&self) -> &BTreeMap<String, String> {
        &self.examples
    }

    /// Successful exchanges of every kind.
    pub fn ops(&self) -> u64 {
        self.commands.iter().map(|(_, h)| h.len()).sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_and_merge_keep_order_and_counts() {
        let mut a = Stats::default();
        a.record("LOGIN", Duration::from_millis(5));
        a.record("SELECT", Duration::from_micros(300));
        let mut b = Stats::default();
        b.record("SELECT", Duration::from_millis(2));
        b.record("NOOP", Duration::ZERO);
        b.error(&ClientError::Timeout);
        b.error(&ClientError::Timeout);
        a.merge(&b);
        let names: Vec<&str> = a.commands().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, vec!["LOGIN", "SELECT", "NOOP"]);
        assert_eq!(a.ops(), 4);
        assert_eq!(a.errors()["timeout"], 2);
        assert_eq!(a.commands()[1].1.len(), 2);
        assert!(a.commands()[1].1.max() >= 1999);
    }
}
