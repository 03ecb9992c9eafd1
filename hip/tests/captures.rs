//! Conformance against packets another implementation put on a wire
//! (`shared/captures/README.md`): a HIPv2 base exchange, ESP and four UPDATEs between two
//! hosts running a third-party Python HIPv2 stack, HIP directly over IPv4. Every HIP packet
//! must parse, carry a correct checksum and re-emit byte for byte.
//!
//! The pcap, Ethernet and IPv4 readers below are the least that reads this file; they
//! fail loudly on anything else rather than skipping it.

use std::net::{IpAddr, Ipv4Addr};

use hip::wire::{fill_checksum, param_type, verify_checksum, HipRepr, Packet, PacketType, Param};

const CAPTURE: &[u8] = include_bytes!("data/cutehip-hipv2-rsa.pcap");

const LINKTYPE_ETHERNET: u32 = 1;
const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTO_ESP: u8 = 50;
const PROTO_HIP: u8 = 139;

/// One IPv4 datagram from the capture.
struct Datagram<'a> {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload: &'a [u8],
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// The frames of a classic (libpcap 2.4) file, either byte order.
fn pcap_frames(file: &[u8]) -> Vec<&[u8]> {
    let magic = [file[0], file[1], file[2], file[3]];
    let u32_at: fn([u8; 4]) -> u32 = match magic {
        // Microsecond and nanosecond magics, as written by little- and big-endian hosts.
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => u32::from_le_bytes,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => u32::from_be_bytes,
        _ => panic!("not a classic pcap file: magic {magic:02x?}"),
    };
    let word = |at: usize| u32_at(file[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(word(20), LINKTYPE_ETHERNET as usize, "link type");
    let mut frames = Vec::new();
    let mut at = 24;
    while at < file.len() {
        let (captured, on_wire) = (word(at + 8), word(at + 12));
        assert_eq!(
            captured,
            on_wire,
            "frame {} was cut short",
            frames.len() + 1
        );
        frames.push(&file[at + 16..at + 16 + captured]);
        at += 16 + captured;
    }
    frames
}

/// The IPv4 datagram in an Ethernet II frame, if it holds one.
fn ipv4(frame: &[u8]) -> Option<Datagram<'_>> {
    if be16(&frame[12..]) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame[14..];
    assert_eq!(ip[0] >> 4, 4);
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(be16(&ip[2..]));
    // A fragment would need reassembly first; this capture has none.
    assert_eq!(be16(&ip[6..]) & 0x3fff, 0, "fragmented datagram");
    Some(Datagram {
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        protocol: ip[9],
        payload: &ip[header_len..total_len],
    })
}

fn datagrams() -> Vec<Datagram<'static>> {
    let frames = pcap_frames(CAPTURE);
    assert_eq!(frames.len(), 22, "frames in the capture (README)");
    frames.into_iter().filter_map(ipv4).collect()
}

fn hip_packets() -> Vec<Datagram<'static>> {
    datagrams()
        .into_iter()
        .filter(|d| d.protocol == PROTO_HIP)
        .collect()
}

#[test]
fn every_hip_packet_parses_verifies_and_round_trips() {
    let packets = hip_packets();
    assert_eq!(packets.len(), 8, "I1, R1, I2, R2 and four UPDATEs");
    for (n, d) in packets.iter().enumerate() {
        let (src, dst) = (IpAddr::V4(d.src), IpAddr::V4(d.dst));
        let packet = Packet::new_checked(d.payload).unwrap();
        assert_eq!(
            packet.total_len(),
            d.payload.len(),
            "packet {n}: trailing bytes"
        );
        assert!(
            packet.params().all(|p| p.is_ok()),
            "packet {n}: TLV framing"
        );
        assert!(verify_checksum(src, dst, d.payload), "packet {n}: checksum");

        let repr = HipRepr::parse(d.payload).unwrap_or_else(|e| panic!("packet {n}: {e}"));
        let mut bytes = repr.to_bytes();
        fill_checksum(src, dst, &mut bytes);
        assert_eq!(
            bytes, d.payload,
            "packet {n} ({}) re-emitted",
            repr.packet_type
        );
        assert_eq!(HipRepr::parse(&bytes).unwrap(), repr);
    }
}

#[test]
fn capture_holds_the_exchange_the_readme_describes() {
    let reprs: Vec<HipRepr> = hip_packets()
        .iter()
        .map(|d| HipRepr::parse(d.payload).unwrap())
        .collect();
    let types: Vec<PacketType> = reprs.iter().map(|r| r.packet_type).collect();
    use PacketType::*;
    assert_eq!(types, [I1, R1, I2, R2, Update, Update, Update, Update]);
    let [i1, r1, i2, r2, ..] = &reprs[..] else {
        unreachable!()
    };
    assert!(reprs.iter().all(|r| r.next_header == 59 && r.version == 2));
    assert_eq!(
        (r1.sender_hit, r1.receiver_hit),
        (i1.receiver_hit, i1.sender_hit)
    );

    // R1: what the README lists, in type order.
    let r1_types: Vec<u16> = r1.params.iter().map(Param::ty).collect();
    use param_type as t;
    assert_eq!(
        r1_types,
        [
            t::PUZZLE,
            t::DH_GROUP_LIST,
            t::DIFFIE_HELLMAN,
            t::HIP_CIPHER,
            t::HOST_ID,
            t::HIT_SUITE_LIST,
            t::TRANSPORT_FORMAT_LIST,
            t::ESP_TRANSFORM,
            t::HIP_SIGNATURE_2,
        ]
    );
    let Some(Param::HostId(host_id)) = r1.param(t::HOST_ID) else {
        panic!("R1 without HOST_ID")
    };
    // RSA (5): e_len 3 | e = 65537 | 128-byte modulus; DI is an NAI (type 2).
    assert_eq!(host_id.algorithm, 5);
    assert_eq!(host_id.hi.len(), 132);
    assert_eq!(host_id.hi[..4], [3, 0x01, 0x00, 0x01]);
    assert_eq!(host_id.di_type, 2);
    assert_eq!(host_id.di, b"dmitriy.kuptsov@strangebit.io");
    assert_eq!(
        r1.param(t::HIT_SUITE_LIST),
        Some(&Param::HitSuiteList(vec![0x10, 0x20, 0x30]))
    );
    assert!(matches!(
        r1.param(t::DIFFIE_HELLMAN),
        Some(Param::DiffieHellman { group: 7, public }) if public.len() == 64
    ));
    assert!(matches!(
        r1.param(t::ESP_TRANSFORM),
        Some(Param::EspTransform { suites, .. }) if suites == &[9, 8, 7]
    ));

    // I2 solves R1's puzzle: same #K, Opaque and #I.
    let (Some(Param::Puzzle(puzzle)), Some(Param::Solution(solution))) =
        (r1.param(t::PUZZLE), i2.param(t::SOLUTION))
    else {
        panic!("no PUZZLE in R1 or no SOLUTION in I2")
    };
    assert_eq!(
        (puzzle.k, puzzle.opaque, &puzzle.i),
        (solution.k, solution.opaque, &solution.i)
    );
    assert_eq!(solution.j.len(), 32);

    // Each ESP_INFO announces the SPI its sender receives on: the capture's ESP agrees.
    let spi_sent_to = |host: Ipv4Addr| -> Vec<u32> {
        datagrams()
            .iter()
            .filter(|d| d.protocol == PROTO_ESP && d.dst == host)
            .map(|d| u32::from_be_bytes(d.payload[..4].try_into().unwrap()))
            .collect()
    };
    for (repr, host) in [
        (i2, Ipv4Addr::new(192, 0, 2, 1)),
        (r2, Ipv4Addr::new(192, 0, 2, 2)),
    ] {
        let Some(Param::EspInfo(info)) = repr.param(t::ESP_INFO) else {
            panic!("{} without ESP_INFO", repr.packet_type)
        };
        assert_eq!(info.old_spi, 0);
        let spis = spi_sent_to(host);
        assert!(!spis.is_empty() && spis.iter().all(|&spi| spi == info.new_spi));
    }
}

#[test]
fn covered_bytes_match_the_captured_prefix() {
    // For a packet without zeroed fields, what HIP_MAC and HIP_SIGNATURE cover is the packet
    // as received, cut before that parameter, with Header Length adjusted and checksum zero.
    for d in hip_packets() {
        let repr = HipRepr::parse(d.payload).unwrap();
        let packet = Packet::new_checked(d.payload).unwrap();
        for upto in [param_type::HIP_MAC, param_type::HIP_SIGNATURE] {
            let Some(cut) = packet.params().flatten().find(|p| p.ty >= upto) else {
                continue;
            };
            let mut expected = d.payload[..cut.offset].to_vec();
            expected[1] = (cut.offset / 8 - 1) as u8;
            expected[4..6].fill(0);
            assert_eq!(repr.covered_bytes(upto, &[]), expected);
        }
    }
}
