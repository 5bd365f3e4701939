//! Why a load test could not run.

/// Why `mayfly bench` stopped. Messages never contain a secret: join tokens, JWTs and keys
/// stay out of every variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// An option cannot be used as given.
    #[error("{0}")]
    Usage(String),

    /// A child process (the broker, the agent, taskset) could not be started, or stopped
    /// before it was ready.
    #[error("{what}: {reason}")]
    Process {
        /// Which process.
        what: &'static str,
        /// What happened, with the end of its log when there is one.
        reason: String,
    },

    /// The broker or the admin socket cannot be reached.
    #[error("{0}")]
    Unreachable(String),

    /// A setup step (entries, join tokens, SVIDs) was refused.
    #[error("setup: {step}: {reason}")]
    Setup {
        /// The step, e.g. "attest the client".
        step: String,
        /// The server's answer.
        reason: String,
    },

    /// Something on this side failed: a file or directory, a key, TLS material.
    #[error("{0}")]
    Local(String),
}

impl BenchError {
    /// A refused setup step, from the gRPC status.
    pub(crate) fn setup(step: impl Into<String>, status: &tonic::Status) -> Self {
        BenchError::Setup {
            step: step.into(),
            reason: format!("{:?}: {}", status.code(), status.message()),
        }
    }
}

impl From<mayfly_sdk::client::ClientError> for BenchError {
    fn from(error: mayfly_sdk::client::ClientError) -> Self {
        use mayfly_sdk::client::ClientError;
        let text = mayfly_sdk::error_chain(&error);
        match error {
            ClientError::InvalidAddress { .. } => BenchError::Usage(text),
            error if error.is_unreachable() => BenchError::Unreachable(text),
            _ => BenchError::Local(text),
        }
    }
}
