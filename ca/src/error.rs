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
mod tests;
