//! The node's DNS stub (hipbone::dns::Stub) on arbitrary datagrams, from clients and from
//! the upstream server: nothing may panic. Queries it forwards are answered with the input
//! itself as the upstream's answer, so that the answer path runs on what parses.
//! Seeds: a query for an overlay name, one for another name.
#![no_main]

use hipbone::dns::{Client, Outcome, Step, Stub};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let upstream = "10.0.0.53:53".parse().unwrap();
    let Some(mut stub) = Stub::new("lab.example", vec![upstream], [3; 32]) else {
        return;
    };
    let client = Client {
        addr: "127.0.0.1:5353".parse().unwrap(),
        via: 0,
    };
    let now = Instant::now();
    match stub.query(now, client, data, 1) {
        Step::Resolve(_) => {
            let hit = "2001:25::1".parse().unwrap();
            let found = Outcome::Found { hit, lsi: None, ttl: 7 };
            assert!(stub.resolved(1, found).is_some());
        }
        Step::Forward { bytes, .. } => {
            let _ = stub.from_upstream(upstream, &bytes);
            let _ = stub.from_upstream(upstream, data);
        }
        Step::Reply(_) | Step::Drop => {}
    }
    let _ = stub.from_upstream(upstream, data);
});
