//! `overlay::Node::handle_message` on arbitrary bytes from a linked peer: a joined peer
//! with two links must never panic, whatever arrives, and its queues stay bounded.
//! Seeds: the RELOAD vectors of fuzz/seeds/reload_parse (unframed messages parse further).
//!
//! Bounded, checked: the node runs with small bounds (`Config::max_*` of 2 to 4), and
//! nothing is drained while the message arrives again and again, each time with a Ping to
//! each link peer (transactions, transmits, and after their retransmissions time out,
//! Failed events) and a timer run 4 s later. After every call each queue and table
//! (`Node::occupancy`) must be within its bound, and the drains must yield no more than
//! the bounds. The local load fills every queue past its bound on any input, so an
//! overflow that is not refused fails at once.
//!
//! Behind a valid signature: when bit 1 of the first byte is set and the rest parses as a
//! message, it is signed again by the link peer's key (its certificate the only one, the
//! first via entry made the link peer, the overlay ours; seeds `signed_*`), so that requests and answers reach what lies
//! behind the signature check (storage, topology, transactions), not only the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay::node::{Config, Node};
use overlay::wire::{
    Destination, GenericCertificate, Message, NodeId, Signature, SignatureAndHashAlgorithm,
};
use std::time::{Duration, Instant};

/// Rounds (message, two pings, timer run) before anything is drained: the pings alone
/// exceed every bound below several times over.
const COPIES: u32 = 8;

fn config() -> Config {
    Config {
        max_transmits: 4,
        max_events: 2,
        max_pending: 4,
        max_app_pending: 2,
        max_copies: 2,
        max_connecting: 2,
        max_keys: 2,
        ..Config::default()
    }
}

fn assert_bounded(node: &Node, config: &Config, after: &str) {
    if let Some(queue) = node.occupancy().over(config) {
        panic!(
            "{queue} over its bound after {after}: {:?}",
            node.occupancy()
        );
    }
}

/// `bytes` as a message of `overlay` signed by `by`, sent by it (or `None` if they do not
/// parse).
fn signed_by(by: &hip::HostIdentity, overlay: u32, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut msg = Message::parse(bytes).ok()?;
    msg.header.overlay = overlay;
    let key = by.public().public_bytes();
    if let Some(first) = msg.header.via_list.first_mut() {
        *first = Destination::Node(NodeId::from(by.hit()));
    }
    msg.security.certificates = vec![GenericCertificate::ed25519(&key)];
    msg.security.signature = Signature {
        algorithm: SignatureAndHashAlgorithm::ED25519,
        identity: overlay::storage::signer_identity(&key),
        value: Vec::new(),
    };
    msg.security.signature.value = by.sign(&msg.signed_bytes()).to_vec();
    Some(msg.to_bytes())
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let config = config();
    let me = hip::HostIdentity::from_secret([1; 32]);
    let peer = NodeId::from(hip::HostIdentity::from_secret([2; 32]).hit());
    let other = NodeId::from(hip::HostIdentity::from_secret([3; 32]).hit());
    let mut node = Node::new(me, config.clone(), now);
    node.join(now, &[]);
    node.link_up(now, peer);
    node.link_up(now, other);
    assert_bounded(&node, &config, "the links came up");
    // The first byte picks the link; the rest is one message, sent again and again, with a
    // timer run between copies (so state left by one copy is exercised by the next).
    let (link, bytes) = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => (other, rest),
        Some((_, rest)) => (peer, rest),
        None => (peer, data),
    };
    let resigned = data.first().filter(|b| *b & 2 != 0).and_then(|_| {
        let secret = if link == peer { [2; 32] } else { [3; 32] };
        signed_by(
            &hip::HostIdentity::from_secret(secret),
            config.overlay,
            bytes,
        )
    });
    let bytes = resigned.as_deref().unwrap_or(bytes);
    let mut t = now;
    for _ in 0..COPIES {
        node.handle_message(t, link, bytes);
        assert_bounded(&node, &config, "a message");
        for to in [peer, other] {
            // At the bound the request is refused (Error::TooManyRequests), as decided.
            let _ = node.ping(t, Destination::Node(to));
            assert_bounded(&node, &config, "a ping");
        }
        t += Duration::from_secs(4);
        node.handle_timeout(t);
        assert_bounded(&node, &config, "a timer run");
        // No deadline left behind: a driver would wake up for it forever.
        assert!(node.poll_timeout().is_none_or(|next| next > t));
    }
    let mut transmits = 0;
    while node.poll_transmit().is_some() {
        transmits += 1;
    }
    let mut events = 0;
    while node.poll_event().is_some() {
        events += 1;
    }
    assert!(transmits <= config.max_transmits, "{transmits} transmits");
    assert!(events <= config.max_events, "{events} events");
    let _ = node.poll_timeout();
});
