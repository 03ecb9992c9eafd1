//! The hipbone node: everything that touches the operating system, plus the deterministic
//! simulator that drives the sans-IO protocol crates with virtual time.

pub mod keys;
pub mod sim;
