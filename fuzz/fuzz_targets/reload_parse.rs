//! The RELOAD wire parser on arbitrary bytes: link frames, the forwarding-header view,
//! whole messages and the bodies we know. Nothing may panic, and whatever parses must emit
//! the very same bytes (RELOAD keeps every field, so the round trip is exact).
//! Seeds: the digest's §8.2 vectors V1–V4 (framed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay::wire::{
    ChordLeaveData, ChordUpdate, DataModel, ErrorResponse, FetchAns, FetchReq, ForwardingHeader,
    FramedMessage, HitLocator, JoinAns, JoinReq, LeaveReq, Message, MessageCode, NameRecord,
    Packet, PingAns, PingReq, SecurityBlock, StoreAns, StoreReq,
};

/// Kind 1 dictionary (SIP-REGISTRATION), 2 single, 3 array; others unknown.
fn models(kind: u32) -> Option<DataModel> {
    match kind {
        1 => Some(DataModel::Dictionary),
        2 => Some(DataModel::Single),
        3 => Some(DataModel::Array),
        _ => None,
    }
}

/// Parse, and if that works, emit and compare with the input.
macro_rules! exact {
    ($parsed:expr, $bytes:expr) => {
        if let Ok(v) = $parsed {
            assert_eq!(v.to_bytes(), $bytes);
            assert_eq!(v.buffer_len(), $bytes.len());
        }
    };
}

fn body(code: MessageCode, b: &[u8]) {
    match code {
        MessageCode::PingReq => exact!(PingReq::parse(b), b),
        MessageCode::PingAns => exact!(PingAns::parse(b), b),
        MessageCode::JoinReq => exact!(JoinReq::parse(b), b),
        MessageCode::JoinAns => exact!(JoinAns::parse(b), b),
        MessageCode::LeaveReq => {
            if let Ok(leave) = LeaveReq::parse(b) {
                assert_eq!(leave.to_bytes(), b);
                let data = &leave.overlay_specific_data;
                exact!(ChordLeaveData::parse(data), data[..]);
            }
        }
        MessageCode::UpdateReq => exact!(ChordUpdate::parse(b), b),
        MessageCode::StoreReq => {
            exact!(StoreReq::parse(b, models), b);
            let _ = StoreReq::kinds(b);
        }
        MessageCode::StoreAns => exact!(StoreAns::parse(b), b),
        MessageCode::FetchReq => {
            exact!(FetchReq::parse(b, models), b);
            let _ = FetchReq::kinds(b);
        }
        MessageCode::FetchAns => exact!(FetchAns::parse(b, models), b),
        MessageCode::Error => exact!(ErrorResponse::parse(b), b),
        _ => {}
    }
}

fn message(b: &[u8]) {
    if let Ok(p) = Packet::new_checked(b) {
        let _ = p.first_destination();
        let _ = (p.via_list(), p.options(), p.payload());
    }
    if let Ok((header, payload)) = ForwardingHeader::parse(b) {
        assert_eq!(header.to_bytes(payload), b);
    }
    if let Ok(m) = Message::parse(b) {
        assert_eq!(m.to_bytes(), b);
        assert_eq!(Message::parse(&m.to_bytes()).as_ref(), Ok(&m));
        let _ = m.signed_bytes();
        body(m.contents.code, &m.contents.body);
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = FramedMessage::frame_len(data);
    if let Ok(frame) = FramedMessage::parse(data) {
        assert_eq!(frame.to_bytes(), data);
        if let FramedMessage::Data { message: m, .. } = &frame {
            message(m);
        }
    }
    // Unframed input, and the security block and bodies on their own (the first byte picks
    // a body type), so that the fuzzer reaches them without building a whole message.
    message(data);
    exact!(SecurityBlock::parse(data), data);
    exact!(NameRecord::parse(data), data);
    exact!(HitLocator::parse(data), data);
    if let Some((&pick, rest)) = data.split_first() {
        let codes = [
            MessageCode::PingReq,
            MessageCode::PingAns,
            MessageCode::JoinReq,
            MessageCode::JoinAns,
            MessageCode::LeaveReq,
            MessageCode::UpdateReq,
            MessageCode::StoreReq,
            MessageCode::StoreAns,
            MessageCode::FetchReq,
            MessageCode::FetchAns,
            MessageCode::Error,
        ];
        body(codes[usize::from(pick) % codes.len()], rest);
    }
});
