//! Break-glass: emergency access with two people and a clock.
//!
//! One operator asks for a grant (`mayfly breakglass request`): it widens exactly one entry
//! by one audience, or lets one disabled (or dormant, hence disabled) entry mint again, for
//! at most `[breakglass] max_ttl`. A *different* operator approves it; until then it is
//! pending, and it lapses unapproved after `approve_within`. Approved, it is in force until
//! its TTL runs out, and ends on its own; `revoke` ends it early and revokes every credential
//! it issued. After it ends, someone records the post-incident review; until then the entry
//! shows `breakglass-review-overdue` in the inventory.
//!
//! Invariants, and why:
//! - **Two people.** Operators are told apart by the uid the kernel reports for the admin
//!   socket's peer ([`Operator`]), not by anything the client says; the requester's uid can
//!   never approve the same grant.
//! - **The clock ends it, everywhere at once.** An approved grant is copied onto its entry
//!   ([`crate::policy::ActiveGrant`]), which every replica already follows, and the mint path
//!   applies it only while `now < expires_at`: nothing has to be written for a grant to lapse.
//!   No credential minted under a grant lives past the grant's end (its lifetime is cut), and
//!   none is cached for reuse. A sweep ([`Breakglass::sweep`]) records the end afterwards.
//! - **Every use is on record before it is handed out.** A credential minted under a grant is
//!   added to the grant's record in the store (with optimistic concurrency, refused once the
//!   grant has ended or issued [`MAX_ISSUED_PER_GRANT`]) before its audit record is written,
//!   so `revoke` finds every one of them, on every replica.
//! - **Loud.** Request, approval, every use, the end (expiry, lapse or revocation) and the
//!   review are audited (`breakglass.*`, uses as the mint's own record with
//!   `breakglass: <grant>`), and each but the review raises an alert. A grant cannot be asked
//!   for when no alert output is configured: no one would hear of it.
//! - **Bounded.** At most [`MAX_OPEN_GRANTS`] grants are pending or in force at once; reasons,
//!   tickets and notes are short texts without control characters.

use std::time::Duration;

use tonic::{Code, Status};

use crate::audit::AuditError;
use crate::policy::EntryError;
pub use crate::policy::grant::{
    Approval, BREAKGLASS_ACTOR, Ended, EndedHow, GrantRecord, GrantReview, GrantState,
    IssuedCredential, IssuedKind, MAX_ISSUED_PER_GRANT, Operator,
};
use crate::revoke::RevokeError;
use crate::store::StoreError;

mod service;

/// Checks a grant id: 16 lowercase hex digits.
///
/// # Errors
///
/// [`BreakglassError::Invalid`] naming the id.
pub fn parse_grant_id(value: &str) -> Result<String, BreakglassError> {
    crate::policy::grant::parse_grant_id(value).map_err(BreakglassError::Invalid)
}

pub use service::{Breakglass, BreakglassParts, GrantRequest, GrantUse, UseRefused};

/// Grants pending or in force at once, in all.
pub const MAX_OPEN_GRANTS: usize = 100;
/// The shortest grant.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// The longest ticket reference.
pub const MAX_TICKET_LEN: usize = 128;
/// How often the sweep records ended grants.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Why a break-glass operation was refused or failed. Safe to show the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BreakglassError {
    /// A field of the request is malformed or out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// A governance text (reason, note) is missing or malformed.
    #[error(transparent)]
    Text(#[from] EntryError),
    /// No grant has this id.
    #[error("no break-glass grant {0}; `mayfly breakglass list` shows them")]
    NoSuchGrant(String),
    /// No entry has this id.
    #[error("no entry {0}")]
    NoSuchEntry(String),
    /// The approver is the requester.
    #[error(
        "grant {grant} was requested by {requester}; another operator must approve it \
         (break-glass takes two people)"
    )]
    SelfApproval {
        /// The grant.
        grant: String,
        /// Who asked for it (and tried to approve it).
        requester: Operator,
    },
    /// The grant is not in a state that allows this.
    #[error("grant {grant} is {state}; {hint}")]
    State {
        /// The grant.
        grant: String,
        /// Where it stands.
        state: GrantState,
        /// What can be done instead.
        hint: &'static str,
    },
    /// The grant would change nothing.
    #[error("{0}")]
    Pointless(String),
    /// Another grant is in force on the entry.
    #[error(
        "entry {entry} already has grant {grant} in force; revoke it first or wait until it ends"
    )]
    EntryHasGrant {
        /// The entry.
        entry: String,
        /// The grant in force.
        grant: String,
    },
    /// Too many grants are pending or in force.
    #[error(
        "{MAX_OPEN_GRANTS} break-glass grants are pending or in force already; revoke some first"
    )]
    TooManyOpen,
    /// No alert output is configured.
    #[error(
        "break-glass needs an alert output (set [alerts] webhook_url, or otel_logs = true): \
         a grant no one hears of is not allowed"
    )]
    NoAlerts,
    /// The grant or its entry kept changing under us.
    #[error("{0} changed while this was being recorded; look again and retry")]
    Conflict(String),
    /// The store failed.
    #[error("break-glass store: {0}")]
    Store(#[source] StoreError),
    /// The change is made, but its audit record could not be written.
    #[error("{what} is recorded, but its audit record could not be written: {source}")]
    Audit {
        /// What was done.
        what: String,
        /// Why.
        #[source]
        source: AuditError,
    },
    /// The grant ended, but not every credential it issued could be revoked.
    #[error(
        "grant {grant} is revoked, but {failed} of its credentials could not be revoked yet \
         ({source}); run `mayfly breakglass revoke {grant}` again"
    )]
    Revoke {
        /// The grant.
        grant: String,
        /// How many failed.
        failed: usize,
        /// The first failure (boxed: large, and rare).
        #[source]
        source: Box<RevokeError>,
    },
}

impl From<StoreError> for BreakglassError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { reason } => BreakglassError::Conflict(reason),
            other => BreakglassError::Store(other),
        }
    }
}

impl BreakglassError {
    /// The gRPC code: a caller's mistake is never INTERNAL.
    pub fn code(&self) -> Code {
        match self {
            BreakglassError::Invalid(_) | BreakglassError::Text(_) => Code::InvalidArgument,
            BreakglassError::NoSuchGrant(_) | BreakglassError::NoSuchEntry(_) => Code::NotFound,
            BreakglassError::SelfApproval { .. } => Code::PermissionDenied,
            BreakglassError::State { .. }
            | BreakglassError::Pointless(_)
            | BreakglassError::EntryHasGrant { .. }
            | BreakglassError::NoAlerts => Code::FailedPrecondition,
            BreakglassError::TooManyOpen => Code::ResourceExhausted,
            BreakglassError::Conflict(_) => Code::Aborted,
            BreakglassError::Store(StoreError::Internal { .. }) => Code::Internal,
            BreakglassError::Store(StoreError::NotFound { .. }) => Code::NotFound,
            BreakglassError::Store(_)
            | BreakglassError::Audit { .. }
            | BreakglassError::Revoke { .. } => Code::Unavailable,
        }
    }
}

impl From<BreakglassError> for Status {
    fn from(error: BreakglassError) -> Self {
        let code = error.code();
        let message = mayfly_sdk::error_chain(&error);
        if code == Code::Internal {
            tracing::error!(error = %message, "break-glass failed");
        } else if matches!(code, Code::Unavailable | Code::Aborted) {
            tracing::warn!(error = %message, "break-glass could not finish");
        }
        Status::new(code, message)
    }
}

#[cfg(test)]
mod tests;
