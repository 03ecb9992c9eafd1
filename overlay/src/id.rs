//! Identifiers on the ring: Resource-ID derivation (ORCHID mode) and CHORD-RELOAD ring
//! arithmetic on 128-bit IDs.
//!
//! # Resource-IDs (our R3, RFC 7086 §4 ORCHID mode)
//!
//! Node-IDs are our HITs (R2): ORCHIDv2 (RFC 7343) of HIT suite 5, so every Node-ID starts
//! with the same 32 bits, [`ID_PREFIX`] = `0x2001_0025` (28-bit prefix 2001:20::/28 ‖ 4-bit
//! OGA ID 5). RFC 7086 ORCHID mode gives every RELOAD ID, Resource-IDs included, the ORCHID
//! prefix. With ORCHIDv2 the OGA nibble is fixed too, so we keep all 32 bits:
//!
//! ```text
//! h           = SHA-1(Resource Name)[0..16]        (RFC 6940 §10.2: first 128 bits)
//! Resource-ID = 20 01 00 25 ‖ h[4..16]              (prefix ‖ low 96 bits of h)
//! ```
//!
//! The Resource Name is the string the usage names, as bytes (e.g. a SIP AOR without its
//! scheme, RFC 7904; the 16 raw HIT bytes or a lower-cased peer name for our ID-LOC kinds,
//! R11). Leaving the OGA nibble to the hash would put 15/16 of all keys outside the arc
//! that Node-IDs occupy, and all of those would land on the lowest-addressed peer.
//!
//! # Arithmetic (our R4)
//!
//! Positions are `u128` (the ID read big-endian); arithmetic wraps mod 2^128 exactly as
//! RFC 6940 §10.1 says, and responsibility is `p < k ≤ x`:
//!
//! - [`distance`], [`in_open_closed`] and [`in_open`] run on the **full 128 bits**. This is
//!   the RFC ring, so it stays correct for any ID a peer sends (other OGA IDs, the
//!   wildcard), and for IDs that share the 32-bit prefix it gives the same answers as the
//!   96-bit ring of the occupied arc (the wrap-around of the arc becomes a wrap-around of
//!   the full ring through the unoccupied space, where no ID lies). The test
//!   `intervals_agree_with_the_arc_ring` checks this.
//! - Finger targets ([`finger_target`]) are computed **in the occupied arc**, the low 96
//!   bits (not 100: ORCHIDv1's 100 hash bits are ORCHIDv2's 4 OGA bits + 96 hash bits). The
//!   RFC target `n + 2^(128−i)` is kept for `i ≥ 33` (R4: smaller `i` jumps out of the
//!   arc), but the sum wraps inside the arc instead of leaving it. Done in full 128 bits, a
//!   target past the top of the arc would fall into unoccupied space and every such finger
//!   would collapse onto the lowest peer. [`arc_distance`] is the distance that goes with
//!   it.
//!
//! The RFC's numbering is used: finger `i` targets `n + 2^(128−i)`, so `i = 33` is half-way
//! round the arc and `i = 128` is `n + 1`.

use crate::wire::{NodeId, ResourceId, NODE_ID_LEN};

/// The 32 bits every hipbone Node-ID starts with: ORCHIDv2 prefix 2001:20::/28 ‖ OGA ID 5.
pub const ID_PREFIX: u32 =
    (hip::identity::ORCHID_PREFIX << 4) | hip::identity::HIT_SUITE_EDDSA as u32;

/// Fixed leading bits of every Node-ID and Resource-ID.
pub const PREFIX_BITS: u32 = 32;

/// Bits that vary: the occupied arc holds 2^96 positions.
pub const ARC_BITS: u32 = 128 - PREFIX_BITS;

/// The low [`ARC_BITS`] bits of a position.
pub const ARC_MASK: u128 = (1u128 << ARC_BITS) - 1;

/// First useful finger index: `n + 2^95`, half-way round the arc.
pub const FIRST_FINGER: u32 = PREFIX_BITS + 1;

/// Last finger index: `n + 1`.
pub const LAST_FINGER: u32 = 128;

/// The overlay's 32-bit hash in every forwarding header (R10): the last 4 bytes of SHA-1
/// of the overlay's name.
pub fn overlay_hash(name: &str) -> u32 {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, name.as_bytes());
    let b = d.as_ref();
    u32::from_be_bytes([b[16], b[17], b[18], b[19]])
}

/// The 16-byte Resource-ID of a Resource Name: `ID_PREFIX ‖ SHA-1(name)[4..16]`.
pub fn resource_id_bytes(name: &[u8]) -> [u8; NODE_ID_LEN] {
    let h = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, name);
    let mut out = [0u8; NODE_ID_LEN];
    out[..4].copy_from_slice(&ID_PREFIX.to_be_bytes());
    out[4..].copy_from_slice(&h.as_ref()[4..NODE_ID_LEN]);
    out
}

/// [`resource_id_bytes`] as the wire type.
pub fn resource_id(name: &[u8]) -> ResourceId {
    ResourceId(resource_id_bytes(name).to_vec())
}

/// Ring position of a Resource-ID, if it is 16 bytes long (the only length on our ring).
pub fn resource_position(id: &ResourceId) -> Option<u128> {
    <[u8; NODE_ID_LEN]>::try_from(id.0.as_slice())
        .ok()
        .map(u128::from_be_bytes)
}

impl NodeId {
    /// Ring position: the ID read as a big-endian `u128`.
    pub fn position(self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    /// The Node-ID at ring position `p`.
    pub fn from_position(p: u128) -> NodeId {
        NodeId(p.to_be_bytes())
    }
}

/// Clockwise distance from `from` to `to` on the full ring, mod 2^128.
pub fn distance(from: u128, to: u128) -> u128 {
    to.wrapping_sub(from)
}

/// Clockwise distance inside the arc: of the low 96 bits, mod 2^96. For IDs that share the
/// prefix it orders points exactly as [`distance`] does; it differs only in the size of a
/// step that wraps past the top of the arc.
pub fn arc_distance(from: u128, to: u128) -> u128 {
    to.wrapping_sub(from) & ARC_MASK
}

/// A share of the arc in parts per billion (a Probe's responsible set), as a distance.
pub fn arc_share(ppb: u32) -> u128 {
    ((ARC_MASK >> 32) * u128::from(ppb) / 1_000_000_000) << 32
}

/// `span`, a distance along the arc, in parts per billion of it (rounded down).
pub fn arc_ppb(span: u128) -> u32 {
    ((span >> 32) * 1_000_000_000 / (ARC_MASK >> 32).max(1)) as u32
}

/// `x ∈ (a, b]`, clockwise with wrap-around. `a == b` is the whole ring (a lone peer, its
/// own predecessor, owns every key).
pub fn in_open_closed(x: u128, a: u128, b: u128) -> bool {
    distance(a, x).wrapping_sub(1) <= distance(a, b).wrapping_sub(1)
}

/// `x ∈ (a, b)`, clockwise with wrap-around. `a == b` is the whole ring except `a`.
pub fn in_open(x: u128, a: u128, b: u128) -> bool {
    distance(a, x).wrapping_sub(1) < distance(a, b).wrapping_sub(1)
}

/// Target of finger `i` of node `n` (RFC numbering): `n + 2^(128−i)`, the sum wrapping
/// inside `n`'s arc (the top 32 bits of `n` are kept). `None` unless
/// `FIRST_FINGER ≤ i ≤ LAST_FINGER`.
pub fn finger_target(n: u128, i: u32) -> Option<u128> {
    if !(FIRST_FINGER..=LAST_FINGER).contains(&i) {
        return None;
    }
    let step = 1u128 << (128 - i);
    Some((n & !ARC_MASK) | (n.wrapping_add(step) & ARC_MASK))
}

/// True if `x` is a valid entry for finger `i` of `n` (RFC 6940 §10: in
/// `[n + 2^(128−i), n + 2^(129−i) − 1]`), computed in `n`'s arc like [`finger_target`]:
/// `x` must share `n`'s top 32 bits. False for an index `finger_target` refuses.
pub fn finger_covers(n: u128, i: u32, x: u128) -> bool {
    match finger_target(n, i) {
        Some(t) => (x & !ARC_MASK) == (n & !ARC_MASK) && arc_distance(t, x) < (1u128 << (128 - i)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arc_shares_in_parts_per_billion() {
        assert_eq!(arc_ppb(ARC_MASK), 1_000_000_000);
        assert_eq!(arc_ppb(0), 0);
        assert_eq!(arc_ppb(arc_share(12_345)), 12_344);
        let half = ARC_MASK / 2;
        assert_eq!(arc_ppb(half), 499_999_999);
        assert!(arc_share(500_000_000) <= half);
    }

    /// Our arc's base: `2001:0025::`.
    const BASE: u128 = (ID_PREFIX as u128) << ARC_BITS;
    const TOP: u128 = BASE | ARC_MASK;

    fn hex16(s: &str) -> [u8; 16] {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    #[test]
    fn prefix_is_our_hits() {
        assert_eq!(ID_PREFIX, 0x2001_0025);
        assert_eq!(ARC_BITS, 96);
        let hit = hip::HostIdentity::from_secret([7; 32]).hit();
        assert_eq!(
            NodeId::from(hit).position() >> ARC_BITS,
            u128::from(ID_PREFIX)
        );
    }

    #[test]
    fn resource_id_known_answers() {
        // Independent computation (Python 3):
        //   import hashlib
        //   d = hashlib.sha1(b"alice@example.com").digest()
        //   # fc2398a73dd54d6237c4fdb58fd7d75347cf5af3
        //   (bytes.fromhex("20010025") + d[4:16]).hex()
        //   # '200100253dd54d6237c4fdb58fd7d753'
        // and the same for b"" (SHA-1 da39a3ee5e6b4b0d3255bfef95601890afd80709).
        assert_eq!(
            resource_id_bytes(b"alice@example.com"),
            hex16("200100253dd54d6237c4fdb58fd7d753")
        );
        assert_eq!(
            resource_id_bytes(b""),
            hex16("200100255e6b4b0d3255bfef95601890")
        );
        let r = resource_id(b"alice@example.com");
        assert_eq!(r.to_bytes()[0], 16);
        assert_eq!(
            resource_position(&r),
            Some(0x2001_0025_3dd5_4d62_37c4_fdb5_8fd7_d753)
        );
        assert_eq!(resource_position(&ResourceId(b"FOO".to_vec())), None);
    }

    #[test]
    fn node_position_round_trip() {
        let n = NodeId(hex16("2001002500000000000000000000abcd"));
        assert_eq!(n.position(), BASE | 0xabcd);
        assert_eq!(NodeId::from_position(BASE | 0xabcd), n);
        assert_eq!(NodeId::WILDCARD.position(), u128::MAX);
    }

    #[test]
    fn distances() {
        assert_eq!(distance(5, 9), 4);
        assert_eq!(distance(9, 5), u128::MAX - 3);
        assert_eq!(distance(u128::MAX, 0), 1);
        assert_eq!(distance(0, u128::MAX), u128::MAX);
        assert_eq!(distance(7, 7), 0);
        // Inside the arc, across its top: 2 steps in the arc, far round the full ring.
        assert_eq!(arc_distance(TOP, BASE | 1), 2);
        assert_eq!(distance(TOP, BASE | 1), (u128::MAX - ARC_MASK) + 2);
        assert_eq!(arc_distance(BASE | 9, BASE | 5), ARC_MASK - 3);
        assert_eq!(arc_distance(BASE | 5, BASE | 9), 4);
    }

    #[test]
    fn intervals_known_answers() {
        // (a, b] without wrap.
        assert!(!in_open_closed(10, 10, 20));
        assert!(in_open_closed(11, 10, 20));
        assert!(in_open_closed(20, 10, 20));
        assert!(!in_open_closed(21, 10, 20));
        // (a, b] across 2^128 → 0.
        assert!(in_open_closed(u128::MAX, u128::MAX - 1, 1));
        assert!(in_open_closed(0, u128::MAX - 1, 1));
        assert!(in_open_closed(1, u128::MAX - 1, 1));
        assert!(!in_open_closed(2, u128::MAX - 1, 1));
        assert!(!in_open_closed(u128::MAX - 1, u128::MAX - 1, 1));
        assert!(in_open_closed(0, u128::MAX, 0));
        assert!(!in_open_closed(u128::MAX, u128::MAX, 0));
        // a == b: the whole ring.
        assert!(in_open_closed(42, 42, 42));
        assert!(in_open_closed(0, 42, 42));
        // (a, b).
        assert!(!in_open(10, 10, 20));
        assert!(in_open(19, 10, 20));
        assert!(!in_open(20, 10, 20));
        assert!(in_open(0, u128::MAX, 1));
        assert!(!in_open(1, u128::MAX, 1));
        assert!(!in_open(u128::MAX, u128::MAX, 1));
        assert!(!in_open(0, u128::MAX, 0)); // empty: nothing strictly between neighbours
        assert!(!in_open(5, 4, 5));
        // a == b: all but a.
        assert!(!in_open(42, 42, 42));
        assert!(in_open(43, 42, 42));
        assert!(in_open(41, 42, 42));
        // Inside the arc across its top: the wildcard and other prefixes lie in between
        // on the full ring, but no Node-ID of ours does.
        assert!(in_open_closed(BASE, TOP, BASE | 5));
        assert!(in_open_closed(u128::MAX, TOP, BASE | 5));
        assert!(!in_open_closed(BASE | 6, TOP, BASE | 5));
    }

    #[test]
    fn finger_targets() {
        let n = BASE | 0x1234;
        assert_eq!(finger_target(n, 128), Some(n + 1));
        assert_eq!(finger_target(n, 127), Some(n + 2));
        assert_eq!(finger_target(n, 33), Some(n + (1u128 << 95)));
        assert_eq!(finger_target(n, 32), None);
        assert_eq!(finger_target(n, 0), None);
        assert_eq!(finger_target(n, 129), None);
        // Wrap inside the arc, not out of it.
        assert_eq!(finger_target(TOP, 128), Some(BASE));
        let high = BASE | (3u128 << 94); // three quarters round the arc
        assert_eq!(finger_target(high, 33), Some(BASE | (1u128 << 94)));
        assert_eq!(finger_target(high, 34), Some(BASE));
        // Another arc (e.g. a foreign OGA ID) keeps its own top bits.
        assert_eq!(finger_target(u128::MAX, 128), Some(!ARC_MASK));
    }

    #[test]
    fn finger_ranges() {
        let n = BASE | 0x1234;
        // Finger 128: [n+1, n+1]; finger 127: [n+2, n+3].
        assert!(finger_covers(n, 128, n + 1));
        assert!(!finger_covers(n, 128, n + 2));
        assert!(!finger_covers(n, 127, n + 1));
        assert!(finger_covers(n, 127, n + 2));
        assert!(finger_covers(n, 127, n + 3));
        assert!(!finger_covers(n, 127, n + 4));
        // Finger 33: [n + 2^95, n − 1] wrapping in the arc.
        assert!(finger_covers(n, 33, n + (1u128 << 95)));
        assert!(finger_covers(n, 33, TOP));
        assert!(finger_covers(n, 33, BASE));
        assert!(finger_covers(n, 33, n - 1));
        assert!(!finger_covers(n, 33, n));
        assert!(!finger_covers(n, 33, n + (1u128 << 95) - 1));
        // Outside the arc, or a refused index.
        assert!(!finger_covers(n, 33, u128::MAX));
        assert!(!finger_covers(n, 32, n + 1));
    }

    /// xorshift64*, seeded: deterministic test input without a crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn u128(&mut self) -> u128 {
            (u128::from(self.next()) << 64) | u128::from(self.next())
        }

        /// Mostly values near each other and near the edges, so that equal endpoints and
        /// wrap-around come up often.
        fn point(&mut self, near: &[u128]) -> u128 {
            match self.next() % 8 {
                0 => 0,
                1 => u128::MAX,
                2 | 3 if !near.is_empty() => {
                    let base = near[(self.next() as usize) % near.len()];
                    base.wrapping_add(u128::from(self.next() % 5))
                        .wrapping_sub(2)
                }
                4 => u128::from(self.next() % 4),
                5 => u128::MAX - u128::from(self.next() % 4),
                _ => self.u128(),
            }
        }
    }

    /// The textbook case analysis.
    fn ref_open_closed(x: u128, a: u128, b: u128) -> bool {
        match a.cmp(&b) {
            core::cmp::Ordering::Less => a < x && x <= b,
            core::cmp::Ordering::Greater => x > a || x <= b,
            core::cmp::Ordering::Equal => true,
        }
    }

    fn ref_open(x: u128, a: u128, b: u128) -> bool {
        match a.cmp(&b) {
            core::cmp::Ordering::Less => a < x && x < b,
            core::cmp::Ordering::Greater => x > a || x < b,
            core::cmp::Ordering::Equal => x != a,
        }
    }

    #[test]
    fn intervals_agree_with_reference() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200_000 {
            let a = rng.point(&[]);
            let b = rng.point(&[a]);
            let x = rng.point(&[a, b]);
            assert_eq!(
                in_open_closed(x, a, b),
                ref_open_closed(x, a, b),
                "{x} ({a}, {b}]"
            );
            assert_eq!(in_open(x, a, b), ref_open(x, a, b), "{x} ({a}, {b})");
        }
    }

    /// The claim of the module doc: for IDs in our arc, the full 128-bit intervals give
    /// the answers of the 96-bit ring of the arc.
    #[test]
    fn intervals_agree_with_the_arc_ring() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let in_arc = |v: u128| BASE | (v & ARC_MASK);
        for _ in 0..200_000 {
            let a = in_arc(rng.point(&[]));
            let b = in_arc(rng.point(&[a]));
            let x = in_arc(rng.point(&[a, b]));
            let (la, lb, lx) = (a & ARC_MASK, b & ARC_MASK, x & ARC_MASK);
            assert_eq!(in_open_closed(x, a, b), ref_open_closed(lx, la, lb));
            assert_eq!(in_open(x, a, b), ref_open(lx, la, lb));
            // arc_distance orders points from a as distance does.
            assert_eq!(
                distance(a, x) <= distance(a, b),
                arc_distance(a, x) <= arc_distance(a, b)
            );
        }
    }

    #[test]
    fn overlay_hash_is_the_tail_of_sha1_of_the_name() {
        // hashlib.sha1(b"hipsip.example.net").hexdigest()
        //   = "6e7cbcad927ed5c5df344342da8de9d2a0dd80d5"
        assert_eq!(overlay_hash("hipsip.example.net"), 0xa0dd_80d5);
    }
}
