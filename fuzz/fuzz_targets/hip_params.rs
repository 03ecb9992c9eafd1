//! HIP parameter TLVs (`hip::wire::Param`) on arbitrary bytes, one after another as in a
//! packet but without the header and without the type-order rule, so that every type
//! meets every content. Nothing may panic, and every TLV that parses must emit the very
//! same Type, Length and contents, then zero padding to the TLV's length.
//! Seeds: the RFC 9028 and the overlay routing (RFC 6028, RFC 6079) parameters of the
//! unit-test vectors, and the parameters of the `hip_parse` R1 seed.
#![no_main]

use hip::wire::Param;
use libfuzzer_sys::fuzz_target;

/// TLV size with padding for `len` bytes of contents (RFC 7401 §5.2.1).
fn tlv_len(len: usize) -> usize {
    11 + len - (len + 3) % 8
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let [t0, t1, l0, l1, after @ ..] = rest {
        let ty = u16::from_be_bytes([*t0, *t1]);
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let Some(contents) = after.get(..len) else {
            break;
        };
        if let Ok(param) = Param::parse(ty, contents) {
            assert_eq!(param.ty(), ty);
            assert_eq!(param.contents_len(), len);
            let bytes = param.to_bytes();
            assert_eq!(bytes.len(), tlv_len(len));
            assert_eq!(param.buffer_len(), bytes.len());
            assert_eq!(bytes[..4 + len], rest[..4 + len]);
            assert!(bytes[4 + len..].iter().all(|&b| b == 0));
            assert_eq!(Param::parse(ty, &bytes[4..4 + len]).as_ref(), Ok(&param));
        }
        // Padding as on the wire; an input that ends inside it is done.
        rest = rest.get(tlv_len(len)..).unwrap_or_default();
    }
});
