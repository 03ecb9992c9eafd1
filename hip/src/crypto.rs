//! The crypto profile: everything that depends on the HIT suite and the DH group, behind
//! the [`Profile`] trait, plus HIP_CIPHER (ENCRYPTED) and the ESP transform's key sizes.
//!
//! hipbone's profile ([`EdX25519`]): HIT suite 5, RHASH = cSHAKE128 with 256-bit output and
//! empty N and S, HIP_MAC = KMAC128(key, data, 256 bits, S = ""), KEYMAT =
//! KMACXOF128(K = Kij, X = #I | #J | smaller HIT | larger HIT, S = "HIP KEYMAT"), DH = X25519
//! under group ID 13 (a private codepoint, see docs/PROTOCOL.md). Keys are drawn from KEYMAT
//! in the order of RFC 7401 §6.5 then RFC 7402 §7.
//!
//! Every secret this module hands out is wrapped in [`Zeroizing`], and no `Debug` impl here
//! prints key bytes (only lengths). Functions whose inputs come from the peer return
//! [`CryptoError`]; misuse by the local caller (a key of the wrong length) panics, because
//! the keys are drawn by this module at the lengths it states and anything else is a bug.

use crate::identity::Hit;
use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use tiny_keccak::{Hasher, IntoXof, Kmac, Shake, Xof};
use zeroize::Zeroizing;

/// X25519 (draft-moskowitz-hip-new-crypto numbering, as in OpenHIP's fork; not IANA).
pub const DH_GROUP_X25519: u8 = 13;
/// HIP_CIPHER IDs (RFC 7401 §5.2.8).
pub const HIP_CIPHER_NULL: u16 = 1;
pub const HIP_CIPHER_AES128_CBC: u16 = 2;
pub const HIP_CIPHER_AES256_CBC: u16 = 4;
/// ESP transform suite 13: AES-GCM with a 16-byte ICV (RFC 7402 §5.1.2, RFC 4106), 128-bit key.
pub const ESP_SUITE_AES128_GCM16: u16 = 13;
/// TRANSPORT_FORMAT_LIST entry for ESP (RFC 7402).
pub const TRANSPORT_FORMAT_ESP: u16 = 4095;

/// The customization string S of the KEYMAT KMACXOF128: separates KEYMAT from any other
/// KMAC use of Kij (HIP_MAC uses S = "").
pub const KEYMAT_CUSTOMIZATION: &[u8] = b"HIP KEYMAT";
/// RHASH_len of suite 5 in bytes (256 bits, as in draft-moskowitz-hip-new-crypto).
pub const EDX25519_RHASH_LEN: usize = 32;
/// HIP_MAC length and HIP integrity key length of suite 5 in bytes.
pub const EDX25519_MAC_LEN: usize = 32;
/// AES-GCM salt length drawn after the key (RFC 4106 §8.1).
pub const GCM_SALT_LEN: usize = 4;

/// The one static instance of our profile, for `&'static dyn Profile` holders.
pub static EDX25519: EdX25519 = EdX25519;

/// A failure of a cryptographic check or operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The peer's DH public value is malformed or yields an all-zero shared secret.
    BadDhPublic,
    /// ENCRYPTED did not decrypt (bad length or padding).
    Decrypt,
    UnsupportedCipher(u16),
}

impl core::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CryptoError::BadDhPublic => f.write_str("bad Diffie-Hellman public value"),
            CryptoError::Decrypt => f.write_str("ENCRYPTED parameter does not decrypt"),
            CryptoError::UnsupportedCipher(id) => write!(f, "unsupported HIP cipher {id}"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// An ephemeral DH key pair. The secret is zeroized on drop; `Debug` does not show it.
pub struct DhKeyPair {
    pub group: u8,
    // Raw bytes rather than an x25519 type so that another profile's group (P-256, MODP)
    // fits the same struct; each profile knows how to read its own secret.
    secret: Zeroizing<Vec<u8>>,
    pub public: Vec<u8>,
}

impl DhKeyPair {
    /// Assembles a key pair; for [`Profile`] implementations.
    pub fn from_parts(group: u8, secret: Zeroizing<Vec<u8>>, public: Vec<u8>) -> DhKeyPair {
        DhKeyPair {
            group,
            secret,
            public,
        }
    }

    /// The secret bytes, in the group's own encoding; for [`Profile`] implementations.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl core::fmt::Debug for DhKeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DhKeyPair")
            .field("group", &self.group)
            .field("public", &Hex(&self.public))
            .finish_non_exhaustive()
    }
}

/// Everything that a HIT suite and DH group decide. Object safe: `Host` holds a
/// `&'static dyn Profile`, so an RFC profile (ECDSA P-256, SHA-384, DH 7) can sit beside ours.
pub trait Profile: Send + Sync + core::fmt::Debug {
    /// The HIT suite ID (4 bits) whose RHASH/MAC/KDF this profile implements.
    fn hit_suite(&self) -> u8;
    /// RHASH output length in bytes (= #I and #J length).
    fn rhash_len(&self) -> usize;
    /// RHASH over the concatenation of `parts`; `out.len() == rhash_len()`.
    fn rhash(&self, parts: &[&[u8]], out: &mut [u8]);
    /// HIP_MAC length in bytes.
    fn mac_len(&self) -> usize;
    /// HIP integrity key length in bytes.
    fn integrity_key_len(&self) -> usize;
    /// HIP_MAC over `data`; `out.len() == mac_len()`.
    fn mac(&self, key: &[u8], data: &[u8], out: &mut [u8]);
    /// Fills `out` with KEYMAT (prefix-stable: a longer `out` extends a shorter one).
    /// `hit_i`/`hit_r` are sorted inside.
    fn keymat(&self, kij: &[u8], i: &[u8], j: &[u8], hit_i: &Hit, hit_r: &Hit, out: &mut [u8]);
    /// The one DH group this profile speaks.
    fn dh_group(&self) -> u8;
    /// A key pair from 32 random bytes supplied by the caller.
    fn dh_keypair(&self, random: [u8; 32]) -> DhKeyPair;
    /// The shared secret Kij. Rejects malformed or low-order peer values.
    fn dh_agree(
        &self,
        ours: &DhKeyPair,
        peer_public: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
}

/// hipbone's profile: Ed25519 HIs, suite 5, X25519.
#[derive(Debug, Clone, Copy, Default)]
pub struct EdX25519;

impl Profile for EdX25519 {
    fn hit_suite(&self) -> u8 {
        crate::identity::HIT_SUITE_EDDSA
    }

    fn rhash_len(&self) -> usize {
        EDX25519_RHASH_LEN
    }

    /// cSHAKE128(X, L = 256, N = "", S = ""), which SP 800-185 §3.3 defines to be SHAKE128.
    fn rhash(&self, parts: &[&[u8]], out: &mut [u8]) {
        debug_assert_eq!(out.len(), EDX25519_RHASH_LEN);
        let mut shake = Shake::v128();
        for p in parts {
            shake.update(p);
        }
        shake.finalize(out);
    }

    fn mac_len(&self) -> usize {
        EDX25519_MAC_LEN
    }

    fn integrity_key_len(&self) -> usize {
        EDX25519_MAC_LEN
    }

    /// KMAC128(K = key, X = data, L = 256, S = ""). KMAC binds L into the output, so `out`
    /// must be exactly `mac_len()` for the peer to agree.
    fn mac(&self, key: &[u8], data: &[u8], out: &mut [u8]) {
        debug_assert_eq!(out.len(), EDX25519_MAC_LEN);
        let mut kmac = Kmac::v128(key, b"");
        kmac.update(data);
        kmac.finalize(out);
    }

    /// KMACXOF128(K = Kij, X = #I | #J | smaller HIT | larger HIT, S = "HIP KEYMAT"). The XOF
    /// variant does not bind L, which is what makes KEYMAT prefix-stable (rekeying without
    /// new DH draws further bytes of the same stream).
    fn keymat(&self, kij: &[u8], i: &[u8], j: &[u8], hit_i: &Hit, hit_r: &Hit, out: &mut [u8]) {
        let (lo, hi) = if hit_i <= hit_r {
            (hit_i, hit_r)
        } else {
            (hit_r, hit_i)
        };
        let mut kmac = Kmac::v128(kij, KEYMAT_CUSTOMIZATION);
        kmac.update(i);
        kmac.update(j);
        kmac.update(&lo.0);
        kmac.update(&hi.0);
        kmac.into_xof().squeeze(out);
    }

    fn dh_group(&self) -> u8 {
        DH_GROUP_X25519
    }

    fn dh_keypair(&self, random: [u8; 32]) -> DhKeyPair {
        let secret = x25519_dalek::StaticSecret::from(random);
        let public = x25519_dalek::PublicKey::from(&secret).as_bytes().to_vec();
        DhKeyPair {
            group: DH_GROUP_X25519,
            secret: Zeroizing::new(secret.to_bytes().to_vec()),
            public,
        }
    }

    /// X25519 (RFC 7748 §5). Refuses a value of the wrong length and, per RFC 7748 §6.1, a
    /// low-order value, recognised by the all-zero result (the check is constant-time).
    fn dh_agree(
        &self,
        ours: &DhKeyPair,
        peer_public: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let peer: [u8; 32] = peer_public
            .try_into()
            .map_err(|_| CryptoError::BadDhPublic)?;
        let mut secret = Zeroizing::new([0u8; 32]);
        // A key pair of another group here is a local bug, not the peer's fault.
        assert!(
            ours.group == DH_GROUP_X25519 && ours.secret.len() == 32,
            "EdX25519::dh_agree with a key pair of group {}",
            ours.group
        );
        secret.copy_from_slice(&ours.secret);
        let secret = x25519_dalek::StaticSecret::from(*secret);
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(CryptoError::BadDhPublic);
        }
        Ok(Zeroizing::new(shared.as_bytes().to_vec()))
    }
}

/// HIP_CIPHER algorithms for the ENCRYPTED parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HipCipher {
    Null,
    Aes128Cbc,
    Aes256Cbc,
}

/// AES block (and CBC IV) size.
const AES_BLOCK: usize = 16;

impl HipCipher {
    pub fn from_id(id: u16) -> Option<HipCipher> {
        match id {
            HIP_CIPHER_NULL => Some(HipCipher::Null),
            HIP_CIPHER_AES128_CBC => Some(HipCipher::Aes128Cbc),
            HIP_CIPHER_AES256_CBC => Some(HipCipher::Aes256Cbc),
            _ => None,
        }
    }

    /// Like [`HipCipher::from_id`], with the ID in the error for a NOTIFY.
    pub fn try_from_id(id: u16) -> Result<HipCipher, CryptoError> {
        HipCipher::from_id(id).ok_or(CryptoError::UnsupportedCipher(id))
    }

    pub fn id(self) -> u16 {
        match self {
            HipCipher::Null => HIP_CIPHER_NULL,
            HipCipher::Aes128Cbc => HIP_CIPHER_AES128_CBC,
            HipCipher::Aes256Cbc => HIP_CIPHER_AES256_CBC,
        }
    }

    pub fn key_len(self) -> usize {
        match self {
            HipCipher::Null => 0,
            HipCipher::Aes128Cbc => 16,
            HipCipher::Aes256Cbc => 32,
        }
    }

    pub fn iv_len(self) -> usize {
        match self {
            HipCipher::Null => 0,
            HipCipher::Aes128Cbc | HipCipher::Aes256Cbc => AES_BLOCK,
        }
    }

    /// ENCRYPTED data (IV | ciphertext) for `plaintext` (complete padded TLVs), adding the
    /// cipher's padding. `iv` is `iv_len()` caller-supplied random bytes.
    ///
    /// AES-CBC pads with PKCS#7 (always 1 to 16 bytes). NULL returns the plaintext as is.
    ///
    /// # Panics
    /// If `key` is not `key_len()` or `iv` not `iv_len()` bytes long (local misuse).
    pub fn encrypt(self, key: &[u8], iv: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.check_key(key);
        assert_eq!(iv.len(), self.iv_len(), "{self:?}: IV of the wrong length");
        if self == HipCipher::Null {
            return plaintext.to_vec();
        }
        let pt_len = plaintext.len();
        // PKCS#7 always adds 1 to 16 bytes, so there is always room for a padding block.
        let padded = (pt_len / AES_BLOCK + 1) * AES_BLOCK;
        let mut out = vec![0u8; AES_BLOCK + padded];
        out[..AES_BLOCK].copy_from_slice(iv);
        out[AES_BLOCK..AES_BLOCK + pt_len].copy_from_slice(plaintext);
        let buf = &mut out[AES_BLOCK..];
        // Failure would mean sending plaintext, so it is a hard panic, never ignored.
        let ct_len = match self {
            HipCipher::Aes128Cbc => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
                .expect("key and IV lengths checked")
                .encrypt_padded_mut::<Pkcs7>(buf, pt_len)
                .expect("room for the padding")
                .len(),
            HipCipher::Aes256Cbc => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
                .expect("key and IV lengths checked")
                .encrypt_padded_mut::<Pkcs7>(buf, pt_len)
                .expect("room for the padding")
                .len(),
            HipCipher::Null => unreachable!("handled above"),
        };
        debug_assert_eq!(ct_len, padded);
        out
    }

    /// Inverse of `encrypt`: takes IV | ciphertext, returns the plaintext TLV bytes.
    ///
    /// # Panics
    /// If `key` is not `key_len()` bytes long (local misuse).
    pub fn decrypt(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.check_key(key);
        if self == HipCipher::Null {
            return Ok(data.to_vec());
        }
        if data.len() < 2 * AES_BLOCK || data.len() % AES_BLOCK != 0 {
            return Err(CryptoError::Decrypt);
        }
        let (iv, ct) = data.split_at(AES_BLOCK);
        let mut buf = ct.to_vec();
        let len = match self {
            HipCipher::Aes128Cbc => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
                .expect("key and IV lengths checked")
                .decrypt_padded_mut::<Pkcs7>(&mut buf)
                .map(|p| p.len()),
            HipCipher::Aes256Cbc => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
                .expect("key and IV lengths checked")
                .decrypt_padded_mut::<Pkcs7>(&mut buf)
                .map(|p| p.len()),
            HipCipher::Null => unreachable!(),
        }
        .map_err(|_| CryptoError::Decrypt)?;
        buf.truncate(len);
        Ok(buf)
    }

    fn check_key(self, key: &[u8]) {
        assert_eq!(
            key.len(),
            self.key_len(),
            "{self:?}: key of the wrong length"
        );
    }
}

/// The four HIP keys of an association (RFC 7401 §6.5), drawn in order gl-enc, gl-int,
/// lg-enc, lg-int. `gl` = keys of the host with the greater HIT.
pub struct HipKeys {
    pub enc_gl: Zeroizing<Vec<u8>>,
    pub int_gl: Zeroizing<Vec<u8>>,
    pub enc_lg: Zeroizing<Vec<u8>>,
    pub int_lg: Zeroizing<Vec<u8>>,
}

/// ESP keys for one direction pair, drawn after the HIP keys (RFC 7402 §7): SA-gl enc, SA-gl
/// auth, SA-lg enc, SA-lg auth. For AES-GCM the "enc" key is key(16) | salt(4) and auth is empty.
pub struct EspKeyMaterial {
    pub enc_gl: Zeroizing<Vec<u8>>,
    pub auth_gl: Zeroizing<Vec<u8>>,
    pub enc_lg: Zeroizing<Vec<u8>>,
    pub auth_lg: Zeroizing<Vec<u8>>,
}

// Debug shows key lengths only: enough to diagnose a mismatch, nothing to leak.
impl core::fmt::Debug for HipKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HipKeys")
            .field("enc_len", &self.enc_gl.len())
            .field("int_len", &self.int_gl.len())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for EspKeyMaterial {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EspKeyMaterial")
            .field("enc_len", &self.enc_gl.len())
            .field("auth_len", &self.auth_gl.len())
            .finish_non_exhaustive()
    }
}

/// Number of KEYMAT bytes the HIP keys occupy = the ESP_INFO KEYMAT Index of the BEX.
pub fn hip_keys_len(profile: &dyn Profile, cipher: HipCipher) -> usize {
    2 * (cipher.key_len() + profile.integrity_key_len())
}

/// Draws the HIP keys from the start of `keymat`.
///
/// # Panics
/// If `keymat` is shorter than [`hip_keys_len`] (the caller sizes KEYMAT from it).
pub fn draw_hip_keys(keymat: &[u8], profile: &dyn Profile, cipher: HipCipher) -> HipKeys {
    let need = hip_keys_len(profile, cipher);
    assert!(
        keymat.len() >= need,
        "KEYMAT of {} bytes, HIP keys need {need}",
        keymat.len()
    );
    let mut draw = Drawer { keymat, at: 0 };
    let (enc, int) = (cipher.key_len(), profile.integrity_key_len());
    HipKeys {
        enc_gl: draw.take(enc),
        int_gl: draw.take(int),
        enc_lg: draw.take(enc),
        int_lg: draw.take(int),
    }
}

/// ESP suite key lengths (enc, auth) in bytes; None for a suite we do not implement.
pub fn esp_key_lens(suite: u16) -> Option<(usize, usize)> {
    match suite {
        // RFC 4106 §8.1 keying material: AES key then 4-byte salt; GCM needs no auth key.
        ESP_SUITE_AES128_GCM16 => Some((16 + GCM_SALT_LEN, 0)),
        _ => None,
    }
}

/// Draws ESP keys from `keymat[index..]`; None if KEYMAT is too short or the suite unknown.
pub fn draw_esp_keys(keymat: &[u8], index: usize, suite: u16) -> Option<EspKeyMaterial> {
    let (enc, auth) = esp_key_lens(suite)?;
    let end = index.checked_add(2 * (enc + auth))?;
    if end > keymat.len() {
        return None;
    }
    let mut draw = Drawer { keymat, at: index };
    Some(EspKeyMaterial {
        enc_gl: draw.take(enc),
        auth_gl: draw.take(auth),
        enc_lg: draw.take(enc),
        auth_lg: draw.take(auth),
    })
}

/// Takes consecutive keys from KEYMAT; the callers check the total length first.
struct Drawer<'a> {
    keymat: &'a [u8],
    at: usize,
}

impl Drawer<'_> {
    fn take(&mut self, n: usize) -> Zeroizing<Vec<u8>> {
        let key = Zeroizing::new(self.keymat[self.at..self.at + n].to_vec());
        self.at += n;
        key
    }
}

/// Lower-case hex for public values in Debug output.
struct Hex<'a>(&'a [u8]);

impl core::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{arr32, hex};
    use tiny_keccak::CShake;

    // --- The primitives we build on: NIST SP 800-185 examples (shared/spec/hip.md §9.5). ---

    #[test]
    fn cshake128_sp800_185_samples() {
        let mut out = [0u8; 32];
        let mut c = CShake::v128(b"", b"Email Signature");
        c.update(&[0, 1, 2, 3]);
        c.finalize(&mut out);
        assert_eq!(
            out.to_vec(),
            hex("c1c36925b6409a04f1b504fcbca9d82b4017277cb5ed2b2065fc1d3814d5aaf5")
        );
        let data: Vec<u8> = (0..=0xc7).collect();
        let mut c = CShake::v128(b"", b"Email Signature");
        c.update(&data);
        c.finalize(&mut out);
        assert_eq!(
            out.to_vec(),
            hex("c5221d50e4f822d96a2e8881a961420f294b7b24fe3d2094baed2c6524cc166b")
        );
    }

    #[test]
    fn kmac128_sp800_185_samples() {
        let key: Vec<u8> = (0x40..=0x5f).collect();
        let mut out = [0u8; 32];
        let mut k = Kmac::v128(&key, b"");
        k.update(&[0, 1, 2, 3]);
        k.finalize(&mut out);
        assert_eq!(
            out.to_vec(),
            hex("e5780b0d3ea6f7d3a429c5706aa43a00fadbd7d49628839e3187243f456ee14e")
        );
        let mut k = Kmac::v128(&key, b"My Tagged Application");
        k.update(&[0, 1, 2, 3]);
        k.finalize(&mut out);
        assert_eq!(
            out.to_vec(),
            hex("3b1fba963cd8b0b59e8c1a6d71888b7143651af8ba0a7070c0979e2811324aa5")
        );
    }

    /// KMACXOF128(K = 40..5f, X = 00010203, L = 256, S = ""). Expected value computed in
    /// Python from the SP 800-185 §4.3 definition (bytepad/encode_string/right_encode(0)
    /// over pycryptodome's cSHAKE128 with N = "KMAC"; the same code with right_encode(L)
    /// reproduces pycryptodome's KMAC128 and NIST KMAC sample 1). It equals NIST's
    /// KMACXOF128 sample #1.
    #[test]
    fn kmacxof128_sample() {
        let key: Vec<u8> = (0x40..=0x5f).collect();
        let mut out = [0u8; 32];
        let mut k = Kmac::v128(&key, b"");
        k.update(&[0, 1, 2, 3]);
        k.into_xof().squeeze(&mut out);
        assert_eq!(
            out.to_vec(),
            hex("cd83740bbd92ccc8cf032b1481a0f4460e7ca9dd12b08a0c4031178bacd6ec35")
        );
    }

    // --- The profile. ---

    /// RHASH = SHAKE128, 32 bytes; expected values from Python's hashlib.shake_128.
    #[test]
    fn rhash_is_shake128_256() {
        let p = EdX25519;
        assert_eq!(p.rhash_len(), 32);
        let mut out = [0u8; 32];
        p.rhash(&[], &mut out);
        assert_eq!(
            out.to_vec(),
            hex("7f9c2ba4e88f827d616045507605853ed73b8093f6efbc88eb1a6eacfa66ef26")
        );
        p.rhash(&[b"a", b"", b"bc"], &mut out);
        assert_eq!(
            out.to_vec(),
            hex("5881092dd818bf5cf8a3ddb793fbcba74097d5c526a6d35f97b83351940f2cc8")
        );
    }

    /// HIP_MAC = KMAC128(K, X, 256, S = ""): the first value is NIST KMAC sample 1 (it has
    /// exactly our parameters); the second (200 bytes of data, more than one Keccak block)
    /// was computed with pycryptodome `KMAC128.new(key=40..5f, data=00..c7, mac_len=32)`.
    #[test]
    fn hip_mac_known_answers() {
        let p = EdX25519;
        let key: Vec<u8> = (0x40..=0x5f).collect();
        assert_eq!(key.len(), p.integrity_key_len());
        let mut out = [0u8; 32];
        p.mac(&key, &[0, 1, 2, 3], &mut out);
        assert_eq!(
            out.to_vec(),
            hex("e5780b0d3ea6f7d3a429c5706aa43a00fadbd7d49628839e3187243f456ee14e")
        );
        let data: Vec<u8> = (0..=0xc7).collect();
        p.mac(&key, &data, &mut out);
        assert_eq!(
            out.to_vec(),
            hex("3f874473438004885be016b1bfbda5252c3251382458494dd685eb7c4254b528")
        );
    }

    const KEYMAT_200: &str = "b0ee53e2dbf33efd5cfd3ef43a48d8706d31b1dad03e32d3299251f23f3de4c3\
        256a28724b072acf6d7e02dc539c3e513f96de92adbfe0221cd5996b889c1abcea53f75fb8e536b6c2717da9\
        74aa132f2a3af5df618e7bb5d6a1c956ba13221efdfba4bf4c96f021086aa957c429219a1b593c87b3248536\
        6657cae62ad8f4a6939d244558627f0a8d3917e24184a51629777120dab47385ca41ed3082009fff4b48c26d\
        41c1322943586dc570bff6801877a367d21645a4ba6364e803a2f4bd91ab36be0d74c595";

    /// KEYMAT known answer. Inputs: Kij = the RFC 7748 §6.1 shared secret, #I = 00..1f,
    /// #J = 20..3f, HITs of the RFC 8032 TEST 1 key (2001:25:94f8:…, the smaller) and TEST 2
    /// key (2001:25:6853:…), 200 bytes (longer than one 168-byte Keccak block). Expected
    /// value computed in Python as KMACXOF128 from the SP 800-185 definition over
    /// pycryptodome's cSHAKE128 (N = "KMAC", S = "HIP KEYMAT"), see `kmacxof128_sample`.
    #[test]
    fn keymat_known_answer_and_prefix_stability() {
        let p = EdX25519;
        let kij = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        let i: Vec<u8> = (0..32).collect();
        let j: Vec<u8> = (32..64).collect();
        let h1: Hit = "2001:25:94f8:6e7a:36ad:d203:ed89:625f".parse().unwrap();
        let h2: Hit = "2001:25:6853:8cef:f5e2:f29f:1774:128a".parse().unwrap();
        let expect = hex(KEYMAT_200);
        let mut out = vec![0u8; 200];
        // Both orders of the HITs give the same KEYMAT.
        p.keymat(&kij, &i, &j, &h2, &h1, &mut out);
        assert_eq!(out, expect);
        p.keymat(&kij, &i, &j, &h1, &h2, &mut out);
        assert_eq!(out, expect);
        // Prefix-stable: a shorter request is a prefix of the longer one.
        let mut short = vec![0u8; 40];
        p.keymat(&kij, &i, &j, &h1, &h2, &mut short);
        assert_eq!(short, expect[..40]);
        // Swapping #I and #J changes everything.
        p.keymat(&kij, &j, &i, &h1, &h2, &mut short);
        assert_ne!(short, expect[..40]);
    }

    /// RFC 7748 §6.1 (shared/spec/hip.md §9.3) through the profile.
    #[test]
    fn x25519_rfc7748_through_profile() {
        let p = EdX25519;
        let alice = p.dh_keypair(arr32(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob = p.dh_keypair(arr32(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        assert_eq!(alice.group, DH_GROUP_X25519);
        assert_eq!(
            alice.public,
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            bob.public,
            hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(*p.dh_agree(&alice, &bob.public).unwrap(), shared);
        assert_eq!(*p.dh_agree(&bob, &alice.public).unwrap(), shared);
    }

    #[test]
    fn dh_rejects_bad_public_values() {
        let p = EdX25519;
        let ours = p.dh_keypair([7; 32]);
        assert_eq!(p.dh_agree(&ours, &[0; 32]), Err(CryptoError::BadDhPublic));
        // u = 1 has order 4 on Curve25519 (RFC 7748 §6.1 says to check for all-zero output).
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(p.dh_agree(&ours, &one), Err(CryptoError::BadDhPublic));
        assert_eq!(p.dh_agree(&ours, &[9; 31]), Err(CryptoError::BadDhPublic));
        assert_eq!(p.dh_agree(&ours, &[9; 33]), Err(CryptoError::BadDhPublic));
    }

    #[test]
    fn debug_hides_secrets() {
        let kp = EdX25519.dh_keypair([0xab; 32]);
        let s = format!("{kp:?}");
        assert!(!s.contains("abab"), "{s}");
        let keymat = [0xcd; 200];
        let keys = draw_hip_keys(&keymat, &EdX25519, HipCipher::Aes128Cbc);
        assert!(!format!("{keys:?}").contains("205"));
        let esp = draw_esp_keys(&keymat, 96, ESP_SUITE_AES128_GCM16).unwrap();
        assert!(!format!("{esp:?}").contains("205"));
    }

    // --- HIP_CIPHER. ---

    /// NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt) and F.2.5 (CBC-AES256.Encrypt), all four
    /// blocks; our output has a fifth block of PKCS#7 padding after them.
    #[test]
    fn aes_cbc_sp800_38a() {
        let iv: Vec<u8> = (0..16).collect();
        let pt = hex(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
             30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        );
        let cases = [
            (
                HipCipher::Aes128Cbc,
                "2b7e151628aed2a6abf7158809cf4f3c",
                "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2\
                 73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
            ),
            (
                HipCipher::Aes256Cbc,
                "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
                "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d\
                 39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
            ),
        ];
        for (cipher, key, ct) in cases {
            let key = hex(key);
            let out = cipher.encrypt(&key, &iv, &pt);
            assert_eq!(out.len(), 16 + 64 + 16);
            assert_eq!(out[..16], iv[..]);
            assert_eq!(out[16..80], hex(ct)[..]);
            assert_eq!(cipher.decrypt(&key, &out).unwrap(), pt);
            // First block alone (F.2.1 block #1).
            let one = cipher.encrypt(&key, &iv, &pt[..16]);
            assert_eq!(one[16..32], hex(ct)[..16]);
        }
    }

    #[test]
    fn hip_cipher_round_trips_and_rejects() {
        let key = [0x11; 16];
        let iv = [0x22; 16];
        let c = HipCipher::Aes128Cbc;
        for len in [0, 1, 15, 16, 17, 40] {
            let pt: Vec<u8> = (0..len as u8).collect();
            let data = c.encrypt(&key, &iv, &pt);
            assert_eq!(data.len(), 16 + (len / 16 + 1) * 16);
            assert_eq!(c.decrypt(&key, &data).unwrap(), pt);
        }
        let data = c.encrypt(&key, &iv, b"0123456789");
        assert_eq!(c.decrypt(&key, &data[..16]), Err(CryptoError::Decrypt));
        assert_eq!(c.decrypt(&key, &data[..31]), Err(CryptoError::Decrypt));
        assert_eq!(c.decrypt(&key, &[]), Err(CryptoError::Decrypt));
        // Flipping the last IV byte flips the last plaintext byte: padding 06 becomes 07,
        // which the other five 06 bytes contradict.
        let mut wrong = data.clone();
        wrong[15] ^= 0x01;
        assert_eq!(c.decrypt(&key, &wrong), Err(CryptoError::Decrypt));

        let n = HipCipher::Null;
        assert_eq!(n.encrypt(&[], &[], b"tlv"), b"tlv");
        assert_eq!(n.decrypt(&[], b"tlv").unwrap(), b"tlv");
    }

    #[test]
    fn hip_cipher_ids() {
        for c in [HipCipher::Null, HipCipher::Aes128Cbc, HipCipher::Aes256Cbc] {
            assert_eq!(HipCipher::from_id(c.id()), Some(c));
        }
        assert_eq!(HipCipher::Aes128Cbc.id(), 2);
        assert_eq!(HipCipher::Aes256Cbc.id(), 4);
        assert_eq!(HipCipher::from_id(3), None);
        assert_eq!(
            HipCipher::try_from_id(0),
            Err(CryptoError::UnsupportedCipher(0))
        );
        assert_eq!(
            (HipCipher::Null.key_len(), HipCipher::Aes128Cbc.key_len()),
            (0, 16)
        );
        assert_eq!(HipCipher::Aes256Cbc.key_len(), 32);
        assert_eq!(HipCipher::Null.iv_len(), 0);
        assert_eq!(HipCipher::Aes256Cbc.iv_len(), 16);
    }

    // --- Key drawing. ---

    #[test]
    fn hip_key_draw_offsets() {
        let keymat: Vec<u8> = (0..=255).collect();
        let p: &dyn Profile = &EdX25519;
        assert_eq!(hip_keys_len(p, HipCipher::Aes128Cbc), 96);
        assert_eq!(hip_keys_len(p, HipCipher::Aes256Cbc), 128);
        assert_eq!(hip_keys_len(p, HipCipher::Null), 64);
        let k = draw_hip_keys(&keymat, p, HipCipher::Aes128Cbc);
        assert_eq!(*k.enc_gl, keymat[0..16]);
        assert_eq!(*k.int_gl, keymat[16..48]);
        assert_eq!(*k.enc_lg, keymat[48..64]);
        assert_eq!(*k.int_lg, keymat[64..96]);
        let k = draw_hip_keys(&keymat, p, HipCipher::Null);
        assert!(k.enc_gl.is_empty() && k.enc_lg.is_empty());
        assert_eq!(*k.int_gl, keymat[0..32]);
        assert_eq!(*k.int_lg, keymat[32..64]);
    }

    #[test]
    #[should_panic]
    fn hip_key_draw_from_short_keymat_panics() {
        draw_hip_keys(&[0; 95], &EdX25519, HipCipher::Aes128Cbc);
    }

    #[test]
    fn esp_key_draws() {
        assert_eq!(esp_key_lens(ESP_SUITE_AES128_GCM16), Some((20, 0)));
        assert_eq!(esp_key_lens(8), None);
        let keymat: Vec<u8> = (0..=255).collect();
        let e = draw_esp_keys(&keymat, 96, ESP_SUITE_AES128_GCM16).unwrap();
        assert_eq!(*e.enc_gl, keymat[96..116]);
        assert!(e.auth_gl.is_empty());
        assert_eq!(*e.enc_lg, keymat[116..136]);
        assert!(e.auth_lg.is_empty());
        // Exactly enough, one byte short, unknown suite, absurd index.
        assert!(draw_esp_keys(&keymat[..136], 96, ESP_SUITE_AES128_GCM16).is_some());
        assert!(draw_esp_keys(&keymat[..135], 96, ESP_SUITE_AES128_GCM16).is_none());
        assert!(draw_esp_keys(&keymat, 96, 9).is_none());
        assert!(draw_esp_keys(&keymat, usize::MAX, ESP_SUITE_AES128_GCM16).is_none());
    }

    /// The whole chain for a BEX with AES-128-CBC and ESP suite 13: 96 + 40 bytes of KEYMAT.
    #[test]
    fn bex_keymat_layout() {
        let p: &dyn Profile = &EDX25519;
        let kij = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        let i: Vec<u8> = (0..32).collect();
        let j: Vec<u8> = (32..64).collect();
        let h1: Hit = "2001:25:94f8:6e7a:36ad:d203:ed89:625f".parse().unwrap();
        let h2: Hit = "2001:25:6853:8cef:f5e2:f29f:1774:128a".parse().unwrap();
        let index = hip_keys_len(p, HipCipher::Aes128Cbc);
        let mut keymat = Zeroizing::new(vec![0u8; index + 40]);
        p.keymat(&kij, &i, &j, &h1, &h2, &mut keymat);
        let expect = hex(KEYMAT_200);
        let hip = draw_hip_keys(&keymat, p, HipCipher::Aes128Cbc);
        assert_eq!(*hip.int_lg, expect[64..96]);
        let esp = draw_esp_keys(&keymat, index, ESP_SUITE_AES128_GCM16).unwrap();
        assert_eq!(*esp.enc_gl, expect[96..116]);
        assert_eq!(*esp.enc_lg, expect[116..136]);
    }
}
