//! Deserialisation of single values: HITs, IP addresses, peer locators, the LSI and its
//! range, all written as TOML strings.
//!
//! Each string is parsed by a visitor: an error raised inside the visitor carries the span of
//! the value being deserialised, so that a bad element is reported as
//! `peer[0].locators[1]`, not just `peer[0].locators`. Messages quote the text.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hip::Hit;
use serde::{Deserialize, Deserializer};

use super::{LsiRange, DEFAULT_PORT};

/// Deserialises a TOML string with `parse`, whose error message becomes the error.
fn from_text<'de, D, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Text<T>(fn(&str) -> Result<T, String>);

    impl<T> serde::de::Visitor<'_> for Text<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }

    d.deserialize_str(Text(parse))
}

fn parse_hit(text: &str) -> Result<Hit, String> {
    text.parse().map_err(|_| match text.parse::<Ipv6Addr>() {
        Ok(_) => format!("{text:?} is not a HIT (not in 2001:20::/28)"),
        Err(_) => format!("{text:?} is not a HIT (not an IPv6 address)"),
    })
}

fn parse_listen(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IP address (the port is interface.port)"))
}

fn parse_lsi(text: &str) -> Result<Option<Ipv4Addr>, String> {
    text.parse()
        .map(Some)
        .map_err(|_| format!("{text:?} is not an IPv4 address"))
}

fn parse_lsi_range(text: &str) -> Result<LsiRange, String> {
    text.parse().map_err(|e| format!("{text:?} is {e}"))
}

/// A peer locator: `IP`, `IP:port`, `[IPv6]` or `[IPv6]:port`; no port means
/// [`DEFAULT_PORT`].
fn parse_locator(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip = match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(inner) => inner.parse().map(IpAddr::V6).ok(),
        None => text.parse().ok(),
    };
    // DNS names are refused rather than resolved: start-up must not hang on, or silently
    // depend on, a resolver.
    let example = "like \"198.51.100.2:10500\" or \"[2001:db8::2]\"; names are not resolved";
    ip.map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .ok_or_else(|| format!("{text:?} is not an IP address with an optional port ({example})"))
}

pub(super) fn de_hit<'de, D: Deserializer<'de>>(d: D) -> Result<Hit, D::Error> {
    from_text(d, parse_hit)
}

pub(super) fn de_lsi<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
    from_text(d, parse_lsi)
}

impl<'de> Deserialize<'de> for LsiRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, parse_lsi_range)
    }
}

/// One `listen` address; a type of its own so that each element is deserialised (and its
/// error located) separately.
struct ListenAddr(IpAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, parse_listen).map(ListenAddr)
    }
}

pub(super) fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    let addrs = Vec::<ListenAddr>::deserialize(d)?;
    Ok(addrs.into_iter().map(|a| a.0).collect())
}

/// One peer locator (see [`parse_locator`]).
struct Locator(SocketAddr);

impl<'de> Deserialize<'de> for Locator {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, parse_locator).map(Locator)
    }
}

pub(super) fn de_locators<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let locators = Vec::<Locator>::deserialize(d)?;
    Ok(locators.into_iter().map(|l| l.0).collect())
}

/// The base64 public keys of `[overlay] signers`.
pub(super) fn de_keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
    struct Key([u8; 32]);

    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            from_text(d, |text| {
                crate::keys::parse_public_key(text)
                    .map(|k| Key(k.public_bytes()))
                    .map_err(|e| format!("{text:?} is not a public key: {e}"))
            })
        }
    }
    Vec::<Key>::deserialize(d).map(|keys| keys.into_iter().map(|k| k.0).collect())
}

/// `[overlay] grant`: a name grant in base64, as `hipbone name grant` prints it.
pub(super) fn de_grant<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<overlay::wire::NameGrant>, D::Error> {
    from_text(d, |text| crate::names::parse_grant(text).map(Some))
}

/// Addresses with their ports (`[dns] listen`, `upstream`).
pub(super) fn de_socket_addrs<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<SocketAddr>, D::Error> {
    struct Addr(SocketAddr);

    impl<'de> Deserialize<'de> for Addr {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            from_text(d, |text| {
                text.parse().map(Addr).map_err(|_| {
                    format!("{text:?} is not an address with a port, like \"127.0.0.1:53\"")
                })
            })
        }
    }
    Vec::<Addr>::deserialize(d).map(|a| a.into_iter().map(|a| a.0).collect())
}

/// Address ranges (`[nat] relay_private`), e.g. "10.1.0.0/16".
pub(super) fn de_prefixes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<hip::Prefix>, D::Error> {
    struct Range(hip::Prefix);

    impl<'de> Deserialize<'de> for Range {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            from_text(d, |text| {
                text.parse()
                    .map(Range)
                    .map_err(|e| format!("{text:?} is not an address range: {e}"))
            })
        }
    }
    Vec::<Range>::deserialize(d).map(|r| r.into_iter().map(|r| r.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{parse, peer};

    #[test]
    fn locators_take_the_hip_port_by_default() {
        let c = parse(&peer(
            "locators = [\"192.0.2.1\", \"192.0.2.2:4000\", \"2001:db8::3\", \
             \"[2001:db8::4]\", \"[2001:db8::5]:4001\"]",
        ))
        .unwrap();
        let want: Vec<SocketAddr> = [
            "192.0.2.1:10500",
            "192.0.2.2:4000",
            "[2001:db8::3]:10500",
            "[2001:db8::4]:10500",
            "[2001:db8::5]:4001",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(c.peers[0].locators, want);
        // Our own port is ours: a peer's default port stays the IANA one.
        let c = parse(&format!(
            "[interface]\nport = 4000\n{}",
            peer("locators = [\"192.0.2.1\"]")
        ))
        .unwrap();
        assert_eq!(c.peers[0].locators[0].port(), DEFAULT_PORT);
    }
}
