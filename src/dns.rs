//! The node's DNS stub (`[dns]`): names under the overlay's domain are answered from the
//! overlay — AAAA with the HIT, A with an LSI — and every other query is passed to the
//! resolver the host used before, its answer passed back. DNS messages are parsed and
//! built with hickory-proto; this module decides, the daemon moves the datagrams.
//!
//! A query that does not parse is dropped; one that parses but is not a plain query gets
//! NOTIMP or FORMERR. Upstream answers are accepted only from the server asked, with our
//! transaction ID (drawn at random per query) and the question asked.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hip::Hit;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Queries waiting for the overlay or an upstream server, each at most.
const MAX_WAITING: usize = 256;
/// A forwarded query or a resolution that takes longer is forgotten (the client asks
/// again: its own timeout is 5 s by default).
const WAIT: Duration = Duration::from_secs(10);
/// Longest TTL we give an overlay answer: a name granted anew reaches clients by then.
const MAX_TTL: u32 = 60;

/// Who asked: the client's address, and which of our sockets it asked on (the answer
/// must come from there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub addr: SocketAddr,
    pub via: usize,
}

/// What the daemon does with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes back to the client.
    Reply(Vec<u8>),
    /// Send these bytes to the upstream server.
    Forward { to: SocketAddr, bytes: Vec<u8> },
    /// Resolve this overlay name; answer with [`Stub::resolved`] under the same request.
    Resolve(String),
    /// Nothing (a datagram that is not a DNS query, or no room to wait).
    Drop,
}

/// What the overlay said about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The HIT, an LSI for it, and how long the answer holds (seconds).
    Found {
        hit: Hit,
        lsi: Option<Ipv4Addr>,
        ttl: u32,
    },
    /// No valid holder: NXDOMAIN.
    NoSuchName,
    /// The lookup failed: SERVFAIL.
    Failed,
}

#[derive(Debug)]
struct Waiting {
    client: Client,
    query: Message,
    since: Instant,
}

#[derive(Debug)]
struct Forwarded {
    client: Client,
    client_id: u16,
    upstream: SocketAddr,
    query: Message,
    since: Instant,
}

#[derive(Debug)]
pub struct Stub {
    /// The overlay's name as a DNS zone (lower case, fully qualified).
    zone: Name,
    upstreams: Vec<SocketAddr>,
    next_upstream: usize,
    rng: ChaCha20Rng,
    resolving: HashMap<u64, Waiting>,
    forwarded: HashMap<u16, Forwarded>,
}

impl Stub {
    /// A stub for the overlay `overlay` passing other queries to `upstreams` (none: they
    /// are refused); `seed` draws the transaction IDs of forwarded queries.
    pub fn new(overlay: &str, upstreams: Vec<SocketAddr>, seed: [u8; 32]) -> Option<Stub> {
        let zone = Name::from_ascii(format!("{overlay}.")).ok()?.to_lowercase();
        Some(Stub {
            zone,
            upstreams,
            next_upstream: 0,
            rng: ChaCha20Rng::from_seed(seed),
            resolving: HashMap::new(),
            forwarded: HashMap::new(),
        })
    }

    /// A datagram from `client`; `request` numbers the resolution it may start.
    pub fn query(&mut self, now: Instant, client: Client, bytes: &[u8], request: u64) -> Step {
        self.expire(now);
        let Ok(query) = Message::from_vec(bytes) else {
            return Step::Drop;
        };
        if query.metadata.message_type != MessageType::Query {
            return Step::Drop;
        }
        if query.metadata.op_code != OpCode::Query {
            return self.reply(&query, ResponseCode::NotImp, Vec::new());
        }
        let [q] = query.queries.as_slice() else {
            return self.reply(&query, ResponseCode::FormErr, Vec::new());
        };
        let name = q.name().to_lowercase();
        if !self.zone.zone_of(&name) {
            return self.forward(now, client, query);
        }
        if name == self.zone || !matches!(q.query_type(), RecordType::A | RecordType::AAAA) {
            // The zone itself, and other types of our names: no data of that kind (a
            // name that does not exist would be NXDOMAIN for every type, which we do not
            // look up for types we never answer).
            return self.reply(&query, ResponseCode::NoError, Vec::new());
        }
        if self.resolving.len() >= MAX_WAITING {
            return self.reply(&query, ResponseCode::ServFail, Vec::new());
        }
        let text = name.to_ascii();
        self.resolving.insert(
            request,
            Waiting {
                client,
                query,
                since: now,
            },
        );
        Step::Resolve(text.trim_end_matches('.').to_string())
    }

    /// Whether `request` is a resolution of ours.
    pub fn owns(&self, request: u64) -> bool {
        self.resolving.contains_key(&request)
    }

    /// The overlay's answer for `request`: the client and the reply.
    pub fn resolved(&mut self, request: u64, outcome: Outcome) -> Option<(Client, Vec<u8>)> {
        let w = self.resolving.remove(&request)?;
        let q = w.query.queries.first()?;
        let (code, answers) = match outcome {
            Outcome::Found { hit, lsi, ttl } => {
                let ttl = ttl.min(MAX_TTL);
                let rdata = match q.query_type() {
                    RecordType::AAAA => Some(RData::AAAA(AAAA(hit.to_ipv6()))),
                    _ => lsi.map(|a| RData::A(A(a))),
                };
                let records = rdata
                    .map(|d| Record::from_rdata(q.name().clone(), ttl, d))
                    .into_iter()
                    .collect();
                (ResponseCode::NoError, records)
            }
            Outcome::NoSuchName => (ResponseCode::NXDomain, Vec::new()),
            Outcome::Failed => (ResponseCode::ServFail, Vec::new()),
        };
        match self.reply(&w.query, code, answers) {
            Step::Reply(bytes) => Some((w.client, bytes)),
            _ => None,
        }
    }

    /// A datagram from an upstream server: the client it answers and the answer, with
    /// the client's transaction ID back.
    pub fn from_upstream(&mut self, from: SocketAddr, bytes: &[u8]) -> Option<(Client, Vec<u8>)> {
        let mut answer = Message::from_vec(bytes).ok()?;
        let id = answer.metadata.id;
        let f = self.forwarded.get(&id)?;
        if f.upstream != from
            || answer.metadata.message_type != MessageType::Response
            || answer.queries != f.query.queries
        {
            return None;
        }
        let f = self.forwarded.remove(&id)?;
        answer.metadata.id = f.client_id;
        Some((f.client, answer.to_vec().ok()?))
    }

    /// Forgets what waited too long.
    pub fn expire(&mut self, now: Instant) {
        let fresh = |since: Instant| now.saturating_duration_since(since) < WAIT;
        self.resolving.retain(|_, w| fresh(w.since));
        self.forwarded.retain(|_, f| fresh(f.since));
    }

    fn forward(&mut self, now: Instant, client: Client, mut query: Message) -> Step {
        if self.upstreams.is_empty() {
            return self.reply(&query, ResponseCode::Refused, Vec::new());
        }
        if self.forwarded.len() >= MAX_WAITING {
            return self.reply(&query, ResponseCode::ServFail, Vec::new());
        }
        let id = loop {
            let id = (self.rng.next_u32() >> 16) as u16;
            if !self.forwarded.contains_key(&id) {
                break id;
            }
        };
        let upstream = self.upstreams[self.next_upstream % self.upstreams.len()];
        self.next_upstream = self.next_upstream.wrapping_add(1);
        let client_id = query.metadata.id;
        query.metadata.id = id;
        let Ok(bytes) = query.to_vec() else {
            return Step::Drop;
        };
        self.forwarded.insert(
            id,
            Forwarded {
                client,
                client_id,
                upstream,
                query,
                since: now,
            },
        );
        Step::Forward {
            to: upstream,
            bytes,
        }
    }

    fn reply(&mut self, query: &Message, code: ResponseCode, answers: Vec<Record>) -> Step {
        let mut m = Message::new(
            query.metadata.id,
            MessageType::Response,
            query.metadata.op_code,
        );
        m.metadata = Metadata::response_from_request(&query.metadata);
        m.metadata.response_code = code;
        m.metadata.recursion_available = true;
        m.metadata.authoritative = code != ResponseCode::Refused && code != ResponseCode::FormErr;
        m.queries = query.queries.clone();
        m.answers = answers;
        match m.to_vec() {
            Ok(bytes) => Step::Reply(bytes),
            Err(_) => Step::Drop,
        }
    }
}

/// The nameservers of a resolv.conf text, but not `ours` (the stub itself, when the host
/// already points at it), on port 53.
pub fn nameservers(resolv_conf: &str, ours: &[SocketAddr]) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next()?.parse().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|a| !ours.iter().any(|o| o.ip() == a.ip() && o.port() == 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn query(name: &str, t: RecordType, id: u16) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn stub(upstreams: Vec<SocketAddr>) -> Stub {
        Stub::new("Lab.Example", upstreams, [7; 32]).unwrap()
    }

    fn client() -> Client {
        Client {
            addr: "127.0.0.1:40000".parse().unwrap(),
            via: 0,
        }
    }

    fn hit() -> Hit {
        "2001:25:ee0d:4053:967d:fdaa:3007:86e9".parse().unwrap()
    }

    #[test]
    fn overlay_names_are_answered_from_the_overlay() {
        let mut s = stub(Vec::new());
        let now = Instant::now();
        let step = s.query(
            now,
            client(),
            &query("Alice.lab.example.", RecordType::AAAA, 9),
            1,
        );
        assert_eq!(step, Step::Resolve("alice.lab.example".into()));
        assert!(s.owns(1));
        let lsi = Ipv4Addr::new(100, 64, 0, 7);
        let found = Outcome::Found {
            hit: hit(),
            lsi: Some(lsi),
            ttl: 3600,
        };
        let (to, bytes) = s.resolved(1, found.clone()).unwrap();
        assert_eq!(to, client());
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.id, 9);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, MAX_TTL);
        assert_eq!(m.answers[0].data, RData::AAAA(AAAA(hit().to_ipv6())));
        // A: the LSI.
        s.query(
            now,
            client(),
            &query("alice.lab.example.", RecordType::A, 10),
            2,
        );
        let (_, bytes) = s.resolved(2, found).unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.answers[0].data, RData::A(A(lsi)));
        // Nobody holds it; the lookup failed.
        s.query(
            now,
            client(),
            &query("bob.lab.example.", RecordType::A, 11),
            3,
        );
        let (_, bytes) = s.resolved(3, Outcome::NoSuchName).unwrap();
        assert_eq!(
            Message::from_vec(&bytes).unwrap().metadata.response_code,
            ResponseCode::NXDomain
        );
        s.query(
            now,
            client(),
            &query("bob.lab.example.", RecordType::AAAA, 12),
            4,
        );
        let (_, bytes) = s.resolved(4, Outcome::Failed).unwrap();
        assert_eq!(
            Message::from_vec(&bytes).unwrap().metadata.response_code,
            ResponseCode::ServFail
        );
        // Other types and the zone itself: no data, no lookup.
        for (name, t) in [
            ("alice.lab.example.", RecordType::MX),
            ("lab.example.", RecordType::A),
        ] {
            let Step::Reply(bytes) = s.query(now, client(), &query(name, t, 13), 5) else {
                panic!("{name} {t:?} not answered at once");
            };
            let m = Message::from_vec(&bytes).unwrap();
            assert_eq!(
                (m.metadata.response_code, m.answers.len()),
                (ResponseCode::NoError, 0)
            );
        }
        assert!(!s.owns(5));
    }

    #[test]
    fn other_names_go_upstream_and_only_the_true_answer_comes_back() {
        let up: SocketAddr = "10.0.0.53:53".parse().unwrap();
        let mut s = stub(vec![up]);
        let now = Instant::now();
        let asked = query("debian.org.", RecordType::A, 77);
        let Step::Forward { to, bytes } = s.query(now, client(), &asked, 1) else {
            panic!("not forwarded");
        };
        assert_eq!(to, up);
        let sent = Message::from_vec(&bytes).unwrap();
        let mut answer = sent.clone();
        answer.metadata.message_type = MessageType::Response;
        answer.add_answer(Record::from_rdata(
            Name::from_ascii("debian.org.").unwrap(),
            300,
            RData::A(A(Ipv4Addr::new(203, 0, 113, 9))),
        ));
        let wire = answer.to_vec().unwrap();
        // From another address, or for another question: dropped.
        let elsewhere: SocketAddr = "10.0.0.54:53".parse().unwrap();
        assert_eq!(s.from_upstream(elsewhere, &wire), None);
        let mut other = answer.clone();
        other.queries[0] = Query::query(Name::from_ascii("evil.example.").unwrap(), RecordType::A);
        assert_eq!(s.from_upstream(up, &other.to_vec().unwrap()), None);
        let (to, back) = s.from_upstream(up, &wire).unwrap();
        assert_eq!(to, client());
        let m = Message::from_vec(&back).unwrap();
        assert_eq!(m.metadata.id, 77);
        assert_eq!(m.answers.len(), 1);
        // Answered once only.
        assert_eq!(s.from_upstream(up, &wire), None);
        // Without upstreams, other names are refused.
        let mut alone = stub(Vec::new());
        let Step::Reply(bytes) = alone.query(now, client(), &asked, 2) else {
            panic!("not refused");
        };
        assert_eq!(
            Message::from_vec(&bytes).unwrap().metadata.response_code,
            ResponseCode::Refused
        );
    }

    #[test]
    fn malformed_queries_are_dropped_or_refused_never_a_panic() {
        let mut s = stub(Vec::new());
        let now = Instant::now();
        assert_eq!(s.query(now, client(), b"", 1), Step::Drop);
        assert_eq!(s.query(now, client(), &[0xff; 11], 1), Step::Drop);
        let good = query("alice.lab.example.", RecordType::A, 5);
        for cut in 0..good.len() {
            let _ = s.query(now, client(), &good[..cut], 1);
        }
        // Two questions: FORMERR.
        let mut two = Message::new(6, MessageType::Query, OpCode::Query);
        two.add_query(Query::query(
            Name::from_ascii("a.lab.example.").unwrap(),
            RecordType::A,
        ));
        two.add_query(Query::query(
            Name::from_ascii("b.lab.example.").unwrap(),
            RecordType::A,
        ));
        let Step::Reply(bytes) = s.query(now, client(), &two.to_vec().unwrap(), 1) else {
            panic!("not answered");
        };
        assert_eq!(
            Message::from_vec(&bytes).unwrap().metadata.response_code,
            ResponseCode::FormErr
        );
        // A response sent to us as a query is dropped.
        let mut resp = Message::from_vec(&good).unwrap();
        resp.metadata.message_type = MessageType::Response;
        assert_eq!(
            s.query(now, client(), &resp.to_vec().unwrap(), 1),
            Step::Drop
        );
    }

    #[test]
    fn resolv_conf_nameservers_but_not_the_stub_itself() {
        let text = "# generated\nsearch lab\nnameserver 10.0.0.1\nnameserver 127.0.0.1\n\
                    nameserver fe80::1%eth0\nnameserver bogus\n";
        let ours: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let got = nameservers(text, &[ours]);
        assert_eq!(
            got,
            vec![
                "10.0.0.1:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
