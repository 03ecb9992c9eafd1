//! The two halves of an ESP SA: [`OutboundSa`] seals a payload in place (header, padding,
//! trailer, AES-128-GCM), [`InboundSa`] opens a packet in place with the receive checks in
//! the order the [module documentation](super) gives. Each owns its SPI and its AES key
//! schedule (made once, in the constructor); the inbound half owns its [`ReplayWindow`].
//! Neither allocates, logs or panics per packet.

use core::fmt;
use core::ops::Range;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};

use super::packet::{field, Packet};
use super::{
    EspError, ReplayWindow, AES_KEY_LEN, ESP_HEADER_LEN, ESP_ICV_LEN, ESP_IV_LEN, ESP_TRAILER_LEN,
    KEY_MATERIAL_LEN, SALT_LEN,
};

/// The AES key (schedule computed once) and salt of one SA direction.
struct GcmKey {
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl GcmKey {
    fn new(material: &[u8]) -> Result<GcmKey, EspError> {
        if material.len() != KEY_MATERIAL_LEN {
            return Err(EspError::KeyLength);
        }
        let (key, salt) = material.split_at(AES_KEY_LEN);
        let key = UnboundKey::new(&AES_128_GCM, key).map_err(|_| EspError::KeyLength)?;
        let mut s = [0; SALT_LEN];
        s.copy_from_slice(salt);
        Ok(GcmKey {
            key: LessSafeKey::new(key),
            salt: s,
        })
    }

    /// Salt ‖ IV (RFC 4106 §4).
    #[inline]
    fn nonce(&self, iv: [u8; ESP_IV_LEN]) -> Nonce {
        let mut n = [0; 12];
        n[..SALT_LEN].copy_from_slice(&self.salt);
        n[SALT_LEN..].copy_from_slice(&iv);
        Nonce::assume_unique_for_key(n)
    }
}

/// SPI ‖ ESN high ‖ ESN low (RFC 4106 §5, extended sequence numbers).
#[inline]
fn aad(spi: u32, seq: u64) -> Aad<[u8; 12]> {
    let mut a = [0; 12];
    a[..4].copy_from_slice(&spi.to_be_bytes());
    a[4..].copy_from_slice(&seq.to_be_bytes());
    Aad::from(a)
}

fn check_spi(spi: u32) -> Result<(), EspError> {
    if spi <= 255 {
        return Err(EspError::ReservedSpi);
    }
    Ok(())
}

/// The sending half of an ESP SA: SPI, next sequence number, key.
///
/// `Debug` shows the SPI and the counter, never key or salt.
pub struct OutboundSa {
    spi: u32,
    /// Sequence number of the next packet; starts at 1. Reaches 0 only by wrapping after
    /// u64::MAX was sent, which marks the SA as exhausted (RFC 4303 §3.3.3: never cycle).
    next_seq: u64,
    key: GcmKey,
}

impl OutboundSa {
    /// An SA that sends with `spi` (chosen by the peer) and suite 13 `key_material`: the
    /// 16-byte AES key then the 4-byte salt.
    pub fn new(spi: u32, key_material: &[u8]) -> Result<OutboundSa, EspError> {
        check_spi(spi)?;
        Ok(OutboundSa {
            spi,
            next_seq: 1,
            key: GcmKey::new(key_material)?,
        })
    }

    #[inline]
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The sequence number the next packet will carry; None once all are used.
    #[inline]
    pub fn seq(&self) -> Option<u64> {
        (self.next_seq != 0).then_some(self.next_seq)
    }

    /// Packets sealed so far. The node rekeys (RFC 7402 §6.8) well before its configured
    /// limit; [`seal`](Self::seal) itself only refuses at the 64-bit end.
    #[inline]
    pub fn packets_sent(&self) -> u64 {
        self.next_seq.wrapping_sub(1)
    }

    /// Turns `buf[payload]` into an ESP packet in place and returns its range in `buf`.
    ///
    /// Writes the header into the [`ESP_HEADER_LEN`] bytes before `payload.start`, padding,
    /// trailer and ICV after `payload.end` (at most [`ESP_TAIL_MAX`](super::ESP_TAIL_MAX) bytes), and encrypts
    /// payload, padding and trailer. When the layout does not fit, nothing is written and no
    /// sequence number is used.
    pub fn seal(
        &mut self,
        buf: &mut [u8],
        payload: Range<usize>,
        next_header: u8,
    ) -> Result<Range<usize>, EspError> {
        let Range { start, end } = payload;
        let head = start.checked_sub(ESP_HEADER_LEN).ok_or(EspError::NoRoom)?;
        let len = end.checked_sub(start).ok_or(EspError::NoRoom)?;
        if end > buf.len() {
            return Err(EspError::NoRoom);
        }
        // Pad so that payload + padding + trailer is a multiple of 4 (RFC 4303 §2.4).
        let pad = (4 - (len + ESP_TRAILER_LEN) % 4) % 4;
        // A slice is at most isize::MAX long, so these sums cannot overflow.
        let trailer = end + pad;
        let sealed_end = trailer + ESP_TRAILER_LEN;
        let total_end = sealed_end + ESP_ICV_LEN;
        if total_end > buf.len() {
            return Err(EspError::NoRoom);
        }
        let seq = self.seq().ok_or(EspError::SequenceExhausted)?;
        // Advance before encrypting: a nonce must never be used twice, whatever happens next.
        self.next_seq = seq.wrapping_add(1);

        let iv = seq.to_be_bytes();
        let mut header = Packet::new_unchecked(&mut buf[head..start]);
        header.set_spi(self.spi);
        // Only the low half travels (RFC 4303 §2.2.1); the high half enters the AAD.
        header.set_sequence_number(seq as u32);
        header.set_iv(iv);
        for (i, b) in buf[end..trailer].iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        buf[trailer] = pad as u8;
        buf[trailer + 1] = next_header;
        let tag = self
            .key
            .key
            .seal_in_place_separate_tag(
                self.key.nonce(iv),
                aad(self.spi, seq),
                &mut buf[start..sealed_end],
            )
            // ring refuses only inputs beyond GCM's 64 GiB limit.
            .map_err(|_| EspError::NoRoom)?;
        buf[sealed_end..total_end].copy_from_slice(tag.as_ref());
        Ok(head..total_end)
    }
}

impl fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

/// What [`InboundSa::open`] found in an authentic packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The protocol of the payload; [`NEXT_HEADER_NONE`](super::NEXT_HEADER_NONE) marks a dummy packet to drop.
    pub next_header: u8,
    /// The decrypted payload within the packet buffer (starts at [`ESP_HEADER_LEN`]).
    pub payload: Range<usize>,
    /// The full 64-bit sequence number.
    pub seq: u64,
}

/// The receiving half of an ESP SA: SPI, key and anti-replay window.
///
/// `Debug` shows the SPI and the window, never key or salt.
pub struct InboundSa {
    spi: u32,
    key: GcmKey,
    window: ReplayWindow,
}

impl InboundSa {
    /// An SA for packets carrying `spi` (chosen by us), with the default replay window.
    pub fn new(spi: u32, key_material: &[u8]) -> Result<InboundSa, EspError> {
        InboundSa::with_window(spi, key_material, ReplayWindow::default())
    }

    /// An SA with a window made by [`ReplayWindow::new`].
    pub fn with_window(
        spi: u32,
        key_material: &[u8],
        window: ReplayWindow,
    ) -> Result<InboundSa, EspError> {
        check_spi(spi)?;
        Ok(InboundSa {
            spi,
            key: GcmKey::new(key_material)?,
            window,
        })
    }

    #[inline]
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The replay window; its [`top`](ReplayWindow::top) tells the node when to rekey
    /// before the incoming counter runs out (RFC 7402 §6.8).
    #[inline]
    pub fn window(&self) -> &ReplayWindow {
        &self.window
    }

    /// Verifies and decrypts `packet` (exactly one ESP packet, starting with the SPI) in
    /// place. Checks in the order of the module documentation; the window only moves on
    /// success. After an error the packet's bytes are unspecified (ring may have begun
    /// decrypting them): drop the packet, do not forward it.
    pub fn open(&mut self, packet: &mut [u8]) -> Result<Opened, EspError> {
        let view = Packet::new_checked(&*packet)?;
        if view.spi() != self.spi {
            return Err(EspError::SpiMismatch);
        }
        let seq = self.window.check(view.sequence_number())?;
        let nonce = self.key.nonce(view.iv());
        let plain_len = self
            .key
            .key
            .open_in_place(nonce, aad(self.spi, seq), &mut packet[field::PAYLOAD])
            .map_err(|_| EspError::Auth)?
            .len();
        // new_checked guaranteed room for the trailer: plain_len >= ESP_TRAILER_LEN.
        let trailer = ESP_HEADER_LEN + plain_len - ESP_TRAILER_LEN;
        let pad_len = usize::from(packet[trailer]);
        let next_header = packet[trailer + 1];
        let pad_start = trailer
            .checked_sub(pad_len)
            .filter(|&s| s >= ESP_HEADER_LEN)
            .ok_or(EspError::BadTrailer)?;
        let padding_ok = packet[pad_start..trailer]
            .iter()
            .enumerate()
            .all(|(i, &b)| usize::from(b) == i + 1);
        if !padding_ok {
            return Err(EspError::BadTrailer);
        }
        self.window.mark(seq);
        Ok(Opened {
            next_header,
            payload: ESP_HEADER_LEN..pad_start,
            seq,
        })
    }
}

impl fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::testutil::*;
    use crate::esp::{ESP_MIN_LEN, ESP_OVERHEAD_MAX, ESP_OVERHEAD_MIN, ESP_TAIL_MAX};
    use crate::esp::{NEXT_HEADER_NONE, PROTO_TCP, PROTO_UDP};

    /// Seals `payload` with 16 bytes of headroom and full tailroom; returns the packet.
    fn seal(out: &mut OutboundSa, payload: &[u8], nh: u8) -> Vec<u8> {
        let mut buf = vec![0xee; ESP_HEADER_LEN + payload.len() + ESP_TAIL_MAX];
        buf[16..16 + payload.len()].copy_from_slice(payload);
        let r = out.seal(&mut buf, 16..16 + payload.len(), nh).unwrap();
        buf[r].to_vec()
    }

    /// An ESP packet with an arbitrary plaintext (trailer included), sealed with ring
    /// directly: reaches the trailer checks that `seal` never gets wrong.
    fn seal_raw(seq: u64, plaintext: &[u8]) -> Vec<u8> {
        let key = GcmKey::new(&hex(KEY)).unwrap();
        let mut p = Vec::new();
        p.extend_from_slice(&SPI.to_be_bytes());
        p.extend_from_slice(&(seq as u32).to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(plaintext);
        let tag = key
            .key
            .seal_in_place_separate_tag(key.nonce(seq.to_be_bytes()), aad(SPI, seq), &mut p[16..])
            .unwrap();
        p.extend_from_slice(tag.as_ref());
        p
    }

    // --- Known answers ---

    // Expected packets computed with pyca/cryptography (48.0), independently of this code:
    //   def esp(key, salt, spi, seq, payload, nh):
    //       pad = (-(len(payload) + 2)) % 4
    //       plain = payload + bytes(range(1, pad + 1)) + bytes([pad, nh])
    //       iv = struct.pack(">Q", seq)
    //       aad = struct.pack(">III", spi, seq >> 32, seq & 0xFFFFFFFF)
    //       return (struct.pack(">II", spi, seq & 0xFFFFFFFF) + iv
    //               + AESGCM(key).encrypt(salt + iv, plain, aad))
    // key feffe9928665731c6d6a8f9467308308, salt cafebabe, SPI 0x9a3bc4d5.
    const KAT_SEQ1: &str = "9a3bc4d50000000100000000000000017398aa8ff44e7cb804bab16ab2839e\
                            bd3078d497d0c3013022efb00d45d9b9d92ded0c968af31e73";
    const KAT_ESN: &str = "9a3bc4d50000000200000001000000029f096f9338df471e837da77d349242\
                           dd9bec3f88813693f4";

    #[test]
    fn seal_known_answer() {
        let (mut out, mut inb) = pair();
        let syn = hex(SYN_HIT);
        let packet = seal(&mut out, &syn, PROTO_TCP);
        assert_eq!(packet, hex(KAT_SEQ1));
        assert_eq!(out.packets_sent(), 1);
        assert_eq!(out.seq(), Some(2));

        let mut p = packet.clone();
        let opened = inb.open(&mut p).unwrap();
        assert_eq!(opened.seq, 1);
        assert_eq!(opened.next_header, PROTO_TCP);
        assert_eq!(p[opened.payload], syn[..]);

        // ESN high word 1: pins the AAD layout SPI | ESN high | ESN low, and padding 1,2,3.
        out.next_seq = 0x1_0000_0002;
        let packet = seal(&mut out, b"hip", PROTO_UDP);
        assert_eq!(packet, hex(KAT_ESN));
        inb.window.mark(0x1_0000_0001);
        let mut p = packet.clone();
        let opened = inb.open(&mut p).unwrap();
        assert_eq!((opened.seq, opened.next_header), (0x1_0000_0002, PROTO_UDP));
        assert_eq!(&p[opened.payload], b"hip");
    }

    /// draft-mcgrew-gcm-test-01 §4, the AES-128 cases with 64-bit ESN (AAD = SPI | ESN),
    /// re-checked with pyca/cryptography; their IVs are not sequence numbers, which `open`
    /// must not care about. Vectors as transcribed in snabb's lib/ipsec/aes_gcm.lua.
    #[test]
    fn open_published_vectors() {
        struct V {
            key: &'static str,
            spi: u32,
            seq: u64,
            iv: &'static str,
            ctag: &'static str,
            plain: &'static str,
        }
        let vectors = [
            V {
                key: "4c80cdefbb5d10da906ac73c3613a6342e443b68",
                spi: 0x4321,
                seq: 0x8765_4321_0000_0000,
                iv: "4956ed7e3b244cfe",
                ctag: "fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34\
                       cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce\
                       61bc17d768fd9732459018148f6cbe722fd04796562dfdb4",
                plain: "45000048699a000080114db7c0a80102c0a801010a9bf15638d3010000010000\
                        00000000045f736970045f756470037369700963796265726369747902646b00\
                        0021000101020201",
            },
            V {
                key: "4c80cdefbb5d10da906ac73c3613a63422433c64",
                spi: 0x4321,
                seq: 0x8765_4321_0000_0007,
                iv: "4855ec7d3a234bfd",
                ctag: "74752e8aeb5d873cd7c0f4acc36c4bff84b7d7b98f0ca8b6acda6894bc619069\
                       ef9cbc28fe1b56a7c4e0d58c86cd2bc0",
                plain: "0800c6cd020007006162636465666768696a6b6c6d6e6f707172737401020201",
            },
            V {
                key: "abbccddef00112233445566778899aabdecaf888",
                spi: 0x100,
                seq: 1,
                iv: "cafedebaceface74",
                ctag: "18a6fd42f72cbf4ab2a2ea901f73d814e3e7f243d95412e1c349c1d2fbec168f\
                       9190feebaf2cb01984e65863965d7472b79da345e0e780191f0d2f0e0f496c22\
                       6f2127b27db35724e7845d68651f57e65f354f75ff17015769623436",
                plain: "4500004933ba00007f119106c3fb1d10c2b1d326c02831ce0035dd7b800302d5\
                        00004e20001e8c18d75b81dc91baa0476b91b924b280389d92c963bac046ec95\
                        9b6266c04722b14923010101",
            },
        ];
        for v in vectors {
            let mut sa = InboundSa::new(v.spi, &hex(v.key)).unwrap();
            if v.seq > 1 {
                // A window top just before the vector: seq low 0 then lies in the next
                // sub-space (RFC 4303 App. A2 case A).
                sa.window.mark(v.seq - 200);
            }
            let mut packet = Vec::new();
            packet.extend_from_slice(&v.spi.to_be_bytes());
            packet.extend_from_slice(&(v.seq as u32).to_be_bytes());
            packet.extend_from_slice(&hex(v.iv));
            packet.extend_from_slice(&hex(v.ctag));
            let opened = sa.open(&mut packet).unwrap();
            let plain = hex(v.plain);
            let pad = usize::from(plain[plain.len() - 2]);
            assert_eq!(opened.seq, v.seq);
            assert_eq!(opened.next_header, plain[plain.len() - 1]);
            assert_eq!(packet[opened.payload], plain[..plain.len() - 2 - pad]);
        }
    }

    // --- Seal and open ---

    #[test]
    fn round_trip_all_paddings() {
        let (mut out, mut inb) = pair();
        for len in (0..70).chain([1400, 1401, 1402, 1403]) {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut p = seal(&mut out, &payload, 41);
            // payload + padding + trailer is 4-aligned; the packet adds 16 + 16.
            assert_eq!((p.len() - 32) % 4, 0);
            assert!(p.len() - payload.len() <= ESP_OVERHEAD_MAX);
            assert!(p.len() - payload.len() >= ESP_OVERHEAD_MIN);
            let opened = inb.open(&mut p).unwrap();
            assert_eq!(opened.next_header, 41);
            assert_eq!(p[opened.payload], payload[..]);
        }
        assert_eq!(out.packets_sent(), 74);
        assert_eq!(inb.window().top(), 74);
    }

    #[test]
    fn seal_needs_head_and_tail_room() {
        let (mut out, _) = pair();
        let mut buf = [0; 64];
        assert_eq!(out.seal(&mut buf, 15..20, 6), Err(EspError::NoRoom));
        // 3 bytes: 3 of padding, 2 of trailer and 16 of ICV → 16 + 3 + 21 = 40 needed.
        assert_eq!(out.seal(&mut buf[..39], 16..19, 6), Err(EspError::NoRoom));
        let backwards = Range { start: 20, end: 16 };
        assert_eq!(out.seal(&mut buf, backwards, 6), Err(EspError::NoRoom));
        assert_eq!(out.seal(&mut buf, 16..100, 6), Err(EspError::NoRoom));
        assert_eq!(
            out.seal(&mut buf, usize::MAX - 1..usize::MAX, 6),
            Err(EspError::NoRoom)
        );
        assert_eq!(out.packets_sent(), 0, "failures use no sequence number");
        assert_eq!(out.seal(&mut buf[..40], 16..19, 6), Ok(0..40));
        // Headroom further in front stays untouched.
        let mut buf = [0xaa; 80];
        assert_eq!(out.seal(&mut buf, 30..34, 6), Ok(14..54));
        assert_eq!(buf[..14], [0xaa; 14]);
        assert_eq!(buf[54..], [0xaa; 26]);
    }

    #[test]
    fn sequence_exhaustion() {
        let (mut out, _) = pair();
        out.next_seq = u64::MAX;
        assert_eq!(out.seq(), Some(u64::MAX));
        let mut buf = [0; 64];
        assert!(out.seal(&mut buf, 16..20, 6).is_ok());
        assert_eq!(out.seq(), None);
        assert_eq!(out.packets_sent(), u64::MAX);
        assert_eq!(
            out.seal(&mut buf, 16..20, 6),
            Err(EspError::SequenceExhausted)
        );
    }

    #[test]
    fn every_bit_flip_fails() {
        let (mut out, _) = pair();
        let sealed = seal(&mut out, b"the quick brown fox", 6);
        for bit in 0..sealed.len() * 8 {
            let mut p = sealed.clone();
            p[bit / 8] ^= 1 << (bit % 8);
            let (_, mut inb) = pair();
            let err = inb.open(&mut p).unwrap_err();
            match bit / 8 {
                0..=3 => assert_eq!(err, EspError::SpiMismatch, "bit {bit}"),
                // Seq 1 with bit 0 flipped is 0, never valid; other flips fail the ICV.
                4..=7 => assert!(matches!(err, EspError::Auth | EspError::Stale), "bit {bit}"),
                _ => assert_eq!(err, EspError::Auth, "bit {bit}"),
            }
            assert_eq!(inb.window().top(), 0);
        }
    }

    #[test]
    fn replay_refused() {
        let (mut out, mut inb) = pair();
        let sealed = seal(&mut out, b"once", 17);
        assert!(inb.open(&mut sealed.clone()).is_ok());
        assert_eq!(inb.open(&mut sealed.clone()), Err(EspError::Replay));
        let later = seal(&mut out, b"twice", 17);
        assert!(inb.open(&mut later.clone()).is_ok());
        assert_eq!(inb.open(&mut sealed.clone()), Err(EspError::Replay));
        assert_eq!(inb.open(&mut later.clone()), Err(EspError::Replay));
    }

    #[test]
    fn stale_refused_without_decrypting() {
        let key = hex(KEY);
        let mut out = OutboundSa::new(SPI, &key).unwrap();
        let window = ReplayWindow::new(64).unwrap();
        let mut inb = InboundSa::with_window(SPI, &key, window).unwrap();
        let first = seal(&mut out, b"late", 6);
        out.next_seq = 1000;
        assert!(inb.open(&mut seal(&mut out, b"new", 6)).is_ok());
        // Corrupt the ICV too: Stale proves the AEAD was not reached.
        let mut late = first.clone();
        *late.last_mut().unwrap() ^= 1;
        assert_eq!(inb.open(&mut late), Err(EspError::Stale));
        assert_eq!(inb.open(&mut first.clone()), Err(EspError::Stale));
    }

    #[test]
    fn truncation_at_every_length() {
        let (mut out, mut inb) = pair();
        let sealed = seal(&mut out, b"truncate me", 6);
        for len in 0..sealed.len() {
            let mut p = sealed[..len].to_vec();
            let err = inb.open(&mut p).unwrap_err();
            let want = if len < ESP_MIN_LEN {
                EspError::Truncated
            } else {
                EspError::Auth
            };
            assert_eq!(err, want, "len {len}");
        }
        // Nothing moved the window: the whole packet still opens.
        assert!(inb.open(&mut sealed.clone()).is_ok());
    }

    #[test]
    fn malformed_trailers() {
        let key = hex(KEY);
        type Case = (&'static [u8], Result<(usize, u8), EspError>);
        let cases: [Case; 7] = [
            (&[0, 4], Ok((0, 4))),
            (&[0xaa, 1, 1, 41], Ok((1, 41))),
            (&[0xaa, 1, 2, 3, 3, 59], Ok((1, NEXT_HEADER_NONE))),
            // Pad length beyond the plaintext.
            (&[1, 2, 4], Err(EspError::BadTrailer)),
            (&[255, 6], Err(EspError::BadTrailer)),
            // Padding bytes not 1, 2, 3.
            (&[0xaa, 1, 3, 2, 6], Err(EspError::BadTrailer)),
            (&[0xaa, 0, 1, 6], Err(EspError::BadTrailer)),
        ];
        for (seq, (plain, want)) in (1..).zip(cases) {
            let mut sa = InboundSa::new(SPI, &key).unwrap();
            let mut p = seal_raw(seq, plain);
            let got = sa.open(&mut p).map(|o| (o.payload.len(), o.next_header));
            assert_eq!(got, want, "{plain:?}");
            // A bad trailer leaves the window alone.
            assert_eq!(sa.window().top(), if want.is_ok() { seq } else { 0 });
        }
        // The longest legal padding: 255 bytes.
        let mut plain: Vec<u8> = (1..=255).collect();
        plain.extend_from_slice(&[255, 4]);
        let mut sa = InboundSa::new(SPI, &key).unwrap();
        let mut p = seal_raw(1, &plain);
        assert_eq!(sa.open(&mut p).map(|o| o.payload), Ok(16..16));
    }

    #[test]
    fn constructors_check_inputs() {
        let key = hex(KEY);
        for len in [0, 16, 19, 21, 32] {
            let k = vec![7; len];
            assert_eq!(OutboundSa::new(SPI, &k).err(), Some(EspError::KeyLength));
            assert_eq!(InboundSa::new(SPI, &k).err(), Some(EspError::KeyLength));
        }
        for spi in [0, 1, 255] {
            assert_eq!(
                OutboundSa::new(spi, &key).err(),
                Some(EspError::ReservedSpi)
            );
            assert_eq!(InboundSa::new(spi, &key).err(), Some(EspError::ReservedSpi));
        }
        assert!(OutboundSa::new(256, &key).is_ok());
    }

    #[test]
    fn debug_hides_keys() {
        let (out, inb) = pair();
        let text = format!("{out:?} {inb:?}");
        assert!(text.contains("0x9a3bc4d5"), "{text}");
        for secret in ["feffe9", "fe, ff", "254", "cafebabe", "202, 254"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn spi_mismatch() {
        let (mut out, _) = pair();
        let mut other = InboundSa::new(SPI + 1, &hex(KEY)).unwrap();
        let mut p = seal(&mut out, b"x", 6);
        assert_eq!(other.open(&mut p), Err(EspError::SpiMismatch));
        let view = Packet::new_checked(&p[..]).unwrap();
        assert_eq!((view.spi(), view.sequence_number()), (SPI, 1));
        assert_eq!(view.iv(), 1u64.to_be_bytes());
        assert_eq!(Packet::new_checked(&p[..33]), Err(EspError::Truncated));
    }
}
