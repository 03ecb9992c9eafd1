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

/// Both `From` conversions between a protocol-number enum with an `Unknown(raw)` variant
/// and its raw type, from one list of `Variant = value`. The enum-to-raw match is
/// exhaustive, so a variant missing from the list does not compile.
macro_rules! raw_conversions {
    ($enum:ident: $raw:ty { $($variant:ident = $value:literal),+ $(,)? }) => {
        impl From<$raw> for $enum {
            fn from(v: $raw) -> Self {
                match v {
                    $($value => $enum::$variant,)+
                    other => $enum::Unknown(other),
                }
            }
        }

        impl From<$enum> for $raw {
            fn from(t: $enum) -> $raw {
                match t {
                    $($enum::$variant => $value,)+
                    $enum::Unknown(v) => v,
                }
            }
        }
    };
}

mod checksum;
mod header;
mod param;

pub use checksum::{checksum, fill_checksum, verify_checksum};
pub use header::{HipRepr, Packet, PacketType, RawParam, RawParams, HEADER_LEN, MAX_PACKET_LEN};
pub use param::{
    mapped, nat_mode, param_type, unmapped, EspInfo, HostId, Locator, Notification, NotifyType,
    Param, PeerPermission, Puzzle, Solution, TransportAddress, TransportLocator,
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

/// A bounds-checked cursor over input bytes: every read either succeeds or returns the
/// error the caller chose (`Truncated` for framing, `BadParam(ty)` inside a parameter), so
/// TLV parsing never indexes input directly.
#[derive(Debug)]
struct Reader<'a> {
    bytes: &'a [u8],
    err: WireError,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], err: WireError) -> Self {
        Reader { bytes, err }
    }

    fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.bytes.len() {
            return Err(self.err);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        self.array().map(u8::from_be_bytes)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_be_bytes)
    }

    /// Everything left.
    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.bytes)
    }

    /// Reads items until the input is used up; a partial last item is an error.
    fn list<V>(
        &mut self,
        item: fn(&mut Self) -> Result<V, WireError>,
    ) -> Result<Vec<V>, WireError> {
        let mut out = Vec::new();
        while self.remaining() > 0 {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// Fixed-layout fields must use up their input exactly.
    fn finish(&self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.err)
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::{Reader, WireError};

    const ERR: WireError = WireError::BadParam(7);

    #[test]
    fn reader_reads_big_endian_and_reports_the_chosen_error() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6], ERR);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.u32(), Err(ERR));
        // A failed read consumes nothing.
        assert_eq!(r.remaining(), 3);
        assert_eq!(r.finish(), Err(ERR));
        assert_eq!(r.rest(), &[4, 5, 6]);
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(r.u8(), Err(ERR));
    }

    #[test]
    fn reader_list_rejects_a_partial_item() {
        assert_eq!(
            Reader::new(&[0, 1, 0, 2], ERR).list(Reader::u16),
            Ok(vec![1, 2])
        );
        assert_eq!(Reader::new(&[0, 1, 0], ERR).list(Reader::u16), Err(ERR));
        assert_eq!(Reader::new(&[], ERR).list(Reader::u32), Ok(vec![]));
    }
}
