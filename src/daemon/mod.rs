//! The node daemon behind `hipbone up`: one mio event loop that owns the TUN device, the UDP
//! sockets (one per local address family), the control socket and the signals, and drives
//! `hip::Host` with real time. Nothing here blocks except the bounded read of a control
//! request.
//!
//! Packet paths:
//! - TUN → [`inner::Edge::outgoing`] → `Host::encapsulate` → UDP. The TUN device hands over
//!   TCP super-packets of up to 64 KiB ([`crate::tun::Tun::create_offload`]); each is cut
//!   into MSS-sized segments ([`offload::TcpSegments`]) written straight into the send buffer
//!   and sealed there one ESP packet per segment, and runs of datagrams for one peer leave
//!   with one UDP_SEGMENT `sendmsg` ([`batch::TxQueue`], [`crate::udp::send`]).
//! - UDP → `Host::decapsulate` → [`inner::Edge::incoming`] → TUN. With UDP_GRO one `recvmsg`
//!   returns a train of datagrams; each is opened in place, and consecutive TCP segments of
//!   one flow are joined into one super-packet for one TUN write ([`offload::Coalescer`]).
//!
//! On the wire nothing changes: every ESP packet carries one inner packet of at most the
//! TUN MTU, so peers without offloads interoperate. Without IFF_VNET_HDR (the kernel refuses
//! the offloads) the same paths run one packet at a time, and without UDP GSO/GRO one
//! datagram per system call. For comparisons (scripts/bench-throughput.sh), the environment
//! variable `HIPBONE_OFFLOAD` turns them off: `none` (plain reads, writes and datagrams) or
//! `udp` (UDP GSO/GRO only, no TUN offloads).
//!
//! Buffers are allocated once and the hot path does not allocate. A source that still has
//! packets after a batch is marked ready and served again before the loop sleeps: mio's
//! readiness is edge-triggered, so it would not be reported again.

pub mod batch;
pub mod inner;
mod listeners;
pub mod offload;
pub mod overlay;
mod pmtu;

use crate::config::Config;
use crate::control::{self, AssocStatus, Counters, Request, Status, Wakeups};
use crate::tun::Tun;
use crate::udp;
use anyhow::Context;
use batch::{Train, TxQueue};
use hip::esp::ESP_HEADER_LEN;
use hip::{Event, Hit, Host, Inbound, Outbound};
use inner::{Edge, Refused};
use mio::net::{UdpSocket, UnixListener};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use offload::{Coalescer, GsoType, Offer, TcpSegments, VnetHdr, VNET_HDR_LEN};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TUN: Token = Token(0);
const CONTROL: Token = Token(1);
const SIGNALS: Token = Token(2);
const NETMON: Token = Token(3);
/// UDP sockets are tokens 16.. in the order of `Daemon::sockets`.
const UDP_BASE: usize = 16;

/// Room kept in front of a received datagram: for the `virtio_net_hdr` and the IPv6 header
/// rebuilt before its payload (which starts 16 bytes in). Later datagrams of a GRO train
/// reuse the tail of the one before, which has been delivered or copied by then.
const RX_FRONT: usize = 64;
/// Largest IP packet or UDP payload.
const MAX_PACKET: usize = 65535;
/// Reads (TUN) or receives (UDP) per turn before other sources get theirs.
const BATCH: usize = 64;
/// UDP socket buffers: bursts at multi-gigabit rates overflow the defaults.
const SOCKET_BUFFER: usize = 8 << 20;
const TCP: u8 = 6;

const NO_OVERLAY: &str =
    "{\"error\": \"this node joins no overlay (no [overlay] in its configuration)\"}";

/// A configured peer: where to send the first I1.
#[derive(Debug, Clone)]
struct PeerEntry {
    name: Option<String>,
    locators: Vec<SocketAddr>,
    /// Our rendezvous server: registered with at start, and again whenever the
    /// association with it ends.
    rendezvous: bool,
    /// Our relay server: registered with like the rendezvous server.
    relay: bool,
}

pub struct Daemon {
    host: Host,
    edge: Edge,
    tun: Tun,
    sockets: Vec<(UdpSocket, SocketAddr)>,
    control: UnixListener,
    control_path: PathBuf,
    signals: signal_hook_mio::v1_0::Signals,
    netmon: crate::netmon::AddressMonitor,
    poll: Poll,
    peers: HashMap<Hit, PeerEntry>,
    interface: String,
    counters: Counters,
    wakeups: Wakeups,
    /// Path MTU per peer and failed sends.
    paths: pmtu::Paths,
    /// ICMP errors for the local stack: `virtio_net_hdr` and an IPv6 minimum-MTU packet.
    icmp_buf: Vec<u8>,
    /// TUN reads: `virtio_net_hdr` and a packet of up to 64 KiB.
    tun_buf: Vec<u8>,
    /// Sealed datagrams waiting to leave in trains.
    tx: TxQueue,
    /// As a relay: ESP to pass on, lying in `rx_buf` (see `Inbound::Forward`).
    forwarding: Option<Train>,
    /// UDP receives, [`RX_FRONT`] bytes in.
    rx_buf: Vec<u8>,
    /// The super-packet being built for the TUN device, behind its `virtio_net_hdr`.
    deliver_buf: Vec<u8>,
    coalescer: Coalescer,
    /// Per socket: UDP_SEGMENT works on it.
    gso: Vec<bool>,
    /// The host's addresses as netlink last reported them: the only ones a datagram is
    /// sent from by name (a locator that just went away is left to the kernel's choice).
    local_ips: Vec<IpAddr>,
    /// The overlay this node joined, if its configuration names one.
    overlay: Option<overlay::Overlay>,
    /// Our identity again, for signing what the overlay stores.
    identity: hip::HostIdentity,
    /// The overlay has input to process (packets, a request) before the next wait.
    overlay_due: bool,
    /// Sources that had more to read when their turn ended.
    tun_ready: bool,
    udp_ready: Vec<bool>,
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
        let copy = || hip::HostIdentity::from_secret(*identity.secret_bytes());
        let overlay = match &config.overlay {
            Some(o) => Some(overlay::Overlay::new(
                o,
                copy(),
                config.interface.mtu as usize,
                now,
            )?),
            None => None,
        };
        let own = copy();
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
                rendezvous: p.rendezvous,
                relay: p.relay,
            };
            peers.insert(p.hit, entry);
        }
        // Bootstrap nodes are reached like configured peers (without an LSI of their own).
        for b in config.overlay.iter().flat_map(|o| &o.bootstrap) {
            if b.hit != hit && !peers.contains_key(&b.hit) {
                let entry = PeerEntry {
                    name: Some("bootstrap".to_string()),
                    locators: b.locators.clone(),
                    rendezvous: false,
                    relay: false,
                };
                peers.insert(b.hit, entry);
            }
        }

        let mode = std::env::var("HIPBONE_OFFLOAD").unwrap_or_default();
        let (udp_offload, tun_offload) = match mode.as_str() {
            "none" => (false, false),
            "udp" => (true, false),
            _ => (true, true),
        };
        let control_path = config.interface.control_path();
        if answers(&control_path) {
            anyhow::bail!(
                "another hipbone daemon is running on control socket {} (stop it with `hipbone down`)",
                control_path.display()
            );
        }
        let mut sockets = Vec::new();
        let mut gso = Vec::new();
        for addr in config.interface.listen_addrs() {
            let socket = bind_udp(addr).map_err(|e| {
                let held = e.kind() == io::ErrorKind::AddrInUse;
                let why = match live_daemons().first() {
                    Some(other) if held => format!(
                        "a hipbone daemon is already running (control socket {} answers); \
                         stop it with `hipbone down`, or give this one another interface.port",
                        other.display()
                    ),
                    _ if held => "another program holds the port (a hipbone daemon whose \
                        control socket is elsewhere?); choose another interface.port"
                        .to_string(),
                    _ => e.to_string(),
                };
                anyhow::anyhow!("binding UDP {addr}: {why}")
            })?;
            gso.push(udp_offload && udp::supports_gso(&socket));
            if udp_offload {
                if let Err(e) = udp::enable_gro(&socket) {
                    tracing::debug!(error = %e, %addr, "no UDP_GRO: one datagram per receive");
                }
            }
            if let Err(e) = udp::enable_pktinfo(&socket, addr.is_ipv6()) {
                tracing::debug!(error = %e, %addr, "no packet info: local addresses unknown");
            }
            sockets.push((socket, addr));
        }
        let mtu = u16::try_from(config.interface.mtu).context("interface.mtu")?;
        let name = &config.interface.tun;
        let addrs = (hit.to_ipv6(), Some((lsi, prefix)));
        let tun = if tun_offload {
            Tun::create_offload(name, mtu, addrs.0, addrs.1).or_else(|e| match e {
                crate::tun::TunError::Os {
                    op: crate::tun::TunOp::SetOffload,
                    ..
                } => {
                    tracing::warn!(error = %e, "TUN offloads refused: one packet per read");
                    Tun::create(name, mtu, addrs.0, addrs.1)
                }
                e => Err(e),
            })
        } else {
            Tun::create(name, mtu, addrs.0, addrs.1)
        }
        .with_context(|| format!("setting up TUN device {name}"))?;
        let control = bind_control(&control_path)?;
        let netmon =
            crate::netmon::AddressMonitor::open().context("subscribing to address changes")?;
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
                listeners: Default::default(),
            },
            tun,
            sockets,
            control,
            control_path,
            signals,
            netmon,
            poll,
            peers,
            interface: config.interface.tun.clone(),
            counters: Counters::default(),
            wakeups: Wakeups::default(),
            paths: pmtu::Paths::default(),
            icmp_buf: vec![0u8; VNET_HDR_LEN + 1280],
            tun_buf: vec![0u8; VNET_HDR_LEN + MAX_PACKET],
            tx: TxQueue::new(),
            forwarding: None,
            rx_buf: vec![0u8; RX_FRONT + MAX_PACKET],
            deliver_buf: vec![0u8; VNET_HDR_LEN + MAX_PACKET],
            coalescer: Coalescer::default(),
            udp_ready: vec![false; gso.len()],
            gso,
            local_ips: Vec::new(),
            overlay,
            identity: own,
            overlay_due: true,
            tun_ready: false,
            running: true,
        };
        daemon.register().context("registering event sources")?;
        daemon.update_addresses();
        if let Some(o) = daemon.overlay.as_mut() {
            o.start(Instant::now());
        }
        let servers: Vec<Hit> = daemon
            .peers
            .iter()
            .filter(|(_, e)| e.rendezvous || e.relay)
            .map(|(h, _)| *h)
            .collect();
        for server in servers {
            daemon.register_rendezvous(Instant::now(), server);
        }
        tracing::info!(
            hit = %hit,
            lsi = %lsi,
            tun = %daemon.interface,
            tun_offload = daemon.tun.vnet_hdr(),
            udp_gso = ?daemon.gso,
            "hipbone is up"
        );
        Ok(daemon)
    }

    /// Reads the host's addresses and tells the HIP host, which announces a change to its
    /// peers (RFC 8046).
    fn update_addresses(&mut self) {
        let port = self.sockets.first().map_or(0, |(_, a)| a.port());
        match crate::netmon::addresses(self.tun.index()) {
            Ok(ips) => {
                let addrs: Vec<SocketAddr> = ips
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect();
                tracing::debug!(addresses = ?addrs, "local addresses");
                self.local_ips = addrs.iter().map(SocketAddr::ip).collect();
                self.host.set_local_addresses(Instant::now(), &addrs);
            }
            Err(e) => tracing::warn!(error = %e, "reading the host's addresses"),
        }
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
        registry.register(
            &mut SourceFd(&self.netmon.as_raw_fd()),
            NETMON,
            Interest::READABLE,
        )?;
        for (i, (s, _)) in self.sockets.iter_mut().enumerate() {
            registry.register(s, Token(UDP_BASE + i), Interest::READABLE)?;
        }
        Ok(())
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(64);
        while self.running {
            let busy = self.tun_ready || self.udp_ready.contains(&true) || self.overlay_due;
            let overlay = self.overlay.as_ref().and_then(|o| o.deadline());
            let deadline = [self.host.poll_timeout(), overlay]
                .into_iter()
                .flatten()
                .min();
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                deadline.map(|t| t.saturating_duration_since(Instant::now()))
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("waiting for events"),
            }
            self.wakeups.count(
                busy || !events.is_empty(),
                deadline.is_some_and(|t| t <= Instant::now()),
            );
            for event in events.iter() {
                match event.token() {
                    TUN => self.tun_ready = true,
                    CONTROL => self.accept_control(),
                    NETMON => {
                        let changes = self.netmon.drain();
                        if changes.addresses {
                            self.update_addresses();
                        }
                        if changes.routes {
                            self.host.routes_changed(Instant::now());
                        }
                    }
                    SIGNALS => {
                        for signal in self.signals.pending() {
                            tracing::info!(signal, "shutting down");
                            self.running = false;
                        }
                    }
                    Token(t) if t >= UDP_BASE && t - UDP_BASE < self.udp_ready.len() => {
                        self.udp_ready[t - UDP_BASE] = true
                    }
                    _ => {}
                }
            }
            if self.tun_ready {
                self.tun_ready = !self.drain_tun();
            }
            for i in 0..self.udp_ready.len() {
                if self.udp_ready[i] {
                    self.udp_ready[i] = !self.drain_udp(i);
                }
            }
            let now = Instant::now();
            // Does nothing when nothing is due (the first deadline of a queue is checked).
            self.host.handle_timeout(now);
            self.flush();
            self.drive_overlay(now);
        }
        Ok(())
    }

    /// Lets the overlay run if it has input or a timer due, and seals what it sends.
    fn drive_overlay(&mut self, now: Instant) {
        // Taken first: a flag left set would make every wait a zero-timeout poll.
        let asked = std::mem::take(&mut self.overlay_due);
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        let due = asked || o.deadline().is_some_and(|t| t <= now);
        if !due {
            return;
        }
        let segments = o.drive(now);
        self.overlay_due = o.more;
        for (peer, segment) in segments {
            // The overlay's stack sends segments for an MTU of at least 1280; a smaller
            // path gets them cut.
            if let Some(mss) = self.path_mss(&peer, &segment) {
                if segment.len() > self.paths.max_payload(&peer).unwrap_or(usize::MAX) {
                    self.seal_segments(now, peer, &segment, mss);
                    continue;
                }
            }
            self.make_room();
            let at = self.tx.slot() + ESP_HEADER_LEN;
            let len = segment
                .len()
                .min(self.tx.buf.len() - at - hip::esp::ESP_TAIL_MAX);
            self.tx.buf[at..at + len].copy_from_slice(&segment[..len]);
            self.seal(now, peer, TCP, len);
        }
        if let Some(t) = self.tx.take() {
            self.send_train(t);
        }
        self.flush();
    }

    /// Reads packets from the TUN device and sends them sealed, up to a batch; true when
    /// the device has nothing more.
    fn drain_tun(&mut self) -> bool {
        let vnet = self.tun.vnet_hdr();
        let mut drained = false;
        for _ in 0..BATCH {
            let n = match self.tun.recv(&mut self.tun_buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading from the TUN device");
                    drained = true;
                    break;
                }
            };
            let now = Instant::now();
            if vnet {
                match VnetHdr::parse(&self.tun_buf[..n]) {
                    Some(hdr) => self.outbound(now, hdr, VNET_HDR_LEN, n),
                    None => self.counters.tun_refused += 1,
                }
            } else {
                self.outbound(now, VnetHdr::default(), 0, n);
            }
        }
        if let Some(t) = self.tx.take() {
            self.send_train(t);
        }
        drained
    }

    /// Classifies the packet at `tun_buf[start..end]` (described by `hdr`) and seals it, or
    /// each of its segments, into the send queue.
    fn outbound(&mut self, now: Instant, hdr: VnetHdr, start: usize, end: usize) {
        let gso = hdr.gso_type;
        if gso == GsoType::None
            && hdr.needs_csum()
            && !offload::complete_checksum(
                &mut self.tun_buf[start..end],
                hdr.csum_start,
                hdr.csum_offset,
            )
        {
            self.counters.tun_refused += 1;
            return;
        }
        let out = match self.edge.outgoing(&mut self.tun_buf, start, end) {
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
        let tcp = out.next_header == TCP;
        let gso_tcp = matches!(gso, GsoType::TcpV4 | GsoType::TcpV6) && tcp;
        if gso != GsoType::None && !gso_tcp {
            self.counters.tun_refused += 1;
            return;
        }
        let limit = self.paths.max_payload(&out.peer);
        let fits = limit.is_none_or(|max| out.payload.len() <= max);
        if gso == GsoType::None && fits {
            let len = out.payload.len();
            self.make_room();
            let at = self.tx.slot() + ESP_HEADER_LEN;
            self.tx.buf[at..at + len].copy_from_slice(&self.tun_buf[out.payload]);
            self.seal(now, out.peer, out.next_header, len);
            return;
        }
        if !tcp {
            // Too big for the path, and not ours to cut: the sender is told (and its
            // stack remembers the smaller MTU for the peer).
            self.too_big(now, out.peer, start, end, limit.unwrap_or(0), true);
            return;
        }
        // TCP is cut into segments of the size the kernel asked for, or smaller where the
        // path needs it; the kernel is told the path's size so that it sends smaller
        // segments itself.
        let tcp = out.payload;
        let mut mss = if gso_tcp { hdr.gso_size } else { u16::MAX };
        if let (Some(path_mss), Some(max)) =
            (self.path_mss(&out.peer, &self.tun_buf[tcp.clone()]), limit)
        {
            if path_mss < mss {
                mss = path_mss;
                self.too_big(now, out.peer, start, end, max, false);
            }
        }
        // Lent out for the call (a swap, no copy): sealing needs the daemon whole.
        let buf = std::mem::take(&mut self.tun_buf);
        if !self.seal_segments(now, out.peer, &buf[tcp], mss) {
            self.counters.tun_refused += 1;
        }
        self.tun_buf = buf;
    }

    /// Seals the TCP packet `tcp` for `peer` as segments of at most `mss` data bytes
    /// each; false if it is no TCP packet.
    fn seal_segments(&mut self, now: Instant, peer: Hit, tcp: &[u8], mss: u16) -> bool {
        let Ok(segments) = TcpSegments::new(tcp, mss) else {
            return false;
        };
        // The checksum the peer verifies is over the HITs, also for LSI flows.
        let pseudo = offload::pseudo_header_sum(&self.edge.hit.0, &peer.0, TCP);
        for i in 0..segments.count() {
            self.make_room();
            let at = self.tx.slot() + ESP_HEADER_LEN;
            let len = segments.write(tcp, i, &mut self.tx.buf[at..], pseudo);
            self.seal(now, peer, TCP, len);
        }
        true
    }

    /// The most TCP data bytes per segment to `peer` that its path takes, for a segment
    /// `tcp` (whose header length counts), once the path is known.
    fn path_mss(&self, peer: &Hit, tcp: &[u8]) -> Option<u16> {
        let header = tcp.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
        let max = self.paths.max_payload(peer)?;
        Some(u16::try_from(max.saturating_sub(header)).unwrap_or(u16::MAX))
    }

    /// Tells the local stack that the packet at `tun_buf[start..end]` for `peer` is too big
    /// for its path, whose transport payload is at most `max`: an ICMPv6 Packet Too Big
    /// (never below the IPv6 minimum MTU) or ICMP Fragmentation Needed, written to the TUN
    /// device. `dropped`: the packet is not sent (counted); otherwise this is a hint, sent at
    /// most once a second per peer.
    fn too_big(
        &mut self,
        now: Instant,
        peer: Hit,
        start: usize,
        end: usize,
        max: usize,
        dropped: bool,
    ) {
        if dropped {
            self.counters.too_big += 1;
        }
        if !self.paths.hint_due(now, &peer) && !dropped {
            return;
        }
        let vnet = if self.tun.vnet_hdr() { VNET_HDR_LEN } else { 0 };
        let offending = &self.tun_buf[start..end];
        let n = match offending.first().map(|b| b >> 4) {
            Some(6) => {
                let mtu = (max + hip::esp::IPV6_HEADER_LEN).max(1280);
                hip::esp::icmpv6_packet_too_big(&mut self.icmp_buf[vnet..], mtu as u32, offending)
            }
            Some(4) => {
                let mtu = u16::try_from(max + hip::esp::IPV4_HEADER_LEN).unwrap_or(u16::MAX);
                hip::esp::icmpv4_frag_needed(&mut self.icmp_buf[vnet..], mtu, offending)
            }
            _ => 0,
        };
        if n == 0 {
            return;
        }
        if vnet > 0 {
            VnetHdr::default().emit(&mut self.icmp_buf);
        }
        if let Err(e) = self.tun.send(&self.icmp_buf[..vnet + n]) {
            tracing::debug!(error = %e, "writing an ICMP error to the TUN device");
            self.counters.tun_write_failed += 1;
        }
    }

    /// Sends the pending train if the next datagram would not fit in it.
    fn make_room(&mut self) {
        if let Some(t) = self.tx.make_room() {
            self.send_train(t);
        }
    }

    /// Seals the payload of `len` bytes at the send queue's slot for `peer` and queues the
    /// datagram; starts a base exchange if there is no association yet.
    fn seal(&mut self, now: Instant, peer: Hit, next_header: u8, len: usize) {
        let slot = self.tx.slot();
        let payload = slot + ESP_HEADER_LEN..slot + ESP_HEADER_LEN + len;
        let mut attempt = 0;
        loop {
            let result =
                self.host
                    .encapsulate(now, &peer, next_header, &mut self.tx.buf, payload.clone());
            match result {
                Outbound::Send {
                    local,
                    remote,
                    datagram,
                } => {
                    // The ESP header goes just before the payload (hip::esp buffer layout),
                    // so the datagram starts at the slot.
                    let len = datagram.len();
                    let Some(socket) = socket_for(&self.sockets, local, remote) else {
                        return;
                    };
                    let from = source(&self.local_ips, local, remote);
                    if let Some(t) = self.tx.push(socket, remote, from, len) {
                        self.send_train(t);
                    }
                    return;
                }
                Outbound::NoAssociation if attempt == 0 => {
                    attempt += 1;
                    if !self.connect(now, peer) {
                        self.counters.no_peer += 1;
                        return;
                    }
                }
                Outbound::Queued => return,
                _ => return,
            }
        }
    }

    /// Sends a train of datagrams: with one UDP_SEGMENT `sendmsg` where the socket allows,
    /// else one by one. A kernel without UDP segmentation loses GSO on that socket; a
    /// segment the route cannot take (EINVAL: a path MTU below the datagrams) sends this
    /// train one by one and keeps GSO for the next.
    fn send_train(&mut self, t: Train) {
        self.send_train_of(t, false);
    }

    fn flush_forwarding(&mut self) {
        if let Some(t) = self.forwarding.take() {
            self.send_train_of(t, true);
        }
    }

    /// `send_train` for a train in the send buffer, or (`relayed`) in the receive buffer:
    /// ESP a relay passes on leaves as it arrived, in one `sendmsg` per GRO batch.
    fn send_train_of(&mut self, t: Train, relayed: bool) {
        let socket = &self.sockets[t.socket].0;
        let buf = if relayed { &self.rx_buf } else { &self.tx.buf };
        if self.gso[t.socket] || t.count == 1 {
            let segment = t.gso_segment();
            match udp::send(socket, &buf[t.start..t.end], segment, t.remote, t.from) {
                Ok(_) => return,
                Err(e) if segment.is_some() && gso_refused(&e) => {
                    tracing::debug!(error = %e, "UDP_SEGMENT refused: sending one by one");
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        self.gso[t.socket] = false;
                    }
                }
                Err(e) => {
                    self.counters.udp_send_failed += t.count as u64;
                    self.paths
                        .send_failed(Instant::now(), t.remote, &e, t.count as u64);
                    return;
                }
            }
        }
        let mut failed = None;
        for d in t.datagrams() {
            if let Err(e) = udp::send(socket, &buf[d], None, t.remote, t.from) {
                self.counters.udp_send_failed += 1;
                let n = failed.as_ref().map_or(0, |(n, _)| *n);
                failed = Some((n + 1, e));
            }
        }
        if let Some((n, e)) = failed {
            self.paths.send_failed(Instant::now(), t.remote, &e, n);
        }
    }
    /// Starts a base exchange with a configured peer; false if we know no locator for it.
    fn connect(&mut self, now: Instant, peer: Hit) -> bool {
        let locators = match self.peers.get(&peer) {
            Some(entry) => entry.locators.clone(),
            // HIP BONE: the I1 goes to the overlay neighbour that knows the peer, which
            // relays it over its association.
            None => self
                .overlay
                .as_ref()
                .and_then(|o| o.relay_for(&peer))
                .and_then(|relay| self.host.association(&relay))
                .map(|a| vec![a.remote])
                .unwrap_or_default(),
        };
        let Some(first) = locators.first() else {
            return false;
        };
        let local = self.local_for(first);
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

    /// Receives datagrams on socket `i` and delivers what they carry, up to a batch; true
    /// when the socket has nothing more.
    fn drain_udp(&mut self, i: usize) -> bool {
        let bound = self.sockets[i].1;
        let mut drained = false;
        for _ in 0..BATCH {
            let r = match udp::recv(&self.sockets[i].0, &mut self.rx_buf[RX_FRONT..]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "receiving on UDP");
                    drained = true;
                    break;
                }
            };
            let remote = unmap(r.from);
            let local = r
                .local
                .map_or(bound, |ip| SocketAddr::new(ip, bound.port()));
            let now = Instant::now();
            if r.len == 0 {
                self.inbound(now, local, remote, RX_FRONT, 0);
                continue;
            }
            // segment >= 1 whenever len >= 1.
            for at in (0..r.len).step_by(r.segment) {
                let len = r.segment.min(r.len - at);
                self.inbound(now, local, remote, RX_FRONT + at, len);
            }
            // Before the next receive overwrites what is to be relayed.
            self.flush_forwarding();
        }
        self.flush_deliveries();
        drained
    }

    /// Handles the datagram at `rx_buf[at..at + len]`.
    fn inbound(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        at: usize,
        len: usize,
    ) {
        let verdict = self
            .host
            .decapsulate(now, local, remote, &mut self.rx_buf[at..at + len]);
        // Delivering writes headers before its datagram, into the tail of the one before:
        // relayed datagrams waiting there leave first.
        if !matches!(verdict, Inbound::Forward { .. }) {
            self.flush_forwarding();
        }
        match verdict {
            Inbound::Deliver {
                peer,
                next_header,
                payload,
            } => {
                let payload = at + payload.start..at + payload.end;
                if let Some(o) = self.overlay.as_mut() {
                    if crate::netstack::is_ours(next_header, &self.rx_buf[payload.clone()]) {
                        o.receive(now, peer, &self.rx_buf[payload]);
                        self.overlay_due = true;
                        return;
                    }
                }
                if let Some(range) =
                    self.edge
                        .incoming(&mut self.rx_buf, peer, next_header, payload)
                {
                    self.deliver(range);
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
            Inbound::Forward { to } => {
                // Relayed ESP leaves as it came, from the address it arrived at; the
                // segments of one GRO batch for one destination leave together.
                let Some(socket) = socket_for(&self.sockets, local, to) else {
                    return;
                };
                let from = source(&self.local_ips, local, to);
                let joined = self
                    .forwarding
                    .as_mut()
                    .is_some_and(|t| t.join(socket, to, from, at, len));
                if !joined {
                    self.flush_forwarding();
                    self.forwarding = Some(Train::new(socket, to, from, at, len));
                }
            }
            Inbound::Control | Inbound::Dropped => {}
        }
    }

    /// Writes the IP packet at `rx_buf[range]` to the TUN device, or joins it to the
    /// super-packet being built.
    fn deliver(&mut self, range: core::ops::Range<usize>) {
        if !self.tun.vnet_hdr() {
            if let Err(e) = self.tun.send(&self.rx_buf[range]) {
                tracing::debug!(error = %e, "writing to the TUN device");
                self.counters.tun_write_failed += 1;
            }
            return;
        }
        loop {
            match self.coalescer.offer(&self.rx_buf[range.clone()]) {
                Offer::Start => {
                    let len = range.len();
                    self.deliver_buf[VNET_HDR_LEN..VNET_HDR_LEN + len]
                        .copy_from_slice(&self.rx_buf[range]);
                    return;
                }
                Offer::Append { data_start, at } => {
                    let data = range.start + data_start..range.end;
                    let at = VNET_HDR_LEN + at;
                    self.deliver_buf[at..at + data.len()].copy_from_slice(&self.rx_buf[data]);
                    return;
                }
                Offer::Flush => self.flush_deliveries(),
                Offer::Alone => {
                    // Room before the packet: RX_FRONT, or the delivered datagram before it.
                    let start = range.start - VNET_HDR_LEN;
                    VnetHdr::default().emit(&mut self.rx_buf[start..]);
                    if let Err(e) = self.tun.send(&self.rx_buf[start..range.end]) {
                        tracing::debug!(error = %e, "writing to the TUN device");
                        self.counters.tun_write_failed += 1;
                    }
                    return;
                }
            }
        }
    }

    /// Writes the super-packet being built, if any, to the TUN device.
    fn flush_deliveries(&mut self) {
        if let Some(f) = self.coalescer.finish(&mut self.deliver_buf) {
            if let Err(e) = self.tun.send(&self.deliver_buf[..VNET_HDR_LEN + f.len]) {
                tracing::debug!(error = %e, segments = f.segments, "writing to the TUN device");
                self.counters.tun_write_failed += 1;
            }
        }
    }

    /// Sends what the host queued and acts on its events.
    fn flush(&mut self) {
        // Acting on an event may queue packets (a registration renewed, a base exchange
        // started): they leave now, not at the next wake-up, which may be seconds away.
        loop {
            self.send_transmits();
            if !self.handle_events() {
                return;
            }
        }
    }

    fn send_transmits(&mut self) {
        while let Some(t) = self.host.poll_transmit() {
            let Some(i) = socket_for(&self.sockets, t.local, t.remote) else {
                continue;
            };
            let from = source(&self.local_ips, t.local, t.remote);
            if let Err(e) = udp::send(&self.sockets[i].0, &t.payload, None, t.remote, from) {
                self.counters.udp_send_failed += 1;
                self.paths.send_failed(Instant::now(), t.remote, &e, 1);
            }
        }
    }

    /// Acts on the host's events; false if there were none.
    fn handle_events(&mut self) -> bool {
        let mut any = false;
        while let Some(e) = self.host.poll_event() {
            any = true;
            match e {
                Event::Established {
                    peer,
                    local,
                    remote,
                    initiator,
                    ..
                } => {
                    let _ = self.edge.pool.lsi_for(&peer);
                    tracing::info!(peer = %peer, remote = %remote, initiator, "association established");
                    let from = source(&self.local_ips, local, remote);
                    self.paths.learn(Instant::now(), peer, from, remote);
                }
                Event::LocatorChanged { peer, remote } => {
                    let local = self.host.association(&peer).map(|a| a.local);
                    let from = local.and_then(|l| source(&self.local_ips, l, remote));
                    self.paths.learn(Instant::now(), peer, from, remote);
                }
                Event::Failed { peer, error } => {
                    tracing::info!(peer = %peer, error = %error, "association failed");
                    self.forget(&peer);
                    self.association_lost(peer);
                    self.register_rendezvous(Instant::now(), peer);
                }
                Event::Closed { peer } => {
                    tracing::info!(peer = %peer, "association closed");
                    self.forget(&peer);
                    self.association_lost(peer);
                    self.register_rendezvous(Instant::now(), peer);
                }
                Event::Rekeyed { peer, .. } => tracing::debug!(peer = %peer, "ESP rekeyed"),
                other => tracing::debug!(event = ?other, "HIP event"),
            }
        }
        any
    }

    /// Drops what the edge keeps for a peer whose association is gone: its flows, and its
    /// LSI unless the peer is configured (a configured peer keeps its LSI for good, so
    /// that programs can keep using it).
    /// Registers with `peer` if it is a configured rendezvous or relay server.
    fn register_rendezvous(&mut self, now: Instant, peer: Hit) {
        let Some(entry) = self.peers.get(&peer).filter(|e| e.rendezvous || e.relay) else {
            return;
        };
        if entry.relay {
            let Some(first) = entry.locators.first() else {
                return;
            };
            let local = self.local_for(first);
            let locators = entry.locators.clone();
            if let Err(e) = self.host.register_relay(now, peer, local, &locators) {
                tracing::warn!(server = %peer, error = %e, "cannot register with the relay");
            }
            return;
        }
        let Some(first) = entry.locators.first() else {
            return;
        };
        let local = self.local_for(first);
        let locators = entry.locators.clone();
        if let Err(e) = self.host.register(now, peer, local, &locators) {
            tracing::warn!(server = %peer, error = %e, "cannot register for rendezvous");
        }
    }

    fn association_lost(&mut self, peer: Hit) {
        if let Some(o) = self.overlay.as_mut() {
            o.association_lost(peer);
            self.overlay_due = true;
        }
    }

    fn forget(&mut self, peer: &Hit) {
        self.edge.flows.forget(peer);
        self.paths.forget(peer);
        if !self.peers.contains_key(peer) {
            self.edge.pool.release(peer);
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
                Ok(Some(Request::OverlayStatus)) => match &self.overlay {
                    Some(o) => serde_json::to_string_pretty(&o.status()).unwrap_or_default(),
                    None => NO_OVERLAY.to_string(),
                },
                Ok(Some(Request::OverlayStore(value))) => {
                    let Some(o) = self.overlay.as_mut() else {
                        let mut w = &std;
                        let _ = io::Write::write_all(&mut w, NO_OVERLAY.as_bytes());
                        continue;
                    };
                    // Answered when the overlay has: the stream waits with the request.
                    o.store(Instant::now(), &self.identity, value.as_bytes(), std);
                    self.overlay_due = true;
                    continue;
                }
                Ok(Some(Request::OverlayFetch(owner))) => {
                    let Some(o) = self.overlay.as_mut() else {
                        let mut w = &std;
                        let _ = io::Write::write_all(&mut w, NO_OVERLAY.as_bytes());
                        continue;
                    };
                    o.fetch(Instant::now(), owner, std);
                    self.overlay_due = true;
                    continue;
                }
                _ => "{\"error\": \"unknown request\"}".to_string(),
            };
            let mut w = &std;
            let _ = io::Write::write_all(&mut w, answer.as_bytes());
        }
    }

    /// `hipbone status`'s line on the relay service, when we serve it.
    fn relay_text(&self) -> Option<String> {
        if !self.host.config().relay_server {
            return None;
        }
        let r = self.host.relay_stats();
        Some(format!(
            "serving {} clients; relayed {} control, {} ESP packets, {} bytes; refused {}, over quota {}, permissions refused {}",
            self.host.relay_clients().count(),
            r.control_relayed,
            r.esp_relayed,
            r.bytes_relayed,
            r.refused,
            r.over_quota,
            r.permissions_refused
        ))
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
                    checking: a.checking.map(|addr| addr.to_string()),
                    probing: a.probing.map(|(l, r)| format!("{l} -> {r}")),
                    peer_locators: a.peer_locators.iter().map(ToString::to_string).collect(),
                    path: Some(match a.path {
                        hip::PathKind::Direct => "direct".to_string(),
                        hip::PathKind::Relayed { via } => format!("relayed via {via}"),
                    }),
                    checks: a.nat_mode.map(|mode| {
                        let name = match mode {
                            hip::wire::nat_mode::UDP_ENCAPSULATION => "UDP encapsulation".into(),
                            hip::wire::nat_mode::ICE_HIP_UDP => "ICE-HIP-UDP".into(),
                            other => format!("mode {other}"),
                        };
                        let ta = a.pacing.as_millis();
                        match a.checks {
                            (_, 0) => format!("{name}, Ta {ta} ms"),
                            (ok, all) => {
                                format!("{name}, Ta {ta} ms, {ok} of {all} pairs succeeded")
                            }
                        }
                    }),
                    keepalive_in: a
                        .keepalive_due
                        .map(|t| t.saturating_duration_since(now).as_secs_f64()),
                    last_move: a
                        .last_move
                        .map(|(at, gap)| ((now - at).as_secs_f64(), gap.as_secs_f64() * 1000.0)),
                    path_mtu: self.paths.mtu(&a.peer),
                    send_failed: self.paths.failures_to(&a.remote),
                    trying: match a.state {
                        hip::AssocState::I1Sent | hip::AssocState::Failed => self
                            .peers
                            .get(&a.peer)
                            .map(|p| p.locators.iter().map(ToString::to_string).collect())
                            .unwrap_or_default(),
                        _ => Vec::new(),
                    },
                }
            })
            .collect();
        for a in &mut associations {
            if let Ok(hit) = a.peer.parse::<Hit>() {
                a.lsi = self.edge.pool.lsi_for(&hit).ok().map(|l| l.to_string());
            }
        }
        // Those carrying data first.
        associations.sort_by(|a, b| (!a.is_up(), &a.peer).cmp(&(!b.is_up(), &b.peer)));
        let mut unassociated: Vec<control::PeerStatus> = self
            .peers
            .iter()
            .filter(|(hit, _)| self.host.association(hit).is_none())
            .map(|(hit, p)| control::PeerStatus {
                peer: hit.to_string(),
                name: p.name.clone(),
                locators: p.locators.iter().map(ToString::to_string).collect(),
            })
            .collect();
        unassociated.sort_by(|a, b| a.peer.cmp(&b.peer));
        let counters = Counters {
            hip_dropped: stats.dropped,
            esp_replayed: stats.esp_replayed,
            esp_late: stats.esp_late,
            esp_auth_failed: stats.esp_auth_failed,
            esp_unknown_spi: stats.esp_unknown_spi,
            queue_dropped: stats.queue_dropped,
            updates_received: stats.updates_received,
            updates_old: stats.updates_old,
            updates_old_unanswered: stats.updates_old_unanswered,
            address_checks: stats.address_checks,
            peer_moves: stats.peer_moves,
            credit_bytes: stats.credit_bytes,
            credit_refused: stats.credit_refused,
            ..self.counters.clone()
        };
        Status {
            interface: self.interface.clone(),
            hit: self.host.hit().to_string(),
            lsi: self.edge.lsi.to_string(),
            listen: self.sockets.iter().map(|(_, a)| a.to_string()).collect(),
            associations,
            nat: Some(nat_text(&self.host.nat_behaviour())),
            relay: self.relay_text(),
            counters,
            wakeups: self.wakeups.clone(),
            unassociated,
        }
    }

    fn shutdown(&mut self) {
        let _ = std::fs::remove_file(&self.control_path);
        tracing::info!(tun = %self.interface, "hipbone is down");
    }
}

/// The socket bound to `local` if it is of `remote`'s family, or else one of that family:
/// a datagram never leaves through a socket of the other family.
fn socket_for(
    sockets: &[(UdpSocket, SocketAddr)],
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<usize> {
    let family = |a: &SocketAddr| a.is_ipv4() == remote.is_ipv4();
    sockets
        .iter()
        .position(|(_, a)| *a == local && family(a))
        .or_else(|| sockets.iter().position(|(_, a)| family(a)))
}

/// The address to send to `remote` from for the host's `local`: itself while the host has
/// it and it is of `remote`'s family (the host chose the path: an address check, a probe,
/// the locator it announced), else the kernel's choice.
fn source(local_ips: &[IpAddr], local: SocketAddr, remote: SocketAddr) -> Option<IpAddr> {
    (local_ips.contains(&local.ip()) && local.is_ipv4() == remote.is_ipv4()).then_some(local.ip())
}

/// Whether a UDP_SEGMENT send failed because of the segmentation itself (no support, or a
/// segment larger than the route's MTU), so that sending one by one would work.
fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
    )
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
    // Bursts at multi-gigabit rates overflow the default buffers. The forced variants pass
    // net.core.[rw]mem_max, which a network namespace cannot raise; they need CAP_NET_ADMIN,
    // which the TUN device needs too, and the plain ones are the fallback.
    if udp::force_buffers(&s, SOCKET_BUFFER).is_err() {
        let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    }
    udp::forbid_fragments(&s, addr.is_ipv6())?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(UdpSocket::from_std(s.into()))
}

/// Whether a daemon answers on the control socket at `path`.
fn answers(path: &std::path::Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// The control sockets under the default directory that a daemon answers on.
fn live_daemons() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(crate::config::CONTROL_DIR) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sock") && answers(p))
        .collect();
    found.sort();
    found
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
        if answers(path) {
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

/// `hipbone status`'s line on our NAT.
fn nat_text(n: &hip::NatBehaviour) -> String {
    match n {
        hip::NatBehaviour::Unknown => "unknown (no relay server reports where it sees us)".into(),
        hip::NatBehaviour::None => "none (a relay server sees us at our own address)".into(),
        hip::NatBehaviour::Translated {
            reflexive,
            port_preserved,
            endpoint_independent,
        } => {
            let mapping = match endpoint_independent {
                None => "mapping not yet compared",
                Some(true) => "endpoint-independent mapping",
                Some(false) => "address-dependent mapping (symmetric NAT)",
            };
            let port = if *port_preserved {
                "port kept"
            } else {
                "port changed"
            };
            format!("behind a NAT, seen at {reflexive} ({port}, {mapping})")
        }
    }
}
