//! Whole nodes in the simulator: the node model (HIP host, overlay, the overlay's links in
//! userspace TCP inside ESP) as the daemon runs it. Nodes join one ring through one
//! bootstrap, knowing nothing but its address; links to every other node start with an I1
//! relayed by the neighbour that named it (HIP BONE). A value stored from one node is
//! fetched from another.

use hip::HostIdentity;
use hipbone::node::overlay::Answer;
use hipbone::node::{Found, Node};
use hipbone::sim::nodes::{add_node, answer, config, identity, joined, send_udp};
use hipbone::sim::Sim;
use overlay::storage::kind::HIT_LOCATOR;
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

/// A ring of `n` whole nodes, every one joined, left 90 s to settle.
fn settled_ring(seed: u64, n: usize) -> Sim<Node> {
    let mut sim = ring(seed, n);
    let settle = sim.now() + Duration::from_secs(90);
    sim.run_until(settle, |_| false);
    assert_eq!(joined(&sim), n);
    sim
}

/// The nodes that hold a HIT-LOCATOR value at `resource`.
fn holders(sim: &Sim<Node>, resource: &overlay::wire::ResourceId) -> Vec<usize> {
    (0..sim.len())
        .filter(|&j| {
            sim.node(j)
                .overlay
                .as_ref()
                .is_some_and(|o| o.node.holds(resource, HIT_LOCATOR))
        })
        .collect()
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
        // `hipbone overlay status`: joined, record published, links up, and a ring size
        // estimate of the right order (from the successors' spacing).
        let mut estimates: Vec<u64> = (0..n)
            .map(|i| {
                let s = sim.node(i).overlay.as_ref().unwrap().status(sim.now());
                assert_eq!(s.join, "joined", "seed {seed}, node {i}");
                assert_eq!(s.record.state, "published", "seed {seed}, node {i}");
                assert!(!s.record.locators.is_empty());
                assert!(s.links.iter().any(|l| l.state == "up"));
                s.ring_size_estimate.expect("an estimate once joined")
            })
            .collect();
        estimates.sort_unstable();
        // Each node sees a few successors only, so single estimates scatter; their median
        // is near the truth.
        let median = estimates[n / 2];
        assert!(
            (n as u64 / 2..=n as u64 * 2).contains(&median),
            "seed {seed}: estimates {estimates:?} for {n} members"
        );
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

        // A minute and a half for what settles after the joins: the replication rounds
        // (30 s hold-down) and the repeated first publication of each node's record.
        let settle = sim.now() + Duration::from_secs(90);
        sim.run_until(settle, |_| false);
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
                request,
                values,
                locators,
                ..
            }) => {
                assert_eq!(request, 8);
                assert_eq!(values, vec!["hello from 3".to_string()], "seed {seed}");
                // Node 3 published where it can be reached when it joined.
                let record = locators.expect("node 3 has a HIT-LOCATOR record");
                assert_eq!(
                    record.locators,
                    vec![overlay::wire::LocatorEntry::Host(
                        hipbone::sim::nodes::address(3)
                    )],
                    "seed {seed}"
                );
                assert!(record.sequence > 0);
            }
            other => panic!("seed {seed}: fetch answered {other:?}"),
        }
        // Every node published its record: each is held by three nodes (owner and two
        // replicas).
        for i in 0..n {
            let resource = overlay::id::resource_id(&sim.node(i).hit().0);
            let holders = holders(&sim, &resource).len();
            assert!(
                holders >= 3,
                "seed {seed}: node {i}'s record has {holders} holders"
            );
        }
    }
}

/// Two whole nodes that know each other's address (configured peers, no overlay).
fn pair(seed: u64) -> (Sim<Node>, hip::HostIdentity, hipbone::config::Config) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut sim: Sim<Node> = Sim::new(rng.next_u64(), Instant::now());
    let (a, b) = (identity(&mut rng), identity(&mut rng));
    let peer_of = |other: &hip::HostIdentity, i: usize| {
        let text = format!(
            "[interface]\nidentity = \"/nonexistent/sim.key\"\n\n[[peer]]\nhit = \"{}\"\nlocators = [\"{}\"]\n",
            other.hit(),
            hipbone::sim::nodes::address(i)
        );
        hipbone::config::Config::parse(&text, "test").unwrap()
    };
    let (config_a, config_b) = (peer_of(&b, 1), peer_of(&a, 0));
    let secret_a = *a.secret_bytes();
    add_node(&mut sim, 0, a, &config_a);
    add_node(&mut sim, 1, b, &config_b);
    (sim, hip::HostIdentity::from_secret(secret_a), config_a)
}

#[test]
fn a_node_that_restarted_is_reached_again_when_its_peer_sends() {
    let (mut sim, a_identity, config_a) = pair(3);
    let (a_hit, b_hit) = (sim.node(0).hit(), sim.node(1).hit());
    // A's first packet for B starts the exchange; it is queued and sent once it is up.
    send_udp(&mut sim, 0, b_hit);
    let end = sim.now() + Duration::from_secs(5);
    sim.run_until(end, |s| {
        s.node(1)
            .host
            .association(&a_hit)
            .is_some_and(|a| a.state == hip::AssocState::Established)
    });
    let before = sim.node(1).host.association(&a_hit).unwrap().spis;
    // A restarts: same identity, nothing remembered.
    let now = sim.now();
    let mut fresh = Node::from_config(&config_a, a_identity, [[9; 32], [10; 32]], 0, now).unwrap();
    fresh.set_local_addresses(now, &[hipbone::sim::nodes::address(0)]);
    *sim.node_mut(0) = fresh;
    assert!(sim.node(0).host.association(&b_hit).is_none());
    // B, not knowing, sends on its old SA: A hears ESP for an SPI it does not know from a
    // configured peer's address, and starts a fresh exchange.
    send_udp(&mut sim, 1, a_hit);
    let end = sim.now() + Duration::from_secs(10);
    sim.run_until(end, |s| {
        s.node(0)
            .host
            .association(&b_hit)
            .is_some_and(|a| a.state == hip::AssocState::Established)
            && s.node(1)
                .host
                .association(&a_hit)
                .is_some_and(|a| a.spis != before)
    });
    let on_a = sim.node(0).host.association(&b_hit).expect("A is back");
    assert_eq!(on_a.state, hip::AssocState::Established);
    let on_b = sim.node(1).host.association(&a_hit).unwrap();
    assert_ne!(on_b.spis, before, "B's association was replaced");
}

/// A node sends to the HIT of a member it has no association with, no locator for and no
/// neighbour's word about: the packet waits while the member's HIT-LOCATOR record is looked
/// up in the overlay, the base exchange goes to the address found there, and the packet
/// arrives.
#[test]
fn a_member_is_reached_by_its_hit_alone_through_its_record() {
    let n = 30;
    let mut sim = settled_ring(5, n);
    // A pair with nothing between them yet.
    let (a, b) = strangers(&sim);
    let a_hit = sim.node(a).hit();
    send_and_wait(&mut sim, a, b);
    let on_b = sim.node(b).host.association(&a_hit).expect("A reached B");
    assert_eq!(on_b.state, hip::AssocState::Established);
    assert_eq!(on_b.traffic.rx_packets, 1, "the held packet arrived, once");
    assert_eq!(on_b.remote.ip(), hipbone::sim::nodes::address(a).ip());
    // `hipbone status` says how each side came to it.
    let b_hit = sim.node(b).hit();
    assert_eq!(sim.node(a).found(&b_hit), Some(Found::LocatorRecord));
    assert_eq!(sim.node(b).found(&a_hit), None, "B did not start it");
}

/// A member whose record was lost (every copy dropped) is still reached by its HIT: the
/// lookup finds nothing, so the I1 goes through the overlay hop by hop (HIP BONE), and the
/// R1 comes back along the same hops with the member's addresses, where the I2 goes.
#[test]
fn a_member_whose_record_was_lost_is_reached_by_an_i1_routed_through_the_overlay() {
    let n = 30;
    let mut sim = settled_ring(8, n);
    let (a, b) = strangers(&sim);
    let (a_hit, b_hit) = (sim.node(a).hit(), sim.node(b).hit());
    let resource = overlay::id::resource_id(&b_hit.0);
    let mut lost = 0;
    for j in 0..n {
        let o = sim.node_mut(j).overlay.as_mut().unwrap();
        lost += usize::from(o.node.lose_resource(&resource));
    }
    assert!(lost > 0, "B's record was stored somewhere");
    assert!(holders(&sim, &resource).is_empty());
    let routed_before: u64 = (0..n).map(|j| sim.node(j).host.stats().routed).sum();
    send_and_wait(&mut sim, a, b);
    let on_b = sim.node(b).host.association(&a_hit).expect("A reached B");
    assert_eq!(on_b.state, hip::AssocState::Established);
    assert_eq!(on_b.traffic.rx_packets, 1, "the held packet arrived, once");
    assert_eq!(on_b.remote.ip(), hipbone::sim::nodes::address(a).ip());
    assert_eq!(sim.node(a).found(&b_hit), Some(Found::OverlayRoute));
    let routed: u64 = (0..n).map(|j| sim.node(j).host.stats().routed).sum();
    assert!(routed > routed_before, "members passed the I1 and R1 on");
}

/// A sender whose copy of a member's record is stale (the member moved since the sender
/// last looked it up) dials the old address; when the first I1 goes unanswered, a copy
/// goes through the overlay, and the member answers it from where it is now.
#[test]
fn a_stale_record_gives_way_to_an_i1_routed_through_the_overlay() {
    let n = 20;
    let mut sim = settled_ring(10, n);
    let (a, b) = strangers(&sim);
    let b_hit = sim.node(b).hit();
    send_and_wait(&mut sim, a, b);
    assert_eq!(sim.node(a).found(&b_hit), Some(Found::LocatorRecord));
    let now = sim.now();
    sim.node_mut(a).host.close(now, &b_hit).unwrap();
    let later = sim.now() + Duration::from_secs(5);
    sim.run_until(later, |_| false);
    let new = move_to_new_network(&mut sim, b, "[2001:db8:6::9]:10500");
    let routed_before: u64 = (0..n).map(|j| sim.node(j).host.stats().routed).sum();
    send_udp(&mut sim, a, b_hit);
    let end = sim.now() + Duration::from_secs(40);
    sim.run_until(end, |s| {
        s.node(a)
            .host
            .association(&b_hit)
            .is_some_and(|x| x.state == hip::AssocState::Established)
    });
    let at_a = sim
        .node(a)
        .host
        .association(&b_hit)
        .expect("an association");
    assert_eq!(at_a.state, hip::AssocState::Established);
    assert_eq!(at_a.remote, new, "reached at the new address");
    // The exchange the record started, its R1 come through the overlay.
    assert_eq!(sim.node(a).found(&b_hit), Some(Found::LocatorRecord));
    let routed: u64 = (0..n).map(|j| sim.node(j).host.stats().routed).sum();
    assert!(
        routed > routed_before,
        "members passed the copy and its R1 on"
    );
}

/// Node `i` leaves its address for `new` (as netlink would tell it); runs 30 s, for its
/// peers and its record to hear of it. Returns the new address.
fn move_to_new_network(sim: &mut Sim<Node>, i: usize, new: &str) -> std::net::SocketAddr {
    let new: std::net::SocketAddr = new.parse().unwrap();
    hipbone::sim::nodes::move_node(sim, i, new);
    let later = sim.now() + Duration::from_secs(30);
    sim.run_until(later, |_| false);
    new
}

/// Two nodes with nothing between them yet: no association, and no neighbour's word.
fn strangers(sim: &Sim<Node>) -> (usize, usize) {
    let n = sim.len();
    (0..n)
        .flat_map(|a| (0..n).map(move |b| (a, b)))
        .find(|&(a, b)| {
            let (na, nb) = (sim.node(a), sim.node(b));
            a != b
                && na.host.association(&nb.hit()).is_none()
                && na.overlay.as_ref().unwrap().relay_for(&nb.hit()).is_none()
        })
        .expect("a pair of nodes without an association")
}

/// Node `from` sends one packet to `to` by its HIT; runs until it arrived (20 s at most).
fn send_and_wait(sim: &mut Sim<Node>, from: usize, to: usize) {
    let (from_hit, to_hit) = (sim.node(from).hit(), sim.node(to).hit());
    send_udp(sim, from, to_hit);
    let end = sim.now() + Duration::from_secs(20);
    sim.run_until(end, |s| {
        s.node(to)
            .host
            .association(&from_hit)
            .is_some_and(|x| x.traffic.rx_packets > 0)
    });
}

/// The ICMPv6 error in `packet`: (source, destination, type, code, the quoted packet).
fn icmpv6_error(packet: &[u8]) -> ([u8; 16], [u8; 16], u8, u8, Vec<u8>) {
    let ip = hip::esp::parse_ipv6(packet).expect("an IPv6 packet");
    assert_eq!(ip.next_header, hip::esp::PROTO_ICMPV6);
    let icmp = &packet[ip.payload];
    (ip.src, ip.dst, icmp[0], icmp[1], icmp[8..].to_vec())
}

/// `node`'s status lists `peer` alone as not reached, with a reason that says `why`.
fn only_unreached(node: &Node, peer: hip::Hit, why: &str) {
    let unreached: Vec<_> = node.unreached().collect();
    assert_eq!(unreached.len(), 1);
    assert_eq!(unreached[0].peer, peer);
    assert!(unreached[0].why.contains(why), "{}", unreached[0].why);
}

#[test]
fn a_packet_for_a_hit_nobody_has_is_answered_address_unreachable() {
    let stranger = HostIdentity::from_secret([9; 32]).hit();
    // Without an overlay and with no locator configured there is nowhere to look: the
    // stack hears at once.
    let (mut pair, _, _) = pair(4);
    let alone = pair.node(0).hit();
    send_udp(&mut pair, 0, stranger);
    let error = pair
        .node_mut(0)
        .poll_to_stack()
        .expect("an ICMP error at once");
    let (src, dst, kind, code, quoted) = icmpv6_error(&error);
    assert_eq!((src, dst, kind, code), (stranger.0, alone.0, 1, 3));
    let inner = hip::esp::parse_ipv6(&quoted).expect("the packet quoted");
    assert_eq!(
        (inner.src, inner.dst, inner.next_header),
        (alone.0, stranger.0, 17)
    );
    assert_eq!(quoted.len(), 40 + 8);
    assert_eq!(pair.node_mut(0).poll_to_stack(), None);
    only_unreached(pair.node(0), stranger, "no overlay");

    // A member waits for the lookup, which finds no record.
    let n = 10;
    let mut sim = ring(6, n);
    let settle = sim.now() + Duration::from_secs(60);
    sim.run_until(settle, |_| false);
    assert_eq!(joined(&sim), n);
    let me = sim.node(0).hit();
    send_udp(&mut sim, 0, stranger);
    assert_eq!(sim.node_mut(0).poll_to_stack(), None, "held, not refused");
    let end = sim.now() + Duration::from_secs(10);
    sim.run_until(end, |_| false);
    let error = sim
        .node_mut(0)
        .poll_to_stack()
        .expect("an ICMP error after the lookup");
    let (src, dst, kind, code, _) = icmpv6_error(&error);
    assert_eq!((src, dst, kind, code), (stranger.0, me.0, 1, 3));
    assert_eq!(
        sim.node_mut(0).poll_to_stack(),
        None,
        "one error per packet"
    );
    // No record; the I1 routed toward the HIT went to the member whose range it falls in,
    // which refused it (UNKNOWN_NEXT_HOP, back along the route) within the 10 s.
    only_unreached(
        sim.node(0),
        stranger,
        "the overlay refused an I1 routed to it",
    );
    let refused: u64 = (0..n).map(|j| sim.node(j).host.stats().route_refused).sum();
    assert!(refused > 0);
    // A member's HIT is found instead: no error.
    let member = sim.node(n - 1).hit();
    send_udp(&mut sim, 0, member);
    let end = sim.now() + Duration::from_secs(10);
    sim.run_until(end, |_| false);
    assert_eq!(sim.node_mut(0).poll_to_stack(), None);
}

#[test]
fn a_node_that_leaves_withdraws_its_record_and_the_copies_keep_the_withdrawal() {
    let n = 12;
    let mut sim = settled_ring(7, n);
    let (leaver, asker) = (5, 9);
    let hit = sim.node(leaver).hit();
    let fetch_locators = |sim: &mut Sim<Node>, request| {
        let now = sim.now();
        assert!(sim.node_mut(asker).overlay_fetch(now, hit, request));
        match answer(sim, asker) {
            Some(Answer::Fetched { locators, .. }) => locators,
            other => panic!("fetch answered {other:?}"),
        }
    };
    assert!(fetch_locators(&mut sim, 1).is_some(), "published before");
    let now = sim.now();
    sim.node_mut(leaver).leave(now);
    assert!(
        !sim.node(leaver).left_overlay(),
        "the withdrawal is under way"
    );
    let end = sim.now() + Duration::from_secs(10);
    sim.run_until(end, |s| s.node(leaver).left_overlay());
    assert!(sim.node(leaver).left_overlay());
    let now = sim.now();
    sim.node_mut(leaver).depart(now);
    // The ring repairs and re-replicates; the withdrawal, not the record, is what every
    // holder keeps.
    let end = sim.now() + Duration::from_secs(120);
    sim.run_until(end, |_| false);
    assert_eq!(fetch_locators(&mut sim, 2), None);
    let resource = overlay::id::resource_id(&hit.0);
    let holders = holders(&sim, &resource)
        .into_iter()
        .filter(|&j| j != leaver)
        .count();
    assert!(
        holders >= 2,
        "the withdrawal is replicated ({holders} holders)"
    );
}

/// Right after a 40-node ring settled, every member fetches another's record at once: all
/// 40 come back with the record. (Links that one end closed without the other noticing
/// used to swallow a few of them until they timed out.)
#[test]
fn every_member_finds_another_s_record_in_the_first_round() {
    let n = 40;
    let mut sim = ring(7, n);
    assert_eq!(joined(&sim), n);
    let settle = sim.now() + Duration::from_secs(90);
    sim.run_until(settle, |_| false);
    let now = sim.now();
    for i in 0..n {
        let owner = sim.node((i + 7) % n).hit();
        assert!(sim.node_mut(i).overlay_fetch(now, owner, i as u64));
    }
    let mut found = vec![false; n];
    let end = sim.now() + Duration::from_secs(30);
    sim.run_until(end, |sim| {
        for (i, f) in found.iter_mut().enumerate() {
            while let Some(a) = sim.node_mut(i).overlay.as_mut().unwrap().poll_answer() {
                *f |= matches!(
                    a,
                    Answer::Fetched {
                        locators: Some(_),
                        ..
                    }
                );
            }
        }
        found.iter().all(|f| *f)
    });
    let missed: Vec<usize> = (0..n).filter(|&i| !found[i]).collect();
    assert_eq!(missed, Vec::<usize>::new(), "fetches without the record");
}

/// A member moves to another network: its record names the new address at once, and a
/// member that had no association with it reaches it there by its HIT alone.
#[test]
fn a_member_that_moved_is_reached_at_its_new_address_by_its_hit() {
    let n = 30;
    let mut sim = ring(9, n);
    let settle = sim.now() + Duration::from_secs(90);
    sim.run_until(settle, |_| false);
    let mover = 7;
    let new = move_to_new_network(&mut sim, mover, "[2001:db8:6::7]:10500");
    let hit = sim.node(mover).hit();
    let from = (0..n)
        .find(|&i| {
            i != mover
                && sim.node(i).host.association(&hit).is_none()
                && sim
                    .node(i)
                    .overlay
                    .as_ref()
                    .unwrap()
                    .relay_for(&hit)
                    .is_none()
        })
        .expect("a member with no association with the mover");
    let from_hit = sim.node(from).hit();
    send_and_wait(&mut sim, from, mover);
    let at_sender = sim
        .node(from)
        .host
        .association(&hit)
        .expect("an association");
    assert_eq!(at_sender.remote, new, "reached at the new address");
    let at_mover = sim
        .node(mover)
        .host
        .association(&from_hit)
        .expect("the mover's side");
    assert_eq!(
        at_mover.traffic.rx_packets, 1,
        "the held packet arrived, once"
    );
}
