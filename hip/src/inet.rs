//! The Internet checksum (RFC 1071), shared by the HIP checksum, ESP's inner headers and
//! the node's packet work: sum into a wide accumulator with [`add`], then [`fold`] and
//! complement.

/// Adds `data` to `acc` as big-endian 16-bit words, a trailing odd byte padded with zero.
/// Pieces summed one after another must have even lengths, except the last.
#[inline]
pub fn add(acc: u64, data: &[u8]) -> u64 {
    // The one's-complement sum does not depend on byte order (RFC 1071 §2(B)): sum the
    // bytes as little-endian 32-bit words into a u64 (no carries to chase, and a form the
    // compiler vectorises), fold, and swap the result into the big-endian sum. A u64
    // cannot overflow before 2^32 words.
    let mut words = data.chunks_exact(4);
    let sum: u64 = (&mut words)
        .map(|w| u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
        .sum();
    let rest = words.remainder();
    let mut tail = [0; 4];
    tail[..rest.len()].copy_from_slice(rest);
    let sum = sum + u64::from(u32::from_le_bytes(tail));
    acc + u64::from(fold(sum).swap_bytes())
}

/// Folds a sum into 16 bits with end-around carry (not complemented).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_1071_example_and_odd_tails() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(0, &data)), 0xddf2);
        // Summed in even pieces, the same.
        assert_eq!(fold(add(add(0, &data[..2]), &data[2..])), 0xddf2);
        // An odd last byte is the high half of a word.
        assert_eq!(fold(add(0, &[0x12])), 0x1200);
        assert_eq!(fold(add(0, &[])), 0);
    }
}
