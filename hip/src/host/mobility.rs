//! Mobility (RFC 8046): our own addresses change, or the peer shows up at a new one.
//!
//! When our addresses change, every established association gets an UPDATE with a
//! LOCATOR_SET of our new addresses, sent from the new preferred one. When a peer's UPDATE
//! or authenticated ESP arrives from an address other than its locator, that address is
//! checked before anything else is sent there: an UPDATE with SEQ and ECHO_REQUEST_SIGNED
//! goes to it, and only the signed echo of the nonce, coming back from it, moves the
//! association (RFC 8046 §5.4). Until then data keeps going to the old locator — unless the
//! peer's announcement left that one out, in which case data goes to the new address within
//! the credit the peer has earned by what it sent us (credit-based authorization, §3.3.2):
//! a peer announcing a victim's address gets a few UPDATEs sent there and at most as many
//! data bytes as it sent us itself.
//!
//! Multihoming (RFC 8047): when ESP keeps leaving but nothing has come back for
//! `failover_silence`, the current path is probed with a signed echo, then every other
//! pair of our addresses and the peer's (from its LOCATOR_SET and its configured ones); the
//! first pair that answers carries the association from then on.

use super::*;
use crate::assoc::Verify;
use crate::wire::TransportLocator;

/// Seconds a locator we announce is valid (RFC 8046 §4).
pub(super) const LOCATOR_LIFETIME: u32 = 3600;
/// Addresses of the peer's LOCATOR_SET remembered.
const PEER_LOCATORS: usize = 8;

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

    /// A failed association heard from its peer again (a fresh UPDATE, or ESP): it is
    /// established once more. The path it came by is checked as any new address is.
    pub(super) fn revive(&mut self, now: Instant, peer: Hit) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let Some(keys) = a.revive(&mut self.timers) else {
            return;
        };
        tracing::info!(peer = %peer, "association failed but the peer is back: established again");
        let event = Event::Established {
            handle: a.handle,
            peer,
            initiator: a.initiator,
            local: a.local,
            remote: a.remote,
            keys,
        };
        self.stats.revived += 1;
        self.push_event(event);
        self.schedule(now, peer);
    }

    /// The host's routes changed (a default route came after its address, or a route
    /// came back): UPDATEs under way and I1s are sent again now, not at their timeout —
    /// the copies sent before may have found no route. Tries are not counted again.
    pub fn routes_changed(&mut self, _now: Instant) {
        let mut again: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
        let mut i1s: Vec<Hit> = Vec::new();
        for a in self.assocs.values() {
            match (&a.pending_update, a.state) {
                (Some(p), AssocState::Established) => {
                    let (local, remote) = p.to.unwrap_or((a.local, a.remote));
                    again.push((local, remote, p.bytes.clone()));
                }
                (_, AssocState::I1Sent) => i1s.push(a.peer_hit),
                _ => {}
            }
        }
        for (local, remote, bytes) in again {
            self.transmit(local, remote, &bytes);
        }
        for peer in i1s {
            if let Some(a) = self.assocs.remove(&peer) {
                self.send_i1(&a);
                self.assocs.insert(peer, a);
            }
        }
    }

    /// Our addresses as last told by `set_local_addresses`.
    pub fn local_addresses(&self) -> &[SocketAddr] {
        &self.local_addresses
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
        // The address in use while we still have it, else our first of its family.
        let same_family = Some(a.local)
            .filter(|l| self.local_addresses.contains(l))
            .or_else(|| {
                self.local_addresses
                    .iter()
                    .find(|l| l.is_ipv4() == a.remote.is_ipv4())
                    .copied()
            });
        // With no address left in the family of the peer's locator (an IPv4-only network
        // left for an IPv6-only one), announce to a locator of the peer's in a family we
        // still have — one it announced, or one we were given — at once; its signed answer
        // from there moves us to it.
        let Some((local, remote)) = same_family.map(|l| (l, a.remote)).or_else(|| {
            a.peer_locators.iter().chain(&a.candidates).find_map(|c| {
                self.local_addresses
                    .iter()
                    .find(|l| l.is_ipv4() == c.is_ipv4())
                    .map(|l| (*l, *c))
            })
        }) else {
            return;
        };
        let spi = a.esp.as_ref().map_or(0, |e| e.inbound[0].spi());
        let locators = self.candidate_locators(spi, local);
        let announced = self.announced_addresses();
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let seq = a.next_update_id;
        a.next_update_id = a.next_update_id.wrapping_add(1);
        if remote == a.remote {
            a.local = local;
        }
        tracing::debug!(peer = %peer, local = %local, remote = %remote, "announcing new locators");
        a.announced = announced;
        a.candidates_sent = true;
        let params = vec![Param::LocatorSet(locators), Param::Seq(seq)];
        self.send_update_to(now, peer, params, Some(seq), Some((local, remote)));
    }

    /// The addresses our announcements carry: our candidates.
    fn announced_addresses(&self) -> Vec<SocketAddr> {
        self.local_candidates().into_iter().map(|c| c.0).collect()
    }

    /// Announces our addresses to `peer` if they changed since it last heard them and no
    /// UPDATE is outstanding (an announcement skipped for a rekey is made up here).
    pub(super) fn announce_if_changed(&mut self, now: Instant, peer: Hit) {
        let due = self.assocs.get(&peer).is_some_and(|a| {
            a.state == AssocState::Established
                && a.pending_update.is_none()
                && !self.local_addresses.is_empty()
                && a.announced != self.announced_addresses()
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
        self.stats.peer_moves += 1;
        tracing::info!(peer = %peer, from = %old, to = %remote, "moved to another locator of the peer");
        self.follow_relay(now, peer);
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
        // What the ACK answers besides the SEQ: an echo request, a registration renewal.
        let mut echo: Vec<Param> = update::echo_response(update).into_iter().collect();
        echo.extend(self.reg_answer(now, peer, remote, update));
        let through_relay = self
            .assocs
            .get(&peer)
            .is_some_and(|a| self.relay_while_direct(a, remote));
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let recently_failed = a.failed_lately(remote, now);
        // A check of another new address under way, started by ESP from it, gives way to
        // the address this signed UPDATE came from: that ESP may have left the peer with a
        // source it had only for a moment (its private address, routed out of the new
        // network before the old address was gone), and the check would hold the move
        // up until it timed out.
        let stale_check = remote != a.remote
            && !recently_failed
            && !through_relay
            && a.verify.as_ref().is_some_and(|v| {
                v.remote != remote
                    && matches!(v.kind, Check::PeerAddress { .. })
                    && a.pending_update.as_ref().is_some_and(|p| p.seq == v.seq)
            });
        if stale_check {
            tracing::debug!(peer = %peer, remote = %remote, "a signed UPDATE replaces the check under way");
            a.verify = None;
            a.pending_update = None;
        }
        // Both ends moved at once (the double jump): our UPDATE under way went to the
        // address the peer has left and will not be answered there. The check of its new
        // address takes its place; our addresses are announced again once that is done.
        // (A rekey or a check under way keeps its UPDATE.)
        let superseded = remote != a.remote
            && !recently_failed
            && !through_relay
            && a.verify.is_none()
            && a.pending_update.as_ref().is_some_and(|p| {
                p.to.is_none_or(|(_, to)| to == a.remote)
                    && a.rekey.as_ref().is_none_or(|r| r.our_seq != p.seq)
            });
        if superseded {
            a.pending_update = None;
            a.announced.clear();
        }
        let moved =
            remote != a.remote && a.pending_update.is_none() && !recently_failed && !through_relay;
        // A LOCATOR_SET without the address we use makes that one DEPRECATED: the new one
        // may then be used on credit while it is checked.
        let old_deprecated =
            update.param(param_type::LOCATOR_SET).is_some() && !a.peer_locators.contains(&a.remote);
        // An announcement through a relay while we run direct: no sign of a move by
        // itself, but one that leaves out the address we send to is — the peer moved, and
        // our NAT drops what it sends from its new address. Check where the relay saw it
        // (RELAY_FROM), directly: our check opens our NAT toward it.
        let relayed_move =
            (through_relay && old_deprecated && a.pending_update.is_none() && a.verify.is_none())
                .then_some(self.answering_via)
                .flatten()
                .filter(|(server, origin)| {
                    *server == remote
                        && origin.is_ipv4() == a.local.is_ipv4()
                        && !a.failed_lately(*origin, now)
                })
                .map(|(_, origin)| (a.local, origin));
        if !moved {
            let mut params = vec![Param::Ack(vec![seq])];
            params.extend(echo);
            self.send_update_to(now, peer, params, None, Some((local, remote)));
            if let Some(path) = relayed_move {
                tracing::debug!(peer = %peer, remote = %path.1, "the peer left our path: checking where its relay saw it");
                self.start_check(
                    now,
                    peer,
                    path,
                    Check::PeerAddress { old_deprecated },
                    Vec::new(),
                );
            }
            return;
        }
        tracing::debug!(peer = %peer, remote = %remote, "checking the peer's new address");
        let mut extra = vec![Param::Ack(vec![seq])];
        extra.extend(echo);
        self.start_check(
            now,
            peer,
            (local, remote),
            Check::PeerAddress { old_deprecated },
            extra,
        );
    }

    /// Sends an UPDATE with SEQ and ECHO_REQUEST_SIGNED (and `extra`) on `path` and
    /// records it as the association's check under way.
    fn start_check(
        &mut self,
        now: Instant,
        peer: Hit,
        (local, remote): (SocketAddr, SocketAddr),
        kind: Check,
        extra: Vec<Param>,
    ) {
        let mut nonce = vec![0u8; 16];
        self.rng.fill_bytes(&mut nonce);
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let seq = a.next_update_id;
        a.next_update_id = a.next_update_id.wrapping_add(1);
        if matches!(kind, Check::PeerAddress { .. }) {
            self.stats.address_checks += 1;
        }
        a.verify = Some(Box::new(Verify {
            local,
            remote,
            nonce: nonce.clone(),
            seq,
            started: now,
            kind,
        }));
        let mut params = vec![Param::Seq(seq), Param::EchoRequestSigned(nonce)];
        params.extend(extra);
        self.send_update_to(now, peer, params, Some(seq), Some((local, remote)));
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
        if self
            .assocs
            .get(&peer)
            .is_some_and(|a| self.relay_while_direct(a, remote))
        {
            return;
        }
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        if a.state != AssocState::Established || a.verify.is_some() || a.pending_update.is_some() {
            return;
        }
        if a.failed_lately(remote, now) {
            return;
        }
        tracing::debug!(peer = %peer, remote = %remote, "ESP from a new address, checking it");
        let kind = Check::PeerAddress {
            old_deprecated: false,
        };
        self.start_check(now, peer, (local, remote), kind, Vec::new());
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
        a.failover.clear();
        a.unanswered_since = None;
        if (local, remote) == (a.local, a.remote) {
            tracing::debug!(peer = %peer, remote = %remote, "path confirmed");
            return;
        }
        let old = a.remote;
        a.local = local;
        a.remote = remote;
        a.last_move = Some((now, now.saturating_duration_since(started)));
        self.stats.peer_moves += 1;
        tracing::info!(peer = %peer, from = %old, to = %remote, local = %local, "path changed");
        self.follow_relay(now, peer);
        self.push_event(Event::LocatorChanged { peer, remote });
    }

    /// Remembers the addresses of a LOCATOR_SET the peer sent, preferred first.
    pub(super) fn peer_announced(&mut self, peer: Hit, update: &HipRepr) {
        let Some(Param::LocatorSet(locators)) = update.param(param_type::LOCATOR_SET) else {
            return;
        };
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let mut found: Vec<(bool, SocketAddr)> = locators
            .iter()
            .filter_map(|l| Some((l.preferred(), transport_addr(&l.transport()?)?)))
            .collect();
        found.sort_by_key(|(preferred, _)| !preferred);
        a.peer_locators.clear();
        for (_, addr) in found {
            if !a.peer_locators.contains(&addr) && a.peer_locators.len() < PEER_LOCATORS {
                a.peer_locators.push(addr);
            }
        }
    }

    /// The current path fell silent: probe it, then the others (module doc).
    pub(super) fn start_failover(&mut self, now: Instant, peer: Hit) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let paths = a.failover_paths(now, &self.local_addresses);
        let silent = a.unanswered_since.map(|t| now.saturating_duration_since(t));
        tracing::info!(peer = %peer, paths = paths.len(), silent_ms = ?silent.map(|d| d.as_millis()),
            rx_packets = a.traffic.rx_packets, "nothing heard from the peer since we sent, probing paths");
        a.failover = paths;
        self.refresh_relays(now, peer);
        self.probe_next(now, peer);
    }

    /// Probes the next path of the failover under way; false when none is left.
    pub(super) fn probe_next(&mut self, now: Instant, peer: Hit) -> bool {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return false;
        };
        if a.failover.is_empty() {
            return false;
        }
        let (local, remote) = a.failover.remove(0);
        tracing::debug!(peer = %peer, local = %local, remote = %remote, "probing a path");
        self.start_check(now, peer, (local, remote), Check::Probe, Vec::new());
        true
    }
}

/// The UDP address of a transport locator (IPv4 as IPv4-mapped IPv6 on the wire).
pub(super) fn transport_addr(t: &TransportLocator) -> Option<SocketAddr> {
    if t.protocol != 17 {
        return None;
    }
    Some(SocketAddr::new(crate::wire::unmapped(t.address), t.port))
}
