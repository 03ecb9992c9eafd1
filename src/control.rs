//! The control socket: a Unix stream socket, root only (mode 0600), one request per
//! connection. The client writes one line (`status` or `down`); the daemon answers with
//! one JSON document and closes. `hipbone status` formats it the way `wg show` does.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Everything `hipbone status` shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub interface: String,
    pub hit: String,
    pub lsi: String,
    pub listen: Vec<String>,
    pub associations: Vec<AssocStatus>,
    pub counters: Counters,
    /// What we know of the NAT in front of us.
    #[serde(default)]
    pub nat: Option<String>,
    /// As a relay server: clients and what was relayed.
    #[serde(default)]
    pub relay: Option<String>,
    #[serde(default)]
    pub wakeups: Wakeups,
    /// Configured peers with no association (none was needed yet, or the last one ended).
    #[serde(default)]
    pub unassociated: Vec<PeerStatus>,
    /// HITs we had packets for and could not reach lately, oldest first.
    #[serde(default)]
    pub unreached: Vec<UnreachedStatus>,
}

/// A HIT not reached, why, and how long ago.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnreachedStatus {
    pub peer: String,
    pub why: String,
    pub secs_ago: f64,
}

/// A configured peer with no association.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    pub peer: String,
    pub name: Option<String>,
    pub locators: Vec<String>,
}

/// Why the event loop woke up, counted since the start: an idle node wakes only for its
/// timers, and never for nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Wakeups {
    pub total: u64,
    /// Packets, a request, a signal, or work left from the turn before.
    pub io: u64,
    /// Nothing arrived, and a timer was due.
    pub timer: u64,
    /// Nothing arrived and no timer was due: a wake-up that should not happen.
    pub idle: u64,
}

impl Wakeups {
    pub fn count(&mut self, io: bool, timer_due: bool) {
        self.total += 1;
        match (io, timer_due) {
            (true, _) => self.io += 1,
            (false, true) => self.timer += 1,
            (false, false) => self.idle += 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AssocStatus {
    pub peer: String,
    /// How we found the peer, if we started the exchange: "configured", "through an
    /// overlay neighbour", "its locator record in the overlay", "an I1 routed through the
    /// overlay".
    #[serde(default)]
    pub found: Option<String>,
    pub name: Option<String>,
    pub lsi: Option<String>,
    pub state: String,
    pub role: String,
    pub locator: String,
    pub local: String,
    pub spi_in: Option<String>,
    pub spi_out: Option<String>,
    pub rekeys: u32,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Seconds since the association was established.
    pub established_secs: Option<f64>,
    /// Seconds since the last packet in either direction.
    pub idle_secs: Option<f64>,
    /// The peer's last move: seconds ago, and milliseconds from the first packet seen at
    /// the new address until that address was verified.
    #[serde(default)]
    pub last_move: Option<(f64, f64)>,
    /// A new address of the peer being checked before use.
    #[serde(default)]
    pub checking: Option<String>,
    /// A failover probe under way ("local -> remote"): the current path fell silent.
    #[serde(default)]
    pub probing: Option<String>,
    /// The peer's addresses from its last announcement, preferred first.
    #[serde(default)]
    pub peer_locators: Vec<String>,
    /// "direct", or "relayed via ADDRESS".
    #[serde(default)]
    pub path: Option<String>,
    /// The NAT traversal mode, Ta and the connectivity checks: "ICE-HIP-UDP, Ta 50 ms, N of
    /// M pairs succeeded".
    #[serde(default)]
    pub checks: Option<String>,
    /// Seconds until the next NAT keepalive, when we send them on this association.
    #[serde(default)]
    pub keepalive_in: Option<f64>,
    /// The path MTU to the peer's locator, once read.
    #[serde(default)]
    pub path_mtu: Option<usize>,
    /// Datagrams to the peer's locator that the kernel refused.
    #[serde(default)]
    pub send_failed: u64,
    /// Before the association is up: the locators the I1 goes to (from the configuration).
    #[serde(default)]
    pub trying: Vec<String>,
}

impl AssocStatus {
    /// Whether the association carries data (its locator is in use).
    pub fn is_up(&self) -> bool {
        self.state == "ESTABLISHED" || self.state == "R2-SENT"
    }
}

/// Node-wide counters: packets refused, by reason, and what mobility did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    pub hip_dropped: u64,
    pub esp_replayed: u64,
    #[serde(default)]
    pub esp_late: u64,
    pub esp_auth_failed: u64,
    pub esp_unknown_spi: u64,
    pub queue_dropped: u64,
    pub tun_refused: u64,
    pub no_peer: u64,
    /// Datagrams the kernel refused to send, and packets it refused from us on the TUN.
    #[serde(default)]
    pub udp_send_failed: u64,
    #[serde(default)]
    pub tun_write_failed: u64,
    /// Inner packets too big for their peer's path, answered with an ICMP error.
    #[serde(default)]
    pub too_big: u64,
    /// Inner packets for a peer that could not be found (no locator, no record in the
    /// overlay), answered with ICMPv6 Destination Unreachable.
    #[serde(default)]
    pub icmp_unreachable: u64,
    /// Mobility (hip::Stats of the same names): UPDATEs authenticated, those with an old
    /// SEQ, old ones left unanswered, checks of a peer's new address, moves, ESP bytes sent
    /// on credit and packets the spent credit sent to the old locator instead.
    #[serde(default)]
    pub updates_received: u64,
    #[serde(default)]
    pub updates_old: u64,
    #[serde(default)]
    pub updates_old_unanswered: u64,
    #[serde(default)]
    pub address_checks: u64,
    #[serde(default)]
    pub peer_moves: u64,
    #[serde(default)]
    pub credit_bytes: u64,
    #[serde(default)]
    pub credit_refused: u64,
    /// HIP BONE: packets passed on through the overlay, and routed packets refused (not
    /// from a hop we have an association with, a bad hop MAC, another overlay, a loop, no
    /// hops left).
    #[serde(default)]
    pub routed: u64,
    #[serde(default)]
    pub route_refused: u64,
}

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status,
    Down,
    OverlayStatus,
    /// Append a value to our own debugging array in the overlay.
    OverlayStore(String),
    /// Fetch the debugging array of the node with this HIT.
    OverlayFetch(hip::Hit),
    /// The HIT (and LSI) an ID-LOC name stands for.
    Resolve(String),
    /// Hold `label.<overlay>` with its grant (base64, as `hipbone name grant` prints it).
    NameClaim {
        label: String,
        grant: String,
    },
    /// Give up the name this node holds.
    NameRelease,
    /// The name this node holds and the names it resolved lately.
    NameList,
}

impl Request {
    pub fn parse(line: &str) -> Option<Request> {
        let line = line.trim_end_matches(['\r', '\n']);
        match line.trim() {
            "status" => return Some(Request::Status),
            "down" => return Some(Request::Down),
            "overlay status" => return Some(Request::OverlayStatus),
            "name release" => return Some(Request::NameRelease),
            "name list" => return Some(Request::NameList),
            _ => {}
        }
        if let Some(value) = line.strip_prefix("overlay store ") {
            return Some(Request::OverlayStore(value.to_string()));
        }
        if let Some(name) = line.strip_prefix("resolve ") {
            let name = name.trim();
            return (!name.is_empty() && !name.contains(char::is_whitespace))
                .then(|| Request::Resolve(name.to_string()));
        }
        if let Some(args) = line.strip_prefix("name claim ") {
            let mut words = args.split_whitespace();
            let (label, grant) = (words.next()?, words.next()?);
            return words.next().is_none().then(|| Request::NameClaim {
                label: label.to_string(),
                grant: grant.to_string(),
            });
        }
        let hit = line.strip_prefix("overlay fetch ")?.trim();
        hit.parse().ok().map(Request::OverlayFetch)
    }

    fn line(&self) -> String {
        match self {
            Request::Status => "status".to_string(),
            Request::Down => "down".to_string(),
            Request::OverlayStatus => "overlay status".to_string(),
            Request::OverlayStore(value) => format!("overlay store {value}"),
            Request::OverlayFetch(hit) => format!("overlay fetch {hit}"),
            Request::Resolve(name) => format!("resolve {name}"),
            Request::NameClaim { label, grant } => format!("name claim {label} {grant}"),
            Request::NameRelease => "name release".to_string(),
            Request::NameList => "name list".to_string(),
        }
    }
}

/// The longest request line the daemon reads (a stored value included).
pub const MAX_REQUEST: usize = 1100;
/// The longest value `hipbone overlay store` takes (the debugging kind's value size).
pub const MAX_VALUE: usize = 1024;

/// Reads one request line from a fresh connection (bounded in size and time).
pub fn read_request(stream: &UnixStream) -> std::io::Result<Option<Request>> {
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_REQUEST as u64)).read_line(&mut line)?;
    Ok(Request::parse(&line))
}

/// Sends `request` to the daemon behind `path` and returns its answer.
pub fn call(path: &Path, request: Request) -> anyhow::Result<String> {
    let s = UnixStream::connect(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the hipbone daemon at {}: {e} (is `hipbone up` running, and are you root?)",
            path.display()
        )
    })?;
    let wait = match request {
        Request::OverlayStore(_)
        | Request::OverlayFetch(_)
        | Request::Resolve(_)
        | Request::NameClaim { .. }
        | Request::NameRelease => Duration::from_secs(25),
        _ => Duration::from_secs(5),
    };
    exchange(s, &request, wait)
}

/// Sends `request` on `s` and reads the answer, waiting `wait` at most.
fn exchange(mut s: UnixStream, request: &Request, wait: Duration) -> anyhow::Result<String> {
    s.set_read_timeout(Some(wait))?;
    writeln!(s, "{}", request.line())?;
    let mut answer = String::new();
    match s.read_to_string(&mut answer) {
        Ok(_) => Ok(answer),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            let pending = match request {
                Request::NameClaim { .. } => {
                    "; the node holds the claim and stores it once it has joined"
                }
                _ => "",
            };
            anyhow::bail!(
                "the daemon did not answer within {} s: it may not have joined the overlay yet \
                 (`hipbone overlay status` shows where the join stands){pending}",
                wait.as_secs()
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// The `wg show`-like rendering of a status.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: &str| out.push_str(&format!("  {k}: {v}\n"));
    out.push_str(&format!("interface: {}\n", s.interface));
    line(&mut out, "hit", &s.hit);
    line(&mut out, "lsi", &s.lsi);
    line(&mut out, "listening", &s.listen.join(", "));
    if let Some(nat) = &s.nat {
        line(&mut out, "nat", nat);
    }
    if let Some(relay) = &s.relay {
        line(&mut out, "relay", relay);
    }
    let up = s.associations.iter().filter(|a| a.is_up()).count();
    let failed = s
        .associations
        .iter()
        .filter(|a| a.state == "E-FAILED")
        .count();
    line(
        &mut out,
        "peers",
        &format!(
            "{up} established, {} connecting, {failed} failed, {} configured without association",
            s.associations.len() - up - failed,
            s.unassociated.len()
        ),
    );
    for a in &s.associations {
        out.push('\n');
        match &a.name {
            Some(n) => out.push_str(&format!("peer: {} ({n})\n", a.peer)),
            None => out.push_str(&format!("peer: {}\n", a.peer)),
        }
        if let Some(lsi) = &a.lsi {
            line(&mut out, "lsi", lsi);
        }
        line(&mut out, "state", &format!("{} ({})", a.state, a.role));
        match (&a.found, a.role.as_str()) {
            (Some(found), _) => line(&mut out, "found", found),
            (None, "responder") => line(&mut out, "found", "it connected to us"),
            _ => {}
        }
        if a.is_up() {
            line(
                &mut out,
                "locator",
                &format!("{} (from {}), verified", a.locator, a.local),
            );
        } else if !a.trying.is_empty() {
            line(
                &mut out,
                "locator",
                &format!("none yet (trying {})", a.trying.join(", ")),
            );
        }
        if let Some(addr) = &a.checking {
            line(
                &mut out,
                "checking",
                &format!("{addr} (not used until it answers)"),
            );
        }
        if let Some(path) = &a.probing {
            line(&mut out, "probing", &format!("{path} (path silent)"));
        }
        if !a.peer_locators.is_empty() {
            line(&mut out, "peer locators", &a.peer_locators.join(", "));
        }
        if let Some(path) = &a.path {
            line(&mut out, "path", path);
        }
        if let Some(checks) = &a.checks {
            line(&mut out, "checks", checks);
        }
        if let Some(t) = a.keepalive_in {
            line(&mut out, "keepalive", &format!("next in {t:.0} s"));
        }
        if let Some(mtu) = a.path_mtu {
            line(&mut out, "path mtu", &mtu.to_string());
        }
        if a.send_failed > 0 {
            line(
                &mut out,
                "send failures",
                &format!("{} datagrams refused by the kernel", a.send_failed),
            );
        }
        if let (Some(i), Some(o)) = (&a.spi_in, &a.spi_out) {
            line(
                &mut out,
                "esp",
                &format!("spi in {i}, out {o}, {} rekeys", a.rekeys),
            );
        }
        if let Some(t) = a.established_secs {
            line(&mut out, "established", &ago(t));
        }
        if let Some(t) = a.idle_secs {
            line(&mut out, "latest packet", &ago(t));
        }
        if let Some((t, gap)) = a.last_move {
            line(
                &mut out,
                "last move",
                &format!("{}, verified after {gap:.0} ms", ago(t)),
            );
        }
        line(
            &mut out,
            "transfer",
            &format!(
                "{} received ({} packets), {} sent ({} packets)",
                bytes(a.rx_bytes),
                a.rx_packets,
                bytes(a.tx_bytes),
                a.tx_packets
            ),
        );
    }
    for p in &s.unassociated {
        out.push('\n');
        match &p.name {
            Some(n) => out.push_str(&format!("peer: {} ({n})\n", p.peer)),
            None => out.push_str(&format!("peer: {}\n", p.peer)),
        }
        line(&mut out, "state", "no association");
        line(&mut out, "configured locators", &p.locators.join(", "));
    }
    for u in &s.unreached {
        out.push('\n');
        out.push_str(&format!("not reached: {}\n", u.peer));
        line(&mut out, "why", &u.why);
        line(&mut out, "when", &ago(u.secs_ago));
    }
    let c = &s.counters;
    out.push_str(&format!(
        "\ndropped: {} HIP, {} ESP replayed, {} ESP late, {} ESP failed authentication, {} unknown SPI, {} queue full, {} refused from TUN, {} no peer, {} UDP send failed, {} TUN write failed, {} too big for the path, {} answered unreachable\n",
        c.hip_dropped, c.esp_replayed, c.esp_late, c.esp_auth_failed, c.esp_unknown_spi, c.queue_dropped, c.tun_refused, c.no_peer, c.udp_send_failed, c.tun_write_failed, c.too_big, c.icmp_unreachable
    ));
    let w = &s.wakeups;
    out.push_str(&format!(
        "wake-ups: {} ({} for packets or requests, {} for timers, {} for nothing)\n",
        w.total, w.io, w.timer, w.idle
    ));
    out
}

fn ago(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=59 => format!("{s} seconds ago"),
        60..=3599 => format!("{} minutes, {} seconds ago", s / 60, s % 60),
        _ => format!("{} hours, {} minutes ago", s / 3600, (s % 3600) / 60),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_unknown_ones_do_not() {
        assert_eq!(Request::parse("status\n"), Some(Request::Status));
        assert_eq!(Request::parse(" down "), Some(Request::Down));
        assert_eq!(Request::parse("rm -rf /"), None);
    }

    #[test]
    fn a_daemon_that_does_not_answer_in_time_is_named_as_such() {
        let (ours, _daemon) = UnixStream::pair().unwrap();
        let claim = Request::NameClaim {
            label: "alice".into(),
            grant: "AAAA".into(),
        };
        let e = exchange(ours, &claim, Duration::from_millis(50)).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("did not answer within 0 s"), "{e}");
        assert!(e.contains("stores it once it has joined"), "{e}");
    }

    #[test]
    fn name_requests_read_back_as_written() {
        let claim = Request::NameClaim {
            label: "alice".into(),
            grant: "AAAA+/==".into(),
        };
        for r in [claim, Request::NameRelease, Request::NameList] {
            assert_eq!(Request::parse(&format!("{}\n", r.line())), Some(r));
        }
        assert_eq!(Request::parse("name claim alice"), None);
        assert_eq!(Request::parse("name claim alice g extra"), None);
    }

    #[test]
    fn rendering_shows_peers_and_counters() {
        let s = Status {
            interface: "hip0".into(),
            hit: "2001:25::1".into(),
            lsi: "100.64.0.1".into(),
            listen: vec!["0.0.0.0:10500".into()],
            associations: vec![AssocStatus {
                peer: "2001:25::2".into(),
                found: Some("its locator record in the overlay".into()),
                name: Some("bob".into()),
                lsi: Some("100.64.0.2".into()),
                state: "ESTABLISHED".into(),
                role: "initiator".into(),
                locator: "198.51.100.2:10500".into(),
                local: "0.0.0.0:10500".into(),
                spi_in: Some("0x00001000".into()),
                spi_out: Some("0x00002000".into()),
                rekeys: 1,
                rx_packets: 3,
                rx_bytes: 3 * 1024 * 1024,
                tx_packets: 2,
                tx_bytes: 100,
                established_secs: Some(75.0),
                idle_secs: Some(1.0),
                last_move: Some((2.0, 31.0)),
                checking: Some("203.0.113.5:10500".into()),
                probing: Some("198.51.100.130:10500 -> 203.0.113.2:10500".into()),
                peer_locators: vec!["203.0.113.2:10500".into(), "203.0.113.130:10500".into()],
                path: Some("relayed via 203.0.113.9:10500".into()),
                checks: Some("ICE-HIP-UDP, Ta 50 ms, 0 of 2 pairs succeeded".into()),
                keepalive_in: Some(12.4),
                path_mtu: Some(1280),
                send_failed: 2,
                trying: Vec::new(),
            }],
            counters: Counters {
                esp_replayed: 4,
                ..Counters::default()
            },
            nat: Some("behind a NAT, seen at 203.0.113.7:40001".into()),
            relay: None,
            wakeups: Wakeups::default(),
            unassociated: vec![PeerStatus {
                peer: "2001:25::4".into(),
                name: Some("dave".into()),
                locators: vec!["203.0.113.4:10500".into()],
            }],
            unreached: vec![UnreachedStatus {
                peer: "2001:25::5".into(),
                why: "no locator record in the overlay (no such member, or it left)".into(),
                secs_ago: 3.0,
            }],
        };
        let mut s = s;
        let mut carol = s.associations[0].clone();
        carol.peer = "2001:25::3".into();
        carol.name = Some("carol".into());
        carol.state = "I1-SENT".into();
        carol.locator = "0.0.0.0:0".into();
        carol.trying = vec!["203.0.113.3:10500".into(), "[2001:db8:3::3]:10500".into()];
        s.associations.push(carol);
        let text = render(&s);
        assert!(text.contains(
            "peers: 1 established, 1 connecting, 0 failed, 1 configured without association"
        ));
        assert!(
            text.contains("locator: none yet (trying 203.0.113.3:10500, [2001:db8:3::3]:10500)")
        );
        assert!(!text.contains("0.0.0.0:0"), "{text}");
        assert!(text.contains("peer: 2001:25::4 (dave)\n  state: no association\n  configured locators: 203.0.113.4:10500"));
        assert!(text.contains("peer: 2001:25::2 (bob)"));
        assert!(
            text.contains("found: its locator record in the overlay"),
            "{text}"
        );
        assert!(text.contains(
            "not reached: 2001:25::5\n  why: no locator record in the overlay (no such member, or it left)\n  when: 3 seconds ago"
        ), "{text}");
        assert!(text.contains("3.00 MiB received (3 packets), 100 B sent (2 packets)"));
        assert!(text.contains("1 minutes, 15 seconds ago"));
        assert!(text.contains("4 ESP replayed"));
        assert!(text.contains("last move: 2 seconds ago, verified after 31 ms"));
        assert!(text.contains("checking: 203.0.113.5:10500"));
        assert!(text.contains("probing: 198.51.100.130:10500 -> 203.0.113.2:10500 (path silent)"));
        assert!(text.contains("peer locators: 203.0.113.2:10500, 203.0.113.130:10500"));
        assert!(text.contains("path: relayed via 203.0.113.9:10500"));
        assert!(text.contains("checks: ICE-HIP-UDP, Ta 50 ms, 0 of 2 pairs succeeded"));
        assert!(text.contains("path mtu: 1280"));
        assert!(text.contains("send failures: 2 datagrams refused by the kernel"));
        assert!(
            text.contains("wake-ups: 0 (0 for packets or requests, 0 for timers, 0 for nothing)")
        );
        assert!(text.contains("keepalive: next in 12 s"));
        assert!(text.contains("nat: behind a NAT, seen at 203.0.113.7:40001"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
    }
}
