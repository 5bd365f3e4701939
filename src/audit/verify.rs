//! Checking a log: every record against its own hash, the chain, and the checkpoint.

use std::collections::BTreeSet;
use std::io::{self, BufRead};
use std::path::Path;

use serde::Deserialize;

use super::AuditError;
pub(super) use super::breaks::{BreakKind, ChainBreak};
use super::checkpoint::{self, Checkpoint, CheckpointState};
use super::merkle::{self, Frontier};
use super::record::{AuditRecord, LineFault, parse_line};
use super::seal::{AuditPublicKey, Handover, SignedCheckpoint};
use super::segment::Layout;
use super::trust::{Facts, KeyEpoch};

pub(super) use super::segment::LOG_FILE;

/// The action of the record retention appends before it removes segments; its detail's
/// `through_seq` is the last seq removed.
pub(super) const RETENTION_ACTION: &str = "audit.retention.removed";

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The seq up to which records verified, from the start up to the first problem (or
    /// all of them); records removed by retention count, as they did verify when kept.
    pub records: u64,
    /// Records removed by retention (the kept log starts at `removed + 1`).
    pub removed: u64,
    /// Sealed segments before the live `audit.log`.
    pub segments: usize,
    /// Seq of the last record that verified; 0 if none did.
    pub head_seq: u64,
    /// Hash of the last record that verified; 64 zeros if none did.
    pub head_hash: String,
    /// The Merkle root (RFC 9162, hex) over the records that verified.
    pub root: String,
    /// The seq up to which a signed checkpoint vouches for the log (0: none does).
    pub signed_through: u64,
    /// The audit keys the log introduces, in order (empty for a log of a version before
    /// the audit key).
    pub keys: Vec<KeyEpoch>,
    /// Whether the root key was checked against a pinned public key.
    pub pinned: bool,
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

/// What to check a log against beyond itself.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The root audit key the verifier trusts (`audit-root.pub`, kept off the host). Without
    /// it the log's own root key is taken as it is, which proves the log consistent but not
    /// that it is the log that key started.
    pub public_key: Option<AuditPublicKey>,
    /// Signed checkpoints kept elsewhere (by an auditor, or an anchor): each must verify
    /// with the log's key chain and name a prefix of this log. One the log falls short of
    /// means the log was rolled back; one it disagrees with means history was rewritten.
    pub checkpoints: Vec<SignedCheckpoint>,
}

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
    verify_with(dir, &VerifyOptions::default())
}

/// [`verify`], also against a pinned root key and checkpoints kept elsewhere.
///
/// # Errors
/// As [`verify`].
pub fn verify_with(dir: &Path, options: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    // A segment sealed while the files are listed and read moves records from one file
    // to another under the reader's feet; what looks like a break then is read again.
    let mut tries = 0;
    loop {
        let (report, layout) = verify_once(dir, options)?;
        tries += 1;
        if report.problem.is_none() || tries == 3 || Layout::read(dir)?.sealed == layout.sealed {
            return Ok(report);
        }
    }
}

fn verify_once(dir: &Path, options: &VerifyOptions) -> Result<(VerifyReport, Layout), AuditError> {
    let checkpoint = checkpoint::read(dir)?;
    // Read before the log, as the checkpoint: the log only ever reaches further.
    let keys = super::trust::read_keys(dir)?;
    let layout = Layout::read(dir)?;
    let live_exists = layout.live.exists();
    if !live_exists && layout.sealed.is_empty() && checkpoint.head().is_none() {
        return Err(AuditError::io(
            "open",
            &layout.live,
            io::Error::from(io::ErrorKind::NotFound),
        ));
    }
    let (reader, lens) = layout.reader()?;
    let mut scan = scan(reader, lens, &checkpoint, &layout, options, &keys.handovers)?;
    if !live_exists {
        // A deleted log is the ultimate truncation; the checkpoint says what was lost.
        scan.report.notes.push(format!("{LOG_FILE} does not exist"));
    }
    if scan.report.problem.is_none() {
        scan.report.problem = options.checkpoints.iter().find_map(|kept| {
            scan.facts.judge(kept).map(|kind| ChainBreak {
                file: None,
                line: kept.seq.min(scan.report.records + 1),
                seq: Some(kept.seq),
                kind,
            })
        });
    }
    Ok((scan.report, layout))
}

/// The result of reading a log from its start.
#[derive(Debug)]
pub(super) struct Scan {
    pub(super) report: VerifyReport,
    /// Bytes of a final line without newline, if there is one.
    pub(super) torn_len: Option<u64>,
    /// The Merkle tree over the records that verified.
    pub(super) frontier: Frontier,
    /// The key chain, and the roots at the sizes checkpoints name.
    pub(super) facts: Facts,
    /// Where each file of the layout starts in the chain: the records before it, their
    /// tree and the last one's hash (for the live segment's seal and unsealed segments).
    pub(super) starts: Vec<(u64, Frontier, String)>,
    /// Each file's bytes that hold whole, verified records, in the layout's order.
    pub(super) file_lens: Vec<u64>,
}

/// The chain as followed so far.
#[derive(Debug)]
struct Chain<'a> {
    checkpoint: Option<Checkpoint>,
    line: u64,
    records: u64,
    prev: String,
    good_len: u64,
    frontier: Frontier,
    facts: Facts,
    /// The sizes whose root and head are kept in `facts`.
    sizes: &'a BTreeSet<u64>,
    /// The furthest seq an `audit.retention.removed` record accounts for.
    retained_through: u64,
}

impl Chain<'_> {
    fn expected_seq(&self) -> u64 {
        self.records + 1
    }

    /// Checks a parsed record's place in the chain (its own hash is already checked), and
    /// a key record's hand-over; then adds the record (`line`, its bytes) to the tree.
    fn link(&mut self, record: AuditRecord, line: &[u8], len: u64) -> Result<(), BreakKind> {
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
        if let Some(checkpoint) = &self.checkpoint
            && checkpoint.seq == record.seq
            && checkpoint.hash != record.hash
        {
            return Err(BreakKind::CheckpointMismatch { seq: record.seq });
        }
        if record.event.action == RETENTION_ACTION
            && let Some(through) = record
                .event
                .detail
                .as_ref()
                .and_then(|detail| detail.get("through_seq"))
                .and_then(serde_json::Value::as_u64)
        {
            self.retained_through = self.retained_through.max(through);
        }
        self.frontier.push(merkle::leaf_hash(line));
        self.records += 1;
        if self.sizes.contains(&self.records) {
            self.facts
                .at
                .insert(self.records, (self.frontier.root(), record.hash.clone()));
        }

        self.prev = record.hash;
        self.good_len += len;
        Ok(())
    }
}

/// Reads a log from where its kept records start (`layout.start`), `reader` and `lens`
/// being its files and their lengths as [`Layout::reader`] opened them, checking every record,
/// the chain, the key chain and the checkpoint; stops at the first problem. Keeps the tree
/// where each file starts. Shared by [`verify`] and `AuditLog::open`.
pub(super) fn scan(
    mut reader: impl BufRead,
    lens: Vec<u64>,
    checkpoint: &CheckpointState,
    layout: &Layout,
    options: &VerifyOptions,
    handovers: &[Handover],
) -> Result<Scan, AuditError> {
    let start = &layout.start;
    let path = layout.live.as_path();
    let mut notes = Vec::new();
    let mut sizes: BTreeSet<u64> = options.checkpoints.iter().map(|kept| kept.seq).collect();
    sizes.extend(handovers.iter().map(|handover| handover.size));
    if let Some(head) = checkpoint.head() {
        sizes.insert(head.seq);
    }
    let mut facts = Facts {
        start: start.size,
        ..Facts::default()
    };
    if sizes.contains(&start.size) {
        facts
            .at
            .insert(start.size, (start.frontier.root(), start.prev.clone()));
    }
    let mut chain = Chain {
        checkpoint: checkpoint.head(),
        line: 0,
        records: start.size,
        prev: start.prev.clone(),
        good_len: 0,
        frontier: start.frontier.clone(),
        facts,
        sizes: &sizes,
        retained_through: 0,
    };
    // Which file the stream is in: its index, where it ends, and its first line.
    let files = lens.len();
    let mut place = FilePlace::new(lens);
    let mut starts = vec![(start.size, start.frontier.clone(), start.prev.clone())];
    let mut problem = None;
    let mut torn_len = None;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = read_line(&mut reader, &mut buf, path)?;
        if n == 0 {
            break;
        }
        for _ in 0..place.advance(chain.good_len, chain.line) {
            starts.push((chain.records, chain.frontier.clone(), chain.prev.clone()));
        }
        let Some(line) = buf.strip_suffix(b"\n") else {
            torn_len = Some(n as u64);
            notes.push(format!(
                "{}line {}: final line has no newline ({n} bytes): a record still being \
                 written, or torn by a crash; ignored",
                place.prefix(layout),
                chain.line + 1 - place.first_line
            ));
            break;
        };
        chain.line += 1;
        let Some(kind) = check_line(&mut chain, line, n as u64, &mut reader, path)? else {
            continue;
        };
        problem = Some(ChainBreak {
            file: place.file(layout),
            line: chain.line - place.first_line,
            seq: seq_of(line),
            kind,
        });
        break;
    }
    chain.facts.size = chain.records;
    // Files not reached (empty ones at the end) start where the stream ends.
    while starts.len() < files {
        starts.push((chain.records, chain.frontier.clone(), chain.prev.clone()));
    }
    let file_lens = place.good_lens(chain.good_len);
    let Chain {
        line,
        records,
        prev,
        frontier,
        mut facts,
        retained_through,
        ..
    } = chain;
    if problem.is_none() && start.size > 0 && retained_through < start.size {
        problem = Some(ChainBreak {
            file: None,
            line: 1,
            seq: None,
            kind: BreakKind::Removed {
                through: start.size,
                accounted: retained_through,
            },
        });
    }
    if problem.is_none() {
        problem = facts.follow(handovers, options.public_key);
    }
    if problem.is_none() {
        problem = judge_checkpoint(checkpoint, &facts, line, &mut notes);
    }
    if start.size > 0 {
        notes.push(format!(
            "records 1 to {} were removed by retention (audit.retention.removed); the kept \
             log starts at seq {}",
            start.size,
            start.size + 1
        ));
    }
    notes.append(&mut facts.notes);
    let signed_through = match (checkpoint, &problem) {
        (CheckpointState::Found(signed), None) => signed.seq,
        _ => 0,
    };
    Ok(Scan {
        report: VerifyReport {
            records,
            removed: start.size,
            segments: layout.sealed.len(),
            head_seq: records,
            head_hash: prev,
            root: merkle::to_hex(&frontier.root()),
            signed_through,
            keys: facts.epochs.clone(),
            pinned: options.public_key.is_some(),
            problem,
            notes,
        },
        torn_len,
        frontier,
        facts,
        starts,
        file_lens,
    })
}

/// Which of a layout's files a scan is reading, from the bytes read so far.
struct FilePlace {
    lens: Vec<u64>,
    index: usize,
    /// Where the current file starts in the stream.
    offset: u64,
    /// Lines before the current file.
    first_line: u64,
}

impl FilePlace {
    fn new(lens: Vec<u64>) -> Self {
        FilePlace {
            lens,
            index: 0,
            offset: 0,
            first_line: 0,
        }
    }

    /// Moves on to the file holding byte `at` (the start of the line about to be read),
    /// `lines` lines into the stream; returns how many files it moved on.
    fn advance(&mut self, at: u64, lines: u64) -> usize {
        let mut moved = 0;
        while let Some(len) = self.lens.get(self.index)
            && at >= self.offset + len
            && self.index + 1 < self.lens.len()
        {
            self.offset += len;
            self.index += 1;
            self.first_line = lines;
            moved += 1;
        }
        moved
    }

    /// The current file's name, unless it is the live `audit.log`.
    fn file(&self, layout: &Layout) -> Option<String> {
        (self.index < layout.sealed.len())
            .then(|| layout.names().get(self.index).cloned())
            .flatten()
    }

    fn prefix(&self, layout: &Layout) -> String {
        self.file(layout)
            .map(|file| format!("{file} "))
            .unwrap_or_default()
    }

    /// The verified bytes in each file, given `good` verified bytes in all.
    fn good_lens(&self, good: u64) -> Vec<u64> {
        let mut left = good;
        self.lens
            .iter()
            .map(|len| {
                let here = left.min(*len);
                left -= here;
                here
            })
            .collect()
    }
}

/// What the log's own checkpoint says about the log: a signed one is judged by the key
/// chain; a missing, unreadable or unsigned one is a break once the log is signed for (it
/// hides a cut tail), and only a note for a log of a version before the audit key.
fn judge_checkpoint(
    state: &CheckpointState,
    facts: &Facts,
    lines: u64,
    notes: &mut Vec<String>,
) -> Option<ChainBreak> {
    let file = checkpoint::CHECKPOINT_FILE;
    let signed_for = !facts.epochs.is_empty();
    let missing = |found: String| {
        Some(ChainBreak {
            file: None,
            line: lines + 1,
            seq: None,
            kind: BreakKind::CheckpointMissing { found },
        })
    };
    match state {
        CheckpointState::Found(signed) if !signed_for => Some(ChainBreak {
            file: None,
            line: lines + 1,
            seq: None,
            kind: BreakKind::KeyRecord {
                problem: format!(
                    "{file} is signed, yet keys.jsonl holds no key: the key chain was removed"
                ),
            },
        }),
        CheckpointState::Found(signed) => facts.judge(signed).map(|kind| ChainBreak {
            file: None,
            line: if signed.seq > facts.size {
                lines + 1
            } else {
                signed.seq
            },
            seq: (signed.seq <= facts.size).then_some(signed.seq),
            kind,
        }),
        CheckpointState::Legacy(_) if signed_for => missing(format!("{file} is unsigned")),
        CheckpointState::Missing if signed_for => missing(format!("there is no {file}")),
        CheckpointState::Unreadable(reason) if signed_for => {
            missing(format!("{file} is unreadable ({reason})"))
        }
        CheckpointState::Legacy(head) => (head.seq > facts.size).then_some(ChainBreak {
            file: None,
            line: lines + 1,
            seq: None,
            kind: BreakKind::Truncated {
                checkpoint_seq: head.seq,
                last_seq: facts.size,
            },
        }),
        CheckpointState::Missing => {
            if lines > 0 {
                notes.push(format!(
                    "no {file}: records cut off the end of the log cannot be detected"
                ));
            }
            None
        }
        CheckpointState::Unreadable(reason) => {
            if lines > 0 {
                notes.push(format!(
                    "{file} is unreadable ({reason}); records cut off the end of the log \
                     cannot be detected"
                ));
            }
            None
        }
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
        Ok(record) => match chain.link(record, line, len) {
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
mod insider;
#[cfg(test)]
mod tests;
