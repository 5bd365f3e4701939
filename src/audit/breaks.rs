//! Where and how a log breaks: what `verify` reports, and what the broker refuses to start on.

use std::fmt;

/// Where and how the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The file the line is in, relative to the audit directory, when it is a sealed
    /// segment (`segments/audit-<first>.log`); `None` for `audit.log`.
    pub file: Option<String>,
    /// 1-based line number in `audit.log` (or in `file`). For [`BreakKind::Truncated`], the line where the
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
    /// A signed checkpoint's signature is not the audit key's: the key in force at its seq
    /// (the last `audit.key.rotate` record at or before it) did not sign it, so someone
    /// without that key wrote it, or the records that introduce keys were rewritten.
    CheckpointSignature {
        /// The checkpoint's seq.
        seq: u64,
        /// The epoch it claims to be signed by.
        epoch: u64,
    },
    /// The log's records are signed for, but `checkpoint.json` is missing, unreadable, or
    /// unsigned: it was deleted or replaced, which is how a cut tail is hidden.
    CheckpointMissing {
        /// What is there instead.
        found: String,
    },
    /// A hand-over in `keys.jsonl` is not a valid one.
    KeyRecord {
        /// What is wrong with it.
        problem: String,
    },
    /// A hand-over in `keys.jsonl` pins another tree than the log's records up to its size
    /// form: a record was rewritten (and the chain re-hashed) after the key took over.
    HandoverMismatch {
        /// The epoch the hand-over introduces.
        epoch: u64,
        /// The size of the last tree a hand-over before it vouched for: the rewrite lies
        /// after it.
        since: u64,
    },
    /// A hand-over is not signed by the key before it: it was forged, by someone who
    /// rewrote the records before it and could not sign for the erased key.
    HandoverSignature {
        /// The epoch the hand-over introduces.
        epoch: u64,
        /// As in [`BreakKind::HandoverMismatch`].
        since: u64,
    },
    /// The log's root key is not the one the verifier pinned: the log, keys and all, is
    /// not the one that key started.
    UnpinnedKey {
        /// The id of the log's root key.
        found: String,
        /// The id of the pinned key.
        pinned: String,
    },
    /// Key epochs do not follow one another: a hand-over was removed or replayed.
    EpochOutOfOrder {
        /// The epoch that should be next.
        expected: u64,
        /// The epoch found.
        found: u64,
    },
    /// The log starts after seq 1 (`segments/start.json`), but no `audit.retention.removed`
    /// record accounts for the records before: segments were removed by hand.
    Removed {
        /// The last seq that is gone.
        through: u64,
        /// The furthest seq a retention record accounts for (0: none).
        accounted: u64,
    },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.line;
        let file = self
            .file
            .as_ref()
            .map(|file| format!("{file} "))
            .unwrap_or_default();
        let at = match self.seq {
            Some(seq) => format!("{file}line {line} (seq {seq})"),
            None => format!("{file}line {line}"),
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
                "{at}: the log up to seq {seq} differs from what the signed checkpoint \
                 recorded for it (head hash or Merkle root): records up to seq {seq} were \
                 rewritten"
            ),
            BreakKind::CheckpointSignature { seq, epoch } => write!(
                f,
                "the checkpoint of seq {seq} is not signed by the audit key of epoch {epoch} \
                 that the log has in force there: it was forged, or the log's key records \
                 were rewritten"
            ),
            BreakKind::CheckpointMissing { found } => write!(
                f,
                "the log is signed for, but {found}: the signed checkpoint was removed or \
                 replaced, which hides records cut off the end"
            ),
            BreakKind::KeyRecord { problem } => {
                write!(f, "{at}: the audit key chain (keys.jsonl): {problem}")
            }
            BreakKind::HandoverMismatch { epoch, since } => write!(
                f,
                "{at}: the log up to here is not the tree the audit key hand-over to epoch \
                 {epoch} signed: records between seq {} and seq {line} were rewritten",
                since + 1
            ),
            BreakKind::HandoverSignature { epoch, since } => write!(
                f,
                "{at}: the audit key hand-over to epoch {epoch} is not signed by the key of \
                 epoch {}: it was forged, so records between seq {} and seq {line} were \
                 rewritten",
                epoch.saturating_sub(1),
                since + 1
            ),
            BreakKind::UnpinnedKey { found, pinned } => write!(
                f,
                "the log's root audit key is {found}, not the pinned key {pinned}: the log \
                 was re-made under another key"
            ),
            BreakKind::EpochOutOfOrder { expected, found } => write!(
                f,
                "{at}: expected audit key epoch {expected}, found {found}: a key hand-over \
                 was removed or replayed"
            ),
            BreakKind::Removed {
                through,
                accounted: 0,
            } => write!(
                f,
                "records 1 to {through} are gone and no audit.retention.removed record \
                 accounts for them: segments were removed by hand"
            ),
            BreakKind::Removed { through, accounted } => write!(
                f,
                "records 1 to {through} are gone, but retention accounts only for records \
                 1 to {accounted}: segments were removed by hand"
            ),
        }
    }
}

impl std::error::Error for ChainBreak {}
