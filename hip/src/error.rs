//! The crate's one error type, grouped by kind, each kind mapped to what a peer is told.

use crate::crypto::CryptoError;
use crate::identity::{Hit, IdentityError};
use crate::wire::{NotifyType, WireError};

/// Why a packet was refused or an operation failed.
///
/// Kinds: malformed input (`Malformed`, `UnsupportedCritical`), a peer that misbehaved
/// (`InvalidHit`, `BadSignature`, `BadMac`, `BadPuzzle`, `BadEncryption`, `DhDowngrade`,
/// `Unexpected`), a peer we cannot talk to (`No*Proposal`, `UnsupportedHitSuite`), local
/// limits and misuse (`TooManyAssociations`, `UnknownPeer`, `Timeout`, `PuzzleTooHard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    Malformed(WireError),
    /// A non-zero HIP checksum that does not match the addresses and bytes.
    BadChecksum,
    /// A critical parameter we do not understand (RFC 7401 §5.2.1).
    UnsupportedCritical(u16),
    /// A required parameter is missing, or one appears that must not.
    MissingParam(u16),
    InvalidHit,
    BadSignature,
    BadMac,
    BadPuzzle,
    BadEncryption,
    /// The peer's identity is not an acceptable key.
    Identity(IdentityError),
    Crypto(CryptoError),
    /// The responder chose a DH group that is not the first common one (RFC 7401 §6.8 step 7).
    DhDowngrade,
    NoDhProposal,
    NoHipCipher,
    NoEspTransform,
    UnsupportedHitSuite,
    /// The packet is not acceptable in the association's state.
    Unexpected,
    TooManyAssociations,
    UnknownPeer(Hit),
    /// Retransmissions ran out.
    Timeout,
    /// The puzzle was not solved within the configured number of tries, or its K is above
    /// the configured limit.
    PuzzleTooHard,
    /// A packet seen before (an I2 whose exchange already happened).
    Replayed,
    /// More packets from one source than the configured rate allows.
    RateLimited,
    /// The I2 selected a NAT traversal mode we did not offer, or one that cannot run
    /// through the relay it came by (RFC 9028 §4.3, §4.7.2).
    NatMode,
    /// A packet routed through the overlay (HIP BONE) that we may not or cannot pass on:
    /// another overlay, a hop we have no association with, a loop, no next hop.
    NoRoute,
    /// A routed packet whose OVERLAY_TTL ran out (RFC 6079 §6.2).
    OverlayTtlExceeded,
}

impl Error {
    /// The NOTIFY message type that tells a peer about this error, where one exists.
    pub fn notify_type(&self) -> Option<NotifyType> {
        Some(match self {
            Error::UnsupportedCritical(_) => NotifyType::UnsupportedCriticalParameterType,
            Error::Malformed(_) | Error::MissingParam(_) => NotifyType::InvalidSyntax,
            Error::InvalidHit => NotifyType::InvalidHit,
            Error::BadSignature => NotifyType::AuthenticationFailed,
            Error::BadMac => NotifyType::HipMacFailed,
            Error::BadEncryption => NotifyType::EncryptionFailed,
            Error::NoDhProposal => NotifyType::NoDhProposalChosen,
            Error::DhDowngrade => NotifyType::InvalidDhChosen,
            Error::NoHipCipher => NotifyType::NoHipProposalChosen,
            Error::NoEspTransform => NotifyType::NoEspProposalChosen,
            Error::UnsupportedHitSuite => NotifyType::UnsupportedHitSuite,
            Error::TooManyAssociations => NotifyType::ResponderBusyPleaseRetry,
            Error::NatMode => NotifyType::NoValidNatTraversalModeParameter,
            _ => return None,
        })
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Malformed(e) => write!(f, "malformed packet: {e}"),
            Error::BadChecksum => f.write_str("bad HIP checksum"),
            Error::UnsupportedCritical(t) => write!(f, "unsupported critical parameter {t}"),
            Error::MissingParam(t) => write!(f, "missing or misplaced parameter {t}"),
            Error::InvalidHit => f.write_str("HIT does not match the host identity"),
            Error::BadSignature => f.write_str("bad signature"),
            Error::BadMac => f.write_str("bad HIP_MAC"),
            Error::BadPuzzle => f.write_str("wrong or stale puzzle solution"),
            Error::BadEncryption => f.write_str("ENCRYPTED parameter did not decrypt"),
            Error::Identity(e) => write!(f, "unacceptable host identity: {e}"),
            Error::Crypto(e) => write!(f, "crypto failure: {e}"),
            Error::DhDowngrade => f.write_str("Diffie-Hellman group downgrade detected"),
            Error::NoDhProposal => f.write_str("no common Diffie-Hellman group"),
            Error::NoHipCipher => f.write_str("no common HIP cipher"),
            Error::NoEspTransform => f.write_str("no common ESP transform"),
            Error::UnsupportedHitSuite => f.write_str("unsupported HIT suite"),
            Error::Unexpected => f.write_str("packet not acceptable in this state"),
            Error::TooManyAssociations => f.write_str("association table is full"),
            Error::UnknownPeer(h) => write!(f, "no association with {h}"),
            Error::Timeout => f.write_str("no answer after all retransmissions"),
            Error::PuzzleTooHard => f.write_str("puzzle too hard (K or tries above the limit)"),
            Error::Replayed => f.write_str("replayed packet"),
            Error::RateLimited => f.write_str("rate limit for this source reached"),
            Error::NatMode => f.write_str("NAT traversal mode not offered or not usable here"),
            Error::NoRoute => f.write_str("no route through the overlay"),
            Error::OverlayTtlExceeded => f.write_str("overlay hop limit reached"),
        }
    }
}

impl std::error::Error for Error {}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        Error::Malformed(e)
    }
}
impl From<IdentityError> for Error {
    fn from(e: IdentityError) -> Self {
        Error::Identity(e)
    }
}
impl From<CryptoError> for Error {
    fn from(e: CryptoError) -> Self {
        Error::Crypto(e)
    }
}
