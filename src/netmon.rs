//! The host's own addresses, and word from the kernel when they or the routes change: an
//! rtnetlink socket subscribed to the IPv4 and IPv6 address and route groups, read by the
//! daemon's event loop when it becomes readable — no polling. On an address change the
//! daemon reads the whole address list again (a dump) and tells `hip::Host`; on a route
//! change (a default route that comes after its address) it has the host send again what
//! may have found no route.

use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use crate::netlink::Rtnl;

/// rtnetlink multicast groups (linux/rtnetlink.h): RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE,
/// RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE.
const GROUP_IPV4_IFADDR: u32 = 5;
const GROUP_IPV4_ROUTE: u32 = 7;
const GROUP_IPV6_IFADDR: u32 = 9;
const GROUP_IPV6_ROUTE: u32 = 11;
/// Message types (linux/rtnetlink.h): RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE.
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;

/// What a batch of notifications said changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub addresses: bool,
    pub routes: bool,
}

/// The subscription to address changes.
#[derive(Debug)]
pub struct AddressMonitor {
    socket: Socket,
}

impl AddressMonitor {
    pub fn open() -> io::Result<AddressMonitor> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        for group in [
            GROUP_IPV4_IFADDR,
            GROUP_IPV4_ROUTE,
            GROUP_IPV6_IFADDR,
            GROUP_IPV6_ROUTE,
        ] {
            socket.add_membership(group)?;
        }
        socket.set_non_blocking(true)?;
        Ok(AddressMonitor { socket })
    }

    /// Reads every pending notification and says what changed. (The addresses are read
    /// again with [`addresses`]; a lost notification at worst delays that until the next.)
    pub fn drain(&mut self) -> Changes {
        let mut changes = Changes::default();
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = self.socket.recv(&mut &mut buf[..], 0) {
            if n == 0 {
                break;
            }
            changes.note(&buf[..n.min(buf.len())]);
        }
        changes
    }
}

impl Changes {
    /// Notes the kinds of the netlink messages in `datagram` (each a 16-byte header:
    /// length, type, flags, sequence, port ID, then its body).
    fn note(&mut self, mut datagram: &[u8]) {
        while datagram.len() >= 16 {
            let len = u32::from_ne_bytes([datagram[0], datagram[1], datagram[2], datagram[3]]);
            let kind = u16::from_ne_bytes([datagram[4], datagram[5]]);
            match kind {
                RTM_NEWADDR | RTM_DELADDR => self.addresses = true,
                RTM_NEWROUTE | RTM_DELROUTE => self.routes = true,
                _ => {}
            }
            let step = (len as usize + 3) & !3;
            if step < 16 {
                return;
            }
            datagram = datagram.get(step..).unwrap_or_default();
        }
    }
}

impl AsRawFd for AddressMonitor {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// The addresses a peer can reach us at: every address of every device except loopback,
/// IPv6 link-local, and those of the device `exclude` (our TUN, which carries the HIT and
/// the LSI).
pub fn addresses(exclude: u32) -> io::Result<Vec<IpAddr>> {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Unspec;
    let replies = Rtnl::open()?.request(RouteNetlinkMessage::GetAddress(message), NLM_F_DUMP)?;
    let found = replies.into_iter().filter_map(|reply| match reply {
        RouteNetlinkMessage::NewAddress(m) if m.header.index != exclude => {
            // IFA_LOCAL is the host's own address on point-to-point links, where
            // IFA_ADDRESS is the far end; elsewhere the two are the same.
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            local.or(address)
        }
        _ => None,
    });
    Ok(usable(found.collect()))
}

/// Drops what no peer can reach, and sorts for a stable order (IPv4 first, then IPv6).
fn usable(mut found: Vec<IpAddr>) -> Vec<IpAddr> {
    found.retain(|ip| match ip {
        IpAddr::V4(a) => !a.is_loopback() && !a.is_unspecified(),
        IpAddr::V6(a) => {
            !a.is_loopback() && !a.is_unspecified() && (a.segments()[0] & 0xffc0) != 0xfe80
        }
    });
    found.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_link_local_are_not_locators() {
        let ips: Vec<IpAddr> = [
            "::1",
            "fe80::1",
            "127.0.0.1",
            "2001:db8::1",
            "198.51.100.1",
            "198.51.100.1",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let expected: Vec<IpAddr> = ["198.51.100.1", "2001:db8::1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(usable(ips), expected);
    }

    const RTM_NEWLINK: u16 = 16;

    fn message(kind: u16, len: u32) -> Vec<u8> {
        let mut m = vec![0u8; len as usize];
        m[..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m
    }

    #[test]
    fn notifications_say_what_changed() {
        let mut c = Changes::default();
        c.note(&message(RTM_NEWADDR, 24));
        assert_eq!(
            c,
            Changes {
                addresses: true,
                routes: false
            }
        );
        let mut c = Changes::default();
        let mut batch = message(RTM_NEWROUTE, 28);
        batch.extend(message(RTM_DELADDR, 16));
        c.note(&batch);
        assert_eq!(
            c,
            Changes {
                addresses: true,
                routes: true
            }
        );
        // A length that would not move on, or runs past the end, stops the walk.
        let mut c = Changes::default();
        c.note(&[]);
        let mut stuck = message(RTM_NEWLINK, 16);
        stuck[..4].copy_from_slice(&0u32.to_ne_bytes());
        c.note(&stuck);
        c.note(&message(RTM_NEWADDR, 4096)[..20]);
        assert_eq!(
            c,
            Changes {
                addresses: true,
                routes: false
            }
        );
    }
}
