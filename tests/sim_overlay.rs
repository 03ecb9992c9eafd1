//! Overlay simulations: a ring of `overlay::Node`s joining through one bootstrap, storing,
//! fetching and losing members. Deterministic (seeded); see src/sim/overlay.rs.

use hipbone::sim::overlay::{OverlaySim, Params};
use overlay::node::{Event, Failure};
use overlay::wire::{ErrorCode, StoredDataValue};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{HashMap, HashSet};
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

/// Every record stored by `owners` is fetched from a rotating set of live nodes; returns
/// how many were found. A lookup that could not start, failed, or found nothing counts
/// against it (each is printed).
fn fetch_all(sim: &mut OverlaySim, owners: &[u32]) -> usize {
    let live: Vec<u32> = sim.live().filter(|&i| sim.node(i).is_joined()).collect();
    let ids: Vec<_> = owners.iter().map(|&o| sim.node(o).id()).collect();
    sim.events.clear();
    let mut asked = HashMap::new();
    for (k, id) in ids.iter().enumerate() {
        let from = live[(k * 7919) % live.len()];
        match sim.fetch_record(from, *id) {
            Some(h) => {
                asked.insert((from, h), k);
            }
            None => eprintln!("lookup of record {k} by {from} did not start"),
        }
    }
    run_for(sim, 30);
    let mut found_records = HashSet::new();
    for (i, e) in &sim.events {
        let (Event::FetchDone { handle, .. } | Event::Failed { handle, .. }) = e else {
            continue;
        };
        let Some(&k) = asked.get(&(*i, *handle)) else {
            continue;
        };
        match e {
            Event::FetchDone { answer, .. } if overlay::node::holds_values(answer) => {
                found_records.insert(k);
            }
            _ => eprintln!("lookup of record {k} by {i}: {e:?}"),
        }
    }
    found_records.len()
}

/// The ring positions (into `ring`) of `count` victims drawn at random with `seed`, never
/// the node with index `spare`, and never three in a row: every record keeps at least one
/// of its three copies (the responsible peer and its two successors). Neighbours are
/// allowed, and the draw must contain some.
fn victims(ring: &[(overlay::wire::NodeId, u32)], count: usize, spare: u32, seed: u64) -> Vec<u32> {
    let n = ring.len();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut dead = vec![false; n];
    let mut chosen = 0;
    while chosen < count {
        let k = (rng.next_u64() % n as u64) as usize;
        let at = |d: isize| dead[(k as isize + d).rem_euclid(n as isize) as usize];
        let three = (at(-2) && at(-1)) || (at(-1) && at(1)) || (at(1) && at(2));
        if dead[k] || ring[k].1 == spare || three {
            continue;
        }
        dead[k] = true;
        chosen += 1;
    }
    let neighbours = (0..n).filter(|&k| dead[k] && dead[(k + 1) % n]).count();
    assert!(
        neighbours > 0,
        "seed {seed}: no two neighbours among the victims"
    );
    (0..n).filter(|&k| dead[k]).map(|k| ring[k].1).collect()
}

/// How many of the owners' records have two of their three holders (the responsible peer
/// and its two successors in `ring`) among `dead`.
fn two_copies_lost(
    sim: &OverlaySim,
    ring: &[(overlay::wire::NodeId, u32)],
    owners: &[u32],
    dead: &[u32],
) -> usize {
    let dead: HashSet<u32> = dead.iter().copied().collect();
    owners
        .iter()
        .filter(|&&o| {
            let resource = overlay::id::resource_id(&sim.node(o).id().0);
            let at = overlay::id::resource_position(&resource).unwrap();
            let first = ring.partition_point(|(id, _)| id.position() < at) % ring.len();
            (0..3)
                .filter(|d| dead.contains(&ring[(first + d) % ring.len()].1))
                .count()
                == 2
        })
        .count()
}

#[test]
fn thousand_nodes_converge_store_and_survive_a_tenth_failing() {
    for seed in [7, 8, 9] {
        let mut sim = ring(1000, seed);
        let ring_now = sim.sorted_peers();
        assert_eq!(ring_now.len(), 1000, "seed {seed}: every node joined");
        assert_eq!(
            sim.wrong_successors(),
            0,
            "seed {seed}: every successor is the true one"
        );

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
        assert_eq!(stored, owners.len(), "seed {seed}");
        // Let replicas settle past the hold-down.
        run_for(&mut sim, 40);
        let ok = fetch_all(&mut sim, &owners);
        assert_eq!(ok, owners.len(), "seed {seed}: every lookup succeeds");

        // A tenth of the nodes (never the bootstrap) fail abruptly at once, at random
        // places, neighbours included, but never three in a row.
        let dead = victims(&ring_now, 100, 0, seed);
        let halved = two_copies_lost(&sim, &ring_now, &owners, &dead);
        println!(
            "seed {seed}: {} victims, {halved} records lose two of their three copies",
            dead.len()
        );
        assert!(halved > 0, "seed {seed}: no record loses two copies");
        for &v in &dead {
            sim.kill(v);
        }
        run_for(&mut sim, 120);
        assert_eq!(
            sim.wrong_successors(),
            0,
            "seed {seed}: the ring repaired itself"
        );
        // Records of owners that died are looked up too: they must outlive their owners.
        let ok = fetch_all(&mut sim, &owners);
        assert_eq!(
            ok,
            owners.len(),
            "seed {seed}: records stay fetchable after failures ({ok} of {} found)",
            owners.len()
        );
    }
}

/// A Store of a HIT-LOCATOR value signed by `identity` for `resource`.
fn locator(
    identity: &hip::HostIdentity,
    resource: &overlay::wire::ResourceId,
    time: u64,
    lifetime: u32,
    v: &[u8],
) -> overlay::wire::StoreReq {
    let value = StoredDataValue::Single(overlay::wire::DataValue {
        exists: true,
        value: v.to_vec(),
    });
    let kind = overlay::storage::kind::HIT_LOCATOR;
    overlay::storage::signed_store(identity, resource.clone(), kind, time, lifetime, value)
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
    let mut req = locator(&identity, &resource, 5, 600, b"hijack");
    sim.with_node(a, |n, now| n.store(now, &req)).unwrap();
    // A value whose signature was tampered with.
    req.kind_data[0].values[0].storage_time = 6;
    sim.with_node(a, |n, now| n.store(now, &req)).unwrap();
    run_for(&mut sim, 20);
    assert_eq!(
        refusals(&sim, a),
        vec![ErrorCode::Forbidden, ErrorCode::Forbidden]
    );
    assert!(!sim.held(&resource));
}

/// Refusals node `a` received since the events were cleared.
fn refusals(sim: &OverlaySim, a: u32) -> Vec<ErrorCode> {
    sim.events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Failed {
                failure: Failure::Remote(r),
                ..
            } if *i == a => Some(r.code),
            _ => None,
        })
        .collect()
}

/// A member replays another's record: unchanged with lifetime 0 (which deleted it at the
/// owner and both replicas), an older captured value with the longest lifetime (a
/// rollback), and the same dressed as a replica. Every one is refused and the owner's
/// current value is what a third node fetches.
#[test]
fn nobody_deletes_or_rolls_back_another_members_record() {
    let mut sim = ring(30, 17);
    let peers = sim.sorted_peers();
    let (a, b, c) = (peers[3].1, peers[17].1, peers[25].1);
    let b_id = sim.node(b).id();
    let resource = overlay::id::resource_id(&b_id.0);
    let owner = sim.identity(b);
    let cur = locator(&owner, &resource, 200, 600, b"current");
    sim.with_node(b, |n, now| n.store(now, &cur)).unwrap();
    run_for(&mut sim, 10);
    sim.events.clear();
    // b's current value unchanged but for the lifetime (which is not signed), and an
    // older value of b's; each also as a replica.
    let zero = locator(&owner, &resource, 200, 0, b"current");
    let forever = locator(&owner, &resource, 100, u32::MAX, b"old");
    let replica = |r: &overlay::wire::StoreReq| {
        let mut r = r.clone();
        r.replica_number = 1;
        r
    };
    // With b's key in the message, as the Fetch answer that gave a the value would.
    let b_cert = overlay::wire::GenericCertificate::ed25519(&owner.public().public_bytes());
    for req in [
        zero.clone(),
        forever.clone(),
        replica(&zero),
        replica(&forever),
    ] {
        sim.with_node(a, |n, now| {
            n.store_with_certificates(now, &req, vec![b_cert.clone()])
        })
        .unwrap();
    }
    run_for(&mut sim, 20);
    assert_eq!(refusals(&sim, a), vec![ErrorCode::Forbidden; 4]);
    sim.events.clear();
    let h = sim.fetch_record(c, b_id).unwrap();
    run_for(&mut sim, 10);
    let got: Vec<_> = sim
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::FetchDone { handle, answer, .. } if *i == c && *handle == h => {
                Some(answer.kind_responses[0].values.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 1, "the fetch was answered");
    assert_eq!(got[0].len(), 1);
    assert_eq!(got[0][0].storage_time, 200);
    assert!(got[0][0].lifetime > 500, "lifetime {}", got[0][0].lifetime);
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
    let ok = fetch_all(&mut sim, &owners);
    assert_eq!(
        ok,
        owners.len(),
        "records reach their new owners ({ok} of {} found)",
        owners.len()
    );
}

#[test]
fn a_run_under_churn_accounts_for_every_store_and_lookup() {
    // Heavy churn (median session 3 minutes) so that some requests fail or are left
    // unanswered: each attempt must still land in exactly one outcome.
    let mut p = Params::new(300, Duration::from_secs(600), 5);
    p.churn = Some(Duration::from_secs(180));
    let r = hipbone::sim::overlay::simulate(p);
    println!("{:?}\n{:?}", r.stores, r.lookups);
    // One store by each node joined at the time.
    assert!(r.stores.attempted > 0 && r.stores.attempted <= 300);
    assert_eq!(r.stores.outcomes(), r.stores.attempted, "{:?}", r.stores);
    assert_eq!(r.lookups.outcomes(), r.lookups.attempted, "{:?}", r.lookups);
    assert!(r.lookups.attempted > 0);
    assert!(
        r.stores.ok < r.stores.attempted || r.lookups.ok < r.lookups.attempted,
        "nothing failed under churn: the run tests no accounting"
    );
    assert!(r.records_lost <= r.stores.ok);
}

/// The measurements of docs/PERFORMANCE.md that need a hostile path or a lossy one: each
/// run must really have had hostile nodes or lost messages, and still account for every
/// lookup.
#[test]
fn hostile_forwarders_and_lost_hops_are_measured() {
    let mut p = Params::new(200, Duration::from_secs(240), 3);
    p.hostile = 0.1;
    let r = hipbone::sim::overlay::simulate(p);
    assert_eq!(r.hostile, 20);
    assert!(r.traffic.swallowed > 0, "hostile nodes swallowed nothing");
    assert_eq!(r.lookups.outcomes(), r.lookups.attempted);
    assert!(r.lookups.failed > 0, "{:?}", r.lookups);
    let mut p = Params::new(200, Duration::from_secs(240), 3);
    p.loss = 0.01;
    let r = hipbone::sim::overlay::simulate(p);
    assert!(r.traffic.lost > 0);
    assert_eq!(r.lookups.outcomes(), r.lookups.attempted);
    let (median, p99) = (r.latency_quantile(0.5), r.latency_quantile(0.99));
    assert!(median.is_some() && p99 >= median, "{median:?} {p99:?}");
    assert_eq!(r.latency.len() as u64, r.lookups.ok + r.lookups.not_found);
}

/// Directory lookups (owner, then the peer after it, newest kept) find every record in a
/// quiet ring, and each is answered by both: the replica step really ran.
#[test]
fn directory_lookups_find_every_record() {
    let mut p = Params::new(100, Duration::from_secs(180), 4);
    p.directory = true;
    let r = hipbone::sim::overlay::simulate(p);
    assert!(r.lookups.attempted > 100);
    assert_eq!(r.lookups.ok, r.lookups.attempted, "{:?}", r.lookups);
    assert_eq!(r.replica_missed, 0);
    // No node died, so every lookup was answered by both holders (or from a cache).
    assert!(r.lookups_both > 0 && r.lookups_both <= r.lookups.ok);
    assert!(r.mean_hops() >= 1.0);
}

/// Hostile members on the path answer the lookups they should pass on with "no such
/// record", signed by themselves. No lookup takes their word for it: every forged answer
/// is dropped as not from the owner, and the lookups fail visibly instead (before the
/// check, 958 of 3,621 lookups in a ring of 300 were answered "not found" by forgers).
#[test]
fn answers_forged_on_the_path_are_not_believed() {
    let mut p = Params::new(200, Duration::from_secs(240), 6);
    p.hostile = 0.1;
    p.forge = true;
    let r = hipbone::sim::overlay::simulate(p);
    assert!(
        r.traffic.forged > 0,
        "nobody forged: the test shows nothing"
    );
    assert_eq!(r.implausible_answers, r.traffic.forged);
    assert_eq!(r.lookups.not_found, 0, "{:?}", r.lookups);
    assert!(r.lookups.failed > 0);
}

/// A linked neighbour sends an Update listing 256 invented Node-IDs right after us: the
/// node asks for a few links on its word, not for every slot, and the ring is as it was
/// once those attempts failed.
#[test]
fn an_update_full_of_invented_peers_takes_few_link_attempts() {
    use overlay::wire::{ChordUpdate, ChordUpdateKind, Destination, MessageCode, MessageContents};
    let mut sim = ring(30, 19);
    let peers = sim.sorted_peers();
    let a = peers[10].1;
    let (b_id, b) = peers[11];
    assert_eq!(sim.node(a).chord().successor(), Some(b_id));
    let me = sim.node(a).id().position();
    let invented: Vec<_> = (1..=256u128)
        .map(|i| overlay::wire::NodeId::from_position(me.wrapping_add(i)))
        .collect();
    let update = ChordUpdate {
        uptime: 10,
        kind: ChordUpdateKind::Neighbors {
            predecessors: invented[..128].to_vec(),
            successors: invented[128..].to_vec(),
        },
    };
    let contents = MessageContents::new(MessageCode::UpdateReq, update.to_bytes());
    let a_id = sim.node(a).id();
    let bytes = sim.signed_message(b, 77, vec![Destination::Node(a_id)], contents);
    let before = sim.node(a).occupancy().connecting;
    sim.with_node(a, |n, now| n.handle_message(now, b_id, &bytes));
    let asked = sim.node(a).occupancy().connecting - before;
    assert!(asked > 0, "no link asked for: the test shows nothing");
    assert!(asked <= 8, "{asked} links asked for on one peer's word");
    run_for(&mut sim, 120);
    assert_eq!(sim.wrong_successors(), 0);
    assert_eq!(sim.node(a).chord().successor(), Some(b_id));
}

/// One member claims 300 names chosen so that they all land in one victim's range (names
/// cost nothing to grind): the victim keeps 256 of that key's values and refuses the
/// rest, and another member's record still finds room there.
#[test]
fn one_key_cannot_fill_a_victims_store() {
    use overlay::storage::kind::NAME_RECORD;
    use overlay::wire::{DataValue, ErrorCode, NameRecord};
    let mut sim = ring(30, 23);
    let peers = sim.sorted_peers();
    let (victim, pred) = (peers[15].0.position(), peers[14].0.position());
    let in_victims_range = |name: &[u8]| {
        let k = overlay::id::resource_position(&overlay::id::resource_id(name)).unwrap();
        overlay::id::in_open_closed(k, pred, victim)
    };
    let names: Vec<Vec<u8>> = (0u32..)
        .map(|i| format!("n{i}.lab.example").into_bytes())
        .filter(|n| in_victims_range(n))
        .take(301)
        .collect();
    let claim = |sim: &OverlaySim, who: u32, name: &[u8]| {
        let id = sim.identity(who);
        let hit = sim.node(who).id();
        let record = NameRecord {
            name: name.to_vec(),
            hit,
            extension: Vec::new(),
        };
        let value = StoredDataValue::Dictionary {
            key: hit.0.to_vec(),
            value: DataValue {
                exists: true,
                value: record.to_bytes(),
            },
        };
        let resource = overlay::id::resource_id(name);
        overlay::storage::signed_store(&id, resource, NAME_RECORD, 1_000, 600, value)
    };
    let (attacker, honest) = (peers[3].1, peers[22].1);
    sim.events.clear();
    for batch in names[..300].chunks(100) {
        for name in batch {
            let req = claim(&sim, attacker, name);
            sim.with_node(attacker, |n, now| n.store(now, &req))
                .unwrap();
        }
        run_for(&mut sim, 20);
    }
    let done = |sim: &OverlaySim, who: u32| {
        sim.events
            .iter()
            .filter(|(i, e)| *i == who && matches!(e, Event::StoreDone { .. }))
            .count()
    };
    assert_eq!(
        done(&sim, attacker),
        256,
        "the victim keeps one key's quota"
    );
    assert_eq!(refusals(&sim, attacker), vec![ErrorCode::DataTooLarge; 44]);
    let req = claim(&sim, honest, &names[300]);
    sim.with_node(honest, |n, now| n.store(now, &req)).unwrap();
    run_for(&mut sim, 20);
    assert_eq!(done(&sim, honest), 1, "another member still finds room");
}

/// A client (R15) attaches to the peer responsible for its own ID: the lookup's answer
/// comes from a node "after" the client's ID, which a client, owning nothing, must not
/// take for a node closer than itself (the answer check once refused it, and clients
/// never joined).
#[test]
fn a_client_attaches_to_the_ring() {
    let mut sim = ring(20, 29);
    let mut config = Params::new(20, Duration::from_secs(3600), 29).config;
    config.client = true;
    let c = sim.add_node(config);
    sim.join(c, Some(0));
    run_for(&mut sim, 30);
    assert!(sim.node(c).is_joined(), "the client did not attach");
    assert_eq!(sim.node(c).stats().implausible_answers, 0);
}
