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

use super::*;

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
        self.wanted_registrations.insert(server);
        self.connect(now, server, local, locators)
    }

    /// True once `server` granted us the RENDEZVOUS service.
    pub fn registered_with(&self, server: &Hit) -> bool {
        self.registered_with.contains(server)
    }

    /// The hosts registered with us for rendezvous.
    pub fn rendezvous_clients(&self) -> impl Iterator<Item = &Hit> + '_ {
        self.rvs_clients.iter()
    }

    /// REG_INFO for our R1s, when we serve rendezvous.
    pub(super) fn reg_info(&self) -> Option<Param> {
        self.config.rendezvous_server.then(|| Param::RegInfo {
            min_lifetime: MIN_LIFETIME,
            max_lifetime: MAX_LIFETIME,
            types: vec![REG_TYPE_RENDEZVOUS],
        })
    }

    /// REG_REQUEST for the I2 to `peer`, if we want to register with it and its R1 offers
    /// rendezvous.
    pub(super) fn reg_request(&self, peer: &Hit, r1: &HipRepr) -> Option<Param> {
        let offered = matches!(r1.param(param_type::REG_INFO),
            Some(Param::RegInfo { types, .. }) if types.contains(&REG_TYPE_RENDEZVOUS));
        (offered && self.wanted_registrations.contains(peer)).then(|| Param::RegRequest {
            lifetime: self.config.registration_lifetime,
            types: vec![REG_TYPE_RENDEZVOUS],
        })
    }

    /// The server's answer to a REG_REQUEST in an I2 it accepted: REG_RESPONSE when it
    /// serves rendezvous (and the client is recorded), REG_FAILED "type unavailable" when
    /// it does not.
    pub(super) fn reg_answer(&mut self, peer: Hit, i2: &HipRepr) -> Option<Param> {
        let Some(Param::RegRequest { lifetime, types }) = i2.param(param_type::REG_REQUEST) else {
            return None;
        };
        if !types.contains(&REG_TYPE_RENDEZVOUS) {
            return None;
        }
        if !self.config.rendezvous_server {
            return Some(Param::RegFailed {
                failure: 1,
                types: vec![REG_TYPE_RENDEZVOUS],
            });
        }
        self.rvs_clients.insert(peer);
        tracing::info!(client = %peer, "rendezvous registration granted");
        Some(Param::RegResponse {
            lifetime: (*lifetime).clamp(MIN_LIFETIME, MAX_LIFETIME),
            types: vec![REG_TYPE_RENDEZVOUS],
        })
    }

    /// Notes a grant in an R2 we accepted.
    pub(super) fn reg_granted(&mut self, server: Hit, r2: &HipRepr) {
        if matches!(r2.param(param_type::REG_RESPONSE),
            Some(Param::RegResponse { types, .. }) if types.contains(&REG_TYPE_RENDEZVOUS))
        {
            self.registered_with.insert(server);
            if let Some(a) = self.assocs.get_mut(&server) {
                a.registration = true;
            }
            tracing::info!(server = %server, "registered for rendezvous");
            self.push_event(Event::Registered { server });
        }
    }

    /// As the rendezvous server: passes an I1 (or UPDATE) for a registered client on to it.
    pub(super) fn relay_i1(&mut self, remote: SocketAddr, i1: &HipRepr) -> Result<(), Error> {
        let client = i1.receiver_hit;
        let a = self.assocs.get(&client).ok_or(Error::UnknownPeer(client))?;
        let keys = a.keys.as_ref().ok_or(Error::Unexpected)?;
        if !matches!(a.state, AssocState::Established | AssocState::R2Sent) {
            return Err(Error::Unexpected);
        }
        let mut relayed = i1.clone();
        relayed.params.push(Param::From(mapped(remote.ip())));
        let covered = relayed.covered_bytes(param_type::RVS_HMAC, &[]);
        let mut mac = vec![0u8; self.profile.mac_len()];
        self.profile.mac(&keys.mac_out, &covered, &mut mac);
        relayed.params.push(Param::RvsHmac(mac));
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
        let server = self
            .assocs
            .values()
            .find(|a| a.remote == remote && self.registered_with.contains(&a.peer_hit))
            .ok_or(Error::Unexpected)?;
        let keys = server.keys.as_ref().ok_or(Error::Unexpected)?;
        check_mac(bytes, self.profile, &keys.mac_in, param_type::RVS_HMAC, &[])?;
        let ip = std::net::Ipv6Addr::from(*from);
        let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
        Ok(Some((SocketAddr::new(ip, local.port()), remote)))
    }
}

pub(super) fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}
