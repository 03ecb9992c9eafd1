//! The simulator's event queue: things to happen at instants of virtual time, taken in
//! order of time and, at one instant, in the order they were queued — so that a run is a
//! pure function of its seed. Both simulations ([`super::Sim`]'s datagrams and
//! [`super::overlay`]'s messages and links) run on it.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug)]
pub struct Queue<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    seq: u64,
}

#[derive(Debug)]
struct Entry<T> {
    at: Instant,
    seq: u64,
    what: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> Queue<T> {
    /// `what` happens at `at`.
    pub fn push(&mut self, at: Instant, what: T) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            what,
        }));
    }

    /// When the next thing happens.
    pub fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// The next thing, if it happens at `until` or before.
    pub fn pop_until(&mut self, until: Instant) -> Option<(Instant, T)> {
        if self.next_at()? > until {
            return None;
        }
        self.heap.pop().map(|Reverse(e)| (e.at, e.what))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn things_come_in_order_of_time_then_of_queueing() {
        let t = Instant::now();
        let mut q = Queue::default();
        q.push(t + Duration::from_millis(5), "c");
        q.push(t + Duration::from_millis(1), "a");
        q.push(t + Duration::from_millis(5), "d");
        q.push(t + Duration::from_millis(1), "b");
        assert_eq!(q.len(), 4);
        assert_eq!(q.pop_until(t), None, "nothing yet");
        let until = t + Duration::from_millis(5);
        let order: Vec<&str> = std::iter::from_fn(|| q.pop_until(until).map(|(_, w)| w)).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert!(q.is_empty());
    }
}
