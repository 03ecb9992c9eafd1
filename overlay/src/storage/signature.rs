//! Per-value signatures (RFC 6940 §7.1) in our certificate-less profile (R9).
//!
//! A value is signed with the writer's Ed25519 host key over
//! [`StoredData::signed_bytes`], algorithm `{8, 7}`. The signer is named by
//! `SignerIdentity::CertHash`: SHA-256 of the key's Raw Public Key certificate (the 44-byte
//! SPKI of [`GenericCertificate::ed25519`]). The certificate itself travels in the
//! message's security block, so verifying needs the set of certificates that came with the
//! value ([`Certificates`]). There is no chain to check: the key's HIT *is* the signer's
//! Node-ID, so "the Node-ID in the certificate" of RFC 6940's access rules is the HIT
//! recomputed from the key, and no value can claim a Node-ID its key does not hash to.

use std::collections::BTreeMap;

use hip::identity::{HostIdentity, PublicIdentity};

use super::StorageError;
use crate::wire::{
    CertificateType, GenericCertificate, HashAlgorithm, KindId, NodeId, ResourceId, Signature,
    SignatureAndHashAlgorithm, SignerIdentity, StoreKindData, StoreReq, StoredData,
    StoredDataValue,
};

/// Who signed a value: the Node-ID (HIT) and the key it was derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signer {
    pub node: NodeId,
    /// The Ed25519 public key, kept so that the certificate can be sent on with the value.
    pub key: [u8; 32],
}

impl Signer {
    /// The Raw Public Key certificate that names this signer.
    pub fn certificate(&self) -> GenericCertificate {
        GenericCertificate::ed25519(&self.key)
    }
}

/// SHA-256 of a certificate's bytes: what `SignerIdentity::CertHash` carries (R9).
fn cert_digest(cert: &GenericCertificate) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, &cert.data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The `SignerIdentity` that names the holder of `key`: cert_hash, SHA-256 of its SPKI.
pub fn signer_identity(key: &[u8; 32]) -> SignerIdentity {
    SignerIdentity::CertHash {
        hash: HashAlgorithm::Sha256,
        digest: cert_digest(&GenericCertificate::ed25519(key)).to_vec(),
    }
}

/// The certificates a message brought, indexed by their cert hash, keys already checked.
/// Bounded by [`Certificates::MAX`]; beyond it, certificates are ignored (values signed by
/// them then fail with [`StorageError::UnknownSigner`]).
#[derive(Debug, Clone, Default)]
pub struct Certificates {
    by_digest: BTreeMap<[u8; 32], PublicIdentity>,
}

impl Certificates {
    /// One per signer of a Kind's fullest Resource (16 dictionary entries, 64 array
    /// entries) with room to spare; a message carries at most 12 KiB of them at 47 bytes.
    pub const MAX: usize = 256;

    pub fn new() -> Certificates {
        Certificates::default()
    }

    /// The usable certificates of a security block: Raw Public Key Ed25519 certificates
    /// whose key is a valid, canonical point. Others are skipped, not an error: they may
    /// serve the message layer, and a value that needs one fails on its own.
    pub fn from_block(certs: &[GenericCertificate]) -> Certificates {
        let mut c = Certificates::new();
        for cert in certs {
            c.insert(cert);
        }
        c
    }

    /// Adds one certificate; false if it is not a usable Ed25519 key or the set is full.
    pub fn insert(&mut self, cert: &GenericCertificate) -> bool {
        if cert.ty != CertificateType::RawPublicKey || self.by_digest.len() >= Certificates::MAX {
            return false;
        }
        let Some(key) = cert.ed25519_key() else {
            return false;
        };
        let Ok(identity) = PublicIdentity::from_public_bytes(key) else {
            return false;
        };
        self.by_digest.insert(cert_digest(cert), identity);
        true
    }

    /// Adds our own key (a node verifying what it signed itself, or building a message).
    pub fn insert_identity(&mut self, identity: &PublicIdentity) -> bool {
        self.insert(&GenericCertificate::ed25519(&identity.public_bytes()))
    }

    /// The key a `SignerIdentity` names, if it is a cert_hash (SHA-256) of one of ours.
    pub fn lookup(&self, identity: &SignerIdentity) -> Option<&PublicIdentity> {
        match identity {
            SignerIdentity::CertHash {
                hash: HashAlgorithm::Sha256,
                digest,
            } => {
                let digest: [u8; 32] = digest.as_slice().try_into().ok()?;
                self.by_digest.get(&digest)
            }
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

/// Signs `data` as a value of `kind` at `resource` by `identity`: sets its signature
/// (algorithm `{8, 7}`, cert_hash identity of our key) over
/// [`StoredData::signed_bytes`]. Everything else in `data` must be final: the storage
/// time and the value are signed; the lifetime and an array index are not.
pub fn sign_value(
    identity: &HostIdentity,
    resource: &ResourceId,
    kind: KindId,
    data: &mut StoredData,
) {
    // The identity is part of the signed bytes, so it goes in first.
    data.signature = Signature {
        algorithm: SignatureAndHashAlgorithm::ED25519,
        identity: signer_identity(&identity.public().public_bytes()),
        value: Vec::new(),
    };
    let sig = identity.sign(&data.signed_bytes(resource, kind));
    data.signature.value = sig.to_vec();
}

/// An original Store of one value of `kind` at `resource`, signed by `identity`: what a
/// node writes of its own (`DataValue.exists` true, generation 0 = unconditional).
pub fn signed_store(
    identity: &HostIdentity,
    resource: ResourceId,
    kind: KindId,
    storage_time: u64,
    lifetime: u32,
    value: StoredDataValue,
) -> StoreReq {
    let mut data = StoredData {
        storage_time,
        lifetime,
        value,
        signature: Signature::anonymous(),
    };
    sign_value(identity, &resource, kind, &mut data);
    StoreReq {
        resource,
        replica_number: 0,
        kind_data: vec![StoreKindData {
            kind,
            generation: 0,
            values: vec![data],
        }],
    }
}

/// True for a synthesised "no such value" entry of a Fetch answer (RFC 6940 §7.4.2):
/// `exists` false, `{0,0}` algorithm, identity none, empty signature. It carries nothing
/// to verify and asserts nothing but absence.
pub fn is_synthetic(data: &StoredData) -> bool {
    !data.value.data().exists && data.signature == Signature::anonymous()
}

/// Checks the signature of a value of `kind` at `resource`: algorithm `{8, 7}`, a
/// cert_hash identity naming one of `certs`, and a strict Ed25519 verification. Returns
/// the signer, whose Node-ID is the HIT of the key (R9). Access rules are
/// [`access::check`](super::access::check)'s business.
pub fn verify_value(
    resource: &ResourceId,
    kind: KindId,
    data: &StoredData,
    certs: &Certificates,
) -> Result<Signer, StorageError> {
    if data.signature.algorithm != SignatureAndHashAlgorithm::ED25519 {
        return Err(StorageError::UnsupportedSignature(data.signature.algorithm));
    }
    let key = certs
        .lookup(&data.signature.identity)
        .ok_or(StorageError::UnknownSigner)?;
    key.verify(&data.signed_bytes(resource, kind), &data.signature.value)
        .map_err(|_| StorageError::BadSignature)?;
    Ok(Signer {
        node: NodeId::from(key.hit()),
        key: key.public_bytes(),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::id::resource_id;
    use crate::storage::kind::HIT_LOCATOR;
    use crate::wire::{DataModel, DataValue};

    pub fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(core::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// RFC 8032 §7.1 TEST 1's secret key (public key d75a9801…511a).
    pub fn rfc8032_identity() -> HostIdentity {
        HostIdentity::from_secret(
            hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .try_into()
                .unwrap(),
        )
    }

    /// The known-answer value: a HIT-LOCATOR of RFC 8032 TEST 1's key at H(its raw HIT),
    /// storage time 1 700 000 000 000 ms, lifetime 600 s, value "hipbone".
    fn kat_value(id: &HostIdentity) -> (ResourceId, StoredData) {
        let resource = resource_id(&id.hit().0);
        let mut data = StoredData {
            storage_time: 1_700_000_000_000,
            lifetime: 600,
            value: StoredDataValue::Single(DataValue {
                exists: true,
                value: b"hipbone".to_vec(),
            }),
            signature: Signature::anonymous(),
        };
        sign_value(id, &resource, HIT_LOCATOR, &mut data);
        (resource, data)
    }

    /// Known answer, computed independently with Python 3 (`hashlib`, `cryptography`
    /// 48.0.0), not with this crate:
    ///
    /// ```text
    /// from hashlib import shake_128, sha1, sha256
    /// from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    /// sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex("9d61…7f60"))
    /// pk = sk.public_key().public_bytes_raw()                      # d75a9801…511a
    /// ctx = bytes.fromhex("f0eff02fbff43d0fe7930c3c6e6174ea")
    /// hit = bytes.fromhex("20010025") + shake_128(ctx + b"\x00\x01\x00\x00" + pk).digest(12)
    /// rid = bytes.fromhex("20010025") + sha1(hit).digest()[4:16]
    /// spki = bytes.fromhex("302a300506032b6570032100") + pk
    /// ident = b"\x01\x00\x22\x04\x20" + sha256(spki).digest()
    /// value = b"\x01" + (7).to_bytes(4, "big") + b"hipbone"
    /// signed = bytes([16]) + rid + (0xF0000001).to_bytes(4, "big") \
    ///          + (1700000000000).to_bytes(8, "big") + value + ident
    /// sig = sk.sign(signed)
    /// body = (1700000000000).to_bytes(8, "big") + (600).to_bytes(4, "big") + value \
    ///        + b"\x08\x07" + ident + (64).to_bytes(2, "big") + sig
    /// stored = len(body).to_bytes(4, "big") + body
    /// ```
    #[test]
    fn known_answer_signed_value() {
        let id = rfc8032_identity();
        assert_eq!(
            id.public().public_bytes().to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        let (resource, data) = kat_value(&id);
        assert_eq!(resource.0, hex(KAT_RESOURCE));
        assert_eq!(data.signature.value, hex(KAT_SIGNATURE));
        assert_eq!(data.to_bytes(), hex(KAT_STORED));
        assert_eq!(
            StoredData::parse(&hex(KAT_STORED), DataModel::Single),
            Ok(data.clone())
        );
        let certs =
            Certificates::from_block(&[GenericCertificate::ed25519(&id.public().public_bytes())]);
        let signer = verify_value(&resource, HIT_LOCATOR, &data, &certs).unwrap();
        assert_eq!(signer.node, NodeId::from(id.hit()));
        assert_eq!(signer.node.0.to_vec(), hex(KAT_HIT));
    }

    const KAT_HIT: &str = "2001002594f86e7a36add203ed89625f";
    const KAT_RESOURCE: &str = "200100250b124100b26951580e6b5149";
    const KAT_SIGNATURE: &str = "d3f2184f003a118ca5718de75d6ecd8cc7ad18d3d2eaa78fa3b35ce4
        8486bfb007b7365668d097585e979299020ea7b607b5622476cb5a3d01da9e6162ba5202";
    /// length | storage_time | lifetime | exists, value | {8,7} | cert_hash SHA-256 | sig.
    const KAT_STORED: &str = "00000081 | 0000018bcfe56800 | 00000258 | 01 00000007 686970626f6e65
        | 0807 | 01 0022 04 20 06e3fd8fda29bb60ab59557de61edb0aecdb231134be30e75b455f8e1b792fa9
        | 0040 d3f2184f003a118ca5718de75d6ecd8cc7ad18d3d2eaa78fa3b35ce48486bfb007b7365668d09758
        5e979299020ea7b607b5622476cb5a3d01da9e6162ba5202";

    #[test]
    fn forged_and_foreign_signatures_are_refused() {
        let id = rfc8032_identity();
        let (resource, data) = kat_value(&id);
        let certs =
            Certificates::from_block(&[GenericCertificate::ed25519(&id.public().public_bytes())]);
        assert!(verify_value(&resource, HIT_LOCATOR, &data, &certs).is_ok());

        // No certificate for the signer.
        assert_eq!(
            verify_value(&resource, HIT_LOCATOR, &data, &Certificates::new()),
            Err(StorageError::UnknownSigner)
        );
        // Any change to a signed field, the kind or the resource.
        let mut changed = data.clone();
        changed.storage_time += 1;
        assert_eq!(
            verify_value(&resource, HIT_LOCATOR, &changed, &certs),
            Err(StorageError::BadSignature)
        );
        assert_eq!(
            verify_value(&resource, HIT_LOCATOR + 1, &data, &certs),
            Err(StorageError::BadSignature)
        );
        assert_eq!(
            verify_value(&resource_id(b"x"), HIT_LOCATOR, &data, &certs),
            Err(StorageError::BadSignature)
        );
        let mut flipped = data.clone();
        flipped.signature.value[10] ^= 1;
        assert_eq!(
            verify_value(&resource, HIT_LOCATOR, &flipped, &certs),
            Err(StorageError::BadSignature)
        );
        // The lifetime is not signed (replicas shorten it).
        let mut shorter = data.clone();
        shorter.lifetime = 1;
        assert!(verify_value(&resource, HIT_LOCATOR, &shorter, &certs).is_ok());
        // Another key signing while claiming our identity.
        let mallory = HostIdentity::from_secret([9; 32]);
        let mut forged = data.clone();
        forged.signature.value = mallory
            .sign(&forged.signed_bytes(&resource, HIT_LOCATOR))
            .to_vec();
        assert_eq!(
            verify_value(&resource, HIT_LOCATOR, &forged, &certs),
            Err(StorageError::BadSignature)
        );
        // Anonymous and other algorithms.
        let mut anon = data.clone();
        anon.signature = Signature::anonymous();
        assert!(matches!(
            verify_value(&resource, HIT_LOCATOR, &anon, &certs),
            Err(StorageError::UnsupportedSignature(_))
        ));
        // A wrong-length digest names nobody.
        let mut short = data;
        short.signature.identity = SignerIdentity::CertHash {
            hash: HashAlgorithm::Sha256,
            digest: vec![0; 31],
        };
        assert_eq!(
            verify_value(&resource, HIT_LOCATOR, &short, &certs),
            Err(StorageError::UnknownSigner)
        );
    }

    #[test]
    fn certificates_skip_what_they_cannot_use() {
        let key = rfc8032_identity().public().public_bytes();
        let good = GenericCertificate::ed25519(&key);
        let x509 = GenericCertificate {
            ty: CertificateType::X509,
            ..good.clone()
        };
        // Not a point on the curve (y = 2 has no x).
        let mut bad_key = [0u8; 32];
        bad_key[0] = 2;
        let certs = Certificates::from_block(&[x509, GenericCertificate::ed25519(&bad_key), good]);
        assert_eq!(certs.len(), 1);
        assert!(certs.lookup(&signer_identity(&key)).is_some());
        assert!(certs.lookup(&SignerIdentity::None).is_none());

        let mut full = Certificates::new();
        for i in 0..Certificates::MAX + 10 {
            let mut secret = [0u8; 32];
            secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
            full.insert_identity(HostIdentity::from_secret(secret).public());
        }
        assert_eq!(full.len(), Certificates::MAX);
    }

    #[test]
    fn synthetic_values_are_recognised() {
        let absent = StoredData {
            storage_time: 0,
            lifetime: 0,
            value: StoredDataValue::Dictionary {
                key: vec![1],
                value: DataValue {
                    exists: false,
                    value: vec![],
                },
            },
            signature: Signature::anonymous(),
        };
        assert!(is_synthetic(&absent));
        let (_, signed) = kat_value(&rfc8032_identity());
        assert!(!is_synthetic(&signed));
    }
}
