//! Local Scope Identifiers: IPv4 handles for HITs, for applications that only speak IPv4.
//! LSIs never appear on the wire (shared/spec/hip.md §1.4); each host allocates its own from
//! a configurable range (default 1.0.0.0/8 is a convention, and publicly routed today, so
//! deployments should pick another).
//!
//! The pool is two ordered maps (HIT → LSI and LSI → HIT) and a set of reserved addresses;
//! ordered maps rather than hash maps so that nothing here depends on a random seed.

use crate::identity::Hit;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The conventional LSI range of HIPL and OpenHIP, 1.0.0.0/8 (see the module doc).
pub const DEFAULT_LSI_NETWORK: Ipv4Addr = Ipv4Addr::new(1, 0, 0, 0);
/// Prefix length of [`DEFAULT_LSI_NETWORK`].
pub const DEFAULT_LSI_PREFIX_LEN: u8 = 8;

/// Allocates LSIs from `network/prefix_len`, one per HIT, stable for the pool's life.
/// The first choice is the network prefix plus the low bits of the HIT (as OpenHIP does);
/// on a collision the next free address is taken. The network and broadcast addresses and
/// `reserved` addresses (our own LSI) are never handed out. Bounded by the range's size.
#[derive(Debug, Clone)]
pub struct LsiPool {
    network: u32,
    prefix_len: u8,
    /// The host-part mask, `2^(32 - prefix_len) - 1`.
    host_mask: u32,
    by_hit: BTreeMap<Hit, u32>,
    by_lsi: BTreeMap<u32, Hit>,
    /// Addresses set aside with [`LsiPool::reserve`]; never in `by_lsi`.
    reserved: BTreeSet<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LsiError {
    /// prefix_len outside 8..=30, or host bits set in the network address.
    BadRange,
    /// Every address of the range is taken.
    Exhausted,
}

impl core::fmt::Display for LsiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LsiError::BadRange => {
                f.write_str("bad LSI range (prefix length 8 to 30, no host bits)")
            }
            LsiError::Exhausted => f.write_str("every LSI of the range is taken"),
        }
    }
}

impl std::error::Error for LsiError {}

impl LsiPool {
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Result<LsiPool, LsiError> {
        if !(8..=30).contains(&prefix_len) {
            return Err(LsiError::BadRange);
        }
        let host_mask = u32::MAX >> prefix_len;
        let network = u32::from(network);
        if network & host_mask != 0 {
            return Err(LsiError::BadRange);
        }
        Ok(LsiPool {
            network,
            prefix_len,
            host_mask,
            by_hit: BTreeMap::new(),
            by_lsi: BTreeMap::new(),
            reserved: BTreeSet::new(),
        })
    }

    /// The LSI of `hit`, allocating one if needed.
    pub fn lsi_for(&mut self, hit: &Hit) -> Result<Ipv4Addr, LsiError> {
        if let Some(&a) = self.by_hit.get(hit) {
            return Ok(Ipv4Addr::from(a));
        }
        if self.by_lsi.len() + self.reserved.len() >= self.capacity() {
            return Err(LsiError::Exhausted);
        }
        let low = u32::from_be_bytes([hit.0[12], hit.0[13], hit.0[14], hit.0[15]]);
        let mut host = low & self.host_mask;
        // Linear probing over the host part, wrapping; the count check above guarantees a
        // free address within one lap, and the lap bound keeps that true even if it did not.
        for _ in 0..=self.host_mask {
            let addr = self.network | host;
            if self.is_assignable(host) && !self.by_lsi.contains_key(&addr) {
                self.by_hit.insert(*hit, addr);
                self.by_lsi.insert(addr, *hit);
                return Ok(Ipv4Addr::from(addr));
            }
            host = host.wrapping_add(1) & self.host_mask;
        }
        Err(LsiError::Exhausted)
    }

    /// The HIT an LSI stands for, if allocated.
    pub fn hit_for(&self, lsi: Ipv4Addr) -> Option<Hit> {
        self.by_lsi.get(&u32::from(lsi)).copied()
    }

    /// Frees the LSI of `hit`.
    pub fn release(&mut self, hit: &Hit) {
        if let Some(a) = self.by_hit.remove(hit) {
            self.by_lsi.remove(&a);
        }
    }

    /// True if `addr` lies in the pool's range (`network/prefix_len`), allocated or not;
    /// the test for "this IPv4 destination is an LSI".
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & !self.host_mask == self.network
    }

    /// Sets `addr` aside so that it is never handed out (our own LSI, a gateway). Returns
    /// false, changing nothing, if `addr` is outside the range, the network or broadcast
    /// address, or already allocated to a HIT. Reserving twice returns true again.
    pub fn reserve(&mut self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        let host = a & self.host_mask;
        if !self.contains(addr) || host == 0 || host == self.host_mask {
            return false;
        }
        if self.by_lsi.contains_key(&a) {
            return false;
        }
        self.reserved.insert(a);
        true
    }

    /// The network address of the range.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Number of LSIs allocated to HITs.
    pub fn len(&self) -> usize {
        self.by_lsi.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_lsi.is_empty()
    }

    /// Addresses that can ever be handed out: the range minus network and broadcast.
    pub fn capacity(&self) -> usize {
        // host_mask < 2^24, so this fits any usize of 32 bits or more.
        self.host_mask as usize - 1
    }

    /// Not the network (all-zero) or broadcast (all-one) host part, and not reserved.
    fn is_assignable(&self, host: u32) -> bool {
        host != 0 && host != self.host_mask && !self.reserved.contains(&(self.network | host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(low: u32) -> Hit {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[0x20, 0x01, 0x00, 0x25]);
        b[4] = 0x77; // same low bits, different HITs: see `hit2`
        b[12..].copy_from_slice(&low.to_be_bytes());
        Hit(b)
    }

    fn hit2(low: u32) -> Hit {
        let mut h = hit(low);
        h.0[4] = 0x88;
        h
    }

    #[test]
    fn first_choice_is_prefix_plus_low_hit_bits() {
        let mut p = LsiPool::new(DEFAULT_LSI_NETWORK, DEFAULT_LSI_PREFIX_LEN).unwrap();
        let h = hit(0xdead_beef);
        assert_eq!(p.lsi_for(&h).unwrap(), Ipv4Addr::new(1, 0xad, 0xbe, 0xef));
        // Stable.
        assert_eq!(p.lsi_for(&h).unwrap(), Ipv4Addr::new(1, 0xad, 0xbe, 0xef));
        assert_eq!(p.hit_for(Ipv4Addr::new(1, 0xad, 0xbe, 0xef)), Some(h));
        assert_eq!(p.hit_for(Ipv4Addr::new(1, 0xad, 0xbe, 0xee)), None);
        assert_eq!(p.len(), 1);

        let mut p = LsiPool::new(Ipv4Addr::new(10, 172, 0, 0), 16).unwrap();
        assert_eq!(p.lsi_for(&h).unwrap(), Ipv4Addr::new(10, 172, 0xbe, 0xef));
    }

    #[test]
    fn collision_probes_linearly() {
        let mut p = LsiPool::new(Ipv4Addr::new(10, 0, 0, 0), 24).unwrap();
        let a = p.lsi_for(&hit(0x05)).unwrap();
        let b = p.lsi_for(&hit2(0x05)).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(b, Ipv4Addr::new(10, 0, 0, 6));
        // A HIT whose first choice is the one just taken by probing moves on too.
        let c = p.lsi_for(&hit(0x06)).unwrap();
        assert_eq!(c, Ipv4Addr::new(10, 0, 0, 7));
        // Broadcast and network are skipped, probing wraps.
        let d = p.lsi_for(&hit(0xff)).unwrap();
        assert_eq!(d, Ipv4Addr::new(10, 0, 0, 1));
        let e = p.lsi_for(&hit(0x00)).unwrap();
        assert_eq!(e, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.hit_for(b), Some(hit2(0x05)));
    }

    #[test]
    fn exhaustion_of_a_slash_30() {
        // 192.0.2.0/30 has exactly two usable addresses, .1 and .2.
        let mut p = LsiPool::new(Ipv4Addr::new(192, 0, 2, 0), 30).unwrap();
        assert_eq!(p.capacity(), 2);
        let a = p.lsi_for(&hit(1)).unwrap();
        let b = p.lsi_for(&hit(2)).unwrap();
        assert_eq!(
            (a, b),
            (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2))
        );
        assert_eq!(p.lsi_for(&hit(3)), Err(LsiError::Exhausted));
        // Existing entries still answer.
        assert_eq!(p.lsi_for(&hit(1)), Ok(a));
        // Release makes room again, and the freed address is reused.
        p.release(&hit(1));
        assert_eq!(p.hit_for(a), None);
        assert_eq!(p.lsi_for(&hit(3)), Ok(a));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn reserved_addresses_are_never_handed_out() {
        let mut p = LsiPool::new(Ipv4Addr::new(192, 0, 2, 0), 30).unwrap();
        assert!(p.reserve(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(p.reserve(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(!p.reserve(Ipv4Addr::new(192, 0, 2, 0)));
        assert!(!p.reserve(Ipv4Addr::new(192, 0, 2, 3)));
        assert!(!p.reserve(Ipv4Addr::new(192, 0, 3, 1)));
        assert_eq!(p.lsi_for(&hit(1)), Ok(Ipv4Addr::new(192, 0, 2, 2)));
        assert!(!p.reserve(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(p.lsi_for(&hit(2)), Err(LsiError::Exhausted));
    }

    #[test]
    fn bad_ranges() {
        assert_eq!(
            LsiPool::new(Ipv4Addr::new(1, 0, 0, 0), 7).unwrap_err(),
            LsiError::BadRange
        );
        assert_eq!(
            LsiPool::new(Ipv4Addr::new(10, 0, 0, 0), 31).unwrap_err(),
            LsiError::BadRange
        );
        assert_eq!(
            LsiPool::new(Ipv4Addr::new(10, 0, 0, 0), 32).unwrap_err(),
            LsiError::BadRange
        );
        assert_eq!(
            LsiPool::new(Ipv4Addr::new(10, 0, 0, 1), 24).unwrap_err(),
            LsiError::BadRange
        );
        assert_eq!(
            LsiPool::new(Ipv4Addr::new(1, 2, 0, 0), 8).unwrap_err(),
            LsiError::BadRange
        );
        assert!(LsiPool::new(Ipv4Addr::new(10, 0, 0, 4), 30).is_ok());
    }

    #[test]
    fn contains_is_range_membership() {
        let p = LsiPool::new(Ipv4Addr::new(10, 1, 0, 0), 16).unwrap();
        assert!(p.contains(Ipv4Addr::new(10, 1, 0, 0)));
        assert!(p.contains(Ipv4Addr::new(10, 1, 255, 255)));
        assert!(!p.contains(Ipv4Addr::new(10, 2, 0, 1)));
        assert_eq!(p.network(), Ipv4Addr::new(10, 1, 0, 0));
        assert_eq!(p.prefix_len(), 16);
        assert!(p.is_empty());
    }

    #[test]
    fn release_of_unknown_hit_is_harmless() {
        let mut p = LsiPool::new(Ipv4Addr::new(10, 0, 0, 0), 24).unwrap();
        p.release(&hit(9));
        let a = p.lsi_for(&hit(9)).unwrap();
        p.release(&hit(9));
        p.release(&hit(9));
        assert!(p.is_empty());
        assert_eq!(p.hit_for(a), None);
    }
}
