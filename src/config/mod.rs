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
//!
//! This file holds [`Config`], the entry points and [`ConfigError`]; each section has a file
//! of its own with its type, its defaults and its rules: `interface` (with [`LsiRange`]),
//! `tuning` (`[esp]` and `[hip]`), `peer`, `nat`, `overlay`. `values` turns TOML strings
//! into addresses and HITs, `report` turns serde's and the rules' complaints into one line
//! naming the key, and `identity` holds [`load_or_create_identity`].

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;

mod dns;
mod identity;
mod interface;
mod nat;
mod overlay;
mod peer;
mod report;
mod tuning;
mod values;

pub use dns::Dns;
pub use identity::load_or_create_identity;
pub use interface::{Interface, LsiRange, LsiRangeError};
pub use nat::Nat;
pub use overlay::{Bootstrap, Overlay};
pub use peer::Peer;
pub use tuning::{Esp, HipSection};

use report::{line_of, syntax_message, Broken, Document};

/// Where `hipbone up` looks for its configuration when `-c` is not given.
pub const DEFAULT_PATH: &str = "/etc/hipbone/hipbone.toml";

/// Where the control sockets live unless the configuration says otherwise.
pub const CONTROL_DIR: &str = "/run/hipbone";

/// The UDP port of HIP over UDP (IANA `hip-nat-t`, RFC 5770 / RFC 9028): our default
/// `interface.port`, and the port of a peer locator written without one. Peer locators use
/// this constant rather than our own `port` because a peer's port is the peer's choice.
pub const DEFAULT_PORT: u16 = 10500;

/// The largest configuration file read. A real one is a few kilobytes; the bound keeps
/// `-c /dev/zero` from eating memory.
pub const MAX_CONFIG_LEN: u64 = 1 << 20;

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
    /// `[dns]`: the DNS stub for the overlay's names; absent, none.
    pub dns: Option<Dns>,
}

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

    /// Every rule, in file order; the first broken one is reported.
    fn check(&self) -> Result<(), Broken> {
        self.interface.check()?;
        self.esp.check()?;
        self.hip.check()?;
        peer::check(&self.peers)?;
        self.nat.check(&self.peers)?;
        self.overlay.as_ref().map_or(Ok(()), Overlay::check)?;
        let overlay = self.overlay.is_some();
        self.dns.as_ref().map_or(Ok(()), |d| d.check(overlay))
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
            // RELOAD's 4-byte overlay hash (RFC 7086 §5.2).
            overlay_id: self
                .overlay
                .as_ref()
                .map(|o| ::overlay::id::overlay_hash(&o.name).to_be_bytes().to_vec()),
            relay_server: self.nat.relay,
            relay_quota: hip::RelayQuota {
                permissions: self.nat.max_permissions,
                rate: self.nat.max_rate,
                bytes: self.nat.max_bytes,
            },
            relay_private: self.nat.relay_private.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TempDir;
    use std::net::{Ipv4Addr, SocketAddr};

    // The helpers below serve the tests of every section's file too.

    /// The RFC 8032 §7.1 TEST 1 key's HIT (tests/cli.rs uses the same).
    pub(super) const HIT: &str = "2001:25:94f8:6e7a:36ad:d203:ed89:625f";

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

    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "hipbone.toml")
    }

    /// The one-line message of a text expected to be refused; checks that it names the
    /// file and `key`, and that `ConfigError::key` is `key`.
    pub(super) fn refused(text: &str, key: &str) -> String {
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
    pub(super) fn peer(extra: &str) -> String {
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
}
