//! [`Host`]: the sans-IO HIP endpoint. It owns the host identity, every association (by
//! peer HIT), the puzzle secrets and the precomputed R1s.
//!
//! # Calling contract
//!
//! The driver (the node's event loop or the simulator) owns sockets and the clock:
//!
//! 1. Feed input as it arrives: [`Host::handle_datagram`] for every UDP payload received on
//!    the HIP port (HIP control packets carry the four-byte zero marker, RFC 9028 §5.1),
//!    [`Host::connect`] / [`Host::close`] for local requests.
//! 2. After any input, drain [`Host::poll_transmit`] (send each payload from `local` to
//!    `remote`) and [`Host::poll_event`] until both return `None`.
//! 3. Ask [`Host::poll_timeout`] when to wake up next, and call [`Host::handle_timeout`]
//!    at or after that instant; then drain again as in 2.
//!
//! Every call takes `now`; it must never go backwards. `handle_timeout` does nothing harmful
//! when nothing is due. Output queues are bounded (`Config::max_transmits`,
//! `Config::max_events`): a driver that does not drain them loses the newest items, counted
//! in [`Stats`].
//!
//! # Responder state
//!
//! The responder keeps nothing for a peer until a valid I2 arrives: an R1 is a precomputed,
//! pre-signed template (HIP_SIGNATURE_2 does not cover the receiver HIT nor the puzzle's #I
//! and Opaque) into which the puzzle for this initiator is written. `#I` is derived from a
//! rotating secret, the initiator's and responder's addresses and the difficulty `K`, so the
//! I2 proves which puzzle it answers without any table.

mod bex;
mod bone;
mod close;
mod data;
mod ice;
mod mobility;
mod relay;
mod rendezvous;
mod update;

pub use crate::config::{Config, RelayQuota};
pub use data::{Inbound, Outbound};
pub use ice::{NatBehaviour, PathKind};
pub use relay::{RelayStats, REG_TYPE_RELAY_UDP_ESP, REG_TYPE_RELAY_UDP_HIP};
pub use rendezvous::{registration_lifetime, REG_TYPE_RENDEZVOUS};

use crate::assoc::{
    add_mac, add_signature, check_mac, check_signature, find_raw, Assoc, Check, KeymatSeed,
    SessionKeys, Timers,
};
pub use crate::assoc::{AssocHandle, AssocState, EspKeys, Traffic};
use crate::crypto::{
    draw_esp_keys, draw_hip_keys, esp_key_lens, hip_keys_len, DhKeyPair, EdX25519, HipCipher,
    Profile, TRANSPORT_FORMAT_ESP,
};
use crate::identity::{Hit, HostIdentity, PublicIdentity};
use crate::puzzle::{self, Difficulty, Secrets};
use crate::wire::{
    param_type, verify_checksum, EspInfo, HipRepr, Notification, NotifyType, Packet, PacketType,
    Param, Puzzle, Solution,
};
use crate::Error;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// A UDP datagram to send: `payload` from `local` to `remote`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub payload: Vec<u8>,
}

/// What happened to an association.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// ESP keys are in place: for the initiator when the R2 is accepted, for the responder
    /// when it sends the R2. Sent again if the association is replaced (the peer restarted).
    Established {
        handle: AssocHandle,
        peer: Hit,
        initiator: bool,
        local: SocketAddr,
        remote: SocketAddr,
        keys: EspKeys,
    },
    /// The exchange we started gave up.
    Failed { peer: Hit, error: Error },
    /// The association was closed, by us or by the peer.
    Closed { peer: Hit },
    /// A rendezvous server granted our registration.
    Registered { server: Hit },
    /// A server refused the registration we asked for over an association we had.
    RegistrationRefused { server: Hit },
    /// The peer moved: its locator is now `remote`, checked by a signed echo.
    LocatorChanged { peer: Hit, remote: SocketAddr },
    /// The ESP SAs were replaced by a rekey.
    Rekeyed {
        peer: Hit,
        spi_in: u32,
        spi_out: u32,
    },
    /// The peer sent an authenticated NOTIFY.
    Notified {
        peer: Hit,
        kind: NotifyType,
        data: Vec<u8>,
    },
    /// The first I1 of an exchange with `peer` got no answer at the peer's addresses (we
    /// route for an overlay): the embedder may route a copy through it
    /// ([`Host::add_route`]).
    Unanswered { peer: Hit },
    /// A packet routed through the overlay (HIP BONE) came from the overlay neighbour
    /// `from` for `receiver`, whom we have no association with: the embedder picks the
    /// next hop by the overlay's routing, if `from` is a member it routes for, and hands
    /// `packet` to [`Host::forward_routed`].
    Route {
        from: Hit,
        receiver: Hit,
        packet: Vec<u8>,
    },
}

/// A snapshot of one association, for status displays and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssocInfo {
    pub handle: AssocHandle,
    pub peer: Hit,
    pub state: AssocState,
    pub initiator: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub established_at: Option<Instant>,
    pub traffic: Traffic,
    /// When the peer last moved, and how long from the first packet seen at its new
    /// address until that address was verified.
    pub last_move: Option<(Instant, Duration)>,
    /// A new address of the peer being checked (RFC 8046 §5.4), not used until verified
    /// (or used on credit, when the peer's announcement dropped the old one).
    pub checking: Option<SocketAddr>,
    /// A failover probe under way: the path (local, remote) being tried.
    pub probing: Option<(SocketAddr, SocketAddr)>,
    /// The peer's addresses from its last LOCATOR_SET, preferred first.
    pub peer_locators: Vec<SocketAddr>,
    /// Direct, or through which relay server.
    pub path: PathKind,
    /// The NAT traversal mode the base exchange selected (None: the peer offered none),
    /// and the Ta both sides pace their checks by.
    pub nat_mode: Option<u16>,
    pub pacing: Duration,
    /// Connectivity checks: pairs that succeeded, pairs in all (0, 0 when none ran).
    pub checks: (usize, usize),
    /// When the next NAT keepalive is due, if we send them on this association.
    pub keepalive_due: Option<Instant>,
    /// Current inbound and outbound SPIs, once ESP is up.
    pub spis: Option<(u32, u32)>,
    pub rekeys: u32,
}

/// Counters. `dropped` counts every packet refused for any reason; `last_drop` says why
/// the latest one was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub dropped: u64,
    pub last_drop: Option<Error>,
    pub r1_sent: u64,
    /// I1s and UPDATEs passed on to registered clients, as a rendezvous server.
    pub relayed: u64,
    /// Packets passed on through the overlay (HIP BONE), and routed packets refused.
    pub routed: u64,
    pub route_refused: u64,
    pub i2_accepted: u64,
    pub notify_sent: u64,
    /// ESP packets seen before the data plane takes them.
    pub esp_ignored: u64,
    pub transmits_lost: u64,
    pub events_lost: u64,
    /// Inner packets dropped because a peer's queue was full during its base exchange.
    pub queue_dropped: u64,
    pub esp_out_errors: u64,
    pub esp_unknown_spi: u64,
    pub esp_replayed: u64,
    /// ESP packets older than the replay window (late, or replays of old packets).
    pub esp_late: u64,
    /// ESP packets that failed authentication or were malformed.
    pub esp_auth_failed: u64,
    pub keepalives_sent: u64,
    /// Failed associations brought back by a fresh UPDATE or ESP from their peer.
    pub revived: u64,
    /// ESP dummy packets sent because the peer's data got no answer of ours for half the
    /// failover silence.
    pub acks_sent: u64,
    /// UPDATEs from a peer that passed HIP_MAC and signature.
    pub updates_received: u64,
    /// Of those, UPDATEs whose SEQ was at or before the last one processed: a
    /// retransmission, or a replay.
    pub updates_old: u64,
    /// Old UPDATEs left unanswered: they came from an address neither the peer's locator
    /// nor under check (a replay must not make us sign packets for the source it claims).
    pub updates_old_unanswered: u64,
    /// Checks of a peer's new address started (an UPDATE with ECHO_REQUEST_SIGNED sent
    /// there); failover probes not included.
    pub address_checks: u64,
    /// Associations moved to another address of the peer.
    pub peer_moves: u64,
    /// ESP bytes sent on credit to a peer address under check (RFC 8046 §3.3.2).
    pub credit_bytes: u64,
    /// ESP packets sent to the old locator instead, because the credit was spent.
    pub credit_refused: u64,
}

/// One puzzle generation: the R1 Diffie-Hellman key that goes with a puzzle secret, and the
/// signed R1 templates built with it (one per difficulty in use).
struct Generation {
    number: u64,
    dh: DhKeyPair,
    templates: Vec<(u8, HipRepr)>,
    /// What this generation's puzzles were used for, by #I.
    solutions: HashMap<Vec<u8>, PuzzleUse>,
}

/// How often one puzzle (#I) was answered with a valid solution, and the solutions whose
/// I2 was accepted.
#[derive(Default)]
struct PuzzleUse {
    attempts: u32,
    accepted: Vec<Vec<u8>>,
}

/// Valid solutions admitted per puzzle and generation: a few reconnects of one initiator
/// and a few corrupted copies, not a flood.
const ATTEMPTS_PER_PUZZLE: u32 = 16;

/// Generations kept: the current one and the one before, so that an initiator that got an
/// R1 just before a rotation can still finish (RFC 7401 §4.1.2).
const GENERATIONS: usize = 2;
/// Rounds of due timers one `handle_timeout` runs at most (a cascade is one or two deep).
const TIMER_ROUNDS: usize = 8;

/// The HIP endpoint. See the module documentation for the calling contract.
pub struct Host {
    identity: HostIdentity,
    profile: &'static dyn Profile,
    config: Config,
    rng: ChaCha20Rng,
    assocs: HashMap<Hit, Box<Assoc>>,
    /// The associations' deadlines, earliest first.
    timers: Timers,
    /// Inbound SPI → peer; may hold stale entries, checked on use.
    spis: HashMap<u32, Hit>,
    next_handle: u32,
    secrets: Secrets,
    generations: VecDeque<Generation>,
    next_rotation: Instant,
    difficulty: Difficulty,
    /// Our HOST_ID TLV exactly as sent (HIP_MAC_2 covers it).
    host_id_tlv: Vec<u8>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    notify_window: (Instant, u32),
    r1_limiter: crate::ratelimit::RateLimiter,
    /// Our addresses as last told by `set_local_addresses`.
    local_addresses: Vec<SocketAddr>,
    /// Rendezvous servers we want to register with, and those that granted it, with when
    /// the grant is to be refreshed.
    wanted_registrations: HashMap<Hit, Vec<u8>>,
    /// Servers asked for a registration over an association we already had (an UPDATE
    /// with REG_REQUEST, RFC 8003 §3.3), and when to ask (again).
    asking: HashMap<Hit, Instant>,
    registered_with: HashMap<Hit, Instant>,
    /// As a rendezvous server: the registered clients, with when each registration ends.
    rvs_clients: HashMap<Hit, Instant>,
    /// As a relay server: the registered clients, and which client each relayed SPI
    /// belongs to (true: the client's inbound SPI).
    relay_clients: HashMap<Hit, relay::RelayClient>,
    relay_spis: HashMap<u32, (Hit, bool)>,
    relay_stats: RelayStats,
    /// As a relay client: the servers that relay for us.
    relay_grants: HashMap<Hit, relay::RelayGrant>,
    /// While a packet relayed to us is handled: the server it came through and the
    /// sender's address, where answers go by way of the server.
    answering_via: Option<(SocketAddr, SocketAddr)>,
    /// While a packet routed to us through the overlay is handled: its route.
    routed_in: Option<bone::Routed>,
    stats: Stats,
}

impl core::fmt::Debug for Host {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Host")
            .field("hit", &self.identity.hit())
            .field("associations", &self.assocs.len())
            .finish_non_exhaustive()
    }
}

impl Host {
    /// A host with `identity`; every random choice it makes comes from `seed`.
    pub fn new(identity: HostIdentity, config: Config, seed: [u8; 32], now: Instant) -> Host {
        let profile: &'static dyn Profile = &EdX25519;
        let mut rng = ChaCha20Rng::from_seed(seed);
        let secrets = Secrets::new(random32(&mut rng));
        let host_id_tlv = Param::HostId(identity.public().host_id()).to_bytes();
        let mut host = Host {
            profile,
            difficulty: Difficulty::new(config.difficulty),
            next_rotation: now + config.secret_rotation,
            notify_window: (now, 0),
            r1_limiter: crate::ratelimit::RateLimiter::new(config.r1_per_source, 4096, now),
            local_addresses: Vec::new(),
            wanted_registrations: Default::default(),
            asking: Default::default(),
            registered_with: Default::default(),
            rvs_clients: Default::default(),
            relay_clients: Default::default(),
            relay_spis: Default::default(),
            relay_stats: RelayStats::default(),
            relay_grants: Default::default(),
            answering_via: None,
            routed_in: None,
            config,
            identity,
            rng,
            assocs: HashMap::new(),
            timers: Timers::default(),
            spis: HashMap::new(),
            next_handle: 0,
            secrets,
            generations: VecDeque::with_capacity(GENERATIONS),
            host_id_tlv,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        };
        host.start_generation();
        host
    }

    pub fn hit(&self) -> Hit {
        self.identity.hit()
    }

    pub fn identity(&self) -> &HostIdentity {
        &self.identity
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The association with `peer`, if any.
    pub fn association(&self, peer: &Hit) -> Option<AssocInfo> {
        self.assocs.get(peer).map(|a| info(self, a))
    }

    /// Every association, in no particular order.
    pub fn associations(&self) -> impl Iterator<Item = AssocInfo> + '_ {
        self.assocs.values().map(|a| info(self, a))
    }

    /// Bytes one association occupies: its entry in the table plus what it owns on the
    /// heap (keys, the peer's identity, the packet kept for retransmission).
    pub fn association_bytes(&self, peer: &Hit) -> Option<usize> {
        let a = self.assocs.get(peer)?;
        let keys = a.keys.as_ref().map_or(0, |k| {
            k.mac_out.len()
                + k.mac_in.len()
                + k.esp.enc_in.len()
                + k.esp.enc_out.len()
                + k.esp.auth_in.len()
                + k.esp.auth_out.len()
        });
        let peer_id = a.peer.as_ref().map_or(0, |p| p.host_id().di.len());
        let heap = keys
            + peer_id
            + a.peer_host_id_tlv.len()
            + a.candidates.len() * std::mem::size_of::<SocketAddr>()
            + a.last_sent.as_ref().map_or(0, Vec::len)
            + a.routed_i1.as_ref().map_or(0, |(_, i1)| i1.len())
            + a.close_nonce.as_ref().map_or(0, Vec::len);
        Some(std::mem::size_of::<(Hit, Assoc)>() + heap)
    }

    /// The ESP keys of an association that has them.
    pub fn esp_keys(&self, peer: &Hit) -> Option<&EspKeys> {
        self.assocs.get(peer)?.keys.as_ref().map(|k| &k.esp)
    }

    /// Starts a base exchange with `peer`, sending I1 to each of `locators` (at most
    /// three, RFC 7401 §6.6.1) from `local`. Does nothing if an exchange is under way or
    /// the association is up.
    pub fn connect(
        &mut self,
        now: Instant,
        peer: Hit,
        local: SocketAddr,
        locators: &[SocketAddr],
    ) -> Result<AssocHandle, Error> {
        if peer == self.hit() || !peer.is_orchid() || locators.is_empty() {
            return Err(Error::InvalidHit);
        }
        let i1 = self.i1(peer, Vec::new());
        tracing::debug!(peer = %peer, "sending I1");
        let candidates = locators.iter().take(3).copied().collect();
        self.begin_exchange(now, peer, local, candidates, Some(i1.to_bytes()), None)
    }

    /// An I1 to `peer`: our DH group, then `more`.
    fn i1(&self, peer: Hit, more: Vec<Param>) -> HipRepr {
        let mut params = vec![Param::DhGroupList(vec![self.profile.dh_group()])];
        params.extend(more);
        HipRepr {
            next_header: 59,
            packet_type: PacketType::I1,
            version: 2,
            controls: 0,
            sender_hit: self.hit(),
            receiver_hit: peer,
            params,
        }
    }

    /// Starts a base exchange with `peer` by sending `i1` to each of `candidates`, or
    /// `routed` (an I1 routed through the overlay) to its neighbour; a live association
    /// with it is kept instead.
    fn begin_exchange(
        &mut self,
        now: Instant,
        peer: Hit,
        local: SocketAddr,
        candidates: Vec<SocketAddr>,
        i1: Option<Vec<u8>>,
        routed: Option<(Hit, Vec<u8>)>,
    ) -> Result<AssocHandle, Error> {
        if let Some(a) = self.assocs.get(&peer) {
            if !matches!(
                a.state,
                AssocState::Closing | AssocState::Closed | AssocState::Failed
            ) {
                return Ok(a.handle);
            }
            // A new exchange replaces the old association: nothing of it carries over.
            self.forget_association(now, peer);
        }
        let pending = self
            .assocs
            .values()
            .filter(|a| a.state == AssocState::I1Sent)
            .count();
        if pending >= self.config.max_pending_i1
            || self.assocs.len() >= self.config.max_associations
        {
            return Err(Error::TooManyAssociations);
        }
        let handle = self.new_handle();
        let mut a = Assoc::new(handle, peer, AssocState::I1Sent);
        a.initiator = true;
        a.local = local;
        a.candidates = candidates;
        a.last_sent = i1;
        a.routed_i1 = routed;
        a.arm(&mut self.timers, now, self.config.i1_timeout);
        self.send_i1(&a);
        self.assocs.insert(peer, Box::new(a));
        Ok(handle)
    }

    /// One UDP payload received on `local` from `remote`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    ) {
        self.stats.received += 1;
        let Some(hip) = payload.strip_prefix(&[0u8; 4]) else {
            if payload.len() >= 4 {
                self.stats.esp_ignored += 1;
            } else {
                self.drop_packet(Error::Malformed(crate::wire::WireError::Truncated));
            }
            return;
        };
        if let Err(e) = self.handle_hip(now, local, remote, hip) {
            self.drop_packet(e);
        }
    }

    /// Runs whatever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_rotation {
            self.next_rotation = now + self.config.secret_rotation;
            self.secrets.rotate(random32(&mut self.rng));
            self.start_generation();
        }
        // Handling a timer can make another due at once (checks to send `now`, a rekey
        // that waited for an UPDATE): such cascades run here, in rounds, so that no
        // deadline is left at or before `now` for the driver to wake up for again.
        for _ in 0..TIMER_ROUNDS {
            let due = self.timers.due(now);
            if due.is_empty() {
                return;
            }
            for peer in due {
                self.expire(now, peer);
            }
        }
    }

    /// The next instant at which `handle_timeout` has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let assoc = self.timers.next();
        Some(assoc.map_or(self.next_rotation, |t| t.min(self.next_rotation)))
    }

    /// The earliest association timer found by visiting every association: what
    /// `poll_timeout` and `handle_timeout` each did before the timer queue, kept as the
    /// baseline of `benches/timers.rs`.
    #[doc(hidden)]
    pub fn scan_timers(&self) -> Option<Instant> {
        self.assocs.values().filter_map(|a| a.timer()).min()
    }

    /// Whether the timer queue holds exactly the associations' timers (the simulator
    /// checks it after every step).
    #[doc(hidden)]
    pub fn timers_agree(&self) -> bool {
        self.timers.agree(self.assocs.values().map(|a| &**a))
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- input ----------------------------------------------------------------------

    fn handle_hip(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let view = Packet::new_checked(bytes)?;
        let bytes = &bytes[..view.total_len()];
        // Over UDP the sender leaves the checksum zero (RFC 9028 §5.1); a non-zero one must
        // still be right, so that a corrupted checksum field is not silently accepted.
        if view.checksum() != 0 && !verify_checksum(remote.ip(), local.ip(), bytes) {
            return Err(Error::BadChecksum);
        }
        let repr = HipRepr::parse(bytes)?;
        let ours = repr.receiver_hit == self.hit();
        if repr.param(param_type::OVERLAY_ID).is_some() {
            return self.on_routed(now, local, remote, bytes, &repr, ours);
        }
        let opportunistic = repr.receiver_hit == Hit::NULL
            && matches!(repr.packet_type, PacketType::I1 | PacketType::Notify);
        if !ours && !opportunistic {
            if repr.param(param_type::RELAY_TO).is_some() {
                return self.relay_from_client(now, remote, bytes, &repr);
            }
            if let Some(relayed) = self.relay_to_client(now, remote, &repr) {
                return relayed;
            }
            if self.relays_for(now, &repr) {
                return self.relay_i1(remote, &repr);
            }
            return Err(Error::Unexpected);
        }
        // Passed on by a relay server of ours: answers go back through it.
        let origin = self.relayed_origin(remote, bytes, &repr)?;
        let peer = repr.sender_hit;
        let last_update = |h: &Host| h.assocs.get(&peer).and_then(|a| a.peer_update_id);
        let before = last_update(self);
        self.answering_via = origin.map(|o| (remote, o));
        let handled = self.dispatch(now, local, remote, bytes, &repr);
        self.answering_via = None;
        if handled.is_ok() {
            // The relay vouches for where the packet came from, not for when: only a fresh
            // packet (the I2, an UPDATE with a new ID) may say where the peer is now.
            // (An I2 sets where the peer is when it creates the association, in
            // `accept_i2`; a replayed one only gets the R2 again.)
            let fresh = repr.packet_type == PacketType::Update && last_update(self) != before;
            if let Some(origin) = origin.filter(|_| fresh) {
                self.note_relayed(remote, origin, peer);
            }
            self.nat_upkeep(now, peer);
        }
        handled
    }

    fn dispatch(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        repr: &HipRepr,
    ) -> Result<(), Error> {
        if let Some(ty) = unknown_critical(repr) {
            // Told only to a host we have an exchange with, at the address we know for it:
            // an unauthenticated sender must not turn us into a reflector. Never in answer
            // to an I1 (RFC 7401 §5.4) or to a NOTIFY.
            let known = self
                .assocs
                .get(&repr.sender_hit)
                .is_some_and(|a| a.remote == remote || a.candidates.contains(&remote));
            if known && !matches!(repr.packet_type, PacketType::I1 | PacketType::Notify) {
                self.notify(
                    now,
                    local,
                    remote,
                    repr.sender_hit,
                    NotifyType::UnsupportedCriticalParameterType,
                    ty.to_be_bytes().to_vec(),
                );
            }
            return Err(Error::UnsupportedCritical(ty));
        }
        match repr.packet_type {
            PacketType::I1 => self.on_i1(now, local, remote, bytes, repr),
            PacketType::R1 => self.on_r1(now, local, remote, bytes, repr),
            PacketType::I2 => self.on_i2(now, local, remote, bytes, repr),
            PacketType::R2 => self.on_r2(now, bytes, repr),
            PacketType::Close => self.on_close(now, bytes, repr),
            PacketType::CloseAck => self.on_close_ack(now, bytes, repr),
            PacketType::Update => {
                // Relayed by our rendezvous server: the peer is at the address in FROM.
                let remote = match self.relayed_from(local, remote, bytes, repr)? {
                    Some((from, _server)) => from,
                    None => remote,
                };
                self.on_update(now, local, remote, bytes, repr)
            }
            PacketType::Notify => self.on_notify(now, bytes, repr),
            _ => Err(Error::Unexpected),
        }
    }

    // ---- timers ---------------------------------------------------------------------

    fn expire(&mut self, now: Instant, peer: Hit) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let (limit, remove_after) = match a.state {
            AssocState::I1Sent => (self.config.i1_tries, false),
            AssocState::I2Sent => (self.config.i2_tries, false),
            AssocState::Closing => (self.config.close_tries, true),
            AssocState::R2Sent => {
                // What fell due meanwhile (a rekey by age) runs now, not at a deadline
                // already past.
                a.state = AssocState::Established;
                self.timers.set(a, None);
                self.established_timer(now, peer);
                return;
            }
            AssocState::Established => {
                self.established_timer(now, peer);
                return;
            }
            AssocState::Closed | AssocState::Failed => {
                self.forget_association(now, peer);
                return;
            }
        };
        if a.tries < limit {
            a.backoff(&mut self.timers, now, self.config.max_timeout);
            if a.state == AssocState::I1Sent {
                // (The first send counts as the first try: this is the first resend.)
                let ask = a.tries == 2 && a.routed_i1.is_none() && self.config.overlay_id.is_some();
                let a = self.assocs.remove(&peer);
                if let Some(a) = a {
                    self.send_i1(&a);
                    self.assocs.insert(peer, a);
                }
                if ask {
                    self.push_event(Event::Unanswered { peer });
                }
            } else if let Some(bytes) = a.last_sent.clone() {
                let (local, remote) = (a.local, a.remote);
                self.transmit(local, remote, &bytes);
            }
        } else if remove_after {
            self.forget_association(now, peer);
            self.push_event(Event::Closed { peer });
        } else {
            self.fail_exchange(now, peer, Error::Timeout);
        }
    }

    /// The exchange with `peer` gives up: the association lingers as failed.
    pub(super) fn fail_exchange(&mut self, now: Instant, peer: Hit, error: Error) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        tracing::debug!(peer = %peer, state = %a.state, error = %error, "exchange failed");
        a.state = AssocState::Failed;
        self.timers.set(a, Some(now + self.config.linger));
        a.last_error = Some(error);
        self.push_event(Event::Failed { peer, error });
    }

    /// Removes the association with `peer` and what lives with it: registrations either
    /// way round, relay permissions, the relay grant (and with it our candidates).
    pub(super) fn forget_association(&mut self, now: Instant, peer: Hit) {
        if let Some(a) = self.assocs.remove(&peer) {
            self.timers.forget(&a);
        }
        self.registered_with.remove(&peer);
        self.asking.remove(&peer);
        self.rvs_clients.remove(&peer);
        self.drop_relay_client(&peer);
        if self.relay_grants.remove(&peer).is_some() {
            self.candidates_changed(now);
        }
    }

    // ---- output ---------------------------------------------------------------------

    fn send_i1(&mut self, a: &Assoc) {
        if let Some((hop, i1)) = &a.routed_i1 {
            if let Ok((local, remote, _)) = self.hop(hop) {
                self.transmit_to(*hop, local, remote, i1);
            }
        }
        if let Some(i1) = &a.last_sent {
            for remote in &a.candidates {
                let t = Transmit {
                    local: self.local_towards(a.local, *remote),
                    remote: *remote,
                    payload: marked(i1),
                };
                self.push_transmit(t);
            }
        }
    }

    /// The local address to reach `remote` from: `preferred` if it is of `remote`'s
    /// family, else our first address of that family, else that family's unspecified
    /// address on `preferred`'s port (the driver's socket of that family picks).
    pub(super) fn local_towards(&self, preferred: SocketAddr, remote: SocketAddr) -> SocketAddr {
        if preferred.is_ipv4() == remote.is_ipv4() {
            return preferred;
        }
        self.local_addresses
            .iter()
            .find(|l| l.is_ipv4() == remote.is_ipv4())
            .copied()
            .unwrap_or_else(|| {
                let any = if remote.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                };
                SocketAddr::new(any, preferred.port())
            })
    }

    fn transmit(&mut self, local: SocketAddr, remote: SocketAddr, hip: &[u8]) {
        let payload = self.wrap_for(remote, hip);
        self.push_transmit(Transmit {
            local,
            remote,
            payload,
        });
    }

    /// As [`transmit`](Self::transmit), to the association with `peer` whatever the
    /// packet's receiver (a hop of a routed packet).
    fn transmit_to(&mut self, peer: Hit, local: SocketAddr, remote: SocketAddr, hip: &[u8]) {
        let payload = self.wrap_to(remote, hip, Some(peer));
        self.push_transmit(Transmit {
            local,
            remote,
            payload,
        });
    }

    /// Queues an ESP datagram a relay passes on (see [`Inbound::Forward`]), for drivers
    /// that send everything through `poll_transmit`.
    pub fn queue_forward(&mut self, local: SocketAddr, to: SocketAddr, datagram: &[u8]) {
        self.push_transmit(Transmit {
            local,
            remote: to,
            payload: datagram.to_vec(),
        });
    }

    fn push_transmit(&mut self, t: Transmit) {
        if self.transmits.len() >= self.config.max_transmits {
            self.stats.transmits_lost += 1;
        } else {
            self.transmits.push_back(t);
        }
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= self.config.max_events {
            self.stats.events_lost += 1;
        } else {
            self.events.push_back(e);
        }
    }

    fn drop_packet(&mut self, e: Error) {
        tracing::debug!(error = %e, "HIP packet dropped");
        self.stats.dropped += 1;
        self.stats.last_drop = Some(e);
    }

    fn new_handle(&mut self) -> AssocHandle {
        self.next_handle = self.next_handle.wrapping_add(1);
        AssocHandle(self.next_handle)
    }

    /// A fresh inbound SPI: random, above the reserved 1..=255, unused here.
    fn new_spi(&mut self) -> u32 {
        loop {
            let spi = self.rng.next_u32();
            let taken = self.assocs.values().any(|a| {
                a.keys.as_ref().is_some_and(|k| k.esp.spi_in == spi)
                    || a.rekey.as_ref().is_some_and(|r| r.our_spi == spi)
            });
            if spi > 255 && !taken && !self.spis.contains_key(&spi) {
                return spi;
            }
        }
    }
}

fn info(host: &Host, a: &Assoc) -> AssocInfo {
    let checks = a.ice.as_ref().map_or((0, 0), |i| {
        let ok = i
            .pairs
            .iter()
            .filter(|p| p.state == crate::assoc::ice::PairState::Succeeded)
            .count();
        (ok, i.pairs.len())
    });
    AssocInfo {
        path: host.path_kind(a),
        nat_mode: a.nat_mode,
        pacing: a.pacing,
        checks,
        keepalive_due: host.keepalive_due(a),
        handle: a.handle,
        peer: a.peer_hit,
        state: a.state,
        initiator: a.initiator,
        local: a.local,
        remote: a.remote,
        established_at: a.established_at,
        traffic: a.traffic,
        last_move: a.last_move,
        checking: a
            .verify
            .as_ref()
            .filter(|v| v.kind != Check::Probe)
            .map(|v| v.remote),
        probing: a
            .verify
            .as_ref()
            .filter(|v| v.kind == Check::Probe)
            .map(|v| (v.local, v.remote)),
        peer_locators: a.peer_locators.clone(),
        spis: a
            .keys
            .as_ref()
            .filter(|_| a.esp.is_some())
            .map(|k| (k.esp.spi_in, k.esp.spi_out)),
        rekeys: a.esp.as_ref().map_or(0, |e| e.rekeys),
    }
}

/// The first entry of `offered` (looking at six at most, RFC 7401 §5.2.8) that we accept.
fn first_common(offered: &[u16], accepted: &[u16]) -> Option<u16> {
    offered
        .iter()
        .take(6)
        .copied()
        .find(|id| accepted.contains(id))
}

fn unknown_critical(repr: &HipRepr) -> Option<u16> {
    repr.params.iter().find_map(|p| match p {
        Param::Unknown { ty, .. } if ty & 1 == 1 => Some(*ty),
        _ => None,
    })
}

/// The UDP payload for a HIP control packet: the zero marker, then the packet.
fn marked(hip: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + hip.len());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(hip);
    v
}

fn random32(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::bex::{opaque_of, padded, parse_tlv};
    use super::*;

    #[test]
    fn first_common_looks_at_six_offers_only() {
        assert_eq!(first_common(&[9, 8, 2], &[2, 8]), Some(8));
        assert_eq!(first_common(&[1, 1, 1, 1, 1, 1, 2], &[2]), None);
        assert_eq!(first_common(&[], &[2]), None);
    }

    #[test]
    fn tlv_padding_and_opaque() {
        assert_eq!(padded(3), 8);
        assert_eq!(padded(4), 8);
        assert_eq!(padded(5), 16);
        assert_eq!(padded(36 + 6), 48);
        assert_eq!(opaque_of(0x1_0002), [0, 2]);
    }

    #[test]
    fn parse_tlv_refuses_short_or_lying_lengths() {
        assert!(parse_tlv(&[]).is_none());
        assert!(parse_tlv(&[0x01, 0x81, 0, 200, 1, 2]).is_none());
        let h = Param::HostId(HostIdentity::from_secret([1; 32]).public().host_id());
        assert_eq!(parse_tlv(&h.to_bytes()), Some(h));
    }

    #[test]
    fn connect_refuses_our_own_or_a_non_orchid_hit() {
        let now = Instant::now();
        let mut h = Host::new(
            HostIdentity::from_secret([1; 32]),
            Config::default(),
            [2; 32],
            now,
        );
        let local: SocketAddr = "198.51.100.1:10500".parse().unwrap();
        let peer: SocketAddr = "198.51.100.2:10500".parse().unwrap();
        let me = h.hit();
        assert_eq!(h.connect(now, me, local, &[peer]), Err(Error::InvalidHit));
        assert_eq!(
            h.connect(now, Hit([0xfe; 16]), local, &[peer]),
            Err(Error::InvalidHit)
        );
        assert!(h.poll_transmit().is_none());
    }

    #[test]
    fn timeout_with_nothing_due_does_nothing() {
        let now = Instant::now();
        let mut h = Host::new(
            HostIdentity::from_secret([1; 32]),
            Config::default(),
            [2; 32],
            now,
        );
        h.handle_timeout(now);
        assert!(h.poll_transmit().is_none());
        assert!(h.poll_event().is_none());
        assert_eq!(
            h.poll_timeout(),
            Some(now + Config::default().secret_rotation)
        );
    }
}
