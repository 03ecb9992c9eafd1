//! The overlay link framing header (RFC 6940 §6.6.2): every message on every hop is a
//! data frame, acknowledged by an ack frame.
//!
//! `type:u8` 128 = data (`sequence:u32 message:opaque<0..2^24-1>`), 129 = ack
//! (`ack_sequence:u32 received:u32`, 9 bytes). Any other type has no known layout and is an
//! error. On a byte stream (our TCP inside ESP, R8), [`FramedMessage::frame_len`] says how
//! long the frame at the front is before it has fully arrived.
//!
//! The `received` bitmap is kept raw. Our reading of its bit order (Wireshark's): bit
//! `1 << (31 - i)` stands for sequence `N - 32 + i`, so the least significant bit is
//! `N - 1`; see [`FramedMessage::ack_covers`].

use super::{Decode, Encode, Reader, Sink, WireError};

const DATA: u8 = 128;
const ACK: u8 = 129;
/// type + sequence + 24-bit length.
const DATA_HEADER_LEN: usize = 8;
const ACK_LEN: usize = 9;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramedMessage {
    /// A RELOAD message (or fragment) with this hop's sequence number.
    Data { sequence: u32, message: Vec<u8> },
    /// Acknowledges `ack_sequence`; `received` marks which of the 32 before it arrived.
    Ack { ack_sequence: u32, received: u32 },
}

impl FramedMessage {
    /// Length of the frame at the start of `prefix` once its header has arrived:
    /// `Ok(None)` if more bytes are needed to tell, `Ok(Some(n))` for a frame of `n`
    /// bytes (which may be more than `prefix` holds), an error for an unknown type.
    pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>, WireError> {
        match prefix.first() {
            None => Ok(None),
            Some(&DATA) => Ok(prefix.get(5..8).map(|len| {
                DATA_HEADER_LEN + len.iter().fold(0, |acc, &b| acc << 8 | usize::from(b))
            })),
            Some(&ACK) => Ok(Some(ACK_LEN)),
            Some(_) => Err(WireError::Invalid("frame type")),
        }
    }

    /// True if this ack says that `sequence` arrived: either it is `ack_sequence` or its
    /// bit is set in `received` (bit order as in the module doc). Always false for data.
    pub fn ack_covers(&self, sequence: u32) -> bool {
        let FramedMessage::Ack {
            ack_sequence,
            received,
        } = *self
        else {
            return false;
        };
        let back = ack_sequence.wrapping_sub(sequence);
        match back {
            0 => true,
            1..=32 => received & (1 << (back - 1)) != 0,
            _ => false,
        }
    }
}

impl Decode for FramedMessage {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u8()? {
            DATA => Ok(FramedMessage::Data {
                sequence: r.u32()?,
                message: r.opaque(3)?.to_vec(),
            }),
            ACK => Ok(FramedMessage::Ack {
                ack_sequence: r.u32()?,
                received: r.u32()?,
            }),
            _ => Err(WireError::Invalid("frame type")),
        }
    }
}

impl Encode for FramedMessage {
    fn write(&self, w: &mut dyn Sink) {
        match self {
            FramedMessage::Data { sequence, message } => {
                w.u8(DATA);
                w.u32(*sequence);
                w.opaque(3, message);
            }
            FramedMessage::Ack {
                ack_sequence,
                received,
            } => {
                w.u8(ACK);
                w.u32(*ack_sequence);
                w.u32(*received);
            }
        }
    }
}

repr_methods!(FramedMessage);

#[cfg(test)]
mod tests {
    use super::super::header::tests::v1_message_bytes;
    use super::super::testutil::{both_ways, hex, mutate};
    use super::*;

    /// V1 of the digest §8.2 as sent: framing header `80 00000000 00004d`, then the message.
    pub fn v1_frame() -> Vec<u8> {
        let mut bytes = hex("80 00000000 00004d");
        bytes.extend_from_slice(&v1_message_bytes());
        bytes
    }

    #[test]
    fn v1_data_frame_both_ways() {
        let frame = FramedMessage::Data {
            sequence: 0,
            message: v1_message_bytes(),
        };
        both_ways(
            &v1_frame(),
            &frame,
            FramedMessage::parse,
            FramedMessage::to_bytes,
        );
        assert_eq!(FramedMessage::frame_len(&v1_frame()), Ok(Some(85)));
    }

    #[test]
    fn v4_ack_both_ways() {
        // V4: ack of sequence 7 with bits for 7-32 (top bit) and 6 (bottom bit).
        let ack = FramedMessage::Ack {
            ack_sequence: 7,
            received: 0x8000_0001,
        };
        both_ways(
            &hex("81 00000007 80000001"),
            &ack,
            FramedMessage::parse,
            FramedMessage::to_bytes,
        );
        assert!(ack.ack_covers(7));
        assert!(ack.ack_covers(6));
        assert!(!ack.ack_covers(5));
        // 7 - 32 wraps around: the top bit.
        assert!(ack.ack_covers(7u32.wrapping_sub(32)));
        assert!(!ack.ack_covers(7u32.wrapping_sub(33)));
        assert!(!ack.ack_covers(8));
        let data = FramedMessage::Data {
            sequence: 7,
            message: vec![],
        };
        assert!(!data.ack_covers(7));
    }

    #[test]
    fn frame_len_on_partial_input() {
        let frame = v1_frame();
        for len in 0..5 + 3 {
            assert_eq!(FramedMessage::frame_len(&frame[..len]), Ok(None), "{len}");
        }
        assert_eq!(FramedMessage::frame_len(&frame[..8]), Ok(Some(85)));
        assert_eq!(FramedMessage::frame_len(&[ACK]), Ok(Some(9)));
        assert_eq!(
            FramedMessage::frame_len(&[0x7f]),
            Err(WireError::Invalid("frame type"))
        );
        assert_eq!(
            FramedMessage::parse(&hex("82 00000000")),
            Err(WireError::Invalid("frame type"))
        );
    }

    #[test]
    fn oversized_data_is_not_encodable() {
        let big = FramedMessage::Data {
            sequence: 1,
            message: vec![0; 1 << 24],
        };
        assert!(!big.encodable());
        assert_eq!(big.buffer_len(), 8 + (1 << 24));
    }

    #[test]
    fn random_mutations_of_frames() {
        let seeds = vec![v1_frame(), hex("81 00000007 80000001")];
        let parsed = mutate(
            &seeds,
            5000,
            0xabad_cafe,
            FramedMessage::parse,
            FramedMessage::to_bytes,
        );
        assert!(parsed > 100 && parsed < 4500, "{parsed}");
    }
}
