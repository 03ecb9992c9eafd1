//! The ICMP errors the node sends back to its own stack when an inner packet does not fit
//! the tunnel (ICMPv6 Packet Too Big and ICMPv4 Fragmentation Needed) or its destination
//! cannot be found (ICMPv6 Destination Unreachable), built into the
//! caller's buffer with the rules of RFC 4443 and RFC 1122 on when not to send one. Rate
//! limiting is the caller's.

use super::beet::ipv6_header_only;
use super::{
    write_ipv4_header, write_ipv6_header, IPV4_HEADER_LEN, IPV6_HEADER_LEN, PROTO_ICMP,
    PROTO_ICMPV6,
};
use crate::inet::{add as add_words, fold};

/// An ICMPv6 error must fit into the IPv6 minimum MTU (RFC 4443 §2.4 (c)).
const IPV6_MIN_MTU: usize = 1280;
/// Hop limit / TTL of the ICMP errors we originate towards the local stack.
const ICMP_HOP_LIMIT: u8 = 64;

/// Builds, in `buf`, an ICMPv6 Packet Too Big (RFC 4443 §3.2) about the inner IPv6 packet
/// `offending`, addressed back to its source and sent from its destination, quoting as
/// much of it as keeps the whole message within 1280 bytes (and `buf`). Returns the
/// length of the IPv6 packet written, or 0 when none may or can be sent: `offending` is
/// not an IPv6 packet, is itself an ICMPv6 error (RFC 4443 §2.4 (e.1), judged by its first
/// Next Header), has an unspecified or multicast source or a multicast destination (we
/// would have no unicast source for the reply), or `buf` cannot hold the header and the
/// quoted IPv6 header. Rate limiting is the caller's.
pub fn icmpv6_packet_too_big(buf: &mut [u8], mtu: u32, offending: &[u8]) -> usize {
    icmpv6_error(buf, 2, 0, mtu, offending)
}

/// ICMPv6 Destination Unreachable code 3, "address unreachable" (RFC 4443 §3.1).
pub const ICMPV6_ADDRESS_UNREACHABLE: u8 = 3;

/// Builds, in `buf`, an ICMPv6 Destination Unreachable (RFC 4443 §3.1) with `code` about
/// the inner IPv6 packet `offending`, from its destination to its source, under the same
/// rules and with the same quoting as [`icmpv6_packet_too_big`].
pub fn icmpv6_unreachable(buf: &mut [u8], code: u8, offending: &[u8]) -> usize {
    icmpv6_error(buf, 1, code, 0, offending)
}

/// The ICMPv6 error `kind`/`code` with the 32-bit field after the checksum set to `word`.
fn icmpv6_error(buf: &mut [u8], kind: u8, code: u8, word: u32, offending: &[u8]) -> usize {
    const HEAD: usize = IPV6_HEADER_LEN + 8;
    let Ok(inner) = ipv6_header_only(offending) else {
        return 0;
    };
    let is_error = inner.next_header == PROTO_ICMPV6
        && offending.get(IPV6_HEADER_LEN).is_some_and(|&t| t < 128);
    if is_error || inner.src == [0; 16] || inner.src[0] == 0xff || inner.dst[0] == 0xff {
        return 0;
    }
    let quote = offending
        .len()
        .min(IPV6_MIN_MTU - HEAD)
        .min(buf.len().saturating_sub(HEAD));
    if quote < IPV6_HEADER_LEN {
        return 0;
    }
    let icmp_len = 8 + quote;
    // quote <= 1232 and buf holds HEAD + quote: the writer's conditions hold.
    write_ipv6_header(
        buf,
        inner.dst,
        inner.src,
        PROTO_ICMPV6,
        icmp_len,
        ICMP_HOP_LIMIT,
    );
    let icmp = &mut buf[IPV6_HEADER_LEN..HEAD + quote];
    icmp[..4].copy_from_slice(&[kind, code, 0, 0]);
    icmp[4..8].copy_from_slice(&word.to_be_bytes());
    icmp[8..].copy_from_slice(&offending[..quote]);
    let pseudo = add_words(add_words(0, &inner.dst), &inner.src);
    let sum = !fold(add_words(
        pseudo + icmp_len as u64 + u64::from(PROTO_ICMPV6),
        icmp,
    ));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    HEAD + quote
}

/// Builds, in `buf`, an ICMPv4 Destination Unreachable / Fragmentation Needed (type 3 code
/// 4, RFC 1191) with Next-Hop MTU `mtu` about the inner IPv4 packet `offending`, from its
/// destination to its source, quoting its IP header and the first 8 bytes of data (RFC
/// 792). Returns the length written, or 0 when none may or can be sent (RFC 1122
/// §3.2.2): `offending` is not IPv4, is a non-first fragment or an ICMP error, has a source
/// that is not one host (0.0.0.0, multicast, broadcast) or a multicast or broadcast
/// destination, or `buf` is too short. Rate limiting is the caller's.
pub fn icmpv4_frag_needed(buf: &mut [u8], mtu: u16, offending: &[u8]) -> usize {
    let Some(h) = offending.get(..IPV4_HEADER_LEN) else {
        return 0;
    };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || ihl < IPV4_HEADER_LEN || ihl > offending.len() {
        return 0;
    }
    let src = [h[12], h[13], h[14], h[15]];
    let dst = [h[16], h[17], h[18], h[19]];
    let not_one_host = |a: [u8; 4]| a == [0; 4] || a == [255; 4] || a[0] >= 224;
    if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 || not_one_host(src) || not_one_host(dst) {
        return 0;
    }
    // ICMP errors: Destination Unreachable, Source Quench, Redirect, Time Exceeded,
    // Parameter Problem.
    if h[9] == PROTO_ICMP
        && offending
            .get(ihl)
            .is_some_and(|t| matches!(t, 3 | 4 | 5 | 11 | 12))
    {
        return 0;
    }
    let quote = (ihl + 8).min(offending.len());
    let icmp_len = 8 + quote;
    let total = IPV4_HEADER_LEN + icmp_len;
    // quote <= 60 + 8, so only the buffer can be too small.
    if buf.len() < total {
        return 0;
    }
    write_ipv4_header(buf, dst, src, PROTO_ICMP, icmp_len, ICMP_HOP_LIMIT);
    let icmp = &mut buf[IPV4_HEADER_LEN..total];
    icmp[..6].copy_from_slice(&[3, 4, 0, 0, 0, 0]);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(&offending[..quote]);
    let sum = !fold(add_words(0, icmp));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::testutil::*;
    use crate::esp::{parse_ipv4, parse_ipv6, PROTO_TCP, PROTO_UDP};

    #[test]
    fn packet_too_big() {
        let big = ipv6_packet(PROTO_TCP, &vec![0x5a; 1400]);
        let mut buf = [0; 1500];
        let n = icmpv6_packet_too_big(&mut buf, 1380, &big);
        assert_eq!(n, 1280);
        let msg = &buf[..n];
        let ip = parse_ipv6(msg).unwrap();
        assert_eq!((ip.src, ip.dst, ip.next_header), (HIT2, HIT1, PROTO_ICMPV6));
        assert_eq!(ip.payload, 40..1280);
        assert_eq!(msg[40..42], [2, 0]);
        assert_eq!(msg[44..48], 1380u32.to_be_bytes());
        assert_eq!(msg[48..], big[..1232]);
        // The checksum verifies: recomputed with the field zeroed it equals the field.
        let field = u16::from_be_bytes([msg[42], msg[43]]);
        assert_eq!(
            full_checksum(&HIT2, &HIT1, PROTO_ICMPV6, &msg[40..], 2),
            field
        );

        // A short offending packet is quoted whole; a small buffer limits the quote.
        let small = ipv6_packet(PROTO_UDP, &[1; 8]);
        assert_eq!(icmpv6_packet_too_big(&mut buf, 1280, &small), 48 + 48);
        assert_eq!(icmpv6_packet_too_big(&mut buf[..100], 1280, &big), 100);
        let msg = &buf[..100];
        let field = u16::from_be_bytes([msg[42], msg[43]]);
        assert_eq!(
            full_checksum(&HIT2, &HIT1, PROTO_ICMPV6, &msg[40..], 2),
            field
        );
        assert_eq!(icmpv6_packet_too_big(&mut buf[..87], 1280, &big), 0);

        // Never about ICMPv6 errors, unspecified or multicast sources, multicast dsts.
        let err = ipv6_packet(PROTO_ICMPV6, &[1, 0, 0, 0]);
        assert_eq!(icmpv6_packet_too_big(&mut buf, 1280, &err), 0);
        let echo = ipv6_packet(PROTO_ICMPV6, &[128, 0, 0, 0]);
        assert!(icmpv6_packet_too_big(&mut buf, 1280, &echo) > 0);
        let mut mcast = big.clone();
        mcast[24] = 0xff;
        assert_eq!(icmpv6_packet_too_big(&mut buf, 1280, &mcast), 0);
        let mut unspec = big.clone();
        unspec[8..24].fill(0);
        assert_eq!(icmpv6_packet_too_big(&mut buf, 1280, &unspec), 0);
        assert_eq!(icmpv6_packet_too_big(&mut buf, 1280, &big[..39]), 0);
        assert_eq!(icmpv6_packet_too_big(&mut buf, 1280, &hex("45000014")), 0);
    }

    #[test]
    fn address_unreachable_known_answer() {
        // An echo request (id 1, seq 1, "hi") from HIT1 to HIT2; the answer comes from
        // HIT2 with type 1 code 3, the unused word zero and the request quoted whole.
        // Checksum computed independently: sum of the pseudo-header (HIT2, HIT1, length
        // 58, next header 58) and the message, folded and inverted.
        let echo = ipv6_packet(PROTO_ICMPV6, &hex("80000000000100016869"));
        let mut buf = [0; 200];
        let n = icmpv6_unreachable(&mut buf, ICMPV6_ADDRESS_UNREACHABLE, &echo);
        assert_eq!(n, 40 + 8 + 50);
        let ip = parse_ipv6(&buf[..n]).unwrap();
        assert_eq!((ip.src, ip.dst, ip.next_header), (HIT2, HIT1, PROTO_ICMPV6));
        assert_eq!(buf[40..48], hex("0103fb4700000000")[..]);
        assert_eq!(buf[48..n], echo[..]);
        let field = u16::from_be_bytes([buf[42], buf[43]]);
        assert_eq!(
            full_checksum(&HIT2, &HIT1, PROTO_ICMPV6, &buf[40..n], 2),
            field
        );
        // Never about an ICMPv6 error.
        let err = ipv6_packet(PROTO_ICMPV6, &buf[40..n]);
        assert_eq!(icmpv6_unreachable(&mut buf, 3, &err), 0);
    }

    #[test]
    fn frag_needed() {
        let big = ipv4_packet(PROTO_UDP, &[0x33; 1400]);
        let mut buf = [0; 100];
        let n = icmpv4_frag_needed(&mut buf, 1380, &big);
        assert_eq!(n, 20 + 8 + 28);
        let msg = &buf[..n];
        let ip = parse_ipv4(msg).unwrap();
        assert_eq!((ip.src, ip.dst, ip.next_header), (LSI2, LSI1, PROTO_ICMP));
        assert_eq!(ip.payload, 20..56);
        assert_eq!(msg[20..22], [3, 4]);
        assert_eq!(msg[24..28], [0, 0, 0x05, 0x64]);
        assert_eq!(msg[28..], big[..28]);
        // ICMP checksum over the message, no pseudo-header: verifies to all ones.
        assert_eq!(fold(add_words(0, &msg[20..])), 0xffff);

        assert_eq!(icmpv4_frag_needed(&mut buf[..55], 1380, &big), 0);
        let mut frag = big.clone();
        frag[7] = 1; // offset 8: not the first fragment
        assert_eq!(icmpv4_frag_needed(&mut buf, 1380, &frag), 0);
        let unreachable = ipv4_packet(PROTO_ICMP, &[3, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(icmpv4_frag_needed(&mut buf, 1380, &unreachable), 0);
        let echo = ipv4_packet(PROTO_ICMP, &[8, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(icmpv4_frag_needed(&mut buf, 1380, &echo), 56);
        for (at, addr) in [(12, [0; 4]), (12, [224, 0, 0, 1]), (16, [255; 4])] {
            let mut p = big.clone();
            p[at..at + 4].copy_from_slice(&addr);
            assert_eq!(icmpv4_frag_needed(&mut buf, 1380, &p), 0);
        }
        assert_eq!(icmpv4_frag_needed(&mut buf, 1380, &big[..19]), 0);
        assert_eq!(icmpv4_frag_needed(&mut buf, 1380, &ipv6_packet(6, &[])), 0);
    }
}
