//! One association's state (RFC 7401 §4.4) and the packet-level checks and signatures that
//! every exchange shares. The transitions themselves live in `host`, which owns the table
//! of associations and the stateless responder.

mod data;
pub(crate) mod ice;
mod upkeep;

pub(crate) use data::{Received, Sealed};
pub(crate) use upkeep::UpdateDue;

use crate::crypto::Profile;
use crate::esp::{InboundSa, OutboundSa};
use crate::identity::{Hit, HostIdentity, PublicIdentity, ALGORITHM_EDDSA};
use crate::wire::EspInfo;
use crate::wire::{param_type, HipRepr, Packet, Param};
use crate::Error;
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// A small handle naming one association for as long as it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssocHandle(pub u32);

/// The states of RFC 7401 §4.4.1. UNASSOCIATED is the absence of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssocState {
    I1Sent,
    I2Sent,
    R2Sent,
    Established,
    Closing,
    Closed,
    Failed,
}

impl AssocState {
    /// The RFC's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            AssocState::I1Sent => "I1-SENT",
            AssocState::I2Sent => "I2-SENT",
            AssocState::R2Sent => "R2-SENT",
            AssocState::Established => "ESTABLISHED",
            AssocState::Closing => "CLOSING",
            AssocState::Closed => "CLOSED",
            AssocState::Failed => "E-FAILED",
        }
    }
}

impl core::fmt::Display for AssocState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The ESP security associations a base exchange produced, for the data plane.
/// `Debug` shows SPIs and the suite, never key bytes.
#[derive(Clone)]
pub struct EspKeys {
    pub suite: u16,
    /// SPI the peer puts on packets it sends us.
    pub spi_in: u32,
    /// SPI we put on packets to the peer.
    pub spi_out: u32,
    pub enc_in: Zeroizing<Vec<u8>>,
    pub auth_in: Zeroizing<Vec<u8>>,
    pub enc_out: Zeroizing<Vec<u8>>,
    pub auth_out: Zeroizing<Vec<u8>>,
}

impl EspKeys {
    /// Whether `other` is the far end of these keys (its inbound is our outbound and back),
    /// or the first thing that differs. For tests and checks, not a constant-time compare.
    pub fn mirrors(&self, other: &EspKeys) -> Result<(), &'static str> {
        let checks = [
            (self.suite == other.suite, "suites differ"),
            (
                self.spi_out == other.spi_in,
                "A's outbound SPI is not B's inbound",
            ),
            (
                self.spi_in == other.spi_out,
                "A's inbound SPI is not B's outbound",
            ),
            (
                *self.enc_out == *other.enc_in,
                "A->B encryption keys differ",
            ),
            (
                *self.enc_in == *other.enc_out,
                "B->A encryption keys differ",
            ),
            (*self.auth_out == *other.auth_in, "A->B auth keys differ"),
            (*self.auth_in == *other.auth_out, "B->A auth keys differ"),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(why),
            None => Ok(()),
        }
    }
}

impl core::fmt::Debug for EspKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EspKeys")
            .field("suite", &self.suite)
            .field("spi_in", &format_args!("{:#010x}", self.spi_in))
            .field("spi_out", &format_args!("{:#010x}", self.spi_out))
            .finish_non_exhaustive()
    }
}

/// Keys an association holds once KEYMAT exists.
pub(crate) struct SessionKeys {
    pub mac_out: Zeroizing<Vec<u8>>,
    pub mac_in: Zeroizing<Vec<u8>>,
    pub esp: EspKeys,
    /// What KEYMAT was made from, so that a rekey without new Diffie-Hellman can draw the
    /// next ESP keys from the same stream (RFC 7402 §6.8).
    pub seed: KeymatSeed,
    /// The next unused KEYMAT byte.
    pub keymat_next: usize,
}

/// The inputs of KEYMAT.
pub(crate) struct KeymatSeed {
    pub kij: Zeroizing<Vec<u8>>,
    pub i: Vec<u8>,
    pub j: Vec<u8>,
    pub hit_i: Hit,
    pub hit_r: Hit,
}

/// Traffic counters of one association.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub last_tx: Option<Instant>,
    pub last_rx: Option<Instant>,
}

/// The live ESP security associations of an association.
pub(crate) struct EspState {
    pub out: OutboundSa,
    /// Newest first; the one before stays for packets still in flight after a rekey.
    pub inbound: Vec<InboundSa>,
    pub installed_at: Instant,
    pub rekeys: u32,
}

/// A rekey in progress (RFC 7402 §6.8–6.10): our half, and the peer's once it arrives.
pub(crate) struct Rekey {
    pub started: Instant,
    pub our_spi: u32,
    pub our_index: usize,
    pub our_seq: u32,
    pub acked: bool,
    pub peer_info: Option<EspInfo>,
    /// The new outbound SA, ready once both halves are known; used from the final ACK on.
    pub next_out: Option<OutboundSa>,
}

/// An UPDATE waiting for its ACK.
pub(crate) struct PendingUpdate {
    pub seq: u32,
    pub bytes: Vec<u8>,
    pub due: Instant,
    pub rto: Duration,
    pub tries: u32,
    /// Where it goes, when not to the peer's current locator (an address under test).
    pub to: Option<(SocketAddr, SocketAddr)>,
}

/// A new address of the peer under test (RFC 8046 §5.4): nothing but the UPDATE carrying
/// the nonce goes there until the nonce comes back.
pub(crate) struct Verify {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub nonce: Vec<u8>,
    /// The UPDATE ID of the UPDATE that carries the nonce.
    pub seq: u32,
    /// When the new address was first seen.
    pub started: Instant,
    pub kind: Check,
}

/// What a signed-echo check is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// An address the peer sent from. `old_deprecated`: its announcement left the locator
    /// we use out (RFC 8046 DEPRECATED), so until the check completes data goes to the new
    /// address within the credit (§3.3.2).
    PeerAddress { old_deprecated: bool },
    /// A failover probe of a path (ours or the peer's other address): fewer tries, and no
    /// move if it is the current path.
    Probe,
}

/// Credit-based authorization (RFC 8046 §3.3.2, §5.6): bytes the peer sent us, which bound
/// what we may send to one of its addresses before that address is verified. Aged by 7/8
/// every 5 s, so that old traffic buys nothing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Credit {
    bytes: u64,
    aged_at: Option<Instant>,
}

/// RFC 8046's CreditAgingInterval.
const CREDIT_AGING: Duration = Duration::from_secs(5);

impl Credit {
    fn age(&mut self, now: Instant) {
        let Some(at) = self.aged_at else {
            self.aged_at = Some(now);
            return;
        };
        let steps = (now.saturating_duration_since(at).as_secs() / CREDIT_AGING.as_secs()).min(64);
        for _ in 0..steps {
            self.bytes -= self.bytes / 8;
        }
        self.aged_at = Some(at + CREDIT_AGING * steps as u32);
    }

    pub fn earn(&mut self, now: Instant, bytes: usize) {
        self.age(now);
        self.bytes = self.bytes.saturating_add(bytes as u64);
    }

    /// Takes `bytes` of credit if there is that much.
    pub fn spend(&mut self, now: Instant, bytes: usize) -> bool {
        self.age(now);
        let ok = self.bytes >= bytes as u64;
        if ok {
            self.bytes -= bytes as u64;
        }
        ok
    }
}

pub(crate) struct Assoc {
    pub handle: AssocHandle,
    pub peer_hit: Hit,
    pub state: AssocState,
    /// True when we sent the I1 (the ICE controlling side later on).
    pub initiator: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Where I1s go until an R1 names the peer's address.
    pub candidates: Vec<SocketAddr>,
    /// An I1 routed through the overlay (HIP BONE), and the neighbour it goes to: the
    /// exchange's only I1 when `last_sent` holds none, else a copy beside the I1s to
    /// `candidates` (which went unanswered).
    pub routed_i1: Option<(Hit, Vec<u8>)>,
    pub peer: Option<PublicIdentity>,
    /// The peer's HOST_ID TLV as its R1 carried it (HIP_MAC_2 covers it).
    pub peer_host_id_tlv: Vec<u8>,
    /// Largest R1 generation counter seen from the peer.
    pub r1_counter: Option<u64>,
    pub keys: Option<SessionKeys>,
    /// The packet a retransmission sends again (I1, I2, CLOSE) or a duplicate I2 gets (R2).
    pub last_sent: Option<Vec<u8>>,
    pub close_nonce: Option<Vec<u8>>,
    /// When the association's timer fires next; set only through [`Timers::set`], which
    /// keeps the host's queue in step.
    timer: Option<Instant>,
    /// When the current schedule's first transmission went out (an RTT sample's start).
    pub armed_at: Option<Instant>,
    pub rto: Duration,
    pub tries: u32,
    pub established_at: Option<Instant>,
    pub last_error: Option<Error>,
    pub esp: Option<EspState>,
    /// Inner packets (next header, transport payload) waiting for the base exchange.
    pub queue: VecDeque<(u8, Vec<u8>)>,
    pub traffic: Traffic,
    /// Our next UPDATE ID (RFC 7401 §5.2.16), and the last one of the peer's we processed.
    pub next_update_id: u32,
    pub peer_update_id: Option<u32>,
    pub rekey: Option<Box<Rekey>>,
    pub pending_update: Option<Box<PendingUpdate>>,
    pub verify: Option<Box<Verify>>,
    /// A rendezvous registration runs over this association (either way): it is kept
    /// even when idle.
    pub registration: bool,
    /// Our addresses as the peer last heard them (at the exchange, or announced since).
    pub announced: Vec<SocketAddr>,
    /// Addresses whose check went unanswered, and when.
    pub failed_checks: Vec<(SocketAddr, Instant)>,
    /// The last time the peer's locator changed, and how long from the first packet seen
    /// at the new address until it was verified.
    pub last_move: Option<(Instant, Duration)>,
    /// The peer's addresses from its last LOCATOR_SET, preferred first (RFC 8047): where a
    /// failover looks when the current path falls silent.
    pub peer_locators: Vec<SocketAddr>,
    /// Paths (local, remote) still to probe in a failover under way, in order.
    pub failover: Vec<(SocketAddr, SocketAddr)>,
    /// The first ESP packet we sent since we last heard from the peer: silence counts
    /// from here, not from a quiet spell before it.
    pub unanswered_since: Option<Instant>,
    /// Data came from the peer and we have sent nothing since: unless we send by then, an
    /// ESP dummy packet goes at this instant, so that the peer hears from us before its
    /// silence counts as a broken path (a quiet end of a conversation is not a failure).
    pub ack_due: Option<Instant>,
    pub credit: Credit,
    /// Relayed through our relay server (this association's `remote`): the peer's address
    /// as the server sees it, named in RELAY_TO on everything we send.
    pub relay_to: Option<SocketAddr>,
    /// The NAT traversal mode the base exchange selected (None: the peer sent none, the
    /// implicit UDP mode of RFC 9028 §4.7.1), and the Ta both sides use.
    pub nat_mode: Option<u16>,
    pub pacing: Duration,
    /// UPDATE IDs of the peer's connectivity checks seen lately (replays are dropped).
    pub check_window: ice::CheckWindow,
    /// We sent the peer our candidates (a LOCATOR_SET) at least once.
    pub candidates_sent: bool,
    /// Where a relay server of ours last saw the peer (RELAY_FROM of its packets it passed
    /// on): the server's address and the peer's. Behind a NAT that maps per destination
    /// the peer is at another port for each server, so the origin holds for that server only.
    pub relayed_origin: Option<(SocketAddr, SocketAddr)>,
    /// The PEER_PERMISSION the relay server last got for this association.
    pub permission: Option<crate::wire::PeerPermission>,
    /// The peer's candidates (address, kind, priority) from its last LOCATOR_SET.
    pub peer_candidates: Vec<ice::Candidate>,
    pub ice: Option<Box<ice::Ice>>,
    /// When we last sent a HIP packet on this association (keepalives count from here).
    pub last_sent_at: Option<Instant>,
}

impl Assoc {
    pub fn new(handle: AssocHandle, peer_hit: Hit, state: AssocState) -> Assoc {
        let unspecified = SocketAddr::from(([0u8; 4], 0));
        Assoc {
            handle,
            peer_hit,
            state,
            initiator: false,
            local: unspecified,
            remote: unspecified,
            candidates: Vec::new(),
            routed_i1: None,
            peer: None,
            peer_host_id_tlv: Vec::new(),
            r1_counter: None,
            keys: None,
            last_sent: None,
            close_nonce: None,
            timer: None,
            armed_at: None,
            rto: Duration::ZERO,
            tries: 0,
            established_at: None,
            last_error: None,
            esp: None,
            queue: VecDeque::new(),
            traffic: Traffic::default(),
            next_update_id: 0,
            peer_update_id: None,
            rekey: None,
            pending_update: None,
            verify: None,
            failed_checks: Vec::new(),
            announced: Vec::new(),
            registration: false,
            last_move: None,
            peer_locators: Vec::new(),
            failover: Vec::new(),
            unanswered_since: None,
            ack_due: None,
            credit: Credit::default(),
            relay_to: None,
            candidates_sent: false,
            check_window: Default::default(),
            nat_mode: None,
            pacing: Duration::ZERO,
            relayed_origin: None,
            permission: None,
            peer_candidates: Vec::new(),
            ice: None,
            last_sent_at: None,
        }
    }

    /// When the association's timer fires next.
    pub fn timer(&self) -> Option<Instant> {
        self.timer
    }

    /// Starts a retransmission schedule: first expiry after `rto`.
    pub fn arm(&mut self, timers: &mut Timers, now: Instant, rto: Duration) {
        self.armed_at = Some(now);
        self.rto = rto;
        self.tries = 1;
        timers.set(self, Some(now + rto));
    }

    /// Doubles the timeout, up to `cap`, after a retransmission.
    /// The round-trip time, if an answer arrives at `now` to a packet sent only once
    /// (after a retransmission the answer is ambiguous, Karn's rule).
    pub fn rtt_sample(&self, now: Instant) -> Option<Duration> {
        (self.tries == 1)
            .then(|| self.armed_at.map(|t| now - t))
            .flatten()
    }

    pub fn backoff(&mut self, timers: &mut Timers, now: Instant, cap: Duration) {
        self.tries += 1;
        self.rto = self.rto.saturating_mul(2).min(cap);
        timers.set(self, Some(now + self.rto));
    }
}

/// Every association's next deadline, earliest first: the host finds its next deadline and
/// the associations due in O(log n), never by a scan of all of them. An association's
/// timer is changed only here, so the queue always says what the associations say.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    queue: BTreeSet<(Instant, Hit)>,
}

impl Timers {
    /// Sets the timer of `a` (`None`: no timer).
    pub fn set(&mut self, a: &mut Assoc, at: Option<Instant>) {
        if a.timer == at {
            return;
        }
        if let Some(old) = a.timer {
            self.queue.remove(&(old, a.peer_hit));
        }
        if let Some(at) = at {
            self.queue.insert((at, a.peer_hit));
        }
        a.timer = at;
    }

    /// Takes the timer of an association that is going away.
    pub fn forget(&mut self, a: &Assoc) {
        if let Some(at) = a.timer {
            self.queue.remove(&(at, a.peer_hit));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// The associations whose timer is due at `now`, earliest first.
    pub fn due(&self, now: Instant) -> Vec<Hit> {
        self.queue
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, peer)| *peer)
            .collect()
    }

    /// Whether the queue holds exactly the timers of `assocs` (for tests and the simulator).
    pub fn agree<'a>(&self, assocs: impl Iterator<Item = &'a Assoc>) -> bool {
        let mut n = 0;
        for a in assocs {
            if let Some(at) = a.timer {
                if !self.queue.contains(&(at, a.peer_hit)) {
                    return false;
                }
                n += 1;
            }
        }
        n == self.queue.len()
    }
}

/// Bytes covered by a MAC or signature whose TLV starts at `offset` in `packet` (RFC 7401
/// §6.4): the packet up to that TLV, then `appended`, with Header Length set to the result
/// and the checksum zero. Works on the received bytes, so padding as sent is covered too.
pub(crate) fn covered_raw(packet: &[u8], offset: usize, appended: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(offset + appended.len());
    v.extend_from_slice(&packet[..offset]);
    v.extend_from_slice(appended);
    v[1] = (v.len() / 8 - 1) as u8;
    v[4] = 0;
    v[5] = 0;
    v
}

/// The raw offset and contents of the first parameter of type `ty` in a packet.
pub(crate) fn find_raw(bytes: &[u8], ty: u16) -> Option<(usize, &[u8])> {
    let view = Packet::new_checked(bytes).ok()?;
    let (offset, len) = view
        .params()
        .map_while(Result::ok)
        .find(|p| p.ty == ty)
        .map(|p| (p.offset, p.contents.len()))?;
    bytes.get(offset + 4..offset + 4 + len).map(|c| (offset, c))
}

/// Appends HIP_MAC (or HIP_MAC_2 with `appended`, or a relay's RVS_HMAC or RELAY_HMAC,
/// which are computed the same way) to `repr`, keyed with `key`.
pub(crate) fn add_mac(
    repr: &mut HipRepr,
    profile: &dyn Profile,
    key: &[u8],
    ty: u16,
    appended: &[u8],
) {
    let covered = repr.covered_bytes(ty, appended);
    let mut mac = vec![0u8; profile.mac_len()];
    profile.mac(key, &covered, &mut mac);
    repr.params.push(match ty {
        param_type::HIP_MAC_2 => Param::HipMac2(mac),
        param_type::RVS_HMAC => Param::RvsHmac(mac),
        param_type::RELAY_HMAC => Param::RelayHmac(mac),
        _ => Param::HipMac(mac),
    });
}

/// Appends HIP_SIGNATURE (or HIP_SIGNATURE_2) over what precedes it.
pub(crate) fn add_signature(repr: &mut HipRepr, identity: &HostIdentity, ty: u16) {
    let covered = repr.covered_bytes(ty, &[]);
    let signature = identity.sign(&covered).to_vec();
    repr.params.push(if ty == param_type::HIP_SIGNATURE_2 {
        Param::HipSignature2 {
            algorithm: ALGORITHM_EDDSA,
            signature,
        }
    } else {
        Param::HipSignature {
            algorithm: ALGORITHM_EDDSA,
            signature,
        }
    });
}

/// Checks the HIP_MAC (or HIP_MAC_2 with `appended`) of a received packet.
pub(crate) fn check_mac(
    bytes: &[u8],
    profile: &dyn Profile,
    key: &[u8],
    ty: u16,
    appended: &[u8],
) -> Result<(), Error> {
    let (offset, mac) = find_raw(bytes, ty).ok_or(Error::MissingParam(ty))?;
    let mut expected = vec![0u8; profile.mac_len()];
    profile.mac(key, &covered_raw(bytes, offset, appended), &mut expected);
    if constant_time_eq(&expected, mac) {
        Ok(())
    } else {
        Err(Error::BadMac)
    }
}

/// Checks HIP_SIGNATURE of a received packet, or HIP_SIGNATURE_2 of an R1 (with the
/// receiver HIT and the PUZZLE's Opaque and #I zeroed, RFC 7401 §6.4.2).
pub(crate) fn check_signature(bytes: &[u8], peer: &PublicIdentity, ty: u16) -> Result<(), Error> {
    let (offset, contents) = find_raw(bytes, ty).ok_or(Error::MissingParam(ty))?;
    if contents.len() < 2 || u16::from_be_bytes([contents[0], contents[1]]) != ALGORITHM_EDDSA {
        return Err(Error::BadSignature);
    }
    let mut covered = covered_raw(bytes, offset, &[]);
    if ty == param_type::HIP_SIGNATURE_2 {
        covered[24..40].fill(0);
        if let Some((p, c)) = find_raw(bytes, param_type::PUZZLE) {
            // Opaque (2 bytes at contents offset 2) and #I (from offset 4) to the end.
            let start = p + 4 + 2;
            let end = p + 4 + c.len();
            if end <= covered.len() {
                covered[start..end].fill(0);
            }
        }
    }
    peer.verify(&covered, &contents[2..])
        .map_err(|_| Error::BadSignature)
}

/// Equality whose running time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_bytes_cut_before_the_parameter_with_length_and_checksum_fixed() {
        // A 56-byte packet: header (40) and two 8-byte TLVs; cut before the second.
        let mut p = vec![0u8; 56];
        p[1] = 6;
        p[4] = 0xab;
        p[5] = 0xcd;
        let c = covered_raw(&p, 48, &[]);
        assert_eq!(c.len(), 48);
        assert_eq!(c[1], 5);
        assert_eq!(&c[4..6], &[0, 0]);
        let c = covered_raw(&p, 48, &[9; 16]);
        assert_eq!(c.len(), 64);
        assert_eq!(c[1], 7);
        assert_eq!(&c[48..], &[9; 16]);
    }

    #[test]
    fn constant_time_eq_compares_lengths_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_karn_rule_holds() {
        let now = Instant::now();
        let mut a = Assoc::new(AssocHandle(1), Hit::NULL, AssocState::I1Sent);
        let mut timers = Timers::default();
        a.arm(&mut timers, now, Duration::from_millis(400));
        assert_eq!(timers.next(), Some(now + Duration::from_millis(400)));
        assert_eq!(
            a.rtt_sample(now + Duration::from_millis(30)),
            Some(Duration::from_millis(30))
        );
        a.backoff(&mut timers, now, Duration::from_secs(1));
        assert_eq!(a.rto, Duration::from_millis(800));
        assert_eq!(a.rtt_sample(now), None, "no sample after a retransmission");
        a.backoff(&mut timers, now, Duration::from_secs(1));
        assert_eq!(a.rto, Duration::from_secs(1));
        assert_eq!(a.tries, 3);
        assert_eq!(timers.next(), Some(now + Duration::from_secs(1)));
        assert!(timers.agree([&a].into_iter()));
    }

    #[test]
    fn the_timer_queue_follows_every_change_and_gives_the_due_earliest_first() {
        let now = Instant::now();
        let hit = |n: u8| Hit([n; 16]);
        let mut timers = Timers::default();
        let mut assocs: Vec<Assoc> = (1..=3)
            .map(|n| Assoc::new(AssocHandle(n.into()), hit(n), AssocState::Established))
            .collect();
        for (a, ms) in assocs.iter_mut().zip([30, 10, 20]) {
            timers.set(a, Some(now + Duration::from_millis(ms)));
        }
        assert_eq!(timers.next(), Some(now + Duration::from_millis(10)));
        assert_eq!(
            timers.due(now + Duration::from_millis(20)),
            vec![hit(2), hit(3)]
        );
        // Moved later, cleared, forgotten: the queue follows.
        timers.set(&mut assocs[1], Some(now + Duration::from_millis(40)));
        timers.set(&mut assocs[2], None);
        assert!(timers.agree(assocs.iter()));
        assert_eq!(timers.due(now + Duration::from_millis(35)), vec![hit(1)]);
        timers.forget(&assocs[0]);
        assert!(timers.agree(assocs[1..].iter()));
        assert_eq!(timers.next(), Some(now + Duration::from_millis(40)));
        assert_eq!(timers.due(now), Vec::<Hit>::new());
    }

    #[test]
    fn credit_is_spent_only_when_earned_and_ages_by_seven_eighths() {
        let t0 = Instant::now();
        let mut c = Credit::default();
        assert!(!c.spend(t0, 1));
        c.earn(t0, 8000);
        assert!(c.spend(t0, 1000));
        assert!(!c.spend(t0, 7001));
        // Two aging intervals: 7000 × 7/8 × 7/8.
        assert!(c.spend(t0 + Duration::from_secs(10), 5360));
        assert!(!c.spend(t0 + Duration::from_secs(10), 2));
        // Half an interval later nothing has aged further.
        c.earn(t0 + Duration::from_millis(12_500), 100);
        assert!(c.spend(t0 + Duration::from_millis(12_500), 100));
    }

    #[test]
    fn state_names_are_the_rfc_names() {
        assert_eq!(AssocState::I1Sent.to_string(), "I1-SENT");
        assert_eq!(AssocState::Failed.to_string(), "E-FAILED");
    }
}
