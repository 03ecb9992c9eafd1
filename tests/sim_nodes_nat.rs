//! Whole nodes behind NATs: members with only an `[overlay]` section (a bootstrap), some
//! behind NAT boxes of the simulator, reach each other by HIT.

use hipbone::node::overlay::Answer;
use hipbone::node::Node;
use hipbone::sim::nodes::{arrived, joined, nat_world, send_udp};
use hipbone::sim::Sim;
use overlay::wire::LocatorEntry;
use std::time::Duration;

/// Pairs (from, to) where `to` is behind a NAT and `from` has no association with it:
/// one sender with a public address and one behind a NAT for each target, where there is
/// one.
fn pairs(sim: &Sim<Node>, n: usize, natted: &[usize]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for &t in natted {
        let target = sim.node(t).hit();
        let free = |f: &usize| *f != t && sim.node(*f).host.association(&target).is_none();
        let public = (0..n).filter(|f| !natted.contains(f)).find(free);
        let behind = natted.iter().copied().find(free);
        pairs.extend(public.into_iter().chain(behind).map(|f| (f, t)));
    }
    pairs
}

#[test]
fn members_behind_nats_join_and_are_reached_by_their_hits() {
    for seed in [11, 12] {
        let (publics, behind) = (40, 9);
        let (mut sim, natted) = nat_world(seed, publics, behind, Duration::from_millis(200));
        let n = publics + behind;
        let end = sim.now() + Duration::from_secs(120);
        sim.run_until(end, |s| joined(s) == n);
        let missing: Vec<usize> = (0..n)
            .filter(|&i| {
                !sim.node(i)
                    .overlay
                    .as_ref()
                    .is_some_and(|o| o.node.is_joined())
            })
            .collect();
        assert!(
            missing.is_empty(),
            "seed {seed}: members that did not join: {missing:?}"
        );
        let settle = sim.now() + Duration::from_secs(90);
        sim.run_until(settle, |_| false);
        // Each member behind a NAT registered with the bootstrap's relay and publishes the
        // relay as where it is reached.
        let relay = sim.node(0).hit();
        for &t in &natted {
            assert!(
                sim.node(t).host.registered_with(&relay),
                "seed {seed}: {t} has no relay"
            );
            let now = sim.now();
            let hit = sim.node(t).hit();
            assert!(sim.node_mut(1).overlay_fetch(now, hit, t as u64));
            let end = sim.now() + Duration::from_secs(20);
            let mut got = None;
            sim.run_until(end, |s| {
                got = s.node_mut(1).overlay.as_mut().and_then(|o| o.poll_answer());
                got.is_some()
            });
            let Some(Answer::Fetched {
                locators: Some(record),
                ..
            }) = got
            else {
                panic!("seed {seed}: no record of {t}: {got:?}");
            };
            let relayed = record.locators.iter().any(|l| {
                matches!(l, LocatorEntry::Relayed { relay: r, .. } if hip::Hit::from(*r) == relay)
            });
            assert!(
                relayed,
                "seed {seed}: {t}'s record names no relay: {record:?}"
            );
        }
        // Members that have nothing to do with each other yet reach one by its HIT: one
        // packet a second for three seconds, as `ping -c 3` sends (the first waits for the
        // record and the exchange).
        let tried = pairs(&sim, n, &natted);
        assert!(
            tried.len() >= natted.len(),
            "seed {seed}: too few pairs: {tried:?}"
        );
        let mut first_try = 0;
        for try_no in 0..3 {
            for &(from, t) in &tried {
                if !arrived(&sim, from, t) {
                    let target = sim.node(t).hit();
                    send_udp(&mut sim, from, target);
                }
            }
            let end = sim.now() + Duration::from_secs(if try_no == 2 { 30 } else { 1 });
            sim.run_until(end, |_| false);
            if try_no == 0 {
                let end = sim.now() + Duration::from_secs(20);
                sim.run_until(end, |_| false);
                first_try = tried.iter().filter(|&&(f, t)| arrived(&sim, f, t)).count();
            }
        }
        let failed: Vec<(usize, usize)> = tried
            .iter()
            .copied()
            .filter(|&(f, t)| !arrived(&sim, f, t))
            .collect();
        eprintln!(
            "seed {seed}: {} pairs, {first_try} reached by the first packet, {} not at all",
            tried.len(),
            failed.len()
        );
        assert!(
            failed.is_empty(),
            "seed {seed}: {} of {} pairs failed: {failed:?}",
            failed.len(),
            tried.len()
        );
    }
}
