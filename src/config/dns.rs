//! `[dns]`: the node's DNS stub (src/dns.rs). Present, the node answers DNS on `listen`:
//! names under the overlay's domain from the overlay, the rest through `upstream`.

use std::net::SocketAddr;

use serde::Deserialize;

use super::report::{broken, Broken, KeyPath};
use super::values::de_socket_addrs;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Where the stub answers (UDP), e.g. `127.0.0.1:53`.
    #[serde(deserialize_with = "de_socket_addrs")]
    pub listen: Vec<SocketAddr>,
    /// Where other names are asked; empty: the nameservers of /etc/resolv.conf when the
    /// node starts (the stub itself left out).
    #[serde(default, deserialize_with = "de_socket_addrs")]
    pub upstream: Vec<SocketAddr>,
}

impl Dns {
    /// `listen` is not empty, and the overlay gives the domain.
    pub(super) fn check(&self, has_overlay: bool) -> Result<(), Broken> {
        if self.listen.is_empty() {
            return Err(broken(
                KeyPath::of(&["dns", "listen"]),
                "dns.listen is empty: give where the stub answers, like [\"127.0.0.1:53\"]"
                    .to_string(),
            ));
        }
        if !has_overlay {
            return Err(broken(
                KeyPath::of(&["dns", "listen"]),
                "dns.listen needs [overlay]: the stub answers the names of the overlay".to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::refused;

    #[test]
    fn every_dns_rule_names_its_key() {
        let overlay = "[overlay]\nname = \"lab.example\"\n";
        let ok =
            format!("{overlay}[dns]\nlisten = [\"127.0.0.1:53\"]\nupstream = [\"10.0.0.1:53\"]\n");
        let c = crate::config::Config::parse(&ok, "hipbone.toml").unwrap();
        assert_eq!(
            c.dns.unwrap().upstream,
            vec!["10.0.0.1:53".parse().unwrap()]
        );
        let msg = refused(&format!("{overlay}[dns]\nlisten = []\n"), "dns.listen");
        assert!(msg.contains("is empty"), "{msg}");
        let msg = refused("[dns]\nlisten = [\"127.0.0.1:53\"]\n", "dns.listen");
        assert!(msg.contains("needs [overlay]"), "{msg}");
        let msg = refused(
            &format!("{overlay}[dns]\nlisten = [\"127.0.0.1\"]\n"),
            "dns.listen[0]",
        );
        assert!(msg.contains("not an address with a port"), "{msg}");
    }
}
