//! HIP BONE (RFC 6079, RFC 7086 §7): a base exchange with a host whose locator we do not
//! know, through the overlay.
//!
//! The I1 carries OVERLAY_ID, OVERLAY_TTL and an empty ROUTE_VIA (SYMMETRIC and
//! MUST_FOLLOW) and goes to an overlay neighbour, either as the exchange's only I1
//! ([`Host::connect_routed`]) or as a copy beside I1s to addresses that went unanswered
//! ([`Event::Unanswered`], [`Host::add_route`]). Each member on the way checks the
//! packet, lowers the TTL and appends its HIT to ROUTE_VIA; it passes it on to the
//! receiver if it has an association with it, else hands it to the embedder
//! ([`Event::Route`]), which picks the next hop by the overlay's routing and alone knows
//! who is a member ([`Host::forward_routed`]), or refuses it when no member has the HIT
//! ([`Host::refuse_routed`]: a NOTIFY back along the route). The receiver answers with
//! an R1 whose ROUTE_DST is that ROUTE_VIA reversed, so the R1 walks the same members
//! back; the R1 also carries the responder's candidates (LOCATOR_SET), and the initiator
//! sends its I2 to the best of them — through the responder's relay server if it has
//! one — instead of along the route. From there on the exchange is an ordinary one.
//!
//! Every hop is authenticated: a routed packet carries an RVS_HMAC keyed with the
//! association between the hop that sent it and the one that receives it, and each hop
//! replaces it with its own for the next. So only hosts with an association to us can
//! route through us, and the embedder decides whether they are members. RVS_HMAC follows
//! OVERLAY_TTL and ROUTE_VIA on the wire, so it covers what the hops change; the
//! signatures (HIP_SIGNATURE_2 of the R1) cover ROUTE_DST and the candidates.
//!
//! An R1 answering a routed I1 is bound to no address: the I2 comes by another path
//! than the I1, from an address the responder has not seen. Its puzzle is computed for
//! the unspecified address, which `check_solution` accepts too.

use super::*;
use crate::wire::{route_flags, Route, HEADER_LEN, MAX_ROUTE_HITS};

/// Overlay hops a routed packet may take: RELOAD's default initial TTL (RFC 6940 §6.3.2).
const OVERLAY_TTL: u16 = 100;

/// Flags of the routes we start: answers come back the same way, hop by hop (RFC 7086
/// §7).
const FLAGS: u16 = route_flags::SYMMETRIC | route_flags::MUST_FOLLOW;

/// Parameters a routed packet must not carry: those of a rendezvous or relay server,
/// whose meaning the hops would change or vouch for.
const RELAY_PARAMS: [u16; 5] = [
    param_type::FROM,
    param_type::VIA_RVS,
    param_type::RELAY_FROM,
    param_type::RELAY_TO,
    param_type::RELAY_HMAC,
];

/// The routing part of a routed packet that passed its hop's check.
#[derive(Debug, Clone)]
pub(super) struct Routed {
    /// The hops it took (ROUTE_VIA), first hop first.
    pub via: Vec<[u8; 16]>,
    /// The hop it came from: the last of `via`, or its sender.
    pub from: Hit,
}

impl Host {
    /// Starts a base exchange with `peer` through the overlay: the I1 goes to the overlay
    /// neighbour `first_hop` (we must have an association with it), which passes it on.
    pub fn connect_routed(
        &mut self,
        now: Instant,
        peer: Hit,
        first_hop: Hit,
    ) -> Result<AssocHandle, Error> {
        let overlay = self.config.overlay_id.clone().ok_or(Error::NoRoute)?;
        if peer == self.hit() || !peer.is_orchid() || first_hop == peer {
            return Err(Error::InvalidHit);
        }
        let (local, _, _) = self.hop(&first_hop)?;
        let i1 = self.routed_i1(overlay, peer, &first_hop)?;
        tracing::debug!(peer = %peer, via = %first_hop, "sending I1 through the overlay");
        self.begin_exchange(now, peer, local, Vec::new(), None, Some((first_hop, i1)))
    }

    /// Routes a copy of the I1 of our exchange with `peer` through the overlay neighbour
    /// `first_hop`, beside the I1s to its addresses (which went unanswered,
    /// [`Event::Unanswered`]); whichever R1 comes first goes on.
    pub fn add_route(&mut self, _now: Instant, peer: Hit, first_hop: Hit) -> Result<(), Error> {
        let overlay = self.config.overlay_id.clone().ok_or(Error::NoRoute)?;
        let busy = self
            .assocs
            .get(&peer)
            .is_none_or(|a| a.state != AssocState::I1Sent || a.last_sent.is_none());
        if busy || first_hop == peer {
            return Err(Error::Unexpected);
        }
        let i1 = self.routed_i1(overlay, peer, &first_hop)?;
        let (local, remote, _) = self.hop(&first_hop)?;
        tracing::debug!(peer = %peer, via = %first_hop, "routing a copy of the I1 through the overlay");
        self.transmit_to(first_hop, local, remote, &i1);
        if let Some(a) = self.assocs.get_mut(&peer) {
            a.routed_i1 = Some((first_hop, i1));
        }
        Ok(())
    }

    /// Our I1 to `peer` as it goes into the overlay through the neighbour `hop`.
    fn routed_i1(&self, overlay: Vec<u8>, peer: Hit, hop: &Hit) -> Result<Vec<u8>, Error> {
        let mut i1 = self.i1(peer, routing_params(overlay));
        self.hop_mac(hop, &mut i1)?;
        Ok(i1.to_bytes())
    }

    /// Passes on a routed packet that [`Event::Route`] handed over, to the overlay
    /// neighbour `next_hop`. Refused if `next_hop` is already on its route.
    pub fn forward_routed(
        &mut self,
        _now: Instant,
        packet: &[u8],
        next_hop: Hit,
    ) -> Result<(), Error> {
        let mut repr = HipRepr::parse(packet)?;
        let on_route = match repr.param(param_type::ROUTE_VIA) {
            Some(Param::RouteVia(r)) => r.hits.contains(&next_hop.0),
            _ => return Err(Error::MissingParam(param_type::ROUTE_VIA)),
        };
        if on_route || next_hop == repr.sender_hit || next_hop == self.hit() {
            self.stats.route_refused += 1;
            return Err(Error::NoRoute);
        }
        self.send_hop(next_hop, &mut repr)
    }

    /// A packet that carries OVERLAY_ID: checked as the hop it came from must have sent
    /// it; then handled if it is ours, or passed on.
    pub(super) fn on_routed(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        repr: &HipRepr,
        ours: bool,
    ) -> Result<(), Error> {
        let routed = match self.check_hop(bytes, repr) {
            Ok(r) => r,
            Err(e) => {
                self.stats.route_refused += 1;
                return Err(e);
            }
        };
        if ours {
            self.routed_in = Some(routed);
            let handled = self.dispatch(now, local, remote, bytes, repr);
            self.routed_in = None;
            return handled;
        }
        self.pass_on(now, repr, routed)
    }

    /// Lowers the TTL, appends us to ROUTE_VIA and sends the packet to its next hop: the
    /// following hop of its ROUTE_DST, or the receiver when we are the last; without a
    /// ROUTE_DST, the receiver if we have an association with it, else whichever hop the
    /// embedder picks (`Event::Route`).
    fn pass_on(&mut self, now: Instant, repr: &HipRepr, routed: Routed) -> Result<(), Error> {
        let me = self.hit();
        let mut out = repr.clone();
        out.params.retain(|p| p.ty() != param_type::RVS_HMAC);
        let mut hops_left = 0;
        for p in &mut out.params {
            match p {
                Param::OverlayTtl { ttl, .. } => {
                    hops_left = *ttl;
                    *ttl = ttl.saturating_sub(1);
                }
                Param::RouteVia(r) => r.hits.push(me.0),
                _ => {}
            }
        }
        if hops_left == 0 {
            self.stats.route_refused += 1;
            self.refuse(now, repr, NotifyType::OverlayTtlExceeded)?;
            return Err(Error::OverlayTtlExceeded);
        }
        if routed.via.len() >= MAX_ROUTE_HITS || routed.via.contains(&me.0) || repr.sender_hit == me
        {
            self.stats.route_refused += 1;
            return Err(Error::NoRoute);
        }
        let next = match repr.param(param_type::ROUTE_DST) {
            Some(Param::RouteDst(dst)) => match dst.hits.iter().position(|h| *h == me.0) {
                Some(at) => Some(dst.hits.get(at + 1).map_or(repr.receiver_hit, |h| Hit(*h))),
                None => {
                    self.stats.route_refused += 1;
                    return Err(Error::NoRoute);
                }
            },
            _ => {
                let receiver = repr.receiver_hit;
                self.hop(&receiver).is_ok().then_some(receiver)
            }
        };
        self.stats.routed += 1;
        match next {
            Some(next) => self.send_hop(next, &mut out),
            None => {
                self.push_event(Event::Route {
                    from: routed.from,
                    receiver: repr.receiver_hit,
                    packet: out.to_bytes(),
                });
                Ok(())
            }
        }
    }

    /// What a routed packet must be to be taken from the hop it came from: our overlay's,
    /// an I1, an R1 or a NOTIFY of a hop that could not pass one on, one of each routing parameter and no relay's, a hop we have an
    /// association with, and that hop's RVS_HMAC.
    fn check_hop(&self, bytes: &[u8], repr: &HipRepr) -> Result<Routed, Error> {
        let overlay = self.config.overlay_id.as_deref().ok_or(Error::NoRoute)?;
        let kinds = [PacketType::I1, PacketType::R1, PacketType::Notify];
        if !kinds.contains(&repr.packet_type) {
            return Err(Error::Unexpected);
        }
        let count = |ty: u16| repr.params.iter().filter(|p| p.ty() == ty).count();
        let once = [
            param_type::OVERLAY_ID,
            param_type::OVERLAY_TTL,
            param_type::ROUTE_VIA,
            param_type::RVS_HMAC,
        ];
        if once.iter().any(|&t| count(t) != 1)
            || count(param_type::ROUTE_DST) > 1
            || RELAY_PARAMS.iter().any(|&t| count(t) != 0)
        {
            return Err(Error::MissingParam(param_type::ROUTE_VIA));
        }
        match repr.param(param_type::OVERLAY_ID) {
            Some(Param::OverlayId(id)) if id.as_slice() == overlay => {}
            _ => return Err(Error::NoRoute),
        }
        let Some(Param::RouteVia(via)) = repr.param(param_type::ROUTE_VIA) else {
            return Err(Error::MissingParam(param_type::ROUTE_VIA));
        };
        let from = via.hits.last().map_or(repr.sender_hit, |h| Hit(*h));
        let a = self
            .assocs
            .get(&from)
            .filter(|a| matches!(a.state, AssocState::Established | AssocState::R2Sent))
            .ok_or(Error::UnknownPeer(from))?;
        let keys = a.keys.as_ref().ok_or(Error::UnknownPeer(from))?;
        check_mac(bytes, self.profile, &keys.mac_in, param_type::RVS_HMAC, &[])?;
        Ok(Routed {
            via: via.hits.clone(),
            from,
        })
    }

    /// Tells the sender of a routed packet that [`Event::Route`] handed over that nobody
    /// takes it further: the receiver is no member we know of (the embedder found us
    /// responsible for its HIT, RFC 6028's UNKNOWN_NEXT_HOP).
    pub fn refuse_routed(&mut self, now: Instant, packet: &[u8]) -> Result<(), Error> {
        let repr = HipRepr::parse(packet)?;
        self.stats.route_refused += 1;
        self.refuse(now, &repr, NotifyType::UnknownNextHop)
    }

    /// A signed NOTIFY of `kind` to the sender of the routed `packet`, back along its
    /// route, quoting its header (RFC 6028 §5, RFC 6079 §6.2). Only I1s are answered so
    /// (a NOTIFY about a NOTIFY could go round for ever), within `notify_rate`.
    fn refuse(&mut self, now: Instant, packet: &HipRepr, kind: NotifyType) -> Result<(), Error> {
        let overlay = self.config.overlay_id.clone().ok_or(Error::NoRoute)?;
        if packet.packet_type != PacketType::I1 || !self.notify_allowed(now) {
            return Ok(());
        }
        let me = self.hit();
        let Some(Param::RouteVia(via)) = packet.param(param_type::ROUTE_VIA) else {
            return Err(Error::MissingParam(param_type::ROUTE_VIA));
        };
        let back: Vec<[u8; 16]> = via
            .hits
            .iter()
            .rev()
            .filter(|h| **h != me.0)
            .copied()
            .collect();
        let first = back.first().map_or(packet.sender_hit, |h| Hit(*h));
        let header = packet.to_bytes();
        let mut params = vec![
            Param::HostId(self.identity.public().host_id()),
            Param::Notification(Notification {
                reserved: 0,
                kind,
                data: header[..HEADER_LEN.min(header.len())].to_vec(),
            }),
            Param::OverlayId(overlay),
        ];
        if !back.is_empty() {
            params.push(Param::RouteDst(Route {
                flags: FLAGS,
                reserved: 0,
                hits: back,
            }));
        }
        let mut notify = HipRepr {
            next_header: 59,
            packet_type: PacketType::Notify,
            version: 2,
            controls: 0,
            sender_hit: me,
            receiver_hit: packet.sender_hit,
            params,
        };
        add_signature(&mut notify, &self.identity, param_type::HIP_SIGNATURE);
        notify.params.push(Param::OverlayTtl {
            ttl: OVERLAY_TTL,
            reserved: 0,
        });
        notify.params.push(Param::RouteVia(Route::new(FLAGS)));
        self.stats.notify_sent += 1;
        self.send_hop(first, &mut notify)
    }

    /// A NOTIFY routed to us: a hop could not pass on the I1 of a routed exchange of ours,
    /// which then gives up at once rather than after its retransmissions.
    pub(super) fn route_failed(&mut self, now: Instant, n: &Notification) {
        let error = match n.kind {
            NotifyType::UnknownNextHop => Error::NoRoute,
            NotifyType::OverlayTtlExceeded => Error::OverlayTtlExceeded,
            _ => return,
        };
        let Some(peer) = n.data.get(24..40).and_then(|b| b.try_into().ok()).map(Hit) else {
            return;
        };
        let Some(a) = self
            .assocs
            .get_mut(&peer)
            .filter(|a| a.state == AssocState::I1Sent)
        else {
            return;
        };
        if a.last_sent.is_none() {
            self.fail_exchange(now, peer, error);
        } else {
            // Only the copy was refused: the I1s to the peer's addresses go on.
            a.routed_i1 = None;
        }
    }

    /// Where an overlay neighbour is, and the key that proves a hop's packet to it.
    pub(super) fn hop(&self, peer: &Hit) -> Result<(SocketAddr, SocketAddr, &[u8]), Error> {
        let a = self
            .assocs
            .get(peer)
            .filter(|a| matches!(a.state, AssocState::Established | AssocState::R2Sent))
            .ok_or(Error::UnknownPeer(*peer))?;
        let keys = a.keys.as_ref().ok_or(Error::UnknownPeer(*peer))?;
        Ok((a.local, a.remote, &keys.mac_out))
    }

    fn hop_mac(&self, hop: &Hit, repr: &mut HipRepr) -> Result<(), Error> {
        let (_, _, key) = self.hop(hop)?;
        let key = key.to_vec();
        add_mac(repr, self.profile, &key, param_type::RVS_HMAC, &[]);
        Ok(())
    }

    /// Sends a routed packet to the overlay neighbour `next`, with our RVS_HMAC for it.
    fn send_hop(&mut self, next: Hit, repr: &mut HipRepr) -> Result<(), Error> {
        repr.params.retain(|p| p.ty() != param_type::RVS_HMAC);
        self.hop_mac(&next, repr)?;
        let (local, remote, _) = self.hop(&next)?;
        self.transmit_to(next, local, remote, &repr.to_bytes());
        Ok(())
    }

    /// The R1 that answers a routed I1: the template with the route back (ROUTE_DST),
    /// the overlay and our candidates, signed again, then the routing parameters the hops
    /// change. The caller fills in the receiver and the puzzle.
    pub(super) fn routed_r1(&self, template: HipRepr, routed: &Routed) -> Result<HipRepr, Error> {
        let overlay = self.config.overlay_id.clone().ok_or(Error::NoRoute)?;
        if routed.via.is_empty() {
            return Err(Error::NoRoute);
        }
        let mut r1 = template;
        r1.params.retain(|p| p.ty() != param_type::HIP_SIGNATURE_2);
        let unspecified = SocketAddr::from(([0u16; 8], 0));
        let candidates = self.candidate_locators(0, unspecified);
        if !candidates.is_empty() {
            r1.params.push(Param::LocatorSet(candidates));
        }
        r1.params.push(Param::OverlayId(overlay));
        r1.params.push(Param::RouteDst(Route {
            flags: FLAGS,
            reserved: 0,
            hits: routed.via.iter().rev().copied().collect(),
        }));
        r1.params.sort_by_key(Param::ty);
        add_signature(&mut r1, &self.identity, param_type::HIP_SIGNATURE_2);
        r1.params.push(Param::OverlayTtl {
            ttl: OVERLAY_TTL,
            reserved: 0,
        });
        r1.params.push(Param::RouteVia(Route::new(FLAGS)));
        Ok(r1)
    }

    /// Sends the R1 that answers a routed I1 back to the hop it came from.
    pub(super) fn send_routed_r1(&mut self, routed: &Routed, mut r1: HipRepr) -> Result<(), Error> {
        self.send_hop(routed.from, &mut r1)
    }
}

/// What an I1 routed through the overlay carries besides the I1's own: the overlay, the
/// hops it may take, and the route so far (none).
fn routing_params(overlay: Vec<u8>) -> Vec<Param> {
    vec![
        Param::OverlayId(overlay),
        Param::OverlayTtl {
            ttl: OVERLAY_TTL,
            reserved: 0,
        },
        Param::RouteVia(Route::new(FLAGS)),
    ]
}

/// Where the initiator of a routed exchange sends its I2: the responder's candidates
/// from the R1's LOCATOR_SET, relayed first (a relay server passes it on through any
/// NAT), then server-reflexive, then host addresses.
pub(super) fn i2_destinations(r1: &HipRepr) -> Vec<SocketAddr> {
    let Some(Param::LocatorSet(locators)) = r1.param(param_type::LOCATOR_SET) else {
        return Vec::new();
    };
    let mut found: Vec<(u8, SocketAddr)> = locators
        .iter()
        .filter_map(|l| {
            let t = l.transport()?;
            Some((t.kind, mobility::transport_addr(&t)?))
        })
        .collect();
    let rank = |kind: u8| match kind {
        ice::KIND_RELAYED => 0,
        ice::KIND_SERVER_REFLEXIVE => 1,
        _ => 2,
    };
    found.sort_by_key(|(kind, _)| rank(*kind));
    let mut out: Vec<SocketAddr> = Vec::new();
    for (_, addr) in found {
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OVERLAY: [u8; 4] = [0x8f, 0x2e, 0x41, 0xc7];

    /// Hosts on one wire, each at 198.51.100.(i+1):10500, all in one overlay.
    struct Wire {
        hosts: Vec<Host>,
        now: Instant,
    }

    impl Wire {
        fn new(n: u8) -> Wire {
            let now = Instant::now();
            let hosts = (0..n)
                .map(|i| {
                    let config = Config {
                        overlay_id: Some(OVERLAY.to_vec()),
                        ..Config::default()
                    };
                    let id = HostIdentity::from_secret([i + 1; 32]);
                    let mut h = Host::new(id, config, [i + 100; 32], now);
                    h.set_local_addresses(now, &[Wire::addr(usize::from(i))]);
                    h
                })
                .collect();
            Wire { hosts, now }
        }

        fn addr(i: usize) -> SocketAddr {
            SocketAddr::from(([198, 51, 100, i as u8 + 1], 10500))
        }

        fn hit(&self, i: usize) -> Hit {
            self.hosts[i].hit()
        }

        /// Delivers every datagram until none is left; `tamper` may change one on the way
        /// (sender, receiver, payload).
        fn run(&mut self, mut tamper: impl FnMut(usize, usize, &mut Vec<u8>)) {
            for _ in 0..100 {
                let mut moved = false;
                for from in 0..self.hosts.len() {
                    while let Some(mut t) = self.hosts[from].poll_transmit() {
                        let to = usize::from(
                            t.remote
                                .ip()
                                .to_canonical()
                                .to_string()
                                .rsplit('.')
                                .next()
                                .unwrap()
                                .parse::<u8>()
                                .unwrap(),
                        ) - 1;
                        tamper(from, to, &mut t.payload);
                        let now = self.now;
                        self.hosts[to].handle_datagram(now, t.remote, t.local, &t.payload);
                        moved = true;
                    }
                }
                if !moved {
                    return;
                }
            }
        }

        fn link(&mut self, a: usize, b: usize) {
            let (hit, now) = (self.hit(b), self.now);
            self.hosts[a]
                .connect(now, hit, Wire::addr(a), &[Wire::addr(b)])
                .unwrap();
            self.run(|_, _, _| {});
            assert_eq!(self.state(a, b), Some(AssocState::Established));
        }

        fn state(&self, a: usize, b: usize) -> Option<AssocState> {
            self.hosts[a].association(&self.hit(b)).map(|x| x.state)
        }

        fn events(&mut self, i: usize) -> Vec<Event> {
            std::iter::from_fn(|| self.hosts[i].poll_event()).collect()
        }
    }

    /// A chain A(0) – M1(1) – M2(2) – B(3): neighbours only have associations.
    fn chain() -> Wire {
        let mut w = Wire::new(4);
        w.link(0, 1);
        w.link(1, 2);
        w.link(2, 3);
        for i in 0..4 {
            w.events(i);
        }
        w
    }

    /// The I1 goes A → M1 → M2 → B; M1 has no association with B and asks its embedder
    /// for the next hop; the R1 comes back along ROUTE_DST; the I2 goes straight to B's
    /// address from the R1, and the exchange completes between A and B alone.
    #[test]
    fn an_exchange_runs_through_two_hops_and_then_directly() {
        let mut w = chain();
        let (b, m1, m2) = (w.hit(3), w.hit(1), w.hit(2));
        let now = w.now;
        w.hosts[0].connect_routed(now, b, m1).unwrap();
        w.run(|_, _, _| {});
        let routed = w.events(1);
        let [Event::Route {
            from,
            receiver,
            packet,
        }] = routed.as_slice()
        else {
            panic!("M1 asks where to: {routed:?}");
        };
        assert_eq!((*from, *receiver), (w.hit(0), b));
        let via = HipRepr::parse(packet).unwrap();
        assert!(matches!(via.param(param_type::ROUTE_VIA),
            Some(Param::RouteVia(r)) if r.hits == vec![m1.0]));
        assert!(matches!(via.param(param_type::OVERLAY_TTL),
            Some(Param::OverlayTtl { ttl, .. }) if *ttl == OVERLAY_TTL - 1));
        // The embedder must not send it back where it came from.
        let (packet, a) = (packet.clone(), w.hit(0));
        assert_eq!(
            w.hosts[1].forward_routed(now, &packet, a),
            Err(Error::NoRoute)
        );
        w.hosts[1].forward_routed(now, &packet, m2).unwrap();
        let mut r1_route = None;
        w.run(|from, to, payload| {
            let repr = HipRepr::parse(&payload[4..]).unwrap();
            if repr.packet_type == PacketType::R1 && (from, to) == (3, 2) {
                r1_route = repr.param(param_type::ROUTE_DST).cloned();
            }
        });
        let Some(Param::RouteDst(dst)) = r1_route else {
            panic!("B's R1 names its way back");
        };
        assert_eq!(dst.hits, vec![m2.0, m1.0]);
        assert_eq!(dst.flags, FLAGS);
        assert_eq!(w.state(0, 3), Some(AssocState::Established));
        assert_eq!(w.state(3, 0), Some(AssocState::R2Sent));
        let on_b = w.hosts[3].association(&w.hit(0)).unwrap();
        assert_eq!(on_b.remote, Wire::addr(0), "B talks to A directly");
        assert_eq!(w.hosts[1].stats().routed, 2, "M1 passed the I1 and the R1");
        assert_eq!(w.hosts[2].stats().routed, 2, "so did M2");
    }

    /// An I1 sent to an address where nobody answers: after its first retransmission the
    /// host says so, and a copy routed through the overlay finds the peer; the exchange
    /// goes on from its R1.
    #[test]
    fn an_unanswered_exchange_takes_a_routed_copy() {
        let mut w = chain();
        let (b, m1, m2) = (w.hit(3), w.hit(1), w.hit(2));
        let nowhere: SocketAddr = "198.51.100.99:10500".parse().unwrap();
        let now = w.now;
        w.hosts[0]
            .connect(now, b, Wire::addr(0), &[nowhere])
            .unwrap();
        while w.hosts[0].poll_transmit().is_some() {}
        assert!(w.events(0).is_empty());
        // Before the first retransmission nothing is said; at it, the host asks.
        w.now += Duration::from_millis(600);
        let now = w.now;
        w.hosts[0].handle_timeout(now);
        while w.hosts[0].poll_transmit().is_some() {}
        let asked = w.events(0);
        assert!(
            matches!(asked.as_slice(), [Event::Unanswered { peer }] if *peer == b),
            "{asked:?}"
        );
        w.hosts[0].add_route(now, b, m1).unwrap();
        assert_eq!(w.hosts[0].add_route(now, b, m1), Ok(()), "a newer copy");
        w.run(|_, _, _| {});
        let routed = w.events(1);
        let Some(Event::Route { packet, .. }) = routed.first() else {
            panic!("M1 asks where to: {routed:?}");
        };
        let packet = packet.clone();
        w.hosts[1].forward_routed(now, &packet, m2).unwrap();
        w.run(|_, _, _| {});
        assert_eq!(w.state(0, 3), Some(AssocState::Established));
        let on_a = w.hosts[0].association(&b).unwrap();
        assert_eq!(on_a.remote, Wire::addr(3), "A talks to B where B is");
    }

    /// A hop whose RVS_HMAC does not check (a field the hops change was altered on the
    /// way), or a sender with no association to us, routes nothing.
    #[test]
    fn a_hop_takes_only_what_a_neighbour_sent_unaltered() {
        let mut w = chain();
        let (b, m1, now) = (w.hit(3), w.hit(1), w.now);
        w.hosts[0].connect_routed(now, b, m1).unwrap();
        w.run(|from, _, payload| {
            if from == 0 {
                let mut repr = HipRepr::parse(&payload[4..]).unwrap();
                for p in &mut repr.params {
                    if let Param::OverlayTtl { ttl, .. } = p {
                        *ttl = 1;
                    }
                }
                *payload = marked(&repr.to_bytes());
            }
        });
        assert!(w.events(1).is_empty());
        assert_eq!(w.hosts[1].stats().route_refused, 1);
        assert_eq!(w.hosts[1].stats().last_drop, Some(Error::BadMac));

        // B has no association with M1: its routed I1 to M1 is refused whatever it says.
        let mut w = chain();
        let (a, m1, now) = (w.hit(0), w.hit(1), w.now);
        let forged = HipRepr {
            next_header: 59,
            packet_type: PacketType::I1,
            version: 2,
            controls: 0,
            sender_hit: w.hit(3),
            receiver_hit: a,
            params: vec![
                Param::DhGroupList(vec![9]),
                Param::OverlayId(OVERLAY.to_vec()),
                Param::OverlayTtl {
                    ttl: 5,
                    reserved: 0,
                },
                Param::RouteVia(Route::new(FLAGS)),
                Param::RvsHmac(vec![0; 32]),
            ],
        };
        w.hosts[1].handle_datagram(
            now,
            Wire::addr(1),
            Wire::addr(3),
            &marked(&forged.to_bytes()),
        );
        assert_eq!(w.hosts[1].stats().route_refused, 1);
        assert_eq!(
            w.hosts[1].stats().last_drop,
            Some(Error::UnknownPeer(w.hit(3)))
        );
        assert!(w.hosts[1].poll_transmit().is_none());
        let _ = m1;
    }

    /// An I1 whose hops ran out is refused with OVERLAY_TTL_EXCEEDED back to its
    /// initiator, whose exchange then gives up at once; a hop already on the route, or a
    /// packet from another overlay, goes nowhere.
    #[test]
    fn ttl_loops_and_other_overlays_end_a_route() {
        let mut w = chain();
        let (b, m1, now) = (w.hit(3), w.hit(1), w.now);
        w.hosts[0].connect_routed(now, b, m1).unwrap();
        let i1 = w.hosts[0].poll_transmit().unwrap();
        let mut repr = HipRepr::parse(&i1.payload[4..]).unwrap();
        for p in &mut repr.params {
            if let Param::OverlayTtl { ttl, .. } = p {
                *ttl = 0;
            }
        }
        w.hosts[0].send_hop(m1, &mut repr).unwrap();
        w.run(|_, _, _| {});
        assert_eq!(
            w.hosts[1].stats().last_drop,
            Some(Error::OverlayTtlExceeded)
        );
        let failed = w.events(0);
        assert!(
            failed.iter().any(|e| matches!(e,
                Event::Failed { peer, error: Error::OverlayTtlExceeded } if *peer == b)),
            "{failed:?}"
        );
        assert_eq!(w.state(0, 3), Some(AssocState::Failed));

        // Our own HIT on the route already: a loop.
        let mut w = chain();
        let (a, b, m1, now) = (w.hit(0), w.hit(3), w.hit(1), w.now);
        w.hosts[0].connect_routed(now, b, m1).unwrap();
        let i1 = w.hosts[0].poll_transmit().unwrap();
        let mut repr = HipRepr::parse(&i1.payload[4..]).unwrap();
        for p in &mut repr.params {
            if let Param::RouteVia(r) = p {
                r.hits = vec![m1.0, a.0];
            }
        }
        w.hosts[0].send_hop(m1, &mut repr).unwrap();
        w.run(|_, _, _| {});
        assert_eq!(w.hosts[1].stats().last_drop, Some(Error::NoRoute));
        assert!(w.events(1).is_empty());

        // Another overlay's packet.
        let mut w = chain();
        let (b, m1, now) = (w.hit(3), w.hit(1), w.now);
        w.hosts[0].config.overlay_id = Some(vec![1, 2, 3, 4]);
        w.hosts[0].connect_routed(now, b, m1).unwrap();
        w.run(|_, _, _| {});
        assert_eq!(w.hosts[1].stats().last_drop, Some(Error::NoRoute));
        assert!(w.events(1).is_empty());
    }

    /// The member whose range a HIT falls in tells the initiator that nobody has it
    /// (UNKNOWN_NEXT_HOP, signed, back along the route): the exchange fails at once.
    #[test]
    fn a_refused_route_ends_the_exchange_at_once() {
        let mut w = chain();
        let stranger = HostIdentity::from_secret([77; 32]).hit();
        let (m1, now) = (w.hit(1), w.now);
        w.hosts[0].connect_routed(now, stranger, m1).unwrap();
        w.run(|_, _, _| {});
        let routed = w.events(1);
        let [Event::Route { packet, .. }] = routed.as_slice() else {
            panic!("M1 asks where to: {routed:?}");
        };
        w.hosts[1].refuse_routed(now, packet).unwrap();
        w.run(|_, _, _| {});
        let events = w.events(0);
        assert!(
            events.iter().any(|e| matches!(e,
                Event::Failed { peer, error: Error::NoRoute } if *peer == stranger)),
            "{events:?}"
        );
        assert!(events.iter().any(|e| matches!(e,
            Event::Notified { peer, kind: NotifyType::UnknownNextHop, .. } if *peer == m1)));
    }
}
