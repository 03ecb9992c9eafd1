//! `[overlay]`: the P2PSIP overlay this node joins (RFC 7086 §10's configuration, in TOML),
//! with its bootstrap nodes.

use std::net::SocketAddr;
use std::path::PathBuf;

use hip::Hit;
use serde::Deserialize;

use super::report::{broken, Broken, KeyPath};
use super::values::{de_grant, de_hit, de_keys, de_locators};
use overlay::wire::NameGrant;

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
    /// The overlay's name signers: their public keys (base64, as `hipbone pubkey` prints
    /// them). A name resolves only with a grant of one of them; without any, members are
    /// named by their HITs alone (docs/OVERLAY.md, "Names").
    #[serde(default, deserialize_with = "de_keys")]
    pub signers: Vec<[u8; 32]>,
    /// The label this node holds (`label.<overlay name>`), with `grant`.
    #[serde(default)]
    pub label: Option<String>,
    /// The grant of `label` to this node, as `hipbone name grant` prints it (hex).
    #[serde(default, deserialize_with = "de_grant")]
    pub grant: Option<NameGrant>,
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
        self.check_name()?;
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

    /// `label` and `grant` go together, and the grant is for `label.<name>` by one of
    /// `signers` (whether it is for our HIT, and still valid, is checked at start-up).
    fn check_name(&self) -> Result<(), Broken> {
        let at = |key: &str| KeyPath::of(&["overlay", key]);
        let (label, grant) = match (&self.label, &self.grant) {
            (None, None) => return Ok(()),
            (Some(_), None) => {
                return Err(broken(
                    at("label"),
                    "overlay.label needs overlay.grant: the grant of the name by a signer of \
                     the overlay (`hipbone name grant`)"
                        .to_string(),
                ))
            }
            (None, Some(_)) => {
                return Err(broken(
                    at("grant"),
                    "overlay.grant needs overlay.label: the label it grants".to_string(),
                ))
            }
            (Some(l), Some(g)) => (l, g),
        };
        let name =
            overlay::names::full_name(label, &self.name.to_ascii_lowercase()).map_err(|_| {
                broken(
                    at("label"),
                    format!(
                        "overlay.label = {label:?} is not a label (lower-case letters, digits \
                         and '-', at most 63, no dots)"
                    ),
                )
            })?;
        if grant.name != name {
            return Err(broken(
                at("grant"),
                format!(
                    "overlay.grant is for {:?}, not {:?}",
                    String::from_utf8_lossy(&grant.name),
                    String::from_utf8_lossy(&name)
                ),
            ));
        }
        // Any valid time: expiry is the start-up's to check, with the clock.
        overlay::names::check(grant, &name, grant.hit, &self.signers, 0)
            .map_err(|e| broken(at("grant"), format!("overlay.grant does not hold: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::refused;
    use hip::HostIdentity;

    fn with(extra: &str) -> String {
        format!("[overlay]\nname = \"lab.example\"\n{extra}")
    }

    #[test]
    fn every_name_rule_names_its_key() {
        let signer = HostIdentity::from_secret([1; 32]);
        let key = crate::keys::encode_public(signer.public());
        let hit = HostIdentity::from_secret([2; 32]).hit();
        let grant = crate::names::grant(&signer, "alice", "lab.example", hit, 30, 0).unwrap();
        let good = with(&format!(
            "signers = [\"{key}\"]\nlabel = \"alice\"\ngrant = \"{grant}\"\n"
        ));
        let c = crate::config::Config::parse(&good, "hipbone.toml").unwrap();
        let o = c.overlay.unwrap();
        assert_eq!(o.signers, vec![signer.public().public_bytes()]);
        assert_eq!(o.grant.unwrap().hit.0, hit.0);

        let stranger = crate::keys::encode_public(HostIdentity::from_secret([3; 32]).public());
        let cases = [
            (
                "signers = [\"nope\"]\n".to_string(),
                "overlay.signers[0]",
                "not a public key",
            ),
            (
                "label = \"alice\"\n".to_string(),
                "overlay.label",
                "needs overlay.grant",
            ),
            (
                format!("grant = \"{grant}\"\n"),
                "overlay.grant",
                "needs overlay.label",
            ),
            (
                format!("signers = [\"{key}\"]\nlabel = \"bob\"\ngrant = \"{grant}\"\n"),
                "overlay.grant",
                "is for \"alice.lab.example\", not \"bob.lab.example\"",
            ),
            (
                format!("signers = [\"{stranger}\"]\nlabel = \"alice\"\ngrant = \"{grant}\"\n"),
                "overlay.grant",
                "not a signer of this overlay",
            ),
            (
                format!("label = \"alice\"\ngrant = \"{grant}\"\n"),
                "overlay.grant",
                "has no signers",
            ),
            (
                "label = \"a.b\"\ngrant = \"AAAA\"\n".to_string(),
                "overlay.grant",
                "does not parse",
            ),
            (
                format!("signers = [\"{key}\"]\nlabel = \"Alice\"\ngrant = \"{grant}\"\n"),
                "overlay.label",
                "is not a label",
            ),
        ];
        for (extra, key, says) in cases {
            let msg = refused(&with(&extra), key);
            assert!(msg.contains(says), "{msg}");
        }
    }
}
