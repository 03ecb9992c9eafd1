//! Rendezvous in the simulator (RFC 8003, RFC 8004): B registers with a server S; A, who
//! knows only S's address and B's HIT, reaches B through S; after B moves, A still finds B
//! through S.

use hip::{Config, Event, Host, HostIdentity};
use hipbone::sim::{Link, Sim};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct World {
    sim: Sim<Host>,
    a: usize,
    b: usize,
    s: usize,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    s_addr: SocketAddr,
}

fn world(link: Link) -> World {
    world_with(7, link, Config::default())
}

/// A world whose random choices come from `seed` and whose B runs with `b_config`.
fn world_with(seed: u64, link: Link, b_config: Config) -> World {
    let server = Config {
        rendezvous_server: true,
        ..Config::default()
    };
    world_of(seed, link, b_config, server)
}

/// A world whose B and S run with the configurations given.
fn world_of(seed: u64, link: Link, b_config: Config, server: Config) -> World {
    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    sim.set_default_link(link);
    let host = |n: u8, config: Config| {
        Host::new(
            HostIdentity::from_secret([n; 32]),
            config,
            [n + 100; 32],
            start,
        )
    };
    let (a_addr, b_addr, s_addr): (SocketAddr, SocketAddr, SocketAddr) = (
        "198.51.100.1:10500".parse().unwrap(),
        "198.51.100.2:10500".parse().unwrap(),
        "203.0.113.1:10500".parse().unwrap(),
    );
    let a = sim.add(host(1, Config::default()), &[a_addr]);
    let b = sim.add(host(2, b_config), &[b_addr]);
    let s = sim.add(host(3, server), &[s_addr]);
    World {
        sim,
        a,
        b,
        s,
        a_addr,
        b_addr,
        s_addr,
    }
}

fn run(w: &mut World, d: Duration) -> Vec<(usize, Event)> {
    let end = w.sim.now() + d;
    w.sim.run_until(end, |_| false);
    let mut events = Vec::new();
    for id in [w.a, w.b, w.s] {
        while let Some(e) = w.sim.node_mut(id).poll_event() {
            events.push((id, e));
        }
    }
    events
}

fn register(w: &mut World) {
    let now = w.sim.now();
    let s_hit = w.sim.node(w.s).hit();
    let (b_addr, s_addr) = (w.b_addr, w.s_addr);
    w.sim
        .node_mut(w.b)
        .register(now, s_hit, b_addr, &[s_addr])
        .unwrap();
    // Until the grant, or 10 s with losses.
    let end = w.sim.now() + Duration::from_secs(10);
    let b = w.b;
    w.sim
        .run_until(end, |sim| sim.node(b).registered_with(&s_hit));
    assert!(w.sim.node(w.b).registered_with(&s_hit));
    assert!(run(w, Duration::ZERO)
        .iter()
        .any(|(n, e)| *n == w.b && matches!(e, Event::Registered { .. })));
}

/// A connects to B's HIT, knowing only the server's address, and the world runs for `d`.
fn connect_through_server(w: &mut World, d: Duration) {
    let b_hit = w.sim.node(w.b).hit();
    let now = w.sim.now();
    let (a, a_addr, s_addr) = (w.a, w.a_addr, w.s_addr);
    w.sim
        .node_mut(a)
        .connect(now, b_hit, a_addr, &[s_addr])
        .unwrap();
    run(w, d);
}

#[test]
fn a_host_known_only_by_its_rendezvous_server_is_reached_through_it() {
    let mut w = world(Link::default());
    register(&mut w);
    let b_hit = w.sim.node(w.b).hit();
    connect_through_server(&mut w, Duration::from_secs(2));
    let info = w.sim.node(w.a).association(&b_hit).unwrap();
    assert_eq!(info.state, hip::AssocState::Established);
    // The exchange went on directly: A talks to B at B's own address.
    assert_eq!(info.remote, w.b_addr);
    assert_eq!(w.sim.node(w.s).stats().relayed, 1);
}

#[test]
fn a_server_that_does_not_serve_refuses_and_relays_nothing() {
    let mut w = world(Link::default());
    let now = w.sim.now();
    let a_hit = w.sim.node(w.a).hit();
    let (b_addr, a_addr) = (w.b_addr, w.a_addr);
    // A does not serve rendezvous; B's registration with it is not granted.
    w.sim
        .node_mut(w.b)
        .register(now, a_hit, b_addr, &[a_addr])
        .unwrap();
    run(&mut w, Duration::from_secs(2));
    assert!(!w.sim.node(w.b).registered_with(&a_hit));
    assert_eq!(w.sim.node(w.a).rendezvous_clients().count(), 0);
}

#[test]
fn a_relayed_i1_with_a_forged_rvs_hmac_is_refused() {
    let mut w = world(Link::default());
    register(&mut w);
    let b_hit = w.sim.node(w.b).hit();
    // Every packet S sends to B has its last byte (in RVS_HMAC, or padding) flipped.
    let (s_addr, b_addr) = (w.s_addr, w.b_addr);
    w.sim
        .set_filter(Box::new(move |_, d: &hipbone::sim::Datagram| {
            if d.from == s_addr
                && d.to == b_addr
                && hipbone::sim::bex::packet_name(&d.payload) == "I1"
            {
                let mut forged = d.clone();
                let n = forged.payload.len();
                // RVS_HMAC is the last parameter: its 32 bytes end 4 bytes before the end.
                forged.payload[n - 5] ^= 1;
                return hipbone::sim::Verdict::Replace(vec![forged]);
            }
            hipbone::sim::Verdict::Pass
        }));
    connect_through_server(&mut w, Duration::from_secs(3));
    assert!(
        w.sim.node(w.a).association(&b_hit).map(|i| i.state) != Some(hip::AssocState::Established)
    );
    assert_eq!(w.sim.node(w.b).stats().last_drop, Some(hip::Error::BadMac));
}

#[test]
fn after_b_moves_a_still_finds_it_through_the_server() {
    let mut w = world(Link::default());
    register(&mut w);
    let b = w.b;
    let moved: SocketAddr = "203.0.113.50:10500".parse().unwrap();
    w.sim.unassign(w.b_addr);
    w.sim.assign(b, moved);
    let now = w.sim.now();
    w.sim.node_mut(b).set_local_addresses(now, &[moved]);
    run(&mut w, Duration::from_secs(2));
    let b_hit = w.sim.node(b).hit();
    assert_eq!(
        w.sim.node(w.s).association(&b_hit).unwrap().remote,
        moved,
        "S did not follow B"
    );
    connect_through_server(&mut w, Duration::from_secs(2));
    let info = w.sim.node(w.a).association(&b_hit).unwrap();
    assert_eq!(info.state, hip::AssocState::Established);
    assert_eq!(info.remote, moved);
}

#[test]
fn when_both_ends_move_at_once_the_server_brings_them_together() {
    both_move_at_once(world(Link::default()));
}

#[test]
fn when_both_ends_move_at_once_with_loss_the_server_still_brings_them_together() {
    let link = Link {
        loss: 0.1,
        ..Link::default()
    };
    for seed in 0..10 {
        both_move_at_once(world_with(300 + seed, link, Config::default()));
    }
}

fn both_move_at_once(mut w: World) {
    register(&mut w);
    let (a, b) = (w.a, w.b);
    let (a_hit, b_hit) = (w.sim.node(a).hit(), w.sim.node(b).hit());
    let now = w.sim.now();
    let (a_addr, s_addr) = (w.a_addr, w.s_addr);
    w.sim
        .node_mut(a)
        .connect(now, b_hit, a_addr, &[s_addr])
        .unwrap();
    run(&mut w, Duration::from_secs(10));
    assert_eq!(
        w.sim.node(a).association(&b_hit).unwrap().state,
        hip::AssocState::Established
    );
    // Both move at the same moment: each one's announcement goes to the other's old address.
    let a_new: SocketAddr = "198.51.100.77:10500".parse().unwrap();
    let b_new: SocketAddr = "203.0.113.77:10500".parse().unwrap();
    w.sim.unassign(w.a_addr);
    w.sim.unassign(w.b_addr);
    w.sim.assign(a, a_new);
    w.sim.assign(b, b_new);
    let now = w.sim.now();
    w.sim.node_mut(a).set_local_addresses(now, &[a_new]);
    w.sim.node_mut(b).set_local_addresses(now, &[b_new]);
    run(&mut w, Duration::from_secs(20));
    assert_eq!(w.sim.node(a).association(&b_hit).unwrap().remote, b_new);
    assert_eq!(w.sim.node(b).association(&a_hit).unwrap().remote, a_new);
    assert!(
        w.sim.node(w.s).stats().relayed >= 2,
        "the UPDATE went through the server"
    );
}

#[test]
fn a_registration_is_renewed_by_update_and_ends_when_it_is_not() {
    // B asks for 16 s (RFC 8003 lifetime 0x60), the server's minimum.
    let b_config = Config {
        registration_lifetime: 0x60,
        ..Config::default()
    };
    assert_eq!(hip::registration_lifetime(0x60), Duration::from_secs(16));
    let mut w = world_with(7, Link::default(), b_config);
    register(&mut w);
    let (b_hit, s_hit) = (w.sim.node(w.b).hit(), w.sim.node(w.s).hit());
    let start = w.sim.trace().len();
    run(&mut w, Duration::from_secs(60));
    // Renewed every 12.8 s (four fifths of 16 s), each by an UPDATE the server ACKs.
    let (b_addr, s_addr) = (w.b_addr, w.s_addr);
    let renewals = w.sim.trace()[start..]
        .iter()
        .filter(|r| {
            r.datagram.from == b_addr
                && r.datagram.to == s_addr
                && hipbone::sim::bex::packet_name(&r.datagram.payload) == "UPDATE"
        })
        .count();
    assert!((4..=5).contains(&renewals), "{renewals} renewals in 60 s");
    assert!(w.sim.node(w.b).registered_with(&s_hit));
    assert!(w.sim.node(w.s).rendezvous_clients().any(|c| *c == b_hit));
    // A minute on, B is still reached through the server.
    connect_through_server(&mut w, Duration::from_secs(2));
    assert_eq!(
        w.sim.node(w.a).association(&b_hit).unwrap().state,
        hip::AssocState::Established
    );
    // B goes away without a word: the server forgets it once its lifetime is over, and
    // relays nothing more for it.
    w.sim.unassign(b_addr);
    run(&mut w, Duration::from_secs(20));
    assert_eq!(w.sim.node(w.s).rendezvous_clients().count(), 0);
    let relayed = w.sim.node(w.s).stats().relayed;
    // A closes its association with B, then looks for B again through the server.
    let now = w.sim.now();
    w.sim.node_mut(w.a).close(now, &b_hit).unwrap();
    run(&mut w, Duration::from_secs(40));
    connect_through_server(&mut w, Duration::from_secs(2));
    assert_eq!(w.sim.node(w.s).stats().relayed, relayed);
}

/// A host with an association up (an overlay link) asks for the relays in an UPDATE: a
/// server that relays grants them, one that does not refuses, and the host hears which.
#[test]
fn a_registration_rides_an_update_over_an_association_already_up() {
    for serves in [true, false] {
        let server = Config {
            relay_server: serves,
            ..Config::default()
        };
        let mut w = world_of(7, Link::default(), Config::default(), server);
        let (b, s_hit) = (w.b, w.sim.node(w.s).hit());
        let (b_addr, s_addr) = (w.b_addr, w.s_addr);
        let now = w.sim.now();
        w.sim
            .node_mut(b)
            .connect(now, s_hit, b_addr, &[s_addr])
            .unwrap();
        run(&mut w, Duration::from_secs(2));
        assert_eq!(
            w.sim.node(b).association(&s_hit).map(|a| a.state),
            Some(hip::AssocState::Established)
        );
        assert!(!w.sim.node(b).registered_with(&s_hit));
        let now = w.sim.now();
        w.sim
            .node_mut(b)
            .register_relay(now, s_hit, b_addr, &[s_addr])
            .unwrap();
        let events = run(&mut w, Duration::from_secs(2));
        let heard = |want: fn(&Event) -> bool| events.iter().any(|(n, e)| *n == b && want(e));
        assert_eq!(w.sim.node(b).registered_with(&s_hit), serves);
        assert_eq!(heard(|e| matches!(e, Event::Registered { .. })), serves);
        assert_eq!(
            heard(|e| matches!(e, Event::RegistrationRefused { .. })),
            !serves
        );
        // Still one association: the request did not start another exchange.
        assert_eq!(w.sim.node(w.s).stats().i2_accepted, 1);
    }
}

/// A client with nothing to send hears that its server died: it renews its registration
/// every `registration_check` (its NAT keepalives expect no answer), and the renewal
/// unanswered fails the association. Without the check it would not know for 46 minutes.
#[test]
fn an_idle_client_notices_within_minutes_that_its_server_died() {
    for (check, noticed) in [(Duration::from_secs(120), true), (Duration::ZERO, false)] {
        let b_config = Config {
            registration_check: check,
            ..Config::default()
        };
        let mut w = world_with(7, Link::default(), b_config);
        register(&mut w);
        let s_hit = w.sim.node(w.s).hit();
        run(&mut w, Duration::from_secs(10));
        let s = w.s;
        w.sim.crash(s);
        let events = run(&mut w, Duration::from_secs(200));
        let failed = events
            .iter()
            .any(|(id, e)| *id == w.b && matches!(e, Event::Failed { peer, .. } if *peer == s_hit));
        assert_eq!(failed, noticed, "check every {check:?}");
    }
}

#[test]
fn an_overlay_neighbour_relays_an_i1_without_a_registration() {
    // HIP BONE: B and S have an association (overlay neighbours), no registration. A knows
    // only S's address; S relays A's I1 to B because it has an association with B.
    for relay in [true, false] {
        let overlay = Config {
            overlay_relay: relay,
            ..Config::default()
        };
        let mut w = world_of(7, Link::default(), overlay.clone(), overlay);
        let (b, s) = (w.b, w.s);
        let (s_hit, b_hit) = (w.sim.node(s).hit(), w.sim.node(b).hit());
        let now = w.sim.now();
        let (b_addr, s_addr) = (w.b_addr, w.s_addr);
        w.sim
            .node_mut(b)
            .connect(now, s_hit, b_addr, &[s_addr])
            .unwrap();
        run(&mut w, Duration::from_secs(2));
        assert!(!w.sim.node(b).registered_with(&s_hit));
        connect_through_server(&mut w, Duration::from_secs(5));
        let state = w.sim.node(w.a).association(&b_hit).map(|a| a.state);
        if relay {
            assert_eq!(state, Some(hip::AssocState::Established));
        } else {
            assert_ne!(state, Some(hip::AssocState::Established));
        }
    }
}

#[test]
fn an_i1_that_brings_its_own_from_is_not_relayed() {
    // Anyone could otherwise aim the client's R1 at a victim: the relay's RVS_HMAC would
    // vouch for a FROM it did not write.
    let mut w = world(Link::default());
    register(&mut w);
    let b_hit = w.sim.node(w.b).hit();
    let victim: SocketAddr = "203.0.113.99:10500".parse().unwrap();
    let (a_addr, s_addr) = (w.a_addr, w.s_addr);
    // A real I1 from A to B, with a FROM naming the victim added.
    let now = w.sim.now();
    w.sim
        .node_mut(w.a)
        .connect(now, b_hit, a_addr, &[s_addr])
        .unwrap();
    let i1 = w.sim.node_mut(w.a).poll_transmit().unwrap();
    // After the 4-byte non-ESP marker of HIP over UDP.
    let mut repr = hip::wire::HipRepr::parse(&i1.payload[4..]).unwrap();
    let mapped = match victim.ip() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    };
    repr.params.push(hip::wire::Param::From(mapped));
    let mut payload = vec![0u8; 4];
    payload.extend(repr.to_bytes());
    w.sim.inject(hipbone::sim::Datagram {
        from: a_addr,
        to: s_addr,
        payload,
    });
    run(&mut w, Duration::from_secs(2));
    // (A's own I1, retransmitted without the extra FROM, is relayed as usual.)
    assert!(w.sim.trace().iter().all(|r| r.datagram.to != victim));
}
