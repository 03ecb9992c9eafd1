//! Links: the ones the embedder reports up or down, and the ones we ask it to open
//! ([`Event::Connect`]) for peers worth routing through, which enter the routing table
//! when their link comes up.

use super::{Event, Node, State};
use crate::wire::NodeId;
use std::time::{Duration, Instant};

/// A link we asked for and that neither came up nor failed is forgotten after this long
/// (at the next periodic Update), so that the peer can be asked for again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Links asked for at once on the word of one peer (the peers an Update listed): more
/// than a neighbour set and a few fingers an honest Update brings at a time.
const MAX_CONNECTS_PER_HINT: usize = 8;
/// How long a link stays up before the node lets it go if it does not route through its
/// peer: long enough for the transactions that opened it (a join through a bootstrap, at
/// most 5 sends 3 s apart, R13). Without this, links opened by nodes that joined through a
/// bootstrap would stay, and fill its link slots.
pub(super) const LINK_GRACE: Duration = Duration::from_secs(15);

impl Node {
    /// A link to `peer` is up (a HIP association exists and carries RELOAD framing).
    pub fn link_up(&mut self, now: Instant, peer: NodeId) {
        if peer == self.me {
            return;
        }
        self.links.insert(peer);
        self.linked_at.insert(peer, now);
        let grace = now + LINK_GRACE;
        self.release_at = Some(self.release_at.map_or(grace, |t| t.min(grace)));
        let wanted = self.connecting.remove(&peer).is_some();
        if wanted || self.state != State::Joined || self.bootstraps.contains(&peer) {
            self.ours.insert(peer);
        }
        match self.state {
            State::Joining {
                ap: Some(ap),
                join_sent: false,
            } if ap == peer => self.ap_linked(now, ap),
            State::Joined if wanted && !self.config.client && self.chord.insert(peer) => {
                self.table_changed(now);
            }
            _ => {}
        }
    }

    /// The link to `peer` broke, or could not be opened.
    pub fn link_down(&mut self, now: Instant, peer: NodeId) {
        self.links.remove(&peer);
        self.linked_at.remove(&peer);
        self.ours.remove(&peer);
        self.connecting.remove(&peer);
        if self.attached == Some(peer) {
            self.attached = None;
            self.state = State::SEEKING;
            self.rejoin_at = Some(now);
            return;
        }
        if let State::Joining { ap: Some(ap), .. } = self.state {
            if ap == peer {
                self.join_failed(now);
            }
        }
        let finger = self.chord.finger_index_of(peer);
        if self.remove_peer(now, peer) {
            if let Some(i) = finger {
                // Reactive finger repair (§10.7.1): look the entry up again soon.
                self.queue_finger(now, i);
            }
        }
    }

    /// A joining peer behind a NAT (`origin`, whose request reached us through
    /// `first_hop`) asked us, its admitting peer, to open the link to it: its own I1 would
    /// be answered straight to its NAT, which drops the R1, while ours, relayed by the
    /// first hop of its route, reaches it, and its R1 opens the way (RFC 6940 §6.5.1 has
    /// both ends of an Attach connect). Only a peer whose Node-ID falls in our range is
    /// one we admit. The link alone admits nothing: the peer enters the table by its
    /// Join, as any neighbour does.
    pub(super) fn connect_back(&mut self, origin: NodeId, first_hop: NodeId) {
        if self.state != State::Joined
            || self.config.client
            || origin == self.me
            || self.links.contains(&origin)
            || !self.chord.responsible(origin.position())
        {
            return;
        }
        self.stats.connect_backs += 1;
        self.push_event(Event::Connect {
            peer: origin,
            hint: Some(first_hop),
        });
    }

    /// A peer heard of: into the table if linked and useful, else ask for a link.
    pub(super) fn consider(&mut self, now: Instant, n: NodeId, hint: Option<NodeId>) {
        if self.consider_quiet(now, n, hint) {
            self.table_changed(now);
        }
    }

    /// `consider` without the follow-up; true if the table changed.
    pub(super) fn consider_quiet(&mut self, now: Instant, n: NodeId, hint: Option<NodeId>) -> bool {
        if n == self.me || n == NodeId::WILDCARD || self.chord.contains(n) {
            return false;
        }
        if !self.chord.would_keep(n) {
            return false;
        }
        if self.links.contains(&n) {
            return self.chord.insert(n);
        }
        // One peer's word opens few links: an Update listing invented IDs around us would
        // otherwise take every slot for a minute.
        let from_hint = self.connecting.values().filter(|c| c.1 == hint).count();
        if self.state == State::Joined
            && !self.connecting.contains_key(&n)
            && self.connecting.len() < self.config.max_connecting
        {
            if hint.is_some() && from_hint >= MAX_CONNECTS_PER_HINT {
                self.stats.overflows += 1;
                return false;
            }
            self.connecting.insert(n, (now, hint));
            self.push_event(Event::Connect { peer: n, hint });
        }
        false
    }

    /// Lets go of our links up for `LINK_GRACE` whose peer we do not route through (not in
    /// the routing table, not asked for, not the peer we are attached to): the embedder
    /// closes them ([`Event::Disconnect`]) and reports them down. Links in the table are
    /// let go when they leave it (`Chord::prune`). A link its peer opened stays while
    /// there is room (`max_their_links`): Chord's fingers point one way, and closing a link
    /// our peer routes through loses what was under way on it and makes the peer open it
    /// again.
    pub(super) fn release_links(&mut self, now: Instant) {
        self.release_at = None;
        let mut unneeded = Vec::new();
        let mut theirs = 0;
        for (&peer, &since) in &self.linked_at {
            let needed = self.chord.contains(peer)
                || self.connecting.contains_key(&peer)
                || self.attached == Some(peer);
            theirs += usize::from(!needed && !self.ours.contains(&peer));
            let at = since + LINK_GRACE;
            if at > now {
                self.release_at = Some(self.release_at.map_or(at, |t| t.min(at)));
            } else if !needed {
                unneeded.push((since, peer));
            }
        }
        // Oldest first: a joiner that linked to us a moment ago still needs its link.
        unneeded.sort();
        let mut evict = theirs.saturating_sub(self.config.max_their_links);
        for (_, peer) in unneeded {
            let ours = self.ours.contains(&peer);
            if !ours && evict == 0 {
                continue;
            }
            if !ours {
                evict -= 1;
            }
            self.ours.remove(&peer);
            self.linked_at.remove(&peer);
            self.push_event(Event::Disconnect { peer });
        }
    }

    /// Forgets the links we asked for longer than `CONNECT_TIMEOUT` ago.
    pub(super) fn forget_stale_connects(&mut self, now: Instant) {
        self.connecting
            .retain(|_, (since, _)| now.saturating_duration_since(*since) < CONNECT_TIMEOUT);
    }
}
