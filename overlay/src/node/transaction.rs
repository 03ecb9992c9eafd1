//! Transactions: the requests we originate. Each is signed with our host identity, routed
//! from the current table, kept until its answer comes back and retransmitted end to end
//! meanwhile (every `reliability_timer`, `transmissions` sends in all, R13); its answer,
//! error or timeout goes back to what started it ([`Purpose`]).

use super::routing::Route;
use super::{Error, Event, Failure, Node, RequestHandle};
use crate::wire::{
    fragment, Destination, ForwardingHeader, GenericCertificate, Message, MessageCode,
    MessageContents, MessageExtension, NodeId, PingReq, ProbeAns, ResourceId, SecurityBlock,
    Signature, SignatureAndHashAlgorithm,
};
use rand_core::RngCore;
use std::time::Instant;

/// Why we started a transaction: what to do with its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// One of the embedder's requests.
    App(RequestHandle),
    /// Ping to our ID + 1: who admits us.
    JoinLookup,
    /// Our Join, through this admitting peer.
    Join(NodeId),
    /// Ping to a finger target.
    Finger(u32),
    /// Probe of finger `i` itself: is it still the finger?
    FingerCheck(u32),
    /// Update, Leave: answers only end the transaction.
    Maintenance,
    /// Copy `n` of records to another peer (`data`): its answer lets the next one go.
    Copy(u64),
}

/// A transaction we started and still wait for.
#[derive(Debug)]
pub(super) struct Pending {
    purpose: Purpose,
    code: MessageCode,
    /// The key the message is routed by, for re-routing retransmissions.
    dest: Destination,
    bytes: Vec<u8>,
    sent: u32,
    due: Instant,
}

impl Node {
    /// A random transaction ID, not 0 and not one of ours in flight.
    fn transaction_id(&mut self) -> u64 {
        loop {
            let t = self.rng.next_u64();
            if t != 0 && !self.pending.contains_key(&t) {
                return t;
            }
        }
    }

    /// A signed message from us.
    pub(super) fn build(
        &self,
        tx: u64,
        dest: Vec<Destination>,
        contents: MessageContents,
        extra_certs: Vec<GenericCertificate>,
    ) -> Vec<u8> {
        let mut certificates = vec![self.cert.clone()];
        certificates.extend(extra_certs.into_iter().filter(|c| *c != self.cert));
        let mut msg = Message {
            header: ForwardingHeader {
                overlay: self.config.overlay,
                configuration_sequence: 0,
                ttl: self.config.initial_ttl,
                fragment: fragment::UNFRAGMENTED,
                transaction_id: tx,
                max_response_length: 0,
                via_list: Vec::new(),
                destination_list: dest,
                options: Vec::new(),
            },
            contents,
            security: SecurityBlock {
                certificates,
                signature: Signature {
                    algorithm: SignatureAndHashAlgorithm::ED25519,
                    identity: self.signer.clone(),
                    value: Vec::new(),
                },
            },
        };
        msg.security.signature.value = self.identity.sign(&msg.signed_bytes()).to_vec();
        msg.to_bytes()
    }

    /// Starts a transaction: builds, routes and sends a request, and arms its
    /// retransmission timer. A request for a key we own is answered locally. `certs` go
    /// into the security block besides ours (the signers of values being stored).
    pub(super) fn request(
        &mut self,
        now: Instant,
        dest: Destination,
        code: MessageCode,
        body: Vec<u8>,
        purpose: Purpose,
        certs: Vec<GenericCertificate>,
    ) -> Result<(), Error> {
        let app = matches!(purpose, Purpose::App(_));
        let maintenance = self.pending.len() - self.app_pending;
        let room = if app {
            self.app_pending < self.config.max_app_pending
        } else {
            maintenance
                < self
                    .config
                    .max_pending
                    .saturating_sub(self.config.max_app_pending)
        };
        if !room {
            self.stats.overflows += 1;
            return Err(Error::TooManyRequests);
        }
        let mut contents = MessageContents::new(code, body);
        if purpose == Purpose::JoinLookup && self.behind_nat {
            contents.extensions.push(MessageExtension::connect_back());
        }
        let route = self.route(&dest);
        if route == Route::Local {
            let mut certs = certs;
            certs.push(self.cert.clone());
            if let Some((answer, certs)) = self.answer(now, self.me, true, &contents, &certs) {
                self.complete(now, purpose, code, self.me, 0, &answer, &certs);
            }
            return Ok(());
        }
        let tx = self.transaction_id();
        let bytes = self.build(tx, vec![dest.clone()], contents, certs);
        if bytes.len() > self.config.max_message {
            return Err(Error::TooLarge);
        }
        self.send_on(route, bytes.clone());
        let due = now + self.config.reliability_timer;
        self.pending.insert(
            tx,
            Pending {
                purpose,
                code,
                dest,
                bytes,
                sent: 1,
                due,
            },
        );
        self.retx.insert((due, tx));
        self.app_pending += usize::from(app);
        Ok(())
    }

    /// A transaction leaves `pending`.
    fn ended(&mut self, tx: u64) -> Option<Pending> {
        let p = self.pending.remove(&tx)?;
        self.app_pending -= usize::from(matches!(p.purpose, Purpose::App(_)));
        Some(p)
    }

    /// Pings the owner of ring position `k`: who answers is what we look for (our
    /// admitting peer, a finger).
    pub(super) fn ping_owner(
        &mut self,
        now: Instant,
        k: u128,
        purpose: Purpose,
    ) -> Result<(), Error> {
        let dest = Destination::Resource(ResourceId(k.to_be_bytes().to_vec()));
        let body = PingReq::default().to_bytes();
        self.request(now, dest, MessageCode::PingReq, body, purpose, Vec::new())
    }

    /// A topology request to one neighbour (Leave, Update): nobody waits for its answer.
    pub(super) fn maintenance_request(
        &mut self,
        now: Instant,
        to: NodeId,
        code: MessageCode,
        body: Vec<u8>,
    ) {
        let dest = Destination::Node(to);
        let _ = self.request(now, dest, code, body, Purpose::Maintenance, Vec::new());
    }

    /// The retransmission timer of `tx` fired: send it again, re-routed, or give up after
    /// `transmissions` sends in all.
    pub(super) fn retransmit(&mut self, now: Instant, tx: u64) {
        let Some(p) = self.pending.get_mut(&tx) else {
            return;
        };
        if p.due > now {
            return;
        }
        if p.sent >= self.config.transmissions {
            let p = self.ended(tx).expect("present");
            self.stats.timeouts += 1;
            self.fail(now, p.purpose, Failure::Timeout);
            return;
        }
        p.sent += 1;
        p.due = now + self.config.reliability_timer;
        let (due, dest, bytes) = (p.due, p.dest.clone(), p.bytes.clone());
        self.retx.insert((due, tx));
        self.stats.retransmissions += 1;
        self.send_on(self.route(&dest), bytes);
    }

    /// Sends one of our requests on its way. Without a route it is counted, and waits for
    /// its retransmission (re-routed from the table of then).
    fn send_on(&mut self, route: Route, bytes: Vec<u8>) {
        match route {
            Route::Link(next) => self.transmit(next, bytes),
            _ => self.stats.unroutable += 1,
        }
    }

    /// The answer to our transaction `tx` arrived (its signature checked): the transaction
    /// ends. An answer we no longer wait for (a late duplicate) is dropped.
    pub(super) fn answer_received(
        &mut self,
        now: Instant,
        tx: u64,
        responder: NodeId,
        hops: u32,
        contents: &MessageContents,
        certs: &[GenericCertificate],
    ) {
        let Some(p) = self.pending.get(&tx) else {
            return;
        };
        // Every node on the path knows the transaction ID; only the node the request was
        // for may answer it. An error may come from any of them (TTL, loop, no route), and
        // ends the transaction as a lost request would have.
        let plausible = contents.code == MessageCode::Error
            || match &p.dest {
                Destination::Node(n) => responder == *n,
                Destination::Resource(r) => crate::id::resource_position(r)
                    .is_none_or(|k| self.chord.could_own(k, responder, !self.config.client)),
                _ => true,
            };
        if !plausible {
            self.stats.implausible_answers += 1;
            return;
        }
        let Some(p) = self.ended(tx) else {
            return;
        };
        self.retx.remove(&(p.due, tx));
        self.complete(now, p.purpose, p.code, responder, hops, contents, certs);
    }

    /// An answer (or a local result) for a transaction of ours.
    #[allow(clippy::too_many_arguments)]
    fn complete(
        &mut self,
        now: Instant,
        purpose: Purpose,
        code: MessageCode,
        responder: NodeId,
        hops: u32,
        contents: &MessageContents,
        certs: &[GenericCertificate],
    ) {
        if let Some(e) = contents.as_error() {
            let failure = match e {
                Ok(e) => Failure::Remote(e),
                Err(_) => Failure::BadAnswer("error response"),
            };
            self.fail(now, purpose, failure);
            return;
        }
        if code.answer() != Some(contents.code) {
            self.fail(now, purpose, Failure::BadAnswer("answer code"));
            return;
        }
        match purpose {
            Purpose::App(handle) => match self.app_done(handle, responder, hops, contents, certs) {
                Ok(Event::FetchDone { answer, .. }) if self.lookups.owns(handle) => {
                    self.lookup_answered(now, handle, Ok((answer, responder, hops)));
                }
                Ok(event) => self.push_event(event),
                Err(failure) => self.fail(now, purpose, failure),
            },
            Purpose::JoinLookup => self.found_ap(now, responder),
            Purpose::Join(ap) => self.join_answered(now, ap, responder, contents),
            Purpose::Finger(i) => self.finger_found(now, i, responder),
            Purpose::FingerCheck(i) => {
                let answer = ProbeAns::parse(&contents.body).ok();
                self.finger_checked(now, i, responder, answer.as_ref());
            }
            Purpose::Copy(n) => self.copy_done(now, n, None),
            Purpose::Maintenance => {}
        }
    }

    /// A transaction of ours failed: an error answer, an answer refused, or no answer.
    fn fail(&mut self, now: Instant, purpose: Purpose, failure: Failure) {
        match purpose {
            Purpose::App(handle) => {
                self.data.forget_fetch(handle);
                if self.lookups.owns(handle) {
                    self.lookup_answered(now, handle, Err(failure));
                } else {
                    self.push_event(Event::Failed { handle, failure })
                }
            }
            Purpose::JoinLookup | Purpose::Join(_) => self.join_failed(now),
            Purpose::Copy(n) => self.copy_done(now, n, Some(&failure)),
            Purpose::FingerCheck(i) => {
                if let Some(f) = self.chord.finger(i) {
                    self.finger_checked(now, i, f, None);
                }
            }
            Purpose::Finger(_) | Purpose::Maintenance => {}
        }
    }
}
