//! A name grant: a signer of the overlay's configuration binds a full name
//! (`label.overlay-name`) to a HIT until a time (docs/OVERLAY.md, "Names"). The owner of the
//! name stores it in its NAME-RECORD's `extension`; resolvers accept a claim only with a
//! grant they can check.
//!
//! ```text
//! struct {
//!     opaque name<1..2^8-1>;   // "label.overlay-name", as NameRecord.name
//!     NodeId hit;              // 16 bytes: who may use the name
//!     uint64 expires;          // Unix time, seconds
//!     opaque signer[32];       // the signer's Ed25519 public key
//!     opaque signature[64];    // Ed25519 over GRANT_CONTEXT || all the fields above
//! } NameGrant;
//! ```

use super::{valid_name, Decode, Encode, NodeId, Reader, Sink, WireError};

/// Prefix of the signed bytes: a grant's signature cannot be taken for any other signature
/// a key makes (RELOAD values, HIP packets).
pub const GRANT_CONTEXT: &[u8] = b"hipbone name grant\0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameGrant {
    pub name: Vec<u8>,
    pub hit: NodeId,
    pub expires: u64,
    pub signer: [u8; 32],
    pub signature: [u8; 64],
}

impl NameGrant {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = GRANT_CONTEXT.to_vec();
        let mut unsigned = self.clone();
        unsigned.signature = [0; 64];
        let bytes = unsigned.to_bytes();
        out.extend_from_slice(&bytes[..bytes.len() - 64]);
        out
    }
}

impl Decode for NameGrant {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let name = r.opaque(1)?.to_vec();
        if !valid_name(&name) {
            return Err(WireError::Invalid("name"));
        }
        Ok(NameGrant {
            name,
            hit: NodeId::read(r)?,
            expires: r.u64()?,
            signer: r.array()?,
            signature: r.array()?,
        })
    }
}

impl Encode for NameGrant {
    fn write(&self, w: &mut dyn Sink) {
        w.opaque(1, &self.name);
        self.hit.write(w);
        w.u64(self.expires);
        w.put(&self.signer);
        w.put(&self.signature);
    }
}

repr_methods!(NameGrant);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::hex;

    /// Known answer: "alice.lab.example" for 2001:25::1 until 2027-01-01T00:00:00Z, signer
    /// key 32 × 0x11, signature 64 × 0x22 (the layout only; signatures are checked in
    /// `names`).
    const ALICE: &str = "11 616c6963652e6c61622e6578616d706c65 | \
                         20010025000000000000000000000001 | 000000006b36ec80";

    fn alice() -> NameGrant {
        let mut hit = [0u8; 16];
        hit[..4].copy_from_slice(&[0x20, 0x01, 0x00, 0x25]);
        hit[15] = 1;
        NameGrant {
            name: b"alice.lab.example".to_vec(),
            hit: NodeId(hit),
            expires: 1_798_761_600,
            signer: [0x11; 32],
            signature: [0x22; 64],
        }
    }

    fn alice_bytes() -> Vec<u8> {
        let mut b = hex(ALICE);
        b.extend_from_slice(&[0x11; 32]);
        b.extend_from_slice(&[0x22; 64]);
        b
    }

    #[test]
    fn known_answer_both_ways() {
        assert_eq!(alice().to_bytes(), alice_bytes());
        assert_eq!(NameGrant::parse(&alice_bytes()).unwrap(), alice());
    }

    #[test]
    fn the_signature_covers_every_field_but_itself() {
        let g = alice();
        let signed = g.signed_bytes();
        assert!(signed.starts_with(GRANT_CONTEXT));
        assert_eq!(
            &signed[GRANT_CONTEXT.len()..],
            &alice_bytes()[..alice_bytes().len() - 64]
        );
        let mut other = g.clone();
        other.signature = [0x33; 64];
        assert_eq!(other.signed_bytes(), signed);
        other.expires += 1;
        assert_ne!(other.signed_bytes(), signed);
    }

    #[test]
    fn malformed_grants_are_errors() {
        let good = alice_bytes();
        for cut in 0..good.len() {
            assert!(NameGrant::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(NameGrant::parse(&trailing), Err(WireError::TrailingBytes));
        let mut upper = good;
        upper[1] = b'A';
        assert_eq!(NameGrant::parse(&upper), Err(WireError::Invalid("name")));
    }
}
