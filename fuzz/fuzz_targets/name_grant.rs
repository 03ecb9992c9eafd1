//! Name grants and the claims that carry them (overlay::wire::NameGrant, NameRecord,
//! overlay::names): whatever parses emits the very same bytes, and checking a claim —
//! against a fixed signer, at a fixed time — never panics, whatever the record holds.
//! Seed: the grant of `names::tests::grant_known_answer`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay::names;
use overlay::wire::{NameGrant, NameRecord, NodeId};

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = NameGrant::parse(data) {
        assert_eq!(g.to_bytes(), data);
        let signers = [g.signer, [7; 32]];
        let _ = names::check(&g, &g.name, g.hit, &signers, 1_800_000_000);
        // The grant as the extension of a claim by the HIT it names.
        let record = NameRecord {
            name: g.name.clone(),
            hit: g.hit,
            extension: data.to_vec(),
        };
        let _ = names::resolve(&g.name, &[(record, g.hit)], &signers, 1_800_000_000);
    }
    if let Ok(r) = NameRecord::parse(data) {
        assert_eq!(r.to_bytes(), data);
        let storer = NodeId(r.hit.0);
        let _ = names::resolve(&r.name, &[(r.clone(), storer)], &[[7; 32]], 0);
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = names::hit_name(text, "lab.example");
    }
});
