//! Mobility in the simulator (RFC 8046): a host that changes address tells its peer, the
//! peer checks the new address before it sends anything else there, and a peer that
//! announces someone else's address gets nothing but a few checks sent there.

use hip::{Config, Event, Outbound};
use hipbone::sim::bex::{packet_name, Pair};
use hipbone::sim::{Datagram, Link};
use std::net::SocketAddr;
use std::time::Duration;

fn established(seed: u64, link: Link) -> Pair {
    let mut p = Pair::new(seed, link, false, Config::default());
    p.connect_a();
    p.run(Duration::from_secs(30)).expect("base exchange");
    p
}

#[test]
fn a_host_that_moves_keeps_its_association() {
    let mut p = established(1, Link::default());
    let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
    let new: SocketAddr = "203.0.113.7:10500".parse().unwrap();
    // A's old address disappears and a new one appears, as netlink would report.
    p.sim.unassign(p.a_addr);
    p.sim.assign(a, new);
    let now = p.sim.now();
    p.sim.node_mut(a).set_local_addresses(now, &[new]);
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
        let (a, b, a_hit) = (p.a, p.b, p.a_hit);
        let new: SocketAddr = "203.0.113.7:10500".parse().unwrap();
        p.sim.unassign(p.a_addr);
        p.sim.assign(a, new);
        let now = p.sim.now();
        p.sim.node_mut(a).set_local_addresses(now, &[new]);
        p.settle(Duration::from_secs(10));
        assert_eq!(
            p.sim.node(b).association(&a_hit).unwrap().remote,
            new,
            "seed {seed}"
        );
    }
}

#[test]
fn esp_from_a_new_address_is_checked_before_the_peer_moves_there() {
    // A peer behind a NAT that changed its mapping: authenticated ESP arrives from a new
    // address without any UPDATE.
    let mut p = established(2, Link::default());
    let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
    let new: SocketAddr = "203.0.113.8:40000".parse().unwrap();
    p.sim.assign(a, new);
    let now = p.sim.now();
    let mut buf = vec![0u8; 64];
    let Outbound::Send {
        remote, datagram, ..
    } = p
        .sim
        .node_mut(a)
        .encapsulate(now, &b_hit, 17, &mut buf, 16..32)
    else {
        panic!("A has no SA");
    };
    p.sim.send(Datagram {
        from: new,
        to: remote,
        payload: datagram.to_vec(),
    });
    p.settle(Duration::from_millis(200));
    assert_eq!(p.sim.node(b).association(&a_hit).unwrap().remote, new);
}

#[test]
fn announcing_a_victims_address_sends_only_a_few_checks_there() {
    let mut p = established(3, Link::default());
    let (a, b, a_hit) = (p.a, p.b, p.a_hit);
    let victim: SocketAddr = "203.0.113.66:10500".parse().unwrap();
    let old = p.a_addr;
    // A (a valid peer) claims the victim's address; the victim does not answer.
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
    // One check (its retransmissions) and the ACKs of what arrived from there: no data,
    // and no more than the UPDATE retry limit of each.
    let tries = Config::default().update_tries as usize;
    assert!(to_victim.len() <= 2 * tries, "{} packets", to_victim.len());
    assert!(to_victim
        .iter()
        .all(|r| packet_name(&r.datagram.payload) == "UPDATE"));
    // B still talks to A where A really is.
    assert_eq!(p.sim.node(b).association(&a_hit).unwrap().remote, old);
}

#[test]
fn an_update_with_a_bad_signature_moves_nothing_and_checks_nothing() {
    let mut p = established(4, Link::default());
    let (a, b, a_hit) = (p.a, p.b, p.a_hit);
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
    p.sim.assign(a, new);
    let now = p.sim.now();
    p.sim.node_mut(a).set_local_addresses(now, &[new]);
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
    p.sim.unassign(p.a_addr);
    p.sim.assign(a, moved);
    let now = p.sim.now();
    p.sim.node_mut(a).set_local_addresses(now, &[moved]);
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
    p.sim.assign(a, moved);
    let now = p.sim.now();
    p.sim.node_mut(a).set_local_addresses(now, &[moved]);
    p.settle(Duration::from_secs(5));
    assert_eq!(p.sim.node(b).association(&a_hit).unwrap().remote, moved);
}
