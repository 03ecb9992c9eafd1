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
//! # Routing (RFC 6940 §6.1–§6.2, symmetric recursive)
//!
//! A request travels hop by hop toward its destination; each forwarder appends the link
//! peer it came from to the via list, decrements the TTL (initial 100, R13) and refuses a
//! message whose via list already holds itself (loop) or whose TTL ran out, answering the
//! originator with Error_Loop_Detected / Error_TTL_Exceeded. The node responsible for the
//! destination answers along the reversed via list. Originators retransmit end to end
//! (every `reliability_timer`, `transmissions` sends in all, R13); forwarders keep no state.
//!
//! **Signatures.** Every message we originate carries a SecurityBlock signed with our
//! Ed25519 host identity, our key as a Raw Public Key certificate, and SignerIdentity =
//! SHA-256 of that certificate (R9). Signatures are checked **once, at the node that
//! terminates the message** (the destination of a request, the originator receiving an
//! answer): intermediate hops only read the forwarding header. The check: the certificate's
//! key verifies the signature over `Message::signed_bytes`, and the HIT computed from the
//! key equals the originator's Node-ID (the first via entry, or the link peer when the via
//! list is empty). Forwarders are authenticated per hop by the link (HIP/ESP), so
//! checking at every hop would only repeat work; the simulator measured it as the largest
//! cost of a 10,000-node run (docs/OVERLAY.md, "Node").

mod data;
#[cfg(test)]
mod tests;

use crate::chord::Chord;
use crate::id::{self, finger_target};
use crate::wire::{
    fragment, ChordLeaveData, ChordRouteQueryAns, ChordUpdate, ChordUpdateKind, Destination,
    ErrorCode, ErrorResponse, FetchAns, FetchReq, FindAns, FindReq, ForwardingHeader,
    GenericCertificate, JoinAns, JoinReq, LeaveReq, Message, MessageCode, MessageContents, NodeId,
    PingAns, PingReq, ProbeAns, ProbeInformation, ProbeReq, ResourceId, RouteQueryReq,
    SecurityBlock, Signature, SignatureAndHashAlgorithm, SignerIdentity, StoreAns, StoreReq,
};
use hip::identity::{HostIdentity, PublicIdentity};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

pub use data::DataConfig;

/// After a finger lookup that found a new finger, the next lookup comes this many times
/// sooner than `finger_interval`.
const FINGER_SPEEDUP: u32 = 12;

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
    /// Periodic Update to every neighbour (`chord-update-interval`, R7: 60 s), ±10 %.
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
    /// Largest message accepted or sent (R13 `max-message-size`: 5000).
    pub max_message: usize,
    /// Transactions we started and still wait for.
    pub max_pending: usize,
    /// Outgoing message queue.
    pub max_transmits: usize,
    pub max_events: usize,
    /// Link requests (`Event::Connect`) outstanding at once.
    pub max_connecting: usize,
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
            max_message: 5000,
            max_pending: 1024,
            max_transmits: 4096,
            max_events: 1024,
            max_connecting: 64,
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

/// Local misuse or a full table: the request was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The node has not joined (or attached, for a client), or has left.
    NotJoined,
    /// `max_pending` transactions are outstanding.
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
    /// No route: a lone node without bootstrap, or a Node-ID destination we own but have no
    /// link to.
    pub unroutable: u64,
    pub retransmissions: u64,
    pub timeouts: u64,
    /// Items dropped at a full queue or table.
    pub overflows: u64,
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

/// Why we started a transaction: what to do with its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    App(RequestHandle),
    /// Ping to our ID + 1: who admits us.
    JoinLookup,
    Join(NodeId),
    /// Ping to a finger target.
    Finger(u32),
    /// Update, Leave, replication: answers only end the transaction.
    Maintenance,
}

#[derive(Debug)]
struct Pending {
    purpose: Purpose,
    code: MessageCode,
    /// The key the message is routed by, for re-routing retransmissions.
    dest: Destination,
    bytes: Vec<u8>,
    sent: u32,
    due: Instant,
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
    /// Peers we asked a link to because they are worth routing through; they enter the
    /// routing table when the link comes up.
    connecting: HashMap<NodeId, Instant>,
    bootstraps: Vec<NodeId>,
    /// Client: the peer we are attached to.
    attached: Option<NodeId>,
    pending: HashMap<u64, Pending>,
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

/// Where a message goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Local,
    Link(NodeId),
    None,
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
            connecting: HashMap::new(),
            bootstraps: Vec::new(),
            attached: None,
            pending: HashMap::new(),
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

    fn now_ms(&self, now: Instant) -> u64 {
        self.config
            .epoch_ms
            .saturating_add(now.saturating_duration_since(self.start).as_millis() as u64)
    }

    fn uptime(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.start).as_secs() as u32
    }

    // ---- Embedder input -------------------------------------------------------------

    /// Starts joining through `bootstrap` (links to them must be up). With no bootstrap
    /// the node is the first peer of the overlay and has joined at once (RFC 6940 §10.5
    /// asks for such an explicit choice). A client attaches instead.
    pub fn join(&mut self, now: Instant, bootstrap: &[NodeId]) {
        if self.state == State::Joined {
            return;
        }
        self.bootstraps = bootstrap
            .iter()
            .copied()
            .filter(|b| *b != self.me)
            .collect();
        self.bootstraps.truncate(16);
        if self.bootstraps.is_empty() && !self.config.client {
            self.become_joined(now);
            return;
        }
        self.start_join(now);
    }

    /// Leaves the ring: Leave to every neighbour (§10.9), then stop routing. Data already
    /// lives on our successors (R6), so nothing is handed over.
    pub fn leave(&mut self, now: Instant) {
        if self.state == State::Joined && !self.config.client {
            let preds = self.chord.predecessors();
            let succs = self.chord.successors();
            for s in &succs {
                let data = ChordLeaveData::FromPred(preds.clone()).to_bytes();
                self.send_leave(now, *s, data);
            }
            for p in preds.iter().filter(|p| !succs.contains(p)) {
                let data = ChordLeaveData::FromSucc(succs.clone()).to_bytes();
                self.send_leave(now, *p, data);
            }
        }
        self.state = State::Left;
        self.next_update = None;
        self.update_soon = None;
        self.next_finger = None;
        self.rejoin_at = None;
        self.data.clear_schedule();
        self.push_event(Event::Left);
    }

    fn send_leave(&mut self, now: Instant, to: NodeId, data: Vec<u8>) {
        let body = LeaveReq {
            leaving_peer_id: self.me,
            overlay_specific_data: data,
        }
        .to_bytes();
        self.maintenance_request(now, to, MessageCode::LeaveReq, body);
    }

    /// A topology request to one neighbour (Leave, Update): nobody waits for its answer.
    fn maintenance_request(&mut self, now: Instant, to: NodeId, code: MessageCode, body: Vec<u8>) {
        let _ = self.request(now, Destination::Node(to), code, body, Purpose::Maintenance);
    }

    /// A link to `peer` is up (a HIP association exists and carries RELOAD framing).
    pub fn link_up(&mut self, now: Instant, peer: NodeId) {
        if peer == self.me {
            return;
        }
        self.links.insert(peer);
        let wanted = self.connecting.remove(&peer).is_some();
        match self.state {
            State::Joining {
                ap: Some(ap),
                join_sent: false,
            } if ap == peer => self.ap_linked(now, ap),
            State::Joined if wanted && !self.config.client && self.chord.insert(peer) => {
                self.table_changed(now);
            }
            _ => {}
        }
    }

    /// The link to `peer` broke, or could not be opened.
    pub fn link_down(&mut self, now: Instant, peer: NodeId) {
        self.links.remove(&peer);
        self.connecting.remove(&peer);
        if self.attached == Some(peer) {
            self.attached = None;
            self.state = State::Joining {
                ap: None,
                join_sent: false,
            };
            self.rejoin_at = Some(now);
            return;
        }
        if let State::Joining { ap: Some(ap), .. } = self.state {
            if ap == peer {
                self.join_failed(now);
            }
        }
        let finger = self.chord.finger_index_of(peer);
        if self.chord.remove(peer) {
            if let Some(i) = finger {
                // Reactive finger repair (§10.7.1): look the entry up again soon.
                self.queue_finger(now, i);
            }
            self.table_changed(now);
        }
    }

    /// One RELOAD message (unframed) received on the link to `link_peer`.
    pub fn handle_message(&mut self, now: Instant, link_peer: NodeId, bytes: &[u8]) {
        if !self.links.contains(&link_peer) || bytes.len() > self.config.max_message {
            self.stats.malformed += 1;
            return;
        }
        let Ok((mut header, payload)) = ForwardingHeader::parse(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        if header.overlay != self.config.overlay
            || !header.is_unfragmented()
            || header.fragment & fragment::FLAG == 0
            || payload.len() < 2
        {
            self.stats.malformed += 1;
            return;
        }
        let code = MessageCode::from(u16::from_be_bytes([payload[0], payload[1]]));
        loop {
            let Some(first) = header.destination_list.first().cloned() else {
                self.stats.malformed += 1;
                return;
            };
            let last = header.destination_list.len() == 1;
            let route = match &first {
                Destination::Node(n) if *n == self.me => {
                    if last {
                        Route::Local
                    } else {
                        header.destination_list.remove(0);
                        continue;
                    }
                }
                Destination::Node(n) if *n == NodeId::WILDCARD => Route::Local,
                Destination::Node(n) => self.route_to_node(*n),
                Destination::Resource(r) => match id::resource_position(r) {
                    Some(k) if self.owns(k) => {
                        if last {
                            Route::Local
                        } else {
                            // §6.1.1: a Resource-ID must be the only entry.
                            self.stats.malformed += 1;
                            return;
                        }
                    }
                    Some(k) => self.route_to_key(k),
                    None => Route::None,
                },
                _ => {
                    // We never hand out opaque or compressed IDs (RFC 7086 §5.1).
                    self.stats.malformed += 1;
                    return;
                }
            };
            match route {
                Route::Local => self.deliver(now, link_peer, bytes),
                Route::Link(next) => self.forward(now, link_peer, header, payload, code, next),
                Route::None => {
                    self.stats.unroutable += 1;
                    if code.is_request() {
                        self.error_back(now, link_peer, &header, ErrorCode::NotFound, "no route");
                    }
                }
            }
            return;
        }
    }

    // ---- Embedder output ------------------------------------------------------------

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
    pub fn poll_timeout(&self) -> Option<Instant> {
        let always = [self.rejoin_at, self.retx.iter().next().map(|(t, _)| *t)];
        let maintenance = [
            self.next_update,
            self.update_soon,
            self.next_finger,
            self.data.next_timeout(),
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
            self.connecting
                .retain(|_, since| now.saturating_duration_since(*since) < Duration::from_secs(60));
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
    }

    // ---- Application requests -------------------------------------------------------

    fn handle(&mut self) -> RequestHandle {
        self.next_handle += 1;
        RequestHandle(self.next_handle)
    }

    fn app_request(
        &mut self,
        now: Instant,
        dest: Destination,
        code: MessageCode,
        body: Vec<u8>,
        fetch: Option<&FetchReq>,
    ) -> Result<RequestHandle, Error> {
        if self.state != State::Joined {
            return Err(Error::NotJoined);
        }
        if self.pending.len() >= self.config.max_pending {
            return Err(Error::TooManyRequests);
        }
        let handle = self.handle();
        if let Some(req) = fetch {
            // Noted first: a Fetch for a key we own is answered at once.
            self.note_fetch(handle, req);
        }
        if let Err(e) = self.request(now, dest, code, body, Purpose::App(handle)) {
            self.data.forget_fetch(handle);
            return Err(e);
        }
        Ok(handle)
    }

    /// Stores `req` (values already signed, e.g. with `storage::sign_value`) at the peer
    /// responsible for `req.resource`. Completes with [`Event::StoreDone`] or `Failed`.
    pub fn store(&mut self, now: Instant, req: &StoreReq) -> Result<RequestHandle, Error> {
        id::resource_position(&req.resource).ok_or(Error::BadResource)?;
        let dest = Destination::Resource(req.resource.clone());
        self.app_request(now, dest, MessageCode::StoreReq, req.to_bytes(), None)
    }

    /// Fetches from the peer responsible for `req.resource`; the answer's value
    /// signatures and access rights are checked before [`Event::FetchDone`].
    pub fn fetch(&mut self, now: Instant, req: &FetchReq) -> Result<RequestHandle, Error> {
        id::resource_position(&req.resource).ok_or(Error::BadResource)?;
        let dest = Destination::Resource(req.resource.clone());
        self.app_request(now, dest, MessageCode::FetchReq, req.to_bytes(), Some(req))
    }

    /// Find (§7.4.4) at the peer responsible for `req.resource`.
    pub fn find(&mut self, now: Instant, req: &FindReq) -> Result<RequestHandle, Error> {
        id::resource_position(&req.resource).ok_or(Error::BadResource)?;
        let dest = Destination::Resource(req.resource.clone());
        self.app_request(now, dest, MessageCode::FindReq, req.to_bytes(), None)
    }

    /// Pings a Node-ID or the owner of a Resource-ID; [`Event::PingDone`] names who
    /// answered and after how many hops.
    pub fn ping(&mut self, now: Instant, dest: Destination) -> Result<RequestHandle, Error> {
        self.app_request(
            now,
            dest,
            MessageCode::PingReq,
            PingReq::default().to_bytes(),
            None,
        )
    }

    // ---- Sending --------------------------------------------------------------------

    fn transaction_id(&mut self) -> u64 {
        loop {
            let t = self.rng.next_u64();
            if t != 0 && !self.pending.contains_key(&t) {
                return t;
            }
        }
    }

    /// A signed message from us.
    fn build(
        &self,
        tx: u64,
        dest: Vec<Destination>,
        contents: MessageContents,
        extra_certs: Vec<GenericCertificate>,
    ) -> Vec<u8> {
        let mut certificates = vec![self.cert.clone()];
        certificates.extend(extra_certs.into_iter().filter(|c| *c != self.cert));
        let mut msg = Message {
            header: ForwardingHeader {
                overlay: self.config.overlay,
                configuration_sequence: 0,
                ttl: self.config.initial_ttl,
                fragment: fragment::UNFRAGMENTED,
                transaction_id: tx,
                max_response_length: 0,
                via_list: Vec::new(),
                destination_list: dest,
                options: Vec::new(),
            },
            contents,
            security: SecurityBlock {
                certificates,
                signature: Signature {
                    algorithm: SignatureAndHashAlgorithm::ED25519,
                    identity: self.signer.clone(),
                    value: Vec::new(),
                },
            },
        };
        msg.security.signature.value = self.identity.sign(&msg.signed_bytes()).to_vec();
        msg.to_bytes()
    }

    fn transmit(&mut self, to: NodeId, bytes: Vec<u8>) {
        if self.transmits.len() >= self.config.max_transmits {
            self.stats.overflows += 1;
            return;
        }
        self.stats.sent_messages += 1;
        self.stats.sent_bytes += bytes.len() as u64;
        self.transmits.push_back((to, bytes));
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= self.config.max_events {
            self.stats.overflows += 1;
            return;
        }
        self.events.push_back(e);
    }

    /// Starts a transaction: builds, routes and sends a request, and arms its
    /// retransmission timer. A request for a key we own is answered locally.
    fn request(
        &mut self,
        now: Instant,
        dest: Destination,
        code: MessageCode,
        body: Vec<u8>,
        purpose: Purpose,
    ) -> Result<(), Error> {
        self.request_with(now, dest, code, body, purpose, Vec::new())
    }

    /// [`request`](Self::request) with certificates for the security block besides ours
    /// (the signers of values being stored).
    fn request_with(
        &mut self,
        now: Instant,
        dest: Destination,
        code: MessageCode,
        body: Vec<u8>,
        purpose: Purpose,
        certs: Vec<GenericCertificate>,
    ) -> Result<(), Error> {
        if self.pending.len() >= self.config.max_pending {
            self.stats.overflows += 1;
            return Err(Error::TooManyRequests);
        }
        let contents = MessageContents::new(code, body);
        let route = self.route_out(&dest);
        if route == Route::Local {
            let mut certs = certs;
            certs.push(self.cert.clone());
            if let Some((answer, certs)) = self.answer(now, self.me, true, &contents, &certs) {
                self.complete(now, purpose, code, self.me, 0, &answer, &certs);
            }
            return Ok(());
        }
        let tx = self.transaction_id();
        let bytes = self.build(tx, vec![dest.clone()], contents, certs);
        if bytes.len() > self.config.max_message {
            return Err(Error::TooLarge);
        }
        if let Route::Link(next) = route {
            self.transmit(next, bytes.clone());
        } else {
            self.stats.unroutable += 1;
        }
        let due = now + self.config.reliability_timer;
        self.pending.insert(
            tx,
            Pending {
                purpose,
                code,
                dest,
                bytes,
                sent: 1,
                due,
            },
        );
        self.retx.insert((due, tx));
        Ok(())
    }

    fn retransmit(&mut self, now: Instant, tx: u64) {
        let Some(p) = self.pending.get_mut(&tx) else {
            return;
        };
        if p.due > now {
            return;
        }
        if p.sent >= self.config.transmissions {
            let p = self.pending.remove(&tx).expect("present");
            self.stats.timeouts += 1;
            self.fail(now, p.purpose, Failure::Timeout);
            return;
        }
        p.sent += 1;
        p.due = now + self.config.reliability_timer;
        let (due, dest, bytes) = (p.due, p.dest.clone(), p.bytes.clone());
        self.retx.insert((due, tx));
        self.stats.retransmissions += 1;
        match self.route_out(&dest) {
            Route::Link(next) => self.transmit(next, bytes),
            _ => self.stats.unroutable += 1,
        }
    }

    /// Sends an answer to a request that reached us: Destination List = the reversed via
    /// list plus the link peer it came from (§6.2.2).
    fn reply(
        &mut self,
        link_peer: NodeId,
        header: &ForwardingHeader,
        contents: MessageContents,
        certs: Vec<GenericCertificate>,
    ) {
        let mut dest: Vec<Destination> = header.via_list.iter().rev().cloned().collect();
        dest.insert(0, Destination::Node(link_peer));
        let bytes = self.build(header.transaction_id, dest, contents, certs);
        self.transmit(link_peer, bytes);
    }

    fn error_back(
        &mut self,
        _now: Instant,
        link_peer: NodeId,
        header: &ForwardingHeader,
        code: ErrorCode,
        info: &str,
    ) {
        let e = ErrorResponse {
            code,
            info: info.as_bytes().to_vec(),
        };
        self.reply(link_peer, header, MessageContents::error(&e), Vec::new());
    }

    // ---- Routing --------------------------------------------------------------------

    /// True if we are a joined peer responsible for `k`.
    fn owns(&self, k: u128) -> bool {
        self.state == State::Joined && !self.config.client && self.chord.responsible(k)
    }

    /// The link toward key `k` when the message is not ours.
    fn route_to_key(&self, k: u128) -> Route {
        if self.config.client || self.state != State::Joined {
            // A client routes through its peer; a joining node through a bootstrap.
            let via = self
                .attached
                .into_iter()
                .chain(self.bootstraps.iter().copied())
                .find(|b| self.links.contains(b));
            return via.map_or(Route::None, Route::Link);
        }
        match self.chord.next_hop(k) {
            Some(n) => Route::Link(n),
            None => Route::None,
        }
    }

    /// Toward a Node-ID that is not ours: straight there if linked (§6.1.2); if we own
    /// its position, it can only be a client of ours, and without a link it is gone.
    fn route_to_node(&self, n: NodeId) -> Route {
        if self.links.contains(&n) {
            return Route::Link(n);
        }
        if self.owns(n.position()) {
            return Route::None;
        }
        self.route_to_key(n.position())
    }

    /// Route of a message we originate.
    fn route_out(&self, dest: &Destination) -> Route {
        match dest {
            Destination::Node(n) if *n == self.me => Route::Local,
            Destination::Node(n) => self.route_to_node(*n),
            Destination::Resource(r) => match id::resource_position(r) {
                Some(k) if self.owns(k) => Route::Local,
                Some(k) => self.route_to_key(k),
                None => Route::None,
            },
            _ => Route::None,
        }
    }

    fn forward(
        &mut self,
        now: Instant,
        link_peer: NodeId,
        mut header: ForwardingHeader,
        payload: &[u8],
        code: MessageCode,
        next: NodeId,
    ) {
        let me = Destination::Node(self.me);
        if header.via_list.contains(&me) {
            self.stats.loops += 1;
            if code.is_request() {
                self.error_back(now, link_peer, &header, ErrorCode::LoopDetected, "loop");
            }
            return;
        }
        if header.ttl <= 1 {
            self.stats.ttl_exceeded += 1;
            if code.is_request() {
                self.error_back(now, link_peer, &header, ErrorCode::TtlExceeded, "ttl");
            }
            return;
        }
        header.ttl -= 1;
        header.via_list.push(Destination::Node(link_peer));
        if !header.encodable(payload.len()) {
            self.stats.malformed += 1;
            return;
        }
        self.stats.forwarded += 1;
        self.transmit(next, header.to_bytes(payload));
    }

    // ---- Receiving ------------------------------------------------------------------

    /// Checks the signature of a message that terminates here; returns the originator.
    ///
    /// A message that comes straight from its originator (empty via list) is taken on the
    /// link's word: the link is a HIP association with that very HIT, whose base exchange
    /// checked the same Ed25519 key and whose ESP authenticates every packet, so the
    /// signature would prove nothing more. Its certificate must still be the link peer's
    /// key (a cached hash), but the signature itself is not checked, which halves the
    /// cost of maintenance between neighbours. Every message is still signed.
    fn verify(&mut self, link_peer: NodeId, msg: &Message) -> Option<NodeId> {
        let origin = match msg.header.via_list.first() {
            Some(Destination::Node(n)) => *n,
            Some(_) => return None,
            None => link_peer,
        };
        let sig = &msg.security.signature;
        if sig.algorithm != SignatureAndHashAlgorithm::ED25519 {
            return None;
        }
        let key = msg
            .security
            .certificates
            .iter()
            .find_map(GenericCertificate::ed25519_key)?;
        if !self.keys.contains_key(&key) {
            let public = PublicIdentity::from_public_bytes(key).ok()?;
            if self.keys.len() >= self.config.max_keys {
                self.keys.clear();
            }
            self.keys.insert(key, public);
        }
        let public = self.keys.get(&key)?;
        if NodeId::from(public.hit()) != origin {
            return None;
        }
        if msg.header.via_list.is_empty() {
            return Some(origin);
        }
        public.verify(&msg.signed_bytes(), &sig.value).ok()?;
        Some(origin)
    }

    fn deliver(&mut self, now: Instant, link_peer: NodeId, bytes: &[u8]) {
        let Ok(msg) = Message::parse(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(origin) = self.verify(link_peer, &msg) else {
            self.stats.bad_signatures += 1;
            if msg.contents.code.is_request() {
                self.error_back(
                    now,
                    link_peer,
                    &msg.header,
                    ErrorCode::Forbidden,
                    "signature",
                );
            }
            return;
        };
        if msg.contents.code.is_request() {
            let direct = msg.header.via_list.is_empty();
            let certs = &msg.security.certificates;
            if let Some((answer, certs)) = self.answer(now, origin, direct, &msg.contents, certs) {
                self.reply(link_peer, &msg.header, answer, certs);
            }
        } else {
            let hops = msg.header.via_list.len() as u32 + 1;
            let Some(p) = self.pending.remove(&msg.header.transaction_id) else {
                return;
            };
            self.retx.remove(&(p.due, msg.header.transaction_id));
            let certs = &msg.security.certificates;
            self.complete(now, p.purpose, p.code, origin, hops, &msg.contents, certs);
        }
    }

    /// Answers a request addressed to us (or to a key we own), with the certificates the
    /// answer must carry. `direct`: it came over the link of its originator (no via
    /// entries). `None`: no answer.
    fn answer(
        &mut self,
        now: Instant,
        origin: NodeId,
        direct: bool,
        contents: &MessageContents,
        certs: &[GenericCertificate],
    ) -> Option<(MessageContents, Vec<GenericCertificate>)> {
        match contents.code {
            MessageCode::StoreReq
            | MessageCode::FetchReq
            | MessageCode::FindReq
            | MessageCode::StatReq => {
                if contents.extensions.iter().any(|e| e.critical) {
                    let e = ErrorResponse {
                        code: ErrorCode::UnknownExtension,
                        info: b"critical extension".to_vec(),
                    };
                    return Some((MessageContents::error(&e), Vec::new()));
                }
                Some(self.data_request(now, origin, direct, contents, certs))
            }
            _ => self
                .answer_request_from(now, origin, direct, contents)
                .map(|c| (c, Vec::new())),
        }
    }

    /// Answers a topology or liveness request.
    fn answer_request_from(
        &mut self,
        now: Instant,
        origin: NodeId,
        direct: bool,
        contents: &MessageContents,
    ) -> Option<MessageContents> {
        let err = |code: ErrorCode, info: &str| {
            Some(MessageContents::error(&ErrorResponse {
                code,
                info: info.as_bytes().to_vec(),
            }))
        };
        if contents.extensions.iter().any(|e| e.critical) {
            return err(ErrorCode::UnknownExtension, "critical extension");
        }
        let body = &contents.body;
        match contents.code {
            MessageCode::PingReq => {
                PingReq::parse(body).ok()?;
                let ans = PingAns {
                    response_id: self.rng.next_u64(),
                    time: self.now_ms(now),
                };
                Some(MessageContents::new(MessageCode::PingAns, ans.to_bytes()))
            }
            MessageCode::UpdateReq => {
                let Ok(update) = ChordUpdate::parse(body) else {
                    return err(ErrorCode::InvalidMessage, "ChordUpdate");
                };
                self.on_update(now, origin, direct, update);
                Some(MessageContents::new(MessageCode::UpdateAns, Vec::new()))
            }
            MessageCode::JoinReq => {
                let Ok(req) = JoinReq::parse(body) else {
                    return err(ErrorCode::InvalidMessage, "JoinReq");
                };
                self.on_join(now, origin, direct, req)
            }
            MessageCode::LeaveReq => {
                let Ok(req) = LeaveReq::parse(body) else {
                    return err(ErrorCode::InvalidMessage, "LeaveReq");
                };
                if req.leaving_peer_id != origin || !direct {
                    return err(ErrorCode::Forbidden, "Leave not from the leaving peer");
                }
                self.on_leave(now, origin, &req);
                Some(MessageContents::new(MessageCode::LeaveAns, Vec::new()))
            }
            MessageCode::RouteQueryReq => {
                let Ok(req) = RouteQueryReq::parse(body) else {
                    return err(ErrorCode::InvalidMessage, "RouteQueryReq");
                };
                let next = match self.route_out(&req.destination) {
                    Route::Link(n) => n,
                    _ => self.me,
                };
                if req.send_update && self.links.contains(&origin) {
                    self.send_update_to(now, origin, true);
                }
                let ans = ChordRouteQueryAns { next_peer: next };
                Some(MessageContents::new(
                    MessageCode::RouteQueryAns,
                    ans.to_bytes(),
                ))
            }
            MessageCode::ProbeReq => {
                let Ok(req) = ProbeReq::parse(body) else {
                    return err(ErrorCode::InvalidMessage, "ProbeReq");
                };
                Some(MessageContents::new(
                    MessageCode::ProbeAns,
                    self.probe(now, &req).to_bytes(),
                ))
            }
            _ => err(ErrorCode::Forbidden, "method not supported"),
        }
    }

    fn probe(&self, now: Instant, req: &ProbeReq) -> ProbeAns {
        use crate::wire::probe_type;
        let mut info = Vec::new();
        for &ty in req.requested.iter().take(8) {
            let value = match ty {
                probe_type::RESPONSIBLE_SET => {
                    let span = match self.chord.predecessor() {
                        Some(p) => id::arc_distance(p.position(), self.me.position()),
                        None => id::ARC_MASK,
                    };
                    // Parts per billion of the arc.
                    ((span >> 32) * 1_000_000_000 / (id::ARC_MASK >> 32).max(1)) as u32
                }
                probe_type::NUM_RESOURCES => self.data.resources().count() as u32,
                probe_type::UPTIME => self.uptime(now),
                _ => continue,
            };
            info.push(ProbeInformation {
                ty,
                value: value.to_be_bytes().to_vec(),
            });
        }
        ProbeAns { info }
    }

    /// An answer (or a local result) for a transaction of ours.
    #[allow(clippy::too_many_arguments)]
    fn complete(
        &mut self,
        now: Instant,
        purpose: Purpose,
        code: MessageCode,
        responder: NodeId,
        hops: u32,
        contents: &MessageContents,
        certs: &[GenericCertificate],
    ) {
        if let Some(e) = contents.as_error() {
            let failure = match e {
                Ok(e) => Failure::Remote(e),
                Err(_) => Failure::BadAnswer("error response"),
            };
            self.fail(now, purpose, failure);
            return;
        }
        if code.answer() != Some(contents.code) {
            self.fail(now, purpose, Failure::BadAnswer("answer code"));
            return;
        }
        match purpose {
            Purpose::App(handle) => {
                let event = match contents.code {
                    MessageCode::PingAns => Ok(Event::PingDone {
                        handle,
                        responder,
                        hops,
                    }),
                    MessageCode::StoreAns => {
                        self.data
                            .store_answer(&contents.body)
                            .map(|answer| Event::StoreDone {
                                handle,
                                answer,
                                hops,
                            })
                    }
                    MessageCode::FetchAns => self
                        .data
                        .fetch_answer(handle, &contents.body, certs)
                        .map(|answer| Event::FetchDone {
                            handle,
                            answer,
                            responder,
                            hops,
                        }),
                    MessageCode::FindAns => FindAns::parse(&contents.body)
                        .map_err(|_| Failure::BadAnswer("FindAns"))
                        .map(|answer| Event::FindDone {
                            handle,
                            answer,
                            hops,
                        }),
                    _ => Err(Failure::BadAnswer("unexpected answer")),
                };
                match event {
                    Ok(e) => self.push_event(e),
                    Err(failure) => self.push_event(Event::Failed { handle, failure }),
                }
            }
            Purpose::JoinLookup => self.found_ap(now, responder),
            Purpose::Join(ap) => {
                if responder != ap || JoinAns::parse(&contents.body).is_err() {
                    self.join_failed(now);
                }
                // Joined once the admitting peer's Update arrives.
            }
            Purpose::Finger(i) => {
                if responder != self.me {
                    // A finger that moved means the ring changed around us (it is still
                    // growing, or churning): look at the next finger soon rather than a
                    // whole interval later. A stable ring costs one lookup per interval.
                    if self.chord.finger(i) != Some(responder) {
                        let soon = now + self.config.finger_interval / FINGER_SPEEDUP;
                        self.next_finger = Some(self.next_finger.map_or(soon, |t| t.min(soon)));
                    }
                    self.consider(now, responder, None);
                }
            }
            Purpose::Maintenance => {}
        }
    }

    fn fail(&mut self, now: Instant, purpose: Purpose, failure: Failure) {
        match purpose {
            Purpose::App(handle) => {
                self.data.forget_fetch(handle);
                self.push_event(Event::Failed { handle, failure })
            }
            Purpose::JoinLookup | Purpose::Join(_) => self.join_failed(now),
            Purpose::Finger(_) | Purpose::Maintenance => {}
        }
    }

    // ---- Topology -------------------------------------------------------------------

    /// The peer we are joining through, while the join is under way.
    fn admitting_peer(&self) -> Option<NodeId> {
        match self.state {
            State::Joining { ap, .. } => ap,
            _ => None,
        }
    }

    fn jittered(&mut self, d: Duration) -> Duration {
        // ±10 %, from the node's generator.
        let r = (self.rng.next_u32() % 2001) as f64 / 10_000.0 - 0.1;
        d.mul_f64(1.0 + r)
    }

    fn start_join(&mut self, now: Instant) {
        if self.state == State::Left {
            return;
        }
        self.state = State::Joining {
            ap: None,
            join_sent: false,
        };
        // The peer responsible for our ID + 1 is our successor-to-be, the admitting peer
        // (§10.5). A client looks for the peer responsible for its own ID (R15).
        let target = if self.config.client {
            self.me.position()
        } else {
            self.me.position().wrapping_add(1)
        };
        let dest = Destination::Resource(ResourceId(target.to_be_bytes().to_vec()));
        let body = PingReq::default().to_bytes();
        if self
            .request(now, dest, MessageCode::PingReq, body, Purpose::JoinLookup)
            .is_err()
        {
            self.join_failed(now);
        }
    }

    fn join_failed(&mut self, now: Instant) {
        if matches!(self.state, State::Joining { .. }) {
            self.state = State::Joining {
                ap: None,
                join_sent: false,
            };
            self.rejoin_at = Some(now + self.config.rejoin_interval);
            self.push_event(Event::JoinFailed);
        }
    }

    fn found_ap(&mut self, now: Instant, ap: NodeId) {
        if !matches!(self.state, State::Joining { ap: None, .. }) || ap == self.me {
            return;
        }
        self.state = State::Joining {
            ap: Some(ap),
            join_sent: false,
        };
        if self.links.contains(&ap) {
            self.ap_linked(now, ap);
        } else {
            self.push_event(Event::Connect {
                peer: ap,
                hint: self.bootstraps.first().copied(),
            });
        }
    }

    /// The link to our admitting peer is up: send the Join (a client is attached now).
    fn ap_linked(&mut self, now: Instant, ap: NodeId) {
        if self.config.client {
            self.attached = Some(ap);
            self.state = State::Joined;
            self.push_event(Event::Joined);
            return;
        }
        self.state = State::Joining {
            ap: Some(ap),
            join_sent: true,
        };
        let body = JoinReq {
            joining_peer_id: self.me,
            overlay_specific_data: Vec::new(),
        }
        .to_bytes();
        if self
            .request(
                now,
                Destination::Node(ap),
                MessageCode::JoinReq,
                body,
                Purpose::Join(ap),
            )
            .is_err()
        {
            self.join_failed(now);
        }
    }

    fn become_joined(&mut self, now: Instant) {
        self.state = State::Joined;
        self.rejoin_at = None;
        self.next_update = Some(now + self.jittered(self.config.update_interval));
        self.next_finger = Some(now + self.config.finger_interval);
        self.push_event(Event::Joined);
        // Look every useful finger up once (the admitting peer's fingers are only near
        // ours); afterwards one per `finger_interval`.
        let useful: Vec<u32> = self.chord.useful_fingers().collect();
        for i in useful {
            self.finger_lookup(now, i);
        }
        self.table_changed(now);
        self.update_soon = Some(now);
    }

    /// A JoinReq (§10.5 steps 5–8, as the admitting peer).
    fn on_join(
        &mut self,
        now: Instant,
        origin: NodeId,
        direct: bool,
        req: JoinReq,
    ) -> Option<MessageContents> {
        let refuse = |code: ErrorCode, info: &str| {
            Some(MessageContents::error(&ErrorResponse {
                code,
                info: info.as_bytes().to_vec(),
            }))
        };
        if req.joining_peer_id != origin || !direct || !self.links.contains(&origin) {
            return refuse(ErrorCode::Forbidden, "Join not from the joining peer");
        }
        if self.state != State::Joined || self.config.client {
            return refuse(ErrorCode::Forbidden, "not a peer");
        }
        let old_pred = self.chord.predecessor();
        if let Some(p) = old_pred {
            if !id::in_open(origin.position(), p.position(), self.me.position()) {
                return refuse(ErrorCode::Forbidden, "not in my predecessor range");
            }
        }
        self.chord.insert(origin);
        // Step 6: hand over the data the joining peer now owns.
        let from = old_pred.unwrap_or(self.me).position();
        self.handover(now, origin, from, origin.position());
        // Step 7: our tables (it names the joiner as our predecessor).
        self.send_update_to(now, origin, true);
        // Step 8: Update our neighbours (reactively, through table_changed).
        self.table_changed(now);
        Some(MessageContents::new(
            MessageCode::JoinAns,
            JoinAns::default().to_bytes(),
        ))
    }

    fn on_leave(&mut self, now: Instant, origin: NodeId, req: &LeaveReq) {
        let listed = match ChordLeaveData::parse(&req.overlay_specific_data) {
            Ok(ChordLeaveData::FromSucc(v)) | Ok(ChordLeaveData::FromPred(v)) => v,
            Err(_) => Vec::new(),
        };
        if self.chord.remove(origin) {
            self.table_changed(now);
        }
        for n in listed.into_iter().take(16) {
            self.consider(now, n, Some(origin));
        }
    }

    /// An Update from `origin` (§10.7.3). Over a direct link the sender is a peer and goes
    /// into the table; every node it lists is a candidate.
    fn on_update(&mut self, now: Instant, origin: NodeId, direct: bool, update: ChordUpdate) {
        if self.config.client || self.state == State::Left {
            return;
        }
        let mut changed = false;
        if direct && self.links.contains(&origin) {
            changed |= self.chord.insert(origin);
        }
        let lists_us = match &update.kind {
            ChordUpdateKind::Neighbors {
                predecessors,
                successors,
            }
            | ChordUpdateKind::Full {
                predecessors,
                successors,
                ..
            } => predecessors.contains(&self.me) || successors.contains(&self.me),
            ChordUpdateKind::PeerReady => false,
        };
        let listed: Vec<NodeId> = match update.kind {
            ChordUpdateKind::PeerReady => Vec::new(),
            ChordUpdateKind::Neighbors {
                predecessors,
                successors,
            } => predecessors.into_iter().chain(successors).collect(),
            ChordUpdateKind::Full {
                predecessors,
                successors,
                fingers,
            } => predecessors
                .into_iter()
                .chain(successors)
                .chain(fingers)
                .collect(),
        };
        for n in listed.into_iter().take(256) {
            changed |= self.consider_quiet(now, n, Some(origin));
        }
        if let State::Joining {
            ap: Some(ap),
            join_sent: true,
        } = self.state
        {
            if ap == origin {
                self.chord.insert(ap);
                self.become_joined(now);
                return;
            }
        }
        if changed {
            self.table_changed(now);
        }
        // The sender takes us for its neighbour but is not ours: its view is stale. Tell it
        // ours, so that it learns of the peers between us (without this, a node whose
        // successor pointer skips joined peers would never hear of them). No ping-pong:
        // our Update does not list the sender, so it does not answer in kind.
        if direct
            && lists_us
            && self.links.contains(&origin)
            && !self.chord.successors().contains(&origin)
            && !self.chord.predecessors().contains(&origin)
        {
            self.send_update_to(now, origin, false);
        }
    }

    /// A peer heard of: into the table if linked and useful, else ask for a link.
    fn consider(&mut self, now: Instant, n: NodeId, hint: Option<NodeId>) {
        if self.consider_quiet(now, n, hint) {
            self.table_changed(now);
        }
    }

    /// `consider` without the follow-up; true if the table changed.
    fn consider_quiet(&mut self, now: Instant, n: NodeId, hint: Option<NodeId>) -> bool {
        if n == self.me || n == NodeId::WILDCARD || self.chord.contains(n) {
            return false;
        }
        if !self.chord.would_keep(n) {
            return false;
        }
        if self.links.contains(&n) {
            return self.chord.insert(n);
        }
        if self.state == State::Joined
            && !self.connecting.contains_key(&n)
            && self.connecting.len() < self.config.max_connecting
        {
            self.connecting.insert(n, now);
            self.push_event(Event::Connect { peer: n, hint });
        }
        false
    }

    /// After any change of the routing table: prune, report neighbour changes, schedule
    /// the reactive Update round and re-replication.
    fn table_changed(&mut self, now: Instant) {
        for gone in self.chord.prune() {
            self.push_event(Event::Disconnect { peer: gone });
        }
        let preds = self.chord.predecessors();
        let succs = self.chord.successors();
        if (&preds, &succs) != (&self.announced.0, &self.announced.1) {
            let pred_changed = preds.first() != self.announced.0.first();
            let succ_changed = succs.iter().take(2).ne(self.announced.1.iter().take(2));
            self.announced = (preds.clone(), succs.clone());
            if self.state == State::Joined {
                if self.update_soon.is_none() {
                    self.update_soon = Some(now + self.config.reactive_delay);
                }
                if pred_changed || succ_changed {
                    self.data.schedule(now + self.config.replica_holddown);
                }
                self.data.neighbours_changed(now);
            }
            self.push_event(Event::NeighboursChanged {
                predecessors: preds,
                successors: succs,
            });
        }
    }

    fn update_body(&self, now: Instant, full: bool) -> Vec<u8> {
        let predecessors = self.chord.predecessors();
        let successors = self.chord.successors();
        let kind = if full {
            let mut fingers: Vec<NodeId> = self
                .chord
                .useful_fingers()
                .filter_map(|i| self.chord.finger(i))
                .collect();
            fingers.sort();
            fingers.dedup();
            ChordUpdateKind::Full {
                predecessors,
                successors,
                fingers,
            }
        } else {
            ChordUpdateKind::Neighbors {
                predecessors,
                successors,
            }
        };
        ChordUpdate {
            uptime: self.uptime(now),
            kind,
        }
        .to_bytes()
    }

    fn send_update_to(&mut self, now: Instant, to: NodeId, full: bool) {
        let body = self.update_body(now, full);
        self.maintenance_request(now, to, MessageCode::UpdateReq, body);
    }

    /// An Update to every neighbour (periodic, or reactive after a change).
    fn send_updates(&mut self, now: Instant) {
        let mut to = self.chord.successors();
        for p in self.chord.predecessors() {
            if !to.contains(&p) {
                to.push(p);
            }
        }
        for n in to {
            self.send_update_to(now, n, false);
        }
    }

    fn queue_finger(&mut self, now: Instant, i: u32) {
        if self.finger_queue.len() < 128 && !self.finger_queue.contains(&i) {
            self.finger_queue.push_back(i);
        }
        let soon = now + Duration::from_secs(1);
        if self.next_finger.is_some_and(|t| t > soon) {
            self.next_finger = Some(soon);
        }
    }

    fn refresh_finger(&mut self, now: Instant) {
        let i = match self.finger_queue.pop_front() {
            Some(i) => i,
            None => {
                let useful: Vec<u32> = self.chord.useful_fingers().collect();
                if useful.is_empty() {
                    return;
                }
                self.finger_cursor = (self.finger_cursor + 1) % useful.len() as u32;
                useful[self.finger_cursor as usize]
            }
        };
        if !self.finger_queue.is_empty() {
            self.next_finger = Some(now + Duration::from_secs(1));
        }
        self.finger_lookup(now, i);
    }

    /// Ping the owner of finger `i`'s target: it is the finger.
    fn finger_lookup(&mut self, now: Instant, i: u32) {
        let Some(t) = finger_target(self.me.position(), i) else {
            return;
        };
        let dest = Destination::Resource(ResourceId(t.to_be_bytes().to_vec()));
        let body = PingReq::default().to_bytes();
        let _ = self.request(now, dest, MessageCode::PingReq, body, Purpose::Finger(i));
    }
}
