//! The certificate authority: a root, an intermediate that signs every leaf, and the JWT
//! signing key, all kept in one directory.
//!
//! ```text
//! <dir>/root.key          PKCS#8 PEM, 0600     the trust anchor's key
//! <dir>/root.crt          PEM, 0644            self-signed, in the bundle
//! <dir>/intermediate.key  PKCS#8 PEM, 0600     signs X509-SVIDs and server certificates
//! <dir>/intermediate.crt  PEM, 0644            sent with every leaf
//! <dir>/jwt.key           PKCS#8 PEM, 0600     signs JWT-SVIDs
//! ```
//!
//! [`CertificateAuthority::load_or_create`] parses every key once; issuing never touches the
//! disk.

mod crl;
mod issue;
mod load;
mod profiles;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mayfly_sdk::TrustDomain;
use mayfly_sdk::bundle::SpiffeBundle;

use crate::jwt::JwtSigner;
use crate::keys::SigningKey;
use crate::pem;

pub use crl::{MAX_SERIAL_HEX_LEN, RevokedSerial};
pub use issue::{IssuedX509Svid, ServerCertificate, X509SvidRequest};

/// File name of the root key in the CA directory.
pub const ROOT_KEY_FILE: &str = "root.key";
/// File name of the root certificate in the CA directory.
pub const ROOT_CERT_FILE: &str = "root.crt";
/// File name of the intermediate key in the CA directory.
pub const INTERMEDIATE_KEY_FILE: &str = "intermediate.key";
/// File name of the intermediate certificate in the CA directory.
pub const INTERMEDIATE_CERT_FILE: &str = "intermediate.crt";
/// File name of the JWT signing key in the CA directory.
pub const JWT_KEY_FILE: &str = "jwt.key";

/// Default root lifetime: ten years.
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// Default intermediate lifetime: one year.
pub const DEFAULT_INTERMEDIATE_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How a new CA is made. Only `trust_domain` matters when loading an existing one.
#[derive(Clone, Debug)]
pub struct CaConfig {
    /// The trust domain every certificate names.
    pub trust_domain: TrustDomain,
    /// Lifetime of a newly created root.
    pub root_ttl: Duration,
    /// Lifetime of a newly created intermediate (never beyond the root's).
    pub intermediate_ttl: Duration,
}

impl CaConfig {
    /// A configuration with the default lifetimes ([`DEFAULT_ROOT_TTL`],
    /// [`DEFAULT_INTERMEDIATE_TTL`]).
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            root_ttl: DEFAULT_ROOT_TTL,
            intermediate_ttl: DEFAULT_INTERMEDIATE_TTL,
        }
    }
}

/// What [`CertificateAuthority::load_or_create`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// A new root key and certificate were created (first start).
    pub created_root: bool,
    /// A new intermediate was created: none existed, it was near the end of its life, or it
    /// belonged to a new root.
    pub created_intermediate: bool,
    /// A new JWT signing key was created.
    pub created_jwt_key: bool,
    /// Every file written, in the order written.
    pub files: Vec<PathBuf>,
}

/// The loaded CA. `Send + Sync`; share it behind an `Arc`.
///
/// `Debug` shows the trust domain and certificate fingerprints, never key material.
pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    root: Root,
    intermediate: Intermediate,
    jwt_signer: JwtSigner,
}

/// The root's key is not kept: it is needed only to sign a new intermediate, which happens
/// in `load_or_create`. A running broker rotates by calling `load_or_create` again and
/// swapping in the result.
struct Root {
    der: Vec<u8>,
    fingerprint_sha256: String,
}

struct Intermediate {
    issuer: rcgen::Issuer<'static, SigningKey>,
    der: Vec<u8>,
    /// Seconds since the epoch.
    not_before: i64,
    /// Seconds since the epoch.
    not_after: i64,
}

impl CertificateAuthority {
    /// Loads root, intermediate and JWT key from `dir` (e.g. `<data>/ca`), creating whatever
    /// is missing.
    ///
    /// `dir` is created with mode `0700` if needed. Key files readable by group or others are
    /// refused. A new intermediate is created under the existing root when the current one is
    /// missing, does not match its key, or has less than a quarter of its lifetime left at
    /// `now`. Every file is written atomically; keys with mode `0600`.
    ///
    /// Calling it again on a running system is how the intermediate rotates: the result is a
    /// new value to swap in, and the old one stays valid for what it already signed.
    ///
    /// # Errors
    /// - [`CaError::TrustDomainMismatch`](crate::CaError::TrustDomainMismatch) if `dir` holds a
    ///   CA for another trust domain;
    /// - [`CaError::KeyFileTooOpen`](crate::CaError::KeyFileTooOpen) for a key file with
    ///   `mode & 0o077 != 0`;
    /// - [`CaError::IncompleteCaState`](crate::CaError::IncompleteCaState) if only one of
    ///   `root.key` and `root.crt` exists;
    /// - [`CaError::KeyCertificateMismatch`](crate::CaError::KeyCertificateMismatch),
    ///   [`CaError::IntermediateNotIssuedByRoot`](crate::CaError::IntermediateNotIssuedByRoot),
    ///   [`CaError::InvalidCertificate`](crate::CaError::InvalidCertificate),
    ///   [`CaError::InvalidPem`](crate::CaError::InvalidPem),
    ///   [`CaError::InvalidKey`](crate::CaError::InvalidKey) for damaged state;
    /// - [`CaError::RootExpired`](crate::CaError::RootExpired);
    /// - [`CaError::InvalidTtl`](crate::CaError::InvalidTtl) for a lifetime under a second;
    /// - [`CaError::Io`](crate::CaError::Io) and [`CaError::Crypto`](crate::CaError::Crypto).
    pub fn load_or_create(
        dir: &Path,
        config: &CaConfig,
        now: SystemTime,
    ) -> Result<(Self, LoadReport), crate::CaError> {
        load::load_or_create(dir, config, now)
    }

    /// The trust domain this CA certifies.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The root certificate, DER.
    pub fn root_certificate_der(&self) -> &[u8] {
        &self.root.der
    }

    /// The root certificate, PEM.
    pub fn root_certificate_pem(&self) -> String {
        pem::encode(pem::CERTIFICATE, &self.root.der).to_string()
    }

    /// SHA-256 of the root certificate's DER, lowercase hex without colons.
    pub fn root_fingerprint_sha256(&self) -> String {
        self.root.fingerprint_sha256.clone()
    }

    /// The intermediate certificate, DER (the second element of every issued chain).
    pub fn intermediate_certificate_der(&self) -> &[u8] {
        &self.intermediate.der
    }

    /// When the intermediate expires; no leaf outlives it.
    pub fn intermediate_not_after(&self) -> SystemTime {
        profiles::system_time(self.intermediate.not_after)
    }

    /// The JWT-SVID signer.
    pub fn jwt_signer(&self) -> &JwtSigner {
        &self.jwt_signer
    }

    /// The SPIFFE bundle: x509 authorities = [root DER]; jwt authorities = [the JWT signer's
    /// authority].
    pub fn bundle(&self, sequence: u64, refresh_hint: Duration) -> SpiffeBundle {
        SpiffeBundle {
            trust_domain: self.trust_domain.clone(),
            sequence,
            refresh_hint: Some(refresh_hint),
            x509_authorities: vec![self.root.der.clone()],
            jwt_authorities: vec![self.jwt_signer.authority()],
        }
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain.as_str())
            .field("root_fingerprint_sha256", &self.root.fingerprint_sha256)
            .field(
                "intermediate_fingerprint_sha256",
                &sha256_hex(&self.intermediate.der),
            )
            .field("intermediate_not_after", &self.intermediate_not_after())
            .field("jwt_key_id", &self.jwt_signer.key_id())
            .field("private_keys", &"[redacted]")
            .finish()
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}
