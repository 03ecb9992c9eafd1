//! Routing checks on a three-node line: TTL and loop detection at a forwarder, signature
//! checks at the terminating node.

use super::*;
use crate::wire::{
    Destination, ErrorCode, ForwardingHeader, GenericCertificate, Message, MessageCode,
    MessageContents, PingAns, PingReq,
};

fn id(secret: u8) -> HostIdentity {
    HostIdentity::from_secret([secret; 32])
}

/// A (joined alone) with links to B and C; returns A and the Node-IDs of B and C.
fn forwarder() -> (Node, Instant, NodeId, NodeId) {
    let now = Instant::now();
    let mut a = Node::new(id(1), Config::default(), now);
    a.join(now, &[]);
    let (b, c) = (NodeId::from(id(2).hit()), NodeId::from(id(3).hit()));
    a.link_up(now, b);
    a.link_up(now, c);
    // C is a peer in A's table (as if it had sent an Update).
    a.chord.insert(c);
    while a.poll_transmit().is_some() {}
    (a, now, b, c)
}

/// A request from `from` to a key that A routes to C.
fn request(from: &HostIdentity, ttl: u8, via: Vec<Destination>, c: NodeId) -> Vec<u8> {
    let sender = Node::new(
        HostIdentity::from_secret(*from.secret_bytes()),
        Config::default(),
        Instant::now(),
    );
    let mut bytes = sender.build(
        7,
        vec![Destination::Resource(ResourceId(c.0.to_vec()))],
        MessageContents::new(MessageCode::PingReq, PingReq::default().to_bytes()),
        Vec::new(),
    );
    let (mut header, payload) = ForwardingHeader::parse(&bytes).unwrap();
    header.ttl = ttl;
    header.via_list = via;
    bytes = header.to_bytes(payload);
    bytes
}

fn error_code(bytes: &[u8]) -> ErrorCode {
    let msg = Message::parse(bytes).unwrap();
    msg.contents.as_error().unwrap().unwrap().code
}

#[test]
fn forwards_with_ttl_decrement_and_via_entry() {
    let (mut a, now, b, c) = forwarder();
    a.handle_message(now, b, &request(&id(2), 10, vec![], c));
    let (to, out) = a.poll_transmit().unwrap();
    assert_eq!(to, c);
    let (h, _) = ForwardingHeader::parse(&out).unwrap();
    assert_eq!(h.ttl, 9);
    assert_eq!(h.via_list, vec![Destination::Node(b)]);
    assert_eq!(a.stats().forwarded, 1);
}

#[test]
fn ttl_exceeded_goes_back_to_the_sender() {
    let (mut a, now, b, c) = forwarder();
    a.handle_message(now, b, &request(&id(2), 1, vec![], c));
    let (to, out) = a.poll_transmit().unwrap();
    assert_eq!(to, b);
    assert_eq!(error_code(&out), ErrorCode::TtlExceeded);
    assert_eq!(a.stats().ttl_exceeded, 1);
}

#[test]
fn a_via_list_holding_us_is_a_loop() {
    let (mut a, now, b, c) = forwarder();
    let me = a.id();
    a.handle_message(
        now,
        b,
        &request(
            &id(9),
            50,
            vec![
                Destination::Node(NodeId::from(id(9).hit())),
                Destination::Node(me),
            ],
            c,
        ),
    );
    let (to, out) = a.poll_transmit().unwrap();
    assert_eq!(to, b);
    assert_eq!(error_code(&out), ErrorCode::LoopDetected);
    assert_eq!(a.stats().loops, 1);
}

/// A peer between us and the key died; the link peer noticed and we did not. It sends us
/// the message as to the owner; our table would send it back (the link peer precedes the
/// key), so it goes to the owner our table names, not round the loop.
#[test]
fn a_message_our_table_would_send_back_goes_to_the_owner_in_our_table() {
    let now = Instant::now();
    let mut a = Node::new(id(1), Config::default(), now);
    a.join(now, &[]);
    let me = a.id().position();
    let at = |d: u128| NodeId::from_position(me.wrapping_add(d));
    let quarter = 1u128 << 126;
    let (noticed, dead, key) = (at(quarter), at(3 * quarter), at(2 * quarter));
    for p in [noticed, dead] {
        a.link_up(now, p);
        a.chord.insert(p);
    }
    while a.poll_transmit().is_some() {}
    assert_eq!(a.chord.next_hop(key.position()), Some(noticed));
    a.handle_message(now, noticed, &request(&id(2), 10, vec![], key));
    let (to, out) = a.poll_transmit().unwrap();
    assert_eq!(to, dead);
    let (h, _) = ForwardingHeader::parse(&out).unwrap();
    assert_eq!(h.via_list, vec![Destination::Node(noticed)]);
    assert_eq!((a.stats().bounced, a.stats().loops), (1, 0));
}

#[test]
fn forged_origin_is_refused_at_the_terminating_node() {
    let (mut a, now, b, _) = forwarder();
    // Signed by node 9 but arriving straight from B: HIT(key) != originator.
    let bytes = request(&id(9), 50, vec![], a.id());
    a.handle_message(now, b, &bytes);
    let (to, out) = a.poll_transmit().unwrap();
    assert_eq!(to, b);
    assert_eq!(error_code(&out), ErrorCode::Forbidden);
    assert_eq!(a.stats().bad_signatures, 1);
    // From a Node-ID without a link: dropped.
    a.handle_message(now, NodeId::from(id(9).hit()), &bytes);
    assert_eq!(a.stats().malformed, 1);
    assert!(a.poll_transmit().is_none());
}

/// A node that formed the ring alone and knows a bootstrap to join through again.
fn first_node_with_a_bootstrap(now: Instant) -> Node {
    let mut a = Node::new(id(1), Config::default(), now);
    a.join(now, &[]);
    a.bootstraps = vec![NodeId::from(id(2).hit())];
    a
}

/// A node that loses every neighbour goes back to joining; no timer of the ring it lost
/// may stay due (a driver would wake up for it again and again).
#[test]
fn losing_the_ring_leaves_no_deadline_behind() {
    let now = Instant::now();
    let mut a = first_node_with_a_bootstrap(now);
    let mut t = now;
    let mut rejoined = false;
    for _ in 0..50 {
        let Some(next) = a.poll_timeout() else { break };
        t = t.max(next);
        a.handle_timeout(t);
        while a.poll_transmit().is_some() {}
        rejoined |= !a.is_joined();
        let after = a.poll_timeout();
        assert!(
            after.is_none_or(|n| n > t),
            "a deadline left {:?} in the past",
            t - after.unwrap()
        );
    }
    assert!(rejoined, "the node never noticed it had lost the ring");
}

/// A node on the path knows the transaction ID of what it forwards; its answer in the
/// owner's place is dropped, and the owner's answer still completes the request.
#[test]
fn an_answer_from_a_node_that_cannot_be_the_owner_is_dropped() {
    let (mut a, now, b, c) = forwarder();
    while a.poll_event().is_some() {}
    // The key C's ID: C owns it, as far as A's table knows.
    let handle = a
        .ping(now, Destination::Resource(ResourceId(c.0.to_vec())))
        .unwrap();
    let (to, out) = a.poll_transmit().unwrap();
    assert_eq!(to, c);
    let tx = Message::parse(&out).unwrap().header.transaction_id;
    let me = a.id();
    let answer_from = |who: u8| {
        let node = Node::new(id(who), Config::default(), now);
        let ans = PingAns {
            response_id: 1,
            time: 0,
        };
        node.build(
            tx,
            vec![Destination::Node(me)],
            MessageContents::new(MessageCode::PingAns, ans.to_bytes()),
            Vec::new(),
        )
    };
    a.handle_message(now, b, &answer_from(2));
    assert_eq!(a.stats().implausible_answers, 1);
    assert!(
        a.poll_event().is_none(),
        "the forged answer completed the ping"
    );
    a.handle_message(now, c, &answer_from(3));
    match a.poll_event() {
        Some(Event::PingDone {
            handle: h,
            responder,
            ..
        }) => assert_eq!((h, responder), (handle, c)),
        other => panic!("expected the owner's answer, got {other:?}"),
    }
}

/// An Update that lists 256 invented Node-IDs around us asks for at most a few links on
/// the word of its sender, not every connecting slot.
#[test]
fn an_update_full_of_invented_peers_opens_few_links() {
    let (mut a, now, b, _) = forwarder();
    a.chord.insert(b);
    while a.poll_event().is_some() {}
    let me = a.me.position();
    // IDs just after us: each of them alone would be a successor worth linking to.
    let invented: Vec<NodeId> = (1..=256u128)
        .map(|i| NodeId::from_position(me.wrapping_add(i)))
        .collect();
    let update = crate::wire::ChordUpdate {
        uptime: 10,
        kind: crate::wire::ChordUpdateKind::Neighbors {
            predecessors: invented[..128].to_vec(),
            successors: invented[128..].to_vec(),
        },
    };
    let sender = Node::new(id(2), Config::default(), now);
    let bytes = sender.build(
        9,
        vec![Destination::Node(a.id())],
        MessageContents::new(MessageCode::UpdateReq, update.to_bytes()),
        Vec::new(),
    );
    a.handle_message(now, b, &bytes);
    let connects = std::iter::from_fn(|| a.poll_event())
        .filter(|e| matches!(e, Event::Connect { .. }))
        .count();
    assert!(connects > 0, "no link asked for: the test shows nothing");
    assert!(
        connects <= 8,
        "{connects} links asked for on one peer's word"
    );
}

/// A neighbour whose Update takes us for its successor but skips a peer we know to lie
/// between it and us (its link to that peer broke, ours did not) hears our Update, which
/// names that peer; one that skips none does not.
#[test]
fn a_neighbour_that_skips_a_peer_between_us_hears_of_it() {
    let now = Instant::now();
    let mut a = Node::new(id(1), Config::default(), now);
    a.join(now, &[]);
    let me = a.id().position();
    let o = NodeId::from(id(2).hit());
    let between = NodeId::from_position(
        o.position()
            .wrapping_add(crate::id::distance(o.position(), me) / 2),
    );
    for p in [o, between] {
        a.link_up(now, p);
        a.chord.insert(p);
    }
    while a.poll_transmit().is_some() {}
    let sender = Node::new(id(2), Config::default(), now);
    let me = a.id();
    let update_from_o = |successors: Vec<NodeId>| {
        let update = crate::wire::ChordUpdate {
            uptime: 10,
            kind: crate::wire::ChordUpdateKind::Neighbors {
                predecessors: vec![me],
                successors,
            },
        };
        sender.build(
            12,
            vec![Destination::Node(me)],
            MessageContents::new(MessageCode::UpdateReq, update.to_bytes()),
            Vec::new(),
        )
    };
    let updates_to_o = |a: &mut Node| {
        std::iter::from_fn(|| a.poll_transmit())
            .filter(|(to, bytes)| {
                *to == o && Message::parse(bytes).unwrap().contents.code == MessageCode::UpdateReq
            })
            .count()
    };
    let knows_all = update_from_o(vec![between, me]);
    a.handle_message(now, o, &knows_all);
    assert_eq!(updates_to_o(&mut a), 0, "nothing to tell");
    let skips = update_from_o(vec![me]);
    a.handle_message(now, o, &skips);
    assert_eq!(
        updates_to_o(&mut a),
        1,
        "our Update, naming the peer it skipped"
    );
}

/// An answer larger than its request allows (max_response_length) goes back as
/// Error_Response_Too_Large; without a limit of the request's own, the answer itself.
#[test]
fn an_answer_too_large_for_its_request_is_refused_as_such() {
    let (mut a, now, b, _) = forwarder();
    let sender = Node::new(id(2), Config::default(), now);
    let me = a.id();
    let ping = |limit: u32| {
        let bytes = sender.build(
            11,
            vec![Destination::Node(me)],
            MessageContents::new(MessageCode::PingReq, PingReq::default().to_bytes()),
            Vec::new(),
        );
        let (mut header, payload) = ForwardingHeader::parse(&bytes).unwrap();
        header.max_response_length = limit;
        header.to_bytes(payload)
    };
    a.handle_message(now, b, &ping(50));
    let (to, out) = a.poll_transmit().unwrap();
    assert_eq!(to, b);
    assert_eq!(error_code(&out), ErrorCode::ResponseTooLarge);
    assert_eq!(a.stats().too_large, 1);
    a.handle_message(now, b, &ping(0));
    let (_, out) = a.poll_transmit().unwrap();
    assert_eq!(
        Message::parse(&out).unwrap().contents.code,
        MessageCode::PingAns
    );
}

/// The signer is the certificate its SignerIdentity names, wherever it sits in the block;
/// a block whose named certificate is missing is refused.
#[test]
fn the_signer_is_the_certificate_the_signer_identity_names() {
    let (mut a, now, b, _) = forwarder();
    let other = GenericCertificate::ed25519(&id(7).public().public_bytes());
    let ping = |certs: Vec<GenericCertificate>| {
        let sender = Node::new(id(2), Config::default(), now);
        let mut msg = Message::parse(&request(&id(2), 50, vec![], sender.id())).unwrap();
        msg.header.destination_list = vec![Destination::Node(NodeId::from(id(1).hit()))];
        msg.security.certificates = certs;
        msg.security.signature.value = id(2).sign(&msg.signed_bytes()).to_vec();
        msg.to_bytes()
    };
    let own = GenericCertificate::ed25519(&id(2).public().public_bytes());
    // Another key first, the signer's second: still the signer's.
    a.handle_message(now, b, &ping(vec![other.clone(), own]));
    let (_, out) = a.poll_transmit().unwrap();
    assert_eq!(
        Message::parse(&out).unwrap().contents.code,
        MessageCode::PingAns
    );
    // Only another key: refused.
    a.handle_message(now, b, &ping(vec![other]));
    let (_, out) = a.poll_transmit().unwrap();
    assert_eq!(error_code(&out), ErrorCode::Forbidden);
}

/// A TTL above the initial one (100), and a forwarding option we would have to understand,
/// are refused with the errors §6.3.2 names.
#[test]
fn ttl_above_the_initial_and_critical_options_are_refused() {
    let (mut a, now, b, c) = forwarder();
    a.handle_message(now, b, &request(&id(2), 101, vec![], c));
    let (to, out) = a.poll_transmit().unwrap();
    assert_eq!(to, b);
    assert_eq!(error_code(&out), ErrorCode::TtlExceeded);
    for (flags, dest) in [
        (crate::wire::option_flags::FORWARD_CRITICAL, c),
        (crate::wire::option_flags::DESTINATION_CRITICAL, a.id()),
    ] {
        let bytes = request(&id(2), 50, vec![], dest);
        let (mut header, payload) = ForwardingHeader::parse(&bytes).unwrap();
        header.options = vec![crate::wire::ForwardingOption {
            ty: crate::wire::ForwardingOptionType::Unknown(9),
            flags,
            value: Vec::new(),
        }];
        a.handle_message(now, b, &header.to_bytes(payload));
        let (_, out) = a.poll_transmit().unwrap();
        assert_eq!(error_code(&out), ErrorCode::UnsupportedForwardingOption);
    }
    // Not critical where it is: forwarded as before.
    let bytes = request(&id(2), 50, vec![], c);
    let (mut header, payload) = ForwardingHeader::parse(&bytes).unwrap();
    header.options = vec![crate::wire::ForwardingOption {
        ty: crate::wire::ForwardingOptionType::Unknown(9),
        flags: crate::wire::option_flags::DESTINATION_CRITICAL,
        value: Vec::new(),
    }];
    a.handle_message(now, b, &header.to_bytes(payload));
    assert_eq!(a.poll_transmit().unwrap().0, c);
}

/// A replication round of 1,500 Resources reaches both successors whole: copies go out a
/// window at a time as answers come back, inside maintenance's own budget, instead of
/// 3,000 Stores at once against one pending limit (the second successor used to get
/// what was left of it).
#[test]
fn a_large_replication_round_reaches_both_successors() {
    use crate::wire::{StoreAns, StoreReq};
    let now = Instant::now();
    let mut a = Node::new(id(1), Config::default(), now);
    a.join(now, &[]);
    let (b, c) = (NodeId::from(id(2).hit()), NodeId::from(id(3).hit()));
    for p in [b, c] {
        a.link_up(now, p);
        a.chord.insert(p);
    }
    while a.poll_transmit().is_some() {}
    let pred = a.chord.predecessor().unwrap().position();
    let me = a.me.position();
    hold_records_in(&mut a, pred, me, 1500);
    a.replicate(now);
    let mut stored: HashMap<NodeId, HashSet<Vec<u8>>> = HashMap::new();
    let answerers: HashMap<NodeId, Node> = [(b, id(2)), (c, id(3))]
        .into_iter()
        .map(|(n, i)| (n, Node::new(i, Config::default(), now)))
        .collect();
    let me_id = a.id();
    let mut rounds = 0;
    while let Some((to, out)) = a.poll_transmit() {
        rounds += 1;
        assert!(rounds < 10_000, "copies never end");
        let msg = Message::parse(&out).unwrap();
        assert_eq!(msg.contents.code, MessageCode::StoreReq);
        let req = StoreReq::parse(&msg.contents.body, |k| a.kinds().model(k)).unwrap();
        stored.entry(to).or_default().insert(req.resource.0.clone());
        let ans = StoreAns {
            kind_responses: Vec::new(),
        };
        let answer = answerers[&to].build(
            msg.header.transaction_id,
            vec![Destination::Node(me_id)],
            MessageContents::new(MessageCode::StoreAns, ans.to_bytes()),
            Vec::new(),
        );
        a.handle_message(now, to, &answer);
    }
    assert_eq!(stored[&b].len(), 1500);
    assert_eq!(stored[&c].len(), 1500);
    assert_eq!(a.occupancy().copies, 0);
    assert_eq!(a.stats().copies_failed, 0);
}

/// A directory lookup asks the owner, then the peer after it; the replica's newer value
/// wins over the owner's older one, and the merged answer is served from the cache next
/// time without a message.
#[test]
fn a_lookup_keeps_the_newest_of_owner_and_replica_and_caches_it() {
    use crate::storage::{kind::HIT_LOCATOR, sign_value};
    use crate::wire::{
        DataValue, FetchAns, FetchKindResponse, FetchReq, Selector, Signature, StoredData,
        StoredDataSpecifier, StoredDataValue,
    };
    let now = Instant::now();
    let pos = |i: &HostIdentity| NodeId::from(i.hit()).position();
    let a_id = id(1);
    // A writer W whose record's Resource-ID R is followed clockwise by O, then S, then A.
    let (w, o, s) = (50u8..250)
        .find_map(|k| {
            let w = id(k);
            let r = crate::id::resource_position(&crate::id::resource_id(&w.hit().0))?;
            let mut c: Vec<u8> = (2..40).collect();
            c.sort_by_key(|&i| pos(&id(i)).wrapping_sub(r));
            let (o, s) = (c[0], c[1]);
            (pos(&a_id).wrapping_sub(r) > pos(&id(s)).wrapping_sub(r)).then_some((w, o, s))
        })
        .unwrap();
    let (o_id, s_id) = (id(o), id(s));
    let (o_node, s_node) = (NodeId::from(o_id.hit()), NodeId::from(s_id.hit()));
    let mut a = Node::new(id(1), Config::default(), now);
    a.join(now, &[]);
    for p in [o_node, s_node] {
        a.link_up(now, p);
        a.chord.insert(p);
    }
    while a.poll_transmit().is_some() {}
    while a.poll_event().is_some() {}
    let resource = crate::id::resource_id(&w.hit().0);
    let value = |time: u64, v: &[u8]| {
        let mut d = StoredData {
            storage_time: time,
            lifetime: 600,
            value: StoredDataValue::Single(DataValue {
                exists: true,
                value: v.to_vec(),
            }),
            signature: Signature::anonymous(),
        };
        sign_value(&w, &resource, HIT_LOCATOR, &mut d);
        d
    };
    let req = FetchReq {
        resource: resource.clone(),
        specifiers: vec![StoredDataSpecifier {
            kind: HIT_LOCATOR,
            generation: 0,
            selector: Selector::Single,
        }],
    };
    let me = a.id();
    let w_cert = GenericCertificate::ed25519(&w.public().public_bytes());
    let answer = |by: &HostIdentity, tx: u64, d: StoredData| {
        let ans = FetchAns {
            kind_responses: vec![FetchKindResponse {
                kind: HIT_LOCATOR,
                generation: 1,
                values: vec![d],
            }],
        };
        Node::new(
            HostIdentity::from_secret(*by.secret_bytes()),
            Config::default(),
            now,
        )
        .build(
            tx,
            vec![Destination::Node(me)],
            MessageContents::new(MessageCode::FetchAns, ans.to_bytes()),
            vec![w_cert.clone()],
        )
    };
    let handle = a.lookup(now, &req).unwrap();
    let (to, out) = a.poll_transmit().unwrap();
    assert_eq!(to, o_node, "the owner is asked first");
    let tx = Message::parse(&out).unwrap().header.transaction_id;
    a.handle_message(now, o_node, &answer(&o_id, tx, value(100, b"old")));
    assert!(a.poll_event().is_none(), "done before the replica answered");
    // Then the owner of the position after the owner, through the owner (the last
    // peer before that position); S answers, and the owner passes it back.
    let (to, out) = a.poll_transmit().unwrap();
    let msg = Message::parse(&out).unwrap();
    let after = o_node.position().wrapping_add(1).to_be_bytes().to_vec();
    assert_eq!(to, o_node);
    assert_eq!(
        msg.header.destination_list,
        vec![Destination::Resource(ResourceId(after))]
    );
    let from_s = answer(&s_id, msg.header.transaction_id, value(200, b"new"));
    let (mut header, payload) = ForwardingHeader::parse(&from_s).unwrap();
    header.via_list = vec![Destination::Node(s_node)];
    a.handle_message(now, o_node, &header.to_bytes(payload));
    let got = |e: Option<Event>| match e {
        Some(Event::FetchDone {
            handle,
            answer,
            responder,
            hops,
        }) => (
            handle,
            answer.kind_responses[0].values[0].storage_time,
            responder,
            hops,
        ),
        other => panic!("expected FetchDone, got {other:?}"),
    };
    assert_eq!(got(a.poll_event()), (handle, 200, o_node, 1));
    // Again: from the cache, at once, no message.
    let again = a.lookup(now, &req).unwrap();
    assert_eq!(got(a.poll_event()), (again, 200, o_node, 0));
    assert!(a.poll_transmit().is_none());
    assert_eq!(a.stats().lookups_cached, 1);
    // Forgotten, it asks again.
    a.forget_cached(&resource);
    a.lookup(now, &req).unwrap();
    assert_eq!(a.poll_transmit().unwrap().0, o_node);
}

/// A joining peer behind a NAT asks its admitting peer to open the link: the admitting
/// peer does, through the first hop of the request's route; without the request, or for
/// a peer outside its range, it does not.
#[test]
fn the_admitting_peer_connects_back_when_asked_and_only_then() {
    let (mut a, now, b, c) = forwarder();
    let me = a.id();
    let in_range = |a: &Node, s: u8| a.chord.responsible(NodeId::from(id(s).hit()).position());
    let joiner = (10..=255u8)
        .find(|&s| in_range(&a, s))
        .expect("a joiner in A's range");
    let outsider = (10..=255u8)
        .find(|&s| !in_range(&a, s))
        .expect("a peer outside it");
    let ping = |from: u8, ask: bool, via: Vec<Destination>| {
        let sender = Node::new(id(from), Config::default(), now);
        let mut contents =
            MessageContents::new(MessageCode::PingReq, PingReq::default().to_bytes());
        if ask {
            contents
                .extensions
                .push(crate::wire::MessageExtension::connect_back());
        }
        let bytes = sender.build(21, vec![Destination::Node(me)], contents, Vec::new());
        let (mut header, payload) = ForwardingHeader::parse(&bytes).unwrap();
        header.via_list = via;
        header.to_bytes(payload)
    };
    let connects = |a: &mut Node| -> Vec<(NodeId, Option<NodeId>)> {
        std::iter::from_fn(|| a.poll_event())
            .filter_map(|e| match e {
                Event::Connect { peer, hint } => Some((peer, hint)),
                _ => None,
            })
            .collect()
    };
    let j = NodeId::from(id(joiner).hit());
    // Joiner → B → A: B put the joiner on the via list, so B is the first hop.
    a.handle_message(now, b, &ping(joiner, false, vec![Destination::Node(j)]));
    assert_eq!(connects(&mut a), vec![], "not asked");
    a.handle_message(now, b, &ping(joiner, true, vec![Destination::Node(j)]));
    assert_eq!(connects(&mut a), vec![(j, Some(b))]);
    // Joiner → B → C → A: the first hop is still B, the second via entry.
    let via = vec![Destination::Node(j), Destination::Node(b)];
    a.handle_message(now, c, &ping(joiner, true, via));
    assert_eq!(connects(&mut a), vec![(j, Some(b))]);
    let o = NodeId::from(id(outsider).hit());
    a.handle_message(now, b, &ping(outsider, true, vec![Destination::Node(o)]));
    assert_eq!(connects(&mut a), vec![], "not ours to admit");
    assert_eq!(a.stats().connect_backs, 2);
}

/// A link is let go by the end that opened it: ours when we no longer route through them,
/// the peer's only when they crowd the room kept for them (oldest first).
#[test]
fn a_node_lets_go_of_its_own_links_and_of_others_only_for_room() {
    let now = Instant::now();
    let config = Config {
        max_their_links: 2,
        ..Config::default()
    };
    let mut a = Node::new(id(1), config, now);
    a.join(now, &[]);
    let peer = |s: u8| NodeId::from(id(s).hit());
    // Ours: asked for, then out of the table again.
    a.connecting.insert(peer(2), (now, None));
    a.link_up(now, peer(2));
    assert!(a.chord.contains(peer(2)));
    a.chord.remove(peer(2));
    // Theirs: four peers opened links to us, two a second after the others.
    for s in 3..=4 {
        a.link_up(now, peer(s));
    }
    let later = now + Duration::from_secs(1);
    for s in 5..=6 {
        a.link_up(later, peer(s));
    }
    let disconnects = |a: &mut Node| -> Vec<NodeId> {
        let mut v: Vec<NodeId> = std::iter::from_fn(|| a.poll_event())
            .filter_map(|e| match e {
                Event::Disconnect { peer } => Some(peer),
                _ => None,
            })
            .collect();
        v.sort();
        v
    };
    a.handle_timeout(now + links::LINK_GRACE);
    // Four of theirs, two more than there is room for: the two past their grace go.
    let mut want = vec![peer(2), peer(3), peer(4)];
    want.sort();
    assert_eq!(disconnects(&mut a), want);
    for p in &want {
        a.link_down(now + links::LINK_GRACE, *p);
    }
    // Two of theirs left: room for both, at any later time.
    a.handle_timeout(later + links::LINK_GRACE + Duration::from_secs(60));
    assert_eq!(disconnects(&mut a), vec![]);
    assert_eq!(a.links.len(), 2);
}

/// Stores in `a` `count` signed records whose Resource-IDs fall in `(from, to]`.
fn hold_records_in(a: &mut Node, from: u128, to: u128, count: usize) -> Vec<ResourceId> {
    use crate::storage::{kind::HIT_LOCATOR, signed_store, Certificates, Writer};
    use crate::wire::StoredDataValue;
    let mut held = Vec::new();
    for k in 0u32.. {
        if held.len() == count {
            break;
        }
        let mut secret = [9u8; 32];
        secret[..4].copy_from_slice(&k.to_be_bytes());
        let owner = HostIdentity::from_secret(secret);
        let resource = crate::id::resource_id(&owner.hit().0);
        if !crate::id::in_open_closed(crate::id::resource_position(&resource).unwrap(), from, to) {
            continue;
        }
        let value = StoredDataValue::Single(crate::wire::DataValue {
            exists: true,
            value: b"loc".to_vec(),
        });
        let req = signed_store(&owner, resource.clone(), HIT_LOCATOR, 1, 600, value);
        let mut certs = Certificates::new();
        certs.insert_identity(owner.public());
        a.data_store_mut()
            .store(0, &req, &certs, Writer::Copy)
            .unwrap();
        held.push(resource);
    }
    held
}

/// A joined node linked to peers 2..8, its messages drained.
fn node_among_peers(now: Instant) -> Node {
    let mut a = Node::new(id(1), Config::default(), now);
    a.join(now, &[]);
    for s in 2..8 {
        let p = NodeId::from(id(s).hit());
        a.link_up(now, p);
        a.chord.insert(p);
    }
    while a.poll_transmit().is_some() {}
    a
}

/// Runs `a`'s timers for `for_`; the Stores it sends, as (to, replica number, Resource).
fn stores_within(a: &mut Node, now: Instant, for_: Duration) -> Vec<(NodeId, u8, ResourceId)> {
    use crate::wire::StoreReq;
    let mut stores = Vec::new();
    loop {
        while let Some((to, out)) = a.poll_transmit() {
            let msg = Message::parse(&out).unwrap();
            if msg.contents.code == MessageCode::StoreReq {
                let req = StoreReq::parse(&msg.contents.body, |k| a.kinds().model(k)).unwrap();
                stores.push((to, req.replica_number, req.resource));
            }
        }
        match a.poll_timeout() {
            Some(t) if t <= now + for_ => a.handle_timeout(t),
            _ => return stores,
        }
    }
}

/// A successor that dies leaves our records with two copies: the new second successor
/// gets its copy at once (after the reactive delay), not after the 30 s hold-down that a
/// joining peer waits for.
#[test]
fn a_dead_successor_is_replaced_by_a_copy_at_once() {
    let now = Instant::now();
    let mut a = node_among_peers(now);
    let succs = a.chord.successors();
    let (dead, third) = (succs[0], succs[2]);
    let pred = a.chord.predecessor().unwrap().position();
    let me = a.me.position();
    let record = hold_records_in(&mut a, pred, me, 1).remove(0);
    a.link_down(now, dead);
    let stores = stores_within(&mut a, now, Duration::from_secs(1));
    assert!(
        stores.contains(&(third, 2, record)),
        "the new second successor got no copy within 1 s: {stores:?}"
    );
}

/// A peer joined between our predecessor and us while that predecessor was already dead,
/// unnoticed: the join handed it only the range behind the dead one. When the death is
/// known, the dead peer's range is the joiner's, and we give it the copies we hold.
#[test]
fn a_peer_that_joined_behind_a_dead_owner_gets_its_records() {
    let now = Instant::now();
    let mut a = node_among_peers(now);
    let preds = a.chord.predecessors();
    let (joiner, dead, before) = (preds[0], preds[1], preds[2]);
    let record = hold_records_in(&mut a, before.position(), dead.position(), 1).remove(0);
    a.replicate(now);
    while a.poll_transmit().is_some() {}
    a.link_down(now, dead);
    let stores = stores_within(&mut a, now, Duration::from_secs(1));
    assert!(
        stores.contains(&(joiner, 0, record)),
        "the joiner never got the dead owner's records: {stores:?}"
    );
}

/// A finger we are linked to is checked with a Probe to it over the link, not looked up
/// across the ring; a Probe answer that puts the finger's predecessor at or after the
/// target brings the lookup, and one that covers the target does not.
#[test]
fn a_linked_finger_is_checked_by_a_probe_and_looked_up_only_when_stale() {
    use crate::wire::{probe_type, ProbeAns, ProbeInformation};
    let now = Instant::now();
    let mut a = node_among_peers(now);
    let i = a
        .chord
        .useful_fingers()
        .next()
        .expect("a finger beyond the successors");
    let f = a.chord.finger(i).unwrap();
    let mut sent = Vec::new();
    // One round-robin turn per useful finger, so that finger `i` comes up.
    for _ in 0..a.chord.useful_fingers().count() {
        a.refresh_finger(now);
        while let Some((to, out)) = a.poll_transmit() {
            sent.push((to, Message::parse(&out).unwrap().contents.code));
        }
    }
    assert!(sent.contains(&(f, MessageCode::ProbeReq)), "{sent:?}");
    assert!(
        !sent.iter().any(|(_, c)| *c == MessageCode::PingReq),
        "{sent:?}"
    );
    let t = crate::id::finger_target(a.me.position(), i).unwrap();
    let answer = |span: u128| ProbeAns {
        info: vec![ProbeInformation {
            ty: probe_type::RESPONSIBLE_SET,
            value: crate::id::arc_ppb(span).to_be_bytes().to_vec(),
        }],
    };
    let lookups_after = |a: &mut Node, span: u128| {
        a.finger_checked(now, i, f, Some(&answer(span)));
        let mut pings = 0;
        let until = now + Duration::from_secs(2);
        while let Some(t) = a.poll_timeout().filter(|t| *t <= until) {
            a.handle_timeout(t);
            while let Some((_, out)) = a.poll_transmit() {
                pings += usize::from(
                    Message::parse(&out).unwrap().contents.code == MessageCode::PingReq,
                );
            }
        }
        pings
    };
    let to_target = crate::id::arc_distance(t, f.position());
    // Its range reaches back past the target: still the finger.
    assert_eq!(lookups_after(&mut a, to_target * 2), 0);
    // Its predecessor lies between the target and it: a peer joined there.
    assert_eq!(lookups_after(&mut a, to_target / 2), 1);
}

/// An owner takes the records of its range back from either of its first two successors
/// (both hold its copies), and from nobody further on.
#[test]
fn an_owner_takes_its_records_back_from_its_first_two_successors_only() {
    use crate::storage::{kind::HIT_LOCATOR, signed_store};
    use crate::wire::StoredDataValue;
    let now = Instant::now();
    let mut a = node_among_peers(now);
    let pred = a.chord.predecessor().unwrap().position();
    let me = a.me.position();
    let succs = a.chord.successors();
    let secrets: HashMap<NodeId, u8> = (2..8).map(|s| (NodeId::from(id(s).hit()), s)).collect();
    let mut k = 0u32;
    let mut hand_back = |a: &mut Node, from: NodeId| {
        let resource = loop {
            k += 1;
            let mut secret = [7u8; 32];
            secret[..4].copy_from_slice(&k.to_be_bytes());
            let owner = HostIdentity::from_secret(secret);
            let r = crate::id::resource_id(&owner.hit().0);
            if crate::id::in_open_closed(crate::id::resource_position(&r).unwrap(), pred, me) {
                break (owner, r);
            }
        };
        let (owner, r) = resource;
        let value = StoredDataValue::Single(crate::wire::DataValue {
            exists: true,
            value: b"loc".to_vec(),
        });
        let req = signed_store(&owner, r.clone(), HIT_LOCATOR, 1, 600, value);
        let sender = Node::new(id(secrets[&from]), Config::default(), now);
        let bytes = sender.build(
            7,
            vec![Destination::Node(a.id())],
            MessageContents::new(MessageCode::StoreReq, req.to_bytes()),
            vec![GenericCertificate::ed25519(&owner.public().public_bytes())],
        );
        a.handle_message(now, from, &bytes);
        while a.poll_transmit().is_some() {}
        a.holds(&r, HIT_LOCATOR)
    };
    assert!(
        hand_back(&mut a, succs[0]),
        "refused from the first successor"
    );
    assert!(
        hand_back(&mut a, succs[1]),
        "refused from the second successor"
    );
    assert!(
        !hand_back(&mut a, succs[2]),
        "taken from the third successor"
    );
}

/// A node that loses its last peer joins again after `rejoin_interval`, not at its next
/// periodic Update minutes later; a peer back in the table first cancels that.
#[test]
fn a_node_that_lost_every_peer_joins_again_soon() {
    let now = Instant::now();
    let mut a = first_node_with_a_bootstrap(now);
    let b = NodeId::from(id(3).hit());
    a.link_up(now, b);
    a.chord.insert(b);
    while a.poll_transmit().is_some() {}
    a.link_down(now, b);
    assert!(a.is_joined());
    let soon = now + a.config.rejoin_interval + Duration::from_secs(1);
    while let Some(t) = a.poll_timeout().filter(|t| *t <= soon) {
        a.handle_timeout(t);
    }
    assert!(
        !a.is_joined(),
        "still waiting for the periodic Update to notice"
    );
    // Lost and found again: no re-join.
    let mut a = first_node_with_a_bootstrap(now);
    a.link_up(now, b);
    a.chord.insert(b);
    a.link_down(now, b);
    a.link_up(now, b);
    a.on_update(
        now,
        b,
        true,
        crate::wire::ChordUpdate {
            uptime: 1,
            kind: crate::wire::ChordUpdateKind::PeerReady,
        },
    );
    while let Some(t) = a.poll_timeout().filter(|t| *t <= soon) {
        a.handle_timeout(t);
    }
    assert!(a.is_joined(), "re-joined although a peer came back");
}
