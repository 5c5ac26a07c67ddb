//! The connection settings one client is told, for one side of the network.

use portico_cluster::{ClientProtocol, ClusterConfig, ConnectionSetting};

/// What one client is told for each protocol, best first (implicit TLS before
/// STARTTLS), for one side of the network: inside it or outside it. An empty list
/// means the protocol is not offered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSettings {
    pub imap: Vec<ConnectionSetting>,
    pub pop3: Vec<ConnectionSetting>,
    /// Message submission (RFC 6409 / 8314), not inbound SMTP.
    pub smtp: Vec<ConnectionSetting>,
}

impl ClientSettings {
    /// The settings `config` hands out to clients inside the network (`internal`) or
    /// outside it.
    pub fn for_client(config: &ClusterConfig, internal: bool) -> ClientSettings {
        ClientSettings {
            imap: config.connection_settings(ClientProtocol::Imap, internal),
            pop3: config.connection_settings(ClientProtocol::Pop3, internal),
            smtp: config.connection_settings(ClientProtocol::Smtp, internal),
        }
    }

    /// The settings for one protocol, best first.
    pub fn for_protocol(&self, protocol: ClientProtocol) -> &[ConnectionSetting] {
        match protocol {
            ClientProtocol::Imap => &self.imap,
            ClientProtocol::Pop3 => &self.pop3,
            ClientProtocol::Smtp => &self.smtp,
        }
    }

    /// Whether no protocol is offered at all.
    pub fn is_empty(&self) -> bool {
        self.imap.is_empty() && self.pop3.is_empty() && self.smtp.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_offers_every_protocol_on_both_sides() {
        let config = ClusterConfig::embedded().unwrap();
        for internal in [true, false] {
            let settings = ClientSettings::for_client(&config, internal);
            for protocol in ClientProtocol::ALL {
                assert_eq!(
                    settings.for_protocol(protocol),
                    config.connection_settings(protocol, internal).as_slice()
                );
            }
            assert!(!settings.is_empty());
        }
        assert!(ClientSettings::default().is_empty());
    }
}
