//! HIP wire format (RFC 7401 §5): the fixed header, the checksum and the parameter TLVs.
//!
//! Two layers, in the smoltcp manner:
//! - [`Packet`] is a zero-copy view over a buffer with checked accessors for the header and
//!   an iterator over raw parameters ([`RawParam`]).
//! - [`HipRepr`] / [`Param`] are owned representations: `HipRepr::parse` reads a whole packet,
//!   `emit` writes it into a buffer of exactly `buffer_len()` bytes.
//!
//! Contract: parsing never panics, whatever the input; `emit` never panics into a buffer of
//! `buffer_len()` bytes; `parse(emit(x)) == x` for every `x` that parses, and `emit(parse(b))
//! == b` for every well-formed `b` whose padding bytes are zero (the captures in
//! `shared/captures` are held to this). Unknown parameter types are kept as
//! [`Param::Unknown`] and re-emitted unchanged. The checksum is *not* checked by `parse`:
//! over UDP it is zero by rule, over raw IP the caller checks it with [`verify_checksum`].
//! Two things do not survive a round trip, by design: the checksum (emit writes zero, the
//! caller fills it) and the three reserved bits of byte 3 (ignored on receipt, sent as zero).
//! A repr longer than [`MAX_PACKET_LEN`] cannot be sent; check `buffer_len()` first.
//!
//! The byte-level reader and writers are in [`codec`], which the overlay's RELOAD codec
//! shares.

pub mod codec;

mod checksum;
mod header;
mod param;

pub use checksum::{checksum, fill_checksum, verify_checksum};
pub use header::{HipRepr, Packet, PacketType, RawParam, RawParams, HEADER_LEN, MAX_PACKET_LEN};
pub use param::{
    mapped, nat_mode, param_type, route_flags, unmapped, EspInfo, HostId, Locator, Notification,
    NotifyType, Param, PeerPermission, Puzzle, Route, Solution, TransportAddress, TransportLocator,
    MAX_ROUTE_HITS,
};

/// Why a buffer is not a HIP packet. Small on purpose: the parser reports *what* is
/// wrong, the association layer decides what goes on the wire in reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer ends before the header or a parameter does.
    Truncated,
    /// Header Length disagrees with the buffer, or is out of range (RFC 7401 §5.1).
    BadHeaderLength,
    /// The fixed bits or the version are wrong.
    BadVersion,
    /// Parameters are not in increasing type order (RFC 7401 §5.2.1).
    BadOrder,
    /// A known parameter has contents that do not fit its definition.
    BadParam(u16),
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated HIP packet"),
            WireError::BadHeaderLength => f.write_str("bad HIP header length"),
            WireError::BadVersion => f.write_str("unsupported HIP version or fixed bits"),
            WireError::BadOrder => f.write_str("HIP parameters out of type order"),
            WireError::BadParam(t) => write!(f, "malformed HIP parameter of type {t}"),
        }
    }
}

impl std::error::Error for WireError {}

/// The reader of HIP's parsers: one error, chosen per reader, for a read past the end and
/// for bytes left over (`Truncated` for framing, `BadParam(ty)` inside a parameter).
type Reader<'a> = codec::Reader<'a, WireError>;

/// Helpers the tests of the crate's modules share.
#[cfg(test)]
pub(crate) mod testutil {
    /// Bytes from hex digits; whitespace and `|` separators are ignored.
    pub fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(|b| !b.is_ascii_whitespace() && *b != b'|')
            .collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(core::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// 32 bytes from 64 hex digits.
    pub fn arr32(s: &str) -> [u8; 32] {
        hex(s).try_into().unwrap()
    }

    /// The I1 of RFC 7401 Appendix C: HITs 2001:20::1 → 2001:20::2, one DH_GROUP_LIST
    /// (3, 4, 8), checksum field zero.
    pub fn app_c_i1() -> Vec<u8> {
        hex("3b 05 01 21 | 0000 | 0000
             2001 0020 0000 0000 0000 0000 0000 0001
             2001 0020 0000 0000 0000 0000 0000 0002
             01ff 0003 | 03 04 08 | 00")
    }

    /// xorshift64: deterministic pseudo-random numbers without a crate.
    pub struct XorShift(pub u64);

    impl XorShift {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// Uniform enough in `0..n` for test inputs; 0 when `n` is 0.
        pub fn below(&mut self, n: usize) -> usize {
            self.next().checked_rem(n as u64).unwrap_or(0) as usize
        }
    }
}
