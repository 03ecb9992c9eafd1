//! One turn of a driver's loop on a host with many established associations: the cost of
//! `poll_timeout` and `handle_timeout` when nothing is due, which every wake-up pays. The
//! host keeps the associations' deadlines in a queue; the baseline, run in the same
//! invocation over the same associations, is what a turn cost before the queue: two scans
//! of every association (`poll_timeout` and `handle_timeout` each visited all of them).
//! Also printed: the host's resident memory per association, from the process's VmRSS
//! before and after the associations were made.
//!
//! `cargo bench --bench timers` builds 100,000 associations by real base exchanges (about
//! a minute); under `cargo test` it builds 1,000 and runs each piece once.

use criterion::{black_box, Criterion};
use hip::{AssocState, Config, Host, HostIdentity};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const RESPONDER: &str = "198.51.100.2:10500";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A responder with `n` associations, each from a real base exchange with its own
/// initiator, then established (the responder's exchange-complete timer ran).
fn responder_with(n: usize, now: Instant) -> Host {
    let server: SocketAddr = RESPONDER.parse().unwrap();
    let mut config = Config::default();
    config.difficulty.raise_above = u32::MAX;
    config.max_associations = usize::MAX;
    config.r1_per_source = u32::MAX;
    // One puzzle generation serves them all: its ledger must hold every solution.
    config.max_solutions = usize::MAX;
    let mut r = Host::new(HostIdentity::from_secret([1; 32]), config, [7; 32], now);
    for k in 0..n {
        let from = SocketAddr::from((
            [198, 51, 100, 10 + (k % 200) as u8],
            1024 + (k % 60000) as u16,
        ));
        let mut secret = [0u8; 32];
        secret[..8].copy_from_slice(&(k as u64 + 1000).to_be_bytes());
        let mut init = Host::new(
            HostIdentity::from_secret(secret),
            Config::default(),
            secret,
            now,
        );
        init.connect(now, r.hit(), from, &[server]).unwrap();
        let i1 = init.poll_transmit().unwrap().payload;
        r.handle_datagram(now, server, from, &i1);
        let r1 = r.poll_transmit().unwrap().payload;
        init.handle_datagram(now, from, server, &r1);
        let i2 = init.poll_transmit().unwrap().payload;
        r.handle_datagram(now, server, from, &i2);
        while r.poll_transmit().is_some() {}
        while r.poll_event().is_some() {}
    }
    // The exchange-complete timers (R2-SENT to ESTABLISHED) fall due together.
    let later = now + Duration::from_secs(10);
    r.handle_timeout(later);
    while r.poll_transmit().is_some() {}
    while r.poll_event().is_some() {}
    let established = r
        .associations()
        .filter(|a| a.state == AssocState::Established)
        .count();
    assert_eq!(established, n, "established associations");
    r
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let n = if measuring { 100_000 } else { 1_000 };
    let now = Instant::now();
    let before = rss_kib();
    let started = Instant::now();
    let mut r = responder_with(n, now);
    let made_in = started.elapsed();
    let per_assoc = (rss_kib() - before) as f64 * 1024.0 / n as f64;
    // A moment when nothing is due: after the exchanges, before any idle timeout.
    let turn_at = now + Duration::from_secs(11);
    assert!(r.poll_timeout().is_some_and(|t| t > turn_at));

    let mut c = Criterion::default().configure_from_args();
    c.bench_function(&format!("turn with the queue ({n} associations)"), |b| {
        b.iter(|| {
            black_box(r.poll_timeout());
            r.handle_timeout(turn_at);
        })
    });
    c.bench_function(&format!("turn by scans ({n} associations)"), |b| {
        b.iter(|| {
            black_box(r.scan_timers());
            black_box(r.scan_timers());
        })
    });
    c.final_summary();

    // The summary: both measured back to back, best of several rounds of many turns.
    let rounds = if measuring { 5 } else { 1 };
    let turns = if measuring { 20_000 } else { 10 };
    let best = |f: &mut dyn FnMut()| {
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..turns {
                    f();
                }
                t.elapsed() / turns
            })
            .min()
            .unwrap()
    };
    let queue = best(&mut || {
        black_box(r.poll_timeout());
        r.handle_timeout(turn_at);
    });
    let scan_turns = if measuring { 20 } else { 2 };
    let scans = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..scan_turns {
                black_box(r.scan_timers());
                black_box(r.scan_timers());
            }
            t.elapsed() / scan_turns
        })
        .min()
        .unwrap();
    assert!(r.timers_agree());
    println!(
        "{n} established associations (made in {:.1} s): a loop turn costs {:?} with the \
         timer queue, {:?} by two scans: {:.0}x; resident memory {per_assoc:.0} bytes per \
         association (VmRSS growth / {n})",
        made_in.as_secs_f64(),
        queue,
        scans,
        scans.as_secs_f64() / queue.as_secs_f64().max(1e-12)
    );
}
