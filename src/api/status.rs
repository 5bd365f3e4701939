//! The one place where errors become gRPC statuses.

use tonic::Status;

use crate::mint::MintError;
use crate::policy::EntryError;
use crate::store::StoreError;

impl From<MintError> for Status {
    fn from(error: MintError) -> Self {
        match error {
            MintError::InvalidArgument { reason } => Status::invalid_argument(reason),
            MintError::Unauthenticated { reason } => Status::unauthenticated(reason),
            MintError::PermissionDenied { reason } => Status::permission_denied(reason),
            MintError::Unavailable { reason } => Status::unavailable(reason),
            MintError::Internal { reason } => {
                tracing::error!(%reason, "internal error");
                Status::internal("internal error; see the server log")
            }
        }
    }
}

impl From<EntryError> for Status {
    fn from(error: EntryError) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => Status::already_exists(error.to_string()),
            StoreError::NotFound { .. } => Status::not_found(error.to_string()),
            StoreError::Unavailable { .. } => Status::unavailable(error.to_string()),
            other => {
                tracing::error!(error = %other, "store error");
                Status::internal(other.to_string())
            }
        }
    }
}
