//! What mail clients are told to connect to: for POP3, IMAP and SMTP submission, a
//! server name, port and encryption for clients inside the network and for those
//! outside it (Exchange's `InternalConnectionSettings` / `ExternalConnectionSettings`,
//! written the same way: `host:port:SSL|TLS|none`).
//!
//! Autoconfig, Autodiscover, the settings page and `portico settings` all answer from
//! [`ClusterConfig::connection_settings`], so they never disagree. Unset, a protocol's
//! settings are derived from the frontends' listeners, so a fresh node answers
//! something a client on the same machine can use.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::Deserialize;

use crate::config::{ClusterConfig, NodeConfig, Role};
use crate::network::Network;

/// How a client secures the connection, in Exchange's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encryption {
    /// TLS from the first byte (RFC 8314 implicit TLS: 993, 995, 465).
    Ssl,
    /// STARTTLS / STLS on a plain connection (143, 110, 587).
    Tls,
    /// No encryption at all.
    None,
}

impl Encryption {
    /// The word as written in `cluster.toml`: `SSL`, `TLS` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::Ssl => "SSL",
            Encryption::Tls => "TLS",
            Encryption::None => "none",
        }
    }
}

/// One place a client may connect to: `mail.example.com:993:SSL`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct ConnectionSetting {
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub encryption: Encryption,
}

impl FromStr for ConnectionSetting {
    type Err = String;

    /// `host:port:SSL|TLS|none`; an IPv6 host in brackets (`[2001:db8::1]:993:SSL`).
    fn from_str(text: &str) -> Result<ConnectionSetting, String> {
        let form = || format!("{text:?} is not host:port:SSL|TLS|none");
        let (rest, word) = text.trim().rsplit_once(':').ok_or_else(form)?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(form)?;
        let encryption = match word.to_ascii_lowercase().as_str() {
            "ssl" => Encryption::Ssl,
            "tls" => Encryption::Tls,
            "none" => Encryption::None,
            _ => {
                return Err(format!(
                    "{text:?}: unknown encryption {word:?} (SSL, TLS or none)"
                ));
            }
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&port| port > 0)
            .ok_or_else(|| format!("{text:?}: {port:?} is not a port number"))?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => v6.to_string(),
            Some(_) => return Err(format!("{text:?}: bad IPv6 address in brackets")),
            None if valid_host(host) => host.to_string(),
            None => return Err(format!("{text:?}: {host:?} is not a host name or address")),
        };
        Ok(ConnectionSetting {
            host,
            port,
            encryption,
        })
    }
}

impl TryFrom<String> for ConnectionSetting {
    type Error = String;

    fn try_from(text: String) -> Result<ConnectionSetting, String> {
        text.parse()
    }
}

impl fmt::Display for ConnectionSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(
                f,
                "[{}]:{}:{}",
                self.host,
                self.port,
                self.encryption.as_str()
            )
        } else {
            write!(
                f,
                "{}:{}:{}",
                self.host,
                self.port,
                self.encryption.as_str()
            )
        }
    }
}

/// A DNS name (letters, digits, `-`, `.`, `_`) or an IPv4 address.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !host.starts_with(['-', '.'])
}

/// The client protocols whose settings are handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientProtocol {
    Pop3,
    Imap,
    /// Message submission (RFC 6409 / 8314), not inbound SMTP.
    Smtp,
}

impl ClientProtocol {
    pub const ALL: [ClientProtocol; 3] = [
        ClientProtocol::Imap,
        ClientProtocol::Pop3,
        ClientProtocol::Smtp,
    ];

    /// The section of `cluster.toml`: `pop3`, `imap`, `smtp`.
    pub fn key(self) -> &'static str {
        match self {
            ClientProtocol::Pop3 => "pop3",
            ClientProtocol::Imap => "imap",
            ClientProtocol::Smtp => "smtp",
        }
    }
}

/// Networks whose clients get the internal settings when none are configured: loopback,
/// RFC 1918, and IPv6 loopback, unique-local and link-local.
pub const DEFAULT_INTERNAL_NETWORKS: [&str; 7] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

pub(crate) fn default_internal_networks() -> Vec<Network> {
    DEFAULT_INTERNAL_NETWORKS
        .iter()
        .filter_map(|net| Network::parse(net))
        .collect()
}

impl ClusterConfig {
    /// Whether a client connecting from `ip` is inside the network.
    pub fn is_internal_client(&self, ip: IpAddr) -> bool {
        self.internal_networks.iter().any(|net| net.contains(ip))
    }

    /// Whether `protocol` is offered to clients at all: enabled, and for SMTP also
    /// advertised (`[smtp] advertise_client_settings`).
    pub fn advertises(&self, protocol: ClientProtocol) -> bool {
        match protocol {
            ClientProtocol::Pop3 => self.pop3.enabled,
            ClientProtocol::Imap => self.imap.enabled,
            ClientProtocol::Smtp => self.smtp.enabled && self.smtp.advertise_client_settings,
        }
    }

    /// `internal_connection` and `external_connection` of the protocol's section.
    fn configured(&self, protocol: ClientProtocol) -> (&[ConnectionSetting], &[ConnectionSetting]) {
        match protocol {
            ClientProtocol::Pop3 => (
                &self.pop3.internal_connection,
                &self.pop3.external_connection,
            ),
            ClientProtocol::Imap => (
                &self.imap.internal_connection,
                &self.imap.external_connection,
            ),
            ClientProtocol::Smtp => (
                &self.smtp.internal_connection,
                &self.smtp.external_connection,
            ),
        }
    }

    /// What a client is told for `protocol`, inside the network or outside it, best
    /// first (implicit TLS before STARTTLS). Empty when the protocol is not advertised.
    pub fn connection_settings(
        &self,
        protocol: ClientProtocol,
        internal: bool,
    ) -> Vec<ConnectionSetting> {
        if !self.advertises(protocol) {
            return Vec::new();
        }
        let (inside, outside) = self.configured(protocol);
        let configured = if internal { inside } else { outside };
        if configured.is_empty() {
            self.derived_settings(protocol)
        } else {
            configured.to_vec()
        }
    }

    /// The frontends' listeners for `protocol`, implicit TLS first, each named by the
    /// node's `client_host`, else its listener address, else the SMTP hostname.
    fn derived_settings(&self, protocol: ClientProtocol) -> Vec<ConnectionSetting> {
        let mut settings: Vec<ConnectionSetting> = Vec::new();
        let frontends = self.nodes.iter().filter(|n| n.has_role(Role::Frontend));
        for (implicit, plain) in [(true, false), (false, true)] {
            for node in frontends.clone() {
                let listen = &node.listen;
                let (ssl, tls) = match protocol {
                    ClientProtocol::Pop3 => (listen.pop3s, listen.pop3),
                    ClientProtocol::Imap => (listen.imaps, listen.imap),
                    ClientProtocol::Smtp => (listen.submissions, listen.submission),
                };
                let (address, encryption) = match (implicit, plain) {
                    (true, _) => (ssl, Encryption::Ssl),
                    _ => (tls, Encryption::Tls),
                };
                if let Some(address) = address {
                    let setting = ConnectionSetting {
                        host: self.client_host(node, address),
                        port: address.port(),
                        encryption,
                    };
                    if !settings.contains(&setting) {
                        settings.push(setting);
                    }
                }
            }
        }
        settings
    }

    fn client_host(&self, node: &NodeConfig, address: SocketAddr) -> String {
        match &node.client_host {
            Some(host) => host.clone(),
            None if address.ip().is_unspecified() => self.smtp.hostname.clone(),
            None => address.ip().to_string(),
        }
    }

    /// A protocol that is off cannot have connection settings: the administrator
    /// would be handing out a server that refuses.
    pub(crate) fn validate_connection_settings(&self) -> Result<(), String> {
        for protocol in ClientProtocol::ALL {
            let (inside, outside) = self.configured(protocol);
            let set = !inside.is_empty() || !outside.is_empty();
            let enabled = match protocol {
                ClientProtocol::Pop3 => self.pop3.enabled,
                ClientProtocol::Imap => self.imap.enabled,
                ClientProtocol::Smtp => self.smtp.enabled,
            };
            if set && !enabled {
                return Err(format!(
                    "{0}.internal_connection / {0}.external_connection are set but {0} is \
                     not enabled",
                    protocol.key()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_in_exchanges_form() {
        let setting: ConnectionSetting = "mail.example.com:993:SSL".parse().unwrap();
        assert_eq!(
            setting,
            ConnectionSetting {
                host: "mail.example.com".into(),
                port: 993,
                encryption: Encryption::Ssl
            }
        );
        assert_eq!(setting.to_string(), "mail.example.com:993:SSL");
        let v6: ConnectionSetting = "[2001:db8::1]:587:tls".parse().unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.encryption),
            ("2001:db8::1", Encryption::Tls)
        );
        assert_eq!(v6.to_string(), "[2001:db8::1]:587:TLS");
        assert_eq!(
            "10.0.0.5:110:none"
                .parse::<ConnectionSetting>()
                .unwrap()
                .encryption,
            Encryption::None
        );
        for bad in [
            "mail.example.com:993",
            "mail.example.com:993:STARTTLS",
            "mail.example.com:0:SSL",
            "mail.example.com:99999:SSL",
            ":993:SSL",
            "mail example.com:993:SSL",
            "[nonsense]:993:SSL",
        ] {
            assert!(bad.parse::<ConnectionSetting>().is_err(), "{bad}");
        }
        let error = "mail.example.com:993:STARTTLS"
            .parse::<ConnectionSetting>()
            .unwrap_err();
        assert!(error.contains("unknown encryption \"STARTTLS\""), "{error}");
    }

    fn strings(settings: Vec<ConnectionSetting>) -> Vec<String> {
        settings.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_embedded_default_hands_out_its_loopback_listeners() {
        let config = ClusterConfig::embedded().unwrap();
        for internal in [true, false] {
            assert_eq!(
                strings(config.connection_settings(ClientProtocol::Imap, internal)),
                ["127.0.0.1:1993:SSL", "127.0.0.1:1143:TLS"]
            );
            assert_eq!(
                strings(config.connection_settings(ClientProtocol::Pop3, internal)),
                ["127.0.0.1:1995:SSL", "127.0.0.1:1110:TLS"]
            );
            assert_eq!(
                strings(config.connection_settings(ClientProtocol::Smtp, internal)),
                ["127.0.0.1:1465:SSL", "127.0.0.1:1587:TLS"]
            );
        }
        assert!(config.is_internal_client("127.0.0.1".parse().unwrap()));
        assert!(config.is_internal_client("192.168.1.20".parse().unwrap()));
        assert!(!config.is_internal_client("198.51.100.7".parse().unwrap()));
    }

    const BASE: &str = r#"
cluster = "t"
[[site]]
name = "s"
[[node]]
name = "n"
site = "s"
roles = ["frontend", "backend", "directory"]
data_dir = "./data"
[node.listen]
imaps = "0.0.0.0:993"
submission = "192.0.2.10:587"
"#;

    /// `BASE` with `top` (top-level keys) before it and `tables` after it.
    fn parse(top: &str, tables: &str) -> Result<ClusterConfig, String> {
        let text = format!("{top}\n{BASE}{tables}");
        ClusterConfig::parse(&text, ".".into()).map_err(|e| e.to_string())
    }

    #[test]
    fn inside_and_outside_get_their_own_settings() {
        let config = parse(
            r#"internal_networks = ["10.1.0.0/16"]"#,
            r#"
[imap]
enabled = true
internal_connection = ["imap.corp.example.com:143:TLS"]
external_connection = ["mail.example.com:993:SSL", "mail.example.com:143:TLS"]
[pop3]
enabled = true
[smtp]
enabled = true
hostname = "mx.example.com"
"#,
        )
        .unwrap();
        assert!(config.is_internal_client("10.1.2.3".parse().unwrap()));
        assert!(!config.is_internal_client("127.0.0.1".parse().unwrap()));
        assert_eq!(
            strings(config.connection_settings(ClientProtocol::Imap, true)),
            ["imap.corp.example.com:143:TLS"]
        );
        assert_eq!(
            strings(config.connection_settings(ClientProtocol::Imap, false)),
            ["mail.example.com:993:SSL", "mail.example.com:143:TLS"]
        );
        // Unset: the listeners; one on 0.0.0.0 is named by the SMTP hostname.
        assert_eq!(
            strings(config.connection_settings(ClientProtocol::Smtp, false)),
            ["192.0.2.10:587:TLS"]
        );
        assert!(
            config
                .connection_settings(ClientProtocol::Pop3, true)
                .is_empty()
        );
        let hidden = parse(
            "",
            "[smtp]\nenabled = true\nadvertise_client_settings = false\n",
        )
        .unwrap();
        assert!(!hidden.advertises(ClientProtocol::Smtp));
        assert!(
            hidden
                .connection_settings(ClientProtocol::Smtp, true)
                .is_empty()
        );
        let imap_off = parse("", "[smtp]\nenabled = true\n").unwrap();
        assert!(
            imap_off
                .connection_settings(ClientProtocol::Imap, true)
                .is_empty()
        );
    }

    #[test]
    fn bad_settings_stop_the_node_with_the_key_named() {
        let error = parse(
            "",
            "[imap]\nenabled = true\nexternal_connection = [\"mail.example.com:993:STARTTLS\"]\n",
        )
        .unwrap_err();
        assert!(error.contains("unknown encryption \"STARTTLS\""), "{error}");
        assert!(error.contains("external_connection"), "{error}");
        let error = parse(
            "",
            "[imap]\nenabled = true\ninternal_connection = [\"mail.example.com\"]\n",
        )
        .unwrap_err();
        assert!(error.contains("is not host:port:SSL|TLS|none"), "{error}");
        let error = parse(
            "",
            "[pop3]\nenabled = false\nexternal_connection = [\"mail.example.com:995:SSL\"]\n",
        )
        .unwrap_err();
        assert!(error.contains("pop3 is not enabled"), "{error}");
        let error = parse("internal_networks = [\"10.0.0.0/33\"]", "").unwrap_err();
        assert!(error.contains("internal_networks"), "{error}");
    }
}
