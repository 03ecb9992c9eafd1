//! The overlay in the daemon: an [`overlay::node::Node`] whose links are TCP connections
//! between HITs on port 6084 in the node's own userspace stack ([`Netstack`]), carried in
//! the HIP associations. The daemon's loop calls [`Overlay::drive`] whenever overlay
//! packets arrived, a timer of the node or the stack is due, or a request came in.
//!
//! Links to HITs the node knows no locator for (every peer but the bootstraps) are opened
//! the HIP BONE way (RFC 7086 §5.3): the I1 goes to the neighbour that told us about the
//! peer, which relays it over its own association (`hip::Config::overlay_relay`).

use crate::config::Overlay as OverlayConfig;
use crate::netstack::{self, LinkEvent, Netstack};
use crate::sim::pcap;
use hip::{Hit, HostIdentity};
use overlay::node::{Config as NodeConfig, Event as NodeEvent, Failure, Node, RequestHandle};
use overlay::storage::{self, access, KindDef};
use overlay::wire::{
    ArrayRange, DataValue, FetchReq, NodeId, Selector, Signature, StoreKindData, StoreReq,
    StoredData, StoredDataSpecifier, StoredDataValue,
};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Relays remembered for peers being connected to (one entry per `Event::Connect`).
const MAX_HINTS: usize = 1024;
/// Control requests waiting for the overlay's answer.
const MAX_WAITING: usize = 64;
/// Lifetime of a value stored with `hipbone overlay store`.
const DEBUG_LIFETIME: u32 = 3600;

/// A control request waiting for its answer from the overlay.
enum Waiting {
    Store(UnixStream),
    Fetch(UnixStream, Hit),
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
    pub links: Vec<String>,
    pub stored_resources: Vec<String>,
    pub messages_in: u64,
    pub messages_out: u64,
    pub forwarded: u64,
}

pub struct Overlay {
    name: String,
    client: bool,
    pub node: Node,
    pub net: Netstack,
    /// Bootstrap peers other than ourselves.
    bootstraps: Vec<Hit>,
    join_started: bool,
    /// Peer → the neighbour that told us about it (relays our I1).
    hints: HashMap<Hit, Hit>,
    waiting: HashMap<RequestHandle, Waiting>,
    pcap: Option<(std::io::BufWriter<std::fs::File>, Instant)>,
    me: Hit,
    /// When to try the bootstraps again (none answered yet), and the back-off.
    retry_at: Option<Instant>,
    retry_delay: Duration,
    /// `drive` stopped with work left: call it again before waiting.
    pub more: bool,
    deadline: Option<Instant>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
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

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Overlay {
    pub fn new(
        config: &OverlayConfig,
        identity: HostIdentity,
        mtu: usize,
        now: Instant,
    ) -> anyhow::Result<Overlay> {
        let me = identity.hit();
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)
            .map_err(|e| anyhow::anyhow!("drawing randomness from the operating system: {e}"))?;
        let node_config = NodeConfig {
            overlay: overlay::id::overlay_hash(&config.name),
            client: config.client,
            epoch_ms: epoch_ms(),
            seed,
            ..NodeConfig::default()
        };
        let stack_seed = u64::from_le_bytes(seed[..8].try_into().unwrap_or_default());
        let pcap = match &config.pcap {
            Some(path) => {
                let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| {
                    anyhow::anyhow!("overlay.pcap: cannot create {}: {e}", path.display())
                })?);
                f.write_all(&pcap::file_header())?;
                f.flush()?;
                Some((f, now))
            }
            None => None,
        };
        Ok(Overlay {
            name: config.name.clone(),
            client: config.client,
            node: Node::new(identity, node_config, now),
            net: Netstack::new(me, stack_seed, mtu, now),
            bootstraps: config
                .bootstrap
                .iter()
                .map(|b| b.hit)
                .filter(|h| *h != me)
                .collect(),
            join_started: false,
            hints: HashMap::new(),
            waiting: HashMap::new(),
            pcap,
            me,
            retry_at: None,
            retry_delay: RETRY_FIRST,
            more: false,
            deadline: None,
        })
    }

    /// Starts: links to the bootstraps, or a ring of our own when we are the only one.
    pub fn start(&mut self, now: Instant) {
        if self.bootstraps.is_empty() {
            tracing::info!(overlay = %self.name, "no other bootstrap: starting the ring");
            self.join_started = true;
            self.node.join(now, &[]);
            return;
        }
        self.connect_bootstraps(now);
    }

    fn connect_bootstraps(&mut self, now: Instant) {
        for b in self.bootstraps.clone() {
            if let Err(e) = self.net.connect(now, b) {
                tracing::warn!(bootstrap = %b, error = %e, "cannot open an overlay link");
            }
        }
    }

    /// Where to send an I1 for `peer` when no locator is configured: the current address
    /// of the neighbour that told us about it.
    pub fn relay_for(&self, peer: &Hit) -> Option<Hit> {
        self.hints.get(peer).copied()
    }

    /// An inner TCP packet for the stack.
    pub fn receive(&mut self, now: Instant, peer: Hit, segment: &[u8]) {
        self.capture(now, peer, self.me, segment);
        self.net.receive(peer, segment);
    }

    /// A HIP association ended: its overlay link is gone too.
    pub fn association_lost(&mut self, peer: Hit) {
        self.net.close(peer);
    }

    fn capture(&mut self, now: Instant, src: Hit, dst: Hit, segment: &[u8]) {
        if let Some((f, start)) = self.pcap.as_mut() {
            let packet = netstack::ipv6_tcp(src, dst, segment);
            let at = now.saturating_duration_since(*start);
            if f.write_all(&pcap::record(at, &packet))
                .and_then(|()| f.flush())
                .is_err()
            {
                tracing::warn!("writing the overlay capture failed; capture stopped");
                self.pcap = None;
            }
        }
    }

    /// When the node or the stack next has something to do, as of the last `drive`:
    /// nothing changes that between drives without setting the daemon's `overlay_due`,
    /// so the event loop reads it without asking smoltcp on every turn.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        [
            self.node.poll_timeout(),
            self.net.poll_at(now),
            self.retry_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the node and the stack until neither has anything left to hand over; returns
    /// the TCP segments to seal (peer, segment).
    pub fn drive(&mut self, now: Instant) -> Vec<(Hit, Vec<u8>)> {
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            tracing::info!(overlay = %self.name, "trying the bootstrap nodes again");
            self.connect_bootstraps(now);
        }
        let mut out = Vec::new();
        self.more = true;
        for _ in 0..16 {
            self.net.poll(now);
            let mut progress = false;
            while let Some(e) = self.net.poll_event() {
                progress = true;
                match e {
                    LinkEvent::Up(peer) => {
                        tracing::debug!(peer = %peer, "overlay link up");
                        self.node.link_up(now, node_id(peer));
                        if !self.join_started && self.bootstraps.contains(&peer) {
                            self.join_started = true;
                            tracing::info!(overlay = %self.name, via = %peer, "joining");
                            self.node.join(now, &[node_id(peer)]);
                        }
                    }
                    LinkEvent::Down(peer) => {
                        tracing::debug!(peer = %peer, "overlay link down");
                        self.node.link_down(now, node_id(peer));
                        // No bootstrap came up yet: try them again later, backing off.
                        if !self.join_started
                            && self.bootstraps.contains(&peer)
                            && self.retry_at.is_none()
                        {
                            self.retry_at = Some(now + self.retry_delay);
                            self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
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
                self.more = false;
                break;
            }
        }
        self.deadline = self.poll_timeout(now);
        out
    }

    fn on_event(&mut self, now: Instant, e: NodeEvent) {
        match e {
            NodeEvent::Connect { peer, hint } => {
                let peer = hit_of(peer);
                if let Some(h) = hint {
                    if self.hints.len() >= MAX_HINTS {
                        self.hints.clear();
                    }
                    self.hints.insert(peer, hit_of(h));
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
                self.join_started = false;
            }
            NodeEvent::NeighboursChanged {
                predecessors,
                successors,
            } => {
                tracing::debug!(?predecessors, ?successors, "overlay neighbours");
            }
            NodeEvent::StoreDone { handle, answer, .. } => {
                if let Some(Waiting::Store(s)) = self.waiting.remove(&handle) {
                    let replicas: Vec<String> = answer
                        .kind_responses
                        .iter()
                        .flat_map(|k| k.replicas.iter().map(|r| hit_of(*r).to_string()))
                        .collect();
                    let generation = answer.kind_responses.first().map_or(0, |k| k.generation);
                    reply(
                        s,
                        &serde_json::json!({"stored": true, "generation": generation, "replicas": replicas}),
                    );
                }
            }
            NodeEvent::FetchDone {
                handle,
                answer,
                responder,
                hops,
            } => {
                if let Some(Waiting::Fetch(s, owner)) = self.waiting.remove(&handle) {
                    let values: Vec<String> = answer
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
                    reply(
                        s,
                        &serde_json::json!({
                            "owner": owner.to_string(),
                            "values": values,
                            "responder": hit_of(responder).to_string(),
                            "hops": hops,
                        }),
                    );
                }
            }
            NodeEvent::Failed { handle, failure } => {
                if let Some(w) = self.waiting.remove(&handle) {
                    let s = match w {
                        Waiting::Store(s) | Waiting::Fetch(s, _) => s,
                    };
                    reply(s, &serde_json::json!({"error": describe(&failure)}));
                }
            }
            other => tracing::debug!(event = ?other, "overlay event"),
        }
    }

    /// `hipbone overlay store VALUE`: appends VALUE to our debugging array (stored at the
    /// Resource-ID of our own HIT, NODE-MATCH). The answer goes to `stream` later.
    pub fn store(
        &mut self,
        now: Instant,
        identity: &HostIdentity,
        value: &[u8],
        stream: UnixStream,
    ) {
        if value.len() > crate::control::MAX_VALUE {
            let e = format!(
                "the value is longer than {} bytes",
                crate::control::MAX_VALUE
            );
            return reply(stream, &serde_json::json!({ "error": e }));
        }
        if self.waiting.len() >= MAX_WAITING {
            return reply(
                stream,
                &serde_json::json!({"error": "too many requests waiting"}),
            );
        }
        let def = KindDef::DEBUG_ARRAY;
        let Some(resource) = access::owned_resource(&def, node_id(self.me)) else {
            return reply(
                stream,
                &serde_json::json!({"error": "no resource for this kind"}),
            );
        };
        let mut data = StoredData {
            storage_time: epoch_ms(),
            lifetime: DEBUG_LIFETIME,
            value: StoredDataValue::Array {
                // RFC 6940 §7.2.2: 0xffffffff appends.
                index: u32::MAX,
                value: DataValue {
                    exists: true,
                    value: value.to_vec(),
                },
            },
            signature: Signature::anonymous(),
        };
        storage::sign_value(identity, &resource, def.id, &mut data);
        let req = StoreReq {
            resource,
            replica_number: 0,
            kind_data: vec![StoreKindData {
                kind: def.id,
                generation: 0,
                values: vec![data],
            }],
        };
        match self.node.store(now, &req) {
            Ok(handle) => {
                self.waiting.insert(handle, Waiting::Store(stream));
            }
            Err(e) => reply(stream, &serde_json::json!({"error": format!("{e:?}")})),
        }
    }

    /// `hipbone overlay fetch HIT`: the debugging array of the node `owner`.
    pub fn fetch(&mut self, now: Instant, owner: Hit, stream: UnixStream) {
        if self.waiting.len() >= MAX_WAITING {
            return reply(
                stream,
                &serde_json::json!({"error": "too many requests waiting"}),
            );
        }
        let def = KindDef::DEBUG_ARRAY;
        let Some(resource) = access::owned_resource(&def, node_id(owner)) else {
            return reply(
                stream,
                &serde_json::json!({"error": "no resource for this kind"}),
            );
        };
        let req = FetchReq {
            resource,
            specifiers: vec![StoredDataSpecifier {
                kind: def.id,
                generation: 0,
                selector: Selector::Array(vec![ArrayRange {
                    first: 0,
                    last: KindDef::MAX_ARRAY_LEN - 1,
                }]),
            }],
        };
        match self.node.fetch(now, &req) {
            Ok(handle) => {
                self.waiting.insert(handle, Waiting::Fetch(stream, owner));
            }
            Err(e) => reply(stream, &serde_json::json!({"error": format!("{e:?}")})),
        }
    }

    pub fn status(&self) -> OverlayStatus {
        let chord = self.node.chord();
        let show = |ids: Vec<NodeId>| ids.into_iter().map(|n| hit_of(n).to_string()).collect();
        OverlayStatus {
            name: self.name.clone(),
            node_id: self.me.to_string(),
            joined: self.node.is_joined(),
            client: self.client,
            predecessors: show(chord.predecessors()),
            successors: show(chord.successors()),
            fingers: chord
                .useful_fingers()
                .filter(|i| chord.finger(*i).is_some())
                .count(),
            links: self.net.links().map(|h| h.to_string()).collect(),
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

fn describe(f: &Failure) -> String {
    match f {
        Failure::Timeout => "no answer from the overlay".to_string(),
        other => format!("{other:?}"),
    }
}

/// Answers a waiting control client; one that does not read cannot hold up the loop.
fn reply(mut stream: UnixStream, answer: &serde_json::Value) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let _ = stream.write_all(answer.to_string().as_bytes());
}

/// Back-off of bootstrap retries.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// How long the CLI waits for a store or fetch: the node's own retransmissions (R13:
/// 5 sends, 3 s apart) and a margin.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
