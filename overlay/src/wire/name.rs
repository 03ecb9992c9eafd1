//! The value of a NAME-RECORD (R11, hipbone's own Kind): the name it is stored under, the
//! HIT it names, and room for what later versions attach (a name grant, service
//! information).
//!
//! ```text
//! struct {
//!     opaque name<1..2^8-1>;      // "label.overlay-name", lower case ASCII
//!     NodeId hit;                 // 16 bytes
//!     opaque extension<0..2^16-1>;
//! } NameRecord;
//! ```
//!
//! The name travels in the value so that the storing peer can check that the Resource-ID
//! is its hash: without it, one key could write any number of entries at any 16 bytes it
//! likes (docs/OVERLAY.md, "Storage").

use super::{Decode, Encode, NodeId, Reader, Sink, WireError};

/// Longest name: a DNS name's 253 characters.
pub const MAX_NAME_LEN: usize = 253;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRecord {
    /// The Resource Name: lower-case letters, digits, `-` and `.`, 1 to 253 bytes.
    pub name: Vec<u8>,
    pub hit: NodeId,
    pub extension: Vec<u8>,
}

/// A name a NAME-RECORD may carry: what a DNS label sequence allows, lower case only, so
/// that one name has one Resource-ID.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.first() != Some(&b'-')
                && label.last() != Some(&b'-')
                && label
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        })
}

impl Decode for NameRecord {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let name = r.opaque(1)?.to_vec();
        if !valid_name(&name) {
            return Err(WireError::Invalid("name"));
        }
        Ok(NameRecord {
            name,
            hit: NodeId::read(r)?,
            extension: r.opaque(2)?.to_vec(),
        })
    }
}

impl Encode for NameRecord {
    fn write(&self, w: &mut dyn Sink) {
        w.opaque(1, &self.name);
        self.hit.write(w);
        w.opaque(2, &self.extension);
    }
}

repr_methods!(NameRecord);

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answer: "alice.lab.example" naming 2001:25::1, no extension.
    const ALICE: &str = "11616c6963652e6c61622e6578616d706c65\
                         20010025000000000000000000000001\
                         0000";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn known_answer_both_ways() {
        let mut hit = [0u8; 16];
        hit[..4].copy_from_slice(&[0x20, 0x01, 0x00, 0x25]);
        hit[15] = 1;
        let rec = NameRecord {
            name: b"alice.lab.example".to_vec(),
            hit: NodeId(hit),
            extension: Vec::new(),
        };
        assert_eq!(rec.to_bytes(), hex(ALICE));
        assert_eq!(NameRecord::parse(&hex(ALICE)).unwrap(), rec);
    }

    #[test]
    fn malformed_names_and_lengths_are_errors() {
        let good = hex(ALICE);
        for cut in 0..good.len() {
            assert!(NameRecord::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(NameRecord::parse(&trailing), Err(WireError::TrailingBytes));
        for bad in [
            &b""[..],
            b"Alice.lab",
            b"alice..lab",
            b".alice",
            b"-alice.lab",
            b"al ice",
            b"alice.lab.",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
            let mut b = vec![bad.len() as u8];
            b.extend_from_slice(bad);
            b.extend_from_slice(&[0; 18]);
            assert!(NameRecord::parse(&b).is_err(), "{bad:?}");
        }
        assert!(valid_name(b"a-1.b"));
        assert!(!valid_name(&[b'a'; 64]));
    }
}
