//! `hipbone sim overlay`: a ring of `overlay::Node`s on virtual links — scale, churn and
//! lookup studies.
//!
//! Overlay nodes without HIP below them: a link joins two Node-IDs and carries RELOAD
//! messages with a delay, instead of TCP inside ESP between socket addresses. Whole nodes
//! ([`super::nodes`]: HIP, ESP, the userspace TCP stack) cost about 2.4 MB and 44 µs of
//! wall time per node and virtual second at 1,000 nodes; ring studies at 10,000 nodes and
//! an hour of churn need the overlay alone. The clock and the event queue are the
//! simulator's own ([`super::queue`]): every future happening — a message delivery, a link
//! coming up or going down, a node's timer — is one entry; a node's timer is (re)scheduled
//! only when its `poll_timeout` changes, and stale timer entries are skipped when popped.
//! Runs are a pure function of the seed.
//!
//! Links: a link between two nodes has a fixed one-way delay drawn per pair from
//! `delay_min..delay_max` (a stand-in for the spread of Internet paths). `Event::Connect`
//! is answered after two round trips (a HIP base exchange) with `link_up` on both sides,
//! or, if the peer is gone, with `link_down` after `detect`. When a node dies abruptly,
//! messages to it are lost and its link peers get `link_down` after `detect` (HIP/ESP
//! keepalives noticing the silence).

use overlay::node::{Config, Event, Node};
use overlay::storage::{kind::HIT_LOCATOR, signed_store};
use overlay::wire::{
    DataValue, FetchReq, MessageCode, NodeId, Packet, ResourceId, Selector, StoredDataSpecifier,
    StoredDataValue,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Arguments of `hipbone sim overlay`.
#[derive(Debug, Clone, clap::Args)]
pub struct OverlayArgs {
    /// Nodes in the ring.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Median session length (e.g. 30m): nodes leave abruptly after exponentially
    /// distributed sessions and new ones join in their place. No churn if absent.
    #[arg(long, value_parser = parse_duration)]
    pub churn: Option<Duration>,
    /// Virtual time to simulate (e.g. 1h, 600s).
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub duration: Duration,
    /// Seed of every random choice in the run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Messages lost per hop, in percent (a hop whose message never arrives: the
    /// originator's retransmission, 3 s later, is what recovers it).
    #[arg(long, default_value_t = 0.0, value_parser = parse_percent)]
    pub loss: f64,
    /// Hostile nodes, in percent of the ring, chosen once the records are stored as the
    /// predecessors of the owners of random records (so that they sit on the last hop to
    /// them): they take part in the ring but swallow every message they should pass on.
    #[arg(long, default_value_t = 0.0, value_parser = parse_percent)]
    pub hostile: f64,
    /// Look records up as the directory does (`Node::lookup`: the owner and the peer
    /// after it, the newest value kept, answers cached) instead of one Fetch.
    #[arg(long)]
    pub directory: bool,
    /// Hostile nodes also answer each Fetch they swallow, in the owner's place: "no such
    /// record", signed with their own key.
    #[arg(long)]
    pub forge: bool,
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a percentage from 0 to 100")),
    }
}

/// `90`, `90s`, `15m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("bad duration unit in {s:?} (s, m, h)")),
    };
    Ok(Duration::from_secs(secs))
}

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct Params {
    pub nodes: usize,
    pub churn: Option<Duration>,
    pub duration: Duration,
    pub seed: u64,
    /// Spacing of the initial joins.
    pub join_spacing: Duration,
    /// Records stored (one HIT-LOCATOR each, by distinct nodes) after the ring formed.
    pub records: usize,
    /// Lookups (Fetches of stored records) per second of virtual time.
    pub lookup_rate: f64,
    pub delay_min: Duration,
    pub delay_max: Duration,
    /// Link failure detection (and failed connection attempt) delay.
    pub detect: Duration,
    /// Probability that a message is lost on a hop.
    pub loss: f64,
    /// Share of the nodes made hostile once the records are stored (see `OverlayArgs`).
    pub hostile: f64,
    /// Lookups by `Node::lookup` rather than `Node::fetch`.
    pub directory: bool,
    /// Hostile nodes also answer the Fetches they swallow: "no such record", signed by
    /// themselves.
    pub forge: bool,
    pub config: Config,
}

impl Params {
    pub fn new(nodes: usize, duration: Duration, seed: u64) -> Params {
        Params {
            nodes,
            churn: None,
            duration,
            seed,
            join_spacing: Duration::from_millis(30),
            records: nodes.min(2000),
            lookup_rate: 20.0,
            delay_min: Duration::from_millis(10),
            delay_max: Duration::from_millis(60),
            detect: Duration::from_secs(5),
            loss: 0.0,
            hostile: 0.0,
            directory: false,
            forge: false,
            config: Config::default(),
        }
    }
}

#[derive(Debug)]
enum Happening {
    Deliver {
        to: u32,
        from: NodeId,
        bytes: Vec<u8>,
    },
    LinkUp {
        a: u32,
        b: u32,
    },
    LinkDown {
        at: u32,
        peer: NodeId,
    },
    Timer {
        idx: u32,
    },
}

struct Slot {
    node: Node,
    secret: [u8; 32],
    alive: bool,
    timer: Option<Instant>,
}

/// Bytes put on links, by what they are for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Topology (Update, Join, Leave, Ping, RouteQuery, Probe), replication Stores and
    /// errors.
    pub maintenance: u64,
    /// Application Store / Fetch / Find and their answers.
    pub application: u64,
    pub messages: u64,
    /// Messages dropped on a hop (`Params::loss`).
    pub lost: u64,
    /// Messages a hostile node swallowed instead of passing them on.
    pub swallowed: u64,
    /// Answers a hostile node forged in the owner's place (`Params::forge`).
    pub forged: u64,
    /// `maintenance` by what it is for, indexed like [`MAINTENANCE_KINDS`]: bytes and
    /// messages put on links.
    pub maintenance_by: [u64; MAINTENANCE_KINDS.len()],
    pub maintenance_messages_by: [u64; MAINTENANCE_KINDS.len()],
}

/// What maintenance bytes are for, as the report names them.
pub const MAINTENANCE_KINDS: [&str; 6] = [
    "Update",
    "Join/Leave",
    "Ping (fingers, liveness)",
    "copies (replicas, hand-overs) and their answers",
    "Attach/RouteQuery/Probe",
    "errors and other",
];

/// The simulated overlay.
pub struct OverlaySim {
    start: Instant,
    now: Instant,
    rng: ChaCha20Rng,
    slots: Vec<Slot>,
    index: HashMap<NodeId, u32>,
    heap: super::queue::Queue<Happening>,
    links: HashSet<(u32, u32)>,
    /// Nodes that pass nothing on (`make_hostile`).
    hostile: HashSet<u32>,
    params: Params,
    /// Events nodes reported that the driver has not taken yet.
    pub events: Vec<(u32, Event)>,
    pub traffic: Traffic,
    /// Copies on the links, to tell their answers from an application Store's.
    copy_transactions: HashSet<u64>,
}

impl core::fmt::Debug for OverlaySim {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OverlaySim")
            .field("elapsed", &(self.now - self.start))
            .field("nodes", &self.slots.len())
            .field("queued", &self.heap.len())
            .finish_non_exhaustive()
    }
}

fn key(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

impl OverlaySim {
    pub fn new(params: Params) -> OverlaySim {
        let start = Instant::now();
        OverlaySim {
            start,
            now: start,
            rng: ChaCha20Rng::seed_from_u64(params.seed),
            slots: Vec::new(),
            index: HashMap::new(),
            heap: super::queue::Queue::default(),
            links: HashSet::new(),
            hostile: HashSet::new(),
            params,
            events: Vec::new(),
            traffic: Traffic::default(),
            copy_transactions: HashSet::new(),
        }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn node(&self, idx: u32) -> &Node {
        &self.slots[idx as usize].node
    }

    pub fn alive(&self, idx: u32) -> bool {
        self.slots[idx as usize].alive
    }

    /// Indices of the live nodes.
    pub fn live(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.slots.len() as u32).filter(|&i| self.slots[i as usize].alive)
    }

    /// The identity secret of node `idx` (to sign values it stores).
    pub fn identity(&self, idx: u32) -> hip::HostIdentity {
        hip::HostIdentity::from_secret(self.slots[idx as usize].secret)
    }

    fn push(&mut self, at: Instant, what: Happening) {
        self.heap.push(at, what);
    }

    /// One-way delay of the link between `a` and `b` (fixed per pair).
    fn delay(&self, a: u32, b: u32) -> Duration {
        let (x, y) = key(a, b);
        let h = (u64::from(x) << 32 | u64::from(y)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        let span = (self.params.delay_max - self.params.delay_min).as_micros() as u64;
        self.params.delay_min + Duration::from_micros(if span == 0 { 0 } else { h % span })
    }

    /// Adds a node (a client if `config.client`); returns its index.
    pub fn add_node(&mut self, config: Config) -> u32 {
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let mut config = config;
        self.rng.fill_bytes(&mut config.seed);
        let node = Node::new(hip::HostIdentity::from_secret(secret), config, self.now);
        let idx = self.slots.len() as u32;
        tracing::debug!(target: "hipbone::sim::records", idx, id = ?node.id(), "node");
        self.index.insert(node.id(), idx);
        self.slots.push(Slot {
            node,
            secret,
            alive: true,
            timer: None,
        });
        idx
    }

    /// Node `idx` joins through `bootstrap` (the link is set up at once), or is the first
    /// node if `bootstrap` is `None`.
    pub fn join(&mut self, idx: u32, bootstrap: Option<u32>) {
        let now = self.now;
        match bootstrap {
            Some(b) => {
                self.links.insert(key(idx, b));
                let (bid, id) = (self.node(b).id(), self.node(idx).id());
                self.slots[b as usize].node.link_up(now, id);
                self.slots[idx as usize].node.link_up(now, bid);
                self.slots[idx as usize].node.join(now, &[bid]);
                self.drain(b);
            }
            None => self.slots[idx as usize].node.join(now, &[]),
        }
        self.drain(idx);
    }

    /// Logs how many live nodes still hold each record that `idx` holds, as if `idx` were
    /// gone: how records come to be lost under churn.
    fn log_copies_left(&self, idx: u32) {
        for r in self.node(idx).stored_resources() {
            let holders: Vec<u32> = self
                .live()
                .filter(|&i| i != idx && self.node(i).stored_resources().any(|x| x == r))
                .collect();
            tracing::debug!(
                target: "hipbone::sim::records",
                ms = (self.now - self.start).as_millis() as u64,
                resource = ?r,
                dying = idx,
                left = holders.len(),
                ?holders,
                "a holder dies"
            );
        }
    }

    /// Logs every record that fewer than three live nodes hold, with the three that should
    /// (its owner and the owner's two successors).
    fn log_under_replicated(&self) {
        let mut holders: HashMap<ResourceId, Vec<u32>> = HashMap::new();
        for i in self.live() {
            for r in self.node(i).stored_resources() {
                holders.entry(r.clone()).or_default().push(i);
            }
        }
        let ring = self.sorted_peers();
        for (r, h) in holders.iter().filter(|(_, h)| h.len() < 3) {
            let Some(pos) = overlay::id::resource_position(r) else {
                continue;
            };
            let first = ring.partition_point(|(id, _)| id.position() < pos);
            let should: Vec<u32> = (0..3.min(ring.len()))
                .map(|k| ring[(first + k) % ring.len()].1)
                .collect();
            tracing::debug!(
                target: "hipbone::sim::records",
                ms = (self.now - self.start).as_millis() as u64,
                resource = ?r,
                ?h,
                ?should,
                "under-replicated"
            );
        }
    }

    /// Node `idx` dies abruptly: messages to it are lost, its peers notice after `detect`.
    pub fn kill(&mut self, idx: u32) {
        if !self.slots[idx as usize].alive {
            return;
        }
        self.slots[idx as usize].alive = false;
        let id = self.node(idx).id();
        let peers: Vec<NodeId> = self.node(idx).links().collect();
        let at = self.now + self.params.detect;
        for p in peers {
            if let Some(&pi) = self.index.get(&p) {
                self.links.remove(&key(idx, pi));
                self.push(at, Happening::LinkDown { at: pi, peer: id });
            }
        }
        self.slots[idx as usize].timer = None;
    }

    /// Lets node `idx` act through `f` at the current time, then collects its output.
    pub fn with_node<T>(&mut self, idx: u32, f: impl FnOnce(&mut Node, Instant) -> T) -> T {
        let now = self.now;
        let out = f(&mut self.slots[idx as usize].node, now);
        self.drain(idx);
        out
    }

    fn classify(&mut self, bytes: &[u8]) {
        self.traffic.messages += 1;
        let n = bytes.len() as u64;
        let Some(kind) = self.maintenance_kind(bytes) else {
            self.traffic.application += n;
            return;
        };
        self.traffic.maintenance += n;
        self.traffic.maintenance_by[kind] += n;
        self.traffic.maintenance_messages_by[kind] += 1;
    }

    /// Index into [`MAINTENANCE_KINDS`], or `None` for an application Store, Fetch or
    /// Find and their answers. A copy is a Store addressed to a Node-ID (an application
    /// Store goes to a Resource-ID); its answer is known by the transaction it answers.
    fn maintenance_kind(&mut self, bytes: &[u8]) -> Option<usize> {
        let Ok(p) = Packet::new_checked(bytes) else {
            return Some(5);
        };
        let pl = p.payload();
        let Some(code) = pl.get(..2) else {
            return Some(5);
        };
        let txn = p.transaction_id();
        Some(
            match MessageCode::from(u16::from_be_bytes([code[0], code[1]])) {
                MessageCode::StoreReq => {
                    let to_node = matches!(
                        p.first_destination(),
                        Ok(overlay::wire::Destination::Node(_))
                    );
                    if !to_node {
                        return None;
                    }
                    self.copy_transactions.insert(txn);
                    3
                }
                MessageCode::StoreAns => {
                    if !self.copy_transactions.remove(&txn) {
                        return None;
                    }
                    3
                }
                MessageCode::FetchReq
                | MessageCode::FetchAns
                | MessageCode::FindReq
                | MessageCode::FindAns => return None,
                MessageCode::UpdateReq | MessageCode::UpdateAns => 0,
                MessageCode::JoinReq
                | MessageCode::JoinAns
                | MessageCode::LeaveReq
                | MessageCode::LeaveAns => 1,
                MessageCode::PingReq | MessageCode::PingAns => 2,
                MessageCode::AttachReq
                | MessageCode::AttachAns
                | MessageCode::RouteQueryReq
                | MessageCode::RouteQueryAns
                | MessageCode::ProbeReq
                | MessageCode::ProbeAns => 4,
                _ => 5,
            },
        )
    }

    /// Moves node `idx`'s output onto the links and its timer onto the heap.
    fn drain(&mut self, idx: u32) {
        if !self.slots[idx as usize].alive {
            return;
        }
        let from = self.node(idx).id();
        while let Some((peer, bytes)) = self.slots[idx as usize].node.poll_transmit() {
            self.classify(&bytes);
            let Some(&pi) = self.index.get(&peer) else {
                continue;
            };
            if self.params.loss > 0.0 && self.random_f64() < self.params.loss {
                self.traffic.lost += 1;
                continue;
            }
            if self.links.contains(&key(idx, pi)) {
                let at = self.now + self.delay(idx, pi);
                self.push(
                    at,
                    Happening::Deliver {
                        to: pi,
                        from,
                        bytes,
                    },
                );
            }
        }
        while let Some(e) = self.slots[idx as usize].node.poll_event() {
            match e {
                Event::Connect { peer, .. } => match self.index.get(&peer) {
                    Some(&pi) if self.slots[pi as usize].alive => {
                        let at = self.now + self.delay(idx, pi) * 4;
                        self.push(at, Happening::LinkUp { a: idx, b: pi });
                    }
                    _ => {
                        let at = self.now + self.params.detect;
                        self.push(at, Happening::LinkDown { at: idx, peer });
                    }
                },
                Event::Disconnect { .. } => {}
                other => {
                    if self.events.len() < 1_000_000 {
                        self.events.push((idx, other));
                    }
                }
            }
        }
        // A deadline already past (one that fell due while the node's maintenance was
        // off, before it joined again) fires now; the entry is known by that time, or it
        // would be skipped as stale and the node never woken again.
        let now = self.now;
        let t = self.slots[idx as usize]
            .node
            .poll_timeout()
            .map(|t| t.max(now));
        let slot = &mut self.slots[idx as usize];
        if t.is_some() && t != slot.timer {
            slot.timer = t;
            if let Some(t) = t {
                self.push(t, Happening::Timer { idx });
            }
        }
    }

    /// From now on node `idx` swallows every message it should pass on (requests on
    /// their way and answers on their way back), while it keeps its own links, Updates
    /// and storage: a member on the path that drops what it does not like.
    pub fn make_hostile(&mut self, idx: u32) {
        self.hostile.insert(idx);
    }

    pub fn hostile(&self) -> usize {
        self.hostile.len()
    }

    /// Hostile node `idx` answers a Fetch it should pass on, in the owner's place: "no
    /// such record", signed with its own key, back along the path to the link `from`.
    fn forge_answer(&mut self, idx: u32, from: u32, bytes: &[u8]) {
        use overlay::wire::{Destination, FetchAns, FetchKindResponse, Message, MessageContents};
        let Ok(req) = Message::parse(bytes) else {
            return;
        };
        let kinds = overlay::storage::Kinds::hipbone();
        let Ok(fetch) = FetchReq::parse(&req.contents.body, |k| kinds.model(k)) else {
            return;
        };
        let answer = FetchAns {
            kind_responses: fetch
                .specifiers
                .iter()
                .map(|s| FetchKindResponse {
                    kind: s.kind,
                    generation: 0,
                    values: Vec::new(),
                })
                .collect(),
        };
        let mut destination_list: Vec<Destination> =
            req.header.via_list.iter().rev().cloned().collect();
        destination_list.insert(0, Destination::Node(self.node(from).id()));
        let contents = MessageContents::new(MessageCode::FetchAns, answer.to_bytes());
        let bytes = self.signed_message(idx, req.header.transaction_id, destination_list, contents);
        self.traffic.forged += 1;
        let at = self.now + self.delay(idx, from);
        let me = self.node(idx).id();
        self.push(
            at,
            Happening::Deliver {
                to: from,
                from: me,
                bytes,
            },
        );
    }

    /// A message from node `idx` as its node would build it (signed with its key, its
    /// certificate the only one), for tests and hostile nodes that play a member sending
    /// what an honest node would not.
    pub fn signed_message(
        &self,
        idx: u32,
        transaction_id: u64,
        destination_list: Vec<overlay::wire::Destination>,
        contents: overlay::wire::MessageContents,
    ) -> Vec<u8> {
        use overlay::wire::{
            fragment, ForwardingHeader, GenericCertificate, Message, SecurityBlock, Signature,
            SignatureAndHashAlgorithm,
        };
        let identity = self.identity(idx);
        let key = identity.public().public_bytes();
        let mut msg = Message {
            header: ForwardingHeader {
                overlay: self.params.config.overlay,
                configuration_sequence: 0,
                ttl: self.params.config.initial_ttl,
                fragment: fragment::UNFRAGMENTED,
                transaction_id,
                max_response_length: 0,
                via_list: Vec::new(),
                destination_list,
                options: Vec::new(),
            },
            contents,
            security: SecurityBlock {
                certificates: vec![GenericCertificate::ed25519(&key)],
                signature: Signature {
                    algorithm: SignatureAndHashAlgorithm::ED25519,
                    identity: overlay::storage::signer_identity(&key),
                    value: Vec::new(),
                },
            },
        };
        msg.security.signature.value = identity.sign(&msg.signed_bytes()).to_vec();
        msg.to_bytes()
    }

    /// Does a message end at node `idx` (its last destination is `idx`, or a key `idx`
    /// owns), rather than pass through?
    fn ends_at(&self, idx: u32, bytes: &[u8]) -> bool {
        let Ok(packet) = Packet::new_checked(bytes) else {
            return false;
        };
        let Ok((first, rest)) = overlay::wire::Destination::parse_first(packet.destination_list())
        else {
            return false;
        };
        let node = self.node(idx);
        match first {
            overlay::wire::Destination::Node(n) => n == node.id() && rest.is_empty(),
            overlay::wire::Destination::Resource(r) => overlay::id::resource_position(&r)
                .is_some_and(|k| node.is_joined() && node.chord().responsible(k)),
            _ => false,
        }
    }

    /// Processes everything due up to `until`, then sets the clock there.
    pub fn run_until(&mut self, until: Instant) {
        while let Some((at, what)) = self.heap.pop_until(until) {
            self.now = self.now.max(at);
            let now = self.now;
            match what {
                Happening::Deliver { to, from, bytes } => {
                    let Some(&fi) = self.index.get(&from) else {
                        continue;
                    };
                    if self.hostile.contains(&to) && !self.ends_at(to, &bytes) {
                        self.traffic.swallowed += 1;
                        if self.params.forge {
                            self.forge_answer(to, fi, &bytes);
                        }
                        continue;
                    }
                    if self.slots[to as usize].alive && self.links.contains(&key(to, fi)) {
                        self.slots[to as usize]
                            .node
                            .handle_message(now, from, &bytes);
                        self.drain(to);
                    }
                }
                Happening::LinkUp { a, b } => {
                    let (ida, idb) = (self.node(a).id(), self.node(b).id());
                    match (self.alive(a), self.alive(b)) {
                        (true, true) => {
                            self.links.insert(key(a, b));
                            self.slots[a as usize].node.link_up(now, idb);
                            self.slots[b as usize].node.link_up(now, ida);
                            self.drain(a);
                            self.drain(b);
                        }
                        (true, false) => {
                            self.slots[a as usize].node.link_down(now, idb);
                            self.drain(a);
                        }
                        _ => {}
                    }
                }
                Happening::LinkDown { at, peer } => {
                    if self.slots[at as usize].alive {
                        self.slots[at as usize].node.link_down(now, peer);
                        self.drain(at);
                    }
                }
                Happening::Timer { idx } => {
                    let slot = &mut self.slots[idx as usize];
                    if !slot.alive || slot.timer != Some(at) {
                        continue;
                    }
                    slot.timer = None;
                    slot.node.handle_timeout(now);
                    super::assert_deadline_moved(idx, now, slot.node.poll_timeout());
                    self.drain(idx);
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// The ring as it should be: live joined peers sorted by ID.
    pub fn sorted_peers(&self) -> Vec<(NodeId, u32)> {
        let mut v: Vec<(NodeId, u32)> = self
            .live()
            .filter(|&i| self.node(i).is_joined() && !self.node(i).is_client())
            .map(|i| (self.node(i).id(), i))
            .collect();
        v.sort();
        v
    }

    /// Live joined peers whose first successor is not the true one.
    pub fn wrong_successors(&self) -> usize {
        let ring = self.sorted_peers();
        (0..ring.len())
            .filter(|&k| {
                let want = ring[(k + 1) % ring.len()].0;
                self.node(ring[k].1).chord().successor() != Some(want) && ring.len() > 1
            })
            .count()
    }

    /// Node `idx` stores its HIT-LOCATOR record (NODE-MATCH: at H(its own HIT)).
    pub fn store_record(
        &mut self,
        idx: u32,
        value: Vec<u8>,
    ) -> Option<overlay::node::RequestHandle> {
        let identity = self.identity(idx);
        let id = self.node(idx).id();
        let resource = overlay::id::resource_id(&id.0);
        let value = StoredDataValue::Single(DataValue {
            exists: true,
            value,
        });
        let time = 1_000_000 + self.elapsed().as_millis() as u64;
        let req = signed_store(&identity, resource, HIT_LOCATOR, time, 3600, value);
        self.with_node(idx, |n, now| n.store(now, &req)).ok()
    }

    /// Node `idx` fetches the HIT-LOCATOR record of `owner`.
    pub fn fetch_record(
        &mut self,
        idx: u32,
        owner: NodeId,
    ) -> Option<overlay::node::RequestHandle> {
        let req = FetchReq {
            resource: overlay::id::resource_id(&owner.0),
            specifiers: vec![StoredDataSpecifier {
                kind: HIT_LOCATOR,
                generation: 0,
                selector: Selector::Single,
            }],
        };
        if self.params.directory {
            self.with_node(idx, |n, now| n.lookup(now, &req)).ok()
        } else {
            self.with_node(idx, |n, now| n.fetch(now, &req)).ok()
        }
    }

    /// Whether a live node holds `resource`.
    pub fn held(&self, resource: &ResourceId) -> bool {
        self.live()
            .any(|i| self.node(i).stored_resources().any(|r| r == resource))
    }

    pub fn random(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n.max(1) as u64) as usize
    }

    pub fn random_f64(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub nodes: usize,
    pub joined: usize,
    pub wrong_successors: usize,
    /// Lookups answered (with the record or without), by hop count.
    pub hops: Vec<u64>,
    pub stores: Books,
    /// Of the completed stores, records no live node holds at the end.
    pub records_lost: u64,
    pub lookups: Books,
    pub departures: u64,
    pub traffic: Traffic,
    /// Live-node seconds (for per-node rates), over the whole run.
    pub node_seconds: f64,
    /// Traffic and live-node seconds until the ring had formed and settled (before the
    /// stores), to tell the steady state from the joins.
    pub formed: (Traffic, f64),
    /// Nodes made hostile (`Params::hostile`).
    pub hostile: usize,
    /// Directory lookups whose second step (the peer after the owner) could not be asked
    /// or did not answer, over all live nodes at the end.
    pub replica_missed: u64,
    /// Directory lookups that both holders answered.
    pub lookups_both: u64,
    /// Answers our nodes dropped as not from the node the request was for.
    pub implausible_answers: u64,
    /// Time from asking to the answer of every answered lookup (to the driver's step of
    /// 20 ms).
    pub latency: Vec<Duration>,
    pub wall: Duration,
    pub peak_rss_kib: u64,
}

/// What became of every request a run attempted: each attempt lands in exactly one of
/// the outcomes, so `attempted` is their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Books {
    pub attempted: u64,
    /// Refused by the node before anything was sent (`store` / `fetch` returned an error).
    pub not_started: u64,
    /// Completed: a Store answered, a Fetch answered with the record.
    pub ok: u64,
    /// A Fetch answered without the record (the responsible peer does not hold it).
    pub not_found: u64,
    /// `Event::Failed`: timed out or refused along the way.
    pub failed: u64,
    /// Still waiting for an answer when the run ended.
    pub unanswered: u64,
}

impl Books {
    /// Share of the attempts that completed.
    pub fn success(&self) -> f64 {
        self.ok as f64 / self.attempted.max(1) as f64
    }

    /// The outcomes added up (equal to `attempted` once a run is over).
    pub fn outcomes(&self) -> u64 {
        self.not_started + self.ok + self.not_found + self.failed + self.unanswered
    }

    fn line(&self, what: &str) -> String {
        let not_found = match what {
            "lookups" => format!(", not found {}", self.not_found),
            _ => String::new(),
        };
        format!(
            "{what} attempted {}: ok {} ({:.3} %){not_found}, failed {}, not started {}, unanswered at the end {}",
            self.attempted,
            self.ok,
            100.0 * self.success(),
            self.failed,
            self.not_started,
            self.unanswered
        )
    }
}

impl Report {
    /// The `q` quantile of the lookup latencies (nearest rank); `None` without lookups.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let mut v = self.latency.clone();
        v.sort();
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
        v.get(rank - 1).copied()
    }

    pub fn mean_hops(&self) -> f64 {
        let n: u64 = self.hops.iter().sum();
        let s: u64 = self
            .hops
            .iter()
            .enumerate()
            .map(|(h, c)| h as u64 * c)
            .sum();
        s as f64 / n.max(1) as f64
    }

    /// Maintenance bits per second per live node.
    pub fn maintenance_bps(&self) -> f64 {
        self.traffic.maintenance as f64 * 8.0 / self.node_seconds.max(1.0)
    }

    /// Maintenance bits per second per live node once the ring had formed (joins during
    /// the run, with churn, included).
    pub fn formed_maintenance_bps(&self) -> f64 {
        let (traffic, node_seconds) = self.formed;
        (self.traffic.maintenance - traffic.maintenance) as f64 * 8.0
            / (self.node_seconds - node_seconds).max(1.0)
    }
}

/// Peak resident memory of this process (VmHWM), in KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Churn: when each node departs (abruptly), and its replacement joining through `boot`.
struct Churn {
    /// Mean session length in seconds (exponential sessions); no churn if `None`.
    mean: Option<f64>,
    boot: u32,
    deaths: BinaryHeap<Reverse<(Instant, u32)>>,
    departures: u64,
    /// Live-node seconds so far.
    node_seconds: f64,
}

impl Churn {
    /// Gives node `idx`, just joined, its session.
    fn born(&mut self, sim: &mut OverlaySim, idx: u32) {
        if let Some(mean) = self.mean {
            let u = sim.random_f64().max(1e-12);
            let at = sim.now() + Duration::from_secs_f64(-u.ln() * mean);
            self.deaths.push(Reverse((at, idx)));
        }
    }

    /// Runs the simulation to `until` in steps of at most `STEP`: departures happen (and
    /// their replacements join) at the first step at or after they are due, in every phase
    /// of a run (while the ring forms too, so that none pile up for later).
    fn advance(&mut self, sim: &mut OverlaySim, config: &Config, until: Instant) {
        const STEP: Duration = Duration::from_millis(100);
        while sim.now() < until {
            let last = sim.now();
            let t = (last + STEP).min(until);
            sim.run_until(t);
            let minute = Duration::from_secs(60);
            if (t - sim.start).as_millis() / minute.as_millis()
                != (last - sim.start).as_millis() / minute.as_millis()
                && tracing::enabled!(target: "hipbone::sim::records", tracing::Level::DEBUG)
            {
                sim.log_under_replicated();
            }
            self.node_seconds += sim.live().count() as f64 * (t - last).as_secs_f64();
            while let Some(&Reverse((at, idx))) = self.deaths.peek() {
                if at > t {
                    break;
                }
                self.deaths.pop();
                if tracing::enabled!(target: "hipbone::sim::records", tracing::Level::DEBUG) {
                    sim.log_copies_left(idx);
                }
                sim.kill(idx);
                self.departures += 1;
                let new = sim.add_node(config.clone());
                sim.join(new, Some(self.boot));
                self.born(sim, new);
            }
        }
    }
}

/// Builds the ring, stores records, runs lookups (and churn), and reports.
pub fn simulate(params: Params) -> Report {
    let wall = Instant::now();
    let mut sim = OverlaySim::new(params.clone());
    let start = sim.now();
    let n = params.nodes.max(1);
    let boot = sim.add_node(params.config.clone());
    sim.join(boot, None);
    let mut churn = Churn {
        mean: params
            .churn
            .map(|m| m.as_secs_f64() / std::f64::consts::LN_2),
        boot,
        deaths: BinaryHeap::new(),
        departures: 0,
        node_seconds: 0.0,
    };
    let end = start + params.duration;
    for _ in 1..n {
        let at = (sim.now() + params.join_spacing).min(end);
        churn.advance(&mut sim, &params.config, at);
        let idx = sim.add_node(params.config.clone());
        sim.join(idx, Some(boot));
        churn.born(&mut sim, idx);
    }
    // Let the ring settle, then store.
    let settle = (sim.now() + Duration::from_secs(60)).min(end);
    churn.advance(&mut sim, &params.config, settle);
    let formed = (sim.traffic, churn.node_seconds);
    let mut report = Report {
        nodes: n,
        ..Report::default()
    };
    let mut stores: HashMap<(u32, overlay::node::RequestHandle), NodeId> = HashMap::new();
    let mut stored: Vec<NodeId> = Vec::new();
    let mut fetches: HashMap<(u32, overlay::node::RequestHandle), Instant> = HashMap::new();
    let mut hop_hist = vec![0u64; 101];
    let live: Vec<u32> = sim.live().filter(|&i| sim.node(i).is_joined()).collect();
    for k in 0..params.records.min(live.len()) {
        let idx = live[k * live.len() / params.records.min(live.len()).max(1)];
        let id = sim.node(idx).id();
        report.stores.attempted += 1;
        match sim.store_record(idx, id.0.to_vec()) {
            Some(h) => {
                stores.insert((idx, h), id);
            }
            None => report.stores.not_started += 1,
        }
    }
    // Hostile nodes: the predecessors of the owners of random records, so that lookups of
    // those records cross them on their last hop.
    let targets: Vec<NodeId> = stores.values().copied().collect();
    let ring = sim.sorted_peers();
    let wanted = (params.hostile * ring.len() as f64).round() as usize;
    let mut tries = 0;
    while sim.hostile() < wanted && !targets.is_empty() && tries < 100 * ring.len() {
        tries += 1;
        let target = targets[sim.random(targets.len())];
        let k = overlay::id::resource_position(&overlay::id::resource_id(&target.0)).unwrap_or(0);
        let owner = ring.partition_point(|(id, _)| id.position() < k) % ring.len();
        let before = (owner + ring.len() - 1) % ring.len();
        sim.make_hostile(ring[before].1);
    }
    report.hostile = sim.hostile();
    let lookup_gap = Duration::from_secs_f64(1.0 / params.lookup_rate.max(0.001));
    let mut next_lookup = sim.now() + Duration::from_secs(30);
    let lookups_end = end.checked_sub(Duration::from_secs(20)).unwrap_or(end);
    while sim.now() < end {
        let t = (sim.now() + STEP).min(end);
        churn.advance(&mut sim, &params.config, t);
        // Lookups.
        while next_lookup <= sim.now() && sim.now() < lookups_end && !stored.is_empty() {
            next_lookup += lookup_gap;
            let owner = stored[sim.random(stored.len())];
            let from = loop {
                let i = sim.random(sim.len()) as u32;
                if sim.alive(i) && sim.node(i).is_joined() {
                    break i;
                }
            };
            report.lookups.attempted += 1;
            match sim.fetch_record(from, owner) {
                Some(h) => {
                    fetches.insert((from, h), sim.now());
                }
                None => report.lookups.not_started += 1,
            }
        }
        for (idx, e) in std::mem::take(&mut sim.events) {
            match e {
                Event::StoreDone { handle, .. } => {
                    if let Some(id) = stores.remove(&(idx, handle)) {
                        report.stores.ok += 1;
                        stored.push(id);
                    }
                }
                Event::FetchDone {
                    handle,
                    answer,
                    hops,
                    ..
                } if fetches.contains_key(&(idx, handle)) => {
                    if let Some(asked) = fetches.remove(&(idx, handle)) {
                        report.latency.push(sim.now() - asked);
                    }
                    if overlay::node::holds_values(&answer) {
                        report.lookups.ok += 1;
                    } else {
                        report.lookups.not_found += 1;
                    }
                    hop_hist[(hops as usize).min(100)] += 1;
                }
                Event::Failed { handle, .. } => {
                    if stores.remove(&(idx, handle)).is_some() {
                        report.stores.failed += 1;
                    }
                    if fetches.remove(&(idx, handle)).is_some() {
                        report.lookups.failed += 1;
                    }
                }
                _ => {}
            }
        }
    }
    while hop_hist.len() > 1 && hop_hist.last() == Some(&0) {
        hop_hist.pop();
    }
    report.hops = hop_hist;
    report.stores.unanswered = stores.len() as u64;
    report.lookups.unanswered = fetches.len() as u64;
    // A record is lost if no live node holds it.
    let resources: Vec<ResourceId> = stored
        .iter()
        .map(|id| overlay::id::resource_id(&id.0))
        .collect();
    let mut held: HashSet<ResourceId> = HashSet::new();
    for i in sim.live().collect::<Vec<_>>() {
        held.extend(sim.node(i).stored_resources().cloned());
    }
    report.records_lost = resources.iter().filter(|r| !held.contains(*r)).count() as u64;
    for r in resources.iter().filter(|r| !held.contains(*r)) {
        tracing::debug!(target: "hipbone::sim::records", resource = ?r, "lost");
    }
    report.joined = sim.sorted_peers().len();

    for i in sim.live() {
        let stats = sim.node(i).stats();
        report.replica_missed += stats.lookup_replica_missed;
        report.lookups_both += stats.lookups_both;
        report.implausible_answers += stats.implausible_answers;
    }
    report.wrong_successors = sim.wrong_successors();
    report.traffic = sim.traffic;
    report.node_seconds = churn.node_seconds;
    report.departures = churn.departures;
    report.formed = formed;
    report.wall = wall.elapsed();
    report.peak_rss_kib = peak_rss_kib();
    report
}

/// How often the driver starts lookups and takes the nodes' events.
const STEP: Duration = Duration::from_millis(20);

/// `hipbone sim overlay`.
pub fn run(args: &OverlayArgs) -> anyhow::Result<()> {
    let mut params = Params::new(args.nodes, args.duration, args.seed);
    params.churn = args.churn;
    params.loss = args.loss / 100.0;
    params.hostile = args.hostile / 100.0;
    params.directory = args.directory;
    params.forge = args.forge;
    let r = simulate(params);
    println!(
        "nodes {} (joined peers at the end {}, wrong successors {}), departures {}",
        r.nodes, r.joined, r.wrong_successors, r.departures
    );
    println!("lookup hops (histogram of the answered lookups):");
    let total: u64 = r.hops.iter().sum();
    for (h, c) in r.hops.iter().enumerate() {
        if *c > 0 {
            let bar = "#".repeat(((*c * 50) / total.max(1)) as usize);
            println!("  {h:>3} {c:>8} {bar}");
        }
    }
    println!(
        "mean hops {:.2} (goal <= {:.2})",
        r.mean_hops(),
        0.5 * (r.nodes as f64).log2() + 1.0
    );
    println!("{}", r.stores.line("stores"));
    println!(
        "records lost {} of the {} stored (no live node holds them at the end)",
        r.records_lost, r.stores.ok
    );
    if r.hostile > 0 {
        println!(
            "hostile nodes {} (they swallowed {} messages and forged {} answers; {} answers dropped as not from the owner)",
            r.hostile, r.traffic.swallowed, r.traffic.forged, r.implausible_answers
        );
    }
    println!("{}", r.lookups.line("lookups"));
    if let (Some(median), Some(p99)) = (r.latency_quantile(0.5), r.latency_quantile(0.99)) {
        println!(
            "lookup latency of the {} answered: median {:.0} ms, p99 {:.0} ms; {} messages lost on hops ({:.1} %)",
            r.latency.len(),
            median.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            r.traffic.lost,
            100.0 * r.traffic.lost as f64 / r.traffic.messages.max(1) as f64
        );
    }
    println!(
        "maintenance {:.0} bit/s per node over the whole run, {:.0} bit/s once the ring had formed (aim <= 1000); {} bytes; application {} bytes; {} messages",
        r.maintenance_bps(),
        r.formed_maintenance_bps(),
        r.traffic.maintenance,
        r.traffic.application,
        r.traffic.messages
    );
    let (formed, formed_seconds) = r.formed;
    let seconds = (r.node_seconds - formed_seconds).max(1.0);
    let parts: Vec<String> = (0..MAINTENANCE_KINDS.len())
        .map(|k| {
            let bytes = r.traffic.maintenance_by[k] - formed.maintenance_by[k];
            let messages = r.traffic.maintenance_messages_by[k] - formed.maintenance_messages_by[k];
            format!(
                "{} {:.0} ({:.0} B a message)",
                MAINTENANCE_KINDS[k],
                bytes as f64 * 8.0 / seconds,
                bytes as f64 / messages.max(1) as f64
            )
        })
        .collect();
    println!(
        "maintenance once formed, bit/s per node: {}",
        parts.join(", ")
    );
    println!(
        "wall {:.1} s, peak memory (VmHWM) {:.0} MiB",
        r.wall.as_secs_f64(),
        r.peak_rss_kib as f64 / 1024.0
    );
    Ok(())
}
