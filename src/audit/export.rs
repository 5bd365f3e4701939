//! Exports for a compliance officer: a slice of the audit log (a time or seq range) as
//! JSON lines or CSV, with a proof file that lets an auditor check the slice alone, with
//! nothing but the root public key they pinned.
//!
//! # What an export proves
//! The proof file (`mayfly-audit-export/1`, [`ExportProof`]) holds the range asked for,
//! the exact line of the record just `before` the slice and of the record just `after` it,
//! and an RFC 9162 inclusion proof ([`InclusionBundle`]) of the last line of that chain
//! (`after`; the slice's last record when nothing after it was signed; `before` when the
//! slice is empty too) against the log's signed checkpoint. [`verify_export`] then shows:
//!
//! - **authentic**: every record's hash recomputes from its bytes, and the `prev` links
//!   run from `before` through the slice to `after`; the last line is, byte for byte, a
//!   leaf of the tree the checkpoint signed, and the checkpoint is signed by the key the
//!   hand-overs lead to from the pinned root key. Since each `prev` is the hash of the
//!   record before, the whole chain is the signed log's, at its seqs.
//! - **complete**: the seqs are contiguous; `before` is not in the range (before `since`)
//!   and `after` is at or past its end (`until`); with no `before` the slice starts at
//!   seq 1, with no `after` it ends at the checkpoint's last record. So no record of the
//!   range was left out, at its edges or inside it.
//!
//! # Ranges
//! Half-open, `[since, until)`. A bound is a seq (`seq:120`) or an RFC 3339 time
//! ([`ExportBound`]). The slice starts at the first record at or after `since` and ends
//! before the first record after that at or after `until`; without `since` it starts at
//! seq 1, without `until` it runs to the signed checkpoint's last record. Only records a
//! signed checkpoint covers are exported: records appended since are not signed for yet.
//!
//! Record times are the writer's clock at commit, never earlier than the record before (a
//! clock set back holds the times where they were until it catches up). A log written
//! before that rule may have times that go back; the verifier then warns, naming the seqs,
//! because a record outside the slice may then carry a time inside the range.
//!
//! # Formats
//! - **jsonl**: the records' lines, byte for byte as stored, one per line: hashes
//!   recompute with any SHA-256 tool.
//! - **csv** (RFC 4180, CRLF): a header, then per record the columns `seq`, `time`,
//!   `action`, `outcome`, `actor`, the event's optional fields (`spiffe_id`, `entry_id`,
//!   `audience`, `serial`, `jti`, `evidence_sha256`, `reason`, `detail` as JSON), `prev`,
//!   `hash`, and `record`, the exact stored line. The other columns are for people: a cell
//!   that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so
//!   that a spreadsheet shows it instead of evaluating it (never in `record`). The
//!   verifier checks the record and that every other cell is what the record says.
//!
//! # Quick start
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! use mayfly::audit::{AuditPublicKey, ExportFormat, ExportProof, ExportRange};
//!
//! // On the host: November, as CSV, and its proof.
//! let dir = Path::new("mayfly-data/audit");
//! let range = ExportRange::new(
//!     Some("2026-11-01T00:00:00Z".parse()?),
//!     Some("2026-12-01T00:00:00Z".parse()?),
//! )?;
//! let out = Path::new("nov.csv");
//! let exported = mayfly::audit::export_to_file(dir, &range, ExportFormat::Csv, out)?;
//! exported.proof.write("nov.csv.proof.json".as_ref())?;
//!
//! // The auditor, anywhere, with the root key pinned off the host:
//! let pinned = AuditPublicKey::from_pem(&std::fs::read("audit-root.pub")?)?;
//! let proof = ExportProof::read("nov.csv.proof.json".as_ref())?;
//! let records = std::io::BufReader::new(std::fs::File::open("nov.csv")?);
//! let verified = mayfly::audit::verify_export(records, out, &proof, &pinned)?;
//! println!("{verified}");
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::AuditError;
use super::checkpoint::{self, CHECKPOINT_FILE, CheckpointState};
use super::proof::{InclusionBundle, ProofBundle, prove_inclusion, verify_bundle};
use super::record::{AuditRecord, LineFault, parse_line};
use super::seal::{AuditPublicKey, SignedCheckpoint};
use super::segment::Layout;

mod check;
mod csv;
mod range;

pub use check::{ExportBreak, ExportCheck, ExportPlace, ExportVerified};
pub use range::{BoundError, ExportBound, ExportRange};

/// One record of the log as read: its seq and its line without the newline.
type Line = Result<(u64, Vec<u8>), AuditError>;

/// The log's complete records in order, as `(seq, line without its newline)`: the one place
/// this module reads the log (its sealed segments, then `audit.log`, from the first record
/// retention kept). A final line without its newline is a record still being written and
/// is left out. Also returns how many records retention removed, and the last one's hash.
fn read_lines(dir: &Path) -> Result<((u64, String), impl Iterator<Item = Line>), AuditError> {
    let layout = Layout::read(dir)?;
    let removed = layout.start.size;
    let start = (removed, layout.start.prev.clone());
    let (mut reader, _) = layout.reader()?;
    let path = layout.live;
    let mut seq = removed;
    let mut done = false;
    let lines = std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(_) if line.last() == Some(&b'\n') => {
                line.pop();
                seq += 1;
                Some(Ok((seq, line)))
            }
            Ok(_) => {
                done = true;
                None
            }
            Err(e) => {
                done = true;
                Some(Err(AuditError::io("read", &path, e)))
            }
        }
    });
    Ok((start, lines))
}

/// The value of the proof file's `schema` field.
pub const EXPORT_SCHEMA: &str = "mayfly-audit-export/1";

/// The largest proof file [`ExportProof::from_json`] reads: an inclusion bundle (see
/// [`MAX_BUNDLE_LEN`](super::MAX_BUNDLE_LEN)) and two records.
pub const MAX_EXPORT_PROOF_LEN: u64 = super::MAX_BUNDLE_LEN + 2 * check::MAX_LINE_LEN;

/// How the records of an export are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// The stored lines, one per line.
    Jsonl,
    /// RFC 4180 CSV with a header; the last column holds the stored line.
    Csv,
}

/// The proof file's format tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportSchema {
    /// `mayfly-audit-export/1`, described by this module.
    #[serde(rename = "mayfly-audit-export/1")]
    V1,
}

/// What an auditor needs besides the records and the pinned root key to check an export:
/// the `mayfly-audit-export/1` JSON file. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportProof {
    /// Always [`ExportSchema::V1`].
    pub schema: ExportSchema,
    /// The range asked for.
    pub range: ExportRange,
    /// The seq of the slice's first record (`None` when it is empty).
    pub first_seq: Option<u64>,
    /// The seq of its last record.
    pub last_seq: Option<u64>,
    /// How many records it holds.
    pub count: u64,
    /// The exact line of the record just before the slice; `None` if it starts at seq 1.
    pub before: Option<String>,
    /// The exact line of the record just after the slice; `None` if no record after it
    /// was signed for when it was exported.
    pub after: Option<String>,
    /// The inclusion proof of the chain's last line (`after`, else the slice's last
    /// record, else `before`) against the signed checkpoint.
    pub inclusion: InclusionBundle,
}

impl ExportProof {
    /// Reads a proof file strictly (no unknown fields, no trailing data).
    ///
    /// # Errors
    /// [`AuditError::Proof`] if it is larger than [`MAX_EXPORT_PROOF_LEN`] or not an export
    /// proof.
    pub fn from_json(bytes: &[u8]) -> Result<ExportProof, AuditError> {
        if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_EXPORT_PROOF_LEN) {
            return Err(AuditError::proof(format!(
                "the export proof is larger than {MAX_EXPORT_PROOF_LEN} bytes"
            )));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| AuditError::proof(format!("not an export proof ({EXPORT_SCHEMA}): {e}")))
    }

    /// Reads the proof file at `path`.
    ///
    /// # Errors
    /// [`AuditError::Io`] if it cannot be read; as [`ExportProof::from_json`].
    pub fn read(path: &Path) -> Result<ExportProof, AuditError> {
        let bytes = mayfly_sdk::files::read_file_with_limit(path, MAX_EXPORT_PROOF_LEN)
            .map_err(|e| AuditError::io("read", path, io::Error::other(e)))?;
        ExportProof::from_json(&bytes)
    }

    /// The proof as pretty JSON.
    ///
    /// # Errors
    /// [`AuditError::Encode`] (not expected: every field is a string or a number).
    pub fn to_json_pretty(&self) -> Result<String, AuditError> {
        serde_json::to_string_pretty(self).map_err(|e| AuditError::Encode {
            reason: e.to_string(),
        })
    }

    /// Writes the proof to `path` atomically, mode 0644: it holds no secret.
    ///
    /// # Errors
    /// [`AuditError::Io`] if it cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), AuditError> {
        let mut text = self.to_json_pretty()?;
        text.push('\n');
        mayfly_sdk::files::write_public_atomic(path, text.as_bytes())
            .map_err(|e| AuditError::io("write", path, io::Error::other(e)))
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The proof to hand over with the records.
    pub proof: ExportProof,
    /// The commit time of the first record exported.
    pub first_time: Option<String>,
    /// The commit time of the last record exported.
    pub last_time: Option<String>,
    /// True when the range's end lies past the signed checkpoint: the slice ends at the
    /// checkpoint's last record, and later records were not signed for yet.
    pub past_signed_head: bool,
}

impl Exported {
    /// The signed checkpoint the export is proved against.
    pub fn checkpoint(&self) -> &SignedCheckpoint {
        &self.proof.inclusion.checkpoint
    }
}

/// Writes the records of `range` from the log in `dir` to `out` in `format` (`name` names
/// `out` in errors), and returns the proof that goes with them.
///
/// The log's current signed checkpoint is read first; only the records it covers are
/// exported. The records are checked as they are read (each hash and `prev` link), and the
/// inclusion proof is made by [`prove_inclusion`], which verifies the whole log against
/// the checkpoint: a log that does not verify gets no export.
///
/// # Errors
/// [`AuditError::Proof`] when nothing is signed, the log does not verify, or it changed
/// while it was read; [`AuditError::Io`] when the log cannot be read or `out` written.
pub fn export(
    dir: &Path,
    range: &ExportRange,
    format: ExportFormat,
    out: &mut dyn Write,
    name: &Path,
) -> Result<Exported, AuditError> {
    let checkpoint = signed_checkpoint(dir)?;
    let written = |e: io::Error| AuditError::io("write", name, e);
    if format == ExportFormat::Csv {
        out.write_all(&csv::header()).map_err(written)?;
    }
    let ((removed, prev), lines) = read_lines(dir)?;
    let mut slice = Slicer::new(range, checkpoint.seq, prev);
    for item in lines {
        let (seq, line) = item?;
        if seq > checkpoint.seq {
            break;
        }
        let record = slice.link(seq, &line, dir)?;
        if let Some(record) = slice.take(record, &line, dir)? {
            match format {
                ExportFormat::Jsonl => out
                    .write_all(&line)
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(written)?,
                ExportFormat::Csv => out.write_all(&csv::row(&record, &line)).map_err(written)?,
            }
        }
        if slice.after.is_some() {
            break;
        }
    }
    out.flush().map_err(written)?;
    if removed > 0 && slice.before.is_none() {
        return Err(AuditError::proof(format!(
            "records 1 to {removed} were removed by retention, so the record just before the \
             range cannot be shown and the range's start cannot be proven complete: start it \
             at seq:{} or later",
            removed + 2
        )));
    }
    slice.finish(dir, &checkpoint)
}

/// [`export`] to the file at `path`, written atomically (a temporary file beside it,
/// synced, renamed over it) with mode 0600, as the log it comes from: a failed export
/// leaves no file.
///
/// # Errors
/// As [`export`].
pub fn export_to_file(
    dir: &Path,
    range: &ExportRange,
    format: ExportFormat,
    path: &Path,
) -> Result<Exported, AuditError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let temporary =
        tempfile::NamedTempFile::new_in(parent).map_err(|e| AuditError::io("create", path, e))?;
    let mut out = io::BufWriter::new(temporary);
    let exported = export(dir, range, format, &mut out, path)?;
    let temporary = out
        .into_inner()
        .map_err(|e| AuditError::io("write", path, e.into_error()))?;
    temporary
        .as_file()
        .sync_all()
        .map_err(|e| AuditError::io("sync", path, e))?;
    temporary
        .persist(path)
        .map_err(|e| AuditError::io("rename", path, e.error))?;
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| AuditError::io("sync", parent, e))?;
    Ok(exported)
}

/// The log's current signed checkpoint.
fn signed_checkpoint(dir: &Path) -> Result<SignedCheckpoint, AuditError> {
    let why = match checkpoint::read(dir)? {
        CheckpointState::Found(signed) if signed.seq > 0 => return Ok(signed),
        CheckpointState::Found(_) => "signs an empty log".to_owned(),
        CheckpointState::Missing => "does not exist".to_owned(),
        CheckpointState::Legacy(_) => {
            "is unsigned (a log of a version before the audit key)".to_owned()
        }
        CheckpointState::Unreadable(reason) => format!("is unreadable: {reason}"),
    };
    Err(AuditError::proof(format!(
        "{CHECKPOINT_FILE} in {} {why}: there is no signed record to export",
        dir.display()
    )))
}

/// The slice as the log is read: what lies before it, in it, and just after it.
#[derive(Debug)]
struct Slicer<'a> {
    range: &'a ExportRange,
    signed: u64,
    /// The hash the next record's `prev` must be.
    prev: String,
    started: bool,
    before: Option<(u64, Vec<u8>)>,
    after: Option<(u64, Vec<u8>)>,
    first: Option<(u64, String)>,
    last: Option<(u64, Vec<u8>, String)>,
    count: u64,
}

impl<'a> Slicer<'a> {
    fn new(range: &'a ExportRange, signed: u64, prev: String) -> Slicer<'a> {
        Slicer {
            range,
            signed,
            prev,
            started: false,
            before: None,
            after: None,
            first: None,
            last: None,
            count: 0,
        }
    }

    /// Checks line `seq` on its own and against the one before: an export of a broken log
    /// would prove nothing, and the verifier would refuse it anyway.
    fn link(&mut self, seq: u64, line: &[u8], dir: &Path) -> Result<AuditRecord, AuditError> {
        let broken = |what: String| {
            AuditError::proof(format!(
                "record {seq} of the audit log in {} does not verify ({what}); an export of \
                 it would prove nothing (`mayfly audit verify` tells more)",
                dir.display()
            ))
        };
        let record = parse_line(line).map_err(|fault| {
            broken(match fault {
                LineFault::Unparseable(reason) => format!("not a record: {reason}"),
                LineFault::HashMismatch => "its hash does not match its contents".into(),
                LineFault::NotCanonical => "its bytes are not the ones the writer wrote".into(),
            })
        })?;
        if record.seq != seq {
            return Err(broken(format!("it says seq {}", record.seq)));
        }
        if record.prev != self.prev {
            return Err(broken(
                "its prev is not the hash of the record before".into(),
            ));
        }
        self.prev.clone_from(&record.hash);
        Ok(record)
    }

    /// Places a record before, in or after the slice; returns it if it is in the slice.
    fn take(
        &mut self,
        record: AuditRecord,
        line: &[u8],
        dir: &Path,
    ) -> Result<Option<AuditRecord>, AuditError> {
        let bad_time = || {
            AuditError::proof(format!(
                "record {} of the audit log in {} has a time that is not RFC 3339 ({:?}): \
                 it cannot be placed in a time range",
                record.seq,
                dir.display(),
                record.time
            ))
        };
        if !self.started {
            let admitted = match self.range.since() {
                Some(since) => since.admits(&record).ok_or_else(bad_time)?,
                None => true,
            };
            if !admitted {
                self.before = Some((record.seq, line.to_vec()));
                return Ok(None);
            }
            self.started = true;
        }
        if let Some(until) = self.range.until()
            && until.admits(&record).ok_or_else(bad_time)?
        {
            self.after = Some((record.seq, line.to_vec()));
            return Ok(None);
        }
        if self.first.is_none() {
            self.first = Some((record.seq, record.time.clone()));
        }
        self.count += 1;
        self.last = Some((record.seq, line.to_vec(), record.time.clone()));
        Ok(Some(record))
    }

    /// The proof: the inclusion of the chain's last line against `checkpoint`.
    fn finish(self, dir: &Path, checkpoint: &SignedCheckpoint) -> Result<Exported, AuditError> {
        // The chain's last line: `after`, else the slice's last record, else `before`.
        let chain_last = match (&self.after, &self.last, &self.before) {
            (Some((seq, line)), _, _)
            | (None, Some((seq, line, _)), _)
            | (None, None, Some((seq, line))) => Some((*seq, line.clone())),
            (None, None, None) => None,
        };
        let Some((last_seq, last_line)) = chain_last else {
            return Err(AuditError::proof(format!(
                "the audit log in {} holds no record",
                dir.display()
            )));
        };
        if self.after.is_none() && last_seq < self.signed {
            return Err(AuditError::proof(format!(
                "the audit log in {} ends at record {last_seq}, although the signed \
                 checkpoint covers records 1 to {} (`mayfly audit verify` tells more)",
                dir.display(),
                self.signed
            )));
        }
        let ProofBundle::Inclusion(inclusion) = prove_inclusion(dir, last_seq, Some(checkpoint))?
        else {
            return Err(AuditError::proof("expected an inclusion proof"));
        };
        if inclusion.record.as_bytes() != last_line.as_slice() {
            return Err(AuditError::proof(format!(
                "record {last_seq} of the audit log in {} changed while it was read: run \
                 this again, and `mayfly audit verify` if it fails again",
                dir.display()
            )));
        }
        // `parse_line` accepted every line, so each is UTF-8: nothing is replaced here.
        let text = |line: Vec<u8>| String::from_utf8_lossy(&line).into_owned();
        let past_signed_head = self.after.is_none() && self.range.until().is_some();
        Ok(Exported {
            proof: ExportProof {
                schema: ExportSchema::V1,
                range: self.range.clone(),
                first_seq: self.first.as_ref().map(|(seq, _)| *seq),
                last_seq: self.last.as_ref().map(|(seq, _, _)| *seq),
                count: self.count,
                before: self.before.map(|(_, line)| text(line)),
                after: self.after.map(|(_, line)| text(line)),
                inclusion,
            },
            first_time: self.first.map(|(_, time)| time),
            last_time: self.last.map(|(_, _, time)| time),
            past_signed_head,
        })
    }
}

/// Checks an export: its records (read from `records`, JSON lines or CSV, told apart by
/// their first byte; `name` names it in errors) against `proof`, and the proof against
/// the root key the auditor `pinned`. See the module docs for what this shows.
///
/// # Errors
/// [`AuditError::ExportRefused`] naming the place (the line or row and seq, `before`,
/// `after`, or the proof) and the check that failed; [`AuditError::Io`] when `records`
/// cannot be read.
pub fn verify_export(
    records: impl BufRead,
    name: &Path,
    proof: &ExportProof,
    pinned: &AuditPublicKey,
) -> Result<ExportVerified, AuditError> {
    let bundle = ProofBundle::Inclusion(proof.inclusion.clone());
    let signed = verify_bundle(&bundle, pinned).map_err(|e| match e {
        AuditError::Proof { reason } => {
            check::refused(ExportPlace::Proof, ExportCheck::Inclusion { reason })
        }
        other => other,
    })?;
    let mut walk = check::Walk::new(&proof.range);
    if let Some(before) = &proof.before {
        walk.before(before)?;
    }
    let mut reader = check::Records::detect(records, name)?;
    while let Some(read) = reader.next_record()? {
        walk.record(read.place, &read.line, read.cells.as_deref())?;
    }
    if let Some(after) = &proof.after {
        walk.after(after)?;
    }
    walk.finish(proof, signed)
}

#[cfg(test)]
mod tests;
