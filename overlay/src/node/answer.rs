//! Answers to the requests that end here: Store, Fetch and Find go to the storage side
//! (`data`), Join, Leave and Update to the ring; Ping, RouteQuery and Probe are answered
//! here. Stat is refused.

use super::routing::Route;
use super::Node;
use crate::id;
use crate::wire::{
    ChordRouteQueryAns, ChordUpdate, ErrorCode, ErrorResponse, GenericCertificate, JoinReq,
    LeaveReq, MessageCode, MessageContents, NodeId, PingAns, PingReq, ProbeAns, ProbeInformation,
    ProbeReq, RouteQueryReq,
};
use rand_core::RngCore;
use std::time::Instant;

/// An error answer: `code`, with `info` saying why.
pub(super) fn error(code: ErrorCode, info: &str) -> MessageContents {
    MessageContents::error(&ErrorResponse {
        code,
        info: info.as_bytes().to_vec(),
    })
}

impl Node {
    /// Answers a request addressed to us (or to a key we own), with the certificates the
    /// answer must carry. `direct`: it came over the link of its originator (no via
    /// entries). `None`: no answer.
    pub(super) fn answer(
        &mut self,
        now: Instant,
        origin: NodeId,
        direct: bool,
        contents: &MessageContents,
        certs: &[GenericCertificate],
    ) -> Option<(MessageContents, Vec<GenericCertificate>)> {
        if contents.extensions.iter().any(|e| e.critical) {
            let refused = error(ErrorCode::UnknownExtension, "critical extension");
            return Some((refused, Vec::new()));
        }
        match contents.code {
            MessageCode::StoreReq
            | MessageCode::FetchReq
            | MessageCode::FindReq
            | MessageCode::StatReq => Some(self.data_request(now, origin, direct, contents, certs)),
            _ => self
                .answer_topology(now, origin, direct, contents)
                .map(|c| (c, Vec::new())),
        }
    }

    /// Answers a topology or liveness request; refuses a method we do not support.
    fn answer_topology(
        &mut self,
        now: Instant,
        origin: NodeId,
        direct: bool,
        contents: &MessageContents,
    ) -> Option<MessageContents> {
        let err = |code: ErrorCode, info: &str| Some(error(code, info));
        let body = &contents.body;
        match contents.code {
            MessageCode::PingReq => {
                PingReq::parse(body).ok()?;
                let ans = PingAns {
                    response_id: self.rng.next_u64(),
                    time: self.now_ms(now),
                };
                Some(MessageContents::new(MessageCode::PingAns, ans.to_bytes()))
            }
            MessageCode::UpdateReq => {
                let Ok(update) = ChordUpdate::parse(body) else {
                    return err(ErrorCode::InvalidMessage, "ChordUpdate");
                };
                self.on_update(now, origin, direct, update);
                Some(MessageContents::new(MessageCode::UpdateAns, Vec::new()))
            }
            MessageCode::JoinReq => {
                let Ok(req) = JoinReq::parse(body) else {
                    return err(ErrorCode::InvalidMessage, "JoinReq");
                };
                self.on_join(now, origin, direct, req)
            }
            MessageCode::LeaveReq => {
                let Ok(req) = LeaveReq::parse(body) else {
                    return err(ErrorCode::InvalidMessage, "LeaveReq");
                };
                if req.leaving_peer_id != origin || !direct {
                    return err(ErrorCode::Forbidden, "Leave not from the leaving peer");
                }
                self.on_leave(now, origin, &req);
                Some(MessageContents::new(MessageCode::LeaveAns, Vec::new()))
            }
            MessageCode::RouteQueryReq => {
                let Ok(req) = RouteQueryReq::parse(body) else {
                    return err(ErrorCode::InvalidMessage, "RouteQueryReq");
                };
                let next = match self.route(&req.destination) {
                    Route::Link(n) => n,
                    _ => self.me,
                };
                if req.send_update && self.links.contains(&origin) {
                    self.send_update_to(now, origin, true);
                }
                let ans = ChordRouteQueryAns { next_peer: next };
                Some(MessageContents::new(
                    MessageCode::RouteQueryAns,
                    ans.to_bytes(),
                ))
            }
            MessageCode::ProbeReq => {
                let Ok(req) = ProbeReq::parse(body) else {
                    return err(ErrorCode::InvalidMessage, "ProbeReq");
                };
                Some(MessageContents::new(
                    MessageCode::ProbeAns,
                    self.probe(now, &req).to_bytes(),
                ))
            }
            _ => err(ErrorCode::Forbidden, "method not supported"),
        }
    }

    /// The Probe values we report (§6.4.2.5); other types are left out.
    fn probe(&self, now: Instant, req: &ProbeReq) -> ProbeAns {
        use crate::wire::probe_type;
        let mut info = Vec::new();
        for &ty in req.requested.iter().take(8) {
            let value = match ty {
                probe_type::RESPONSIBLE_SET => {
                    let span = match self.chord.predecessor() {
                        Some(p) => id::arc_distance(p.position(), self.me.position()),
                        None => id::ARC_MASK,
                    };
                    id::arc_ppb(span)
                }
                probe_type::NUM_RESOURCES => self.data.resources().count() as u32,
                probe_type::UPTIME => self.uptime(now),
                _ => continue,
            };
            info.push(ProbeInformation {
                ty,
                value: value.to_be_bytes().to_vec(),
            });
        }
        ProbeAns { info }
    }
}
