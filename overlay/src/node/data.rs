//! The node's side of storage: Store / Fetch / Find requests against [`storage::Store`],
//! replication to the two successors (R6), hand-over to a joining predecessor, expiry,
//! and the checks on Fetch answers.

use super::{answer, Error, Failure, Node, RequestHandle};
use crate::id;
use crate::storage::{self, Certificates, Kinds, Store, StoreLimits, Writer};
use crate::wire::{
    Destination, ErrorCode, ErrorResponse, FetchAns, FetchReq, FindAns, FindKindData, FindReq,
    GenericCertificate, MessageCode, MessageContents, NodeId, ResourceId, StoreAns,
};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Kinds of the overlay and the limits of the local store.
#[derive(Debug, Clone)]
pub struct DataConfig {
    pub kinds: Kinds,
    pub limits: StoreLimits,
    /// The overlay's name signers (`storage::Store::with_name_signers`).
    pub name_signers: Vec<[u8; 32]>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            kinds: Kinds::hipbone(),
            limits: StoreLimits::default(),
            name_signers: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub(super) struct Data {
    kinds: Kinds,
    /// `None` for a client (R15: clients store nothing).
    store: Option<Store>,
    /// The next replication round (after the hold-down).
    replicate_at: Option<Instant>,
    /// The last change of our predecessors or first successors: data we no longer need
    /// is dropped only once the neighbourhood has been quiet for a while.
    changed_at: Option<Instant>,
    /// Fetch requests in flight, to check their answers against.
    fetches: HashMap<RequestHandle, FetchReq>,
    /// Records waiting to be copied (replicas, hand-overs), oldest first.
    copies: VecDeque<CopyJob>,
    /// Copies sent and not answered yet, by number.
    copying: HashMap<u64, CopyJob>,
    next_copy: u64,
}

/// A Store of records to another peer: a replica, or a hand-over to a joining peer.
#[derive(Debug)]
struct CopyJob {
    to: NodeId,
    body: Vec<u8>,
    certs: Vec<GenericCertificate>,
    tries: u8,
}

/// Copies in flight at once: a replication round of thousands of Resources goes out at
/// the pace its answers come back, and leaves the rest of the maintenance budget alone.
const COPY_WINDOW: usize = 16;
/// Sends of one copy at most, each with the transaction's own retransmissions: a copy
/// that timed out is queued again while its peer is still linked.
const COPY_TRIES: u8 = 3;

impl Data {
    pub(super) fn new(config: &DataConfig, client: bool) -> Data {
        Data {
            kinds: config.kinds.clone(),
            store: (!client).then(|| {
                Store::with_limits(config.kinds.clone(), config.limits)
                    .with_name_signers(config.name_signers.clone())
            }),
            replicate_at: None,
            changed_at: None,
            fetches: HashMap::new(),
            copies: VecDeque::new(),
            copying: HashMap::new(),
            next_copy: 0,
        }
    }

    pub(super) fn resources(&self) -> Box<dyn Iterator<Item = &ResourceId> + '_> {
        match &self.store {
            Some(s) => Box::new(s.resources()),
            None => Box::new(core::iter::empty()),
        }
    }

    /// Our neighbourhood changed at `now` (see `changed_at`).
    pub(super) fn neighbours_changed(&mut self, now: Instant) {
        self.changed_at = Some(now);
    }

    pub(super) fn schedule(&mut self, at: Instant) {
        if self.store.is_some() && self.replicate_at.is_none_or(|t| t > at) {
            self.replicate_at = Some(at);
        }
    }

    pub(super) fn clear_schedule(&mut self) {
        self.replicate_at = None;
    }

    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.replicate_at
    }

    pub(super) fn due(&mut self, now: Instant) -> bool {
        if self.replicate_at.is_some_and(|t| t <= now) {
            self.replicate_at = None;
            return true;
        }
        false
    }

    pub(super) fn store_answer(&self, body: &[u8]) -> Result<StoreAns, Failure> {
        StoreAns::parse(body).map_err(|_| Failure::BadAnswer("StoreAns"))
    }

    pub(super) fn fetch_answer(
        &mut self,
        handle: RequestHandle,
        body: &[u8],
        certs: &[GenericCertificate],
    ) -> Result<FetchAns, Failure> {
        let req = self
            .fetches
            .remove(&handle)
            .ok_or(Failure::BadAnswer("unexpected FetchAns"))?;
        let ans = FetchAns::parse(body, |k| self.kinds.model(k))
            .map_err(|_| Failure::BadAnswer("FetchAns"))?;
        let verified =
            storage::verify_fetch_answer(&self.kinds, &req, &ans, &Certificates::from_block(certs));
        if !verified.rejected.is_empty() {
            return Err(Failure::BadAnswer("a fetched value failed its checks"));
        }
        Ok(ans)
    }

    pub(super) fn forget_fetch(&mut self, handle: RequestHandle) {
        self.fetches.remove(&handle);
    }

    /// Copies queued or in flight.
    pub(super) fn copies(&self) -> usize {
        self.copies.len() + self.copying.len()
    }
}

impl Node {
    /// Fetch: remembered so that the answer can be checked against it.
    pub(super) fn note_fetch(&mut self, handle: RequestHandle, req: &FetchReq) {
        self.data.fetches.insert(handle, req.clone());
    }

    /// A Store, Fetch or Find that reached us; the answer and the certificates its
    /// security block must carry.
    pub(super) fn data_request(
        &mut self,
        now: Instant,
        origin: NodeId,
        direct: bool,
        contents: &MessageContents,
        certs: &[GenericCertificate],
    ) -> (MessageContents, Vec<GenericCertificate>) {
        let error = |e: ErrorResponse| (MessageContents::error(&e), Vec::new());
        let refuse = |code: ErrorCode, info: &str| (answer::error(code, info), Vec::new());
        let now_ms = self.now_ms(now);
        let body = &contents.body;
        match contents.code {
            MessageCode::StoreReq => {
                let req = match self.data.kinds.parse_store(body) {
                    Ok(r) => r,
                    Err(e) => return error(e.response()),
                };
                let Some(pos) = id::resource_position(&req.resource) else {
                    return refuse(ErrorCode::InvalidMessage, "Resource-ID length");
                };
                let writer = if req.replica_number == 0 {
                    // The records a join hands over (§10.5 step 6) come from the admitting
                    // peer, often before its Update has told us our place: taken on its
                    // word for the range behind it and us; once we are joined, from our
                    // first two successors (the admitting peer was the first; both hold
                    // our copies, `replicate`) for the range we own. Copies are paced, so
                    // some arrive after the Update.
                    let me = self.me.position();
                    let from_ap = self.admitting_peer() == Some(origin)
                        && !id::in_open_closed(pos, me, origin.position());
                    let from_successor =
                        self.chord.successors().iter().take(2).any(|s| *s == origin)
                            && self.owns(pos);
                    let handover = direct && (from_ap || from_successor);
                    if handover {
                        Writer::Copy
                    } else if self.owns(pos) {
                        Writer::Signer(origin)
                    } else {
                        return refuse(ErrorCode::NotFound, "not responsible");
                    }
                } else if direct && self.replicates_for(origin, pos) {
                    Writer::Copy
                } else {
                    return refuse(ErrorCode::Forbidden, "replica not from its owner");
                };
                let Some(store) = self.data.store.as_mut() else {
                    return refuse(ErrorCode::Forbidden, "a client stores nothing");
                };
                match store.store(now_ms, &req, &Certificates::from_block(certs), writer) {
                    Ok(mut ans) => {
                        if req.replica_number == 0 {
                            let succs: Vec<NodeId> =
                                self.chord.successors().into_iter().take(2).collect();
                            for k in &mut ans.kind_responses {
                                k.replicas = succs.clone();
                            }
                            // A hand-over came from a holder that has it already; the next
                            // replication round covers our other successor.
                            let original = writer != Writer::Copy;
                            for (n, s) in succs.iter().enumerate().filter(|_| original) {
                                let mut copy = req.clone();
                                copy.replica_number = n as u8 + 1;
                                self.send_store(now, *s, copy.to_bytes(), certs.to_vec());
                            }
                        }
                        (
                            MessageContents::new(MessageCode::StoreAns, ans.to_bytes()),
                            Vec::new(),
                        )
                    }
                    Err(e) => error(e.response()),
                }
            }
            MessageCode::FetchReq => {
                let req = match self.data.kinds.parse_fetch(body) {
                    Ok(r) => r,
                    Err(e) => return error(e.response()),
                };
                let Some(store) = self.data.store.as_ref() else {
                    return refuse(ErrorCode::Forbidden, "a client stores nothing");
                };
                match store.fetch(now_ms, &req) {
                    Ok(f) => (
                        MessageContents::new(MessageCode::FetchAns, f.ans.to_bytes()),
                        f.certificates,
                    ),
                    Err(e) => error(e.response()),
                }
            }
            MessageCode::FindReq => {
                let Ok(req) = FindReq::parse(body) else {
                    return refuse(ErrorCode::InvalidMessage, "FindReq");
                };
                let Some(store) = self.data.store.as_ref() else {
                    return refuse(ErrorCode::Forbidden, "a client stores nothing");
                };
                let from = id::resource_position(&req.resource).unwrap_or(0);
                let mut results = Vec::new();
                for &kind in req.kinds.iter().take(64) {
                    // The closest Resource-ID at or after the requested one that holds
                    // this Kind (RFC 6940 §7.4.4); empty if none.
                    let closest = store
                        .resources()
                        .filter(|r| store.generation(r, kind) > 0)
                        .filter_map(|r| id::resource_position(r).map(|p| (p, r)))
                        .min_by_key(|(p, _)| id::distance(from, *p))
                        .map(|(_, r)| r.clone())
                        .unwrap_or_default();
                    results.push(FindKindData { kind, closest });
                }
                (
                    MessageContents::new(MessageCode::FindAns, FindAns { results }.to_bytes()),
                    Vec::new(),
                )
            }
            _ => refuse(ErrorCode::Forbidden, "Stat is not supported; use Probe"),
        }
    }

    /// May `origin` push replicas of the Resource at `pos` to us? Only if it owns it as
    /// far as we can tell: `origin` is one of our predecessors (§10.4's "plausible
    /// predecessor") and it can own `pos`: no peer we know, nor we, lie between the key and
    /// it (`Chord::could_own`). A peer cannot plant copies for the rest of the ring.
    fn replicates_for(&self, origin: NodeId, pos: u128) -> bool {
        self.chord.predecessors().contains(&origin) && self.chord.could_own(pos, origin, true)
    }

    /// Queues a Store of records to `to` and sends what the window allows.
    fn send_store(
        &mut self,
        now: Instant,
        to: NodeId,
        body: Vec<u8>,
        certs: Vec<GenericCertificate>,
    ) {
        if self.data.copies.len() >= self.config.max_copies {
            self.stats.overflows += 1;
            return;
        }
        let job = CopyJob {
            to,
            body,
            certs,
            tries: 0,
        };
        self.data.copies.push_back(job);
        self.pump_copies(now);
    }

    /// Sends queued copies while fewer than `COPY_WINDOW` wait for their answer and
    /// maintenance has room for them.
    pub(super) fn pump_copies(&mut self, now: Instant) {
        while self.data.copying.len() < COPY_WINDOW {
            let Some(job) = self.data.copies.pop_front() else {
                return;
            };
            let n = self.data.next_copy;
            self.data.next_copy += 1;
            let (to, body, certs) = (job.to, job.body.clone(), job.certs.clone());
            // In the books first: a Store we can answer ourselves completes at once.
            self.data.copying.insert(n, job);
            let purpose = super::transaction::Purpose::Copy(n);
            let dest = Destination::Node(to);
            match self.request(now, dest, MessageCode::StoreReq, body, purpose, certs) {
                Ok(()) => {}
                Err(Error::TooManyRequests) => {
                    if let Some(job) = self.data.copying.remove(&n) {
                        self.data.copies.push_front(job);
                    }
                    return;
                }
                Err(_) => {
                    self.data.copying.remove(&n);
                    self.stats.copies_failed += 1;
                }
            }
        }
    }

    /// Copy `n` was answered (`None`) or failed. One that timed out goes back in the queue
    /// while its peer is linked and it has tries left; a refusal is final.
    pub(super) fn copy_done(&mut self, now: Instant, n: u64, failure: Option<&Failure>) {
        if let Some(mut job) = self.data.copying.remove(&n) {
            match failure {
                None => {}
                Some(Failure::Timeout)
                    if job.tries + 1 < COPY_TRIES && self.links.contains(&job.to) =>
                {
                    job.tries += 1;
                    self.stats.copy_retries += 1;
                    self.data.copies.push_back(job);
                }
                Some(_) => self.stats.copies_failed += 1,
            }
        }
        self.pump_copies(now);
    }

    /// Stores every record we hold in `(from, to]` at `to_node` as replica
    /// `replica_number`; replica 0 hands them over to their new owner (a joining peer,
    /// §10.5 step 6).
    pub(super) fn send_records(
        &mut self,
        now: Instant,
        to_node: NodeId,
        from: u128,
        to: u128,
        replica_number: u8,
    ) {
        let now_ms = self.now_ms(now);
        let max_body = self.config.max_message.saturating_sub(1000);
        let Some(store) = self.data.store.as_ref() else {
            return;
        };
        for mut t in store.records_in(now_ms, from, to, replica_number, max_body) {
            if replica_number == 0 {
                // The joining peer holds nothing yet, so a generation counter (which must
                // match what the storing peer holds, §7.4.1) would make it refuse the lot.
                // Handed over unconditionally; its counters start again there.
                for kd in &mut t.req.kind_data {
                    kd.generation = 0;
                }
            }
            self.send_store(now, to_node, t.req.to_bytes(), t.certificates);
        }
    }

    /// A replication round (R6, after the hold-down): everything we own goes to our two
    /// successors as replicas 1 and 2, and what we hold of our first two predecessors'
    /// ranges back to them; data further back than our third predecessor is dropped
    /// (§10.7.3).
    pub(super) fn replicate(&mut self, now: Instant) {
        let Some(pred) = self.chord.predecessor() else {
            return;
        };
        let now_ms = self.now_ms(now);
        let me = self.me.position();
        let succs: Vec<NodeId> = self.chord.successors().into_iter().take(2).collect();
        let preds = self.chord.predecessors();
        let Some(store) = self.data.store.as_mut() else {
            return;
        };
        store.expire(now_ms);
        // Records behind our third predecessor are no longer ours to keep — unless the
        // ring around us changed lately: then a neighbour may still be waiting for its
        // copy (its own round comes after the hold-down), and ours may be the last one.
        let quiet = self
            .data
            .changed_at
            .is_none_or(|t| now.saturating_duration_since(t) >= 2 * self.config.replica_holddown);
        if quiet && preds.len() >= 3 && !succs.contains(&preds[2]) {
            store.remove_outside(preds[2].position(), me);
        }
        // What is still queued for our successors from an earlier round goes again, newer.
        self.data.copies.retain(|c| !succs.contains(&c.to));
        for (n, s) in succs.iter().enumerate() {
            self.send_records(now, *s, pred.position(), me, n as u8 + 1);
        }
        // Our first two predecessors' ranges, back to them: an owner may lack what its
        // replicas hold. A peer that joined through us after the owner before it died
        // unnoticed got from us only the range behind that owner; once the death is known
        // it owns the dead peer's range too. When the first replica died as well, only the
        // second holds the copies. A copy the owner refused (it did not know the range
        // was its own yet) goes again next round. Usually the owner holds them already,
        // and the copies change nothing there.
        for (owner, before) in preds.iter().zip(preds.iter().skip(1)).take(2) {
            self.send_records(now, *owner, before.position(), owner.position(), 0);
        }
        // Expiry rides on the replication rounds; keep one at least every few minutes.
        self.data.schedule(now + Duration::from_secs(300));
    }
}

#[cfg(test)]
impl Node {
    pub(super) fn data_store_mut(&mut self) -> &mut Store {
        self.data.store.as_mut().expect("a peer stores")
    }

    pub(super) fn kinds(&self) -> &Kinds {
        &self.data.kinds
    }
}

impl Node {
    /// Drops everything stored at `resource`, as if its values were lost; true if there
    /// were any. For simulations of lost records.
    #[doc(hidden)]
    pub fn lose_resource(&mut self, resource: &ResourceId) -> bool {
        self.data
            .store
            .as_mut()
            .is_some_and(|s| s.drop_resource(resource))
    }

    /// Whether this node holds values of `kind` at `resource` (owner or replica).
    pub fn holds(&self, resource: &ResourceId, kind: crate::wire::KindId) -> bool {
        self.generation(resource, kind) > 0
    }

    /// The generation counter of what we store of `kind` at `resource` (RFC 6940 §7.4.1.3:
    /// each accepted Store raises it); 0 when we store nothing there.
    pub fn generation(&self, resource: &ResourceId, kind: crate::wire::KindId) -> u64 {
        self.data
            .store
            .as_ref()
            .map_or(0, |s| s.generation(resource, kind))
    }
}
