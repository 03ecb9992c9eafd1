//! Dual-stack hosts in the simulator (RFC 8046/8047): both ends announce every address of
//! both families once the association is up, so that a host losing one family is followed
//! over the other at once; the first I1 goes to every configured locator, each from an
//! address of its own family; and an association that failed while its peer was out of
//! reach comes back when the peer is heard from again.

use hip::{AssocState, Config, Event};
use hipbone::sim::bex::{packet_name, Pair};
use hipbone::sim::{Datagram, Verdict};
use std::net::SocketAddr;
use std::time::Duration;

struct DualStack {
    p: Pair,
    a_v6: SocketAddr,
    b_v6: SocketAddr,
}

/// A and B with an IPv4 and an IPv6 address each; A is given both of B's locators, as a
/// configuration would, and connects.
fn dual_stack(seed: u64) -> DualStack {
    let mut p = Pair::new(
        seed,
        hipbone::sim::Link::default(),
        false,
        Config::default(),
    );
    let a_v6: SocketAddr = "[2001:db8:a::2]:10500".parse().unwrap();
    let b_v6: SocketAddr = "[2001:db8:b::2]:10500".parse().unwrap();
    let (a, b, a_v4, b_v4, b_hit) = (p.a, p.b, p.a_addr, p.b_addr, p.b_hit);
    p.sim.assign(a, a_v6);
    p.sim.assign(b, b_v6);
    let now = p.sim.now();
    p.sim.node_mut(a).set_local_addresses(now, &[a_v4, a_v6]);
    p.sim.node_mut(b).set_local_addresses(now, &[b_v4, b_v6]);
    p.sim
        .node_mut(a)
        .connect(now, b_hit, a_v4, &[b_v4, b_v6])
        .unwrap();
    p.run(Duration::from_secs(10)).expect("base exchange");
    p.settle(Duration::from_millis(500));
    DualStack { p, a_v6, b_v6 }
}

#[test]
fn both_ends_announce_both_families_once_the_association_is_up() {
    let DualStack { p, a_v6, b_v6 } = dual_stack(1);
    let on_a = p.sim.node(p.a).association(&p.b_hit).unwrap();
    let on_b = p.sim.node(p.b).association(&p.a_hit).unwrap();
    assert_eq!(on_a.state, AssocState::Established);
    assert_eq!(on_b.state, AssocState::Established);
    assert_eq!(on_a.peer_locators, vec![p.b_addr, b_v6]);
    assert_eq!(on_b.peer_locators, vec![p.a_addr, a_v6]);
    // The path stays where the exchange ran.
    assert_eq!(on_a.remote, p.b_addr);
    assert_eq!(on_b.remote, p.a_addr);
}

#[test]
fn a_host_announces_nothing_when_the_peer_already_knows_its_only_address() {
    let mut p = Pair::new(2, hipbone::sim::Link::default(), false, Config::default());
    let now = p.sim.now();
    let (a, b, a_addr, b_addr) = (p.a, p.b, p.a_addr, p.b_addr);
    p.sim.node_mut(a).set_local_addresses(now, &[a_addr]);
    p.sim.node_mut(b).set_local_addresses(now, &[b_addr]);
    p.connect_a();
    p.run(Duration::from_secs(10)).expect("base exchange");
    p.settle(Duration::from_secs(1));
    let updates = p
        .sim
        .trace()
        .iter()
        .filter(|r| packet_name(&r.datagram.payload) == "UPDATE")
        .count();
    assert_eq!(updates, 0);
}

#[test]
fn a_peer_that_loses_ipv4_is_followed_over_ipv6_at_once() {
    for seed in 0..10 {
        let DualStack { mut p, a_v6, b_v6 } = dual_stack(10 + seed);
        let (a, b, a_hit, b_hit, b_v4) = (p.a, p.b, p.a_hit, p.b_hit, p.b_addr);
        // Traffic both ways while B's IPv4 address goes.
        p.send_esp(a, b_hit, b"before");
        p.send_esp(b, a_hit, b"before");
        p.settle(Duration::from_millis(50));
        p.sim.unassign(b_v4);
        let now = p.sim.now();
        p.sim.node_mut(b).set_local_addresses(now, &[b_v6]);
        let moved_at = p.sim.now();
        // B tells A from the family it kept, without waiting for silence: A has B's new
        // path after the check's round trip (10 ms links), long before a failover.
        p.sim.run_until(moved_at + Duration::from_secs(1), |sim| {
            sim.node(a).association(&b_hit).unwrap().remote == b_v6
                && sim.node(b).association(&a_hit).unwrap().remote == a_v6
        });
        let took = p.sim.now() - moved_at;
        assert!(
            took < Config::default().failover_silence,
            "seed {seed}: followed after {took:?}"
        );
        let before = p.sim.node(b).traffic(&a_hit).unwrap().rx_packets;
        for n in 0..10u32 {
            p.send_esp(a, b_hit, &n.to_be_bytes());
            p.send_esp(b, a_hit, &n.to_be_bytes());
        }
        p.settle(Duration::from_millis(100));
        let got = p.sim.node(b).traffic(&a_hit).unwrap().rx_packets - before;
        assert_eq!(got, 10, "seed {seed}");
        assert!(p
            .events
            .iter()
            .all(|(_, _, e)| !matches!(e, Event::Failed { .. })));
    }
}

#[test]
fn the_first_i1_goes_to_every_configured_locator_from_its_own_family() {
    let mut p = Pair::new(3, hipbone::sim::Link::default(), false, Config::default());
    let a_v6: SocketAddr = "[2001:db8:a::2]:10500".parse().unwrap();
    let b_v6: SocketAddr = "[2001:db8:b::2]:10500".parse().unwrap();
    let (a, b, a_v4, b_v4, b_hit) = (p.a, p.b, p.a_addr, p.b_addr, p.b_hit);
    p.sim.assign(a, a_v6);
    p.sim.assign(b, b_v6);
    // B has no IPv4 address any more; A's configuration still lists it first.
    p.sim.unassign(b_v4);
    let now = p.sim.now();
    p.sim.node_mut(a).set_local_addresses(now, &[a_v4, a_v6]);
    p.sim.node_mut(b).set_local_addresses(now, &[b_v6]);
    p.sim
        .node_mut(a)
        .connect(now, b_hit, a_v4, &[b_v4, b_v6])
        .unwrap();
    p.run(Duration::from_secs(10))
        .expect("the exchange runs over IPv6");
    let i1s: Vec<Datagram> = p
        .sim
        .trace()
        .iter()
        .filter(|r| packet_name(&r.datagram.payload) == "I1")
        .map(|r| r.datagram.clone())
        .collect();
    assert!(i1s.iter().any(|d| d.from == a_v4 && d.to == b_v4));
    assert!(i1s.iter().any(|d| d.from == a_v6 && d.to == b_v6));
    assert!(i1s.iter().all(|d| d.from.is_ipv4() == d.to.is_ipv4()));
    assert_eq!(
        p.sim.node(a).association(&b_hit).unwrap().remote,
        b_v6,
        "the exchange ran where B answered"
    );
}

/// B's association with A fails while A is out of reach (B sends, nothing comes back).
fn fail_on_b(seed: u64) -> DualStack {
    let mut d = dual_stack(seed);
    let p = &mut d.p;
    let (b, a_hit) = (p.b, p.a_hit);
    p.sim.set_filter(Box::new(|_, _: &Datagram| Verdict::Drop));
    p.send_esp(b, a_hit, b"anyone there?");
    p.settle(Duration::from_secs(30));
    assert_eq!(
        p.sim.node(b).association(&a_hit).unwrap().state,
        AssocState::Failed
    );
    p.sim.clear_filter();
    d
}

#[test]
fn a_failed_association_comes_back_when_the_peer_probes_it() {
    let DualStack { mut p, .. } = fail_on_b(4);
    let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
    p.events.clear();
    // A sends: its path is silent, so it probes B (a fresh, signed UPDATE).
    for n in 0..3u32 {
        p.send_esp(a, b_hit, &n.to_be_bytes());
    }
    p.settle(Duration::from_secs(10));
    let on_b = p.sim.node(b).association(&a_hit).unwrap();
    assert_eq!(on_b.state, AssocState::Established);
    assert_eq!(p.sim.node(b).stats().revived, 1);
    assert!(p
        .events
        .iter()
        .any(|(_, n, e)| *n == b && matches!(e, Event::Established { .. })));
    // And it carries data again, both ways.
    let before = p.sim.node(a).traffic(&b_hit).unwrap().rx_packets;
    for n in 0..5u32 {
        assert!(p.send_esp(b, a_hit, &n.to_be_bytes()).is_some());
    }
    p.settle(Duration::from_millis(100));
    assert_eq!(
        p.sim.node(a).traffic(&b_hit).unwrap().rx_packets,
        before + 5
    );
}

#[test]
fn a_replayed_update_does_not_bring_a_failed_association_back() {
    let DualStack { mut p, .. } = fail_on_b(5);
    let (b, a_hit) = (p.b, p.a_hit);
    // Every UPDATE A ever sent B, replayed.
    let replays: Vec<Datagram> = p
        .sim
        .trace()
        .iter()
        .filter(|r| packet_name(&r.datagram.payload) == "UPDATE" && r.datagram.to.port() == 10500)
        .map(|r| r.datagram.clone())
        .filter(|d| p.sim.node(b).local_addresses().contains(&d.to))
        .collect();
    assert!(!replays.is_empty(), "no UPDATE of A's to replay");
    for d in replays {
        p.sim.inject(d);
    }
    p.settle(Duration::from_millis(200));
    assert_eq!(
        p.sim.node(b).association(&a_hit).unwrap().state,
        AssocState::Failed
    );
    assert_eq!(p.sim.node(b).stats().revived, 0);
}

#[test]
fn a_failed_association_sends_nothing_of_its_own() {
    let DualStack { mut p, .. } = fail_on_b(6);
    let (b, a_hit) = (p.b, p.a_hit);
    assert!(p.send_esp(b, a_hit, b"data").is_none());
}

#[test]
fn an_update_that_found_no_route_leaves_again_when_the_route_comes() {
    let DualStack { mut p, .. } = dual_stack(7);
    let (a, b, a_hit) = (p.a, p.b, p.a_hit);
    let new: SocketAddr = "203.0.113.99:10500".parse().unwrap();
    // The new address comes before its route: what A sends from it goes nowhere.
    p.sim.set_filter(Box::new(move |_, d: &Datagram| {
        if d.from == new {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }));
    p.sim.assign(a, new);
    let now = p.sim.now();
    let a_v6 = p.sim.node(a).local_addresses()[1];
    p.sim.node_mut(a).set_local_addresses(now, &[new, a_v6]);
    p.settle(Duration::from_millis(20));
    p.sim.clear_filter();
    let routed = p.sim.now();
    p.sim.node_mut(a).routes_changed(routed);
    p.sim.run_until(routed + Duration::from_secs(5), |sim| {
        sim.node(b).association(&a_hit).unwrap().remote == new
    });
    let took = p.sim.now() - routed;
    // One round trip for the UPDATE and one for the check, on 10 ms links; the UPDATE's
    // own retransmission would have come after a second.
    assert!(
        took <= Duration::from_millis(100),
        "followed {took:?} after the route came"
    );
}
