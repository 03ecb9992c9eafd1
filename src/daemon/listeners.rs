//! Which address family a local program listens on, asked of the kernel over sock_diag
//! (the daemon's network namespace). Consulted once per flow a peer opens, to deliver it
//! where a socket can take it; the kernel is asked at most once per [`REFRESH`], so a peer
//! opening flows fast cannot make us ask per packet.
//!
//! Not `/proc/net/tcp{,6}`: reading those walks the kernel's whole established-socket
//! hash table, sized by memory (8 ms for the two on this 24 GiB machine), on the event
//! loop, and it delayed the SYN-ACK of a peer's first connection by as much
//! (`scripts/bench-directory.sh` showed 12 ms). A sock_diag dump asked for listening
//! sockets only walks the listening table.

use std::collections::HashSet;
use std::io;
use std::time::{Duration, Instant};

use hip::esp::{PROTO_TCP as TCP, PROTO_UDP as UDP};
use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;

use crate::netlink::SockDiag;

/// How old a snapshot of the listening sockets may be.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The ports with a socket that can take a new flow, per protocol and family.
#[derive(Debug, Default)]
pub struct Listeners {
    read_at: Option<Instant>,
    tcp4: HashSet<u16>,
    tcp6: HashSet<u16>,
    udp4: HashSet<u16>,
    udp6: HashSet<u16>,
}

impl Listeners {
    /// True if a socket listens for `protocol` on `port` over IPv4 and none over IPv6 (a
    /// dual-stack IPv6 socket takes the flow between HITs).
    pub fn ipv4_only(&mut self, protocol: u8, port: u16) -> bool {
        let now = Instant::now();
        if self
            .read_at
            .is_none_or(|t| now.duration_since(t) >= REFRESH)
        {
            self.read_at = Some(now);
            if let Err(e) = self.read() {
                tracing::warn!(error = %e, "cannot ask the kernel for listening sockets");
            }
        }
        match protocol {
            TCP => self.tcp4.contains(&port) && !self.tcp6.contains(&port),
            UDP => self.udp4.contains(&port) && !self.udp6.contains(&port),
            _ => false,
        }
    }

    fn read(&mut self) -> io::Result<()> {
        let mut diag = SockDiag::open()?;
        self.tcp4 = bound_ports(&mut diag, AF_INET, IPPROTO_TCP, StateFlags::LISTEN)?;
        self.tcp6 = bound_ports(&mut diag, AF_INET6, IPPROTO_TCP, StateFlags::LISTEN)?;
        // Any bound UDP socket can take a datagram.
        self.udp4 = bound_ports(&mut diag, AF_INET, IPPROTO_UDP, StateFlags::all())?;
        self.udp6 = bound_ports(&mut diag, AF_INET6, IPPROTO_UDP, StateFlags::all())?;
        Ok(())
    }
}

/// The local ports of the sockets of `family` and `protocol` in `states`.
fn bound_ports(
    diag: &mut SockDiag,
    family: u8,
    protocol: u8,
    states: StateFlags,
) -> io::Result<HashSet<u16>> {
    let socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    let request = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol,
        extensions: ExtensionFlags::empty(),
        states,
        socket_id,
    });
    Ok(diag
        .request(request, NLM_F_DUMP)?
        .into_iter()
        .filter_map(|m| match m {
            SockDiagMessage::InetResponse(r) => Some(r.header.socket_id.source_port),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    #[test]
    fn the_family_of_a_listening_socket_is_found_by_port() {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let v4_port = v4.local_addr().unwrap().port();
        let dual = TcpListener::bind("[::]:0").unwrap();
        let dual_port = dual.local_addr().unwrap().port();
        let udp4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp4_port = udp4.local_addr().unwrap().port();
        // A connected TCP socket on a port is not a listener.
        let client = std::net::TcpStream::connect(("127.0.0.1", v4_port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        let mut l = Listeners::default();
        assert!(l.ipv4_only(TCP, v4_port), "only IPv4 listens on {v4_port}");
        assert!(
            !l.ipv4_only(TCP, dual_port),
            "an IPv6 socket takes {dual_port}"
        );
        assert!(
            !l.ipv4_only(TCP, client_port),
            "nothing listens on {client_port}"
        );
        assert!(l.ipv4_only(UDP, udp4_port));
        assert!(!l.ipv4_only(UDP, v4_port), "no UDP socket on {v4_port}");
        assert!(!l.ipv4_only(1, v4_port), "ICMP has no ports");
    }
}
