//! The forwarding header (RFC 6940 §6.3.2) with its destination and via lists (§6.3.2.2)
//! and forwarding options (§6.3.2.3), and whole unfragmented messages.
//!
//! Intermediate peers look only at the header: [`Packet`] is the zero-copy view they use
//! (first destination, TTL rewrite in place); [`ForwardingHeader`] is the owned form a peer
//! edits when it pushes or pops list entries and re-emits. [`Message`] adds the contents
//! and the security block for the destination.

use super::contents::MessageContents;
use super::security::SecurityBlock;
use super::{reader, Decode, Encode, NodeId, Reader, ResourceId, Sink, WireError, NODE_ID_LEN};

/// Bytes in the fixed part of the forwarding header (Wireshark's `MIN_HDR_LENGTH`).
pub const HEADER_LEN: usize = 38;
/// "RELO" with the top bit of the first byte set.
pub const RELO_TOKEN: u32 = 0xd245_4c4f;
/// 10 × the protocol version: RFC 6940 is version 1.0.
pub const VERSION: u8 = 0x0a;

/// Byte offsets of the fixed header fields.
mod field {
    use core::ops::Range;

    pub const RELO_TOKEN: Range<usize> = 0..4;
    pub const OVERLAY: Range<usize> = 4..8;
    pub const CONFIGURATION_SEQUENCE: Range<usize> = 8..10;
    pub const VERSION: usize = 10;
    pub const TTL: usize = 11;
    pub const FRAGMENT: Range<usize> = 12..16;
    pub const LENGTH: Range<usize> = 16..20;
    pub const TRANSACTION_ID: Range<usize> = 20..28;
    pub const MAX_RESPONSE_LENGTH: Range<usize> = 28..32;
    pub const VIA_LIST_LENGTH: Range<usize> = 32..34;
    pub const DESTINATION_LIST_LENGTH: Range<usize> = 34..36;
    pub const OPTIONS_LENGTH: Range<usize> = 36..38;
    pub const LISTS: usize = 38;
}

/// The 32-bit `fragment` field: kept raw in [`ForwardingHeader`] so reserved bits survive.
pub mod fragment {
    /// Always set by RFC 6940 senders; a clear bit marks a pre-RFC sender.
    pub const FLAG: u32 = 0x8000_0000;
    /// Set on the last (or only) fragment.
    pub const LAST: u32 = 0x4000_0000;
    /// Bits 29–24, reserved.
    pub const RESERVED: u32 = 0x3f00_0000;
    /// Bits 23–0: offset of this piece in the original post-header bytes.
    pub const OFFSET: u32 = 0x00ff_ffff;
    /// An unfragmented message: `c0 00 00 00`.
    pub const UNFRAGMENTED: u32 = FLAG | LAST;
}

/// Forwarding option flags (§6.3.2.3, RFC 7263).
pub mod option_flags {
    pub const FORWARD_CRITICAL: u8 = 0x01;
    pub const DESTINATION_CRITICAL: u8 = 0x02;
    pub const RESPONSE_COPY: u8 = 0x04;
    /// RFC 7263.
    pub const IGNORE_STATE_KEEPING: u8 = 0x08;
}

/// Forwarding option types (§14.12, RFC 7263). Unknown values survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardingOptionType {
    ExpForward,           // 1
    ExtensiveRoutingMode, // 2, RFC 7263
    Unknown(u8),
}

hip::raw_conversions!(ForwardingOptionType: u8 {
    ExpForward = 1,
    ExtensiveRoutingMode = 2,
});

/// One `ForwardingOption`: `type:u8 flags:u8 length:u16 value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingOption {
    pub ty: ForwardingOptionType,
    /// See [`option_flags`]; all bits kept.
    pub flags: u8,
    pub value: Vec<u8>,
}

/// One entry of a destination or via list.
///
/// Long form `type:u8 length:u8 data`; short form a `u16` with the top bit set, which
/// stands for a 2-byte opaque ID. Which form an opaque ID takes is kept (`Opaque` vs
/// `Compressed`) so that re-emitting gives the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Type 1: exactly [`NODE_ID_LEN`] bytes, no inner length.
    Node(NodeId),
    /// Type 2: a `ResourceId` with its own length byte. Only as the last destination.
    Resource(ResourceId),
    /// Type 3: `opaque<0..2^8-1>` with its own length byte.
    Opaque(Vec<u8>),
    /// Short form: the whole `u16`, top bit included (a value without it cannot be sent).
    Compressed(u16),
    /// A long-form type we do not know (0, 4..=127): its data, for the router to refuse.
    Unknown { ty: u8, data: Vec<u8> },
}

const DEST_NODE: u8 = 1;
const DEST_RESOURCE: u8 = 2;
const DEST_OPAQUE: u8 = 3;
/// First bit of an entry: 1 = short (compressed) form.
const SHORT_FORM: u8 = 0x80;

impl Destination {
    /// Parses a whole list (as found between the header's length fields).
    pub fn parse_list(bytes: &[u8]) -> Result<Vec<Destination>, WireError> {
        reader(bytes).items(Destination::read)
    }

    /// The first entry of a list and the rest of it, for a peer that only needs to route.
    pub fn parse_first(bytes: &[u8]) -> Result<(Destination, &[u8]), WireError> {
        let mut r = reader(bytes);
        let first = Destination::read(&mut r)?;
        Ok((first, r.rest()))
    }

    /// Bytes of a list of entries.
    pub fn list_len(list: &[Destination]) -> usize {
        list.iter().map(Destination::buffer_len).sum()
    }
}

impl Decode for Destination {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let first = r.u8()?;
        if first & SHORT_FORM != 0 {
            return Ok(Destination::Compressed(u16::from_be_bytes([
                first,
                r.u8()?,
            ])));
        }
        let mut data = r.sub(1)?;
        let dest = match first {
            DEST_NODE => Destination::Node(
                NodeId::read(&mut data).map_err(|_| WireError::Invalid("Node-ID length"))?,
            ),
            DEST_RESOURCE => Destination::Resource(ResourceId::read(&mut data)?),
            DEST_OPAQUE => Destination::Opaque(data.opaque(1)?.to_vec()),
            ty => Destination::Unknown {
                ty,
                data: data.rest().to_vec(),
            },
        };
        if first == DEST_NODE && !data.is_empty() {
            return Err(WireError::Invalid("Node-ID length"));
        }
        data.finish()?;
        Ok(dest)
    }
}

impl Encode for Destination {
    fn write(&self, w: &mut dyn Sink) {
        match self {
            Destination::Node(id) => {
                w.u8(DEST_NODE);
                w.u8(NODE_ID_LEN as u8);
                id.write(w);
            }
            Destination::Resource(id) => {
                w.u8(DEST_RESOURCE);
                w.nested(1, &|w| id.write(w));
            }
            Destination::Opaque(data) => {
                w.u8(DEST_OPAQUE);
                w.nested(1, &|w| w.opaque(1, data));
            }
            Destination::Compressed(v) => {
                if v & 0x8000 == 0 {
                    w.overflow();
                }
                w.u16(v | 0x8000);
            }
            Destination::Unknown { ty, data } => {
                // A known type or the short-form bit would not parse back as Unknown.
                if matches!(*ty, DEST_NODE | DEST_RESOURCE | DEST_OPAQUE) || ty & SHORT_FORM != 0 {
                    w.overflow();
                }
                w.u8(*ty);
                w.opaque(1, data);
            }
        }
    }
}

impl Decode for ForwardingOption {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ForwardingOption {
            ty: r.u8()?.into(),
            flags: r.u8()?,
            value: r.opaque(2)?.to_vec(),
        })
    }
}

impl Encode for ForwardingOption {
    fn write(&self, w: &mut dyn Sink) {
        w.u8(self.ty.into());
        w.u8(self.flags);
        w.opaque(2, &self.value);
    }
}

repr_methods!(Destination);
repr_methods!(ForwardingOption);

/// A zero-copy view of a RELOAD message for forwarding. Accessors never panic once
/// [`new_checked`](Self::new_checked) succeeded.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the token, the version, that `length` equals the buffer's length (one
    /// message per buffer: the framing layer delimits it) and that the three lists fit in
    /// it. The list contents are not parsed.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let packet = Packet { buffer };
        if packet.relo_token() != RELO_TOKEN {
            return Err(WireError::BadToken);
        }
        if packet.version() != VERSION {
            return Err(WireError::BadVersion(packet.version()));
        }
        let total = packet.buffer.as_ref().len();
        if usize::try_from(packet.length()) != Ok(total) || packet.lists_end() > total {
            return Err(WireError::BadLength);
        }
        Ok(packet)
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn u16_at(&self, range: core::ops::Range<usize>) -> u16 {
        let mut a = [0; 2];
        a.copy_from_slice(&self.bytes()[range]);
        u16::from_be_bytes(a)
    }

    fn u32_at(&self, range: core::ops::Range<usize>) -> u32 {
        let mut a = [0; 4];
        a.copy_from_slice(&self.bytes()[range]);
        u32::from_be_bytes(a)
    }

    pub fn relo_token(&self) -> u32 {
        self.u32_at(field::RELO_TOKEN)
    }

    pub fn overlay(&self) -> u32 {
        self.u32_at(field::OVERLAY)
    }

    pub fn configuration_sequence(&self) -> u16 {
        self.u16_at(field::CONFIGURATION_SEQUENCE)
    }

    pub fn version(&self) -> u8 {
        self.bytes()[field::VERSION]
    }

    pub fn ttl(&self) -> u8 {
        self.bytes()[field::TTL]
    }

    pub fn fragment(&self) -> u32 {
        self.u32_at(field::FRAGMENT)
    }

    pub fn length(&self) -> u32 {
        self.u32_at(field::LENGTH)
    }

    pub fn transaction_id(&self) -> u64 {
        let mut a = [0; 8];
        a.copy_from_slice(&self.bytes()[field::TRANSACTION_ID]);
        u64::from_be_bytes(a)
    }

    pub fn max_response_length(&self) -> u32 {
        self.u32_at(field::MAX_RESPONSE_LENGTH)
    }

    fn via_len(&self) -> usize {
        self.u16_at(field::VIA_LIST_LENGTH).into()
    }

    fn destination_len(&self) -> usize {
        self.u16_at(field::DESTINATION_LIST_LENGTH).into()
    }

    fn options_len(&self) -> usize {
        self.u16_at(field::OPTIONS_LENGTH).into()
    }

    fn lists_end(&self) -> usize {
        field::LISTS + self.via_len() + self.destination_len() + self.options_len()
    }

    /// The encoded via list.
    pub fn via_list(&self) -> &[u8] {
        let start = field::LISTS;
        &self.bytes()[start..start + self.via_len()]
    }

    /// The encoded destination list.
    pub fn destination_list(&self) -> &[u8] {
        let start = field::LISTS + self.via_len();
        &self.bytes()[start..start + self.destination_len()]
    }

    /// The encoded forwarding options.
    pub fn options(&self) -> &[u8] {
        let start = field::LISTS + self.via_len() + self.destination_len();
        &self.bytes()[start..start + self.options_len()]
    }

    /// Everything after the header: contents and security block, or a fragment of them.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.lists_end()..]
    }

    /// The entry the message goes to next (§6.1). An empty list is `Truncated`.
    pub fn first_destination(&self) -> Result<Destination, WireError> {
        Destination::parse_first(self.destination_list()).map(|(d, _)| d)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Rewrites the TTL in place: forwarders decrement it just before sending (§6.3.2),
    /// the only header change that needs no re-emit.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }
}

/// The forwarding header, owned. Token and version are constants ([`RELO_TOKEN`],
/// [`VERSION`]) and `length` is computed when emitting, so none of them is a field here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingHeader {
    /// Low 32 bits of SHA-1(overlay name).
    pub overlay: u32,
    pub configuration_sequence: u16,
    pub ttl: u8,
    /// Raw, see [`fragment`]; [`fragment::UNFRAGMENTED`] for whole messages.
    pub fragment: u32,
    pub transaction_id: u64,
    /// 0 = no limit.
    pub max_response_length: u32,
    pub via_list: Vec<Destination>,
    pub destination_list: Vec<Destination>,
    pub options: Vec<ForwardingOption>,
}

impl ForwardingHeader {
    /// Parses the header of one whole message (its `length` must equal `bytes.len()`) and
    /// returns the bytes after it: contents and security block, or a fragment of them.
    pub fn parse(bytes: &[u8]) -> Result<(ForwardingHeader, &[u8]), WireError> {
        let packet = Packet::new_checked(bytes)?;
        let header = ForwardingHeader {
            overlay: packet.overlay(),
            configuration_sequence: packet.configuration_sequence(),
            ttl: packet.ttl(),
            fragment: packet.fragment(),
            transaction_id: packet.transaction_id(),
            max_response_length: packet.max_response_length(),
            via_list: Destination::parse_list(packet.via_list())?,
            destination_list: Destination::parse_list(packet.destination_list())?,
            options: reader(packet.options()).items(ForwardingOption::read)?,
        };
        let start = packet.lists_end();
        Ok((header, &bytes[start..]))
    }

    /// Bytes of the header alone.
    pub fn buffer_len(&self) -> usize {
        let mut c = super::Counter::default();
        self.write(&mut c, 0);
        c.len
    }

    /// False if a list is longer than its 16-bit length or the message longer than 2^32-1.
    pub fn encodable(&self, payload_len: usize) -> bool {
        let mut c = super::Counter::default();
        self.write(&mut c, payload_len);
        c.fits
    }

    /// Writes the header of a message with `payload_len` bytes after it (`length` =
    /// header + payload). Panics only if `buf` is shorter than `buffer_len()`.
    pub fn emit(&self, payload_len: usize, buf: &mut [u8]) {
        let len = self.buffer_len();
        self.write(&mut super::Writer::new(&mut buf[..len]), payload_len);
    }

    /// Convenience: the header followed by `payload`, e.g. to re-emit a fragment.
    pub fn to_bytes(&self, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len() + payload.len()];
        let (head, tail) = v.split_at_mut(self.buffer_len());
        self.emit(payload.len(), head);
        tail.copy_from_slice(payload);
        v
    }

    /// One layout for counting and writing. The three lengths come before the three
    /// lists (RFC 6940 groups them for hardware parsing), so each list is counted first.
    fn write(&self, w: &mut dyn Sink, payload_len: usize) {
        fn count<T: Encode>(items: &[T], w: &mut dyn Sink) -> usize {
            let mut c = super::Counter::default();
            items.iter().for_each(|i| i.write(&mut c));
            if !c.fits {
                w.overflow();
            }
            c.len
        }
        let via = count(&self.via_list, w);
        let dest = count(&self.destination_list, w);
        let opts = count(&self.options, w);
        let total = HEADER_LEN + via + dest + opts + payload_len;
        w.u32(RELO_TOKEN);
        w.u32(self.overlay);
        w.u16(self.configuration_sequence);
        w.u8(VERSION);
        w.u8(self.ttl);
        w.u32(self.fragment);
        w.uint(4, total);
        w.u64(self.transaction_id);
        w.u32(self.max_response_length);
        w.uint(2, via);
        w.uint(2, dest);
        w.uint(2, opts);
        self.via_list.iter().for_each(|d| d.write(w));
        self.destination_list.iter().for_each(|d| d.write(w));
        self.options.iter().for_each(|o| o.write(w));
    }

    /// True if `fragment` says this is a whole message: last fragment at offset 0.
    pub fn is_unfragmented(&self) -> bool {
        self.fragment & (fragment::LAST | fragment::OFFSET) == fragment::LAST
    }
}

/// A whole (unfragmented or reassembled) message: `ForwardingHeader ‖ MessageContents ‖
/// SecurityBlock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: ForwardingHeader,
    pub contents: MessageContents,
    pub security: SecurityBlock,
}

impl Message {
    /// Parses one whole message. A fragment is [`WireError::Fragmented`]; the `fragment`
    /// field must carry its RFC 6940 marker bit (a pre-RFC sender's message is refused,
    /// which §6.3.2 allows: "SHOULD discard").
    pub fn parse(bytes: &[u8]) -> Result<Message, WireError> {
        let (header, payload) = ForwardingHeader::parse(bytes)?;
        if header.fragment & fragment::FLAG == 0 {
            return Err(WireError::Invalid("fragment field"));
        }
        if !header.is_unfragmented() {
            return Err(WireError::Fragmented);
        }
        let mut r = reader(payload);
        let contents = MessageContents::read(&mut r)?;
        let security = SecurityBlock::read(&mut r)?;
        r.finish()?;
        Ok(Message {
            header,
            contents,
            security,
        })
    }

    /// The bytes the originator signs (§6.3.4): `overlay ‖ transaction_id ‖
    /// MessageContents ‖ SignerIdentity`, both structures as encoded.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&self.header.overlay.to_be_bytes());
        v.extend_from_slice(&self.header.transaction_id.to_be_bytes());
        v.extend_from_slice(&self.contents.to_bytes());
        v.extend_from_slice(&self.security.signature.identity.to_bytes());
        v
    }
}

impl Encode for Message {
    fn write(&self, w: &mut dyn Sink) {
        let payload_len = self.contents.buffer_len() + self.security.buffer_len();
        self.header.write(w, payload_len);
        self.contents.write(w);
        self.security.write(w);
    }
}

repr_methods!(encode Message);

#[cfg(test)]
pub(super) mod tests {
    use super::super::contents::tests::ping_contents;
    use super::super::security::tests::empty_block;
    use super::super::testutil::{both_ways, hex, mutate};
    use super::super::MessageCode;
    use super::*;

    /// V1 of the digest (§8.2) without its 8-byte framing header: a Ping request to node
    /// 0x11…11, transaction 0x0102030405060708, TTL 100, configuration sequence 1.
    pub fn v1_message_bytes() -> Vec<u8> {
        hex("d2 45 4c 4f 9a a3 2b 8d
             00 01 0a 64 c0 00 00 00 00 00 00 4d 01 02 03 04
             05 06 07 08 00 00 00 00 00 00 00 12 00 00 01 10
             11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11
             00 17 00 00 00 02 00 00 00 00 00 00 00 00 00 00
             03 00 00 00 00")
    }

    pub fn v1_header() -> ForwardingHeader {
        ForwardingHeader {
            overlay: 0x9aa3_2b8d,
            configuration_sequence: 1,
            ttl: 100,
            fragment: fragment::UNFRAGMENTED,
            transaction_id: 0x0102_0304_0506_0708,
            max_response_length: 0,
            via_list: vec![],
            destination_list: vec![Destination::Node(NodeId([0x11; 16]))],
            options: vec![],
        }
    }

    pub fn v1_message() -> Message {
        Message {
            header: v1_header(),
            contents: ping_contents().1,
            security: empty_block().1,
        }
    }

    /// A header with every list non-empty and both destination forms.
    fn busy_message() -> (Vec<u8>, Message) {
        let bytes = hex(
            "d2454c4f 9aa32b8d 0001 0a 63 c0000000 00000072 0102030405060708 00001388
             001a 0015 000a
             01 10 2001002a000102030405060708090a0b | 8123 | 03 04 03 0a0b0c
             02 11 10 fc2398a73dd54d6237c4fdb58fd7d753 | 00 00
             02 0f 0002 abcd | 80 00 0000
             0017 00000000 00000000 | 0000 00 00 03 0000 0000",
        );
        let message = Message {
            header: ForwardingHeader {
                ttl: 99,
                max_response_length: 5000,
                via_list: vec![
                    Destination::Node(NodeId(
                        hex("2001002a000102030405060708090a0b").try_into().unwrap(),
                    )),
                    Destination::Compressed(0x8123),
                    Destination::Opaque(hex("0a0b0c")),
                ],
                destination_list: vec![
                    Destination::Resource(ResourceId(hex("fc2398a73dd54d6237c4fdb58fd7d753"))),
                    Destination::Unknown {
                        ty: 0,
                        data: vec![],
                    },
                ],
                options: vec![
                    ForwardingOption {
                        ty: ForwardingOptionType::ExtensiveRoutingMode,
                        flags: option_flags::RESPONSE_COPY
                            | option_flags::DESTINATION_CRITICAL
                            | option_flags::FORWARD_CRITICAL
                            | option_flags::IGNORE_STATE_KEEPING,
                        value: hex("abcd"),
                    },
                    ForwardingOption {
                        ty: ForwardingOptionType::Unknown(0x80),
                        flags: 0,
                        value: vec![],
                    },
                ],
                ..v1_header()
            },
            contents: MessageContents::new(MessageCode::PingReq, vec![]),
            security: empty_block().1,
        };
        (bytes, message)
    }

    #[test]
    fn v1_ping_both_ways() {
        let bytes = v1_message_bytes();
        both_ways(&bytes, &v1_message(), Message::parse, Message::to_bytes);
        assert_eq!(v1_message().buffer_len(), 77);
        let (header, payload) = ForwardingHeader::parse(&bytes).unwrap();
        assert_eq!(header, v1_header());
        assert_eq!(header.buffer_len(), 56);
        assert_eq!(payload, &bytes[56..]);
        assert_eq!(header.to_bytes(payload), bytes);
    }

    #[test]
    fn busy_header_both_ways() {
        let (bytes, message) = busy_message();
        // 0x72 = 114 bytes: the length field was written for this vector by hand.
        assert_eq!(bytes.len(), 114);
        both_ways(&bytes, &message, Message::parse, Message::to_bytes);
    }

    #[test]
    fn view_reads_v1_and_rewrites_the_ttl() {
        let mut bytes = v1_message_bytes();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(p.relo_token(), RELO_TOKEN);
        assert_eq!(p.overlay(), 0x9aa3_2b8d);
        assert_eq!(p.configuration_sequence(), 1);
        assert_eq!(p.version(), VERSION);
        assert_eq!(p.ttl(), 100);
        assert_eq!(p.fragment(), fragment::UNFRAGMENTED);
        assert_eq!(p.length(), 77);
        assert_eq!(p.transaction_id(), 0x0102_0304_0506_0708);
        assert_eq!(p.max_response_length(), 0);
        assert_eq!(p.via_list(), &[] as &[u8]);
        assert_eq!(p.destination_list().len(), 18);
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.payload().len(), 77 - 56);
        assert_eq!(
            p.first_destination(),
            Ok(Destination::Node(NodeId([0x11; 16])))
        );
        p.set_ttl(99);
        assert_eq!(Message::parse(&bytes).unwrap().header.ttl, 99);
    }

    #[test]
    fn header_checks() {
        let good = v1_message_bytes();
        let with = |at: usize, v: u8| {
            let mut b = good.clone();
            b[at] = v;
            b
        };
        assert_eq!(Message::parse(&with(0, 0x52)), Err(WireError::BadToken));
        assert_eq!(
            Message::parse(&with(10, 0x01)),
            Err(WireError::BadVersion(1))
        );
        // length one more, one less than the buffer.
        assert_eq!(Message::parse(&with(19, 0x4e)), Err(WireError::BadLength));
        assert_eq!(Message::parse(&with(19, 0x4c)), Err(WireError::BadLength));
        // Destination list length running past the message.
        assert_eq!(Message::parse(&with(35, 0xff)), Err(WireError::BadLength));
        // A destination list that ends inside the node entry: the rest is the payload.
        assert_eq!(Message::parse(&with(35, 0x11)), Err(WireError::Truncated));
        // Fragments and pre-RFC fragment fields.
        assert_eq!(Message::parse(&with(12, 0x80)), Err(WireError::Fragmented));
        assert_eq!(Message::parse(&with(15, 0x01)), Err(WireError::Fragmented));
        assert_eq!(
            Message::parse(&with(12, 0x40)),
            Err(WireError::Invalid("fragment field"))
        );
        // Reserved fragment bits are kept, not checked.
        let reserved = with(12, 0xc1);
        assert_eq!(Message::parse(&reserved).unwrap().to_bytes(), reserved);
        // Bytes after the message are not accepted: one buffer, one message.
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(
            Packet::new_checked(&longer[..]).err(),
            Some(WireError::BadLength)
        );
    }

    #[test]
    fn fragments_parse_as_header_and_payload() {
        let mut header = v1_header();
        header.fragment = fragment::FLAG | 0x100;
        let bytes = header.to_bytes(&[0xab; 300]);
        let (parsed, payload) = ForwardingHeader::parse(&bytes).unwrap();
        assert_eq!(parsed, header);
        assert!(!parsed.is_unfragmented());
        assert_eq!(payload, &[0xab; 300][..]);
        assert_eq!(Message::parse(&bytes), Err(WireError::Fragmented));
    }

    #[test]
    fn destinations_both_ways() {
        let cases = [
            (
                // §8.2: the Resource-ID of "alice@example.com" as a destination.
                hex("02 11 10 fc 23 98 a7 3d d5 4d 62 37 c4 fd b5 8f d7 d7 53"),
                Destination::Resource(ResourceId(hex("fc2398a73dd54d6237c4fdb58fd7d753"))),
            ),
            (
                hex("01 10 ffffffffffffffffffffffffffffffff"),
                Destination::Node(NodeId::WILDCARD),
            ),
            (hex("03 01 00"), Destination::Opaque(vec![])),
            (hex("ffff"), Destination::Compressed(0xffff)),
            (
                hex("7f 02 0102"),
                Destination::Unknown {
                    ty: 0x7f,
                    data: hex("0102"),
                },
            ),
        ];
        for (bytes, dest) in cases {
            both_ways(&bytes, &dest, Destination::parse, Destination::to_bytes);
        }
    }

    #[test]
    fn destination_inner_lengths_must_agree() {
        // Node entries are exactly 16 bytes.
        let mut short = hex("01 0f");
        short.extend_from_slice(&[0x11; 15]);
        assert_eq!(
            Destination::parse(&short),
            Err(WireError::Invalid("Node-ID length"))
        );
        let mut long = hex("01 11");
        long.extend_from_slice(&[0x11; 17]);
        assert_eq!(
            Destination::parse(&long),
            Err(WireError::Invalid("Node-ID length"))
        );
        // Resource-ID length byte disagreeing with the entry length.
        assert_eq!(
            Destination::parse(&hex("02 03 01 aa bb")),
            Err(WireError::TrailingBytes)
        );
        assert_eq!(
            Destination::parse(&hex("02 02 02 aa")),
            Err(WireError::Truncated)
        );
        assert_eq!(Destination::parse(&hex("03 00")), Err(WireError::Truncated));
    }

    #[test]
    fn unrepresentable_destinations_are_flagged() {
        assert!(!Destination::Compressed(0x0123).encodable());
        assert!(!Destination::Unknown {
            ty: 1,
            data: vec![]
        }
        .encodable());
        assert!(!Destination::Unknown {
            ty: 0x80,
            data: vec![]
        }
        .encodable());
        assert!(!Destination::Opaque(vec![0; 255]).encodable());
        assert!(Destination::Opaque(vec![0; 254]).encodable());
        assert!(!Destination::Resource(ResourceId(vec![0; 255])).encodable());
        let mut huge = v1_header();
        huge.via_list = vec![Destination::Node(NodeId::WILDCARD); 3641];
        assert!(!huge.encodable(0));
        huge.via_list.pop();
        assert!(huge.encodable(0));
    }

    #[test]
    fn signed_bytes_cover_overlay_transaction_contents_and_identity() {
        let m = v1_message();
        let expected = hex("9aa32b8d 0102030405060708 0017 00000002 0000 00000000 03 0000");
        assert_eq!(m.signed_bytes(), expected);
    }

    #[test]
    fn random_mutations_of_messages() {
        let seeds = vec![v1_message_bytes(), busy_message().0];
        let parsed = mutate(
            &seeds,
            20_000,
            0x9e37_79b9_7f4a_7c15,
            Message::parse,
            Message::to_bytes,
        );
        assert!(parsed > 1000 && parsed < 18_000, "{parsed}");
    }
}
