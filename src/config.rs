//! The node's configuration file: TOML, read once at start-up by `hipbone up -c FILE`
//! (default [`DEFAULT_PATH`]); docs/CONFIG.md is the reference of every key.
//!
//! Contract:
//! - Every key has a default, so an empty file, or no file at the default path, is a valid
//!   configuration. A file named explicitly must exist.
//! - [`Config::parse`] deserialises into typed sections that refuse unknown keys, then
//!   [`Config::validate`] checks each value's range and every rule between keys. A
//!   [`Config`] returned by [`Config::load`] or [`Config::parse`] has passed both.
//! - Every error is one line that names the file, the line when the key is in the file, the
//!   key path as it is written in TOML (`interface.mtu`, `peer[1].hit`) and what is wrong:
//!   `hipbone.toml:4: interface.mtu = 1480 leaves no room …`.
//! - The file holds no secrets (the private key lives in the file `interface.identity`
//!   names), so `Debug` and error messages may show any value.
//!
//! [`load_or_create_identity`] loads or creates that private key file with the rules of
//! [`crate::keys`].

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hip::{Hit, HostIdentity};
use serde::{Deserialize, Deserializer};
use toml::de::{DeTable, DeValue};
use toml::Spanned;
use zeroize::Zeroizing;

use crate::keys::{self, KeyError};

/// Where `hipbone up` looks for its configuration when `-c` is not given.
pub const DEFAULT_PATH: &str = "/etc/hipbone/hipbone.toml";

/// Where the control sockets live unless the configuration says otherwise.
pub const CONTROL_DIR: &str = "/run/hipbone";

/// The UDP port of HIP over UDP (IANA `hip-nat-t`, RFC 5770 / RFC 9028): our default
/// `interface.port`, and the port of a peer locator written without one. Peer locators use
/// this constant rather than our own `port` because a peer's port is the peer's choice.
pub const DEFAULT_PORT: u16 = 10500;

/// Bytes an ESP-in-UDP packet adds to an inner packet of `interface.mtu` bytes, for an IPv6
/// outer header and an ESP AES-GCM-16 SA (the only suite offered, see docs/PROTOCOL.md):
/// outer IPv6 header 40 + UDP 8 + ESP SPI and sequence 8 + GCM IV 8 + padding ≤ 3 + pad
/// length and next header 2 + ICV 16, less the inner IPv6 header 40 that BEET mode does not
/// carry. So `mtu + ESP_UDP_OVERHEAD ≤ path_mtu`.
///
/// An IPv4 packet to an LSI carries 20 bytes more payload than an IPv6 packet of the same
/// size (its header is 20 bytes, not 40), so the route to `lsi_range` needs an MTU of
/// [`Interface::lsi_mtu`] = `mtu - 20` to keep outer packets within `path_mtu`.
pub const ESP_UDP_OVERHEAD: u32 = 40 + 8 + 8 + 8 + 3 + 2 + 16 - 40;

/// How much shorter an IPv4 header is than an IPv6 header (see [`ESP_UDP_OVERHEAD`]).
const IPV4_HEADER_SHORTFALL: u32 = 40 - 20;

/// The largest configuration file read. A real one is a few kilobytes; the bound keeps
/// `-c /dev/zero` from eating memory.
pub const MAX_CONFIG_LEN: u64 = 1 << 20;

/// Longest Unix socket path: `sun_path` is 108 bytes on Linux, including the final NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Longest interface name: IFNAMSIZ (16) less the final NUL.
const MAX_TUN_NAME: usize = 15;

/// Longest `peer.name`: a label for one column of status output.
const MAX_PEER_NAME: usize = 64;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub interface: Interface,
    pub esp: Esp,
    pub hip: HipSection,
    /// The `[[peer]]` tables, in file order.
    #[serde(rename = "peer")]
    pub peers: Vec<Peer>,
    /// `[overlay]`: the P2PSIP overlay to join; absent, the node joins none.
    pub overlay: Option<Overlay>,
    /// `[nat]`: NAT traversal, as a relay server and as a host behind a NAT.
    pub nat: Nat,
}

/// `[nat]`: NAT traversal (RFC 9028).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Nat {
    /// Serve as a relay server: hosts behind NATs register with us, and we relay their
    /// HIP packets and ESP (only theirs, within the quotas below).
    pub relay: bool,
    /// Behind a NAT, send a keepalive on every association that has sent nothing for this
    /// many seconds. 0 turns keepalives off.
    pub keepalive_seconds: u64,
    /// While an association is relayed, look for a direct path again this often.
    pub recheck_seconds: u64,
    /// As a relay server: peers one client may have permissions for at once.
    pub max_permissions: usize,
    /// As a relay server: bytes per second relayed for one client.
    pub max_rate: u64,
    /// As a relay server: bytes relayed for one client per hour.
    pub max_bytes: u64,
}

impl Default for Nat {
    fn default() -> Self {
        let quota = hip::RelayQuota::default();
        Nat {
            relay: false,
            keepalive_seconds: 15,
            recheck_seconds: 30,
            max_permissions: quota.permissions,
            max_rate: quota.rate,
            max_bytes: quota.bytes,
        }
    }
}

/// `[overlay]`: the overlay this node joins (RFC 7086 §10's configuration, in TOML).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// The overlay's name (a DNS-style name, R10); its hash marks every message.
    pub name: String,
    /// Nodes to join through: each its HIT and its locators. A node that lists itself (or
    /// nothing) starts the ring when no other bootstrap answers.
    #[serde(default)]
    pub bootstrap: Vec<Bootstrap>,
    /// Join as a client (R15): attach to the responsible peer, store nothing.
    #[serde(default)]
    pub client: bool,
    /// Write the node's own inner packets (the overlay's TCP links, decrypted) to this
    /// pcap file, for tshark to dissect the RELOAD framing on port 6084.
    #[serde(default)]
    pub pcap: Option<PathBuf>,
}

/// One `[[overlay.bootstrap]]`: a bootstrap node, RFC 7086 §10 (HIT, address and port).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    #[serde(deserialize_with = "de_hit")]
    pub hit: Hit,
    /// Locators, as in `[[peer]]` (a port defaults to [`DEFAULT_PORT`]).
    #[serde(deserialize_with = "de_locators")]
    pub locators: Vec<SocketAddr>,
}

/// `[interface]`: the local end — identity, sockets, TUN device, LSIs, control socket, logs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Interface {
    /// Private key file; created (0600, atomically) by [`load_or_create_identity`] if missing.
    pub identity: PathBuf,
    /// UDP port for HIP and ESP on every `listen` address.
    pub port: u16,
    /// Local addresses to bind, one socket each; empty means `0.0.0.0` and `::` (see
    /// [`Interface::listen_addrs`]).
    #[serde(deserialize_with = "de_listen")]
    pub listen: Vec<IpAddr>,
    /// TUN device name.
    pub tun: String,
    /// TUN MTU: the largest inner IPv6 packet.
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

    /// The MTU for the route to `lsi_range`: `mtu - 20`, because an IPv4 packet is carried
    /// with 20 bytes more payload than an IPv6 packet of the same size (see
    /// [`ESP_UDP_OVERHEAD`]).
    pub fn lsi_mtu(&self) -> u32 {
        self.mtu.saturating_sub(IPV4_HEADER_SHORTFALL)
    }
}

/// `[esp]`: the data plane's security associations.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Esp {
    /// Anti-replay window, in packets (hip rounds it up to a multiple of 64).
    pub replay_window: u32,
    /// Rekey an SA after this many packets.
    pub rekey_after_packets: u64,
    /// Rekey an SA after this many seconds; 0 = never by time (see [`Esp::rekey_after`]).
    pub rekey_after_seconds: u64,
    /// Packets held per peer while a base exchange is under way; beyond it the newest are
    /// dropped.
    pub queue_per_peer: u32,
}

impl Default for Esp {
    fn default() -> Self {
        Esp {
            replay_window: 8192,
            // 2^32: where a 32-bit sequence number would wrap.
            rekey_after_packets: 1 << 32,
            rekey_after_seconds: 3600,
            queue_per_peer: 64,
        }
    }
}

impl Esp {
    /// `rekey_after_seconds` as a duration; `None` when rekeying by time is off.
    pub fn rekey_after(&self) -> Option<Duration> {
        (self.rekey_after_seconds != 0).then(|| Duration::from_secs(self.rekey_after_seconds))
    }
}

/// `[hip]`: the few [`hip::Config`] fields a deployment may need to change; the others keep
/// their defaults (see [`Config::to_hip_config`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HipSection {
    /// Most associations in any state at once.
    pub max_associations: usize,
    /// First I1 retransmission timeout, in milliseconds; doubles after each retry.
    pub i1_timeout_ms: u64,
    /// I1 transmissions before the exchange fails.
    pub i1_tries: u32,
}

impl Default for HipSection {
    fn default() -> Self {
        let hip = hip::Config::default();
        HipSection {
            max_associations: hip.max_associations,
            // hip's default is a few hundred milliseconds; saturate rather than fail on
            // an absurd value.
            i1_timeout_ms: u64::try_from(hip.i1_timeout.as_millis()).unwrap_or(u64::MAX),
            i1_tries: hip.i1_tries,
        }
    }
}

/// One `[[peer]]`: a host we know how to reach.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The peer's HIT.
    #[serde(deserialize_with = "de_hit")]
    pub hit: Hit,
    /// Where the peer may be reached, tried in order; a locator written without a port gets
    /// [`DEFAULT_PORT`].
    #[serde(default, deserialize_with = "de_locators")]
    pub locators: Vec<SocketAddr>,
    /// A label for status output.
    #[serde(default)]
    pub name: Option<String>,
    /// This peer is our rendezvous server: register with it at start (RFC 8003), so that
    /// hosts that know only its address can reach us through it.
    #[serde(default)]
    pub rendezvous: bool,
    /// This peer is our relay server (RFC 9028): register with it at start, so that hosts
    /// that know only its address reach us through it even behind a NAT, and our data
    /// goes through it wherever no direct path opens.
    #[serde(default)]
    pub relay: bool,
}

/// An IPv4 prefix, `network/prefix_len`, written as `"100.64.0.0/16"`.
///
/// Parsing checks only the syntax; [`Config::validate`] checks the rules of
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

// ---- deserialisation of single values -------------------------------------------------
//
// Addresses, prefixes and HITs are strings parsed by a visitor: an error raised inside the
// visitor carries the span of the value being deserialised, so that a bad element is
// reported as `peer[0].locators[1]`, not just `peer[0].locators`. Messages quote the text.

/// Deserialises a TOML string with `parse`, whose error message becomes the error.
fn from_text<'de, D, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Text<T>(fn(&str) -> Result<T, String>);

    impl<T> serde::de::Visitor<'_> for Text<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }

    d.deserialize_str(Text(parse))
}

fn parse_hit(text: &str) -> Result<Hit, String> {
    text.parse().map_err(|_| match text.parse::<Ipv6Addr>() {
        Ok(_) => format!("{text:?} is not a HIT (not in 2001:20::/28)"),
        Err(_) => format!("{text:?} is not a HIT (not an IPv6 address)"),
    })
}

fn parse_listen(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IP address (the port is interface.port)"))
}

fn parse_lsi(text: &str) -> Result<Option<Ipv4Addr>, String> {
    text.parse()
        .map(Some)
        .map_err(|_| format!("{text:?} is not an IPv4 address"))
}

fn parse_lsi_range(text: &str) -> Result<LsiRange, String> {
    text.parse().map_err(|e| format!("{text:?} is {e}"))
}

/// A peer locator: `IP`, `IP:port`, `[IPv6]` or `[IPv6]:port`; no port means
/// [`DEFAULT_PORT`].
fn parse_locator(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip = match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(inner) => inner.parse().map(IpAddr::V6).ok(),
        None => text.parse().ok(),
    };
    // DNS names are refused rather than resolved: start-up must not hang on, or silently
    // depend on, a resolver.
    let example = "like \"198.51.100.2:10500\" or \"[2001:db8::2]\"; names are not resolved";
    ip.map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .ok_or_else(|| format!("{text:?} is not an IP address with an optional port ({example})"))
}

fn de_hit<'de, D: Deserializer<'de>>(d: D) -> Result<Hit, D::Error> {
    from_text(d, parse_hit)
}

fn de_lsi<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
    from_text(d, parse_lsi)
}

impl<'de> Deserialize<'de> for LsiRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, parse_lsi_range)
    }
}

/// One `listen` address; a type of its own so that each element is deserialised (and its
/// error located) separately.
struct ListenAddr(IpAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, parse_listen).map(ListenAddr)
    }
}

fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    let addrs = Vec::<ListenAddr>::deserialize(d)?;
    Ok(addrs.into_iter().map(|a| a.0).collect())
}

/// One peer locator (see [`parse_locator`]).
struct Locator(SocketAddr);

impl<'de> Deserialize<'de> for Locator {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, parse_locator).map(Locator)
    }
}

fn de_locators<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let locators = Vec::<Locator>::deserialize(d)?;
    Ok(locators.into_iter().map(|l| l.0).collect())
}

// ---- errors -------------------------------------------------------------------------------

/// Why a configuration was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read: missing (when named explicitly), unreadable, too long or
    /// not UTF-8.
    Read { path: PathBuf, source: io::Error },
    /// The text is wrong: TOML syntax, an unknown key, a wrong type, a value out of range
    /// or a rule between keys.
    Invalid {
        /// The file (as it was named) or the origin given to [`Config::parse`]; empty for
        /// [`Config::validate`] on a configuration built in code.
        origin: String,
        /// 1-based line of the offending key, when it is in the file.
        line: Option<usize>,
        /// The key path as written in TOML (`interface.mtu`, `peer[1].hit`); `None` for a
        /// syntax error.
        key: Option<String>,
        /// The whole complaint, naming the key: `interface.mtu = 1480 leaves no room …`.
        message: String,
    },
}

impl ConfigError {
    /// The key path the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => key.as_deref(),
            ConfigError::Read { .. } => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The io::Error is the `source()`; callers print the chain, as for `KeyError`.
            ConfigError::Read { path, .. } => write!(f, "reading {}", path.display()),
            ConfigError::Invalid {
                origin,
                line,
                message,
                ..
            } => {
                if !origin.is_empty() {
                    f.write_str(origin)?;
                    if let Some(line) = line {
                        write!(f, ":{line}")?;
                    }
                    f.write_str(": ")?;
                }
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Invalid { .. } => None,
        }
    }
}

/// A key path as written in TOML: `peer[1].locators[0]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct KeyPath(Vec<Seg>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl KeyPath {
    fn of(keys: &[&str]) -> KeyPath {
        KeyPath(keys.iter().map(|k| Seg::Key((*k).to_owned())).collect())
    }

    fn peer(i: usize, key: &str) -> KeyPath {
        KeyPath(vec![
            Seg::Key("peer".to_owned()),
            Seg::Index(i),
            Seg::Key(key.to_owned()),
        ])
    }

    fn index(mut self, i: usize) -> KeyPath {
        self.0.push(Seg::Index(i));
        self
    }

    fn parent(&self) -> Option<KeyPath> {
        match self.0.len() {
            0 | 1 => None,
            n => Some(KeyPath(self.0[..n - 1].to_vec())),
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A broken rule found by [`Config::check`]: the key and the complaint. `also` is a second
/// key whose line is shown when the first is not in the file (mtu at its default, say,
/// with path_mtu set).
#[derive(Debug)]
struct Broken {
    key: KeyPath,
    also: Option<KeyPath>,
    message: String,
}

fn broken(key: KeyPath, message: String) -> Broken {
    Broken {
        key,
        also: None,
        message,
    }
}

// ---- loading ------------------------------------------------------------------------------

impl Config {
    /// Reads and checks the file at `path`, which must exist (it was named with `-c`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_bounded(path)?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Like [`Config::load`], but a missing file means the defaults: for [`DEFAULT_PATH`],
    /// which need not exist.
    pub fn load_or_default(path: &Path) -> Result<Config, ConfigError> {
        match Config::load(path) {
            Err(ConfigError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "no configuration file, using defaults");
                Ok(Config::default())
            }
            other => other,
        }
    }

    /// Parses and checks configuration text; `origin` names it in errors (a file name).
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let tree = DeTable::parse(text).map_err(|e| ConfigError::Invalid {
            origin: origin.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            key: None,
            message: syntax_message(&e),
        })?;
        let doc = Document { text, tree: &tree };
        let config = Config::deserialize(toml::Deserializer::from(tree.clone()))
            .map_err(|e| doc.de_error(&e, origin))?;
        config.check().map_err(|b| doc.broken(b, origin))?;
        Ok(config)
    }

    /// Checks every value's range and every rule between keys. [`Config::parse`] calls it;
    /// call it on a configuration built or changed in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|b| ConfigError::Invalid {
            origin: String::new(),
            line: None,
            key: Some(b.key.to_string()),
            message: b.message,
        })
    }

    /// The [`hip::Config`] for this node: the `[hip]` and `[esp]` keys over hip's defaults.
    pub fn to_hip_config(&self) -> hip::Config {
        let defaults = hip::Config::default();
        let i1_timeout = Duration::from_millis(self.hip.i1_timeout_ms);
        hip::Config {
            max_associations: self.hip.max_associations,
            i1_timeout,
            i1_tries: self.hip.i1_tries,
            // Back-off doubles the timeout up to `max_timeout`; a first timeout above that
            // cap would make the retries come faster than the first try, so lift the cap.
            max_timeout: defaults.max_timeout.max(i1_timeout),
            // u32 → usize is lossless on every target hipbone builds for (32 and 64 bits).
            replay_window: self.esp.replay_window as usize,
            rekey_after_packets: self.esp.rekey_after_packets,
            // hip takes a zero duration as "never by time", like rekey_after_seconds = 0.
            rekey_after: self.esp.rekey_after().unwrap_or(Duration::ZERO),
            queue_per_peer: self.esp.queue_per_peer as usize,
            rendezvous_server: self.interface.rendezvous,
            overlay_relay: self.overlay.is_some(),
            relay_server: self.nat.relay,
            relay_quota: hip::RelayQuota {
                permissions: self.nat.max_permissions,
                rate: self.nat.max_rate,
                bytes: self.nat.max_bytes,
            },
            nat_keepalive: Duration::from_secs(self.nat.keepalive_seconds),
            recheck_interval: Duration::from_secs(self.nat.recheck_seconds),
            ..defaults
        }
    }
}

/// Reads at most [`MAX_CONFIG_LEN`] bytes of UTF-8.
fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(err)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > MAX_CONFIG_LEN {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the file is longer than {MAX_CONFIG_LEN} bytes"),
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| err(io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text")))
}

/// 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// toml's syntax message on one line (its `Display` draws the offending line with a caret
/// over several lines; the line number goes in front instead).
fn syntax_message(e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', "; ");
    format!("invalid TOML: {msg}")
}

/// The parsed text with its spans, for turning byte offsets into key paths and key paths
/// into lines.
struct Document<'a> {
    text: &'a str,
    tree: &'a Spanned<DeTable<'a>>,
}

impl Document<'_> {
    /// The innermost key whose key or value span holds `offset`.
    fn path_at(&self, offset: usize) -> KeyPath {
        let mut best: Option<(usize, KeyPath)> = None;
        walk_table(
            self.tree.get_ref(),
            &mut KeyPath::default(),
            &mut |path, span| {
                let holds = span.start <= offset && offset < span.end.max(span.start + 1);
                let len = span.end - span.start;
                if holds && best.as_ref().is_none_or(|(l, _)| len <= *l) {
                    best = Some((len, path.clone()));
                }
            },
        );
        best.map(|(_, p)| p).unwrap_or_default()
    }

    /// The line of `path`'s key in the file, if it is there.
    fn line_of_path(&self, path: &KeyPath) -> Option<usize> {
        let mut found = None;
        walk_table(
            self.tree.get_ref(),
            &mut KeyPath::default(),
            &mut |p, span| {
                if found.is_none() && p == path {
                    found = Some(span.start);
                }
            },
        );
        found.map(|offset| line_of(self.text, offset))
    }

    fn broken(&self, b: Broken, origin: &str) -> ConfigError {
        let mut line = self.line_of_path(&b.key);
        if line.is_none() {
            line = b.also.as_ref().and_then(|k| self.line_of_path(k));
        }
        let mut parent = b.key.parent();
        while line.is_none() {
            let Some(p) = parent else { break };
            line = self.line_of_path(&p);
            parent = p.parent();
        }
        ConfigError::Invalid {
            origin: origin.to_owned(),
            line,
            key: Some(b.key.to_string()),
            message: b.message,
        }
    }

    /// Rewrites a deserialisation error (serde's wording, toml's span) as a one-line
    /// complaint about a key path.
    fn de_error(&self, e: &toml::de::Error, origin: &str) -> ConfigError {
        let span = e.span();
        let path = span
            .as_ref()
            .map(|s| self.path_at(s.start))
            .unwrap_or_default();
        let line = span.map(|s| line_of(self.text, s.start));
        let msg = e.message().trim().replace('\n', "; ");
        let quoted: Vec<&str> = msg.split('`').skip(1).step_by(2).collect();

        let (key, message) = if msg.starts_with("unknown field `") && !quoted.is_empty() {
            // The span is the unknown key's; serde's message lists the known ones.
            let known = &quoted[1..];
            let name = match path.0.last() {
                Some(Seg::Key(k)) => k.clone(),
                _ => quoted[0].to_owned(),
            };
            let hint = match did_you_mean(&name, known) {
                Some(k) => format!(" (did you mean {k}?)"),
                None if known.is_empty() => " (this table takes no keys)".to_owned(),
                None => format!(" (known keys: {})", known.join(", ")),
            };
            (path.to_string(), format!("unknown key {path}{hint}"))
        } else if msg.starts_with("missing field `") && !quoted.is_empty() {
            // The span is the table's; the key is missing from it.
            let table = path.to_string();
            let key = if table.is_empty() {
                quoted[0].to_owned()
            } else {
                format!("{table}.{}", quoted[0])
            };
            (key.clone(), format!("{key} is missing"))
        } else {
            let key = path.to_string();
            let what = plain_types(&msg);
            let message = if key.is_empty() {
                what
            } else {
                format!("{key}: {what}")
            };
            (key, message)
        };
        ConfigError::Invalid {
            origin: origin.to_owned(),
            line,
            key: (!key.is_empty()).then_some(key),
            message,
        }
    }
}

/// Calls `visit(path, span)` for every key span and value span in `table`, depth first.
fn walk_table(
    table: &DeTable<'_>,
    path: &mut KeyPath,
    visit: &mut dyn FnMut(&KeyPath, std::ops::Range<usize>),
) {
    for (key, value) in table.iter() {
        path.0.push(Seg::Key(key.get_ref().to_string()));
        visit(path, key.span());
        walk_value(value, path, visit);
        path.0.pop();
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &mut KeyPath,
    visit: &mut dyn FnMut(&KeyPath, std::ops::Range<usize>),
) {
    visit(path, value.span());
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, path, visit),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.0.push(Seg::Index(i));
                walk_value(item, path, visit);
                path.0.pop();
            }
        }
        _ => {}
    }
}

/// serde names Rust types ("expected u16"); say what to write in TOML instead.
fn plain_types(msg: &str) -> String {
    const TYPES: &[(&str, &str)] = &[
        ("expected u8", "expected an integer 0..=255"),
        ("expected u16", "expected an integer 0..=65535"),
        ("expected u32", "expected an integer 0..=4294967295"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected a sequence", "expected an array"),
        ("expected path string", "expected a string"),
    ];
    for (rust, toml) in TYPES {
        if let Some(head) = msg.strip_suffix(rust) {
            return format!("{head}{toml}");
        }
    }
    if let Some(i) = msg.find("expected struct ") {
        return format!("{}expected a table", &msg[..i]);
    }
    msg.to_owned()
}

/// The known key closest to `name`, if it is close enough to be a typo: at most one edit per
/// three characters (rustc's rule for "did you mean").
fn did_you_mean<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let limit = (name.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions, so that
/// `mut` is one edit from `mtu`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

// ---- validation ---------------------------------------------------------------------------

/// `key = value is outside lo..=hi` when `value` is not in the range.
fn in_range<T>(key: KeyPath, value: T, lo: T, hi: T, why: &str) -> Result<(), Broken>
where
    T: PartialOrd + fmt::Display,
{
    if value < lo || value > hi {
        let message = format!("{key} = {value} is outside {lo}..={hi}{why}");
        return Err(broken(key, message));
    }
    Ok(())
}

impl Config {
    /// Every rule, in file order; the first broken one is reported.
    fn check(&self) -> Result<(), Broken> {
        self.check_interface()?;
        self.check_esp()?;
        self.check_hip()?;
        self.check_peers()?;
        self.check_nat()?;
        self.check_overlay()
    }

    fn check_nat(&self) -> Result<(), Broken> {
        let n = &self.nat;
        in_range(
            KeyPath::of(&["nat", "keepalive_seconds"]),
            n.keepalive_seconds,
            0,
            120,
            " (NATs forget UDP mappings after 30 s or more; 0 turns keepalives off)",
        )?;
        in_range(
            KeyPath::of(&["nat", "recheck_seconds"]),
            n.recheck_seconds,
            0,
            3600,
            " (0: never look for a direct path again)",
        )?;
        in_range(
            KeyPath::of(&["nat", "max_permissions"]),
            n.max_permissions,
            1,
            4096,
            "",
        )?;
        in_range(
            KeyPath::of(&["nat", "max_rate"]),
            n.max_rate,
            1500,
            u64::MAX,
            " (bytes per second)",
        )?;
        in_range(
            KeyPath::of(&["nat", "max_bytes"]),
            n.max_bytes,
            1500,
            u64::MAX,
            "",
        )?;
        if let Some(n) = self.peers.iter().position(|p| p.relay && p.rendezvous) {
            return Err(broken(
                KeyPath::peer(n, "relay"),
                format!(
                    "peer[{n}] has both relay and rendezvous: one server cannot be both for \
                     one host (RFC 9028 §7.8); keep relay, it does what rendezvous does"
                ),
            ));
        }
        Ok(())
    }

    fn check_overlay(&self) -> Result<(), Broken> {
        let Some(o) = &self.overlay else {
            return Ok(());
        };
        let valid = !o.name.is_empty()
            && o.name.len() <= 253
            && o.name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(broken(
                KeyPath::of(&["overlay", "name"]),
                format!(
                    "overlay.name = {:?} is not a DNS-style name (labels of letters, digits and \
                     '-', separated by dots)",
                    o.name
                ),
            ));
        }
        for (n, b) in o.bootstrap.iter().enumerate() {
            if b.locators.is_empty() {
                return Err(broken(
                    KeyPath::of(&["overlay", "bootstrap"]).index(n),
                    format!("overlay.bootstrap[{n}] has no locators: give where it is reached"),
                ));
            }
        }
        Ok(())
    }

    fn check_interface(&self) -> Result<(), Broken> {
        let i = &self.interface;
        let key = |k: &str| KeyPath::of(&["interface", k]);

        if i.identity.as_os_str().is_empty() {
            return Err(broken(
                key("identity"),
                "interface.identity is empty: give the private key file's path".to_owned(),
            ));
        }
        if i.port == 0 {
            return Err(broken(
                key("port"),
                "interface.port = 0: peers must know the port, so it cannot be left to the \
                 system (the default is 10500)"
                    .to_owned(),
            ));
        }
        for (n, addr) in i.listen.iter().enumerate() {
            if let Some(first) = i.listen[..n].iter().position(|a| a == addr) {
                return Err(broken(
                    key("listen").index(n),
                    format!(
                        "interface.listen[{n}] = \"{addr}\" is listed twice (also listen[{first}])"
                    ),
                ));
            }
        }
        check_tun_name(&i.tun).map_err(|why| {
            broken(
                key("tun"),
                format!(
                    "interface.tun = {:?} is not a usable interface name: {why}",
                    i.tun
                ),
            )
        })?;

        in_range(
            key("mtu"),
            i.mtu,
            1280,
            65000,
            " (1280 is the IPv6 minimum)",
        )?;
        in_range(
            key("path_mtu"),
            i.path_mtu,
            1280,
            65535,
            " (1280 is the IPv6 minimum)",
        )?;
        let largest = i.path_mtu - ESP_UDP_OVERHEAD;
        if i.mtu > largest {
            return Err(Broken {
                key: key("mtu"),
                also: Some(key("path_mtu")),
                message: format!(
                    "interface.mtu = {} leaves no room for the ESP/UDP overhead: with path_mtu = \
                     {} the largest mtu is {largest}",
                    i.mtu, i.path_mtu
                ),
            });
        }

        let range = i.lsi_range;
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
        if let Some(lsi) = i.lsi {
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

        if let Some(control) = &i.control {
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
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&i.log) {
            return Err(broken(
                key("log"),
                format!(
                    "interface.log = {:?} is not a log filter (RUST_LOG syntax, like \
                     \"info\" or \"warn,hip=debug\"): {e}",
                    i.log
                ),
            ));
        }
        Ok(())
    }

    fn check_esp(&self) -> Result<(), Broken> {
        let e = &self.esp;
        let key = |k: &str| KeyPath::of(&["esp", k]);
        // The upper bound is hip's (a 128 KiB bitmap per SA); below 64 a window is smaller
        // than one bitmap word and than RFC 4303's recommended size.
        in_range(
            key("replay_window"),
            e.replay_window as usize,
            64,
            hip::esp::MAX_REPLAY_WINDOW,
            " packets",
        )?;
        // With 64-bit sequence numbers, at least 2^32 packets of margin for the rekey
        // exchange to finish before the counter would wrap.
        in_range(
            key("rekey_after_packets"),
            e.rekey_after_packets,
            1,
            u64::MAX - (1 << 32) + 1,
            " packets",
        )?;
        // Bounded so that `now + rekey_after` can never overflow an `Instant`.
        in_range(
            key("rekey_after_seconds"),
            e.rekey_after_seconds,
            0,
            u64::from(u32::MAX),
            " seconds (0 = never by time)",
        )?;
        in_range(
            key("queue_per_peer"),
            e.queue_per_peer,
            1,
            65536,
            " packets",
        )
    }

    fn check_hip(&self) -> Result<(), Broken> {
        let h = &self.hip;
        let key = |k: &str| KeyPath::of(&["hip", k]);
        if h.max_associations == 0 {
            return Err(broken(
                key("max_associations"),
                "hip.max_associations = 0 would refuse every association".to_owned(),
            ));
        }
        // Below 10 ms an I1 is retransmitted before any real path can answer; above a
        // minute one lost packet stalls a connection for minutes.
        in_range(key("i1_timeout_ms"), h.i1_timeout_ms, 10, 60_000, " ms")?;
        if h.i1_tries == 0 {
            return Err(broken(
                key("i1_tries"),
                "hip.i1_tries = 0 would never send an I1 (at least 1)".to_owned(),
            ));
        }
        Ok(())
    }

    fn check_peers(&self) -> Result<(), Broken> {
        let mut hits: HashMap<Hit, usize> = HashMap::new();
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (n, peer) in self.peers.iter().enumerate() {
            if let Some(first) = hits.insert(peer.hit, n) {
                return Err(broken(
                    KeyPath::peer(n, "hit"),
                    format!(
                        "peer[{n}].hit = \"{}\" is listed twice (also peer[{first}])",
                        peer.hit
                    ),
                ));
            }
            if peer.locators.is_empty() {
                return Err(broken(
                    KeyPath::peer(n, "locators"),
                    format!(
                        "peer[{n}].locators is empty: give at least one address, like \
                         [\"198.51.100.2\"]"
                    ),
                ));
            }
            for (l, loc) in peer.locators.iter().enumerate() {
                let why = if loc.port() == 0 {
                    Some("port 0 cannot be sent to")
                } else if loc.ip().is_unspecified() {
                    Some("an unspecified address cannot be sent to")
                } else if loc.ip().is_multicast() {
                    Some("a multicast address is not a host")
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(broken(
                        KeyPath::peer(n, "locators").index(l),
                        format!("peer[{n}].locators[{l}] = \"{loc}\": {why}"),
                    ));
                }
            }
            if let Some(name) = &peer.name {
                // The name is printed in status output as is: no terminal control
                // sequences, and short enough for a column.
                if name.is_empty()
                    || name.len() > MAX_PEER_NAME
                    || name.chars().any(char::is_control)
                {
                    return Err(broken(
                        KeyPath::peer(n, "name"),
                        format!(
                            "peer[{n}].name = {name:?} must be 1..={MAX_PEER_NAME} bytes \
                             without control characters"
                        ),
                    ));
                }
                if let Some(first) = names.insert(name, n) {
                    return Err(broken(
                        KeyPath::peer(n, "name"),
                        format!("peer[{n}].name = {name:?} is listed twice (also peer[{first}])"),
                    ));
                }
            }
        }
        Ok(())
    }
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

// ---- the identity file ---------------------------------------------------------------------

/// Loads the host identity from the key file at `path`, or creates one there if there is no
/// file: the parent directory is created (mode 0700) if missing, a key is drawn from the
/// operating system's randomness and written with [`keys::write_key_file`] (0600,
/// atomically). An existing file is never overwritten: one that group or others may read is
/// refused with [`keys::read_key_file`]'s advice, and if another process creates the file
/// first, its key is used.
pub fn load_or_create_identity(path: &Path) -> Result<HostIdentity, KeyError> {
    match keys::read_key_file(path) {
        Err(KeyError::NotFound { .. }) => {}
        other => return other,
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Only directories that are missing are created, all 0700 (less the umask); an
        // existing one keeps its mode.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| KeyError::Io {
                action: "creating the directory",
                path: Some(dir.to_owned()),
                source,
            })?;
    }
    let mut secret = Zeroizing::new([0u8; keys::KEY_LEN]);
    getrandom::getrandom(&mut secret[..]).map_err(|e| KeyError::Io {
        action: "drawing randomness from the operating system",
        path: None,
        source: io::Error::other(e.to_string()),
    })?;
    let identity = HostIdentity::from_secret(*secret);
    match keys::write_key_file(path, &identity) {
        Ok(()) => {
            tracing::info!(path = %path.display(), hit = %identity.hit(), "created host identity");
            Ok(identity)
        }
        // Another process created it between our read and write: its key wins.
        Err(KeyError::AlreadyExists { .. }) => keys::read_key_file(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The RFC 8032 §7.1 TEST 1 key's HIT (tests/cli.rs uses the same).
    const HIT: &str = "2001:25:94f8:6e7a:36ad:d203:ed89:625f";

    /// The example of the design brief, every key set.
    const EXAMPLE: &str = r#"
[interface]
identity = "/var/lib/hipbone/identity.key"   # private key file
port = 10500
listen = ["0.0.0.0", "::"]
tun = "hip0"
mtu = 1400
path_mtu = 1500
lsi_range = "100.64.0.0/16"
lsi = "100.64.0.1"
control = "/run/hipbone/hip0.sock"
log = "info"

[esp]
replay_window = 8192
rekey_after_packets = 4294967296
rekey_after_seconds = 3600
queue_per_peer = 64

[hip]
max_associations = 4096
i1_timeout_ms = 500
i1_tries = 10

[[peer]]
hit = "2001:25:94f8:6e7a:36ad:d203:ed89:625f"
locators = ["198.51.100.2:10500", "[2001:db8:1::2]"]
name = "bob"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "hipbone.toml")
    }

    /// The one-line message of a text expected to be refused; checks that it names the
    /// file and `key`, and that `ConfigError::key` is `key`.
    fn refused(text: &str, key: &str) -> String {
        let e = match parse(text) {
            Ok(c) => panic!("accepted {text:?}: {c:?}"),
            Err(e) => e,
        };
        let msg = e.to_string();
        assert!(msg.starts_with("hipbone.toml:"), "{msg}");
        assert!(msg.contains(key), "{msg} does not name {key}");
        assert!(!msg.contains('\n'), "more than one line: {msg}");
        assert_eq!(e.key(), Some(key), "{msg}");
        msg
    }

    /// One `[[peer]]` with a valid HIT and the given extra lines.
    fn peer(extra: &str) -> String {
        format!("[[peer]]\nhit = \"{HIT}\"\n{extra}\n")
    }

    #[test]
    fn the_example_parses() {
        let c = parse(EXAMPLE).unwrap();
        let i = &c.interface;
        assert_eq!(i.identity, Path::new("/var/lib/hipbone/identity.key"));
        assert_eq!(
            i.listen_addrs(),
            vec![
                "0.0.0.0:10500".parse::<SocketAddr>().unwrap(),
                "[::]:10500".parse().unwrap()
            ]
        );
        assert_eq!((i.mtu, i.path_mtu), (1400, 1500));
        assert_eq!(i.lsi_range.to_string(), "100.64.0.0/16");
        assert_eq!(i.own_lsi(), Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(i.control_path(), Path::new("/run/hipbone/hip0.sock"));
        assert_eq!(c.esp.rekey_after_packets, 1 << 32);
        assert_eq!(c.esp.rekey_after(), Some(Duration::from_secs(3600)));
        assert_eq!(c.peers.len(), 1);
        let p = &c.peers[0];
        assert_eq!(p.hit, HIT.parse().unwrap());
        assert_eq!(
            p.locators,
            vec![
                "198.51.100.2:10500".parse::<SocketAddr>().unwrap(),
                "[2001:db8:1::2]:10500".parse().unwrap()
            ]
        );
        assert_eq!(p.name.as_deref(), Some("bob"));
        // Every value of the example is a default, so only the peer differs.
        assert_eq!(
            Config {
                peers: Vec::new(),
                interface: Interface {
                    listen: Vec::new(),
                    lsi: None,
                    control: None,
                    ..c.interface.clone()
                },
                ..c.clone()
            },
            Config::default()
        );
    }

    #[test]
    fn empty_text_gives_the_defaults() {
        for text in [
            "",
            "\n",
            "# nothing but a comment\n",
            "[interface]\n[esp]\n[hip]\n",
        ] {
            assert_eq!(parse(text).unwrap(), Config::default(), "{text:?}");
        }
        let c = Config::default();
        c.validate().unwrap();
        let i = &c.interface;
        assert_eq!(i.port, DEFAULT_PORT);
        assert_eq!(i.tun, "hip0");
        assert_eq!(i.lsi_range.to_string(), "100.64.0.0/16");
        assert_eq!(i.own_lsi(), Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(i.control_path(), Path::new("/run/hipbone/hip0.sock"));
        assert_eq!(i.lsi_mtu(), 1380);
        assert_eq!(i.listen_addrs().len(), 2);
        assert!(c.peers.is_empty());
        let hip = hip::Config::default();
        assert_eq!(c.hip.max_associations, hip.max_associations);
        assert_eq!(Duration::from_millis(c.hip.i1_timeout_ms), hip.i1_timeout);
        assert_eq!(c.hip.i1_tries, hip.i1_tries);
    }

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
    fn every_esp_and_hip_rule_names_its_key() {
        let cases = [
            (
                "[esp]\nreplay_window = 63",
                "esp.replay_window",
                "63 is outside 64..=1048576",
            ),
            (
                "[esp]\nreplay_window = 1048577",
                "esp.replay_window",
                "outside 64..=1048576",
            ),
            (
                "[esp]\nrekey_after_packets = 0",
                "esp.rekey_after_packets",
                "0 is outside 1..=18446744069414584320",
            ),
            (
                "[esp]\nrekey_after_seconds = 4294967296",
                "esp.rekey_after_seconds",
                "outside 0..=4294967295",
            ),
            (
                "[esp]\nqueue_per_peer = 0",
                "esp.queue_per_peer",
                "0 is outside 1..=65536",
            ),
            (
                "[esp]\nqueue_per_peer = 65537",
                "esp.queue_per_peer",
                "outside 1..=65536",
            ),
            (
                "[hip]\nmax_associations = 0",
                "hip.max_associations",
                "would refuse every association",
            ),
            (
                "[hip]\ni1_timeout_ms = 9",
                "hip.i1_timeout_ms",
                "9 is outside 10..=60000",
            ),
            (
                "[hip]\ni1_timeout_ms = 60001",
                "hip.i1_timeout_ms",
                "outside 10..=60000",
            ),
            (
                "[hip]\ni1_tries = 0",
                "hip.i1_tries",
                "would never send an I1",
            ),
        ];
        for (text, key, problem) in cases {
            let msg = refused(text, key);
            assert!(msg.contains(problem), "{text}: {msg}");
            assert!(msg.starts_with("hipbone.toml:2: "), "{text}: {msg}");
        }
        for text in [
            "[esp]\nreplay_window = 64\nrekey_after_seconds = 0\nqueue_per_peer = 65536",
            "[esp]\nreplay_window = 1048576\nrekey_after_packets = 1",
            "[esp]\nrekey_after_packets = 9223372036854775807",
            "[hip]\nmax_associations = 1\ni1_timeout_ms = 10\ni1_tries = 1",
        ] {
            if let Err(e) = parse(text) {
                panic!("{text}: {e}");
            }
        }
        assert_eq!(
            parse("[esp]\nrekey_after_seconds = 0\n")
                .unwrap()
                .esp
                .rekey_after(),
            None
        );
    }

    #[test]
    fn peer_hits_must_be_hits() {
        let text = format!(
            "{}[[peer]]\nhit = \"2001:db8::1\"\nlocators = [\"192.0.2.1\"]\n",
            peer("locators = [\"192.0.2.2\"]")
        );
        let msg = refused(&text, "peer[1].hit");
        assert_eq!(
            msg,
            "hipbone.toml:5: peer[1].hit: \"2001:db8::1\" is not a HIT (not in 2001:20::/28)"
        );
        let msg = refused("[[peer]]\nhit = \"bob\"\n", "peer[0].hit");
        assert!(
            msg.ends_with("\"bob\" is not a HIT (not an IPv6 address)"),
            "{msg}"
        );
        let msg = refused("[[peer]]\nlocators = [\"192.0.2.1\"]\n", "peer[0].hit");
        assert_eq!(msg, "hipbone.toml:1: peer[0].hit is missing");
    }

    #[test]
    fn every_peer_rule_names_its_key() {
        let dup = format!(
            "{}{}",
            peer("locators = [\"192.0.2.1\"]"),
            // The same HIT written another way.
            "[[peer]]\nhit = \"2001:0025:94f8:6e7a:36ad:d203:ed89:625F\"\n\
             locators = [\"192.0.2.2\"]\n"
        );
        let msg = refused(&dup, "peer[1].hit");
        assert!(msg.contains("listed twice (also peer[0])"), "{msg}");
        assert!(msg.starts_with("hipbone.toml:5: "), "{msg}");

        let cases = [
            ("locators = []", "peer[0].locators", "is empty"),
            ("", "peer[0].locators", "is empty"),
            (
                "locators = [\"192.0.2.1\", \"192.0.2.2:0\"]",
                "peer[0].locators[1]",
                "port 0 cannot be sent to",
            ),
            (
                "locators = [\"0.0.0.0\"]",
                "peer[0].locators[0]",
                "unspecified address",
            ),
            (
                "locators = [\"[ff02::1]:10500\"]",
                "peer[0].locators[0]",
                "multicast",
            ),
            (
                "locators = [\"192.0.2.1\", \"bob.example\"]",
                "peer[0].locators[1]",
                "\"bob.example\" is not an IP address with an optional port",
            ),
            (
                "locators = [\"192.0.2.1\"]\nname = \"\"",
                "peer[0].name",
                "must be 1..=64 bytes",
            ),
            (
                "locators = [\"192.0.2.1\"]\nname = \"bob\\u001b[2J\"",
                "peer[0].name",
                "without control characters",
            ),
        ];
        for (extra, key, problem) in cases {
            let msg = refused(&peer(extra), key);
            assert!(msg.contains(problem), "{extra}: {msg}");
        }

        let other = "2001:2a::1";
        let names = format!(
            "{}[[peer]]\nhit = \"{other}\"\nlocators = [\"192.0.2.2\"]\nname = \"bob\"\n",
            peer("locators = [\"192.0.2.1\"]\nname = \"bob\"")
        );
        let msg = refused(&names, "peer[1].name");
        assert!(
            msg.contains("\"bob\" is listed twice (also peer[0])"),
            "{msg}"
        );
    }

    #[test]
    fn locators_take_the_hip_port_by_default() {
        let c = parse(&peer(
            "locators = [\"192.0.2.1\", \"192.0.2.2:4000\", \"2001:db8::3\", \
             \"[2001:db8::4]\", \"[2001:db8::5]:4001\"]",
        ))
        .unwrap();
        let want: Vec<SocketAddr> = [
            "192.0.2.1:10500",
            "192.0.2.2:4000",
            "[2001:db8::3]:10500",
            "[2001:db8::4]:10500",
            "[2001:db8::5]:4001",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(c.peers[0].locators, want);
        // Our own port is ours: a peer's default port stays the IANA one.
        let c = parse(&format!(
            "[interface]\nport = 4000\n{}",
            peer("locators = [\"192.0.2.1\"]")
        ))
        .unwrap();
        assert_eq!(c.peers[0].locators[0].port(), DEFAULT_PORT);
    }

    #[test]
    fn unknown_keys_are_refused_with_a_suggestion() {
        let msg = refused("[interface]\nmut = 1400\n", "interface.mut");
        assert_eq!(
            msg,
            "hipbone.toml:2: unknown key interface.mut (did you mean mtu?)"
        );
        let msg = refused("[interfaces]\nmtu = 1400\n", "interfaces");
        assert!(
            msg.ends_with("unknown key interfaces (did you mean interface?)"),
            "{msg}"
        );
        let msg = refused("[hip]\ni1_timeout = 500\n", "hip.i1_timeout");
        assert!(msg.ends_with("(did you mean i1_timeout_ms?)"), "{msg}");
        let text = format!(
            "{}{}",
            peer("locators = [\"192.0.2.1\"]"),
            "[[peer]]\nhit = \"2001:2a::1\"\nlocators = [\"192.0.2.2\"]\nnmae = \"x\"\n"
        );
        let msg = refused(&text, "peer[1].nmae");
        assert!(
            msg == "hipbone.toml:7: unknown key peer[1].nmae (did you mean name?)",
            "{msg}"
        );
        // Nothing close: the known keys are listed instead.
        let msg = refused("[esp]\nwindow_of_replay = 64\n", "esp.window_of_replay");
        assert!(
            msg.ends_with(
                "(known keys: replay_window, rekey_after_packets, rekey_after_seconds, \
                 queue_per_peer)"
            ),
            "{msg}"
        );
        refused("[interface.extra]\n", "interface.extra");
    }

    #[test]
    fn wrong_types_are_refused_with_the_key() {
        let cases = [
            (
                "[interface]\nmtu = \"big\"",
                "interface.mtu",
                "invalid type: string \"big\"",
            ),
            (
                "[interface]\nport = 70000",
                "interface.port",
                "expected an integer 0..=65535",
            ),
            ("[interface]\nport = -1", "interface.port", "integer `-1`"),
            (
                "[interface]\nlisten = \"::\"",
                "interface.listen",
                "expected an array",
            ),
            (
                "[interface]\nlisten = [\"::\", \"1.2.3\"]",
                "interface.listen[1]",
                "\"1.2.3\" is not an IP address",
            ),
            ("[interface]\ntun = 0", "interface.tun", "expected a string"),
            (
                "[interface]\ncontrol = 5",
                "interface.control",
                "expected a string",
            ),
            ("[interface]\nlsi = 5", "interface.lsi", "expected a string"),
            (
                "[esp]\nreplay_window = 1.5",
                "esp.replay_window",
                "invalid type: float",
            ),
            (
                "[hip]\ni1_tries = true",
                "hip.i1_tries",
                "invalid type: boolean",
            ),
            ("interface = 5", "interface", "expected a table"),
            ("peer = 5", "peer", "expected an array"),
        ];
        for (text, key, problem) in cases {
            let msg = refused(text, key);
            assert!(msg.contains(problem), "{text}: {msg}");
        }
        let text = format!("peer = [{{ hit = \"{HIT}\", locators = [\"192.0.2.1\", 5] }}]");
        let msg = refused(&text, "peer[0].locators[1]");
        assert!(
            msg.contains("invalid type: integer `5`, expected a string"),
            "{msg}"
        );
    }

    #[test]
    fn syntax_errors_give_the_line() {
        for (text, line) in [
            ("[interface\n", 1),
            ("\n\nx = \n", 3),
            ("[interface]\nmtu = 1400\nmtu = 1300\n", 3),
        ] {
            let e = parse(text).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("hipbone.toml:{line}: invalid TOML: ")),
                "{text:?}: {msg}"
            );
            assert!(!msg.contains('\n'), "{msg}");
            assert_eq!(e.key(), None);
        }
    }

    #[test]
    fn validate_on_a_config_built_in_code() {
        let mut c = Config::default();
        c.interface.mtu = 1500;
        let e = c.validate().unwrap_err();
        assert_eq!(e.key(), Some("interface.mtu"));
        assert!(
            e.to_string()
                .starts_with("interface.mtu = 1500 leaves no room"),
            "{e}"
        );
        c.interface.mtu = 1400;
        c.peers.push(Peer {
            hit: HIT.parse().unwrap(),
            locators: Vec::new(),
            name: None,
            rendezvous: false,
            relay: false,
        });
        assert_eq!(c.validate().unwrap_err().key(), Some("peer[0].locators"));
    }

    #[test]
    fn to_hip_config_maps_the_hip_and_esp_sections() {
        let c = parse("[hip]\nmax_associations = 7\ni1_timeout_ms = 250\ni1_tries = 3\n").unwrap();
        let h = c.to_hip_config();
        let d = hip::Config::default();
        assert_eq!(h.max_associations, 7);
        assert_eq!(h.i1_timeout, Duration::from_millis(250));
        assert_eq!(h.i1_tries, 3);
        assert_eq!(h.max_timeout, d.max_timeout);
        assert_eq!(h.i2_tries, d.i2_tries);
        assert_eq!(h.replay_window, d.replay_window);
        assert_eq!(h.rekey_after, Duration::from_secs(3600));
        let c = parse(
            "[esp]\nreplay_window = 128\nrekey_after_packets = 1000\n\
             rekey_after_seconds = 0\nqueue_per_peer = 5\n",
        )
        .unwrap();
        let h = c.to_hip_config();
        assert_eq!(h.replay_window, 128);
        assert_eq!(h.rekey_after_packets, 1000);
        assert_eq!(h.rekey_after, Duration::ZERO);
        assert_eq!(h.queue_per_peer, 5);
        // A first timeout above the back-off cap lifts the cap.
        let c = parse("[hip]\ni1_timeout_ms = 5000\n").unwrap();
        let h = c.to_hip_config();
        assert_eq!(h.max_timeout, Duration::from_secs(5));
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

    #[test]
    fn edit_distance_counts_transpositions_as_one() {
        assert_eq!(edit_distance("mut", "mtu"), 1);
        assert_eq!(edit_distance("mtu", "mtu"), 0);
        assert_eq!(edit_distance("", "log"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(did_you_mean("lgo", &["log", "lsi"]), Some("log"));
        assert_eq!(did_you_mean("foo", &["log", "lsi"]), None);
    }

    // ---- files --------------------------------------------------------------------------

    use crate::testdir::TempDir;

    /// The error and its causes on one line, as `main` prints them (`{:#}` of anyhow).
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            out = format!("{out}: {c}");
            cause = c.source();
        }
        out
    }

    #[test]
    fn load_names_the_file_and_requires_it() {
        let dir = TempDir::new("load");
        let path = dir.0.join("hipbone.toml");
        let e = Config::load(&path).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert_eq!(e.to_string(), format!("reading {}", path.display()));
        assert!(
            chain(&e).ends_with("No such file or directory (os error 2)"),
            "{e}"
        );
        // The default path may be missing.
        assert_eq!(Config::load_or_default(&path).unwrap(), Config::default());

        fs::write(&path, "[interface]\nmtu = 1480\n").unwrap();
        let e = Config::load_or_default(&path).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}:2: interface.mtu = 1480", path.display())),
            "{e}"
        );
        fs::write(&path, EXAMPLE).unwrap();
        assert_eq!(Config::load(&path).unwrap(), parse(EXAMPLE).unwrap());
    }

    #[test]
    fn load_refuses_huge_and_binary_files() {
        let dir = TempDir::new("huge");
        let path = dir.0.join("hipbone.toml");
        fs::write(&path, vec![b'#'; MAX_CONFIG_LEN as usize + 1]).unwrap();
        let msg = chain(&Config::load(&path).unwrap_err());
        assert!(msg.contains("longer than"), "{msg}");
        fs::write(&path, [0xff, 0xfe]).unwrap();
        let msg = chain(&Config::load(&path).unwrap_err());
        assert!(msg.contains("not UTF-8"), "{msg}");
        // A directory is not a configuration file.
        assert!(Config::load(&dir.0).is_err());
    }

    #[test]
    fn identity_is_created_0600_in_a_new_0700_directory() {
        let dir = TempDir::new("create");
        let path = dir.0.join("lib/hipbone/identity.key");
        let id = load_or_create_identity(&path).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.0.join("lib")), 0o700);
        // Only the key, no temporary left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        // Loading again gives the same identity.
        assert_eq!(load_or_create_identity(&path).unwrap().hit(), id.hit());
        // The key never shows in Debug output.
        let text = fs::read_to_string(&path).unwrap();
        assert!(!format!("{id:?}").contains(text.trim()));
    }

    #[test]
    fn an_existing_identity_is_never_overwritten() {
        let dir = TempDir::new("existing");
        let path = dir.0.join("identity.key");
        let id = HostIdentity::from_secret([7; 32]);
        keys::write_key_file(&path, &id).unwrap();
        let before = fs::read(&path).unwrap();
        assert_eq!(load_or_create_identity(&path).unwrap().hit(), id.hit());
        assert_eq!(fs::read(&path).unwrap(), before);

        // A file that is not a key is an error, and stays as it was.
        fs::write(&path, "precious\n").unwrap();
        let e = load_or_create_identity(&path).unwrap_err();
        assert!(matches!(e, KeyError::Malformed { .. }), "{e:?}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "precious\n");
    }

    #[test]
    fn nat_keys_are_read_and_checked() {
        let c = parse(&format!(
            "[nat]\nrelay = true\nkeepalive_seconds = 5\nmax_bytes = 3000000\n\n\
             [[peer]]\nhit = \"{HIT}\"\nlocators = [\"203.0.113.2\"]\nrelay = true\n"
        ))
        .unwrap();
        let h = c.to_hip_config();
        assert!(h.relay_server);
        assert_eq!(h.nat_keepalive, Duration::from_secs(5));
        assert_eq!(h.relay_quota.bytes, 3_000_000);
        assert!(c.peers[0].relay);
        let e = parse("[nat]\nkeepalive_seconds = 600\n").unwrap_err();
        assert_eq!(e.key(), Some("nat.keepalive_seconds"));
        assert!(e.to_string().contains("outside 0..=120"), "{e}");
        let e = parse("[nat]\nmax_permissions = 0\n").unwrap_err();
        assert_eq!(e.key(), Some("nat.max_permissions"));
        let both = format!(
            "[[peer]]\nhit = \"{HIT}\"\nlocators = [\"203.0.113.2\"]\nrelay = true\nrendezvous = true\n"
        );
        let e = parse(&both).unwrap_err();
        assert_eq!(e.key(), Some("peer[0].relay"));
        assert!(e.to_string().contains("both relay and rendezvous"), "{e}");
        let e = parse("[nat]\nrelay = \"yes\"\n").unwrap_err();
        assert!(e.to_string().contains("relay"), "{e}");
    }

    #[test]
    fn a_world_readable_identity_is_refused() {
        let dir = TempDir::new("mode");
        let path = dir.0.join("identity.key");
        keys::write_key_file(&path, &HostIdentity::from_secret([7; 32])).unwrap();
        let before = fs::read(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create_identity(&path).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, KeyError::Unprotected { mode: 0o644, .. }),
            "{e:?}"
        );
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        assert_eq!(fs::read(&path).unwrap(), before);
    }
}
