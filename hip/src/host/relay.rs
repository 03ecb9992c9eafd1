//! Relaying for hosts behind NATs (RFC 9028 §4.1, §4.5, §4.12): the server side (a control
//! and data relay any reachable host can run) and the client's wrapping and unwrapping.
//!
//! A client registers for RELAY_UDP_HIP and RELAY_UDP_ESP like for rendezvous; the grant
//! carries REG_FROM, the address the server saw it at (its server-reflexive candidate).
//! From then on:
//!
//! * any HIP packet that reaches the server for the client's HIT is passed on to it with
//!   RELAY_FROM (the sender's address and port) and RELAY_HMAC keyed with the registration
//!   association's integrity key;
//! * the client answers such a peer through the server: RELAY_TO names the peer's address,
//!   RELAY_HMAC proves the packet comes from the registered client, and the server strips
//!   the HMAC and sends the packet on. The peer's association simply points at the server;
//! * ESP between the two goes through the server too, once the client has sent it a
//!   PEER_PERMISSION for that association: the server forwards ESP carrying the client's
//!   inbound SPI that comes from the peer's address to the client, and ESP carrying the
//!   peer's inbound SPI that comes from the client to the peer.
//!
//! Our one deviation: the relayed address is the server's own HIP port, not a port of its
//! own per client. ESP is told apart by SPI (the server refuses a permission whose SPIs
//! clash with one it forwards already), so a server needs one socket whatever its number of
//! clients. docs/PROTOCOL.md records this and the other choices.
//!
//! Every forwarded byte counts against the client's quotas (`RelayQuota`).

use super::*;
use crate::wire::{PeerPermission, TransportAddress};

/// Registration type RELAY_UDP_HIP (RFC 9028 §5.9): the control relay.
pub const REG_TYPE_RELAY_UDP_HIP: u8 = 2;
/// Registration type RELAY_UDP_ESP (RFC 9028 §5.9): the data relay.
pub const REG_TYPE_RELAY_UDP_ESP: u8 = 3;

/// A permission not used or renewed for this long is dropped (RFC 9028 §4.12.1: 5 min).
pub(super) const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// The byte quota's period.
pub(super) const BUDGET_PERIOD: Duration = Duration::from_secs(3600);
/// Clients renew their permissions this often (RFC 9028 §4.12.1 refreshes at 4 min... we
/// renew at four fifths of the lifetime as for registrations).
pub(super) const PERMISSION_REFRESH: Duration = Duration::from_secs(240);

/// A client registered with us for relaying.
pub(crate) struct RelayClient {
    pub ends: Instant,
    pub data: bool,
    pub permissions: Vec<Permission>,
    tokens: u64,
    filled_at: Instant,
    used: u64,
    /// The byte budget is per BUDGET_PERIOD, a period the server sets (a client chooses
    /// its lifetime, so a budget per lifetime would be the client's to shorten).
    period_ends: Instant,
}

/// One PEER_PERMISSION as the server keeps it.
pub(crate) struct Permission {
    pub peer: SocketAddr,
    /// The client's inbound SPI (ESP from the peer to the client carries it).
    pub ispi: u32,
    /// The peer's inbound SPI (ESP from the client to the peer carries it).
    pub ospi: u32,
    pub expires: Instant,
}

/// A relay server that granted us its service.
#[derive(Debug, Clone)]
pub(crate) struct RelayGrant {
    /// Our address as the server saw it (REG_FROM).
    pub reflexive: Option<SocketAddr>,
    /// RELAY_UDP_ESP granted: the server's address is our relayed candidate.
    pub data: bool,
    pub refresh_permissions: Option<Instant>,
    /// The UPDATE ID and permissions of the last permission UPDATE we sent: while it is
    /// outstanding, a new permission goes out at once in a new UPDATE that carries these
    /// too (and replaces it), rather than an RTT later.
    pub in_flight: Option<(u32, Vec<(Hit, PeerPermission)>)>,
}

/// Permissions one UPDATE carries at most when it replaces an outstanding one (about
/// 1,100 bytes: the UPDATE stays below a path's MTU). Past that, new ones wait for the ACK.
const MAX_CARRIED: usize = 20;

/// Counters of the relay server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub control_relayed: u64,
    pub esp_relayed: u64,
    pub bytes_relayed: u64,
    /// Packets refused: no registration, no permission, a bad RELAY_HMAC.
    pub refused: u64,
    /// Packets refused because a client's rate or byte quota was spent.
    pub over_quota: u64,
    /// PEER_PERMISSIONs refused (quota, clashing SPI).
    pub permissions_refused: u64,
}

impl RelayClient {
    pub fn new(now: Instant, ends: Instant, data: bool, quota: &RelayQuota) -> RelayClient {
        RelayClient {
            ends,
            data,
            permissions: Vec::new(),
            tokens: quota.rate,
            filled_at: now,
            used: 0,
            period_ends: now + BUDGET_PERIOD,
        }
    }

    /// Spends `len` bytes of the client's rate and byte budget; false if either is out.
    fn charge(&mut self, now: Instant, len: usize, quota: &RelayQuota) -> bool {
        if now >= self.period_ends {
            self.used = 0;
            self.period_ends = now + BUDGET_PERIOD;
        }
        let elapsed = now.saturating_duration_since(self.filled_at);
        let refill = (elapsed.as_secs_f64() * quota.rate as f64) as u64;
        if refill > 0 {
            self.tokens = self.tokens.saturating_add(refill).min(quota.rate);
            self.filled_at = now;
        }
        let len = len as u64;
        if self.tokens < len || self.used.saturating_add(len) > quota.bytes {
            return false;
        }
        self.tokens -= len;
        self.used += len;
        true
    }

    /// A renewal extends the registration; the byte budget is untouched (see
    /// `period_ends`).
    pub fn renew(&mut self, ends: Instant, data: bool) {
        self.ends = ends;
        self.data = data;
    }
}

impl Host {
    /// The hosts registered with us for relaying.
    pub fn relay_clients(&self) -> impl Iterator<Item = &Hit> + '_ {
        self.relay_clients.keys()
    }

    pub fn relay_stats(&self) -> RelayStats {
        self.relay_stats
    }

    /// The relay servers that granted us their service: each one's HIT, the address we
    /// reach it at (where others reach us through it), and where it sees us (REG_FROM).
    pub fn relays(&self) -> Vec<(Hit, SocketAddr, Option<SocketAddr>)> {
        let mut relays: Vec<_> = self
            .relay_grants
            .iter()
            .filter_map(|(server, grant)| {
                let a = self.assocs.get(server)?;
                (a.state == AssocState::Established).then_some((*server, a.remote, grant.reflexive))
            })
            .collect();
        relays.sort();
        relays
    }

    /// Whether `client` holds a live relay registration with us.
    fn relay_client(&self, now: Instant, client: &Hit) -> bool {
        self.relay_clients.get(client).is_some_and(|c| now < c.ends)
    }

    /// As a relay server: a packet for a registered client goes on to it with RELAY_FROM and
    /// RELAY_HMAC. True if `packet` was for a client of ours (relayed or refused).
    pub(super) fn relay_to_client(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        packet: &HipRepr,
    ) -> Option<Result<(), Error>> {
        let client = packet.receiver_hit;
        if !self.relay_client(now, &client) {
            return None;
        }
        Some(self.relay_to_client_inner(now, remote, client, packet))
    }

    fn relay_to_client_inner(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        client: Hit,
        packet: &HipRepr,
    ) -> Result<(), Error> {
        // The sender must not pass for a relay or vouch for an address (see `relay_i1`).
        let relay_params = [
            param_type::FROM,
            param_type::RVS_HMAC,
            param_type::RELAY_FROM,
            param_type::RELAY_TO,
            param_type::RELAY_HMAC,
        ];
        if packet.params.iter().any(|p| relay_params.contains(&p.ty())) {
            self.relay_stats.refused += 1;
            return Err(Error::Unexpected);
        }
        let a = self.assocs.get(&client).ok_or(Error::UnknownPeer(client))?;
        let keys = a.keys.as_ref().ok_or(Error::Unexpected)?;
        if !matches!(a.state, AssocState::Established | AssocState::R2Sent) {
            return Err(Error::Unexpected);
        }
        let (local, to) = (a.local, a.remote);
        let mut relayed = packet.clone();
        relayed
            .params
            .push(Param::RelayFrom(TransportAddress::udp(remote)));
        add_mac(
            &mut relayed,
            self.profile,
            &keys.mac_out,
            param_type::RELAY_HMAC,
            &[],
        );
        tracing::debug!(client = %client, from = %remote, kind = %packet.packet_type, "relaying to a client");
        self.relay_send(now, client, (local, to), &relayed)
    }

    /// Sends a relayed control packet on for `client`, within its quota.
    fn relay_send(
        &mut self,
        now: Instant,
        client: Hit,
        (local, to): (SocketAddr, SocketAddr),
        packet: &HipRepr,
    ) -> Result<(), Error> {
        let bytes = packet.to_bytes();
        self.charge_client(now, client, bytes.len())?;
        self.relay_stats.control_relayed += 1;
        self.push_transmit(Transmit {
            local,
            remote: to,
            payload: marked(&bytes),
        });
        Ok(())
    }

    /// As a relay server: a registered client's packet with RELAY_TO goes to that address,
    /// once its RELAY_HMAC shows it really is the client's.
    pub(super) fn relay_from_client(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        bytes: &[u8],
        packet: &HipRepr,
    ) -> Result<(), Error> {
        let Some(Param::RelayTo(to)) = packet.param(param_type::RELAY_TO) else {
            return Err(Error::Unexpected);
        };
        let client = packet.sender_hit;
        let known = self.relay_client(now, &client)
            && self
                .assocs
                .get(&client)
                .is_some_and(|a| a.remote == remote && a.keys.is_some());
        if !known {
            tracing::debug!(sender = %client, from = %remote, "RELAY_TO from a host not registered with us");
            self.relay_stats.refused += 1;
            return Err(Error::UnknownPeer(client));
        }
        let a = &self.assocs[&client];
        let local = a.local;
        let keys = a.keys.as_ref().ok_or(Error::Unexpected)?;
        if let Err(e) = check_mac(
            bytes,
            self.profile,
            &keys.mac_in,
            param_type::RELAY_HMAC,
            &[],
        ) {
            self.relay_stats.refused += 1;
            return Err(e);
        }
        let to = to.socket();
        if !self.relayable(to) {
            self.relay_stats.refused += 1;
            return Err(Error::Unexpected);
        }
        let mut forwarded = packet.clone();
        forwarded
            .params
            .retain(|p| p.ty() != param_type::RELAY_HMAC);
        tracing::debug!(client = %client, to = %to, kind = %packet.packet_type, "relaying from a client");
        self.relay_send(now, client, (local, to), &forwarded)
    }

    /// Whether we relay to `to` at all (see [`relayable`]).
    fn relayable(&self, to: SocketAddr) -> bool {
        relayable(to, &self.local_addresses, &self.config.relay_private)
    }

    fn charge_client(&mut self, now: Instant, client: Hit, len: usize) -> Result<(), Error> {
        let quota = self.config.relay_quota;
        let c = self
            .relay_clients
            .get_mut(&client)
            .ok_or(Error::UnknownPeer(client))?;
        if !c.charge(now, len, &quota) {
            self.relay_stats.over_quota += 1;
            return Err(Error::RateLimited);
        }
        self.relay_stats.bytes_relayed += len as u64;
        Ok(())
    }

    /// As a relay server: where ESP for an SPI that is not ours goes, if a permission
    /// covers it from `remote`.
    pub(super) fn relay_esp(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        spi: u32,
        len: usize,
    ) -> Option<SocketAddr> {
        let quota = self.config.relay_quota;
        let &(client, inbound) = self.relay_spis.get(&spi)?;
        let client_addr = self.assocs.get(&client).map(|a| a.remote);
        let c = self.relay_clients.get_mut(&client)?;
        let refused = &mut self.relay_stats;
        let Some(client_addr) = client_addr.filter(|_| now < c.ends && c.data) else {
            refused.refused += 1;
            return None;
        };
        let Some(p) = c.permissions.iter_mut().find(|p| {
            now < p.expires
                && if inbound {
                    p.ispi == spi
                } else {
                    p.ospi == spi
                }
        }) else {
            refused.refused += 1;
            return None;
        };
        let to = match inbound {
            true if remote == p.peer => client_addr,
            false if remote == client_addr => p.peer,
            _ => {
                refused.refused += 1;
                return None;
            }
        };
        p.expires = now + PERMISSION_LIFETIME;
        if !c.charge(now, len, &quota) {
            refused.over_quota += 1;
            return None;
        }
        refused.esp_relayed += 1;
        refused.bytes_relayed += len as u64;
        Some(to)
    }

    /// As a relay server: installs the PEER_PERMISSIONs of a client's UPDATE. Refused ones
    /// (quota, an SPI another permission uses) are counted and left out; the client learns
    /// of it when its relayed ESP goes nowhere, as with any lost permission.
    pub(super) fn install_permissions(&mut self, now: Instant, client: Hit, update: &HipRepr) {
        let quota = self.config.relay_quota;
        let Some(c) = self.relay_clients.get_mut(&client) else {
            return;
        };
        if !c.data || now >= c.ends {
            return;
        }
        c.permissions.retain(|p| now < p.expires);
        let spis = &mut self.relay_spis;
        spis.retain(|_, (hit, _)| *hit != client);
        for p in &c.permissions {
            spis.insert(p.ispi, (client, true));
            spis.insert(p.ospi, (client, false));
        }
        for param in &update.params {
            let Param::PeerPermission(pp) = param else {
                continue;
            };
            let peer = pp.peer();
            // A newer permission for the same peer replaces the old one (new SPIs after a
            // rekey, a new address after the peer moved).
            // A repeat (same inbound SPI, the peer maybe elsewhere now) replaces the old
            // permission. After a rekey the old SPIs stay until unused for the lifetime,
            // for packets in flight — unless the quota needs their place.
            let same_peer_at_quota = (c.permissions.len() >= quota.permissions)
                .then(|| c.permissions.iter().position(|p| p.peer == peer))
                .flatten();
            if let Some(i) = c
                .permissions
                .iter()
                .position(|p| p.ispi == pp.ispi)
                .or(same_peer_at_quota)
            {
                let old = c.permissions.remove(i);
                spis.remove(&old.ispi);
                spis.remove(&old.ospi);
            }
            let clash = |spi: u32| spis.get(&spi).is_some_and(|(hit, _)| *hit != client);
            let relayable = relayable(peer, &self.local_addresses, &self.config.relay_private);
            if !relayable
                || c.permissions.len() >= quota.permissions
                || clash(pp.ispi)
                || clash(pp.ospi)
                || pp.ispi == pp.ospi
            {
                self.relay_stats.permissions_refused += 1;
                tracing::info!(client = %client, peer = %peer, "relay permission refused");
                continue;
            }
            spis.insert(pp.ispi, (client, true));
            spis.insert(pp.ospi, (client, false));
            c.permissions.push(Permission {
                peer,
                ispi: pp.ispi,
                ospi: pp.ospi,
                expires: now + PERMISSION_LIFETIME,
            });
            tracing::debug!(client = %client, peer = %peer, "relay permission installed");
        }
    }

    /// Drops a client's registration and permissions (expiry, cancellation, the
    /// association ended).
    pub(super) fn drop_relay_client(&mut self, client: &Hit) {
        if self.relay_clients.remove(client).is_some() {
            self.relay_spis.retain(|_, (hit, _)| hit != client);
        }
    }

    // ---- the client side ------------------------------------------------------------

    /// A packet carrying RELAY_FROM must come from a relay server that granted us its
    /// service, with a RELAY_HMAC keyed for us: then it is the sender's address and port.
    pub(super) fn relayed_origin(
        &self,
        remote: SocketAddr,
        bytes: &[u8],
        packet: &HipRepr,
    ) -> Result<Option<SocketAddr>, Error> {
        let mut froms = packet
            .params
            .iter()
            .filter(|p| p.ty() == param_type::RELAY_FROM);
        let Some(Param::RelayFrom(from)) = froms.next() else {
            return Ok(None);
        };
        if froms.next().is_some() {
            return Err(Error::Unexpected);
        }
        let server = self
            .assocs
            .values()
            .find(|a| a.remote == remote && self.relay_grants.contains_key(&a.peer_hit))
            .ok_or(Error::Unexpected)?;
        let keys = server.keys.as_ref().ok_or(Error::Unexpected)?;
        check_mac(
            bytes,
            self.profile,
            &keys.mac_in,
            param_type::RELAY_HMAC,
            &[],
        )?;
        Ok(Some(from.socket()))
    }

    /// The address a packet to `remote` must be relayed to, if `remote` is a relay server
    /// of ours standing in for that peer, with the key that proves it is ours.
    fn relay_wrapping(
        &self,
        remote: SocketAddr,
        receiver: Option<Hit>,
    ) -> Option<(SocketAddr, Zeroizing<Vec<u8>>)> {
        let origin = match self.answering_via {
            Some((server, origin)) if server == remote => origin,
            _ => {
                let a = self.assocs.get(&receiver?)?;
                a.relay_to.filter(|_| a.remote == remote)?
            }
        };
        let server = self
            .assocs
            .values()
            .find(|a| a.remote == remote && self.relay_grants.contains_key(&a.peer_hit))?;
        Some((origin, server.keys.as_ref()?.mac_out.clone()))
    }

    /// The UDP payload for a HIP packet to `remote`: relayed (RELAY_TO, RELAY_HMAC) when
    /// `remote` is our relay server standing in for the receiver.
    pub(super) fn wrap_for(&self, remote: SocketAddr, hip: &[u8]) -> Vec<u8> {
        let receiver = hip.get(24..40).and_then(|b| b.try_into().ok()).map(Hit);
        self.wrap_to(remote, hip, receiver)
    }

    /// As [`wrap_for`](Self::wrap_for), for a packet whose next hop is `peer` rather than
    /// its receiver (HIP BONE).
    pub(super) fn wrap_to(&self, remote: SocketAddr, hip: &[u8], peer: Option<Hit>) -> Vec<u8> {
        let Some((origin, key)) = self.relay_wrapping(remote, peer) else {
            return marked(hip);
        };
        let Ok(mut repr) = HipRepr::parse(hip) else {
            return marked(hip);
        };
        repr.params
            .push(Param::RelayTo(TransportAddress::udp(origin)));
        add_mac(&mut repr, self.profile, &key, param_type::RELAY_HMAC, &[]);
        marked(&repr.to_bytes())
    }

    /// After a relayed packet from `peer` was accepted: the relay vouches for where the peer
    /// is, so replies follow it (a NAT may have given it a new port).
    pub(super) fn note_relayed(&mut self, server: SocketAddr, origin: SocketAddr, peer: Hit) {
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        a.relayed_origin = Some((server, origin));
        // The side the exchange reached through its relay speaks through it; the initiator
        // just sends to the relay's address, which passes everything on by receiver HIT.
        if a.initiator || a.remote != server || a.relay_to == Some(origin) {
            return;
        }
        if a.relay_to.is_some() {
            tracing::info!(peer = %peer, to = %origin, "relayed peer seen at a new address");
        }
        a.relay_to = Some(origin);
        a.permission = None;
    }

    /// The association moved (a failover, a check): through our relay server it speaks
    /// with RELAY_TO where the server last saw the peer; anywhere else, directly.
    pub(super) fn follow_relay(&mut self, now: Instant, peer: Hit) {
        let Some(a) = self.assocs.get(&peer) else {
            return;
        };
        let relayed = self.path_kind(a) != ice::PathKind::Direct;
        let via_our_relay = self.relay_server_at(a.remote).is_some_and(|s| s != peer);
        let recheck = self.config.recheck_interval;
        let Some(a) = self.assocs.get_mut(&peer) else {
            return;
        };
        // Where another server saw the peer is no address to give this one: a symmetric NAT
        // maps the peer to another port toward each. Without one, we send to the server
        // unwrapped: it passes the packet on to its client by receiver HIT, and the peer's
        // next fresh packet through it tells us where the server sees it.
        let server = a.remote;
        a.relay_to = a
            .relayed_origin
            .filter(|&(s, _)| s == server && via_our_relay && !a.initiator)
            .map(|(_, origin)| origin);
        a.permission = None;
        // Back on a relay (the direct path broke): look for a direct path again later.
        if let Some(ice) = a.ice.as_mut().filter(|_| relayed && !recheck.is_zero()) {
            ice.selected = None;
            ice.recheck = Some(now + recheck);
        }
    }

    /// A path fell silent: our NAT may have given us a new port. An UPDATE (with a fresh
    /// ID, which a replay cannot fake) to each relay server makes it check and follow our
    /// new address, so that what it relays reaches us again.
    pub(super) fn refresh_relays(&mut self, now: Instant, silent: Hit) {
        let servers: Vec<Hit> = self.relay_grants.keys().copied().collect();
        for server in servers.into_iter().filter(|s| *s != silent) {
            let idle = self
                .assocs
                .get(&server)
                .is_some_and(|s| s.state == AssocState::Established && s.pending_update.is_none());
            if idle && self.registered_with.contains_key(&server) {
                self.registered_with.insert(server, now);
                self.registration_timer(now, server);
            }
        }
    }

    /// The PEER_PERMISSION an association relayed through `server` needs, if the server
    /// has not got it yet.
    pub(super) fn wanted_permission(a: &Assoc) -> Option<PeerPermission> {
        let peer = a.relay_to?;
        let keys = a.keys.as_ref()?;
        a.esp.as_ref()?;
        let pp = PeerPermission {
            rport: a.remote.port(),
            pport: peer.port(),
            protocol: 17,
            reserved: [0; 3],
            raddress: crate::wire::mapped(a.remote.ip()),
            paddress: crate::wire::mapped(peer.ip()),
            ospi: keys.esp.spi_out,
            ispi: keys.esp.spi_in,
        };
        Some(pp)
    }

    /// Sends the relay server at the other end of association `server` the permissions
    /// its relayed associations need (all of them when `refresh`), in one UPDATE, unless
    /// one is outstanding.
    pub(super) fn sync_permissions(&mut self, now: Instant, server: Hit, refresh: bool) {
        let Some(grant) = self.relay_grants.get(&server) else {
            return;
        };
        if !grant.data {
            return;
        }
        let Some(s) = self.assocs.get(&server) else {
            return;
        };
        if s.state != AssocState::Established {
            return;
        }
        // An outstanding UPDATE: if it is our last permission UPDATE, a new one replaces it
        // and carries its permissions as well (the server installs each again, unchanged;
        // an ACK of the old one is then ignored). The relay must know a new association's
        // permission before the peer's first ESP arrives, which an RTT's wait loses.
        let carried = match (s.pending_update.as_ref().map(|p| p.seq), &grant.in_flight) {
            (None, _) => Vec::new(),
            (Some(seq), Some((sent, list))) if *sent == seq && !refresh => list.clone(),
            (Some(_), _) => return,
        };
        let server_addr = s.remote;
        let wanted: Vec<(Hit, PeerPermission)> = self
            .assocs
            .values()
            .filter(|a| a.remote == server_addr && a.peer_hit != server)
            .filter_map(|a| {
                let pp = Self::wanted_permission(a)?;
                (refresh || a.permission != Some(pp)).then_some((a.peer_hit, pp))
            })
            .take(self.config.relay_quota.permissions)
            .collect();
        if wanted.is_empty() || carried.len() + wanted.len() > MAX_CARRIED && !carried.is_empty() {
            return;
        }
        let mut wanted = wanted;
        for (peer, pp) in carried {
            if !wanted.iter().any(|(p, _)| *p == peer) {
                wanted.push((peer, pp));
            }
        }
        for (peer, pp) in &wanted {
            if let Some(a) = self.assocs.get_mut(peer) {
                a.permission = Some(*pp);
            }
        }
        let Some(s) = self.assocs.get_mut(&server) else {
            return;
        };
        let seq = s.next_update_id;
        s.next_update_id = s.next_update_id.wrapping_add(1);
        // The refresh timer restarts only when everything was sent; a partial send (a
        // new association) must not push back the refresh of the others.
        if let Some(g) = self.relay_grants.get_mut(&server) {
            if refresh || g.refresh_permissions.is_none() {
                g.refresh_permissions = Some(now + PERMISSION_REFRESH);
            }
        }
        tracing::debug!(server = %server, permissions = wanted.len(), "sending relay permissions");
        let mut params = vec![Param::Seq(seq)];
        params.extend(wanted.iter().map(|(_, pp)| Param::PeerPermission(*pp)));
        if let Some(g) = self.relay_grants.get_mut(&server) {
            g.in_flight = Some((seq, wanted));
        }
        self.send_update(now, server, params, Some(seq));
    }

    /// The relay server behind association `peer`, if `peer` relays for us.
    pub(super) fn permissions_due(&self, peer: &Hit) -> Option<Instant> {
        self.relay_grants.get(peer)?.refresh_permissions
    }
}

/// A relay sends on behalf of its clients only to addresses that can be a peer: never to
/// loopback, unspecified, multicast or broadcast addresses, nor to itself — otherwise any
/// client could use it as a proxy into the relay's own host or a broadcast domain — and to
/// a private address ([`crate::private_address`]) only within `private`, the ranges its
/// operator opened: otherwise a client could reach hosts on the relay's own site.
fn relayable(to: SocketAddr, ours: &[SocketAddr], private: &[crate::Prefix]) -> bool {
    let ip = to.ip().to_canonical();
    let special = match ip {
        // Loopback, unspecified (0/8), multicast, reserved (240/4), broadcast, link-local.
        IpAddr::V4(v4) => {
            let first = v4.octets()[0];
            v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local()
                || first == 0
                || first >= 240
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.segments()[0] & 0xffc0 == 0xfe80
        }
    };
    let allowed = !crate::private_address(ip) || private.iter().any(|p| p.contains(ip));
    to.port() != 0 && !special && allowed && !ours.iter().any(|a| a.ip() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::EdX25519;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// RELAY_HMAC over a client's relayed UPDATE: the covered bytes (header with the
    /// length cut at RELAY_HMAC, checksum zero, SEQ, RELAY_TO) and the KMAC128 value,
    /// computed independently with pycryptodome:
    /// `KMAC128.new(key=bytes([0x42]*32), data=covered, mac_len=32, custom=b"").hexdigest()`.
    #[test]
    fn relay_hmac_known_answer() {
        let repr = HipRepr {
            next_header: 59,
            packet_type: PacketType::Update,
            version: 2,
            controls: 0,
            sender_hit: Hit([
                0x20, 0x01, 0x00, 0x25, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
            ]),
            receiver_hit: Hit([
                0x20, 0x01, 0x00, 0x25, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1,
            ]),
            params: vec![
                Param::Seq(7),
                Param::RelayTo(TransportAddress::udp("203.0.113.7:40000".parse().unwrap())),
            ],
        };
        let covered = repr.covered_bytes(param_type::RELAY_HMAC, &[]);
        assert_eq!(hex(&covered), COVERED);
        let mut mac = [0u8; 32];
        EdX25519.mac(&[0x42; 32], &covered, &mut mac);
        assert_eq!(hex(&mac), MAC);
    }

    const COVERED: &str = "3b08102100000000200100250102030405060708090a0b0c200100250c0b0a0908070605040302010181000400000007fa0200149c40110000000000000000000000ffffcb007107";
    const MAC: &str = "13d7c627a58dd89354e92960e7a563afc07acdc359e083d4954bef99f11f2a50";

    #[test]
    fn relays_only_to_possible_peers() {
        let ours: Vec<SocketAddr> = vec!["203.0.113.1:10500".parse().unwrap()];
        let ok = |s: &str| relayable(s.parse().unwrap(), &ours, &[]);
        assert!(ok("198.51.100.7:40000"));
        assert!(ok("[2001:db8::7]:40000"));
        assert!(!ok("127.0.0.1:22"));
        assert!(!ok("[::ffff:127.0.0.1]:22"));
        assert!(!ok("0.0.0.0:10500"));
        assert!(!ok("224.0.0.1:10500"));
        assert!(!ok("255.255.255.255:10500"));
        assert!(!ok("[ff02::1]:10500"));
        assert!(!ok("169.254.1.1:10500"));
        assert!(!ok("[fe80::1]:10500"));
        assert!(!ok("240.0.0.1:10500"));
        assert!(!ok("0.1.2.3:10500"));
        assert!(!ok("203.0.113.1:53"), "the relay itself");
        assert!(!ok("198.51.100.7:0"));
        for private in ["10.1.2.3:10500", "172.16.0.1:10500", "192.168.1.1:10500"] {
            assert!(!ok(private), "{private}");
        }
        assert!(!ok("100.64.0.1:10500"), "shared address space");
        assert!(!ok("[fd00::1]:10500"), "unique local");
        assert!(!ok("[::ffff:10.1.2.3]:10500"));
    }

    #[test]
    fn relays_to_private_ranges_only_where_opened() {
        let opened: Vec<crate::Prefix> = vec![
            "10.1.0.0/16".parse().unwrap(),
            "fd00:1::/32".parse().unwrap(),
        ];
        let ok = |s: &str| relayable(s.parse().unwrap(), &[], &opened);
        assert!(ok("10.1.2.3:10500"));
        assert!(ok("[::ffff:10.1.2.3]:10500"));
        assert!(ok("[fd00:1:2::3]:10500"));
        assert!(!ok("10.2.0.1:10500"));
        assert!(!ok("192.168.1.1:10500"));
        assert!(!ok("[fd00:2::3]:10500"));
        assert!(ok("198.51.100.7:40000"), "public addresses stay relayable");
        let everything: Vec<crate::Prefix> = vec!["0.0.0.0/0".parse().unwrap()];
        assert!(
            !relayable("127.0.0.1:22".parse().unwrap(), &[], &everything),
            "loopback never"
        );
    }

    #[test]
    fn quota_refills_by_the_second_and_the_byte_budget_does_not() {
        let now = Instant::now();
        let quota = RelayQuota {
            permissions: 1,
            rate: 10_000,
            bytes: 25_000,
        };
        let mut c = RelayClient::new(now, now + Duration::from_secs(60), true, &quota);
        assert!(c.charge(now, 6_000, &quota));
        assert!(
            !c.charge(now, 6_000, &quota),
            "the one-second burst is spent"
        );
        let later = now + Duration::from_millis(800);
        assert!(c.charge(later, 6_000, &quota), "refilled at 10 kB/s");
        let much_later = now + Duration::from_secs(10);
        assert!(c.charge(much_later, 9_000, &quota));
        assert!(
            !c.charge(much_later + Duration::from_secs(10), 9_000, &quota),
            "budget spent"
        );
        let renewal = much_later + Duration::from_secs(10);
        c.renew(renewal + Duration::from_secs(60), true);
        assert!(!c.charge(renewal, 9_000, &quota), "renewing buys nothing");
        let next_period = now + BUDGET_PERIOD;
        assert!(
            c.charge(next_period, 9_000, &quota),
            "a new period, a new budget"
        );
    }
}
