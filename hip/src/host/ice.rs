//! Native NAT traversal (RFC 9028 §4.2–§4.10, ICE-HIP-UDP): candidates, connectivity
//! checks, nomination and keepalives.
//!
//! Our candidates are our host addresses, the server-reflexive address each relay server
//! reported (REG_FROM), and the relay servers that relay data for us. They go to the peer
//! in the LOCATOR_SET of an UPDATE (type-2 locators carry kind and priority) once the
//! association is up — its base exchange may have run through a relay, so the data flows
//! from the first packet, through the relay if need be, while the checks look for a direct
//! path.
//!
//! A check is an UPDATE with SEQ, ECHO_REQUEST_SIGNED and CANDIDATE_PRIORITY sent on one
//! pair (one of our host addresses, one of the peer's candidates); the answer is an UPDATE
//! with the ACK, the signed echo and MAPPED_ADDRESS (the source the peer saw), sent back to
//! that source. Checks do not take part in the one-outstanding-UPDATE rule. A check
//! succeeds only when its answer comes from the address it was sent to. Both ends check, so
//! that each NAT sees the packets that open it; a check from a source we have no pair for
//! gives a peer-reflexive pair, checked at once (a triggered check).
//!
//! The initiator of the base exchange controls: once no pair of higher priority is still
//! being checked, it nominates the best pair that succeeded with one more check that
//! carries NOMINATE; the peer moves the association to the pair when it answers, the
//! initiator when the answer comes. While the association is relayed, the checks run
//! again every `Config::recheck_interval`, so that a path that opens later is taken.
//!
//! Hosts that know they are behind a NAT (a relay server sees them at an address that is
//! not theirs) send a NOTIFY with NAT_KEEPALIVE on every association that has sent nothing
//! for `Config::nat_keepalive`.

use super::*;
use crate::assoc::ice::{Ice, Pair, PairState};
use crate::wire::{nat_mode, Locator, TransportAddress, TransportLocator};

/// Candidate kinds of type-2 locators (RFC 9028 §5.7).
pub(crate) const KIND_HOST: u8 = 0;
pub(crate) const KIND_SERVER_REFLEXIVE: u8 = 1;
pub(crate) const KIND_PEER_REFLEXIVE: u8 = 2;
pub(crate) const KIND_RELAYED: u8 = 3;

/// Pairs checked per association at most (RFC 9028 §4.6.2 allows 100; a host has few
/// addresses).
const MAX_PAIRS: usize = 16;
/// Check retransmission timeout (RFC 9028 §4.6.2: at least 1 s for one check per RTT).
const CHECK_RTO: Duration = Duration::from_secs(1);
/// Transmissions of one check before its pair fails.
const CHECK_TRIES: u32 = 5;
/// After the first pair succeeds, better pairs still being checked get this long before
/// the best pair that succeeded is nominated.
const NOMINATION_WAIT: Duration = Duration::from_millis(500);

/// RFC 8445 §5.1.2.1 priority: type preference, local preference, component 1.
pub(crate) fn candidate_priority(kind: u8, local_pref: u16) -> u32 {
    let type_pref: u32 = match kind {
        KIND_HOST => 126,
        KIND_PEER_REFLEXIVE => 110,
        KIND_SERVER_REFLEXIVE => 100,
        _ => 0,
    };
    (type_pref << 24) | (u32::from(local_pref) << 8) | 255
}

/// RFC 8445 §6.1.2.3 pair priority: G is the controlling side's candidate priority.
pub(crate) fn pair_priority(controlling: u32, controlled: u32) -> u64 {
    let (g, d) = (u64::from(controlling), u64::from(controlled));
    (g.min(d) << 32) + 2 * g.max(d) + u64::from(g > d)
}

/// How the association's data currently travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Straight to the peer's address.
    Direct,
    /// Through the relay server at this address.
    Relayed { via: SocketAddr },
}

/// What we know of the NAT in front of us, from relay servers and the peers' checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatBehaviour {
    /// No relay server has told us where it sees us.
    Unknown,
    /// A relay server sees us at one of our own addresses.
    None,
    /// We are translated: `reflexive` is where the first relay server sees us. `mapping`
    /// is None until a peer's check reports where it sees us; then true when every
    /// destination saw the same address (endpoint-independent mapping), false when they
    /// differed (address-dependent: a "symmetric" NAT).
    Translated {
        reflexive: SocketAddr,
        port_preserved: bool,
        endpoint_independent: Option<bool>,
    },
}

/// Ta when a side offers none (RFC 9028 §4.4), and the floor no side may go below.
const DEFAULT_TA: Duration = Duration::from_millis(50);
const MIN_TA: Duration = Duration::from_millis(5);
/// A peer's offer above this is taken as this: its checks would crawl.
const MAX_TA: Duration = Duration::from_secs(10);

impl Host {
    /// NAT_TRAVERSAL_MODE (our modes, at most six) and TRANSACTION_PACING for our R1s.
    pub(super) fn nat_offer(&self) -> Vec<Param> {
        if self.config.nat_modes.is_empty() {
            return Vec::new();
        }
        vec![
            Param::NatTraversalMode {
                reserved: 0,
                modes: self.config.nat_modes.iter().take(6).copied().collect(),
            },
            Param::TransactionPacing(millis(self.our_ta())),
        ]
    }

    fn our_ta(&self) -> Duration {
        self.config.check_pacing.max(MIN_TA)
    }

    /// As initiator: the mode for our I2 (the first of ours the R1 offers; none if it
    /// offers none of them or nothing at all, RFC 9028 §4.7.1's implicit UDP), and the Ta
    /// we both use: the larger offer (§4.4; we never offer less than the responder).
    pub(super) fn nat_select(&self, r1: &HipRepr) -> (Option<u16>, Duration) {
        let offered: &[u16] = match r1.param(param_type::NAT_TRAVERSAL_MODE) {
            Some(Param::NatTraversalMode { modes, .. }) => modes,
            _ => &[],
        };
        let offered = &offered[..offered.len().min(6)];
        let mode = self
            .config
            .nat_modes
            .iter()
            .copied()
            .find(|m| offered.contains(m));
        (mode, self.our_ta().max(offered_ta(r1)))
    }

    /// As responder: the mode the I2 selected, if it may be used, and the Ta both use.
    pub(super) fn nat_accept(
        &self,
        remote: SocketAddr,
        i2: &HipRepr,
    ) -> Result<(Option<u16>, Duration), Error> {
        let ta = self.our_ta().max(offered_ta(i2));
        let Some(Param::NatTraversalMode { modes, .. }) = i2.param(param_type::NAT_TRAVERSAL_MODE)
        else {
            return Ok((None, ta));
        };
        let through_relay = self
            .answering_via
            .is_some_and(|(server, _)| server == remote);
        match modes.as_slice() {
            [mode] if self.config.nat_modes.contains(mode) => {
                if *mode == nat_mode::UDP_ENCAPSULATION && through_relay {
                    return Err(Error::NatMode);
                }
                Ok((Some(*mode), ta))
            }
            _ => Err(Error::NatMode),
        }
    }

    /// Our candidates, best first: host addresses, then server-reflexive and relayed ones.
    pub(super) fn local_candidates(&self) -> Vec<(SocketAddr, u8, u32)> {
        let mut out: Vec<(SocketAddr, u8, u32)> = Vec::new();
        let count = self.local_addresses.len();
        for (n, addr) in self.local_addresses.iter().enumerate() {
            let pref = u16::try_from(count - n)
                .unwrap_or(u16::MAX)
                .saturating_mul(256);
            out.push((*addr, KIND_HOST, candidate_priority(KIND_HOST, pref)));
        }
        let mut grants: Vec<(&Hit, &relay::RelayGrant)> = self.relay_grants.iter().collect();
        grants.sort_by_key(|(h, _)| **h);
        for (server, g) in grants {
            if let Some(r) = g.reflexive.filter(|r| !out.iter().any(|c| c.0 == *r)) {
                out.push((
                    r,
                    KIND_SERVER_REFLEXIVE,
                    candidate_priority(KIND_SERVER_REFLEXIVE, 65535),
                ));
            }
            if g.data {
                if let Some(s) = self.assocs.get(server) {
                    if !out.iter().any(|c| c.0 == s.remote) {
                        out.push((
                            s.remote,
                            KIND_RELAYED,
                            candidate_priority(KIND_RELAYED, 65535),
                        ));
                    }
                }
            }
        }
        out
    }

    /// The LOCATOR_SET announcing our candidates; `preferred` marks the one in use.
    pub(super) fn candidate_locators(&self, spi: u32, preferred: SocketAddr) -> Vec<Locator> {
        self.local_candidates()
            .into_iter()
            .map(|(addr, kind, priority)| {
                let t = TransportLocator {
                    port: addr.port(),
                    protocol: 17,
                    kind,
                    priority,
                    spi,
                    address: crate::wire::mapped(addr.ip()),
                };
                Locator::from_transport(&t, addr == preferred, mobility::LOCATOR_LIFETIME)
            })
            .collect()
    }

    /// Whether we take part in NAT traversal at all: a relay server serves us.
    pub fn behind_relay(&self) -> bool {
        !self.relay_grants.is_empty()
    }

    /// Our candidates changed (a relay server reported where it sees us): tell the peers.
    pub(super) fn candidates_changed(&mut self, now: Instant) {
        let peers: Vec<Hit> = self
            .assocs
            .values()
            .filter(|a| a.state == AssocState::Established && a.esp.is_some())
            .filter(|a| !self.relay_grants.contains_key(&a.peer_hit))
            .map(|a| a.peer_hit)
            .collect();
        for peer in peers {
            self.announce_if_changed(now, peer);
        }
    }

    /// Whether the association with `a`'s peer runs checks: it is relayed, we are behind
    /// a relay, or the peer announced candidates other than host ones.
    pub(super) fn ice_wanted(&self, a: &Assoc) -> bool {
        a.state == AssocState::Established
            && a.esp.is_some()
            && a.nat_mode == Some(nat_mode::ICE_HIP_UDP)
            && !self.relay_grants.contains_key(&a.peer_hit)
            && !self.relay_clients.contains_key(&a.peer_hit)
            && (a.relay_to.is_some()
                || self.behind_relay()
                || a.peer_candidates.iter().any(|c| c.1 != KIND_HOST))
    }

    /// How the association's data travels.
    pub(super) fn path_kind(&self, a: &Assoc) -> PathKind {
        // Through our relay server, or to the relay the peer named as its relayed candidate.
        let relayed = a.relay_to.is_some()
            || a.peer_candidates
                .iter()
                .any(|c| c.0 == a.remote && c.1 == KIND_RELAYED)
            || self
                .relay_server_at(a.remote)
                .is_some_and(|s| s != a.peer_hit);
        if relayed {
            PathKind::Relayed { via: a.remote }
        } else {
            PathKind::Direct
        }
    }

    /// Whether `addr` is a relay (ours, or the one the peer named) while the association
    /// runs on a direct path: what comes through it then is no sign that the peer moved —
    /// only a failover, which probes the relay itself, takes the association there.
    pub(super) fn relay_while_direct(&self, a: &Assoc, addr: SocketAddr) -> bool {
        let relay = self.relay_server_at(addr).is_some()
            || a.peer_candidates
                .iter()
                .any(|c| c.0 == addr && c.1 == KIND_RELAYED);
        relay && self.path_kind(a) == PathKind::Direct
    }

    /// The relay server of ours at `addr`, if any.
    pub(super) fn relay_server_at(&self, addr: SocketAddr) -> Option<Hit> {
        self.assocs
            .values()
            .find(|s| s.remote == addr && self.relay_grants.contains_key(&s.peer_hit))
            .map(|s| s.peer_hit)
    }

    /// What we know of our NAT.
    pub fn nat_behaviour(&self) -> NatBehaviour {
        let mut grants: Vec<(&Hit, &relay::RelayGrant)> = self.relay_grants.iter().collect();
        grants.sort_by_key(|(h, _)| **h);
        let Some((server, reflexive)) = grants.iter().find_map(|(h, g)| Some((**h, g.reflexive?)))
        else {
            return NatBehaviour::Unknown;
        };
        if self.local_addresses.contains(&reflexive) {
            return NatBehaviour::None;
        }
        let base = self.assocs.get(&server).map(|a| a.local);
        let seen: Vec<SocketAddr> = self
            .assocs
            .values()
            .filter_map(|a| a.ice.as_ref())
            .flat_map(|i| i.mapped.iter())
            .filter(|(local, _)| Some(*local) == base || base.is_none())
            .map(|(_, m)| *m)
            .collect();
        let endpoint_independent = (!seen.is_empty()).then(|| seen.iter().all(|m| *m == reflexive));
        NatBehaviour::Translated {
            reflexive,
            port_preserved: base.is_some_and(|b| b.port() == reflexive.port()),
            endpoint_independent,
        }
    }

    /// Remembers the kinds and priorities of the peer's LOCATOR_SET.
    pub(super) fn peer_candidates_from(&mut self, peer: Hit, update: &HipRepr) {
        let Some(Param::LocatorSet(locators)) = update.param(param_type::LOCATOR_SET) else {
            return;
        };
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let was_checking = a.peer_candidates.iter().any(|c| c.1 != KIND_HOST);
        a.peer_candidates = locators
            .iter()
            .filter_map(|l| {
                let t = l.transport()?;
                let addr = mobility::transport_addr(&t)?;
                Some((addr, t.kind, t.priority))
            })
            .take(MAX_PAIRS)
            .collect();
        // The peer checks: it needs our candidates, even unchanged since the exchange.
        if !a.candidates_sent && !was_checking && a.peer_candidates.iter().any(|c| c.1 != KIND_HOST)
        {
            a.announced.clear();
        }
    }

    /// Starts the checks of the association with `peer` if it wants them and has the
    /// peer's candidates, adds pairs for candidates learnt since, or (when a recheck is
    /// due) checks every pair again. Pairs found by triggered checks are kept.
    pub(super) fn ice_start(&mut self, now: Instant, peer: Hit) {
        let Some(a) = self.assocs.get(&peer) else {
            return;
        };
        if !self.ice_wanted(a) || (a.peer_candidates.is_empty() && a.relayed_origin.is_none()) {
            // Nothing to check with: a recheck that fell due waits for new candidates.
            if let Some(ice) = self.assocs.get_mut(&peer).and_then(|a| a.ice.as_mut()) {
                ice.recheck = None;
            }
            return;
        }
        let recheck = a
            .ice
            .as_ref()
            .and_then(|i| i.recheck)
            .is_some_and(|t| t <= now);
        if a.ice.as_ref().is_some_and(|i| i.selected.is_some()) && !recheck {
            return;
        }
        let controlling = a.initiator;
        let ours = self.local_candidates();
        let mut theirs = a.peer_candidates.clone();
        // Where our relay saw the peer last: its NAT's current mapping, which its own
        // announcement may predate (a rebinding).
        if let Some(origin) = a
            .relayed_origin
            .map(|(_, origin)| origin)
            .filter(|o| !theirs.iter().any(|c| c.0 == *o))
        {
            theirs.push((
                origin,
                KIND_PEER_REFLEXIVE,
                candidate_priority(KIND_PEER_REFLEXIVE, 0),
            ));
        }
        let mut fresh: Vec<Pair> = Vec::new();
        for (remote, kind, their_priority) in &theirs {
            // The relayed path is the one we already have.
            if *kind == KIND_RELAYED || *remote == a.remote {
                continue;
            }
            for (local, lkind, our_priority) in &ours {
                if *lkind != KIND_HOST || local.is_ipv4() != remote.is_ipv4() {
                    continue;
                }
                let (g, d) = if controlling {
                    (*our_priority, *their_priority)
                } else {
                    (*their_priority, *our_priority)
                };
                fresh.push(Pair {
                    local: *local,
                    remote: *remote,
                    priority: pair_priority(g, d),
                    state: PairState::Waiting,
                    nominate: false,
                });
            }
        }
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let ice = a.ice.get_or_insert_with(Box::default);
        let mut pairs = std::mem::take(&mut ice.pairs);
        if recheck {
            for p in &mut pairs {
                p.state = PairState::Waiting;
                p.nominate = false;
            }
            ice.selected = None;
            ice.recheck = None;
            ice.first_success = None;
        }
        let before = pairs.len();
        for p in fresh {
            if !pairs
                .iter()
                .any(|q| q.local == p.local && q.remote == p.remote)
            {
                pairs.push(p);
            }
        }
        // Best first; over the cap, pairs that succeeded or are nominated stay whatever
        // their priority (the nomination waits on them).
        pairs.sort_by_key(|p| {
            let keep = p.state == PairState::Succeeded || p.nominate;
            (std::cmp::Reverse(keep), std::cmp::Reverse(p.priority))
        });
        pairs.truncate(MAX_PAIRS);
        pairs.sort_by_key(|p| std::cmp::Reverse(p.priority));
        if !pairs.iter().any(|p| p.state == PairState::Succeeded) {
            ice.first_success = None;
        }
        if pairs.len() != before || recheck {
            tracing::debug!(peer = %peer, pairs = pairs.len(), controlling, recheck, "connectivity checks");
            ice.next_tx = Some(now);
        }
        ice.pairs = pairs;
    }

    /// When the checks of `a` next need the timer.
    pub(super) fn ice_due(&self, a: &Assoc) -> Option<Instant> {
        // Checks that are not wanted (any more) never wake us: a timer left in the past
        // would spin.
        if !self.ice_wanted(a) {
            return None;
        }
        let ice = a.ice.as_ref()?;
        let pacing = ice.next_tx;
        let retry = ice
            .pairs
            .iter()
            .filter_map(|p| match p.state {
                PairState::InProgress { due, .. } => Some(due),
                _ => None,
            })
            .min();
        let waiting = ice.pairs.iter().any(|p| p.state == PairState::Waiting);
        let send = if waiting {
            pacing
        } else {
            retry.map(|r| ice.next_tx.map_or(r, |t| r.max(t)))
        };
        let nominate = ice
            .first_success
            .filter(|_| ice.selected.is_none() && a.initiator)
            .filter(|_| !ice.pairs.iter().any(|p| p.nominate))
            .map(|t| t + NOMINATION_WAIT);
        [send, ice.recheck, nominate].into_iter().flatten().min()
    }

    /// The checks' timer: one transmission per Ta (a retransmission or the next waiting
    /// pair), failures, nomination, and the periodic restart while relayed.
    pub(super) fn ice_timer(&mut self, now: Instant, peer: Hit) {
        let ta = self
            .assocs
            .get(&peer)
            .map_or(DEFAULT_TA, |a| a.pacing.max(MIN_TA));
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let Some(ice) = a.ice.as_mut() else { return };
        if ice.recheck.is_some_and(|t| t <= now) {
            self.ice_start(now, peer);
            return;
        }
        for p in &mut ice.pairs {
            if let PairState::InProgress { tries, due, .. } = p.state {
                if due <= now && tries >= CHECK_TRIES {
                    p.state = PairState::Failed;
                }
            }
        }
        if ice.next_tx.is_some_and(|t| t <= now) {
            let next = ice
                .pairs
                .iter()
                .position(|p| matches!(p.state, PairState::InProgress { due, .. } if due <= now))
                .or_else(|| ice.pairs.iter().position(|p| p.state == PairState::Waiting));
            if let Some(i) = next {
                ice.next_tx = Some(now + ta);
                self.send_check(now, peer, i);
            }
        }
        self.ice_progress(now, peer);
    }

    /// Sends (or resends) the check of pair `i`.
    fn send_check(&mut self, now: Instant, peer: Hit, i: usize) {
        let mut fresh = vec![0u8; 16];
        self.rng.fill_bytes(&mut fresh);
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let controlling = a.initiator;
        let Some(p) = a.ice.as_mut().and_then(|ice| ice.pairs.get_mut(i)) else {
            return;
        };
        let (nonce, tries) = match &p.state {
            PairState::InProgress { nonce, tries, .. } => (nonce.clone(), tries + 1),
            _ => (fresh, 1),
        };
        p.state = PairState::InProgress {
            nonce: nonce.clone(),
            tries,
            due: now + CHECK_RTO,
        };
        let (local, remote, nominate) = (p.local, p.remote, p.nominate);
        // The priority a peer-reflexive candidate of ours would get (RFC 8445 §7.1.1).
        let priority = candidate_priority(KIND_PEER_REFLEXIVE, 65535);
        let seq = a.next_update_id;
        a.next_update_id = a.next_update_id.wrapping_add(1);
        tracing::trace!(peer = %peer, local = %local, remote = %remote, nominate, tries, "connectivity check");
        let mut params = vec![
            Param::Seq(seq),
            Param::EchoRequestSigned(nonce),
            Param::CandidatePriority(priority),
        ];
        if nominate && controlling {
            params.push(Param::Nominate(0));
        }
        self.send_update_to(now, peer, params, None, Some((local, remote)));
    }

    /// Handles an UPDATE that is part of the checks: a check (answered, and maybe a
    /// triggered check or, with NOMINATE, a move) or the answer to one of ours. False if
    /// `update` is an ordinary UPDATE.
    pub(super) fn ice_update(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        update: &HipRepr,
    ) -> bool {
        let peer = update.sender_hit;
        if update.param(param_type::CANDIDATE_PRIORITY).is_some() {
            self.answer_check(now, local, remote, update);
            return true;
        }
        let Some(Param::EchoResponseSigned(nonce)) = update.param(param_type::ECHO_RESPONSE_SIGNED)
        else {
            return false;
        };
        let Some(ice) = self.assocs.get_mut(&peer).and_then(|a| a.ice.as_mut()) else {
            return false;
        };
        let Some(p) = ice
            .pairs
            .iter_mut()
            .find(|p| matches!(&p.state, PairState::InProgress { nonce: n, .. } if n == nonce))
        else {
            return false;
        };
        if p.remote != remote || p.local != local {
            // Not from where the check went: not a path (RFC 9028 §4.6.2 drops it).
            return true;
        }
        p.state = PairState::Succeeded;
        // Ours (controlling) or the peer's (controlled): either way the pair is taken.
        let nominated = p.nominate;
        if let Some(Param::MappedAddress(m)) = update.param(param_type::MAPPED_ADDRESS) {
            let m = m.socket();
            if !ice.mapped.contains(&(local, m)) {
                ice.mapped.push((local, m));
                ice.mapped.truncate(MAX_PAIRS);
            }
        }
        tracing::debug!(peer = %peer, local = %local, remote = %remote, nominated, "connectivity check succeeded");
        if nominated {
            self.select_pair(now, peer, local, remote);
        }
        self.ice_progress(now, peer);
        self.schedule(now, peer);
        true
    }

    /// Answers a check where it came from; with NOMINATE (from the controlling side) the
    /// association moves to the pair.
    fn answer_check(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        update: &HipRepr,
    ) {
        let peer = update.sender_hit;
        let Some(Param::Seq(seq)) = update.param(param_type::SEQ) else {
            return;
        };
        // Every check (retransmissions too) has an UPDATE ID of its own: one seen before is
        // a replay, which must not make us sign answers for whatever source it claims.
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        if !a.check_window.accept(*seq) {
            tracing::debug!(peer = %peer, from = %remote, "replayed connectivity check dropped");
            return;
        }
        let mut params = vec![
            Param::Ack(vec![*seq]),
            Param::MappedAddress(TransportAddress::udp(remote)),
        ];
        params.extend(update::echo_response(update));
        self.send_update_to(now, peer, params, None, Some((local, remote)));
        let Some(a) = self.assocs.get(&peer) else {
            return;
        };
        // Nominated by the controlling side: taken at once if our own check of the pair
        // succeeded, otherwise once it does (RFC 8445 §7.3.1.5) — the source of a check
        // alone proves nothing about where the peer is.
        let nominated = update.param(param_type::NOMINATE).is_some() && !a.initiator;
        let checked = a.ice.as_ref().is_some_and(|i| {
            i.pairs
                .iter()
                .any(|p| p.local == local && p.remote == remote && p.state == PairState::Succeeded)
        });
        if nominated && checked {
            self.select_pair(now, peer, local, remote);
            return;
        }
        // A check from where we have no pair (or one not yet checked): check it back now.
        self.ice_start(now, peer);
        let priority = match update.param(param_type::CANDIDATE_PRIORITY) {
            Some(Param::CandidatePriority(p)) => *p,
            _ => 0,
        };
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let controlling = a.initiator;
        let pacing = a.pacing.max(MIN_TA);
        let ice = a.ice.get_or_insert_with(|| {
            Box::new(Ice {
                next_tx: Some(now),
                ..Ice::default()
            })
        });
        if ice.selected.is_some() {
            return;
        }
        match ice
            .pairs
            .iter_mut()
            .position(|p| p.local == local && p.remote == remote)
        {
            Some(i) if matches!(ice.pairs[i].state, PairState::Waiting | PairState::Failed) => {
                let mut p = ice.pairs.remove(i);
                p.state = PairState::Waiting;
                p.nominate |= nominated;
                ice.pairs.insert(0, p);
            }
            Some(i) => {
                ice.pairs[i].nominate |= nominated;
                return;
            }
            None if ice.pairs.len() < MAX_PAIRS => {
                let ours = candidate_priority(KIND_HOST, 65535);
                let (g, d) = if controlling {
                    (ours, priority)
                } else {
                    (priority, ours)
                };
                ice.pairs.insert(
                    0,
                    Pair {
                        local,
                        remote,
                        priority: pair_priority(g, d),
                        state: PairState::Waiting,
                        nominate: nominated,
                    },
                );
                tracing::debug!(peer = %peer, remote = %remote, "peer-reflexive candidate");
            }
            None => return,
        }
        if ice.next_tx.is_none_or(|t| t > now + pacing) {
            ice.next_tx = Some(now);
        }
        self.schedule(now, peer);
    }

    /// The controlling side nominates once no better pair is still being checked; with
    /// nothing left to check and nothing found, the association stays where it is (relayed)
    /// and checks again later.
    fn ice_progress(&mut self, now: Instant, peer: Hit) {
        let recheck = self.config.recheck_interval;
        let relayed = self
            .assocs
            .get(&peer)
            .is_some_and(|a| self.path_kind(a) != PathKind::Direct);
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let controlling = a.initiator;
        let Some(ice) = a.ice.as_mut() else { return };
        if ice.selected.is_some() {
            return;
        }
        let nominating = ice
            .pairs
            .iter()
            .any(|p| p.nominate && p.state != PairState::Failed);
        if controlling && !nominating {
            // The best pair that succeeded, once nothing better is still undecided — or
            // once better pairs had NOMINATION_WAIT to answer since the first success (a
            // peer's private address may never answer; waiting out its retries would keep
            // the data on the relay for seconds).
            let first = ice
                .pairs
                .iter()
                .position(|p| p.state == PairState::Succeeded);
            let undecided_before =
                first.is_some_and(|i| ice.pairs[..i].iter().any(|p| p.state != PairState::Failed));
            match first {
                Some(_) if ice.first_success.is_none() => ice.first_success = Some(now),
                None => ice.first_success = None,
                _ => {}
            }
            let waited = ice
                .first_success
                .is_some_and(|t| now >= t + NOMINATION_WAIT);
            let best = first.filter(|_| !undecided_before || waited);
            if let Some(i) = best {
                let p = &mut ice.pairs[i];
                p.nominate = true;
                p.state = PairState::Waiting;
                let p = ice.pairs.remove(i);
                ice.pairs.insert(0, p);
                ice.next_tx = Some(now);
                return;
            }
        }
        let done = ice
            .pairs
            .iter()
            .all(|p| matches!(p.state, PairState::Succeeded | PairState::Failed));
        if done && ice.recheck.is_none() && relayed && !recheck.is_zero() {
            tracing::debug!(peer = %peer, "no direct path found, staying relayed");
            ice.recheck = Some(now + recheck);
        }
    }

    /// Nomination done: the association uses the pair from now on.
    fn select_pair(&mut self, now: Instant, peer: Hit, local: SocketAddr, remote: SocketAddr) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let Some(ice) = a.ice.as_mut() else { return };
        if ice.selected == Some((local, remote)) {
            return;
        }
        ice.selected = Some((local, remote));
        ice.recheck = None;
        let old = a.remote;
        // A check or probe of another path is over: its answer must not take the
        // association there. An UPDATE under way follows the association, so that its ACK
        // does not either (see `acknowledged_at`).
        if let Some(v) = a.verify.take() {
            if a.pending_update.as_ref().is_some_and(|p| p.seq == v.seq) {
                a.pending_update = None;
            }
        }
        if let Some(p) = a.pending_update.as_mut() {
            p.to = None;
        }
        a.local = local;
        a.remote = remote;
        a.relay_to = None;
        a.permission = None;
        a.failover.clear();
        a.unanswered_since = None;
        a.last_move = Some((now, Duration::ZERO));
        tracing::info!(peer = %peer, from = %old, to = %remote, local = %local, "direct path selected");
        self.push_event(Event::LocatorChanged { peer, remote });
    }

    /// When the association next needs a NAT keepalive.
    pub(super) fn keepalive_due(&self, a: &Assoc) -> Option<Instant> {
        let interval = self.config.nat_keepalive;
        if interval.is_zero() || !self.behind_relay() || a.state != AssocState::Established {
            return None;
        }
        let last = [a.last_sent_at, a.traffic.last_tx, a.established_at]
            .into_iter()
            .flatten()
            .max()?;
        Some(last + interval)
    }

    /// Sends a NAT keepalive (NOTIFY with NAT_KEEPALIVE, RFC 9028 §5.3) on the path in use.
    pub(super) fn send_keepalive(&mut self, now: Instant, peer: Hit) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let (local, remote) = (a.local, a.remote);
        a.last_sent_at = Some(now);
        self.stats.keepalives_sent += 1;
        // With ESP up, the keepalive is an ESP dummy packet (RFC 4303 §2.6): every ESP
        // implementation drops it silently, and unlike a NOTIFY it cannot be replayed,
        // so the receiver may follow it to a new address — the relay server keeps up
        // with a client whose NAT rebinds while it is idle.
        if self.send_dummy(peer) {
            tracing::trace!(peer = %peer, remote = %remote, "NAT keepalive (ESP)");
            return;
        }
        let n = self.notify_packet(peer, None, NotifyType::NatKeepalive, Vec::new());
        tracing::trace!(peer = %peer, remote = %remote, "NAT keepalive");
        self.transmit(local, remote, &n);
    }

    /// Work for the association after any input or timer: candidates to announce,
    /// permissions the relay server needs, checks to start.
    pub(super) fn nat_upkeep(&mut self, now: Instant, peer: Hit) {
        let Some(a) = self.assocs.get(&peer) else {
            return;
        };
        // The relay must forward the peer's first ESP already, which is what completes the
        // exchange on our side: permissions go out from the R2 on.
        if a.relay_to.is_some() && a.esp.is_some() {
            let server = self.relay_server_at(a.remote);
            let stale = Self::wanted_permission(a) != a.permission;
            if let (Some(server), true) = (server, stale) {
                self.sync_permissions(now, server, false);
            }
        }
        if self.relay_grants.contains_key(&peer) {
            // Permissions waiting for this server's UPDATE slot.
            self.sync_permissions(now, peer, false);
        }
        let Some(a) = self.assocs.get(&peer) else {
            return;
        };
        // Every established association hears all our addresses, of both families (RFC
        // 8047): a peer that learned only the one of the exchange could not follow us when
        // that one's family goes.
        if a.state == AssocState::Established {
            self.announce_if_changed(now, peer);
        }
        let Some(a) = self.assocs.get(&peer) else {
            return;
        };
        if self.ice_wanted(a) {
            self.ice_start(now, peer);
            self.schedule(now, peer);
        }
    }
}

/// The TRANSACTION_PACING a packet offers, or the default when it has none (RFC 9028 §4.4).
fn offered_ta(packet: &HipRepr) -> Duration {
    match packet.param(param_type::TRANSACTION_PACING) {
        Some(Param::TransactionPacing(ms)) => {
            Duration::from_millis(u64::from(*ms)).clamp(MIN_TA, MAX_TA)
        }
        _ => DEFAULT_TA,
    }
}

/// A duration in whole milliseconds, as TRANSACTION_PACING carries it.
pub(super) fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pump(a: &mut Host, b: &mut Host, now: Instant) {
        for _ in 0..50 {
            let mut moved = false;
            while let Some(t) = a.poll_transmit() {
                b.handle_datagram(now, t.remote, t.local, &t.payload);
                moved = true;
            }
            while let Some(t) = b.poll_transmit() {
                a.handle_datagram(now, t.remote, t.local, &t.payload);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    /// A recheck that falls due when the association no longer wants checks (no relay,
    /// no NAT'd peer) must not leave the timer in the past.
    #[test]
    fn a_recheck_without_checks_to_run_does_not_spin() {
        let now = Instant::now();
        let id = |n: u8| HostIdentity::from_secret([n; 32]);
        let mut a = Host::new(id(1), Config::default(), [2; 32], now);
        let mut b = Host::new(id(3), Config::default(), [4; 32], now);
        let (la, lb): (SocketAddr, SocketAddr) = (
            "198.51.100.1:10500".parse().unwrap(),
            "198.51.100.2:10500".parse().unwrap(),
        );
        a.set_local_addresses(now, &[la]);
        b.set_local_addresses(now, &[lb]);
        let b_hit = b.hit();
        a.connect(now, b_hit, la, &[lb]).unwrap();
        pump(&mut a, &mut b, now);
        assert_eq!(a.assocs[&b_hit].state, AssocState::Established);
        let due = now + Duration::from_secs(1);
        a.assocs.get_mut(&b_hit).unwrap().ice = Some(Box::new(Ice {
            recheck: Some(due),
            ..Ice::default()
        }));
        a.schedule(now, b_hit);
        a.handle_timeout(due);
        assert!(
            a.poll_timeout().is_some_and(|t| t > due),
            "the timer moved on"
        );
    }

    #[test]
    fn candidate_priorities_follow_rfc_8445() {
        assert_eq!(candidate_priority(KIND_HOST, 65535), 0x7EFF_FFFF);
        assert_eq!(
            candidate_priority(KIND_SERVER_REFLEXIVE, 65535),
            0x64FF_FFFF
        );
        assert_eq!(candidate_priority(KIND_PEER_REFLEXIVE, 65535), 0x6EFF_FFFF);
        assert_eq!(candidate_priority(KIND_RELAYED, 65535), 0x00FF_FFFF);
        assert_eq!(candidate_priority(KIND_HOST, 0), 0x7E00_00FF);
    }

    #[test]
    fn pair_priority_formula_and_tie_bit() {
        // 2^32 * MIN(G, D) + 2 * MAX(G, D) + (G > D ? 1 : 0).
        assert_eq!(pair_priority(10, 20), (10 << 32) + 40);
        assert_eq!(pair_priority(20, 10), (10 << 32) + 40 + 1);
        assert_eq!(
            pair_priority(0x7EFF_FFFF, 0x7EFF_FFFF),
            (0x7EFF_FFFFu64 << 32) + 2 * 0x7EFF_FFFF
        );
        // Host-host above host-srflx above anything with a relayed end.
        let host = candidate_priority(KIND_HOST, 65535);
        let srflx = candidate_priority(KIND_SERVER_REFLEXIVE, 65535);
        let relayed = candidate_priority(KIND_RELAYED, 65535);
        assert!(pair_priority(host, host) > pair_priority(host, srflx));
        assert!(pair_priority(host, srflx) > pair_priority(srflx, relayed));
    }
}
