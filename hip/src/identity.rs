//! Host identities: Ed25519 keys (RFC 9374 EdDSA HI), their HOST_ID encoding, the Host
//! Identity Tag (ORCHIDv2, RFC 7343, HIT suite 5) and LSIs.
//!
//! HIT choice (see docs/PROTOCOL.md): reading A of shared/spec/hip.md §1.3,
//! `HIT = 2001:20::/28 | 5 | SHAKE128(ContextID || HI)[0..12]` where HI is the HOST_ID
//! Host Identity field `curve(2) | 0x0000 | public key` (36 bytes for Ed25519).
//!
//! This module owns the only code that turns key bytes into a HIT ([`hit_from_hi`]), so the
//! reading can be changed in one place. Everything that comes from a peer goes through
//! [`PublicIdentity::from_host_id`], which refuses anything but a canonical, non-weak
//! Ed25519 key in exactly that encoding; signatures are checked with strict verification.

use crate::wire::HostId;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use tiny_keccak::{Hasher, Shake, Xof};

/// The ORCHIDv2 prefix 2001:20::/28, as its first 28 bits in a u32 (`0x2001002`).
pub const ORCHID_PREFIX: u32 = 0x0200_1002;
/// HIP's ORCHID Context ID (RFC 7401 §3.2).
pub const HIP_CONTEXT_ID: [u8; 16] = [
    0xF0, 0xEF, 0xF0, 0x2F, 0xBF, 0xF4, 0x3D, 0x0F, 0xE7, 0x93, 0x0C, 0x3C, 0x6E, 0x61, 0x74, 0xEA,
];
/// HI algorithm EdDSA (RFC 9374).
pub const ALGORITHM_EDDSA: u16 = 13;
/// EdDSA curve label EdDSA25519 (RFC 9374 Table 5).
pub const CURVE_ED25519: u16 = 1;
/// HIT suite 5: EdDSA with cSHAKE128 / KMAC128 (RFC 9374 §3.4.2).
pub const HIT_SUITE_EDDSA: u8 = 5;
/// Length of the Ed25519 Host Identity field: curve (2) | NULL (2) | public key (32).
pub const ED25519_HI_LEN: usize = 36;

/// A Host Identity Tag: 128 bits, shown and routed as an IPv6 address in 2001:20::/28.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hit(pub [u8; 16]);

impl Hit {
    /// The all-zero NULL HIT of an opportunistic I1.
    pub const NULL: Hit = Hit([0; 16]);

    /// True if the address lies in 2001:20::/28.
    pub fn is_orchid(&self) -> bool {
        let first = u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
        first >> 4 == ORCHID_PREFIX
    }

    /// The 4-bit OGA / HIT suite ID.
    pub fn suite(&self) -> u8 {
        self.0[3] & 0x0f
    }

    /// The HIT as an IPv6 address (the same 16 bytes).
    pub fn to_ipv6(&self) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::from(self.0)
    }

    /// The 16 bytes of `a`, whether or not they are an ORCHID (use `FromStr` or
    /// [`Hit::is_orchid`] to check).
    pub fn from_ipv6(a: std::net::Ipv6Addr) -> Hit {
        Hit(a.octets())
    }

    /// True for the all-zero NULL HIT.
    pub fn is_null(&self) -> bool {
        *self == Hit::NULL
    }
}

impl core::fmt::Display for Hit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.to_ipv6(), f)
    }
}

// A HIT is an address people read in logs; the array form would only get in the way.
impl core::fmt::Debug for Hit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.to_ipv6(), f)
    }
}

impl core::str::FromStr for Hit {
    type Err = IdentityError;

    /// Parses IPv6 text; text that is not an IPv6 address, or an address outside
    /// 2001:20::/28, is [`IdentityError::NotAHit`].
    fn from_str(s: &str) -> Result<Hit, IdentityError> {
        let addr: std::net::Ipv6Addr = s.parse().map_err(|_| IdentityError::NotAHit)?;
        let hit = Hit::from_ipv6(addr);
        if hit.is_orchid() {
            Ok(hit)
        } else {
            Err(IdentityError::NotAHit)
        }
    }
}

impl From<Hit> for std::net::Ipv6Addr {
    fn from(h: Hit) -> std::net::Ipv6Addr {
        h.to_ipv6()
    }
}

/// Computes the suite-5 HIT of a Host Identity field (the HOST_ID `hi` bytes).
///
/// `cSHAKE128(X = ContextID || HI, L = 96, N = "", S = "")`, which is SHAKE128 because
/// cSHAKE with empty N and S is defined to be SHAKE (SP 800-185 §3.3). RFC 9374 §3.4.2: the
/// XOF output is used as is, not the middle bits as for fixed-length hashes.
pub fn hit_from_hi(hi: &[u8]) -> Hit {
    let mut shake = Shake::v128();
    shake.update(&HIP_CONTEXT_ID);
    shake.update(hi);
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&((ORCHID_PREFIX << 4) | u32::from(HIT_SUITE_EDDSA)).to_be_bytes());
    shake.squeeze(&mut out[4..]);
    Hit(out)
}

/// What is wrong with a key, HOST_ID or signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    UnsupportedAlgorithm(u16),
    UnsupportedCurve(u16),
    BadLength,
    /// The bytes are not a valid Ed25519 point (also: a non-canonical or small-order
    /// encoding, or a non-zero NULL field in the Host Identity).
    BadKey,
    BadSignature,
    /// Text that is not an IPv6 address, or an address outside 2001:20::/28.
    NotAHit,
}

impl core::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IdentityError::UnsupportedAlgorithm(a) => write!(f, "unsupported HI algorithm {a}"),
            IdentityError::UnsupportedCurve(c) => write!(f, "unsupported EdDSA curve {c}"),
            IdentityError::BadLength => f.write_str("host identity has the wrong length"),
            IdentityError::BadKey => f.write_str("not a valid Ed25519 public key"),
            IdentityError::BadSignature => f.write_str("signature does not verify"),
            IdentityError::NotAHit => f.write_str("not a HIT (an IPv6 address in 2001:20::/28)"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// Our own identity: the Ed25519 secret key and what derives from it.
/// `Debug` shows the HIT only; the secret never leaves except through `secret_bytes`.
pub struct HostIdentity {
    // SigningKey zeroizes itself on drop (ed25519-dalek's `zeroize` feature).
    signing: SigningKey,
    public: PublicIdentity,
}

impl HostIdentity {
    /// From the 32-byte Ed25519 secret (RFC 8032 private key).
    pub fn from_secret(secret: [u8; 32]) -> HostIdentity {
        let secret = zeroize::Zeroizing::new(secret);
        let signing = SigningKey::from_bytes(&secret);
        // A key derived from a secret scalar is always a valid, canonical, prime-order point.
        let public = PublicIdentity::from_verifying_key(signing.verifying_key());
        HostIdentity { signing, public }
    }

    pub fn secret_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.signing.to_bytes())
    }

    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    pub fn hit(&self) -> Hit {
        self.public.hit
    }

    /// PureEdDSA signature (RFC 8032).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }
}

impl core::fmt::Debug for HostIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostIdentity")
            .field("hit", &self.public.hit)
            .finish_non_exhaustive()
    }
}

/// A peer's identity as learned from its HOST_ID: verified to be a valid key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicIdentity {
    key: VerifyingKey,
    hit: Hit,
    // The HI is the key's bytes behind a fixed prefix, so only the DI is kept: every
    // association holds one of these.
    di_type: u8,
    di: Vec<u8>,
}

impl PublicIdentity {
    /// From a raw Ed25519 public key. Refuses encodings that are not a point, that are not
    /// canonical (the HIT hashes the bytes, so one key must have exactly one encoding), and
    /// small-order keys (no signature from them could pass strict verification).
    pub fn from_public_bytes(pk: [u8; 32]) -> Result<PublicIdentity, IdentityError> {
        let key = VerifyingKey::from_bytes(&pk).map_err(|_| IdentityError::BadKey)?;
        if key.is_weak() || key.to_edwards().compress().to_bytes() != pk {
            return Err(IdentityError::BadKey);
        }
        Ok(PublicIdentity::from_verifying_key(key))
    }

    /// Accepts algorithm 13, curve 1, HI = curve | 0x0000 | 32-byte key; DI is kept.
    pub fn from_host_id(h: &HostId) -> Result<PublicIdentity, IdentityError> {
        if h.algorithm != ALGORITHM_EDDSA {
            return Err(IdentityError::UnsupportedAlgorithm(h.algorithm));
        }
        if h.hi.len() < 2 {
            return Err(IdentityError::BadLength);
        }
        let curve = u16::from_be_bytes([h.hi[0], h.hi[1]]);
        if curve != CURVE_ED25519 {
            return Err(IdentityError::UnsupportedCurve(curve));
        }
        if h.hi.len() != ED25519_HI_LEN {
            return Err(IdentityError::BadLength);
        }
        // A non-zero NULL field would give a second encoding (and a second HIT) of one key.
        if h.hi[2..4] != [0, 0] {
            return Err(IdentityError::BadKey);
        }
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&h.hi[4..]);
        let mut id = PublicIdentity::from_public_bytes(pk)?;
        id.di_type = h.di_type;
        id.di = h.di.clone();
        Ok(id)
    }

    /// The HOST_ID parameter contents (with the DI it came with, if any).
    pub fn host_id(&self) -> HostId {
        HostId {
            algorithm: ALGORITHM_EDDSA,
            hi: ed25519_hi(&self.key),
            di_type: self.di_type,
            di: self.di.clone(),
        }
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn hit(&self) -> Hit {
        self.hit
    }

    /// Strict RFC 8032 verification (`verify_strict`: canonical S, no small-order R or A).
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        let sig = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| IdentityError::BadSignature)?;
        self.key
            .verify_strict(msg, &sig)
            .map_err(|_| IdentityError::BadSignature)
    }

    fn from_verifying_key(key: VerifyingKey) -> PublicIdentity {
        let hit = hit_from_hi(&ed25519_hi(&key));
        PublicIdentity {
            key,
            hit,
            di_type: 0,
            di: Vec::new(),
        }
    }
}

/// The HI of an Ed25519 key: curve | 0x0000 | the 32-byte key.
fn ed25519_hi(key: &VerifyingKey) -> Vec<u8> {
    let mut hi = Vec::with_capacity(ED25519_HI_LEN);
    hi.extend_from_slice(&CURVE_ED25519.to_be_bytes());
    hi.extend_from_slice(&[0, 0]);
    hi.extend_from_slice(key.as_bytes());
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{arr32, hex};
    use tiny_keccak::CShake;

    // RFC 8032 §7.1 TEST 1 and TEST 2 (shared/spec/hip.md §9 item 2).
    const T1_SK: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const T1_PK: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const T1_SIG: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    const T2_SK: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    const T2_PK: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const T2_SIG: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    #[test]
    fn ed25519_rfc8032_test1() {
        let id = HostIdentity::from_secret(arr32(T1_SK));
        assert_eq!(id.public().public_bytes().to_vec(), hex(T1_PK));
        let sig = id.sign(b"");
        assert_eq!(sig.to_vec(), hex(T1_SIG));
        id.public().verify(b"", &sig).unwrap();
        let peer = PublicIdentity::from_public_bytes(arr32(T1_PK)).unwrap();
        peer.verify(b"", &hex(T1_SIG)).unwrap();
        assert_eq!(peer.verify(b"x", &sig), Err(IdentityError::BadSignature));
    }

    #[test]
    fn ed25519_rfc8032_test2() {
        let id = HostIdentity::from_secret(arr32(T2_SK));
        assert_eq!(id.public().public_bytes().to_vec(), hex(T2_PK));
        let sig = id.sign(&[0x72]);
        assert_eq!(sig.to_vec(), hex(T2_SIG));
        let peer = PublicIdentity::from_public_bytes(arr32(T2_PK)).unwrap();
        peer.verify(&[0x72], &sig).unwrap();
        let mut bad = sig;
        bad[10] ^= 1;
        assert_eq!(peer.verify(&[0x72], &bad), Err(IdentityError::BadSignature));
        assert_eq!(
            peer.verify(&[0x72], &sig[..63]),
            Err(IdentityError::BadSignature)
        );
    }

    #[test]
    fn strict_verification_rejects_non_canonical_s() {
        // S + L (the group order) verifies under the lax rule of some libraries; strict
        // verification must refuse it (RFC 8032 §5.1.7 requires S < L).
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let peer = PublicIdentity::from_public_bytes(arr32(T1_PK)).unwrap();
        let mut sig: [u8; 64] = hex(T1_SIG).try_into().unwrap();
        let mut carry = 0u16;
        for k in 0..32 {
            let v = u16::from(sig[32 + k]) + u16::from(L[k]) + carry;
            sig[32 + k] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(peer.verify(b"", &sig), Err(IdentityError::BadSignature));
    }

    /// The pinned suite-5 HIT of shared/spec/hip.md §9 ("derived values" table, reading A
    /// with HI = curve | NULL | pk). The other five cells of that table are computed here
    /// with the same primitives and must differ from ours, so a change of reading shows.
    #[test]
    fn hit_of_rfc8032_test1_key() {
        let id = HostIdentity::from_secret(arr32(T1_SK));
        let expect: Hit = "2001:25:94f8:6e7a:36ad:d203:ed89:625f".parse().unwrap();
        assert_eq!(id.hit(), expect);
        assert_eq!(id.public().host_id().hi.len(), ED25519_HI_LEN);
        assert_eq!(hit_from_hi(&id.public().host_id().hi), expect);

        let pk = hex(T1_PK);
        let with_null = [&[0, 1, 0, 0][..], &pk].concat();
        let curve_only = [&[0, 1][..], &pk].concat();
        let reading_b = |hi: &[u8]| {
            let mut c = CShake::v128(b"", &HIP_CONTEXT_ID);
            c.update(hi);
            let mut out = [0u8; 16];
            out[..4].copy_from_slice(&[0x20, 0x01, 0x00, 0x25]);
            c.finalize(&mut out[4..]);
            Hit(out)
        };
        let others = [
            (
                reading_b(&with_null),
                "2001:25:9dbc:2ff3:b95a:8ae4:712:f3b3",
            ),
            (
                hit_from_hi(&curve_only),
                "2001:25:216:6d66:e1ef:913f:de44:a33a",
            ),
            (
                reading_b(&curve_only),
                "2001:25:c83a:4fb5:fb32:ec31:2588:deac",
            ),
            (hit_from_hi(&pk), "2001:25:9952:e1b6:84ad:ea37:f69b:e377"),
            (reading_b(&pk), "2001:25:52c2:69ad:c47d:27f9:f1ff:9b73"),
        ];
        for (got, want) in others {
            assert_eq!(got.to_string(), want);
            assert_ne!(got, id.hit());
        }
    }

    #[test]
    fn orchid_prefix_and_suite_bits() {
        let id = HostIdentity::from_secret(arr32(T2_SK));
        let h = id.hit();
        assert_eq!(&h.0[..4], &[0x20, 0x01, 0x00, 0x25]);
        assert!(h.is_orchid());
        assert_eq!(h.suite(), HIT_SUITE_EDDSA);
        // Edges of 2001:20::/28.
        assert!(Hit::from_ipv6("2001:20::".parse().unwrap()).is_orchid());
        assert!(Hit::from_ipv6("2001:2f:ffff::1".parse().unwrap()).is_orchid());
        assert!(!Hit::from_ipv6("2001:30::1".parse().unwrap()).is_orchid());
        assert!(!Hit::from_ipv6("2001:1f::1".parse().unwrap()).is_orchid());
        assert!(!Hit::NULL.is_orchid());
        assert!(Hit::NULL.is_null());
        assert_eq!(Hit::from_ipv6("2001:2a::".parse().unwrap()).suite(), 0xa);
    }

    #[test]
    fn hit_text_forms() {
        let h: Hit = "2001:25:94f8:6e7a:36ad:d203:ed89:625f".parse().unwrap();
        assert_eq!(h.to_string(), "2001:25:94f8:6e7a:36ad:d203:ed89:625f");
        assert_eq!(format!("{h:?}"), "2001:25:94f8:6e7a:36ad:d203:ed89:625f");
        assert_eq!(Hit::from_ipv6(h.to_ipv6()), h);
        assert_eq!("2001:db8::1".parse::<Hit>(), Err(IdentityError::NotAHit));
        assert_eq!("not an address".parse::<Hit>(), Err(IdentityError::NotAHit));
        assert_eq!("::".parse::<Hit>(), Err(IdentityError::NotAHit));
    }

    fn host_id_of(pk: &str) -> HostId {
        let hi = [&[0, 1, 0, 0][..], &hex(pk)].concat();
        HostId {
            algorithm: ALGORITHM_EDDSA,
            hi,
            di_type: 0,
            di: Vec::new(),
        }
    }

    #[test]
    fn host_id_round_trip_keeps_di() {
        let id = HostIdentity::from_secret(arr32(T1_SK));
        let mut h = id.public().host_id();
        assert_eq!(h, host_id_of(T1_PK));
        h.di_type = 1;
        h.di = b"\x04host\x07example\x00".to_vec();
        let peer = PublicIdentity::from_host_id(&h).unwrap();
        assert_eq!(peer.hit(), id.hit());
        assert_eq!(peer.host_id(), h);
        assert_eq!(peer.public_bytes(), id.public().public_bytes());
    }

    #[test]
    fn host_id_rejections() {
        let good = host_id_of(T1_PK);
        let mut h = good.clone();
        h.algorithm = 7;
        assert_eq!(
            PublicIdentity::from_host_id(&h),
            Err(IdentityError::UnsupportedAlgorithm(7))
        );
        let mut h = good.clone();
        h.hi[1] = 3;
        assert_eq!(
            PublicIdentity::from_host_id(&h),
            Err(IdentityError::UnsupportedCurve(3))
        );
        let mut h = good.clone();
        h.hi.pop();
        assert_eq!(
            PublicIdentity::from_host_id(&h),
            Err(IdentityError::BadLength)
        );
        let mut h = good.clone();
        h.hi.push(0);
        assert_eq!(
            PublicIdentity::from_host_id(&h),
            Err(IdentityError::BadLength)
        );
        let mut h = good.clone();
        h.hi.truncate(1);
        assert_eq!(
            PublicIdentity::from_host_id(&h),
            Err(IdentityError::BadLength)
        );
        // The 34-byte encoding without the NULL field is refused, not silently accepted.
        let mut h = good.clone();
        h.hi.drain(2..4);
        assert_eq!(
            PublicIdentity::from_host_id(&h),
            Err(IdentityError::BadLength)
        );
        let mut h = good.clone();
        h.hi[3] = 1;
        assert_eq!(PublicIdentity::from_host_id(&h), Err(IdentityError::BadKey));
    }

    #[test]
    fn bad_points_are_refused() {
        // y = 2 is not the y-coordinate of any Ed25519 point (x^2 would be a non-square).
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert_eq!(
            PublicIdentity::from_public_bytes(not_a_point),
            Err(IdentityError::BadKey)
        );
        // The identity point (y = 1) is small-order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicIdentity::from_public_bytes(identity),
            Err(IdentityError::BadKey)
        );
        // y = 3 is a point of large order; y = p + 3 encodes the same point non-canonically.
        // The dalek decoder takes both, so this is our own canonicity check at work.
        let mut canonical = [0u8; 32];
        canonical[0] = 3;
        assert!(PublicIdentity::from_public_bytes(canonical).is_ok());
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xf0;
        non_canonical[31] = 0x7f;
        assert!(VerifyingKey::from_bytes(&non_canonical).is_ok());
        assert_eq!(
            PublicIdentity::from_public_bytes(non_canonical),
            Err(IdentityError::BadKey)
        );
        let h = HostId {
            algorithm: ALGORITHM_EDDSA,
            hi: [&[0, 1, 0, 0][..], &not_a_point].concat(),
            di_type: 0,
            di: Vec::new(),
        };
        assert_eq!(PublicIdentity::from_host_id(&h), Err(IdentityError::BadKey));
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let id = HostIdentity::from_secret(arr32(T1_SK));
        let s = format!("{id:?}");
        assert!(s.contains("2001:25:94f8:6e7a:36ad:d203:ed89:625f"), "{s}");
        assert!(!s.to_lowercase().contains("9d61"), "{s}");
        assert_eq!(id.secret_bytes().to_vec(), hex(T1_SK));
    }
}
