//! The one error type of the audit log.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::breaks::ChainBreak;
use super::export::ExportBreak;

/// Why an audit operation failed.
///
/// Every variant that the broker can see on the request path (`Write`, `Halted`, `Closed`)
/// means the record is **not** in the log: the broker must refuse the request it was
/// recording (fail closed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file of the audit log could not be opened, read or created.
    #[error("audit log: cannot {action} {path}: {source}")]
    Io {
        /// What we were doing, e.g. "open" or "read".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The existing log does not verify; the broker will not append to it.
    #[error(
        "audit log in {dir} is broken: {problem}; refusing to append to it. An operator \
         must inspect it, then restore it from a copy or move it aside, before the server \
         can start"
    )]
    Broken {
        /// The audit directory.
        dir: PathBuf,
        /// The first place where the chain breaks (boxed: it is large, and every
        /// `Result` of the request path carries this type).
        problem: Box<ChainBreak>,
    },

    /// Another process (or another `AuditLog` in this one) holds the log open.
    #[error("audit log {path} is in use by another process; two writers would fork the chain")]
    Locked {
        /// The log file.
        path: PathBuf,
    },

    /// Writing or syncing a batch failed; none of its records were written.
    #[error("audit log: writing {path} failed, the record was not stored: {source}")]
    Write {
        /// The log file.
        path: PathBuf,
        /// The operating system's error, shared by every request of the failed batch.
        #[source]
        source: Arc<io::Error>,
    },

    /// An earlier write failed and could not be rolled back, so the file's end is unknown;
    /// the log refuses every append until the server is restarted and the log verified.
    #[error(
        "audit log {path} stopped accepting records after a write failure it could not \
         roll back; restart the server once the disk is healthy"
    )]
    Halted {
        /// The log file.
        path: PathBuf,
    },

    /// The log was closed, or its writer thread is gone.
    #[error("audit log is closed")]
    Closed,

    /// A line of the log is not a record; returned by [`tail`](super::tail), which parses
    /// without verifying (use [`verify`](super::verify) to locate the damage).
    #[error("audit log {path}: a line is not a valid record: {reason}")]
    Malformed {
        /// The log file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },

    /// The audit key could not be made, read or written, or a key, signature or checkpoint
    /// given to check the log with is malformed.
    #[error("audit key: {reason}")]
    Key {
        /// What is wrong, in words an operator understands.
        reason: String,
    },

    /// The log does not continue what was anchored before: it is shorter than a signed
    /// checkpoint (rolled back), holds other records than it (forked), or does not match
    /// the audit key's epoch. The broker refuses to start on it unless an operator accepts
    /// it with a reason, which is then the first record audited.
    #[error(
        "audit log in {dir} does not continue its anchored history: {problem}. Restore the \
         log that continues it, or, if this is known and wanted, start the server with \
         --accept-audit-rollback \"<reason>\" (the reason is audited)"
    )]
    Diverged {
        /// The audit directory.
        dir: PathBuf,
        /// What was found, and where.
        problem: String,
    },

    /// A proof could not be made (the log does not verify, the record is not signed for
    /// yet), or a proof bundle is malformed or does not hold. The reason names what, in
    /// words an auditor understands.
    #[error("audit proof: {reason}")]
    Proof {
        /// What is wrong.
        reason: String,
    },

    /// A segment of the log, its seal or `segments/start.json` does not hold, or cannot be
    /// made: the reason names the seq and the check.
    #[error("audit segment {path}: {reason}")]
    Segment {
        /// The segment's or the seal's file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An export does not hold against its proof (see
    /// [`verify_export`](super::verify_export)): the problem names the place (a line or
    /// row and its seq, the record before or after the slice, or the proof file) and the
    /// check that failed.
    #[error("audit export does not hold: {problem}")]
    ExportRefused {
        /// Where, and which check (boxed: it is large, and every `Result` of the request
        /// path carries this type).
        problem: Box<ExportBreak>,
    },

    /// An event could not be encoded as JSON. Not expected: every field is a string or a
    /// JSON value; kept so that a bug fails the request instead of the writer.
    #[error("audit event could not be encoded: {reason}")]
    Encode {
        /// What the encoder said.
        reason: String,
    },
}

impl AuditError {
    pub(super) fn key(reason: impl Into<String>) -> Self {
        Self::Key {
            reason: reason.into(),
        }
    }

    pub(super) fn proof(reason: impl Into<String>) -> Self {
        Self::Proof {
            reason: reason.into(),
        }
    }

    pub(super) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
