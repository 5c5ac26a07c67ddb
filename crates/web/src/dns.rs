//! What `portico settings` prints for an administrator: the DNS records that let mail
//! clients find the servers by themselves, and a plain-text table of the settings to
//! mail out to users.
//!
//! SRV records follow RFC 6186 (`_imap`, `_pop3`, `_submission`) and RFC 8314
//! (`_imaps`, `_pop3s`, `_submissions` for implicit TLS). One record per setting; its
//! priority is its place in the protocol's list, so a client that looks up both the
//! implicit-TLS and the STARTTLS name prefers the one the cluster lists first (RFC
//! 8314 §5.1). A protocol that is not offered gets RFC 6186's "not available" record
//! (target `.`), so clients stop looking instead of guessing.
//!
//! Autoconfig and Autodiscover are found by host name (`autoconfig.<domain>`,
//! `autodiscover.<domain>`) and by the `_autodiscover._tcp` SRV record Outlook reads.

use std::fmt::Write as _;
use std::net::IpAddr;

use portico_cluster::{ClientProtocol, ConnectionSetting, Encryption};
use thiserror::Error;

use crate::address::is_valid_domain;
use crate::page::encryption_label;
use crate::settings::ClientSettings;

/// TTL of every record printed, in seconds.
pub const TTL: u32 = 3600;

/// Why no records can be printed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DnsError {
    #[error("{0:?} is not a valid domain name")]
    InvalidDomain(String),
}

/// The SRV service labels of a protocol: (implicit TLS, STARTTLS or plain).
fn services(protocol: ClientProtocol) -> (&'static str, &'static str) {
    match protocol {
        ClientProtocol::Imap => ("_imaps", "_imap"),
        ClientProtocol::Pop3 => ("_pop3s", "_pop3"),
        ClientProtocol::Smtp => ("_submissions", "_submission"),
    }
}

/// `name` as a fully qualified name, with exactly one trailing dot.
fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// Checks a domain given on the command line (a trailing dot is allowed there) and
/// returns it without the dot, lowercase.
fn checked_domain(domain: &str) -> Result<String, DnsError> {
    let bare = domain.strip_suffix('.').unwrap_or(domain);
    if is_valid_domain(bare) {
        Ok(bare.to_ascii_lowercase())
    } else {
        Err(DnsError::InvalidDomain(domain.to_string()))
    }
}

/// RFC 6186 / RFC 8314 SRV records for `domain`, in zone-file form, from the settings
/// given to clients outside the network, IMAP then POP3 then submission:
///
/// ```text
/// _imaps._tcp.example.com. 3600 IN SRV 0 1 993 mail.example.com.
/// _imap._tcp.example.com. 3600 IN SRV 1 1 143 mail.example.com.
/// ```
///
/// A setting whose host is an IP address cannot be an SRV target; it is printed as a
/// `;` comment saying so.
pub fn srv_records(domain: &str, external: &ClientSettings) -> Result<Vec<String>, DnsError> {
    let domain = checked_domain(domain)?;
    let mut lines = Vec::new();
    for protocol in ClientProtocol::ALL {
        let (implicit, starttls) = services(protocol);
        let settings = external.for_protocol(protocol);
        if settings.is_empty() {
            for service in [implicit, starttls] {
                lines.push(format!("{service}._tcp.{domain}. {TTL} IN SRV 0 0 0 ."));
            }
            continue;
        }
        for (priority, setting) in settings.iter().enumerate() {
            let service = match setting.encryption {
                Encryption::Ssl => implicit,
                Encryption::Tls | Encryption::None => starttls,
            };
            lines.push(srv_line(service, &domain, priority, setting));
        }
    }
    Ok(lines)
}

fn srv_line(service: &str, domain: &str, priority: usize, setting: &ConnectionSetting) -> String {
    let owner = format!("{service}._tcp.{domain}.");
    if setting.host.parse::<IpAddr>().is_ok() {
        return format!(
            "; {owner} cannot point at {}: an SRV target must be a host name",
            setting.host
        );
    }
    format!(
        "{owner} {TTL} IN SRV {priority} 1 {} {}",
        setting.port,
        absolute(&setting.host)
    )
}

/// The records that make autoconfig and Autodiscover reachable for `domain`, served
/// by the HTTPS listener at `https_host:https_port`: `autoconfig.<domain>` and
/// `autodiscover.<domain>` (a CNAME to the host, or A / AAAA records when it is an
/// address), and Outlook's `_autodiscover._tcp.<domain>` SRV record.
///
/// Thunderbird fetches `https://autoconfig.<domain>/mail/config-v1.1.xml` on port 443
/// only, so when `https_port` is not 443 a comment says so.
pub fn discovery_records(
    domain: &str,
    https_host: &str,
    https_port: u16,
) -> Result<Vec<String>, DnsError> {
    let domain = checked_domain(domain)?;
    let mut lines = Vec::new();
    for label in ["autoconfig", "autodiscover"] {
        let owner = format!("{label}.{domain}.");
        let line = match https_host.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => format!("{owner} {TTL} IN A {ip}"),
            Ok(IpAddr::V6(ip)) => format!("{owner} {TTL} IN AAAA {ip}"),
            Err(_) => format!("{owner} {TTL} IN CNAME {}", absolute(https_host)),
        };
        lines.push(line);
    }
    let srv = format!("_autodiscover._tcp.{domain}.");
    if https_host.parse::<IpAddr>().is_ok() {
        lines.push(format!(
            "; {srv} cannot point at {https_host}: an SRV target must be a host name"
        ));
    } else {
        lines.push(format!(
            "{srv} {TTL} IN SRV 0 1 {https_port} {}",
            absolute(https_host)
        ));
    }
    if https_port != 443 {
        lines.push(format!(
            "; autoconfig.{domain} is fetched on port 443 only; HTTPS listens on {https_port}"
        ));
    }
    Ok(lines)
}

/// A plain-text table of the settings for `address_or_domain`, inside and outside the
/// network, for an administrator to mail to users:
///
/// ```text
/// Mail settings for alice@example.com
///
/// Protocol  Network  Server            Port  Encryption
/// IMAP4     inside   mail.corp         143   TLS
/// ...
/// ```
pub fn settings_text(
    address_or_domain: &str,
    internal: &ClientSettings,
    external: &ClientSettings,
) -> String {
    const HEADER: [&str; 5] = ["Protocol", "Network", "Server", "Port", "Encryption"];
    let mut rows: Vec<[String; 5]> = Vec::new();
    for (protocol, name) in [
        (ClientProtocol::Imap, "IMAP4"),
        (ClientProtocol::Pop3, "POP3"),
        (ClientProtocol::Smtp, "SMTP"),
    ] {
        for (side, settings) in [("inside", internal), ("outside", external)] {
            let list = settings.for_protocol(protocol);
            if list.is_empty() {
                rows.push([
                    name.into(),
                    side.into(),
                    "not offered".into(),
                    "-".into(),
                    "-".into(),
                ]);
            }
            for setting in list {
                rows.push([
                    name.into(),
                    side.into(),
                    setting.host.clone(),
                    setting.port.to_string(),
                    encryption_label(setting.encryption).into(),
                ]);
            }
        }
    }
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = format!("Mail settings for {address_or_domain}\n\n");
    let mut line = |cells: [&str; 5]| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}  ");
            }
        }
        text.push_str(out.trim_end());
        text.push('\n');
    };
    line(HEADER);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    text.push_str(
        "\nUser name: the full email address. Encryption: SSL = TLS from the first byte \
         (implicit TLS);\nTLS = STARTTLS on a plain connection; none = no encryption. \
         Use the first server listed;\nthe others are alternatives.\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(text: &str) -> ConnectionSetting {
        text.parse().unwrap()
    }

    fn external() -> ClientSettings {
        ClientSettings {
            imap: vec![
                setting("mail.example.com:993:SSL"),
                setting("mail.example.com:143:TLS"),
            ],
            pop3: vec![setting("pop.example.com.:110:none")],
            smtp: vec![
                setting("smtp.example.com:465:SSL"),
                setting("192.0.2.7:587:TLS"),
            ],
        }
    }

    #[test]
    fn srv_records_follow_rfc_6186_and_8314() {
        assert_eq!(
            srv_records("Example.COM.", &external()).unwrap(),
            [
                "_imaps._tcp.example.com. 3600 IN SRV 0 1 993 mail.example.com.",
                "_imap._tcp.example.com. 3600 IN SRV 1 1 143 mail.example.com.",
                "_pop3._tcp.example.com. 3600 IN SRV 0 1 110 pop.example.com.",
                "_submissions._tcp.example.com. 3600 IN SRV 0 1 465 smtp.example.com.",
                "; _submission._tcp.example.com. cannot point at 192.0.2.7: an SRV target must be a host name",
            ]
        );
    }

    #[test]
    fn a_protocol_not_offered_is_published_as_unavailable() {
        let settings = ClientSettings {
            pop3: Vec::new(),
            ..external()
        };
        let lines = srv_records("example.com", &settings).unwrap();
        assert!(lines.contains(&"_pop3s._tcp.example.com. 3600 IN SRV 0 0 0 .".to_string()));
        assert!(lines.contains(&"_pop3._tcp.example.com. 3600 IN SRV 0 0 0 .".to_string()));
        assert_eq!(
            srv_records("bad domain", &settings),
            Err(DnsError::InvalidDomain("bad domain".into()))
        );
    }

    #[test]
    fn discovery_names_point_at_the_https_listener() {
        assert_eq!(
            discovery_records("example.com", "mail.example.com", 443).unwrap(),
            [
                "autoconfig.example.com. 3600 IN CNAME mail.example.com.",
                "autodiscover.example.com. 3600 IN CNAME mail.example.com.",
                "_autodiscover._tcp.example.com. 3600 IN SRV 0 1 443 mail.example.com.",
            ]
        );
        assert_eq!(
            discovery_records("example.com", "2001:db8::1", 8443).unwrap(),
            [
                "autoconfig.example.com. 3600 IN AAAA 2001:db8::1",
                "autodiscover.example.com. 3600 IN AAAA 2001:db8::1",
                "; _autodiscover._tcp.example.com. cannot point at 2001:db8::1: an SRV target must be a host name",
                "; autoconfig.example.com is fetched on port 443 only; HTTPS listens on 8443",
            ]
        );
        assert_eq!(
            discovery_records("example.com", "192.0.2.1", 443).unwrap()[0],
            "autoconfig.example.com. 3600 IN A 192.0.2.1"
        );
        assert!(discovery_records("exa;mple.com", "mail.example.com", 443).is_err());
    }

    #[test]
    fn the_settings_table_lines_up() {
        let internal = ClientSettings {
            imap: vec![setting("imap.corp:143:TLS")],
            pop3: Vec::new(),
            smtp: vec![setting("smtp.corp:587:TLS")],
        };
        let text = settings_text("alice@example.com", &internal, &external());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Mail settings for alice@example.com");
        assert_eq!(lines[1], "");
        let table: Vec<Vec<&str>> = lines[2..]
            .iter()
            .take_while(|l| !l.is_empty())
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            table,
            [
                vec!["Protocol", "Network", "Server", "Port", "Encryption"],
                vec!["IMAP4", "inside", "imap.corp", "143", "TLS"],
                vec!["IMAP4", "outside", "mail.example.com", "993", "SSL"],
                vec!["IMAP4", "outside", "mail.example.com", "143", "TLS"],
                vec!["POP3", "inside", "not", "offered", "-", "-"],
                vec!["POP3", "outside", "pop.example.com.", "110", "none"],
                vec!["SMTP", "inside", "smtp.corp", "587", "TLS"],
                vec!["SMTP", "outside", "smtp.example.com", "465", "SSL"],
                vec!["SMTP", "outside", "192.0.2.7", "587", "TLS"],
            ]
        );
        // Columns start at the same offset on every line.
        let port_column = lines[2].find("Port").unwrap();
        for line in &lines[3..11] {
            let cell = &line[port_column..];
            assert!(
                cell.starts_with(|c: char| c.is_ascii_digit() || c == '-'),
                "{line}"
            );
        }
        assert!(text.contains("User name: the full email address."));
    }
}
