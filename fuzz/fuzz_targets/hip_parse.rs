//! The HIP wire parser on arbitrary bytes: the zero-copy view and its TLV iterator, then
//! the owned parse. Nothing may panic, and whatever parses must survive emit and parse
//! again unchanged.
#![no_main]

use hip::wire::{HipRepr, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::new_checked(data) {
        let _ = packet.check_version();
        for raw in packet.params() {
            let _ = raw.map(|p| p.is_critical());
        }
    }
    if let Ok(repr) = HipRepr::parse(data) {
        let bytes = repr.to_bytes();
        assert_eq!(bytes.len(), repr.buffer_len());
        assert_eq!(HipRepr::parse(&bytes).as_ref(), Ok(&repr));
    }
});
