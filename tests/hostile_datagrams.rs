//! Hostile datagrams at every point of a base exchange, from a seeded generator: the
//! `cargo test` counterpart of `fuzz/fuzz_targets/host_datagram.rs`, so that CI exercises
//! the same attack without libFuzzer.
//!
//! Each case builds a fresh pair of hosts in the simulator, runs the honest exchange to a
//! chosen point (before I1; I1, R1, I2 or R2 in flight; established), and has an
//! attacker inject a datagram, from the peer's address or a stranger's, into one host. The
//! datagram is random bytes or, mostly, a real packet of the exchange mutated by bit flips,
//! byte sets, truncations, splices of two packets and repeated runs. Then the exchange goes
//! on and virtual time runs past every retransmission, the exchange-complete and linger
//! timers and a puzzle-secret rotation. After every simulator step:
//!
//! - no host holds an association in R2-SENT or ESTABLISHED with anyone but its real peer,
//!   and no event names anyone else (only the two hosts hold keys);
//! - when both hosts reported `Established` and both hold the association in R2-SENT or
//!   ESTABLISHED, their ESP keys agree crosswise.
//!
//! `HOSTILE_CASES=n cargo test --release --test hostile_datagrams` runs more cases.

use hip::wire::{HipRepr, PacketType, Param};
use hip::{AssocState, Config, EspKeys, Event, Hit, Host};
use hipbone::sim::bex::{packet_name, Pair};
use hipbone::sim::{Datagram, Link, Sim, Verdict};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Cases in a default run: a few seconds in a release build.
const CASES: u64 = 3000;
/// Seed of the hosts: the same identities in every case, so recorded packets stay valid.
const PAIR_SEED: u64 = 11;
/// Seed of the attacker's choices.
const ATTACK_SEED: u64 = 0x4849_5076_3266_757a;
/// How long virtual time runs after the attack: past I1/I2 give-up, the 10 s
/// exchange-complete timer, the 30 s linger and the 120 s puzzle-secret rotation.
const HORIZON: Duration = Duration::from_secs(130);
/// Steps (deliveries or timer wake-ups) per case at most, should hosts ever keep talking.
const MAX_STEPS: usize = 2000;

/// xorshift64*: small, seeded, and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn pair() -> Pair {
    // Both route for one overlay: packets with OVERLAY_ID reach the hop checks.
    let config = Config {
        overlay_id: Some(vec![0x8f, 0x2e, 0x41, 0xc7]),
        ..Config::default()
    };
    Pair::new(PAIR_SEED, Link::default(), false, config)
}

fn hip_of(payload: &[u8]) -> &[u8] {
    payload.get(4..).unwrap_or_default()
}

fn marked(hip: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 4];
    v.extend_from_slice(hip);
    v
}

/// The UDP payloads of a complete honest exchange (I1, R1, I2, R2), then CLOSE, CLOSE_ACK,
/// a signed NOTIFY, and the UPDATE with an unknown critical parameter that drew it.
fn record() -> Vec<Vec<u8>> {
    let mut p = pair();
    p.connect_a();
    p.run(Duration::from_secs(10)).expect("honest exchange");
    let now = p.sim.now();
    p.sim.node_mut(p.a).close(now, &p.b_hit).expect("close");
    let end = p.sim.now() + Duration::from_secs(1);
    p.sim.run_until(end, |_| false);
    let mut update = HipRepr::parse(hip_of(&p.sim.trace()[0].datagram.payload)).unwrap();
    update.packet_type = PacketType::Update;
    update.params.push(Param::Unknown {
        ty: 0x1001,
        contents: vec![0; 4],
    });
    let update = marked(&update.to_bytes());
    p.sim.inject(Datagram {
        from: p.a_addr,
        to: p.b_addr,
        payload: update.clone(),
    });
    let end = p.sim.now() + Duration::from_secs(1);
    p.sim.run_until(end, |_| false);
    let mut packets: Vec<Vec<u8>> = p
        .sim
        .trace()
        .iter()
        .map(|r| r.datagram.payload.clone())
        .collect();
    let names: Vec<&str> = packets.iter().map(|p| packet_name(p)).collect();
    assert_eq!(
        names,
        ["I1", "R1", "I2", "R2", "CLOSE", "CLOSE_ACK", "NOTIFY"],
        "the recorded exchange"
    );
    packets.push(update);
    packets
}

/// A real packet changed by one to four mutations.
fn mutate(rng: &mut Rng, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut p = hip_of(&packets[rng.below(packets.len())]).to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(p.len() + 1);
        match rng.below(5) {
            0 if at < p.len() => p[at] ^= 1 << rng.below(8),
            1 if at < p.len() => p[at] = rng.byte(),
            2 => p.truncate(at),
            // Splice: this packet's head, another's tail; often from the same offset, so
            // that the TLVs of one packet follow the header of another intact.
            3 => {
                let other = hip_of(&packets[rng.below(packets.len())]);
                let from = if rng.chance(50) {
                    at
                } else {
                    rng.below(other.len() + 1)
                };
                p.truncate(at);
                p.extend_from_slice(other.get(from..).unwrap_or_default());
            }
            // Repeat: a run of bytes (a parameter, or part of one) appears twice.
            4 => {
                let end = (at + rng.below(256)).min(p.len());
                let run = p[at..end].to_vec();
                p.splice(end..end, run);
            }
            _ => {}
        }
    }
    if rng.chance(50) && p.len() >= 8 {
        // Header Length as the edited size says, so that added or removed bytes are seen
        // rather than cut off or refused as truncated.
        p[1] = (p.len() / 8 - 1).min(255) as u8;
    }
    marked(&p)
}

/// One case: where the attack happens and what it sends.
struct Attack {
    /// 0: before I1 (A connects once the attack has landed); 1-4: just after the nth
    /// honest packet (I1, R1, I2, R2) was sent; 5: A is established.
    stage: usize,
    to_b: bool,
    /// `None`: the peer's own address.
    source: Option<SocketAddr>,
    repeats: usize,
    /// The next honest packet sent after the attack is lost.
    lose_next: bool,
    /// B connects to A at the same moment (simultaneous open).
    simultaneous: bool,
    payload: Vec<u8>,
}

impl Attack {
    fn draw(rng: &mut Rng, packets: &[Vec<u8>]) -> Attack {
        let strangers: [SocketAddr; 2] = [
            "203.0.113.66:10500".parse().unwrap(),
            "[2001:db8::66]:10500".parse().unwrap(),
        ];
        let payload = match rng.below(10) {
            0 => (0..rng.below(80)).map(|_| rng.byte()).collect(),
            1 => marked(&(0..rng.below(120)).map(|_| rng.byte()).collect::<Vec<_>>()),
            _ => mutate(rng, packets),
        };
        Attack {
            stage: rng.below(6),
            to_b: rng.chance(50),
            source: match rng.below(4) {
                0 | 1 => None,
                n => Some(strangers[n - 2]),
            },
            repeats: 1 + rng.below(3),
            lose_next: rng.chance(15),
            simultaneous: rng.chance(10),
            payload,
        }
    }

    fn describe(&self) -> String {
        let mut hex = String::new();
        for b in &self.payload {
            let _ = write!(hex, "{b:02x}");
        }
        format!(
            "stage {}, to {}, from {:?}, {} times, lose next {}, simultaneous {}, \
             {} bytes: {hex}",
            self.stage,
            if self.to_b { "B" } else { "A" },
            self.source,
            self.repeats,
            self.lose_next,
            self.simultaneous,
            self.payload.len(),
        )
    }
}

/// What a case has seen so far, and the checks run after every step.
struct Watch {
    hits: [Hit; 2],
    ids: [usize; 2],
    /// Keys of the latest `Established` each host reported.
    established: [Option<EspKeys>; 2],
    /// Drop reasons (variant names) seen in all cases: the mutations reach deep checks.
    drops: BTreeSet<String>,
}

impl Watch {
    fn step(&mut self, sim: &mut Sim<Host>) {
        for i in 0..2 {
            let host = sim.node_mut(self.ids[i]);
            if let Some(e) = &host.stats().last_drop {
                // The variant's name is enough; HITs and parameter types would flood it.
                let name = format!("{e:?}");
                let name = name.split('(').next().unwrap_or_default();
                if !self.drops.contains(name) {
                    self.drops.insert(name.to_owned());
                }
            }
            while let Some(e) = host.poll_event() {
                let peer = match &e {
                    Event::Established { peer, keys, .. } => {
                        self.established[i] = Some(keys.clone());
                        Some(*peer)
                    }
                    Event::Failed { peer, .. }
                    | Event::Closed { peer }
                    | Event::Notified { peer, .. } => Some(*peer),
                    _ => None,
                };
                if let Some(peer) = peer {
                    assert_eq!(peer, self.hits[1 - i], "host {i} reported {e:?}");
                }
            }
        }
        for i in 0..2 {
            for a in sim.node(self.ids[i]).associations() {
                if up(a.state) {
                    assert_eq!(a.peer, self.hits[1 - i], "host {i} holds {a:?}");
                }
            }
        }
        let both_up = (0..2).all(|i| {
            sim.node(self.ids[i])
                .association(&self.hits[1 - i])
                .is_some_and(|a| up(a.state))
        });
        if let ([Some(ea), Some(eb)], true) = (&self.established, both_up) {
            let ka = sim.node(self.ids[0]).esp_keys(&self.hits[1]).unwrap();
            let kb = sim.node(self.ids[1]).esp_keys(&self.hits[0]).unwrap();
            assert_crosswise(ka, kb, "the associations");
            assert_crosswise(ea, eb, "the Established events");
        }
    }
}

fn up(state: AssocState) -> bool {
    matches!(state, AssocState::R2Sent | AssocState::Established)
}

fn assert_crosswise(a: &EspKeys, b: &EspKeys, what: &str) {
    if let Err(why) = a.mirrors(b) {
        panic!("{what}: {why}");
    }
}

/// Runs one case; returns whether both hosts ended up with agreeing keys.
fn run_case(attack: &Attack, packets: &[Vec<u8>], drops: &mut BTreeSet<String>) -> bool {
    let mut p = pair();
    let mut watch = Watch {
        hits: [p.a_hit, p.b_hit],
        ids: [p.a, p.b],
        established: [None, None],
        drops: std::mem::take(drops),
    };
    let (a, b_hit) = (p.a, p.b_hit);
    let deadline = p.sim.now() + Duration::from_secs(1);
    match attack.stage {
        0 => {}
        5 => {
            p.connect_a();
            p.sim.run_until(deadline, |s| {
                s.node(a)
                    .association(&b_hit)
                    .is_some_and(|x| x.state == AssocState::Established)
            });
        }
        stage => {
            p.connect_a();
            p.sim.run_until(deadline, |s| s.trace().len() >= stage);
        }
    }
    // The hosts are the same in every case, so the exchange so far is the recorded one.
    for (i, r) in p.sim.trace().iter().enumerate() {
        assert_eq!(r.datagram.payload, packets[i], "honest packet {i} differs");
    }
    watch.step(&mut p.sim);

    if attack.simultaneous {
        p.connect_b();
    }
    if attack.lose_next {
        let lost = Rc::new(Cell::new(false));
        p.sim.set_filter(Box::new(move |_, _| {
            if lost.replace(true) {
                Verdict::Pass
            } else {
                Verdict::Drop
            }
        }));
    }
    let (to, peer) = if attack.to_b {
        (p.b_addr, p.a_addr)
    } else {
        (p.a_addr, p.b_addr)
    };
    let from = attack.source.unwrap_or(peer);
    // A stranger nearby is faster than the honest path, so its packets can overtake the
    // honest ones in flight; a spoofer of the peer's address shares the honest path.
    p.sim.set_link(
        from,
        to,
        Link {
            delay: Duration::from_millis(if attack.source.is_some() { 1 } else { 10 }),
            ..Link::default()
        },
    );
    for _ in 0..attack.repeats {
        p.sim.inject(Datagram {
            from,
            to,
            payload: attack.payload.clone(),
        });
    }
    let end = p.sim.now() + HORIZON;
    if attack.stage == 0 {
        // Before I1: the attack lands on hosts that know nobody; then A starts.
        let settled = p.sim.now() + Duration::from_millis(50);
        while p.sim.step(settled) {
            watch.step(&mut p.sim);
        }
        p.connect_a();
    }
    for _ in 0..MAX_STEPS {
        if !p.sim.step(end) {
            break;
        }
        watch.step(&mut p.sim);
    }
    watch.step(&mut p.sim);
    *drops = watch.drops;
    let ka = p.sim.node(p.a).esp_keys(&p.b_hit);
    let kb = p.sim.node(p.b).esp_keys(&p.a_hit);
    matches!((ka, kb), (Some(ka), Some(kb)) if ka.spi_out == kb.spi_in && ka.spi_out != 0)
}

#[test]
fn hostile_datagrams_never_break_the_exchange_invariants() {
    let cases = std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CASES);
    let packets = record();
    let mut rng = Rng(ATTACK_SEED);
    let mut drops = BTreeSet::new();
    let mut agreed = 0;
    for case in 0..cases {
        let attack = Attack::draw(&mut rng, &packets);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_case(&attack, &packets, &mut drops)
        }));
        match outcome {
            Ok(true) => agreed += 1,
            Ok(false) => {}
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| e.downcast_ref::<&str>().copied())
                    .unwrap_or("?");
                panic!("case {case} failed: {msg}\n  {}", attack.describe());
            }
        }
    }
    // Shown with --nocapture: how far the attacks got.
    println!("{cases} cases, {agreed} exchanges completed; refused with: {drops:?}");
    // Nearly all exchanges still complete. The few that do not met a replayed CLOSE or R2
    // (valid, since every case derives the recorded keys) or an R1 the initiator took
    // first from a stranger's address (the first R1 wins, RFC 7401 §4.4.2). And the test
    // is not vacuous: mutated packets reach the puzzle, MAC and signature checks rather
    // than dying in the parser.
    if cases < 1000 {
        return; // too few for the statistics below
    }
    assert!(
        agreed * 10 >= cases * 9,
        "only {agreed} of {cases} exchanges completed"
    );
    for deep in ["BadPuzzle", "BadMac", "BadSignature", "Malformed"] {
        assert!(
            drops.contains(deep),
            "no case was refused with {deep}; seen: {drops:?}"
        );
    }
}
