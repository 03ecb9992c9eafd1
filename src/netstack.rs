//! The node's own TCP connections between HITs: the overlay's links (RFC 6940 §6.6, TCP
//! on port 6084, our R8) run in a userspace IP stack (smoltcp) whose packets travel in the
//! HIP associations like any inner packet, but never touch the kernel's TCP or the TUN
//! device. So the overlay works the same as root and without it, and its connections
//! are tied to HITs, not to the addresses that mobility changes underneath.
//!
//! The daemon hands the stack every inner TCP packet that [`is_ours`] (by port alone:
//! connections to our port 6084, and answers to the ports in [`CLIENT_PORTS`] we connect
//! from, which lie outside the kernel's ephemeral range), and seals what
//! [`Netstack::poll_transmit`] returns for the peer it names. No I/O here: time is passed
//! in, packets go in and out through queues.
//!
//! On each link, every RELOAD message is a data frame with the link's next sequence number
//! (RFC 6940 §6.6.2) and every data frame received is acknowledged with an ack frame. TCP
//! already delivers reliably, so acks are only informative here; unacknowledged frames
//! are not resent.

use hip::Hit;
use overlay::wire::FramedMessage;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use std::collections::{HashMap, VecDeque};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

/// RELOAD's port (RFC 6940 §14.2), where every node listens for overlay links.
pub const OVERLAY_PORT: u16 = 6084;
/// The local ports our links are opened from. They lie outside Linux's ephemeral range
/// (32768–60999), so an inner packet belongs to the stack or to the kernel by its ports.
pub const CLIENT_PORTS: RangeInclusive<u16> = 6085..=6339;
const TCP_BUFFER: usize = 64 * 1024;
/// Sockets kept listening, so that several peers can open links at the same moment.
const LISTENERS: usize = 4;
/// Messages held per link while it is being opened or its send buffer is full.
const PENDING: usize = 64;
/// Packets waiting in either direction between the stack and the daemon.
const QUEUE: usize = 1024;
/// A frame bigger than this (a RELOAD message is at most 32 KiB, docs/OVERLAY.md) ends the
/// link.
const MAX_FRAME: usize = 64 * 1024;
/// Links kept open at most (one per peer).
pub const MAX_LINKS: usize = 255;
/// Links other nodes opened to us, at most: the rest stay free for the links our own
/// overlay node asks for (its neighbours and fingers need about 100), so that hosts that
/// open links to us cannot cut us off from the ring. The node lets go of links it does
/// not route through after 15 s as well.
pub const MAX_INCOMING: usize = MAX_LINKS - 128;
/// Framed bytes queued on one link at most (our messages and our acks): a peer that
/// stops reading is cut off rather than filling our memory.
const MAX_OUTBOUND: usize = 512 * 1024;

/// What happened to a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    Up(Hit),
    Down(Hit),
}

/// Why a message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Too many messages wait on this link already.
    Backlog,
    /// No port left to open another link from.
    NoPort,
    /// Larger than a frame may be.
    TooLarge,
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SendError::Backlog => "too many messages wait on the link",
            SendError::NoPort => "no local port left for another overlay link",
            SendError::TooLarge => "message too large for a frame",
        })
    }
}

impl std::error::Error for SendError {}

/// True if an inner packet of protocol `next_header` with transport payload `segment`
/// belongs to the node's stack rather than to the kernel.
pub fn is_ours(next_header: u8, segment: &[u8]) -> bool {
    if next_header != 6 || segment.len() < 4 {
        return false;
    }
    let src = u16::from_be_bytes([segment[0], segment[1]]);
    let dst = u16::from_be_bytes([segment[2], segment[3]]);
    dst == OVERLAY_PORT || (src == OVERLAY_PORT && CLIENT_PORTS.contains(&dst))
}

/// The IPv6 packet that carries the TCP `segment` from `src` to `dst` (BEET rebuilds
/// it from the HITs in the same way). `segment` must fit a 16-bit payload length.
pub fn ipv6_tcp(src: Hit, dst: Hit, segment: &[u8]) -> Vec<u8> {
    let mut packet = vec![0u8; hip::esp::IPV6_HEADER_LEN];
    hip::esp::write_ipv6_header(&mut packet, src.0, dst.0, 6, segment.len(), 64);
    packet.extend_from_slice(segment);
    packet
}

/// The stack's device: two bounded queues of IPv6 packets of at most `mtu` bytes.
#[derive(Debug, Default)]
struct Queues {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

impl Device for Queues {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(RxToken, TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((RxToken(packet), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<TxToken<'_>> {
        (self.tx.len() < QUEUE).then_some(TxToken(&mut self.tx))
    }
}

struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0u8; len];
        let r = f(&mut packet);
        self.0.push_back(packet);
        r
    }
}

struct Link {
    handle: SocketHandle,
    /// We opened it (from one of `CLIENT_PORTS`).
    outgoing: bool,
    up: bool,
    /// Bytes received that do not make a whole frame yet.
    inbound: Vec<u8>,
    /// Messages not framed yet: they wait here until the socket can take them, so that
    /// a link replaced before it carried them can hand them to its successor.
    queue: VecDeque<Vec<u8>>,
    /// Framed bytes (data and acks) waiting for room in the socket's send buffer.
    outbound: VecDeque<u8>,
    next_sequence: u32,
}

/// Counters for `hipbone overlay status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub messages_in: u64,
    pub messages_out: u64,
    pub links_opened: u64,
    pub links_closed: u64,
    /// Links other nodes opened that were refused: no slot left for them.
    pub links_refused: u64,
    /// Inner packets dropped because a queue was full.
    pub dropped: u64,
}

/// The userspace stack and its links, one per peer.
pub struct Netstack {
    hit: Hit,
    start: Instant,
    iface: Interface,
    device: Queues,
    sockets: SocketSet<'static>,
    listeners: Vec<SocketHandle>,
    links: HashMap<Hit, Link>,
    /// Sockets aborted since the last poll: kept until the stack sent their reset, so
    /// that the peer's end of the link goes down too.
    discarded: Vec<SocketHandle>,
    messages: VecDeque<(Hit, Vec<u8>)>,
    events: VecDeque<LinkEvent>,
    next_port: u16,
    counters: Counters,
}

impl core::fmt::Debug for Netstack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Netstack")
            .field("hit", &self.hit)
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

fn ip(hit: Hit) -> IpAddress {
    IpAddress::Ipv6(hit.to_ipv6())
}

impl Netstack {
    /// A stack for the host `hit` whose inner packets (IPv6 header included) are at most
    /// `mtu` bytes — the TUN device's MTU, so that the ESP datagrams fit where the
    /// kernel's own traffic fits; `seed` feeds TCP's initial sequence numbers.
    pub fn new(hit: Hit, seed: u64, mtu: usize, now: Instant) -> Netstack {
        let mut device = Queues {
            mtu: mtu.max(1280),
            ..Queues::default()
        };
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
        // All HITs share the /28 ORCHID prefix: every peer is on the link.
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(ip(hit), 28));
        });
        let mut stack = Netstack {
            hit,
            start: now,
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            listeners: Vec::new(),
            links: HashMap::new(),
            discarded: Vec::new(),
            messages: VecDeque::new(),
            events: VecDeque::new(),
            next_port: *CLIENT_PORTS.start(),
            counters: Counters::default(),
        };
        stack.listen();
        stack
    }

    fn socket() -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
        );
        s.set_nagle_enabled(false);
        // A peer that vanished without a FIN is noticed by the overlay's own pings and
        // by HIP; this only bounds how long a dead link holds its buffers.
        s.set_keep_alive(Some(smoltcp::time::Duration::from_secs(30)));
        s.set_timeout(Some(smoltcp::time::Duration::from_secs(120)));
        s
    }

    fn listen(&mut self) {
        while self.listeners.len() < LISTENERS {
            let mut s = Self::socket();
            if s.listen(OVERLAY_PORT).is_err() {
                return;
            }
            self.listeners.push(self.sockets.add(s));
        }
    }

    fn at(&self, now: Instant) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(
            now.saturating_duration_since(self.start).as_micros() as i64
        )
    }

    /// An inner TCP packet from `peer` (its transport payload; see [`is_ours`]).
    pub fn receive(&mut self, peer: Hit, segment: &[u8]) {
        if self.device.rx.len() >= QUEUE || segment.len() > u16::MAX as usize {
            self.counters.dropped += 1;
            return;
        }
        self.device.rx.push_back(ipv6_tcp(peer, self.hit, segment));
    }

    /// The next packet for the daemon to seal: the peer and the TCP segment (the inner
    /// packet without its IPv6 header, as BEET carries it).
    pub fn poll_transmit(&mut self) -> Option<(Hit, Vec<u8>)> {
        loop {
            let packet = self.device.tx.pop_front()?;
            // Only IPv6 TCP from our HIT to another ORCHID leaves; anything else the
            // stack might emit has nowhere to go.
            if packet.len() < 40 || packet[0] >> 4 != 6 || packet[6] != 6 {
                continue;
            }
            let mut dst = [0u8; 16];
            dst.copy_from_slice(&packet[24..40]);
            let peer = Hit(dst);
            if !peer.is_orchid() {
                continue;
            }
            return Some((peer, packet[40..].to_vec()));
        }
    }

    /// Queues `message` (one RELOAD message) for `peer`, opening a link if there is none.
    pub fn send(&mut self, now: Instant, peer: Hit, message: &[u8]) -> Result<(), SendError> {
        if message.len() > MAX_FRAME {
            return Err(SendError::TooLarge);
        }
        if !self.links.contains_key(&peer) {
            self.connect(now, peer)?;
        }
        let Some(link) = self.links.get_mut(&peer) else {
            return Err(SendError::NoPort);
        };
        if link.queue.len() >= PENDING || link.outbound.len() + message.len() > MAX_OUTBOUND {
            return Err(SendError::Backlog);
        }
        link.queue.push_back(message.to_vec());
        self.counters.messages_out += 1;
        self.flush(peer);
        Ok(())
    }

    /// Opens a link to `peer` (nothing if one exists).
    pub fn connect(&mut self, now: Instant, peer: Hit) -> Result<(), SendError> {
        if self.links.contains_key(&peer) {
            return Ok(());
        }
        if self.links.len() >= MAX_LINKS {
            return Err(SendError::NoPort);
        }
        let port = self.free_port().ok_or(SendError::NoPort)?;
        let mut s = Self::socket();
        let cx = self.iface.context();
        if s.connect(cx, (ip(peer), OVERLAY_PORT), port).is_err() {
            return Err(SendError::NoPort);
        }
        let handle = self.sockets.add(s);
        self.links.insert(peer, Link::new(handle, true));
        self.poll(now);
        Ok(())
    }

    fn free_port(&mut self) -> Option<u16> {
        let used: Vec<u16> = self
            .links
            .values()
            .filter(|l| l.outgoing)
            .filter_map(|l| {
                self.sockets
                    .get::<tcp::Socket>(l.handle)
                    .local_endpoint()
                    .map(|e| e.port)
            })
            .collect();
        let span = CLIENT_PORTS.end() - CLIENT_PORTS.start() + 1;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port == *CLIENT_PORTS.end() {
                *CLIENT_PORTS.start()
            } else {
                port + 1
            };
            if !used.contains(&port) {
                return Some(port);
            }
        }
        None
    }

    /// Closes the link to `peer`, if any.
    pub fn close(&mut self, peer: Hit) {
        if let Some(link) = self.links.remove(&peer) {
            self.discard(link.handle);
            self.counters.links_closed += 1;
            // Also for a link that never came up: the caller learns the peer is out of reach.
            self.events.push_back(LinkEvent::Down(peer));
        }
    }

    /// Runs the stack: takes packets in, moves bytes between sockets and links, lets
    /// packets out (to [`poll_transmit`](Self::poll_transmit)).
    pub fn poll(&mut self, now: Instant) {
        let at = self.at(now);
        self.iface.poll(at, &mut self.device, &mut self.sockets);
        self.accept();
        let peers: Vec<Hit> = self.links.keys().copied().collect();
        for peer in peers {
            self.service(peer);
        }
        // What the links just wrote goes out now rather than at the next call.
        self.iface.poll(at, &mut self.device, &mut self.sockets);
        for handle in self.discarded.drain(..) {
            self.sockets.remove(handle);
        }
    }

    /// Aborts a socket: the next poll sends its reset (a socket removed at once would
    /// leave the peer with a link it takes for open, that nothing answers on).
    fn discard(&mut self, handle: SocketHandle) {
        self.sockets.get_mut::<tcp::Socket>(handle).abort();
        self.discarded.push(handle);
    }

    fn incoming(&self) -> usize {
        self.links.values().filter(|l| !l.outgoing).count()
    }

    /// Listeners that took a connection become links; fresh ones replace them.
    fn accept(&mut self) {
        let mut taken = Vec::new();
        for (i, &h) in self.listeners.iter().enumerate() {
            if self.sockets.get::<tcp::Socket>(h).is_active() {
                taken.push(i);
            }
        }
        for i in taken.into_iter().rev() {
            let handle = self.listeners.swap_remove(i);
            let remote = self.sockets.get::<tcp::Socket>(handle).remote_endpoint();
            let Some(IpEndpoint {
                addr: IpAddress::Ipv6(addr),
                ..
            }) = remote
            else {
                self.sockets.remove(handle);
                continue;
            };
            let peer = Hit::from_ipv6(addr);
            match self.links.get(&peer) {
                // Both ends opened a link at once: the one opened by the smaller HIT stays.
                Some(existing) if existing.outgoing && self.hit < peer => {
                    self.discard(handle);
                    continue;
                }
                Some(_) => {
                    // Ours goes; what it had not framed yet goes on the one that stays.
                    if let Some(old) = self.links.remove(&peer) {
                        self.discard(old.handle);
                        if old.up {
                            self.events.push_back(LinkEvent::Down(peer));
                        }
                        let mut link = Link::new(handle, false);
                        link.queue = old.queue;
                        self.links.insert(peer, link);
                        continue;
                    }
                }
                None if self.links.len() >= MAX_LINKS || self.incoming() >= MAX_INCOMING => {
                    self.counters.links_refused += 1;
                    self.discard(handle);
                    continue;
                }
                None => {}
            }
            self.links.insert(peer, Link::new(handle, false));
        }
        self.listen();
    }

    /// Moves one link's bytes: state changes, frames in, queued frames out.
    fn service(&mut self, peer: Hit) {
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(link.handle);
        // A peer that reset its opening puts an accepted socket back to listening, where
        // the next peer's connection would land on this peer's link.
        let other = socket.state() == tcp::State::Listen
            || socket.remote_endpoint().is_some_and(|e| e.addr != ip(peer));
        if other {
            tracing::debug!(peer = %peer, "overlay link reset while opening");
            self.close(peer);
            return;
        }
        let established = socket.may_send() && socket.may_recv();
        if established && !link.up {
            link.up = true;
            self.counters.links_opened += 1;
            self.events.push_back(LinkEvent::Up(peer));
        }
        if !socket.is_open() || (link.up && !socket.may_recv()) {
            tracing::debug!(peer = %peer, state = %socket.state(), "overlay link closed");
            self.close(peer);
            return;
        }
        let mut acks = Vec::new();
        let mut broken = false;
        while socket.can_recv() {
            let mut buf = [0u8; 4096];
            let Ok(n) = socket.recv_slice(&mut buf) else {
                break;
            };
            if n == 0 {
                break;
            }
            link.inbound.extend_from_slice(&buf[..n]);
            loop {
                let len = match FramedMessage::frame_len(&link.inbound) {
                    Ok(Some(len)) if len <= MAX_FRAME => len,
                    Ok(Some(_)) | Err(_) => {
                        broken = true;
                        break;
                    }
                    Ok(None) => break,
                };
                if link.inbound.len() < len {
                    break;
                }
                let frame: Vec<u8> = link.inbound.drain(..len).collect();
                match FramedMessage::parse(&frame) {
                    Ok(FramedMessage::Data { sequence, message }) => {
                        acks.push(sequence);
                        self.counters.messages_in += 1;
                        if self.messages.len() < QUEUE {
                            self.messages.push_back((peer, message));
                        } else {
                            self.counters.dropped += 1;
                        }
                    }
                    Ok(FramedMessage::Ack { .. }) => {}
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            if broken {
                break;
            }
        }
        if broken {
            tracing::debug!(peer = %peer, "malformed frame, closing the overlay link");
            self.close(peer);
            return;
        }
        for sequence in acks {
            let ack = FramedMessage::Ack {
                ack_sequence: sequence,
                received: 0,
            };
            link.outbound.extend(ack.to_bytes());
        }
        if link.outbound.len() > MAX_OUTBOUND {
            tracing::debug!(peer = %peer, "overlay peer does not read, closing the link");
            self.close(peer);
            return;
        }
        self.flush(peer);
    }

    /// Writes as much of a link's queued bytes as its socket takes.
    fn flush(&mut self, peer: Hit) {
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(link.handle);
        if !socket.may_send() {
            return;
        }
        loop {
            while !link.outbound.is_empty() && socket.can_send() {
                let (front, _) = link.outbound.as_slices();
                match socket.send_slice(front) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        link.outbound.drain(..n);
                    }
                }
            }
            // Frame the next message only once the last one is in the socket: until then
            // it can still move to another link.
            if !link.outbound.is_empty() || !socket.can_send() {
                return;
            }
            let Some(message) = link.queue.pop_front() else {
                return;
            };
            let frame = FramedMessage::Data {
                sequence: link.next_sequence,
                message,
            };
            link.next_sequence = link.next_sequence.wrapping_add(1);
            link.outbound.extend(frame.to_bytes());
        }
    }

    /// The next whole message received, with the peer it came from.
    pub fn poll_message(&mut self) -> Option<(Hit, Vec<u8>)> {
        self.messages.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`poll`](Self::poll) has something to do without new packets.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let at = self.at(now);
        let delay = self.iface.poll_delay(at, &self.sockets)?;
        Some(now + Duration::from_micros(delay.total_micros()))
    }

    /// Peers with a link that is up.
    pub fn links(&self) -> impl Iterator<Item = Hit> + '_ {
        self.links
            .iter()
            .filter(|(_, l)| l.up)
            .map(|(peer, _)| *peer)
    }

    /// Every link: its peer, whether it is up, and whether we opened it.
    pub fn link_states(&self) -> impl Iterator<Item = (Hit, bool, bool)> + '_ {
        self.links.iter().map(|(peer, l)| (*peer, l.up, l.outgoing))
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }
}

impl Link {
    fn new(handle: SocketHandle, outgoing: bool) -> Link {
        Link {
            handle,
            outgoing,
            up: false,
            inbound: Vec::new(),
            queue: VecDeque::new(),
            outbound: VecDeque::new(),
            next_sequence: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(n: u8) -> Hit {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[0x20, 0x01, 0x00, 0x25]);
        b[15] = n;
        Hit(b)
    }

    /// Runs two stacks against each other (every packet delivered, none lost) until
    /// nothing moves.
    fn exchange(a: &mut Netstack, b: &mut Netstack, now: &mut Instant) {
        for _ in 0..200 {
            a.poll(*now);
            b.poll(*now);
            let mut moved = false;
            while let Some((to, seg)) = a.poll_transmit() {
                assert_eq!(to, b.hit);
                assert!(is_ours(6, &seg));
                b.receive(a.hit, &seg);
                moved = true;
            }
            while let Some((to, seg)) = b.poll_transmit() {
                assert_eq!(to, a.hit);
                assert!(is_ours(6, &seg));
                a.receive(b.hit, &seg);
                moved = true;
            }
            *now += Duration::from_millis(1);
            if !moved {
                break;
            }
        }
    }

    #[test]
    fn two_stacks_open_a_link_and_carry_framed_messages_both_ways() {
        let mut now = Instant::now();
        let (mut a, mut b) = (
            Netstack::new(hit(1), 1, 1400, now),
            Netstack::new(hit(2), 2, 1400, now),
        );
        a.send(now, hit(2), b"hello over the overlay").unwrap();
        exchange(&mut a, &mut b, &mut now);
        assert_eq!(a.poll_event(), Some(LinkEvent::Up(hit(2))));
        assert_eq!(b.poll_event(), Some(LinkEvent::Up(hit(1))));
        assert_eq!(
            b.poll_message(),
            Some((hit(1), b"hello over the overlay".to_vec()))
        );
        // Large messages and many of them, back the other way on the same link.
        let big = vec![7u8; 5000];
        for _ in 0..40 {
            b.send(now, hit(1), &big).unwrap();
        }
        exchange(&mut a, &mut b, &mut now);
        for _ in 0..40 {
            assert_eq!(a.poll_message(), Some((hit(2), big.clone())));
        }
        assert_eq!(a.poll_message(), None);
        assert_eq!(a.links().collect::<Vec<_>>(), vec![hit(2)]);
    }

    #[test]
    fn links_opened_by_both_ends_at_once_end_up_as_one() {
        let mut now = Instant::now();
        let (mut a, mut b) = (
            Netstack::new(hit(1), 1, 1400, now),
            Netstack::new(hit(2), 2, 1400, now),
        );
        a.send(now, hit(2), b"from a").unwrap();
        b.send(now, hit(1), b"from b").unwrap();
        exchange(&mut a, &mut b, &mut now);
        assert_eq!(a.links().count(), 1);
        assert_eq!(b.links().count(), 1);
        // Neither message was lost with the link that went.
        assert_eq!(a.poll_message(), Some((hit(2), b"from b".to_vec())));
        assert_eq!(b.poll_message(), Some((hit(1), b"from a".to_vec())));
        // The link that stayed carries traffic both ways.
        a.send(now, hit(2), b"again").unwrap();
        exchange(&mut a, &mut b, &mut now);
        let got: Vec<_> = std::iter::from_fn(|| b.poll_message()).collect();
        assert!(got.contains(&(hit(1), b"again".to_vec())), "{got:?}");
    }

    #[test]
    fn links_others_open_leave_room_for_ours() {
        let mut now = Instant::now();
        let mut s = Netstack::new(hit(200), 200, 1400, now);
        let mut refused = 0;
        for n in 0..=MAX_INCOMING as u8 {
            let mut c = Netstack::new(hit(n), u64::from(n), 1400, now);
            c.send(now, hit(200), b"let me in").unwrap();
            exchange(&mut c, &mut s, &mut now);
            if s.poll_message().is_none() {
                refused += 1;
                // Refused with a reset: the opener does not take the link for open.
                assert_eq!(c.links().count(), 0, "a refused link stays down");
            }
        }
        assert_eq!(refused, 1, "only the link past MAX_INCOMING is refused");
        assert_eq!(s.counters.links_refused, 1);
        assert_eq!(s.links().count(), MAX_INCOMING);
        // Our own link still gets a slot.
        let mut ours = Netstack::new(hit(201), 201, 1400, now);
        s.send(now, hit(201), b"ours").unwrap();
        exchange(&mut s, &mut ours, &mut now);
        assert_eq!(ours.poll_message(), Some((hit(200), b"ours".to_vec())));
        assert_eq!(s.links().count(), MAX_INCOMING + 1);
    }

    /// Two stacks with a link up between them (its events taken).
    fn linked() -> (Netstack, Netstack, Instant) {
        let mut now = Instant::now();
        let (mut a, mut b) = (
            Netstack::new(hit(1), 1, 1400, now),
            Netstack::new(hit(2), 2, 1400, now),
        );
        a.send(now, hit(2), b"first").unwrap();
        exchange(&mut a, &mut b, &mut now);
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        (a, b, now)
    }

    #[test]
    fn a_malformed_frame_closes_the_link() {
        let (mut a, mut b, mut now) = linked();
        // Write a frame of unknown type straight into A's side of the link.
        let link = a.links.get_mut(&hit(2)).unwrap();
        link.outbound.extend([0x42, 0, 0, 0, 0]);
        a.flush(hit(2));
        exchange(&mut a, &mut b, &mut now);
        assert_eq!(b.poll_event(), Some(LinkEvent::Down(hit(1))));
        assert_eq!(b.links().count(), 0);
    }

    #[test]
    fn a_link_closed_at_one_end_goes_down_at_the_other() {
        let (mut a, mut b, mut now) = linked();
        a.close(hit(2));
        assert_eq!(a.poll_event(), Some(LinkEvent::Down(hit(2))));
        exchange(&mut a, &mut b, &mut now);
        assert_eq!(b.poll_event(), Some(LinkEvent::Down(hit(1))));
        assert_eq!(b.links().count(), 0);
    }

    /// A peer that gives up while opening a link (its reset reaches us in SYN-RECEIVED)
    /// puts our socket back to listening (RFC 9293 §3.10.7.4); the next peer to connect
    /// must not land on the link booked for the first.
    #[test]
    fn a_link_whose_opener_gave_up_does_not_carry_the_next_peer() {
        let mut now = Instant::now();
        let mut s = Netstack::new(hit(9), 9, 1400, now);
        let mut first = Netstack::new(hit(1), 1, 1400, now);
        first.send(now, hit(9), b"from the first").unwrap();
        first.poll(now);
        while let Some((_, seg)) = first.poll_transmit() {
            s.receive(hit(1), &seg);
        }
        s.poll(now);
        // Our SYN-ACK is lost; the first peer gives up and resets.
        while s.poll_transmit().is_some() {}
        first.close(hit(9));
        first.poll(now);
        while let Some((_, seg)) = first.poll_transmit() {
            s.receive(hit(1), &seg);
        }
        s.poll(now);
        let mut second = Netstack::new(hit(2), 2, 1400, now);
        second.send(now, hit(9), b"from the second").unwrap();
        exchange(&mut second, &mut s, &mut now);
        let got: Vec<_> = std::iter::from_fn(|| s.poll_message()).collect();
        assert_eq!(got, vec![(hit(2), b"from the second".to_vec())]);
    }

    #[test]
    fn only_the_stacks_ports_are_taken_from_the_kernel() {
        let seg = |src: u16, dst: u16| {
            let mut s = vec![0u8; 20];
            s[..2].copy_from_slice(&src.to_be_bytes());
            s[2..4].copy_from_slice(&dst.to_be_bytes());
            s
        };
        assert!(is_ours(6, &seg(40000, OVERLAY_PORT)));
        assert!(is_ours(6, &seg(OVERLAY_PORT, 6085)));
        assert!(is_ours(6, &seg(OVERLAY_PORT, 6339)));
        assert!(!is_ours(6, &seg(OVERLAY_PORT, 40000)));
        assert!(!is_ours(6, &seg(22, 40000)));
        assert!(!is_ours(17, &seg(40000, OVERLAY_PORT)));
        assert!(!is_ours(6, &[0x17]));
    }
}
