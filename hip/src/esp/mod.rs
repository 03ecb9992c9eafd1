//! The ESP data path of HIP (RFC 7402): ESP transport format with AES-128-GCM and a 16-byte
//! ICV (suite 13, RFC 4106), 64-bit extended sequence numbers and anti-replay (RFC 4303),
//! and the BEET helpers that strip and rebuild inner IP headers (RFC 7402 App. B).
//!
//! This module owns one direction of an SA each ([`OutboundSa`], [`InboundSa`] with its
//! [`ReplayWindow`]); the node owns the buffers, the SA tables and the sockets. Everything
//! after SA construction runs per packet: no allocation, no logging, no clock, one AES key
//! schedule per SA (made in the constructor), and nothing panics on any input.
//!
//! # Packet format
//!
//! ```text
//! | SPI (4) | Seq low 32 (4) | IV (8) | ciphertext ........................ | ICV (16) |
//!                                     | payload | pad 1,2,3.. | PL (1) | NH (1) |
//! ```
//!
//! Nonce = salt (4) ‖ IV; the IV is the 64-bit sequence number, big-endian (unique per key,
//! as RFC 4106 §3.1 allows). AAD = SPI ‖ ESN high 32 ‖ ESN low 32 (RFC 4106 §5). Over UDP
//! (RFC 9028 §5.11) the datagram starts with the SPI; a first word of zero marks a HIP
//! control packet instead, which is why SPIs 0–255 are refused here.
//!
//! # Buffer layout
//!
//! Sealing works in place around a payload the caller has put into its buffer:
//!
//! ```text
//!    payload.start-16      payload.start            payload.end
//!    v                     v                        v
//!    | SPI | Seq | IV      | payload ...            | pad | PL | NH | ICV      |
//!    ^ 16 free bytes ^     ^---------- encrypted in place --------^ 16 bytes ^
//!    ^------------------------ returned range ----------------------------- ^
//! ```
//!
//! up to [`ESP_TAIL_MAX`] (21) bytes after `payload.end` must exist in the buffer. For BEET
//! send, read the inner packet from the TUN device anywhere, parse it with [`parse_ipv6`] or
//! [`parse_ipv4`] and seal its payload where it lies: the inner header (40 or 20 bytes) is
//! not sent, so its bytes become the ESP header and nothing is copied.
//!
//! Opening decrypts in place: the payload comes back as a range starting at byte 16 of the
//! ESP packet. For BEET receive, put the ESP packet at offset [`BEET_RX_HEADROOM`] or later
//! in the buffer, and the rebuilt inner header ([`write_ipv6_header`], 40 bytes, or
//! [`write_ipv4_header`], 20) fits in front of the payload without moving it.
//!
//! # Receive checks, in order
//!
//! length → SPI → replay window on the reconstructed 64-bit sequence number (read-only) →
//! AEAD open → trailer (pad length fits, padding bytes 1, 2, 3, …) → mark the sequence number
//! in the window. A packet only moves the window once it has been authenticated *and* is
//! well-formed, so forgeries and truncations cost a decryption attempt but never state.
//!
//! Decisions, each explained where it is made:
//! - A duplicate is [`EspError::Replay`]; a packet left of the window is the separate
//!   [`EspError::Stale`] (late packets under heavy reordering are not an attack, and the
//!   node should count them apart).
//! - ESN inference follows RFC 4303 App. A2 with one refinement (see [`ReplayWindow::check`]):
//!   a packet A2 would place 2^31 or more ahead in the next sub-space is read as a late one.
//!   The App. A3 resynchronisation after 2^32 lost packets is not implemented; an SA that
//!   loses that many packets in a row fails authentication until it is rekeyed.
//! - Window sizes are rounded up to a multiple of 64 packets (see [`ReplayWindow::new`]).
//! - Padding alignment is not enforced on receipt; a Next Header of 59
//!   ([`NEXT_HEADER_NONE`]) marks a dummy packet (RFC 4303 §2.6) that the caller drops.
//!
//! # Code map
//!
//! - `packet`: the zero-copy [`Packet`] view of the ESP header, for demultiplexing.
//! - `sa`: [`OutboundSa::seal`] and [`InboundSa::open`], the AEAD and the trailer.
//! - `replay`: the [`ReplayWindow`] and ESN inference.
//! - `beet`: inner IPv4/IPv6 headers, parsed on send and rebuilt on receipt, and the
//!   transport checksum rewrite between LSIs and HITs.
//! - `icmp`: the Packet Too Big / Fragmentation Needed errors for inner packets that do
//!   not fit the tunnel.

mod beet;
mod icmp;
mod packet;
mod replay;
mod sa;

pub use beet::{
    parse_ipv4, parse_ipv6, rewrite_transport_checksum, write_ipv4_header, write_ipv6_header,
    InnerV4, InnerV6,
};
pub use icmp::{
    icmpv4_frag_needed, icmpv6_packet_too_big, icmpv6_unreachable, ICMPV6_ADDRESS_UNREACHABLE,
};
pub use packet::Packet;
pub use replay::ReplayWindow;
pub use sa::{InboundSa, Opened, OutboundSa};

use core::fmt;

/// SPI, sequence number and IV.
pub const ESP_HEADER_LEN: usize = 16;
/// The explicit IV of RFC 4106 (§3.1).
pub const ESP_IV_LEN: usize = 8;
/// The AES-GCM-16 tag (suite 13).
pub const ESP_ICV_LEN: usize = 16;
/// Pad Length and Next Header.
pub const ESP_TRAILER_LEN: usize = 2;
/// Padding that aligns the trailer to 4 bytes (RFC 4303 §2.4); GCM needs no block padding.
pub const ESP_MAX_PAD: usize = 3;
/// Bytes [`OutboundSa::seal`] may write after the payload.
pub const ESP_TAIL_MAX: usize = ESP_MAX_PAD + ESP_TRAILER_LEN + ESP_ICV_LEN;
/// Most bytes ESP adds to a payload. Inner MTU for BEET over UDP = path MTU − outer IP
/// header − 8 (UDP) − `ESP_OVERHEAD_MAX` + the inner IP header that is not sent.
pub const ESP_OVERHEAD_MAX: usize = ESP_HEADER_LEN + ESP_TAIL_MAX;
/// The largest transport payload (the inner packet less its IP header, which BEET does not
/// send) that one ESP-in-UDP datagram carries on a path of `path_mtu` bytes: the one source
/// of the tunnel's overhead.
pub const fn max_payload(path_mtu: usize, outer_ipv4: bool) -> usize {
    let ip = if outer_ipv4 {
        IPV4_HEADER_LEN
    } else {
        IPV6_HEADER_LEN
    };
    path_mtu.saturating_sub(ip + UDP_HEADER_LEN + ESP_OVERHEAD_MAX)
}
/// Fewest bytes ESP adds to a payload (no padding needed).
pub const ESP_OVERHEAD_MIN: usize = ESP_HEADER_LEN + ESP_TRAILER_LEN + ESP_ICV_LEN;
/// The shortest packet that can open: header, trailer, ICV and an empty payload.
pub const ESP_MIN_LEN: usize = ESP_OVERHEAD_MIN;
/// Suite 13 key material: the AES-128 key, then the 4-byte salt (RFC 4106 §8.1), as
/// `hip::crypto::draw_esp_keys` draws it.
pub const KEY_MATERIAL_LEN: usize = AES_KEY_LEN + SALT_LEN;
/// Anti-replay window of a new [`InboundSa`], in packets. Large because multi-gigabit paths
/// (and multi-queue senders) reorder by thousands of packets; it costs 1 KiB per SA.
pub const DEFAULT_REPLAY_WINDOW: usize = 8192;
/// Largest window [`ReplayWindow::new`] accepts: 128 KiB of bitmap per SA.
pub const MAX_REPLAY_WINDOW: usize = 1 << 20;
/// Next Header of a dummy packet (RFC 4303 §2.6): authenticate, then discard.
pub const NEXT_HEADER_NONE: u8 = 59;
/// Bytes needed in front of a received ESP packet so that [`write_ipv6_header`] (and, with
/// room to spare, [`write_ipv4_header`]) can rebuild the inner header before the payload.
pub const BEET_RX_HEADROOM: usize = IPV6_HEADER_LEN - ESP_HEADER_LEN;
/// The fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// An IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// The UDP header in front of every ESP packet (RFC 3948).
pub const UDP_HEADER_LEN: usize = 8;

const AES_KEY_LEN: usize = 16;
const SALT_LEN: usize = 4;
/// IP protocol numbers (IANA) of the inner packets the node looks into.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// Why a packet was refused or an SA could not be built.
///
/// Kinds: malformed input (`Truncated`, `BadTrailer`, `BadIpHeader`, `Unsupported`), a peer
/// that misbehaved or an attacker (`SpiMismatch`, `Auth`, `Replay`), ordinary network weather
/// (`Stale`), local misuse or limits (`NoRoom`, `SequenceExhausted`, `KeyLength`,
/// `ReservedSpi`, `WindowSize`). None of them is answered on the wire: ESP has no error
/// messages, so the node counts and drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EspError {
    /// Shorter than an ESP packet or IP header, or than its own length field says.
    Truncated,
    /// Authenticated, but the pad length overruns the plaintext or the padding bytes are
    /// not 1, 2, 3, … (RFC 4303 §2.4).
    BadTrailer,
    /// An inner packet of the wrong IP version or with inconsistent header fields.
    BadIpHeader,
    /// An inner IPv4 fragment (BEET carries whole datagrams) or an IPv4 header with options
    /// (they would need the BEET pseudo-header, Next Header 94, RFC 7402 App. B, which we
    /// do not implement).
    Unsupported,
    /// The packet's SPI is not this SA's.
    SpiMismatch,
    /// The ICV does not verify: tampered, forged, wrong key, or a wrong ESN guess.
    Auth,
    /// The sequence number was already received.
    Replay,
    /// The sequence number lies left of the replay window (too late to tell whether it is
    /// a duplicate), or outside the 64-bit sequence space.
    Stale,
    /// The buffer has no room for the ESP header before the payload, or for padding,
    /// trailer and ICV after it; or the range is not inside the buffer.
    NoRoom,
    /// All 2^64 sequence numbers of this SA are used: rekey.
    SequenceExhausted,
    /// Key material is not [`KEY_MATERIAL_LEN`] bytes.
    KeyLength,
    /// SPIs 0–255 are reserved (RFC 4303 §2.1); 0 also marks HIP control packets over UDP.
    ReservedSpi,
    /// A replay window of 0 or more than [`MAX_REPLAY_WINDOW`] packets.
    WindowSize,
}

impl fmt::Display for EspError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EspError::Truncated => "truncated packet",
            EspError::BadTrailer => "malformed ESP padding or trailer",
            EspError::BadIpHeader => "malformed inner IP header",
            EspError::Unsupported => "inner IPv4 fragment or IPv4 options",
            EspError::SpiMismatch => "SPI does not match the SA",
            EspError::Auth => "ESP authentication failed",
            EspError::Replay => "replayed ESP sequence number",
            EspError::Stale => "ESP sequence number left of the replay window",
            EspError::NoRoom => "no room in the buffer for the ESP header or trailer",
            EspError::SequenceExhausted => "ESP sequence numbers exhausted, rekey",
            EspError::KeyLength => "ESP key material has the wrong length",
            EspError::ReservedSpi => "reserved SPI (0-255)",
            EspError::WindowSize => "replay window size out of range",
        })
    }
}

impl std::error::Error for EspError {}

/// Fixtures the tests of the ESP modules share.
#[cfg(test)]
mod testutil {
    use super::*;
    pub use crate::inet::{add as add_words, fold};
    pub use crate::wire::testutil::hex;

    pub const KEY: &str = "feffe9928665731c6d6a8f9467308308cafebabe";
    pub const SPI: u32 = 0x9a3b_c4d5;

    /// RFC 7401 App. C: TCP SYN 65500 → 22, seq 1, ack 0, offset 5, SYN, window 65535,
    /// with its checksum over the HITs 2001:20::1 → 2001:20::2.
    pub const SYN_HIT: &str = "ffdc001600000001000000005002ffff6faa0000";
    pub const HIT1: [u8; 16] = [0x20, 0x01, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    pub const HIT2: [u8; 16] = [0x20, 0x01, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    pub const LSI1: [u8; 4] = [1, 0, 0, 1];
    pub const LSI2: [u8; 4] = [1, 0, 0, 2];

    pub fn pair() -> (OutboundSa, InboundSa) {
        let key = hex(KEY);
        (
            OutboundSa::new(SPI, &key).unwrap(),
            InboundSa::new(SPI, &key).unwrap(),
        )
    }

    pub fn ipv6_packet(nh: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0; 40];
        write_ipv6_header(&mut p, HIT1, HIT2, nh, payload.len(), 64);
        p.extend_from_slice(payload);
        p
    }

    pub fn ipv4_packet(proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0; 20];
        write_ipv4_header(&mut p, LSI1, LSI2, proto, payload.len(), 64);
        p.extend_from_slice(payload);
        p
    }

    /// Full transport checksum over a pseudo-header, for checking the incremental one.
    pub fn full_checksum(src: &[u8], dst: &[u8], proto: u8, segment: &[u8], at: usize) -> u16 {
        let mut s = segment.to_vec();
        s[at..at + 2].fill(0);
        let sum = add_words(add_words(add_words(0, src), dst), &s);
        !fold(sum + s.len() as u64 + u64::from(proto))
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn max_payload_is_what_a_sealed_datagram_leaves_of_the_path() {
        // 1500 over IPv4: 20 IP + 8 UDP + 16 ESP header and IV + at most 3 padding, 2
        // trailer and 16 ICV.
        assert_eq!(max_payload(1500, true), 1500 - 20 - 8 - 37);
        assert_eq!(max_payload(1280, false), 1280 - 40 - 8 - 37);
        assert_eq!(max_payload(40, false), 0);
        // A payload of that size, sealed, fits the path exactly or with room to spare.
        let payload = max_payload(1280, false);
        let sealed = ESP_HEADER_LEN + (payload + ESP_TRAILER_LEN).next_multiple_of(4) + ESP_ICV_LEN;
        assert!(40 + 8 + sealed <= 1280);
    }

    /// BEET over the whole path: inner IPv6 from TUN → ESP in place → inner IPv6 again.
    #[test]
    fn beet_in_place() {
        let (mut out, mut inb) = pair();
        let syn = hex(SYN_HIT);
        let inner = ipv6_packet(PROTO_TCP, &syn);
        let mut buf = vec![0; 100 + 60 + ESP_TAIL_MAX];
        buf[100..160].copy_from_slice(&inner);
        let v6 = parse_ipv6(&buf[100..]).unwrap();
        let payload = 100 + v6.payload.start..100 + v6.payload.end;
        let esp = out.seal(&mut buf, payload, v6.next_header).unwrap();
        assert_eq!(esp.start, 100 + 40 - 16);
        // Receive side: the ESP packet at BEET_RX_HEADROOM.
        let mut rx = vec![0; BEET_RX_HEADROOM + esp.len()];
        rx[BEET_RX_HEADROOM..].copy_from_slice(&buf[esp]);
        let opened = inb.open(&mut rx[BEET_RX_HEADROOM..]).unwrap();
        let start = BEET_RX_HEADROOM + opened.payload.start - IPV6_HEADER_LEN;
        let end = BEET_RX_HEADROOM + opened.payload.end;
        assert_eq!(start, 0);
        let len = opened.payload.len();
        write_ipv6_header(
            &mut rx[start..],
            v6.src,
            v6.dst,
            opened.next_header,
            len,
            64,
        );
        assert_eq!(rx[start..end], inner[..]);
    }

    /// Arbitrary short inputs through every parser: errors, never panics.
    #[test]
    fn parsers_total_on_garbage() {
        let mut rng = 0x9e37_79b9u32;
        let mut buf = [0; 1500];
        for len in 0..200 {
            for _ in 0..20 {
                let mut data: Vec<u8> = (0..len)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 17;
                        rng ^= rng << 5;
                        rng as u8
                    })
                    .collect();
                if let Some(b) = data.first_mut() {
                    *b = (*b & 0x0f) | if rng & 1 == 0 { 0x40 } else { 0x60 };
                }
                let _ = parse_ipv6(&data);
                let _ = parse_ipv4(&data);
                let _ = icmpv6_packet_too_big(&mut buf, 1280, &data);
                let _ = icmpv6_unreachable(&mut buf, 3, &data);
                let _ = icmpv4_frag_needed(&mut buf, 1280, &data);
                let (_, mut inb) = pair();
                let _ = inb.open(&mut data.clone());
                for nh in [PROTO_TCP, PROTO_UDP] {
                    rewrite_transport_checksum(nh, &mut data, &LSI1, &LSI2, &HIT1, &HIT2);
                }
            }
        }
    }
}
