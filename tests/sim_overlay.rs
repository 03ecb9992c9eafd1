//! Overlay simulations: a ring of `overlay::Node`s joining through one bootstrap, storing,
//! fetching and losing members. Deterministic (seeded); see src/sim/overlay.rs.

use hipbone::sim::overlay::{OverlaySim, Params};
use overlay::node::{Event, Failure};
use overlay::wire::{ErrorCode, StoredDataValue};
use std::time::Duration;

/// `n` nodes joined through node 0, 20 ms apart, then 90 s to settle.
fn ring(n: usize, seed: u64) -> OverlaySim {
    let mut p = Params::new(n, Duration::from_secs(3600), seed);
    p.join_spacing = Duration::from_millis(20);
    let mut sim = OverlaySim::new(p.clone());
    let boot = sim.add_node(p.config.clone());
    sim.join(boot, None);
    for _ in 1..n {
        let t = sim.now() + p.join_spacing;
        sim.run_until(t);
        let i = sim.add_node(p.config.clone());
        sim.join(i, Some(boot));
    }
    let t = sim.now() + Duration::from_secs(90);
    sim.run_until(t);
    sim
}

fn run_for(sim: &mut OverlaySim, secs: u64) {
    let t = sim.now() + Duration::from_secs(secs);
    sim.run_until(t);
}

fn found(answer: &overlay::wire::FetchAns) -> bool {
    answer.kind_responses.iter().any(|k| {
        k.values
            .iter()
            .any(|v| matches!(&v.value, StoredDataValue::Single(d) if d.exists))
    })
}

/// Every record stored by `owners` is fetched from a rotating set of live nodes; returns
/// (ok, failed).
fn fetch_all(sim: &mut OverlaySim, owners: &[u32]) -> (usize, usize) {
    let live: Vec<u32> = sim.live().filter(|&i| sim.node(i).is_joined()).collect();
    let ids: Vec<_> = owners.iter().map(|&o| sim.node(o).id()).collect();
    sim.events.clear();
    let mut asked = 0;
    for (k, id) in ids.iter().enumerate() {
        let from = live[(k * 7919) % live.len()];
        if sim.fetch_record(from, *id).is_some() {
            asked += 1;
        }
    }
    run_for(sim, 30);
    for (i, e) in &sim.events {
        match e {
            Event::FetchDone { answer, .. } if found(answer) => {}
            Event::FetchDone { .. } | Event::Failed { .. } => eprintln!("lookup by {i}: {e:?}"),
            _ => {}
        }
    }
    let ok = sim
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::FetchDone { answer, .. } if found(answer)))
        .count();
    (ok, asked - ok)
}

#[test]
fn thousand_nodes_converge_store_and_survive_a_tenth_failing() {
    let mut sim = ring(1000, 7);
    let ring_now = sim.sorted_peers();
    assert_eq!(ring_now.len(), 1000, "every node joined");
    assert_eq!(sim.wrong_successors(), 0, "every successor is the true one");

    // 300 nodes store their HIT-LOCATOR record.
    let owners: Vec<u32> = ring_now.iter().step_by(3).map(|r| r.1).take(300).collect();
    sim.events.clear();
    for &o in &owners {
        assert!(sim.store_record(o, b"locator".to_vec()).is_some());
    }
    run_for(&mut sim, 30);
    let stored = sim
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::StoreDone { .. }))
        .count();
    assert_eq!(stored, owners.len());
    // Let replicas settle past the hold-down.
    run_for(&mut sim, 40);
    let (ok, failed) = fetch_all(&mut sim, &owners);
    assert_eq!((ok, failed), (owners.len(), 0), "every lookup succeeds");

    // A tenth of the nodes (never the bootstrap) fail abruptly at once, spread round
    // the ring so that no three replica holders of one record fail together.
    let victims: Vec<u32> = ring_now
        .iter()
        .map(|r| r.1)
        .filter(|&i| i != 0)
        .step_by(10)
        .collect();
    for &v in &victims {
        sim.kill(v);
    }
    run_for(&mut sim, 120);
    assert_eq!(sim.wrong_successors(), 0, "the ring repaired itself");
    let (ok, failed) = fetch_all(&mut sim, &owners);
    assert_eq!(failed, 0, "records stay fetchable after failures ({ok} ok)");
}

#[test]
fn forged_signature_and_foreign_store_are_refused() {
    let mut sim = ring(30, 11);
    let peers = sim.sorted_peers();
    let (a, b) = (peers[3].1, peers[17].1);
    sim.events.clear();
    // Node a signs a HIT-LOCATOR for node b's resource: NODE-MATCH refuses it.
    let b_id = sim.node(b).id();
    let identity = sim.identity(a);
    let resource = overlay::id::resource_id(&b_id.0);
    let mut data = overlay::wire::StoredData {
        storage_time: 5,
        lifetime: 600,
        value: StoredDataValue::Single(overlay::wire::DataValue {
            exists: true,
            value: b"hijack".to_vec(),
        }),
        signature: overlay::wire::Signature::anonymous(),
    };
    overlay::storage::sign_value(
        &identity,
        &resource,
        overlay::storage::kind::HIT_LOCATOR,
        &mut data,
    );
    let mut req = overlay::wire::StoreReq {
        resource: resource.clone(),
        replica_number: 0,
        kind_data: vec![overlay::wire::StoreKindData {
            kind: overlay::storage::kind::HIT_LOCATOR,
            generation: 0,
            values: vec![data.clone()],
        }],
    };
    sim.with_node(a, |n, now| n.store(now, &req)).unwrap();
    // A value whose signature was tampered with.
    req.kind_data[0].values[0].storage_time = 6;
    sim.with_node(a, |n, now| n.store(now, &req)).unwrap();
    run_for(&mut sim, 20);
    let refusals: Vec<_> = sim
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Failed {
                failure: Failure::Remote(r),
                ..
            } if *i == a => Some(r.code),
            _ => None,
        })
        .collect();
    assert_eq!(refusals, vec![ErrorCode::Forbidden, ErrorCode::Forbidden]);
    assert!(!sim.held(&resource));
}

#[test]
fn records_follow_the_ring_as_nodes_join_after_they_were_stored() {
    let mut sim = ring(100, 13);
    let owners: Vec<u32> = sim.sorted_peers().iter().map(|r| r.1).collect();
    for &o in &owners {
        assert!(sim.store_record(o, b"locator".to_vec()).is_some());
    }
    run_for(&mut sim, 60);
    // 100 more nodes join: each takes over part of some record holder's range, and the
    // records it now owns must be handed over to it (RFC 6940 §10.5 step 6).
    let p = Params::new(200, Duration::from_secs(3600), 13);
    for _ in 0..100 {
        let i = sim.add_node(p.config.clone());
        sim.join(i, Some(0));
        run_for(&mut sim, 1);
    }
    run_for(&mut sim, 90);
    assert_eq!(sim.wrong_successors(), 0);
    let (ok, failed) = fetch_all(&mut sim, &owners);
    assert_eq!(failed, 0, "records reach their new owners ({ok} ok)");
}
