//! Path MTU per peer, and the failures of sends. Outer datagrams are never fragmented here
//! ([`crate::udp::forbid_fragments`]), so each association's path must be known: it is read
//! from the kernel ([`crate::udp::path_mtu`]) when the association comes up or moves, and
//! again when a send to its locator fails with EMSGSIZE (the kernel heard an ICMP "too big",
//! or the route changed). The daemon fits inner packets to it: TCP is cut into segments
//! that fit, and a local sender of anything else too large gets an ICMP "too big".
//!
//! Failed sends are counted per locator and logged at most once a second, with what was
//! suppressed meanwhile.

use hip::Hit;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A path is read again after a failure no sooner than this.
const REREAD_AFTER: Duration = Duration::from_millis(100);
/// ICMP hints to the local stack, per peer, at most this often.
const HINT_EVERY: Duration = Duration::from_secs(1);
/// Failed sends are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(1);
/// Locators whose failures are counted; past that the table starts again.
const MAX_FAILING: usize = 4096;

#[derive(Debug, Default)]
pub struct Paths {
    peers: HashMap<Hit, PeerPath>,
    failures: HashMap<SocketAddr, u64>,
    logged_at: Option<Instant>,
    unlogged: u64,
}

#[derive(Debug, Clone, Copy)]
struct PeerPath {
    local: Option<IpAddr>,
    remote: SocketAddr,
    mtu: usize,
    read_at: Instant,
    hinted_at: Option<Instant>,
}

impl Paths {
    /// Reads the path MTU from `local` to `remote`, the locator of `peer`. Returns the
    /// new MTU when it changed.
    pub fn learn(
        &mut self,
        now: Instant,
        peer: Hit,
        local: Option<IpAddr>,
        remote: SocketAddr,
    ) -> Option<usize> {
        let local = local.filter(|ip| !ip.is_unspecified());
        let mtu = match crate::udp::path_mtu(local, remote) {
            Ok(mtu) => mtu,
            Err(e) => {
                tracing::debug!(peer = %peer, remote = %remote, error = %e, "reading the path MTU");
                return None;
            }
        };
        let old = self.peers.insert(
            peer,
            PeerPath {
                local,
                remote,
                mtu,
                read_at: now,
                hinted_at: None,
            },
        );
        let changed = old.is_none_or(|o| o.mtu != mtu || o.remote != remote);
        if changed {
            tracing::info!(peer = %peer, remote = %remote, mtu, "path MTU");
        }
        changed.then_some(mtu)
    }

    /// The largest transport payload one datagram to `peer` carries, once its path is
    /// known.
    pub fn max_payload(&self, peer: &Hit) -> Option<usize> {
        let p = self.peers.get(peer)?;
        Some(hip::esp::max_payload(p.mtu, p.remote.is_ipv4()))
    }

    /// The path MTU of `peer`, once known.
    pub fn mtu(&self, peer: &Hit) -> Option<usize> {
        self.peers.get(peer).map(|p| p.mtu)
    }

    /// `count` datagrams to `remote` were refused with `e`: counted, logged now and then.
    /// When the datagrams were too big for the path, the paths of the peers at `remote`
    /// are read again; returns the peers whose path changed.
    pub fn send_failed(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        e: &io::Error,
        count: u64,
    ) -> Vec<Hit> {
        if self.failures.len() >= MAX_FAILING && !self.failures.contains_key(&remote) {
            self.failures.clear();
        }
        *self.failures.entry(remote).or_default() += count;
        if self.logged_at.is_none_or(|t| now >= t + LOG_EVERY) {
            tracing::warn!(remote = %remote, error = %e, datagrams = count,
                earlier_unlogged = self.unlogged, "UDP send failed");
            self.logged_at = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += count;
        }
        if e.raw_os_error() != Some(libc::EMSGSIZE) {
            return Vec::new();
        }
        let stale: Vec<(Hit, Option<IpAddr>)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.remote == remote && now >= p.read_at + REREAD_AFTER)
            .map(|(h, p)| (*h, p.local))
            .collect();
        stale
            .into_iter()
            .filter(|(peer, local)| self.learn(now, *peer, *local, remote).is_some())
            .map(|(peer, _)| peer)
            .collect()
    }

    /// Datagrams to `remote` the kernel refused.
    pub fn failures_to(&self, remote: &SocketAddr) -> u64 {
        self.failures.get(remote).copied().unwrap_or(0)
    }

    /// Whether the local stack may be told again now that packets to `peer` are too big.
    pub fn hint_due(&mut self, now: Instant, peer: &Hit) -> bool {
        let Some(p) = self.peers.get_mut(peer) else {
            return false;
        };
        let due = p.hinted_at.is_none_or(|t| now >= t + HINT_EVERY);
        if due {
            p.hinted_at = Some(now);
        }
        due
    }

    pub fn forget(&mut self, peer: &Hit) {
        self.peers.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Hit {
        hip::HostIdentity::from_secret([7; 32]).hit()
    }

    #[test]
    fn the_path_is_read_from_the_kernel_and_sizes_the_payload() {
        let mut paths = Paths::default();
        let now = Instant::now();
        let remote: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let loopback = crate::udp::path_mtu(None, remote).unwrap();
        assert!(loopback >= 1500, "loopback MTU {loopback}");
        assert_eq!(paths.learn(now, peer(), None, remote), Some(loopback));
        // Read again unchanged: nothing new.
        assert_eq!(paths.learn(now, peer(), None, remote), None);
        assert_eq!(paths.mtu(&peer()), Some(loopback));
        assert_eq!(
            paths.max_payload(&peer()),
            Some(hip::esp::max_payload(loopback, true))
        );
        paths.forget(&peer());
        assert_eq!(paths.max_payload(&peer()), None);
    }

    #[test]
    fn failures_are_counted_per_locator() {
        let mut paths = Paths::default();
        let now = Instant::now();
        let (a, b): (SocketAddr, SocketAddr) = (
            "198.51.100.1:10500".parse().unwrap(),
            "[2001:db8::1]:10500".parse().unwrap(),
        );
        let e = io::Error::from_raw_os_error(libc::ENETUNREACH);
        paths.send_failed(now, a, &e, 3);
        paths.send_failed(now, a, &e, 2);
        paths.send_failed(now, b, &e, 1);
        assert_eq!(paths.failures_to(&a), 5);
        assert_eq!(paths.failures_to(&b), 1);
        assert_eq!(
            paths.unlogged, 3,
            "logged once in the second, the rest counted"
        );
    }

    #[test]
    fn the_local_stack_is_told_at_most_once_a_second_per_peer() {
        let mut paths = Paths::default();
        let now = Instant::now();
        assert!(
            !paths.hint_due(now, &peer()),
            "no path known, nothing to tell"
        );
        paths.learn(now, peer(), None, "127.0.0.1:9".parse().unwrap());
        assert!(paths.hint_due(now, &peer()));
        assert!(!paths.hint_due(now + Duration::from_millis(500), &peer()));
        assert!(paths.hint_due(now + Duration::from_secs(1), &peer()));
    }
}
