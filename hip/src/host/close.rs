//! Ending associations and telling peers about errors: CLOSE and CLOSE_ACK (RFC 7401
//! §5.3.7–5.3.8, §6.14–6.15) and NOTIFY (§5.3.6, §6.13).

use super::*;

impl Host {
    /// Closes the association with `peer` (CLOSE, RFC 7401 §5.3.7). An exchange that has
    /// no keys yet is simply dropped.
    pub fn close(&mut self, now: Instant, peer: &Hit) -> Result<(), Error> {
        let a = self.assocs.get_mut(peer).ok_or(Error::UnknownPeer(*peer))?;
        if a.keys.is_none() || a.peer.is_none() {
            self.forget_association(now, *peer);
            self.push_event(Event::Closed { peer: *peer });
            return Ok(());
        }
        let mut nonce = vec![0u8; 16];
        self.rng.fill_bytes(&mut nonce);
        let a = self.assocs.get_mut(peer).ok_or(Error::UnknownPeer(*peer))?;
        let mut close = HipRepr {
            next_header: 59,
            packet_type: PacketType::Close,
            version: 2,
            controls: 0,
            sender_hit: self.identity.hit(),
            receiver_hit: *peer,
            params: vec![Param::EchoRequestSigned(nonce.clone())],
        };
        let keys = a.keys.as_ref().ok_or(Error::Unexpected)?;
        add_mac(
            &mut close,
            self.profile,
            &keys.mac_out,
            param_type::HIP_MAC,
            &[],
        );
        add_signature(&mut close, &self.identity, param_type::HIP_SIGNATURE);
        let bytes = close.to_bytes();
        a.close_nonce = Some(nonce);
        a.state = AssocState::Closing;
        // No more ESP on this association: a packet for the peer now finds no association
        // and starts a new exchange (RFC 7401 §4.4.2, CLOSING: need association → I1).
        a.esp = None;
        a.last_sent = Some(bytes.clone());
        a.arm(&mut self.timers, now, self.config.close_timeout);
        let (local, remote) = (a.local, a.remote);
        self.transmit(local, remote, &bytes);
        Ok(())
    }

    pub(super) fn on_close(
        &mut self,
        now: Instant,
        bytes: &[u8],
        close: &HipRepr,
    ) -> Result<(), Error> {
        let peer_hit = close.sender_hit;
        let a = self.assocs.get_mut(&peer_hit).ok_or(Error::Unexpected)?;
        if matches!(a.state, AssocState::I1Sent | AssocState::Failed) {
            return Err(Error::Unexpected);
        }
        let (Some(keys), Some(peer)) = (a.keys.as_ref(), a.peer.as_ref()) else {
            return Err(Error::Unexpected);
        };
        check_mac(bytes, self.profile, &keys.mac_in, param_type::HIP_MAC, &[])?;
        check_signature(bytes, peer, param_type::HIP_SIGNATURE)?;
        let echo = match close.param(param_type::ECHO_REQUEST_SIGNED) {
            Some(Param::EchoRequestSigned(e)) => e.clone(),
            _ => return Err(Error::MissingParam(param_type::ECHO_REQUEST_SIGNED)),
        };
        let mut ack = HipRepr {
            next_header: 59,
            packet_type: PacketType::CloseAck,
            version: 2,
            controls: 0,
            sender_hit: self.identity.hit(),
            receiver_hit: peer_hit,
            params: vec![Param::EchoResponseSigned(echo)],
        };
        add_mac(
            &mut ack,
            self.profile,
            &keys.mac_out,
            param_type::HIP_MAC,
            &[],
        );
        add_signature(&mut ack, &self.identity, param_type::HIP_SIGNATURE);
        let was_closed = a.state == AssocState::Closed;
        a.state = AssocState::Closed;
        a.esp = None;
        self.timers.set(a, Some(now + self.config.linger));
        a.last_sent = None;
        // To the peer's known locator, not to wherever this copy came from: a replayed
        // CLOSE must not aim our answers at a third party.
        let (local, remote) = (a.local, a.remote);
        self.transmit(local, remote, &ack.to_bytes());
        if !was_closed {
            self.push_event(Event::Closed { peer: peer_hit });
        }
        Ok(())
    }

    pub(super) fn on_close_ack(
        &mut self,
        now: Instant,
        bytes: &[u8],
        ack: &HipRepr,
    ) -> Result<(), Error> {
        let peer_hit = ack.sender_hit;
        let a = self.assocs.get(&peer_hit).ok_or(Error::Unexpected)?;
        let (Some(keys), Some(peer), Some(nonce)) =
            (a.keys.as_ref(), a.peer.as_ref(), a.close_nonce.as_ref())
        else {
            return Err(Error::Unexpected);
        };
        if a.state != AssocState::Closing {
            return Err(Error::Unexpected);
        }
        check_mac(bytes, self.profile, &keys.mac_in, param_type::HIP_MAC, &[])?;
        check_signature(bytes, peer, param_type::HIP_SIGNATURE)?;
        match ack.param(param_type::ECHO_RESPONSE_SIGNED) {
            Some(Param::EchoResponseSigned(e)) if e == nonce => {}
            _ => return Err(Error::Unexpected),
        }
        self.forget_association(now, peer_hit);
        self.push_event(Event::Closed { peer: peer_hit });
        Ok(())
    }

    pub(super) fn on_notify(
        &mut self,
        now: Instant,
        bytes: &[u8],
        notify: &HipRepr,
    ) -> Result<(), Error> {
        let peer_hit = notify.sender_hit;
        // Only a NOTIFY we can authenticate is reported; it never changes state.
        let known = self.assocs.get(&peer_hit).and_then(|a| a.peer.clone());
        let peer = match known {
            Some(p) => p,
            None => match notify.param(param_type::HOST_ID) {
                Some(Param::HostId(h)) => PublicIdentity::from_host_id(h)?,
                _ => return Err(Error::UnknownPeer(peer_hit)),
            },
        };
        if peer.hit() != peer_hit {
            return Err(Error::InvalidHit);
        }
        check_signature(bytes, &peer, param_type::HIP_SIGNATURE)?;
        for p in &notify.params {
            if let Param::Notification(n) = p {
                // A keepalive has no ID: a replay of one from elsewhere must not make us
                // send anything there, so it moves nothing (ESP and UPDATEs do).
                if n.kind == NotifyType::NatKeepalive {
                    continue;
                }
                tracing::debug!(peer = %peer_hit, kind = ?n.kind, "NOTIFY received");
                if self.routed_in.is_some() {
                    self.route_failed(now, n);
                }
                self.push_event(Event::Notified {
                    peer: peer_hit,
                    kind: n.kind,
                    data: n.data.clone(),
                });
            }
        }
        Ok(())
    }

    /// Whether one more NOTIFY fits in this second's `notify_rate` (and counts it).
    pub(super) fn notify_allowed(&mut self, now: Instant) -> bool {
        if now.duration_since(self.notify_window.0) >= Duration::from_secs(1) {
            self.notify_window = (now, 0);
        }
        if self.notify_window.1 >= self.config.notify_rate {
            return false;
        }
        self.notify_window.1 += 1;
        true
    }

    /// Sends a signed NOTIFY (RFC 7401 §5.3.6), at most `notify_rate` per second.
    pub(super) fn notify(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        peer: Hit,
        kind: NotifyType,
        data: Vec<u8>,
    ) {
        if !self.notify_allowed(now) {
            return;
        }
        // HOST_ID too: the peer may hold no association to check the signature with.
        let host_id = Param::HostId(self.identity.public().host_id());
        let n = self.notify_packet(peer, Some(host_id), kind, data);
        self.stats.notify_sent += 1;
        self.transmit(local, remote, &n);
    }

    /// A signed NOTIFY for `peer` with one NOTIFICATION (after `host_id`, if given).
    pub(super) fn notify_packet(
        &self,
        peer: Hit,
        host_id: Option<Param>,
        kind: NotifyType,
        data: Vec<u8>,
    ) -> Vec<u8> {
        let notification = Param::Notification(Notification {
            reserved: 0,
            kind,
            data,
        });
        let mut n = HipRepr {
            next_header: 59,
            packet_type: PacketType::Notify,
            version: 2,
            controls: 0,
            sender_hit: self.hit(),
            receiver_hit: peer,
            params: host_id.into_iter().chain([notification]).collect(),
        };
        add_signature(&mut n, &self.identity, param_type::HIP_SIGNATURE);
        n.to_bytes()
    }
}
