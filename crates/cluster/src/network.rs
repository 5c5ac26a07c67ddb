//! Client networks in configuration (`trusted_networks = ["192.0.2.0/24"]`): parsed
//! when the file is loaded, so a mistyped entry stops the node at start with the key
//! named, instead of silently trusting nobody on every connection.

use std::net::IpAddr;

use serde::Deserialize;

/// One entry of `trusted_networks`: an address and how many leading bits must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// `192.0.2.0/24`, `2001:db8::/32`, or a bare address (all its bits).
    pub fn parse(text: &str) -> Option<Network> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().ok()?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|&p| p <= bits)?
            }
            Some(_) => return None,
        };
        Some(Network { address, prefix })
    }

    /// Whether `ip` is inside; an IPv4-mapped IPv6 client (`::ffff:192.0.2.1`) counts as
    /// its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bytes: u128, bits: u32, prefix: u8) -> u128 {
            if prefix == 0 {
                0
            } else {
                bytes >> (bits - u32::from(prefix))
            }
        }
        match (self.address, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), 32, self.prefix)
                    == masked(u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), 128, self.prefix)
                    == masked(u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for Network {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Network::parse(&text).ok_or_else(|| format!("{text:?} is not an address or a CIDR network"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Network {
        Network::parse(text).unwrap_or_else(|| panic!("{text}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_parse() {
        assert_eq!(
            net("192.0.2.0/24"),
            Network {
                address: ip("192.0.2.0"),
                prefix: 24
            }
        );
        assert_eq!(net(" 10.1.2.3 ").prefix, 32);
        assert_eq!(net("2001:db8::/32").prefix, 32);
        assert_eq!(net("::1").prefix, 128);
        assert_eq!(net("0.0.0.0/0").prefix, 0);
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "example.com",
            "10.0.0/8",
            "10.0.0.0/ 8",
        ] {
            assert_eq!(Network::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn networks_contain() {
        let loopback = net("127.0.0.0/8");
        assert!(loopback.contains(ip("127.0.0.1")));
        assert!(loopback.contains(ip("127.255.255.255")));
        assert!(!loopback.contains(ip("128.0.0.1")));
        assert!(loopback.contains(ip("::ffff:127.0.0.1")));
        assert!(!loopback.contains(ip("::1")));
        let one = net("192.0.2.7");
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.6")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        let v6 = net("2001:db8::/33");
        assert!(v6.contains(ip("2001:db8:7fff::1")));
        assert!(!v6.contains(ip("2001:db8:8000::1")));
        assert!(net("::/0").contains(ip("::1")));
    }

    #[test]
    fn a_bad_entry_is_refused_when_the_configuration_is_read() {
        #[derive(Deserialize)]
        struct Settings {
            trusted_networks: Vec<Network>,
        }
        let err = toml::from_str::<Settings>("trusted_networks = [\"10.0.0.0/33\"]")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("\"10.0.0.0/33\" is not an address"), "{err}");
        let ok: Settings = toml::from_str("trusted_networks = [\"10.0.0.0/8\"]").unwrap();
        assert_eq!(ok.trusted_networks, vec![net("10.0.0.0/8")]);
    }
}
