//! The fixed HIP header (RFC 7401 §5.1) and whole-packet parse/emit.
//!
//! [`Packet`] checks the framing (buffer holds a header, Header Length fits the buffer);
//! [`RawParams`] walks the TLVs and enforces type order; [`HipRepr`] adds the fixed-bit and
//! version checks and the typed contents of every parameter.

use core::ops::Range;

use super::param::{tlv_len, Param};
use super::{Reader, WireError};
use crate::identity::Hit;

/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 40;
/// The largest HIP packet (RFC 7401 §5.1: Header Length is one byte, so 2048 bytes).
pub const MAX_PACKET_LEN: usize = 2048;

/// Byte offsets of the header fields.
pub(super) mod field {
    use core::ops::Range;

    pub const NEXT_HEADER: usize = 0;
    pub const HEADER_LENGTH: usize = 1;
    /// Bit 7 fixed 0, bits 6..0 packet type.
    pub const PACKET_TYPE: usize = 2;
    /// Bits 7..4 version, 3..1 reserved, bit 0 fixed 1.
    pub const VERSION: usize = 3;
    pub const CHECKSUM: Range<usize> = 4..6;
    pub const CONTROLS: Range<usize> = 6..8;
    pub const SENDER_HIT: Range<usize> = 8..24;
    pub const RECEIVER_HIT: Range<usize> = 24..40;
    pub const PARAMS: usize = 40;
}

/// The two fixed bits keep HIP apart from SHIM6 (RFC 5533), which shares the header shape.
const FIXED_ZERO_BIT: u8 = 0x80;
const FIXED_ONE_BIT: u8 = 0x01;
/// The only version this crate speaks.
const HIP_VERSION: u8 = 2;

/// HIP packet types (RFC 7401 §5.3 Table 11, plus the IANA registry). Unknown values survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    I1,       // 1
    R1,       // 2
    I2,       // 3
    R2,       // 4
    Update,   // 16
    Notify,   // 17
    Close,    // 18
    CloseAck, // 19
    Unknown(u8),
}

crate::raw_conversions!(PacketType: u8 {
    I1 = 1,
    R1 = 2,
    I2 = 3,
    R2 = 4,
    Update = 16,
    Notify = 17,
    Close = 18,
    CloseAck = 19,
});

/// The RFC's names (`I1`, `UPDATE`, `CLOSE_ACK`, …), for logs.
impl core::fmt::Display for PacketType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PacketType::I1 => f.write_str("I1"),
            PacketType::R1 => f.write_str("R1"),
            PacketType::I2 => f.write_str("I2"),
            PacketType::R2 => f.write_str("R2"),
            PacketType::Update => f.write_str("UPDATE"),
            PacketType::Notify => f.write_str("NOTIFY"),
            PacketType::Close => f.write_str("CLOSE"),
            PacketType::CloseAck => f.write_str("CLOSE_ACK"),
            PacketType::Unknown(v) => write!(f, "packet type {v}"),
        }
    }
}

/// A zero-copy view of a HIP packet. Accessors never panic once `new_checked` succeeded.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds a header and that Header Length fits the buffer
    /// (the buffer may be longer: trailing bytes after `(hdr_len+1)*8` are not part of it).
    ///
    /// A buffer shorter than the fixed header is `Truncated`; a Header Length below 4
    /// (shorter than the header itself) or beyond the buffer is `BadHeaderLength`.
    /// The fixed bits and the version are left to [`check_version`](Self::check_version).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let available = buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let packet = Packet { buffer };
        let total = packet.total_len();
        if total < HEADER_LEN || total > available {
            return Err(WireError::BadHeaderLength);
        }
        Ok(packet)
    }

    /// Checks the fixed bits (byte 2 bit 7 = 0, byte 3 bit 0 = 1) and that the version is 2.
    /// The three reserved bits of byte 3 are not checked: we send them as zero, and refusing
    /// them would refuse whatever future use they are reserved for.
    pub fn check_version(&self) -> Result<(), WireError> {
        let bytes = self.buffer.as_ref();
        let fixed_ok = bytes[field::PACKET_TYPE] & FIXED_ZERO_BIT == 0
            && bytes[field::VERSION] & FIXED_ONE_BIT == FIXED_ONE_BIT;
        if fixed_ok && self.version() == HIP_VERSION {
            Ok(())
        } else {
            Err(WireError::BadVersion)
        }
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Total length in bytes: `(Header Length + 1) * 8`.
    pub fn total_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[field::HEADER_LENGTH]) + 1) * 8
    }

    pub fn packet_type(&self) -> PacketType {
        PacketType::from(self.buffer.as_ref()[field::PACKET_TYPE] & !FIXED_ZERO_BIT)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION] >> 4
    }

    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes(self.field(field::CHECKSUM))
    }

    pub fn controls(&self) -> u16 {
        u16::from_be_bytes(self.field(field::CONTROLS))
    }

    pub fn sender_hit(&self) -> Hit {
        Hit(self.field(field::SENDER_HIT))
    }

    pub fn receiver_hit(&self) -> Hit {
        Hit(self.field(field::RECEIVER_HIT))
    }

    /// Raw parameters in wire order; yields `Err` once and stops on a malformed TLV
    /// (`Truncated`) or on a type lower than the one before it (`BadOrder`).
    pub fn params(&self) -> RawParams<'_> {
        RawParams {
            packet: self.as_bytes(),
            offset: field::PARAMS,
            min_ty: 0,
        }
    }

    /// The packet bytes, `total_len()` long.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }

    /// Copies a fixed-size field; `new_checked` guaranteed the header is there.
    fn field<const N: usize>(&self, range: Range<usize>) -> [u8; N] {
        let mut a = [0; N];
        a.copy_from_slice(&self.buffer.as_ref()[range]);
        a
    }
}

/// One TLV as found on the wire: its type and its contents (without padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawParam<'a> {
    pub ty: u16,
    pub contents: &'a [u8],
    /// Offset of the TLV's first byte (its Type field) from the start of the packet.
    pub offset: usize,
}

impl RawParam<'_> {
    /// Odd types are critical (RFC 7401 §5.2.1).
    pub fn is_critical(&self) -> bool {
        self.ty & 1 == 1
    }
}

/// Iterator over the TLVs of a packet.
#[derive(Debug, Clone)]
pub struct RawParams<'a> {
    /// The whole packet, `total_len()` bytes.
    packet: &'a [u8],
    /// Where the next TLV starts; `packet.len()` once done.
    offset: usize,
    /// The previous TLV's type: repeated types are allowed, going back is not.
    min_ty: u16,
}

impl<'a> RawParams<'a> {
    /// Reads the TLV at `offset` and returns it with the offset of the one after it.
    fn read(&self) -> Result<(RawParam<'a>, usize), WireError> {
        let at = self.packet.get(self.offset..).unwrap_or_default();
        let mut r = Reader::new(at, WireError::Truncated, WireError::Truncated);
        let ty = r.u16()?;
        let len = usize::from(r.u16()?);
        let contents = r.take(len)?;
        if ty < self.min_ty {
            return Err(WireError::BadOrder);
        }
        // Padding is skipped unread (receivers SHOULD NOT check it). Every TLV and the
        // packet are multiples of 8 bytes, so once the contents fit, the padding does too.
        let next = self.offset.saturating_add(tlv_len(len));
        let raw = RawParam {
            ty,
            contents,
            offset: self.offset,
        };
        Ok((raw, next))
    }
}

impl<'a> Iterator for RawParams<'a> {
    type Item = Result<RawParam<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.offset >= self.packet.len() {
            return None;
        }
        match self.read() {
            Ok((raw, next)) => {
                self.min_ty = raw.ty;
                self.offset = next;
                Some(Ok(raw))
            }
            Err(e) => {
                self.offset = self.packet.len();
                Some(Err(e))
            }
        }
    }
}

/// An owned HIP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HipRepr {
    /// 59 (IPPROTO_NONE) for every packet we send.
    pub next_header: u8,
    pub packet_type: PacketType,
    /// 2 for HIPv2.
    pub version: u8,
    pub controls: u16,
    pub sender_hit: Hit,
    pub receiver_hit: Hit,
    /// In wire order, which must be increasing type order.
    pub params: Vec<Param>,
}

impl HipRepr {
    /// Parses a whole packet: header checks, TLV framing, type order, and each known
    /// parameter's contents. Does not look at the checksum.
    pub fn parse(bytes: &[u8]) -> Result<HipRepr, WireError> {
        let packet = Packet::new_checked(bytes)?;
        packet.check_version()?;
        let params = packet
            .params()
            .map(|raw| raw.and_then(|raw| Param::parse(raw.ty, raw.contents)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HipRepr {
            next_header: packet.next_header(),
            packet_type: packet.packet_type(),
            version: packet.version(),
            controls: packet.controls(),
            sender_hit: packet.sender_hit(),
            receiver_hit: packet.receiver_hit(),
            params,
        })
    }

    /// Length of the emitted packet. Always a multiple of 8.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.params.iter().map(Param::buffer_len).sum::<usize>()
    }

    /// Writes the packet with a zero checksum. Panics only if `buf.len() < buffer_len()`.
    /// Does not reorder `params`: the caller keeps them in type order.
    ///
    /// A repr longer than [`MAX_PACKET_LEN`] has no Header Length: it is still written
    /// without panicking, but with Header Length 0 so that it never parses. Check
    /// `buffer_len()` first when a peer influences the size (echoed data, for instance).
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.buffer_len();
        let buf = &mut buf[..len];
        self.emit_header(buf);
        emit_params(self.params.iter(), &mut buf[HEADER_LEN..]);
    }

    /// Convenience: `emit` into a fresh `Vec`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.buffer_len()];
        self.emit(&mut v);
        v
    }

    /// The bytes a HIP_MAC / HIP_SIGNATURE of type `upto` covers (RFC 7401 §6.4.1, §6.4.2):
    /// the header and every parameter with type lower than `upto`, then `appended` (already
    /// a complete, padded TLV — the responder's HOST_ID for HIP_MAC_2), with Header Length
    /// set as if the packet ended there and the checksum zero. Callers that must zero
    /// fields (HIP_SIGNATURE_2) do so on a clone before calling.
    ///
    /// Never panics: if the result would exceed [`MAX_PACKET_LEN`] (a peer can arrange
    /// that with HIP_MAC_2), Header Length is written as 0 and no sender's MAC can match.
    pub fn covered_bytes(&self, upto: u16, appended: &[u8]) -> Vec<u8> {
        let covered = || self.params.iter().filter(move |p| p.ty() < upto);
        let params_len: usize = covered().map(Param::buffer_len).sum();
        let mut buf = vec![0; HEADER_LEN + params_len + appended.len()];
        self.emit_header(&mut buf);
        let tail = &mut buf[HEADER_LEN..];
        emit_params(covered(), tail);
        tail[params_len..].copy_from_slice(appended);
        buf
    }

    /// The first parameter of the given type, if any.
    pub fn param(&self, ty: u16) -> Option<&Param> {
        self.params.iter().find(|p| p.ty() == ty)
    }

    /// Writes the fixed header for a packet of `buf.len()` bytes.
    fn emit_header(&self, buf: &mut [u8]) {
        // At most 2048 bytes the value fits a byte; beyond, Header Length 0 (8 bytes, less
        // than the header itself) is the one value that cannot be mistaken for a length.
        let header_length = if buf.len() <= MAX_PACKET_LEN {
            (buf.len() / 8 - 1) as u8
        } else {
            0
        };
        buf[field::NEXT_HEADER] = self.next_header;
        buf[field::HEADER_LENGTH] = header_length;
        buf[field::PACKET_TYPE] = u8::from(self.packet_type) & !FIXED_ZERO_BIT;
        buf[field::VERSION] = (self.version & 0x0f) << 4 | FIXED_ONE_BIT;
        buf[field::CHECKSUM].fill(0);
        buf[field::CONTROLS].copy_from_slice(&self.controls.to_be_bytes());
        buf[field::SENDER_HIT].copy_from_slice(&self.sender_hit.0);
        buf[field::RECEIVER_HIT].copy_from_slice(&self.receiver_hit.0);
    }
}

/// Writes `params` back to back from the start of `buf`.
fn emit_params<'p>(params: impl Iterator<Item = &'p Param>, buf: &mut [u8]) {
    let mut at = 0;
    for p in params {
        let end = at + p.buffer_len();
        p.emit(&mut buf[at..end]);
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::super::param::tests::vectors;
    use super::super::param_type as t;
    use super::super::testutil::{app_c_i1, hex, XorShift};
    use super::*;

    /// 2001:20::`last`, as in RFC 7401 Appendix C.
    fn hit(last: u8) -> Hit {
        let mut h = [0; 16];
        h[..4].copy_from_slice(&[0x20, 0x01, 0x00, 0x20]);
        h[15] = last;
        Hit(h)
    }

    fn app_c_repr() -> HipRepr {
        HipRepr {
            next_header: 59,
            packet_type: PacketType::I1,
            version: 2,
            controls: 0,
            sender_hit: hit(1),
            receiver_hit: hit(2),
            params: vec![Param::DhGroupList(vec![3, 4, 8])],
        }
    }

    /// Every `Param` variant once, in type order.
    fn kitchen_sink() -> (Vec<u8>, HipRepr) {
        let mut bytes = hex("3b 00 10 21 | 0000 | 0001");
        bytes.extend_from_slice(&hit(1).0);
        bytes.extend_from_slice(&hit(2).0);
        let mut params = Vec::new();
        for (tlv, param) in vectors() {
            bytes.extend_from_slice(&tlv);
            params.push(param);
        }
        bytes[1] = (bytes.len() / 8 - 1) as u8;
        let repr = HipRepr {
            packet_type: PacketType::Update,
            controls: 1,
            params,
            ..app_c_repr()
        };
        (bytes, repr)
    }

    fn with_params(params: Vec<Param>) -> HipRepr {
        HipRepr {
            params,
            ..app_c_repr()
        }
    }

    #[test]
    fn view_reads_the_appendix_c_header() {
        let bytes = app_c_i1();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.next_header(), 59);
        assert_eq!(p.total_len(), 48);
        assert_eq!(p.packet_type(), PacketType::I1);
        assert_eq!(p.version(), 2);
        assert_eq!(p.checksum(), 0);
        assert_eq!(p.controls(), 0);
        assert_eq!(p.sender_hit(), hit(1));
        assert_eq!(p.receiver_hit(), hit(2));
        assert_eq!(p.check_version(), Ok(()));
        let raw: Vec<_> = p.params().collect();
        assert_eq!(
            raw,
            [Ok(RawParam {
                ty: t::DH_GROUP_LIST,
                contents: &[3, 4, 8],
                offset: 40
            })]
        );
        assert!(raw[0].unwrap().is_critical());
    }

    #[test]
    fn appendix_c_i1_both_ways() {
        assert_eq!(HipRepr::parse(&app_c_i1()), Ok(app_c_repr()));
        assert_eq!(app_c_repr().buffer_len(), 48);
        assert_eq!(app_c_repr().to_bytes(), app_c_i1());
    }

    #[test]
    fn every_parameter_in_one_packet_both_ways() {
        let (bytes, repr) = kitchen_sink();
        assert_eq!(HipRepr::parse(&bytes), Ok(repr.clone()));
        assert_eq!(repr.to_bytes(), bytes);
        assert_eq!(repr.buffer_len(), bytes.len());
    }

    #[test]
    fn packet_types_convert_both_ways() {
        assert_eq!(PacketType::from(16), PacketType::Update);
        assert_eq!(u8::from(PacketType::CloseAck), 19);
        assert_eq!(PacketType::from(20), PacketType::Unknown(20));
        for v in 0..=u8::MAX {
            assert_eq!(u8::from(PacketType::from(v)), v);
        }
        assert_eq!(PacketType::CloseAck.to_string(), "CLOSE_ACK");
        assert_eq!(PacketType::Unknown(32).to_string(), "packet type 32");
    }

    #[test]
    fn short_buffers_are_truncated() {
        let bytes = app_c_i1();
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&bytes[..len]).err(),
                Some(WireError::Truncated)
            );
            assert_eq!(HipRepr::parse(&bytes[..len]), Err(WireError::Truncated));
        }
    }

    #[test]
    fn header_length_must_cover_the_header_and_fit_the_buffer() {
        let mut bytes = app_c_i1();
        for hdr_len in [0, 1, 2, 3, 6, 255] {
            bytes[1] = hdr_len;
            assert_eq!(
                HipRepr::parse(&bytes),
                Err(WireError::BadHeaderLength),
                "{hdr_len}"
            );
        }
        // Header Length 4: the header alone, no parameters.
        bytes[1] = 4;
        assert_eq!(HipRepr::parse(&bytes), Ok(with_params(vec![])));
    }

    #[test]
    fn bytes_after_the_packet_are_not_part_of_it() {
        let mut bytes = app_c_i1();
        bytes.extend_from_slice(&[0xaa; 13]);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.as_bytes(), &app_c_i1()[..]);
        assert_eq!(p.params().count(), 1);
        assert_eq!(HipRepr::parse(&bytes), Ok(app_c_repr()));
    }

    #[test]
    fn fixed_bits_and_version_are_checked_reserved_bits_ignored() {
        for (at, value) in [(2, 0x81), (3, 0x20), (3, 0x11), (3, 0x31), (3, 0x01)] {
            let mut bytes = app_c_i1();
            bytes[at] = value;
            assert_eq!(
                HipRepr::parse(&bytes),
                Err(WireError::BadVersion),
                "{at}: {value:#x}"
            );
        }
        let mut bytes = app_c_i1();
        bytes[3] = 0x2f;
        let repr = HipRepr::parse(&bytes).unwrap();
        assert_eq!(repr, app_c_repr());
        assert_eq!(repr.to_bytes()[3], 0x21);
    }

    #[test]
    fn emit_writes_the_fixed_bits_whatever_the_repr_says() {
        let repr = HipRepr {
            packet_type: PacketType::Unknown(0xff),
            version: 0x12,
            ..app_c_repr()
        };
        let bytes = repr.to_bytes();
        assert_eq!(bytes[2..4], [0x7f, 0x21]);
        // The checksum field is zeroed, not left from the buffer.
        let mut dirty = vec![0xee; 48];
        app_c_repr().emit(&mut dirty);
        assert_eq!(dirty, app_c_i1());
    }

    #[test]
    fn every_truncation_of_a_valid_packet_is_an_error() {
        for bytes in [app_c_i1(), kitchen_sink().0] {
            for len in 0..bytes.len() {
                assert!(HipRepr::parse(&bytes[..len]).is_err(), "{len} bytes");
            }
        }
    }

    #[test]
    fn shrinking_header_length_cuts_at_parameter_boundaries_only() {
        let (bytes, repr) = kitchen_sink();
        // Where each TLV ends, counted from the start of the packet.
        let mut ends = Vec::new();
        let mut at = HEADER_LEN;
        for p in &repr.params {
            at += p.buffer_len();
            ends.push(at);
        }
        for total in (HEADER_LEN..bytes.len()).step_by(8) {
            let mut cut = bytes[..total].to_vec();
            cut[1] = (total / 8 - 1) as u8;
            let parsed = HipRepr::parse(&cut);
            let whole = ends.iter().take_while(|&&end| end <= total).count();
            if total == HEADER_LEN || ends.contains(&total) {
                let expected = HipRepr {
                    params: repr.params[..whole].to_vec(),
                    ..repr.clone()
                };
                assert_eq!(parsed, Ok(expected), "cut at {total}");
            } else {
                assert_eq!(parsed, Err(WireError::Truncated), "cut at {total}");
            }
        }
    }

    #[test]
    fn parameters_must_not_go_down_in_type() {
        let out_of_order = with_params(vec![
            Param::DhGroupList(vec![3]),
            Param::R1Counter {
                reserved: 0,
                counter: 1,
            },
        ]);
        let bytes = out_of_order.to_bytes();
        assert_eq!(HipRepr::parse(&bytes), Err(WireError::BadOrder));
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        let raw: Vec<_> = packet.params().collect();
        assert!(matches!(raw[..], [Ok(_), Err(WireError::BadOrder)]));

        // Repeated types are fine when adjacent.
        let repeated = with_params(vec![
            Param::EchoRequestUnsigned(vec![1]),
            Param::EchoRequestUnsigned(vec![2]),
        ]);
        assert_eq!(HipRepr::parse(&repeated.to_bytes()), Ok(repeated));
    }

    #[test]
    fn raw_params_stop_after_the_first_error() {
        // A TLV whose Length runs past the packet, then a valid one the iterator never sees.
        let mut bytes = app_c_i1();
        bytes.extend_from_slice(&hex("0201 0040 | 07 0000 00 | 0fff 0002 0000 0000"));
        bytes[1] = (bytes.len() / 8 - 1) as u8;
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        let raw: Vec<_> = packet.params().collect();
        assert!(matches!(raw[..], [Ok(_), Err(WireError::Truncated)]));
        assert_eq!(HipRepr::parse(&bytes), Err(WireError::Truncated));

        // Fewer than 4 bytes cannot hold Type and Length: only reachable through a
        // misaligned view, since packets and TLVs are multiples of 8.
        let tiny = RawParams {
            packet: &[0, 1, 0],
            offset: 0,
            min_ty: 0,
        };
        assert_eq!(tiny.collect::<Vec<_>>(), [Err(WireError::Truncated)]);
    }

    #[test]
    fn malformed_contents_fail_the_packet() {
        let mut bytes = app_c_i1();
        bytes.extend_from_slice(&hex("0201 0003 | 07 0001 | 00"));
        bytes[1] = (bytes.len() / 8 - 1) as u8;
        assert_eq!(
            HipRepr::parse(&bytes),
            Err(WireError::BadParam(t::DIFFIE_HELLMAN))
        );
    }

    #[test]
    fn covered_bytes_cut_before_the_mac_and_fix_header_length() {
        let (bytes, repr) = kitchen_sink();
        let mac = repr
            .params
            .iter()
            .position(|p| p.ty() == t::HIP_MAC)
            .unwrap();
        let mac_at = HEADER_LEN
            + repr.params[..mac]
                .iter()
                .map(Param::buffer_len)
                .sum::<usize>();
        let covered = repr.covered_bytes(t::HIP_MAC, &[]);
        let mut expected = bytes[..mac_at].to_vec();
        expected[1] = (mac_at / 8 - 1) as u8;
        assert_eq!(covered, expected);

        // HIP_MAC_2 appends the responder's HOST_ID after what it covers.
        let (host_id, _) = vectors()
            .into_iter()
            .find(|(_, p)| p.ty() == t::HOST_ID)
            .unwrap();
        let covered = repr.covered_bytes(t::HIP_MAC_2, &host_id);
        let mac2_at = mac_at + repr.params[mac].buffer_len();
        assert_eq!(covered.len(), mac2_at + host_id.len());
        assert_eq!(usize::from(covered[1]), covered.len() / 8 - 1);
        assert_eq!(covered[mac2_at..], host_id[..]);
        assert_eq!(covered[..mac2_at][4..], bytes[..mac2_at][4..]);

        // Nothing sorts below type 0: the bare header.
        let mut bare = bytes[..HEADER_LEN].to_vec();
        bare[1] = 4;
        assert_eq!(repr.covered_bytes(0, &[]), bare);
    }

    #[test]
    fn oversized_reprs_emit_without_panicking_and_never_parse() {
        let fits = with_params(vec![Param::Unknown {
            ty: 4096,
            contents: vec![0; MAX_PACKET_LEN - HEADER_LEN - 4],
        }]);
        assert_eq!(fits.buffer_len(), MAX_PACKET_LEN);
        assert_eq!(fits.to_bytes()[1], 255);
        assert_eq!(HipRepr::parse(&fits.to_bytes()), Ok(fits));

        let too_big = with_params(vec![Param::Unknown {
            ty: 4096,
            contents: vec![0; MAX_PACKET_LEN],
        }]);
        let bytes = too_big.to_bytes();
        assert_eq!(bytes.len(), too_big.buffer_len());
        assert_eq!(HipRepr::parse(&bytes), Err(WireError::BadHeaderLength));
        assert_eq!(too_big.covered_bytes(u16::MAX, &[])[1], 0);
    }

    #[test]
    fn param_finds_the_first_of_a_type() {
        let repr = with_params(vec![
            Param::Seq(1),
            Param::Ack(vec![1]),
            Param::Ack(vec![2]),
        ]);
        assert_eq!(repr.param(t::ACK), Some(&Param::Ack(vec![1])));
        assert_eq!(repr.param(t::HIP_MAC), None);
    }

    /// Whatever `bytes` is: no panic, and if it parses, emit gives bytes that parse to the
    /// same repr — the very same bytes, checksum aside, when the input's padding and
    /// reserved bits are zero. Returns whether it parsed.
    fn check_input(bytes: &[u8]) -> bool {
        let Ok(packet) = Packet::new_checked(bytes) else {
            assert!(HipRepr::parse(bytes).is_err());
            return false;
        };
        let mut clean = packet.as_bytes()[3] & 0x0e == 0;
        for raw in packet.params().flatten() {
            let start = raw.offset + 4 + raw.contents.len();
            let end = raw.offset + super::tlv_len(raw.contents.len());
            clean &= packet.as_bytes()[start..end].iter().all(|&b| b == 0);
        }
        let Ok(repr) = HipRepr::parse(bytes) else {
            return false;
        };
        let out = repr.to_bytes();
        assert_eq!(HipRepr::parse(&out).as_ref(), Ok(&repr));
        if clean {
            let mut expected = packet.as_bytes().to_vec();
            expected[field::CHECKSUM].fill(0);
            assert_eq!(out, expected);
        }
        true
    }

    #[test]
    fn every_single_byte_change_of_appendix_c_i1() {
        let bytes = app_c_i1();
        let mut parsed = 0;
        for at in 0..bytes.len() {
            for value in 0..=u8::MAX {
                let mut b = bytes.clone();
                b[at] = value;
                parsed += usize::from(check_input(&b));
            }
        }
        // The HITs, checksum, controls, Next Header and padding take any value.
        assert!(parsed > 40 * 256, "{parsed}");
    }

    #[test]
    fn random_mutations_never_panic_and_what_parses_round_trips() {
        let seeds = [app_c_i1(), kitchen_sink().0];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut parsed = 0;
        const ROUNDS: usize = 20_000;
        for round in 0..ROUNDS {
            let mut b = seeds[round % seeds.len()].clone();
            for _ in 0..1 + rng.below(3) {
                match rng.below(5) {
                    0 => {
                        let at = rng.below(b.len());
                        if let Some(byte) = b.get_mut(at) {
                            *byte = rng.next() as u8;
                        }
                    }
                    1 => {
                        let at = rng.below(b.len());
                        if let Some(byte) = b.get_mut(at) {
                            *byte ^= 1 << rng.below(8);
                        }
                    }
                    2 => b.truncate(rng.below(b.len() + 1)),
                    3 => {
                        if let Some(len) = b.get_mut(1) {
                            *len = rng.next() as u8;
                        }
                    }
                    _ => {
                        // Aim at a TLV Length field: they sit 2 bytes into 8-byte blocks.
                        let at = HEADER_LEN + 8 * rng.below(b.len() / 8) + 3;
                        if let Some(byte) = b.get_mut(at) {
                            *byte = rng.next() as u8;
                        }
                    }
                }
            }
            parsed += usize::from(check_input(&b));
        }
        // Both outcomes must be exercised for the test to mean anything.
        assert!(parsed > ROUNDS / 10 && parsed < ROUNDS * 9 / 10, "{parsed}");
    }
}
