//! Attestation: turning evidence into verified selectors.
//!
//! Each attestor checks one kind of evidence and yields the selectors it
//! proves, never more:
//!
//! | attestor | evidence | selectors |
//! |---|---|---|
//! | [`join_token`] | a one-time token an operator minted for one entry | (the bound entry) |
//! | [`k8s_psat`] | a Kubernetes projected service-account token | `k8s:cluster:`, `k8s:ns:`, `k8s:sa:`, `k8s:pod-name:`, `k8s:pod-uid:`, `k8s:node-name:` |
//! | [`oidc`] | an OIDC ID token from a CI system or cloud | `oidc:<alias>:<claim>:<value>` for the configured claims |
//! | [`x509pop`] | a device certificate and a signature over a fresh nonce | `x509pop:subject:cn:`, `x509pop:san:dns:`, `x509pop:san:uri:`, `x509pop:ca:`, `x509pop:serial:` |
//!
//! A join token is an operator's explicit grant: redeeming it yields the
//! entry it is bound to. The other attestors' selectors are matched against
//! entries: an entry matches when every one of its selectors was proven.
//!
//! Evidence that can be replayed (a bearer token) carries a
//! [`ReplayGuard`]: the broker records it in the store until it expires and
//! refuses a second use; when the store cannot answer, attestation fails
//! closed.
//!
//! Errors, one type per layer: evidence refused at run time is an
//! [`AttestError`]; an `[attestors]` section that cannot be used is an
//! [`AttestorConfigError`] (holding a [`JwksError`] or [`CaBundleError`]
//! when keys or CAs cannot be loaded); entry selectors no configured
//! attestor could safely prove are an [`EntrySelectorError`].

mod error;
pub mod join_token;
pub mod jwks;
pub mod jwt_evidence;
pub mod k8s_psat;
pub mod oidc;
mod registry;
#[cfg(test)]
pub(crate) mod testing;
pub mod x509pop;

pub use error::{AttestorConfigError, EntrySelectorError};
pub use jwks::{JwksError, UrlError};
pub use registry::{Attestors, AttestorsConfig, EnvironmentPin, Evidence};
pub use x509pop::{CaBundleError, CertificateError};

use crate::policy::Selector;

/// What an attestor proved about a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// Which attestor: `k8s_psat`, `oidc`, `x509pop`.
    pub attestor: &'static str,
    /// A short, non-secret description of who was attested, for the audit
    /// log's actor (`k8s:prod/billing/api`, `oidc:github:repo:org/app:ref:refs/heads/main`,
    /// `x509pop:cn=dev-42`).
    pub subject: String,
    /// The proven selectors, sorted and without duplicates.
    pub selectors: Vec<Selector>,
    /// Hex SHA-256 of the evidence (the token, or the certificate chain and
    /// signature): the audit log records evidence only by hash.
    pub evidence_sha256: String,
    /// For bearer evidence: what must be remembered to refuse a replay.
    pub replay: Option<ReplayGuard>,
}

/// A one-time key (a token's `jti`, or its hash when it has none) and until
/// when it must be remembered (the token's expiry plus leeway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayGuard {
    /// Namespaced key, e.g. `oidc:github:jti:<jti>` or `k8s:prod:sha256:<hex>`.
    pub key: String,
    /// Unix seconds after which the key may be forgotten.
    pub expires_at: i64,
}

/// Why evidence was refused. Messages are safe to return to the caller and
/// to write to the audit log: they never contain the evidence itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The evidence cannot be parsed.
    #[error("malformed evidence: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The token's algorithm is not on the allow-list (`none`, HS256, ...).
    #[error("token algorithm {alg:?} is not allowed (allowed: {allowed})")]
    UnsupportedAlgorithm {
        /// The `alg` header, truncated.
        alg: String,
        /// The allow-list, comma separated.
        allowed: String,
    },
    /// No configured issuer (cluster, OIDC provider) has this `iss`.
    #[error("issuer {found:?} is not trusted")]
    UntrustedIssuer {
        /// The token's `iss`, truncated.
        found: String,
    },
    /// The token's `kid` is not in the issuer's JWKS (even after a refetch).
    #[error("signing key {kid:?} is not in the JWKS of {issuer}")]
    UnknownKeyId {
        /// The `kid`, truncated.
        kid: String,
        /// The issuer.
        issuer: String,
    },
    /// The signature does not verify with the issuer's key.
    #[error("token signature does not verify with the issuer's key")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired at {expired_at} (now {now})")]
    Expired {
        /// `exp`, unix seconds.
        expired_at: i64,
        /// Now, unix seconds.
        now: i64,
    },
    /// `nbf` (or `iat`) is in the future (beyond the leeway).
    #[error("token is not valid before {not_before} (now {now})")]
    NotYetValid {
        /// `nbf` or `iat`, unix seconds.
        not_before: i64,
        /// Now, unix seconds.
        now: i64,
    },
    /// The token was issued longer ago than the configured maximum age.
    #[error("token was issued at {issued_at}, more than {max_age_seconds}s ago")]
    TooOld {
        /// `iat`, unix seconds.
        issued_at: i64,
        /// The configured maximum, seconds.
        max_age_seconds: u64,
    },
    /// The token is not for Mayfly.
    #[error("token audience {found:?} does not include {expected:?}")]
    WrongAudience {
        /// The configured audience.
        expected: String,
        /// The token's `aud` values, truncated.
        found: Vec<String>,
    },
    /// A claim the attestor needs is missing or has the wrong type.
    #[error("required claim {claim:?} is missing or not a {expected}")]
    MissingClaim {
        /// The claim.
        claim: String,
        /// What type it must have.
        expected: &'static str,
    },
    /// A claim value cannot become a selector (too long, control chars).
    #[error("claim {claim:?} has a value that cannot be a selector: {reason}")]
    BadClaimValue {
        /// The claim.
        claim: String,
        /// Why.
        reason: String,
    },
    /// The certificate chain does not verify to a configured CA.
    #[error("certificate chain is not trusted: {reason}")]
    UntrustedCertificate {
        /// webpki's reason (expired, unknown issuer, ...).
        reason: String,
    },
    /// The x509pop challenge is unknown, already used or expired.
    #[error("challenge {reason}")]
    BadChallenge {
        /// `is unknown or was already used`, `expired at ...`.
        reason: String,
    },
    /// The proof-of-possession signature does not verify.
    #[error("proof-of-possession signature does not verify with the certificate's key")]
    BadProofSignature,
    /// Bearer evidence that was already accepted once.
    #[error("this {attestor} token was already used; evidence is accepted once")]
    Replayed {
        /// The attestor.
        attestor: &'static str,
    },
    /// This kind of evidence is not configured on this server.
    #[error("the {attestor} attestor is not configured on this server")]
    NotConfigured {
        /// The attestor.
        attestor: &'static str,
    },
    /// A dependency (JWKS endpoint, replay store) cannot answer: fail closed.
    #[error("{reason}")]
    Unavailable {
        /// What is down.
        reason: String,
    },
}

/// Hex SHA-256 of `bytes`.
pub use mayfly_sdk::digest::sha256_hex;

/// Makes a selector from attested parts, refusing values that cannot be one.
pub fn selector(kind_and_prefix: &str, claim: &str, value: &str) -> Result<Selector, AttestError> {
    Selector::parse(&format!("{kind_and_prefix}{value}")).map_err(|e| AttestError::BadClaimValue {
        claim: claim.to_owned(),
        reason: e.to_string(),
    })
}

/// Truncates attacker-controlled text before it goes into an error.
pub use mayfly_sdk::jose::quoted as truncated;
