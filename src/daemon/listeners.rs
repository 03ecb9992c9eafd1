//! Which address family a local program listens on, from the kernel's socket tables
//! (`/proc/net/{tcp,tcp6,udp,udp6}` of the daemon's network namespace). Used once per flow
//! a peer opens, to deliver it where a socket can take it.

use std::fs;

const TCP: u8 = 6;
const UDP: u8 = 17;
/// TCP_LISTEN in the `st` column.
const LISTEN: &str = "0A";

/// True if a socket listens for `protocol` on `port` over IPv4 and none over IPv6 (a
/// dual-stack IPv6 socket takes the flow between HITs).
pub fn ipv4_only(protocol: u8, port: u16) -> bool {
    let (v4, v6) = match protocol {
        TCP => ("/proc/net/tcp", "/proc/net/tcp6"),
        UDP => ("/proc/net/udp", "/proc/net/udp6"),
        _ => return false,
    };
    let listens =
        |path: &str| fs::read_to_string(path).is_ok_and(|table| listening(&table, protocol, port));
    listens(v4) && !listens(v6)
}

/// True if `table` (the text of one /proc/net socket table) has a socket bound to `port`
/// that can take a new flow: a listening TCP socket, or any UDP socket.
fn listening(table: &str, protocol: u8, port: u16) -> bool {
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1).unwrap_or("");
        let state = fields.nth(1).unwrap_or("");
        let bound = local
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            == Some(port);
        bound && (protocol == UDP || state == LISTEN)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1394 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0016 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn a_listening_tcp_socket_is_found_by_port() {
        assert!(listening(TCP4, TCP, 5012)); // 0x1394
        assert!(
            !listening(TCP4, TCP, 22),
            "an established socket is not a listener"
        );
        assert!(!listening(TCP4, TCP, 80));
        assert!(
            listening(TCP4, UDP, 22),
            "any bound UDP socket takes datagrams"
        );
        assert!(!listening("", TCP, 5012));
        assert!(!listening("header only\n", TCP, 5012));
        assert!(!listening("h\n   0: garbage\n", TCP, 5012));
    }
}
