//! CHORD-RELOAD routing state (RFC 6940 §10): one node's view of the ring.
//!
//! [`Chord`] owns the **routing table**: the set of peers this node has a link to and
//! knows to be peers (they joined, or announced themselves in an Update — a link alone
//! does not make a peer routable, §6.5.1). Everything else is derived from that one set,
//! so the tables can never disagree with each other:
//!
//! - **successors** / **predecessors** (the neighbour table): the nearest peers clockwise
//!   / counter-clockwise, up to `successors` / `predecessors` of each (R5: 3 + 3);
//! - **finger** `i` (RFC numbering, `FIRST_FINGER ≤ i ≤ LAST_FINGER`): the first peer at or
//!   after [`id::finger_target`]`(me, i)`, computed in the occupied arc;
//! - **next hop** for a key `k` (§10.3): the peer with the largest ID in `(me, k)`; if there
//!   is none, `k` lies between us and our successor and the next hop is the first peer at
//!   or after `k`.
//!
//! The table is bounded: [`Chord::prune`] keeps only neighbours and fingers (at most
//! `successors + predecessors + 96` peers) and returns the rest, which the caller may
//! unlink. [`Chord::would_keep`] says whether a peer heard of in an Update is worth a
//! link. No I/O, no time: the caller ([`crate::node::Node`]) decides when to ask.

use crate::id::{self, finger_target, in_open, in_open_closed, FIRST_FINGER, LAST_FINGER};
use crate::wire::NodeId;
use std::collections::BTreeSet;

/// A node's routing table and the neighbour/finger views derived from it.
#[derive(Debug, Clone)]
pub struct Chord {
    me: u128,
    peers: BTreeSet<u128>,
    max_successors: usize,
    max_predecessors: usize,
}

impl Chord {
    /// An empty table for node `me` keeping `successors` and `predecessors` neighbours on
    /// each side (at least one each).
    pub fn new(me: NodeId, successors: usize, predecessors: usize) -> Chord {
        Chord {
            me: me.position(),
            peers: BTreeSet::new(),
            max_successors: successors.max(1),
            max_predecessors: predecessors.max(1),
        }
    }

    pub fn me(&self) -> NodeId {
        NodeId::from_position(self.me)
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn contains(&self, p: NodeId) -> bool {
        self.peers.contains(&p.position())
    }

    /// Every peer in the table, in ring order from the lowest ID.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.iter().map(|&p| NodeId::from_position(p))
    }

    /// Adds a peer; our own ID and the wildcard are refused. True if it was new.
    pub fn insert(&mut self, p: NodeId) -> bool {
        let x = p.position();
        if x == self.me || p == NodeId::WILDCARD {
            return false;
        }
        self.peers.insert(x)
    }

    /// Removes a peer (failed, left, or pruned). True if it was there.
    pub fn remove(&mut self, p: NodeId) -> bool {
        self.peers.remove(&p.position())
    }

    /// Nearest peers clockwise, nearest first.
    pub fn successors(&self) -> Vec<NodeId> {
        self.peers
            .range(self.me..)
            .chain(self.peers.range(..self.me))
            .take(self.max_successors.min(self.peers.len()))
            .map(|&p| NodeId::from_position(p))
            .collect()
    }

    /// Nearest peers counter-clockwise, nearest first.
    pub fn predecessors(&self) -> Vec<NodeId> {
        self.peers
            .range(..self.me)
            .rev()
            .chain(self.peers.range(self.me..).rev())
            .take(self.max_predecessors.min(self.peers.len()))
            .map(|&p| NodeId::from_position(p))
            .collect()
    }

    pub fn successor(&self) -> Option<NodeId> {
        self.first_at_or_after(self.me.wrapping_add(1))
    }

    pub fn predecessor(&self) -> Option<NodeId> {
        self.peers
            .range(..self.me)
            .next_back()
            .or_else(|| self.peers.iter().next_back())
            .map(|&p| NodeId::from_position(p))
    }

    /// True if this node owns key `k`: `pred < k ≤ me`. A node without peers owns
    /// everything (it is alone on the ring).
    pub fn responsible(&self, k: u128) -> bool {
        match self.predecessor() {
            None => true,
            Some(p) => in_open_closed(k, p.position(), self.me),
        }
    }

    /// The peer that owns key `k` as far as this table knows: the first at or after it.
    pub fn owner(&self, k: u128) -> Option<NodeId> {
        self.first_at_or_after(k)
    }

    /// The first peer at or after position `x`, wrapping round the ring.
    fn first_at_or_after(&self, x: u128) -> Option<NodeId> {
        self.peers
            .range(x..)
            .next()
            .or_else(|| self.peers.iter().next())
            .map(|&p| NodeId::from_position(p))
    }

    /// Could `p` be the owner of key `k`, as far as this table knows? Not if we (when we
    /// are a peer of the ring, `in_ring`: a client owns nothing), or a peer we are linked
    /// to, lie in `[k, p)`: the first node at or after `k` owns it. An answer "from the
    /// owner" of `k` that some node on the path made up fails this unless that node's ID
    /// happens to fall between `k` and every peer we know after it.
    pub fn could_own(&self, k: u128, p: NodeId, in_ring: bool) -> bool {
        let d = p.position().wrapping_sub(k);
        let closer = |x: u128| x.wrapping_sub(k) < d;
        !(in_ring && closer(self.me))
            && self
                .first_at_or_after(k)
                .is_none_or(|q| !closer(q.position()))
    }

    /// Finger `i`: the first peer at or after its target. `None` for an index outside
    /// `FIRST_FINGER..=LAST_FINGER` or an empty table.
    pub fn finger(&self, i: u32) -> Option<NodeId> {
        finger_target(self.me, i).and_then(|t| self.first_at_or_after(t))
    }

    /// Finger indices worth looking up, farthest first: those whose target lies beyond
    /// the last successor (nearer targets are answered by the neighbour table). At least
    /// [`FIRST_FINGER`] when the table is empty.
    pub fn useful_fingers(&self) -> impl Iterator<Item = u32> + '_ {
        let last = self.successors().last().map(|s| s.position());
        (FIRST_FINGER..=LAST_FINGER).take_while(move |&i| match (last, finger_target(self.me, i)) {
            (Some(l), Some(t)) => !in_open_closed(t, self.me, l),
            (None, Some(_)) => i == FIRST_FINGER,
            _ => false,
        })
    }

    /// The index of the finger that `p` currently is (the smallest such `i`), if any.
    pub fn finger_index_of(&self, p: NodeId) -> Option<u32> {
        self.useful_fingers().find(|&i| self.finger(i) == Some(p))
    }

    /// Next hop toward key `k` (§10.3): the peer with the largest ID in `(me, k)`, or, if
    /// there is none, the first peer at or after `k` (our successor owns `k`). `None` only
    /// for an empty table.
    pub fn next_hop(&self, k: u128) -> Option<NodeId> {
        let below_k = self.peers.range(..k).next_back().copied();
        if let Some(p) = below_k.filter(|&p| in_open(p, self.me, k)) {
            return Some(NodeId::from_position(p));
        }
        if let Some(&p) = self.peers.iter().next_back() {
            if in_open(p, self.me, k) {
                return Some(NodeId::from_position(p));
            }
        }
        self.first_at_or_after(k)
    }

    /// As [`next_hop`](Self::next_hop), among `peers` (positions) rather than the table:
    /// the one closest before `k` on the way from us, or, with none between, the first
    /// at or after `k`. `None` when `peers` holds none but us.
    pub fn next_hop_among(&self, k: u128, peers: impl IntoIterator<Item = u128>) -> Option<NodeId> {
        let me = self.me;
        let (mut before, mut after) = (None::<u128>, None::<u128>);
        for p in peers.into_iter().filter(|&p| p != me) {
            // Clockwise distances: from us for those before `k`, from `k` for the rest.
            if in_open(p, me, k) {
                if before.is_none_or(|b| p.wrapping_sub(me) > b.wrapping_sub(me)) {
                    before = Some(p);
                }
            } else if after.is_none_or(|a| p.wrapping_sub(k) < a.wrapping_sub(k)) {
                after = Some(p);
            }
        }
        before.or(after).map(NodeId::from_position)
    }

    /// Peers that are neighbours or fingers: the ones [`prune`](Self::prune) keeps.
    fn keep_set(&self) -> BTreeSet<u128> {
        let succ: BTreeSet<u128> = self.successors().iter().map(|p| p.position()).collect();
        let mut keep = succ.clone();
        keep.extend(self.predecessors().iter().map(|p| p.position()));
        for i in FIRST_FINGER..=LAST_FINGER {
            match self.finger(i) {
                // Once a finger is a successor, every nearer target's finger is one too.
                Some(f) if succ.contains(&f.position()) => break,
                Some(f) => {
                    keep.insert(f.position());
                }
                None => break,
            }
        }
        keep
    }

    /// Drops peers that are neither neighbours nor fingers; returns them.
    pub fn prune(&mut self) -> Vec<NodeId> {
        let keep = self.keep_set();
        let drop: Vec<u128> = self.peers.difference(&keep).copied().collect();
        for p in &drop {
            self.peers.remove(p);
        }
        drop.into_iter().map(NodeId::from_position).collect()
    }

    /// Whether `p` would be a neighbour or a finger if it were in the table (so it is
    /// worth a link). False for ourselves and for peers already there.
    pub fn would_keep(&self, p: NodeId) -> bool {
        let x = p.position();
        if x == self.me || p == NodeId::WILDCARD || self.peers.contains(&x) {
            return false;
        }
        let mut trial = self.clone();
        trial.peers.insert(x);
        trial.keep_set().contains(&x)
    }

    /// Estimated ring size from the spacing of the successors (RFC 7363 style): the arc
    /// divided by the mean gap. 1 when alone.
    pub fn estimate_size(&self) -> u128 {
        let succ = self.successors();
        match succ.last() {
            None => 1,
            Some(last) => {
                let span = id::arc_distance(self.me, last.position()).max(1);
                (id::ARC_MASK / span)
                    .saturating_mul(succ.len() as u128)
                    .max(2)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{ARC_BITS, ARC_MASK, ID_PREFIX};

    const BASE: u128 = (ID_PREFIX as u128) << ARC_BITS;

    fn n(x: u128) -> NodeId {
        NodeId::from_position(BASE | (x & ARC_MASK))
    }

    fn table(me: u128, others: &[u128]) -> Chord {
        let mut c = Chord::new(n(me), 3, 3);
        for &o in others {
            c.insert(n(o));
        }
        c
    }

    #[test]
    fn neighbours_wrap_and_are_nearest_first() {
        let c = table(50, &[10, 20, 40, 60, 70, 90]);
        assert_eq!(c.successors(), vec![n(60), n(70), n(90)]);
        assert_eq!(c.predecessors(), vec![n(40), n(20), n(10)]);
        let c = table(95, &[10, 20, 40, 60, 70, 90]);
        assert_eq!(c.successors(), vec![n(10), n(20), n(40)]);
        assert_eq!(c.predecessors(), vec![n(90), n(70), n(60)]);
        // Fewer peers than slots: every peer on both sides.
        let c = table(5, &[7]);
        assert_eq!(c.successors(), vec![n(7)]);
        assert_eq!(c.predecessors(), vec![n(7)]);
        assert!(!table(5, &[]).clone().insert(n(5)));
    }

    #[test]
    fn responsibility_is_pred_exclusive_me_inclusive() {
        let c = table(50, &[10, 90]);
        assert!(c.responsible(n(50).position()));
        assert!(c.responsible(n(11).position()));
        assert!(!c.responsible(n(10).position()));
        assert!(!c.responsible(n(51).position()));
        // Lowest node owns the wrap-around.
        let c = table(10, &[50, 90]);
        assert!(c.responsible(n(95).position()));
        assert!(c.responsible(n(3).position()));
        assert!(!c.responsible(n(90).position()));
        // Alone: everything.
        assert!(table(10, &[]).responsible(0));
    }

    #[test]
    fn next_hop_is_closest_preceding_then_successor() {
        let c = table(50, &[10, 20, 40, 60, 70, 90]);
        assert_eq!(c.next_hop(n(75).position()), Some(n(70)));
        assert_eq!(c.next_hop(n(70).position()), Some(n(60)));
        // Key between us and our successor: the successor owns it.
        assert_eq!(c.next_hop(n(55).position()), Some(n(60)));
        // Wrapping keys.
        assert_eq!(c.next_hop(n(15).position()), Some(n(10)));
        assert_eq!(c.next_hop(n(5).position()), Some(n(90)));
        assert_eq!(table(50, &[]).next_hop(0), None);
        // Never overshoots: the hop is the last peer before the key.
        let c = table(0, &[1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(c.next_hop(n(33).position()), Some(n(32)));
        assert_eq!(c.next_hop(n(32).position()), Some(n(16)));
        assert_eq!(c.next_hop(n(100).position()), Some(n(64)));
    }

    /// Over the table's own peers, `next_hop_among` is `next_hop`, for keys all round
    /// the ring; over a subset it picks from the subset alone.
    #[test]
    fn next_hop_among_peers_follows_the_tables_rule() {
        use rand_chacha::ChaCha20Rng;
        use rand_core::{RngCore, SeedableRng};
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for _ in 0..200 {
            let me = u128::from(rng.next_u64());
            let others: Vec<u128> = (0..rng.next_u64() % 12)
                .map(|_| u128::from(rng.next_u64()))
                .collect();
            let c = table(me, &others);
            let peers: Vec<u128> = c.peers().map(|p| p.position()).collect();
            for _ in 0..20 {
                let k = n(u128::from(rng.next_u64())).position();
                assert_eq!(c.next_hop_among(k, peers.iter().copied()), c.next_hop(k));
            }
        }
        let c = table(50, &[10, 20, 40, 60, 70, 90]);
        let some = [n(20).position(), n(90).position()];
        // None of them between us and 75: the first after it. Before 25: 20.
        assert_eq!(c.next_hop_among(n(75).position(), some), Some(n(90)));
        assert_eq!(c.next_hop_among(n(25).position(), some), Some(n(20)));
        assert_eq!(c.next_hop_among(n(15).position(), [n(50).position()]), None);
    }

    #[test]
    fn fingers_follow_targets_in_the_arc() {
        let half = 1u128 << 95;
        let quarter = 1u128 << 94;
        let c = table(0, &[1, 2, 3, quarter + 5, half + 7]);
        assert_eq!(c.finger(FIRST_FINGER), Some(n(half + 7)));
        assert_eq!(c.finger(FIRST_FINGER + 1), Some(n(quarter + 5)));
        assert_eq!(c.finger(LAST_FINGER), Some(n(1)));
        assert_eq!(c.finger(7), None);
        // Fingers past the last successor are worth looking up; nearer ones are not.
        let useful: Vec<u32> = c.useful_fingers().collect();
        assert_eq!(useful.first(), Some(&FIRST_FINGER));
        assert!(useful.len() > 80 && useful.len() < 96, "{}", useful.len());
        assert_eq!(c.finger_index_of(n(half + 7)), Some(FIRST_FINGER));
    }

    #[test]
    fn prune_keeps_neighbours_and_fingers_only() {
        let half = 1u128 << 95;
        // Peers crowded just after the half-way target: only the first is a finger.
        let top = ARC_MASK;
        let mut c = table(0, &[1, 2, 3, 5, half + 1, half + 2, top, top - 1, top - 2]);
        let dropped = c.prune();
        assert_eq!(dropped, vec![n(half + 2)]);
        assert!(c.contains(n(5)), "finger for target 4");
        assert!(c.contains(n(half + 1)));
        assert!(c.contains(n(top - 2)));
        assert!(!c.would_keep(n(half + 5)));
        assert!(c.would_keep(n(half - 1)));
        assert!(!c.would_keep(n(0)));
        assert!(c.len() <= 3 + 3 + 96);
    }

    #[test]
    fn size_estimate_from_successor_spacing() {
        let gap = ARC_MASK / 1000;
        let c = table(0, &[gap, 2 * gap, 3 * gap]);
        let est = c.estimate_size();
        assert!((900..1100).contains(&est), "{est}");
        assert_eq!(table(0, &[]).estimate_size(), 1);
    }
}
