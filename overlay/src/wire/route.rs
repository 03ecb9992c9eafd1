//! Bodies of the routing-related methods: RouteQuery with CHORD-RELOAD's answer (RFC 6940
//! §6.4.2.4, §10.8), Find (§7.4.4) and Probe (§6.4.2.5, our basic "Stat" of a peer).

use super::{
    Decode, Destination, Encode, KindId, NodeId, ReadExt, Reader, ResourceId, Sink, WireError,
    WriteExt,
};

/// `RouteQueryReq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteQueryReq {
    /// Ask the answering peer to send an Update (CHORD: a full one) right after.
    pub send_update: bool,
    pub destination: Destination,
    /// Empty for CHORD-RELOAD.
    pub overlay_specific_data: Vec<u8>,
}

/// `ChordRouteQueryAns` (§10.8): the peer the answerer would route to next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChordRouteQueryAns {
    pub next_peer: NodeId,
}

/// `FindReq`: the Resource-ID to look from and the Kinds of interest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindReq {
    pub resource: ResourceId,
    /// `KindId kinds<0..2^8-1>`.
    pub kinds: Vec<KindId>,
}

/// `FindKindData`: for one Kind, the closest Resource-ID at or after the requested one
/// that the answerer stores (an empty ID when it stores none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindKindData {
    pub kind: KindId,
    pub closest: ResourceId,
}

/// `FindAns`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FindAns {
    /// `FindKindData results<0..2^16-1>`.
    pub results: Vec<FindKindData>,
}

/// `ProbeInformationType` values we answer (§6.4.2.5.1).
pub mod probe_type {
    /// Parts per billion of the ring this peer is responsible for.
    pub const RESPONSIBLE_SET: u8 = 1;
    /// Distinct Resource-IDs stored.
    pub const NUM_RESOURCES: u8 = 2;
    /// Seconds up.
    pub const UPTIME: u8 = 3;
}

/// `ProbeReq`: the information types asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeReq {
    /// `ProbeInformationType requested_info<0..2^8-1>`.
    pub requested: Vec<u8>,
}

/// One `ProbeInformation`: a type and its (for the defined types, 4-byte) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeInformation {
    pub ty: u8,
    pub value: Vec<u8>,
}

/// `ProbeAns`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeAns {
    /// `ProbeInformation probe_info<0..2^16-1>`.
    pub info: Vec<ProbeInformation>,
}

impl Decode for RouteQueryReq {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(RouteQueryReq {
            send_update: r.boolean()?,
            destination: Destination::read(r)?,
            overlay_specific_data: r.opaque(2)?.to_vec(),
        })
    }
}

impl Encode for RouteQueryReq {
    fn write(&self, w: &mut dyn Sink) {
        w.boolean(self.send_update);
        self.destination.write(w);
        w.opaque(2, &self.overlay_specific_data);
    }
}

impl Decode for ChordRouteQueryAns {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ChordRouteQueryAns {
            next_peer: NodeId::read(r)?,
        })
    }
}

impl Encode for ChordRouteQueryAns {
    fn write(&self, w: &mut dyn Sink) {
        self.next_peer.write(w);
    }
}

impl Decode for FindReq {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(FindReq {
            resource: ResourceId::read(r)?,
            kinds: r.list_with(1, |r| r.u32())?,
        })
    }
}

impl Encode for FindReq {
    fn write(&self, w: &mut dyn Sink) {
        self.resource.write(w);
        w.nested(1, &|w| self.kinds.iter().for_each(|k| w.u32(*k)));
    }
}

impl Decode for FindKindData {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(FindKindData {
            kind: r.u32()?,
            closest: ResourceId::read(r)?,
        })
    }
}

impl Encode for FindKindData {
    fn write(&self, w: &mut dyn Sink) {
        w.u32(self.kind);
        self.closest.write(w);
    }
}

impl Decode for FindAns {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(FindAns {
            results: r.list(2)?,
        })
    }
}

impl Encode for FindAns {
    fn write(&self, w: &mut dyn Sink) {
        w.list(2, &self.results);
    }
}

impl Decode for ProbeReq {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ProbeReq {
            requested: r.opaque(1)?.to_vec(),
        })
    }
}

impl Encode for ProbeReq {
    fn write(&self, w: &mut dyn Sink) {
        w.opaque(1, &self.requested);
    }
}

impl Decode for ProbeInformation {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ProbeInformation {
            ty: r.u8()?,
            value: r.opaque(1)?.to_vec(),
        })
    }
}

impl Encode for ProbeInformation {
    fn write(&self, w: &mut dyn Sink) {
        w.u8(self.ty);
        w.opaque(1, &self.value);
    }
}

impl Decode for ProbeAns {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ProbeAns { info: r.list(2)? })
    }
}

impl Encode for ProbeAns {
    fn write(&self, w: &mut dyn Sink) {
        w.list(2, &self.info);
    }
}

repr_methods!(RouteQueryReq);
repr_methods!(ChordRouteQueryAns);
repr_methods!(FindReq);
repr_methods!(FindKindData);
repr_methods!(FindAns);
repr_methods!(ProbeReq);
repr_methods!(ProbeInformation);
repr_methods!(ProbeAns);

#[cfg(test)]
mod tests {
    use super::super::testutil::{both_ways, hex};
    use super::*;

    fn node(last: u8) -> NodeId {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[0x20, 0x01, 0x00, 0x25]);
        b[15] = last;
        NodeId(b)
    }

    #[test]
    fn route_query_both_ways() {
        let req = RouteQueryReq {
            send_update: true,
            destination: Destination::Node(node(0x0b)),
            overlay_specific_data: Vec::new(),
        };
        let bytes = hex("01 01 10 2001002500000000000000000000000b 0000");
        assert_eq!(req.to_bytes(), bytes);
        both_ways(&bytes, &req, RouteQueryReq::parse, |r| r.to_bytes());
        let ans = ChordRouteQueryAns { next_peer: node(1) };
        both_ways(&ans.to_bytes(), &ans, ChordRouteQueryAns::parse, |r| {
            r.to_bytes()
        });
        assert_eq!(
            RouteQueryReq::parse(&hex("02 01 10")),
            Err(WireError::Invalid("Boolean"))
        );
    }

    #[test]
    fn find_both_ways() {
        let req = FindReq {
            resource: ResourceId(vec![0xaa; 16]),
            kinds: vec![1, 0xf000_0001],
        };
        let mut want = vec![16];
        want.extend([0xaa; 16]);
        want.extend(hex("08 00000001 f0000001"));
        assert_eq!(req.to_bytes(), want);
        both_ways(&want, &req, FindReq::parse, |r| r.to_bytes());
        assert_eq!(
            FindReq::parse(&hex("00 03 000000")),
            Err(WireError::Truncated)
        );
        let ans = FindAns {
            results: vec![FindKindData {
                kind: 1,
                closest: ResourceId(Vec::new()),
            }],
        };
        assert_eq!(ans.to_bytes(), hex("0005 00000001 00"));
        both_ways(&ans.to_bytes(), &ans, FindAns::parse, |r| r.to_bytes());
    }

    #[test]
    fn probe_both_ways() {
        let req = ProbeReq {
            requested: vec![probe_type::UPTIME, probe_type::NUM_RESOURCES],
        };
        assert_eq!(req.to_bytes(), hex("02 03 02"));
        let ans = ProbeAns {
            info: vec![ProbeInformation {
                ty: probe_type::UPTIME,
                value: 120u32.to_be_bytes().to_vec(),
            }],
        };
        assert_eq!(ans.to_bytes(), hex("0006 03 04 00000078"));
        both_ways(&ans.to_bytes(), &ans, ProbeAns::parse, |r| r.to_bytes());
    }
}
