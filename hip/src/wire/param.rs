//! HIP parameters (RFC 7401 §5.2, RFC 7402 §5.1): typed contents for every parameter the
//! base exchange, UPDATE, CLOSE and NOTIFY use, and those of native NAT traversal (RFC 9028
//! §5); anything else survives as `Unknown`.
//!
//! One TLV is `Type(2) | Length(2) | Contents | zero padding to a multiple of 8`. Parsing a
//! known type checks its contents against the RFC layout (exact lengths where the RFC fixes
//! them, internal length fields consistent with Length) and fails with `BadParam(type)`;
//! every field, reserved ones included, is kept so that emit reproduces the input.

use std::net::{IpAddr, SocketAddr};

use super::codec::{Counter, Sink, Writer};
use super::{Reader, WireError};

/// Parameter type numbers (RFC 7401 §5.2, RFC 7402, RFC 9028 §5, IANA).
pub mod param_type {
    pub const ESP_INFO: u16 = 65;
    pub const R1_COUNTER: u16 = 129;
    pub const LOCATOR_SET: u16 = 193;
    pub const PUZZLE: u16 = 257;
    pub const SOLUTION: u16 = 321;
    pub const SEQ: u16 = 385;
    pub const ACK: u16 = 449;
    pub const DH_GROUP_LIST: u16 = 511;
    pub const DIFFIE_HELLMAN: u16 = 513;
    pub const HIP_CIPHER: u16 = 579;
    pub const NAT_TRAVERSAL_MODE: u16 = 608;
    pub const TRANSACTION_PACING: u16 = 610;
    pub const ENCRYPTED: u16 = 641;
    pub const HOST_ID: u16 = 705;
    pub const HIT_SUITE_LIST: u16 = 715;
    pub const NOTIFICATION: u16 = 832;
    pub const ECHO_REQUEST_SIGNED: u16 = 897;
    pub const REG_INFO: u16 = 930;
    pub const REG_REQUEST: u16 = 932;
    pub const REG_RESPONSE: u16 = 934;
    pub const REG_FAILED: u16 = 936;
    pub const REG_FROM: u16 = 950;
    pub const ECHO_RESPONSE_SIGNED: u16 = 961;
    pub const TRANSPORT_FORMAT_LIST: u16 = 2049;
    pub const ESP_TRANSFORM: u16 = 4095;
    pub const OVERLAY_ID: u16 = 4592;
    pub const ROUTE_DST: u16 = 4601;
    pub const RELAYED_ADDRESS: u16 = 4650;
    pub const MAPPED_ADDRESS: u16 = 4660;
    pub const PEER_PERMISSION: u16 = 4680;
    pub const CANDIDATE_PRIORITY: u16 = 4700;
    pub const NOMINATE: u16 = 4710;
    pub const HIP_MAC: u16 = 61505;
    pub const HIP_MAC_2: u16 = 61569;
    pub const HIP_SIGNATURE_2: u16 = 61633;
    pub const HIP_SIGNATURE: u16 = 61697;
    pub const ECHO_RESPONSE_UNSIGNED: u16 = 63425;
    pub const ECHO_REQUEST_UNSIGNED: u16 = 63661;
    pub const RELAY_FROM: u16 = 63998;
    pub const RELAY_TO: u16 = 64002;
    pub const OVERLAY_TTL: u16 = 64011;
    pub const ROUTE_VIA: u16 = 64017;
    pub const FROM: u16 = 65498;
    pub const RVS_HMAC: u16 = 65500;
    pub const VIA_RVS: u16 = 65502;
    pub const RELAY_HMAC: u16 = 65520;
}

/// NAT traversal mode IDs carried in NAT_TRAVERSAL_MODE (RFC 5770 §7, RFC 9028 §5.4).
pub mod nat_mode {
    /// HIP and ESP in UDP, no connectivity checks.
    pub const UDP_ENCAPSULATION: u16 = 1;
    /// RFC 5770: ICE with STUN connectivity checks.
    pub const ICE_STUN_UDP: u16 = 2;
    /// RFC 9028: ICE with connectivity checks as HIP UPDATEs.
    pub const ICE_HIP_UDP: u16 = 3;
}

/// Flags of ROUTE_DST and ROUTE_VIA (RFC 6028 §5, registry "HIP Via Flags").
pub mod route_flags {
    /// The answer is to take the reverse of this route.
    pub const SYMMETRIC: u16 = 0x8000;
    /// No hop of the route may be skipped.
    pub const MUST_FOLLOW: u16 = 0x4000;
}

/// HITs a route may hold (RFC 6028 §5: at most 32).
pub const MAX_ROUTE_HITS: usize = 32;

/// ROUTE_DST and ROUTE_VIA (RFC 6028 §5): Flags, Reserved, then the HITs of the hops, in
/// order. At most [`MAX_ROUTE_HITS`]; ROUTE_DST names at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub flags: u16,
    pub reserved: u16,
    pub hits: Vec<[u8; 16]>,
}

impl Route {
    /// An empty route with `flags`, as its originator sends it.
    pub fn new(flags: u16) -> Route {
        Route {
            flags,
            reserved: 0,
            hits: Vec::new(),
        }
    }

    fn read(r: &mut Reader<'_>, ty: u16) -> Result<Route, WireError> {
        let (flags, reserved) = (r.u16()?, r.u16()?);
        let hits = r.items(Reader::array)?;
        if hits.len() > MAX_ROUTE_HITS || (ty == param_type::ROUTE_DST && hits.is_empty()) {
            return Err(WireError::BadParam(ty));
        }
        Ok(Route {
            flags,
            reserved,
            hits,
        })
    }
}

/// ESP_INFO (RFC 7402 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspInfo {
    pub reserved: u16,
    pub keymat_index: u16,
    pub old_spi: u32,
    pub new_spi: u32,
}

/// PUZZLE (RFC 7401 §5.2.4). `i` is RHASH_len/8 bytes (any length ≥ 1 parses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Puzzle {
    pub k: u8,
    pub lifetime: u8,
    pub opaque: [u8; 2],
    pub i: Vec<u8>,
}

/// SOLUTION (RFC 7401 §5.2.5). `i` and `j` have equal lengths: (Length - 4) / 2 each;
/// an odd remainder is `BadParam`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solution {
    pub k: u8,
    pub reserved: u8,
    pub opaque: [u8; 2],
    pub i: Vec<u8>,
    pub j: Vec<u8>,
}

/// HOST_ID (RFC 7401 §5.2.9): the Host Identity field is kept as raw bytes (for EdDSA:
/// curve(2) | 0x0000 | public key, see `identity`), the Domain Identifier likewise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostId {
    pub algorithm: u16,
    pub hi: Vec<u8>,
    /// 4 bits: 0 none, 1 FQDN, 2 NAI.
    pub di_type: u8,
    pub di: Vec<u8>,
}

/// NOTIFY message types (RFC 7401 §5.2.19 and extensions; 60–64 and NAT_KEEPALIVE from
/// RFC 9028 §5.10, §8). Unknown values survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyType {
    UnsupportedCriticalParameterType,         // 1
    InvalidSyntax,                            // 7
    NoDhProposalChosen,                       // 14
    InvalidDhChosen,                          // 15
    NoHipProposalChosen,                      // 16
    InvalidHipCipherChosen,                   // 17
    NoEspProposalChosen,                      // 18
    InvalidEspTransformChosen,                // 19
    UnsupportedHitSuite,                      // 20
    AuthenticationFailed,                     // 24
    ChecksumFailed,                           // 26
    HipMacFailed,                             // 28
    EncryptionFailed,                         // 32
    InvalidHit,                               // 40
    BlockedByPolicy,                          // 42
    ResponderBusyPleaseRetry,                 // 44
    NoValidNatTraversalModeParameter,         // 60
    ConnectivityChecksFailed,                 // 61
    MessageNotRelayed,                        // 62
    ServerReflexiveCandidateAllocationFailed, // 63
    RvsHmacProhibitedWithRelay,               // 64
    OverlayTtlExceeded,                       // 70
    UnknownNextHop,                           // 90
    I2Acknowledgement,                        // 16384
    NatKeepalive,                             // 16385
    Unknown(u16),
}

crate::raw_conversions!(NotifyType: u16 {
    UnsupportedCriticalParameterType = 1,
    InvalidSyntax = 7,
    NoDhProposalChosen = 14,
    InvalidDhChosen = 15,
    NoHipProposalChosen = 16,
    InvalidHipCipherChosen = 17,
    NoEspProposalChosen = 18,
    InvalidEspTransformChosen = 19,
    UnsupportedHitSuite = 20,
    AuthenticationFailed = 24,
    ChecksumFailed = 26,
    HipMacFailed = 28,
    EncryptionFailed = 32,
    InvalidHit = 40,
    BlockedByPolicy = 42,
    ResponderBusyPleaseRetry = 44,
    NoValidNatTraversalModeParameter = 60,
    ConnectivityChecksFailed = 61,
    MessageNotRelayed = 62,
    ServerReflexiveCandidateAllocationFailed = 63,
    RvsHmacProhibitedWithRelay = 64,
    OverlayTtlExceeded = 70,
    UnknownNextHop = 90,
    I2Acknowledgement = 16384,
    NatKeepalive = 16385,
});

impl NotifyType {
    /// Types below 16384 report errors; the rest are status (RFC 7401 §5.2.19).
    pub fn is_error(self) -> bool {
        u16::from(self) < 16384
    }
}

/// NOTIFICATION (RFC 7401 §5.2.19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub reserved: u16,
    pub kind: NotifyType,
    pub data: Vec<u8>,
}

/// One locator of a LOCATOR_SET (RFC 8046 §4; type 2 from RFC 9028 §5.7). The Locator
/// field is kept as bytes so that every locator type round-trips; [`TransportLocator`]
/// reads and writes type 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    /// 0 both, 1 HIP signaling, 2 ESP.
    pub traffic_type: u8,
    pub locator_type: u8,
    /// Reserved (7 bits) and P, the preferred bit (the lowest bit), as on the wire.
    pub flags: u8,
    /// Seconds.
    pub lifetime: u32,
    /// Locator Length × 4 bytes.
    pub locator: Vec<u8>,
}

/// Locator type 2, a transport address (RFC 9028 §5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLocator {
    pub port: u16,
    /// IP protocol of the transport; 17 (UDP).
    pub protocol: u8,
    /// 0 host, 1 server-reflexive, 2 peer-reflexive, 3 relayed.
    pub kind: u8,
    pub priority: u32,
    /// SPI the sender expects on ESP that uses this locator.
    pub spi: u32,
    /// IPv6 or IPv4-mapped IPv6.
    pub address: [u8; 16],
}

impl Locator {
    pub const TYPE_TRANSPORT: u8 = 2;

    pub fn preferred(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The transport address of a type-2 locator.
    pub fn transport(&self) -> Option<TransportLocator> {
        if self.locator_type != Self::TYPE_TRANSPORT || self.locator.len() != 28 {
            return None;
        }
        let l = &self.locator;
        Some(TransportLocator {
            port: u16::from_be_bytes([l[0], l[1]]),
            protocol: l[2],
            kind: l[3],
            priority: u32::from_be_bytes([l[4], l[5], l[6], l[7]]),
            spi: u32::from_be_bytes([l[8], l[9], l[10], l[11]]),
            address: l[12..28].try_into().ok()?,
        })
    }

    /// A type-2 locator for both kinds of traffic.
    pub fn from_transport(t: &TransportLocator, preferred: bool, lifetime: u32) -> Locator {
        let mut locator = Vec::with_capacity(28);
        locator.extend_from_slice(&t.port.to_be_bytes());
        locator.extend_from_slice(&[t.protocol, t.kind]);
        locator.extend_from_slice(&t.priority.to_be_bytes());
        locator.extend_from_slice(&t.spi.to_be_bytes());
        locator.extend_from_slice(&t.address);
        Locator {
            traffic_type: 0,
            locator_type: Self::TYPE_TRANSPORT,
            flags: u8::from(preferred),
            lifetime,
            locator,
        }
    }
}

/// `Port(2) | Protocol(1) | Reserved(1) | Address(16)`: the contents of REG_FROM, RELAY_FROM,
/// RELAY_TO, RELAYED_ADDRESS and MAPPED_ADDRESS (RFC 9028 §5.6, §5.12), Length exactly 20.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportAddress {
    /// 0 with protocol 0 (plain IP), allowed in REG_FROM, RELAY_FROM and RELAY_TO only.
    pub port: u16,
    /// IP protocol of the transport; 17 (UDP).
    pub protocol: u8,
    pub reserved: u8,
    /// IPv6 or IPv4-mapped IPv6.
    pub address: [u8; 16],
}

impl TransportAddress {
    /// UDP (protocol 17), reserved 0; an IPv4 address is written IPv4-mapped
    /// (`::ffff:a.b.c.d`).
    pub fn udp(addr: SocketAddr) -> TransportAddress {
        TransportAddress {
            port: addr.port(),
            protocol: UDP,
            reserved: 0,
            address: mapped(addr.ip()),
        }
    }

    /// The socket address; IPv4-mapped addresses come back as IPv4.
    pub fn socket(&self) -> SocketAddr {
        SocketAddr::new(unmapped(self.address), self.port)
    }

    fn read(r: &mut Reader<'_>) -> Result<TransportAddress, WireError> {
        Ok(TransportAddress {
            port: r.u16()?,
            protocol: r.u8()?,
            reserved: r.u8()?,
            address: r.array()?,
        })
    }
}

/// PEER_PERMISSION (RFC 9028 §5.13), Length exactly 48 (one set): a client asks its data
/// relay to forward ESP between its relayed address (R, at the relay) and a peer (P).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPermission {
    pub rport: u16,
    pub pport: u16,
    /// IP protocol of the transport; 17 (UDP).
    pub protocol: u8,
    pub reserved: [u8; 3],
    /// IPv6 or IPv4-mapped IPv6, as `paddress`.
    pub raddress: [u8; 16],
    pub paddress: [u8; 16],
    /// The SPI the client sends to this peer with.
    pub ospi: u32,
    /// The SPI the client receives on from this peer.
    pub ispi: u32,
}

impl PeerPermission {
    /// The relayed address (RAddress, RPort); IPv4-mapped comes back as IPv4.
    pub fn relayed(&self) -> SocketAddr {
        SocketAddr::new(unmapped(self.raddress), self.rport)
    }

    /// The peer's address (PAddress, PPort); IPv4-mapped comes back as IPv4.
    pub fn peer(&self) -> SocketAddr {
        SocketAddr::new(unmapped(self.paddress), self.pport)
    }
}

/// IP protocol number of UDP.
const UDP: u8 = 17;

/// An address as the 16 bytes of an IPv6 or IPv4-mapped IPv6 address (how HIP parameters
/// carry addresses).
pub fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The inverse of [`mapped`]: IPv4-mapped addresses come back as IPv4.
pub fn unmapped(address: [u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(address);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

/// One parameter. Lists keep their raw numeric IDs so that unknown algorithms round-trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    EspInfo(EspInfo),
    /// R1_COUNTER: Reserved (4 bytes, copied verbatim into I2) and the counter.
    R1Counter {
        reserved: u32,
        counter: u64,
    },
    LocatorSet(Vec<Locator>),
    Puzzle(Puzzle),
    Solution(Solution),
    Seq(u32),
    Ack(Vec<u32>),
    /// Group IDs, most preferred first.
    DhGroupList(Vec<u8>),
    DiffieHellman {
        group: u8,
        public: Vec<u8>,
    },
    HipCipher(Vec<u16>),
    /// NAT_TRAVERSAL_MODE (RFC 9028 §5.4): Reserved, then Mode IDs ([`nat_mode`]), most
    /// preferred first. At least one; all are kept, though a receiver looks at six at most.
    NatTraversalMode {
        reserved: u16,
        modes: Vec<u16>,
    },
    /// TRANSACTION_PACING (RFC 9028 §5.5): Min Ta, in milliseconds.
    TransactionPacing(u32),
    /// ENCRYPTED: Reserved (4) then IV and ciphertext, opaque at this layer.
    Encrypted {
        reserved: u32,
        data: Vec<u8>,
    },
    HostId(HostId),
    /// One byte per suite, high nibble = suite ID.
    HitSuiteList(Vec<u8>),
    Notification(Notification),
    EchoRequestSigned(Vec<u8>),
    /// REG_INFO (RFC 8003 §4.1): lifetimes in the RFC's one-byte encoding, then the
    /// registration types offered.
    RegInfo {
        min_lifetime: u8,
        max_lifetime: u8,
        types: Vec<u8>,
    },
    /// REG_REQUEST (RFC 8003 §4.2).
    RegRequest {
        lifetime: u8,
        types: Vec<u8>,
    },
    /// REG_RESPONSE (RFC 8003 §4.3).
    RegResponse {
        lifetime: u8,
        types: Vec<u8>,
    },
    /// REG_FAILED (RFC 8003 §4.4).
    RegFailed {
        failure: u8,
        types: Vec<u8>,
    },
    /// REG_FROM (RFC 9028 §5.6): the address a relay saw a registration come from.
    RegFrom(TransportAddress),
    EchoResponseSigned(Vec<u8>),
    TransportFormatList(Vec<u16>),
    EspTransform {
        reserved: u16,
        suites: Vec<u16>,
    },
    /// OVERLAY_ID (RFC 6079 §6.1): which overlay a packet routed through an overlay
    /// belongs to; its length and meaning are the overlay's (ours: RELOAD's 4-byte
    /// overlay hash, RFC 7086 §5.2). Not empty.
    OverlayId(Vec<u8>),
    /// ROUTE_DST (RFC 6028 §5): the hops the packet is to take before its receiver.
    RouteDst(Route),
    /// RELAYED_ADDRESS (RFC 9028 §5.12): the address a data relay allocated.
    RelayedAddress(TransportAddress),
    /// MAPPED_ADDRESS (RFC 9028 §5.12): in a connectivity-check response, the address the
    /// check came from.
    MappedAddress(TransportAddress),
    PeerPermission(PeerPermission),
    /// CANDIDATE_PRIORITY (RFC 9028 §5.14): the priority of a peer-reflexive candidate.
    CandidatePriority(u32),
    /// NOMINATE (RFC 9028 §5.15): Reserved only.
    Nominate(u32),
    HipMac(Vec<u8>),
    HipMac2(Vec<u8>),
    HipSignature {
        algorithm: u16,
        signature: Vec<u8>,
    },
    HipSignature2 {
        algorithm: u16,
        signature: Vec<u8>,
    },
    EchoResponseUnsigned(Vec<u8>),
    EchoRequestUnsigned(Vec<u8>),
    /// RELAY_FROM (RFC 9028 §5.6): where a control relay received the packet from.
    RelayFrom(TransportAddress),
    /// RELAY_TO (RFC 9028 §5.6): where the control relay is to send the packet.
    RelayTo(TransportAddress),
    /// OVERLAY_TTL (RFC 6079 §6.2): overlay hops the packet may still take, then Reserved.
    OverlayTtl {
        ttl: u16,
        reserved: u16,
    },
    /// ROUTE_VIA (RFC 6028 §5): the hops the packet took, each appended by its forwarder.
    RouteVia(Route),
    /// FROM (RFC 8004 §4.2.2): where the relayed I1 came from (IPv6 or IPv4-mapped).
    From([u8; 16]),
    /// RVS_HMAC (RFC 8004 §4.2.1).
    RvsHmac(Vec<u8>),
    /// VIA_RVS (RFC 8004 §4.2.3): the rendezvous servers an I1 went through.
    ViaRvs(Vec<[u8; 16]>),
    /// RELAY_HMAC (RFC 9028 §5.8): computed as RVS_HMAC, with the relay registration's key.
    RelayHmac(Vec<u8>),
    /// Any other type, contents kept verbatim (without padding).
    Unknown {
        ty: u16,
        contents: Vec<u8>,
    },
}

impl Param {
    /// The parameter's type number.
    pub fn ty(&self) -> u16 {
        use param_type as t;
        match self {
            Param::EspInfo(_) => t::ESP_INFO,
            Param::R1Counter { .. } => t::R1_COUNTER,
            Param::LocatorSet(_) => t::LOCATOR_SET,
            Param::Puzzle(_) => t::PUZZLE,
            Param::Solution(_) => t::SOLUTION,
            Param::Seq(_) => t::SEQ,
            Param::Ack(_) => t::ACK,
            Param::DhGroupList(_) => t::DH_GROUP_LIST,
            Param::DiffieHellman { .. } => t::DIFFIE_HELLMAN,
            Param::HipCipher(_) => t::HIP_CIPHER,
            Param::NatTraversalMode { .. } => t::NAT_TRAVERSAL_MODE,
            Param::TransactionPacing(_) => t::TRANSACTION_PACING,
            Param::Encrypted { .. } => t::ENCRYPTED,
            Param::HostId(_) => t::HOST_ID,
            Param::HitSuiteList(_) => t::HIT_SUITE_LIST,
            Param::Notification(_) => t::NOTIFICATION,
            Param::EchoRequestSigned(_) => t::ECHO_REQUEST_SIGNED,
            Param::RegInfo { .. } => t::REG_INFO,
            Param::RegRequest { .. } => t::REG_REQUEST,
            Param::RegResponse { .. } => t::REG_RESPONSE,
            Param::RegFailed { .. } => t::REG_FAILED,
            Param::RegFrom(_) => t::REG_FROM,
            Param::EchoResponseSigned(_) => t::ECHO_RESPONSE_SIGNED,
            Param::From(_) => t::FROM,
            Param::RvsHmac(_) => t::RVS_HMAC,
            Param::ViaRvs(_) => t::VIA_RVS,
            Param::RelayHmac(_) => t::RELAY_HMAC,
            Param::TransportFormatList(_) => t::TRANSPORT_FORMAT_LIST,
            Param::EspTransform { .. } => t::ESP_TRANSFORM,
            Param::RelayedAddress(_) => t::RELAYED_ADDRESS,
            Param::MappedAddress(_) => t::MAPPED_ADDRESS,
            Param::PeerPermission(_) => t::PEER_PERMISSION,
            Param::CandidatePriority(_) => t::CANDIDATE_PRIORITY,
            Param::Nominate(_) => t::NOMINATE,
            Param::HipMac(_) => t::HIP_MAC,
            Param::HipMac2(_) => t::HIP_MAC_2,
            Param::HipSignature { .. } => t::HIP_SIGNATURE,
            Param::HipSignature2 { .. } => t::HIP_SIGNATURE_2,
            Param::EchoResponseUnsigned(_) => t::ECHO_RESPONSE_UNSIGNED,
            Param::EchoRequestUnsigned(_) => t::ECHO_REQUEST_UNSIGNED,
            Param::RelayFrom(_) => t::RELAY_FROM,
            Param::RelayTo(_) => t::RELAY_TO,
            Param::OverlayId(_) => t::OVERLAY_ID,
            Param::RouteDst(_) => t::ROUTE_DST,
            Param::OverlayTtl { .. } => t::OVERLAY_TTL,
            Param::RouteVia(_) => t::ROUTE_VIA,
            Param::Unknown { ty, .. } => *ty,
        }
    }

    /// Parses the contents (no Type/Length, no padding) of a parameter of type `ty`.
    pub fn parse(ty: u16, contents: &[u8]) -> Result<Param, WireError> {
        use param_type as t;
        let err = WireError::BadParam(ty);
        let mut r = Reader::new(contents, err, err);
        let param = match ty {
            t::ESP_INFO => Param::EspInfo(EspInfo {
                reserved: r.u16()?,
                keymat_index: r.u16()?,
                old_spi: r.u32()?,
                new_spi: r.u32()?,
            }),
            t::R1_COUNTER => Param::R1Counter {
                reserved: r.u32()?,
                counter: r.u64()?,
            },
            t::LOCATOR_SET => {
                let locators = r.items(|r| {
                    let (traffic_type, locator_type, len, flags) =
                        (r.u8()?, r.u8()?, r.u8()?, r.u8()?);
                    let lifetime = r.u32()?;
                    let locator = r.take(usize::from(len) * 4)?.to_vec();
                    Ok(Locator {
                        traffic_type,
                        locator_type,
                        flags,
                        lifetime,
                        locator,
                    })
                })?;
                if locators.is_empty() {
                    return Err(WireError::BadParam(ty));
                }
                Param::LocatorSet(locators)
            }
            t::PUZZLE => {
                let (k, lifetime, opaque) = (r.u8()?, r.u8()?, r.array()?);
                if r.remaining() == 0 {
                    return Err(WireError::BadParam(ty));
                }
                let i = r.rest().to_vec();
                Param::Puzzle(Puzzle {
                    k,
                    lifetime,
                    opaque,
                    i,
                })
            }
            t::SOLUTION => {
                let (k, reserved, opaque) = (r.u8()?, r.u8()?, r.array()?);
                // #I and #J share what is left equally; nothing else says how long they are.
                let half = r.remaining() / 2;
                if half == 0 || r.remaining() % 2 != 0 {
                    return Err(WireError::BadParam(ty));
                }
                let i = r.take(half)?.to_vec();
                let j = r.rest().to_vec();
                Param::Solution(Solution {
                    k,
                    reserved,
                    opaque,
                    i,
                    j,
                })
            }
            t::SEQ => Param::Seq(r.u32()?),
            t::ACK => Param::Ack(r.items(Reader::u32)?),
            t::DH_GROUP_LIST => Param::DhGroupList(r.rest().to_vec()),
            t::DIFFIE_HELLMAN => {
                let group = r.u8()?;
                let len = usize::from(r.u16()?);
                Param::DiffieHellman {
                    group,
                    public: r.take(len)?.to_vec(),
                }
            }
            t::HIP_CIPHER => Param::HipCipher(r.items(Reader::u16)?),
            t::NAT_TRAVERSAL_MODE => {
                let reserved = r.u16()?;
                let modes = r.items(Reader::u16)?;
                if modes.is_empty() {
                    return Err(WireError::BadParam(ty));
                }
                Param::NatTraversalMode { reserved, modes }
            }
            t::TRANSACTION_PACING => Param::TransactionPacing(r.u32()?),
            t::ENCRYPTED => Param::Encrypted {
                reserved: r.u32()?,
                data: r.rest().to_vec(),
            },
            t::HOST_ID => {
                let hi_len = usize::from(r.u16()?);
                let di_word = r.u16()?;
                let algorithm = r.u16()?;
                let hi = r.take(hi_len)?.to_vec();
                let di = r.take(usize::from(di_word & DI_LENGTH_MASK))?.to_vec();
                Param::HostId(HostId {
                    algorithm,
                    hi,
                    di_type: (di_word >> DI_TYPE_SHIFT) as u8,
                    di,
                })
            }
            t::HIT_SUITE_LIST => Param::HitSuiteList(r.rest().to_vec()),
            t::NOTIFICATION => Param::Notification(Notification {
                reserved: r.u16()?,
                kind: NotifyType::from(r.u16()?),
                data: r.rest().to_vec(),
            }),
            t::ECHO_REQUEST_SIGNED => Param::EchoRequestSigned(r.rest().to_vec()),
            t::ECHO_RESPONSE_SIGNED => Param::EchoResponseSigned(r.rest().to_vec()),
            t::REG_INFO => Param::RegInfo {
                min_lifetime: r.u8()?,
                max_lifetime: r.u8()?,
                types: r.rest().to_vec(),
            },
            t::REG_REQUEST => Param::RegRequest {
                lifetime: r.u8()?,
                types: r.rest().to_vec(),
            },
            t::REG_RESPONSE => Param::RegResponse {
                lifetime: r.u8()?,
                types: r.rest().to_vec(),
            },
            t::REG_FAILED => Param::RegFailed {
                failure: r.u8()?,
                types: r.rest().to_vec(),
            },
            t::REG_FROM => Param::RegFrom(TransportAddress::read(&mut r)?),
            t::FROM => Param::From(r.array()?),
            t::RVS_HMAC => Param::RvsHmac(r.rest().to_vec()),
            t::VIA_RVS => Param::ViaRvs(r.items(Reader::array)?),
            t::RELAY_HMAC => Param::RelayHmac(r.rest().to_vec()),
            t::TRANSPORT_FORMAT_LIST => Param::TransportFormatList(r.items(Reader::u16)?),
            t::ESP_TRANSFORM => Param::EspTransform {
                reserved: r.u16()?,
                suites: r.items(Reader::u16)?,
            },
            t::RELAYED_ADDRESS => Param::RelayedAddress(TransportAddress::read(&mut r)?),
            t::MAPPED_ADDRESS => Param::MappedAddress(TransportAddress::read(&mut r)?),
            t::PEER_PERMISSION => Param::PeerPermission(PeerPermission {
                rport: r.u16()?,
                pport: r.u16()?,
                protocol: r.u8()?,
                reserved: r.array()?,
                raddress: r.array()?,
                paddress: r.array()?,
                ospi: r.u32()?,
                ispi: r.u32()?,
            }),
            t::CANDIDATE_PRIORITY => Param::CandidatePriority(r.u32()?),
            t::NOMINATE => Param::Nominate(r.u32()?),
            t::HIP_MAC => Param::HipMac(r.rest().to_vec()),
            t::HIP_MAC_2 => Param::HipMac2(r.rest().to_vec()),
            t::HIP_SIGNATURE => Param::HipSignature {
                algorithm: r.u16()?,
                signature: r.rest().to_vec(),
            },
            t::HIP_SIGNATURE_2 => Param::HipSignature2 {
                algorithm: r.u16()?,
                signature: r.rest().to_vec(),
            },
            t::ECHO_RESPONSE_UNSIGNED => Param::EchoResponseUnsigned(r.rest().to_vec()),
            t::ECHO_REQUEST_UNSIGNED => Param::EchoRequestUnsigned(r.rest().to_vec()),
            t::RELAY_FROM => Param::RelayFrom(TransportAddress::read(&mut r)?),
            t::RELAY_TO => Param::RelayTo(TransportAddress::read(&mut r)?),
            t::OVERLAY_ID if contents.is_empty() => return Err(err),
            t::OVERLAY_ID => Param::OverlayId(r.rest().to_vec()),
            t::ROUTE_DST => Param::RouteDst(Route::read(&mut r, ty)?),
            t::OVERLAY_TTL => Param::OverlayTtl {
                ttl: r.u16()?,
                reserved: r.u16()?,
            },
            t::ROUTE_VIA => Param::RouteVia(Route::read(&mut r, ty)?),
            _ => Param::Unknown {
                ty,
                contents: r.rest().to_vec(),
            },
        };
        // Fixed layouts (ESP_INFO, SEQ, the transport addresses, …) and the inner lengths of
        // DIFFIE_HELLMAN and HOST_ID must account for every byte of Length.
        r.finish()?;
        Ok(param)
    }

    /// Length of the contents (the TLV's Length field).
    pub fn contents_len(&self) -> usize {
        let mut counter = Counter::default();
        self.write_contents(&mut counter);
        counter.len
    }

    /// Length of the whole TLV with padding: `11 + Length - (Length + 3) % 8`.
    pub fn buffer_len(&self) -> usize {
        tlv_len(self.contents_len())
    }

    /// Writes Type, Length, contents and zero padding. Panics only if `buf` is shorter
    /// than `buffer_len()`.
    ///
    /// Contents too long for a 16-bit Length (or a DI for its 12 bits) cannot be sent;
    /// the field is then saturated rather than panicking, and the TLV will not parse back.
    /// No parameter of a packet within [`MAX_PACKET_LEN`](super::MAX_PACKET_LEN) gets there.
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.contents_len();
        let buf = &mut buf[..tlv_len(len)];
        let mut w = Writer::new(buf);
        w.u16(self.ty());
        w.u16(saturate(len, u16::MAX));
        self.write_contents(&mut w);
        w.into_rest().fill(0);
    }

    /// Convenience: `emit` into a fresh `Vec`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.buffer_len()];
        self.emit(&mut v);
        v
    }

    /// The layout of every variant, written once for both counting and emitting.
    fn write_contents(&self, w: &mut impl Sink) {
        match self {
            Param::EspInfo(e) => {
                w.u16(e.reserved);
                w.u16(e.keymat_index);
                w.u32(e.old_spi);
                w.u32(e.new_spi);
            }
            Param::R1Counter { reserved, counter } => {
                w.u32(*reserved);
                w.put(&counter.to_be_bytes());
            }
            Param::Puzzle(p) => {
                w.put(&[p.k, p.lifetime]);
                w.put(&p.opaque);
                w.put(&p.i);
            }
            Param::Solution(s) => {
                w.put(&[s.k, s.reserved]);
                w.put(&s.opaque);
                w.put(&s.i);
                w.put(&s.j);
            }
            Param::Seq(v)
            | Param::TransactionPacing(v)
            | Param::CandidatePriority(v)
            | Param::Nominate(v) => w.u32(*v),
            Param::Ack(ids) => ids.iter().for_each(|&id| w.u32(id)),
            Param::LocatorSet(locators) => {
                for l in locators {
                    // Locator Length counts 4-byte words; a locator that is not whole words
                    // cannot be written as it is, and is cut to whole words.
                    let words = (l.locator.len() / 4).min(255);
                    w.put(&[l.traffic_type, l.locator_type, words as u8, l.flags]);
                    w.u32(l.lifetime);
                    w.put(&l.locator[..words * 4]);
                }
            }
            Param::DiffieHellman { group, public } => {
                w.put(&[*group]);
                w.u16(saturate(public.len(), u16::MAX));
                w.put(public);
            }
            Param::HipCipher(ids) | Param::TransportFormatList(ids) => {
                ids.iter().for_each(|&id| w.u16(id));
            }
            Param::Encrypted { reserved, data } => {
                w.u32(*reserved);
                w.put(data);
            }
            Param::HostId(h) => {
                w.u16(saturate(h.hi.len(), u16::MAX));
                let di_type = u16::from(h.di_type & 0x0f) << DI_TYPE_SHIFT;
                w.u16(di_type | saturate(h.di.len(), DI_LENGTH_MASK));
                w.u16(h.algorithm);
                w.put(&h.hi);
                w.put(&h.di);
            }
            Param::Notification(n) => {
                w.u16(n.reserved);
                w.u16(n.kind.into());
                w.put(&n.data);
            }
            Param::EspTransform {
                reserved,
                suites: ids,
            }
            | Param::NatTraversalMode {
                reserved,
                modes: ids,
            } => {
                w.u16(*reserved);
                ids.iter().for_each(|&id| w.u16(id));
            }
            Param::RegFrom(a)
            | Param::RelayedAddress(a)
            | Param::MappedAddress(a)
            | Param::RelayFrom(a)
            | Param::RelayTo(a) => {
                w.u16(a.port);
                w.put(&[a.protocol, a.reserved]);
                w.put(&a.address);
            }
            Param::PeerPermission(p) => {
                w.u16(p.rport);
                w.u16(p.pport);
                w.put(&[p.protocol]);
                w.put(&p.reserved);
                w.put(&p.raddress);
                w.put(&p.paddress);
                w.u32(p.ospi);
                w.u32(p.ispi);
            }
            Param::HipSignature {
                algorithm,
                signature,
            }
            | Param::HipSignature2 {
                algorithm,
                signature,
            } => {
                w.u16(*algorithm);
                w.put(signature);
            }
            Param::RegInfo {
                min_lifetime,
                max_lifetime,
                types,
            } => {
                w.put(&[*min_lifetime, *max_lifetime]);
                w.put(types);
            }
            Param::RegRequest {
                lifetime: first,
                types,
            }
            | Param::RegResponse {
                lifetime: first,
                types,
            }
            | Param::RegFailed {
                failure: first,
                types,
            } => {
                w.put(&[*first]);
                w.put(types);
            }
            Param::From(address) => w.put(address),
            Param::OverlayTtl { ttl, reserved } => {
                w.u16(*ttl);
                w.u16(*reserved);
            }
            Param::RouteDst(route) | Param::RouteVia(route) => {
                w.u16(route.flags);
                w.u16(route.reserved);
                route.hits.iter().for_each(|h| w.put(h));
            }
            Param::ViaRvs(addresses) => addresses.iter().for_each(|a| w.put(a)),
            Param::RvsHmac(bytes)
            | Param::RelayHmac(bytes)
            | Param::OverlayId(bytes)
            | Param::DhGroupList(bytes)
            | Param::HitSuiteList(bytes)
            | Param::EchoRequestSigned(bytes)
            | Param::EchoResponseSigned(bytes)
            | Param::HipMac(bytes)
            | Param::HipMac2(bytes)
            | Param::EchoResponseUnsigned(bytes)
            | Param::EchoRequestUnsigned(bytes)
            | Param::Unknown {
                contents: bytes, ..
            } => w.put(bytes),
        }
    }
}

/// TLV size with padding for `contents_len` bytes of contents (RFC 7401 §5.2.1).
pub(super) fn tlv_len(contents_len: usize) -> usize {
    11 + contents_len - (contents_len + 3) % 8
}

/// HOST_ID's second word: DI-Type in the top 4 bits, DI Length in the low 12.
const DI_TYPE_SHIFT: u32 = 12;
const DI_LENGTH_MASK: u16 = 0x0fff;

fn saturate(len: usize, max: u16) -> u16 {
    u16::try_from(len).map_or(max, |l| l.min(max))
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::testutil::hex;
    use super::*;
    use param_type as t;

    /// One hand-built TLV (Type, Length, contents, zero padding) per `Param` variant, in
    /// type order, with the value it stands for. Reserved fields are non-zero where that
    /// proves they are kept.
    pub(in crate::wire) fn vectors() -> Vec<(Vec<u8>, Param)> {
        vec![
            (
                hex("0041 000c | abcd 0060 | 00000000 | 12345678"),
                Param::EspInfo(EspInfo {
                    reserved: 0xabcd,
                    keymat_index: 0x60,
                    old_spi: 0,
                    new_spi: 0x1234_5678,
                }),
            ),
            (
                hex("0081 000c | 01020304 | 00000000 0000002a"),
                Param::R1Counter {
                    reserved: 0x0102_0304,
                    counter: 42,
                },
            ),
            (
                // One transport locator (RFC 9028 §5.7), preferred, 3600 s, UDP port 10500,
                // host kind, priority 0x7e0000ff, SPI 0x12345678, ::ffff:198.51.100.1.
                hex(
                    "00c1 0024 | 00 02 07 01 | 00000e10 | 2904 11 00 | 7e0000ff | 12345678
                     | 00000000 00000000 0000ffff c6336401",
                ),
                Param::LocatorSet(vec![Locator::from_transport(
                    &TransportLocator {
                        port: 10500,
                        protocol: 17,
                        kind: 0,
                        priority: 0x7e00_00ff,
                        spi: 0x1234_5678,
                        address: std::net::Ipv4Addr::new(198, 51, 100, 1)
                            .to_ipv6_mapped()
                            .octets(),
                    },
                    true,
                    3600,
                )]),
            ),
            (
                hex("0101 0009 | 10 25 d3fe | 0102030405 | 000000"),
                Param::Puzzle(Puzzle {
                    k: 16,
                    lifetime: 37,
                    opaque: [0xd3, 0xfe],
                    i: vec![1, 2, 3, 4, 5],
                }),
            ),
            (
                hex("0141 000c | 10 77 d3fe | 01020304 | 05060708"),
                Param::Solution(Solution {
                    k: 16,
                    reserved: 0x77,
                    opaque: [0xd3, 0xfe],
                    i: vec![1, 2, 3, 4],
                    j: vec![5, 6, 7, 8],
                }),
            ),
            (hex("0181 0004 | 00000007"), Param::Seq(7)),
            (
                hex("01c1 0008 | 00000001 | fffffffe | 00000000"),
                Param::Ack(vec![1, 0xffff_fffe]),
            ),
            (
                hex("01ff 0003 | 03 04 08 | 00"),
                Param::DhGroupList(vec![3, 4, 8]),
            ),
            (
                hex("0201 0007 | 07 | 0004 | aabbccdd | 0000000000"),
                Param::DiffieHellman {
                    group: 7,
                    public: vec![0xaa, 0xbb, 0xcc, 0xdd],
                },
            ),
            (
                hex("0243 0006 | 0004 0002 0001 | 000000000000"),
                Param::HipCipher(vec![4, 2, 1]),
            ),
            (
                // ICE-HIP-UDP preferred, then UDP-ENCAPSULATION.
                hex("0260 0006 | 0000 | 0003 0001 | 000000000000"),
                Param::NatTraversalMode {
                    reserved: 0,
                    modes: vec![nat_mode::ICE_HIP_UDP, nat_mode::UDP_ENCAPSULATION],
                },
            ),
            (hex("0262 0004 | 00000032"), Param::TransactionPacing(50)),
            (
                hex("0281 000c | 00000000 | 0011223344556677"),
                Param::Encrypted {
                    reserved: 0,
                    data: hex("0011223344556677"),
                },
            ),
            (
                // HI Length 4 (Algorithm not included) | DI-Type 2, DI Length 3 | EdDSA.
                hex("02c1 000d | 0004 | 2003 | 000d | 00010000 | 612e62 | 00000000000000"),
                Param::HostId(HostId {
                    algorithm: 13,
                    hi: vec![0, 1, 0, 0],
                    di_type: 2,
                    di: b"a.b".to_vec(),
                }),
            ),
            (
                hex("02cb 0003 | 10 20 50 | 00"),
                Param::HitSuiteList(vec![0x10, 0x20, 0x50]),
            ),
            (
                hex("0340 0006 | 0000 | 0001 | 0fff | 000000000000"),
                Param::Notification(Notification {
                    reserved: 0,
                    kind: NotifyType::UnsupportedCriticalParameterType,
                    data: vec![0x0f, 0xff],
                }),
            ),
            (
                hex("0381 0004 | deadbeef"),
                Param::EchoRequestSigned(hex("deadbeef")),
            ),
            (
                hex("03a2 0003 | 60 a0 01 | 00"),
                Param::RegInfo {
                    min_lifetime: 0x60,
                    max_lifetime: 0xa0,
                    types: vec![1],
                },
            ),
            (
                hex("03a4 0002 | 9e 01 | 0000"),
                Param::RegRequest {
                    lifetime: 0x9e,
                    types: vec![1],
                },
            ),
            (
                hex("03a6 0002 | 9e 01 | 0000"),
                Param::RegResponse {
                    lifetime: 0x9e,
                    types: vec![1],
                },
            ),
            (
                hex("03a8 0002 | 01 01 | 0000"),
                Param::RegFailed {
                    failure: 1,
                    types: vec![1],
                },
            ),
            (
                // UDP from 198.51.100.7:40000, IPv4-mapped; 24 bytes, no padding.
                hex("03b6 0014 | 9c40 11 00 | 00000000 00000000 0000ffff c6336407"),
                Param::RegFrom(TransportAddress::udp("198.51.100.7:40000".parse().unwrap())),
            ),
            (
                hex("03c1 0004 | deadbeef"),
                Param::EchoResponseSigned(hex("deadbeef")),
            ),
            (
                hex("0801 0002 | 0fff | 0000"),
                Param::TransportFormatList(vec![t::ESP_TRANSFORM]),
            ),
            (
                hex("0fff 0006 | 0000 | 0008 000d | 000000000000"),
                Param::EspTransform {
                    reserved: 0,
                    suites: vec![8, 13],
                },
            ),
            (
                // RELOAD's overlay hash (4 bytes, RFC 7086 §5.2).
                hex("11f0 0004 | 8f2e41c7"),
                Param::OverlayId(hex("8f2e41c7")),
            ),
            (
                // Two hops, answers to come back this way, none to be skipped.
                hex("11f9 0024 | c000 0000 | 20010021 00000000 00000000 00000001
                     | 20010021 00000000 00000000 00000002"),
                Param::RouteDst(Route {
                    flags: route_flags::SYMMETRIC | route_flags::MUST_FOLLOW,
                    reserved: 0,
                    hits: vec![
                        hex("20010021 00000000 00000000 00000001")
                            .try_into()
                            .unwrap(),
                        hex("20010021 00000000 00000000 00000002")
                            .try_into()
                            .unwrap(),
                    ],
                }),
            ),
            (
                hex("122a 0014 | 2904 11 00 | 20010db8 00000000 00000000 00000002"),
                Param::RelayedAddress(TransportAddress {
                    port: 10500,
                    protocol: 17,
                    reserved: 0,
                    address: hex("20010db8 00000000 00000000 00000002")
                        .try_into()
                        .unwrap(),
                }),
            ),
            (
                // 203.0.113.5:61000.
                hex("1234 0014 | ee48 11 00 | 00000000 00000000 0000ffff cb007105"),
                Param::MappedAddress(TransportAddress {
                    port: 61000,
                    protocol: 17,
                    reserved: 0,
                    address: hex("00000000 00000000 0000ffff cb007105")
                        .try_into()
                        .unwrap(),
                }),
            ),
            (
                // Relayed 203.0.113.5:10600, peer 198.51.100.7:40000; 48 bytes and 4 of
                // padding.
                hex("1248 0030 | 2968 9c40 | 11 000000
                     | 00000000 00000000 0000ffff cb007105
                     | 00000000 00000000 0000ffff c6336407
                     | 11223344 | 55667788 | 00000000"),
                Param::PeerPermission(PeerPermission {
                    rport: 10600,
                    pport: 40000,
                    protocol: 17,
                    reserved: [0; 3],
                    raddress: hex("00000000 00000000 0000ffff cb007105")
                        .try_into()
                        .unwrap(),
                    paddress: hex("00000000 00000000 0000ffff c6336407")
                        .try_into()
                        .unwrap(),
                    ospi: 0x1122_3344,
                    ispi: 0x5566_7788,
                }),
            ),
            (
                hex("125c 0004 | 6e0001ff"),
                Param::CandidatePriority(0x6e00_01ff),
            ),
            (hex("1266 0004 | 00000000"), Param::Nominate(0)),
            (hex("f041 0004 | 01020304"), Param::HipMac(vec![1, 2, 3, 4])),
            (
                hex("f081 0004 | 05060708"),
                Param::HipMac2(vec![5, 6, 7, 8]),
            ),
            (
                hex("f0c1 0006 | 000d | 11223344 | 000000000000"),
                Param::HipSignature2 {
                    algorithm: 13,
                    signature: hex("11223344"),
                },
            ),
            (
                hex("f101 0006 | 0005 | 55667788 | 000000000000"),
                Param::HipSignature {
                    algorithm: 5,
                    signature: hex("55667788"),
                },
            ),
            (
                hex("f7c1 0001 | 99 | 000000"),
                Param::EchoResponseUnsigned(vec![0x99]),
            ),
            (
                hex("f8ad 0000 | 00000000"),
                Param::EchoRequestUnsigned(vec![]),
            ),
            (
                hex("f9fe 0014 | 9c40 11 00 | 00000000 00000000 0000ffff c6336407"),
                Param::RelayFrom(TransportAddress::udp("198.51.100.7:40000".parse().unwrap())),
            ),
            (
                hex("fa02 0014 | 2904 11 00 | 20010db8 00000000 00000000 00000007"),
                Param::RelayTo(TransportAddress {
                    port: 10500,
                    protocol: 17,
                    reserved: 0,
                    address: hex("20010db8 00000000 00000000 00000007")
                        .try_into()
                        .unwrap(),
                }),
            ),
            (
                hex("fa0b 0004 | 0063 0102"),
                Param::OverlayTtl {
                    ttl: 99,
                    reserved: 0x0102,
                },
            ),
            (
                // As the originator sends it: no hop yet.
                hex("fa11 0004 | c000 0000"),
                Param::RouteVia(Route::new(
                    route_flags::SYMMETRIC | route_flags::MUST_FOLLOW,
                )),
            ),
            (
                hex("ffda 0010 | 00000000 00000000 0000ffff c6336401 | 00000000"),
                Param::From(
                    std::net::Ipv4Addr::new(198, 51, 100, 1)
                        .to_ipv6_mapped()
                        .octets(),
                ),
            ),
            (
                hex("ffdc 0004 | 01020304"),
                Param::RvsHmac(vec![1, 2, 3, 4]),
            ),
            (
                hex("ffde 0010 | 20010db8 00000000 00000000 00000001 | 00000000"),
                Param::ViaRvs(vec!["2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets()]),
            ),
            (
                // A 32-byte MAC (KMAC128, as HIP_MAC) and 4 bytes of padding.
                hex("fff0 0020 | 00010203 04050607 08090a0b 0c0d0e0f
                     10111213 14151617 18191a1b 1c1d1e1f | 00000000"),
                Param::RelayHmac((0..32).collect()),
            ),
        ]
    }

    #[test]
    fn type_numbers_are_the_rfc_ones() {
        // Spelled in decimal here, in hex in the vectors: the two must agree.
        let decimal = [
            65, 129, 193, 257, 321, 385, 449, 511, 513, 579, 608, 610, 641, 705, 715, 832, 897,
            930, 932, 934, 936, 950, 961, 2049, 4095, 4592, 4601, 4650, 4660, 4680, 4700, 4710,
            61505, 61569, 61633, 61697, 63425, 63661, 63998, 64002, 64011, 64017, 65498, 65500,
            65502, 65520,
        ];
        let types: Vec<u16> = vectors().iter().map(|(_, p)| p.ty()).collect();
        assert_eq!(types, decimal);
    }

    #[test]
    fn routes_hold_whole_hits_up_to_their_limit() {
        // RFC 6028 §5: Flags, Reserved, 16 bytes per hop; ROUTE_DST names at least one.
        for n in 0..=MAX_ROUTE_HITS + 1 {
            let contents = [vec![0x80, 0, 0, 0], vec![0x20; 16 * n]].concat();
            for ty in [t::ROUTE_DST, t::ROUTE_VIA] {
                let ok = n <= MAX_ROUTE_HITS && (n > 0 || ty == t::ROUTE_VIA);
                let parsed = Param::parse(ty, &contents);
                assert_eq!(parsed.is_ok(), ok, "type {ty}, {n} hops");
                if let Ok(p) = parsed {
                    assert_eq!(p.contents_len(), contents.len());
                }
                // A HIT cut short, or no room for the flags.
                let cut = &contents[..contents.len() - 1];
                assert_eq!(Param::parse(ty, cut), Err(WireError::BadParam(ty)));
            }
        }
        assert_eq!(
            Param::parse(t::OVERLAY_ID, &[]),
            Err(WireError::BadParam(t::OVERLAY_ID))
        );
        for n in [0, 2, 3, 5, 8] {
            assert_eq!(
                Param::parse(t::OVERLAY_TTL, &vec![0; n]),
                Err(WireError::BadParam(t::OVERLAY_TTL))
            );
        }
    }

    #[test]
    fn every_variant_parses_from_known_bytes() {
        for (bytes, param) in vectors() {
            let ty = u16::from_be_bytes([bytes[0], bytes[1]]);
            let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            assert_eq!(Param::parse(ty, &bytes[4..4 + len]), Ok(param), "type {ty}");
        }
    }

    #[test]
    fn every_variant_emits_known_bytes() {
        for (bytes, param) in vectors() {
            assert_eq!(param.to_bytes(), bytes, "type {}", param.ty());
            assert_eq!(param.buffer_len(), bytes.len());
            assert_eq!(param.buffer_len() % 8, 0);
            // Padding is written, not left over from the buffer.
            let mut dirty = vec![0xee; bytes.len()];
            param.emit(&mut dirty);
            assert_eq!(dirty, bytes);
        }
    }

    #[test]
    fn every_variant_round_trips() {
        for (_, param) in vectors() {
            let bytes = param.to_bytes();
            let again = Param::parse(param.ty(), &bytes[4..4 + param.contents_len()]).unwrap();
            assert_eq!(again, param);
            assert_eq!(again.to_bytes(), bytes);
        }
    }

    #[test]
    fn tlv_length_formula() {
        let expected = [8, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16, 24];
        for (len, want) in expected.into_iter().enumerate() {
            assert_eq!(tlv_len(len), want, "Length {len}");
        }
    }

    #[test]
    fn wrong_lengths_are_bad_param() {
        let cases: &[(u16, &str)] = &[
            (t::ESP_INFO, "0000 0000 00000000 123456"),
            (t::ESP_INFO, "0000 0000 00000000 12345678 00"),
            (t::R1_COUNTER, "00000000 00000000 000000"),
            (t::R1_COUNTER, "00000000 00000000 00000000 00"),
            (t::PUZZLE, "10 25 d3fe"),
            (t::PUZZLE, "10 25 d3"),
            (t::SOLUTION, "10 00 d3fe"),
            (t::SOLUTION, "10 00 d3fe 01"),
            (t::SOLUTION, "10 00 d3fe 010203"),
            (t::SEQ, "000000"),
            (t::SEQ, "0000000000"),
            (t::ACK, "000000"),
            (t::ACK, "00000001 00"),
            (t::DIFFIE_HELLMAN, "07 00"),
            (t::DIFFIE_HELLMAN, "07 0005 aabbccdd"),
            (t::DIFFIE_HELLMAN, "07 0003 aabbccdd"),
            (t::HIP_CIPHER, "0004 00"),
            (t::ENCRYPTED, "000000"),
            (t::HOST_ID, "0004 0000 00"),
            // HI Length beyond the contents.
            (t::HOST_ID, "0005 0000 000d 00010000"),
            // HI Length counting the Algorithm field (the RFC 5201-era reading).
            (t::HOST_ID, "0006 0000 000d 00010000"),
            // DI Length short of the contents, then beyond them.
            (t::HOST_ID, "0004 2002 000d 00010000 612e62"),
            (t::HOST_ID, "0004 2004 000d 00010000 612e62"),
            (t::NOTIFICATION, "0000 00"),
            (t::TRANSPORT_FORMAT_LIST, "0f"),
            (t::ESP_TRANSFORM, "00"),
            (t::ESP_TRANSFORM, "0000 0008 00"),
            (t::HIP_SIGNATURE, "00"),
            (t::HIP_SIGNATURE_2, ""),
        ];
        for &(ty, contents) in cases {
            assert_eq!(
                Param::parse(ty, &hex(contents)),
                Err(WireError::BadParam(ty)),
                "type {ty}, contents {contents}"
            );
        }
    }

    #[test]
    fn nat_parameters_take_exactly_their_rfc_lengths() {
        // RFC 9028 §5.5, §5.6, §5.12–§5.15: every other length, 19/21 and 47/49 included,
        // is BadParam.
        let fixed = [
            (t::TRANSACTION_PACING, 4),
            (t::REG_FROM, 20),
            (t::RELAYED_ADDRESS, 20),
            (t::MAPPED_ADDRESS, 20),
            (t::PEER_PERMISSION, 48),
            (t::CANDIDATE_PRIORITY, 4),
            (t::NOMINATE, 4),
            (t::RELAY_FROM, 20),
            (t::RELAY_TO, 20),
        ];
        for (ty, len) in fixed {
            for n in 0..=len + 8 {
                let parsed = Param::parse(ty, &vec![0x5a; n]);
                if n == len {
                    let p = parsed.unwrap();
                    assert_eq!((p.ty(), p.contents_len()), (ty, len));
                } else {
                    assert_eq!(parsed, Err(WireError::BadParam(ty)), "type {ty}, {n} bytes");
                }
            }
        }
        // NAT_TRAVERSAL_MODE: Reserved and at least one whole Mode ID.
        let ty = t::NAT_TRAVERSAL_MODE;
        for n in 0..=16 {
            let expected = if n >= 4 && n % 2 == 0 {
                Ok(Param::NatTraversalMode {
                    reserved: 0,
                    modes: vec![0; (n - 2) / 2],
                })
            } else {
                Err(WireError::BadParam(ty))
            };
            assert_eq!(Param::parse(ty, &vec![0; n]), expected, "{n} bytes");
        }
    }

    #[test]
    fn nat_parameters_keep_reserved_fields_and_every_mode() {
        // Non-zero reserved fields, protocol 0 and port 0 (plain IP, RFC 9028 §5.6) and
        // seven modes, one more than a receiver looks at: the parser keeps all of it, what
        // to accept is the association's call.
        let cases = [
            (
                t::NAT_TRAVERSAL_MODE,
                "abcd | 0003 0002 0001 0000 0007 ffff 0003",
                Param::NatTraversalMode {
                    reserved: 0xabcd,
                    modes: vec![3, 2, 1, 0, 7, 0xffff, 3],
                },
            ),
            (
                t::REG_FROM,
                "0000 00 ff | 20010db8 00000000 00000000 00000001",
                Param::RegFrom(TransportAddress {
                    port: 0,
                    protocol: 0,
                    reserved: 0xff,
                    address: hex("20010db8 00000000 00000000 00000001")
                        .try_into()
                        .unwrap(),
                }),
            ),
            (
                t::PEER_PERMISSION,
                "0001 0002 | 11 010203 | 00000000 00000000 00000000 00000003
                 | 00000000 00000000 00000000 00000004 | 00000005 | 00000006",
                Param::PeerPermission(PeerPermission {
                    rport: 1,
                    pport: 2,
                    protocol: 17,
                    reserved: [1, 2, 3],
                    raddress: std::net::Ipv6Addr::from(3).octets(),
                    paddress: std::net::Ipv6Addr::from(4).octets(),
                    ospi: 5,
                    ispi: 6,
                }),
            ),
            (t::NOMINATE, "deadbeef", Param::Nominate(0xdead_beef)),
        ];
        for (ty, contents, param) in cases {
            let contents = hex(contents);
            assert_eq!(Param::parse(ty, &contents).as_ref(), Ok(&param));
            let bytes = param.to_bytes();
            assert_eq!(
                bytes[..4],
                [(ty >> 8) as u8, ty as u8, 0, contents.len() as u8]
            );
            assert_eq!(bytes[4..4 + contents.len()], contents);
        }
    }

    #[test]
    fn transport_addresses_convert_to_and_from_socket_addresses() {
        let v4: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let a = TransportAddress::udp(v4);
        assert_eq!(
            a,
            TransportAddress {
                port: 40000,
                protocol: 17,
                reserved: 0,
                address: hex("00000000 00000000 0000ffff c6336407")
                    .try_into()
                    .unwrap(),
            }
        );
        assert_eq!(a.socket(), v4);

        let v6: SocketAddr = "[2001:db8::7]:10500".parse().unwrap();
        let a = TransportAddress::udp(v6);
        assert_eq!(
            (a.port, a.protocol, a.reserved, a.address),
            (
                10500,
                17,
                0,
                hex("20010db8 00000000 00000000 00000007")
                    .try_into()
                    .unwrap()
            )
        );
        assert_eq!(a.socket(), v6);

        // Only the IPv4-mapped form reads as IPv4; IPv4-compatible (::a.b.c.d) stays IPv6.
        let compat = TransportAddress {
            address: hex("00000000 00000000 00000000 c6336407")
                .try_into()
                .unwrap(),
            ..a
        };
        assert_eq!(
            compat.socket(),
            "[::198.51.100.7]:10500".parse::<SocketAddr>().unwrap()
        );

        let (_, p) = vectors()
            .into_iter()
            .find(|(_, p)| p.ty() == t::PEER_PERMISSION)
            .unwrap();
        let Param::PeerPermission(p) = p else {
            unreachable!()
        };
        assert_eq!(p.relayed(), "203.0.113.5:10600".parse().unwrap());
        assert_eq!(p.peer(), "198.51.100.7:40000".parse().unwrap());
    }

    #[test]
    fn empty_lists_and_opaque_fields_parse() {
        // Whether an empty offer is acceptable is the association's call, not the parser's.
        let cases = [
            (t::ACK, Param::Ack(vec![])),
            (t::DH_GROUP_LIST, Param::DhGroupList(vec![])),
            (t::HIP_CIPHER, Param::HipCipher(vec![])),
            (t::HIT_SUITE_LIST, Param::HitSuiteList(vec![])),
            (t::TRANSPORT_FORMAT_LIST, Param::TransportFormatList(vec![])),
            (t::HIP_MAC, Param::HipMac(vec![])),
            (t::ECHO_REQUEST_SIGNED, Param::EchoRequestSigned(vec![])),
            (t::RELAY_HMAC, Param::RelayHmac(vec![])),
        ];
        for (ty, param) in cases {
            assert_eq!(Param::parse(ty, &[]), Ok(param));
        }
        assert_eq!(
            Param::parse(t::ESP_TRANSFORM, &[0, 0]),
            Ok(Param::EspTransform {
                reserved: 0,
                suites: vec![]
            })
        );
        assert_eq!(
            Param::parse(t::DIFFIE_HELLMAN, &[7, 0, 0]),
            Ok(Param::DiffieHellman {
                group: 7,
                public: vec![]
            })
        );
    }

    #[test]
    fn unknown_types_keep_their_contents_whatever_the_critical_bit() {
        for ty in [0, 128, 195, 612, 4096, 32769, 65535] {
            let p = Param::parse(ty, &[1, 2, 3]).unwrap();
            assert_eq!(
                p,
                Param::Unknown {
                    ty,
                    contents: vec![1, 2, 3]
                }
            );
            assert_eq!(p.ty(), ty);
            assert_eq!(&p.to_bytes()[4..7], &[1, 2, 3]);
        }
    }

    #[test]
    fn notify_types_convert_both_ways() {
        assert_eq!(NotifyType::from(14), NotifyType::NoDhProposalChosen);
        assert_eq!(u16::from(NotifyType::I2Acknowledgement), 16384);
        assert_eq!(NotifyType::from(46), NotifyType::Unknown(46));
        assert_eq!(NotifyType::from(16384), NotifyType::I2Acknowledgement);
        for v in 0..=u16::MAX {
            assert_eq!(u16::from(NotifyType::from(v)), v);
        }
        assert!(NotifyType::InvalidSyntax.is_error());
        assert!(!NotifyType::I2Acknowledgement.is_error());
        // RFC 9028 §5.10, §8.
        let nat = [
            (60, NotifyType::NoValidNatTraversalModeParameter),
            (61, NotifyType::ConnectivityChecksFailed),
            (62, NotifyType::MessageNotRelayed),
            (63, NotifyType::ServerReflexiveCandidateAllocationFailed),
            (64, NotifyType::RvsHmacProhibitedWithRelay),
            (16385, NotifyType::NatKeepalive),
        ];
        for (v, kind) in nat {
            assert_eq!(NotifyType::from(v), kind);
            assert_eq!(u16::from(kind), v);
            assert_eq!(kind.is_error(), v < 16384);
        }
    }

    #[test]
    fn overlong_fields_saturate_instead_of_panicking() {
        let big = Param::Unknown {
            ty: 4096,
            contents: vec![0; 70_000],
        };
        let bytes = big.to_bytes();
        assert_eq!(bytes.len(), big.buffer_len());
        assert_eq!(bytes[2..4], [0xff, 0xff]);

        let host_id = Param::HostId(HostId {
            algorithm: 13,
            hi: vec![1; 4],
            di_type: 0x1f,
            di: vec![b'x'; 5000],
        });
        let bytes = host_id.to_bytes();
        assert_eq!(
            bytes[6..8],
            [0xff, 0xff],
            "DI-Type masked, DI Length saturated"
        );
        let len = host_id.contents_len();
        assert!(Param::parse(t::HOST_ID, &bytes[4..4 + len]).is_err());
    }

    #[test]
    fn locator_sets_read_their_transport_locators_and_refuse_bad_lengths() {
        let (bytes, param) = vectors()
            .into_iter()
            .find(|(_, p)| p.ty() == t::LOCATOR_SET)
            .unwrap();
        let Param::LocatorSet(locators) = &param else {
            unreachable!()
        };
        let t = locators[0].transport().unwrap();
        assert_eq!(
            (t.port, t.spi, locators[0].preferred()),
            (10500, 0x1234_5678, true)
        );
        // A locator whose length runs past the contents, and an empty set.
        let mut cut = bytes[4..4 + 36].to_vec();
        cut.truncate(30);
        assert_eq!(
            Param::parse(t::LOCATOR_SET, &cut),
            Err(WireError::BadParam(t::LOCATOR_SET))
        );
        assert_eq!(
            Param::parse(t::LOCATOR_SET, &[]),
            Err(WireError::BadParam(t::LOCATOR_SET))
        );
        // Another locator type survives as bytes, and is not a transport address.
        let other = [
            0, 0, 4, 0, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        ];
        let p = Param::parse(t::LOCATOR_SET, &other).unwrap();
        let Param::LocatorSet(l) = &p else {
            unreachable!()
        };
        assert!(l[0].transport().is_none());
        assert_eq!(p.to_bytes()[4..4 + other.len()], other);
    }
}
