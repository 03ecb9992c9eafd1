//! NAT boxes for the simulator, in RFC 4787's terms: how a NAT picks the public port of an
//! inside endpoint ([`Mapping`]), which outside sources may send to that port
//! ([`Filtering`]), how long a mapping lives without outbound traffic, and what a "rebind"
//! (a conntrack flush) does to it.
//!
//! A [`NatBox`] owns one public IPv4 address and serves a set of inside (private) IPv4
//! addresses. [`Nats`] holds the boxes of one simulation and rewrites each datagram as the
//! simulator sends it, through a [`Filter`] ([`Nats::filter`]):
//!
//! 1. Outbound: a datagram from an inside address to anything but that NAT's own inside
//!    addresses leaves with the NAT's public address and the mapping's port as its source.
//!    The mapping is created or refreshed, and the destination is recorded for filtering.
//! 2. Inbound: a datagram to a NAT's public address is looked up by port. It passes if the
//!    mapping is alive and the filtering behaviour admits its source; its destination
//!    becomes the inside endpoint. Otherwise it is dropped.
//!
//! Both steps happen in one call, so a datagram from a host behind NAT A to a host behind
//! NAT B is translated twice, as on the Internet. Datagrams between inside hosts of the same
//! NAT pass untouched. Private addresses are not routed from outside: a datagram to a NAT's
//! inside address from anywhere else is dropped, so exchanged host candidates fail across
//! NATs as they do in the wild.
//!
//! Timing: the simulator calls the filter when a datagram is sent, so a datagram meets the
//! far NAT in the state that NAT has at the moment of sending (the link delay comes
//! afterwards). "Simultaneous" sends are therefore ordered: the first sender's datagram
//! reaches the other NAT before that NAT has sent anything back. The virtual time the filter
//! receives is the NATs' clock. A mapping lives for the timeout after its last outbound
//! datagram (inbound traffic does not refresh it). Each destination's permission lives for
//! the timeout after the last datagram sent to it.
//!
//! Port allocation is deterministic. A port-preserving NAT (the default for the cone
//! presets) gives an inside endpoint its own port when that port is free on the public side.
//! Otherwise ports come from a counter that starts at 40000, skips ports in use and wraps to
//! 1024 after 65535. The symmetric preset does not preserve ports, like Linux `masquerade
//! fully-random`.
//!
//! The simulator records and captures datagrams as they leave the filter: after
//! translation, with the public source and the inside destination (a dropped datagram is
//! recorded as lost, with the addresses it was sent with). Its per-pair links are looked up
//! on the translated addresses.
//!
//! Not modelled: ICMP (a dropped datagram vanishes silently), TCP and its state machine,
//! IPv6 (only IPv4 datagrams are translated; others pass untouched), nested NATs (carrier
//! grade NAT: a NAT's public address may not be another NAT's inside address), port parity
//! and contiguity, ALGs, and more than one timeout (no shorter timeout for mappings
//! that only ever sent one datagram). Hairpinning (an inside host sending to the public
//! address of another inside host of the same NAT) is off by default and can be turned on
//! per box. Every datagram to a public address goes through the mapping table: no endpoint
//! may own addresses on a NAT's public IP.
//!
//! Installing NATs on a simulation, and inspecting them afterwards:
//!
//! ```
//! use hipbone::sim::nat::{NatBox, Nats};
//! use hipbone::sim::Sim;
//! use std::net::Ipv4Addr;
//! use std::time::Instant;
//!
//! let mut nats = Nats::new();
//! let a = nats.add(NatBox::port_restricted_cone(
//!     Ipv4Addr::new(192, 0, 2, 1),
//!     &[Ipv4Addr::new(10, 0, 1, 2)],
//! ));
//! let nats = nats.shared();
//! let mut sim: Sim<hip::Host> = Sim::new(1, Instant::now());
//! sim.set_filter(Nats::filter(&nats));
//! // ... run the simulation, then:
//! nats.borrow_mut().rebind(a);
//! assert_eq!(nats.borrow().nat(a).counters().outbound, 0);
//! ```

use super::{Datagram, Filter, Verdict};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

/// RFC 4787 section 4.1: when a NAT reuses a public port for an inside endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// One public port for all destinations (the "cone" NATs).
    EndpointIndependent,
    /// One public port per destination IP address.
    AddressDependent,
    /// One public port per destination IP address and port ("symmetric").
    AddressAndPortDependent,
}

/// RFC 4787 section 5: which outside sources may send to a mapping's public port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Anyone, while the mapping lives ("full cone").
    EndpointIndependent,
    /// IP addresses the inside endpoint sent to ("restricted cone").
    AddressDependent,
    /// IP address and port pairs the inside endpoint sent to ("port-restricted cone").
    AddressAndPortDependent,
}

/// A mapping's lifetime after its last outbound datagram: the Linux conntrack default for
/// UDP, and below RFC 4787's recommended 5 minutes on purpose, to exercise keepalives.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Mappings a box holds at most; a new one beyond evicts the least recently used.
pub const DEFAULT_MAX_MAPPINGS: usize = 4096;

/// Destinations a mapping remembers for filtering at most; a new one beyond evicts the
/// least recently sent to.
const MAX_PERMITS: usize = 1024;

/// Where the port counter starts, and where it wraps to after 65535.
const FIRST_PORT: u16 = 40000;
const LOWEST_PORT: u16 = 1024;

/// What a box did with the datagrams it saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Outbound datagrams translated (source rewritten).
    pub outbound: u64,
    /// Inbound datagrams admitted and delivered inside.
    pub inbound: u64,
    /// Inbound datagrams to a live mapping from a source the filtering does not admit.
    pub filtered: u64,
    /// Inbound datagrams to a public port without a live mapping: never mapped, expired, or
    /// flushed by a rebind.
    pub unmapped: u64,
    /// Datagrams from an inside host to this box's own public address with hairpinning
    /// off.
    pub hairpin: u64,
    /// Datagrams to one of this box's inside addresses from elsewhere.
    pub unroutable: u64,
    /// Outbound datagrams dropped because no public port was free.
    pub exhausted: u64,
}

/// A mapping's key: the inside endpoint and the destination, masked by the mapping
/// behaviour (the unspecified address and port 0 stand for "any").
type Key = (SocketAddrV4, SocketAddr);

const ANY: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

#[derive(Debug)]
struct Entry {
    key: Key,
    last_out: Duration,
    /// Destinations sent to, masked by the filtering behaviour, with the time of the last
    /// datagram to each. Empty under endpoint-independent filtering.
    permits: HashMap<SocketAddr, Duration>,
}

impl Entry {
    fn alive(&self, now: Duration, timeout: Duration) -> bool {
        now < self.last_out + timeout
    }

    fn permit(&mut self, now: Duration, peer: SocketAddr, timeout: Duration) {
        if !self.permits.contains_key(&peer) && self.permits.len() >= MAX_PERMITS {
            self.permits.retain(|_, at| now < *at + timeout);
            if self.permits.len() >= MAX_PERMITS {
                let oldest = self.permits.iter().min_by_key(|(a, at)| (**at, **a));
                if let Some((&a, _)) = oldest {
                    self.permits.remove(&a);
                }
            }
        }
        self.permits.insert(peer, now);
    }
}

/// One NAT: a public IPv4 address, the inside addresses behind it, its behaviours and its
/// mapping table. Build one with [`NatBox::new`] or a preset, adjust it with the `with_*`
/// methods, and hand it to [`Nats::add`].
#[derive(Debug)]
pub struct NatBox {
    public: Ipv4Addr,
    inside: Vec<Ipv4Addr>,
    mapping: Mapping,
    filtering: Filtering,
    timeout: Duration,
    preserve_ports: bool,
    hairpinning: bool,
    max_mappings: usize,
    by_key: HashMap<Key, u16>,
    by_port: HashMap<u16, Entry>,
    /// Ports flushed by the last rebind, never handed out again until the next one.
    retired: HashSet<u16>,
    next_port: u16,
    /// When expired mappings are next purged (once per timeout of virtual time).
    next_sweep: Duration,
    counters: Counters,
}

impl NatBox {
    /// A NAT with the public address `public` serving `inside`, with the default timeout,
    /// port preservation unless the mapping is address-and-port-dependent, and no
    /// hairpinning.
    pub fn new(
        public: Ipv4Addr,
        inside: &[Ipv4Addr],
        mapping: Mapping,
        filtering: Filtering,
    ) -> NatBox {
        NatBox {
            public,
            inside: inside.to_vec(),
            mapping,
            filtering,
            timeout: DEFAULT_TIMEOUT,
            preserve_ports: mapping != Mapping::AddressAndPortDependent,
            hairpinning: false,
            max_mappings: DEFAULT_MAX_MAPPINGS,
            by_key: HashMap::new(),
            by_port: HashMap::new(),
            retired: HashSet::new(),
            next_port: FIRST_PORT,
            next_sweep: Duration::ZERO,
            counters: Counters::default(),
        }
    }

    /// Endpoint-independent mapping and filtering.
    pub fn full_cone(public: Ipv4Addr, inside: &[Ipv4Addr]) -> NatBox {
        NatBox::new(
            public,
            inside,
            Mapping::EndpointIndependent,
            Filtering::EndpointIndependent,
        )
    }

    /// Endpoint-independent mapping, address-dependent filtering.
    pub fn restricted_cone(public: Ipv4Addr, inside: &[Ipv4Addr]) -> NatBox {
        NatBox::new(
            public,
            inside,
            Mapping::EndpointIndependent,
            Filtering::AddressDependent,
        )
    }

    /// Endpoint-independent mapping, address-and-port-dependent filtering: roughly Linux
    /// `masquerade`.
    pub fn port_restricted_cone(public: Ipv4Addr, inside: &[Ipv4Addr]) -> NatBox {
        NatBox::new(
            public,
            inside,
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        )
    }

    /// Address-and-port-dependent mapping and filtering, ports from the counter: roughly
    /// Linux `masquerade fully-random`.
    pub fn symmetric(public: Ipv4Addr, inside: &[Ipv4Addr]) -> NatBox {
        NatBox::new(
            public,
            inside,
            Mapping::AddressAndPortDependent,
            Filtering::AddressAndPortDependent,
        )
    }

    /// How long a mapping (and each destination's permission) lives after its last
    /// outbound datagram.
    pub fn with_timeout(mut self, timeout: Duration) -> NatBox {
        self.timeout = timeout;
        self
    }

    /// Whether an inside endpoint keeps its own port on the public side when it is free.
    pub fn with_port_preservation(mut self, on: bool) -> NatBox {
        self.preserve_ports = on;
        self
    }

    /// Whether datagrams from inside to this box's own public address are turned around
    /// (with the sender's public address as their source, and filtering applied) instead
    /// of dropped.
    pub fn with_hairpinning(mut self, on: bool) -> NatBox {
        self.hairpinning = on;
        self
    }

    /// The most mappings this box holds (at least 1).
    pub fn with_max_mappings(mut self, max: usize) -> NatBox {
        self.max_mappings = max.max(1);
        self
    }

    pub fn public_ip(&self) -> Ipv4Addr {
        self.public
    }

    pub fn inside(&self) -> &[Ipv4Addr] {
        &self.inside
    }

    pub fn mapping(&self) -> Mapping {
        self.mapping
    }

    pub fn filtering(&self) -> Filtering {
        self.filtering
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Mappings held, expired ones not yet purged included.
    pub fn mappings(&self) -> usize {
        self.by_port.len()
    }

    /// The public address `inside` appears from when it sends to `towards`, if a live
    /// mapping exists at virtual time `now`.
    pub fn mapped(
        &self,
        now: Duration,
        inside: SocketAddr,
        towards: SocketAddr,
    ) -> Option<SocketAddr> {
        let SocketAddr::V4(inside) = inside else {
            return None;
        };
        let port = *self.by_key.get(&(inside, self.mapping_key(towards)))?;
        let entry = self.by_port.get(&port)?;
        entry
            .alive(now, self.timeout)
            .then_some(SocketAddr::from((self.public, port)))
    }

    /// Forgets every mapping, as `conntrack -F` does. The next outbound datagram of each
    /// inside endpoint gets a public port different from the one it had: ports flushed
    /// here are not handed out again until the next rebind, even by a port-preserving NAT
    /// (which then takes a port from the counter). Real NATs that pick random ports behave
    /// alike in all but rare cases; the simulator makes it certain so that tests can rely on
    /// a rebind being visible.
    pub fn rebind(&mut self) {
        self.retired = self.by_port.keys().copied().collect();
        self.by_port.clear();
        self.by_key.clear();
    }

    fn serves(&self, ip: Ipv4Addr) -> bool {
        self.inside.contains(&ip)
    }

    fn mapping_key(&self, towards: SocketAddr) -> SocketAddr {
        match self.mapping {
            Mapping::EndpointIndependent => ANY,
            Mapping::AddressDependent => SocketAddr::new(towards.ip(), 0),
            Mapping::AddressAndPortDependent => towards,
        }
    }

    /// The permission a datagram to or from `peer` needs; `None` when anyone is admitted.
    fn permit_key(&self, peer: SocketAddr) -> Option<SocketAddr> {
        match self.filtering {
            Filtering::EndpointIndependent => None,
            Filtering::AddressDependent => Some(SocketAddr::new(peer.ip(), 0)),
            Filtering::AddressAndPortDependent => Some(peer),
        }
    }

    /// The public port for a datagram from `inside` to `to`, creating or refreshing the
    /// mapping; `None` when no port is free.
    fn outbound(&mut self, now: Duration, inside: SocketAddrV4, to: SocketAddr) -> Option<u16> {
        self.sweep_if_due(now);
        let key = (inside, self.mapping_key(to));
        let live = self.by_key.get(&key).copied().filter(|p| {
            self.by_port
                .get(p)
                .is_some_and(|e| e.alive(now, self.timeout))
        });
        let port = match live {
            Some(port) => port,
            None => {
                if let Some(stale) = self.by_key.get(&key).copied() {
                    self.remove(stale);
                }
                if self.by_port.len() >= self.max_mappings {
                    self.evict(now);
                }
                let Some(port) = self.allocate(now, inside.port()) else {
                    self.counters.exhausted += 1;
                    return None;
                };
                self.by_key.insert(key, port);
                let entry = Entry {
                    key,
                    last_out: now,
                    permits: HashMap::new(),
                };
                self.by_port.insert(port, entry);
                port
            }
        };
        let (timeout, permit) = (self.timeout, self.permit_key(to));
        let entry = self.by_port.get_mut(&port)?;
        entry.last_out = now;
        if let Some(permit) = permit {
            entry.permit(now, permit, timeout);
        }
        self.counters.outbound += 1;
        Some(port)
    }

    /// The inside endpoint for a datagram from `from` to public port `port`, if the
    /// mapping is alive and the filtering admits `from`.
    fn inbound(&mut self, now: Duration, from: SocketAddr, port: u16) -> Option<SocketAddrV4> {
        self.sweep_if_due(now);
        let timeout = self.timeout;
        let permit = self.permit_key(from);
        let Some(entry) = self.by_port.get(&port) else {
            self.counters.unmapped += 1;
            return None;
        };
        if !entry.alive(now, timeout) {
            self.remove(port);
            self.counters.unmapped += 1;
            return None;
        }
        let admitted =
            permit.is_none_or(|p| entry.permits.get(&p).is_some_and(|&at| now < at + timeout));
        if !admitted {
            self.counters.filtered += 1;
            return None;
        }
        let inside = entry.key.0;
        self.counters.inbound += 1;
        Some(inside)
    }

    /// `wanted` if port preservation is on and it is free, else the counter's next free
    /// port.
    fn allocate(&mut self, now: Duration, wanted: u16) -> Option<u16> {
        if self.preserve_ports && self.port_free(now, wanted) {
            return Some(wanted);
        }
        for _ in LOWEST_PORT..=u16::MAX {
            let port = self.next_port;
            self.next_port = port.checked_add(1).unwrap_or(LOWEST_PORT);
            if self.port_free(now, port) {
                return Some(port);
            }
        }
        None
    }

    /// Whether `port` can be handed out; an expired mapping on it is purged.
    fn port_free(&mut self, now: Duration, port: u16) -> bool {
        if port == 0 || self.retired.contains(&port) {
            return false;
        }
        match self.by_port.get(&port) {
            None => true,
            Some(entry) if !entry.alive(now, self.timeout) => {
                self.remove(port);
                true
            }
            Some(_) => false,
        }
    }

    fn remove(&mut self, port: u16) {
        if let Some(entry) = self.by_port.remove(&port) {
            self.by_key.remove(&entry.key);
        }
    }

    /// Makes room for one more mapping: purges the expired ones, then the least recently
    /// used while the table is full.
    fn evict(&mut self, now: Duration) {
        self.sweep(now);
        while self.by_port.len() >= self.max_mappings {
            let oldest = self
                .by_port
                .iter()
                .min_by_key(|(port, e)| (e.last_out, **port))
                .map(|(port, _)| *port);
            match oldest {
                Some(port) => self.remove(port),
                None => break,
            }
        }
    }

    fn sweep_if_due(&mut self, now: Duration) {
        if now >= self.next_sweep {
            self.sweep(now);
            self.next_sweep = now + self.timeout;
        }
    }

    fn sweep(&mut self, now: Duration) {
        let timeout = self.timeout;
        let by_key = &mut self.by_key;
        self.by_port.retain(|_, entry| {
            let alive = entry.alive(now, timeout);
            if !alive {
                by_key.remove(&entry.key);
            }
            alive
        });
    }
}

/// The NAT boxes of one simulation. Share it as `Rc<RefCell<Nats>>` ([`Nats::shared`]) to
/// install it as the simulator's filter and still inspect or rebind the boxes afterwards.
#[derive(Debug, Default)]
pub struct Nats {
    boxes: Vec<NatBox>,
    /// Inside address → box.
    inside: HashMap<Ipv4Addr, usize>,
    /// Public address → box.
    public: HashMap<Ipv4Addr, usize>,
}

impl Nats {
    pub fn new() -> Nats {
        Nats::default()
    }

    /// Adds a box; returns its index.
    ///
    /// # Panics
    ///
    /// If one of its addresses is already a public or inside address of a box (this one
    /// included): addresses are unique and NATs do not nest.
    pub fn add(&mut self, nat: NatBox) -> usize {
        let id = self.boxes.len();
        let taken = |nats: &Nats, ip: &Ipv4Addr| {
            nats.inside.contains_key(ip) || nats.public.contains_key(ip)
        };
        assert!(
            !taken(self, &nat.public) && !nat.serves(nat.public),
            "NAT public address {} already in use",
            nat.public
        );
        self.public.insert(nat.public, id);
        for ip in &nat.inside {
            assert!(!taken(self, ip), "NAT inside address {ip} already in use");
            self.inside.insert(*ip, id);
        }
        self.boxes.push(nat);
        id
    }

    /// Wraps the boxes for [`Nats::filter`] and later inspection.
    pub fn shared(self) -> Rc<RefCell<Nats>> {
        Rc::new(RefCell::new(self))
    }

    /// Box `id`.
    ///
    /// # Panics
    ///
    /// If there is no box `id`.
    pub fn nat(&self, id: usize) -> &NatBox {
        &self.boxes[id]
    }

    /// Box `id`, to change.
    ///
    /// # Panics
    ///
    /// If there is no box `id`.
    pub fn nat_mut(&mut self, id: usize) -> &mut NatBox {
        &mut self.boxes[id]
    }

    /// Flushes the mappings of box `id` ([`NatBox::rebind`]).
    pub fn rebind(&mut self, id: usize) {
        self.boxes[id].rebind();
    }

    /// The public address `inside` (behind box `id`) appears from towards `towards` at
    /// virtual time `now`, if mapped ([`NatBox::mapped`]).
    pub fn mapped(
        &self,
        now: Duration,
        id: usize,
        inside: SocketAddr,
        towards: SocketAddr,
    ) -> Option<SocketAddr> {
        self.boxes[id].mapped(now, inside, towards)
    }

    /// Translates one datagram sent at virtual time `now`: the source by the sender's NAT,
    /// then the destination by the receiver's. `Pass` when no NAT touched it.
    pub fn process(&mut self, now: Duration, d: &Datagram) -> Verdict {
        let Some(from) = self.outbound(now, d.from, d.to) else {
            return Verdict::Drop;
        };
        let Some(to) = self.inbound(now, from, d.to) else {
            return Verdict::Drop;
        };
        if (from, to) == (d.from, d.to) {
            return Verdict::Pass;
        }
        Verdict::Replace(vec![Datagram {
            from,
            to,
            payload: d.payload.clone(),
        }])
    }

    /// The simulator filter that runs every datagram through `nats`.
    pub fn filter(nats: &Rc<RefCell<Nats>>) -> Filter {
        let nats = Rc::clone(nats);
        Box::new(move |now, d| nats.borrow_mut().process(now, d))
    }

    /// Like [`Nats::filter`], with `extra` (loss, blocking, forgery) applied to each
    /// datagram between the two NATs: after the sender's NAT translated the source, before
    /// the receiver's NAT looks at it, so both addresses are the public ones the Internet
    /// sees. What `extra` passes or puts in its place goes on to the receiver's NAT.
    /// `extra` may borrow `nats` itself.
    pub fn filter_with(nats: &Rc<RefCell<Nats>>, mut extra: Filter) -> Filter {
        let nats = Rc::clone(nats);
        Box::new(move |now, d| {
            let Some(from) = nats.borrow_mut().outbound(now, d.from, d.to) else {
                return Verdict::Drop;
            };
            let wire = Datagram {
                from,
                to: d.to,
                payload: d.payload.clone(),
            };
            let wire = match extra(now, &wire) {
                Verdict::Pass => vec![wire],
                Verdict::Drop => return Verdict::Drop,
                Verdict::Replace(v) => v,
            };
            let mut nats = nats.borrow_mut();
            let out: Vec<Datagram> = wire
                .into_iter()
                .filter_map(|mut w| {
                    w.to = nats.inbound(now, w.from, w.to)?;
                    Some(w)
                })
                .collect();
            if out.is_empty() {
                Verdict::Drop
            } else {
                Verdict::Replace(out)
            }
        })
    }

    /// The source after the sender's NAT, or `None` if it dropped the datagram.
    fn outbound(&mut self, now: Duration, from: SocketAddr, to: SocketAddr) -> Option<SocketAddr> {
        let SocketAddr::V4(inside) = from else {
            return Some(from);
        };
        let Some(&id) = self.inside.get(inside.ip()) else {
            return Some(from);
        };
        if self.inside_of(to) == Some(id) {
            return Some(from);
        }
        let nat = &mut self.boxes[id];
        let port = nat.outbound(now, inside, to)?;
        Some(SocketAddr::from((nat.public, port)))
    }

    /// The destination after the receiver's NAT, or `None` if it dropped the datagram.
    fn inbound(&mut self, now: Duration, from: SocketAddr, to: SocketAddr) -> Option<SocketAddr> {
        let SocketAddr::V4(dst) = to else {
            return Some(to);
        };
        if let Some(id) = self.inside_of(to) {
            if self.inside_of(from) == Some(id) {
                return Some(to);
            }
            self.boxes[id].counters.unroutable += 1;
            return None;
        }
        let Some(&id) = self.public.get(dst.ip()) else {
            return Some(to);
        };
        let nat = &mut self.boxes[id];
        if from.ip() == IpAddr::V4(nat.public) && !nat.hairpinning {
            nat.counters.hairpin += 1;
            return None;
        }
        nat.inbound(now, from, dst.port()).map(SocketAddr::V4)
    }

    fn inside_of(&self, addr: SocketAddr) -> Option<usize> {
        match addr {
            SocketAddr::V4(a) => self.inside.get(a.ip()).copied(),
            SocketAddr::V6(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Endpoint, Sim};
    use std::collections::VecDeque;
    use std::time::Instant;

    const A_PUB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B_PUB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
    const A2_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 3);
    const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The datagram `from` → `to` as delivered, or `None` if a NAT dropped it.
    fn send(nats: &mut Nats, now: Duration, from: SocketAddr, to: SocketAddr) -> Option<Datagram> {
        let d = Datagram {
            from,
            to,
            payload: Vec::new(),
        };
        match nats.process(now, &d) {
            Verdict::Pass => Some(d),
            Verdict::Drop => None,
            Verdict::Replace(mut v) => {
                assert_eq!(v.len(), 1);
                v.pop()
            }
        }
    }

    fn one(nat: NatBox) -> Nats {
        let mut nats = Nats::new();
        nats.add(nat);
        nats
    }

    #[test]
    fn mapping_behaviours_pick_ports_per_destination() {
        let host = addr("10.0.1.2:10500");
        let (d1, d2, d3) = (
            addr("198.51.100.1:3478"),
            addr("198.51.100.1:3479"), // same IP, other port
            addr("198.51.100.2:3478"), // other IP
        );
        for (mapping, same_ip, other_ip) in [
            (Mapping::EndpointIndependent, true, true),
            (Mapping::AddressDependent, true, false),
            (Mapping::AddressAndPortDependent, false, false),
        ] {
            let nat = NatBox::new(A_PUB, &[A_IP], mapping, Filtering::AddressAndPortDependent);
            let mut nats = one(nat);
            let p1 = send(&mut nats, secs(1), host, d1).unwrap().from;
            let p2 = send(&mut nats, secs(1), host, d2).unwrap().from;
            let p3 = send(&mut nats, secs(1), host, d3).unwrap().from;
            assert_eq!(p1.ip(), IpAddr::V4(A_PUB));
            assert_eq!(p1 == p2, same_ip, "{mapping:?}");
            assert_eq!(p1 == p3, other_ip, "{mapping:?}");
            // Port-preserving by default except for APDM: the first mapping keeps 10500.
            let first = if mapping == Mapping::AddressAndPortDependent {
                40000
            } else {
                10500
            };
            assert_eq!(p1.port(), first, "{mapping:?}");
            for (d, p) in [(d1, p1), (d2, p2), (d3, p3)] {
                assert_eq!(nats.mapped(secs(1), 0, host, d), Some(p));
            }
            // Sending again reuses the mapping.
            assert_eq!(send(&mut nats, secs(2), host, d3).unwrap().from, p3);
        }
    }

    #[test]
    fn port_preservation_yields_to_a_port_in_use() {
        let mut nats = one(NatBox::port_restricted_cone(A_PUB, &[A_IP, A2_IP]));
        let server = addr("198.51.100.1:3478");
        let a = send(&mut nats, secs(1), addr("10.0.1.2:10500"), server).unwrap();
        let b = send(&mut nats, secs(1), addr("10.0.1.3:10500"), server).unwrap();
        assert_eq!(a.from, addr("192.0.2.1:10500"));
        assert_eq!(b.from, addr("192.0.2.1:40000"));
        // Each reply reaches its own host.
        let to_a = send(&mut nats, secs(1), server, a.from).unwrap();
        let to_b = send(&mut nats, secs(1), server, b.from).unwrap();
        assert_eq!(to_a.to, addr("10.0.1.2:10500"));
        assert_eq!(to_b.to, addr("10.0.1.3:10500"));
    }

    #[test]
    fn filtering_behaviours_admit_what_was_sent_to() {
        let host = addr("10.0.1.2:10500");
        let public = addr("192.0.2.1:10500");
        let sent_to = addr("198.51.100.1:3478");
        let same_ip = addr("198.51.100.1:3479");
        let other_ip = addr("198.51.100.2:3478");
        for (filtering, admitted) in [
            (Filtering::EndpointIndependent, [true, true, true]),
            (Filtering::AddressDependent, [true, true, false]),
            (Filtering::AddressAndPortDependent, [true, false, false]),
        ] {
            let nat = NatBox::new(A_PUB, &[A_IP], Mapping::EndpointIndependent, filtering);
            let mut nats = one(nat);
            let sources = [sent_to, same_ip, other_ip];
            // Before the host sent anything, nobody gets in.
            for src in sources {
                assert!(
                    send(&mut nats, secs(1), src, public).is_none(),
                    "{filtering:?}"
                );
            }
            assert_eq!(nats.nat(0).counters().unmapped, 3);
            send(&mut nats, secs(2), host, sent_to).unwrap();
            for (src, admitted) in sources.into_iter().zip(admitted) {
                let got = send(&mut nats, secs(3), src, public);
                assert_eq!(got.is_some(), admitted, "{filtering:?} from {src}");
                if let Some(d) = got {
                    assert_eq!((d.from, d.to), (src, host));
                }
            }
            // Once the host sent to the other IP, that one gets in too.
            send(&mut nats, secs(4), host, other_ip).unwrap();
            assert!(send(&mut nats, secs(5), other_ip, public).is_some());
            let c = nats.nat(0).counters();
            let refused = admitted.iter().filter(|a| !**a).count() as u64;
            assert_eq!((c.outbound, c.filtered), (2, refused), "{filtering:?}");
        }
    }

    #[test]
    fn mappings_expire_after_the_timeout_unless_refreshed_outbound() {
        let host = addr("10.0.1.2:10500");
        let public = addr("192.0.2.1:10500");
        let server = addr("198.51.100.1:3478");
        let mut nats = one(NatBox::port_restricted_cone(A_PUB, &[A_IP]));
        send(&mut nats, secs(0), host, server).unwrap();
        // Inbound traffic does not refresh the mapping.
        for t in [10, 20, 29] {
            assert!(
                send(&mut nats, secs(t), server, public).is_some(),
                "at {t} s"
            );
        }
        assert!(send(&mut nats, secs(31), server, public).is_none());
        assert_eq!(nats.mapped(secs(31), 0, host, server), None);
        assert_eq!(nats.nat(0).counters().unmapped, 1);

        // Outbound traffic every 25 s keeps it alive; 30 s of silence after the last ends it.
        send(&mut nats, secs(100), host, server).unwrap();
        send(&mut nats, secs(125), host, server).unwrap();
        send(&mut nats, secs(150), host, server).unwrap();
        assert!(send(&mut nats, secs(170), server, public).is_some());
        assert!(send(&mut nats, secs(181), server, public).is_none());

        // Each destination's permission has its own timer: sending to another server keeps
        // the mapping alive but not the first server's permission.
        let other = addr("198.51.100.2:3478");
        send(&mut nats, secs(200), host, server).unwrap();
        send(&mut nats, secs(220), host, other).unwrap();
        assert!(send(&mut nats, secs(240), other, public).is_some());
        assert!(send(&mut nats, secs(240), server, public).is_none());
        assert_eq!(nats.nat(0).counters().filtered, 1);
    }

    #[test]
    fn rebind_gives_a_new_port_each_time() {
        let host = addr("10.0.1.2:10500");
        let server = addr("198.51.100.1:3478");
        for nat in [
            NatBox::port_restricted_cone(A_PUB, &[A_IP]),
            NatBox::symmetric(A_PUB, &[A_IP]),
        ] {
            let mut nats = one(nat);
            let mut seen = vec![send(&mut nats, secs(1), host, server).unwrap().from];
            for t in 2..5 {
                nats.rebind(0);
                let old = *seen.last().unwrap();
                // The old mapping is gone: replies to it are dropped.
                assert!(send(&mut nats, secs(t), server, old).is_none());
                let new = send(&mut nats, secs(t), host, server).unwrap().from;
                assert_ne!(new, old);
                assert!(send(&mut nats, secs(t), server, new).is_some());
                seen.push(new);
            }
            assert_eq!(nats.nat(0).counters().unmapped, 3);
        }
    }

    #[test]
    fn inside_traffic_and_private_destinations() {
        let (a, a2) = (addr("10.0.1.2:10500"), addr("10.0.1.3:10500"));
        let mut nats = Nats::new();
        nats.add(NatBox::full_cone(A_PUB, &[A_IP, A2_IP]));
        nats.add(NatBox::full_cone(B_PUB, &[B_IP]));
        // Between inside hosts of the same NAT: untouched.
        let d = Datagram {
            from: a,
            to: a2,
            payload: vec![1],
        };
        assert_eq!(nats.process(secs(1), &d), Verdict::Pass);
        // Private addresses are not reachable from outside, nor from behind another NAT.
        let server = addr("198.51.100.1:3478");
        assert!(send(&mut nats, secs(1), server, a).is_none());
        assert!(send(&mut nats, secs(1), addr("10.0.2.2:10500"), a).is_none());
        assert_eq!(nats.nat(0).counters().unroutable, 2);
        assert_eq!(nats.nat(1).counters().outbound, 1);
    }

    #[test]
    fn hairpinning_when_turned_on() {
        let (a, a2) = (addr("10.0.1.2:10500"), addr("10.0.1.3:10500"));
        let server = addr("198.51.100.1:3478");
        for hairpinning in [false, true] {
            let nat = NatBox::full_cone(A_PUB, &[A_IP, A2_IP]).with_hairpinning(hairpinning);
            let mut nats = one(nat);
            let a2_pub = send(&mut nats, secs(1), a2, server).unwrap().from;
            // A sends to A2's public address.
            let got = send(&mut nats, secs(2), a, a2_pub);
            assert_eq!(got.is_some(), hairpinning);
            assert_eq!(nats.nat(0).counters().hairpin, u64::from(!hairpinning));
            if let Some(d) = got {
                // It arrives from A's public address.
                assert_eq!(d.to, a2);
                assert_eq!(Some(d.from), nats.mapped(secs(2), 0, a, a2_pub));
                assert_eq!(d.from.ip(), IpAddr::V4(A_PUB));
            }
        }
    }

    #[test]
    fn the_mapping_table_is_bounded() {
        let host = addr("10.0.1.2:10500");
        let mut nats = one(NatBox::symmetric(A_PUB, &[A_IP]).with_max_mappings(2));
        let servers = [
            addr("198.51.100.1:1"),
            addr("198.51.100.1:2"),
            addr("198.51.100.1:3"),
        ];
        let ports: Vec<SocketAddr> = servers
            .iter()
            .enumerate()
            .map(|(t, s)| send(&mut nats, secs(t as u64), host, *s).unwrap().from)
            .collect();
        assert_eq!(nats.nat(0).mappings(), 2);
        // The least recently used mapping made room for the third.
        assert_eq!(nats.mapped(secs(3), 0, host, servers[0]), None);
        assert!(send(&mut nats, secs(3), servers[0], ports[0]).is_none());
        assert!(send(&mut nats, secs(3), servers[1], ports[1]).is_some());
        assert!(send(&mut nats, secs(3), servers[2], ports[2]).is_some());
    }

    #[test]
    fn an_extra_filter_sees_public_addresses() {
        let mut n = Nats::new();
        n.add(NatBox::full_cone(A_PUB, &[A_IP]));
        n.add(NatBox::full_cone(B_PUB, &[B_IP]));
        let nats = n.shared();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let (log, probe) = (Rc::clone(&seen), Rc::clone(&nats));
        let mut filter = Nats::filter_with(
            &nats,
            Box::new(move |_, d: &Datagram| {
                // The NATs are not borrowed while the extra filter runs.
                assert!(probe.borrow().nat(0).counters().inbound == 0);
                log.borrow_mut().push((d.from, d.to));
                // Block what comes from B's NAT.
                if d.from.ip() == IpAddr::V4(B_PUB) {
                    Verdict::Drop
                } else {
                    Verdict::Pass
                }
            }),
        );
        let (a, b) = (addr("10.0.1.2:10500"), addr("10.0.2.2:10500"));
        let (a_pub, b_pub) = (addr("192.0.2.1:10500"), addr("192.0.2.2:10500"));
        let dg = |from, to| Datagram {
            from,
            to,
            payload: Vec::new(),
        };
        assert_eq!(filter(secs(1), &dg(b, a_pub)), Verdict::Drop);
        assert_eq!(
            filter(secs(1), &dg(a, b_pub)),
            Verdict::Replace(vec![dg(a_pub, b)])
        );
        assert_eq!(*seen.borrow(), [(b_pub, a_pub), (a_pub, b_pub)]);
        assert_eq!(nats.borrow().nat(1).counters().inbound, 1);
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        FullCone,
        Restricted,
        PortRestricted,
        Symmetric,
    }

    impl Kind {
        fn nat(self, public: Ipv4Addr, inside: Ipv4Addr) -> NatBox {
            let f = match self {
                Kind::FullCone => NatBox::full_cone,
                Kind::Restricted => NatBox::restricted_cone,
                Kind::PortRestricted => NatBox::port_restricted_cone,
                Kind::Symmetric => NatBox::symmetric,
            };
            f(public, &[inside])
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Outcome {
        /// Each side reached the other at its server-reflexive address.
        Direct,
        /// A path was found, but from an address the server never saw (peer-reflexive).
        Prflx,
        /// No direct path: a relay is needed.
        Relay,
    }

    /// A hole-punching exchange between A behind `a` and B behind `b`: each learns its
    /// public address from a server, then both send to each other's server-observed
    /// address twice, interleaved (checks are retransmitted), `b_first` deciding who
    /// starts. The first datagram that gets through is answered to the source seen, and
    /// the answer must come back from the address the first one was sent to (ICE's
    /// symmetric check).
    fn punch(a: Kind, b: Kind, b_first: bool) -> Outcome {
        let mut nats = Nats::new();
        nats.add(a.nat(A_PUB, A_IP));
        nats.add(b.nat(B_PUB, B_IP));
        let (a, b) = (addr("10.0.1.2:10500"), addr("10.0.2.2:10500"));
        let server = addr("198.51.100.1:3478");
        let t = secs(1);
        let a_srflx = send(&mut nats, t, a, server).unwrap().from;
        let b_srflx = send(&mut nats, t, b, server).unwrap().from;
        let mut tries = [(a, b_srflx, a_srflx), (b, a_srflx, b_srflx)];
        if b_first {
            tries.reverse();
        }
        let first =
            tries.iter().cycle().take(4).find_map(|&(from, to, srflx)| {
                send(&mut nats, t, from, to).map(|d| (d, to, srflx))
            });
        let Some((got, sent_to, sender_srflx)) = first else {
            return Outcome::Relay;
        };
        match send(&mut nats, t, got.to, got.from) {
            Some(answer) if answer.from == sent_to => {
                if got.from == sender_srflx {
                    Outcome::Direct
                } else {
                    Outcome::Prflx
                }
            }
            _ => Outcome::Relay,
        }
    }

    /// docs/NAT.md section 8, "Expected direct-path outcomes".
    #[test]
    fn hole_punching_matrix() {
        use Kind::*;
        use Outcome::*;
        let kinds = [FullCone, Restricted, PortRestricted, Symmetric];
        let expected = [
            [Direct, Direct, Direct, Prflx],
            [Direct, Direct, Direct, Prflx],
            [Direct, Direct, Direct, Relay],
            [Prflx, Prflx, Relay, Relay],
        ];
        for (a, row) in kinds.into_iter().zip(expected) {
            for (b, want) in kinds.into_iter().zip(row) {
                for b_first in [false, true] {
                    assert_eq!(
                        punch(a, b, b_first),
                        want,
                        "{a:?} vs {b:?}, B first: {b_first}"
                    );
                }
            }
        }
    }

    /// Port-restricted on both sides: nothing gets in until both have sent.
    #[test]
    fn port_restricted_pair_needs_both_to_send() {
        let mut nats = Nats::new();
        nats.add(NatBox::port_restricted_cone(A_PUB, &[A_IP]));
        nats.add(NatBox::port_restricted_cone(B_PUB, &[B_IP]));
        let (a, b) = (addr("10.0.1.2:10500"), addr("10.0.2.2:10500"));
        let (a_pub, b_pub) = (addr("192.0.2.1:10500"), addr("192.0.2.2:10500"));
        let server = addr("198.51.100.1:3478");
        send(&mut nats, secs(1), a, server).unwrap();
        send(&mut nats, secs(1), b, server).unwrap();
        // A's first datagram opens A's side but is dropped at B's NAT.
        assert!(send(&mut nats, secs(2), a, b_pub).is_none());
        assert_eq!(nats.nat(1).counters().filtered, 1);
        // B's gets through, and from then on both directions work.
        let d = send(&mut nats, secs(2), b, a_pub).unwrap();
        assert_eq!((d.from, d.to), (b_pub, a));
        let d = send(&mut nats, secs(3), a, b_pub).unwrap();
        assert_eq!((d.from, d.to), (a_pub, b));
    }

    /// Sends its queue, records what arrives, and echoes it back if `echo`.
    #[derive(Debug, Default)]
    struct Echo {
        echo: bool,
        queue: VecDeque<hip::Transmit>,
        seen: Vec<(SocketAddr, SocketAddr)>,
    }

    impl Echo {
        fn send(&mut self, local: SocketAddr, remote: SocketAddr) {
            self.queue.push_back(hip::Transmit {
                local,
                remote,
                payload: b"ping".to_vec(),
            });
        }
    }

    impl Endpoint for Echo {
        fn handle_datagram(
            &mut self,
            _now: Instant,
            local: SocketAddr,
            remote: SocketAddr,
            payload: &[u8],
        ) {
            self.seen.push((local, remote));
            if self.echo {
                self.queue.push_back(hip::Transmit {
                    local,
                    remote,
                    payload: payload.to_vec(),
                });
            }
        }
        fn handle_timeout(&mut self, _now: Instant) {}
        fn poll_transmit(&mut self) -> Option<hip::Transmit> {
            self.queue.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }

    #[test]
    fn in_a_simulation() {
        let host = addr("10.0.1.2:10500");
        let server = addr("198.51.100.1:3478");
        let stranger = addr("198.51.100.9:3478");
        let mut nats = Nats::new();
        let nat = nats.add(NatBox::port_restricted_cone(A_PUB, &[A_IP]));
        let nats = nats.shared();
        let mut sim: Sim<Echo> = Sim::new(1, Instant::now());
        sim.set_filter(Nats::filter(&nats));
        let h = sim.add(Echo::default(), &[host]);
        let s = sim.add(
            Echo {
                echo: true,
                ..Echo::default()
            },
            &[server],
        );
        let x = sim.add(Echo::default(), &[stranger]);
        let run = |sim: &mut Sim<Echo>| {
            let deadline = sim.now() + secs(1);
            while sim.step(deadline) {}
        };

        sim.node_mut(h).send(host, server);
        run(&mut sim);
        let public = addr("192.0.2.1:10500");
        assert_eq!(sim.node(s).seen, [(server, public)]);
        assert_eq!(sim.node(h).seen, [(host, server)]);
        // The trace shows the wire after translation.
        assert!(sim.trace().iter().all(|r| !r.lost));
        assert_eq!(sim.trace()[0].datagram.from, public);

        // A stranger's datagram to the mapping is dropped.
        sim.node_mut(x).send(stranger, public);
        run(&mut sim);
        assert!(sim.node(h).seen.len() == 1 && sim.trace().last().unwrap().lost);
        assert_eq!(nats.borrow().nat(nat).counters().filtered, 1);

        // After a rebind the server sees a new port.
        nats.borrow_mut().rebind(nat);
        sim.node_mut(h).send(host, server);
        run(&mut sim);
        let moved = sim.node(s).seen[1].1;
        assert_ne!(moved, public);
        assert_eq!(
            nats.borrow().mapped(sim.elapsed(), nat, host, server),
            Some(moved)
        );
        assert_eq!(sim.node(h).seen.len(), 2);
    }
}
