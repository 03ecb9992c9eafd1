//! The node's overlay: an [`overlay::node::Node`] whose links are TCP connections between
//! HITs on port 6084 in the node's own userspace stack ([`Netstack`]), carried in the HIP
//! associations. [`crate::node::Node`] hands it the TCP segments that arrive in ESP and
//! seals what [`OverlayLinks::drive`] returns; it runs whenever overlay packets arrived, a
//! timer of the node or the stack is due, or a request came in.
//!
//! Links to HITs the node knows no locator for (every peer but the bootstraps) are opened
//! the HIP BONE way (RFC 7086 §5.3): the I1 goes to the neighbour that told us about the
//! peer, which relays it over its own association (`hip::Config::overlay_relay`).
//!
//! Sans-IO like the rest of the node model: time is passed in, the wall clock the overlay's
//! storage times need is passed in as milliseconds since the epoch, answers to requests
//! come out as [`Answer`]s, and captured segments for a pcap file as [`Capture`]s.

use super::backoff::Backoff;
use super::names::{NameList, Names, Unresolved};
use crate::netstack::{self, LinkEvent, Netstack};
use hip::{Hit, HostIdentity};
use overlay::node::{Config as NodeConfig, Event as NodeEvent, Failure, Node, RequestHandle};
use overlay::storage::{self, access, KindDef};
use overlay::wire::{
    ArrayRange, DataValue, FetchReq, HitLocator, LocatorEntry, NameGrant, NodeId, Selector,
    StoredDataSpecifier, StoredDataValue,
};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Relays remembered for peers being connected to (one entry per `Event::Connect`).
const MAX_HINTS: usize = 1024;
/// Requests waiting for the overlay's answer.
const MAX_WAITING: usize = 64;
/// Captured segments waiting for the driver; past that the oldest go.
const MAX_CAPTURES: usize = 4096;
/// Lifetime of a value stored with `hipbone overlay store`.
const DEBUG_LIFETIME: u32 = 3600;
/// Our HIT-LOCATOR record lives this long (R11: about 10 minutes) and is published again
/// at 90 % of it, at once when our locators change, and after a failed attempt as
/// [`Backoff`] says; the first publications are repeated sooner (`SETTLE`).
const LOCATOR_LIFETIME: u32 = 600;
const LOCATOR_REFRESH: Duration = Duration::from_secs(540);
/// A record of ours (HIT-LOCATOR, name claim) is stored again this long after its first
/// and second Stores, before it settles to its refresh period: while the ring still forms
/// around its owner, a Store can land at a peer that soon gives the range up, and joins
/// that raced may not hand it on. The first repeat catches most (a few nodes starting
/// together), the second the slower.
const SETTLE: [Duration; 2] = [Duration::from_secs(15), Duration::from_secs(45)];
/// A bootstrap node that no other bootstrap let join starts the ring after this long, the
/// first in the list (`ALONE_FIRST`) or another (`ALONE_OTHER`): bootstraps started
/// together join the first one's ring; any one started alone forms a ring.
const ALONE_FIRST: Duration = Duration::from_secs(5);
const ALONE_OTHER: Duration = Duration::from_secs(30);

/// How long after its `stores`-th Store (from 0) a record of ours is stored again.
pub(super) fn store_again_after(stores: u32, refresh: Duration) -> Duration {
    usize::try_from(stores)
        .ok()
        .and_then(|i| SETTLE.get(i))
        .copied()
        .unwrap_or(refresh)
}

/// What the overlay is configured with.
#[derive(Debug, Clone)]
pub struct OverlaySetup {
    pub name: String,
    pub client: bool,
    /// Bootstrap peers (ourselves among them is fine).
    pub bootstraps: Vec<Hit>,
    /// Keep the TCP segments of the overlay's links for a capture.
    pub capture: bool,
    /// The overlay's name signers, and the grant of the name we hold.
    pub signers: Vec<[u8; 32]>,
    pub grant: Option<NameGrant>,
}

/// A request's number, chosen by the caller and given back with its answer.
pub type RequestId = u64;

/// The answer to a store or fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Stored {
        request: RequestId,
        generation: u64,
        replicas: Vec<Hit>,
    },
    Fetched {
        request: RequestId,
        owner: Hit,
        values: Vec<String>,
        /// The owner's HIT-LOCATOR record, if it has one.
        locators: Option<HitLocator>,
        responder: Hit,
        hops: u32,
    },
    Resolved {
        request: RequestId,
        name: String,
        hit: Hit,
        /// When the name's grant ends (Unix seconds; `u64::MAX` for a HIT name).
        expires: u64,
    },
    /// `hipbone name claim` (held) or `name release` (not held) was stored.
    Named {
        request: RequestId,
        name: String,
        held: bool,
    },
    /// No one validly holds the name asked for.
    NoSuchName {
        request: RequestId,
        error: String,
    },
    Failed {
        request: RequestId,
        error: String,
    },
}

impl Answer {
    /// The request this answers.
    pub fn request(&self) -> RequestId {
        match self {
            Answer::Stored { request, .. }
            | Answer::Fetched { request, .. }
            | Answer::Resolved { request, .. }
            | Answer::Named { request, .. }
            | Answer::NoSuchName { request, .. }
            | Answer::Failed { request, .. } => *request,
        }
    }
}

/// One TCP segment of an overlay link, as an IPv6 packet between the HITs, at `at` since the
/// overlay started.
#[derive(Debug, Clone)]
pub struct Capture {
    pub at: Duration,
    pub packet: Vec<u8>,
}

/// What `hipbone overlay status` shows.
#[derive(Debug, Serialize)]
pub struct OverlayStatus {
    pub name: String,
    pub node_id: String,
    pub joined: bool,
    pub client: bool,
    pub predecessors: Vec<String>,
    pub successors: Vec<String>,
    pub fingers: usize,
    /// Where the join stands: "joined", "joining via <bootstrap>", "opening links to the
    /// bootstrap nodes", "trying the bootstrap nodes again in N s".
    pub join: String,
    /// The last thing that went wrong with the join, and how long ago (seconds).
    pub last_failure: Option<(String, f64)>,
    /// Our HIT-LOCATOR record as last stored ("published"), or as it waits to be.
    pub record: RecordStatus,
    /// How many members the ring has, from how close our successors are (Chord's
    /// identifiers are uniform): none before we have one.
    pub ring_size_estimate: Option<u64>,
    pub links: Vec<LinkStatus>,
    pub stored_resources: Vec<String>,
    pub messages_in: u64,
    pub messages_out: u64,
    pub forwarded: u64,
}

/// Our HIT-LOCATOR record, for `hipbone overlay status`.
#[derive(Debug, Serialize)]
pub struct RecordStatus {
    /// "published", "publishing", "waiting" (to join, or to try again), "withdrawn", or
    /// "none" (a client publishes none).
    pub state: &'static str,
    pub locators: Vec<String>,
}

/// One overlay link, for `hipbone overlay status`.
#[derive(Debug, Serialize)]
pub struct LinkStatus {
    pub peer: String,
    /// "up" or "opening".
    pub state: &'static str,
    /// "us" or "peer".
    pub opened_by: &'static str,
}

pub struct OverlayLinks {
    name: String,
    client: bool,
    pub node: Node,
    pub net: Netstack,
    /// Bootstrap peers other than ourselves.
    bootstraps: Vec<Hit>,
    join_started: bool,
    /// Peer → the neighbour that told us about it (relays our I1).
    hints: HashMap<Hit, Hit>,
    waiting: HashMap<RequestHandle, (RequestId, Option<Hit>)>,
    answers: VecDeque<Answer>,
    captures: Option<VecDeque<Capture>>,
    started: Instant,
    me: Hit,
    /// What last went wrong with the join, and when.
    join_failure: Option<(String, Instant)>,
    /// We are one of the bootstrap nodes: when to start a ring of our own if no other
    /// bootstrap has let us join by then (see `ALONE_FIRST`).
    alone_after: Option<Duration>,
    alone_at: Option<Instant>,
    /// When to try the bootstraps again (none answered yet), and the back-off.
    retry_at: Option<Instant>,
    retry_backoff: Backoff,
    /// `drive` has input to process (packets, a request, work left) since this instant.
    due: Option<Instant>,
    deadline: Option<Instant>,
    record: LocatorRecord,
    /// HIT-LOCATOR lookups under way, by the node's handle.
    locating: HashMap<RequestHandle, Hit>,
    /// Lookups that ended: the HIT and its record (none: no record, or the lookup failed).
    located: VecDeque<(Hit, Option<HitLocator>)>,
    /// Every address of ours is private: links to joining peers are opened by them.
    behind_nat: bool,
    /// Our name, and the names being resolved.
    names: Names,
}

/// Our HIT-LOCATOR record (R11): what it should say, what it said when last published,
/// the Store under way, and when it must be published again.
#[derive(Debug, Default)]
struct LocatorRecord {
    locators: Vec<LocatorEntry>,
    /// Stores of it so far (the first ones are repeated sooner).
    stores: u32,
    published: Option<Vec<LocatorEntry>>,
    storing: Option<RequestHandle>,
    again_at: Option<Instant>,
    /// After a failed Store: not before this, even if the record is unpublished.
    retry_at: Option<Instant>,
    /// The last Store was answered by ourselves: our table made us the owner of the
    /// record's key (right after joining it spans a wide range). Once it no longer does,
    /// the record is stored again, so that it reaches the owner.
    kept_here: bool,
    backoff: Backoff,
    /// Leaving: the record is withdrawn (and never published again); the Store of the
    /// deletion while it is under way.
    withdrawn: bool,
    withdrawing: Option<RequestHandle>,
}

impl LocatorRecord {
    /// Whether the record is to be stored now: what it says changed, or its refresh time
    /// came, and no failure asks us to wait.
    fn due(&self, now: Instant) -> bool {
        let changed = self.published.as_ref() != Some(&self.locators);
        let refresh = self.again_at.is_some_and(|t| t <= now);
        (changed || refresh) && self.retry_at.is_none_or(|t| t <= now)
    }

    /// A Store went out (`stored`) or could not start.
    fn started(&mut self, now: Instant, stored: Option<RequestHandle>) {
        match stored {
            Some(handle) => {
                self.storing = Some(handle);
                // Set again by the answer; a failed Store must not look kept here, or the
                // key's move would retry it at once, past the back-off.
                self.kept_here = false;
                self.published = Some(self.locators.clone());
                self.again_at = Some(now + store_again_after(self.stores, LOCATOR_REFRESH));
                self.stores += 1;
            }
            None => self.retry_at = Some(now + self.backoff.failed()),
        }
    }

    /// The Store under way ended.
    fn ended(&mut self, now: Instant, ok: bool) {
        self.storing = None;
        if ok {
            self.backoff.succeeded();
            self.retry_at = None;
        } else {
            self.published = None;
            self.retry_at = Some(now + self.backoff.failed());
        }
    }

    /// When the record is next due, unless its locators change before.
    fn deadline(&self) -> Option<Instant> {
        if self.published.as_ref() != Some(&self.locators) {
            return self.retry_at;
        }
        self.again_at.max(self.retry_at)
    }
}

impl std::fmt::Debug for OverlayLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayLinks")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn node_id(hit: Hit) -> NodeId {
    NodeId(hit.0)
}

fn hit_of(id: NodeId) -> Hit {
    Hit(id.0)
}

impl OverlayLinks {
    /// The overlay of node `identity`; `seed` draws its randomness, `epoch_ms` is the wall
    /// clock now, `mtu` the largest IPv6 packet its links may send.
    pub fn new(
        setup: &OverlaySetup,
        identity: HostIdentity,
        mtu: usize,
        seed: [u8; 32],
        epoch_ms: u64,
        now: Instant,
    ) -> OverlayLinks {
        let me = identity.hit();
        let node_config = NodeConfig {
            overlay: overlay::id::overlay_hash(&setup.name),
            client: setup.client,
            epoch_ms,
            seed,
            data: overlay::node::DataConfig {
                name_signers: setup.signers.clone(),
                ..Default::default()
            },
            ..NodeConfig::default()
        };
        let stack_seed = u64::from_le_bytes(seed[..8].try_into().unwrap_or_default());
        OverlayLinks {
            name: setup.name.clone(),
            client: setup.client,
            node: Node::new(identity, node_config, now),
            net: Netstack::new(me, stack_seed, mtu, now),
            alone_after: setup.bootstraps.iter().position(|h| *h == me).map(|i| {
                if i == 0 {
                    ALONE_FIRST
                } else {
                    ALONE_OTHER
                }
            }),
            alone_at: None,
            bootstraps: setup
                .bootstraps
                .iter()
                .copied()
                .filter(|h| *h != me)
                .collect(),
            join_started: false,
            hints: HashMap::new(),
            waiting: HashMap::new(),
            answers: VecDeque::new(),
            captures: setup.capture.then(VecDeque::new),
            started: now,
            me,
            join_failure: None,
            retry_at: None,
            retry_backoff: Backoff::default(),
            due: Some(now),
            deadline: None,
            record: LocatorRecord::default(),
            locating: HashMap::new(),
            located: VecDeque::new(),
            behind_nat: false,
            names: Names::new(&setup.name, setup.signers.clone(), setup.grant.clone()),
        }
    }

    /// Looks up where `hit` can be reached: its HIT-LOCATOR record, by a directory lookup
    /// (owner and first replica, newest kept, cached). The answer comes from
    /// [`poll_located`](Self::poll_located). False if it cannot start (not joined, too
    /// many requests).
    pub fn locate(&mut self, now: Instant, hit: Hit) -> bool {
        if self.locating.len() >= MAX_WAITING {
            return false;
        }
        let req = FetchReq {
            resource: overlay::id::resource_id(&hit.0),
            specifiers: vec![StoredDataSpecifier {
                kind: KindDef::HIT_LOCATOR.id,
                generation: 0,
                selector: Selector::Single,
            }],
        };
        match self.node.lookup(now, &req) {
            Ok(handle) => {
                self.locating.insert(handle, hit);
                self.due.get_or_insert(now);
                true
            }
            Err(e) => {
                tracing::debug!(peer = %hit, error = ?e, "cannot look the peer up");
                false
            }
        }
    }

    /// A lookup of [`locate`](Self::locate) that ended.
    pub fn poll_located(&mut self) -> Option<(Hit, Option<HitLocator>)> {
        self.located.pop_front()
    }

    /// Where we can be reached (our addresses with the HIP port): the next publication of
    /// our HIT-LOCATOR record says so, at once if that changes what it said.
    pub fn set_locators(&mut self, now: Instant, locators: Vec<LocatorEntry>) {
        if self.record.locators != locators {
            self.record.locators = locators;
            // Something to say that the failed Store did not: no reason to wait.
            self.record.retry_at = None;
            self.due.get_or_insert(now);
        }
    }

    /// Stores our HIT-LOCATOR record, signed by `identity`, when it is due: joined, not a
    /// client, nothing under way, and what it says changed or its refresh time came.
    fn publish_locators(&mut self, now: Instant, identity: &HostIdentity) {
        let r = &self.record;
        let resource = overlay::id::resource_id(&self.me.0);
        let moved_away = r.kept_here && !self.node.owns_resource(&resource);
        if self.client
            || !self.node.is_joined()
            || r.storing.is_some()
            || r.withdrawn
            || !(r.due(now) || moved_away)
        {
            return;
        }
        if moved_away {
            tracing::debug!("our record's key is no longer ours: storing it at its owner");
        }
        let time = self.node.storage_time(now);
        let record = HitLocator {
            sequence: time,
            locators: r.locators.clone(),
        };
        let value = StoredDataValue::Single(DataValue {
            exists: true,
            value: record.to_bytes(),
        });
        let def = KindDef::HIT_LOCATOR;
        let req = storage::signed_store(identity, resource, def.id, time, LOCATOR_LIFETIME, value);
        let stored = self.node.store(now, &req);
        if let Err(e) = &stored {
            tracing::debug!(error = ?e, "cannot publish our locators yet");
        }
        self.record.started(now, stored.ok());
    }

    /// Leaving: withdraws our HIT-LOCATOR record, so that a lookup of our HIT says at once
    /// that we are gone rather than leading to addresses that no longer answer. The
    /// deletion (`exists` false, RFC 6940 §7.4.1.3) is newer than every copy of the
    /// record and lives as long as the record could have, so no copy outlives it. Signed
    /// by `identity`. True when a Store went out ([`withdrawn`](Self::withdrawn) waits
    /// for it).
    pub fn withdraw(&mut self, now: Instant, identity: &HostIdentity) -> bool {
        self.record.withdrawn = true;
        if self.client || !self.node.is_joined() || self.record.published.is_none() {
            return false;
        }
        let time = self.node.storage_time(now);
        let value = StoredDataValue::Single(DataValue {
            exists: false,
            value: Vec::new(),
        });
        let resource = overlay::id::resource_id(&self.me.0);
        let req = storage::signed_store(
            identity,
            resource,
            KindDef::HIT_LOCATOR.id,
            time,
            LOCATOR_LIFETIME,
            value,
        );
        match self.node.store(now, &req) {
            Ok(handle) => {
                self.record.withdrawing = Some(handle);
                self.due.get_or_insert(now);
                true
            }
            Err(e) => {
                tracing::debug!(error = ?e, "cannot withdraw our locators");
                false
            }
        }
    }

    /// The withdrawal of our record was answered (or never started).
    pub fn withdrawn(&self) -> bool {
        self.record.withdrawn && self.record.withdrawing.is_none()
    }

    /// Leaves the ring: our neighbours hear it (Leave) and take over our range.
    pub fn leave(&mut self, now: Instant) {
        self.node.leave(now);
        self.due.get_or_insert(now);
    }

    /// The Store of our record ended: on failure, publish again soon.
    fn locators_stored(&mut self, now: Instant, failure: Option<&Failure>) {
        self.record.ended(now, failure.is_none());
        match failure {
            None => tracing::info!(
                overlay = %self.name,
                locators = self.record.published.as_ref().map_or(0, Vec::len),
                "published our locators"
            ),
            Some(f) => {
                let wait = self.record.retry_at.map(|t| t - now);
                tracing::info!(overlay = %self.name, error = %describe(f), ?wait, "publishing our locators failed; trying again");
            }
        }
    }

    /// Starts: links to the bootstraps, or a ring of our own when we are the only one.
    pub fn start(&mut self, now: Instant) {
        self.due.get_or_insert(now);
        if self.bootstraps.is_empty() {
            tracing::info!(overlay = %self.name, "no other bootstrap: starting the ring");
            self.join_started = true;
            self.node.join(now, &[]);
            return;
        }
        self.alone_at = self.alone_after.map(|d| now + d);
        self.connect_bootstraps(now);
    }

    /// A bootstrap node that no other bootstrap let join (none is up, or none has joined
    /// yet) starts the ring: the first in the configuration's list soon, the others later,
    /// so that bootstraps started together form one ring, and any of them alone forms one.
    fn start_alone_if_due(&mut self, now: Instant) {
        if self.alone_at.is_none_or(|t| t > now) {
            return;
        }
        if self.node.is_joined() {
            self.alone_at = None;
        } else if self.join_started {
            // A join under way: let it end first.
            self.alone_at = Some(now + Duration::from_secs(1));
        } else {
            self.alone_at = None;
            tracing::info!(overlay = %self.name, "no other bootstrap let us join: starting the ring");
            self.join_started = true;
            self.node.join(now, &[]);
        }
    }

    fn connect_bootstraps(&mut self, now: Instant) {
        for b in self.bootstraps.clone() {
            if let Err(e) = self.net.connect(now, b) {
                tracing::warn!(bootstrap = %b, error = %e, "cannot open an overlay link");
            }
        }
    }

    /// Every address of ours is private (set by the node from its addresses).
    pub fn set_behind_nat(&mut self, behind: bool) {
        self.behind_nat = behind;
        self.node.set_behind_nat(behind);
    }

    /// The peers we have an overlay link with.
    pub fn link_peers(&self) -> impl Iterator<Item = Hit> + '_ {
        self.node.links().map(hit_of)
    }

    /// The bootstrap nodes (other than ourselves).
    pub fn bootstraps(&self) -> &[Hit] {
        &self.bootstraps
    }

    /// Where to send an I1 for `peer` when no locator is configured: the neighbour that
    /// told us about it.
    pub fn relay_for(&self, peer: &Hit) -> Option<Hit> {
        self.hints.get(peer).copied()
    }

    /// As if neighbour `via` had named `peer` (for simulations of the hint's path).
    #[doc(hidden)]
    pub fn set_hint(&mut self, peer: Hit, via: Hit) {
        self.hints.insert(peer, via);
    }

    /// An inner TCP packet for the stack.
    pub fn receive(&mut self, now: Instant, peer: Hit, segment: &[u8]) {
        self.capture(now, peer, self.me, segment);
        self.net.receive(peer, segment);
        self.due.get_or_insert(now);
    }

    /// A HIP association ended: its overlay link is gone too.
    pub fn association_lost(&mut self, now: Instant, peer: Hit) {
        self.net.close(peer);
        // The neighbour's word led nowhere (it may pass our I1 on through a path whose
        // answer does not come back to us): the next attempt looks the peer's record up.
        self.hints.remove(&peer);
        self.due.get_or_insert(now);
    }

    fn capture(&mut self, now: Instant, src: Hit, dst: Hit, segment: &[u8]) {
        if let Some(captures) = self.captures.as_mut() {
            if captures.len() == MAX_CAPTURES {
                captures.pop_front();
            }
            captures.push_back(Capture {
                at: now.saturating_duration_since(self.started),
                packet: netstack::ipv6_tcp(src, dst, segment),
            });
        }
    }

    /// The next captured segment, when capturing.
    pub fn poll_capture(&mut self) -> Option<Capture> {
        self.captures.as_mut()?.pop_front()
    }

    /// The next answer to a request.
    pub fn poll_answer(&mut self) -> Option<Answer> {
        self.answers.pop_front()
    }

    /// When `drive` must run next: at once (the instant its input came) if it has input,
    /// else when the node, the stack or a bootstrap retry is due, as of the last `drive`
    /// (nothing changes that between drives without input, so the stack is not asked on
    /// every turn).
    pub fn deadline(&self) -> Option<Instant> {
        self.due.or(self.deadline)
    }

    fn next_deadline(&mut self, now: Instant) -> Option<Instant> {
        [
            self.node.poll_timeout(),
            self.net.poll_at(now),
            self.retry_at,
            self.alone_at,
            self.record.deadline(),
            self.names.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the node and the stack until neither has anything left to hand over; returns
    /// the TCP segments to seal (peer, segment).
    pub fn drive(&mut self, now: Instant, identity: &HostIdentity) -> Vec<(Hit, Vec<u8>)> {
        self.due = None;
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            tracing::info!(overlay = %self.name, "trying the bootstrap nodes again");
            self.connect_bootstraps(now);
        }
        self.start_alone_if_due(now);
        let mut out = Vec::new();
        let mut progress = true;
        for _ in 0..16 {
            // Each turn: the join may have completed, or our addresses changed.
            self.publish_locators(now, identity);
            self.names.publish(now, &mut self.node, identity);
            self.net.poll(now);
            progress = false;
            while let Some(e) = self.net.poll_event() {
                progress = true;
                match e {
                    LinkEvent::Up(peer) => {
                        tracing::debug!(me = %self.me, peer = %peer, "overlay link up");
                        self.node.link_up(now, node_id(peer));
                        if !self.join_started && self.bootstraps.contains(&peer) {
                            self.join_started = true;
                            tracing::info!(overlay = %self.name, via = %peer, "joining");
                            self.node.join(now, &[node_id(peer)]);
                        }
                    }
                    LinkEvent::Down(peer) => {
                        tracing::debug!(me = %self.me, peer = %peer, "overlay link down");
                        self.node.link_down(now, node_id(peer));
                        // A bootstrap's link went before we joined (none came up yet, or
                        // the bootstrap let it go while our join was still under way, and
                        // with it our only route): try the bootstraps again later, backing
                        // off, and join afresh over the first link that comes up.
                        if !self.node.is_joined()
                            && self.bootstraps.contains(&peer)
                            && self.retry_at.is_none()
                        {
                            let why = format!("the link to bootstrap {peer} went down");
                            self.join_failure = Some((why, now));
                            self.join_started = false;
                            self.retry_at = Some(now + self.retry_backoff.failed());
                        }
                    }
                }
            }
            while let Some((peer, message)) = self.net.poll_message() {
                progress = true;
                self.node.handle_message(now, node_id(peer), &message);
            }
            while let Some((to, message)) = self.node.poll_transmit() {
                progress = true;
                let to = hit_of(to);
                if let Err(e) = self.net.send(now, to, &message) {
                    tracing::debug!(peer = %to, error = %e, "overlay message dropped");
                }
            }
            while let Some(e) = self.node.poll_event() {
                progress = true;
                self.on_event(now, e);
            }
            self.net.poll(now);
            while let Some((peer, segment)) = self.net.poll_transmit() {
                progress = true;
                self.capture(now, self.me, peer, &segment);
                out.push((peer, segment));
            }
            if !progress {
                break;
            }
        }
        // Stopped with work left: run again before waiting.
        self.due = progress.then_some(now);
        self.deadline = self.next_deadline(now);
        out
    }

    fn on_event(&mut self, now: Instant, e: NodeEvent) {
        let unix = self.node.storage_time(now) / 1000;
        let ours = match &e {
            NodeEvent::StoreDone { handle, .. } => Some((*handle, Ok(None))),
            NodeEvent::FetchDone { handle, answer, .. } => Some((*handle, Ok(Some(answer)))),
            NodeEvent::Failed { handle, failure } => Some((*handle, Err(failure))),
            _ => None,
        };
        if let NodeEvent::StoreDone { handle, hops, .. } = &e {
            self.names.answered_by_us(*handle, *hops == 0);
        }
        if let Some((handle, outcome)) = ours {
            if self.names.ended(now, unix, handle, outcome) {
                self.collect_names();
                return;
            }
        }
        match e {
            NodeEvent::Connect { peer, hint } => {
                let peer = hit_of(peer);
                if let Some(h) = hint {
                    if self.hints.len() >= MAX_HINTS {
                        self.hints.clear();
                    }
                    self.hints.insert(peer, hit_of(h));
                }
                if self.behind_nat && !self.node.is_joined() && !self.bootstraps.contains(&peer) {
                    // Our I1 would not be answered through the NAT: the admitting peer
                    // connects to us instead (`overlay::Node::connect_back`), and a link of
                    // ours pending meanwhile would win the tie over its link and stall.
                    tracing::debug!(peer = %peer, "behind a NAT: waiting for the peer to open the link");
                    return;
                }
                if let Err(e) = self.net.connect(now, peer) {
                    tracing::debug!(peer = %peer, error = %e, "cannot open an overlay link");
                    self.node.link_down(now, node_id(peer));
                }
            }
            NodeEvent::Disconnect { peer } => self.net.close(hit_of(peer)),
            NodeEvent::Joined => tracing::info!(overlay = %self.name, "joined the overlay"),
            NodeEvent::JoinFailed => {
                tracing::info!(overlay = %self.name, "join failed; retrying");
                let why = "the join was not answered".to_string();
                self.join_failure = Some((why, now));
                self.join_started = false;
            }
            NodeEvent::NeighboursChanged {
                predecessors,
                successors,
            } => {
                tracing::debug!(?predecessors, ?successors, "overlay neighbours");
            }
            NodeEvent::FetchDone { handle, answer, .. } if self.locating.contains_key(&handle) => {
                if let Some(hit) = self.locating.remove(&handle) {
                    self.located.push_back((hit, hit_locator(&answer)));
                }
            }
            NodeEvent::Failed { handle, failure } if self.locating.contains_key(&handle) => {
                if let Some(hit) = self.locating.remove(&handle) {
                    tracing::debug!(peer = %hit, error = %describe(&failure), "looking the peer up failed");
                    self.located.push_back((hit, None));
                }
            }
            NodeEvent::StoreDone { handle, .. } if self.record.withdrawing == Some(handle) => {
                self.record.withdrawing = None;
                tracing::info!(overlay = %self.name, "withdrew our locators");
            }
            NodeEvent::Failed { handle, failure } if self.record.withdrawing == Some(handle) => {
                self.record.withdrawing = None;
                tracing::info!(overlay = %self.name, error = %describe(&failure), "withdrawing our locators failed");
            }
            NodeEvent::StoreDone { handle, hops, .. } if self.record.storing == Some(handle) => {
                self.record.kept_here = hops == 0;
                self.locators_stored(now, None);
            }
            NodeEvent::Failed { handle, failure } if self.record.storing == Some(handle) => {
                self.locators_stored(now, Some(&failure));
            }
            NodeEvent::StoreDone { handle, answer, .. } => {
                if let Some((request, _)) = self.waiting.remove(&handle) {
                    self.answers.push_back(Answer::Stored {
                        request,
                        generation: answer.kind_responses.first().map_or(0, |k| k.generation),
                        replicas: answer
                            .kind_responses
                            .iter()
                            .flat_map(|k| k.replicas.iter().map(|r| hit_of(*r)))
                            .collect(),
                    });
                }
            }
            NodeEvent::FetchDone {
                handle,
                answer,
                responder,
                hops,
            } => {
                if let Some((request, owner)) = self.waiting.remove(&handle) {
                    let values = answer
                        .kind_responses
                        .iter()
                        .flat_map(|k| &k.values)
                        .filter_map(|v| match &v.value {
                            StoredDataValue::Array { value, .. } if value.exists => {
                                Some(String::from_utf8_lossy(&value.value).into_owned())
                            }
                            _ => None,
                        })
                        .collect();
                    let locators = hit_locator(&answer);
                    self.answers.push_back(Answer::Fetched {
                        request,
                        owner: owner.unwrap_or(self.me),
                        values,
                        locators,
                        responder: hit_of(responder),
                        hops,
                    });
                }
            }
            NodeEvent::Failed { handle, failure } => {
                if let Some((request, _)) = self.waiting.remove(&handle) {
                    self.answers.push_back(Answer::Failed {
                        request,
                        error: describe(&failure),
                    });
                }
            }
            other => tracing::debug!(event = ?other, "overlay event"),
        }
    }

    /// `hipbone resolve NAME`: the HIT `name` stands for; the answer comes as an
    /// [`Answer`] for `request`.
    pub fn resolve(&mut self, now: Instant, name: &str, request: RequestId) {
        self.due.get_or_insert(now);
        self.names.resolve(now, &mut self.node, name, request);
        self.collect_names();
    }

    /// `hipbone name claim LABEL --grant G`: we hold the name from now on; the answer
    /// comes once its claim is stored (or refused at once, if the grant does not hold).
    pub fn claim_name(&mut self, now: Instant, label: &str, grant: NameGrant, request: RequestId) {
        let unix = self.node.storage_time(now) / 1000;
        match self.names.claim(unix, label, grant, self.me, request) {
            Ok(()) => {
                self.due.get_or_insert(now);
            }
            Err(e) => self.refuse(request, format!("the grant does not hold: {e}")),
        }
    }

    /// `hipbone name release`: our name's claim is deleted from the overlay.
    pub fn release_name(&mut self, now: Instant, identity: &HostIdentity, request: RequestId) {
        match self.names.release(now, &mut self.node, identity, request) {
            Ok(()) => {
                self.due.get_or_insert(now);
            }
            Err(e) => self.refuse(request, e),
        }
    }

    /// What `hipbone name list` shows.
    pub fn names(&self, now: Instant) -> NameList {
        self.names.list(now)
    }

    fn collect_names(&mut self) {
        while let Some(s) = self.names.poll_settled() {
            self.answers.push_back(match s.result {
                Ok(held) => Answer::Named {
                    request: s.request,
                    name: s.name,
                    held,
                },
                Err(why) => Answer::Failed {
                    request: s.request,
                    error: format!("{}: {why}", s.name),
                },
            });
        }
        while let Some(r) = self.names.poll() {
            self.answers.push_back(match r.result {
                Ok(found) => Answer::Resolved {
                    request: r.request,
                    name: r.name,
                    hit: found.hit,
                    expires: found.expires,
                },
                Err(Unresolved::NoSuchName(why)) => Answer::NoSuchName {
                    request: r.request,
                    error: format!("{}: {why}", r.name),
                },
                Err(Unresolved::Failed(why)) => Answer::Failed {
                    request: r.request,
                    error: format!("{}: {why}", r.name),
                },
            });
        }
    }

    fn refuse(&mut self, request: RequestId, error: impl Into<String>) {
        self.answers.push_back(Answer::Failed {
            request,
            error: error.into(),
        });
    }

    /// `hipbone overlay store VALUE`: appends VALUE to our debugging array (stored at the
    /// Resource-ID of our own HIT, NODE-MATCH), signed by `identity` with storage time
    /// `epoch_ms`. The answer comes as an [`Answer`] for `request`.
    pub fn store(
        &mut self,
        now: Instant,
        epoch_ms: u64,
        identity: &HostIdentity,
        value: &[u8],
        request: RequestId,
    ) {
        self.due.get_or_insert(now);
        if value.len() > crate::control::MAX_VALUE {
            let e = format!(
                "the value is longer than {} bytes",
                crate::control::MAX_VALUE
            );
            return self.refuse(request, e);
        }
        if self.waiting.len() >= MAX_WAITING {
            return self.refuse(request, "too many requests waiting");
        }
        let def = KindDef::DEBUG_ARRAY;
        let Some(resource) = access::owned_resource(&def, node_id(self.me)) else {
            return self.refuse(request, "no resource for this kind");
        };
        // RFC 6940 §7.2.2: index 0xffffffff appends.
        let value = StoredDataValue::Array {
            index: u32::MAX,
            value: DataValue {
                exists: true,
                value: value.to_vec(),
            },
        };
        let req =
            storage::signed_store(identity, resource, def.id, epoch_ms, DEBUG_LIFETIME, value);
        match self.node.store(now, &req) {
            Ok(handle) => {
                self.waiting.insert(handle, (request, None));
            }
            Err(e) => self.refuse(request, format!("{e:?}")),
        }
    }

    /// `hipbone overlay fetch HIT`: the debugging array of the node `owner`.
    pub fn fetch(&mut self, now: Instant, owner: Hit, request: RequestId) {
        self.due.get_or_insert(now);
        if self.waiting.len() >= MAX_WAITING {
            return self.refuse(request, "too many requests waiting");
        }
        let def = KindDef::DEBUG_ARRAY;
        let Some(resource) = access::owned_resource(&def, node_id(owner)) else {
            return self.refuse(request, "no resource for this kind");
        };
        // The debugging array and the HIT-LOCATOR record live at the same Resource-ID
        // (both NODE-MATCH): one Fetch asks for both.
        let req = FetchReq {
            resource,
            specifiers: vec![
                StoredDataSpecifier {
                    kind: def.id,
                    generation: 0,
                    selector: Selector::Array(vec![ArrayRange {
                        first: 0,
                        last: KindDef::MAX_ARRAY_LEN - 1,
                    }]),
                },
                StoredDataSpecifier {
                    kind: KindDef::HIT_LOCATOR.id,
                    generation: 0,
                    selector: Selector::Single,
                },
            ],
        };
        match self.node.fetch(now, &req) {
            Ok(handle) => {
                self.waiting.insert(handle, (request, Some(owner)));
            }
            Err(e) => self.refuse(request, format!("{e:?}")),
        }
    }

    pub fn status(&self, now: Instant) -> OverlayStatus {
        let chord = self.node.chord();
        let join = if self.node.is_joined() {
            "joined".to_string()
        } else if let Some(at) = self.retry_at {
            let left = at.saturating_duration_since(now).as_secs();
            format!("trying the bootstrap nodes again in {left} s")
        } else if self.join_started {
            let via = self.net.links().find(|p| self.bootstraps.contains(p));
            via.map_or("joining".to_string(), |b| format!("joining via {b}"))
        } else {
            "opening links to the bootstrap nodes".to_string()
        };
        let r = &self.record;
        let record = RecordStatus {
            state: if self.client {
                "none"
            } else if r.withdrawn {
                "withdrawn"
            } else if r.published.is_some() {
                "published"
            } else if r.storing.is_some() {
                "publishing"
            } else {
                "waiting"
            },
            locators: r
                .published
                .as_ref()
                .unwrap_or(&r.locators)
                .iter()
                .map(describe_locator)
                .collect(),
        };
        let successors = chord.successors();
        let show = |ids: Vec<NodeId>| ids.into_iter().map(|n| hit_of(n).to_string()).collect();
        OverlayStatus {
            name: self.name.clone(),
            node_id: self.me.to_string(),
            joined: self.node.is_joined(),
            client: self.client,
            predecessors: show(chord.predecessors()),
            fingers: chord
                .useful_fingers()
                .filter(|i| chord.finger(*i).is_some())
                .count(),
            join,
            last_failure: self.join_failure.as_ref().map(|(why, at)| {
                let ago = now.saturating_duration_since(*at).as_secs_f64();
                (why.clone(), ago)
            }),
            record,
            ring_size_estimate: ring_size(node_id(self.me), &successors),
            successors: show(successors),
            links: self
                .net
                .link_states()
                .map(|(peer, up, ours)| LinkStatus {
                    peer: peer.to_string(),
                    state: if up { "up" } else { "opening" },
                    opened_by: if ours { "us" } else { "peer" },
                })
                .collect(),
            stored_resources: self
                .node
                .stored_resources()
                .map(|r| r.0.iter().map(|b| format!("{b:02x}")).collect())
                .collect(),
            messages_in: self.net.counters().messages_in,
            messages_out: self.net.counters().messages_out,
            forwarded: self.node.stats().forwarded,
        }
    }
}

/// The ring's size, estimated from how much of the identifier space our successors
/// span: Node-IDs are HITs, uniform over the 2^96 values their hash leaves (ORCHIDv2:
/// a 28-bit prefix and a 4-bit OGA ID precede it), so k successors within a distance d
/// put about k · 2^96 / d members on the ring (a ring whose successor is ourselves has
/// one).
fn ring_size(me: NodeId, successors: &[NodeId]) -> Option<u64> {
    let last = successors.last()?;
    if *last == me {
        return Some(1);
    }
    let k = successors.len() as u128;
    // Measured in the hash's bits alone, so that the highest HIT's successor, the lowest,
    // is as near as any other (on the 128-bit ring the gap outside the prefix lies
    // between them).
    let hash = |id: &NodeId| u128::from_be_bytes(id.0) & ((1u128 << 96) - 1);
    let span = hash(last).wrapping_sub(hash(&me)) & ((1u128 << 96) - 1);
    let per_member = (span / k).max(1);
    // At least the members we know of.
    let n = ((1u128 << 96) / per_member).clamp(k + 1, u128::from(u64::MAX));
    Some(n as u64)
}

/// One entry of a HIT-LOCATOR record as the CLI shows it: "host 198.51.100.2:10500".
pub fn describe_locator(l: &LocatorEntry) -> String {
    match l {
        LocatorEntry::Host(a) => format!("host {a}"),
        LocatorEntry::ServerReflexive(a) => format!("server-reflexive {a}"),
        LocatorEntry::Relayed { addr, relay } => {
            format!("relayed {addr} via {}", Hit::from(*relay))
        }
    }
}

/// The HIT-LOCATOR record in a Fetch answer, if it holds one that parses (its signature
/// and Kind were checked when the answer arrived).
fn hit_locator(answer: &overlay::wire::FetchAns) -> Option<HitLocator> {
    answer
        .kind_responses
        .iter()
        .filter(|k| k.kind == KindDef::HIT_LOCATOR.id)
        .flat_map(|k| &k.values)
        .find_map(|v| match &v.value {
            StoredDataValue::Single(d) if d.exists => HitLocator::parse(&d.value).ok(),
            _ => None,
        })
}

pub(super) fn describe(f: &Failure) -> String {
    match f {
        Failure::Timeout => "no answer from the overlay".to_string(),
        Failure::Remote(e) => format!(
            "refused by the overlay ({:?}: {})",
            e.code,
            String::from_utf8_lossy(&e.info)
        ),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(x: u128) -> NodeId {
        NodeId(x.to_be_bytes())
    }

    #[test]
    fn the_ring_size_follows_from_how_close_the_successors_are() {
        let me = id(u128::MAX - 10);
        assert_eq!(ring_size(me, &[]), None);
        assert_eq!(ring_size(me, &[me]), Some(1));
        // Four successors spanning a quarter of the HITs' space (wrapping past zero): 16
        // members.
        let quarter = 1u128 << 94;
        let succ: Vec<NodeId> = (1..=4)
            .map(|i| id((u128::MAX - 10).wrapping_add(i * (quarter / 4))))
            .collect();
        assert_eq!(ring_size(me, &succ), Some(16));
        // Never fewer than the members we know of.
        let far = [id(u128::MAX - 20)];
        assert_eq!(ring_size(me, &far), Some(2));
        let near = [id(u128::MAX - 9)];
        assert_eq!(
            ring_size(me, &near),
            Some(u64::MAX),
            "at most what a u64 holds"
        );
    }

    #[test]
    fn a_record_is_stored_again_soon_twice_then_at_its_refresh_period() {
        let refresh = Duration::from_secs(540);
        let waits: Vec<u64> = (0..4)
            .map(|n| store_again_after(n, refresh).as_secs())
            .collect();
        assert_eq!(waits, [15, 45, 540, 540]);
        assert_eq!(store_again_after(u32::MAX, refresh), refresh);
    }

    #[test]
    fn a_failed_store_of_our_record_waits_longer_each_time_before_the_next() {
        let t0 = Instant::now();
        let secs = |s| Duration::from_secs(s);
        let mut r = LocatorRecord {
            locators: vec![LocatorEntry::Host("198.51.100.2:10500".parse().unwrap())],
            ..LocatorRecord::default()
        };
        assert!(r.due(t0), "never published");
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..7 {
            r.started(now, Some(RequestHandle(1)));
            assert!(!r.due(now), "under way");
            // Refused at once, as a routing loop is: unpublished, but not due again at once.
            r.ended(now, false);
            assert!(!r.due(now) && !r.due(now + secs(1)));
            let next = r.deadline().expect("a retry is scheduled");
            assert!(r.due(next));
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        // New locators are worth a Store at once; a success ends the back-off.
        r.locators.push(LocatorEntry::ServerReflexive(
            "203.0.113.34:10500".parse().unwrap(),
        ));
        r.retry_at = None;
        assert!(r.due(now));
        r.started(now, Some(RequestHandle(2)));
        r.ended(now, true);
        assert_eq!(r.deadline(), r.again_at);
        r.started(now, None);
        assert_eq!(r.retry_at, Some(now + secs(2)));
    }

    #[test]
    fn locators_are_described_as_the_cli_shows_them() {
        let a = "198.51.100.2:10500".parse().unwrap();
        assert_eq!(
            describe_locator(&LocatorEntry::Host(a)),
            "host 198.51.100.2:10500"
        );
        let r = LocatorEntry::ServerReflexive(a);
        assert_eq!(describe_locator(&r), "server-reflexive 198.51.100.2:10500");
    }
}
