//! Bodies of the topology and liveness methods: Ping (RFC 6940 §6.5.3), Join and Leave
//! (§6.4.2.2, §6.4.2.3) with CHORD-RELOAD's leave data (§10.9), and CHORD-RELOAD's Update
//! (§10.7). Leave and Update answers have empty bodies and need no type.

use super::{Decode, Encode, NodeId, ReadExt, Reader, Sink, WireError, WriteExt};

/// `PingReq`: padding only, for path MTU probing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PingReq {
    /// `opaque padding<0..2^16-1>`.
    pub padding: Vec<u8>,
}

/// `PingAns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingAns {
    /// Random, chosen by the responder.
    pub response_id: u64,
    /// Milliseconds since 1970-01-01 UTC, as `storage_time`.
    pub time: u64,
}

/// `JoinReq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinReq {
    pub joining_peer_id: NodeId,
    /// `opaque<0..2^16-1>`; empty for CHORD-RELOAD.
    pub overlay_specific_data: Vec<u8>,
}

/// `JoinAns`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinAns {
    pub overlay_specific_data: Vec<u8>,
}

/// `LeaveReq`; for CHORD-RELOAD the data is a [`ChordLeaveData`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveReq {
    pub leaving_peer_id: NodeId,
    pub overlay_specific_data: Vec<u8>,
}

/// `ChordLeaveData` (§10.9): the leaver tells a neighbour whom to use instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChordLeaveData {
    /// Type 1: the leaver is the recipient's successor and hands over its successors.
    FromSucc(Vec<NodeId>),
    /// Type 2: the leaver is the recipient's predecessor and hands over its predecessors.
    FromPred(Vec<NodeId>),
}

/// `ChordUpdate` (§10.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChordUpdate {
    /// Seconds the sender has been up.
    pub uptime: u32,
    pub kind: ChordUpdateKind,
}

/// What a [`ChordUpdate`] carries, by its type byte. An unknown type has no known layout
/// (and no length) and is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChordUpdateKind {
    /// Type 1: "I am a peer, you may route through me".
    PeerReady,
    /// Type 2: the sender's neighbour table.
    Neighbors {
        predecessors: Vec<NodeId>,
        successors: Vec<NodeId>,
    },
    /// Type 3: neighbours and fingers (fingers in ascending order on the wire).
    Full {
        predecessors: Vec<NodeId>,
        successors: Vec<NodeId>,
        fingers: Vec<NodeId>,
    },
}

impl Decode for PingReq {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PingReq {
            padding: r.opaque(2)?.to_vec(),
        })
    }
}

impl Encode for PingReq {
    fn write(&self, w: &mut dyn Sink) {
        w.opaque(2, &self.padding);
    }
}

impl Decode for PingAns {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PingAns {
            response_id: r.u64()?,
            time: r.u64()?,
        })
    }
}

impl Encode for PingAns {
    fn write(&self, w: &mut dyn Sink) {
        w.u64(self.response_id);
        w.u64(self.time);
    }
}

impl Decode for JoinReq {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(JoinReq {
            joining_peer_id: NodeId::read(r)?,
            overlay_specific_data: r.opaque(2)?.to_vec(),
        })
    }
}

impl Encode for JoinReq {
    fn write(&self, w: &mut dyn Sink) {
        self.joining_peer_id.write(w);
        w.opaque(2, &self.overlay_specific_data);
    }
}

impl Decode for JoinAns {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(JoinAns {
            overlay_specific_data: r.opaque(2)?.to_vec(),
        })
    }
}

impl Encode for JoinAns {
    fn write(&self, w: &mut dyn Sink) {
        w.opaque(2, &self.overlay_specific_data);
    }
}

impl Decode for LeaveReq {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(LeaveReq {
            leaving_peer_id: NodeId::read(r)?,
            overlay_specific_data: r.opaque(2)?.to_vec(),
        })
    }
}

impl Encode for LeaveReq {
    fn write(&self, w: &mut dyn Sink) {
        self.leaving_peer_id.write(w);
        w.opaque(2, &self.overlay_specific_data);
    }
}

const LEAVE_FROM_SUCC: u8 = 1;
const LEAVE_FROM_PRED: u8 = 2;

impl Decode for ChordLeaveData {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u8()? {
            LEAVE_FROM_SUCC => Ok(ChordLeaveData::FromSucc(r.list(2)?)),
            LEAVE_FROM_PRED => Ok(ChordLeaveData::FromPred(r.list(2)?)),
            _ => Err(WireError::Invalid("ChordLeaveType")),
        }
    }
}

impl Encode for ChordLeaveData {
    fn write(&self, w: &mut dyn Sink) {
        let (ty, ids) = match self {
            ChordLeaveData::FromSucc(ids) => (LEAVE_FROM_SUCC, ids),
            ChordLeaveData::FromPred(ids) => (LEAVE_FROM_PRED, ids),
        };
        w.u8(ty);
        w.list(2, ids);
    }
}

const UPDATE_PEER_READY: u8 = 1;
const UPDATE_NEIGHBORS: u8 = 2;
const UPDATE_FULL: u8 = 3;

impl Decode for ChordUpdate {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let uptime = r.u32()?;
        let kind = match r.u8()? {
            UPDATE_PEER_READY => ChordUpdateKind::PeerReady,
            UPDATE_NEIGHBORS => ChordUpdateKind::Neighbors {
                predecessors: r.list(2)?,
                successors: r.list(2)?,
            },
            UPDATE_FULL => ChordUpdateKind::Full {
                predecessors: r.list(2)?,
                successors: r.list(2)?,
                fingers: r.list(2)?,
            },
            _ => return Err(WireError::Invalid("ChordUpdateType")),
        };
        Ok(ChordUpdate { uptime, kind })
    }
}

impl Encode for ChordUpdate {
    fn write(&self, w: &mut dyn Sink) {
        w.u32(self.uptime);
        match &self.kind {
            ChordUpdateKind::PeerReady => w.u8(UPDATE_PEER_READY),
            ChordUpdateKind::Neighbors {
                predecessors,
                successors,
            } => {
                w.u8(UPDATE_NEIGHBORS);
                w.list(2, predecessors);
                w.list(2, successors);
            }
            ChordUpdateKind::Full {
                predecessors,
                successors,
                fingers,
            } => {
                w.u8(UPDATE_FULL);
                w.list(2, predecessors);
                w.list(2, successors);
                w.list(2, fingers);
            }
        }
    }
}

repr_methods!(PingReq);
repr_methods!(PingAns);
repr_methods!(JoinReq);
repr_methods!(JoinAns);
repr_methods!(LeaveReq);
repr_methods!(ChordLeaveData);
repr_methods!(ChordUpdate);

#[cfg(test)]
pub(super) mod tests {
    use super::super::testutil::{both_ways, hex, mutate};
    use super::*;

    pub fn node(last: u8) -> NodeId {
        let mut id = [0; 16];
        id[..4].copy_from_slice(&[0x20, 0x01, 0x00, 0x2a]);
        id[15] = last;
        NodeId(id)
    }

    /// V3's body: uptime 120, neighbors, predecessor A (…0a), successor C (…0c).
    pub fn v3_update() -> (Vec<u8>, ChordUpdate) {
        (
            hex("00000078 02 | 0010 2001002a00000000000000000000000a
                 | 0010 2001002a00000000000000000000000c"),
            ChordUpdate {
                uptime: 120,
                kind: ChordUpdateKind::Neighbors {
                    predecessors: vec![node(0x0a)],
                    successors: vec![node(0x0c)],
                },
            },
        )
    }

    fn full_update() -> (Vec<u8>, ChordUpdate) {
        (
            hex("ffffffff 03 | 0000 | 0010 2001002a00000000000000000000000c
                 | 0020 2001002a000000000000000000000001 2001002a000000000000000000000002"),
            ChordUpdate {
                uptime: u32::MAX,
                kind: ChordUpdateKind::Full {
                    predecessors: vec![],
                    successors: vec![node(0x0c)],
                    fingers: vec![node(1), node(2)],
                },
            },
        )
    }

    #[test]
    fn updates_both_ways() {
        for (bytes, update) in [
            v3_update(),
            full_update(),
            (
                hex("00000001 01"),
                ChordUpdate {
                    uptime: 1,
                    kind: ChordUpdateKind::PeerReady,
                },
            ),
        ] {
            both_ways(&bytes, &update, ChordUpdate::parse, ChordUpdate::to_bytes);
        }
        for ty in [0, 4, 0xff] {
            assert_eq!(
                ChordUpdate::parse(&[0, 0, 0, 0, ty]),
                Err(WireError::Invalid("ChordUpdateType"))
            );
        }
        // A Node-ID list whose length is not a multiple of 16.
        assert_eq!(
            ChordUpdate::parse(&hex("00000000 02 0001 00 0000")),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn ping_both_ways() {
        both_ways(
            &hex("0000"),
            &PingReq::default(),
            PingReq::parse,
            PingReq::to_bytes,
        );
        both_ways(
            &hex("0003 000000"),
            &PingReq {
                padding: vec![0; 3],
            },
            PingReq::parse,
            PingReq::to_bytes,
        );
        both_ways(
            &hex("0102030405060708 0000018bcfe56800"),
            &PingAns {
                response_id: 0x0102_0304_0506_0708,
                time: 1_700_000_000_000,
            },
            PingAns::parse,
            PingAns::to_bytes,
        );
    }

    #[test]
    fn join_and_leave_both_ways() {
        let join = JoinReq {
            joining_peer_id: node(0x0b),
            overlay_specific_data: vec![],
        };
        both_ways(
            &hex("2001002a00000000000000000000000b 0000"),
            &join,
            JoinReq::parse,
            JoinReq::to_bytes,
        );
        both_ways(
            &hex("0002 abcd"),
            &JoinAns {
                overlay_specific_data: hex("abcd"),
            },
            JoinAns::parse,
            JoinAns::to_bytes,
        );
        let data = ChordLeaveData::FromSucc(vec![node(0x0c)]);
        let data_bytes = hex("01 0010 2001002a00000000000000000000000c");
        both_ways(
            &data_bytes,
            &data,
            ChordLeaveData::parse,
            ChordLeaveData::to_bytes,
        );
        let leave = LeaveReq {
            leaving_peer_id: node(0x0b),
            overlay_specific_data: data.to_bytes(),
        };
        let mut leave_bytes = hex("2001002a00000000000000000000000b 0013");
        leave_bytes.extend_from_slice(&data_bytes);
        both_ways(&leave_bytes, &leave, LeaveReq::parse, LeaveReq::to_bytes);
        both_ways(
            &hex("02 0000"),
            &ChordLeaveData::FromPred(vec![]),
            ChordLeaveData::parse,
            ChordLeaveData::to_bytes,
        );
        assert_eq!(
            ChordLeaveData::parse(&hex("00 0000")),
            Err(WireError::Invalid("ChordLeaveType"))
        );
    }

    #[test]
    fn random_mutations_of_updates() {
        let seeds = vec![v3_update().0, full_update().0];
        let parsed = mutate(
            &seeds,
            5000,
            0x5eed,
            ChordUpdate::parse,
            ChordUpdate::to_bytes,
        );
        assert!(parsed > 100 && parsed < 4500, "{parsed}");
    }
}
