//! Every error the mint path can meet, through the real mappings up to the
//! gRPC status: a caller's mistake is never INTERNAL, and only INTERNAL
//! writes an ERROR line.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mayfly_ca::CaError;
use tonic::{Code, Status};
use tracing_subscriber::layer::SubscriberExt as _;

use super::{MintError, attest_error, ca_error};
use crate::api::status::INTERNAL_MESSAGE;
use crate::attest::AttestError;

/// The levels of the events logged while `f` runs on this thread.
fn status_and_log_levels(f: impl FnOnce() -> Status) -> (Status, Vec<tracing::Level>) {
    #[derive(Clone, Default)]
    struct Levels(Arc<Mutex<Vec<tracing::Level>>>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Levels {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0.lock().unwrap().push(*event.metadata().level());
        }
    }
    let levels = Levels::default();
    let subscriber = tracing_subscriber::registry().with(levels.clone());
    let status = tracing::subscriber::with_default(subscriber, f);
    let logged = levels.0.lock().unwrap().clone();
    (status, logged)
}

/// Checks one mapped error: its code, that the caller is told why (or,
/// for our bug, only that it is ours), and that only our bug is an ERROR.
fn assert_maps(what: &str, status: Status, levels: &[tracing::Level], expected: Code) {
    assert_eq!(status.code(), expected, "{what}: {status:?}");
    let errors = levels
        .iter()
        .filter(|l| **l == tracing::Level::ERROR)
        .count();
    if expected == Code::Internal {
        assert_eq!(status.message(), INTERNAL_MESSAGE, "{what}");
        assert_eq!(errors, 1, "{what}: our bug is logged as an error");
    } else {
        assert_ne!(status.message(), INTERNAL_MESSAGE, "{what}");
        assert_eq!(errors, 0, "{what}: a refusal is not an error: {levels:?}");
    }
}

/// One `CaError` of every variant and the status the broker answers it
/// with. The `mayfly-ca` crate's own test (`every_variant_is_classified`)
/// is the one that fails to compile when a variant is added; this one
/// checks the broker's side of the table.
fn ca_errors() -> Vec<(CaError, Code)> {
    use Code::{FailedPrecondition, Internal, InvalidArgument, Unavailable};
    let path = || PathBuf::from("/var/lib/mayfly/ca/x.pem");
    let text = || "reason".to_owned();
    let expired = SystemTime::UNIX_EPOCH;
    vec![
        (
            CaError::Io {
                operation: "read",
                path: path(),
                source: std::io::ErrorKind::NotFound.into(),
            },
            Internal,
        ),
        (
            CaError::KeyFileTooOpen {
                path: path(),
                mode: 0o644,
            },
            Internal,
        ),
        (CaError::NotARegularFile { path: path() }, Internal),
        (
            CaError::FileTooLarge {
                path: path(),
                len: 2,
                max: 1,
            },
            Internal,
        ),
        (
            CaError::IncompleteCaState {
                missing: path(),
                present: path(),
            },
            Internal,
        ),
        (
            CaError::InvalidPem {
                path: path(),
                expected_label: "CERTIFICATE",
                reason: text(),
            },
            Internal,
        ),
        (
            CaError::InvalidKey {
                context: text(),
                reason: text(),
            },
            Internal,
        ),
        (
            CaError::InvalidCertificate {
                path: path(),
                reason: text(),
            },
            Internal,
        ),
        (
            CaError::KeyCertificateMismatch {
                key: path(),
                certificate: path(),
            },
            Internal,
        ),
        (
            CaError::IntermediateNotIssuedByRoot {
                intermediate: path(),
                root: path(),
            },
            Internal,
        ),
        (
            CaError::TrustDomainMismatch {
                configured: text(),
                found: text(),
            },
            Internal,
        ),
        (CaError::RootExpired { not_after: expired }, Unavailable),
        (CaError::SignerExpired { not_after: expired }, Unavailable),
        (
            CaError::ForeignTrustDomain {
                spiffe_id: text(),
                trust_domain: text(),
            },
            InvalidArgument,
        ),
        (
            CaError::SpiffeIdWithoutPath { spiffe_id: text() },
            InvalidArgument,
        ),
        (CaError::InvalidDnsName { name: text() }, InvalidArgument),
        (
            CaError::InvalidTtl {
                ttl: Duration::ZERO,
            },
            InvalidArgument,
        ),
        (
            CaError::TimeOutOfRange {
                reason: "before 1970",
            },
            Internal,
        ),
        (
            CaError::InvalidTokenLifetime {
                issued_at: 2,
                expires_at: 1,
            },
            InvalidArgument,
        ),
        (CaError::CsrTooLarge { len: 2, max: 1 }, InvalidArgument),
        (CaError::CsrMalformed { reason: text() }, InvalidArgument),
        (CaError::CsrBadSignature, InvalidArgument),
        (
            CaError::CsrUnsupportedKey {
                algorithm: text(),
                reason: text(),
            },
            InvalidArgument,
        ),
        (
            CaError::CsrUnsupportedSignature {
                algorithm: "1.2.840.10045.4.3.4 for a EcdsaP256 key".into(),
            },
            InvalidArgument,
        ),
        (
            CaError::InvalidSerial {
                serial: text(),
                reason: "not hex",
            },
            InvalidArgument,
        ),
        (
            CaError::InvalidCrlPeriod {
                this_update: 2,
                next_update: 1,
            },
            InvalidArgument,
        ),
        (
            CaError::JournalInvalid {
                path: path(),
                reason: text(),
            },
            Internal,
        ),
        (
            CaError::JournalFileMissing {
                path: path(),
                journal: path(),
            },
            Internal,
        ),
        (
            CaError::JournalFileMismatch {
                path: path(),
                reason: text(),
            },
            Internal,
        ),
        (
            CaError::RotationRefused { reason: text() },
            FailedPrecondition,
        ),
        (
            CaError::CertificateRejected { reason: text() },
            InvalidArgument,
        ),
        (CaError::Crypto { operation: "sign" }, Internal),
        (
            CaError::Internal {
                operation: "encoding",
                reason: text(),
            },
            Internal,
        ),
    ]
}

#[test]
fn every_ca_error_maps_to_the_status_of_its_fault() {
    let cases = ca_errors();
    // Every variant of today; the CA crate's test keeps the count honest.
    assert_eq!(cases.len(), 33);
    for (error, expected) in cases {
        let what = format!("{error:?}");
        let (status, levels) = status_and_log_levels(|| Status::from(ca_error(error)));
        assert_maps(&what, status, &levels, expected);
    }
}

#[test]
fn an_unsupported_csr_signature_is_the_callers_mistake_and_names_the_algorithm() {
    let error = CaError::CsrUnsupportedSignature {
        algorithm: "1.2.840.10045.4.1 for a EcdsaP256 key".into(),
    };
    let status = Status::from(ca_error(error));
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("1.2.840.10045.4.1"), "{status:?}");
}

/// A distinct number per `AttestError` variant; no wildcard arm, so a new
/// variant does not compile until it is numbered (and then the test below
/// fails until it has an example).
fn attest_variant(error: &AttestError) -> usize {
    match error {
        AttestError::Malformed { .. } => 0,
        AttestError::UnsupportedAlgorithm { .. } => 1,
        AttestError::UntrustedIssuer { .. } => 2,
        AttestError::UnknownKeyId { .. } => 3,
        AttestError::BadSignature => 4,
        AttestError::Expired { .. } => 5,
        AttestError::NotYetValid { .. } => 6,
        AttestError::TooOld { .. } => 7,
        AttestError::WrongAudience { .. } => 8,
        AttestError::MissingClaim { .. } => 9,
        AttestError::BadClaimValue { .. } => 10,
        AttestError::UntrustedCertificate { .. } => 11,
        AttestError::BadChallenge { .. } => 12,
        AttestError::BadProofSignature => 13,
        AttestError::Replayed { .. } => 14,
        AttestError::NotConfigured { .. } => 15,
        AttestError::Unavailable { .. } => 16,
    }
}

const ATTEST_VARIANTS: usize = 17;

fn attest_errors() -> Vec<(AttestError, Code)> {
    use Code::{InvalidArgument, Unauthenticated, Unavailable};
    let text = || "reason".to_owned();
    vec![
        (AttestError::Malformed { reason: text() }, Unauthenticated),
        (
            AttestError::UnsupportedAlgorithm {
                alg: "none".into(),
                allowed: "RS256".into(),
            },
            Unauthenticated,
        ),
        (
            AttestError::UntrustedIssuer { found: text() },
            Unauthenticated,
        ),
        (
            AttestError::UnknownKeyId {
                kid: text(),
                issuer: text(),
            },
            Unauthenticated,
        ),
        (AttestError::BadSignature, Unauthenticated),
        (
            AttestError::Expired {
                expired_at: 1,
                now: 2,
            },
            Unauthenticated,
        ),
        (
            AttestError::NotYetValid {
                not_before: 2,
                now: 1,
            },
            Unauthenticated,
        ),
        (
            AttestError::TooOld {
                issued_at: 1,
                max_age_seconds: 60,
            },
            Unauthenticated,
        ),
        (
            AttestError::WrongAudience {
                expected: text(),
                found: vec![text()],
            },
            Unauthenticated,
        ),
        (
            AttestError::MissingClaim {
                claim: text(),
                expected: "string",
            },
            Unauthenticated,
        ),
        (
            AttestError::BadClaimValue {
                claim: text(),
                reason: text(),
            },
            Unauthenticated,
        ),
        (
            AttestError::UntrustedCertificate { reason: text() },
            Unauthenticated,
        ),
        (
            AttestError::BadChallenge { reason: text() },
            Unauthenticated,
        ),
        (AttestError::BadProofSignature, Unauthenticated),
        (AttestError::Replayed { attestor: "oidc" }, Unauthenticated),
        (
            AttestError::NotConfigured {
                attestor: "x509pop",
            },
            InvalidArgument,
        ),
        (AttestError::Unavailable { reason: text() }, Unavailable),
    ]
}

#[test]
fn every_attest_error_maps_to_a_refusal_never_internal() {
    let mut seen = [false; ATTEST_VARIANTS];
    for (error, expected) in attest_errors() {
        let number = attest_variant(&error);
        assert!(!seen[number], "two examples of variant {number}");
        seen[number] = true;
        let what = format!("{error:?}");
        let (status, levels) = status_and_log_levels(|| Status::from(attest_error(error)));
        assert_maps(&what, status, &levels, expected);
    }
    assert!(
        seen.iter().all(|s| *s),
        "an AttestError variant has no example: {seen:?}"
    );
}

/// A distinct number per `MintError` variant, as above.
fn mint_variant(error: &MintError) -> usize {
    match error {
        MintError::InvalidArgument { .. } => 0,
        MintError::Unauthenticated { .. } => 1,
        MintError::PermissionDenied { .. } => 2,
        MintError::FailedPrecondition { .. } => 3,
        MintError::Unavailable { .. } => 4,
        MintError::Internal { .. } => 5,
    }
}

const MINT_VARIANTS: usize = 6;

#[test]
fn every_mint_error_maps_to_its_code_and_only_internal_is_an_error_line() {
    let reason = || "why".to_owned();
    let cases = [
        (
            MintError::InvalidArgument { reason: reason() },
            Code::InvalidArgument,
        ),
        (
            MintError::Unauthenticated { reason: reason() },
            Code::Unauthenticated,
        ),
        (
            MintError::PermissionDenied { reason: reason() },
            Code::PermissionDenied,
        ),
        (
            MintError::FailedPrecondition { reason: reason() },
            Code::FailedPrecondition,
        ),
        (
            MintError::Unavailable { reason: reason() },
            Code::Unavailable,
        ),
        (MintError::Internal { reason: reason() }, Code::Internal),
    ];
    let mut seen = [false; MINT_VARIANTS];
    for (error, expected) in cases {
        seen[mint_variant(&error)] = true;
        let what = format!("{error:?}");
        let (status, levels) = status_and_log_levels(|| Status::from(error));
        assert_maps(&what, status.clone(), &levels, expected);
        if expected != Code::Internal {
            assert_eq!(status.message(), "why", "the caller is told why");
        }
    }
    assert!(
        seen.iter().all(|s| *s),
        "a MintError variant has no example: {seen:?}"
    );
}
