//! `overlay::Node::handle_message` on arbitrary bytes from a linked peer: a joined peer
//! with two links must never panic, whatever arrives, and its queues stay bounded.
//! Seeds: the RELOAD vectors of fuzz/seeds/reload_parse (unframed messages parse further).
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay::node::{Config, Node};
use overlay::wire::NodeId;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let me = hip::HostIdentity::from_secret([1; 32]);
    let peer = NodeId::from(hip::HostIdentity::from_secret([2; 32]).hit());
    let other = NodeId::from(hip::HostIdentity::from_secret([3; 32]).hit());
    let mut node = Node::new(me, Config::default(), now);
    node.join(now, &[]);
    node.link_up(now, peer);
    node.link_up(now, other);
    // The first byte picks the link; the rest is one message, then the same bytes again
    // after a timer run (so state left by the first copy is exercised).
    let (link, bytes) = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => (other, rest),
        Some((_, rest)) => (peer, rest),
        None => (peer, data),
    };
    node.handle_message(now, link, bytes);
    let later = now + Duration::from_secs(4);
    node.handle_timeout(later);
    // No deadline left behind: a driver would wake up for it forever.
    assert!(node.poll_timeout().is_none_or(|t| t > later));
    node.handle_message(later, link, bytes);
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    let _ = node.poll_timeout();
});
