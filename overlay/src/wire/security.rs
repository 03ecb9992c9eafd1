//! The security block (RFC 6940 §6.3.4) and the signature structure it shares with stored
//! data (§7.1).
//!
//! Our profile (R9 of the digest): certificates are `GenericCertificate`s of type 2 (Raw
//! Public Key, RFC 7250) holding the DER SubjectPublicKeyInfo of an Ed25519 key; signatures
//! use `{hash 8 "intrinsic", signature 7 ed25519}`; the signer is named by
//! `SignerIdentity::CertHash` (SHA-256 of that SPKI). The verifier recomputes the HIT from
//! the key and requires it to equal the signer's Node-ID, in place of an X.509 chain. This
//! module only encodes: hashing and verifying belong to the message layer.

use super::{Decode, Encode, ReadExt, Reader, Sink, WireError, WriteExt};

/// TLS CertificateType (RFC 6091, RFC 7250). Unknown values survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertificateType {
    X509,         // 0
    OpenPgp,      // 1
    RawPublicKey, // 2
    Unknown(u8),
}

hip::raw_conversions!(CertificateType: u8 {
    X509 = 0,
    OpenPgp = 1,
    RawPublicKey = 2,
});

/// TLS 1.2 HashAlgorithm (RFC 5246 §7.4.1.4.1, RFC 8422 for 8). Unknown values survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    None,      // 0
    Md5,       // 1
    Sha1,      // 2
    Sha224,    // 3
    Sha256,    // 4
    Sha384,    // 5
    Sha512,    // 6
    Intrinsic, // 8: the signature algorithm hashes for itself (Ed25519)
    Unknown(u8),
}

hip::raw_conversions!(HashAlgorithm: u8 {
    None = 0,
    Md5 = 1,
    Sha1 = 2,
    Sha224 = 3,
    Sha256 = 4,
    Sha384 = 5,
    Sha512 = 6,
    Intrinsic = 8,
});

/// TLS 1.2 SignatureAlgorithm (RFC 5246, RFC 8422 for 7 and 8). Unknown values survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    Anonymous, // 0
    Rsa,       // 1
    Dsa,       // 2
    Ecdsa,     // 3
    Ed25519,   // 7
    Ed448,     // 8
    Unknown(u8),
}

hip::raw_conversions!(SignatureAlgorithm: u8 {
    Anonymous = 0,
    Rsa = 1,
    Dsa = 2,
    Ecdsa = 3,
    Ed25519 = 7,
    Ed448 = 8,
});

/// `SignatureAndHashAlgorithm`: hash first on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureAndHashAlgorithm {
    pub hash: HashAlgorithm,
    pub signature: SignatureAlgorithm,
}

impl SignatureAndHashAlgorithm {
    /// `{8, 7}`: our Ed25519 signatures (R9).
    pub const ED25519: Self = SignatureAndHashAlgorithm {
        hash: HashAlgorithm::Intrinsic,
        signature: SignatureAlgorithm::Ed25519,
    };
    /// `{0, 0}`: only for synthesised non-existent values in Fetch answers (§7.4.2).
    pub const ANONYMOUS: Self = SignatureAndHashAlgorithm {
        hash: HashAlgorithm::None,
        signature: SignatureAlgorithm::Anonymous,
    };
}

/// `SignerIdentity` (`identity_type:u8 length:u16 value`). The length field lets an
/// unknown type survive as raw bytes; a known type's value must fill its length exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerIdentity {
    /// Type 1: hash of the signer's certificate (our R9: SHA-256 of the SPKI).
    CertHash {
        hash: HashAlgorithm,
        digest: Vec<u8>,
    },
    /// Type 2: hash of Node-ID ‖ certificate, for multi-Node-ID certificates.
    CertHashNodeId {
        hash: HashAlgorithm,
        digest: Vec<u8>,
    },
    /// Type 3: no identity (synthesised values only).
    None,
    /// Another type (0 is invalid but kept, so the verifier decides).
    Unknown { ty: u8, value: Vec<u8> },
}

/// `Signature`: algorithm, signer identity, signature value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub algorithm: SignatureAndHashAlgorithm,
    pub identity: SignerIdentity,
    pub value: Vec<u8>,
}

impl Signature {
    /// `{0,0}`, identity none, empty value: the signature of a synthesised "does not
    /// exist" value, and the shape-test placeholder of vector V1.
    pub fn anonymous() -> Signature {
        Signature {
            algorithm: SignatureAndHashAlgorithm::ANONYMOUS,
            identity: SignerIdentity::None,
            value: Vec::new(),
        }
    }
}

/// `GenericCertificate`: a certificate type and opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericCertificate {
    pub ty: CertificateType,
    pub data: Vec<u8>,
}

/// DER `SubjectPublicKeyInfo` header of an Ed25519 key (RFC 8410): SEQUENCE { SEQUENCE {
/// OID 1.3.101.112 }, BIT STRING (0 unused bits) }, followed by the 32 key bytes.
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

impl GenericCertificate {
    /// A Raw Public Key certificate holding an Ed25519 key (R9): 44 bytes of SPKI.
    pub fn ed25519(key: &[u8; 32]) -> GenericCertificate {
        let mut data = ED25519_SPKI_PREFIX.to_vec();
        data.extend_from_slice(key);
        GenericCertificate {
            ty: CertificateType::RawPublicKey,
            data,
        }
    }

    /// The Ed25519 key of a Raw Public Key certificate in exactly the encoding
    /// [`ed25519`](Self::ed25519) writes; `None` for anything else. The key is not checked
    /// to be a valid point: the verifier does that.
    pub fn ed25519_key(&self) -> Option<[u8; 32]> {
        if self.ty != CertificateType::RawPublicKey {
            return None;
        }
        let key = self.data.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
        key.try_into().ok()
    }
}

/// `SecurityBlock`: the certificates needed to verify the message and its contents, and the
/// originator's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityBlock {
    pub certificates: Vec<GenericCertificate>,
    pub signature: Signature,
}

impl Decode for SignatureAndHashAlgorithm {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(SignatureAndHashAlgorithm {
            hash: r.u8()?.into(),
            signature: r.u8()?.into(),
        })
    }
}

impl Encode for SignatureAndHashAlgorithm {
    fn write(&self, w: &mut dyn Sink) {
        w.u8(self.hash.into());
        w.u8(self.signature.into());
    }
}

const IDENTITY_CERT_HASH: u8 = 1;
const IDENTITY_CERT_HASH_NODE_ID: u8 = 2;
const IDENTITY_NONE: u8 = 3;

impl Decode for SignerIdentity {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let ty = r.u8()?;
        let mut value = r.sub(2)?;
        let identity = match ty {
            IDENTITY_CERT_HASH => SignerIdentity::CertHash {
                hash: value.u8()?.into(),
                digest: value.opaque(1)?.to_vec(),
            },
            IDENTITY_CERT_HASH_NODE_ID => SignerIdentity::CertHashNodeId {
                hash: value.u8()?.into(),
                digest: value.opaque(1)?.to_vec(),
            },
            IDENTITY_NONE => SignerIdentity::None,
            ty => SignerIdentity::Unknown {
                ty,
                value: value.rest().to_vec(),
            },
        };
        value.finish()?;
        Ok(identity)
    }
}

impl Encode for SignerIdentity {
    fn write(&self, w: &mut dyn Sink) {
        match self {
            SignerIdentity::CertHash { hash, digest }
            | SignerIdentity::CertHashNodeId { hash, digest } => {
                let ty = match self {
                    SignerIdentity::CertHash { .. } => IDENTITY_CERT_HASH,
                    _ => IDENTITY_CERT_HASH_NODE_ID,
                };
                w.u8(ty);
                w.nested(2, &|w| {
                    w.u8((*hash).into());
                    w.opaque(1, digest);
                });
            }
            SignerIdentity::None => {
                w.u8(IDENTITY_NONE);
                w.u16(0);
            }
            SignerIdentity::Unknown { ty, value } => {
                // A known type number here would parse back as that type, not as Unknown.
                if matches!(
                    *ty,
                    IDENTITY_CERT_HASH | IDENTITY_CERT_HASH_NODE_ID | IDENTITY_NONE
                ) {
                    w.overflow();
                }
                w.u8(*ty);
                w.opaque(2, value);
            }
        }
    }
}

impl Decode for Signature {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Signature {
            algorithm: SignatureAndHashAlgorithm::read(r)?,
            identity: SignerIdentity::read(r)?,
            value: r.opaque(2)?.to_vec(),
        })
    }
}

impl Encode for Signature {
    fn write(&self, w: &mut dyn Sink) {
        self.algorithm.write(w);
        self.identity.write(w);
        w.opaque(2, &self.value);
    }
}

impl Decode for GenericCertificate {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(GenericCertificate {
            ty: r.u8()?.into(),
            data: r.opaque(2)?.to_vec(),
        })
    }
}

impl Encode for GenericCertificate {
    fn write(&self, w: &mut dyn Sink) {
        w.u8(self.ty.into());
        w.opaque(2, &self.data);
    }
}

impl Decode for SecurityBlock {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(SecurityBlock {
            certificates: r.list(2)?,
            signature: Signature::read(r)?,
        })
    }
}

impl Encode for SecurityBlock {
    fn write(&self, w: &mut dyn Sink) {
        w.list(2, &self.certificates);
        self.signature.write(w);
    }
}

repr_methods!(SignerIdentity);
repr_methods!(Signature);
repr_methods!(GenericCertificate);
repr_methods!(SecurityBlock);

#[cfg(test)]
pub(super) mod tests {
    use super::super::testutil::{both_ways, hex, mutate};
    use super::*;

    /// V1's empty security block: no certificates, `{0,0}`, identity none, no value.
    pub fn empty_block() -> (Vec<u8>, SecurityBlock) {
        (
            hex("0000 | 00 00 | 03 0000 | 0000"),
            SecurityBlock {
                certificates: vec![],
                signature: Signature::anonymous(),
            },
        )
    }

    /// V2's placeholder signature: `{8,7}`, cert_hash SHA-256 of 32 zero bytes, 64 zeros.
    pub fn v2_signature() -> (Vec<u8>, Signature) {
        let mut bytes = hex("08 07 | 01 0022 04 20");
        bytes.extend_from_slice(&[0; 32]);
        bytes.extend_from_slice(&hex("0040"));
        bytes.extend_from_slice(&[0; 64]);
        let sig = Signature {
            algorithm: SignatureAndHashAlgorithm::ED25519,
            identity: SignerIdentity::CertHash {
                hash: HashAlgorithm::Sha256,
                digest: vec![0; 32],
            },
            value: vec![0; 64],
        };
        (bytes, sig)
    }

    /// V2's security block: one Raw Public Key certificate (zero Ed25519 key) and the
    /// placeholder signature.
    pub fn v2_block() -> (Vec<u8>, SecurityBlock) {
        let mut bytes = hex("002f | 02 002c");
        bytes.extend_from_slice(&ED25519_SPKI_PREFIX);
        bytes.extend_from_slice(&[0; 32]);
        let (sig_bytes, signature) = v2_signature();
        bytes.extend_from_slice(&sig_bytes);
        let block = SecurityBlock {
            certificates: vec![GenericCertificate::ed25519(&[0; 32])],
            signature,
        };
        (bytes, block)
    }

    #[test]
    fn blocks_and_signatures_both_ways() {
        for (bytes, block) in [empty_block(), v2_block()] {
            both_ways(
                &bytes,
                &block,
                SecurityBlock::parse,
                SecurityBlock::to_bytes,
            );
        }
        let (bytes, sig) = v2_signature();
        both_ways(&bytes, &sig, Signature::parse, Signature::to_bytes);
    }

    #[test]
    fn signer_identities_both_ways() {
        let cases = [
            (
                hex("02 0005 02 03 aabbcc"),
                SignerIdentity::CertHashNodeId {
                    hash: HashAlgorithm::Sha1,
                    digest: hex("aabbcc"),
                },
            ),
            (hex("03 0000"), SignerIdentity::None),
            (
                hex("09 0002 abcd"),
                SignerIdentity::Unknown {
                    ty: 9,
                    value: hex("abcd"),
                },
            ),
            (
                hex("00 0000"),
                SignerIdentity::Unknown {
                    ty: 0,
                    value: vec![],
                },
            ),
        ];
        for (bytes, identity) in cases {
            both_ways(
                &bytes,
                &identity,
                SignerIdentity::parse,
                SignerIdentity::to_bytes,
            );
        }
    }

    #[test]
    fn identity_value_must_fill_its_length() {
        // cert_hash whose digest ends before the identity length does.
        assert_eq!(
            SignerIdentity::parse(&hex("01 0004 04 01 aa bb")),
            Err(WireError::TrailingBytes)
        );
        // A digest running past the identity length.
        assert_eq!(
            SignerIdentity::parse(&hex("01 0003 04 05 aa ff ff ff")),
            Err(WireError::Truncated)
        );
        // "none" with a value.
        assert_eq!(
            SignerIdentity::parse(&hex("03 0001 00")),
            Err(WireError::TrailingBytes)
        );
    }

    #[test]
    fn unknown_identity_with_a_known_number_is_not_encodable() {
        let fake = SignerIdentity::Unknown {
            ty: 3,
            value: vec![],
        };
        assert!(!fake.encodable());
        assert!(SignerIdentity::None.encodable());
    }

    #[test]
    fn ed25519_raw_public_key_helpers() {
        let key = [7; 32];
        let cert = GenericCertificate::ed25519(&key);
        assert_eq!(cert.data.len(), 44);
        assert_eq!(cert.ed25519_key(), Some(key));
        let x509 = GenericCertificate {
            ty: CertificateType::X509,
            ..cert.clone()
        };
        assert_eq!(x509.ed25519_key(), None);
        let mut short = cert.clone();
        short.data.pop();
        assert_eq!(short.ed25519_key(), None);
        let mut other_oid = cert;
        other_oid.data[8] = 0x71; // Ed448
        assert_eq!(other_oid.ed25519_key(), None);
    }

    #[test]
    fn algorithm_numbers_round_trip() {
        for v in 0..=u8::MAX {
            assert_eq!(u8::from(CertificateType::from(v)), v);
            assert_eq!(u8::from(HashAlgorithm::from(v)), v);
            assert_eq!(u8::from(SignatureAlgorithm::from(v)), v);
        }
        assert_eq!(HashAlgorithm::from(7), HashAlgorithm::Unknown(7));
        assert_eq!(CertificateType::from(2), CertificateType::RawPublicKey);
    }

    #[test]
    fn random_mutations_of_security_blocks() {
        let seeds = vec![empty_block().0, v2_block().0];
        let parsed = mutate(
            &seeds,
            5000,
            0xfeed_beef,
            SecurityBlock::parse,
            SecurityBlock::to_bytes,
        );
        assert!(parsed > 100 && parsed < 4500, "{parsed}");
    }
}
