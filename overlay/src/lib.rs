//! The P2PSIP overlay: RELOAD semantics on a Chord ring whose Node-IDs are HITs.
//!
//! Sans-IO like `hip`: no sockets, no clock. The crate is an empty placeholder until the
//! overlay work lands; it exists now so that the workspace has its final shape.
#![forbid(unsafe_code)]
