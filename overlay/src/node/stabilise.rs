//! Stabilisation (RFC 6940 §10.7): Updates received and sent (periodic, and reactive
//! after a neighbour change), what follows any change of the routing table, and the
//! finger lookups.

use super::transaction::Purpose;
use super::{Event, Node, State};
use crate::id::{self, finger_target, in_open};
use crate::wire::{
    probe_type, ChordUpdate, ChordUpdateKind, Destination, MessageCode, NodeId, ProbeAns, ProbeReq,
};
use std::time::{Duration, Instant};

/// After a finger lookup that found a new finger, the next lookup comes this many times
/// sooner than `finger_interval`.
const FINGER_SPEEDUP: u32 = 12;

/// Queued finger lookups (repairs of fingers whose link went down) go out one per step.
const FINGER_QUEUE_STEP: Duration = Duration::from_secs(1);

impl Node {
    /// An Update from `origin` (§10.7.3). Over a direct link the sender is a peer and goes
    /// into the table; every node it lists is a candidate.
    pub(super) fn on_update(
        &mut self,
        now: Instant,
        origin: NodeId,
        direct: bool,
        update: ChordUpdate,
    ) {
        if self.config.client || self.state == State::Left {
            return;
        }
        let mut changed = false;
        if direct && self.links.contains(&origin) {
            changed |= self.chord.insert(origin);
        }
        let (predecessors, successors, fingers) = match update.kind {
            ChordUpdateKind::PeerReady => (Vec::new(), Vec::new(), Vec::new()),
            ChordUpdateKind::Neighbors {
                predecessors,
                successors,
            } => (predecessors, successors, Vec::new()),
            ChordUpdateKind::Full {
                predecessors,
                successors,
                fingers,
            } => (predecessors, successors, fingers),
        };
        let misses = self.misses_between(origin, &predecessors, &successors);
        let neighbours = [predecessors, successors].concat();
        let lists_us = neighbours.contains(&self.me);
        for n in neighbours.into_iter().chain(fingers).take(256) {
            changed |= self.consider_quiet(now, n, Some(origin));
        }
        if let State::Joining {
            ap: Some(ap),
            join_sent: true,
        } = self.state
        {
            if ap == origin {
                self.chord.insert(ap);
                self.become_joined(now);
                return;
            }
        }
        if changed {
            self.table_changed(now);
        }
        // The sender takes us for its neighbour but is not ours, or its neighbours skip a
        // peer we know to lie between it and us: its view is stale. Tell it ours, so that
        // it learns of the peers between us (without this, a node whose successor pointer
        // skips joined peers would never hear of them, nor would two neighbours whose link
        // broke while each kept one to us). No ping-pong: the sender knows no peer between
        // us that we do not, so it has nothing to answer in kind.
        let stale = !self.chord.successors().contains(&origin)
            && !self.chord.predecessors().contains(&origin);
        if direct && lists_us && self.links.contains(&origin) && (stale || misses) {
            self.send_update_to(now, origin, false);
        }
    }

    /// Whether `origin`'s neighbours (`predecessors`, `successors`, nearest first, as its
    /// Update lists them) leave out a peer of our table that lies between it and us: if it
    /// lists us as a successor, it would list every peer it knew between it and us too,
    /// nearer first; likewise on the other side.
    fn misses_between(
        &self,
        origin: NodeId,
        predecessors: &[NodeId],
        successors: &[NodeId],
    ) -> bool {
        let (me, o) = (self.me.position(), origin.position());
        let after = successors.contains(&self.me);
        let before = predecessors.contains(&self.me);
        self.chord
            .peers()
            .filter(|p| *p != origin && !predecessors.contains(p) && !successors.contains(p))
            .any(|p| {
                let x = p.position();
                (after && in_open(x, o, me)) || (before && in_open(x, me, o))
            })
    }

    /// `peer` died or left: out of the table. If it held copies of our records (our
    /// first two successors) or we hold the copies of its records (our first two
    /// predecessors: the second's range passes to the first, which may lack it), those
    /// records are down to two copies: the replication round comes at once, not after the
    /// hold-down, which is for peers that join (their records still have three copies).
    /// True if `peer` was in the table.
    pub(super) fn remove_peer(&mut self, now: Instant, peer: NodeId) -> bool {
        let holder = self.chord.predecessors().iter().take(2).any(|p| *p == peer)
            || self.chord.successors().iter().take(2).any(|s| *s == peer);
        if !self.chord.remove(peer) {
            return false;
        }
        self.table_changed(now);
        if holder && self.state == State::Joined {
            self.data.schedule(now + self.config.reactive_delay);
        }
        if self.chord.is_empty() && !self.bootstraps.is_empty() && self.state == State::Joined {
            // Lost every peer (§10.7.1): join again soon, not at the next periodic Update.
            self.rejoin_at = Some(now + self.config.rejoin_interval);
        }
        true
    }

    /// After any change of the routing table: prune, report neighbour changes, schedule
    /// the reactive Update round and re-replication.
    pub(super) fn table_changed(&mut self, now: Instant) {
        if self.state == State::Joined && !self.chord.is_empty() {
            // A peer came back before the re-join `remove_peer` planned.
            self.rejoin_at = None;
        }
        for gone in self.chord.prune() {
            if self.ours.remove(&gone) {
                self.push_event(Event::Disconnect { peer: gone });
            }
        }
        let preds = self.chord.predecessors();
        let succs = self.chord.successors();
        if (&preds, &succs) != (&self.announced.0, &self.announced.1) {
            let pred_changed = preds.first() != self.announced.0.first();
            // A peer came between our predecessor and us without joining through us
            // (joins that raced, a view that was stale): what it now owns is ours to hand
            // over, as a join through us would have (§10.5 step 6).
            if let (Some(&old), Some(&new), State::Joined) =
                (self.announced.0.first(), preds.first(), self.state)
            {
                let me = self.me.position();
                let between = crate::id::in_open(new.position(), old.position(), me);
                if between && self.handed_over != Some(new) {
                    self.send_records(now, new, old.position(), new.position(), 0);
                }
            }
            self.handed_over = None;
            let succ_changed = succs.iter().take(2).ne(self.announced.1.iter().take(2));
            self.announced = (preds.clone(), succs.clone());
            if self.state == State::Joined {
                if self.update_soon.is_none() {
                    self.update_soon = Some(now + self.config.reactive_delay);
                }
                if pred_changed || succ_changed {
                    self.data.schedule(now + self.config.replica_holddown);
                }
                self.data.neighbours_changed(now);
            }
            self.push_event(Event::NeighboursChanged {
                predecessors: preds,
                successors: succs,
            });
        }
    }

    /// Our neighbours (and, if `full`, our fingers) as an Update body.
    fn update_body(&self, now: Instant, full: bool) -> Vec<u8> {
        let predecessors = self.chord.predecessors();
        let successors = self.chord.successors();
        let kind = if full {
            let mut fingers: Vec<NodeId> = self
                .chord
                .useful_fingers()
                .filter_map(|i| self.chord.finger(i))
                .collect();
            fingers.sort();
            fingers.dedup();
            ChordUpdateKind::Full {
                predecessors,
                successors,
                fingers,
            }
        } else {
            ChordUpdateKind::Neighbors {
                predecessors,
                successors,
            }
        };
        ChordUpdate {
            uptime: self.uptime(now),
            kind,
        }
        .to_bytes()
    }

    /// An Update to one peer; `full` adds our fingers (for a peer that joins through us,
    /// or asks for them with a RouteQuery).
    pub(super) fn send_update_to(&mut self, now: Instant, to: NodeId, full: bool) {
        let body = self.update_body(now, full);
        self.maintenance_request(now, to, MessageCode::UpdateReq, body);
    }

    /// An Update to every neighbour (periodic, or reactive after a change).
    pub(super) fn send_updates(&mut self, now: Instant) {
        let mut to = self.chord.successors();
        for p in self.chord.predecessors() {
            if !to.contains(&p) {
                to.push(p);
            }
        }
        for n in to {
            self.send_update_to(now, n, false);
        }
    }

    /// Finger `i` lost its link: look it up again soon (reactive repair, §10.7.1).
    pub(super) fn queue_finger(&mut self, now: Instant, i: u32) {
        if self.finger_queue.len() < 128 && !self.finger_queue.contains(&i) {
            self.finger_queue.push_back(i);
        }
        self.finger_soon(now + FINGER_QUEUE_STEP);
    }

    /// Brings the next finger lookup forward to `at`, if it is due later.
    fn finger_soon(&mut self, at: Instant) {
        if self.next_finger.is_some_and(|t| t > at) {
            self.next_finger = Some(at);
        }
    }

    /// The finger timer fired: look up the next queued finger, else the next useful one,
    /// round robin.
    pub(super) fn refresh_finger(&mut self, now: Instant) {
        if let Some(i) = self.finger_queue.pop_front() {
            if !self.finger_queue.is_empty() {
                self.next_finger = Some(now + FINGER_QUEUE_STEP);
            }
            self.finger_lookup(now, i);
            return;
        }
        let useful: Vec<u32> = self.chord.useful_fingers().collect();
        if useful.is_empty() {
            return;
        }
        self.finger_cursor = (self.finger_cursor + 1) % useful.len() as u32;
        let i = useful[self.finger_cursor as usize];
        match self.settled_finger(i) {
            Some(f) => self.ask_finger(now, f, i),
            None => self.finger_lookup(now, i),
        }
    }

    /// Finger `i`, if it is linked: then a question to it stands for a lookup.
    fn settled_finger(&self, i: u32) -> Option<NodeId> {
        self.chord.finger(i).filter(|f| self.links.contains(f))
    }

    /// Checks finger `i` by asking the finger itself, over our link, how much of the ring
    /// it is responsible for (Probe, §6.4.2.5): two messages instead of a lookup across the
    /// ring and back. Its answer tells whether a peer joined between the finger's target
    /// and it (`finger_checked`).
    fn ask_finger(&mut self, now: Instant, f: NodeId, i: u32) {
        let body = ProbeReq {
            requested: vec![probe_type::RESPONSIBLE_SET],
        }
        .to_bytes();
        let purpose = Purpose::FingerCheck(i);
        let _ = self.request(
            now,
            Destination::Node(f),
            MessageCode::ProbeReq,
            body,
            purpose,
            Vec::new(),
        );
    }

    /// Finger `i` answered our Probe: if its predecessor, as its responsible set puts it,
    /// lies at or after the finger's target, peers joined there (perhaps many: the ring
    /// grew), and only a lookup finds the one that is the finger now. No answer (or one
    /// without the value): look it up too.
    pub(super) fn finger_checked(
        &mut self,
        now: Instant,
        i: u32,
        f: NodeId,
        answer: Option<&ProbeAns>,
    ) {
        let Some(t) = finger_target(self.me.position(), i) else {
            return;
        };
        let span = answer.and_then(|a| {
            let info = a
                .info
                .iter()
                .find(|p| p.ty == probe_type::RESPONSIBLE_SET)?;
            let ppb = u32::from_be_bytes(info.value.as_slice().try_into().ok()?);
            Some(id::arc_share(ppb))
        });
        if span.is_none_or(|span| id::arc_distance(t, f.position()) >= span) {
            self.queue_finger(now, i);
        }
    }

    /// Ping the owner of finger `i`'s target: it is the finger.
    pub(super) fn finger_lookup(&mut self, now: Instant, i: u32) {
        if let Some(t) = finger_target(self.me.position(), i) {
            let _ = self.ping_owner(now, t, Purpose::Finger(i));
        }
    }

    /// The owner of finger `i`'s target answered our lookup.
    pub(super) fn finger_found(&mut self, now: Instant, i: u32, responder: NodeId) {
        if responder == self.me {
            return;
        }
        // A finger that moved means the ring changed around us (it is still growing, or
        // churning): look at the next finger soon rather than a whole interval later. A
        // stable ring costs one lookup per interval.
        if self.chord.finger(i) != Some(responder) {
            self.finger_soon(now + self.config.finger_interval / FINGER_SPEEDUP);
        }
        self.consider(now, responder, None);
    }
}
