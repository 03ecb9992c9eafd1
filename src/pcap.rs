//! pcap files (LINKTYPE_RAW: raw IPv4 or IPv6 packets) for Wireshark and tshark: the
//! simulator's virtual wire, where each datagram becomes an IP packet with a UDP header and
//! correct checksums so that HIP on port 10500 is dissected as on a real link, and the
//! daemon's capture of the overlay's links (`[overlay] pcap`).

use hip::inet::{add, fold};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// LINKTYPE_RAW: packets begin with an IPv4 or IPv6 header.
const LINKTYPE_RAW: u32 = 101;

/// Collects a capture in memory; [`Writer::finish`] hands out the file's bytes.
#[derive(Debug, Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

/// The pcap file header (microsecond timestamps, raw IP packets).
pub fn file_header() -> Vec<u8> {
    let mut bytes = Vec::with_capacity(24);
    bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // microsecond timestamps
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&4u16.to_le_bytes());
    bytes.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    bytes.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    bytes.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    bytes.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    bytes
}

/// One record: the IP `packet` seen at `at` (since the epoch of the capture).
pub fn record(at: Duration, packet: &[u8]) -> Vec<u8> {
    let len = packet.len() as u32;
    let mut bytes = Vec::with_capacity(16 + packet.len());
    bytes.extend_from_slice(&(at.as_secs() as u32).to_le_bytes());
    bytes.extend_from_slice(&at.subsec_micros().to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(packet);
    bytes
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            bytes: file_header(),
        }
    }

    /// Appends one datagram seen at virtual time `at`. Mixed-family pairs cannot be one
    /// IP packet and are skipped.
    pub fn write(&mut self, at: Duration, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
        let Some(packet) = ip_udp(from, to, payload) else {
            return;
        };
        self.bytes.extend_from_slice(&record(at, &packet));
    }

    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }

    pub fn save(self, path: &std::path::Path) -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(&self.bytes)?;
        f.sync_all()
    }
}

/// An IP packet carrying `payload` in UDP from `from` to `to`.
pub fn ip_udp(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
    let udp_len = 8 + payload.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&to.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut out = Vec::with_capacity(40 + udp_len);
    let pseudo_sum = match (from.ip(), to.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + udp_len) as u16;
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[8] = 64;
            h[9] = 17;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = !fold(add(0, &h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&h);
            let mut p = Vec::with_capacity(12);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, 17]);
            p.extend_from_slice(&(udp_len as u16).to_be_bytes());
            add(0, &p)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = [0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            h[6] = 17;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            out.extend_from_slice(&h);
            let mut p = Vec::with_capacity(40);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(udp_len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 17]);
            add(0, &p)
        }
        _ => return None,
    };
    let mut c = !fold(add(pseudo_sum, &udp));
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&udp);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_udp_known_bytes() {
        // A 4-byte payload from 198.51.100.1:10500 to 198.51.100.2:10500.
        let p = ip_udp(
            "198.51.100.1:10500".parse().unwrap(),
            "198.51.100.2:10500".parse().unwrap(),
            &[1, 2, 3, 4],
        )
        .unwrap();
        assert_eq!(p.len(), 32);
        assert_eq!(&p[..4], &[0x45, 0, 0, 32]);
        // The IPv4 header sums to 0xffff with its checksum in place.
        assert_eq!(fold(add(0, &p[..20])), 0xffff);
        assert_eq!(&p[20..26], &[0x29, 0x04, 0x29, 0x04, 0, 12]);
        // The UDP checksum verifies: pseudo-header plus segment sum to 0xffff.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 17, 0, 12]);
        assert_eq!(fold(add(add(0, &pseudo), &p[20..])), 0xffff);
        // Hand-computed value of that checksum.
        assert_eq!(u16::from_be_bytes([p[26], p[27]]), 0x555d);
    }

    #[test]
    fn mixed_families_are_skipped() {
        assert!(ip_udp(
            "198.51.100.1:1".parse().unwrap(),
            "[2001:db8::1]:1".parse().unwrap(),
            &[]
        )
        .is_none());
    }
}
