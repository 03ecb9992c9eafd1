//! `[[peer]]`: the hosts this node knows how to reach (HIT, locators, a name for status
//! output, whether it is our rendezvous or relay server), and the rules between them.

use std::collections::HashMap;
use std::net::SocketAddr;

use hip::Hit;
use serde::Deserialize;

use super::report::{broken, Broken, KeyPath};
use super::values::{de_hit, de_locators};

/// Longest `peer.name`: a label for one column of status output.
const MAX_PEER_NAME: usize = 64;

/// One `[[peer]]`: a host we know how to reach.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The peer's HIT.
    #[serde(deserialize_with = "de_hit")]
    pub hit: Hit,
    /// Where the peer may be reached, tried in order; a locator written without a port gets
    /// [`DEFAULT_PORT`](super::DEFAULT_PORT).
    #[serde(default, deserialize_with = "de_locators")]
    pub locators: Vec<SocketAddr>,
    /// A label for status output.
    #[serde(default)]
    pub name: Option<String>,
    /// This peer is our rendezvous server: register with it at start (RFC 8003), so that
    /// hosts that know only its address can reach us through it.
    #[serde(default)]
    pub rendezvous: bool,
    /// This peer is our relay server (RFC 9028): register with it at start, so that hosts
    /// that know only its address reach us through it even behind a NAT, and our data
    /// goes through it wherever no direct path opens.
    #[serde(default)]
    pub relay: bool,
}

/// The rules of every `[[peer]]`, in file order: each HIT and name once, usable locators.
pub(super) fn check(peers: &[Peer]) -> Result<(), Broken> {
    let mut hits: HashMap<Hit, usize> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (n, peer) in peers.iter().enumerate() {
        if let Some(first) = hits.insert(peer.hit, n) {
            return Err(broken(
                KeyPath::peer(n, "hit"),
                format!(
                    "peer[{n}].hit = \"{}\" is listed twice (also peer[{first}])",
                    peer.hit
                ),
            ));
        }
        if peer.locators.is_empty() {
            return Err(broken(
                KeyPath::peer(n, "locators"),
                format!(
                    "peer[{n}].locators is empty: give at least one address, like \
                         [\"198.51.100.2\"]"
                ),
            ));
        }
        for (l, loc) in peer.locators.iter().enumerate() {
            let why = if loc.port() == 0 {
                Some("port 0 cannot be sent to")
            } else if loc.ip().is_unspecified() {
                Some("an unspecified address cannot be sent to")
            } else if loc.ip().is_multicast() {
                Some("a multicast address is not a host")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(broken(
                    KeyPath::peer(n, "locators").index(l),
                    format!("peer[{n}].locators[{l}] = \"{loc}\": {why}"),
                ));
            }
        }
        if let Some(name) = &peer.name {
            // The name is printed in status output as is: no terminal control
            // sequences, and short enough for a column.
            if name.is_empty() || name.len() > MAX_PEER_NAME || name.chars().any(char::is_control) {
                return Err(broken(
                    KeyPath::peer(n, "name"),
                    format!(
                        "peer[{n}].name = {name:?} must be 1..={MAX_PEER_NAME} bytes \
                             without control characters"
                    ),
                ));
            }
            if let Some(first) = names.insert(name, n) {
                return Err(broken(
                    KeyPath::peer(n, "name"),
                    format!("peer[{n}].name = {name:?} is listed twice (also peer[{first}])"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{peer, refused};

    #[test]
    fn peer_hits_must_be_hits() {
        let text = format!(
            "{}[[peer]]\nhit = \"2001:db8::1\"\nlocators = [\"192.0.2.1\"]\n",
            peer("locators = [\"192.0.2.2\"]")
        );
        let msg = refused(&text, "peer[1].hit");
        assert_eq!(
            msg,
            "hipbone.toml:5: peer[1].hit: \"2001:db8::1\" is not a HIT (not in 2001:20::/28)"
        );
        let msg = refused("[[peer]]\nhit = \"bob\"\n", "peer[0].hit");
        assert!(
            msg.ends_with("\"bob\" is not a HIT (not an IPv6 address)"),
            "{msg}"
        );
        let msg = refused("[[peer]]\nlocators = [\"192.0.2.1\"]\n", "peer[0].hit");
        assert_eq!(msg, "hipbone.toml:1: peer[0].hit is missing");
    }

    #[test]
    fn every_peer_rule_names_its_key() {
        let dup = format!(
            "{}{}",
            peer("locators = [\"192.0.2.1\"]"),
            // The same HIT written another way.
            "[[peer]]\nhit = \"2001:0025:94f8:6e7a:36ad:d203:ed89:625F\"\n\
             locators = [\"192.0.2.2\"]\n"
        );
        let msg = refused(&dup, "peer[1].hit");
        assert!(msg.contains("listed twice (also peer[0])"), "{msg}");
        assert!(msg.starts_with("hipbone.toml:5: "), "{msg}");

        let cases = [
            ("locators = []", "peer[0].locators", "is empty"),
            ("", "peer[0].locators", "is empty"),
            (
                "locators = [\"192.0.2.1\", \"192.0.2.2:0\"]",
                "peer[0].locators[1]",
                "port 0 cannot be sent to",
            ),
            (
                "locators = [\"0.0.0.0\"]",
                "peer[0].locators[0]",
                "unspecified address",
            ),
            (
                "locators = [\"[ff02::1]:10500\"]",
                "peer[0].locators[0]",
                "multicast",
            ),
            (
                "locators = [\"192.0.2.1\", \"bob.example\"]",
                "peer[0].locators[1]",
                "\"bob.example\" is not an IP address with an optional port",
            ),
            (
                "locators = [\"192.0.2.1\"]\nname = \"\"",
                "peer[0].name",
                "must be 1..=64 bytes",
            ),
            (
                "locators = [\"192.0.2.1\"]\nname = \"bob\\u001b[2J\"",
                "peer[0].name",
                "without control characters",
            ),
        ];
        for (extra, key, problem) in cases {
            let msg = refused(&peer(extra), key);
            assert!(msg.contains(problem), "{extra}: {msg}");
        }

        let other = "2001:2a::1";
        let names = format!(
            "{}[[peer]]\nhit = \"{other}\"\nlocators = [\"192.0.2.2\"]\nname = \"bob\"\n",
            peer("locators = [\"192.0.2.1\"]\nname = \"bob\"")
        );
        let msg = refused(&names, "peer[1].name");
        assert!(
            msg.contains("\"bob\" is listed twice (also peer[0])"),
            "{msg}"
        );
    }
}
