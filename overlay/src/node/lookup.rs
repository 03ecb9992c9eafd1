//! Lookups for the directory: a Fetch answered by the owner of a Resource **and** by the
//! peer after it (its first replica, R6), the newest valid value of each slot kept, and
//! the result cached for what is left of its life.
//!
//! The owner alone can withhold a value or serve an older one: every value is signed, so
//! it cannot forge one, but it can choose which of the signed ones to show. Its first
//! successor holds a copy; it is reached without knowing it by routing to the position
//! right after the owner (the owner's successor owns it) with the same Fetch body, and a
//! peer answers a Fetch from its store whoever owns the key. Asking it after the owner
//! answered costs a second lookup's time; the cache makes repeated lookups free.
//!
//! "No such record" is an answer like any other: `Event::FetchDone` whose values are all
//! synthesised ("exists" false) — both holders were asked. It is cached for
//! [`NEGATIVE_TTL`] only, so that a record stored a moment later is found.

use super::{Error, Event, Failure, Node, RequestHandle};
use crate::wire::{
    Destination, FetchAns, FetchReq, MessageCode, NodeId, ResourceId, StoredData, StoredDataValue,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an answer that holds no value is cached.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// How long an answer is cached at most, whatever its values' lifetimes: a record its
/// owner changed or deleted (a released name, a withdrawn locator) is seen by then.
pub const MAX_TTL: Duration = Duration::from_secs(300);

/// A lookup between its two answers.
#[derive(Debug)]
pub(super) struct Lookup {
    /// The embedder's handle.
    handle: RequestHandle,
    req: FetchReq,
    /// The owner's answer, once it came.
    owner: Option<(FetchAns, NodeId, u32)>,
}

/// Lookups under way and their cache.
#[derive(Debug, Default)]
pub(super) struct Lookups {
    /// By the handle of the Fetch under way (the owner's, then the replica's).
    steps: HashMap<RequestHandle, Lookup>,
    /// By the encoded Fetch: the answer, who gave it, and until when it holds.
    cache: HashMap<Vec<u8>, (FetchAns, NodeId, Instant)>,
}

impl Lookups {
    pub(super) fn owns(&self, step: RequestHandle) -> bool {
        self.steps.contains_key(&step)
    }

    pub(super) fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// Where a value sits in its Kind, to match the owner's with the replica's.
fn slot(d: &StoredData) -> (u8, Vec<u8>) {
    match &d.value {
        StoredDataValue::Single(_) => (0, Vec::new()),
        StoredDataValue::Array { index, .. } => (1, index.to_be_bytes().to_vec()),
        StoredDataValue::Dictionary { key, .. } => (2, key.clone()),
    }
}

/// Each slot's newer value of the two answers (both already checked against the request
/// and their signatures): the owner's, unless the replica's is newer. Values only the
/// replica has are added.
fn newest(owner: FetchAns, replica: &FetchAns) -> FetchAns {
    let mut out = owner;
    for theirs in &replica.kind_responses {
        let Some(ours) = out
            .kind_responses
            .iter_mut()
            .find(|k| k.kind == theirs.kind)
        else {
            continue;
        };
        ours.generation = ours.generation.max(theirs.generation);
        for v in &theirs.values {
            match ours.values.iter_mut().find(|o| slot(o) == slot(v)) {
                Some(o) if o.storage_time < v.storage_time => *o = v.clone(),
                Some(_) => {}
                None => ours.values.push(v.clone()),
            }
        }
    }
    out
}

/// True if the answer holds a value that exists (not only synthesised absences).
pub fn holds_values(ans: &FetchAns) -> bool {
    ans.kind_responses
        .iter()
        .any(|k| k.values.iter().any(|v| v.value.data().exists))
}

/// Until when an answer may be served from the cache: its shortest remaining lifetime
/// up to [`MAX_TTL`], or [`NEGATIVE_TTL`] for no value.
fn holds_until(now: Instant, ans: &FetchAns) -> Instant {
    let shortest = ans
        .kind_responses
        .iter()
        .flat_map(|k| &k.values)
        .filter(|v| v.storage_time > 0)
        .map(|v| Duration::from_secs(u64::from(v.lifetime)))
        .min();
    match shortest {
        Some(life) if holds_values(ans) => now + life.min(MAX_TTL),
        _ => now + NEGATIVE_TTL,
    }
}

impl Node {
    /// A directory lookup of `req`: the owner's answer and its first replica's, merged
    /// (newest value per slot), or the cached result. Completes with
    /// [`Event::FetchDone`] (`responder` the owner, or ourselves for a cached answer with
    /// `hops` 0) or `Failed`.
    pub fn lookup(&mut self, now: Instant, req: &FetchReq) -> Result<RequestHandle, Error> {
        let key = req.to_bytes();
        let handle = self.next_handle();
        match self.lookups.cache.get(&key) {
            Some((answer, responder, until)) if *until > now => {
                let (answer, responder) = (answer.clone(), *responder);
                self.stats.lookups_cached += 1;
                self.push_event(Event::FetchDone {
                    handle,
                    answer,
                    responder,
                    hops: 0,
                });
                return Ok(handle);
            }
            Some(_) => {
                self.lookups.cache.remove(&key);
            }
            None => {}
        }
        let dest = Destination::Resource(req.resource.clone());
        self.lookup_step(now, handle, req.clone(), None, dest)?;
        Ok(handle)
    }

    /// Sends one Fetch of a lookup to `dest`, booked under a fresh handle.
    fn lookup_step(
        &mut self,
        now: Instant,
        handle: RequestHandle,
        req: FetchReq,
        owner: Option<(FetchAns, NodeId, u32)>,
        dest: Destination,
    ) -> Result<(), Error> {
        let step = self.next_handle();
        let body = req.to_bytes();
        let lookup = Lookup { handle, req, owner };
        let fetch = lookup.req.clone();
        self.lookups.steps.insert(step, lookup);
        let sent = self.app_request_as(
            step,
            now,
            dest,
            MessageCode::FetchReq,
            body,
            Some(&fetch),
            Vec::new(),
        );
        if sent.is_err() {
            self.lookups.steps.remove(&step);
        }
        sent
    }

    /// A step of a lookup ended: the owner's answer leads to the replica; the replica's
    /// (or its failure: the owner's answer stands) ends the lookup.
    pub(super) fn lookup_answered(
        &mut self,
        now: Instant,
        step: RequestHandle,
        result: Result<(FetchAns, NodeId, u32), Failure>,
    ) {
        let Some(lookup) = self.lookups.steps.remove(&step) else {
            return;
        };
        let Lookup { handle, req, owner } = lookup;
        match (owner, result) {
            (None, Ok((answer, responder, hops))) => {
                // The owner's successor owns the position right after it.
                let next = responder.position().wrapping_add(1);
                let dest = Destination::Resource(ResourceId(next.to_be_bytes().to_vec()));
                let owner = Some((answer.clone(), responder, hops));
                if self
                    .lookup_step(now, handle, req.clone(), owner, dest)
                    .is_err()
                {
                    self.stats.lookup_replica_missed += 1;
                    self.lookup_done(now, handle, &req, answer, responder, hops);
                }
            }
            (None, Err(failure)) => self.push_event(Event::Failed { handle, failure }),
            (Some((answer, responder, hops)), Ok((replica, _, _))) => {
                self.stats.lookups_both += 1;
                let merged = newest(answer, &replica);
                self.lookup_done(now, handle, &req, merged, responder, hops);
            }
            (Some((answer, responder, hops)), Err(_)) => {
                self.stats.lookup_replica_missed += 1;
                self.lookup_done(now, handle, &req, answer, responder, hops);
            }
        }
    }

    fn lookup_done(
        &mut self,
        now: Instant,
        handle: RequestHandle,
        req: &FetchReq,
        answer: FetchAns,
        responder: NodeId,
        hops: u32,
    ) {
        if self.lookups.cache.len() >= self.config.max_cached {
            // Expired entries first; if none, the cache starts over (bounded, and a
            // cache only saves time).
            self.lookups.cache.retain(|_, (_, _, until)| *until > now);
            if self.lookups.cache.len() >= self.config.max_cached {
                self.lookups.cache.clear();
            }
        }
        let until = holds_until(now, &answer);
        self.lookups
            .cache
            .insert(req.to_bytes(), (answer.clone(), responder, until));
        self.push_event(Event::FetchDone {
            handle,
            answer,
            responder,
            hops,
        });
    }

    /// Forgets cached answers for `resource` (its record is known to have changed, e.g.
    /// the peer it names could not be reached at what it said).
    pub fn forget_cached(&mut self, resource: &ResourceId) {
        // The encoded Fetch starts with the encoded Resource-ID.
        let prefix = resource.to_bytes();
        self.lookups.cache.retain(|k, _| !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{DataValue, FetchKindResponse, Signature, StoredData, StoredDataValue};

    fn answer(values: &[(u32, bool)]) -> FetchAns {
        let values = values
            .iter()
            .map(|&(lifetime, exists)| StoredData {
                storage_time: 1,
                lifetime,
                value: StoredDataValue::Single(DataValue {
                    exists,
                    value: Vec::new(),
                }),
                signature: Signature::anonymous(),
            })
            .collect();
        FetchAns {
            kind_responses: vec![FetchKindResponse {
                kind: 1,
                generation: 1,
                values,
            }],
        }
    }

    #[test]
    fn answers_are_cached_for_their_shortest_life_within_bounds() {
        let now = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(
            holds_until(now, &answer(&[(60, true), (90, true)])),
            now + s(60)
        );
        assert_eq!(holds_until(now, &answer(&[(3600, true)])), now + MAX_TTL);
        assert_eq!(
            holds_until(now, &answer(&[(3600, false)])),
            now + NEGATIVE_TTL
        );
        assert_eq!(holds_until(now, &answer(&[])), now + NEGATIVE_TTL);
    }
}
