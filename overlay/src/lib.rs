//! The P2PSIP overlay: RELOAD (RFC 6940) semantics on a Chord ring whose Node-IDs are HITs.
//!
//! Sans-IO like `hip`: no sockets, no clock, no OS randomness. Time and randomness come in
//! from the caller.
//!
//! - [`chord`]: the CHORD-RELOAD routing table: neighbours, fingers, next hop.
//! - [`node`]: [`node::Node`], the sans-IO overlay node: routing, topology maintenance,
//!   storage and replication, with the same calling contract as `hip::Host`.
//! - [`storage`]: RFC 6940 §7 storage: Kinds, access control, per-value signatures, the
//!   bounded store with generation counters, lifetimes and replication hand-over.
//! - [`wire`]: the RELOAD wire format — forwarding header, message contents, security
//!   block, link framing and the bodies of the methods we use — parse and emit only.
#![forbid(unsafe_code)]

pub mod chord;
pub mod id;
pub mod names;
pub mod node;
pub mod storage;
pub mod wire;
