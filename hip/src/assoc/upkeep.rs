//! What an established association decides on its own when its timer fires: the outstanding
//! UPDATE's retransmission or end, a check that ran out of time, whether it should close,
//! the paths a failover probes, and when it needs to wake up next. The host acts on the
//! answers (sends, fails the association, probes the next path) and adds the deadlines
//! that depend on host-wide state (registrations, the relay's keepalives, ICE pacing).

use super::{Assoc, AssocState, Check, EspKeys, Timers};
use crate::config::Config;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An address whose check went unanswered is not checked again before this.
pub(crate) const RECHECK_AFTER: Duration = Duration::from_secs(60);
/// A check is given up after this long, whatever happened to its UPDATE.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// Paths one failover probes at most.
pub(crate) const FAILOVER_PATHS: usize = 8;

/// What the outstanding UPDATE's timer asks of the host.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UpdateDue {
    /// Nothing outstanding, or not due yet.
    Nothing,
    /// Send the UPDATE again from `local` to `remote`, and to `others` too: unanswered at
    /// the peer's locator, the peer may have moved as well, and its rendezvous server
    /// relays the copy to where it is now (the double jump).
    Resend {
        local: SocketAddr,
        remote: SocketAddr,
        bytes: Vec<u8>,
        others: Vec<SocketAddr>,
    },
    /// A failover probe went unanswered its tries: on to the next path.
    ProbeUnanswered,
    /// The address under check never answered: the old locator stays (already noted).
    Unverified,
    /// No acknowledgement after every retry: the association is broken (RFC 7401 §6.11).
    Unanswered,
}

/// Why an established association should close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseDue {
    /// Unused for the idle lifetime (the RFC's UAL).
    Idle,
    /// A rekey that cannot finish.
    RekeyStuck,
}

impl Assoc {
    /// Retransmits the outstanding UPDATE if it is due, or gives it up.
    pub fn update_due(&mut self, now: Instant, config: &Config) -> UpdateDue {
        let Some(p) = self.pending_update.as_mut().filter(|p| p.due <= now) else {
            return UpdateDue::Nothing;
        };
        let probe = self
            .verify
            .as_ref()
            .filter(|v| v.seq == p.seq)
            .map(|v| v.kind == Check::Probe);
        if probe == Some(true) && p.tries >= config.probe_tries {
            self.verify = None;
            self.pending_update = None;
            return UpdateDue::ProbeUnanswered;
        }
        if probe == Some(false) && p.tries >= config.update_tries {
            tracing::info!(peer = %self.peer_hit, "new locator not verified, keeping the old one");
            self.pending_update = None;
            if let Some(v) = self.verify.take() {
                self.remember_failed_check(v.remote, now);
            }
            return UpdateDue::Unverified;
        }
        if p.tries >= config.update_tries {
            return UpdateDue::Unanswered;
        }
        p.tries += 1;
        p.rto = p.rto.saturating_mul(2).min(config.max_timeout);
        p.due = now + p.rto;
        let (local, remote) = p.to.unwrap_or((self.local, self.remote));
        let bytes = p.bytes.clone();
        // From the third try on, when the UPDATE went to the peer's locator, also to every
        // other address the peer gave: after our move, a NAT in front of the peer drops
        // what comes from our new address, but its relay (a relayed locator) passes the
        // UPDATE on to it.
        let mut others: Vec<SocketAddr> = Vec::new();
        if p.tries >= 3 && remote == self.remote && probe.is_none() {
            for c in self.candidates.iter().chain(&self.peer_locators) {
                if *c != remote && c.is_ipv4() == local.is_ipv4() && !others.contains(c) {
                    others.push(*c);
                }
            }
        }
        UpdateDue::Resend {
            local,
            remote,
            bytes,
            others,
        }
    }

    /// Gives up a check that neither succeeded nor failed within `CHECK_TIMEOUT` (its
    /// UPDATE may have been replaced or answered from elsewhere).
    pub fn expire_check(&mut self, now: Instant) {
        let Some(v) = self.verify.take_if(|v| v.started + CHECK_TIMEOUT <= now) else {
            return;
        };
        if self.pending_update.as_ref().is_some_and(|p| p.seq == v.seq) {
            self.pending_update = None;
        }
        self.remember_failed_check(v.remote, now);
    }

    /// Whether the association should close now, and why; the next packet for the peer
    /// then starts a fresh exchange.
    pub fn close_due(&self, now: Instant, config: &Config) -> Option<CloseDue> {
        if self
            .rekey
            .as_ref()
            .is_some_and(|r| r.started + config.rekey_timeout <= now)
        {
            return Some(CloseDue::RekeyStuck);
        }
        self.idle_due(config)
            .filter(|t| *t <= now)
            .map(|_| CloseDue::Idle)
    }

    /// The earliest of the association's own deadlines: UPDATE retransmission, rekey by
    /// age or its timeout, a check's timeout, idleness, failover silence, the dummy that
    /// acknowledges the peer's data.
    pub fn own_deadline(&self, config: &Config) -> Option<Instant> {
        [
            self.pending_update.as_ref().map(|p| p.due),
            self.rekey_due(config),
            self.rekey
                .as_ref()
                .map(|r| r.started + config.rekey_timeout),
            self.verify.as_ref().map(|v| v.started + CHECK_TIMEOUT),
            self.idle_due(config),
            self.silence_due(config),
            self.ack_due,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The association is broken: nothing is sent on it, and its timer lets it go after
    /// the linger. Its SAs stay, for the peer to revive it with fresh ESP or an UPDATE.
    pub fn fail(&mut self, now: Instant, config: &Config, timers: &mut Timers) {
        self.state = AssocState::Failed;
        self.pending_update = None;
        self.verify = None;
        self.rekey = None;
        timers.set(self, Some(now + config.linger));
    }

    /// A failed association heard from its peer again: established once more. Returns its
    /// ESP keys (for the event that says so), or None without keys (nothing changes).
    pub fn revive(&mut self, timers: &mut Timers) -> Option<EspKeys> {
        let keys = self.keys.as_ref()?.esp.clone();
        self.state = AssocState::Established;
        timers.set(self, None);
        self.last_error = None;
        self.failover.clear();
        self.unanswered_since = None;
        Some(keys)
    }

    /// Whether `remote` failed a check lately (it is not checked again before
    /// `RECHECK_AFTER`).
    pub fn failed_lately(&self, remote: SocketAddr, now: Instant) -> bool {
        self.failed_checks
            .iter()
            .any(|(addr, at)| *addr == remote && now < *at + RECHECK_AFTER)
    }

    /// The paths a failover probes, in order: the current one; then our current address
    /// with each of the peer's other addresses (its LOCATOR_SET, then the configured ones),
    /// then our other addresses (`locals`) likewise — a host with many addresses must not
    /// spend every probe on one dead locator. Same family only, addresses that failed a
    /// check lately left out, `FAILOVER_PATHS` at most.
    pub fn failover_paths(
        &self,
        now: Instant,
        locals: &[SocketAddr],
    ) -> Vec<(SocketAddr, SocketAddr)> {
        let mut ours = vec![self.local];
        ours.extend(locals.iter().filter(|l| **l != self.local));
        let mut theirs = vec![self.remote];
        for r in self.peer_locators.iter().chain(&self.candidates) {
            if !theirs.contains(r) && !self.failed_lately(*r, now) {
                theirs.push(*r);
            }
        }
        let mut paths = vec![(self.local, self.remote)];
        for l in &ours {
            for r in &theirs {
                let path = (*l, *r);
                if l.is_ipv4() == r.is_ipv4() && !paths.contains(&path) {
                    paths.push(path);
                }
            }
        }
        paths.truncate(FAILOVER_PATHS);
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assoc::{AssocHandle, PendingUpdate, Verify};
    use crate::identity::Hit;

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, last], port))
    }

    fn established(now: Instant) -> Assoc {
        let mut a = Assoc::new(AssocHandle(1), Hit([2; 16]), AssocState::Established);
        a.local = addr(1, 10500);
        a.remote = addr(2, 10500);
        a.established_at = Some(now);
        a
    }

    fn pending(now: Instant, seq: u32) -> Box<PendingUpdate> {
        Box::new(PendingUpdate {
            seq,
            bytes: vec![1, 2, 3],
            due: now,
            rto: Duration::from_millis(500),
            tries: 1,
            to: None,
        })
    }

    fn verify(now: Instant, seq: u32, remote: SocketAddr, kind: Check) -> Box<Verify> {
        Box::new(Verify {
            local: addr(1, 10500),
            remote,
            nonce: vec![9; 8],
            seq,
            started: now,
            kind,
        })
    }

    #[test]
    fn an_unanswered_update_backs_off_to_the_cap_copies_to_other_locators_then_fails() {
        let now = Instant::now();
        let config = Config::default();
        let mut a = established(now);
        a.candidates = vec![a.remote, addr(3, 10500)];
        // The peer's locators (its relay's address among them) get copies too, each once.
        a.peer_locators = vec![addr(3, 10500), addr(5, 10500)];
        a.pending_update = Some(pending(now, 7));
        assert_eq!(
            a.update_due(now - Duration::from_millis(1), &config),
            UpdateDue::Nothing,
            "not due yet"
        );
        let mut at = now;
        let mut copies = Vec::new();
        loop {
            match a.update_due(at, &config) {
                UpdateDue::Resend {
                    local,
                    remote,
                    bytes,
                    others,
                } => {
                    assert_eq!((local, remote, bytes), (a.local, a.remote, vec![1, 2, 3]));
                    copies.push(others);
                }
                UpdateDue::Unanswered => break,
                other => panic!("{other:?}"),
            }
            let p = a.pending_update.as_ref().unwrap();
            assert!(p.rto <= config.max_timeout);
            at = p.due;
        }
        // Tries 2 to update_tries; from the third on a copy goes to the other candidate
        // and the peer's other locator.
        assert_eq!(copies.len() as u32, config.update_tries - 1);
        assert_eq!(copies[0], Vec::<SocketAddr>::new());
        assert!(copies[1..]
            .iter()
            .all(|c| *c == [addr(3, 10500), addr(5, 10500)]));
        assert_eq!(a.pending_update.as_ref().unwrap().rto, config.max_timeout);
    }

    #[test]
    fn an_unanswered_probe_moves_on_and_an_unverified_address_is_remembered() {
        let now = Instant::now();
        let config = Config::default();
        let mut a = established(now);
        a.pending_update = Some(pending(now, 3));
        a.pending_update.as_mut().unwrap().tries = config.probe_tries;
        a.verify = Some(verify(now, 3, addr(4, 10500), Check::Probe));
        assert_eq!(a.update_due(now, &config), UpdateDue::ProbeUnanswered);
        assert!(a.pending_update.is_none() && a.verify.is_none());

        let new = addr(5, 10500);
        a.pending_update = Some(pending(now, 4));
        a.pending_update.as_mut().unwrap().tries = config.update_tries;
        let kind = Check::PeerAddress {
            old_deprecated: false,
        };
        a.verify = Some(verify(now, 4, new, kind));
        assert_eq!(a.update_due(now, &config), UpdateDue::Unverified);
        assert!(a.pending_update.is_none() && a.verify.is_none());
        assert!(a.failed_lately(new, now + RECHECK_AFTER - Duration::from_secs(1)));
        assert!(!a.failed_lately(new, now + RECHECK_AFTER));
    }

    #[test]
    fn a_check_past_its_time_is_given_up_with_its_update() {
        let now = Instant::now();
        let mut a = established(now);
        let kind = Check::PeerAddress {
            old_deprecated: false,
        };
        a.verify = Some(verify(now, 5, addr(6, 10500), kind));
        a.pending_update = Some(pending(now, 5));
        a.expire_check(now + CHECK_TIMEOUT - Duration::from_millis(1));
        assert!(a.verify.is_some());
        a.expire_check(now + CHECK_TIMEOUT);
        assert!(a.verify.is_none() && a.pending_update.is_none());
        assert!(a.failed_lately(addr(6, 10500), now + CHECK_TIMEOUT));
    }

    #[test]
    fn idle_and_stuck_associations_close_and_the_earliest_deadline_wins() {
        let now = Instant::now();
        let config = Config::default();
        let mut a = established(now);
        assert_eq!(a.own_deadline(&config), Some(now + config.idle_timeout));
        assert_eq!(a.close_due(now, &config), None);
        assert_eq!(
            a.close_due(now + config.idle_timeout, &config),
            Some(CloseDue::Idle)
        );
        a.ack_due = Some(now + Duration::from_millis(750));
        a.pending_update = Some(pending(now + Duration::from_millis(400), 1));
        assert_eq!(
            a.own_deadline(&config),
            Some(now + Duration::from_millis(400))
        );
        a.rekey = Some(Box::new(crate::assoc::Rekey {
            started: now,
            our_spi: 0x100,
            our_index: 0,
            our_seq: 1,
            acked: false,
            peer_info: None,
            next_out: None,
        }));
        assert_eq!(
            a.close_due(now + config.rekey_timeout, &config),
            Some(CloseDue::RekeyStuck)
        );
    }

    #[test]
    fn a_failed_association_lingers_and_revives_with_its_keys_only() {
        let now = Instant::now();
        let config = Config::default();
        let mut timers = Timers::default();
        let mut a = established(now);
        a.pending_update = Some(pending(now, 1));
        a.unanswered_since = Some(now);
        a.fail(now, &config, &mut timers);
        assert_eq!(a.state, AssocState::Failed);
        assert!(a.pending_update.is_none());
        assert_eq!(timers.next(), Some(now + config.linger));
        assert!(
            a.revive(&mut timers).is_none(),
            "no keys: nothing to revive"
        );
        assert_eq!(a.state, AssocState::Failed);
    }

    #[test]
    fn failover_probes_the_current_path_first_then_each_address_of_the_peer_same_family() {
        let now = Instant::now();
        let mut a = established(now);
        let v6 = SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2], 10500));
        let failed = addr(7, 10500);
        a.peer_locators = vec![addr(3, 10500), v6, failed];
        a.candidates = vec![addr(3, 10500), addr(4, 10500)];
        a.remember_failed_check(failed, now);
        let other_local = addr(9, 10500);
        let ours_v6 = SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 10500));
        let paths = a.failover_paths(now, &[a.local, other_local, ours_v6]);
        assert_eq!(
            paths,
            vec![
                (a.local, a.remote),
                (a.local, addr(3, 10500)),
                (a.local, addr(4, 10500)),
                (other_local, a.remote),
                (other_local, addr(3, 10500)),
                (other_local, addr(4, 10500)),
                (ours_v6, v6),
            ]
        );
        let many: Vec<SocketAddr> = (10..30).map(|n| addr(n, 10500)).collect();
        assert_eq!(a.failover_paths(now, &many).len(), FAILOVER_PATHS);
    }
}
