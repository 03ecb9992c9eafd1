//! The inner packets of BEET mode (RFC 7402 App. B): the IPv6 and IPv4 headers that are not
//! sent, parsed when a packet comes from the TUN device ([`parse_ipv6`], [`parse_ipv4`])
//! and rebuilt on receipt ([`write_ipv6_header`], [`write_ipv4_header`]), and the TCP/UDP
//! checksum rewrite between LSI and HIT pseudo-headers. Plain functions over the caller's
//! buffers: no state, no allocation, and the parsers never panic.

use core::ops::Range;

use super::{EspError, IPV4_HEADER_LEN, IPV6_HEADER_LEN, PROTO_TCP, PROTO_UDP};
use crate::inet::{add as add_words, fold};

/// The parts of an inner IPv6 packet that BEET keeps; the header itself is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerV6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The first Next Header: extension headers stay inside the payload.
    pub next_header: u8,
    pub hop_limit: u8,
    /// Traffic class (DSCP and ECN), for the outer header.
    pub traffic_class: u8,
    /// Everything after the fixed header, as far as the Payload Length says; bytes beyond
    /// it are ignored. Jumbograms (Payload Length 0 with a Jumbo option) are not supported:
    /// 0 means an empty payload.
    pub payload: Range<usize>,
}

/// Parses the fixed header of the inner IPv6 `packet` (as read from the TUN device).
pub fn parse_ipv6(packet: &[u8]) -> Result<InnerV6, EspError> {
    let mut inner = ipv6_header_only(packet)?;
    // The header is there: Payload Length is bytes 4 and 5.
    let end = IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    if end > packet.len() {
        return Err(EspError::Truncated);
    }
    inner.payload = IPV6_HEADER_LEN..end;
    Ok(inner)
}

/// The IPv6 fixed header of a possibly truncated packet (ICMP quotes need no payload).
pub(super) fn ipv6_header_only(packet: &[u8]) -> Result<InnerV6, EspError> {
    let h = packet.get(..IPV6_HEADER_LEN).ok_or(EspError::Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(EspError::BadIpHeader);
    }
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    Ok(InnerV6 {
        src,
        dst,
        next_header: h[6],
        hop_limit: h[7],
        traffic_class: (h[0] << 4) | (h[1] >> 4),
        payload: IPV6_HEADER_LEN..packet.len(),
    })
}

/// Writes a fixed IPv6 header (traffic class and flow label 0) into `buf[..40]`, for
/// rebuilding the inner packet on receipt.
///
/// Like smoltcp's `emit`, this trusts the caller's sizing and panics if `buf` is shorter
/// than [`IPV6_HEADER_LEN`] or `payload_len` exceeds 65535. Neither can come from the
/// wire: the payload of an ESP packet that arrived in a UDP datagram is below 65535.
pub fn write_ipv6_header(
    buf: &mut [u8],
    src: [u8; 16],
    dst: [u8; 16],
    next_header: u8,
    payload_len: usize,
    hop_limit: u8,
) {
    let len = u16::try_from(payload_len).expect("IPv6 payload length above 65535");
    let h = &mut buf[..IPV6_HEADER_LEN];
    h[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    h[4..6].copy_from_slice(&len.to_be_bytes());
    h[6] = next_header;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
}

/// The parts of an inner IPv4 packet (LSI addresses) that BEET keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerV4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// The protocol field, named as in [`InnerV6`] since it becomes the ESP Next Header.
    pub next_header: u8,
    pub ttl: u8,
    /// Type of service (DSCP and ECN), for the outer header.
    pub tos: u8,
    /// After the header, as far as the Total Length says; bytes beyond it are ignored.
    pub payload: Range<usize>,
}

/// Parses the header of the inner IPv4 `packet`. Refuses options and fragments as
/// [`EspError::Unsupported`], so the node can count them apart from garbage, and a wrong
/// header checksum as `BadIpHeader` (the header is rebuilt on the far side, so a corrupt
/// one must not be passed on).
pub fn parse_ipv4(packet: &[u8]) -> Result<InnerV4, EspError> {
    let h = packet.get(..IPV4_HEADER_LEN).ok_or(EspError::Truncated)?;
    if h[0] >> 4 != 4 {
        return Err(EspError::BadIpHeader);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < IPV4_HEADER_LEN || total < ihl {
        return Err(EspError::BadIpHeader);
    }
    if total > packet.len() {
        return Err(EspError::Truncated);
    }
    if ihl > IPV4_HEADER_LEN {
        return Err(EspError::Unsupported);
    }
    // More Fragments, or a fragment offset: any piece of a fragmented datagram.
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return Err(EspError::Unsupported);
    }
    if fold(add_words(0, h)) != 0xffff {
        return Err(EspError::BadIpHeader);
    }
    Ok(InnerV4 {
        src: [h[12], h[13], h[14], h[15]],
        dst: [h[16], h[17], h[18], h[19]],
        next_header: h[9],
        ttl: h[8],
        tos: h[1],
        payload: IPV4_HEADER_LEN..total,
    })
}

/// Writes a 20-byte IPv4 header into `buf[..20]`: TOS 0, identification 0 with Don't
/// Fragment set (an atomic datagram, RFC 6864), correct header checksum.
///
/// Panics, like [`write_ipv6_header`], if `buf` is shorter than [`IPV4_HEADER_LEN`] or the
/// total length would exceed 65535 (`payload_len` above 65515; an ESP payload from a UDP
/// datagram is at most 65493).
pub fn write_ipv4_header(
    buf: &mut [u8],
    src: [u8; 4],
    dst: [u8; 4],
    next_header: u8,
    payload_len: usize,
    ttl: u8,
) {
    let total = payload_len
        .checked_add(IPV4_HEADER_LEN)
        .and_then(|t| u16::try_from(t).ok())
        .expect("IPv4 total length above 65535");
    let h = &mut buf[..IPV4_HEADER_LEN];
    h[0] = 0x45;
    h[1] = 0;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..8].copy_from_slice(&[0, 0, 0x40, 0]);
    h[8] = ttl;
    h[9] = next_header;
    h[10..12].fill(0);
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let sum = !fold(add_words(0, h));
    h[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// Converts the TCP or UDP checksum in `payload` (the whole segment) from one pair of
/// pseudo-header addresses to another, e.g. LSIs (4 bytes) to HITs (16 bytes): TCP and UDP
/// over LSIs are checksummed with the HITs (RFC 7401 §4.5.1).
///
/// The IPv4 and IPv6 pseudo-headers differ only in the addresses as far as the sum goes
/// (length and protocol add up the same for segments under 64 KiB), so an incremental
/// update (RFC 1624, eqn. 3) suffices. UDP specifics: a zero checksum (none, allowed over
/// IPv4) stays zero towards IPv4 but is computed in full towards IPv6 (16-byte `new_*`),
/// where zero is forbidden; a computed zero is sent as 0xffff (RFC 768). Other protocols
/// and segments too short to hold the checksum are left alone.
pub fn rewrite_transport_checksum(
    next_header: u8,
    payload: &mut [u8],
    old_src: &[u8],
    old_dst: &[u8],
    new_src: &[u8],
    new_dst: &[u8],
) {
    let at = match next_header {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        _ => return,
    };
    let Some(field) = payload.get(at..at + 2) else {
        return;
    };
    let old = u16::from_be_bytes([field[0], field[1]]);
    let udp = next_header == PROTO_UDP;
    let new = if udp && old == 0 {
        if new_src.len() != 16 {
            return;
        }
        // The field is zero, so summing the whole segment is the RFC 8200 computation.
        let sum = add_words(add_words(add_words(0, new_src), new_dst), payload);
        let len = (payload.len() as u64).min(u64::from(u32::MAX));
        !fold(sum + len + u64::from(PROTO_UDP))
    } else {
        let removed = !fold(add_words(add_words(0, old_src), old_dst));
        let added = fold(add_words(add_words(0, new_src), new_dst));
        !fold(u64::from(!old) + u64::from(removed) + u64::from(added))
    };
    let new = if udp && new == 0 { 0xffff } else { new };
    payload[at..at + 2].copy_from_slice(&new.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::testutil::*;
    use crate::esp::PROTO_ICMP;

    #[test]
    fn ipv6_parse_and_write() {
        let syn = hex(SYN_HIT);
        let mut p = ipv6_packet(PROTO_TCP, &syn);
        // Known bytes: version 6, payload length 20, next header 6, hop limit 64.
        assert_eq!(p[..8], [0x60, 0, 0, 0, 0, 20, 6, 64]);
        assert_eq!(p[8..24], HIT1);
        assert_eq!(p[24..40], HIT2);
        p[1] = 0xb0; // traffic class 0x0b
        p.extend_from_slice(&[0xee; 3]); // trailing bytes beyond Payload Length
        let inner = parse_ipv6(&p).unwrap();
        assert_eq!(
            inner,
            InnerV6 {
                src: HIT1,
                dst: HIT2,
                next_header: 6,
                hop_limit: 64,
                traffic_class: 0x0b,
                payload: 40..60,
            }
        );
        assert_eq!(parse_ipv6(&p[..59]), Err(EspError::Truncated));
        assert_eq!(parse_ipv6(&p[..39]), Err(EspError::Truncated));
        p[0] = 0x40;
        assert_eq!(parse_ipv6(&p), Err(EspError::BadIpHeader));
        // The largest payload length; one more is a caller's bug (see the writer's doc).
        let mut h = [0; 40];
        write_ipv6_header(&mut h, HIT1, HIT2, 6, 65535, 64);
        assert_eq!(h[4..6], [0xff, 0xff]);
    }

    #[test]
    #[should_panic = "IPv6 payload length"]
    fn ipv6_write_refuses_oversize() {
        write_ipv6_header(&mut [0; 40], HIT1, HIT2, 6, 65536, 64);
    }

    #[test]
    #[should_panic = "IPv4 total length"]
    fn ipv4_write_refuses_oversize() {
        write_ipv4_header(&mut [0; 20], LSI1, LSI2, 6, 65516, 64);
    }

    #[test]
    fn ipv4_parse_and_write() {
        let p = ipv4_packet(PROTO_UDP, &[1, 2, 3, 4, 5, 6, 7, 8]);
        // Checksum recomputed over the header is all ones.
        assert_eq!(fold(add_words(0, &p[..20])), 0xffff);
        assert_eq!(p[..10], [0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17]);
        let inner = parse_ipv4(&p).unwrap();
        assert_eq!(
            inner,
            InnerV4 {
                src: LSI1,
                dst: LSI2,
                next_header: 17,
                ttl: 64,
                tos: 0,
                payload: 20..28,
            }
        );
        assert_eq!(parse_ipv4(&p[..27]), Err(EspError::Truncated));
        let refit = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut q = p.clone();
            f(&mut q);
            q[10..12].fill(0);
            let sum = !fold(add_words(0, &q[..20]));
            q[10..12].copy_from_slice(&sum.to_be_bytes());
            parse_ipv4(&q)
        };
        assert_eq!(refit(&|q| q[6] = 0x20), Err(EspError::Unsupported)); // MF
        assert_eq!(refit(&|q| q[7] = 1), Err(EspError::Unsupported)); // offset
        assert_eq!(refit(&|q| q[6] = 0x40).map(|i| i.ttl), Ok(64)); // DF alone is fine
        assert_eq!(refit(&|q| q[0] = 0x46), Err(EspError::Unsupported)); // options
        assert_eq!(refit(&|q| q[0] = 0x44), Err(EspError::BadIpHeader));
        assert_eq!(refit(&|q| q[0] = 0x65), Err(EspError::BadIpHeader));
        assert_eq!(refit(&|q| q[3] = 19), Err(EspError::BadIpHeader));
        let mut bad = p.clone();
        bad[8] = 63; // TTL changed, checksum not
        assert_eq!(parse_ipv4(&bad), Err(EspError::BadIpHeader));
        let mut h = [0; 20];
        write_ipv4_header(&mut h, LSI1, LSI2, 6, 65515, 64);
        assert_eq!(h[2..4], [0xff, 0xff]);
        assert_eq!(fold(add_words(0, &h)), 0xffff);
    }

    /// Full transport checksum over a pseudo-header, for checking the incremental one.
    #[test]
    fn lsi_to_hit_checksum_rfc7401_app_c() {
        // The SYN between LSIs 1.0.0.1 → 1.0.0.2 with its IPv4 checksum, 0xadec (computed
        // independently in Python: the plain RFC 1071 sum over pseudo-header and segment).
        let mut syn = hex(SYN_HIT);
        syn[16..18].copy_from_slice(&[0xad, 0xec]);
        assert_eq!(full_checksum(&LSI1, &LSI2, PROTO_TCP, &syn, 16), 0xadec);
        rewrite_transport_checksum(PROTO_TCP, &mut syn, &LSI1, &LSI2, &HIT1, &HIT2);
        assert_eq!(syn[16..18], [0x6f, 0xaa]);
        assert_eq!(syn, hex(SYN_HIT));
        rewrite_transport_checksum(PROTO_TCP, &mut syn, &HIT1, &HIT2, &LSI1, &LSI2);
        assert_eq!(syn[16..18], [0xad, 0xec]);
    }

    #[test]
    fn udp_checksum_conversion() {
        let mut rng = 7u32;
        for len in 8..80 {
            let mut udp: Vec<u8> = (0..len)
                .map(|_| {
                    rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (rng >> 16) as u8
                })
                .collect();
            udp[4..6].copy_from_slice(&(len as u16).to_be_bytes());
            let v4 = full_checksum(&LSI1, &LSI2, PROTO_UDP, &udp, 6);
            udp[6..8].copy_from_slice(&v4.to_be_bytes());
            rewrite_transport_checksum(PROTO_UDP, &mut udp, &LSI1, &LSI2, &HIT1, &HIT2);
            let v6 = full_checksum(&HIT1, &HIT2, PROTO_UDP, &udp, 6);
            let got = u16::from_be_bytes([udp[6], udp[7]]);
            assert!(got == v6 || (v6 == 0 && got == 0xffff), "len {len}");
            assert_ne!(got, 0);
            // Zero (no checksum) over IPv4 → computed in full for IPv6 …
            udp[6..8].fill(0);
            rewrite_transport_checksum(PROTO_UDP, &mut udp, &LSI1, &LSI2, &HIT1, &HIT2);
            assert_eq!(
                u16::from_be_bytes([udp[6], udp[7]]),
                if v6 == 0 { 0xffff } else { v6 }
            );
            // … and back towards IPv4 it is a normal update.
            rewrite_transport_checksum(PROTO_UDP, &mut udp, &HIT1, &HIT2, &LSI1, &LSI2);
            let back = u16::from_be_bytes([udp[6], udp[7]]);
            assert!(back == v4 || (v4 == 0 && back == 0xffff), "len {len}");
            // Zero stays zero towards IPv4.
            udp[6..8].fill(0);
            rewrite_transport_checksum(PROTO_UDP, &mut udp, &HIT1, &HIT2, &LSI1, &LSI2);
            assert_eq!(udp[6..8], [0, 0]);
        }
    }

    #[test]
    fn udp_computed_zero_is_sent_as_ones() {
        // Choose the payload so the IPv6 checksum comes out as zero (sum all ones).
        let mut udp = vec![0x12, 0x34, 0x56, 0x78, 0, 10, 0, 0, 0, 0];
        let v6 = full_checksum(&HIT1, &HIT2, PROTO_UDP, &udp, 6);
        // Adding the checksum value as data drives the sum to 0xffff, the checksum to 0.
        udp[8..10].copy_from_slice(&v6.to_be_bytes());
        assert_eq!(full_checksum(&HIT1, &HIT2, PROTO_UDP, &udp, 6), 0);
        rewrite_transport_checksum(PROTO_UDP, &mut udp, &LSI1, &LSI2, &HIT1, &HIT2);
        assert_eq!(udp[6..8], [0xff, 0xff]);
    }

    #[test]
    fn checksum_rewrite_ignores_others() {
        let mut icmp = vec![8, 0, 0xab, 0xcd, 0, 1, 0, 1];
        let before = icmp.clone();
        rewrite_transport_checksum(PROTO_ICMP, &mut icmp, &LSI1, &LSI2, &HIT1, &HIT2);
        assert_eq!(icmp, before);
        let mut short_tcp = vec![0; 17];
        rewrite_transport_checksum(PROTO_TCP, &mut short_tcp, &LSI1, &LSI2, &HIT1, &HIT2);
        assert_eq!(short_tcp, vec![0; 17]);
        let mut short_udp = vec![0; 7];
        rewrite_transport_checksum(PROTO_UDP, &mut short_udp, &LSI1, &LSI2, &HIT1, &HIT2);
        assert_eq!(short_udp, vec![0; 7]);
    }
}
