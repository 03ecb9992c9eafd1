//! The data path: inner packets in and out of ESP (RFC 7402, BEET semantics, in UDP per
//! RFC 9028 §5.11). The caller owns the buffers; nothing here allocates per packet except
//! while a base exchange is under way (the bounded queue).
//!
//! Buffer layout for [`Host::encapsulate`]: the transport payload (the inner packet without
//! its IP header) lies at `buf[payload]`, with [`esp::ESP_HEADER_LEN`] free bytes before it and
//! [`esp::ESP_TAIL_MAX`] after. For [`Host::decapsulate`]: the whole UDP payload at the start of
//! `buf`; a delivered payload is decrypted in place.

use super::*;
use crate::assoc::{Received, Sealed};
use crate::esp::{self, EspError};
use core::ops::Range;

/// What became of an outbound packet.
#[derive(Debug)]
pub enum Outbound<'a> {
    /// Send this ESP datagram (a UDP payload) from `local` to `remote`.
    Send {
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &'a [u8],
    },
    /// Held until the base exchange with the peer completes.
    Queued,
    /// No association and none under way: `connect` to the peer, then hand the packet again.
    NoAssociation,
    /// Refused (queue full, SA exhausted); counted in [`Stats`].
    Dropped,
}

/// What an inbound UDP payload was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// An inner packet from `peer`: protocol `next_header`, transport payload at
    /// `buf[payload]`.
    Deliver {
        peer: Hit,
        next_header: u8,
        payload: Range<usize>,
    },
    /// A HIP control packet, handled: drain `poll_transmit` and `poll_event`.
    Control,
    /// ESP for an SPI we do not know: the peer may hold an association we lost.
    UnknownSpi { spi: u32 },
    /// As a relay server: ESP for a client or its peer. Send the datagram, unchanged, from
    /// the address it arrived at to `to`.
    Forward { to: SocketAddr },
    /// Refused (bad ICV, replay, malformed); counted in [`Stats`].
    Dropped,
}

impl Host {
    /// Seals one inner packet for `peer`. See the module doc for the buffer layout.
    pub fn encapsulate<'a>(
        &mut self,
        now: Instant,
        peer: &Hit,
        next_header: u8,
        buf: &'a mut [u8],
        payload: Range<usize>,
    ) -> Outbound<'a> {
        let Some(a) = self.assocs.get_mut(peer) else {
            return Outbound::NoAssociation;
        };
        match a.seal(
            now,
            &self.config,
            &mut self.timers,
            next_header,
            buf,
            payload,
        ) {
            Sealed::Sent {
                range,
                local,
                remote,
                credit,
                rekey,
            } => {
                match credit {
                    Some(true) => self.stats.credit_bytes += range.len() as u64,
                    Some(false) => self.stats.credit_refused += 1,
                    None => {}
                }
                if rekey {
                    self.start_rekey(now, *peer);
                }
                Outbound::Send {
                    local,
                    remote,
                    datagram: &buf[range],
                }
            }
            Sealed::Queued => Outbound::Queued,
            Sealed::QueueFull => {
                self.stats.queue_dropped += 1;
                Outbound::Dropped
            }
            Sealed::NoSa => Outbound::NoAssociation,
            Sealed::Refused(e) => {
                self.stats.esp_out_errors += 1;
                tracing::debug!(peer = %peer, error = %e, "ESP seal refused");
                if e == EspError::SequenceExhausted {
                    self.start_rekey(now, *peer);
                }
                Outbound::Dropped
            }
        }
    }

    /// Sends an ESP dummy packet (RFC 4303 §2.6: next header 59, no payload) on the
    /// association's path: every ESP implementation drops it, and it tells the peer that
    /// we are there. False without ESP.
    pub(super) fn send_dummy(&mut self, peer: Hit) -> bool {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return false;
        };
        let Some(payload) = a.seal_dummy() else {
            return false;
        };
        let (local, remote) = (a.local, a.remote);
        self.push_transmit(Transmit {
            local,
            remote,
            payload,
        });
        true
    }

    /// Whether [`Host::encapsulate`] for `peer` would seal or queue, rather than answer
    /// `NoAssociation` (no association, or one that failed: a base exchange is needed).
    pub fn sends_to(&self, peer: &Hit) -> bool {
        self.assocs.get(peer).is_some_and(|a| a.sends())
    }

    /// Takes one UDP payload received on `local` from `remote`: HIP control packets go to
    /// the state machine, ESP is verified and decrypted in place.
    pub fn decapsulate(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
    ) -> Inbound {
        if buf.len() < 8 || buf[..4] == [0; 4] {
            self.handle_datagram(now, local, remote, buf);
            return Inbound::Control;
        }
        let spi = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let Some(peer) = self.spis.get(&spi).copied() else {
            if let Some(to) = self.relay_esp(now, remote, spi, buf.len()) {
                return Inbound::Forward { to };
            }
            self.stats.esp_unknown_spi += 1;
            return Inbound::UnknownSpi { spi };
        };
        let Some(a) = self.assocs.get_mut(&peer) else {
            self.spis.remove(&spi);
            self.stats.esp_unknown_spi += 1;
            return Inbound::UnknownSpi { spi };
        };
        let moved = remote != a.remote;
        match a.open(now, &self.config, &mut self.timers, spi, buf) {
            Received::Dummy => {
                if moved {
                    self.esp_from_new_address(now, peer, local, remote);
                }
                Inbound::Dropped
            }
            Received::Data {
                opened,
                revive,
                completes,
                rekey_done,
            } => {
                if revive {
                    self.revive(now, peer);
                }
                if completes {
                    self.nat_upkeep(now, peer);
                    self.schedule(now, peer);
                }
                if moved {
                    self.esp_from_new_address(now, peer, local, remote);
                }
                if rekey_done {
                    self.implicit_ack(peer);
                    let _ = self.advance_rekey(now, peer);
                    self.schedule(now, peer);
                }
                Inbound::Deliver {
                    peer,
                    next_header: opened.next_header,
                    payload: opened.payload,
                }
            }
            Received::UnknownSpi => {
                self.spis.remove(&spi);
                self.stats.esp_unknown_spi += 1;
                Inbound::UnknownSpi { spi }
            }
            Received::Refused(EspError::Replay) => {
                self.stats.esp_replayed += 1;
                Inbound::Dropped
            }
            Received::Refused(EspError::Stale) => {
                self.stats.esp_late += 1;
                Inbound::Dropped
            }
            Received::Refused(e) => {
                tracing::trace!(peer = %peer, error = %e, "ESP packet refused");
                self.stats.esp_auth_failed += 1;
                Inbound::Dropped
            }
        }
    }

    /// Traffic counters of the association with `peer`.
    pub fn traffic(&self, peer: &Hit) -> Option<Traffic> {
        self.assocs.get(peer).map(|a| a.traffic)
    }

    /// Builds the SAs of a fresh association and sends what waited for it.
    pub(super) fn install_esp(&mut self, now: Instant, peer: Hit) -> Result<(), Error> {
        let a = self.assocs.get_mut(&peer).ok_or(Error::UnknownPeer(peer))?;
        let spi_in = a.install_sas(now, self.config.replay_window)?;
        // The peer knows the one address it reached us at (the unspecified address of a
        // wildcard socket stands for our first of its family); the rest is announced once
        // the association is established (`nat_upkeep`).
        let local = a.local;
        let remote = a.remote;
        let seen = self.local_towards(local, remote);
        let seen = if seen.ip().is_unspecified() {
            self.local_addresses
                .iter()
                .find(|l| l.is_ipv4() == remote.is_ipv4())
                .copied()
                .unwrap_or(seen)
        } else {
            seen
        };
        let Some(a) = self.assocs.get_mut(&peer) else {
            return Err(Error::UnknownPeer(peer));
        };
        a.announced = vec![seen];
        let queued: Vec<_> = a.queue.drain(..).collect();
        self.register_spi(spi_in, peer);
        // Through a relay, the permission for this association goes out before the packets
        // queued for it: the relay drops ESP it has no permission for.
        self.nat_upkeep(now, peer);
        for (next_header, payload) in queued {
            let mut buf = vec![0u8; esp::ESP_HEADER_LEN + payload.len() + esp::ESP_TAIL_MAX];
            buf[esp::ESP_HEADER_LEN..esp::ESP_HEADER_LEN + payload.len()].copy_from_slice(&payload);
            let range = esp::ESP_HEADER_LEN..esp::ESP_HEADER_LEN + payload.len();
            if let Outbound::Send {
                local,
                remote,
                datagram,
            } = self.encapsulate(now, &peer, next_header, &mut buf, range)
            {
                let t = Transmit {
                    local,
                    remote,
                    payload: datagram.to_vec(),
                };
                self.push_transmit(t);
            }
        }
        self.schedule(now, peer);
        Ok(())
    }

    /// Maps an inbound SPI to its association; forgets SPIs of associations that are gone
    /// once the table has grown well past what is live.
    pub(super) fn register_spi(&mut self, spi: u32, peer: Hit) {
        self.spis.insert(spi, peer);
        if self.spis.len() > 4 * self.assocs.len() + 64 {
            let assocs = &self.assocs;
            self.spis.retain(|spi, hit| {
                assocs
                    .get(hit)
                    .and_then(|a| a.esp.as_ref())
                    .is_some_and(|e| e.inbound.iter().any(|sa| sa.spi() == *spi))
            });
        }
    }
}
