//! Why a mint operation was refused or failed.
//!
//! [`MintError`] says who is at fault, and each of its variants holds the
//! typed reason: tests and callers match on these, and the message (safe to
//! return to the caller: it never holds a secret) is their `Display`. The
//! gRPC status of every variant is chosen in one place, `api::status`.

use std::sync::Arc;

use mayfly_ca::CaError;
use mayfly_sdk::SpiffeId;
use mayfly_sdk::jwt::{AudienceError, JwtSvidError};
use mayfly_sdk::revocation::{Revocation, RevocationError};

use crate::attest::AttestError;
use crate::audience::AudienceRefusal;
use crate::audit::AuditError;
use crate::clock::rfc3339;
use crate::policy::{CredentialKind, Disabled, EntryError, EntryId};
use crate::store::StoreError;

/// Why a mint operation was refused or failed.
///
/// Only [`MintError::Internal`] (and a [`MintError::Ca`] the CA calls its
/// own fault) is our bug; every other variant is an answer the caller needs,
/// and is logged as such, never as an error (see `api::status`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The request itself is malformed.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The evidence or credential did not prove who the caller is.
    #[error(transparent)]
    Unproven(#[from] Unproven),
    /// The caller is known, but policy does not allow this.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The platform evidence was refused, or its attestor cannot answer.
    #[error("{}", attestation_message(.0))]
    Attestation(#[source] AttestError),
    /// The CA refused (a bad CSR, a name outside the trust domain), cannot
    /// sign (an expired signing certificate) or failed; its
    /// [`fault`](CaError::fault) says whose fault it is.
    #[error(transparent)]
    Ca(CaError),
    /// A dependency cannot answer; nothing was issued.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// Our own bug.
    #[error("internal error: {0}")]
    Internal(#[from] Internal),
}

impl From<AttestError> for MintError {
    fn from(error: AttestError) -> Self {
        MintError::Attestation(error)
    }
}

impl From<CaError> for MintError {
    fn from(error: CaError) -> Self {
        MintError::Ca(error)
    }
}

impl MintError {
    /// Whose fault, in one word, for a metric label (a bounded set):
    /// `invalid`, `unproven`, `denied`, `attestation`, `ca`, `unavailable`
    /// or `internal`.
    pub fn class(&self) -> &'static str {
        match self {
            MintError::Invalid(_) => "invalid",
            MintError::Unproven(_) => "unproven",
            MintError::Denied(_) => "denied",
            MintError::Attestation(_) => "attestation",
            MintError::Ca(_) => "ca",
            MintError::Unavailable(_) => "unavailable",
            MintError::Internal(_) => "internal",
        }
    }
}

/// Evidence that did not prove anything says so; an attestor that is not
/// configured or cannot answer is not a failed attestation.
fn attestation_message(error: &AttestError) -> String {
    match error {
        AttestError::Unavailable { .. } | AttestError::NotConfigured { .. } => error.to_string(),
        _ => format!("attestation failed: {error}"),
    }
}

/// A malformed request: retrying it unchanged cannot succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// `ValidateJwtSvid` without an audience.
    #[error("audience is required")]
    AudienceRequired,
    /// The audience is not a valid audience string.
    #[error("audience: {0}")]
    Audience(#[source] AudienceError),
    /// A TTL of zero.
    #[error("ttl must be at least 1 second")]
    ZeroTtl,
    /// A TTL longer than the entry allows; a TTL may only shorten it.
    #[error("ttl of {requested_secs}s is longer than the entry's JWT TTL of {max_secs}s")]
    TtlTooLong {
        /// What was asked, in seconds.
        requested_secs: u64,
        /// The entry's TTL under the configured cap, in seconds.
        max_secs: u64,
    },
    /// An entry id that is not one.
    #[error("{0}")]
    EntryId(#[source] EntryError),
    /// The evidence matches several entries and the caller did not say
    /// which one it wants.
    #[error(
        "the evidence matches {} entries ({}); say which with spiffe_id",
        spiffe_ids.len(),
        joined(spiffe_ids)
    )]
    AmbiguousEvidence {
        /// The entries' SPIFFE IDs.
        spiffe_ids: Vec<SpiffeId>,
    },
    /// The join token is bound to another entry than the SPIFFE ID asked
    /// for; the token was not spent.
    #[error("this join token is bound to {bound_to}, not {requested}")]
    JoinTokenBoundElsewhere {
        /// The SPIFFE ID of the token's entry.
        bound_to: SpiffeId,
        /// What the caller asked for, truncated.
        requested: String,
    },
}

/// The caller did not prove who it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unproven {
    /// Not a join token.
    #[error("join token is malformed")]
    JoinTokenMalformed,
    /// No such join token, or it was pruned.
    #[error("unknown join token")]
    JoinTokenUnknown,
    /// The join token was redeemed before.
    #[error("join token was already used at {}; join tokens are single-use", rfc3339(*used_at))]
    JoinTokenUsed {
        /// Unix seconds of the first redemption.
        used_at: i64,
    },
    /// The join token expired unredeemed.
    #[error("join token expired at {}", rfc3339(*expired_at))]
    JoinTokenExpired {
        /// Unix seconds.
        expired_at: i64,
    },
    /// The certificate the caller presented is revoked.
    #[error("the presented certificate is {0}")]
    CertificateRevoked(#[source] RevocationError),
    /// The JWT-SVID to validate did not verify.
    #[error("token rejected: {0}")]
    TokenInvalid(#[source] JwtSvidError),
    /// The JWT-SVID to validate is revoked.
    #[error("token rejected: {0}")]
    TokenRevoked(#[source] RevocationError),
}

/// The caller is known, but policy does not allow what it asks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// A revocation of the identity, or of the agent above it, is in force.
    #[error(
        "{spiffe_id} is revoked ({} {}) since {}: {}",
        revocation.kind,
        revocation.value,
        rfc3339(revocation.revoked_at),
        revocation.reason
    )]
    Revoked {
        /// The identity asked for.
        spiffe_id: SpiffeId,
        /// The revocation in force.
        revocation: Arc<Revocation>,
    },
    /// The join token's entry was deleted after the token was made.
    #[error("entry {entry_id} bound to this join token no longer exists")]
    JoinTokenEntryGone {
        /// The entry the token was bound to.
        entry_id: EntryId,
    },
    /// The evidence does not match the entry the caller asked for.
    #[error("the evidence does not match the entry for {requested} (proven: {})", proven.join(", "))]
    EvidenceNotForRequested {
        /// The SPIFFE ID asked for.
        requested: String,
        /// The selectors the evidence proved.
        proven: Vec<String>,
    },
    /// No entry matches what the evidence proved.
    #[error("no entry matches the attested selectors ({})", proven.join(", "))]
    NoMatchingEntry {
        /// The selectors the evidence proved.
        proven: Vec<String>,
    },
    /// The calling agent's own entry has expired.
    #[error("the agent's own entry {entry_id} expired at {}", rfc3339(*expired_at))]
    AgentEntryExpired {
        /// The agent's entry.
        entry_id: EntryId,
        /// Unix seconds.
        expired_at: i64,
    },
    /// No entry has this id.
    #[error("no entry {entry_id}")]
    NoSuchEntry {
        /// The id asked for.
        entry_id: EntryId,
    },
    /// The entry exists, but not under the calling agent.
    #[error("entry {entry_id} ({spiffe_id}) is not registered under agent {agent}")]
    NotUnderAgent {
        /// The entry asked for.
        entry_id: EntryId,
        /// Its SPIFFE ID.
        spiffe_id: SpiffeId,
        /// The calling agent.
        agent: SpiffeId,
    },
    /// The caller's certificate names an identity no entry issues any more.
    #[error("no entry issues {spiffe_id} any more")]
    NoEntryFor {
        /// The caller's SPIFFE ID.
        spiffe_id: SpiffeId,
    },
    /// The entry has expired.
    #[error("entry {entry_id} ({spiffe_id}) expired at {}", rfc3339(*expired_at))]
    EntryExpired {
        /// The entry.
        entry_id: EntryId,
        /// Its SPIFFE ID.
        spiffe_id: SpiffeId,
        /// Unix seconds.
        expired_at: i64,
    },
    /// The entry (or the calling agent's own entry) is disabled: the
    /// message names who disabled it, when, why, and the way back.
    #[error(
        "entry {entry_id} is disabled since {} by {}: {}; `mayfly entry enable {entry_id} --reason ...`",
        rfc3339(disabled.at),
        disabled.by,
        disabled.reason
    )]
    EntryDisabled {
        /// The disabled entry.
        entry_id: EntryId,
        /// Who, when and why.
        disabled: Disabled,
    },
    /// The entry does not allow this kind of credential.
    #[error("entry {entry_id} does not allow {} credentials", kind.as_str())]
    KindNotAllowed {
        /// The entry.
        entry_id: EntryId,
        /// The kind asked for.
        kind: CredentialKind,
    },
    /// The audience is not one of the entry's.
    #[error(
        "audience {audience:?} is not allowed for {spiffe_id} (allowed: {})",
        allowed.join(", ")
    )]
    AudienceNotAllowed {
        /// The audience asked for.
        audience: String,
        /// The entry's SPIFFE ID.
        spiffe_id: SpiffeId,
        /// The entry's audiences.
        allowed: Vec<String>,
    },
    /// The audience registry refuses this audience for this entry: another
    /// environment, a data class above the entry's, a class outside the
    /// configured order, or an unregistered audience where registration is
    /// required.
    #[error(transparent)]
    Audience(#[from] AudienceRefusal),
    /// The calling agent's own entry has another environment than the
    /// workload entry it asks a credential for.
    #[error(
        "agent {} (entry {}) has environment {:?}, but entry {} ({}) under it has environment \
         {:?}; a workload must be in its agent's environment",
        .0.agent, .0.agent_entry_id, .0.agent_environment, .0.entry_id, .0.spiffe_id, .0.environment
    )]
    AgentEnvironment(Box<AgentEnvironment>),
    /// The attestor configuration that proved the evidence is pinned to
    /// environments that do not include the entry's.
    #[error(
        "attestor {} may only yield environments [{}], but entry {} ({}) has environment {:?}",
        .0.attestor, .0.allowed.join(", "), .0.entry_id, .0.spiffe_id, .0.environment
    )]
    AttestorEnvironment(Box<AttestorEnvironment>),
    /// The break-glass grant the credential was issued under ended before
    /// it could be recorded, or issued its most.
    #[error(transparent)]
    Breakglass(crate::breakglass::UseRefused),
}

/// A workload entry an agent asked for, in another environment than the
/// agent's own entry ([`Denied::AgentEnvironment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEnvironment {
    /// The workload entry asked for.
    pub entry_id: EntryId,
    /// Its SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// Its environment.
    pub environment: String,
    /// The calling agent.
    pub agent: SpiffeId,
    /// The agent's own entry.
    pub agent_entry_id: EntryId,
    /// The agent's environment.
    pub agent_environment: String,
}

/// An entry whose environment the attestor configuration that proved the
/// evidence may not yield ([`Denied::AttestorEnvironment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestorEnvironment {
    /// The attestor configuration (`k8s_psat cluster staging`).
    pub attestor: String,
    /// The entry the evidence matched.
    pub entry_id: EntryId,
    /// Its SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// Its environment.
    pub environment: String,
    /// The configuration's `environments`.
    pub allowed: Vec<String>,
}

/// A dependency cannot answer; the request may succeed later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The revocation index is too stale to say whether a credential was
    /// revoked: failing closed.
    #[error("{0}")]
    Revocations(#[source] RevocationError),
    /// The store could not look up a join token.
    #[error("cannot look up join token: {0}")]
    JoinTokenLookup(#[source] StoreError),
    /// The store could not redeem a join token; it was not spent.
    #[error("cannot redeem join token: {0}")]
    JoinTokenRedeem(#[source] StoreError),
    /// The audit record could not be made durable, so nothing was issued.
    #[error("audit log unavailable; nothing was issued")]
    Audit(#[source] AuditError),
    /// The use of a break-glass grant could not be recorded, so nothing
    /// was issued.
    #[error(transparent)]
    Breakglass(crate::breakglass::UseRefused),
}

/// Our own bug.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Internal {
    /// [`Minter::set_issuer`](super::Minter::set_issuer) was called twice
    /// with different issuers.
    #[error("JWT issuer already set to {set:?}, not {requested:?}")]
    IssuerAlreadySet {
        /// The issuer set first.
        set: String,
        /// The other one.
        requested: String,
    },
    /// The JWT-SVID validator cannot be built from the CA's keys.
    #[error("JWT validator: {0}")]
    Validator(#[source] JwtSvidError),
}

fn joined(ids: &[SpiffeId]) -> String {
    ids.iter()
        .map(SpiffeId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
