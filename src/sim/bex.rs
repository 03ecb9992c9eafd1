//! `hipbone sim bex`: one base exchange between two simulated hosts, with its timeline.

use super::{pcap, Datagram, Link, Record, Sim};
use hip::{Event, Hit, Host, HostIdentity};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Arguments of `hipbone sim bex`.
#[derive(Debug, Clone, clap::Args)]
pub struct BexArgs {
    /// Probability that the link drops a packet, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Seed of every random choice in the run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// One-way link delay in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub delay_ms: u64,
    /// Give up after this many seconds of virtual time.
    #[arg(long, default_value_t = 30)]
    pub deadline: u64,
    /// Use IPv6 locators instead of IPv4.
    #[arg(long)]
    pub ipv6: bool,
    /// Write every packet on the virtual wire to this pcap file.
    #[arg(long)]
    pub pcap: Option<std::path::PathBuf>,
}

/// Two hosts on one simulated link, ready for an exchange.
#[derive(Debug)]
pub struct Pair {
    pub sim: Sim<Host>,
    pub a: usize,
    pub b: usize,
    pub a_addr: SocketAddr,
    pub b_addr: SocketAddr,
    pub a_hit: Hit,
    pub b_hit: Hit,
    /// Events each host reported, with the virtual time they were seen.
    pub events: Vec<(Duration, usize, Event)>,
}

impl Pair {
    /// Hosts A and B with identities and randomness drawn from `seed`, on `link`.
    pub fn new(seed: u64, link: Link, ipv6: bool, config: hip::Config) -> Pair {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let start = Instant::now();
        let mut sim = Sim::new(rng.next_u64(), start);
        sim.set_default_link(link);
        let (a_addr, b_addr): (SocketAddr, SocketAddr) = if ipv6 {
            (
                "[2001:db8:1::a]:10500".parse().unwrap(),
                "[2001:db8:1::b]:10500".parse().unwrap(),
            )
        } else {
            (
                "198.51.100.1:10500".parse().unwrap(),
                "198.51.100.2:10500".parse().unwrap(),
            )
        };
        let host = |rng: &mut ChaCha20Rng| {
            let identity = HostIdentity::from_secret(bytes32(rng));
            Host::new(identity, config.clone(), bytes32(rng), start)
        };
        let (ha, hb) = (host(&mut rng), host(&mut rng));
        let (a_hit, b_hit) = (ha.hit(), hb.hit());
        let a = sim.add(ha, &[a_addr]);
        let b = sim.add(hb, &[b_addr]);
        Pair {
            sim,
            a,
            b,
            a_addr,
            b_addr,
            a_hit,
            b_hit,
            events: Vec::new(),
        }
    }

    /// A connects to B.
    pub fn connect_a(&mut self) {
        let now = self.sim.now();
        let (b_hit, a_addr, b_addr) = (self.b_hit, self.a_addr, self.b_addr);
        self.sim
            .node_mut(self.a)
            .connect(now, b_hit, a_addr, &[b_addr])
            .expect("connect");
    }

    /// B connects to A.
    pub fn connect_b(&mut self) {
        let now = self.sim.now();
        let (a_hit, a_addr, b_addr) = (self.a_hit, self.a_addr, self.b_addr);
        self.sim
            .node_mut(self.b)
            .connect(now, a_hit, b_addr, &[a_addr])
            .expect("connect");
    }

    /// Moves events out of both hosts into `self.events`.
    pub fn collect_events(&mut self) {
        let at = self.sim.elapsed();
        for id in [self.a, self.b] {
            while let Some(e) = self.sim.node_mut(id).poll_event() {
                self.events.push((at, id, e));
            }
        }
    }

    /// True once `id` has reported an established association.
    pub fn established(&self, id: usize) -> bool {
        self.events
            .iter()
            .any(|(_, n, e)| *n == id && matches!(e, Event::Established { .. }))
    }

    /// Runs until both hosts have keys or `deadline` of virtual time has passed; returns
    /// the virtual time at which the exchange completed.
    pub fn run(&mut self, deadline: Duration) -> Option<Duration> {
        let end = self.sim.now() + deadline;
        let done = |p: &mut Pair| {
            p.collect_events();
            p.established(p.a) && p.established(p.b)
        };
        loop {
            if done(self) {
                return Some(self.sim.elapsed());
            }
            if !self.sim.step(end) {
                return done(self).then(|| self.sim.elapsed());
            }
        }
    }

    /// True if both hosts hold the same ESP keys, crosswise.
    pub fn keys_agree(&self) -> bool {
        let (Some(ka), Some(kb)) = (
            self.sim.node(self.a).esp_keys(&self.b_hit),
            self.sim.node(self.b).esp_keys(&self.a_hit),
        ) else {
            return false;
        };
        ka.mirrors(kb).is_ok() && !ka.enc_out.is_empty()
    }
}

impl Pair {
    /// Seals `payload` (as UDP, protocol 17) at host `from` for `to` and puts it on the
    /// virtual wire; the datagram, or `None` if the host had no SA to seal it with.
    pub fn send_esp(&mut self, from: usize, to: Hit, payload: &[u8]) -> Option<Datagram> {
        use hip::esp::{ESP_HEADER_LEN, ESP_TAIL_MAX};
        let now = self.sim.now();
        let mut buf = vec![0u8; ESP_HEADER_LEN + payload.len() + ESP_TAIL_MAX];
        buf[ESP_HEADER_LEN..ESP_HEADER_LEN + payload.len()].copy_from_slice(payload);
        let range = ESP_HEADER_LEN..ESP_HEADER_LEN + payload.len();
        match self
            .sim
            .node_mut(from)
            .encapsulate(now, &to, 17, &mut buf, range)
        {
            hip::Outbound::Send {
                local,
                remote,
                datagram,
            } => {
                let d = Datagram {
                    from: local,
                    to: remote,
                    payload: datagram.to_vec(),
                };
                self.sim.send(d.clone());
                Some(d)
            }
            _ => None,
        }
    }

    /// Lets `d` of virtual time pass, then collects the events.
    pub fn settle(&mut self, d: Duration) {
        let end = self.sim.now() + d;
        self.sim.run_until(end, |_| false);
        self.collect_events();
    }

    /// The first datagram of the trace whose packet is named `name` (see `packet_name`).
    pub fn first(&self, name: &str) -> Option<Datagram> {
        self.sim
            .trace()
            .iter()
            .find(|r| packet_name(&r.datagram.payload) == name)
            .map(|r| r.datagram.clone())
    }
}

fn bytes32(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b
}

/// The HIP packet type name of a UDP payload, for timelines.
pub fn packet_name(payload: &[u8]) -> &'static str {
    match payload {
        [0, 0, 0, 0, _, _, t, ..] => match t & 0x7f {
            1 => "I1",
            2 => "R1",
            3 => "I2",
            4 => "R2",
            16 => "UPDATE",
            17 => "NOTIFY",
            18 => "CLOSE",
            19 => "CLOSE_ACK",
            _ => "HIP?",
        },
        _ => "ESP",
    }
}

/// Runs the exchange and prints the timeline to stdout.
pub fn run(args: &BexArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.loss) {
        anyhow::bail!("--loss must be between 0 and 1, got {}", args.loss);
    }
    let link = Link {
        delay: Duration::from_millis(args.delay_ms),
        loss: args.loss,
        ..Link::default()
    };
    let mut pair = Pair::new(args.seed, link, args.ipv6, hip::Config::default());
    if args.pcap.is_some() {
        pair.sim.capture(pcap::Writer::new());
    }
    println!(
        "base exchange, seed {}, loss {:.0} %, one-way delay {} ms",
        args.seed,
        args.loss * 100.0,
        args.delay_ms
    );
    println!("  A  {}  at {}  (initiator)", pair.a_hit, pair.a_addr);
    println!("  B  {}  at {}  (responder)", pair.b_hit, pair.b_addr);
    println!();
    pair.connect_a();
    let done = pair.run(Duration::from_secs(args.deadline));
    print_timeline(&pair);
    if let (Some(path), Some(w)) = (&args.pcap, pair.sim.take_capture()) {
        w.save(path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        println!("capture written to {}", path.display());
    }
    let sent = pair.sim.trace().len();
    let lost = pair.sim.trace().iter().filter(|r| r.lost).count();
    match done {
        Some(t) => {
            println!(
                "base exchange complete after {:.3} s of virtual time; {sent} packets sent, {lost} lost",
                t.as_secs_f64()
            );
            Ok(())
        }
        None => anyhow::bail!(
            "base exchange did not complete within {} s of virtual time ({sent} packets sent, {lost} lost)",
            args.deadline
        ),
    }
}

fn print_timeline(pair: &Pair) {
    let name = |addr: SocketAddr| if addr == pair.a_addr { "A" } else { "B" };
    let mut lines: Vec<(Duration, String)> = pair
        .sim
        .trace()
        .iter()
        .map(|r: &Record| {
            let d = &r.datagram;
            let what = format!(
                "{} -> {}  {:<9} {:>4} bytes{}",
                name(d.from),
                name(d.to),
                packet_name(&d.payload),
                d.payload.len(),
                if r.lost { "  (lost)" } else { "" }
            );
            (r.at, what)
        })
        .collect();
    for (at, id, e) in &pair.events {
        let who = if *id == pair.a { "A" } else { "B" };
        let what = match e {
            Event::Established { keys, .. } => format!(
                "{who} has ESP keys: SPI in {:#010x}, out {:#010x}",
                keys.spi_in, keys.spi_out
            ),
            Event::Failed { error, .. } => format!("{who} gave up: {error}"),
            Event::Closed { .. } => format!("{who} closed"),
            Event::Notified { kind, .. } => format!("{who} was notified: {kind:?}"),
            _ => format!("{who}: {e:?}"),
        };
        lines.push((*at, what));
    }
    lines.sort_by_key(|(at, _)| *at);
    for (at, what) in lines {
        println!("  {:>10.6} s  {what}", at.as_secs_f64());
    }
    println!();
}
