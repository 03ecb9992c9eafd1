//! NAT traversal in the simulator (RFC 9028): hosts behind NAT boxes of every kind reach
//! each other through a relay server, and move to a direct path wherever hole punching can
//! work.

use hip::{Config, Host, HostIdentity, PathKind};
use hipbone::sim::{Link, Sim};
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

/// A sends one ESP packet to B; whether B got it.
fn esp_reaches(w: &mut World, from: usize, to: usize) -> bool {
    let to_hit = w.sim.node(to).hit();
    let before = w
        .sim
        .node(to)
        .traffic(&w.sim.node(from).hit())
        .map_or(0, |t| t.rx_packets);
    let now = w.sim.now();
    let mut buf = vec![0u8; 200];
    let payload = hip::esp::ESP_HEADER_LEN..hip::esp::ESP_HEADER_LEN + 100;
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
    run(w, Duration::from_millis(500));
    w.sim
        .node(to)
        .traffic(&w.sim.node(from).hit())
        .map_or(0, |t| t.rx_packets)
        > before
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
