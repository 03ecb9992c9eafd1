//! Routing (RFC 6940 §6.1–§6.2, symmetric recursive): what happens to a message received
//! on a link. It is forwarded toward its destination or, if it ends here, has its
//! signature checked and is taken as a request to answer (`answer`) or as the answer to
//! one of our transactions (`transaction`).
//!
//! A request travels hop by hop toward its destination; each forwarder appends the link
//! peer it came from to the via list, decrements the TTL (initial 100, R13) and refuses a
//! message whose via list already holds itself (loop) or whose TTL ran out, answering the
//! originator with Error_Loop_Detected / Error_TTL_Exceeded. The node responsible for the
//! destination answers along the reversed via list. Originators retransmit end to end
//! (`transaction`); forwarders keep no state.
//!
//! **Signatures.** Every message we originate carries a SecurityBlock signed with our
//! Ed25519 host identity, our key as a Raw Public Key certificate, and SignerIdentity =
//! SHA-256 of that certificate (R9). Signatures are checked **once, at the node that
//! terminates the message** (the destination of a request, the originator receiving an
//! answer): intermediate hops only read the forwarding header. The check: the certificate's
//! key verifies the signature over `Message::signed_bytes`, and the HIT computed from the
//! key equals the originator's Node-ID (the first via entry, or the link peer when the via
//! list is empty). Forwarders are authenticated per hop by the link (HIP/ESP), so
//! checking at every hop would only repeat work; the simulator measured it as the largest
//! cost of a 10,000-node run (docs/OVERLAY.md, "Node").

use super::{answer, Node, State};
use crate::id;
use crate::wire::{
    fragment, option_flags, Destination, ErrorCode, ForwardingHeader, GenericCertificate, Message,
    MessageCode, MessageContents, NodeId, SignatureAndHashAlgorithm,
};
use hip::identity::PublicIdentity;
use std::time::Instant;

/// Where a message goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Local,
    Link(NodeId),
    None,
}

impl Node {
    /// One RELOAD message (unframed) received on the link to `link_peer`.
    pub fn handle_message(&mut self, now: Instant, link_peer: NodeId, bytes: &[u8]) {
        let Some((header, payload, route)) = self.read_header(link_peer, bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let code = MessageCode::from(u16::from_be_bytes([payload[0], payload[1]]));
        // §6.3.2: a TTL above what any originator may set is refused like a spent one.
        if header.ttl > self.config.initial_ttl {
            self.stats.ttl_exceeded += 1;
            self.error_back(
                link_peer,
                &header,
                code,
                ErrorCode::TtlExceeded,
                "ttl too high",
            );
            return;
        }
        // §6.3.2.3: we understand no forwarding option, so one that the node in our place
        // must understand refuses the message.
        let critical = match route {
            Route::Local => option_flags::DESTINATION_CRITICAL,
            _ => option_flags::FORWARD_CRITICAL,
        };
        if header.options.iter().any(|o| o.flags & critical != 0) {
            self.stats.malformed += 1;
            let why = "critical forwarding option";
            let refused = ErrorCode::UnsupportedForwardingOption;
            self.error_back(link_peer, &header, code, refused, why);
            return;
        }
        match route {
            Route::Local => self.deliver(now, link_peer, bytes),
            Route::Link(next) if next == link_peer => {
                let first = header.destination_list.first();
                let next = first.map_or(link_peer, |d| self.bounce(link_peer, d));
                self.forward(link_peer, header, payload, code, next);
            }
            Route::Link(next) => self.forward(link_peer, header, payload, code, next),
            Route::None => {
                self.stats.unroutable += 1;
                self.error_back(link_peer, &header, code, ErrorCode::NotFound, "no route");
            }
        }
    }

    /// The forwarding header of a message from `link_peer`, the rest of the message, and
    /// where it goes. `None` drops it as malformed: from a Node-ID without a link, too
    /// large, not parsed, of another overlay, a fragment, too short for a message code, or
    /// with a destination list we never send.
    fn read_header<'a>(
        &self,
        link_peer: NodeId,
        bytes: &'a [u8],
    ) -> Option<(ForwardingHeader, &'a [u8], Route)> {
        if !self.links.contains(&link_peer) || bytes.len() > self.config.max_message {
            return None;
        }
        let (mut header, payload) = ForwardingHeader::parse(bytes).ok()?;
        if header.overlay != self.config.overlay
            || !header.is_unfragmented()
            || header.fragment & fragment::FLAG == 0
            || payload.len() < 2
        {
            return None;
        }
        // Leading entries that name us are done with; the first other one decides.
        loop {
            let last = header.destination_list.len() == 1;
            let first = header.destination_list.first()?;
            let route = match first {
                Destination::Node(n) if *n == self.me && !last => {
                    header.destination_list.remove(0);
                    continue;
                }
                Destination::Node(n) if *n == NodeId::WILDCARD => Route::Local,
                Destination::Node(_) => self.route(first),
                Destination::Resource(_) => match self.route(first) {
                    // §6.1.1: a Resource-ID must be the only entry.
                    Route::Local if !last => return None,
                    route => route,
                },
                // We never hand out opaque or compressed IDs (RFC 7086 §5.1).
                _ => return None,
            };
            return Some((header, payload, route));
        }
    }

    /// True if we are a joined peer responsible for `k`.
    pub(super) fn owns(&self, k: u128) -> bool {
        self.state == State::Joined && !self.config.client && self.chord.responsible(k)
    }

    /// The link toward key `k` when the message is not ours.
    fn route_to_key(&self, k: u128) -> Route {
        if self.config.client || self.state != State::Joined {
            // A client routes through its peer; a joining node through a bootstrap.
            let via = self
                .attached
                .into_iter()
                .chain(self.bootstraps.iter().copied())
                .find(|b| self.links.contains(b));
            return via.map_or(Route::None, Route::Link);
        }
        match self.chord.next_hop(k) {
            Some(n) => Route::Link(n),
            None => Route::None,
        }
    }

    /// Toward a Node-ID that is not ours: straight there if linked (§6.1.2); if we own
    /// its position, it can only be a client of ours, and without a link it is gone.
    fn route_to_node(&self, n: NodeId) -> Route {
        if self.links.contains(&n) {
            return Route::Link(n);
        }
        if self.owns(n.position()) {
            return Route::None;
        }
        self.route_to_key(n.position())
    }

    /// Where a message to `dest` goes next: here, over a link, or nowhere.
    pub(super) fn route(&self, dest: &Destination) -> Route {
        match dest {
            Destination::Node(n) if *n == self.me => Route::Local,
            Destination::Node(n) => self.route_to_node(*n),
            Destination::Resource(r) => match id::resource_position(r) {
                Some(k) if self.owns(k) => Route::Local,
                Some(k) => self.route_to_key(k),
                None => Route::None,
            },
            _ => Route::None,
        }
    }

    /// Where a message goes that our table would send back to `link_peer`, the peer it
    /// came from. In a consistent ring that never happens: each hop is closer to the key.
    /// It happens when a peer between us died and the link peer has noticed and we have
    /// not: it takes us for the owner, we take it for the peer before the dead one, and
    /// the message would go back and forth until the loop check stops it. We send it to
    /// the peer our own table makes responsible instead (the dead one, if that is who it
    /// is): the originator's retransmission, re-routed, reaches the right node as soon as
    /// we notice. A peer that is not linked, or is the link peer itself, leaves the
    /// message to the loop check.
    fn bounce(&mut self, link_peer: NodeId, dest: &Destination) -> NodeId {
        let k = match dest {
            Destination::Node(n) => Some(n.position()),
            Destination::Resource(r) => id::resource_position(r),
            _ => None,
        };
        match k.and_then(|k| self.chord.owner(k)) {
            Some(owner) if owner != link_peer && self.links.contains(&owner) => {
                self.stats.bounced += 1;
                owner
            }
            _ => link_peer,
        }
    }

    /// Passes a message on to `next`, one hop further (TTL down by one, the link it came
    /// from added to its via list), unless it loops or its TTL runs out.
    fn forward(
        &mut self,
        link_peer: NodeId,
        mut header: ForwardingHeader,
        payload: &[u8],
        code: MessageCode,
        next: NodeId,
    ) {
        let me = Destination::Node(self.me);
        if header.via_list.contains(&me) {
            self.stats.loops += 1;
            self.error_back(link_peer, &header, code, ErrorCode::LoopDetected, "loop");
            return;
        }
        if header.ttl <= 1 {
            self.stats.ttl_exceeded += 1;
            self.error_back(link_peer, &header, code, ErrorCode::TtlExceeded, "ttl");
            return;
        }
        header.ttl -= 1;
        header.via_list.push(Destination::Node(link_peer));
        if !header.encodable(payload.len()) {
            self.stats.malformed += 1;
            return;
        }
        self.stats.forwarded += 1;
        self.transmit(next, header.to_bytes(payload));
    }

    /// Sends an answer to a request that reached us: Destination List = the reversed via
    /// list plus the link peer it came from (§6.2.2).
    fn reply(
        &mut self,
        link_peer: NodeId,
        header: &ForwardingHeader,
        contents: MessageContents,
        certs: Vec<GenericCertificate>,
    ) {
        let mut dest: Vec<Destination> = header.via_list.iter().rev().cloned().collect();
        dest.insert(0, Destination::Node(link_peer));
        let tx = header.transaction_id;
        let mut bytes = self.build(tx, dest.clone(), contents, certs);
        // Nothing larger than a message may be, or than the requester asked for (§6.3.2's
        // max_response_length, 0 = no limit of its own), goes out: it would be dropped on
        // the way. The requester hears why and can ask for less (keys, array ranges).
        let asked = usize::try_from(header.max_response_length).unwrap_or(usize::MAX);
        let limit = match asked {
            0 => self.config.max_message,
            n => n.min(self.config.max_message),
        };
        if bytes.len() > limit {
            self.stats.too_large += 1;
            let why = format!("answer of {} bytes, limit {limit}", bytes.len());
            let refused = answer::error(ErrorCode::ResponseTooLarge, &why);
            bytes = self.build(tx, dest, refused, Vec::new());
        }
        self.transmit(link_peer, bytes);
    }

    /// A message with `code` goes no further: if it is a request, its originator hears
    /// `error` and why; an answer is dropped (nobody answers an answer).
    fn error_back(
        &mut self,
        link_peer: NodeId,
        header: &ForwardingHeader,
        code: MessageCode,
        error: ErrorCode,
        info: &str,
    ) {
        if code.is_request() {
            self.reply(link_peer, header, answer::error(error, info), Vec::new());
        }
    }

    /// Checks the signature of a message that terminates here; returns the originator.
    ///
    /// A message that comes straight from its originator (empty via list) is taken on the
    /// link's word: the link is a HIP association with that very HIT, whose base exchange
    /// checked the same Ed25519 key and whose ESP authenticates every packet, so the
    /// signature would prove nothing more. Its certificate must still be the link peer's
    /// key (a cached hash), but the signature itself is not checked, which halves the
    /// cost of maintenance between neighbours. Every message is still signed.
    fn verify(&mut self, link_peer: NodeId, msg: &Message) -> Option<NodeId> {
        let origin = match msg.header.via_list.first() {
            Some(Destination::Node(n)) => *n,
            Some(_) => return None,
            None => link_peer,
        };
        let sig = &msg.security.signature;
        if sig.algorithm != SignatureAndHashAlgorithm::ED25519 {
            return None;
        }
        // The certificate the SignerIdentity names (§6.3.4), not merely the first one: a
        // message may carry the certificates of stored values besides its signer's.
        let key = msg
            .security
            .certificates
            .iter()
            .filter_map(GenericCertificate::ed25519_key)
            .find(|k| crate::storage::signer_identity(k) == sig.identity)?;
        if !self.keys.contains_key(&key) {
            let public = PublicIdentity::from_public_bytes(key).ok()?;
            if self.keys.len() >= self.config.max_keys {
                self.keys.clear();
            }
            self.keys.insert(key, public);
        }
        let public = self.keys.get(&key)?;
        if NodeId::from(public.hit()) != origin {
            return None;
        }
        if msg.header.via_list.is_empty() {
            return Some(origin);
        }
        public.verify(&msg.signed_bytes(), &sig.value).ok()?;
        Some(origin)
    }

    /// A message that ends here: its signature checked, a request is answered and an
    /// answer ends its transaction.
    fn deliver(&mut self, now: Instant, link_peer: NodeId, bytes: &[u8]) {
        let Ok(msg) = Message::parse(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(origin) = self.verify(link_peer, &msg) else {
            self.stats.bad_signatures += 1;
            let (header, code) = (&msg.header, msg.contents.code);
            self.error_back(link_peer, header, code, ErrorCode::Forbidden, "signature");
            return;
        };
        if msg.contents.code.is_request() {
            let direct = msg.header.via_list.is_empty();
            let asks = msg.contents.extensions.iter().any(|e| e.is_connect_back());
            if asks && !direct && !self.links.contains(&origin) {
                // A joining peer behind a NAT looks for its admitting peer and asks it to
                // open the link (`connect_back`). The first hop of its route is the one
                // that put the origin on the via list: the link peer, or the next entry.
                let first_hop = match msg.header.via_list.get(1) {
                    Some(Destination::Node(n)) => *n,
                    _ => link_peer,
                };
                self.connect_back(origin, first_hop);
            }
            let certs = &msg.security.certificates;
            if let Some((answer, certs)) = self.answer(now, origin, direct, &msg.contents, certs) {
                self.reply(link_peer, &msg.header, answer, certs);
            }
        } else {
            let hops = msg.header.via_list.len() as u32 + 1;
            let tx = msg.header.transaction_id;
            let certs = &msg.security.certificates;
            self.answer_received(now, tx, origin, hops, &msg.contents, certs);
        }
    }
}
