//! Real-kernel tests of the TUN device (src/tun.rs) and of the namespace labs
//! (scripts/lab.sh). Those that need root are `#[ignore = "needs root …"]`: an unprivileged
//! `cargo test` lists them as ignored, never as passed, and scripts/test.sh runs them as root
//! with `cargo test --release --test lab_tun -- --ignored` (as a user it says in its last line
//! that they were skipped). Run with `--ignored` without root, each fails at once.
//!
//! Each test brings a lab up with `scripts/lab.sh up TOPOLOGY`; a [`Lab`] guard runs
//! `scripts/lab.sh down SUFFIX` when dropped, also when the test panics. A body that must run
//! inside a lab host runs on a fresh thread that first joins the host's network namespace with
//! setns(2) ([`Lab::in_host`]). setns with CLONE_NEWNET moves only the calling thread, and
//! what that thread opens afterwards lives in the namespace: the /dev/net/tun fd, the
//! rtnetlink socket, and child processes such as `ip` and `ping` (a child inherits the
//! namespaces of the thread that spawned it). The harness and the other tests, running in
//! parallel on other threads, stay in the root namespace, and the thread ends with the body.
//! We chose this over re-running the test binary under `ip netns exec`, which would need an
//! entry point that, run by hand outside a namespace, would put 2001:20::/28 on the machine's
//! own routing table.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use hipbone::tun::{Tun, TunError, TX_QUEUE_LEN};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sched::{setns, CloneFlags};

const DEV: &str = "hbtun0";
const HIT: Ipv6Addr = Ipv6Addr::new(0x2001, 0x2a, 0x1234, 0x5678, 0, 0, 0, 1);
const PEER_HIT: Ipv6Addr = Ipv6Addr::new(0x2001, 0x2b, 0xabcd, 0, 0, 0, 0, 2);
// The default LSI range. It is publicly routed, but a lab namespace has no way out.
const LSI: Ipv4Addr = Ipv4Addr::new(1, 0, 0, 1);
const PEER_LSI: Ipv4Addr = Ipv4Addr::new(1, 0, 0, 2);
const MTU: u16 = 1400;

/// The tests marked with this run only with `--ignored`, and only as root.
fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces, TUN): run it as root, as scripts/test.sh does"
    );
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/lab.sh")
}

/// A lab made by `scripts/lab.sh up`, torn down on drop.
struct Lab {
    suffix: String,
}

impl Lab {
    fn up(topology: &str) -> Lab {
        let out = Command::new("bash")
            .arg(script())
            .args(["up", topology])
            .output()
            .expect("running scripts/lab.sh");
        assert!(
            out.status.success(),
            "scripts/lab.sh up {topology} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let suffix = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert_eq!(suffix.len(), 6, "lab suffix {suffix:?}");
        Lab { suffix }
    }

    fn ns(&self, host: &str) -> String {
        format!("hb-{host}-{}", self.suffix)
    }

    /// Runs `body` on a thread inside host `host`'s network namespace; a panic in `body`
    /// fails the test as usual (after the thread, and with it the namespace, is left).
    fn in_host<T: Send + 'static>(
        &self,
        host: &str,
        body: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{}", self.ns(host));
        let thread = thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns into the lab namespace");
            body()
        });
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Runs a command inside `host` (for tests that need no thread of their own there).
    fn exec(&self, host: &str, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .args(cmd)
            .output()
            .expect("running ip netns exec")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let status = Command::new("bash")
            .arg(script())
            .args(["down", &self.suffix])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("scripts/lab.sh down {} failed: {status:?}", self.suffix);
        }
    }
}

/// Runs `ip ARGS` in the current thread's namespace and returns its stdout; panics on failure.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn create_tun() -> Tun {
    Tun::create(DEV, MTU, HIT, Some((LSI, 8))).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it as root"]
fn tun_gets_hit_lsi_routes_mtu_and_queue() {
    require_root();
    let lab = Lab::up("one");
    lab.in_host("a", || {
        let tun = create_tun();
        assert_eq!(tun.name(), DEV);
        assert_eq!(tun.mtu(), MTU);

        let link = ip(&["link", "show", "dev", DEV]);
        assert!(link.contains(&format!("mtu {MTU} ")), "{link}");
        assert!(link.contains(&format!("qlen {TX_QUEUE_LEN}")), "{link}");
        assert!(link.contains(",UP"), "{link}");

        let addr6 = ip(&["-6", "addr", "show", "dev", DEV]);
        assert!(addr6.contains(&format!("inet6 {HIT}/28 ")), "{addr6}");
        // Usable at once, and no link-local address (so no router solicitations either).
        assert!(!addr6.contains("tentative"), "{addr6}");
        assert!(!addr6.contains("fe80:"), "{addr6}");
        let route6 = ip(&["-6", "route", "show", "dev", DEV]);
        assert!(route6.contains("2001:20::/28 "), "{route6}");

        let addr4 = ip(&["-4", "addr", "show", "dev", DEV]);
        assert!(addr4.contains(&format!("inet {LSI}/8 ")), "{addr4}");
        let route4 = ip(&["-4", "route", "show", "dev", DEV]);
        // BEET strips 20 bytes from IPv4 packets, not 40: their route MTU is 20 lower.
        let expected = format!("1.0.0.0/8 scope link src {LSI} mtu {}", MTU - 20);
        assert!(route4.contains(&expected), "{route4}");

        // The kernel sends packets for other HITs and LSIs to the device.
        let get6 = ip(&["-6", "route", "get", &PEER_HIT.to_string()]);
        assert!(get6.contains(&format!("dev {DEV}")), "{get6}");
        assert!(get6.contains(&format!("src {HIT}")), "{get6}");
        let get4 = ip(&["-4", "route", "get", &PEER_LSI.to_string()]);
        assert!(get4.contains(&format!("dev {DEV} src {LSI}")), "{get4}");
    });
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it as root"]
fn tun_carries_pings_to_hits_and_lsis_both_ways() {
    require_root();
    let lab = Lab::up("one");
    lab.in_host("a", || {
        let tun = create_tun();
        let mut poll = poll_for(&tun);
        let mut buf = vec![0u8; usize::from(MTU)];
        // Non-blocking: nothing queued yet.
        let empty = tun.recv(&mut buf).map(|n| buf[..n].to_vec());
        assert!(
            matches!(&empty, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "{empty:?}"
        );

        // The kernel writes ping's echo request to the device; we answer it through `send`,
        // and ping's exit status says the kernel took the reply.
        let ping = spawn(&["ping", "-6", "-c1", "-W5", &PEER_HIT.to_string()]);
        let request = wait_for(&tun, &mut poll, &mut buf, |p| {
            is_icmpv6_echo(p, HIT, PEER_HIT, ICMPV6_ECHO_REQUEST)
        });
        tun.send(&icmpv6_echo_reply(&request)).unwrap();
        assert_success(ping, "ping -6 through the TUN");

        let ping = spawn(&["ping", "-4", "-c1", "-W5", &PEER_LSI.to_string()]);
        let request = wait_for(&tun, &mut poll, &mut buf, |p| {
            is_icmpv4_echo(p, LSI, PEER_LSI, ICMPV4_ECHO_REQUEST)
        });
        tun.send(&icmpv4_echo_reply(&request)).unwrap();
        assert_success(ping, "ping -4 through the TUN");
    });
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it as root"]
fn packets_sent_right_after_create_reach_the_kernel() {
    require_root();
    let lab = Lab::up("one");
    lab.in_host("a", || {
        let tun = create_tun();
        // At once, as a peer's first packet may: the kernel must answer our echo requests
        // to the HIT and the LSI with echo replies written back to the device.
        tun.send(&icmpv6_echo(PEER_HIT, HIT, ICMPV6_ECHO_REQUEST))
            .unwrap();
        tun.send(&icmpv4_echo(PEER_LSI, LSI, ICMPV4_ECHO_REQUEST))
            .unwrap();
        let mut poll = poll_for(&tun);
        let mut buf = vec![0u8; usize::from(MTU)];
        wait_for(&tun, &mut poll, &mut buf, |p| {
            is_icmpv6_echo(p, HIT, PEER_HIT, ICMPV6_ECHO_REPLY)
        });
        wait_for(&tun, &mut poll, &mut buf, |p| {
            is_icmpv4_echo(p, LSI, PEER_LSI, ICMPV4_ECHO_REPLY)
        });
    });
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it as root"]
fn dropping_tun_removes_device_and_routes() {
    require_root();
    let lab = Lab::up("one");
    lab.in_host("a", || {
        let tun = create_tun();
        drop(tun);
        let link = Command::new("ip")
            .args(["link", "show", "dev", DEV])
            .output()
            .unwrap();
        assert!(!link.status.success(), "{DEV} still exists after drop");
        let routes6 = ip(&["-6", "route", "show"]);
        assert!(!routes6.contains("2001:20::/28"), "{routes6}");
        let routes4 = ip(&["-4", "route", "show"]);
        assert!(!routes4.contains("1.0.0.0/8"), "{routes4}");
        // Nothing left over: the same name is free again at once.
        drop(create_tun());
    });
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it as root"]
fn existing_devices_are_refused_not_reused() {
    require_root();
    let lab = Lab::up("one");
    lab.in_host("a", || {
        let tun = create_tun();
        let again = Tun::create(DEV, MTU, HIT, None);
        assert!(
            matches!(&again, Err(TunError::AlreadyExists { name, held: true }) if name == DEV),
            "{again:?}"
        );
        drop(tun);

        // A persistent leftover (as a crashed run with `ip tuntap` might leave) is reported,
        // and left exactly as it was: TUNSETIFF alone would have attached to it silently.
        ip(&["tuntap", "add", "dev", DEV, "mode", "tun"]);
        let err = Tun::create(DEV, MTU, HIT, None).unwrap_err();
        assert!(
            matches!(&err, TunError::AlreadyExists { held: false, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("already exists"), "{err}");
        let link = ip(&["link", "show", "dev", DEV]);
        assert!(!link.contains(",UP"), "{link}");
        assert!(ip(&["addr", "show", "dev", DEV]).find("inet").is_none());
        ip(&["tuntap", "del", "dev", DEV, "mode", "tun"]);
    });
}

#[test]
fn bad_arguments_are_refused_before_touching_the_kernel() {
    // No root needed: these fail before any system call.
    let err = Tun::create("hbtun0", 1279, HIT, None).unwrap_err();
    assert!(
        matches!(err, TunError::MtuTooSmall { mtu: 1279, .. }),
        "{err:?}"
    );
    let err = Tun::create("hbtun0", 1400, "2001:db8::1".parse().unwrap(), None).unwrap_err();
    assert!(matches!(err, TunError::NotAHit { .. }), "{err:?}");
    assert!(err.to_string().contains("hbtun0"), "{err}");
    let err = Tun::create("hbtun0", 1400, HIT, Some((LSI, 33))).unwrap_err();
    assert!(matches!(err, TunError::InvalidLsiPrefix { .. }), "{err:?}");
    let err = Tun::create("a-name-far-too-long", 1400, HIT, None).unwrap_err();
    assert!(matches!(err, TunError::InvalidName { .. }), "{err:?}");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it as root"]
fn lab_two_hosts_reach_each_other() {
    require_root();
    let lab = Lab::up("two");
    for target in ["198.51.100.2", "2001:db8:1::2"] {
        let out = lab.exec("a", &["ping", "-c1", "-W2", target]);
        assert!(out.status.success(), "a -> {target}: {out:?}");
    }
    let out = lab.exec("b", &["ip", "-br", "addr"]);
    let addrs = String::from_utf8_lossy(&out.stdout);
    assert!(
        addrs.contains("198.51.100.2/24") && addrs.contains("2001:db8:1::2/64"),
        "{addrs}"
    );
    assert!(addrs.contains(&format!("hb1b-{}", lab.suffix)), "{addrs}");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it as root"]
fn lab_routed_hosts_reach_each_other_through_the_router() {
    require_root();
    let lab = Lab::up("routed");
    for (from, target) in [
        ("a", "203.0.113.2"),
        ("a", "2001:db8:2::2"),
        ("b", "198.51.100.2"),
        ("b", "2001:db8:1::2"),
    ] {
        let out = lab.exec(from, &["ping", "-c1", "-W2", target]);
        assert!(out.status.success(), "{from} -> {target}: {out:?}");
    }
    // a and b share no subnet: the traffic went through r.
    let out = lab.exec("a", &["ip", "-4", "route", "get", "203.0.113.2"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("via 198.51.100.1"),
        "{out:?}"
    );
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it as root"]
fn lab_down_kills_its_processes_and_deletes_its_namespaces() {
    require_root();
    // A sourced lab whose shell then fails: the trap must still clean up.
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            r#"set -e
            source "$0"
            lab_init
            lab_two
            lab_spawn b sleep 600 >/dev/null 2>&1
            echo "$LAB_SUFFIX $LAB_PID"
            false"#,
        )
        .arg(script())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the script's failure is its exit status"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut words = stdout.split_whitespace();
    let (suffix, pid) = (words.next().unwrap(), words.next().unwrap());
    let namespaces = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!namespaces.contains(suffix), "{namespaces}");
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists(),
        "spawned process {pid} survived"
    );
}

// ---- packets and processes ----

/// A mio poll with the TUN registered for reading, as the daemon's event loop does it.
fn poll_for(tun: &Tun) -> Poll {
    let poll = Poll::new().unwrap();
    poll.registry()
        .register(
            &mut SourceFd(&tun.as_raw_fd()),
            Token(0),
            Interest::READABLE,
        )
        .unwrap();
    poll
}

fn spawn(cmd: &[&str]) -> std::process::Child {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn assert_success(child: std::process::Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads packets (waiting on mio for readiness) until one satisfies `want`, for up to 5 s.
/// Other packets are skipped (none were seen in practice: the device has no link-local
/// address, so the kernel sends no solicitations or reports through it).
fn wait_for(tun: &Tun, poll: &mut Poll, buf: &mut [u8], want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut events = Events::with_capacity(4);
    loop {
        match tun.recv(buf) {
            Ok(n) if want(&buf[..n]) => return buf[..n].to_vec(),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "no matching packet from the TUN within 5 s"
                );
                poll.poll(&mut events, Some(left)).unwrap();
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
const ICMPV4_ECHO_REQUEST: u8 = 8;
const ICMPV4_ECHO_REPLY: u8 = 0;

/// An ICMPv6 echo message (`kind`: request or reply) from `src` to `dst`, 8 bytes of data.
fn icmpv6_echo(src: Ipv6Addr, dst: Ipv6Addr, kind: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40 + 8 + 8];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&16u16.to_be_bytes());
    p[6] = 58;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40] = kind;
    p[44..48].copy_from_slice(&[0x42, 0x42, 0, 1]); // identifier, sequence number
    set_icmpv6_checksum(&mut p);
    p
}

fn set_icmpv6_checksum(p: &mut [u8]) {
    p[42..44].fill(0);
    let len = u32::try_from(p.len() - 40).unwrap().to_be_bytes();
    let sum = checksum(&[&p[8..40], &len, &[0, 0, 0, 58], &p[40..]]);
    p[42..44].copy_from_slice(&sum.to_be_bytes());
}

fn is_icmpv6_echo(p: &[u8], src: Ipv6Addr, dst: Ipv6Addr, kind: u8) -> bool {
    p.len() >= 48
        && p[0] >> 4 == 6
        && p[6] == 58
        && p[8..24] == src.octets()
        && p[24..40] == dst.octets()
        && p[40] == kind
}

/// The reply to an ICMPv6 echo request, as the peer would send it.
fn icmpv6_echo_reply(request: &[u8]) -> Vec<u8> {
    let mut p = request.to_vec();
    p[8..24].copy_from_slice(&request[24..40]);
    p[24..40].copy_from_slice(&request[8..24]);
    p[40] = ICMPV6_ECHO_REPLY;
    set_icmpv6_checksum(&mut p);
    p
}

/// An ICMP echo message (`kind`: request or reply) from `src` to `dst`, 8 bytes of data.
fn icmpv4_echo(src: Ipv4Addr, dst: Ipv4Addr, kind: u8) -> Vec<u8> {
    let mut p = vec![0u8; 20 + 8 + 8];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&36u16.to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p[20] = kind;
    p[24..28].copy_from_slice(&[0x42, 0x42, 0, 1]);
    set_icmpv4_checksum(&mut p);
    p
}

fn set_icmpv4_checksum(p: &mut [u8]) {
    p[22..24].fill(0);
    let sum = checksum(&[&p[20..]]);
    p[22..24].copy_from_slice(&sum.to_be_bytes());
}

fn is_icmpv4_echo(p: &[u8], src: Ipv4Addr, dst: Ipv4Addr, kind: u8) -> bool {
    p.len() >= 28
        && p[0] == 0x45
        && p[9] == 1
        && p[12..16] == src.octets()
        && p[16..20] == dst.octets()
        && p[20] == kind
}

/// The reply to an ICMP echo request, as the peer would send it. Swapping the addresses
/// leaves the IPv4 header checksum as it was (the sum commutes).
fn icmpv4_echo_reply(request: &[u8]) -> Vec<u8> {
    let mut p = request.to_vec();
    p[12..16].copy_from_slice(&request[16..20]);
    p[16..20].copy_from_slice(&request[12..16]);
    p[20] = ICMPV4_ECHO_REPLY;
    set_icmpv4_checksum(&mut p);
    p
}
