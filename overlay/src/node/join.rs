//! Joining and leaving (RFC 6940 §10.5, §10.9): finding the admitting peer, the Join
//! through it, and the same steps on the admitting side; a client attaches to the peer
//! responsible for its Node-ID instead (R15). Leaves, sent and received.

use super::transaction::Purpose;
use super::{answer, Event, Node, State};
use crate::id;
use crate::wire::{
    ChordLeaveData, Destination, ErrorCode, JoinAns, JoinReq, LeaveReq, MessageCode,
    MessageContents, NodeId,
};
use std::time::Instant;

impl Node {
    /// Starts joining through `bootstrap` (links to them must be up). With no bootstrap
    /// the node is the first peer of the overlay and has joined at once (RFC 6940 §10.5
    /// asks for such an explicit choice). A client attaches instead.
    pub fn join(&mut self, now: Instant, bootstrap: &[NodeId]) {
        if self.state == State::Joined {
            return;
        }
        self.bootstraps = bootstrap
            .iter()
            .copied()
            .filter(|b| *b != self.me)
            .collect();
        self.bootstraps.truncate(16);
        if self.bootstraps.is_empty() && !self.config.client {
            self.become_joined(now);
            return;
        }
        self.start_join(now);
    }

    /// Leaves the ring: Leave to every neighbour (§10.9), then stop routing. Data already
    /// lives on our successors (R6), so nothing is handed over.
    pub fn leave(&mut self, now: Instant) {
        if self.state == State::Joined && !self.config.client {
            let preds = self.chord.predecessors();
            let succs = self.chord.successors();
            for s in &succs {
                let data = ChordLeaveData::FromPred(preds.clone()).to_bytes();
                self.send_leave(now, *s, data);
            }
            for p in preds.iter().filter(|p| !succs.contains(p)) {
                let data = ChordLeaveData::FromSucc(succs.clone()).to_bytes();
                self.send_leave(now, *p, data);
            }
        }
        self.state = State::Left;
        self.next_update = None;
        self.update_soon = None;
        self.next_finger = None;
        self.rejoin_at = None;
        self.data.clear_schedule();
        self.push_event(Event::Left);
    }

    /// A Leave to neighbour `to`, with the neighbours it should learn of (`data`).
    fn send_leave(&mut self, now: Instant, to: NodeId, data: Vec<u8>) {
        let body = LeaveReq {
            leaving_peer_id: self.me,
            overlay_specific_data: data,
        }
        .to_bytes();
        self.maintenance_request(now, to, MessageCode::LeaveReq, body);
    }

    /// The peer we are joining through, while the join is under way.
    pub(super) fn admitting_peer(&self) -> Option<NodeId> {
        match self.state {
            State::Joining { ap, .. } => ap,
            _ => None,
        }
    }

    /// (Re)starts the join: look up the admitting peer. Nothing after `leave`.
    pub(super) fn start_join(&mut self, now: Instant) {
        if self.state == State::Left {
            return;
        }
        self.state = State::SEEKING;
        // The peer responsible for our ID + 1 is our successor-to-be, the admitting peer
        // (§10.5). A client looks for the peer responsible for its own ID (R15).
        let target = if self.config.client {
            self.me.position()
        } else {
            self.me.position().wrapping_add(1)
        };
        if self.ping_owner(now, target, Purpose::JoinLookup).is_err() {
            self.join_failed(now);
        }
    }

    /// The join went wrong at some step: report it and start over after
    /// `rejoin_interval`.
    pub(super) fn join_failed(&mut self, now: Instant) {
        if matches!(self.state, State::Joining { .. }) {
            self.state = State::SEEKING;
            self.rejoin_at = Some(now + self.config.rejoin_interval);
            self.push_event(Event::JoinFailed);
        }
    }

    /// The lookup found our admitting peer (a client: its peer): go on over its link, or
    /// ask for one.
    pub(super) fn found_ap(&mut self, now: Instant, ap: NodeId) {
        if !matches!(self.state, State::Joining { ap: None, .. }) || ap == self.me {
            return;
        }
        self.state = State::Joining {
            ap: Some(ap),
            join_sent: false,
        };
        if self.links.contains(&ap) {
            self.ap_linked(now, ap);
        } else {
            self.push_event(Event::Connect {
                peer: ap,
                hint: self.bootstraps.first().copied(),
            });
        }
    }

    /// The link to our admitting peer is up: send the Join (a client is attached now).
    pub(super) fn ap_linked(&mut self, now: Instant, ap: NodeId) {
        if self.config.client {
            self.attached = Some(ap);
            self.state = State::Joined;
            self.push_event(Event::Joined);
            return;
        }
        self.state = State::Joining {
            ap: Some(ap),
            join_sent: true,
        };
        let body = JoinReq {
            joining_peer_id: self.me,
            overlay_specific_data: Vec::new(),
        }
        .to_bytes();
        let (dest, purpose) = (Destination::Node(ap), Purpose::Join(ap));
        let sent = self.request(now, dest, MessageCode::JoinReq, body, purpose, Vec::new());
        if sent.is_err() {
            self.join_failed(now);
        }
    }

    /// The admitting peer answered our Join. We are joined once its Update arrives.
    pub(super) fn join_answered(
        &mut self,
        now: Instant,
        ap: NodeId,
        responder: NodeId,
        contents: &MessageContents,
    ) {
        if responder != ap || JoinAns::parse(&contents.body).is_err() {
            self.join_failed(now);
        }
    }

    /// We are a peer of the ring: start the timers of stabilisation and look our fingers
    /// up.
    pub(super) fn become_joined(&mut self, now: Instant) {
        self.state = State::Joined;
        self.rejoin_at = None;
        self.next_update = Some(now + self.jittered(self.config.update_interval));
        self.next_finger = Some(now + self.config.finger_interval);
        self.push_event(Event::Joined);
        // Look every useful finger up once (the admitting peer's fingers are only near
        // ours); afterwards one per `finger_interval`.
        let useful: Vec<u32> = self.chord.useful_fingers().collect();
        for i in useful {
            self.finger_lookup(now, i);
        }
        self.table_changed(now);
        self.update_soon = Some(now);
    }

    /// A JoinReq (§10.5 steps 5–8, as the admitting peer).
    pub(super) fn on_join(
        &mut self,
        now: Instant,
        origin: NodeId,
        direct: bool,
        req: JoinReq,
    ) -> Option<MessageContents> {
        let refuse = |code: ErrorCode, info: &str| Some(answer::error(code, info));
        if req.joining_peer_id != origin || !direct || !self.links.contains(&origin) {
            return refuse(ErrorCode::Forbidden, "Join not from the joining peer");
        }
        if self.state != State::Joined || self.config.client {
            return refuse(ErrorCode::Forbidden, "not a peer");
        }
        let old_pred = self.chord.predecessor();
        if let Some(p) = old_pred {
            if !id::in_open(origin.position(), p.position(), self.me.position()) {
                return refuse(ErrorCode::Forbidden, "not in my predecessor range");
            }
        }
        self.chord.insert(origin);
        // Step 6: hand over the data the joining peer now owns.
        let from = old_pred.unwrap_or(self.me).position();
        self.send_records(now, origin, from, origin.position(), 0);
        self.handed_over = Some(origin);
        // Step 7: our tables (it names the joiner as our predecessor).
        self.send_update_to(now, origin, true);
        // Step 8: Update our neighbours (reactively, through table_changed).
        self.table_changed(now);
        Some(MessageContents::new(
            MessageCode::JoinAns,
            JoinAns::default().to_bytes(),
        ))
    }

    /// A neighbour leaves (§10.9): out of the table, and the neighbours it names are
    /// candidates to replace it.
    pub(super) fn on_leave(&mut self, now: Instant, origin: NodeId, req: &LeaveReq) {
        let listed = match ChordLeaveData::parse(&req.overlay_specific_data) {
            Ok(ChordLeaveData::FromSucc(v)) | Ok(ChordLeaveData::FromPred(v)) => v,
            Err(_) => Vec::new(),
        };
        self.remove_peer(now, origin);
        for n in listed.into_iter().take(16) {
            self.consider(now, n, Some(origin));
        }
    }
}
