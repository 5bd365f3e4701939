//! The rotation vocabulary: kinds and states of authorities, the events a rotation step
//! reports, and the status an operator reads.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What an authority is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthorityKind {
    /// A self-signed root CA: the trust anchor relying parties hold.
    Root,
    /// An intermediate CA signed by a root; it signs every leaf.
    Intermediate,
    /// A JWT-SVID signing key.
    JwtKey,
}

impl AuthorityKind {
    /// `root`, `intermediate` or `jwt-key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Intermediate => "intermediate",
            Self::JwtKey => "jwt-key",
        }
    }
}

impl fmt::Display for AuthorityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an authority is in its life. The order of the variants is the order of a life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorityState {
    /// An intermediate key on the server whose certificate is being signed offline (see
    /// [`CertificateAuthority::intermediate_csr`](crate::CertificateAuthority::intermediate_csr)).
    Pending,
    /// Published (in the bundle or JWKS), not yet signing.
    Prepared,
    /// Signing. Exactly one root, one intermediate and one JWT key are active.
    Active,
    /// No longer signing; still published while something it signed may be valid.
    Old,
    /// Out of the bundle; its key file is deleted and only the record remains.
    Retired,
}

impl AuthorityState {
    /// `pending`, `prepared`, `active`, `old` or `retired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Prepared => "prepared",
            Self::Active => "active",
            Self::Old => "old",
            Self::Retired => "retired",
        }
    }

    /// Whether authorities in this state are in the bundle (roots) or the JWKS (JWT keys).
    pub fn is_published(self) -> bool {
        matches!(self, Self::Prepared | Self::Active | Self::Old)
    }
}

impl fmt::Display for AuthorityState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One persisted state change, as a rotation call reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationEvent {
    /// What changed.
    pub kind: AuthorityKind,
    /// Which one: the SHA-256 fingerprint (hex) of a certificate, or a JWT key ID.
    pub id: String,
    /// The state before; `None` for an authority that did not exist.
    pub from: Option<AuthorityState>,
    /// The state after.
    pub to: AuthorityState,
    /// Why, for logs and the audit trail.
    pub detail: String,
}

impl fmt::Display for RotationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.from {
            Some(from) => write!(f, "{} {}: {from} -> {}", self.kind, self.id, self.to)?,
            None => write!(f, "{} {}: new, {}", self.kind, self.id, self.to)?,
        }
        write!(f, " ({})", self.detail)
    }
}

/// Every authority the journal knows, and what needs an operator's attention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaStatus {
    /// Roots, then intermediates, then JWT keys; within a kind, in the order they were made.
    pub authorities: Vec<AuthorityStatus>,
    /// Things an operator must do or know (an intermediate waiting for an offline signature,
    /// a root near its end, ...). Empty when all is well.
    pub warnings: Vec<String>,
}

/// One authority, as [`CertificateAuthority::status`](crate::CertificateAuthority::status)
/// reports it. Times are seconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityStatus {
    /// Root, intermediate or JWT key.
    pub kind: AuthorityKind,
    /// Certificate fingerprint (hex SHA-256) or JWT key ID; a pending intermediate, which has
    /// no certificate yet, is named after its public key (`pending-…`).
    pub id: String,
    /// Its state.
    pub state: AuthorityState,
    /// The certificate's `notBefore`; `None` for JWT keys and pending intermediates.
    pub not_before: Option<i64>,
    /// The certificate's `notAfter`; `None` for JWT keys and pending intermediates.
    pub not_after: Option<i64>,
    /// SHA-256 of the certificate's DER, hex; `None` for JWT keys and pending intermediates.
    pub fingerprint_sha256: Option<String>,
    /// For intermediates, the ID of the root that signed them.
    pub issuer: Option<String>,
    /// Whether the private key is on this server (false for an offline root, and for
    /// retired authorities, whose keys are deleted).
    pub key_on_server: bool,
    /// The latest time something it signed may still be valid: for an active intermediate or
    /// JWT key, `now` plus the longest credential lifetime (not beyond the intermediate's
    /// `notAfter`); for an old one, the time it became old plus that lifetime; for a root,
    /// the latest of its intermediates. `None` when it has signed nothing that may be valid.
    pub live_until: Option<i64>,
    /// When it entered its current state.
    pub since: Option<i64>,
}
