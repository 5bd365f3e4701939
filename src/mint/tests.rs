//! Every error the mint path can meet, through the real mappings up to the
//! gRPC status: a caller's mistake is never INTERNAL, and only INTERNAL
//! writes an ERROR line.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mayfly_ca::CaError;
use tonic::{Code, Status};
use tracing_subscriber::layer::SubscriberExt as _;

use mayfly_sdk::SpiffeId;
use mayfly_sdk::jwt::{Audience, JwtSvidError};
use mayfly_sdk::revocation::{Revocation, RevocationError, RevocationKind};

use super::{Denied, Internal, InvalidRequest, MintError, Unavailable, Unproven};
use crate::api::status::INTERNAL_MESSAGE;
use crate::attest::AttestError;
use crate::audience::AudienceRefusal;
use crate::policy::{CredentialKind, EntryError, EntryId};

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
        let (status, levels) = status_and_log_levels(|| Status::from(MintError::from(error)));
        assert_maps(&what, status, &levels, expected);
    }
}

#[test]
fn an_unsupported_csr_signature_is_the_callers_mistake_and_names_the_algorithm() {
    let error = CaError::CsrUnsupportedSignature {
        algorithm: "1.2.840.10045.4.1 for a EcdsaP256 key".into(),
    };
    let status = Status::from(MintError::from(error));
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
        let (status, levels) = status_and_log_levels(|| Status::from(MintError::from(error)));
        assert_maps(&what, status, &levels, expected);
    }
    assert!(
        seen.iter().all(|s| *s),
        "an AttestError variant has no example: {seen:?}"
    );
}

/// A distinct number per variant of `MintError` and of each reason it
/// holds (an exhaustive match: a new variant fails to compile until it has
/// a number, and the test below until it has an example).
fn mint_variant(error: &MintError) -> usize {
    match error {
        MintError::Invalid(reason) => match reason {
            InvalidRequest::AudienceRequired => 0,
            InvalidRequest::Audience(_) => 1,
            InvalidRequest::ZeroTtl => 2,
            InvalidRequest::TtlTooLong { .. } => 3,
            InvalidRequest::EntryId(_) => 4,
            InvalidRequest::AmbiguousEvidence { .. } => 5,
            InvalidRequest::JoinTokenBoundElsewhere { .. } => 6,
        },
        MintError::Unproven(reason) => match reason {
            Unproven::JoinTokenMalformed => 7,
            Unproven::JoinTokenUnknown => 8,
            Unproven::JoinTokenUsed { .. } => 9,
            Unproven::JoinTokenExpired { .. } => 10,
            Unproven::CertificateRevoked(_) => 11,
            Unproven::TokenInvalid(_) => 12,
            Unproven::TokenRevoked(_) => 13,
        },
        MintError::Denied(reason) => match reason {
            Denied::Revoked { .. } => 14,
            Denied::JoinTokenEntryGone { .. } => 15,
            Denied::EvidenceNotForRequested { .. } => 16,
            Denied::NoMatchingEntry { .. } => 17,
            Denied::AgentEntryExpired { .. } => 18,
            Denied::NoSuchEntry { .. } => 19,
            Denied::NotUnderAgent { .. } => 20,
            Denied::NoEntryFor { .. } => 21,
            Denied::EntryExpired { .. } => 22,
            Denied::KindNotAllowed { .. } => 23,
            Denied::AudienceNotAllowed { .. } => 24,
            Denied::EntryDisabled { .. } => 33,
            Denied::Audience(refusal) => match refusal {
                AudienceRefusal::EnvironmentMismatch { .. } => 34,
                AudienceRefusal::AboveClearance { .. } => 35,
                AudienceRefusal::UnknownDataClass { .. } => 36,
                AudienceRefusal::Unregistered { .. } => 37,
            },
            Denied::AgentEnvironment(_) => 38,
            Denied::AttestorEnvironment(_) => 39,
            Denied::Breakglass(refused) => match refused {
                crate::breakglass::UseRefused::Exhausted { .. } => 41,
                _ => 40,
            },
        },
        MintError::Attestation(_) => 25,
        MintError::Ca(_) => 26,
        MintError::Unavailable(reason) => match reason {
            Unavailable::Revocations(_) => 27,
            Unavailable::JoinTokenLookup(_) => 28,
            Unavailable::JoinTokenRedeem(_) => 29,
            Unavailable::Audit(_) => 30,
            Unavailable::Breakglass(_) => 42,
        },
        MintError::Internal(reason) => match reason {
            Internal::IssuerAlreadySet { .. } => 31,
            Internal::Validator(_) => 32,
        },
    }
}

const MINT_VARIANTS: usize = 43;

/// One example of every mint error and reason, with its status code.
/// (`Attestation` and `Ca` have their own tables above.)
fn mint_errors() -> Vec<(MintError, Code)> {
    let id = || SpiffeId::parse("spiffe://example.org/web").unwrap();
    let entry_id = || EntryId::parse("0123456789abcdef").unwrap();
    let revoked = || RevocationError::Revoked {
        kind: RevocationKind::Jti,
        value: "j".into(),
        revoked_at: 1,
        reason: String::new(),
    };
    let stale = || RevocationError::Stale {
        age_secs: 9,
        bound_secs: 1,
    };
    let store = || crate::store::StoreError::Unavailable {
        reason: "down".into(),
    };
    let revocation = Arc::new(Revocation {
        kind: RevocationKind::SpiffeId,
        value: "spiffe://example.org/web".into(),
        subjects: vec![id()],
        revoked_at: 1,
        expires_at: None,
        reason: "compromised".into(),
        actor: "ops".into(),
    });
    vec![
        (
            InvalidRequest::AudienceRequired.into(),
            Code::InvalidArgument,
        ),
        (
            InvalidRequest::Audience(Audience::new("").unwrap_err()).into(),
            Code::InvalidArgument,
        ),
        (InvalidRequest::ZeroTtl.into(), Code::InvalidArgument),
        (
            InvalidRequest::TtlTooLong {
                requested_secs: 2,
                max_secs: 1,
            }
            .into(),
            Code::InvalidArgument,
        ),
        (
            InvalidRequest::EntryId(EntryError::Missing { field: "entry" }).into(),
            Code::InvalidArgument,
        ),
        (
            InvalidRequest::AmbiguousEvidence {
                spiffe_ids: vec![id(), id()],
            }
            .into(),
            Code::InvalidArgument,
        ),
        (
            InvalidRequest::JoinTokenBoundElsewhere {
                bound_to: id(),
                requested: "spiffe://example.org/db".into(),
            }
            .into(),
            Code::InvalidArgument,
        ),
        (Unproven::JoinTokenMalformed.into(), Code::Unauthenticated),
        (Unproven::JoinTokenUnknown.into(), Code::Unauthenticated),
        (
            Unproven::JoinTokenUsed { used_at: 1 }.into(),
            Code::Unauthenticated,
        ),
        (
            Unproven::JoinTokenExpired { expired_at: 1 }.into(),
            Code::Unauthenticated,
        ),
        (
            Unproven::CertificateRevoked(revoked()).into(),
            Code::Unauthenticated,
        ),
        (
            Unproven::TokenInvalid(JwtSvidError::Expired {
                expired_at: 1,
                now: 2,
            })
            .into(),
            Code::Unauthenticated,
        ),
        (
            Unproven::TokenRevoked(revoked()).into(),
            Code::Unauthenticated,
        ),
        (
            Denied::Revoked {
                spiffe_id: id(),
                revocation,
            }
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::JoinTokenEntryGone {
                entry_id: entry_id(),
            }
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::EvidenceNotForRequested {
                requested: "spiffe://example.org/db".into(),
                proven: vec!["k8s:ns:web".into()],
            }
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::NoMatchingEntry {
                proven: vec!["k8s:ns:web".into()],
            }
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::AgentEntryExpired {
                entry_id: entry_id(),
                expired_at: 1,
            }
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::NoSuchEntry {
                entry_id: entry_id(),
            }
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::NotUnderAgent {
                entry_id: entry_id(),
                spiffe_id: id(),
                agent: id(),
            }
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::NoEntryFor { spiffe_id: id() }.into(),
            Code::PermissionDenied,
        ),
        (
            Denied::EntryExpired {
                entry_id: entry_id(),
                spiffe_id: id(),
                expired_at: 1,
            }
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::KindNotAllowed {
                entry_id: entry_id(),
                kind: CredentialKind::Jwt,
            }
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::AudienceNotAllowed {
                audience: "db".into(),
                spiffe_id: id(),
                allowed: vec!["web".into()],
            }
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::EntryDisabled {
                entry_id: entry_id(),
                disabled: crate::policy::Disabled {
                    at: 1,
                    by: "admin:uid=0".into(),
                    reason: "owner left".into(),
                },
            }
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::Audience(AudienceRefusal::EnvironmentMismatch {
                audience: "billing".into(),
                spiffe_id: id().to_string(),
                entry_env: "staging".into(),
                audience_env: "prod".into(),
            })
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::AgentEnvironment(Box::new(super::AgentEnvironment {
                entry_id: entry_id(),
                spiffe_id: id(),
                environment: "prod".into(),
                agent: id(),
                agent_entry_id: entry_id(),
                agent_environment: "test".into(),
            }))
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::Audience(AudienceRefusal::AboveClearance {
                audience: "records".into(),
                spiffe_id: id().to_string(),
                entry_class: "internal".into(),
                audience_class: "phi".into(),
                order: "none < internal < confidential < phi".into(),
            })
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::Audience(AudienceRefusal::UnknownDataClass {
                whose: "audience \"billing\"".into(),
                class: "secret".into(),
                order: "none < phi".into(),
            })
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::Audience(AudienceRefusal::Unregistered {
                audience: "ledger".into(),
            })
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::AttestorEnvironment(Box::new(super::AttestorEnvironment {
                attestor: "k8s_psat cluster staging".into(),
                entry_id: entry_id(),
                spiffe_id: id(),
                environment: "prod".into(),
                allowed: vec!["staging".into()],
            }))
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::Breakglass(crate::breakglass::UseRefused::Ended {
                grant: "0123456789abcdef".into(),
                state: "revoked",
            })
            .into(),
            Code::PermissionDenied,
        ),
        (
            Denied::Breakglass(crate::breakglass::UseRefused::Exhausted {
                grant: "0123456789abcdef".into(),
            })
            .into(),
            Code::PermissionDenied,
        ),
        (
            Unavailable::Breakglass(crate::breakglass::UseRefused::Store {
                grant: "0123456789abcdef".into(),
                source: store(),
            })
            .into(),
            Code::Unavailable,
        ),
        (AttestError::BadSignature.into(), Code::Unauthenticated),
        (CaError::CsrBadSignature.into(), Code::InvalidArgument),
        (Unavailable::Revocations(stale()).into(), Code::Unavailable),
        (
            Unavailable::JoinTokenLookup(store()).into(),
            Code::Unavailable,
        ),
        (
            Unavailable::JoinTokenRedeem(store()).into(),
            Code::Unavailable,
        ),
        (
            Unavailable::Audit(crate::audit::AuditError::Closed).into(),
            Code::Unavailable,
        ),
        (
            Internal::IssuerAlreadySet {
                set: "https://a".into(),
                requested: "https://b".into(),
            }
            .into(),
            Code::Internal,
        ),
        (
            Internal::Validator(JwtSvidError::Expired {
                expired_at: 1,
                now: 2,
            })
            .into(),
            Code::Internal,
        ),
    ]
}

#[test]
fn every_mint_error_maps_to_its_code_and_only_internal_is_an_error_line() {
    let mut seen = [false; MINT_VARIANTS];
    for (error, expected) in mint_errors() {
        let number = mint_variant(&error);
        assert!(!seen[number], "two examples of variant {number}");
        seen[number] = true;
        let what = format!("{error:?}");
        let message = error.to_string();
        let (status, levels) = status_and_log_levels(|| Status::from(error));
        assert_maps(&what, status.clone(), &levels, expected);
        if expected != Code::Internal {
            assert_eq!(status.message(), message, "the caller is told why");
            assert!(!message.is_empty(), "{what}");
        }
    }
    assert!(
        seen.iter().all(|s| *s),
        "a MintError variant has no example: {seen:?}"
    );
}

#[test]
fn a_failed_attestation_says_so_and_an_unconfigured_attestor_does_not() {
    // Positive control: evidence that did not verify is named as such.
    let failed = MintError::from(AttestError::BadSignature).to_string();
    assert!(failed.starts_with("attestation failed: "), "{failed}");
    // An attestor this server does not run is not a failed attestation.
    let unconfigured = MintError::from(AttestError::NotConfigured {
        attestor: "x509pop",
    })
    .to_string();
    assert!(
        !unconfigured.starts_with("attestation failed"),
        "{unconfigured}"
    );
}

fn separation_entry(path: &str, environment: &str) -> crate::policy::Entry {
    crate::policy::EntrySpec {
        spiffe_id: Some(format!("spiffe://example.org{path}")),
        audiences: Some(vec!["a".into()]),
        owner: Some("team".into()),
        purpose: Some("p".into()),
        environment: Some(environment.into()),
        ..crate::policy::EntrySpec::default()
    }
    .create(
        &mayfly_sdk::TrustDomain::new("example.org").unwrap(),
        &crate::policy::TtlPolicy::default(),
        0,
    )
    .unwrap()
}

#[test]
fn an_agent_mints_only_in_its_own_environment() {
    let agent = separation_entry("/agent/test-1", "test");
    // Positive control: same environment.
    super::check_agent_environment(&agent, &separation_entry("/web", "test")).unwrap();
    let prod = separation_entry("/billing", "prod");
    let error = super::check_agent_environment(&agent, &prod).unwrap_err();
    assert!(
        matches!(error, MintError::Denied(Denied::AgentEnvironment(_))),
        "{error:?}"
    );
    let message = error.to_string();
    for needle in [
        "\"test\"",
        "\"prod\"",
        agent.id.as_str(),
        prod.id.as_str(),
        "spiffe://example.org/agent/test-1",
        "spiffe://example.org/billing",
    ] {
        assert!(message.contains(needle), "{message} lacks {needle}");
    }
    assert_eq!(Status::from(error).code(), Code::PermissionDenied);
}

#[test]
fn a_pinned_attestor_yields_only_its_environments() {
    let key = crate::attest::testing::TestKey::p256("k1");
    let config: crate::attest::AttestorsConfig = toml::from_str(&format!(
        "[[k8s_psat]]\ncluster = \"staging\"\nissuer = \"https://k8s\"\naudience = \"mayfly\"\njwks = {}\nenvironments = [\"staging\", \"test\"]\n",
        serde_json::Value::String(crate::attest::testing::jwks_of(&[&key]))
    ))
    .unwrap();
    let attestors = crate::attest::Attestors::new(&config).unwrap();
    let attestation = crate::attest::Attestation {
        attestor: "k8s_psat",
        subject: "k8s:staging/ns/sa".into(),
        selectors: vec![crate::policy::Selector::parse("k8s:cluster:staging").unwrap()],
        evidence_sha256: String::new(),
        replay: None,
    };
    // Positive control: an allowed environment.
    super::check_attestor_environment(&attestors, &attestation, &separation_entry("/web", "test"))
        .unwrap();
    let prod = separation_entry("/billing", "prod");
    let error = super::check_attestor_environment(&attestors, &attestation, &prod).unwrap_err();
    assert!(
        matches!(error, MintError::Denied(Denied::AttestorEnvironment(_))),
        "{error:?}"
    );
    let message = error.to_string();
    for needle in [
        "k8s_psat cluster staging",
        "[staging, test]",
        "\"prod\"",
        prod.id.as_str(),
    ] {
        assert!(message.contains(needle), "{message} lacks {needle}");
    }
}
