//! The send buffer of the data path: sealed ESP datagrams laid end to end so that a run of
//! them for one destination leaves with one UDP_SEGMENT `sendmsg` (a [`Train`]).
//!
//! Contract: before sealing a packet, the driver asks [`TxQueue::make_room`] (and sends the
//! train it may hand back), writes the payload at [`TxQueue::slot`] + `ESP_HEADER_LEN`, seals
//! it in place so that the datagram starts at `slot`, then reports it with
//! [`TxQueue::push`] (and sends the train that may hand back, which lies entirely before the
//! new datagram). At the end of a burst it sends what [`TxQueue::take`] returns. A train is
//! what UDP GSO can carry: datagrams of one size, the last possibly shorter, at most
//! [`udp::MAX_SEGMENTS`] of them and [`udp::MAX_TRAIN_BYTES`] in all. No I/O here.

use crate::udp;
use std::net::{IpAddr, SocketAddr};

/// Room for one datagram built from the largest inner packet: 64 KiB of payload, the ESP
/// header and the longest tail.
pub const MAX_DATAGRAM: usize = 65_535 + hip::esp::ESP_OVERHEAD_MAX;

/// A run of datagrams for one destination in `buf[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Train {
    /// Index of the socket to send on.
    pub socket: usize,
    pub remote: SocketAddr,
    /// The local address to send from (`None`: the kernel's choice).
    pub from: Option<IpAddr>,
    pub start: usize,
    pub end: usize,
    /// Size of every datagram but the last.
    pub segment: usize,
    pub count: usize,
    /// The last datagram was shorter: nothing more may follow.
    closed: bool,
}

impl Train {
    /// A train of the one datagram at `buf[start..start + len]`.
    pub fn new(
        socket: usize,
        remote: SocketAddr,
        from: Option<IpAddr>,
        start: usize,
        len: usize,
    ) -> Train {
        Train {
            socket,
            remote,
            from,
            start,
            end: start + len,
            segment: len,
            count: 1,
            closed: false,
        }
    }

    /// Adds the datagram at `buf[start..start + len]` if it can leave with this train
    /// (same socket, destination and source, right after it, not longer than the segment,
    /// within GSO's limits); false if not.
    pub fn join(
        &mut self,
        socket: usize,
        remote: SocketAddr,
        from: Option<IpAddr>,
        start: usize,
        len: usize,
    ) -> bool {
        let joins = !self.closed
            && self.socket == socket
            && self.remote == remote
            && self.from == from
            && self.end == start
            && len <= self.segment
            && self.count < udp::MAX_SEGMENTS
            && self.end - self.start + len <= udp::MAX_TRAIN_BYTES;
        if joins {
            self.end += len;
            self.count += 1;
            self.closed = len < self.segment;
        }
        joins
    }

    /// The UDP_SEGMENT size to send with, or `None` for a single datagram.
    pub fn gso_segment(&self) -> Option<u16> {
        if self.count > 1 {
            u16::try_from(self.segment).ok()
        } else {
            None
        }
    }

    /// The datagrams, one range each, for sending them one by one.
    pub fn datagrams(&self) -> impl Iterator<Item = core::ops::Range<usize>> + '_ {
        (self.start..self.end)
            .step_by(self.segment.max(1))
            .map(|s| s..(s + self.segment).min(self.end))
    }
}

/// The send buffer and the train being built in it.
#[derive(Debug)]
pub struct TxQueue {
    pub buf: Vec<u8>,
    cursor: usize,
    train: Option<Train>,
}

impl Default for TxQueue {
    fn default() -> TxQueue {
        TxQueue::new()
    }
}

impl TxQueue {
    /// A queue whose buffer holds a full train and two of the largest datagrams.
    pub fn new() -> TxQueue {
        TxQueue {
            buf: vec![0; udp::MAX_TRAIN_BYTES + 2 * MAX_DATAGRAM],
            cursor: 0,
            train: None,
        }
    }

    /// Where the next datagram starts.
    pub fn slot(&self) -> usize {
        self.cursor
    }

    /// Makes sure a datagram of up to [`MAX_DATAGRAM`] bytes fits at [`slot`](Self::slot):
    /// returns the pending train if it can take no more, which the caller must send now.
    pub fn make_room(&mut self) -> Option<Train> {
        let Some(t) = self.train else {
            self.cursor = 0;
            return None;
        };
        let full = t.closed
            || t.count >= udp::MAX_SEGMENTS
            || t.end - t.start + t.segment > udp::MAX_TRAIN_BYTES
            || self.cursor + MAX_DATAGRAM > self.buf.len();
        if full {
            self.cursor = 0;
            self.train = None;
            return Some(t);
        }
        None
    }

    /// Records the datagram of `len` bytes just sealed at [`slot`](Self::slot) for `remote`
    /// (from `from`) on socket `socket`. Returns the previous train if this datagram cannot join it; the
    /// caller must send that one now (it lies before the new datagram).
    pub fn push(
        &mut self,
        socket: usize,
        remote: SocketAddr,
        from: Option<IpAddr>,
        len: usize,
    ) -> Option<Train> {
        let start = self.cursor;
        self.cursor += len;
        if let Some(t) = self.train.as_mut() {
            if t.join(socket, remote, from, start, len) {
                return None;
            }
        }
        self.train
            .replace(Train::new(socket, remote, from, start, len))
    }

    /// The pending train, to send at the end of a burst; the buffer is free again.
    pub fn take(&mut self) -> Option<Train> {
        self.cursor = 0;
        self.train.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 2], port))
    }

    #[test]
    fn equal_datagrams_form_one_train_closed_by_a_shorter_one() {
        let mut q = TxQueue::new();
        for _ in 0..3 {
            assert_eq!(q.make_room(), None);
            assert_eq!(q.push(0, addr(1), None, 1000), None);
        }
        assert_eq!(q.make_room(), None);
        assert_eq!(q.push(0, addr(1), None, 400), None);
        // Closed by the short one: the next datagram must wait for the train to go.
        let t = q.make_room().unwrap();
        assert_eq!((t.start, t.end, t.segment, t.count), (0, 3400, 1000, 4));
        assert_eq!(t.gso_segment(), Some(1000));
        let d: Vec<_> = t.datagrams().collect();
        assert_eq!(d, vec![0..1000, 1000..2000, 2000..3000, 3000..3400]);
        assert_eq!(q.slot(), 0);
        assert_eq!(q.take(), None);
    }

    #[test]
    fn another_destination_or_a_longer_datagram_starts_a_new_train() {
        let mut q = TxQueue::new();
        q.make_room();
        assert_eq!(q.push(0, addr(1), None, 100), None);
        q.make_room();
        let t = q.push(0, addr(2), None, 100).unwrap();
        assert_eq!((t.start, t.end, t.count), (0, 100, 1));
        assert_eq!(t.gso_segment(), None);
        assert_eq!(q.make_room(), None);
        assert_eq!(q.slot(), 200);
        let t = q.push(0, addr(2), None, 150).unwrap();
        assert_eq!((t.start, t.end, t.remote), (100, 200, addr(2)));
        let t = q.take().unwrap();
        assert_eq!((t.start, t.end, t.segment), (200, 350, 150));
    }

    #[test]
    fn trains_stay_within_what_gso_carries() {
        let mut q = TxQueue::new();
        let mut sent = Vec::new();
        for _ in 0..200 {
            if let Some(t) = q.make_room() {
                sent.push(t);
            }
            if let Some(t) = q.push(1, addr(1), None, 1450) {
                sent.push(t);
            }
        }
        sent.extend(q.take());
        assert_eq!(sent.iter().map(|t| t.count).sum::<usize>(), 200);
        for t in &sent {
            assert!(t.count <= udp::MAX_SEGMENTS);
            assert!(t.end - t.start <= udp::MAX_TRAIN_BYTES);
            assert!(t.end <= q.buf.len());
        }
        assert_eq!(sent[0].count, udp::MAX_TRAIN_BYTES / 1450);
    }
}
