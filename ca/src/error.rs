//! The one error type of this crate.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Everything that can go wrong while loading or rotating the CA, or issuing a credential.
///
/// Variants carry their context in fields; no dependency's error type is exposed. Use
/// [`CaError::fault`] to tell a bad request (map to `InvalidArgument`) from a refused
/// rotation step, an expired CA and a problem on our side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A file-system operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What we were doing ("read", "write", "rename", ...).
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A key file is readable or writable by group or others; it must be `0600` (or stricter).
    #[error(
        "key file {path} has mode {mode:o}; it must not be accessible by group or others (chmod 600)"
    )]
    KeyFileTooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// A path that must be a regular file is something else (directory, device, ...).
    #[error("{path} is not a regular file")]
    NotARegularFile {
        /// The offending path.
        path: PathBuf,
    },

    /// A CA file is larger than any file this crate writes.
    #[error("{path} is {len} bytes; at most {max} are expected")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// Part of the CA state exists and part is missing, so we refuse to guess.
    #[error("{missing} is missing while {present} exists; restore it or remove both")]
    IncompleteCaState {
        /// The file that should exist.
        missing: PathBuf,
        /// The file whose presence shows the state was created before.
        present: PathBuf,
    },

    /// A PEM file does not hold exactly one block with the expected label.
    #[error("{path}: expected exactly one PEM block labelled {expected_label}: {reason}")]
    InvalidPem {
        /// The file.
        path: PathBuf,
        /// The label we expected (`PRIVATE KEY`, `CERTIFICATE`).
        expected_label: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// A private key could not be parsed or is not an ECDSA P-256 key.
    #[error("invalid private key ({context}): {reason}")]
    InvalidKey {
        /// Where the key came from (a path, or "generated").
        context: String,
        /// What the crypto library said.
        reason: String,
    },

    /// A stored certificate could not be parsed or is not what it should be.
    #[error("invalid certificate {path}: {reason}")]
    InvalidCertificate {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A stored private key does not belong to the certificate stored next to it.
    #[error("{key} does not hold the private key of {certificate}")]
    KeyCertificateMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        certificate: PathBuf,
    },

    /// The stored intermediate certificate was not issued by the stored root.
    #[error("{intermediate} was not signed by the root certificate {root}")]
    IntermediateNotIssuedByRoot {
        /// The intermediate certificate file.
        intermediate: PathBuf,
        /// The root certificate file.
        root: PathBuf,
    },

    /// The CA directory belongs to another trust domain than the configured one.
    #[error(
        "the CA in this directory is for {found}, but the configured trust domain is {configured}"
    )]
    TrustDomainMismatch {
        /// The configured trust domain (`spiffe://...`).
        configured: String,
        /// The trust domain found in the stored root certificate.
        found: String,
    },

    /// The root certificate has expired; it must be rotated by an operator.
    #[error("the root certificate expired at {not_after:?}")]
    RootExpired {
        /// When it expired.
        not_after: SystemTime,
    },

    /// The signing certificate has expired (or expires at the requested start), so nothing
    /// can be issued until it is renewed.
    #[error("the signing certificate expired at {not_after:?}")]
    SignerExpired {
        /// When it expired.
        not_after: SystemTime,
    },

    /// A SPIFFE ID to be certified is not in this CA's trust domain.
    #[error("{spiffe_id} is not in this CA's trust domain {trust_domain}")]
    ForeignTrustDomain {
        /// The SPIFFE ID asked for.
        spiffe_id: String,
        /// This CA's trust domain.
        trust_domain: String,
    },

    /// A leaf SPIFFE ID must have a path (X509-SVID §3.1).
    #[error("{spiffe_id} has no path; leaf SVIDs must name a workload")]
    SpiffeIdWithoutPath {
        /// The SPIFFE ID asked for.
        spiffe_id: String,
    },

    /// A DNS name to put in a certificate is not a valid host name.
    #[error("invalid DNS name {name:?}")]
    InvalidDnsName {
        /// The rejected name.
        name: String,
    },

    /// A lifetime is zero or shorter than one second.
    #[error("invalid lifetime {ttl:?}: it must be at least one second")]
    InvalidTtl {
        /// The lifetime asked for.
        ttl: Duration,
    },

    /// A time cannot be represented in a certificate or token.
    #[error("time out of range: {reason}")]
    TimeOutOfRange {
        /// Which time and why.
        reason: &'static str,
    },

    /// A JWT's expiry is not after its issue time.
    #[error("JWT expiry {expires_at} is not after its issue time {issued_at}")]
    InvalidTokenLifetime {
        /// `iat`, seconds since the epoch.
        issued_at: i64,
        /// `exp`, seconds since the epoch.
        expires_at: i64,
    },

    /// A CSR is larger than the limit; it was not parsed.
    #[error("CSR is {len} bytes; the limit is {max}")]
    CsrTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A CSR is not a well-formed DER PKCS#10 request.
    #[error("malformed CSR: {reason}")]
    CsrMalformed {
        /// What is wrong.
        reason: String,
    },

    /// The CSR's self-signature does not verify with the public key it contains.
    #[error("the CSR signature does not verify with its own public key")]
    CsrBadSignature,

    /// The CSR's public key is of a type or size we do not certify.
    #[error("unsupported CSR key {algorithm}: {reason}")]
    CsrUnsupportedKey {
        /// The key algorithm (an OID or a name).
        algorithm: String,
        /// Why it is refused.
        reason: String,
    },

    /// The CSR is signed with an algorithm we do not accept (SHA-1, a mismatched key, ...).
    #[error("unsupported CSR signature algorithm {algorithm}")]
    CsrUnsupportedSignature {
        /// The signature algorithm (an OID or a name).
        algorithm: String,
    },

    /// A certificate serial number to list in a CRL is not usable.
    #[error("invalid certificate serial {serial:?}: {reason}")]
    InvalidSerial {
        /// The serial as given.
        serial: String,
        /// What is wrong.
        reason: &'static str,
    },

    /// A CRL's `nextUpdate` is not after its `thisUpdate`.
    #[error("CRL nextUpdate {next_update} is not after its thisUpdate {this_update}")]
    InvalidCrlPeriod {
        /// `thisUpdate`, seconds since the epoch.
        this_update: i64,
        /// `nextUpdate`, seconds since the epoch.
        next_update: i64,
    },

    /// The rotation journal cannot be parsed or breaks an invariant (two active
    /// intermediates, an unknown version, a file name with a path in it, ...).
    #[error("rotation journal {path} is invalid: {reason}")]
    JournalInvalid {
        /// The journal file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A file the rotation journal names is missing.
    #[error("{path} is missing, but the rotation journal {journal} names it; restore it")]
    JournalFileMissing {
        /// The missing file.
        path: PathBuf,
        /// The journal that names it.
        journal: PathBuf,
    },

    /// A file the rotation journal names holds something else than the journal says (another
    /// certificate, another key).
    #[error("{path} does not match the rotation journal: {reason}")]
    JournalFileMismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },

    /// A rotation step was refused because the CA is not in a state that allows it (nothing
    /// prepared, published too briefly, an old root still needed, ...). Nothing was changed.
    /// Maps to `FailedPrecondition`; see [`CaError::is_refusal`].
    #[error("rotation refused: {reason}")]
    RotationRefused {
        /// Why, and what would allow it.
        reason: String,
    },

    /// A certificate or CSR handed to a rotation step (an offline root, a signed
    /// intermediate) is malformed or not acceptable. Nothing was changed.
    #[error("certificate rejected: {reason}")]
    CertificateRejected {
        /// What is wrong with it.
        reason: String,
    },

    /// A cryptographic primitive failed (random generation, signing, key generation).
    #[error("cryptographic operation failed: {operation}")]
    Crypto {
        /// What we were doing.
        operation: &'static str,
    },

    /// Building or encoding a certificate or token failed; this is a bug on our side.
    #[error("internal error while {operation}: {reason}")]
    Internal {
        /// What we were doing.
        operation: &'static str,
        /// The underlying reason.
        reason: String,
    },
}

/// Who is at fault for a [`CaError`]: what a server should answer, and whether it is worth
/// an operator's attention.
///
/// | fault | gRPC status | retrying helps? |
/// |---|---|---|
/// | [`Fault::Caller`] | `InvalidArgument` | no: the request must change |
/// | [`Fault::Refusal`] | `FailedPrecondition` | after the CA's state changes (or with `force`) |
/// | [`Fault::Unavailable`] | `Unavailable` | after the CA's material is renewed |
/// | [`Fault::Ours`] | `Internal` | no: an operator must look at the CA |
///
/// Only [`Fault::Ours`] deserves an error in the server's log: the others are the answer a
/// caller needs, and a caller who sends many bad requests must not be able to fill the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The caller's input is wrong (a bad CSR, a name outside the trust domain, a zero
    /// lifetime, a rejected certificate); the same request can never succeed.
    Caller,
    /// A rotation step is refused because of the CA's state; nothing was changed, and the
    /// step may succeed once the state allows it.
    Refusal,
    /// The CA cannot sign now because its own root or signing certificate has expired;
    /// nothing is the caller's fault, and the request may succeed once it is renewed.
    Unavailable,
    /// The CA's files, the crypto library, or a bug on our side.
    Ours,
}

impl From<mayfly_sdk::files::FileError> for CaError {
    fn from(error: mayfly_sdk::files::FileError) -> Self {
        use mayfly_sdk::files::FileError;
        match error {
            FileError::TooOpen { path, mode } => CaError::KeyFileTooOpen { path, mode },
            FileError::NotARegularFile { path } => CaError::NotARegularFile { path },
            FileError::TooLarge { path, len, max } => CaError::FileTooLarge { path, len, max },
            FileError::Io {
                operation,
                path,
                source,
            } => CaError::Io {
                operation,
                path,
                source,
            },
            // FileError is non-exhaustive: a kind added later is still an I/O failure.
            other => CaError::Io {
                operation: "access",
                path: std::path::PathBuf::new(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

impl CaError {
    /// Who is at fault; see [`Fault`] for what to answer.
    ///
    /// The match has no wildcard arm on purpose: a new variant does not compile until it is
    /// classified, so it cannot become an internal error by default.
    pub fn fault(&self) -> Fault {
        match self {
            Self::ForeignTrustDomain { .. }
            | Self::SpiffeIdWithoutPath { .. }
            | Self::InvalidDnsName { .. }
            | Self::InvalidTtl { .. }
            | Self::InvalidTokenLifetime { .. }
            | Self::CsrTooLarge { .. }
            | Self::CsrMalformed { .. }
            | Self::CsrBadSignature
            | Self::CsrUnsupportedKey { .. }
            | Self::CsrUnsupportedSignature { .. }
            | Self::InvalidSerial { .. }
            | Self::InvalidCrlPeriod { .. }
            | Self::CertificateRejected { .. } => Fault::Caller,
            Self::RotationRefused { .. } => Fault::Refusal,
            Self::RootExpired { .. } | Self::SignerExpired { .. } => Fault::Unavailable,
            // The CA's own files and state: only an operator can fix them.
            Self::Io { .. }
            | Self::KeyFileTooOpen { .. }
            | Self::NotARegularFile { .. }
            | Self::FileTooLarge { .. }
            | Self::IncompleteCaState { .. }
            | Self::InvalidPem { .. }
            | Self::InvalidKey { .. }
            | Self::InvalidCertificate { .. }
            | Self::KeyCertificateMismatch { .. }
            | Self::IntermediateNotIssuedByRoot { .. }
            | Self::TrustDomainMismatch { .. }
            | Self::JournalInvalid { .. }
            | Self::JournalFileMissing { .. }
            | Self::JournalFileMismatch { .. }
            // The clock, the crypto library, our own encoding.
            | Self::TimeOutOfRange { .. }
            | Self::Crypto { .. }
            | Self::Internal { .. } => Fault::Ours,
        }
    }

    /// Whether the caller's input caused this error (a bad CSR, a name outside the trust
    /// domain, a zero lifetime...): [`Fault::Caller`]. Such errors map to `InvalidArgument`;
    /// retrying the same request cannot succeed.
    pub fn is_caller_error(&self) -> bool {
        self.fault() == Fault::Caller
    }

    /// Whether a rotation step was refused because of the CA's state
    /// ([`CaError::RotationRefused`], [`Fault::Refusal`]): retrying later, or with `force`,
    /// may succeed. Maps to `FailedPrecondition`.
    pub fn is_refusal(&self) -> bool {
        self.fault() == Fault::Refusal
    }

    pub(crate) fn io(
        operation: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn refused(reason: impl Into<String>) -> Self {
        Self::RotationRefused {
            reason: reason.into(),
        }
    }

    pub(crate) fn rejected(reason: impl Into<String>) -> Self {
        Self::CertificateRejected {
            reason: reason.into(),
        }
    }

    pub(crate) fn internal(operation: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Internal {
            operation,
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
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
}
