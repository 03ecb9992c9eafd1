//! Waits before trying again what failed: bootstrap links, Stores of our records,
//! registrations with a server that stopped answering.

use std::time::Duration;

/// The first wait, doubled after each failure in a row up to the last.
const FIRST: Duration = Duration::from_secs(2);
const MAX: Duration = Duration::from_secs(60);

/// How long to wait before trying again what failed `failures` times in a row. Some
/// failures come at once (a routing loop while the ring repairs itself answers a Store in
/// a millisecond), so a retry without a wait spins; others come after seconds of
/// retransmissions to a host that is gone, which a retry without a wait repeats for ever.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Backoff {
    failures: u32,
}

impl Backoff {
    /// One more failure: the wait before the next attempt.
    pub(super) fn failed(&mut self) -> Duration {
        let wait = FIRST.saturating_mul(1 << self.failures.min(16)).min(MAX);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    pub(super) fn succeeded(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_a_minute_and_start_over_after_a_success() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..40).map(|_| b.failed().as_secs()).collect();
        assert_eq!(waits[..7], [2, 4, 8, 16, 32, 60, 60]);
        assert!(waits[5..].iter().all(|&w| w == 60));
        assert_eq!(b.failures, 40);
        b.succeeded();
        assert_eq!(b.failed().as_secs(), 2);
    }
}
