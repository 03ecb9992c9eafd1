//! A per-source rate limiter with bounded memory, for answers that cost little to ask for
//! and more to give (R1s, RFC 7401 §6.7).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Allows `per_second` events per source address in each one-second window. Remembers at
/// most `sources` addresses; when that many are active in the current window, new sources
/// are refused until it ends (a flood from many addresses is then limited as a whole).
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    per_second: u32,
    sources: usize,
    window: Instant,
    counts: HashMap<IpAddr, u32>,
}

const WINDOW: Duration = Duration::from_secs(1);

impl RateLimiter {
    pub fn new(per_second: u32, sources: usize, now: Instant) -> RateLimiter {
        RateLimiter {
            per_second,
            sources,
            window: now,
            counts: HashMap::new(),
        }
    }

    /// Counts one event from `source`; false if it is over the limit.
    pub fn allow(&mut self, now: Instant, source: IpAddr) -> bool {
        if now.saturating_duration_since(self.window) >= WINDOW {
            self.window = now;
            self.counts.clear();
        }
        let full = self.counts.len() >= self.sources;
        match self.counts.get_mut(&source) {
            Some(n) if *n >= self.per_second => false,
            Some(n) => {
                *n += 1;
                true
            }
            None if full => false,
            None => {
                self.counts.insert(source, 1);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_source_per_window_and_bounds_sources() {
        let t = Instant::now();
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        let c: IpAddr = "198.51.100.3".parse().unwrap();
        let mut r = RateLimiter::new(2, 2, t);
        assert!(r.allow(t, a) && r.allow(t, a));
        assert!(!r.allow(t, a), "third in the window");
        assert!(r.allow(t, b));
        assert!(!r.allow(t, c), "no room for a third source");
        let later = t + Duration::from_secs(1);
        assert!(r.allow(later, a) && r.allow(later, c), "a new window");
    }
}
