//! The association's own side of the data path and of its timers: sealing and opening its
//! ESP, the counters and deadlines that follow from them. The host looks the association
//! up, counts what it refused and acts on what these methods report (a rekey to start, a
//! new address to check), as quinn-proto's endpoint does for its connections.

use super::{Assoc, AssocState, EspState, Timers};
use crate::config::Config;
use crate::esp::{
    EspError, InboundSa, Opened, OutboundSa, ReplayWindow, ESP_HEADER_LEN, ESP_TAIL_MAX,
    NEXT_HEADER_NONE,
};
use crate::Error;
use core::ops::Range;
use std::net::SocketAddr;
use std::time::Instant;

/// How many unanswered check addresses an association remembers.
pub(crate) const FAILED_CHECKS: usize = 4;

/// What [`Assoc::seal`] did with an outbound packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sealed {
    /// Sealed in place into `buf[range]`: send it from `local` to `remote`. `credit` says
    /// whether the path under check took it from the credit (`Some(false)`: refused, so it
    /// goes on the old path); `rekey` that the SA's packet count calls for a rekey.
    Sent {
        range: Range<usize>,
        local: SocketAddr,
        remote: SocketAddr,
        credit: Option<bool>,
        rekey: bool,
    },
    /// Held until the base exchange completes.
    Queued,
    /// The base exchange's queue is full.
    QueueFull,
    /// No usable SA and no exchange under way.
    NoSa,
    /// The SA refused (sequence numbers exhausted): `rekey` is due at once.
    Refused(EspError),
}

/// What [`Assoc::open`] made of an inbound ESP packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// A dummy packet (RFC 4303 §2.6, our NAT keepalive): authentic, nothing to deliver.
    Dummy,
    /// An inner packet. `revive`: the association had failed and the peer is back;
    /// `completes`: it ended the responder's exchange; `rekey_done`: the peer sent on our
    /// newest SA while a rekey was under way, so it finished its side (RFC 7402 §6.10).
    Data {
        opened: Opened,
        revive: bool,
        completes: bool,
        rekey_done: bool,
    },
    /// None of the association's inbound SAs has this SPI.
    UnknownSpi,
    /// Refused by the SA (replay, too old, bad ICV).
    Refused(EspError),
}

impl Assoc {
    /// Seals one inner packet (transport payload at `buf[payload]`, protocol
    /// `next_header`), or queues it while the base exchange is under way.
    pub fn seal(
        &mut self,
        now: Instant,
        config: &Config,
        timers: &mut Timers,
        next_header: u8,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Sealed {
        // A failed association keeps its SAs only to be revived by the peer; our traffic
        // starts a fresh exchange instead.
        let usable = self.state != AssocState::Failed;
        let Some(esp) = self.esp.as_mut().filter(|_| usable) else {
            if matches!(self.state, AssocState::I1Sent | AssocState::I2Sent) {
                if self.queue.len() < config.queue_per_peer {
                    self.queue.push_back((next_header, buf[payload].to_vec()));
                    return Sealed::Queued;
                }
                return Sealed::QueueFull;
            }
            return Sealed::NoSa;
        };
        let len = payload.len() as u64;
        let range = match esp.out.seal(buf, payload, next_header) {
            Ok(range) => range,
            Err(e) => return Sealed::Refused(e),
        };
        let rekey = esp.out.packets_sent() >= config.rekey_after_packets;
        self.traffic.tx_packets += 1;
        self.traffic.tx_bytes += len;
        self.traffic.last_tx = Some(now);
        self.ack_due = None;
        self.unanswered_since.get_or_insert(now);
        // The silence timer is armed here rather than rescheduled per packet.
        if let Some(t) = self.silence_due(config) {
            if self.timer().is_none_or(|timer| timer > t) {
                timers.set(self, Some(t));
            }
        }
        let (local, remote, credit) = match &self.verify {
            Some(v)
                if v.kind
                    == (super::Check::PeerAddress {
                        old_deprecated: true,
                    }) =>
            {
                if self.credit.spend(now, range.len()) {
                    (v.local, v.remote, Some(true))
                } else {
                    (self.local, self.remote, Some(false))
                }
            }
            _ => (self.local, self.remote, None),
        };
        Sealed::Sent {
            range,
            local,
            remote,
            credit,
            rekey,
        }
    }

    /// Whether [`Assoc::seal`] would seal or queue: not failed, and with ESP or an
    /// exchange under way.
    pub fn sends(&self) -> bool {
        self.state != AssocState::Failed
            && (self.esp.is_some() || matches!(self.state, AssocState::I1Sent | AssocState::I2Sent))
    }

    /// Verifies and decrypts, in place, an ESP packet that arrived on inbound SA `spi`,
    /// and keeps the association's counters and acknowledgement timer.
    pub fn open(
        &mut self,
        now: Instant,
        config: &Config,
        timers: &mut Timers,
        spi: u32,
        buf: &mut [u8],
    ) -> Received {
        let rekeying = self.rekey.as_ref().is_some_and(|r| r.next_out.is_some());
        let Some((newest, sa)) = self.esp.as_mut().and_then(|e| {
            e.inbound
                .iter_mut()
                .enumerate()
                .find(|(_, sa)| sa.spi() == spi)
        }) else {
            return Received::UnknownSpi;
        };
        let opened = match sa.open(buf) {
            Ok(opened) => opened,
            Err(e) => return Received::Refused(e),
        };
        // Anything authentic from the peer answers our traffic.
        self.unanswered_since = None;
        self.credit.earn(now, buf.len());
        if opened.next_header == NEXT_HEADER_NONE {
            // Not traffic: keepalives must not keep an unused association from its idle
            // timeout.
            return Received::Dummy;
        }
        // Answered within half the failover silence, by our traffic or a dummy.
        let silence = config.failover_silence;
        if self.ack_due.is_none() && !silence.is_zero() {
            let due = now + silence / 2;
            self.ack_due = Some(due);
            if self.timer().is_none_or(|t| t > due) {
                timers.set(self, Some(due));
            }
        }
        self.traffic.rx_packets += 1;
        self.traffic.rx_bytes += opened.payload.len() as u64;
        self.traffic.last_rx = Some(now);
        let revive = self.state == AssocState::Failed;
        // Authenticated traffic from the peer completes the responder's side.
        let completes = self.state == AssocState::R2Sent;
        if completes {
            self.state = AssocState::Established;
            timers.set(self, None);
            // The peer has our R2 (it sends with the keys): a duplicate of its I2 is
            // recognised by its solution and needs no answer, so the R2 goes.
            self.last_sent = None;
        }
        Received::Data {
            opened,
            revive,
            completes,
            rekey_done: rekeying && newest == 0,
        }
    }

    /// Builds the SAs from the session keys (a fresh association); returns the inbound SPI.
    pub fn install_sas(&mut self, now: Instant, replay_window: usize) -> Result<u32, Error> {
        let keys = &self.keys.as_ref().ok_or(Error::Unexpected)?.esp;
        let out =
            OutboundSa::new(keys.spi_out, &keys.enc_out).map_err(|_| Error::NoEspTransform)?;
        let window = ReplayWindow::new(replay_window).map_err(|_| Error::NoEspTransform)?;
        let inbound = InboundSa::with_window(keys.spi_in, &keys.enc_in, window)
            .map_err(|_| Error::NoEspTransform)?;
        let spi_in = keys.spi_in;
        self.esp = Some(EspState {
            out,
            inbound: vec![inbound],
            installed_at: now,
            rekeys: 0,
        });
        Ok(spi_in)
    }

    /// An ESP dummy packet (RFC 4303 §2.6: next header 59, no payload) sealed on the
    /// outbound SA; None without ESP.
    pub fn seal_dummy(&mut self) -> Option<Vec<u8>> {
        let esp = self.esp.as_mut()?;
        self.ack_due = None;
        let mut buf = [0u8; ESP_HEADER_LEN + ESP_TAIL_MAX];
        let empty = ESP_HEADER_LEN..ESP_HEADER_LEN;
        let range = esp.out.seal(&mut buf, empty, NEXT_HEADER_NONE).ok()?;
        Some(buf[range].to_vec())
    }

    /// When the SAs are due for a rekey by age, if no rekey is under way.
    pub fn rekey_due(&self, config: &Config) -> Option<Instant> {
        // A rekey waits for the UPDATE under way (`start_rekey` would do nothing): due now,
        // it would fire the timer again and again until that UPDATE ends.
        if self.pending_update.is_some() {
            return None;
        }
        match (&self.esp, &self.rekey) {
            (Some(e), None) if !config.rekey_after.is_zero() => {
                Some(e.installed_at + config.rekey_after)
            }
            _ => None,
        }
    }

    /// When the association will have been idle for the configured lifetime.
    pub fn idle_due(&self, config: &Config) -> Option<Instant> {
        if config.idle_timeout.is_zero() || self.registration {
            return None;
        }
        let last = [
            self.traffic.last_rx,
            self.traffic.last_tx,
            self.established_at,
        ]
        .into_iter()
        .flatten()
        .max()?;
        Some(last + config.idle_timeout)
    }

    /// When the association will have sent ESP without hearing anything back for the
    /// failover silence (nothing is due while an UPDATE or a check is under way).
    pub fn silence_due(&self, config: &Config) -> Option<Instant> {
        if config.failover_silence.is_zero()
            || self.state != AssocState::Established
            || self.verify.is_some()
            || self.pending_update.is_some()
            || self.esp.is_none()
        {
            return None;
        }
        // Reset by anything heard from the peer (ESP, a probe's answer).
        Some(self.unanswered_since? + config.failover_silence)
    }

    /// Notes that `remote` did not answer a check, so that it is not checked again soon.
    pub fn remember_failed_check(&mut self, remote: SocketAddr, now: Instant) {
        if self.failed_checks.len() == FAILED_CHECKS {
            self.failed_checks.remove(0);
        }
        self.failed_checks.push((remote, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assoc::AssocHandle;
    use crate::esp::ESP_ICV_LEN;
    use crate::identity::Hit;
    use std::time::Duration;

    const KEY: [u8; 20] = [7; 20];
    const SPI: u32 = 0x1000;

    /// Two established associations whose SAs mirror each other: `a` sends on SPI, `b`
    /// receives on it.
    fn pair(now: Instant) -> (Assoc, Assoc) {
        let mut a = Assoc::new(AssocHandle(1), Hit([2; 16]), AssocState::Established);
        let mut b = Assoc::new(AssocHandle(2), Hit([1; 16]), AssocState::Established);
        for x in [&mut a, &mut b] {
            x.esp = Some(EspState {
                out: OutboundSa::new(SPI, &KEY).unwrap(),
                inbound: vec![InboundSa::new(SPI, &KEY).unwrap()],
                installed_at: now,
                rekeys: 0,
            });
        }
        (a, b)
    }

    fn packet(payload: &[u8]) -> (Vec<u8>, Range<usize>) {
        let mut buf = vec![0u8; ESP_HEADER_LEN + payload.len() + ESP_TAIL_MAX];
        buf[ESP_HEADER_LEN..ESP_HEADER_LEN + payload.len()].copy_from_slice(payload);
        (buf, ESP_HEADER_LEN..ESP_HEADER_LEN + payload.len())
    }

    #[test]
    fn a_sealed_packet_opens_once_on_the_mirrored_association_and_both_count_it() {
        let now = Instant::now();
        let config = Config::default();
        let mut timers = Timers::default();
        let (mut a, mut b) = pair(now);
        let (mut buf, payload) = packet(b"ping");
        let Sealed::Sent {
            range,
            credit,
            rekey,
            ..
        } = a.seal(now, &config, &mut timers, 58, &mut buf, payload)
        else {
            panic!("not sealed");
        };
        assert_eq!((credit, rekey), (None, false));
        assert_eq!(a.traffic.tx_packets, 1);
        // Nothing heard back yet: the failover silence counts from this packet.
        assert_eq!(a.silence_due(&config), Some(now + config.failover_silence));
        assert_eq!(a.timer(), Some(now + config.failover_silence));
        let mut wire = buf[range].to_vec();
        let copy = wire.clone();
        let later = now + Duration::from_millis(5);
        match b.open(later, &config, &mut timers, SPI, &mut wire) {
            Received::Data {
                opened,
                revive,
                completes,
                rekey_done,
            } => {
                assert_eq!(&wire[opened.payload], b"ping");
                assert_eq!(opened.next_header, 58);
                assert!(!revive && !completes && !rekey_done);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((b.traffic.rx_packets, b.traffic.rx_bytes), (1, 4));
        // Unless b sends by then, a dummy acknowledges within half the silence.
        assert_eq!(b.ack_due, Some(later + config.failover_silence / 2));
        assert!(timers.agree([&a, &b].into_iter()));
        let mut again = copy.clone();
        assert_eq!(
            b.open(later, &config, &mut timers, SPI, &mut again),
            Received::Refused(EspError::Replay)
        );
        let mut tampered = copy;
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            b.open(later, &config, &mut timers, SPI, &mut tampered),
            Received::Refused(_)
        ));
        assert_eq!(
            b.open(later, &config, &mut timers, SPI + 1, &mut wire),
            Received::UnknownSpi
        );
        assert_eq!(b.traffic.rx_packets, 1);
    }

    #[test]
    fn a_dummy_answers_the_sender_but_is_not_traffic() {
        let now = Instant::now();
        let config = Config::default();
        let mut timers = Timers::default();
        let (mut a, mut b) = pair(now);
        let (mut buf, payload) = packet(b"x");
        assert!(matches!(
            b.seal(now, &config, &mut timers, 17, &mut buf, payload),
            Sealed::Sent { .. }
        ));
        assert!(b.unanswered_since.is_some());
        let mut dummy = a.seal_dummy().unwrap();
        assert_eq!(dummy.len(), ESP_HEADER_LEN + 4 + ESP_ICV_LEN);
        assert_eq!(
            b.open(now, &config, &mut timers, SPI, &mut dummy),
            Received::Dummy
        );
        assert_eq!(b.unanswered_since, None);
        assert_eq!(b.traffic.rx_packets, 0);
        assert_eq!(b.ack_due, None);
    }

    #[test]
    fn packets_wait_for_the_exchange_up_to_the_bound_and_a_failed_association_sends_nothing() {
        let now = Instant::now();
        let config = Config {
            queue_per_peer: 2,
            ..Config::default()
        };
        let mut timers = Timers::default();
        let mut a = Assoc::new(AssocHandle(1), Hit([2; 16]), AssocState::I1Sent);
        assert!(a.sends());
        let outcomes: Vec<Sealed> = (0..3)
            .map(|_| {
                let (mut buf, payload) = packet(b"early");
                a.seal(now, &config, &mut timers, 6, &mut buf, payload)
            })
            .collect();
        assert_eq!(
            outcomes,
            [Sealed::Queued, Sealed::Queued, Sealed::QueueFull]
        );
        assert_eq!(a.queue.len(), 2);

        let (mut failed, mut b) = pair(now);
        failed.state = AssocState::Failed;
        assert!(!failed.sends());
        let (mut buf, payload) = packet(b"late");
        assert_eq!(
            failed.seal(now, &config, &mut timers, 6, &mut buf, payload.clone()),
            Sealed::NoSa
        );
        // The peer's traffic still opens: it is what revives the association.
        let (mut buf, payload) = packet(b"back");
        let Sealed::Sent { range, .. } = b.seal(now, &config, &mut timers, 6, &mut buf, payload)
        else {
            panic!("not sealed");
        };
        let mut wire = buf[range].to_vec();
        assert!(matches!(
            failed.open(now, &config, &mut timers, SPI, &mut wire),
            Received::Data { revive: true, .. }
        ));
    }

    #[test]
    fn the_responder_completes_on_the_first_esp_and_drops_the_r2() {
        let now = Instant::now();
        let config = Config::default();
        let mut timers = Timers::default();
        let (mut a, mut b) = pair(now);
        b.state = AssocState::R2Sent;
        b.last_sent = Some(vec![1, 2, 3]);
        timers.set(&mut b, Some(now + Duration::from_secs(1)));
        let (mut buf, payload) = packet(b"first");
        let Sealed::Sent { range, .. } = a.seal(now, &config, &mut timers, 6, &mut buf, payload)
        else {
            panic!("not sealed");
        };
        let mut wire = buf[range].to_vec();
        assert!(matches!(
            b.open(now, &config, &mut timers, SPI, &mut wire),
            Received::Data {
                completes: true,
                ..
            }
        ));
        assert_eq!(b.state, AssocState::Established);
        assert_eq!(b.last_sent, None);
        assert_eq!(b.timer(), None);
    }

    #[test]
    fn deadlines_follow_the_configuration_and_zero_turns_them_off() {
        let now = Instant::now();
        let (mut a, _) = pair(now);
        let config = Config::default();
        assert_eq!(a.rekey_due(&config), Some(now + config.rekey_after));
        a.established_at = Some(now);
        assert_eq!(a.idle_due(&config), Some(now + config.idle_timeout));
        a.registration = true;
        assert_eq!(
            a.idle_due(&config),
            None,
            "a registration is kept while idle"
        );
        let off = Config {
            rekey_after: Duration::ZERO,
            failover_silence: Duration::ZERO,
            ..Config::default()
        };
        a.unanswered_since = Some(now);
        assert_eq!(a.rekey_due(&off), None);
        assert_eq!(a.silence_due(&off), None);
        assert_eq!(a.silence_due(&config), Some(now + config.failover_silence));
    }

    #[test]
    fn only_the_latest_failed_checks_are_remembered() {
        let now = Instant::now();
        let mut a = Assoc::new(AssocHandle(1), Hit([2; 16]), AssocState::Established);
        for port in 1..=6u16 {
            a.remember_failed_check(SocketAddr::from(([198, 51, 100, 1], port)), now);
        }
        let ports: Vec<u16> = a.failed_checks.iter().map(|(s, _)| s.port()).collect();
        assert_eq!(ports, [3, 4, 5, 6]);
    }
}
