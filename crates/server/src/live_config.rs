//! The configuration a running node can take again without a restart: `portico reload`
//! or SIGHUP re-reads `cluster.toml` and what clients are told (connection settings,
//! `internal_networks`, `[smtp] advertise_client_settings`, `[http]`) takes effect at
//! once, for the next autoconfig, Autodiscover or settings-page request. Open sessions
//! are not touched. Everything else in the file (listeners, nodes, limits) is read at
//! start only.
//!
//! A file that no longer loads, or no longer names this node, is refused with the
//! reason and the running configuration stays.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use portico_cluster::{ClientProtocol, ClusterConfig};

/// The node's current configuration, swappable while it runs.
#[derive(Debug)]
pub struct LiveConfig {
    /// The file it was read from; `None` for the embedded default, which never changes.
    path: Option<PathBuf>,
    node: String,
    current: RwLock<Arc<ClusterConfig>>,
}

impl LiveConfig {
    pub fn new(path: Option<PathBuf>, node: String, config: Arc<ClusterConfig>) -> LiveConfig {
        LiveConfig {
            path,
            node,
            current: RwLock::new(config),
        }
    }

    pub fn current(&self) -> Arc<ClusterConfig> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the file again (blocking: call off the async threads). Says what clients
    /// are now told.
    pub fn reload(&self) -> anyhow::Result<String> {
        let Some(path) = &self.path else {
            return Ok("the embedded default configuration has nothing to re-read".into());
        };
        let config =
            ClusterConfig::load(path).with_context(|| format!("re-reading {}", path.display()))?;
        if config.find_node(&self.node).is_none() {
            bail!(
                "{} no longer has a [[node]] named {:?}; nothing changed",
                path.display(),
                self.node
            );
        }
        let summary = summary(&config);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
        Ok(summary)
    }
}

/// `imap external 1 internal 1, …`: how many settings each protocol hands out now.
fn summary(config: &ClusterConfig) -> String {
    let parts: Vec<String> = ClientProtocol::ALL
        .into_iter()
        .map(|protocol| {
            let inside = config.connection_settings(protocol, true);
            let outside = config.connection_settings(protocol, false);
            let list = |settings: &[portico_cluster::ConnectionSetting]| {
                let shown: Vec<String> = settings.iter().map(ToString::to_string).collect();
                if shown.is_empty() {
                    "none".to_string()
                } else {
                    shown.join(" ")
                }
            };
            format!(
                "{}: internal {}; external {}",
                protocol.key(),
                list(&inside),
                list(&outside)
            )
        })
        .collect();
    format!("connection settings reloaded ({})", parts.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
cluster = "t"
[[site]]
name = "s"
[[node]]
name = "n"
site = "s"
roles = ["frontend", "backend", "directory"]
data_dir = "./data"
[node.listen]
imaps = "127.0.0.1:1993"
[imap]
enabled = true
"#;

    #[test]
    fn a_good_file_replaces_the_settings_and_a_bad_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, FILE).unwrap();
        let first = Arc::new(ClusterConfig::load(&path).unwrap());
        let live = LiveConfig::new(Some(path.clone()), "n".into(), first);
        let imap = |live: &LiveConfig| {
            live.current()
                .connection_settings(ClientProtocol::Imap, false)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(imap(&live), ["127.0.0.1:1993:SSL"]);
        let changed = FILE.replace(
            "enabled = true",
            "enabled = true\nexternal_connection = [\"mail.example.com:993:SSL\"]",
        );
        std::fs::write(&path, &changed).unwrap();
        let said = live.reload().unwrap();
        assert!(said.contains("external mail.example.com:993:SSL"), "{said}");
        assert_eq!(imap(&live), ["mail.example.com:993:SSL"]);

        std::fs::write(&path, changed.replace(":993:SSL", ":993:STARTTLS")).unwrap();
        let error = format!("{:#}", live.reload().unwrap_err());
        assert!(error.contains("unknown encryption"), "{error}");
        std::fs::write(&path, changed.replace("name = \"n\"", "name = \"other\"")).unwrap();
        let error = format!("{:#}", live.reload().unwrap_err());
        assert!(
            error.contains("no longer has a [[node]] named \"n\""),
            "{error}"
        );
        assert_eq!(imap(&live), ["mail.example.com:993:SSL"]);
    }
}
