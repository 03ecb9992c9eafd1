//! The node's side of ID-LOC names (docs/OVERLAY.md, "Names"): it stores its own claim —
//! a NAME-RECORD carrying the grant of its label — and refreshes it, and it resolves
//! names to HITs by looking their claims up and keeping the one whose grant holds.
//! Answers are cached until the earlier of their grant's end and `CACHE_TTL`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use hip::{Hit, HostIdentity};
use overlay::names::{self, NameError};
use overlay::node::{Failure, Node, RequestHandle};
use overlay::storage::{self, KindDef};
use overlay::wire::{
    DataValue, FetchAns, FetchReq, NameGrant, NameRecord, NodeId, Selector, StoredDataSpecifier,
    StoredDataValue,
};

use super::backoff::Backoff;
use super::overlay::RequestId;

/// How long our claim lives in the overlay, and when it is stored again.
const CLAIM_LIFETIME: u32 = 3600;
const CLAIM_REFRESH: Duration = Duration::from_secs(3000);
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

/// What became of `hipbone name claim` or `name release`: for the request that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub request: RequestId,
    pub name: String,
    /// Claimed (true) or released (false); or why the overlay refused it.
    pub result: Result<bool, String>,
}

/// What `hipbone name list` shows: the name we hold and the names resolved lately.
#[derive(Debug, Clone, Serialize)]
pub struct NameList {
    pub name: Option<String>,
    /// When its grant ends (Unix seconds).
    pub expires: Option<u64>,
    /// "stored", "storing" or "waiting" (to join, or to try again).
    pub state: Option<&'static str>,
    pub resolved: Vec<CachedName>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CachedName {
    pub name: String,
    pub hit: String,
    /// Seconds it stays cached.
    pub cached_for: u64,
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
    /// A Store of our claim succeeded once.
    stored_once: bool,
    /// Stores of our claim started (the first ones are repeated sooner, as our
    /// HIT-LOCATOR record's).
    stores: u32,
    /// Waits after Stores of our claim that failed on the way.
    backoff: Backoff,
    /// Our last Store of the claim was answered by ourselves (as our HIT-LOCATOR record's
    /// can be: see `LocatorRecord::kept_here`); stored again once the key is not ours.
    kept_here: bool,
    /// The `name claim` or `name release` that waits for the Store under way, and the name.
    asked: Option<(RequestId, String)>,
    settled: VecDeque<Settled>,
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
            stores: 0,
            backoff: Backoff::default(),
            kept_here: false,
            asked: None,
            settled: VecDeque::new(),
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

    /// A Store of ours ended with an answer, from ourselves or not.
    pub fn answered_by_us(&mut self, handle: RequestHandle, ours: bool) {
        if self.storing == Some(handle) {
            self.kept_here = ours;
        }
    }

    /// When our claim is due to be stored again.
    pub fn deadline(&self) -> Option<Instant> {
        self.claim.as_ref().and(self.again_at)
    }

    /// Stores our claim when it is due (joined, nothing under way, never stored or its
    /// refresh time came), signed by `identity`.
    pub fn publish(&mut self, now: Instant, node: &mut Node, identity: &HostIdentity) {
        let Some(grant) = &self.claim else { return };
        let moved_away =
            self.kept_here && !node.owns_resource(&overlay::id::resource_id(&grant.name));
        let due = self.again_at.is_none_or(|t| t <= now) || moved_away;
        if !node.is_joined() || self.storing.is_some() || !due {
            return;
        }
        self.kept_here = false;
        match store_claim(now, node, identity, grant, true) {
            Ok(handle) => {
                let wait = super::overlay::store_again_after(self.stores, CLAIM_REFRESH);
                self.stores += 1;
                self.storing = Some(handle);
                self.again_at = Some(now + wait);
            }
            Err(e) => {
                tracing::debug!(error = ?e, "cannot store our name yet");
                self.again_at = Some(now + self.backoff.failed());
            }
        }
    }

    /// `hipbone name claim`: from now on we hold `grant`'s name (in place of any we held),
    /// if the grant gives it to `me` and holds at Unix time `unix`. The Store of the claim
    /// answers `request` through [`poll_settled`](Self::poll_settled).
    pub fn claim(
        &mut self,
        unix: u64,
        label: &str,
        grant: NameGrant,
        me: Hit,
        request: RequestId,
    ) -> Result<(), NameError> {
        let name = names::full_name(label, &self.overlay)?;
        names::check(&grant, &name, NodeId::from(me), &self.signers, unix)?;
        self.drop_asked("replaced by another claim");
        self.claim = Some(grant);
        self.storing = None;
        self.again_at = None;
        self.stored_once = false;
        self.stores = 0;
        self.backoff = Backoff::default();
        self.asked = Some((request, String::from_utf8_lossy(&name).into_owned()));
        Ok(())
    }

    /// `hipbone name release`: our claim is deleted from the overlay (`exists` false, as
    /// the HIT-LOCATOR record is withdrawn) and not stored again. Answers `request` through
    /// [`poll_settled`](Self::poll_settled); an error if we hold no name or have not joined.
    pub fn release(
        &mut self,
        now: Instant,
        node: &mut Node,
        identity: &HostIdentity,
        request: RequestId,
    ) -> Result<(), String> {
        let Some(grant) = &self.claim else {
            return Err("this node holds no name".to_string());
        };
        let handle = store_claim(now, node, identity, grant, false)
            .map_err(|e| format!("cannot release the name now: {e:?}"))?;
        let name = String::from_utf8_lossy(&grant.name).into_owned();
        self.cache.remove(&name);
        self.drop_asked("the name was released");
        self.claim = None;
        self.storing = Some(handle);
        self.again_at = None;
        self.asked = Some((request, name));
        Ok(())
    }

    /// A `name claim` that still waits is answered with `why`.
    fn drop_asked(&mut self, why: &str) {
        if let Some((request, name)) = self.asked.take() {
            self.settled.push_back(Settled {
                request,
                name,
                result: Err(why.to_string()),
            });
        }
    }

    /// What `hipbone name list` shows.
    pub fn list(&self, now: Instant) -> NameList {
        let state = self.claim.as_ref().map(|_| {
            if self.storing.is_some() {
                "storing"
            } else if self.stored_once {
                "stored"
            } else {
                "waiting"
            }
        });
        let mut resolved: Vec<CachedName> = self
            .cache
            .iter()
            .filter(|(_, (_, until))| *until > now)
            .map(|(name, (r, until))| CachedName {
                name: name.clone(),
                hit: r.hit.to_string(),
                cached_for: until.duration_since(now).as_secs(),
            })
            .collect();
        resolved.sort_by(|a, b| a.name.cmp(&b.name));
        NameList {
            name: self.ours(),
            expires: self.claim.as_ref().map(|g| g.expires),
            state,
            resolved,
        }
    }

    /// The next `name claim` or `name release` that was answered.
    pub fn poll_settled(&mut self) -> Option<Settled> {
        self.settled.pop_front()
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
            let claiming = self.claim.is_some();
            let result = match outcome {
                // Refused (not lost): a claim asked for at run time is given up, as its
                // asker is told; one from the configuration is tried again much later.
                Err(f) if claiming && f.is_refusal() => {
                    if self.asked.is_some() {
                        tracing::info!(error = ?f, "the overlay refused our name; not holding it");
                        self.claim = None;
                        self.again_at = None;
                    } else {
                        tracing::warn!(error = ?f, "the overlay refused our name (do its members know our grant's signer?)");
                        self.again_at = Some(now + CLAIM_REFRESH);
                    }
                    Err(super::overlay::describe(f))
                }
                Err(f) if claiming => {
                    let wait = self.backoff.failed();
                    tracing::info!(error = ?f, ?wait, "storing our name failed; trying again");
                    self.again_at = Some(now + wait);
                    let why = super::overlay::describe(f);
                    Err(format!("{why}; the node keeps trying"))
                }
                Err(f) => {
                    tracing::info!(error = ?f, "releasing our name failed");
                    Err(super::overlay::describe(f))
                }
                Ok(_) if claiming => {
                    self.stored_once = true;
                    self.backoff.succeeded();
                    tracing::info!(name = ?self.ours(), "stored our name");
                    Ok(true)
                }
                Ok(_) => {
                    tracing::info!("released our name");
                    Ok(false)
                }
            };
            if let Some((request, name)) = self.asked.take() {
                self.settled.push_back(Settled {
                    request,
                    name,
                    result,
                });
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

/// Stores our claim of `grant`'s name (`exists`), or its deletion, signed by `identity`.
/// A deletion still names what it deletes (the storing peers check the name), without
/// the grant.
fn store_claim(
    now: Instant,
    node: &mut Node,
    identity: &HostIdentity,
    grant: &NameGrant,
    exists: bool,
) -> Result<RequestHandle, overlay::node::Error> {
    let record = NameRecord {
        name: grant.name.clone(),
        hit: NodeId::from(identity.hit()),
        extension: if exists { grant.to_bytes() } else { Vec::new() },
    };
    let value = StoredDataValue::Dictionary {
        key: identity.hit().0.to_vec(),
        value: DataValue {
            exists,
            value: record.to_bytes(),
        },
    };
    let time = node.storage_time(now);
    let resource = overlay::id::resource_id(&grant.name);
    let kind = KindDef::NAME_RECORD.id;
    let req = storage::signed_store(identity, resource, kind, time, CLAIM_LIFETIME, value);
    node.store(now, &req)
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
