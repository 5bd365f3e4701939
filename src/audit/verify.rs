//! Checking a log: every record against its own hash, the chain, and the checkpoint.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;

use super::AuditError;
use super::checkpoint::{self, Checkpoint, CheckpointState};
use super::record::{AuditRecord, GENESIS_HASH, LineFault, parse_line};

/// File name of the log inside the audit directory.
pub(super) const LOG_FILE: &str = "audit.log";

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records that verified, from the start up to the first problem (or all of them).
    pub records: u64,
    /// Seq of the last record that verified; 0 if none did.
    pub head_seq: u64,
    /// Hash of the last record that verified; 64 zeros if none did.
    pub head_hash: String,
    /// The first place where the chain breaks, if any. Checking stops there: after a break,
    /// everything that follows is suspect and listing it would only add noise.
    pub problem: Option<ChainBreak>,
    /// Things an operator should know that are not breaks: a final line still being written,
    /// a missing or unreadable checkpoint.
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True if no problem was found.
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// Where and how the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// 1-based line number in `audit.log`. For [`BreakKind::Truncated`], the line where the
    /// next record should have been.
    pub line: u64,
    /// The seq written on that line, if it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub kind: BreakKind,
}

/// What is wrong at a [`ChainBreak`]. Each kind points at a different kind of tampering (or
/// damage), so the checks run in an order that names the most precise one: a line's own hash
/// first, then its seq, then its link to the line before.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakKind {
    /// The line is not a record: damaged, or edited by hand into invalid JSON.
    Unparseable {
        /// What the parser said.
        reason: String,
    },
    /// The record was edited: its hash does not match its contents.
    HashMismatch,
    /// The record's hash matches its fields, but its bytes are not the ones the writer wrote
    /// (a field added, keys reordered, whitespace): edited by someone who knew the format.
    NotCanonical,
    /// The record's `prev` is not the hash of the record before it, although the seqs follow
    /// on: the previous record was edited and given a new hash, or records were replaced.
    PrevMismatch,
    /// Seqs jump forward and the missing ones appear nowhere later: records were removed.
    /// (A removed record is reported this way rather than as `PrevMismatch`, because the seq
    /// says how many went missing.)
    SeqGap {
        /// The seq that should be on this line.
        expected: u64,
        /// The seq that is.
        found: u64,
    },
    /// Seqs go backwards, or jump forward to a seq whose predecessors appear later in the
    /// file: records were reordered (or duplicated).
    SeqOutOfOrder {
        /// The seq that should be on this line.
        expected: u64,
        /// The seq that is.
        found: u64,
    },
    /// The log ends before the head recorded in the checkpoint: records were cut off the end.
    Truncated {
        /// The head seq the checkpoint records.
        checkpoint_seq: u64,
        /// The last seq in the log (0 if it is empty).
        last_seq: u64,
    },
    /// The record at the checkpoint's seq has a different hash than the checkpoint recorded:
    /// the log was rewritten (and re-hashed) up to at least this record.
    CheckpointMismatch {
        /// The checkpoint's seq.
        seq: u64,
    },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.line;
        let at = match self.seq {
            Some(seq) => format!("line {line} (seq {seq})"),
            None => format!("line {line}"),
        };
        match &self.kind {
            BreakKind::Unparseable { reason } => {
                write!(
                    f,
                    "{at}: not a valid audit record ({reason}): the line was damaged or edited"
                )
            }
            BreakKind::HashMismatch => {
                write!(
                    f,
                    "{at}: record was edited: its hash does not match its contents"
                )
            }
            BreakKind::NotCanonical => write!(
                f,
                "{at}: record was edited: its bytes differ from what the writer wrote \
                 (a field added, keys reordered or whitespace changed)"
            ),
            BreakKind::PrevMismatch => write!(
                f,
                "{at}: its prev does not match the hash of the record before it: the record \
                 before it was edited and re-hashed, or records were replaced"
            ),
            BreakKind::SeqGap { expected, found } => {
                let missing = found.saturating_sub(*expected);
                let records = if missing == 1 { "record" } else { "records" };
                write!(
                    f,
                    "line {line}: expected seq {expected}, found seq {found}: \
                     {missing} {records} removed before this line"
                )
            }
            BreakKind::SeqOutOfOrder { expected, found } if found > expected => write!(
                f,
                "line {line}: seq {found} comes before seq {expected}: records reordered"
            ),
            BreakKind::SeqOutOfOrder { expected, found } => write!(
                f,
                "line {line}: expected seq {expected}, found seq {found}, which belongs \
                 earlier: records reordered or duplicated"
            ),
            BreakKind::Truncated {
                checkpoint_seq,
                last_seq,
            } => write!(
                f,
                "log ends at seq {last_seq} but the checkpoint says the head is seq \
                 {checkpoint_seq}: the log was truncated ({} records missing from its end)",
                checkpoint_seq.saturating_sub(*last_seq)
            ),
            BreakKind::CheckpointMismatch { seq } => write!(
                f,
                "{at}: hash differs from the one checkpoint.json recorded for seq {seq}: \
                 the log was rewritten"
            ),
        }
    }
}

impl std::error::Error for ChainBreak {}

/// Verifies the audit log in `dir` (the directory holding `audit.log` and `checkpoint.json`).
///
/// Only reads, takes no lock, and is safe while the server appends: the checkpoint is read
/// *before* the log, and the writer moves the checkpoint only after the log is synced, so the
/// log read afterwards always reaches the checkpoint's seq. A final line without its newline
/// is a record still being written (or torn by a crash): it is ignored and mentioned in
/// `notes`.
///
/// A broken chain is not an error: it is reported in [`VerifyReport::problem`].
///
/// # Errors
/// [`AuditError::Io`] if the files cannot be read, including when `dir` holds neither a log
/// nor a checkpoint.
pub fn verify(dir: &Path) -> Result<VerifyReport, AuditError> {
    let checkpoint = checkpoint::read(dir)?;
    let path = dir.join(LOG_FILE);
    let scan = match File::open(&path) {
        Ok(file) => scan(BufReader::new(file), &checkpoint, &path)?,
        // A deleted log is the ultimate truncation; the checkpoint says what was lost.
        Err(e) if e.kind() == io::ErrorKind::NotFound && has_checkpoint(&checkpoint) => {
            let mut scan = scan(io::empty(), &checkpoint, &path)?;
            scan.report.notes.push(format!("{LOG_FILE} does not exist"));
            scan
        }
        Err(e) => return Err(AuditError::io("open", path, e)),
    };
    Ok(scan.report)
}

fn has_checkpoint(state: &CheckpointState) -> bool {
    matches!(state, CheckpointState::Found(_))
}

/// The result of reading a log from its start.
#[derive(Debug)]
pub(super) struct Scan {
    pub(super) report: VerifyReport,
    /// Bytes up to the end of the last record that verified.
    pub(super) good_len: u64,
    /// Bytes of a final line without newline, if there is one.
    pub(super) torn_len: Option<u64>,
}

/// The chain as followed so far.
#[derive(Debug)]
struct Chain<'a> {
    checkpoint: Option<&'a Checkpoint>,
    line: u64,
    records: u64,
    prev: String,
    good_len: u64,
}

impl Chain<'_> {
    fn expected_seq(&self) -> u64 {
        self.records + 1
    }

    /// Checks a parsed record's place in the chain (its own hash is already checked).
    fn link(&mut self, record: AuditRecord, len: u64) -> Result<(), BreakKind> {
        let expected = self.expected_seq();
        if record.seq < expected {
            return Err(BreakKind::SeqOutOfOrder {
                expected,
                found: record.seq,
            });
        }
        if record.seq > expected {
            // Whether removed or reordered depends on the rest of the file; the caller looks.
            return Err(BreakKind::SeqGap {
                expected,
                found: record.seq,
            });
        }
        if record.prev != self.prev {
            return Err(BreakKind::PrevMismatch);
        }
        if let Some(checkpoint) = self.checkpoint
            && checkpoint.seq == record.seq
            && checkpoint.hash != record.hash
        {
            return Err(BreakKind::CheckpointMismatch { seq: record.seq });
        }
        self.records += 1;
        self.prev = record.hash;
        self.good_len += len;
        Ok(())
    }
}

/// Reads a log from its start, checking every record, the chain and the checkpoint; stops at
/// the first problem. Shared by [`verify`] and `AuditLog::open`.
pub(super) fn scan(
    mut reader: impl BufRead,
    checkpoint: &CheckpointState,
    path: &Path,
) -> Result<Scan, AuditError> {
    let mut notes = Vec::new();
    let (checkpoint, checkpoint_note) = checkpoint_in_use(checkpoint);
    let mut chain = Chain {
        checkpoint,
        line: 0,
        records: 0,
        prev: GENESIS_HASH.to_owned(),
        good_len: 0,
    };
    let mut problem = None;
    let mut torn_len = None;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = read_line(&mut reader, &mut buf, path)?;
        if n == 0 {
            break;
        }
        let Some(line) = buf.strip_suffix(b"\n") else {
            torn_len = Some(n as u64);
            notes.push(format!(
                "line {}: final line has no newline ({n} bytes): a record still being \
                 written, or torn by a crash; ignored",
                chain.line + 1
            ));
            break;
        };
        chain.line += 1;
        let Some(kind) = check_line(&mut chain, line, n as u64, &mut reader, path)? else {
            continue;
        };
        problem = Some(ChainBreak {
            line: chain.line,
            seq: seq_of(line),
            kind,
        });
        break;
    }
    let last_seq = chain.records;
    // An empty log without checkpoint is simply new; only a log with records misses it.
    if let Some(note) = checkpoint_note
        && (chain.line > 0 || torn_len.is_some())
    {
        notes.push(note);
    }
    if problem.is_none()
        && let Some(checkpoint) = checkpoint
        && checkpoint.seq > last_seq
    {
        problem = Some(ChainBreak {
            line: chain.line + 1,
            seq: None,
            kind: BreakKind::Truncated {
                checkpoint_seq: checkpoint.seq,
                last_seq,
            },
        });
    }
    Ok(Scan {
        report: VerifyReport {
            records: chain.records,
            head_seq: last_seq,
            head_hash: chain.prev,
            problem,
            notes,
        },
        good_len: chain.good_len,
        torn_len,
    })
}

/// The checkpoint to check against, or why there is none (a note for the report).
fn checkpoint_in_use(state: &CheckpointState) -> (Option<&Checkpoint>, Option<String>) {
    let file = checkpoint::CHECKPOINT_FILE;
    match state {
        CheckpointState::Found(checkpoint) => (Some(checkpoint), None),
        CheckpointState::Missing => (
            None,
            Some(format!(
                "no {file}: records cut off the end of the log cannot be detected"
            )),
        ),
        CheckpointState::Unreadable(reason) => (
            None,
            Some(format!(
                "{file} is unreadable ({reason}); it is written without fsync, so a crash can \
                 leave it empty; records cut off the end of the log cannot be detected"
            )),
        ),
    }
}

/// Checks one complete line and links it into the chain; `Some` names what is wrong.
fn check_line(
    chain: &mut Chain<'_>,
    line: &[u8],
    len: u64,
    rest: &mut impl BufRead,
    path: &Path,
) -> Result<Option<BreakKind>, AuditError> {
    let kind = match parse_line(line) {
        Ok(record) => match chain.link(record, len) {
            Ok(()) => return Ok(None),
            Err(BreakKind::SeqGap { expected, found }) => {
                if seq_appears_later(rest, expected..found, path)? {
                    BreakKind::SeqOutOfOrder { expected, found }
                } else {
                    BreakKind::SeqGap { expected, found }
                }
            }
            Err(kind) => kind,
        },
        Err(LineFault::Unparseable(reason)) => BreakKind::Unparseable { reason },
        Err(LineFault::HashMismatch) => BreakKind::HashMismatch,
        Err(LineFault::NotCanonical) => BreakKind::NotCanonical,
    };
    Ok(Some(kind))
}

fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    path: &Path,
) -> Result<usize, AuditError> {
    reader
        .read_until(b'\n', buf)
        .map_err(|e| AuditError::io("read", path, e))
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// The seq a line claims, even if the line does not verify.
fn seq_of(line: &[u8]) -> Option<u64> {
    serde_json::from_slice::<SeqOnly>(line).ok().map(|s| s.seq)
}

/// Whether any seq in `missing` sits later in the file: then the jump is a reordering, not a
/// removal. Only runs once a break is found, so the normal path reads the file once.
fn seq_appears_later(
    reader: &mut impl BufRead,
    missing: std::ops::Range<u64>,
    path: &Path,
) -> Result<bool, AuditError> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if read_line(reader, &mut buf, path)? == 0 {
            return Ok(false);
        }
        let Some(line) = buf.strip_suffix(b"\n") else {
            return Ok(false);
        };
        if seq_of(line).is_some_and(|seq| missing.contains(&seq)) {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests;
