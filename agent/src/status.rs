//! The one place where the Workload API's refusals become gRPC statuses,
//! with the codes SPIFFE_Workload_Endpoint.md §6 prescribes.

use tonic::Status;

/// The text of a refusal to a workload no entry matches (the words SPIRE
/// uses too, so existing tooling recognises it).
pub(crate) const NO_IDENTITY: &str = "no identity issued";

/// Why a Workload API request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WorkloadError {
    /// The `workload.spiffe.io: true` metadata is missing (a possible SSRF):
    /// InvalidArgument, and the client must not retry.
    MissingSecurityHeader,
    /// A mandatory field is empty or malformed: InvalidArgument.
    InvalidArgument(String),
    /// No registered entry matches the caller: PermissionDenied.
    NoIdentity,
    /// The caller is known but not allowed this: PermissionDenied.
    Denied(String),
    /// The caller could not be attested (it exited, /proc is unreadable):
    /// PermissionDenied, failing closed.
    AttestationFailed(String),
    /// Nothing to serve yet, or the broker cannot mint now: Unavailable,
    /// and the client retries with backoff.
    NotReady(String),
}

impl From<WorkloadError> for Status {
    fn from(error: WorkloadError) -> Self {
        match error {
            WorkloadError::MissingSecurityHeader => {
                Status::invalid_argument("security header missing from request")
            }
            WorkloadError::InvalidArgument(reason) => Status::invalid_argument(reason),
            WorkloadError::NoIdentity => Status::permission_denied(NO_IDENTITY),
            WorkloadError::Denied(reason) => Status::permission_denied(reason),
            WorkloadError::AttestationFailed(reason) => {
                Status::permission_denied(format!("workload attestation failed: {reason}"))
            }
            WorkloadError::NotReady(reason) => Status::unavailable(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes_follow_the_workload_endpoint_spec() {
        let status = |e: WorkloadError| Status::from(e).code();
        assert_eq!(
            status(WorkloadError::MissingSecurityHeader),
            Code::InvalidArgument
        );
        assert_eq!(status(WorkloadError::NoIdentity), Code::PermissionDenied);
        assert_eq!(
            status(WorkloadError::NotReady("x".into())),
            Code::Unavailable
        );
        assert_eq!(
            Status::from(WorkloadError::NoIdentity).message(),
            "no identity issued"
        );
    }
}
