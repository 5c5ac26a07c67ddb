//! The results: a table on standard output and, with --json, the same numbers as JSON
//! (schema in the crate documentation).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::conn::TlsMode;
use crate::run::Outcome;

/// One command kind's numbers.
#[derive(Debug, Serialize, PartialEq)]
pub struct CommandReport {
    pub count: u64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The whole run, as written to --json.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    /// `address:port`.
    pub target: String,
    pub tls: TlsMode,
    pub clients: usize,
    pub duration_secs: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    /// Only the kinds that occurred.
    pub errors: BTreeMap<String, u64>,
    pub commands: BTreeMap<String, CommandReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_after_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kib_per_session: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_sessions: Option<usize>,
    /// Clients that did not finish within the grace time after the end.
    pub abandoned_clients: usize,
    /// Command kinds in the order they were first run (for the table).
    #[serde(skip)]
    pub order: Vec<String>,
    /// One message per error kind.
    #[serde(skip)]
    pub error_examples: BTreeMap<String, String>,
}

fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn rounded(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

impl Report {
    pub fn new(
        scenario: &str,
        target: String,
        tls: TlsMode,
        clients: usize,
        outcome: &Outcome,
    ) -> Report {
        let seconds = outcome.elapsed.as_secs_f64().max(1e-9);
        let mut commands = BTreeMap::new();
        let mut order = Vec::new();
        for (name, histogram) in outcome.stats.commands() {
            order.push(name.to_string());
            commands.insert(
                name.to_string(),
                CommandReport {
                    count: histogram.len(),
                    ops_per_sec: rounded(histogram.len() as f64 / seconds),
                    p50_ms: millis(histogram.value_at_quantile(0.50)),
                    p90_ms: millis(histogram.value_at_quantile(0.90)),
                    p99_ms: millis(histogram.value_at_quantile(0.99)),
                    max_ms: millis(histogram.max()),
                },
            );
        }
        let ops = outcome.stats.ops();
        let memory = outcome.memory;
        Report {
            scenario: scenario.to_string(),
            target,
            tls,
            clients,
            duration_secs: rounded(seconds),
            ops,
            ops_per_sec: rounded(ops as f64 / seconds),
            errors: outcome.stats.errors().clone(),
            commands,
            rss_before_kib: memory.map(|m| m.rss_before_kib),
            rss_after_kib: memory.map(|m| m.rss_after_kib),
            kib_per_session: memory.and_then(|m| m.kib_per_session()).map(rounded),
            idle_sessions: memory.map(|m| m.idle_sessions),
            abandoned_clients: outcome.abandoned,
            order,
            error_examples: outcome.stats.examples().clone(),
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum::<u64>() + self.abandoned_clients as u64
    }

    /// The table printed at the end.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} against {} (tls {}), {} clients, {:.1} s: {} ops, {:.1} ops/s",
            self.scenario,
            self.target,
            serde_json::to_value(self.tls)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            self.clients,
            self.duration_secs,
            self.ops,
            self.ops_per_sec
        );
        let _ = writeln!(
            out,
            "{:<20} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "command", "count", "ops/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for name in &self.order {
            let Some(c) = self.commands.get(name) else {
                continue;
            };
            let _ = writeln!(
                out,
                "{:<20} {:>9} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                name, c.count, c.ops_per_sec, c.p50_ms, c.p90_ms, c.p99_ms, c.max_ms
            );
        }
        if let (Some(before), Some(after)) = (self.rss_before_kib, self.rss_after_kib) {
            let _ = writeln!(
                out,
                "server memory: {before} KiB before, {after} KiB with {} sessions idle: {}",
                self.idle_sessions.unwrap_or(0),
                self.kib_per_session
                    .map_or_else(|| "n/a".to_string(), |k| format!("{k:.1} KiB per session"))
            );
        }
        if self.errors.is_empty() && self.abandoned_clients == 0 {
            out.push_str("errors: none\n");
        } else {
            out.push_str("errors:\n");
            for (kind, count) in &self.errors {
                let example = self.error_examples.get(kind).map_or("", String::as_str);
                let _ = writeln!(out, "  {count:>8}  {kind}  (e.g. {example})");
            }
            if self.abandoned_clients > 0 {
                let _ = writeln!(
                    out,
                    "  {:>8}  clients stopped by force after the end",
                    self.abandoned_clients
                );
            }
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self).context("encoding the report")?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Memory;
    use crate::stats::Stats;
    use std::time::Duration;

    #[test]
    fn json_has_the_documented_fields() {
        let mut stats = Stats::default();
        stats.record("LOGIN", Duration::from_millis(4));
        stats.record("LOGIN", Duration::from_millis(6));
        stats.error(&crate::error::ClientError::Timeout);
        let outcome = Outcome {
            stats,
            elapsed: Duration::from_secs(2),
            memory: Some(Memory {
                rss_before_kib: 100,
                rss_after_kib: 300,
                idle_sessions: 4,
            }),
            abandoned: 0,
        };
        let report = Report::new(
            "imap-idle",
            "127.0.0.1:143".into(),
            TlsMode::None,
            4,
            &outcome,
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["scenario"], "imap-idle");
        assert_eq!(json["ops"], 2);
        assert_eq!(json["ops_per_sec"], 1.0);
        assert_eq!(json["errors"]["timeout"], 1);
        assert_eq!(json["commands"]["LOGIN"]["count"], 2);
        assert!(json["commands"]["LOGIN"]["p50_ms"].as_f64().unwrap() >= 3.9);
        assert_eq!(json["kib_per_session"], 50.0);
        assert_eq!(json["tls"], "none");
        assert!(report.table().contains("LOGIN"));
        assert_eq!(report.error_count(), 1);
    }
}
