//! RELOAD wire format (RFC 6940 §6.3, §6.4–§6.6, §7.4): parse and emit, nothing else.
//!
//! What is here:
//! - [`Packet`], a zero-copy view of a message's forwarding header for the hop-by-hop path
//!   (first destination, TTL rewrite), and [`ForwardingHeader`], its owned form with the
//!   via and destination lists ([`Destination`]) and forwarding options.
//! - [`Message`]: an unfragmented message, `ForwardingHeader ‖ MessageContents ‖
//!   SecurityBlock`; [`MessageContents`] with its [`MessageCode`], opaque body and
//!   extensions; [`ErrorResponse`] with its [`ErrorCode`].
//! - [`SecurityBlock`]: certificates and the message [`Signature`] with its
//!   [`SignerIdentity`], plus the raw-public-key helpers of our Ed25519 profile.
//! - [`FramedMessage`]: the per-hop framing of RFC 6940 §6.6.2 (data and ack).
//! - Message bodies: Ping, Join, Leave (with Chord's leave data), Update (Chord), Store and
//!   Fetch with the three data models.
//!
//! Contract, for every structure: `parse` takes exactly one encoded structure (bytes left
//! over are [`WireError::TrailingBytes`]) and never panics, whatever the input;
//! `buffer_len` is the exact size `emit` writes; `emit` never panics into a buffer at least
//! that long. `parse(emit(x)) == x` for every `x` that parses, and `emit(parse(b)) == b`
//! byte for byte: every field, reserved bits included, is kept. Protocol numbers that we do
//! not know (message, error, certificate, hash, signature, option and extension codes)
//! survive as `Unknown(raw)`; structures whose layout depends on an unknown selector are
//! kept as raw bytes where a length field allows it and are an error where it does not.
//!
//! A repr can hold more than its length prefixes can say (a 300-byte Resource-ID, a
//! compressed ID without its top bit). `emit` then saturates the field rather than panic
//! and the bytes will not parse back; [`Message::encodable`] and its siblings say whether
//! that happens, so check them when a peer influences the size.
//!
//! Node-IDs are 16 bytes ([`NODE_ID_LEN`], our HITs); the overlay has no other length.
//! The Data model of a Kind comes from the configuration, never from the wire, so Store and
//! Fetch bodies parse with a caller's `Fn(KindId) -> Option<DataModel>`.
//!
//! The byte reader and writers are `hip::wire::codec`'s, shared with the HIP codec; this
//! module adds RELOAD's error type, TLS Booleans and the `Decode` / `Encode` traits that
//! every structure implements.

/// The public `buffer_len` / `emit` / `to_bytes` / `encodable` of a type from its one
/// `write` method, so that the length and the bytes cannot disagree; with `parse` too when
/// the type implements [`Decode`].
macro_rules! repr_methods {
    (encode $ty:ty) => {
        impl $ty {
            /// Bytes `emit` writes.
            pub fn buffer_len(&self) -> usize {
                $crate::wire::Encode::encoded_len(self)
            }

            /// Writes the encoding to the start of `buf`. Panics only if `buf` is shorter
            /// than [`buffer_len`](Self::buffer_len).
            pub fn emit(&self, buf: &mut [u8]) {
                $crate::wire::Encode::emit_into(self, buf)
            }

            /// Convenience: `emit` into a fresh `Vec`.
            pub fn to_bytes(&self) -> Vec<u8> {
                $crate::wire::Encode::encode_vec(self)
            }

            /// False if some field is too long for its length prefix (or otherwise cannot
            /// be represented): `emit` still writes `buffer_len()` bytes, but they will not
            /// parse back to `self`.
            pub fn encodable(&self) -> bool {
                $crate::wire::Encode::fits(self)
            }
        }
    };
    ($ty:ty) => {
        repr_methods!(encode $ty);

        impl $ty {
            /// Parses exactly one encoded value: leftover bytes are an error.
            pub fn parse(bytes: &[u8]) -> Result<Self, $crate::wire::WireError> {
                $crate::wire::Decode::decode_exact(bytes)
            }
        }
    };
}

use hip::wire::codec::{self, Counter, Sink, Writer};

mod contents;
mod framing;
mod grant;
mod header;
mod locator;
mod name;
mod route;
mod security;
mod storage;
mod topology;
#[cfg(test)]
mod vectors;

pub use contents::{
    extension_type, ErrorCode, ErrorResponse, MessageCode, MessageContents, MessageExtension,
};
pub use framing::FramedMessage;
pub use grant::{NameGrant, GRANT_CONTEXT};
pub use header::{
    fragment, option_flags, Destination, ForwardingHeader, ForwardingOption, ForwardingOptionType,
    Message, Packet, HEADER_LEN, RELO_TOKEN, VERSION,
};
pub use locator::{HitLocator, LocatorEntry, LocatorKind};
pub use name::{valid_name, NameRecord, MAX_NAME_LEN};
pub use route::{
    probe_type, ChordRouteQueryAns, FindAns, FindKindData, FindReq, ProbeAns, ProbeInformation,
    ProbeReq, RouteQueryReq,
};
pub use security::{
    CertificateType, GenericCertificate, HashAlgorithm, SecurityBlock, Signature,
    SignatureAlgorithm, SignatureAndHashAlgorithm, SignerIdentity, ED25519_SPKI_PREFIX,
};
pub use storage::{
    ArrayRange, DataModel, DataValue, FetchAns, FetchKindResponse, FetchReq, KindId, Selector,
    StoreAns, StoreKindData, StoreKindResponse, StoreReq, StoredData, StoredDataSpecifier,
    StoredDataValue,
};
pub use topology::{
    ChordLeaveData, ChordUpdate, ChordUpdateKind, JoinAns, JoinReq, LeaveReq, PingAns, PingReq,
};

/// Bytes in a Node-ID: a HIT (RFC 7086 §4, our R1).
pub const NODE_ID_LEN: usize = 16;

/// Why bytes are not the RELOAD structure asked for. Small on purpose: the parser says
/// *what* is wrong; the message layer decides whether to drop silently or answer with an
/// Error (RFC 6940 §6.3.3.1). Every variant is malformed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The input, or a length-delimited part of it, ends before a field does.
    Truncated,
    /// A length-delimited part holds more than its structure.
    TrailingBytes,
    /// The first four bytes are not the RELO token `d2 45 4c 4f`.
    BadToken,
    /// The version byte is not 0x0a (RFC 6940 §6.3.2: other values MUST be rejected).
    BadVersion(u8),
    /// The forwarding header's `length` disagrees with the message it came in, or its
    /// list lengths run past it.
    BadLength,
    /// The message is one fragment of a larger one: reassemble before parsing contents.
    Fragmented,
    /// A field holds a value its structure does not allow (named here): a Boolean other
    /// than 0/1, a selector whose layout is unknown, a Node-ID of the wrong length.
    Invalid(&'static str),
    /// A Store or Fetch body names a Kind whose data model the caller does not know; the
    /// layout of its values depends on it. Answer with Error_Unknown_Kind
    /// ([`StoreReq::kinds`] lists them all without parsing values).
    UnknownKind(KindId),
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated RELOAD structure"),
            WireError::TrailingBytes => f.write_str("trailing bytes in a RELOAD structure"),
            WireError::BadToken => f.write_str("not a RELOAD message (no RELO token)"),
            WireError::BadVersion(v) => write!(f, "unsupported RELOAD version {v:#04x}"),
            WireError::BadLength => f.write_str("RELOAD length field disagrees with the message"),
            WireError::Fragmented => f.write_str("RELOAD message is a fragment"),
            WireError::Invalid(what) => write!(f, "invalid RELOAD {what}"),
            WireError::UnknownKind(k) => write!(f, "unknown RELOAD Kind-ID {k:#x}"),
        }
    }
}

impl std::error::Error for WireError {}

/// A Node-ID: 16 bytes, big-endian on the ring. In hipbone it is the node's HIT (R2).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub [u8; NODE_ID_LEN]);

impl NodeId {
    /// All ones: every peer is responsible for it and consumes it (RFC 6940 §4.1).
    pub const WILDCARD: NodeId = NodeId([0xff; NODE_ID_LEN]);
}

impl From<hip::Hit> for NodeId {
    fn from(h: hip::Hit) -> NodeId {
        NodeId(h.0)
    }
}

impl From<NodeId> for hip::Hit {
    fn from(n: NodeId) -> hip::Hit {
        hip::Hit(n.0)
    }
}

/// Hex, the way RELOAD tools print Node-IDs.
impl core::fmt::Display for NodeId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl core::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// A Resource-ID: `opaque ResourceId<0..2^8-1>` — always with its length byte on the
/// wire. For CHORD-RELOAD 16 bytes, but any length up to 255 parses.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ResourceId(pub Vec<u8>);

impl core::fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ResourceId(")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        f.write_str(")")
    }
}

impl Decode for NodeId {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.array().map(NodeId)
    }
}

impl Encode for NodeId {
    fn write(&self, w: &mut dyn Sink) {
        w.put(&self.0);
    }
}

impl Decode for ResourceId {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.opaque(1).map(|b| ResourceId(b.to_vec()))
    }
}

impl Encode for ResourceId {
    fn write(&self, w: &mut dyn Sink) {
        w.opaque(1, &self.0);
    }
}

repr_methods!(ResourceId);

/// How a structure reads itself from a [`Reader`].
trait Decode: Sized {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError>;

    fn decode_exact(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = reader(bytes);
        let v = Self::read(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// How a structure writes itself: one method, run once on a [`Counter`] for the length
/// and once on a [`Writer`] for the bytes.
trait Encode {
    fn write(&self, w: &mut dyn Sink);

    fn encoded_len(&self) -> usize {
        let mut c = Counter::default();
        self.write(&mut c);
        c.len
    }

    fn fits(&self) -> bool {
        let mut c = Counter::default();
        self.write(&mut c);
        c.fits
    }

    fn emit_into(&self, buf: &mut [u8]) {
        let len = self.encoded_len();
        self.write(&mut Writer::new(&mut buf[..len]));
    }

    fn encode_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.encoded_len()];
        self.emit_into(&mut v);
        v
    }
}

/// The reader of RELOAD's parsers: the shared codec's, with `Truncated` for a read past
/// the end and `TrailingBytes` for a part that is not used up.
type Reader<'a> = codec::Reader<'a, WireError>;

/// A reader of `bytes` with this crate's errors.
fn reader(bytes: &[u8]) -> Reader<'_> {
    Reader::new(bytes, WireError::Truncated, WireError::TrailingBytes)
}

/// What RELOAD reads beyond the shared codec: TLS Booleans, whose other values are an
/// error of this crate, and lists of [`Decode`] structures.
trait ReadExt {
    fn boolean(&mut self) -> Result<bool, WireError>;
    fn list<T: Decode>(&mut self, width: usize) -> Result<Vec<T>, WireError>;
}

impl ReadExt for Reader<'_> {
    /// A TLS `Boolean`: one byte, 0 or 1; anything else would not round-trip.
    fn boolean(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Invalid("Boolean")),
        }
    }

    /// `T list<..>` with a `width`-byte length in bytes: items until the part is used up;
    /// a partial last item is an error.
    fn list<T: Decode>(&mut self, width: usize) -> Result<Vec<T>, WireError> {
        self.list_with(width, T::read)
    }
}

/// The write side of [`ReadExt`].
trait WriteExt {
    fn boolean(&mut self, v: bool);
    fn list<T: Encode>(&mut self, width: usize, items: &[T]);
}

impl WriteExt for dyn Sink + '_ {
    fn boolean(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// `T list<..>` with a `width`-byte length in bytes.
    fn list<T: Encode>(&mut self, width: usize, items: &[T]) {
        self.nested(width, &|w| items.iter().for_each(|i| i.write(w)));
    }
}

/// Helpers the tests of every wire module share.
#[cfg(test)]
mod testutil {
    use super::WireError;

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

    /// The checks every structure gets from its known bytes: parse gives `value`, emit
    /// gives `bytes` back with `buffer_len() == bytes.len()`, every proper prefix fails
    /// (without panicking), and a byte appended is `TrailingBytes`.
    pub fn both_ways<T: PartialEq + core::fmt::Debug>(
        bytes: &[u8],
        value: &T,
        parse: impl Fn(&[u8]) -> Result<T, WireError>,
        emit: impl Fn(&T) -> Vec<u8>,
    ) {
        assert_eq!(parse(bytes).as_ref(), Ok(value));
        assert_eq!(emit(value), bytes);
        for len in 0..bytes.len() {
            assert!(
                parse(&bytes[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(parse(&longer).is_err(), "a trailing byte was accepted");
    }

    /// Random byte changes, bit flips, truncations and extensions of `seeds`: nothing
    /// panics, and whatever parses emits the very same bytes. Returns how many parsed.
    pub fn mutate<T: PartialEq + core::fmt::Debug>(
        seeds: &[Vec<u8>],
        rounds: usize,
        seed: u64,
        parse: impl Fn(&[u8]) -> Result<T, WireError>,
        emit: impl Fn(&T) -> Vec<u8>,
    ) -> usize {
        let mut rng = XorShift(seed);
        let mut parsed = 0;
        for round in 0..rounds {
            let mut b = seeds[round % seeds.len()].clone();
            for _ in 0..1 + rng.below(3) {
                match rng.below(4) {
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
                    _ => {
                        let at = rng.below(b.len() + 1);
                        b.insert(at, rng.next() as u8);
                    }
                }
            }
            if let Ok(v) = parse(&b) {
                assert_eq!(emit(&v), b, "round {round}");
                assert_eq!(parse(&emit(&v)).as_ref(), Ok(&v));
                parsed += 1;
            }
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::hex;
    use super::*;

    #[test]
    fn reader_reads_big_endian_lengths_and_booleans() {
        let mut r = reader(&[1, 0, 2, 3, 4, 0, 0, 1, 9, 2]);
        assert_eq!(r.boolean(), Ok(true));
        assert_eq!(r.opaque(2), Ok(&[3, 4][..]));
        assert_eq!(r.uint(3), Ok(1));
        assert_eq!(r.u16(), Ok(0x0902));
        assert_eq!(r.u8(), Err(WireError::Truncated));
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(reader(&[2]).boolean(), Err(WireError::Invalid("Boolean")));
        // A length running past the input; parsers stop at the first error, so what the
        // failed read consumed does not matter.
        assert_eq!(reader(&[0, 5, 1]).opaque(2), Err(WireError::Truncated));
        let r = reader(&[7]);
        assert_eq!(r.finish(), Err(WireError::TrailingBytes));
    }

    #[test]
    fn lists_must_end_on_an_item_boundary() {
        let ok: Result<Vec<NodeId>, _> = reader(&hex(
            "0020 11111111111111111111111111111111 22222222222222222222222222222222",
        ))
        .list(2);
        assert_eq!(ok, Ok(vec![NodeId([0x11; 16]), NodeId([0x22; 16])]));
        let partial: Result<Vec<NodeId>, _> =
            reader(&hex("0011 11111111111111111111111111111111 22")).list(2);
        assert_eq!(partial, Err(WireError::Truncated));
    }

    #[test]
    fn resource_id_carries_its_length_byte() {
        // RFC 6940 §6.3.1.1: "FOO" is 03 46 4f 4f.
        let foo = ResourceId(b"FOO".to_vec());
        testutil::both_ways(
            &hex("03 464f4f"),
            &foo,
            ResourceId::parse,
            ResourceId::to_bytes,
        );
        assert!(ResourceId(vec![0; 255]).encodable());
        let long = ResourceId(vec![0; 256]);
        assert!(!long.encodable());
        assert_eq!(long.buffer_len(), 257);
        assert_eq!(long.to_bytes()[0], 255);
        assert!(ResourceId::parse(&long.to_bytes()).is_err());
    }

    #[test]
    fn node_ids_convert_to_hits_and_print_as_hex() {
        let hit = hip::Hit([0x20, 0x01, 0, 0x2a, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        let node = NodeId::from(hit);
        assert_eq!(hip::Hit::from(node), hit);
        assert_eq!(node.to_string(), "2001002a000102030405060708090a0b");
        assert_eq!(
            format!("{:?}", NodeId::WILDCARD),
            format!("NodeId({})", "ff".repeat(16))
        );
    }

    #[test]
    fn errors_display_what_is_wrong() {
        assert_eq!(
            WireError::BadVersion(1).to_string(),
            "unsupported RELOAD version 0x01"
        );
        assert_eq!(
            WireError::UnknownKind(0x104).to_string(),
            "unknown RELOAD Kind-ID 0x104"
        );
        assert_eq!(
            WireError::Invalid("Boolean").to_string(),
            "invalid RELOAD Boolean"
        );
    }
}
