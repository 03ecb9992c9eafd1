//! Mobility in the simulator (RFC 8046): a host that changes address tells its peer, the
//! peer checks the new address before it sends anything else there, and a peer that
//! announces someone else's address gets nothing but a few checks sent there.

use hip::{Config, Event, Outbound};
use hipbone::sim::bex::{packet_name, Pair};
use hipbone::sim::{Datagram, Link, Record};
use std::net::SocketAddr;
use std::time::Duration;

fn established(seed: u64, link: Link) -> Pair {
    let mut p = Pair::new(seed, link, false, Config::default());
    p.connect_a();
    p.run(Duration::from_secs(30)).expect("base exchange");
    p
}

/// A's old address disappears and `new` appears, as netlink would report.
fn move_a(p: &mut Pair, new: SocketAddr) {
    p.sim.unassign(p.a_addr);
    add_address(p, new, &[new]);
}

/// A gets `new` as well, and now has `all`.
fn add_address(p: &mut Pair, new: SocketAddr, all: &[SocketAddr]) {
    p.sim.assign(p.a, new);
    let now = p.sim.now();
    p.sim.node_mut(p.a).set_local_addresses(now, all);
}

/// A sends B one ESP packet with `from` as its source address.
fn esp_from(p: &mut Pair, from: SocketAddr) {
    let now = p.sim.now();
    let mut buf = vec![0u8; 64];
    let Outbound::Send {
        remote, datagram, ..
    } = p
        .sim
        .node_mut(p.a)
        .encapsulate(now, &p.b_hit, 17, &mut buf, 16..32)
    else {
        panic!("A has no SA");
    };
    p.sim.send(Datagram {
        from,
        to: remote,
        payload: datagram.to_vec(),
    });
}

#[test]
fn a_host_that_moves_keeps_its_association() {
    let mut p = established(1, Link::default());
    let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
    let new: SocketAddr = "203.0.113.7:10500".parse().unwrap();
    // A's old address disappears and a new one appears, as netlink would report.
    move_a(&mut p, new);
    p.settle(Duration::from_millis(200));
    let info = p.sim.node(b).association(&a_hit).unwrap();
    assert_eq!(info.remote, new, "B did not move A to its new address");
    assert!(p
        .events
        .iter()
        .any(|(_, n, e)| *n == b && matches!(e, Event::LocatorChanged { .. })));
    // Traffic flows both ways at the new address, on the same SAs.
    let before = p.sim.node(a).traffic(&b_hit).unwrap().rx_packets;
    for n in 0..20u32 {
        assert!(p.send_esp(b, a_hit, &n.to_be_bytes()).is_some());
        assert!(p.send_esp(a, b_hit, &n.to_be_bytes()).is_some());
    }
    p.settle(Duration::from_millis(100));
    assert_eq!(
        p.sim.node(a).traffic(&b_hit).unwrap().rx_packets,
        before + 20
    );
    assert_eq!(p.sim.node(b).traffic(&a_hit).unwrap().rx_packets, 20);
    // The check took one round trip, on a 10 ms link.
    let (_, took) = info.last_move.unwrap();
    assert!(took <= Duration::from_millis(100), "{took:?}");
}

#[test]
fn a_move_survives_loss() {
    let link = Link {
        loss: 0.2,
        ..Link::default()
    };
    for seed in 0..30 {
        let mut p = established(100 + seed, link);
        let (b, a_hit) = (p.b, p.a_hit);
        let new: SocketAddr = "203.0.113.7:10500".parse().unwrap();
        move_a(&mut p, new);
        p.settle(Duration::from_secs(10));
        assert_eq!(
            p.sim.node(b).association(&a_hit).unwrap().remote,
            new,
            "seed {seed}"
        );
    }
}

#[test]
fn a_move_from_ipv4_to_ipv6_only_survives_loss() {
    let link = Link {
        loss: 0.1,
        ..Link::default()
    };
    for seed in 0..10 {
        let mut p = Pair::new(200 + seed, link, false, Config::default());
        let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
        let a_v6: SocketAddr = "[2001:db8:1::a]:10500".parse().unwrap();
        let b_v6: SocketAddr = "[2001:db8:2::b]:10500".parse().unwrap();
        // B has both families; A knows B's IPv6 locator from its configuration.
        p.sim.assign(b, b_v6);
        let now = p.sim.now();
        let (a_addr, b_addr) = (p.a_addr, p.b_addr);
        p.sim.node_mut(b).set_local_addresses(now, &[b_addr, b_v6]);
        p.sim
            .node_mut(a)
            .connect(now, b_hit, a_addr, &[b_addr, b_v6])
            .unwrap();
        p.run(Duration::from_secs(30)).expect("base exchange");
        // A loses IPv4 altogether.
        move_a(&mut p, a_v6);
        p.settle(Duration::from_secs(15));
        assert_eq!(
            p.sim.node(b).association(&a_hit).unwrap().remote,
            a_v6,
            "seed {seed}"
        );
        assert_eq!(
            p.sim.node(a).association(&b_hit).unwrap().remote,
            b_v6,
            "seed {seed}"
        );
        let before = p.sim.node(b).traffic(&a_hit).unwrap().rx_packets;
        for n in 0..20u32 {
            p.send_esp(a, b_hit, &n.to_be_bytes());
        }
        p.settle(Duration::from_millis(100));
        let got = p.sim.node(b).traffic(&a_hit).unwrap().rx_packets - before;
        assert!(got >= 10, "seed {seed}: {got} of 20 over IPv6");
    }
}

#[test]
fn esp_from_a_new_address_is_checked_before_the_peer_moves_there() {
    // A peer behind a NAT that changed its mapping: authenticated ESP arrives from a new
    // address without any UPDATE.
    let mut p = established(2, Link::default());
    let (a, b, a_hit) = (p.a, p.b, p.a_hit);
    let new: SocketAddr = "203.0.113.8:40000".parse().unwrap();
    p.sim.assign(a, new);
    esp_from(&mut p, new);
    p.settle(Duration::from_millis(200));
    assert_eq!(p.sim.node(b).association(&a_hit).unwrap().remote, new);
}

#[test]
fn a_signed_move_replaces_the_check_of_an_address_the_peer_had_for_a_moment() {
    // A leaves a NAT: in the instant between its new route and the removal of its old
    // address, ESP leaves with the old, private source address, un-translated, and B
    // starts checking an address that will never answer. A's UPDATE from its new address
    // must not wait behind that check (it took 8 s, and a transfer stalled meanwhile).
    let mut p = established(21, Link::default());
    let (b, a_hit) = (p.b, p.a_hit);
    let transient: SocketAddr = "10.0.0.2:10500".parse().unwrap();
    esp_from(&mut p, transient);
    p.settle(Duration::from_millis(30));
    assert!(
        p.sim.node(b).stats().address_checks >= 1,
        "B checks the transient address"
    );
    let new: SocketAddr = "203.0.113.9:10500".parse().unwrap();
    move_a(&mut p, new);
    p.settle(Duration::from_millis(200));
    let info = p.sim.node(b).association(&a_hit).unwrap();
    assert_eq!(info.remote, new, "B still waits on the transient address");
}

#[test]
fn announcing_a_victims_address_sends_a_few_checks_and_no_more_data_than_was_received() {
    let mut p = established(3, Link::default());
    let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
    let victim: SocketAddr = "203.0.113.66:10500".parse().unwrap();
    let old = p.a_addr;
    // A (a valid peer) first sends B some data, which earns it credit at B.
    let mut earned = 0;
    for _ in 0..20 {
        earned += p.send_esp(a, b_hit, &[0u8; 100]).unwrap().payload.len();
    }
    p.settle(Duration::from_millis(100));
    // Then A claims the victim's address (leaving its own out); the victim does not answer.
    let now = p.sim.now();
    p.sim.node_mut(a).set_local_addresses(now, &[victim]);
    for n in 0..50u32 {
        p.send_esp(b, a_hit, &n.to_be_bytes());
        p.settle(Duration::from_millis(100));
    }
    p.settle(Duration::from_secs(30));
    let to_victim: Vec<_> = p
        .sim
        .trace()
        .iter()
        .filter(|r| r.datagram.to == victim)
        .collect();
    assert!(!to_victim.is_empty(), "the address was never checked");
    // The check (its retransmissions) and the ACKs of what arrived from there, no more than
    // the UPDATE retry limit of each; data only within the credit A earned.
    let tries = Config::default().update_tries as usize;
    let (updates, data): (Vec<&Record>, Vec<&Record>) = to_victim
        .into_iter()
        .partition(|r| packet_name(&r.datagram.payload) == "UPDATE");
    assert!(updates.len() <= 2 * tries, "{} UPDATEs", updates.len());
    let data_bytes: usize = data.iter().map(|r| r.datagram.payload.len()).sum();
    assert!(
        data_bytes <= earned,
        "{data_bytes} bytes sent on {earned} of credit"
    );
    // B still talks to A where A really is.
    assert_eq!(p.sim.node(b).association(&a_hit).unwrap().remote, old);
}

#[test]
fn data_follows_a_move_on_credit_before_the_new_address_is_verified() {
    let mut p = established(8, Link::default());
    let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
    // What A sends B is the credit it earns there (RFC 8046 §3.3.2).
    let mut earned = 0;
    for _ in 0..10 {
        earned += p.send_esp(a, b_hit, &[0u8; 500]).unwrap().payload.len();
    }
    p.settle(Duration::from_millis(50));
    let new: SocketAddr = "203.0.113.7:10500".parse().unwrap();
    move_a(&mut p, new);
    // The announcement has reached B (one 10 ms hop), the answer to B's check has not.
    p.settle(Duration::from_millis(12));
    assert_eq!(
        p.sim.node(b).association(&a_hit).unwrap().checking,
        Some(new)
    );
    let early = p.send_esp(b, a_hit, b"early").unwrap();
    assert_eq!(early.to, new, "data waited for the check");
    // Credit runs out: B sends the new address exactly as many packets as the rest of A's
    // credit covers (no virtual time passes, so none of it ages away), then data goes to
    // the (deprecated) old locator.
    let (mut to_new, mut size) = (0, 0);
    for _ in 0..20 {
        let sent = p.send_esp(b, a_hit, &[0u8; 1000]).unwrap();
        size = sent.payload.len();
        if sent.to == new {
            to_new += 1;
        }
    }
    let allowed = (earned - early.payload.len()) / size;
    assert!(
        allowed >= 1,
        "the test earns too little credit ({earned} bytes)"
    );
    assert_eq!(
        to_new, allowed,
        "{to_new} packets of {size} bytes to the new address on {earned} bytes of credit"
    );
    let stats = p.sim.node(b).stats();
    assert_eq!(
        stats.credit_bytes as usize,
        early.payload.len() + to_new * size
    );
    assert_eq!(stats.credit_refused as usize, 20 - to_new);
    p.settle(Duration::from_millis(100));
    assert_eq!(p.sim.node(b).association(&a_hit).unwrap().remote, new);
}

/// Both ends send (like a TCP transfer and its ACKs) every 50 ms for `d`.
fn both_ways(p: &mut Pair, d: Duration) {
    let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
    for n in 0..d.as_millis() / 50 {
        p.send_esp(a, b_hit, &(n as u32).to_be_bytes());
        p.send_esp(b, a_hit, &(n as u32).to_be_bytes());
        p.settle(Duration::from_millis(50));
    }
}

#[test]
fn a_path_that_falls_silent_fails_over_to_another_pair_of_addresses() {
    for (seed, loss) in [(9, 0.0), (10, 0.1), (11, 0.1), (12, 0.2)] {
        let link = Link {
            loss,
            ..Link::default()
        };
        let mut p = established(seed, link);
        let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
        let first = p.a_addr;
        let second: SocketAddr = "198.51.100.130:10500".parse().unwrap();
        add_address(&mut p, second, &[first, second]);
        both_ways(&mut p, Duration::from_secs(2));
        assert_eq!(
            p.sim.node(b).association(&a_hit).unwrap().peer_locators,
            vec![first, second],
            "seed {seed}"
        );
        // The path through A's first address breaks; the address and its link stay up.
        p.sim.set_filter(Box::new(move |_, d: &Datagram| {
            if d.from == first || d.to == first {
                hipbone::sim::Verdict::Drop
            } else {
                hipbone::sim::Verdict::Pass
            }
        }));
        both_ways(&mut p, Duration::from_secs(20));
        let (at_a, at_b) = (
            p.sim.node(a).association(&b_hit).unwrap(),
            p.sim.node(b).association(&a_hit).unwrap(),
        );
        assert_eq!(
            at_a.local, second,
            "seed {seed}: A still sends from {first}"
        );
        assert_eq!(at_b.remote, second, "seed {seed}: B still sends to {first}");
        // Traffic flows again, both ways.
        let before = (at_a.traffic.rx_packets, at_b.traffic.rx_packets);
        both_ways(&mut p, Duration::from_secs(1));
        let after = (
            p.sim.node(a).traffic(&b_hit).unwrap().rx_packets,
            p.sim.node(b).traffic(&a_hit).unwrap().rx_packets,
        );
        assert!(
            after.0 > before.0 + 10 && after.1 > before.1 + 10,
            "seed {seed}"
        );
    }
}

#[test]
fn one_way_traffic_is_acknowledged_by_dummy_packets_and_never_probed_or_moved() {
    let mut p = established(13, Link::default());
    let (a, b, b_hit) = (p.a, p.b, p.b_hit);
    let second: SocketAddr = "198.51.100.130:10500".parse().unwrap();
    p.sim.assign(a, second);
    let now = p.sim.now();
    p.sim
        .node_mut(a)
        .set_local_addresses(now, &[p.a_addr, second]);
    p.settle(Duration::from_secs(1));
    let start = p.sim.trace().len();
    let acks_before = p.sim.node(b).stats().acks_sent;
    // A streams to B, which never answers with data (one-way UDP).
    for n in 0..400u32 {
        p.send_esp(a, b_hit, &n.to_be_bytes());
        p.settle(Duration::from_millis(50));
    }
    let info = p.sim.node(a).association(&b_hit).unwrap();
    assert_eq!((info.local, info.remote), (p.a_addr, p.b_addr));
    let probes = p.sim.trace()[start..]
        .iter()
        .filter(|r| r.datagram.from == p.a_addr && packet_name(&r.datagram.payload) == "UPDATE")
        .count();
    // B answers the stream with an ESP dummy packet every 0.75 s (half the failover
    // silence): A hears from B and never takes the path for broken.
    let acks = p.sim.node(b).stats().acks_sent - acks_before;
    assert_eq!(probes, 0, "{probes} probes");
    assert!((20..=30).contains(&acks), "{acks} dummy packets in 20 s");
}

#[test]
fn an_update_with_a_bad_signature_moves_nothing_and_checks_nothing() {
    let mut p = established(4, Link::default());
    let (b, a_hit) = (p.b, p.a_hit);
    let new: SocketAddr = "203.0.113.7:10500".parse().unwrap();
    let old = p.a_addr;
    // Every UPDATE from A has one bit of its signature flipped on the way.
    p.sim.set_filter(Box::new(|_, dg: &Datagram| {
        if packet_name(&dg.payload) != "UPDATE" {
            return hipbone::sim::Verdict::Pass;
        }
        let mut forged = dg.clone();
        let last = forged.payload.len() - 20;
        forged.payload[last] ^= 1;
        hipbone::sim::Verdict::Replace(vec![forged])
    }));
    add_address(&mut p, new, &[new]);
    p.settle(Duration::from_secs(10));
    assert_eq!(p.sim.node(b).association(&a_hit).unwrap().remote, old);
    assert_eq!(
        p.sim.node(b).stats().last_drop,
        Some(hip::Error::BadSignature)
    );
    assert!(
        p.sim
            .trace()
            .iter()
            .all(|r| r.datagram.from != p.b_addr || r.datagram.to != new),
        "B sent something to the address of a forged UPDATE"
    );
}

#[test]
fn a_check_cut_short_by_a_rekey_does_not_stop_later_moves() {
    let config = Config {
        rekey_after_packets: 5,
        ..Config::default()
    };
    let mut p = Pair::new(5, Link::default(), false, config);
    p.connect_a();
    p.run(Duration::from_secs(10)).unwrap();
    let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
    // A copy of A's ESP arrives from an address where nobody answers: B starts a check.
    let nowhere: SocketAddr = "203.0.113.99:10500".parse().unwrap();
    let esp = p.send_esp(a, b_hit, b"copy").unwrap();
    p.sim.send(Datagram {
        from: nowhere,
        ..esp
    });
    p.settle(Duration::from_millis(5));
    // A rekeys meanwhile (its packet count runs out), which takes B's one outstanding UPDATE.
    for n in 0..10u32 {
        p.send_esp(a, b_hit, &n.to_be_bytes());
    }
    p.settle(Duration::from_secs(20));
    assert!(
        p.sim
            .node(b)
            .association(&a_hit)
            .unwrap()
            .checking
            .is_none(),
        "check still pending"
    );
    // A really moves: B follows.
    let moved: SocketAddr = "203.0.113.7:10500".parse().unwrap();
    move_a(&mut p, moved);
    p.settle(Duration::from_secs(5));
    assert_eq!(p.sim.node(b).association(&a_hit).unwrap().remote, moved);
}

#[test]
fn an_announcement_held_back_by_a_rekey_is_made_afterwards() {
    let config = Config {
        rekey_after_packets: 5,
        ..Config::default()
    };
    let mut p = Pair::new(6, Link::default(), false, config);
    p.connect_a();
    p.run(Duration::from_secs(10)).unwrap();
    let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
    // A starts a rekey (its packet count runs out), and while its UPDATE is outstanding
    // A moves: the announcement has to wait for the rekey's ACK.
    for n in 0..6u32 {
        p.send_esp(a, b_hit, &n.to_be_bytes());
    }
    let moved: SocketAddr = "203.0.113.7:10500".parse().unwrap();
    add_address(&mut p, moved, &[moved]);
    p.settle(Duration::from_secs(5));
    assert_eq!(p.sim.node(b).association(&a_hit).unwrap().remote, moved);
}

#[test]
fn a_peer_that_vanishes_fails_the_association_once_no_path_answers() {
    let mut p = established(14, Link::default());
    let (a, b_hit) = (p.a, p.b_hit);
    let b_addr = p.b_addr;
    p.sim.unassign(b_addr);
    let start = p.sim.elapsed();
    for n in 0..200u32 {
        p.send_esp(a, b_hit, &n.to_be_bytes());
        p.settle(Duration::from_millis(50));
    }
    let failed_at = p
        .events
        .iter()
        .find(|(_, n, e)| *n == a && matches!(e, Event::Failed { .. }))
        .map(|(at, _, _)| *at);
    assert!(failed_at.is_some(), "A never gave up on B");
    // Silence (1.5 s) and three probes of the one path (2.5 s), in virtual time.
    let took = failed_at.unwrap() - start;
    assert!(took <= Duration::from_secs(6), "{took:?}");
}

#[test]
fn a_rekey_due_while_an_update_is_outstanding_does_not_spin_the_timer() {
    // A probe is outstanding (all traffic lost) when the rekey falls due: the rekey must
    // wait for it without the timer firing again and again at the same instant.
    let config = Config {
        rekey_after: Duration::from_secs(2),
        ..Config::default()
    };
    let mut p = Pair::new(15, Link::default(), false, config);
    p.connect_a();
    p.run(Duration::from_secs(10)).expect("base exchange");
    let (a, b_hit) = (p.a, p.b_hit);
    p.sim
        .set_filter(Box::new(|_, _: &Datagram| hipbone::sim::Verdict::Drop));
    p.send_esp(a, b_hit, b"into the void");
    let end = p.sim.now() + Duration::from_secs(10);
    let mut steps = 0;
    while p.sim.step(end) {
        steps += 1;
        assert!(steps < 10_000, "the timer spins at {:?}", p.sim.elapsed());
    }
}

#[test]
fn the_first_packet_after_a_quiet_spell_is_not_probed_at_once() {
    let mut p = established(16, Link::default());
    let (a, b_hit) = (p.a, p.b_hit);
    p.settle(Duration::from_secs(10));
    p.send_esp(a, b_hit, b"after a while");
    let info = p.sim.node(a).association(&b_hit).unwrap();
    assert!(info.probing.is_none());
    let due = p.sim.node(a).poll_timeout().unwrap();
    assert!(due > p.sim.now(), "a timer due at once after one packet");
}
