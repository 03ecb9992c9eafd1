//! `[overlay]`: the P2PSIP overlay this node joins (RFC 7086 §10's configuration, in TOML),
//! with its bootstrap nodes.

use std::net::SocketAddr;
use std::path::PathBuf;

use hip::Hit;
use serde::Deserialize;

use super::report::{broken, Broken, KeyPath};
use super::values::{de_hit, de_locators};

/// `[overlay]`: the overlay this node joins (RFC 7086 §10's configuration, in TOML).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// The overlay's name (a DNS-style name, R10); its hash marks every message.
    pub name: String,
    /// Nodes to join through: each its HIT and its locators. A node that lists itself (or
    /// nothing) starts the ring when no other bootstrap answers.
    #[serde(default)]
    pub bootstrap: Vec<Bootstrap>,
    /// Join as a client (R15): attach to the responsible peer, store nothing.
    #[serde(default)]
    pub client: bool,
    /// Write the node's own inner packets (the overlay's TCP links, decrypted) to this
    /// pcap file, for tshark to dissect the RELOAD framing on port 6084.
    #[serde(default)]
    pub pcap: Option<PathBuf>,
}

/// One `[[overlay.bootstrap]]`: a bootstrap node, RFC 7086 §10 (HIT, address and port).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    #[serde(deserialize_with = "de_hit")]
    pub hit: Hit,
    /// Locators, as in `[[peer]]` (a port defaults to [`DEFAULT_PORT`](super::DEFAULT_PORT)).
    #[serde(deserialize_with = "de_locators")]
    pub locators: Vec<SocketAddr>,
}

impl Overlay {
    /// The rules of `[overlay]`: a DNS-style name, and locators for every bootstrap node.
    pub(super) fn check(&self) -> Result<(), Broken> {
        let valid = !self.name.is_empty()
            && self.name.len() <= 253
            && self.name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(broken(
                KeyPath::of(&["overlay", "name"]),
                format!(
                    "overlay.name = {:?} is not a DNS-style name (labels of letters, digits and \
                     '-', separated by dots)",
                    self.name
                ),
            ));
        }
        for (n, b) in self.bootstrap.iter().enumerate() {
            if b.locators.is_empty() {
                return Err(broken(
                    KeyPath::of(&["overlay", "bootstrap"]).index(n),
                    format!("overlay.bootstrap[{n}] has no locators: give where it is reached"),
                ));
            }
        }
        Ok(())
    }
}
