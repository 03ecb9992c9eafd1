//! Whole nodes in the simulator: [`crate::node::Node`]s — HIP host, overlay, the overlay's
//! links in their userspace TCP stacks inside ESP — on the virtual wire of [`super::Sim`],
//! exactly as the daemon runs them, minus sockets, TUN and clock. `hipbone sim nodes` joins
//! N of them through one bootstrap: every overlay link is a TCP connection inside a HIP
//! association, and every link to a node the joiner had no address for starts with an I1
//! relayed by the neighbour that named it (HIP BONE).
//!
//! Inner packets for a TUN device (none in this scenario) are counted and dropped.

use super::nat::{NatBox, Nats};
use super::{Endpoint, Sim};
use crate::config::Config;
use crate::node::{Node, Received};
use hip::{Hit, HostIdentity};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

impl Endpoint for Node {
    fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    ) {
        let mut buf = payload.to_vec();
        if let Received::Forward { to } = Node::handle_datagram(self, now, local, remote, &mut buf)
        {
            self.host.queue_forward(local, to, payload);
        }
        // The node runs what the datagram made due (its events, the overlay).
        Node::handle_timeout(self, now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Node::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self) -> Option<hip::Transmit> {
        Node::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Node::poll_timeout(self)
    }
    fn check(&self) {
        assert!(
            self.host.timers_agree(),
            "the timer queue disagrees with the associations"
        );
    }
}

/// Arguments of `hipbone sim nodes`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodesArgs {
    /// Whole nodes, the bootstrap included.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Virtual time between two joins, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub spacing_ms: u64,
    /// Virtual time to wait for the ring after the last join, in seconds.
    #[arg(long, default_value_t = 300)]
    pub settle_s: u64,
    /// Seed of every random choice in the run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Percent of the nodes behind NATs of their own (full cone, port-restricted and
    /// symmetric in turn; they join after the public ones); the bootstrap serves as relay.
    /// With NATs every node has an IPv4 address.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=99))]
    pub behind_nat: u8,
    /// After the ring settled, this many rounds in which every node sends one packet to a
    /// member it has no association with yet, by HIT alone; prints how many arrived.
    #[arg(long, default_value_t = 0)]
    pub reach: usize,
    /// With `--reach`: afterwards this many percent of the members with a public address
    /// (the bootstrap aside) move to a new address, and the rounds run again, every node
    /// sending to a moved member it has no association with.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub moved: u8,
}

/// The simulated address of node `i`.
pub fn address(i: usize) -> SocketAddr {
    let ip = Ipv6Addr::new(0x2001, 0xdb8, 0x5, 0, 0, 0, (i >> 16) as u16, i as u16 + 1);
    SocketAddr::new(ip.into(), crate::config::DEFAULT_PORT)
}

/// The configuration of a node of overlay `name` whose bootstrap is `bootstrap` at its
/// address, as a configuration file would say it.
pub fn config(name: &str, bootstrap: Hit) -> Config {
    let text = format!(
        "[interface]\nidentity = \"/nonexistent/sim.key\"\n\n[overlay]\nname = \"{name}\"\n\n\
         [[overlay.bootstrap]]\nhit = \"{bootstrap}\"\nlocators = [\"{}\"]\n",
        address(0)
    );
    Config::parse(&text, "simulated node").expect("the simulated configuration parses")
}

/// A whole node with identity `identity`, at `address(i)`, added to `sim`.
pub fn add_node(sim: &mut Sim<Node>, i: usize, identity: HostIdentity, config: &Config) -> usize {
    add_node_at(sim, i, address(i), identity, config)
}

/// A whole node with identity `identity` at `addr` (behind a NAT: its inside address),
/// added to `sim`; `i` seeds its randomness.
pub fn add_node_at(
    sim: &mut Sim<Node>,
    i: usize,
    addr: SocketAddr,
    identity: HostIdentity,
    config: &Config,
) -> usize {
    let now = sim.now();
    let seed = |n: u64| {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&(i as u64).to_be_bytes());
        s[8..16].copy_from_slice(&n.to_be_bytes());
        s
    };
    let mut node = Node::from_config(config, identity, [seed(1), seed(2)], 0, now)
        .expect("a node of the simulated configuration");
    node.set_local_addresses(now, &[addr]);
    node.start(now);
    sim.add(node, &[addr])
}

/// Node `from` sends one 8-byte UDP payload to `to` through the node model, as a packet
/// from its TUN device would go (sealed, queued, or held for a lookup).
pub fn send_udp(sim: &mut Sim<Node>, from: usize, to: Hit) {
    use hip::esp::{ESP_HEADER_LEN, ESP_TAIL_MAX, PROTO_UDP};
    let now = sim.now();
    let mut buf = vec![0u8; ESP_HEADER_LEN + 8 + ESP_TAIL_MAX];
    let payload = ESP_HEADER_LEN..ESP_HEADER_LEN + 8;
    if let hip::Outbound::Send {
        local,
        remote,
        datagram,
    } = sim
        .node_mut(from)
        .encapsulate(now, &to, PROTO_UDP, &mut buf, payload)
    {
        let d = super::Datagram {
            from: local,
            to: remote,
            payload: datagram.to_vec(),
        };
        sim.send(d);
    }
}

/// The simulated port of every node.
const PORT: u16 = 10500;

/// The public IPv4 address of node `i` in a world with NATs (198.18.0.0/15, the benchmarking
/// range: these addresses exist only in the simulator).
pub fn public_v4(i: usize) -> SocketAddr {
    let i = i + 1;
    SocketAddr::from((Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8), PORT))
}

/// The configuration of a member of the overlay whose bootstraps are `bootstraps`, the
/// i-th being node i at `public_v4(i)`; `relay`: serves as relay server.
pub fn nat_config(bootstraps: &[Hit], relay: bool) -> Config {
    let nat = if relay { "\n[nat]\nrelay = true\n" } else { "" };
    let mut text = format!(
        "[interface]\nidentity = \"/nonexistent/sim.key\"\n{nat}\n[overlay]\nname = \"nat.hipbone.example\"\n"
    );
    for (i, hit) in bootstraps.iter().enumerate() {
        text.push_str(&format!(
            "\n[[overlay.bootstrap]]\nhit = \"{hit}\"\nlocators = [\"{}\"]\n",
            public_v4(i)
        ));
    }
    Config::parse(&text, "simulated node").expect("the simulated configuration parses")
}

/// `publics` nodes with public addresses (node 0 the bootstrap, serving as relay), then
/// `behind` nodes each behind a NAT of its own — full cone, port-restricted and symmetric
/// in turn — joining `spacing` apart through the bootstrap. Returns the simulator and the
/// indices of the nodes behind NATs.
pub fn nat_world(
    seed: u64,
    publics: usize,
    behind: usize,
    spacing: Duration,
) -> (Sim<Node>, Vec<usize>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut sim: Sim<Node> = Sim::new(rng.next_u64(), Instant::now());
    let inside = |k: usize| Ipv4Addr::new(10, (k >> 8) as u8, k as u8, 2);
    let mut nats = Nats::new();
    for k in 0..behind {
        let outside = Ipv4Addr::new(198, 19, ((k + 1) >> 8) as u8, (k + 1) as u8);
        nats.add(match k % 3 {
            0 => NatBox::full_cone(outside, &[inside(k)]),
            1 => NatBox::port_restricted_cone(outside, &[inside(k)]),
            _ => NatBox::symmetric(outside, &[inside(k)]),
        });
    }
    sim.set_filter(Nats::filter(&nats.shared()));
    let b = identity(&mut rng);
    let (relaying, plain) = (nat_config(&[b.hit()], true), nat_config(&[b.hit()], false));
    add_node_at(&mut sim, 0, public_v4(0), b, &relaying);
    let mut natted = Vec::new();
    for i in 1..publics + behind {
        let at = sim.now() + spacing;
        sim.run_until(at, |_| false);
        if i < publics {
            add_node_at(&mut sim, i, public_v4(i), identity(&mut rng), &plain);
        } else {
            let addr = SocketAddr::from((inside(i - publics), PORT));
            natted.push(add_node_at(&mut sim, i, addr, identity(&mut rng), &plain));
        }
    }
    (sim, natted)
}

/// Packets node `to` got from node `from` over their association.
pub fn received(sim: &Sim<Node>, from: usize, to: usize) -> u64 {
    let from_hit = sim.node(from).hit();
    sim.node(to)
        .host
        .association(&from_hit)
        .map_or(0, |a| a.traffic.rx_packets)
}

/// Whether node `to` got a packet from node `from` over their association.
pub fn arrived(sim: &Sim<Node>, from: usize, to: usize) -> bool {
    received(sim, from, to) > 0
}

/// Node `i` leaves its address for `new`, as netlink would tell its node (what the node
/// logs then carries its index).
pub fn move_node(sim: &mut Sim<Node>, i: usize, new: SocketAddr) {
    if let Some(&old) = sim.node(i).host.local_addresses().first() {
        sim.unassign(old);
    }
    sim.assign(i, new);
    let now = sim.now();
    let _node = sim.span(i).entered();
    sim.node_mut(i).set_local_addresses(now, &[new]);
}

/// Runs until node `id`'s overlay has an answer to a request (30 s of virtual time at
/// most), and returns it.
pub fn answer(sim: &mut Sim<Node>, id: usize) -> Option<crate::node::overlay::Answer> {
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

/// Identities drawn from `rng`.
pub fn identity(rng: &mut ChaCha20Rng) -> HostIdentity {
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    HostIdentity::from_secret(secret)
}

/// How many nodes are members of the ring (joined).
pub fn joined(sim: &Sim<Node>) -> usize {
    (0..sim.len())
        .filter(|&i| {
            sim.node(i)
                .overlay
                .as_ref()
                .is_some_and(|o| o.node.is_joined())
        })
        .count()
}

pub fn run(args: &NodesArgs) -> anyhow::Result<()> {
    if args.nodes < 2 {
        anyhow::bail!("--nodes must be at least 2");
    }
    let wall = Instant::now();
    let spacing = Duration::from_millis(args.spacing_ms);
    let (mut sim, natted) = if args.behind_nat > 0 {
        let behind = args.nodes * usize::from(args.behind_nat) / 100;
        nat_world(args.seed, args.nodes - behind, behind, spacing)
    } else {
        let mut rng = ChaCha20Rng::seed_from_u64(args.seed);
        let mut sim: Sim<Node> = Sim::new(rng.next_u64(), Instant::now());
        let bootstrap = identity(&mut rng);
        let config = config("sim.hipbone.test", bootstrap.hit());
        add_node(&mut sim, 0, bootstrap, &config);
        for i in 1..args.nodes {
            let at = sim.now() + spacing;
            sim.run_until(at, |_| false);
            let id = identity(&mut rng);
            add_node(&mut sim, i, id, &config);
        }
        (sim, Vec::new())
    };
    let joins_done = sim.elapsed();
    let end = sim.now() + Duration::from_secs(args.settle_s);
    let n = args.nodes;
    sim.run_until(end, |sim| joined(sim) == n);
    let members = joined(&sim);
    let associations: usize = (0..n)
        .map(|i| sim.node(i).host.associations().count())
        .sum();
    let links: usize = (0..n)
        .map(|i| {
            sim.node(i)
                .overlay
                .as_ref()
                .map_or(0, |o| o.net.links().count())
        })
        .sum();
    // Every overlay link runs inside an established association with its peer.
    let outside: usize = (0..n)
        .map(|i| {
            let node = sim.node(i);
            node.overlay.as_ref().map_or(0, |o| {
                o.net
                    .links()
                    .filter(|peer| {
                        node.host
                            .association(peer)
                            .is_none_or(|a| a.state != hip::AssocState::Established)
                    })
                    .count()
            })
        })
        .sum();
    println!(
        "nodes {n}: {members} joined the ring ({} not), {} s of virtual time ({} s of joins)",
        n - members,
        sim.elapsed().as_secs(),
        joins_done.as_secs()
    );
    println!(
        "associations {associations} ({:.1} per node), overlay links {links} ({:.1} per node), \
         {outside} of them outside an established association",
        associations as f64 / n as f64,
        links as f64 / n as f64
    );
    let b = sim.node(0);
    println!(
        "bootstrap: {} associations, {} links",
        b.host.associations().count(),
        b.overlay.as_ref().map_or(0, |o| o.net.links().count())
    );
    println!(
        "wall {:.1} s, peak memory (VmHWM) {:.0} MiB ({:.0} KiB per node)",
        wall.elapsed().as_secs_f64(),
        super::overlay::peak_rss_kib() as f64 / 1024.0,
        super::overlay::peak_rss_kib() as f64 / n as f64
    );
    if args.reach > 0 {
        reach(&mut sim, args, &natted, None);
        if args.moved > 0 {
            let moved = move_members(&mut sim, args, &natted);
            println!("{} members moved to a new address", moved.len());
            reach(&mut sim, args, &natted, Some(&moved));
        }
    }
    if outside > 0 {
        anyhow::bail!("{outside} overlay links outside an established association");
    }
    if members < n {
        anyhow::bail!("{} of {n} nodes did not join", n - members);
    }
    Ok(())
}

/// `--reach`: 90 s after the ring settled, rounds in which every node sends one packet, by
/// HIT alone, to a member it has no association with (chosen at random), and the packets
/// that arrived within the round.
fn reach(sim: &mut Sim<Node>, args: &NodesArgs, natted: &[usize], moved: Option<&[usize]>) {
    const ROUND: Duration = Duration::from_secs(10);
    let n = args.nodes;
    // Records are published as nodes join and copied as the ring settles; the first
    // refresh of each comes a minute after its join.
    let end = sim.now() + Duration::from_secs(90);
    sim.run_until(end, |_| false);
    let mut rng = ChaCha20Rng::seed_from_u64(args.seed ^ 0x5eed ^ u64::from(moved.is_some()));
    let pick = |rng: &mut ChaCha20Rng| match moved {
        Some(m) => m[(rng.next_u64() % m.len() as u64) as usize],
        None => (rng.next_u64() % n as u64) as usize,
    };
    let to_what = if moved.is_some() { " (moved)" } else { "" };
    let behind = |i: usize| natted.contains(&i);
    // Attempted and arrived, by (sender behind a NAT, target behind a NAT).
    let mut tally = [[(0usize, 0usize); 2]; 2];
    let mut why = std::collections::BTreeMap::new();
    let mut found = std::collections::BTreeMap::new();
    // Time from sending to arrival, in steps of `STEP`; paths of those that arrived;
    // overlay messages (every hop) and packets sent.
    const STEP: Duration = Duration::from_millis(10);
    let mut first_packet: Vec<Duration> = Vec::new();
    let (mut direct, mut overlay_messages, mut sent) = (0usize, 0u64, 0usize);
    let messages = |sim: &Sim<Node>| -> u64 {
        (0..sim.len())
            .filter_map(|i| sim.node(i).overlay.as_ref())
            .map(|o| o.node.stats().sent_messages)
            .sum()
    };
    for _ in 0..args.reach {
        let mut pairs = Vec::new();
        for from in 0..n {
            for _ in 0..8 {
                let to = pick(&mut rng);
                let target = sim.node(to).hit();
                if to != from && sim.node(from).host.association(&target).is_none() {
                    pairs.push((from, to));
                    break;
                }
            }
        }
        let before = messages(sim);
        for &(from, to) in &pairs {
            let target = sim.node(to).hit();
            send_udp(sim, from, target);
        }
        let start = sim.now();
        let mut waiting = pairs.clone();
        while sim.now() < start + ROUND {
            let step = sim.now() + STEP;
            sim.run_until(step, |_| false);
            waiting.retain(|&(from, to)| {
                let there = arrived(sim, from, to);
                if there {
                    first_packet.push(sim.now() - start);
                }
                !there
            });
        }
        overlay_messages += messages(sim) - before;
        sent += pairs.len();
        for &(from, to) in &pairs {
            let t = &mut tally[usize::from(behind(from))][usize::from(behind(to))];
            t.0 += 1;
            if arrived(sim, from, to) {
                t.1 += 1;
                let target = sim.node(to).hit();
                let path = sim.node(from).host.association(&target).map(|a| a.path);
                direct += usize::from(path == Some(hip::PathKind::Direct));
                let how = sim.node(from).found(&target);
                let how = how.map_or("an exchange the target started", |f| f.describe());
                *found.entry(how).or_insert(0) += 1;
            } else {
                let reason = failure(sim, from, to);
                tracing::info!(from, to, reason = %reason, "reach: the packet did not arrive");
                *why.entry(reason).or_insert(0) += 1;
            }
        }
    }
    let name = |b: bool| if b { "behind a NAT" } else { "public" };
    let (mut all, mut ok) = (0, 0);
    for (s, row) in tally.iter().enumerate() {
        for (t, (tried, got)) in row.iter().enumerate() {
            if *tried > 0 {
                println!(
                    "reach by HIT, {} to {}{to_what}: {got} of {tried} arrived within {} s ({} failed)",
                    name(s == 1),
                    name(t == 1),
                    ROUND.as_secs(),
                    tried - got
                );
            }
            all += tried;
            ok += got;
        }
    }
    println!(
        "reach by HIT{to_what}: {ok} of {all} packets arrived ({:.2} %), {} failed",
        100.0 * ok as f64 / all.max(1) as f64,
        all - ok
    );
    for (reason, count) in why {
        println!("  failed: {count} {reason}");
    }
    for (how, count) in found {
        println!("  arrived: {count} found by {how}");
    }
    first_packet.sort();
    let at = |q: f64| -> f64 {
        let i = ((first_packet.len() as f64 * q).ceil() as usize).saturating_sub(1);
        first_packet
            .get(i)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "  time to first packet{to_what} (virtual, {} ms steps): median {:.0} ms, p99 {:.0} ms, of {} arrived; {} of them ended on a direct path ({:.1} %); {:.1} overlay messages per new connection ({overlay_messages} in all, every hop, maintenance included)",
        STEP.as_millis(),
        at(0.5),
        at(0.99),
        first_packet.len(),
        direct,
        100.0 * direct as f64 / first_packet.len().max(1) as f64,
        overlay_messages as f64 / sent.max(1) as f64,
    );
}

/// `--moved`: that share of the public members (the bootstrap aside), chosen at random,
/// lose their address and get a new one, as netlink would tell their nodes. Returns who
/// moved.
fn move_members(sim: &mut Sim<Node>, args: &NodesArgs, natted: &[usize]) -> Vec<usize> {
    let mut rng = ChaCha20Rng::seed_from_u64(args.seed ^ 0x30fe);
    let mut public: Vec<usize> = (1..args.nodes).filter(|i| !natted.contains(i)).collect();
    let count = public.len() * usize::from(args.moved) / 100;
    let mut moved = Vec::new();
    while moved.len() < count && !public.is_empty() {
        let i = public.swap_remove((rng.next_u64() % public.len() as u64) as usize);
        let Some(&old) = sim.node(i).host.local_addresses().first() else {
            continue;
        };
        // A new network: another prefix of the same family, the same port.
        let new = match old.ip() {
            std::net::IpAddr::V4(_) => {
                let ip = Ipv4Addr::new(198, 18, 128 + (i >> 8) as u8, i as u8);
                SocketAddr::new(ip.into(), old.port())
            }
            std::net::IpAddr::V6(_) => {
                let ip = Ipv6Addr::new(0x2001, 0xdb8, 0x6, 0, 0, 0, (i >> 16) as u16, i as u16 + 1);
                SocketAddr::new(ip.into(), old.port())
            }
        };
        move_node(sim, i, new);
        moved.push(i);
    }
    moved
}

/// Where the packet from `from` to `to` stopped, as far as the two ends show it.
fn failure(sim: &Sim<Node>, from: usize, to: usize) -> String {
    let target = sim.node(to).hit();
    let sender = sim.node(from);
    match sender.host.association(&target) {
        None if sender.looking_up(&target) => "lookup still under way".into(),
        None => match sender.unreached().find(|u| u.peer == target) {
            Some(u) => format!("no exchange started ({})", u.why),
            None => "no exchange started (no locator found)".into(),
        },
        Some(a) if a.state != hip::AssocState::Established => {
            let why = sender.unreached().find(|u| u.peer == target);
            let found = sender.found(&target).map_or("", |f| f.describe());
            match why {
                Some(u) => format!("exchange ended in {} ({}; {found})", a.state.name(), u.why),
                None => format!("exchange ended in {} ({found})", a.state.name()),
            }
        }
        Some(_) => match sim.node(to).host.association(&sender.hit()) {
            None => "sender established, target has no association".into(),
            Some(_) => "established at both ends, packet lost".into(),
        },
    }
}
