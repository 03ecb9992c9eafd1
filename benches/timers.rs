//! One turn of a driver's loop on a host with many established associations: the cost of
//! `poll_timeout` and `handle_timeout` when nothing is due, which every wake-up pays. The
//! host keeps the associations' deadlines in a queue; the baseline, run in the same
//! invocation over the same associations, is what a turn cost before the queue: two scans
//! of every association (`poll_timeout` and `handle_timeout` each visited all of them).
//! Also printed: the host's resident memory per association, from the process's VmRSS
//! before and after the associations were made.
//!
//! `cargo bench --bench timers` builds 100,000 associations by real base exchanges (a few
//! minutes); under `cargo test` it builds 1,000 and runs each piece once.

mod common;

use criterion::{black_box, Criterion};
use hip::{AssocState, Config, Host, HostIdentity};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

/// A responder with `n` established associations, each from a real base exchange with its
/// own initiator, which then sends one ESP packet (so the responder's side completes as it
/// does with traffic). One exchange per virtual millisecond, with the puzzle secret rotating
/// every 10 s: the puzzle ledger holds what two generations saw, as a busy responder's
/// does, not every exchange of the run.
fn responder_with(n: usize, start: Instant) -> (Host, Instant) {
    let server: SocketAddr = common::RESPONDER.parse().unwrap();
    let mut config = Config::default();
    config.difficulty.raise_above = u32::MAX;
    config.max_associations = usize::MAX;
    config.r1_per_source = u32::MAX;
    config.secret_rotation = Duration::from_secs(10);
    let mut r = Host::new(HostIdentity::from_secret([1; 32]), config, [7; 32], start);
    let mut now = start;
    for k in 0..n {
        now = start + Duration::from_millis(k as u64);
        r.handle_timeout(now);
        // (The answers its timers send — dummy packets to initiators gone quiet — are lost.)
        while r.poll_transmit().is_some() {}
        let (mut init, from, _, i2) = common::half_exchange(k, now, &mut r);
        r.handle_datagram(now, server, from, &i2);
        let r2 = r.poll_transmit().unwrap().payload;
        while r.poll_transmit().is_some() {}
        while r.poll_event().is_some() {}
        init.handle_datagram(now, from, server, &r2);
        let mut buf = vec![0u8; 64];
        let payload = hip::esp::ESP_HEADER_LEN..hip::esp::ESP_HEADER_LEN + 8;
        let hip::Outbound::Send { datagram, .. } =
            init.encapsulate(now, &r.hit(), 17, &mut buf, payload)
        else {
            panic!("the initiator has no SA after its exchange");
        };
        let mut esp = datagram.to_vec();
        r.decapsulate(now, server, from, &mut esp);
        while r.poll_transmit().is_some() {}
        while r.poll_event().is_some() {}
    }
    let established = r
        .associations()
        .filter(|a| a.state == AssocState::Established)
        .count();
    assert_eq!(established, n, "established associations");
    (r, now)
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let n = if measuring { 100_000 } else { 1_000 };
    let now = Instant::now();
    let before = rss_kib();
    let started = Instant::now();
    let (mut r, last) = responder_with(n, now);
    let made_in = started.elapsed();
    let per_assoc = (rss_kib() - before) as f64 * 1024.0 / n as f64;
    // A moment when nothing is due: after the exchanges, before any idle timeout or
    // secret rotation.
    // The last dummy packets go 0.75 s after the last exchange.
    let settled = last + Duration::from_secs(1);
    r.handle_timeout(settled);
    while r.poll_transmit().is_some() {}
    let turn_at = settled + Duration::from_millis(1);
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
