//! The UDP system calls of the data path that std and socket2 do not offer: sending a train
//! of datagrams with one `sendmsg` (UDP_SEGMENT, "UDP GSO": the kernel cuts the buffer into
//! datagrams of `segment` bytes, the last one shorter or equal, each an ordinary datagram on
//! the wire) and receiving a train the kernel joined (UDP_GRO: one `recvmsg` returns
//! consecutive datagrams of one sender laid end to end, with their size in a control
//! message).
//!
//! The same calls carry the packet's own addresses (IP_PKTINFO / IPV6_PKTINFO): which local
//! address a datagram arrived at, and which one a datagram is sent from. The sockets are
//! bound to wildcard addresses, so without them a multihomed host could neither tell which
//! of its locators a peer used nor choose the one a probe or an answer leaves from.
//!
//! These are the only `unsafe` blocks of the node's sockets; each says why it is sound.
//! Both options exist since Linux 4.18 / 5.0; [`supports_gso`] and [`enable_gro`] tell the
//! caller whether to use them, and everything works without them (one datagram per call).

use socket2::{SockAddr, SockAddrStorage};
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

/// Most datagrams one UDP_SEGMENT send may carry (UDP_MAX_SEGMENTS in older kernels; newer
/// ones allow 128).
pub const MAX_SEGMENTS: usize = 64;

/// Most bytes one UDP_SEGMENT send may carry: the payload of one 64 KiB IPv4 datagram
/// (65535 − 20 − 8), which is also within IPv6's limit.
pub const MAX_TRAIN_BYTES: usize = 65_507;

/// Control-message room for a UDP_SEGMENT or UDP_GRO value (CMSG_SPACE(4) is 24 on 64-bit
/// Linux) plus a packet-info structure (CMSG_SPACE(20) is 40), as u64 words so that it is
/// aligned as `cmsghdr` needs.
type Control = [u64; 12];

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a valid c_int that lives across the call, and its length
    // is passed with it; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the kernel accepts UDP_SEGMENT on `socket` (it answers the getsockopt only if
/// it knows the option).
pub fn supports_gso(socket: &impl AsRawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given, for the call only.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0
}

/// Turns on UDP_GRO: from then on [`recv`] may return several datagrams at once. Needs
/// buffers of 64 KiB.
pub fn enable_gro(socket: &impl AsRawFd) -> io::Result<()> {
    setsockopt_int(socket.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Asks the kernel to report the destination address of every datagram received on
/// `socket` (see [`Received::local`]).
pub fn enable_pktinfo(socket: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        setsockopt_int(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVPKTINFO,
            1,
        )
    } else {
        setsockopt_int(socket.as_raw_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// Sends `buf` to `to` as datagrams of `segment` bytes (the last one may be shorter) with
/// one system call, or as a single datagram when `segment` is `None` or not less than
/// `buf.len()`. `buf` must hold at most [`MAX_SEGMENTS`] segments and [`MAX_TRAIN_BYTES`].
/// With `from`, the datagrams leave from that local address (of `to`'s family) instead of
/// the one the kernel would pick; the route is still the kernel's.
pub fn send(
    socket: &impl AsRawFd,
    buf: &[u8],
    segment: Option<u16>,
    to: SocketAddr,
    from: Option<IpAddr>,
) -> io::Result<usize> {
    let addr = SockAddr::from(to);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut control: Control = [0; 12];
    // SAFETY: msghdr is a plain C struct; all zeroes (null pointers, zero lengths) is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = addr.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let segment = segment.filter(|&s| usize::from(s) < buf.len());
    let pktinfo = from.and_then(|ip| PktInfo::for_source(ip, to));
    let mut space = 0;
    if segment.is_some() {
        // SAFETY: CMSG_SPACE only computes a size.
        space += unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
    }
    if let Some(info) = &pktinfo {
        // SAFETY: as above.
        space += unsafe { libc::CMSG_SPACE(info.len() as u32) } as usize;
    }
    if space > 0 {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `control`, which is aligned for cmsghdr and at least
        // `space` bytes long (both messages together need 64 of its 96), so CMSG_FIRSTHDR
        // and CMSG_NXTHDR return pointers into it (not null) with room for each header and
        // its CMSG_LEN data; the data is written unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            if let Some(segment) = segment {
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            if let Some(info) = &pktinfo {
                (*cmsg).cmsg_len = libc::CMSG_LEN(info.len() as u32) as _;
                match info {
                    PktInfo::V4(i) => {
                        (*cmsg).cmsg_level = libc::IPPROTO_IP;
                        (*cmsg).cmsg_type = libc::IP_PKTINFO;
                        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), *i);
                    }
                    PktInfo::V6(i) => {
                        (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                        (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), *i);
                    }
                }
            }
        }
    }
    // SAFETY: every pointer in msg (address, iovec, control) points at a live value of the
    // length given next to it, for the duration of the call; the kernel only reads them.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The packet-info control message that picks a datagram's source address.
enum PktInfo {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

impl PktInfo {
    /// The message sending from `ip` to `to`, if both are of one family and `ip` names an
    /// address (the unspecified address leaves the choice to the kernel).
    fn for_source(ip: IpAddr, to: SocketAddr) -> Option<PktInfo> {
        match (ip, to) {
            (IpAddr::V4(a), SocketAddr::V4(_)) if !a.is_unspecified() => {
                Some(PktInfo::V4(libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                }))
            }
            (IpAddr::V6(a), SocketAddr::V6(_)) if !a.is_unspecified() => {
                Some(PktInfo::V6(libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: a.octets(),
                    },
                    ipi6_ifindex: 0,
                }))
            }
            _ => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            PktInfo::V4(_) => size_of::<libc::in_pktinfo>(),
            PktInfo::V6(_) => size_of::<libc::in6_pktinfo>(),
        }
    }
}

/// What [`recv`] got: `len` bytes from `from`, in datagrams of `segment` bytes (the last
/// may be shorter); `segment == len` when the kernel joined nothing. `local` is the address
/// they were sent to, when [`enable_pktinfo`] asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub segment: usize,
    pub from: SocketAddr,
    pub local: Option<IpAddr>,
}

/// Receives into `buf` one datagram, or with [`enable_gro`] a train of them.
pub fn recv(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut storage = SockAddrStorage::zeroed();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control: Control = [0; 12];
    // SAFETY: msghdr is a plain C struct; all zeroes is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut storage as *mut SockAddrStorage).cast();
    msg.msg_namelen = storage.size_of();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<Control>() as _;
    // SAFETY: every pointer in msg points at a live, writable value of the length given
    // next to it (the address storage, `buf`, `control`) for the duration of the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = n as usize;
    let mut segment = len;
    let mut local = None;
    // SAFETY: recvmsg set msg_controllen to the bytes of control messages it wrote into
    // `control`; CMSG_FIRSTHDR/CMSG_NXTHDR walk only within that length and return null at
    // its end. A UDP_GRO message carries one int, IP_PKTINFO an in_pktinfo and IPV6_PKTINFO
    // an in6_pktinfo (each read unaligned).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_UDP, libc::UDP_GRO) => {
                    let size = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                    if size > 0 {
                        segment = (size as usize).min(len);
                    }
                }
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                    let octets = info.ipi_addr.s_addr.to_ne_bytes();
                    local = Some(IpAddr::from(octets));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    local = Some(IpAddr::from(info.ipi6_addr.s6_addr));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    // SAFETY: the kernel wrote a socket address of msg_namelen bytes into `storage`, a
    // sockaddr_storage, as SockAddr::new requires.
    let addr = unsafe { SockAddr::new(storage, msg.msg_namelen) };
    let from = addr
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP source address"))?;
    Ok(Received {
        len,
        segment,
        from,
        local,
    })
}

/// Sets the receive and send buffers of `socket` to `bytes` past `net.core.rmem_max` and
/// `wmem_max` (SO_RCVBUFFORCE, SO_SNDBUFFORCE; needs CAP_NET_ADMIN).
pub fn force_buffers(socket: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let fd = socket.as_raw_fd();
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes)?;
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, bytes)
}

/// This host never fragments what `socket` sends (IP_PMTUDISC_DO / IPV6_PMTUDISC_DO): a
/// datagram larger than the path MTU the kernel knows — the route's, or one an ICMP "too
/// big" taught it — fails with EMSGSIZE, so that the sender learns the path and fits its
/// packets to it (fragments of ESP are fragile: one lost fragment loses the packet).
pub fn forbid_fragments(socket: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        setsockopt_int(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    } else {
        setsockopt_int(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    }
}

/// The path MTU the kernel knows from `local` (or its own choice of source) to `remote`:
/// the route's MTU, lowered by any ICMP "too big" heard for that destination. Read as
/// IP_MTU / IPV6_MTU of a throwaway socket connected there (nothing is sent).
pub fn path_mtu(local: Option<IpAddr>, remote: SocketAddr) -> io::Result<usize> {
    use socket2::{Domain, Protocol, Socket, Type};
    let ipv6 = remote.is_ipv6();
    let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    forbid_fragments(&s, ipv6)?;
    if let Some(ip) = local.filter(|ip| ip.is_ipv6() == ipv6) {
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    s.connect(&remote.into())?;
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU)
    };
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given, for the call only.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    usize::try_from(value).map_err(|_| io::Error::other("negative path MTU"))
}
