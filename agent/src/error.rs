//! Why the agent could not start or keep going.

use std::path::PathBuf;

use mayfly_sdk::client::ClientError;

/// Why the agent could not start, or had to stop.
///
/// Messages name the file, socket or broker involved and never a secret:
/// join tokens, private keys and JWT-SVIDs appear in no variant, so
/// `Display` and `Debug` are safe to log.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A configuration value cannot be used (a bad URL, an unreadable bundle).
    #[error("{reason}")]
    Config {
        /// What is wrong and what would be right.
        reason: String,
    },

    /// The agent has no usable X509-SVID of its own: none saved in the data
    /// directory (or the saved one expired) and no join token was given.
    #[error(
        "no valid agent SVID in {} and no join token to attest with",
        data_dir.display()
    )]
    NoIdentity {
        /// Where a saved SVID was looked for.
        data_dir: PathBuf,
    },

    /// The agent's own X509-SVID expired before it could be renewed (the
    /// broker was unreachable for its whole second half of life). Only a new
    /// join token can bring the agent back.
    #[error("the agent's own SVID expired at {expired_at}; attest again with a new join token")]
    IdentityExpired {
        /// When it expired, RFC 3339.
        expired_at: String,
    },

    /// The data directory, or a file in it, cannot be read or written.
    #[error("data directory {}: {reason}", path.display())]
    DataDir {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// The file sink's directory (`--write-dir`) cannot be created.
    #[error("write directory {}: {reason}", path.display())]
    WriteDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// The Workload API socket cannot be created.
    #[error("Workload API socket {}: {reason}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// The broker cannot be reached, or the TLS handshake with it failed.
    #[error("cannot reach the broker at {server}: {reason}")]
    BrokerUnreachable {
        /// The broker URL.
        server: String,
        /// The transport's explanation.
        reason: String,
    },

    /// The broker answered with an error status.
    #[error("the broker refused ({code:?}): {message}")]
    Broker {
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message, as the broker wrote it.
        message: String,
    },

    /// The broker's answer breaks the API contract.
    #[error("unexpected answer from the broker: {reason}")]
    BadResponse {
        /// What is missing or wrong.
        reason: String,
    },

    /// Generating a key pair or CSR failed (not expected).
    #[error("cannot generate a key and CSR: {reason}")]
    KeyGeneration {
        /// The library's explanation.
        reason: String,
    },
}

impl AgentError {
    /// Whether retrying later can help: the broker was unreachable or
    /// temporarily unable to serve. Refusals (a deleted agent entry, a bad
    /// request) are not retried faster by waiting less, but the sync loop
    /// keeps trying them at its slowest pace, since an operator may fix them.
    pub fn is_transient(&self) -> bool {
        match self {
            AgentError::BrokerUnreachable { .. } => true,
            AgentError::Broker { code, .. } => matches!(
                code,
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
            ),
            _ => false,
        }
    }

    /// A data-directory error for `path`.
    pub(crate) fn data_dir(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        AgentError::DataDir {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    /// A broken-contract error.
    pub(crate) fn bad_response(reason: impl Into<String>) -> Self {
        AgentError::BadResponse {
            reason: reason.into(),
        }
    }
}

impl From<tonic::Status> for AgentError {
    fn from(status: tonic::Status) -> Self {
        AgentError::Broker {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

impl From<ClientError> for AgentError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::BrokerUnreachable { server, reason } => {
                AgentError::BrokerUnreachable { server, reason }
            }
            ClientError::KeyGeneration { reason } => AgentError::KeyGeneration { reason },
            ClientError::BadResponse { reason } => AgentError::BadResponse { reason },
            ClientError::File { path, reason, .. } => AgentError::DataDir { path, reason },
            // A bad address, bad TLS material, an unreachable admin socket
            // (never asked for by the agent) or a kind added later: retrying
            // cannot fix any of them.
            other => AgentError::Config {
                reason: mayfly_sdk::error_chain(&other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        let unreachable = AgentError::BrokerUnreachable {
            server: "https://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        assert!(unreachable.is_transient());
        assert!(AgentError::from(tonic::Status::unavailable("down")).is_transient());
        assert!(!AgentError::from(tonic::Status::permission_denied("no")).is_transient());
        assert!(!AgentError::bad_response("no svid").is_transient());
    }

    #[test]
    fn client_errors_keep_their_meaning() {
        let unreachable = AgentError::from(ClientError::BrokerUnreachable {
            server: "https://127.0.0.1:1".into(),
            reason: "refused".into(),
        });
        assert!(unreachable.is_transient(), "{unreachable:?}");
        let address = AgentError::from(ClientError::InvalidAddress {
            server: "http://x".into(),
            reason: "must be https".into(),
        });
        assert!(matches!(address, AgentError::Config { .. }), "{address:?}");
        assert!(!address.is_transient());
        let answer = AgentError::from(ClientError::BadResponse {
            reason: "no svid".into(),
        });
        assert!(matches!(answer, AgentError::BadResponse { .. }));
        // A broker refusal keeps its code: PermissionDenied is not retried.
        let refused = AgentError::from(tonic::Status::permission_denied("no"));
        assert!(matches!(
            refused,
            AgentError::Broker {
                code: tonic::Code::PermissionDenied,
                ..
            }
        ));
        assert!(!refused.is_transient());
    }
}
