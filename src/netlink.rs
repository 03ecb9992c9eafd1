//! Blocking netlink channels for configuration and look-ups, never the hot path: a request
//! is sent and the kernel's replies collected until its acknowledgement, or until the end
//! of a dump (`NLM_F_DUMP`), or the errno the kernel answered instead. [`Rtnl`]
//! (rtnetlink): `crate::tun` configures its device through it (adding its own requests in
//! an `impl Rtnl` there) and `crate::netmon` dumps the host's addresses. [`SockDiag`]
//! (sock_diag): `crate::daemon::listeners` asks which ports have a listening socket.
//!
//! A netlink socket belongs to the network namespace of the thread that opened it, and keeps
//! to it whichever thread uses it later.

use std::io;

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::protocols::{NETLINK_ROUTE, NETLINK_SOCK_DIAG};
use netlink_sys::{Socket, SocketAddr};

/// A connected netlink socket of one protocol, speaking messages `M`, and the sequence
/// number of its last request.
#[derive(Debug)]
pub(crate) struct Netlink<M> {
    socket: Socket,
    seq: u32,
    messages: core::marker::PhantomData<M>,
}

/// rtnetlink.
pub(crate) type Rtnl = Netlink<RouteNetlinkMessage>;
/// sock_diag.
pub(crate) type SockDiag = Netlink<SockDiagMessage>;

impl Rtnl {
    pub(crate) fn open() -> io::Result<Rtnl> {
        Netlink::open_protocol(NETLINK_ROUTE)
    }
}

impl SockDiag {
    pub(crate) fn open() -> io::Result<SockDiag> {
        Netlink::open_protocol(NETLINK_SOCK_DIAG)
    }
}

impl<M> Netlink<M>
where
    M: NetlinkSerializable + NetlinkDeserializable + core::fmt::Debug,
{
    fn open_protocol(protocol: isize) -> io::Result<Netlink<M>> {
        let mut socket = Socket::new(protocol)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            socket,
            seq: 0,
            messages: core::marker::PhantomData,
        })
    }

    /// Sends one request with NLM_F_ACK and `flags`, and returns the replies that precede the
    /// kernel's acknowledgement, or the end of a dump, or the errno that the kernel answered
    /// instead. (The kernel sends no acknowledgement for a dump, whose NLMSG_DONE ends it.)
    pub(crate) fn request(&mut self, message: M, flags: u16) -> io::Result<Vec<M>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        let mut replies = Vec::new();
        loop {
            let (datagram, _) = self.socket.recv_from_full()?;
            let mut rest = &datagram[..];
            while !rest.is_empty() {
                let reply = NetlinkMessage::<M>::deserialize(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                // Messages in one datagram are 4-byte aligned.
                let len = (reply.header.length as usize + 3) & !3;
                rest = rest.get(len..).unwrap_or_default();
                if reply.header.sequence_number != self.seq {
                    continue; // not ours (nothing else is outstanding, but be strict)
                }
                match reply.payload {
                    NetlinkPayload::Error(e) if e.code.is_none() => return Ok(replies),
                    NetlinkPayload::Error(e) => return Err(e.to_io()),
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }
}
