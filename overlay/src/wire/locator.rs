//! The value of a HIT-LOCATOR record (R11, hipbone's own Kind): where the host whose HIT
//! the record is stored under can be reached.
//!
//! ```text
//! enum { host(1), server_reflexive(2), relayed(3), (255) } LocatorKind;
//!
//! struct {
//!     LocatorKind kind;
//!     uint8       family;        // 4 or 6
//!     opaque      address[4|16]; // by family
//!     uint16      port;          // the HIP (UDP) port
//!     select (kind) {
//!         case relayed: NodeId relay;   // the relay's HIT
//!         default:      struct {};
//!     };
//! } LocatorEntry;
//!
//! struct {
//!     uint64       sequence;     // grows with every version its owner publishes
//!     LocatorEntry locators<0..2^16-1>;
//! } HitLocator;
//! ```
//!
//! The record's lifetime is the stored value's (RFC 6940 §7.1), not part of the value.
//! The sequence number lets a reader that holds two versions (the owner's and a
//! replica's) and the owner itself tell which is newer whatever the storage times say.

use super::{Decode, Encode, NodeId, Reader, Sink, WireError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// How the owner came by a locator (RFC 8445 candidate types, RFC 9028 for HIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocatorKind {
    /// An address of one of the host's interfaces.
    Host,
    /// The host's address as seen from outside its NAT.
    ServerReflexive,
    /// An address on a relay that forwards to the host (the relay's HIT comes with it).
    Relayed,
}

impl From<LocatorKind> for u8 {
    fn from(k: LocatorKind) -> u8 {
        match k {
            LocatorKind::Host => 1,
            LocatorKind::ServerReflexive => 2,
            LocatorKind::Relayed => 3,
        }
    }
}

/// One place where the host can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocatorEntry {
    Host(SocketAddr),
    ServerReflexive(SocketAddr),
    Relayed { addr: SocketAddr, relay: NodeId },
}

impl LocatorEntry {
    pub fn addr(&self) -> SocketAddr {
        match self {
            LocatorEntry::Host(a) | LocatorEntry::ServerReflexive(a) => *a,
            LocatorEntry::Relayed { addr, .. } => *addr,
        }
    }

    pub fn kind(&self) -> LocatorKind {
        match self {
            LocatorEntry::Host(_) => LocatorKind::Host,
            LocatorEntry::ServerReflexive(_) => LocatorKind::ServerReflexive,
            LocatorEntry::Relayed { .. } => LocatorKind::Relayed,
        }
    }
}

/// A HIT-LOCATOR value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HitLocator {
    pub sequence: u64,
    pub locators: Vec<LocatorEntry>,
}

impl Decode for LocatorEntry {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let kind = [
            LocatorKind::Host,
            LocatorKind::ServerReflexive,
            LocatorKind::Relayed,
        ];
        let raw = r.u8()?;
        let kind = *kind
            .iter()
            .find(|k| u8::from(**k) == raw)
            .ok_or(WireError::Invalid("locator kind"))?;
        let ip = match r.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
            _ => return Err(WireError::Invalid("locator family")),
        };
        let addr = SocketAddr::new(ip, r.u16()?);
        Ok(match kind {
            LocatorKind::Host => LocatorEntry::Host(addr),
            LocatorKind::ServerReflexive => LocatorEntry::ServerReflexive(addr),
            LocatorKind::Relayed => LocatorEntry::Relayed {
                addr,
                relay: NodeId::read(r)?,
            },
        })
    }
}

impl Encode for LocatorEntry {
    fn write(&self, w: &mut dyn Sink) {
        w.u8(u8::from(self.kind()));
        let addr = self.addr();
        match addr.ip() {
            IpAddr::V4(ip) => {
                w.u8(4);
                w.put(&ip.octets());
            }
            IpAddr::V6(ip) => {
                w.u8(6);
                w.put(&ip.octets());
            }
        }
        w.u16(addr.port());
        if let LocatorEntry::Relayed { relay, .. } = self {
            relay.write(w);
        }
    }
}

impl Decode for HitLocator {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(HitLocator {
            sequence: r.u64()?,
            locators: super::ReadExt::list(r, 2)?,
        })
    }
}

impl Encode for HitLocator {
    fn write(&self, w: &mut dyn Sink) {
        w.u64(self.sequence);
        super::WriteExt::list(w, 2, &self.locators);
    }
}

repr_methods!(HitLocator);

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Known answer: sequence 7; host 198.51.100.2:10500, server-reflexive
    /// [2001:db8::2]:10500, relayed 203.0.113.1:10500 through relay 2001:25::1.
    const RECORD: &str = "0000000000000007 0034
        01 04 c6336402 2904
        02 06 20010db8000000000000000000000002 2904
        03 04 cb007101 2904 20010025000000000000000000000001";

    fn record() -> HitLocator {
        let mut relay = [0u8; 16];
        relay[..4].copy_from_slice(&[0x20, 0x01, 0x00, 0x25]);
        relay[15] = 1;
        HitLocator {
            sequence: 7,
            locators: vec![
                LocatorEntry::Host("198.51.100.2:10500".parse().unwrap()),
                LocatorEntry::ServerReflexive("[2001:db8::2]:10500".parse().unwrap()),
                LocatorEntry::Relayed {
                    addr: "203.0.113.1:10500".parse().unwrap(),
                    relay: NodeId(relay),
                },
            ],
        }
    }

    #[test]
    fn known_answer_both_ways() {
        assert_eq!(record().to_bytes(), hex(RECORD));
        assert_eq!(HitLocator::parse(&hex(RECORD)).unwrap(), record());
        let empty = HitLocator::default();
        assert_eq!(empty.to_bytes(), hex("0000000000000000 0000"));
        assert_eq!(HitLocator::parse(&empty.to_bytes()).unwrap(), empty);
    }

    #[test]
    fn malformed_records_are_errors() {
        let good = hex(RECORD);
        for cut in 0..good.len() {
            assert!(HitLocator::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(HitLocator::parse(&trailing), Err(WireError::TrailingBytes));
        // Unknown kind, unknown family.
        let mut kind = good.clone();
        kind[10] = 9;
        assert_eq!(
            HitLocator::parse(&kind),
            Err(WireError::Invalid("locator kind"))
        );
        let mut family = good.clone();
        family[11] = 5;
        assert_eq!(
            HitLocator::parse(&family),
            Err(WireError::Invalid("locator family"))
        );
    }
}
