//! [`Node`]: the sans-IO overlay node. It owns the node's identity, its CHORD-RELOAD
//! routing table ([`Chord`]), the links it knows of, the transactions it started, and (for
//! a peer) the data it stores.
//!
//! # Calling contract
//!
//! The embedder (the daemon, or the simulator) owns the links and the clock. A **link** is
//! an authenticated, ordered channel to one Node-ID: in the daemon a HIP association with
//! the RELOAD framing of §6.6.2 on top, in the simulator an in-memory queue. The node never
//! sees framing or addresses, only whole RELOAD messages and the Node-ID at the other end.
//!
//! 1. Tell the node about links: [`Node::link_up`] when a link to a Node-ID is usable,
//!    [`Node::link_down`] when it broke or could not be opened. Feed every RELOAD message
//!    received on a link to [`Node::handle_message`] with that link's Node-ID.
//! 2. Local requests: [`Node::join`] (with links to the bootstrap peers already up),
//!    [`Node::store`], [`Node::fetch`], [`Node::find`], [`Node::ping`], [`Node::leave`].
//!    Each request returns a [`RequestHandle`] that comes back in its completion event.
//! 3. After any call, drain [`Node::poll_transmit`] (send the bytes on the link to that
//!    Node-ID; if there is none, drop them) and [`Node::poll_event`] until both return
//!    `None`. [`Event::Connect`] asks for a new link (a HIP base exchange to that HIT); the
//!    embedder answers later with `link_up` or `link_down`.
//! 4. Ask [`Node::poll_timeout`] when to wake up next and call [`Node::handle_timeout`] at
//!    or after that instant; then drain again as in 3.
//!
//! Every call takes `now`, which must never go backwards; wall-clock time for storage
//! (`storage_time`, lifetimes) is `Config::epoch_ms` plus the time since [`Node::new`].
//! `handle_timeout` does nothing harmful when nothing is due. Every queue and table is
//! bounded (`Config::max_*`): what overflows is dropped and counted in [`Stats`].
//!
//! # Code map
//!
//! This file holds the type with its configuration, events and counters, the queues the
//! embedder drains and the timer dispatch. The rest of `impl Node` lives by topic:
//!
//! - `links`: the links the embedder reports and the ones we ask it for.
//! - `routing`: a received message is forwarded (TTL, via list, loops) or, once its
//!   signature is checked, taken here; answers go back along the via list.
//! - `transaction`: the requests we originate: signed, routed, retransmitted end to end,
//!   and their answers handed back to what started them.
//! - `answer`: what we answer to a request that ends here.
//! - `app`: the embedder's requests (store, fetch, find, ping) and their events.
//! - `join`: joining the ring (a client: attaching to its peer) and leaving it.
//! - `stabilise`: keeping the routing table true: Updates, neighbour changes, fingers.
//! - `data`: storage, replication and hand-over.

mod answer;
mod app;
mod data;
mod join;
mod links;
mod lookup;
mod routing;
mod stabilise;
#[cfg(test)]
mod tests;
mod transaction;

use crate::chord::Chord;
use crate::wire::{
    ErrorCode, ErrorResponse, FetchAns, FindAns, GenericCertificate, NodeId, ResourceId,
    SignerIdentity, StoreAns,
};
use hip::identity::{HostIdentity, PublicIdentity};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use transaction::Pending;

pub use data::DataConfig;
pub use lookup::{holds_values, NEGATIVE_TTL};

/// Limits, timers and role of a [`Node`]. Every field has a default (see `Default`).
#[derive(Debug, Clone)]
pub struct Config {
    /// The overlay's 32-bit hash (forwarding header `overlay`); messages of other overlays
    /// are dropped.
    pub overlay: u32,
    /// A client (R15): attaches to the peer responsible for its Node-ID, routes everything
    /// through it, stores nothing and is never in anyone's routing table.
    pub client: bool,
    /// Successors and predecessors kept (R5: 3 each).
    pub successors: usize,
    pub predecessors: usize,
    /// Periodic Update to every neighbour (`chord-update-interval`; R7: 60 s, ours 120 s:
    /// docs/OVERLAY.md), ±10 %.
    pub update_interval: Duration,
    /// One finger lookup per this interval, round robin over the useful fingers.
    pub finger_interval: Duration,
    /// Reactive Updates after a neighbour change wait this long, so that one burst of
    /// changes sends one round.
    pub reactive_delay: Duration,
    /// End-to-end retransmission timer (`overlay-reliability-timer`, R13: 3 s).
    pub reliability_timer: Duration,
    /// Sends of one request in all (R13: 5).
    pub transmissions: u32,
    /// TTL of the messages we originate (R13: 100).
    pub initial_ttl: u8,
    /// Wait before copying our data to a new successor (R6: 30 s).
    pub replica_holddown: Duration,
    /// Retry a failed join (or re-join after losing every successor) after this long.
    pub rejoin_interval: Duration,
    /// Largest message accepted or sent: 32 KiB, not R13's 5000 bytes (docs/OVERLAY.md:
    /// a Kind's fullest Resource must fit one answer; every link is TCP).
    pub max_message: usize,
    /// Transactions we started and still wait for.
    pub max_pending: usize,
    /// Of those, the embedder's own requests at most. The rest, `max_pending -
    /// max_app_pending`, is maintenance's (Updates, lookups, replication): neither can
    /// starve the other.
    pub max_app_pending: usize,
    /// Records waiting to be copied to a successor or a joining peer; sent a window at a
    /// time, retried when lost.
    pub max_copies: usize,
    /// Answers of directory lookups kept ([`Node::lookup`]).
    pub max_cached: usize,
    /// Outgoing message queue.
    pub max_transmits: usize,
    pub max_events: usize,
    /// Link requests (`Event::Connect`) outstanding at once.
    pub max_connecting: usize,
    /// Links peers opened to us that we do not route through, kept at most: above this the
    /// oldest are let go (a bootstrap that every joiner links to). Below the embedder's
    /// limit of incoming links, so that a new peer always finds room.
    pub max_their_links: usize,
    /// Peer keys remembered (verified key and its HIT); the cache is emptied when full.
    pub max_keys: usize,
    /// Unix time in milliseconds at the `now` given to [`Node::new`].
    pub epoch_ms: u64,
    /// Seed of the node's random choices (transaction IDs, timer jitter).
    pub seed: [u8; 32],
    /// Kinds and storage limits.
    pub data: DataConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            overlay: 0,
            client: false,
            successors: 3,
            predecessors: 3,
            update_interval: Duration::from_secs(120),
            finger_interval: Duration::from_secs(60),
            reactive_delay: Duration::from_millis(200),
            reliability_timer: Duration::from_millis(3000),
            transmissions: 5,
            initial_ttl: 100,
            replica_holddown: Duration::from_secs(30),
            rejoin_interval: Duration::from_secs(10),
            max_message: 32 * 1024,
            max_pending: 1024,
            max_app_pending: 256,
            max_copies: 65_536,
            max_cached: 1024,
            max_transmits: 4096,
            max_events: 1024,
            max_connecting: 64,
            max_their_links: 64,
            max_keys: 128,
            epoch_ms: 0,
            seed: [0; 32],
            data: DataConfig::default(),
        }
    }
}

/// Names one request made through the node's API; it comes back in the completion event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestHandle(pub u64);

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No answer after every retransmission.
    Timeout,
    /// The responsible node (or a forwarder) answered with a RELOAD error.
    Remote(ErrorResponse),
    /// The answer did not parse or did not pass its checks (e.g. a value signature).
    BadAnswer(&'static str),
}

impl Failure {
    /// True if the request reached the node it was for and that node said no (a Store
    /// refused for its signer, its size, an old generation): asking again changes
    /// nothing. Every other failure is of the path (no answer, a loop, a TTL, no route
    /// while the ring repairs itself, an answer that fails its checks) and may pass later.
    pub fn is_refusal(&self) -> bool {
        match self {
            // A forwarder could have made the answer up.
            Failure::Timeout | Failure::BadAnswer(_) => false,
            Failure::Remote(e) => !matches!(
                e.code,
                ErrorCode::NotFound
                    | ErrorCode::RequestTimeout
                    | ErrorCode::TtlExceeded
                    | ErrorCode::InProgress
                    | ErrorCode::UnderlayDestinationUnreachable
                    | ErrorCode::UnderlayTimeExceeded
                    | ErrorCode::MessageExpired
                    | ErrorCode::UpstreamMisrouting
                    | ErrorCode::LoopDetected
                    | ErrorCode::TtlHopsExceeded
            ),
        }
    }
}

/// Local misuse or a full table: the request was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The node has not joined (or attached, for a client), or has left.
    NotJoined,
    /// `max_app_pending` of the embedder's transactions are outstanding.
    TooManyRequests,
    /// The request would not fit in a message (`max_message`) or its fields overflow.
    TooLarge,
    /// A Resource-ID that is not 16 bytes (the only length on our ring).
    BadResource,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::NotJoined => "overlay node has not joined",
            Error::TooManyRequests => "too many outstanding overlay requests",
            Error::TooLarge => "overlay request too large",
            Error::BadResource => "Resource-ID is not 16 bytes",
        })
    }
}

impl std::error::Error for Error {}

/// What the node reports to its embedder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Please open a link to `peer` (a HIP base exchange to that HIT), then call
    /// `link_up` or `link_down`. `hint` is the peer that told us about it, which can
    /// relay the exchange (§10.6 source routing; RFC 7086 §7).
    Connect { peer: NodeId, hint: Option<NodeId> },
    /// The link to `peer` is no longer needed by the overlay.
    Disconnect { peer: NodeId },
    /// We joined the ring (a client: attached to its peer) and can serve requests.
    Joined,
    /// The join failed; the node retries after `rejoin_interval`.
    JoinFailed,
    /// Our neighbour table changed (nearest first).
    NeighboursChanged {
        predecessors: Vec<NodeId>,
        successors: Vec<NodeId>,
    },
    StoreDone {
        handle: RequestHandle,
        answer: StoreAns,
        hops: u32,
    },
    FetchDone {
        handle: RequestHandle,
        answer: FetchAns,
        responder: NodeId,
        hops: u32,
    },
    FindDone {
        handle: RequestHandle,
        answer: FindAns,
        hops: u32,
    },
    PingDone {
        handle: RequestHandle,
        responder: NodeId,
        hops: u32,
    },
    Failed {
        handle: RequestHandle,
        failure: Failure,
    },
    /// `leave` finished: Leaves were sent; the node no longer routes.
    Left,
}

/// Lengths of the node's bounded queues and tables ([`Node::occupancy`]), each bounded by
/// the `Config::max_*` of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occupancy {
    pub transmits: usize,
    pub events: usize,
    pub pending: usize,
    pub app_pending: usize,
    pub copies: usize,
    pub cached: usize,
    pub connecting: usize,
    pub keys: usize,
}

impl Occupancy {
    /// The first queue or table over its bound in `config`, if any.
    pub fn over(&self, config: &Config) -> Option<&'static str> {
        [
            ("transmits", self.transmits, config.max_transmits),
            ("events", self.events, config.max_events),
            ("pending", self.pending, config.max_pending),
            ("app_pending", self.app_pending, config.max_app_pending),
            ("copies", self.copies, config.max_copies),
            ("cached", self.cached, config.max_cached),
            ("connecting", self.connecting, config.max_connecting),
            ("keys", self.keys, config.max_keys),
        ]
        .into_iter()
        .find(|(_, len, max)| len > max)
        .map(|(name, _, _)| name)
    }
}

/// Counters, for diagnostics and the simulator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub sent_messages: u64,
    pub sent_bytes: u64,
    pub forwarded: u64,
    /// Messages dropped because they did not parse, were for another overlay, or came
    /// from a Node-ID without a link.
    pub malformed: u64,
    pub bad_signatures: u64,
    pub ttl_exceeded: u64,
    pub loops: u64,
    /// Messages whose next hop would have been the peer they came from, sent to the peer
    /// our table makes responsible instead (`Node::handle_message`).
    pub bounced: u64,
    /// No route: a lone node without bootstrap, or a Node-ID destination we own but have no
    /// link to.
    pub unroutable: u64,
    pub retransmissions: u64,
    pub timeouts: u64,
    /// Directory lookups answered from the cache, and those whose replica could not be
    /// asked or did not answer (the owner's answer stood alone).
    pub lookups_cached: u64,
    pub lookup_replica_missed: u64,
    /// Directory lookups answered by the owner and the peer after it.
    pub lookups_both: u64,
    /// Copies of records (replicas, hand-overs) sent again after a timeout, and those
    /// given up (refused, or out of tries).
    pub copy_retries: u64,
    pub copies_failed: u64,
    /// Answers larger than a message may be (or than their request asked for), sent as
    /// Error_Response_Too_Large instead.
    pub too_large: u64,
    /// Answers to our requests from a node that cannot be the one they were for (a node
    /// on the path answering in the owner's place): dropped, the request still waits.
    pub implausible_answers: u64,
    /// Items dropped at a full queue or table.
    pub overflows: u64,
    /// Links we opened to a joining peer that asked for it (`connect_back`).
    pub connect_backs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Created, `join` not called yet.
    Idle,
    /// Looking for our admitting peer (or, for a client, our responsible peer).
    Joining {
        ap: Option<NodeId>,
        join_sent: bool,
    },
    Joined,
    Left,
}

impl State {
    /// Joining, with no admitting peer found yet.
    const SEEKING: State = State::Joining {
        ap: None,
        join_sent: false,
    };
}

/// The overlay node. See the module documentation for the calling contract.
pub struct Node {
    identity: HostIdentity,
    me: NodeId,
    cert: GenericCertificate,
    signer: SignerIdentity,
    config: Config,
    start: Instant,
    rng: ChaCha20Rng,
    state: State,
    chord: Chord,
    links: HashSet<NodeId>,
    /// Every link, and since when it is up: after `links::LINK_GRACE` a link of ours the
    /// node does not route through is let go.
    linked_at: HashMap<NodeId, Instant>,
    release_at: Option<Instant>,
    /// Links that are ours to let go: the ones we asked for, and those of our join. A link
    /// a peer opened to us is the peer's (we may be its finger, which it alone knows): we
    /// route through it while it lasts but never close it.
    ours: HashSet<NodeId>,
    /// We are behind a NAT: our join asks the admitting peer to open the link to us.
    behind_nat: bool,
    /// Peers we asked a link to because they are worth routing through; they enter the
    /// routing table when the link comes up.
    /// Links asked for: since when, and on whose word (the peer whose Update listed it).
    connecting: HashMap<NodeId, (Instant, Option<NodeId>)>,
    bootstraps: Vec<NodeId>,
    /// Client: the peer we are attached to.
    attached: Option<NodeId>,
    pending: HashMap<u64, Pending>,
    /// How many of `pending` are the embedder's.
    app_pending: usize,
    /// The peer that just joined through us and was handed its records.
    handed_over: Option<NodeId>,
    lookups: lookup::Lookups,
    retx: BTreeSet<(Instant, u64)>,
    transmits: VecDeque<(NodeId, Vec<u8>)>,
    events: VecDeque<Event>,
    keys: HashMap<[u8; 32], PublicIdentity>,
    announced: (Vec<NodeId>, Vec<NodeId>),
    next_update: Option<Instant>,
    update_soon: Option<Instant>,
    next_finger: Option<Instant>,
    finger_queue: VecDeque<u32>,
    finger_cursor: u32,
    rejoin_at: Option<Instant>,
    data: data::Data,
    next_handle: u64,
    stats: Stats,
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.me)
            .field("state", &self.state)
            .field("peers", &self.chord.len())
            .field("links", &self.links.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node with `identity` (its HIT is the Node-ID, R2), created at `now`.
    pub fn new(identity: HostIdentity, config: Config, now: Instant) -> Node {
        let me = NodeId::from(identity.hit());
        let key = identity.public().public_bytes();
        let cert = GenericCertificate::ed25519(&key);
        let digest = ring::digest::digest(&ring::digest::SHA256, &cert.data);
        let signer = SignerIdentity::CertHash {
            hash: crate::wire::HashAlgorithm::Sha256,
            digest: digest.as_ref().to_vec(),
        };
        let chord = Chord::new(me, config.successors, config.predecessors);
        let rng = ChaCha20Rng::from_seed(config.seed);
        let data = data::Data::new(&config.data, config.client);
        Node {
            identity,
            me,
            cert,
            signer,
            start: now,
            rng,
            state: State::Idle,
            chord,
            links: HashSet::new(),
            linked_at: HashMap::new(),
            ours: HashSet::new(),
            release_at: None,
            behind_nat: false,
            connecting: HashMap::new(),
            bootstraps: Vec::new(),
            attached: None,
            pending: HashMap::new(),
            app_pending: 0,
            handed_over: None,
            lookups: lookup::Lookups::default(),
            retx: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            keys: HashMap::new(),
            announced: (Vec::new(), Vec::new()),
            next_update: None,
            update_soon: None,
            next_finger: None,
            finger_queue: VecDeque::new(),
            finger_cursor: 0,
            rejoin_at: None,
            data,
            next_handle: 0,
            stats: Stats::default(),
            config,
        }
    }

    pub fn id(&self) -> NodeId {
        self.me
    }

    pub fn is_joined(&self) -> bool {
        self.state == State::Joined
    }

    /// Whether our table makes us the owner of `resource` (a Store of it would be answered
    /// by ourselves).
    pub fn owns_resource(&self, resource: &ResourceId) -> bool {
        crate::id::resource_position(resource).is_some_and(|k| self.owns(k))
    }

    pub fn is_client(&self) -> bool {
        self.config.client
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How full the bounded queues and tables are (each at most its `Config::max_*`).
    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            transmits: self.transmits.len(),
            events: self.events.len(),
            pending: self.pending.len(),
            app_pending: self.app_pending,
            copies: self.data.copies(),
            cached: self.lookups.cached(),
            connecting: self.connecting.len(),
            keys: self.keys.len(),
        }
    }

    /// The routing table (read only).
    pub fn chord(&self) -> &Chord {
        &self.chord
    }

    /// Node-IDs we have a link to.
    pub fn links(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.links.iter().copied()
    }

    /// Resource-IDs this node stores (as owner or replica).
    pub fn stored_resources(&self) -> impl Iterator<Item = &ResourceId> + '_ {
        self.data.resources()
    }

    /// The storage time of a value written at `now` (Unix milliseconds: the configured
    /// epoch plus the time since the node started).
    pub fn storage_time(&self, now: Instant) -> u64 {
        self.now_ms(now)
    }

    /// Wall-clock time for storage, in Unix milliseconds.
    fn now_ms(&self, now: Instant) -> u64 {
        self.config
            .epoch_ms
            .saturating_add(now.saturating_duration_since(self.start).as_millis() as u64)
    }

    /// Seconds since [`Node::new`].
    fn uptime(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.start).as_secs() as u32
    }

    fn jittered(&mut self, d: Duration) -> Duration {
        // ±10 %, from the node's generator.
        let r = (self.rng.next_u32() % 2001) as f64 / 10_000.0 - 0.1;
        d.mul_f64(1.0 + r)
    }

    /// The next message to send: the link peer's Node-ID and the RELOAD message bytes.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` should be called next: only timers it acts on in the current
    /// state, so that a deadline it would leave in the past is never reported (a driver
    /// would wake up for it again and again).
    /// Every address of ours is private: a NAT drops what peers send us unasked, so
    /// our join asks the admitting peer to open the link to us (`connect_back`).
    pub fn set_behind_nat(&mut self, behind: bool) {
        self.behind_nat = behind;
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let always = [self.rejoin_at, self.retx.iter().next().map(|(t, _)| *t)];
        let maintenance = [
            self.next_update,
            self.update_soon,
            self.next_finger,
            self.data.next_timeout(),
            self.release_at,
        ];
        let maintaining = self.state == State::Joined && !self.config.client;
        always
            .into_iter()
            .chain(maintenance.into_iter().filter(|_| maintaining))
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(due, tx)) = self.retx.iter().next() {
            if due > now {
                break;
            }
            self.retx.remove(&(due, tx));
            self.retransmit(now, tx);
        }
        if self.rejoin_at.is_some_and(|t| t <= now) {
            self.rejoin_at = None;
            self.start_join(now);
        }
        if self.state != State::Joined || self.config.client {
            return;
        }
        if self.update_soon.is_some_and(|t| t <= now) {
            self.update_soon = None;
            self.send_updates(now);
        }
        if self.next_update.is_some_and(|t| t <= now) {
            self.next_update = Some(now + self.jittered(self.config.update_interval));
            self.update_soon = None;
            self.send_updates(now);
            self.forget_stale_connects(now);
            if self.chord.is_empty() && !self.bootstraps.is_empty() {
                // Lost every peer (§10.7.1): join again, now (a deadline of `now` would be
                // left in the past).
                self.start_join(now);
                return;
            }
        }
        if self.next_finger.is_some_and(|t| t <= now) {
            self.next_finger = Some(now + self.config.finger_interval);
            self.refresh_finger(now);
        }
        if self.data.due(now) {
            self.replicate(now);
        }
        if self.release_at.is_some_and(|t| t <= now) {
            self.release_links(now);
        }
    }

    /// Queues a message for the link to `to` (dropped and counted when the queue is full).
    fn transmit(&mut self, to: NodeId, bytes: Vec<u8>) {
        if self.transmits.len() >= self.config.max_transmits {
            self.stats.overflows += 1;
            return;
        }
        self.stats.sent_messages += 1;
        self.stats.sent_bytes += bytes.len() as u64;
        self.transmits.push_back((to, bytes));
    }

    /// Queues an event for the embedder (dropped and counted when the queue is full).
    fn push_event(&mut self, e: Event) {
        if self.events.len() >= self.config.max_events {
            self.stats.overflows += 1;
            return;
        }
        self.events.push_back(e);
    }
}
