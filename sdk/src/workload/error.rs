//! The one error type of [`crate::workload`], and the one place where the
//! agent's gRPC statuses become it.

use crate::TrustDomain;
use crate::jwt::JwtSvidError;
use crate::revocation::RevocationError;
use crate::spiffe_id::{SpiffeId, SpiffeIdError};

/// The text of the agent's refusal to a workload it grants nothing (the
/// words SPIRE uses too).
const NO_IDENTITY: &str = "no identity issued";

/// Why a Workload API call, a source or a verifier failed.
///
/// The variants separate who is at fault: the caller's input
/// ([`InvalidArgument`](Self::InvalidArgument),
/// [`InvalidEndpoint`](Self::InvalidEndpoint), [`InvalidJwtSvid`](Self::InvalidJwtSvid)),
/// the workload's entitlement ([`NoIdentityIssued`](Self::NoIdentityIssued),
/// [`PermissionDenied`](Self::PermissionDenied)), a missing agent
/// ([`Unavailable`](Self::Unavailable)), or something the agent sent that
/// this crate cannot use ([`InvalidResponse`](Self::InvalidResponse)).
/// [`is_retryable`](Self::is_retryable) says which are worth another try.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// `SPIFFE_ENDPOINT_SOCKET` is not set, and no endpoint was given.
    #[error("SPIFFE_ENDPOINT_SOCKET is not set; it names the agent's socket (unix:///path)")]
    EndpointNotSet,

    /// The endpoint address is not a `unix:` URI with an absolute path
    /// (SPIFFE_Workload_Endpoint.md §4).
    #[error("workload endpoint {endpoint:?} is not valid: {reason}")]
    InvalidEndpoint {
        /// The address as given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The agent could not be reached, or said it cannot serve yet
    /// (gRPC `Unavailable`). Worth retrying with backoff.
    #[error("the Workload API is unavailable: {message}")]
    Unavailable {
        /// What the transport or the agent said.
        message: String,
    },

    /// The agent refused the request as malformed (gRPC `InvalidArgument`).
    /// Retrying the same request cannot help.
    #[error("the agent refused the request as invalid: {message}")]
    InvalidArgument {
        /// The agent's reason.
        message: String,
    },

    /// The agent grants this workload no identity: no registered entry
    /// matches what it proved about the calling process.
    #[error("no identity issued: no entry registered under the agent matches this workload")]
    NoIdentityIssued,

    /// The agent knows the workload but refused this request (an audience
    /// the entry does not allow, a SPIFFE ID it does not hold, a failed
    /// attestation).
    #[error("the agent refused: {message}")]
    PermissionDenied {
        /// The agent's reason.
        message: String,
    },

    /// The agent answered with another gRPC status.
    #[error("the Workload API call failed ({code}): {message}")]
    Agent {
        /// The gRPC status code's name, e.g. `Internal`.
        code: String,
        /// The agent's message.
        message: String,
    },

    /// A stream from the agent ended without an error.
    #[error("the agent ended the Workload API stream")]
    StreamEnded,

    /// The agent sent something this crate cannot use (a malformed SVID,
    /// bundle or JWKS). The last good material, if any, stays in use.
    #[error("the agent sent an unusable response: {reason}")]
    InvalidResponse {
        /// What is wrong with it.
        reason: String,
    },

    /// None of the workload's SVIDs has the SPIFFE ID the source was asked
    /// to follow, or the agent returned no SVID at all.
    #[error("no SVID for {}", wanted.as_ref().map_or("this workload".to_owned(), |id| id.to_string()))]
    NoSuitableSvid {
        /// The SPIFFE ID asked for, if any.
        wanted: Option<SpiffeId>,
    },

    /// A certificate does not carry exactly one valid SPIFFE ID URI SAN.
    #[error("the certificate is not an X509-SVID: {reason}")]
    NotAnX509Svid {
        /// What is wrong with it.
        reason: String,
    },

    /// A TLS peer's SPIFFE ID is not one the [`Authorizer`](super::Authorizer)
    /// accepts (its chain was valid).
    #[error("peer {peer} is not authorized (expected {expected})")]
    PeerNotAuthorized {
        /// The peer's SPIFFE ID.
        peer: SpiffeId,
        /// What the authorizer accepts.
        expected: String,
    },

    /// A TLS peer with a valid chain was refused by the revocation check of
    /// an [`X509Source`](super::X509Source) built
    /// [`with_revocations`](super::X509Source::with_revocations): a
    /// revocation covers its certificate ([`RevocationError::Revoked`]), or
    /// the revocation set is too stale to tell ([`RevocationError::Stale`]:
    /// failing closed, worth retrying once the set is fresh again).
    #[error("peer {peer} refused by the revocation check: {reason}")]
    PeerRevoked {
        /// The peer's SPIFFE ID.
        peer: SpiffeId,
        /// Which. Part of this error's message, so not also its `source()`.
        reason: RevocationError,
    },

    /// A JWT-SVID was rejected by [`JwtVerifier`](super::JwtVerifier).
    #[error("invalid JWT-SVID: {reason}")]
    InvalidJwtSvid {
        /// Why. Part of this error's message, so not also its `source()`.
        reason: JwtSvidError,
    },

    /// A JWT-SVID with a valid signature and claims was refused by the
    /// revocation check of a [`JwtVerifier`](super::JwtVerifier) built
    /// [`with_revocations`](super::JwtVerifier::with_revocations): a
    /// revocation covers it ([`RevocationError::Revoked`]), or the
    /// revocation set is too stale to tell ([`RevocationError::Stale`]:
    /// failing closed, worth retrying once the set is fresh again).
    #[error("JWT-SVID refused by the revocation check: {reason}")]
    Revoked {
        /// Which. Part of this error's message, so not also its `source()`.
        reason: RevocationError,
    },

    /// A JWT-SVID's subject is in a trust domain the verifier has no JWT
    /// bundle for.
    #[error("no JWT bundle for trust domain {trust_domain}")]
    UnknownTrustDomain {
        /// The token's trust domain.
        trust_domain: TrustDomain,
    },

    /// A SPIFFE ID given to this crate is not valid.
    #[error("invalid SPIFFE ID: {reason}")]
    InvalidSpiffeId {
        /// Why. Part of this error's message, so not also its `source()`.
        reason: SpiffeIdError,
    },

    /// A rustls configuration could not be built (a bug, not bad input).
    #[error("cannot build the TLS configuration: {reason}")]
    Tls {
        /// What rustls said.
        reason: String,
    },

    /// The source was shut down.
    #[error("the source is closed")]
    Closed,
}

impl WorkloadError {
    /// Whether the same call may succeed later: `false` for the caller's
    /// bad input (InvalidArgument, an invalid endpoint, SPIFFE ID or
    /// token, a revoked token or peer) and for a closed source, `true`
    /// otherwise, including [`NoIdentityIssued`](Self::NoIdentityIssued) (an
    /// operator may register the workload in the meantime) and a stale
    /// revocation set.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Self::EndpointNotSet
                | Self::InvalidEndpoint { .. }
                | Self::InvalidArgument { .. }
                | Self::InvalidJwtSvid { .. }
                | Self::Revoked {
                    reason: RevocationError::Revoked { .. }
                }
                | Self::PeerRevoked {
                    reason: RevocationError::Revoked { .. },
                    ..
                }
                | Self::InvalidSpiffeId { .. }
                | Self::NotAnX509Svid { .. }
                | Self::PeerNotAuthorized { .. }
                | Self::Closed
        )
    }

    /// Whether the agent is worth waiting for when a source starts: it is
    /// not reachable yet, not ready, or hung up. Refusals are reported at
    /// once instead, so a misconfigured workload hears why.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::Agent { .. } | Self::StreamEnded
        )
    }

    /// The agent's gRPC status, in this crate's terms.
    pub(crate) fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument => Self::InvalidArgument { message },
            Code::PermissionDenied if message == NO_IDENTITY => Self::NoIdentityIssued,
            Code::PermissionDenied | Code::Unauthenticated => Self::PermissionDenied { message },
            Code::Unavailable => Self::Unavailable { message },
            code => Self::Agent {
                code: format!("{code:?}"),
                message,
            },
        }
    }

    /// An unusable response, with its reason.
    pub(crate) fn invalid_response(reason: impl Into<String>) -> Self {
        Self::InvalidResponse {
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn statuses_map_to_who_is_at_fault() {
        assert_eq!(
            WorkloadError::from_status(&Status::permission_denied("no identity issued")),
            WorkloadError::NoIdentityIssued
        );
        assert!(matches!(
            WorkloadError::from_status(&Status::permission_denied("audience x")),
            WorkloadError::PermissionDenied { .. }
        ));
        let invalid = WorkloadError::from_status(&Status::invalid_argument("no header"));
        assert!(!invalid.is_retryable());
        let unavailable = WorkloadError::from_status(&Status::unavailable("not ready"));
        assert!(unavailable.is_retryable() && unavailable.is_transient());
        let internal = WorkloadError::from_status(&Status::internal("oops"));
        assert_eq!(
            internal,
            WorkloadError::Agent {
                code: "Internal".into(),
                message: "oops".into()
            }
        );
        assert!(!WorkloadError::NoIdentityIssued.is_transient());
        assert!(WorkloadError::NoIdentityIssued.is_retryable());
    }

    #[test]
    fn a_revoked_token_is_final_and_a_stale_set_is_not() {
        let revoked = WorkloadError::Revoked {
            reason: RevocationError::Revoked {
                kind: crate::revocation::RevocationKind::Jti,
                value: "t1".into(),
                revoked_at: 100,
                reason: "leaked".into(),
            },
        };
        assert!(!revoked.is_retryable());
        assert!(
            revoked.to_string().contains("revoked (jti t1)"),
            "{revoked}"
        );
        let stale = WorkloadError::Revoked {
            reason: RevocationError::Stale {
                age_secs: 20,
                bound_secs: 15,
            },
        };
        assert!(stale.is_retryable());
        assert!(stale.to_string().contains("failing closed"), "{stale}");
    }
}
