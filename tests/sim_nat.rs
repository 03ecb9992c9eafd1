//! NAT traversal in the simulator (RFC 9028): hosts behind NAT boxes of every kind reach
//! each other through a relay server, and move to a direct path wherever hole punching can
//! work.

use hip::{Config, Host, HostIdentity, PathKind};
use hipbone::sim::nat::{NatBox, Nats};
use hipbone::sim::{Link, Sim};
use std::net::Ipv4Addr;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Node indices in every world.
const A: usize = 0;
const B: usize = 1;
const R: usize = 2;

struct World {
    sim: Sim<Host>,
    r_addr: SocketAddr,
}

fn host(n: u8, config: Config, start: Instant) -> Host {
    Host::new(
        HostIdentity::from_secret([n; 32]),
        config,
        [n + 100; 32],
        start,
    )
}

fn world(seed: u64, a_addr: SocketAddr, b_addr: SocketAddr) -> World {
    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    sim.set_default_link(Link::default());
    let r_addr = addr("203.0.113.1:10500");
    let relay = Config {
        relay_server: true,
        ..Config::default()
    };
    let mut a = host(1, Config::default(), start);
    a.set_local_addresses(start, &[a_addr]);
    let mut b = host(2, Config::default(), start);
    b.set_local_addresses(start, &[b_addr]);
    let mut r = host(3, relay, start);
    r.set_local_addresses(start, &[r_addr]);
    sim.add(a, &[a_addr]);
    sim.add(b, &[b_addr]);
    sim.add(r, &[r_addr]);
    World { sim, r_addr }
}

fn run(w: &mut World, d: Duration) {
    let end = w.sim.now() + d;
    w.sim.run_until(end, |_| false);
    for id in [A, B, R] {
        while w.sim.node_mut(id).poll_event().is_some() {}
    }
}

fn register(w: &mut World, id: usize) {
    let now = w.sim.now();
    let r_hit = w.sim.node(R).hit();
    let own = own_addr(w, id);
    let r_addr = w.r_addr;
    w.sim
        .node_mut(id)
        .register_relay(now, r_hit, own, &[r_addr])
        .unwrap();
    run(w, Duration::from_secs(3));
    assert!(w.sim.node(id).registered_with(&r_hit), "registration");
}

fn own_addr(w: &World, id: usize) -> SocketAddr {
    w.sim.node(id).local_addresses()[0]
}

/// Seals one inner packet of `size` bytes from `from` to `to` and puts it on the wire.
fn send_esp(w: &mut World, from: usize, to: usize, size: usize) {
    let to_hit = w.sim.node(to).hit();
    let now = w.sim.now();
    let mut buf = vec![0u8; size + 200];
    let payload = hip::esp::ESP_HEADER_LEN..hip::esp::ESP_HEADER_LEN + size;
    if let hip::Outbound::Send {
        local,
        remote,
        datagram,
    } = w
        .sim
        .node_mut(from)
        .encapsulate(now, &to_hit, 17, &mut buf, payload)
    {
        let d = hipbone::sim::Datagram {
            from: local,
            to: remote,
            payload: datagram.to_vec(),
        };
        w.sim.send(d);
    }
}

/// `from` sends one ESP packet to `to`; whether `to` got it.
fn esp_reaches(w: &mut World, from: usize, to: usize) -> bool {
    let from_hit = w.sim.node(from).hit();
    let received = |w: &World| {
        w.sim
            .node(to)
            .traffic(&from_hit)
            .map_or(0, |t| t.rx_packets)
    };
    let before = received(w);
    send_esp(w, from, to, 100);
    run(w, Duration::from_millis(500));
    received(w) > before
}

#[test]
fn public_hosts_through_a_relay_then_direct() {
    let (a_addr, b_addr) = (addr("198.51.100.1:10500"), addr("198.51.100.2:10500"));
    let mut w = world(1, a_addr, b_addr);
    register(&mut w, B);
    let now = w.sim.now();
    let b_hit = w.sim.node(B).hit();
    let r_addr = w.r_addr;
    w.sim
        .node_mut(A)
        .connect(now, b_hit, a_addr, &[r_addr])
        .unwrap();
    run(&mut w, Duration::from_secs(2));
    let a_hit = w.sim.node(A).hit();
    let ab = w.sim.node(A).association(&b_hit).unwrap();
    assert_eq!(ab.state, hip::AssocState::Established);
    assert!(esp_reaches(&mut w, A, B));
    assert!(esp_reaches(&mut w, B, A));
    run(&mut w, Duration::from_secs(10));
    let ab = w.sim.node(A).association(&b_hit).unwrap();
    let ba = w.sim.node(B).association(&a_hit).unwrap();
    assert_eq!(ab.path, PathKind::Direct, "{ab:?}");
    assert_eq!(ba.path, PathKind::Direct, "{ba:?}");
    assert_eq!(ab.remote, b_addr);
    assert_eq!(ba.remote, a_addr);
    assert!(esp_reaches(&mut w, A, B));
    assert!(esp_reaches(&mut w, B, A));
}

/// The four kinds of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Public,
    FullCone,
    PortRestricted,
    Symmetric,
}

const KINDS: [Kind; 4] = [
    Kind::Public,
    Kind::FullCone,
    Kind::PortRestricted,
    Kind::Symmetric,
];

/// Where hole punching cannot work (docs/NAT.md §8): a symmetric NAT against a
/// port-restricted or symmetric one.
fn needs_relay(a: Kind, b: Kind) -> bool {
    use Kind::*;
    matches!(
        (a, b),
        (PortRestricted, Symmetric) | (Symmetric, PortRestricted) | (Symmetric, Symmetric)
    )
}

/// A world where A and B sit behind NATs of the kinds given (or have public addresses),
/// both registered with the relay R; returns the world and the NATs.
fn nat_world(
    seed: u64,
    ka: Kind,
    kb: Kind,
    link: Link,
) -> (World, std::rc::Rc<std::cell::RefCell<Nats>>) {
    let mut nats = Nats::new();
    let mut place = |kind: Kind, n: u8| -> SocketAddr {
        let inside = Ipv4Addr::new(10, 0, n, 2);
        let public = Ipv4Addr::new(198, 51, 100, n);
        let nat = match kind {
            Kind::Public => return SocketAddr::from((public, 10500)),
            Kind::FullCone => NatBox::full_cone(public, &[inside]),
            Kind::PortRestricted => NatBox::port_restricted_cone(public, &[inside]),
            Kind::Symmetric => NatBox::symmetric(public, &[inside]),
        };
        nats.add(nat);
        SocketAddr::from((inside, 10500))
    };
    let a_addr = place(ka, 1);
    let b_addr = place(kb, 2);
    let nats = nats.shared();
    let mut w = world(seed, a_addr, b_addr);
    w.sim.set_default_link(link);
    w.sim.set_filter(Nats::filter(&nats));
    (w, nats)
}

/// Registers both, connects A to B through R, lets the checks run; returns A's and B's
/// view of the path.
fn connect_through_relay(w: &mut World) -> (PathKind, PathKind) {
    register(w, A);
    register(w, B);
    let now = w.sim.now();
    let b_hit = w.sim.node(B).hit();
    let a_hit = w.sim.node(A).hit();
    let (a_addr, r_addr) = (own_addr(w, A), w.r_addr);
    w.sim
        .node_mut(A)
        .connect(now, b_hit, a_addr, &[r_addr])
        .unwrap();
    run(w, Duration::from_secs(20));
    let ab = w.sim.node(A).association(&b_hit).expect("A's association");
    let ba = w.sim.node(B).association(&a_hit).expect("B's association");
    assert_eq!(ab.state, hip::AssocState::Established, "{ab:?}");
    (ab.path, ba.path)
}

#[test]
fn every_pair_of_nat_kinds_connects_direct_where_hole_punching_works() {
    let mut table = Vec::new();
    // Jitter reorders the checks, announcements and relayed packets differently per seed.
    let jittery = Link {
        jitter: Duration::from_millis(15),
        ..Link::default()
    };
    for (seed, ka, kb) in (0..4).flat_map(|seed| {
        KINDS
            .iter()
            .flat_map(move |ka| KINDS.iter().map(move |kb| (seed, *ka, *kb)))
    }) {
        {
            let (mut w, _nats) = nat_world(seed, ka, kb, jittery);
            let (pa, pb) = connect_through_relay(&mut w);
            assert!(esp_reaches(&mut w, A, B), "{ka:?}/{kb:?}: A to B");
            assert!(esp_reaches(&mut w, B, A), "{ka:?}/{kb:?}: B to A");
            let relayed = needs_relay(ka, kb);
            let direct = |p: PathKind| p == PathKind::Direct;
            table.push(format!("seed {seed} {ka:?}/{kb:?}: {pa:?} {pb:?}"));
            assert_eq!(
                !direct(pa),
                relayed,
                "seed {seed} {ka:?}/{kb:?}: A's path {pa:?}"
            );
            assert_eq!(
                !direct(pb),
                relayed,
                "seed {seed} {ka:?}/{kb:?}: B's path {pb:?}"
            );
        }
    }
    println!("{}", table.join("\n"));
}

#[test]
fn connects_with_loss_on_the_way() {
    let lossy = Link {
        loss: 0.1,
        ..Link::default()
    };
    for seed in 0..5 {
        for (ka, kb) in [
            (Kind::PortRestricted, Kind::PortRestricted),
            (Kind::Symmetric, Kind::FullCone),
            (Kind::Symmetric, Kind::Symmetric),
        ] {
            let (mut w, _nats) = nat_world(seed, ka, kb, lossy);
            connect_through_relay(&mut w);
            run(&mut w, Duration::from_secs(20));
            // Lossy links lose single packets: one of three tries gets through.
            let ab = (0..3).any(|_| esp_reaches(&mut w, A, B));
            let ba = (0..3).any(|_| esp_reaches(&mut w, B, A));
            assert!(ab && ba, "seed {seed} {ka:?}/{kb:?}");
        }
    }
}

#[test]
fn relay_refuses_hosts_not_registered_with_it() {
    let (mut w, _nats) = nat_world(5, Kind::Symmetric, Kind::Symmetric, Link::default());
    register(&mut w, A);
    // B never registers: the relay has nobody to pass A's I1 to.
    let now = w.sim.now();
    let b_hit = w.sim.node(B).hit();
    let (a_addr, r_addr) = (own_addr(&w, A), w.r_addr);
    w.sim
        .node_mut(A)
        .connect(now, b_hit, a_addr, &[r_addr])
        .unwrap();
    run(&mut w, Duration::from_secs(10));
    assert!(w.sim.node(B).association(&w.sim.node(A).hit()).is_none());
    assert!(w.sim.node(R).stats().dropped > 0);
    assert_eq!(w.sim.node(R).relay_stats().control_relayed, 0);
}

#[test]
fn relay_enforces_its_quotas() {
    let start = Instant::now();
    let (mut w, _nats) = nat_world(6, Kind::Symmetric, Kind::Symmetric, Link::default());
    // A relay that allows 20 kB/s and 40 kB per registration.
    let quota = hip::RelayQuota {
        permissions: 4,
        rate: 20_000,
        bytes: 40_000,
    };
    let relay = Config {
        relay_server: true,
        relay_quota: quota,
        ..Config::default()
    };
    let mut r = host(3, relay, start);
    r.set_local_addresses(start, &[w.r_addr]);
    *w.sim.node_mut(R) = r;
    connect_through_relay(&mut w);
    // 100 packets of 1,200 bytes at once: 120 kB, above both the rate and the budget.
    let a_hit = w.sim.node(A).hit();
    for _ in 0..100 {
        send_esp(&mut w, A, B, 1200);
    }
    run(&mut w, Duration::from_secs(1));
    let delivered = w.sim.node(B).traffic(&a_hit).map_or(0, |t| t.rx_packets);
    let stats = w.sim.node(R).relay_stats();
    assert!(stats.over_quota > 0, "{stats:?}");
    assert!(stats.bytes_relayed <= quota.bytes, "{stats:?}");
    assert!(delivered > 0 && delivered < 40, "{delivered}");
}

#[test]
fn relay_refuses_permissions_beyond_the_quota() {
    let start = Instant::now();
    let (mut w, _nats) = nat_world(7, Kind::Symmetric, Kind::Symmetric, Link::default());
    let relay = Config {
        relay_server: true,
        relay_quota: hip::RelayQuota {
            permissions: 0,
            ..hip::RelayQuota::default()
        },
        ..Config::default()
    };
    let mut r = host(3, relay, start);
    r.set_local_addresses(start, &[w.r_addr]);
    *w.sim.node_mut(R) = r;
    connect_through_relay(&mut w);
    assert!(!esp_reaches(&mut w, A, B));
    assert!(w.sim.node(R).relay_stats().permissions_refused > 0);
}

/// Streams ESP from A to B for `secs` seconds (20 packets a second, B answering each
/// second), rebinding A's NAT after `rebind_at`; returns how many of the last second's
/// packets arrived.
fn stream_across_rebind(
    w: &mut World,
    nats: &std::rc::Rc<std::cell::RefCell<Nats>>,
    secs: u64,
    rebind_at: u64,
) -> u64 {
    let a_hit = w.sim.node(A).hit();
    let received = |w: &World| w.sim.node(B).traffic(&a_hit).map_or(0, |t| t.rx_packets);
    let mut last = 0;
    for s in 0..secs {
        if s == rebind_at {
            nats.borrow_mut().rebind(0);
        }
        let before = received(w);
        for _ in 0..20 {
            send_esp(w, A, B, 500);
            run(w, Duration::from_millis(50));
        }
        send_esp(w, B, A, 100);
        last = received(w).saturating_sub(before);
    }
    last
}

#[test]
fn nat_rebinding_towards_a_public_peer_moves_the_path() {
    let (mut w, nats) = nat_world(8, Kind::PortRestricted, Kind::Public, Link::default());
    connect_through_relay(&mut w);
    let b_hit = w.sim.node(B).hit();
    let a_hit = w.sim.node(A).hit();
    let before = w.sim.node(B).association(&a_hit).unwrap().remote;
    let last = stream_across_rebind(&mut w, &nats, 8, 2);
    let after = w.sim.node(B).association(&a_hit).unwrap();
    assert_ne!(after.remote, before, "B follows A's new public port");
    assert_eq!(after.path, PathKind::Direct);
    assert_eq!(
        w.sim.node(A).association(&b_hit).unwrap().path,
        PathKind::Direct
    );
    assert!(last >= 18, "{last} of 20 packets in the last second");
}

#[test]
fn nat_rebinding_between_two_nats_recovers() {
    let (mut w, nats) = nat_world(
        9,
        Kind::PortRestricted,
        Kind::PortRestricted,
        Link::default(),
    );
    connect_through_relay(&mut w);
    let a_hit = w.sim.node(A).hit();
    assert_eq!(
        w.sim.node(B).association(&a_hit).unwrap().path,
        PathKind::Direct
    );
    let last = stream_across_rebind(&mut w, &nats, 60, 2);
    let info = w.sim.node(B).association(&a_hit).unwrap();
    assert!(
        last >= 18,
        "{last} of 20 packets in the last second; {info:?}"
    );
}

// ---- hostile peers, replays, relay restarts -----------------------------------------

/// Gives node `id` a fresh host with `config` (same identity and address): a restart.
fn restart(w: &mut World, id: usize, config: Config) {
    let now = w.sim.now();
    let own = own_addr(w, id);
    let mut h = host(id as u8 + 1, config, now);
    h.set_local_addresses(now, &[own]);
    *w.sim.node_mut(id) = h;
}

fn hip_of(d: &hipbone::sim::Datagram) -> Option<hip::wire::HipRepr> {
    hip::wire::HipRepr::parse(d.payload.strip_prefix(&[0u8; 4])?).ok()
}

/// An ESP keepalive: a dummy packet, far shorter than any data this file sends.
fn is_keepalive(d: &hipbone::sim::Datagram) -> bool {
    !d.payload.starts_with(&[0; 4]) && d.payload.len() <= 64
}

fn sent_to(w: &World, to: SocketAddr) -> usize {
    w.sim.trace().iter().filter(|r| r.datagram.to == to).count()
}

/// Somebody else's address, where replays come from.
const ELSEWHERE: &str = "203.0.113.66:4444";

/// Sends the first datagram to `to` in the trace that `pick` chooses again, from
/// ELSEWHERE (which it returns).
fn replay_from_elsewhere(
    w: &mut World,
    to: SocketAddr,
    pick: impl Fn(&hipbone::sim::Datagram) -> bool,
) -> SocketAddr {
    let payload = w
        .sim
        .trace()
        .iter()
        .find(|r| r.datagram.to == to && pick(&r.datagram))
        .expect("the packet to replay")
        .datagram
        .payload
        .clone();
    let attacker = addr(ELSEWHERE);
    w.sim.inject(hipbone::sim::Datagram {
        from: attacker,
        to,
        payload,
    });
    attacker
}

#[test]
fn a_replayed_nomination_moves_nothing() {
    let (mut w, _nats) = nat_world(1, Kind::Public, Kind::Public, Link::default());
    connect_through_relay(&mut w);
    let (a_hit, b_addr) = (w.sim.node(A).hit(), own_addr(&w, B));
    let before = w.sim.node(B).association(&a_hit).unwrap().remote;
    // A's nominating check.
    let attacker = replay_from_elsewhere(&mut w, b_addr, |d| {
        hip_of(d).is_some_and(|h| h.param(hip::wire::param_type::NOMINATE).is_some())
    });
    run(&mut w, Duration::from_secs(5));
    assert_eq!(w.sim.node(B).association(&a_hit).unwrap().remote, before);
    assert_eq!(sent_to(&w, attacker), 0, "no answer to a replay");
    assert!(esp_reaches(&mut w, B, A));
}

#[test]
fn a_replayed_keepalive_sends_nothing_elsewhere() {
    let (mut w, _nats) = nat_world(1, Kind::Public, Kind::Public, Link::default());
    connect_through_relay(&mut w);
    run(&mut w, Duration::from_secs(20));
    let (a_addr, b_addr) = (own_addr(&w, A), own_addr(&w, B));
    // A keepalive from B.
    let victim = replay_from_elsewhere(&mut w, a_addr, |d| d.from == b_addr && is_keepalive(d));
    run(&mut w, Duration::from_secs(10));
    assert_eq!(sent_to(&w, victim), 0);
}

/// Sends A's first packet for B through R that `pick` chooses again, from somebody else's address,
/// once the association runs relayed; returns that address after checking that data still
/// flows both ways.
fn replay_through_the_relay(
    pick: impl Fn(&hipbone::sim::Datagram, hip::Hit) -> bool,
) -> (World, SocketAddr) {
    let (mut w, _nats) = nat_world(3, Kind::Symmetric, Kind::Symmetric, Link::default());
    connect_through_relay(&mut w);
    run(&mut w, Duration::from_secs(20));
    let (b_hit, r_addr) = (w.sim.node(B).hit(), w.r_addr);
    let attacker = replay_from_elsewhere(&mut w, r_addr, |d| pick(d, b_hit));
    run(&mut w, Duration::from_millis(300));
    assert!(esp_reaches(&mut w, B, A));
    assert!(esp_reaches(&mut w, A, B));
    (w, attacker)
}

#[test]
fn a_replayed_keepalive_through_the_relay_redirects_nothing() {
    // A's keepalive for B: an ESP dummy packet to R.
    let (w, attacker) = replay_through_the_relay(|d, _| is_keepalive(d));
    assert_eq!(sent_to(&w, attacker), 0, "nothing relayed to the replayer");
}

#[test]
fn a_replayed_i2_through_the_relay_redirects_no_data() {
    // B sends its R2 again (to the replayer, through R), as to any duplicate I2; no ESP.
    let (w, attacker) = replay_through_the_relay(|d, b_hit| {
        hip_of(d)
            .is_some_and(|h| h.receiver_hit == b_hit && h.packet_type == hip::wire::PacketType::I2)
    });
    let esp_to_attacker = w
        .sim
        .trace()
        .iter()
        .filter(|r| r.datagram.to == attacker && !r.datagram.payload.starts_with(&[0; 4]))
        .count();
    assert_eq!(esp_to_attacker, 0, "B's ESP still goes to A");
}

#[test]
fn an_i1_flood_through_the_relay_does_not_starve_a_real_initiator() {
    let (mut w, _nats) = nat_world(2, Kind::Public, Kind::Public, Link::default());
    register(&mut w, B);
    let (b_hit, a_addr, r_addr) = (w.sim.node(B).hit(), own_addr(&w, A), w.r_addr);
    // An I1 for B from a host that is not A, sprayed from many sources.
    let mut x = host(9, Config::default(), w.sim.now());
    x.connect(w.sim.now(), b_hit, a_addr, &[r_addr]).unwrap();
    let i1 = x.poll_transmit().unwrap().payload;
    let now = w.sim.now();
    w.sim
        .node_mut(A)
        .connect(now, b_hit, a_addr, &[r_addr])
        .unwrap();
    for n in 0..200u32 {
        for k in 0..30u32 {
            let from = SocketAddr::from((
                Ipv4Addr::new(203, 0, 113, 100 + (k % 50) as u8),
                2000 + n as u16,
            ));
            w.sim.inject(hipbone::sim::Datagram {
                from,
                to: r_addr,
                payload: i1.clone(),
            });
        }
        run(&mut w, Duration::from_millis(50));
    }
    let ab = w.sim.node(A).association(&b_hit).unwrap();
    assert_eq!(ab.state, hip::AssocState::Established);
}

/// Symmetric NATs on both sides (so the association runs through R), B registered with
/// R for 16 s at a time.
fn relayed_with_short_registrations() -> (World, std::rc::Rc<std::cell::RefCell<Nats>>) {
    let (mut w, nats) = nat_world(4, Kind::Symmetric, Kind::Symmetric, Link::default());
    let short = Config {
        registration_lifetime: 0x60,
        ..Config::default()
    };
    restart(&mut w, B, short);
    connect_through_relay(&mut w);
    (w, nats)
}

#[test]
fn relay_permissions_outlive_registration_renewals() {
    // B's registration lasts 16 s: it renews many times while the association idles
    // past the relay's 5-minute permission lifetime.
    let (mut w, _nats) = relayed_with_short_registrations();
    assert!(esp_reaches(&mut w, A, B));
    run(&mut w, Duration::from_secs(400));
    assert!(esp_reaches(&mut w, A, B));
    assert!(esp_reaches(&mut w, B, A));
}

#[test]
fn relay_permissions_are_sent_again_after_the_relay_restarts() {
    let (mut w, _nats) = relayed_with_short_registrations();
    // Traffic both ways, then quiet while the relay restarts: the association has no
    // reason to fail meanwhile, only its permission is gone.
    assert!(esp_reaches(&mut w, A, B) && esp_reaches(&mut w, B, A));
    // (The last packet went one way: the failover's probe confirms the path first.)
    run(&mut w, Duration::from_secs(10));
    restart(
        &mut w,
        R,
        Config {
            relay_server: true,
            ..Config::default()
        },
    );
    let r_hit = w.sim.node(R).hit();
    let failed = (0..60).any(|_| {
        run(&mut w, Duration::from_secs(1));
        w.sim
            .node(B)
            .association(&r_hit)
            .is_some_and(|a| a.state == hip::AssocState::Failed)
    });
    assert!(failed, "B notices the relay lost its registration");
    // Both register again, as the node does when the association with its relay ends.
    register(&mut w, B);
    register(&mut w, A);
    let delivered = (0..20)
        .filter(|_| esp_reaches(&mut w, A, B) & esp_reaches(&mut w, B, A))
        .count();
    assert!(delivered >= 19, "{delivered} of 20 round trips");
}

#[test]
fn relayed_esp_survives_rekeys() {
    let (mut w, _nats) = nat_world(4, Kind::Symmetric, Kind::Symmetric, Link::default());
    let rekeying = Config {
        rekey_after: Duration::from_secs(20),
        ..Config::default()
    };
    restart(&mut w, B, rekeying);
    connect_through_relay(&mut w);
    let (a_hit, b_hit) = (w.sim.node(A).hit(), w.sim.node(B).hit());
    let rx = |w: &World, id: usize, from: &hip::Hit| {
        w.sim.node(id).traffic(from).map_or(0, |t| t.rx_packets)
    };
    let (b0, a0) = (rx(&w, B, &a_hit), rx(&w, A, &b_hit));
    for _ in 0..60 * 20 {
        send_esp(&mut w, A, B, 200);
        send_esp(&mut w, B, A, 200);
        run(&mut w, Duration::from_millis(50));
    }
    assert!(w.sim.node(B).association(&a_hit).unwrap().rekeys >= 2);
    let (ab, ba) = (rx(&w, B, &a_hit) - b0, rx(&w, A, &b_hit) - a0);
    assert!(
        ab >= 1195 && ba >= 1195,
        "of 1200: A to B {ab}, B to A {ba}"
    );
}

// ---- mode negotiation (RFC 9028 §4.3, §4.4, §4.7) -----------------------------------

/// The parameters of the first packet of `kind` from `from` in the trace.
fn first_packet(w: &World, from: SocketAddr, kind: hip::wire::PacketType) -> hip::wire::HipRepr {
    w.sim
        .trace()
        .iter()
        .filter(|r| r.datagram.from == from)
        .find_map(|r| hip_of(&r.datagram).filter(|h| h.packet_type == kind))
        .expect("packet in the trace")
}

#[test]
fn the_exchange_selects_ice_hip_udp_and_the_larger_pacing() {
    let (mut w, _nats) = nat_world(1, Kind::Public, Kind::Public, Link::default());
    let slow = Config {
        check_pacing: Duration::from_millis(80),
        ..Config::default()
    };
    restart(&mut w, B, slow);
    let (b_hit, a_addr, b_addr) = (w.sim.node(B).hit(), own_addr(&w, A), own_addr(&w, B));
    let now = w.sim.now();
    w.sim
        .node_mut(A)
        .connect(now, b_hit, a_addr, &[b_addr])
        .unwrap();
    run(&mut w, Duration::from_secs(2));
    use hip::wire::{nat_mode, PacketType, Param};
    let r1 = first_packet(&w, b_addr, PacketType::R1);
    assert!(r1
        .params
        .iter()
        .any(|p| matches!(p, Param::NatTraversalMode { modes, .. }
        if *modes == [nat_mode::ICE_HIP_UDP, nat_mode::UDP_ENCAPSULATION])));
    assert!(r1.params.contains(&Param::TransactionPacing(80)));
    let i2 = first_packet(&w, a_addr, PacketType::I2);
    assert!(i2
        .params
        .iter()
        .any(|p| matches!(p, Param::NatTraversalMode { modes, .. }
        if *modes == [nat_mode::ICE_HIP_UDP])));
    assert!(
        i2.params.contains(&Param::TransactionPacing(80)),
        "the larger offer"
    );
    let a_hit = w.sim.node(A).hit();
    for (id, peer) in [(A, b_hit), (B, a_hit)] {
        let info = w.sim.node(id).association(&peer).unwrap();
        assert_eq!(info.nat_mode, Some(nat_mode::ICE_HIP_UDP));
        assert_eq!(info.pacing, Duration::from_millis(80));
    }
}

fn udp_encapsulation_only() -> Config {
    Config {
        nat_modes: vec![hip::wire::nat_mode::UDP_ENCAPSULATION],
        ..Config::default()
    }
}

#[test]
fn plain_udp_encapsulation_runs_no_checks() {
    let (mut w, _nats) = nat_world(1, Kind::Public, Kind::Public, Link::default());
    restart(&mut w, A, udp_encapsulation_only());
    register(&mut w, B);
    let (b_hit, a_addr, b_addr) = (w.sim.node(B).hit(), own_addr(&w, A), own_addr(&w, B));
    let now = w.sim.now();
    w.sim
        .node_mut(A)
        .connect(now, b_hit, a_addr, &[b_addr])
        .unwrap();
    run(&mut w, Duration::from_secs(10));
    let info = w.sim.node(A).association(&b_hit).unwrap();
    assert_eq!(info.nat_mode, Some(hip::wire::nat_mode::UDP_ENCAPSULATION));
    assert_eq!(info.checks, (0, 0), "mode 1: no connectivity checks");
    assert!(esp_reaches(&mut w, A, B) && esp_reaches(&mut w, B, A));
}

#[test]
fn plain_udp_encapsulation_through_a_relay_is_refused() {
    let (mut w, _nats) = nat_world(1, Kind::Public, Kind::Symmetric, Link::default());
    restart(&mut w, A, udp_encapsulation_only());
    register(&mut w, B);
    let (a_hit, b_hit, a_addr, r_addr) = (
        w.sim.node(A).hit(),
        w.sim.node(B).hit(),
        own_addr(&w, A),
        w.r_addr,
    );
    let now = w.sim.now();
    w.sim
        .node_mut(A)
        .connect(now, b_hit, a_addr, &[r_addr])
        .unwrap();
    run(&mut w, Duration::from_secs(5));
    assert!(
        w.sim.node(B).association(&a_hit).is_none(),
        "B refuses the I2"
    );
    let refused = w.sim.trace().iter().any(|r| {
        r.datagram.to == a_addr
            && hip_of(&r.datagram).is_some_and(|h| {
                h.params.iter().any(|p| {
                    matches!(p, hip::wire::Param::Notification(n)
                        if n.kind == hip::wire::NotifyType::NoValidNatTraversalModeParameter)
                })
            })
    });
    assert!(refused, "A is told why (NOTIFY 60)");
}

#[test]
fn an_idle_client_is_followed_through_its_nat_rebinding() {
    let (mut w, nats) = nat_world(5, Kind::Symmetric, Kind::Symmetric, Link::default());
    connect_through_relay(&mut w);
    assert!(esp_reaches(&mut w, A, B) && esp_reaches(&mut w, B, A));
    run(&mut w, Duration::from_secs(10));
    // B's NAT forgets everything while nobody sends; B's next keepalive (an ESP dummy
    // packet, which cannot be replayed) shows the relay where B is now.
    nats.borrow_mut().rebind(1);
    run(&mut w, Duration::from_secs(20));
    let b_hit = w.sim.node(B).hit();
    let registered_at = w.sim.node(R).association(&b_hit).unwrap().remote;
    assert_ne!(
        registered_at,
        SocketAddr::from((Ipv4Addr::new(198, 51, 100, 2), 40000))
    );
    assert!(
        esp_reaches(&mut w, A, B),
        "the relay reaches B at its new port"
    );
    assert!(esp_reaches(&mut w, B, A));
}

/// Two peers start exchanges with B, behind a symmetric NAT and reached through its relay,
/// at the same moment, each with a packet waiting. B's second relay permission must not
/// wait for the ACK of the first: the relay would drop that peer's first ESP, which
/// arrives before.
#[test]
fn two_peers_reach_a_relayed_host_at_once_and_lose_no_first_packet() {
    let start = Instant::now();
    let mut sim = Sim::new(7, start);
    // B is far from its relay and the peers are near it: B's second permission, sent
    // only after the first one's ACK, would come after the second peer's first ESP.
    let far = Link {
        delay: Duration::from_millis(30),
        ..Link::default()
    };
    let near = Link {
        delay: Duration::from_millis(2),
        ..Link::default()
    };
    sim.set_default_link(far);
    let r_addr = addr("203.0.113.1:10500");
    for peer in ["198.51.100.1:10500", "198.51.100.4:10500"] {
        sim.set_link(addr(peer), r_addr, near);
        sim.set_link(r_addr, addr(peer), near);
    }
    let b_inside = addr("10.0.2.2:10500");
    let mut nats = Nats::new();
    nats.add(NatBox::symmetric(
        Ipv4Addr::new(198, 51, 100, 2),
        &[Ipv4Addr::new(10, 0, 2, 2)],
    ));
    let nats = nats.shared();
    sim.set_filter(Nats::filter(&nats));
    let relay = Config {
        relay_server: true,
        ..Config::default()
    };
    let places = [
        (1, addr("198.51.100.1:10500"), Config::default()),
        (2, b_inside, Config::default()),
        (3, r_addr, relay),
        (4, addr("198.51.100.4:10500"), Config::default()),
    ];
    for (n, at, config) in places {
        let mut h = host(n, config, start);
        h.set_local_addresses(start, &[at]);
        sim.add(h, &[at]);
    }
    let mut w = World { sim, r_addr };
    register(&mut w, B);
    let now = w.sim.now();
    for peer in [A, 3] {
        connect_with_a_queued_packet(&mut w, peer, B, now);
    }
    let end = w.sim.now() + Duration::from_secs(5);
    w.sim.run_until(end, |_| false);
    for peer in [A, 3] {
        let hit = w.sim.node(peer).hit();
        let a = w.sim.node(B).association(&hit).expect("B's association");
        assert_eq!(a.traffic.rx_packets, 1, "peer {peer}'s first packet");
    }
}

/// A public host moves while a host behind a filtering NAT has an association with it:
/// the NAT drops the mover's UPDATE from its new address, so it must reach the host
/// through that host's relay, and the association must carry traffic both ways again.
#[test]
fn a_public_peer_that_moves_reaches_hosts_behind_filtering_nats_again() {
    let kinds = [Kind::PortRestricted, Kind::Symmetric, Kind::FullCone];
    for (seed, (kind, a_starts)) in (20..).zip(kinds.iter().flat_map(|k| [(*k, true), (*k, false)]))
    {
        let (mut w, _nats) = nat_world(seed, kind, Kind::Public, Link::default());
        // As in an overlay: only the host behind the NAT has a relay. A reaches B direct,
        // or B reaches A through A's relay.
        register(&mut w, A);
        let (now, a_hit, b_hit, a_addr, b_addr) = (
            w.sim.now(),
            w.sim.node(A).hit(),
            w.sim.node(B).hit(),
            own_addr(&w, A),
            own_addr(&w, B),
        );
        let r_addr = w.r_addr;
        if a_starts {
            w.sim.node_mut(A).connect(now, b_hit, a_addr, &[b_addr])
        } else {
            w.sim.node_mut(B).connect(now, a_hit, b_addr, &[r_addr])
        }
        .unwrap();
        run(&mut w, Duration::from_secs(5));
        assert!(
            esp_reaches(&mut w, A, B),
            "{kind:?}, A started: {a_starts}: A to B before the move"
        );
        assert!(
            esp_reaches(&mut w, B, A),
            "{kind:?}, A started: {a_starts}: B to A before the move"
        );
        let old = own_addr(&w, B);
        let new = addr("198.51.100.102:10500");
        w.sim.unassign(old);
        w.sim.assign(B, new);
        let now = w.sim.now();
        w.sim.node_mut(B).set_local_addresses(now, &[new]);
        run(&mut w, Duration::from_secs(6));
        let ab = w.sim.node(A).association(&b_hit);
        let ba = w.sim.node(B).association(&a_hit);
        assert!(
            ab.as_ref()
                .is_some_and(|a| a.state == hip::AssocState::Established)
                && ba
                    .as_ref()
                    .is_some_and(|a| a.state == hip::AssocState::Established),
            "{kind:?}, A started: {a_starts}; A {ab:?}, B {ba:?}"
        );
        let (ab, ba) = (ab.unwrap(), ba.unwrap());
        assert!(
            esp_reaches(&mut w, B, A),
            "{kind:?}, A started: {a_starts}: B to A after the move; A {ab:?}, B {ba:?}"
        );
        assert!(
            esp_reaches(&mut w, A, B),
            "{kind:?}, A started: {a_starts}: A to B after the move"
        );
    }
}

/// Two hosts behind NATs that need the relay start exchanges with each other at once, a
/// packet queued on each side. The loser of the simultaneous exchange answers the winner's
/// I2 and sends what it had queued: its relay permission must reach the relay first, or
/// the relay drops that packet.
#[test]
fn a_simultaneous_exchange_through_a_relay_delivers_both_queued_packets() {
    for seed in 40..44 {
        let (mut w, _nats) =
            nat_world(seed, Kind::PortRestricted, Kind::Symmetric, Link::default());
        register(&mut w, A);
        register(&mut w, B);
        let now = w.sim.now();
        for (from, to) in [(A, B), (B, A)] {
            connect_with_a_queued_packet(&mut w, from, to, now);
        }
        run(&mut w, Duration::from_secs(3));
        for (from, to) in [(A, B), (B, A)] {
            let hit = w.sim.node(from).hit();
            let got = w.sim.node(to).traffic(&hit).map_or(0, |t| t.rx_packets);
            assert!(
                got >= 1,
                "seed {seed}: {from}'s queued packet did not reach {to}"
            );
        }
    }
}

/// `from` starts an exchange with `to` through the relay, with the packet that made it
/// connect queued until the exchange completes.
fn connect_with_a_queued_packet(w: &mut World, from: usize, to: usize, now: Instant) {
    let (own, hit, r_addr) = (own_addr(w, from), w.sim.node(to).hit(), w.r_addr);
    w.sim
        .node_mut(from)
        .connect(now, hit, own, &[r_addr])
        .unwrap();
    let mut buf = vec![0u8; 300];
    let payload = hip::esp::ESP_HEADER_LEN..hip::esp::ESP_HEADER_LEN + 100;
    let queued = w
        .sim
        .node_mut(from)
        .encapsulate(now, &hit, 17, &mut buf, payload);
    assert!(
        matches!(queued, hip::Outbound::Queued),
        "{from}: not queued"
    );
}
