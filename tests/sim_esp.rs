//! The data path in the simulator: ESP both ways after a base exchange, packets queued
//! during the exchange, replays and forgeries refused, and rekeying by UPDATE under load
//! and loss.

use hip::{Config, Event, Outbound};
use hipbone::sim::bex::Pair;
use hipbone::sim::Link;
use std::time::Duration;

fn established(seed: u64, config: Config, link: Link) -> Pair {
    let mut p = Pair::new(seed, link, false, config);
    p.connect_a();
    p.run(Duration::from_secs(30)).expect("base exchange");
    p
}

#[test]
fn packets_flow_both_ways_and_are_counted() {
    let mut p = established(1, Config::default(), Link::default());
    let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
    for n in 0..100u32 {
        assert!(p.send_esp(a, b_hit, &n.to_be_bytes().repeat(100)).is_some());
        assert!(p.send_esp(b, a_hit, &[7; 1200]).is_some());
    }
    p.settle(Duration::from_millis(100));
    let ta = p.sim.node(a).traffic(&b_hit).unwrap();
    let tb = p.sim.node(b).traffic(&a_hit).unwrap();
    assert_eq!((ta.tx_packets, tb.rx_packets), (100, 100));
    assert_eq!((tb.tx_packets, ta.rx_packets), (100, 100));
    assert_eq!(tb.rx_bytes, 100 * 400);
    // Traffic from the initiator completes the responder's side (R2-SENT → ESTABLISHED).
    assert_eq!(
        p.sim.node(b).association(&a_hit).unwrap().state,
        hip::AssocState::Established
    );
}

#[test]
fn packets_sent_during_the_exchange_wait_and_then_go() {
    let mut p = Pair::new(
        2,
        Link::default(),
        false,
        Config {
            queue_per_peer: 3,
            ..Config::default()
        },
    );
    let (a, b_hit) = (p.a, p.b_hit);
    let now = p.sim.now();
    let mut buf = vec![0u8; 64];
    assert!(matches!(
        p.sim
            .node_mut(a)
            .encapsulate(now, &b_hit, 17, &mut buf, 16..32),
        Outbound::NoAssociation
    ));
    p.connect_a();
    for _ in 0..3 {
        assert!(matches!(
            p.sim
                .node_mut(a)
                .encapsulate(now, &b_hit, 17, &mut buf, 16..32),
            Outbound::Queued
        ));
    }
    assert!(matches!(
        p.sim
            .node_mut(a)
            .encapsulate(now, &b_hit, 17, &mut buf, 16..32),
        Outbound::Dropped
    ));
    assert_eq!(p.sim.node(a).stats().queue_dropped, 1);
    p.run(Duration::from_secs(10)).unwrap();
    p.settle(Duration::from_millis(100));
    assert_eq!(p.sim.node(p.b).traffic(&p.a_hit).unwrap().rx_packets, 3);
}

#[test]
fn replayed_and_forged_esp_is_dropped_and_counted() {
    let mut p = established(3, Config::default(), Link::default());
    let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
    let esp = p.send_esp(a, b_hit, b"hello").unwrap();
    p.settle(Duration::from_millis(50));
    p.sim.inject(esp.clone());
    // A forgery with a sequence number not yet seen, so that it reaches the ICV check.
    let mut forged = esp.clone();
    forged.payload[7] ^= 0x10;
    p.sim.inject(forged);
    let mut other_spi = esp;
    other_spi.payload[0] ^= 0x40;
    p.sim.inject(other_spi);
    p.settle(Duration::from_millis(50));
    let stats = p.sim.node(b).stats();
    assert_eq!(stats.esp_replayed, 1);
    assert_eq!(stats.esp_auth_failed, 1);
    assert_eq!(stats.esp_unknown_spi, 1);
    assert_eq!(p.sim.node(b).traffic(&a_hit).unwrap().rx_packets, 1);
    let _ = a;
}

#[test]
fn rekeying_by_packet_count_keeps_every_packet() {
    let config = Config {
        rekey_after_packets: 50,
        ..Config::default()
    };
    let mut p = established(4, config, Link::default());
    let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
    for n in 0..1000u32 {
        assert!(p.send_esp(a, b_hit, &n.to_be_bytes()).is_some());
        assert!(p.send_esp(b, a_hit, &n.to_be_bytes()).is_some());
        if n % 10 == 0 {
            p.settle(Duration::from_millis(5));
        }
    }
    p.settle(Duration::from_secs(2));
    let (ta, tb) = (
        p.sim.node(a).traffic(&b_hit).unwrap(),
        p.sim.node(b).traffic(&a_hit).unwrap(),
    );
    assert_eq!((ta.rx_packets, tb.rx_packets), (1000, 1000));
    let ra = p.sim.node(a).association(&b_hit).unwrap().rekeys;
    let rb = p.sim.node(b).association(&a_hit).unwrap().rekeys;
    assert!(ra >= 10 && rb >= 10, "rekeys: A {ra}, B {rb}");
    assert_eq!(
        p.sim.node(b).stats().esp_auth_failed + p.sim.node(a).stats().esp_auth_failed,
        0
    );
    assert!(p
        .events
        .iter()
        .any(|(_, _, e)| matches!(e, Event::Rekeyed { .. })));
    let (ia, ib) = (
        p.sim.node(a).association(&b_hit).unwrap(),
        p.sim.node(b).association(&a_hit).unwrap(),
    );
    let (sa, sb) = (ia.spis.unwrap(), ib.spis.unwrap());
    assert_eq!(
        (sa.0, sa.1),
        (sb.1, sb.0),
        "SPIs agree after the last rekey"
    );
}

#[test]
fn rekeying_survives_loss() {
    let config = Config {
        rekey_after_packets: 40,
        ..Config::default()
    };
    let link = Link {
        loss: 0.1,
        ..Link::default()
    };
    for seed in 0..20 {
        let mut p = established(100 + seed, config.clone(), link);
        let (a, b, a_hit, b_hit) = (p.a, p.b, p.a_hit, p.b_hit);
        for n in 0..400u32 {
            p.send_esp(a, b_hit, &n.to_be_bytes());
            p.send_esp(b, a_hit, &n.to_be_bytes());
            p.settle(Duration::from_millis(10));
        }
        p.settle(Duration::from_secs(10));
        // Some data packets are lost with the link; the rest arrive and keys stay in step.
        let tb = p.sim.node(b).traffic(&a_hit).unwrap();
        assert!(
            tb.rx_packets > 300,
            "seed {seed}: only {} delivered",
            tb.rx_packets
        );
        assert_eq!(p.sim.node(b).stats().esp_auth_failed, 0, "seed {seed}");
        // After the losses, more packets still get through (a few, as the link loses 10 %).
        for _ in 0..5 {
            assert!(p.send_esp(a, b_hit, b"last").is_some());
        }
        p.settle(Duration::from_millis(100));
        let after = p.sim.node(b).traffic(&a_hit).unwrap().rx_packets;
        assert!(
            after > tb.rx_packets,
            "seed {seed}: nothing delivered after the losses"
        );
        // Rekeys went on despite lost UPDATEs, and none is stuck: more traffic, more rekeys.
        let rekeys = |p: &Pair| p.sim.node(p.a).association(&p.b_hit).unwrap().rekeys;
        let before = rekeys(&p);
        assert!(before >= 3, "seed {seed}: {before} rekeys");
        for n in 0..200u32 {
            p.send_esp(a, b_hit, &n.to_be_bytes());
            p.settle(Duration::from_millis(20));
        }
        p.settle(Duration::from_secs(10));
        assert!(
            rekeys(&p) > before,
            "seed {seed}: rekeying stopped at {before}"
        );
    }
}
