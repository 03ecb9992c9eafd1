//! The P2PSIP overlay: RELOAD (RFC 6940) semantics on a Chord ring whose Node-IDs are HITs.
//!
//! Sans-IO like `hip`: no sockets, no clock, no OS randomness. Time and randomness come in
//! from the caller.
//!
//! - [`wire`]: the RELOAD wire format — forwarding header, message contents, security
//!   block, link framing and the bodies of the methods we use — parse and emit only.
#![forbid(unsafe_code)]

pub mod id;
pub mod wire;
