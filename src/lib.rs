//! The hipbone node: everything that touches the operating system, plus the deterministic
//! simulator that drives the sans-IO protocol crates with virtual time.

pub mod config;
pub mod control;
pub mod daemon;
pub mod dns;
pub mod keys;
pub mod names;
mod netlink;
pub mod netmon;
pub mod netstack;
pub mod node;
pub mod offload;
pub mod pcap;
pub mod sim;
pub mod tun;
pub mod udp;

#[cfg(test)]
mod testdir;
