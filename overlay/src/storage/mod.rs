//! The storage layer (RFC 6940 §7): Kinds, access control, per-value signatures and the
//! store a peer keeps for the Resource-IDs it is responsible for or replicates.
//!
//! Sans-IO like the rest of the crate. Time comes in as `now_ms`, milliseconds on the
//! caller's clock: it dates expiry, and the caller's wall clock (ms since the epoch) is
//! what a writer puts in `storage_time`; the store itself only compares storage times
//! with each other, never with `now_ms`.
//!
//! - [`kind`]: [`KindDef`] and the registry [`Kinds`], also the `models` callback of the
//!   wire parsers; hipbone's Kinds (SIP-REGISTRATION, HIT-LOCATOR, NAME-RECORD,
//!   DEBUG-ARRAY).
//! - [`signature`]: [`sign_value`] / [`verify_value`] and the [`Certificates`] a message
//!   carries (R9: Ed25519 raw keys whose HIT is the signer's Node-ID).
//! - [`access`]: the policies ([`access::check`]) and [`verify_fetch_answer`], the checks a
//!   fetching node runs on what a storing peer sent back.
//! - [`store`]: [`Store`], RFC 6940 §7.4.1–§7.4.2 on a bounded table: Store, Fetch,
//!   expiry, and the hand-over of records for replication.
//!
//! Every refusal is a [`StorageError`], which [`StorageError::response`] turns into the
//! RELOAD error the node answers with.

pub mod access;
pub mod kind;
pub mod signature;
pub mod store;

pub use access::{verify_fetch_answer, VerifiedFetch, VerifiedKind, VerifiedValue};
pub use kind::{AccessPolicy, KindDef, Kinds, UserName};
pub use signature::{
    sign_value, signed_store, signer_identity, verify_value, Certificates, Signer,
};
pub use store::{Counts, Fetched, Store, StoreLimits, Transfer, Writer};

use crate::wire::{
    ErrorCode, ErrorResponse, KindId, SignatureAndHashAlgorithm, StoreAns, WireError,
};

/// Why a Store, a Fetch or a value was refused. Grouped as the crate's errors are: what is
/// malformed, what the peer may not do, what conflicts with the stored state, what the
/// store has no room for, and local misuse. [`response`](Self::response) gives the RELOAD
/// error for each.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageError {
    // Malformed input → Error_Invalid_Message.
    /// The body does not parse.
    Malformed(WireError),
    /// A Resource-ID that is not 16 bytes: no position on our ring.
    BadResourceId,
    /// The same Kind twice in one request (RFC 6940 §7.4.1.1).
    DuplicateKind(KindId),
    /// A value or selector whose layout is not its Kind's data model.
    WrongModel(KindId),
    /// An array index range with `first > last`.
    BadRange(KindId),
    /// A Fetch answer carries a Kind or a key the request did not ask for.
    Unrequested(KindId),

    // Peer incompatible → Error_Unknown_Kind.
    /// Kinds this overlay does not define, all of those in the request.
    UnknownKinds(Vec<KindId>),

    // Not allowed → Error_Forbidden.
    /// Not `{8, 7}` (Ed25519): anonymous and other algorithms are refused.
    UnsupportedSignature(SignatureAndHashAlgorithm),
    /// The signer identity names no certificate of the message.
    UnknownSigner,
    /// The signature does not verify.
    BadSignature,
    /// The signer may not write there (Resource-ID or dictionary key not its own).
    AccessDenied { kind: KindId, policy: AccessPolicy },
    /// An original Store carries a value signed by someone other than the request's
    /// signer: only copies (replicas, a join's hand-over) may.
    NotTheSigner(KindId),
    /// A claim of a name without a valid grant of one of the overlay's signers.
    NotGranted(KindId),

    // Conflicts with the stored state.
    /// Error_Generation_Counter_Too_Low: the current counters of the request's Kinds.
    GenerationMismatch(StoreAns),
    /// Error_Data_Too_Old: a value older than the one stored in its place.
    DataTooOld(KindId),

    // No room → Error_Data_Too_Large.
    /// One value is larger than its Kind's `max_size`.
    ValueTooLarge { kind: KindId, size: usize, max: u32 },
    /// More values (or a higher array index) than the Kind's `max_count`.
    TooManyValues { kind: KindId, max: u32 },
    /// The store as a whole is at one of its [`StoreLimits`].
    StoreFull,
    /// The values' signer already holds [`StoreLimits::max_per_signer`] values here.
    SignerQuota,

    // Local misuse: a configuration that cannot work. Never sent.
    /// A Kind definition [`Kinds::new`] refuses.
    BadKindDef(KindId, &'static str),
}

impl StorageError {
    /// The RELOAD error code (RFC 6940 §6.3.3.1).
    pub fn code(&self) -> ErrorCode {
        use StorageError::*;
        match self {
            Malformed(_) | BadResourceId | DuplicateKind(_) | WrongModel(_) | BadRange(_)
            | Unrequested(_) | BadKindDef(..) => ErrorCode::InvalidMessage,
            UnknownKinds(_) => ErrorCode::UnknownKind,
            UnsupportedSignature(_)
            | UnknownSigner
            | BadSignature
            | AccessDenied { .. }
            | NotTheSigner(_)
            | NotGranted(_) => ErrorCode::Forbidden,
            GenerationMismatch(_) => ErrorCode::GenerationCounterTooLow,
            DataTooOld(_) => ErrorCode::DataTooOld,
            ValueTooLarge { .. } | TooManyValues { .. } | StoreFull | SignerQuota => {
                ErrorCode::DataTooLarge
            }
        }
    }

    /// The error response to send: the code, and as `error_info` the structure the RFC
    /// prescribes (a StoreAns for Error_Generation_Counter_Too_Low, `KindId
    /// unknown_kinds<0..2^8-1>` for Error_Unknown_Kind) or else this error's text.
    pub fn response(&self) -> ErrorResponse {
        let info = match self {
            StorageError::GenerationMismatch(ans) => ans.to_bytes(),
            StorageError::UnknownKinds(kinds) => {
                // The list has a one-byte length: 63 Kinds fit; the rest are left out.
                let listed = kinds.len().min(usize::from(u8::MAX) / 4);
                let mut info = vec![(listed * 4) as u8];
                for k in &kinds[..listed] {
                    info.extend_from_slice(&k.to_be_bytes());
                }
                info
            }
            other => other.to_string().into_bytes(),
        };
        ErrorResponse {
            code: self.code(),
            info,
        }
    }
}

impl core::fmt::Display for StorageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use StorageError::*;
        match self {
            Malformed(e) => write!(f, "malformed storage request: {e}"),
            BadResourceId => f.write_str("Resource-ID is not 16 bytes"),
            DuplicateKind(k) => write!(f, "Kind {k:#x} appears twice"),
            WrongModel(k) => write!(f, "value or selector does not fit the model of Kind {k:#x}"),
            BadRange(k) => write!(f, "array range with first > last for Kind {k:#x}"),
            Unrequested(k) => write!(f, "answer holds a value of Kind {k:#x} nobody asked for"),
            UnknownKinds(ks) => write!(f, "unknown Kinds {ks:x?}"),
            UnsupportedSignature(a) => write!(f, "signature algorithm {a:?} not accepted"),
            UnknownSigner => f.write_str("no certificate for the value's signer"),
            BadSignature => f.write_str("value signature does not verify"),
            AccessDenied { kind, policy } => {
                write!(f, "signer may not write Kind {kind:#x} here ({policy:?})")
            }
            GenerationMismatch(_) => f.write_str("generation counter does not match"),
            DataTooOld(k) => write!(f, "a value of Kind {k:#x} is older than the stored one"),
            ValueTooLarge { kind, size, max } => {
                write!(f, "value of {size} bytes for Kind {kind:#x} (max {max})")
            }
            TooManyValues { kind, max } => write!(f, "more than {max} values of Kind {kind:#x}"),
            StoreFull => f.write_str("storage full"),
            SignerQuota => f.write_str("the signer holds as many values here as one may"),
            NotTheSigner(k) => write!(f, "a value of Kind {k:#x} is not the request signer's"),
            NotGranted(k) => write!(
                f,
                "a claim of Kind {k:#x} carries no valid grant of a signer of this overlay"
            ),
            BadKindDef(k, why) => write!(f, "Kind {k:#x} cannot be defined: {why}"),
        }
    }
}

impl std::error::Error for StorageError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::StoreKindResponse;

    #[test]
    fn errors_map_to_reload_responses() {
        let e = StorageError::UnknownKinds(vec![0x104, 0xF000_0009]);
        assert_eq!(
            e.response(),
            ErrorResponse {
                code: ErrorCode::UnknownKind,
                info: vec![8, 0, 0, 1, 4, 0xf0, 0, 0, 9],
            }
        );
        let many = StorageError::UnknownKinds((1..=100).collect());
        let info = many.response().info;
        assert_eq!((info[0], info.len()), (252, 253));

        let ans = StoreAns {
            kind_responses: vec![StoreKindResponse {
                kind: 1,
                generation: 7,
                replicas: vec![],
            }],
        };
        let e = StorageError::GenerationMismatch(ans.clone());
        assert_eq!(e.response().code, ErrorCode::GenerationCounterTooLow);
        assert_eq!(StoreAns::parse(&e.response().info), Ok(ans));

        assert_eq!(StorageError::BadSignature.code(), ErrorCode::Forbidden);
        assert_eq!(StorageError::DataTooOld(1).code(), ErrorCode::DataTooOld);
        assert_eq!(StorageError::StoreFull.code(), ErrorCode::DataTooLarge);
        assert_eq!(
            StorageError::TooManyValues { kind: 1, max: 2 }.code(),
            ErrorCode::DataTooLarge
        );
        let text = StorageError::DataTooOld(1).response();
        assert_eq!(
            text.info,
            b"a value of Kind 0x1 is older than the stored one"
        );
        assert!(text.encodable());
    }
}
