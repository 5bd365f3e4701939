//! The one place where errors become gRPC statuses, and where the broker's
//! refusals are logged.
//!
//! A refusal (a bad CSR, an unknown token, a policy that says no) is the
//! caller's answer, not a fault of ours: it is logged at info (a missing
//! dependency at warn), never as an error, and through a limiter, so that
//! a flood of bad requests cannot flood the log. Every refused mint is in
//! the audit log all the same. Only our own bugs are logged as errors.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

use tonic::{Code, Status};

use mayfly_ca::{CaError, Fault};

use crate::attest::AttestError;
use crate::mint::MintError;
use crate::policy::EntryError;
use crate::policy::SeparationError;
use crate::store::StoreError;

/// What the caller is told about our own bug; the details are in the log.
pub const INTERNAL_MESSAGE: &str = "internal error; see the server log";

/// At most this many refusals are logged per second, per process.
pub const REFUSAL_LINES_PER_SECOND: u32 = 20;

impl From<MintError> for Status {
    fn from(error: MintError) -> Self {
        let code = mint_code(&error);
        if code == Code::Internal {
            tracing::error!(error = %mayfly_sdk::error_chain(&error), "internal error");
            return Status::internal(INTERNAL_MESSAGE);
        }
        let reason = error.to_string();
        log_refusal(code, &reason);
        Status::new(code, reason)
    }
}

/// The status code of every mint error: an exhaustive match, so that a new
/// variant must be given its code here.
pub(crate) fn mint_code(error: &MintError) -> Code {
    match error {
        MintError::Invalid(_) => Code::InvalidArgument,
        MintError::Unproven(_) => Code::Unauthenticated,
        MintError::Denied(_) => Code::PermissionDenied,
        MintError::Attestation(e) => attest_code(e),
        MintError::Ca(e) => ca_code(e),
        MintError::Unavailable(_) => Code::Unavailable,
        MintError::Internal(_) => Code::Internal,
    }
}

/// Evidence refused is the caller's answer; an attestor the server does not
/// run is the caller's mistake, one that cannot answer makes us unavailable.
/// An exhaustive match: a new [`AttestError`] variant must be given a code
/// here.
fn attest_code(error: &AttestError) -> Code {
    match error {
        AttestError::Unavailable { .. } => Code::Unavailable,
        AttestError::NotConfigured { .. } => Code::InvalidArgument,
        AttestError::Malformed { .. }
        | AttestError::UnsupportedAlgorithm { .. }
        | AttestError::UntrustedIssuer { .. }
        | AttestError::UnknownKeyId { .. }
        | AttestError::BadSignature
        | AttestError::Expired { .. }
        | AttestError::NotYetValid { .. }
        | AttestError::TooOld { .. }
        | AttestError::WrongAudience { .. }
        | AttestError::MissingClaim { .. }
        | AttestError::BadClaimValue { .. }
        | AttestError::UntrustedCertificate { .. }
        | AttestError::BadChallenge { .. }
        | AttestError::BadProofSignature
        | AttestError::Replayed { .. } => Code::Unauthenticated,
    }
}

/// A CA error by who is at fault: a bad CSR is the caller's, an expired
/// signing certificate makes us unavailable, a refused rotation step waits
/// for a state, and only our own failures are internal.
pub(crate) fn ca_code(error: &CaError) -> Code {
    match error.fault() {
        Fault::Caller => Code::InvalidArgument,
        Fault::Refusal => Code::FailedPrecondition,
        Fault::Unavailable => Code::Unavailable,
        // `Fault` may grow; until this match learns a new kind, treating it
        // as ours keeps it loud (an error in the log) rather than hidden.
        Fault::Ours | _ => Code::Internal,
    }
}

impl From<EntryError> for Status {
    fn from(error: EntryError) -> Self {
        let code = entry_code(&error);
        Status::new(code, error.to_string())
    }
}

/// The status code of every entry error: an exhaustive match, so that a new
/// variant must be given its code here. All are the operator's to fix.
pub(crate) fn entry_code(error: &EntryError) -> Code {
    match error {
        EntryError::Missing { .. } | EntryError::Invalid { .. } | EntryError::TtlTooLong { .. } => {
            Code::InvalidArgument
        }
        EntryError::State { .. } => Code::FailedPrecondition,
    }
}

impl From<crate::alert::AlertError> for Status {
    fn from(error: crate::alert::AlertError) -> Self {
        Status::new(alert_code(&error), error.to_string())
    }
}

/// The status code of every alert error: an exhaustive match. Neither is the caller's
/// mistake: a full queue is to be tried later, a stopped sink means shutdown.
pub(crate) fn alert_code(error: &crate::alert::AlertError) -> Code {
    use crate::alert::AlertError;
    match error {
        AlertError::QueueFull => Code::ResourceExhausted,
        AlertError::Stopped => Code::Unavailable,
    }
}

impl From<SeparationError> for Status {
    fn from(error: SeparationError) -> Self {
        Status::new(separation_code(&error), error.to_string())
    }
}

/// The status code of every separation error: an exhaustive match. The
/// request is well formed; other entries' environments do not allow it.
pub(crate) fn separation_code(error: &SeparationError) -> Code {
    match error {
        SeparationError::ParentEnvironment { .. } | SeparationError::ChildrenEnvironment { .. } => {
            Code::FailedPrecondition
        }
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => Status::already_exists(error.to_string()),
            StoreError::NotFound { .. } => Status::not_found(error.to_string()),
            StoreError::Unavailable { .. } => Status::unavailable(error.to_string()),
            StoreError::Corrupt { .. } | StoreError::Internal { .. } => {
                tracing::error!(%error, "store error");
                Status::internal(error.to_string())
            }
        }
    }
}

/// Logs a refusal (not our bug) at info, or at warn when a dependency is
/// unavailable, unless more than [`REFUSAL_LINES_PER_SECOND`] were logged
/// this second; the next line logged says how many were left out.
pub(crate) fn log_refusal(code: Code, reason: &str) {
    static REFUSALS: LogLimiter = LogLimiter::new(REFUSAL_LINES_PER_SECOND);
    let Some(suppressed) = REFUSALS.admit(seconds_since_start()) else {
        return;
    };
    if suppressed > 0 {
        tracing::info!(
            suppressed,
            "{suppressed} refusals were not logged (at most {REFUSAL_LINES_PER_SECOND} a second are)"
        );
    }
    if code == Code::Unavailable {
        tracing::warn!(?code, %reason, "request failed: a dependency is unavailable");
    } else {
        tracing::info!(?code, %reason, "request refused");
    }
}

/// Whole seconds on a monotonic clock, counted from the first call.
fn seconds_since_start() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs()
}

/// Admits at most `per_second` log lines in each second and counts the
/// rest, so that the next line admitted can say how many were dropped.
#[derive(Debug)]
struct LogLimiter {
    per_second: u32,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    second: u64,
    admitted: u32,
    suppressed: u64,
}

impl LogLimiter {
    const fn new(per_second: u32) -> Self {
        LogLimiter {
            per_second,
            window: Mutex::new(Window {
                second: 0,
                admitted: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line may be logged in `second` (of a monotonic clock):
    /// `Some(n)`, where `n` lines were dropped since the last one admitted,
    /// or `None` to drop this one.
    fn admit(&self, second: u64) -> Option<u64> {
        // A poisoned lock means a panic while counting; the counts are still
        // good enough to limit log lines.
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if window.second != second {
            window.second = second;
            window.admitted = 0;
        }
        if window.admitted < self.per_second {
            window.admitted += 1;
            Some(std::mem::take(&mut window.suppressed))
        } else {
            window.suppressed = window.suppressed.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alert_error_has_its_code() {
        use crate::alert::AlertError;
        for (error, code) in [
            (AlertError::QueueFull, Code::ResourceExhausted),
            (AlertError::Stopped, Code::Unavailable),
        ] {
            // Fails to compile when a variant is added without a case here.
            match error {
                AlertError::QueueFull | AlertError::Stopped => {}
            }
            let status = Status::from(error.clone());
            assert_eq!(status.code(), code, "{error}");
            assert_eq!(status.message(), error.to_string());
        }
    }

    /// One example of every entry error with the code the operator gets;
    /// the match fails to compile when a variant is added.
    #[test]
    fn every_entry_error_has_its_code() {
        fn number(error: &EntryError) -> usize {
            match error {
                EntryError::Missing { .. } => 0,
                EntryError::Invalid { .. } => 1,
                EntryError::TtlTooLong { .. } => 2,
                EntryError::State { .. } => 3,
            }
        }
        let cases = [
            (
                EntryError::Missing { field: "reason" },
                Code::InvalidArgument,
            ),
            (
                EntryError::Invalid {
                    field: "note",
                    reason: "too long".into(),
                },
                Code::InvalidArgument,
            ),
            (
                EntryError::TtlTooLong {
                    field: "review-every",
                    asked: 2,
                    max: 1,
                },
                Code::InvalidArgument,
            ),
            (
                EntryError::State {
                    reason: "entry 0123456789abcdef is not disabled".into(),
                },
                Code::FailedPrecondition,
            ),
        ];
        let mut seen = [false; 4];
        for (error, code) in cases {
            seen[number(&error)] = true;
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message, "the operator is told why");
        }
        assert!(
            seen.iter().all(|s| *s),
            "a variant has no example: {seen:?}"
        );
    }

    /// Every separation error is the operator's to fix, never INTERNAL.
    #[test]
    fn every_separation_error_has_its_code() {
        use mayfly_sdk::SpiffeId;
        let id = |p: &str| SpiffeId::parse(&format!("spiffe://example.org{p}")).unwrap();
        let entry_id = || crate::policy::EntryId::parse("0123456789abcdef").unwrap();
        let cases = [
            SeparationError::ParentEnvironment {
                entry_id: entry_id(),
                spiffe_id: id("/w"),
                environment: "prod".into(),
                agent: id("/agent"),
                agent_entry_id: entry_id(),
                agent_environment: "test".into(),
            },
            SeparationError::ChildrenEnvironment {
                agent_entry_id: entry_id(),
                agent: id("/agent"),
                environment: "test".into(),
                count: 1,
                examples: vec![(entry_id(), id("/w"), "prod".into())],
            },
        ];
        let mut seen = [false; 2];
        for error in cases {
            seen[match &error {
                SeparationError::ParentEnvironment { .. } => 0,
                SeparationError::ChildrenEnvironment { .. } => 1,
            }] = true;
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), Code::FailedPrecondition, "{message}");
            assert_eq!(status.message(), message, "the operator is told why");
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }

    #[test]
    fn limiter_admits_a_few_lines_a_second_and_counts_the_rest() {
        let limiter = LogLimiter::new(3);
        // Positive control: the first three of a second are logged.
        assert_eq!(
            (0..3).map(|_| limiter.admit(7)).collect::<Vec<_>>(),
            vec![Some(0); 3]
        );
        for _ in 0..1000 {
            assert_eq!(limiter.admit(7), None);
        }
        // The next second: logged again, saying how many were dropped, once.
        assert_eq!(limiter.admit(8), Some(1000));
        assert_eq!(limiter.admit(8), Some(0));
        // A quiet gap does not matter.
        assert_eq!(limiter.admit(60), Some(0));
    }
}
