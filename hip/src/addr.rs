//! Address classes and prefixes: which addresses are private (a relay forwards to them only
//! where its operator allows, and a host with nothing else is behind a NAT), and the
//! prefixes that open such ranges.

use core::fmt;
use core::str::FromStr;
use std::net::IpAddr;

/// Whether `ip` is private: RFC 1918, the shared address space (RFC 6598, 100.64/10),
/// IPv4 link-local, unique local (fc00::/7) or IPv6 link-local. IPv4-mapped IPv6 addresses
/// are judged as their IPv4 address.
pub fn private_address(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && o[1] & 0xc0 == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
    }
}

/// An address range, `address/length` (e.g. `10.1.0.0/16`, `fd00::/8`); bits past the
/// length are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixError {
    /// No `/length`.
    NoLength,
    /// The address part is not an IPv4 or IPv6 address.
    BadAddress,
    /// The length is not a number up to 32 (IPv4) or 128 (IPv6).
    BadLength,
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrefixError::NoLength => "no /length (write e.g. 10.1.0.0/16)",
            PrefixError::BadAddress => "not an IPv4 or IPv6 address before the /",
            PrefixError::BadLength => "the length is not 0-32 (IPv4) or 0-128 (IPv6)",
        })
    }
}

impl std::error::Error for PrefixError {}

impl Prefix {
    /// Whether `ip` lies in the range (an IPv4-mapped address as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let (addr, len) = s.split_once('/').ok_or(PrefixError::NoLength)?;
        let addr: IpAddr = addr.parse().map_err(|_| PrefixError::BadAddress)?;
        let len: u8 = len.parse().map_err(|_| PrefixError::BadLength)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(PrefixError::BadLength);
        }
        Ok(Prefix { addr, len })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_addresses_are_the_site_local_ranges() {
        for a in [
            "10.0.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.0.1",
            "fc00::1",
            "fdff::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(private_address(ip(a)), "{a}");
        }
        for a in [
            "172.32.0.1",
            "100.128.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert!(!private_address(ip(a)), "{a}");
        }
    }

    #[test]
    fn prefixes_parse_print_and_contain() {
        let p: Prefix = "10.1.0.0/16".parse().unwrap();
        assert_eq!(p.to_string(), "10.1.0.0/16");
        assert!(p.contains(ip("10.1.200.3")));
        assert!(p.contains(ip("::ffff:10.1.0.9")));
        assert!(!p.contains(ip("10.2.0.1")));
        assert!(!p.contains(ip("fd00::1")));
        let host: Prefix = "10.1.2.3/32".parse().unwrap();
        assert!(host.contains(ip("10.1.2.3")) && !host.contains(ip("10.1.2.4")));
        let all4: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all4.contains(ip("192.168.1.1")) && !all4.contains(ip("fd00::1")));
        let v6: Prefix = "fd00:1::/32".parse().unwrap();
        assert!(v6.contains(ip("fd00:1:ffff::1")) && !v6.contains(ip("fd00:2::1")));
        let all6: Prefix = "::/0".parse().unwrap();
        assert!(all6.contains(ip("fe80::1")));
        // Host bits are ignored, not refused.
        let loose: Prefix = "10.1.2.3/8".parse().unwrap();
        assert!(loose.contains(ip("10.200.0.1")));
        assert_eq!("10.0.0.0".parse::<Prefix>(), Err(PrefixError::NoLength));
        assert_eq!("ten/8".parse::<Prefix>(), Err(PrefixError::BadAddress));
        assert_eq!("10.0.0.0/33".parse::<Prefix>(), Err(PrefixError::BadLength));
        assert_eq!("::/129".parse::<Prefix>(), Err(PrefixError::BadLength));
        assert_eq!("10.0.0.0/-1".parse::<Prefix>(), Err(PrefixError::BadLength));
        assert_eq!("10.0.0.0/".parse::<Prefix>(), Err(PrefixError::BadLength));
    }
}
