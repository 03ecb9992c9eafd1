//! The limits and timers of a [`Host`](crate::Host) and of each association, apart from
//! both so that the association's own methods (`assoc`) and the host read one source.

use crate::crypto::{ESP_SUITE_AES128_GCM16, HIP_CIPHER_AES128_CBC};
use crate::puzzle::DifficultyPolicy;
use crate::wire::nat_mode;
use std::time::Duration;

/// Limits and timers of a [`Host`]. Every field has a default; RFC 7401 gives no numbers
/// for the retry limits, so the defaults follow shared/spec/hip.md §2.12.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most associations in any state at once.
    pub max_associations: usize,
    /// Most associations in I1-SENT at once (exchanges we started and nobody answered).
    pub max_pending_i1: usize,
    /// First I1 retransmission timeout; doubles after each retry up to `max_timeout`.
    pub i1_timeout: Duration,
    /// I1 transmissions before E-FAILED.
    pub i1_tries: u32,
    /// First I2 retransmission timeout when the R1 gave no RTT sample; otherwise four
    /// times the I1→R1 round trip, at least `min_timeout`.
    pub i2_timeout: Duration,
    pub i2_tries: u32,
    pub min_timeout: Duration,
    /// Retransmission timeouts stop doubling here.
    pub max_timeout: Duration,
    pub close_timeout: Duration,
    pub close_tries: u32,
    /// How long a responder waits in R2-SENT before it takes the exchange as complete
    /// (the RFC's EC timer) when no traffic from the peer arrives first.
    pub exchange_complete: Duration,
    /// How long a CLOSED or E-FAILED association lingers before it is forgotten.
    pub linger: Duration,
    /// How often the puzzle secret and the R1 Diffie-Hellman key rotate.
    pub secret_rotation: Duration,
    /// PUZZLE Lifetime field: the puzzle is valid for 2^(value - 32) seconds.
    pub puzzle_lifetime: u8,
    pub difficulty: DifficultyPolicy,
    /// Give up on an R1 whose puzzle needs more than this many hash tries.
    pub max_puzzle_tries: u64,
    /// Refuse an R1 whose puzzle difficulty K is above this.
    pub max_puzzle_k: u8,
    /// Puzzles remembered per generation (replay and flood protection); I2s for further
    /// puzzles are refused until the next generation.
    pub max_solutions: usize,
    /// R1s sent to one source address per second at most (RFC 7401 §6.7).
    pub r1_per_source: u32,
    /// Close an association after this long without traffic (the RFC's UAL); zero: never.
    pub idle_timeout: Duration,
    /// Give up a rekey that has not completed after this long, and close.
    pub rekey_timeout: Duration,
    /// Offer the rendezvous service (RFC 8004) to hosts that ask for it in their I2.
    pub rendezvous_server: bool,
    /// HIP BONE (RFC 6079, RFC 7086 §5.3): relay an I1 for any host we have an established
    /// association with, and take a relayed I1 from any such host — the overlay's links
    /// make every neighbour a rendezvous point for the hosts it knows.
    pub overlay_relay: bool,
    /// HIP BONE routing (RFC 6079 §6.1, RFC 7086 §7): the OVERLAY_ID of the overlay whose
    /// routed packets we take and pass on; None routes nothing.
    pub overlay_id: Option<Vec<u8>>,
    /// Lifetime asked for when registering (RFC 8003 one-byte encoding; 0x9e ≈ 57 min).
    pub registration_lifetime: u8,
    /// A registration is renewed at least this often (zero: at four fifths of its
    /// lifetime only). Keepalives to a server expect no answer, so without this an idle
    /// client notices a server that died only at the renewal, 46 minutes on.
    pub registration_check: Duration,
    /// HIP_CIPHER IDs we offer or accept, preferred first.
    pub hip_ciphers: Vec<u16>,
    /// ESP transform suites we offer or accept, preferred first.
    pub esp_suites: Vec<u16>,
    /// Bound of the outgoing packet queue.
    pub max_transmits: usize,
    /// Bound of the event queue.
    pub max_events: usize,
    /// NOTIFYs we send per second at most.
    pub notify_rate: u32,
    /// Anti-replay window of each inbound SA, in packets.
    pub replay_window: usize,
    /// Rekey an SA after it sealed this many packets.
    pub rekey_after_packets: u64,
    /// Rekey an SA after this long; zero: never by time.
    pub rekey_after: Duration,
    /// Inner packets held per peer while its base exchange is under way.
    pub queue_per_peer: usize,
    /// First UPDATE retransmission timeout; doubles up to `max_timeout`.
    pub update_timeout: Duration,
    /// UPDATE transmissions before the association is declared broken.
    pub update_tries: u32,
    /// ESP sent but nothing heard from the peer for this long: probe the current path, then
    /// the other pairs of our and the peer's addresses (RFC 8047 failover). Zero: never.
    pub failover_silence: Duration,
    /// Transmissions of one failover probe before the next path is tried.
    pub probe_tries: u32,
    /// Serve as a relay server (RFC 9028 RELAY_UDP_HIP and RELAY_UDP_ESP) to hosts that
    /// register for it.
    pub relay_server: bool,
    /// What a relay server allows each client.
    pub relay_quota: RelayQuota,
    /// Private ranges a relay server forwards to on its clients' behalf (by default none:
    /// only public addresses, so that a client cannot reach the relay's own site).
    pub relay_private: Vec<crate::Prefix>,
    /// Behind a NAT (a relay server sees us at another address), send a keepalive on every
    /// association that has sent nothing for this long (RFC 9028 §4.10: 15 s). Zero: never.
    pub nat_keepalive: Duration,
    /// Ta: connectivity checks of one association go out at most this often (RFC 9028
    /// §4.4: 50 ms by default, never below 5 ms). Offered in R1 and I2 as
    /// TRANSACTION_PACING; an association uses the larger of the two offers.
    pub check_pacing: Duration,
    /// NAT traversal modes we support, preferred first (RFC 9028 §4.3): offered in our R1s
    /// as NAT_TRAVERSAL_MODE; as initiator we select the first of ours the responder
    /// offers. Connectivity checks run only on associations that selected ICE-HIP-UDP (3).
    pub nat_modes: Vec<u16>,
    /// While an association is relayed, its connectivity checks run again this often, so
    /// that a direct path that opens later is taken. Zero: never.
    pub recheck_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_associations: 4096,
            max_pending_i1: 1024,
            i1_timeout: Duration::from_millis(500),
            i1_tries: 10,
            i2_timeout: Duration::from_millis(500),
            i2_tries: 10,
            min_timeout: Duration::from_millis(100),
            max_timeout: Duration::from_secs(1),
            close_timeout: Duration::from_millis(500),
            close_tries: 5,
            exchange_complete: Duration::from_secs(10),
            linger: Duration::from_secs(30),
            secret_rotation: Duration::from_secs(120),
            puzzle_lifetime: 37,
            difficulty: DifficultyPolicy::default(),
            max_puzzle_tries: 1 << 24,
            max_puzzle_k: 20,
            max_solutions: 65536,
            r1_per_source: 20,
            idle_timeout: Duration::from_secs(15 * 60),
            rekey_timeout: Duration::from_secs(30),
            rendezvous_server: false,
            overlay_relay: false,
            overlay_id: None,
            registration_lifetime: 0x9e,
            registration_check: Duration::from_secs(120),
            hip_ciphers: vec![HIP_CIPHER_AES128_CBC],
            esp_suites: vec![ESP_SUITE_AES128_GCM16],
            max_transmits: 4096,
            max_events: 4096,
            notify_rate: 100,
            replay_window: 8192,
            rekey_after_packets: 1 << 32,
            rekey_after: Duration::from_secs(3600),
            queue_per_peer: 64,
            update_timeout: Duration::from_millis(500),
            update_tries: 8,
            failover_silence: Duration::from_millis(1500),
            probe_tries: 3,
            relay_server: false,
            relay_quota: RelayQuota::default(),
            relay_private: Vec::new(),
            nat_keepalive: Duration::from_secs(15),
            check_pacing: Duration::from_millis(50),
            nat_modes: vec![nat_mode::ICE_HIP_UDP, nat_mode::UDP_ENCAPSULATION],
            recheck_interval: Duration::from_secs(30),
        }
    }
}

/// What a relay server allows each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayQuota {
    /// Peers a client may have permissions for at once.
    pub permissions: usize,
    /// Bytes per second forwarded for one client (both directions, control and ESP),
    /// averaged over a one-second burst.
    pub rate: u64,
    /// Bytes forwarded for one client per hour (`BUDGET_PERIOD`; renewing changes nothing).
    pub bytes: u64,
}

impl Default for RelayQuota {
    fn default() -> Self {
        RelayQuota {
            permissions: 256,
            rate: 125_000_000,
            bytes: 64 << 30,
        }
    }
}
