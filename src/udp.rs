//! The UDP system calls of the data path that std and socket2 do not offer: sending a train
//! of datagrams with one `sendmsg` (UDP_SEGMENT, "UDP GSO": the kernel cuts the buffer into
//! datagrams of `segment` bytes, the last one shorter or equal, each an ordinary datagram on
//! the wire) and receiving a train the kernel joined (UDP_GRO: one `recvmsg` returns
//! consecutive datagrams of one sender laid end to end, with their size in a control
//! message).
//!
//! These are the only `unsafe` blocks of the node's sockets; each says why it is sound.
//! Both options exist since Linux 4.18 / 5.0; [`supports_gso`] and [`enable_gro`] tell the
//! caller whether to use them, and everything works without them (one datagram per call).

use socket2::{SockAddr, SockAddrStorage};
use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

/// Most datagrams one UDP_SEGMENT send may carry (UDP_MAX_SEGMENTS in older kernels; newer
/// ones allow 128).
pub const MAX_SEGMENTS: usize = 64;

/// Most bytes one UDP_SEGMENT send may carry: the payload of one 64 KiB IPv4 datagram
/// (65535 − 20 − 8), which is also within IPv6's limit.
pub const MAX_TRAIN_BYTES: usize = 65_507;

/// Control-message room for one `int` or `u16` (CMSG_SPACE(4) is 24 on 64-bit Linux),
/// as u64 words so that it is aligned as `cmsghdr` needs.
type Control = [u64; 8];

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

/// Sends `buf` to `to` as datagrams of `segment` bytes (the last one may be shorter) with
/// one system call, or as a single datagram when `segment` is `None` or not less than
/// `buf.len()`. `buf` must hold at most [`MAX_SEGMENTS`] segments and [`MAX_TRAIN_BYTES`].
pub fn send(
    socket: &impl AsRawFd,
    buf: &[u8],
    segment: Option<u16>,
    to: SocketAddr,
) -> io::Result<usize> {
    let addr = SockAddr::from(to);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut control: Control = [0; 8];
    // SAFETY: msghdr is a plain C struct; all zeroes (null pointers, zero lengths) is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = addr.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(segment) = segment.filter(|&s| usize::from(s) < buf.len()) {
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
        // SAFETY: msg_control points at `control`, which is aligned for cmsghdr and larger
        // than msg_controllen, so CMSG_FIRSTHDR returns a pointer into it (not null), and
        // the header plus CMSG_LEN(2) bytes of data fit within msg_controllen.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
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

/// What [`recv`] got: `len` bytes from `from`, in datagrams of `segment` bytes (the last
/// may be shorter); `segment == len` when the kernel joined nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub segment: usize,
    pub from: SocketAddr,
}

/// Receives into `buf` one datagram, or with [`enable_gro`] a train of them.
pub fn recv(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut storage = SockAddrStorage::zeroed();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control: Control = [0; 8];
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
    // SAFETY: recvmsg set msg_controllen to the bytes of control messages it wrote into
    // `control`; CMSG_FIRSTHDR/CMSG_NXTHDR walk only within that length and return null at
    // its end, and a UDP_GRO message carries one int.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                if size > 0 {
                    segment = (size as usize).min(len);
                }
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
    Ok(Received { len, segment, from })
}

/// Sets the receive and send buffers of `socket` to `bytes` past `net.core.rmem_max` and
/// `wmem_max` (SO_RCVBUFFORCE, SO_SNDBUFFORCE; needs CAP_NET_ADMIN).
pub fn force_buffers(socket: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let fd = socket.as_raw_fd();
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes)?;
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, bytes)
}
