//! `hip::Host::handle_datagram` on hostile input at each point of a real base exchange.
//!
//! Two hosts with fixed identities run an honest base exchange in process (A registers with
//! B, which serves as a NAT relay), with no latency
//! and a virtual clock. The input picks the moment an attacker speaks, which host hears it,
//! from which address, and what it says: raw bytes, or a real packet of the exchange with a
//! list of edits applied. Edited packets matter most: raw bytes rarely get past the parser,
//! while an edited I2 or R2 reaches the state checks, the MACs and the signatures. Then the
//! honest exchange goes on, and the clock follows the hosts' own timers past every
//! retransmission, the exchange-complete and linger timers and one puzzle-secret rotation.
//!
//! Input layout:
//!
//! ```text
//! byte 0  bits 0-2  stage, mod 5: 0 nothing sent, 1 I1 in flight, 2 after R1 (A in
//!                   I2-SENT), 3 after I2 (B in R2-SENT), 4 established
//!         bit 3     the honest packets in flight at that moment are lost
//!         bit 4     B connects to A at that moment too (simultaneous open)
//! byte 1  bit 0     the attacker's datagram goes to B (else to A)
//!         bits 1-2  it comes from 0, 1: the peer's address, 2: a stranger's IPv4 address,
//!                   3: a stranger's IPv6 address
//!         bits 3-4  delivered 1 to 4 times
//!         bits 5-6  0: the rest of the input as the UDP payload, 1: the rest after the
//!                   zero marker, 2 and 3: an edited packet (below)
//! edited  byte 2    bits 0-2 which recorded packet (I1, R1, I2, R2, CLOSE, CLOSE_ACK, NOTIFY,
//!                   UPDATE); bit 3: rewrite Header Length to the edited size
//!         then      edits of four bytes: kind, offset (u16, big-endian), value
//! ```
//!
//! Invariants, checked after every delivery and timer: nothing panics; no host holds an
//! association in R2-SENT or ESTABLISHED with anyone but the real peer, and no event names
//! anyone else (only the two hosts hold keys, so nobody else can authenticate); and when
//! both hosts reported `Established` and both still hold the association in R2-SENT or
//! ESTABLISHED, their ESP keys agree crosswise; the timer queue holds exactly the
//! associations' timers; and after every `handle_timeout(now)` the next deadline is later
//! than `now`.
//!
//! `tests/hostile_datagrams.rs` in the root package runs the same kind of attack from a
//! seeded generator, so that `cargo test` covers it without libFuzzer.
#![no_main]

use hip::{AssocState, Config, EspKeys, Event, Hit, Host, HostIdentity};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const A: usize = 0;
const B: usize = 1;
const ADDRS: [SocketAddr; 2] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 10500),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 10500),
];
const STRANGER_V4: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66)), 10500);
const STRANGER_V6: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x66)),
    10500,
);
/// Identity secrets and host seeds: fixed, so every run replays the same exchange.
const SECRETS: [[u8; 32]; 2] = [[0xa1; 32], [0xb2; 32]];
const SEEDS: [[u8; 32]; 2] = [[0xa3; 32], [0xb4; 32]];
/// Virtual time between the steps of the honest exchange.
const STEP: Duration = Duration::from_millis(10);
/// How long the clock runs after the attack: past I1/I2 give-up, the 10 s exchange-complete
/// timer, the 30 s linger and the 120 s puzzle-secret rotation.
const HORIZON: Duration = Duration::from_secs(130);
/// Timer wake-ups per run at most; a handful more than the longest retransmission schedule.
const MAX_WAKEUPS: usize = 64;
/// Datagrams moved per pump at most, should two hosts ever keep answering each other.
const MAX_PUMPED: usize = 64;
/// Edits applied at most, to keep one run cheap.
const MAX_EDITS: usize = 16;

/// The honest exchange recorded once per process: the instant every run starts from and
/// the UDP payloads (zero marker included) the edits start from.
struct Fixture {
    t0: Instant,
    packets: Vec<Vec<u8>>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        // One Instant for the whole process: Host::new and every timer depend on `now`, so
        // reusing it makes each run the same function of its input whatever ran before.
        let t0 = Instant::now();
        let mut w = World::new(t0);
        let mut packets = w.honest_exchange(4, None);
        // CLOSE and CLOSE_ACK, authenticated with the keys every run's exchange derives.
        w.now += STEP;
        w.hosts[A].close(w.now, &w.hits[B]).expect("close");
        packets.push(w.deliver_one(A).expect("CLOSE"));
        packets.push(w.deliver_one(B).expect("CLOSE_ACK"));
        // A signed NOTIFY: B answers an UPDATE with an unknown critical parameter.
        let mut update = hip::wire::HipRepr::parse(&packets[0][4..]).expect("I1 parses");
        update.packet_type = hip::wire::PacketType::Update;
        update.params.push(hip::wire::Param::Unknown {
            ty: 0x1001,
            contents: vec![0; 4],
        });
        let update = marked(&update.to_bytes());
        w.hosts[B].handle_datagram(w.now, ADDRS[B], ADDRS[A], &update);
        packets.push(w.deliver_one(B).expect("NOTIFY"));
        packets.push(update);
        Fixture { t0, packets }
    })
}

/// The two hosts, what they reported, and the virtual clock.
struct World {
    hosts: [Host; 2],
    hits: [Hit; 2],
    now: Instant,
    /// Keys of the latest `Established` each host reported about the other.
    established: [Option<EspKeys>; 2],
}

impl World {
    fn new(t0: Instant) -> World {
        // B serves as a relay and A registers with it in the exchange, so that hostile
        // input also meets the relay, its forwarding and the NAT traversal code.
        let host = |i: usize| {
            let identity = HostIdentity::from_secret(SECRETS[i]);
            let config = Config {
                relay_server: i == B,
                // Both route for one overlay, so that packets with OVERLAY_ID reach the
                // hop checks (HIP BONE) rather than stopping at "not our overlay".
                overlay_id: Some(vec![0x8f, 0x2e, 0x41, 0xc7]),
                ..Config::default()
            };
            let mut h = Host::new(identity, config, SEEDS[i], t0);
            h.set_local_addresses(t0, &[ADDRS[i]]);
            h
        };
        let hosts = [host(A), host(B)];
        let hits = [hosts[A].hit(), hosts[B].hit()];
        World {
            hosts,
            hits,
            now: t0,
            established: [None, None],
        }
    }

    /// Runs the honest exchange up to `stage`, one packet at a time, and returns the
    /// packets delivered. With `expected`, checks they are the recorded ones.
    fn honest_exchange(&mut self, stage: u8, expected: Option<&[Vec<u8>]>) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        if stage >= 1 {
            self.hosts[A]
                .register_relay(self.now, self.hits[B], ADDRS[A], &[ADDRS[B]])
                .expect("connect");
        }
        // Who sends each packet (I1, R1, I2, R2) and the stage after which it has arrived.
        for (from, after) in [(A, 2), (B, 2), (A, 3), (B, 4)] {
            if stage < after {
                break;
            }
            if from == A {
                self.now += STEP;
            }
            let p = self.deliver_one(from).expect("the honest exchange goes on");
            if let Some(expected) = expected {
                // Host construction and the exchange are deterministic, so the live packets
                // are the recorded ones; if not, runs would depend on their order.
                assert_eq!(
                    p,
                    expected[sent.len()],
                    "the honest exchange is deterministic"
                );
            }
            sent.push(p);
        }
        self.check();
        sent
    }

    /// Moves the oldest datagram `from` wants to send to the other host; returns it.
    fn deliver_one(&mut self, from: usize) -> Option<Vec<u8>> {
        let t = self.hosts[from].poll_transmit()?;
        let to = 1 - from;
        if t.remote == ADDRS[to] {
            self.hosts[to].handle_datagram(self.now, t.remote, t.local, &t.payload);
        }
        self.collect_events();
        Some(t.payload)
    }

    /// Delivers whatever the hosts send each other until both are quiet. Datagrams to any
    /// other address (a stranger that spoofed its way into an answer) are lost.
    fn pump(&mut self) {
        for _ in 0..MAX_PUMPED {
            if self.deliver_one(A).is_none() && self.deliver_one(B).is_none() {
                break;
            }
            self.check();
        }
    }

    /// Drops every queued datagram: the packets in flight are lost.
    fn lose_in_flight(&mut self) {
        for h in &mut self.hosts {
            while h.poll_transmit().is_some() {}
        }
    }

    /// Follows the hosts' timers up to `end`.
    fn run_timers(&mut self, end: Instant) {
        for _ in 0..MAX_WAKEUPS {
            let next = self.hosts.iter().filter_map(Host::poll_timeout).min();
            let Some(next) = next.filter(|t| *t <= end) else {
                break;
            };
            self.now = self.now.max(next);
            for h in &mut self.hosts {
                h.handle_timeout(self.now);
                // No deadline left behind: a driver would wake up for it forever.
                assert!(h.poll_timeout().is_none_or(|t| t > self.now));
            }
            self.collect_events();
            self.check();
            self.pump();
        }
    }

    fn collect_events(&mut self) {
        for i in [A, B] {
            while let Some(e) = self.hosts[i].poll_event() {
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
    }

    fn check(&self) {
        for i in [A, B] {
            assert!(
                self.hosts[i].timers_agree(),
                "host {i}: timer queue out of step"
            );
            for a in self.hosts[i].associations() {
                if up(a.state) {
                    assert_eq!(a.peer, self.hits[1 - i], "host {i} holds {a:?}");
                }
            }
        }
        let both_up = [A, B].iter().all(|&i| {
            self.hosts[i]
                .association(&self.hits[1 - i])
                .is_some_and(|a| up(a.state))
        });
        if let ([Some(ea), Some(eb)], true) = (&self.established, both_up) {
            let ka = self.hosts[A].esp_keys(&self.hits[B]).expect("A's keys");
            let kb = self.hosts[B].esp_keys(&self.hits[A]).expect("B's keys");
            assert_crosswise(ka, kb, "the associations");
            // What each host announced is what it holds, so the data plane agrees too.
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

/// The UDP payload of a HIP packet: the zero marker, then the packet.
fn marked(hip: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 4];
    v.extend_from_slice(hip);
    v
}

/// A recorded packet (chosen by `spec[0]`) with the edits in `spec[1..]` applied.
fn edited(packets: &[Vec<u8>], spec: &[u8]) -> Vec<u8> {
    let Some((&select, edits)) = spec.split_first() else {
        return packets[0].clone();
    };
    let hip_of = |v: u8| &packets[usize::from(v) % packets.len()][4..];
    let mut p = hip_of(select & 7).to_vec();
    for e in edits.chunks_exact(4).take(MAX_EDITS) {
        let (kind, v) = (e[0], e[3]);
        let at = usize::from(u16::from_be_bytes([e[1], e[2]])) % (p.len() + 1);
        match kind % 8 {
            0 if at < p.len() => p[at] ^= 1 << (v & 7),
            1 if at < p.len() => p[at] = v,
            2 => p.truncate(at),
            3 => p.insert(at, v),
            4 if at < p.len() => {
                p.remove(at);
            }
            // Splice: this packet's head, another's tail from the same offset, so that
            // parameters from one packet meet the header and MAC of another.
            5 => {
                let other = hip_of(v);
                p.truncate(at);
                p.extend_from_slice(other.get(at..).unwrap_or_default());
            }
            // A 16-bit field (TLV type or length, Header Length and type) set to a boundary.
            6 if at + 2 <= p.len() => {
                let len = p.len() as u16;
                let values = [0, 1, 0xff, len, len.wrapping_add(1), 0x7fff, 0x8000, 0xffff];
                p[at..at + 2].copy_from_slice(&values[usize::from(v % 8)].to_be_bytes());
            }
            // Repeat: a run of up to 255 bytes (a parameter, say) appears twice.
            7 => {
                let end = (at + usize::from(v)).min(p.len());
                let run = p[at..end].to_vec();
                p.splice(end..end, run);
            }
            _ => {}
        }
    }
    if select & 8 != 0 && p.len() >= 8 {
        // Header Length counts 8-byte units after the first 8, so that appended or removed
        // parameters are seen rather than cut off or refused as truncated.
        p[1] = (p.len() / 8 - 1).min(255) as u8;
    }
    marked(&p)
}

fuzz_target!(|data: &[u8]| {
    let [flags, attack, rest @ ..] = data else {
        return;
    };
    let fx = fixture();
    let stage = (flags & 7) % 5;
    let to = usize::from(attack & 1);
    let remote = match (attack >> 1) & 3 {
        0 | 1 => ADDRS[1 - to],
        2 => STRANGER_V4,
        _ => STRANGER_V6,
    };
    let repeats = 1 + ((attack >> 3) & 3);
    let payload = match (attack >> 5) & 3 {
        0 => rest.to_vec(),
        1 => marked(rest),
        _ => edited(&fx.packets, rest),
    };

    let mut w = World::new(fx.t0);
    w.honest_exchange(stage, Some(&fx.packets));
    if flags & 0x08 != 0 {
        w.lose_in_flight();
    }
    if flags & 0x10 != 0 {
        // Err only for a bad HIT or full tables, neither of which applies here.
        let _ = w.hosts[B].connect(w.now, w.hits[A], ADDRS[B], &[ADDRS[A]]);
    }
    for _ in 0..repeats {
        w.hosts[to].handle_datagram(w.now, ADDRS[to], remote, &payload);
        w.collect_events();
        w.check();
    }
    w.pump();
    w.run_timers(fx.t0 + HORIZON);
});
