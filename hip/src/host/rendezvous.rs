//! Registration (RFC 8003) and rendezvous (RFC 8004).
//!
//! A host registers with a rendezvous server (RVS) by asking for the RENDEZVOUS service in
//! the I2 of its base exchange with it; the server grants it in the R2 when it is
//! configured to serve. From then on the server relays I1s addressed to the client's HIT
//! to wherever the client's association with it points (mobility keeps that current),
//! adding FROM (the initiator's address) and RVS_HMAC (keyed with the registration
//! association's integrity key). The client checks the RVS_HMAC and answers with an R1
//! straight to the initiator, naming the server in VIA_RVS; the rest of the exchange runs
//! directly. FROM carries no port: the client answers on its own HIP port, the
//! convention being that peers listen on the same port (10500 by default).
//!
//! A registration lasts the lifetime the server granted (RFC 8003 §3.3). The client
//! renews it by an UPDATE with REG_REQUEST when four fifths of it have passed; the server
//! answers with REG_RESPONSE in the ACK and stops relaying for a client whose registration
//! ran out. A REG_REQUEST with lifetime zero cancels.

use super::*;
use crate::wire::TransportAddress;

/// Registration type RENDEZVOUS (RFC 8003, IANA).
pub const REG_TYPE_RENDEZVOUS: u8 = 1;
/// REG_INFO lifetimes we offer as a server (RFC 8003 encoding: 2^((v - 64) / 8) s):
/// 0x60 is 16 s, 0xb0 about 3.7 hours.
const MIN_LIFETIME: u8 = 0x60;
const MAX_LIFETIME: u8 = 0xb0;

impl Host {
    /// Registers with the rendezvous server `server`: a base exchange with it whose I2 asks
    /// for the RENDEZVOUS service. `Event::Registered` reports the grant.
    pub fn register(
        &mut self,
        now: Instant,
        server: Hit,
        local: SocketAddr,
        locators: &[SocketAddr],
    ) -> Result<AssocHandle, Error> {
        self.register_for(now, server, vec![REG_TYPE_RENDEZVOUS], local, locators)
    }

    /// Registers with the relay server `server` for the control and data relays (RFC 9028
    /// §4.1): hosts that know only the server's address reach us through it, and the
    /// server tells us the address it sees us at. `Event::Registered` reports the grant.
    pub fn register_relay(
        &mut self,
        now: Instant,
        server: Hit,
        local: SocketAddr,
        locators: &[SocketAddr],
    ) -> Result<AssocHandle, Error> {
        let types = vec![relay::REG_TYPE_RELAY_UDP_HIP, relay::REG_TYPE_RELAY_UDP_ESP];
        self.register_for(now, server, types, local, locators)
    }

    /// A base exchange with `server` whose I2 asks for the registration `types`.
    fn register_for(
        &mut self,
        now: Instant,
        server: Hit,
        types: Vec<u8>,
        local: SocketAddr,
        locators: &[SocketAddr],
    ) -> Result<AssocHandle, Error> {
        self.wanted_registrations.insert(server, types);
        // With an association up, the request goes in an UPDATE; otherwise in the I2 of a
        // new exchange.
        let up = self
            .assocs
            .get(&server)
            .filter(|a| a.state == AssocState::Established);
        if let Some(handle) = up.map(|a| a.handle) {
            if !self.registered_with.contains_key(&server) {
                // Asked at once, or when the UPDATE under way is done.
                self.asking.insert(server, now);
                self.registration_timer(now, server);
                self.schedule(now, server);
            }
            return Ok(handle);
        }
        self.connect(now, server, local, locators)
    }

    /// True once `server` granted us the service we asked it for.
    pub fn registered_with(&self, server: &Hit) -> bool {
        self.registered_with.contains_key(server)
    }

    /// The hosts registered with us for rendezvous.
    pub fn rendezvous_clients(&self) -> impl Iterator<Item = &Hit> + '_ {
        self.rvs_clients.keys()
    }

    /// The registration types we serve.
    fn served_types(&self) -> Vec<u8> {
        let mut types = Vec::new();
        if self.config.rendezvous_server {
            types.push(REG_TYPE_RENDEZVOUS);
        }
        if self.config.relay_server {
            types.extend([relay::REG_TYPE_RELAY_UDP_HIP, relay::REG_TYPE_RELAY_UDP_ESP]);
        }
        types
    }

    /// REG_INFO for our R1s, when we serve anything.
    pub(super) fn reg_info(&self) -> Option<Param> {
        let types = self.served_types();
        (!types.is_empty()).then_some(Param::RegInfo {
            min_lifetime: MIN_LIFETIME,
            max_lifetime: MAX_LIFETIME,
            types,
        })
    }

    /// REG_REQUEST for the I2 to `peer`, if we want to register with it and its R1 offers
    /// what we want.
    pub(super) fn reg_request(&self, peer: &Hit, r1: &HipRepr) -> Option<Param> {
        let wanted = self.wanted_registrations.get(peer)?;
        let Some(Param::RegInfo { types, .. }) = r1.param(param_type::REG_INFO) else {
            return None;
        };
        let types: Vec<u8> = wanted
            .iter()
            .copied()
            .filter(|t| types.contains(t))
            .collect();
        (!types.is_empty()).then_some(Param::RegRequest {
            lifetime: self.config.registration_lifetime,
            types,
        })
    }

    /// The server's answer to a REG_REQUEST in an I2 it accepted or in an UPDATE, in type
    /// order: REG_RESPONSE for the types it serves (the client is recorded until its
    /// lifetime ends, or removed for lifetime zero), REG_FAILED "type unavailable" for the
    /// rest, and REG_FROM (where the client was seen) when a relay type was asked for.
    /// Rendezvous and a control relay in one association are refused (RFC 9028 §7.8,
    /// failure type 9).
    pub(super) fn reg_answer(
        &mut self,
        now: Instant,
        peer: Hit,
        remote: SocketAddr,
        packet: &HipRepr,
    ) -> Vec<Param> {
        let Some(Param::RegRequest { lifetime, types }) = packet.param(param_type::REG_REQUEST)
        else {
            return Vec::new();
        };
        let relay_types = [relay::REG_TYPE_RELAY_UDP_HIP, relay::REG_TYPE_RELAY_UDP_ESP];
        let asks_relay = types.iter().any(|t| relay_types.contains(t));
        if types.contains(&REG_TYPE_RENDEZVOUS) && types.contains(&relay::REG_TYPE_RELAY_UDP_HIP) {
            return vec![Param::RegFailed {
                failure: 9,
                types: vec![REG_TYPE_RENDEZVOUS, relay::REG_TYPE_RELAY_UDP_HIP],
            }];
        }
        let served = self.served_types();
        let (granted, refused): (Vec<u8>, Vec<u8>) =
            types.iter().copied().partition(|t| served.contains(t));
        let lifetime = match *lifetime {
            0 => 0,
            l => l.clamp(MIN_LIFETIME, MAX_LIFETIME),
        };
        let ends = now + registration_lifetime(lifetime);
        if granted.contains(&REG_TYPE_RENDEZVOUS) {
            if lifetime == 0 {
                self.rvs_clients.remove(&peer);
                tracing::info!(client = %peer, "rendezvous registration cancelled");
            } else {
                self.rvs_clients.insert(peer, ends);
                tracing::info!(client = %peer, lifetime, "rendezvous registration granted");
            }
        }
        if granted.contains(&relay::REG_TYPE_RELAY_UDP_HIP) {
            let data = granted.contains(&relay::REG_TYPE_RELAY_UDP_ESP);
            if lifetime == 0 {
                self.drop_relay_client(&peer);
                tracing::info!(client = %peer, "relay registration cancelled");
            } else if let Some(c) = self.relay_clients.get_mut(&peer) {
                c.renew(ends, data);
            } else {
                let quota = self.config.relay_quota;
                self.relay_clients
                    .insert(peer, relay::RelayClient::new(now, ends, data, &quota));
                tracing::info!(client = %peer, at = %remote, lifetime, "relay registration granted");
            }
        }
        let registered =
            self.rvs_clients.contains_key(&peer) || self.relay_clients.contains_key(&peer);
        if let Some(a) = self.assocs.get_mut(&peer) {
            a.registration = registered || self.registered_with.contains_key(&peer);
        }
        let mut answer = Vec::new();
        if !granted.is_empty() {
            answer.push(Param::RegResponse {
                lifetime,
                types: granted,
            });
        }
        if !refused.is_empty() {
            answer.push(Param::RegFailed {
                failure: 1,
                types: refused,
            });
        }
        if asks_relay {
            answer.push(Param::RegFrom(TransportAddress::udp(remote)));
        }
        answer
    }

    /// Notes a grant (in an R2 we accepted, or in the UPDATE that answers a renewal).
    pub(super) fn reg_granted(&mut self, now: Instant, server: Hit, packet: &HipRepr) {
        let Some(wanted) = self.wanted_registrations.get(&server) else {
            return;
        };
        let answered = packet.param(param_type::REG_FAILED).is_some()
            || packet.param(param_type::REG_RESPONSE).is_some();
        let asked = answered && self.asking.remove(&server).is_some();
        let refused = matches!(packet.param(param_type::REG_FAILED),
            Some(Param::RegFailed { types, .. }) if types.iter().any(|t| wanted.contains(t)));
        let (lifetime, types) = match packet.param(param_type::REG_RESPONSE) {
            Some(Param::RegResponse { lifetime, types })
                if types.iter().any(|t| wanted.contains(t)) =>
            {
                (Some(*lifetime), types.clone())
            }
            _ => (None, Vec::new()),
        };
        if refused || lifetime == Some(0) {
            if asked {
                tracing::debug!(server = %server, "registration refused");
                self.push_event(Event::RegistrationRefused { server });
            }
            // Refused or cancelled: not registered, and nothing to renew.
            if self.registered_with.remove(&server).is_some() {
                tracing::info!(server = %server, "registration ended by the server");
            }
            self.relay_grants.remove(&server);
            let server_side =
                self.rvs_clients.contains_key(&server) || self.relay_clients.contains_key(&server);
            if let Some(a) = self.assocs.get_mut(&server) {
                a.registration = server_side;
            }
            return;
        }
        let Some(lifetime) = lifetime else {
            return;
        };
        if types.contains(&relay::REG_TYPE_RELAY_UDP_HIP) {
            let reflexive = match packet.param(param_type::REG_FROM) {
                Some(Param::RegFrom(t)) => Some(t.socket()),
                _ => None,
            };
            let data = types.contains(&relay::REG_TYPE_RELAY_UDP_ESP);
            let renewal = self.registered_with.contains_key(&server);
            let old = self.relay_grants.insert(
                server,
                relay::RelayGrant {
                    reflexive,
                    data,
                    // A renewal keeps the permission refresh going.
                    refresh_permissions: old_refresh(&self.relay_grants, &server),
                    in_flight: None,
                },
            );
            if !renewal {
                // A new registration (the server may have restarted and forgotten
                // everything): every association relayed through it asks again.
                if let Some(addr) = self.assocs.get(&server).map(|s| s.remote) {
                    for a in self.assocs.values_mut().filter(|a| a.remote == addr) {
                        a.permission = None;
                    }
                }
            }
            if old.is_none_or(|g| g.reflexive != reflexive) {
                tracing::info!(server = %server, reflexive = ?reflexive, "relay server sees us at");
                self.candidates_changed(now);
            }
        }
        let renewal = self.registered_with.contains_key(&server);
        // Renewed when four fifths of the lifetime have passed (of at least the shortest
        // lifetime we offer ourselves, so that a tiny grant cannot make us spin), or
        // sooner, to hear that the server is still there (`registration_check`).
        let granted = registration_lifetime(lifetime).max(registration_lifetime(MIN_LIFETIME));
        let check = Some(self.config.registration_check).filter(|c| !c.is_zero());
        let renew = granted.mul_f64(0.8);
        let refresh = now + check.map_or(renew, |c| c.min(renew));
        self.registered_with.insert(server, refresh);
        if let Some(a) = self.assocs.get_mut(&server) {
            a.registration = true;
        }
        if renewal {
            tracing::debug!(server = %server, lifetime, "registration renewed");
        } else {
            tracing::info!(server = %server, lifetime, types = ?types, "registered");
            self.push_event(Event::Registered { server });
        }
    }

    /// The registration timers of the association with `peer`: when our registration
    /// with it is to be renewed (while no other UPDATE is outstanding), when its
    /// registration with us ends, and when our relay permissions there are refreshed.
    pub(super) fn registration_due(&self, peer: &Hit, idle: bool) -> Option<Instant> {
        let renew = self
            .registered_with
            .get(peer)
            .or(self.asking.get(peer))
            .filter(|_| idle)
            .copied();
        let ends = self.rvs_clients.get(peer).copied();
        let relay_ends = self.relay_clients.get(peer).map(|c| c.ends);
        let permissions = self.permissions_due(peer).filter(|_| idle);
        [renew, ends, relay_ends, permissions]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the registration timers of the association with `peer` (see
    /// `registration_due`); true if it sent an UPDATE.
    pub(super) fn registration_timer(&mut self, now: Instant, peer: Hit) -> bool {
        if self.rvs_clients.get(&peer).is_some_and(|end| *end <= now) {
            tracing::info!(client = %peer, "rendezvous registration expired");
            self.rvs_clients.remove(&peer);
        }
        if self.relay_clients.get(&peer).is_some_and(|c| c.ends <= now) {
            tracing::info!(client = %peer, "relay registration expired");
            self.drop_relay_client(&peer);
        }
        let registered = self.registered_with.contains_key(&peer)
            || self.rvs_clients.contains_key(&peer)
            || self.relay_clients.contains_key(&peer);
        if let Some(a) = self.assocs.get_mut(&peer) {
            a.registration = registered;
        }
        let idle = self
            .assocs
            .get(&peer)
            .is_some_and(|a| a.pending_update.is_none());
        if !idle {
            return false;
        }
        if self.permissions_due(&peer).is_some_and(|t| t <= now) {
            if let Some(g) = self.relay_grants.get_mut(&peer) {
                g.refresh_permissions = None;
            }
            self.sync_permissions(now, peer, true);
            return self
                .assocs
                .get(&peer)
                .is_some_and(|a| a.pending_update.is_some());
        }
        let again = now + self.config.update_timeout * self.config.update_tries;
        // Asked again after a while if this request or renewal gets no REG_RESPONSE.
        if let Some(t) = self.registered_with.get_mut(&peer) {
            if *t > now {
                return false;
            }
            *t = again;
        } else {
            match self.asking.get_mut(&peer) {
                Some(t) if *t <= now => *t = again,
                _ => return false,
            }
        }
        let types = self
            .wanted_registrations
            .get(&peer)
            .cloned()
            .unwrap_or_default();
        let Some(a) = self.assocs.get_mut(&peer) else {
            return false;
        };
        let seq = a.next_update_id;
        a.next_update_id = a.next_update_id.wrapping_add(1);
        tracing::debug!(server = %peer, "renewing the registration");
        let params = vec![
            Param::Seq(seq),
            Param::RegRequest {
                lifetime: self.config.registration_lifetime,
                types,
            },
        ];
        self.send_update(now, peer, params, Some(seq));
        true
    }

    /// Whether a packet for another host is ours to relay: an I1, or the UPDATE of a peer
    /// that lost track of a client that moved (RFC 8046 §3.2.3, the double jump), for a
    /// registered client; with `overlay_relay`, an I1 for any host we have ESP with.
    pub(super) fn relays_for(&self, now: Instant, packet: &HipRepr) -> bool {
        let client = &packet.receiver_hit;
        let registered = self.rvs_clients.get(client).is_some_and(|end| now < *end);
        match packet.packet_type {
            PacketType::I1 => {
                registered
                    || (self.config.overlay_relay
                        && self.assocs.get(client).is_some_and(|a| a.esp.is_some()))
            }
            PacketType::Update => registered,
            _ => false,
        }
    }

    /// Whether the host of association `a` may relay I1s to us: our rendezvous server, or
    /// (with `overlay_relay`) any host we have ESP with.
    fn relays_to_us(&self, a: &Assoc) -> bool {
        self.registered_with.contains_key(&a.peer_hit)
            || (self.config.overlay_relay && a.esp.is_some())
    }

    /// As the rendezvous server: passes an I1 (or UPDATE) for a registered client on to it.
    pub(super) fn relay_i1(&mut self, remote: SocketAddr, i1: &HipRepr) -> Result<(), Error> {
        let client = i1.receiver_hit;
        let a = self.assocs.get(&client).ok_or(Error::UnknownPeer(client))?;
        let keys = a.keys.as_ref().ok_or(Error::Unexpected)?;
        if !matches!(a.state, AssocState::Established | AssocState::R2Sent) {
            return Err(Error::Unexpected);
        }
        // A FROM already in the packet would be the one the client reads — and our
        // RVS_HMAC would vouch for it: anyone could aim the client's R1 anywhere.
        let relay_params = [param_type::FROM, param_type::RVS_HMAC, param_type::VIA_RVS];
        if i1.params.iter().any(|p| relay_params.contains(&p.ty())) {
            return Err(Error::Unexpected);
        }
        let mut relayed = i1.clone();
        relayed
            .params
            .push(Param::From(crate::wire::mapped(remote.ip())));
        add_mac(
            &mut relayed,
            self.profile,
            &keys.mac_out,
            param_type::RVS_HMAC,
            &[],
        );
        let (local, to) = (a.local, a.remote);
        tracing::debug!(client = %client, from = %remote, kind = %i1.packet_type, "relaying");
        self.stats.relayed += 1;
        self.transmit(local, to, &relayed.to_bytes());
        Ok(())
    }

    /// As a registered client: for an I1 relayed by our server, checks its RVS_HMAC and
    /// returns the initiator's address to answer, and the server's (for VIA_RVS).
    pub(super) fn relayed_from(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        i1: &HipRepr,
    ) -> Result<Option<(SocketAddr, SocketAddr)>, Error> {
        let Some(Param::From(from)) = i1.param(param_type::FROM) else {
            return Ok(None);
        };
        // Exactly one FROM, the relay's own (see `relay_i1`).
        if i1
            .params
            .iter()
            .filter(|p| p.ty() == param_type::FROM)
            .count()
            != 1
        {
            return Err(Error::Unexpected);
        }
        let server = self
            .assocs
            .values()
            .find(|a| a.remote == remote && self.relays_to_us(a))
            .ok_or(Error::Unexpected)?;
        let keys = server.keys.as_ref().ok_or(Error::Unexpected)?;
        check_mac(bytes, self.profile, &keys.mac_in, param_type::RVS_HMAC, &[])?;
        let ip = crate::wire::unmapped(*from);
        Ok(Some((SocketAddr::new(ip, local.port()), remote)))
    }
}

fn old_refresh(grants: &HashMap<Hit, relay::RelayGrant>, server: &Hit) -> Option<Instant> {
    grants.get(server).and_then(|g| g.refresh_permissions)
}

/// A lifetime in RFC 8003's encoding: 2^((v − 64) / 8) seconds, 0 for zero.
pub fn registration_lifetime(v: u8) -> Duration {
    if v == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(2f64.powf((f64::from(v) - 64.0) / 8.0))
}
