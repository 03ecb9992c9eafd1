//! The node daemon behind `hipbone up`: one mio event loop that owns the TUN device, the UDP
//! sockets (one per local address family), the control socket and the signals, and drives
//! `hip::Host` with real time. Nothing here blocks except the bounded read of a control
//! request.
//!
//! Packet paths:
//! - TUN → [`inner::Edge::outgoing`] → `Host::encapsulate` → UDP `send_to`.
//! - UDP → `Host::decapsulate` → [`inner::Edge::incoming`] → TUN.
//!
//! Buffers are allocated once; a packet is read at an offset that leaves room in front for
//! the ESP header (outbound) or for the rebuilt IP header (inbound), so nothing is copied.

pub mod inner;

use crate::config::Config;
use crate::control::{self, AssocStatus, Counters, Request, Status};
use crate::tun::Tun;
use anyhow::Context;
use hip::{Event, Hit, Host, Inbound, Outbound};
use inner::{Edge, Refused};
use mio::net::{UdpSocket, UnixListener};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Instant;

const TUN: Token = Token(0);
const CONTROL: Token = Token(1);
const SIGNALS: Token = Token(2);
/// UDP sockets are tokens 16.. in the order of `Daemon::sockets`.
const UDP_BASE: usize = 16;

/// Room kept in front of a packet in the I/O buffer: enough for the ESP header before an
/// outbound payload and for the IPv6 header before a delivered one.
const FRONT: usize = 64;
/// The I/O buffer: front room, the largest datagram, and the ESP trailer.
const BUF_LEN: usize = FRONT + 65535 + 64;
/// Packets handled per readiness event before other sources get a turn.
const BATCH: usize = 256;

/// A configured peer: where to send the first I1.
#[derive(Debug, Clone)]
struct PeerEntry {
    name: Option<String>,
    locators: Vec<SocketAddr>,
}

pub struct Daemon {
    host: Host,
    edge: Edge,
    tun: Tun,
    sockets: Vec<(UdpSocket, SocketAddr)>,
    control: UnixListener,
    control_path: PathBuf,
    signals: signal_hook_mio::v1_0::Signals,
    poll: Poll,
    peers: HashMap<Hit, PeerEntry>,
    interface: String,
    counters: Counters,
    buf: Vec<u8>,
    running: bool,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("hit", &self.host.hit())
            .finish_non_exhaustive()
    }
}

/// Sets up everything `config` asks for, then runs until `hipbone down` or a signal.
/// Set-up is all or nothing: any failure is reported before the loop starts, and whatever
/// was created is released (the TUN device disappears with its file descriptor).
pub fn run(config: Config) -> anyhow::Result<()> {
    let mut daemon = Daemon::new(config)?;
    let result = daemon.run();
    daemon.shutdown();
    result
}

impl Daemon {
    pub fn new(config: Config) -> anyhow::Result<Daemon> {
        let identity = crate::config::load_or_create_identity(&config.interface.identity)?;
        let now = Instant::now();
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)
            .map_err(|e| anyhow::anyhow!("drawing randomness from the operating system: {e}"))?;
        let host = Host::new(identity, config.to_hip_config(), seed, now);
        let hit = host.hit();
        let prefix = config.interface.lsi_range.prefix_len;
        let mut pool = config
            .interface
            .lsi_range
            .pool()
            .map_err(|e| anyhow::anyhow!("interface.lsi_range: {e}"))?;
        let lsi = config.interface.own_lsi();
        pool.reserve(lsi);
        let mut peers = HashMap::new();
        for p in &config.peers {
            pool.lsi_for(&p.hit)
                .map_err(|e| anyhow::anyhow!("allocating an LSI for peer {}: {e}", p.hit))?;
            let entry = PeerEntry {
                name: p.name.clone(),
                locators: p.locators.clone(),
            };
            peers.insert(p.hit, entry);
        }

        let mut sockets = Vec::new();
        for addr in config.interface.listen_addrs() {
            let socket = bind_udp(addr).with_context(|| format!("binding UDP {addr}"))?;
            sockets.push((socket, addr));
        }
        let mtu = u16::try_from(config.interface.mtu).context("interface.mtu")?;
        let tun = Tun::create(
            &config.interface.tun,
            mtu,
            hit.to_ipv6(),
            Some((lsi, prefix)),
        )
        .with_context(|| format!("setting up TUN device {}", config.interface.tun))?;
        let control_path = config.interface.control_path();
        let control = bind_control(&control_path)?;
        let signals = signal_hook_mio::v1_0::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .context("installing signal handlers")?;
        let poll = Poll::new().context("creating the event loop")?;

        let mut daemon = Daemon {
            host,
            edge: Edge {
                hit,
                lsi,
                pool,
                flows: Default::default(),
            },
            tun,
            sockets,
            control,
            control_path,
            signals,
            poll,
            peers,
            interface: config.interface.tun.clone(),
            counters: Counters::default(),
            buf: vec![0u8; BUF_LEN],
            running: true,
        };
        daemon.register().context("registering event sources")?;
        tracing::info!(hit = %hit, lsi = %lsi, tun = %daemon.interface, "hipbone is up");
        Ok(daemon)
    }

    fn register(&mut self) -> io::Result<()> {
        let registry = self.poll.registry();
        registry.register(
            &mut SourceFd(&self.tun.as_raw_fd()),
            TUN,
            Interest::READABLE,
        )?;
        registry.register(&mut self.control, CONTROL, Interest::READABLE)?;
        registry.register(&mut self.signals, SIGNALS, Interest::READABLE)?;
        for (i, (s, _)) in self.sockets.iter_mut().enumerate() {
            registry.register(s, Token(UDP_BASE + i), Interest::READABLE)?;
        }
        Ok(())
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(64);
        while self.running {
            let timeout = self
                .host
                .poll_timeout()
                .map(|t| t.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("waiting for events"),
            }
            for event in events.iter() {
                match event.token() {
                    TUN => self.drain_tun(),
                    CONTROL => self.accept_control(),
                    SIGNALS => {
                        for signal in self.signals.pending() {
                            tracing::info!(signal, "shutting down");
                            self.running = false;
                        }
                    }
                    Token(t) if t >= UDP_BASE => self.drain_udp(t - UDP_BASE),
                    _ => {}
                }
            }
            let now = Instant::now();
            if self.host.poll_timeout().is_some_and(|t| t <= now) {
                self.host.handle_timeout(now);
            }
            self.flush();
        }
        Ok(())
    }

    /// Reads packets from the TUN device and sends them sealed, up to a batch.
    fn drain_tun(&mut self) {
        for _ in 0..BATCH {
            let n = match self.tun.recv(&mut self.buf[FRONT..BUF_LEN - 64]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "reading from the TUN device");
                    return;
                }
            };
            self.outbound(FRONT, FRONT + n);
        }
    }

    fn outbound(&mut self, start: usize, end: usize) {
        let now = Instant::now();
        let out = match self.edge.outgoing(&mut self.buf, start, end) {
            Ok(o) => o,
            Err(Refused::NoPeer) => {
                self.counters.no_peer += 1;
                return;
            }
            Err(_) => {
                self.counters.tun_refused += 1;
                return;
            }
        };
        let mut attempt = 0;
        loop {
            let result = self.host.encapsulate(
                now,
                &out.peer,
                out.next_header,
                &mut self.buf,
                out.payload.clone(),
            );
            match result {
                Outbound::Send {
                    local,
                    remote,
                    datagram,
                } => {
                    send(&self.sockets, local, remote, datagram);
                    return;
                }
                Outbound::NoAssociation if attempt == 0 => {
                    attempt += 1;
                    if !self.connect(now, out.peer) {
                        self.counters.no_peer += 1;
                        return;
                    }
                }
                Outbound::Queued => return,
                _ => return,
            }
        }
    }

    /// Starts a base exchange with a configured peer; false if we know no locator for it.
    fn connect(&mut self, now: Instant, peer: Hit) -> bool {
        let Some(entry) = self.peers.get(&peer) else {
            return false;
        };
        let Some(first) = entry.locators.first() else {
            return false;
        };
        let local = self.local_for(first);
        let locators = entry.locators.clone();
        match self.host.connect(now, peer, local, &locators) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "cannot start a base exchange");
                false
            }
        }
    }

    /// The bound address of the socket of `remote`'s family.
    fn local_for(&self, remote: &SocketAddr) -> SocketAddr {
        self.sockets
            .iter()
            .map(|(_, a)| *a)
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .unwrap_or(self.sockets[0].1)
    }

    /// Receives datagrams on socket `i` and delivers what they carry, up to a batch.
    fn drain_udp(&mut self, i: usize) {
        let local = self.sockets[i].1;
        for _ in 0..BATCH {
            let (n, remote) = match self.sockets[i].0.recv_from(&mut self.buf[FRONT..]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "receiving on UDP");
                    return;
                }
            };
            let remote = unmap(remote);
            let now = Instant::now();
            let verdict =
                self.host
                    .decapsulate(now, local, remote, &mut self.buf[FRONT..FRONT + n]);
            match verdict {
                Inbound::Deliver {
                    peer,
                    next_header,
                    payload,
                } => {
                    let payload = FRONT + payload.start..FRONT + payload.end;
                    if let Some(range) =
                        self.edge
                            .incoming(&mut self.buf, peer, next_header, payload)
                    {
                        if let Err(e) = self.tun.send(&self.buf[range]) {
                            tracing::debug!(error = %e, "writing to the TUN device");
                        }
                    }
                }
                Inbound::UnknownSpi { spi } => {
                    // The peer holds an association we lost (we restarted): a fresh base
                    // exchange with the configured peer at that address replaces it.
                    let peer = self
                        .peers
                        .iter()
                        .find(|(_, e)| e.locators.iter().any(|l| l.ip() == remote.ip()))
                        .map(|(h, _)| *h);
                    tracing::debug!(spi = format_args!("{spi:#010x}"), from = %remote, "ESP for an unknown SPI");
                    if let Some(peer) = peer {
                        self.connect(now, peer);
                    }
                }
                Inbound::Control | Inbound::Dropped => {}
            }
        }
    }

    /// Sends what the host queued and acts on its events.
    fn flush(&mut self) {
        while let Some(t) = self.host.poll_transmit() {
            send(&self.sockets, t.local, t.remote, &t.payload);
        }
        while let Some(e) = self.host.poll_event() {
            match e {
                Event::Established {
                    peer,
                    remote,
                    initiator,
                    ..
                } => {
                    let _ = self.edge.pool.lsi_for(&peer);
                    tracing::info!(peer = %peer, remote = %remote, initiator, "association established");
                }
                Event::Failed { peer, error } => {
                    tracing::info!(peer = %peer, error = %error, "base exchange failed")
                }
                Event::Closed { peer } => tracing::info!(peer = %peer, "association closed"),
                Event::Rekeyed { peer, .. } => tracing::debug!(peer = %peer, "ESP rekeyed"),
                other => tracing::debug!(event = ?other, "HIP event"),
            }
        }
    }

    fn accept_control(&mut self) {
        loop {
            let stream = match self.control.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket");
                    return;
                }
            };
            // Handled to completion here: a request is one short line, read with a timeout.
            let Ok(std) = into_std(stream) else { continue };
            let answer = match control::read_request(&std) {
                Ok(Some(Request::Status)) => {
                    serde_json::to_string_pretty(&self.status()).unwrap_or_default()
                }
                Ok(Some(Request::Down)) => {
                    self.running = false;
                    "{\"down\": true}".to_string()
                }
                _ => "{\"error\": \"unknown request\"}".to_string(),
            };
            let mut w = &std;
            let _ = io::Write::write_all(&mut w, answer.as_bytes());
        }
    }

    fn status(&mut self) -> Status {
        let now = Instant::now();
        let stats = self.host.stats().clone();
        let mut associations: Vec<AssocStatus> = self
            .host
            .associations()
            .map(|a| {
                let last = [a.traffic.last_rx, a.traffic.last_tx]
                    .into_iter()
                    .flatten()
                    .max();
                AssocStatus {
                    peer: a.peer.to_string(),
                    name: self.peers.get(&a.peer).and_then(|p| p.name.clone()),
                    lsi: None,
                    state: a.state.to_string(),
                    role: if a.initiator {
                        "initiator"
                    } else {
                        "responder"
                    }
                    .to_string(),
                    locator: a.remote.to_string(),
                    local: a.local.to_string(),
                    spi_in: a.spis.map(|(i, _)| format!("{i:#010x}")),
                    spi_out: a.spis.map(|(_, o)| format!("{o:#010x}")),
                    rekeys: a.rekeys,
                    rx_packets: a.traffic.rx_packets,
                    rx_bytes: a.traffic.rx_bytes,
                    tx_packets: a.traffic.tx_packets,
                    tx_bytes: a.traffic.tx_bytes,
                    established_secs: a.established_at.map(|t| (now - t).as_secs_f64()),
                    idle_secs: last.map(|t| (now - t).as_secs_f64()),
                }
            })
            .collect();
        for a in &mut associations {
            if let Ok(hit) = a.peer.parse::<Hit>() {
                a.lsi = self.edge.pool.lsi_for(&hit).ok().map(|l| l.to_string());
            }
        }
        associations.sort_by(|a, b| a.peer.cmp(&b.peer));
        let counters = Counters {
            hip_dropped: stats.dropped,
            esp_replayed: stats.esp_replayed,
            esp_auth_failed: stats.esp_auth_failed,
            esp_unknown_spi: stats.esp_unknown_spi,
            queue_dropped: stats.queue_dropped,
            ..self.counters.clone()
        };
        Status {
            interface: self.interface.clone(),
            hit: self.host.hit().to_string(),
            lsi: self.edge.lsi.to_string(),
            listen: self.sockets.iter().map(|(_, a)| a.to_string()).collect(),
            associations,
            counters,
        }
    }

    fn shutdown(&mut self) {
        let _ = std::fs::remove_file(&self.control_path);
        tracing::info!(tun = %self.interface, "hipbone is down");
    }
}

fn send(
    sockets: &[(UdpSocket, SocketAddr)],
    local: SocketAddr,
    remote: SocketAddr,
    datagram: &[u8],
) {
    let socket = sockets.iter().find(|(_, a)| *a == local).or_else(|| {
        sockets
            .iter()
            .find(|(_, a)| a.is_ipv4() == remote.is_ipv4())
    });
    if let Some((s, _)) = socket {
        if let Err(e) = s.send_to(datagram, remote) {
            tracing::trace!(error = %e, remote = %remote, "UDP send");
        }
    }
}

/// IPv4-mapped IPv6 sources (from a dual-stack socket) as plain IPv4.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// A non-blocking UDP socket; IPv6 sockets are IPv6-only so that an IPv4 wildcard socket
/// can share the port.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Bursts at multi-gigabit rates overflow the default buffers.
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(UdpSocket::from_std(s.into()))
}

/// The control socket, mode 0600 in a 0700 directory. A stale socket file from a daemon
/// that died is replaced; a live one (something answers) is an error.
fn bind_control(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another hipbone daemon is running on control socket {} (stop it with `hipbone down`)",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

fn into_std(s: mio::net::UnixStream) -> io::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the descriptor comes from a mio stream we own and give up here; exactly one
    // owner holds it afterwards.
    let std = unsafe { std::os::unix::net::UnixStream::from_raw_fd(s.into_raw_fd()) };
    std.set_nonblocking(false)?;
    Ok(std)
}
