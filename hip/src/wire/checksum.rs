//! The HIP checksum (RFC 7401 §5.1.1): the Internet checksum over an IPv4 or IPv6
//! pseudo-header with protocol 139 and the HIP packet.
//!
//! `hip` is always exactly the HIP packet (`Packet::as_bytes`): its length is the
//! pseudo-header's upper-layer length.

use std::net::{IpAddr, Ipv6Addr};

use super::header::field;
use crate::inet::{add, fold};

/// IP protocol number of HIP.
const PROTOCOL_HIP: u8 = 139;

/// The checksum of `hip` (its checksum field is treated as zero) between `src` and `dst`.
/// Both addresses must be of one family; a mixed pair uses the IPv6 form with the IPv4
/// address mapped.
pub fn checksum(src: IpAddr, dst: IpAddr, hip: &[u8]) -> u16 {
    // Summing around the field rather than copying the packet to zero it.
    let before = hip.get(..field::CHECKSUM.start).unwrap_or(hip);
    let after = hip.get(field::CHECKSUM.end..).unwrap_or_default();
    !fold(add(
        add(pseudo_header_sum(src, dst, hip.len()), before),
        after,
    ))
}

/// Writes the checksum into bytes 4..6. No-op if `hip` is shorter than 6 bytes.
pub fn fill_checksum(src: IpAddr, dst: IpAddr, hip: &mut [u8]) {
    let sum = checksum(src, dst, hip);
    if let Some(field) = hip.get_mut(field::CHECKSUM) {
        field.copy_from_slice(&sum.to_be_bytes());
    }
}

/// True if the checksum field of `hip` is correct.
///
/// Verified the RFC 1071 way (the sum over everything, field included, is all ones), so
/// both one's-complement zeros, 0x0000 and 0xffff, are accepted in the field.
pub fn verify_checksum(src: IpAddr, dst: IpAddr, hip: &[u8]) -> bool {
    hip.len() >= field::CHECKSUM.end
        && fold(add(pseudo_header_sum(src, dst, hip.len()), hip)) == 0xffff
}

/// The one's-complement sum of the pseudo-header.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: usize) -> u64 {
    // A HIP packet is at most 2048 bytes, so the length casts cannot truncate a real one;
    // absurd input gets a wrong sum rather than a panic. Every part has even length, so
    // summing them one after the other keeps the 16-bit words aligned.
    let sum_parts = |parts: &[&[u8]]| parts.iter().fold(0, |sum, part| add(sum, part));
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum_parts(&[
            &s.octets(),
            &d.octets(),
            &[0, PROTOCOL_HIP],
            &(len as u16).to_be_bytes(),
        ]),
        _ => sum_parts(&[
            &as_v6(src).octets(),
            &as_v6(dst).octets(),
            &(len as u32).to_be_bytes(),
            &[0, 0, 0, PROTOCOL_HIP],
        ]),
    }
}

fn as_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::app_c_i1;
    use super::*;
    use std::net::Ipv4Addr;

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    #[test]
    fn rfc7401_appendix_c_ipv6() {
        let (src, dst) = (v6("2001:db8::1"), v6("2001:db8::2"));
        assert_eq!(checksum(src, dst, &app_c_i1()), 0x1a5e);
    }

    #[test]
    fn rfc7401_appendix_c_ipv4() {
        let (src, dst) = (v4([192, 0, 2, 1]), v4([192, 0, 2, 2]));
        assert_eq!(checksum(src, dst, &app_c_i1()), 0xf1ce);
    }

    #[test]
    fn fill_then_verify() {
        let (src, dst) = (v6("2001:db8::1"), v6("2001:db8::2"));
        let mut i1 = app_c_i1();
        assert!(!verify_checksum(src, dst, &i1));
        fill_checksum(src, dst, &mut i1);
        assert_eq!(i1[4..6], [0x1a, 0x5e]);
        assert!(verify_checksum(src, dst, &i1));
        // The field's old value does not enter the computation.
        assert_eq!(checksum(src, dst, &i1), 0x1a5e);
        // A changed address or bit is caught (a swapped pair is not: the sum commutes).
        assert!(!verify_checksum(src, v6("2001:db8::3"), &i1));
        i1[20] ^= 0x01;
        assert!(!verify_checksum(src, dst, &i1));
    }

    #[test]
    fn both_zeros_are_accepted() {
        let (src, dst) = (v4([192, 0, 2, 1]), v4([192, 0, 2, 2]));
        let mut i1 = app_c_i1();
        // Controls := 0xf1ce makes the one's-complement sum all ones: the checksum is 0.
        i1[6..8].copy_from_slice(&0xf1ceu16.to_be_bytes());
        assert_eq!(checksum(src, dst, &i1), 0);
        for field in [[0, 0], [0xff, 0xff]] {
            i1[4..6].copy_from_slice(&field);
            assert!(verify_checksum(src, dst, &i1));
        }
    }

    #[test]
    fn mixed_families_use_the_mapped_ipv6_form() {
        let (v4_src, v6_dst) = (v4([192, 0, 2, 1]), v6("2001:db8::2"));
        let mapped = v6("::ffff:192.0.2.1");
        let i1 = app_c_i1();
        assert_eq!(checksum(v4_src, v6_dst, &i1), checksum(mapped, v6_dst, &i1));
        assert_eq!(checksum(v6_dst, v4_src, &i1), checksum(v6_dst, mapped, &i1));
    }

    #[test]
    fn short_and_odd_inputs_do_not_panic() {
        let (src, dst) = (v4([192, 0, 2, 1]), v4([192, 0, 2, 2]));
        for len in 0..8 {
            let mut b = vec![0xa5; len];
            let _ = checksum(src, dst, &b);
            fill_checksum(src, dst, &mut b);
            if len < 6 {
                assert_eq!(b, vec![0xa5; len], "no-op below 6 bytes");
                assert!(!verify_checksum(src, dst, &b));
            } else {
                assert!(verify_checksum(src, dst, &b));
            }
        }
        // An odd last byte counts as the high half of a word.
        let odd = [0u8, 0, 0, 0, 0, 0, 0x12];
        let even = [0u8, 0, 0, 0, 0, 0, 0x12, 0];
        let (src, dst) = (v4([0; 4]), v4([0; 4]));
        // Same words summed; only the pseudo-header length differs (7 vs 8).
        assert_eq!(
            checksum(src, dst, &odd),
            checksum(src, dst, &even).wrapping_add(1)
        );
    }
}
