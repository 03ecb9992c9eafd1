//! Base-exchange benchmark (filled in below).
fn main() {}
