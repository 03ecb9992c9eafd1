//! The node's side of ID-LOC names (docs/OVERLAY.md, "Names"): it stores its own claim —
//! a NAME-RECORD carrying the grant of its label — and refreshes it, and it resolves
//! names to HITs by looking their claims up and keeping the one whose grant holds.
//! Answers are cached until the earlier of their grant's end and `CACHE_TTL`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use hip::{Hit, HostIdentity};
use overlay::names::{self, NameError};
use overlay::node::{Failure, Node, RequestHandle};
use overlay::storage::{self, KindDef};
use overlay::wire::{
    DataValue, FetchAns, FetchReq, NameGrant, NameRecord, NodeId, Selector, StoredDataSpecifier,
    StoredDataValue,
};

use super::overlay::RequestId;

/// How long our claim lives in the overlay, and when it is stored again.
const CLAIM_LIFETIME: u32 = 3600;
const CLAIM_REFRESH: Duration = Duration::from_secs(3000);
/// The first claim is stored again this soon: stored while the ring still formed, it may
/// sit at a peer that no longer owns the name, and joins that raced may not hand it on
/// (as for the HIT-LOCATOR record).
const CLAIM_SETTLE: Duration = Duration::from_secs(60);
const CLAIM_RETRY: Duration = Duration::from_secs(10);
/// Resolved names are kept this long at most (a name granted anew is seen by then).
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Names resolved at once, and cached.
const MAX_RESOLVING: usize = 64;
const MAX_CACHED: usize = 1024;

/// A name resolved: the HIT its grant names and when the grant ends (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub hit: Hit,
    pub expires: u64,
}

/// What became of a resolution: for the request that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub request: RequestId,
    pub name: String,
    pub result: Result<Resolved, Unresolved>,
}

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// No one holds it validly (DNS: NXDOMAIN).
    NoSuchName(String),
    /// It could not be found out (DNS: SERVFAIL).
    Failed(String),
}

#[derive(Debug)]
pub struct Names {
    /// The overlay's name (lower case), the suffix of every name in it.
    overlay: String,
    signers: Vec<[u8; 32]>,
    /// Our grant, if we hold a name; the Store of our claim under way; when to store it
    /// again.
    claim: Option<NameGrant>,
    storing: Option<RequestHandle>,
    again_at: Option<Instant>,
    /// A Store of our claim succeeded once (the next waits `CLAIM_REFRESH`).
    stored_once: bool,
    resolving: HashMap<RequestHandle, (RequestId, String)>,
    cache: HashMap<String, (Resolved, Instant)>,
    done: VecDeque<Resolution>,
}

impl Names {
    pub fn new(overlay: &str, signers: Vec<[u8; 32]>, claim: Option<NameGrant>) -> Names {
        Names {
            overlay: overlay.to_ascii_lowercase(),
            signers,
            claim,
            storing: None,
            again_at: None,
            stored_once: false,
            resolving: HashMap::new(),
            cache: HashMap::new(),
            done: VecDeque::new(),
        }
    }

    /// The name we hold, if any.
    fn ours(&self) -> Option<String> {
        self.claim
            .as_ref()
            .map(|g| String::from_utf8_lossy(&g.name).into_owned())
    }

    /// When our claim is due to be stored again.
    pub fn deadline(&self) -> Option<Instant> {
        self.again_at
    }

    /// Stores our claim when it is due (joined, nothing under way, never stored or its
    /// refresh time came), signed by `identity`.
    pub fn publish(&mut self, now: Instant, node: &mut Node, identity: &HostIdentity) {
        let Some(grant) = &self.claim else { return };
        let due = self.again_at.is_none_or(|t| t <= now);
        if !node.is_joined() || self.storing.is_some() || !due {
            return;
        }
        let record = NameRecord {
            name: grant.name.clone(),
            hit: NodeId::from(identity.hit()),
            extension: grant.to_bytes(),
        };
        let value = StoredDataValue::Dictionary {
            key: identity.hit().0.to_vec(),
            value: DataValue {
                exists: true,
                value: record.to_bytes(),
            },
        };
        let time = node.storage_time(now);
        let resource = overlay::id::resource_id(&grant.name);
        let def = KindDef::NAME_RECORD;
        let req = storage::signed_store(identity, resource, def.id, time, CLAIM_LIFETIME, value);
        match node.store(now, &req) {
            Ok(handle) => {
                let wait = if self.stored_once {
                    CLAIM_REFRESH
                } else {
                    CLAIM_SETTLE
                };
                self.storing = Some(handle);
                self.again_at = Some(now + wait);
            }
            Err(e) => {
                tracing::debug!(error = ?e, "cannot store our name yet");
                self.again_at = Some(now + CLAIM_RETRY);
            }
        }
    }

    /// Resolves `name` for `request`: at once from a HIT name or the cache, else by
    /// looking its claims up; the answer comes from [`poll`](Self::poll).
    pub fn resolve(&mut self, now: Instant, node: &mut Node, name: &str, request: RequestId) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let answer = |result| Resolution {
            request,
            name: name.clone(),
            result,
        };
        if let Some(hit) = names::hit_name(&name, &self.overlay) {
            let resolved = Resolved {
                hit,
                expires: u64::MAX,
            };
            return self.done.push_back(answer(Ok(resolved)));
        }
        if let Some((r, until)) = self.cache.get(&name) {
            if *until > now {
                let r = *r;
                return self.done.push_back(answer(Ok(r)));
            }
        }
        let in_overlay = name
            .strip_suffix(&self.overlay)
            .is_some_and(|label| label.ends_with('.'));
        if !in_overlay || !overlay::wire::valid_name(name.as_bytes()) {
            let e = format!("not a name of the overlay {}", self.overlay);
            return self.done.push_back(answer(Err(Unresolved::NoSuchName(e))));
        }
        if self.signers.is_empty() {
            let e = NameError::NoSigners.to_string();
            return self.done.push_back(answer(Err(Unresolved::NoSuchName(e))));
        }
        if self.resolving.len() >= MAX_RESOLVING {
            let e = "too many names being resolved".to_string();
            return self.done.push_back(answer(Err(Unresolved::Failed(e))));
        }
        let req = FetchReq {
            resource: overlay::id::resource_id(name.as_bytes()),
            specifiers: vec![StoredDataSpecifier {
                kind: KindDef::NAME_RECORD.id,
                generation: 0,
                selector: Selector::Dictionary(Vec::new()),
            }],
        };
        match node.lookup(now, &req) {
            Ok(handle) => {
                self.resolving.insert(handle, (request, name));
            }
            Err(e) => {
                let e = format!("cannot look the name up: {e:?}");
                self.done.push_back(answer(Err(Unresolved::Failed(e))));
            }
        }
    }

    /// A Store or Fetch of ours ended: true if it was one of ours (a claim or a
    /// resolution). `unix` is the wall clock now, in seconds.
    pub fn ended(
        &mut self,
        now: Instant,
        unix: u64,
        handle: RequestHandle,
        outcome: Result<Option<&FetchAns>, &Failure>,
    ) -> bool {
        if self.storing == Some(handle) {
            self.storing = None;
            if let Err(f) = outcome {
                tracing::info!(error = ?f, "storing our name failed; trying again");
                self.again_at = Some(now + CLAIM_RETRY);
            } else {
                self.stored_once = true;
                tracing::info!(name = ?self.ours(), "stored our name");
            }
            return true;
        }
        let Some((request, name)) = self.resolving.remove(&handle) else {
            return false;
        };
        let result = match outcome {
            Err(f) => Err(Unresolved::Failed(format!("the lookup failed: {f:?}"))),
            Ok(answer) => {
                let claims = answer.map(claims).unwrap_or_default();
                names::resolve(name.as_bytes(), &claims, &self.signers, unix)
                    .map(|(hit, expires)| Resolved { hit, expires })
                    .map_err(|e| Unresolved::NoSuchName(e.to_string()))
            }
        };
        if let Ok(r) = &result {
            if self.cache.len() >= MAX_CACHED {
                self.cache.retain(|_, (_, until)| *until > now);
                if self.cache.len() >= MAX_CACHED {
                    self.cache.clear();
                }
            }
            let left = Duration::from_secs(r.expires.saturating_sub(unix));
            self.cache
                .insert(name.clone(), (*r, now + left.min(CACHE_TTL)));
        }
        self.done.push_back(Resolution {
            request,
            name,
            result,
        });
        true
    }

    /// The next resolution that ended.
    pub fn poll(&mut self) -> Option<Resolution> {
        self.done.pop_front()
    }
}

/// The claims of a NAME-RECORD answer: each record and the HIT that stored it (the answer
/// passed its checks, so the dictionary key is its signer's HIT).
fn claims(answer: &FetchAns) -> Vec<(NameRecord, NodeId)> {
    answer
        .kind_responses
        .iter()
        .filter(|k| k.kind == KindDef::NAME_RECORD.id)
        .flat_map(|k| &k.values)
        .filter_map(|v| match &v.value {
            StoredDataValue::Dictionary { key, value } if value.exists => {
                let storer = NodeId(key.as_slice().try_into().ok()?);
                Some((NameRecord::parse(&value.value).ok()?, storer))
            }
            _ => None,
        })
        .collect()
}
