use super::*;

/// How many variants [`CaError`] has; [`variant_number`] numbers them `0..VARIANTS`.
const VARIANTS: usize = 33;

/// A distinct number per variant. No wildcard arm: a new variant does not compile until it
/// is numbered here, and then [`every_variant_is_classified`] fails until
/// [`one_of_each`] holds an example of it.
fn variant_number(error: &CaError) -> usize {
    match error {
        CaError::Io { .. } => 0,
        CaError::KeyFileTooOpen { .. } => 1,
        CaError::NotARegularFile { .. } => 2,
        CaError::FileTooLarge { .. } => 3,
        CaError::IncompleteCaState { .. } => 4,
        CaError::InvalidPem { .. } => 5,
        CaError::InvalidKey { .. } => 6,
        CaError::InvalidCertificate { .. } => 7,
        CaError::KeyCertificateMismatch { .. } => 8,
        CaError::IntermediateNotIssuedByRoot { .. } => 9,
        CaError::TrustDomainMismatch { .. } => 10,
        CaError::RootExpired { .. } => 11,
        CaError::SignerExpired { .. } => 12,
        CaError::ForeignTrustDomain { .. } => 13,
        CaError::SpiffeIdWithoutPath { .. } => 14,
        CaError::InvalidDnsName { .. } => 15,
        CaError::InvalidTtl { .. } => 16,
        CaError::TimeOutOfRange { .. } => 17,
        CaError::InvalidTokenLifetime { .. } => 18,
        CaError::CsrTooLarge { .. } => 19,
        CaError::CsrMalformed { .. } => 20,
        CaError::CsrBadSignature => 21,
        CaError::CsrUnsupportedKey { .. } => 22,
        CaError::CsrUnsupportedSignature { .. } => 23,
        CaError::InvalidSerial { .. } => 24,
        CaError::InvalidCrlPeriod { .. } => 25,
        CaError::JournalInvalid { .. } => 26,
        CaError::JournalFileMissing { .. } => 27,
        CaError::JournalFileMismatch { .. } => 28,
        CaError::RotationRefused { .. } => 29,
        CaError::CertificateRejected { .. } => 30,
        CaError::Crypto { .. } => 31,
        CaError::Internal { .. } => 32,
    }
}

/// One example of every variant, with the fault it must be classified as: this list is
/// the classification table, written out independently of [`CaError::fault`].
fn one_of_each() -> Vec<(CaError, Fault)> {
    let path = || PathBuf::from("/var/lib/mayfly/ca/x.pem");
    let text = || "reason".to_owned();
    vec![
        (
            CaError::io("read", &path(), std::io::ErrorKind::NotFound.into()),
            Fault::Ours,
        ),
        (
            CaError::KeyFileTooOpen {
                path: path(),
                mode: 0o644,
            },
            Fault::Ours,
        ),
        (CaError::NotARegularFile { path: path() }, Fault::Ours),
        (
            CaError::FileTooLarge {
                path: path(),
                len: 2,
                max: 1,
            },
            Fault::Ours,
        ),
        (
            CaError::IncompleteCaState {
                missing: path(),
                present: path(),
            },
            Fault::Ours,
        ),
        (
            CaError::InvalidPem {
                path: path(),
                expected_label: "CERTIFICATE",
                reason: text(),
            },
            Fault::Ours,
        ),
        (
            CaError::InvalidKey {
                context: text(),
                reason: text(),
            },
            Fault::Ours,
        ),
        (
            CaError::InvalidCertificate {
                path: path(),
                reason: text(),
            },
            Fault::Ours,
        ),
        (
            CaError::KeyCertificateMismatch {
                key: path(),
                certificate: path(),
            },
            Fault::Ours,
        ),
        (
            CaError::IntermediateNotIssuedByRoot {
                intermediate: path(),
                root: path(),
            },
            Fault::Ours,
        ),
        (
            CaError::TrustDomainMismatch {
                configured: "spiffe://a.example".into(),
                found: "spiffe://b.example".into(),
            },
            Fault::Ours,
        ),
        (
            CaError::RootExpired {
                not_after: SystemTime::UNIX_EPOCH,
            },
            Fault::Unavailable,
        ),
        (
            CaError::SignerExpired {
                not_after: SystemTime::UNIX_EPOCH,
            },
            Fault::Unavailable,
        ),
        (
            CaError::ForeignTrustDomain {
                spiffe_id: "spiffe://b.example/x".into(),
                trust_domain: "a.example".into(),
            },
            Fault::Caller,
        ),
        (
            CaError::SpiffeIdWithoutPath {
                spiffe_id: "spiffe://a.example".into(),
            },
            Fault::Caller,
        ),
        (
            CaError::InvalidDnsName {
                name: "-bad-".into(),
            },
            Fault::Caller,
        ),
        (
            CaError::InvalidTtl {
                ttl: Duration::ZERO,
            },
            Fault::Caller,
        ),
        (
            CaError::TimeOutOfRange {
                reason: "before 1970",
            },
            Fault::Ours,
        ),
        (
            CaError::InvalidTokenLifetime {
                issued_at: 2,
                expires_at: 1,
            },
            Fault::Caller,
        ),
        (CaError::CsrTooLarge { len: 2, max: 1 }, Fault::Caller),
        (CaError::CsrMalformed { reason: text() }, Fault::Caller),
        (CaError::CsrBadSignature, Fault::Caller),
        (
            CaError::CsrUnsupportedKey {
                algorithm: "1.3.101.111".into(),
                reason: text(),
            },
            Fault::Caller,
        ),
        (
            CaError::CsrUnsupportedSignature {
                algorithm: "1.2.840.10045.4.1".into(),
            },
            Fault::Caller,
        ),
        (
            CaError::InvalidSerial {
                serial: "zz".into(),
                reason: "not hex",
            },
            Fault::Caller,
        ),
        (
            CaError::InvalidCrlPeriod {
                this_update: 2,
                next_update: 1,
            },
            Fault::Caller,
        ),
        (
            CaError::JournalInvalid {
                path: path(),
                reason: text(),
            },
            Fault::Ours,
        ),
        (
            CaError::JournalFileMissing {
                path: path(),
                journal: path(),
            },
            Fault::Ours,
        ),
        (
            CaError::JournalFileMismatch {
                path: path(),
                reason: text(),
            },
            Fault::Ours,
        ),
        (CaError::refused("nothing prepared"), Fault::Refusal),
        (CaError::rejected("not a CA certificate"), Fault::Caller),
        (CaError::Crypto { operation: "sign" }, Fault::Ours),
        (CaError::internal("encoding", "oops"), Fault::Ours),
    ]
}

#[test]
fn every_variant_is_classified() {
    let examples = one_of_each();
    let mut seen = [false; VARIANTS];
    for (error, expected) in &examples {
        let number = variant_number(error);
        assert!(
            number < VARIANTS,
            "raise VARIANTS to count variant {number}"
        );
        assert!(!seen[number], "two examples of variant {number}: {error:?}");
        seen[number] = true;
        assert_eq!(error.fault(), *expected, "{error:?}");
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|&n| !seen[n]).collect();
    assert!(missing.is_empty(), "no example of variants {missing:?}");
}

#[test]
fn predicates_follow_the_fault() {
    // Every fault occurs among the examples, so each predicate is seen true and false.
    for (error, fault) in one_of_each() {
        assert_eq!(error.is_caller_error(), fault == Fault::Caller, "{error:?}");
        assert_eq!(error.is_refusal(), fault == Fault::Refusal, "{error:?}");
    }
    let faults: std::collections::HashSet<Fault> =
        one_of_each().into_iter().map(|(_, fault)| fault).collect();
    assert_eq!(faults.len(), 4, "{faults:?}");
}
