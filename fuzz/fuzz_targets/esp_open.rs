//! The ESP data path (`hip::esp`) on arbitrary bytes. Every input goes through all of:
//!
//! 1. `InboundSa::open` on the raw bytes, for an SA that owns the packet's SPI and whose
//!    replay window (size and top from the input) puts ESN inference in any of its cases;
//! 2. a seal → open round trip of the input as payload, a replay of it, and the same packet
//!    with one byte changed;
//! 3. the replay window driven by the input's 32-bit words;
//! 4. the BEET parsers, header writers, checksum rewrite and ICMP error builders.
//!
//! Nothing may panic, and: a sealed packet opens once to the same payload and then never
//! again; a changed one never opens; the window never accepts a number twice; a parsed
//! inner header written back parses to the same fields; ICMP errors are valid IP packets.
#![no_main]

use hip::esp::{
    icmpv4_frag_needed, icmpv6_packet_too_big, parse_ipv4, parse_ipv6, rewrite_transport_checksum,
    write_ipv4_header, write_ipv6_header, EspError, InboundSa, OutboundSa, ReplayWindow,
    ESP_HEADER_LEN, ESP_TAIL_MAX,
};
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 20] = [
    0xfe, 0xff, 0xe9, 0x92, 0x86, 0x65, 0x73, 0x1c, 0x6d, 0x6a, 0x8f, 0x94, 0x67, 0x30, 0x83, 0x08,
    0xca, 0xfe, 0xba, 0xbe,
];

fn word(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fuzz_target!(|data: &[u8]| {
    open_raw(data);
    round_trip(data);
    window(data);
    beet(data);
});

fn open_raw(data: &[u8]) {
    let spi = word(data, 0).unwrap_or(0).max(256);
    let size = 64 * (1 + usize::from(data.get(16).copied().unwrap_or(0)));
    let mut window = ReplayWindow::new(size).unwrap();
    if let Some(top) = data.get(8..16) {
        window.mark(u64::from_be_bytes(top.try_into().unwrap()));
    }
    let mut sa = InboundSa::with_window(spi, &KEY, window).unwrap();
    let mut packet = data.to_vec();
    if let Ok(opened) = sa.open(&mut packet) {
        // Only reachable by forging GCM; if it ever happens, the range must still be sane.
        assert!(opened.payload.start == ESP_HEADER_LEN && opened.payload.end <= packet.len());
    }
}

fn round_trip(data: &[u8]) {
    let spi = 0x1234_5678;
    let mut out = OutboundSa::new(spi, &KEY).unwrap();
    let mut inb = InboundSa::new(spi, &KEY).unwrap();
    let next_header = data.first().copied().unwrap_or(0);
    let mut buf = vec![0; ESP_HEADER_LEN + data.len() + ESP_TAIL_MAX];
    buf[ESP_HEADER_LEN..ESP_HEADER_LEN + data.len()].copy_from_slice(data);
    let esp = out
        .seal(
            &mut buf,
            ESP_HEADER_LEN..ESP_HEADER_LEN + data.len(),
            next_header,
        )
        .unwrap();
    let sealed = buf[esp].to_vec();

    let mut packet = sealed.clone();
    let opened = inb.open(&mut packet).unwrap();
    assert_eq!(opened.seq, 1);
    assert_eq!(opened.next_header, next_header);
    assert_eq!(&packet[opened.payload], data);
    assert_eq!(inb.open(&mut sealed.clone()), Err(EspError::Replay));

    // One byte changed, at a place and by a value the input picks.
    let mut fresh = InboundSa::new(spi, &KEY).unwrap();
    let mut changed = sealed;
    let at = word(data, 0).unwrap_or(0) as usize % changed.len();
    changed[at] ^= data.get(4).copied().unwrap_or(1).max(1);
    assert!(fresh.open(&mut changed).is_err());
}

fn window(data: &[u8]) {
    let size = 64 * (1 + usize::from(data.first().copied().unwrap_or(0) % 8));
    let mut w = ReplayWindow::new(size).unwrap();
    for chunk in data.chunks_exact(4) {
        let low = u32::from_be_bytes(chunk.try_into().unwrap());
        // The top bit of a word's first byte makes it a big forward jump.
        let low = if chunk[0] & 0x80 != 0 {
            low
        } else {
            (w.top() as u32).wrapping_add(low % 4096).wrapping_sub(2048)
        };
        if let Ok(seq) = w.check(low) {
            assert_eq!(seq as u32, low);
            w.mark(seq);
            assert_eq!(w.check(low), Err(EspError::Replay));
        }
    }
}

fn beet(data: &[u8]) {
    if let Ok(v6) = parse_ipv6(data) {
        let payload = &data[v6.payload.clone()];
        let mut rebuilt = vec![0; 40 + payload.len()];
        write_ipv6_header(
            &mut rebuilt,
            v6.src,
            v6.dst,
            v6.next_header,
            payload.len(),
            v6.hop_limit,
        );
        rebuilt[40..].copy_from_slice(payload);
        let again = parse_ipv6(&rebuilt).unwrap();
        assert_eq!((again.src, again.dst), (v6.src, v6.dst));
        assert_eq!(
            (again.next_header, again.hop_limit),
            (v6.next_header, v6.hop_limit)
        );
        assert_eq!(&rebuilt[again.payload], payload);
    }
    if let Ok(v4) = parse_ipv4(data) {
        let payload = &data[v4.payload.clone()];
        let mut rebuilt = vec![0; 20 + payload.len()];
        write_ipv4_header(
            &mut rebuilt,
            v4.src,
            v4.dst,
            v4.next_header,
            payload.len(),
            v4.ttl,
        );
        rebuilt[20..].copy_from_slice(payload);
        let again = parse_ipv4(&rebuilt).unwrap();
        assert_eq!((again.src, again.dst), (v4.src, v4.dst));
        assert_eq!((again.next_header, again.ttl), (v4.next_header, v4.ttl));
        assert_eq!(&rebuilt[again.payload], payload);
    }

    // Checksum rewrites between every pair of address lengths, addresses from the input.
    let a4 = data.get(..4).unwrap_or(&[0; 4]);
    let a16 = data.get(..16).unwrap_or(&[0; 16]);
    for next_header in [6, 17, data.first().copied().unwrap_or(0)] {
        let mut segment = data.to_vec();
        rewrite_transport_checksum(next_header, &mut segment, a4, a4, a16, a16);
        rewrite_transport_checksum(next_header, &mut segment, a16, a16, a4, a4);
    }

    let mut buf = [0; 1500];
    let mtu = word(data, 0).unwrap_or(1280);
    let n = icmpv6_packet_too_big(&mut buf, mtu, data);
    if n > 0 {
        assert!(n <= 1280);
        assert_eq!(parse_ipv6(&buf[..n]).map(|ip| ip.payload.end), Ok(n));
    }
    let n = icmpv4_frag_needed(&mut buf, mtu as u16, data);
    if n > 0 {
        assert_eq!(parse_ipv4(&buf[..n]).map(|ip| ip.payload.end), Ok(n));
    }
}
