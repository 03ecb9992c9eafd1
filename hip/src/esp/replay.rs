//! The anti-replay window of an inbound SA (RFC 4303 §3.4.3 and App. A2): which 64-bit
//! sequence number a received low half stands for, and whether it was seen. It owns the
//! bitmap of one SA; [`InboundSa::open`](super::InboundSa::open) checks before decrypting
//! and marks only after the packet proved authentic and well-formed.

use core::fmt;

use super::{EspError, DEFAULT_REPLAY_WINDOW, MAX_REPLAY_WINDOW};

/// The anti-replay window of RFC 4303 §3.4.3 over 64-bit extended sequence numbers.
///
/// Accepts a sequence number once if it is right of the window or inside it and unseen.
/// The bitmap is a ring of u64 words indexed by `seq / 64`, one word more than the window
/// needs so that the word holding the top can fill up while the oldest word is still in
/// use; sliding clears only the words it enters (at most the whole ring), never shifts bits.
///
/// The ring is allocated as the sequence numbers reach it: until the top first passes
/// the end of the ring, words beyond the highest one marked can only be zero, so they are
/// not stored. An SA that carried few packets (most of a node's associations) costs a few
/// words, not the whole window; one that carried W packets has the whole ring.
#[derive(Clone)]
pub struct ReplayWindow {
    /// Highest sequence number marked; 0 before the first (0 is never a valid number).
    top: u64,
    /// Window size W in packets, a multiple of 64.
    size: u64,
    /// Words of the ring, W / 64 + 1.
    ring: u64,
    /// The ring's words from the first up to the highest one marked yet (all of it once
    /// the top has passed its end); bit `seq % 64` of word `(seq / 64) % ring`.
    bits: Vec<u64>,
}

impl ReplayWindow {
    /// A window of at least `packets` sequence numbers, rounded up to a multiple of 64 (the
    /// bitmap word; RFC 4303 only sets the minimum, 32). 0 and more than
    /// [`MAX_REPLAY_WINDOW`] are refused.
    pub fn new(packets: usize) -> Result<ReplayWindow, EspError> {
        if packets == 0 || packets > MAX_REPLAY_WINDOW {
            return Err(EspError::WindowSize);
        }
        let words = packets.div_ceil(64);
        Ok(ReplayWindow {
            top: 0,
            size: words as u64 * 64,
            ring: words as u64 + 1,
            bits: Vec::new(),
        })
    }

    /// The window size W in packets (after rounding).
    #[inline]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The highest sequence number accepted so far (0 before the first).
    #[inline]
    pub fn top(&self) -> u64 {
        self.top
    }

    /// The full sequence number of a packet carrying `seq_low`, if it may be accepted;
    /// does not change the window (call [`mark`](Self::mark) once the packet is authentic).
    ///
    /// The high 32 bits are inferred from the top of the window as in RFC 4303 App. A2,
    /// with one refinement: a number that A2 places 2^31 or more ahead of the top is taken
    /// to be a late packet (2^32 lower, hence left of the window) and refused as
    /// [`EspError::Stale`]. Plain A2 resolves every packet that arrives after the window has
    /// passed it into the next sub-space, where it costs a decryption and then fails as if
    /// forged; late packets are weather, not attacks, and the node should count them apart.
    /// The cost: a jump of 2^31 or more packets is refused where A2 allows up to 2^32 − W;
    /// both are far beyond any loss an SA survives without the App. A3 resynchronisation.
    #[inline]
    pub fn check(&self, seq_low: u32) -> Result<u64, EspError> {
        let seq = self.infer(seq_low).ok_or(EspError::Stale)?;
        if seq > self.top {
            if seq - self.top >= 1 << 31 {
                return Err(EspError::Stale);
            }
            return Ok(seq);
        }
        if seq == 0 || self.top - seq >= self.size {
            return Err(EspError::Stale);
        }
        let (word, mask) = self.slot(seq);
        if self.bits.get(word).is_some_and(|w| w & mask != 0) {
            return Err(EspError::Replay);
        }
        Ok(seq)
    }

    /// Records `seq` as received, sliding the window if it is the new top. Numbers left of
    /// the window and 0 are ignored.
    #[inline]
    pub fn mark(&mut self, seq: u64) {
        if seq == 0 {
            return;
        }
        if seq > self.top {
            let n = self.ring;
            let old = self.top / 64;
            // Words entered by the slide hold bits of numbers a whole ring older: clear them
            // (words not stored yet are zero already).
            let entered = (seq / 64 - old).min(n);
            for block in old + 1..=old + entered {
                if let Some(w) = self.bits.get_mut((block % n) as usize) {
                    *w = 0;
                }
            }
            self.top = seq;
        } else if self.top - seq >= self.size {
            return;
        }
        let (word, mask) = self.slot(seq);
        if word >= self.bits.len() {
            self.bits.reserve_exact(word + 1 - self.bits.len());
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= mask;
    }

    #[inline]
    fn slot(&self, seq: u64) -> (usize, u64) {
        let word = (seq / 64) % self.ring;
        (word as usize, 1 << (seq % 64))
    }

    /// RFC 4303 App. A2.2 as written; None where the sub-space would be below 0 or above
    /// 2^32 − 1.
    #[inline]
    fn infer(&self, seq_low: u32) -> Option<u64> {
        // W <= 2^20, so these casts are exact.
        let w = self.size as u32;
        let tl = self.top as u32;
        let th = (self.top >> 32) as u32;
        // Bl = Tl - W + 1, modulo 2^32.
        let bl = tl.wrapping_sub(w - 1);
        let seqh = if tl >= w - 1 {
            // Case A: the window lies within one sub-space.
            if seq_low >= bl {
                th
            } else {
                th.checked_add(1)?
            }
        } else if seq_low >= bl {
            // Case B: the window spans two sub-spaces; this is its older part.
            th.checked_sub(1)?
        } else {
            th
        };
        Some(u64::from(seqh) << 32 | u64::from(seq_low))
    }
}

impl Default for ReplayWindow {
    fn default() -> ReplayWindow {
        ReplayWindow {
            top: 0,
            size: DEFAULT_REPLAY_WINDOW as u64,
            ring: DEFAULT_REPLAY_WINDOW as u64 / 64 + 1,
            bits: Vec::new(),
        }
    }
}

impl fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("size", &self.size)
            .field("top", &self.top)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(size: usize) -> ReplayWindow {
        ReplayWindow::new(size).unwrap()
    }

    /// check then mark, as `open` does.
    fn accept(w: &mut ReplayWindow, seq_low: u32) -> Result<u64, EspError> {
        let seq = w.check(seq_low)?;
        w.mark(seq);
        Ok(seq)
    }

    #[test]
    fn the_ring_is_stored_as_far_as_the_numbers_reached_it() {
        let mut w = window(8192);
        assert_eq!(w.bits.len(), 0, "nothing stored before the first packet");
        for s in 1..=100 {
            accept(&mut w, s).unwrap();
        }
        assert_eq!(w.bits.len(), 2, "100 packets fill two words");
        assert_eq!(w.check(50), Err(EspError::Replay));
        // A jump far ahead stores up to the top's word; what it passed over is empty.
        accept(&mut w, 5000).unwrap();
        assert_eq!(w.bits.len(), 5000 / 64 + 1);
        assert_eq!(w.check(4000), Ok(4000), "not seen, inside the window");
        assert_eq!(w.check(150), Ok(150), "passed over: not seen");
        assert_eq!(w.check(50), Err(EspError::Replay), "still remembered");
        // Past the end of the ring it is all stored, and wraps as before.
        for s in 5001..=20_000 {
            accept(&mut w, s).unwrap();
        }
        assert_eq!(w.bits.len() as u64, w.ring);
        assert_eq!(w.check(20_000 - 8191), Err(EspError::Replay));
        assert_eq!(w.check(20_000 - 8192), Err(EspError::Stale));
        assert_eq!(w.check(20_001), Ok(20_001));
    }

    #[test]
    fn window_in_order_and_duplicates() {
        let mut w = window(64);
        assert_eq!(w.check(0), Err(EspError::Stale), "0 is never valid");
        for s in 1..=1000 {
            assert_eq!(accept(&mut w, s), Ok(u64::from(s)));
            assert_eq!(w.check(s), Err(EspError::Replay));
        }
        assert_eq!(w.top(), 1000);
        assert_eq!(w.check(1000 - 63), Err(EspError::Replay));
        assert_eq!(w.check(1000 - 64), Err(EspError::Stale));
        // check does not mark.
        assert_eq!(w.check(1001), Ok(1001));
        assert_eq!(w.check(1001), Ok(1001));
    }

    #[test]
    fn window_reordering() {
        let mut w = window(64);
        assert_eq!(accept(&mut w, 100), Ok(100));
        // Everything in 37..100 is still acceptable, once, in any order.
        for s in (37..100).rev().step_by(2).chain((38..100).step_by(2)) {
            assert_eq!(accept(&mut w, s), Ok(u64::from(s)), "{s}");
        }
        for s in 37..=100 {
            assert_eq!(w.check(s), Err(EspError::Replay));
        }
        assert_eq!(w.check(36), Err(EspError::Stale));
        assert_eq!(accept(&mut w, 103), Ok(103));
        assert_eq!(accept(&mut w, 101), Ok(101));
        assert_eq!(w.check(39), Err(EspError::Stale));
        assert_eq!(w.check(40), Err(EspError::Replay));
    }

    #[test]
    fn window_big_jumps() {
        let mut w = window(8192);
        for s in [1, 5, 8000] {
            accept(&mut w, s).unwrap();
        }
        // A jump of many rings: no stale bit may survive to make a new number look seen.
        assert_eq!(accept(&mut w, 1_000_000), Ok(1_000_000));
        for s in 1_000_000 - 8191..1_000_000 {
            assert_eq!(w.check(s), Ok(u64::from(s)), "{s}");
        }
        assert_eq!(w.check(1_000_000 - 8192), Err(EspError::Stale));
        assert_eq!(w.check(5), Err(EspError::Stale));
        // A jump of less than a ring, landing on the slots of older numbers.
        let ring = 8192 + 64;
        assert_eq!(
            accept(&mut w, 1_000_000 + ring - 1),
            Ok(1_000_000 + u64::from(ring) - 1)
        );
        for s in 1_000_000 + 64..1_000_000 + ring - 1 {
            assert_eq!(w.check(s), Ok(u64::from(s)), "{s}");
        }
        // 2^31 - 1 ahead is a jump; 2^31 ahead is read as a late packet (see `check`).
        let top = w.top();
        assert_eq!(w.check(top as u32 + (1 << 31) - 1), Ok(top + (1 << 31) - 1));
        assert_eq!(w.check(top as u32 + (1 << 31)), Err(EspError::Stale));
        // The same into the next sub-space (A2 case A, below the window).
        let mut far = window(64);
        far.mark((1 << 31) + (1 << 20));
        assert_eq!(far.check((1 << 20) - 5), Ok((1 << 32) + (1 << 20) - 5));
        assert_eq!(far.check((1 << 20) + 5), Err(EspError::Stale));
    }

    #[test]
    fn window_esn_wrap() {
        let mut w = window(8192);
        w.mark(0xffff_fff0);
        // Case A: below the window means the next sub-space.
        assert_eq!(accept(&mut w, 5), Ok(0x1_0000_0005));
        assert_eq!(w.top(), 0x1_0000_0005);
        // Case B now: the window reaches back into sub-space 0.
        assert_eq!(accept(&mut w, 0xffff_fff5), Ok(0xffff_fff5));
        assert_eq!(w.check(0xffff_fff0), Err(EspError::Replay));
        assert_eq!(w.check(0xffff_fff5), Err(EspError::Replay));
        assert_eq!(w.check(0xffff_fff6), Ok(0xffff_fff6));
        assert_eq!(w.check(0), Ok(0x1_0000_0000));
        assert_eq!(w.check(6), Ok(0x1_0000_0006));
        assert_eq!(w.check(5), Err(EspError::Replay));
        // Left of the window across the boundary (A2 case B alone would say sub-space 1).
        assert_eq!(
            w.check(0x1_0000_0005u64.wrapping_sub(8192) as u32),
            Err(EspError::Stale)
        );
        assert_eq!(
            w.check(0x1_0000_0005u64.wrapping_sub(8191) as u32),
            Ok(0xffff_e006)
        );
        // Case B at sub-space 0: numbers just below 2^32 would be sub-space −1.
        let fresh = window(64);
        assert_eq!(fresh.check(u32::MAX), Err(EspError::Stale));
        // The last sub-space: nothing after it.
        let mut last = window(64);
        last.mark(u64::MAX - 10);
        assert_eq!(last.check(u32::MAX), Ok(u64::MAX));
        assert_eq!(last.check(3), Err(EspError::Stale));
    }

    #[test]
    fn window_sizes() {
        assert_eq!(ReplayWindow::new(0).err(), Some(EspError::WindowSize));
        assert_eq!(
            ReplayWindow::new(MAX_REPLAY_WINDOW + 1).err(),
            Some(EspError::WindowSize)
        );
        for (asked, got) in [
            (1, 64),
            (32, 64),
            (64, 64),
            (65, 128),
            (100, 128),
            (8192, 8192),
        ] {
            assert_eq!(window(asked).size(), got);
        }
        assert_eq!(window(MAX_REPLAY_WINDOW).size(), MAX_REPLAY_WINDOW as u64);
        assert_eq!(ReplayWindow::default().size(), DEFAULT_REPLAY_WINDOW as u64);
        let mut w = window(100);
        accept(&mut w, 200).unwrap();
        assert_eq!(w.check(200 - 127), Ok(73));
        assert_eq!(w.check(200 - 128), Err(EspError::Stale));
    }

    /// Random traffic near a sub-space boundary against a plain set of seen numbers.
    #[test]
    fn window_matches_model() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for size in [64, 200, 8192] {
            let mut w = window(size);
            let size = w.size();
            let mut seen = std::collections::HashSet::new();
            let mut top = (1u64 << 32) - 3 * size;
            w.mark(top);
            seen.insert(top);
            for _ in 0..50_000 {
                let r = next();
                let seq = match r % 8 {
                    0 => top + 1 + (r >> 8) % (4 * size),
                    1 => top.saturating_sub((r >> 8) % (2 * size)),
                    _ => (top + 2).saturating_sub((r >> 8) % (size / 2)),
                };
                let want = if seq > top {
                    Ok(seq)
                } else if top - seq >= size {
                    Err(EspError::Stale)
                } else if seen.contains(&seq) {
                    Err(EspError::Replay)
                } else {
                    Ok(seq)
                };
                assert_eq!(
                    accept(&mut w, seq as u32),
                    want,
                    "seq {seq:#x} top {top:#x}"
                );
                if want.is_ok() {
                    seen.insert(seq);
                    top = top.max(seq);
                }
            }
            assert!(top > 1 << 32, "crossed into sub-space 1");
        }
    }
}
