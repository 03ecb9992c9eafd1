//! The node daemon behind `hipbone up`: one mio event loop that owns the TUN device, the UDP
//! sockets (one per local address family), the control socket, netlink and the signals,
//! and drives the node model ([`crate::node::Node`]: the HIP host, the overlay, the edge)
//! with real time. Everything that decides what a packet means lives in the node model; the
//! daemon moves bytes and reads the clock. Nothing here blocks except the bounded read of a
//! control request.
//!
//! Packet paths ([`datapath`]):
//! - TUN → [`crate::node::edge::Edge::outgoing`] → `Node::encapsulate` → UDP. The TUN device
//!   hands over TCP super-packets of up to 64 KiB ([`crate::tun::Tun::create_offload`]);
//!   each is cut into MSS-sized segments ([`crate::offload::TcpSegments`]) written straight
//!   into the send buffer and sealed there one ESP packet per segment, and runs of datagrams
//!   for one peer leave with one UDP_SEGMENT `sendmsg` ([`batch::TxQueue`],
//!   [`crate::udp::send`]).
//! - UDP → `Node::handle_datagram` → [`crate::node::edge::Edge::incoming`] → TUN. With
//!   UDP_GRO one `recvmsg` returns a train of datagrams; each is opened in place, and
//!   consecutive TCP segments of one flow are joined into one super-packet for one TUN
//!   write ([`crate::offload::Coalescer`]).
//!
//! On the wire nothing changes: every ESP packet carries one inner packet of at most the
//! TUN MTU (or the peer's path, [`pmtu`]), so peers without offloads interoperate. Without
//! IFF_VNET_HDR (the kernel refuses the offloads) the same paths run one packet at a time,
//! and without UDP GSO/GRO one datagram per system call. For comparisons
//! (scripts/bench-throughput.sh), the environment variable `HIPBONE_OFFLOAD` turns them
//! off: `none` (plain reads, writes and datagrams) or `udp` (UDP GSO/GRO only, no TUN
//! offloads).
//!
//! Buffers are allocated once and the hot path does not allocate. A source that still has
//! packets after a batch is marked ready and served again before the loop sleeps: mio's
//! readiness is edge-triggered, so it would not be reported again.

pub mod batch;
mod datapath;
mod dns;
mod listeners;
mod pmtu;
mod sockets;
mod status;

use crate::config::Config;
use crate::control::{self, Counters, Request, Wakeups};
use crate::dns::Outcome;
use crate::node::overlay::{describe_locator, Answer, RequestId};
use crate::node::{Node, NodeEvent};
use crate::offload::{Coalescer, VNET_HDR_LEN};
use crate::tun::Tun;
use crate::udp;
use anyhow::Context;
use batch::{Train, TxQueue};
use hip::esp::PROTO_TCP as TCP;
use mio::net::{UdpSocket, UnixListener};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use sockets::{answers, bind_control, bind_udp, into_std, live_daemons, socket_for, source};
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TUN: Token = Token(0);
const CONTROL: Token = Token(1);
const SIGNALS: Token = Token(2);
const NETMON: Token = Token(3);
/// The DNS stub's sockets are tokens 4..16.
const DNS_BASE: usize = 4;
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
/// Control requests waiting for the overlay's answer.
const MAX_WAITING: usize = 64;
/// How long leaving may wait for the withdrawal of our record before the node goes.
const LEAVE_GRACE: Duration = Duration::from_secs(2);

const NO_OVERLAY: &str =
    "{\"error\": \"this node joins no overlay (no [overlay] in its configuration)\"}";

pub struct Daemon {
    node: Node,
    tun: Tun,
    sockets: Vec<(UdpSocket, SocketAddr)>,
    control: UnixListener,
    control_path: PathBuf,
    signals: signal_hook_mio::v1_0::Signals,
    netmon: crate::netmon::AddressMonitor,
    poll: Poll,
    interface: String,
    counters: Counters,
    wakeups: Wakeups,
    /// Which address family local programs listen on (for flows peers open to LSIs).
    listeners: listeners::Listeners,
    /// Path MTU per peer and failed sends.
    paths: pmtu::Paths,
    /// ICMP errors for the local stack: `virtio_net_hdr` and an IPv6 minimum-MTU packet.
    icmp_buf: Vec<u8>,
    /// TUN reads: `virtio_net_hdr` and a packet of up to 64 KiB.
    tun_buf: Vec<u8>,
    /// Sealed datagrams waiting to leave in trains.
    tx: TxQueue,
    /// As a relay: ESP to pass on, lying in `rx_buf` (see `Received::Forward`).
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
    /// Control requests waiting for the overlay's answer.
    waiting: HashMap<RequestId, UnixStream>,
    next_request: RequestId,
    /// `[overlay] pcap`: the overlay links' segments, as IPv6 packets between the HITs.
    overlay_pcap: Option<std::io::BufWriter<std::fs::File>>,
    /// Sources that had more to read when their turn ended.
    tun_ready: bool,
    udp_ready: Vec<bool>,
    running: bool,
    /// Leaving (a signal or `hipbone down`): the loop ends by this instant at the latest.
    leaving_until: Option<Instant>,
    /// `[dns]`: the stub and its sockets.
    dns: Option<dns::DnsFront>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("hit", &self.node.hit())
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

/// Milliseconds since the epoch: the wall clock the overlay's storage times use.
fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Daemon {
    pub fn new(config: Config) -> anyhow::Result<Daemon> {
        let identity = crate::config::load_or_create_identity(&config.interface.identity)?;
        let now = Instant::now();
        let mut seeds = [[0u8; 32]; 2];
        for seed in &mut seeds {
            getrandom::getrandom(seed).map_err(|e| {
                anyhow::anyhow!("drawing randomness from the operating system: {e}")
            })?;
        }
        let node = Node::from_config(&config, identity, seeds, epoch_ms(), now)?;
        let hit = node.hit();
        let lsi = node.edge.lsi;
        let prefix = config.interface.lsi_range.prefix_len;
        let overlay_pcap = match config.overlay.as_ref().and_then(|o| o.pcap.as_ref()) {
            Some(path) => {
                let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| {
                    anyhow::anyhow!("overlay.pcap: cannot create {}: {e}", path.display())
                })?);
                f.write_all(&crate::pcap::file_header())?;
                f.flush()?;
                Some(f)
            }
            None => None,
        };

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
        let dns = match (&config.dns, &config.overlay) {
            (Some(d), Some(o)) => Some(dns::DnsFront::new(d, &o.name)?),
            _ => None,
        };
        if dns
            .as_ref()
            .is_some_and(|d| DNS_BASE + d.tokens() > UDP_BASE)
        {
            anyhow::bail!("dns.listen: at most {} addresses", UDP_BASE - DNS_BASE - 2);
        }

        let mut daemon = Daemon {
            node,
            tun,
            sockets,
            control,
            control_path,
            signals,
            netmon,
            poll,
            interface: config.interface.tun.clone(),
            counters: Counters::default(),
            wakeups: Wakeups::default(),
            listeners: Default::default(),
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
            waiting: HashMap::new(),
            next_request: 0,
            overlay_pcap,
            tun_ready: false,
            running: true,
            leaving_until: None,
            dns,
        };
        daemon.register().context("registering event sources")?;
        daemon.update_addresses();
        daemon.node.start(Instant::now());
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

    /// Reads the host's addresses and tells the node, whose host announces a change to its
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
                self.node.set_local_addresses(Instant::now(), &addrs);
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
        if let Some(d) = self.dns.as_mut() {
            d.register(registry, DNS_BASE)?;
        }
        Ok(())
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(64);
        while self.running {
            let busy = self.tun_ready || self.udp_ready.contains(&true);
            let deadline = [self.node.poll_timeout(), self.leaving_until]
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
                            self.node.host.routes_changed(Instant::now());
                        }
                    }
                    SIGNALS => {
                        for signal in self.signals.pending() {
                            tracing::info!(signal, "shutting down");
                            self.begin_leaving(Instant::now());
                        }
                    }
                    Token(t) if t >= UDP_BASE && t - UDP_BASE < self.udp_ready.len() => {
                        self.udp_ready[t - UDP_BASE] = true
                    }
                    Token(t) if (DNS_BASE..UDP_BASE).contains(&t) => {
                        self.dns_readable(t - DNS_BASE)
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
            self.drive(Instant::now());
            if let Some(until) = self.leaving_until {
                let now = Instant::now();
                if self.node.left_overlay() || now >= until {
                    self.depart(now);
                }
            }
        }
        Ok(())
    }

    /// A signal or `hipbone down`: our record is withdrawn from the overlay first, for at
    /// most `LEAVE_GRACE`, while the node keeps running; then `depart`. A second request
    /// departs at once.
    fn begin_leaving(&mut self, now: Instant) {
        if self.leaving_until.is_some() {
            self.depart(now);
            return;
        }
        self.leaving_until = Some(now + LEAVE_GRACE);
        self.node.leave(now);
    }

    /// Leaves the ring, then closes every association, sending each step's packets
    /// before the next; the loop ends.
    fn depart(&mut self, now: Instant) {
        self.node.depart(now);
        self.drive(now);
        self.node.close_all(now);
        self.drive(now);
        self.running = false;
    }

    /// Lets the node run what is due, then sends what it queued and acts on what it says.
    fn drive(&mut self, now: Instant) {
        self.node.handle_timeout(now);
        while let Some(t) = self.node.poll_transmit() {
            let Some(i) = socket_for(&self.sockets, t.local, t.remote) else {
                continue;
            };
            let from = source(&self.local_ips, t.local, t.remote);
            if let Err(e) = udp::send(&self.sockets[i].0, &t.payload, None, t.remote, from) {
                self.counters.udp_send_failed += 1;
                self.send_failed(t.remote, &e, 1);
            }
        }
        self.drain_to_stack();
        while let Some(e) = self.node.poll_event() {
            match e {
                NodeEvent::Established {
                    peer,
                    local,
                    remote,
                    ..
                } => {
                    let from = source(&self.local_ips, local, remote);
                    self.paths.learn(now, peer, from, remote);
                    self.node
                        .set_max_payload(peer, self.paths.max_payload(&peer));
                }
                NodeEvent::Moved { peer, remote } => {
                    let local = self.node.host.association(&peer).map(|a| a.local);
                    let from = local.and_then(|l| source(&self.local_ips, l, remote));
                    self.paths.learn(now, peer, from, remote);
                    self.node
                        .set_max_payload(peer, self.paths.max_payload(&peer));
                }
                NodeEvent::Ended { peer } => self.paths.forget(&peer),
            }
        }
        let Some(o) = self.node.overlay.as_mut() else {
            return;
        };
        while let Some(answer) = o.poll_answer() {
            let request = answer.request();
            if let Some(d) = self.dns.as_mut().filter(|d| d.stub.owns(request)) {
                let outcome = match answer {
                    Answer::Resolved { hit, expires, .. } => Outcome::Found {
                        hit,
                        lsi: self.node.edge.pool.lsi_for(&hit).ok(),
                        ttl: u32::try_from(expires.saturating_sub(epoch_ms() / 1000))
                            .unwrap_or(u32::MAX),
                    },
                    Answer::NoSuchName { .. } => Outcome::NoSuchName,
                    _ => Outcome::Failed,
                };
                d.resolved(request, outcome);
                continue;
            }
            let (request, json) = match answer {
                Answer::Stored {
                    request,
                    generation,
                    replicas,
                } => {
                    let replicas: Vec<String> = replicas.iter().map(ToString::to_string).collect();
                    (
                        request,
                        serde_json::json!({"stored": true, "generation": generation, "replicas": replicas}),
                    )
                }
                Answer::Fetched {
                    request,
                    owner,
                    values,
                    locators,
                    responder,
                    hops,
                } => (
                    request,
                    serde_json::json!({
                        "owner": owner.to_string(),
                        "values": values,
                        "locators": locators.map(|r| serde_json::json!({
                            "sequence": r.sequence,
                            "locators": r.locators.iter().map(describe_locator).collect::<Vec<_>>(),
                        })),
                        "responder": responder.to_string(),
                        "hops": hops,
                    }),
                ),
                Answer::Resolved {
                    request,
                    name,
                    hit,
                    expires,
                } => {
                    let lsi = self.node.edge.pool.lsi_for(&hit).ok();
                    let mut json = serde_json::json!({
                        "name": name,
                        "hit": hit.to_string(),
                        "lsi": lsi.map(|a| a.to_string()),
                    });
                    if expires != u64::MAX {
                        json["expires"] = expires.into();
                    }
                    (request, json)
                }
                Answer::Named {
                    request,
                    name,
                    held,
                } => (request, serde_json::json!({ "name": name, "held": held })),
                Answer::Failed { request, error } | Answer::NoSuchName { request, error } => {
                    (request, serde_json::json!({ "error": error }))
                }
            };
            if let Some(stream) = self.waiting.remove(&request) {
                reply(stream, &json.to_string());
            }
        }
        while let Some(c) = o.poll_capture() {
            let Some(f) = self.overlay_pcap.as_mut() else {
                break;
            };
            let record = crate::pcap::record(c.at, &c.packet);
            if f.write_all(&record).and_then(|()| f.flush()).is_err() {
                tracing::warn!("writing the overlay capture failed; capture stopped");
                self.overlay_pcap = None;
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
            let request = control::read_request(&std).ok().flatten();
            self.answer_control(std, request);
        }
    }

    /// Answers one control request: at once, or (what the overlay must answer) once the
    /// answer comes, through `ask`.
    fn answer_control(&mut self, std: UnixStream, request: Option<Request>) {
        let answer = match request {
            Some(Request::Status) => {
                serde_json::to_string_pretty(&self.status()).unwrap_or_default()
            }
            Some(Request::Down) => {
                self.begin_leaving(Instant::now());
                "{\"down\": true}".to_string()
            }
            Some(Request::OverlayStatus) => match &self.node.overlay {
                Some(o) => {
                    serde_json::to_string_pretty(&o.status(Instant::now())).unwrap_or_default()
                }
                None => NO_OVERLAY.to_string(),
            },
            Some(Request::NameList) => match &self.node.overlay {
                Some(o) => {
                    serde_json::to_string_pretty(&o.names(Instant::now())).unwrap_or_default()
                }
                None => NO_OVERLAY.to_string(),
            },
            Some(Request::OverlayStore(value)) => {
                return self.ask(std, |n, now, r| {
                    n.overlay_store(now, epoch_ms(), value.as_bytes(), r)
                })
            }
            Some(Request::OverlayFetch(owner)) => {
                return self.ask(std, |n, now, r| n.overlay_fetch(now, owner, r))
            }
            Some(Request::Resolve(name)) => {
                return self.ask(std, |n, now, r| n.resolve(now, &name, r))
            }
            Some(Request::NameClaim { label, grant }) => match crate::names::parse_grant(&grant) {
                Ok(grant) => return self.ask(std, |n, now, r| n.claim_name(now, &label, grant, r)),
                Err(e) => serde_json::json!({ "error": e }).to_string(),
            },
            Some(Request::NameRelease) => return self.ask(std, |n, now, r| n.release_name(now, r)),
            None => "{\"error\": \"unknown request\"}".to_string(),
        };
        reply(std, &answer);
    }

    /// A socket of the DNS stub is readable: what it asks the overlay goes to the node.
    fn dns_readable(&mut self, index: usize) {
        let Some(d) = self.dns.as_mut() else { return };
        let now = Instant::now();
        let next = &mut self.next_request;
        let wanted = d.readable(now, index, &mut || {
            *next += 1;
            *next
        });
        for (request, name) in wanted {
            if !self.node.resolve(now, &name, request) {
                if let Some(d) = self.dns.as_mut() {
                    d.resolved(request, Outcome::Failed);
                }
            }
        }
    }

    fn next_request(&mut self) -> RequestId {
        self.next_request += 1;
        self.next_request
    }

    /// Passes a request to the overlay under a fresh request number; `stream` waits for
    /// its answer.
    fn ask(
        &mut self,
        stream: UnixStream,
        asked: impl FnOnce(&mut Node, Instant, RequestId) -> bool,
    ) {
        if self.waiting.len() >= MAX_WAITING {
            return reply(stream, "{\"error\": \"too many requests waiting\"}");
        }
        let request = self.next_request();
        if !asked(&mut self.node, Instant::now(), request) {
            return reply(stream, NO_OVERLAY);
        }
        self.waiting.insert(request, stream);
    }

    fn shutdown(&mut self) {
        let _ = std::fs::remove_file(&self.control_path);
        tracing::info!(tun = %self.interface, "hipbone is down");
    }
}

/// Answers a control client; one that does not read cannot hold up the loop.
fn reply(mut stream: UnixStream, answer: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let _ = stream.write_all(answer.as_bytes());
}
