//! The node model: one hipbone node — its [`hip::Host`], its overlay ([`OverlayLinks`]:
//! an `overlay::Node` whose links run in a userspace TCP stack inside the HIP
//! associations), the edge between inner packets and ESP payloads ([`Edge`]: LSI/BEET
//! translation) and its configured peers — as one sans-IO object. The daemon drives it with
//! sockets, a TUN device, netlink and the clock; the simulator drives it with virtual time
//! and virtual links. Decisions that join the protocol cores live here, once: how an I1 for
//! a peer finds its way (configured locators, or the overlay neighbour that named the peer
//! — HIP BONE), what a lost association means (its overlay link goes, its LSI is released
//! unless configured, a rendezvous or relay registration starts again), and what ESP for an
//! SPI we no longer know asks for (a fresh exchange with the configured peer).
//!
//! The driver's order of calls, each turn: inputs (`handle_datagram`, `encapsulate`,
//! `set_local_addresses`, requests), then `handle_timeout(now)` — which runs everything the
//! inputs or the clock made due and may be called at any time — then `poll_transmit` until
//! `None` and `poll_event` until `None`; then it waits until `poll_timeout`, or input.
//! The data path (`encapsulate`, `handle_datagram`) works on the driver's buffers and does
//! not allocate; the driver may batch it (the daemon does, with GSO and GRO).

mod backoff;
pub mod edge;
pub mod names;
pub mod overlay;

use crate::config::Config;
use crate::offload::{self, TcpSegments};
use ::overlay::wire::{LocatorEntry, NameGrant};
use edge::Edge;
use hip::esp::PROTO_TCP as TCP;
use hip::esp::{
    icmpv6_unreachable, write_ipv6_header, ESP_HEADER_LEN, ESP_TAIL_MAX,
    ICMPV6_ADDRESS_UNREACHABLE, IPV6_HEADER_LEN,
};
use hip::{Event, Hit, Host, HostIdentity, Inbound, Outbound, Transmit};
use overlay::{OverlayLinks, OverlaySetup, RequestId};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Events waiting for the driver; past that the oldest go (they are for logs and status).
const MAX_EVENTS: usize = 1024;
/// Overlay datagrams sealed and waiting for the driver.
const MAX_TRANSMITS: usize = 4096;
/// HITs looked up in the overlay at once, and packets held for each meanwhile.
const MAX_LOOKUPS: usize = 64;
const MAX_HELD: usize = 16;
/// ICMP errors waiting for the driver to write them to the local stack, and how many the
/// node makes in one second at most (RFC 4443 §2.4 (f)).
const MAX_TO_STACK: usize = 64;
const ICMP_PER_SECOND: u32 = 20;

/// A packet waiting for its peer's record.
struct Held {
    next_header: u8,
    payload: Vec<u8>,
    /// From the local stack (told by ICMP if the peer is not found), not the overlay's own.
    from_stack: bool,
}

/// A configured peer: where its I1 goes, and what it serves us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    pub name: Option<String>,
    pub locators: Vec<SocketAddr>,
    /// Our rendezvous server: registered with at start, and again whenever the
    /// association with it ends.
    pub rendezvous: bool,
    /// Our relay server: registered with like the rendezvous server.
    pub relay: bool,
}

/// What the driver hears of the node (for logs, status and the path MTU it looks after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    Established {
        peer: Hit,
        local: SocketAddr,
        remote: SocketAddr,
        initiator: bool,
    },
    /// The association's path moved to `remote`.
    Moved { peer: Hit, remote: SocketAddr },
    /// The association failed or was closed.
    Ended { peer: Hit },
}

/// How a base exchange we started came about (`hipbone status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The peer's locators are in our configuration.
    Configured,
    /// An overlay neighbour named it and relays our I1 (HIP BONE).
    OverlayNeighbour,
    /// Its HIT-LOCATOR record in the overlay.
    LocatorRecord,
    /// An I1 routed to it through the overlay (HIP BONE); its R1 said where it is.
    OverlayRoute,
}

impl Found {
    pub fn describe(self) -> &'static str {
        match self {
            Found::Configured => "configured",
            Found::OverlayNeighbour => "through an overlay neighbour",
            Found::LocatorRecord => "its locator record in the overlay",
            Found::OverlayRoute => "an I1 routed through the overlay",
        }
    }
}

/// A HIT we had packets for and could not reach, lately (`hipbone status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreached {
    pub peer: Hit,
    pub why: Cow<'static, str>,
    pub at: Instant,
}

/// HITs `hipbone status` lists as not reached.
const MAX_UNREACHED: usize = 16;

/// What a received datagram was, for the driver.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// An inner packet for the TUN device: its transport payload at `payload` of the
    /// buffer given, from `peer`.
    Deliver {
        peer: Hit,
        next_header: u8,
        payload: core::ops::Range<usize>,
    },
    /// As a relay: ESP to pass on, unchanged, to `to`.
    Forward { to: SocketAddr },
    /// Taken by the node (HIP control, the overlay's own traffic) or dropped.
    Consumed,
}

pub struct Node {
    pub host: Host,
    pub edge: Edge,
    pub overlay: Option<OverlayLinks>,
    /// Our identity again, for signing what the overlay stores.
    identity: HostIdentity,
    peers: HashMap<Hit, Peer>,
    /// The largest transport payload one datagram to a peer carries, where the driver
    /// knows the path (the overlay's segments are cut to it).
    max_payload: HashMap<Hit, usize>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<NodeEvent>,
    /// Packets for HITs being looked up in the overlay (no locator known), held until
    /// the record comes: at most `MAX_LOOKUPS` HITs, `MAX_HELD` packets each.
    held: HashMap<Hit, VecDeque<Held>>,
    /// `[nat] behind`: whether we are behind a NAT, when the configuration says so.
    nat_behind: Option<bool>,
    /// IP packets for the local stack (ICMP errors about packets we could not send).
    to_stack: VecDeque<Vec<u8>>,
    /// The second the ICMP budget counts in, and what it spent.
    icmp_spent: (Option<Instant>, u32),
    /// How the base exchanges we started came about, while their associations last.
    found: HashMap<Hit, Found>,
    /// The HITs not reached lately, newest last.
    unreached: VecDeque<Unreached>,
    /// Our rendezvous and relay servers: whether one granted us its service, and when we
    /// ask it again after it stopped answering.
    servers: HashMap<Hit, ServerState>,
    /// Overlay members that refused to relay for us, and when.
    not_relays: HashMap<Hit, Instant>,
}

#[derive(Debug, Default)]
struct ServerState {
    registered: bool,
    backoff: backoff::Backoff,
    again_at: Option<Instant>,
    /// A member of the overlay we asked to relay for us (not configured): asked and not
    /// yet answered.
    found: bool,
    asked: bool,
}

/// Relays a member behind a NAT keeps: one to fall back on when the other dies.
const WANTED_RELAYS: usize = 2;
/// A member that refused to relay for us is not asked again for this long, and this many
/// refusals are remembered at most.
const NOT_A_RELAY_FOR: Duration = Duration::from_secs(3600);
const MAX_NOT_RELAYS: usize = 256;

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("hit", &self.host.hit())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node of `host` (and its `identity` again, for what the overlay signs), with `edge`
    /// for its inner packets, `peers` configured and optionally an overlay.
    pub fn new(
        host: Host,
        identity: HostIdentity,
        edge: Edge,
        peers: HashMap<Hit, Peer>,
        overlay: Option<OverlayLinks>,
    ) -> Node {
        Node {
            host,
            edge,
            overlay,
            identity,
            peers,
            max_payload: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            held: HashMap::new(),
            to_stack: VecDeque::new(),
            icmp_spent: (None, 0),
            found: HashMap::new(),
            unreached: VecDeque::new(),
            nat_behind: None,
            servers: HashMap::new(),
            not_relays: HashMap::new(),
        }
    }

    /// The node `config` describes, with `identity`; `seeds` draw the randomness of the
    /// host and the overlay, `epoch_ms` is the wall clock now (the overlay's storage
    /// times). The configured peers and the overlay's bootstrap nodes (reached like
    /// configured peers, without an LSI of their own) are where I1s go.
    pub fn from_config(
        config: &Config,
        identity: HostIdentity,
        seeds: [[u8; 32]; 2],
        epoch_ms: u64,
        now: Instant,
    ) -> anyhow::Result<Node> {
        let copy = || HostIdentity::from_secret(*identity.secret_bytes());
        let hit = identity.hit();
        if let Some(g) = config.overlay.as_ref().and_then(|o| o.grant.as_ref()) {
            let name = String::from_utf8_lossy(&g.name);
            if g.hit.0 != hit.0 {
                anyhow::bail!(
                    "overlay.grant gives {name} to {}, not to this node ({hit})",
                    Hit(g.hit.0)
                );
            }
            if g.expires <= epoch_ms / 1000 {
                anyhow::bail!(
                    "overlay.grant for {name} expired (at Unix time {}): ask a signer for a new one",
                    g.expires
                );
            }
        }
        let overlay = config.overlay.as_ref().map(|o| {
            let setup = OverlaySetup {
                name: o.name.clone(),
                client: o.client,
                bootstraps: o.bootstrap.iter().map(|b| b.hit).collect(),
                capture: o.pcap.is_some(),
                signers: o.signers.clone(),
                grant: o.grant.clone(),
            };
            let mtu = config.interface.mtu as usize;
            OverlayLinks::new(&setup, copy(), mtu, seeds[1], epoch_ms, now)
        });
        let mut pool = config
            .interface
            .lsi_range
            .pool()
            .map_err(|e| anyhow::anyhow!("interface.lsi_range: {e}"))?;
        let lsi = config.interface.own_lsi();
        pool.reserve(lsi);
        let mut peers = HashMap::new();
        for p in &config.peers {
            pool.lsi_for(&p.hit)
                .map_err(|e| anyhow::anyhow!("allocating an LSI for peer {}: {e}", p.hit))?;
            let peer = Peer {
                name: p.name.clone(),
                locators: p.locators.clone(),
                rendezvous: p.rendezvous,
                relay: p.relay,
            };
            peers.insert(p.hit, peer);
        }
        for b in config.overlay.iter().flat_map(|o| &o.bootstrap) {
            if b.hit != hit && !peers.contains_key(&b.hit) {
                let peer = Peer {
                    name: Some("bootstrap".to_string()),
                    locators: b.locators.clone(),
                    ..Peer::default()
                };
                peers.insert(b.hit, peer);
            }
        }
        let own = copy();
        let host = Host::new(identity, config.to_hip_config(), seeds[0], now);
        let edge = Edge {
            hit,
            lsi,
            pool,
            flows: Default::default(),
        };
        let mut node = Node::new(host, own, edge, peers, overlay);
        node.nat_behind = config.nat.behind;
        Ok(node)
    }

    pub fn hit(&self) -> Hit {
        self.host.hit()
    }

    pub fn peers(&self) -> &HashMap<Hit, Peer> {
        &self.peers
    }

    /// Starts what runs on its own: the overlay's first links, registrations with our
    /// rendezvous and relay servers.
    pub fn start(&mut self, now: Instant) {
        self.locators_changed(now);
        let behind = self.behind_nat();
        if let Some(o) = self.overlay.as_mut() {
            // Behind a NAT, a member can be reached only through a relay: its bootstraps
            // (reachable by definition) are asked to relay for it; one that does not serve
            // as relay grants nothing and stays a plain link.
            o.set_behind_nat(behind);
            if behind {
                for b in o.bootstraps() {
                    if let Some(p) = self.peers.get_mut(b) {
                        p.relay = true;
                    }
                }
            }
            o.start(now);
        }
        let servers: Vec<Hit> = self
            .peers
            .iter()
            .filter(|(_, p)| p.rendezvous || p.relay)
            .map(|(h, _)| *h)
            .collect();
        for server in servers {
            self.register_with(now, server);
        }
    }

    /// Starts a base exchange with `peer`: to its configured locators, or through the
    /// overlay neighbour that named it (HIP BONE: the I1 goes over that neighbour's
    /// association, which relays it). False if there is no way to reach it (yet: the
    /// caller may look its record up).
    pub fn connect(&mut self, now: Instant, peer: Hit) -> bool {
        // Behind a NAT, an I1 relayed by a neighbour is answered straight to our NAT, which
        // drops the R1 (and the peer's own I1, crossing ours, would be dropped by us as
        // the smaller HIT of a simultaneous exchange, RFC 7401 §4.4.4). So a member behind
        // a NAT never starts one that way: joined, it looks the peer's record up (its host
        // or relayed address answers through our own mapping); joining, it waits for its
        // admitting peer to connect to it (`overlay::Node::connect_back`).
        let by_hint = !self.behind_nat() && !self.host.behind_relay();
        let (locators, found) = match self.peers.get(&peer) {
            Some(p) => (p.locators.clone(), Found::Configured),
            None if !by_hint => (Vec::new(), Found::OverlayNeighbour),
            None => (
                self.hint_locator(&peer).into_iter().collect(),
                Found::OverlayNeighbour,
            ),
        };
        self.start_exchange(now, peer, &locators, found)
    }

    /// Starts a base exchange with `peer` at `locators`, found as `found`; false if there
    /// are none or the host refuses.
    fn start_exchange(
        &mut self,
        now: Instant,
        peer: Hit,
        locators: &[SocketAddr],
        found: Found,
    ) -> bool {
        let Some(first) = locators.first() else {
            return false;
        };
        let local = self.local_for(first);
        match self.host.connect(now, peer, local, locators) {
            Ok(_) => {
                self.found.insert(peer, found);
                true
            }
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "cannot start a base exchange");
                let why = format!("cannot start a base exchange: {e}");
                self.not_reached(now, peer, why.into());
                false
            }
        }
    }

    /// Notes that `peer` could not be reached, for `hipbone status`. (On the path of every
    /// packet for a HIT nobody has: the fixed reasons cost no allocation.)
    fn not_reached(&mut self, now: Instant, peer: Hit, why: Cow<'static, str>) {
        self.unreached.retain(|u| u.peer != peer);
        if self.unreached.len() == MAX_UNREACHED {
            self.unreached.pop_front();
        }
        self.unreached.push_back(Unreached { peer, why, at: now });
    }

    /// How the base exchange with `peer` came about, if we started it.
    pub fn found(&self, peer: &Hit) -> Option<Found> {
        self.found.get(peer).copied()
    }

    /// The HITs not reached lately, oldest first.
    pub fn unreached(&self) -> impl Iterator<Item = &Unreached> {
        self.unreached.iter()
    }

    /// Whether a NAT stands between us and the rest: as configured, or when every address
    /// of ours is private.
    fn behind_nat(&self) -> bool {
        self.nat_behind
            .unwrap_or_else(|| behind_nat(self.host.local_addresses()))
    }

    /// The address of the overlay neighbour that named `peer` (HIP BONE: it relays an I1
    /// for `peer` over its own association).
    fn hint_locator(&self, peer: &Hit) -> Option<SocketAddr> {
        let relay = self.overlay.as_ref()?.relay_for(peer)?;
        Some(self.host.association(&relay)?.remote)
    }

    /// One of our addresses of `remote`'s family, or the unspecified address of that
    /// family (the driver's socket picks the source).
    fn local_for(&self, remote: &SocketAddr) -> SocketAddr {
        let any = if remote.is_ipv4() {
            SocketAddr::from(([0u8; 4], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let port = self
            .host
            .local_addresses()
            .first()
            .map_or(crate::config::DEFAULT_PORT, |a| a.port());
        let any = SocketAddr::new(any.ip(), port);
        self.host
            .local_addresses()
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .unwrap_or(any)
    }

    /// Seals the payload at `buf[payload]` for `peer` (the buffer layout of
    /// `hip::Host::encapsulate`); with no association yet, a base exchange starts and the
    /// payload waits for it.
    pub fn encapsulate<'a>(
        &mut self,
        now: Instant,
        peer: &Hit,
        next_header: u8,
        buf: &'a mut [u8],
        payload: core::ops::Range<usize>,
    ) -> Outbound<'a> {
        self.encapsulate_from(now, peer, next_header, buf, payload, true)
    }

    /// As [`Node::encapsulate`]; `from_stack`: the packet came from the local stack, which
    /// hears of an unreachable peer by ICMP (the overlay's own segments do not).
    fn encapsulate_from<'a>(
        &mut self,
        now: Instant,
        peer: &Hit,
        next_header: u8,
        buf: &'a mut [u8],
        payload: core::ops::Range<usize>,
        from_stack: bool,
    ) -> Outbound<'a> {
        if !self.host.sends_to(peer) && !self.connect(now, *peer) {
            // No locator known: the peer's HIT-LOCATOR record in the overlay says where it
            // is; the packet waits for it.
            if !self.held.contains_key(peer) && !self.start_lookup(now, *peer) {
                if from_stack {
                    let why = "no locator configured, and no overlay to look it up in (or not joined yet)";
                    self.not_reached(now, *peer, why.into());
                    self.unreachable(now, *peer, next_header, &buf[payload]);
                }
                return Outbound::NoAssociation;
            }
            let queue = self.held.entry(*peer).or_default();
            if queue.len() >= MAX_HELD {
                return Outbound::Dropped;
            }
            queue.push_back(Held {
                next_header,
                payload: buf[payload].to_vec(),
                from_stack,
            });
            return Outbound::Queued;
        }
        self.host.encapsulate(now, peer, next_header, buf, payload)
    }

    /// One UDP datagram received on `local` from `remote`, in `buf` (opened in place).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
    ) -> Received {
        match self.host.decapsulate(now, local, remote, buf) {
            Inbound::Deliver {
                peer,
                next_header,
                payload,
            } => {
                if let Some(o) = self.overlay.as_mut() {
                    if crate::netstack::is_ours(next_header, &buf[payload.clone()]) {
                        o.receive(now, peer, &buf[payload]);
                        return Received::Consumed;
                    }
                }
                Received::Deliver {
                    peer,
                    next_header,
                    payload,
                }
            }
            Inbound::UnknownSpi { spi } => {
                // The peer holds an association we lost (we restarted): a fresh base
                // exchange with the configured peer at that address replaces it.
                let peer = self
                    .peers
                    .iter()
                    .find(|(_, p)| p.locators.iter().any(|l| l.ip() == remote.ip()))
                    .map(|(h, _)| *h);
                tracing::debug!(spi = format_args!("{spi:#010x}"), from = %remote, "ESP for an unknown SPI");
                if let Some(peer) = peer {
                    self.connect(now, peer);
                }
                Received::Consumed
            }
            Inbound::Forward { to } => Received::Forward { to },
            Inbound::Control | Inbound::Dropped => Received::Consumed,
        }
    }

    /// The path to `peer` carries transport payloads of at most `max` bytes (`None`: not
    /// known): the overlay's segments are cut to it.
    pub fn set_max_payload(&mut self, peer: Hit, max: Option<usize>) {
        match max {
            Some(m) => self.max_payload.insert(peer, m),
            None => self.max_payload.remove(&peer),
        };
    }

    /// Runs what is due: the host's timers and events, and the overlay when it has input
    /// or a timer due. Call after each batch of input, and when `poll_timeout` comes.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.host.handle_timeout(now);
        let due: Vec<Hit> = self
            .servers
            .iter_mut()
            .filter(|(_, s)| s.again_at.is_some_and(|t| t <= now))
            .map(|(h, s)| {
                s.again_at = None;
                *h
            })
            .collect();
        for server in due {
            self.register_with(now, server);
        }
        // Acting on an event may make the overlay due, and the overlay's segments may
        // start an exchange, whose events come next: until neither has anything left.
        for _ in 0..4 {
            let events = self.handle_events(now);
            let due = self
                .overlay
                .as_ref()
                .is_some_and(|o| o.deadline().is_some_and(|t| t <= now));
            if !events && !due {
                break;
            }
            if due {
                self.drive_overlay(now);
            }
        }
    }

    /// The next instant `handle_timeout` has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let overlay = self.overlay.as_ref().and_then(|o| o.deadline());
        let servers = self.servers.values().filter_map(|s| s.again_at).min();
        [self.host.poll_timeout(), overlay, servers]
            .into_iter()
            .flatten()
            .min()
    }

    /// A datagram to send: the host's (HIP control, ESP it made itself), then the
    /// overlay's sealed segments.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.host
            .poll_transmit()
            .or_else(|| self.transmits.pop_front())
    }

    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// Starts leaving: our HIT-LOCATOR record is withdrawn from the overlay. The driver
    /// keeps running the node until [`left_overlay`](Self::left_overlay) (or a grace
    /// period it chooses), then calls [`depart`](Self::depart).
    pub fn leave(&mut self, now: Instant) {
        if let Some(o) = self.overlay.as_mut() {
            o.withdraw(now, &self.identity);
        }
    }

    /// The withdrawal that [`leave`](Self::leave) started was answered (or there was
    /// none to make).
    pub fn left_overlay(&self) -> bool {
        self.overlay.as_ref().is_none_or(|o| o.withdrawn())
    }

    /// Leaves the ring: our neighbours hear it (Leave, sealed into the transmit queue
    /// here) and take over our range. Drain [`poll_transmit`](Self::poll_transmit)
    /// before [`close_all`](Self::close_all), or the CLOSEs overtake the Leaves.
    pub fn depart(&mut self, now: Instant) {
        if let Some(o) = self.overlay.as_mut() {
            o.leave(now);
        }
        self.handle_timeout(now);
    }

    /// Closes every association (RFC 7401 §5.3.7), so that peers free their state now
    /// rather than after their timeouts.
    pub fn close_all(&mut self, now: Instant) {
        let peers: Vec<Hit> = self.host.associations().map(|a| a.peer).collect();
        for peer in peers {
            let _ = self.host.close(now, &peer);
        }
    }

    /// An IP packet for the local stack (the TUN device): an ICMP error about a packet
    /// the node could not send.
    pub fn poll_to_stack(&mut self) -> Option<Vec<u8>> {
        self.to_stack.pop_front()
    }

    /// Tells the local stack that `peer` cannot be reached: an ICMPv6 Destination
    /// Unreachable (address unreachable) quoting the packet as it left the stack (between
    /// HITs; a flow between LSIs hears nothing and times out). Within the budget only.
    fn unreachable(&mut self, now: Instant, peer: Hit, next_header: u8, payload: &[u8]) {
        let (since, spent) = &mut self.icmp_spent;
        if since.is_none_or(|s| now.duration_since(s) >= std::time::Duration::from_secs(1)) {
            *since = Some(now);
            *spent = 0;
        }
        if *spent >= ICMP_PER_SECOND || self.to_stack.len() >= MAX_TO_STACK {
            return;
        }
        *spent += 1;
        // The quote needs no more than what fits in the IPv6 minimum MTU.
        let quoted = &payload[..payload.len().min(1280 - 2 * IPV6_HEADER_LEN - 8)];
        let mut offending = vec![0u8; IPV6_HEADER_LEN + quoted.len()];
        write_ipv6_header(
            &mut offending,
            self.host.hit().0,
            peer.0,
            next_header,
            payload.len(),
            64,
        );
        offending[IPV6_HEADER_LEN..].copy_from_slice(quoted);
        let mut packet = vec![0u8; 1280];
        let n = icmpv6_unreachable(&mut packet, ICMPV6_ADDRESS_UNREACHABLE, &offending);
        if n > 0 {
            packet.truncate(n);
            self.to_stack.push_back(packet);
        }
    }

    /// Our addresses changed (netlink): the host tells its peers.
    pub fn set_local_addresses(&mut self, now: Instant, addrs: &[SocketAddr]) {
        self.host.set_local_addresses(now, addrs);
        self.locators_changed(now);
    }

    /// Our overlay record says where the host can be reached: its addresses now.
    fn locators_changed(&mut self, now: Instant) {
        if let Some(o) = self.overlay.as_mut() {
            let mut locators: Vec<LocatorEntry> = self
                .host
                .local_addresses()
                .iter()
                .map(|a| LocatorEntry::Host(*a))
                .collect();
            // Where our relays see us, then the relays themselves (RFC 8445's order: host,
            // server-reflexive, relayed). A reflexive address that is one of ours is no
            // NAT's and says nothing new.
            let relays = self.host.relays();
            for (_, _, reflexive) in &relays {
                if let Some(r) = reflexive.filter(|r| !locators.contains(&LocatorEntry::Host(*r))) {
                    let entry = LocatorEntry::ServerReflexive(r);
                    if !locators.contains(&entry) {
                        locators.push(entry);
                    }
                }
            }
            for (relay, addr, _) in relays {
                locators.push(LocatorEntry::Relayed {
                    addr,
                    relay: ::overlay::wire::NodeId(relay.0),
                });
            }
            o.set_locators(now, locators);
        }
    }

    /// `hipbone overlay store VALUE`, answered as `request` (see
    /// [`OverlayLinks::poll_answer`]); false without an overlay.
    pub fn overlay_store(
        &mut self,
        now: Instant,
        epoch_ms: u64,
        value: &[u8],
        request: RequestId,
    ) -> bool {
        let Some(o) = self.overlay.as_mut() else {
            return false;
        };
        o.store(now, epoch_ms, &self.identity, value, request);
        true
    }

    /// `hipbone resolve NAME` (answered as [`OverlayLinks::poll_answer`]); false without an
    /// overlay.
    pub fn resolve(&mut self, now: Instant, name: &str, request: RequestId) -> bool {
        let Some(o) = self.overlay.as_mut() else {
            return false;
        };
        o.resolve(now, name, request);
        true
    }

    /// `hipbone name claim LABEL --grant G`, answered as `request`; false without an
    /// overlay.
    pub fn claim_name(
        &mut self,
        now: Instant,
        label: &str,
        grant: NameGrant,
        request: RequestId,
    ) -> bool {
        let Some(o) = self.overlay.as_mut() else {
            return false;
        };
        o.claim_name(now, label, grant, request);
        true
    }

    /// `hipbone name release`, answered as `request`; false without an overlay.
    pub fn release_name(&mut self, now: Instant, request: RequestId) -> bool {
        let Some(o) = self.overlay.as_mut() else {
            return false;
        };
        o.release_name(now, &self.identity, request);
        true
    }

    /// `hipbone overlay fetch HIT`, answered as `request`; false without an overlay.
    pub fn overlay_fetch(&mut self, now: Instant, owner: Hit, request: RequestId) -> bool {
        let Some(o) = self.overlay.as_mut() else {
            return false;
        };
        o.fetch(now, owner, request);
        true
    }

    fn push_event(&mut self, e: NodeEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Acts on the host's events; false if there were none.
    fn handle_events(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(e) = self.host.poll_event() {
            any = true;
            match e {
                Event::Established {
                    peer,
                    local,
                    remote,
                    initiator,
                    ..
                } => {
                    let _ = self.edge.pool.lsi_for(&peer);
                    self.unreached.retain(|u| u.peer != peer);
                    for h in self.held.remove(&peer).unwrap_or_default() {
                        self.seal(now, peer, h.next_header, &h.payload);
                    }
                    tracing::info!(peer = %peer, remote = %remote, initiator, "association established");
                    self.push_event(NodeEvent::Established {
                        peer,
                        local,
                        remote,
                        initiator,
                    });
                }
                Event::LocatorChanged { peer, remote } => {
                    self.push_event(NodeEvent::Moved { peer, remote });
                }
                Event::Failed { peer, error } => {
                    tracing::info!(peer = %peer, error = %error, "association failed");
                    // The addresses of its record did not answer: the record may be
                    // stale (the peer moved since we looked it up). The overlay knows
                    // the way to the peer itself.
                    let stale = error == hip::Error::Timeout
                        && self.found.get(&peer) == Some(&Found::LocatorRecord);
                    for h in self.held.remove(&peer).unwrap_or_default() {
                        if h.from_stack {
                            self.unreachable(now, peer, h.next_header, &h.payload);
                        }
                    }
                    let why = match error {
                        hip::Error::NoRoute => "no locator record in the overlay, and no member has the HIT (the overlay refused an I1 routed to it)".into(),
                        e => format!("association failed: {e}").into(),
                    };
                    self.not_reached(now, peer, why);
                    self.association_ended(now, peer);
                    if stale && self.connect_routed(now, peer) {
                        tracing::info!(peer = %peer, "its record's addresses did not answer");
                    }
                }
                Event::Closed { peer } => {
                    tracing::info!(peer = %peer, "association closed");
                    self.association_ended(now, peer);
                }
                Event::Rekeyed { peer, .. } => tracing::debug!(peer = %peer, "ESP rekeyed"),
                Event::Registered { server } => {
                    tracing::info!(server = %server, "registered");
                    let state = self.servers.entry(server).or_default();
                    state.registered = true;
                    state.asked = false;
                    state.backoff.succeeded();
                    // A relay's grant gives us a relayed address to publish.
                    self.locators_changed(now);
                }
                Event::RegistrationRefused { server } => {
                    tracing::debug!(server = %server, "the member does not relay for us");
                    if self.servers.get(&server).is_some_and(|s| s.found) {
                        self.servers.remove(&server);
                    }
                    if self.not_relays.len() >= MAX_NOT_RELAYS {
                        self.not_relays.retain(|_, at| now < *at + NOT_A_RELAY_FOR);
                    }
                    if self.not_relays.len() < MAX_NOT_RELAYS {
                        self.not_relays.insert(server, now);
                    }
                }
                Event::Route {
                    from,
                    receiver,
                    packet,
                } => self.route(now, from, receiver, &packet),
                Event::Unanswered { peer } => self.route_a_copy(now, peer),
                other => tracing::debug!(event = ?other, "HIP event"),
            }
        }
        if any {
            self.seek_relays(now);
        }
        any
    }

    /// Behind a NAT, with fewer than `WANTED_RELAYS` relays granted or asked: asks an
    /// overlay member we reach directly at a public address to relay for us (over the
    /// association we have with it). So a member whose configured relays died, or that
    /// has a single bootstrap, finds another among the members; one that does not serve
    /// as relay refuses and is not asked again for an hour. Which members relay is their
    /// own choice (`[nat] relay`).
    fn seek_relays(&mut self, now: Instant) {
        if !self.behind_nat() {
            return;
        }
        let Some(o) = self.overlay.as_ref().filter(|o| o.node.is_joined()) else {
            return;
        };
        let relays = self
            .servers
            .values()
            .filter(|s| s.registered || s.asked)
            .count();
        if relays >= WANTED_RELAYS {
            return;
        }
        // The lowest HIT of those that qualify: the same choice whatever the links' order.
        let qualifying = o.link_peers().filter_map(|m| {
            let taken = self
                .servers
                .get(&m)
                .is_some_and(|s| s.registered || s.asked);
            let refused = self
                .not_relays
                .get(&m)
                .is_some_and(|at| now < *at + NOT_A_RELAY_FOR);
            let a = self.host.association(&m)?;
            let direct = a.state == hip::AssocState::Established
                && a.path == hip::PathKind::Direct
                && !hip::private_address(a.remote.ip());
            (!taken && !refused && direct).then_some((m, a.local, a.remote))
        });
        let Some((member, local, remote)) = qualifying.min_by_key(|(m, ..)| *m) else {
            return;
        };
        match self.host.register_relay(now, member, local, &[remote]) {
            Ok(_) => {
                tracing::info!(member = %member, "asking an overlay member to relay for us");
                let state = self.servers.entry(member).or_default();
                state.found = true;
                state.asked = true;
            }
            Err(e) => {
                tracing::debug!(member = %member, error = %e, "cannot ask the member to relay")
            }
        }
    }

    /// What goes with an association: its flows, its LSI unless the peer is configured (a
    /// configured peer keeps its LSI for good, so that programs can keep using it), its
    /// overlay link; a server of ours is registered with again.
    fn association_ended(&mut self, now: Instant, peer: Hit) {
        self.edge.flows.forget(&peer);
        self.found.remove(&peer);
        if !self.peers.contains_key(&peer) {
            self.edge.pool.release(&peer);
        }
        self.max_payload.remove(&peer);
        if let Some(o) = self.overlay.as_mut() {
            o.association_lost(now, peer);
        }
        self.register_again(now, peer);
        // A relay of ours that is gone is no longer where we are reached: our record
        // names only the relays that still serve us (published only if that changed).
        self.locators_changed(now);
        self.push_event(NodeEvent::Ended { peer });
    }

    /// The association with `peer` ended: if it is one of our servers, register with it
    /// again, at once if it had granted us its service (it may have restarted), else after
    /// a back-off: a server that is gone would otherwise get a base exchange after another
    /// for as long as we run.
    fn register_again(&mut self, now: Instant, peer: Hit) {
        if self.servers.get(&peer).is_some_and(|s| s.found) {
            // A member we found: others are asked in its place.
            self.servers.remove(&peer);
            return;
        }
        if !self
            .peers
            .get(&peer)
            .is_some_and(|p| p.rendezvous || p.relay)
        {
            return;
        }
        let state = self.servers.entry(peer).or_default();
        if std::mem::take(&mut state.registered) {
            self.register_with(now, peer);
            return;
        }
        let wait = state.backoff.failed();
        state.again_at = Some(now + wait);
        tracing::info!(server = %peer, ?wait, "the server did not answer; registering again later");
    }

    /// Registers with `peer` if it is a configured rendezvous or relay server.
    fn register_with(&mut self, now: Instant, peer: Hit) {
        let Some(p) = self.peers.get(&peer).filter(|p| p.rendezvous || p.relay) else {
            return;
        };
        let Some(first) = p.locators.first() else {
            return;
        };
        let (relay, locators) = (p.relay, p.locators.clone());
        let local = self.local_for(first);
        let result = if relay {
            self.host.register_relay(now, peer, local, &locators)
        } else {
            self.host.register(now, peer, local, &locators)
        };
        if let Err(e) = result {
            tracing::warn!(server = %peer, error = %e, relay, "cannot register");
        }
    }

    /// Lets the overlay run and seals what it sends, cut to the path where it is known.
    fn drive_overlay(&mut self, now: Instant) {
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        for (peer, segment) in o.drive(now, &self.identity) {
            let mss = self.max_payload.get(&peer).and_then(|max| {
                let header = segment.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
                (segment.len() > *max)
                    .then(|| u16::try_from(max.saturating_sub(header)).unwrap_or(u16::MAX))
            });
            match mss.map(|mss| TcpSegments::new(&segment, mss)) {
                Some(Ok(cut)) => {
                    let pseudo = offload::pseudo_header_sum(&self.edge.hit.0, &peer.0, TCP);
                    let mut piece = vec![0u8; segment.len()];
                    for i in 0..cut.count() {
                        let len = cut.write(&segment, i, &mut piece, pseudo);
                        self.seal(now, peer, TCP, &piece[..len]);
                    }
                }
                _ => self.seal(now, peer, TCP, &segment),
            }
        }
        self.lookups_ended(now);
    }

    /// Whether packets for `peer` wait for its record to be looked up.
    pub fn looking_up(&self, peer: &Hit) -> bool {
        self.held.contains_key(peer)
    }

    /// Looks `peer` up in the overlay (its HIT-LOCATOR record); false without an overlay
    /// we are joined to, or with too many lookups under way.
    fn start_lookup(&mut self, now: Instant, peer: Hit) -> bool {
        if self.held.len() >= MAX_LOOKUPS || peer == self.host.hit() {
            return false;
        }
        let Some(o) = self.overlay.as_mut().filter(|o| o.node.is_joined()) else {
            return false;
        };
        if !o.locate(now, peer) {
            return false;
        }
        self.held.insert(peer, VecDeque::new());
        true
    }

    /// Starts a base exchange with `peer` whose I1 goes through the overlay, hop by hop
    /// toward its HIT (HIP BONE); false if we have no hop toward it.
    fn connect_routed(&mut self, now: Instant, peer: Hit) -> bool {
        let Some(hop) = self.next_hop(&peer, &[]) else {
            return false;
        };
        match self.host.connect_routed(now, peer, hop) {
            Ok(_) => {
                tracing::info!(peer = %peer, via = %hop, "no record: routing the I1 through the overlay");
                self.found.insert(peer, Found::OverlayRoute);
                true
            }
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "cannot route an I1");
                false
            }
        }
    }

    /// The overlay neighbour a packet for `peer` goes to next: Chord's rule (RFC 6940
    /// §10.3) over the members we have a link with, those on its route (`avoid`) aside.
    /// (The routing table may name a peer whose link is still opening.) None when its
    /// HIT falls in our own range: no member has it, as far as we know.
    fn next_hop(&self, peer: &Hit, avoid: &[Hit]) -> Option<Hit> {
        let o = self.overlay.as_ref().filter(|o| o.node.is_joined())?;
        let chord = o.node.chord();
        let k = ::overlay::wire::NodeId(peer.0).position();
        if chord.responsible(k) {
            return None;
        }
        let linked = o.node.links().filter(|l| !avoid.iter().any(|a| a.0 == l.0));
        let hop = chord.next_hop_among(k, linked.map(|l| l.position()))?;
        Some(Hit(hop.0))
    }

    /// The I1 to the addresses of `peer`'s record went unanswered (the record may be
    /// stale: the peer moved since we fetched it), or the one to the overlay neighbour
    /// that named it (our association with that neighbour may run through a relay
    /// server, which passes an I1 on only to its own clients): a copy goes through the
    /// overlay too, whichever answers first. Not for a configured peer: its addresses are
    /// the user's word.
    fn route_a_copy(&mut self, now: Instant, peer: Hit) {
        if !matches!(
            self.found.get(&peer),
            Some(Found::LocatorRecord | Found::OverlayNeighbour)
        ) {
            return;
        }
        // A member that just joined may find the HIT in its own (still too wide) range;
        // the neighbour that named the peer knows better.
        let hint = || self.overlay.as_ref()?.relay_for(&peer);
        let Some(hop) = self.next_hop(&peer, &[]).or_else(hint) else {
            return;
        };
        match self.host.add_route(now, peer, hop) {
            Ok(()) => {
                tracing::info!(peer = %peer, via = %hop, "no answer at its record's addresses yet: routing a copy of the I1");
            }
            Err(e) => tracing::debug!(peer = %peer, error = %e, "cannot route a copy of the I1"),
        }
    }

    /// A routed packet the host handed over (`hip::Event::Route`): passed on to the next
    /// hop if it came from an overlay neighbour of ours (members only: we are no open
    /// relay). When the receiver's HIT falls in our range, no member has it: its sender
    /// hears so at once.
    fn route(&mut self, now: Instant, from: Hit, receiver: Hit, packet: &[u8]) {
        let Some(o) = self.overlay.as_ref().filter(|o| o.node.is_joined()) else {
            return;
        };
        if !o.node.links().any(|l| l.0 == from.0) {
            tracing::debug!(from = %from, receiver = %receiver, "not routing for a non-member");
            return;
        }
        let k = ::overlay::wire::NodeId(receiver.0).position();
        let result = if o.node.chord().responsible(k) {
            tracing::debug!(receiver = %receiver, "no member has the HIT routed to");
            self.host.refuse_routed(now, packet)
        } else if let Some(next) = self.next_hop(&receiver, &[from]) {
            self.host.forward_routed(now, packet, next)
        } else {
            // Back where it came from: the ring is being repaired; the sender tries again.
            Ok(())
        };
        if let Err(e) = result {
            tracing::debug!(receiver = %receiver, error = %e, "cannot route the packet");
        }
    }

    /// Lookups that ended: a base exchange to the locators found, with the held packets
    /// queued on it; without a record, the held packets are dropped and the local stack
    /// told (ICMP).
    fn lookups_ended(&mut self, now: Instant) {
        while let Some((peer, record)) = self.overlay.as_mut().and_then(|o| o.poll_located()) {
            let held = self.held.remove(&peer).unwrap_or_default();
            let mut locators = record
                .as_ref()
                .map_or_else(Vec::new, |r| dial_order(&r.locators));
            let mut found = Found::LocatorRecord;
            if locators.is_empty() {
                // No record (a peer still joining has none yet, or it was lost): the
                // neighbour that named it, if any, relays our I1 after all.
                locators.extend(self.hint_locator(&peer));
                found = Found::OverlayNeighbour;
            }
            if locators.is_empty() && self.connect_routed(now, peer) {
                // They wait for the exchange: sent when it is established, answered with
                // ICMP when no hop takes the I1 further.
                self.held.insert(peer, held);
                continue;
            }
            let started = if locators.is_empty() {
                tracing::info!(peer = %peer, dropped = held.len(), "no locator for the peer in the overlay");
                let why = "no locator record in the overlay (no such member, or it left)";
                self.not_reached(now, peer, why.into());
                false
            } else {
                self.start_exchange(now, peer, &locators, found)
            };
            if !started {
                for h in held.iter().filter(|h| h.from_stack) {
                    self.unreachable(now, peer, h.next_header, &h.payload);
                }
                continue;
            }
            tracing::info!(peer = %peer, locators = locators.len(), "found the peer in the overlay");
            for h in held {
                self.seal(now, peer, h.next_header, &h.payload);
            }
        }
    }

    /// Seals one inner packet for `peer` (queued on its association while the exchange
    /// runs) and queues the datagram if one comes out.
    fn seal(&mut self, now: Instant, peer: Hit, next_header: u8, segment: &[u8]) {
        let mut buf = vec![0u8; ESP_HEADER_LEN + segment.len() + ESP_TAIL_MAX];
        let payload = ESP_HEADER_LEN..ESP_HEADER_LEN + segment.len();
        buf[payload.clone()].copy_from_slice(segment);
        if let Outbound::Send {
            local,
            remote,
            datagram,
        } = self.encapsulate_from(now, &peer, next_header, &mut buf, payload, false)
        {
            if self.transmits.len() == MAX_TRANSMITS {
                self.transmits.pop_front();
            }
            self.transmits.push_back(Transmit {
                local,
                remote,
                payload: datagram.to_vec(),
            });
        }
    }
}

/// The addresses of a locator record in the order a base exchange tries them (it sends
/// its I1 to the first three at once): a relayed one first, as it goes through any NAT,
/// then a server-reflexive and a host one, then the next of each kind. In the record's
/// own order (host, server-reflexive, relayed, RFC 8445's) a member behind a symmetric NAT
/// with two relays listed two reflexive addresses, which its NAT does not let through,
/// before any relay: nobody new reached it.
fn dial_order(record: &[LocatorEntry]) -> Vec<SocketAddr> {
    use ::overlay::wire::LocatorKind as K;
    let of = |kind: K| -> Vec<SocketAddr> {
        record
            .iter()
            .filter(|l| l.kind() == kind)
            .map(|l| l.addr())
            .collect()
    };
    let kinds = [of(K::Relayed), of(K::ServerReflexive), of(K::Host)];
    let longest = kinds.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(record.len());
    for i in 0..longest {
        for kind in &kinds {
            if let Some(a) = kind.get(i).filter(|a| !out.contains(*a)) {
                out.push(*a);
            }
        }
    }
    out
}

/// Whether every address we have is private (RFC 1918, shared address space RFC 6598,
/// link-local, unique local): then some NAT stands between us and the rest, and others
/// can reach us only through a relay.
fn behind_nat(addrs: &[SocketAddr]) -> bool {
    !addrs.is_empty() && addrs.iter().all(|a| hip::private_address(a.ip()))
}

#[cfg(test)]
mod tests {
    use super::behind_nat;
    use std::net::SocketAddr;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn a_record_is_dialled_relayed_then_reflexive_then_host_one_of_each_in_turn() {
        use ::overlay::wire::{LocatorEntry as L, NodeId};
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let relay = NodeId([7; 16]);
        let record = [
            L::Host(a("10.0.1.2:10500")),
            L::ServerReflexive(a("198.19.0.2:40001")),
            L::ServerReflexive(a("198.19.0.2:40002")),
            L::Relayed {
                addr: a("198.18.0.13:10500"),
                relay,
            },
            L::Relayed {
                addr: a("198.18.0.25:10500"),
                relay,
            },
        ];
        assert_eq!(
            super::dial_order(&record),
            addrs(&[
                "198.18.0.13:10500",
                "198.19.0.2:40001",
                "10.0.1.2:10500",
                "198.18.0.25:10500",
                "198.19.0.2:40002",
            ])
        );
        // A public member: its host addresses, in their order.
        let public = [
            L::Host(a("198.18.0.1:10500")),
            L::Host(a("[2001:db8::1]:10500")),
        ];
        assert_eq!(
            super::dial_order(&public),
            addrs(&["198.18.0.1:10500", "[2001:db8::1]:10500"])
        );
    }

    #[test]
    fn only_private_addresses_mean_a_nat() {
        for private in [
            "10.0.0.2:10500",
            "172.31.255.1:10500",
            "192.168.1.5:10500",
            "100.64.0.1:10500",
            "100.127.255.254:10500",
            "169.254.3.4:10500",
            "[fd00::1]:10500",
            "[fe80::1]:10500",
        ] {
            assert!(behind_nat(&addrs(&[private])), "{private}");
        }
        for public in [
            "198.51.100.2:10500",
            "100.128.0.1:10500",
            "172.32.0.1:10500",
            "[2001:db8::1]:10500",
        ] {
            assert!(!behind_nat(&addrs(&[public])), "{public}");
        }
        assert!(!behind_nat(&addrs(&[
            "10.0.0.2:10500",
            "[2001:db8::1]:10500"
        ])));
        assert!(!behind_nat(&[]), "no address says nothing");
    }
}
