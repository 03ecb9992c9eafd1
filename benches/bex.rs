//! Base-exchange benchmark: how many exchanges one responder core completes per second,
//! beside the crypto bound measured in the same run (one X25519 agreement, one Ed25519
//! verification, one Ed25519 signature, KEYMAT and two HIP_MACs per exchange; the R1
//! signature is precomputed and shared by all initiators, so it is not part of the bound).
//!
//! `cargo bench --bench bex` prints criterion's figures for both, then a summary line with
//! the ratio and the size of one association's state. Under `cargo test` it runs each
//! piece once, unmeasured. Either way every timed exchange must have been accepted by the
//! responder, or the run fails.

mod common;

use criterion::{black_box, Criterion};
use hip::crypto::{EdX25519, Profile};
use hip::{Config, Host, HostIdentity};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const RESPONDER_SEED: [u8; 32] = [7; 32];

/// The packets of one exchange as the responder receives them.
struct Exchange {
    from: SocketAddr,
    i1: Vec<u8>,
    i2: Vec<u8>,
}

fn responder(now: Instant) -> Host {
    let mut config = Config::default();
    // Measure the work per exchange, not the difficulty policy.
    config.difficulty.raise_above = u32::MAX;
    config.max_associations = usize::MAX;
    Host::new(
        HostIdentity::from_secret([1; 32]),
        config,
        RESPONDER_SEED,
        now,
    )
}

/// Runs `n` exchanges against a responder built like `responder(now)`, recording what the
/// responder receives. A fresh responder made the same way accepts the same packets.
fn record(n: usize, now: Instant) -> Vec<Exchange> {
    let mut r = responder(now);
    (0..n)
        .map(|k| {
            let (_, from, i1, i2) = common::half_exchange(k, now, &mut r);
            Exchange { from, i1, i2 }
        })
        .collect()
}

/// The responder's whole share of `exchanges`: answer each I1, accept each I2, send each R2.
fn serve(r: &mut Host, now: Instant, exchanges: &[Exchange]) {
    let server: SocketAddr = common::RESPONDER.parse().unwrap();
    for x in exchanges {
        r.handle_datagram(now, server, x.from, &x.i1);
        black_box(r.poll_transmit());
        r.handle_datagram(now, server, x.from, &x.i2);
        black_box(r.poll_transmit());
        black_box(r.poll_event());
    }
}

/// Every exchange `serve` timed must have been accepted: a responder that refused I2s
/// early (a regression in the puzzle, MAC or signature checks, or a limit) would do less
/// work and look faster. Checked after the clock stopped.
fn assert_all_accepted(r: &Host, served: usize) {
    assert_eq!(
        r.stats().i2_accepted,
        served as u64,
        "the responder accepted {} of {served} timed exchanges",
        r.stats().i2_accepted
    );
    assert_eq!(
        r.associations().count(),
        served,
        "associations after serving"
    );
}

/// The crypto of one exchange on the responder, done directly.
struct Bound {
    ours: hip::crypto::DhKeyPair,
    their_public: Vec<u8>,
    signer: HostIdentity,
    message: Vec<u8>,
    signature: [u8; 64],
}

impl Bound {
    fn new() -> Bound {
        let p = EdX25519;
        let signer = HostIdentity::from_secret([3; 32]);
        let message = vec![0x5a; 420]; // about an I2's signed part
        Bound {
            ours: p.dh_keypair([4; 32]),
            their_public: p.dh_keypair([5; 32]).public,
            signature: signer.sign(&message),
            signer,
            message,
        }
    }

    fn run(&self) {
        let p = EdX25519;
        let kij = p.dh_agree(&self.ours, &self.their_public).unwrap();
        let mut keymat = [0u8; 136];
        p.keymat(
            &kij,
            &[1; 32],
            &[2; 32],
            &hip::Hit([1; 16]),
            &hip::Hit([2; 16]),
            &mut keymat,
        );
        self.signer
            .public()
            .verify(&self.message, &self.signature)
            .unwrap();
        black_box(self.signer.sign(&self.message[..200]));
        let mut mac = [0u8; 32];
        p.mac(&keymat[..32], &self.message, &mut mac);
        p.mac(&keymat[32..64], &self.message[..200], &mut mac);
        black_box(mac);
    }
}

/// Exchanges per second over `rounds` fresh responders serving `pool`.
fn responder_rate(now: Instant, pool: &[Exchange], rounds: usize) -> f64 {
    let mut best = 0f64;
    for _ in 0..rounds {
        let mut r = responder(now);
        let t = Instant::now();
        serve(&mut r, now, pool);
        best = best.max(pool.len() as f64 / t.elapsed().as_secs_f64());
        assert_all_accepted(&r, pool.len());
    }
    best
}

fn bound_rate(b: &Bound, n: usize, rounds: usize) -> f64 {
    let mut best = 0f64;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..n {
            b.run();
        }
        best = best.max(n as f64 / t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let now = Instant::now();
    let pool = record(if measuring { 2000 } else { 20 }, now);
    let bound = Bound::new();

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("crypto bound (DH + verify + sign + KEYMAT + 2 MACs)", |b| {
        b.iter(|| bound.run())
    });
    c.bench_function("responder: I1 + I2 of one exchange", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let chunk = left.min(pool.len());
                let mut r = responder(now);
                let t = Instant::now();
                serve(&mut r, now, &pool[..chunk]);
                total += t.elapsed();
                assert_all_accepted(&r, chunk);
                left -= chunk;
            }
            total
        })
    });
    c.final_summary();

    // The summary: both rates measured back to back, best of several rounds each.
    let rounds = if measuring { 5 } else { 1 };
    let served_rate = responder_rate(now, &pool, rounds);
    let bound_rate = bound_rate(&bound, pool.len(), rounds);
    let mut served = responder(now);
    serve(&mut served, now, &pool);
    assert_all_accepted(&served, pool.len());
    let state = served
        .associations()
        .next()
        .and_then(|a| served.association_bytes(&a.peer))
        .unwrap_or(0);
    println!(
        "summary: responder {served_rate:.0} exchanges/s, crypto bound {bound_rate:.0}/s, ratio {:.1} %; one association's state {state} bytes",
        100.0 * served_rate / bound_rate
    );
}
