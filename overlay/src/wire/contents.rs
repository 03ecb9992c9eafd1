//! Message contents (RFC 6940 §6.3.3): message code, opaque body, extensions; and the body
//! of an error response (§6.3.3.1).
//!
//! The body stays opaque here: its layout depends on the code (and for Update, Leave and
//! RouteQuery on the topology plug-in), so the caller parses it with the body type it
//! expects (`PingReq::parse(&contents.body)`, …).

use super::{Decode, Encode, ReadExt, Reader, Sink, WireError, WriteExt};

/// Message codes (RFC 6940 §14.8, RFC 7851 for PathTrack). Requests are odd, their
/// answers the next even number, 0xffff is an error. Unknown values survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageCode {
    ProbeReq,
    ProbeAns,
    AttachReq,
    AttachAns,
    StoreReq,
    StoreAns,
    FetchReq,
    FetchAns,
    FindReq,
    FindAns,
    JoinReq,
    JoinAns,
    LeaveReq,
    LeaveAns,
    UpdateReq,
    UpdateAns,
    RouteQueryReq,
    RouteQueryAns,
    PingReq,
    PingAns,
    StatReq,
    StatAns,
    AppAttachReq,
    AppAttachAns,
    ConfigUpdateReq,
    ConfigUpdateAns,
    PathTrackReq,
    PathTrackAns,
    Error,
    Unknown(u16),
}

hip::raw_conversions!(MessageCode: u16 {
    ProbeReq = 0x01,
    ProbeAns = 0x02,
    AttachReq = 0x03,
    AttachAns = 0x04,
    StoreReq = 0x07,
    StoreAns = 0x08,
    FetchReq = 0x09,
    FetchAns = 0x0a,
    FindReq = 0x0d,
    FindAns = 0x0e,
    JoinReq = 0x0f,
    JoinAns = 0x10,
    LeaveReq = 0x11,
    LeaveAns = 0x12,
    UpdateReq = 0x13,
    UpdateAns = 0x14,
    RouteQueryReq = 0x15,
    RouteQueryAns = 0x16,
    PingReq = 0x17,
    PingAns = 0x18,
    StatReq = 0x19,
    StatAns = 0x1a,
    AppAttachReq = 0x1d,
    AppAttachAns = 0x1e,
    ConfigUpdateReq = 0x21,
    ConfigUpdateAns = 0x22,
    PathTrackReq = 0x27,
    PathTrackAns = 0x28,
    Error = 0xffff,
});

impl MessageCode {
    /// The paired range 0x0001..=0x7fff: odd is a request.
    pub fn is_request(self) -> bool {
        let v = u16::from(self);
        v < 0x8000 && v & 1 == 1
    }

    /// The success answer to a request (code + 1); `None` for anything but a request.
    pub fn answer(self) -> Option<MessageCode> {
        self.is_request()
            .then(|| MessageCode::from(u16::from(self) + 1))
    }
}

/// Error codes (RFC 6940 §14.9, RFC 7851 §9.2). Unknown values survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Forbidden,
    NotFound,
    RequestTimeout,
    GenerationCounterTooLow,
    IncompatibleWithOverlay,
    UnsupportedForwardingOption,
    DataTooLarge,
    DataTooOld,
    TtlExceeded,
    MessageTooLarge,
    UnknownKind,
    UnknownExtension,
    ResponseTooLarge,
    ConfigTooOld,
    ConfigTooNew,
    InProgress,
    ExpA,
    ExpB,
    InvalidMessage,
    UnderlayDestinationUnreachable,
    UnderlayTimeExceeded,
    MessageExpired,
    UpstreamMisrouting,
    LoopDetected,
    TtlHopsExceeded,
    Unknown(u16),
}

hip::raw_conversions!(ErrorCode: u16 {
    Forbidden = 0x02,
    NotFound = 0x03,
    RequestTimeout = 0x04,
    GenerationCounterTooLow = 0x05,
    IncompatibleWithOverlay = 0x06,
    UnsupportedForwardingOption = 0x07,
    DataTooLarge = 0x08,
    DataTooOld = 0x09,
    TtlExceeded = 0x0a,
    MessageTooLarge = 0x0b,
    UnknownKind = 0x0c,
    UnknownExtension = 0x0d,
    ResponseTooLarge = 0x0e,
    ConfigTooOld = 0x0f,
    ConfigTooNew = 0x10,
    InProgress = 0x11,
    ExpA = 0x12,
    ExpB = 0x13,
    InvalidMessage = 0x14,
    UnderlayDestinationUnreachable = 0x15,
    UnderlayTimeExceeded = 0x16,
    MessageExpired = 0x17,
    UpstreamMisrouting = 0x18,
    LoopDetected = 0x19,
    TtlHopsExceeded = 0x1a,
});

/// Message extension types (RFC 6940 §14.14, 16-bit despite the registry's wording).
pub mod extension_type {
    pub const EXP_EXT: u16 = 0x0001;
    /// RFC 7851 (Wireshark has 2 and 3 swapped).
    pub const DIAGNOSTIC_PING: u16 = 0x0002;
    /// RFC 7363.
    pub const SELF_TUNING_DATA: u16 = 0x0003;
}

/// One `MessageExtension`: type, critical flag, opaque contents. The type is kept as a
/// plain `u16` (see [`extension_type`]): extensions are handled by type number, and an
/// unknown critical one is answered with Error_Unknown_Extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExtension {
    pub ty: u16,
    pub critical: bool,
    pub contents: Vec<u8>,
}

/// The contents that mark our experimental extension (RFC 6940's exp-ext type, 0x0001)
/// as the connect-back request: a joining peer behind a NAT asks its admitting peer to
/// open the link to it (docs/OVERLAY.md, "Members behind NATs").
pub const CONNECT_BACK: &[u8] = b"hipbone connect-back";

impl MessageExtension {
    /// The connect-back request (not critical: a peer that does not know it ignores it).
    pub fn connect_back() -> MessageExtension {
        MessageExtension {
            ty: extension_type::EXP_EXT,
            critical: false,
            contents: CONNECT_BACK.to_vec(),
        }
    }

    /// Whether this is the connect-back request.
    pub fn is_connect_back(&self) -> bool {
        self.ty == extension_type::EXP_EXT && self.contents == CONNECT_BACK
    }
}

/// `MessageContents`: what the originator signs (with overlay and transaction ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContents {
    pub code: MessageCode,
    /// `opaque message_body<0..2^32-1>`, the method-specific structure.
    pub body: Vec<u8>,
    pub extensions: Vec<MessageExtension>,
}

impl MessageContents {
    /// Contents with no extensions.
    pub fn new(code: MessageCode, body: Vec<u8>) -> MessageContents {
        MessageContents {
            code,
            body,
            extensions: Vec::new(),
        }
    }

    /// An error response's contents.
    pub fn error(e: &ErrorResponse) -> MessageContents {
        MessageContents::new(MessageCode::Error, e.to_bytes())
    }

    /// The body as an [`ErrorResponse`] if the code is 0xffff.
    pub fn as_error(&self) -> Option<Result<ErrorResponse, WireError>> {
        (self.code == MessageCode::Error).then(|| ErrorResponse::parse(&self.body))
    }
}

/// `ErrorResponse`: a code and `error_info` (by default a UTF-8 diagnostic; for
/// Error_Generation_Counter_Too_Low a StoreAns, for Error_Unknown_Kind a Kind-ID list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub code: ErrorCode,
    pub info: Vec<u8>,
}

impl Decode for MessageExtension {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(MessageExtension {
            ty: r.u16()?,
            critical: r.boolean()?,
            contents: r.opaque(4)?.to_vec(),
        })
    }
}

impl Encode for MessageExtension {
    fn write(&self, w: &mut dyn Sink) {
        w.u16(self.ty);
        w.boolean(self.critical);
        w.opaque(4, &self.contents);
    }
}

impl Decode for MessageContents {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(MessageContents {
            code: r.u16()?.into(),
            body: r.opaque(4)?.to_vec(),
            extensions: r.list(4)?,
        })
    }
}

impl Encode for MessageContents {
    fn write(&self, w: &mut dyn Sink) {
        w.u16(self.code.into());
        w.opaque(4, &self.body);
        w.list(4, &self.extensions);
    }
}

impl Decode for ErrorResponse {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ErrorResponse {
            code: r.u16()?.into(),
            info: r.opaque(2)?.to_vec(),
        })
    }
}

impl Encode for ErrorResponse {
    fn write(&self, w: &mut dyn Sink) {
        w.u16(self.code.into());
        w.opaque(2, &self.info);
    }
}

repr_methods!(MessageExtension);
repr_methods!(MessageContents);
repr_methods!(ErrorResponse);

#[cfg(test)]
pub(super) mod tests {
    use super::super::testutil::{both_ways, hex, mutate};
    use super::*;

    /// V1's contents: ping_req with an empty padding, no extensions.
    pub fn ping_contents() -> (Vec<u8>, MessageContents) {
        (
            hex("0017 | 00000002 0000 | 00000000"),
            MessageContents::new(MessageCode::PingReq, vec![0, 0]),
        )
    }

    /// An error answer with a diagnostic and one critical extension.
    fn error_contents() -> (Vec<u8>, MessageContents) {
        (
            hex("ffff | 00000008 000c 0004 6b696e64 |
                 0000000a | 0001 01 00000003 616263"),
            MessageContents {
                code: MessageCode::Error,
                body: hex("000c 0004 6b696e64"),
                extensions: vec![MessageExtension {
                    ty: extension_type::EXP_EXT,
                    critical: true,
                    contents: b"abc".to_vec(),
                }],
            },
        )
    }

    /// A join lookup that asks for a connect-back: exp-ext, not critical, our marker
    /// ("hipbone connect-back", 20 bytes).
    fn connect_back_contents() -> (Vec<u8>, MessageContents) {
        let mut value = MessageContents::new(MessageCode::PingReq, vec![0, 0]);
        value.extensions.push(MessageExtension::connect_back());
        (
            hex("0017 | 00000002 0000 | 0000001b |
                 0001 00 00000014 686970626f6e6520636f6e6e6563742d6261636b"),
            value,
        )
    }

    #[test]
    fn contents_both_ways() {
        for (bytes, value) in [ping_contents(), error_contents(), connect_back_contents()] {
            both_ways(
                &bytes,
                &value,
                MessageContents::parse,
                MessageContents::to_bytes,
            );
        }
    }

    #[test]
    fn error_response_both_ways_and_from_contents() {
        let e = ErrorResponse {
            code: ErrorCode::UnknownKind,
            info: b"kind".to_vec(),
        };
        both_ways(
            &hex("000c 0004 6b696e64"),
            &e,
            ErrorResponse::parse,
            ErrorResponse::to_bytes,
        );
        let (_, contents) = error_contents();
        assert_eq!(contents.as_error(), Some(Ok(e.clone())));
        assert_eq!(MessageContents::error(&e).body, contents.body);
        assert_eq!(ping_contents().1.as_error(), None);
        let bad = MessageContents::new(MessageCode::Error, vec![0]);
        assert_eq!(bad.as_error(), Some(Err(WireError::Truncated)));
    }

    #[test]
    fn extension_critical_flag_is_a_strict_boolean() {
        let mut bytes = error_contents().0;
        let flag = bytes.len() - 8;
        bytes[flag] = 2;
        assert_eq!(
            MessageContents::parse(&bytes),
            Err(WireError::Invalid("Boolean"))
        );
    }

    #[test]
    fn message_codes_round_trip_and_pair() {
        for v in 0..=u16::MAX {
            assert_eq!(u16::from(MessageCode::from(v)), v);
        }
        for v in 0..=u16::MAX {
            assert_eq!(u16::from(ErrorCode::from(v)), v);
        }
        assert_eq!(MessageCode::from(0x17), MessageCode::PingReq);
        assert_eq!(MessageCode::PingReq.answer(), Some(MessageCode::PingAns));
        assert_eq!(MessageCode::StoreReq.answer(), Some(MessageCode::StoreAns));
        assert_eq!(
            MessageCode::from(0x23).answer(),
            Some(MessageCode::Unknown(0x24))
        );
        assert_eq!(MessageCode::PingAns.answer(), None);
        assert_eq!(MessageCode::Error.answer(), None);
        assert!(!MessageCode::Unknown(0x8001).is_request());
        assert_eq!(ErrorCode::from(0x0e), ErrorCode::ResponseTooLarge);
        assert_eq!(ErrorCode::from(0x01), ErrorCode::Unknown(1));
    }

    #[test]
    fn oversized_info_is_not_encodable() {
        let e = ErrorResponse {
            code: ErrorCode::InvalidMessage,
            info: vec![b'x'; 65536],
        };
        assert!(!e.encodable());
        assert_eq!(e.to_bytes().len(), e.buffer_len());
        assert!(ErrorResponse::parse(&e.to_bytes()).is_err());
        assert!(MessageContents::error(&e).encodable());
    }

    #[test]
    fn random_mutations_of_contents() {
        let seeds = vec![ping_contents().0, error_contents().0];
        let parsed = mutate(
            &seeds,
            5000,
            0x1234_5678,
            MessageContents::parse,
            MessageContents::to_bytes,
        );
        assert!(parsed > 100 && parsed < 4500, "{parsed}");
    }
}
