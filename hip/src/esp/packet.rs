//! The ESP packet as it travels (RFC 4303 §2, suite 13 layout): a zero-copy [`Packet`]
//! view over SPI, sequence number and IV. It owns no state; the node reads the SPI through it
//! to find the [`InboundSa`](super::InboundSa), and [`OutboundSa::seal`](super::OutboundSa::seal)
//! writes the header through it.

use super::{EspError, ESP_IV_LEN, ESP_MIN_LEN};

pub(super) mod field {
    use core::ops::{Range, RangeFrom};

    pub const SPI: Range<usize> = 0..4;
    pub const SEQUENCE_NUMBER: Range<usize> = 4..8;
    pub const IV: Range<usize> = 8..16;
    /// Ciphertext then ICV.
    pub const PAYLOAD: RangeFrom<usize> = 16..;
}

/// A read/write view of an ESP packet (suite 13 layout: the IV follows the sequence number).
///
/// The node uses it to demultiplex: `Packet::new_checked(udp_payload)?.spi()` finds the
/// [`InboundSa`](super::InboundSa), after the caller has ruled out the zero non-ESP marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors may then panic.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer that holds at least [`ESP_MIN_LEN`] bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, EspError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ok if no accessor can panic and an empty payload could be in it.
    #[inline]
    pub fn check_len(&self) -> Result<(), EspError> {
        if self.buffer.as_ref().len() < ESP_MIN_LEN {
            return Err(EspError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn spi(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::SPI])
    }

    /// The low 32 bits of the sequence number, as sent.
    #[inline]
    pub fn sequence_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::SEQUENCE_NUMBER])
    }

    #[inline]
    pub fn iv(&self) -> [u8; ESP_IV_LEN] {
        let mut iv = [0; ESP_IV_LEN];
        iv.copy_from_slice(&self.buffer.as_ref()[field::IV]);
        iv
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_spi(&mut self, spi: u32) {
        self.buffer.as_mut()[field::SPI].copy_from_slice(&spi.to_be_bytes());
    }

    #[inline]
    pub fn set_sequence_number(&mut self, seq_low: u32) {
        self.buffer.as_mut()[field::SEQUENCE_NUMBER].copy_from_slice(&seq_low.to_be_bytes());
    }

    #[inline]
    pub fn set_iv(&mut self, iv: [u8; ESP_IV_LEN]) {
        self.buffer.as_mut()[field::IV].copy_from_slice(&iv);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[inline]
fn read_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
