//! Inner packets at the edge of the tunnel: what the TUN device hands us (IPv6 between
//! HITs, or IPv4 between LSIs) becomes a transport payload for `hip::Host::encapsulate`, and
//! a delivered payload becomes an IP packet again.
//!
//! LSIs are local (RFC 7401 §4.5.1, shared/spec/hip.md §1.4): on the wire every transport
//! checksum is computed over the HITs. A TCP or UDP flow that a local program opened to an
//! LSI is remembered, so that its replies are delivered as IPv4 between LSIs; ICMP (IPv4)
//! always travels as IPv4, ICMPv6 as IPv6. A flow the peer opens is delivered between LSIs
//! when only an IPv4 socket listens on its port here, else between HITs (see
//! [`listeners`]), and that choice is kept for the flow.

use super::listeners;
use hip::esp;
use hip::lsi::LsiPool;
use hip::Hit;
use std::collections::HashMap;
use std::net::Ipv4Addr;

const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;

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
    pub listeners: listeners::Listeners,
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
    /// at least 40 bytes before it) and returns the packet's range.
    pub fn incoming(
        &mut self,
        buf: &mut [u8],
        peer: Hit,
        next_header: u8,
        payload: core::ops::Range<usize>,
    ) -> Option<core::ops::Range<usize>> {
        let as_ipv4 = next_header == ICMP
            || ports(next_header, &buf[payload.clone()]).is_some_and(|(sport, dport)| {
                let flow = (next_header, dport, sport);
                match self.flows.get(&peer, flow) {
                    Some(ipv4) => ipv4,
                    // A flow the peer opens: the wire does not say whether its program used
                    // our HIT or our LSI, so deliver it the way a local program can take it.
                    None if opens_flow(next_header, &buf[payload.clone()]) => {
                        let ipv4 = self.listeners.ipv4_only(next_header, dport);
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
