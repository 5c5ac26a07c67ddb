//! Thunderbird autoconfig: the `config-v1.1.xml` document served at
//! `/.well-known/autoconfig/mail/config-v1.1.xml` and `/mail/config-v1.1.xml`
//! (`?emailaddress=alice@example.com`), read by Thunderbird, Evolution, KMail and
//! others to set up an account from an address and a password.
//!
//! The format is Mozilla's "Thunderbird:Autoconfiguration:ConfigFileFormat". The rules
//! that shape this writer come from how Thunderbird reads it (`readFromXML`):
//!
//! - `emailProvider id` and every `domain` must be host names, or the whole file is
//!   refused; so the domain, which comes from the client's query, is checked first.
//! - At least one usable `incomingServer` and one `outgoingServer` are required, or
//!   the whole file is refused: without them we answer nothing at all, so the client
//!   goes on to its other ways of guessing.
//! - Servers of a kind are in order of preference; the first one is used and the
//!   others are fallbacks. IMAP is listed before POP3 so a client that can do both
//!   keeps its mail on the server.
//! - `socketType` is `SSL` (implicit TLS), `STARTTLS` or `plain`; `username` may be a
//!   placeholder, and `%EMAILADDRESS%` is the whole address, which is what Portico's
//!   logins take.

use portico_cluster::{ConnectionSetting, Encryption};
use thiserror::Error;

use crate::address::is_valid_domain;
use crate::settings::ClientSettings;
use crate::xml::XmlWriter;

pub use crate::address::domain_of;

/// The placeholder Thunderbird replaces with the address the user typed.
pub const USERNAME_PLACEHOLDER: &str = "%EMAILADDRESS%";
/// Password sent as is (AUTH PLAIN / LOGIN), which the encryption protects.
pub const AUTHENTICATION: &str = "password-cleartext";

/// Why no autoconfig document can be written. Each one should be answered with
/// `404 Not Found` (with the message as the body): Thunderbird then tries its other
/// sources instead of refusing the account.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AutoconfigError {
    #[error("the mail domain is not a valid host name")]
    InvalidDomain,
    #[error("neither IMAP nor POP3 is offered to clients")]
    NoIncomingServer,
    #[error("SMTP submission is not offered to clients")]
    NoOutgoingServer,
}

/// The `socketType` word for an encryption.
pub fn socket_type(encryption: Encryption) -> &'static str {
    match encryption {
        Encryption::Ssl => "SSL",
        Encryption::Tls => "STARTTLS",
        Encryption::None => "plain",
    }
}

/// The autoconfig document for `email_domain` (the domain of the address the client
/// asked about; see [`domain_of`]) telling it `settings`: IMAP servers, then POP3
/// servers, then SMTP submission servers, each in the order given.
///
/// The caller checks that the domain is one the cluster serves, and picks the inside
/// or outside settings by the client's address. Serve the result as
/// `application/xml; charset=utf-8`.
pub fn document(email_domain: &str, settings: &ClientSettings) -> Result<String, AutoconfigError> {
    if !is_valid_domain(email_domain) {
        return Err(AutoconfigError::InvalidDomain);
    }
    if settings.imap.is_empty() && settings.pop3.is_empty() {
        return Err(AutoconfigError::NoIncomingServer);
    }
    if settings.smtp.is_empty() {
        return Err(AutoconfigError::NoOutgoingServer);
    }
    let domain = email_domain.to_ascii_lowercase();
    let short_name = domain.split('.').next().unwrap_or(&domain);

    let mut xml = XmlWriter::new();
    xml.open("clientConfig", &[("version", "1.1")]);
    xml.open("emailProvider", &[("id", &domain)]);
    xml.text_element("domain", &domain);
    xml.text_element("displayName", &domain);
    xml.text_element("displayShortName", short_name);
    for (kind, list) in [("imap", &settings.imap), ("pop3", &settings.pop3)] {
        for setting in list {
            server(&mut xml, "incomingServer", kind, setting);
        }
    }
    for setting in &settings.smtp {
        server(&mut xml, "outgoingServer", "smtp", setting);
    }
    Ok(xml.finish())
}

fn server(xml: &mut XmlWriter, element: &'static str, kind: &str, setting: &ConnectionSetting) {
    xml.open(element, &[("type", kind)]);
    xml.text_element("hostname", &setting.host);
    xml.text_element("port", &setting.port.to_string());
    xml.text_element("socketType", socket_type(setting.encryption));
    xml.text_element("username", USERNAME_PLACEHOLDER);
    xml.text_element("authentication", AUTHENTICATION);
    xml.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::read::{Element, parse};

    fn setting(text: &str) -> ConnectionSetting {
        text.parse().unwrap()
    }

    fn full() -> ClientSettings {
        ClientSettings {
            imap: vec![
                setting("mail.example.com:993:SSL"),
                setting("mail.example.com:143:TLS"),
            ],
            pop3: vec![
                setting("pop.example.com:995:SSL"),
                setting("10.0.0.5:110:none"),
            ],
            smtp: vec![
                setting("smtp.example.com:465:SSL"),
                setting("smtp.example.com:587:TLS"),
            ],
        }
    }

    /// (type, hostname, port, socketType) of a server element, checking the fields
    /// every server carries and that it has no others.
    fn server_fields(server: &Element) -> (String, String, String, String) {
        assert_eq!(
            server.child_names(),
            [
                "hostname",
                "port",
                "socketType",
                "username",
                "authentication"
            ]
        );
        assert_eq!(server.child("username").text, "%EMAILADDRESS%");
        assert_eq!(server.child("authentication").text, "password-cleartext");
        (
            server.attribute("type").unwrap().to_string(),
            server.child("hostname").text.clone(),
            server.child("port").text.clone(),
            server.child("socketType").text.clone(),
        )
    }

    fn fields(
        kind: &str,
        host: &str,
        port: &str,
        socket: &str,
    ) -> (String, String, String, String) {
        (kind.into(), host.into(), port.into(), socket.into())
    }

    #[test]
    fn every_setting_becomes_a_server_in_order() {
        let document = document("Example.COM", &full()).unwrap();
        let root = parse(&document);
        assert_eq!(root.name, "clientConfig");
        assert_eq!(root.namespace, None);
        assert_eq!(
            root.attributes,
            [("version".to_string(), "1.1".to_string())]
        );
        assert_eq!(root.child_names(), ["emailProvider"]);
        let provider = root.child("emailProvider");
        assert_eq!(
            provider.attributes,
            [("id".to_string(), "example.com".to_string())]
        );
        assert_eq!(
            provider.child_names(),
            [
                "domain",
                "displayName",
                "displayShortName",
                "incomingServer",
                "incomingServer",
                "incomingServer",
                "incomingServer",
                "outgoingServer",
                "outgoingServer",
            ]
        );
        assert_eq!(provider.child("domain").text, "example.com");
        assert_eq!(provider.child("displayName").text, "example.com");
        assert_eq!(provider.child("displayShortName").text, "example");
        let incoming: Vec<_> = provider
            .children_named("incomingServer")
            .map(server_fields)
            .collect();
        assert_eq!(
            incoming,
            [
                fields("imap", "mail.example.com", "993", "SSL"),
                fields("imap", "mail.example.com", "143", "STARTTLS"),
                fields("pop3", "pop.example.com", "995", "SSL"),
                fields("pop3", "10.0.0.5", "110", "plain"),
            ]
        );
        let outgoing: Vec<_> = provider
            .children_named("outgoingServer")
            .map(server_fields)
            .collect();
        assert_eq!(
            outgoing,
            [
                fields("smtp", "smtp.example.com", "465", "SSL"),
                fields("smtp", "smtp.example.com", "587", "STARTTLS"),
            ]
        );
    }

    #[test]
    fn pop3_alone_is_enough_to_receive() {
        let settings = ClientSettings {
            imap: Vec::new(),
            ..full()
        };
        let root = parse(&document("example.com", &settings).unwrap());
        let provider = root.child("emailProvider");
        let kinds: Vec<_> = provider
            .children_named("incomingServer")
            .map(|s| s.attribute("type").unwrap())
            .collect();
        assert_eq!(kinds, ["pop3", "pop3"]);
    }

    #[test]
    fn a_document_thunderbird_would_refuse_is_not_written() {
        let no_incoming = ClientSettings {
            imap: Vec::new(),
            pop3: Vec::new(),
            ..full()
        };
        assert_eq!(
            document("example.com", &no_incoming),
            Err(AutoconfigError::NoIncomingServer)
        );
        let no_outgoing = ClientSettings {
            smtp: Vec::new(),
            ..full()
        };
        assert_eq!(
            document("example.com", &no_outgoing),
            Err(AutoconfigError::NoOutgoingServer)
        );
    }

    #[test]
    fn a_hostile_domain_never_reaches_the_document() {
        for junk in [
            "example.com\"><x",
            "<script>",
            "example.com&amp;",
            "exa mple.com",
            "",
            "example.com/../x",
            "a\u{0}b",
        ] {
            assert_eq!(
                document(junk, &full()),
                Err(AutoconfigError::InvalidDomain),
                "{junk:?}"
            );
        }
        assert_eq!(domain_of("x@example.com\"><x"), None);
    }

    #[test]
    fn host_names_from_the_configuration_are_escaped_anyway() {
        // Configuration is checked at load, but the writer must not depend on it.
        let settings = ClientSettings {
            imap: vec![ConnectionSetting {
                host: "a<b>&\"c".into(),
                port: 993,
                encryption: Encryption::Ssl,
            }],
            ..full()
        };
        let root = parse(&document("example.com", &settings).unwrap());
        let first = root
            .child("emailProvider")
            .children_named("incomingServer")
            .next()
            .unwrap();
        assert_eq!(first.child("hostname").text, "a<b>&\"c");
    }
}
