//! UPDATE (RFC 7401 §5.3.5, §6.11–6.12) and ESP rekeying (RFC 7402 §6.8–6.10).
//!
//! Each UPDATE with a SEQ is retransmitted until the peer ACKs it; one is outstanding at a
//! time. A rekey is two halves, ours and the peer's, each an ESP_INFO with a new inbound
//! SPI and a KEYMAT index. Once both are known the new ESP keys are drawn at the larger
//! index from the base exchange's KEYMAT (no new Diffie-Hellman; see docs/PROTOCOL.md),
//! the new inbound SA is installed at once, and the outbound SA switches when our half has
//! been ACKed. The old inbound SA stays for packets still in flight.

use super::*;
use crate::assoc::{PendingUpdate, Rekey, UpdateDue};
use crate::esp::{InboundSa, OutboundSa, ReplayWindow};

/// Inbound SAs kept per association: the newest and the one before it.
const INBOUND_SAS: usize = 2;

impl Host {
    /// Starts a rekey of the association with `peer` unless one is under way.
    pub(super) fn start_rekey(&mut self, now: Instant, peer: Hit) {
        let Some(a) = self.assocs.get(&peer) else {
            return;
        };
        if a.state != AssocState::Established || a.rekey.is_some() || a.pending_update.is_some() {
            return;
        }
        let Some(keys) = a.keys.as_ref() else { return };
        let index = keys.keymat_next;
        let Some(old_spi) = a.esp.as_ref().map(|e| e.inbound[0].spi()) else {
            return;
        };
        if index + 2 * esp_key_lens(keys.esp.suite).map_or(0, |(e, a)| e + a) > u16::MAX as usize {
            // KEYMAT indices are 16 bits: past that a rekey would need new Diffie-Hellman
            // values; a new base exchange is simpler and gives forward secrecy as well.
            tracing::info!(peer = %peer, "KEYMAT exhausted, closing for a new base exchange");
            let _ = self.close(now, &peer);
            return;
        }
        let spi = self.new_spi();
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let seq = a.next_update_id;
        a.next_update_id = a.next_update_id.wrapping_add(1);
        a.rekey = Some(Box::new(Rekey {
            started: now,
            our_spi: spi,
            our_index: index,
            our_seq: seq,
            acked: false,
            peer_info: None,
            next_out: None,
        }));
        tracing::debug!(peer = %peer, spi = format_args!("{spi:#010x}"), "starting rekey");
        let info = EspInfo {
            reserved: 0,
            keymat_index: index as u16,
            old_spi,
            new_spi: spi,
        };
        self.send_update(
            now,
            peer,
            vec![Param::EspInfo(info), Param::Seq(seq)],
            Some(seq),
        );
    }

    pub(super) fn on_update(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        update: &HipRepr,
    ) -> Result<(), Error> {
        let peer = update.sender_hit;
        let profile = self.profile;
        let a = self.assocs.get_mut(&peer).ok_or(Error::Unexpected)?;
        // A failed association keeps its keys while it lingers: the peer may only have been
        // out of reach (every path of ours went at once) and probes us from elsewhere.
        let dormant = a.state == AssocState::Failed && a.esp.is_some();
        if !matches!(a.state, AssocState::Established | AssocState::R2Sent) && !dormant {
            return Err(Error::Unexpected);
        }
        let (Some(keys), Some(id)) = (a.keys.as_ref(), a.peer.as_ref()) else {
            return Err(Error::Unexpected);
        };
        check_mac(bytes, profile, &keys.mac_in, param_type::HIP_MAC, &[])?;
        check_signature(bytes, id, param_type::HIP_SIGNATURE)?;
        self.stats.updates_received += 1;
        let seq = update.params.iter().find_map(|p| match p {
            Param::Seq(s) => Some(*s),
            _ => None,
        });
        if dormant {
            // Only a fresh UPDATE brings it back: a replayed one proves nothing of now.
            let fresh = seq.is_some_and(|seq| {
                a.peer_update_id
                    .is_none_or(|last| (seq.wrapping_sub(last) as i32) > 0)
            });
            if !fresh {
                return Err(Error::Unexpected);
            }
            self.revive(now, peer);
        }
        let a = self.assocs.get_mut(&peer).ok_or(Error::Unexpected)?;
        let acks: &[u32] = match update.param(param_type::ACK) {
            Some(Param::Ack(ids)) => ids,
            _ => &[],
        };
        if seq.is_none() && acks.is_empty() {
            return Err(Error::MissingParam(param_type::SEQ));
        }
        if a.state == AssocState::R2Sent {
            a.state = AssocState::Established;
            self.timers.set(a, None);
            // The peer has our R2 (its UPDATE is under the keys): no more need of it.
            a.last_sent = None;
        }
        // Connectivity checks and their answers run beside the UPDATE sequence.
        if self.ice_update(now, local, remote, update) {
            return Ok(());
        }
        let Some(a) = self.assocs.get_mut(&peer) else {
            return Err(Error::Unexpected);
        };
        let mut acked_to = None;
        if let Some(p) = &a.pending_update {
            if acks.contains(&p.seq) {
                // Heard from the peer (an answer to what we sent): as good as ESP against
                // the silence that starts a failover.
                a.unanswered_since = None;
                let acked = p.seq;
                acked_to = Some(p.to);
                a.pending_update = None;
                // Our check was answered, but not from the address under check: the peer
                // is not there.
                if let Some(v) = a.verify.take_if(|v| v.seq == acked && v.remote != remote) {
                    a.remember_failed_check(v.remote, now);
                }
                if let Some(r) = a.rekey.as_mut().filter(|r| r.our_seq == acked) {
                    r.acked = true;
                }
            }
        }
        if let Some(to) = acked_to {
            self.acknowledged_at(now, peer, to, remote);
        }
        // An echo of our check is taken before this UPDATE's own SEQ is answered, so that
        // the answer already goes to the verified address.
        if let Some(Param::EchoResponseSigned(nonce)) =
            update.param(param_type::ECHO_RESPONSE_SIGNED)
        {
            self.address_verified(now, peer, remote, nonce);
        }
        let Some(a) = self.assocs.get_mut(&peer) else {
            return Err(Error::Unexpected);
        };
        if let Some(seq) = seq {
            // Circular comparison (RFC 7401 §6.12): an ID at or before the last one we
            // processed is a retransmission: ACK it again, do not act on it twice.
            let fresh = a
                .peer_update_id
                .is_none_or(|last| (seq.wrapping_sub(last) as i32) > 0);
            let info = match update.param(param_type::ESP_INFO) {
                // SPIs 0..=255 are reserved (RFC 4303); refuse before acknowledging it.
                Some(Param::EspInfo(info)) if info.new_spi <= 255 => {
                    return Err(Error::MissingParam(param_type::ESP_INFO))
                }
                Some(Param::EspInfo(info)) => Some(*info),
                _ => None,
            };
            if !fresh {
                self.stats.updates_old += 1;
                // A retransmission is ACKed again only where the peer is known to be (or
                // is being checked): a replayed UPDATE must not make us sign packets for
                // whatever source it claims.
                // Through our relay, "where the peer is" is the relay's address for every
                // sender: the origin it vouches for must be the peer's known one too.
                let origin_known = match self.answering_via {
                    Some((server, origin)) if server == remote => a.relay_to == Some(origin),
                    _ => true,
                };
                let known = origin_known
                    && (remote == a.remote
                        || a.verify.as_ref().is_some_and(|v| v.remote == remote));
                if known {
                    let mut params = vec![Param::Ack(vec![seq])];
                    params.extend(echo_response(update));
                    self.send_update_to(now, peer, params, None, Some((local, remote)));
                } else {
                    tracing::debug!(peer = %peer, seq, remote = %remote, "an old UPDATE from elsewhere: not answered");
                    self.stats.updates_old_unanswered += 1;
                }
            } else {
                a.peer_update_id = Some(seq);
                // A fresh UPDATE: heard from the peer (a replayed one proves nothing).
                a.unanswered_since = None;
                self.peer_announced(peer, update);
                self.peer_candidates_from(peer, update);
                if update.param(param_type::PEER_PERMISSION).is_some() {
                    self.install_permissions(now, peer, update);
                }
                let a = self.assocs.get_mut(&peer).ok_or(Error::Unexpected)?;
                match info {
                    Some(info) if a.rekey.is_none() => {
                        // The peer starts a rekey: answer with our half and the ACK.
                        let index = a.keys.as_ref().map_or(0, |k| k.keymat_next);
                        let old_spi = a.esp.as_ref().map_or(0, |e| e.inbound[0].spi());
                        let our_seq = a.next_update_id;
                        a.next_update_id = a.next_update_id.wrapping_add(1);
                        let spi = self.new_spi();
                        let a = self.assocs.get_mut(&peer).ok_or(Error::Unexpected)?;
                        let index = index.max(info.keymat_index as usize);
                        a.rekey = Some(Box::new(Rekey {
                            started: now,
                            our_spi: spi,
                            our_index: index,
                            our_seq,
                            acked: false,
                            peer_info: Some(info),
                            next_out: None,
                        }));
                        let ours = EspInfo {
                            reserved: 0,
                            keymat_index: index as u16,
                            old_spi,
                            new_spi: spi,
                        };
                        let params = vec![
                            Param::EspInfo(ours),
                            Param::Seq(our_seq),
                            Param::Ack(vec![seq]),
                        ];
                        self.send_update(now, peer, params, Some(our_seq));
                    }
                    Some(info) if a.rekey.as_ref().is_some_and(|r| r.peer_info.is_none()) => {
                        // The answer to our rekey (or a simultaneous one): the peer's half.
                        if let Some(r) = a.rekey.as_mut() {
                            r.peer_info = Some(info);
                        }
                        self.send_update(now, peer, vec![Param::Ack(vec![seq])], None);
                    }
                    Some(_) => {
                        // A new rekey while we still wait for the ACK of our half of the
                        // last one: the peer can only have finished that rekey if it
                        // received our half, so its ACK was lost. Finish ours, then treat
                        // this UPDATE again as the start of a new rekey.
                        self.implicit_ack(peer);
                        self.advance_rekey(now, peer)?;
                        if let Some(a) = self.assocs.get_mut(&peer) {
                            a.peer_update_id = Some(seq.wrapping_sub(1));
                        }
                        return self.on_update(now, local, remote, bytes, update);
                    }
                    None => self.answer_update(now, peer, seq, local, remote, update),
                }
            }
        }
        self.reg_granted(now, peer, update);
        self.advance_rekey(now, peer)?;
        self.announce_if_changed(now, peer);
        self.schedule(now, peer);
        Ok(())
    }

    /// Takes our half of the rekey under way as acknowledged, on evidence other than an
    /// ACK: the peer used our new SPI, or started the next rekey.
    pub(super) fn implicit_ack(&mut self, peer: Hit) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        let Some(r) = a.rekey.as_mut() else { return };
        if r.peer_info.is_none() {
            return;
        }
        r.acked = true;
        if a.pending_update
            .as_ref()
            .is_some_and(|p| p.seq == r.our_seq)
        {
            a.pending_update = None;
        }
    }

    /// Installs the new inbound SA once both halves are known, and switches the outbound
    /// SA once our half is acknowledged.
    pub(super) fn advance_rekey(&mut self, now: Instant, peer: Hit) -> Result<(), Error> {
        let window = self.config.replay_window;
        let profile = self.profile;
        let we_are_greater = self.hit() > peer;
        let a = self.assocs.get_mut(&peer).ok_or(Error::Unexpected)?;
        let (Some(r), Some(keys), Some(esp)) = (a.rekey.as_mut(), a.keys.as_mut(), a.esp.as_mut())
        else {
            return Ok(());
        };
        let Some(info) = r.peer_info else {
            return Ok(());
        };
        let mut new_spi = None;
        if r.next_out.is_none() {
            let index = r.our_index.max(info.keymat_index as usize);
            let (mut fresh, next) = bex::esp_keys_at(
                profile,
                &keys.seed,
                index,
                keys.esp.suite,
                r.our_spi,
                we_are_greater,
            )?;
            fresh.spi_out = info.new_spi;
            let inbound = InboundSa::with_window(
                fresh.spi_in,
                &fresh.enc_in,
                ReplayWindow::new(window).map_err(|_| Error::NoEspTransform)?,
            )
            .map_err(|_| Error::NoEspTransform)?;
            r.next_out = Some(
                OutboundSa::new(fresh.spi_out, &fresh.enc_out)
                    .map_err(|_| Error::NoEspTransform)?,
            );
            esp.inbound.insert(0, inbound);
            esp.inbound.truncate(INBOUND_SAS);
            keys.esp = fresh;
            keys.keymat_next = next;
            new_spi = Some(r.our_spi);
        }
        if r.acked {
            if let Some(out) = r.next_out.take() {
                esp.out = out;
            }
            esp.installed_at = now;
            esp.rekeys += 1;
            a.rekey = None;
            let (spi_in, spi_out) = (keys.esp.spi_in, keys.esp.spi_out);
            tracing::debug!(peer = %peer, spi_in = format_args!("{spi_in:#010x}"),
                spi_out = format_args!("{spi_out:#010x}"), "rekey complete");
            self.push_event(Event::Rekeyed {
                peer,
                spi_in,
                spi_out,
            });
        }
        if let Some(spi) = new_spi {
            self.register_spi(spi, peer);
        }
        Ok(())
    }

    /// Sends an UPDATE with `params` (in type order), MAC and signature; if `seq` is set it
    /// is retransmitted until ACKed.
    pub(super) fn send_update(
        &mut self,
        now: Instant,
        peer: Hit,
        params: Vec<Param>,
        seq: Option<u32>,
    ) {
        self.send_update_to(now, peer, params, seq, None);
    }

    /// Like `send_update`, to `to` (local, remote) instead of the peer's current locator:
    /// answers go where the UPDATE came from, address checks to the address checked.
    pub(super) fn send_update_to(
        &mut self,
        now: Instant,
        peer: Hit,
        params: Vec<Param>,
        seq: Option<u32>,
        to: Option<(SocketAddr, SocketAddr)>,
    ) {
        let Some(a) = self.assocs.get(&peer) else {
            return;
        };
        let Some(keys) = a.keys.as_ref() else { return };
        let mut params = params;
        params.sort_by_key(Param::ty);
        let mut update = HipRepr {
            next_header: 59,
            packet_type: PacketType::Update,
            version: 2,
            controls: 0,
            sender_hit: self.identity.hit(),
            receiver_hit: peer,
            params,
        };
        add_mac(
            &mut update,
            self.profile,
            &keys.mac_out,
            param_type::HIP_MAC,
            &[],
        );
        add_signature(&mut update, &self.identity, param_type::HIP_SIGNATURE);
        let bytes = update.to_bytes();
        let (local, remote) = to.unwrap_or((a.local, a.remote));
        let rto = self.config.update_timeout;
        if let (Some(seq), Some(a)) = (seq, self.assocs.get_mut(&peer)) {
            // A new UPDATE with SEQ replaces the one outstanding; if that one carried an
            // address check, the check is given up (the next packet from the address
            // starts it again).
            let replaced = a.pending_update.as_ref().map(|p| p.seq);
            if a.verify
                .as_ref()
                .is_some_and(|v| Some(v.seq) == replaced && v.seq != seq)
            {
                a.verify = None;
            }
            a.pending_update = Some(Box::new(PendingUpdate {
                seq,
                bytes: bytes.clone(),
                due: now + rto,
                rto,
                tries: 1,
                to,
            }));
        }
        if let Some(a) = self.assocs.get_mut(&peer) {
            a.last_sent_at = Some(now);
        }
        self.transmit(local, remote, &bytes);
        self.schedule(now, peer);
    }

    /// The timer of an ESTABLISHED association: UPDATE retransmission or time to rekey.
    pub(super) fn schedule(&mut self, _now: Instant, peer: Hit) {
        let idle = self
            .assocs
            .get(&peer)
            .is_some_and(|a| a.pending_update.is_none());
        let registration = self.registration_due(&peer, idle);
        let Some(a) = self.assocs.get(&peer) else {
            return;
        };
        if a.state != AssocState::Established {
            return;
        }
        let timer = [
            a.own_deadline(&self.config),
            registration,
            self.ice_due(a),
            self.keepalive_due(a),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(a) = self.assocs.get_mut(&peer) {
            self.timers.set(a, timer);
        }
    }

    /// An ESTABLISHED association's timer fired.
    pub(super) fn established_timer(&mut self, now: Instant, peer: Hit) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        a.expire_check(now);
        if let Some(why) = a.close_due(now, &self.config) {
            tracing::info!(peer = %peer, ?why, "closing association");
            let _ = self.close(now, &peer);
            return;
        }
        if !self.update_timer(now, peer) {
            return;
        }
        // Each of these is looked at afresh: the UPDATE's end may have made a rekey or a
        // failover due, and leaving it for the next wake-up would leave a deadline in the
        // past.
        if let Some(a) = self.assocs.get(&peer) {
            if a.rekey_due(&self.config).is_some_and(|t| t <= now) {
                self.start_rekey(now, peer);
            }
        }
        if let Some(a) = self.assocs.get(&peer) {
            if a.silence_due(&self.config).is_some_and(|t| t <= now) {
                self.start_failover(now, peer);
            }
        }
        self.registration_timer(now, peer);
        if let Some(a) = self.assocs.get(&peer) {
            if self.ice_due(a).is_some_and(|t| t <= now) {
                self.ice_timer(now, peer);
            }
        }
        if let Some(a) = self.assocs.get(&peer) {
            if self.keepalive_due(a).is_some_and(|t| t <= now) {
                self.send_keepalive(now, peer);
            }
        }
        if let Some(a) = self.assocs.get_mut(&peer) {
            if a.ack_due.is_some_and(|t| t <= now) {
                a.ack_due = None;
                self.stats.acks_sent += 1;
                self.send_dummy(peer);
            }
        }
        self.nat_upkeep(now, peer);
        self.schedule(now, peer);
    }

    /// Retransmits the outstanding UPDATE if it is due, or gives it up; false when the
    /// association failed for it.
    fn update_timer(&mut self, now: Instant, peer: Hit) -> bool {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return false;
        };
        match a.update_due(now, &self.config) {
            UpdateDue::Nothing | UpdateDue::Unverified => true,
            UpdateDue::ProbeUnanswered => {
                if self.probe_next(now, peer) {
                    return true;
                }
                // Every path was probed and none answered: the peer is gone (or out of
                // reach), as when an UPDATE goes unanswered (RFC 7401 §6.11).
                tracing::info!(peer = %peer, "no path to the peer answered, association failed");
                self.fail(now, peer);
                false
            }
            UpdateDue::Unanswered => {
                tracing::info!(peer = %peer, "UPDATE unanswered, association failed");
                self.fail(now, peer);
                false
            }
            UpdateDue::Resend {
                local,
                remote,
                bytes,
                others,
            } => {
                self.transmit(local, remote, &bytes);
                if !others.is_empty() {
                    tracing::debug!(peer = %peer, to = ?others, "UPDATE unanswered so far: copies to the peer's other locators");
                }
                for other in others {
                    self.transmit(local, other, &bytes);
                }
                true
            }
        }
    }
}

impl Host {
    /// The association with `peer` is broken: nothing is sent on it, and it is gone after
    /// the linger unless a fresh UPDATE or ESP from the peer revives it meanwhile (its SAs
    /// are kept for that).
    fn fail(&mut self, now: Instant, peer: Hit) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        a.fail(now, &self.config, &mut self.timers);
        self.push_event(Event::Failed {
            peer,
            error: Error::Timeout,
        });
    }
}

/// ECHO_RESPONSE_SIGNED for the ECHO_REQUEST_SIGNED of `update`, if it has one.
pub(super) fn echo_response(update: &HipRepr) -> Option<Param> {
    match update.param(param_type::ECHO_REQUEST_SIGNED) {
        Some(Param::EchoRequestSigned(nonce)) => Some(Param::EchoResponseSigned(nonce.clone())),
        _ => None,
    }
}
