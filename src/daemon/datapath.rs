//! The daemon's data path: inner packets from the TUN device sealed into ESP datagrams that
//! leave in UDP_SEGMENT trains, and datagrams received (in UDP_GRO trains) opened and
//! delivered to the TUN device, joined into super-packets where they can be. The node
//! model decides what each packet is (`Node::encapsulate`, `Node::handle_datagram`); this
//! file moves the bytes, on buffers allocated once. Packets too big for their peer's path
//! are fitted to it here ([`super::pmtu`]).

use super::batch::Train;
use super::sockets::{gso_refused, socket_for, source, unmap};
use super::{Daemon, BATCH, RX_FRONT, TCP};
use crate::node::edge::Refused;
use crate::node::Received;
use crate::offload::{self, GsoType, Offer, TcpSegments, VnetHdr, VNET_HDR_LEN};
use crate::udp;
use hip::esp::ESP_HEADER_LEN;
use hip::{Hit, Outbound};
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

impl Daemon {
    /// Reads packets from the TUN device and sends them sealed, up to a batch; true when
    /// the device has nothing more.
    pub(super) fn drain_tun(&mut self) -> bool {
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
        let out = match self.node.edge.outgoing(&mut self.tun_buf, start, end) {
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
        let pseudo = offload::pseudo_header_sum(&self.node.edge.hit.0, &peer.0, TCP);
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
        if n > 0 {
            self.icmp_to_tun(vnet + n);
        }
    }

    /// Writes the ICMP errors the node made (a peer it could not find) to the TUN device.
    pub(super) fn drain_to_stack(&mut self) {
        let vnet = if self.tun.vnet_hdr() { VNET_HDR_LEN } else { 0 };
        while let Some(packet) = self.node.poll_to_stack() {
            let Some(room) = self.icmp_buf.get_mut(vnet..vnet + packet.len()) else {
                continue;
            };
            room.copy_from_slice(&packet);
            self.counters.icmp_unreachable += 1;
            self.icmp_to_tun(vnet + packet.len());
        }
    }

    /// Writes `icmp_buf[..len]` (after the virtio header's room, if the device has one).
    fn icmp_to_tun(&mut self, len: usize) {
        if self.tun.vnet_hdr() {
            VnetHdr::default().emit(&mut self.icmp_buf);
        }
        if let Err(e) = self.tun.send(&self.icmp_buf[..len]) {
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
    /// datagram; the node starts a base exchange if there is no association yet.
    fn seal(&mut self, now: Instant, peer: Hit, next_header: u8, len: usize) {
        let slot = self.tx.slot();
        let payload = slot + ESP_HEADER_LEN..slot + ESP_HEADER_LEN + len;
        match self
            .node
            .encapsulate(now, &peer, next_header, &mut self.tx.buf, payload)
        {
            Outbound::Send {
                local,
                remote,
                datagram,
            } => {
                // The ESP header goes just before the payload (hip::esp buffer layout), so
                // the datagram starts at the slot.
                let len = datagram.len();
                let Some(socket) = socket_for(&self.sockets, local, remote) else {
                    return;
                };
                let from = source(&self.local_ips, local, remote);
                if let Some(t) = self.tx.push(socket, remote, from, len) {
                    self.send_train(t);
                }
            }
            Outbound::NoAssociation => self.counters.no_peer += 1,
            _ => {}
        }
    }

    /// Sends a train of datagrams: with one UDP_SEGMENT `sendmsg` where the socket allows,
    /// else one by one. A kernel without UDP segmentation loses GSO on that socket; a
    /// segment the route cannot take (EINVAL: a path MTU below the datagrams) sends this
    /// train one by one and keeps GSO for the next.
    pub(super) fn send_train(&mut self, t: Train) {
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
                    self.send_failed(t.remote, &e, t.count as u64);
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
            self.send_failed(t.remote, &e, n);
        }
    }

    /// Datagrams to `remote` were refused: the paths note it, and a peer whose path they
    /// read again gets its new size in the node too (the overlay cuts its segments to it).
    pub(super) fn send_failed(&mut self, remote: std::net::SocketAddr, e: &std::io::Error, n: u64) {
        for peer in self.paths.send_failed(Instant::now(), remote, e, n) {
            let max = self.paths.max_payload(&peer);
            self.node.set_max_payload(peer, max);
        }
    }

    /// Receives datagrams on socket `i` and delivers what they carry, up to a batch; true
    /// when the socket has nothing more.
    pub(super) fn drain_udp(&mut self, i: usize) -> bool {
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
            .node
            .handle_datagram(now, local, remote, &mut self.rx_buf[at..at + len]);
        // Delivering writes headers before its datagram, into the tail of the one before:
        // relayed datagrams waiting there leave first.
        if !matches!(verdict, Received::Forward { .. }) {
            self.flush_forwarding();
        }
        match verdict {
            Received::Deliver {
                peer,
                next_header,
                payload,
            } => {
                let payload = at + payload.start..at + payload.end;
                let listeners = &mut self.listeners;
                if let Some(range) = self.node.edge.incoming(
                    &mut self.rx_buf,
                    peer,
                    next_header,
                    payload,
                    &mut |protocol, port| listeners.ipv4_only(protocol, port),
                ) {
                    self.deliver(range);
                }
            }
            Received::Forward { to } => {
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
            Received::Consumed => {}
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
}
