//! `[interface]`: the local end — identity file, UDP port and listen addresses, TUN device
//! and its MTU, the LSI range and our LSI, control socket, log filter — with its defaults
//! and its rules, and [`LsiRange`], the IPv4 prefix LSIs are drawn from.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use hip::esp;
use serde::Deserialize;

use super::report::{broken, in_range, Broken, KeyPath};
use super::values::{de_listen, de_lsi};
use super::{CONTROL_DIR, DEFAULT_PORT};

/// Longest Unix socket path: `sun_path` is 108 bytes on Linux, including the final NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Longest interface name: IFNAMSIZ (16) less the final NUL.
const MAX_TUN_NAME: usize = 15;

/// `[interface]`: the local end — identity, sockets, TUN device, LSIs, control socket, logs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Interface {
    /// Private key file; created (0600, atomically) by
    /// [`load_or_create_identity`](super::load_or_create_identity) if missing.
    pub identity: PathBuf,
    /// UDP port for HIP and ESP on every `listen` address.
    pub port: u16,
    /// Local addresses to bind, one socket each; empty means `0.0.0.0` and `::` (see
    /// [`Interface::listen_addrs`]).
    #[serde(deserialize_with = "de_listen")]
    pub listen: Vec<IpAddr>,
    /// TUN device name.
    pub tun: String,
    /// TUN MTU: the largest inner IPv6 packet; at most `path_mtu` less the tunnel's 45 bytes
    /// of overhead (see [`hip::esp::max_payload`]).
    pub mtu: u32,
    /// The largest outer packet the network carries.
    pub path_mtu: u32,
    /// IPv4 range from which LSIs are handed out.
    pub lsi_range: LsiRange,
    /// Our own LSI; `None` means the first host address of `lsi_range` (see
    /// [`Interface::own_lsi`]).
    #[serde(deserialize_with = "de_lsi")]
    pub lsi: Option<Ipv4Addr>,
    /// Control socket path; `None` means `/run/hipbone/<tun>.sock` (see
    /// [`Interface::control_path`]).
    pub control: Option<PathBuf>,
    /// `tracing` filter, `RUST_LOG` syntax.
    pub log: String,
    /// Serve as a rendezvous server (RFC 8004) for hosts that register with us.
    pub rendezvous: bool,
}

impl Default for Interface {
    fn default() -> Self {
        Interface {
            identity: PathBuf::from("/var/lib/hipbone/identity.key"),
            port: DEFAULT_PORT,
            listen: Vec::new(),
            tun: "hip0".to_owned(),
            mtu: 1400,
            path_mtu: 1500,
            lsi_range: LsiRange::default(),
            lsi: None,
            control: None,
            log: "info".to_owned(),
            rendezvous: false,
        }
    }
}

impl Interface {
    /// The socket addresses to bind: each `listen` address with `port`, or both wildcards
    /// when `listen` is empty. The driver must set IPV6_V6ONLY on `::` so that it does not
    /// collide with `0.0.0.0` on the same port.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        let wildcards = [
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ];
        let addrs = if self.listen.is_empty() {
            &wildcards[..]
        } else {
            &self.listen[..]
        };
        addrs
            .iter()
            .map(|&ip| SocketAddr::new(ip, self.port))
            .collect()
    }

    /// Our own LSI: `lsi`, or else the first host address of `lsi_range`.
    pub fn own_lsi(&self) -> Ipv4Addr {
        self.lsi.unwrap_or_else(|| self.lsi_range.first_host())
    }

    /// The control socket path: `control`, or else `/run/hipbone/<tun>.sock`, so that two
    /// nodes with different TUN devices never share a socket.
    pub fn control_path(&self) -> PathBuf {
        self.control
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{CONTROL_DIR}/{}.sock", self.tun)))
    }

    /// The MTU for the route to `lsi_range`: `mtu - 20`, because BEET mode sends neither
    /// inner header and an IPv4 header is 20 bytes shorter than an IPv6 one, so an IPv4
    /// packet carries 20 bytes more payload than an IPv6 packet of the same size.
    pub fn lsi_mtu(&self) -> u32 {
        // A difference of two header lengths: it fits any integer type.
        self.mtu
            .saturating_sub((esp::IPV6_HEADER_LEN - esp::IPV4_HEADER_LEN) as u32)
    }

    /// The rules of `[interface]`, in the order of its keys.
    pub(super) fn check(&self) -> Result<(), Broken> {
        let key = |k: &str| KeyPath::of(&["interface", k]);

        if self.identity.as_os_str().is_empty() {
            return Err(broken(
                key("identity"),
                "interface.identity is empty: give the private key file's path".to_owned(),
            ));
        }
        if self.port == 0 {
            return Err(broken(
                key("port"),
                "interface.port = 0: peers must know the port, so it cannot be left to the \
                 system (the default is 10500)"
                    .to_owned(),
            ));
        }
        for (n, addr) in self.listen.iter().enumerate() {
            if let Some(first) = self.listen[..n].iter().position(|a| a == addr) {
                return Err(broken(
                    key("listen").index(n),
                    format!(
                        "interface.listen[{n}] = \"{addr}\" is listed twice (also listen[{first}])"
                    ),
                ));
            }
        }
        check_tun_name(&self.tun).map_err(|why| {
            broken(
                key("tun"),
                format!(
                    "interface.tun = {:?} is not a usable interface name: {why}",
                    self.tun
                ),
            )
        })?;

        in_range(
            key("mtu"),
            self.mtu,
            1280,
            65000,
            " (1280 is the IPv6 minimum)",
        )?;
        in_range(
            key("path_mtu"),
            self.path_mtu,
            1280,
            65535,
            " (1280 is the IPv6 minimum)",
        )?;
        let largest = largest_mtu(self.path_mtu);
        if self.mtu > largest {
            return Err(Broken {
                key: key("mtu"),
                also: Some(key("path_mtu")),
                message: format!(
                    "interface.mtu = {} leaves no room for the ESP/UDP overhead: with path_mtu = \
                     {} the largest mtu is {largest}",
                    self.mtu, self.path_mtu
                ),
            });
        }

        let range = self.lsi_range;
        if !(8..=30).contains(&range.prefix_len) {
            return Err(broken(
                key("lsi_range"),
                format!(
                    "interface.lsi_range = \"{range}\": the prefix length must be 8..=30 \
                     (the limits of the LSI pool)"
                ),
            ));
        }
        if range.truncated() != range {
            return Err(broken(
                key("lsi_range"),
                format!(
                    "interface.lsi_range = \"{range}\" has host bits set (did you mean \"{}\"?)",
                    range.truncated()
                ),
            ));
        }
        if let Some(lsi) = self.lsi {
            if !range.contains(lsi) {
                return Err(Broken {
                    key: key("lsi"),
                    also: Some(key("lsi_range")),
                    message: format!(
                        "interface.lsi = \"{lsi}\" is outside lsi_range = \"{range}\""
                    ),
                });
            }
            if range.is_network_or_broadcast(lsi) {
                return Err(broken(
                    key("lsi"),
                    format!(
                        "interface.lsi = \"{lsi}\" is the network or broadcast address of \
                         lsi_range = \"{range}\""
                    ),
                ));
            }
        }

        if let Some(control) = &self.control {
            let len = control.as_os_str().len();
            if len == 0 || len > MAX_SOCKET_PATH {
                return Err(broken(
                    key("control"),
                    format!(
                        "interface.control = {:?} is {len} bytes long; a Unix socket path \
                         must be 1..={MAX_SOCKET_PATH}",
                        control.display().to_string()
                    ),
                ));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(broken(
                key("log"),
                format!(
                    "interface.log = {:?} is not a log filter (RUST_LOG syntax, like \
                     \"info\" or \"warn,hip=debug\"): {e}",
                    self.log
                ),
            ));
        }
        Ok(())
    }
}

/// The largest `interface.mtu` for a path of `path_mtu` bytes: an inner IPv6 packet whose
/// payload is the most one datagram carries over an IPv6 outer header (the larger one),
/// [`esp::max_payload`], plus the inner header that BEET mode does not send. 1455 for a
/// 1500-byte path.
fn largest_mtu(path_mtu: u32) -> u32 {
    // u32 → usize is lossless on every target hipbone builds for, and the result, below
    // `path_mtu`, fits back.
    (esp::max_payload(path_mtu as usize, false) + esp::IPV6_HEADER_LEN) as u32
}

/// wg-quick's rule for interface names, `[a-zA-Z0-9_=+.-]{1,15}`, which keeps within
/// Linux's own (no `/`, `:` or whitespace, at most 15 bytes), minus `.` and `..`. `%` is
/// refused too: the kernel would take it as a template (`hip%d`), and the control socket
/// path is derived from the name as written.
fn check_tun_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.len() > MAX_TUN_NAME {
        return Err(format!(
            "it is {} bytes long, at most {MAX_TUN_NAME}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("it is a directory name".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "_=+.-".contains(c)))
    {
        return Err(format!(
            "{c:?} is not allowed (letters, digits and _=+.- only)"
        ));
    }
    Ok(())
}

/// An IPv4 prefix, `network/prefix_len`, written as `"100.64.0.0/16"`.
///
/// Parsing checks only the syntax; [`Config::validate`](super::Config::validate) checks the rules of
/// [`hip::lsi::LsiPool::new`] (prefix length 8..=30, no host bits) so that it can say which
/// key is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsiRange {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

impl Default for LsiRange {
    /// 100.64.0.0/16, in the RFC 6598 shared address space: never routed on the Internet
    /// (unlike HIP's conventional 1.0.0.0/8) and not where LANs live (unlike RFC 1918).
    /// docs/CONFIG.md gives the whole reasoning.
    fn default() -> Self {
        LsiRange {
            network: Ipv4Addr::new(100, 64, 0, 0),
            prefix_len: 16,
        }
    }
}

impl LsiRange {
    /// The host-part mask: the low `32 - prefix_len` bits.
    fn host_mask(&self) -> u32 {
        u32::MAX
            .checked_shr(u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    /// True if `addr` lies in the range.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = !self.host_mask();
        u32::from(addr) & mask == u32::from(self.network) & mask
    }

    /// The network address with the host bits cleared.
    pub fn truncated(&self) -> LsiRange {
        LsiRange {
            network: Ipv4Addr::from(u32::from(self.network) & !self.host_mask()),
            prefix_len: self.prefix_len,
        }
    }

    /// The first host address (network address + 1).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.truncated().network).wrapping_add(1))
    }

    /// True for the network and broadcast addresses of the range, which are never LSIs.
    fn is_network_or_broadcast(&self, addr: Ipv4Addr) -> bool {
        let host = u32::from(addr) & self.host_mask();
        host == 0 || host == self.host_mask()
    }

    /// The LSI pool for this range (the daemon reserves [`Interface::own_lsi`] in it).
    pub fn pool(&self) -> Result<hip::lsi::LsiPool, hip::lsi::LsiError> {
        hip::lsi::LsiPool::new(self.network, self.prefix_len)
    }
}

impl fmt::Display for LsiRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// Text that is not `a.b.c.d/n` with `n` ≤ 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsiRangeError;

impl fmt::Display for LsiRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an IPv4 prefix (like \"100.64.0.0/16\")")
    }
}

impl std::error::Error for LsiRangeError {}

impl FromStr for LsiRange {
    type Err = LsiRangeError;

    /// `a.b.c.d/n` with `n` ≤ 32.
    fn from_str(s: &str) -> Result<LsiRange, LsiRangeError> {
        let (addr, len) = s.split_once('/').ok_or(LsiRangeError)?;
        let network = addr.parse().map_err(|_| LsiRangeError)?;
        // u8::from_str would take "+8"; a prefix length is plain digits.
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LsiRangeError);
        }
        let prefix_len: u8 = len.parse().map_err(|_| LsiRangeError)?;
        if prefix_len > 32 {
            return Err(LsiRangeError);
        }
        Ok(LsiRange {
            network,
            prefix_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{parse, refused};
    use std::path::Path;

    #[test]
    fn the_default_lsi_range_is_not_publicly_routed() {
        // RFC 6598 shared address space, 100.64.0.0/10.
        let shared = LsiRange {
            network: Ipv4Addr::new(100, 64, 0, 0),
            prefix_len: 10,
        };
        let range = LsiRange::default();
        assert!(shared.contains(range.network));
        assert!(range.prefix_len >= shared.prefix_len);
        assert!(range.pool().is_ok());
    }

    #[test]
    fn control_path_follows_the_tun_name() {
        let c = parse("[interface]\ntun = \"hip7\"\n").unwrap();
        assert_eq!(
            c.interface.control_path(),
            Path::new("/run/hipbone/hip7.sock")
        );
    }

    #[test]
    fn the_mtu_rule_says_the_largest_mtu() {
        let msg = refused("[interface]\nmtu = 1480\n", "interface.mtu");
        assert_eq!(
            msg,
            "hipbone.toml:2: interface.mtu = 1480 leaves no room for the ESP/UDP overhead: \
             with path_mtu = 1500 the largest mtu is 1455"
        );
        assert!(parse("[interface]\nmtu = 1455\n").is_ok());
        // mtu at its default, path_mtu too small: the line shown is path_mtu's.
        let msg = refused("[interface]\n\npath_mtu = 1400\n", "interface.mtu");
        assert!(
            msg.starts_with("hipbone.toml:3: interface.mtu = 1400 leaves no room"),
            "{msg}"
        );
        assert!(msg.ends_with("the largest mtu is 1355"), "{msg}");
        assert!(parse("[interface]\nmtu = 9000\npath_mtu = 9045\n").is_ok());
    }

    #[test]
    fn every_interface_rule_names_its_key() {
        let long_control = format!("/run/{}.sock", "x".repeat(100));
        let cases: Vec<(String, &str, &str)> = vec![
            ("identity = \"\"".into(), "interface.identity", "is empty"),
            ("port = 0".into(), "interface.port", "interface.port = 0"),
            (
                "listen = [\"::\", \"0.0.0.0\", \"::\"]".into(),
                "interface.listen[2]",
                "listed twice (also listen[0])",
            ),
            ("tun = \"\"".into(), "interface.tun", "it is empty"),
            (
                "tun = \"hip0123456789abc\"".into(),
                "interface.tun",
                "16 bytes long, at most 15",
            ),
            (
                "tun = \"hip/0\"".into(),
                "interface.tun",
                "'/' is not allowed",
            ),
            (
                "tun = \"hip 0\"".into(),
                "interface.tun",
                "' ' is not allowed",
            ),
            (
                "tun = \"hip%d\"".into(),
                "interface.tun",
                "'%' is not allowed",
            ),
            (
                "tun = \"hip:0\"".into(),
                "interface.tun",
                "':' is not allowed",
            ),
            ("tun = \"..\"".into(), "interface.tun", "directory name"),
            (
                "mtu = 1279".into(),
                "interface.mtu",
                "1279 is outside 1280..=65000",
            ),
            (
                "mtu = 65001".into(),
                "interface.mtu",
                "outside 1280..=65000",
            ),
            (
                "path_mtu = 1279".into(),
                "interface.path_mtu",
                "1279 is outside 1280..=65535",
            ),
            (
                "path_mtu = 65536".into(),
                "interface.path_mtu",
                "outside 1280..=65535",
            ),
            (
                "lsi_range = \"10.0.0.0/7\"".into(),
                "interface.lsi_range",
                "prefix length must be 8..=30",
            ),
            (
                "lsi_range = \"10.0.0.0/31\"".into(),
                "interface.lsi_range",
                "prefix length must be 8..=30",
            ),
            (
                "lsi_range = \"100.64.0.1/16\"".into(),
                "interface.lsi_range",
                "has host bits set (did you mean \"100.64.0.0/16\"?)",
            ),
            (
                "lsi_range = \"100.64.0.0\"".into(),
                "interface.lsi_range",
                "\"100.64.0.0\" is not an IPv4 prefix",
            ),
            (
                "lsi_range = \"100.64.0.0/33\"".into(),
                "interface.lsi_range",
                "is not an IPv4 prefix",
            ),
            (
                "lsi = \"10.0.0.1\"".into(),
                "interface.lsi",
                "\"10.0.0.1\" is outside lsi_range = \"100.64.0.0/16\"",
            ),
            (
                "lsi = \"100.64.0.0\"".into(),
                "interface.lsi",
                "network or broadcast address",
            ),
            (
                "lsi = \"100.64.255.255\"".into(),
                "interface.lsi",
                "network or broadcast address",
            ),
            (
                "lsi = \"100.64.0.x\"".into(),
                "interface.lsi",
                "not an IPv4 address",
            ),
            (
                format!("control = \"{long_control}\""),
                "interface.control",
                "a Unix socket path must be 1..=107",
            ),
            (
                "control = \"\"".into(),
                "interface.control",
                "is 0 bytes long",
            ),
            (
                "log = \"info,hip=loud\"".into(),
                "interface.log",
                "is not a log filter",
            ),
        ];
        for (line, key, problem) in cases {
            let msg = refused(&format!("[interface]\n{line}\n"), key);
            assert!(msg.contains(problem), "{line}: {msg}");
            assert!(msg.starts_with("hipbone.toml:2: "), "{line}: {msg}");
        }
    }

    #[test]
    fn interface_values_at_the_edges_are_accepted() {
        for line in [
            "port = 1",
            "port = 65535",
            "tun = \"hip0123456789ab\"",
            "tun = \"wg_=+.-0\"",
            "mtu = 1280",
            "lsi_range = \"10.0.0.0/8\"",
            "lsi_range = \"192.0.2.0/30\"\nlsi = \"192.0.2.2\"",
            "lsi = \"100.64.255.254\"",
            "listen = []",
            "listen = [\"127.0.0.1\", \"::1\"]",
            "log = \"warn,hip=debug\"",
            "control = \"hip.sock\"",
            "identity = \"id.key\"",
        ] {
            let text = format!("[interface]\n{line}\n");
            if let Err(e) = parse(&text) {
                panic!("{line}: {e}");
            }
        }
        let c = parse("[interface]\nlisten = [\"192.0.2.1\"]\nport = 4000\n").unwrap();
        assert_eq!(
            c.interface.listen_addrs(),
            vec!["192.0.2.1:4000".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn lsi_range_text() {
        let r: LsiRange = "10.1.0.0/16".parse().unwrap();
        assert_eq!(r.to_string(), "10.1.0.0/16");
        assert!(r.contains(Ipv4Addr::new(10, 1, 255, 255)));
        assert!(!r.contains(Ipv4Addr::new(10, 2, 0, 0)));
        assert_eq!(r.first_host(), Ipv4Addr::new(10, 1, 0, 1));
        for bad in [
            "10.1.0.0",
            "10.1.0.0/",
            "10.1.0.0/+8",
            "10.1.0.0/33",
            "10.1.0/8",
            "/8",
        ] {
            assert!(bad.parse::<LsiRange>().is_err(), "{bad}");
        }
        let zero: LsiRange = "0.0.0.0/0".parse().unwrap();
        assert!(zero.contains(Ipv4Addr::new(192, 0, 2, 1)));
    }
}
