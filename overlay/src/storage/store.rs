//! The values a peer stores (RFC 6940 §7.4.1, §7.4.2): a bounded table from Resource-ID
//! and Kind to values, with generation counters, lifetimes and the hand-over of records
//! that replication and joins need.
//!
//! Contract:
//! - [`Store::store`] is atomic: every check (Kinds, generation counters, sizes, counts,
//!   signatures, access, storage times, the store's own limits) runs before anything
//!   changes, so a refused request leaves the store as it was.
//! - Values expire `lifetime` seconds after they arrived (`now_ms` of the call). An expired
//!   value is never returned; [`Store::expire`] frees it and [`Store::next_expiry`] says
//!   when the next one is due (the node's timer). A Kind whose values are all gone is
//!   forgotten with its generation counter, and a Resource with no Kinds with it.
//! - Lifetimes going out (Fetch answers, [`Store::records_in`]) are what is left of them at
//!   `now_ms`, rounded up to the second: RFC 6940 §7.4.1.1 asks whoever re-stores data to
//!   reduce the lifetime by the time it has held it. Everything signed (storage time,
//!   value, signature) goes out exactly as it came in.
//! - Routing is not the store's business: the node checks that it is responsible for a
//!   Resource (replica_number 0) or a plausible replica holder (replica_number ≥ 1) before
//!   calling [`Store::store`], and fills the replica list of the answer.
//!
//! Replica stores (replica_number ≥ 1) copy the owner's state rather than edit it: no
//! generation check, the counter becomes the larger of ours and the sender's, and a value
//! older than ours is skipped instead of refusing the whole request. See docs/OVERLAY.md,
//! "Storage", for why.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use super::access::authorize;
use super::kind::{KindDef, Kinds, UserName};
use super::signature::Certificates;
use super::StorageError;
use crate::id::{in_open_closed, resource_position};
use crate::wire::{
    ArrayRange, DataModel, DataValue, FetchAns, FetchKindResponse, FetchReq, GenericCertificate,
    KindId, NameGrant, NameRecord, NodeId, ResourceId, Selector, Signature, StoreAns,
    StoreKindData, StoreKindResponse, StoreReq, StoredData, StoredDataValue,
};

/// Limits of the whole store. At a limit, a Store that would pass it is refused with
/// [`StorageError::StoreFull`] (Error_Data_Too_Large); nothing already stored is evicted,
/// since every value is some owner's registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    pub max_resources: usize,
    pub max_values: usize,
    /// Encoded `StoredData` bytes.
    pub max_bytes: usize,
    /// Values signed by one key, over all Resources and Kinds: a writer whose Resource-IDs
    /// are fixed by its HIT needs a handful (its locators, its registration, an array of
    /// 64 entries), so one key cannot crowd out everyone else.
    pub max_per_signer: usize,
}

impl Default for StoreLimits {
    /// Room for a few thousand users' registrations and locators: a peer of a 10,000-node
    /// ring holds about 3 × 1/10,000 of all values (owner + 2 replicas).
    fn default() -> StoreLimits {
        StoreLimits {
            max_resources: 20_000,
            max_values: 100_000,
            max_bytes: 32 << 20,
            max_per_signer: 256,
        }
    }
}

/// What the store holds, for status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub resources: usize,
    pub values: usize,
    pub bytes: usize,
}

/// A Fetch answer and the certificates of its values' signers, for the answer's security
/// block (the fetching node verifies with them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub ans: FetchAns,
    pub certificates: Vec<GenericCertificate>,
}

/// A ready-to-send Store of records to another peer (a replica, or the new owner after a
/// join), with the certificates of its values' signers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub req: StoreReq,
    pub certificates: Vec<GenericCertificate>,
}

/// Where a value sits in its Kind: the model's address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Single,
    Index(u32),
    Key(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Value {
    /// As received, except that an appended array entry carries its real index.
    data: StoredData,
    /// The signer's key, to send its certificate along with the value.
    key: [u8; 32],
    expires_ms: u64,
    bytes: usize,
}

#[derive(Debug, Clone, Default)]
struct KindState {
    generation: u64,
    values: BTreeMap<Slot, Value>,
}

impl KindState {
    /// Array length: the highest index + 1 (gaps count, RFC 6940 §7.2.2).
    fn array_len(&self) -> u64 {
        match self.values.last_key_value() {
            Some((Slot::Index(i), _)) => u64::from(*i) + 1,
            _ => 0,
        }
    }
}

#[derive(Debug)]
struct Resource {
    id: ResourceId,
    kinds: BTreeMap<KindId, KindState>,
}

/// Who asks to write, which the node knows from the message and the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// An original store (RFC 6940 §7.4.1): the signer of its message, who must be the
    /// signer of every value it carries. Nobody stores, deletes or shortens another's
    /// value in its name.
    Signer(NodeId),
    /// A copy of records a peer held: a replica from the owner, or the records the
    /// admitting peer hands a joining one. Values are anyone's; a copy only adds what is
    /// newer, never cuts a value's life short, and is never held against generation
    /// counters.
    Copy,
}

/// The checked outcome of one Kind of a Store, applied only once all Kinds passed.
struct Plan {
    kind: KindId,
    generation: u64,
    writes: BTreeMap<Slot, Value>,
}

/// The storage of one peer. Driven by the node: [`store`](Self::store) and
/// [`fetch`](Self::fetch) for requests, [`expire`](Self::expire) when
/// [`next_expiry`](Self::next_expiry) is due, [`records_in`](Self::records_in) and
/// [`remove_outside`](Self::remove_outside) when the ring changes.
#[derive(Debug)]
pub struct Store {
    kinds: Kinds,
    limits: StoreLimits,
    /// The overlay's name signers: with any, a claim of a name (a value of a
    /// [`UserName::Claimed`] Kind) is stored only with a valid grant of one of them.
    name_signers: Vec<[u8; 32]>,
    /// By ring position (every Resource-ID we accept is 16 bytes).
    resources: BTreeMap<u128, Resource>,
    /// (expires_ms, position, kind, slot) of every value: the expiry queue.
    expiry: BTreeSet<(u64, u128, KindId, Slot)>,
    books: Books,
}

/// What the store holds, kept as values come and go.
#[derive(Debug, Default)]
struct Books {
    values: usize,
    bytes: usize,
    /// Values held per signer key (for [`StoreLimits::max_per_signer`]).
    per_signer: HashMap<[u8; 32], usize>,
}

impl Books {
    fn add(&mut self, v: &Value) {
        self.values += 1;
        self.bytes += v.bytes;
        *self.per_signer.entry(v.key).or_default() += 1;
    }

    fn remove(&mut self, v: &Value) {
        self.values -= 1;
        self.bytes -= v.bytes;
        if let Some(n) = self.per_signer.get_mut(&v.key) {
            *n -= 1;
            if *n == 0 {
                self.per_signer.remove(&v.key);
            }
        }
    }
}

/// Milliseconds → whole seconds left, rounded up so that a copy never expires before its
/// original.
fn remaining_secs(expires_ms: u64, now_ms: u64) -> u32 {
    u32::try_from(expires_ms.saturating_sub(now_ms).div_ceil(1000)).unwrap_or(u32::MAX)
}

/// The synthesised "no such value" entry of a Fetch answer (RFC 6940 §7.4.2).
fn absent(value: StoredDataValue) -> StoredData {
    StoredData {
        storage_time: 0,
        lifetime: 0,
        value,
        signature: Signature::anonymous(),
    }
}

fn nothing() -> DataValue {
    DataValue {
        exists: false,
        value: Vec::new(),
    }
}

impl Store {
    pub fn new(kinds: Kinds) -> Store {
        Store::with_limits(kinds, StoreLimits::default())
    }

    pub fn with_limits(kinds: Kinds, limits: StoreLimits) -> Store {
        Store {
            kinds,
            limits,
            name_signers: Vec::new(),
            resources: BTreeMap::new(),
            expiry: BTreeSet::new(),
            books: Books::default(),
        }
    }

    /// Claims of names are stored only with a grant of one of `signers` (none: any claim
    /// its signer may write).
    pub fn with_name_signers(mut self, signers: Vec<[u8; 32]>) -> Store {
        self.name_signers = signers;
        self
    }

    pub fn kinds(&self) -> &Kinds {
        &self.kinds
    }

    pub fn counts(&self) -> Counts {
        Counts {
            resources: self.resources.len(),
            values: self.books.values,
            bytes: self.books.bytes,
        }
    }

    /// The Resource-IDs held, in ring order.
    pub fn resources(&self) -> impl Iterator<Item = &ResourceId> {
        self.resources.values().map(|r| &r.id)
    }

    /// The generation counter of a Kind at a Resource (0 when nothing is stored).
    pub fn generation(&self, resource: &ResourceId, kind: KindId) -> u64 {
        resource_position(resource)
            .and_then(|p| self.resources.get(&p))
            .and_then(|r| r.kinds.get(&kind))
            .map_or(0, |k| k.generation)
    }

    /// Applies a Store request (RFC 6940 §7.4.1) from `writer` whose values are signed by
    /// keys in `certs` (the request's security block). Returns the answer with each Kind's
    /// new generation counter and empty replica lists for the node to fill. Expired values
    /// are purged first, so that they neither block nor count.
    pub fn store(
        &mut self,
        now_ms: u64,
        req: &StoreReq,
        certs: &Certificates,
        writer: Writer,
    ) -> Result<StoreAns, StorageError> {
        self.expire(now_ms);
        let pos = resource_position(&req.resource).ok_or(StorageError::BadResourceId)?;
        let replica = writer == Writer::Copy;
        let ids: Vec<KindId> = req.kind_data.iter().map(|k| k.kind).collect();
        self.check_kinds(&ids)?;
        let existing = self.resources.get(&pos);
        let state_of = |kind| existing.and_then(|r| r.kinds.get(&kind));
        let current = |kind| state_of(kind).map_or(0, |s| s.generation);

        // An ETag check: a writer that read generation g may only overwrite generation g.
        if !replica
            && req
                .kind_data
                .iter()
                .any(|kd| kd.generation != 0 && kd.generation != current(kd.kind))
        {
            return Err(StorageError::GenerationMismatch(StoreAns {
                kind_responses: ids
                    .iter()
                    .map(|&kind| StoreKindResponse {
                        kind,
                        generation: current(kind),
                        replicas: Vec::new(),
                    })
                    .collect(),
            }));
        }

        let mut plans = Vec::with_capacity(req.kind_data.len());
        for kd in &req.kind_data {
            let def = self
                .kinds
                .get(kd.kind)
                .ok_or_else(|| StorageError::UnknownKinds(vec![kd.kind]))?;
            plans.push(plan_kind(
                now_ms,
                def,
                &req.resource,
                kd,
                state_of(kd.kind),
                writer,
                Trust {
                    certs,
                    name_signers: &self.name_signers,
                },
            )?);
        }

        // The store's own limits, on the totals the request would leave.
        let (mut added, mut removed) = ((0usize, 0usize), (0usize, 0usize));
        let mut signers: HashMap<[u8; 32], isize> = HashMap::new();
        for plan in &plans {
            for (slot, v) in &plan.writes {
                added = (added.0 + 1, added.1 + v.bytes);
                *signers.entry(v.key).or_default() += 1;
                if let Some(old) = state_of(plan.kind).and_then(|s| s.values.get(slot)) {
                    removed = (removed.0 + 1, removed.1 + old.bytes);
                    *signers.entry(old.key).or_default() -= 1;
                }
            }
        }
        let held = |key| self.books.per_signer.get(key).copied().unwrap_or(0) as isize;
        if signers
            .iter()
            .any(|(key, n)| *n > 0 && held(key) + n > self.limits.max_per_signer as isize)
        {
            return Err(StorageError::SignerQuota);
        }
        let writes = plans.iter().any(|p| !p.writes.is_empty());
        let new_resource = usize::from(existing.is_none() && writes);
        if self.resources.len() + new_resource > self.limits.max_resources
            || self.books.values + added.0 - removed.0 > self.limits.max_values
            || self.books.bytes + added.1 - removed.1 > self.limits.max_bytes
        {
            return Err(StorageError::StoreFull);
        }

        let ans = StoreAns {
            kind_responses: plans
                .iter()
                .map(|p| StoreKindResponse {
                    kind: p.kind,
                    generation: p.generation,
                    replicas: Vec::new(),
                })
                .collect(),
        };
        self.apply(pos, &req.resource, plans);
        Ok(ans)
    }

    fn apply(&mut self, pos: u128, id: &ResourceId, plans: Vec<Plan>) {
        for plan in plans {
            let resource = self.resources.entry(pos).or_insert_with(|| Resource {
                id: id.clone(),
                kinds: BTreeMap::new(),
            });
            if plan.writes.is_empty() && !resource.kinds.contains_key(&plan.kind) {
                // Nothing stored and nothing to store: no state to keep a counter in.
                if resource.kinds.is_empty() {
                    self.resources.remove(&pos);
                }
                continue;
            }
            let state = resource.kinds.entry(plan.kind).or_default();
            state.generation = plan.generation;
            for (slot, value) in plan.writes {
                self.books.add(&value);
                let expires_ms = value.expires_ms;
                // The old entry goes first: the new one may have the very same expiry.
                if let Some(old) = state.values.insert(slot.clone(), value) {
                    self.expiry
                        .remove(&(old.expires_ms, pos, plan.kind, slot.clone()));
                    self.books.remove(&old);
                }
                self.expiry.insert((expires_ms, pos, plan.kind, slot));
            }
        }
    }

    /// Every Kind of a request known, and none twice.
    fn check_kinds(&self, ids: &[KindId]) -> Result<(), StorageError> {
        let unknown = self.kinds.unknown(ids);
        if !unknown.is_empty() {
            return Err(StorageError::UnknownKinds(unknown));
        }
        match ids
            .iter()
            .enumerate()
            .find(|(i, id)| ids[..*i].contains(id))
        {
            Some((_, id)) => Err(StorageError::DuplicateKind(*id)),
            None => Ok(()),
        }
    }

    /// Answers a Fetch (RFC 6940 §7.4.2): one response per specifier, with the Kind's
    /// generation counter and, unless the specifier already has that generation, the
    /// selected live values. Requested values that do not exist (a single value, a named
    /// dictionary key, a gap inside an array) come back synthesised as "exists = false,
    /// unsigned". A Resource we hold nothing for answers like an empty one.
    pub fn fetch(&self, now_ms: u64, req: &FetchReq) -> Result<Fetched, StorageError> {
        let pos = resource_position(&req.resource).ok_or(StorageError::BadResourceId)?;
        let ids: Vec<KindId> = req.specifiers.iter().map(|s| s.kind).collect();
        // One response per Kind, so that the fetcher can match answers to specifiers.
        self.check_kinds(&ids)?;
        let resource = self.resources.get(&pos);
        let mut keys: BTreeSet<[u8; 32]> = BTreeSet::new();
        let mut ans = FetchAns::default();
        for spec in &req.specifiers {
            let model = self.kinds.model(spec.kind);
            let fits = matches!(
                (model, &spec.selector),
                (Some(DataModel::Single), Selector::Single)
                    | (Some(DataModel::Array), Selector::Array(_))
                    | (Some(DataModel::Dictionary), Selector::Dictionary(_))
            );
            if !fits {
                return Err(StorageError::WrongModel(spec.kind));
            }
            let state = resource.and_then(|r| r.kinds.get(&spec.kind));
            let generation = state.map_or(0, |s| s.generation);
            let mut values = Vec::new();
            if spec.generation == 0 || spec.generation != generation {
                let live = |slot: &Slot| {
                    state
                        .and_then(|s| s.values.get(slot))
                        .filter(|v| v.expires_ms > now_ms)
                };
                let mut take = |slot: Slot, missing: StoredDataValue| match live(&slot) {
                    Some(v) => {
                        keys.insert(v.key);
                        let mut data = v.data.clone();
                        data.lifetime = remaining_secs(v.expires_ms, now_ms);
                        values.push(data);
                    }
                    None => values.push(absent(missing)),
                };
                match &spec.selector {
                    Selector::Single => take(Slot::Single, StoredDataValue::Single(nothing())),
                    Selector::Array(ranges) => {
                        let len = state.map_or(0, KindState::array_len);
                        for i in array_indices(spec.kind, ranges, len)? {
                            take(
                                Slot::Index(i),
                                StoredDataValue::Array {
                                    index: i,
                                    value: nothing(),
                                },
                            );
                        }
                    }
                    Selector::Dictionary(wanted) if wanted.is_empty() => {
                        let stored = state.map(|s| s.values.keys().cloned().collect::<Vec<_>>());
                        for slot in stored.unwrap_or_default() {
                            if live(&slot).is_some() {
                                // Live, so the placeholder for a missing value is unused.
                                take(slot, StoredDataValue::Single(nothing()));
                            }
                        }
                    }
                    Selector::Dictionary(wanted) => {
                        let mut seen = BTreeSet::new();
                        for key in wanted.iter().filter(|k| seen.insert(*k)) {
                            take(
                                Slot::Key(key.clone()),
                                StoredDataValue::Dictionary {
                                    key: key.clone(),
                                    value: nothing(),
                                },
                            );
                        }
                    }
                }
            }
            ans.kind_responses.push(FetchKindResponse {
                kind: spec.kind,
                generation,
                values,
            });
        }
        Ok(Fetched {
            ans,
            certificates: keys.iter().map(GenericCertificate::ed25519).collect(),
        })
    }

    /// Frees every value whose lifetime has run out by `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut freed = 0;
        while let Some(first) = self.expiry.first() {
            if first.0 > now_ms {
                break;
            }
            let Some((_, pos, kind, slot)) = self.expiry.pop_first() else {
                break;
            };
            let Some(resource) = self.resources.get_mut(&pos) else {
                continue;
            };
            let Some(state) = resource.kinds.get_mut(&kind) else {
                continue;
            };
            if let Some(old) = state.values.remove(&slot) {
                self.books.remove(&old);
                freed += 1;
            }
            if state.values.is_empty() {
                resource.kinds.remove(&kind);
            }
            if resource.kinds.is_empty() {
                self.resources.remove(&pos);
            }
        }
        freed
    }

    /// When [`expire`](Self::expire) next has something to do, in the caller's ms.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiry.first().map(|e| e.0)
    }

    /// Positions in the ring interval `(from_exclusive, to_inclusive]` (wrapping; equal
    /// ends mean the whole ring, as [`in_open_closed`]).
    fn positions_in(&self, from_exclusive: u128, to_inclusive: u128) -> Vec<u128> {
        let range = |lo: Bound<u128>, hi: Bound<u128>| {
            self.resources
                .range((lo, hi))
                .map(|(p, _)| *p)
                .collect::<Vec<_>>()
        };
        if from_exclusive < to_inclusive {
            range(
                Bound::Excluded(from_exclusive),
                Bound::Included(to_inclusive),
            )
        } else {
            let mut v = range(Bound::Excluded(from_exclusive), Bound::Unbounded);
            v.extend(range(Bound::Unbounded, Bound::Included(to_inclusive)));
            v
        }
    }

    /// Everything live stored for Resource-IDs in `(from_exclusive, to_inclusive]`, as
    /// Store requests with `replica_number` (1 or 2 for a replica; 0 to hand a range to
    /// its new owner after a join), each Kind with its generation counter. Signed fields
    /// are as received, lifetimes what is left of them. A Resource whose values do not fit
    /// one body of `max_body` bytes is split over several requests (a single value larger
    /// than that goes alone); the receiver merges them as any replica store.
    pub fn records_in(
        &self,
        now_ms: u64,
        from_exclusive: u128,
        to_inclusive: u128,
        replica_number: u8,
        max_body: usize,
    ) -> Vec<Transfer> {
        let mut out = Vec::new();
        for pos in self.positions_in(from_exclusive, to_inclusive) {
            let Some(resource) = self.resources.get(&pos) else {
                continue;
            };
            let empty = || StoreReq {
                resource: resource.id.clone(),
                replica_number,
                kind_data: Vec::new(),
            };
            // resource (1 + len) + replica_number (1) + kind_data length (4).
            let base = resource.id.0.len() + 6;
            let (mut req, mut len, mut keys) = (empty(), base, BTreeSet::new());
            for (&kind, state) in &resource.kinds {
                let live = state.values.values().filter(|v| v.expires_ms > now_ms);
                for v in live {
                    let mut data = v.data.clone();
                    data.lifetime = remaining_secs(v.expires_ms, now_ms);
                    let same_kind = req.kind_data.last().is_some_and(|k| k.kind == kind);
                    // kind (4) + generation (8) + values length (4) for a new Kind entry.
                    let cost = data.buffer_len() + if same_kind { 0 } else { 16 };
                    if len + cost > max_body && !req.kind_data.is_empty() {
                        out.push(Transfer {
                            req: core::mem::replace(&mut req, empty()),
                            certificates: take_certs(&mut keys),
                        });
                        len = base;
                    }
                    if req.kind_data.last().is_none_or(|k| k.kind != kind) {
                        req.kind_data.push(StoreKindData {
                            kind,
                            generation: state.generation,
                            values: Vec::new(),
                        });
                        len += 16;
                    }
                    len += data.buffer_len();
                    keys.insert(v.key);
                    if let Some(k) = req.kind_data.last_mut() {
                        k.values.push(data);
                    }
                }
            }
            if !req.kind_data.is_empty() {
                out.push(Transfer {
                    req,
                    certificates: take_certs(&mut keys),
                });
            }
        }
        out
    }

    /// Forgets a Resource and all its values; false if we held nothing for it.
    pub fn drop_resource(&mut self, resource: &ResourceId) -> bool {
        resource_position(resource).is_some_and(|p| self.drop_position(p))
    }

    fn drop_position(&mut self, pos: u128) -> bool {
        let Some(resource) = self.resources.remove(&pos) else {
            return false;
        };
        for (kind, state) in resource.kinds {
            for (slot, v) in state.values {
                self.expiry.remove(&(v.expires_ms, pos, kind, slot));
                self.books.remove(&v);
            }
        }
        true
    }

    /// Forgets every Resource outside `(from_exclusive, to_inclusive]` (the range this
    /// peer owns or replicates); returns how many went.
    pub fn remove_outside(&mut self, from_exclusive: u128, to_inclusive: u128) -> usize {
        let outside: Vec<u128> = self
            .resources
            .keys()
            .copied()
            .filter(|p| !in_open_closed(*p, from_exclusive, to_inclusive))
            .collect();
        outside.iter().filter(|p| self.drop_position(**p)).count()
    }
}

fn take_certs(keys: &mut BTreeSet<[u8; 32]>) -> Vec<GenericCertificate> {
    core::mem::take(keys)
        .iter()
        .map(GenericCertificate::ed25519)
        .collect()
}

/// The indices `ranges` select in an array of `len` entries, each once, ascending.
/// `0xffffffff` is the last entry; a range with `first > last` is refused.
fn array_indices(
    kind: KindId,
    ranges: &[ArrayRange],
    len: u64,
) -> Result<BTreeSet<u32>, StorageError> {
    let mut out = BTreeSet::new();
    for r in ranges {
        if r.first > r.last {
            return Err(StorageError::BadRange(kind));
        }
        let Some(end) = len.checked_sub(1) else {
            continue;
        };
        let resolve = |i: u32| if i == u32::MAX { end } else { u64::from(i) };
        let (first, last) = (resolve(r.first), resolve(r.last).min(end));
        // Indices are below `len`, which the Kind's max_count bounds.
        out.extend((first..=last).filter_map(|i| u32::try_from(i).ok()));
    }
    Ok(out)
}

/// What a value's writer is checked against: the certificates of the request, and the
/// overlay's name signers.
#[derive(Clone, Copy)]
struct Trust<'a> {
    certs: &'a Certificates,
    name_signers: &'a [[u8; 32]],
}

/// Whether the claim `data` (a NAME-RECORD) carries a grant of its name to `signer` by one
/// of `signers`, valid at Unix time `now`.
fn granted(
    data: &StoredData,
    signer: NodeId,
    signers: &[[u8; 32]],
    now: u64,
) -> Result<(), crate::names::NameError> {
    use crate::names::NameError;
    let record = NameRecord::parse(&data.value.data().value).map_err(|_| NameError::Mismatch)?;
    let grant = NameGrant::parse(&record.extension).map_err(|_| NameError::NoGrant)?;
    crate::names::check(&grant, &record.name, signer, signers, now)
}

/// Checks one Kind of a Store against its definition and stored state and works out what
/// it writes. Original stores refuse a value older than the one in its place; copies skip
/// it, and skip one as old as ours that would expire sooner.
fn plan_kind(
    now_ms: u64,
    def: &KindDef,
    resource: &ResourceId,
    kd: &StoreKindData,
    state: Option<&KindState>,
    writer: Writer,
    trust: Trust<'_>,
) -> Result<Plan, StorageError> {
    let replica = writer == Writer::Copy;
    let mut writes: BTreeMap<Slot, Value> = BTreeMap::new();
    let mut next_append = state.map_or(0, KindState::array_len);
    for data in &kd.values {
        if data.value.model() != def.model {
            return Err(StorageError::WrongModel(def.id));
        }
        let size = data.value.data().value.len();
        if size > def.max_size as usize {
            return Err(StorageError::ValueTooLarge {
                kind: def.id,
                size,
                max: def.max_size,
            });
        }
        let too_many = StorageError::TooManyValues {
            kind: def.id,
            max: def.max_count,
        };
        let mut data = data.clone();
        let slot = match &mut data.value {
            StoredDataValue::Single(_) => Slot::Single,
            StoredDataValue::Array { index, .. } => {
                let at = if *index == u32::MAX {
                    next_append
                } else {
                    u64::from(*index)
                };
                if at >= u64::from(def.max_count) {
                    return Err(too_many);
                }
                // Below max_count, so it fits: the stored entry carries its real index.
                *index = u32::try_from(at).map_err(|_| too_many.clone())?;
                next_append = next_append.max(at + 1);
                Slot::Index(*index)
            }
            StoredDataValue::Dictionary { key, .. } => Slot::Key(key.clone()),
        };
        // The lifetime is the request's to set (RFC 6940 §7.1 does not sign it), within
        // what the Kind allows.
        let lifetime = data.lifetime.min(def.max_lifetime);
        let expires_ms = now_ms.saturating_add(u64::from(lifetime) * 1000);
        let previous = writes
            .get(&slot)
            .or_else(|| state.and_then(|s| s.values.get(&slot)));
        // A copy skips what it would not take before its signature is checked: a
        // replication round re-sends mostly values the replica holds already.
        let older = previous.is_some_and(|p| data.storage_time < p.data.storage_time);
        let no_longer = previous.is_some_and(|p| {
            data.storage_time == p.data.storage_time && expires_ms <= p.expires_ms
        });
        if replica && (older || no_longer) {
            continue;
        }
        let signer = authorize(def, resource, &data, trust.certs)?;
        let claim = def.user_name == UserName::Claimed && data.value.data().exists;
        if claim && !trust.name_signers.is_empty() {
            granted(&data, signer.node, trust.name_signers, now_ms / 1000)
                .map_err(|_| StorageError::NotGranted(def.id))?;
        }
        if let Writer::Signer(node) = writer {
            if signer.node != node {
                return Err(StorageError::NotTheSigner(def.id));
            }
        }
        if older {
            return Err(StorageError::DataTooOld(def.id));
        }
        let bytes = data.buffer_len();
        writes.insert(
            slot,
            Value {
                data,
                key: signer.key,
                expires_ms,
                bytes,
            },
        );
    }
    if def.model == DataModel::Dictionary {
        let stored = state.map_or(0, |s| s.values.len());
        let new = writes
            .keys()
            .filter(|k| !state.is_some_and(|s| s.values.contains_key(*k)))
            .count();
        if stored + new > def.max_count as usize {
            return Err(StorageError::TooManyValues {
                kind: def.id,
                max: def.max_count,
            });
        }
    }
    let current = state.map_or(0, |s| s.generation);
    let generation = if replica {
        let g = current.max(kd.generation);
        if g == 0 && !writes.is_empty() {
            1
        } else {
            g
        }
    } else if writes.is_empty() {
        current
    } else {
        current.saturating_add(1)
    };
    Ok(Plan {
        kind: def.id,
        generation,
        writes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::resource_id;
    use crate::storage::access::verify_fetch_answer;
    use crate::storage::kind::{DEBUG_ARRAY, HIT_LOCATOR, NAME_RECORD, SIP_REGISTRATION};
    use crate::storage::signature::sign_value;
    use crate::wire::{NodeId, StoredDataSpecifier};
    use hip::HostIdentity;

    /// `Store::store` as the node calls it for a request signed by whoever signed its
    /// first value (the common case of these tests), or for a copy when it is a replica.
    trait Put {
        fn put(
            &mut self,
            now_ms: u64,
            req: &StoreReq,
            certs: &Certificates,
        ) -> Result<StoreAns, StorageError>;
    }

    impl Put for Store {
        fn put(
            &mut self,
            now_ms: u64,
            req: &StoreReq,
            certs: &Certificates,
        ) -> Result<StoreAns, StorageError> {
            let first = req
                .kind_data
                .iter()
                .find_map(|kd| kd.values.first().map(|v| (kd.kind, v)));
            let signer = first
                .and_then(|(kind, v)| {
                    crate::storage::signature::verify_value(&req.resource, kind, v, certs).ok()
                })
                .map_or(NodeId::default(), |s| s.node);
            let writer = if req.replica_number > 0 {
                Writer::Copy
            } else {
                Writer::Signer(signer)
            };
            self.store(now_ms, req, certs, writer)
        }
    }

    /// HIT-LOCATOR and SIP-REGISTRATION as defined; NAME-RECORD with room for 2 claimants
    /// and unattested names (free values: the dictionary's mechanics are tested here, the
    /// claimed name in `access`); DEBUG-ARRAY with 8 entries of at most 16 bytes.
    fn kinds() -> Kinds {
        Kinds::new([
            KindDef::HIT_LOCATOR,
            KindDef::SIP_REGISTRATION,
            KindDef {
                max_count: 2,
                user_name: crate::storage::kind::UserName::Unattested,
                ..KindDef::NAME_RECORD
            },
            KindDef {
                max_count: 8,
                max_size: 16,
                ..KindDef::DEBUG_ARRAY
            },
        ])
        .unwrap()
    }

    struct World {
        ids: Vec<HostIdentity>,
        certs: Certificates,
    }

    impl World {
        fn new(n: u8) -> World {
            let ids: Vec<HostIdentity> = (1..=n)
                .map(|i| HostIdentity::from_secret([i; 32]))
                .collect();
            let mut certs = Certificates::new();
            for id in &ids {
                certs.insert_identity(id.public());
            }
            World { ids, certs }
        }

        fn node(&self, i: usize) -> NodeId {
            NodeId::from(self.ids[i].hit())
        }

        /// Resource-ID for NODE-MATCH Kinds of identity `i`.
        fn own(&self, i: usize) -> ResourceId {
            resource_id(&self.node(i).0)
        }

        /// Resource-ID for USER(-NODE)-MATCH Kinds with the HIT-text user name.
        fn user(&self, i: usize) -> ResourceId {
            resource_id(self.ids[i].hit().to_string().as_bytes())
        }

        fn sign(
            &self,
            i: usize,
            resource: &ResourceId,
            kind: KindId,
            time: u64,
            lifetime: u32,
            value: StoredDataValue,
        ) -> StoredData {
            let mut data = StoredData {
                storage_time: time,
                lifetime,
                value,
                signature: Signature::anonymous(),
            };
            sign_value(&self.ids[i], resource, kind, &mut data);
            data
        }
    }

    fn dv(v: &[u8]) -> DataValue {
        DataValue {
            exists: true,
            value: v.to_vec(),
        }
    }

    fn single(v: &[u8]) -> StoredDataValue {
        StoredDataValue::Single(dv(v))
    }

    fn entry(index: u32, v: &[u8]) -> StoredDataValue {
        StoredDataValue::Array {
            index,
            value: dv(v),
        }
    }

    fn keyed(key: &[u8], v: &[u8]) -> StoredDataValue {
        StoredDataValue::Dictionary {
            key: key.to_vec(),
            value: dv(v),
        }
    }

    fn req(resource: &ResourceId, replica: u8, kind_data: Vec<StoreKindData>) -> StoreReq {
        StoreReq {
            resource: resource.clone(),
            replica_number: replica,
            kind_data,
        }
    }

    fn kd(kind: KindId, generation: u64, values: Vec<StoredData>) -> StoreKindData {
        StoreKindData {
            kind,
            generation,
            values,
        }
    }

    fn fetch_req(
        resource: &ResourceId,
        kind: KindId,
        generation: u64,
        selector: Selector,
    ) -> FetchReq {
        FetchReq {
            resource: resource.clone(),
            specifiers: vec![StoredDataSpecifier {
                kind,
                generation,
                selector,
            }],
        }
    }

    fn fetch_values(store: &Store, now: u64, f: &FetchReq) -> Vec<StoredData> {
        let fetched = store.fetch(now, f).unwrap();
        fetched.ans.kind_responses[0].values.clone()
    }

    /// Recounts everything the store tracks incrementally.
    fn check_invariants(s: &Store) {
        let (mut values, mut bytes) = (0, 0);
        let mut signers = HashMap::new();
        for (pos, r) in &s.resources {
            assert_eq!(resource_position(&r.id), Some(*pos));
            assert!(!r.kinds.is_empty(), "empty resource kept");
            for (kind, k) in &r.kinds {
                assert!(!k.values.is_empty(), "empty kind kept");
                assert!(k.generation >= 1);
                let def = s.kinds.get(*kind).unwrap();
                assert!(k.values.len() <= def.max_count as usize);
                for (slot, v) in &k.values {
                    values += 1;
                    bytes += v.bytes;
                    *signers.entry(v.key).or_insert(0usize) += 1;
                    assert_eq!(v.bytes, v.data.buffer_len());
                    assert!(s
                        .expiry
                        .contains(&(v.expires_ms, *pos, *kind, slot.clone())));
                }
            }
        }
        let b = &s.books;
        assert_eq!((b.values, b.bytes, s.expiry.len()), (values, bytes, values));
        assert_eq!(b.per_signer, signers);
        assert!(s.resources.len() <= s.limits.max_resources);
        assert!(b.values <= s.limits.max_values && b.bytes <= s.limits.max_bytes);
        assert!(signers.values().all(|n| *n <= s.limits.max_per_signer));
    }

    fn ans(kind: KindId, generation: u64) -> StoreAns {
        StoreAns {
            kind_responses: vec![StoreKindResponse {
                kind,
                generation,
                replicas: vec![],
            }],
        }
    }

    #[test]
    fn single_value_stores_replaces_and_fetches() {
        let w = World::new(1);
        let mut s = Store::new(kinds());
        let at = w.own(0);
        let v1 = w.sign(0, &at, HIT_LOCATOR, 100, 600, single(b"loc1"));
        let r = req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![v1.clone()])]);
        assert_eq!(s.put(1_000, &r, &w.certs), Ok(ans(HIT_LOCATOR, 1)));
        assert_eq!(s.generation(&at, HIT_LOCATOR), 1);

        let f = fetch_req(&at, HIT_LOCATOR, 0, Selector::Single);
        let fetched = s.fetch(11_000, &f).unwrap();
        let got = &fetched.ans.kind_responses[0];
        assert_eq!(got.generation, 1);
        // 590 s left: the lifetime goes out as what remains.
        assert_eq!(
            got.values,
            vec![StoredData {
                lifetime: 590,
                ..v1
            }]
        );
        assert_eq!(
            fetched.certificates,
            vec![GenericCertificate::ed25519(
                &w.ids[0].public().public_bytes()
            )]
        );

        let v2 = w.sign(0, &at, HIT_LOCATOR, 200, 600, single(b"loc2"));
        let r = req(&at, 0, vec![kd(HIT_LOCATOR, 1, vec![v2.clone()])]);
        assert_eq!(s.put(2_000, &r, &w.certs), Ok(ans(HIT_LOCATOR, 2)));
        assert_eq!(fetch_values(&s, 2_000, &f), vec![v2]);
        // Asking with the current generation: nothing new.
        let same = fetch_req(&at, HIT_LOCATOR, 2, Selector::Single);
        assert!(fetch_values(&s, 2_000, &same).is_empty());
        assert_eq!(s.counts().resources, 1);
        assert_eq!(s.counts().values, 1);
        check_invariants(&s);
    }

    /// The attack of a member who copies Alice's record: store it again unchanged with
    /// lifetime 0 (deleting it at the owner and its replicas), then an older captured value
    /// of hers with the longest lifetime (a rollback). Neither as an original store in its
    /// own name nor dressed as a copy does it change what the store holds.
    #[test]
    fn nobody_deletes_or_rolls_back_another_signers_value() {
        let w = World::new(2);
        let mut s = Store::new(kinds());
        let at = w.own(0);
        let old = w.sign(0, &at, HIT_LOCATOR, 100, 600, single(b"old"));
        let cur = w.sign(0, &at, HIT_LOCATOR, 200, 600, single(b"cur"));
        let alice = Writer::Signer(w.node(0));
        let bob = Writer::Signer(w.node(1));
        let store = |s: &mut Store, replica, v: &StoredData, writer| {
            s.store(
                1_000,
                &req(&at, replica, vec![kd(HIT_LOCATOR, 0, vec![v.clone()])]),
                &w.certs,
                writer,
            )
        };
        assert!(store(&mut s, 0, &cur, alice).is_ok());
        let mut zero = cur.clone();
        zero.lifetime = 0;
        let mut forever = old.clone();
        forever.lifetime = u32::MAX;
        // In Bob's own name: refused.
        assert_eq!(
            store(&mut s, 0, &zero, bob),
            Err(StorageError::NotTheSigner(HIT_LOCATOR))
        );
        assert_eq!(
            store(&mut s, 0, &forever, bob),
            Err(StorageError::NotTheSigner(HIT_LOCATOR))
        );
        // As a copy: a value as old as ours never cuts its life short, an older one is skipped.
        assert!(store(&mut s, 1, &zero, Writer::Copy).is_ok());
        assert!(store(&mut s, 1, &forever, Writer::Copy).is_ok());
        let f = fetch_req(&at, HIT_LOCATOR, 0, Selector::Single);
        let held = fetch_values(&s, 1_000, &f);
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].storage_time, held[0].lifetime), (200, 600));
        // Alice herself may do what she likes with her value, deletion by lifetime 0 too.
        assert!(store(&mut s, 0, &zero, alice).is_ok());
        // Only the synthesised "no such value" is left.
        assert_eq!(fetch_values(&s, 1_000, &f)[0].storage_time, 0);
        check_invariants(&s);
    }

    #[test]
    fn lifetimes_are_capped_by_the_kind() {
        let w = World::new(1);
        let mut s = Store::new(kinds());
        let at = w.own(0);
        let v = w.sign(0, &at, HIT_LOCATOR, 1, u32::MAX, single(b"loc"));
        assert!(s
            .put(0, &req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![v])]), &w.certs)
            .is_ok());
        let cap = KindDef::HIT_LOCATOR.max_lifetime;
        let f = fetch_req(&at, HIT_LOCATOR, 0, Selector::Single);
        assert_eq!(fetch_values(&s, 0, &f)[0].lifetime, cap);
        let gone = u64::from(cap) * 1000;
        assert_eq!(s.next_expiry(), Some(gone));
        assert_eq!(fetch_values(&s, gone - 1, &f)[0].storage_time, 1);
        assert_eq!(fetch_values(&s, gone, &f)[0].storage_time, 0);
        // A Kind that would keep nothing is no Kind.
        let def = KindDef {
            max_lifetime: 0,
            ..KindDef::HIT_LOCATOR
        };
        assert!(Kinds::new([def]).is_err());
    }

    /// With name signers, a storing peer takes a claim of a name only with a valid grant
    /// to its signer; a claim's deletion needs none (its owner lets the name go).
    #[test]
    fn claims_of_names_need_a_grant_where_the_overlay_has_signers() {
        let w = World::new(3);
        let signer = &w.ids[2];
        let mut s =
            Store::new(Kinds::hipbone()).with_name_signers(vec![signer.public().public_bytes()]);
        let name = b"alice.lab.example";
        let at = resource_id(name);
        let claim = |i: usize, grant: Option<crate::wire::NameGrant>, exists: bool, t: u64| {
            let record = NameRecord {
                name: name.to_vec(),
                hit: w.node(i),
                extension: grant.map(|g| g.to_bytes()).unwrap_or_default(),
            };
            let value = StoredDataValue::Dictionary {
                key: w.node(i).0.to_vec(),
                value: DataValue {
                    exists,
                    value: record.to_bytes(),
                },
            };
            let v = w.sign(i, &at, NAME_RECORD, t, 60, value);
            req(&at, 0, vec![kd(NAME_RECORD, 0, vec![v])])
        };
        let alice = w.ids[0].hit();
        let good = crate::names::grant(signer, name, alice, 1_000).unwrap();
        let refused = Err(StorageError::NotGranted(NAME_RECORD));
        // No grant; alice's grant under another HIT; a grant by a key that is no signer.
        assert_eq!(s.put(0, &claim(0, None, true, 1), &w.certs), refused);
        assert_eq!(
            s.put(0, &claim(1, Some(good.clone()), true, 1), &w.certs),
            refused
        );
        let forged = crate::names::grant(&w.ids[1], name, w.ids[1].hit(), 1_000).unwrap();
        assert_eq!(
            s.put(0, &claim(1, Some(forged), true, 1), &w.certs),
            refused
        );
        assert_eq!(s.counts().values, 0);
        // Alice's granted claim, while the grant runs; not after.
        assert!(s
            .put(999_000, &claim(0, Some(good.clone()), true, 2), &w.certs)
            .is_ok());
        assert_eq!(
            s.put(1_000_000, &claim(0, Some(good), true, 3), &w.certs),
            refused
        );
        // Her deletion needs no grant.
        assert!(s
            .put(1_000_000, &claim(0, None, false, 4), &w.certs)
            .is_ok());
        // Without signers, any claim its signer may write is stored.
        let mut open = Store::new(Kinds::hipbone());
        assert!(open.put(0, &claim(1, None, true, 1), &w.certs).is_ok());
        assert_eq!(
            StorageError::NotGranted(NAME_RECORD).code(),
            crate::wire::ErrorCode::Forbidden
        );
        check_invariants(&s);
    }

    /// One key whose Resource-IDs are free (here: an unattested dictionary at many names)
    /// fills its quota and no more; another signer still finds room.
    #[test]
    fn one_signer_cannot_crowd_out_the_others() {
        let w = World::new(2);
        let limits = StoreLimits {
            max_per_signer: 5,
            ..StoreLimits::default()
        };
        let mut s = Store::with_limits(kinds(), limits);
        let entry = |i: usize, n: u8| {
            let at = resource_id(&[b'n', n]);
            let v = w.sign(i, &at, NAME_RECORD, 1, 60, keyed(&w.node(i).0, b"hit"));
            req(&at, 0, vec![kd(NAME_RECORD, 0, vec![v])])
        };
        for n in 0..5 {
            assert!(s.put(0, &entry(0, n), &w.certs).is_ok());
        }
        assert_eq!(
            s.put(0, &entry(0, 5), &w.certs),
            Err(StorageError::SignerQuota)
        );
        // Replacing one of its own values is no new value.
        assert!(s.put(0, &entry(0, 4), &w.certs).is_ok());
        // A copy counts the same: the quota holds whoever passes the values on.
        let mut copy = entry(0, 6);
        copy.replica_number = 1;
        assert_eq!(
            s.store(0, &copy, &w.certs, Writer::Copy),
            Err(StorageError::SignerQuota)
        );
        assert!(s.put(0, &entry(1, 0), &w.certs).is_ok());
        assert_eq!(s.counts().values, 6);
        check_invariants(&s);
    }

    #[test]
    fn every_policy_refuses_a_non_owner() {
        let w = World::new(2);
        let mut s = Store::new(kinds());
        // NODE-MATCH: Bob at Alice's locator resource.
        let at = w.own(0);
        let bob = w.sign(1, &at, HIT_LOCATOR, 1, 60, single(b"x"));
        let r = req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![bob])]);
        assert!(matches!(
            s.put(0, &r, &w.certs),
            Err(StorageError::AccessDenied { .. })
        ));
        // USER-NODE-MATCH: Bob under Alice's user name with his own key, and with hers.
        let at = w.user(0);
        for key in [w.node(1), w.node(0)] {
            let v = w.sign(1, &at, SIP_REGISTRATION, 1, 60, keyed(&key.0, b"route"));
            let r = req(&at, 0, vec![kd(SIP_REGISTRATION, 0, vec![v])]);
            assert_eq!(
                s.put(0, &r, &w.certs).unwrap_err().code(),
                crate::wire::ErrorCode::Forbidden
            );
        }
        // Replicas are checked the same way.
        let v = w.sign(
            1,
            &at,
            SIP_REGISTRATION,
            1,
            60,
            keyed(&w.node(1).0, b"route"),
        );
        let r = req(&at, 1, vec![kd(SIP_REGISTRATION, 3, vec![v])]);
        assert!(s.put(0, &r, &w.certs).is_err());
        assert_eq!(s.counts(), Counts::default());

        // The owners themselves.
        let v = w.sign(
            0,
            &at,
            SIP_REGISTRATION,
            1,
            60,
            keyed(&w.node(0).0, b"route"),
        );
        let r = req(&at, 0, vec![kd(SIP_REGISTRATION, 0, vec![v])]);
        assert_eq!(s.put(0, &r, &w.certs), Ok(ans(SIP_REGISTRATION, 1)));
        let at = w.own(1);
        let v = w.sign(1, &at, DEBUG_ARRAY, 1, 60, entry(u32::MAX, b"x"));
        let r = req(&at, 0, vec![kd(DEBUG_ARRAY, 0, vec![v])]);
        assert_eq!(s.put(0, &r, &w.certs), Ok(ans(DEBUG_ARRAY, 1)));
        check_invariants(&s);
    }

    #[test]
    fn forged_values_are_refused_on_store_and_on_fetch() {
        let w = World::new(3);
        let mut s = Store::new(kinds());
        let at = w.own(0);
        let good = w.sign(0, &at, HIT_LOCATOR, 5, 60, single(b"real"));
        let mut forged = good.clone();
        forged.value = single(b"fake");
        for (bad, err) in [
            (forged.clone(), StorageError::BadSignature),
            (
                StoredData {
                    signature: Signature::anonymous(),
                    ..good.clone()
                },
                StorageError::UnsupportedSignature(
                    crate::wire::SignatureAndHashAlgorithm::ANONYMOUS,
                ),
            ),
        ] {
            let r = req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![bad])]);
            assert_eq!(s.put(0, &r, &w.certs), Err(err));
        }
        // Without the signer's certificate.
        let r = req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![good.clone()])]);
        assert_eq!(
            s.put(0, &r, &Certificates::new()),
            Err(StorageError::UnknownSigner)
        );
        assert_eq!(s.counts(), Counts::default());

        // An honest answer verifies with the certificates that come with it.
        s.put(0, &r, &w.certs).unwrap();
        let f = fetch_req(&at, HIT_LOCATOR, 0, Selector::Single);
        let fetched = s.fetch(0, &f).unwrap();
        let certs = Certificates::from_block(&fetched.certificates);
        let v = verify_fetch_answer(s.kinds(), &f, &fetched.ans, &certs);
        assert!(v.rejected.is_empty());
        assert_eq!(v.kinds[0].values[0].signer, w.node(0));
        assert_eq!(v.kinds[0].values[0].data, good);

        // A storing peer that swaps the value, or signs one itself, is caught.
        let mallory_own = w.sign(2, &at, HIT_LOCATOR, 9, 60, single(b"mine"));
        for lie in [forged, mallory_own] {
            let mut ans = fetched.ans.clone();
            ans.kind_responses[0].values = vec![lie];
            let v = verify_fetch_answer(s.kinds(), &f, &ans, &w.certs);
            assert!(v.kinds[0].values.is_empty());
            assert_eq!(v.rejected.len(), 1);
        }
    }

    #[test]
    fn generation_counter_must_match_unless_zero() {
        let w = World::new(1);
        let mut s = Store::new(kinds());
        let at = w.own(0);
        let store = |s: &mut Store, g: u64, t: u64| {
            let v = w.sign(0, &at, HIT_LOCATOR, t, 60, single(&t.to_be_bytes()));
            s.put(0, &req(&at, 0, vec![kd(HIT_LOCATOR, g, vec![v])]), &w.certs)
        };
        assert_eq!(store(&mut s, 0, 1), Ok(ans(HIT_LOCATOR, 1)));
        assert_eq!(store(&mut s, 0, 2), Ok(ans(HIT_LOCATOR, 2)));
        let err = store(&mut s, 1, 3).unwrap_err();
        assert_eq!(err, StorageError::GenerationMismatch(ans(HIT_LOCATOR, 2)));
        assert_eq!(err.code(), crate::wire::ErrorCode::GenerationCounterTooLow);
        assert_eq!(
            store(&mut s, 7, 3),
            Err(StorageError::GenerationMismatch(ans(HIT_LOCATOR, 2)))
        );
        assert_eq!(s.generation(&at, HIT_LOCATOR), 2);
        assert_eq!(store(&mut s, 2, 3), Ok(ans(HIT_LOCATOR, 3)));
        // A non-zero counter for a Kind that holds nothing cannot match.
        let empty = w.own(0);
        let v = w.sign(0, &empty, DEBUG_ARRAY, 1, 60, entry(0, b"a"));
        let r = req(&empty, 0, vec![kd(DEBUG_ARRAY, 1, vec![v])]);
        assert!(matches!(
            s.put(0, &r, &w.certs),
            Err(StorageError::GenerationMismatch(_))
        ));
    }

    #[test]
    fn older_storage_time_is_refused() {
        let w = World::new(1);
        let mut s = Store::new(kinds());
        let at = w.own(0);
        let put = |s: &mut Store, t: u64, v: &[u8]| {
            let d = w.sign(0, &at, HIT_LOCATOR, t, 60, single(v));
            s.put(0, &req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![d])]), &w.certs)
        };
        put(&mut s, 10, b"a").unwrap();
        assert_eq!(
            put(&mut s, 9, b"b"),
            Err(StorageError::DataTooOld(HIT_LOCATOR))
        );
        assert_eq!(
            put(&mut s, 9, b"b").unwrap_err().code(),
            crate::wire::ErrorCode::DataTooOld
        );
        // Equal is not older (the RFC's test is "older than").
        assert!(put(&mut s, 10, b"c").is_ok());
        // Two values for one slot in one request are applied in order.
        let d1 = w.sign(0, &at, HIT_LOCATOR, 20, 60, single(b"d"));
        let d0 = w.sign(0, &at, HIT_LOCATOR, 15, 60, single(b"e"));
        let r = req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![d1, d0])]);
        assert_eq!(
            s.put(0, &r, &w.certs),
            Err(StorageError::DataTooOld(HIT_LOCATOR))
        );
        let f = fetch_req(&at, HIT_LOCATOR, 0, Selector::Single);
        assert_eq!(fetch_values(&s, 0, &f)[0].value, single(b"c"));
    }

    #[test]
    fn size_and_count_limits() {
        let w = World::new(4);
        let mut s = Store::new(kinds());
        let at = w.own(0);
        // DEBUG-ARRAY here: 16 bytes per value, 8 entries.
        let v = w.sign(0, &at, DEBUG_ARRAY, 1, 60, entry(0, &[0; 17]));
        let r = req(&at, 0, vec![kd(DEBUG_ARRAY, 0, vec![v])]);
        let err = s.put(0, &r, &w.certs).unwrap_err();
        assert_eq!(
            err,
            StorageError::ValueTooLarge {
                kind: DEBUG_ARRAY,
                size: 17,
                max: 16
            }
        );
        assert_eq!(err.code(), crate::wire::ErrorCode::DataTooLarge);
        let v = w.sign(0, &at, DEBUG_ARRAY, 1, 60, entry(7, &[0; 16]));
        let r = req(&at, 0, vec![kd(DEBUG_ARRAY, 0, vec![v])]);
        assert!(s.put(0, &r, &w.certs).is_ok());
        for index in [8, u32::MAX, u32::MAX - 1] {
            let v = w.sign(0, &at, DEBUG_ARRAY, 1, 60, entry(index, b"x"));
            let r = req(&at, 0, vec![kd(DEBUG_ARRAY, 0, vec![v])]);
            assert_eq!(
                s.put(0, &r, &w.certs),
                Err(StorageError::TooManyValues {
                    kind: DEBUG_ARRAY,
                    max: 8
                })
            );
        }

        // NAME-RECORD here: 2 claimants per name.
        let name = resource_id(b"www.example.net");
        let claim = |i: usize| {
            let v = w.sign(i, &name, NAME_RECORD, 1, 60, keyed(&w.node(i).0, b"hit"));
            req(&name, 0, vec![kd(NAME_RECORD, 0, vec![v])])
        };
        assert!(s.put(0, &claim(0), &w.certs).is_ok());
        assert!(s.put(0, &claim(1), &w.certs).is_ok());
        // A third key does not fit; an existing key still updates.
        assert_eq!(
            s.put(0, &claim(2), &w.certs),
            Err(StorageError::TooManyValues {
                kind: NAME_RECORD,
                max: 2
            })
        );
        assert!(s.put(0, &claim(1), &w.certs).is_ok());
        check_invariants(&s);
    }

    #[test]
    fn values_expire() {
        let w = World::new(1);
        let mut s = Store::new(kinds());
        let at = w.own(0);
        let v = w.sign(0, &at, HIT_LOCATOR, 1, 10, single(b"x"));
        s.put(
            1_000,
            &req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![v])]),
            &w.certs,
        )
        .unwrap();
        assert_eq!(s.next_expiry(), Some(11_000));
        let f = fetch_req(&at, HIT_LOCATOR, 0, Selector::Single);
        assert_eq!(fetch_values(&s, 10_999, &f)[0].lifetime, 1);
        // Expired but not yet freed: not served.
        let gone = fetch_values(&s, 11_000, &f);
        assert_eq!(gone, vec![absent(StoredDataValue::Single(nothing()))]);
        assert_eq!(s.expire(10_999), 0);
        assert_eq!(s.expire(11_000), 1);
        assert_eq!(s.next_expiry(), None);
        assert_eq!(s.counts(), Counts::default());
        // The Kind's state went with its values: counters start again.
        assert_eq!(s.generation(&at, HIT_LOCATOR), 0);
        // Lifetime 0 is stored and gone at once.
        let v = w.sign(0, &at, HIT_LOCATOR, 2, 0, single(b"x"));
        s.put(
            20_000,
            &req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![v])]),
            &w.certs,
        )
        .unwrap();
        assert!(fetch_values(&s, 20_000, &f)[0].signature == Signature::anonymous());
        // A store purges what has expired before it checks anything.
        let v = w.sign(0, &at, HIT_LOCATOR, 1, 10, single(b"older but alone"));
        assert!(s
            .put(
                20_001,
                &req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![v])]),
                &w.certs
            )
            .is_ok());
        check_invariants(&s);
    }

    #[test]
    fn arrays_append_pad_and_select_ranges() {
        let w = World::new(1);
        let mut s = Store::new(kinds());
        let at = w.own(0);
        let appends: Vec<StoredData> = (0..3u8)
            .map(|i| w.sign(0, &at, DEBUG_ARRAY, 1, 60, entry(u32::MAX, &[i])))
            .collect();
        let r = req(&at, 0, vec![kd(DEBUG_ARRAY, 0, appends)]);
        s.put(0, &r, &w.certs).unwrap();
        // An explicit index past the end leaves a gap.
        let v = w.sign(0, &at, DEBUG_ARRAY, 1, 60, entry(5, b"five"));
        s.put(0, &req(&at, 0, vec![kd(DEBUG_ARRAY, 0, vec![v])]), &w.certs)
            .unwrap();
        let v = w.sign(0, &at, DEBUG_ARRAY, 1, 60, entry(u32::MAX, b"six"));
        s.put(0, &req(&at, 0, vec![kd(DEBUG_ARRAY, 0, vec![v])]), &w.certs)
            .unwrap();

        let all = ArrayRange {
            first: 0,
            last: u32::MAX,
        };
        let got = fetch_values(
            &s,
            0,
            &fetch_req(&at, DEBUG_ARRAY, 0, Selector::Array(vec![all])),
        );
        let shape: Vec<(u32, bool, Vec<u8>)> = got
            .iter()
            .map(|d| match &d.value {
                StoredDataValue::Array { index, value } => {
                    (*index, value.exists, value.value.clone())
                }
                _ => panic!("not an array entry"),
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, true, vec![0]),
                (1, true, vec![1]),
                (2, true, vec![2]),
                (3, false, vec![]),
                (4, false, vec![]),
                (5, true, b"five".to_vec()),
                (6, true, b"six".to_vec()),
            ]
        );
        // Appended entries still verify at their real index (indices are not signed).
        let f = fetch_req(&at, DEBUG_ARRAY, 0, Selector::Array(vec![all]));
        let fetched = s.fetch(0, &f).unwrap();
        let v = verify_fetch_answer(s.kinds(), &f, &fetched.ans, &w.certs);
        assert_eq!((v.kinds[0].values.len(), v.rejected.len()), (5, 0));

        let ranges = |r: Vec<(u32, u32)>| {
            Selector::Array(
                r.into_iter()
                    .map(|(first, last)| ArrayRange { first, last })
                    .collect(),
            )
        };
        let indices = |sel| -> Vec<u32> {
            fetch_values(&s, 0, &fetch_req(&at, DEBUG_ARRAY, 0, sel))
                .iter()
                .filter_map(|d| match d.value {
                    StoredDataValue::Array { index, .. } => Some(index),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(indices(ranges(vec![(u32::MAX, u32::MAX)])), vec![6]);
        assert_eq!(
            indices(ranges(vec![(5, 100), (0, 1), (1, 1)])),
            vec![0, 1, 5, 6]
        );
        assert_eq!(indices(ranges(vec![(7, 9)])), Vec::<u32>::new());
        assert_eq!(
            s.fetch(0, &fetch_req(&at, DEBUG_ARRAY, 0, ranges(vec![(3, 2)]))),
            Err(StorageError::BadRange(DEBUG_ARRAY))
        );
        // A selector of another model.
        assert_eq!(
            s.fetch(0, &fetch_req(&at, DEBUG_ARRAY, 0, Selector::Single)),
            Err(StorageError::WrongModel(DEBUG_ARRAY))
        );
        check_invariants(&s);
    }

    #[test]
    fn dictionaries_by_key_and_whole() {
        let w = World::new(2);
        let mut s = Store::new(kinds());
        let name = resource_id(b"www.example.net");
        for i in 0..2 {
            let v = w.sign(
                i,
                &name,
                NAME_RECORD,
                1,
                60,
                keyed(&w.node(i).0, &[i as u8]),
            );
            s.put(
                0,
                &req(&name, 0, vec![kd(NAME_RECORD, 0, vec![v])]),
                &w.certs,
            )
            .unwrap();
        }
        assert_eq!(s.generation(&name, NAME_RECORD), 2);
        let every = fetch_values(
            &s,
            0,
            &fetch_req(&name, NAME_RECORD, 0, Selector::Dictionary(vec![])),
        );
        assert_eq!(every.len(), 2);
        let missing = vec![9; 16];
        let some = fetch_values(
            &s,
            0,
            &fetch_req(
                &name,
                NAME_RECORD,
                0,
                Selector::Dictionary(vec![w.node(1).0.to_vec(), missing.clone(), missing.clone()]),
            ),
        );
        assert_eq!(some.len(), 2);
        assert_eq!(some[0].value, keyed(&w.node(1).0, &[1]));
        assert_eq!(
            some[1],
            absent(StoredDataValue::Dictionary {
                key: missing,
                value: nothing()
            })
        );
        // A Resource we hold nothing for.
        let other = resource_id(b"nobody");
        let f = fetch_req(&other, NAME_RECORD, 0, Selector::Dictionary(vec![]));
        let fetched = s.fetch(0, &f).unwrap();
        assert_eq!(fetched.ans.kind_responses[0].generation, 0);
        assert!(fetched.ans.kind_responses[0].values.is_empty());
        assert!(fetched.certificates.is_empty());
    }

    #[test]
    fn deletion_is_a_signed_value() {
        let w = World::new(1);
        let mut s = Store::new(kinds());
        let at = w.user(0);
        let key = w.node(0).0;
        let v = w.sign(0, &at, SIP_REGISTRATION, 1, 60, keyed(&key, b"route"));
        s.put(
            0,
            &req(&at, 0, vec![kd(SIP_REGISTRATION, 0, vec![v])]),
            &w.certs,
        )
        .unwrap();
        let gone = StoredDataValue::Dictionary {
            key: key.to_vec(),
            value: nothing(),
        };
        let del = w.sign(0, &at, SIP_REGISTRATION, 2, 60, gone.clone());
        s.put(
            0,
            &req(&at, 0, vec![kd(SIP_REGISTRATION, 0, vec![del.clone()])]),
            &w.certs,
        )
        .unwrap();
        let f = fetch_req(&at, SIP_REGISTRATION, 0, Selector::Dictionary(vec![]));
        let fetched = s.fetch(0, &f).unwrap();
        assert_eq!(fetched.ans.kind_responses[0].values, vec![del]);
        // It is signed, so the fetcher learns who deleted, not just that nothing is there.
        let v = verify_fetch_answer(s.kinds(), &f, &fetched.ans, &w.certs);
        assert_eq!(v.kinds[0].values[0].signer, w.node(0));
        // And it blocks a replay of the older registration.
        let old = w.sign(0, &at, SIP_REGISTRATION, 1, 60, keyed(&key, b"route"));
        assert_eq!(
            s.put(
                0,
                &req(&at, 0, vec![kd(SIP_REGISTRATION, 0, vec![old])]),
                &w.certs
            ),
            Err(StorageError::DataTooOld(SIP_REGISTRATION))
        );
        assert_eq!(s.counts().values, 1);
    }

    #[test]
    fn a_refused_request_changes_nothing() {
        let w = World::new(2);
        let mut s = Store::new(kinds());
        let at = w.own(0);
        let v = w.sign(0, &at, HIT_LOCATOR, 5, 60, single(b"kept"));
        s.put(0, &req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![v])]), &w.certs)
            .unwrap();
        let before = (s.counts(), s.next_expiry(), s.generation(&at, HIT_LOCATOR));
        let f = fetch_req(&at, HIT_LOCATOR, 0, Selector::Single);
        let fetched_before = s.fetch(0, &f).unwrap();

        let newer = w.sign(0, &at, HIT_LOCATOR, 6, 600, single(b"new"));
        let app = w.sign(0, &at, DEBUG_ARRAY, 6, 600, entry(u32::MAX, b"a"));
        let bad_last = w.sign(1, &at, DEBUG_ARRAY, 6, 600, entry(u32::MAX, b"b"));
        let too_big = w.sign(0, &at, DEBUG_ARRAY, 6, 600, entry(u32::MAX, &[0; 99]));
        let too_old = w.sign(0, &at, HIT_LOCATOR, 4, 600, single(b"old"));
        for bad in [
            // The first Kind is fine; the second fails on its last value.
            vec![
                kd(HIT_LOCATOR, 0, vec![newer.clone()]),
                kd(DEBUG_ARRAY, 0, vec![app.clone(), bad_last]),
            ],
            vec![
                kd(HIT_LOCATOR, 0, vec![newer.clone()]),
                kd(DEBUG_ARRAY, 0, vec![app.clone(), too_big]),
            ],
            vec![
                kd(DEBUG_ARRAY, 0, vec![app.clone()]),
                kd(HIT_LOCATOR, 0, vec![newer.clone(), too_old]),
            ],
            vec![
                kd(HIT_LOCATOR, 0, vec![newer.clone()]),
                kd(HIT_LOCATOR, 0, vec![newer.clone()]),
            ],
            vec![
                kd(HIT_LOCATOR, 0, vec![newer.clone()]),
                kd(0x104, 0, vec![]),
            ],
            vec![
                kd(DEBUG_ARRAY, 0, vec![app.clone()]),
                kd(HIT_LOCATOR, 9, vec![newer.clone()]),
            ],
        ] {
            assert!(s.put(0, &req(&at, 0, bad), &w.certs).is_err());
            assert_eq!(
                (s.counts(), s.next_expiry(), s.generation(&at, HIT_LOCATOR)),
                before
            );
            assert_eq!(s.fetch(0, &f).unwrap(), fetched_before);
            check_invariants(&s);
        }
        assert_eq!(
            s.put(
                0,
                &req(&at, 0, vec![kd(0x104, 0, vec![]), kd(0x105, 0, vec![])]),
                &w.certs
            ),
            Err(StorageError::UnknownKinds(vec![0x104, 0x105]))
        );
        assert_eq!(
            s.put(0, &req(&ResourceId(vec![1; 20]), 0, vec![]), &w.certs),
            Err(StorageError::BadResourceId)
        );
    }

    #[test]
    fn replica_stores_merge_and_copy_the_counter() {
        let w = World::new(1);
        let mut s = Store::new(kinds());
        let at = w.own(0);
        let v5 = w.sign(0, &at, HIT_LOCATOR, 5, 60, single(b"five"));
        let v4 = w.sign(0, &at, HIT_LOCATOR, 4, 60, single(b"four"));
        // The owner's counter is copied, whatever ours was; no ETag check.
        let r = req(&at, 1, vec![kd(HIT_LOCATOR, 7, vec![v5.clone()])]);
        assert_eq!(s.put(0, &r, &w.certs), Ok(ans(HIT_LOCATOR, 7)));
        let r = req(&at, 2, vec![kd(HIT_LOCATOR, 9, vec![v5.clone()])]);
        assert_eq!(s.put(0, &r, &w.certs), Ok(ans(HIT_LOCATOR, 9)));
        // An older value is skipped, not an error, and the counter does not go back.
        let r = req(&at, 1, vec![kd(HIT_LOCATOR, 3, vec![v4.clone()])]);
        assert_eq!(s.put(0, &r, &w.certs), Ok(ans(HIT_LOCATOR, 9)));
        let f = fetch_req(&at, HIT_LOCATOR, 0, Selector::Single);
        assert_eq!(fetch_values(&s, 0, &f)[0].value, single(b"five"));
        // The same older value as an original store is refused.
        let r = req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![v4])]);
        assert_eq!(
            s.put(0, &r, &w.certs),
            Err(StorageError::DataTooOld(HIT_LOCATOR))
        );
        // A replica store with counter 0 into an empty slot still starts at 1.
        let other = w.sign(0, &at, DEBUG_ARRAY, 1, 60, entry(0, b"a"));
        let r = req(&at, 1, vec![kd(DEBUG_ARRAY, 0, vec![other])]);
        assert_eq!(s.put(0, &r, &w.certs), Ok(ans(DEBUG_ARRAY, 1)));
        check_invariants(&s);
    }

    #[test]
    fn store_limits_refuse_without_evicting() {
        let w = World::new(3);
        let limits = StoreLimits {
            max_resources: 2,
            max_values: 3,
            max_bytes: 100_000,
            max_per_signer: 100,
        };
        let mut s = Store::with_limits(kinds(), limits);
        let put = |s: &mut Store, i: usize, kind: KindId, v: StoredDataValue| {
            let at = w.own(i);
            let d = w.sign(i, &at, kind, 1, 60, v);
            s.put(0, &req(&at, 0, vec![kd(kind, 0, vec![d])]), &w.certs)
        };
        put(&mut s, 0, HIT_LOCATOR, single(b"a")).unwrap();
        put(&mut s, 1, HIT_LOCATOR, single(b"b")).unwrap();
        assert_eq!(
            put(&mut s, 2, HIT_LOCATOR, single(b"c")),
            Err(StorageError::StoreFull)
        );
        put(&mut s, 1, DEBUG_ARRAY, entry(0, b"x")).unwrap();
        assert_eq!(
            put(&mut s, 1, DEBUG_ARRAY, entry(1, b"y")),
            Err(StorageError::StoreFull)
        );
        // Replacing does not add.
        put(&mut s, 1, DEBUG_ARRAY, entry(0, b"z")).unwrap();
        assert_eq!(s.counts().values, 3);
        let bytes = s.counts().bytes;
        let mut tight = Store::with_limits(
            kinds(),
            StoreLimits {
                max_bytes: bytes / 3,
                ..StoreLimits::default()
            },
        );
        put(&mut tight, 0, HIT_LOCATOR, single(b"a")).unwrap();
        assert_eq!(
            put(&mut tight, 1, HIT_LOCATOR, single(b"a")),
            Err(StorageError::StoreFull)
        );
        check_invariants(&s);
        check_invariants(&tight);
    }

    /// Stores one HIT-LOCATOR for each of `n` identities; returns their positions.
    fn filled(w: &World, s: &mut Store) -> Vec<u128> {
        (0..w.ids.len())
            .map(|i| {
                let at = w.own(i);
                let d = w.sign(i, &at, HIT_LOCATOR, 1, 600, single(&[i as u8; 40]));
                s.put(0, &req(&at, 0, vec![kd(HIT_LOCATOR, 0, vec![d])]), &w.certs)
                    .unwrap();
                resource_position(&at).unwrap()
            })
            .collect()
    }

    #[test]
    fn records_in_a_wrapping_interval_replicate_exactly() {
        let w = World::new(12);
        let mut s = Store::new(kinds());
        let mut positions = filled(&w, &mut s);
        positions.sort_unstable();
        // From just below the 9th position round past the top to the 3rd.
        let (from, to) = (positions[8] - 1, positions[2]);
        let moved = s.records_in(100_000, from, to, 1, 5000);
        let got: Vec<u128> = moved
            .iter()
            .map(|t| resource_position(&t.req.resource).unwrap())
            .collect();
        let want: Vec<u128> = positions[8..]
            .iter()
            .chain(&positions[..3])
            .copied()
            .collect();
        assert_eq!(got, want);
        for p in &positions {
            assert_eq!(got.contains(p), in_open_closed(*p, from, to));
        }
        // The whole ring when the ends meet.
        assert_eq!(s.records_in(0, from, from, 1, 5000).len(), 12);

        // A replica built from the transfers serves the same signed values.
        let mut replica = Store::new(kinds());
        for t in &moved {
            assert_eq!(t.req.replica_number, 1);
            assert_eq!(t.certificates.len(), 1);
            let certs = Certificates::from_block(&t.certificates);
            replica.put(100_000, &t.req, &certs).unwrap();
        }
        for t in &moved {
            let f = fetch_req(&t.req.resource, HIT_LOCATOR, 0, Selector::Single);
            let (a, b) = (
                s.fetch(200_000, &f).unwrap(),
                replica.fetch(200_000, &f).unwrap(),
            );
            assert_eq!(a, b);
            // Lifetime 600 s from 0, handed over at 100 s: 500 s left at the replica.
            assert_eq!(a.ans.kind_responses[0].values[0].lifetime, 400);
        }
        // Re-sending the same records changes nothing but is accepted.
        for t in &moved {
            let certs = Certificates::from_block(&t.certificates);
            assert!(replica.put(100_000, &t.req, &certs).is_ok());
        }
        assert_eq!(replica.counts().values, moved.len());
        check_invariants(&replica);
    }

    #[test]
    fn records_are_split_to_fit_a_body() {
        let w = World::new(1);
        let mut s = Store::new(kinds());
        let at = w.own(0);
        let values: Vec<StoredData> = (0..8u8)
            .map(|i| w.sign(0, &at, DEBUG_ARRAY, 1, 60, entry(i.into(), &[i; 16])))
            .collect();
        let one = values[0].buffer_len();
        let loc = w.sign(0, &at, HIT_LOCATOR, 1, 60, single(b"loc"));
        let r = req(
            &at,
            0,
            vec![
                kd(DEBUG_ARRAY, 0, values.clone()),
                kd(HIT_LOCATOR, 0, vec![loc]),
            ],
        );
        s.put(0, &r, &w.certs).unwrap();
        let whole = s.records_in(0, 0, 0, 2, 5000);
        assert_eq!(whole.len(), 1);
        let max = 23 + 3 * one;
        let parts = s.records_in(0, 0, 0, 2, max);
        assert!(parts.len() >= 3, "{}", parts.len());
        let mut n = 0;
        for p in &parts {
            assert!(p.req.buffer_len() <= max, "{} > {max}", p.req.buffer_len());
            n += p
                .req
                .kind_data
                .iter()
                .map(|k| k.values.len())
                .sum::<usize>();
        }
        assert_eq!(n, 9);
        // A body too small for any value: one value per request.
        assert_eq!(s.records_in(0, 0, 0, 2, 1).len(), 9);
        let mut copy = Store::new(kinds());
        for p in &parts {
            copy.put(0, &p.req, &Certificates::from_block(&p.certificates))
                .unwrap();
        }
        assert_eq!(copy.counts(), s.counts());
    }

    #[test]
    fn remove_outside_and_drop_resource() {
        let w = World::new(10);
        let mut s = Store::new(kinds());
        let mut positions = filled(&w, &mut s);
        positions.sort_unstable();
        let removed = s.remove_outside(positions[7], positions[1]);
        assert_eq!(removed, 6);
        let kept: Vec<u128> = s.resources.keys().copied().collect();
        assert_eq!(
            kept,
            vec![positions[0], positions[1], positions[8], positions[9]]
        );
        check_invariants(&s);
        let id = s.resources().next().cloned().unwrap();
        assert!(s.drop_resource(&id));
        assert!(!s.drop_resource(&id));
        assert!(!s.drop_resource(&ResourceId(vec![])));
        assert_eq!(s.counts().resources, 3);
        check_invariants(&s);
        assert_eq!(s.expire(u64::MAX), 3);
        assert_eq!(s.counts(), Counts::default());
    }

    /// xorshift64, as in the wire tests: deterministic inputs without a crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            self.next().checked_rem(n as u64).unwrap_or(0) as usize
        }
    }

    /// Random stores, fetches, expiries and hand-overs from a few writers: the
    /// bookkeeping always matches the contents, limits hold, every accepted value
    /// verifies on fetch, and a replica fed with `records_in` answers like the original.
    #[test]
    fn random_operations_keep_the_books() {
        let w = World::new(4);
        let mut rng = XorShift(0x005e_ed0f_570e);
        let limits = StoreLimits {
            max_resources: 6,
            max_values: 40,
            max_bytes: 6000,
            max_per_signer: 12,
        };
        let mut s = Store::with_limits(kinds(), limits);
        let names: Vec<ResourceId> = (0..3).map(|i| resource_id(&[i])).collect();
        let mut now = 0u64;
        let (mut ok, mut refused) = (0, 0);
        for round in 0..1500u64 {
            now += rng.below(3000) as u64;
            let i = rng.below(4);
            let signer = if rng.below(10) == 0 { (i + 1) % 4 } else { i };
            let (at, kind, value) = match rng.below(4) {
                0 => (w.own(i), HIT_LOCATOR, single(&[0; 8])),
                1 => (
                    w.own(i),
                    DEBUG_ARRAY,
                    entry(
                        if rng.below(2) == 0 {
                            u32::MAX
                        } else {
                            rng.below(10) as u32
                        },
                        &vec![1; rng.below(20)],
                    ),
                ),
                2 => (w.user(i), SIP_REGISTRATION, keyed(&w.node(i).0, b"route")),
                _ => (
                    names[rng.below(3)].clone(),
                    NAME_RECORD,
                    keyed(&w.node(i).0, b"name"),
                ),
            };
            let time = round / 2 + rng.below(3) as u64;
            let data = w.sign(signer, &at, kind, time, rng.below(30) as u32, value);
            let generation = if rng.below(4) == 0 {
                s.generation(&at, kind)
            } else {
                0
            };
            let r = req(
                &at,
                (rng.below(3) == 0) as u8,
                vec![kd(kind, generation, vec![data])],
            );
            match s.put(now, &r, &w.certs) {
                Ok(_) => ok += 1,
                Err(_) => refused += 1,
            }
            if rng.below(5) == 0 {
                s.expire(now.saturating_sub(rng.below(5000) as u64));
            }
            check_invariants(&s);
            let f = fetch_req(
                &at,
                kind,
                0,
                match kinds().model(kind).unwrap() {
                    DataModel::Single => Selector::Single,
                    DataModel::Array => Selector::Array(vec![ArrayRange {
                        first: 0,
                        last: u32::MAX,
                    }]),
                    DataModel::Dictionary => Selector::Dictionary(vec![]),
                },
            );
            let fetched = s.fetch(now, &f).unwrap();
            let v = verify_fetch_answer(
                s.kinds(),
                &f,
                &fetched.ans,
                &Certificates::from_block(&fetched.certificates),
            );
            assert!(v.rejected.is_empty(), "{:?}", v.rejected);
        }
        assert!(
            ok > 300 && refused > 100,
            "{ok} accepted, {refused} refused"
        );

        let mut replica = Store::with_limits(kinds(), StoreLimits::default());
        for t in s.records_in(now, 0, 0, 1, 600) {
            replica
                .put(now, &t.req, &Certificates::from_block(&t.certificates))
                .unwrap();
        }
        check_invariants(&replica);
        assert_eq!(replica.counts().values, {
            let before = s.counts().values;
            s.expire(now);
            assert!(s.counts().values <= before);
            s.counts().values
        });
    }
}
