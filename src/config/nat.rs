//! `[nat]`: NAT traversal (RFC 9028) — serving as a relay server with per-client quotas, and
//! keepalives and direct-path rechecks behind a NAT.

use serde::Deserialize;

use super::report::{broken, in_range, Broken, KeyPath};
use super::values::de_prefixes;
use super::Peer;

/// `[nat]`: NAT traversal (RFC 9028).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Nat {
    /// Serve as a relay server: hosts behind NATs register with us, and we relay their
    /// HIP packets and ESP (only theirs, within the quotas below).
    pub relay: bool,
    /// Whether a NAT stands between us and the rest (then, in an overlay, our bootstraps
    /// relay for us and our join asks to be connected to). Absent: we are behind one when
    /// every address of ours is private (RFC 1918, RFC 6598, link-local, unique local).
    pub behind: Option<bool>,
    /// Behind a NAT, send a keepalive on every association that has sent nothing for this
    /// many seconds. 0 turns keepalives off.
    pub keepalive_seconds: u64,
    /// While an association is relayed, look for a direct path again this often.
    pub recheck_seconds: u64,
    /// As a relay server: peers one client may have permissions for at once.
    pub max_permissions: usize,
    /// As a relay server: bytes per second relayed for one client.
    pub max_rate: u64,
    /// As a relay server: bytes relayed for one client per hour.
    pub max_bytes: u64,
    /// As a relay server: private ranges (RFC 1918, 100.64/10, fc00::/7, link-local) we
    /// forward to for our clients, e.g. "10.1.0.0/16". By default none: a client reaches
    /// only public addresses through us, never our own site.
    #[serde(deserialize_with = "de_prefixes")]
    pub relay_private: Vec<hip::Prefix>,
}

impl Default for Nat {
    fn default() -> Self {
        let quota = hip::RelayQuota::default();
        Nat {
            relay: false,
            behind: None,
            keepalive_seconds: 15,
            recheck_seconds: 30,
            max_permissions: quota.permissions,
            max_rate: quota.rate,
            max_bytes: quota.bytes,
            relay_private: Vec::new(),
        }
    }
}

impl Nat {
    /// The rules of `[nat]`, then one about `[[peer]]` that NAT traversal makes: no peer is
    /// both our relay and our rendezvous server.
    pub(super) fn check(&self, peers: &[Peer]) -> Result<(), Broken> {
        in_range(
            KeyPath::of(&["nat", "keepalive_seconds"]),
            self.keepalive_seconds,
            0,
            120,
            " (NATs forget UDP mappings after 30 s or more; 0 turns keepalives off)",
        )?;
        in_range(
            KeyPath::of(&["nat", "recheck_seconds"]),
            self.recheck_seconds,
            0,
            3600,
            " (0: never look for a direct path again)",
        )?;
        in_range(
            KeyPath::of(&["nat", "max_permissions"]),
            self.max_permissions,
            1,
            4096,
            "",
        )?;
        in_range(
            KeyPath::of(&["nat", "max_rate"]),
            self.max_rate,
            1500,
            u64::MAX,
            " (bytes per second)",
        )?;
        in_range(
            KeyPath::of(&["nat", "max_bytes"]),
            self.max_bytes,
            1500,
            u64::MAX,
            "",
        )?;
        if let Some(n) = peers.iter().position(|p| p.relay && p.rendezvous) {
            return Err(broken(
                KeyPath::peer(n, "relay"),
                format!(
                    "peer[{n}] has both relay and rendezvous: one server cannot be both for \
                     one host (RFC 9028 §7.8); keep relay, it does what rendezvous does"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{parse, HIT};
    use std::time::Duration;

    #[test]
    fn nat_keys_are_read_and_checked() {
        let c = parse(&format!(
            "[nat]\nrelay = true\nkeepalive_seconds = 5\nmax_bytes = 3000000\n\n\
             [[peer]]\nhit = \"{HIT}\"\nlocators = [\"203.0.113.2\"]\nrelay = true\n"
        ))
        .unwrap();
        let h = c.to_hip_config();
        assert!(h.relay_server);
        assert_eq!(h.nat_keepalive, Duration::from_secs(5));
        assert_eq!(h.relay_quota.bytes, 3_000_000);
        assert!(c.peers[0].relay);
        let e = parse("[nat]\nkeepalive_seconds = 600\n").unwrap_err();
        assert_eq!(e.key(), Some("nat.keepalive_seconds"));
        assert!(e.to_string().contains("outside 0..=120"), "{e}");
        let e = parse("[nat]\nmax_permissions = 0\n").unwrap_err();
        assert_eq!(e.key(), Some("nat.max_permissions"));
        let both = format!(
            "[[peer]]\nhit = \"{HIT}\"\nlocators = [\"203.0.113.2\"]\nrelay = true\nrendezvous = true\n"
        );
        let e = parse(&both).unwrap_err();
        assert_eq!(e.key(), Some("peer[0].relay"));
        assert!(e.to_string().contains("both relay and rendezvous"), "{e}");
        let c = parse("[nat]\nrelay = true\nrelay_private = [\"10.1.0.0/16\", \"fd00::/8\"]\n");
        let h = c.unwrap().to_hip_config();
        let ranges: Vec<String> = h.relay_private.iter().map(ToString::to_string).collect();
        assert_eq!(ranges, ["10.1.0.0/16", "fd00::/8"]);
        assert!(parse("[nat]\n")
            .unwrap()
            .to_hip_config()
            .relay_private
            .is_empty());
        let e = parse("[nat]\nrelay_private = [\"10.1.0.0\"]\n").unwrap_err();
        assert_eq!(e.key(), Some("nat.relay_private[0]"));
        assert!(
            e.to_string()
                .contains("\"10.1.0.0\" is not an address range"),
            "{e}"
        );
        let e = parse("[nat]\nrelay = \"yes\"\n").unwrap_err();
        assert!(e.to_string().contains("relay"), "{e}");
    }
}
