//! Whole nodes in the simulator: the node model (HIP host, overlay, the overlay's links in
//! userspace TCP inside ESP) as the daemon runs it. Nodes join one ring through one
//! bootstrap, knowing nothing but its address; links to every other node start with an I1
//! relayed by the neighbour that named it (HIP BONE). A value stored from one node is
//! fetched from another.

use hipbone::node::overlay::Answer;
use hipbone::node::Node;
use hipbone::sim::nodes::{add_node, config, identity, joined};
use hipbone::sim::Sim;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::time::{Duration, Instant};

fn ring(seed: u64, n: usize) -> Sim<Node> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut sim: Sim<Node> = Sim::new(rng.next_u64(), Instant::now());
    let bootstrap = identity(&mut rng);
    let config = config("test.hipbone.example", bootstrap.hit());
    add_node(&mut sim, 0, bootstrap, &config);
    for i in 1..n {
        let at = sim.now() + Duration::from_millis(100);
        sim.run_until(at, |_| false);
        add_node(&mut sim, i, identity(&mut rng), &config);
    }
    let end = sim.now() + Duration::from_secs(120);
    sim.run_until(end, |sim| joined(sim) == n);
    sim
}

/// Runs until node `id` has an answer to a request, and returns it.
fn answer(sim: &mut Sim<Node>, id: usize) -> Option<Answer> {
    let end = sim.now() + Duration::from_secs(30);
    let mut got = None;
    sim.run_until(end, |sim| {
        got = sim
            .node_mut(id)
            .overlay
            .as_mut()
            .and_then(|o| o.poll_answer());
        got.is_some()
    });
    got
}

#[test]
fn whole_nodes_join_one_ring_over_hip_and_store_and_fetch_through_it() {
    for seed in [1, 2] {
        let n = 30;
        let mut sim = ring(seed, n);
        assert_eq!(joined(&sim), n, "seed {seed}: nodes in the ring");
        // Every overlay link runs inside an established HIP association with its peer, and
        // most nodes reached peers they had no address for (only the bootstrap's is
        // configured).
        let mut beyond_bootstrap = 0;
        for i in 0..n {
            let node = sim.node(i);
            let o = node.overlay.as_ref().unwrap();
            for peer in o.net.links() {
                let a = node
                    .host
                    .association(&peer)
                    .expect("an association per link");
                assert_eq!(a.state, hip::AssocState::Established);
            }
            beyond_bootstrap += node.host.associations().count().saturating_sub(1);
        }
        assert!(
            beyond_bootstrap >= n,
            "seed {seed}: {beyond_bootstrap} associations"
        );

        let now = sim.now();
        assert!(sim.node_mut(3).overlay_store(now, 1, b"hello from 3", 7));
        match answer(&mut sim, 3) {
            Some(Answer::Stored {
                request, replicas, ..
            }) => {
                assert_eq!(request, 7);
                assert!(!replicas.is_empty(), "seed {seed}: stored without replicas");
            }
            other => panic!("seed {seed}: store answered {other:?}"),
        }
        let owner = sim.node(3).hit();
        let now = sim.now();
        assert!(sim.node_mut(17).overlay_fetch(now, owner, 8));
        match answer(&mut sim, 17) {
            Some(Answer::Fetched {
                request, values, ..
            }) => {
                assert_eq!(request, 8);
                assert_eq!(values, vec!["hello from 3".to_string()], "seed {seed}");
            }
            other => panic!("seed {seed}: fetch answered {other:?}"),
        }
    }
}
