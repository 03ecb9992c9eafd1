//! The daemon's sockets: binding the UDP sockets (one per family, large buffers, never
//! fragmenting) and the control socket, choosing the socket and source address of each
//! datagram, and telling whether another daemon already runs.

use super::udp;
use anyhow::Context;
use mio::net::{UdpSocket, UnixListener};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// UDP socket buffers: bursts at multi-gigabit rates overflow the defaults.
const SOCKET_BUFFER: usize = 8 << 20;

/// The socket bound to `local` if it is of `remote`'s family, or else one of that family:
/// a datagram never leaves through a socket of the other family.
pub(super) fn socket_for(
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
pub(super) fn source(
    local_ips: &[IpAddr],
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<IpAddr> {
    (local_ips.contains(&local.ip()) && local.is_ipv4() == remote.is_ipv4()).then_some(local.ip())
}

/// Whether a UDP_SEGMENT send failed because of the segmentation itself (no support, or a
/// segment larger than the route's MTU), so that sending one by one would work.
pub(super) fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
    )
}

/// IPv4-mapped IPv6 sources (from a dual-stack socket) as plain IPv4.
pub(super) fn unmap(a: SocketAddr) -> SocketAddr {
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
pub(super) fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
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
pub(super) fn answers(path: &std::path::Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// The control sockets under the default directory that a daemon answers on.
pub(super) fn live_daemons() -> Vec<PathBuf> {
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
pub(super) fn bind_control(path: &std::path::Path) -> anyhow::Result<UnixListener> {
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

pub(super) fn into_std(s: mio::net::UnixStream) -> io::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the descriptor comes from a mio stream we own and give up here; exactly one
    // owner holds it afterwards.
    let std = unsafe { std::os::unix::net::UnixStream::from_raw_fd(s.into_raw_fd()) };
    std.set_nonblocking(false)?;
    Ok(std)
}
