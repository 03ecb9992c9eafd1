//! Host Identity Protocol version 2 (RFC 7401), sans-IO.
//!
//! This crate holds the protocol and nothing else: it never opens a socket, never reads a
//! clock and never draws randomness from the operating system. Time enters as an
//! [`Instant`](std::time::Instant) argument on every entry point, randomness from a seed
//! the caller provides. The node binary (`hipbone`) and the deterministic simulator drive it.
//!
//! - [`identity`]: Ed25519 host identities, HITs (ORCHIDv2), LSIs.
//! - [`wire`]: the HIP header and parameters, parse and emit.
//! - [`crypto`]: the crypto profile (DH, KEYMAT, MACs, signatures, HIP_CIPHER).
//! - [`puzzle`]: the cookie puzzle and the responder's difficulty policy.
//! - [`Host`]: the endpoint that owns the identity and every association.
#![forbid(unsafe_code)]

pub mod addr;
pub mod crypto;
pub mod esp;
pub mod identity;
pub mod inet;
pub mod lsi;
pub mod puzzle;
pub mod wire;

mod assoc;
mod config;
mod error;
mod host;
mod ratelimit;

pub use addr::{private_address, Prefix};
pub use config::{Config, RelayQuota};
pub use error::Error;
pub use host::{
    registration_lifetime, AssocHandle, AssocInfo, AssocState, EspKeys, Event, Host, Inbound,
    NatBehaviour, Outbound, PathKind, RelayStats, Stats, Traffic, Transmit, REG_TYPE_RELAY_UDP_ESP,
    REG_TYPE_RELAY_UDP_HIP, REG_TYPE_RENDEZVOUS,
};
pub use identity::{Hit, HostIdentity, PublicIdentity};
