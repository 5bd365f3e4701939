//! The one error type of the command line, and how each error maps to an exit code.

use std::path::PathBuf;

/// Exit codes of the `mayfly` command (see `sysexits.h` for 64 and 69).
pub mod exit {
    /// The server refused, a check failed, or a local operation failed.
    pub const FAILED: u8 = 1;
    /// A flag has a value that cannot be used (`EX_USAGE`). Syntax errors (an unknown flag, a
    /// missing argument) keep clap's own exit code, 2.
    pub const USAGE: u8 = 64;
    /// The broker or the admin socket cannot be reached (`EX_UNAVAILABLE`).
    pub const UNAVAILABLE: u8 = 69;
}

/// Why a command failed.
///
/// Messages name the file, flag or server involved, never a secret: join tokens, JWTs and
/// private keys do not appear in any variant, so `Display` and `Debug` are safe to print.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A flag's value cannot be used. Exit code 64.
    #[error("{message}")]
    Usage {
        /// What is wrong and what would be right.
        message: String,
    },

    /// The admin socket is missing or nobody answers on it. Exit code 69.
    #[error("cannot reach the admin API: admin socket {} {problem}", socket.display())]
    AdminUnreachable {
        /// The socket path that was tried.
        socket: PathBuf,
        /// What went wrong, e.g. "not found".
        problem: String,
    },

    /// The broker cannot be reached, or the TLS handshake with it failed. Exit code 69.
    #[error("cannot connect to the broker at {server}: {reason}")]
    BrokerUnreachable {
        /// The `--server` URL.
        server: String,
        /// The transport's explanation, its causes joined by ": ".
        reason: String,
    },

    /// The server answered the call with an error status. Exit code 1, or 69 when the
    /// status is `unavailable`.
    #[error("{code}: {message}")]
    Rpc {
        /// A short word for the gRPC status code, e.g. "permission denied".
        code: &'static str,
        /// The status message, as the server wrote it.
        message: String,
        /// True for `UNAVAILABLE`: the server is up but cannot serve (exit 69).
        unavailable: bool,
    },

    /// The trust bundle or the client identity cannot be used for TLS. Exit code 1.
    #[error("{what}: {reason}")]
    TlsMaterial {
        /// Which material, e.g. "trust bundle ./mayfly-data/bundle.pem".
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A local file or directory could not be read or written. Exit code 1.
    #[error("cannot {action} {}: {reason}", path.display())]
    File {
        /// What we were doing: "read", "write", "create".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's (or the file layer's) explanation.
        reason: String,
    },

    /// Writing the command's output failed (for example, a closed pipe). Exit code 1.
    #[error("cannot write to standard output: {reason}")]
    Output {
        /// The operating system's explanation.
        reason: String,
        /// True if the reader went away; nothing more is printed then.
        broken_pipe: bool,
    },

    /// Generating the key pair or the certificate signing request failed. Exit code 1.
    #[error("cannot generate a key and CSR: {reason}")]
    KeyGeneration {
        /// The library's explanation.
        reason: String,
    },

    /// The server's answer breaks the API contract (a missing field, a certificate for
    /// another key). Exit code 1.
    #[error("unexpected answer from the server: {reason}")]
    BadResponse {
        /// What is missing or wrong.
        reason: String,
    },

    /// The audit log could not be read. Exit code 1.
    #[error(transparent)]
    Audit(#[from] mayfly::audit::AuditError),
}

impl CliError {
    /// The process exit code for this error; see [`exit`].
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage { .. } => exit::USAGE,
            CliError::AdminUnreachable { .. } | CliError::BrokerUnreachable { .. } => {
                exit::UNAVAILABLE
            }
            CliError::Rpc { unavailable, .. } => {
                if *unavailable {
                    exit::UNAVAILABLE
                } else {
                    exit::FAILED
                }
            }
            CliError::TlsMaterial { .. }
            | CliError::File { .. }
            | CliError::Output { .. }
            | CliError::KeyGeneration { .. }
            | CliError::BadResponse { .. }
            | CliError::Audit(_) => exit::FAILED,
        }
    }

    /// A line that tells the user what to try next, if there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            CliError::AdminUnreachable { socket, .. } => Some(format!(
                "is `mayfly server` running, with the same --data-dir? It creates {}",
                socket.display()
            )),
            CliError::BrokerUnreachable { .. } => Some(
                "is `mayfly server` running at --server (MAYFLY_SERVER)? If the TLS handshake \
                 failed, check that --bundle (MAYFLY_BUNDLE) holds the server's root CA"
                    .to_string(),
            ),
            CliError::Rpc { unavailable, .. } if *unavailable => {
                Some("the server is up but cannot serve this now; retry shortly".to_string())
            }
            _ => None,
        }
    }

    /// Whether the error should be reported at all: a reader that closed our output does
    /// not want a message.
    pub(crate) fn is_silent(&self) -> bool {
        matches!(
            self,
            CliError::Output {
                broken_pipe: true,
                ..
            }
        )
    }

    /// A usage error with `message`.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError::Usage {
            message: message.into(),
        }
    }

    /// A file error.
    pub(crate) fn file(
        action: &'static str,
        path: impl Into<PathBuf>,
        reason: impl ToString,
    ) -> Self {
        CliError::File {
            action,
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    /// A broken-contract error.
    pub(crate) fn bad_response(reason: impl Into<String>) -> Self {
        CliError::BadResponse {
            reason: reason.into(),
        }
    }
}

impl From<mayfly_sdk::client::ClientError> for CliError {
    fn from(error: mayfly_sdk::client::ClientError) -> Self {
        use mayfly_sdk::client::ClientError;
        match error {
            ClientError::InvalidAddress { server, reason } => {
                CliError::usage(format!("--server {server:?}: {reason}"))
            }
            ClientError::TlsMaterial { what, reason } => CliError::TlsMaterial { what, reason },
            ClientError::BrokerUnreachable { server, reason } => {
                CliError::BrokerUnreachable { server, reason }
            }
            ClientError::AdminUnreachable { socket, problem } => {
                CliError::AdminUnreachable { socket, problem }
            }
            ClientError::File {
                action,
                path,
                reason,
                ..
            } => CliError::File {
                action,
                path,
                reason,
            },
            ClientError::KeyGeneration { reason } => CliError::KeyGeneration { reason },
            ClientError::BadResponse { reason } => CliError::BadResponse { reason },
            // ClientError is non-exhaustive; a kind added later fails the command.
            other => CliError::BadResponse {
                reason: mayfly_sdk::error_chain(&other),
            },
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        let message = match status.message() {
            "" => "(no message)".to_string(),
            message => message.to_string(),
        };
        CliError::Rpc {
            code: code_word(status.code()),
            message,
            unavailable: status.code() == tonic::Code::Unavailable,
        }
    }
}

/// A short, lowercase name for a gRPC status code, used as the prefix of the message.
pub(crate) fn code_word(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_sysexits() {
        assert_eq!(CliError::usage("bad").exit_code(), 64);
        let admin = CliError::AdminUnreachable {
            socket: "/x/admin.sock".into(),
            problem: "not found".into(),
        };
        assert_eq!(admin.exit_code(), 69);
        let broker = CliError::BrokerUnreachable {
            server: "https://127.0.0.1:7443".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(broker.exit_code(), 69);
        assert_eq!(CliError::file("read", "/x", "gone").exit_code(), 1);
        assert_eq!(CliError::bad_response("no svid").exit_code(), 1);
    }

    #[test]
    fn refusals_exit_1_and_unavailable_exits_69() {
        let denied = CliError::from(tonic::Status::permission_denied(
            "audience \"x\" is not allowed for spiffe://td/a",
        ));
        assert_eq!(denied.exit_code(), 1);
        assert_eq!(
            denied.to_string(),
            "permission denied: audience \"x\" is not allowed for spiffe://td/a"
        );
        assert_eq!(denied.hint(), None);

        let invalid = CliError::from(tonic::Status::invalid_argument("bad"));
        assert_eq!(invalid.exit_code(), 1);

        let unavailable = CliError::from(tonic::Status::unavailable("revocations stale"));
        assert_eq!(unavailable.exit_code(), 69);
        assert!(unavailable.hint().is_some());
    }

    #[test]
    fn admin_unreachable_says_what_to_do() {
        let err = CliError::AdminUnreachable {
            socket: "./mayfly-data/admin.sock".into(),
            problem: "not found".into(),
        };
        assert_eq!(
            err.to_string(),
            "cannot reach the admin API: admin socket ./mayfly-data/admin.sock not found"
        );
        let hint = err.hint().unwrap_or_default();
        assert!(hint.contains("is `mayfly server` running"), "{hint}");
    }

    #[test]
    fn empty_status_message_is_named() {
        let err = CliError::from(tonic::Status::internal(""));
        assert_eq!(err.to_string(), "internal error: (no message)");
    }

    #[test]
    fn broken_pipe_is_silent() {
        let err = CliError::Output {
            reason: "Broken pipe".into(),
            broken_pipe: true,
        };
        assert!(err.is_silent());
        assert_eq!(err.exit_code(), 1);
        assert!(!CliError::usage("x").is_silent());
    }
}
