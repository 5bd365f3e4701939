//! The audit log: every attestation, issuance, renewal, refusal and administrative change,
//! in an append-only, hash-chained file that is durable before the broker answers.
//!
//! # Files
//! `<data>/audit/audit.log` holds one JSON record per line. Each record carries a `seq`
//! (1, 2, 3, …), the commit `time`, the `prev` hash of the record before it (64 zeros for the
//! first), the [`AuditEvent`], and its own `hash`: hex SHA-256 of the line's bytes without the
//! `hash` field. Editing a record breaks its hash; removing or reordering records breaks the
//! seqs and the `prev` links. Cutting records off the end leaves a valid shorter chain, so
//! `<data>/audit/checkpoint.json` records the head (last seq and hash) for [`verify`] to
//! compare against.
//!
//! # Evidence for auditors
//! Signed checkpoints, the key chain and proofs ([`prove_inclusion`], [`verify_bundle`])
//! are described in `docs/architecture.md` §4. [`export`] writes a slice of the log with
//! a proof that an auditor checks alone with [`verify_export`] and the pinned root key.
//!
//! # Durability
//! One writer thread owns the file. It takes every record that is waiting, writes them with
//! one `write_all`, makes them durable with one `fdatasync`, and only then answers their
//! [`AuditLog::append`] calls (group commit): one sync covers a whole burst. If the write or
//! the sync fails, every append of the batch fails and the file is cut back to the last
//! durable record: the broker refuses what it could not record.
//!
//! # Quick start
//! ```no_run
//! # async fn demo() -> Result<(), mayfly::audit::AuditError> {
//! use mayfly::audit::{AuditEvent, AuditLog, Outcome};
//!
//! let log = AuditLog::open("mayfly-data/audit".as_ref())?;
//! let receipt = log
//!     .append(AuditEvent {
//!         action: "jwt.mint".into(),
//!         outcome: Outcome::Granted,
//!         actor: "spiffe://example.org/billing".into(),
//!         audience: Some("payments".into()),
//!         ..Default::default()
//!     })
//!     .await?; // durable now; safe to hand out the credential
//! println!("recorded as seq {}", receipt.seq);
//! log.close().await?;
//!
//! let report = mayfly::audit::verify("mayfly-data/audit".as_ref())?;
//! if let Some(problem) = report.problem {
//!     eprintln!("audit log broken: {problem}");
//! }
//! # Ok(())
//! # }
//! ```

mod anchor;
mod breaks;
mod checkpoint;
mod error;
mod export;
mod handoff;
mod log;
pub mod merkle;
mod pace;
mod private;
mod proof;
mod record;
mod seal;
mod sealed;
mod segment;
mod tail;
mod trust;
mod verify;
mod writer;

pub use anchor::{ANCHOR_RECOVERED_ACTION, AnchorHealth, AnchorStatus, Outage};
pub use breaks::{BreakKind, ChainBreak};
pub use checkpoint::read_checkpoint;
pub use error::AuditError;
pub use export::{
    BoundError, EXPORT_SCHEMA, ExportBound, ExportBreak, ExportCheck, ExportFormat, ExportPlace,
    ExportProof, ExportRange, ExportSchema, ExportVerified, Exported, MAX_EXPORT_PROOF_LEN, export,
    export_to_file, verify_export,
};
pub use log::AuditLog;
pub use log::{AuditOptions, AuditStatus};
pub use pace::{DEFAULT_LINGER as DEFAULT_COMMIT_LINGER, MAX_LINGER as MAX_COMMIT_LINGER};
pub use proof::{
    ConsistencyBundle, InclusionBundle, MAX_BUNDLE_LEN, ProofBundle, ProofSummary, Proved,
    prove_consistency, prove_inclusion, verify_bundle,
};
pub use record::{AuditEvent, AuditReceipt, AuditRecord, GENESIS_HASH, Outcome};
pub use seal::{
    AUDIT_ACTOR, AuditPublicKey, Handover, KEY_ACTION, ROOT_PUBLIC_KEY_FILE, SignedCheckpoint,
    checkpoint_body, handover_body,
};
pub use sealed::{SegmentReport, verify_segment};
pub use segment::SegmentSeal;
pub use tail::tail;
pub use trust::{KeyEpoch, Seen, WitnessProblem, check_foreign};
pub use verify::{VerifyOptions, VerifyReport, verify, verify_with};
pub use writer::{ANCHOR_RETRY, CommitObserver, Rotation};

#[cfg(test)]
mod test_support;
