//! Inner packets at the edge of the tunnel: what the TUN device hands us (IPv6 between
//! HITs, or IPv4 between LSIs) becomes a transport payload for `hip::Host::encapsulate`, and
//! a delivered payload becomes an IP packet again.
//!
//! LSIs are local (RFC 7401 §4.5.1, shared/spec/hip.md §1.4): on the wire every transport
//! checksum is computed over the HITs. A TCP or UDP flow that a local program opened to an
//! LSI is remembered, so that its replies are delivered as IPv4 between LSIs; ICMP (IPv4)
//! always travels as IPv4, ICMPv6 as IPv6. A flow the peer opens is delivered between LSIs
//! when only an IPv4 socket listens on its port here, else between HITs (the driver says
//! which: the daemon from the kernel's socket tables), and that choice is kept for the
//! flow.

use hip::esp;
use hip::esp::{PROTO_ICMP as ICMP, PROTO_TCP as TCP, PROTO_UDP as UDP};
use hip::lsi::LsiPool;
use hip::Hit;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// An outbound inner packet, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub peer: Hit,
    pub next_header: u8,
    /// Range of the transport payload in the buffer that was classified.
    pub payload: core::ops::Range<usize>,
}

/// Why an inner packet from the TUN device is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    /// Source is not our HIT or LSI.
    NotOurs,
    /// Destination is neither a HIT nor an allocated LSI.
    NoPeer,
    /// IPv4 fragments and options are not carried (BEET has no room for them).
    Unsupported,
}

/// How each TCP/UDP flow with a peer is delivered: `true` between LSIs (IPv4), `false`
/// between HITs. Bounded per peer; when full, the least recently used flow is forgotten,
/// so a long-lived flow outlives any number of short ones.
#[derive(Debug, Default)]
pub struct LsiFlows {
    flows: HashMap<Hit, HashMap<Flow, (bool, u64)>>,
    /// Advances on every use; the second field of an entry is its last use.
    clock: u64,
}

/// (protocol, our port, their port).
type Flow = (u8, u16, u16);

/// Flows remembered per peer.
const FLOWS_PER_PEER: usize = 1024;

impl LsiFlows {
    fn note(&mut self, peer: Hit, flow: Flow, ipv4: bool) {
        self.clock += 1;
        let map = self.flows.entry(peer).or_default();
        if map.len() >= FLOWS_PER_PEER && !map.contains_key(&flow) {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(f, _)| *f)
            {
                map.remove(&oldest);
            }
        }
        map.insert(flow, (ipv4, self.clock));
    }

    fn get(&mut self, peer: &Hit, flow: Flow) -> Option<bool> {
        self.clock += 1;
        let entry = self.flows.get_mut(peer)?.get_mut(&flow)?;
        entry.1 = self.clock;
        Some(entry.0)
    }

    /// Forgets everything about `peer` (its association is gone).
    pub fn forget(&mut self, peer: &Hit) {
        self.flows.remove(peer);
    }
}

/// The edge: our own HIT and LSI, the LSI pool, the LSI flow table.
#[derive(Debug)]
pub struct Edge {
    pub hit: Hit,
    pub lsi: Ipv4Addr,
    pub pool: LsiPool,
    pub flows: LsiFlows,
}

/// A TCP SYN (without ACK), or any UDP datagram: the packets that can open a flow.
fn opens_flow(next_header: u8, payload: &[u8]) -> bool {
    match next_header {
        TCP => payload.get(13).is_some_and(|flags| flags & 0x12 == 0x02),
        UDP => true,
        _ => false,
    }
}

fn ports(next_header: u8, payload: &[u8]) -> Option<(u16, u16)> {
    if (next_header == TCP || next_header == UDP) && payload.len() >= 4 {
        Some((
            u16::from_be_bytes([payload[0], payload[1]]),
            u16::from_be_bytes([payload[2], payload[3]]),
        ))
    } else {
        None
    }
}

impl Edge {
    /// Classifies the packet at `buf[start..end]` read from the TUN device; for IPv4 the
    /// transport checksum is rewritten in place to the HIT form.
    pub fn outgoing(
        &mut self,
        buf: &mut [u8],
        start: usize,
        end: usize,
    ) -> Result<Outgoing, Refused> {
        let packet = buf.get(start..end).ok_or(Refused::Malformed)?;
        match packet.first().map(|b| b >> 4) {
            Some(6) => {
                let inner = esp::parse_ipv6(packet).map_err(|_| Refused::Malformed)?;
                let (src, dst) = (Hit(inner.src), Hit(inner.dst));
                if src != self.hit {
                    return Err(Refused::NotOurs);
                }
                if !dst.is_orchid() {
                    return Err(Refused::NoPeer);
                }
                Ok(Outgoing {
                    peer: dst,
                    next_header: inner.next_header,
                    payload: start + inner.payload.start..start + inner.payload.end,
                })
            }
            Some(4) => {
                let inner = esp::parse_ipv4(packet).map_err(|e| match e {
                    esp::EspError::Unsupported => Refused::Unsupported,
                    _ => Refused::Malformed,
                })?;
                let (src, dst) = (Ipv4Addr::from(inner.src), Ipv4Addr::from(inner.dst));
                if src != self.lsi {
                    return Err(Refused::NotOurs);
                }
                let peer = self.pool.hit_for(dst).ok_or(Refused::NoPeer)?;
                let payload = start + inner.payload.start..start + inner.payload.end;
                let nh = inner.next_header;
                if let Some((sport, dport)) = ports(nh, &buf[payload.clone()]) {
                    self.flows.note(peer, (nh, sport, dport), true);
                }
                esp::rewrite_transport_checksum(
                    nh,
                    &mut buf[payload.clone()],
                    &inner.src,
                    &inner.dst,
                    &self.hit.0,
                    &peer.0,
                );
                Ok(Outgoing {
                    peer,
                    next_header: nh,
                    payload,
                })
            }
            _ => Err(Refused::Malformed),
        }
    }

    /// Puts an IP header in front of a delivered payload at `buf[payload]` (which must have
    /// at least 40 bytes before it) and returns the packet's range. `ipv4_only(protocol,
    /// port)` says whether only an IPv4 socket listens on a port (asked once per flow the
    /// peer opens).
    pub fn incoming(
        &mut self,
        buf: &mut [u8],
        peer: Hit,
        next_header: u8,
        payload: core::ops::Range<usize>,
        ipv4_only: &mut dyn FnMut(u8, u16) -> bool,
    ) -> Option<core::ops::Range<usize>> {
        let as_ipv4 = next_header == ICMP
            || ports(next_header, &buf[payload.clone()]).is_some_and(|(sport, dport)| {
                let flow = (next_header, dport, sport);
                match self.flows.get(&peer, flow) {
                    Some(ipv4) => ipv4,
                    // A flow the peer opens: the wire does not say whether its program used
                    // our HIT or our LSI, so deliver it the way a local program can take it.
                    None if opens_flow(next_header, &buf[payload.clone()]) => {
                        let ipv4 = ipv4_only(next_header, dport);
                        self.flows.note(peer, flow, ipv4);
                        ipv4
                    }
                    None => false,
                }
            });
        let len = payload.len();
        if as_ipv4 {
            let peer_lsi = self.pool.lsi_for(&peer).ok()?;
            esp::rewrite_transport_checksum(
                next_header,
                &mut buf[payload.clone()],
                &peer.0,
                &self.hit.0,
                &peer_lsi.octets(),
                &self.lsi.octets(),
            );
            let start = payload.start.checked_sub(esp::IPV4_HEADER_LEN)?;
            esp::write_ipv4_header(
                &mut buf[start..payload.start],
                peer_lsi.octets(),
                self.lsi.octets(),
                next_header,
                len,
                64,
            );
            Some(start..payload.end)
        } else {
            let start = payload.start.checked_sub(esp::IPV6_HEADER_LEN)?;
            esp::write_ipv6_header(
                &mut buf[start..payload.start],
                peer.0,
                self.hit.0,
                next_header,
                len,
                64,
            );
            Some(start..payload.end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge() -> (Edge, Hit, Ipv4Addr) {
        let hit = hip::HostIdentity::from_secret([1; 32]).hit();
        let peer = hip::HostIdentity::from_secret([2; 32]).hit();
        let mut pool = LsiPool::new(Ipv4Addr::new(100, 64, 0, 0), 16).unwrap();
        let lsi = Ipv4Addr::new(100, 64, 0, 1);
        pool.reserve(lsi);
        let peer_lsi = pool.lsi_for(&peer).unwrap();
        let e = Edge {
            hit,
            lsi,
            pool,
            flows: LsiFlows::default(),
        };
        (e, peer, peer_lsi)
    }

    /// A TCP SYN from `sport` to `dport` (20-byte header, no data), checksum left zero.
    fn syn(sport: u16, dport: u16) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x02;
        t
    }

    fn checksum(src: &[u8], dst: &[u8], segment: &[u8]) -> u16 {
        let mut sum: u64 = 6 + segment.len() as u64;
        for chunk in src.chunks(2).chain(dst.chunks(2)).chain(segment.chunks(2)) {
            let mut w = [0u8; 2];
            w[..chunk.len()].copy_from_slice(chunk);
            sum += u64::from(u16::from_be_bytes(w));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn a_packet_to_an_lsi_leaves_with_its_checksum_over_the_hits_and_its_reply_comes_back_as_ipv4()
    {
        let (mut e, peer, peer_lsi) = edge();
        let mut tcp = syn(40000, 22);
        let sum = checksum(&e.lsi.octets(), &peer_lsi.octets(), &tcp);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        let mut buf = vec![0u8; 20 + tcp.len()];
        esp::write_ipv4_header(
            &mut buf,
            e.lsi.octets(),
            peer_lsi.octets(),
            TCP,
            tcp.len(),
            64,
        );
        buf[20..].copy_from_slice(&tcp);
        let len = buf.len();
        let out = e.outgoing(&mut buf, 0, len).unwrap();
        assert_eq!(
            (out.peer, out.next_header, out.payload.clone()),
            (peer, TCP, 20..len)
        );
        // On the wire the checksum is over the HITs (RFC 7401 §4.5.1).
        assert_eq!(checksum(&e.hit.0, &peer.0, &buf[out.payload]), 0);

        // The reply of that flow is delivered between the LSIs, whatever listens here.
        let mut reply = syn(22, 40000);
        reply[13] = 0x12;
        let sum = checksum(&peer.0, &e.hit.0, &reply);
        reply[16..18].copy_from_slice(&sum.to_be_bytes());
        let mut rx = vec![0u8; 40 + reply.len()];
        rx[40..].copy_from_slice(&reply);
        let mut asked = false;
        let range = e
            .incoming(&mut rx, peer, TCP, 40..40 + reply.len(), &mut |_, _| {
                asked = true;
                false
            })
            .unwrap();
        assert!(!asked, "a known flow is not looked up");
        let inner = esp::parse_ipv4(&rx[range.clone()]).unwrap();
        assert_eq!((inner.src, inner.dst), (peer_lsi.octets(), e.lsi.octets()));
        assert_eq!(
            checksum(&peer_lsi.octets(), &e.lsi.octets(), &rx[range][20..]),
            0
        );
    }

    #[test]
    fn a_flow_the_peer_opens_goes_where_a_socket_can_take_it_and_stays_there() {
        let (mut e, peer, peer_lsi) = edge();
        let deliver = |e: &mut Edge, sport: u16, flags: u8, ipv4_only: bool| {
            let mut tcp = syn(sport, 8080);
            tcp[13] = flags;
            let mut rx = vec![0u8; 40 + tcp.len()];
            rx[40..].copy_from_slice(&tcp);
            let range = e
                .incoming(&mut rx, peer, TCP, 40..40 + tcp.len(), &mut |p, port| {
                    assert_eq!((p, port), (TCP, 8080));
                    ipv4_only
                })
                .unwrap();
            rx[range.start] >> 4
        };
        // Only an IPv4 socket listens: the SYN and the rest of its flow arrive as IPv4.
        assert_eq!(deliver(&mut e, 5000, 0x02, true), 4);
        assert_eq!(deliver(&mut e, 5000, 0x10, false), 4);
        // Another flow, with an IPv6 socket listening: between the HITs.
        assert_eq!(deliver(&mut e, 5001, 0x02, false), 6);
        assert_eq!(deliver(&mut e, 5001, 0x10, true), 6);
        // A segment of a flow never opened goes between the HITs without asking.
        let mut tcp = syn(5002, 8080);
        tcp[13] = 0x10;
        let mut rx = vec![0u8; 40 + tcp.len()];
        rx[40..].copy_from_slice(&tcp);
        let range = e
            .incoming(&mut rx, peer, TCP, 40..40 + tcp.len(), &mut |_, _| {
                panic!("asked")
            })
            .unwrap();
        assert_eq!(rx[range.start] >> 4, 6);
        let _ = peer_lsi;
    }

    #[test]
    fn packets_that_are_not_ours_or_for_no_peer_are_refused() {
        let (mut e, _, _) = edge();
        let other = hip::HostIdentity::from_secret([3; 32]).hit();
        let mut buf = vec![0u8; 40 + 8];
        esp::write_ipv6_header(&mut buf, other.0, e.hit.0, 17, 8, 64);
        assert_eq!(e.outgoing(&mut buf, 0, 48), Err(Refused::NotOurs));
        let not_a_hit: [u8; 16] = "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        esp::write_ipv6_header(&mut buf, e.hit.0, not_a_hit, 17, 8, 64);
        assert_eq!(e.outgoing(&mut buf, 0, 48), Err(Refused::NoPeer));
        // An LSI nobody holds.
        let mut v4 = vec![0u8; 28];
        esp::write_ipv4_header(&mut v4, e.lsi.octets(), [100, 64, 9, 9], 17, 8, 64);
        assert_eq!(e.outgoing(&mut v4, 0, 28), Err(Refused::NoPeer));
        assert_eq!(e.outgoing(&mut [0u8; 3], 0, 3), Err(Refused::Malformed));
    }
}
