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

/// How many bytes more an IPv4 header is short of an IPv6 header (see [`ESP_UDP_OVERHEAD`]).
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
            .unwrap_or_else(|| PathBuf::from(format!("/run/hipbone/{}.sock", self.tun)))
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
    /// Anti-replay window, in packets.
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
    /// 100.64.0.0/16, in the RFC 6598 shared address space; docs/CONFIG.md says why.
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

impl FromStr for LsiRange {
    type Err = ();

    /// `a.b.c.d/n` with `n` ≤ 32.
    fn from_str(s: &str) -> Result<LsiRange, ()> {
        let (addr, len) = s.split_once('/').ok_or(())?;
        let network = addr.parse().map_err(|_| ())?;
        // u8::from_str would take "+8"; a prefix length is plain digits.
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        let prefix_len: u8 = len.parse().map_err(|_| ())?;
        if prefix_len > 32 {
            return Err(());
        }
        Ok(LsiRange {
            network,
            prefix_len,
        })
    }
}

impl<'de> Deserialize<'de> for LsiRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|()| {
            serde::de::Error::custom(format!(
                "{text:?} is not an IPv4 prefix (like \"100.64.0.0/16\")"
            ))
        })
    }
}

// ---- deserialisation of single values -------------------------------------------------
//
// Addresses and HITs are parsed by element types with their own `Deserialize`, so that the
// toml deserialiser attaches the element's own span to an error (`peer[0].locators[1]`, not
// just `peer[0].locators`), and the message quotes the text that was wrong.

fn de_hit<'de, D: Deserializer<'de>>(d: D) -> Result<Hit, D::Error> {
    let text = String::deserialize(d)?;
    match text.parse::<Hit>() {
        Ok(hit) => Ok(hit),
        Err(_) => Err(serde::de::Error::custom(match text.parse::<Ipv6Addr>() {
            Ok(_) => format!("{text:?} is not a HIT (not in 2001:20::/28)"),
            Err(_) => format!("{text:?} is not a HIT (not an IPv6 address)"),
        })),
    }
}

/// One `listen` address.
struct ListenAddr(IpAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(ListenAddr).map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not an IP address (the port is interface.port)"
            ))
        })
    }
}

fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    Ok(Vec::<ListenAddr>::deserialize(d)?
        .into_iter()
        .map(|a| a.0)
        .collect())
}

fn de_lsi<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an IPv4 address")))
}

/// One peer locator: `IP`, `IP:port`, `[IPv6]` or `[IPv6]:port`.
struct Locator(SocketAddr);

impl Locator {
    fn parse(text: &str) -> Option<SocketAddr> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Some(addr);
        }
        let ip = match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            Some(inner) => IpAddr::V6(inner.parse().ok()?),
            None => text.parse().ok()?,
        };
        Some(SocketAddr::new(ip, DEFAULT_PORT))
    }
}

impl<'de> Deserialize<'de> for Locator {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Locator::parse(&text).map(Locator).ok_or_else(|| {
            // DNS names are refused rather than resolved: start-up must not hang on, or
            // silently depend on, a resolver.
            serde::de::Error::custom(format!(
                "{text:?} is not an IP address with an optional port \
                 (like \"198.51.100.2:10500\" or \"[2001:db8::2]\"; names are not resolved)"
            ))
        })
    }
}

fn de_locators<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    Ok(Vec::<Locator>::deserialize(d)?
        .into_iter()
        .map(|l| l.0)
        .collect())
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
            ConfigError::Read { path, source } => {
                write!(f, "reading {}: {source}", path.display())
            }
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
    // The io::Error is printed in the message itself (one line, always the same shape), so
    // it is not also returned as a source that `{:#}` would print a second time.
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

    /// The [`hip::Config`] for this node: the `[hip]` keys over hip's defaults.
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
            replay_window: self.esp.replay_window as usize,
            rekey_after_packets: self.esp.rekey_after_packets,
            rekey_after: self.esp.rekey_after().unwrap_or(Duration::ZERO),
            queue_per_peer: self.esp.queue_per_peer as usize,
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
                if holds && best.as_ref().map_or(true, |(l, _)| len <= *l) {
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
        self.check_peers()
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
                     (a /31 or /32 has no room for peers)"
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
        in_range(
            key("replay_window"),
            e.replay_window,
            64,
            1 << 20,
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
