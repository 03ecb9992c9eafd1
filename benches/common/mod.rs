//! What the benchmarks share: the first half of a base exchange between a fresh initiator
//! and a responder, done in process.

use hip::{Config, Host, HostIdentity};
use std::net::SocketAddr;
use std::time::Instant;

pub const RESPONDER: &str = "198.51.100.2:10500";

/// Initiator number `k`, with an identity and an address of its own, sends its I1 to `r`;
/// `r` answers with an R1 and the initiator makes its I2. Returns the initiator, its
/// address, and the I1 and I2 as `r` receives them.
pub fn half_exchange(k: usize, now: Instant, r: &mut Host) -> (Host, SocketAddr, Vec<u8>, Vec<u8>) {
    let server: SocketAddr = RESPONDER.parse().unwrap();
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
    (init, from, i1, i2)
}
