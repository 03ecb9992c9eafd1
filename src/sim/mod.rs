//! The deterministic simulator: a virtual clock, virtual links and many sans-IO endpoints in
//! one process. Time jumps straight to the next timer or delivery, and every random choice
//! (delay jitter, loss, duplication, reordering) comes from one seeded generator, so a run is
//! a pure function of its seed. Protocol tests, scale studies and `hipbone sim` share it.
//!
//! Endpoints are addressed by UDP socket addresses; a datagram sent from `a` to `b` is
//! delivered to whichever endpoint owns `b` after the link's delay, or lost. Every datagram
//! put on the wire can be written to a pcap file ([`pcap`]) and is recorded in a bounded
//! trace for timelines. NAT boxes ([`nat`]) sit in the filter that sees every datagram
//! sent.

pub mod bex;
pub mod nat;
pub mod nodes;
pub mod overlay;
pub mod queue;
pub use crate::pcap;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What the simulator needs of an endpoint: the sans-IO calls of `hip::Host`.
pub trait Endpoint {
    fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    );
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self) -> Option<hip::Transmit>;
    fn poll_timeout(&self) -> Option<Instant>;
    /// Panics if the endpoint's own bookkeeping disagrees with itself (checked after every
    /// step).
    fn check(&self) {}
}

impl Endpoint for hip::Host {
    /// HIP control packets and ESP alike; delivered inner payloads are only counted (in
    /// the host's traffic counters): the simulator has no TUN behind the host.
    fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    ) {
        let mut buf = payload.to_vec();
        if let hip::Inbound::Forward { to } =
            hip::Host::decapsulate(self, now, local, remote, &mut buf)
        {
            self.queue_forward(local, to, payload);
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        hip::Host::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self) -> Option<hip::Transmit> {
        hip::Host::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        hip::Host::poll_timeout(self)
    }
    fn check(&self) {
        assert!(
            self.timers_agree(),
            "the timer queue disagrees with the associations"
        );
    }
}

/// How a link treats each datagram. Probabilities are in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from 0..jitter (jitter larger than the spacing of
    /// packets reorders them).
    pub jitter: Duration,
    pub loss: f64,
    pub duplicate: f64,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// A datagram on the virtual wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

/// What a [`Filter`] decides for a datagram about to enter a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    /// Send these instead (altered, duplicated, replayed later by the test, ...).
    Replace(Vec<Datagram>),
}

/// A test's hook on every datagram sent: sees it before the link does.
pub type Filter = Box<dyn FnMut(Duration, &Datagram) -> Verdict>;

/// One line of the trace: a datagram sent at `at` (virtual time since the start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub at: Duration,
    pub datagram: Datagram,
    pub lost: bool,
}

/// Records kept at most; older ones are discarded (the trace is for timelines and tests).
const TRACE_LIMIT: usize = 100_000;

/// The simulated network. `E` is the endpoint type (one type per simulation).
pub struct Sim<E: Endpoint> {
    start: Instant,
    now: Instant,
    rng: ChaCha20Rng,
    nodes: Vec<E>,
    /// The endpoints' deadlines, earliest first; an entry whose instant is no longer the
    /// endpoint's deadline (`deadlines`) is stale and skipped.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    deadlines: Vec<Option<Instant>>,
    /// Endpoints handed out by `node_mut` since the last step: their deadline is asked again.
    touched: Vec<usize>,
    owners: HashMap<SocketAddr, usize>,
    /// Endpoints that crashed ([`Sim::crash`]).
    crashed: std::collections::HashSet<usize>,
    default_link: Link,
    links: HashMap<(SocketAddr, SocketAddr), Link>,
    in_flight: queue::Queue<Datagram>,
    filter: Option<Filter>,
    trace: Vec<Record>,
    pcap: Option<pcap::Writer>,
}

impl<E: Endpoint> Sim<E> {
    /// An empty network whose random choices all come from `seed`. `start` is the
    /// instant that stands for virtual time zero.
    pub fn new(seed: u64, start: Instant) -> Sim<E> {
        Sim {
            start,
            now: start,
            rng: ChaCha20Rng::seed_from_u64(seed),
            nodes: Vec::new(),
            timers: BinaryHeap::new(),
            deadlines: Vec::new(),
            touched: Vec::new(),
            owners: HashMap::new(),
            crashed: std::collections::HashSet::new(),
            default_link: Link::default(),
            links: HashMap::new(),
            in_flight: queue::Queue::default(),
            filter: None,
            trace: Vec::new(),
            pcap: None,
        }
    }

    /// Adds an endpoint that owns `addrs`; returns its index.
    pub fn add(&mut self, endpoint: E, addrs: &[SocketAddr]) -> usize {
        let id = self.nodes.len();
        self.nodes.push(endpoint);
        self.deadlines.push(None);
        self.touched.push(id);
        for a in addrs {
            self.owners.insert(*a, id);
        }
        id
    }

    /// Gives endpoint `id` another address (a host that moves or gains an interface).
    pub fn assign(&mut self, id: usize, addr: SocketAddr) {
        self.owners.insert(addr, id);
    }

    /// Takes an address away: datagrams to it are lost from now on.
    pub fn unassign(&mut self, addr: SocketAddr) {
        self.owners.remove(&addr);
    }

    /// Endpoint `id` dies at once, as a crashed host: it sends nothing more, its timers
    /// never fire, and datagrams to its addresses are lost.
    pub fn crash(&mut self, id: usize) {
        self.owners.retain(|_, owner| *owner != id);
        self.deadlines[id] = None;
        self.crashed.insert(id);
    }

    /// The link used between any two addresses without a link of their own.
    pub fn set_default_link(&mut self, link: Link) {
        self.default_link = link;
    }

    /// The link for datagrams from `from` to `to` (one direction).
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, link: Link) {
        self.links.insert((from, to), link);
    }

    pub fn set_filter(&mut self, filter: Filter) {
        self.filter = Some(filter);
    }

    pub fn clear_filter(&mut self) {
        self.filter = None;
    }

    /// Writes every datagram sent from now on (lost ones included) to `writer`.
    pub fn capture(&mut self, writer: pcap::Writer) {
        self.pcap = Some(writer);
    }

    pub fn take_capture(&mut self) -> Option<pcap::Writer> {
        self.pcap.take()
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// What node `id` logs while it runs carries its index and the virtual time.
    pub(crate) fn span(&self, id: usize) -> tracing::Span {
        tracing::debug_span!("sim", node = id, ms = self.elapsed().as_millis() as u64)
    }

    pub fn node(&self, id: usize) -> &E {
        &self.nodes[id]
    }

    /// The endpoint, to call directly (its deadline is asked again at the next step).
    pub fn node_mut(&mut self, id: usize) -> &mut E {
        self.touched.push(id);
        &mut self.nodes[id]
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Asks endpoint `id` for its deadline and queues it if it changed.
    fn reschedule(&mut self, id: usize) {
        let t = self.nodes[id].poll_timeout();
        if t != self.deadlines[id] {
            self.deadlines[id] = t;
            if let Some(t) = t {
                self.timers.push(Reverse((t, id)));
            }
        }
    }

    /// The earliest deadline of any endpoint (stale queue entries dropped on the way).
    fn next_timer(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if self.deadlines[id] == Some(t) {
                return Some(t);
            }
            self.timers.pop();
        }
        None
    }

    pub fn trace(&self) -> &[Record] {
        &self.trace
    }

    /// Collects what the endpoints touched since the last step want to send, puts it on
    /// the links, and asks them for their deadlines.
    pub fn flush(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &id in &touched {
            self.flush_node(id);
        }
        self.touched = touched;
        self.touched.clear();
    }

    fn flush_node(&mut self, id: usize) {
        if self.crashed.contains(&id) {
            while self.nodes[id].poll_transmit().is_some() {}
            return;
        }
        while let Some(t) = self.nodes[id].poll_transmit() {
            let d = Datagram {
                from: t.local,
                to: t.remote,
                payload: t.payload,
            };
            self.send(d);
        }
        self.reschedule(id);
    }

    /// Injects a datagram as if a node had sent it (for replays and forgeries).
    pub fn inject(&mut self, datagram: Datagram) {
        let link = self.link(&datagram);
        self.enqueue(datagram, link.delay);
    }

    fn link(&self, d: &Datagram) -> Link {
        self.links
            .get(&(d.from, d.to))
            .copied()
            .unwrap_or(self.default_link)
    }

    /// Puts a datagram on its link, as if a node had sent it: filter, loss, duplication
    /// and delay apply.
    pub fn send(&mut self, d: Datagram) {
        let elapsed = self.elapsed();
        let out = match self.filter.as_mut().map(|f| f(elapsed, &d)) {
            None | Some(Verdict::Pass) => vec![d],
            Some(Verdict::Drop) => {
                self.record(d, true);
                return;
            }
            Some(Verdict::Replace(v)) => v,
        };
        for d in out {
            let link = self.link(&d);
            let lost = self.chance(link.loss);
            self.record(d.clone(), lost);
            if lost {
                continue;
            }
            let copies = if self.chance(link.duplicate) { 2 } else { 1 };
            for _ in 0..copies {
                let jitter = if link.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_nanos(self.rng.next_u64() % link.jitter.as_nanos() as u64)
                };
                self.enqueue(d.clone(), link.delay + jitter);
            }
        }
    }

    fn enqueue(&mut self, datagram: Datagram, delay: Duration) {
        self.in_flight.push(self.now + delay, datagram);
    }

    fn record(&mut self, datagram: Datagram, lost: bool) {
        if let Some(w) = &mut self.pcap {
            w.write(
                self.now - self.start,
                datagram.from,
                datagram.to,
                &datagram.payload,
            );
        }
        if self.trace.len() == TRACE_LIMIT {
            self.trace.drain(..TRACE_LIMIT / 2);
        }
        self.trace.push(Record {
            at: self.now - self.start,
            datagram,
            lost,
        });
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    /// Advances to the next delivery or timer and processes everything due then.
    /// Returns false when nothing is left to happen before `deadline`.
    pub fn step(&mut self, deadline: Instant) -> bool {
        self.flush();
        let next_delivery = self.in_flight.next_at();
        let next_timer = self.next_timer();
        let next = match (next_delivery, next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return false,
            },
        };
        if next > deadline {
            self.now = deadline;
            return false;
        }
        self.now = self.now.max(next);
        let mut handled = Vec::new();
        while let Some((_, dg)) = self.in_flight.pop_until(self.now) {
            if let Some(&id) = self.owners.get(&dg.to) {
                let _node = self.span(id).entered();
                self.nodes[id].handle_datagram(self.now, dg.to, dg.from, &dg.payload);
                handled.push(id);
            }
        }
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if t > self.now {
                break;
            }
            self.timers.pop();
            if self.deadlines[id] != Some(t) {
                continue;
            }
            self.deadlines[id] = None;
            let _node = self.span(id).entered();
            let n = &mut self.nodes[id];
            n.handle_timeout(self.now);
            assert_deadline_moved(id, self.now, n.poll_timeout());
            handled.push(id);
        }
        handled.sort_unstable();
        handled.dedup();
        for id in handled {
            let _node = self.span(id).entered();
            self.nodes[id].check();
            self.flush_node(id);
        }
        self.flush();
        true
    }

    /// Runs until `done` holds (checked after every step) or virtual time reaches
    /// `deadline`. Returns whether `done` held.
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if !self.step(deadline) {
                return done(self);
            }
        }
    }
}

/// The invariant every sans-IO core keeps: once `handle_timeout(now)` ran, the next
/// deadline is later than `now` or there is none. A deadline left in the past makes a
/// driver wake up for it again at once, forever (a daemon spinning on a core).
pub fn assert_deadline_moved(node: impl std::fmt::Debug, now: Instant, next: Option<Instant>) {
    if let Some(t) = next {
        assert!(
            t > now,
            "node {node:?}: handle_timeout left a deadline {:?} in the past",
            now - t
        );
    }
}

impl<E: Endpoint> core::fmt::Debug for Sim<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sim")
            .field("elapsed", &self.elapsed())
            .field("nodes", &self.nodes.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}
