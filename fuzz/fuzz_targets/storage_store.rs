//! The storage layer (overlay::storage) on arbitrary request sequences. Nothing may panic;
//! the store's books must balance (everything frees at the end of time); every Fetch
//! answer must verify at the fetcher; and a replica fed with `records_in` must accept all
//! of it.
//!
//! Input: a sequence of operations, each `op:u8 len:u16 body[len]`:
//! - `op & 1`: 0 = Store body, 1 = Fetch body (parsed with hipbone's Kinds);
//! - `op & 2`: re-sign every value of a Store with identity `(op >> 2) & 1`, so that
//!   the fuzzer gets past the signature check it cannot forge;
//! - `op & 8`: also move the Store to the Resource-ID that identity owns for the first
//!   Kind (NODE-MATCH / USER-NODE-MATCH), so that access control passes too;
//! - `op >> 4`: seconds the clock advances before the operation.
//!
//! Seeds: fuzz/seeds/storage_store/ (made by scripts in their own comments: a locator, an
//! array append, a SIP registration, then fetches of each).
#![no_main]

use std::sync::OnceLock;

use hip::HostIdentity;
use overlay::storage::access::owned_resource;
use overlay::storage::{
    sign_value, verify_fetch_answer, Certificates, Kinds, Store, StoreLimits, Writer,
};
use overlay::wire::{NodeId, StoredDataValue};

use libfuzzer_sys::fuzz_target;

fn identities() -> &'static [HostIdentity; 2] {
    static IDS: OnceLock<[HostIdentity; 2]> = OnceLock::new();
    IDS.get_or_init(|| {
        [
            HostIdentity::from_secret([1; 32]),
            HostIdentity::from_secret([2; 32]),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let kinds = Kinds::hipbone();
    // Small limits, so that the fuzzer reaches them.
    let limits = StoreLimits {
        max_resources: 4,
        max_values: 16,
        max_bytes: 4096,
        max_per_signer: 12,
    };
    let mut store = Store::with_limits(kinds.clone(), limits);
    let mut certs = Certificates::new();
    for id in identities() {
        certs.insert_identity(id.public());
    }
    let mut now: u64 = 1_000;
    let mut rest = data;
    while let [op, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (body, after) = tail.split_at(len);
        rest = after;
        now += u64::from(op >> 4) * 1000;
        if op & 1 == 1 {
            let Ok(req) = kinds.parse_fetch(body) else {
                continue;
            };
            if let Ok(fetched) = store.fetch(now, &req) {
                let at_fetcher = Certificates::from_block(&fetched.certificates);
                let v = verify_fetch_answer(&kinds, &req, &fetched.ans, &at_fetcher);
                assert!(v.rejected.is_empty(), "{:?}", v.rejected);
            }
            continue;
        }
        let Ok(mut req) = kinds.parse_store(body) else {
            continue;
        };
        if op & 2 != 0 {
            let id = &identities()[usize::from((op >> 2) & 1)];
            let node = NodeId::from(id.hit());
            if op & 8 != 0 {
                let first = req.kind_data.first().and_then(|k| kinds.get(k.kind));
                if let Some(owned) = first.and_then(|def| owned_resource(def, node)) {
                    req.resource = owned;
                }
            }
            for kd in &mut req.kind_data {
                for value in &mut kd.values {
                    // Dictionary keys of USER-NODE-MATCH Kinds must be the signer.
                    if let StoredDataValue::Dictionary { key, .. } = &mut value.value {
                        if key.len() == 16 {
                            *key = node.0.to_vec();
                        }
                    }
                    sign_value(id, &req.resource, kd.kind, value);
                }
            }
        }
        // An original store comes from one of the two identities (the one that signed, or
        // the other); a replica is a copy.
        let writer = if req.replica_number > 0 {
            Writer::Copy
        } else {
            Writer::Signer(NodeId::from(identities()[usize::from((op >> 4) & 1)].hit()))
        };
        let _ = store.store(now, &req, &certs, writer);
        let c = store.counts();
        assert!(c.resources <= 4 && c.values <= 16 && c.bytes <= 4096);
    }

    let mut replica = Store::new(kinds);
    for t in store.records_in(now, 0, 0, 1, 5000) {
        let values: usize = t.req.kind_data.iter().map(|k| k.values.len()).sum();
        assert!(t.req.buffer_len() <= 5000 || values == 1);
        let certs = Certificates::from_block(&t.certificates);
        if let Err(e) = replica.store(now, &t.req, &certs, Writer::Copy) {
            panic!("replica refused {e}");
        }
    }
    // records_in leaves out what has expired by `now` but is not yet freed.
    store.expire(now);
    assert_eq!(replica.counts().values, store.counts().values);
    store.expire(u64::MAX);
    assert_eq!(store.next_expiry(), None);
    assert_eq!(store.counts(), Default::default());
});
