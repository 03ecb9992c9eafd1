//! Mobility (RFC 8046): our own addresses change, or the peer shows up at a new one.
//!
//! When our addresses change, every established association gets an UPDATE with a
//! LOCATOR_SET of our new addresses, sent from the new preferred one. When a peer's UPDATE
//! or authenticated ESP arrives from an address other than its locator, that address is
//! checked before anything else is sent there: an UPDATE with SEQ and ECHO_REQUEST_SIGNED
//! goes to it, and only the signed echo of the nonce, coming back from it, moves the
//! association (RFC 8046 §5.4). Until then data keeps going to the old locator; there is no
//! credit for unverified addresses, so a peer announcing a victim's address gets at most
//! `update_tries` UPDATEs sent there.

use super::*;
use crate::assoc::Verify;
use crate::wire::{Locator, TransportLocator};

/// Seconds a locator we announce is valid (RFC 8046 §4).
const LOCATOR_LIFETIME: u32 = 3600;
/// An address whose check went unanswered is not checked again before this.
pub(super) const RECHECK_AFTER: Duration = Duration::from_secs(60);
/// A check is given up after this long, whatever happened to its UPDATE.
pub(super) const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// Unanswered checks remembered per association.
pub(super) const FAILED_CHECKS: usize = 4;

impl Host {
    /// Our usable addresses changed (from the OS: netlink on Linux). Associations are told
    /// with UPDATEs sent from the first address of the family of their peer's locator.
    pub fn set_local_addresses(&mut self, now: Instant, addrs: &[SocketAddr]) {
        if addrs == self.local_addresses.as_slice() {
            return;
        }
        self.local_addresses = addrs.to_vec();
        let peers: Vec<Hit> = self
            .assocs
            .values()
            .filter(|a| a.state == AssocState::Established && a.esp.is_some())
            .map(|a| a.peer_hit)
            .collect();
        for peer in peers {
            self.announce_locators(now, peer);
        }
    }

    fn announce_locators(&mut self, now: Instant, peer: Hit) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        // One outstanding UPDATE at a time (RFC 7401 §6.11): an UPDATE under way finishes
        // first; when its ACK arrives, `announce_if_changed` catches up.
        if a.pending_update.is_some() {
            return;
        }
        let same_family = self
            .local_addresses
            .iter()
            .find(|l| l.is_ipv4() == a.remote.is_ipv4());
        // With no address left in the family of the peer's locator (an IPv4-only network
        // left for an IPv6-only one), announce to a locator of the peer's we were given in
        // a family we still have; its signed answer from there moves us to it.
        let Some((local, remote)) = same_family.map(|l| (*l, a.remote)).or_else(|| {
            a.candidates.iter().find_map(|c| {
                self.local_addresses
                    .iter()
                    .find(|l| l.is_ipv4() == c.is_ipv4())
                    .map(|l| (*l, *c))
            })
        }) else {
            return;
        };
        let spi = a.esp.as_ref().map_or(0, |e| e.inbound[0].spi());
        let locators: Vec<Locator> = self
            .local_addresses
            .iter()
            .enumerate()
            .map(|(n, addr)| {
                let t = TransportLocator {
                    port: addr.port(),
                    protocol: 17,
                    kind: 0,
                    priority: u32::MAX - n as u32,
                    spi,
                    address: mapped(addr.ip()),
                };
                Locator::from_transport(&t, *addr == local, LOCATOR_LIFETIME)
            })
            .collect();
        let seq = a.next_update_id;
        a.next_update_id = a.next_update_id.wrapping_add(1);
        if remote == a.remote {
            a.local = local;
        }
        tracing::debug!(peer = %peer, local = %local, remote = %remote, "announcing new locators");
        a.announced = self.local_addresses.clone();
        let params = vec![Param::LocatorSet(locators), Param::Seq(seq)];
        self.send_update_to(now, peer, params, Some(seq), Some((local, remote)));
    }

    /// Announces our addresses to `peer` if they changed since it last heard them and no
    /// UPDATE is outstanding (an announcement skipped for a rekey is made up here).
    pub(super) fn announce_if_changed(&mut self, now: Instant, peer: Hit) {
        let due = self.assocs.get(&peer).is_some_and(|a| {
            a.state == AssocState::Established
                && a.pending_update.is_none()
                && !self.local_addresses.is_empty()
                && a.announced != self.local_addresses
        });
        if due {
            self.announce_locators(now, peer);
        }
    }

    /// Our UPDATE to `to` was acknowledged from `from`: a signed answer from the address we
    /// sent to shows the peer is there, so an UPDATE sent to another of its addresses moves
    /// the association to it.
    pub(super) fn acknowledged_at(
        &mut self,
        now: Instant,
        peer: Hit,
        to: Option<(SocketAddr, SocketAddr)>,
        from: SocketAddr,
    ) {
        let Some((local, remote)) = to else { return };
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        if remote != from || remote == a.remote || a.verify.is_some() {
            return;
        }
        let old = a.remote;
        a.local = local;
        a.remote = remote;
        a.last_move = Some((now, Duration::ZERO));
        tracing::info!(peer = %peer, from = %old, to = %remote, "moved to another locator of the peer");
        self.push_event(Event::LocatorChanged { peer, remote });
    }

    /// Answers a fresh UPDATE that is not a rekey: the ACK (with the echo it asks for)
    /// goes back where it came from; if that is a new address of the peer, the answer also
    /// starts the check of that address.
    pub(super) fn answer_update(
        &mut self,
        now: Instant,
        peer: Hit,
        seq: u32,
        local: SocketAddr,
        remote: SocketAddr,
        update: &HipRepr,
    ) {
        let echo = update::echo_response(update);
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let recently_failed = a
            .failed_checks
            .iter()
            .any(|(addr, at)| *addr == remote && now < *at + RECHECK_AFTER);
        let moved = remote != a.remote && a.pending_update.is_none() && !recently_failed;
        if !moved {
            let mut params = vec![Param::Ack(vec![seq])];
            params.extend(echo);
            self.send_update_to(now, peer, params, None, Some((local, remote)));
            return;
        }
        let mut nonce = vec![0u8; 16];
        self.rng.fill_bytes(&mut nonce);
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let our_seq = a.next_update_id;
        a.next_update_id = a.next_update_id.wrapping_add(1);
        a.verify = Some(Verify {
            local,
            remote,
            nonce: nonce.clone(),
            seq: our_seq,
            started: now,
        });
        tracing::debug!(peer = %peer, remote = %remote, "checking the peer's new address");
        let mut params = vec![Param::Seq(our_seq), Param::Ack(vec![seq])];
        params.push(Param::EchoRequestSigned(nonce));
        params.extend(echo);
        self.send_update_to(now, peer, params, Some(our_seq), Some((local, remote)));
    }

    /// Authenticated ESP from an address other than the peer's locator: check it, unless
    /// a check or another UPDATE is under way.
    pub(super) fn esp_from_new_address(
        &mut self,
        now: Instant,
        peer: Hit,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        if a.state != AssocState::Established || a.verify.is_some() || a.pending_update.is_some() {
            return;
        }
        if a.failed_checks
            .iter()
            .any(|(addr, at)| *addr == remote && now < *at + RECHECK_AFTER)
        {
            return;
        }
        let mut nonce = vec![0u8; 16];
        self.rng.fill_bytes(&mut nonce);
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let seq = a.next_update_id;
        a.next_update_id = a.next_update_id.wrapping_add(1);
        a.verify = Some(Verify {
            local,
            remote,
            nonce: nonce.clone(),
            seq,
            started: now,
        });
        tracing::debug!(peer = %peer, remote = %remote, "ESP from a new address, checking it");
        let params = vec![Param::Seq(seq), Param::EchoRequestSigned(nonce)];
        self.send_update_to(now, peer, params, Some(seq), Some((local, remote)));
    }

    /// The echo of a check came back: from now on the peer is at the checked address.
    pub(super) fn address_verified(
        &mut self,
        now: Instant,
        peer: Hit,
        from: SocketAddr,
        nonce: &[u8],
    ) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let Some(v) = a.verify.as_ref() else { return };
        if v.nonce != nonce || v.remote != from {
            return;
        }
        let (local, remote, started) = (v.local, v.remote, v.started);
        a.verify = None;
        if a.pending_update
            .as_ref()
            .is_some_and(|p| p.to == Some((local, remote)))
        {
            a.pending_update = None;
        }
        let old = a.remote;
        a.local = local;
        a.remote = remote;
        a.last_move = Some((now, now.saturating_duration_since(started)));
        tracing::info!(peer = %peer, from = %old, to = %remote, "peer moved");
        self.push_event(Event::LocatorChanged { peer, remote });
    }
}

fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}
