//! Which address family a local program listens on, from the kernel's socket tables
//! (`/proc/net/{tcp,tcp6,udp,udp6}` of the daemon's network namespace). Consulted once per
//! flow a peer opens, to deliver it where a socket can take it; the tables are read at most
//! once per [`REFRESH`], so a peer opening flows fast cannot make us read them per packet.

use hip::esp::{PROTO_TCP as TCP, PROTO_UDP as UDP};
use std::collections::HashSet;
use std::fs;
use std::time::{Duration, Instant};

/// TCP_LISTEN in the `st` column.
const LISTEN: &str = "0A";
/// How old a snapshot of the socket tables may be.
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
            self.tcp4 = bound_ports("/proc/net/tcp", TCP);
            self.tcp6 = bound_ports("/proc/net/tcp6", TCP);
            self.udp4 = bound_ports("/proc/net/udp", UDP);
            self.udp6 = bound_ports("/proc/net/udp6", UDP);
        }
        match protocol {
            TCP => self.tcp4.contains(&port) && !self.tcp6.contains(&port),
            UDP => self.udp4.contains(&port) && !self.udp6.contains(&port),
            _ => false,
        }
    }
}

fn bound_ports(path: &str, protocol: u8) -> HashSet<u16> {
    fs::read_to_string(path).map_or_else(|_| HashSet::new(), |t| parse_table(&t, protocol))
}

/// The ports in `table` (the text of one /proc/net socket table) with a socket that can
/// take a new flow: a listening TCP socket, or any UDP socket.
fn parse_table(table: &str, protocol: u8) -> HashSet<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            (protocol == UDP || state == LISTEN).then_some(port)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1394 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0016 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn listening_sockets_are_found_by_port() {
        assert_eq!(parse_table(TCP4, TCP), HashSet::from([5012])); // 0x1394
        assert_eq!(
            parse_table(TCP4, UDP),
            HashSet::from([5012, 22]),
            "any bound UDP socket"
        );
        assert!(parse_table("", TCP).is_empty());
        assert!(parse_table("header only\n", TCP).is_empty());
        assert!(parse_table("h\n   0: garbage\n", TCP).is_empty());
    }
}
