//! Why a JWT-SVID was rejected, or a validator could not be built.

use std::fmt;

use super::timestamp::Timestamp;
use crate::jose::{JoseError, KeyError};
use crate::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};

/// Why a JWT-SVID was rejected, or a validator could not be built.
///
/// Variants carry what an operator needs to act, never the token.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtSvidError {
    /// The token failed a check of the JOSE layer: size, shape, header,
    /// algorithm, or signature (see [`crate::jose`]).
    #[error(transparent)]
    Jose(#[from] JoseError),

    /// No authority has the token's `kid`.
    #[error("no JWT authority of {trust_domain} has key ID {kid:?}")]
    UnknownKeyId {
        /// The token's `kid` (shortened if long).
        kid: String,
        /// The validator's trust domain.
        trust_domain: TrustDomain,
    },

    /// A required claim is absent.
    #[error("the token has no {claim:?} claim")]
    MissingClaim {
        /// The claim.
        claim: &'static str,
    },

    /// A claim has the wrong JSON type.
    #[error("claim {claim:?} must be {expected}")]
    InvalidClaimType {
        /// The claim.
        claim: &'static str,
        /// What it must be.
        expected: &'static str,
    },

    /// `sub` is not a valid SPIFFE ID.
    #[error("the token's subject is not a valid SPIFFE ID: {reason}")]
    BadSubject {
        /// Why. Part of this error's message, so not also its `source()`.
        reason: SpiffeIdError,
    },

    /// `sub` is a SPIFFE ID in another trust domain.
    #[error("the token's subject {actual} is not in trust domain {expected}")]
    WrongTrustDomain {
        /// The validator's trust domain.
        expected: TrustDomain,
        /// The subject.
        actual: SpiffeId,
    },

    /// `sub` is the trust domain's own SPIFFE ID, which names no workload
    /// (JWT-SVID.md §3.1: the subject is the SPIFFE ID of the workload).
    #[error("the token's subject {subject} is a trust domain, not a workload; it has no path")]
    SubjectWithoutPath {
        /// The subject.
        subject: SpiffeId,
    },

    /// `exp` has passed, beyond the leeway.
    #[error("the token expired at {} (now {})", Timestamp(*expired_at), Timestamp(*now))]
    Expired {
        /// The token's `exp`, Unix seconds.
        expired_at: i64,
        /// The time of the check, Unix seconds.
        now: i64,
    },

    /// `aud` does not contain the expected audience.
    #[error("the token is for audience {actual:?}, not {expected:?}")]
    WrongAudience {
        /// The audience the caller expected.
        expected: String,
        /// The token's audiences.
        actual: Vec<String>,
    },

    /// `nbf` is in the future, beyond the leeway.
    #[error("the token is not valid before {} (now {})", Timestamp(*not_before), Timestamp(*now))]
    NotYetValid {
        /// The token's `nbf`, Unix seconds.
        not_before: i64,
        /// The time of the check, Unix seconds.
        now: i64,
    },

    /// `iat` is in the future, beyond the leeway: the issuer's clock is off,
    /// or the token was forged for later use.
    #[error("the token claims to be issued at {}, in the future (now {})", Timestamp(*issued_at), Timestamp(*now))]
    IssuedInFuture {
        /// The token's `iat`, Unix seconds.
        issued_at: i64,
        /// The time of the check, Unix seconds.
        now: i64,
    },

    /// `exp` is further from `iat`, or from the time of the check, than the
    /// validator's maximum lifetime plus its leeway: no issuer this validator
    /// trusts should sign a token that long-lived.
    #[error(
        "the token expires at {}, {lifetime_secs}s after {measured_from} ({}); \
         at most {max_lifetime_secs}s (plus {leeway_secs}s leeway) is accepted",
        Timestamp(*expires_at),
        Timestamp(*start)
    )]
    LifetimeTooLong {
        /// The token's `exp`, Unix seconds.
        expires_at: i64,
        /// What the lifetime was counted from.
        measured_from: LifetimeStart,
        /// That moment, Unix seconds: the token's `iat` or the time of the check.
        start: i64,
        /// `expires_at - start`, in seconds (saturating at `i64::MAX`).
        lifetime_secs: i64,
        /// The validator's maximum lifetime, in seconds.
        max_lifetime_secs: i64,
        /// The validator's leeway, in seconds.
        leeway_secs: i64,
    },

    /// [`JwtSvidValidator::new`](super::JwtSvidValidator::new) was given no authorities.
    #[error("no JWT authorities given for {trust_domain}; nothing could be verified")]
    NoAuthorities {
        /// The trust domain.
        trust_domain: TrustDomain,
    },

    /// [`JwtSvidValidator::new`](super::JwtSvidValidator::new) was given two authorities with one key ID.
    #[error("two JWT authorities share the key ID {kid:?}")]
    DuplicateKeyId {
        /// The shared key ID.
        kid: String,
    },

    /// [`JwtSvidValidator::new`](super::JwtSvidValidator::new) was given an unusable public key.
    #[error("JWT authority {kid:?} is not a usable public key: {reason}")]
    InvalidKey {
        /// The key ID.
        kid: String,
        /// What is wrong with it.
        reason: KeyError,
    },
}

/// What a token's lifetime was counted from, in [`JwtSvidError::LifetimeTooLong`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeStart {
    /// The token's `iat`.
    IssuedAt,
    /// The time of the check: `exp` is too far ahead whatever `iat` says
    /// (or the token has none).
    Now,
}

impl fmt::Display for LifetimeStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::IssuedAt => "its iat",
            Self::Now => "the time of the check",
        })
    }
}
