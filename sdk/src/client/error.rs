//! [`ClientError`]: why a client of the broker could not connect, make a key,
//! or read or write its SVID files.

use std::path::PathBuf;

use crate::files::FileError;

/// Why a client-side step failed. Messages name the file, address or
/// socket involved, never a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The broker's address is not an `https://host:port` URL.
    #[error("broker address {server:?}: {reason}")]
    InvalidAddress {
        /// What was given.
        server: String,
        /// Why it is unusable, and what would be right.
        reason: String,
    },
    /// A trust bundle or a client identity cannot be used for TLS.
    #[error("{what}: {reason}")]
    TlsMaterial {
        /// Which material, e.g. "trust bundle ./mayfly-data/bundle.pem".
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker did not answer, or the TLS handshake with it failed.
    #[error("cannot connect to the broker at {server}: {reason}")]
    BrokerUnreachable {
        /// The address.
        server: String,
        /// The transport's explanation, its causes joined by ": ".
        reason: String,
    },
    /// The admin socket is missing, or nobody answers on it.
    #[error("cannot reach the admin API: admin socket {} {problem}", socket.display())]
    AdminUnreachable {
        /// The socket path that was tried.
        socket: PathBuf,
        /// What went wrong, e.g. "not found".
        problem: String,
    },
    /// A local file could not be read or written.
    #[error("cannot {action} {}: {reason}", path.display())]
    File {
        /// What we were doing: "read", "write", "create".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What went wrong, and what to do when the file is missing.
        reason: String,
        /// The file layer's error, when there is one.
        #[source]
        source: Option<FileError>,
    },
    /// Generating a key pair or a certificate signing request failed.
    #[error("cannot generate a key and CSR: {reason}")]
    KeyGeneration {
        /// The library's explanation.
        reason: String,
    },
    /// The broker's answer breaks the API contract (a missing field, a
    /// certificate for another key).
    #[error("unexpected answer from the broker: {reason}")]
    BadResponse {
        /// What is missing or wrong.
        reason: String,
    },
}

impl ClientError {
    /// Whether trying again later may succeed (the broker or the socket was
    /// not there).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::BrokerUnreachable { .. } | ClientError::AdminUnreachable { .. }
        )
    }

    pub(crate) fn file(action: &'static str, path: impl Into<PathBuf>, source: FileError) -> Self {
        ClientError::File {
            action,
            path: path.into(),
            reason: source.to_string(),
            source: Some(source),
        }
    }

    pub(crate) fn bad_response(reason: impl Into<String>) -> Self {
        ClientError::BadResponse {
            reason: reason.into(),
        }
    }
}
