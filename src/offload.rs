//! Offloads between the TUN device and ESP, as pure functions on caller-owned buffers (no
//! I/O, no allocation):
//!
//! - [`VnetHdr`]: the `virtio_net_hdr` that an IFF_VNET_HDR device puts in front of every
//!   packet, parsed and emitted (linux/virtio_net.h; fields in host byte order, as the legacy
//!   header is on a little-endian host and TUN uses it unless told otherwise).
//! - [`complete_checksum`]: finishes a transport checksum the kernel left partial
//!   (`VIRTIO_NET_HDR_F_NEEDS_CSUM`: the field holds the pseudo-header sum, the rest is ours).
//! - [`TcpSegments`]: cuts the TCP part of a TSO super-packet into MSS-sized segments, each
//!   with its own sequence number, flags and full checksum.
//! - [`Coalescer`]: the inverse on receipt, joining consecutive in-order segments of one TCP
//!   flow into one super-packet that the kernel takes with `VIRTIO_NET_HDR_GSO_TCPV4/6`.
//!
//! Why segmentation stops at the transport layer: ESP in BEET mode does not carry the inner
//! IP header (hip::esp), so the per-segment IP fields a NIC would fix (total length,
//! identification, header checksum) never reach the wire; the receiver rebuilds its own
//! header. What must be right per segment is the TCP header and its checksum, computed over
//! the pseudo-header the peer will check: the HITs (RFC 7401 §4.5.1), also for flows that
//! the local stack opened between LSIs.

/// Length of the `virtio_net_hdr` without `num_buffers`.
pub use crate::tun::VNET_HDR_LEN;
use hip::esp::PROTO_TCP;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is partial.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`.
pub const F_DATA_VALID: u8 = 2;
const GSO_ECN: u8 = 0x80;

/// `gso_type` without its ECN bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GsoType {
    /// One ordinary packet.
    #[default]
    None,
    /// A TCP over IPv4 super-packet.
    TcpV4,
    /// A TCP over IPv6 super-packet.
    TcpV6,
    /// A UDP super-packet (USO; not asked for, so not expected).
    UdpL4,
    /// Anything else (the legacy UFO type 3, future types), kept as it came.
    Unknown(u8),
}

impl From<u8> for GsoType {
    fn from(raw: u8) -> GsoType {
        match raw {
            0 => GsoType::None,
            1 => GsoType::TcpV4,
            4 => GsoType::TcpV6,
            // VIRTIO_NET_HDR_GSO_UDP_L4; Debian's headers lack it.
            5 => GsoType::UdpL4,
            other => GsoType::Unknown(other),
        }
    }
}

impl From<GsoType> for u8 {
    fn from(t: GsoType) -> u8 {
        match t {
            GsoType::None => 0,
            GsoType::TcpV4 => 1,
            GsoType::TcpV6 => 4,
            GsoType::UdpL4 => 5,
            GsoType::Unknown(raw) => raw,
        }
    }
}

/// The `virtio_net_hdr` in front of every packet of an IFF_VNET_HDR device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: GsoType,
    /// `VIRTIO_NET_HDR_GSO_ECN`: the sender set CWR on the first segment and it must stay
    /// there only.
    pub ecn: bool,
    /// Length of the headers (IP and transport) before the data.
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS).
    pub gso_size: u16,
    /// Where checksumming starts, counted from the IP header.
    pub csum_start: u16,
    /// Where in the transport header the checksum goes, counted from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header at the start of `buf`; `None` if `buf` is shorter.
    pub fn parse(buf: &[u8]) -> Option<VnetHdr> {
        let b = buf.get(..VNET_HDR_LEN)?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: GsoType::from(b[1] & !GSO_ECN),
            ecn: b[1] & GSO_ECN != 0,
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Writes the header into `buf[..VNET_HDR_LEN]`; panics if `buf` is shorter.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = u8::from(self.gso_type) | if self.ecn { GSO_ECN } else { 0 };
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }

    /// Whether the transport checksum is partial and must be completed.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

// --- Internet checksum (RFC 1071) --------------------------------------------------------

pub use hip::inet::{add as checksum_add, fold as checksum_fold};

/// The part of a TCP or UDP pseudo-header sum that does not depend on the segment: source,
/// destination (4 or 16 bytes each) and protocol. Add the segment length to finish it; the
/// IPv4 and IPv6 forms sum alike for segments under 64 KiB.
pub fn pseudo_header_sum(src: &[u8], dst: &[u8], protocol: u8) -> u64 {
    checksum_add(checksum_add(0, src), dst) + u64::from(protocol)
}

/// Completes the partial checksum of `packet` (an IP packet after its `virtio_net_hdr`):
/// the field at `csum_start + csum_offset` holds the pseudo-header sum, and the checksum
/// covers everything from `csum_start` on. False, and nothing written, if the offsets lie
/// outside the packet.
pub fn complete_checksum(packet: &mut [u8], csum_start: u16, csum_offset: u16) -> bool {
    let start = usize::from(csum_start);
    let at = start + usize::from(csum_offset);
    if at + 2 > packet.len() {
        return false;
    }
    let sum = !checksum_fold(checksum_add(0, &packet[start..]));
    // 0 and 0xffff are the same number in one's complement; UDP reserves 0 for "none".
    let sum = if sum == 0 { 0xffff } else { sum };
    packet[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

// --- TCP segmentation -------------------------------------------------------------------

const TCP_SEQ: core::ops::Range<usize> = 4..8;
const TCP_FLAGS: usize = 13;
const TCP_CHECKSUM: core::ops::Range<usize> = 16..18;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;
const TCP_CWR: u8 = 0x80;

/// Why a super-packet cannot be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentError {
    /// The TCP header is cut short or its data offset is impossible.
    BadTcpHeader,
    /// A segment size of 0.
    ZeroMss,
}

/// The plan for cutting the TCP part of a TSO super-packet (TCP header and all its data, as
/// BEET carries it) into segments of `mss` data bytes, the last one shorter or equal. Each
/// segment gets the super-packet's TCP header with sequence number advanced by the data
/// before it; FIN and PSH stay on the last segment only and CWR on the first only, as the
/// kernel's own `tcp_gso_segment` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegments {
    header_len: usize,
    data_len: usize,
    mss: usize,
    seq: u32,
    flags: u8,
}

impl TcpSegments {
    /// Plans the segmentation of `tcp` (a TCP header and its data) with `mss` data bytes
    /// per segment.
    pub fn new(tcp: &[u8], mss: u16) -> Result<TcpSegments, SegmentError> {
        if mss == 0 {
            return Err(SegmentError::ZeroMss);
        }
        let offset = tcp.get(12).ok_or(SegmentError::BadTcpHeader)?;
        let header_len = usize::from(offset >> 4) * 4;
        if header_len < 20 || header_len > tcp.len() {
            return Err(SegmentError::BadTcpHeader);
        }
        Ok(TcpSegments {
            header_len,
            data_len: tcp.len() - header_len,
            mss: usize::from(mss),
            seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            flags: tcp[TCP_FLAGS],
        })
    }

    /// How many segments (at least one, even without data).
    pub fn count(&self) -> usize {
        self.data_len.div_ceil(self.mss).max(1)
    }

    /// The data of segment `i` within the super-packet's TCP part.
    fn data(&self, i: usize) -> core::ops::Range<usize> {
        let start = self.header_len + (i * self.mss).min(self.data_len);
        let end = self.header_len + ((i + 1) * self.mss).min(self.data_len);
        start..end
    }

    /// Length of segment `i` (header and data).
    pub fn len(&self, i: usize) -> usize {
        self.header_len + self.data(i).len()
    }

    /// Whether there is no data at all (a bare header, one segment).
    pub fn is_empty(&self) -> bool {
        self.data_len == 0
    }

    /// Writes segment `i` of `tcp` (the same bytes given to [`TcpSegments::new`]) into
    /// `out[..self.len(i)]` and returns its length. The checksum is computed in full over
    /// `pseudo` ([`pseudo_header_sum`] of the addresses the receiver checks) plus the
    /// segment's length and bytes. Panics if `out` is shorter or `tcp` is not the same.
    pub fn write(&self, tcp: &[u8], i: usize, out: &mut [u8], pseudo: u64) -> usize {
        let data = self.data(i);
        let len = self.header_len + data.len();
        let out = &mut out[..len];
        out[..self.header_len].copy_from_slice(&tcp[..self.header_len]);
        out[self.header_len..].copy_from_slice(&tcp[data]);
        let offset = (i * self.mss) as u32;
        out[TCP_SEQ].copy_from_slice(&self.seq.wrapping_add(offset).to_be_bytes());
        let mut flags = self.flags;
        if i + 1 < self.count() {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        out[TCP_FLAGS] = flags;
        out[TCP_CHECKSUM].fill(0);
        let sum = !checksum_fold(checksum_add(pseudo + len as u64, out));
        out[TCP_CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        len
    }
}

// --- TCP coalescing on receipt ----------------------------------------------------------

/// The super-packet under construction: what the next packet must match to continue it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flow {
    ipv6: bool,
    /// IP header length (20 or 40; BEET rebuilds headers without options).
    ip_len: usize,
    /// TCP header length.
    tcp_len: usize,
    /// Source address then destination address (IPv4 in the first 4 bytes of each half).
    addrs: [u8; 32],
    ports: [u8; 4],
    /// Sequence number that continues the super-packet.
    next_seq: u32,
    ack: [u8; 4],
    window: [u8; 2],
    /// TCP flags other than PSH.
    flags: u8,
    /// TCP options, which must repeat byte for byte (timestamps), as GRO requires.
    options: [u8; 40],
    /// Data bytes of each segment (the last may be shorter, and then closes it).
    mss: usize,
    segments: usize,
    /// A segment had PSH: it was the last one, and the super-packet carries PSH.
    psh: bool,
    closed: bool,
}

/// Largest IP packet the kernel takes from a TUN device in one write.
const MAX_SUPER: usize = 65535;

/// Joins consecutive in-order TCP segments of one flow (same addresses, ports, ACK number,
/// window, flags and options, data of one size with at most a shorter last one, PSH only on
/// the last) into one super-packet, the way the kernel's GRO would, so that the local stack
/// gets one packet (and the TUN device one write) per up to 64 KiB.
///
/// The caller owns the output buffer: it writes the first packet (IP header, TCP header,
/// data) right after [`VNET_HDR_LEN`] free bytes; for each following packet
/// [`Coalescer::offer`] says whether its data may be appended and the caller copies only
/// that; [`Coalescer::finish`] then fixes the IP length fields, the IPv4 header checksum and
/// the TCP flags and checksum, and writes the `virtio_net_hdr` in front.
#[derive(Debug, Default)]
pub struct Coalescer {
    flow: Option<Flow>,
    /// Bytes of the IP packet built so far.
    len: usize,
}

/// What [`Coalescer::offer`] decided for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Nothing was pending: copy the whole packet after the free header room; it starts a
    /// super-packet.
    Start,
    /// Copy the packet's bytes from `data_start` on to offset `at` of the super-packet's
    /// IP packet (its end so far).
    Append { data_start: usize, at: usize },
    /// It does not continue the super-packet: finish and write that one, then offer this
    /// packet again.
    Flush,
    /// Not coalescible (not TCP data, other flags, IP options) and nothing is pending:
    /// deliver it alone with a plain header.
    Alone,
}

/// A finished packet: `len` bytes of IP packet after the `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub len: usize,
    /// How many segments it joined.
    pub segments: usize,
}

impl Coalescer {
    /// Whether a super-packet is being built.
    pub fn is_pending(&self) -> bool {
        self.flow.is_some()
    }

    /// Decides what to do with `packet` (a complete IP packet with a correct TCP checksum,
    /// as `inner::Edge::incoming` builds it). On `Start` and `Append` the packet is counted
    /// in, and the caller must copy as told.
    pub fn offer(&mut self, packet: &[u8]) -> Offer {
        let Some(next) = parse_tcp_data(packet) else {
            return if self.flow.is_some() {
                Offer::Flush
            } else {
                Offer::Alone
            };
        };
        let data_start = next.ip_len + next.tcp_len;
        let data_len = packet.len() - data_start;
        let Some(cur) = self.flow.as_mut() else {
            self.flow = Some(Flow {
                mss: data_len,
                segments: 1,
                closed: next.psh,
                ..next
            });
            self.len = packet.len();
            return Offer::Start;
        };
        let continues = !cur.closed
            && cur.ipv6 == next.ipv6
            && cur.tcp_len == next.tcp_len
            && cur.addrs == next.addrs
            && cur.ports == next.ports
            && cur.ack == next.ack
            && cur.window == next.window
            && cur.flags == next.flags
            && cur.next_seq == seq_of(packet, next.ip_len)
            && cur.options == next.options
            && data_len <= cur.mss
            && self.len + data_len <= MAX_SUPER;
        if !continues {
            return Offer::Flush;
        }
        cur.next_seq = next.next_seq;
        cur.segments += 1;
        cur.psh |= next.psh;
        cur.closed = data_len < cur.mss || next.psh;
        let at = self.len;
        self.len += data_len;
        Offer::Append { data_start, at }
    }

    /// Finishes the super-packet in `buf` (the `virtio_net_hdr` goes into the first
    /// [`VNET_HDR_LEN`] bytes, the IP packet follows): a single packet goes out as it came
    /// with a plain header; a joined one gets its IP length (and IPv4 header checksum), PSH
    /// if any segment had it, a partial TCP checksum and a GSO header. `None` if nothing is
    /// pending.
    pub fn finish(&mut self, buf: &mut [u8]) -> Option<Finished> {
        let flow = self.flow.take()?;
        let len = self.len;
        if flow.segments == 1 {
            VnetHdr::default().emit(buf);
            return Some(Finished { len, segments: 1 });
        }
        let packet = &mut buf[VNET_HDR_LEN..VNET_HDR_LEN + len];
        let tcp_total = len - flow.ip_len;
        // len <= MAX_SUPER: the casts are exact.
        if flow.ipv6 {
            packet[4..6].copy_from_slice(&(tcp_total as u16).to_be_bytes());
        } else {
            packet[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            packet[10..12].fill(0);
            let sum = !checksum_fold(checksum_add(0, &packet[..flow.ip_len]));
            packet[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        if flow.psh {
            packet[flow.ip_len + TCP_FLAGS] |= TCP_PSH;
        }
        // CHECKSUM_PARTIAL as the kernel keeps it for a GSO packet: the pseudo-header sum
        // over the whole TCP length, not complemented. Every segment's own checksum was
        // right and ESP authenticated the data; the stack does not check it again.
        let addr_len = if flow.ipv6 { 16 } else { 4 };
        let pseudo = pseudo_header_sum(
            &flow.addrs[..addr_len],
            &flow.addrs[16..16 + addr_len],
            PROTO_TCP,
        ) + tcp_total as u64;
        let at = flow.ip_len + TCP_CHECKSUM.start;
        packet[at..at + 2].copy_from_slice(&checksum_fold(pseudo).to_be_bytes());
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if flow.ipv6 {
                GsoType::TcpV6
            } else {
                GsoType::TcpV4
            },
            ecn: false,
            hdr_len: (flow.ip_len + flow.tcp_len) as u16,
            gso_size: flow.mss as u16,
            csum_start: flow.ip_len as u16,
            csum_offset: TCP_CHECKSUM.start as u16,
        }
        .emit(buf);
        Some(Finished {
            len,
            segments: flow.segments,
        })
    }
}

fn seq_of(packet: &[u8], ip_len: usize) -> u32 {
    let s = &packet[ip_len + 4..ip_len + 8];
    u32::from_be_bytes([s[0], s[1], s[2], s[3]])
}

/// The flow record of `packet` if it is TCP data that may be coalesced: IPv4 without
/// options and not fragmented, or IPv6 with TCP right after the fixed header; ACK set and
/// none of SYN, FIN, RST, URG, CWR; at least one byte of data.
fn parse_tcp_data(packet: &[u8]) -> Option<Flow> {
    let mut addrs = [0u8; 32];
    let (ipv6, ip_len) = match packet.first()? >> 4 {
        4 => {
            let h = packet.get(..20)?;
            let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
            if h[0] != 0x45 || h[9] != PROTO_TCP || fragment {
                return None;
            }
            addrs[..4].copy_from_slice(&h[12..16]);
            addrs[16..20].copy_from_slice(&h[16..20]);
            (false, 20)
        }
        6 => {
            let h = packet.get(..40)?;
            if h[6] != PROTO_TCP {
                return None;
            }
            addrs.copy_from_slice(&h[8..40]);
            (true, 40)
        }
        _ => return None,
    };
    let tcp = &packet[ip_len..];
    let tcp_len = usize::from(*tcp.get(12)? >> 4) * 4;
    if tcp_len < 20 || tcp.len() <= tcp_len {
        return None;
    }
    let flags = tcp[TCP_FLAGS];
    if flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_URG | TCP_CWR) != 0 || flags & TCP_ACK == 0 {
        return None;
    }
    let mut options = [0u8; 40];
    options[..tcp_len - 20].copy_from_slice(&tcp[20..tcp_len]);
    Some(Flow {
        ipv6,
        ip_len,
        tcp_len,
        addrs,
        ports: [tcp[0], tcp[1], tcp[2], tcp[3]],
        next_seq: seq_of(packet, ip_len).wrapping_add((tcp.len() - tcp_len) as u32),
        ack: [tcp[8], tcp[9], tcp[10], tcp[11]],
        window: [tcp[14], tcp[15]],
        flags: flags & !TCP_PSH,
        options,
        mss: 0,
        segments: 0,
        psh: flags & TCP_PSH != 0,
        closed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC6: [u8; 16] = [0x20, 0x01, 0x00, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST6: [u8; 16] = [0x20, 0x01, 0x00, 0x2b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const SRC4: [u8; 4] = [100, 64, 0, 1];
    const DST4: [u8; 4] = [100, 64, 0, 2];

    /// RFC 1071 the slow way: big-endian 16-bit words, end-around carry.
    fn reference_sum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut sum: u32 = 0;
        for w in bytes.chunks(2) {
            sum += u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    fn pseudo(src: &[u8], dst: &[u8], len: usize) -> Vec<u8> {
        let mut p = [src, dst].concat();
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, PROTO_TCP]);
        p
    }

    /// Whether the TCP checksum of `tcp` verifies over the given addresses.
    fn tcp_checksum_ok(src: &[u8], dst: &[u8], tcp: &[u8]) -> bool {
        reference_sum(&[&pseudo(src, dst, tcp.len()), tcp]) == 0xffff
    }

    /// A TCP segment (header with 12 bytes of timestamp option, then `data`) with a correct
    /// checksum over `src`, `dst`.
    fn tcp(src: &[u8], dst: &[u8], seq: u32, flags: u8, data: &[u8]) -> Vec<u8> {
        let mut t = vec![
            0x9c, 0x40, 0x13, 0x89, // ports 40000 -> 5001
            0, 0, 0, 0, // seq
            0x11, 0x22, 0x33, 0x44, // ack
            0x80, flags, 0x01, 0xf5, // data offset 8 words, flags, window
            0, 0, 0, 0, // checksum, urgent
            1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9, // NOP NOP timestamps
        ];
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(data);
        let sum = !reference_sum(&[&pseudo(src, dst, t.len()), &t]);
        t[16..18].copy_from_slice(&sum.to_be_bytes());
        t
    }

    fn ipv6(tcp: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        p.extend_from_slice(&[PROTO_TCP, 64]);
        p.extend_from_slice(&SRC6);
        p.extend_from_slice(&DST6);
        p.extend_from_slice(tcp);
        p
    }

    fn ipv4(tcp: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, PROTO_TCP, 0, 0]);
        p.extend_from_slice(&SRC4);
        p.extend_from_slice(&DST4);
        let sum = !reference_sum(&[&p]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(tcp);
        p
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn vnet_header_known_bytes_both_ways() {
        // A TCPv6 super-packet as the kernel hands it over: NEEDS_CSUM, ECN, headers of
        // 40 + 32 bytes, MSS 1348, checksum at 40 + 16.
        let bytes = [0x01, 0x84, 72, 0, 0x44, 0x05, 40, 0, 16, 0];
        let hdr = VnetHdr::parse(&bytes).unwrap();
        assert_eq!(
            hdr,
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GsoType::TcpV6,
                ecn: true,
                hdr_len: 72,
                gso_size: 1348,
                csum_start: 40,
                csum_offset: 16,
            }
        );
        assert!(hdr.needs_csum());
        let mut out = [0xaa; VNET_HDR_LEN];
        hdr.emit(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(VnetHdr::parse(&bytes[..9]), None);
        let mut plain = [0xaa; VNET_HDR_LEN];
        VnetHdr::default().emit(&mut plain);
        assert_eq!(plain, [0; VNET_HDR_LEN]);
    }

    #[test]
    fn gso_types_round_trip_unknown_ones_too() {
        for raw in 0..0x80u8 {
            assert_eq!(u8::from(GsoType::from(raw)), raw);
        }
        assert_eq!(GsoType::from(1), GsoType::TcpV4);
        assert_eq!(GsoType::from(4), GsoType::TcpV6);
        assert_eq!(GsoType::from(5), GsoType::UdpL4);
        assert_eq!(GsoType::from(3), GsoType::Unknown(3));
    }

    #[test]
    fn checksum_matches_rfc_1071_and_the_slow_way() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to 0xddf2.
        let rfc = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum_fold(checksum_add(0, &rfc)), 0xddf2);
        let d = data(3000);
        for len in [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 1399, 1400, 3000] {
            assert_eq!(
                checksum_fold(checksum_add(0, &d[..len])),
                reference_sum(&[&d[..len]]),
                "length {len}"
            );
        }
        // Pieces of even length compose.
        let split = checksum_add(
            checksum_add(checksum_add(0, &d[..6]), &d[6..1006]),
            &d[1006..1399],
        );
        assert_eq!(checksum_fold(split), reference_sum(&[&d[..1399]]));
        // All-ones words: the end-around carry must not be lost.
        let ones = [0xff; 24];
        assert_eq!(checksum_fold(checksum_add(0, &ones)), 0xffff);
    }

    #[test]
    fn partial_checksum_is_completed() {
        let segment = tcp(&SRC6, &DST6, 1, TCP_ACK | TCP_PSH, &data(999));
        let mut packet = ipv6(&segment);
        let want = packet[40 + 16..40 + 18].to_vec();
        // What the kernel leaves: the pseudo-header sum, not complemented.
        let partial =
            checksum_fold(pseudo_header_sum(&SRC6, &DST6, PROTO_TCP) + segment.len() as u64);
        packet[56..58].copy_from_slice(&partial.to_be_bytes());
        assert!(complete_checksum(&mut packet, 40, 16));
        assert_eq!(packet[56..58], want[..]);
        assert!(tcp_checksum_ok(&SRC6, &DST6, &packet[40..]));
        let len = packet.len() as u16;
        assert!(!complete_checksum(&mut packet, len - 1, 0));
    }

    /// A super-packet's TCP part with FIN, PSH and CWR: 3500 bytes in MSS 1400.
    fn super_tcp() -> Vec<u8> {
        let mut t = tcp(
            &SRC6,
            &DST6,
            0xffff_fc18,
            TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR,
            &data(3500),
        );
        // As TSO hands it over, the checksum is partial; segmentation ignores it.
        t[16..18].copy_from_slice(&[0x12, 0x34]);
        t
    }

    #[test]
    fn tso_super_packet_is_cut_into_mss_segments() {
        let whole = super_tcp();
        let seg = TcpSegments::new(&whole, 1400).unwrap();
        assert_eq!(seg.count(), 3);
        assert_eq!((seg.len(0), seg.len(1), seg.len(2)), (1432, 1432, 732));
        assert!(!seg.is_empty());
        let pseudo = pseudo_header_sum(&SRC6, &DST6, PROTO_TCP);
        let mut out = vec![0u8; 1500];
        let mut joined = Vec::new();
        // Sequence numbers wrap past 2^32; flags as tcp_gso_segment sets them.
        let want = [
            (0xffff_fc18u32, TCP_ACK | TCP_CWR),
            (0x0000_0190, TCP_ACK),
            (0x0000_0708, TCP_ACK | TCP_PSH | TCP_FIN),
        ];
        for (i, (seq, flags)) in want.into_iter().enumerate() {
            let n = seg.write(&whole, i, &mut out, pseudo);
            let s = &out[..n];
            assert_eq!(s[4..8], seq.to_be_bytes(), "segment {i} seq");
            assert_eq!(s[13], flags, "segment {i} flags");
            // Everything else of the header is the super-packet's, options included.
            assert_eq!(s[..4], whole[..4]);
            assert_eq!(s[8..13], whole[8..13]);
            assert_eq!(s[14..16], whole[14..16]);
            assert_eq!(s[18..32], whole[18..32]);
            assert!(tcp_checksum_ok(&SRC6, &DST6, s), "segment {i} checksum");
            joined.extend_from_slice(&s[32..]);
        }
        assert_eq!(joined, whole[32..]);
        // The first segment, byte for byte: a freshly built one with the same fields.
        let n = seg.write(&whole, 0, &mut out, pseudo);
        assert_eq!(
            out[..n],
            tcp(
                &SRC6,
                &DST6,
                0xffff_fc18,
                TCP_ACK | TCP_CWR,
                &whole[32..1432]
            )[..]
        );
    }

    #[test]
    fn segmentation_edge_cases() {
        // No data: one bare segment. Data of exactly one MSS: one segment.
        let bare = tcp(&SRC4, &DST4, 5, TCP_ACK, &[]);
        let s = TcpSegments::new(&bare, 1400).unwrap();
        assert_eq!((s.count(), s.len(0), s.is_empty()), (1, 32, true));
        let one = tcp(&SRC4, &DST4, 5, TCP_ACK, &data(1400));
        assert_eq!(TcpSegments::new(&one, 1400).unwrap().count(), 1);
        let mut out = vec![0u8; 1500];
        let pseudo = pseudo_header_sum(&SRC4, &DST4, PROTO_TCP);
        let n = TcpSegments::new(&one, 1400)
            .unwrap()
            .write(&one, 0, &mut out, pseudo);
        assert_eq!(out[..n], one[..]);
        // Malformed: a zero MSS, a header cut short, a data offset past the end.
        assert_eq!(TcpSegments::new(&one, 0), Err(SegmentError::ZeroMss));
        assert_eq!(
            TcpSegments::new(&one[..12], 1400),
            Err(SegmentError::BadTcpHeader)
        );
        let mut bad = bare.clone();
        bad[12] = 0xf0;
        assert_eq!(
            TcpSegments::new(&bad, 1400),
            Err(SegmentError::BadTcpHeader)
        );
        bad[12] = 0x40;
        assert_eq!(
            TcpSegments::new(&bad, 1400),
            Err(SegmentError::BadTcpHeader)
        );
    }

    /// Offers `packets` to a coalescer writing into `buf` the way the daemon does; returns
    /// what was written to the TUN device (header and packet), one entry per write.
    fn coalesce(packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut c = Coalescer::default();
        let mut buf = vec![0u8; VNET_HDR_LEN + MAX_SUPER];
        let mut writes = Vec::new();
        let finish = |c: &mut Coalescer, buf: &mut Vec<u8>, writes: &mut Vec<Vec<u8>>| {
            if let Some(f) = c.finish(buf) {
                writes.push(buf[..VNET_HDR_LEN + f.len].to_vec());
            }
        };
        for p in packets {
            loop {
                match c.offer(p) {
                    Offer::Start => {
                        buf[VNET_HDR_LEN..VNET_HDR_LEN + p.len()].copy_from_slice(p);
                        break;
                    }
                    Offer::Append { data_start, at } => {
                        let d = &p[data_start..];
                        buf[VNET_HDR_LEN + at..VNET_HDR_LEN + at + d.len()].copy_from_slice(d);
                        break;
                    }
                    Offer::Flush => finish(&mut c, &mut buf, &mut writes),
                    Offer::Alone => {
                        writes.push([&[0u8; VNET_HDR_LEN][..], p].concat());
                        break;
                    }
                }
            }
        }
        finish(&mut c, &mut buf, &mut writes);
        assert!(!c.is_pending());
        writes
    }

    /// `n` consecutive segments of `mss` bytes (the last `last` bytes), PSH on the last.
    fn flow(v6: bool, n: usize, mss: usize, last: usize) -> Vec<Vec<u8>> {
        let (src, dst): (&[u8], &[u8]) = if v6 { (&SRC6, &DST6) } else { (&SRC4, &DST4) };
        let d = data((n - 1) * mss + last);
        (0..n)
            .map(|i| {
                let chunk = &d[i * mss..(i * mss + mss).min(d.len())];
                let flags = if i + 1 == n {
                    TCP_ACK | TCP_PSH
                } else {
                    TCP_ACK
                };
                let t = tcp(src, dst, 1000 + (i * mss) as u32, flags, chunk);
                if v6 {
                    ipv6(&t)
                } else {
                    ipv4(&t)
                }
            })
            .collect()
    }

    #[test]
    fn consecutive_segments_become_one_gso_packet_and_split_back() {
        for v6 in [true, false] {
            let packets = flow(v6, 4, 1348, 500);
            let writes = coalesce(&packets);
            assert_eq!(writes.len(), 1, "v6 {v6}");
            let w = &writes[0];
            let hdr = VnetHdr::parse(w).unwrap();
            let ip_len = if v6 { 40 } else { 20 };
            assert_eq!(
                hdr,
                VnetHdr {
                    flags: F_NEEDS_CSUM,
                    gso_type: if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 },
                    ecn: false,
                    hdr_len: ip_len as u16 + 32,
                    gso_size: 1348,
                    csum_start: ip_len as u16,
                    csum_offset: 16,
                }
            );
            let p = &w[VNET_HDR_LEN..];
            assert_eq!(p.len(), ip_len + 32 + 3 * 1348 + 500);
            if v6 {
                assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])), p.len() - 40);
            } else {
                assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
                assert_eq!(reference_sum(&[&p[..20]]), 0xffff, "IPv4 header checksum");
            }
            // PSH of the last segment, and the partial checksum of a GSO packet.
            assert_eq!(p[ip_len + 13], TCP_ACK | TCP_PSH);
            let (src, dst): (&[u8], &[u8]) = if v6 { (&SRC6, &DST6) } else { (&SRC4, &DST4) };
            let partial =
                checksum_fold(pseudo_header_sum(src, dst, PROTO_TCP) + (p.len() - ip_len) as u64);
            assert_eq!(p[ip_len + 16..ip_len + 18], partial.to_be_bytes());
            // Cut again, it gives back exactly the segments that went in.
            let tcp_part = &p[ip_len..];
            let seg = TcpSegments::new(tcp_part, hdr.gso_size).unwrap();
            assert_eq!(seg.count(), 4);
            let mut out = vec![0u8; 1500];
            for (i, original) in packets.iter().enumerate() {
                let n = seg.write(
                    tcp_part,
                    i,
                    &mut out,
                    pseudo_header_sum(src, dst, PROTO_TCP),
                );
                assert_eq!(out[..n], original[ip_len..], "v6 {v6} segment {i}");
            }
        }
    }

    #[test]
    fn only_continuations_are_joined() {
        // A single packet goes out as it came, with a plain header.
        let one = flow(true, 1, 1348, 1348);
        assert_eq!(
            coalesce(&one),
            vec![[&[0u8; VNET_HDR_LEN][..], &one[0]].concat()]
        );
        // A gap in the sequence numbers, a longer segment after a shorter one, another
        // flow, a packet after PSH: each starts a new super-packet.
        let mut p = flow(true, 3, 1000, 1000);
        p.swap(1, 2);
        assert_eq!(coalesce(&p).len(), 3);
        let mut p = flow(true, 2, 1000, 600);
        p.push(flow(true, 1, 1000, 1000)[0].clone());
        assert_eq!(coalesce(&p).len(), 2);
        let mut mixed = flow(true, 2, 1000, 1000);
        mixed.insert(1, flow(false, 1, 1000, 1000)[0].clone());
        assert_eq!(coalesce(&mixed).len(), 3);
        let two_bursts: Vec<_> = flow(true, 2, 1000, 1000)
            .into_iter()
            .chain(flow(true, 2, 1000, 1000))
            .collect();
        assert_eq!(coalesce(&two_bursts).len(), 2);
        // SYN, FIN, a bare ACK and non-TCP are delivered alone, in order.
        let syn = ipv6(&tcp(&SRC6, &DST6, 1, TCP_SYN, &[]));
        let fin = ipv6(&tcp(&SRC6, &DST6, 1, TCP_ACK | TCP_FIN, &data(10)));
        let ack = ipv6(&tcp(&SRC6, &DST6, 1, TCP_ACK, &[]));
        let mut udp = ipv6(&[0; 16]);
        udp[6] = 17;
        let seq = flow(true, 2, 1000, 1000);
        let all = vec![
            syn.clone(),
            seq[0].clone(),
            fin.clone(),
            seq[1].clone(),
            ack.clone(),
            udp.clone(),
        ];
        let writes = coalesce(&all);
        assert_eq!(writes.len(), 6);
        for (w, p) in writes.iter().zip(&all) {
            assert_eq!(w[..VNET_HDR_LEN], [0; VNET_HDR_LEN]);
            assert_eq!(w[VNET_HDR_LEN..], p[..]);
        }
    }

    #[test]
    fn super_packets_stay_within_64_kib() {
        let packets = flow(true, 60, 1348, 1348);
        let writes = coalesce(&packets);
        assert_eq!(writes.len(), 2);
        for w in &writes {
            assert!(w.len() - VNET_HDR_LEN <= MAX_SUPER);
        }
        let total: usize = writes.iter().map(|w| w.len() - VNET_HDR_LEN - 72).sum();
        assert_eq!(total, 60 * 1348);
    }
}
