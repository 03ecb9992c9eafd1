//! The TUN device through which unmodified applications reach HITs and LSIs.
//!
//! [`Tun`] owns one layer-3 TUN device without the packet-information header: every
//! [`Tun::recv`] returns exactly one IPv4 or IPv6 packet and every [`Tun::send`] writes one.
//! A device made by [`Tun::create_offload`] puts a `virtio_net_hdr` ([`VNET_HDR_LEN`] bytes)
//! in front of every packet both ways and lets the kernel hand over TCP super-packets of up to
//! 64 KiB (TSO) with their checksums left to us, and accept such super-packets from us; the
//! caller segments and coalesces (see `crate::offload`).
//! [`Tun::create`] leaves the device fully configured: its fd non-blocking (register it with
//! mio as `mio::unix::SourceFd(&tun.as_raw_fd())`), its MTU and txqueuelen set, no IPv6
//! link-local address, the link up, the host's HIT as `HIT/28` (the kernel's connected route
//! then sends all of 2001:20::/28 here) and optionally the LSI with its prefix and a route for
//! the LSI range; it returns once the kernel delivers packets for both addresses locally.
//! Dropping the `Tun` deletes the device (RTM_DELLINK), and with it its addresses and routes,
//! before it closes the fd. Closing alone would do it too, since the device is never
//! persistent, but not always at once: a child process that another thread is spawning holds
//! a copy of every fd until it execs, and the device lives until the last copy closes (the
//! tests saw this). If the process dies instead, the fd closes and the kernel deletes the
//! device all the same. A leftover device would keep 2001:20::/28 and blackhole the next run,
//! which is also why `create` refuses to attach to an existing device instead of reusing it.
//!
//! Configuration goes over rtnetlink (`netlink-packet-route` + `netlink-sys`, through
//! `crate::netlink`), not ioctls and not the `ip` tool. One mechanism covers everything we set: MTU, txqueuelen, link flags, the
//! IPv6 address-generation mode (no ioctl for it) and IPv4/IPv6 addresses with their flags
//! (`IFA_F_NODAD`, `IFA_F_NOPREFIXROUTE`; the ioctls take neither, and IPv4 ioctls assign a
//! classful netmask first). The kernel answers each request with its own errno, so an error
//! names the exact step that failed; running `ip`, as wg-quick does, would make a daemon depend
//! on iproute2 being on PATH and parse its stderr. A netlink socket, like the TUN fd, belongs to
//! the network namespace of the thread that opened it, so a thread that has entered a lab
//! namespace configures its device there (tests/lab_tun.rs relies on that). The only `unsafe`
//! is the two TUN ioctls (TUNSETIFF, TUNSETOFFLOAD) in [`open_device`]; reads and writes go
//! through `std::fs::File`, and netlink-sys owns the socket system calls.
//!
//! The HIT is added with `IFA_F_NODAD` as the lab rules ask. Duplicate address detection would
//! in fact not run here either way: the kernel skips it on `IFF_NOARP` devices and TUN devices
//! are `IFF_NOARP`; the flag keeps the address usable at once should that ever change.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use hip::esp;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoTun, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::netlink::Rtnl;

/// The smallest MTU [`Tun::create`] accepts: IPv6 requires every link to carry 1280-byte
/// packets, and the kernel removes IPv6 (and with it the HIT) from a device set below that.
pub const MIN_MTU: u16 = 1280;

/// The txqueuelen given to the device. The kernel's default of 500 drops packets as soon as
/// the daemon falls a little behind a fast sender (measured in the lab, see LAB.md).
pub const TX_QUEUE_LEN: u32 = 10_000;

/// Prefix length of the HIT on the device: ORCHIDv2 HITs all live in 2001:20::/28.
pub const HIT_PREFIX_LEN: u8 = 28;

/// Length of the `virtio_net_hdr` (without `num_buffers`) that precedes every packet read
/// from or written to a device made by [`Tun::create_offload`].
pub const VNET_HDR_LEN: usize = 10;

/// The offloads a [`Tun::create_offload`] device asks for: checksums and TCP segmentation
/// for IPv4 and IPv6 (linux/if_tun.h). Not USO: UDP super-packets are rare and would need a
/// second segmenter.
const TUN_OFFLOADS: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;

/// Longest interface name the kernel accepts (IFNAMSIZ less the terminating NUL). Copying a
/// longer one into `ifreq` would truncate it silently; we refuse it instead.
const MAX_NAME_LEN: usize = 15;

/// `IFLA_TUN_PERSIST` inside a TUN device's `IFLA_INFO_DATA` (linux/if_link.h); the parser
/// leaves TUN attributes raw.
const IFLA_TUN_PERSIST: u16 = 6;

/// How much lower the LSI route's MTU is than the device's: BEET mode strips the inner
/// header, and an IPv4 header is this much shorter than an IPv6 one.
const LSI_MTU_SHORTFALL: u16 = (esp::IPV6_HEADER_LEN - esp::IPV4_HEADER_LEN) as u16;

/// An operation on a TUN device, named in [`TunError::Os`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TunOp {
    /// Opening the rtnetlink socket used to configure the device.
    OpenNetlink,
    /// Creating the device (opening /dev/net/tun and TUNSETIFF).
    Create,
    /// Making the device's fd non-blocking.
    SetNonBlocking,
    /// Turning on checksum and segmentation offloads (TUNSETOFFLOAD).
    SetOffload,
    /// Looking the device up by name (existence check, index).
    LookUp,
    /// Setting the MTU.
    SetMtu(u16),
    /// Setting the transmit queue length.
    SetTxQueueLen(u32),
    /// Turning off IPv6 link-local address generation.
    DisableLinkLocal,
    /// Bringing the link up.
    SetUp,
    /// Adding an address with its prefix length.
    AddAddress(IpAddr, u8),
    /// Adding the route for the LSI range (network, prefix length).
    AddLsiRoute(Ipv4Addr, u8),
    /// Waiting until the kernel delivers packets for an address of ours locally.
    AwaitAddress(IpAddr),
}

/// Why a TUN device could not be created or configured. Every variant names the device.
#[derive(Debug)]
#[non_exhaustive]
pub enum TunError {
    /// The requested name is not one the kernel would keep unchanged.
    InvalidName {
        /// The requested name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The requested MTU is below [`MIN_MTU`].
    MtuTooSmall {
        /// The device.
        name: String,
        /// The requested MTU.
        mtu: u16,
    },
    /// The address given as the HIT is not in 2001:20::/28.
    NotAHit {
        /// The device.
        name: String,
        /// The address given.
        hit: Ipv6Addr,
    },
    /// The LSI prefix length is longer than 32.
    InvalidLsiPrefix {
        /// The device.
        name: String,
        /// The prefix length given.
        prefix_len: u8,
    },
    /// A network device of that name exists already, perhaps left by an earlier run.
    AlreadyExists {
        /// The device.
        name: String,
        /// It is a TUN device that a running program holds open (not a leftover).
        held: bool,
    },
    /// A system call or rtnetlink request failed.
    Os {
        /// The device.
        name: String,
        /// What was being done.
        op: TunOp,
        /// The kernel's answer.
        source: io::Error,
    },
}

impl TunError {
    fn os(name: &str, op: TunOp) -> impl FnOnce(io::Error) -> TunError + '_ {
        move |source| TunError::Os {
            name: name.to_owned(),
            op,
            source,
        }
    }
}

impl fmt::Display for TunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunError::InvalidName { name, reason } => {
                write!(f, "creating TUN device {name:?}: invalid name: {reason}")
            }
            TunError::MtuTooSmall { name, mtu } => write!(
                f,
                "creating TUN device {name}: MTU {mtu} is below IPv6's minimum of {MIN_MTU}"
            ),
            TunError::NotAHit { name, hit } => write!(
                f,
                "creating TUN device {name}: {hit} is not a HIT (not in 2001:20::/28)"
            ),
            TunError::InvalidLsiPrefix { name, prefix_len } => write!(
                f,
                "creating TUN device {name}: LSI prefix length {prefix_len} is longer than 32"
            ),
            TunError::AlreadyExists { name, held: true } => write!(
                f,
                "creating TUN device {name}: a running program holds a TUN device of that name \
                 (another hipbone daemon? `hipbone status` shows it); stop it, or give this \
                 one another interface.tun"
            ),
            TunError::AlreadyExists { name, held: false } => write!(
                f,
                "creating TUN device {name}: a network device of that name already exists \
                 and no program holds it (left over from an earlier run? remove it with \
                 `ip link del {name}`)"
            ),
            TunError::Os { name, op, source } => {
                match op {
                    TunOp::OpenNetlink => {
                        write!(
                            f,
                            "opening an rtnetlink socket to configure TUN device {name}"
                        )
                    }
                    TunOp::Create => write!(f, "creating TUN device {name}"),
                    TunOp::SetNonBlocking => write!(f, "making TUN device {name} non-blocking"),
                    TunOp::SetOffload => write!(f, "turning on offloads of TUN device {name}"),
                    TunOp::LookUp => write!(f, "looking up TUN device {name}"),
                    TunOp::SetMtu(mtu) => write!(f, "setting MTU {mtu} on TUN device {name}"),
                    TunOp::SetTxQueueLen(len) => {
                        write!(f, "setting txqueuelen {len} on TUN device {name}")
                    }
                    TunOp::DisableLinkLocal => write!(
                        f,
                        "turning off IPv6 link-local addresses on TUN device {name}"
                    ),
                    TunOp::SetUp => write!(f, "bringing TUN device {name} up"),
                    TunOp::AddAddress(addr, len) => {
                        write!(f, "adding address {addr}/{len} to TUN device {name}")
                    }
                    TunOp::AddLsiRoute(net, len) => {
                        write!(f, "adding route {net}/{len} via TUN device {name}")
                    }
                    TunOp::AwaitAddress(addr) => write!(
                        f,
                        "waiting for address {addr} on TUN device {name} to become usable"
                    ),
                }?;
                write!(f, ": {source}")?;
                match source.raw_os_error() {
                    Some(libc::EPERM | libc::EACCES) => {
                        write!(f, " (run as root or with CAP_NET_ADMIN)")
                    }
                    Some(libc::ENOENT) if *op == TunOp::Create => {
                        write!(f, " (no /dev/net/tun: is the tun module loaded?)")
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for TunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TunError::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A configured TUN device; see the module documentation. Dropping it deletes the device.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
    /// Packets carry a `virtio_net_hdr` both ways.
    vnet_hdr: bool,
    index: u32,
    mtu: u16,
    /// Kept for deleting the device on drop: the socket stays in the namespace the device
    /// was created in, whichever thread drops the `Tun`.
    rtnl: Rtnl,
}

impl Tun {
    /// Creates and configures TUN device `name` in the calling thread's network namespace.
    ///
    /// The device gets MTU `mtu` (at least [`MIN_MTU`]), txqueuelen
    /// [`TX_QUEUE_LEN`], no IPv6 link-local address (so the kernel sends no router
    /// solicitations through it), the address `hit/28` and, if `lsi` is given as
    /// `(address, prefix_len)`, that address with a route for its range whose MTU is 20 bytes
    /// below `mtu` (BEET strips 20 bytes from an IPv4 packet but 40 from an IPv6 one, so an
    /// IPv4 packet of the device MTU would not fit the path). Needs CAP_NET_ADMIN.
    ///
    /// Fails with [`TunError::AlreadyExists`] rather than attaching to an existing device:
    /// reusing a persistent leftover would leave it behind again on drop.
    pub fn create(
        name: &str,
        mtu: u16,
        hit: Ipv6Addr,
        lsi: Option<(Ipv4Addr, u8)>,
    ) -> Result<Tun, TunError> {
        Tun::create_with(name, mtu, hit, lsi, false)
    }

    /// Like [`Tun::create`], but every packet read or written starts with a `virtio_net_hdr`
    /// of [`VNET_HDR_LEN`] bytes (IFF_VNET_HDR), and the device offloads checksums and TCP
    /// segmentation (TUNSETOFFLOAD with CSUM, TSO4, TSO6) to us: reads may return TCP
    /// super-packets of up to 64 KiB that must be segmented, and packets whose transport
    /// checksum is only partial; writes may carry super-packets too.
    pub fn create_offload(
        name: &str,
        mtu: u16,
        hit: Ipv6Addr,
        lsi: Option<(Ipv4Addr, u8)>,
    ) -> Result<Tun, TunError> {
        Tun::create_with(name, mtu, hit, lsi, true)
    }

    fn create_with(
        name: &str,
        mtu: u16,
        hit: Ipv6Addr,
        lsi: Option<(Ipv4Addr, u8)>,
        vnet_hdr: bool,
    ) -> Result<Tun, TunError> {
        check_name(name)?;
        if mtu < MIN_MTU {
            return Err(TunError::MtuTooSmall {
                name: name.to_owned(),
                mtu,
            });
        }
        if !is_hit(hit) {
            return Err(TunError::NotAHit {
                name: name.to_owned(),
                hit,
            });
        }
        if let Some((_, prefix_len)) = lsi {
            if prefix_len > 32 {
                return Err(TunError::InvalidLsiPrefix {
                    name: name.to_owned(),
                    prefix_len,
                });
            }
        }

        let mut rtnl = Rtnl::open().map_err(TunError::os(name, TunOp::OpenNetlink))?;
        // TUNSETIFF attaches to an existing persistent TUN of the same name instead of failing;
        // look first so that a leftover is reported, not silently reused.
        if let Some(link) = rtnl
            .link_by_name(name)
            .map_err(TunError::os(name, TunOp::LookUp))?
        {
            return Err(TunError::AlreadyExists {
                name: name.to_owned(),
                held: link.held,
            });
        }
        let file = open_device(name, vnet_hdr)?;
        let link = rtnl
            .link_by_name(name)
            .map_err(TunError::os(name, TunOp::LookUp))?
            .ok_or_else(|| {
                TunError::os(name, TunOp::LookUp)(io::Error::from_raw_os_error(libc::ENODEV))
            })?;
        if link.persistent {
            // Someone created a persistent device of this name between our look-up and
            // TUNSETIFF. Dropping `file` detaches from it and leaves it as it was.
            return Err(TunError::AlreadyExists {
                name: name.to_owned(),
                held: false,
            });
        }
        let index = link.index;

        // Link-local generation must be off before the link goes up: going up is what
        // creates the fe80:: address.
        rtnl.set_link(index, |m| {
            m.attributes
                .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                    vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
                )]))
        })
        .map_err(TunError::os(name, TunOp::DisableLinkLocal))?;
        rtnl.set_link(index, |m| {
            m.attributes.push(LinkAttribute::Mtu(u32::from(mtu)))
        })
        .map_err(TunError::os(name, TunOp::SetMtu(mtu)))?;
        rtnl.set_link(index, |m| {
            m.attributes.push(LinkAttribute::TxQueueLen(TX_QUEUE_LEN))
        })
        .map_err(TunError::os(name, TunOp::SetTxQueueLen(TX_QUEUE_LEN)))?;
        rtnl.set_link(index, |m| {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        })
        .map_err(TunError::os(name, TunOp::SetUp))?;

        let hit = IpAddr::V6(hit);
        rtnl.add_address(index, hit, HIT_PREFIX_LEN, AddressFlags::Nodad)
            .map_err(TunError::os(name, TunOp::AddAddress(hit, HIT_PREFIX_LEN)))?;
        if let Some((lsi, prefix_len)) = lsi {
            // Without IFA_F_NOPREFIXROUTE the kernel would add the range's route itself, but
            // without the lower MTU; we add it below instead.
            rtnl.add_address(
                index,
                IpAddr::V4(lsi),
                prefix_len,
                AddressFlags::Noprefixroute,
            )
            .map_err(TunError::os(
                name,
                TunOp::AddAddress(IpAddr::V4(lsi), prefix_len),
            ))?;
            if prefix_len < 32 {
                let network = ipv4_network(lsi, prefix_len);
                let route_mtu = mtu - LSI_MTU_SHORTFALL;
                rtnl.add_lsi_route(index, lsi, prefix_len, route_mtu)
                    .map_err(TunError::os(name, TunOp::AddLsiRoute(network, prefix_len)))?;
            }
        }

        // The kernel installs an IPv6 address's local route from its address work queue,
        // just after RTM_NEWADDR has returned: in that window (under a millisecond here) a
        // packet to the HIT is dropped as Ip6InAddrErrors. Return only once both addresses
        // are deliverable, so that the first reply written to the device is not lost.
        let ours = std::iter::once(hit).chain(lsi.map(|(lsi, _)| IpAddr::V4(lsi)));
        for addr in ours {
            rtnl.await_local(addr)
                .map_err(TunError::os(name, TunOp::AwaitAddress(addr)))?;
        }

        tracing::debug!(device = name, index, mtu, %hit, ?lsi, "TUN device up");
        Ok(Tun {
            file,
            name: name.to_owned(),
            vnet_hdr,
            index,
            mtu,
            rtnl,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether packets carry a `virtio_net_hdr` ([`Tun::create_offload`]).
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// The device's interface index (stable while the `Tun` lives).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The MTU the device was created with.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// Reads one packet into `buf` and returns its length; `WouldBlock` when none is queued.
    /// A packet longer than `buf` is truncated, so give it at least [`Tun::mtu`] bytes, or
    /// [`VNET_HDR_LEN`] + 65535 with offloads.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one IPv4 or IPv6 packet (after its `virtio_net_hdr` with offloads) to the
    /// kernel, as if it had arrived on the device. The kernel drops malformed packets
    /// silently (and refuses a malformed `virtio_net_hdr` with `EINVAL`); `WouldBlock` is not
    /// expected in practice (TUN writes do not wait for queue space).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }
}

impl Drop for Tun {
    fn drop(&mut self) {
        match self.rtnl.delete_link(self.index) {
            Ok(()) => tracing::debug!(device = self.name(), "TUN device deleted"),
            // Already gone (deleted by hand): nothing is left behind.
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
            // Closing the fd (right after this) still deletes it, perhaps a little later.
            Err(e) => tracing::warn!(device = self.name(), error = %e, "deleting TUN device"),
        }
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Opens /dev/net/tun non-blocking and attaches it to a new TUN device `name` (TUNSETIFF,
/// IFF_TUN | IFF_NO_PI, plus IFF_VNET_HDR and TUNSETOFFLOAD when `vnet_hdr`). `name` has
/// passed [`check_name`], so it fits IFNAMSIZ with its NUL.
fn open_device(name: &str, vnet_hdr: bool) -> Result<File, TunError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(TunError::os(name, TunOp::Create))?;
    // SAFETY: ifreq is a plain C struct (a char array and a union of integers, sockaddrs
    // and a pointer); all zeroes is a valid value of every field.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is, for the
    // duration of the call; the fd is open.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(TunError::os(name, TunOp::Create)(io::Error::last_os_error()));
    }
    if vnet_hdr {
        // SAFETY: TUNSETOFFLOAD takes its flags by value (an unsigned long) and touches no
        // memory of ours.
        let offloads = libc::c_ulong::from(TUN_OFFLOADS);
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETOFFLOAD, offloads) } < 0 {
            return Err(TunError::os(name, TunOp::SetOffload)(
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(file)
}

/// Refuses names the kernel would reject or change: a long name would be truncated to fit
/// `ifreq`, and `%d` templates make the kernel choose, which defeats the existence check.
fn check_name(name: &str) -> Result<(), TunError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are reserved")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '%' || c.is_whitespace() || c == '\0')
    {
        Some("contains '/', ':', '%', NUL or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(TunError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Whether `addr` is in the ORCHIDv2 prefix 2001:20::/28.
fn is_hit(addr: Ipv6Addr) -> bool {
    let s = addr.segments();
    s[0] == 0x2001 && s[1] & 0xfff0 == 0x0020
}

fn ipv4_network(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) & mask)
}

/// What [`Rtnl::link_by_name`] reports about a device.
struct Link {
    index: u32,
    persistent: bool,
    /// A TUN device without IFF_PERSIST: it exists only while a program holds it open.
    held: bool,
}

// The requests that configure the device, over the channel of `crate::netlink`.
impl Rtnl {
    /// The device called `name`, or `None` if there is none.
    fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let replies = match self.request(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(replies) => replies,
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(replies.into_iter().find_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(Link {
                index: link.header.index,
                persistent: is_persistent_tun(&link),
                held: is_tun(&link) && !is_persistent_tun(&link),
            }),
            _ => None,
        }))
    }

    /// Deletes device `index` (RTM_DELLINK).
    fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(m), 0).map(drop)
    }

    /// Changes attributes or flags of device `index` (RTM_SETLINK); `edit` fills the message.
    fn set_link(&mut self, index: u32, edit: impl FnOnce(&mut LinkMessage)) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        edit(&mut m);
        self.request(RouteNetlinkMessage::SetLink(m), 0).map(drop)
    }

    fn add_address(
        &mut self,
        index: u32,
        addr: IpAddr,
        prefix_len: u8,
        flags: AddressFlags,
    ) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.header.prefix_len = prefix_len;
        m.header.scope = AddressScope::Universe;
        m.header.index = index;
        // The header has room for the low 8 flag bits only; IFA_FLAGS carries all of them.
        m.header.flags = AddressHeaderFlags::from_bits_truncate(flags.bits() as u8);
        // IFA_LOCAL is the address; IFA_ADDRESS is the peer on point-to-point links (TUN is
        // one), and the same address when there is no peer, as iproute2 sends it.
        m.attributes.push(AddressAttribute::Local(addr));
        m.attributes.push(AddressAttribute::Address(addr));
        m.attributes.push(AddressAttribute::Flags(flags));
        self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Routes the range of `lsi`/`prefix_len` to device `index` with route MTU `mtu`, like the
    /// kernel's own prefix route (scope link, preferred source the LSI) plus the MTU.
    fn add_lsi_route(
        &mut self,
        index: u32,
        lsi: Ipv4Addr,
        prefix_len: u8,
        mtu: u16,
    ) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = prefix_len;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Link;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                ipv4_network(lsi, prefix_len),
            )));
        m.attributes.push(RouteAttribute::Oif(index));
        m.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::Inet(lsi)));
        m.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(u32::from(
                mtu,
            ))]));
        self.request(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// The type of the route the kernel picks for `addr` (as `ip route get`), or `None` if
    /// it has none.
    fn route_type(&mut self, addr: IpAddr) -> io::Result<Option<RouteType>> {
        let mut m = RouteMessage::default();
        (m.header.address_family, m.header.destination_prefix_length) = match addr {
            IpAddr::V4(_) => (AddressFamily::Inet, 32),
            IpAddr::V6(_) => (AddressFamily::Inet6, 128),
        };
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(addr)));
        match self.request(RouteNetlinkMessage::GetRoute(m), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|reply| match reply {
                RouteNetlinkMessage::NewRoute(route) => Some(route.header.kind),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits until packets to `addr` are delivered locally (its route is of type local).
    fn await_local(&mut self, addr: IpAddr) -> io::Result<()> {
        let deadline = Instant::now() + AWAIT_LOCAL_TIMEOUT;
        while self.route_type(addr)? != Some(RouteType::Local) {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no local route after {AWAIT_LOCAL_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }
}

/// How long [`Rtnl::await_local`] waits; the kernel takes well under a millisecond.
const AWAIT_LOCAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether an RTM_NEWLINK reply describes a TUN device.
fn is_tun(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|info| matches!(info, LinkInfo::Kind(InfoKind::Tun))),
        _ => false,
    })
}

/// Whether an RTM_NEWLINK reply describes a TUN device with `IFF_PERSIST` set.
fn is_persistent_tun(link: &LinkMessage) -> bool {
    use netlink_packet_core::Nla;
    link.attributes.iter().any(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().any(|info| match info {
            LinkInfo::Data(InfoData::Tun(tun)) => tun.iter().any(|nla| match nla {
                InfoTun::Other(nla) if nla.kind() == IFLA_TUN_PERSIST => {
                    let mut value = [0u8; 1];
                    if nla.value_len() != value.len() {
                        return false;
                    }
                    nla.emit_value(&mut value);
                    value[0] != 0
                }
                _ => false,
            }),
            _ => false,
        }),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kernel_would_change_are_refused() {
        assert!(check_name("hip0").is_ok());
        assert!(check_name("hb-0123456789ab").is_ok());
        for bad in [
            "",
            "hb-0123456789abc",
            ".",
            "..",
            "a/b",
            "a:b",
            "tun%d",
            "a b",
        ] {
            assert!(
                matches!(check_name(bad), Err(TunError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn hit_prefix() {
        assert!(is_hit("2001:20::1".parse().unwrap()));
        assert!(is_hit("2001:2f:ffff::1".parse().unwrap()));
        assert!(!is_hit("2001:30::1".parse().unwrap()));
        assert!(!is_hit("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn lsi_network() {
        let lsi = Ipv4Addr::new(1, 2, 3, 4);
        assert_eq!(ipv4_network(lsi, 8), Ipv4Addr::new(1, 0, 0, 0));
        assert_eq!(ipv4_network(lsi, 0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(ipv4_network(lsi, 32), lsi);
    }

    #[test]
    fn tun_can_move_to_and_be_shared_with_other_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Tun>();
        send_sync::<TunError>();
    }

    #[test]
    fn errors_name_device_and_step() {
        let e = TunError::os("hip0", TunOp::Create)(io::Error::from_raw_os_error(libc::EPERM));
        let text = e.to_string();
        assert!(text.starts_with("creating TUN device hip0: "), "{text}");
        assert!(
            text.ends_with("(run as root or with CAP_NET_ADMIN)"),
            "{text}"
        );
        let e = TunError::os("hip0", TunOp::AddAddress("2001:20::1".parse().unwrap(), 28))(
            io::Error::from_raw_os_error(libc::EEXIST),
        );
        assert!(e
            .to_string()
            .starts_with("adding address 2001:20::1/28 to TUN device hip0: "));
    }
}
