//! The HIP puzzle (RFC 7401 §4.1.2, §5.2.4, App. A) and the responder's difficulty policy.
//!
//! `#J` solves the puzzle when the lowest `K` bits of `RHASH(#I | HIT-I | HIT-R | #J)` are
//! zero. The responder keeps no per-initiator state: `#I` is derived from a rotating secret
//! ([`Secrets`]), and the difficulty rises with the rate of I1s ([`Difficulty`]).
//!
//! #I and #J are always `rhash_len` bytes (RFC 7401 §5.2.4); values of any other length
//! never verify. HIT-I is the Initiator's HIT and HIT-R the Responder's, whichever packet
//! they were read from.

use crate::crypto::Profile;
use crate::identity::Hit;
use std::time::{Duration, Instant};

/// True if `j` solves (`k`, `i`) for this HIT pair.
pub fn verify(profile: &dyn Profile, k: u8, i: &[u8], hit_i: &Hit, hit_r: &Hit, j: &[u8]) -> bool {
    let n = profile.rhash_len();
    if i.len() != n || j.len() != n || usize::from(k) > n * 8 {
        return false;
    }
    let mut digest = vec![0u8; n];
    profile.rhash(&[i, &hit_i.0, &hit_r.0, j], &mut digest);
    low_bits_zero(&digest, k)
}

/// Searches #J starting from `start` (a random rhash_len-byte value from the caller),
/// trying at most `max_tries` candidates. Returns the solution and the number of tries.
///
/// Candidates are `start`, `start + 1`, … as a big-endian counter (wrapping), so the search
/// is deterministic for a given `start`. The loop itself allocates nothing; a solution on
/// the first candidate counts as one try. `None` also when `k` exceeds the digest size or
/// `i`/`start` are not `rhash_len` bytes.
pub fn solve(
    profile: &dyn Profile,
    k: u8,
    i: &[u8],
    hit_i: &Hit,
    hit_r: &Hit,
    start: &[u8],
    max_tries: u64,
) -> Option<(Vec<u8>, u64)> {
    let n = profile.rhash_len();
    if i.len() != n || start.len() != n || usize::from(k) > n * 8 {
        return None;
    }
    let mut j = start.to_vec();
    let mut digest = vec![0u8; n];
    for tries in 1..=max_tries {
        profile.rhash(&[i, &hit_i.0, &hit_r.0, &j], &mut digest);
        if low_bits_zero(&digest, k) {
            return Some((j, tries));
        }
        increment_be(&mut j);
    }
    None
}

/// True if the lowest `k` bits of `digest`, read as a big-endian integer, are zero: the
/// last `k / 8` bytes are zero and the byte before them has its low `k % 8` bits clear.
/// The caller guarantees `k <= digest.len() * 8`.
fn low_bits_zero(digest: &[u8], k: u8) -> bool {
    let full = usize::from(k / 8);
    let rem = k % 8;
    let (head, tail) = digest.split_at(digest.len() - full);
    if tail.iter().any(|&b| b != 0) {
        return false;
    }
    rem == 0 || head.last().is_some_and(|&b| b & ((1u8 << rem) - 1) == 0)
}

/// Adds one to a big-endian counter, wrapping at the top.
fn increment_be(x: &mut [u8]) {
    for b in x.iter_mut().rev() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            return;
        }
    }
}

/// Rotating puzzle secrets (App. A): the current and the previous one, each with its
/// generation number (the R1_COUNTER value it goes out with).
pub struct Secrets {
    current: zeroize::Zeroizing<[u8; 32]>,
    previous: Option<zeroize::Zeroizing<[u8; 32]>>,
    /// Generation of `current`; `previous` is `generation - 1`.
    generation: u64,
}

impl Secrets {
    /// The first secret has generation 0 and no previous one.
    pub fn new(random: [u8; 32]) -> Secrets {
        Secrets {
            current: zeroize::Zeroizing::new(random),
            previous: None,
            generation: 0,
        }
    }

    /// Replaces the previous secret with the current one and installs `random` as current;
    /// the generation number increases by one.
    pub fn rotate(&mut self, random: [u8; 32]) {
        let old = core::mem::replace(&mut self.current, zeroize::Zeroizing::new(random));
        // The dropped previous secret is zeroized by `Zeroizing`.
        self.previous = Some(old);
        self.generation = self.generation.wrapping_add(1);
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// #I for this initiator under the secret of `generation` (current or previous; None
    /// for any other): `RHASH(secret | HIT-I | HIT-R | ip_i | ip_r)` truncated to rhash_len.
    pub fn opaque_i(
        &self,
        profile: &dyn Profile,
        generation: u64,
        hit_i: &Hit,
        hit_r: &Hit,
        ip_i: &[u8],
        ip_r: &[u8],
    ) -> Option<Vec<u8>> {
        let secret = if generation == self.generation {
            &self.current
        } else if generation == self.generation.wrapping_sub(1) {
            self.previous.as_ref()?
        } else {
            return None;
        };
        let mut i = vec![0u8; profile.rhash_len()];
        profile.rhash(&[&secret[..], &hit_i.0, &hit_r.0, ip_i, ip_r], &mut i);
        Some(i)
    }
}

impl core::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Secrets")
            .field("generation", &self.generation)
            .field("has_previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

/// The responder's difficulty policy: K = `base_k` while fewer than `raise_above` I1s arrive
/// per `window`; one more bit per extra `raise_above` I1s in a window, up to `max_k`; back
/// to `base_k` once a window is quiet again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DifficultyPolicy {
    pub base_k: u8,
    pub max_k: u8,
    pub raise_above: u32,
    pub window: Duration,
}

impl Default for DifficultyPolicy {
    fn default() -> DifficultyPolicy {
        DifficultyPolicy {
            base_k: 1,
            max_k: 20,
            raise_above: 1000,
            window: Duration::from_secs(1),
        }
    }
}

/// The difficulty in force, from the I1 counts of the current and the previous window.
///
/// Windows are consecutive intervals of `policy.window`, the first starting at the first
/// I1. K = `base_k + max(count now, count in the previous window) / raise_above`, capped at
/// `max_k`: counting the previous window keeps K up at the start of each new window while
/// the flood goes on, and a window with fewer than `raise_above` I1s (or none) brings K back
/// to `base_k` from the next window on. Memory is two counters, whatever the rate; the
/// result depends only on the Instants passed in.
#[derive(Debug, Clone)]
pub struct Difficulty {
    policy: DifficultyPolicy,
    /// Start of the current window; None before the first I1.
    window_start: Option<Instant>,
    /// I1s in the current window (saturating).
    count: u32,
    /// I1s in the window just before the current one (0 if that window had none).
    previous: u32,
}

impl Difficulty {
    pub fn new(policy: DifficultyPolicy) -> Difficulty {
        Difficulty {
            policy,
            window_start: None,
            count: 0,
            previous: 0,
        }
    }

    pub fn policy(&self) -> &DifficultyPolicy {
        &self.policy
    }

    /// Records one I1 and returns the K to put in the R1 that answers it.
    pub fn on_i1(&mut self, now: Instant) -> u8 {
        let (start, count, previous) = self.advanced(now);
        self.window_start = Some(start);
        self.count = count.saturating_add(1);
        self.previous = previous;
        self.k_for(self.count.max(self.previous))
    }

    /// The K currently in force (without recording anything).
    pub fn current(&self, now: Instant) -> u8 {
        let (_, count, previous) = self.advanced(now);
        self.k_for(count.max(previous))
    }

    /// The window containing `now` with its (current, previous) counts, as they would be
    /// after moving the window forward to `now`. A clock that goes backwards is taken as
    /// still inside the current window.
    fn advanced(&self, now: Instant) -> (Instant, u32, u32) {
        let Some(start) = self.window_start else {
            return (now, 0, 0);
        };
        let w = self.policy.window;
        let elapsed = now.saturating_duration_since(start);
        if elapsed < w {
            return (start, self.count, self.previous);
        }
        // Move by whole windows so that the boundaries do not drift with the arrivals.
        let whole = if w.is_zero() {
            0
        } else {
            elapsed.as_nanos() / w.as_nanos()
        };
        let new_start = u32::try_from(whole)
            .ok()
            .and_then(|n| w.checked_mul(n))
            .and_then(|d| start.checked_add(d))
            .unwrap_or(now);
        let previous = if whole == 1 { self.count } else { 0 };
        (new_start, 0, previous)
    }

    fn k_for(&self, count: u32) -> u8 {
        let p = &self.policy;
        let steps = count / p.raise_above.max(1);
        let k = u32::from(p.base_k).saturating_add(steps);
        // A policy with max_k below base_k is read as "always base_k".
        k.min(u32::from(p.max_k.max(p.base_k))) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::EdX25519;

    fn hits() -> (Hit, Hit) {
        (
            "2001:25:94f8:6e7a:36ad:d203:ed89:625f".parse().unwrap(),
            "2001:25:6853:8cef:f5e2:f29f:1774:128a".parse().unwrap(),
        )
    }

    #[test]
    fn low_bits() {
        assert!(low_bits_zero(&[0xff, 0xff], 0));
        assert!(low_bits_zero(&[0xff, 0xf0], 4));
        assert!(!low_bits_zero(&[0xff, 0xf0], 5));
        assert!(low_bits_zero(&[0xff, 0x00], 8));
        assert!(low_bits_zero(&[0xfe, 0x00], 9));
        assert!(!low_bits_zero(&[0xfd, 0x00], 9));
        assert!(low_bits_zero(&[0x00, 0x00], 16));
        assert!(!low_bits_zero(&[0x80, 0x00], 16));
    }

    #[test]
    fn counter_wraps() {
        let mut x = [0x00, 0xff, 0xff];
        increment_be(&mut x);
        assert_eq!(x, [0x01, 0x00, 0x00]);
        let mut x = [0xff, 0xff];
        increment_be(&mut x);
        assert_eq!(x, [0x00, 0x00]);
    }

    #[test]
    fn solve_then_verify() {
        let p = EdX25519;
        let (hi, hr) = hits();
        let i = [0x5a; 32];
        let start = [0u8; 32];
        for k in [0u8, 1, 4, 10] {
            let (j, tries) = solve(&p, k, &i, &hi, &hr, &start, 1 << 20).unwrap();
            assert!(verify(&p, k, &i, &hi, &hr, &j), "k = {k}");
            // The search is a counter from `start`: the solution is start + tries - 1.
            let low = u64::from_be_bytes(j[24..].try_into().unwrap());
            assert_eq!(low + 1, tries);
            assert!(j[..24].iter().all(|&b| b == 0));
            // Reversing the HITs is another puzzle; the solution of this one fails there
            // unless by chance (1 in 2^k), which these fixed inputs do not hit for k = 10.
            if k == 10 {
                assert!(!verify(&p, k, &i, &hr, &hi, &j));
            }
        }
        // k = 0: every #J is a solution, found on the first try.
        assert_eq!(
            solve(&p, 0, &i, &hi, &hr, &start, 1),
            Some((start.to_vec(), 1))
        );
    }

    #[test]
    fn verify_checks_the_low_bits() {
        let p = EdX25519;
        let (hi, hr) = hits();
        let i = [1u8; 32];
        let (j, _) = solve(&p, 12, &i, &hi, &hr, &[0x42; 32], 1 << 22).unwrap();
        let mut digest = [0u8; 32];
        p.rhash(&[&i, &hi.0, &hr.0, &j], &mut digest);
        assert_eq!(digest[31], 0);
        assert_eq!(digest[30] & 0x0f, 0);
        // Find the exact number of trailing zero bits and check the boundary.
        let tz = digest.iter().rev().scan(true, |go, &b| {
            let z = if *go { b.trailing_zeros() } else { 0 };
            *go = *go && b == 0;
            Some(z)
        });
        let tz: u32 = tz.sum();
        assert!(tz >= 12);
        assert!(verify(&p, tz as u8, &i, &hi, &hr, &j));
        assert!(!verify(&p, tz as u8 + 1, &i, &hi, &hr, &j));
    }

    #[test]
    fn out_of_range_inputs() {
        let p = EdX25519;
        let (hi, hr) = hits();
        let i = [0u8; 32];
        // K larger than the digest: impossible, not a panic.
        assert!(!verify(&p, 255, &i, &hi, &hr, &[0; 32]));
        assert!(!verify(&p, 0, &i, &hi, &hr, &[0; 31]));
        assert!(!verify(&p, 0, &i[..8], &hi, &hr, &[0; 32]));
        assert_eq!(solve(&p, 255, &i, &hi, &hr, &[0; 32], 10), None);
        assert_eq!(solve(&p, 1, &i, &hi, &hr, &[0; 8], 10), None);
        assert_eq!(solve(&p, 1, &i, &hi, &hr, &[0; 32], 0), None);
        // A hard puzzle with a small budget gives up.
        assert_eq!(solve(&p, 40, &i, &hi, &hr, &[0; 32], 100), None);
    }

    #[test]
    fn secrets_rotate() {
        let p = EdX25519;
        let (hi, hr) = hits();
        let (ip_i, ip_r) = ([192, 0, 2, 1], [192, 0, 2, 2]);
        let mut s = Secrets::new([1; 32]);
        assert_eq!(s.generation(), 0);
        let i0 = s.opaque_i(&p, 0, &hi, &hr, &ip_i, &ip_r).unwrap();
        assert_eq!(i0.len(), 32);
        assert_eq!(s.opaque_i(&p, 1, &hi, &hr, &ip_i, &ip_r), None);
        assert_eq!(s.opaque_i(&p, u64::MAX, &hi, &hr, &ip_i, &ip_r), None);
        // Deterministic, and bound to each input.
        assert_eq!(s.opaque_i(&p, 0, &hi, &hr, &ip_i, &ip_r).unwrap(), i0);
        assert_ne!(s.opaque_i(&p, 0, &hr, &hi, &ip_i, &ip_r).unwrap(), i0);
        assert_ne!(s.opaque_i(&p, 0, &hi, &hr, &ip_r, &ip_i).unwrap(), i0);
        // The formula of the doc comment.
        let mut expect = [0u8; 32];
        p.rhash(&[&[1; 32], &hi.0, &hr.0, &ip_i, &ip_r], &mut expect);
        assert_eq!(i0, expect);

        s.rotate([2; 32]);
        assert_eq!(s.generation(), 1);
        assert_eq!(s.opaque_i(&p, 0, &hi, &hr, &ip_i, &ip_r).unwrap(), i0);
        let i1 = s.opaque_i(&p, 1, &hi, &hr, &ip_i, &ip_r).unwrap();
        assert_ne!(i1, i0);
        s.rotate([3; 32]);
        assert_eq!(s.generation(), 2);
        assert_eq!(s.opaque_i(&p, 0, &hi, &hr, &ip_i, &ip_r), None);
        assert_eq!(s.opaque_i(&p, 1, &hi, &hr, &ip_i, &ip_r).unwrap(), i1);
        assert_eq!(s.opaque_i(&p, 3, &hi, &hr, &ip_i, &ip_r), None);
    }

    #[test]
    fn secrets_debug_is_opaque() {
        let mut s = Secrets::new([0xab; 32]);
        s.rotate([0xcd; 32]);
        let d = format!("{s:?}");
        assert!(
            !d.contains("171") && !d.contains("ab") && !d.contains("205"),
            "{d}"
        );
        assert!(d.contains("generation: 1"), "{d}");
    }

    #[test]
    fn difficulty_default_policy() {
        let p = DifficultyPolicy::default();
        assert_eq!((p.base_k, p.max_k, p.raise_above), (1, 20, 1000));
        assert_eq!(p.window, Duration::from_secs(1));
    }

    #[test]
    fn difficulty_rises_and_falls() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Difficulty::new(DifficultyPolicy::default());
        assert_eq!(d.current(t0), 1);
        // 999 I1s in the first window: still base.
        for _ in 0..999 {
            assert_eq!(d.on_i1(t0), 1);
        }
        // The 1000th is "not fewer than raise_above": one more bit.
        assert_eq!(d.on_i1(t0 + ms(10)), 2);
        for _ in 0..999 {
            d.on_i1(t0 + ms(20));
        }
        assert_eq!(d.on_i1(t0 + ms(30)), 3);
        assert_eq!(d.current(t0 + ms(999)), 3);
        // Next window: the previous window's count keeps K up while the flood goes on.
        assert_eq!(d.current(t0 + ms(1000)), 3);
        assert_eq!(d.on_i1(t0 + ms(1500)), 3);
        // The window after that follows a quiet one (1 I1): back to base.
        assert_eq!(d.current(t0 + ms(2000)), 1);
        assert_eq!(d.on_i1(t0 + ms(2100)), 1);
        // A long silence also resets.
        for _ in 0..5000 {
            d.on_i1(t0 + ms(2200));
        }
        assert_eq!(d.current(t0 + ms(2200)), 6);
        assert_eq!(d.current(t0 + ms(60_000)), 1);
        assert_eq!(d.on_i1(t0 + ms(60_000)), 1);
        // The clock going backwards counts as the current window and does not panic.
        assert_eq!(d.on_i1(t0), 1);
    }

    #[test]
    fn difficulty_caps_and_odd_policies() {
        let t0 = Instant::now();
        let policy = DifficultyPolicy {
            base_k: 2,
            max_k: 4,
            raise_above: 1,
            window: Duration::ZERO,
        };
        let mut d = Difficulty::new(policy);
        // A zero window puts every I1 in a fresh window; raise_above 1 means every I1 counts.
        for _ in 0..10 {
            assert!(d.on_i1(t0) <= 4);
        }
        let policy = DifficultyPolicy {
            base_k: 3,
            max_k: 1,
            raise_above: 0,
            window: Duration::MAX,
        };
        let mut d = Difficulty::new(policy);
        for _ in 0..10 {
            assert_eq!(d.on_i1(t0), 3);
        }
        let policy = DifficultyPolicy {
            base_k: 0,
            max_k: 20,
            raise_above: 2,
            window: Duration::from_secs(1),
        };
        let mut d = Difficulty::new(policy);
        let ks: Vec<u8> = (0..200).map(|_| d.on_i1(t0)).collect();
        assert_eq!(ks[0], 0);
        assert_eq!(ks[1], 1);
        assert_eq!(*ks.last().unwrap(), 20);
    }
}
