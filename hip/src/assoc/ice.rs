//! An association's connectivity-check state (RFC 9028 §4.6, ICE-HIP-UDP): the candidate
//! pairs under check, the replay window of the peer's checks, and the nomination. Part of
//! the association; what the checks do is `host::ice`'s.

use std::net::SocketAddr;
use std::time::Instant;

/// One candidate pair under check.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub priority: u64,
    pub state: PairState,
    /// Controlling side: this pair's check carries NOMINATE. Controlled side: the peer
    /// nominated it; taken once our own check of it succeeds.
    pub nominate: bool,
}

/// The UPDATE IDs of the peer's checks seen lately: the highest, and a bitmap of the 64
/// below it (like an ESP replay window; checks on different paths arrive out of order).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CheckWindow {
    highest: Option<u32>,
    seen: u64,
}

impl CheckWindow {
    /// True (and remembered) for an ID not seen before and not older than the window.
    pub fn accept(&mut self, id: u32) -> bool {
        let Some(top) = self.highest else {
            self.highest = Some(id);
            self.seen = 1;
            return true;
        };
        let ahead = id.wrapping_sub(top);
        if ahead != 0 && ahead < 1 << 31 {
            self.seen = if ahead >= 64 { 0 } else { self.seen << ahead };
            self.seen |= 1;
            self.highest = Some(id);
            return true;
        }
        let behind = top.wrapping_sub(id);
        if behind >= 64 || self.seen & (1 << behind) != 0 {
            return false;
        }
        self.seen |= 1 << behind;
        true
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PairState {
    Waiting,
    InProgress {
        nonce: Vec<u8>,
        tries: u32,
        due: Instant,
    },
    Succeeded,
    Failed,
}

/// The checks of one association.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ice {
    pub pairs: Vec<Pair>,
    /// The next check may go out at this instant (pacing, Ta).
    pub next_tx: Option<Instant>,
    /// The pair nomination moved the association to.
    pub selected: Option<(SocketAddr, SocketAddr)>,
    /// When the checks run again while the association is relayed.
    pub recheck: Option<Instant>,
    /// Our address as the peer saw a check of ours (MAPPED_ADDRESS), by local address.
    pub mapped: Vec<(SocketAddr, SocketAddr)>,
    /// When the first pair succeeded (the controlling side nominates at most
    /// NOMINATION_WAIT later).
    pub first_success: Option<Instant>,
}

/// The peer's candidates from its LOCATOR_SET: address, kind, priority.
pub(crate) type Candidate = (SocketAddr, u8, u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_window_takes_each_id_once_and_tolerates_reordering() {
        let mut w = CheckWindow::default();
        assert!(w.accept(100));
        assert!(!w.accept(100), "a replay");
        assert!(w.accept(103));
        assert!(w.accept(101), "late but new");
        assert!(!w.accept(101));
        assert!(w.accept(102));
        assert!(w.accept(200));
        assert!(!w.accept(103), "older than the window");
        assert!(w.accept(137), "inside the window");
        let mut wrap = CheckWindow::default();
        assert!(wrap.accept(u32::MAX));
        assert!(wrap.accept(0), "wraps around");
        assert!(!wrap.accept(u32::MAX));
    }
}
